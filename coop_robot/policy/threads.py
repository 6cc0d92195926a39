"""How many threads torch uses in a process that runs the mirror network.

Torch's default intra-op pool has one thread per core. For the mirror policy's one-tick forward
pass (a few small matrices) those threads only spin and contend: on a busy machine
``coop-robot eval --policy mirror --turns 15`` took 169.5 s wall with the default pool and 9.2 s
with one thread, and the policy node burnt about half a core for a 0.44 ms tick
(``bench/policy_inference.py`` measures the ratio). So every process that builds or loads the
network calls :func:`configure_torch_threads`: one intra-op thread unless asked otherwise.
"""

from __future__ import annotations

import os

#: Environment variable that sets the intra-op thread count when no count is passed.
TORCH_THREADS_ENV = "COOP_ROBOT_TORCH_THREADS"
#: Intra-op threads for inference when neither a count nor the environment variable is given.
DEFAULT_TORCH_THREADS = 1


def torch_threads_wanted(n: int | None = None) -> int:
    """The thread count :func:`configure_torch_threads` would use: ``n``, else ``$COOP_ROBOT_TORCH_THREADS``,
    else :data:`DEFAULT_TORCH_THREADS`. Raises ValueError for a count that is not an integer >= 1."""
    source = "torch thread count"
    if n is None:
        text = os.environ.get(TORCH_THREADS_ENV, "").strip()
        if not text:
            return DEFAULT_TORCH_THREADS
        source = f"${TORCH_THREADS_ENV}"
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"{source} must be an integer >= 1, got {text!r}") from None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{source} must be an integer >= 1, got {n!r}")
    return n


def configure_torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count for this process and return it (see :func:`torch_threads_wanted`).

    Inter-op threads are left alone: torch fixes them at the first parallel call, and the mirror
    network's forward pass runs no inter-op work.
    """
    count = torch_threads_wanted(n)
    import torch  # noqa: PLC0415 -- importing coop_robot.policy must not need torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count

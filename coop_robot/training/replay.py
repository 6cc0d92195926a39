"""Experience replay of fixed-length tick sequences for the recurrent mirror network.

A collected session is cut into sequences of ``sequence_length`` ticks that overlap by
``burn_in`` ticks (R2D2-style): a sequence's first ``burn_in`` ticks only warm the GRU up from a
zero state and carry no loss, except in a session's first sequence, whose zero state is exactly
the policy's state after ``reset``. A session's tail is zero-padded and masked. Every field is a
NumPy array with the tick axis first; the buffer is a FIFO ring of ``capacity`` sequences and
samples with the caller's ``numpy.random.Generator`` (deterministic given its seed).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Key of the boolean per-tick mask that marks the ticks that carry a loss.
LOSS_MASK = "loss_mask"


def split_episode(episode: Mapping[str, np.ndarray], sequence_length: int, burn_in: int) -> list[dict[str, np.ndarray]]:
    """Cut one session (arrays ``(T, ...)``, equal ``T``) into padded sequences with a ``loss_mask``."""
    if not 0 <= burn_in < sequence_length:
        raise ValueError(f"burn_in must be in [0, sequence_length={sequence_length}), got {burn_in}")
    lengths = {k: len(v) for k, v in episode.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"episode arrays must share their first (tick) dimension, got {lengths}")
    n = next(iter(lengths.values()), 0)
    stride = sequence_length - burn_in
    out = []
    start = 0
    while n > 0:
        stop = min(start + sequence_length, n)
        seq = {}
        for k, v in episode.items():
            part = np.asarray(v)[start:stop]
            pad = np.zeros((sequence_length - len(part),) + part.shape[1:], dtype=part.dtype)
            seq[k] = np.concatenate([part, pad])
        mask = np.zeros(sequence_length, dtype=bool)
        mask[: stop - start] = True
        if start > 0:
            mask[:burn_in] = False       # already trained as the previous sequence's tail
        seq[LOSS_MASK] = mask
        out.append(seq)
        if stop == n:
            break
        start += stride
    return out


class SequenceReplay:
    """FIFO ring of equal-shape sequences (dicts of arrays), sampled uniformly in batches."""

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"replay capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = capacity
        self._store: dict[str, np.ndarray] | None = None
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, sequence: Mapping[str, np.ndarray]) -> None:
        """Store one sequence, overwriting the oldest once full. Keys and shapes must match the first."""
        if self._store is None:
            self._store = {k: np.zeros((self.capacity,) + np.shape(v), dtype=np.asarray(v).dtype)
                           for k, v in sequence.items()}
        if set(sequence) != set(self._store):
            raise ValueError(f"sequence keys {sorted(sequence)} differ from the buffer's {sorted(self._store)}")
        for k, v in sequence.items():
            v = np.asarray(v)
            if v.shape != self._store[k].shape[1:]:
                raise ValueError(
                    f"sequence field {k!r} has shape {v.shape}, the buffer holds {self._store[k].shape[1:]}"
                )
            self._store[k][self._next] = v
        self._next = (self._next + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def extend(self, sequences) -> None:
        for s in sequences:
            self.add(s)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``batch_size`` sequences drawn uniformly (with replacement) -> arrays ``(B, L, ...)``."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        idx = rng.integers(0, self._size, size=batch_size)
        return {k: v[idx].copy() for k, v in self._store.items()}

    def state(self) -> dict:
        """Everything the buffer holds, as tensors and ints (``torch.save`` with ``weights_only``
        loads it back): for resuming a training run exactly where it stopped."""
        import torch  # noqa: PLC0415 -- the buffer itself needs no torch

        # The filled rows only (until the ring is full, they are the first ``size``).
        store = {} if self._store is None else {k: torch.from_numpy(v[:self._size].copy())
                                                for k, v in self._store.items()}
        return {"capacity": self.capacity, "next": self._next, "size": self._size, "store": store}

    @classmethod
    def from_state(cls, state: dict) -> SequenceReplay:
        """The buffer :meth:`state` described (ValueError when it is not one)."""
        try:
            replay = cls(state["capacity"])
            store, size, nxt = state["store"], state["size"], state["next"]
            arrays = {k: v.numpy().copy() for k, v in store.items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a replay buffer's state: {exc!r}") from None
        if any(a.shape[:1] != (size,) for a in arrays.values()) \
                or not (0 <= size <= replay.capacity and 0 <= nxt < replay.capacity) or (size and not arrays):
            raise ValueError("not a replay buffer's state: its sizes do not agree with its capacity")
        replay._store = {k: np.concatenate([a, np.zeros((replay.capacity - size,) + a.shape[1:], a.dtype)])
                         for k, a in arrays.items()} or None
        replay._size, replay._next = int(size), int(nxt)
        return replay

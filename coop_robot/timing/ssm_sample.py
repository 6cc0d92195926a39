"""The speed-and-separation-monitoring (SSM) sample on the graph, without ROS.

Two topics carry SSM samples, both ``diagnostic_msgs/DiagnosticArray`` with ``header.stamp`` = the
sample time and one ``DiagnosticStatus`` named :data:`SSM_STATUS_NAME` whose ``values`` are
:data:`SSM_KEYS` (numbers written with ``repr(float)``):

* :data:`GROUND_TRUTH_SSM` -- the simulator's ground truth;
* :data:`CONTROLLER_SSM` -- the controller's perceived view (on a lab robot, the only one).

The sim and controller nodes build the values with :meth:`SsmSample.to_key_values`; the turn
tracker node and the bag analysis read them back with :meth:`SsmSample.from_key_values`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

GROUND_TRUTH_SSM = "/sim/ground_truth/ssm"
CONTROLLER_SSM = "/controller/ssm"
SSM_STATUS_NAME = "ssm"
#: The controller's speed modes: full speed, scaled speed, protective stop.
SSM_MODES = ("free", "scaled", "stop")
#: The numeric keys of a sample, in message order (``mode`` follows them).
SSM_NUMBER_KEYS = ("separation_m", "protective_distance_m", "robot_closing_mps", "human_closing_mps", "speed_scale")
SSM_KEYS = (*SSM_NUMBER_KEYS, "mode")


class SsmSample(NamedTuple):
    """One SSM sample.

    ``separation_m``: distance between the hand sphere and the robot body (m);
    ``protective_distance_m``: the protective separation distance S_p at that moment (m);
    ``robot_closing_mps`` / ``human_closing_mps``: each agent's speed toward the other (m/s, > 0 =
    approaching); ``speed_scale``: the controller's speed scaling (1 = full speed, 0 = stopped);
    ``mode``: one of :data:`SSM_MODES`. Non-finite numbers are allowed (no person seen: ``inf``).
    """

    t_s: float
    separation_m: float
    protective_distance_m: float
    robot_closing_mps: float
    human_closing_mps: float
    speed_scale: float
    mode: str

    @property
    def margin_m(self) -> float:
        """Separation minus S_p (m); < 0 means inside the protective distance."""
        return self.separation_m - self.protective_distance_m

    def to_key_values(self) -> list[tuple[str, str]]:
        """(key, value) pairs for the ``DiagnosticStatus`` values, numbers as ``repr(float)``."""
        if self.mode not in SSM_MODES:
            raise ValueError(f"SSM mode must be one of {SSM_MODES}, got {self.mode!r}")
        pairs = [(key, repr(float(getattr(self, key)))) for key in SSM_NUMBER_KEYS]
        pairs.append(("mode", self.mode))
        return pairs

    @classmethod
    def from_key_values(cls, pairs: Iterable[tuple[str, str]], t_s: float) -> SsmSample:
        """The sample of a status's (key, value) pairs at time ``t_s`` (s, the header stamp).

        Extra keys are ignored. Raises ValueError naming a missing key, a value that is not a
        number, an unknown mode or a non-finite time."""
        if not math.isfinite(t_s):
            raise ValueError(f"SSM sample time must be finite (s), got {t_s!r}")
        values = dict(pairs)
        numbers = []
        for key in SSM_NUMBER_KEYS:
            if key not in values:
                raise ValueError(f"SSM sample at {t_s:.6f} s has no {key!r}; expected keys {list(SSM_KEYS)}, "
                                 f"got {sorted(values)}")
            try:
                numbers.append(float(values[key]))
            except ValueError:
                raise ValueError(f"SSM sample at {t_s:.6f} s: {key} = {values[key]!r} is not a number") from None
        mode = values.get("mode")
        if mode not in SSM_MODES:
            raise ValueError(f"SSM sample at {t_s:.6f} s: mode = {mode!r}; expected one of {SSM_MODES}")
        return cls(float(t_s), *numbers, mode)

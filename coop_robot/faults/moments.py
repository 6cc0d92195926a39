"""Moments of a turn, detected from what the graph publishes (no ROS).

:class:`MomentTracker` is fed the controller's events (``/controller/events``), the partner's
phase (``/sim/partner/phase``) and the ground-truth end effector (``/sim/ground_truth/robot_ee``),
each with its sim time, and reports every moment of :data:`coop_robot.faults.plan.MOMENTS` as it
happens, with how many times it has happened so far. A fault planned for ``reach`` occurrence 2
fires at the second ``reach_start``.

``before_commit`` has no event of its own (the controller announces the commit, not the moment
before it). It is the first end-effector position of an uncommitted reach within
:func:`before_commit_distance_m` of the zone: the distance the controller's nominal reach has
:data:`BEFORE_COMMIT_LEAD_S` before its commit, from the controller core itself. A reach held at
its waiting point is farther out (0.28 m with the defaults) and reaches it only once it goes on.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from coop_robot.geometry import Zone

#: Path time (s) before the nominal reach's commit at which ``before_commit`` is reported.
BEFORE_COMMIT_LEAD_S = 0.15
#: Controller events that end an uncommitted reach without a commit.
_REACH_ENDS = ("abort", "watchdog", "estop", "home")


@lru_cache(maxsize=1)
def before_commit_distance_m() -> float:
    """Distance (m) of the end effector from the zone :data:`BEFORE_COMMIT_LEAD_S` of path time
    before the commit of the controller's nominal reach (default configuration)."""
    from coop_robot.control.controller import ArmController

    core = ArmController()
    q = core.nominal_reach.state_at(max(core.nominal_commit_s - BEFORE_COMMIT_LEAD_S, 0.0))[0]
    return float(core.config.zone.distance_m(core.kinematics.fk(q)))


class Moment(NamedTuple):
    """``name`` happened for the ``occurrence``-th time at sim time ``t_s``."""

    name: str
    occurrence: int
    t_s: float


class MomentTracker:
    """Turns the graph's events into :class:`Moment` s (see the module docstring)."""

    def __init__(self, zone: Zone, before_commit_m: float | None = None) -> None:
        self.zone = zone
        self.before_commit_m = before_commit_distance_m() if before_commit_m is None else before_commit_m
        self.counts: dict[str, int] = {}
        self._uncommitted_reach = False     # a reach started and neither committed nor ended
        self._before_commit_seen = False    # ... and its before_commit was reported
        self._phase: str | None = None
        self._partner_reached = False       # the partner's current turn has had its reach moment

    def _moment(self, name: str, t_s: float) -> list[Moment]:
        self.counts[name] = self.counts.get(name, 0) + 1
        return [Moment(name, self.counts[name], t_s)]

    def controller_event(self, name: str, t_s: float) -> list[Moment]:
        """An event of ``/controller/events``."""
        if name == "reach_start":
            self._uncommitted_reach, self._before_commit_seen = True, False
            return self._moment("reach", t_s)
        if name == "entry_commit" or name in _REACH_ENDS:
            self._uncommitted_reach = False
        if name == "act_start":
            return self._moment("robot_act", t_s)
        return []

    def partner_phase(self, phase: str, t_s: float) -> list[Moment]:
        """A phase of ``/sim/partner/phase`` (reported once per change)."""
        if phase == self._phase:
            return []
        self._phase = phase
        if phase == "reaching" and not self._partner_reached:
            self._partner_reached = True   # a hesitation's second "reaching" is the same reach
            return self._moment("partner_reach", t_s)
        if phase == "dwelling":
            return self._moment("partner_dwell", t_s)
        if phase == "withdrawing":
            self._partner_reached = False
        return []

    def robot_ee(self, position_m, t_s: float) -> list[Moment]:
        """A ground-truth end-effector position (world, m)."""
        if not self._uncommitted_reach or self._before_commit_seen:
            return []
        if self.zone.distance_m(position_m) <= self.before_commit_m:
            self._before_commit_seen = True
            return self._moment("before_commit", t_s)
        return []

"""The controls of the synchronous joint-action task (issue 14): ``eager``, ``reactive`` and ``oracle``.

In the sync task "act" sends the robot to its own target outside the zone (the controller's
``task: sync``); a policy says *when* in each trial. :class:`SyncPolicy` keeps the trial
bookkeeping: a trial is open from its cue (``Observation.sync_cue_s``) until the robot has reached
its target (the controller's ``acting``) -- then the policy says "wait" until the next cue, so the
robot reaches once per trial. Stale or missing perception is "wait" (the controller takes back a
reach on anything but "act"). There is no liveness bound: every control acts in every trial by its
own rule.

* ``eager``: "act" at the cue.
* ``reactive``: "act" once the partner's hand is perceived moving, at ``onset_speed_mps`` or faster,
  after the cue -- the robot starts on seeing the partner start.
* ``oracle`` (sim truth, benchmarks only): knows when the partner will arrive as planned now
  (``Observation.partner_planned_arrival_s``) and says "act" ``robot_arrival_after_s`` (the robot's
  own reach time) plus ``lead_s`` before it, so the arrivals coincide. A partner who re-times its
  reach on seeing the robot start moves its arrival; the oracle cannot take back a reach under way.

The ``mirror`` network has no sync checkpoint yet: ``make_policy("mirror", task="sync")`` says so.
"""

from __future__ import annotations

import math

import numpy as np

from coop_robot.policy.base import Decision, Observation, Policy, PolicyError, register


class SyncPolicy(Policy):
    """Trial bookkeeping for the sync task; subclasses say when to start in :meth:`decide`."""

    task = "sync"
    name = "sync"

    def reset(self) -> None:
        super().reset()
        self._trial_cue_s: float | None = None
        self.reached = False  # the robot has reached its target in the open trial

    def step(self, obs: Observation) -> Decision:
        cue = obs.sync_cue_s
        if cue != self._trial_cue_s:
            self._trial_cue_s = cue
            self.reached = False
            self.new_trial(obs)
        if cue is not None and obs.robot_state == "acting":
            self.reached = True
        fresh = obs.partner_in_zone is not None and obs.perception_age_s <= self.stale_after_s
        if not fresh or cue is None or self.reached:
            return Decision("wait")
        if obs.robot_state == "reaching":
            return Decision("act")  # keep going: the controller and its separation monitoring watch the hand
        if obs.robot_state != "home":
            return Decision("wait")
        return self.decide(obs)

    def new_trial(self, obs: Observation) -> None:
        """A cue (or the end of a trial: ``sync_cue_s`` None) was seen."""


@register("eager", task="sync")
class SyncEagerPolicy(SyncPolicy):
    name = "eager"

    def decide(self, obs: Observation) -> Decision:
        return Decision("act")


@register("reactive", task="sync")
class SyncReactivePolicy(SyncPolicy):
    name = "reactive"

    def __init__(self, onset_speed_mps: float = 0.15, stale_after_s: float = 0.5) -> None:
        if isinstance(onset_speed_mps, bool) or not isinstance(onset_speed_mps, (int, float)) \
                or not (math.isfinite(onset_speed_mps) and onset_speed_mps > 0.0):
            raise PolicyError(f"onset_speed_mps must be a finite speed > 0 (m/s), got {onset_speed_mps!r}")
        self.onset_speed_mps = float(onset_speed_mps)
        super().__init__(stale_after_s)

    def reset(self) -> None:
        super().reset()
        self.partner_moving = False

    def new_trial(self, obs: Observation) -> None:
        self.partner_moving = False

    def decide(self, obs: Observation) -> Decision:
        velocity = np.asarray(obs.partner_velocity_mps, dtype=float)
        if np.all(np.isfinite(velocity)) and float(np.linalg.norm(velocity)) >= self.onset_speed_mps:
            self.partner_moving = True
        return Decision("act" if self.partner_moving else "wait")


@register("oracle", task="sync")
class SyncOraclePolicy(SyncPolicy):
    name = "oracle"

    def __init__(self, lead_s: float = 0.0, stale_after_s: float = 0.5) -> None:
        if isinstance(lead_s, bool) or not isinstance(lead_s, (int, float)) or not math.isfinite(lead_s):
            raise PolicyError(f"lead_s must be a finite number of seconds, got {lead_s!r}")
        self.lead_s = float(lead_s)
        super().__init__(stale_after_s)

    def decide(self, obs: Observation) -> Decision:
        planned, reach = obs.partner_planned_arrival_s, obs.robot_arrival_after_s
        if planned is None or reach is None:
            return Decision("wait")
        return Decision("act" if obs.t_s >= planned - reach - self.lead_s else "wait")

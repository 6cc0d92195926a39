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

* ``mirror`` (:class:`SyncMirrorPolicy`): the mirror network (the same class as turn-taking's, with
  the sync task's context) trained for the sync task (``coop-robot train --config
  config/training/sync.yaml``); the shipped checkpoint is ``checkpoints/mirror_sync.pt``. At home in
  an open trial it says "act" when P(act) >= ``act_threshold``; once under way it keeps "act" like
  the controls. A turn-taking checkpoint is refused with an error naming the task.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from coop_robot.policy.base import Decision, Observation, Policy, PolicyError, register
from coop_robot.policy.mirror import MirrorPolicy

SYNC_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "mirror_sync.pt"


class SyncTrialBook:
    """Which trial is open and whether the robot has reached its target in it: the bookkeeping of
    every sync policy, and the one rule of when a sync policy may choose (:meth:`update`)."""

    def __init__(self) -> None:
        self.cue_s: float | None = None
        self.reached = False  # the robot has reached its target in the open trial

    @property
    def open(self) -> bool:
        """A trial is cued and the robot has not reached its target in it yet."""
        return self.cue_s is not None and not self.reached

    def update(self, obs: Observation, stale_after_s: float) -> tuple[bool, Decision | None]:
        """Take this tick's observation: ``(new trial, decision)``, the decision None when the
        policy chooses (fresh perception, an open trial, the robot at home); otherwise "wait", or
        "act" to keep a reach under way going (the controller and its separation monitoring watch
        the hand)."""
        cue = obs.sync_cue_s
        new = cue != self.cue_s
        if new:
            self.cue_s = cue
            self.reached = False
        if cue is not None and obs.robot_state == "acting":
            self.reached = True
        fresh = obs.partner_in_zone is not None and obs.perception_age_s <= stale_after_s
        if not fresh or not self.open:
            return new, Decision("wait")
        if obs.robot_state == "reaching":
            return new, Decision("act")
        if obs.robot_state != "home":
            return new, Decision("wait")
        return new, None


class SyncPolicy(Policy):
    """Trial bookkeeping for the sync task; subclasses say when to start in :meth:`decide`."""

    task = "sync"
    name = "sync"

    def reset(self) -> None:
        super().reset()
        self.trial = SyncTrialBook()

    @property
    def reached(self) -> bool:
        return self.trial.reached

    def step(self, obs: Observation) -> Decision:
        new, decision = self.trial.update(obs, self.stale_after_s)
        if new:
            self.new_trial(obs)
        return decision if decision is not None else self.decide(obs)

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


@register("mirror", task="sync")
class SyncMirrorPolicy(MirrorPolicy):
    """The mirror network in the sync task (module docstring). Its recurrent state runs every tick;
    the trial bookkeeping is :class:`SyncTrialBook`'s, as for the controls (no liveness bound: it
    is turn-taking's). Parameters as :class:`~coop_robot.policy.mirror.MirrorPolicy`'s."""

    task = "sync"
    name = "mirror"
    default_checkpoint = SYNC_CHECKPOINT
    _train_hint = ("train one with `coop-robot train --config config/training/sync.yaml --out DIR` "
                   "(docs/science_sync.md) or pass the policy parameter checkpoint:=/path/to/mirror_sync.pt")

    def reset(self) -> None:
        self.trial = SyncTrialBook()
        super().reset()

    def step(self, obs: Observation) -> Decision:
        _, decision = self.trial.update(obs, self.stale_after_s)
        out = self._advance(obs)
        return decision if decision is not None else self.choose(obs, out)

    def choose(self, obs: Observation, out: dict[str, float]) -> Decision:
        """At home in an open trial: "act" when P(act) reaches ``act_threshold``."""
        return Decision("act" if out["p_act"] >= self.act_threshold else "wait")

    def decide(self, obs: Observation) -> Decision:  # the turn-taking entry point; step() does the work
        return self.choose(obs, self._advance(obs))

    def _tick_context(self, obs: Observation) -> tuple:
        return (obs.robot_state, self.trial.open, self.trial.cue_s)

    def _context_vector(self, context: tuple, t_row: float, age_s: float):
        state, trial_open, cue_s = context
        return self._mn.sync_context(state, trial_open, t_row - cue_s if cue_s is not None else math.nan, age_s,
                                     self.spec.time_horizon_s, self.spec.perception_age_horizon_s)

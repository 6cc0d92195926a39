"""The simulated person in the synchronous joint-action task (issue 14, docs/science_sync.md).

Each trial starts with a cue (:meth:`SyncPartner.cue`). The person then reaches from rest to its
own target (outside the shared zone, on its side: ``sync_partner_target_m`` in config/sync.yaml)
along a straight minimum-jerk path, dwells there, and withdraws to rest. Its timing comes from the
profile (:class:`~coop_robot.partner.profile.SyncTiming` and the turn-taking distributions):

* **own timing**: it starts ``start_delay_s`` after the cue (plus the profile's occasional
  ``pause``); the reach takes ``reach_duration_s``, with the profile's ``hesitation``; then
  ``dwell_s`` and ``withdraw_duration_s`` (the turn-taking adaptation's timing scale is not
  used here).
* **reacting to the robot**: the person watches the robot's end effector
  (:meth:`SyncPartner.see_robot`). Once it has moved :data:`ROBOT_ONSET_M` from where it was at
  the cue (the robot's visible start, at ``t_o``), and if the person has not started yet,
  ``robot_reaction_s`` later it re-times its reach: it aims at an arrival ``follow_weight`` of the
  way from its own planned arrival toward its estimate of the robot's, ``t_o +
  robot_duration_estimate_s`` plus this trial's estimation error (N(0, ``estimate_sd_s``)), and
  starts then -- never before that reaction. A reach under way is not re-timed.
* **adapting** (``adaptation_rate`` > 0): after each trial (:meth:`SyncPartner.end_trial`) the
  estimate of the robot's reach time moves that fraction of the way to what it saw (visible start
  to arrival).

Every random draw of a trial happens at its cue, in a fixed order, from the generator given; the
turn-taking :class:`~coop_robot.partner.model.PartnerModel` is not involved, so no turn-taking
random stream changes. The planned arrival (the moment the glove comes within the task's arrival
radius of the target, :mod:`coop_robot.timing.sync`) is known whenever the reach is planned
(:attr:`SyncPartner.planned_arrival_s`), for the oracle control.
"""

from __future__ import annotations

import math

import numpy as np

from coop_robot.geometry import Zone
from coop_robot.partner.model import Segment
from coop_robot.partner.profile import DurationDistribution, PartnerProfile, ReactionTime

#: The robot's end effector has visibly started to move once it is this far (m) from where it was at the cue.
ROBOT_ONSET_M = 0.02
SYNC_PHASES = ("resting", "waiting", "reaching", "hesitating", "dwelling", "withdrawing")


class SyncPartner:
    """The person's hand in the sync task; call :meth:`step` every physics step.

    Args:
        profile: the partner's timing (its ``sync`` section and the turn-taking distributions).
        rng: the only source of randomness.
        rest_m: the hand's rest point (``world``, m), outside the zone.
        target_m: its sync target (``world``, m), outside the zone.
        zone: the shared zone (the rest point and the target must be outside it).
        arrival_radius_m: the task's arrival radius (for :attr:`planned_arrival_s`).
    """

    def __init__(self, profile: PartnerProfile, rng: np.random.Generator, rest_m, target_m, zone: Zone,
                 arrival_radius_m: float) -> None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self._rest = np.asarray(rest_m, dtype=float).copy()
        self._target = np.asarray(target_m, dtype=float).copy()
        for name, p in (("rest_m", self._rest), ("sync target_m", self._target)):
            if p.shape != (3,) or not np.all(np.isfinite(p)):
                raise ValueError(f"partner {name} must be 3 finite coordinates (m), got {p.tolist()!r}")
            if zone.contains(p):
                raise ValueError(f"partner {name} {p.tolist()} must be outside the zone "
                                 f"(min {list(zone.min_m)}, max {list(zone.max_m)})")
        self._path = self._target - self._rest
        length = float(np.linalg.norm(self._path))
        if not 0.0 < arrival_radius_m < length:
            raise ValueError(f"arrival_radius_m must be > 0 and shorter than the reach ({length:.3f} m), "
                             f"got {arrival_radius_m!r}")
        self._arrival_fraction = 1.0 - arrival_radius_m / length
        self.profile = profile
        self._rng = rng
        self._now = -math.inf
        self._hand = self._rest.copy()
        self._segments: list[Segment] = []
        self._idx = 0
        #: What the partner expects the robot's reach to take, visible start to arrival (s); adapts.
        self.robot_estimate_s = float(profile.sync.robot_duration_estimate_s)
        self._cue_s: float | None = None
        self._robot_from: np.ndarray | None = None
        self._robot_onset_s: float | None = None
        self._retime_at_s: float | None = None
        self._trial_draws: dict[str, float] = {}

    # ------------------------------------------------------------------ properties
    @property
    def phase(self) -> str:
        """One of :data:`SYNC_PHASES`."""
        if self._idx >= len(self._segments):
            return "resting"
        return self._segments[self._idx].phase

    @property
    def hand_m(self) -> np.ndarray:
        return self._hand.copy()

    @property
    def target_m(self) -> np.ndarray:
        return self._target.copy()

    @property
    def robot_onset_s(self) -> float | None:
        """When the person saw the robot start to move in this trial (s); None until then."""
        return self._robot_onset_s

    @property
    def planned_start_s(self) -> float | None:
        """When the current trial's reach starts (or started) (s); None between trials."""
        for seg in self._segments:
            if seg.phase == "reaching":
                return seg.start_s
        return None

    @property
    def planned_arrival_s(self) -> float | None:
        """When the glove comes within the arrival radius of the target in the current trial (s,
        as planned now: a re-timing moves it); None between trials."""
        f = self._arrival_fraction
        for seg in self._segments:
            if seg.phase == "reaching" and seg.s_from < f <= seg.s_to:
                return seg.time_at_fraction(f)
        return None

    # ------------------------------------------------------------------ trial
    def cue(self, t_s: float) -> None:
        """A trial starts at ``t_s``: draw its timing and plan the reach. The hand must be at rest."""
        if self.phase != "resting":
            raise RuntimeError(f"cue at {t_s:.3f} s while the partner is {self.phase}; expected it at rest")
        p, sync = self.profile, self.profile.sync
        # Every draw, every trial, in this order (a trial's randomness does not depend on the robot).
        delay_s = self._reaction(sync.start_delay_s or p.reaction_time_s)
        pause_draw = float(self._rng.random())
        pause_s = self._uniform(p.pause.duration_s.min_s, p.pause.duration_s.max_s)
        robot_reaction_s = self._reaction(sync.robot_reaction_s or p.reaction_time_s)
        estimate_error_s = float(self._rng.normal(0.0, sync.estimate_sd_s)) if sync.estimate_sd_s > 0 else 0.0
        has_hesitation = float(self._rng.random()) < p.hesitation.probability
        hes_at = self._uniform(*p.hesitation.at_fraction)
        hes_s = self._uniform(p.hesitation.duration_s.min_s, p.hesitation.duration_s.max_s)
        reach_s = self._duration(p.reach_duration_s)
        dwell_s = self._duration(p.dwell_s)
        withdraw_s = self._duration(p.withdraw_duration_s)
        if pause_draw < p.pause.probability:
            delay_s += pause_s
        self._trial_draws = {"robot_reaction_s": robot_reaction_s, "estimate_error_s": estimate_error_s,
                             "reach_s": reach_s, "hesitation_at": hes_at if has_hesitation else math.nan,
                             "hesitation_s": hes_s, "dwell_s": dwell_s, "withdraw_s": withdraw_s}
        self._cue_s = float(t_s)
        self._robot_from = None
        self._robot_onset_s = None
        self._retime_at_s = None
        self._plan(float(t_s), float(t_s) + delay_s)

    def see_robot(self, t_s: float, robot_ee_m) -> None:
        """What the person sees of the robot at ``t_s``: its end effector (``world``, m)."""
        if self._cue_s is None or t_s < self._cue_s:
            return
        ee = np.asarray(robot_ee_m, dtype=float)
        if self._robot_from is None:
            self._robot_from = ee.copy()
            return
        if self._robot_onset_s is None and np.linalg.norm(ee - self._robot_from) >= ROBOT_ONSET_M:
            self._robot_onset_s = float(t_s)
            start = self.planned_start_s
            if start is not None and start > t_s:  # not started yet: it will re-time after its reaction
                self._retime_at_s = float(t_s) + self._trial_draws["robot_reaction_s"]

    def end_trial(self, robot_start_s: float | None, robot_arrival_s: float | None) -> None:
        """The trial is over; the person saw the robot's reach from ``robot_start_s`` (its visible
        start as this model saw it, if any) to ``robot_arrival_s``. Adapts the estimate of the robot's
        reach time, then forgets the trial."""
        rate = self.profile.sync.adaptation_rate
        onset = self._robot_onset_s if self._robot_onset_s is not None else robot_start_s
        if rate > 0.0 and onset is not None and robot_arrival_s is not None and robot_arrival_s > onset:
            self.robot_estimate_s += rate * ((robot_arrival_s - onset) - self.robot_estimate_s)
        self._cue_s = None

    # ------------------------------------------------------------------ stepping
    def step(self, t_s: float, robot_in_zone: bool = False, *, contact: bool = False) -> np.ndarray:
        """Advance to ``t_s`` (s) and return the hand position (``world``, m). ``robot_in_zone`` and
        ``contact`` are accepted for the turn-taking model's interface and not used."""
        t_s = float(t_s)
        if not math.isfinite(t_s) or t_s < self._now:
            raise ValueError(f"step time must be finite and non-decreasing, got {t_s!r} s after {self._now!r} s")
        self._now = t_s
        if self._retime_at_s is not None and t_s >= self._retime_at_s:
            self._retime(self._retime_at_s)
            self._retime_at_s = None
        while self._idx < len(self._segments) and self._segments[self._idx].end_s <= t_s:
            self._idx += 1
        if self._idx >= len(self._segments):
            self._hand = self._rest.copy()
        else:
            self._hand = self._rest + self._segments[self._idx].fraction_at(t_s) * self._path
        return self._hand.copy()

    # ------------------------------------------------------------------ internals
    def _retime(self, now_s: float) -> None:
        """Re-time a reach that has not started: aim ``follow_weight`` of the way toward the
        estimated robot arrival, starting no earlier than ``now_s``."""
        start, arrival = self.planned_start_s, self.planned_arrival_s
        if start is None or arrival is None or start <= now_s:
            return
        sync = self.profile.sync
        robot_arrival = self._robot_onset_s + self.robot_estimate_s + self._trial_draws["estimate_error_s"]
        aim = (1.0 - sync.follow_weight) * arrival + sync.follow_weight * robot_arrival
        self._plan(self._cue_s, max(now_s, start + (aim - arrival)))

    def _plan(self, cue_s: float, start_s: float) -> None:
        d = self._trial_draws
        segs: list[Segment] = []
        t = cue_s

        def add(phase: str, duration_s: float, s_from: float, s_to: float) -> None:
            nonlocal t
            segs.append(Segment(phase, t, duration_s, s_from, s_to))
            t += duration_s

        add("waiting", start_s - cue_s, 0.0, 0.0)
        reach_s = d["reach_s"]
        hes_at = d["hesitation_at"]
        if math.isfinite(hes_at):
            add("reaching", reach_s * math.sqrt(hes_at), 0.0, hes_at)
            add("hesitating", d["hesitation_s"], hes_at, hes_at)
            add("reaching", reach_s * math.sqrt(1.0 - hes_at), hes_at, 1.0)
        else:
            add("reaching", reach_s, 0.0, 1.0)
        add("dwelling", d["dwell_s"], 1.0, 1.0)
        add("withdrawing", d["withdraw_s"], 1.0, 0.0)
        self._segments = segs
        self._idx = 0

    def _uniform(self, lo: float, hi: float) -> float:
        return float(self._rng.uniform(lo, hi)) if hi > lo else float(lo)

    def _duration(self, dist: DurationDistribution) -> float:
        return max(dist.min_s, float(self._rng.normal(dist.mean_s, dist.sd_s)))

    def _reaction(self, r: ReactionTime) -> float:
        base = math.exp(math.log(r.median_s) + r.sigma * float(self._rng.standard_normal()))
        return min(max(base, r.min_s), r.max_s)


"""A stochastic model of a person taking turns with the robot in the shared zone.

The partner goes first (after the profile's initial delay). A partner turn is: react, reach from
rest into the zone along the straight rest -> target line (minimum-jerk), dwell, withdraw to rest.
The target is one of the world's task objects, chosen when the turn is planned as the profile's
``task_objects`` section says (fixed, cycling, or random; see :mod:`coop_robot.partner.profile`),
so the path, its zone-entry fraction and the crossing times differ from turn to turn; path
fractions (false-start depth, hesitation point) are of that turn's path.
Then the partner waits for the robot: once the robot's end effector has *entered and then left*
the zone, the partner samples a reaction time (counted from the robot's exit) and plans its next
turn. A robot visit counts as the robot's turn when the robot is in the zone at some moment from
the start of the partner's withdraw on (so a robot that came in during the dwell counts, one
that barged in and out during the partner's reach does not: the partner then still waits for
the robot's turn, as the policies do). If the robot leaves before the withdraw has finished,
the next turn is planned when the hand is back at rest.

Each turn is planned in full the moment it is decided (a list of :class:`Segment`), so the times
the hand will cross the zone boundary are known exactly in advance (``planned_enter_s`` /
``planned_exit_s``, and ``planned_turn_exit_s``, the turn-ending exit, which the simulation
publishes for the oracle policy). A turn may contain:

* a **false start**: a reach part-way along the path (``depth_fraction``), a return to rest and a
  pause at rest, before the real reach. A deep false start enters the zone briefly, so one turn
  can contain two enter/exit pairs;
* a **hesitation**: the real reach stops at ``at_fraction`` of the path, holds, then continues.
  Both halves are minimum-jerk moves.

Partial moves over a path fraction ``f`` take ``reach_duration * sqrt(f)``: shorter movements
are quicker but not proportionally (movement time grows sub-linearly with distance, as in
Fitts' law), which keeps their accelerations human-like.

A person does not start moving toward the zone while the robot is in it: whenever a reach
segment (false-start reach or either half of the real reach) is due while ``robot_in_zone`` is
true, the rest of the timeline is postponed until the robot has left, and the planned times move
with it.

**Adaptation** (optional learning rule, ``profile.adaptation``). The model keeps a timing scale
(starts at 1.0) that multiplies the sampled reaction, reach, dwell and withdraw times. Once per
completed partner turn it is updated from that turn's outcome:

* the turn was *disturbed* when the robot was in the zone while the hand was in it, the robot
  entered within ``NEAR_MISS_S`` (0.3 s) after the hand left the zone, or the caller reported a
  physics contact (``step(..., contact=True)``) during the turn: the person gets cautious,
  ``scale = min(max_scale, scale * (1 + slow_down_rate))``;
* otherwise it went smoothly and the person speeds up,
  ``scale = max(min_scale, scale * (1 - speed_up_rate))``.

(A profile's single ``rate`` means ``speed_up_rate = rate``, ``slow_down_rate = 2 * rate``.)

The outcome is settled when the turn is complete (hand back at rest) and ``NEAR_MISS_S`` has
passed since the hand's last exit from the zone, or when the next turn is planned, whichever
comes first.

The model draws random numbers only from the ``numpy.random.Generator`` it is given, so a seeded
generator gives identical trajectories. The random object choice uses a child stream of it
(``Generator.spawn``, which does not advance the parent): the timing draws are the same whichever
object is chosen, and a ``fixed`` profile moves exactly as it did before task objects existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from coop_robot.geometry import Zone, minimum_jerk
from coop_robot.partner.profile import DurationDistribution, PartnerProfile

PHASES = ("initial_wait", "waiting_for_robot", "reacting", "reaching", "hesitating", "false_start_reach",
          "false_start_return", "false_start_pause", "dwelling", "withdrawing")

# The robot entering this soon after the hand left the zone counts as a near miss (adaptation).
NEAR_MISS_S = 0.3


@dataclass(frozen=True)
class Segment:
    """One piece of a planned partner turn.

    The hand moves along the rest -> target line from path fraction ``s_from`` to ``s_to`` over
    ``[start_s, start_s + duration_s)`` with a minimum-jerk profile (stationary when equal).
    ``gated``: a move toward the zone that must not start while the robot is in the zone.
    ``hold_phase``: the phase reported while a gated segment is postponed.
    """

    phase: str
    start_s: float
    duration_s: float
    s_from: float
    s_to: float
    gated: bool = False
    hold_phase: str = ""
    ends_turn: bool = False  # the withdraw: the robot's turn is watched from its start; the turn ends with it

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def moving(self) -> bool:
        return self.s_from != self.s_to

    def fraction_at(self, t_s: float) -> float:
        """Path fraction at ``t_s`` (clamped to the segment's ends outside it)."""
        if not self.moving:
            return self.s_from
        s, _, _ = minimum_jerk(t_s - self.start_s, self.duration_s)
        return self.s_from + (self.s_to - self.s_from) * float(s)

    def time_at_fraction(self, fraction: float) -> float:
        """Time at which this (moving) segment passes path fraction ``fraction``."""
        u = (fraction - self.s_from) / (self.s_to - self.s_from)
        return self.start_s + self.duration_s * _inverse_minimum_jerk(u)


def _inverse_minimum_jerk(u: float) -> float:
    """Normalised time ``tau`` in [0, 1] at which the minimum-jerk phase equals ``u`` (bisection)."""
    u = min(max(u, 0.0), 1.0)
    lo, hi = 0.0, 1.0
    for _ in range(60):  # 2**-60 of the segment: far below any clock resolution
        mid = 0.5 * (lo + hi)
        if mid**3 * (10.0 - 15.0 * mid + 6.0 * mid * mid) < u:
            lo = mid
        else:
            hi = mid
    return hi


def _zone_entry_fraction(rest: np.ndarray, target: np.ndarray, zone: Zone) -> float:
    """Smallest path fraction f in (0, 1] where ``rest + f * (target - rest)`` is inside the box."""
    lo_m = np.asarray(zone.min_m, dtype=float)
    hi_m = np.asarray(zone.max_m, dtype=float)
    d = target - rest
    f_in, f_out = 0.0, 1.0
    for axis in range(3):
        if d[axis] == 0.0:
            continue  # the target is inside, so this axis is inside along the whole path
        a = (lo_m[axis] - rest[axis]) / d[axis]
        b = (hi_m[axis] - rest[axis]) / d[axis]
        f_in = max(f_in, min(a, b))
        f_out = min(f_out, max(a, b))
    # Guard against rounding putting the boundary point a hair outside the closed box.
    while not zone.contains(rest + f_in * d) and f_in < 1.0:
        f_in = math.nextafter(f_in, 2.0)
    return f_in


class PartnerModel:
    """The simulated person's hand: call :meth:`step` every physics step with the sim time.

    Args:
        profile: timing statistics and task-object choice (:func:`coop_robot.partner.profile.load_profile`).
        rng: the only source of randomness.
        rest_m: hand (glove centre) rest position in ``world`` (m), outside the zone.
        task_objects_m: hand targets in ``world`` (m), inside the zone: one ``(x, y, z)`` or a
            sequence of them (the world's task objects; the first is the nominal one).
        zone: the shared zone.
        start_time_s: sim time at which the session starts (the initial delay counts from here).
    """

    def __init__(self, profile: PartnerProfile, rng: np.random.Generator, rest_m, task_objects_m, zone: Zone,
                 start_time_s: float = 0.0) -> None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self._rest = self._point(rest_m, "rest_m")
        self._objects = self._points(task_objects_m)
        if zone.contains(self._rest):
            raise ValueError(f"partner rest_m {self._rest.tolist()} must be outside the zone "
                             f"(min {list(zone.min_m)}, max {list(zone.max_m)})")
        for k, target in enumerate(self._objects):
            if not zone.contains(target):
                raise ValueError(f"partner target_m {target.tolist()} (task object {k}) must be inside the zone "
                                 f"(min {list(zone.min_m)}, max {list(zone.max_m)})")
        if not math.isfinite(start_time_s):
            raise ValueError(f"start_time_s must be finite, got {start_time_s!r}")
        self._check_choice(profile, len(self._objects))
        self.profile = profile
        self.zone = zone
        self._rng = rng
        self._object_rng = rng.spawn(1)[0]  # the object choice's own stream (see the module docstring)
        self._entry_fractions = [_zone_entry_fraction(self._rest, t, zone) for t in self._objects]
        self._turns_planned = 0
        self._object_index = 0
        self._target = self._objects[0]
        self._path = self._target - self._rest
        self.zone_entry_fraction = self._entry_fractions[0]  # of the current turn's path

        self._now = float(start_time_s)
        self._hand = self._rest.copy()
        self._hand_in = False
        self._robot_in = False
        self._scale = 1.0
        self._turns_completed = 0
        self.last_reaction_s: float | None = None  # sampled reaction of the latest planned turn (s)

        self._segments: list[Segment] = []
        self._idx = 0  # first segment not yet finished
        self._intervals: list[tuple[float, float]] = []  # planned (enter_s, exit_s) of the current turn
        self._watching_robot = False  # armed when the withdraw starts
        self._robot_entered = False
        self._robot_exit_s: float | None = None  # robot exit awaiting a plan
        self._turn_disturbed = False
        self._outcome_pending = False
        self._last_hand_exit_s: float | None = None

        self._plan_turn(self._now, initial=True)

    # ------------------------------------------------------------------------------- properties
    @property
    def phase(self) -> str:
        """One of :data:`PHASES`."""
        if self._idx >= len(self._segments):
            return "waiting_for_robot"
        seg = self._segments[self._idx]
        if seg.gated:  # due but not started: held while the robot is in the zone
            return seg.hold_phase
        return seg.phase

    @property
    def planned_enter_s(self) -> float | None:
        """When the hand enters the zone on its current or next planned visit (s, sim time).

        While the hand is inside, this is the (past) time it entered. ``None`` when no further
        visit is planned (e.g. waiting for the robot).
        """
        visit = self._current_visit()
        return None if visit is None else visit[0]

    @property
    def planned_exit_s(self) -> float | None:
        """When the hand next leaves the zone (s, sim time): the first exit at or after now.

        A false start that enters the zone makes this the false start's (early) exit; after it,
        the real reach's exit. ``None`` when no further visit is planned.
        """
        visit = self._current_visit()
        return None if visit is None else visit[1]

    @property
    def planned_turn_exit_s(self) -> float | None:
        """When the hand leaves the zone for the last time in the current turn (s, sim time): the
        turn-ending exit. During a false start that enters the zone, and in the pause after it,
        this is the real reach's exit, not the false start's. ``None`` when no further visit is
        planned."""
        if self._current_visit() is None:
            return None
        return self._intervals[-1][1]

    @property
    def target_m(self) -> np.ndarray:
        """The current (or latest) turn's hand target in ``world`` (m): one of :attr:`task_objects_m`."""
        return self._target.copy()

    @property
    def task_object_index(self) -> int:
        """Index in :attr:`task_objects_m` of the current (or latest) turn's target."""
        return self._object_index

    @property
    def task_objects_m(self) -> np.ndarray:
        """All task objects (hand targets) the partner may reach for, ``(N, 3)`` in ``world`` (m)."""
        return self._objects.copy()

    @property
    def turns_completed(self) -> int:
        """Partner turns finished: hand back at rest after a real (not false-start) reach."""
        return self._turns_completed

    @property
    def timing_scale(self) -> float:
        """Adaptation state: multiplies sampled reaction, reach, dwell and withdraw times."""
        return self._scale

    @property
    def hand_in_zone(self) -> bool:
        """Whether the current hand position is inside the zone (``Zone.contains``)."""
        return self._hand_in

    @property
    def hand_m(self) -> np.ndarray:
        """Current hand (glove centre) position in ``world`` (m)."""
        return self._hand.copy()

    @property
    def now_s(self) -> float:
        """Time of the latest :meth:`step` (or the start time)."""
        return self._now

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The current turn's planned timeline (empty before any plan)."""
        return tuple(self._segments)

    # ------------------------------------------------------------------------------- stepping
    def step(self, t_s: float, robot_in_zone: bool, *, contact: bool = False) -> np.ndarray:
        """Advance to sim time ``t_s`` (s) and return the hand position in ``world`` (m).

        ``robot_in_zone``: whether the robot's end effector is inside the zone at ``t_s``.
        ``contact``: optional physics contact between robot and partner (counts as a disturbed
        turn for adaptation).
        """
        t_s = float(t_s)
        if not math.isfinite(t_s) or t_s < self._now:
            raise ValueError(f"step time must be finite and non-decreasing, got {t_s!r} s after {self._now!r} s")
        self._now = t_s
        robot_in = bool(robot_in_zone)
        robot_entered = robot_in and not self._robot_in
        robot_left = self._robot_in and not robot_in
        self._robot_in = robot_in

        if contact:
            self._turn_disturbed = True
        if robot_entered and self._last_hand_exit_s is not None and t_s - self._last_hand_exit_s <= NEAR_MISS_S:
            self._turn_disturbed = True

        if self._watching_robot:
            if robot_entered:
                self._robot_entered = True
            elif robot_left and self._robot_entered:
                self._watching_robot = False
                self._robot_entered = False
                self._robot_exit_s = t_s

        self._gate_reaches(t_s, robot_in)
        self._finish_segments(t_s, robot_in)

        if self._idx >= len(self._segments) and self._robot_exit_s is not None:
            self._settle_outcome()
            reacted_to = self._robot_exit_s
            self._robot_exit_s = None
            self._plan_turn(t_s, initial=False, robot_exit_s=reacted_to)

        self._hand = self._position_at(t_s)
        hand_in = self.zone.contains(self._hand)
        if self._hand_in and not hand_in:
            self._last_hand_exit_s = t_s
        self._hand_in = hand_in
        if hand_in and robot_in:
            self._turn_disturbed = True

        if (self._outcome_pending and self._last_hand_exit_s is not None
                and t_s >= self._last_hand_exit_s + NEAR_MISS_S):
            self._settle_outcome()
        return self._hand.copy()

    # ------------------------------------------------------------------------------- internals
    @staticmethod
    def _point(value, name: str) -> np.ndarray:
        p = np.asarray(value, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ValueError(f"{name} must be 3 finite coordinates (m), got {value!r}")
        return p.copy()

    @staticmethod
    def _points(value) -> np.ndarray:
        try:
            p = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            p = np.empty((0,))
        if p.shape == (3,):
            p = p[None, :]
        if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] != 3 or not np.all(np.isfinite(p)):
            raise ValueError(f"task_objects_m must be one (x, y, z) or a list of them, finite (m), got {value!r}")
        return p.copy()

    @staticmethod
    def _check_choice(profile: PartnerProfile, n_objects: int) -> None:
        """The profile's task_objects section must fit this world's ``n_objects`` objects."""
        choice = profile.task_objects
        where = f"partner profile {profile.name!r}" + (f" ({profile.source})" if profile.source else "")
        if choice.choice in ("fixed", "cycle") and not 0 <= choice.index < n_objects:
            raise ValueError(f"{where}: task_objects.index {choice.index} is not an index of the world's "
                             f"{n_objects} task object(s); expected 0 .. {n_objects - 1}")
        if choice.choice == "weighted" and len(choice.weights) != n_objects:
            raise ValueError(f"{where}: task_objects.weights has {len(choice.weights)} entries, expected one per "
                             f"task object of the world ({n_objects})")

    def _choose_object(self) -> None:
        """Pick the next turn's target (draws only from the object stream) and its path."""
        choice = self.profile.task_objects
        n = len(self._objects)
        if choice.choice == "fixed":
            k = choice.index
        elif choice.choice == "cycle":
            k = (choice.index + self._turns_planned) % n
        elif choice.choice == "uniform":
            k = int(self._object_rng.integers(n))
        else:  # weighted
            w = np.asarray(choice.weights, dtype=float)
            k = int(self._object_rng.choice(n, p=w / w.sum()))
        self._turns_planned += 1
        self._object_index = k
        self._target = self._objects[k]
        self._path = self._target - self._rest
        self.zone_entry_fraction = self._entry_fractions[k]

    def _position_at(self, t_s: float) -> np.ndarray:
        if self._idx >= len(self._segments):
            return self._rest.copy()
        s = self._segments[self._idx].fraction_at(t_s)
        return self._rest + s * self._path

    def _finish_segments(self, t_s: float, robot_in: bool) -> None:
        while self._idx < len(self._segments) and self._segments[self._idx].end_s <= t_s:
            seg = self._segments[self._idx]
            self._idx += 1
            if self._idx < len(self._segments) and self._segments[self._idx].ends_turn:
                # The withdraw starts: from now on a robot visit is the robot's turn. A robot
                # already inside (it came in during the dwell) counts as having entered.
                self._watching_robot = True
                self._robot_entered = robot_in
            if seg.ends_turn:
                self._turns_completed += 1
                self._outcome_pending = True

    def _gate_reaches(self, t_s: float, robot_in: bool) -> None:
        """Confirm due reach segments, or postpone them while the robot is in the zone."""
        for k in range(self._idx, len(self._segments)):
            seg = self._segments[k]
            if seg.start_s > t_s:
                return
            if not seg.gated:
                continue
            if robot_in:
                self._postpone(k, t_s - seg.start_s)
                return
            self._segments[k] = replace(seg, gated=False)  # confirmed: it has started

    def _postpone(self, k: int, delay_s: float) -> None:
        if delay_s <= 0.0:
            return
        seg = self._segments[k]
        prev = self._segments[k - 1] if k > self._idx else None
        shifted = [replace(s, start_s=s.start_s + delay_s) for s in self._segments[k:]]
        if prev is not None and not prev.moving:
            head = self._segments[:k - 1] + [replace(prev, duration_s=prev.duration_s + delay_s)]
        else:
            hold = Segment(seg.hold_phase, seg.start_s, delay_s, seg.s_from, seg.s_from)
            head = self._segments[:k] + [hold]
        self._segments = head + shifted
        self._intervals = self._crossings()

    def _settle_outcome(self) -> None:
        if not self._outcome_pending:
            return
        self._outcome_pending = False
        a = self.profile.adaptation
        if a.enabled:
            if self._turn_disturbed:
                self._scale = min(a.max_scale, self._scale * (1.0 + a.slow_down_rate))
            else:
                self._scale = max(a.min_scale, self._scale * (1.0 - a.speed_up_rate))
        self._turn_disturbed = False

    def _current_visit(self) -> tuple[float, float] | None:
        for enter_s, exit_s in self._intervals:
            if exit_s >= self._now:
                return enter_s, exit_s
        return None

    def _crossings(self) -> list[tuple[float, float]]:
        """(enter_s, exit_s) of every zone visit in the current plan."""
        f_in = self.zone_entry_fraction
        visits: list[tuple[float, float]] = []
        enter_s: float | None = None
        for seg in self._segments:
            if not seg.moving:
                continue
            if seg.s_from < f_in <= seg.s_to:
                enter_s = seg.time_at_fraction(f_in)
            elif seg.s_to < f_in <= seg.s_from:
                exit_s = seg.time_at_fraction(f_in)
                visits.append((enter_s if enter_s is not None else seg.start_s, exit_s))
                enter_s = None
        return visits

    # ------------------------------------------------------------------------------- sampling
    def _uniform(self, lo: float, hi: float) -> float:
        return float(self._rng.uniform(lo, hi)) if hi > lo else float(lo)

    def _duration(self, dist: DurationDistribution) -> float:
        return max(dist.min_s, float(self._rng.normal(dist.mean_s, dist.sd_s)))

    def _sample_reaction_s(self) -> float:
        """One reaction time (s): clipped log-normal times the timing scale, plus an occasional pause."""
        r = self.profile.reaction_time_s
        base = math.exp(math.log(r.median_s) + r.sigma * float(self._rng.standard_normal()))
        reaction = min(max(base, r.min_s), r.max_s) * self._scale
        pause = self.profile.pause
        pause_draw = float(self._rng.random())
        pause_s = self._uniform(pause.duration_s.min_s, pause.duration_s.max_s)
        return reaction + (pause_s if pause_draw < pause.probability else 0.0)

    def _plan_turn(self, now_s: float, *, initial: bool, robot_exit_s: float | None = None) -> None:
        """Sample and lay out the whole next turn, starting at ``now_s``.

        Every draw happens on every turn, in a fixed order, so profiles that differ only in a
        probability consume the random stream identically. The hand is at rest here (the previous
        turn is over), so switching to the new turn's path moves nothing.
        """
        self._choose_object()
        p = self.profile
        scale = self._scale
        if initial:
            wait_phase = "initial_wait"
            wait_s = self._uniform(p.initial_delay_s.min_s, p.initial_delay_s.max_s)
            self.last_reaction_s = None
        else:
            wait_phase = "reacting"
            reaction_s = self._sample_reaction_s()
            self.last_reaction_s = reaction_s
            start = robot_exit_s if robot_exit_s is not None else now_s
            wait_s = max(0.0, start + reaction_s - now_s)

        fs, hes = p.false_start, p.hesitation
        has_false_start = float(self._rng.random()) < fs.probability
        depth = self._uniform(*fs.depth_fraction)
        fs_pause_s = self._uniform(fs.pause_s.min_s, fs.pause_s.max_s)
        has_hesitation = float(self._rng.random()) < hes.probability
        hes_at = self._uniform(*hes.at_fraction)
        hes_s = self._uniform(hes.duration_s.min_s, hes.duration_s.max_s)
        reach_s = self._duration(p.reach_duration_s) * scale
        dwell_s = self._duration(p.dwell_s) * scale
        withdraw_s = self._duration(p.withdraw_duration_s) * scale

        segs: list[Segment] = []
        t = now_s

        def add(phase: str, duration_s: float, s_from: float, s_to: float, **flags) -> None:
            nonlocal t
            segs.append(Segment(phase, t, duration_s, s_from, s_to, **flags))
            t += duration_s

        add(wait_phase, wait_s, 0.0, 0.0)
        reach_hold = wait_phase
        if has_false_start:
            move_s = reach_s * math.sqrt(depth)
            add("false_start_reach", move_s, 0.0, depth, gated=True, hold_phase=wait_phase)
            add("false_start_return", move_s, depth, 0.0)
            add("false_start_pause", fs_pause_s, 0.0, 0.0)
            reach_hold = "false_start_pause"
        if has_hesitation:
            add("reaching", reach_s * math.sqrt(hes_at), 0.0, hes_at, gated=True, hold_phase=reach_hold)
            add("hesitating", hes_s, hes_at, hes_at)
            add("reaching", reach_s * math.sqrt(1.0 - hes_at), hes_at, 1.0, gated=True, hold_phase="hesitating")
        else:
            add("reaching", reach_s, 0.0, 1.0, gated=True, hold_phase=reach_hold)
        add("dwelling", dwell_s, 1.0, 1.0)
        add("withdrawing", withdraw_s, 1.0, 0.0, ends_turn=True)

        self._segments = segs
        self._idx = 0
        self._intervals = self._crossings()

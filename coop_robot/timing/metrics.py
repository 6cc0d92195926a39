"""The one definition of each interaction-timing metric (docs/architecture.md, "Metrics").

Input is a time-ordered stream of occupancy events for both agents -- ``partner_enter``,
``partner_exit``, ``robot_enter``, ``robot_exit`` -- plus ``reach_start`` (the robot starts
moving toward the zone) and ``contact_begin``/``contact_end``. The same segmenter runs in the live
turn tracker node, in the fast headless environment and in offline bag analysis.

Definitions (all times in seconds, on one clock):

* **gap** (floor-transfer offset) of a robot turn = robot entry time - the partner's last exit.
  If the partner was still inside when the robot entered, the exit used is the one that ends that
  stay, so the gap is negative.
* **overlap** = both agents inside the zone at once; per turn, the overlapping seconds within the
  robot's stay (and a turn "has overlap" when that is > 0 or the gap is negative).
* **response latency** = time of the last ``reach_start`` before the robot's entry - the partner's
  exit (negative when the robot anticipates).
* **contact** = any robot-partner physics contact during the turn window (from the previous robot
  exit to this one).
* **throughput** = completed robot-plus-partner turn pairs per minute of session time
  (first partner entry to last robot exit); **pace** = (robot turns + partner turns) per minute of
  the same session time (partner turns: completed ``partner_turn_end`` s when the stream has them,
  else partner zone stays).
* **near miss** = a robot entry within :data:`~coop_robot.partner.model.NEAR_MISS_S` after the
  partner's hand left the zone (the partner model's own "disturbed turn" rule).
* **unfinished-turn entry** = a robot entry while the partner's turn is under way and its final
  withdraw has not started (ground truth ``partner_turn_start`` .. ``partner_withdraw_start``, from
  the partner model's phase via :class:`~coop_robot.timing.tracker.PartnerTurnEdges`): e.g. during a
  false start's pause or a hesitation, which zone occupancy alone scores as a clean turn. It counts
  like an overlap (the turn is not clean). An entry during the withdraw is the robot's turn (the
  partner model's rule), judged by gap, overlap and near miss.
* **aborted reaches** of a robot turn = the ``reach_start`` s since the robot's previous exit (session
  start for the first turn) that did not lead to this entry: reaches the robot began and took back
  (the controller's ``abort`` before the commit point). A robot that dithers -- starts, retreats,
  starts again -- waits as long as one that never starts, but the person sees an arm that keeps
  coming and going.

Separation (speed and separation monitoring, SSM), from samples of the human-robot separation,
the protective separation distance S_p and the robot's closing speed
(:meth:`TurnSegmenter.add_separation`) and the controller's ``ssm_stop`` / ``ssm_scaled`` /
``ssm_resume`` events, per robot turn over the turn's **window**: from the previous robot exit
(session start for the first turn) to this turn's robot exit -- the window contact uses:

* **min_separation_m** and **min_ssm_margin_m** (min of separation - S_p) over the window's samples;
* **ssm_violations** = distinct episodes (consecutive samples) with the robot approaching
  (closing speed > ``APPROACH_SPEED_MPS``, :func:`coop_robot.control.ssm.violates`) inside S_p
  (separation < S_p) that start in the window;
* **protective_stop_s** = time from ``ssm_stop`` to the next ``ssm_resume``/``ssm_scaled``;
  **speed_scaled_s** = time from ``ssm_scaled`` to the next ``ssm_resume``/``ssm_stop`` (split at
  window ends). The session values are the minima and totals over its turns (time after the last
  robot exit is in no turn).

Fluency (Hoffman, "Evaluating fluency in human-robot collaboration", IEEE THMS 2019), over the
session time (first partner entry to last robot exit), from each agent's **activity**: the partner
is active during its turn (``partner_turn_start`` .. ``partner_turn_end``: first reach or false
start moving .. final withdraw finished) when the stream has those events, else while its hand is
in the zone; the robot from ``reach_start`` (or its entry) to the controller's ``home`` when the
stream has ``home`` events, else while it is in the zone.

* **human_idle_fraction** / **robot_idle_fraction** = fraction of session time the agent is not active;
* **concurrent_activity_fraction** = fraction of session time both are active;
* **functional delay** of a handoff = the time from the end of one agent's activity to the start of
  the other's next one, 0 when that starts before the first has ended (Hoffman's definition counts
  waiting only); a start is a handoff when the other agent has been active since this agent's
  previous activity ended. Reported as mean and median per handoff (s) and as the sum over the
  session's handoffs divided by session time (``functional_delay_fraction``).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from coop_robot.control.ssm import violates
from coop_robot.partner.model import NEAR_MISS_S

OCCUPANCY_EVENTS = ("partner_enter", "partner_exit", "robot_enter", "robot_exit")
#: The controller's speed-and-separation-monitoring mode changes (on /controller/events).
SSM_EVENTS = ("ssm_stop", "ssm_scaled", "ssm_resume")
#: Ground truth of the partner's turn (derived from its phase: timing.tracker.PartnerTurnEdges).
PARTNER_TURN_EVENTS = ("partner_turn_start", "partner_withdraw_start", "partner_turn_end")
EVENT_NAMES = (
    *OCCUPANCY_EVENTS, "reach_start", "home", "contact_begin", "contact_end", *SSM_EVENTS, *PARTNER_TURN_EVENTS,
)
_SSM_MODE_OF = {"ssm_stop": "stop", "ssm_scaled": "scaled", "ssm_resume": "free"}

SEPARATION_KEYS = ("min_separation_m", "min_ssm_margin_m", "ssm_violations", "protective_stop_s", "speed_scaled_s",
                   "ssm_samples")
FLUENCY_KEYS = ("human_idle_fraction", "robot_idle_fraction", "concurrent_activity_fraction",
                "functional_delay_fraction", "functional_delay_mean_s", "functional_delay_median_s",
                "functional_delay_handoffs", "partner_active_from", "robot_active_from")
SUMMARY_KEYS = (
    "turns", "median_gap_s", "p90_gap_s", "mean_gap_s", "overlap_rate", "overlap_s_total",
    "contacts", "throughput_per_min", "median_response_latency_s", "partner_turns",
    "session_duration_s", "scored_on", "policy", "partner", "seed",
    "pace_turns_per_min", "near_misses", "unfinished_turn_entries", "aborted_reaches", *SEPARATION_KEYS, *FLUENCY_KEYS,
)


@dataclass
class TurnRecord:
    """Timing of one completed robot turn (separation figures over the turn's window, see module doc;
    NaN when no separation sample fell in it)."""

    turn: int
    partner_exit_s: float
    robot_enter_s: float
    robot_exit_s: float
    gap_s: float
    overlap_s: float
    response_latency_s: float
    contact: bool
    near_miss: bool = False
    unfinished_turn_entry: bool = False
    aborted_reaches: int = 0
    min_separation_m: float = math.nan
    min_ssm_margin_m: float = math.nan
    ssm_violations: int = 0
    protective_stop_s: float = 0.0
    speed_scaled_s: float = 0.0
    ssm_samples: int = 0

    @property
    def overlapped(self) -> bool:
        """Not a clean turn: both agents in the zone, a negative gap, or an entry during the
        partner's unfinished turn."""
        return self.overlap_s > 0.0 or self.gap_s < 0.0 or self.unfinished_turn_entry

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SeparationWindow:
    """SSM figures aggregated online over one turn window (no per-sample storage)."""

    samples: int = 0
    min_separation_m: float = math.inf
    min_ssm_margin_m: float = math.inf
    ssm_violations: int = 0
    protective_stop_s: float = 0.0
    speed_scaled_s: float = 0.0

    def record_fields(self) -> dict:
        empty = self.samples == 0
        return {
            "min_separation_m": math.nan if empty else self.min_separation_m,
            "min_ssm_margin_m": math.nan if empty else self.min_ssm_margin_m,
            "ssm_violations": self.ssm_violations,
            "protective_stop_s": self.protective_stop_s,
            "speed_scaled_s": self.speed_scaled_s,
            "ssm_samples": self.samples,
        }


@dataclass
class Activity:
    """One agent's activity intervals (s); one interval per turn, so memory grows with turns only."""

    intervals: list[tuple[float, float]] = field(default_factory=list)
    since_s: float = math.nan

    def start(self, t_s: float) -> None:
        if math.isnan(self.since_s):
            self.since_s = t_s

    def stop(self, t_s: float) -> None:
        if not math.isnan(self.since_s):
            self.intervals.append((self.since_s, t_s))
            self.since_s = math.nan

    def until(self, end_s: float) -> list[tuple[float, float]]:
        """The intervals, with one still open at ``end_s`` closed there."""
        if not math.isnan(self.since_s) and self.since_s < end_s:
            return [*self.intervals, (self.since_s, end_s)]
        return list(self.intervals)


@dataclass
class _Open:
    """A robot turn in progress (robot entered, not yet finalised)."""

    robot_enter_s: float
    partner_exit_s: float            # NaN while the partner stay that was ongoing at entry lasts
    partner_inside_at_entry: bool
    reach_start_s: float
    unfinished_turn_entry: bool = False
    aborted_reaches: int = 0
    overlap_s: float = 0.0
    robot_exit_s: float = math.nan
    contact: bool = False
    separation: SeparationWindow | None = None


@dataclass
class TurnSegmenter:
    """Turns a time-ordered stream of events (:meth:`add`) and separation samples
    (:meth:`add_separation`) into :class:`TurnRecord` s.

    :meth:`add` returns the turns completed by that event. Events or samples out of time order are
    rejected with ``ValueError`` (callers sort or report them); so are unknown event names.
    """

    records: list[TurnRecord] = field(default_factory=list)
    partner_inside: bool = False
    robot_inside: bool = False
    in_contact: bool = False
    last_partner_exit_s: float = math.nan
    last_robot_exit_s: float = math.nan
    first_partner_enter_s: float = math.nan
    last_event_s: float = -math.inf
    partner_turns: int = 0
    contact_count: int = 0
    partner_in_turn: bool = False          # ground truth: partner_turn_start .. partner_turn_end
    partner_withdrawing: bool = False      # ... and its final withdraw has started
    ssm_mode: str = "free"
    _reach_start_s: float = math.nan
    _reach_starts: int = 0                 # reach_start s since the robot's last exit
    _both_since_s: float = math.nan
    _open: _Open | None = None
    _pending: list[_Open] = field(default_factory=list)  # robot exited, partner still inside
    _contact_since_exit: bool = False
    _window: SeparationWindow = field(default_factory=SeparationWindow)
    _ssm_mode_since_s: float = math.nan
    _in_violation: bool = False
    # Activities for fluency: the preferred source and the zone-stay fallback of each agent.
    _partner_turn: Activity = field(default_factory=Activity)
    _partner_stay: Activity = field(default_factory=Activity)
    _robot_to_home: Activity = field(default_factory=Activity)
    _robot_stay: Activity = field(default_factory=Activity)
    _home_events: int = 0

    def add(self, name: str, t_s: float) -> list[TurnRecord]:
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown timing event {name!r}; expected one of {EVENT_NAMES}")
        self._advance(name, t_s)
        done: list[TurnRecord] = []
        if name == "partner_enter" and not self.partner_inside:
            self.partner_inside = True
            self._partner_stay.start(t_s)
            if math.isnan(self.first_partner_enter_s):
                self.first_partner_enter_s = t_s
            if self.robot_inside:
                self._both_since_s = t_s
        elif name == "partner_exit" and self.partner_inside:
            self.partner_inside = False
            self._partner_stay.stop(t_s)
            self.partner_turns += 1
            self.last_partner_exit_s = t_s
            self._close_overlap(t_s)
            if self._open is not None and self._open.partner_inside_at_entry and math.isnan(self._open.partner_exit_s):
                self._open.partner_exit_s = t_s
            for pending in self._pending:
                if math.isnan(pending.partner_exit_s):
                    pending.partner_exit_s = t_s
            done.extend(self._finalise_pending())
        elif name == "robot_enter" and not self.robot_inside:
            self.robot_inside = True
            self._robot_stay.start(t_s)
            self._robot_to_home.start(t_s)
            inside = self.partner_inside
            self._open = _Open(
                robot_enter_s=t_s,
                partner_exit_s=math.nan if inside else self.last_partner_exit_s,
                partner_inside_at_entry=inside,
                reach_start_s=self._reach_start_s,
                unfinished_turn_entry=self.partner_in_turn and not self.partner_withdrawing,
                aborted_reaches=max(0, self._reach_starts - 1),
                contact=self._contact_since_exit or self.in_contact,
            )
            if inside:
                self._both_since_s = t_s
        elif name == "robot_exit" and self.robot_inside:
            self.robot_inside = False
            self._robot_stay.stop(t_s)
            self._close_overlap(t_s)
            self.last_robot_exit_s = t_s
            self._account_ssm_mode(t_s)
            if self._open is not None:
                self._open.robot_exit_s = t_s
                self._open.separation = self._window
                self._pending.append(self._open)
                self._open = None
            self._window = SeparationWindow()
            self._contact_since_exit = self.in_contact
            self._reach_start_s = math.nan
            self._reach_starts = 0
            done.extend(self._finalise_pending())
        elif name == "reach_start":
            if not self.robot_inside:
                self._reach_start_s = t_s
                self._reach_starts += 1
            self._robot_to_home.start(t_s)
        elif name == "home":
            self._home_events += 1
            self._robot_to_home.stop(t_s)
        elif name == "contact_begin" and not self.in_contact:
            self.in_contact = True
            self.contact_count += 1
            self._contact_since_exit = True
            if self._open is not None:
                self._open.contact = True
        elif name == "contact_end":
            self.in_contact = False
        elif name in _SSM_MODE_OF:
            self._account_ssm_mode(t_s)
            self.ssm_mode = _SSM_MODE_OF[name]
            self._ssm_mode_since_s = t_s
        elif name == "partner_turn_start" and not self.partner_in_turn:
            self.partner_in_turn, self.partner_withdrawing = True, False
            self._partner_turn.start(t_s)
        elif name == "partner_withdraw_start" and self.partner_in_turn:
            self.partner_withdrawing = True
        elif name == "partner_turn_end" and self.partner_in_turn:
            self.partner_in_turn = self.partner_withdrawing = False
            self._partner_turn.stop(t_s)
        return done

    def add_separation(self, t_s: float, separation_m: float, protective_m: float, closing_mps: float) -> None:
        """One SSM sample: separation (m), protective separation distance S_p (m), the robot's speed
        toward the person (m/s, > 0 = approaching). A NaN separation or S_p carries no information
        and is skipped."""
        self._advance("separation sample", t_s)
        if math.isnan(separation_m) or math.isnan(protective_m):
            return
        w = self._window
        w.samples += 1
        if separation_m < w.min_separation_m:
            w.min_separation_m = separation_m
        margin = separation_m - protective_m
        if margin < w.min_ssm_margin_m:
            w.min_ssm_margin_m = margin
        violating = violates(separation_m, protective_m, closing_mps)
        if violating and not self._in_violation:
            w.ssm_violations += 1
        self._in_violation = violating

    def _advance(self, what: str, t_s: float) -> None:
        if not math.isfinite(t_s):
            raise ValueError(f"{what} has non-finite time {t_s!r}")
        if t_s < self.last_event_s:
            raise ValueError(
                f"{what} at {t_s:.6f} s is earlier than the previous event at {self.last_event_s:.6f} s"
            )
        self.last_event_s = t_s

    def _account_ssm_mode(self, t_s: float) -> None:
        """Add the time spent in the current SSM mode up to ``t_s`` to the current window."""
        since = self._ssm_mode_since_s
        if math.isnan(since):
            return
        if self.ssm_mode == "stop":
            self._window.protective_stop_s += t_s - since
        elif self.ssm_mode == "scaled":
            self._window.speed_scaled_s += t_s - since
        self._ssm_mode_since_s = t_s

    def _close_overlap(self, t_s: float) -> None:
        if not math.isnan(self._both_since_s):
            dt = t_s - self._both_since_s
            target = self._open if self._open is not None else (self._pending[-1] if self._pending else None)
            if target is not None:
                target.overlap_s += dt
            self._both_since_s = math.nan

    def _finalise_pending(self) -> list[TurnRecord]:
        done = []
        # A turn is final once the partner exit it is measured from is known: immediately when the
        # partner was outside at the robot's entry, else when that partner stay ends.
        while self._pending and (
            not self._pending[0].partner_inside_at_entry or not math.isnan(self._pending[0].partner_exit_s)
        ):
            o = self._pending.pop(0)
            gap = o.robot_enter_s - o.partner_exit_s
            latency = o.reach_start_s - o.partner_exit_s if not math.isnan(o.reach_start_s) else math.nan
            rec = TurnRecord(
                turn=len(self.records) + 1,
                partner_exit_s=o.partner_exit_s,
                robot_enter_s=o.robot_enter_s,
                robot_exit_s=o.robot_exit_s,
                gap_s=gap,
                overlap_s=o.overlap_s,
                response_latency_s=latency,
                contact=o.contact,
                near_miss=not o.partner_inside_at_entry and 0.0 <= gap <= NEAR_MISS_S,
                unfinished_turn_entry=o.unfinished_turn_entry,
                aborted_reaches=o.aborted_reaches,
                **(o.separation or SeparationWindow()).record_fields(),
            )
            self.records.append(rec)
            done.append(rec)
        return done

    @property
    def session_duration_s(self) -> float:
        if math.isnan(self.first_partner_enter_s) or math.isnan(self.last_robot_exit_s):
            return 0.0
        return max(0.0, self.last_robot_exit_s - self.first_partner_enter_s)

    def activity(self, end_s: float | None = None) -> dict:
        """Fluency figures (:func:`fluency`) and the partner turns completed in the session
        (first partner entry .. ``end_s``, default the last robot exit)."""
        start = self.first_partner_enter_s
        end = self.last_robot_exit_s if end_s is None else end_s
        turn_events = bool(self._partner_turn.intervals) or not math.isnan(self._partner_turn.since_s)
        partner = self._partner_turn if turn_events else self._partner_stay
        robot = self._robot_to_home if self._home_events else self._robot_stay
        if math.isnan(start) or math.isnan(end) or end <= start:
            out = fluency([], [], 0.0, 0.0)
            completed = 0
        else:
            out = fluency(partner.until(end), robot.until(end), start, end)
            completed = sum(1 for _, b in partner.intervals if start < b <= end)
        out["partner_active_from"] = "partner_turn" if turn_events else "zone_stay"
        out["robot_active_from"] = "reach_start_to_home" if self._home_events else "zone_stay"
        out["completed_partner_turns"] = completed
        return out


def fluency(partner_active: list[tuple[float, float]], robot_active: list[tuple[float, float]],
            start_s: float, end_s: float) -> dict:
    """Hoffman's objective fluency metrics over the session ``[start_s, end_s]`` (s) from each agent's
    time-ordered, non-overlapping activity intervals (s); see the module docstring. Fractions are
    of the session time; None when the session is empty."""
    duration = end_s - start_s
    if not duration > 0:
        return {k: None for k in FLUENCY_KEYS[:6]} | {"functional_delay_handoffs": 0}

    def clipped(intervals):
        return [(max(a, start_s), min(b, end_s)) for a, b in intervals if b > start_s and a < end_s]

    p, r = clipped(partner_active), clipped(robot_active)
    p_active = sum(b - a for a, b in p)
    r_active = sum(b - a for a, b in r)
    both, i, j = 0.0, 0, 0
    while i < len(p) and j < len(r):
        both += max(0.0, min(p[i][1], r[j][1]) - max(p[i][0], r[j][0]))
        if p[i][1] < r[j][1]:
            i += 1
        else:
            j += 1
    delays = [d for a, b in ((partner_active, robot_active), (robot_active, partner_active))
              for d in _handoff_delays(a, b, start_s, end_s)]
    return {
        "human_idle_fraction": 1.0 - p_active / duration,
        "robot_idle_fraction": 1.0 - r_active / duration,
        "concurrent_activity_fraction": both / duration,
        "functional_delay_fraction": sum(delays) / duration,
        "functional_delay_mean_s": float(np.mean(delays)) if delays else None,
        "functional_delay_median_s": float(np.median(delays)) if delays else None,
        "functional_delay_handoffs": len(delays),
    }


def _handoff_delays(mine, other, start_s: float, end_s: float) -> list[float]:
    """Functional delay (s, >= 0) of each of ``mine``'s activity starts in the session that take
    over from ``other`` (active since my previous activity ended)."""
    other_starts = [a for a, _ in other]
    delays = []
    prev_end = -math.inf
    for a, b in mine:
        k = bisect.bisect_left(other_starts, a)   # other's activities that started before mine
        if k and other[k - 1][1] > prev_end and start_s <= a <= end_s:
            delays.append(max(0.0, a - other[k - 1][1]))
        prev_end = b
    return delays


def _finite(values) -> np.ndarray:
    arr = np.asarray([v for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def _min_or_none(values) -> float | None:
    arr = _finite(values)
    return float(arr.min()) if arr.size else None


def summarize(
    records: list[TurnRecord],
    session_duration_s: float,
    *,
    contacts: int | None = None,
    partner_turns: int = 0,
    scored_on: str = "ground_truth",
    policy: str = "",
    partner: str = "",
    seed: int | None = None,
    activity: dict | None = None,
) -> dict:
    """The session summary (the keys of :data:`SUMMARY_KEYS`), JSON-serialisable.

    ``activity``: :meth:`TurnSegmenter.activity` of the same session (fluency and the completed
    partner turns for the pace); without it the fluency keys are None and the pace counts
    ``partner_turns``."""
    gaps = _finite(r.gap_s for r in records)
    lat = _finite(r.response_latency_s for r in records)
    n = len(records)
    contact_n = contacts if contacts is not None else sum(1 for r in records if r.contact)
    minutes = session_duration_s / 60.0
    act = dict(activity) if activity is not None else fluency([], [], 0.0, 0.0)
    pace_partner = act.pop("completed_partner_turns", partner_turns)
    act.setdefault("partner_active_from", None)
    act.setdefault("robot_active_from", None)
    return {
        "turns": n,
        "median_gap_s": float(np.median(gaps)) if gaps.size else None,
        "p90_gap_s": float(np.percentile(gaps, 90)) if gaps.size else None,
        "mean_gap_s": float(np.mean(gaps)) if gaps.size else None,
        "overlap_rate": (sum(1 for r in records if r.overlapped) / n) if n else 0.0,
        "overlap_s_total": float(sum(r.overlap_s for r in records)),
        "contacts": int(contact_n),
        "throughput_per_min": (n / minutes) if minutes > 0 else 0.0,
        "median_response_latency_s": float(np.median(lat)) if lat.size else None,
        "partner_turns": int(partner_turns),
        "session_duration_s": float(session_duration_s),
        "scored_on": scored_on,
        "policy": policy,
        "partner": partner,
        "seed": seed,
        "pace_turns_per_min": ((n + pace_partner) / minutes) if minutes > 0 else 0.0,
        "near_misses": sum(1 for r in records if r.near_miss),
        "unfinished_turn_entries": sum(1 for r in records if r.unfinished_turn_entry),
        "aborted_reaches": int(sum(r.aborted_reaches for r in records)),
        "min_separation_m": _min_or_none(r.min_separation_m for r in records),
        "min_ssm_margin_m": _min_or_none(r.min_ssm_margin_m for r in records),
        "ssm_violations": int(sum(r.ssm_violations for r in records)),
        "protective_stop_s": float(sum(r.protective_stop_s for r in records)),
        "speed_scaled_s": float(sum(r.speed_scaled_s for r in records)),
        "ssm_samples": int(sum(r.ssm_samples for r in records)),
        **act,
    }


def _ms(v) -> str:
    return "   n/a" if v is None or not math.isfinite(v) else f"{1000 * v:6.0f}"


def _m(v, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def turn_notes(r: TurnRecord) -> str:
    """Short flags of what made a turn not clean or unsafe (the table's last column)."""
    notes = []
    if r.unfinished_turn_entry:
        notes.append("unfinished")
    if r.near_miss:
        notes.append("near-miss")
    if r.aborted_reaches:
        notes.append(f"aborted reach x{r.aborted_reaches}")
    if r.ssm_violations:
        notes.append(f"ssm-violation x{r.ssm_violations}")
    if r.protective_stop_s > 0:
        notes.append(f"stop {r.protective_stop_s:.2f}s")
    if r.speed_scaled_s > 0:
        notes.append(f"scaled {r.speed_scaled_s:.2f}s")
    return ", ".join(notes)


def format_summary(summary: dict) -> list[str]:
    """The summary lines of :func:`format_table`: timing, then safety, then fluency."""
    s = summary
    lines = [
        f"summary ({s['scored_on']}; policy={s['policy']} partner={s['partner']} seed={s['seed']}): "
        f"{s['turns']} turns, median gap {_ms(s['median_gap_s']).strip()} ms, "
        f"p90 gap {_ms(s['p90_gap_s']).strip()} ms, "
        f"overlap rate {100 * s['overlap_rate']:.1f}% ({s['overlap_s_total']:.3f} s), contacts {s['contacts']}, "
        f"throughput {s['throughput_per_min']:.1f} turns/min",
    ]
    if "near_misses" not in s:   # a summary written before these keys existed
        return lines
    safety = f"safety: near misses {s['near_misses']}, unfinished-turn entries {s['unfinished_turn_entries']}"
    if s.get("ssm_samples"):
        safety += (f", min separation {_m(s['min_separation_m'])} m, min SSM margin {_m(s['min_ssm_margin_m'])} m, "
                   f"SSM violations {s['ssm_violations']}")
    if s.get("ssm_samples") or s.get("protective_stop_s") or s.get("speed_scaled_s"):
        safety += f", protective stop {s['protective_stop_s']:.2f} s, speed scaled {s['speed_scaled_s']:.2f} s"
    lines.append(safety)
    delay = s.get("functional_delay_mean_s")
    lines.append(
        f"fluency: pace {s['pace_turns_per_min']:.1f} turns/min, human idle {_pct(s.get('human_idle_fraction'))}, "
        f"robot idle {_pct(s.get('robot_idle_fraction'))}, concurrent {_pct(s.get('concurrent_activity_fraction'))}, "
        f"functional delay mean {_ms(delay).strip()} ms"
        + ("" if s.get("aborted_reaches") is None else f", aborted reaches {s['aborted_reaches']}")
        + ("" if s.get("liveness_fallbacks") is None else f", liveness fallbacks {s['liveness_fallbacks']}")
    )
    return lines


def format_table(records: list[TurnRecord], summary: dict) -> str:
    """Human-readable per-turn table and summary (what ``coop-robot sim`` prints)."""
    lines = [
        f"{'turn':>4} {'partner exit s':>14} {'robot enter s':>13} {'gap ms':>7} {'latency ms':>10} "
        f"{'overlap ms':>10} {'contact':>7} {'min sep m':>9}  notes",
    ]
    for r in records:
        lines.append(
            f"{r.turn:>4} {r.partner_exit_s:14.3f} {r.robot_enter_s:13.3f} {_ms(r.gap_s):>7} "
            f"{_ms(r.response_latency_s):>10} {_ms(r.overlap_s):>10} {'yes' if r.contact else 'no':>7} "
            f"{_m(r.min_separation_m):>9}  {turn_notes(r)}".rstrip()
        )
    lines.append("")
    lines.extend(format_summary(summary))
    return "\n".join(lines)

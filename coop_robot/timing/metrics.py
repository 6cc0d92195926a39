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
  (first partner entry to last robot exit).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

EVENT_NAMES = (
    "partner_enter", "partner_exit", "robot_enter", "robot_exit",
    "reach_start", "contact_begin", "contact_end",
)

SUMMARY_KEYS = (
    "turns", "median_gap_s", "p90_gap_s", "mean_gap_s", "overlap_rate", "overlap_s_total",
    "contacts", "throughput_per_min", "median_response_latency_s", "partner_turns",
    "session_duration_s", "scored_on", "policy", "partner", "seed",
)


@dataclass
class TurnRecord:
    """Timing of one completed robot turn."""

    turn: int
    partner_exit_s: float
    robot_enter_s: float
    robot_exit_s: float
    gap_s: float
    overlap_s: float
    response_latency_s: float
    contact: bool

    @property
    def overlapped(self) -> bool:
        return self.overlap_s > 0.0 or self.gap_s < 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Open:
    """A robot turn in progress (robot entered, not yet finalised)."""

    robot_enter_s: float
    partner_exit_s: float            # NaN while the partner stay that was ongoing at entry lasts
    partner_inside_at_entry: bool
    reach_start_s: float
    overlap_s: float = 0.0
    robot_exit_s: float = math.nan
    contact: bool = False


@dataclass
class TurnSegmenter:
    """Turns a time-ordered event stream into :class:`TurnRecord` s.

    Feed events with :meth:`add`; it returns the turns completed by that event. Events out of time
    order are rejected with ``ValueError`` (callers sort or report them).
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
    _reach_start_s: float = math.nan
    _both_since_s: float = math.nan
    _open: _Open | None = None
    _pending: list[_Open] = field(default_factory=list)  # robot exited, partner still inside
    _contact_since_exit: bool = False

    def add(self, name: str, t_s: float) -> list[TurnRecord]:
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown timing event {name!r}; expected one of {EVENT_NAMES}")
        if not math.isfinite(t_s):
            raise ValueError(f"event {name!r} has non-finite time {t_s!r}")
        if t_s < self.last_event_s:
            raise ValueError(
                f"event {name!r} at {t_s:.6f} s is earlier than the previous event at {self.last_event_s:.6f} s"
            )
        self.last_event_s = t_s
        done: list[TurnRecord] = []
        if name == "partner_enter" and not self.partner_inside:
            self.partner_inside = True
            if math.isnan(self.first_partner_enter_s):
                self.first_partner_enter_s = t_s
            if self.robot_inside:
                self._both_since_s = t_s
        elif name == "partner_exit" and self.partner_inside:
            self.partner_inside = False
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
            inside = self.partner_inside
            self._open = _Open(
                robot_enter_s=t_s,
                partner_exit_s=math.nan if inside else self.last_partner_exit_s,
                partner_inside_at_entry=inside,
                reach_start_s=self._reach_start_s,
                contact=self._contact_since_exit or self.in_contact,
            )
            if inside:
                self._both_since_s = t_s
        elif name == "robot_exit" and self.robot_inside:
            self.robot_inside = False
            self._close_overlap(t_s)
            self.last_robot_exit_s = t_s
            if self._open is not None:
                self._open.robot_exit_s = t_s
                self._pending.append(self._open)
                self._open = None
            self._contact_since_exit = self.in_contact
            self._reach_start_s = math.nan
            done.extend(self._finalise_pending())
        elif name == "reach_start":
            if not self.robot_inside:
                self._reach_start_s = t_s
        elif name == "contact_begin" and not self.in_contact:
            self.in_contact = True
            self.contact_count += 1
            self._contact_since_exit = True
            if self._open is not None:
                self._open.contact = True
        elif name == "contact_end":
            self.in_contact = False
        return done

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
            )
            self.records.append(rec)
            done.append(rec)
        return done

    @property
    def session_duration_s(self) -> float:
        if math.isnan(self.first_partner_enter_s) or math.isnan(self.last_robot_exit_s):
            return 0.0
        return max(0.0, self.last_robot_exit_s - self.first_partner_enter_s)


def _finite(values) -> np.ndarray:
    arr = np.asarray([v for v in values], dtype=float)
    return arr[np.isfinite(arr)]


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
) -> dict:
    """The session summary (the keys of :data:`SUMMARY_KEYS`), JSON-serialisable."""
    gaps = _finite(r.gap_s for r in records)
    lat = _finite(r.response_latency_s for r in records)
    n = len(records)
    contact_n = contacts if contacts is not None else sum(1 for r in records if r.contact)
    minutes = session_duration_s / 60.0
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
    }


def format_table(records: list[TurnRecord], summary: dict) -> str:
    """Human-readable per-turn table and summary (what ``coop-robot sim`` prints)."""

    def ms(v):
        return "   n/a" if v is None or not math.isfinite(v) else f"{1000 * v:6.0f}"

    lines = [
        f"{'turn':>4} {'partner exit s':>14} {'robot enter s':>13} {'gap ms':>7} {'latency ms':>10} "
        f"{'overlap ms':>10} {'contact':>7}",
    ]
    for r in records:
        lines.append(
            f"{r.turn:>4} {r.partner_exit_s:14.3f} {r.robot_enter_s:13.3f} {ms(r.gap_s):>7} "
            f"{ms(r.response_latency_s):>10} {ms(r.overlap_s):>10} {'yes' if r.contact else 'no':>7}"
        )
    s = summary
    lines.append("")
    lines.append(
        f"summary ({s['scored_on']}; policy={s['policy']} partner={s['partner']} seed={s['seed']}): "
        f"{s['turns']} turns, median gap {ms(s['median_gap_s']).strip()} ms, p90 gap {ms(s['p90_gap_s']).strip()} ms, "
        f"overlap rate {100 * s['overlap_rate']:.1f}% ({s['overlap_s_total']:.3f} s), contacts {s['contacts']}, "
        f"throughput {s['throughput_per_min']:.1f} turns/min"
    )
    return "\n".join(lines)

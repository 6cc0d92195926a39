"""Live turn tracking: occupancy samples, events and separation samples in, turn records and
rolling statistics out.

Events reach the tracker from several publishers (sim ground truth, controller, perception), so
they can arrive slightly out of time order; :class:`TurnTracker` holds them -- and the separation
samples, in the same queue -- for a short reorder window before feeding the
:class:`~coop_robot.timing.metrics.TurnSegmenter`.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from coop_robot.partner.model import PHASES as PARTNER_PHASES
from coop_robot.timing.metrics import TurnRecord, TurnSegmenter, summarize

SCORING_SOURCES = ("ground_truth", "perception")
#: Queue entry name of a separation sample (never a segmenter event name).
_SEPARATION = "<separation>"
#: Partner phases (coop_robot.partner.model.PHASES) outside a partner turn: waiting for its turn.
PARTNER_IDLE_PHASES = frozenset({"initial_wait", "waiting_for_robot", "reacting"})


class OccupancyEdges:
    """Turns sampled in/out flags of one agent into ``<agent>_enter`` / ``<agent>_exit`` events."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.inside: bool | None = None

    def sample(self, inside: bool, t_s: float) -> list[tuple[str, float]]:
        events = []
        if self.inside is None:
            if inside:  # already inside when observation starts: count it as an entry now
                events.append((f"{self.agent}_enter", t_s))
        elif inside != self.inside:
            events.append((f"{self.agent}_{'enter' if inside else 'exit'}", t_s))
        self.inside = inside
        return events


class PartnerTurnEdges:
    """Turns the partner model's phase, sampled over time, into the ground-truth events
    ``partner_turn_start`` (first reach or false start begins moving), ``partner_withdraw_start``
    (the final withdraw begins) and ``partner_turn_end`` (that withdraw has finished).

    Idle phases are :data:`PARTNER_IDLE_PHASES`; every other phase of
    :data:`~coop_robot.partner.model.PHASES` is part of a turn; anything else is ignored. A turn ends
    when the phase leaves ``withdrawing``; a phase seen straight after a withdraw that is not idle
    starts the next turn at the same time. Call :meth:`update` after every partner step with its
    ``phase`` and the step's time; it returns the events due (name, t_s), usually none.
    """

    def __init__(self) -> None:
        self.phase: str | None = None
        self.in_turn = False

    def update(self, phase: str, t_s: float) -> list[tuple[str, float]]:
        if phase == self.phase or phase not in PARTNER_PHASES:   # e.g. "unknown" of a scripted stand-in
            return []
        events = []
        if self.in_turn and self.phase == "withdrawing":
            events.append(("partner_turn_end", t_s))
            self.in_turn = False
        if phase not in PARTNER_IDLE_PHASES:
            if not self.in_turn:
                events.append(("partner_turn_start", t_s))
                self.in_turn = True
            if phase == "withdrawing":
                events.append(("partner_withdraw_start", t_s))
        elif self.in_turn:   # back to idle without a withdraw (a phase sequence the model never makes)
            events.append(("partner_turn_end", t_s))
            self.in_turn = False
        self.phase = phase
        return events


@dataclass
class TurnTracker:
    scoring: str = "ground_truth"
    reorder_window_s: float = 0.3
    stats_window: int = 20
    segmenter: TurnSegmenter = field(default_factory=TurnSegmenter)
    late_events: int = 0
    late_samples: int = 0
    #: Called with (t_s, separation_m, protective_m, closing_mps) for each separation sample the
    #: segmenter takes, in time order (the bag analysis collects its figure's traces this way).
    on_separation: Callable[[float, float, float, float], None] | None = None
    _heap: list = field(default_factory=list)
    _seq: int = 0

    def __post_init__(self) -> None:
        if self.scoring not in SCORING_SOURCES:
            raise ValueError(f"scoring must be one of {SCORING_SOURCES}, got {self.scoring!r}")
        if not self.reorder_window_s >= 0:
            raise ValueError(f"reorder_window_s must be >= 0, got {self.reorder_window_s!r}")
        self._recent: deque[TurnRecord] = deque(maxlen=self.stats_window)

    def push(self, name: str, t_s: float) -> None:
        """Queue an event; it is processed once it is older than the reorder window."""
        if not math.isfinite(t_s):
            self.late_events += 1
            return
        heapq.heappush(self._heap, (t_s, self._seq, name, None))
        self._seq += 1

    def push_separation(self, t_s: float, separation_m: float, protective_m: float, closing_mps: float) -> None:
        """Queue a separation sample (~100 Hz): the human-robot separation (m, hand sphere to robot
        body), the protective separation distance S_p (m) and the robot's speed toward the person
        (m/s, > 0 = approaching). Aggregated per turn when released; nothing per sample is kept."""
        if not math.isfinite(t_s):
            self.late_samples += 1
            return
        heapq.heappush(self._heap, (t_s, self._seq, _SEPARATION, (separation_m, protective_m, closing_mps)))
        self._seq += 1

    def release(self, now_s: float, flush: bool = False) -> tuple[list[tuple[str, float]], list[TurnRecord]]:
        """Feed every queued event and sample older than ``now_s - reorder_window_s`` to the
        segmenter; returns the events released (not the samples) and the turns completed."""
        released, records = [], []
        horizon = math.inf if flush else now_s - self.reorder_window_s
        seg = self.segmenter
        while self._heap and self._heap[0][0] <= horizon:
            t, _, name, sample = heapq.heappop(self._heap)
            if sample is not None:
                try:
                    seg.add_separation(t, *sample)
                except ValueError:
                    self.late_samples += 1
                    continue
                if self.on_separation is not None:
                    self.on_separation(t, *sample)
                continue
            try:
                new = self.segmenter.add(name, t)
            except ValueError:
                self.late_events += 1  # arrived after later events were already processed
                continue
            released.append((name, t))
            records.extend(new)
            self._recent.extend(new)
        return released, records

    @property
    def records(self) -> list[TurnRecord]:
        return self.segmenter.records

    def rolling_stats(self) -> dict[str, float]:
        recent = list(self._recent)
        gaps = np.array([r.gap_s for r in recent if math.isfinite(r.gap_s)])
        lat = np.array([r.response_latency_s for r in recent if math.isfinite(r.response_latency_s)])
        seps = np.array([r.min_separation_m for r in recent if math.isfinite(r.min_separation_m)])
        return {
            "turns_total": len(self.records),
            "window_turns": len(recent),
            "median_gap_s": float(np.median(gaps)) if gaps.size else math.nan,
            "mean_response_latency_s": float(np.mean(lat)) if lat.size else math.nan,
            "overlap_rate": (sum(r.overlapped for r in recent) / len(recent)) if recent else 0.0,
            "contacts_total": self.segmenter.contact_count,
            "min_separation_m": float(seps.min()) if seps.size else math.nan,
            "near_misses": sum(r.near_miss for r in recent),
            "unfinished_turn_entries": sum(r.unfinished_turn_entry for r in recent),
            "aborted_reaches": sum(r.aborted_reaches for r in recent),
            "ssm_violations_total": sum(r.ssm_violations for r in self.records),
            "late_events": self.late_events,
        }

    def summary(self, limit: int | None = None, **meta) -> dict:
        """The session summary; ``limit``: score only the first ``limit`` robot turns (a session of N
        turns in which more were completed before it stopped), the session then ending at the
        last scored turn's robot exit."""
        seg = self.segmenter
        records = seg.records if limit is None else seg.records[:max(0, int(limit))]
        if len(records) == len(seg.records):
            out = summarize(records, seg.session_duration_s, contacts=seg.contact_count,
                            partner_turns=seg.partner_turns, scored_on=self.scoring,
                            activity=seg.activity(), **meta)
        else:
            end = records[-1].robot_exit_s if records else math.nan
            duration = max(0.0, end - seg.first_partner_enter_s) if records else 0.0
            out = summarize(records, duration, contacts=sum(r.contact for r in records),
                            partner_turns=seg.partner_turns, scored_on=self.scoring,
                            activity=seg.activity(end), **meta)
        out["late_events"] = self.late_events
        out["late_separation_samples"] = self.late_samples
        out["per_turn"] = [r.as_dict() for r in records]
        return out

"""Live turn tracking: occupancy samples and events in, turn records and rolling statistics out.

Events reach the tracker from several publishers (sim ground truth, controller, perception), so
they can arrive slightly out of time order; :class:`TurnTracker` holds them for a short reorder
window before feeding the :class:`~coop_robot.timing.metrics.TurnSegmenter`.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from coop_robot.timing.metrics import TurnRecord, TurnSegmenter, summarize

SCORING_SOURCES = ("ground_truth", "perception")


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


@dataclass
class TurnTracker:
    scoring: str = "ground_truth"
    reorder_window_s: float = 0.3
    stats_window: int = 20
    segmenter: TurnSegmenter = field(default_factory=TurnSegmenter)
    late_events: int = 0
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
        heapq.heappush(self._heap, (t_s, self._seq, name))
        self._seq += 1

    def release(self, now_s: float, flush: bool = False) -> tuple[list[tuple[str, float]], list[TurnRecord]]:
        """Feed every queued event older than ``now_s - reorder_window_s`` to the segmenter."""
        released, records = [], []
        horizon = math.inf if flush else now_s - self.reorder_window_s
        while self._heap and self._heap[0][0] <= horizon:
            t, _, name = heapq.heappop(self._heap)
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
        return {
            "turns_total": len(self.records),
            "window_turns": len(recent),
            "median_gap_s": float(np.median(gaps)) if gaps.size else math.nan,
            "mean_response_latency_s": float(np.mean(lat)) if lat.size else math.nan,
            "overlap_rate": (sum(r.overlapped for r in recent) / len(recent)) if recent else 0.0,
            "contacts_total": self.segmenter.contact_count,
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
                            partner_turns=seg.partner_turns, scored_on=self.scoring, **meta)
        else:
            duration = max(0.0, records[-1].robot_exit_s - seg.first_partner_enter_s) if records else 0.0
            out = summarize(records, duration, contacts=sum(r.contact for r in records),
                            partner_turns=seg.partner_turns, scored_on=self.scoring, **meta)
        out["late_events"] = self.late_events
        out["per_turn"] = [r.as_dict() for r in records]
        return out

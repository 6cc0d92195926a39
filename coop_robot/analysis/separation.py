"""Separation and S_p around each partner exit, for the report's figure (bounded memory).

The bag analysis hands every separation sample the scoring took (in time order, from the
tracker's ``on_separation`` hook) and every partner exit it released to
:class:`ExitAlignedTraces`; each exit gets the separation and protective distance S_p from
``-half_width_s`` to ``+half_width_s`` around it, resampled on a fixed grid. Exits are learnt a
release batch after their samples, so the last few seconds of samples are kept to look back.
"""

from __future__ import annotations

from collections import deque

import numpy as np

HALF_WIDTH_S = 1.5
STEP_S = 0.05
#: Seconds of samples kept to look back from an exit learnt late (release batch + reorder window).
LOOK_BACK_S = 8.0
MAX_TRACES = 1000


class ExitAlignedTraces:
    """Separation (m) and S_p (m) against time from each partner exit (s)."""

    def __init__(self, half_width_s: float = HALF_WIDTH_S, step_s: float = STEP_S,
                 look_back_s: float = LOOK_BACK_S, max_traces: int = MAX_TRACES) -> None:
        self.half_width_s = half_width_s
        self.offsets_s = np.arange(-half_width_s, half_width_s + step_s / 2, step_s)
        self.look_back_s = max(look_back_s, 2 * half_width_s)
        self.max_traces = max_traces
        self.separation_m: list[np.ndarray] = []
        self.protective_m: list[np.ndarray] = []
        self._recent: deque[tuple[float, float, float]] = deque()
        self._open: list[tuple[float, list[tuple[float, float, float]]]] = []

    def sample(self, t_s: float, separation_m: float, protective_m: float, _closing_mps: float = 0.0) -> None:
        row = (t_s, separation_m, protective_m)
        self._recent.append(row)
        while self._recent and t_s - self._recent[0][0] > self.look_back_s:
            self._recent.popleft()
        still_open = []
        for t_exit, rows in self._open:
            if t_s > t_exit + self.half_width_s:
                self._finish(t_exit, rows)
            else:
                rows.append(row)
                still_open.append((t_exit, rows))
        self._open = still_open

    def partner_exit(self, t_s: float) -> None:
        if len(self.separation_m) + len(self._open) >= self.max_traces:
            return
        lo, hi = t_s - self.half_width_s, t_s + self.half_width_s
        rows = [r for r in self._recent if lo <= r[0] <= hi]
        if self._recent and self._recent[-1][0] > hi:
            self._finish(t_s, rows)
        else:
            self._open.append((t_s, rows))

    def close(self) -> None:
        for t_exit, rows in self._open:
            self._finish(t_exit, rows)
        self._open = []

    def _finish(self, t_exit: float, rows: list[tuple[float, float, float]]) -> None:
        finite = [r for r in rows if np.isfinite(r[1]) and np.isfinite(r[2])]
        if len(finite) < 2:
            return
        t, sep, sp = (np.array(c) for c in zip(*finite))
        x = self.offsets_s + t_exit
        inside = (x >= t[0]) & (x <= t[-1])
        self.separation_m.append(np.where(inside, np.interp(x, t, sep), np.nan))
        self.protective_m.append(np.where(inside, np.interp(x, t, sp), np.nan))

    def __len__(self) -> int:
        return len(self.separation_m)

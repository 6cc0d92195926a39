"""Is a periodic node getting the rate it asked for? (no ROS here)

A node's timer on a busy machine fires late and unevenly; nothing in rclpy says so. The policy node
feeds every tick's time to a :class:`TickRateMonitor`, which closes a window every ``window_s``
seconds and reports the rate achieved, the longest tick interval and the process's CPU share over
the window. A window whose rate falls below ``min_fraction`` of the asked rate is *behind*: the node
logs a warning naming the cause (the machine is not keeping up) instead of deciding late in
silence, and says so again when it catches up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TickWindow:
    """What one closed window measured."""

    start_s: float
    end_s: float
    ticks: int
    rate_hz: float              # ticks per second of node clock over the window
    worst_interval_s: float     # the longest time between two ticks
    cpu_share: float            # process CPU seconds / wall seconds over the window (1.0 = one core); NaN unknown
    behind: bool                # rate below min_fraction of the asked rate


class TickRateMonitor:
    """Windows of tick times against the asked rate (module docstring)."""

    def __init__(self, rate_hz: float, window_s: float = 5.0, min_fraction: float = 0.8) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a finite value > 0, got {rate_hz!r}")
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a finite value > 0, got {window_s!r}")
        if not (0.0 < min_fraction <= 1.0):
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
        self.rate_hz = float(rate_hz)
        self.window_s = float(window_s)
        self.min_fraction = float(min_fraction)
        self.behind = False
        self.last: TickWindow | None = None
        self._start: tuple[float, float, float] | None = None   # node time, wall time, cpu time
        self._prev_t = math.nan
        self._ticks = 0
        self._worst = 0.0

    def tick(self, t_s: float, wall_s: float, cpu_s: float = math.nan) -> TickWindow | None:
        """Record a tick at node time ``t_s`` (wall clock ``wall_s`` and process CPU time ``cpu_s``,
        for the CPU share); returns the window it closes, if any."""
        if not math.isfinite(t_s):
            return None
        if self._start is None or t_s < self._prev_t:      # first tick, or the clock jumped back
            self._start = (t_s, wall_s, cpu_s)
            self._prev_t, self._ticks, self._worst = t_s, 0, 0.0
            return None
        self._ticks += 1
        self._worst = max(self._worst, t_s - self._prev_t)
        self._prev_t = t_s
        t0, wall0, cpu0 = self._start
        if t_s - t0 < self.window_s:
            return None
        elapsed = t_s - t0
        wall = wall_s - wall0
        share = (cpu_s - cpu0) / wall if wall > 0 and math.isfinite(cpu_s - cpu0) else math.nan
        rate = self._ticks / elapsed
        window = TickWindow(t0, t_s, self._ticks, rate, self._worst, share, rate < self.min_fraction * self.rate_hz)
        self.last = window
        self.behind = window.behind
        self._start = (t_s, wall_s, cpu_s)
        self._ticks, self._worst = 0, 0.0
        return window

    def describe(self, window: TickWindow) -> str:
        cpu = "" if not math.isfinite(window.cpu_share) else f", {100.0 * window.cpu_share:.1f} % of one core"
        span = window.end_s - window.start_s
        return (f"{window.rate_hz:.1f} Hz of the {self.rate_hz:.0f} Hz asked over the last {span:.1f} s "
                f"(longest interval {1e3 * window.worst_interval_s:.0f} ms{cpu})")


#: /diagnostics status names of the control path's hops (``coop_robot: latency <hop>``): from the
#: camera stamp, in path order; then the nodes' own shares (a frame's arrival at the node -> its output).
LATENCY_HOPS = ("camera->received", "camera->perception", "camera->policy", "camera->controller", "command->arm",
                "received->perception", "hand->controller")
LATENCY_STATUS_PREFIX = "coop_robot: latency "


class LatencyStats:
    """Latencies (s) of one hop of the control path over a session: count, median, p99, max.

    Keeps up to ``capacity`` samples (the newest replace a random older one beyond that, so the
    percentiles stay those of the whole session)."""

    def __init__(self, capacity: int = 200_000, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self.count = 0
        self.max_s = 0.0
        self._samples: list[float] = []
        self._rng = np.random.default_rng(seed)

    def add(self, latency_s: float) -> None:
        if not math.isfinite(latency_s):
            return
        self.count += 1
        self.max_s = max(self.max_s, latency_s)
        if len(self._samples) < self.capacity:
            self._samples.append(latency_s)
        else:  # reservoir sampling
            k = int(self._rng.integers(0, self.count))
            if k < self.capacity:
                self._samples[k] = latency_s

    def summary(self) -> dict[str, float]:
        if not self._samples:
            return {"count": 0, "p50_s": math.nan, "p99_s": math.nan, "max_s": math.nan}
        p50, p99 = np.percentile(self._samples, [50.0, 99.0])
        return {"count": self.count, "p50_s": float(p50), "p99_s": float(p99), "max_s": self.max_s}


class FirstSeen:
    """Latency from a stamp to the first time a periodic consumer sees it: feed every tick's
    ``(now, newest stamp)``; a stamp newer than the last one adds ``now - stamp`` to ``stats``."""

    def __init__(self, stats: LatencyStats) -> None:
        self.stats = stats
        self._last_stamp = -math.inf

    def tick(self, now_s: float, stamp_s: float | None) -> None:
        if stamp_s is None or not math.isfinite(stamp_s) or stamp_s <= self._last_stamp:
            return
        self._last_stamp = stamp_s
        self.stats.add(now_s - stamp_s)

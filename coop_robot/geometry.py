"""Shared geometry: the shared-zone box and minimum-jerk profiles.

One definition of "inside the zone" and one minimum-jerk profile, used by the simulated
partner, the controller, perception and the timing metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Zone:
    """Axis-aligned shared-zone box in the ``world`` frame (metres)."""

    min_m: tuple[float, float, float]
    max_m: tuple[float, float, float]

    def __post_init__(self) -> None:
        lo = np.asarray(self.min_m, dtype=float)
        hi = np.asarray(self.max_m, dtype=float)
        if lo.shape != (3,) or hi.shape != (3,):
            raise ValueError(f"zone corners must be 3-vectors, got min={self.min_m!r} max={self.max_m!r}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(f"zone corners must be finite, got min={self.min_m!r} max={self.max_m!r}")
        if np.any(hi <= lo):
            raise ValueError(f"zone max must exceed min on every axis, got min={self.min_m!r} max={self.max_m!r}")

    @classmethod
    def from_lists(cls, min_m, max_m) -> Zone:
        return cls(tuple(float(v) for v in min_m), tuple(float(v) for v in max_m))

    @property
    def center_m(self) -> np.ndarray:
        return 0.5 * (np.asarray(self.min_m) + np.asarray(self.max_m))

    @property
    def size_m(self) -> np.ndarray:
        return np.asarray(self.max_m) - np.asarray(self.min_m)

    def contains(self, point_m, margin_m: float = 0.0) -> bool:
        """True when ``point_m`` lies inside the box grown by ``margin_m`` on every side.

        A non-finite point is never inside: callers decide what "unknown" means.
        """
        p = np.asarray(point_m, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            return False
        lo = np.asarray(self.min_m) - margin_m
        hi = np.asarray(self.max_m) + margin_m
        return bool(np.all(p >= lo) and np.all(p <= hi))

    def contains_many(self, points_m, margin_m: float = 0.0) -> np.ndarray:
        """Vectorised :meth:`contains` over an ``(N, 3)`` array."""
        p = np.asarray(points_m, dtype=float).reshape(-1, 3)
        lo = np.asarray(self.min_m) - margin_m
        hi = np.asarray(self.max_m) + margin_m
        finite = np.all(np.isfinite(p), axis=1)
        with np.errstate(invalid="ignore"):
            inside = np.all(p >= lo, axis=1) & np.all(p <= hi, axis=1)
        return inside & finite


def minimum_jerk(t_s, duration_s: float):
    """Minimum-jerk phase ``s`` and its first two time derivatives at time ``t_s``.

    ``s`` goes from 0 at ``t_s <= 0`` to 1 at ``t_s >= duration_s`` with zero velocity and
    acceleration at both ends (Flash & Hogan 1985). Returns ``(s, ds_dt, d2s_dt2)``.
    """
    if duration_s <= 0.0:
        raise ValueError(f"minimum-jerk duration must be positive, got {duration_s!r} s")
    tau = np.clip(np.asarray(t_s, dtype=float) / duration_s, 0.0, 1.0)
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    ds = (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / duration_s
    dds = (60 * tau - 180 * tau**2 + 120 * tau**3) / duration_s**2
    return s, ds, dds


# Peak of ds/dt for a unit minimum-jerk move of unit duration (at tau = 0.5).
MINIMUM_JERK_PEAK_VELOCITY = 1.875

"""Reactive baseline: take the turn once the zone has been perceived empty for ``debounce_s``.

Its debounce is itself a bounded wait on a clear zone, so the base class's liveness fallback fires
only after ``max(fallback_clear_s, debounce_s)``: a long debounce chosen for partners who make
false starts (docs/benchmarks.md) is not cut short."""

from __future__ import annotations

import math

from coop_robot.policy.base import (
    DEFAULT_FALLBACK_CLEAR_S,
    TIME_TOLERANCE_S,
    Decision,
    Observation,
    Policy,
    PolicyError,
    register,
)


@register("reactive")
class ReactivePolicy(Policy):
    name = "reactive"

    def __init__(self, debounce_s: float = 0.4, stale_after_s: float = 0.5,
                 fallback_clear_s: float = DEFAULT_FALLBACK_CLEAR_S) -> None:
        if not (math.isfinite(debounce_s) and debounce_s >= 0.0):
            raise PolicyError(f"debounce_s must be a finite value >= 0, got {debounce_s!r}")
        self.debounce_s = float(debounce_s)
        super().__init__(stale_after_s, fallback_clear_s)

    @property
    def own_clear_wait_s(self) -> float:
        return self.debounce_s

    def reset(self) -> None:
        super().reset()
        self._empty_since_s = math.nan

    def decide(self, obs: Observation) -> Decision:
        if obs.partner_in_zone:
            self._empty_since_s = math.nan
            return Decision("wait")
        if math.isnan(self._empty_since_s):
            self._empty_since_s = obs.t_s
        empty_s = obs.t_s - self._empty_since_s
        if obs.robot_state == "home" and self.robot_turn_due and empty_s >= self.debounce_s - TIME_TOLERANCE_S:
            return Decision("act")
        if obs.robot_state in ("reaching", "acting"):
            return Decision("act")  # keep going: the controller's guard still watches the zone
        return Decision("wait")

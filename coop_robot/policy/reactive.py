"""Reactive baseline: take the turn once the zone has been perceived empty for ``debounce_s``."""

from __future__ import annotations

import math

from coop_robot.policy.base import Decision, Observation, Policy, PolicyError, register

#: Times are float seconds (epoch-sized in a lab bag): 53.98 - 53.58 < 0.4. A debounce counts as
#: elapsed within this much (s), so a tick exactly one debounce later acts on that tick.
TIME_TOLERANCE_S = 1e-6


@register("reactive")
class ReactivePolicy(Policy):
    name = "reactive"

    def __init__(self, debounce_s: float = 0.4, stale_after_s: float = 0.5) -> None:
        if not (math.isfinite(debounce_s) and debounce_s >= 0.0):
            raise PolicyError(f"debounce_s must be a finite value >= 0, got {debounce_s!r}")
        self.debounce_s = float(debounce_s)
        super().__init__(stale_after_s)

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

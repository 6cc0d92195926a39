"""Oracle: knows from the simulation when the partner's hand will leave the zone.

A lower bound for benchmarks only (it reads sim ground truth that no real robot has). It starts
the reach ``entry_lead_s`` before the planned exit plus ``margin_s``, so the end effector arrives
at the boundary just after the hand has left.
"""

from __future__ import annotations

import math

from coop_robot.policy.base import Decision, Observation, Policy, PolicyError, register


@register("oracle")
class OraclePolicy(Policy):
    name = "oracle"
    yields_to_partner = False  # it starts before the zone is clear by design

    def __init__(self, entry_lead_s: float = 0.875, margin_s: float = 0.05, stale_after_s: float = 0.5) -> None:
        for key, val in (("entry_lead_s", entry_lead_s), ("margin_s", margin_s)):
            if not (math.isfinite(val) and val >= 0.0):
                raise PolicyError(f"{key} must be a finite value >= 0, got {val!r}")
        self.entry_lead_s = float(entry_lead_s)
        self.margin_s = float(margin_s)
        super().__init__(stale_after_s)

    def decide(self, obs: Observation) -> Decision:
        planned = obs.partner_planned_exit_s
        if obs.robot_state in ("reaching", "acting"):
            return Decision("act")
        if planned is None or not math.isfinite(planned):
            return Decision("wait")
        forecast = max(0.0, planned - obs.t_s)
        if obs.robot_state == "home" and self.robot_turn_due and obs.t_s >= planned + self.margin_s - self.entry_lead_s:
            return Decision("act", forecast)
        return Decision("wait", forecast)

"""Oracle: knows from the simulation when the partner's turn will end.

"The exit" below is the hand's last exit from the zone in the partner's current turn
(``PartnerModel.planned_turn_exit_s``): through a false start that enters the zone, the oracle
waits for the real reach's exit instead of acting on the false start's.

A lower bound for benchmarks only (it reads sim ground truth that no real robot has). It uses the
controller's anticipation: it says "act" ``entry_lead_s`` before the planned exit plus
``margin_s`` -- while the partner is still inside -- so that the reach comes to the controller's
waiting point (the last point of the path that keeps S_p for a hand anywhere in the zone) just as
the hand is perceived out, and goes on without stopping; the controller's zone guard and
separation monitoring, not this policy, keep the robot out while the partner is inside. The
default (0.5 s) gave the shortest gaps on the typical partner in a sweep of 0.35-0.85 s; with the
controller's anticipation off the decision waits for the zone to clear and the robot enters about
one nominal reach-to-entry time (1.16 s) after the exit.
"""

from __future__ import annotations

import math

from coop_robot.policy.base import DEFAULT_FALLBACK_CLEAR_S, Decision, Observation, Policy, PolicyError, register


@register("oracle")
class OraclePolicy(Policy):
    name = "oracle"
    yields_to_partner = False  # it starts before the zone is clear by design
    #: The lead (s) that gave the shortest gaps on the typical partner under separation monitoring.
    DEFAULT_ENTRY_LEAD_S = 0.5

    def __init__(self, entry_lead_s: float = DEFAULT_ENTRY_LEAD_S, margin_s: float = 0.0, stale_after_s: float = 0.5,
                 fallback_clear_s: float = DEFAULT_FALLBACK_CLEAR_S) -> None:
        for key, val in (("entry_lead_s", entry_lead_s), ("margin_s", margin_s)):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not (math.isfinite(val) and val >= 0.0):
                raise PolicyError(f"{key} must be a finite value >= 0 (s), got {val!r}")
        self.entry_lead_s = float(entry_lead_s)
        self.margin_s = float(margin_s)
        super().__init__(stale_after_s, fallback_clear_s)

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

"""The ``eager`` policy: "act" as soon as the robot's turn is due, no forecast.

It says "act" once the partner has been perceived in the zone since the robot last acted
(base-class ``robot_turn_due``) and keeps saying it while the robot is reaching or acting. It
never yields: the controller's zone guard and separation monitoring, not the policy, keep the arm
out of the zone while the partner is in it. The gap it leaves is what the controller achieves
without any anticipation of its own -- the baseline a forecasting policy has to beat.
"""

from __future__ import annotations

from coop_robot.policy.base import DEFAULT_FALLBACK_CLEAR_S, Decision, Observation, Policy, register


@register("eager")
class EagerPolicy(Policy):
    name = "eager"
    yields_to_partner = False  # the controller's guards, not the policy, keep the arm out

    def __init__(self, stale_after_s: float = 0.5, fallback_clear_s: float = DEFAULT_FALLBACK_CLEAR_S) -> None:
        super().__init__(stale_after_s, fallback_clear_s)

    def decide(self, obs: Observation) -> Decision:
        if obs.robot_state == "home":
            return Decision("act" if self.robot_turn_due else "wait")
        if obs.robot_state in ("reaching", "acting"):
            return Decision("act")
        return Decision("wait")

"""Policy node: perception + controller state in, a turn decision out, once per tick."""

from __future__ import annotations

import math
import sys

import numpy as np
from geometry_msgs.msg import PointStamped, Vector3Stamped
from rclpy.node import Node
from sensor_msgs.msg import JointState, TimeReference
from std_msgs.msg import Bool, Float64, String

from coop_robot.nodes.common import (
    COMMAND_QOS,
    EVENT_QOS,
    LATCHED_QOS,
    ParameterError,
    declare,
    declare_zone,
    now_s,
    run_node,
    stamp_to_s,
)
from coop_robot.policy import Observation, PolicyError, make_policy, policy_names


class PolicyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("policy", **kwargs)
        names = tuple(policy_names())
        self.policy_name = declare(self, "policy", "reactive", "Policy to run", choices=names)
        rate = declare(self, "rate_hz", 50.0, "Decision rate (Hz, node clock)", 1.0, 1000.0)
        stale = declare(self, "stale_after_s", 0.5, "Perception older than this (s) is stale: decide 'wait'", 0.01, 10.0)
        debounce = declare(self, "debounce_s", 0.4, "reactive: time the zone must be perceived empty before acting (s)", 0.0, 10.0)
        lead = declare(self, "entry_lead_s", 0.85, "oracle: act this long before the partner's planned exit (s)", 0.0, 5.0)
        margin = declare(self, "margin_s", 0.0, "oracle: shift of the act time after the partner's planned exit (s)", 0.0, 5.0)
        checkpoint = declare(self, "checkpoint", "", "mirror: checkpoint file ('' = the one shipped in the package)")
        act_threshold = declare(self, "act_threshold", 0.5, "mirror: act when P(act) reaches this", 0.01, 0.99)
        self.robot_base_m = declare(self, "robot_base_m", [0.0, 0.0, 0.626],
                                    "Robot base position in world (m), for the end effector by forward kinematics")
        params = {"stale_after_s": stale}
        if self.policy_name == "reactive":
            params["debounce_s"] = debounce
        elif self.policy_name == "oracle":
            params.update(entry_lead_s=lead, margin_s=margin)
        elif self.policy_name == "mirror":
            zone = declare_zone(self)
            params.update(checkpoint=checkpoint or None, act_threshold=act_threshold,
                          release_threshold=min(0.2, act_threshold), zone_min_m=list(zone.min_m),
                          zone_max_m=list(zone.max_m))
        try:
            self.policy = make_policy(self.policy_name, **params)
        except PolicyError as exc:
            raise ParameterError(str(exc)) from exc

        self._in_zone: bool | None = None
        self._hand = np.full(3, np.nan)
        self._vel = np.full(3, np.nan)
        self._stamp_s = -math.inf
        self._robot_state = "unknown"
        self._planned_exit_s: float | None = None
        self._ee = np.full(3, np.nan)
        self._fk = None

        self.create_subscription(Bool, "/partner/in_zone", self._on_in_zone, 10)
        self.create_subscription(PointStamped, "/partner/hand", self._on_hand, 10)
        self.create_subscription(Vector3Stamped, "/partner/hand_velocity", self._on_vel, 10)
        self.create_subscription(String, "/controller/state", self._on_state, LATCHED_QOS)
        if self.policy_name == "oracle":
            self.create_subscription(TimeReference, "/sim/ground_truth/partner_plan", self._on_plan, EVENT_QOS)
        if self.policy_name == "mirror":  # the mirror network watches the robot's own hand too
            from coop_robot.control.kinematics import PandaKinematics

            self._fk = PandaKinematics(base_m=self.robot_base_m)
            self.create_subscription(JointState, "/joint_states", self._on_joints, COMMAND_QOS)
        self.decision_pub = self.create_publisher(String, "/policy/decision", COMMAND_QOS)
        self.forecast_pub = self.create_publisher(Float64, "/policy/exit_forecast", COMMAND_QOS)
        self.create_timer(1.0 / rate, self._tick)
        self.get_logger().info(f"policy '{self.policy_name}' at {rate:.0f} Hz")

    def _on_in_zone(self, msg: Bool) -> None:
        self._in_zone = bool(msg.data)

    def _on_hand(self, msg: PointStamped) -> None:
        self._hand = np.array([msg.point.x, msg.point.y, msg.point.z])
        self._stamp_s = stamp_to_s(msg.header.stamp)

    def _on_vel(self, msg: Vector3Stamped) -> None:
        self._vel = np.array([msg.vector.x, msg.vector.y, msg.vector.z])

    def _on_state(self, msg: String) -> None:
        self._robot_state = msg.data

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = self._fk.arm_positions(list(msg.name), list(msg.position))
        except ValueError as exc:
            self.get_logger().error(f"/joint_states unusable: {exc}", throttle_duration_sec=5.0)
            return
        self._ee = np.asarray(self._fk.ee_position(q), dtype=float)

    def _on_plan(self, msg: TimeReference) -> None:
        if msg.source == "planned_exit":
            self._planned_exit_s = stamp_to_s(msg.time_ref)

    def _tick(self) -> None:
        t = now_s(self)
        obs = Observation(
            t_s=t,
            partner_in_zone=self._in_zone,
            perception_age_s=t - self._stamp_s,
            partner_hand_m=self._hand,
            partner_velocity_mps=self._vel,
            robot_state=self._robot_state,
            robot_ee_m=self._ee,
            partner_planned_exit_s=self._planned_exit_s,
        )
        decision = self.policy.step(obs)
        self.decision_pub.publish(String(data=decision.action))
        self.forecast_pub.publish(Float64(data=float(decision.exit_forecast_s)))


def main(args=None) -> None:
    sys.exit(run_node(PolicyNode, args))


if __name__ == "__main__":
    main()

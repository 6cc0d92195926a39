"""Controller node: turn decisions, perception and joint states in; JointTrajectory commands out.

A thin wrapper around :class:`coop_robot.control.controller.ArmController`: it keeps the newest
value of every input, ticks the core at ``rate_hz`` on the node clock (sim time in simulation)
and publishes what the core returns. The trajectory goes to a ros2_control joint trajectory
controller (or the simulation, which accepts the same message) with a zero header stamp,
meaning "start on receipt".
"""

from __future__ import annotations

import sys

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import PointStamped, Vector3Stamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from sensor_msgs.msg import JointState, TimeReference
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from coop_robot.control.controller import (
    DECISIONS,
    ArmController,
    ControllerConfig,
    ControllerInputs,
    ControllerOutput,
    TrajectoryCommand,
)
from coop_robot.control.kinematics import DEFAULT_ROBOT_BASE_M, JOINT_NAMES, IKError
from coop_robot.nodes.common import (
    COMMAND_QOS,
    EVENT_QOS,
    LATCHED_QOS,
    ParameterError,
    declare,
    declare_zone,
    now_s,
    run_node,
    s_to_stamp,
    stamp_to_s,
)

DEFAULT_TRAJECTORY_TOPIC = "/panda_arm_controller/joint_trajectory"


class ControllerNode(Node):
    """ROS plumbing for the arm controller (node name ``controller``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("controller", **kwargs)
        defaults = ControllerConfig()
        topic = declare(self, "trajectory_topic", DEFAULT_TRAJECTORY_TOPIC,
                        "JointTrajectory command topic: the sim's, or a real ros2_control JTC's "
                        "(e.g. /joint_trajectory_controller/joint_trajectory)")
        if not topic.startswith("/"):
            raise ParameterError(f"parameter 'trajectory_topic' must be an absolute topic name, got {topic!r}")
        joint_names = self._declare_joint_names()
        home = declare(self, "robot_home_joint_positions_rad", list(defaults.home_rad),
                       "Home joint configuration (rad, joint_names order), outside the zone; shared via world.yaml")
        target = declare(self, "target_m", list(defaults.target_m),
                         "EE target for the robot's turn, inside the zone [x, y, z] (m, world frame)")
        base = declare(self, "robot_base_m", list(DEFAULT_ROBOT_BASE_M),
                       "Robot base (panda_link0) position in the world frame (m), identity orientation")
        velocity_scale = declare(self, "velocity_scale", defaults.velocity_scale,
                                 "Fraction of the joint velocity/acceleration limits used for moves, in (0, 1]",
                                 0.01, 1.0)
        min_move = declare(self, "min_move_duration_s", defaults.min_move_duration_s,
                           "Shortest duration of any move (s)", 0.0, 10.0)
        act = declare(self, "act_duration_s", defaults.act_duration_s,
                      "Dwell at the target during the robot's turn (s)", 0.0, 60.0)
        timeout = declare(self, "perception_timeout_s", defaults.perception_timeout_s,
                          "Watchdog: perception older than this (s) stops the arm and returns it home",
                          0.01, 10.0)
        margin = declare(self, "commit_margin_m", defaults.commit_margin_m,
                         "Zone guard: an aborted reach keeps the EE at least this far outside the zone (m)",
                         0.0, 0.5)
        point_rate = declare(self, "point_rate_hz", defaults.point_rate_hz,
                             "Trajectory points per second in each JointTrajectory", 1.0, 1000.0)
        grace = declare(self, "startup_grace_s", defaults.startup_grace_s,
                        "After start-up, wait this long (s) for perception before holding", 0.0, 60.0)
        stop_scale = declare(self, "stop_acceleration_scale", defaults.stop_acceleration_scale,
                             "Fraction of the acceleration limits used to brake (e-stop) and abort, in (0, 1]",
                             0.01, 1.0)
        anticipation = declare(self, "anticipation", defaults.anticipation,
                               "On 'act' while the partner is inside, approach a staging pose outside the zone "
                               "and enter once the partner is perceived out")
        staging_clearance = declare(self, "staging_clearance_m", defaults.staging_clearance_m,
                                    "Staging pose: EE distance outside the zone (m), >= commit_margin_m", 0.0, 0.5)
        staging_timeout = declare(self, "staging_timeout_s", defaults.staging_timeout_s,
                                  "Longest hold at the staging pose before returning home (s)", 0.01, 60.0)
        entry_scale = declare(self, "entry_velocity_scale", defaults.entry_velocity_scale,
                              "Fraction of the joint limits for the staging -> target entry move, in (0, 1]",
                              0.01, 1.0)
        approach_horizon = declare(self, "approach_horizon_s", defaults.approach_horizon_s,
                                   "Approach guard: a hand outside but reaching the zone within this time at its "
                                   "perceived speed counts as inside (no entry starts); 0 disables (s)", 0.0, 5.0)
        approach_speed = declare(self, "approach_min_speed_mps", defaults.approach_min_speed_mps,
                                 "Approach guard: slowest hand speed toward the zone that counts (m/s)", 0.0, 5.0)
        rate_hz = declare(self, "rate_hz", 100.0, "Control tick rate (Hz, node clock)", 1.0, 1000.0)
        self.decision_timeout_s = declare(self, "decision_timeout_s", 0.5,
                                          "A policy decision older than this (s) counts as none", 0.01, 10.0)
        zone = declare_zone(self)
        # Read once: reject later changes instead of accepting values that would not take effect.
        self.add_on_set_parameters_callback(self._on_set_parameters)
        try:
            config = ControllerConfig(
                joint_names=tuple(joint_names), home_rad=tuple(home), target_m=tuple(target), zone=zone,
                velocity_scale=velocity_scale, min_move_duration_s=min_move, act_duration_s=act,
                perception_timeout_s=timeout, commit_margin_m=margin, point_rate_hz=point_rate,
                robot_base_m=tuple(base), startup_grace_s=grace, stop_acceleration_scale=stop_scale,
                anticipation=anticipation, staging_clearance_m=staging_clearance,
                staging_timeout_s=staging_timeout, entry_velocity_scale=entry_scale,
                approach_horizon_s=approach_horizon, approach_min_speed_mps=approach_speed)
            self.core = ArmController(config)
        except (ValueError, IKError) as exc:
            raise ParameterError(str(exc)) from exc

        self._decision: str | None = None
        self._decision_received_s = -np.inf
        self._in_zone: bool | None = None
        self._perception_stamp_s: float | None = None
        self._joints: np.ndarray | None = None
        self._hand_m: np.ndarray | None = None
        self._hand_velocity_mps: np.ndarray | None = None
        self._estop = False
        self._published_state: str | None = None

        self.create_subscription(String, "/policy/decision", self._on_decision, COMMAND_QOS)
        self.create_subscription(Bool, "/partner/in_zone", self._on_in_zone, 10)
        self.create_subscription(PointStamped, "/partner/hand", self._on_hand, 10)
        self.create_subscription(Vector3Stamped, "/partner/hand_velocity", self._on_hand_velocity, 10)
        self.create_subscription(JointState, "/joint_states", self._on_joint_states, COMMAND_QOS)
        self.create_subscription(Bool, "/emergency_stop", self._on_estop, 10)
        self.trajectory_pub = self.create_publisher(JointTrajectory, topic, COMMAND_QOS)
        self.state_pub = self.create_publisher(String, "/controller/state", LATCHED_QOS)
        self.events_pub = self.create_publisher(TimeReference, "/controller/events", EVENT_QOS)
        self._publish_state(self.core.state)
        self.create_timer(1.0 / rate_hz, self._tick)
        core = self.core
        self.get_logger().info(
            f"commanding {topic} at {rate_hz:.0f} Hz; home EE {np.round(core.home_ee_m, 3).tolist()} m, "
            f"target {np.round(core.target_ee_m, 3).tolist()} m; reach {core.nominal_reach.duration_s:.2f} s, "
            f"zone entry after {core.nominal_entry_s:.2f} s, committed after {core.nominal_commit_s:.2f} s")

    def _declare_joint_names(self) -> list[str]:
        # common.declare validates lists as numbers; joint names are a string array.
        desc = ParameterDescriptor(description="Arm joint names in JointTrajectory / JointState order (7)")
        try:
            names = self.declare_parameter("joint_names", list(JOINT_NAMES), desc).value
        except Exception as exc:  # rclpy raises several types for a bad override; name the parameter
            raise ParameterError(f"parameter 'joint_names': {exc}") from exc
        if (not isinstance(names, (list, tuple)) or len(names) != 7 or len(set(names)) != 7
                or not all(isinstance(n, str) and n for n in names)):
            raise ParameterError(f"parameter 'joint_names' must be 7 distinct joint names, got {names!r}")
        return list(names)

    def _on_set_parameters(self, params) -> SetParametersResult:
        names = [p.name for p in params if p.name != "use_sim_time"]
        if names:
            return SetParametersResult(successful=False, reason=(
                f"controller parameters are read at start-up; restart the node to change {', '.join(names)}"))
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ inputs
    def _on_decision(self, msg: String) -> None:
        if msg.data not in DECISIONS:
            self.get_logger().warning(f"ignoring decision {msg.data!r}; expected one of {DECISIONS}",
                                      throttle_duration_sec=5.0)
            return
        self._decision = msg.data
        self._decision_received_s = now_s(self)

    def _on_in_zone(self, msg: Bool) -> None:
        self._in_zone = bool(msg.data)

    def _on_hand(self, msg: PointStamped) -> None:
        # The stamp (image time) is the perception freshness; a NaN point (no hand seen) still counts.
        self._perception_stamp_s = stamp_to_s(msg.header.stamp)
        self._hand_m = np.array([msg.point.x, msg.point.y, msg.point.z], dtype=float)

    def _on_hand_velocity(self, msg: Vector3Stamped) -> None:
        self._hand_velocity_mps = np.array([msg.vector.x, msg.vector.y, msg.vector.z], dtype=float)

    def _on_joint_states(self, msg: JointState) -> None:
        index = {name: i for i, name in enumerate(msg.name)}
        try:
            self._joints = np.array([msg.position[index[n]] for n in self.core.config.joint_names], dtype=float)
        except (KeyError, IndexError):
            pass  # a message for other joints (e.g. the gripper alone): keep the last arm state

    def _on_estop(self, msg: Bool) -> None:
        if bool(msg.data) != self._estop:
            self.get_logger().warning("EMERGENCY STOP" if msg.data else "emergency stop released")
        self._estop = bool(msg.data)

    # ------------------------------------------------------------------ tick
    def _tick(self) -> None:
        t = now_s(self)
        if t <= 0.0:
            return  # sim time not received yet
        fresh_decision = t - self._decision_received_s <= self.decision_timeout_s
        decision = self._decision if fresh_decision else None
        if decision == "act" and self.trajectory_pub.get_subscription_count() == 0:
            # Nobody would execute a reach (arm driver not up, or not yet discovered): wait.
            self.get_logger().warning(f"no subscriber on {self.trajectory_pub.topic_name}: not starting motion",
                                      throttle_duration_sec=5.0)
            decision = None
        inputs = ControllerInputs(
            decision=decision,
            partner_in_zone=self._in_zone,
            perception_stamp_s=self._perception_stamp_s,
            joint_positions=self._joints,
            estop=self._estop,
            partner_hand_m=self._hand_m,
            partner_velocity_mps=self._hand_velocity_mps,
        )
        out = self.core.update(t, inputs)
        self._publish(out)

    def _publish(self, out: ControllerOutput) -> None:
        if out.trajectory is not None:
            self.trajectory_pub.publish(_trajectory_msg(out.trajectory))
        for warning in out.warnings:
            self.get_logger().warning(warning)
        for event in out.events:
            msg = TimeReference()
            msg.header.stamp = s_to_stamp(event.t_s)
            msg.time_ref = msg.header.stamp
            msg.source = event.name
            self.events_pub.publish(msg)
            self.get_logger().info(f"{event.name} at {event.t_s:.3f} s")
        self._publish_state(out.state)

    def _publish_state(self, state: str) -> None:
        if state != self._published_state:
            self.state_pub.publish(String(data=state))
            self._published_state = state


def _trajectory_msg(command: TrajectoryCommand) -> JointTrajectory:
    msg = JointTrajectory()
    # header.stamp stays zero: a JTC starts a zero-stamped trajectory on receipt.
    msg.joint_names = list(command.joint_names)
    for p in command.points:
        point = JointTrajectoryPoint()
        point.positions = list(p.positions)
        point.velocities = list(p.velocities)
        point.accelerations = list(p.accelerations)
        sec, nanosec = divmod(int(round(p.time_from_start_s * 1e9)), 1_000_000_000)
        point.time_from_start = Duration(sec=sec, nanosec=nanosec)
        msg.points.append(point)
    return msg


def main(args=None) -> None:
    try:
        code = run_node(lambda: ControllerNode(), args)
    except _rclpy.RCLError as exc:  # e.g. an unparsable --params-file, reported by rclpy.init
        print(f"[coop_robot] controller could not start: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()

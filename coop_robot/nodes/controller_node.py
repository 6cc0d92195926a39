"""Controller node: turn decisions, perception and joint states in; JointTrajectory commands out.

A thin wrapper around :class:`coop_robot.control.controller.ArmController`: it keeps the newest
value of every input, ticks the core at ``rate_hz`` on the node clock (sim time in simulation),
and at once when a perception frame is complete (its hand and velocity here), and publishes what
the core returns. The trajectory goes to a ros2_control joint trajectory
controller (or the simulation, which accepts the same message) stamped with the controller-clock
time its move starts (``stamp_trajectories``; false: a zero stamp, meaning "start on receipt"): the
tick's time, except for a reach from rest, which starts when it is sent (``ArmController.sent_at``).

E-stop: ``/emergency_stop`` is subscribed twice, volatile (every publisher, ``ros2 topic pub`` as
it is) and transient local (a stop published before this node matched its publisher, or before
it started, still arrives); ``/controller/emergency_stop`` (std_srvs/SetBool) answers once the
stop or release is in force. :class:`coop_robot.control.estop.EstopLatch` decides which command holds.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped, Vector3Stamped
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState, TimeReference
from std_msgs.msg import Bool, Float64, String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from coop_robot.control.controller import (
    CONTROLLER_PARAMETERS,
    ArmController,
    ControllerInputs,
    ControllerOutput,
    ControllerParameter,
    TrajectoryCommand,
    controller_config_from_params,
    parse_decision_text,
)
from coop_robot.control.estop import ESTOP_SERVICE, ESTOP_TOPIC, EstopLatch
from coop_robot.control.kinematics import IKError, select_joint_positions
from coop_robot.nodes.common import (
    COMMAND_QOS,
    EVENT_QOS,
    LATCHED_QOS,
    LatencyReporter,
    ParameterError,
    StampLeadGuard,
    declare,
    declare_joint_names,
    declare_zone,
    now_s,
    refuse_parameter_changes,
    run_node,
    s_to_stamp,
    ssm_message,
    stamp_to_s,
)
from coop_robot.timing.ssm_sample import CONTROLLER_SSM, SsmSample
from coop_robot.timing.sync import SYNC_ARRIVAL_AFTER, SYNC_TARGET, reach_arrival_after_s, sync_task_config


class ControllerNode(Node):
    """ROS plumbing for the arm controller (node name ``controller``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("controller", **kwargs)
        # One table (coop_robot.control.controller.CONTROLLER_PARAMETERS) feeds this node, the fast
        # environment, training and the benchmarks: declare every entry, then build the core from it.
        values = {spec.name: self._declare(spec) for spec in CONTROLLER_PARAMETERS}
        topic = values["trajectory_topic"]
        if not topic.startswith("/"):
            raise ParameterError(f"parameter 'trajectory_topic' must be an absolute topic name, got {topic!r}")
        rate_hz = values["rate_hz"]
        self.decision_timeout_s = values["decision_timeout_s"]
        self.stamp_trajectories = values["stamp_trajectories"]
        zone = declare_zone(self)
        # Read once: reject later changes instead of accepting values that would not take effect.
        self.add_on_set_parameters_callback(refuse_parameter_changes("controller parameters"))
        try:
            self.core = ArmController(controller_config_from_params(values, zone))
        except (ValueError, IKError) as exc:
            raise ParameterError(str(exc)) from exc
        self._joint_names = list(self.core.config.joint_names)
        self._stamp_guard = StampLeadGuard(self, self.core.config.max_stamp_lead_s)

        self._decision: str | None = None
        self._decision_fallback = False   # the "act" is the policy's liveness fallback ("act fallback")
        self._decision_received_s = -np.inf
        self._in_zone: bool | None = None
        self._perception_stamp_s: float | None = None
        self._joints: np.ndarray | None = None
        self._joints_stamp_s: float | None = None
        self._hand_m: np.ndarray | None = None
        self._hand_velocity_mps: np.ndarray | None = None
        self._velocity_stamp_s: float | None = None
        self._hand_received_s: float | None = None    # node clock when the newest hand arrived
        self._ticked_stamp_s = -np.inf                 # newest perception stamp a tick has used
        self._last_tick_s = -np.inf
        self._estop = EstopLatch()
        self._published_state: str | None = None

        self.create_subscription(String, "/policy/decision", self._on_decision, COMMAND_QOS)
        self.create_subscription(Bool, "/partner/in_zone", self._on_in_zone, 10)
        self.create_subscription(PointStamped, "/partner/hand", self._on_hand, 10)
        self.create_subscription(Vector3Stamped, "/partner/hand_velocity", self._on_hand_velocity, 10)
        self.create_subscription(JointState, "/joint_states", self._on_joint_states, COMMAND_QOS)
        # Both durabilities (a subscription matches no publisher of a stronger durability than its own):
        # the volatile one takes every publisher; the transient-local one, depth 1, the latched stop
        # a publisher sent before the two matched. A volatile publisher offers it incompatible QoS:
        # expected, and not worth a warning each time one is discovered.
        self.create_subscription(Bool, ESTOP_TOPIC, self._on_estop, COMMAND_QOS)
        self.create_subscription(Bool, ESTOP_TOPIC, self._on_estop, LATCHED_QOS, event_callbacks=(
            SubscriptionEventCallbacks(incompatible_qos=lambda _event: None, use_default_callbacks=False)))
        self.create_service(SetBool, ESTOP_SERVICE, self._on_estop_request)
        self.trajectory_pub = self.create_publisher(JointTrajectory, topic, COMMAND_QOS)
        # Camera stamp -> the end of the first tick that used that frame (its command, if any, is out);
        # and this node's share: the hand's arrival here -> the end of that tick.
        self._latency = LatencyReporter(self, ["camera->controller", "hand->controller"])
        self.state_pub = self.create_publisher(String, "/controller/state", LATCHED_QOS)
        self.events_pub = self.create_publisher(TimeReference, "/controller/events", EVENT_QOS)
        # Separation monitoring as the controller perceives it (reliable: the turn tracker scores it).
        self.ssm_pub = self.create_publisher(DiagnosticArray, CONTROLLER_SSM, SSM_QOS)
        self._publish_state(self.core.state)
        if self.core.config.task == "sync":
            self._publish_sync_reach()
        self.create_timer(1.0 / rate_hz, self._tick)
        core = self.core
        reach = ("the sync reach above (no zone entry to gate)" if core.config.task == "sync" else
                 f"target {np.round(core.target_ee_m, 3).tolist()} m; reach {core.nominal_reach.duration_s:.2f} s, "
                 f"zone entry after {core.nominal_entry_s:.2f} s; an uncommitted reach stops at its gate "
                 f"{core.nominal_gate_s:.2f} s along it")
        self.get_logger().info(
            f"commanding {topic} at {rate_hz:.0f} Hz; home EE {np.round(core.home_ee_m, 3).tolist()} m, {reach}")

    def _publish_sync_reach(self) -> None:
        """The sync task (latched): the robot's target, which the sim scores its arrival at, and how
        long its nominal reach takes from its start to arriving there (for the sync oracle)."""
        core = self.core
        radius_m = sync_task_config().arrival_radius_m
        arrival_s = reach_arrival_after_s(core.sync_reach, core.kinematics, core.config.sync_target_m, radius_m)
        target = PointStamped(point=Point(**dict(zip("xyz", (float(v) for v in core.config.sync_target_m)))))
        target.header.frame_id = "world"
        target.header.stamp = s_to_stamp(now_s(self))
        self.sync_target_pub = self.create_publisher(PointStamped, SYNC_TARGET, LATCHED_QOS)
        self.sync_arrival_pub = self.create_publisher(Float64, SYNC_ARRIVAL_AFTER, LATCHED_QOS)
        self.sync_target_pub.publish(target)
        self.sync_arrival_pub.publish(Float64(data=arrival_s))
        self.get_logger().info(f"sync task: reach to {[round(float(v), 3) for v in core.config.sync_target_m]} m, "
                               f"arriving {arrival_s:.2f} s after its start")

    def _declare(self, spec: ControllerParameter):
        if spec.name != "joint_names":
            return declare(self, spec.name, spec.default, spec.description, spec.low, spec.high)
        return declare_joint_names(self, spec.default, spec.description)

    # ------------------------------------------------------------------ inputs
    def _on_decision(self, msg: String) -> None:
        try:
            self._decision, self._decision_fallback = parse_decision_text(msg.data)
        except ValueError as exc:
            self.get_logger().warning(f"ignoring decision: {exc}", throttle_duration_sec=5.0)
            return
        self._decision_received_s = now_s(self)

    def _on_in_zone(self, msg: Bool) -> None:
        self._in_zone = bool(msg.data)

    def _on_hand(self, msg: PointStamped) -> None:
        # The stamp (image time) is the perception freshness; a NaN point (no hand seen) still counts.
        stamp_s = stamp_to_s(msg.header.stamp)
        if self._stamp_guard.ahead("/partner/hand", stamp_s):
            return
        self._perception_stamp_s = stamp_s
        self._hand_received_s = now_s(self)
        self._hand_m = np.array([msg.point.x, msg.point.y, msg.point.z], dtype=float)
        self._tick_on_new_frame()

    def _on_hand_velocity(self, msg: Vector3Stamped) -> None:
        if self._stamp_guard.ahead("/partner/hand_velocity", stamp_to_s(msg.header.stamp)):
            return  # from the future: dropped with its position
        self._hand_velocity_mps = np.array([msg.vector.x, msg.vector.y, msg.vector.z], dtype=float)
        self._velocity_stamp_s = stamp_to_s(msg.header.stamp)
        self._tick_on_new_frame()

    def _tick_on_new_frame(self) -> None:
        """Tick now when a frame's hand and velocity are both here: separation monitoring acts on a
        new perception without waiting up to a tick period for the timer (the camera-to-command
        latency). Not twice at one clock reading (sim time moves in /clock steps)."""
        stamp = self._perception_stamp_s
        if (stamp is not None and stamp == self._velocity_stamp_s and stamp > self._ticked_stamp_s
                and now_s(self) > self._last_tick_s):
            self._tick()

    def _on_joint_states(self, msg: JointState) -> None:
        try:
            self._joints = select_joint_positions(msg.name, msg.position, self._joint_names)
            stamp_s = stamp_to_s(msg.header.stamp)
            self._joints_stamp_s = stamp_s if stamp_s > 0.0 else None  # unstamped: taken as now
        except ValueError as exc:
            # Another device's message (e.g. the gripper alone) or an arm whose joints are named
            # otherwise: keep the last arm state, and say so -- a silent mismatch never moves the arm.
            self.get_logger().warning(f"/joint_states message ignored: {exc}; set joint_names to the arm's joints",
                                      throttle_duration_sec=5.0)

    def _on_estop(self, msg: Bool, info: dict) -> None:
        # The DDS source timestamp (the publisher's system clock) says when the command was issued.
        issued_ns = info.get("source_timestamp") or time.time_ns()
        was = self._estop.engaged
        applied = self._estop.command(bool(msg.data), issued_ns, (issued_ns, info.get("publication_sequence_number")))
        if not applied and not msg.data:
            self.get_logger().warning(
                f"release on {ESTOP_TOPIC} ignored: issued before the stop in force (an old latched message, "
                f"or clocks out of sync); release with `coop-robot estop off`", throttle_duration_sec=5.0)
        self._log_estop(was, ESTOP_TOPIC)

    def _on_estop_request(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        was = self._estop.engaged
        self._estop.request(bool(request.data), time.time_ns())
        self._log_estop(was, ESTOP_SERVICE)
        response.success = self._estop.engaged == bool(request.data)
        response.message = ("emergency stop engaged: braking to rest" if self._estop.engaged
                            else "emergency stop released: the arm may move again")
        return response

    def _log_estop(self, was_engaged: bool, source: str) -> None:
        if self._estop.engaged != was_engaged:
            self.get_logger().warning(f"EMERGENCY STOP ({source})" if self._estop.engaged
                                      else f"emergency stop released ({source})")

    # ------------------------------------------------------------------ tick
    def _tick(self) -> None:
        t = now_s(self)
        if t <= 0.0:
            return  # sim time not received yet
        self._last_tick_s = t
        fresh_decision = t - self._decision_received_s <= self.decision_timeout_s
        decision = self._decision if fresh_decision else None
        if decision == "act" and self.trajectory_pub.get_subscription_count() == 0:
            # Nobody would execute a reach (arm driver not up, or not yet discovered): wait.
            self.get_logger().warning(f"no subscriber on {self.trajectory_pub.topic_name}: not starting motion",
                                      throttle_duration_sec=5.0)
            decision = None
        inputs = ControllerInputs(
            decision=decision,
            decision_fallback=self._decision_fallback,
            partner_in_zone=self._in_zone,
            perception_stamp_s=self._perception_stamp_s,
            joint_positions=self._joints,
            joint_stamp_s=self._joints_stamp_s,
            estop=self._estop.engaged,
            partner_hand_m=self._hand_m,
            partner_velocity_mps=self._hand_velocity_mps,
        )
        out = self.core.update(t, inputs)
        start_s = t
        if out.trajectory is not None:
            # Held up between reading the clock and here (a preempted process)? A reach from rest then
            # starts when it is sent (ArmController.sent_at); other moves keep the tick's timeline.
            sent_s = now_s(self)
            start_s = self.core.sent_at(sent_s)
            if sent_s - t > LATE_SEND_WARN_S:
                self.get_logger().warning(
                    f"{out.trajectory.purpose} trajectory sent {1e3 * (sent_s - t):.0f} ms after its tick "
                    + ("(started when sent)" if start_s > t else "(kept on the running move's timeline)")
                    + ": this process was held up (a busy machine)", throttle_duration_sec=5.0)
        self._publish(out, start_s)
        if self._perception_stamp_s is not None and self._perception_stamp_s > self._ticked_stamp_s:
            # The first tick that used this frame.
            done_s = now_s(self)
            self._ticked_stamp_s = self._perception_stamp_s
            self._latency.stats["camera->controller"].add(done_s - self._perception_stamp_s)
            if self._hand_received_s is not None:
                self._latency.stats["hand->controller"].add(done_s - self._hand_received_s)
        sep = out.separation
        if sep is not None:
            self.ssm_pub.publish(ssm_message(SsmSample(t, sep.separation_m, sep.protective_m, sep.robot_closing_mps,
                                                       sep.human_closing_mps, out.speed_scale, out.ssm_mode)))

    def _publish(self, out: ControllerOutput, start_s: float) -> None:
        if out.trajectory is not None:
            stamped = self.stamp_trajectories and not out.trajectory.on_receipt
            self.trajectory_pub.publish(_trajectory_msg(out.trajectory, start_s if stamped else None))
        for warning in out.warnings:
            self.get_logger().warning(warning)
        for event in out.events:
            msg = TimeReference()
            msg.header.stamp = s_to_stamp(event.t_s)
            msg.time_ref = msg.header.stamp
            msg.source = event.name
            self.events_pub.publish(msg)
            why = ""
            if event.name == "reach_start" and self.core.fallback_reach:
                why = (f" (the policy's liveness fallback: the partner's turn may not be over; at "
                       f"{100 * self.core.config.fallback_speed_scale:.0f} % of the reach's speed)")
            self.get_logger().info(f"{event.name} at {event.t_s:.3f} s{why}")
        self._publish_state(self.core.state_text)

    def _publish_state(self, state: str) -> None:
        if state != self._published_state:
            self.state_pub.publish(String(data=state))
            self._published_state = state


#: A trajectory sent this long after its tick's clock reading is logged (the process was held up).
LATE_SEND_WARN_S = 0.05

SSM_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def _trajectory_msg(command: TrajectoryCommand, start_s: float | None) -> JointTrajectory:
    """The command as a JointTrajectory. ``start_s``: the controller-clock time the move starts
    (the core's tick time), or None for a zero stamp. A JTC runs a stamped trajectory on that
    timeline: its first point (one point period, or 0.1 s for a re-sent move, after the tick) is where the arm
    following the previous move will be then, whatever the transport took. A zero stamp starts on
    receipt, so every re-sent move would have to catch up the transport delay in its first segment:
    a velocity spike toward the person at the moment the monitor asks it to slow down."""
    msg = JointTrajectory()
    if start_s is not None:
        msg.header.stamp = s_to_stamp(start_s)
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
    started = False

    def make_node() -> ControllerNode:
        nonlocal started
        started = True  # rclpy.init succeeded
        return ControllerNode()

    try:
        code = run_node(make_node, args)
    except RuntimeError as exc:
        # rclpy.init reports an unparsable --params-file as a RuntimeError (rclpy's RCLError);
        # one raised after start-up is not a start-up problem.
        if started:
            raise
        print(f"[coop_robot] controller could not start: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()

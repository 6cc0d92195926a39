"""``live_view`` node: the interaction as a ``visualization_msgs/MarkerArray`` for RViz (and,
optionally, a Foxglove WebSocket server).

Subscribes to what the graph already publishes -- ``/partner/in_zone``, ``/partner/hand``,
``/joint_states``, ``/controller/state``, ``/controller/ssm``, ``/policy/decision``,
``/policy/exit_forecast`` and ``/policy/p_act`` -- hands each value to
:class:`coop_robot.live_view.scene.LiveView` and publishes its scene at ``rate_hz`` on
``/coop_robot/markers`` (frame ``frame_id``; every array starts with DELETEALL, so what is no
longer known disappears). With ``foxglove: true`` it also serves the same scene on a Foxglove
WebSocket server (:mod:`coop_robot.live_view.foxglove_sink`). It only watches: nothing it does
reaches the robot.
"""

from __future__ import annotations

import sys

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, ColorRGBA, Float64, String
from visualization_msgs.msg import Marker, MarkerArray

from coop_robot.control.controller import controller_parameter, parse_state_text
from coop_robot.control.kinematics import JOINT_NAMES, PandaKinematics, select_joint_positions
from coop_robot.geometry import world_geometry
from coop_robot.live_view.foxglove_sink import DEFAULT_PORT, FoxgloveSink, FoxgloveUnavailable
from coop_robot.live_view.scene import LiveView, LiveViewConfig, Scene, Shape
from coop_robot.nodes.common import (
    COMMAND_QOS,
    LATCHED_QOS,
    ParameterError,
    declare,
    declare_joint_names,
    declare_zone,
    now_s,
    refuse_parameter_changes,
    run_node,
    stamp_to_s,
)
from coop_robot.timing.ssm_sample import CONTROLLER_SSM, SSM_STATUS_NAME, SsmSample

MARKER_TOPIC = "/coop_robot/markers"
P_ACT_TOPIC = "/policy/p_act"
_MARKER_TYPES = {"box": Marker.CUBE, "sphere": Marker.SPHERE, "line_strip": Marker.LINE_STRIP,
                 "text": Marker.TEXT_VIEW_FACING}


class LiveViewNode(Node):
    """ROS plumbing for :class:`LiveView` (node name ``live_view``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("live_view", **kwargs)
        rate_hz = declare(self, "rate_hz", 10.0, "Marker publishing rate (Hz, node clock)", 1.0, 60.0)
        stale = declare(self, "stale_after_s", 0.5, "An input older than this (s, node clock) is drawn as stale "
                        "(grey)", 0.01, 60.0)
        frame = declare(self, "frame_id", "world", "Frame of the markers (the frame of /partner/hand and the zone)")
        if not frame:
            raise ParameterError("parameter 'frame_id' must be a non-empty frame name")
        radius = controller_parameter("ssm_hand_radius_m")
        hand_r = declare(self, radius.name, radius.default, radius.description + "; drawn as the hand sphere",
                         max(radius.low, 1e-3), radius.high)
        zone = declare_zone(self)
        base = declare(self, "robot_base_m", list(world_geometry().robot_base_m),
                       "Robot base position in world (m), for the arm by forward kinematics; shared via world.yaml")
        joint_names = declare_joint_names(self, list(JOINT_NAMES), "Arm joint names in /joint_states (7)")
        serve = declare(self, "foxglove", False, "Also serve the scene on a Foxglove WebSocket server "
                        "(needs foxglove-sdk)")
        host = declare(self, "foxglove_host", "127.0.0.1", "Address the Foxglove server listens on "
                       "(0.0.0.0: every interface)")
        port = declare(self, "foxglove_port", DEFAULT_PORT, "TCP port of the Foxglove server (0: any free port)",
                       0, 65535)
        self.add_on_set_parameters_callback(refuse_parameter_changes("live_view parameters"))
        try:
            self.view = LiveView(LiveViewConfig(zone, hand_r, stale, frame), PandaKinematics(base_m=base))
        except ValueError as exc:
            raise ParameterError(str(exc)) from exc
        self._joint_names = joint_names
        self.foxglove: FoxgloveSink | None = None
        if serve:
            try:
                self.foxglove = FoxgloveSink(host, port)
            except FoxgloveUnavailable as exc:
                raise ParameterError(f"parameter 'foxglove' is true but {exc}") from exc
            except RuntimeError as exc:  # the SDK's bind failure (port in use, bad address)
                raise ParameterError(f"parameters 'foxglove_host' / 'foxglove_port': cannot serve on "
                                     f"{host}:{port}: {exc}") from exc

        self.create_subscription(Bool, "/partner/in_zone", self._on_in_zone, 10)
        self.create_subscription(PointStamped, "/partner/hand", self._on_hand, 10)
        self.create_subscription(JointState, "/joint_states", self._on_joints, COMMAND_QOS)
        self.create_subscription(String, "/controller/state", self._on_state, LATCHED_QOS)
        self.create_subscription(DiagnosticArray, CONTROLLER_SSM, self._on_ssm, COMMAND_QOS)
        self.create_subscription(String, "/policy/decision", self._on_decision, COMMAND_QOS)
        self.create_subscription(Float64, "/policy/exit_forecast", self._on_forecast, COMMAND_QOS)
        self.create_subscription(Float64, P_ACT_TOPIC, self._on_p_act, COMMAND_QOS)
        self.marker_pub = self.create_publisher(MarkerArray, MARKER_TOPIC, 10)
        self.create_timer(1.0 / rate_hz, self._tick)
        where = f"; Foxglove on ws://{host}:{self.foxglove.port}" if self.foxglove else ""
        self.get_logger().info(f"live view on {MARKER_TOPIC} (frame {frame}) at {rate_hz:g} Hz{where}")

    # ------------------------------------------------------------------ inputs
    def _on_in_zone(self, msg: Bool) -> None:
        self.view.on_in_zone(now_s(self), msg.data)

    def _on_hand(self, msg: PointStamped) -> None:
        self.view.on_hand(now_s(self), (msg.point.x, msg.point.y, msg.point.z))

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = select_joint_positions(msg.name, msg.position, self._joint_names)
        except ValueError as exc:
            self.get_logger().warning(f"/joint_states message ignored: {exc}; set joint_names to the arm's joints",
                                      throttle_duration_sec=5.0)
            return
        self.view.on_joints(now_s(self), q)

    def _on_state(self, msg: String) -> None:
        self.view.on_controller_state(now_s(self), *parse_state_text(msg.data))

    def _on_ssm(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name != SSM_STATUS_NAME:
                continue
            try:
                sample = SsmSample.from_key_values(((kv.key, kv.value) for kv in status.values),
                                                   stamp_to_s(msg.header.stamp))
            except ValueError as exc:
                self.get_logger().warning(f"{CONTROLLER_SSM} sample ignored: {exc}", throttle_duration_sec=5.0)
                continue
            self.view.on_ssm(now_s(self), sample)

    def _on_decision(self, msg: String) -> None:
        self.view.on_decision(now_s(self), msg.data[:40])   # a label, never a wall of text

    def _on_forecast(self, msg: Float64) -> None:
        self.view.on_exit_forecast(now_s(self), msg.data)

    def _on_p_act(self, msg: Float64) -> None:
        self.view.on_p_act(now_s(self), msg.data)

    # ------------------------------------------------------------------ output
    def _tick(self) -> None:
        scene = self.view.scene(now_s(self))
        self.marker_pub.publish(marker_array(scene, self.get_clock().now().to_msg()))
        if self.foxglove is not None:
            self.foxglove.log(scene)

    def close(self) -> None:
        if self.foxglove is not None:
            self.foxglove.close()
            self.foxglove = None


def marker_array(scene: Scene, stamp) -> MarkerArray:
    """DELETEALL, then one marker per shape (namespace = the shape's key, id 0)."""
    clear = Marker(action=Marker.DELETEALL)
    clear.header.frame_id = scene.frame_id
    return MarkerArray(markers=[clear] + [_marker(shape, scene.frame_id, stamp) for shape in scene.shapes])


def _marker(shape: Shape, frame_id: str, stamp) -> Marker:
    m = Marker(ns=shape.key, id=0, type=_MARKER_TYPES[shape.kind], action=Marker.ADD, lifetime=Duration())
    m.header.frame_id = frame_id
    m.header.stamp = stamp
    m.pose.position = Point(x=shape.position_m[0], y=shape.position_m[1], z=shape.position_m[2])
    m.pose.orientation.w = 1.0
    m.scale.x, m.scale.y, m.scale.z = shape.size_m
    m.color = ColorRGBA(r=shape.colour_rgba[0], g=shape.colour_rgba[1], b=shape.colour_rgba[2],
                        a=shape.colour_rgba[3])
    if shape.kind == "line_strip":
        m.pose.position = Point()   # points are in the frame itself
        m.points = [Point(x=p[0], y=p[1], z=p[2]) for p in shape.points_m]
    elif shape.kind == "text":
        m.text = shape.text
    return m


def main(args=None) -> None:
    sys.exit(run_node(LiveViewNode, args))


if __name__ == "__main__":
    main()

"""``perception`` node: partner hand in 3D from the RGB-D camera topics.

Subscribes (SENSOR_QOS, remap to your camera's topics):
  /camera/color/image_raw (rgb8, bgr8, rgba8, bgra8), /camera/depth/image_rect_raw (32FC1 m or
  16UC1 mm, aligned to colour), /camera/color/camera_info.
Publishes for every colour/depth pair with the same stamp (paired by
:class:`coop_robot.perception.pairing.StampPairer`), with that stamp:
  /partner/in_zone (std_msgs/Bool) first, then /partner/hand (geometry_msgs/PointStamped in
  ``world_frame``, NaN when no hand is detected) and /partner/hand_velocity
  (geometry_msgs/Vector3Stamped, m/s, NaN when unknown); optionally /perception/debug_image.

A frame that cannot be decoded is logged (throttled) and skipped; the node keeps running.
The tracker tuning and the camera extrinsics can be changed at run time (``ros2 param set``).
"""

from __future__ import annotations

import math
import sys
import time

from geometry_msgs.msg import PointStamped, Vector3Stamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Bool

from coop_robot.camera import CameraPose, Intrinsics
from coop_robot.geometry import world_geometry  # geometry defaults: config/world.yaml
from coop_robot.nodes.common import (
    COMMAND_QOS,
    SENSOR_QOS,
    LatencyReporter,
    ParameterError,
    StampLeadGuard,
    declare,
    declare_zone,
    run_node,
    validate,
)
from coop_robot.perception import (
    HAND_MODELS,
    HandObservation,
    HandTracker,
    HandTrackerConfig,
    PerceptionInputError,
    decode_color,
    decode_depth,
)
from coop_robot.perception.pairing import StampPairer

# name -> (default, description, low, high, choices). Live-tunable: the tracker and extrinsics.
_TRACKER_PARAMETERS = {
    "hsv_lower": ([45, 120, 40], "Glove colour lower bound [H, S, V], OpenCV HSV (H 0-179, S/V 0-255); "
                  "H lower > H upper wraps the hue through 180 (red gloves)", None, None, None),
    "hsv_upper": ([80, 255, 255], "Glove colour upper bound [H, S, V], OpenCV HSV", None, None, None),
    "min_area_px": (25, "Smallest accepted hand blob after morphology (pixels)", 1, 10_000_000, None),
    "morphology_kernel_px": (3, "Open+close structuring element size (pixels); 0 or 1 disables", 0, 51, None),
    "depth_min_m": (0.1, "Depth readings below this are invalid (m)", 0.001, 100.0, None),
    "depth_max_m": (3.5, "Depth readings above this are invalid (m)", 0.001, 100.0, None),
    "min_depth_px": (5, "Fewest valid depth pixels on the hand blob to place it in 3D", 1, 10_000_000, None),
    "surface_offset_m": (0.045, "Hand/glove radius: distance from the visible surface to the hand centre (m)",
                         0.0, 0.3, None),
    "hand_model": ("sphere", "Centre-distance model: 'sphere' (ball-like glove, median of per-pixel sphere "
                   "fits) or 'surface' (median depth pushed surface_offset_m along the ray)", None, None, HAND_MODELS),
    "velocity_smoothing_s": (0.05, "Time constant of the velocity low-pass (s); 0 = raw finite differences",
                             0.0, 10.0, None),
    "velocity_reset_gap_s": (0.25, "Detections further apart than this restart the velocity estimate (s)",
                             0.001, 10.0, None),
    "unseen_hand_speed_mps": (1.6, "How fast a hand that is not seen may move (m/s, ISO 13855): once it could "
                              "have reached the zone since it was last seen, in_zone is True", 0.1, 10.0, None),
    "max_hand_speed_mps": (5.0, "Fastest plausible hand motion between detections (m/s); a faster jump is not "
                           "accepted until a second frame confirms it", 0.5, 50.0, None),
    "lost_timeout_s": (0.5, "After this long without a detection the hysteresis band is dropped; a hand last "
                       "seen inside stays in the zone until seen outside (s)", 0.0, 3600.0, None),
    "zone_margin_m": (0.0, "in_zone turns True inside the zone grown by this (m); > 0 is conservative",
                      -0.1, 0.5, None),
    "zone_hysteresis_m": (0.01, "in_zone turns False only outside the zone grown by margin + this (m)",
                          0.0, 0.5, None),
}
_EXTRINSIC_PARAMETERS = {
    "camera_position_m": (list(world_geometry().camera_position_m),
                          "Camera optical frame position in the world frame [x, y, z] (m)"),
    "camera_orientation_xyzw": (list(world_geometry().camera_orientation_xyzw),
                                "Camera optical frame (x right, y down, z forward) orientation in the world "
                                "frame, unit quaternion [x, y, z, w]"),
}
_ERROR_LOG_PERIOD_S = 2.0
#: A run of frames without a detected hand longer than this (s, stamps) is logged.
_UNSEEN_REPORT_S = 0.5


class PerceptionNode(Node):
    """Thin wrapper around :class:`coop_robot.perception.HandTracker`."""

    def __init__(self, **kwargs) -> None:
        super().__init__("perception", **kwargs)
        self._values = {}
        for name, (default, description, low, high, choices) in _TRACKER_PARAMETERS.items():
            self._values[name] = declare(self, name, default, description, low=low, high=high, choices=choices)
        for name, (default, description) in _EXTRINSIC_PARAMETERS.items():
            self._values[name] = declare(self, name, default, description)
        self._zone = declare_zone(self)
        self._world_frame = declare(self, "world_frame", "world", "Frame of the published hand position")
        if not self._world_frame:
            raise ParameterError("parameter 'world_frame' must be a non-empty frame name")
        self._pairer: StampPairer[Image] = StampPairer(int(1e9 * declare(
            self, "pairing_window_s", 0.5, "Unmatched colour/depth images older than this are dropped (s)",
            low=0.01, high=10.0)))
        self._publish_debug = declare(self, "publish_debug_image", False,
                                      "Publish /perception/debug_image (mask overlay) for tuning")
        self._stamp_guard = StampLeadGuard(self, declare(
            self, "max_stamp_lead_s", 0.1, "Images stamped further than this ahead of the node's clock are "
            "rejected, counted and logged (s): a frame from the future would make every real frame after it look old",
            low=0.0, high=10.0), what="rejecting", hint=": check the camera driver's clock and use_sim_time")
        try:
            config = self._tracker_config(self._values)
            self._pose = self._camera_pose(self._values)
        except ValueError as exc:
            raise ParameterError(str(exc)) from exc
        self._tracker = HandTracker(config)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._intrinsics: Intrinsics | None = None
        self._info_error: str | None = "no camera_info received yet"
        self._warned_distortion = False
        self._last_error_log: dict[str, tuple[float, int]] = {}
        self._unseen_since_s: float | None = None  # stamp of the first frame of a run without a hand

        self._in_zone_pub = self.create_publisher(Bool, "/partner/in_zone", COMMAND_QOS)
        self._hand_pub = self.create_publisher(PointStamped, "/partner/hand", COMMAND_QOS)
        self._velocity_pub = self.create_publisher(Vector3Stamped, "/partner/hand_velocity", COMMAND_QOS)
        # Camera stamp -> the frame pair is here (the driver's and the transport's share), -> the hand
        # for it is published; and this node's own share of that (the pair's arrival -> published).
        self._latency = LatencyReporter(self, ["camera->received", "camera->perception", "received->perception"])
        self._debug_pub = self.create_publisher(Image, "/perception/debug_image", SENSOR_QOS)
        # Resolved (remapped) names, read once: the stamp guard names the topic of an image it drops.
        self._color_topic = self.create_subscription(Image, "/camera/color/image_raw", self._on_color,
                                                     SENSOR_QOS).topic_name
        self._depth_topic = self.create_subscription(Image, "/camera/depth/image_rect_raw", self._on_depth,
                                                     SENSOR_QOS).topic_name
        self.create_subscription(CameraInfo, "/camera/color/camera_info", self._on_camera_info, SENSOR_QOS)
        self.get_logger().info(
            f"tracking glove HSV {config.hsv_lower}..{config.hsv_upper}, zone {list(self._zone.min_m)}.."
            f"{list(self._zone.max_m)} m, camera at {self._pose.position_m.round(3).tolist()} m")

    # ------------------------------------------------------------------ parameters
    def _tracker_config(self, values: dict) -> HandTrackerConfig:
        return HandTrackerConfig.from_parameters({name: values[name] for name in _TRACKER_PARAMETERS}, self._zone)

    @staticmethod
    def _camera_pose(values: dict) -> CameraPose:
        return CameraPose.from_position_quaternion(values["camera_position_m"], values["camera_orientation_xyzw"])

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        values = dict(self._values)
        publish_debug = self._publish_debug
        try:
            for param in parameters:
                if param.name in _TRACKER_PARAMETERS:
                    default, _, low, high, choices = _TRACKER_PARAMETERS[param.name]
                    values[param.name] = validate(param.name, param.value, default, low, high, choices)
                elif param.name in _EXTRINSIC_PARAMETERS:
                    values[param.name] = validate(param.name, param.value, _EXTRINSIC_PARAMETERS[param.name][0])
                elif param.name == "publish_debug_image":
                    publish_debug = validate(param.name, param.value, False)
                elif param.name != "use_sim_time":
                    return SetParametersResult(successful=False,
                                               reason=f"parameter '{param.name}' is read-only; restart the node")
            config = self._tracker_config(values)
            pose = self._camera_pose(values)
        except ValueError as exc:  # ParameterError is a ValueError too
            return SetParametersResult(successful=False, reason=str(exc))
        self._values, self._pose, self._publish_debug = values, pose, publish_debug
        self._tracker.reconfigure(config)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ inputs
    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            if msg.width == 0 or msg.height == 0:
                raise ValueError(f"camera_info image size is {msg.width}x{msg.height}")
            if msg.binning_x > 1 or msg.binning_y > 1:
                raise ValueError(f"camera_info binning {msg.binning_x}x{msg.binning_y} is not supported")
            self._intrinsics = Intrinsics.from_k(msg.width, msg.height, msg.k)
            self._info_error = None
        except ValueError as exc:
            self._intrinsics = None
            self._info_error = f"bad camera_info: {exc}"
            self._log_error("camera_info", self._info_error)
            return
        if not self._warned_distortion and any(abs(d) > 1e-6 for d in msg.d):
            self._warned_distortion = True
            self.get_logger().warn(f"camera_info has distortion {list(msg.d)}; perception assumes rectified "
                                   "images and ignores it (use the rectified / aligned topics)")
        self._process_ready()

    def _on_color(self, msg: Image) -> None:
        self._buffer(self._pairer.add_color, msg, self._color_topic)

    def _on_depth(self, msg: Image) -> None:
        self._buffer(self._pairer.add_depth, msg, self._depth_topic)

    def _buffer(self, add, msg: Image, topic: str) -> None:
        ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if self._stamp_guard.ahead(topic, ns * 1e-9):
            return
        last_ns = self._pairer.last_released_ns
        if add(ns, msg):
            # Clock went back (simulation restarted, bag looped): start a fresh track.
            self.get_logger().info(f"image stamps jumped back {(last_ns - ns) * 1e-9:.3f} s; resetting the hand track")
            self._tracker.reset()
        self._process_ready()

    def _process_ready(self) -> None:
        if self._intrinsics is None:
            if self._pairer.has_pair():  # kept until camera_info arrives or it goes stale
                self._log_error("camera_info", f"{self._info_error}; waiting on /camera/color/camera_info")
            return
        for ns, color, depth in self._pairer.take_pairs():
            self._process(color, depth, ns)

    # ------------------------------------------------------------------ per frame
    def _process(self, color: Image, depth: Image, ns: int) -> None:
        received_ns = self.get_clock().now().nanoseconds  # the pair is complete now (called on its arrival)
        try:
            rgb = decode_color(color.data, color.width, color.height, color.step, color.encoding)
            depth_m = decode_depth(depth.data, depth.width, depth.height, depth.step, depth.encoding,
                                   bool(depth.is_bigendian))
            obs = self._tracker.process(rgb, depth_m, self._intrinsics, self._pose, ns * 1e-9)
        except PerceptionInputError as exc:
            self._log_error("frame", f"skipping frame at {ns * 1e-9:.3f} s: {exc}")
            return
        self._report_unseen(obs)
        self._publish(obs, color.header.stamp)
        published_ns = self.get_clock().now().nanoseconds
        self._latency.stats["camera->received"].add((received_ns - ns) * 1e-9)
        self._latency.stats["camera->perception"].add((published_ns - ns) * 1e-9)
        self._latency.stats["received->perception"].add((published_ns - received_ns) * 1e-9)
        if self._publish_debug:
            self._debug_pub.publish(self._debug_message(self._tracker.debug_image(rgb, obs), color))

    def _publish(self, obs: HandObservation, stamp) -> None:
        self._in_zone_pub.publish(Bool(data=bool(obs.in_zone)))
        hand = PointStamped()
        hand.header.stamp = stamp
        hand.header.frame_id = self._world_frame
        hand.point.x, hand.point.y, hand.point.z = (float(v) for v in obs.position_m)
        self._hand_pub.publish(hand)
        velocity = Vector3Stamped()
        velocity.header = hand.header
        velocity.vector.x, velocity.vector.y, velocity.vector.z = (float(v) for v in obs.velocity_mps)
        self._velocity_pub.publish(velocity)

    def _report_unseen(self, obs: HandObservation) -> None:
        """Say so when no hand has been detected for a while: what the robot does then (in_zone
        reports the worst case) must never be a surprise in the log."""
        if obs.detected:
            if self._unseen_since_s is not None and obs.stamp_s - self._unseen_since_s > _UNSEEN_REPORT_S:
                self.get_logger().info(f"hand detected again after {obs.stamp_s - self._unseen_since_s:.2f} s")
            self._unseen_since_s = None
            return
        if self._unseen_since_s is None:
            self._unseen_since_s = obs.stamp_s
        unseen_s = obs.stamp_s - self._unseen_since_s
        if unseen_s > _UNSEEN_REPORT_S:
            self._log_error("unseen", f"no hand detected for {unseen_s:.2f} s ({obs.reason}); /partner/in_zone "
                                      f"reports {obs.in_zone} (an unseen hand may be anywhere it could have reached)",
                            warning=True)

    @staticmethod
    def _debug_message(rgb, color: Image) -> Image:
        msg = Image()
        msg.header = color.header
        msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
        msg.encoding = "rgb8"
        msg.step = 3 * msg.width
        msg.data = rgb.tobytes()
        return msg

    def _log_error(self, key: str, text: str, warning: bool = False) -> None:
        """Log an input problem at most once per period per kind, counting the ones suppressed."""
        now = time.monotonic()
        last_s, suppressed = self._last_error_log.get(key, (-math.inf, 0))
        if now - last_s < _ERROR_LOG_PERIOD_S:
            self._last_error_log[key] = (last_s, suppressed + 1)
            return
        more = f" ({suppressed} similar suppressed)" if suppressed else ""
        (self.get_logger().warning if warning else self.get_logger().error)(text + more)
        self._last_error_log[key] = (now, 0)


def main(args=None) -> None:
    sys.exit(run_node(lambda: PerceptionNode(), args=args))


if __name__ == "__main__":
    main()

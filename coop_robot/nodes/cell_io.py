"""The ROS side of ``coop_sim``'s cell mode: what a RealSense driver and ros2_control publish.

Topics (``camera_prefix`` /camera/camera, as ``rs_launch.py`` names them), sensor-data QoS:
``<prefix>/color/image_raw`` (rgb8), ``<prefix>/color/camera_info`` (plumb_bob, no distortion),
``<prefix>/aligned_depth_to_color/image_raw`` (16UC1, mm) and its camera_info,
``<prefix>/depth/image_rect_raw`` (16UC1 at the depth sensor's half resolution, not aligned) and
its camera_info; ``/joint_states`` as joint_state_broadcaster sends it (every joint including the
fingers, position/velocity/effort, reliable). Every message is stamped with the wall clock at
capture and published after a driver's latency; ground truth goes only to the truth log file
(:class:`coop_robot.sim.cell.TruthLog`). The noise, latency and delivery live in
:mod:`coop_robot.sim.cell`; this module only makes messages.

Start-up: until the graph is up (its first ``/partner/hand`` and ``/policy/decision``, as an
operator waits for the robot's software before the person starts) the cell holds the world still
and keeps publishing it, like a cell whose person is waiting; then the physics runs on the wall
clock.
"""

from __future__ import annotations

import array
import sys
import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String

from coop_robot.nodes.common import COMMAND_QOS, SENSOR_QOS, ParameterError, declare, s_to_stamp
from coop_robot.sim.cell import (
    REALSENSE_PREFIX,
    DelayLine,
    DeliveryLatency,
    NoiseFields,
    SensorNoise,
    TruthLog,
    WallStamps,
    depth_to_mm,
    noisy_color,
    noisy_joint_state,
    unaligned_depth,
)
from coop_robot.sim.pacing import OutputSchedule

_NOISE_DOC = {  # name -> (description, highest accepted value)
    "color_noise_std": ("Cell mode: Gaussian noise on each colour channel (0-255 levels)", 50.0),
    "depth_noise_per_m2": ("Cell mode: depth error sigma per squared metre of distance (sigma = k z^2, m)", 0.1),
    "depth_dropout_fraction": ("Cell mode: fraction of depth pixels without a reading (0 mm)", 0.5),
    "joint_position_noise_rad": ("Cell mode: joint position noise (rad; fingers m)", 0.1),
    "joint_velocity_noise_rad_s": ("Cell mode: joint velocity noise (rad/s)", 1.0),
    "joint_effort_noise_nm": ("Cell mode: joint effort noise (N m)", 10.0),
}
_LATENCY_DOC = {
    "camera_latency_s": "Cell mode: mean delay from a camera frame's capture (its stamp) to its publication (s)",
    "camera_jitter_s": "Cell mode: camera delay jitter, uniform +- (s)",
    "joint_state_latency_s": "Cell mode: mean delay from a joint state's stamp to its publication (s)",
    "joint_state_jitter_s": "Cell mode: joint state delay jitter, uniform +- (s)",
}


@dataclass(frozen=True)
class CellSettings:
    truth_log: str
    camera_prefix: str
    noise: SensorNoise
    latency: DeliveryLatency
    start_timeout_s: float


def declare_cell(node, cell_mode: bool) -> CellSettings:
    """Declare the cell-mode parameters (declared in both modes, so they are documented and
    checked; used only with ``mode: cell``)."""
    truth_log = declare(node, "truth_log", "", "Cell mode: write the ground truth to this JSON-lines file "
                        "(required in cell mode; never published)")
    prefix = declare(node, "camera_prefix", REALSENSE_PREFIX,
                     "Cell mode: namespace of the camera topics (a RealSense's rs_launch.py: /camera/camera)")
    noise = {f: declare(node, f"cell_{f}", getattr(SensorNoise, f), doc, low=0.0, high=high)
             for f, (doc, high) in _NOISE_DOC.items()}
    latency = {f: declare(node, f"cell_{f}", getattr(DeliveryLatency, f), doc, low=0.0, high=1.0)
               for f, doc in _LATENCY_DOC.items()}
    start_timeout_s = declare(node, "cell_start_timeout_s", 60.0, "Cell mode: the world stays still until the "
                              "graph's first /partner/hand and /policy/decision, at most this long (wall s)",
                              low=0.0, high=3600.0)
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ParameterError(f"parameter 'camera_prefix' must be an absolute namespace without a trailing '/', "
                             f"got {prefix!r}")
    if cell_mode and not truth_log.strip():
        raise ParameterError("parameter 'truth_log' must name the file for the ground truth in cell mode")
    try:
        return CellSettings(truth_log, prefix, SensorNoise(**noise), DeliveryLatency(**latency), start_timeout_s)
    except ValueError as exc:
        raise ParameterError(f"cell mode: {exc}") from exc


class CellIO:
    """The cell's publishers, its delivery delay line, its wall-clock stamps and its truth log."""

    def __init__(self, node, sim, settings: CellSettings, camera_info: CameraInfo, truth_header: dict,
                 seed: int, partner_hand_topic: str, joint_state_period_s: float, camera_period_s: float) -> None:
        self._node, self._sim, self._settings = node, sim, settings
        self._rng = np.random.default_rng([int(seed), 13])
        p = settings.camera_prefix
        self._info = camera_info
        self._fields = NoiseFields((camera_info.height, camera_info.width, 3), self._rng)
        self._depth_info = _half_size_info(camera_info, "camera_depth_optical_frame")
        self._pubs = {
            "joint_states": node.create_publisher(JointState, "/joint_states", COMMAND_QOS),
            "color": node.create_publisher(Image, f"{p}/color/image_raw", SENSOR_QOS),
            "color_info": node.create_publisher(CameraInfo, f"{p}/color/camera_info", SENSOR_QOS),
            "aligned": node.create_publisher(Image, f"{p}/aligned_depth_to_color/image_raw", SENSOR_QOS),
            "aligned_info": node.create_publisher(CameraInfo, f"{p}/aligned_depth_to_color/camera_info", SENSOR_QOS),
            "depth": node.create_publisher(Image, f"{p}/depth/image_rect_raw", SENSOR_QOS),
            "depth_info": node.create_publisher(CameraInfo, f"{p}/depth/camera_info", SENSOR_QOS),
        }
        self._delay = DelayLine()
        self.truth = TruthLog(settings.truth_log, truth_header)
        self.stamps: WallStamps | None = None   # set when the world starts moving
        self._hold_since_s = time.monotonic()
        self._hold_schedule = OutputSchedule(1.0, joint_state_period_s, camera_period_s)
        self._frozen: tuple[np.ndarray, np.ndarray] | None = None
        self._heard = {"hand": False, "decision": False}
        self._subs = [node.create_subscription(PointStamped, partner_hand_topic,
                                               lambda _m: self._heard.update(hand=True), COMMAND_QOS),
                      node.create_subscription(String, "/policy/decision",
                                               lambda _m: self._heard.update(decision=True), COMMAND_QOS)]
        self._last_flush_s = time.monotonic()
        self._joint_state_period_s = joint_state_period_s
        self._last_joint_stamp_s = -float("inf")

    @property
    def started(self) -> bool:
        return self.stamps is not None

    # ------------------------------------------------------------------ start-up hold
    def hold(self, wall_s: float) -> bool:
        """Before the world moves: publish the still world on the wall clock; True once it may
        start (the graph is up, or the start timeout passed)."""
        due = self._hold_schedule.due(time.monotonic() - self._hold_since_s)
        if due.joint_state:
            self.publish_joint_state(wall_s)
        if due.camera:
            if self._frozen is None:
                self._frozen = self._sim.render()
            self.publish_camera(wall_s, *self._frozen)
        self.deliver(wall_s)
        waited_s = time.monotonic() - self._hold_since_s
        if all(self._heard.values()) or waited_s > self._settings.start_timeout_s:
            if not all(self._heard.values()):
                missing = [k for k, v in self._heard.items() if not v]
                self._node.get_logger().warning(f"cell: no {' or '.join(missing)} from the graph within "
                                                f"{self._settings.start_timeout_s:g} s; starting the world anyway")
            for sub in self._subs:
                self._node.destroy_subscription(sub)
            self._subs = []
            self.stamps = WallStamps(wall_s, self._sim.t_s)
            self._frozen = None
            self._node.get_logger().info(f"cell: the graph is up after {waited_s:.1f} s; the world runs on the "
                                         f"wall clock, ground truth to {self.truth.path}")
            return True
        return False

    # ------------------------------------------------------------------ outputs
    def joint_state_overdue(self, wall_s: float) -> bool:
        """The next joint state is late by half a period or more: the physics could not keep up.
        (ros2_control's loop keeps its rate whatever the host does; a camera host drops frames.)"""
        return wall_s - self._last_joint_stamp_s > 1.5 * self._joint_state_period_s

    def publish_joint_state(self, stamp_s: float) -> None:
        names, position, velocity, effort = self._sim.world.joint_state()
        pos, vel, eff = noisy_joint_state(position, velocity, effort, self._settings.noise, self._rng)
        msg = JointState(name=list(names), position=pos, velocity=vel, effort=eff)
        msg.header.stamp = s_to_stamp(stamp_s)
        self._last_joint_stamp_s = stamp_s
        self._delay.push("joint_states", stamp_s + self._settings.latency.draw("joint_state", self._rng),
                         [("joint_states", msg)])

    def publish_camera(self, stamp_s: float, rgb: np.ndarray | None = None, depth_m: np.ndarray | None = None) -> None:
        if rgb is None:
            rgb, depth_m = self._sim.render()
        noise = self._settings.noise
        stamp = s_to_stamp(stamp_s)
        depth_mm = depth_to_mm(depth_m, noise, self._fields)
        frame = self._info.header.frame_id
        msgs = [("color", image_message(stamp, frame, noisy_color(rgb, noise.color_noise_std, self._fields), "rgb8")),
                ("color_info", _stamped_info(self._info, stamp)),
                ("aligned", image_message(stamp, frame, depth_mm, "16UC1")),
                ("aligned_info", _stamped_info(self._info, stamp)),
                ("depth", image_message(stamp, self._depth_info.header.frame_id, unaligned_depth(depth_mm), "16UC1")),
                ("depth_info", _stamped_info(self._depth_info, stamp))]
        self._delay.push("camera", stamp_s + self._settings.latency.draw("camera", self._rng), msgs)

    def deliver(self, wall_s: float) -> None:
        """Publish every message whose latency has passed; flush the truth log once a second."""
        for _, msgs in self._delay.due(wall_s):
            for key, msg in msgs:
                self._pubs[key].publish(msg)
        if time.monotonic() - self._last_flush_s > 1.0:
            self._last_flush_s = time.monotonic()
            self.truth.flush()

    def close(self) -> None:
        self.truth.close()


def image_message(stamp, frame_id: str, values: np.ndarray, encoding: str) -> Image:
    """A ``sensor_msgs/Image`` of ``values`` (HxW or HxWxC, packed rows, native byte order)."""
    values = np.ascontiguousarray(values)   # the step must describe the bytes sent
    h, w = values.shape[:2]
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(sys.byteorder == "big"),
                step=int(values.strides[0]))
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = array.array("B", values.tobytes())
    return msg


def _stamped_info(info: CameraInfo, stamp) -> CameraInfo:
    out = CameraInfo(width=info.width, height=info.height, distortion_model=info.distortion_model,
                     d=list(info.d), k=list(info.k), r=list(info.r), p=list(info.p))
    out.header.frame_id, out.header.stamp = info.header.frame_id, stamp
    return out


def _half_size_info(info: CameraInfo, frame_id: str) -> CameraInfo:
    """The unaligned depth stream's camera_info (:func:`coop_robot.sim.cell.unaligned_depth`)."""
    k = [v / 2.0 for v in info.k[:8]] + [1.0]
    k[2], k[5] = (info.k[2] + 0.5) / 2.0 - 0.5, (info.k[5] + 0.5) / 2.0 - 0.5   # pixel centres
    out = CameraInfo(width=(info.width + 1) // 2, height=(info.height + 1) // 2,
                     distortion_model=info.distortion_model, d=list(info.d), k=k, r=list(info.r),
                     p=[k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0])
    out.header.frame_id = frame_id
    return out


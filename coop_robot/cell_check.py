"""Check a running lab cell against a cell file before starting robot.launch.py (``coop-robot check``).

Not to be confused with :mod:`coop_robot.preflight`, which checks the nodes' parameters before
``coop-robot sim`` starts. This module listens to the cell (the camera driver and ros2_control)
for a few seconds and checks what the graph of ``robot.launch.py`` needs from it:

* every topic the graph reads or writes has a publisher (the trajectory topic: a subscriber) of
  the right type, with a QoS the graph's own endpoint can match;
* each stream arrives fast enough (:data:`MIN_RATE_HZ`);
* colour and depth have the same size as each other and as camera_info (depth aligned to colour),
  and their stamps pair up (perception uses only pairs with the same stamp);
* every corner of the shared zone projects into the image, in front of the camera;
* the home pose keeps the end effector outside the zone;
* ``/joint_states`` names every joint the controller commands;
* message stamps agree with this machine's clock.

The checks work on plain values (:class:`Observation`), so they are tested without ROS; only
:func:`observe` talks to the cell.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Slowest stream the graph works with (Hz): perception trusts a hand for ssm_max_hand_age_s
#: (0.1 s), which a camera below 20 Hz cannot renew; the controller and the turn tracker follow
#: the arm at 100 Hz and need /joint_states at half of that at least.
MIN_RATE_HZ = {"color": 20.0, "depth": 20.0, "camera_info": 1.0, "joint_states": 50.0}
#: Stamps ahead of this machine's clock by more than this are refused by perception (s,
#: perception's max_stamp_lead_s) ...
MAX_STAMP_LEAD_S = 0.1
#: ... and stamps older than this on arrival make every detection too old to trust (s).
MAX_STAMP_AGE_S = 0.1
#: Share of colour frames that must have a depth frame with the same stamp.
MIN_PAIRED_FRACTION = 0.8
#: The ROS types of the streams.
TYPES = {"color": "sensor_msgs/msg/Image", "depth": "sensor_msgs/msg/Image",
         "camera_info": "sensor_msgs/msg/CameraInfo", "joint_states": "sensor_msgs/msg/JointState",
         "trajectory": "trajectory_msgs/msg/JointTrajectory"}
STREAMS = ("color", "depth", "camera_info", "joint_states")
EXIT_FAIL, EXIT_BAD_INPUT = 1, 2


@dataclass
class Endpoint:
    """One publisher or subscriber seen on the graph: its node, type and QoS (plain values)."""

    node: str
    type: str
    reliable: bool
    transient_local: bool


@dataclass
class Stream:
    """What arrived on one topic while listening."""

    topic: str
    endpoints: list[Endpoint] = field(default_factory=list)   # publishers (subscribers for trajectory)
    received: int = 0
    first_s: float | None = None          # this machine's clock at the first and last message
    last_s: float | None = None
    stamps_ns: list[int] = field(default_factory=list)
    ages_s: list[float] = field(default_factory=list)     # receive time - stamp
    size: tuple[int, int] | None = None   # (width, height) of the last image / camera_info
    encoding: str = ""
    names: list[str] = field(default_factory=list)       # joint names seen (joint_states)
    k: list[float] = field(default_factory=list)         # camera_info K

    @property
    def rate_hz(self) -> float:
        if self.received < 2 or self.last_s is None or self.last_s <= self.first_s:
            return 0.0
        return (self.received - 1) / (self.last_s - self.first_s)


@dataclass
class CellParameters:
    """What the cell file (with the package's files) gives the graph's nodes."""

    camera_position_m: list[float]
    camera_orientation_xyzw: list[float]
    zone_min_m: list[float]
    zone_max_m: list[float]
    robot_base_m: list[float]
    home_rad: list[float]
    joint_names: list[str]


@dataclass
class Observation:
    streams: dict[str, Stream]            # color, depth, camera_info, joint_states, trajectory
    listened_s: float


@dataclass
class Row:
    check: str
    passed: bool
    detail: str


def cell_parameters(params_files: list[str], **topics) -> CellParameters:
    """The values robot_graph's perception and controller would get with ``params_files`` as their
    cell file(s): the package's files, then these, as the launch passes them."""
    from coop_robot.control.controller import controller_parameter
    from coop_robot.geometry import world_geometry
    from coop_robot.graph import parameter_files, robot_graph
    from coop_robot.params import effective_parameters

    specs = {s.name: s for s in robot_graph(extra_param_files=list(params_files), **topics)}
    with tempfile.TemporaryDirectory(prefix="coop_robot_check_") as tmp:
        perception = effective_parameters(parameter_files(specs["perception"], tmp), "perception")
        controller = effective_parameters(parameter_files(specs["controller"], tmp), "controller")
    geo = world_geometry()
    return CellParameters(
        camera_position_m=list(perception.get("camera_position_m", geo.camera_position_m)),
        camera_orientation_xyzw=list(perception.get("camera_orientation_xyzw", geo.camera_orientation_xyzw)),
        zone_min_m=list(perception.get("zone_min_m", geo.zone_min_m)),
        zone_max_m=list(perception.get("zone_max_m", geo.zone_max_m)),
        robot_base_m=list(controller.get("robot_base_m", geo.robot_base_m)),
        home_rad=list(controller.get("robot_home_joint_positions_rad", geo.robot_home_joint_positions_rad)),
        joint_names=list(controller.get("joint_names", controller_parameter("joint_names").default)),
    )


# ---------------------------------------------------------------------- the checks (no ROS)
def check_cell(obs: Observation, params: CellParameters) -> list[Row]:
    """Every check, in order; a check whose input is missing fails saying so."""
    rows = [_topic_row(name, obs.streams[name]) for name in (*STREAMS, "trajectory")]
    rows += [_rate_row(name, obs.streams[name]) for name in STREAMS]
    rows.append(_aligned_row(obs.streams))
    rows.append(_paired_row(obs.streams))
    rows.append(_zone_row(obs.streams["camera_info"], params))
    rows.append(_home_row(params))
    rows.append(_joint_names_row(obs.streams["joint_states"], params))
    rows.append(_clock_row(obs.streams))
    return rows


def _topic_row(name: str, s: Stream) -> Row:
    role = "subscriber" if name == "trajectory" else "publisher"
    label = f"topic {s.topic}"
    if not s.endpoints:
        return Row(label, False, f"no {role} on {s.topic} (expected {TYPES[name]}); is the "
                                 f"{'arm controller' if name in ('trajectory', 'joint_states') else 'camera driver'} "
                                 "running, and is the topic name right?")
    wrong = sorted({e.type for e in s.endpoints if e.type != TYPES[name]})
    if wrong:
        return Row(label, False, f"type {', '.join(wrong)}, expected {TYPES[name]}")
    if name == "joint_states":
        # The controller and the turn tracker subscribe reliably: a best-effort publisher never matches.
        bad = [e.node for e in s.endpoints if not e.reliable]
        if bad:
            return Row(label, False, f"best-effort publisher(s) {bad}: the controller subscribes reliably "
                                     "and would receive nothing")
    if name == "trajectory":
        bad = [e.node for e in s.endpoints if e.transient_local]
        if bad:
            return Row(label, False, f"transient-local subscriber(s) {bad}: the controller publishes volatile "
                                     "and would reach none of them")
    qos = ", ".join(sorted({f"{'reliable' if e.reliable else 'best effort'}"
                            f"{', transient local' if e.transient_local else ''}" for e in s.endpoints}))
    return Row(label, True, f"{len(s.endpoints)} {role}(s), {TYPES[name]}, {qos}")


def _rate_row(name: str, s: Stream) -> Row:
    need = MIN_RATE_HZ[name]
    label = f"rate {s.topic}"
    if s.received == 0:
        return Row(label, False, "no message received")
    rate = s.rate_hz
    return Row(label, rate >= need, f"{rate:.1f} Hz ({s.received} messages), needs >= {need:g} Hz")


def _aligned_row(streams: dict[str, Stream]) -> Row:
    color, depth, info = streams["color"], streams["depth"], streams["camera_info"]
    if color.size is None or depth.size is None or info.size is None:
        missing = [s.topic for s in (color, depth, info) if s.size is None]
        return Row("depth aligned to colour", False, f"nothing received on {', '.join(missing)}")
    from coop_robot.perception.image_codec import COLOR_ENCODINGS, DEPTH_ENCODINGS

    problems = []
    if depth.size != color.size:
        problems.append(f"depth is {depth.size[0]}x{depth.size[1]} but colour {color.size[0]}x{color.size[1]}: "
                        "not aligned (use the driver's aligned depth topic, e.g. .../aligned_depth_to_color/image_raw)")
    if info.size != color.size:
        problems.append(f"camera_info is for {info.size[0]}x{info.size[1]} images, colour is "
                        f"{color.size[0]}x{color.size[1]}")
    if color.encoding not in COLOR_ENCODINGS:
        problems.append(f"colour encoding {color.encoding!r} is not one of {sorted(COLOR_ENCODINGS)}")
    if depth.encoding not in DEPTH_ENCODINGS:
        problems.append(f"depth encoding {depth.encoding!r} is not one of {sorted(DEPTH_ENCODINGS)}")
    if problems:
        return Row("depth aligned to colour", False, "; ".join(problems))
    return Row("depth aligned to colour", True,
               f"{color.size[0]}x{color.size[1]}, colour {color.encoding}, depth {depth.encoding}")


def _paired_row(streams: dict[str, Stream]) -> Row:
    color, depth = streams["color"], streams["depth"]
    if not color.stamps_ns or not depth.stamps_ns:
        return Row("colour/depth stamps paired", False, "no colour or no depth frame received")
    depth_stamps = set(depth.stamps_ns)
    # Frames at the edges of the listening window may have lost their partner to the window.
    inner = [t for t in color.stamps_ns if min(depth.stamps_ns) <= t <= max(depth.stamps_ns)] or color.stamps_ns
    paired = sum(1 for t in inner if t in depth_stamps)
    frac = paired / len(inner)
    detail = f"{paired}/{len(inner)} colour frames have a depth frame with the same stamp"
    if frac < MIN_PAIRED_FRACTION:
        offsets = [min(abs(t - d) for d in depth.stamps_ns) for t in inner[:20]]
        detail += (f" (needs {100 * MIN_PAIRED_FRACTION:.0f} %; nearest depth stamps are "
                   f"{1e-6 * float(np.median(offsets)):.1f} ms away: perception pairs identical stamps only; "
                   "a RealSense stamps colour and depth alike with enable_sync:=true)")
    return Row("colour/depth stamps paired", frac >= MIN_PAIRED_FRACTION, detail)


def zone_corners_in_image(params: CellParameters, width: int, height: int, k) -> list[str]:
    """The zone corners that do not project into the image (empty: the zone is in view)."""
    from coop_robot.camera import CameraPose, Intrinsics, optical_to_pixel

    pose = CameraPose.from_position_quaternion(params.camera_position_m, params.camera_orientation_xyzw)
    intr = Intrinsics.from_k(width, height, k)
    lo, hi = params.zone_min_m, params.zone_max_m
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    optical = pose.to_optical(corners)
    out = []
    for corner, p_opt in zip(corners, optical):
        name = "[" + ", ".join(f"{v:.2f}" for v in corner) + "]"
        if p_opt[2] <= 0.0:
            out.append(f"{name} behind the camera")
            continue
        u, v = optical_to_pixel(p_opt[None, :], intr)[0]
        if not (-0.5 <= u <= width - 0.5 and -0.5 <= v <= height - 0.5):
            out.append(f"{name} at pixel ({u:.0f}, {v:.0f})")
    return out


def _zone_row(info: Stream, params: CellParameters) -> Row:
    if info.size is None or len(info.k) != 9:
        return Row("zone in view", False, "no camera_info received: cannot project the zone")
    try:
        outside = zone_corners_in_image(params, info.size[0], info.size[1], info.k)
    except ValueError as exc:
        return Row("zone in view", False, str(exc))
    if outside:
        return Row("zone in view", False, f"zone corner(s) outside the {info.size[0]}x{info.size[1]} image: "
                                          f"{'; '.join(outside)} (check camera_position_m / camera_orientation_xyzw "
                                          "and zone_min_m / zone_max_m in the cell file)")
    return Row("zone in view", True, f"all 8 corners of the zone project into the {info.size[0]}x{info.size[1]} image")


def _home_row(params: CellParameters) -> Row:
    from coop_robot.control.kinematics import PandaKinematics
    from coop_robot.geometry import Zone

    ee = PandaKinematics(base_m=params.robot_base_m).fk_many(np.array([params.home_rad]))[0]
    zone = Zone.from_lists(params.zone_min_m, params.zone_max_m)
    where = "[" + ", ".join(f"{v:.3f}" for v in ee) + "] m"
    if zone.contains(ee):
        return Row("home pose outside the zone", False, f"the home pose puts the end effector at {where}, inside "
                                                        "the zone: the robot would never leave it")
    return Row("home pose outside the zone", True, f"end effector at {where}")


def _joint_names_row(js: Stream, params: CellParameters) -> Row:
    if not js.names:
        return Row("trajectory joints in /joint_states", False, "no /joint_states message received")
    missing = [n for n in params.joint_names if n not in js.names]
    if missing:
        return Row("trajectory joints in /joint_states", False,
                   f"the controller commands {missing}, which {js.topic} does not name (it names {js.names}); "
                   "set the controller's joint_names in the cell file")
    return Row("trajectory joints in /joint_states", True,
               f"all {len(params.joint_names)} commanded joints among {len(js.names)} in {js.topic}")


def _clock_row(streams: dict[str, Stream]) -> Row:
    parts, ok = [], True
    for name in ("color", "joint_states"):
        s = streams[name]
        if not s.ages_s:
            return Row("clocks agree", False, f"no message on {s.topic} to compare stamps with")
        age = float(np.median(s.ages_s))
        if age < -MAX_STAMP_LEAD_S:
            ok = False
            parts.append(f"{s.topic} stamps are {-1000 * age:.0f} ms ahead of this machine's clock")
        elif age > MAX_STAMP_AGE_S:
            ok = False
            parts.append(f"{s.topic} stamps are {1000 * age:.0f} ms old on arrival")
        else:
            parts.append(f"{s.topic} {1000 * age:+.0f} ms")
    detail = "; ".join(parts)
    if not ok:
        detail += (f" (allowed: {1000 * MAX_STAMP_LEAD_S:.0f} ms ahead to {1000 * MAX_STAMP_AGE_S:.0f} ms old; "
                   "sync the clocks with chrony/PTP, and check the driver stamps with the system clock)")
    else:
        detail = "median age on arrival: " + detail
    return Row("clocks agree", ok, detail)


def format_rows(rows: list[Row]) -> str:
    width = max(len(r.check) for r in rows)
    lines = [f"{'check':<{width}}  result  detail"]
    lines += [f"{r.check:<{width}}  {'pass' if r.passed else 'FAIL':<6}  {r.detail}" for r in rows]
    failed = [r.check for r in rows if not r.passed]
    lines.append(f"cell check: {'PASS' if not failed else 'FAIL (' + ', '.join(failed) + ')'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- listening to the cell (ROS)
def observe(topics: dict[str, str], duration_s: float, domain_id: int | None = None,
            discovery_s: float = 2.0) -> Observation:
    """Listen to the cell's ``topics`` (keys: :data:`STREAMS` and ``trajectory``) for ``duration_s``
    after up to ``discovery_s`` of waiting for their endpoints."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, JointState

    context = rclpy.Context()
    rclpy.init(args=[], context=context, domain_id=domain_id)
    streams = {name: Stream(topic) for name, topic in topics.items()}
    try:
        node = rclpy.create_node("coop_robot_cell_check", context=context, start_parameter_services=False)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)

        def endpoints(name: str) -> list[Endpoint]:
            info = (node.get_subscriptions_info_by_topic if name == "trajectory"
                    else node.get_publishers_info_by_topic)(topics[name])
            return [Endpoint(i.node_name, i.topic_type, i.qos_profile.reliability == ReliabilityPolicy.RELIABLE,
                             i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL)
                    for i in info if i.node_name != node.get_name()]

        deadline = time.monotonic() + discovery_s
        while time.monotonic() < deadline and not all(endpoints(n) for n in topics):
            executor.spin_once(timeout_sec=0.1)

        def on_message(name: str):
            s = streams[name]

            def callback(msg) -> None:
                now = time.time()
                s.received += 1
                s.first_s = now if s.first_s is None else s.first_s
                s.last_s = now
                stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                s.stamps_ns.append(stamp_ns)
                s.ages_s.append(now - 1e-9 * stamp_ns)
                if name in ("color", "depth", "camera_info"):
                    s.size = (int(msg.width), int(msg.height))
                if name in ("color", "depth"):
                    s.encoding = msg.encoding
                if name == "camera_info":
                    s.k = [float(v) for v in msg.k]
                if name == "joint_states":
                    s.names = list(dict.fromkeys([*s.names, *msg.name]))
            return callback

        types = {"color": Image, "depth": Image, "camera_info": CameraInfo, "joint_states": JointState}
        any_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)  # matches every publisher
        for name, msg_type in types.items():
            if all(e.type == TYPES[name] for e in endpoints(name)):
                node.create_subscription(msg_type, topics[name], on_message(name),
                                         qos_profile_sensor_data if name != "joint_states" else any_qos)
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        for name in topics:
            streams[name].endpoints = endpoints(name)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return Observation(streams, duration_s)


# ---------------------------------------------------------------------- the command
def add_arguments(p: argparse.ArgumentParser) -> None:
    import inspect

    from coop_robot.graph import robot_graph

    defaults = inspect.signature(robot_graph).parameters  # the launch file's defaults are robot_graph's
    p.add_argument("--params-file", type=Path, action="append", default=[], required=True,
                   help="your cell file (as robot.launch.py's params_file:=); repeatable, applied in order")
    for option in ("color_topic", "depth_topic", "camera_info_topic", "trajectory_topic", "joint_states_topic"):
        p.add_argument("--" + option.replace("_", "-"), default=defaults[option].default,
                       help=f"as robot.launch.py's {option}:= (default: %(default)s)")
    p.add_argument("--duration-s", type=float, default=3.0, help="how long to listen to the cell (default: 3 s)")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID of the cell (default: $ROS_DOMAIN_ID)")


def run(args) -> int:
    from coop_robot.graph import GraphError
    from coop_robot.params import ParamFileError

    if not (math.isfinite(args.duration_s) and args.duration_s >= 0.5):
        print(f"coop-robot check: --duration-s must be at least 0.5 s, got {args.duration_s}", file=sys.stderr)
        return EXIT_BAD_INPUT
    topics = {"color": args.color_topic, "depth": args.depth_topic, "camera_info": args.camera_info_topic,
              "joint_states": args.joint_states_topic, "trajectory": args.trajectory_topic}
    try:
        params = cell_parameters([str(p.resolve()) for p in args.params_file], color_topic=args.color_topic,
                                 depth_topic=args.depth_topic, camera_info_topic=args.camera_info_topic,
                                 trajectory_topic=args.trajectory_topic, joint_states_topic=args.joint_states_topic)
    except (GraphError, ParamFileError) as exc:
        print(f"coop-robot check: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"coop-robot check: listening to the cell for {args.duration_s:g} s "
          f"(cell file {', '.join(str(p) for p in args.params_file)})")
    obs = observe(topics, args.duration_s, args.domain_id)
    rows = check_cell(obs, params)
    print(format_rows(rows))
    return 0 if all(r.passed for r in rows) else EXIT_FAIL

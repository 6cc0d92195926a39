"""The coop_sim node as a process: streams, trajectory commands, bad input, clean shutdown."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_ros_domain

REPO = Path(__file__).resolve().parents[1]
DOMAIN_ID = free_ros_domain()
os.environ["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy  # noqa: E402  (after the DDS isolation above)
from builtin_interfaces.msg import Duration  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from coop_robot.nodes.common import COMMAND_QOS, SENSOR_QOS, stamp_to_s  # noqa: E402

ARM = [f"panda_joint{i}" for i in range(1, 8)]
HOME = [0.0, -0.6, 0.0, -2.0, 0.0, 1.9, 0.785]


def start_sim(tmp_path: Path, overrides: dict, log_name: str = "sim.log", domain_id: int = DOMAIN_ID):
    """Start ``python -m coop_robot.nodes.sim_node`` with the package's params files.

    Overrides go in a node-specific params file loaded last: ``-p name:=value`` would NOT
    override keys that config/sim.yaml sets for coop_sim (node-specific entries win over the
    wildcard ``-p`` in ROS 2 parameter precedence).
    """
    override_file = tmp_path / f"override_{log_name}.yaml"
    lines = ["coop_sim:", "  ros__parameters:"] + [f"    {k}: {v}" for k, v in overrides.items()]
    override_file.write_text("\n".join(lines) + "\n")
    log = open(tmp_path / log_name, "w+")
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               PYTHONUNBUFFERED="1", ROS_DOMAIN_ID=str(domain_id))
    proc = subprocess.Popen(
        [sys.executable, "-m", "coop_robot.nodes.sim_node", "--ros-args",
         "--params-file", str(REPO / "config" / "world.yaml"),
         "--params-file", str(REPO / "config" / "sim.yaml"),
         "--params-file", str(override_file)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def read_log(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()


class Listener:
    """A test-side node recording what the sim publishes."""

    def __init__(self, context=None):
        self.node = rclpy.create_node("sim_node_test_listener", context=context)
        self.clock, self.color, self.color_info, self.depth, self.depth_info, self.joints = [], [], [], [], [], []
        n = self.node
        n.create_subscription(Clock, "/clock", lambda m: self.clock.append(stamp_to_s(m.clock)), 10)
        n.create_subscription(Image, "/camera/color/image_raw", self.color.append, SENSOR_QOS)
        n.create_subscription(CameraInfo, "/camera/color/camera_info", self.color_info.append, SENSOR_QOS)
        n.create_subscription(Image, "/camera/depth/image_rect_raw", self.depth.append, SENSOR_QOS)
        n.create_subscription(CameraInfo, "/camera/depth/camera_info", self.depth_info.append, SENSOR_QOS)
        n.create_subscription(JointState, "/joint_states", self.joints.append, COMMAND_QOS)
        self.trajectory_pub = n.create_publisher(JointTrajectory, "/panda_arm_controller/joint_trajectory",
                                                 COMMAND_QOS)
        self.executor = SingleThreadedExecutor(context=n.context)
        self.executor.add_node(n)

    def spin_until(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.05, executor=self.executor)
            if condition():
                return True
        return False

    def joint(self, name: str) -> float:
        msg = self.joints[-1]
        return msg.position[list(msg.name).index(name)]


@pytest.fixture(scope="module", autouse=True)
def ros():
    # The domain is passed explicitly: another test module may have changed ROS_DOMAIN_ID in
    # os.environ since this one was imported.
    rclpy.init(domain_id=DOMAIN_ID)
    yield
    rclpy.shutdown()


@pytest.fixture(scope="module")
def sim(tmp_path_factory, ros):
    tmp = tmp_path_factory.mktemp("sim_node")
    proc, log = start_sim(tmp, {"seed": 3, "perception_sync": "false", "real_time_factor": 2.0})
    listener = None
    try:
        listener = Listener()
        yield proc, log, listener
    finally:
        # The listener goes first: destroying a node while the participant it talks to is being
        # killed crashed rclpy once (a segfault in destroy_node, in the full suite on a loaded host).
        if listener is not None:
            listener.executor.shutdown()
            listener.node.destroy_node()
        stop(proc)
        log.close()


def trajectory(names, points) -> JointTrajectory:
    msg = JointTrajectory(joint_names=names)
    for t, q in points:
        msg.points.append(JointTrajectoryPoint(
            positions=q, time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9)))))
    return msg


def test_clock_images_camera_info_and_joint_states_stream(sim):
    proc, log, ls = sim
    assert ls.spin_until(lambda: len(ls.clock) > 20 and len(ls.color) > 3 and len(ls.depth) > 3
                         and len(ls.joints) > 10 and len(ls.color_info) > 3, 30.0), read_log(log)
    assert ls.clock[-1] > ls.clock[0]
    assert all(b >= a for a, b in zip(ls.clock, ls.clock[1:]))
    image = ls.color[-1]
    assert (image.width, image.height, image.encoding, image.step) == (320, 240, "rgb8", 960)
    assert image.header.frame_id == "camera_color_optical_frame" and len(image.data) == 320 * 240 * 3
    depth = ls.depth[-1]
    assert (depth.encoding, depth.step, len(depth.data)) == ("16UC1", 640, 320 * 240 * 2)  # mm, as a RealSense
    # Every image has a camera_info with the same stamp and frame.
    info_stamps = {stamp_to_s(i.header.stamp) for i in ls.color_info}
    matched = [im for im in ls.color if stamp_to_s(im.header.stamp) in info_stamps]
    assert matched
    info = ls.color_info[-1]
    assert info.header.frame_id == "camera_color_optical_frame" and info.distortion_model == "plumb_bob"
    assert (info.width, info.height) == (320, 240) and info.k[0] > 0 and list(info.d) == [0.0] * 5
    assert list(ls.joints[-1].name)[:7] == ARM and len(ls.joints[-1].name) == 9
    assert ls.joint("panda_joint4") == pytest.approx(HOME[3], abs=0.01)


def test_a_camera_frame_fits_fast_dds_default_shared_memory_segment():
    """Fast DDS gives each participant a 512 KiB shared-memory segment by default. A frame's
    images and camera infos that do not fit in it together get lost on the way (measured: about
    1 frame in 10 with 32FC1 depth, 537,600 B of pixels), and each lost frame holds the sim and
    leaves the controller a hand too old to trust. The depth must also read back to the mm."""
    from rclpy.serialization import serialize_message

    from coop_robot.nodes.sim_node import camera_images
    from coop_robot.perception import decode_depth

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    depth_m = rng.uniform(0.3, 3.0, (240, 320)).astype(np.float32)
    depth_m[0, :5] = (np.nan, np.inf, 0.0, -1.0, 0.0002)
    color, depth = camera_images(rgb, depth_m, Clock().clock, "camera_color_optical_frame")
    info = CameraInfo(width=320, height=240, distortion_model="plumb_bob", d=[0.0] * 5)
    frame_bytes = sum(len(serialize_message(m)) for m in (color, depth, info, info))
    assert frame_bytes < 512 * 1024 - 64 * 1024, frame_bytes   # with room for the small messages
    back = decode_depth(depth.data, depth.width, depth.height, depth.step, depth.encoding, bool(depth.is_bigendian))
    assert np.isnan(back[0, :5]).all()
    np.testing.assert_allclose(back[1:], depth_m[1:], atol=5e-4 + 1e-6)


def test_late_subscriber_gets_the_partners_current_plan(sim):
    from sensor_msgs.msg import TimeReference

    from coop_robot.nodes.common import EVENT_QOS

    proc, log, ls = sim
    assert ls.spin_until(lambda: len(ls.clock) > 5, 30.0), read_log(log)
    plans = []
    ls.node.create_subscription(TimeReference, "/sim/ground_truth/partner_plan", plans.append, EVENT_QOS)
    assert ls.spin_until(lambda: {"planned_enter", "planned_exit"} <= {m.source for m in plans}, 10.0)
    assert all(m.header.frame_id == "ground_truth" and stamp_to_s(m.time_ref) > 0.0 for m in plans)


def test_a_recorder_that_joins_late_still_gets_every_sync_cue():
    """The sync task's cues are events: a recorder (or dashboard) that matches the sim after some
    trials were cued still gets each of them. With a history of one it got only the last, and a
    bag of a 3-trial session once held 2 cues (discovery was slow on the loaded CI host)."""
    from sensor_msgs.msg import TimeReference

    from coop_robot.nodes.recorder_node import request_qos
    from coop_robot.nodes.sim_node import _SyncScoring
    from coop_robot.timing.sync import SYNC_CUE

    sim_side = rclpy.create_node("sync_cue_test_sim")
    late = None
    executor = SingleThreadedExecutor()
    try:
        scoring = _SyncScoring(sim_side, config=None)   # the cue publisher only; no trials are scored
        sent = []
        for trial in range(3):
            cue_s = 4.0 * trial + 1.0
            sent += [("cue", cue_s), ("trial_end", cue_s)]
            scoring._publish_cue("cue", cue_s, cue_s)
            scoring._publish_cue("trial_end", cue_s, cue_s + 2.0)
        late = rclpy.create_node("sync_cue_test_recorder")
        got = []
        late.create_subscription(TimeReference, SYNC_CUE, got.append, request_qos(SYNC_CUE))
        executor.add_node(sim_side)
        executor.add_node(late)
        deadline = time.monotonic() + 30.0
        while len(got) < len(sent) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert [(m.source, stamp_to_s(m.time_ref)) for m in got] == sent
    finally:
        executor.shutdown()
        if late is not None:
            late.destroy_node()
        sim_side.destroy_node()


def test_published_trajectory_moves_the_joints(sim):
    proc, log, ls = sim
    assert ls.spin_until(lambda: ls.trajectory_pub.get_subscription_count() > 0 and ls.joints, 20.0)
    goal = list(HOME)
    goal[0] += 0.4
    # Joint names in a different order than the sim's: mapped by name.
    ls.trajectory_pub.publish(trajectory(list(reversed(ARM)), [(1.0, list(reversed(goal)))]))
    assert ls.spin_until(lambda: abs(ls.joint("panda_joint1") - goal[0]) < 0.01, 15.0), read_log(log)


def test_malformed_trajectory_is_rejected_and_node_keeps_running(sim):
    proc, log, ls = sim
    assert ls.spin_until(lambda: ls.trajectory_pub.get_subscription_count() > 0 and ls.joints, 20.0)
    before = ls.joint("panda_joint1")
    ls.trajectory_pub.publish(trajectory(ARM, [(1.0, [0.0, 0.1, 0.2])]))  # 3 positions for 7 joints
    ls.trajectory_pub.publish(trajectory(ARM + ["elbow"], [(1.0, [0.0] * 8)]))  # unknown joint
    assert ls.spin_until(lambda: read_log(log).count("rejected trajectory") >= 2, 10.0), read_log(log)
    n_clock = len(ls.clock)
    assert ls.spin_until(lambda: len(ls.clock) > n_clock + 20, 10.0)
    assert proc.poll() is None
    assert ls.joint("panda_joint1") == pytest.approx(before, abs=0.01)
    text = read_log(log)
    assert "3 positions for 7 joint names" in text and "elbow" in text


def test_trajectory_beyond_the_joint_limits_is_rejected_with_a_logged_reason(sim):
    proc, log, ls = sim
    assert ls.spin_until(lambda: ls.trajectory_pub.get_subscription_count() > 0 and ls.joints, 20.0)
    before = ls.joint("panda_joint1")
    whip = list(HOME)
    whip[0] = 1e308
    ls.trajectory_pub.publish(trajectory(ARM, [(1.0, whip)]))
    assert ls.spin_until(lambda: "panda_joint1 position 1e+308 rad at point #0" in read_log(log), 10.0), read_log(log)
    n_clock = len(ls.clock)
    assert ls.spin_until(lambda: len(ls.clock) > n_clock + 20, 10.0)
    assert proc.poll() is None
    assert ls.joint("panda_joint1") == pytest.approx(before, abs=0.01)
    line = next(ln for ln in read_log(log).splitlines() if "1e+308" in ln)
    assert "[ERROR]" in line and "rejected trajectory" in line and "2.8973" in line


def test_perception_sync_paces_the_sim_by_perception_and_gives_up_when_it_goes_quiet(tmp_path, ros_domain):
    from geometry_msgs.msg import PointStamped

    from coop_robot.nodes.common import s_to_stamp

    # Its own DDS domain and rclpy context: the module's shared sim must not feed this /clock.
    domain_id = ros_domain
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    # A start-up wait longer than discovery can take on a loaded host.
    proc, log = start_sim(tmp_path, {"perception_sync": "true", "real_time_factor": 2.0, "max_perception_lag_s": 0.1,
                                     "perception_startup_wait_s": 60.0, "startup_waits_for_policy": "false"},
                          "sync.log", domain_id)
    ls = None
    try:
        ls = Listener(context)
        hand_pub = ls.node.create_publisher(PointStamped, "/partner/hand", 10)
        assert ls.spin_until(lambda: hand_pub.get_subscription_count() > 0 and ls.clock, 30.0), read_log(log)
        # Start-up: no perception yet, so the sim advances only a frame per 0.3 s (not 2 s/s),
        # measured from now: discovery above took as long as the host needed.
        start_clock_s = ls.clock[-1]
        ls.spin_until(lambda: False, 1.5)
        assert ls.clock[-1] - start_clock_s < 0.35, (start_clock_s, ls.clock[-1])
        # A hand stamped a minute ahead of the sim (spoofed, or another clock) is not perception:
        # logged, and the sim stays held (taken as the newest, it would run free for good).
        spoof = PointStamped()
        spoof.header.stamp, spoof.header.frame_id = s_to_stamp(ls.clock[-1] + 60.0), "world"
        hand_pub.publish(spoof)
        assert ls.spin_until(lambda: "perception_sync ignores a /partner/hand stamped" in read_log(log), 10.0), \
            read_log(log)
        held_from_s = ls.clock[-1]
        ls.spin_until(lambda: False, 1.0)
        assert ls.clock[-1] - held_from_s < 0.2, (held_from_s, ls.clock[-1])
        # Perception reports a frame: the sim may now lead it by max_perception_lag_s (0.1 s).
        stamp_s = ls.clock[-1]
        msg = PointStamped()
        msg.header.stamp, msg.header.frame_id = s_to_stamp(stamp_s), "world"
        hand_pub.publish(msg)
        assert ls.spin_until(lambda: ls.clock[-1] >= stamp_s + 0.09, 5.0), (stamp_s, ls.clock[-1])
        ls.spin_until(lambda: False, 1.0)
        # ... and no further than that plus a few frames released for lost frames.
        assert ls.clock[-1] < stamp_s + 0.1 + 0.2, (stamp_s, ls.clock[-1])
        # After perception_timeout_s (2 s wall) of silence the sim carries on alone.
        assert ls.spin_until(lambda: ls.clock[-1] > stamp_s + 1.5, 10.0), read_log(log)
        assert "no /partner/hand for 2 s" in read_log(log)
    finally:
        stop(proc)
        log.close()
        if ls is not None:
            ls.executor.shutdown()
            ls.node.destroy_node()
        rclpy.shutdown(context=context)


def test_invalid_partner_profile_exits_nonzero_with_a_clear_message(tmp_path):
    proc, log = start_sim(tmp_path, {"partner": "no_such_partner"}, "bad_partner.log")
    try:
        code = proc.wait(timeout=30)
    finally:
        stop(proc)
    text = read_log(log)
    log.close()
    assert code == 2, text  # run_node's rule for a bad start-up
    assert "partner" in text and "no_such_partner" in text
    assert "Traceback" not in text


def test_sigint_ends_the_node_with_exit_code_zero(tmp_path, ros_domain):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    proc, log = start_sim(tmp_path, {"perception_sync": "false"}, "sigint.log", ros_domain)
    ls = None
    try:
        ls = Listener(context)
        # Stepping and publishing: its clock has moved on from t = 0.
        assert ls.spin_until(lambda: ls.clock and ls.clock[-1] > 0.1, 60.0), read_log(log)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        assert code == 0, read_log(log)
    finally:
        stop(proc)
        log.close()
        if ls is not None:
            ls.executor.shutdown()
            ls.node.destroy_node()
        rclpy.shutdown(context=context)

"""The controller node in a subprocess, driven over topics on an isolated DDS domain."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from conftest import stop_like_ctrl_c, wait_for
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PointStamped, Vector3Stamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState, TimeReference  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from coop_robot.control.estop import ESTOP_TOPIC  # noqa: E402
from coop_robot.control.kinematics import JOINT_NAMES, PandaKinematics  # noqa: E402
from coop_robot.geometry import Zone  # noqa: E402
from coop_robot.nodes.common import COMMAND_QOS, EVENT_QOS, LATCHED_QOS, stamp_to_s  # noqa: E402
from coop_robot.nodes.controller_node import SSM_QOS  # noqa: E402
from coop_robot.timing.ssm_sample import CONTROLLER_SSM  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HOME = [0.0, -0.6, 0.0, -2.0, 0.0, 1.9, 0.785]
ZONE = Zone((0.45, -0.20, 0.626), (0.75, 0.20, 0.926))
TOPIC = "/panda_arm_controller/joint_trajectory"


class NodeProcess:
    """``python -m coop_robot.nodes.controller_node`` with its output collected by a thread."""

    def __init__(self, env: dict, *param_files: Path, extra_args: tuple = ()) -> None:
        cmd = [sys.executable, "-m", "coop_robot.nodes.controller_node", "--ros-args"]
        for f in param_files:
            cmd += ["--params-file", str(f)]
        cmd += list(extra_args)
        self.lines: list[str] = []
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=2.0)
        return code

    def stop(self) -> None:
        """End the node as Ctrl-C does; killed only if it has not gone within 10 s."""
        stop_like_ctrl_c(self.proc, self._reader, grace_s=10.0)


@pytest.fixture
def ros_env(monkeypatch, ros_domain):
    """An isolated DDS domain, set before rclpy.init here and passed to the node process."""
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Driver:
    """Test-side node: plays policy, perception, joint states and operator; records outputs."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("controller_test_driver", context=self.context)
        n = self.node
        self.decision_pub = n.create_publisher(String, "/policy/decision", COMMAND_QOS)
        self.in_zone_pub = n.create_publisher(Bool, "/partner/in_zone", 10)
        self.hand_pub = n.create_publisher(PointStamped, "/partner/hand", 10)
        self.velocity_pub = n.create_publisher(Vector3Stamped, "/partner/hand_velocity", 10)
        self.joints_pub = n.create_publisher(JointState, "/joint_states", COMMAND_QOS)
        self.estop_pub = n.create_publisher(Bool, ESTOP_TOPIC, 10)
        self.trajectories: list[JointTrajectory] = []
        self.states: list[str] = []
        self.events: list[TimeReference] = []
        self.ssm_times: list[float] = []   # the controller's tick times (one SSM sample per tick)
        n.create_subscription(JointTrajectory, TOPIC, self.trajectories.append, COMMAND_QOS)
        n.create_subscription(String, "/controller/state", lambda m: self.states.append(m.data), LATCHED_QOS)
        n.create_subscription(TimeReference, "/controller/events", self.events.append, EVENT_QOS)
        n.create_subscription(DiagnosticArray, CONTROLLER_SSM,
                              lambda m: self.ssm_times.append(stamp_to_s(m.header.stamp)), SSM_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        # What to publish while spinning.
        self.decision = "act"
        self.in_zone = False
        self.perception_alive = True
        self.publish_velocity = False   # each hand with its velocity, as perception sends a frame
        self.estop: bool | None = False   # None: publish nothing on /emergency_stop
        self.joint_names = list(JOINT_NAMES)

    def event_names(self) -> list[str]:
        return [e.source for e in self.events]

    def publish_inputs(self) -> None:
        now = self.node.get_clock().now().to_msg()
        self.decision_pub.publish(String(data=self.decision))
        if self.perception_alive:
            self.in_zone_pub.publish(Bool(data=self.in_zone))
            hand = PointStamped()
            hand.header.stamp = now
            hand.header.frame_id = "world"
            hand.point.x, hand.point.y, hand.point.z = 1.02, 0.15, 0.80
            self.hand_pub.publish(hand)
            if self.publish_velocity:
                velocity = Vector3Stamped()
                velocity.header = hand.header
                self.velocity_pub.publish(velocity)
        js = JointState()
        js.header.stamp = now
        js.name = list(self.joint_names)
        js.position = list(HOME)
        self.joints_pub.publish(js)
        if self.estop is not None:
            self.estop_pub.publish(Bool(data=self.estop))

    def spin_until(self, predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        next_publish = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_publish:
                self.publish_inputs()
                next_publish = time.monotonic() + 0.02
            self.executor.spin_once(timeout_sec=0.005)
            if predicate():
                return
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; states {self.states}, "
                             f"events {self.event_names()}, {len(self.trajectories)} trajectories")

    def spin_for(self, duration_s: float) -> None:
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            self.publish_inputs()
            self.executor.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def driver(ros_env):
    d = Driver()
    yield d
    d.close()


def start_controller(env: dict, *extra_files: Path) -> NodeProcess:
    return NodeProcess(env, REPO / "config" / "world.yaml", REPO / "config" / "controller.yaml", *extra_files)


def _duration_s(d) -> float:
    return d.sec + 1e-9 * d.nanosec


def test_node_sends_a_reach_and_brakes_on_estop(ros_env, driver):
    node = start_controller(ros_env)
    try:
        driver.spin_until(lambda: bool(driver.trajectories), 20.0, "a reach trajectory")
        reach = driver.trajectories[0]
        # Stamped with the controller-clock time the move starts: a reach from rest when it was sent,
        # at or after its tick (the reach_start event's time; ArmController.sent_at), so a controller
        # held up before sending delays the reach instead of making the arm jump into it.
        driver.spin_until(lambda: "reach_start" in driver.event_names(), 5.0, "the reach_start event")
        start = next(e for e in driver.events if e.source == "reach_start")
        assert stamp_to_s(reach.header.stamp) >= stamp_to_s(start.header.stamp) - 1e-6
        assert stamp_to_s(reach.header.stamp) > 0.0
        assert list(reach.joint_names) == list(JOINT_NAMES)
        times = [_duration_s(p.time_from_start) for p in reach.points]
        assert times[0] > 0.0 and np.all(np.diff(times) > 0.0) and 1.0 < times[-1] < 3.0
        assert all(len(p.positions) == len(p.velocities) == len(p.accelerations) == 7 for p in reach.points)
        # Uncommitted, the reach ends at rest at its gate, just outside the zone (issue 11: a silent
        # controller leaves the arm outside); the commit sends it on.
        gate_ee = PandaKinematics().fk(np.array(reach.points[-1].positions))
        assert not ZONE.contains(gate_ee) and ZONE.distance_m(gate_ee) < 0.05
        assert np.allclose(reach.points[-1].velocities, 0.0, atol=1e-9)
        driver.spin_until(lambda: "reaching" in driver.states and "reach_start" in driver.event_names(),
                          5.0, "reaching state and reach_start event")

        driver.estop = True
        driver.spin_until(lambda: len(driver.trajectories) >= 2 and driver.states[-1] == "estop"
                          and "estop" in driver.event_names(), 5.0, "a brake trajectory, estop state and event")
        brake = driver.trajectories[1]
        # A stop joins the running move's timeline: stamped with its tick, the estop event's time.
        stop = next(e for e in driver.events if e.source == "estop")
        assert stamp_to_s(brake.header.stamp) == pytest.approx(stamp_to_s(stop.header.stamp), abs=1e-6)
        assert _duration_s(brake.points[-1].time_from_start) <= 0.5
        assert np.allclose(brake.points[-1].velocities, 0.0, atol=1e-6)
        # "act" keeps coming, but nothing moves while the stop is held.
        driver.spin_for(0.8)
        assert len(driver.trajectories) == 2 and driver.states[-1] == "estop"
    finally:
        node.stop()


def test_an_act_from_the_liveness_fallback_reaches_at_the_fallback_speed(ros_env, driver):
    """``act fallback`` on /policy/decision (the policy's liveness bound): the reach goes out at
    ``fallback_speed_scale`` of a decided reach's speed; a malformed decision is ignored."""
    from coop_robot.control.controller import ArmController

    driver.decision = "act later"
    node = start_controller(ros_env)
    try:
        driver.spin_until(lambda: "ignoring decision" in node.output, 20.0, "the malformed decision logged")
        assert not driver.trajectories
        driver.decision = "act fallback"
        driver.spin_until(lambda: bool(driver.trajectories), 10.0, "a reach trajectory")
        reach = driver.trajectories[0]
        core = ArmController()
        nominal = core.nominal_reach
        _, qd, _ = nominal.state_at(np.linspace(0.0, nominal.duration_s, 1000))
        top = np.max(np.abs(qd), axis=0)                    # the decided reach's top joint speeds
        sent = np.max(np.abs([p.velocities for p in reach.points]), axis=0)
        assert np.all(sent <= core.config.fallback_speed_scale * top * 1.01 + 1e-6)
        assert np.max(sent / np.maximum(top, 1e-9)) > 0.8 * core.config.fallback_speed_scale
        driver.spin_until(lambda: "liveness fallback" in node.output, 5.0, "the fallback's reach logged")
    finally:
        node.stop()


def test_unsynchronized_clocks_option_sends_zero_stamped_trajectories(ros_env, driver, tmp_path):
    params = tmp_path / "unstamped.yaml"
    params.write_text("controller:\n  ros__parameters:\n    stamp_trajectories: false\n")
    node = start_controller(ros_env, params)
    try:
        driver.spin_until(lambda: bool(driver.trajectories), 20.0, "a reach trajectory")
        assert stamp_to_s(driver.trajectories[0].header.stamp) == 0.0  # a JTC starts it on receipt
    finally:
        node.stop()


def test_node_watchdog_fires_when_perception_goes_stale(ros_env, driver):
    node = start_controller(ros_env)
    try:
        driver.spin_until(lambda: bool(driver.trajectories), 20.0, "a reach trajectory")
        driver.perception_alive = False
        driver.spin_until(lambda: "watchdog" in driver.event_names(), 5.0, "the watchdog event")
        watchdog = next(e for e in driver.events if e.source == "watchdog")
        assert stamp_to_s(watchdog.time_ref) == stamp_to_s(watchdog.header.stamp) > 0.0
        driver.spin_until(lambda: len(driver.trajectories) >= 2, 2.0, "a trajectory back home")
        assert np.allclose(driver.trajectories[-1].points[-1].positions, HOME, atol=1e-6)
    finally:
        node.stop()


def test_a_complete_perception_frame_is_acted_on_without_waiting_for_the_timer(ros_env, driver, tmp_path):
    """The controller ticks when a frame's hand and velocity are both in, not only on its timer: with
    the timer at 1 Hz, frames every 20 ms still give ticks (SSM samples) many times a second."""
    params = tmp_path / "slow_timer.yaml"
    params.write_text("controller:\n  ros__parameters:\n    rate_hz: 1.0\n")
    node = start_controller(ros_env, params)
    driver.decision = "wait"
    try:
        driver.spin_until(lambda: len(driver.ssm_times) >= 1, 20.0, "a first tick")
        # Hands without their velocity: only the timer ticks.
        driver.spin_for(1.5)
        assert len(driver.ssm_times) <= 4, driver.ssm_times
        driver.publish_velocity = True
        start = len(driver.ssm_times)
        driver.spin_until(lambda: len(driver.ssm_times) >= start + 8, 10.0, "ticks on perception frames")
        ticks = driver.ssm_times[start:start + 8]
        # Eight ticks within well under the timer's period (frames every 20 ms; some may coalesce).
        assert ticks[-1] - ticks[0] < 0.9, ticks
        assert np.all(np.diff(ticks) > 0.0), ticks
    finally:
        node.stop()


@pytest.mark.parametrize("text, expected", [
    ("controller:\n  ros__parameters:\n    velocity_scale: 3.0\n", "velocity_scale"),
    ("controller:\n  ros__parameters:\n    target_m: [0.2, 0.9, 0.7]\n", "target_m"),
    ("controller:\n  ros__parameters:\n    joint_names: [a, b, c]\n", "joint_names"),
])
def test_invalid_parameter_exits_2_naming_the_parameter(ros_env, tmp_path, text, expected):
    bad = tmp_path / "bad_controller.yaml"
    bad.write_text(text)
    node = start_controller(ros_env, bad)
    try:
        assert node.wait(30.0) == 2
        assert expected in node.output and "Traceback" not in node.output
    finally:
        node.stop()


def test_unparsable_parameter_file_exits_nonzero_naming_the_file(ros_env, tmp_path):
    bad = tmp_path / "not_yaml.yaml"
    bad.write_text("controller: [velocity_scale: {\n")
    node = start_controller(ros_env, bad)
    try:
        assert node.wait(30.0) != 0
        assert str(bad) in node.output and "Traceback" not in node.output
    finally:
        node.stop()


def test_sigint_shuts_down_cleanly(ros_env):
    node = start_controller(ros_env)
    try:
        wait_for(lambda: "commanding" in node.output or node.proc.poll() is not None, 60.0,
                 "the controller to start commanding", details=lambda: node.output)
        assert "commanding" in node.output, node.output
        node.proc.send_signal(signal.SIGINT)
        assert node.wait(10.0) == 0, node.output
    finally:
        node.stop()



def test_joint_states_without_the_configured_joints_are_reported(ros_env, driver):
    # A real arm whose joints are named otherwise: the node says so (throttled) instead of waiting silently.
    driver.joint_names = [f"fr3_joint{i}" for i in range(1, 8)]
    node = start_controller(ros_env)
    try:
        driver.spin_until(lambda: "/joint_states message ignored" in node.output, 30.0, "the joint-name warning")
        assert "lacks positions for ['panda_joint1'" in node.output and "fr3_joint1" in node.output
        assert "set joint_names" in node.output
    finally:
        node.stop()


@contextlib.contextmanager
def latched_stop(stop: bool = True):
    """A fresh process's worth of DDS (its own context and participant) that publishes one
    transient-local stop (or release) at once, without waiting for any subscription to match,
    and keeps its publisher alive while the block runs. Yields the subscriptions it had matched
    when it published (0 unless discovery beat the publish call)."""
    context = rclpy.Context()
    rclpy.init(context=context)  # ROS_DOMAIN_ID: the test's domain (the ros_env fixture)
    node = rclpy.create_node("estop_button", context=context)
    try:
        pub = node.create_publisher(Bool, ESTOP_TOPIC, LATCHED_QOS)
        matched = pub.get_subscription_count()
        pub.publish(Bool(data=stop))
        yield matched
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_a_latched_stop_published_before_the_controller_started_holds_it(ros_env, driver):
    driver.estop = None
    driver.decision = "wait"
    with latched_stop():
        node = start_controller(ros_env)
        try:
            driver.spin_until(lambda: driver.states[-1:] == ["estop"] and "estop" in driver.event_names(), 30.0,
                              "the controller to start in estop")
            driver.decision = "act"
            driver.spin_for(0.8)
            assert "reach_start" not in driver.event_names() and driver.states[-1] == "estop"
        finally:
            node.stop()


def test_a_latched_stop_published_once_by_a_fresh_process_brakes_a_reach_and_a_release_frees_it(ros_env, driver):
    driver.estop = None
    node = start_controller(ros_env)
    try:
        driver.spin_until(lambda: "reach_start" in driver.event_names(), 30.0, "the reach_start event")
        # Published without waiting for the match (volatile, that message was lost): it arrives
        # over the transient-local subscription once the controller has discovered the publisher.
        with latched_stop():
            driver.spin_until(lambda: driver.states[-1:] == ["estop"] and "estop" in driver.event_names()
                              and len(driver.trajectories) >= 2, 10.0, "a brake trajectory, estop state and event")
        assert np.allclose(driver.trajectories[-1].points[-1].velocities, 0.0, atol=1e-6)
        driver.estop = False  # a plain volatile publisher releases
        driver.spin_until(lambda: "estop_release" in driver.event_names(), 10.0, "the estop_release event")
        assert "EMERGENCY STOP (/emergency_stop)" in node.output
    finally:
        node.stop()


def run_estop_command(driver: Driver, env: dict, state: str) -> subprocess.CompletedProcess:
    """``coop-robot estop STATE`` in a subprocess while the driver keeps the controller's inputs fresh."""
    proc = subprocess.Popen([sys.executable, "-m", "coop_robot.cli", "estop", state, "--timeout-s", "30"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        driver.spin_until(lambda: proc.poll() is not None, 60.0, f"`coop-robot estop {state}` to return")
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_the_estop_command_is_acknowledged_brakes_and_releases(ros_env, driver):
    driver.estop = None  # (a publisher of "false" would release the stop again at once)
    node = start_controller(ros_env)
    try:
        driver.spin_until(lambda: "reach_start" in driver.event_names(), 30.0, "the reach_start event")
        res = run_estop_command(driver, ros_env, "on")
        assert res.returncode == 0, res.stderr
        assert "emergency stop engaged" in res.stdout
        driver.spin_until(lambda: driver.states[-1:] == ["estop"] and "estop" in driver.event_names()
                          and len(driver.trajectories) >= 2, 5.0, "a brake trajectory, estop state and event")
        res = run_estop_command(driver, ros_env, "off")
        assert res.returncode == 0, res.stderr
        assert "emergency stop released" in res.stdout
        driver.spin_until(lambda: "estop_release" in driver.event_names(), 5.0, "the estop_release event")
        assert "EMERGENCY STOP (/controller/emergency_stop)" in node.output
    finally:
        node.stop()

"""The policy node in a subprocess: the mirror policy's cell parameters and a joint-name mismatch."""

import contextlib
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from coop_robot.nodes.common import COMMAND_QOS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ros_env(monkeypatch):
    domain = random.randint(1, 200)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env, domain


def _start(env: dict, tmp_path: Path, **params):
    # A node-specific file: it outranks policy.yaml's "policy: reactive" (a bare -p would not).
    mine = tmp_path / "policy_test.yaml"
    mine.write_text(yaml.safe_dump({"policy": {"ros__parameters": {"policy": "mirror", **params}}}))
    cmd = [sys.executable, "-m", "coop_robot.nodes.policy_node", "--ros-args",
           "--params-file", str(REPO / "config" / "world.yaml"), "--params-file", str(REPO / "config" / "policy.yaml"),
           "--params-file", str(mine)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    return proc, lines, reader


def _stop(proc, reader) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    reader.join(timeout=2)


@contextlib.contextmanager
def _probe(domain: int, name: str, proc, reader):
    """A node named ``name`` beside the policy node under test (``proc``), yielded with ``until(done,
    each=None)``: spin it, calling ``each`` first on every round, until ``done()``, the node under
    test exits, or 60 s pass. Everything -- the probe and the node under test -- is shut down after."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def until(done, each=None) -> None:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and proc.poll() is None and not done():
            if each is not None:
                each()
            executor.spin_once(timeout_sec=0.05)

    try:
        yield node, until
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        _stop(proc, reader)


def test_mirror_node_reports_joint_states_without_its_joints(ros_env, tmp_path):
    env, domain = ros_env
    proc, lines, reader = _start(env, tmp_path)
    with _probe(domain, "policy_joint_probe", proc, reader) as (node, until):
        pub = node.create_publisher(JointState, "/joint_states", COMMAND_QOS)
        msg = JointState(name=[f"fr3_joint{i}" for i in range(1, 8)], position=[0.0] * 7)
        until(lambda: "/joint_states message ignored" in "".join(lines), each=lambda: pub.publish(msg))
        out = "".join(lines)
        assert "/joint_states message ignored" in out, out
        assert "lacks positions for ['panda_joint1'" in out and "set joint_names" in out


def test_mirror_node_rejects_a_release_threshold_above_act(ros_env, tmp_path):
    env, _ = ros_env
    proc, lines, reader = _start(env, tmp_path, release_threshold=0.7, act_threshold=0.5)
    try:
        assert proc.wait(timeout=60) == 2
        reader.join(timeout=2)
        out = "".join(lines)
        assert "release_threshold" in out and "0.7" in out and "Traceback" not in out
    finally:
        _stop(proc, reader)


def test_policy_node_says_when_its_ticks_fall_behind(ros_env, tmp_path):
    """Ticks that come less often than asked: a warning that names the cause and a WARN status with
    the measured rate and CPU share on /diagnostics -- not silent late decisions. Made certain on
    any machine (a fast one keeps up with any rate a node may ask for): the node runs on sim time and
    /clock advances in 0.1 s steps, so its 50 Hz timer fires once a step, at 10 Hz of sim time."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rosgraph_msgs.msg import Clock

    from coop_robot.nodes.common import s_to_stamp
    from coop_robot.nodes.policy_node import RATE_STATUS_NAME

    env, domain = ros_env
    proc, lines, reader = _start(env, tmp_path, use_sim_time=True, rate_hz=50.0, keepup_window_s=0.5,
                                 keepup_min_fraction=0.8)
    seen = []
    clock_s = [0.0]
    with _probe(domain, "policy_rate_probe", proc, reader) as (node, until):
        node.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: seen.extend(s for s in m.status if s.name == RATE_STATUS_NAME), 10)
        clock_pub = node.create_publisher(Clock, "/clock", 10)

        def step_clock() -> None:
            clock_s[0] += 0.1
            clock_pub.publish(Clock(clock=s_to_stamp(clock_s[0])))

        until(lambda: seen and "not keeping up" in "".join(lines), each=step_clock)
        out = "".join(lines)
        assert seen, out
        status = seen[0]
        assert status.level == DiagnosticStatus.WARN and status.message.startswith("not keeping up"), status
        values = {kv.key: float(kv.value) for kv in status.values}
        assert 0.0 < values["rate_hz"] < 40.0 and values["asked_rate_hz"] == 50.0
        assert values["cpu_share"] > 0.0 and values["worst_interval_s"] > 0.0
        assert "not keeping up: policy 'mirror' ticked at" in out and "this machine is too busy" in out, out


def test_mirror_node_publishes_its_p_act_for_the_live_view(ros_env, tmp_path):
    from std_msgs.msg import Float64

    env, domain = ros_env
    proc, lines, reader = _start(env, tmp_path)
    values: list[float] = []
    with _probe(domain, "policy_p_act_probe", proc, reader) as (node, until):
        node.create_subscription(Float64, "/policy/p_act", lambda m: values.append(m.data), COMMAND_QOS)
        until(lambda: len(values) >= 3)
        assert len(values) >= 3, "".join(lines)
        # the network steps every tick, perception or not: a probability from the first message on
        assert all(0.0 <= v <= 1.0 for v in values), values


def _partner_perception(node, inside: Callable[[float], bool], lead_s: Callable[[], float] = lambda: 0.0):
    """Publishers on ``node`` for what the policy node hears of the partner and the robot (at home),
    and ``perceive()``: one frame, the hand inside the zone while ``inside(seconds since the
    start)``, clear of it otherwise, stamped ``lead_s()`` ahead of the probe's clock."""
    from geometry_msgs.msg import PointStamped
    from std_msgs.msg import Bool, String

    from coop_robot.nodes.common import LATCHED_QOS

    in_zone = node.create_publisher(Bool, "/partner/in_zone", 10)
    hand = node.create_publisher(PointStamped, "/partner/hand", 10)
    state = node.create_publisher(String, "/controller/state", LATCHED_QOS)
    state.publish(String(data="home"))
    t0 = time.monotonic()

    def perceive() -> None:
        now_inside = inside(time.monotonic() - t0)
        msg = PointStamped()
        msg.header.stamp = (node.get_clock().now() + rclpy.duration.Duration(seconds=lead_s())).to_msg()
        msg.point.x, msg.point.y, msg.point.z = (0.6, 0.0, 0.8) if now_inside else (1.02, 0.15, 0.8)
        in_zone.publish(Bool(data=now_inside))
        hand.publish(msg)

    return perceive


def _decisions(node) -> list[str]:
    from std_msgs.msg import String

    decisions: list[str] = []
    node.create_subscription(String, "/policy/decision", lambda m: decisions.append(m.data), COMMAND_QOS)
    return decisions


def test_policy_node_marks_the_liveness_fallbacks_act(ros_env, tmp_path):
    """The bound's "act" goes out as ``act fallback`` (the controller reaches slowly on it): the
    oracle with no ground truth waits, so once the partner has been in and the zone has been clear
    for fallback_clear_s, only the bound makes it act."""
    env, domain = ros_env
    proc, lines, reader = _start(env, tmp_path, policy="oracle", fallback_clear_s=0.3)
    with _probe(domain, "policy_fallback_probe", proc, reader) as (node, until):
        decisions = _decisions(node)
        perceive = _partner_perception(node, lambda t: t < 1.0)   # the partner's turn, then a clear zone
        until(lambda: "act fallback" in decisions, each=perceive)
        assert "act fallback" in decisions, "".join(lines)
        assert "act" not in decisions                        # the oracle itself never acted
    assert set(decisions) <= {"wait", "act fallback"}, decisions


def test_policy_node_ignores_perception_stamped_from_the_future(ros_env, tmp_path):
    """Frames stamped a minute ahead (a wrong clock, a corrupt stamp) are not perception: taken as
    fresh, they gave the mirror network a negative perception age, and it stopped acting for the
    rest of the turn (a fault campaign's session). The oracle with the bound at 0.3 s acts only on
    fresh perception of a turn and a clear zone: on frames from the future it waits, says why, and
    acts once the same frames come with real stamps."""
    env, domain = ros_env
    proc, lines, reader = _start(env, tmp_path, policy="oracle", fallback_clear_s=0.3)
    with _probe(domain, "policy_future_probe", proc, reader) as (node, until):
        decisions = _decisions(node)
        lead = {"s": 60.0}
        # A turn, then a clear zone, again and again.
        perceive = _partner_perception(node, lambda t: t % 3.0 < 1.0, lambda: lead["s"])
        t0 = time.monotonic()
        until(lambda: time.monotonic() - t0 > 4.0 and decisions, each=perceive)
        out = "".join(lines)
        assert re.search(r"ignoring /partner/hand stamped (59|60)\.\d+ s ahead of this node.s clock", out), out
        assert decisions and set(decisions) == {"wait"}, decisions
        lead["s"] = 0.0
        until(lambda: "act fallback" in decisions, each=perceive)
        assert "act fallback" in decisions, "".join(lines)


def test_policy_node_ends_cleanly_on_ctrl_c(ros_env, tmp_path):
    """The node's spin (common.spin_events) returns on SIGINT: exit status 0, no traceback --
    rclpy's EventsExecutor.spin() in these wheels ignores Ctrl-C, spin_events must not."""
    import signal

    from std_msgs.msg import String

    env, domain = ros_env
    proc, lines, reader = _start(env, tmp_path)
    decisions: list[str] = []
    with _probe(domain, "policy_ctrl_c_probe", proc, reader) as (node, until):
        node.create_subscription(String, "/policy/decision", lambda m: decisions.append(m.data), COMMAND_QOS)
        until(lambda: len(decisions) >= 3)
        assert len(decisions) >= 3, "".join(lines)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, "".join(lines)
        reader.join(timeout=2)
        assert "Traceback" not in "".join(lines), "".join(lines)


def test_spin_events_fires_timers_on_sim_time_and_returns_on_shutdown(ros_env):
    """A node on sim time spun by common.spin_events ticks as /clock advances (at the timer's
    period of sim time) and the spin returns once its context shuts down."""
    from rclpy.executors import ExternalShutdownException
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock

    from coop_robot.nodes.common import s_to_stamp, spin_events

    _, domain = ros_env
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("spin_events_probe", context=context,
                             parameter_overrides=[Parameter("use_sim_time", value=True)])
    ticks_s: list[float] = []
    enough = threading.Event()

    def tick():
        ticks_s.append(node.get_clock().now().nanoseconds * 1e-9)
        if len(ticks_s) >= 5:
            enough.set()

    node.create_timer(0.02, tick)
    clock_node = rclpy.create_node("spin_events_clock", context=context)
    clock_pub = clock_node.create_publisher(Clock, "/clock", 10)
    ended: list[str] = []

    def spin() -> None:
        try:
            spin_events(node)
            ended.append("returned")
        except ExternalShutdownException:  # as rclpy.spin on a shutdown from outside
            ended.append("external shutdown")

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        t_s, deadline = 0.0, time.monotonic() + 30.0
        while not enough.is_set() and time.monotonic() < deadline:
            t_s += 0.004
            clock_pub.publish(Clock(clock=s_to_stamp(t_s)))
            enough.wait(0.002)  # pace the clock a little: the spinner runs beside this thread
        assert enough.is_set(), f"ticks at {ticks_s} with /clock at {t_s:.3f} s"
        periods = [b - a for a, b in zip(ticks_s, ticks_s[1:])]
        assert all(abs(p - 0.02) < 0.0045 for p in periods), ticks_s  # one /clock step of jitter
    finally:
        rclpy.shutdown(context=context)
        spinner.join(timeout=10)
        clock_node.destroy_node()
        node.destroy_node()
    assert not spinner.is_alive() and ended, "spin_events did not end after its context shut down"

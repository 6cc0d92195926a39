"""Where the policy node's CPU goes (issue 13: under 10 % of one core at 50 Hz).

Starts the real policy node process (``python -m coop_robot.nodes.policy_node``, the sim graph's
parameter files and overrides: mirror, ``use_sim_time``) beside a feeder process that publishes
what the sim graph sends it, at the graph's rates: ``/clock`` (250 Hz of sim time, as
``config/sim.yaml``), ``/joint_states`` (100 Hz), ``/partner/hand``, ``/partner/hand_velocity``
and ``/partner/in_zone`` (30 Hz each) and a latched ``/controller/state``. Sim time runs at
``--rtf`` times the wall clock (the sim's ``real_time_factor``, 2.0 in ``sim.yaml``; on a busy
machine the graph runs slower), published in bursts every 5 ms of wall time as the sim's own
loop does. The node's CPU share is its process's CPU time over wall time from ``/proc``, over
``--window-s`` seconds after ``--settle-s`` (imports, the checkpoint load). Its tick rate comes
from its own ``coop_robot: policy rate`` status on ``/diagnostics``.

Each variant changes one thing (the feeder's topics, a node parameter, or how the node spins);
the variants run one after the other, ``--rounds`` times interleaved, and each is printed as a
ratio against the baseline measured in the same run, so a machine whose load drifts still
compares like with like:

    python bench/policy_node_cpu.py [--variants baseline,clock_only,...] [--rounds 2]
        [--rtf 2.0] [--window-s 20] [--out results.json]

``--list`` prints the variants. The feeder's own CPU is not counted; on a machine with few cores
it competes with the node, as the sim does in the graph. In the graph on a busy machine the sim ran
at 0.3-0.45x real time (its log), so its rates were a fifth of ``--rtf 2``'s: the shares here scale
with ``--rtf``, the ratios hardly.

Measured (2026-12-03, 2 cores busy with training runs, load 3-6, ``--rtf 2``): the node as it was
used ~58 % of a core here; with only ``/clock`` ~45 %; the reactive policy with only ``/clock``
~30 % (rclpy's wake: the executor rebuilds its wait set from every entity of the node on each
wake, ~250 us each, a few hundred wakes a second); the mirror step ~1.8 ms a tick (the network
0.7 ms of it). ``events``: rclpy.experimental.EventsExecutor's ``spin()`` in these wheels (rclpy
7.1.5/7.1.6) never fires a timer, spins a core and ignores Ctrl-C, even for a bare node with one wall
timer; its ``spin_once`` works, and since e4a5561 the node's own main spins with it
(``coop_robot.nodes.common.spin_events``). 2026-12-04, ``--variants baseline,single --rounds 2
--rtf 1`` (50 ticks a wall second), load 8-11: baseline 22.8 %, the node as before (``single``)
28.5 % (starved: 46.6 ticks/s); at load 5-9 with 15 s windows 21.2 % against 38.8 %.
2026-12-04, idle machine (load < 0.5), ``--variants baseline,torch,lab_cell,lab_cell_torch --rounds 2
--rtf 1 --window-s 15 --settle-s 10``, after the network moved to NumPy (``inference: numpy``) and
the per-tick features and forward kinematics to Python floats: baseline 14.9 % (``torch`` 21.0 %),
``lab_cell`` (robot.launch.py's wall clock, no /clock) 11.8 % (``lab_cell_torch`` 18.7 %).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coop_robot.procfs import cpu_seconds  # noqa: E402
from coop_robot.runner import stop_like_ctrl_c  # noqa: E402

FEED_TICK_S = 0.005          # the sim's wall-clock loop period (coop_robot.sim.pacing.TICK_PERIOD_S)
ALL_TOPICS = ("clock", "joints", "perception")
SPINS = ("events", "single", "no_qos_events", "no_param_services", "as_before")


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    topics: tuple[str, ...] = ALL_TOPICS     # what the feeder publishes
    params: dict = field(default_factory=dict)  # node parameter overrides (over the graph's)
    spin: str = ""                           # "" = the node's own main; else bench's spin (see _spin_node)
    clock_hz: float = 250.0                  # /clock messages per sim second (config/sim.yaml clock_rate_hz)
    wall_stamps: bool = False                # the feeder stamps with the wall clock (a lab cell: no /clock)


VARIANTS = {v.name: v for v in [
    Variant("baseline", "the node as in the sim graph (mirror, sim time, every topic; its own main: "
            "EventsExecutor, common.spin_events)"),
    Variant("clock_only", "only /clock (and the latched state): the timer, the tick and the clock subscription",
            topics=("clock",)),
    Variant("no_joints", "every topic but /joint_states", topics=("clock", "perception")),
    Variant("no_perception", "every topic but the three /partner topics", topics=("clock", "joints")),
    Variant("clock_100", "/clock at 100 Hz of sim time instead of 250 (sim.yaml clock_rate_hz: a graph-wide "
            "change of the clock's resolution, not a change to the node)", clock_hz=100.0),
    Variant("torch", "the network on torch (node parameter inference: torch), as before 2026-12-04 "
            "(the numpy copy of its weights is the default since)", params={"inference": "torch"}),
    Variant("lab_cell", "as robot.launch.py runs it: the wall clock (use_sim_time false, no /clock), inputs "
            "stamped with the wall clock; --rtf 1 for the lab's rates", topics=("joints", "perception"),
            params={"use_sim_time": False}, wall_stamps=True),
    Variant("lab_cell_torch", "lab_cell with the network on torch", topics=("joints", "perception"),
            params={"use_sim_time": False, "inference": "torch"}, wall_stamps=True),
    Variant("reactive", "policy reactive: no network, no /joint_states subscription",
            params={"policy": "reactive"}),
    Variant("reactive_clock_only", "policy reactive, only /clock: the executor's floor without the network",
            topics=("clock",), params={"policy": "reactive"}),
    Variant("events", "spun by rclpy.experimental.EventsExecutor's spin() (bench's spin; in these wheels it "
            "never fires a timer: the node's own main drives spin_once instead, common.spin_events)", spin="events"),
    Variant("single", "spun by a SingleThreadedExecutor (bench's spin; as rclpy.spin): the node as before "
            "e4a5561", spin="single"),
    Variant("no_qos_events", "bench's spin; no default QoS-event handlers on the node's subscriptions "
            "either (its publishers have none): 12 fewer entities in each wait set", spin="no_qos_events"),
    Variant("as_before", "bench's spin; the node as before 773e293 and e509179: rclpy's default QoS-event "
            "handlers on its publishers, the mirror's egocentric frames built twice a tick", spin="as_before"),
    Variant("no_param_services", "bench's spin; no parameter services (fewer entities in each wait set)",
            spin="no_param_services"),
]}


# ---------------------------------------------------------------------------------------------
# The feeder: what the sim and perception nodes send the policy node.

def feed(rtf: float, topics: tuple[str, ...], seconds: float, clock_hz: float = 250.0,
         wall_stamps: bool = False) -> int:
    """Publish the graph's inputs of the policy node at the graph's rates (sim time at ``rtf`` x
    wall) for ``seconds`` of wall time; print the ``coop_robot: policy rate`` statuses seen as JSON lines.
    ``wall_stamps``: stamp the messages with the wall clock (a node on the wall clock judges
    perception's age by it), not with sim time."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PointStamped, Vector3Stamped
    from rosgraph_msgs.msg import Clock as ClockMsg
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, String

    from coop_robot.control.kinematics import JOINT_NAMES
    from coop_robot.geometry import world_geometry
    from coop_robot.nodes.common import COMMAND_QOS, LATCHED_QOS, s_to_stamp
    from coop_robot.nodes.policy_node import RATE_STATUS_NAME

    rclpy.init()
    node = rclpy.create_node("policy_cpu_feeder")
    clock_pub = node.create_publisher(ClockMsg, "/clock", 10)
    joint_pub = node.create_publisher(JointState, "/joint_states", COMMAND_QOS)
    hand_pub = node.create_publisher(PointStamped, "/partner/hand", COMMAND_QOS)
    vel_pub = node.create_publisher(Vector3Stamped, "/partner/hand_velocity", COMMAND_QOS)
    zone_pub = node.create_publisher(Bool, "/partner/in_zone", COMMAND_QOS)
    state_pub = node.create_publisher(String, "/controller/state", LATCHED_QOS)
    state_pub.publish(String(data="home"))

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == RATE_STATUS_NAME:
                values = {kv.key: kv.value for kv in status.values}
                print(json.dumps({"wall_s": time.monotonic(), "rate_hz": float(values["rate_hz"]),
                                  "cpu_share": float(values["cpu_share"])}), flush=True)

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    world = world_geometry()
    home = list(world.robot_home_joint_positions_rad)
    names = list(JOINT_NAMES) + ["panda_finger_joint1", "panda_finger_joint2"]
    rest = list(world.partner_rest_m)
    periods = {"clock": 1 / clock_hz, "joints": 1 / 100.0, "perception": 1 / 30.0}
    due = {k: 0.0 for k in periods}
    start = time.monotonic()
    next_wall = start
    n = 0
    while time.monotonic() - start < seconds:
        sim_t = (time.monotonic() - start) * rtf
        for kind in topics:
            while due[kind] <= sim_t:
                t = due[kind]
                stamp = s_to_stamp(time.time() if wall_stamps else t)
                if kind == "clock":
                    clock_pub.publish(ClockMsg(clock=stamp))
                elif kind == "joints":
                    msg = JointState(name=names, position=[q + 0.01 * math.sin(t) for q in home] + [0.04, 0.04],
                                     velocity=[0.0] * 9, effort=[0.0] * 9)
                    msg.header.stamp = stamp
                    joint_pub.publish(msg)
                else:
                    hand = PointStamped()
                    hand.header.stamp, hand.header.frame_id = stamp, "world"
                    hand.point.x, hand.point.y, hand.point.z = rest[0] + 0.05 * math.sin(t), rest[1], rest[2]
                    hand_pub.publish(hand)
                    vel = Vector3Stamped()
                    vel.header = hand.header
                    vel.vector.x = 0.05 * math.cos(t)
                    vel_pub.publish(vel)
                    zone_pub.publish(Bool(data=False))
                due[kind] += periods[kind]
        n += 1
        if n % 20 == 0:   # the node's rate statuses (~1 every 5 s of sim time): a few spins every 100 ms
            for _ in range(3):
                rclpy.spin_once(node, timeout_sec=0.0)
        next_wall += FEED_TICK_S
        time.sleep(max(0.0, next_wall - time.monotonic()))
    node.destroy_node()
    rclpy.shutdown()
    return 0


# ---------------------------------------------------------------------------------------------
# The node under test.

def _spin_node(kind: str, ros_args: list[str]) -> int:
    """Run the policy node with ``run_node``'s start-up but spun by the executor ``kind``."""
    import functools

    import rclpy
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
    from rclpy.node import Node

    from coop_robot.nodes import common
    from coop_robot.nodes.policy_node import PolicyNode

    factory = PolicyNode
    if kind == "no_qos_events":
        create_pub, create_sub = Node.create_publisher, Node.create_subscription

        def pub(self, *a, **kw):
            kw.setdefault("event_callbacks", PublisherEventCallbacks(use_default_callbacks=False))
            return create_pub(self, *a, **kw)

        def sub(self, *a, **kw):
            kw.setdefault("event_callbacks", SubscriptionEventCallbacks(use_default_callbacks=False))
            return create_sub(self, *a, **kw)

        Node.create_publisher, Node.create_subscription = pub, sub
    elif kind == "no_param_services":
        factory = functools.partial(PolicyNode, start_parameter_services=False)
    elif kind == "as_before":
        from coop_robot.policy import mirror_net
        from coop_robot.policy.mirror import MirrorPolicy

        PolicyNode.create_publisher = Node.create_publisher
        def rebuilt(self, which, origin_m):
            frame = mirror_net.EgocentricFrame.facing_zone(origin_m, self.zone)
            return (origin_m, self.zone, frame, mirror_net.EgocentricRow(frame, self.zone))

        MirrorPolicy._cached_frame = rebuilt

    def spin(node) -> None:
        if kind == "events":
            from rclpy.experimental import EventsExecutor
            executor = EventsExecutor()
        else:
            executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()

    common.rclpy.spin = spin  # run_node calls rclpy.spin(node)
    return common.run_node(factory, ["policy_node"] + ros_args)


def policy_command(variant: Variant, params_dir: Path) -> list[str]:
    """The sim graph's command line for the policy node, with the variant's overrides."""
    from coop_robot.graph import sim_graph
    from coop_robot.runner import node_command

    spec = next(s for s in sim_graph(policy="mirror") if s.name == "policy")
    spec = type(spec)(**{**spec.__dict__, "parameters": {**spec.parameters, **variant.params}})
    cmd = node_command(spec, params_dir)
    if variant.spin:
        ros_args = cmd[cmd.index("--ros-args"):]
        cmd = [sys.executable, str(Path(__file__).resolve()), "--spin", variant.spin, "--"] + ros_args
    return cmd


def _cpu_s(pid: int) -> float:
    cpu = cpu_seconds(pid)
    if cpu is None:
        raise RuntimeError(f"the policy node (pid {pid}) has gone")
    return cpu


def measure(variant: Variant, rtf: float, settle_s: float, window_s: float, env: dict, tmp: Path) -> dict:
    """One run of one variant: the node's CPU share over the window, its tick rate, its exit status."""
    node_log = open(tmp / f"{variant.name}.log", "w")
    node = subprocess.Popen(policy_command(variant, tmp / "params"), env=env, stdout=node_log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    feed_cmd = [sys.executable, str(Path(__file__).resolve()), "--feed", "--rtf", str(rtf),
                "--topics", ",".join(variant.topics), "--seconds", str(settle_s + window_s + 3),
                "--clock-hz", str(variant.clock_hz)] + (["--wall-stamps"] if variant.wall_stamps else [])
    feeder = subprocess.Popen(feed_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              start_new_session=True)
    try:
        time.sleep(settle_s)
        if node.poll() is not None:
            raise RuntimeError(f"policy node exited with {node.returncode}: see {node_log.name}")
        cpu0, wall0 = _cpu_s(node.pid), time.monotonic()
        time.sleep(window_s)
        cpu1, wall1 = _cpu_s(node.pid), time.monotonic()
        load = os.getloadavg()[0]
        out, _ = feeder.communicate(timeout=30)
    finally:
        stop_like_ctrl_c(feeder)
        stop_like_ctrl_c(node)
        node_log.close()
    rates = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    in_window = [r for r in rates if wall0 <= r["wall_s"] <= wall1 + 1.0]
    return {
        "variant": variant.name,
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
        "tick_rate_hz": statistics.median([r["rate_hz"] for r in in_window]) if in_window else None,
        "node_cpu_share": statistics.median([r["cpu_share"] for r in in_window]) if in_window else None,
        "load_1min": load,
        "exit_code": node.returncode,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="baseline,clock_only,no_joints,no_perception,reactive",
                   help="comma-separated variants (the first is the baseline of the ratios)")
    p.add_argument("--rounds", type=int, default=2, help="each variant this many times, interleaved")
    p.add_argument("--rtf", type=float, default=2.0, help="sim seconds per wall second (the sim's real_time_factor)")
    p.add_argument("--settle-s", type=float, default=12.0, help="wall seconds from start before the window")
    p.add_argument("--window-s", type=float, default=20.0, help="wall seconds measured")
    p.add_argument("--out", help="write the runs as JSON here")
    p.add_argument("--list", action="store_true", help="print the variants and exit")
    p.add_argument("--feed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--topics", default=",".join(ALL_TOPICS), help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    p.add_argument("--clock-hz", type=float, default=250.0, help=argparse.SUPPRESS)
    p.add_argument("--wall-stamps", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--spin", choices=SPINS, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    p = build_parser()
    args, rest = p.parse_known_args(argv)
    if args.feed:
        return feed(args.rtf, tuple(t for t in args.topics.split(",") if t), args.seconds, args.clock_hz,
                    args.wall_stamps)
    if args.spin:
        return _spin_node(args.spin, [a for a in rest if a != "--"])
    if args.list:
        for v in VARIANTS.values():
            print(f"{v.name:>14}  {v.what}")
        return 0
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; --list shows them")

    from coop_robot.runner import isolated_env

    env = isolated_env()
    runs = []
    with tempfile.TemporaryDirectory(prefix="policy_cpu_") as tmp:
        for r in range(args.rounds):
            for name in names:
                run = measure(VARIANTS[name], args.rtf, args.settle_s, args.window_s, env, Path(tmp))
                run["round"] = r
                runs.append(run)
                rate = "n/a" if run["tick_rate_hz"] is None else f"{run['tick_rate_hz']:.1f} Hz"
                print(f"round {r} {name:>14}: {100 * run['cpu_share']:5.1f} % of a core, ticks {rate} (sim), "
                      f"load {run['load_1min']:.2f}, exit {run['exit_code']}", flush=True)
    base = statistics.mean(run["cpu_share"] for run in runs if run["variant"] == names[0])
    print(f"\n{'variant':>14} {'CPU % core':>10} {'ratio':>6} {'ticks Hz':>8}  (rtf {args.rtf:g}, "
          f"{args.window_s:g} s windows, {args.rounds} rounds; ratio against {names[0]} in this run)")
    for name in names:
        mine = [run for run in runs if run["variant"] == name]
        share = statistics.mean(run["cpu_share"] for run in mine)
        rates = [run["tick_rate_hz"] for run in mine if run["tick_rate_hz"] is not None]
        rate = f"{statistics.mean(rates):.1f}" if rates else "n/a"
        print(f"{name:>14} {100 * share:10.1f} {share / base:6.2f} {rate:>8}  {VARIANTS[name].what}")
    if args.out:
        Path(args.out).write_text(json.dumps({"rtf": args.rtf, "window_s": args.window_s, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

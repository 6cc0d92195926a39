"""Lab-style rosbag2 bags for the tests, written with rosbags' own ``Writer`` (not the package's).

What a ``ros2 bag record`` of the lab robot holds: metadata.yaml version 9, storage file
``<bag>_0.mcap`` / ``<bag>_0.db3`` (MCAP optionally with zstd chunk compression, as the
``zstd_fast`` storage preset writes it), epoch-sized clocks, the lab topic list and no
``/sim/ground_truth/*``. The arm driver publishes /joint_states with the seven arm joints in a
shuffled order, the gripper driver its two finger joints in messages of its own on the same topic.

The session is scripted: partner and robot stays in the zone (s after :data:`T0_NS`), with the
per-turn figures the turn tracker's definitions give (docs/architecture.md, "Metrics"), written out by hand
in :data:`LAB_TURNS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coop_robot.analysis.synthetic import HAND_REST_M, HAND_TARGET_M, HOME_Q_RAD, ZONE_Q_RAD, to_ros2_record_layout

T0_NS = 1_700_000_000_000_000_000      # a wall clock, as on a lab machine
FRAME_NS = 33_333_333                  # camera, 30 Hz
ARM_NS = 10_000_000                    # arm driver, 100 Hz
GRIPPER_NS = 40_000_000                # gripper driver, 25 Hz
TICK_NS = 20_000_000                   # policy, 50 Hz
FRAME_S = FRAME_NS * 1e-9
ARM_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
FINGER_JOINTS = ["panda_finger_joint1", "panda_finger_joint2"]
TYPES = {
    "/joint_states": "sensor_msgs/msg/JointState",
    "/partner/in_zone": "std_msgs/msg/Bool",
    "/partner/hand": "geometry_msgs/msg/PointStamped",
    "/partner/hand_velocity": "geometry_msgs/msg/Vector3Stamped",
    "/policy/decision": "std_msgs/msg/String",
    "/controller/state": "std_msgs/msg/String",
    "/controller/events": "sensor_msgs/msg/TimeReference",
    "/turn/timing": "diagnostic_msgs/msg/DiagnosticArray",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


@dataclass(frozen=True)
class Script:
    """Zone stays (s after T0): the partner's, and per robot turn (reach_start, enter, exit)."""

    partner: tuple[tuple[float, float], ...]
    robot: tuple[tuple[float, float, float], ...]
    end_s: float


@dataclass(frozen=True)
class Turn:
    """The scripted figures of one robot turn (s), by the tracker's definitions."""

    partner_exit_s: float
    robot_enter_s: float
    robot_exit_s: float
    gap_s: float
    overlap_s: float
    response_latency_s: float


LAB_SCRIPT = Script(
    partner=(
        (1.00, 2.00),     # turn 1: a clean turn
        (4.00, 5.20),     # turn 2: the robot enters at 4.90 while the partner is inside (negative gap)
        (6.50, 7.40),     # turn 3 ...
        (8.30, 9.00),     # ... the partner re-enters at 8.30 while the robot is inside (until 8.60)
        (11.00, 11.25),   # turn 5: a false start into the zone (its exit is a partner exit like any)
        (11.80, 12.60),   # ... and the real reach: the gap is measured from this exit
        (14.50, 15.30),   # turn 6: clean
    ),
    robot=(
        (2.05, 2.50, 3.30),
        (4.60, 4.90, 5.80),
        (7.45, 7.80, 8.60),
        (9.20, 9.50, 10.30),
        (12.70, 13.00, 13.80),
        (15.50, 15.90, 16.70),
    ),
    end_s=18.0,
)
# gap = robot entry - the last partner exit before it (or the exit of the stay it entered into);
# overlap = time both were inside during the robot's stay; latency = reach_start - that exit.
LAB_TURNS = (
    Turn(2.00, 2.50, 3.30, gap_s=0.50, overlap_s=0.00, response_latency_s=0.05),
    Turn(5.20, 4.90, 5.80, gap_s=-0.30, overlap_s=0.30, response_latency_s=-0.60),
    Turn(7.40, 7.80, 8.60, gap_s=0.40, overlap_s=0.30, response_latency_s=0.05),
    Turn(9.00, 9.50, 10.30, gap_s=0.50, overlap_s=0.00, response_latency_s=0.20),
    Turn(12.60, 13.00, 13.80, gap_s=0.40, overlap_s=0.00, response_latency_s=0.10),
    Turn(15.30, 15.90, 16.70, gap_s=0.60, overlap_s=0.00, response_latency_s=0.20),
)
LAB_PARTNER_TURNS = len(LAB_SCRIPT.partner)

# The recorded robot waits 1.2 s after each exit before reaching: a replayed reactive policy
# with a shorter debounce decides while the recorded robot is still at home.
SLOW_SCRIPT = Script(
    partner=((1.013, 2.013), (5.517, 6.517), (10.009, 11.009)),
    robot=((3.213, 3.713, 4.513), (7.717, 8.217, 9.017), (12.209, 12.709, 13.509)),
    end_s=14.5,
)


def _inside(t_s: float, stays) -> bool:
    return any(a <= t_s < b for a, b in stays)


def write_lab_bag(path: Path, *, storage: str = "mcap", zstd: bool = False, script: Script = LAB_SCRIPT,
                  turns: tuple[Turn, ...] | None = LAB_TURNS, wrong_types: dict[str, str] | None = None,
                  extra_topics: dict[str, str] | None = None, empty: bool = False, seed: int = 0) -> Path:
    """Write ``script`` as a lab bag at ``path`` (ros2 bag record's layout); return the path.

    ``turns``: written as the live tracker's /turn/timing (None: no /turn/timing). ``wrong_types``:
    topic -> type to record it with instead (std_msgs/msg/String carries ``str(value)``).
    ``extra_topics``: connections without messages. ``empty``: connections only, no messages."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    t = ts.types
    rng = np.random.default_rng(seed)
    wrong_types = wrong_types or {}
    types = {name: wrong_types.get(name, typ) for name, typ in TYPES.items() if turns is not None
             or name != "/turn/timing"}

    def stamp(t_ns):
        return t["builtin_interfaces/msg/Time"](sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)

    def header(t_ns, frame=""):
        return t["std_msgs/msg/Header"](stamp=stamp(t_ns), frame_id=frame)

    def value(topic, native, make):
        """The message of ``topic``, or a String of the value when the topic has the wrong type."""
        if types[topic] == "std_msgs/msg/String" and TYPES[topic] != "std_msgs/msg/String":
            return t["std_msgs/msg/String"](data=str(native).lower())
        return make()

    msgs: list[tuple[int, int, str, object]] = []

    def add(t_ns: int, topic: str, msg) -> None:
        msgs.append((t_ns, len(msgs), topic, msg))

    end_ns = T0_NS + int(script.end_s * 1e9)
    for t_ns in range(T0_NS, end_ns, FRAME_NS):
        s = (t_ns - T0_NS) * 1e-9
        inside = _inside(s, script.partner)
        hand = HAND_TARGET_M if inside else HAND_REST_M
        add(t_ns, "/partner/in_zone",
            value("/partner/in_zone", inside, lambda v=inside: t["std_msgs/msg/Bool"](data=v)))
        add(t_ns, "/partner/hand", t["geometry_msgs/msg/PointStamped"](
            header=header(t_ns, "world"), point=t["geometry_msgs/msg/Point"](x=hand[0], y=hand[1], z=hand[2])))
        add(t_ns, "/partner/hand_velocity", t["geometry_msgs/msg/Vector3Stamped"](
            header=header(t_ns, "world"), vector=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)))
    robot_stays = [(enter, leave) for _, enter, leave in script.robot]
    for t_ns in range(T0_NS, end_ns, ARM_NS):
        q = ZONE_Q_RAD if _inside((t_ns - T0_NS) * 1e-9, robot_stays) else HOME_Q_RAD
        order = rng.permutation(7)     # the arm driver's joint order is not the URDF's
        add(t_ns, "/joint_states", t["sensor_msgs/msg/JointState"](
            header=header(t_ns), name=[ARM_JOINTS[i] for i in order], position=q[order],
            velocity=np.zeros(7), effort=np.zeros(7)))
    for t_ns in range(T0_NS + 5_000_000, end_ns, GRIPPER_NS):
        add(t_ns, "/joint_states", t["sensor_msgs/msg/JointState"](
            header=header(t_ns), name=list(FINGER_JOINTS), position=np.array([0.04, 0.04]),
            velocity=np.zeros(2), effort=np.zeros(2)))
    add(T0_NS, "/controller/state", t["std_msgs/msg/String"](data="home"))
    for reach, enter, leave in script.robot:
        ns = {k: T0_NS + int(round(v * 1e9)) for k, v in (("reach", reach), ("enter", enter), ("exit", leave))}
        add(ns["reach"], "/controller/events", t["sensor_msgs/msg/TimeReference"](
            header=header(ns["reach"]), time_ref=stamp(ns["reach"]), source="reach_start"))
        for when, state in ((ns["reach"], "reaching"), (ns["enter"], "acting"), (ns["exit"], "withdrawing"),
                            (ns["exit"] + 300_000_000, "home")):
            add(when, "/controller/state", t["std_msgs/msg/String"](data=state))
    decisions = [(reach - 0.02, leave) for reach, _, leave in script.robot]
    for t_ns in range(T0_NS, end_ns, TICK_NS):
        act = _inside((t_ns - T0_NS) * 1e-9, decisions)
        add(t_ns, "/policy/decision", t["std_msgs/msg/String"](data="act" if act else "wait"))
    kv, status = t["diagnostic_msgs/msg/KeyValue"], t["diagnostic_msgs/msg/DiagnosticStatus"]
    array = t["diagnostic_msgs/msg/DiagnosticArray"]
    for k, turn in enumerate(turns or (), 1):
        t_ns = T0_NS + int((turn.robot_exit_s + 4.0) * 1e9)    # the live tracker's 4 s reorder window
        if t_ns >= end_ns:
            t_ns = end_ns - 1
        values = {"turn": str(k), "partner_exit_s": repr(turn.partner_exit_s + T0_NS * 1e-9),
                  "robot_enter_s": repr(turn.robot_enter_s + T0_NS * 1e-9),
                  "robot_exit_s": repr(turn.robot_exit_s + T0_NS * 1e-9), "gap_s": repr(turn.gap_s),
                  "overlap_s": repr(turn.overlap_s), "response_latency_s": repr(turn.response_latency_s),
                  "contact": "False", "scored_on": "perception"}
        add(t_ns, "/turn/timing", array(header=header(t_ns), status=[status(
            level=0, name="coop_robot/turn", message=f"turn {k}", hardware_id="",
            values=[kv(key=a, value=b) for a, b in values.items()])]))
    for t_ns in range(T0_NS, end_ns, 1_000_000_000):
        add(t_ns, "/diagnostics", array(header=header(t_ns), status=[status(
            level=0, name="coop_robot: turn timing", message="lab", hardware_id="",
            values=[kv(key="session_policy", value="reactive"), kv(key="session_partner", value="lab")])]))

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(path, version=9, storage_plugin=plugin)
    if zstd:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)   # zstd MCAP chunks
    with writer:
        conns = {name: writer.add_connection(name, typ, typestore=ts) for name, typ in types.items()}
        for name, typ in (extra_topics or {}).items():
            writer.add_connection(name, typ, typestore=ts)
        if not empty:
            for t_ns, _, topic, msg in sorted(msgs, key=lambda m: (m[0], m[1])):
                writer.write(conns[topic], t_ns, ts.serialize_cdr(msg, types[topic]))
    to_ros2_record_layout(path)
    return path


def first_at_or_after(t_s: float, period_ns: int) -> float:
    """The first sample time (s after T0) at or after ``t_s`` on a grid of ``period_ns`` from T0."""
    k = math.ceil(round(t_s * 1e9) / period_ns)
    return k * period_ns * 1e-9

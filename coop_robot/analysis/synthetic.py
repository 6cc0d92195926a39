"""Scripted interaction sessions written as rosbag2 bags with known turn timing (tests, benchmark).

:func:`write_session_bag` writes the package's topics at their live rates -- /joint_states 100 Hz,
/partner/in_zone + /partner/hand + /partner/hand_velocity 30 Hz, /policy/decision +
/policy/exit_forecast 50 Hz, /controller/state and /controller/events, /sim/ground_truth/events
and partner_plan, /turn/timing per turn, /diagnostics 1 Hz -- for a scripted session whose true
timing is returned (:class:`SyntheticTurn`). Log time = header stamp = the (sim) time of the
sample. Partner exits fall on camera frames and robot entries on joint-state samples, so the
perceived gaps equal the ground-truth gaps exactly.

With ``topics`` including :data:`SSM_TOPICS`, also the SSM samples (100 Hz, on the joint-state
grid: :func:`ssm_sample_at`) of ground truth and of the controller (its perceived separation is
:data:`CONTROLLER_SEPARATION_BIAS_M` shorter) and the partner's phase (``reaching`` when the hand
starts moving, ``dwelling``, ``withdrawing``, ``waiting_for_robot`` back at rest, ``reacting``
from the robot's exit); optional scripted SSM violations, protective stops and false starts
during a robot entry (``unfinished_entries``).

``robot_motion="step"`` jumps the arm between home and its in-zone pose (entry known to the
sample); ``"min_jerk"`` moves it with minimum-jerk profiles (entry/exit found by FK on the
100 Hz samples, as the analysis does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coop_robot.control.controller import decision_text
from coop_robot.geometry import minimum_jerk, world_geometry

ZONE = world_geometry().zone
HOME_Q_RAD = np.array(world_geometry().robot_home_joint_positions_rad)
# The arm's in-zone pose (scripted): IK for the EE at [0.60, 0.0, 0.72] (world, m) from the shipped home.
ZONE_Q_RAD = np.array([0.0, 0.512605732, 0.0, -1.98413070, 0.0, 2.44199665, 0.785])
HAND_REST_M = np.array([1.02, 0.15, 0.80])
HAND_EDGE_M = np.array([0.76, 0.06, 0.70])     # just outside the zone (x max 0.75)
HAND_TARGET_M = np.array([0.62, 0.06, 0.70])
JOINT_NAMES = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]

JOINT_PERIOD_NS = 10_000_000
FRAME_PERIOD_NS = 33_333_333
TICK_PERIOD_NS = 20_000_000
REACH_S = 1.2          # min_jerk: home -> in-zone pose
WITHDRAW_S = 1.0       # in-zone pose -> home
HAND_MOVE_S = 0.5      # partner: rest -> zone edge (and back)
DECISION_LEAD_NS = 20_000_000   # the policy says "act" one tick before the controller's reach_start

ALL_TOPICS = (
    "/joint_states", "/partner/in_zone", "/partner/hand", "/partner/hand_velocity", "/policy/decision",
    "/policy/exit_forecast", "/controller/state", "/controller/events", "/sim/ground_truth/events",
    "/sim/ground_truth/partner_plan", "/turn/timing", "/diagnostics",
)
SSM_TOPICS = ("/sim/ground_truth/ssm", "/controller/ssm", "/sim/partner/phase")
PERCEPTION_TOPICS = ("/joint_states", "/partner/in_zone", "/partner/hand", "/partner/hand_velocity")
TYPES = {
    "/joint_states": "sensor_msgs/msg/JointState",
    "/partner/in_zone": "std_msgs/msg/Bool",
    "/partner/hand": "geometry_msgs/msg/PointStamped",
    "/partner/hand_velocity": "geometry_msgs/msg/Vector3Stamped",
    "/policy/decision": "std_msgs/msg/String",
    "/policy/exit_forecast": "std_msgs/msg/Float64",
    "/controller/state": "std_msgs/msg/String",
    "/controller/events": "sensor_msgs/msg/TimeReference",
    "/sim/ground_truth/events": "sensor_msgs/msg/TimeReference",
    "/sim/ground_truth/partner_plan": "sensor_msgs/msg/TimeReference",
    "/turn/timing": "diagnostic_msgs/msg/DiagnosticArray",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "/sim/ground_truth/ssm": "diagnostic_msgs/msg/DiagnosticArray",
    "/controller/ssm": "diagnostic_msgs/msg/DiagnosticArray",
    "/sim/partner/phase": "std_msgs/msg/String",
}
#: Scripted SSM: hand sphere + robot body radius taken off the EE-hand distance (m), S_p (m) at
#: rest and its growth per m/s of robot closing speed (s), the controller's perception bias (m).
SSM_RADII_M = 0.12
SSM_BASE_PROTECTIVE_M = 0.10
SSM_PROTECTIVE_PER_MPS_S = 0.2
CONTROLLER_SEPARATION_BIAS_M = 0.02
VIOLATION_S = 0.03


@dataclass(frozen=True)
class SyntheticTurn:
    """True timing of one scripted turn pair (s, bag clock)."""

    partner_enter_s: float
    partner_exit_s: float
    reach_start_s: float
    decision_s: float
    robot_enter_s: float
    robot_exit_s: float
    robot_home_s: float

    @property
    def gap_s(self) -> float:
        return self.robot_enter_s - self.partner_exit_s


def _grid(t_ns: int, period_ns: int) -> int:
    """Smallest multiple of period_ns >= t_ns."""
    return -(-t_ns // period_ns) * period_ns


def _motion_offsets_ns(robot_motion: str) -> tuple[int, int]:
    """Sample offsets (ns) from reach start to the first in-zone sample and from withdraw start to
    the first out-of-zone sample."""
    if robot_motion == "step":
        return 0, 0
    from coop_robot.control.kinematics import PandaKinematics

    fk = PandaKinematics()
    out = []
    for dur, a, b in ((REACH_S, HOME_Q_RAD, ZONE_Q_RAD), (WITHDRAW_S, ZONE_Q_RAD, HOME_Q_RAD)):
        t = np.arange(0, dur + 1e-9, JOINT_PERIOD_NS * 1e-9)
        s = minimum_jerk(t, dur)[0]
        ee = fk.fk_many(a + s[:, None] * (b - a))
        inside = ZONE.contains_many(ee)
        want = not inside[0]
        k = int(np.argmax(inside == want))
        out.append(k * JOINT_PERIOD_NS)
    return out[0], out[1]


def schedule(duration_s: float | None = None, turns: int | None = None, seed: int = 0, gaps_s=None,
             robot_motion: str = "step", first_enter_s: float = 1.0) -> list[SyntheticTurn]:
    """The scripted turns: partner dwell 0.8-1.4 s, gap ~N(0.45, 0.12) s (or ``gaps_s``), robot
    stay 0.8 s, partner reaction 0.2-0.35 s after the robot is home."""
    if robot_motion not in ("step", "min_jerk"):
        raise ValueError(f"robot_motion must be 'step' or 'min_jerk', got {robot_motion!r}")
    if duration_s is None and turns is None and gaps_s is None:
        raise ValueError("give duration_s, turns or gaps_s")
    rng = np.random.default_rng(seed)
    enter_off, exit_off = _motion_offsets_ns(robot_motion)
    out: list[SyntheticTurn] = []
    pe = _grid(int(first_enter_s * 1e9), FRAME_PERIOD_NS)
    i = 0
    while True:
        if gaps_s is not None and i >= len(gaps_s):
            break
        if turns is not None and i >= turns:
            break
        px = _grid(pe + int(rng.uniform(0.8, 1.4) * 1e9), FRAME_PERIOD_NS)
        gap = gaps_s[i] if gaps_s is not None else float(np.clip(rng.normal(0.45, 0.12), 0.1, 1.0))
        if robot_motion == "step":
            re = _grid(px + int(round(gap * 1e9)), JOINT_PERIOD_NS)
            rs = re - 875_000_000
            wx = rx = re + 800_000_000
            home = rx + 600_000_000
        else:
            rs = _grid(px + int(round(gap * 1e9)) - enter_off, JOINT_PERIOD_NS)
            re = rs + enter_off
            wx = rs + int(REACH_S * 1e9) + 400_000_000       # withdraw starts after a 0.4 s act
            rx = wx + exit_off
            home = wx + int(WITHDRAW_S * 1e9)
        t = SyntheticTurn(pe * 1e-9, px * 1e-9, rs * 1e-9, (rs - DECISION_LEAD_NS) * 1e-9, re * 1e-9, rx * 1e-9,
                          home * 1e-9)
        if duration_s is not None and t.robot_home_s > duration_s:
            break
        out.append(t)
        object.__setattr__(t, "_ns", (pe, px, rs, rs - DECISION_LEAD_NS, re, rx, home, wx))
        pe = _grid(home + int(rng.uniform(0.2, 0.35) * 1e9) + int(HAND_MOVE_S * 1e9), FRAME_PERIOD_NS)
        i += 1
    return out


class _Msgs:
    """Builds and serialises the messages (rosbags type store, ROS 2 Jazzy)."""

    def __init__(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.ts = get_typestore(Stores.ROS2_JAZZY)
        t = self.ts.types
        self.T, self.H = t["builtin_interfaces/msg/Time"], t["std_msgs/msg/Header"]
        self.t = t

    def header(self, t_ns: int, frame_id: str = ""):
        return self.H(stamp=self.T(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000), frame_id=frame_id)

    def ser(self, topic: str, msg) -> bytes:
        return bytes(self.ts.serialize_cdr(msg, TYPES[topic]))

    def time_ref(self, topic: str, t_ns: int, source: str, frame_id: str = "") -> bytes:
        stamp = self.T(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)
        return self.ser(topic, self.t["sensor_msgs/msg/TimeReference"](header=self.header(t_ns, frame_id),
                                                                       time_ref=stamp, source=source))

    def diag(self, topic: str, t_ns: int, name: str, message: str, values: dict, level: int = 0) -> bytes:
        kv = [self.t["diagnostic_msgs/msg/KeyValue"](key=k, value=v) for k, v in values.items()]
        st = self.t["diagnostic_msgs/msg/DiagnosticStatus"](level=level, name=name, message=message, hardware_id="",
                                                            values=kv)
        return self.ser(topic, self.t["diagnostic_msgs/msg/DiagnosticArray"](header=self.header(t_ns), status=[st]))


def write_session_bag(path: str | Path, *, duration_s: float | None = None, turns: int | None = None,
                      gaps_s=None, seed: int = 0, storage: str = "mcap", topics=ALL_TOPICS,
                      robot_motion: str = "step", ros2_layout: bool = False, meta: dict | None = None,
                      progress=None, ssm_violations_s=(), ssm_stops_s=(), unfinished_entries=(),
                      fallback_turns=()) -> list[SyntheticTurn]:
    """Write a scripted session to a new rosbag2 directory ``path``; return its true turns.

    ``storage``: "mcap" or "sqlite3". ``ros2_layout``: name the storage file ``<dir>_0.<ext>`` as
    ``ros2 bag record`` does. ``meta``: policy/partner/seed written into /turn/timing.
    SSM scripting (with :data:`SSM_TOPICS` in ``topics``): ``ssm_violations_s`` -- a violation
    episode (robot approaching inside S_p, :data:`VIOLATION_S` long) starts at each of these times;
    ``ssm_stops_s`` -- (start, end) protective stops (``ssm_stop``/``ssm_resume`` on
    /controller/events, mode ``stop``); ``unfinished_entries`` -- robot turn indices (0-based)
    whose entry falls in a false start of the partner's next turn (phase only; give those turns a
    gap > ``HAND_MOVE_S`` + 0.1 s, so the false start follows the hand's return to rest).
    ``fallback_turns``: robot turn indices (0-based) whose "act" is the policy's liveness fallback
    (``act fallback`` on /policy/decision).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = Path(path)
    turns_list = schedule(duration_s, turns, seed, gaps_s, robot_motion)
    if not turns_list:
        raise ValueError("the scripted session has no complete turn; make it longer")
    meta = {"policy": "reactive", "partner": "synthetic", "seed": str(seed), **(meta or {})}
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    m = _Msgs()
    end_ns = turns_list[-1]._ns[6] + 500_000_000
    if duration_s is not None:
        end_ns = max(end_ns, int(duration_s * 1e9))
    ns = np.array([t._ns for t in turns_list], dtype=np.int64)   # pe px rs dec re rx home wx
    enter_off, exit_off = _motion_offsets_ns(robot_motion)

    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {name: writer.add_connection(name, TYPES[name], typestore=m.ts) for name in topics}
        block_ns = 10_000_000_000
        for b0 in range(0, end_ns, block_ns):
            b1 = min(end_ns, b0 + block_ns)
            msgs: list[tuple[int, int, str, bytes]] = []
            seq = 0

            def add(t_ns: int, topic: str, data_fn, b0=b0, b1=b1, msgs=msgs) -> None:
                nonlocal seq
                if topic in conns and b0 <= t_ns < b1:
                    msgs.append((t_ns, seq, topic, data_fn()))
                    seq += 1

            _joint_block(m, add, ns, b0, b1, robot_motion, enter_off, exit_off)
            _perception_block(m, add, ns, b0, b1)
            _policy_block(m, add, ns, b0, b1, frozenset(fallback_turns))
            _event_block(m, add, ns, b0, b1, turns_list, meta)
            if any(t in conns for t in SSM_TOPICS):
                _ssm_block(m, add, ns, b0, b1, robot_motion, ssm_violations_s, ssm_stops_s, unfinished_entries)
            msgs.sort()
            for t_ns, _, topic, data in msgs:
                writer.write(conns[topic], t_ns, data)
            if progress is not None:
                progress(b1 / end_ns)
    if ros2_layout:
        to_ros2_record_layout(path)
    return turns_list


def _joint_block(m, add, ns, b0, b1, robot_motion, enter_off, exit_off) -> None:
    JS = m.t["sensor_msgs/msg/JointState"]
    t_all = np.arange(_grid(b0, JOINT_PERIOD_NS), b1, JOINT_PERIOD_NS, dtype=np.int64)
    rs, re, rx, wx = ns[:, 2], ns[:, 4], ns[:, 5], ns[:, 7]
    j = np.searchsorted(rs, t_all, side="right") - 1
    zeros = np.zeros(9)
    for t_ns, k in zip(t_all.tolist(), j.tolist()):
        if k < 0:
            s = 0.0
        elif robot_motion == "step":
            s = 1.0 if re[k] <= t_ns < rx[k] else 0.0
        else:
            a = (t_ns - rs[k]) * 1e-9
            w = (t_ns - wx[k]) * 1e-9
            if w >= 0:
                s = 1.0 - float(minimum_jerk(np.array([min(w, WITHDRAW_S)]), WITHDRAW_S)[0][0])
            else:
                s = float(minimum_jerk(np.array([min(a, REACH_S)]), REACH_S)[0][0])
        q = HOME_Q_RAD + s * (ZONE_Q_RAD - HOME_Q_RAD)
        pos = np.concatenate([q, [0.04, 0.04]])
        add(t_ns, "/joint_states", lambda pos=pos, t_ns=t_ns: m.ser("/joint_states", JS(
            header=m.header(t_ns), name=JOINT_NAMES, position=pos, velocity=zeros, effort=zeros)))


def _hand_at(t_ns: int, pe: int, px: int) -> tuple[np.ndarray, np.ndarray, bool]:
    move = int(HAND_MOVE_S * 1e9)
    if pe <= t_ns < px:
        return HAND_TARGET_M, np.zeros(3), True
    if pe - move <= t_ns < pe:
        f = (t_ns - (pe - move)) / move
        return HAND_REST_M + f * (HAND_EDGE_M - HAND_REST_M), (HAND_EDGE_M - HAND_REST_M) / HAND_MOVE_S, False
    if px <= t_ns < px + move:
        f = (t_ns - px) / move
        return HAND_EDGE_M + f * (HAND_REST_M - HAND_EDGE_M), (HAND_REST_M - HAND_EDGE_M) / HAND_MOVE_S, False
    return HAND_REST_M, np.zeros(3), False


def _perception_block(m, add, ns, b0, b1) -> None:
    t = m.t
    pe = ns[:, 0]
    for t_ns in range(_grid(b0, FRAME_PERIOD_NS), b1, FRAME_PERIOD_NS):
        k = int(np.searchsorted(pe, t_ns + int(HAND_MOVE_S * 1e9), side="right")) - 1
        if k >= 0:
            hand, vel, inside = _hand_at(t_ns, int(ns[k, 0]), int(ns[k, 1]))
        else:
            hand, vel, inside = HAND_REST_M, np.zeros(3), False
        add(t_ns, "/partner/in_zone", lambda v=inside: m.ser("/partner/in_zone", t["std_msgs/msg/Bool"](data=v)))
        add(t_ns, "/partner/hand", lambda h=hand, t_ns=t_ns: m.ser("/partner/hand", t["geometry_msgs/msg/PointStamped"](
            header=m.header(t_ns, "world"), point=t["geometry_msgs/msg/Point"](x=h[0], y=h[1], z=h[2]))))
        add(t_ns, "/partner/hand_velocity", lambda v=vel, t_ns=t_ns: m.ser("/partner/hand_velocity",
            t["geometry_msgs/msg/Vector3Stamped"](header=m.header(t_ns, "world"),
                                                  vector=t["geometry_msgs/msg/Vector3"](x=v[0], y=v[1], z=v[2]))))


def _policy_block(m, add, ns, b0, b1, fallback_turns=frozenset()) -> None:
    t = m.t
    dec, rx, pe, px = ns[:, 3], ns[:, 5], ns[:, 0], ns[:, 1]
    for t_ns in range(_grid(b0, TICK_PERIOD_NS), b1, TICK_PERIOD_NS):
        k = int(np.searchsorted(dec, t_ns, side="right")) - 1
        action = "act" if k >= 0 and t_ns < rx[k] else "wait"
        if action == "act" and k in fallback_turns:
            action = decision_text("act", fallback=True)
        j = int(np.searchsorted(pe, t_ns, side="right")) - 1
        forecast = (px[j] - t_ns) * 1e-9 if j >= 0 and t_ns < px[j] else math.nan
        add(t_ns, "/policy/decision", lambda a=action: m.ser("/policy/decision", t["std_msgs/msg/String"](data=a)))
        add(t_ns, "/policy/exit_forecast",
            lambda f=forecast: m.ser("/policy/exit_forecast", t["std_msgs/msg/Float64"](data=f)))


def _event_block(m, add, ns, b0, b1, turns_list, meta) -> None:
    t = m.t
    if b0 == 0:
        add(0, "/controller/state", lambda: m.ser("/controller/state", t["std_msgs/msg/String"](data="home")))
    gt, ce, pp = "/sim/ground_truth/events", "/controller/events", "/sim/ground_truth/partner_plan"
    for i, row in enumerate(ns.tolist()):
        pe, px, rs, dec, re, rx, home, wx = row
        if not (b0 - 20_000_000_000 <= pe < b1 + 20_000_000_000):
            continue
        plan_t = pe - int(HAND_MOVE_S * 1e9)
        add(plan_t, pp, lambda px=px, plan_t=plan_t: _plan(m, pp, plan_t, px, "planned_exit"))
        for when, name in ((pe, "partner_enter"), (px, "partner_exit"), (re, "robot_enter"), (rx, "robot_exit")):
            add(when, gt, lambda when=when, name=name: m.time_ref(gt, when, name, "ground_truth"))
        for when, name in ((rs, "reach_start"), (re - 100_000_000, "entry_commit"), (re, "act_start"),
                           (wx, "withdraw_start"), (home, "home")):
            add(when, ce, lambda when=when, name=name: m.time_ref(ce, when, name))
        for when, state in ((rs, "reaching"), (re, "acting"), (wx, "withdrawing"), (home, "home")):
            add(when, "/controller/state", lambda s=state: m.ser("/controller/state", t["std_msgs/msg/String"](data=s)))
        rec = turns_list[i]
        values = {
            "turn": str(i + 1),
            "partner_exit_s": repr(rec.partner_exit_s),
            "robot_enter_s": repr(rec.robot_enter_s),
            "robot_exit_s": repr(rec.robot_exit_s),
            "gap_s": repr(rec.robot_enter_s - rec.partner_exit_s),
            "overlap_s": repr(0.0),
            "response_latency_s": repr(rec.reach_start_s - rec.partner_exit_s),
            "contact": "False",
            "scored_on": "ground_truth",
            **meta,
        }
        tt = rx + 350_000_000
        add(
            tt,
            "/turn/timing",
            lambda tt=tt, v=values, i=i: m.diag("/turn/timing", tt, "coop_robot/turn", f"turn {i + 1}", v),
        )
    for sec in range(-(-b0 // 1_000_000_000), -(-b1 // 1_000_000_000)):
        t_ns = sec * 1_000_000_000
        done = int(np.searchsorted(ns[:, 5], t_ns))
        add(
            t_ns,
            "/diagnostics",
            lambda t_ns=t_ns, d=done: m.diag(
                "/diagnostics", t_ns, "coop_robot: turn timing", f"{d} turns", {"turns_total": str(d)}
            ),
        )


def _ee_ends_m() -> tuple[np.ndarray, np.ndarray]:
    from coop_robot.control.kinematics import PandaKinematics

    fk = PandaKinematics()
    ee = fk.fk_many(np.vstack([HOME_Q_RAD, ZONE_Q_RAD]))
    return ee[0], ee[1]


def _robot_fraction(t_ns: int, ns, robot_motion: str) -> float:
    """The scripted arm's path fraction home (0) -> in-zone pose (1) at ``t_ns``, as /joint_states has it."""
    rs, re, rx, wx = ns[:, 2], ns[:, 4], ns[:, 5], ns[:, 7]
    k = int(np.searchsorted(rs, t_ns, side="right")) - 1
    if k < 0:
        return 0.0
    if robot_motion == "step":
        return 1.0 if re[k] <= t_ns < rx[k] else 0.0
    a, w = (t_ns - rs[k]) * 1e-9, (t_ns - wx[k]) * 1e-9
    if w >= 0:
        return 1.0 - float(minimum_jerk(np.array([min(w, WITHDRAW_S)]), WITHDRAW_S)[0][0])
    return float(minimum_jerk(np.array([min(a, REACH_S)]), REACH_S)[0][0])


def ssm_sample_at(t_ns: int, ns, robot_motion: str = "step", ssm_violations_s=(), ssm_stops_s=(), ends=None):
    """The scripted ground-truth SSM sample at ``t_ns`` (an :class:`~coop_robot.timing.ssm_sample.SsmSample`):
    separation = EE-hand distance - :data:`SSM_RADII_M` (the EE moves on the straight line between
    its home and in-zone positions with the arm's path fraction), closing speeds by finite
    difference over one joint-state period (the robot's 0 with ``step`` motion), S_p = base +
    per-m/s x robot closing speed."""
    from coop_robot.timing.ssm_sample import SsmSample

    home_ee, zone_ee = ends if ends is not None else _ee_ends_m()
    dt_ns = JOINT_PERIOD_NS

    def hand(t):
        k = int(np.searchsorted(ns[:, 0], t + int(HAND_MOVE_S * 1e9), side="right")) - 1
        return _hand_at(t, int(ns[k, 0]), int(ns[k, 1]))[0] if k >= 0 else HAND_REST_M

    def ee(t):
        return home_ee + _robot_fraction(t, ns, robot_motion) * (zone_ee - home_ee)

    h, e = hand(t_ns), ee(t_ns)
    sep = float(np.linalg.norm(h - e)) - SSM_RADII_M
    robot_closing = 0.0   # robot_motion "step": the arm jumps, it has no speed
    if robot_motion != "step":
        robot_closing = (float(np.linalg.norm(h - ee(t_ns - dt_ns))) - SSM_RADII_M - sep) / (dt_ns * 1e-9)
    human_closing = (float(np.linalg.norm(hand(t_ns - dt_ns) - e)) - SSM_RADII_M - sep) / (dt_ns * 1e-9)
    protective = SSM_BASE_PROTECTIVE_M + SSM_PROTECTIVE_PER_MPS_S * max(robot_closing, 0.0)
    t_s = t_ns * 1e-9
    if any(tv <= t_s < tv + VIOLATION_S for tv in ssm_violations_s):
        protective, robot_closing = sep + 0.05, max(robot_closing, 0.2)
    stopped = any(a <= t_s < b for a, b in ssm_stops_s)
    return SsmSample(t_s, sep, protective, robot_closing, human_closing, 0.0 if stopped else 1.0,
                     "stop" if stopped else "free")


def _ssm_block(m, add, ns, b0, b1, robot_motion, violations_s, stops_s, unfinished) -> None:
    t = m.t
    ends = _ee_ends_m()
    for t_ns in range(_grid(b0, JOINT_PERIOD_NS), b1, JOINT_PERIOD_NS):
        gt = ssm_sample_at(t_ns, ns, robot_motion, violations_s, stops_s, ends)
        seen = gt._replace(separation_m=gt.separation_m - CONTROLLER_SEPARATION_BIAS_M)
        for topic, smp in (("/sim/ground_truth/ssm", gt), ("/controller/ssm", seen)):
            add(t_ns, topic, lambda topic=topic, smp=smp, t_ns=t_ns: m.diag(
                topic, t_ns, "ssm", smp.mode, dict(smp.to_key_values())))
    for a, b in stops_s:
        for when_s, name in ((a, "ssm_stop"), (b, "ssm_resume")):
            when = int(round(when_s * 1e9))
            add(when, "/controller/events", lambda when=when, name=name: m.time_ref("/controller/events", when, name))
    phases = [(0, "initial_wait")]
    move = int(HAND_MOVE_S * 1e9)
    for i, (pe, px, rx) in enumerate(ns[:, [0, 1, 5]].tolist()):
        if i - 1 in unfinished:   # the previous robot entry fell in this turn's false start
            re_prev = int(ns[i - 1, 4])
            phases += [(re_prev - 100_000_000, "false_start_reach"), (re_prev + 100_000_000, "false_start_return"),
                       (re_prev + 300_000_000, "false_start_pause")]
        phases += [(pe - move, "reaching"), (pe, "dwelling"), (px, "withdrawing"), (px + move, "waiting_for_robot")]
        if i + 1 < len(ns) and i not in unfinished:
            phases.append((rx, "reacting"))
    for when, phase in sorted(phases):
        add(when, "/sim/partner/phase", lambda p=phase: m.ser("/sim/partner/phase", t["std_msgs/msg/String"](data=p)))


def _plan(m, topic, t_ns, when_ns, source) -> bytes:
    stamp = m.T(sec=when_ns // 1_000_000_000, nanosec=when_ns % 1_000_000_000)
    return m.ser(topic, m.t["sensor_msgs/msg/TimeReference"](header=m.header(t_ns), time_ref=stamp, source=source))


def to_ros2_record_layout(path: Path) -> None:
    """Rename ``<dir>/<dir>.<ext>`` to ``<dir>/<dir>_0.<ext>`` and fix metadata.yaml, as ``ros2 bag record``
    names its storage files (for bags written by another writer, e.g. rosbags')."""
    import yaml

    meta_path = path / "metadata.yaml"
    doc = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    info = doc["rosbag2_bagfile_information"]
    renames = {}
    for name in info["relative_file_paths"]:
        p = Path(name)
        new = f"{p.stem}_0{p.suffix}"
        (path / p.name).rename(path / new)
        renames[name] = new
    info["relative_file_paths"] = [renames[n] for n in info["relative_file_paths"]]
    for f in info.get("files", []):
        f["path"] = renames.get(f["path"], f["path"])
    meta_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")

"""ArmController state machine, driven by scripted inputs at 100 Hz (no ROS).

The "arm" follows the commanded trajectory exactly, optionally with a measurement lag, so the
tests can check what the controller commands against where the end effector would go.
"""

from dataclasses import dataclass, field

import numpy as np
import pytest

from coop_robot.control.controller import (
    ArmController,
    ControllerConfig,
    ControllerInputs,
    ControllerOutput,
    TrajectoryCommand,
    decision_text,
    parse_decision_text,
)
from coop_robot.control.kinematics import IKError
from coop_robot.control.ssm import body_to_box, robot_capsules
from coop_robot.geometry import Zone, world_geometry

DT_S = 0.01
#: Where the perceived hand is unless a test says otherwise (separation monitoring needs a hand).
PARTNER_REST_M = np.array(world_geometry().partner_rest_m)
PARTNER_IN_ZONE_M = np.array([0.70, 0.10, 0.80])
#: The direct reach and its zone guard. With anticipation on, "act" while the partner is inside
#: would start an approach to the staging pose after every abort; test_anticipation.py covers that.
#: The state machine's tests see a resting hand through ISO/TS 15066's plain S_h (no acceleration
#: allowance, under which the reach slows near the resting hand); test_ssm.py covers the allowance.
#: The scripted hand jumps between two points (no motion to fit): its velocity is the one scripted
#: (tracker; the fitted motion's tests are in test_ssm.py).
CONFIG = ControllerConfig(anticipation=False, ssm_human_acceleration_mps2=0.0, ssm_hand_motion="tracker")


@pytest.fixture(scope="module")
def base_controller():
    return ArmController(CONFIG)


@pytest.fixture
def ctl(base_controller):
    base_controller.reset()
    return base_controller


@dataclass
class Command:
    t_s: float
    partner_in_zone: bool | None
    trajectory: TrajectoryCommand


@dataclass
class Record:
    commands: list = field(default_factory=list)
    events: list = field(default_factory=list)
    states: list = field(default_factory=list)           # (t, state) per tick
    commanded_ee: list = field(default_factory=list)     # (t, EE of the commanded state) per tick

    def names(self, ssm: bool = False):
        """Event names; separation-monitoring events (test_ssm.py covers them) only if asked."""
        return [name for name, _ in self.events if ssm or not name.startswith("ssm_")]

    def time_of(self, name):
        return next(t for n, t in self.events if n == name)


def run(ctl: ArmController, script, t_end_s: float, t0_s: float = 0.0, lag_ticks: int = 0,
        record: Record | None = None, initial_joints=None) -> Record:
    """Tick ``ctl`` from ``t0_s`` to ``t_end_s``; ``script(t)`` returns a dict of inputs:
    decision, partner_in_zone, fresh (perception stamp = t when True, else unchanged), estop,
    hand / velocity (perceived hand position and velocity, default unknown), fallback (the "act"
    is the policy's liveness fallback's).

    Measured joints are the commanded ones ``lag_ticks`` ago (``initial_joints`` before that)."""
    record = record or Record()
    history = []
    stamp = None
    for t in np.arange(t0_s, t_end_s, DT_S):
        step = {"decision": "act", "partner_in_zone": False, "fresh": True, "estop": False, "hand": "auto",
                "velocity": None, "fallback": False, **script(t)}
        if isinstance(step["hand"], str):  # perception reports where the hand is: at rest, or in the zone
            step["hand"] = PARTNER_IN_ZONE_M if step["partner_in_zone"] else PARTNER_REST_M
            step["velocity"] = np.zeros(3) if step["velocity"] is None else step["velocity"]
        if step["fresh"]:
            stamp = t
        measured = history[-1 - lag_ticks] if len(history) > lag_ticks else initial_joints
        inputs = ControllerInputs(step["decision"], step["partner_in_zone"], stamp, measured, step["estop"],
                                  partner_hand_m=step["hand"], partner_velocity_mps=step["velocity"],
                                  decision_fallback=step["fallback"])
        out: ControllerOutput = ctl.update(t, inputs)
        if out.trajectory is not None:
            record.commands.append(Command(t, step["partner_in_zone"], out.trajectory))
        record.events.extend(out.events)
        record.states.append((t, out.state))
        q, _, _ = ctl.commanded_state(t)
        history.append(q)
        record.commanded_ee.append((t, ctl.kinematics.fk(q)))
    return record


def plan_ee(ctl, command: TrajectoryCommand, step_s=0.005):
    plan = command.plan
    q, _, _ = plan.state_at(np.append(np.arange(0.0, plan.duration_s, step_s), plan.duration_s))
    return ctl.kinematics.fk_many(q)


def assert_within_limits(ctl, command: TrajectoryCommand, velocity_scale: float | None = None):
    """Sampled points and the dense plan stay within position and velocity limits."""
    lim = ctl.limits
    pts_q = np.array([p.positions for p in command.points])
    pts_v = np.array([p.velocities for p in command.points])
    times = np.array([p.time_from_start_s for p in command.points])
    assert list(command.joint_names) == list(CONFIG.joint_names)
    assert times[0] > 0.0 and np.all(np.diff(times) > 0.0)
    q, v, _ = command.plan.state_at(np.linspace(0.0, command.plan.duration_s, 2000))
    for positions in (pts_q, q):
        assert np.all(positions >= lim.lower_rad) and np.all(positions <= lim.upper_rad)
    vmax = lim.velocity_rad_s * (1.0 if velocity_scale is None else velocity_scale) * (1 + 1e-6)
    for velocities in (pts_v, v):
        assert np.all(np.abs(velocities) <= vmax)
    assert np.allclose(command.points[-1].velocities, 0.0, atol=1e-6)  # every command ends at rest


def ee_ever_inside(ctl, record: Record) -> bool:
    return bool(CONFIG.zone.contains_many(np.array([p for _, p in record.commanded_ee])).any())


def always(**inputs):
    return lambda t: inputs


# ----------------------------------------------------------------------------- nominal turn
def test_full_turn_emits_reach_act_withdraw_home_in_order(ctl):
    rec = run(ctl, lambda t: {"decision": "act" if t < 2.0 else "wait"}, 6.0)
    assert rec.names() == ["reach_start", "entry_commit", "act_start", "withdraw_start", "home"]
    # The reach goes out gated (it would stop before the zone), then on at the commit.
    assert [c.trajectory.purpose for c in rec.commands] == ["reach", "reach", "withdraw"]
    assert rec.commands[0].trajectory.plan.stops_on_path and not rec.commands[1].trajectory.plan.stops_on_path
    for c in rec.commands:
        assert_within_limits(ctl, c.trajectory, CONFIG.velocity_scale)
    assert rec.time_of("withdraw_start") - rec.time_of("act_start") == pytest.approx(CONFIG.act_duration_s, abs=DT_S)
    assert rec.time_of("reach_start") < rec.time_of("entry_commit") < rec.time_of("act_start")
    # The turn really takes place: the EE reaches the target inside the zone and returns home.
    assert np.linalg.norm(rec.commands[1].trajectory.plan.goal_rad - ctl.target_rad) < 1e-9
    assert ee_ever_inside(ctl, rec)
    assert np.allclose(rec.commands[-1].trajectory.plan.goal_rad, CONFIG.home_rad)
    assert rec.states[-1][1] == "home"


def test_nominal_reach_enters_the_zone_after_the_commit_time(ctl):
    assert ctl.config.zone.contains(ctl.target_ee_m) and not ctl.config.zone.contains(ctl.home_ee_m)
    assert 0.0 < ctl.nominal_commit_s < ctl.nominal_entry_s < ctl.nominal_reach.duration_s


def test_reach_starts_from_the_measured_joint_positions(ctl):
    offset = np.array([0.01, -0.01, 0.0, 0.01, 0.0, 0.0, 0.0])
    measured = np.asarray(CONFIG.home_rad) + offset
    out = ctl.update(0.0, ControllerInputs("act", False, 0.0, measured))
    assert out.state == "reaching"
    assert np.allclose(out.trajectory.plan.start_rad, measured)
    assert 0.0 < ctl.commit_time_s < ctl.nominal_entry_s


# ----------------------------------------------------------------------------- zone guard
def test_never_starts_a_reach_while_the_partner_is_unknown(ctl):
    rec = run(ctl, always(decision="act", partner_in_zone=None), 3.0)
    assert rec.commands == [] and rec.events == []
    assert {s for _, s in rec.states} == {"home"}


def test_never_starts_a_reach_while_the_partner_is_inside_without_anticipation(ctl):
    rec = run(ctl, always(decision="act", partner_in_zone=True), 3.0)
    assert rec.commands == [] and rec.events == []
    assert {s for _, s in rec.states} == {"home"}


def test_act_while_the_partner_is_inside_stops_at_the_waiting_point():
    # Anticipation (on by default; test_anticipation.py covers it): the arm moves, never into the zone,
    # and comes to rest where its body keeps the waiting clearance from the whole zone.
    ctl = ArmController(ControllerConfig())
    rec = run(ctl, always(decision="act", partner_in_zone=True), 2.5)
    assert rec.names() == ["reach_start"]
    # One command: the reach's path, played only as far as the waiting point.
    assert [c.trajectory.purpose for c in rec.commands] == ["reach"]
    assert rec.commands[0].trajectory.plan.stops_on_path
    assert not ee_ever_inside(ctl, rec)
    q_end, qd_end, _ = ctl.commanded_state(2.5)
    assert np.allclose(qd_end, 0.0)
    body = robot_capsules(ctl.kinematics.joint_frames(q_end))
    assert body_to_box(body, CONFIG.zone.min_m, CONFIG.zone.max_m) >= ctl.waiting_clearance_m - 1e-3


@pytest.mark.parametrize("lag_ticks", [0, 2])
@pytest.mark.parametrize("enter_after_s", [0.05, 0.2, 0.35, 0.5, "commit"])
def test_partner_entering_before_commit_aborts_and_the_ee_stays_out(ctl, enter_after_s, lag_ticks):
    # The last tick before the commit time is the hardest case.
    if enter_after_s == "commit":
        enter_after_s = np.floor(ctl.nominal_commit_s / DT_S - 1e-6) * DT_S
    rec = run(ctl, lambda t: {"partner_in_zone": t >= enter_after_s - 1e-9}, 5.0, lag_ticks=lag_ticks)
    assert rec.names() == ["reach_start", "abort", "home"]
    assert rec.time_of("abort") == pytest.approx(enter_after_s, abs=1e-6)
    purposes = [c.trajectory.purpose for c in rec.commands]
    # The retreat's first stretch still closes in on the hand: separation monitoring may slow it.
    assert purposes[:2] == ["reach", "retreat"] and set(purposes[2:]) <= {"retreat"}
    for c in rec.commands:
        assert_within_limits(ctl, c.trajectory)
        if c.partner_in_zone is None or c.partner_in_zone:
            # Commanded while the partner was perceived inside: the EE must stay out, with margin.
            assert not CONFIG.zone.contains_many(plan_ee(ctl, c.trajectory), CONFIG.commit_margin_m).any()
    assert not ee_ever_inside(ctl, rec)
    assert rec.states[-1][1] == "home"


@pytest.mark.parametrize("offset_rad", [0.0015, 0.02])
def test_abort_at_the_last_moment_is_safe_from_a_start_off_home(ctl, offset_rad):
    # Small offsets reuse the nominal commit time; larger ones compute their own.
    start = np.asarray(CONFIG.home_rad) + offset_rad * np.array([1.0, 1.0, -1.0, 1.0, 1.0, -1.0, 0.0])
    first = ctl.update(0.0, ControllerInputs("act", False, 0.0, start))
    commit = ctl.commit_time_s
    ctl.reset()
    enter_s = np.floor(commit / DT_S - 1e-6) * DT_S
    rec = run(ctl, lambda t: {"partner_in_zone": t >= enter_s - 1e-9}, 4.0, initial_joints=start)
    assert np.allclose(first.trajectory.plan.start_rad, start)
    assert rec.names() == ["reach_start", "abort", "home"]
    retreat = rec.commands[1].trajectory
    assert not CONFIG.zone.contains_many(plan_ee(ctl, retreat), CONFIG.commit_margin_m).any()
    assert not ee_ever_inside(ctl, rec)


@pytest.mark.parametrize("decision", ["wait", "yield", None])
def test_policy_changing_its_mind_before_commit_aborts(ctl, decision):
    rec = run(ctl, lambda t: {"decision": "act" if t < 0.3 else decision}, 4.0)
    assert rec.names() == ["reach_start", "abort", "home"]
    assert not ee_ever_inside(ctl, rec)


def test_partner_entering_after_commit_makes_the_arm_withdraw_without_acting(ctl):
    enter_s = ctl.nominal_commit_s + 0.1
    rec = run(ctl, lambda t: {"partner_in_zone": t >= enter_s}, 5.0)
    assert rec.names() == ["reach_start", "entry_commit", "withdraw_start", "home"]
    assert rec.time_of("entry_commit") <= enter_s
    assert rec.time_of("withdraw_start") == pytest.approx(enter_s, abs=DT_S)
    for c in rec.commands:
        assert_within_limits(ctl, c.trajectory)


def test_partner_entering_while_acting_withdraws_at_once(ctl):
    rec = run(ctl, lambda t: {}, ctl.nominal_reach.duration_s + 0.05)  # through the reach into acting
    assert rec.names()[-1] == "act_start"
    t_in = rec.states[-1][0] + DT_S
    rec = run(ctl, always(partner_in_zone=True), 5.0, t0_s=t_in, record=rec)
    assert rec.time_of("withdraw_start") == pytest.approx(t_in, abs=1e-6)
    assert rec.names()[-1] == "home"


# ----------------------------------------------------------------------------- watchdog
def test_stale_perception_during_a_reach_triggers_the_watchdog_and_a_retreat(ctl):
    stale_from_s = 0.05  # the watchdog then fires before the commit time
    rec = run(ctl, lambda t: {"fresh": t < stale_from_s, "decision": "act" if t < 1.0 else "wait"}, 4.0)
    assert rec.names() == ["reach_start", "watchdog", "abort", "home"]
    last_stamp = stale_from_s - DT_S
    assert rec.time_of("watchdog") == pytest.approx(last_stamp + CONFIG.perception_timeout_s, abs=1.5 * DT_S)
    assert rec.time_of("watchdog") < ctl.nominal_commit_s
    assert not ee_ever_inside(ctl, rec)


def test_stale_perception_after_commit_withdraws_from_the_zone(ctl):
    # Seen again at 3 s: the withdrawal may wait for that where it would close in on the unseen hand.
    rec = run(ctl, lambda t: {"fresh": t < ctl.nominal_commit_s + 0.05 or t >= 3.0,
                              "decision": "act" if t < 1.0 else "wait"}, 6.0)
    assert rec.names() == ["reach_start", "entry_commit", "watchdog", "withdraw_start", "home"]


def test_stale_perception_while_acting_withdraws_only_away_from_the_unseen_partner():
    # Perception lost while acting: the watchdog withdraws, but the partner may now be anywhere within
    # 1.6 m/s x the time since it was seen; the first stretch of the withdrawal moves slightly toward
    # where the hand was, so separation monitoring stops the arm until the partner is seen again.
    ctl = ArmController(ControllerConfig(act_duration_s=3.0, ssm_human_acceleration_mps2=0.0))  # as CONFIG
    seen_again_s = 4.5
    rec = run(ctl, lambda t: {"fresh": t < 2.0 or t >= seen_again_s, "decision": "act" if t < 3.0 else "wait"}, 8.5)
    assert rec.names() == ["reach_start", "entry_commit", "act_start", "watchdog", "withdraw_start", "home"]
    assert rec.time_of("watchdog") < rec.time_of("act_start") + 3.0
    assert rec.names(ssm=True).count("ssm_stop") >= 1
    stop_s = rec.time_of("ssm_stop")
    assert rec.time_of("withdraw_start") <= stop_s < seen_again_s < rec.time_of("home")


def test_holding_at_home_while_stale_then_reaching_once_fresh(ctl):
    rec = run(ctl, always(fresh=False), CONFIG.startup_grace_s + 1.0)
    assert rec.commands == [] and rec.states[-1][1] == "holding"
    assert rec.states[0] == (0.0, "home")  # not holding during the start-up grace
    rec = run(ctl, always(), CONFIG.startup_grace_s + 1.2, t0_s=CONFIG.startup_grace_s + 1.0, record=rec)
    assert rec.names() == ["reach_start"]


# ----------------------------------------------------------------------------- e-stop
def test_estop_during_motion_brakes_within_limits_and_ignores_act_until_released(ctl):
    estop_s, release_s = 0.9, 3.0
    rec = run(ctl, lambda t: {"estop": estop_s <= t < release_s, "decision": "act" if t < release_s else "wait"}, 8.0)
    assert rec.names() == ["reach_start", "entry_commit", "estop", "estop_release", "withdraw_start", "home"]
    assert rec.time_of("estop") == pytest.approx(estop_s, abs=1e-6)
    commands = [c for i, c in enumerate(rec.commands)
                if i == 0 or c.trajectory.purpose != rec.commands[i - 1].trajectory.purpose]  # speed changes out
    purposes = [c.trajectory.purpose for c in commands]
    assert purposes == ["reach", "brake", "home"]
    brake = commands[1]
    assert brake.t_s == pytest.approx(estop_s, abs=1e-6)
    assert_within_limits(ctl, brake.trajectory)
    assert brake.trajectory.plan.duration_s <= 0.5
    _, v, _ = brake.trajectory.plan.state_at(np.linspace(0.0, brake.trajectory.plan.duration_s, 500))
    # Slows down: never faster than at the start (up to what the start acceleration adds, ~1e-4 rad/s).
    assert np.all(np.abs(v) <= np.abs(v[0]) + 1e-3)
    assert np.allclose(v[-1], 0.0)
    # No new motion while stopped, despite "act" on every tick.
    states_while_stopped = {s for t, s in rec.states if estop_s <= t < release_s}
    assert states_while_stopped == {"estop"}
    # Release: withdraw home at half speed, then home.
    assert rec.time_of("estop_release") == pytest.approx(release_s, abs=1e-6)
    home_cmd = commands[2]
    assert home_cmd.t_s == pytest.approx(release_s, abs=1e-6)
    assert_within_limits(ctl, home_cmd.trajectory, 0.5 * CONFIG.velocity_scale)
    assert rec.states[-1][1] == "home"


def test_a_reach_the_arm_does_not_follow_is_given_up_without_acting(ctl):
    # The arm stays at home whatever is commanded (lost command, blocked arm): as soon as the
    # commanded state is tracking_tolerance_rad away from it, the arm is brought to rest where it
    # is and, the policy still saying "act", the reach is taken up again from there -- twice; the
    # third time it is aborted. Never acted.
    from coop_robot.control.controller import _MAX_REACH_RESUMES

    home = np.asarray(CONFIG.home_rad)
    rec, resumed = Record(), []
    for t in np.arange(0.0, 4.5, DT_S):
        out = ctl.update(t, ControllerInputs("act" if t < 3.0 else "wait", False, t, home,
                                             partner_hand_m=PARTNER_REST_M, partner_velocity_mps=np.zeros(3)))
        rec.events.extend(out.events)
        resumed += [t for w in out.warnings if "taking the reach up again" in w]
        if out.warnings:
            rec.states.append((t, out.warnings[0]))
    names = rec.names()
    assert names[:3] == ["reach_start", "abort", "home"]
    assert "act_start" not in names and "entry_commit" not in names
    assert len(resumed) == _MAX_REACH_RESUMES and max(resumed) < rec.time_of("abort")   # tried again first
    assert rec.time_of("abort") < 2.0 * ctl.nominal_reach.duration_s
    assert "not following its commands" in rec.states[0][1]


def test_estop_at_rest_holds_position(ctl):
    rec = run(ctl, always(estop=True), 0.5)
    assert rec.names() == ["estop"]
    assert np.allclose(rec.commands[0].trajectory.plan.goal_rad, CONFIG.home_rad)


# ----------------------------------------------------------------------------- start-up, config
def test_an_arm_found_away_from_home_is_driven_home_slowly(ctl):
    away = np.asarray(CONFIG.home_rad) + np.array([0.3, 0.1, 0.0, 0.2, 0.0, 0.0, 0.0])
    out = ctl.update(0.0, ControllerInputs("act", False, 0.0, away))
    assert out.state == "withdrawing" and out.trajectory.purpose == "home"
    assert np.allclose(out.trajectory.plan.start_rad, away)
    assert_within_limits(ctl, out.trajectory, 0.5 * CONFIG.velocity_scale)


def test_unknown_decision_is_rejected(ctl):
    with pytest.raises(ValueError, match="decision"):
        ctl.update(0.0, ControllerInputs("go", False, 0.0))


@pytest.mark.parametrize("kwargs, match", [
    ({"velocity_scale": 0.0}, "velocity_scale"),
    ({"velocity_scale": 1.5}, "velocity_scale"),
    ({"perception_timeout_s": 0.0}, "perception_timeout_s"),
    ({"joint_names": ("a", "b")}, "joint_names"),
    ({"target_m": (0.2, 0.5, 0.7)}, "target_m"),
])
def test_invalid_configuration_is_rejected_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ArmController(ControllerConfig(**kwargs))


def test_home_inside_the_zone_is_rejected():
    zone = Zone((0.3, -0.2, 1.0), (0.6, 0.2, 1.4))  # contains the home EE (0.43, 0, 1.27)
    with pytest.raises(ValueError, match="home EE"):
        ArmController(ControllerConfig(zone=zone, target_m=(0.5, 0.0, 1.1)))


def test_home_within_the_waiting_clearance_is_rejected():
    # The home pose is where the arm waits: its body must keep S_p for a hand anywhere in the zone.
    zone = Zone((0.45, -0.2, 0.626), (0.75, 0.2, 1.1))
    with pytest.raises(ValueError, match="waiting clearance"):
        ArmController(ControllerConfig(zone=zone))


def test_unreachable_target_is_rejected():
    zone = Zone((1.5, -0.2, 0.6), (1.8, 0.2, 0.9))
    with pytest.raises(IKError, match="target_m"):
        ArmController(ControllerConfig(zone=zone, target_m=(1.6, 0.0, 0.7)))


# ----------------------------------------------------------------------------- unknown = worst case
def test_fresh_perception_without_a_hand_is_not_an_empty_zone(ctl):
    """Issue 11 (1): a blind camera keeps stamps fresh and the in-zone flag at 'outside'; the hand,
    last seen at rest 0.27 m from the zone, could be in it 0.17 s later, so no reach starts then."""
    nan3 = np.full(3, np.nan)
    rec = run(ctl, lambda t: {"decision": "wait" if t < 0.8 else "act", "partner_in_zone": False,
                              "hand": PARTNER_REST_M if t < 0.5 else nan3, "velocity": np.zeros(3)}, 2.0)
    assert rec.commands == [] and rec.events == []
    # Seen again outside: the reach starts.
    rec = run(ctl, always(decision="act", partner_in_zone=False), 2.3, t0_s=2.0)
    assert rec.names()[:1] == ["reach_start"]


def test_a_hand_lost_during_the_reach_aborts_it_before_the_commit_point(ctl):
    nan3 = np.full(3, np.nan)
    rec = run(ctl, lambda t: {"partner_in_zone": False, "hand": PARTNER_REST_M if t < 0.3 else nan3,
                              "velocity": np.zeros(3)}, 3.0)
    assert rec.names()[:2] == ["reach_start", "abort"]
    assert not ee_ever_inside(ctl, rec)


def test_perception_stamped_in_the_future_is_not_perception(ctl):
    """Issue 11 (3): a frame stamped 0.9 s ahead must not look fresh (the node also drops it)."""
    rec = Record()
    for t in np.arange(0.0, 3.0, DT_S):
        out = ctl.update(t, ControllerInputs("act", False, t + 0.9, None, partner_hand_m=PARTNER_REST_M,
                                             partner_velocity_mps=np.zeros(3)))
        rec.events.extend(out.events)
        rec.states.append((t, out.state))
    assert rec.events == [] and rec.states[-1][1] == "holding"  # no perception after the start-up grace


# ----------------------------------------------------------------------------- silence and late ticks
def executed_ee(ctl, rec: Record, t_end_s: float, step_s: float = 0.005) -> np.ndarray:
    """EE positions along what the arm executes: each command's plan from when it was sent until
    the next one (an arm that follows its trajectory exactly), the last one to ``t_end_s``."""
    points = []
    for i, cmd in enumerate(rec.commands):
        if cmd.t_s >= t_end_s:
            break
        until = min(rec.commands[i + 1].t_s if i + 1 < len(rec.commands) else t_end_s, t_end_s)
        t = np.arange(0.0, max(until - cmd.t_s, step_s), step_s)
        q, _, _ = cmd.trajectory.plan.state_at(t)
        points.append(ctl.kinematics.fk_many(q))
    return np.concatenate(points)


def test_a_controller_that_falls_silent_mid_reach_leaves_the_arm_outside_the_zone(ctl):
    """Issue 11 (2): until the entry is committed the reach sent to the arm ends at rest before the
    zone (its gate), so a dead controller, a lost command or a late tick never carries it in."""
    rec = run(ctl, always(), 0.5)  # then nothing more is ever sent
    assert rec.names() == ["reach_start"]
    last = rec.commands[-1].trajectory.plan
    assert last.stops_on_path
    ee = executed_ee(ctl, rec, 0.5 + last.duration_s + 1.0)
    assert not CONFIG.zone.contains_many(ee, CONFIG.commit_margin_m).any()


def test_commit_needs_fresh_perception_and_a_late_watchdog_tick_retreats_outside(ctl):
    """Issue 11 (2): perception dies during the reach and the first tick after the perception
    timeout comes 0.15 s late, past the point where the entry used to be committed: no entry."""
    dies_s = 0.6
    late_s = dies_s + CONFIG.perception_timeout_s + 0.15
    ticks = [t for t in np.arange(0.0, late_s + 1.5, DT_S) if not (0.9 <= t < late_s - 1e-9)]
    rec = Record()
    for t in ticks:
        stamp = min(t, dies_s)
        out = ctl.update(t, ControllerInputs("act", False, stamp, None, partner_hand_m=PARTNER_REST_M,
                                             partner_velocity_mps=np.zeros(3)))
        if out.trajectory is not None:
            rec.commands.append(Command(t, False, out.trajectory))
        rec.events.extend(out.events)
    assert "entry_commit" not in rec.names() and "watchdog" in rec.names()
    assert rec.time_of("watchdog") == pytest.approx(late_s, abs=1e-6)
    ee = executed_ee(ctl, rec, late_s + 1.5)
    assert not CONFIG.zone.contains_many(ee, CONFIG.commit_margin_m).any()


def test_a_reach_with_the_zone_clear_on_fresh_perception_is_not_slowed_by_its_gate(ctl):
    rec = run(ctl, always(), 3.0)
    assert rec.names()[:3] == ["reach_start", "entry_commit", "act_start"]
    # Committed before the gated reach started braking: the EE follows the full-speed reach.
    ee = executed_ee(ctl, rec, rec.time_of("act_start"))
    nominal = plan_ee(ctl, TrajectoryCommand(CONFIG.joint_names, [], "reach", ctl.nominal_reach))
    t_act = rec.time_of("act_start") - rec.time_of("reach_start")
    assert t_act == pytest.approx(ctl.nominal_reach.duration_s, abs=0.02)
    assert np.max(np.linalg.norm(ee[-1] - nominal[-1])) < 1e-3


def test_a_reach_the_liveness_fallback_started_comes_at_the_fallback_speed(ctl):
    """The fallback sends the arm in without the policy's word that the partner's turn is over: the
    whole reach runs at fallback_speed_scale of its speed (its commands within that share of the
    limits), it still commits and acts, and the cap is not separation monitoring (no ssm_ events
    for a hand at rest far away)."""
    cap = CONFIG.fallback_speed_scale
    assert 0.0 < cap < 1.0
    rec = run(ctl, always(fallback=True), 5.0)
    assert rec.names(ssm=True)[:3] == ["reach_start", "entry_commit", "act_start"]
    reaches = [c.trajectory for c in rec.commands if c.trajectory.purpose == "reach"]
    assert reaches
    for reach in reaches:
        assert_within_limits(ctl, reach, cap * CONFIG.velocity_scale)
    t_act = rec.time_of("act_start") - rec.time_of("reach_start")
    assert t_act > 1.8 * ctl.nominal_reach.duration_s
    # The withdrawal and the next reach the policy itself decides go at full speed again.
    ctl.reset()
    rec = run(ctl, lambda t: {"fallback": t < 4.0, "decision": "act" if t < 4.0 or t >= 6.0 else "wait"}, 9.0)
    names = rec.names()
    assert names.count("act_start") == 2 and names.count("home") == 1
    second_start = [t for n, t in rec.events if n == "reach_start"][1]
    second_act = [t for n, t in rec.events if n == "act_start"][1]
    assert second_act - second_start == pytest.approx(ctl.nominal_reach.duration_s, abs=0.02)


def test_a_fallback_act_arriving_during_a_reach_slows_it(ctl):
    """The policy's own "act" started the reach, then the bound took over ("act fallback" while
    reaching): from then on the reach slows to the fallback's cap, and still gets there."""
    cap = CONFIG.fallback_speed_scale
    speeds = []

    def script(t):
        speeds.append((t, float(np.max(np.abs(ctl.commanded_state(t)[1]) / ctl.limits.velocity_rad_s))))
        return {"fallback": t >= 0.3}

    rec = run(ctl, script, 5.0)
    assert rec.names()[:3] == ["reach_start", "entry_commit", "act_start"]
    t_act = rec.time_of("act_start")
    nominal = ctl.nominal_reach
    _, qd, _ = nominal.state_at(np.linspace(0.0, nominal.duration_s, 1000))
    peak = float(np.max(np.abs(qd) / ctl.limits.velocity_rad_s))   # the full-speed reach's top speed
    after = max(v for t, v in speeds if 0.3 + 0.4 <= t < t_act)
    assert after <= cap * peak * 1.001
    assert t_act - rec.time_of("reach_start") > nominal.duration_s + 0.2


@pytest.mark.parametrize("text, expected", [
    ("act", ("act", False)), ("wait", ("wait", False)), ("yield", ("yield", False)),
    ("act fallback", ("act", True)),
])
def test_decision_texts_round_trip(text, expected):
    assert parse_decision_text(text) == expected
    assert decision_text(*expected) == text


@pytest.mark.parametrize("text", ["go", "act  fallback", "wait fallback", "act later", "", "act fallback x"])
def test_a_malformed_decision_text_is_rejected(text):
    with pytest.raises(ValueError, match="expected one of"):
        parse_decision_text(text)


def test_a_stop_starts_where_the_arm_is_now_not_where_a_stale_joint_state_saw_it(ctl):
    """Issue 11 (6): braking from a joint state 20 ms old would first pull the arm back."""
    rec = run(ctl, always(), 0.8)
    t = 0.8
    q_cmd, qd_cmd, _ = ctl.commanded_state(t)
    assert np.linalg.norm(qd_cmd) > 0.3  # mid-reach, moving
    stale_q = q_cmd - qd_cmd * 0.02      # what the arm measured 20 ms ago
    out = ctl.update(t, ControllerInputs("act", False, t, stale_q, estop=True, partner_hand_m=PARTNER_REST_M,
                                         partner_velocity_mps=np.zeros(3), joint_stamp_s=t - 0.02))
    brake = out.trajectory.plan
    assert np.allclose(brake.start_rad, q_cmd, atol=1e-6)
    first = np.array(out.trajectory.points[0].positions)
    # The first point lies ahead of where the arm is, along its motion: no pull-back.
    assert float((first - q_cmd) @ qd_cmd) > 0.0
    assert rec.names() == ["reach_start"]


def test_an_arm_that_is_not_following_is_not_carried_forward_at_the_commanded_velocity(ctl):
    """Fault campaign, session 23: moves reordered on their way to the arm left it away from its
    commands. The arm here freezes mid-reach (its joint states, each 20 ms old, stop changing) while
    the command goes on; once it is too far behind, the move home starts from where it is, carried
    forward at its measured velocity (zero), not 20 ms along the commanded reach."""
    run(ctl, always(), 0.8)
    q_cmd, qd_cmd, _ = ctl.commanded_state(0.8)
    assert np.linalg.norm(qd_cmd) > 0.3   # mid-reach, moving
    frozen = q_cmd.copy()
    sent = None
    for tk in np.arange(0.8, 2.0, DT_S):
        out = ctl.update(tk, ControllerInputs("act", False, tk, frozen, partner_hand_m=PARTNER_REST_M,
                                              partner_velocity_mps=np.zeros(3), joint_stamp_s=tk - 0.02))
        if any("not following" in w for w in out.warnings):
            sent = out
            break
    assert sent is not None and sent.trajectory is not None
    assert sent.state in ("retreating", "withdrawing") and sent.trajectory.purpose == "settle"
    assert np.allclose(sent.trajectory.plan.start_rad, frozen, atol=1e-6)


def _late_joint_states(ctl, delay_s: float, freeze_at_s: float | None = None, t_end_s: float = 2.0):
    """Tick ``ctl`` with joint states that reach it ``delay_s`` late (stamped when measured): the arm
    follows its commands exactly, or stops where it is from ``freeze_at_s``. Returns the events and
    the time of the first "not following" warning (None if none)."""
    measured: dict[int, np.ndarray] = {}
    events, warned = [], None
    for k, tk in enumerate(np.arange(0.0, t_end_s, DT_S)):
        j = k - round(delay_s / DT_S)
        q = measured.get(j)
        out = ctl.update(tk, ControllerInputs("act", False, tk, q, partner_hand_m=PARTNER_REST_M,
                                              partner_velocity_mps=np.zeros(3),
                                              joint_stamp_s=None if q is None else j * DT_S))
        events.extend(name for name, _ in out.events)
        if warned is None and any("not following" in w for w in out.warnings):
            warned = tk
        frozen = freeze_at_s is not None and tk >= freeze_at_s
        measured[k] = measured[k - 1] if frozen else ctl.commanded_state(tk)[0]
    return events, warned


@pytest.mark.parametrize("delay_s", [0.12, 0.2])
def test_joint_states_that_come_late_do_not_make_a_following_arm_look_lost(ctl, delay_s):
    """An arm that follows its moves exactly, whose joint states reach the controller 0.12-0.2 s
    late (a busy machine): judged against the command of the tick, it was declared not following
    mid-reach and sent a settling stop (a graph test on a loaded machine). Judged against the
    command of their stamps, it reaches and acts."""
    events, warned = _late_joint_states(ctl, delay_s)
    assert warned is None
    assert events[:3] == ["reach_start", "entry_commit", "act_start"]


def test_an_arm_that_stops_is_still_found_not_following_when_its_joint_states_come_late(ctl):
    events, warned = _late_joint_states(ctl, 0.15, freeze_at_s=0.5)
    assert warned is not None and 0.5 < warned < 0.5 + 0.15 + 0.3
    assert "act_start" not in events[:2]


def test_an_arm_stopped_at_its_gate_commits_once_perception_is_fresh_again(ctl):
    """Perception 0.15 s old (fresh for the watchdog, too old to commit on) from 0.5 s to 1.5 s: the
    arm stops before its gate, then goes on into the zone once perception is fresh again."""
    rec = Record()
    for t in np.arange(0.0, 4.0, DT_S):
        stamp = t - 0.15 if 0.5 <= t < 1.5 else t
        out = ctl.update(t, ControllerInputs("act", False, stamp, None, partner_hand_m=PARTNER_REST_M,
                                             partner_velocity_mps=np.zeros(3)))
        if out.trajectory is not None:
            rec.commands.append(Command(t, False, out.trajectory))
        rec.events.extend(out.events)
    assert rec.names()[:3] == ["reach_start", "entry_commit", "act_start"]
    # (The stale hand also made separation monitoring stop the arm short of its gate; it resumes
    # 0.2 s after perception is fresh again and commits on its way to the gate.)
    assert 1.5 - 1e-9 <= rec.time_of("entry_commit") <= 2.5
    ee = executed_ee(ctl, rec, rec.time_of("entry_commit"))
    assert not CONFIG.zone.contains_many(ee, CONFIG.commit_margin_m).any()
    # Every command ends after it can arrive (a stamped trajectory that ends at once is rejected).
    assert all(c.trajectory.points[-1].time_from_start_s >= 0.1 - 1e-9 for c in rec.commands)


def test_an_arm_stopped_just_short_of_its_gate_still_gets_there(ctl):
    """Found in the graph under load: a protective stop left the arm at rest a little short of its
    gate, too close to speed up to full speed and stop again; the move it was re-sent kept it at
    rest there, so it never committed and the partner waited 40 s. From rest short of a stop point
    the move goes there at the fastest lower speed that fits."""
    from coop_robot.control.planning import ScaledPlan

    path, gate = ctl.nominal_reach, ctl.nominal_gate_s
    for short_s in (0.3, 0.1, 0.03, 0.01):
        tau = gate - short_s
        plan = ScaledPlan(path, tau, 0.0, ctl._speed_profile(path, tau, 0.0, 1.0, gate))
        assert plan.stop_tau_s == pytest.approx(gate, abs=1e-6), short_s
        assert plan.duration_s < 3.0


@pytest.mark.parametrize("stuck_at_s, expected", [(0.5, None), (0.95, "withdraw_start")])
def test_an_arm_that_stopped_following_is_re_planned_from_its_measured_state(ctl, stuck_at_s, expected):
    """Issue 11, F3: moves the arm's controller rejected (late under load) leave it standing while the
    controller's commanded state runs on. The controller must notice, and its next move must start
    from where the arm is and how it moves (at rest), or the arm's controller rejects that one too
    ("velocity on the segment from the current state to point #0 exceeds its limit") and the robot
    never takes its turn. Before the commit the reach is kept (taken up again from rest, see
    test_fault_findings), after it the arm withdraws."""
    from coop_robot.control.planning import JointLimits
    from coop_robot.sim.trajectory import JointTrajectoryExecutor

    run(ctl, always(), stuck_at_s)
    q_stuck, qd_cmd, _ = ctl.commanded_state(stuck_at_s)
    assert np.linalg.norm(qd_cmd) > 0.3  # mid-reach, moving
    warnings, command, events = [], None, []
    # The arm stands at q_stuck (its joint states say so) while the plan runs on.
    for t in np.arange(stuck_at_s + DT_S, stuck_at_s + 0.5, DT_S):
        out = ctl.update(t, ControllerInputs("act", False, t, q_stuck, partner_hand_m=PARTNER_REST_M,
                                             partner_velocity_mps=np.zeros(3), joint_stamp_s=t))
        warnings += out.warnings
        events += [n for n, _ in out.events]
        if out.trajectory is not None and warnings:
            command = (t, out.trajectory)
            break
    assert any("not following its commands" in w for w in warnings), warnings
    assert command is not None, events
    if expected is None:
        assert events == [] and ctl.state == "reaching", events
    else:
        assert expected in events, events
    t, trajectory = command
    assert trajectory.purpose == "settle"
    start_q, start_qd, _ = trajectory.plan.state_at(0.0)
    assert np.allclose(start_q, q_stuck, atol=1e-6)
    assert np.allclose(start_qd, 0.0, atol=1e-6)
    # The arm's controller accepts it from the state the arm is in.
    arm = JointTrajectoryExecutor(list(CONFIG.joint_names), q_stuck, limits=JointLimits.panda())
    points = [(p.time_from_start_s, p.positions, p.velocities, p.accelerations) for p in trajectory.points]
    arm.set_trajectory(list(CONFIG.joint_names), points, 0.0, t, q_stuck, np.zeros(7))


@pytest.mark.parametrize("garbage", [1e308, -1e300, 40.0])
def test_joint_states_beyond_the_joint_limits_are_ignored_and_said_so(ctl, garbage):
    """Issue 11 campaign (2026-12-04): joint states of 1e308 rad mid-reach made the controller plan
    from them ("not following" -> a move home from the measured state) and die on an infinite
    duration. A position the arm cannot have is no measurement: it is ignored (the controller goes on
    from its commanded state) with one warning, and the turn goes on."""
    run(ctl, always(), 0.5)
    q_bad = ctl.commanded_state(0.5)[0].copy()
    q_bad[1] = garbage
    warnings, events = [], []
    for t in np.arange(0.5 + DT_S, 0.8, DT_S):
        out = ctl.update(t, ControllerInputs("act", False, t, q_bad, partner_hand_m=PARTNER_REST_M,
                                             partner_velocity_mps=np.zeros(3), joint_stamp_s=t))
        warnings += out.warnings
        events += [n for n, _ in out.events]
    assert sum("joint states ignored" in w for w in warnings) == 1, warnings
    assert not any("not following" in w for w in warnings), warnings
    assert "abort" not in events and ctl.state == "reaching", (events, ctl.state)
    # Plausible joint states again: followed as before, and a later garbage burst is reported again.
    record = run(ctl, always(), 4.0, t0_s=0.8)
    assert "act_start" in record.names()
    out = ctl.update(4.0, ControllerInputs("act", False, 4.0, q_bad, partner_hand_m=PARTNER_REST_M,
                                           partner_velocity_mps=np.zeros(3), joint_stamp_s=4.0))
    assert any("joint states ignored" in w for w in out.warnings)


def test_a_protective_stop_for_an_unseen_hand_names_late_perception_as_the_cause(ctl):
    """Issue 13 (load): perception older than ssm_max_hand_age_s makes the hand "anywhere it could
    have reached"; the stop that follows says so instead of holding the arm in silence."""
    run(ctl, always(), 0.6)
    warnings, modes = [], []
    for t in np.arange(0.6, 1.0, DT_S):   # the last frame stays the one of t = 0.59 s (under the 0.5 s watchdog)
        out = ctl.update(t, ControllerInputs("act", False, 0.59, None, partner_hand_m=PARTNER_REST_M,
                                             partner_velocity_mps=np.zeros(3)))
        warnings += out.warnings
        modes.append(out.ssm_mode)
    assert "stop" in modes
    hits = [w for w in warnings if "no perception of the hand newer than ssm_max_hand_age_s" in w]
    assert len(hits) == 1 and "last seen" in hits[0] and "not keeping up" in hits[0], warnings


def test_a_protective_stop_for_a_hand_in_view_does_not_blame_perception(ctl):
    hand_near = np.array([0.62, 0.02, 1.0])   # seen, fresh, right above the reach
    warnings, modes = [], []
    for t in np.arange(0.0, 1.0, DT_S):
        out = ctl.update(t, ControllerInputs("act", False, t, None, partner_hand_m=hand_near if t > 0.5 else
                                             PARTNER_REST_M, partner_velocity_mps=np.zeros(3)))
        warnings += out.warnings
        modes.append(out.ssm_mode)
    assert "stop" in modes
    assert not any("no perception of the hand" in w for w in warnings), warnings


@pytest.mark.parametrize("hand, in_zone", [(PARTNER_REST_M, False), (PARTNER_IN_ZONE_M, True)])
def test_a_retreat_under_late_perception_gets_home(ctl, hand, in_zone):
    """Issue 13 (rehearsal on a busy machine): with every frame 0.15 s old (older than
    ssm_max_hand_age_s), an abort's retreat was caught by a protective stop while it still braked the
    reach's forward motion, and what was left of that braking (toward the unseen hand) kept it
    stopped for good, the arm next to the zone. From rest it now heads straight home."""
    run(ctl, always(), 0.7)
    states, modes = [], []
    for t in np.arange(0.7, 6.0, DT_S):
        q, _, _ = ctl.commanded_state(t)
        out = ctl.update(t, ControllerInputs("wait", in_zone, t - 0.15, q, partner_hand_m=hand,
                                             partner_velocity_mps=np.zeros(3), joint_stamp_s=t))
        states.append(out.state)
        modes.append(out.ssm_mode)
        if out.state == "home":
            break
    assert states[0] == "retreating" and "stop" in modes
    assert states[-1] == "home", f"still {states[-1]} after {t - 0.7:.1f} s"


@pytest.mark.parametrize("anticipation", [False, True])
def test_the_runtime_abort_check_agrees_with_the_planned_commit_time(anticipation):
    # Two implementations of one model (an abort = the running move for command_latency_s, then the
    # move home from that state; the EE must stay out of the zone grown by commit_margin_m): the
    # batched one fixes the commit time when a reach is planned, the runtime one decides whether a
    # committed entry can still be taken back (an arm slowed since by separation monitoring). On an
    # unslowed reach they must agree up to the commit time and just after it. (Later in a reach that
    # slows down before the gate an abort can be safe again; the commit time is the first run's end.)
    ctl = ArmController(ControllerConfig(anticipation=anticipation, ssm_human_acceleration_mps2=0.0))
    ctl.update(0.0, ControllerInputs("act", False, 0.0, np.asarray(ctl.config.home_rad)))
    commit = ctl.commit_time_s
    assert 0.0 < commit < ctl.nominal_entry_s
    grid = np.round(np.arange(0.0, commit + 0.1, DT_S), 6)
    disagree = [t for t in grid if ctl._abort_stays_outside(float(t), None) != (t <= commit + 1e-9)]
    assert disagree == []


def test_a_reach_sent_late_starts_when_sent_and_nothing_else_moves(ctl):
    """The node was held up between reading its clock and sending (a starved 2-core rehearsal: 0.37 s).
    A reach from rest then starts when it is sent, so the arm runs it from its first point instead
    of its controller sampling it 0.37 s in (a jump); the commit's continuation of a running reach,
    and every later move, keep the tick's timeline (the arm has moved on along the previous move)."""
    inputs = ControllerInputs("act", False, 0.0, None, False, partner_hand_m=PARTNER_REST_M,
                              partner_velocity_mps=np.zeros(3))
    out = ctl.update(0.0, inputs)
    assert out.trajectory is not None and out.trajectory.purpose == "reach"
    assert ctl.sent_at(0.37) == pytest.approx(0.37)
    q, qd, _ = ctl.commanded_state(0.37)                     # the plan's first instant: at rest, at home
    assert np.allclose(q, ctl.home_rad) and np.allclose(qd, 0.0)
    later, _, _ = ctl.commanded_state(0.37 + 0.5)
    on_time, _, _ = out.trajectory.plan.state_at(0.5)
    assert np.allclose(later, on_time)                       # the same move, 0.37 s later
    assert ctl.sent_at(0.9) == pytest.approx(0.37)           # asked again: not a reach sent by this update

    # Ticks on to the commit: its continuation of the reach keeps the running timeline.
    t, commit = 0.37, None
    while commit is None and t < 5.0:
        t = round(t + DT_S, 6)
        step = ControllerInputs("act", False, t, None, False, partner_hand_m=PARTNER_REST_M,
                                partner_velocity_mps=np.zeros(3))
        out = ctl.update(t, step)
        if out.trajectory is not None:
            commit = out
    assert commit is not None and [e.name for e in commit.events] == ["entry_commit"]
    assert ctl.sent_at(t + 0.3) == pytest.approx(t)          # its tick time: the arm is under way


def test_a_retreat_sent_late_keeps_its_tick_time(ctl):
    rec = run(ctl, lambda t: {"fresh": t < 0.05, "decision": "act"}, 1.0)
    assert rec.names()[:3] == ["reach_start", "watchdog", "abort"]
    abort_t = rec.time_of("abort")
    ctl.reset()
    run(ctl, lambda t: {"fresh": t < 0.05, "decision": "act"}, abort_t)      # up to the tick before
    inputs = ControllerInputs("act", False, 0.04, None, False, partner_hand_m=PARTNER_REST_M,
                              partner_velocity_mps=np.zeros(3))
    out = ctl.update(abort_t, inputs)
    assert out.trajectory is not None and out.trajectory.purpose != "reach"
    assert ctl.sent_at(abort_t + 0.37) == pytest.approx(abort_t)

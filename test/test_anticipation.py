"""Anticipation: "act" while the partner is still inside starts the reach; the arm goes no farther
than the waiting point (S_p kept for a hand anywhere in the zone) until the partner is perceived
outside, then goes on along the same path; the oracle times the reach to pass the waiting point.

Controller cases are driven by scripted inputs at 100 Hz (the helpers of test_controller_core);
the session cases run the fast headless environment (no physics, no ROS).
"""

import numpy as np
import pytest
from test_controller_core import DT_S, assert_within_limits, ee_ever_inside, plan_ee, run

from coop_robot.control.controller import ArmController, ControllerConfig
from coop_robot.control.ssm import body_to_box, robot_capsules
from coop_robot.envs.turn_env import TurnTakingEnv
from coop_robot.policy.base import PolicyError, make_policy

#: Anticipation on (the default). The state machine's timing is tested with ISO/TS 15066's plain S_h
#: (no acceleration allowance, which slows the arm near the resting hand); the allowance's own
#: tests are in test_ssm.py, and the waiting point is also checked with it below. The scripted hand
#: jumps between two points (no motion to fit), so its velocity is the one scripted (tracker).
CONFIG = ControllerConfig(ssm_human_acceleration_mps2=0.0, ssm_hand_motion="tracker")
ZONE = CONFIG.zone


@pytest.fixture(scope="module")
def base_controller():
    return ArmController(CONFIG)


@pytest.fixture
def ctl(base_controller):
    base_controller.reset()
    return base_controller


def partner_inside_until(t_out_s, **extra):
    return lambda t: {"partner_in_zone": t < t_out_s - 1e-9, **extra}


def assert_out_while_partner_inside(ctl, rec):
    """Every trajectory commanded while the partner was perceived inside keeps the EE outside
    the zone grown by the commit margin; so does every commanded state while perceived inside."""
    for c in rec.commands:
        if c.partner_in_zone is None or c.partner_in_zone:
            assert not ZONE.contains_many(plan_ee(ctl, c.trajectory), CONFIG.commit_margin_m).any(), (
                c.trajectory.purpose
            )


def entry_time_s(ctl, rec, after_s=0.0):
    """First tick (s) at which the commanded EE is inside the zone."""
    return next(t for t, p in rec.commanded_ee if t >= after_s and ZONE.contains(p))


# ----------------------------------------------------------------------------- geometry
def test_the_waiting_point_keeps_the_waiting_clearance_and_the_zone_is_entered_later(ctl):
    body = robot_capsules(ctl.kinematics.joint_frames(ctl.waiting_rad))
    clearance = body_to_box(body, ZONE.min_m, ZONE.max_m)
    assert ctl.waiting_clearance_m - 0.01 <= clearance and clearance >= ctl.waiting_clearance_m - 1e-9
    # The waiting clearance is S_p at rest for a hand anywhere in the zone at 1.6 m/s (ISO 13855).
    ssm = CONFIG.ssm
    expected = ssm.hand_radius_m + ssm.human_speed_mps * (CONFIG.ssm_waiting_perception_age_s
                                                          + ssm.reaction_time_s) + ssm.constant_terms_m
    assert ctl.waiting_clearance_m == pytest.approx(expected)
    assert 0.0 < ctl.nominal_wait_s < ctl.nominal_commit_s < ctl.nominal_entry_s


# ----------------------------------------------------------------------------- controller core
def _assert_at_the_waiting_point(ctl, t_s):
    q, qd, _ = ctl.commanded_state(t_s)
    assert np.allclose(qd, 0.0)
    assert ctl.path_time_s(t_s) <= ctl.nominal_wait_s + 1e-6
    body = robot_capsules(ctl.kinematics.joint_frames(q))
    assert body_to_box(body, ZONE.min_m, ZONE.max_m) >= ctl.waiting_clearance_m - 1e-3


def test_act_while_the_partner_is_inside_starts_the_reach(ctl):
    rec = run(ctl, partner_inside_until(np.inf), 0.05)
    assert rec.names() == ["reach_start"]
    assert rec.states[-1][1] == "reaching" and ctl.phase == "direct"
    reach = rec.commands[0].trajectory
    assert reach.purpose == "reach" and np.allclose(reach.plan.path.goal_rad, ctl.target_rad)
    assert reach.plan.stops_on_path  # played only as far as the waiting point for now


@pytest.mark.parametrize("allowance", [False, True])
def test_partner_still_inside_stops_the_arm_on_its_path_at_the_waiting_point(ctl, allowance):
    if allowance:  # a_h budgeted: separation monitoring slows the arm on its way there
        ctl = ArmController(ControllerConfig(ssm_human_acceleration_mps2=10.0))
    rec = run(ctl, partner_inside_until(np.inf), 2.5)
    assert rec.names() == ["reach_start"]  # no commit, no abort within the staging timeout
    # The reach's path, played only as far as the waiting point (separation monitoring may slow it
    # on the way: the same path re-sent at a lower speed).
    assert {c.trajectory.purpose for c in rec.commands} == {"reach"}
    for hold in rec.commands:
        assert hold.trajectory.plan.stops_on_path
        assert_within_limits(ctl, hold.trajectory, 1.0)
    assert ctl.phase == "held" and rec.states[-1][1] == "reaching"
    _assert_at_the_waiting_point(ctl, 2.5)
    assert not ee_ever_inside(ctl, rec)
    assert_out_while_partner_inside(ctl, rec)


@pytest.mark.parametrize("t_out_s", [0.3, 1.0, 2.0])
def test_partner_leaving_lets_the_arm_go_on_along_the_same_path(ctl, t_out_s):
    rec = run(ctl, partner_inside_until(t_out_s), 6.0)
    assert rec.names()[:3] == ["reach_start", "entry_commit", "act_start"]
    assert "home" in rec.names()
    assert rec.time_of("entry_commit") >= t_out_s
    entered = entry_time_s(ctl, rec)
    assert entered >= t_out_s
    # Every command of the reach replays the one path (speed changes only).
    reach_cmds = [c for c in rec.commands if c.trajectory.purpose == "reach" and c.t_s < rec.time_of("act_start")]
    assert all(c.trajectory.plan.path is reach_cmds[0].trajectory.plan.path for c in reach_cmds)
    if t_out_s >= 1.0:  # waited at the waiting point: entered one waiting-point-to-zone move later
        assert len(reach_cmds) >= 2 and reach_cmds[0].trajectory.plan.stops_on_path
        assert entered - t_out_s <= ctl.nominal_entry_s - ctl.nominal_wait_s + 0.4
    assert_out_while_partner_inside(ctl, rec)


def test_partner_back_inside_after_the_waiting_point_aborts_and_stays_out(ctl):
    back = np.floor(ctl.nominal_commit_s / DT_S - 1e-6) * DT_S  # last tick before the commit
    rec = run(ctl, lambda t: {"partner_in_zone": t >= back - 1e-9}, 4.0)
    assert rec.names()[:3] == ["reach_start", "abort", "home"]
    assert not ee_ever_inside(ctl, rec)
    assert_out_while_partner_inside(ctl, rec)


def test_wait_longer_than_the_staging_timeout_returns_home():
    ctl = ArmController(ControllerConfig(staging_timeout_s=0.5))
    rec = run(ctl, partner_inside_until(np.inf), 3.0)
    assert rec.names()[:3] == ["reach_start", "abort", "home"]  # then, still told to act, it starts again
    first = rec.commands[0]
    held_s = first.t_s + first.trajectory.plan.duration_s  # at rest at the waiting point
    assert rec.time_of("abort") == pytest.approx(held_s + 0.5, abs=2 * DT_S)
    assert not ee_ever_inside(ctl, rec)


def test_stale_perception_while_waiting_triggers_the_watchdog_and_goes_home(ctl):
    rec = run(ctl, lambda t: {"partner_in_zone": True, "fresh": t < 1.2 or t >= 2.5}, 5.5)
    assert rec.names()[:4] == ["reach_start", "watchdog", "abort", "home"]
    assert rec.time_of("watchdog") == pytest.approx(1.2 - DT_S + CONFIG.perception_timeout_s, abs=2 * DT_S)
    assert not ee_ever_inside(ctl, rec)


@pytest.mark.parametrize("decision", ["wait", "yield", None])
@pytest.mark.parametrize("change_s", [0.3, 1.5])  # during the reach, while waiting
def test_decision_other_than_act_before_the_commit_goes_home(ctl, decision, change_s):
    rec = run(ctl, lambda t: {"partner_in_zone": True, "decision": "act" if t < change_s else decision}, 4.0)
    assert rec.names() == ["reach_start", "abort", "home"]
    assert rec.time_of("abort") == pytest.approx(change_s, abs=DT_S)
    assert not ee_ever_inside(ctl, rec)


def test_estop_while_waiting_brakes_and_release_goes_home(ctl):
    rec = run(ctl, lambda t: {"partner_in_zone": True, "estop": 1.2 <= t < 1.5}, 4.0)
    assert rec.names()[:5] == ["reach_start", "estop", "estop_release", "withdraw_start", "home"]
    assert not ee_ever_inside(ctl, rec)


def test_anticipation_off_never_starts_while_the_partner_is_inside():
    ctl = ArmController(ControllerConfig(anticipation=False))
    rec = run(ctl, partner_inside_until(np.inf), 2.0)
    assert rec.commands == [] and rec.events == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"staging_timeout_s": 0.0}, "staging_timeout_s"),
        ({"anticipation": "yes"}, "anticipation"),
        ({"ssm_human_speed_mode": "fast"}, "human_speed_mode"),
        ({"ssm_hand_radius_m": -0.1}, "hand_radius_m"),
        ({"ssm_human_speed_floor_mps": 2.0}, "human_speed_floor_mps"),
    ],
)
def test_invalid_anticipation_configuration_is_rejected_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ArmController(ControllerConfig(**kwargs))


@pytest.mark.parametrize("params", [{"entry_lead_s": -0.1}, {"margin_s": float("nan")}, {"entry_lead_s": True}])
def test_oracle_rejects_bad_parameters(params):
    with pytest.raises(PolicyError, match=next(iter(params))):
        make_policy("oracle", **params)


# ----------------------------------------------------------------------------- sessions
@pytest.fixture(scope="module")
def typical_env():
    return TurnTakingEnv("typical", seed=0, physics=False)


def test_oracle_anticipates_the_exit_with_short_gaps_and_no_overlap(typical_env):
    s = typical_env.run(make_policy("oracle"), turns=30, seed=0)
    print(f"oracle typical: median gap {s['median_gap_s']:.3f} s, p90 {s['p90_gap_s']:.3f} s")
    assert s["turns"] == 30
    assert s["overlap_rate"] == 0.0 and s["contacts"] == 0
    # Under separation monitoring the arm waits out of S_p reach of the zone: what is left is the
    # move from the waiting point into the zone (~0.6 s at velocity_scale 0.5).
    assert s["median_gap_s"] < 0.85
    assert s["median_response_latency_s"] < 0.0  # the reach starts before the exit


def test_reactive_policy_is_unchanged_by_anticipation(typical_env):
    s = typical_env.run(make_policy("reactive"), turns=30, seed=0)
    print(f"reactive typical: median gap {s['median_gap_s']:.3f} s")
    assert s["turns"] == 30 and s["overlap_rate"] == 0.0 and s["contacts"] == 0
    # One nominal reach to the zone (1.16 s from the raised home) plus the debounce and perception.
    assert s["median_gap_s"] == pytest.approx(1.6, abs=0.15)

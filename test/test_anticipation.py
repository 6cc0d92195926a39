"""Anticipation: the controller approaches a staging pose while the partner is still inside,
holds there, and enters only once the partner is perceived outside; the oracle uses it.

Controller cases are driven by scripted inputs at 100 Hz (the helpers of test_controller_core);
the session cases run the fast headless environment (no physics, no ROS).
"""

import numpy as np
import pytest
from test_controller_core import DT_S, assert_within_limits, ee_ever_inside, plan_ee, run

from coop_robot.control.controller import ArmController, ControllerConfig
from coop_robot.envs.turn_env import TurnTakingEnv
from coop_robot.policy.base import PolicyError, make_policy

CONFIG = ControllerConfig()  # anticipation on (the default)
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
def test_staging_pose_is_just_outside_the_zone_and_the_approach_stays_out(ctl):
    assert not ZONE.contains(ctl.staging_ee_m, CONFIG.staging_clearance_m - 1e-3)
    assert ZONE.contains(ctl.staging_ee_m, CONFIG.staging_clearance_m + 0.01)
    assert not ZONE.contains_many(plan_ee(ctl, _command(ctl.nominal_approach)), CONFIG.commit_margin_m).any()
    # The entry move from the staging pose is short: commit within tens of ms, entry within 0.2 s.
    assert 0.0 <= ctl.nominal_entry_commit_s < ctl.nominal_entry_entry_s <= 0.2
    assert ctl.nominal_approach.duration_s < ctl.nominal_entry_s  # staged sooner than a direct reach enters


def _command(plan):
    from types import SimpleNamespace

    return SimpleNamespace(plan=plan)


# ----------------------------------------------------------------------------- controller core
def test_act_while_the_partner_is_inside_starts_an_approach_to_the_staging_pose(ctl):
    rec = run(ctl, partner_inside_until(np.inf), 0.05)
    assert rec.names() == ["reach_start"]
    assert rec.states[-1][1] == "reaching" and ctl.phase == "approach"
    approach = rec.commands[0].trajectory
    assert approach.purpose == "approach"
    assert np.allclose(approach.plan.goal_rad, ctl.staging_rad)
    assert_within_limits(ctl, approach, CONFIG.velocity_scale)


def test_partner_still_inside_holds_at_the_staging_pose_outside_the_zone(ctl):
    rec = run(ctl, partner_inside_until(np.inf), 2.5)
    assert rec.names() == ["reach_start"]  # no commit, no abort within the staging timeout
    assert [c.trajectory.purpose for c in rec.commands] == ["approach"]
    assert ctl.phase == "staged" and rec.states[-1][1] == "reaching"
    q, qd, _ = ctl.commanded_state(2.5)
    assert np.allclose(q, ctl.staging_rad) and np.allclose(qd, 0.0)  # at rest
    assert not ee_ever_inside(ctl, rec)
    assert_out_while_partner_inside(ctl, rec)


@pytest.mark.parametrize("t_out_s", [0.4, 1.0, 2.0])
def test_partner_leaving_lets_the_arm_enter_soon_after_reaching_the_staging_pose(ctl, t_out_s):
    rec = run(ctl, partner_inside_until(t_out_s), 5.5)
    assert rec.names()[:3] == ["reach_start", "entry_commit", "act_start"]
    assert [c.trajectory.purpose for c in rec.commands][:2] == ["approach", "reach"]
    entry_cmd = rec.commands[1]
    staged_s = ctl.nominal_approach.duration_s
    # The entry move starts on the first tick that is both staged and perceived clear.
    assert entry_cmd.t_s == pytest.approx(max(t_out_s, staged_s), abs=DT_S + 1e-9)
    assert not entry_cmd.partner_in_zone
    assert rec.time_of("entry_commit") >= entry_cmd.t_s
    entered = entry_time_s(ctl, rec)
    assert entered >= t_out_s
    assert entered - entry_cmd.t_s <= ctl.nominal_entry_entry_s + DT_S
    assert_within_limits(ctl, entry_cmd.trajectory, CONFIG.entry_velocity_scale)
    assert_out_while_partner_inside(ctl, rec)
    assert "home" in rec.names()


def test_partner_back_inside_before_the_entry_commits_aborts_and_stays_out():
    ctl = ArmController(ControllerConfig(staging_clearance_m=0.04))  # a later commit to hit
    assert ctl.nominal_entry_commit_s >= 2 * DT_S
    t_out = 1.5
    back = t_out + np.floor(ctl.nominal_entry_commit_s / DT_S - 1e-6) * DT_S
    rec = run(ctl, lambda t: {"partner_in_zone": not (t_out - 1e-9 <= t < back - 1e-9)}, 4.0)
    assert rec.names()[:3] == ["reach_start", "abort", "home"]
    assert not ee_ever_inside(ctl, rec)
    assert_out_while_partner_inside(ctl, rec)


def test_hold_longer_than_the_staging_timeout_returns_home():
    ctl = ArmController(ControllerConfig(staging_timeout_s=0.5))
    rec = run(ctl, partner_inside_until(np.inf), 3.0)
    assert rec.names()[:3] == ["reach_start", "abort", "home"]  # then, still told to act, it approaches again
    staged_s = ctl.nominal_approach.duration_s
    assert rec.time_of("abort") == pytest.approx(staged_s + 0.5, abs=2 * DT_S)
    assert not ee_ever_inside(ctl, rec)
    assert np.allclose(rec.commands[1].trajectory.plan.goal_rad, CONFIG.home_rad)


def test_stale_perception_while_holding_triggers_the_watchdog_and_goes_home(ctl):
    rec = run(ctl, lambda t: {"partner_in_zone": True, "fresh": t < 1.2}, 3.5)
    assert rec.names() == ["reach_start", "watchdog", "abort", "home"]
    assert rec.time_of("watchdog") == pytest.approx(1.2 - DT_S + CONFIG.perception_timeout_s, abs=2 * DT_S)
    assert not ee_ever_inside(ctl, rec)
    assert rec.states[-1][1] == "holding"  # at home, still stale


@pytest.mark.parametrize("decision", ["wait", "yield", None])
@pytest.mark.parametrize("change_s", [0.3, 1.5])  # during the approach, during the hold
def test_decision_other_than_act_during_approach_or_hold_goes_home(ctl, decision, change_s):
    rec = run(ctl, lambda t: {"partner_in_zone": True, "decision": "act" if t < change_s else decision}, 3.5)
    assert rec.names() == ["reach_start", "abort", "home"]
    assert rec.time_of("abort") == pytest.approx(change_s, abs=DT_S)
    assert not ee_ever_inside(ctl, rec)


def test_estop_while_holding_brakes_and_release_goes_home(ctl):
    rec = run(ctl, lambda t: {"partner_in_zone": True, "estop": 1.2 <= t < 1.5}, 3.5)
    assert rec.names()[:5] == ["reach_start", "estop", "estop_release", "withdraw_start", "home"]
    assert not ee_ever_inside(ctl, rec)


def test_anticipation_off_never_starts_while_the_partner_is_inside():
    ctl = ArmController(ControllerConfig(anticipation=False))
    rec = run(ctl, partner_inside_until(np.inf), 2.0)
    assert rec.commands == [] and rec.events == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"staging_clearance_m": 0.005}, "staging_clearance_m"),
        ({"staging_clearance_m": 0.5}, "staging_clearance_m"),
        ({"staging_timeout_s": 0.0}, "staging_timeout_s"),
        ({"entry_velocity_scale": 0.0}, "entry_velocity_scale"),
        ({"anticipation": "yes"}, "anticipation"),
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
    assert s["median_gap_s"] < 0.4
    assert s["median_response_latency_s"] < 0.0  # the approach starts before the exit


def test_reactive_policy_is_unchanged_by_anticipation(typical_env):
    s = typical_env.run(make_policy("reactive"), turns=30, seed=0)
    print(f"reactive typical: median gap {s['median_gap_s']:.3f} s")
    assert s["turns"] == 30 and s["overlap_rate"] == 0.0 and s["contacts"] == 0
    assert s["median_gap_s"] == pytest.approx(1.34, abs=0.1)

"""Joint-space planning: minimum-jerk timing within limits, stops, retreats and the commit time."""

import numpy as np
import pytest

from coop_robot.control.kinematics import PandaKinematics
from coop_robot.control.planning import (
    JointLimits,
    commit_time_s,
    ee_path_m,
    first_zone_entry_s,
    plan_brake,
    plan_minimum_jerk,
    plan_to_rest,
    start_state_allowance,
)
from coop_robot.geometry import MINIMUM_JERK_PEAK_VELOCITY, Zone

HOME = np.array([0.0, -0.5, 0.0, -2.3, 0.0, 1.85, 0.785])
ZONE = Zone((0.45, -0.20, 0.626), (0.75, 0.20, 0.926))
LIMITS = JointLimits.panda()
KIN = PandaKinematics()
MARGIN_M = 0.02


@pytest.fixture(scope="module")
def target_rad():
    return KIN.ik((0.60, -0.08, 0.72), seed_rad=HOME, nominal_rad=HOME)


@pytest.fixture(scope="module")
def reach(target_rad):
    return plan_minimum_jerk(HOME, target_rad, LIMITS, 0.5, 0.5)


def _dense(plan, step_s=0.002):
    return plan.state_at(np.append(np.arange(0.0, plan.duration_s, step_s), plan.duration_s))


@pytest.mark.parametrize("scale", [0.1, 0.5, 1.0])
def test_minimum_jerk_duration_keeps_peak_velocity_within_the_scaled_limit(scale, target_rad):
    plan = plan_minimum_jerk(HOME, target_rad, LIMITS, scale, 0.2)
    _, v, a = _dense(plan)
    ratio = np.abs(v).max(axis=0) / (scale * LIMITS.velocity_rad_s)
    assert ratio.max() <= 1.0 + 1e-6
    assert ratio.max() > 0.95  # and is not needlessly slow: the limiting joint nearly reaches it
    assert np.all(np.abs(a).max(axis=0) <= scale * LIMITS.acceleration_rad_s2 + 1e-6)
    # Peak velocity of the limiting joint is the minimum-jerk 1.875 * distance / duration.
    dq = np.abs(target_rad - HOME)
    assert np.abs(v).max(axis=0) == pytest.approx(MINIMUM_JERK_PEAK_VELOCITY * dq / plan.duration_s, abs=1e-3)


def test_short_moves_last_at_least_the_minimum_duration():
    plan = plan_minimum_jerk(HOME, HOME + 0.01, LIMITS, 1.0, 0.5)
    assert plan.duration_s == pytest.approx(0.5)


def test_sampled_points_stay_within_position_limits_and_end_at_rest(reach, target_rad):
    points = reach.points(50.0)
    assert points[0].time_from_start_s == pytest.approx(0.02)
    assert points[-1].time_from_start_s == pytest.approx(reach.duration_s)
    times = [p.time_from_start_s for p in points]
    assert np.all(np.diff(times) > 0)
    q = np.array([p.positions for p in points])
    assert np.all(q >= LIMITS.lower_rad) and np.all(q <= LIMITS.upper_rad)
    assert np.allclose(points[-1].positions, target_rad)
    assert np.allclose(points[-1].velocities, 0.0, atol=1e-9)
    assert np.allclose(points[-1].accelerations, 0.0, atol=1e-9)


def test_goal_outside_joint_limits_is_rejected():
    goal = HOME.copy()
    goal[3] = 0.5  # joint 4 must stay negative
    with pytest.raises(ValueError, match="outside the joint limits"):
        plan_minimum_jerk(HOME, goal, LIMITS, 0.5)


@pytest.mark.parametrize("fraction", [0.2, 0.45, 0.6, 0.75, 0.9])
def test_plan_to_rest_continues_from_a_moving_state_within_limits(reach, fraction):
    q0, v0, a0 = reach.state_at(fraction * reach.duration_s)
    plan = plan_to_rest(q0, v0, a0, HOME, LIMITS, 0.5, acceleration_scale=0.8)
    q, v, a = plan.state_at(0.0)
    assert np.allclose(q, q0) and np.allclose(v, v0) and np.allclose(a, a0)
    qs, vs, accs = _dense(plan)
    v_allowed, a_allowed = start_state_allowance(v0, a0, LIMITS, 0.5, 0.8)
    assert np.all(v_allowed <= LIMITS.velocity_rad_s * (1 + 1e-6))
    assert np.all(np.abs(vs) <= v_allowed)
    assert np.all(np.abs(accs) <= a_allowed)
    assert np.all(qs >= LIMITS.lower_rad) and np.all(qs <= LIMITS.upper_rad)
    assert np.allclose(plan.goal_rad, HOME)
    assert np.allclose(vs[-1], 0.0, atol=1e-9)
    assert plan.duration_s < 2.5  # the shortest feasible, not a needlessly long drift


def test_brake_stops_quickly_with_velocity_falling_to_zero(reach):
    q0, v0, a0 = reach.state_at(0.5 * reach.duration_s)  # peak speed, zero acceleration
    plan = plan_brake(q0, v0, a0, LIMITS, deceleration_scale=0.8)
    assert plan.duration_s < 0.5
    _, v, acc = _dense(plan, 0.001)
    speed = np.abs(v)
    assert np.all(np.diff(speed, axis=0) <= 1e-9)       # never speeds up while braking
    assert np.all(speed <= LIMITS.velocity_rad_s)
    assert np.all(np.abs(acc) <= 0.8 * LIMITS.acceleration_rad_s2 + 1e-6)
    assert np.allclose(v[-1], 0.0, atol=1e-9)


def test_brake_is_within_the_limits_or_none():
    """A brake plan keeps within the position, velocity and acceleration limits; from a state with
    no such brake (fast, close to a joint limit) there is none -- before, plan_brake returned its
    last try, a 30 s plan through the joint limits, which an arm's controller refuses."""
    rng = np.random.default_rng(3)
    nones = 0
    for _ in range(300):
        q = rng.uniform(LIMITS.lower_rad, LIMITS.upper_rad)
        qd = rng.uniform(-1.0, 1.0, 7) * LIMITS.velocity_rad_s
        plan = plan_brake(q, qd, np.zeros(7), LIMITS, deceleration_scale=0.8)
        if plan is None:
            nones += 1
            continue
        pos, v, acc = _dense(plan, 0.002)
        assert np.all(pos >= LIMITS.lower_rad - 1e-9) and np.all(pos <= LIMITS.upper_rad + 1e-9)
        assert np.all(np.abs(v) <= np.maximum(LIMITS.velocity_rad_s, np.abs(qd)) + 1e-6)
        assert np.all(np.abs(acc) <= LIMITS.acceleration_rad_s2 + 1e-6)
        np.testing.assert_allclose(v[-1], 0.0, atol=1e-9)
    near = np.asarray(HOME, dtype=float).copy()
    near[1] = LIMITS.upper_rad[1] - 0.05
    fast = np.zeros(7)
    fast[1] = 0.9 * LIMITS.velocity_rad_s[1]
    assert plan_brake(near, fast, np.zeros(7), LIMITS, deceleration_scale=0.8) is None
    assert nones < 300


def test_brake_at_rest_holds_position():
    plan = plan_brake(HOME, np.zeros(7), np.zeros(7), LIMITS)
    q, _, _ = _dense(plan)
    assert np.allclose(q, HOME)


def test_reach_enters_the_zone_after_its_commit_time(reach):
    entry = first_zone_entry_s(reach, KIN, ZONE)
    commit = commit_time_s(reach, KIN, ZONE, HOME, LIMITS, 0.5, margin_m=MARGIN_M, acceleration_scale=0.8)
    assert entry is not None and 0.0 < commit < entry < reach.duration_s
    assert ZONE.contains(KIN.fk(reach.state_at(entry)[0]))
    assert not ZONE.contains(KIN.fk(reach.state_at(entry - 0.01)[0]))


def test_abort_before_commit_keeps_the_ee_out_of_the_zone(reach):
    latency = 0.02
    commit = commit_time_s(reach, KIN, ZONE, HOME, LIMITS, 0.5, margin_m=MARGIN_M, latency_s=latency,
                           acceleration_scale=0.8)
    for t_abort in np.linspace(0.0, commit, 12):
        t_obeyed = t_abort + latency
        before = KIN.fk_many(reach.state_at(np.arange(0.0, t_obeyed + 1e-9, 0.002))[0])
        retreat = plan_to_rest(*reach.state_at(t_obeyed), HOME, LIMITS, 0.5, acceleration_scale=0.8)
        _, after = ee_path_m(retreat, KIN, 0.002)
        assert not ZONE.contains_many(before, MARGIN_M).any(), t_abort
        assert not ZONE.contains_many(after, MARGIN_M).any(), t_abort


def test_abort_well_after_commit_would_enter_the_zone(reach):
    commit = commit_time_s(reach, KIN, ZONE, HOME, LIMITS, 0.5, margin_m=MARGIN_M, acceleration_scale=0.8)
    retreat = plan_to_rest(*reach.state_at(commit + 0.15), HOME, LIMITS, 0.5, acceleration_scale=0.8)
    assert first_zone_entry_s(retreat, KIN, ZONE) is not None


def test_commit_time_is_the_whole_plan_when_it_never_nears_the_zone():
    away = HOME.copy()
    away[0] = 1.5  # swing to the side, far from the zone
    plan = plan_minimum_jerk(HOME, away, LIMITS, 0.5)
    assert first_zone_entry_s(plan, KIN, ZONE) is None
    assert commit_time_s(plan, KIN, ZONE, HOME, LIMITS, 0.5) == pytest.approx(plan.duration_s)


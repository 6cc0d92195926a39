"""Speed and separation monitoring: the S_p terms, the body model, the worst case for what is not
known, path-preserving speed scaling, and the controller stopping for a hand next to the arm."""

import math

import numpy as np
import pytest
from test_controller_core import DT_S, PARTNER_REST_M, run

from coop_robot.control.controller import ArmController, ControllerConfig, ControllerInputs
from coop_robot.control.kinematics import PandaKinematics
from coop_robot.control.planning import JointLimits, ScaledPlan, plan_minimum_jerk, ramp_time_s
from coop_robot.control.ssm import (
    GroundTruthMonitor,
    HandEstimate,
    HandMotionFit,
    SeparationMonitor,
    SsmConfig,
    body_to_box,
    body_to_point,
    robot_capsules,
)
from coop_robot.geometry import world_geometry

ZONE = world_geometry().zone
HOME = np.asarray(world_geometry().robot_home_joint_positions_rad)
KIN = PandaKinematics(world_geometry().robot_base_m)
LIMITS = JointLimits.panda()


def monitor(**kwargs) -> SeparationMonitor:
    return SeparationMonitor(SsmConfig(**kwargs), KIN, LIMITS.acceleration_rad_s2)


def hand(at, velocity=(0.0, 0.0, 0.0), age_s=0.0, radius_m=0.05) -> HandEstimate:
    return HandEstimate(np.asarray(at, float), radius_m, np.asarray(velocity, float), age_s)


# ----------------------------------------------------------------------------- the terms
def test_at_rest_s_p_is_the_human_term_plus_the_constant_terms():
    # Without the acceleration allowance: ISO/TS 15066's S_h = v_h (T_r + T_s) with the floor.
    m = monitor(human_acceleration_mps2=0.0)
    cfg = m.config
    sep = m.evaluate(HOME, np.zeros(7), hand(PARTNER_REST_M, age_s=0.04))
    # No robot motion: S_r = S_s = 0, T_s = 0; directed mode with a hand at rest: the floor.
    expected = cfg.human_speed_floor_mps * (0.04 + cfg.reaction_time_s) + cfg.constant_terms_m
    assert sep.protective_m == pytest.approx(expected)
    assert sep.robot_closing_mps == pytest.approx(0.0) and not sep.violated


def test_the_hand_may_have_sped_up_since_its_velocity_was_measured_and_while_the_arm_stops():
    m = monitor(human_acceleration_mps2=10.0)
    cfg = m.config
    a, lag = cfg.human_acceleration_mps2, cfg.velocity_lag_s
    assert a > 0.0 and lag > 0.0
    age = 0.04
    seen = hand(PARTNER_REST_M, age_s=age)._replace(moved_s=age)   # a fresh detection, age s old
    sep = m.evaluate(HOME, np.zeros(7), seen)
    # Perceived at rest: by now it may come at a (age + lag), and go on speeding up to K_h.
    v0 = a * (age + lag)
    assert sep.human_closing_mps == pytest.approx(v0)
    horizon = age + cfg.reaction_time_s
    t_up = min(horizon, (cfg.human_speed_mps - v0) / a)
    s_h = v0 * t_up + 0.5 * a * t_up ** 2 + cfg.human_speed_mps * (horizon - t_up)
    assert sep.protective_m == pytest.approx(max(s_h, cfg.human_speed_floor_mps * horizon) + cfg.constant_terms_m)
    # ... and it may already be v0 * age closer than where it was seen.
    plain = monitor(human_acceleration_mps2=0.0).evaluate(HOME, np.zeros(7), seen)  # v_h 0: no closer
    assert sep.separation_m == pytest.approx(plain.separation_m - v0 * age)
    # S_h grows with the horizon faster than linearly until K_h, never beyond K_h per second.
    travel = [m.human_travel_m(0.0, t) for t in (0.05, 0.1, 0.2, 0.4)]
    assert travel == sorted(travel) and travel[3] / 0.4 > travel[2] / 0.2
    assert all(d <= cfg.human_speed_mps * t + 1e-12 for d, t in zip(travel, (0.05, 0.1, 0.2, 0.4)))
    # A hand moving away must turn round first: less than a resting one, never below the floor.
    assert m.human_travel_m(-1.0, 0.3) < m.human_travel_m(0.0, 0.3)
    assert m.human_travel_m(-1.0, 0.3) == pytest.approx(cfg.human_speed_floor_mps * 0.3)


def test_the_controller_budget_covers_ground_truth_for_a_hand_accelerating_at_a_h():
    # A hand starting from rest toward the arm at a_h, seen through a lagging velocity estimate:
    # the controller's S_p minus its separation is never below ground truth's (true velocity, no
    # allowance, the true position) at the same instant.
    from coop_robot.control.ssm import GroundTruthMonitor

    m = monitor(human_acceleration_mps2=10.0)
    cfg = m.config
    truth = GroundTruthMonitor(m, 0.05, 0.03)
    body_point = KIN.fk(HOME)
    toward = (body_point - PARTNER_REST_M) / np.linalg.norm(body_point - PARTNER_REST_M)
    start = PARTNER_REST_M - 0.3 * toward
    a = cfg.human_acceleration_mps2
    for t in np.arange(0.0, 0.15, 0.01):
        p_true = start + 0.5 * a * t * t * toward
        gt = truth.sample(float(t), HOME, p_true, 0.03)
        seen_t = max(t - 0.03, 0.0)
        v_seen = a * max(seen_t - cfg.velocity_lag_s, 0.0)   # the estimate lags velocity_lag_s more
        est = m.evaluate(HOME, np.zeros(7), hand(start + 0.5 * a * seen_t ** 2 * toward, velocity=v_seen * toward,
                                                   age_s=0.03)._replace(moved_s=0.03))
        assert est.margin_m <= gt.margin_m + 1e-9, t


def _onset(a_mps2: float, toward: np.ndarray, start: np.ndarray, t_start_s: float):
    """True position and velocity of a hand at rest at ``start`` until ``t_start_s``, then speeding
    up toward ``toward`` at ``a_mps2`` (a reach's onset)."""
    def at(t):
        u = max(t - t_start_s, 0.0)
        return start + 0.5 * a_mps2 * u * u * toward, a_mps2 * u * toward
    return at


def test_the_hand_motion_fit_follows_a_hand_speeding_up_where_the_trackers_velocity_lags():
    # The onset of a real reach (~14 m/s^2 to ~1.4 m/s, docs/benchmarks.md) seen at 30 Hz with 1 mm of noise:
    # from the third frame of motion on, the fit's velocity at the newest frame is within 0.15 m/s
    # of the truth; the perception tracker's smoothed finite difference lags by 0.4 m/s or more.
    from coop_robot.envs.perception_model import PerceptionModel

    rng = np.random.default_rng(3)
    toward = np.array([0.0, 1.0, 0.0])
    hand_at = _onset(14.0, toward, PARTNER_REST_M, 0.5)
    tracker = PerceptionModel.ideal()
    tracker.reset(np.random.default_rng(0))
    fit = HandMotionFit()
    fit_err, tracker_err = [], []
    for k in range(1, 22):
        t = k / 30.0
        seen = hand_at(t)[0] + rng.normal(0.0, 0.001, 3)
        _, v_tracker = tracker.track_update(t, seen)
        fit.add(t, seen)
        if 0.5 + 3 / 30.0 - 1e-9 <= t <= 0.5 + 0.12:   # up to 1.7 m/s, about a reach's peak speed
            v_true = hand_at(t)[1]
            v_fit, a_fit = fit.estimate(t)
            fit_err.append(float(np.linalg.norm(v_fit - v_true)))
            tracker_err.append(float((v_true - v_tracker) @ toward))
            assert float(a_fit @ toward) > 5.0, t
    assert len(fit_err) >= 1 and max(fit_err) < 0.15, fit_err
    assert min(tracker_err) > 0.4, tracker_err


def test_the_hand_motion_fit_keeps_only_a_recent_unbroken_track():
    fit = HandMotionFit(max_points=5, window_s=0.2)
    assert fit.estimate() is None
    fit.add(0.0, [0.0, 0.0, 0.0])
    assert fit.estimate() is None                    # one point: no velocity
    fit.add(0.1, [0.0, 0.1, 0.0])
    v, a = fit.estimate(0.1)
    assert v == pytest.approx([0.0, 1.0, 0.0]) and np.isnan(a).all()   # two: a difference, no acceleration
    fit.add(0.1, [5.0, 5.0, 5.0])                    # the same stamp again: ignored
    fit.add(0.05, [5.0, 5.0, 5.0])                   # older: ignored
    fit.add(0.2, [0.0, float("nan"), 0.0])           # not a position: ignored
    assert fit.estimate(0.1)[0] == pytest.approx([0.0, 1.0, 0.0])
    assert fit.estimate(0.2) is None                 # not the newest detection: no estimate for it
    fit.add(0.5, [0.0, 0.0, 0.0])                    # 0.4 s later: a new track
    assert fit.estimate() is None
    for k in range(1, 9):                            # a parabola: exact velocity and acceleration
        fit.add(0.5 + k / 30.0, [0.0, 3.0 * (k / 30.0) ** 2, 0.0])
    v, a = fit.estimate()
    assert v == pytest.approx([0.0, 6.0 * 8 / 30.0, 0.0]) and a == pytest.approx([0.0, 6.0, 0.0])
    with pytest.raises(ValueError, match="max_points"):
        HandMotionFit(max_points=2)


@pytest.mark.parametrize("motion, covered", [("fit", True), ("tracker", False)])
def test_the_fitted_hand_motion_covers_ground_truth_through_a_reachs_onset(motion, covered):
    # A hand that starts its reach toward the arm (the false-start violations of docs/benchmarks.md):
    # ground truth prices S_h with the hand's true speed at once. With the fitted motion (velocity
    # and acceleration at the newest frame, 30 ms old) the controller's margin stays at or below
    # ground truth's from the third frame of motion on; with the tracker's lagging velocity it does not.
    from coop_robot.envs.perception_model import PerceptionModel

    m = monitor(hand_motion=motion)
    truth = GroundTruthMonitor(m, 0.05, 0.03)
    body_point = KIN.fk(HOME)
    toward = (body_point - PARTNER_REST_M) / np.linalg.norm(body_point - PARTNER_REST_M)
    hand_at = _onset(10.0, toward, body_point - 0.6 * toward, 0.5)
    tracker = PerceptionModel.ideal()
    tracker.reset(np.random.default_rng(0))
    fit = HandMotionFit()
    age = 0.03
    excess = []
    for k in range(1, 20):
        stamp = k / 30.0
        seen = hand_at(stamp)[0]
        _, v_tracker = tracker.track_update(stamp, seen)
        fit.add(stamp, seen)
        now = stamp + age
        if not (0.5 + 3 / 30.0 - 1e-9 <= stamp <= 0.5 + 0.2):   # to 2 m/s
            continue
        truth.sample(now - 0.005, HOME, hand_at(now - 0.005)[0], age)   # ground truth differences positions
        gt = truth.sample(now, HOME, hand_at(now)[0], age)
        est = m.evaluate(HOME, np.zeros(7), m.hand_estimate(now, seen, v_tracker, stamp, None, ZONE,
                                                             fit=fit.estimate(stamp)))
        excess.append(est.margin_m - gt.margin_m)
    assert excess and (max(excess) <= 1e-9) is covered, excess


@pytest.mark.parametrize("rest_speed_mps, braking_dropped", [(0.05, True), (math.inf, False)])
def test_a_retreating_hand_braking_to_rest_is_not_taken_to_turn_round(rest_speed_mps, braking_dropped):
    # The end of a partner's turn: the hand leaves away from the arm (a minimum-jerk move of 0.3 m in
    # 0.5 s, seen at 30 Hz with 1 mm of noise) and stops. Its braking is an acceleration toward the
    # robot; extrapolated through T_r + T_s it priced a hand turning back at the arm that never came
    # (the oracle's p90 gap grew 50-140 ms under ``fit``, docs/benchmarks.md). With the braking
    # dropped, S_p for an arm in motion stays within 3 cm of S_p priced with the hand's true velocity
    # through the braking and the stop; kept (the rule switched off), it overshoots by more than 10 cm.
    m = monitor(hand_motion="fit", human_acceleration_mps2=0.0)
    path = plan_minimum_jerk(HOME, HOME + np.array([0.3, 0.4, 0.0, 0.3, 0.0, 0.2, 0.0]), LIMITS, 0.5)
    _, qd, _ = path.state_at(0.5 * path.duration_s)         # T_s about 0.24 s
    body_point = KIN.fk(HOME)
    away = (PARTNER_REST_M - body_point) / np.linalg.norm(PARTNER_REST_M - body_point)
    start = body_point + 0.25 * away

    def hand_at(t):
        tau = min(max(t / 0.5, 0.0), 1.0)
        return start + 0.3 * (10 * tau**3 - 15 * tau**4 + 6 * tau**5) * away

    rng = np.random.default_rng(1)
    fit = HandMotionFit(rest_speed_mps=rest_speed_mps)
    age, excess, accel = 0.03, [], []
    for k in range(0, 17):
        stamp = k / 30.0
        seen = hand_at(stamp) + rng.normal(0.0, 0.001, 3)
        fit.add(stamp, seen)
        if stamp < 0.25:                                    # from the peak speed: braking, then at rest
            continue
        now = stamp + age
        true_velocity = (hand_at(now + 1e-4) - hand_at(now)) / 1e-4
        exact = m.evaluate(HOME, qd, hand(hand_at(now), velocity=true_velocity))
        est = m.evaluate(HOME, qd, m.hand_estimate(now, seen, None, stamp, None, ZONE, fit=fit.estimate(stamp)))
        excess.append(est.protective_m - exact.protective_m)
        accel.append(est.human_accel_mps2)
    assert len(excess) == 9
    if braking_dropped:
        assert max(excess) < 0.03 and max(accel) < 0.5, (excess, accel)
    else:
        assert max(excess) > 0.1 and max(accel) > 5.0, (excess, accel)


def test_the_braking_rule_keeps_the_acceleration_of_a_hand_starting_from_rest_or_turning_sideways():
    fit = HandMotionFit()
    for k in range(6):                         # at rest, then speeding up along y at 10 m/s^2
        t = 0.5 + k / 30.0
        fit.add(t, [0.0, 5.0 * max(t - 0.55, 0.0) ** 2, 0.0])
    v, a = fit.estimate()
    assert float(a[1]) > 5.0
    fit = HandMotionFit()
    points = []
    for k in range(5):                         # moving along x at 1 m/s, braking at 4 m/s^2, pushed along y
        t = k / 30.0
        points.append([t - 2.0 * t * t, t * t, 0.0])
        fit.add(t, points[-1])
    v, a = fit.estimate()
    heading = np.subtract(points[-1], points[0])      # the mean velocity's direction
    assert float(a @ heading) == pytest.approx(0.0, abs=1e-9)   # the braking along it is gone ...
    assert float(a[1]) > 1.5                                     # ... the push sideways is kept
    with pytest.raises(ValueError, match="rest_speed_mps"):
        HandMotionFit(rest_speed_mps=-1.0)


def test_directed_speed_uses_the_hand_speed_toward_the_robot_and_constant_mode_ignores_it():
    body_point = KIN.fk(HOME)
    toward = (body_point - PARTNER_REST_M) / np.linalg.norm(body_point - PARTNER_REST_M)
    m = monitor(human_acceleration_mps2=0.0)
    fast = m.evaluate(HOME, np.zeros(7), hand(PARTNER_REST_M, velocity=1.2 * toward))
    away = m.evaluate(HOME, np.zeros(7), hand(PARTNER_REST_M, velocity=-1.2 * toward))
    assert fast.human_closing_mps == pytest.approx(1.2, abs=0.15)   # the closest body point is near the EE
    assert away.human_closing_mps == pytest.approx(-1.2, abs=0.15)  # moving away ...
    still = m.evaluate(HOME, np.zeros(7), hand(PARTNER_REST_M))
    assert away.protective_m == pytest.approx(still.protective_m)  # ... S_h is the floor's, as at rest
    constant = monitor(human_speed_mode="constant").evaluate(HOME, np.zeros(7), hand(PARTNER_REST_M))
    assert constant.human_closing_mps == pytest.approx(1.6)
    unknown = m.evaluate(HOME, np.zeros(7), hand(PARTNER_REST_M, velocity=(np.nan,) * 3))
    assert unknown.human_closing_mps == pytest.approx(1.6)  # unknown velocity: the worst case


def test_a_faster_robot_needs_more_separation():
    m = monitor()
    path = plan_minimum_jerk(HOME, HOME + np.array([0.3, 0.4, 0.0, 0.3, 0.0, 0.2, 0.0]), LIMITS, 0.5)
    q, qd, _ = path.state_at(0.5 * path.duration_s)
    h = hand(PARTNER_REST_M)
    full = m.evaluate(q, qd, h)
    assert full.stop_time_s > 0.0
    sp = [m.protective_at_scale(full, s) for s in (0.0, 0.25, 0.5, 1.0)]
    assert sp == sorted(sp)
    if full.robot_closing_mps > 0:
        assert sp[-1] > sp[0]
        assert sp[-1] == pytest.approx(full.protective_m, rel=1e-9)


def test_separation_is_to_the_body_not_only_the_end_effector():
    frames = KIN.joint_frames(HOME)
    body = robot_capsules(frames)
    elbow = frames[3, :3, 3]
    d, _ = body_to_point(body, elbow + np.array([0.0, 0.2, 0.0]))
    ee_distance = np.linalg.norm(KIN.fk(HOME) - (elbow + np.array([0.0, 0.2, 0.0])))
    assert d < ee_distance - 0.1  # the elbow link is much closer than the EE
    assert body_to_box(body, ZONE.min_m, ZONE.max_m) > 0.2  # home keeps the waiting clearance


def test_a_hand_not_seen_may_be_anywhere_it_could_have_reached():
    m = monitor()
    seen = m.hand_estimate(1.0, [0.9, 0.1, 0.8], [0, 0, 0], 0.97, None, ZONE)
    assert seen.anywhere_in is None and seen.radius_m == pytest.approx(0.05)
    # NaN hand (not detected) 0.5 s after it was last seen at (0.9, 0.1, 0.8).
    lost = m.hand_estimate(1.5, [np.nan] * 3, [np.nan] * 3, 1.49, (1.0, np.array([0.9, 0.1, 0.8])), ZONE)
    assert lost.radius_m == pytest.approx(0.05 + 1.6 * 0.5)
    old = m.hand_estimate(2.0, [0.9, 0.1, 0.8], [0, 0, 0], 1.5, None, ZONE)  # a stale detection
    assert old.radius_m == pytest.approx(0.05 + 1.6 * 0.5)
    never = m.hand_estimate(1.0, None, None, None, None, ZONE)
    assert never.anywhere_in is ZONE
    sep = m.evaluate(HOME, np.zeros(7), never)
    assert sep.separation_m == pytest.approx(body_to_box(robot_capsules(KIN.joint_frames(HOME)), ZONE.min_m,
                                                         ZONE.max_m) - 0.05)


def test_allowed_scale_drops_as_the_hand_comes_closer_and_is_full_moving_away():
    m = monitor()
    path = plan_minimum_jerk(HOME, ArmController().target_rad, LIMITS, 0.5)
    q, qd, _ = path.state_at(0.45 * path.duration_s)
    ee = KIN.fk(q)
    scales = []
    for distance in (0.8, 0.45, 0.3, 0.2, 0.12):
        full = m.evaluate(q, qd, hand(ee + np.array([distance, 0.0, -0.05])))
        scales.append(m.allowed_scale(full, current_scale=1.0))
    assert scales == sorted(scales, reverse=True) and scales[0] == 1.0 and scales[-1] == 0.0
    away = m.evaluate(q, -qd, hand(ee + np.array([0.12, 0.0, -0.05])))
    assert m.allowed_scale(away, current_scale=0.0) == 1.0


@pytest.mark.parametrize("kwargs, match", [({"human_speed_mode": "sometimes"}, "human_speed_mode"),
                                           ({"human_speed_floor_mps": 2.0}, "human_speed_floor_mps"),
                                           ({"intrusion_distance_m": -0.1}, "intrusion_distance_m"),
                                           ({"stop_acceleration_scale": 0.0}, "stop_acceleration_scale"),
                                           ({"human_acceleration_mps2": math.nan}, "human_acceleration_mps2"),
                                           ({"velocity_lag_s": -0.01}, "velocity_lag_s")])
def test_invalid_ssm_terms_are_rejected_naming_the_term(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SsmConfig(**kwargs)


# ----------------------------------------------------------------------------- speed scaling
def test_scaled_plan_keeps_the_path_and_stops_on_it_within_the_limits():
    path = plan_minimum_jerk(HOME, ArmController().target_rad, LIMITS, 0.5)
    tau = 0.4 * path.duration_s
    ramp = ramp_time_s(path, tau, 1.0, 0.0, LIMITS, 0.8)
    stop = ScaledPlan(path, tau, 1.0, [(ramp, 1.0, 0.0)])
    assert stop.stops_on_path and stop.stop_tau_s == pytest.approx(tau + 0.5 * ramp)
    t = np.linspace(0.0, stop.duration_s, 400)
    q, v, a = stop.state_at(t)
    on_path = path.state_at(stop.tau_at(t))[0]
    assert np.allclose(q, on_path)
    assert np.allclose(v[-1], 0.0) and np.all(np.abs(a) <= LIMITS.acceleration_rad_s2 * 1.0 + 1e-6)
    assert np.allclose(np.gradient(q, t, axis=0), v, atol=5e-3)  # velocities are the positions' derivative
    # Resume from rest: the same path to its goal.
    go = ScaledPlan(path, stop.stop_tau_s, 0.0, [(ramp_time_s(path, stop.stop_tau_s, 0.0, 1.0, LIMITS, 0.5), 0.0, 1.0)])
    assert np.allclose(go.goal_rad, path.goal_rad) and not go.stops_on_path


# ----------------------------------------------------------------------------- the controller
def test_a_hand_at_the_zone_edge_next_to_the_arm_stops_it_and_moving_away_resumes():
    # The partner is perceived outside the zone (no zone-guard hold), but its hand rests at the
    # zone's edge right where the reach comes down: separation monitoring alone must stop the arm.
    ctl = ArmController(ControllerConfig())
    edge = np.array([0.52, -0.05, ZONE.max_m[2] + 0.06])   # just above the zone, under the reach
    away_s = 3.0

    def script(t):
        at = edge if t < away_s else PARTNER_REST_M
        return {"partner_in_zone": False, "hand": at, "velocity": np.zeros(3), "decision": "act"}

    rec = run(ctl, script, 7.0)
    names = rec.names(ssm=True)
    assert "ssm_stop" in names and "ssm_resume" in names
    stop_s, resume_s = rec.time_of("ssm_stop"), rec.time_of("ssm_resume")
    assert stop_s < away_s <= resume_s
    assert "act_start" in names and rec.time_of("act_start") > away_s  # the turn is taken once the hand left
    stopped = [state for t, state in rec.states if stop_s + 0.5 <= t < away_s]
    assert stopped and set(stopped) == {"reaching"}


def test_the_arm_never_moves_toward_the_hand_closer_than_s_p():
    ctl = ArmController(ControllerConfig())
    edge = np.array([0.52, -0.05, ZONE.max_m[2] + 0.06])
    violations = []
    for t in np.arange(0.0, 3.0, DT_S):
        out = ctl.update(t, ControllerInputs("act", False, t, None, partner_hand_m=edge,
                                             partner_velocity_mps=np.zeros(3)))
        q, qd, _ = ctl.commanded_state(t)
        truth = ctl.monitor.evaluate(q, qd, HandEstimate(edge, 0.05, np.zeros(3), 0.0))
        if truth.violated:
            violations.append((round(float(t), 2), truth.separation_m, truth.protective_m))
        assert out.separation is not None and math.isfinite(out.separation.protective_m)
    assert violations == []
    q, qd, _ = ctl.commanded_state(2.99)
    assert np.allclose(qd, 0.0) and ctl.ssm_mode == "stop" and ctl.state == "reaching"
    sep, _ = body_to_point(robot_capsules(KIN.joint_frames(q)), edge)
    assert sep - 0.05 > 0.05  # stopped short of the hand


def test_in_fit_mode_the_controller_sees_a_reach_in_the_perceived_positions():
    # Mid-reach, the resting hand starts toward the arm at 12 m/s^2 (to 1.4 m/s, 0.2 m, staying out of
    # the zone). Perception publishes its positions at 30 Hz but a velocity of zero (a smoothed
    # estimate that has not caught up): 'tracker' mode slows the arm only for the distance closed, 'fit'
    # finds the reach in the positions and slows it sooner.
    cfg = ControllerConfig(anticipation=False)
    target = np.asarray(cfg.target_m)
    toward = (target - PARTNER_REST_M) / np.linalg.norm(target - PARTNER_REST_M)
    onset_s = 0.8

    def hand_at(t):
        u = max(t - onset_s, 0.0)
        t_up = 1.4 / 12.0
        s = 0.5 * 12.0 * min(u, t_up) ** 2 + 1.4 * max(u - t_up, 0.0)
        return PARTNER_REST_M + min(s, 0.2) * toward

    first_slowed = {}
    for motion in ("tracker", "fit"):
        ctl = ArmController(ControllerConfig(anticipation=False, ssm_hand_motion=motion))
        def script(t, frames={"last": -1}):  # noqa: B006 -- one dict per loop: the frame last published
            frame = int(math.floor(t * 30.0 + 1e-9))
            fresh = frame != frames["last"]
            frames["last"] = frame
            return {"partner_in_zone": False, "fresh": fresh, "hand": hand_at(frame / 30.0),
                    "velocity": np.zeros(3), "decision": "act"}

        rec = run(ctl, script, 1.6)
        slowed = [t for name, t in rec.events if name in ("ssm_scaled", "ssm_stop") and t >= onset_s]
        first_slowed[motion] = slowed[0] if slowed else math.inf
    assert first_slowed["fit"] < onset_s + 0.2, first_slowed
    assert first_slowed["fit"] < first_slowed["tracker"], first_slowed


@pytest.mark.parametrize("kwargs, match", [
    ({"ssm_hand_motion": "kalman"}, r"^ssm_hand_motion must be one of \('tracker', 'fit'\), got 'kalman'"),
    ({"ssm_human_speed_floor_mps": 2.0},
     r"^ssm_human_speed_floor_mps \(2.0\) must not exceed ssm_human_speed_mps \(1.6\)"),
    ({"ssm_velocity_lag_s": -0.1}, r"^ssm_velocity_lag_s must be a finite value >= 0"),
    ({"stop_acceleration_scale": 0.0}, r"^stop_acceleration_scale must be in \(0, 1\]"),
])
def test_a_bad_ssm_term_of_the_controller_is_named_as_its_parameter(kwargs, match):
    # The user sets the controller's parameter (ssm_hand_motion), so that is the name the error gives,
    # not the separation monitor's own field (hand_motion).
    with pytest.raises(ValueError, match=match):
        ControllerConfig(**kwargs)

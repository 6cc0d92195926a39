"""The sim's trajectory executor follows joint_trajectory_controller rules."""

import numpy as np
import pytest

from coop_robot.sim.trajectory import JointTrajectoryExecutor, TrajectoryRejected, Waypoint, interpolate

NAMES = ["j1", "j2", "j3"]


def make(q0=(0.0, 0.0, 0.0)):
    return JointTrajectoryExecutor(NAMES, initial_positions_rad=q0)


def test_starts_holding_the_initial_positions():
    ex = make((0.1, 0.2, 0.3))
    q, qd = ex.reference(5.0)
    assert np.allclose(q, [0.1, 0.2, 0.3]) and np.allclose(qd, 0.0)
    assert ex.is_done(0.0)


def test_zero_stamp_starts_now_and_interpolates_linearly_from_current_state():
    ex = make()
    ex.set_trajectory(NAMES, [(1.0, [1.0, 2.0, 3.0])], start_time_s=0.0, now_s=10.0)
    q, qd = ex.reference(10.5)
    assert np.allclose(q, [0.5, 1.0, 1.5])
    assert np.allclose(qd, [1.0, 2.0, 3.0])
    assert not ex.is_done(10.9) and ex.is_done(11.0)


def test_holds_last_position_with_zero_velocity_after_the_end():
    ex = make()
    ex.set_trajectory(NAMES, [(0.5, [1.0, 1.0, 1.0]), (1.0, [2.0, 2.0, 2.0])], now_s=0.0)
    q, qd = ex.reference(3.0)
    assert np.allclose(q, 2.0) and np.allclose(qd, 0.0)


def test_joint_names_in_any_order_are_mapped_by_name():
    ex = make()
    ex.set_trajectory(["j3", "j1", "j2"], [(1.0, [3.0, 1.0, 2.0])], now_s=0.0)
    q, _ = ex.reference(1.0)
    assert np.allclose(q, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("names, match", [
    (["j1", "j2", "elbow"], "do not match"),
    (["j1", "j2"], "missing"),
    ([], "empty joint_names"),
    (["j1", "j1", "j2"], "duplicate"),
])
def test_bad_joint_names_are_rejected_and_state_unchanged(names, match):
    ex = make()
    ex.set_trajectory(NAMES, [(1.0, [1.0, 1.0, 1.0])], now_s=0.0)
    with pytest.raises(TrajectoryRejected, match=match):
        ex.set_trajectory(names, [(1.0, [9.0] * len(names))], now_s=0.5)
    assert np.allclose(ex.reference(1.0)[0], 1.0)  # the old trajectory still runs


@pytest.mark.parametrize("points, match", [
    ([(1.0, [1, 1, 1]), (1.0, [2, 2, 2])], "strictly increasing"),
    ([(1.0, [1, 1, 1]), (0.5, [2, 2, 2])], "strictly increasing"),
    ([(1.0, [1, 1])], "2 positions for 3"),
    ([(1.0, [1, 1, 1], [0, 0])], "2 velocities for 3"),
    ([(1.0, [1, 1, 1], [0, 0, 0], [0, 0, 0, 0])], "4 accelerations for 3"),
    ([(1.0, [1, float("nan"), 1])], "finite"),
    ([(1.0, [1, 1, 1], [0, float("inf"), 0])], "finite"),
    ([(float("nan"), [1, 1, 1])], "time_from_start"),
    ([(-0.1, [1, 1, 1])], "time_from_start"),
    ([(1.0, [])], "no positions"),
    ([(1.0, [1, 1, 1], [0.1, 0, 0])], "last point's velocities must be zero"),
])
def test_malformed_points_are_rejected_and_state_unchanged(points, match):
    ex = make((0.5, 0.5, 0.5))
    with pytest.raises(TrajectoryRejected, match=match):
        ex.set_trajectory(NAMES, points, now_s=0.0)
    q, qd = ex.reference(2.0)
    assert np.allclose(q, 0.5) and np.allclose(qd, 0.0)


def test_trajectory_with_stamp_that_ends_in_the_past_is_rejected():
    ex = make()
    with pytest.raises(TrajectoryRejected, match="before now"):
        ex.set_trajectory(NAMES, [(1.0, [1, 1, 1])], start_time_s=5.0, now_s=7.0)


def test_future_start_stamp_reaches_first_point_at_stamp_plus_time_from_start():
    ex = make()
    ex.set_trajectory(NAMES, [(1.0, [2.0, 2.0, 2.0])], start_time_s=3.0, now_s=2.0)
    # JTC interpolates from the state at receipt (t=2) to the first point (t=4).
    assert np.allclose(ex.reference(3.0)[0], 1.0)
    assert np.allclose(ex.reference(4.0)[0], 2.0)


def test_new_trajectory_replaces_current_one_from_the_current_state():
    ex = make()
    ex.set_trajectory(NAMES, [(2.0, [2.0, 2.0, 2.0])], now_s=0.0)
    q_mid, _ = ex.reference(1.0)
    ex.set_trajectory(NAMES, [(1.0, [0.0, 0.0, 0.0])], now_s=1.0)
    assert np.allclose(ex.reference(1.0)[0], q_mid)  # continuous at the switch
    assert np.allclose(ex.reference(2.0)[0], 0.0)


def test_first_segment_starts_from_the_given_measured_state():
    ex = make()
    ex.set_trajectory(NAMES, [(1.0, [1, 1, 1], [0, 0, 0])], now_s=0.0,
                      current_q_rad=[0.2, 0.2, 0.2], current_qd_rad_s=[0.5, 0.5, 0.5])
    q, qd = ex.reference(0.0)
    assert np.allclose(q, 0.2) and np.allclose(qd, 0.5)


def test_cubic_hermite_with_positions_and_velocities_matches_end_conditions():
    ex = make()
    ex.set_trajectory(NAMES, [(1.0, [1, 1, 1], [0.5, 0.5, 0.5]), (2.0, [2, 2, 2], [0, 0, 0])], now_s=0.0)
    q, qd = ex.reference(1.0)
    assert np.allclose(q, 1.0) and np.allclose(qd, 0.5)
    q_mid, _ = ex.reference(1.5)
    a = Waypoint(1.0, np.ones(3), 0.5 * np.ones(3))
    b = Waypoint(2.0, 2 * np.ones(3), np.zeros(3))
    # Hermite midpoint: (q0 + q1)/2 + T (v0 - v1)/8
    assert np.allclose(q_mid, 1.5 + 0.5 / 8)
    assert np.allclose(interpolate(1.5, a, b)[0], q_mid)


def test_quintic_with_accelerations_reproduces_minimum_jerk():
    from coop_robot.geometry import minimum_jerk

    ex = make()
    # Start from rest at 0 with zero acceleration given explicitly through a first point at t=0.
    zeros = [0, 0, 0]
    ex.set_trajectory(NAMES, [(0.0, zeros, zeros, zeros), (2.0, [1, 1, 1], zeros, zeros)], now_s=0.0)
    for t in (0.3, 1.0, 1.7):
        s, ds, _ = minimum_jerk(t, 2.0)
        q, qd = ex.reference(t)
        assert np.allclose(q, s) and np.allclose(qd, ds)


def test_quintic_segment_meets_all_end_conditions():
    a = Waypoint(0.0, np.array([0.0]), np.array([1.0]), np.array([-2.0]))
    b = Waypoint(1.5, np.array([1.0]), np.array([0.3]), np.array([0.7]))
    q, qd, qdd = interpolate(1.5 - 1e-12, a, b)
    assert np.allclose([q[0], qd[0], qdd[0]], [1.0, 0.3, 0.7], atol=1e-6)
    q, qd, qdd = interpolate(0.0, a, b)
    assert np.allclose([q[0], qd[0], qdd[0]], [0.0, 1.0, -2.0])


def test_empty_points_stop_and_hold_current_position():
    ex = make()
    ex.set_trajectory(NAMES, [(2.0, [2.0, 2.0, 2.0])], now_s=0.0)
    q_now, _ = ex.reference(1.0)
    ex.set_trajectory(NAMES, [], now_s=1.0)
    q, qd = ex.reference(5.0)
    assert np.allclose(q, q_now) and np.allclose(qd, 0.0)
    assert ex.is_done(1.0)


def test_hold_replaces_trajectory():
    ex = make()
    ex.set_trajectory(NAMES, [(2.0, [2.0, 2.0, 2.0])], now_s=0.0)
    ex.hold([0.3, 0.3, 0.3], t_s=0.5)
    assert np.allclose(ex.reference(1.0)[0], 0.3) and ex.is_done(0.5)


def test_round_off_end_velocity_counts_as_zero():
    ex = make()
    ex.set_trajectory(NAMES, [(1.0, [1, 1, 1], [1e-16, -1e-15, 0.0])], now_s=0.0)
    assert ex.end_time_s == pytest.approx(1.0)


def test_nonzero_end_velocity_allowed_when_configured():
    ex = JointTrajectoryExecutor(NAMES, allow_nonzero_velocity_at_trajectory_end=True)
    ex.set_trajectory(NAMES, [(1.0, [1, 1, 1], [0.1, 0.1, 0.1])], now_s=0.0)
    assert ex.end_time_s == pytest.approx(1.0)


# ---------------------------------------------------------------------- joint limits (the Panda's)
PANDA = [f"panda_joint{i}" for i in range(1, 8)]


def panda_executor():
    from coop_robot.control.planning import JointLimits
    from coop_robot.geometry import world_geometry

    home = np.array(world_geometry().robot_home_joint_positions_rad)
    return JointTrajectoryExecutor(PANDA, home, limits=JointLimits.panda()), home


def with_joint(q, index, value):
    q = list(q)
    q[index] = value
    return q


def test_huge_positions_are_rejected_naming_the_joint_and_the_limit():
    ex, home = panda_executor()
    with pytest.raises(TrajectoryRejected, match=r"panda_joint1 position 1e\+308 rad at point #0 .*2\.8973"):
        ex.set_trajectory(PANDA, [(1.0, with_joint(home, 0, 1e308))], now_s=0.0, current_q_rad=home)


def test_a_pose_beyond_the_joint_limits_is_rejected():
    ex, home = panda_executor()
    # panda_joint4 must stay below -0.0698 rad; the second point is a little above.
    points = [(1.0, with_joint(home, 3, -1.0)), (2.0, with_joint(home, 3, 0.1))]
    with pytest.raises(TrajectoryRejected, match=r"panda_joint4 position 0\.1 rad at point #1 .*-0\.0698"):
        ex.set_trajectory(PANDA, points, now_s=0.0, current_q_rad=home)


def test_a_first_point_one_millisecond_away_is_rejected_for_its_velocity():
    ex, home = panda_executor()
    # 0.045 rad in 1 ms: 45 rad/s on panda_joint1 (limit 2.175 rad/s).
    with pytest.raises(TrajectoryRejected, match=r"panda_joint1 velocity 45 rad/s on the segment from the current "
                                                 r"state to point #0 .*limit 2\.175 rad/s"):
        ex.set_trajectory(PANDA, [(0.001, with_joint(home, 0, home[0] + 0.045))], now_s=0.0, current_q_rad=home)


def test_a_stop_from_beyond_the_velocity_limit_is_accepted_and_no_faster_move_is():
    """Fault campaign at 9340324, session 24: a replayed old trajectory was jumped into and drove
    panda_joint2 past its velocity limit; the controller's settling stop from there (one point at
    rest) was refused for the speed of its first segment -- the speed the arm already had -- and the
    arm stayed on the replayed move, in and out of the zone, for 1.9 s. A segment from the current
    state may be as fast as the arm already moves; it may not be faster."""
    ex, home = panda_executor()
    qd = [0.0] * 7
    qd[1] = 1.5 * 2.175                                    # panda_joint2 at 1.5 times its limit
    stop = with_joint(home, 1, home[1] + 0.5 * qd[1] * 0.3)   # at rest 0.3 s on, braking evenly
    ex.set_trajectory(PANDA, [(0.3, stop, [0.0] * 7)], now_s=0.0, current_q_rad=home, current_qd_rad_s=qd)
    speeds = [abs(ex.reference(t)[1][1]) for t in np.linspace(0.0, 0.3, 61)]
    assert max(speeds) <= qd[1] + 1e-9 and speeds[-1] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(TrajectoryRejected, match="panda_joint2 velocity"):
        faster = with_joint(home, 1, home[1] + 2.0 * qd[1] * 0.3)
        ex.set_trajectory(PANDA, [(0.3, faster, [0.0] * 7)], now_s=0.0, current_q_rad=home, current_qd_rad_s=qd)


def test_the_running_trajectory_keeps_going_after_a_rejection():
    ex, home = panda_executor()
    goal = with_joint(home, 0, home[0] + 0.5)
    ex.set_trajectory(PANDA, [(2.0, goal, [0.0] * 7)], now_s=0.0, current_q_rad=home)
    q_mid, qd_mid = ex.reference(1.0)
    with pytest.raises(TrajectoryRejected, match="panda_joint1"):
        ex.set_trajectory(PANDA, [(1.001, with_joint(home, 0, 1e308))], now_s=1.0, current_q_rad=q_mid,
                          current_qd_rad_s=qd_mid)
    assert np.allclose(ex.reference(1.5)[0][0], home[0] + 0.5 * 0.84375)  # Hermite at 3/4: 3s^2 - 2s^3
    assert np.allclose(ex.reference(2.0)[0], goal) and ex.end_time_s == pytest.approx(2.0)


def test_accelerations_between_points_beyond_the_limits_are_rejected():
    ex, home = panda_executor()
    # panda_joint2 (7.5 rad/s^2) asked for 20 rad/s^2 by the points themselves.
    zeros = [0.0] * 7
    points = [(0.5, home, zeros, zeros), (1.0, home, zeros, with_joint(zeros, 1, 20.0)), (1.5, home, zeros, zeros)]
    with pytest.raises(TrajectoryRejected, match=r"panda_joint2 acceleration 20 rad/s\^2 on the segment from point #0 "
                                                 r"to point #1 .*limit 7\.5 rad/s\^2"):
        ex.set_trajectory(PANDA, points, now_s=0.0, current_q_rad=home)


def test_jerk_between_points_beyond_the_limits_is_rejected():
    ex, home = panda_executor()
    # 0.2 mrad of panda_joint1 between rest states 10 ms apart (a minimum-jerk quintic): peak jerk
    # 60 * 2e-4 / 0.01^3 = 12000 rad/s^3 (limit 7500), acceleration 11.5 rad/s^2 (limit 15).
    zeros = [0.0] * 7
    points = [(0.5, home, zeros, zeros), (0.51, with_joint(home, 0, home[0] + 2e-4), zeros, zeros)]
    with pytest.raises(TrajectoryRejected, match=r"panda_joint1 jerk 1\.2e\+04 rad/s\^3 on the segment from point #0 "
                                                 r"to point #1 .*limit 7500 rad/s\^3"):
        ex.set_trajectory(PANDA, points, now_s=0.0, current_q_rad=home)


def test_a_controller_reach_and_an_abort_from_mid_reach_are_accepted_without_warnings():
    from coop_robot.control.controller import ArmController
    from coop_robot.control.planning import ScaledPlan, plan_to_rest

    ctl = ArmController()
    ex, _ = panda_executor()
    reach = ctl.nominal_reach

    def send(plan, now_s, q, qd):
        points = [(p.time_from_start_s, p.positions, p.velocities, p.accelerations)
                  for p in ScaledPlan(plan).points(ctl.config.point_rate_hz)]
        return ex.set_trajectory(PANDA, points, start_time_s=now_s, now_s=now_s, current_q_rad=q,
                                 current_qd_rad_s=qd)

    assert send(reach, 1.0, ctl.home_rad, np.zeros(7)) == []
    for t in np.linspace(0.1, reach.duration_s - 0.1, 9):
        q, qd, qdd = reach.state_at(t)
        abort = plan_to_rest(q, qd, qdd, ctl.home_rad, ctl.limits, ctl.config.velocity_scale,
                             acceleration_scale=ctl.config.stop_acceleration_scale)
        assert send(abort, 1.0 + t, q, qd) == []


def test_segments_already_played_are_not_checked():
    ex, home = panda_executor()
    # Stamped 2 s ago: the first point (reached in 1 ms from the state at the stamp) is long past; from
    # now on only the slow segment from point #0 to point #1 is played.
    points = [(0.001, with_joint(home, 0, home[0] + 0.045)), (3.0, with_joint(home, 0, home[0] + 0.1))]
    assert ex.set_trajectory(PANDA, points, start_time_s=8.0, now_s=10.0, current_q_rad=home) == []


def test_a_jerky_catch_up_to_the_first_point_is_reported_but_not_rejected():
    ex, home = panda_executor()
    # The arm is at rest; the first point, 20 ms away and 0.2 mrad further, already moves at 0.1 rad/s:
    # the catch-up needs about 20 rad/s^2 on panda_joint2 (limit 7.5), within the velocity limit.
    zeros = [0.0] * 7
    points = [(0.02, with_joint(home, 1, home[1] + 2e-4), with_joint(zeros, 1, 0.1), zeros),
              (1.0, with_joint(home, 1, home[1] + 0.05), zeros, zeros)]
    warnings = ex.set_trajectory(PANDA, points, now_s=0.0, current_q_rad=home, current_qd_rad_s=zeros)
    assert len(warnings) == 1 and "panda_joint2 acceleration" in warnings[0] and "20.0 ms away" in warnings[0]
    assert ex.end_time_s == pytest.approx(1.0)

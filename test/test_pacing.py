"""The sim's pacing core: real-time factor, perception sync and its start-up wait and timeout,
and the output schedule. Wall times are made up, so every case is exact and instant."""

import math

import pytest

from coop_robot.sim.pacing import (
    FRAME_RELEASED,
    MAX_CATCH_UP_S,
    PERCEPTION_TIMED_OUT,
    STARTUP_WAIT_EXPIRED,
    SYNC_STALL_S,
    OutputSchedule,
    PacingConfig,
    SimPacer,
    next_due,
)

DT_S = 1.0 / 240.0
CAMERA_S = 1.0 / 30.0
T0 = 1000.0  # wall clock at start (a monotonic clock is not 0 at start)


def pacer(**config) -> SimPacer:
    return SimPacer(PacingConfig(**{"perception_sync": False, **config}), T0)


def run(p: SimPacer, sim_t_s: float, wall_s: float) -> float:
    """Step as far as the pacer allows at ``wall_s``; the new sim time."""
    while p.may_step(sim_t_s, DT_S, wall_s):
        sim_t_s += DT_S
    return sim_t_s


def test_defaults_are_the_shipped_configuration():
    cfg = PacingConfig()
    assert (cfg.real_time_factor, cfg.perception_sync, cfg.max_perception_lag_s) == (2.0, True, 0.05)
    assert (cfg.perception_startup_wait_s, cfg.perception_timeout_s) == (10.0, 2.0)


def test_real_time_factor_0_runs_as_fast_as_possible():
    p = pacer(real_time_factor=0.0)
    assert p.limit_s(0.0, DT_S, T0) == math.inf
    assert p.may_step(1e6, DT_S, T0)


def test_real_time_factor_sets_sim_seconds_per_wall_second():
    p = pacer(real_time_factor=2.0)
    assert not p.may_step(0.0, DT_S, T0)          # no wall time has passed yet
    assert p.limit_s(0.0, DT_S, T0 + 0.5) == pytest.approx(1.0)
    t = run(p, 0.0, T0 + 0.5)
    assert 1.0 - DT_S < t <= 1.0 + 1e-9


def test_changing_the_real_time_factor_paces_from_now_without_a_jump():
    p = pacer(real_time_factor=2.0)
    t = run(p, 0.0, T0 + 0.5)
    p.set_real_time_factor(1.0, t, T0 + 0.5)
    assert p.limit_s(t, DT_S, T0 + 0.5) == pytest.approx(t)
    assert p.limit_s(t, DT_S, T0 + 1.5) == pytest.approx(t + 1.0)
    with pytest.raises(ValueError, match=r"real_time_factor must be a number in \[0, 100\], got -1"):
        p.set_real_time_factor(-1, t, T0 + 1.5)
    with pytest.raises(ValueError, match="got True"):
        p.set_real_time_factor(True, t, T0 + 1.5)


def test_a_sim_held_back_re_anchors_instead_of_bursting_to_catch_up():
    p = pacer(real_time_factor=1.0)
    p.end_tick(0.95, T0 + 1.0)   # 0.05 s behind: within MAX_CATCH_UP_S, catches up
    assert p.limit_s(0.95, DT_S, T0 + 1.0) == pytest.approx(1.0)
    p.end_tick(0.5, T0 + 1.0)    # 0.5 s behind (held back): pace from here
    assert 1.0 - 0.5 > MAX_CATCH_UP_S
    assert p.limit_s(0.5, DT_S, T0 + 1.1) == pytest.approx(0.6)


@pytest.mark.parametrize("field, value", [
    ("real_time_factor", -0.5), ("real_time_factor", 101.0), ("max_perception_lag_s", -0.1),
    ("perception_startup_wait_s", math.nan), ("perception_timeout_s", 0.0), ("camera_period_s", math.inf),
])
def test_bad_configuration_is_refused_naming_the_value(field, value):
    with pytest.raises(ValueError, match=f"{field} must be .* got {value!r}"):
        PacingConfig(**{field: value})


def sync_pacer(**config) -> SimPacer:
    base = {"real_time_factor": 0.0, "perception_sync": True, "max_perception_lag_s": 0.1,
            "perception_startup_wait_s": 1.0, "perception_timeout_s": 2.0, "camera_period_s": CAMERA_S,
            "startup_waits_for_policy": False}   # perception alone here; the policy gate has its own tests
    return SimPacer(PacingConfig(**{**base, **config}), T0)


def test_at_start_up_the_sim_waits_for_perception_advancing_a_frame_per_stall():
    p = sync_pacer()
    assert not p.may_step(0.0, DT_S, T0 + 0.1)               # nothing heard: held at t = 0
    assert not p.may_step(0.0, DT_S, T0 + SYNC_STALL_S - 0.01)
    t = run(p, 0.0, T0 + SYNC_STALL_S + 0.01)                 # a stall releases one camera frame
    assert t == pytest.approx(CAMERA_S, abs=DT_S)
    assert run(p, t, T0 + SYNC_STALL_S + 0.2) == t            # and then waits again
    t2 = run(p, t, T0 + 2 * SYNC_STALL_S + 0.02)
    assert t2 == pytest.approx(t + CAMERA_S, abs=DT_S)
    assert p.take_events() == []


def test_start_up_wait_expired_runs_the_sim_alone_until_perception_answers():
    p = sync_pacer(perception_startup_wait_s=1.0)
    assert p.limit_s(0.0, DT_S, T0 + 1.01) == math.inf
    assert p.take_events() == [STARTUP_WAIT_EXPIRED]
    assert p.limit_s(0.0, DT_S, T0 + 1.5) == math.inf
    assert p.take_events() == []                              # reported once
    assert p.perception_heard(3.0, T0 + 1.6, 3.0) is True          # perception is back: synced again
    assert p.limit_s(3.2, DT_S, T0 + 1.6) == pytest.approx(3.1)


def test_start_up_wait_0_starts_at_full_speed():
    p = sync_pacer(perception_startup_wait_s=0.0)
    assert p.limit_s(0.0, DT_S, T0 + 0.001) == math.inf
    assert p.take_events() == [STARTUP_WAIT_EXPIRED]


def test_perception_limits_the_lead_to_max_perception_lag():
    p = sync_pacer()
    assert p.perception_heard(0.5, T0 + 0.2, 0.5) is False
    t = run(p, 0.5, T0 + 0.25)
    assert 0.6 - DT_S < t <= 0.6 + 1e-9


def test_older_and_repeated_perception_stamps_never_move_the_limit_back():
    p = sync_pacer()
    p.perception_heard(0.5, T0 + 0.2, 0.5)
    p.perception_heard(0.3, T0 + 0.21, 0.55)     # out of order
    p.perception_heard(0.5, T0 + 0.22, 0.55)     # duplicate
    assert p.newest_perception_s == 0.5
    assert p.limit_s(0.55, DT_S, T0 + 0.25) == pytest.approx(0.6)


def test_a_lost_frame_is_released_after_a_stall_without_newer_perception():
    p = sync_pacer()
    p.perception_heard(0.5, T0 + 0.2, 0.5)
    t = run(p, 0.5, T0 + 0.25)
    assert run(p, t, T0 + 0.2 + SYNC_STALL_S - 0.01) == t     # held: perception may still answer
    assert p.take_events() == [] and p.frames_released == 0
    t2 = run(p, t, T0 + 0.2 + SYNC_STALL_S + 0.01)
    assert t2 == pytest.approx(t + CAMERA_S, abs=DT_S)
    # Reported and counted (the node warns: a lost frame leaves the controller a stale hand).
    assert p.take_events() == [FRAME_RELEASED] and p.frames_released == 1
    assert run(p, t2, T0 + 0.2 + SYNC_STALL_S + 0.1) == t2 and p.take_events() == []
    assert run(p, t2, T0 + 0.2 + 2 * SYNC_STALL_S + 0.02) > t2
    assert p.take_events() == [FRAME_RELEASED] and p.frames_released == 2


def test_the_sim_gives_up_waiting_after_the_perception_timeout_and_resumes_when_it_answers():
    p = sync_pacer(perception_timeout_s=2.0)
    p.perception_heard(0.5, T0 + 0.2, 0.5)
    assert p.limit_s(0.6, DT_S, T0 + 2.1) < 1.0               # 1.9 s of silence: still held
    assert p.take_events() == [FRAME_RELEASED]                # (a frame at a time)
    assert p.limit_s(0.6, DT_S, T0 + 2.3) == math.inf         # 2.1 s: runs alone
    assert p.take_events() == [PERCEPTION_TIMED_OUT]
    assert p.may_step(50.0, DT_S, T0 + 5.0)
    assert p.take_events() == []
    assert p.perception_heard(49.9, T0 + 5.1, 50.0) is True
    assert p.limit_s(50.0, DT_S, T0 + 5.1) == pytest.approx(50.0)
    assert p.perception_heard(49.95, T0 + 5.2, 50.0) is False


def test_real_time_factor_and_perception_sync_both_hold_the_sim():
    p = sync_pacer(real_time_factor=1.0)
    p.set_real_time_factor(1.0, 5.0, T0)                          # the sim is at 5.0 s
    p.perception_heard(5.0, T0 + 0.2, 5.0)
    assert p.limit_s(5.0, DT_S, T0 + 0.02) == pytest.approx(5.02)  # pacing is the tighter limit
    p.set_real_time_factor(0.0, 5.0, T0 + 0.5)
    assert p.limit_s(5.0, DT_S, T0 + 0.5) == pytest.approx(5.1)   # now perception is


def test_outputs_are_due_on_their_own_grids_and_the_clock_precedes_every_one():
    schedule = OutputSchedule(clock_period_s=0.004, joint_state_period_s=0.01, camera_period_s=CAMERA_S)
    first = schedule.due(0.0)
    assert (first.clock, first.joint_state, first.camera) == (True, True, True)
    published = {"clock": [], "joint_state": [], "camera": []}
    for k in range(1, 241):   # one simulated second at 240 Hz
        t = k * DT_S
        due = schedule.due(t)
        for name in published:
            if getattr(due, name):
                published[name].append(t)
        assert due.clock or not (due.joint_state or due.camera)
    assert len(published["camera"]) == 30
    assert 99 <= len(published["joint_state"]) <= 100
    # A missed slot is skipped: after a gap the next one is a period after now, not a burst.
    assert next_due(0.10, 0.01, 0.50) == pytest.approx(0.51)
    assert next_due(0.10, 0.01, 0.105) == pytest.approx(0.11)
    with pytest.raises(ValueError, match="camera_period_s must be a finite number > 0, got 0.0"):
        OutputSchedule(0.004, 0.01, 0.0)


def synced(**config) -> SimPacer:
    return sync_pacer(**{"startup_waits_for_policy": True, "perception_startup_wait_s": 10.0, **config})


def test_start_up_lasts_until_the_policy_has_decided_too():
    """Perception answering is not enough: the mirror policy takes seconds to load its network, and
    a partner turn run before it is up leaves the robot never knowing its turn came."""
    p = synced()
    p.perception_heard(0.0, T0 + 0.1, 0.0)
    # still frame by frame: at most one camera frame per SYNC_STALL_S of perception silence
    t = run(p, 0.0, T0 + 0.2)
    assert t <= CAMERA_S + 1e-9
    t = run(p, t, T0 + 0.2 + SYNC_STALL_S + 0.01)
    assert t <= 2 * CAMERA_S + 1e-9
    p.policy_heard()
    p.perception_heard(t, T0 + 1.0, t)
    assert run(p, t, T0 + 1.0) == pytest.approx(t + 0.1, abs=DT_S)   # now perception sync proper


def test_start_up_without_the_policy_gate_ends_with_perception():
    p = synced(startup_waits_for_policy=False)
    p.perception_heard(0.0, T0 + 0.1, 0.0)
    assert run(p, 0.0, T0 + 0.1) == pytest.approx(0.1, abs=DT_S)


def test_a_policy_that_never_decides_does_not_hold_the_sim_past_the_start_up_wait():
    p = synced(perception_startup_wait_s=5.0)
    p.perception_heard(0.0, T0 + 0.1, 0.0)
    assert p.limit_s(0.0, DT_S, T0 + 5.1) == math.inf
    assert p.take_events() == [STARTUP_WAIT_EXPIRED]
    # once expired it never goes back to the start-up hold (no event storm)
    p.perception_heard(0.5, T0 + 5.2, 0.5)
    assert p.limit_s(0.5, DT_S, T0 + 5.2) == pytest.approx(0.6)
    assert p.take_events() == []


def test_a_perceived_hand_stamped_ahead_of_the_sim_is_not_heard():
    """A spoofed /partner/hand stamped 60 s ahead, taken as the newest, let the sim run free of
    perception for the rest of a fault campaign's session (an older stamp never moves the limit
    back): perception fell 0.1-0.45 s behind and the robot met protective stops for 12 s."""
    p = sync_pacer(startup_waits_for_policy=False)
    p.perception_heard(2.0, T0 + 0.1, 2.0)
    assert p.take_future_stamp() is None
    assert p.perception_heard(62.0, T0 + 0.2, 2.03) is False
    assert p.take_future_stamp() == (62.0, 2.03)
    assert p.take_future_stamp() is None                      # reported once
    assert p.newest_perception_s == 2.0
    assert p.limit_s(2.03, DT_S, T0 + 0.2) == pytest.approx(2.1)    # still held by real perception
    # not heard at all: a perception that only publishes such stamps times out as a silent one
    p.perception_heard(62.1, T0 + 2.0, 2.05)
    assert p.take_future_stamp() == (62.1, 2.05)
    assert p.limit_s(2.05, DT_S, T0 + 2.15) == math.inf
    assert p.take_events() == [PERCEPTION_TIMED_OUT]
    # a stamp within half a physics step of the sim's time is the newest frame: heard
    assert p.perception_heard(2.0501, T0 + 2.2, 2.05) is True
    assert p.take_future_stamp() is None

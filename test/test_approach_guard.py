"""Approach guard: a hand perceived outside the zone but moving toward it counts as entering.

A partner who pauses after a false start and then reaches again is outside the zone (perceived
out) while the arm would commit; the guard sees the hand coming and keeps the arm out. Driven
by scripted inputs at 100 Hz (the helpers of test_controller_core).
"""

import numpy as np
import pytest
from test_controller_core import DT_S, ee_ever_inside, run

from coop_robot.control.controller import ArmController, ControllerConfig, partner_approaching
from coop_robot.geometry import Zone

ZONE = Zone((0.45, -0.20, 0.626), (0.75, 0.20, 0.926))
# The partner's side of the zone: +x beyond max_m[0]; the hand moves along -x into it.
HAND_AT_REST = np.array([1.00, 0.0, 0.75])
TOWARD = np.array([-0.5, 0.0, 0.0])


@pytest.mark.parametrize("hand, velocity, expected", [
    (HAND_AT_REST, TOWARD, True),                         # 0.25 m away at 0.5 m/s: 0.5 s <= 0.6 s
    (HAND_AT_REST, 0.3 * TOWARD, False),                  # 0.15 m/s toward: would take 1.7 s
    (HAND_AT_REST, -TOWARD, False),                       # moving away (a withdraw)
    (HAND_AT_REST, np.array([0.0, 0.5, 0.0]), False),     # sideways: no closing speed
    (HAND_AT_REST, np.array([-0.1, 0.0, 0.0]), False),    # noise-level speed on a resting hand
    (np.array([0.80, 0.0, 0.75]), np.array([-0.12, 0.0, 0.0]), False),  # slower than the floor
    (np.array([0.80, 0.0, 0.75]), np.array([-0.2, 0.0, 0.0]), True),    # 5 cm at 0.2 m/s
    (np.array([0.60, 0.0, 0.75]), TOWARD, False),         # inside: the in-zone flag decides
    (HAND_AT_REST, np.array([np.nan] * 3), False),        # velocity unknown
    (None, TOWARD, False),
])
def test_partner_approaching_predicts_reaching_the_zone_within_the_horizon(hand, velocity, expected):
    assert partner_approaching(ZONE, hand, velocity, horizon_s=0.6, min_speed_mps=0.15) is expected


def test_a_zero_horizon_disables_the_guard():
    assert not partner_approaching(ZONE, HAND_AT_REST, 4 * TOWARD, horizon_s=0.0, min_speed_mps=0.15)


@pytest.mark.parametrize("field, value", [("approach_horizon_s", -0.1), ("approach_horizon_s", np.nan),
                                          ("approach_min_speed_mps", -1.0)])
def test_invalid_guard_parameters_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        ControllerConfig(**{field: value})


@pytest.fixture(scope="module")
def base_controller():
    return ArmController(ControllerConfig())


@pytest.fixture
def ctl(base_controller):
    base_controller.reset()
    return base_controller


def reaching_after(t_start_s):
    """Hand outside at rest, then moving toward the zone from t_start_s on."""
    return lambda t: {"hand": HAND_AT_REST, "velocity": TOWARD if t >= t_start_s - 1e-9 else np.zeros(3)}


@pytest.fixture(scope="module")
def direct_controller():
    """Without anticipation: the approach guard alone decides whether a reach starts or goes on."""
    return ArmController(ControllerConfig(anticipation=False))


def test_a_hand_coming_toward_the_zone_keeps_the_arm_from_starting(direct_controller):
    ctl = direct_controller
    ctl.reset()
    rec = run(ctl, lambda t: {"hand": HAND_AT_REST, "velocity": TOWARD}, 2.0)
    assert rec.names() == [] and not rec.commands
    assert not ee_ever_inside(ctl, rec)


def test_a_hand_coming_with_anticipation_keeps_the_arm_at_the_waiting_point(ctl):
    rec = run(ctl, lambda t: {"hand": HAND_AT_REST, "velocity": TOWARD}, 2.5)
    assert rec.names() == ["reach_start"] and ctl.phase == "held"
    assert ctl.path_time_s(2.5) <= ctl.nominal_wait_s + 1e-6
    assert not ee_ever_inside(ctl, rec)


def test_a_hand_coming_before_the_commit_aborts_the_reach(direct_controller):
    ctl = direct_controller
    ctl.reset()
    start = 0.3
    assert start < ctl.nominal_commit_s
    rec = run(ctl, reaching_after(start), 3.0)
    assert rec.names()[:3] == ["reach_start", "abort", "home"]
    assert rec.time_of("abort") == pytest.approx(start, abs=DT_S + 1e-9)
    assert not ee_ever_inside(ctl, rec)


def test_a_resting_hand_outside_lets_the_reach_go_in(ctl):
    # (Separation monitoring slows the reach near the resting hand: it gets there later than 1.95 s.)
    rec = run(ctl, lambda t: {"hand": HAND_AT_REST, "velocity": np.array([-0.05, 0.03, 0.0])}, 6.0)
    assert rec.names()[:3] == ["reach_start", "entry_commit", "act_start"]


def test_a_hand_coming_while_the_arm_waits_holds_it_until_the_hand_stops(ctl):
    # Partner inside until 1.0 s (the arm stops at the waiting point), then perceived outside but
    # coming back in until 1.6 s, then at rest: the arm goes on only once the hand has stopped.
    def script(t):
        coming = 1.0 <= t < 1.6
        return {"partner_in_zone": t < 1.0, "hand": HAND_AT_REST, "velocity": TOWARD if coming else np.zeros(3)}
    rec = run(ctl, script, 5.0)
    assert rec.names()[:3] == ["reach_start", "entry_commit", "act_start"]
    reach_cmds = [c for c in rec.commands if c.trajectory.purpose == "reach"]
    # Held: sent to stop at the waiting point; resumed: sent on past it (to the gate before the zone,
    # where an uncommitted reach stops at the latest, then on into the zone at the commit).
    wait_tau = ctl.nominal_wait_s
    held = next(c for c in reach_cmds if abs(c.trajectory.plan.stop_tau_s - wait_tau) < 1e-6)
    resumed = next(c for c in reach_cmds if c.t_s > held.t_s and c.trajectory.plan.stop_tau_s > wait_tau + 1e-6)
    assert held.t_s < 1.0
    assert resumed.t_s == pytest.approx(1.6, abs=DT_S + 1e-9)
    assert not any(held.t_s < c.t_s < 1.6 and c.trajectory.plan.stop_tau_s > wait_tau + 1e-6 for c in reach_cmds)

"""The SSM sample codec (coop_robot/timing/ssm_sample.py): DiagnosticStatus key/values <-> SsmSample."""

import math

import pytest

from coop_robot.timing.ssm_sample import SSM_KEYS, SsmSample


def sample(**kw):
    values = dict(t_s=12.5, separation_m=0.4321, protective_distance_m=0.25, robot_closing_mps=0.3,
                  human_closing_mps=-0.1, speed_scale=0.5, mode="scaled")
    values.update(kw)
    return SsmSample(**values)


def test_round_trip_is_exact():
    s = sample(separation_m=0.1 + 0.2)
    assert SsmSample.from_key_values(s.to_key_values(), s.t_s) == s


def test_keys_are_the_documented_ones_in_order():
    assert [k for k, _ in sample().to_key_values()] == list(SSM_KEYS)


def test_no_person_seen_infinite_separation_survives():
    s = SsmSample.from_key_values(sample(separation_m=math.inf).to_key_values(), 1.0)
    assert s.separation_m == math.inf and s.margin_m == math.inf


def test_extra_keys_are_ignored():
    assert SsmSample.from_key_values([*sample().to_key_values(), ("note", "x")], 12.5) == sample()


def test_missing_key_is_named():
    pairs = [(k, v) for k, v in sample().to_key_values() if k != "protective_distance_m"]
    with pytest.raises(ValueError, match="protective_distance_m"):
        SsmSample.from_key_values(pairs, 1.0)


def test_non_number_is_named_with_its_value():
    pairs = [(k, "close" if k == "separation_m" else v) for k, v in sample().to_key_values()]
    with pytest.raises(ValueError, match="separation_m = 'close'"):
        SsmSample.from_key_values(pairs, 1.0)


def test_unknown_mode_is_rejected_both_ways():
    pairs = [(k, "halt" if k == "mode" else v) for k, v in sample().to_key_values()]
    with pytest.raises(ValueError, match="mode = 'halt'"):
        SsmSample.from_key_values(pairs, 1.0)
    with pytest.raises(ValueError, match="halt"):
        sample(mode="halt").to_key_values()


def test_non_finite_time_is_rejected():
    with pytest.raises(ValueError, match="time"):
        SsmSample.from_key_values(sample().to_key_values(), math.nan)

"""``coop-robot replay``: a recorded perception stream run offline through a policy."""

from __future__ import annotations

import csv
import json
import math

import pytest

from coop_robot.analysis.replay import replay_bag  # noqa: E402
from coop_robot.analysis.synthetic import PERCEPTION_TOPICS, write_session_bag  # noqa: E402
from coop_robot.cli import main  # noqa: E402

TICK_S = 0.02


@pytest.fixture(scope="module")
def slow_bag(tmp_path_factory):
    # Recorded robot starts reaching 0.625 s after each exit (gap 1.5 s - 0.875 s reach), so a
    # reactive policy with a 0.4 s debounce decides while the recorded robot is still at home.
    path = tmp_path_factory.mktemp("replay") / "slow"
    truth = write_session_bag(path, gaps_s=[1.5, 1.5, 1.5], storage="mcap")
    return path, truth


def test_reactive_replay_acts_one_debounce_after_the_perceived_exit(slow_bag):
    path, truth = slow_bag
    result = replay_bag(path, "reactive", {"debounce_s": 0.4})
    turns = result.turns()
    assert len(turns) == 3
    for t, want in zip(turns, truth):
        first_tick_after_exit = math.ceil(want.partner_exit_s / TICK_S - 1e-6) * TICK_S
        assert abs(t.replay_act_s - (first_tick_after_exit + 0.4)) <= TICK_S + 1e-6
        # the recorded policy's first "act" tick (50 Hz grid) at or after its decision time
        assert abs(t.recorded_act_s - math.ceil(want.decision_s / TICK_S - 1e-6) * TICK_S) < 1e-6
        assert abs(t.reach_start_s - want.reach_start_s) < 1e-6
    s = result.summary()
    assert -0.23 < s["median_decision_diff_s"] < -0.17        # 0.4 s vs the recorded 0.605 s
    assert 0.5 < s["agreement"] < 1.0


def test_replay_command_writes_csv_json_and_plot(slow_bag, tmp_path):
    path, _ = slow_bag
    out = tmp_path / "out"
    assert main(["replay", str(path), "--policy", "reactive", "--set", "debounce_s=0.2", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "replay.csv")))
    assert len(rows) == 3 and all(float(r["decision_diff_s"]) < 0 for r in rows)
    assert json.loads((out / "replay.json").read_text())["policy"] == "reactive"
    assert (out / "replay.png").stat().st_size > 0


def test_oracle_replay_without_partner_plan_is_a_clear_error(tmp_path, capsys):
    write_session_bag(tmp_path / "real", gaps_s=[0.5], topics=PERCEPTION_TOPICS)
    assert main(["replay", str(tmp_path / "real"), "--policy", "oracle", "--out", str(tmp_path / "o")]) == 2
    assert "/sim/ground_truth/partner_plan" in capsys.readouterr().err


def test_oracle_replay_uses_the_recorded_partner_plan(slow_bag):
    path, truth = slow_bag
    result = replay_bag(path, "oracle", {"entry_lead_s": 0.85})
    for t, want in zip(result.turns(), truth):
        assert abs(t.replay_act_s - (want.partner_exit_s - 0.85)) <= TICK_S + 1e-6


def test_reactive_debounce_is_not_lost_to_float_rounding():
    from coop_robot.policy import Observation, make_policy

    policy = make_policy("reactive", debounce_s=0.4)
    assert 53.98 - 53.58 < 0.4                       # the float trap

    def step(t_s, inside):
        return policy.step(Observation(t_s=t_s, partner_in_zone=inside, perception_age_s=0.0,
                                       robot_state="home")).action

    assert step(53.0, True) == "wait" and step(53.58, False) == "wait" and step(53.96, False) == "wait"
    assert step(53.98, False) == "act"


def test_replay_of_an_epoch_clock_bag_acts_on_the_debounce_tick(tmp_path):
    from lab_bags import FRAME_NS, SLOW_SCRIPT, T0_NS, first_at_or_after, write_lab_bag

    bag = write_lab_bag(tmp_path / "slow_lab", script=SLOW_SCRIPT, turns=None)
    result = replay_bag(bag, "reactive", {"debounce_s": 0.4})
    turns = result.turns()
    assert len(turns) == len(SLOW_SCRIPT.robot)
    tick_ns = int(round(TICK_S * 1e9))
    for got, (_, partner_exit_s) in zip(turns, SLOW_SCRIPT.partner):
        seen_out_s = first_at_or_after(partner_exit_s, FRAME_NS)      # the first frame that shows it empty
        first_tick_s = first_at_or_after(seen_out_s, tick_ns)        # the first tick that sees that frame
        assert got.replay_act_s - T0_NS * 1e-9 == pytest.approx(first_tick_s + 0.4, abs=1e-6)

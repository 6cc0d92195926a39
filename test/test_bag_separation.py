"""Separation, SSM, partner turns and fluency through a recorded bag: written with the SSM topics
and the partner phase (coop_robot.analysis.synthetic), read back by `coop-robot analyze`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coop_robot.analysis.session import analyze_bag
from coop_robot.analysis.synthetic import ALL_TOPICS, CONTROLLER_SEPARATION_BIAS_M, SSM_TOPICS, write_session_bag
from coop_robot.cli import main

GAPS_S = [0.9, 0.4, 0.9, 0.5]     # turn 1's entry falls in a false start of the partner's next turn
VIOLATION_AT_S = [3.0]
STOP_S = [(2.5, 2.8)]


@pytest.fixture(scope="module")
def ssm_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("ssm") / "ssm_bag"
    turns = write_session_bag(path, gaps_s=GAPS_S, topics=ALL_TOPICS + SSM_TOPICS, ssm_violations_s=VIOLATION_AT_S,
                              ssm_stops_s=STOP_S, unfinished_entries=[0])
    return path, turns


def _ground_truth_samples(path):
    """(t_s, separation_m, protective_distance_m) of every /sim/ground_truth/ssm message, read directly."""
    from rosbags.highlevel import AnyReader

    rows = []
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic == "/sim/ground_truth/ssm"]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            vals = {kv.key: float(kv.value) for kv in msg.status[0].values if kv.key != "mode"}
            rows.append((msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, vals["separation_m"],
                         vals["protective_distance_m"]))
    return np.array(rows)


def test_per_turn_separation_minima_match_the_recorded_samples_of_each_turn_window(ssm_bag):
    path, turns = ssm_bag
    result = analyze_bag(path)
    rows = _ground_truth_samples(path)
    previous_exit = -np.inf
    for rec, truth in zip(result.records, turns):
        window = rows[(rows[:, 0] > previous_exit) & (rows[:, 0] <= truth.robot_exit_s)]
        assert rec.min_separation_m == pytest.approx(window[:, 1].min(), abs=1e-9)
        assert rec.min_ssm_margin_m == pytest.approx((window[:, 1] - window[:, 2]).min(), abs=1e-9)
        previous_exit = truth.robot_exit_s
    assert result.summary["min_separation_m"] == pytest.approx(min(r.min_separation_m for r in result.records))


def test_bag_counts_the_scripted_violation_stop_and_unfinished_turn_entry(ssm_bag):
    path, _ = ssm_bag
    s = analyze_bag(path).summary
    assert s["scored_on"] == "ground_truth"
    assert s["ssm_violations"] == len(VIOLATION_AT_S)
    assert s["protective_stop_s"] == pytest.approx(sum(b - a for a, b in STOP_S))
    assert s["unfinished_turn_entries"] == 1 and s["per_turn"][0]["unfinished_turn_entry"]
    assert s["partner_active_from"] == "partner_turn" and s["robot_active_from"] == "reach_start_to_home"
    assert 0.0 < s["human_idle_fraction"] < 1.0 and 0.0 < s["concurrent_activity_fraction"] < 1.0


def test_perception_scoring_uses_the_controllers_ssm_view(ssm_bag):
    path, _ = ssm_bag
    s = analyze_bag(path).summary
    assert s["perception_summary"]["min_separation_m"] == pytest.approx(
        s["min_separation_m"] - CONTROLLER_SEPARATION_BIAS_M, abs=1e-9)


def test_analyze_command_prints_safety_and_fluency_and_draws_the_exit_figure(ssm_bag, tmp_path, capsys):
    path, _ = ssm_bag
    out = tmp_path / "out"
    assert main(["analyze", str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "safety: near misses 0, unfinished-turn entries 1" in printed and "SSM violations 1" in printed
    assert "fluency: pace" in printed
    assert (out / path.name / "separation_at_partner_exit.png").is_file()
    summary = json.loads((out / path.name / "summary.json").read_text())
    assert summary["ssm_violations"] == 1
    html = (out / "report.html").read_text()
    assert "min separation (m)" in html and "separation_at_partner_exit" in html
    assert "min_separation_m" in (out / path.name / "turns.csv").read_text().splitlines()[0]

"""Lab bags (``ros2 bag record`` layout, written by rosbags' Writer) scored right through the CLI.

The bags come from :mod:`lab_bags`: scripted turns with known gaps and overlaps (a negative gap,
a re-entry of the partner while the robot is inside, a false start), the arm's joints in shuffled
order and the gripper on /joint_states in messages of its own, /controller/events but no
/sim/ground_truth/*. Every per-turn figure must be within one camera frame of the script.
"""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
import yaml

pytest.importorskip("rosbags")

from lab_bags import FRAME_S, LAB_PARTNER_TURNS, LAB_TURNS, T0_NS, write_lab_bag  # noqa: E402

from coop_robot.cli import main  # noqa: E402

T0_S = T0_NS * 1e-9
#: "within one frame period": float seconds at epoch size carry ~0.2 us of rounding.
WITHIN_FRAME_S = FRAME_S + 1e-6
VARIANTS = {"sqlite3": {"storage": "sqlite3"}, "mcap": {"storage": "mcap"},
            "mcap_zstd": {"storage": "mcap", "zstd": True}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    return {name: write_lab_bag(root / f"lab_{name}", **kw) for name, kw in VARIANTS.items()}


def _analyze(tmp_path, *args, out="out"):
    return main(["analyze", *map(str, args), "--out", str(tmp_path / out), "--quiet", "--no-plots",
                 "--ray-address", "none"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lab_bag_per_turn_figures_within_one_frame_through_the_cli(lab, variant, tmp_path, capsys):
    bag = lab[variant]
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    suffix = "db3" if variant == "sqlite3" else "mcap"
    assert meta["version"] == 9 and meta["relative_file_paths"] == [f"{bag.name}_0.{suffix}"]
    assert not any(t["topic_metadata"]["name"].startswith("/sim/") for t in meta["topics_with_message_count"])
    if variant == "mcap_zstd":
        from mcap.reader import make_reader

        with open(bag / f"{bag.name}_0.mcap", "rb") as fh:
            assert {c.compression for c in make_reader(fh).get_summary().chunk_indexes} == {"zstd"}

    assert _analyze(tmp_path, bag) == 0
    out = capsys.readouterr().out
    assert "live /turn/timing agrees" in out
    summary = json.loads((tmp_path / "out" / bag.name / "summary.json").read_text())
    assert summary["scored_on"] == "perception"          # /controller/events is not ground truth
    assert summary["turns"] == len(LAB_TURNS) and summary["partner_turns"] == LAB_PARTNER_TURNS
    assert not [i for i in summary["issues"] if i["severity"] == "error"]
    assert summary["live_check"]["agrees"] and summary["live_check"]["turns_compared"] == len(LAB_TURNS)
    rows = list(csv.DictReader(open(tmp_path / "out" / bag.name / "turns.csv")))
    assert [int(r["turn"]) for r in rows] == list(range(1, len(LAB_TURNS) + 1))
    for row, want in zip(rows, LAB_TURNS):
        for key in ("gap_s", "overlap_s", "response_latency_s"):
            assert abs(float(row[key]) - getattr(want, key)) <= WITHIN_FRAME_S, (row["turn"], key, row[key])
        for key in ("partner_exit_s", "robot_enter_s", "robot_exit_s"):
            assert abs(float(row[key]) - T0_S - getattr(want, key)) <= WITHIN_FRAME_S, (row["turn"], key, row[key])
        assert row["overlapped"] == str(want.overlap_s > 0 or want.gap_s < 0) and row["contact"] == "False"
    for rec, want in zip(summary["per_turn"], LAB_TURNS):
        assert abs(rec["gap_s"] - want.gap_s) <= WITHIN_FRAME_S


def test_wrong_type_on_a_needed_topic_is_an_error_naming_topic_and_types(tmp_path, capsys):
    bag = write_lab_bag(tmp_path / "wrong", wrong_types={"/partner/in_zone": "std_msgs/msg/String"})
    assert _analyze(tmp_path, bag) == 1
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "/partner/in_zone has type" in ln)
    assert "std_msgs/msg/String" in line and "expected std_msgs/msg/Bool" in line
    summary = json.loads((tmp_path / "out" / "wrong" / "summary.json").read_text())
    assert summary["partner_turns"] == 0 and summary["median_gap_s"] is None   # "false" was not read as True
    assert any(i["kind"] == "wrong_type" and i["topic"] == "/partner/in_zone" for i in summary["issues"])


def test_ground_truth_topic_without_events_still_scores_on_perception(tmp_path):
    bag = write_lab_bag(tmp_path / "gt_topic",
                        extra_topics={"/sim/ground_truth/events": "sensor_msgs/msg/TimeReference"})
    assert _analyze(tmp_path, bag) == 0
    summary = json.loads((tmp_path / "out" / "gt_topic" / "summary.json").read_text())
    assert summary["scored_on"] == "perception" and summary["turns"] == len(LAB_TURNS)


def test_wrong_robot_base_is_a_live_check_error_and_a_non_zero_exit(lab, tmp_path, capsys):
    assert _analyze(tmp_path, lab["mcap"], "--robot-base", "0", "0", "0") == 1
    captured = capsys.readouterr()
    assert "agrees" not in captured.out and "DISAGREES" in captured.out
    assert "/turn/timing" in captured.err and "--robot-base" in captured.err
    summary = json.loads((tmp_path / "out" / lab["mcap"].name / "summary.json").read_text())
    assert not summary["live_check"]["agrees"]
    assert [i for i in summary["issues"] if i["kind"] == "live_check" and i["severity"] == "error"]


def test_live_timing_off_by_more_than_a_frame_is_an_error(tmp_path, capsys):
    from dataclasses import replace

    shifted = tuple(replace(t, gap_s=t.gap_s + 0.1) if k == 2 else t for k, t in enumerate(LAB_TURNS))
    bag = write_lab_bag(tmp_path / "shifted", turns=shifted)
    assert _analyze(tmp_path, bag) == 1
    summary = json.loads((tmp_path / "out" / "shifted" / "summary.json").read_text())
    assert summary["live_check"]["turns_disagreeing"] == [3]
    assert "turn 3" in capsys.readouterr().err


def test_truncated_mcap_without_metadata_is_read_the_same_by_analyze_and_replay(tmp_path, capsys):
    bag = write_lab_bag(tmp_path / "cut", storage="mcap")
    (bag / "metadata.yaml").unlink()
    mcap = bag / "cut_0.mcap"
    os.truncate(mcap, mcap.stat().st_size * 2 // 3)
    assert _analyze(tmp_path, bag) == 1
    analysed = json.loads((tmp_path / "out" / "cut" / "summary.json").read_text())
    assert 0 < analysed["turns"] < len(LAB_TURNS)
    assert main(["replay", str(bag), "--policy", "reactive", "--out", str(tmp_path / "replay")]) == 1
    err = capsys.readouterr().err
    assert "has no" not in err and "truncated" in err and "metadata.yaml is missing" in err
    replayed = json.loads((tmp_path / "replay" / "replay.json").read_text())
    assert replayed["ticks"] > 0 and replayed["robot_turns"] >= analysed["turns"]
    # both read the same intact records: the same in_zone messages, so the same perceived partner turns
    assert replayed["robot_turns"] <= analysed["partner_turns"]


def test_empty_bag_is_a_usage_error_for_analyze_and_replay(tmp_path, capsys):
    bag = write_lab_bag(tmp_path / "empty", empty=True)
    assert _analyze(tmp_path, bag) == 2
    assert main(["replay", str(bag), "--policy", "reactive", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("holds no messages") == 2


def test_exit_rule_usage_errors_are_2_data_problems_1_clean_0(lab, tmp_path, capsys):
    not_a_bag = tmp_path / "notes"
    not_a_bag.mkdir()
    (not_a_bag / "readme.txt").write_text("not a bag\n")
    assert _analyze(tmp_path, not_a_bag) == 2
    assert main(["replay", str(not_a_bag), "--policy", "reactive", "--out", str(tmp_path / "r")]) == 2
    assert "is not a rosbag2 bag" in capsys.readouterr().err
    assert _analyze(tmp_path, tmp_path / "missing") == 2
    assert _analyze(tmp_path, lab["mcap"], "--reorder-window-s", "-1") == 2
    assert main(["replay", str(lab["mcap"]), "--policy", "reactive", "--set", "debounce_s=-1",
                 "--out", str(tmp_path / "r")]) == 2
    # a clean bag and a damaged one: partial results written, the highest status wins
    damaged = shutil.copytree(lab["mcap"], tmp_path / "damaged")
    (damaged / "metadata.yaml").unlink()
    assert _analyze(tmp_path, lab["mcap"], damaged, out="two") == 1
    assert (tmp_path / "two" / "damaged" / "summary.json").is_file()
    assert _analyze(tmp_path, lab["mcap"], not_a_bag, out="three") == 2
    assert main(["replay", str(lab["mcap"]), "--policy", "reactive", "--out", str(tmp_path / "ok")]) == 0


@pytest.mark.parametrize("command", ["analyze", "replay"])
def test_help_states_the_exit_rule(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 clean; 1 a data problem" in out and "2 a usage error" in out
    if command == "analyze":
        assert "one camera frame period" in out

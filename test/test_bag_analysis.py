"""Offline bag analysis (coop_robot.analysis): scoring, damage tolerance, timing checks, report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from coop_robot.analysis.bags import BagReader  # noqa: E402
from coop_robot.analysis.session import analyze_bag  # noqa: E402
from coop_robot.analysis.synthetic import PERCEPTION_TOPICS, write_session_bag  # noqa: E402
from coop_robot.cli import main  # noqa: E402

GAPS_S = [0.30, 0.55, 0.72, 0.41]


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    out = {}
    for storage in ("sqlite3", "mcap"):
        out[storage] = (root / f"perception_{storage}", write_session_bag(
            root / f"perception_{storage}", gaps_s=GAPS_S, storage=storage, topics=PERCEPTION_TOPICS,
            ros2_layout=True))
    out["gt"] = (root / "gt", write_session_bag(root / "gt", gaps_s=GAPS_S, robot_motion="min_jerk", seed=3,
                                                meta={"policy": "mirror", "partner": "fast"}))
    out["long"] = (root / "long", write_session_bag(root / "long", duration_s=40.0, topics=PERCEPTION_TOPICS,
                                                    ros2_layout=True))
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_perception_only_bag_is_scored_on_perception_with_the_true_gaps(bags, storage):
    path, truth = bags[storage]
    suffix = "db3" if storage == "sqlite3" else "mcap"
    assert {p.name for p in path.iterdir()} == {"metadata.yaml", f"{path.name}_0.{suffix}"}
    result = analyze_bag(path)
    assert result.summary["scored_on"] == "perception"
    assert [r.turn for r in result.records] == [1, 2, 3, 4]
    got = np.array([r.gap_s for r in result.records])
    want = np.array([t.gap_s for t in truth])
    assert np.max(np.abs(got - want)) < 1e-6
    assert np.max(np.abs(got - np.array(GAPS_S))) < 0.011  # entries snap to the 10 ms joint-state grid
    assert result.summary["overlap_rate"] == 0.0
    assert result.summary["policy"] == "unknown" and result.summary["seed"] is None
    assert not result.damaged


def test_ground_truth_bag_reproduces_known_and_live_gaps_to_1_ms(bags):
    path, truth = bags["gt"]
    result = analyze_bag(path)
    s = result.summary
    assert s["scored_on"] == "ground_truth"
    assert np.max(np.abs(np.array([r.gap_s for r in result.records]) - [t.gap_s for t in truth])) < 1e-3
    assert s["live_check"]["turns_compared"] == 4 and s["live_check"]["max_abs_gap_diff_s"] < 1e-3
    lat = [r.response_latency_s for r in result.records]
    assert np.allclose(lat, [t.reach_start_s - t.partner_exit_s for t in truth], atol=1e-6)
    assert (s["policy"], s["partner"], s["seed"]) == ("mirror", "fast", 3)
    assert s["perception_summary"]["turns"] == 4   # min-jerk arm: FK on the samples agrees with ground truth
    assert abs(s["perception_summary"]["median_gap_s"] - s["median_gap_s"]) < 1e-3


def _analyze(tmp_path, *bag_paths, name="out"):
    out = tmp_path / name
    rc = main(["analyze", *map(str, bag_paths), "--out", str(out), "--quiet", "--ray-address", "none"])
    return rc, out


def test_truncated_mcap_reports_the_cut_and_scores_what_is_intact(bags, tmp_path, capsys):
    bag = _copy(bags["long"][0], tmp_path / "trunc")
    mcap = next(bag.glob("*.mcap"))
    size = mcap.stat().st_size
    os.truncate(mcap, size - size // 3)
    rc, out = _analyze(tmp_path, bag, name="o")
    err = capsys.readouterr().err
    assert rc == 1
    assert mcap.name in err and "truncated" in err
    summary = json.loads((out / "trunc" / "summary.json").read_text())
    assert summary["damaged"] and 0 < summary["turns"] < len(bags["long"][1])


def test_corrupt_bytes_in_the_middle_are_reported_and_the_rest_is_scored(bags, tmp_path, capsys):
    bag = _copy(bags["long"][0], tmp_path / "corrupt")
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = b"\xff" * 64
    mcap.write_bytes(bytes(data))
    rc, out = _analyze(tmp_path, bag, name="o")
    assert rc == 1
    assert "error:" in capsys.readouterr().err
    summary = json.loads((out / "corrupt" / "summary.json").read_text())
    assert summary["damaged"] and summary["turns"] >= len(bags["long"][1]) - 2


def test_missing_metadata_yaml_reads_the_storage_file_directly(bags, tmp_path, capsys):
    bag = _copy(bags["long"][0], tmp_path / "nometa")
    (bag / "metadata.yaml").unlink()
    rc, out = _analyze(tmp_path, bag, name="o")
    assert rc == 1
    assert "metadata.yaml is missing" in capsys.readouterr().err
    assert json.loads((out / "nometa" / "summary.json").read_text())["turns"] == len(bags["long"][1])


def test_sqlite_file_that_is_not_a_database_is_a_clear_error(bags, tmp_path, capsys):
    bag = _copy(bags["sqlite3"][0], tmp_path / "notdb")
    db = next(bag.glob("*.db3"))
    db.write_text("this is not an sqlite database\n" * 50)
    rc, out = _analyze(tmp_path, bag, name="o")
    err = capsys.readouterr().err
    assert rc == 1
    assert db.name in err and "not a readable SQLite database" in err
    assert "error" in json.loads((out / "notdb" / "summary.json").read_text())


def test_missing_perception_topics_are_named(tmp_path, capsys):
    write_session_bag(tmp_path / "joints_only", gaps_s=[0.4], topics=("/joint_states",))
    rc, _ = _analyze(tmp_path, tmp_path / "joints_only")
    err = capsys.readouterr().err
    assert rc == 1
    assert "/partner/in_zone" in err and "/partner/hand" in err


def test_out_of_order_messages_and_a_backwards_clock_jump_are_reported(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    T, H = ts.types["builtin_interfaces/msg/Time"], ts.types["std_msgs/msg/Header"]
    P, Pt = ts.types["geometry_msgs/msg/PointStamped"], ts.types["geometry_msgs/msg/Point"]

    def point(stamp_ns):
        h = H(stamp=T(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="world")
        return ts.serialize_cdr(P(header=h, point=Pt(x=1.0, y=0.0, z=0.8)), "geometry_msgs/msg/PointStamped")

    with Writer(tmp_path / "clock", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        hand = w.add_connection("/partner/hand", "geometry_msgs/msg/PointStamped", typestore=ts)
        gt = w.add_connection("/sim/ground_truth/robot_ee", "geometry_msgs/msg/PointStamped", typestore=ts)
        for k in range(300):
            log = 10**9 + k * 33_333_333
            stamp = log if k != 100 else log + 40_000_000       # frame 100 stamped after frame 101
            w.write(hand, log, point(stamp))
            jump = 5 * 10**9 if k >= 200 else 0                 # the sim clock restarts 5 s earlier
            w.write(gt, log, point(log - jump))
    result = analyze_bag(tmp_path / "clock")
    kinds = {(i.kind, i.topic) for i in result.issues}
    assert ("out_of_order", "/partner/hand") in kinds
    assert ("clock_jump", "/sim/ground_truth/robot_ee") in kinds
    jump = next(i for i in result.issues if i.kind == "clock_jump")
    assert "largest 4.967 s" in jump.message     # 5 s back minus one 33 ms frame


def test_several_bags_make_one_self_contained_html_report(bags, tmp_path):
    rc, out = _analyze(tmp_path, bags["sqlite3"][0], bags["mcap"][0], bags["gt"][0])
    assert rc == 0
    html = (out / "report.html").read_text()
    for name in ("perception_sqlite3", "perception_mcap", "gt"):
        assert name in html and (out / name / "turns.csv").is_file()
    assert html.count("data:image/png;base64,") >= 1 + 3 * 4
    assert 'src="http' not in html and "<link" not in html
    assert "ground_truth" in html and "perception" in html


def test_reader_streams_in_time_order(bags):
    with BagReader(bags["gt"][0]) as bag:
        times = [m.log_ns for m in bag.messages()]
    assert times == sorted(times) and len(times) == sum(bag.message_counts.values())


def test_metadata_yaml_of_ros2_layout_names_the_storage_file(bags):
    meta = yaml.safe_load((bags["mcap"][0] / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["relative_file_paths"] == ["perception_mcap_0.mcap"]


def test_the_liveness_bounds_decisions_are_counted_from_the_bag(tmp_path):
    """``act fallback`` on /policy/decision (the policy's liveness bound decided the turn): analyze
    counts the turns it decided; a bag without the policy's decisions says it cannot (None)."""
    from coop_robot.analysis.synthetic import ALL_TOPICS
    from coop_robot.timing.metrics import format_summary

    write_session_bag(tmp_path / "fb", gaps_s=GAPS_S, fallback_turns=(1, 3))
    result = analyze_bag(tmp_path / "fb")
    assert result.summary["liveness_fallbacks"] == 2
    assert any("liveness fallbacks 2" in line for line in format_summary(result.summary))
    write_session_bag(tmp_path / "none", gaps_s=GAPS_S)
    assert analyze_bag(tmp_path / "none").summary["liveness_fallbacks"] == 0
    write_session_bag(tmp_path / "nodec", gaps_s=GAPS_S, topics=[t for t in ALL_TOPICS if t != "/policy/decision"])
    result = analyze_bag(tmp_path / "nodec")
    assert result.summary["liveness_fallbacks"] is None
    assert not any("liveness fallbacks" in line for line in format_summary(result.summary))

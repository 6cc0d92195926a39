"""`coop-robot sim` rejects bad input clearly, before or while starting the graph."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import free_ros_domain, release_ros_domain

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=120):
    domain = free_ros_domain()
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    try:
        return subprocess.run([sys.executable, "-m", "coop_robot.cli", *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=REPO)
    finally:
        release_ros_domain(domain)


def test_invalid_profile_file_is_rejected_before_anything_starts(tmp_path):
    bad = tmp_path / "bad_partner.yaml"
    text = (REPO / "config" / "partners" / "typical.yaml").read_text()
    bad.write_text(text.replace("median: 0.25", "median: -0.25"))
    res = run_cli("sim", "--turns", "1", "--partner", str(bad))
    assert res.returncode == 2
    assert "bad_partner.yaml" in res.stderr and "reaction_time_s" in res.stderr
    assert "starting" not in res.stdout


def test_unknown_profile_name_lists_the_shipped_ones():
    res = run_cli("sim", "--turns", "1", "--partner", "grumpy")
    assert res.returncode == 2 and "typical" in res.stderr


def test_malformed_parameter_file_is_rejected_before_anything_starts(tmp_path):
    bad = tmp_path / "cell.yaml"
    bad.write_text("controller:\n  velocity_scale: 0.3\n")  # missing ros__parameters
    res = run_cli("sim", "--turns", "1", "--params-file", str(bad))
    assert res.returncode == 2
    assert "cell.yaml" in res.stderr and "ros__parameters" in res.stderr


def test_out_of_range_parameter_stops_the_session_naming_node_and_parameter(tmp_path):
    bad = tmp_path / "fast_arm.yaml"
    bad.write_text("controller:\n  ros__parameters:\n    velocity_scale: 3.0\n")
    res = run_cli("sim", "--turns", "1", "--params-file", str(bad), "--log-dir", str(tmp_path / "logs"))
    assert res.returncode == 1
    assert "controller" in res.stderr and "velocity_scale" in res.stderr
    # every node of the graph was shut down: none of their logs is still being written by a live process
    out = subprocess.run(["pgrep", "-f", str(tmp_path / "logs")], capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_turns_must_be_positive():
    res = run_cli("sim", "--turns", "0")
    assert res.returncode == 2 and "--turns" in res.stderr


SIM_SUMMARY_KEYS = {"turns", "median_gap_s", "p90_gap_s", "overlap_rate", "overlap_s_total", "contacts",
                    "throughput_per_min", "scored_on", "policy", "partner", "seed"}


def test_eval_writes_the_sim_summary_keys_and_is_deterministic(tmp_path):
    import json

    outs = []
    for name in ("a.json", "b.json"):
        res = run_cli("eval", "--turns", "8", "--seed", "5", "--quiet", "--set", "debounce_s=0.3",
                      "--summary-json", str(tmp_path / name))
        assert res.returncode == 0, res.stderr
        outs.append(json.loads((tmp_path / name).read_text()))
    a, b = outs
    assert SIM_SUMMARY_KEYS <= set(a)
    assert a["turns"] == 8 and a["scored_on"] == "ground_truth" and a["seed"] == 5
    assert a["policy_params"] == {"debounce_s": 0.3}
    assert a["per_turn"] == b["per_turn"]


def test_eval_rejects_unknown_policy_parameters_and_bad_settings():
    res = run_cli("eval", "--turns", "1", "--set", "debounce=1")
    assert res.returncode == 2 and "debounce" in res.stderr
    res = run_cli("eval", "--turns", "1", "--set", "no_equals_sign")
    assert res.returncode == 2 and "KEY=VALUE" in res.stderr
    res = run_cli("eval", "--turns", "1", "--policy", "telepathy")
    assert res.returncode == 2 and "reactive" in res.stderr


def test_sim_refuses_a_domain_where_a_node_of_its_graph_already_runs(tmp_path):
    import rclpy

    domain = free_ros_domain()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("controller", context=context)  # another session's controller, as far as DDS can tell
    try:
        env = dict(os.environ, ROS_DOMAIN_ID="0", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        logs = tmp_path / "logs"
        res = subprocess.run([sys.executable, "-m", "coop_robot.cli", "sim", "--domain-id", str(domain), "--turns", "1",
                              "--log-dir", str(logs)], capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
        release_ros_domain(domain)
    assert res.returncode == 2, res.stderr
    assert f"ROS_DOMAIN_ID={domain} already has nodes named controller" in res.stderr
    assert "--domain-id" in res.stderr and "starting" not in res.stdout
    # refused before any node started: no node log, no process of the session
    assert not list(logs.glob("*.log"))
    out = subprocess.run(["pgrep", "-f", str(logs)], capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_estop_without_a_controller_fails_naming_the_service_and_domain():
    domain = free_ros_domain()
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    try:
        res = subprocess.run([sys.executable, "-m", "coop_robot.cli", "estop", "on", "--timeout-s", "0.5"],
                             capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    finally:
        release_ros_domain(domain)
    assert res.returncode == 1
    assert "/controller/emergency_stop" in res.stderr and f"ROS_DOMAIN_ID={domain}" in res.stderr
    assert "NOT engaged" in res.stderr

"""`coop-robot sim` rejects bad input clearly, before or while starting the graph."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


def test_out_of_range_parameter_is_refused_before_any_node_starts(tmp_path):
    bad = tmp_path / "fast_arm.yaml"
    bad.write_text("controller:\n  ros__parameters:\n    velocity_scale: 5.0\n")
    logs = tmp_path / "logs"
    res = run_cli("sim", "--turns", "1", "--params-file", str(bad), "--log-dir", str(logs))
    assert res.returncode == 2, res.stderr
    assert "node 'controller'" in res.stderr and "velocity_scale" in res.stderr and "5.0" in res.stderr
    assert str(bad) in res.stderr  # names the file that set it
    assert "no node was started" in res.stderr
    assert "starting" not in res.stdout and not logs.exists()


@pytest.mark.parametrize("option, value, message", [
    ("--seed", "-1", "must be >= 0, got '-1'"),
    ("--seed", "two", "must be a whole number >= 0, got 'two'"),
    ("--real-time-factor", "-1", "real_time_factor must be a number in [0, 100]"),
    ("--real-time-factor", "500", "real_time_factor must be a number in [0, 100]"),
    ("--timeout-s", "0", "must be a finite number of seconds > 0, got '0'"),
    ("--turns", "0", "must be >= 1, got '0'"),
])
def test_bad_option_values_exit_2_naming_the_value_before_anything_starts(tmp_path, option, value, message):
    logs = tmp_path / "logs"
    t0 = time.monotonic()
    res = run_cli("sim", "--turns", "1", option, value, "--log-dir", str(logs))
    assert res.returncode == 2, res.stderr
    assert f"argument {option}: " in res.stderr and message in res.stderr, res.stderr
    assert res.stdout == "" and not logs.exists()
    assert time.monotonic() - t0 < 30.0  # parsing only: no node is built or started


def test_a_node_refusing_its_input_at_start_up_is_reported_as_bad_input(tmp_path):
    # What the runner makes of a node that exits 2 (run_node's refusal) after it was started,
    # e.g. a value only the running node can judge: InputRefused, naming the node and the reason.
    from coop_robot.graph import NodeSpec
    from coop_robot.runner import GraphRunner, InputRefused, SessionError

    (tmp_path / "refusing_node.py").write_text(
        "import sys\n"
        "print(\"[coop_robot] invalid parameter: parameter 'gui' = True: no display\", file=sys.stderr)\n"
        "sys.exit(2)\n")
    (tmp_path / "crashing_node.py").write_text("raise SystemExit(1)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    errors = {}
    for module in ("refusing_node", "crashing_node"):
        runner = GraphRunner([NodeSpec(module, module, module, ())], tmp_path / f"logs_{module}", env)
        try:
            runner.start()
            with pytest.raises(SessionError) as info:
                runner.wait(timeout_s=60.0)
        finally:
            runner.shutdown()
        errors[module] = info.value
    refused, crashed = errors["refusing_node"], errors["crashing_node"]
    assert isinstance(refused, InputRefused)
    assert str(refused).startswith("node 'refusing_node' refused its input before the session ended: "
                                   "invalid parameter: parameter 'gui' = True: no display")
    assert not isinstance(crashed, InputRefused) and "exited with code 1" in str(crashed)
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
    # --quiet prints the summary lines (timing first), not the per-turn table.
    lines = res.stdout.splitlines()
    assert any(line.startswith("summary (ground_truth; policy=reactive") for line in lines), res.stdout
    assert any(line.startswith("safety: ") for line in lines) and not any(line.startswith("turn ") for line in lines)
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


def test_eval_takes_controller_parameters_and_rejects_bad_ones(tmp_path):
    import json

    res = run_cli("eval", "--turns", "1", "--quiet", "--controller-set", "fallback_speed_scale=0.7",
                  "--summary-json", str(tmp_path / "s.json"))
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "s.json").read_text())["controller_params"] == {"fallback_speed_scale": 0.7}
    for bad, named in (("fallback_speed_scale=0", "fallback_speed_scale"), ("warp_speed=2", "warp_speed"),
                       ("fallback_speed_scale", "KEY=VALUE")):
        res = run_cli("eval", "--turns", "1", "--controller-set", bad)
        assert res.returncode == 2 and named in res.stderr, res.stderr


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


def test_the_pre_start_check_passes_the_shipped_graph_and_leaves_nothing_behind(tmp_path):
    from coop_robot.graph import sim_graph
    from coop_robot.preflight import check_graph

    bag = tmp_path / "bag"
    specs = sim_graph(policy="reactive", turns=1, gui=True, summary_json=str(tmp_path / "summary.json"),
                      record_dir=str(bag))
    assert check_graph(specs) == []
    assert list(tmp_path.iterdir()) == []  # no bag (the recorder wrote a throw-away one), no summary


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT in a script's background"])
def test_a_terminated_session_shuts_every_node_down(tmp_path, how):
    """A supervisor's SIGTERM, or Ctrl-C on a session a script started in the background (where the
    shell leaves SIGINT ignored), ends the session like Ctrl-C: no node is left running."""
    import signal

    domain = free_ros_domain()
    logs = tmp_path / "logs"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    cmd = [sys.executable, "-m", "coop_robot.cli", "sim", "--policy", "reactive", "--turns", "5",
           "--log-dir", str(logs)]
    if how == "SIGTERM":
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sig = signal.SIGTERM
    else:  # bash starts a background job of a non-interactive shell with SIGINT ignored
        script = " ".join(f"'{c}'" for c in cmd) + " & wait"
        proc = subprocess.Popen(["bash", "-c", script], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        sig = signal.SIGINT
    try:
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and len(list(logs.glob("*.log"))) < 5:
            time.sleep(0.2)  # polling for the node logs, not a timing assumption
        assert len(list(logs.glob("*.log"))) >= 5, "the session did not start its nodes"
        cli = subprocess.run(["pgrep", "-f", f"coop_robot.cli sim .*{logs}"], capture_output=True, text=True)
        pids = [int(p) for p in cli.stdout.split()]
        assert pids
        for pid in pids:
            os.kill(pid, sig)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        left = subprocess.run(["pgrep", "-f", str(logs)], capture_output=True, text=True).stdout.strip()
        subprocess.run(["pkill", "-KILL", "-f", str(logs)])  # whatever the outcome, leave nothing behind
        release_ros_domain(domain)
    assert "all nodes were shut down" in out
    assert left == "", f"processes left running: {left}"


def test_a_session_out_of_time_says_how_far_it_got_and_how_fast_the_sim_ran(tmp_path):
    """Not just "did not finish": the turns done of those asked, and the simulation's speed."""
    domain = free_ros_domain()
    logs = tmp_path / "logs"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    try:
        res = subprocess.run([sys.executable, "-m", "coop_robot.cli", "sim", "--policy", "eager", "--turns", "200",
                              "--timeout-s", "20", "--log-dir", str(logs)],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    finally:
        subprocess.run(["pkill", "-KILL", "-f", str(logs)])
        release_ros_domain(domain)
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    err = res.stderr
    assert "session did not finish within 20 s" in err and "of 200 robot turns done" in err, err

"""The real multi-process graph over DDS: sim, perception, policy, controller, turn tracker.

Starts every node as its own process in an isolated ROS domain, runs >= 10 robot turns, listens
to the graph from this test process, and checks the published timing against the simulator's
ground-truth events. Afterwards no node process may be left.
"""

import json
import os

import pytest
from conftest import spinning, wait_for

from coop_robot.graph import sim_graph
from coop_robot.runner import GraphRunner, isolated_env

pytestmark = pytest.mark.integration

TURNS = 10


def _values(status):
    return {kv.key: kv.value for kv in status.values}


def test_graph_runs_turns_with_timing_consistent_with_ground_truth(tmp_path, ros_domain):
    domain = ros_domain
    env = isolated_env(domain)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    summary_path = tmp_path / "summary.json"
    specs = sim_graph(policy="reactive", partner="typical", seed=7, turns=TURNS, summary_json=str(summary_path))

    # This process listens on the same isolated domain (discovery range set in conftest.py).
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import TimeReference

    from coop_robot.nodes.common import EVENT_QOS, stamp_to_s

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("integration_listener", context=context)
    gt_events, turn_events, timings = [], [], []
    node.create_subscription(TimeReference, "/sim/ground_truth/events",
                             lambda m: gt_events.append((m.source, stamp_to_s(m.time_ref))), EVENT_QOS)
    node.create_subscription(TimeReference, "/turn/events",
                             lambda m: turn_events.append((m.source, stamp_to_s(m.time_ref), m.header.frame_id)),
                             EVENT_QOS)
    node.create_subscription(DiagnosticArray, "/turn/timing", lambda m: timings.extend(_values(s) for s in m.status),
                             EVENT_QOS)

    def all_turns_heard() -> bool:
        turn_names, gt_names = [e[0] for e in turn_events], [e[0] for e in gt_events]
        return (len(timings) >= TURNS and all(turn_names.count(name) >= TURNS and gt_names.count(name) >= TURNS
                                              for name in ("robot_enter", "partner_exit")))

    runner = GraphRunner(specs, tmp_path / "logs", env)
    with spinning(node, context):
        try:
            runner.start()
            runner.wait(timeout_s=420)
            # The last turn's messages may still be on their way to this listener.
            wait_for(all_turns_heard, 60,
                     f"{TURNS} turn timings and {TURNS} robot_enter / partner_exit turn and ground-truth events",
                     details=lambda: f"{len(timings)} timings, turn events {[e[0] for e in turn_events]}, "
                                     f"ground-truth events {[n for n, _ in gt_events]}")
        finally:
            codes = runner.shutdown(grace_s=30.0)  # a loaded host is slow, not wrong

    # Every node process is gone, and every one ended cleanly.
    for proc in runner.procs:
        assert proc.popen.poll() is not None
        with pytest.raises(ProcessLookupError):
            os.kill(proc.popen.pid, 0)
    assert codes["turn_tracker"] == 0
    unclean = [p for p in runner.procs if codes[p.spec.name] not in (0, -2)]
    assert not unclean, f"{codes}\n" + "\n".join(f"{p.spec.name}:\n{runner.tail(p, 60)}" for p in unclean)

    summary = json.loads(summary_path.read_text())
    for key in ("turns", "median_gap_s", "p90_gap_s", "overlap_rate", "overlap_s_total", "contacts",
                "throughput_per_min", "scored_on", "policy", "partner", "seed"):
        assert key in summary, key
    assert summary["policy"] == "reactive" and summary["partner"] == "typical" and summary["seed"] == 7
    assert summary["turns"] >= TURNS and summary["scored_on"] == "ground_truth"
    assert summary["overlap_rate"] == 0.0 and summary["overlap_s_total"] == 0.0
    assert summary["contacts"] == 0
    assert not any(name.startswith("contact") for name, _ in gt_events)

    # Turn events arrived over DDS and carry the scoring source.
    names = [e[0] for e in turn_events]
    assert names.count("robot_enter") >= TURNS and names.count("partner_exit") >= TURNS
    assert {e[2] for e in turn_events} == {"ground_truth"}

    # Each published turn's timing matches the sim's own ground-truth events.
    assert len(timings) >= TURNS
    gt_partner_exits = [t for n, t in gt_events if n == "partner_exit"]
    gt_robot_enters = [t for n, t in gt_events if n == "robot_enter"]
    for rec in timings[:TURNS]:
        enter = float(rec["robot_enter_s"])
        exit_ = float(rec["partner_exit_s"])
        assert min(abs(enter - t) for t in gt_robot_enters) < 1e-6
        last_exit_before = max(t for t in gt_partner_exits if t <= enter)
        assert exit_ == pytest.approx(last_exit_before, abs=1e-6)
        assert float(rec["gap_s"]) == pytest.approx(enter - last_exit_before, abs=1e-6)
        assert float(rec["gap_s"]) > 0.0
        assert float(rec["overlap_s"]) == 0.0 and rec["contact"] == "False"


SYNC_TRIALS = 3


@pytest.mark.parametrize("policy", ["eager", "mirror"])
def test_coop_robot_sim_task_sync_scores_its_trials_through_the_real_graph(tmp_path, ros_domain, policy):
    """`coop-robot sim --task sync` runs the sync task over DDS and summarizes it as `eval --task sync`
    (a control, and the mirror network with its sync checkpoint)."""
    import subprocess
    import sys

    from conftest import ros_env

    summary_path = tmp_path / "sync.json"
    res = subprocess.run(
        [sys.executable, "-m", "coop_robot.cli", "sim", "--task", "sync", "--policy", policy, "--turns",
         str(SYNC_TRIALS), "--window-s", "1.0", "--summary-json", str(summary_path), "--record", str(tmp_path / "bag"),
         "--log-dir", str(tmp_path / "logs"), "--domain-id", str(ros_domain), "--timeout-s", "500"],
        env=ros_env(ros_domain), capture_output=True, text=True, timeout=560)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert f"sync task, 3 trials, policy={policy}" in out
    assert out.count("  trial ") == SYNC_TRIALS          # the runner's progress lines, one per trial
    assert f"sync summary (ground_truth; policy={policy} partner=typical seed=0): 3 trials, window 1000 ms" in out
    assert "who waited: robot" in out and "reactive baseline" not in out

    summary = json.loads(summary_path.read_text())
    for key in ("task", "trials", "window_s", "successes", "success_rate", "median_offset_s", "offset_iqr_s",
                "robot_waited", "partner_waited", "missed", "contacts", "min_separation_m", "ssm_violations",
                "policy", "partner", "seed", "per_trial", "session_duration_s"):
        assert key in summary, key
    assert summary["task"] == "sync" and summary["trials"] == SYNC_TRIALS and summary["window_s"] == 1.0
    assert summary["policy"] == policy and summary["partner"] == "typical" and summary["seed"] == 0
    assert summary["contacts"] == 0 and summary["ssm_violations"] == 0 and summary["missed"] == 0
    assert summary["robot_waited"] + summary["partner_waited"] == SYNC_TRIALS
    trials = summary["per_trial"]
    assert [t["trial"] for t in trials] == [1, 2, 3]
    for t in trials:   # each trial scored with the one definition: both started after the cue, then arrived
        assert t["cue_s"] < t["robot_start_s"] < t["robot_arrival_s"]
        assert t["cue_s"] < t["partner_start_s"] < t["partner_arrival_s"]
        assert t["offset_s"] == pytest.approx(t["robot_arrival_s"] - t["partner_arrival_s"])
        assert t["success"] == (abs(t["offset_s"]) <= 1.0)
        assert t["ssm_samples"] > 0 and t["min_separation_m"] > 0.2 and not t["contact"]
    assert trials[1]["cue_s"] > trials[0]["robot_arrival_s"] and trials[2]["cue_s"] > trials[1]["robot_arrival_s"]

    # The bag (read by rosbags, a library we did not write) holds the sync task's topics: every cue
    # and every scored trial, the same trials the summary has, and the robot's target.
    from rosbags.highlevel import AnyReader

    with AnyReader([tmp_path / "bag"]) as reader:
        by_topic = {c.topic: c for c in reader.connections}
        for topic in ("/sync/cue", "/sync/trial", "/controller/sync_target", "/controller/sync_arrival_after_s"):
            assert topic in by_topic, sorted(by_topic)
        cues = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages([by_topic["/sync/cue"]])]
        statuses = [s for c, _, raw in reader.messages([by_topic["/sync/trial"]])
                    for s in reader.deserialize(raw, c.msgtype).status]
    assert sum(c.source == "cue" for c in cues) >= SYNC_TRIALS
    from coop_robot.timing.sync import SyncTrialLog, trial_from_key_values

    log = SyncTrialLog()   # a trial is sent when it ends and again when its safety window closes
    for st in statuses:
        log.update(trial_from_key_values((kv.key, kv.value) for kv in st.values))
    assert [t.trial for t in log.trials] == [1, 2, 3]
    assert [t.offset_s for t in log.trials] == pytest.approx([t["offset_s"] for t in trials])

"""The sync task in the ROS graph: one graph description, the trial messages and the sync policy's
inputs as the graph delivers them, and bad input refused before any node starts."""

import math
import subprocess
import sys

import numpy as np
import pytest

from coop_robot.envs.turn_env import TurnTakingEnv
from coop_robot.graph import POLICIES_SYNC, GraphError, sim_graph
from coop_robot.policy import policy_names
from coop_robot.timing.sync import (
    SyncInputs,
    SyncTrial,
    SyncTrialLog,
    reach_arrival_after_s,
    sync_task_config,
    trial_from_key_values,
    trial_key_values,
)

SYNC_NODES = ("coop_sim", "policy", "controller", "turn_tracker")


def _params(specs) -> dict:
    return {s.name: s.parameters for s in specs}


def test_the_sync_graph_gives_every_task_node_task_sync_and_the_sim_the_window():
    specs = sim_graph(policy="eager", turns=3, summary_json="/tmp/s.json", task="sync", window_s=1.5)
    params = _params(specs)
    assert [s.name for s in specs] == ["coop_sim", "perception", "policy", "controller", "turn_tracker"]
    assert all(params[n]["task"] == "sync" for n in SYNC_NODES)
    assert "task" not in params["perception"]
    assert params["coop_sim"]["sync_window_s"] == 1.5
    assert params["turn_tracker"]["max_turns"] == 3 and specs[-1].ends_session


def test_the_turn_taking_graph_is_what_it_was_before_there_were_tasks():
    for task in ({}, {"task": "turn_taking"}):
        specs = sim_graph(policy="reactive", turns=2, summary_json="/tmp/s.json", **task)
        assert not any("task" in s.parameters or "sync_window_s" in s.parameters for s in specs)
    assert sim_graph(policy="reactive") == sim_graph(policy="reactive", task="turn_taking")


def test_the_sync_graph_refuses_an_unknown_task_and_a_stray_window():
    with pytest.raises(GraphError, match="unknown task 'handover'; expected one of turn_taking, sync"):
        sim_graph(policy="eager", task="handover")
    with pytest.raises(GraphError, match="window_s applies to the sync task only"):
        sim_graph(policy="eager", window_s=1.0)
    with pytest.raises(GraphError, match="window_s must be a finite number of seconds > 0"):
        sim_graph(policy="eager", task="sync", window_s=0.0)


def test_the_graphs_sync_policies_are_the_registered_sync_controls():
    assert sorted(POLICIES_SYNC) == policy_names("sync")


def test_a_trial_survives_its_message_round_trip():
    trial = SyncTrial(2, 6.5, 0.75, robot_start_s=6.7, partner_start_s=6.9, robot_arrival_s=7.6,
                      partner_arrival_s=7.3, contact=False, min_separation_m=0.38, min_ssm_margin_m=0.05,
                      ssm_violations=0, ssm_samples=400)
    back = trial_from_key_values(trial_key_values(trial))
    assert back == trial and back.offset_s == pytest.approx(0.3) and back.success and back.waited == "partner"
    missed = SyncTrial(3, 10.0, 0.75, robot_arrival_s=11.0)   # partner never arrived, no SSM samples
    back = trial_from_key_values(trial_key_values(missed))
    assert back == missed and math.isinf(back.min_separation_m) and back.offset_s is None
    with pytest.raises(ValueError, match="malformed sync trial"):
        trial_from_key_values([("trial", "not json")])


def test_the_trial_log_keeps_the_latest_version_of_each_trial_and_counts_ended_trials():
    log = SyncTrialLog()
    first = SyncTrial(1, 1.0, 0.75, robot_arrival_s=2.4, partner_arrival_s=1.8, min_separation_m=0.40)
    assert log.update(first) is True
    # The next cue closed trial 1's window: resent with the samples taken since it ended.
    assert log.update(SyncTrial(1, 1.0, 0.75, robot_arrival_s=2.4, partner_arrival_s=1.8,
                                min_separation_m=0.36)) is False
    assert log.update(SyncTrial(2, 6.0, 0.75, robot_arrival_s=7.0, partner_arrival_s=7.3)) is True
    assert len(log) == 2 and [t.trial for t in log.trials] == [1, 2]
    summary = log.summary(1, policy="eager", partner="typical", seed=0)
    assert summary["trials"] == 1 and summary["window_s"] == 0.75 and summary["min_separation_m"] == 0.36
    assert log.summary()["successes"] == 2 and log.summary()["robot_waited"] == 1


def test_the_oracle_ignores_a_planned_arrival_from_before_the_open_trials_cue():
    inputs = SyncInputs()
    assert inputs.observation() == {"sync_cue_s": None, "robot_arrival_after_s": None,
                                    "partner_planned_arrival_s": None}
    inputs.robot_arrival_after_s = 1.15
    inputs.planned_arrival(2.0, planned_at_s=1.0)     # trial 1's plan
    inputs.cue("trial_end", 1.0)
    inputs.cue("cue", 6.0)                            # trial 2 cued; its plan not heard yet
    assert inputs.observation()["partner_planned_arrival_s"] is None
    inputs.planned_arrival(7.1, planned_at_s=6.0)
    assert inputs.observation() == {"sync_cue_s": 6.0, "robot_arrival_after_s": 1.15,
                                    "partner_planned_arrival_s": 7.1}
    inputs.cue("trial_end", 6.0)
    assert inputs.observation()["sync_cue_s"] is None and inputs.observation()["partner_planned_arrival_s"] is None


def test_the_controllers_published_reach_time_is_the_fast_environments():
    env = TurnTakingEnv(task="sync")
    ctrl = env.controller
    published = reach_arrival_after_s(ctrl.sync_reach, ctrl.kinematics, ctrl.config.sync_target_m,
                                      sync_task_config().arrival_radius_m)
    assert published == env._observation().robot_arrival_after_s
    assert 0.5 < published < ctrl.sync_reach.duration_s
    far = np.asarray(ctrl.config.sync_target_m) + 1.0      # never reached: the plan's duration
    assert reach_arrival_after_s(ctrl.sync_reach, ctrl.kinematics, far, 0.02) == ctrl.sync_reach.duration_s


@pytest.mark.parametrize("argv, message", [
    (["--window-s", "1.0"], "--window-s applies to --task sync only"),
    (["--task", "sync", "--policy", "eager", "--window-s", "0"], "must be a finite number of seconds > 0"),
])
def test_coop_robot_sim_refuses_bad_sync_input_before_any_node_starts(tmp_path, argv, message):
    res = subprocess.run([sys.executable, "-m", "coop_robot.cli", "sim", "--turns", "1",
                          "--log-dir", str(tmp_path / "logs"), *argv],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr
    assert not (tmp_path / "logs" / "coop_sim.log").exists()


def test_a_policy_node_runs_the_sync_mirror_and_refuses_a_turn_taking_checkpoint_for_it():
    from coop_robot.policy.mirror import DEFAULT_CHECKPOINT
    from coop_robot.preflight import check_node

    sync_mirror = ["--ros-args", "-p", "task:=sync", "-p", "policy:=mirror"]
    assert check_node("coop_robot.nodes.policy_node", sync_mirror) is None   # mirror_sync.pt, shipped
    problem = check_node("coop_robot.nodes.policy_node", sync_mirror + ["-p", f"checkpoint:={DEFAULT_CHECKPOINT}"])
    assert problem is not None and "turn_taking" in problem and "sync" in problem, problem
    assert check_node("coop_robot.nodes.policy_node", ["--ros-args", "-p", "task:=sync", "-p", "policy:=oracle"]) \
        is None

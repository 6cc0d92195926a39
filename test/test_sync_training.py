"""Training the mirror policy on the sync task (issue 14): config, curriculum, reward, labels,
checkpoints of each task, and a tiny end-to-end run whose checkpoint `coop-robot eval` plays."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from coop_robot.training.config import TrainConfig, TrainConfigError
from coop_robot.training.sync_sessions import sync_act_target, sync_metrics, sync_trial_reward

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ config and curriculum
def test_the_shipped_sync_config_loads_and_narrows_from_1_5_to_0_75_s():
    cfg = TrainConfig.from_yaml(REPO / "config" / "training" / "sync.yaml")
    assert cfg.task == "sync"
    assert cfg.sync_window_s(1) == 1.5 and cfg.sync_window_s(cfg.sync_curriculum_iterations) == 0.75
    assert cfg.sync_window_s(cfg.iterations) == 0.75
    assert cfg.sync_curriculum_iterations <= cfg.iterations


def test_the_window_narrows_linearly_then_holds():
    cfg = TrainConfig(task="sync", sync_window_start_s=1.5, sync_window_end_s=0.75, sync_curriculum_iterations=4)
    assert [cfg.sync_window_s(i) for i in range(7)] == pytest.approx([1.5, 1.5, 1.25, 1.0, 0.75, 0.75, 0.75])
    at_once = TrainConfig(task="sync", sync_curriculum_iterations=1)
    assert at_once.sync_window_s(1) == at_once.sync_window_end_s


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("task", "handshake", "task must be one of turn_taking, sync, got 'handshake'"),
    ("task", 3, "task must be a string, got 3"),
    ("sync_window_end_s", 2.0, "sync_window_end_s must be <= sync_window_start_s (1.5)"),
    ("sync_window_start_s", 6.0, "sync_window_start_s must be a window in seconds > 0 and < sync_trial_timeout_s"),
    ("sync_window_end_s", 0.0, "sync_window_end_s must be a window in seconds > 0"),
    ("sync_curriculum_iterations", 0, "sync_curriculum_iterations must be an integer >= 1, got 0"),
    ("penalty_sync_missed", -1.0, "penalty_sync_missed must be >= 0, got -1.0"),
])
def test_a_bad_sync_setting_names_key_value_and_expectation(key, value, expected):
    with pytest.raises(TrainConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.from_dict({"task": "sync", key: value})


def test_collected_sessions_carry_their_iterations_window():
    from coop_robot.training.sessions import evaluation_jobs, explore_jobs

    cfg = TrainConfig(task="sync", iterations=5, sync_curriculum_iterations=3)
    assert {j.window_s for j in explore_jobs(cfg, 1)} == {1.5}
    assert [j.window_s for j in explore_jobs(cfg, 2)] == pytest.approx([1.125] * cfg.episodes_per_iteration)
    assert {j.window_s for j in explore_jobs(cfg, 5)} == {0.75}
    assert {j.window_s for j in evaluation_jobs(cfg)} == {0.75}
    assert {j.window_s for j in explore_jobs(TrainConfig(), 1)} == {None}   # turn-taking: no window


# ------------------------------------------------------------------ reward, metrics and labels
def _trial(offset_s, contact=False, ssm_violations=0):
    return {"offset_s": offset_s, "contact": contact, "ssm_violations": ssm_violations}


def test_a_trial_is_rewarded_for_success_at_the_current_window_less_its_offset():
    cfg = TrainConfig(task="sync")   # +2 success, 1 per second of |offset|, 2 missed, 10 per violation, 20 contact
    assert sync_trial_reward(_trial(0.5), 0.75, cfg) == pytest.approx(2.0 - 0.5)
    assert sync_trial_reward(_trial(-0.5), 0.75, cfg) == pytest.approx(2.0 - 0.5)   # the robot early: the same
    assert sync_trial_reward(_trial(1.0), 0.75, cfg) == pytest.approx(-1.0)         # outside the narrow window
    assert sync_trial_reward(_trial(1.0), 1.5, cfg) == pytest.approx(1.0)           # inside the wide one
    assert sync_trial_reward(_trial(None), 0.75, cfg) == pytest.approx(-2.0)        # someone did not arrive
    assert sync_trial_reward(_trial(0.0, contact=True, ssm_violations=2), 0.75, cfg) == pytest.approx(2.0 - 20 - 20)


def test_sync_metrics_score_success_offsets_and_who_waited_of_hand_built_trials():
    trials = [_trial(0.2), _trial(-0.4), _trial(1.0), _trial(None, ssm_violations=1), _trial(0.5, contact=True)]
    m = sync_metrics(trials, 0.75)
    assert m["trials"] == 5 and m["success_rate"] == pytest.approx(3 / 5) and m["missed"] == 1
    assert m["median_offset_s"] == pytest.approx(0.35) and m["mean_abs_offset_s"] == pytest.approx(0.525)
    assert m["robot_waited_rate"] == pytest.approx(1 / 4)
    assert m["contacts"] == 1 and m["ssm_violations"] == 1
    assert sync_metrics(trials, 1.5)["success_rate"] == pytest.approx(4 / 5)


def test_the_act_target_says_act_once_a_start_would_arrive_with_the_partner():
    t = np.arange(0.0, 10.0, 0.5)
    cues = np.array([1.0, 6.0])
    arrivals = np.array([3.0, np.nan])      # the partner did not arrive in the second trial
    target, known = sync_act_target(t, cues, arrivals, act_to_arrival_s=1.2)
    assert not known[t < 1.0].any() and not known[t >= 6.0].any() and known[(t >= 1.0) & (t < 6.0)].all()
    assert list(t[known & target]) == [2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5]   # from 3.0 - 1.2 s on
    assert list(t[known & ~target]) == [1.0, 1.5]


# ------------------------------------------------------------------ checkpoints of each task
def _random_checkpoint(tmp_path, task):
    from coop_robot.policy.mirror_net import save_checkpoint
    from coop_robot.training.train import make_model

    net, net_cfg, spec = make_model(TrainConfig(task=task))
    return save_checkpoint(tmp_path / f"{task}.pt", net, net_cfg, spec, task=task)


def test_a_checkpoint_records_its_task_and_the_other_tasks_policy_refuses_it(tmp_path):
    from coop_robot.policy import PolicyError, make_policy
    from coop_robot.policy.mirror_net import SYNC_CONTEXT_FIELDS, load_checkpoint

    sync_ckpt = _random_checkpoint(tmp_path, "sync")
    turn_ckpt = _random_checkpoint(tmp_path, "turn_taking")
    _, info = load_checkpoint(sync_ckpt, task="sync")
    assert info.task == "sync" and info.obs_spec.context_fields == SYNC_CONTEXT_FIELDS
    with pytest.raises(PolicyError, match=r"was trained for the sync task, not turn_taking: use a turn_taking "
                                          r"checkpoint \(coop-robot train --config config/training/train.yaml\)"):
        make_policy("mirror", checkpoint=str(sync_ckpt))
    with pytest.raises(PolicyError, match=r"was trained for the turn_taking task, not sync: use a sync checkpoint "
                                          r"\(coop-robot train --config config/training/sync.yaml\)"):
        make_policy("mirror", task="sync", checkpoint=str(turn_ckpt))
    assert make_policy("mirror", task="sync", checkpoint=str(sync_ckpt)).task == "sync"


def test_a_checkpoint_from_before_the_sync_task_is_a_turn_taking_one(tmp_path):
    import torch

    from coop_robot.policy.mirror_net import CheckpointError, load_checkpoint

    path = _random_checkpoint(tmp_path, "turn_taking")
    payload = torch.load(path, weights_only=True)
    del payload["task"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt", task="turn_taking")[1].task == "turn_taking"
    payload["task"] = "juggling"
    torch.save(payload, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="names an unknown task 'juggling'"):
        load_checkpoint(tmp_path / "odd.pt")


# ------------------------------------------------------------------ a tiny run, end to end
def _tiny_sync_config(tmp_path, iterations: int, updates_per_iteration: int, eval_turns: int):
    """The shipped sync recipe cut to a tiny run (one episode of one trial per iteration, the
    curriculum over all ``iterations``, evaluated on typical), written to ``tmp_path/sync.yaml``."""
    import yaml

    cfg = TrainConfig.from_yaml(REPO / "config" / "training" / "sync.yaml").with_overrides(
        iterations=iterations, sync_curriculum_iterations=iterations, episodes_per_iteration=1,
        turns_per_episode=1, updates_per_iteration=updates_per_iteration, batch_size=2,
        eval_partners=("typical",), eval_turns=eval_turns)
    path = tmp_path / "sync.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def test_a_tiny_sync_run_writes_curves_with_the_window_and_a_checkpoint_eval_plays(tmp_path, capsys):
    from coop_robot.cli import main as cli_main
    from coop_robot.policy.mirror_net import load_checkpoint
    from coop_robot.training.train import CURVES_CSV, CURVES_PNG, SYNC_CHECKPOINT_NAME
    from coop_robot.training.train import main as train_main

    path = _tiny_sync_config(tmp_path, iterations=2, updates_per_iteration=2, eval_turns=1)
    out = tmp_path / "run"
    assert train_main(["--config", str(path), "--out", str(out), "--ray-address", "none"]) == 0
    printed = capsys.readouterr().out
    assert "iter   2/2 | window 0.750 s" in printed and "greedy success rate at 0.75 s" in printed
    with open(out / CURVES_CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    assert [float(r["window_s"]) for r in rows] == [1.5, 1.5, 0.75]
    assert int(rows[1]["env_trials"]) == 1 and int(rows[2]["eval_trials"]) == 1
    assert math.isfinite(float(rows[2]["loss_total"])) and (out / CURVES_PNG).stat().st_size > 0
    _, info = load_checkpoint(out / SYNC_CHECKPOINT_NAME, task="sync")
    assert info.extra["train_config"]["task"] == "sync" and info.extra["iteration"] == 2

    assert cli_main(["eval", "--task", "sync", "--policy", "mirror", "--set",
                     f"checkpoint={out / SYNC_CHECKPOINT_NAME}", "--partner", "typical", "--turns", "1",
                     "--quiet"]) == 0
    assert "policy=mirror partner=typical" in capsys.readouterr().out


def test_the_shipped_sync_checkpoint_is_the_default_and_was_trained_with_the_shipped_config():
    from coop_robot.policy import make_policy
    from coop_robot.policy.sync import SYNC_CHECKPOINT

    policy = make_policy("mirror", task="sync")
    assert policy.checkpoint == SYNC_CHECKPOINT and policy.info.task == "sync"
    shipped = TrainConfig.from_yaml(REPO / "config" / "training" / "sync.yaml")
    stored = policy.info.extra["train_config"]
    # Keys added since it was trained take their defaults; only turn-taking ones may be among them
    # (the sync task does not read them), so the checkpoint is still what sync.yaml trains.
    assert set(shipped.to_dict()) - set(stored) <= {"penalty_ssm_violation"}
    assert TrainConfig.from_dict(stored).to_dict() == shipped.to_dict()
    assert policy.info.extra["iteration"] == shipped.iterations


def test_a_sweep_of_a_sync_run_summarizes_it_in_the_sync_tasks_terms(tmp_path, capsys):
    from coop_robot.training.train import SWEEP_SUMMARY_CSV
    from coop_robot.training.train import main as train_main

    path = _tiny_sync_config(tmp_path, iterations=1, updates_per_iteration=1, eval_turns=2)
    out = tmp_path / "sweep"
    assert train_main(["--config", str(path), "--seeds", "3", "--out", str(out), "--ray-address", "none"]) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err   # the table on stdout, the progress lines on stderr
    assert "sync/seed3: greedy success rate" in printed and "at the final window" in printed, printed
    with open(out / SWEEP_SUMMARY_CSV, newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert row["task"] == "sync" and row["seed"] == "3" and int(row["eval_trials"]) == 2
    assert 0.0 <= float(row["eval_success_rate_final_window"]) <= 1.0
    assert 0.0 <= float(row["reactive_success_rate_final_window"]) <= 1.0
    assert math.isnan(float(row["eval_median_gap_s"]))   # a turn-taking figure: none in a sync run

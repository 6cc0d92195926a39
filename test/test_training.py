"""Mirror-policy training: config validation, the replay buffer, determinism and a short run that learns."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from coop_robot.envs.turn_env import TurnTakingEnv
from coop_robot.policy.mirror import MirrorPolicy
from coop_robot.policy.mirror_net import ObservationSpec, load_checkpoint
from coop_robot.training.config import TrainConfig, TrainConfigError
from coop_robot.training.replay import LOSS_MASK, SequenceReplay, split_episode
from coop_robot.training.sessions import turn_taking_target
from coop_robot.training.train import CHECKPOINT_NAME, CURVES_CSV, CURVES_PNG, main, train

REPO = Path(__file__).resolve().parents[1]

# Small runs: one or two short sessions per iteration, typical partner only for evaluation.
TINY = dict(iterations=1, episodes_per_iteration=1, turns_per_episode=1, updates_per_iteration=2,
            eval_partners=["typical"], eval_turns=1, batch_size=4, sequence_length=32, burn_in=8)


# ------------------------------------------------------------------ config
def test_shipped_config_loads_and_equals_the_defaults():
    assert TrainConfig.from_yaml(REPO / "config" / "training" / "train.yaml") == TrainConfig()


def test_unknown_config_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("iterations: 3\nlearning_rat: 0.01\n")
    with pytest.raises(TrainConfigError, match=r"unknown key\(s\) \['learning_rat'\]"):
        TrainConfig.from_yaml(path)


@pytest.mark.parametrize("key, value, expected", [
    ("gamma", 1.5, r"gamma must be in \(0, 1\], got 1.5"),
    ("iterations", 0, "iterations must be an integer >= 1, got 0"),
    ("iterations", 2.5, "iterations must be an integer, got 2.5"),
    ("partners", "typical", "partners must be a non-empty list of names"),
    ("burn_in", 64, r"burn_in must be >= 0 and < sequence_length \(64\), got 64"),
    ("deterministic", "yes", "deterministic must be true or false, got 'yes'"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number"),
    ("penalty_ssm_violation", -1.0, "penalty_ssm_violation must be >= 0, got -1.0"),
])
def test_bad_config_value_names_key_value_and_expectation(key, value, expected):
    with pytest.raises(TrainConfigError, match=expected):
        TrainConfig.from_dict({key: value})


def test_cli_reports_a_bad_config_with_exit_status_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("epsilon: -1\n")
    assert main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "epsilon must be in [0, 1], got -1" in capsys.readouterr().err


# ------------------------------------------------------------------ replay
def _episode(n: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(n, dtype=np.float32)[:, None].repeat(3, axis=1), "flag": np.ones(n, dtype=bool)}


def test_turn_taking_target_ignores_false_start_exits_and_leads_the_final_exit():
    # Partner inside 1.0-1.5 s (a false start), outside until 2.0 s, inside 2.0-4.0 s, then out.
    t = np.arange(0.0, 5.0, 0.25)
    inside = ((t >= 1.0) & (t < 1.5)) | ((t >= 2.0) & (t < 4.0))
    exits, final = np.array([1.5, 4.0]), np.array([False, True])
    target = turn_taking_target(t, inside, exits, final, lead_s=1.0)
    expected = (t >= 3.0)      # within 1 s of the turn-ending exit at 4.0 s, and after it
    np.testing.assert_array_equal(target, expected)
    # The same visit counted as a final exit: the robot may go right after it.
    target = turn_taking_target(t, inside, exits, np.array([True, True]), lead_s=1.0)
    assert target[(t >= 1.5) & (t < 2.0)].all() and target[(t >= 1.0) & (t < 1.5)].all()
    # No exits yet: nothing is due.
    assert not turn_taking_target(t, inside, np.array([]), np.array([], dtype=bool), 1.0).any()


def test_split_episode_overlaps_by_burn_in_and_masks_padding_and_burn_in():
    seqs = split_episode(_episode(47), sequence_length=20, burn_in=5)
    assert [s["x"][0, 0] for s in seqs] == [0, 15, 30]
    assert all(s["x"].shape == (20, 3) for s in seqs)
    assert seqs[0][LOSS_MASK].all()                       # session start: the GRU's zero state is exact
    assert not seqs[1][LOSS_MASK][:5].any() and seqs[1][LOSS_MASK][5:].all()
    last = seqs[2][LOSS_MASK]                             # ticks 30..46, then 3 padded ticks
    assert not last[:5].any() and last[5:17].all() and not last[17:].any()
    trained = np.concatenate([s["x"][s[LOSS_MASK], 0] for s in seqs])
    np.testing.assert_array_equal(np.sort(trained), np.arange(47))  # every tick trained exactly once


def test_replay_keeps_the_newest_capacity_sequences():
    replay = SequenceReplay(capacity=3)
    replay.extend(split_episode(_episode(100), sequence_length=10, burn_in=0))
    assert len(replay) == 3
    batch = replay.sample(64, np.random.default_rng(0))
    assert batch["x"].shape == (64, 10, 3) and batch[LOSS_MASK].shape == (64, 10)
    assert sorted(set(batch["x"][:, 0, 0].tolist())) == [70.0, 80.0, 90.0]


def test_replay_sampling_is_deterministic_given_the_generator():
    replay = SequenceReplay(capacity=20)
    replay.extend(split_episode(_episode(200), sequence_length=10, burn_in=2))
    a = replay.sample(8, np.random.default_rng(5))
    b = replay.sample(8, np.random.default_rng(5))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_replay_rejects_a_sequence_of_another_shape():
    replay = SequenceReplay(capacity=4)
    replay.add({"x": np.zeros((10, 3))})
    with pytest.raises(ValueError, match=r"field 'x' has shape \(10, 4\)"):
        replay.add({"x": np.zeros((10, 4))})


# ------------------------------------------------------------------ training runs
def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_same_seed_gives_identical_curves_and_weights(tmp_path):
    cfg = TrainConfig(seed=3, **TINY)
    a = train(cfg, tmp_path / "a", progress=False)
    reports = []   # a sweep's run says how far it is after each iteration; the figures do not change
    b = train(cfg, tmp_path / "b", progress=False, report=reports.append)
    assert (tmp_path / "a" / CURVES_CSV).read_text() == (tmp_path / "b" / CURVES_CSV).read_text()
    assert [r.split(",")[0] for r in reports] == [f"iteration {i}/{cfg.iterations}" for i in
                                                 range(1, cfg.iterations + 1)]
    assert all("greedy gap" in r and "ETA" in r for r in reports)
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_short_run_learns_and_its_checkpoint_runs_in_mirror_policy(tmp_path):
    # The profiles at their own pace: with the shipped pace variation (0.7-1.25x) so short a run
    # sees too few sessions of each pace for the act head to settle by the 4th iteration.
    cfg = TrainConfig(seed=0, iterations=4, episodes_per_iteration=3, turns_per_episode=2,
                      updates_per_iteration=16, eval_partners=["typical"], eval_turns=2,
                      partner_time_scale_min=1.0, partner_time_scale_max=1.0)
    assert main(["--config", str(_write_yaml(tmp_path / "cfg.yaml", cfg)), "--out", str(tmp_path / "run"),
                 "--quiet", "--ray-address", "none"]) == 0
    rows = _rows(tmp_path / "run" / CURVES_CSV)
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2, 3, 4]
    start, end = rows[0], rows[-1]
    # The forecast head learned the partner's time to leave on fixed validation sessions (its
    # Gaussian NLL; the mean error of so short a run moves by noise), and the act head learned the
    # timing target (both scored on the same sequences at every iteration).
    assert float(end["val_forecast_nll"]) < float(start["val_forecast_nll"]) - 0.1
    assert float(end["val_act_imitation"]) < 0.6 * float(start["val_act_imitation"])
    # The greedy policy still completes its turns without overlap or contact.
    assert int(end["eval_turns"]) == 2 and float(end["eval_overlap_rate"]) == 0.0 and int(end["eval_contacts"]) == 0
    assert (tmp_path / "run" / CURVES_PNG).stat().st_size > 0

    net, info = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME, expected_spec=ObservationSpec())
    assert info.extra["train_config"] == cfg.to_dict() and info.extra["seed"] == 0 and info.extra["iteration"] == 4
    assert info.package_version
    summary = TurnTakingEnv("typical", seed=0).run(MirrorPolicy(tmp_path / "run" / CHECKPOINT_NAME), 1)
    assert summary["turns"] == 1 and math.isfinite(summary["median_gap_s"])


def _write_yaml(path: Path, cfg: TrainConfig) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def _false_starting_episode(cfg: TrainConfig, tmp_path: Path):
    """One collected session of an untrained network with ``erratic`` making a false start (into
    the zone) every turn; returns the episode and the network."""
    from dataclasses import replace

    from coop_robot.policy.mirror_net import save_checkpoint
    from coop_robot.training.sessions import ExploringMirrorPolicy, collect_episode
    from coop_robot.training.train import make_model

    net, net_cfg, spec = make_model(cfg)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, net, net_cfg, spec)
    explorer = ExploringMirrorPolicy(ckpt, net, np.random.default_rng(0), cfg.epsilon)
    profile = TurnTakingEnv("erratic", seed=0).partner.profile
    always = replace(profile, false_start=replace(profile.false_start, probability=1.0))
    with torch.inference_mode():
        episode, _ = collect_episode(TurnTakingEnv(always, seed=0), explorer, cfg, seed=0)
    return episode, net


def test_false_start_ticks_carry_their_own_imitation_weight(tmp_path):
    # A partner's false start is rare in the data (~40 per shipped run) but decides the erratic
    # overlaps: its ticks are weighted by weight_false_start_imitation in the act-imitation loss.
    from coop_robot.training.train import compute_losses

    cfg = TrainConfig(seed=0, turns_per_episode=6, weight_false_start_imitation=30.0)
    episode, net = _false_starting_episode(cfg, tmp_path)
    w = episode["imitation_weight"]
    assert set(np.unique(w)) == {1.0, 30.0}
    assert 0.05 < np.mean(w == 30.0) < 0.6
    seqs = split_episode(episode, cfg.sequence_length, cfg.burn_in)
    batch = {k: np.stack([s[k] for s in seqs]) for k in seqs[0]}
    heavy = compute_losses(net, batch, cfg, np.random.default_rng(0))["act_imitation"]
    plain = compute_losses(net, {**batch, "imitation_weight": np.ones_like(batch["imitation_weight"])}, cfg,
                           np.random.default_rng(0))["act_imitation"]
    assert heavy.detach().item() != pytest.approx(plain.detach().item())


@pytest.mark.parametrize("per_iteration", [1, 2, 5, 15])
def test_collected_sessions_cycle_through_every_partner_across_iterations(per_iteration):
    from coop_robot.training.sessions import explore_jobs

    cfg = TrainConfig(episodes_per_iteration=per_iteration, iterations=10)
    played = [job.partner for it in range(1, 6) for job in explore_jobs(cfg, it)]
    n = len(cfg.partners)
    assert played == [cfg.partners[k % n] for k in range(len(played))]
    if per_iteration % n == 0:  # the shipped recipe (5 per iteration) plays the same partners every iteration
        assert [job.partner for job in explore_jobs(cfg, 3)] == [cfg.partners[e % n] for e in range(per_iteration)]


def test_data_scaling_configs_change_only_the_collection_budget():
    shipped = TrainConfig.from_yaml(REPO / "config" / "training" / "train.yaml")
    budgets = {"0.2": 1, "0.4": 2, "3": 15, "10": 50}
    for factor, per_iteration in budgets.items():
        cfg = TrainConfig.from_yaml(REPO / "config" / "training" / "scaling" / f"train_x{factor}.yaml")
        assert cfg.episodes_per_iteration == per_iteration == round(float(factor) * shipped.episodes_per_iteration)
        assert cfg.with_overrides(episodes_per_iteration=shipped.episodes_per_iteration, eval_every=1) == shipped


# ------------------------------------------------------------------ partner pace variation
def test_each_collected_session_gets_its_own_partner_pace_from_the_seed():
    from coop_robot.training.sessions import explore_jobs

    cfg = TrainConfig(seed=3, partner_time_scale_min=0.7, partner_time_scale_max=1.25)
    scales = [job.time_scale for it in range(1, 41) for job in explore_jobs(cfg, it)]
    assert all(0.7 <= k <= 1.25 for k in scales)
    assert min(scales) < 0.75 and max(scales) > 1.2          # the range is covered (200 draws)
    # log-uniform: as many sessions quicker than the log-midpoint as slower
    mid = math.sqrt(0.7 * 1.25)
    assert 70 <= sum(k < mid for k in scales) <= 130
    assert scales == [job.time_scale for it in range(1, 41) for job in explore_jobs(cfg, it)]  # reproducible
    assert scales != [job.time_scale for it in range(1, 41) for job in explore_jobs(cfg.with_overrides(seed=4), it)]
    plain = TrainConfig(partner_time_scale_min=1.0, partner_time_scale_max=1.0)
    assert {job.time_scale for job in explore_jobs(plain, 1)} == {1.0}


@pytest.mark.parametrize("lo, hi", [(0.0, 1.0), (-1.0, 1.0), (1.2, 1.1), (float("nan"), 1.0)])
def test_a_bad_partner_pace_range_is_refused(lo, hi):
    with pytest.raises(TrainConfigError, match="partner_time_scale"):
        TrainConfig(partner_time_scale_min=lo, partner_time_scale_max=hi)


def test_a_collected_session_plays_the_partner_at_its_pace(tmp_path):
    # The worker rebuilds the environment's profile from the job's scale before every session,
    # so the partner's planned durations are the profile's times the scale (and back to 1x after).
    from coop_robot.policy.mirror_net import save_checkpoint
    from coop_robot.training.sessions import EXPLORE, SessionJob, SessionRunner
    from coop_robot.training.train import make_model

    cfg = TrainConfig(seed=0, turns_per_episode=1, partners=["typical"], eval_partners=["typical"])
    net, net_cfg, spec = make_model(cfg)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, net, net_cfg, spec)
    worker = SessionRunner(cfg, ckpt)
    base = worker.profiles["typical"]
    worker.run(SessionJob(EXPLORE, "typical", 5, 6, time_scale=0.8))
    assert worker.envs["typical"].profile.dwell_s.mean_s == pytest.approx(0.8 * base.dwell_s.mean_s)
    worker.run(SessionJob(EXPLORE, "typical", 5, 6))
    assert worker.envs["typical"].profile is base


def test_a_false_start_owes_the_robot_nothing_and_an_ssm_violation_costs_its_penalty(tmp_path):
    """Reward: the gap is charged from the exit that ends the partner's turn, not from a false
    start's exit (the partner's turn goes on), and each SSM violation in a scored turn costs
    penalty_ssm_violation on top of the turn's other terms."""
    from coop_robot.training.sessions import turn_reward

    cfg = TrainConfig(seed=0, turns_per_episode=6)
    clean = {"overlap_s": 0.0, "gap_s": 0.3, "unfinished_turn_entry": False, "near_miss": False, "ssm_violations": 0}
    assert turn_reward(clean, cfg) == pytest.approx(cfg.reward_turn)
    assert turn_reward({**clean, "ssm_violations": 2}, cfg) == pytest.approx(cfg.reward_turn
                                                                               - 2 * cfg.penalty_ssm_violation)
    episode, _ = _false_starting_episode(cfg, tmp_path)
    ret = episode["return"].astype(np.float64)
    reward = ret - cfg.gamma * np.append(ret[1:], 0.0)   # undo the discounting
    gap_tick = -cfg.penalty_gap_per_s * 0.02
    charged = np.isclose(reward, gap_tick, atol=1e-3)
    false_start = episode["imitation_weight"] == cfg.weight_false_start_imitation
    assert charged.sum() > 10            # the robot's turn was owed for a while after final exits
    assert false_start.sum() > 10        # and the partner made false starts, pauses included
    assert not (charged & false_start).any()


def test_the_training_environments_controller_takes_the_configs_hand_motion():
    # Training runs the separation monitor with the tracker's velocity (the shipped checkpoints were
    # trained so) while the deployed controller fits the hand's motion (config/world.yaml): the config
    # says which, the environments get it, and a saved config names it only when it is not tracker.
    from coop_robot.envs.turn_env import controller_config_from_files
    from coop_robot.geometry import world_geometry
    from coop_robot.training.sessions import make_envs

    assert controller_config_from_files(world_geometry().zone).ssm_hand_motion == "fit"   # deployed default
    recipe = TrainConfig.from_yaml(Path(__file__).resolve().parents[1] / "config" / "training" / "train.yaml")
    assert recipe.ssm_hand_motion == "tracker" and "ssm_hand_motion" not in recipe.to_dict()
    small = dict(partners=["typical"], eval_partners=["typical"])
    envs = make_envs(TrainConfig(**small))
    assert {env.controller.config.ssm_hand_motion for env in envs.values()} == {"tracker"}
    fit = TrainConfig(ssm_hand_motion="fit", **small)
    assert fit.to_dict()["ssm_hand_motion"] == "fit" and TrainConfig.from_dict(fit.to_dict()) == fit
    assert {env.controller.config.ssm_hand_motion for env in make_envs(fit).values()} == {"fit"}
    with pytest.raises(TrainConfigError, match="ssm_hand_motion must be one of tracker, fit"):
        TrainConfig(ssm_hand_motion="kalman")

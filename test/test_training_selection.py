"""Checkpoint selection (``select_every``): candidate iterations scored on held-in validation
sessions, the checkpoint is the best candidate, and the run itself is the one without selection."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from test_training_resume import _StopsAt  # a collector interrupted (Ctrl-C) at its n-th batch

import coop_robot.training.train as train_module
from coop_robot.policy.mirror_net import load_checkpoint
from coop_robot.training.config import SELECTION_KEYS, TrainConfig, TrainConfigError
from coop_robot.training.sessions import GREEDY, SessionJob, SessionResult, selection_jobs
from coop_robot.training.train import (
    CHECKPOINT_NAME,
    CURVES_CSV,
    SELECTION_CSV,
    selection_figures,
    train,
)

REPO = Path(__file__).resolve().parents[1]
SHORT = dict(seed=5, iterations=3, episodes_per_iteration=1, turns_per_episode=1, updates_per_iteration=2,
             eval_partners=["typical"], eval_turns=1, batch_size=4, sequence_length=32, burn_in=8)
SELECT = dict(select_every=1, select_partners=["typical", "erratic"], select_time_scales=[1.0, 1.25], select_turns=2)


def _weights(path):
    net, info = load_checkpoint(path)
    return net.state_dict(), info.extra


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ config
def test_selection_is_off_by_default_and_leaves_the_saved_config_as_before():
    cfg = TrainConfig()
    assert cfg.select_every == 0
    assert not set(SELECTION_KEYS) & set(cfg.to_dict())     # checkpoints written without it are reproduced
    on = TrainConfig.from_yaml(REPO / "config" / "training" / "train_select.yaml")
    assert on.select_every == 4 and set(SELECTION_KEYS) <= set(on.to_dict())
    assert TrainConfig.from_dict(on.to_dict()) == on
    # train_select.yaml is train.yaml plus selection: the same recipe, the same runs.
    plain = {k: v for k, v in on.to_dict().items() if k not in SELECTION_KEYS}
    assert plain == TrainConfig.from_yaml(REPO / "config" / "training" / "train.yaml").to_dict()


@pytest.mark.parametrize("values, expected", [
    (dict(select_every=-1), "select_every must be an integer >= 0"),
    (dict(select_every=4, select_from=41), r"select_from must be >= 1 and, with selection on, <= iterations \(40\)"),
    (dict(select_every=4, select_turns=0), "select_turns must be an integer >= 1"),
    (dict(select_every=4, task="sync"), "select_every must be 0 in the sync task"),
    (dict(select_every=4, select_time_scales=[1.0, 0.0]), "select_time_scales must be a non-empty list of numbers > 0"),
    (dict(select_every=4, select_time_scales=["fast"]), "select_time_scales must be a non-empty list of numbers > 0"),
])
def test_bad_selection_values_are_named(values, expected):
    with pytest.raises(TrainConfigError, match=expected):
        TrainConfig.from_dict(values)


def test_the_validation_sessions_are_the_same_for_every_training_seed_and_not_the_benchmarks():
    a = selection_jobs(TrainConfig(**SELECT))
    assert a == selection_jobs(TrainConfig(seed=7, **SELECT))
    assert [(j.partner, j.time_scale) for j in a] == [("typical", 1.0), ("typical", 1.25), ("erratic", 1.0),
                                                      ("erratic", 1.25)]
    assert all(j.turns == 2 and j.kind == GREEDY for j in a)
    assert len({j.env_seed for j in a}) == 4 and all(j.env_seed != 0 for j in a)   # the benchmark runs seed 0
    # The default: every training partner, erratic twice, each at 0.8, 1.0 and 1.25 (the slow end is
    # where false-start pauses are longest).
    jobs = selection_jobs(TrainConfig(select_every=4))
    assert len(jobs) == 18 and {j.time_scale for j in jobs} == {0.8, 1.0, 1.25}
    assert sum(j.partner == "erratic" for j in jobs) == 6


# ------------------------------------------------------------------ the score
def _turn(gap_s: float, **extra) -> dict:
    return {"gap_s": gap_s, "overlap_s": 0.0, **extra}


def _result(turns: list[dict], wanted: int, contacts: int = 0, fallbacks: int = 0) -> SessionResult:
    return SessionResult(SessionJob(GREEDY, "typical", 1, turns=wanted), turns, contacts, 100, fallbacks=fallbacks)


def test_a_failure_outranks_any_gain_in_return_and_a_stall_is_a_failure():
    cfg = TrainConfig()
    quick_but_entered = selection_figures([_result([_turn(0.3), _turn(0.3, unfinished_turn_entry=True)], 2)], cfg)
    slow_and_clean = selection_figures([_result([_turn(7.0), _turn(7.5)], 2)], cfg)   # worse than the penalty
    stalled = selection_figures([_result([_turn(0.9)], 2)], cfg)
    hedging = selection_figures([_result([_turn(0.9), _turn(4.8)], 2, fallbacks=1)], cfg)
    assert quick_but_entered["failures"] == 1 and quick_but_entered["violated_turns"] == 1
    assert quick_but_entered["return"] > slow_and_clean["return"]
    assert stalled["failures"] == 1 and stalled["unscored_turns"] == 1
    assert hedging["failures"] == 0 and hedging["fallbacks"] == 1 and hedging["p90_gap_s"] > 4.0
    key = train_module._selection_key
    ranked = sorted([quick_but_entered, stalled, hedging, slow_and_clean], key=key)
    assert ranked[:2] == [slow_and_clean, hedging] or ranked[:2] == [hedging, slow_and_clean]
    assert key(hedging) > key(selection_figures([_result([_turn(0.9), _turn(0.9)], 2)], cfg))
    violation = selection_figures([_result([_turn(0.9, ssm_violations=2)], 1, contacts=1)], cfg)
    assert violation["failures"] == 3 and violation["ssm_violations"] == 2 and violation["contacts"] == 1


# ------------------------------------------------------------------ whole runs
def test_selection_only_reads_the_network_and_lists_every_candidate(tmp_path):
    plain = train(TrainConfig(**SHORT), tmp_path / "plain", progress=False)
    chosen = train(TrainConfig(**SHORT, **SELECT), tmp_path / "sel", progress=False)
    # The same run: curves, and the last iteration's weights.
    assert (tmp_path / "plain" / CURVES_CSV).read_text() == (tmp_path / "sel" / CURVES_CSV).read_text()
    last = tmp_path / "sel" / "mirror_last.pt"
    w_last, _ = _weights(last if last.exists() else tmp_path / "sel" / CHECKPOINT_NAME)
    assert _same(w_last, plain.net.state_dict())
    rows = _rows(tmp_path / "sel" / SELECTION_CSV)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert all(int(r["turns"]) == 8 for r in rows)
    picked = [r for r in rows if r["selected"] == "1"]
    assert len(picked) == 1
    best = min(rows, key=lambda r: (int(r["failures"]), -float(r["return"])))
    assert picked[0]["iteration"] == best["iteration"]
    w, extra = _weights(tmp_path / "sel" / CHECKPOINT_NAME)
    assert extra["iteration"] == int(best["iteration"]) == extra["selection"]["iteration"]
    assert _same(w, chosen.net.state_dict())
    assert last.exists() == (best["iteration"] != "3")


def _prefer_iteration_1(monkeypatch):
    monkeypatch.setattr(train_module, "_selection_key", lambda row: (row["iteration"] != 1, 0.0))


def test_an_earlier_candidate_that_scores_best_is_the_checkpoint_and_the_last_stays_beside_it(tmp_path, monkeypatch):
    _prefer_iteration_1(monkeypatch)
    one = train(TrainConfig(**{**SHORT, "iterations": 1}), tmp_path / "one", progress=False)
    plain = train(TrainConfig(**SHORT), tmp_path / "plain", progress=False)
    train(TrainConfig(**SHORT, **SELECT), tmp_path / "sel", progress=False)
    w, extra = _weights(tmp_path / "sel" / CHECKPOINT_NAME)
    assert extra["iteration"] == 1 and extra["selection"]["iteration"] == 1
    assert _same(w, one.net.state_dict())               # the weights after iteration 1
    w_last, extra_last = _weights(tmp_path / "sel" / "mirror_last.pt")
    assert extra_last["iteration"] == 3 and _same(w_last, plain.net.state_dict())
    assert [r["selected"] for r in _rows(tmp_path / "sel" / SELECTION_CSV)] == ["1", "0", "0"]


def test_a_resumed_run_keeps_the_candidates_scored_before_it_stopped(tmp_path, monkeypatch):
    _prefer_iteration_1(monkeypatch)
    cfg = TrainConfig(**SHORT, **SELECT)
    train(cfg, tmp_path / "straight", progress=False)
    with pytest.raises(KeyboardInterrupt):       # batch 4: iteration 3's play, the state after 2
        train(cfg, tmp_path / "resumed", progress=False, collector=_StopsAt(4))
    train(cfg, tmp_path / "resumed", progress=False, resume=True)
    for name in (SELECTION_CSV, CURVES_CSV):
        assert (tmp_path / "resumed" / name).read_text() == (tmp_path / "straight" / name).read_text()
    for name in (CHECKPOINT_NAME, "mirror_last.pt"):
        wa, ea = _weights(tmp_path / "straight" / name)
        wb, eb = _weights(tmp_path / "resumed" / name)
        assert _same(wa, wb) and ea == eb

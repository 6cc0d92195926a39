"""Learning-rule inference (coop-robot infer-rule): recovery on trials generated from the rule
itself, "no learning" on a partner that does not adapt, the command on a turn log and a bag, and
refusal of bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from coop_robot.analysis.rule_inference import (
    TrialTable,
    fit_parametric,
    scripted_session,
    trials_from_records,
)
from coop_robot.cli import main

STARTS = ((0.05, 0.05),)   # one start is enough on model-generated trials (and keeps the test short)


def model_trials(speed_up: float, slow_down: float, n: int, seed: int, base_s: float = 2.0,
                 noise: float = 0.08, p_disturbed: float = 0.4) -> TrialTable:
    """Trials generated from the parametric model itself (no clipping)."""
    rng = np.random.default_rng(seed)
    outcome = rng.random(n) < p_disturbed
    scale = np.ones(n)
    for i in range(1, n):
        scale[i] = scale[i - 1] * ((1 + slow_down) if outcome[i - 1] else (1 - speed_up))
    cycle = base_s * scale * np.exp(noise * rng.standard_normal(n))
    cycle[0] = np.nan
    return TrialTable(f"model{seed}", outcome, cycle)


def test_fit_recovers_known_rates_from_model_generated_trials():
    tables = [model_trials(0.05, 0.10, 120, seed) for seed in (1, 2)]
    fit = fit_parametric(tables, starts=STARTS)
    assert fit.learning
    assert fit.speed_up == pytest.approx(0.05, rel=0.15)
    assert fit.slow_down == pytest.approx(0.10, rel=0.15)
    assert fit.base_s == pytest.approx([2.0, 2.0], rel=0.1)


def test_partner_that_does_not_adapt_gives_no_learning():
    fit = fit_parametric([model_trials(0.0, 0.0, 120, 3)], starts=STARTS)
    assert not fit.learning
    assert fit.lr_statistic < 5.99
    assert fit.speed_up <= 2 * fit.speed_up_se + 1e-6
    assert fit.slow_down <= 2 * fit.slow_down_se + 1e-6


def _record(partner_exit, robot_exit, gap=0.5, overlap=0.0, near_miss=False):
    return {"partner_exit_s": partner_exit, "robot_enter_s": partner_exit + gap, "robot_exit_s": robot_exit,
            "gap_s": gap, "overlap_s": overlap, "near_miss": near_miss, "contact": False,
            "unfinished_turn_entry": False}


def test_cycle_time_runs_from_the_previous_robot_exit_to_the_partner_exit():
    records = [_record(2.0 + 4 * i, 3.5 + 4 * i, near_miss=(i == 2)) for i in range(10)]
    records[5]["overlap_s"] = 0.2
    table = trials_from_records(records, "handmade")
    assert math.isnan(table.cycle_s[0])
    assert table.cycle_s[1:] == pytest.approx([2.5] * 9)
    assert list(np.flatnonzero(table.outcome)) == [2, 5]


def test_too_few_turns_is_refused():
    with pytest.raises(ValueError, match="at least"):
        trials_from_records([_record(2.0, 3.5)] * 4, "short")


@pytest.fixture(scope="module")
def learner_log(tmp_path_factory):
    """A scripted session of a partner with a known rule, written as a turn log."""
    summary = scripted_session("test/learning_partners/eager_learner.yaml", turns=40, seed=2)
    path = tmp_path_factory.mktemp("logs") / "eager.json"
    path.write_text(json.dumps(summary), encoding="utf-8")
    return path


def test_command_on_a_turn_log_writes_fit_figure_and_score(learner_log, tmp_path, capsys):
    out = tmp_path / "fit"
    assert main(["infer-rule", str(learner_log), "--out", str(out), "--epochs", "20", "--quiet"]) == 0
    fit = json.loads((out / "rule_fit.json").read_text())
    assert fit["verdict"] == "learning"
    assert fit["parametric"]["speed_up"] > 0.02
    assert set(fit["held_out_r2"]) == {"parametric", "recurrent"}
    assert (out / "rule_fit.png").stat().st_size > 1000
    assert "held-out next-trial R2" in capsys.readouterr().out


@pytest.mark.parametrize("storage, ros2_layout", [("mcap", False), ("sqlite3", True), ("mcap", True)])
def test_command_on_a_bag(tmp_path, storage, ros2_layout):
    """Bags as rosbags writes them and in ``ros2 bag record``'s layout (``<dir>_0.<ext>``), both storages."""
    from coop_robot.analysis.synthetic import write_session_bag

    bag = tmp_path / "session"
    write_session_bag(bag, turns=14, seed=4, storage=storage, ros2_layout=ros2_layout)
    out = tmp_path / "fit"
    assert main(["infer-rule", str(bag), "--out", str(out), "--epochs", "10", "--quiet"]) == 0
    fit = json.loads((out / "rule_fit.json").read_text())
    assert fit["trials"] == [13]
    assert fit["verdict"] == "no learning"   # the scripted partner's timing does not depend on outcomes


@pytest.mark.parametrize("content, expected", [
    ("{not json", "not a readable JSON turn log"),
    ('{"per_turn": 3}', "'per_turn' list"),
    ('{"per_turn": [{"turn": 1}]}', "needs at least"),
])
def test_corrupt_turn_log_is_refused_with_exit_2(tmp_path, capsys, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    assert main(["infer-rule", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert expected in capsys.readouterr().err


def test_path_that_is_not_a_bag_is_refused_with_exit_2(tmp_path, capsys):
    (tmp_path / "notabag").mkdir()
    (tmp_path / "notabag" / "readme.txt").write_text("hello")
    assert main(["infer-rule", str(tmp_path / "notabag"), "--quiet"]) == 2
    assert "notabag" in capsys.readouterr().err

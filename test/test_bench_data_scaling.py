"""bench/data_scaling.py: budgets and checkpoints found from run directories, a tiny end-to-end run, bad input."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import load_bench

SHIPPED = Path(__file__).resolve().parents[1] / "coop_robot" / "policy" / "checkpoints" / "mirror.pt"


load_bench("turn_taking")  # registered by its stem, as the data-scaling script imports it
ds = load_bench("data_scaling")


def _run_dir(path: Path, mae: list[float], turns_per_iteration: int) -> Path:
    path.mkdir(parents=True)
    shutil.copy(SHIPPED, path / "mirror.pt")
    with (path / "learning_curves.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iteration", "env_turns", "val_forecast_mae_s"])
        for i, m in enumerate(mae):
            w.writerow([i, 0 if i == 0 else turns_per_iteration, m])
    return path


def test_run_directories_and_sweeps_are_found_and_their_curves_read(tmp_path):
    one = _run_dir(tmp_path / "single", [0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3], 4)
    _run_dir(tmp_path / "sweep" / "train_x3" / "seed0", [0.5, 0.2], 60)
    _run_dir(tmp_path / "sweep" / "train_x3" / "seed1", [0.5, 0.2], 60)
    assert ds.checkpoints_of(one) == [one / "mirror.pt"]
    assert len(ds.checkpoints_of(tmp_path / "sweep")) == 2
    curves = ds.curves_of(one / "mirror.pt")
    assert curves["val_forecast_mae_s"] == pytest.approx(0.3)  # the mean of the last 5 iterations
    assert curves["collected_turns"] == 24 and curves["iterations"] == 6
    budgets = ds.parse_budgets([["3", str(tmp_path / "sweep")], ["1", str(one)]])
    assert [f for f, _ in budgets] == [1.0, 3.0] and len(budgets[1][1]) == 2


@pytest.mark.parametrize("budget, expected", [
    (["x", "ckpt"], "must be a number"),
    (["0", "ckpt"], "must be > 0"),
    (["1"], "at least one checkpoint"),
])
def test_bad_budgets_are_refused_with_a_message(tmp_path, capsys, budget, expected):
    (tmp_path / "ckpt").mkdir()
    budget = [b if b != "ckpt" else str(tmp_path / "nothing_here") for b in budget]
    assert ds.main(["--budget", *budget, "--out", str(tmp_path / "out"), "--ray-address", "none"]) == 2
    assert expected in capsys.readouterr().err


def test_a_directory_without_checkpoints_is_named(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert ds.main(["--budget", "1", str(tmp_path / "empty"), "--ray-address", "none"]) == 2
    assert "no mirror.pt" in capsys.readouterr().err
    assert ds.main(["--budget", "1", str(tmp_path / "missing"), "--ray-address", "none"]) == 2
    assert "no such checkpoint or run directory" in capsys.readouterr().err


def test_tiny_run_reports_every_budget_against_eager(tmp_path, capsys):
    low = _run_dir(tmp_path / "low", [0.6, 0.5], 4)
    high = _run_dir(tmp_path / "high", [0.6, 0.4], 12)
    out = tmp_path / "out"
    code = ds.main(["--budget", "0.5", str(low), "--budget", "1.5", str(high), "--profiles", "typical",
                    "--no-heldout", "--turns", "2", "--ray-address", "none", "--quiet", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "scaling.json").read_text())
    assert [b["factor"] for b in summary["budgets"]] == [0.5, 1.5]
    for b in summary["budgets"]:
        assert b["partners"]["typical"]["median_gap_s"]["n"] == 1
        assert b["pooled_median_gap_s"]["mean"] > 0
        assert b["contacts"] == 0
    assert summary["budgets"][0]["val_forecast_mae_s"]["mean"] == pytest.approx(0.55)
    assert summary["budgets"][1]["collected_turns"]["mean"] == 12
    assert "typical" in summary["eager"]
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 3  # two mirror sessions and eager
    assert (out / "scaling.png").stat().st_size > 1000
    table = capsys.readouterr().out
    assert "| 0.5x |" in table and "| 1.5x |" in table and "eager" in table


def test_aborted_reaches_and_unfinished_turn_entries_are_summarised_per_budget(tmp_path):
    """What more experience changed in the 1x-10x runs was the dithering (reaches started and taken
    back), not the gaps: the summary carries it, per 100 turns and averaged over partners."""
    low = _run_dir(tmp_path / "a", [0.5], 4)
    high = _run_dir(tmp_path / "b", [0.5], 4)

    def row(profile, factor, ckpt, aborted, turns, entries):
        return {"profile": profile, "kind": "mirror", "policy": ds.label(factor), "checkpoint": str(ckpt),
                "median_gap_s": 0.85, "p90_gap_s": 0.9, "overlap_rate": 0.0, "ssm_violations": 0, "contacts": 0,
                "status": "ok", "aborted_reaches": aborted, "turns": turns, "unfinished_turn_entries": entries}

    rows = [row("typical", 1, low / "mirror.pt", 10, 40, 0), row("erratic", 1, low / "mirror.pt", 30, 40, 0),
            row("typical", 10, high / "mirror.pt", 0, 40, 0), row("erratic", 10, high / "mirror.pt", 2, 20, 1)]
    summary = ds.summarise(rows, [(1.0, [low / "mirror.pt"]), (10.0, [high / "mirror.pt"])])
    one, ten = summary["budgets"]
    assert one["pooled_aborted_per_100_turns"]["mean"] == pytest.approx(50.0)   # (25 + 75) / 2
    assert ten["pooled_aborted_per_100_turns"]["mean"] == pytest.approx(5.0)    # (0 + 10) / 2
    assert (one["unfinished_turn_entries"], ten["unfinished_turn_entries"]) == (0, 1)
    table = ds.format_report(summary)
    assert "aborted reaches per 100 turns" in table and "| 10x |" in table

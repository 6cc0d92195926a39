"""bench/turn_taking.py: the frontier and acceptance logic on synthetic numbers, and a tiny end-to-end run."""

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "turn_taking.py"


def _load_bench():
    # Registered under its file stem: dataclasses and spawn workers look the module up by name.
    if "turn_taking" in sys.modules:
        return sys.modules["turn_taking"]
    spec = importlib.util.spec_from_file_location("turn_taking", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["turn_taking"] = module
    spec.loader.exec_module(module)
    return module


tt = _load_bench()
P = tt.OperatingPoint

# A reactive sweep: longer debounce -> longer gap, fewer overlaps.
SWEEP = [P("reactive 0s", 0.30, 0.08), P("reactive 0.4s", 0.70, 0.02), P("reactive 1.2s", 1.50, 0.0)]


def _row(policy, gap_s, overlap, contacts=0, turns=200, profile="typical", kind=None):
    return {"profile": profile, "heldout": False, "policy": policy, "kind": kind or policy, "turns": turns,
            "median_gap_s": gap_s, "overlap_rate": overlap, "contacts": contacts}


def test_a_point_shorter_and_cleaner_than_every_reactive_point_is_beyond_the_frontier():
    assert tt.beyond_frontier(P("mirror", 0.18, 0.0), SWEEP)
    assert tt.dominating_points(P("mirror", 0.18, 0.0), SWEEP) == []


def test_a_point_beaten_on_both_axes_by_one_debounce_value_is_dominated():
    cand = P("mirror", 0.80, 0.03)   # reactive 0.4s: 0.70 s and 2 % -- better on both
    assert not tt.beyond_frontier(cand, SWEEP)
    assert [p.label for p in tt.dominating_points(cand, SWEEP)] == ["reactive 0.4s"]


def test_a_point_between_the_reactive_points_is_beyond_when_no_single_one_beats_it_on_both_axes():
    # Shorter than 0.4s's gap but more overlap than it; less overlap than 0s but a longer gap.
    assert tt.beyond_frontier(P("mirror", 0.50, 0.05), SWEEP)


def test_an_exact_tie_counts_as_dominated():
    assert not tt.beyond_frontier(P("mirror", 0.70, 0.02), SWEEP)
    assert not tt.beyond_frontier(P("mirror", 0.70 + 1e-12, 0.02), SWEEP)  # float noise is a tie too
    assert not tt.beyond_frontier(P("mirror", 1.50, 0.0), SWEEP)            # same gap, both zero overlap


def test_equal_overlap_with_a_shorter_gap_is_beyond():
    assert tt.beyond_frontier(P("mirror", 1.49, 0.0), SWEEP[2:])


def test_reactive_points_without_turns_dominate_nothing_and_a_nan_candidate_is_not_beyond():
    assert tt.beyond_frontier(P("mirror", 5.0, 0.5), [P("reactive 0s", math.nan, math.nan)])
    assert not tt.beyond_frontier(P("mirror", math.nan, 0.0), SWEEP)
    with pytest.raises(ValueError, match="mirror"):
        tt.dominating_points(P("mirror", math.nan, 0.0), SWEEP)


def test_pareto_front_keeps_the_non_dominated_points_sorted_by_gap():
    pts = SWEEP + [P("reactive 0.8s", 1.0, 0.05), P("reactive 2s", 2.0, 0.0)]
    assert [p.label for p in tt.pareto_front(pts)] == ["reactive 0s", "reactive 0.4s", "reactive 1.2s"]


def _reactive_rows(profile="typical"):
    return [_row(p.label, p.median_gap_s, p.overlap_rate, profile=profile, kind="reactive") for p in SWEEP]


def test_acceptance_passes_a_good_mirror_row_on_typical():
    checks = tt.acceptance_checks(_row("mirror", 0.19, 0.005), _reactive_rows(), 200)
    assert {c.name: c.ok for c in checks} == {"turns": True, "contacts": True, "overlap": True,
                                               "median gap": True, "frontier": True}
    assert tt.passed(checks)


def test_acceptance_names_each_failed_point():
    checks = tt.acceptance_checks(_row("mirror", 0.80, 0.03, contacts=1, turns=150), _reactive_rows(), 200)
    by_name = {c.name: c for c in checks}
    assert not any(c.ok for c in checks)
    assert "150/200" in by_name["turns"].detail
    assert "1 contacts" in by_name["contacts"].detail
    assert "3.0%" in by_name["overlap"].detail
    assert "800 ms" in by_name["median gap"].detail
    assert "reactive 0.4s" in by_name["frontier"].detail
    assert not tt.passed(checks)


def test_median_gap_bound_applies_to_typical_only():
    checks = tt.acceptance_checks(_row("mirror", 0.25, 0.0, profile="slow"), _reactive_rows("slow"), 200)
    gap = next(c for c in checks if c.name == "median gap")
    assert gap.ok is None and "typical only" in gap.detail
    assert tt.passed(checks)


def test_overlap_bound_is_inclusive_at_one_percent():
    ok = next(c for c in tt.acceptance_checks(_row("mirror", 0.1, 0.01), _reactive_rows(), 200) if c.name == "overlap")
    bad = next(c for c in tt.acceptance_checks(_row("mirror", 0.1, 0.0101), _reactive_rows(), 200)
               if c.name == "overlap")
    assert ok.ok and not bad.ok


def test_verdicts_judge_mirror_and_unshared_against_their_own_profiles_reactive_rows():
    rows = (_reactive_rows("typical") + [_row("mirror", 0.19, 0.0), _row("mirror-unshared", 0.9, 0.05)]
            + _reactive_rows("fast") + [_row("mirror", 0.4, 0.0, profile="fast"), _row("oracle", 0.1, 0.0)])
    vs = tt.verdicts(rows, 200)
    assert [(v["profile"], v["policy"], v["passed"]) for v in vs] == [
        ("typical", "mirror", True), ("typical", "mirror-unshared", False), ("fast", "mirror", True)]


def test_verdicts_report_the_difference_to_eager_without_judging_it():
    rows = _reactive_rows() + [_row("mirror", 0.19, 0.0), _row("eager", 0.25, 0.02)]
    (v,) = tt.verdicts(rows, 200)
    assert v["passed"]
    assert v["vs_eager"]["median_gap_delta_s"] == pytest.approx(-0.06)
    assert v["vs_eager"]["overlap_rate_delta"] == pytest.approx(-0.02)
    assert "median gap -60 ms, overlap -2.0 points" in tt.format_verdicts([v])


def test_eager_policy_acts_once_the_partner_has_taken_its_turn():
    import numpy as np

    from coop_robot.policy.base import Observation

    eager = tt.EagerPolicy()

    def obs(t, inside, state="home"):
        return Observation(t_s=t, partner_in_zone=inside, perception_age_s=0.03, robot_state=state,
                           partner_hand_m=np.zeros(3), robot_ee_m=np.zeros(3))

    assert eager.step(obs(0.0, False)).action == "wait"          # the partner goes first
    assert eager.step(obs(0.02, True)).action == "act"           # due: anticipate, controller stages
    assert eager.step(obs(0.04, True, "reaching")).action == "act"  # no yield: the guard keeps it out
    assert eager.step(obs(0.06, False, "acting")).action == "act"
    assert eager.step(obs(0.08, False, "withdrawing")).action == "wait"
    assert eager.step(obs(0.10, False, "home")).action == "wait"  # turn taken: wait for the partner


def test_tiny_end_to_end_run_writes_table_results_and_plot(tmp_path, capsys):
    missing = tmp_path / "no_such_unshared.pt"
    out = tmp_path / "out"
    rc = tt.main(["--turns", "2", "--profiles", "typical", "--no-heldout", "--workers", "1", "--debounce", "0,0.4",
                  "--unshared-checkpoint", str(missing), "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert f"mirror-unshared: checkpoint {missing} not found; row skipped" in text
    assert "train_unshared.yaml" in text
    assert "med gap ms" in text and "typical" in text

    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["policy"] for r in rows] == ["reactive 0s", "reactive 0.4s", "mirror", "eager", "oracle"]
    assert all(r["turns"] == "2" and r["seed"] == "0" and r["profile"] == "typical" for r in rows)

    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["package_version"] and "commit" in doc["git"]
    assert doc["settings"]["turns"] == 2 and doc["settings"]["debounce_s"] == [0.0, 0.4]
    assert doc["settings"]["unshared_checkpoint"] is None
    assert doc["skipped"] and doc["skipped"][0]["policy"] == "mirror-unshared"
    assert [v["policy"] for v in doc["verdicts"]] == ["mirror"]
    assert {c["name"] for c in doc["verdicts"][0]["checks"]} == {"turns", "contacts", "overlap", "median gap",
                                                                   "frontier"}
    assert next(r for r in doc["rows"] if r["policy"] == "mirror")["shared_encoder"] is True
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert tt.main(["--turns", "0", "--no-heldout", "--out", str(tmp_path)]) == 2
    assert tt.main(["--profiles", "nobody", "--no-heldout", "--out", str(tmp_path)]) == 2
    assert "nobody" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tt.main(["--debounce", "0,-1"])

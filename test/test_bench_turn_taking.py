"""bench/turn_taking.py: frontier, statistics and acceptance logic on synthetic numbers, and tiny end-to-end runs."""

import csv
import json
import math
from pathlib import Path

import pytest
from conftest import load_bench

tt = load_bench("turn_taking")
P = tt.OperatingPoint

# A reactive sweep: longer debounce -> longer gaps, slower pace, fewer overlaps.
SWEEP = [P("reactive 0s", 0.30, 0.50, 12.0, 0.08), P("reactive 0.4s", 0.70, 0.90, 10.0, 0.02),
         P("reactive 1.2s", 1.50, 1.70, 8.0, 0.0)]


# --------------------------------------------------------------------------- frontier
def test_a_point_better_than_every_reactive_point_is_beyond_the_frontier():
    assert tt.beyond_frontier(P("mirror", 0.18, 0.25, 14.0, 0.0), SWEEP)
    assert tt.dominating_points(P("mirror", 0.18, 0.25, 14.0, 0.0), SWEEP) == []


def test_a_point_beaten_on_all_four_axes_by_one_setting_is_dominated():
    cand = P("mirror", 0.80, 1.0, 9.0, 0.03)
    assert [p.label for p in tt.dominating_points(cand, SWEEP)] == ["reactive 0.4s"]


@pytest.mark.parametrize("cand", [P("mirror", 0.80, 0.85, 9.0, 0.03),    # shorter p90 than 0.4s
                                  P("mirror", 0.80, 1.0, 10.5, 0.03),    # faster pace than 0.4s
                                  P("mirror", 0.65, 1.0, 9.0, 0.03)])    # shorter median than 0.4s
def test_one_axis_better_than_the_otherwise_dominating_setting_is_enough(cand):
    assert tt.dominating_points(cand, SWEEP[1:2]) == []


def test_an_exact_tie_counts_as_dominated():
    assert not tt.beyond_frontier(P("mirror", 0.70, 0.90, 10.0, 0.02), SWEEP)
    assert not tt.beyond_frontier(P("mirror", 0.70 + 1e-12, 0.90, 10.0 - 1e-12, 0.02), SWEEP)


def test_points_without_turns_dominate_nothing_and_a_nan_candidate_is_not_beyond():
    assert tt.beyond_frontier(P("mirror", 5.0, 6.0, 1.0, 0.5), [P("reactive 0s", math.nan, math.nan, 0.0, math.nan)])
    assert not tt.beyond_frontier(P("mirror", math.nan, 0.5, 10.0, 0.0), SWEEP)
    with pytest.raises(ValueError, match="mirror"):
        tt.dominating_points(P("mirror", math.nan, 0.5, 10.0, 0.0), SWEEP)


def test_pareto_front_drops_dominated_points_and_duplicates():
    pts = SWEEP + [P("reactive 0.8s", 1.0, 1.2, 9.0, 0.05), P("copy", 0.70, 0.90, 10.0, 0.02)]
    assert [p.label for p in tt.pareto_front(pts)] == ["reactive 0s", "reactive 0.4s", "reactive 1.2s"]


def test_pace_is_the_joint_pace_never_the_robot_only_throughput():
    assert tt.pace_of({"pace_turns_per_min": 11.0, "throughput_per_min": 9.0}) == 11.0
    # robot-only throughput is about half the joint pace: a row without pace has none
    assert math.isnan(tt.pace_of({"pace_turns_per_min": math.nan, "throughput_per_min": 9.0}))
    assert math.isnan(tt.pace_of({"throughput_per_min": 9.0}))


# --------------------------------------------------------------------------- statistics over seeds
def test_seed_stat_uses_the_t_distribution():
    s = tt.seed_stat([0.10, 0.20, 0.30])
    assert s.n == 3 and s.mean == pytest.approx(0.2)
    assert s.half_width == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    assert "95% CI" in s.text(1e3, unit=" ms")


def test_one_seed_has_no_ci_and_says_so():
    s = tt.seed_stat([0.2, math.nan])
    assert s.n == 1 and not s.has_ci
    assert s.text(1e3, unit=" ms") == "200 ms (n=1, no CI)"
    assert tt.seed_stat([]).n == 0


def test_t_quantile_table_and_large_df():
    assert tt.t_quantile_975(1) == 12.706 and tt.t_quantile_975(30) == 2.042
    assert tt.t_quantile_975(120) == pytest.approx(1.980, abs=2e-3)


# --------------------------------------------------------------------------- acceptance (issue 10)
def _row(policy, gap, p90=None, overlap=0.0, pace=12.0, contacts=0, turns=20, asked=20, profile="typical",
         kind=None, heldout=False, ssm=0, status=None, checkpoint=None):
    return {"profile": profile, "heldout": heldout, "policy": policy, "kind": kind or policy, "turns": turns,
            "turns_requested": asked, "median_gap_s": gap, "p90_gap_s": gap * 1.2 if p90 is None else p90,
            "overlap_rate": overlap, "pace_turns_per_min": pace, "contacts": contacts, "ssm_violations": ssm,
            "status": status or ("ok" if turns >= asked else "short"), "reason": "" if turns >= asked else "short",
            "checkpoint": checkpoint}


def _partner(mirror_gaps, profile="typical", eager=0.40, oracle=0.18, heldout=False, **kw):
    rows = [_row(p.label, p.median_gap_s, p.p90_gap_s, p.overlap_rate, p.pace_turns_per_min, profile=profile,
                 kind="reactive", heldout=heldout) for p in SWEEP]
    rows += [_row("mirror", g, profile=profile, heldout=heldout, checkpoint=f"s{i}.pt", pace=14.0, **kw)
             for i, g in enumerate(mirror_gaps)]
    rows += [_row("eager", eager, profile=profile, heldout=heldout, pace=13.0),
             _row("oracle", oracle, profile=profile, heldout=heldout, pace=15.0)]
    return rows


def _by_point(verdicts):
    return {v.point: v for v in verdicts}


def test_a_good_mirror_passes_every_point_on_typical():
    v = _by_point(tt.partner_verdicts(_partner([0.20, 0.21, 0.22]), adaptive=True))
    assert {k: x.ok for k, x in v.items()} == {"a": True, "b": True, "c": True, "d": True, "e": True, "f": True}
    assert "the difference holds" in v["c"].detail


def test_an_incomplete_session_fails_liveness_and_the_eager_comparison():
    v = _by_point(tt.partner_verdicts(_partner([0.20, 0.21], turns=0, asked=20)))
    assert v["a"].ok is False and "0/20" in v["a"].detail
    assert v["c"].ok is False


def test_zero_overlaps_in_zero_turns_is_not_a_pass():
    row = tt.result_row(tt.Job(tt.ProfileSpec("typical", "typical"), tt.PolicySpec("mirror", "mirror"), 20, 0),
                        {"turns": 0, "median_gap_s": None, "overlap_rate": 0.0, "contacts": 0})
    assert row["status"] == "short" and "0/20" in row["reason"] and math.isnan(row["overlap_rate"])
    assert math.isnan(row["min_separation_m"])  # metric not reported: NaN, read with .get


def test_p90_beyond_twice_the_oracle_fails_a():
    v = _by_point(tt.partner_verdicts(_partner([0.20], p90=0.45, oracle=0.15)))   # oracle p90: 180 ms
    assert v["a"].ok is False and "need <= 360 ms" in v["a"].detail


def test_contacts_or_ssm_violations_fail_b_and_missing_ssm_is_not_judged():
    assert _by_point(tt.partner_verdicts(_partner([0.2], ssm=1)))["b"].ok is False
    assert _by_point(tt.partner_verdicts(_partner([0.2], contacts=1)))["b"].ok is False
    na = _by_point(tt.partner_verdicts(_partner([0.2], ssm=math.nan)))["b"]
    assert na.ok is None and "not reported" in na.detail


def test_c_needs_the_ci_below_three_quarters_of_eager():
    assert _by_point(tt.partner_verdicts(_partner([0.20, 0.21, 0.22], eager=0.40)))["c"].ok is True
    wide = _by_point(tt.partner_verdicts(_partner([0.10, 0.20, 0.40], eager=0.40)))["c"]
    assert wide.ok is False and "does not hold" in wide.detail
    one = _by_point(tt.partner_verdicts(_partner([0.20], eager=0.40)))["c"]
    assert one.ok is None and "n=1, no CI" in one.detail and "meets" in one.detail
    more_overlap = _by_point(tt.partner_verdicts(_partner([0.20, 0.21, 0.22], eager=0.40, overlap=0.05)))["c"]
    assert more_overlap.ok is False and "overlap higher" in more_overlap.detail


def test_c_is_counted_over_partners_and_held_out_ones():
    names = ["typical", "fast", "slow", "hesitant", "erratic", "brisk", "fickle", "languid"]
    rows = []
    for i, name in enumerate(names):
        good = i not in (1, 7)  # fails on fast and languid (held out)
        rows += _partner([0.2, 0.21, 0.22] if good else [0.35, 0.36, 0.37], profile=name, heldout=i >= 5)
    c = next(v for v in tt.acceptance(rows)["overall"] if v.point == "c")
    assert c.ok is True and "6 of 8 partners (need 6), 2 of 3 held-out (need 2)" in c.detail
    rows = [r for r in rows if r["profile"] != "fickle"] + _partner([0.35, 0.36, 0.37], profile="fickle", heldout=True)
    c = next(v for v in tt.acceptance(rows)["overall"] if v.point == "c")
    assert c.ok is False and "1 of 3 held-out" in c.detail


def test_d_uses_the_four_axis_frontier():
    rows = _partner([0.80], eager=2.0, oracle=0.5)
    for r in rows:
        if r["kind"] == "mirror":
            r.update(p90_gap_s=1.0, pace_turns_per_min=9.0, overlap_rate=0.03)
    d = _by_point(tt.partner_verdicts(rows))["d"]
    assert d.ok is False and "reactive 0.4s" in d.detail


def test_e_applies_to_typical_and_f_to_adaptive_partners_only():
    v = _by_point(tt.partner_verdicts(_partner([0.30], oracle=0.20)))
    assert v["e"].ok is False and "f" not in v
    v = _by_point(tt.partner_verdicts(_partner([0.30], profile="slow", oracle=0.2), adaptive=True))
    assert "e" not in v and v["f"].ok is True and "reactive 0s" in v["f"].detail
    overall = {x.point: x for x in tt.acceptance(_partner([0.2], profile="slow"))["overall"]}
    assert overall["e"].ok is None and overall["f"].ok is None and "no adaptive partner" in overall["f"].detail


def test_acceptance_fails_when_any_overall_point_fails_and_ignores_na():
    assert tt.acceptance(_partner([0.20, 0.21, 0.22]), ["typical"])["passed"]
    assert not tt.acceptance(_partner([0.20, 0.21, 0.22], contacts=1))["passed"]
    text = tt.format_acceptance(tt.acceptance(_partner([0.2])))
    assert "(c) median gap >= 25% shorter than eager" in text and "n/a" in text


def test_the_table_shows_seed_means_with_their_ci():
    text = tt.format_table(_partner([0.20, 0.21, 0.22]))
    line = next(ln for ln in text.splitlines() if " mirror " in ln)
    assert " 3 " in line and "210±25" in line
    assert "n=1: no CI" in text


# --------------------------------------------------------------------------- end to end
def _run(tmp_path, *extra):
    out = tmp_path / "out"
    rc = tt.main(["--turns", "2", "--profiles", "typical", "--no-heldout", "--ray-address", "none",
                  "--debounce", "0,0.4", "--checkpoints-unshared", str(tmp_path / "no_such_unshared.pt"),
                  "--out", str(out), "--quiet", *extra])
    return rc, out


def test_tiny_end_to_end_run_writes_table_results_and_plot(tmp_path, capsys):
    rc, out = _run(tmp_path)
    assert rc == 0
    text = capsys.readouterr().out
    assert "no_such_unshared.pt not found; row skipped" in text and "train_unshared.yaml" in text
    assert "med gap ms" in text and "min sep m" in text and "(a) every turn completed" in text

    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["policy"] for r in rows] == ["reactive 0s", "reactive 0.4s", "mirror", "eager", "oracle"]
    assert all(r["turns"] == "2" and r["status"] == "ok" and r["profile"] == "typical" for r in rows)
    assert {"min_separation_m", "ssm_violations", "functional_delay_s", "fallbacks"} <= set(rows[0])

    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["complete"] and doc["package_version"] and "commit" in doc["git"]
    assert doc["settings"]["turns"] == 2 and doc["settings"]["debounce_s"] == [0.0, 0.4]
    assert doc["settings"]["checkpoints_unshared"] == [] and doc["skipped"][0]["policy"] == "mirror-unshared"
    assert {v["point"] for v in doc["verdicts"]["overall"]} == set("abcdef")
    mirror = next(r for r in doc["rows"] if r["policy"] == "mirror")
    assert mirror["shared_encoder"] is True and mirror["training_seed"] is not None
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_checkpoints_are_one_row_group_with_a_ci(tmp_path, capsys):
    from coop_robot.policy.mirror import DEFAULT_CHECKPOINT

    copy = tmp_path / "seed1.pt"
    copy.write_bytes(DEFAULT_CHECKPOINT.read_bytes())
    rc, out = _run(tmp_path, "--checkpoints-mirror", str(DEFAULT_CHECKPOINT), str(copy))
    assert rc == 0
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [Path(r["checkpoint"]).name for r in doc["rows"] if r["kind"] == "mirror"] == ["mirror.pt", "seed1.pt"]
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("typical") and " mirror " in ln)
    assert " 2 " in line


def test_a_session_that_raises_is_reported_the_rest_saved_and_the_exit_is_2(tmp_path, monkeypatch, capsys):
    real = tt.build_policy

    def broken(spec):
        if spec.kind == "eager":
            raise RuntimeError("simulated crash")
        return real(spec)

    monkeypatch.setattr(tt, "build_policy", broken)
    rc, out = _run(tmp_path, "--check")
    assert rc == 2
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = {r["policy"]: r for r in csv.DictReader(f)}
    assert rows["eager"]["status"] == "error" and "simulated crash" in rows["eager"]["reason"]
    assert rows["oracle"]["status"] == "ok"
    assert "eager: error: RuntimeError: simulated crash" in capsys.readouterr().out


def test_a_short_session_is_a_failed_check_not_a_crash(tmp_path, monkeypatch):
    real = tt.job_env

    class Stalled:
        def __init__(self, env):
            self.env = env

        def run(self, policy, turns):
            return self.env.run(policy, turns, max_sim_s=0.5)  # no turn fits in 0.5 s

        def close(self):
            self.env.close()

    monkeypatch.setattr(tt, "job_env", lambda job: Stalled(real(job)) if job.policy.kind == "mirror" else real(job))
    rc, out = _run(tmp_path, "--check")
    assert rc == 1
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    mirror = next(r for r in doc["rows"] if r["kind"] == "mirror")
    assert mirror["status"] == "short" and mirror["turns"] == 0 and mirror["overlap_rate"] is None
    a = next(v for v in doc["verdicts"]["overall"] if v["point"] == "a")
    assert a["ok"] is False


def test_results_are_written_as_sessions_finish(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    job = tt.Job(tt.ProfileSpec("typical", "typical"), tt.PolicySpec("eager", "eager"), 1, 0)
    seen = []

    def save(rows):
        done = [r for r in rows if r is not None]
        tt.write_csv(done, out / "results.csv")
        seen.append(len((out / "results.csv").read_text(encoding="utf-8").splitlines()) - 1)

    tt.run_jobs([job, job], address="none", progress=False, on_row=save)
    assert seen == [1, 2]


def test_policies_picks_the_rows_and_without_mirror_nothing_is_judged(tmp_path):
    rc, out = _run(tmp_path, "--policies", "eager", "reactive", "--check")
    assert rc == 0
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [r["policy"] for r in doc["rows"]] == ["reactive 0s", "reactive 0.4s", "eager"]
    assert doc["settings"]["policies"] == ["reactive", "eager"] and doc["settings"]["checkpoints_mirror"] == []
    assert doc["skipped"] == [] and all(v["ok"] is None for v in doc["verdicts"]["overall"])
    assert doc["ray"]["mode"] == "serial"


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert tt.main(["--turns", "0", "--no-heldout", "--out", str(tmp_path)]) == 2
    assert tt.main(["--profiles", "nobody", "--no-heldout", "--out", str(tmp_path)]) == 2
    assert "nobody" in capsys.readouterr().err
    assert tt.main(["--no-heldout", "--checkpoints-mirror", str(tmp_path / "x.pt"), "--out", str(tmp_path)]) == 2
    assert tt.main(["--no-heldout", "--fallback-clear-s", "0", "--out", str(tmp_path)]) == 2
    assert tt.main(["--no-heldout", "--ray-address", "head", "--out", str(tmp_path)]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    assert tt.main(["--no-heldout", "--controller-set", "ssm_hand_motion=bogus", "--out", str(tmp_path)]) == 2
    assert tt.main(["--no-heldout", "--controller-set", "no_such_parameter=1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "hand_motion" in err and "no_such_parameter" in err
    with pytest.raises(SystemExit):
        tt.main(["--debounce", "0,-1"])


def test_controller_settings_reach_every_session_and_the_results(tmp_path):
    rc, out = _run(tmp_path, "--policies", "eager", "--controller-set", "ssm_hand_motion=tracker")
    assert rc == 0
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["settings"]["controller_params"] == {"ssm_hand_motion": "tracker"}
    profile = tt.resolve_profiles(["typical"], False, tt.HELDOUT_DIR)[0]
    job = tt.Job(profile, tt.PolicySpec("eager", "eager"), 1, 0, (("ssm_hand_motion", "tracker"),))
    env = tt.job_env(job)
    try:
        assert env.controller.config.ssm_hand_motion == "tracker"
    finally:
        env.close()
    plain = tt.job_env(tt.Job(profile, tt.PolicySpec("eager", "eager"), 1, 0))
    try:
        assert plain.controller.config.ssm_hand_motion == "fit"   # the default (config/world.yaml)
    finally:
        plain.close()


def test_judge_gives_the_verdicts_of_one_run_from_the_rows_of_two(tmp_path, capsys):
    # The controls in one run, the mirror in another: judged together they give what one run gives.
    rc, whole = _run(tmp_path / "whole")
    assert rc == 0
    rc, controls = _run(tmp_path / "controls", "--policies", "eager", "oracle", "reactive")
    assert rc == 0
    rc, mirror = _run(tmp_path / "mirror", "--policies", "mirror", "eager")  # its eager row is left out below
    assert rc == 0
    capsys.readouterr()
    out = tmp_path / "judged"
    assert tt.main(["--judge", f"{controls / 'results.json'}:eager,oracle,reactive",
                    f"{mirror / 'results.json'}:mirror", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "judging 5 sessions from 2 file(s)" in text and "(eager, oracle, reactive), commit" in text
    one = json.loads((whole / "results.json").read_text(encoding="utf-8"))
    two = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert two["verdicts"] == one["verdicts"] and two["passed"] == one["passed"]
    assert sorted(r["policy"] for r in two["rows"]) == sorted(r["policy"] for r in one["rows"])
    assert [s["kinds"] for s in two["judged_from"]] == [["eager", "oracle", "reactive"], ["mirror"]]
    assert (out / "results.csv").is_file() and (out / "frontier.png").is_file()


def test_judge_refuses_a_session_twice_other_sessions_and_files_that_are_not_results(tmp_path, capsys):
    rc, a = _run(tmp_path / "a", "--policies", "eager")
    assert rc == 0
    assert tt.main(["--judge", str(a / "results.json"), str(a / "results.json"), "--out", str(tmp_path / "j")]) == 2
    assert "the session eager on typical is in" in capsys.readouterr().err
    doc = json.loads((a / "results.json").read_text(encoding="utf-8"))
    doc["settings"]["turns"] = 3
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc), encoding="utf-8")
    assert tt.main(["--judge", f"{a / 'results.json'}:eager", f"{other}:oracle", "--out", str(tmp_path / "j")]) == 2
    assert "only the same sessions can be judged together" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert tt.main(["--judge", str(bad), "--out", str(tmp_path / "j")]) == 2
    assert "not a results.json of this benchmark" in capsys.readouterr().err
    assert tt.judge_source("x/results.json:eager,oracle") == (Path("x/results.json"), ("eager", "oracle"))
    assert tt.judge_source("C:/odd:name/results.json") == (Path("C:/odd:name/results.json"), tt.KINDS)

"""`coop-robot study` and `coop-robot analyze` of many bags: grouping, bootstrap, paired comparison, Ray.

Bags with known turn timing: the package's scripted sessions (coop_robot.analysis.synthetic, grouped
by the policy/partner/seed they record) and lab bags in `ros2 bag record`'s layout written by
rosbags' own Writer (test/lab_bags.py: sqlite3 and zstd MCAP, perception only, grouped by a design
CSV), each participant's robot shifted by a known amount and one condition by a known delay.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from lab_bags import ARM_NS, FRAME_S, LAB_SCRIPT, write_lab_bag  # noqa: E402

from coop_robot.analysis.study import (  # noqa: E402
    DesignError,
    StudySession,
    bootstrap_ci,
    grouping_from_summary,
    match_design,
    read_design,
    row_quantile,
    sign_test_p,
    study_statistics,
    wilcoxon_signed_rank,
)
from coop_robot.analysis.synthetic import write_session_bag  # noqa: E402
from coop_robot.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Synthetic participants (partner, seed, robot delay s); condition "mirror" is 0.2 s faster.
SYN_PARTICIPANTS = (("typical", 1, 0.0), ("fast", 2, 0.05), ("slow", 3, 0.10))
SYN_GAPS_S = (0.55, 0.65, 0.75)
MIRROR_GAIN_S = 0.2
#: Lab participants: robot shifted by 20 ms per participant; condition "late" enters 100 ms later.
LAB_SHIFT_S, LAB_DELAY_S = 0.02, 0.10
LAB_MEDIAN_GAP_S = 0.45      # test/lab_bags.py LAB_TURNS: -0.3 0.4 0.4 0.5 0.5 0.6
ARM_S = ARM_NS * 1e-9


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    bags = []
    truth = {}     # bag name -> the median of its true gaps (exits on camera frames, entries on joint samples)
    for partner, seed, delay in SYN_PARTICIPANTS:
        for policy, gain in (("reactive", 0.0), ("mirror", MIRROR_GAIN_S)):
            gaps = [g + delay - gain for g in SYN_GAPS_S]
            bags.append(root / f"{partner}_s{seed}_{policy}")
            turns = write_session_bag(bags[-1], gaps_s=gaps, seed=seed, meta={"policy": policy, "partner": partner})
            truth[bags[-1].name] = float(np.median([t.gap_s for t in turns]))
    truncated = root / "cut_short"
    shutil.copytree(bags[0], truncated)
    mcap = next(truncated.glob("*.mcap"))
    os.truncate(mcap, mcap.stat().st_size // 2)
    return {"bags": bags, "truncated": truncated, "root": root, "median_gap_s": truth}


def _shifted(script, s: float):
    return replace(script, robot=tuple(tuple(round(t + s, 3) for t in stay) for stay in script.robot))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    rows = []
    for k in range(3):
        for condition, delay in (("prompt", 0.0), ("late", LAB_DELAY_S)):
            storage = {"storage": "sqlite3"} if (k + (condition == "late")) % 2 else {"storage": "mcap", "zstd": True}
            bag = write_lab_bag(root / "bags" / f"p{k + 1}_{condition}", script=_shifted(LAB_SCRIPT, k * LAB_SHIFT_S
                                                                                          + delay),
                                turns=None, seed=k, **storage)
            rows.append((f"bags/{bag.name}", f"P{k + 1}", condition, str(2 * k + (condition == "late") + 1)))
    design = root / "study.csv"
    with open(design, "w", newline="") as fh:
        fh.write("# a lab study: two conditions per participant, in the order of the last column\n")
        w = csv.writer(fh)
        w.writerow(["Bag", "participant", "condition", "order"])
        w.writerows(rows)
    return {"root": root, "design": design}


# ---------------------------------------------------------------------------------------- grouping
def test_design_csv_rows_resolve_against_its_directory_and_bad_rows_are_named(tmp_path):
    (tmp_path / "a").mkdir()
    good = tmp_path / "study.csv"
    good.write_text("bag,Participant,condition,note\n\n# comment\na,P1,A,first\n/abs/b,P1,B,\n")
    rows = read_design(good)
    assert [(r.bag, r.participant, r.condition, r.extra, r.line) for r in rows] == [
        ((tmp_path / "a").resolve(), "P1", "A", {"note": "first"}, 4), (Path("/abs/b"), "P1", "B", {"note": ""}, 5)]
    assert match_design([tmp_path / "a", Path("/elsewhere/b")], rows, good) == rows   # by path, then by name
    with pytest.raises(DesignError, match=r"no row for: .*/c"):
        match_design([tmp_path / "c"], rows, good)
    cases = {"bag,participant\na,P1\n": "no column condition",
             "bag,participant,condition\na,,A\n": "line 2: empty participant",
             "bag,participant,condition\na,P1,A\n./a,P2,B\n": "line 3: bag ./a is already on line 2",
             "bag,participant,condition\na,P1\n": "line 2: 2 cells, the header has 3",
             "bag,participant,condition\n": "a header but no rows"}
    for text, message in cases.items():
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(DesignError, match=message):
            read_design(bad)


def test_metadata_grouping_is_the_recorded_policy_and_partner_with_its_seed():
    assert grouping_from_summary({"policy": "mirror", "partner": "typical", "seed": 3}) == ("typical-s3", "mirror")
    assert grouping_from_summary({"policy": "reactive", "partner": "lab", "seed": None}) == ("lab", "reactive")
    assert grouping_from_summary({"policy": "unknown", "partner": "unknown", "seed": None}) == (None, None)


# ---------------------------------------------------------------------------------------- statistics
def test_bootstrap_interval_is_deterministic_for_a_seed_and_covers_the_true_median():
    data = 0.8 + np.linspace(-0.3, 0.3, 41)[np.random.default_rng(7).permutation(41)]   # median 0.8

    def ci(values, seed):
        return bootstrap_ci(values, lambda x: row_quantile(x, 0.5), resamples=4000, rng=np.random.default_rng(seed))

    def mean_ci(seed):   # a mean: a continuous statistic, so another seed moves the interval
        return bootstrap_ci(noisy, lambda x: x.mean(axis=1), resamples=4000, rng=np.random.default_rng(seed))

    noisy = np.random.default_rng(3).normal(size=40)
    assert ci(noisy, 1) == ci(noisy, 1) and mean_ci(1) == mean_ci(1) and mean_ci(1) != mean_ci(2)
    lo, hi = ci(data, 1)
    assert lo < 0.8 < hi and hi - lo < 0.2
    assert bootstrap_ci([1.0, 2.0], lambda x: x.mean(axis=1), rng=np.random.default_rng(0)) is None  # too few
    # Over many samples of the known distribution the 95 % interval covers the true median about 95 % of the time.
    rng = np.random.default_rng(11)
    covered = []
    for _ in range(300):
        sample = rng.normal(loc=0.8, scale=0.2, size=30)
        lo, hi = bootstrap_ci(sample, lambda x: row_quantile(x, 0.5), resamples=1000, rng=rng)
        covered.append(lo <= 0.8 <= hi)
    assert 0.88 <= np.mean(covered) <= 0.99


def test_sign_and_wilcoxon_tests_match_a_full_enumeration():
    assert sign_test_p(9, 1) == pytest.approx(2 * 11 / 1024) and sign_test_p(5, 5) == 1.0
    assert sign_test_p(0, 0) is None
    d = [0.3, -0.1, 0.1, 0.2, 0.0, 0.2, 0.5, -0.4]     # a zero (dropped) and tied magnitudes
    got = wilcoxon_signed_rank(d)
    nz = [x for x in d if x != 0]
    a = np.abs(nz)
    ranks = np.array([np.mean([i + 1 for i, y in enumerate(sorted(a)) if y == x]) for x in a])
    w_obs = ranks[np.array(nz) > 0].sum()
    centre = ranks.sum() / 2
    ws = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=len(nz))]
    p = np.mean([abs(w - centre) >= abs(w_obs - centre) - 1e-9 for w in ws])
    assert (got["n"], got["w_plus"], got["w_minus"]) == (7, w_obs, ranks.sum() - w_obs)
    assert got["p"] == pytest.approx(p)


def _session(participant, condition, gaps, pace=20.0, violations=(0,)):
    turns = {"gap_s": list(gaps), "overlapped": [0.0] * len(gaps), "min_separation_m": [0.3] * len(gaps),
             "ssm_violations": [float(v) for v in violations] + [0.0] * (len(gaps) - len(violations))}
    values = {"median_gap_s": float(np.median(gaps)), "p90_gap_s": float(np.percentile(gaps, 90)),
              "overlap_rate": 0.0, "min_separation_m": 0.3, "ssm_violations": int(sum(violations)),
              "pace_turns_per_min": pace}
    return StudySession(f"{participant}_{condition}", f"{participant}_{condition}", participant, condition,
                        "design", values=values, turns=turns)


def test_paired_comparison_of_known_per_participant_differences():
    delta = {"P1": 0.30, "P2": 0.10, "P3": 0.20, "P4": -0.05, "P5": 0.25}
    sessions = []
    for i, (p, d) in enumerate(delta.items()):
        base = [0.5 + 0.1 * i, 0.6 + 0.1 * i, 0.7 + 0.1 * i]
        sessions += [_session(p, "A", base, pace=20.0 + i), _session(p, "B", [g + d for g in base], pace=20.0 + i,
                                                                     violations=(1,) if p == "P1" else (0,))]
    study = study_statistics(sessions, compare=[("A", "B")], resamples=2000, seed=5)
    # Each group's resamples depend on the seed and the group's name only, not on the sessions' order.
    shuffled = study_statistics(list(reversed(sessions)), compare=[("A", "B")], resamples=2000, seed=5)
    assert shuffled["by_condition"] == study["by_condition"] and shuffled["paired"] == study["paired"]
    pair = study["paired"][0]
    gap = pair["metrics"]["median_gap_s"]
    assert pair["difference"] == "B - A" and gap["n"] == 5
    assert gap["differences"] == pytest.approx(delta)
    assert gap["mean"] == pytest.approx(np.mean(list(delta.values())))
    assert gap["median"] == pytest.approx(0.20)
    assert gap["mean_ci_low"] < gap["mean"] < gap["mean_ci_high"]
    assert (gap["positive"], gap["negative"], gap["zero"]) == (4, 1, 0)
    assert gap["sign_test_p"] == pytest.approx(0.375)
    assert gap["wilcoxon"]["w_minus"] == 1.0 and gap["wilcoxon"]["p"] == pytest.approx(4 / 32)
    pace = pair["metrics"]["pace_turns_per_min"]
    assert (pace["zero"], pace["sign_test_p"], pace["wilcoxon"]["p"]) == (5, None, None)
    assert pair["metrics"]["ssm_violations"]["differences"]["P1"] == 1.0
    # Per condition: the median over participants of their figures; per cell: over the cell's turns.
    assert study["by_condition"]["A"]["median_gap_s"]["value"] == pytest.approx(0.8)
    assert study["by_condition"]["A"]["median_gap_s"]["n"] == 5
    cell = study["by_participant"]["P2"]["B"]["median_gap_s"]
    assert cell["value"] == pytest.approx(0.8) and cell["n"] == 3 and cell["ci_low"] <= 0.8 <= cell["ci_high"]
    assert study["by_participant"]["P2"]["B"]["pace_turns_per_min"]["ci_low"] is None   # one session
    # The same seed gives the same figures; another seed other intervals but the same values.
    again = study_statistics(sessions, compare=[("A", "B")], resamples=2000, seed=5)
    other = study_statistics(sessions, compare=[("A", "B")], resamples=2000, seed=6)
    assert again == study
    assert other["paired"][0]["metrics"]["median_gap_s"]["median"] == gap["median"]


def test_row_quantile_is_numpys_on_the_finite_values():
    x = np.random.default_rng(2).normal(size=(50, 7))
    x[x > 1.2] = np.nan
    x[0] = np.nan
    for q in (0.5, 0.9, 0.0, 1.0):
        want = [np.percentile(r[np.isfinite(r)], 100 * q) if np.isfinite(r).any() else np.nan for r in x]
        np.testing.assert_allclose(row_quantile(x, q), want, rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------------- the command
def _study(out: Path, *args) -> int:
    return main(["study", *map(str, args), "--out", str(out), "--quiet", "--bootstrap", "2000",
                 "--ray-address", "none"])


def test_study_of_scripted_sessions_grouped_by_their_metadata(syn, tmp_path, capsys):
    out = tmp_path / "study"
    rc = _study(out, *syn["bags"], syn["truncated"], "--compare", "reactive", "mirror")
    captured = capsys.readouterr()
    assert rc == 1, captured.err                       # the cut-short bag: a data problem, named
    assert "cut_short left out (damaged)" in captured.err and "truncated" in captured.err
    study = json.loads((out / "study.json").read_text())
    assert study["conditions"] == ["reactive", "mirror"]
    assert study["participants"] == [f"{p}-s{s}" for p, s, _ in SYN_PARTICIPANTS]
    assert study["sessions_included"] == 6 and study["sessions_excluded"] == 1
    true_diffs = []
    for partner, seed, _ in SYN_PARTICIPANTS:
        cells = study["by_participant"][f"{partner}-s{seed}"]
        want = {c: syn["median_gap_s"][f"{partner}_s{seed}_{c}"] for c in ("reactive", "mirror")}
        for condition in want:   # scored on ground truth: the true gaps to 1 ms
            assert cells[condition]["median_gap_s"]["value"] == pytest.approx(want[condition], abs=1e-3)
        true_diffs.append(want["mirror"] - want["reactive"])
    assert study["by_condition"]["reactive"]["median_gap_s"]["value"] == pytest.approx(
        syn["median_gap_s"]["fast_s2_reactive"], abs=1e-3)   # the middle participant
    gap = study["paired"][0]["metrics"]["median_gap_s"]
    assert gap["mean"] == pytest.approx(np.mean(true_diffs), abs=1e-3) and gap["negative"] == 3
    assert gap["mean"] == pytest.approx(-MIRROR_GAIN_S, abs=0.04)      # as scripted, to a camera frame
    with open(out / "sessions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["ok"] * 6 + ["damaged"] and rows[-1]["included"] == "False"
    for name in ("by_condition", "by_participant", "paired", "paired_differences"):
        assert (out / f"{name}.csv").stat().st_size > 100
    assert (out / "sessions" / "typical_s1_mirror" / "turns.csv").is_file()
    page = (out / "study.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and 'src="http' not in page and "<link" not in page
    assert "Paired comparison: mirror - reactive" in page and "cut_short" in page

    # A bag that names no policy cannot be grouped without a design: a usage error, named.
    unnamed = tmp_path / "unnamed"
    write_session_bag(unnamed, gaps_s=[0.5], topics=("/joint_states", "/partner/in_zone", "/partner/hand"))
    assert _study(tmp_path / "o2", syn["bags"][0], unnamed) == 2
    assert "unnamed left out (ungrouped)" in capsys.readouterr().err


def test_study_of_lab_bags_from_another_writer_grouped_by_a_design_csv(lab, tmp_path, capsys):
    out = tmp_path / "study"
    assert _study(out, "--design", lab["design"], "--compare", "prompt", "late") == 0, capsys.readouterr().err
    study = json.loads((out / "study.json").read_text())
    assert study["meta"]["grouped_by"] == "design"
    assert study["participants"] == ["P1", "P2", "P3"] and study["conditions"] == ["prompt", "late"]
    storages = {s["name"]: s for s in study["sessions"]}
    assert storages["p1_prompt"]["design"] == {"order": "1"}
    # Partner exits are seen on camera frames (the same in every bag), robot entries on arm samples.
    first = study["by_participant"]["P1"]["prompt"]["median_gap_s"]["value"]
    assert first == pytest.approx(LAB_MEDIAN_GAP_S, abs=FRAME_S + 1e-6)
    for k in range(3):
        for condition, delay in (("prompt", 0.0), ("late", LAB_DELAY_S)):
            cell = study["by_participant"][f"P{k + 1}"][condition]
            assert cell["median_gap_s"]["value"] - first == pytest.approx(k * LAB_SHIFT_S + delay, abs=ARM_S + 1e-6)
            assert cell["overlap_rate"]["value"] == pytest.approx(2 / 6)     # turns 2 and 3 overlap
    gap = study["paired"][0]["metrics"]["median_gap_s"]
    assert gap["median"] == pytest.approx(LAB_DELAY_S, abs=ARM_S + 1e-6)
    assert (gap["positive"], gap["sign_test_p"], gap["wilcoxon"]["p"]) == (3, 0.25, 0.25)
    # The design's bags given on the command line are matched to their rows by path.
    bags = sorted((lab["root"] / "bags").iterdir())
    assert _study(tmp_path / "again", "--design", lab["design"], *bags[:2]) == 0
    assert json.loads((tmp_path / "again" / "study.json").read_text())["sessions_included"] == 2
    capsys.readouterr()
    assert _study(tmp_path / "bad", "--design", lab["design"], lab["root"] / "bags", "--compare", "prompt", "x") == 2
    assert "no row for" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- on Ray
def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "coop_robot.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=400, check=False)


def _without(study: dict, *keys: str) -> dict:
    return {k: v for k, v in study.items() if k not in keys}


@pytest.mark.timeout(600)
def test_study_and_analyze_give_the_same_figures_serially_and_on_embedded_ray(syn, tmp_path):
    bags = [*syn["bags"][:2], syn["truncated"], *syn["bags"][2:]]
    serial = _cli("study", *bags, "--out", tmp_path / "serial", "--ray-address", "none", "--quiet")
    on_ray = _cli("study", *bags, "--out", tmp_path / "ray", "--workers", "2")
    assert serial.returncode == on_ray.returncode == 1, on_ray.stderr[-3000:]
    assert "embedded local Ray" in on_ray.stderr and f"[  {len(bags)}/{len(bags)}]" in on_ray.stderr
    a, b = (json.loads((tmp_path / d / "study.json").read_text()) for d in ("serial", "ray"))
    assert _without(a, "meta") == _without(b, "meta")
    for name in ("sessions", "by_condition", "by_participant", "paired", "paired_differences"):
        assert (tmp_path / "serial" / f"{name}.csv").read_bytes() == (tmp_path / "ray" / f"{name}.csv").read_bytes()
    # Printed in bag order, the damaged bag named, every other bag analysed.
    lines = [ln for ln in on_ray.stdout.splitlines() if ln.startswith("== ")]
    assert [ln.split()[1] for ln in lines] == [str(b) for b in bags]
    assert "cut_short" in on_ray.stderr and "truncated" in on_ray.stderr

    # analyze: the same per-bag files whichever way it runs (the serial run here is in-process).
    out = tmp_path / "analyze_ray"
    ray_run = _cli("analyze", *bags, "--out", out, "--workers", "2", "--no-plots")
    assert ray_run.returncode == 1 and "data problems in: cut_short" in ray_run.stderr
    assert main(["analyze", *map(str, bags), "--out", str(tmp_path / "analyze_serial"), "--ray-address", "none",
                 "--quiet", "--no-plots"]) == 1
    for bag in bags:
        for name in ("turns.csv", "summary.json"):
            serial_file, ray_file = tmp_path / "analyze_serial" / bag.name / name, out / bag.name / name
            if name == "summary.json":
                strip = ("analysis_wall_s",)
                assert (_without(json.loads(serial_file.read_text()), *strip)
                        == _without(json.loads(ray_file.read_text()), *strip))
            elif serial_file.exists():
                assert serial_file.read_bytes() == ray_file.read_bytes()


@pytest.mark.timeout(600)
def test_a_study_gives_the_same_figures_on_a_two_node_cluster(syn, tmp_path):
    from coop_robot.ray_cluster import LocalRayCluster

    bags = syn["bags"]
    serial = _cli("study", *bags, "--out", tmp_path / "serial", "--ray-address", "none", "--quiet")
    assert serial.returncode == 0, serial.stderr[-3000:]
    with LocalRayCluster(nodes=2, cpus_per_node=1) as cluster:
        env = {**os.environ, "PYTHONPATH": str(REPO), **cluster.env}
        env.pop("RAY_ADDRESS", None)
        on_cluster = subprocess.run([sys.executable, "-m", "coop_robot.cli", "study", *map(str, bags), "--out",
                                     str(tmp_path / "cluster"), "--ray-address", cluster.address],
                                    env=env, capture_output=True, text=True, timeout=400, check=False)
    assert on_cluster.returncode == 0, on_cluster.stderr[-3000:]
    assert f"Ray cluster at {cluster.address}: 2 node(s)" in on_cluster.stderr
    a, b = (json.loads((tmp_path / d / "study.json").read_text()) for d in ("serial", "cluster"))
    assert _without(a, "meta") == _without(b, "meta")
    for name in ("sessions", "by_condition", "by_participant"):
        assert (tmp_path / "serial" / f"{name}.csv").read_bytes() == (tmp_path / "cluster" / f"{name}.csv").read_bytes()

"""Mirror-unit analysis (`coop-robot analyze-policy`): the statistics on synthetic data and a short
end-to-end run with the shipped checkpoint and with a tiny separate-encoder network."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coop_robot.analysis.mirror_units import (
    additive_tuning,
    forecast_error_by_time_to_exit,
    mirror_index,
    mirror_unit_analysis,
    tuning_curves,
)

REPO = Path(__file__).resolve().parents[1]
OUTPUT_FILES = ("mirror_units.csv", "summary.json", "mirror_index_hist.png", "tuning_curves.png",
                "forecast_error.png")


def run_cli(*args, cwd=REPO, timeout=120):
    return subprocess.run([sys.executable, "-m", "coop_robot.cli", "analyze-policy", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)})


# ------------------------------------------------------------------ mirror index
def test_identical_tuning_gives_index_one_and_anticorrelated_minus_one():
    t = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 0.5], [5.0, 2.0]])
    r, excluded = mirror_index(t, t)
    assert np.allclose(r, 1.0) and not excluded.any()
    r, _ = mirror_index(t, -2.0 * t + 7.0)
    assert np.allclose(r, -1.0)


def test_flat_tuning_is_excluded_not_scored():
    ts = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 2.0]])
    to = ts.copy()
    to[:, 1] = 0.7  # constant in the "other" condition
    r, excluded = mirror_index(ts, to)
    assert r[0] == pytest.approx(1.0)
    assert math.isnan(r[1]) and excluded.tolist() == [False, True]


def test_phases_missing_in_one_condition_are_left_out_and_too_few_give_nan():
    ts = np.array([[0.0], [1.0], [2.0], [3.0]])
    to = np.array([[0.0], [1.0], [2.0], [np.nan]])
    assert mirror_index(ts, to)[0][0] == pytest.approx(1.0)  # over the three common phases
    to[2] = np.nan
    assert math.isnan(mirror_index(ts, to)[0][0])            # two points say nothing


def test_tuning_curves_are_phase_means_with_nan_for_unseen_phases():
    act = np.array([[1.0], [3.0], [10.0], [20.0]])
    tuning, counts = tuning_curves(act, np.array([0, 0, 2, 2]), 4)
    assert counts.tolist() == [2, 0, 2, 0]
    assert tuning[0, 0] == 2.0 and tuning[2, 0] == 15.0 and np.isnan(tuning[1, 0]) and np.isnan(tuning[3, 0])
    with pytest.raises(ValueError, match="labels"):
        tuning_curves(act, np.array([0, 1, 4, 0]), 4)


# ------------------------------------------------------------------ shuffled control
def _synthetic_layer(rng, n_mirror, n_noise, n_ticks=3000, n_phases=4):
    """Units with independent random phase profiles; the first n_mirror share self/other profiles."""
    ls, lo = rng.integers(0, n_phases, n_ticks), rng.integers(0, n_phases, n_ticks)
    u = n_mirror + n_noise
    prof_self = rng.normal(size=(n_phases, u))
    prof_other = rng.normal(size=(n_phases, u))
    prof_other[:, :n_mirror] = 1.5 * prof_self[:, :n_mirror] + 0.3  # same shape, other gain/offset
    a_s = prof_self[ls] + 0.5 * rng.normal(size=(n_ticks, u))
    a_o = prof_other[lo] + 0.5 * rng.normal(size=(n_ticks, u))
    return a_s, ls, a_o, lo


def test_shuffled_control_finds_planted_mirror_units():
    rng = np.random.default_rng(1)
    a_s, ls, a_o, lo = _synthetic_layer(rng, n_mirror=12, n_noise=20)
    res = mirror_unit_analysis(a_s, ls, a_o, lo, 4, n_permutations=200, seed=2)
    assert res.mirror[:12].all()                      # every planted unit is found
    assert res.index[:12].min() > 0.95
    assert res.share > 0.3 and res.p_value < 0.01
    assert 0.02 < res.shuffled_share < 0.08           # ~5 % above the 95th percentile by construction


def test_shuffled_control_finds_no_excess_of_mirror_units_in_noise():
    rng = np.random.default_rng(3)
    a_s, ls, a_o, lo = _synthetic_layer(rng, n_mirror=0, n_noise=60)
    res = mirror_unit_analysis(a_s, ls, a_o, lo, 4, n_permutations=200, seed=4)
    assert res.share < 0.2 and res.p_value > 0.05
    # random tuning vectors of four phases: the chance threshold is high (r ~ 0.9)
    assert 0.8 < res.threshold < 0.98


def test_additive_tuning_separates_two_agents_that_never_act_alone():
    # The robot always moves while the partner acts (an anticipating robot): the plain means of
    # "robot idle" ticks never see the partner act, the additive model still recovers both effects.
    rng = np.random.default_rng(5)
    eff_self, eff_other = np.array([0.0, 1.0, -2.0, 3.0]), np.array([0.0, 2.0, 0.5, -1.0])
    pairs = np.array([(0, 0), (1, 0), (2, 0), (3, 0), (1, 1), (1, 2), (1, 3), (3, 1)])
    pick = pairs[rng.integers(0, len(pairs), 4000)]
    act = (5.0 + eff_self[pick[:, 0]] + eff_other[pick[:, 1]])[:, None] + 0.01 * rng.normal(size=(4000, 1))
    ts, to, cs, co, identifiable = additive_tuning(act, pick[:, 0], pick[:, 1], 4, reference=0)
    assert identifiable and cs.sum() == co.sum() == 4000
    assert np.allclose(ts[:, 0], 5.0 + eff_self, atol=0.01)
    assert np.allclose(to[:, 0], 5.0 + eff_other, atol=0.01)


# ------------------------------------------------------------------ forecast table
def test_forecast_error_is_binned_by_true_time_to_exit():
    tte = np.array([0.1, 0.2, 0.3, 0.7, 1.5, 3.0, np.nan])
    forecast = np.array([0.2, 0.2, 0.1, 1.2, 0.5, 3.0, 9.0])
    table = forecast_error_by_time_to_exit(forecast, tte)
    by_lo = {b["lo_s"]: b for b in table.bins}
    assert [b["ticks"] for b in table.bins] == [2, 1, 1, 1, 1]
    assert by_lo[0.0]["mae_s"] == pytest.approx(0.05) and by_lo[0.0]["bias_s"] == pytest.approx(0.05)
    assert by_lo[0.25]["mae_s"] == pytest.approx(0.2) and by_lo[0.25]["bias_s"] == pytest.approx(-0.2)
    assert by_lo[1.0]["median_abs_error_s"] == pytest.approx(1.0)
    assert by_lo[2.0]["hi_s"] == math.inf and by_lo[2.0]["mae_s"] == pytest.approx(0.0)
    assert table.ticks == 6                                   # the NaN tick is left out
    assert table.mae_s == pytest.approx(np.mean([0.1, 0.0, 0.2, 0.5, 1.0, 0.0]))
    assert -1.0 <= table.correlation <= 1.0


def test_forecast_table_rejects_mismatched_inputs_and_bad_edges():
    with pytest.raises(ValueError, match="one value per tick"):
        forecast_error_by_time_to_exit([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="increasing"):
        forecast_error_by_time_to_exit([1.0], [1.0], edges_s=(0.0, 2.0, 1.0))


# ------------------------------------------------------------------ end to end
def test_cli_run_with_the_shipped_checkpoint_writes_every_output(tmp_path):
    res = run_cli("--turns", "3", "--permutations", "40", "--out", "tmp", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "tmp"
    for name in OUTPUT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["layers"]) == {"encoder", "gru"}
    assert summary["sessions"][0]["turns"] == 3 and summary["shared_encoder"] is True
    assert summary["forecast"]["ticks"] > 0 and len(summary["forecast"]["bins"]) == 5
    lines = (out / "mirror_units.csv").read_text().splitlines()
    assert lines[0].startswith("layer,unit,mirror_index,mirror")
    assert len(lines) == 1 + summary["layers"]["encoder"]["units"] + summary["layers"]["gru"]["units"]
    assert "Mirror units" in res.stdout and "Exit forecast error" in res.stdout


def test_separate_encoder_checkpoint_is_analysed_too(tmp_path):
    import torch

    from coop_robot.policy.mirror_net import MirrorNetConfig, MirrorPolicyNet, ObservationSpec, save_checkpoint

    torch.manual_seed(0)
    cfg = MirrorNetConfig(latent_dim=4, conv_channels=4, hidden_dim=6, shared_encoder=False)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", MirrorPolicyNet(cfg), cfg, ObservationSpec())
    res = run_cli("--checkpoint", str(ckpt), "--turns", "1", "--permutations", "20", "--quiet",
                  "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["shared_encoder"] is False
    assert summary["layers"]["encoder"]["units"] == 4 and summary["layers"]["gru"]["units"] == 6


def test_missing_or_corrupt_checkpoint_and_bad_arguments_fail_clearly(tmp_path):
    res = run_cli("--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "nope.pt" in res.stderr and "does not exist" in res.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    res = run_cli("--checkpoint", str(bad), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "bad.pt" in res.stderr and "corrupt" in res.stderr
    res = run_cli("--turns", "0")
    assert res.returncode == 2 and "--turns" in res.stderr
    res = run_cli("--partner", "grumpy", "--turns", "1")
    assert res.returncode == 2 and "typical" in res.stderr
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ population analyses
POPULATION_FILES = ("population.json", "population_cka.png", "population_rsm.png", "population_pca.png",
                    "population_timescales.png")


def test_replaying_the_recorded_inputs_reproduces_what_the_policy_computed():
    from coop_robot.analysis.policy_analysis import record_sessions
    from coop_robot.analysis.population_compare import replay
    from coop_robot.policy.mirror import MirrorPolicy

    policy = MirrorPolicy()
    rec = record_sessions(policy, ["typical", "erratic"], turns=1, seed=0, progress=False, keep_inputs=True)
    assert rec.self_windows.shape[0] == rec.context.shape[0] == rec.ticks
    z_self, z_other, hidden = replay(policy.net, rec, chunk=97)   # chunks carry the GRU state across
    assert np.allclose(z_self, rec.z_self, atol=1e-4)
    assert np.allclose(z_other, rec.z_other, atol=1e-4)
    assert np.allclose(hidden, rec.hidden, atol=1e-4)


def test_untrained_networks_are_reproducible_per_seed_and_leave_the_global_rng_alone():
    import torch

    from coop_robot.analysis.population_compare import untrained_network
    from coop_robot.policy.mirror_net import MirrorNetConfig

    cfg = MirrorNetConfig(latent_dim=4, conv_channels=4, hidden_dim=6)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, b = untrained_network(cfg, False, 3), untrained_network(cfg, False, 3)
    assert torch.rand(1) == expected_next
    c = untrained_network(cfg, True, 4)
    wa, wb = a.net.core.weight_hh_l0, b.net.core.weight_hh_l0
    assert torch.equal(wa, wb) and not torch.equal(wa, c.net.core.weight_hh_l0)
    assert a.label == "untrained-separate" and len(a.net.encoders) == 2
    assert c.label == "untrained-shared" and len(c.net.encoders) == 1


def test_cli_population_compares_checkpoints_and_untrained_networks(tmp_path):
    import torch

    from coop_robot.policy.mirror_net import MirrorNetConfig, MirrorPolicyNet, ObservationSpec, save_checkpoint

    torch.manual_seed(0)
    cfg = MirrorNetConfig(latent_dim=4, conv_channels=4, hidden_dim=6, shared_encoder=False)
    tiny = save_checkpoint(tmp_path / "tiny.pt", MirrorPolicyNet(cfg), cfg, ObservationSpec())
    shipped = REPO / "coop_robot" / "policy" / "checkpoints" / "mirror.pt"
    res = run_cli("--turns", "2", "--permutations", "20", "--quiet", "--out", str(tmp_path / "out"),
                  "--compare", f"shipped={shipped}", f"tiny={tiny}", f"tiny={tiny}", "--untrained-seeds", "0", "1")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    for name in OUTPUT_FILES + POPULATION_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    data = json.loads((out / "population.json").read_text())
    assert [n["label"] for n in data["networks"]] == ["shipped", "tiny", "tiny", "untrained-shared",
                                                      "untrained-shared", "untrained-separate", "untrained-separate"]
    assert list(data["groups"]) == ["shipped", "tiny", "untrained-shared", "untrained-separate"]
    assert data["groups"]["untrained-shared"]["condition_cka"]["n"] == 2
    assert data["groups"]["shipped"]["condition_cka"]["ci95"] is None           # one network: no interval
    # the same checkpoint twice has no spread; the spread comes from a group that varies
    assert data["groups"]["tiny"]["condition_cka"]["min"] == data["groups"]["tiny"]["condition_cka"]["max"]
    assert data["condition_cka_spread"]["group"] in ("untrained-shared", "untrained-separate")
    assert len(data["verdicts"]) == 6 and all(v["exceeds"] in (True, False) for v in data["verdicts"])
    shipped_net = data["networks"][0]
    assert 0.0 <= shipped_net["condition_cka"]["cka"] <= 1.0 and len(shipped_net["rsm"]) == 4
    assert shipped_net["timescales"]["gru"]["units"] == 64 and shipped_net["turn_events"] >= 1
    assert 0.0 <= data["input_condition_cka"]["cka"] <= 1.0
    assert "Population analyses" in res.stdout and "Seed-to-seed spread" in res.stdout


def test_cli_population_rejects_bad_compare_items(tmp_path):
    res = run_cli("--compare", "no_equals_sign", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "LABEL=FILE" in res.stderr
    res = run_cli("--compare", f"x={tmp_path / 'missing.pt'}", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "missing.pt" in res.stderr
    res = run_cli("--compare", f"untrained-shared={tmp_path / 'a.pt'}", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "reserved" in res.stderr
    res = run_cli("--untrained-seeds", "-1", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "--untrained-seeds" in res.stderr
    assert not (tmp_path / "o").exists()

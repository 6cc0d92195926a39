"""Lesions (`coop-robot lesion`): silencing units with hooks, unit selection, the effect statistics,
the command's errors and a tiny serial run."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from coop_robot.analysis import lesion as les
from coop_robot.analysis.mirror_units import time_to_exit_s

REPO = Path(__file__).resolve().parents[1]


def _inputs(net, ticks: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    cfg = net.config
    return [(torch.randn(1, cfg.window_steps, cfg.n_features, generator=g),
             torch.randn(1, cfg.window_steps, cfg.n_features, generator=g),
             torch.randn(1, cfg.context_dim, generator=g)) for _ in range(ticks)]


def _tiny_net(shared: bool):
    import torch

    from coop_robot.policy.mirror_net import MirrorNetConfig, MirrorPolicyNet

    torch.manual_seed(0)
    return MirrorPolicyNet(MirrorNetConfig(latent_dim=6, conv_channels=4, hidden_dim=8, shared_encoder=shared)).eval()


# ------------------------------------------------------------------ silencing
@pytest.mark.parametrize("shared", [True, False])
def test_silenced_encoder_units_are_zero_for_self_and_other_and_the_rest_unchanged(shared):
    import torch

    net = _tiny_net(shared)
    steps = _inputs(net, 1)
    with torch.inference_mode():
        intact, _ = net.step(*steps[0])
        with les.silenced(net, les.Lesion("encoder", (1, 4))):
            cut, _ = net.step(*steps[0])
        after, _ = net.step(*steps[0])
    for key in ("z_self", "z_other"):
        assert torch.all(cut[key][:, [1, 4]] == 0.0)
        assert torch.equal(cut[key][:, [0, 2, 3, 5]], intact[key][:, [0, 2, 3, 5]])
        assert torch.equal(after[key], intact[key])          # the hooks are gone after the block
    assert not torch.equal(cut["act_logit"], intact["act_logit"])


def test_silenced_gru_units_stay_zero_over_ticks_and_carry_nothing_forward():
    import torch

    net = _tiny_net(True)
    h_cut = h_int = None
    with torch.inference_mode(), les.silenced(net, les.Lesion("gru", (0, 3, 7))):
        for s in _inputs(net, 5):
            _, h_cut = net.step(*s, h_cut)
            assert torch.all(h_cut[0, 0, [0, 3, 7]] == 0.0)
    with torch.inference_mode():
        for s in _inputs(net, 5):
            _, h_int = net.step(*s, h_int)
    assert not torch.allclose(h_cut[0, 0, [1, 2]], h_int[0, 0, [1, 2]])   # the zeros changed the rest


def test_gru_lesion_refuses_a_multi_tick_sequence_and_bad_units():
    import torch

    net = _tiny_net(True)
    x = torch.zeros(1, 3, net.config.window_steps, net.config.n_features)
    with les.silenced(net, les.Lesion("gru", (0,))), pytest.raises(ValueError, match="one tick per"):
        net.forward_sequence(x, x, torch.zeros(1, 3, net.config.context_dim))
    with pytest.raises(ValueError, match="has 8 units"), les.silenced(net, les.Lesion("gru", (8,))):
        pass
    with pytest.raises(ValueError, match="unknown layer"):
        les.Lesion("trunk", (0,))
    with pytest.raises(ValueError, match="distinct"):
        les.Lesion("encoder", (1, 1))


def _decisions(lesion):
    """Each tick's (action, forecast, P(act)) of a 1-turn greedy session of the shipped network,
    inside ``silenced(lesion)``, or without it for ``lesion`` None."""
    from contextlib import nullcontext

    from coop_robot.envs.turn_env import TurnTakingEnv
    from coop_robot.policy.mirror import MirrorPolicy

    policy = MirrorPolicy()
    out = []
    with TurnTakingEnv("typical", seed=3, physics=False) as env, \
            (nullcontext() if lesion is None else les.silenced(policy.net, lesion)):
        env.run(policy, 1, on_step=lambda o, d, i: out.append((d.action, d.exit_forecast_s,
                                                               policy.last_outputs["p_act"])))
    return out


def _recorded(lesion):
    """analyze-policy's per-tick recording of a 1-turn session with ``lesion`` in place."""
    from coop_robot.analysis.policy_analysis import record_session
    from coop_robot.envs.turn_env import TurnTakingEnv
    from coop_robot.policy.mirror import MirrorPolicy

    policy = MirrorPolicy()
    with TurnTakingEnv("typical", seed=3, physics=False) as env, les.silenced(policy.net, lesion):
        return record_session(env, policy, 1, 3)


def test_empty_lesion_gives_bit_identical_decisions_to_the_intact_network():
    bare, empty = _decisions(None), _decisions(les.Lesion("encoder", ()))
    assert len(bare) == len(empty) > 50
    same = [a[0] == b[0] and a[2] == b[2] and (a[1] == b[1] or (math.isnan(a[1]) and math.isnan(b[1])))
            for a, b in zip(bare, empty)]
    assert all(same)


@pytest.mark.parametrize("layer,units,key", [("encoder", (2, 9), "z_self"), ("gru", (5, 40), "hidden")])
def test_silenced_units_are_exactly_zero_in_the_recorded_activity(layer, units, key):
    rec = _recorded(les.Lesion(layer, units))
    assert rec[key].shape[0] > 50
    assert np.all(rec[key][:, list(units)] == 0.0)
    if layer == "encoder":
        assert np.all(rec["z_other"][:, list(units)] == 0.0)
    others = [u for u in range(rec[key].shape[1]) if u not in units]
    assert np.any(rec[key][:, others] != 0.0)


# ------------------------------------------------------------------ selection
def _units() -> les.LayerUnits:
    return les.LayerUnits("encoder", mirror_index=np.array([0.95, 0.2, 0.99, np.nan, 0.9, 0.97]),
                          mirror=np.array([True, False, True, False, False, True]),
                          other_range=np.array([0.5, 3.0, 0.1, np.nan, 2.0, 1.0]))


def test_targeted_units_take_the_strongest_first():
    u = _units()
    assert les.candidates(u, "mirror") == [2, 5, 0]
    assert les.targeted_units(u, "mirror", 2) == (2, 5)
    assert les.candidates(u, "partner-tuned") == [1, 4, 5, 0, 2]   # NaN range left out
    assert les.targeted_units(u, "partner-tuned", 3) == (1, 4, 5)
    with pytest.raises(ValueError, match="only 3 mirror units"):
        les.targeted_units(u, "mirror", 4)


def test_random_units_are_distinct_seeded_and_vary_between_draws():
    a = les.random_units(32, 8, 20, seed=0, layer="encoder")
    assert a == les.random_units(32, 8, 20, seed=0, layer="encoder")
    assert a != les.random_units(32, 8, 20, seed=1, layer="encoder")
    assert all(len(set(d)) == 8 and all(0 <= x < 32 for x in d) and list(d) == sorted(d) for d in a)
    assert len(set(a)) > 15
    with pytest.raises(ValueError, match="has 32 units"):
        les.random_units(32, 33, 1, 0, "encoder")


def test_units_from_csv_reads_analyze_policy_output(tmp_path):
    path = tmp_path / "mirror_units.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "unit", "mirror_index", "mirror", "excluded_flat", "other_idle", "other_reach"])
        w.writerow(["encoder", 0, "0.9", 1, 0, "0.0", "2.0"])
        w.writerow(["encoder", 1, "", 0, 1, "1.0", "1.0"])
        w.writerow(["gru", 0, "0.1", 0, 0, "-1.0", "0.5"])
    t = les.units_from_csv(path)
    assert t["encoder"].mirror.tolist() == [True, False]
    assert math.isnan(t["encoder"].mirror_index[1])
    assert t["encoder"].other_range.tolist() == [2.0, 0.0] and t["gru"].other_range.tolist() == [1.5]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a mirror_units.csv"):
        les.units_from_csv(bad)


def test_time_to_exit_counts_down_to_the_next_true_exit_inside_only():
    tte = time_to_exit_s([0.0, 1.0, 2.0, 3.0, 4.0], [False, True, True, False, True], [2.5])
    assert math.isnan(tte[0]) and tte[1] == pytest.approx(1.5) and tte[2] == pytest.approx(0.5)
    assert math.isnan(tte[3]) and math.isnan(tte[4])      # inside, but no exit recorded after


# ------------------------------------------------------------------ statistics
def _row(kind, profile, size=0, draw=-1, gap=1.0, mae=0.2, n=10):
    gaps = [gap + 0.01 * (i % 3) for i in range(n)]
    return {"checkpoint": "c.pt", "profile": profile, "kind": kind, "size": size, "draw": draw,
            "median_gap_s": float(np.median(gaps)), "p90_gap_s": float(np.percentile(gaps, 90)),
            "overlap_rate": 0.0, "forecast_mae_s": mae, "gaps_s": gaps, "overlapped": [False] * n,
            "visit_error_sums_s": [mae * 10] * n, "visit_ticks": [10] * n}


def test_effect_table_flags_a_targeted_change_beyond_the_random_band():
    rows = []
    for p in ("a", "b"):
        rows.append(_row("intact", p))
        rows.append(_row("targeted", p, size=4, gap=1.5, mae=0.2))        # +500 ms, forecast unchanged
        rows += [_row("random", p, size=4, draw=d, gap=1.0 + 0.01 * d, mae=0.2 + 0.01 * d) for d in range(10)]
    effects = {(e.metric, e.scope): e for e in les.effect_table(rows, resamples=200)}
    gap = effects[("median_gap_s", "pooled")]
    assert gap.target_change == pytest.approx(0.5)
    assert gap.ci_low <= 0.5 <= gap.ci_high
    assert gap.random_q95_abs < 0.1 and gap.beyond_random is True
    fc = effects[("forecast_mae_s", "pooled")]
    assert fc.target_change == pytest.approx(0.0) and fc.beyond_random is False
    assert effects[("median_gap_s", "a")].beyond_random is True
    assert gap.checkpoint_changes == [pytest.approx(0.5)]
    mean, half, n = les.t_interval([0.4, 0.5, 0.6])
    assert mean == pytest.approx(0.5) and n == 3 and half == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-3)


# ------------------------------------------------------------------ command
def _cli(*args):
    from coop_robot.cli import main

    return main(["lesion", *args])


def test_command_rejects_bad_input_with_status_2(tmp_path, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    assert _cli("--checkpoint", str(bad), "--no-heldout", "--out", str(tmp_path / "o")) == 2
    assert "broken.pt" in capsys.readouterr().err
    assert _cli("--checkpoint", str(tmp_path / "missing.pt"), "--no-heldout", "--out", str(tmp_path / "o")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert _cli("--layer", "encoder", "--sizes", "33", "--no-heldout", "--out", str(tmp_path / "o")) == 2
    assert "has 32 units" in capsys.readouterr().err
    assert _cli("--profiles", "nobody", "--no-heldout", "--out", str(tmp_path / "o")) == 2
    assert "nobody" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli("--layer", "trunk")
    # More mirror units asked for than the analysis found.
    units = tmp_path / "mirror_units.csv"
    with open(units, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "unit", "mirror_index", "mirror", "other_idle", "other_reach"])
        for u in range(64):
            w.writerow(["gru", u, "0.1", int(u < 2), "0", str(u)])
    assert _cli("--layer", "gru", "--sizes", "4", "--units-csv", str(units), "--no-heldout",
                "--out", str(tmp_path / "o")) == 2
    assert "only 2 mirror units" in capsys.readouterr().err


def test_tiny_serial_run_writes_its_outputs_and_repeats_exactly(tmp_path):
    units = tmp_path / "mirror_units.csv"
    with open(units, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "unit", "mirror_index", "mirror", "other_idle", "other_reach"])
        for u in range(32):
            w.writerow(["encoder", u, str(u / 32), int(u % 2), "0", "1"])
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        assert _cli("--profiles", "typical", "--no-heldout", "--turns", "1", "--sizes", "2", "--random-draws", "1",
                    "--units-csv", str(units), "--ray-address", "none", "--quiet", "--bootstrap", "100",
                    "--out", str(out)) == 0
        outs.append(out)
    doc = json.loads((outs[0] / "lesion.json").read_text())
    assert doc["units"][0]["targeted"]["2"] == [29, 31]            # the two strongest mirror units
    assert [s["label"] for s in doc["sessions"]] == ["intact", "targeted encoder x2", "random encoder x2 #0"]
    assert doc["verdict"]["text"].startswith("Verdict:")
    assert (outs[0] / "lesion.png").stat().st_size > 1000

    def figures(out):
        with open(out / "lesion.csv") as fh:
            return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(fh)]

    assert figures(outs[0]) == figures(outs[1])
    assert json.loads((outs[1] / "lesion.json").read_text())["effects"] == doc["effects"]

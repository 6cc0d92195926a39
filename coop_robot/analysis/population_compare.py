"""Population analyses of several mirror networks side by side (``coop-robot analyze-policy --population``).

One greedy recording is made with the ``--checkpoint`` network driving the robot; its per-tick
inputs (both egocentric windows and the task context) are then run through every network compared
(:func:`replay`), so all of them -- trained checkpoints and freshly initialised ("untrained")
networks alike -- are measured on exactly the same behaviour. An untrained network could not drive
a session worth analysing (it rarely takes its turn); replay also keeps the comparison about the
representation, not about the different sessions each network would produce. Replaying the driver
itself reproduces the recorded latents and GRU states (``test_policy_analysis``).

Networks: ``--compare LABEL=FILE ...`` (a label repeated = several seeds of one kind, summarised as
mean and 95 % CI) and ``--untrained-seeds S ...`` (groups ``untrained-shared`` and
``untrained-separate``: the driver's network config with a shared / separate encoder, initialised
with ``torch.manual_seed(S)``; no file needed). Without ``--compare`` the driver alone is analysed.

Per network (:mod:`coop_robot.analysis.population` defines each statistic): condition-paired and
tick-paired linear CKA of ``z_self`` vs ``z_other`` with the shuffled-row chance level, the 4 x 4
self x other similarity matrix and its diagonal contrast, PCA of the GRU state with the mean
trajectory aligned on the onset of the robot's reaches that go on to act, and per-unit timescales
of ``z_self``, ``z_other`` and the GRU state. Per group: mean, SD, range and 95 % CI over its
networks. Verdict: two groups' condition CKA "differ by more than the seed-to-seed spread" when
the difference of their means exceeds the largest range measured within any group of two or more
networks.

Outputs (in ``--out``): ``population.json``, ``population_cka.png``, ``population_rsm.png``,
``population_pca.png``, ``population_timescales.png``, and a printed table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from coop_robot.analysis import population as pop
from coop_robot.strict_json import json_safe

POPULATION_JSON = "population.json"
CKA_PNG = "population_cka.png"
RSM_PNG = "population_rsm.png"
PCA_PNG = "population_pca.png"
TIMESCALES_PNG = "population_timescales.png"
UNTRAINED_SHARED = "untrained-shared"
UNTRAINED_SEPARATE = "untrained-separate"
#: Window of the aligned GRU trajectories around the robot's reach onset (s).
ALIGN_BEFORE_S = 1.0
ALIGN_AFTER_S = 3.0
TIMESCALE_LAYERS = ("z_self", "z_other", "gru")


# ============================================================================ networks
@dataclass
class Network:
    label: str          # group label ("shipped", "unshared", "untrained-shared", ...)
    source: str         # checkpoint path, or "init seed S"
    net: object         # MirrorPolicyNet in eval mode
    shared_encoder: bool


def parse_compare(items) -> list[tuple[str, Path]]:
    """``LABEL=FILE`` strings -> ``[(label, path)]``; ValueError naming a malformed item."""
    out = []
    for item in items or ():
        label, sep, path = str(item).partition("=")
        if not sep or not label.strip() or not path.strip():
            raise ValueError(f"--compare takes LABEL=FILE items (e.g. shipped=mirror.pt), got {item!r}")
        if label.strip() in (UNTRAINED_SHARED, UNTRAINED_SEPARATE):
            raise ValueError(f"--compare label {label!r} is reserved for --untrained-seeds")
        out.append((label.strip(), Path(path.strip())))
    return out


def untrained_network(config, shared_encoder: bool, seed: int) -> Network:
    """A freshly initialised network of ``config`` (encoder sharing set) with init seed ``seed``."""
    import torch  # noqa: PLC0415

    from coop_robot.policy.mirror_net import MirrorPolicyNet  # noqa: PLC0415

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = MirrorPolicyNet(replace(config, shared_encoder=shared_encoder)).eval()
    label = UNTRAINED_SHARED if shared_encoder else UNTRAINED_SEPARATE
    return Network(label, f"init seed {int(seed)}", net, shared_encoder)


def load_networks(compare, untrained_seeds, driver_net, driver_info) -> list[Network]:
    """The networks to analyse: ``compare`` ``[(label, path)]`` checkpoints (or the driver alone
    when empty) and two untrained networks per seed. Raises CheckpointError for a bad file."""
    from coop_robot.policy.mirror_net import ObservationSpec, load_checkpoint  # noqa: PLC0415

    nets = []
    for label, path in compare:
        net, info = load_checkpoint(path, expected_spec=ObservationSpec(), task="turn_taking")  # its drives are turns
        nets.append(Network(label, str(path), net, bool(info.config.shared_encoder)))
    if not compare:
        nets.append(Network("checkpoint", str(driver_info.path), driver_net, bool(driver_info.config.shared_encoder)))
    for shared in (True, False):
        for seed in untrained_seeds or ():
            nets.append(untrained_network(driver_info.config, shared, seed))
    return nets


def replay(net, recording, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``net`` on a recording's inputs, session by session from a zero GRU state (as
    ``MirrorPolicy.reset`` starts one): ``(z_self, z_other, hidden)``, one row per tick.

    The steps are ``MirrorPolicyNet.forward_sequence``'s up to the GRU, whose whole state sequence
    is kept (forward_sequence returns only the last); ``test_policy_analysis`` checks that replaying
    the driver reproduces what its policy computed tick by tick.
    """
    import torch  # noqa: PLC0415

    if recording.self_windows is None:
        raise ValueError("the recording holds no network inputs; record it with keep_inputs=True")
    zs, zo, hs = [], [], []
    with torch.inference_mode():
        for s in np.unique(recording.session):
            idx = np.flatnonzero(recording.session == s)
            h = None
            for lo in range(0, idx.size, chunk):
                sel = idx[lo:lo + chunk]
                z_self = net.encode_self(torch.from_numpy(recording.self_windows[sel])[None])
                z_other = net.encode_other(torch.from_numpy(recording.other_windows[sel])[None])
                x = net.core_norm(torch.cat([z_self, z_other, torch.from_numpy(recording.context[sel])[None]], dim=-1))
                h_seq, h = net.core(x, net.initial_hidden(1).to(x) if h is None else h)
                zs.append(z_self[0].numpy())
                zo.append(z_other[0].numpy())
                hs.append(h_seq[0].numpy())
    return (np.concatenate(zs).astype(np.float64), np.concatenate(zo).astype(np.float64),
            np.concatenate(hs).astype(np.float64))


# ============================================================================ analysis
@dataclass
class NetworkPopulation:
    """One network's population statistics on the common recording."""

    label: str
    source: str
    shared_encoder: bool
    tick_cka: float
    condition: pop.ConditionCKA
    rsm: np.ndarray                       # (P, P) self (rows) x other (columns)
    rsm_contrast: float
    pca: pop.PCAResult
    trajectories: pop.AlignedTrajectories
    timescales: dict                      # layer -> pop.Timescales

    def summary(self) -> dict:
        return {
            "label": self.label, "source": self.source, "shared_encoder": self.shared_encoder,
            "tick_cka": self.tick_cka, "condition_cka": self.condition.summary(),
            "rsm": self.rsm.tolist(), "rsm_diagonal_contrast": self.rsm_contrast,
            "pca_explained_variance_ratio": self.pca.explained_variance_ratio.tolist(),
            "turn_events": self.trajectories.events, "turn_mean_share": self.trajectories.mean_share,
            "timescales": {k: v.summary() for k, v in self.timescales.items()},
        }


def analyze_network(network: Network, recording, tick_s: float, n_permutations: int = 200, seed: int = 0,
                    max_lag_s: float = 5.0) -> NetworkPopulation:
    """Replay ``network`` on ``recording`` and compute its population statistics."""
    from coop_robot.policy.mirror_net import MIRROR_PHASES  # noqa: PLC0415

    n = len(MIRROR_PHASES)
    z_self, z_other, hidden = replay(network.net, recording)
    r = recording
    cond = pop.condition_cka(z_self, r.robot_phase, z_other, r.partner_phase, r.session, n, tick_s,
                             n_permutations=n_permutations, seed=np.random.default_rng([seed, 0xC4A]))
    rsm, _, _ = pop.cross_rsm(z_self, r.robot_phase, z_other, r.partner_phase, n)
    pcs = pop.pca(hidden, n_components=min(3, hidden.shape[1]))
    # Reaches that go on to act: the robot's turns, not the starts it gives up a few ticks later.
    events = pop.event_ticks(r.robot_phase, r.session, MIRROR_PHASES.index("idle"), MIRROR_PHASES.index("reach"),
                             then_value=MIRROR_PHASES.index("act"))
    traj = pop.aligned_trajectories(pcs.project(hidden), r.session, events, tick_s, ALIGN_BEFORE_S, ALIGN_AFTER_S)
    timescales = {layer: pop.unit_timescales(act, r.session, tick_s, max_lag_s)
                  for layer, act in zip(TIMESCALE_LAYERS, (z_self, z_other, hidden))}
    return NetworkPopulation(network.label, network.source, network.shared_encoder, pop.linear_cka(z_self, z_other),
                             cond, rsm, pop.rsm_diagonal_contrast(rsm), pcs, traj, timescales)


def input_condition_cka(recording, tick_s: float, n_permutations: int = 200, seed: int = 0) -> pop.ConditionCKA:
    """The condition-paired CKA of the inputs themselves (the robot's vs the partner's egocentric
    window, flattened): what any encoder starts from, the floor a network's CKA is read against."""
    from coop_robot.policy.mirror_net import MIRROR_PHASES  # noqa: PLC0415

    r = recording
    if r.self_windows is None:
        raise ValueError("the recording holds no network inputs; record it with keep_inputs=True")
    return pop.condition_cka(r.self_windows.reshape(r.ticks, -1), r.robot_phase,
                             r.other_windows.reshape(r.ticks, -1), r.partner_phase, r.session,
                             len(MIRROR_PHASES), tick_s, n_permutations=n_permutations,
                             seed=np.random.default_rng([seed, 0xC4A]))


#: Per-network numbers summarised per group: name -> getter.
GROUP_METRICS = {
    "condition_cka": lambda p: p.condition.cka,
    "condition_cka_shuffled": lambda p: p.condition.shuffled_mean,
    "tick_cka": lambda p: p.tick_cka,
    "rsm_diagonal_contrast": lambda p: p.rsm_contrast,
    "gru_pc1_3_variance": lambda p: float(np.sum(p.pca.explained_variance_ratio)),
    "turn_mean_share": lambda p: p.trajectories.mean_share,
    **{f"tau_median_s_{layer}": (lambda p, layer=layer: p.timescales[layer].summary()["median_s"])
       for layer in TIMESCALE_LAYERS},
}


@dataclass
class PopulationComparison:
    networks: list[NetworkPopulation]
    groups: dict           # label -> {metric: mean_ci95 dict}
    spread: float | None   # the largest within-group range of condition CKA (groups of >= 2)
    spread_group: str | None
    verdicts: list[dict]   # pairwise group comparisons of condition CKA
    phases: tuple
    meta: dict

    def summary(self) -> dict:
        return {**self.meta, "phases": list(self.phases), "groups": self.groups,
                "condition_cka_spread": {"range": self.spread, "group": self.spread_group},
                "verdicts": self.verdicts, "networks": [p.summary() for p in self.networks]}


def group_labels(networks) -> list[str]:
    """Group labels in first-seen order."""
    return list(dict.fromkeys(p.label for p in networks))


def compare(populations: list[NetworkPopulation], phases, meta: dict | None = None) -> PopulationComparison:
    """Group the per-network results by label and compare the groups' condition CKA."""
    labels = group_labels(populations)
    groups = {g: {m: pop.mean_ci95([get(p) for p in populations if p.label == g]) for m, get in GROUP_METRICS.items()}
              for g in labels}
    spread, spread_group = None, None
    for g in labels:
        s = groups[g]["condition_cka"]
        if s["n"] >= 2 and (spread is None or s["max"] - s["min"] > spread):
            spread, spread_group = s["max"] - s["min"], g
    verdicts = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            v = pop.compare_groups(groups[a]["condition_cka"], groups[b]["condition_cka"], spread)
            verdicts.append({"a": a, "b": b, **v})
    return PopulationComparison(populations, groups, spread, spread_group, verdicts, tuple(phases), dict(meta or {}))


# ============================================================================ report
def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _ci(s: dict, digits: int = 3) -> str:
    if s["mean"] is None:
        return "n/a"
    if s["ci95"] is None:
        return f"{s['mean']:.{digits}f} (n=1)"
    return f"{s['mean']:.{digits}f} [{s['ci95'][0]:.{digits}f}, {s['ci95'][1]:.{digits}f}] (n={s['n']})"


def format_report(c: PopulationComparison) -> str:
    lines = ["Population analyses (all networks on the same recorded inputs; CKA = linear CKA of z_self vs z_other)"]
    lines.append(f"{'network':<20} {'source':<34} {'enc':<4} {'cond CKA':>8} {'chance':>6} {'tick CKA':>8} "
                 f"{'RSM diag':>8} {'PC1-3':>6} {'turn':>5} " + " ".join(f"{'tau ' + x:>10}" for x in TIMESCALE_LAYERS))
    for p in c.networks:
        src = p.source if len(p.source) <= 34 else "..." + p.source[-31:]
        taus = " ".join(f"{_f(p.timescales[x].summary()['median_s'], 2):>10}" for x in TIMESCALE_LAYERS)
        lines.append(f"{p.label:<20} {src:<34} {'shr' if p.shared_encoder else 'sep':<4} {_f(p.condition.cka):>8} "
                     f"{_f(p.condition.shuffled_mean, 2):>6} {_f(p.tick_cka):>8} {_f(p.rsm_contrast):>8} "
                     f"{_f(float(np.sum(p.pca.explained_variance_ratio)), 2):>6} "
                     f"{_f(p.trajectories.mean_share, 2):>5} {taus}")
    lines.append("  cond CKA: condition-paired (phase x time in phase); chance: its mean with the rows shuffled; "
                 "RSM diag: diagonal - off-diagonal of the self x other phase matrix; PC1-3: GRU variance in the top 3 "
                 "PCs; turn: share of the aligned GRU trajectory variance carried by the mean turn; tau: median "
                 "unit timescale (s)")
    inputs = c.meta.get("input_condition_cka")
    if inputs:
        lines.append(f"  inputs (the two egocentric windows, flattened): condition CKA {_f(inputs['cka'])}, "
                     f"chance {_f(inputs['shuffled_mean'], 2)}, {inputs['conditions']} conditions")
    lines.append("")
    lines.append("Per group: mean [95 % CI] over its networks")
    lines.append(f"{'group':<20} {'condition CKA':<32} {'tick CKA':<32} {'RSM diag contrast':<32}")
    for g, s in c.groups.items():
        lines.append(f"{g:<20} {_ci(s['condition_cka']):<32} {_ci(s['tick_cka']):<32} "
                     f"{_ci(s['rsm_diagonal_contrast']):<32}")
    lines.append("")
    if c.spread is None:
        lines.append("Seed-to-seed spread of condition CKA: not measured (no group holds two or more networks)")
    else:
        lines.append(f"Seed-to-seed spread of condition CKA: {c.spread:.3f} (range within '{c.spread_group}', the "
                     "largest within any group of >= 2 networks)")
    for v in c.verdicts:
        if v["difference"] is None:
            verdict = "n/a"
        elif v["exceeds"] is None:
            verdict = "spread unknown"
        else:
            verdict = "differ by more than the spread" if v["exceeds"] else "within the spread"
        lines.append(f"  {v['a']} vs {v['b']}: difference {_f(v['difference'])} -> {verdict}")
    return "\n".join(lines)


# ============================================================================ files and plots
def write_outputs(c: PopulationComparison, recording, out_dir: Path) -> list[Path]:
    """``population.json`` and the four figures into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / POPULATION_JSON, out_dir / CKA_PNG, out_dir / RSM_PNG, out_dir / PCA_PNG,
             out_dir / TIMESCALES_PNG]
    paths[0].write_text(json.dumps(json_safe(c.summary()), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    _plot_cka(plt, c, paths[1])
    _plot_rsm(plt, c, paths[2])
    _plot_pca(plt, c, recording, paths[3])
    _plot_timescales(plt, c, paths[4])
    return paths


def _plot_cka(plt, c: PopulationComparison, path: Path) -> None:
    labels = group_labels(c.networks)
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.6 * len(labels) * 2), 3.8))
    x = np.arange(len(labels))
    for ax, metric, title in ((axes[0], "condition_cka", "condition-paired CKA(self, other)"),
                              (axes[1], "tick_cka", "tick-paired CKA(self, other)")):
        means = [c.groups[g][metric]["mean"] for g in labels]
        ax.bar(x, [m if m is not None else 0.0 for m in means], color="0.8", edgecolor="k")
        for i, g in enumerate(labels):
            s = c.groups[g][metric]
            if s["ci95"] is not None:
                ax.errorbar(i, s["mean"], yerr=[[s["mean"] - s["ci95"][0]], [s["ci95"][1] - s["mean"]]], color="k",
                            capsize=4)
            vals = [GROUP_METRICS[metric](p) for p in c.networks if p.label == g]
            ax.plot(np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals, "o", color="C0", ms=4)
        if metric == "condition_cka":
            chance = [c.groups[g]["condition_cka_shuffled"]["mean"] for g in labels]
            ax.plot(x, [v if v is not None else np.nan for v in chance], "_", color="r", ms=20, mew=2,
                    label="shuffled rows (chance)")
            inputs = c.meta.get("input_condition_cka") or {}
            if inputs.get("cka") is not None and math.isfinite(inputs["cka"]):
                ax.axhline(inputs["cka"], color="g", ls="--", lw=1, label="inputs (raw windows)")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=20, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(title + " (dots: networks; bars: 95 % CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_rsm(plt, c: PopulationComparison, path: Path) -> None:
    labels = group_labels(c.networks)
    fig, axes = plt.subplots(1, len(labels), figsize=(3.4 * len(labels) + 0.6, 3.2), squeeze=False)
    im = None
    for ax, g in zip(axes[0], labels):
        members = [p.rsm for p in c.networks if p.label == g]
        mean = np.nanmean(np.stack(members), axis=0) if members else np.full((len(c.phases),) * 2, np.nan)
        im = ax.imshow(mean, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(c.phases)))
        ax.set_xticklabels(c.phases, rotation=40, fontsize=7)
        ax.set_yticks(range(len(c.phases)))
        ax.set_yticklabels(c.phases, fontsize=7)
        ax.set_title(f"{g}" + (f" (mean of {len(members)})" if len(members) > 1 else ""), fontsize=8)
        ax.set_xlabel("partner performs (z_other)", fontsize=7)
        for i in range(mean.shape[0]):
            for j in range(mean.shape[1]):
                if math.isfinite(mean[i, j]):
                    ax.text(j, i, f"{mean[i, j]:.2f}", ha="center", va="center", fontsize=6)
    axes[0][0].set_ylabel("robot performs (z_self)", fontsize=7)
    fig.subplots_adjust(wspace=0.5)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="r across units")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def _plot_pca(plt, c: PopulationComparison, recording, path: Path) -> None:
    labels = group_labels(c.networks)
    firsts = [next(p for p in c.networks if p.label == g) for g in labels]
    fig, axes = plt.subplots(2, len(firsts), figsize=(3.2 * len(firsts), 5.6), squeeze=False)
    for col, p in enumerate(firsts):
        tr = p.trajectories
        ax_plane, ax_time = axes[0][col], axes[1][col]
        ev = p.pca.explained_variance_ratio
        if tr.events:
            m = tr.mean
            for k in range(min(tr.events, 15)):
                ax_plane.plot(tr.trajectories[k, :, 0], tr.trajectories[k, :, 1], color="0.85", lw=0.6)
            sc = ax_plane.scatter(m[:, 0], m[:, 1], c=tr.lags_s, cmap="viridis", s=6)
            zero = int(np.argmin(np.abs(tr.lags_s)))
            ax_plane.plot(m[zero, 0], m[zero, 1], "r*", ms=10)
            for k in range(m.shape[1]):
                ax_time.plot(tr.lags_s, m[:, k], label=f"PC{k + 1} ({ev[k]:.0%})")
            ax_time.axvline(0.0, color="r", lw=0.8)
            ax_time.legend(fontsize=6)
            if col == len(firsts) - 1:
                fig.colorbar(sc, ax=ax_plane, label="s from reach onset")
        ax_plane.set_title(f"{p.label}: GRU PC1/PC2 ({tr.events} turns)", fontsize=8)
        ax_plane.set_xlabel("PC1", fontsize=7)
        ax_plane.set_ylabel("PC2", fontsize=7)
        ax_time.set_xlabel("time from the robot's reach onset (s)", fontsize=7)
        ax_time.set_title(f"mean turn carries {_f(tr.mean_share, 2)} of the variance", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_timescales(plt, c: PopulationComparison, path: Path) -> None:
    labels = group_labels(c.networks)
    fig, axes = plt.subplots(1, len(TIMESCALE_LAYERS), figsize=(4.2 * len(TIMESCALE_LAYERS), 3.2), squeeze=False)
    all_tau = [p.timescales[x].tau_s for p in c.networks for x in TIMESCALE_LAYERS]
    finite = np.concatenate([t[np.isfinite(t)] for t in all_tau]) if all_tau else np.zeros(0)
    top = max(float(finite.max()), 0.1) if finite.size else 1.0
    bins = np.logspace(np.log10(0.02), np.log10(top * 1.05), 20)
    for ax, layer in zip(axes[0], TIMESCALE_LAYERS):
        for k, g in enumerate(labels):
            taus = [p.timescales[layer] for p in c.networks if p.label == g]
            tau = np.concatenate([t.tau_s[np.isfinite(t.tau_s)] for t in taus])
            censored = int(sum(t.censored.sum() for t in taus))
            ax.hist(tau, bins=bins, histtype="step", lw=1.4, color=f"C{k}", density=True,
                    label=f"{g} (median {_f(float(np.median(tau)) if tau.size else math.nan, 2)} s"
                          + (f", {censored} > max lag" if censored else "") + ")")
        ax.set_xscale("log")
        ax.set_xlabel("unit timescale (s, autocorrelation < 1/e)", fontsize=7)
        ax.set_title(layer, fontsize=9)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("density")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

"""``coop-robot lesion``: silence chosen units of a mirror network and rerun the benchmark partners.

For each checkpoint (one per training seed), each partner of the benchmark (the shipped profiles
and the held-out ones of a source checkout, ``test/heldout_partners/``) and the same session seed,
it plays one greedy session in the fast environment with the intact network, one with the
targeted lesion of each size (``--selection mirror``: the layer's mirror units, strongest first;
``partner-tuned``: the units most tuned to the partner's phase) and ``--random-draws`` lesions of
as many units drawn at random from the layer; and it reports the change (lesion minus intact) of
the median gap, the p90 gap, the overlap rate and the exit forecast's MAE, per partner and pooled
over partners, with a 95 % bootstrap interval, the 95th percentile of the random lesions' |change|
and a verdict per figure: the targeted change larger than that, or not. The units come from
``coop-robot analyze-policy``'s analysis of the same checkpoint, run here first
(``--analysis-turns`` turns with the typical partner) unless ``--units-csv`` gives its
``mirror_units.csv``. Method: :mod:`coop_robot.analysis.lesion`.

Sessions are tasks of :func:`coop_robot.parallel.run_tasks` (embedded local Ray by default,
``--ray-address none`` one after another here; the figures are the same either way). Writes
``lesion.csv`` (one row per session), ``lesion.json`` (settings, commit, units, sessions, effects,
verdicts) and ``lesion.png`` (change against the number of units silenced, targeted vs the random
band) into ``--out``. Exit status: 0 done; 2 bad input (a missing or corrupt checkpoint, an
unknown layer, a size larger than the layer or than the targeted set) or a session that broke.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from coop_robot.strict_json import json_safe, sha256_file

PROG = "coop-robot lesion"
DEFAULT_OUT = Path("lesion")
CSV_NAME, JSON_NAME, PNG_NAME = "lesion.csv", "lesion.json", "lesion.png"


def add_arguments(parser) -> None:
    from coop_robot.analysis.lesion import LAYERS, SELECTIONS  # noqa: PLC0415 -- light, no torch
    from coop_robot.argtypes import whole_at_least  # noqa: PLC0415
    from coop_robot.parallel import add_ray_arguments  # noqa: PLC0415
    from coop_robot.partner.benchmark_set import CHECKOUT_HELDOUT_DIR, SHIPPED_PROFILES  # noqa: PLC0415

    parser.add_argument("--checkpoint", nargs="+", type=Path, default=None, metavar="FILE",
                        help="mirror checkpoint(s), one per training seed (default: the shipped one)")
    parser.add_argument("--layer", choices=LAYERS, default="encoder",
                        help="layer to lesion: encoder (latent units, self and other paths) or gru (hidden units, "
                             "clamped to 0 every step); default encoder")
    parser.add_argument("--selection", choices=SELECTIONS, default="mirror",
                        help="targeted units: mirror (the layer's mirror units, strongest first) or partner-tuned "
                             "(largest range of the partner-phase tuning); default mirror")
    parser.add_argument("--sizes", nargs="+", type=whole_at_least(1), default=[2, 4, 8, 16], metavar="N",
                        help="numbers of units silenced (default 2 4 8 16)")
    parser.add_argument("--random-draws", type=whole_at_least(1), default=20, metavar="R",
                        help="random lesions per size (default 20)")
    parser.add_argument("--units-csv", nargs="+", type=Path, default=None, metavar="CSV",
                        help="mirror_units.csv of coop-robot analyze-policy, one per checkpoint in the same order "
                             "(default: analyse each checkpoint here first)")
    parser.add_argument("--analysis-turns", type=whole_at_least(1), default=50, metavar="N",
                        help="turns of the unit analysis with the typical partner when no --units-csv (default 50)")
    parser.add_argument("--profiles", nargs="+", default=list(SHIPPED_PROFILES), metavar="NAME_OR_YAML",
                        help=f"partner profiles (default: {' '.join(SHIPPED_PROFILES)})")
    parser.add_argument("--heldout", action="store_true", default=CHECKOUT_HELDOUT_DIR.is_dir(),
                        help="also the held-out partners of --heldout-dir (default: yes in a source checkout)")
    parser.add_argument("--no-heldout", dest="heldout", action="store_false", help="no held-out partners")
    parser.add_argument("--heldout-dir", type=Path, default=CHECKOUT_HELDOUT_DIR, metavar="DIR",
                        help="folder of held-out profile YAMLs (default: the checkout's test/heldout_partners)")
    parser.add_argument("--turns", type=whole_at_least(1), default=20,
                        help="robot turns per session (default 20)")
    parser.add_argument("--seed", type=whole_at_least(0), default=0,
                        help="session seed of every session, of the random draws and of the bootstrap (default 0)")
    parser.add_argument("--bootstrap", type=whole_at_least(100), default=1000, metavar="B",
                        help="bootstrap resamples of the intervals (default 1000)")
    add_ray_arguments(parser, workers_help="sessions at once (default: every CPU of this machine, or of the cluster)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default ./lesion)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _error(text: str) -> int:
    print(f"{PROG}: {text}", file=sys.stderr)
    return 2


def run(args) -> int:
    from coop_robot.analysis import lesion as les  # noqa: PLC0415
    from coop_robot.parallel import SERIAL, TaskError, resolve_address, run_tasks  # noqa: PLC0415
    from coop_robot.partner.benchmark_set import resolve_profiles  # noqa: PLC0415
    from coop_robot.partner.profile import ProfileError  # noqa: PLC0415
    from coop_robot.policy.base import PolicyError  # noqa: PLC0415
    from coop_robot.policy.mirror import DEFAULT_CHECKPOINT, MirrorPolicy  # noqa: PLC0415

    try:
        address = resolve_address(args.ray_address)
    except ValueError as exc:
        return _error(str(exc))
    if args.out.exists() and not args.out.is_dir():
        return _error(f"--out {args.out} exists and is not a directory")
    checkpoints = [p.resolve() for p in (args.checkpoint or [DEFAULT_CHECKPOINT])]
    if len(set(checkpoints)) != len(checkpoints):
        return _error("--checkpoint: each checkpoint is one training seed; one is listed twice")
    if args.units_csv is not None and len(args.units_csv) != len(checkpoints):
        return _error(f"--units-csv: give one file per checkpoint ({len(checkpoints)}), got {len(args.units_csv)}")
    sizes = sorted(set(args.sizes))
    try:
        profiles = resolve_profiles(args.profiles, args.heldout, args.heldout_dir)
        policies = [MirrorPolicy(c) for c in checkpoints]     # CheckpointError names a bad file
    except (ProfileError, PolicyError, ValueError) as exc:
        return _error(str(exc))
    for c, pol in zip(checkpoints, policies):
        n = les.layer_size(pol.net, args.layer)
        if sizes[-1] > n:
            return _error(f"--sizes {sizes[-1]}: the {args.layer} layer of {c.name} has {n} units")

    n_sessions = len(checkpoints) * len(profiles) * (1 + len(sizes) * (1 + args.random_draws))
    print(f"{PROG}: {args.layer} layer, {args.selection} units, sizes {' '.join(map(str, sizes))}, "
          f"{args.random_draws} random draws each; {len(checkpoints)} checkpoint(s) x {len(profiles)} partners "
          f"({', '.join(p.name for p in profiles)}) = {n_sessions} sessions of {args.turns} turns, seed {args.seed}",
          flush=True)

    # Units per checkpoint: each network has its own mirror units.
    t0 = time.monotonic()
    unit_sets = []
    for k, (c, pol) in enumerate(zip(checkpoints, policies)):
        try:
            if args.units_csv is not None:
                table = les.units_from_csv(args.units_csv[k])
                source = str(args.units_csv[k].resolve())
            else:
                table, source = _analyse(pol, args)
            if args.layer not in table:
                return _error(f"the unit analysis of {c.name} has no {args.layer} layer")
            units = table[args.layer]
            n = les.layer_size(pol.net, args.layer)
            if units.n_units != n:
                return _error(f"the unit analysis ({source}) lists {units.n_units} {args.layer} units; "
                              f"{c.name} has {n}: not the same network")
            targeted = {s: les.targeted_units(units, args.selection, s) for s in sizes}
        except ValueError as exc:
            return _error(f"{c.name}: {exc}")
        randoms = {s: les.random_units(n, s, args.random_draws, args.seed, args.layer) for s in sizes}
        unit_sets.append({"checkpoint": str(c), "sha256": sha256_file(c), "units_from": source,
                          "layer_units": n, "mirror_units": units.n_mirror,
                          "candidates": les.candidates(units, args.selection),
                          "targeted": {str(s): list(v) for s, v in targeted.items()},
                          "random": {str(s): [list(d) for d in v] for s, v in randoms.items()}})
        if not args.quiet:
            print(f"  {c.name}: {units.n_mirror} of {n} {args.layer} units are mirror units; targeted "
                  + "; ".join(f"x{s}: {list(targeted[s])}" for s in sizes), flush=True)
    del policies

    jobs = []
    for c, us in zip(checkpoints, unit_sets):
        for p in profiles:
            base = dict(checkpoint=str(c), profile=p.name, source=p.source, heldout=p.heldout, seed=args.seed,
                        turns=args.turns, layer=args.layer)
            jobs.append(les.LesionJob(kind=les.INTACT, **base))
            for s in sizes:
                jobs.append(les.LesionJob(kind=les.TARGETED, size=s, units=tuple(us["targeted"][str(s)]), **base))
                jobs += [les.LesionJob(kind=les.RANDOM, size=s, draw=d, units=tuple(u), **base)
                         for d, u in enumerate(us["random"][str(s)])]

    from coop_robot.analysis.study_cmd import _commit  # noqa: PLC0415

    commit = _commit()   # what the sessions run, read before they start
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        rows = run_tasks(les.run_session, jobs, address=address, workers=args.workers,
                         label=lambda i, j: f"{Path(j.checkpoint).name} / {j.profile} / {j.label}",
                         progress=not args.quiet, init=_init_worker)
    except (TaskError, RuntimeError, ConnectionError) as exc:
        return _error(f"the run broke: {exc}")
    effects = les.effect_table(rows, resamples=args.bootstrap, seed=args.seed)
    wall = time.monotonic() - t0

    settings = {"layer": args.layer, "selection": args.selection, "sizes": sizes,
                "random_draws": args.random_draws, "turns": args.turns, "seed": args.seed,
                "bootstrap": args.bootstrap, "profiles": [p.name for p in profiles],
                "heldout": [p.name for p in profiles if p.heldout], "analysis_turns": args.analysis_turns,
                "ray_address": address or "local", "workers": args.workers,
                "environment": "TurnTakingEnv(physics=False)"}
    verdict = acceptance_verdict(effects, args.selection, args.layer, args.random_draws)
    doc = {"command": "coop-robot " + " ".join(getattr(args, "argv", []) or ["lesion"]),
           "commit": commit, "settings": settings, "units": unit_sets, "wall_time_s": round(wall, 1),
           "serial": address == SERIAL, "effects": [e.as_dict() for e in effects],
           "across_checkpoints": across_checkpoints(effects), "verdict": verdict, "sessions": rows}
    print()
    print(format_effects(effects, len(checkpoints)))
    print()
    print(verdict["text"])
    write_csv(rows, args.out / CSV_NAME)
    (args.out / JSON_NAME).write_text(json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    plot_effects(effects, args.out / PNG_NAME, f"{args.selection} units of the {args.layer}", args.random_draws)
    print(f"\n{len(rows)} sessions in {wall / 60:.1f} min; wrote {args.out / CSV_NAME}, {args.out / JSON_NAME}, "
          f"{args.out / PNG_NAME}")
    return 0


def _init_worker() -> None:
    from coop_robot.policy.threads import configure_torch_threads  # noqa: PLC0415

    configure_torch_threads()


def _analyse(policy, args):
    """analyze-policy's analysis of this checkpoint (typical partner, ``--analysis-turns``)."""
    from coop_robot.analysis import lesion as les  # noqa: PLC0415
    from coop_robot.analysis.policy_analysis import analyze, record_sessions  # noqa: PLC0415

    if not args.quiet:
        print(f"  analysing {policy.checkpoint.name}: {args.analysis_turns} turns with the typical partner", flush=True)
    recording = record_sessions(policy, ["typical"], args.analysis_turns, args.seed, progress=False)
    analysis = analyze(recording, seed=args.seed)
    source = f"coop-robot analyze-policy --turns {args.analysis_turns} --seed {args.seed}"
    return les.units_from_analysis(analysis), source


# ============================================================================ report
def _fmt(value: float, scale: float, signed: bool = True) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value * scale:+.0f}" if signed else f"{value * scale:.0f}"


def _fmt_metric(key: str, value: float, signed: bool = True) -> str:
    from coop_robot.analysis.lesion import METRICS  # noqa: PLC0415

    _, _, scale, unit = next(m for m in METRICS if m[0] == key)
    if unit == "%":
        if not math.isfinite(value):
            return "n/a"
        return (f"{value * scale:+.1f}" if signed else f"{value * scale:.1f}") + " pp"
    return _fmt(value, scale, signed) + f" {unit}"


def format_effects(effects, n_checkpoints: int = 1) -> str:
    """The pooled table, then the per-partner one; changes are lesion minus intact."""
    from coop_robot.analysis.lesion import METRICS  # noqa: PLC0415

    labels = {k: lab for k, lab, *_ in METRICS}
    head = (f"{'figure':<13} {'units':>5} {'scope':<10} {'change':>10} {'95% CI':>22} "
            f"{'random |change| q95':>20}  verdict")
    lines = ["Change against the intact network (lesion minus intact; pooled = mean over partners"
             + (" and checkpoints" if n_checkpoints > 1 else "") + ")", head, "-" * len(head)]

    def line(e) -> str:
        ci = f"{_fmt_metric(e.metric, e.ci_low)} .. {_fmt_metric(e.metric, e.ci_high)}"
        mark = {True: "beyond random", False: "within random", None: "n/a"}[e.beyond_random]
        return (f"{labels[e.metric]:<13} {e.size:>5} {e.scope:<10} {_fmt_metric(e.metric, e.target_change):>10} "
                f"{ci:>22} {_fmt_metric(e.metric, e.random_q95_abs, False):>20}  {mark}")

    pooled = [e for e in effects if e.scope == "pooled"]
    lines += [line(e) for e in pooled]
    lines.append("")
    lines.append("Per partner")
    lines += [line(e) for e in effects if e.scope != "pooled"]
    return "\n".join(lines)


def across_checkpoints(effects) -> list[dict]:
    """Per pooled figure and size: mean and 95 % t interval over checkpoints (training seeds)."""
    from coop_robot.analysis.lesion import t_interval  # noqa: PLC0415

    out = []
    for e in effects:
        if e.scope != "pooled":
            continue
        mean, half, n = t_interval(e.checkpoint_changes)
        out.append({"metric": e.metric, "size": e.size, "n": n, "mean": mean, "half_width": half})
    return out


def acceptance_verdict(effects, selection: str, layer: str, draws: int) -> dict:
    """Issue 14's lesion point in plain words: which pooled figures the targeted lesion changed by
    more than the 95th percentile of as many random lesions."""
    from coop_robot.analysis.lesion import METRICS  # noqa: PLC0415

    labels = {k: lab for k, lab, *_ in METRICS}
    pooled = [e for e in effects if e.scope == "pooled"]
    beyond = [e for e in pooled if e.beyond_random]
    judged = [e for e in pooled if e.beyond_random is not None]
    what = f"silencing the {selection} units of the {layer}"
    if beyond:
        items = "; ".join(f"{labels[e.metric]} x{e.size} ({_fmt_metric(e.metric, e.target_change)} vs random "
                          f"q95 {_fmt_metric(e.metric, e.random_q95_abs, False)})" for e in beyond)
        text = (f"Verdict: {what} changes {len(beyond)} of {len(judged)} pooled figure-size pairs by more than the "
                f"95th percentile of {draws} random lesions of as many units: {items}.")
    else:
        text = (f"Verdict: {what} does NOT change any pooled benchmark figure (of {len(judged)} figure-size pairs) "
                f"by more than the 95th percentile of {draws} random lesions of as many units.")
    return {"beyond_random": bool(beyond), "pairs_beyond": len(beyond), "pairs_judged": len(judged), "text": text}


# ============================================================================ files
CSV_FIELDS = ("checkpoint", "profile", "heldout", "label", "kind", "layer", "size", "draw", "units", "seed", "turns",
              "turns_scored", "median_gap_s", "p90_gap_s", "overlap_rate", "forecast_mae_s", "forecast_ticks",
              "contacts", "ssm_violations", "sim_time_s", "wall_time_s")


def write_csv(rows, path: Path) -> None:
    import csv  # noqa: PLC0415

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            cells = {}
            for k in CSV_FIELDS:
                v = r.get(k)
                if k == "units":
                    v = " ".join(map(str, v))
                elif isinstance(v, float) and not math.isfinite(v):
                    v = ""
                cells[k] = v
            w.writerow(cells)


def plot_effects(effects, path: Path, title: str, draws: int) -> None:
    """One panel per figure: pooled change against units silenced; the targeted lesion with its
    bootstrap interval, the random lesions' 2.5-97.5 % band and their |change| 95th percentile."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from coop_robot.analysis.lesion import METRICS  # noqa: PLC0415

    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.4 * len(METRICS), 3.2), squeeze=False)
    for ax, (key, label, scale, unit) in zip(axes[0], METRICS):
        mine = sorted((e for e in effects if e.scope == "pooled" and e.metric == key), key=lambda e: e.size)
        if not mine:
            ax.set_visible(False)
            continue
        x = np.array([e.size for e in mine], dtype=float)
        unit_text = "pp" if unit == "%" else unit
        ax.fill_between(x, [e.random_low * scale for e in mine], [e.random_high * scale for e in mine],
                        color="0.8", label=f"random ({draws} draws, 2.5-97.5%)")
        q = np.array([e.random_q95_abs * scale for e in mine])
        ax.plot(x, q, "k--", linewidth=0.8, label="random |change| q95")
        ax.plot(x, -q, "k--", linewidth=0.8)
        y = np.array([e.target_change * scale for e in mine])
        err = np.array([[max(0.0, (e.target_change - e.ci_low) * scale) for e in mine],
                        [max(0.0, (e.ci_high - e.target_change) * scale) for e in mine]])
        ax.errorbar(x, y, yerr=err, fmt="o-", color="tab:red", capsize=3, label="targeted (95% CI)")
        ax.axhline(0.0, color="k", linewidth=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x)
        ax.set_xticklabels([str(int(v)) for v in x])
        ax.set_xlabel("units silenced")
        ax.set_ylabel(f"change in {label} ({unit_text})")
        ax.set_title(label, fontsize=9)
    axes[0][0].legend(fontsize=6, loc="best")
    fig.suptitle(f"Lesion of the {title}: change against the intact network, pooled over partners", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

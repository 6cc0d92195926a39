"""Data scaling of the mirror policy (issue 12): does more experience make a better network?

Train the shipped recipe at several collection budgets (``config/training/scaling/train_x*.yaml``
change only ``episodes_per_iteration``; ``config/training/train.yaml`` is 1x), one or more seeds
each, then give this script the checkpoints per budget. It runs every checkpoint's ``mirror`` row
of the turn-taking benchmark (:mod:`turn_taking`: fast env, the same sessions and metrics) on the
benchmark partners, plus ``eager`` once per partner as the no-forecast reference, and reports per
budget, with the mean and a 95 % confidence interval over the checkpoints (training seeds):

* the median gap, p90 gap and overlap rate per partner, and pooled over partners;
* the validation forecast error from the run's ``learning_curves.csv`` next to the checkpoint
  (mean of the last 5 iterations' ``val_forecast_mae_s``: less noisy than the last alone);
* the experience it was trained on (robot turns collected, summed over the curves' ``env_turns``).

    python bench/data_scaling.py --budget 0.2 runs/scaling/train_x0.2 --budget 1 runs/sweep/train \\
        --budget 3 runs/scaling/train_x3 [--turns 40] [--seed 0] [--out runs/data_scaling]

A budget's paths are checkpoints (``mirror.pt``) or run directories: a directory with a
``mirror.pt`` is one run, otherwise every ``seed*/mirror.pt`` below it (a ``coop-robot train
--seeds`` sweep's layout) is one. Sessions are Ray tasks as in the benchmark (``--ray-address``,
``--workers``). Writes ``results.csv`` (one row per session), ``scaling.json`` and
``scaling.png`` (each figure against the budget) to ``--out``; rows are saved as sessions finish.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import turn_taking as tt  # noqa: E402  (the benchmark's sessions, metrics and statistics)

from coop_robot.parallel import SERIAL, add_ray_arguments, resolve_address  # noqa: E402
from coop_robot.strict_json import json_safe  # noqa: E402

DEFAULT_OUT = tt.REPO_ROOT / "runs" / "data_scaling"
CURVES = "learning_curves.csv"
LAST_ITERATIONS = 5


def checkpoints_of(path: Path) -> list[Path]:
    """A checkpoint file, a run directory (``mirror.pt`` in it) or a sweep (``*/seed*/mirror.pt``)."""
    if not path.exists():
        raise ValueError(f"{path}: no such checkpoint or run directory")
    if path.is_file():
        return [path]
    if (path / "mirror.pt").is_file():
        return [path / "mirror.pt"]
    found = sorted(path.glob("**/seed*/mirror.pt"))
    if not found:
        raise ValueError(f"{path}: no mirror.pt in it and no seed*/mirror.pt below it")
    return found


def curves_of(checkpoint: Path) -> dict:
    """Forecast error (mean of the last iterations) and the robot turns collected, from the
    ``learning_curves.csv`` beside a checkpoint; NaN when there is none."""
    path = checkpoint.parent / CURVES
    if not path.is_file():
        return {"val_forecast_mae_s": math.nan, "collected_turns": math.nan, "iterations": math.nan}
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    mae = [float(r["val_forecast_mae_s"]) for r in rows[-LAST_ITERATIONS:] if r.get("val_forecast_mae_s")]
    return {"val_forecast_mae_s": statistics.fmean(mae) if mae else math.nan,
            "collected_turns": float(sum(int(r["env_turns"]) for r in rows)),
            "iterations": float(int(rows[-1]["iteration"]))}


def parse_budgets(items: Sequence[Sequence[str]]) -> list[tuple[float, list[Path]]]:
    budgets = []
    for item in items:
        if len(item) < 2:
            raise ValueError(f"--budget {' '.join(item)}: expected a factor and at least one checkpoint "
                             "or run directory")
        try:
            factor = float(item[0])
        except ValueError:
            raise ValueError(f"--budget {item[0]!r}: the factor must be a number (1 = the shipped recipe)") from None
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"--budget {item[0]}: the factor must be > 0")
        paths = [c for p in item[1:] for c in checkpoints_of(Path(p))]
        budgets.append((factor, paths))
    factors = [b[0] for b in budgets]
    if len(set(factors)) != len(factors):
        raise ValueError(f"--budget factors repeat: {factors}")
    return sorted(budgets)


def label(factor: float) -> str:
    return f"mirror x{factor:g}"


def summarise(rows: Sequence[dict], budgets: Sequence[tuple[float, list[Path]]]) -> dict:
    """Per budget: per partner and pooled figures, each a mean and CI over the budget's checkpoints."""
    out = {"budgets": [], "eager": {}}
    profiles = list(dict.fromkeys(r["profile"] for r in rows))
    for r in rows:
        if r["kind"] == tt.EAGER:
            out["eager"][r["profile"]] = {k: r[k] for k in ("median_gap_s", "p90_gap_s", "overlap_rate")}
    for factor, paths in budgets:
        mine = [r for r in rows if r["policy"] == label(factor)]
        entry = {"factor": factor, "checkpoints": [str(p) for p in paths], "partners": {}}
        for key in ("median_gap_s", "p90_gap_s", "overlap_rate"):
            pooled = []
            for c in paths:  # one pooled value per checkpoint: the mean over partners
                vals = [r[key] for r in mine if r["checkpoint"] == str(c) and tt._finite(r[key])]
                if len(vals) == len(profiles):
                    pooled.append(statistics.fmean(vals))
            entry[f"pooled_{key}"] = _stat(pooled)
        rates = []   # aborted reaches per 100 robot turns, mean over partners, one value per checkpoint
        for c in paths:
            vals = [100.0 * r["aborted_reaches"] / r["turns"] for r in mine
                    if r["checkpoint"] == str(c) and r["turns"] and tt._finite(r["aborted_reaches"])]
            if len(vals) == len(profiles):
                rates.append(statistics.fmean(vals))
        entry["pooled_aborted_per_100_turns"] = _stat(rates)
        entry["unfinished_turn_entries"] = int(sum(r["unfinished_turn_entries"] for r in mine
                                                   if tt._finite(r["unfinished_turn_entries"])))
        for p in profiles:
            entry["partners"][p] = {key: _stat([r[key] for r in mine if r["profile"] == p and tt._finite(r[key])])
                                    for key in ("median_gap_s", "p90_gap_s", "overlap_rate")}
        entry["violations"] = int(sum(r["ssm_violations"] for r in mine if tt._finite(r["ssm_violations"])))
        entry["contacts"] = int(sum(r["contacts"] for r in mine))
        entry["short_sessions"] = sum(r["status"] != "ok" for r in mine)
        curves = [curves_of(p) for p in paths]
        for key in ("val_forecast_mae_s", "collected_turns", "iterations"):
            entry[key] = _stat([c[key] for c in curves if tt._finite(c[key])])
        out["budgets"].append(entry)
    return out


def _stat(values: Sequence[float]) -> dict:
    s = tt.seed_stat(values)
    return {"mean": s.mean, "low": s.low, "high": s.high, "n": s.n}


def _cell(d: dict, scale: float = 1.0, fmt: str = ".0f") -> str:
    if d["n"] == 0 or not tt._finite(d["mean"]):
        return "n/a"
    text = f"{d['mean'] * scale:{fmt}}"
    if d["n"] > 1 and tt._finite(d["low"]):
        text += f" [{d['low'] * scale:{fmt}}, {d['high'] * scale:{fmt}}]"
    return text + f" (n={d['n']})"


def format_report(summary: dict) -> str:
    lines = ["| budget | robot turns collected | forecast MAE (s) | median gap, mean of partners (ms) | "
             "p90 gap (ms) | overlap rate | aborted reaches per 100 turns | unfinished-turn entries | "
             "SSM violations | contacts |", "|---" * 10 + "|"]
    for b in summary["budgets"]:
        lines.append(f"| {b['factor']:g}x | {_cell(b['collected_turns'])} | "
                     f"{_cell(b['val_forecast_mae_s'], 1, '.3f')} | {_cell(b['pooled_median_gap_s'], 1e3)} | "
                     f"{_cell(b['pooled_p90_gap_s'], 1e3)} | "
                     f"{_cell(b['pooled_overlap_rate'], 1, '.3f')} | "
                     f"{_cell(b['pooled_aborted_per_100_turns'], 1, '.1f')} | {b['unfinished_turn_entries']} | "
                     f"{b['violations']} | {b['contacts']} |")
    eager = summary["eager"]
    if eager:
        gaps = [v["median_gap_s"] for v in eager.values() if tt._finite(v["median_gap_s"])]
        p90 = [v["p90_gap_s"] for v in eager.values() if tt._finite(v["p90_gap_s"])]
        if gaps and len(gaps) == len(eager):
            lines.append(f"| eager (no forecast) | - | - | {1e3 * statistics.fmean(gaps):.0f} | "
                         f"{1e3 * statistics.fmean(p90):.0f} | - | - | - | - | - |")
    lines.append("")
    partners = list(summary["budgets"][0]["partners"]) if summary["budgets"] else []
    lines.append("| median gap (ms) | " + " | ".join(partners) + " |")
    lines.append("|---" * (len(partners) + 1) + "|")
    for b in summary["budgets"]:
        lines.append(f"| {b['factor']:g}x | " + " | ".join(_cell(b["partners"][p]["median_gap_s"], 1e3)
                                                          for p in partners) + " |")
    if eager:
        lines.append("| eager | " + " | ".join(f"{1e3 * eager[p]['median_gap_s']:.0f}" if p in eager else "n/a"
                                             for p in partners) + " |")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = summary["budgets"]
    x = [b["factor"] for b in budgets]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for ax, key, scale, title in ((axes[0], "val_forecast_mae_s", 1.0, "validation forecast MAE (s)"),
                                  (axes[1], "pooled_median_gap_s", 1e3, "median gap, mean of partners (ms)"),
                                  (axes[2], "pooled_p90_gap_s", 1e3, "p90 gap, mean of partners (ms)"),
                                  (axes[3], "pooled_aborted_per_100_turns", 1.0,
                                   "aborted reaches per 100 turns, mean of partners")):
        mean = [b[key]["mean"] * scale for b in budgets]
        low = [(b[key]["low"] if tt._finite(b[key]["low"]) else b[key]["mean"]) * scale for b in budgets]
        high = [(b[key]["high"] if tt._finite(b[key]["high"]) else b[key]["mean"]) * scale for b in budgets]
        ax.plot(x, mean, "o-")
        ax.fill_between(x, low, high, alpha=0.25)
        for b, m in zip(budgets, mean, strict=True):  # the band: the 95 % CI over seeds where n > 1
            ax.annotate(f"n={b[key]['n']}", (b["factor"], m), textcoords="offset points", xytext=(3, 4), fontsize=7)
        if key != "val_forecast_mae_s" and summary["eager"]:
            ref = "median_gap_s" if "median" in key else "p90_gap_s"
            vals = [v[ref] for v in summary["eager"].values() if tt._finite(v[ref])]
            if vals:
                ax.axhline(statistics.fmean(vals) * scale, color="grey", ls="--", label="eager")
                ax.legend(fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("collection budget (x the shipped recipe)")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", nargs="+", action="append", required=True, metavar="FACTOR_THEN_PATHS",
                   help="a collection budget (1 = the shipped recipe) and its checkpoints / run directories")
    p.add_argument("--turns", type=int, default=40, help="robot turns per session (default 40)")
    p.add_argument("--seed", type=int, default=0, help="session seed (default 0)")
    p.add_argument("--profiles", nargs="+", default=list(tt.SHIPPED_PROFILES), metavar="NAME_OR_YAML")
    p.add_argument("--heldout", action=argparse.BooleanOptionalAction, default=True,
                   help="add the held-out partners of test/heldout_partners (default: yes)")
    p.add_argument("--no-eager", dest="eager", action="store_false", help="skip the eager reference rows")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--quiet", action="store_true")
    add_ray_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from coop_robot.partner.profile import ProfileError

    try:
        if args.turns < 1:
            raise ValueError(f"--turns must be >= 1, got {args.turns}")
        address = resolve_address(args.ray_address)
        budgets = parse_budgets(args.budget)
        profiles = tt.resolve_profiles(args.profiles, args.heldout, tt.HELDOUT_DIR)
    except (ValueError, ProfileError) as exc:
        print(f"data_scaling: {exc}", file=sys.stderr)
        return 2
    specs = [tt.PolicySpec(label(f), tt.MIRROR, checkpoint=str(c)) for f, paths in budgets for c in paths]
    if args.eager:
        specs.append(tt.PolicySpec(tt.EAGER, tt.EAGER))
    jobs = [tt.Job(p, s, args.turns, args.seed) for p in profiles for s in specs]
    where = {None: "embedded local Ray", SERIAL: "serially"}.get(address, f"Ray at {address}")
    print(f"data_scaling: {len(budgets)} budgets, {sum(len(b[1]) for b in budgets)} checkpoints x {len(profiles)} "
          f"partners = {len(jobs)} sessions of {args.turns} turns, {where}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)

    def save(rows_so_far) -> None:
        tt.write_csv([r for r in rows_so_far if r is not None], args.out / "results.csv")

    t0 = time.monotonic()
    try:
        rows = tt.run_jobs(jobs, address=address, workers=args.workers, progress=not args.quiet, on_row=save)
    except (RuntimeError, ConnectionError) as exc:
        print(f"data_scaling: the run broke: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    summary = summarise(rows, budgets)
    summary.update(turns=args.turns, seed=args.seed, profiles=[p.name for p in profiles], git=tt.git_commit(),
                   wall_time_s=round(time.monotonic() - t0, 1))
    save(rows)
    (args.out / "scaling.json").write_text(json.dumps(json_safe(summary), indent=2), encoding="utf-8")
    plot(summary, args.out / "scaling.png")
    print()
    print(format_report(summary))
    print(f"\nwrote {args.out / 'results.csv'}, {args.out / 'scaling.json'}, {args.out / 'scaling.png'}")
    broke = [r for r in rows if r["status"] == "error"]
    if broke:
        print(f"data_scaling: {len(broke)} session(s) raised an error: {broke[0]['reason']}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

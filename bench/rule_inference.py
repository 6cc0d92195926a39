"""Rule-inference recovery (issue 14): does `coop-robot infer-rule`'s analysis recover a partner's
learning rule when the rule is known?

    python bench/rule_inference.py --seeds 0 1 2 3 4 --turns 120

For every partner (the test partners with known rules in ``test/learning_partners/``, the shipped
adapting ``slow``, and shipped partners that do not adapt) and seed, one scripted session
(:func:`coop_robot.analysis.rule_inference.scripted_session`: the partner model against a
scripted robot that sweeps the partner's pace up and down; the package's tracker scores the
turns) is analysed alone exactly as ``coop-robot infer-rule`` does: the parametric rule and the
no-learning model by maximum likelihood, the GRU, held-out next-trial R^2. Prints one row per
session and a summary per partner (mean and 95 % confidence interval over seeds, t-based), and
writes results.json. Checks (exit 1 if one fails): adapting partners -- mean speed-up and
slow-down within 15 % of the truth and the better model's mean held-out R^2 >= 0.8; partners that
do not adapt -- "no learning" in every session and each fitted rate within 2 standard errors of 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coop_robot.analysis.rule_inference import (  # noqa: E402
    _train_masks,
    held_out_r2,
    infer_rule,
    scripted_session,
    trials_from_records,
)
from coop_robot.partner.profile import load_profile  # noqa: E402

LEARNERS = [str(p) for p in sorted((REPO / "test" / "learning_partners").glob("*.yaml"))] + ["slow"]
NON_ADAPTERS = ["typical", "hesitant"]
# Two-sided 95 % t quantiles by degrees of freedom (n - 1).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t interval."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan
    return float(v.mean()), _T95.get(len(v) - 1, 1.96) * float(v.std(ddof=1)) / math.sqrt(len(v))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--turns", type=int, default=120)
    p.add_argument("--epochs", type=int, default=300, help="GRU training epochs")
    p.add_argument("--partners", nargs="+", default=LEARNERS + NON_ADAPTERS)
    p.add_argument("--out", type=Path, default=Path("runs/rule_inference"))
    p.add_argument("--save-logs", action="store_true",
                   help="also write each session's turn log to OUT/logs/<partner>_seed<S>.json (coop-robot "
                        "infer-rule reads them)")
    p.add_argument("--drive-amplitude", type=float, default=0.5,
                   help="the scripted robot's sweep of the partner's target log pace (default 0.5)")
    p.add_argument("--ceiling-only", action="store_true",
                   help="skip the fits; print only the R2 ceiling (the partner's true scale as the prediction)")
    return p


def ceiling_r2(table, true_scale, holdout_fraction: float, seed: int) -> float:
    """Held-out R2 of the best possible prediction from the rule: the partner's true timing scale
    times its base (fitted on the training trials); what the partner's own trial-to-trial noise
    leaves for any model."""
    train, test = _train_masks([table], holdout_fraction, seed)
    scale = np.asarray(list(true_scale) + [np.nan] * (len(table.cycle_s) - len(true_scale)))
    log_base = float(np.nanmean(np.log(table.cycle_s[train[0]] / scale[train[0]])))
    return held_out_r2([table], [np.exp(log_base) * scale], test)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'partner':>16} {'seed':>4} {'dist %':>6} {'speed-up':>15} {'slow-down':>15} {'LR':>6} "
          f"{'verdict':>11} {'R2 par':>6} {'R2 GRU':>6} {'wall s':>6}", flush=True)
    for partner in args.partners:
        profile = load_profile(partner)
        rule = profile.adaptation
        truth = (rule.speed_up_rate, rule.slow_down_rate) if rule.enabled else (0.0, 0.0)
        for seed in args.seeds:
            t0 = time.perf_counter()
            session = scripted_session(profile, args.turns, seed, drive_amplitude=args.drive_amplitude)
            table = trials_from_records(session["per_turn"], f"{profile.name}/seed{seed}")
            if args.save_logs:
                (args.out / "logs").mkdir(exist_ok=True)
                (args.out / "logs" / f"{profile.name}_seed{seed}.json").write_text(json.dumps(session),
                                                                                     encoding="utf-8")
            ceiling = ceiling_r2(table, session["true_scale"], 0.3, seed)
            if args.ceiling_only:
                rows.append({"partner": profile.name, "seed": seed, "r2_ceiling": ceiling})
                print(f"{profile.name:>16} {seed:>4} R2 ceiling {ceiling:.2f}", flush=True)
                continue
            res = infer_rule([table], epochs=args.epochs, seed=seed)
            f = res.parametric
            row = {"partner": profile.name, "adapts": rule.enabled, "seed": seed, "true_speed_up": truth[0],
                   "true_slow_down": truth[1], "disturbed_fraction": float(table.outcome.mean()),
                   **{k: v for k, v in f.as_dict().items() if not k.startswith("_")},
                   "r2_parametric": res.r2_parametric, "r2_recurrent": res.r2_recurrent, "r2_ceiling": ceiling,
                   "better_model": res.better_model, "wall_s": time.perf_counter() - t0}
            rows.append(row)
            print(f"{profile.name:>16} {seed:>4} {100 * row['disturbed_fraction']:>6.0f} "
                  f"{f.speed_up:>7.3f}+-{f.speed_up_se:<6.3f} {f.slow_down:>7.3f}+-{f.slow_down_se:<6.3f} "
                  f"{f.lr_statistic:>6.1f} {'learning' if f.learning else 'no learning':>11} "
                  f"{res.r2_parametric:>6.2f} {res.r2_recurrent:>6.2f} {row['wall_s']:>6.1f}", flush=True)
    if args.ceiling_only:
        for name in dict.fromkeys(r["partner"] for r in rows):
            m, h = mean_ci([r["r2_ceiling"] for r in rows if r["partner"] == name])
            print(f"  {name:>16}: R2 ceiling {m:.2f} [+-{h:.2f}]")
        return 0
    summary, failures = [], []
    print("\nper partner, mean [95 % CI] over seeds:")
    for name in dict.fromkeys(r["partner"] for r in rows):
        rs = [r for r in rows if r["partner"] == name]
        s = {"partner": name, "adapts": rs[0]["adapts"], "sessions": len(rs),
             "true_speed_up": rs[0]["true_speed_up"], "true_slow_down": rs[0]["true_slow_down"]}
        for key in ("speed_up", "slow_down", "r2_parametric", "r2_recurrent", "r2_ceiling"):
            s[key], s[key + "_ci"] = mean_ci([r[key] for r in rs])
        s["learning_found"] = sum(r["learning"] for r in rs)
        best = max(s["r2_parametric"], s["r2_recurrent"])
        if s["adapts"]:
            err_u = abs(s["speed_up"] / s["true_speed_up"] - 1.0)
            err_d = abs(s["slow_down"] / s["true_slow_down"] - 1.0)
            s.update(speed_up_error=err_u, slow_down_error=err_d, best_r2=best)
            ok = err_u <= 0.15 and err_d <= 0.15 and best >= 0.8
            text = (f"speed-up {s['speed_up']:.3f} [+-{s['speed_up_ci']:.3f}] (true {s['true_speed_up']:.3f}, "
                    f"{100 * err_u:.0f} %), slow-down {s['slow_down']:.3f} [+-{s['slow_down_ci']:.3f}] "
                    f"(true {s['true_slow_down']:.3f}, {100 * err_d:.0f} %), held-out R2 parametric "
                    f"{s['r2_parametric']:.2f} [+-{s['r2_parametric_ci']:.2f}], GRU {s['r2_recurrent']:.2f} "
                    f"[+-{s['r2_recurrent_ci']:.2f}], ceiling {s['r2_ceiling']:.2f}, "
                    f"learning found {s['learning_found']}/{len(rs)}")
        else:
            within = all(r["speed_up"] <= 2 * r["speed_up_se"] and r["slow_down"] <= 2 * r["slow_down_se"]
                         for r in rs)
            s["rates_within_2se"] = within
            ok = within and s["learning_found"] == 0
            text = (f"speed-up {s['speed_up']:.3f} [+-{s['speed_up_ci']:.3f}], slow-down {s['slow_down']:.3f} "
                    f"[+-{s['slow_down_ci']:.3f}], rates within 2 SE of 0 in every session: {within}, "
                    f"learning found {s['learning_found']}/{len(rs)}")
        s["pass"] = ok
        summary.append(s)
        if not ok:
            failures.append(name)
        print(f"  {name:>16}: {text} -> {'PASS' if ok else 'FAIL'}")
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "summary": summary, "argv": sys.argv},
                                                      indent=2, default=float), encoding="utf-8")
    print(f"results written to {args.out / 'results.json'}")
    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``coop-robot infer-rule``: infer a partner's learning rule from recorded sessions.

Each input is a rosbag2 session (scored as ``coop-robot analyze`` scores it) or a fast-environment
log (``coop-robot eval --summary-json``); all are taken to be the same partner. From each
session's turns it builds the per-trial table (the partner's cycle time, the outcome of each robot
turn) and fits the learning rule by maximum likelihood together with a no-learning model, and a
small GRU of the trial-to-trial update; both predict held-out trials
(:mod:`coop_robot.analysis.rule_inference`). Writes ``OUT/rule_fit.json`` (the fit, the
verdict, the held-out R^2 of both models), ``OUT/rule_fit.png`` and ``OUT/trials.json`` (the
per-trial tables). Exit status: 0 done; 2 bad input (a path that is not a bag or a turn log, a
corrupt file, too few turns).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}") from None
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
    return value


def add_arguments(parser) -> None:
    from coop_robot.argtypes import whole_at_least

    parser.add_argument("inputs", nargs="+", type=Path, metavar="BAG_OR_LOG",
                        help="rosbag2 session (directory or .mcap/.db3) or a fast-environment log "
                             "(coop-robot eval --summary-json); all of one partner")
    parser.add_argument("--out", type=Path, default=Path("rule_inference"),
                        help="output directory (default: ./rule_inference)")
    parser.add_argument("--holdout", type=_fraction, default=0.3,
                        help="fraction of each session's trials held out for scoring (default 0.3)")
    parser.add_argument("--epochs", type=whole_at_least(1), default=300,
                        help="GRU training epochs (default 300)")
    parser.add_argument("--seed", type=whole_at_least(0), default=0,
                        help="seed of the held-out draw and the GRU's initialisation (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args) -> int:
    from coop_robot.analysis.rule_inference import (
        RuleInferenceError,
        infer_rule,
        load_trials,
        plot_inference,
        rate_text,
    )

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"infer-rule: {msg}", file=sys.stderr, flush=True)

    tables = []
    for n, path in enumerate(args.inputs, 1):
        say(f"reading {path} ({n}/{len(args.inputs)})")
        try:
            table = load_trials(path)
        except RuleInferenceError as exc:
            print(f"coop-robot infer-rule: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        say(f"  {table.n_trials} trials, {int(table.outcome.sum())} disturbed turns")
        tables.append(table)
    try:
        result = infer_rule(tables, holdout_fraction=args.holdout, epochs=args.epochs, seed=args.seed,
                            progress=say)
    except RuleInferenceError as exc:
        print(f"coop-robot infer-rule: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.out.mkdir(parents=True, exist_ok=True)
    fit = result.as_dict()
    fit["command"] = "coop-robot " + " ".join(getattr(args, "argv", []))
    (args.out / "rule_fit.json").write_text(json.dumps(fit, indent=2), encoding="utf-8")
    (args.out / "trials.json").write_text(json.dumps([t.as_dict() for t in tables], indent=1), encoding="utf-8")
    plot_inference(result, args.out / "rule_fit.png")
    p = result.parametric
    print(f"rule: speed-up {rate_text(p.speed_up, p.speed_up_se)} after a smooth turn, slow-down "
          f"{rate_text(p.slow_down, p.slow_down_se)} after a disturbed one; likelihood ratio vs no learning "
          f"{p.lr_statistic:.1f} -> {fit['verdict']}")
    print(f"held-out next-trial R2: parametric {result.r2_parametric:.2f}, GRU {result.r2_recurrent:.2f} "
          f"(better: {result.better_model})")
    print(f"written: {args.out / 'rule_fit.json'}, {args.out / 'rule_fit.png'}, {args.out / 'trials.json'}")
    return 0

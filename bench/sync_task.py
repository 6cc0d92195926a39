"""Sync-task benchmark (issue 14, part 1): the mirror policy against the eager, reactive and oracle
controls on every shipped partner.

For every partner profile (default: the shipped typical, fast, slow, hesitant, erratic) and every
policy (default: eager, reactive, oracle, mirror) it plays one session of ``--turns`` trials in
the fast headless environment (:class:`~coop_robot.envs.turn_env.TurnTakingEnv` with
``task="sync"``, kinematic robot, fitted perception model) from the same seed -- what
``coop-robot eval --task sync --policy P --partner Q --turns N --seed S`` plays. The mirror policy
runs ``--checkpoint`` (default: the shipped ``coop_robot/policy/checkpoints/mirror_sync.pt``).

The window only scores the trials (the person never sees it), so each session is played once and
its trials are scored at every ``--windows`` value with the one definition of success
(:class:`coop_robot.timing.sync.SyncTrial`). It prints one table -- per (partner, policy): success
at each window, the median and interquartile range of the arrival offset (robot - partner), who
waited, missed trials, contacts, SSM violations and the minimum separation -- and the verdicts of
the issue's acceptance at the first window:

(a) mirror succeeds on >= 90 % of the trials with ``typical`` and >= 75 % with every other partner;
(b) zero contacts and zero SSM violations in every mirror session;
(c) on ``typical``, mirror's success rate is >= 20 points above the reactive control's.

Each session is a task of :func:`coop_robot.parallel.run_tasks` (an embedded local Ray by default,
``--ray-address HOST:PORT`` for a cluster, ``--ray-address none`` for this process); the figures
are the same every way. ``results.json`` (with every trial, the commit and how it ran) and
``results.csv`` (one row per session) go to ``--out``.

    python bench/sync_task.py [--turns 30] [--seed 0] [--windows 0.75 1.5] [--profiles typical ...]
        [--policies eager reactive oracle mirror] [--checkpoint PATH] [--ray-address none] [--out DIR]
        [--check]

Exit status: 0 done (with ``--check``: every verdict passed); 1 with ``--check`` when a verdict
failed; 2 on bad arguments or a session that raised an error.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coop_robot.argtypes import whole_at_least  # noqa: E402
from coop_robot.parallel import RayInfo, TaskError, add_ray_arguments, run_tasks  # noqa: E402
from coop_robot.partner.profile import shipped_profiles  # noqa: E402
from coop_robot.timing.sync import SyncTrial, check_window_s  # noqa: E402
from coop_robot.training.config import TRAINING_PARTNERS  # noqa: E402

POLICIES = ("eager", "reactive", "oracle", "mirror")
CSV_COLUMNS = ("partner", "policy", "trials", "window_s", "successes", "success_rate", "median_offset_s",
               "offset_p25_s", "offset_p75_s", "robot_waited", "partner_waited", "missed", "contacts",
               "ssm_violations", "min_separation_m")


def play(job: dict) -> dict:
    """One session (a task): ``job`` = partner, policy, turns, seed, window_s, checkpoint."""
    from coop_robot.envs.turn_env import TurnTakingEnv  # noqa: PLC0415 -- in the worker
    from coop_robot.policy import make_policy  # noqa: PLC0415

    params = {"checkpoint": job["checkpoint"]} if job["policy"] == "mirror" and job["checkpoint"] else {}
    policy = make_policy(job["policy"], task="sync", **params)
    env = TurnTakingEnv(job["partner"], seed=job["seed"], task="sync", window_s=job["window_s"])
    summary = env.run(policy, job["turns"], seed=job["seed"])
    return {key: summary[key] for key in ("trials", "window_s", "successes", "success_rate", "median_offset_s",
                                          "offset_p25_s", "offset_p75_s", "robot_waited", "partner_waited",
                                          "missed", "contacts", "ssm_violations", "min_separation_m",
                                          "per_trial")}


def success_at(result: dict, window_s: float) -> tuple[int, int]:
    """(successes, trials) of a session's trials scored at ``window_s`` (SyncTrial's definition)."""
    trials = [replace(SyncTrial.from_dict(t), window_s=window_s) for t in result["per_trial"]]
    return sum(t.success for t in trials), len(trials)


def verdicts(results: dict[tuple[str, str], dict], window_s: float) -> list[tuple[str, bool, str]]:
    """The acceptance of issue 14 part 1 at ``window_s``: (name, passed, detail) each."""
    out = []
    mirror = {p: r for (p, pol), r in results.items() if pol == "mirror"}
    if not mirror:
        return out
    rates = {p: success_at(r, window_s) for p, r in mirror.items()}
    lines = [f"{p} {s}/{n}" for p, (s, n) in rates.items()]
    ok = all(s / n >= (0.90 if p == "typical" else 0.75) for p, (s, n) in rates.items() if n)
    out.append(("(a) success >= 90 % typical, >= 75 % others", ok, ", ".join(lines)))
    unsafe = [p for p, r in mirror.items() if r["contacts"] or r["ssm_violations"]]
    out.append(("(b) zero contacts and SSM violations", not unsafe, "unsafe: " + (", ".join(unsafe) or "none")))
    if "typical" in mirror and ("typical", "reactive") in results:
        s, n = success_at(mirror["typical"], window_s)
        rs, rn = success_at(results[("typical", "reactive")], window_s)
        lead = 100.0 * (s / n - rs / rn)
        out.append(("(c) typical: >= 20 points above reactive", lead >= 20.0, f"{lead:+.0f} points"))
    return out


def _ms(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{1000 * v:+.0f}"


def table(results: dict[tuple[str, str], dict], windows: list[float]) -> str:
    head = ("| partner | policy | " + " | ".join(f"success @ {w:g} s" for w in windows)
            + " | median offset ms | IQR ms | robot / partner waited | missed | contacts, SSM violations "
              "| min separation m |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (partner, policy), r in results.items():
        rates = []
        for w in windows:
            s, n = success_at(r, w)
            rates.append(f"{s}/{n} ({100 * s / n:.0f} %)" if n else "0/0")
        sep = r["min_separation_m"]
        lines.append(f"| {partner} | {policy} | " + " | ".join(rates)
                     + f" | {_ms(r['median_offset_s'])} | {_ms(r['offset_p25_s'])} .. {_ms(r['offset_p75_s'])} "
                       f"| {r['robot_waited']} / {r['partner_waited']} | {r['missed']} | {r['contacts']}, "
                       f"{r['ssm_violations']} | {'n/a' if sep is None else f'{sep:.3f}'} |")
    return "\n".join(lines)


def git_commit() -> dict:
    """HEAD and whether tracked files have local changes (None when unknown)."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Sync task: mirror vs eager / reactive / oracle on every partner "
                                            "(issue 14); prints the table and the acceptance verdicts.")
    p.add_argument("--turns", type=whole_at_least(1), default=30, help="trials per session (default 30)")
    p.add_argument("--seed", type=whole_at_least(0), default=0, help="session seed (default 0)")
    p.add_argument("--windows", type=check_window_s, nargs="+", default=[0.75, 1.5], metavar="S",
                   help="success windows to score at (s); the first is the verdicts' (default 0.75 1.5)")
    p.add_argument("--profiles", nargs="+", default=None, metavar="NAME",
                   help="partner profiles (default: the shipped ones)")
    p.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    p.add_argument("--checkpoint", default=None, help="mirror sync checkpoint (default: the shipped one)")
    p.add_argument("--out", type=Path, default=Path("bench_sync_task"), help="output directory")
    p.add_argument("--check", action="store_true", help="exit 1 when a verdict fails")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_ray_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    shipped = shipped_profiles()
    profiles = args.profiles or ([p for p in TRAINING_PARTNERS if p in shipped]
                                 + [p for p in shipped if p not in TRAINING_PARTNERS])
    jobs = [{"partner": partner, "policy": policy, "turns": args.turns, "seed": args.seed,
             "window_s": args.windows[0], "checkpoint": args.checkpoint}
            for partner in profiles for policy in args.policies]
    info: list[RayInfo] = []
    try:
        out = run_tasks(play, jobs, address=args.ray_address, workers=args.workers, progress=not args.quiet,
                        label=lambda i, j: f"{j['partner']} / {j['policy']}", info=info)
    except (TaskError, ValueError) as exc:
        print(f"bench/sync_task.py: {exc}", file=sys.stderr)
        return 2
    results = {(j["partner"], j["policy"]): r for j, r in zip(jobs, out)}
    print(f"sync task, {args.turns} trials per session, seed {args.seed} ({info[0].describe() if info else ''})")
    print(table(results, args.windows))
    judged = verdicts(results, args.windows[0])
    for name, ok, detail in judged:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"git": git_commit(), "turns": args.turns, "seed": args.seed, "windows_s": args.windows,
           "checkpoint": args.checkpoint, "ray": info[0].as_dict() if info else None,
           "verdicts": [{"name": n, "passed": ok, "detail": d} for n, ok, d in judged],
           "sessions": [{"partner": p, "policy": pol, **r} for (p, pol), r in results.items()]}
    (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    with open(args.out / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for (p, pol), r in results.items():
            w.writerow({"partner": p, "policy": pol, **r})
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.csv'}")
    return 1 if args.check and not all(ok for _, ok, _ in judged) else 0


if __name__ == "__main__":
    sys.exit(main())

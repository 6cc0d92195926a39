"""Randomised fault campaign (issue 11): many short sessions of the real graph, each with faults drawn
at random over kinds and moments of a turn, scored on the simulator's ground truth.

    python bench/fault_campaign.py --sessions 50 --faults-per-session 6 --seed 0 --turns 2 \
        --out runs/fault_campaign

Each session runs the five-node graph of `coop-robot sim` (mirror, eager or reactive policy,
typical or erratic partner, a random seed) for --turns faulted turns plus one, on its own ROS domain
(coop_robot.faults.session). Progress is printed as sessions finish; DIR/report.json and
DIR/report.md are rewritten after every session (node logs in DIR/sessions/NNN). Exit status 0
when the verdict passes (docs/fault_injection.md), 1 when it fails, 2 for bad arguments, 130 when
interrupted (the report then covers the sessions that finished).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coop_robot.argtypes import whole_at_least  # noqa: E402
from coop_robot.faults.plan import draw_session  # noqa: E402
from coop_robot.faults.report import campaign_report, markdown  # noqa: E402
from coop_robot.faults.score import ENDED, SURVIVED  # noqa: E402


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text!r}")
    return value


def _commit() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=whole_at_least(1), default=50, help="sessions to run (default 50)")
    p.add_argument("--faults-per-session", type=whole_at_least(1), default=6,
                   help="faults drawn per session (default 6)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    p.add_argument("--turns", type=whole_at_least(1), default=2,
                   help="faulted robot turns per session; the session runs one more (default 2)")
    p.add_argument("--kill-probability", type=_probability, default=0.3,
                   help="share of sessions that end with a node killed (default 0.3)")
    p.add_argument("--policies", nargs="+", default=["mirror", "eager", "reactive"],
                   choices=["mirror", "eager", "reactive", "oracle"],
                   help="policies drawn (default: mirror eager reactive)")
    p.add_argument("--partners", nargs="+", default=["typical", "erratic"], metavar="PROFILE")
    p.add_argument("--timeout-s", type=float, help="wall-clock limit per session (default: 90 + 30 per turn)")
    p.add_argument("--min-sessions", type=int, default=50, help="sessions the verdict needs (default 50)")
    p.add_argument("--min-faults", type=int, default=300, help="injected faults the verdict needs (default 300)")
    p.add_argument("--out", type=Path, default=Path("runs/fault_campaign"), help="report and logs directory")
    p.add_argument("--only", type=int, nargs="+", metavar="N",
                   help="run only these sessions of the draw (0-based indices below --sessions), to reproduce a "
                        "finding; the verdict's minimums are not applied")
    p.add_argument("--rebuild-report", action="store_true",
                   help="run nothing: rewrite DIR/report.json and report.md from the sessions DIR/report.json holds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rebuild_report:
        old = json.loads((args.out / "report.json").read_text(encoding="utf-8"))
        for row in old["sessions"]:
            row["end_message"] = (row["end_message"].strip().splitlines() or [""])[0]
        report = _write(args, old["sessions"], old["meta"], old["meta"].get("wall_s", 0.0))
        print(f"verdict: {'PASS' if report['verdict']['pass'] else 'FAIL'} (report: {args.out / 'report.md'})")
        return 0 if report["verdict"]["pass"] else 1
    from coop_robot.faults.session import run_fault_session  # rclpy: after the arguments are checked
    from coop_robot.runner import interrupted_by_termination

    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    plans = [draw_session(rng, i, turns=args.turns, faults_per_session=args.faults_per_session,
                          kill_probability=args.kill_probability, policies=args.policies, partners=args.partners)
             for i in range(args.sessions)]
    if args.only:
        unknown = sorted(set(args.only) - set(range(args.sessions)))
        if unknown:
            print(f"--only: no session {unknown} in a draw of {args.sessions}", file=sys.stderr)
            return 2
        plans = [plan for plan in plans if plan.index in set(args.only)]
        args.min_sessions, args.min_faults = 0, 0
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": _commit(),
            "command": "python bench/fault_campaign.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
            "host": f"{platform.node()}, {os.cpu_count()} CPUs, load average at start "
                    f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}",
            "seed": args.seed, "turns": args.turns, "faults_per_session": args.faults_per_session}
    sessions: list[dict] = []
    t0 = time.monotonic()
    injected = 0
    code = 0
    # SIGTERM and SIGHUP end the campaign like Ctrl-C (which also works when a script started it in
    # the background): the running session's graph is shut down and the report covers the others.
    try:
        with interrupted_by_termination():
            for k, plan in enumerate(plans, 1):
                result = run_fault_session(plan, args.out / "sessions" / f"{plan.index:03d}",
                                           timeout_s=args.timeout_s)
                row = result.as_dict()
                # The report keeps the end message's first line; the node log's tail is in the session's logs.
                row["end_message"] = (row["end_message"].strip().splitlines() or [""])[0]
                sessions.append(row)
                done = [r for r in row["records"] if r["injected"]]
                injected += len(done)
                elapsed = time.monotonic() - t0
                eta_min = elapsed / k * (len(plans) - k) / 60.0
                survived = sum(r["outcome"] == SURVIVED for r in done)
                ended = sum(r["outcome"] == ENDED for r in done)
                bad = len(done) - survived - ended
                how = "completed" if row["completed"] else "ended: " + row["end_message"][:100]
                flags = ""
                if row["incidents"]:
                    flags += f", INCIDENTS {[i['kind'] for i in row['incidents']]}"
                if bad:
                    flags += f", {bad} UNEXPLAINED"
                if row["leftovers"]:
                    flags += f", {len(row['leftovers'])} PROCESSES LEFT"
                print(f"[{k:3d}/{len(plans)}] session {plan.index} {plan.policy}/{plan.partner} seed {plan.seed}: "
                      f"{len(done)}/{len(plan.faults)} faults injected ({survived} survived, {ended} ended)"
                      f"{flags}; {how}; "
                      f"{row['wall_s']:.0f} s; {injected} faults so far; ETA {eta_min:.0f} min", flush=True)
                _write(args, sessions, meta, time.monotonic() - t0)
    except KeyboardInterrupt:
        print(f"interrupted after {len(sessions)} sessions; the report covers them", file=sys.stderr)
        code = 130
    report = _write(args, sessions, meta, time.monotonic() - t0)
    for check in report["verdict"]["checks"]:
        print(f"{'ok  ' if check['ok'] else 'FAIL'} {check['check']}: {check['detail'][:300]}")
    print(f"verdict: {'PASS' if report['verdict']['pass'] else 'FAIL'} (report: {args.out / 'report.md'})")
    return code or (0 if report["verdict"]["pass"] else 1)


def _write(args, sessions: list[dict], meta: dict, wall_s: float) -> dict:
    report = campaign_report(sessions, {**meta, "wall_s": round(wall_s, 1)}, min_sessions=args.min_sessions,
                             min_faults=args.min_faults)
    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    (args.out / "report.md").write_text(markdown(report), encoding="utf-8")
    return report


if __name__ == "__main__":
    sys.exit(main())

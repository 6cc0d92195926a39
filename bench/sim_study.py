"""A simulated within-subject study: record sessions of the real graph, then analyse them as a study.

    python bench/sim_study.py --out runs/study --partners typical fast slow hesitant erratic \
        --seeds 1 2 --conditions reactive mirror --turns 5

Simulated participants are partner profiles x seeds (participant ``typical-s1`` is the typical
profile with seed 1); every participant meets every condition (a policy), one session each. Each
session is ``coop-robot sim --policy CONDITION --partner PROFILE --seed SEED --turns N --record
DIR/bags/<profile>_s<seed>_<condition>``, run as a Ray task (``--ray-address``, ``--workers``;
default an embedded Ray on this machine) with its graph on a ROS domain of its own; a session that
fails is retried once in a fresh bag directory. A graph needs about two cores to keep up with the
simulation (with fewer, perception runs late and the arm stops for the unseen hand, which the gaps
then measure): a session asks a cluster for ``--cpus-per-session`` CPUs, and on this machine
``--workers`` defaults to its CPUs / ``--cpus-per-session``. An embedded Ray runs its tasks at this
command's own niceness (Ray's default adds 15 to a worker's). Bags already recorded (their metadata.yaml
written) are kept, so the command resumes an interrupted study. Then it writes DIR/study.csv (the
design: bag, participant, condition, partner, seed) and runs ``coop-robot study`` on the bags,
grouped by what the bags' own metadata say (docs/recording_and_analysis.md, "Study"), into
DIR/analysis (study.html, study.json, the CSV tables). Exit status: that of ``coop-robot study``,
or 1 when a session could not be recorded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coop_robot.analysis.study import participant_label  # noqa: E402
from coop_robot.argtypes import whole_at_least  # noqa: E402
from coop_robot.parallel import add_ray_arguments, resolve_address, run_tasks  # noqa: E402


@dataclass(frozen=True)
class SessionPlan:
    """One session of the study (a Ray task's argument)."""

    partner: str
    seed: int
    condition: str
    turns: int
    bag: str
    log: str
    timeout_s: float
    attempts: int

    @property
    def participant(self) -> str:
        return participant_label(self.partner, self.seed)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/study"), help="study directory (default runs/study)")
    p.add_argument("--partners", nargs="+", default=["typical", "fast", "slow", "hesitant", "erratic"],
                   metavar="PROFILE", help="partner profiles (default: the five shipped ones)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2], metavar="SEED",
                   help="partner seeds; participants = profiles x seeds (default 1 2)")
    p.add_argument("--conditions", nargs=2, default=["reactive", "mirror"], metavar=("BASELINE", "OTHER"),
                   help="the two policies compared; differences are OTHER - BASELINE (default: reactive mirror)")
    p.add_argument("--turns", type=whole_at_least(1), default=5, help="robot turns per session (default 5)")
    p.add_argument("--timeout-s", type=float, default=900.0,
                   help="wall-clock limit per session attempt (default 900: a loaded machine runs slowly)")
    p.add_argument("--bootstrap", type=whole_at_least(1), default=10000, help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--cpus-per-session", type=whole_at_least(1), default=2,
                   help="CPUs a session asks a Ray cluster for (default 2: a graph needs about two cores)")
    add_ray_arguments(p, workers_help="sessions recorded at once (default: this machine's CPUs / --cpus-per-session; "
                                      "on a cluster, as many as its CPUs allow at --cpus-per-session each)")
    return p


def plan_sessions(args) -> list[SessionPlan]:
    """Participant by participant, each meeting every condition."""
    bags, logs = (args.out / "bags").resolve(), (args.out / "logs").resolve()
    return [SessionPlan(partner, seed, condition, args.turns, str(bags / f"{partner}_s{seed}_{condition}"),
                        str(logs / f"{partner}_s{seed}_{condition}.log"), args.timeout_s, attempts=2)
            for partner in args.partners for seed in args.seeds for condition in args.conditions]


def recorded(bag: str | Path) -> bool:
    """The bag was closed (the recorder writes metadata.yaml last)."""
    return (Path(bag) / "metadata.yaml").is_file()


#: Runs the session one process further down, so it outlives a Ray worker that is stopped, for as
#: long as it takes to shut its graph down: when Ray stops a worker it kills the worker's children
#: (this shim) outright, and the kernel then sends the session SIGTERM (PR_SET_PDEATHSIG), which
#: `coop-robot sim` handles like Ctrl-C, ending every node. The shim is single-threaded, so setting
#: the signal between fork and exec is safe; it does the same for itself (the worker's death).
SESSION_SHIM = """
import signal, subprocess, sys
try:
    import ctypes
    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    prctl(1, signal.SIGTERM)
    hook = lambda: prctl(1, signal.SIGTERM)
except (OSError, AttributeError):
    hook = None
sys.exit(subprocess.Popen(sys.argv[1:], preexec_fn=hook, start_new_session=True).wait())
"""


def record_session(plan: SessionPlan) -> dict:
    """Run one session of the real graph with --record (a Ray task). Never raises for a failed
    session: the row says how it ended."""
    env = dict(os.environ)
    # Its own ROS domain: `coop-robot sim` draws a free one when ROS_DOMAIN_ID is unset.
    env.pop("ROS_DOMAIN_ID", None)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "coop_robot.cli", "sim", "--policy", plan.condition, "--partner", plan.partner,
           "--seed", str(plan.seed), "--turns", str(plan.turns), "--timeout-s", str(plan.timeout_s),
           "--record", plan.bag]
    Path(plan.log).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    rc = None
    attempt = 0
    for attempt in range(1, plan.attempts + 1):
        shutil.rmtree(plan.bag, ignore_errors=True)     # a failed attempt's partial bag
        with open(plan.log, "a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(cmd)}   # attempt {attempt}\n")
            log.flush()
            rc = subprocess.run([sys.executable, "-c", SESSION_SHIM, *cmd], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=str(REPO), timeout=plan.timeout_s + 120,
                                check=False).returncode
        if rc == 0 and recorded(plan.bag):
            break
    return {**asdict(plan), "participant": plan.participant, "rc": rc, "attempts": attempt,
            "recorded": rc == 0 and recorded(plan.bag), "wall_s": round(time.monotonic() - t0, 1)}


def write_design(plans: list[SessionPlan], path: Path) -> None:
    """The study's design as `coop-robot study --design` reads it (bag paths relative to the file)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["bag", "participant", "condition", "partner", "seed"])
        for plan in plans:
            w.writerow([os.path.relpath(plan.bag, path.parent), plan.participant, plan.condition, plan.partner,
                        plan.seed])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from coop_robot.cli import main as coop_robot

    args.out.mkdir(parents=True, exist_ok=True)
    plans = plan_sessions(args)
    todo = [p for p in plans if not recorded(p.bag)]
    print(f"sim study: {len(plans)} sessions ({len(plans) // len(args.conditions)} participants x "
          f"{len(args.conditions)} conditions, {args.turns} turns each); {len(plans) - len(todo)} already recorded",
          flush=True)
    rows = []
    if todo:
        embedded = resolve_address(args.ray_address) is None
        workers = args.workers
        if embedded:
            # --workers sizes an embedded Ray (one CPU per session there); a worker keeps our niceness.
            workers = workers or max(1, (os.cpu_count() or 1) // args.cpus_per_session)
            os.environ.setdefault("RAY_worker_niceness", "0")
        t0 = time.monotonic()
        load_at_start = os.getloadavg()
        try:
            rows = run_tasks(record_session, todo, address=args.ray_address, workers=workers,
                             num_cpus=1 if embedded else args.cpus_per_session,
                             label=lambda i, p: f"{p.participant} {p.condition}")
        except KeyboardInterrupt:
            print("sim study: interrupted; the sessions' graphs were shut down, the bags recorded so far are kept "
                  "(run the same command again to go on)", file=sys.stderr)
            return 130
        host = {"cpus": os.cpu_count(), "load_average_at_start": [round(x, 1) for x in load_at_start],
                "load_average_at_end": [round(x, 1) for x in os.getloadavg()]}
        log = args.out / "recording.json"    # one entry per run of this command (a resumed study has several)
        runs = json.loads(log.read_text(encoding="utf-8")) if log.is_file() else []
        runs.append({"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "host": host,
                     "wall_s": round(time.monotonic() - t0, 1), "sessions": rows})
        log.write_text(json.dumps(runs, indent=2), encoding="utf-8")
    failed = [r for r in rows if not r["recorded"]]
    for row in failed:
        print(f"sim study: {row['participant']} {row['condition']} was not recorded (exit {row['rc']} after "
              f"{row['attempts']} attempt(s); log {row['log']})", file=sys.stderr)
    write_design(plans, args.out / "study.csv")
    bags = [os.path.relpath(p.bag) for p in plans if recorded(p.bag)]   # as a person would type them
    ray = [] if args.ray_address is None else ["--ray-address", args.ray_address]
    ray += [] if args.workers is None else ["--workers", str(args.workers)]
    status = coop_robot(["study", *bags, "--compare", *args.conditions, "--out", str(args.out / "analysis"),
                         "--bootstrap", str(args.bootstrap), "--seed", str(args.seed), *ray])
    return max(status, 1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())

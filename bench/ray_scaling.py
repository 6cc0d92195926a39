"""How the benchmark scales on Ray (issue 12): one fixed set of sessions run serially, then on an
embedded local Ray with ``--workers`` workers, on this machine, in one run.

The workload is ``bench/turn_taking.py``'s own session (``run_job``: one policy on one partner in
the fast environment), ``--sessions`` of them with seeds 0, 1, ... and the same policy, partner and
turn count, so they cost about the same. It reports, as measured:

* the wall time of each way (Ray's start-up and shutdown apart from the sessions) and the
  speed-up, serial wall / Ray wall, against the target (>= 1.7x with 2 workers);
* what the sessions got of the machine: CPU seconds per session and the share of a core each one
  ran on (a loaded machine gives both ways less than a core per process, and the speed-up shows it);
* Ray's start-up time and resident memory: :class:`coop_robot.parallel.RayInfo`'s figures, and
  the processes this run's Ray started, sampled while the sessions ran (RSS and PSS);
* the per-session cost: sessions per second per core, seconds (wall and CPU) per robot turn;
* Ray's own cost per task: ``--overhead-tasks`` no-op tasks through ``run_tasks`` on a second
  embedded Ray (driver CPU and wall per task);
* an estimate for a full sweep (``--sweep-seeds`` seeds x ``--sweep-partners`` partners x
  ``--sweep-turns`` turns, one session each): the cores that finish it within ``--sweep-hours``,
  from the measured cost per turn, and what else limits it.

It prints a table and writes the figures to ``--out`` (JSON), with the load average before and
after each part: on a shared machine the other jobs are part of the result.

    python bench/ray_scaling.py [--sessions 6] [--turns 8] [--workers 2] [--policy eager]
        [--partner typical] [--overhead-tasks 60] [--out runs/ray_scaling/scaling.json]

Other workloads (the training's experience collection) add themselves to :data:`WORKLOADS`: a
function of the parsed arguments returning a :class:`Workload` (its jobs, the job function, its
unit of work and, if it has one, the sweep to estimate); ``--workload NAME`` picks one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coop_robot.parallel import SERIAL, RayInfo, process_tree_memory, run_tasks

# The benchmark's sessions are the workload: import bench/turn_taking.py by name (as a script this
# folder is on the path already; loaded from its file, e.g. by the docs test, it is not).
_BENCH_DIR = str(Path(__file__).resolve().parent)
if _BENCH_DIR not in sys.path:
    sys.path.insert(0, _BENCH_DIR)
import turn_taking  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "runs" / "ray_scaling" / "scaling.json"
#: The speed-up issue 12 asks of 2 workers over serial.
TARGET_SPEEDUP_2_WORKERS = 1.7


# =========================================================================== workloads
@dataclass
class Sweep:
    """A full run of a workload to estimate: ``jobs`` jobs of ``units_per_job`` units each."""

    description: str
    jobs: int
    units_per_job: int


@dataclass
class Workload:
    """What is measured: ``fn(item)`` for each item, run serially and on Ray. ``fn`` returns a dict
    with at least ``cpu_s`` and ``wall_s`` (its own CPU and wall time in the worker) and ``status``
    ("ok" when the job did its work); ``unit`` names the work one item does ``units_per_item`` of
    (robot turns, environment steps)."""

    name: str
    description: str
    fn: Callable[[Any], dict]
    items: list
    unit: str
    units_per_item: int
    init: Callable[[], None] | None = None
    label: Callable[[int, Any], str] | None = None
    #: Run before the jobs are sent anywhere (e.g. putting the job's module on the workers' path).
    prepare: Callable[[], None] | None = None
    sweep: Sweep | None = None
    #: The result keys that must be identical serially and on Ray (the figures).
    figures: tuple[str, ...] = ()


def timed_session(job: turn_taking.Job) -> dict:
    """One benchmark session (``turn_taking.run_job``) with its CPU and wall time in the worker."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    row = turn_taking.run_job(job)
    return {"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0, "pid": os.getpid(),
            **{k: row[k] for k in ("status", "reason", "turns", "median_gap_s", "p90_gap_s", "overlap_rate")}}


def benchmark_sessions(args: argparse.Namespace) -> Workload:
    """``args.sessions`` sessions of ``args.policy`` on ``args.partner``, seeds 0, 1, ..."""
    profile = turn_taking.resolve_profiles([args.partner], heldout=False, heldout_dir=turn_taking.HELDOUT_DIR)[0]
    spec = next((s for s in turn_taking.policy_specs([0.4], []) if s.kind == args.policy), None)
    if spec is None:
        raise ValueError(f"--policy must be one of reactive, eager, oracle (no checkpoint needed), got {args.policy!r}")
    jobs = [turn_taking.Job(profile, spec, args.turns, seed) for seed in range(args.sessions)]
    sweep = Sweep(f"{args.sweep_seeds} seeds x {args.sweep_partners} partners, {args.sweep_turns} turns each "
                  f"({args.policy}, one policy row)", args.sweep_seeds * args.sweep_partners, args.sweep_turns)
    return Workload(
        "benchmark-sessions", f"{len(jobs)} sessions of {spec.label} on {profile.name}, {args.turns} robot turns "
        f"each, seeds 0..{len(jobs) - 1} (bench/turn_taking.py's run_job, fast environment)",
        timed_session, jobs, "robot turn", args.turns, init=turn_taking._init_worker,
        label=lambda i, job: f"{job.profile.name} / {job.policy.label} seed {job.seed}",
        prepare=turn_taking.workers_import_this_module, sweep=sweep,
        figures=("status", "turns", "median_gap_s", "p90_gap_s", "overlap_rate"))


def experience_collection(args: argparse.Namespace) -> Workload:
    """Training's experience collection (bench/experience_collection.py): ``args.sessions``
    exploring sessions of training iteration 1, ``args.turns`` robot turns each, untrained network
    of seed 0, one task each; a worker builds its session runner on its first task, as a
    collection actor of ``coop-robot train`` does. The sweep to estimate: ``args.sweep_seeds``
    training runs of the package's config, each run serial inside its task (as
    ``coop-robot train --seeds`` runs them), its sessions counted at an exploring session's cost."""
    import experience_collection as ec  # noqa: PLC0415 -- this folder is on the path (above)

    tasks = ec.collection_tasks(args.sessions, args.turns)
    cfg = ec.load_config(None)
    per_run = cfg.iterations * (cfg.episodes_per_iteration + len(cfg.eval_partners))
    sweep = Sweep(f"{args.sweep_seeds} training runs (seeds) of the package's config: {cfg.iterations} iterations x "
                  f"{per_run // cfg.iterations} sessions of {cfg.turns_per_episode} turns (collection and "
                  "evaluation; the updates, a few % of an iteration, not counted)",
                  args.sweep_seeds, per_run * cfg.turns_per_episode)
    return Workload(
        "experience-collection", f"{len(tasks)} exploring sessions of training iteration 1, {args.turns} robot turns "
        "each (coop_robot.training.sessions, untrained network of seed 0)",
        ec.collection_session, tasks, "robot turn", args.turns, init=turn_taking._init_worker,
        label=lambda i, task: f"{task.job.partner} session {i}", prepare=turn_taking.workers_import_this_module,
        sweep=sweep, figures=("status", "steps", "turns", "digest"))


#: Workloads by ``--workload`` name.
WORKLOADS: dict[str, Callable[[argparse.Namespace], Workload]] = {"benchmark-sessions": benchmark_sessions,
                                                                  "experience-collection": experience_collection}


# =========================================================================== measuring
ray_processes_memory = process_tree_memory  # the Ray this process started (tests, docs)


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


@dataclass
class Run:
    """One way of running the workload, as measured in the driver."""

    how: str                      # "serial" or "ray"
    workers: int
    wall_s: float = 0.0           # the whole run_tasks call
    startup_s: float = 0.0        # Ray's start-up (RayInfo)
    jobs_s: float = 0.0           # from the end of start-up to the last result
    shutdown_s: float = 0.0       # from the last result to run_tasks' return
    driver_cpu_s: float = 0.0     # CPU of this process during the call
    load_before: list[float] | None = None
    load_after: list[float] | None = None
    ray: dict | None = None       # RayInfo.as_dict()
    peak_memory: dict = field(default_factory=dict)
    #: From the first result to the last: wall and driver CPU per job once every worker has started.
    steady_wall_per_job_s: float = math.nan
    steady_driver_cpu_per_job_s: float = math.nan
    results: list[dict] = field(default_factory=list)

    @property
    def cpu_per_job_s(self) -> float:
        return _mean([r["cpu_s"] for r in self.results])

    @property
    def wall_per_job_s(self) -> float:
        return _mean([r["wall_s"] for r in self.results])

    @property
    def core_share(self) -> float:
        """CPU / wall of the jobs: the share of a core each job ran on (1.0 = a core of its own)."""
        wall = sum(r["wall_s"] for r in self.results)
        return sum(r["cpu_s"] for r in self.results) / wall if wall > 0 else math.nan

    @property
    def cores_busy(self) -> float:
        """CPU seconds of all jobs per second of the job phase: the cores the jobs kept busy."""
        return sum(r["cpu_s"] for r in self.results) / self.jobs_s if self.jobs_s > 0 else math.nan

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("results")
        d.update(cpu_per_job_s=self.cpu_per_job_s, wall_per_job_s=self.wall_per_job_s, core_share=self.core_share,
                 cores_busy=self.cores_busy, processes=sorted({r.get("pid") for r in self.results if "pid" in r}))
        return _rounded(d)


def measure(fn: Callable[[Any], dict], items: Sequence, *, address: str | None, workers: int,
            init: Callable[[], None] | None = None, label: Callable[[int, Any], str] | None = None,
            progress: bool = True) -> Run:
    """Run ``items`` through :func:`run_tasks` (``address`` "none": serially here; None: an embedded
    local Ray with ``workers`` CPUs) and time it; Ray's memory is sampled as each job finishes."""
    run = Run("serial" if address == SERIAL else "ray", 1 if address == SERIAL else workers)
    info: list[RayInfo] = []
    done: list[tuple[float, float]] = []  # (wall, driver CPU) as each job finished

    def finished(i: int, result: dict) -> None:
        done.append((time.monotonic(), time.process_time()))
        mem = ray_processes_memory()
        if mem["rss_bytes"] > run.peak_memory.get("rss_bytes", -1):
            run.peak_memory = mem

    run.load_before = load_average()
    cpu0, t0 = time.process_time(), time.monotonic()
    run.results = run_tasks(fn, items, address=address, workers=workers, label=label, progress=progress,
                            on_result=finished, init=init, info=info)
    run.wall_s = time.monotonic() - t0
    run.driver_cpu_s = time.process_time() - cpu0
    run.load_after = load_average()
    run.ray = info[0].as_dict() if info else None
    run.startup_s = info[0].startup_s if info else 0.0
    run.jobs_s = done[-1][0] - t0 - run.startup_s
    run.shutdown_s = t0 + run.wall_s - done[-1][0]
    if len(done) > 1:
        run.steady_wall_per_job_s = (done[-1][0] - done[0][0]) / (len(done) - 1)
        run.steady_driver_cpu_per_job_s = (done[-1][1] - done[0][1]) / (len(done) - 1)
    return run


def noop(i: int) -> dict:
    """A task that does nothing: what is left of its time is Ray's and the driver's."""
    return {"i": i, "pid": os.getpid(), "cpu_s": 0.0, "wall_s": 0.0}


def overhead_per_task(tasks: int, workers: int) -> dict:
    """``tasks`` (>= 2) no-op tasks through run_tasks on an embedded Ray of ``workers`` CPUs: wall
    time and driver CPU per task from the first result to the last, i.e. once Ray and its workers
    are up (run_tasks keeps ``workers`` tasks in flight)."""
    run = measure(noop, list(range(max(tasks, 2))), address=None, workers=workers, progress=False)
    return _rounded({"tasks": len(run.results), "workers": workers, "startup_s": run.startup_s,
                     "jobs_s": run.jobs_s, "wall_per_task_s": run.steady_wall_per_job_s,
                     "driver_cpu_per_task_s": run.steady_driver_cpu_per_job_s, "load_before": run.load_before,
                     "load_after": run.load_after, "ray": run.ray})


# =========================================================================== the estimate
def cores_for(jobs: int, job_s: float, within_s: float) -> int | None:
    """The fewest cores that run ``jobs`` equal jobs of ``job_s`` each within ``within_s``: each core
    runs its share one after another, so the last round counts whole (ceil(jobs / cores) rounds).
    None when one job alone does not fit."""
    if not (job_s > 0 and within_s > 0) or job_s > within_s:
        return None
    rounds = int(within_s // job_s)
    return math.ceil(jobs / rounds)


def estimate(sweep: Sweep, serial: Run, ray_run: Run, overhead: dict | None, unit: str, units_per_item: int,
             hours: float) -> dict:
    """Cores for ``sweep`` within ``hours``: from the CPU a session needed (each worker a core of its
    own) and from the wall time a session took per worker here (this machine as loaded as it was)."""
    within = hours * 3600.0 - ray_run.startup_s
    cpu_per_unit = _mean([r["cpu_s"] for r in serial.results + ray_run.results]) / units_per_item
    wall_per_unit = ray_run.wall_per_job_s / units_per_item
    per_task = overhead["wall_per_task_s"] if overhead else 0.0
    job_cpu = cpu_per_unit * sweep.units_per_job + per_task
    job_wall = wall_per_unit * sweep.units_per_job + per_task
    cores_cpu = cores_for(sweep.jobs, job_cpu, within)
    cores_wall = cores_for(sweep.jobs, job_wall, within)
    driver = overhead["driver_cpu_per_task_s"] if overhead else math.nan
    return _rounded({
        "sweep": asdict(sweep), "within_s": within, "unit": unit,
        "cpu_per_unit_s": cpu_per_unit, "wall_per_unit_s_here": wall_per_unit,
        "job_cpu_s": job_cpu, "job_wall_s_here": job_wall,
        "core_hours_cpu": sweep.jobs * job_cpu / 3600.0,
        "cores_dedicated": cores_cpu, "cores_as_loaded_here": cores_wall,
        "scheduler_wall_per_task_s": per_task,
        "driver_cpu_per_task_s": driver,
        # One driver dispatches every task: it keeps at most this many workers busy.
        "driver_bound_cores": job_cpu / driver if driver and driver > 0 else None,
        "startup_s": ray_run.startup_s,
        "memory_per_worker_pss_bytes": _per_worker_pss(ray_run),
    })


def _per_worker_pss(run: Run) -> int | None:
    mem = run.peak_memory
    return int(mem["workers_pss_bytes"] / mem["workers"]) if mem.get("workers") else None


# =========================================================================== report
def format_report(doc: dict) -> str:
    s, r = doc["serial"], doc["ray"]
    w = r["workers"]
    lines = [f"ray_scaling: {doc['workload']['description']}",
             f"machine: {doc['host']['cpus']} CPUs, load average {_load(s['load_before'])} before, "
             f"{_load(r['load_after'])} after; this process nice {doc['host']['nice']}", ""]
    rows = [("", "serial", f"Ray, {w} workers"),
            ("whole run, wall s", _f(s["wall_s"]), _f(r["wall_s"])),
            ("  Ray start-up s", "-", _f(r["startup_s"])),
            ("  sessions s", _f(s["jobs_s"]), _f(r["jobs_s"])),
            ("  Ray shutdown s", "-", _f(r["shutdown_s"])),
            ("per session: wall s", _f(s["wall_per_job_s"]), _f(r["wall_per_job_s"])),
            ("per session: CPU s", _f(s["cpu_per_job_s"]), _f(r["cpu_per_job_s"])),
            ("share of a core per session", _f(s["core_share"], 2), _f(r["core_share"], 2)),
            ("cores kept busy", _f(s["cores_busy"], 2), _f(r["cores_busy"], 2)),
            ("processes that ran sessions", str(len(s["processes"])), str(len(r["processes"]))),
            ("load average before", _load(s["load_before"]), _load(r["load_before"]))]
    lines += [f"{a:<30}{b:>14}{c:>18}" for a, b, c in rows]
    sp = doc["speedup"]
    lines += ["", f"speed-up, sessions (serial sessions s / Ray sessions s): {sp['sessions']:.2f}x",
              f"  = cores kept busy {r['cores_busy']:.2f} / {s['cores_busy']:.2f} (x{sp['cores_ratio']:.2f}) "
              f"x CPU per session {s['cpu_per_job_s']:.1f} / {r['cpu_per_job_s']:.1f} s (x{sp['cpu_ratio']:.2f})",
              f"speed-up, whole run (incl. Ray start-up and shutdown):  {sp['whole_run']:.2f}x",
              f"target >= {sp['target']}x with 2 workers: {sp['verdict']}",
              f"figures identical serially and on Ray: {'yes' if doc['figures_identical'] else 'NO'}"]
    info = r["ray"] or {}
    mem = r["peak_memory"]
    lines += ["", f"Ray start-up: {info.get('startup_s', math.nan):.1f} s; resident after start-up "
                  f"(RayInfo: the Ray processes this command started): {_mib(info.get('startup_rss_bytes'))}",
              f"this run's Ray while sessions ran (peak): {mem.get('processes', 0)} processes, "
              f"RSS {_mib(mem.get('rss_bytes'))}, PSS {_mib(mem.get('pss_bytes'))}, of which {mem.get('workers', 0)} "
              f"worker(s) PSS {_mib(mem.get('workers_pss_bytes'))}"]
    c = doc["cost"]
    lines += ["", f"per-session cost ({doc['workload']['units_per_item']} {doc['workload']['unit']}s a session):",
              f"  sessions per second per core: {c['sessions_per_s_per_core_serial']:.4f} serial, "
              f"{c['sessions_per_s_per_core_ray']:.4f} on Ray ({w} workers); "
              f"{c['sessions_per_cpu_s']:.4f} per CPU second",
              f"  seconds per {doc['workload']['unit']}: {c['wall_per_unit_s_serial']:.3f} wall serial, "
              f"{c['wall_per_unit_s_ray']:.3f} wall per worker on Ray, {c['cpu_per_unit_s']:.3f} CPU"]
    o = doc.get("overhead")
    if o:
        lines += [f"Ray per task ({o['tasks']} no-op tasks, {o['workers']} in flight, after a {o['startup_s']:.1f} s "
                  f"start-up): {o['wall_per_task_s'] * 1e3:.1f} ms wall, {o['driver_cpu_per_task_s'] * 1e3:.1f} ms "
                  f"driver CPU"]
    e = doc.get("estimate")
    if e:
        sw = e["sweep"]
        lines += ["", f"estimate: {sw['description']} = {sw['jobs']} sessions, "
                      f"{sw['jobs'] * sw['units_per_job']} {e['unit']}s, within {e['within_s'] / 3600:.2f} h "
                      f"(an hour less Ray's start-up):",
                  f"  a session of {sw['units_per_job']} {e['unit']}s: {e['job_cpu_s']:.0f} CPU s "
                  f"({e['cpu_per_unit_s']:.3f} s per {e['unit']}), {e['job_wall_s_here']:.0f} s wall per worker "
                  f"as loaded here; {e['core_hours_cpu']:.1f} core-hours in all",
                  f"  cores needed: {_cores(e['cores_dedicated'])} with a core per worker, "
                  f"{_cores(e['cores_as_loaded_here'])} at the speed a worker got here",
                  "  limits: " + _limits(e)]
    return "\n".join(lines)


def _limits(e: dict) -> str:
    parts = [f"Ray's scheduling costs {e['scheduler_wall_per_task_s'] * 1e3:.0f} ms per task against "
             f"{e['job_cpu_s']:.0f} s of work (negligible)"]
    if e.get("driver_bound_cores"):
        parts.append(f"one driver dispatching every task at {e['driver_cpu_per_task_s'] * 1e3:.1f} ms CPU each "
                     f"could keep ~{e['driver_bound_cores']:.0f} workers busy")
    parts.append(f"start-up {e['startup_s']:.0f} s once per command")
    if e.get("memory_per_worker_pss_bytes"):
        parts.append(f"memory: ~{_mib(e['memory_per_worker_pss_bytes'])} per worker (PSS) plus Ray's own "
                     "processes on each node")
    parts.append("the equal sessions finish in whole rounds, so the cores come in steps")
    return "; ".join(parts)


def _cores(n: int | None) -> str:
    return "no number of cores (one session alone takes longer)" if n is None else str(n)


def _f(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _load(v: list[float] | None) -> str:
    return "n/a" if not v else "/".join(f"{x:.2f}" for x in v)


def _mib(v: int | None) -> str:
    return "n/a" if not v else f"{v / 2**20:.0f} MiB"


def _mean(vals: Sequence[float]) -> float:
    return sum(vals) / len(vals) if vals else math.nan


def _rounded(v):
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


# =========================================================================== command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="benchmark-sessions", help="what to measure")
    p.add_argument("--sessions", type=int, default=6, help="sessions in the job set (default 6)")
    p.add_argument("--turns", type=int, default=8, help="robot turns per session (default 8)")
    p.add_argument("--policy", default="eager", help="reactive (debounce 0.4 s), eager or oracle (default eager)")
    p.add_argument("--partner", default="typical", help="partner profile (default typical)")
    p.add_argument("--workers", type=int, default=2, help="Ray workers (CPUs of the embedded Ray; default 2)")
    p.add_argument("--overhead-tasks", type=int, default=60,
                   help="no-op tasks to time Ray's cost per task on a second embedded Ray (0: skip; default 60)")
    p.add_argument("--sweep-seeds", type=int, default=100, help="seeds of the sweep to estimate (default 100)")
    p.add_argument("--sweep-partners", type=int, default=8, help="partners of the sweep (default 8)")
    p.add_argument("--sweep-turns", type=int, default=200, help="turns per session of the sweep (default 200)")
    p.add_argument("--sweep-hours", type=float, default=1.0, help="the time the sweep must fit in (default 1 h)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output (default runs/ray_scaling/scaling.json)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("sessions", "turns", "workers", "sweep_seeds", "sweep_partners", "sweep_turns"):
        if getattr(args, name) < 1:
            print(f"ray_scaling: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    if args.overhead_tasks < 0 or not args.sweep_hours > 0:
        print("ray_scaling: --overhead-tasks must be >= 0 and --sweep-hours > 0", file=sys.stderr)
        return 2
    os.environ.pop("RAY_ADDRESS", None)  # this measures an embedded Ray on this machine, never a cluster
    try:
        work = WORKLOADS[args.workload](args)
    except ValueError as exc:
        print(f"ray_scaling: {exc}", file=sys.stderr)
        return 2
    if work.prepare is not None:
        work.prepare()
    print(f"ray_scaling: {work.description}; serially, then on an embedded Ray with {args.workers} workers",
          flush=True)
    progress = not args.quiet
    serial = measure(work.fn, work.items, address=SERIAL, workers=1, init=work.init, label=work.label,
                     progress=progress)
    ray_run = measure(work.fn, work.items, address=None, workers=args.workers, init=work.init, label=work.label,
                      progress=progress)
    overhead = overhead_per_task(args.overhead_tasks, args.workers) if args.overhead_tasks else None

    identical = [{k: r[k] for k in work.figures} for r in serial.results] == \
        [{k: r[k] for k in work.figures} for r in ray_run.results]
    sessions_speedup = serial.jobs_s / ray_run.jobs_s
    whole_speedup = serial.wall_s / ray_run.wall_s
    target = TARGET_SPEEDUP_2_WORKERS if args.workers == 2 else None
    verdict = ("not judged (--workers is not 2)" if target is None else
               f"{'met' if sessions_speedup >= target else 'NOT met'} on the sessions ({sessions_speedup:.2f}x), "
               f"{'met' if whole_speedup >= target else 'not met'} on the whole run ({whole_speedup:.2f}x)")
    units = work.units_per_item
    cost = {"sessions_per_s_per_core_serial": len(work.items) / serial.jobs_s,
            "sessions_per_s_per_core_ray": len(work.items) / (ray_run.jobs_s * args.workers),
            "sessions_per_cpu_s": 1.0 / _mean([r["cpu_s"] for r in serial.results + ray_run.results]),
            "wall_per_unit_s_serial": serial.jobs_s / (len(work.items) * units),
            "wall_per_unit_s_ray": ray_run.wall_per_job_s / units,
            "cpu_per_unit_s": _mean([r["cpu_s"] for r in serial.results + ray_run.results]) / units}
    doc = _rounded({
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git": turn_taking.git_commit(),
        "command": " ".join(["python bench/ray_scaling.py", *(sys.argv[1:] if argv is None else argv)]),
        "host": {"cpus": os.cpu_count(), "nice": os.nice(0), "python": platform.python_version(),
                 "platform": platform.platform()},
        "workload": {"name": work.name, "description": work.description, "jobs": len(work.items), "unit": work.unit,
                     "units_per_item": units},
        "serial": serial.summary(), "ray": ray_run.summary(),
        # The sessions' speed-up is exactly (cores the jobs kept busy, Ray / serial) x (CPU a job
        # needed, serial / Ray): what the machine gave the workers, and what running on Ray cost.
        "speedup": {"sessions": sessions_speedup, "whole_run": whole_speedup, "target": target, "verdict": verdict,
                    "cores_ratio": ray_run.cores_busy / serial.cores_busy,
                    "cpu_ratio": serial.cpu_per_job_s / ray_run.cpu_per_job_s},
        "figures_identical": identical, "cost": cost, "overhead": overhead,
        "estimate": estimate(work.sweep, serial, ray_run, overhead, work.unit, units, args.sweep_hours)
        if work.sweep else None,
        "results": {"serial": serial.results, "ray": ray_run.results},
    })
    print("\n" + format_report(doc))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0 if identical and all(r["status"] == "ok" for r in serial.results + ray_run.results) else 1


if __name__ == "__main__":
    sys.exit(main())

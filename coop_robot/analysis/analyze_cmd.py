"""``coop-robot analyze``: score recorded rosbag2 sessions offline and write a comparison report.

For each bag (a rosbag2 directory, MCAP or sqlite3, or a bare .mcap/.db3 file): turns.csv,
summary.json (the keys of ``coop-robot sim``'s summary, plus the bag's issues) and five plots in
``OUT/<bag name>/``; then one self-contained ``OUT/report.html`` comparing all bags. Exit status:
:data:`EXIT_RULE`.

Several bags are analysed as Ray tasks (:func:`coop_robot.parallel.run_tasks`, ``--ray-address``,
``--workers``), one bag per task: the task scores its bag and draws its plots, and hands back the
result and the bytes of its files, which this process writes -- so on a cluster only the bags
must be readable by every node, not the output directory. Results are printed and the report
built in bag order; a bag that cannot be analysed is reported by name and the others still are.
One bag is analysed in this process (Ray would only add its start-up).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coop_robot.geometry import world_geometry
from coop_robot.parallel import SERIAL, TaskError, add_ray_arguments, resolve_address

#: The exit-status rule of ``coop-robot analyze`` and ``coop-robot replay`` (shown in their --help).
EXIT_RULE = (
    "exit status: 0 clean; 1 a data problem found while analysing (damaged, corrupt or truncated bag, a topic "
    "recorded with the wrong type, a topic the scoring needs is missing, the recorded live /turn/timing "
    "disagrees with the offline scoring) -- partial results are still written; 2 a usage error (bad "
    "arguments, a path that is not a bag, a bag with nothing to analyse). With several bags the highest "
    "status wins."
)


def add_arguments(parser) -> None:
    from coop_robot.timing.feed import FALLBACK_CAMERA_RATE_HZ, LIVE_CHECK_MARGIN_S

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        f"live check: when the bag holds the live tracker's /turn/timing, each recorded turn's gap must match\n"
        f"the offline scoring within one camera frame period (the bag's /partner/hand period, 1/"
        f"{FALLBACK_CAMERA_RATE_HZ:g} s if\nunknown) + {1000 * LIVE_CHECK_MARGIN_S:g} ms, and every recorded turn "
        f"must be found offline; else it is an error.\n\n" + _wrap(EXIT_RULE))
    parser.add_argument("bags", nargs="+", type=Path, metavar="BAG",
                        help="rosbag2 directory (MCAP or sqlite3) or a .mcap/.db3 file")
    parser.add_argument("--out", type=Path, default=Path("analysis"),
                        help="output directory (default: ./analysis)")
    parser.add_argument("--reorder-window-s", type=float, default=2.0,
                        help="events are re-sorted within this window before scoring (s, default 2.0)")
    base = list(world_geometry().robot_base_m)
    parser.add_argument("--robot-base", type=float, nargs=3, default=base, metavar=("X", "Y", "Z"),
                        help="robot base position in world (m) for end-effector FK (default: config/world.yaml's "
                             f"robot_base_m, {' '.join(f'{v:g}' for v in base)})")
    parser.add_argument("--no-plots", action="store_true", help="write CSV/JSON only (faster)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    add_ray_arguments(parser, workers_help="bags analysed at once (default: every CPU of this machine, or of "
                                           "the cluster); one bag is always analysed in this process")


class _Progress:
    """A one-line progress display on stderr (redrawn on a terminal, a line every 10 % otherwise)."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name, self.enabled = name, enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self._last_decile = -1

    def __call__(self, fraction: float, messages: int) -> None:
        if not self.enabled:
            return
        line = f"{self.name}: {100 * fraction:5.1f} %  {messages:,} messages  {time.monotonic() - self.t0:6.1f} s"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if fraction >= 1.0 else ""))
            sys.stderr.flush()
        elif int(fraction * 10) > self._last_decile:
            self._last_decile = int(fraction * 10)
            print(line, file=sys.stderr, flush=True)


def _wrap(text: str) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, 100))


def unique_names(bags: list[Path]) -> list[str]:
    """One output directory name per bag: the bag's name (a file's stem), ``_2``, ``_3`` for repeats."""
    seen: dict[str, int] = {}
    names = []
    for bag in bags:
        base = bag.resolve().name if bag.suffix not in (".mcap", ".db3") else bag.stem
        n = seen.get(base, 0)
        seen[base] = n + 1
        names.append(base if n == 0 else f"{base}_{n + 1}")
    return names


@dataclass(frozen=True)
class BagJob:
    """One bag to analyse (a Ray task's argument: plain values only)."""

    bag: Path
    reorder_window_s: float
    robot_base_m: tuple[float, float, float]
    plots: bool
    progress: bool = False     # the per-bag progress display (only when analysed in this process)
    cwd: str = ""              # the command's working directory (a relative bag path is relative to it)


@dataclass
class BagOutcome:
    """What a task hands back: the analysis (without the plot-only data) and its files' bytes."""

    result: object                                                # SessionResult
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)   # kind -> (file name, bytes)


def analyze_job(job: BagJob) -> BagOutcome:
    """Score one bag and render its files; never raises (an unexpected failure becomes the bag's error)."""
    from coop_robot.analysis.bags import BagIssue
    from coop_robot.analysis.session import SessionResult, analyze_bag, write_outputs

    t0 = time.perf_counter()
    bag = job.bag
    if not bag.is_absolute() and job.cwd and os.getcwd() != job.cwd:
        bag = Path(job.cwd) / bag   # a worker started elsewhere (a cluster node)
    work = Path(tempfile.mkdtemp(prefix="coop_analyze_"))
    try:
        result = analyze_bag(bag, reorder_window_s=job.reorder_window_s, robot_base_m=job.robot_base_m,
                             progress=_Progress(job.bag.name, job.progress))
        paths = write_outputs(result, work, plots=job.plots)
    except Exception as exc:   # a bug met on one bag must not cost the others their analysis
        result = SessionResult(bag=str(job.bag), name=job.bag.name, wall_s=time.perf_counter() - t0)
        result.error = f"analysis of {job.bag} failed: {type(exc).__name__}: {exc}"
        result.issues.append(BagIssue("error", "analysis", result.error))
        traceback.print_exc(file=sys.stderr)
        paths = write_outputs(result, work, plots=False)
    try:
        files = {kind: (p.name, p.read_bytes()) for kind, p in paths.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.intervals, result.separation_traces = {}, None   # drawn already; not worth shipping back
    return BagOutcome(result, files)


def analyze_bags(bags: list[Path], out: Path, *, reorder_window_s: float, robot_base_m, plots: bool = True,
                 quiet: bool = False, address: str | None = None, workers: int | None = None,
                 report: Callable[[int, object, Path], None] | None = None) -> tuple[list, list[dict]]:
    """Analyse ``bags`` (as Ray tasks when there are several), write each bag's files to
    ``out/<name>/`` as it finishes, and call ``report(i, result, out_dir)`` in bag order.

    Returns the results and each bag's file paths (by kind, as :func:`write_outputs` names them),
    both in bag order. ``address``/``workers`` as :func:`coop_robot.parallel.run_tasks`
    (ValueError for a malformed address)."""
    from coop_robot.parallel import run_tasks

    serial = len(bags) == 1 or resolve_address(address) == SERIAL
    base = tuple(float(v) for v in robot_base_m)
    jobs = [BagJob(Path(b), reorder_window_s, base, plots, progress=serial and not quiet, cwd=os.getcwd())
            for b in bags]
    dirs = [out / name for name in unique_names(bags)]
    results: list = [None] * len(bags)
    paths: list[dict] = [{} for _ in bags]
    reported = 0

    def keep(i: int, outcome: BagOutcome) -> None:
        nonlocal reported
        dirs[i].mkdir(parents=True, exist_ok=True)
        for kind, (name, data) in outcome.files.items():
            paths[i][kind] = dirs[i] / name
            paths[i][kind].write_bytes(data)
        results[i] = outcome.result
        while reported < len(bags) and results[reported] is not None:   # in bag order, as soon as possible
            if report is not None:
                report(reported, results[reported], dirs[reported])
            reported += 1

    run_tasks(analyze_job, jobs, address=SERIAL if serial else address, workers=workers,
              label=lambda i, job: str(job.bag), progress=not quiet and not serial, on_result=keep)
    return results, paths


def print_result(result, out_dir: Path) -> None:
    """The per-bag lines of ``coop-robot analyze``: where, the bag's issues, the summary, the live check."""
    from coop_robot.timing.metrics import format_summary

    print(f"== {result.bag} -> {out_dir}", flush=True)
    for issue in result.issues:
        print(f"  {issue}", file=sys.stderr if issue.severity == "error" else sys.stdout, flush=True)
    if result.summary:
        for line in format_summary(result.summary):
            print(line)
        live = result.summary.get("live_check")
        if live and live["agrees"]:
            print(f"  live /turn/timing agrees to {1000 * live['max_abs_gap_diff_s']:.3f} ms over "
                  f"{live['turns_compared']} turns (tolerance {1000 * live['tolerance_s']:.1f} ms)")
        elif live:
            print(f"  live /turn/timing DISAGREES with the offline scoring (see the error above; tolerance "
                  f"{1000 * live['tolerance_s']:.1f} ms)")
    sys.stdout.flush()


def check_common_arguments(args, command: str) -> int:
    """0, or 2 after naming the problem: --reorder-window-s, --ray-address, the bags, the output directory."""
    if not args.reorder_window_s >= 0:
        print(f"coop-robot {command}: --reorder-window-s must be >= 0, got {args.reorder_window_s}", file=sys.stderr)
        return 2
    try:
        resolve_address(args.ray_address)
    except ValueError as exc:
        print(f"coop-robot {command}: {exc}", file=sys.stderr)
        return 2
    missing = [str(b) for b in args.bags if not b.exists()]
    if missing:
        print(f"coop-robot {command}: no such bag: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"coop-robot {command}: cannot create output directory {args.out}: {exc}", file=sys.stderr)
        return 2
    return 0


def run(args) -> int:
    from coop_robot.analysis.report import write_html_report

    status = check_common_arguments(args, "analyze")
    if status:
        return status
    try:
        results, plots = analyze_bags(args.bags, args.out, reorder_window_s=args.reorder_window_s,
                                      robot_base_m=args.robot_base, plots=not args.no_plots, quiet=args.quiet,
                                      address=args.ray_address, workers=args.workers,
                                      report=lambda i, result, out_dir: print_result(result, out_dir))
    except TaskError as exc:   # Ray itself failed (a task never raises for a bag)
        print(f"coop-robot analyze: {exc}", file=sys.stderr)
        return 1
    if not args.no_plots:
        report = write_html_report(results, plots, args.out / "report.html")
        print(f"report: {report}")
    usage = [r.name for r in results if r.exit_code == 2]
    if usage:
        print(f"coop-robot analyze: nothing to analyse in: {', '.join(usage)}", file=sys.stderr)
    problems = [r.name for r in results if r.exit_code == 1]
    if problems:
        print(f"coop-robot analyze: data problems in: {', '.join(problems)} (partial results written)",
              file=sys.stderr)
    return max((r.exit_code for r in results), default=0)

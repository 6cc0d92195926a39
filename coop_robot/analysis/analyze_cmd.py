"""``coop-robot analyze``: score recorded rosbag2 sessions offline and write a comparison report.

For each bag (a rosbag2 directory, MCAP or sqlite3, or a bare .mcap/.db3 file): turns.csv,
summary.json (the keys of ``coop-robot sim``'s summary, plus the bag's issues) and five plots in
``OUT/<bag name>/``; then one self-contained ``OUT/report.html`` comparing all bags. Exit status:
:data:`EXIT_RULE`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from coop_robot.geometry import world_geometry

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


def _unique_dirs(bags: list[Path], out: Path) -> list[Path]:
    seen: dict[str, int] = {}
    dirs = []
    for bag in bags:
        base = bag.resolve().name if bag.suffix not in (".mcap", ".db3") else bag.stem
        n = seen.get(base, 0)
        seen[base] = n + 1
        dirs.append(out / (base if n == 0 else f"{base}_{n + 1}"))
    return dirs


def run(args) -> int:
    from coop_robot.analysis.report import write_html_report
    from coop_robot.analysis.session import analyze_bag, write_outputs
    from coop_robot.timing.metrics import format_summary

    if not args.reorder_window_s >= 0:
        print(f"coop-robot analyze: --reorder-window-s must be >= 0, got {args.reorder_window_s}", file=sys.stderr)
        return 2
    missing = [str(b) for b in args.bags if not b.exists()]
    if missing:
        print(f"coop-robot analyze: no such bag: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"coop-robot analyze: cannot create output directory {args.out}: {exc}", file=sys.stderr)
        return 2
    results, plots = [], []
    for bag, out_dir in zip(args.bags, _unique_dirs(args.bags, args.out)):
        result = analyze_bag(bag, reorder_window_s=args.reorder_window_s, robot_base_m=args.robot_base,
                             progress=_Progress(bag.name, not args.quiet))
        paths = write_outputs(result, out_dir, plots=not args.no_plots)
        results.append(result)
        plots.append(paths)
        print(f"== {bag} -> {out_dir}")
        for issue in result.issues:
            print(f"  {issue}", file=sys.stderr if issue.severity == "error" else sys.stdout)
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

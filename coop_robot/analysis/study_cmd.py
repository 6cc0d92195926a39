"""``coop-robot study``: analyse the sessions of a study and compare its conditions, per participant.

Every bag is scored as ``coop-robot analyze`` scores it (as Ray tasks: ``--ray-address``,
``--workers``), grouped by participant and condition -- from a design CSV (``--design``: columns
bag, participant, condition) or, without one, from what each bag recorded (condition = policy,
participant = partner profile and seed) -- and summarised with seeded bootstrap intervals and a
paired comparison of two conditions (:mod:`coop_robot.analysis.study`). Writes into OUT:
``study.html`` (one self-contained page: tables and plots), ``study.json``, ``sessions.csv``,
``by_condition.csv``, ``by_participant.csv``, ``paired.csv``, ``paired_differences.csv``, and per bag
``sessions/<bag>/`` (turns.csv, summary.json; plots with ``--session-plots``). Exit status:
:data:`STUDY_EXIT_RULE`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from coop_robot.analysis.analyze_cmd import _wrap, analyze_bags, check_common_arguments
from coop_robot.geometry import world_geometry
from coop_robot.parallel import TaskError, add_ray_arguments

STUDY_EXIT_RULE = (
    "exit status: 0 every session analysed cleanly and counted; 1 a data problem: a damaged, truncated or "
    "unreadable bag or a session without turns (named and left out of the statistics; the others are summarised), "
    "or a live check that disagrees (named; the offline scoring still counts); 2 a usage error (bad arguments, "
    "an unreadable design CSV, a bag the design has no row for, a bag whose metadata name no policy or partner "
    "without a design, a --compare condition the study does not have). Everything that could be computed is "
    "written in every case."
)


def add_arguments(parser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "grouping: with --design, each bag's row (matched by path, else by the bag's name); without it,\n"
        "condition = the recorded policy and participant = the recorded partner profile and seed\n"
        "(e.g. typical-s1), as `coop-robot sim` and the launch files record them on /diagnostics.\n\n"
        + _wrap(STUDY_EXIT_RULE))
    parser.add_argument("bags", nargs="*", type=Path, metavar="BAG",
                        help="rosbag2 directories or .mcap/.db3 files (default: every bag of --design)")
    parser.add_argument("--design", type=Path, metavar="CSV",
                        help="the study design: a CSV with columns bag (path relative to the CSV), participant, "
                             "condition (others are kept)")
    parser.add_argument("--compare", nargs=2, metavar=("BASELINE", "OTHER"),
                        help="the two conditions of the paired comparison; differences are OTHER - BASELINE "
                             "(default: the first condition against each other one)")
    parser.add_argument("--out", type=Path, default=Path("study"), help="output directory (default: ./study)")
    parser.add_argument("--bootstrap", type=int, default=10000, metavar="N",
                        help="bootstrap resamples per interval (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--session-plots", action="store_true",
                        help="also draw each session's five analyze plots into sessions/<bag>/")
    parser.add_argument("--title", default="coop_robot study", help="title of the study page")
    parser.add_argument("--reorder-window-s", type=float, default=2.0,
                        help="events are re-sorted within this window before scoring (s, default 2.0)")
    base = list(world_geometry().robot_base_m)
    parser.add_argument("--robot-base", type=float, nargs=3, default=base, metavar=("X", "Y", "Z"),
                        help="robot base position in world (m) for end-effector FK (default "
                             f"{' '.join(f'{v:g}' for v in base)})")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    add_ray_arguments(parser, workers_help="bags analysed at once (default: every CPU of this machine, or of the "
                                           "cluster)")


def _error(text: str) -> int:
    print(f"coop-robot study: {text}", file=sys.stderr)
    return 2


def _commit() -> str:
    """The package's git commit (``-dirty`` with local changes), or 'unknown' outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def _command_line(argv: list[str] | None, max_listed: int = 4) -> str | None:
    """The command as given, with a long list of bags shortened to its first few and a count."""
    if not argv:
        return None
    words = [str(a) for a in argv]
    bags = [i for i, w in enumerate(words) if i and Path(w).exists() and not words[i - 1].startswith("--")]
    if len(bags) > max_listed:
        cut = set(bags[max_listed:])
        words = [w for i, w in enumerate(words) if i not in cut]
        words.insert(bags[max_listed - 1] + 1, f"... ({len(bags)} bags)")
    return "coop-robot " + " ".join(shlex.quote(w) if not w.startswith("...") else w for w in words)


def run(args) -> int:
    from coop_robot import __version__
    from coop_robot.analysis.study import (
        DesignError,
        grouping_from_summary,
        match_design,
        read_design,
        session_from_result,
        study_statistics,
        write_study_tables,
    )
    from coop_robot.analysis.study_report import format_study, write_study_page

    if args.bootstrap < 100:
        return _error(f"--bootstrap must be >= 100 resamples, got {args.bootstrap}")
    design_rows = None
    if args.design is not None:
        try:
            design = read_design(args.design)
            if not args.bags:
                args.bags = [row.bag for row in design]
            design_rows = match_design(args.bags, design, args.design)
        except DesignError as exc:
            return _error(str(exc))
    if not args.bags:
        return _error("no bags: give BAG ... or --design CSV")
    status = check_common_arguments(args, "study")
    if status:
        return status
    if args.compare and args.compare[0] == args.compare[1]:
        return _error(f"--compare needs two different conditions, got {args.compare[0]!r} twice")

    def report(i: int, result, out_dir: Path) -> None:
        s = result.summary or {}
        group = (design_rows[i].participant, design_rows[i].condition) if design_rows else grouping_from_summary(s)
        who = " / ".join(x or "?" for x in group)
        med = s.get("median_gap_s")
        line = f"== {result.bag} ({who}): " + (
            f"{s.get('turns', 0)} turns, median gap {1000 * med:.0f} ms" if med is not None else "no gap scored")
        print(line + ("" if result.exit_code == 0 else f" -- exit {result.exit_code}"), flush=True)
        for issue in result.issues:
            if issue.severity == "error":
                print(f"  {issue}", file=sys.stderr, flush=True)

    try:
        results, _ = analyze_bags(args.bags, args.out / "sessions", reorder_window_s=args.reorder_window_s,
                                  robot_base_m=args.robot_base, plots=args.session_plots, quiet=args.quiet,
                                  address=args.ray_address, workers=args.workers, report=report)
    except TaskError as exc:
        print(f"coop-robot study: {exc}", file=sys.stderr)
        return 1
    sessions = []
    for i, result in enumerate(results):
        if design_rows:
            row = design_rows[i]
            sessions.append(session_from_result(result, row.participant, row.condition, "design", row.extra))
        else:
            sessions.append(session_from_result(result, *grouping_from_summary(result.summary or {}), "metadata"))
    counted = any(s.included for s in sessions)
    compare = [tuple(args.compare)] if args.compare and counted else None
    try:
        study = study_statistics(sessions, compare=compare, resamples=args.bootstrap, seed=args.seed)
    except ValueError as exc:
        return _error(str(exc))
    study["meta"] = {
        "title": args.title, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "coop_robot": __version__, "commit": _commit(),
        "design": str(args.design) if args.design else None,
        "grouped_by": "design" if design_rows else "metadata",
        "command": _command_line(getattr(args, "argv", None)),
        "analysis": {"reorder_window_s": args.reorder_window_s, "robot_base_m": list(args.robot_base)},
    }
    (args.out / "study.json").write_text(json.dumps(study, indent=2), encoding="utf-8")
    write_study_tables(study, args.out)
    page = write_study_page(study, args.out / "study.html")
    for line in format_study(study):
        print(line)
    print(f"study page: {page}")

    left_out = [s for s in sessions if not s.included]
    for s in left_out:
        print(f"coop-robot study: {s.name} left out ({s.status}): {s.reason}", file=sys.stderr)
    usage = [s for s in sessions if s.status in ("ungrouped", "not a bag")]
    if not study["conditions"]:
        print("coop-robot study: no session counts: nothing to summarise", file=sys.stderr)
        return 2 if usage or not results else 1
    return 2 if usage else max((r.exit_code for r in results), default=0)

"""Rehearse the lab session: robot.launch.py's graph, unchanged, against the simulator posing as the lab cell.

``coop-robot rehearse`` starts :func:`coop_robot.graph.robot_graph` (what ``robot.launch.py`` runs:
perception, policy, controller, turn tracker on the wall clock, scoring on perception) and the
simulated cell (:func:`coop_robot.graph.cell_node`: RealSense and ros2_control topics only, noise
and latency, no ground truth in the graph). When the session ends it scores the cell's truth log
and prints the graph's perception-scored timing and the ground-truth check side by side
(:mod:`coop_robot.rehearsal`). Exit 0 when the check passes, 1 when it fails or the session does,
2 for bad input.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from coop_robot.argtypes import whole_at_least
from coop_robot.graph import POLICIES_ROBOT

EXIT_BAD_INPUT = 2
REHEARSAL_CELL = "rehearsal_cell.yaml"


def add_arguments(p) -> None:
    from coop_robot.cli import _seconds

    p.add_argument("--policy", default="reactive", choices=sorted(POLICIES_ROBOT),
                   help="turn-taking policy, as robot.launch.py's policy:= (default: reactive, its default)")
    p.add_argument("--partner", default="typical", metavar="NAME_OR_FILE",
                   help="the simulated person in the cell: a shipped profile name or a YAML file")
    p.add_argument("--turns", type=whole_at_least(1), default=20,
                   help="robot turns before the session ends (default: 20)")
    p.add_argument("--seed", type=whole_at_least(0), default=0, help="random seed of the simulated person (default: 0)")
    p.add_argument("--params-file", type=Path, default=None,
                   help="the cell file, read by the graph and by the simulated cell (default: the package's "
                        f"config/{REHEARSAL_CELL})")
    p.add_argument("--summary-json", type=Path,
                   help="write the session summary JSON here (the graph's perception-scored summary, with "
                        "'ground_truth' and 'rehearsal_check')")
    p.add_argument("--truth-log", type=Path,
                   help="where the cell writes its ground truth (default: LOG_DIR/truth.jsonl)")
    p.add_argument("--record", type=Path, metavar="DIR",
                   help="record the interaction topics (as robot.launch.py's record:=true does) to a rosbag2 "
                        "(MCAP) directory DIR (must not exist or be empty)")
    p.add_argument("--gui", action="store_true", help="open the PyBullet window of the simulated cell")
    p.add_argument("--log-dir", type=Path, help="where node logs go (default: a new temporary directory)")
    p.add_argument("--timeout-s", type=_seconds, help="give up after this many wall-clock seconds "
                                                      "(default: 120 + 20 per turn)")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID for the graph (default: $ROS_DOMAIN_ID or a random "
                                                 "free one)")


def run(args) -> int:
    from coop_robot.domain_guard import DomainInUse
    from coop_robot.graph import GraphError, rehearsal_graph
    from coop_robot.params import ParamFileError
    from coop_robot.partner.profile import ProfileError, load_profile, resolve_profile_path
    from coop_robot.paths import config_path
    from coop_robot.preflight import check_graph
    from coop_robot.rehearsal import compare, format_check, score_truth_log
    from coop_robot.runner import InputRefused, SessionError, isolated_env, run_session
    from coop_robot.sim.cell import TruthLogError
    from coop_robot.timing.metrics import TurnRecord, format_table

    def fail(text: str, code: int) -> int:
        print(f"coop-robot rehearse: {text}", file=sys.stderr)
        return code

    try:
        load_profile(args.partner)
    except ProfileError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    record_dir = ""
    if args.record:
        from coop_robot.recording.bag import BagError, check_output_dir

        try:
            record_dir = str(check_output_dir(args.record))  # refuse an existing recording before starting
        except BagError as exc:
            return fail(f"--record: {exc}", EXIT_BAD_INPUT)
    cell_file = args.params_file.resolve() if args.params_file else config_path(REHEARSAL_CELL)
    log_dir = (args.log_dir or Path(tempfile.mkdtemp(prefix="coop_robot_rehearse_"))).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    truth_log = (args.truth_log or log_dir / "truth.jsonl").resolve()
    summary_path = log_dir / "summary.json"
    try:
        specs = rehearsal_graph(str(truth_log), partner=str(resolve_profile_path(args.partner).resolve()),
                                seed=args.seed, gui=args.gui, policy=args.policy, turns=args.turns,
                                summary_json=str(summary_path), extra_param_files=[str(cell_file)],
                                record_dir=record_dir)
        problems = check_graph(specs)
    except (GraphError, ParamFileError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    if problems:
        for problem in problems:
            print(f"coop-robot rehearse: {problem}", file=sys.stderr)
        return fail("no node was started", EXIT_BAD_INPUT)
    print(f"coop-robot rehearse: robot.launch.py's graph (policy={args.policy}) against the simulated cell "
          f"(partner={args.partner}, seed={args.seed}), {args.turns} turns, cell file {cell_file}")
    t0 = time.monotonic()
    try:
        summary = run_session(specs, log_dir=log_dir, timeout_s=args.timeout_s or 120.0 + 20.0 * args.turns,
                              env=isolated_env(args.domain_id))
    except (ParamFileError, DomainInUse, InputRefused) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except SessionError as exc:
        fail(str(exc), 1)
        try:  # what the cell saw until then: contacts, turns, the last of them
            truth = score_truth_log(truth_log)
            print(f"coop-robot rehearse: ground truth until then: {truth['turns']} robot turns, contacts "
                  f"{truth['contacts']}, SSM violations {truth['ssm_violations']} ({truth_log})", file=sys.stderr)
        except TruthLogError:
            pass
        return 1
    except KeyboardInterrupt:
        return fail("interrupted; all nodes were shut down", 130)
    for key in ("node_exit_codes", "log_dir"):
        summary.pop(key, None)
    try:
        truth = score_truth_log(truth_log)
    except TruthLogError as exc:
        return fail(f"the session ran, but its ground truth cannot be read: {exc}", 1)
    check = compare(summary, truth)
    print()
    print(format_table([TurnRecord(**r) for r in summary["per_turn"]], summary))
    print()
    print(format_check(check))
    print(f"wall time {time.monotonic() - t0:.1f} s (node logs in {log_dir}, ground truth in {truth_log})")
    if record_dir:
        from coop_robot.recording.bag import describe_bag

        print(describe_bag(record_dir))
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        out = {**summary, "ground_truth": truth, "rehearsal_check": check.as_dict()}
        args.summary_json.write_text(json.dumps(out, indent=2), encoding="utf-8")
        print(f"summary written to {args.summary_json}")
    return 0 if check.passed else 1

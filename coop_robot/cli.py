"""``coop-robot``: the package's command line (no ROS 2 ``launch`` needed)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from coop_robot import __version__
from coop_robot.argtypes import tcp_port, whole_at_least
from coop_robot.graph import POLICIES_SIM
from coop_robot.tasks import TASKS

#: Exit status of a command given bad input (an argument, profile or parameter file it refuses,
#: before anything runs; argparse's own status); a session that fails while running exits 1.
EXIT_BAD_INPUT = 2


# --- option values, checked when the command line is parsed (argparse exits 2 naming them) -------
#: Turns (>= 1) and the partner's random seed (>= 0).
_count, _seed = whole_at_least(1), whole_at_least(0)


def _real_time_factor(text: str) -> float:
    """What the sim node accepts as its real_time_factor parameter (one rule: its own check)."""
    from coop_robot.sim.pacing import check_real_time_factor

    try:
        value = float(text)
    except ValueError:
        value = text  # check_real_time_factor names it as given
    try:
        return check_real_time_factor(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    """A finite duration > 0 (s)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0.0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


def _add_task_arguments(p) -> None:
    """``--task`` and ``--window-s``, the same for ``sim`` and ``eval``."""
    p.add_argument("--task", default="turn_taking", choices=TASKS,
                   help="turn_taking (default) or sync: synchronous joint action, after a cue the robot and the "
                        "simulated person each reach their own target and a trial succeeds when they arrive "
                        "within --window-s of each other (docs/science_sync.md; policies eager, reactive, "
                        "oracle, mirror)")
    p.add_argument("--window-s", type=_seconds, default=None,
                   help="with --task sync: the success window (s; default: sync_window_s of config/sync.yaml)")


def _add_sim(sub) -> None:
    p = sub.add_parser("sim", help="run the simulated interaction as a multi-process ROS 2 graph and print its timing",
                       description="Start sim, perception, policy, controller and turn tracker as separate ROS 2 "
                                   "processes (the graph of launch/sim.launch.py), run until N robot turns are done, "
                                   "print a per-turn timing table and a summary, exit 0. Bad input (an option, the "
                                   "partner profile, a parameter file or value any node refuses) is reported before "
                                   "any node starts, exit 2; a session that fails while running exits 1.")
    p.add_argument("--policy", default="mirror", choices=sorted(POLICIES_SIM),
                   help="turn-taking policy (default: mirror, the shipped network; reactive is the baseline; "
                        "eager acts as soon as its turn is due; oracle reads the sim's truth)")
    p.add_argument("--partner", default="typical", metavar="NAME_OR_FILE",
                   help="partner profile: a shipped name (typical, fast, slow, hesitant, erratic) or a YAML file")
    p.add_argument("--turns", type=_count, default=20,
                   help="robot turns before the session ends (default: 20); with --task sync, trials")
    _add_task_arguments(p)
    p.add_argument("--seed", type=_seed, default=0, help="random seed of the simulated partner (default: 0)")
    p.add_argument("--gui", action="store_true", help="open the PyBullet window (runs in real time)")
    p.add_argument("--summary-json", type=Path, help="also write the session summary JSON here")
    p.add_argument("--params-file", type=Path, action="append", default=[],
                   help="extra ROS 2 parameter file applied to every node after the package's (repeatable); "
                        "node-specific settings go under the node's name")
    p.add_argument("--real-time-factor", type=_real_time_factor,
                   help="sim speed limit, 0 to 100 (0 = as fast as perception keeps up)")
    p.add_argument("--log-dir", type=Path, help="where node logs go (default: a new temporary directory)")
    p.add_argument(
        "--timeout-s", type=_seconds, help="give up after this many wall-clock seconds (default: 120 + 20 per turn)"
    )
    p.add_argument(
        "--domain-id", type=int, help="ROS_DOMAIN_ID for the graph (default: $ROS_DOMAIN_ID or a random free one); "
        "a domain where nodes with the graph's names already run is refused (exit 2)"
    )
    p.add_argument(
        "--record",
        type=Path,
        metavar="DIR",
        help="record the interaction topics to a rosbag2 (MCAP) directory DIR (must not exist or be empty); "
        "read it with `ros2 bag info DIR`, rosbags or any MCAP reader",
    )
    p.add_argument(
        "--record-images",
        action="store_true",
        help="with --record: also record the camera images and camera_info (about 16 MB per simulated second)",
    )
    p.add_argument("--live-view", action="store_true",
                   help="also run the live view: zone, hand, arm, protective separation and the policy's decision "
                        "as markers on /coop_robot/markers (RViz on --domain-id's domain)")
    p.add_argument("--foxglove", action="store_true",
                   help="run the live view and serve it to Foxglove on ws://127.0.0.1:PORT (needs foxglove-sdk)")
    p.add_argument("--foxglove-port", type=tcp_port, default=None, metavar="PORT",
                   help="with --foxglove: the WebSocket port (default: 8765)")


def _cmd_sim(args) -> int:
    """Exit status: 2 for bad input, found before any node process starts (the options above are
    checked by argparse, the partner profile, the recording directory, and every node's parameters
    by :func:`coop_robot.preflight.check_graph`) or refused by a node at start-up all the same; 1
    when the session fails while running (a node dies, the time runs out)."""
    from coop_robot.domain_guard import DomainInUse
    from coop_robot.graph import GraphError, sim_graph
    from coop_robot.params import ParamFileError
    from coop_robot.partner.profile import ProfileError, load_profile, resolve_profile_path
    from coop_robot.preflight import check_graph
    from coop_robot.runner import InputRefused, SessionError, isolated_env, run_session
    from coop_robot.timing.metrics import TurnRecord, format_table

    if args.record_images and not args.record:
        print("coop-robot sim: --record-images needs --record DIR", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.foxglove_port is not None and not args.foxglove:
        print("coop-robot sim: --foxglove-port needs --foxglove", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.window_s is not None and args.task != "sync":
        print("coop-robot sim: --window-s applies to --task sync only", file=sys.stderr)
        return EXIT_BAD_INPUT
    record_dir = ""
    if args.record:
        from coop_robot.recording.bag import BagError, check_output_dir

        try:
            record_dir = str(check_output_dir(args.record))  # refuse an existing recording before starting
        except BagError as exc:
            print(f"coop-robot sim: --record: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    try:
        load_profile(args.partner)  # fail fast with the profile's own message
    except ProfileError as exc:
        print(f"coop-robot sim: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="coop_robot_sim_"))
    summary_path = (log_dir / "summary.json").resolve()
    partner = str(resolve_profile_path(args.partner).resolve())  # the nodes may run elsewhere
    try:
        specs = sim_graph(
            policy=args.policy,
            partner=partner,
            seed=args.seed,
            turns=args.turns,
            gui=args.gui,
            summary_json=str(summary_path),
            real_time_factor=args.real_time_factor,
            record_dir=record_dir,
            record_images=args.record_images,
            partner_label=args.partner,
            extra_param_files=[str(p.resolve()) for p in args.params_file],
            live_view=args.live_view or args.foxglove,
            foxglove_port=(8765 if args.foxglove_port is None else args.foxglove_port) if args.foxglove else None,
            task=args.task,
            window_s=args.window_s,
        )
        problems = check_graph(specs)  # every node's parameters, as each node will judge them
    except (GraphError, ParamFileError) as exc:
        print(f"coop-robot sim: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if problems:
        for problem in problems:
            print(f"coop-robot sim: {problem}", file=sys.stderr)
        print("coop-robot sim: no node was started", file=sys.stderr)
        if args.log_dir is None:
            log_dir.rmdir()  # the empty directory made for this session's logs
        return EXIT_BAD_INPUT
    timeout = args.timeout_s or 120.0 + 20.0 * args.turns
    t0 = time.monotonic()
    what = f"{args.turns} turns" if args.task != "sync" else f"sync task, {args.turns} trials"
    print(f"coop-robot {__version__}: {what}, policy={args.policy}, partner={args.partner}, seed={args.seed}")
    if args.foxglove:
        port = specs[-1].parameters["foxglove_port"]
        where = f"ws://127.0.0.1:{port}" if port else f"a free port (see {log_dir / 'live_view.log'})"
        print(f"live view: Foxglove WebSocket on {where}")
    try:
        summary = run_session(specs, log_dir=log_dir, timeout_s=timeout, env=isolated_env(args.domain_id))
    except (ParamFileError, DomainInUse, InputRefused) as exc:
        print(f"coop-robot sim: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SessionError as exc:
        print(f"coop-robot sim: {exc}", file=sys.stderr)
        if record_dir:
            from coop_robot.recording.bag import describe_bag

            print(f"coop-robot sim: what was recorded: {describe_bag(record_dir)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("coop-robot sim: interrupted; all nodes were shut down", file=sys.stderr)
        return 130
    # The JSON is the turn tracker's, as the launch files leave it; the runner's extras are printed.
    runner_info = {k: summary.pop(k) for k in ("node_exit_codes", "log_dir") if k in summary}
    wall_s = time.monotonic() - t0
    print()
    if args.task == "sync":
        from coop_robot.timing.sync import SyncTrial, format_sync_table

        print(format_sync_table([SyncTrial.from_dict(t) for t in summary["per_trial"]], summary))
    else:
        print(format_table([TurnRecord(**r) for r in summary["per_turn"]], summary))
    print(
        f"wall time {wall_s:.1f} s for {summary['session_duration_s']:.1f} s of simulated interaction "
        f"(node logs in {runner_info.get('log_dir', log_dir)})"
    )
    if args.task != "sync":  # the reference is a turn-taking session
        print(compare_with_reference(summary))
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        print(f"summary written to {args.summary_json}")
    if record_dir:
        from coop_robot.recording.bag import describe_bag

        print(describe_bag(record_dir))
    return 0


def compare_with_reference(summary: dict) -> str:
    """Closing lines: this session's gaps against the measured reactive baseline (with its date)."""
    import yaml

    from coop_robot.paths import PACKAGE

    text = (Path(__file__).parent / "data" / "reference_sessions.yaml").read_text(encoding="utf-8")
    ref = yaml.safe_load(text)["reactive_graph_typical"]
    base = (
        f"reactive baseline (`{ref['command']}`, measured {ref['date']} at commit {ref['commit']}): "
        f"median gap {1000 * ref['median_gap_s']:.0f} ms, p90 {1000 * ref['p90_gap_s']:.0f} ms, "
        f"{100 * ref['overlap_rate']:.0f} % overlaps"
    )
    med = summary.get("median_gap_s")
    if summary.get("policy") == "reactive" or med is None:
        return base
    if summary.get("partner") != ref["partner"]:
        return (
            base + f"\n(the reference is for the {ref['partner']} partner; this session's was {summary.get('partner')})"
        )
    ratio = ref["median_gap_s"] / med if med > 0 else float("inf")
    return (
        base + f"\nthis {summary.get('policy')} session: median gap {1000 * med:.0f} ms "
        f"({ratio:.1f}x shorter than the reactive baseline), overlap rate {100 * summary['overlap_rate']:.0f} %"
        f" -- {PACKAGE}'s point: the partner's turn end anticipated, not waited for"
    )


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a policy in the fast headless environment (no ROS)",
        description="Run a policy against a simulated partner in the fast headless environment "
        "(the sim's partner model, the controller core, a perception model fitted to the "
        "real pipeline; no ROS, no rendering) and print the same timing table and summary "
        "as `coop-robot sim`.",
    )
    p.add_argument(
        "--policy", default="reactive", help="policy name (reactive, eager, oracle, mirror; default: reactive)"
    )
    p.add_argument("--partner", default="typical", metavar="NAME_OR_FILE", help="partner profile name or YAML file")
    p.add_argument("--turns", type=_count, default=200,
                   help="robot turns to score (default: 200); with --task sync, trials")
    _add_task_arguments(p)
    p.add_argument("--seed", type=_seed, default=0, help="random seed of the session (default: 0)")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="policy parameter, e.g. --set debounce_s=0.8 (repeatable; values parsed as YAML)",
    )
    p.add_argument(
        "--controller-set",
        dest="controller_settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="controller parameter (docs/parameters.md, the controller node's), e.g. --controller-set "
             "fallback_speed_scale=1.0 (repeatable; values parsed as YAML)",
    )
    p.add_argument(
        "--physics", action="store_true", help="step PyBullet physics for the robot (slower, exact contacts)"
    )
    p.add_argument("--summary-json", type=Path, help="write the summary JSON here")
    p.add_argument("--quiet", action="store_true", help="print only the summary line, not the per-turn table")


def parse_settings(items: list[str], option: str = "--set") -> dict:
    """``KEY=VALUE`` strings -> dict, values parsed as YAML scalars (``0.8`` -> 0.8, ``true`` -> True)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"{option} {item!r}: value is not a YAML scalar ({exc})") from exc
    return out


def _cmd_eval(args) -> int:
    from coop_robot.envs.turn_env import TurnTakingEnv
    from coop_robot.partner.profile import ProfileError
    from coop_robot.policy import PolicyError, make_policy
    from coop_robot.timing.metrics import TurnRecord, format_summary, format_table

    if args.window_s is not None and args.task != "sync":
        print("coop-robot eval: --window-s applies to --task sync only", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        controller = parse_settings(args.controller_settings, "--controller-set")
        if args.task == "sync":
            policy = make_policy(args.policy, task="sync", **parse_settings(args.settings))
            env = TurnTakingEnv(partner=args.partner, seed=args.seed, physics=args.physics, task="sync",
                                window_s=args.window_s, controller_params=controller)
        else:
            policy = make_policy(args.policy, **parse_settings(args.settings))
            env = TurnTakingEnv(partner=args.partner, seed=args.seed, physics=args.physics,
                                controller_params=controller)
    except (PolicyError, ProfileError, ValueError) as exc:
        print(f"coop-robot eval: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    summary = env.run(policy, args.turns, progress=not args.quiet)
    summary.update(
        policy=args.policy, partner=args.partner, seed=args.seed, policy_params=parse_settings(args.settings),
        controller_params=controller,
    )
    if args.task == "sync":
        text = env.format_sync(summary)
        print(text if not args.quiet else "\n".join(text.splitlines()[-2:]))
    else:
        records = [TurnRecord(**r) for r in summary["per_turn"]]
        # --quiet: the summary lines only (timing, safety, fluency), not the per-turn table.
        print(format_table(records, summary) if not args.quiet else "\n".join(format_summary(summary)))
    print(
        f"{summary['sim_time_s']:.0f} s simulated in {summary['wall_time_s']:.1f} s wall "
        f"(x{summary['real_time_factor']:.0f} real time)"
    )
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        print(f"summary written to {args.summary_json}")
    return 0


def _add_train(sub) -> None:
    # The training module owns its options; this only registers the command and forwards them.
    sub.add_parser(
        "train",
        add_help=False,
        help="train the mirror policy network in the fast environment (see `coop-robot train --help`)",
    )


def _cmd_train(argv: list[str]) -> int:
    from coop_robot.training.train import main as train_main

    return train_main(argv)


#: Commands implemented in their own modules: name -> (module, one-line help). Each module
#: provides ``add_arguments(parser)`` and ``run(args) -> int`` and keeps its heavy imports
#: (torch, matplotlib, rosbags) inside ``run``, so building the parser stays cheap.
MODULE_COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": ("coop_robot.analysis.analyze_cmd", "analyse rosbag2 sessions: per-turn timing, plots, HTML report"),
    "study": ("coop_robot.analysis.study_cmd", "a study of many sessions: per participant and condition, bootstrap "
                                              "intervals, paired comparison, HTML page"),
    "replay": ("coop_robot.analysis.replay", "replay a rosbag2 session's perception stream through a policy offline"),
    "analyze-policy": ("coop_robot.analysis.policy_analysis", "mirror-unit analysis of a mirror policy checkpoint"),
    "lesion": ("coop_robot.analysis.lesion_cmd", "silence a mirror network's mirror, partner-tuned or random units "
                                                "and rerun the benchmark partners: change against intact and random"),
    "estop": ("coop_robot.estop_cmd", "engage (on) or release (off) the controller's e-stop, acknowledged"),
    "infer-rule": ("coop_robot.analysis.infer_rule_cmd", "infer a partner's learning rule from recorded sessions "
                                                        "(bags or fast-environment logs): fit, figure, held-out score"),
    "calibrate": ("coop_robot.calibration.command", "calibrate the camera against the robot base (ChArUco board "
                                                    "on the flange): board, capture, solve, simulate"),
    "view": ("coop_robot.live_view.view_cmd", "watch a running graph: markers for RViz, or a Foxglove WebSocket "
                                             "server (--foxglove)"),
    "check": ("coop_robot.cell_check", "check a running lab cell against your cell file before robot.launch.py: "
                                       "topics, rates, QoS, alignment, zone in view, home pose, joints, clocks"),
    "rehearse": ("coop_robot.rehearse_cmd", "robot.launch.py's graph against the simulator posing as the lab cell; "
                                            "perception-scored timing checked against the cell's ground truth"),
}


def _add_module_commands(sub) -> None:
    import importlib

    for name, (module, help_text) in MODULE_COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip().splitlines()[0])
        mod.add_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coop-robot", description="Turn-taking human-robot interaction (ROS 2).")
    parser.add_argument("--version", action="version", version=f"coop-robot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_sim(sub)
    _add_eval(sub)
    _add_train(sub)
    _add_module_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return _cmd_train(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command in MODULE_COMMANDS:
        import importlib

        args.argv = argv   # the command line as given, for results that name their command

        return importlib.import_module(MODULE_COMMANDS[args.command][0]).run(args)
    handler = {"sim": _cmd_sim, "eval": _cmd_eval}[args.command]
    return handler(args)


def entry_point() -> None:
    """Console-script entry: exit with the command's status."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()

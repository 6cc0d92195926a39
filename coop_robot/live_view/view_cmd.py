"""Watch a running coop_robot graph: the live-view node, started on its own.

``coop-robot view`` runs the ``live_view`` node (:mod:`coop_robot.nodes.live_view_node`) in this
process on the graph's ROS domain: it publishes ``/coop_robot/markers`` for RViz and, with
``--foxglove``, serves the same scene on a Foxglove WebSocket server (``ws://HOST:PORT``), for
machines without RViz. Use it next to ``coop-robot sim --domain-id N`` or a ``ros2 launch``; the
graph's own ``--live-view`` / ``live_view:=true`` runs the same node inside the graph instead.
Ctrl-C stops it. Exit 2 for bad input (an option, a parameter file, foxglove-sdk missing, a port
in use).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from coop_robot.argtypes import tcp_port

PROG = "coop-robot view"


def add_arguments(parser) -> None:
    parser.add_argument("--foxglove", action="store_true",
                        help="also serve the scene to Foxglove on ws://HOST:PORT (needs foxglove-sdk)")
    parser.add_argument("--port", type=tcp_port, default=None, help="with --foxglove: the WebSocket port "
                        "(default: 8765; 0 = any free port, printed at start)")
    parser.add_argument("--host", default=None, help="with --foxglove: the address to listen on "
                        "(default: 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID of the graph to watch (default: "
                        "$ROS_DOMAIN_ID, else 0); `coop-robot sim --domain-id N` runs its graph on N")
    parser.add_argument("--params-file", type=Path, action="append", default=[],
                        help="extra ROS 2 parameter file (your cell file: zone, robot base), applied after the "
                             "package's (repeatable)")


def node_arguments(args, params_dir: Path) -> list[str]:
    """The node's command line (``--ros-args ...``) for these options, as the graph would give it."""
    from coop_robot.graph import live_view_node, parameter_files

    overrides = {}
    if args.foxglove:
        overrides = {"foxglove": True, "foxglove_port": 8765 if args.port is None else args.port}
        if args.host is not None:
            overrides["foxglove_host"] = args.host
    spec = live_view_node(tuple(str(p.resolve()) for p in args.params_file), overrides)
    argv = [PROG, "--ros-args", "-r", f"__node:={spec.name}"]
    for path in parameter_files(spec, params_dir):
        argv += ["--params-file", path]
    return argv


def run(args) -> int:
    from coop_robot.graph import GraphError
    from coop_robot.nodes.common import run_node
    from coop_robot.nodes.live_view_node import LiveViewNode
    from coop_robot.params import ParamFileError

    if not args.foxglove and (args.port is not None or args.host is not None):
        print(f"{PROG}: --port and --host need --foxglove", file=sys.stderr)
        return 2
    if args.domain_id is not None:
        if not 0 <= args.domain_id <= 232:
            print(f"{PROG}: --domain-id must be 0..232, got {args.domain_id}", file=sys.stderr)
            return 2
        os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    # Discovery as `coop-robot sim` keeps it (this host), unless the environment says otherwise.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory(prefix="coop_robot_view_") as tmp:
        try:
            argv = node_arguments(args, Path(tmp))
        except (GraphError, ParamFileError) as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        print(f"{PROG}: watching ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}; Ctrl-C stops", flush=True)
        return run_node(LiveViewNode, argv)

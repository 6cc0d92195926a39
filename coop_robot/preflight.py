"""Check a graph's node parameters before any node process starts (``coop-robot sim``).

Each node of the graph is built once in this process, with the command-line arguments its process
would get (:func:`coop_robot.runner.node_command`: the same parameter files, overrides and rclpy
argument parsing), in a private rclpy context with DDS discovery off, and destroyed at once. So the
node's own declarations and checks judge the values -- types, ranges, choices, and what it checks
across parameters (the zone geometry, a reachable target, a partner profile, a checkpoint) -- and
a bad value is reported as the node itself would report it, before anything runs. Nothing is
spun or published outside this process.

Settings changed for the check: the sim never opens its GUI window here, a recorder and a simulated
cell's truth log write into a throw-away directory (the command checks the real one itself), and a
live view serving Foxglove listens on any free port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from coop_robot.graph import NodeSpec

#: Parameter overrides for the check only, by node module (see the module docstring).
_CHECK_OVERRIDES = {
    "coop_robot.nodes.sim_node": lambda tmp: {"gui": False, "truth_log": str(Path(tmp) / "truth.jsonl")},
    "coop_robot.nodes.recorder_node": lambda tmp: {"output_dir": str(Path(tmp) / "bag")},
    # A Foxglove server is started for the check (foxglove-sdk missing is refused here), on any free
    # port: the node itself binds the asked one a moment later.
    "coop_robot.nodes.live_view_node": lambda tmp: {"foxglove_port": 0},
}


def check_graph(specs: Sequence[NodeSpec], extra_param_files: Sequence[str | Path] = ()) -> list[str]:
    """Build every node of ``specs`` as its process would be started and return what they refuse,
    one line per refusing node (``node 'controller': invalid parameter: ...``); empty when all
    start. Raises :class:`coop_robot.params.ParamFileError` for a missing or malformed parameter
    file, before any node is built."""
    from coop_robot.runner import node_command

    problems = []
    with tempfile.TemporaryDirectory(prefix="coop_robot_preflight_") as tmp:
        params_dir = Path(tmp) / "params"
        commands = []
        for spec in specs:
            extra = _CHECK_OVERRIDES.get(spec.module)
            if extra is not None:
                spec = dataclasses.replace(spec, parameters={**spec.parameters, **extra(tmp)})
            cmd = node_command(spec, params_dir, [Path(f) for f in extra_param_files])
            commands.append((spec, cmd[cmd.index("--ros-args"):]))
        for spec, ros_args in commands:
            # The overrides file holds what the command's options set (--seed, --real-time-factor, ...).
            options = {str(params_dir / f"{spec.name}.yaml"): "the command's options"}
            problem = check_node(spec.module, ros_args, options)
            if problem is not None:
                problems.append(f"node '{spec.name}': {problem}")
    return problems


def check_node(module: str, ros_args: Sequence[str], file_names: Mapping[str, str] | None = None) -> str | None:
    """Build the node of executable module ``module`` with ``ros_args`` (``--ros-args ...``) and
    destroy it; None when it starts, else the line it would refuse to start with.
    ``file_names``: how to name a parameter file (by path) that set a bad value."""
    import rclpy

    from coop_robot.nodes.common import ParameterError, node_class, param_files_in_args, refusal_text
    from coop_robot.params import ParamFileError, load_param_file

    names = dict(file_names or {})
    try:
        files = {names.get(path, path): load_param_file(path) for path in param_files_in_args(list(ros_args))}
    except ParamFileError as exc:
        return refusal_text(exc, {})
    context = rclpy.Context()
    with _quiet():
        cls = node_class(module)  # importing the sim prints PyBullet's banner
        try:
            with _discovery_off():
                rclpy.init(args=["coop_robot_preflight", *ros_args], context=context)
        except RuntimeError as exc:  # rcl's own argument and parameter file checks (RCLError)
            return refusal_text(exc, files)
        try:
            node = cls(context=context)
        except ParameterError as exc:
            return refusal_text(exc, files)
        else:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        finally:
            rclpy.shutdown(context=context)
    return None


@contextlib.contextmanager
def _discovery_off() -> Iterator[None]:
    """rcl reads ``ROS_AUTOMATIC_DISCOVERY_RANGE`` when a context is initialised: OFF keeps the
    nodes built for the check invisible to every other participant."""
    saved = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "OFF"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"]
        else:
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hold back what the nodes print while they are built (their start-up logs, PyBullet's
    banner, the recorder's ready line): written by C libraries too, so at the file descriptors."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w", encoding="utf-8") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)

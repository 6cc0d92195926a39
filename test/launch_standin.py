"""A stand-in for ROS 2 ``launch`` (3.4, Jazzy) and ``launch_ros`` (0.26), which have no wheels.

It models what the real packages do with the parts of their API the launch files use, so that a
test can turn a launch file into the exact command lines a real ``ros2 launch`` starts, then start
those processes for real:

- ``DeclareLaunchArgument`` / ``LaunchConfiguration``: a given ``name:=value`` wins over the default.
- ``OpaqueFunction(function=f)``: ``f(context)`` returns more actions.
- ``launch_ros.actions.Node`` builds its command line as ``launch_ros/actions/node.py`` does:
  ``<lib/pkg/executable> [arguments] --ros-args -r __node:=<name> [-r __ns:=<ns>]``, then one
  ``--params-file`` per parameters entry (a path is passed as is, and silently skipped with a
  warning when it is not a file; a dict is dumped to a temporary file keyed ``/**`` when the node
  has no namespace, by its fully qualified name otherwise), then ``-r from:=to`` per remapping.
- Event handlers (``OnProcessExit``, ``OnProcessIO``) are kept so a test can fire their callbacks;
  ``EmitEvent``, ``Shutdown``, ``ShutdownProcess``, ``TimerAction`` are plain records.

Nothing of the real packages' code is copied; the behaviour was read from their sources.
"""

from __future__ import annotations

import os
import sys
import tempfile
import types
from pathlib import Path

import yaml


class Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchDescription(Action):
    @property
    def entities(self) -> list:
        return list(self.args[0]) if self.args else list(self.kwargs.get("initial_entities", []))


class DeclareLaunchArgument(Action):
    @property
    def name(self) -> str:
        return self.args[0] if self.args else self.kwargs["name"]


class OpaqueFunction(Action):
    pass


class RegisterEventHandler(Action):
    @property
    def handler(self):
        return self.args[0] if self.args else self.kwargs["event_handler"]


class EmitEvent(Action):
    pass


class TimerAction(Action):
    pass


class LaunchConfiguration(Action):
    def perform(self, context) -> str:
        return context.launch_configurations[self.args[0]]


class OnProcessExit(Action):
    pass


class OnProcessIO(Action):
    pass


class Shutdown(Action):
    pass


class ShutdownProcess(Action):
    pass


def matches_action(action):
    return lambda other: other is action


class Context:
    """What an OpaqueFunction and an event handler see: the launch configurations and shutdown state."""

    def __init__(self, configurations: dict[str, str]):
        self.launch_configurations = dict(configurations)
        self.is_shutdown = False


class Node(Action):
    """``launch_ros.actions.Node``: its command line as launch_ros builds it."""

    warnings: list[str] = []

    def command(self, prefix: Path) -> list[str]:
        kw = self.kwargs
        cmd = [str(prefix / "lib" / kw["package"] / kw["executable"])]
        cmd += list(kw.get("arguments") or [])
        if kw.get("ros_arguments"):
            cmd += ["--ros-args"] + list(kw["ros_arguments"])
        cmd += ["--ros-args"]
        name, namespace = kw.get("name"), kw.get("namespace")
        if name is not None:
            cmd += ["-r", f"__node:={name}"]
        if namespace is not None:
            ns = namespace if namespace.startswith("/") else "/" + namespace
            cmd += ["-r", f"__ns:={ns}"]
        fully_qualified = name is not None and namespace is not None
        for params in kw.get("parameters") or []:
            if isinstance(params, dict):
                key = f"{ns.rstrip('/')}/{name}" if fully_qualified else "/**"
                with tempfile.NamedTemporaryFile("w", prefix="launch_params_", delete=False) as fh:
                    yaml.dump({key: {"ros__parameters": params}}, fh, default_flow_style=False)
                cmd += ["--params-file", fh.name]
                continue
            path = str(params)
            if not os.path.isfile(path):
                Node.warnings.append(f"Parameter file path is not a file: {path}")
                continue
            cmd += ["--params-file", path]
        for src, dst in kw.get("remappings") or []:
            cmd += ["-r", f"{src}:={dst}"]
        return cmd


def install(monkeypatch, share_dir: Path) -> None:
    """Make ``import launch`` / ``launch_ros`` / ``ament_index_python`` resolve to this stand-in."""
    mods = {name: types.ModuleType(name) for name in (
        "launch", "launch.actions", "launch.substitutions", "launch.event_handlers", "launch.events",
        "launch.events.process", "launch_ros", "launch_ros.actions", "ament_index_python",
        "ament_index_python.packages")}
    mods["launch"].LaunchDescription = LaunchDescription
    for cls in (DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, EmitEvent, TimerAction):
        setattr(mods["launch.actions"], cls.__name__, cls)
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch.event_handlers"].OnProcessExit = OnProcessExit
    mods["launch.event_handlers"].OnProcessIO = OnProcessIO
    mods["launch.events"].Shutdown = Shutdown
    mods["launch.events"].matches_action = matches_action
    mods["launch.events.process"].ShutdownProcess = ShutdownProcess
    mods["launch_ros.actions"].Node = Node
    mods["ament_index_python.packages"].get_package_share_directory = lambda pkg: str(share_dir)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)


class Launched:
    """A launch file evaluated with some arguments: its declared arguments, nodes and handlers."""

    def __init__(self, declared: dict, actions: list, context: Context):
        self.declared, self.actions, self.context = declared, actions, context
        self.handlers = [a.handler for a in actions if isinstance(a, RegisterEventHandler)]
        self.nodes = [a for a in actions if isinstance(a, Node)]
        # Nodes started by an OnProcessIO handler (after the recorder's ready line) come after it.
        for h in self.handlers:
            if isinstance(h, OnProcessIO):
                ready = _Text(h.kwargs["target_action"].kwargs["name"])
                self.nodes += list(h.kwargs["on_stdout"](ready) or [])

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.kwargs["name"] == name)

    def exit_handler(self, node: Node):
        return next(h.kwargs["on_exit"] for h in self.handlers
                    if isinstance(h, OnProcessExit) and h.kwargs["target_action"] is node)


class _Text:
    """A ProcessIO event carrying the recorder's ready line."""

    def __init__(self, name: str):
        from coop_robot.graph import RECORDER_READY_LINE

        self.text = f"{RECORDER_READY_LINE} 12 topics to /tmp/bag\n".encode()
        self.name = name


class Exited:
    """A ProcessExited event."""

    def __init__(self, returncode: int):
        self.returncode = returncode


def evaluate(path: Path, arguments: dict[str, str]) -> Launched:
    """Run a launch file's ``generate_launch_description()`` and its OpaqueFunctions with ``arguments``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.name.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    declared = {e.name: e.kwargs for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    unknown = set(arguments) - set(declared)
    if unknown:
        raise KeyError(f"launch arguments not declared by {path.name}: {sorted(unknown)}")
    context = Context({**{n: kw["default_value"] for n, kw in declared.items()}, **arguments})
    actions = []
    for entity in ld.entities:
        if isinstance(entity, OpaqueFunction):
            actions += list(entity.kwargs["function"](context) or [])
    return Launched(declared, actions, context)

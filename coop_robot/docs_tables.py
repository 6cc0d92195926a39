"""The manual's reference tables, generated from the code so they cannot drift.

Each node class of the graph (:mod:`coop_robot.graph`) is built in-process, in its own rclpy
context on a random domain, without parameter files; its declared parameters (name, type,
default, range, description), its publishers and subscriptions (topic, type, QoS) and the
services it offers are read back and written as Markdown tables between marker comments in ``docs/parameters.md``::

    <!-- BEGIN GENERATED: parameters -->
    ...
    <!-- END GENERATED: parameters -->

The launch arguments come from each launch file's ``ARGUMENTS`` table, read without importing
``launch``. Usage::

    python -m coop_robot.docs_tables            # print the generated blocks
    python -m coop_robot.docs_tables --write    # rewrite them in docs/parameters.md
    python -m coop_robot.docs_tables --check    # exit 1 (with a diff) if the page is out of date

``test/test_docs.py`` regenerates the blocks in memory and fails when the page disagrees.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import importlib
import io
import os
import random
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PARAMETERS_PAGE = REPO / "docs" / "parameters.md"
LAUNCH_DIR = REPO / "launch"
WRITE_COMMAND = "python -m coop_robot.docs_tables --write"

#: Nodes the graph runs only when asked to (recording, the live view); their tables come last.
OPTIONAL_NODES = ("recorder", "live_view")
#: Declared by rclpy itself on every node, not by the package.
RCLPY_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})
#: Endpoints every rclpy node creates.
RCLPY_TOPICS = frozenset({"/parameter_events", "/rosout"})
#: Packages of the services every rclpy node offers (parameters, type descriptions, logger levels).
RCLPY_SERVICE_PACKAGES = frozenset({"rcl_interfaces", "type_description_interfaces"})

_MARKER = re.compile(r"<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- END GENERATED: (?P=name) -->",
                     re.DOTALL)


# --- what a node declares ---------------------------------------------------------------------
@dataclass
class ParameterInfo:
    name: str
    type: str                 # ROS 2 parameter type: bool, integer, double, string, double[], ...
    default: object           # the value the code declares (before any file or override)
    description: str
    range: str = ""           # from the descriptor: floating/integer range and constraints
    policies: tuple[str, ...] = ()   # policy node only: the policies under which it is declared


@dataclass
class EndpointInfo:
    topic: str
    msg_type: str             # pkg/msg/Name
    qos: str                  # reliability, durability, history depth
    node: str
    kind: str                 # "pub", "sub" or "server" (topic is then the service, msg_type its type)
    policies: tuple[str, ...] = ()


@dataclass
class NodeInfo:
    name: str                 # ROS node name (also its key in config/*.yaml)
    cls: str                  # module.Class
    executable: str
    param_files: tuple[str, ...]
    parameters: dict[str, ParameterInfo] = field(default_factory=dict)
    endpoints: list[EndpointInfo] = field(default_factory=list)


_TYPE_NAMES = {1: "bool", 2: "integer", 3: "double", 4: "string", 5: "byte[]", 6: "bool[]", 7: "integer[]",
               8: "double[]", 9: "string[]"}


def _msg_type_name(msg_type) -> str:
    module = msg_type.__module__.split(".")  # e.g. sensor_msgs.msg._image
    return f"{module[0]}/{module[1]}/{msg_type.__name__}"


def _qos_text(qos) -> str:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if isinstance(qos, int):
        qos = QoSProfile(depth=qos)
    reliability = {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best effort"}.get(
        qos.reliability, qos.reliability.name.lower())
    durability = {DurabilityPolicy.VOLATILE: "volatile", DurabilityPolicy.TRANSIENT_LOCAL: "transient local"}.get(
        qos.durability, qos.durability.name.lower())
    history = f"depth {qos.depth}" if qos.history == HistoryPolicy.KEEP_LAST else qos.history.name.lower()
    return f"{reliability}, {durability}, {history}"


def _range_text(descriptor) -> str:
    parts = []
    for rng in list(descriptor.floating_point_range) + list(descriptor.integer_range):
        parts.append(f"[{_value_text(rng.from_value)}, {_value_text(rng.to_value)}]")
    if descriptor.additional_constraints:
        parts.append(descriptor.additional_constraints)
    return "; ".join(parts)


def _probe_class(cls):
    """A subclass of node class ``cls`` that records what it declares and creates."""

    class Probe(cls):
        def __init__(self, **kwargs) -> None:
            # Set before Node.__init__, which already declares parameters and creates publishers.
            self._probe_defaults: dict[str, object] = {}
            self._probe_endpoints: list[tuple[str, object, str, object]] = []
            super().__init__(**kwargs)

        def declare_parameters(self, namespace, parameters, ignore_override=False):
            for entry in parameters:
                if len(entry) >= 2:
                    self._probe_defaults[(namespace + "." if namespace else "") + entry[0]] = entry[1]
            return super().declare_parameters(namespace, parameters, ignore_override)

        def create_publisher(self, msg_type, topic, qos_profile, *args, **kwargs):
            pub = super().create_publisher(msg_type, topic, qos_profile, *args, **kwargs)
            self._probe_endpoints.append(("pub", msg_type, pub.topic_name, qos_profile))
            return pub

        def create_subscription(self, msg_type, topic, callback, qos_profile, *args, **kwargs):
            sub = super().create_subscription(msg_type, topic, callback, qos_profile, *args, **kwargs)
            self._probe_endpoints.append(("sub", msg_type, sub.topic_name, qos_profile))
            return sub

        def create_service(self, srv_type, srv_name, callback, **kwargs):
            srv = super().create_service(srv_type, srv_name, callback, **kwargs)
            if _msg_type_name(srv_type).split("/")[0] not in RCLPY_SERVICE_PACKAGES:
                self._probe_endpoints.append(("server", srv_type, srv.service_name, kwargs.get("qos_profile", 10)))
            return srv

    Probe.__name__ = f"Probe{cls.__name__}"
    return Probe


def _read_node(cls, context, overrides: dict) -> tuple[str, dict[str, ParameterInfo], list[EndpointInfo]]:
    from rclpy.parameter import Parameter

    node = _probe_class(cls)(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    try:
        name = node.get_name()
        params = {}
        names = sorted(n for n in node._parameters if n not in RCLPY_PARAMETERS)
        for param, desc in zip(node.get_parameters(names), node.describe_parameters(names)):
            params[param.name] = ParameterInfo(
                name=param.name, type=_TYPE_NAMES.get(param.type_.value, param.type_.name.lower()),
                default=node._probe_defaults.get(param.name, param.value), description=desc.description,
                range=_range_text(desc))
        endpoints = [EndpointInfo(topic, _msg_type_name(msg_type), _qos_text(qos), name, kind)
                     for kind, msg_type, topic, qos in node._probe_endpoints if topic not in RCLPY_TOPICS]
        return name, params, endpoints
    finally:
        close = getattr(node, "close", None)
        if callable(close):
            with contextlib.redirect_stdout(io.StringIO()):
                close()
        node.destroy_node()


#: Nodes whose endpoints depend on their ``task`` parameter (the policy node's on its policy too).
SYNC_TASK_NODES = ("coop_sim", "controller", "turn_tracker")


def _variant_label(overrides: dict) -> str:
    """How the tables name a variant a node is built in: its policy (``sync eager`` in the sync
    task), ``task sync``; '' for the only variant."""
    task, policy = overrides.get("task"), overrides.get("policy")
    if policy:
        return policy if task in (None, "turn_taking") else f"{task} {policy}"
    return f"task {task}" if task else ""


def collect_nodes() -> list[NodeInfo]:
    """Build every node of the simulated graph (the optional recorder and live view included) and read
    back what it declares.

    The policy node is built once per policy and task, and the sim, controller and turn tracker
    once per task (their parameters and topics depend on ``policy`` and ``task``).
    No parameter files are loaded; the recorder gets a throw-away ``output_dir`` (it refuses to
    start without one), which the table reports with its declared default.
    """
    import rclpy

    from coop_robot.graph import sim_graph
    from coop_robot.nodes.common import node_class
    from coop_robot.policy import policy_names
    from coop_robot.tasks import TASKS

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    nodes: list[NodeInfo] = []
    with tempfile.TemporaryDirectory(prefix="coop_robot_docs_") as tmp:
        specs = sim_graph(record_dir=str(Path(tmp) / "bag"), live_view=True)
        context = rclpy.Context()
        rclpy.init(args=[], context=context, domain_id=random.randint(100, 200))
        try:
            for spec in specs:
                cls = node_class(spec.module)
                info = NodeInfo(spec.name, f"{cls.__module__}.{cls.__name__}", spec.executable, spec.param_files)
                variants = [{}]
                if spec.name == "policy":
                    variants = [{"policy": p} for p in policy_names()] + [
                        {"policy": p, "task": "sync"} for p in policy_names("sync")]
                elif spec.name in SYNC_TASK_NODES:
                    variants = [{"task": task} for task in TASKS]
                elif spec.name == "recorder":
                    variants = [{"output_dir": spec.parameters["output_dir"]}]
                seen_in: dict[str, list[str]] = {}
                ends: dict[tuple, EndpointInfo] = {}
                for overrides in variants:
                    label = _variant_label(overrides)
                    with contextlib.redirect_stdout(io.StringIO()):  # the recorder prints its ready line
                        name, params, endpoints = _read_node(cls, context, overrides)
                    if name != spec.name:
                        raise RuntimeError(f"{info.cls} names itself {name!r}, the graph calls it {spec.name!r}")
                    for pname, p in params.items():
                        info.parameters.setdefault(pname, p)
                        seen_in.setdefault(pname, []).append(label)
                    for e in endpoints:
                        key = (e.kind, e.topic, e.msg_type, e.qos)
                        ends.setdefault(key, e)
                        ends[key].policies += (label,) if label else ()
                if len(variants) > 1:
                    everywhere = len(variants)
                    for pname, labels in seen_in.items():
                        if len(labels) < everywhere:
                            info.parameters[pname].policies = tuple(labels)
                    for e in ends.values():
                        e.policies = () if len(e.policies) == everywhere else e.policies
                info.parameters = dict(sorted(info.parameters.items()))
                info.endpoints = sorted(ends.values(), key=lambda e: (e.topic, e.kind))
                nodes.append(info)
        finally:
            rclpy.shutdown(context=context)
    return nodes


# --- the package's parameter files -------------------------------------------------------------
def file_values(node: str, files: tuple[str, ...]) -> dict[str, object]:
    """The values ``files`` (names under config/) give ``node``, by ROS 2's precedence rule.

    Entries keyed by the node's name win over ``/**`` entries whatever the file order; among
    entries of the same kind a later file wins over an earlier one.
    """
    from coop_robot.paths import config_path

    wildcard: dict[str, object] = {}
    named: dict[str, object] = {}
    for name in files:
        data = yaml.safe_load(config_path(name).read_text(encoding="utf-8")) or {}
        for key, body in data.items():
            values = (body or {}).get("ros__parameters", {}) or {}
            if key in ("/**", node, f"/{node}"):
                (named if key != "/**" else wildcard).update(values)
    return {**wildcard, **named}


# --- launch arguments ----------------------------------------------------------------------------
def launch_arguments(path: str | Path) -> list[tuple[str, str, str]]:
    """``(name, default, description)`` of a launch file's ``ARGUMENTS``, read without ``launch``.

    ``ARGUMENTS`` must be a tuple literal, optionally ``+`` names imported from
    :mod:`coop_robot.launch_support` (e.g. ``RECORD_ARGUMENTS``).
    """
    path = Path(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ARGUMENTS" for t in stmt.targets):
            return [tuple(a) for a in _eval_arguments(stmt.value, path)]
    raise ValueError(f"{path}: no top-level ARGUMENTS = (...) table")


def _eval_arguments(expr: ast.expr, path: Path) -> tuple:
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        return _eval_arguments(expr.left, path) + _eval_arguments(expr.right, path)
    if isinstance(expr, ast.Name):
        support = importlib.import_module("coop_robot.launch_support")
        if not hasattr(support, expr.id):
            raise ValueError(f"{path}: ARGUMENTS uses {expr.id!r}, which coop_robot.launch_support does not define")
        return tuple(getattr(support, expr.id))
    try:
        return tuple(ast.literal_eval(expr))
    except ValueError as exc:
        raise ValueError(f"{path}: ARGUMENTS must be tuple literals and launch_support names ({exc})") from None


# --- Markdown ------------------------------------------------------------------------------------
def _value_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if hasattr(value, "tolist"):  # numpy / array.array values from rclpy
        return _value_text(value.tolist())
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(value) -> str:
    return f"`{_cell(_value_text(value))}`"


def _same(a, b) -> bool:
    return _value_text(a) == _value_text(b) or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b))


def parameters_block(nodes: list[NodeInfo]) -> str:
    out = []
    for node in sorted(nodes, key=lambda n: n.name in OPTIONAL_NODES):  # the optional nodes last
        files = " + ".join(f"`config/{f}`" for f in node.param_files)
        set_by = file_values(node.name, node.param_files)
        out.append(f"### `{node.name}`\n")
        out.append(f"Class `{node.cls}`, executable `{node.executable}`, parameter files {files}.\n")
        out.append("| parameter | type | default | config/ sets | range | description |")
        out.append("|---|---|---|---|---|---|")
        for p in node.parameters.values():
            desc = p.description
            if p.policies:
                desc += f" (declared only with policy {', '.join(p.policies)})"
            # Only where the package's files change what the code declares.
            in_files = _code(set_by[p.name]) if p.name in set_by and not _same(set_by[p.name], p.default) else ""
            cells = [f"`{p.name}`", p.type, _code(p.default), in_files, _cell(p.range), _cell(desc)]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def topics_block(nodes: list[NodeInfo]) -> str:
    graph = [n for n in nodes if n.name != "recorder"]
    rows: dict[tuple[str, str], dict[str, list[str]]] = {}
    for node in graph:
        for e in node.endpoints:
            if e.kind == "server":
                continue
            who = node.name + (f" ({', '.join(e.policies)})" if e.policies else "")
            entry = rows.setdefault((e.topic, e.msg_type), {"pub": [], "sub": []})
            entry[e.kind].append(f"{who}: {e.qos}")
    out = ["| topic | type | published by (QoS) | subscribed by (QoS) |", "|---|---|---|---|"]
    for (topic, msg_type), entry in sorted(rows.items()):
        out.append(f"| `{topic}` | {msg_type} | {'<br>'.join(entry['pub'])} | {'<br>'.join(entry['sub'])} |")
    servers = sorted((e.topic, e.msg_type, n.name) for n in graph for e in n.endpoints if e.kind == "server")
    if servers:
        out += ["", "| service | type | server |", "|---|---|---|"]
        out += [f"| `{name}` | {srv_type} | {node} |" for name, srv_type, node in servers]
    recorder = [n for n in nodes if n.name == "recorder"]
    if recorder:
        subs = [e for e in recorder[0].endpoints if e.kind == "sub"]
        out.append("")
        out.append(f"The `recorder` (only when recording) subscribes to {len(subs)} topics by default "
                   "(its `topics` parameter): " + ", ".join(f"`{e.topic}`" for e in subs) + ".")
    out.append("")
    return "\n".join(out)


def launch_block() -> str:
    out = []
    for path in sorted(LAUNCH_DIR.glob("*.launch.py")):
        out.append(f"**`{path.name}`**\n")
        out.append("| argument | default | description |")
        out.append("|---|---|---|")
        for name, default, desc in launch_arguments(path):
            out.append(f"| `{name}` | {_code(default)} | {_cell(desc)} |")
        out.append("")
    return "\n".join(out)


def generate_blocks(nodes: list[NodeInfo] | None = None) -> dict[str, str]:
    """Marker name -> generated Markdown (each ends with a newline)."""
    nodes = collect_nodes() if nodes is None else nodes
    return {"topics": topics_block(nodes), "parameters": parameters_block(nodes), "launch-arguments": launch_block()}


def replace_blocks(text: str, blocks: dict[str, str], page: Path = PARAMETERS_PAGE) -> str:
    """``text`` with the body of every ``BEGIN/END GENERATED: name`` block replaced."""
    found = {m.group("name") for m in _MARKER.finditer(text)}
    missing = sorted(set(blocks) - found)
    if missing:
        raise ValueError(f"{page}: no marker block for {missing}; expected "
                         f"'<!-- BEGIN GENERATED: NAME -->' ... '<!-- END GENERATED: NAME -->' for each")
    unknown = sorted(found - set(blocks))
    if unknown:
        raise ValueError(f"{page}: marker blocks {unknown} are not generated by coop_robot.docs_tables "
                         f"(known: {sorted(blocks)})")
    return _MARKER.sub(lambda m: f"<!-- BEGIN GENERATED: {m.group('name')} -->\n{blocks[m.group('name')]}"
                                 f"<!-- END GENERATED: {m.group('name')} -->", text)


def page_diff(page: Path = PARAMETERS_PAGE, blocks: dict[str, str] | None = None) -> str:
    """Unified diff from the page as it is to the page as the code generates it ('' = up to date)."""
    current = page.read_text(encoding="utf-8")
    wanted = replace_blocks(current, generate_blocks() if blocks is None else blocks, page)
    return "".join(difflib.unified_diff(current.splitlines(True), wanted.splitlines(True),
                                        f"{page.name} (as it is)", f"{page.name} (from the code)"))


def _iter_lines(blocks: dict[str, str]) -> Iterator[str]:
    for name, body in blocks.items():
        yield f"<!-- BEGIN GENERATED: {name} -->\n{body}<!-- END GENERATED: {name} -->\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coop_robot.docs_tables",
                                     description="Generate the topic, parameter and launch-argument tables of "
                                                 "docs/parameters.md from the code.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the generated blocks in docs/parameters.md")
    mode.add_argument("--check", action="store_true", help="exit 1 and print a diff if the page is out of date")
    args = parser.parse_args(argv)
    blocks = generate_blocks()
    if args.write:
        text = PARAMETERS_PAGE.read_text(encoding="utf-8")
        new = replace_blocks(text, blocks)
        if new != text:
            PARAMETERS_PAGE.write_text(new, encoding="utf-8")
            print(f"updated {PARAMETERS_PAGE.relative_to(REPO)}")
        else:
            print(f"{PARAMETERS_PAGE.relative_to(REPO)} is up to date")
        return 0
    if args.check:
        diff = page_diff(blocks=blocks)
        if diff:
            sys.stdout.write(diff)
            print(f"\n{PARAMETERS_PAGE.relative_to(REPO)} disagrees with the code; run: {WRITE_COMMAND}")
            return 1
        print(f"{PARAMETERS_PAGE.relative_to(REPO)} matches the code")
        return 0
    sys.stdout.writelines(_iter_lines(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())

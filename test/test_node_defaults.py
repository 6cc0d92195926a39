"""A node started without parameter files behaves as the shipped configuration: every value in
config/<node>.yaml (and each config/world.yaml ``/**`` value the node declares) equals the
node's own declared default, in value and type.

Each node class is built in-process, with its own rclpy context on a random DDS domain and no
parameter files, one test per node (the node names and files come from coop_robot.graph).
"""

import array
import inspect

import pytest
import yaml
from conftest import free_ros_domain

rclpy = pytest.importorskip("rclpy")

from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from coop_robot.graph import recorder_node, sim_graph  # noqa: E402
from coop_robot.paths import config_path  # noqa: E402

#: The graph's description of each node (name, module, parameter files).
SPECS = {spec.name: spec for spec in [recorder_node("unused")] + sim_graph(live_view=True)}
#: Parameters a node cannot start without, given here so that the node can be built; their
#: defaults are compared by starting the node without them (it must refuse, as the YAML's does).
REQUIRED = {"recorder": {"output_dir": None}}


def node_class(module_name: str) -> type[Node]:
    module = __import__(module_name, fromlist=["_"])
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, Node) and c is not Node and c.__module__ == module_name]
    assert len(classes) == 1, f"{module_name} should define one Node subclass, has {classes}"
    return classes[0]


def shipped_values(name: str) -> tuple[dict, dict]:
    """(the node's own section of its config file, the /** section of world.yaml)."""
    files = [f for f in SPECS[name].param_files if f != "world.yaml"]
    assert len(files) == 1, files
    own = yaml.safe_load(config_path(files[0]).read_text())[name]["ros__parameters"]
    world = yaml.safe_load(config_path("world.yaml").read_text())["/**"]["ros__parameters"]
    return own, world


def typed(value):
    """A value with its types spelled out, so 1 != 1.0 != True and [1, 2] != [1.0, 2.0]."""
    if isinstance(value, (list, tuple, array.array)):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


@pytest.fixture
def build(tmp_path):
    contexts, nodes = [], []

    def make(name: str, overrides: dict | None = None) -> Node:
        context = rclpy.Context()
        rclpy.init(args=[], context=context, domain_id=free_ros_domain())
        contexts.append(context)
        values = {k: (str(tmp_path / "bag") if v is None else v) for k, v in (overrides or {}).items()}
        node = node_class(SPECS[name].module)(
            context=context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        close = getattr(node, "close", None)
        if callable(close):
            close()
        node.destroy_node()
    for context in contexts:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("name", list(SPECS))
def test_declared_defaults_equal_the_shipped_config(build, name):
    own, world = shipped_values(name)
    required = REQUIRED.get(name, {})
    node = build(name, required)
    mismatches = []
    for key, shipped in own.items():
        if key in required:
            continue
        if not node.has_parameter(key):
            mismatches.append(f"{key}: in config but not a parameter of the node")
            continue
        default = node.get_parameter(key).value
        if typed(default) != typed(shipped):
            mismatches.append(f"{key}: code default {default!r}, config {shipped!r}")
    for key, shipped in world.items():  # /** applies to every node; those that declare it must agree
        value = node.get_parameter(key).value if node.has_parameter(key) else None
        if isinstance(value, (list, tuple, array.array)):
            value = list(value)
        if node.has_parameter(key) and typed(value) != typed(shipped):
            mismatches.append(f"{key}: code default {node.get_parameter(key).value!r}, world.yaml {shipped!r}")
    assert not mismatches, f"{name}: " + "; ".join(mismatches)


def test_the_recorder_without_output_dir_refuses_to_start_like_the_shipped_config(build):
    from coop_robot.nodes.common import ParameterError

    own, _ = shipped_values("recorder")
    assert own["output_dir"] == ""
    with pytest.raises(ParameterError, match="output_dir"):
        build("recorder")

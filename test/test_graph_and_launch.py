"""One graph description drives both launch files and the pip runner; config files are well formed."""

import importlib.util
import re
import sys
import time
import types
from pathlib import Path

import pytest

from coop_robot.graph import (
    RECORDER_READY_LINE,
    GraphError,
    default_record_dir,
    robot_graph,
    sim_graph,
)
from coop_robot.params import ParamFileError, load_param_file
from coop_robot.paths import config_path, share_dir
from coop_robot.runner import node_command

REPO = Path(__file__).resolve().parents[1]


def console_scripts() -> dict[str, str]:
    text = (REPO / "setup.py").read_text()
    return dict(re.findall(r'"([\w-]+) = ([\w.]+):\w+"', text))


def test_every_config_file_is_a_valid_ros2_parameter_file():
    files = sorted((REPO / "config").glob("*.yaml"))
    assert {f.name for f in files} >= {"world.yaml", "sim.yaml", "perception.yaml", "policy.yaml",
                                       "controller.yaml", "turn_tracker.yaml", "robot.yaml", "recorder.yaml"}
    for f in files:
        load_param_file(f)


@pytest.mark.parametrize("graph", [sim_graph(turns=3, summary_json="/tmp/s.json"), robot_graph(),
                                   sim_graph(turns=3, summary_json="/tmp/s.json", record_dir="/tmp/bag"),
                                   robot_graph(record_dir="/tmp/bag")])
def test_graph_nodes_have_executables_and_config_keyed_by_node_name(graph, tmp_path):
    scripts = console_scripts()
    for spec in graph:
        assert scripts[spec.executable] == spec.module, spec
        own = load_param_file(config_path(spec.param_files[1]))
        assert spec.name in own, f"{spec.param_files[1]} is not keyed by node name {spec.name!r}"
        cmd = node_command(spec, tmp_path)
        assert cmd[1:3] == ["-m", spec.module] and f"__node:={spec.name}" in cmd


def test_graph_rejects_bad_arguments():
    with pytest.raises(GraphError, match="policy"):
        sim_graph(policy="telepathy")
    with pytest.raises(GraphError, match="turns"):
        sim_graph(turns=-1)
    with pytest.raises(GraphError, match="oracle"):
        robot_graph(policy="oracle")
    with pytest.raises(GraphError, match="absolute"):
        robot_graph(color_topic="camera/image")


def test_recording_adds_a_recorder_started_first_and_stopped_last(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain = sim_graph(turns=3)
    graph = sim_graph(turns=3, record_dir="bag", record_images=True)
    rec = graph[0]
    assert rec.name == "recorder" and [s.name for s in graph[1:]] == [s.name for s in plain]
    assert rec.ready_line == RECORDER_READY_LINE and rec.stops_last and not rec.ends_session
    assert rec.parameters == {"output_dir": str(tmp_path / "bag"), "record_images": True, "use_sim_time": True}
    # the other nodes start together once the recorder is ready (the sim waits for perception; a
    # node held back until the recorder has the sim's clock would miss the partner's first turn)
    assert not any(s.start_after for s in graph[1:])
    assert not any(s.stops_last or s.ready_line or s.start_after for s in plain)

    robot = robot_graph(joint_states_topic="/franka/joint_states", trajectory_topic="/fr3/joint_trajectory",
                        record_dir=str(tmp_path / "r"), extra_param_files=["/cell.yaml"])
    rec = robot[0]
    assert rec.name == "recorder" and "use_sim_time" not in rec.parameters
    assert dict(rec.remappings)["/joint_states"] == "/franka/joint_states"
    assert dict(rec.remappings)["/panda_arm_controller/joint_trajectory"] == "/fr3/joint_trajectory"
    assert rec.param_files[-2:] == ("robot.yaml", "/cell.yaml")


def test_default_record_dir_is_timestamped_under_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    when = time.mktime((2025, 3, 4, 5, 6, 7, 0, 0, -1))
    assert default_record_dir(when) == str(tmp_path / "coop_robot_20250304_050607")


def test_bad_parameter_files_are_rejected_with_the_reason(tmp_path):
    cases = {
        "missing.yaml": None,
        "notyaml.yaml": "a: [1, 2\n",
        "flat.yaml": "velocity_scale: 0.5\n",
        "nan.yaml": "controller:\n  ros__parameters:\n    velocity_scale: .nan\n",
        "nested_dict_value.yaml": "controller:\n  ros__parameters:\n    target_m: {x: 1}\n    extra: null\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(ParamFileError) as err:
            load_param_file(path)
        assert str(path) in str(err.value)


# --- launch files, executed against stand-ins that record the documented launch API calls ----------

class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _install_launch_stubs(monkeypatch, values):
    launch = types.ModuleType("launch")
    launch.LaunchDescription = _Recorder
    actions = types.ModuleType("launch.actions")
    for name in ("DeclareLaunchArgument", "OpaqueFunction", "RegisterEventHandler", "EmitEvent"):
        setattr(actions, name, type(name, (_Recorder,), {}))
    subs = types.ModuleType("launch.substitutions")

    class LaunchConfiguration(_Recorder):
        def perform(self, context):
            return context[self.args[0]]

    subs.LaunchConfiguration = LaunchConfiguration
    handlers = types.ModuleType("launch.event_handlers")
    handlers.OnProcessExit = type("OnProcessExit", (_Recorder,), {})
    events = types.ModuleType("launch.events")
    events.Shutdown = type("Shutdown", (_Recorder,), {})
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Recorder,), {})
    ament = types.ModuleType("ament_index_python.packages")
    ament.get_package_share_directory = lambda pkg: str(share_dir())
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                      "launch.event_handlers": handlers, "launch.events": events, "launch_ros": launch_ros,
                      "launch_ros.actions": ros_actions, "ament_index_python.packages": ament}.items():
        monkeypatch.setitem(sys.modules, name, mod)


def _run_launch_file(monkeypatch, filename, overrides):
    _install_launch_stubs(monkeypatch, overrides)
    spec = importlib.util.spec_from_file_location(filename.replace(".", "_"), REPO / "launch" / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    entities = ld.args[0]
    declared = {e.args[0]: e.kwargs for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    for kw in declared.values():
        assert kw["description"] and "default_value" in kw
    context = {name: kw["default_value"] for name, kw in declared.items()}
    context.update(overrides)
    opaque = [e for e in entities if type(e).__name__ == "OpaqueFunction"][0]
    return declared, opaque.kwargs["function"](context)


def test_sim_launch_builds_the_same_graph_as_the_runner(monkeypatch):
    declared, actions = _run_launch_file(monkeypatch, "sim.launch.py", {"policy": "oracle", "turns": "5", "gui": "false"})
    assert set(declared) >= {"policy", "partner", "gui", "use_sim_time", "seed", "turns"}
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    expected = sim_graph(policy="oracle", turns=5)
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in expected]
    for node, spec in zip(nodes, expected):
        assert node.kwargs["package"] == "coop_robot" and node.kwargs["executable"] == spec.executable
        files = [p for p in node.kwargs["parameters"] if isinstance(p, str)]
        assert all(Path(f).is_file() for f in files)
        assert node.kwargs["parameters"][-1] == spec.parameters
    # turns > 0: the tracker's exit shuts the launch down
    handlers = [a for a in actions if type(a).__name__ == "RegisterEventHandler"]
    assert len(handlers) == 1
    assert handlers[0].args[0].kwargs["target_action"] is nodes[-1]


def test_robot_launch_remaps_camera_and_joint_topics(monkeypatch):
    _, actions = _run_launch_file(monkeypatch, "robot.launch.py", {
        "color_topic": "/cam/color", "depth_topic": "/cam/depth", "camera_info_topic": "/cam/info",
        "trajectory_topic": "/arm/joint_trajectory"})
    nodes = {a.kwargs["name"]: a for a in actions if type(a).__name__ == "Node"}
    assert "coop_sim" not in nodes
    remaps = dict(nodes["perception"].kwargs["remappings"])
    assert remaps["/camera/color/image_raw"] == "/cam/color" and remaps["/camera/depth/image_rect_raw"] == "/cam/depth"
    assert nodes["controller"].kwargs["parameters"][-1]["trajectory_topic"] == "/arm/joint_trajectory"


@pytest.mark.parametrize("filename", ["sim.launch.py", "robot.launch.py"])
def test_launch_record_arguments_add_the_recorder(monkeypatch, tmp_path, filename):
    monkeypatch.chdir(tmp_path)
    declared, actions = _run_launch_file(monkeypatch, filename, {})
    assert {"record", "record_dir", "record_images"} <= set(declared)
    assert declared["record"]["default_value"] == "false"
    assert "recorder" not in [a.kwargs["name"] for a in actions if type(a).__name__ == "Node"]

    _, actions = _run_launch_file(monkeypatch, filename, {"record": "true", "record_images": "true"})
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    assert nodes[0].kwargs["name"] == "recorder" and nodes[0].kwargs["executable"] == "recorder_node"
    params = nodes[0].kwargs["parameters"][-1]
    assert Path(params["output_dir"]).parent == tmp_path
    assert re.fullmatch(r"coop_robot_\d{8}_\d{6}", Path(params["output_dir"]).name)
    assert params["record_images"] is True

    _, actions = _run_launch_file(monkeypatch, filename, {"record": "true", "record_dir": str(tmp_path / "b")})
    assert actions[0].kwargs["parameters"][-1]["output_dir"] == str(tmp_path / "b")
    with pytest.raises(ValueError, match="record:=true"):
        _run_launch_file(monkeypatch, filename, {"record_dir": str(tmp_path / "b")})
    with pytest.raises(ValueError, match="record"):
        _run_launch_file(monkeypatch, filename, {"record": "perhaps"})


def test_launch_rejects_a_bad_boolean(monkeypatch):
    with pytest.raises(ValueError, match="gui"):
        _run_launch_file(monkeypatch, "sim.launch.py", {"gui": "maybe"})

"""One graph description drives both launch files and the pip runner; config files are well formed.

The launch files themselves are tested in test_launch.py."""

import re
import time
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
from coop_robot.paths import config_path
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
                                   robot_graph(record_dir="/tmp/bag"), sim_graph(live_view=True),
                                   robot_graph(live_view=True)])
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
    assert not any(s.stops_last or s.ready_line for s in graph[1:] + plain)

    robot = robot_graph(joint_states_topic="/franka/joint_states", trajectory_topic="/fr3/joint_trajectory",
                        record_dir=str(tmp_path / "r"), extra_param_files=["/cell.yaml"])
    rec = robot[0]
    assert rec.name == "recorder" and "use_sim_time" not in rec.parameters
    assert dict(rec.remappings)["/joint_states"] == "/franka/joint_states"
    assert dict(rec.remappings)["/panda_arm_controller/joint_trajectory"] == "/fr3/joint_trajectory"
    assert rec.param_files[-2:] == ("robot.yaml", "/cell.yaml")


def test_live_view_is_optional_and_runs_last_with_the_graphs_clock_and_topics():
    assert "live_view" not in [s.name for s in sim_graph()] + [s.name for s in robot_graph()]
    sim = sim_graph(turns=3, live_view=True)
    view = sim[-1]
    assert [s.name for s in sim[:-1]] == [s.name for s in sim_graph(turns=3)]
    assert view.name == "live_view" and view.param_files == ("world.yaml", "live_view.yaml")
    assert view.parameters == {"use_sim_time": True} and not (view.ends_session or view.stops_last or view.ready_line)
    served = sim_graph(live_view=True, foxglove_port=0)[-1]
    assert served.parameters == {"use_sim_time": True, "foxglove": True, "foxglove_port": 0}
    robot = robot_graph(joint_states_topic="/franka/joint_states", live_view=True, extra_param_files=["/cell.yaml"])
    assert robot[-1].name == "live_view" and dict(robot[-1].remappings) == {"/joint_states": "/franka/joint_states"}
    assert robot[-1].param_files[-2:] == ("robot.yaml", "/cell.yaml")
    with pytest.raises(GraphError, match="foxglove_port needs live_view"):
        sim_graph(foxglove_port=8765)
    with pytest.raises(GraphError, match="foxglove_port must be an integer 0..65535"):
        robot_graph(live_view=True, foxglove_port=70000)


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

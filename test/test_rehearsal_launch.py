"""rehearsal.launch.py starts robot.launch.py's graph unchanged, plus the simulated cell, and prints
the ground-truth check when the cell has closed its log (through ``launch_standin``)."""

from pathlib import Path

import launch_standin
import pytest
from test_launch import PREFIX, REPO, evaluate, params_of, robot_arguments
from test_rehearsal import TWO_TURNS, _summary, _write_log

from coop_robot.graph import rehearsal_graph
from coop_robot.runner import node_command


@pytest.fixture(autouse=True)
def launch_domain(monkeypatch, ros_domain):
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain))


def _files(cmd: list[str]) -> list[str]:
    return [Path(p).read_text() for p in params_of(cmd)]


def test_rehearsal_launch_runs_robot_launchs_nodes_unchanged_plus_the_cell(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = robot_arguments(tmp_path)
    robot = evaluate(monkeypatch, "robot.launch.py", args)
    rehearsal = evaluate(monkeypatch, "rehearsal.launch.py",
                         {**args, "partner": "fast", "seed": "2", "truth_log": str(tmp_path / "t.jsonl")})
    assert set(rehearsal.declared) == set(robot.declared) | {"partner", "seed", "truth_log", "gui"}
    assert all(kw["description"] for kw in rehearsal.declared.values())
    names = [n.kwargs["name"] for n in robot.nodes]
    assert [n.kwargs["name"] for n in rehearsal.nodes] == names + ["coop_sim"]
    for a, b in zip(robot.nodes, rehearsal.nodes):   # same executables, arguments, files and overrides
        ca, cb = a.command(PREFIX), b.command(PREFIX)
        assert [x for x in ca if x not in params_of(ca)] == [x for x in cb if x not in params_of(cb)]
        assert _files(ca) == _files(cb)
    # the cell: what coop-robot rehearse starts (coop_robot.graph.rehearsal_graph)
    cell = rehearsal.nodes[-1].command(PREFIX)
    spec = rehearsal_graph(str(tmp_path / "t.jsonl"), partner=str((REPO / "config/partners/fast.yaml").resolve()),
                           seed=2, policy="mirror", color_topic="/cam/color", depth_topic="/cam/depth",
                           camera_info_topic="/cam/info", trajectory_topic=args["trajectory_topic"],
                           joint_states_topic="/franka/joint_states", turns=4, summary_json=args["summary_json"],
                           extra_param_files=[args["params_file"]], record_dir=args["record_dir"])[-1]
    runner = node_command(spec, tmp_path / "runner_params")
    assert [x for x in cell[1:] if x not in params_of(cell)] == [x for x in runner[3:] if x not in params_of(runner)]
    assert _files(cell) == _files(runner)
    assert "mode: cell" in _files(cell)[-1]


def test_the_rehearsal_cell_file_is_the_default_and_the_check_is_printed_after_the_cell_exits(
        monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    truth, summary = tmp_path / "truth.jsonl", tmp_path / "summary.json"
    _write_log(truth, TWO_TURNS)
    import json

    summary.write_text(json.dumps(_summary([(0.79, 102.8), (0.88, 108.9)])))
    launched = evaluate(monkeypatch, "rehearsal.launch.py",
                        {"turns": "2", "truth_log": str(truth), "summary_json": str(summary)})
    cell = launched.node("coop_sim").command(PREFIX)
    assert any(p.endswith("config/rehearsal_cell.yaml") for p in params_of(cell))
    ctx = launched.context
    launched.exit_handler(launched.node("turn_tracker"))(launch_standin.Exited(0), ctx)   # the session ends
    assert "rehearsal check" not in capsys.readouterr().out
    launched.exit_handler(launched.node("coop_sim"))(launch_standin.Exited(-2), ctx)      # the cell closed its log
    out = capsys.readouterr().out
    assert "rehearsal check: PASS" in out and "2/2 turns matched" in out

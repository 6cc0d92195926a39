"""Every node executable refuses a bad parameter file the same way: exit status 2 and one line
on stderr naming the file (or parameter) and the problem, never a traceback.

Each case starts the real node process (``python -m coop_robot.nodes.<node> --ros-args
--params-file bad.yaml``) on its own DDS domain.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_ros_domain, release_ros_domain

from coop_robot.nodes.common import ParameterError, param_files_in_args
from coop_robot.params import ParamFileError

REPO = Path(__file__).resolve().parents[1]

#: node name -> (module, a parameter of the wrong type, a parameter out of its range)
NODES = {
    "coop_sim": ("sim_node", ("seed", '"three"'), ("real_time_factor", "500.0")),
    "perception": ("perception_node", ("min_area_px", '"many"'), ("pairing_window_s", "99.0")),
    "policy": ("policy_node", ("rate_hz", '"fast"'), ("rate_hz", "5000.0")),
    "controller": ("controller_node", ("velocity_scale", '"slow"'), ("velocity_scale", "5.0")),
    "turn_tracker": ("turn_tracker_node", ("stats_window", '"all"'), ("stats_window", "0")),
    "recorder": ("recorder_node", ("progress_period_s", '"often"'), ("progress_period_s", "-1.0")),
    "live_view": ("live_view_node", ("rate_hz", '"fast"'), ("foxglove_port", "70000")),
}


def error_lines(stderr: str) -> list[str]:
    """stderr without blank lines and PyBullet's import banner (printed by every sim start)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("pybullet build time")]


def _params(node: str, body: str) -> str:
    return f"{node}:\n  ros__parameters:\n{body}"


#: case -> (file text for a node name or None for no file, what the message must say)
CASES = {
    "missing": (None, "does not exist"),
    "not_yaml": (lambda node: f"{node}: [unclosed\n", "not valid YAML"),
    "not_ros_layout": (lambda node: f"{node}:\n  seed: 1\n", "ros__parameters"),
    "nan": (lambda node: _params(node, "    some_gain: .nan\n"), "must be finite"),
    "unsupported_value": (lambda node: _params(node, "    some_list: [[1, 2], [3]]\n"), "unsupported value"),
    "mixed_list": (lambda node: _params(node, "    some_list: [1, true]\n"), "mixes types"),
    "wrong_type": ("wrong_type", None),
    "out_of_range": ("out_of_range", None),
}


def run_with(tmp_path: Path, node: str, case: str) -> tuple[int, str, Path]:
    module, wrong_type, out_of_range = NODES[node]
    text, _ = CASES[case]
    path = tmp_path / f"{case}.yaml"
    if case in ("wrong_type", "out_of_range"):
        name, value = wrong_type if case == "wrong_type" else out_of_range
        path.write_text(_params(node, f"    {name}: {value}\n"))
    elif text is not None:
        path.write_text(text(node))
    domain = free_ros_domain()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", f"coop_robot.nodes.{module}", "--ros-args", "--params-file", str(path)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        release_ros_domain(domain)
    return proc.returncode, proc.stderr, path


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("node", list(NODES))
def test_bad_parameter_file_exits_2_with_one_line_naming_file_and_problem(tmp_path, node, case):
    code, stderr, path = run_with(tmp_path, node, case)
    lines = error_lines(stderr)
    assert code == 2, stderr
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("[coop_robot] "), line
    assert str(path) in line, line
    _, expected = CASES[case]
    if case in ("wrong_type", "out_of_range"):
        module, wrong_type, out_of_range = NODES[node]
        name = (wrong_type if case == "wrong_type" else out_of_range)[0]
        assert f"parameter '{name}'" in line, line
        assert ("type" if case == "wrong_type" else "range") in line.lower() or ">=" in line or "<=" in line, line
    else:
        assert expected in line, line


def test_a_file_rcl_refuses_is_reported_in_one_line_too(tmp_path):
    # [1, 2.5] passes coop_robot.params (numbers) but rcl wants one element type per sequence:
    # the failure comes from rclpy.init and is still one line and exit status 2.
    path = tmp_path / "ints_and_doubles.yaml"
    path.write_text(_params("turn_tracker", "    some_list: [1, 2.5]\n"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               ROS_DOMAIN_ID=str(free_ros_domain()))
    proc = subprocess.run([sys.executable, "-m", "coop_robot.nodes.turn_tracker_node", "--ros-args",
                           "--params-file", str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and str(path) in lines[0] and "same type" in lines[0], proc.stderr


def test_param_files_are_read_from_the_ros_args_sections_only():
    argv = ["prog", "--params-file", "not_ros.yaml", "--ros-args", "-p", "a:=1", "--params-file", "a.yaml",
            "--", "--params-file", "user.yaml", "--ros-args", "--params-file", "b.yaml"]
    assert param_files_in_args(argv) == ["a.yaml", "b.yaml"]
    with pytest.raises(ParamFileError, match="--params-file must be followed"):
        param_files_in_args(["prog", "--ros-args", "--params-file"])


def test_parameter_error_carries_the_parameter_and_node_for_the_file_lookup():
    from coop_robot.nodes.common import _where_set

    exc = ParameterError("parameter 'seed' must be int, got 'x'")
    exc.parameter, exc.node_fqn = "seed", "/ns/coop_sim"
    files = {
        "world.yaml": {"/**": {"ros__parameters": {"seed": 1}}},
        "sim.yaml": {"/*/coop_sim": {"ros__parameters": {"nested": {"seed": 2}, "seed": 3}}},
        "other.yaml": {"perception": {"ros__parameters": {"seed": 4}}},
    }
    assert _where_set(exc, files) == " (set in sim.yaml)"
    del files["sim.yaml"]
    assert _where_set(exc, files) == " (set in world.yaml)"
    assert _where_set(exc, {"other.yaml": files["other.yaml"]}) == ""

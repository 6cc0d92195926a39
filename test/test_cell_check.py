"""``coop-robot check`` against the simulated lab cell: passes on the rehearsal cell, fails naming
the cause for a missing topic, depth that is not aligned and a zone out of view; and the checks
on plain values."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ros_env, wait_for

from coop_robot.cell_check import (
    CellParameters,
    Endpoint,
    Observation,
    Stream,
    check_cell,
    format_rows,
)
from coop_robot.cli import main
from coop_robot.graph import CELL_TOPICS

REPO = Path(__file__).resolve().parents[1]
CELL = REPO / "config" / "rehearsal_cell.yaml"
REALSENSE = ["--color-topic", CELL_TOPICS["color_topic"], "--depth-topic", CELL_TOPICS["depth_topic"],
             "--camera-info-topic", CELL_TOPICS["camera_info_topic"]]


@pytest.fixture
def cell(tmp_path, ros_domain):
    """The simulated cell alone (its world held still: nothing of the graph runs to start it)."""
    override = tmp_path / "cell_override.yaml"
    override.write_text(f"coop_sim:\n  ros__parameters:\n    mode: cell\n    truth_log: {tmp_path / 'truth.jsonl'}\n"
                        "    cell_start_timeout_s: 3600.0\n")
    log_path = tmp_path / "cell.log"
    files = [REPO / "config" / f for f in ("world.yaml", "sim.yaml", "robot.yaml")] + [CELL, override]
    cmd = [sys.executable, "-m", "coop_robot.nodes.sim_node", "--ros-args"]
    for f in files:
        cmd += ["--params-file", str(f)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=ros_env(ros_domain), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_for(lambda: "ready as a lab cell" in log_path.read_text() or proc.poll() is not None, 120,
                 "the cell to start")
        assert proc.poll() is None, log_path.read_text()
        yield ros_domain, proc, log_path
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_check(capsys, domain: int, *args: str) -> tuple[int, str]:
    code = main(["check", "--domain-id", str(domain), "--duration-s", "3", *args])
    return code, capsys.readouterr().out


def test_check_passes_on_the_rehearsal_cell_and_fails_naming_each_cause(cell, capsys, tmp_path):
    domain, proc, log_path = cell
    # The cell publishes what a RealSense and ros2_control would, and nothing of a simulator.
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        node = rclpy.create_node("topic_lister", context=context)
        topics = wait_for(lambda: dict(node.get_topic_names_and_types()).get(CELL_TOPICS["depth_topic"]) and
                          dict(node.get_topic_names_and_types()), 30, "the cell's topics")
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert "/clock" not in topics and not any(t.startswith("/sim/") for t in topics), sorted(topics)

    code, out = run_check(capsys, domain, "--params-file", str(CELL), *REALSENSE)
    assert code == 0, out
    assert "cell check: PASS" in out and "16UC1" in out

    code, out = run_check(capsys, domain, "--params-file", str(CELL))   # robot.launch.py's default topics
    assert code == 1
    assert "no publisher on /camera/color/image_raw" in out

    code, out = run_check(capsys, domain, "--params-file", str(CELL), *REALSENSE[:2],
                          "--depth-topic", "/camera/camera/depth/image_rect_raw", *REALSENSE[4:])
    assert code == 1
    assert "depth is 160x120 but colour 320x240: not aligned" in out

    moved = tmp_path / "zone_behind.yaml"
    moved.write_text("/**:\n  ros__parameters:\n    zone_min_m: [0.45, 1.20, 0.626]\n"
                     "    zone_max_m: [0.75, 1.60, 0.926]\n")
    code, out = run_check(capsys, domain, "--params-file", str(CELL), "--params-file", str(moved), *REALSENSE)
    assert code == 1
    assert "zone in view" in out and "behind the camera" in out
    assert proc.poll() is None, log_path.read_text()


# --- the checks on plain values ---------------------------------------------------------------------

def _params(**changes) -> CellParameters:
    values = dict(camera_position_m=[0.60, 0.95, 1.45],
                  camera_orientation_xyzw=[-0.009343, 0.887718, -0.460268, 0.004844],
                  zone_min_m=[0.45, -0.20, 0.626], zone_max_m=[0.75, 0.20, 0.926], robot_base_m=[0.0, 0.0, 0.626],
                  home_rad=[0.0, -0.6, 0.0, -2.0, 0.0, 1.9, 0.785],
                  joint_names=[f"panda_joint{i}" for i in range(1, 8)])
    values.update(changes)
    return CellParameters(**values)


def _good() -> Observation:
    pub = [Endpoint("camera", "sensor_msgs/msg/Image", False, False)]
    stamps = [1_000_000_000 + i * 33_333_333 for i in range(90)]
    k = [277.0, 0.0, 159.5, 0.0, 277.0, 119.5, 0.0, 0.0, 1.0]
    streams = {
        "color": Stream("/c", pub, 90, 0.0, 3.0, stamps, [0.03] * 90, (320, 240), "rgb8"),
        "depth": Stream("/d", pub, 90, 0.0, 3.0, list(stamps), [0.03] * 90, (320, 240), "16UC1"),
        "camera_info": Stream("/i", [Endpoint("camera", "sensor_msgs/msg/CameraInfo", False, False)], 90, 0.0, 3.0,
                              list(stamps), [0.03] * 90, (320, 240), k=k),
        "joint_states": Stream("/joint_states", [Endpoint("jsb", "sensor_msgs/msg/JointState", True, False)], 300,
                               0.0, 3.0, [], [0.002] * 300,
                               names=[f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1"]),
        "trajectory": Stream("/t", [Endpoint("jtc", "trajectory_msgs/msg/JointTrajectory", True, False)]),
    }
    return Observation(streams, 3.0)


def _failed(obs: Observation, params: CellParameters | None = None) -> dict[str, str]:
    return {r.check: r.detail for r in check_cell(obs, params or _params()) if not r.passed}


def test_a_good_cell_passes_every_check():
    rows = check_cell(_good(), _params())
    assert all(r.passed for r in rows), format_rows(rows)
    assert format_rows(rows).endswith("cell check: PASS")


def test_each_problem_fails_its_own_check_naming_the_cause():
    obs = _good()
    obs.streams["joint_states"].endpoints = [Endpoint("jsb", "sensor_msgs/msg/JointState", False, False)]
    assert "best-effort" in _failed(obs)["topic /joint_states"]

    obs = _good()
    obs.streams["color"].endpoints = [Endpoint("camera", "sensor_msgs/msg/CompressedImage", False, False)]
    assert "expected sensor_msgs/msg/Image" in _failed(obs)["topic /c"]

    obs = _good()
    obs.streams["color"].first_s, obs.streams["color"].last_s = 0.0, 9.0
    assert "needs >= 20 Hz" in _failed(obs)["rate /c"]

    obs = _good()
    obs.streams["depth"].stamps_ns = [t + 5_000_000 for t in obs.streams["depth"].stamps_ns]
    assert "5.0 ms away" in _failed(obs)["colour/depth stamps paired"]

    obs = _good()
    obs.streams["color"].ages_s = [-2.0] * 90
    assert "ahead of this machine's clock" in _failed(obs)["clocks agree"]

    obs = _good()
    obs.streams["joint_states"].names = ["fr3_joint1"]
    assert "does not name" in _failed(obs)["trajectory joints in /joint_states"]

    failed = _failed(_good(), _params(home_rad=[-0.087, 0.53, -0.046, -1.952, 0.023, 2.415, 0.785]))  # EE in the zone
    assert set(failed) == {"home pose outside the zone"}
    assert "inside the zone" in failed["home pose outside the zone"]


def test_a_zone_partly_out_of_the_image_names_its_corners():
    failed = _failed(_good(), _params(zone_max_m=[1.50, 0.20, 0.926]))
    assert set(failed) == {"zone in view"}
    assert "[1.50, -0.20, 0.63] at pixel (-10, 119)" in failed["zone in view"]


def test_check_refuses_a_missing_cell_file(capsys):
    with pytest.raises(SystemExit):
        main(["check"])
    assert main(["check", "--params-file", "/nonexistent/cell.yaml", "--domain-id", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err


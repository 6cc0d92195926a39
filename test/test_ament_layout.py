"""The package installs in the standard ament_python layout that `ros2 run` / `ros2 launch` expect."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXECUTABLES = {"sim_node", "perception_node", "policy_node", "controller_node", "turn_tracker_node",
               "recorder_node", "live_view_node", "coop-robot"}


def test_setup_install_puts_executables_in_lib_and_data_in_share(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv*", ".git", "build", "*.egg-info", "__pycache__"))
    prefix = tmp_path / "install"
    # What colcon's ament_python build does: setup.py install honouring setup.cfg.
    res = subprocess.run(
        [sys.executable, "setup.py", "-q", "install", "--prefix", str(prefix),
         "--single-version-externally-managed", "--record", str(tmp_path / "record.txt")],
        cwd=src, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lib = prefix / "lib" / "coop_robot"
    assert EXECUTABLES <= {p.name for p in lib.iterdir()}
    share = prefix / "share" / "coop_robot"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "coop_robot").is_file()
    assert (share / "package.xml").is_file()
    assert {"sim.launch.py", "robot.launch.py"} <= {p.name for p in (share / "launch").iterdir()}
    assert {p.name for p in (REPO / "config").glob("*.yaml")} <= {p.name for p in (share / "config").iterdir()}
    for sub in ("partners", "models", "training", "training/scaling"):
        assert {p.name for p in (REPO / "config" / sub).glob("*.yaml")} == {
            p.name for p in (share / "config" / sub).iterdir() if p.is_file()}
    # the RViz view of the live view (docs/lab_deployment.md: rviz2 -d share/coop_robot/config/rviz/...)
    assert (share / "config" / "rviz" / "coop_robot.rviz").is_file()

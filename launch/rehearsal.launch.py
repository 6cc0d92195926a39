"""Hardware-mode rehearsal: robot.launch.py's graph, unchanged, against the simulator posing as a lab cell.

    ros2 launch coop_robot rehearsal.launch.py turns:=20 truth_log:=truth.jsonl

Every argument of robot.launch.py means the same here and builds the same graph
(coop_robot.graph.robot_graph, through coop_robot.launch_support.robot_graph_kwargs); this file
adds the simulated cell (coop_robot.graph.cell_node: RealSense and ros2_control topics only,
remapped onto the topic arguments, wall clock, noise and latency, no ground truth in the graph)
and, when the session ends, prints the graph's perception-scored gaps next to the cell's ground
truth (coop_robot.rehearsal). ``params_file`` defaults to the package's config/rehearsal_cell.yaml,
which the cell renders from as well. ``coop-robot rehearse`` runs the same thing without ``launch``.
"""

import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from coop_robot.graph import rehearsal_graph
from coop_robot.launch_support import (
    ROBOT_ARGUMENTS,
    check_partner,
    parse_bool,
    parse_int,
    robot_graph_kwargs,
    to_launch_actions,
)
from coop_robot.partner.profile import resolve_profile_path
from launch import LaunchDescription

ARGUMENTS = ROBOT_ARGUMENTS + (
    ("partner", "typical", "The simulated person in the cell: typical, fast, slow, hesitant, erratic, or a YAML file"),
    ("seed", "0", "Random seed of the simulated person"),
    ("truth_log", "", "Where the cell writes its ground truth (JSON lines); default ./coop_robot_truth_<pid>.jsonl"),
    ("gui", "false", "Open the PyBullet window of the simulated cell"),
)


def _print_check(summary_json: str, truth_log: str) -> None:
    import json

    from coop_robot.rehearsal import compare, format_check, score_truth_log

    try:
        with open(summary_json, encoding="utf-8") as fh:
            perception = json.load(fh)
        print(format_check(compare(perception, score_truth_log(truth_log))), flush=True)
    except (OSError, ValueError) as exc:  # the session was interrupted before the tracker wrote its summary
        print(f"rehearsal: no ground-truth check ({exc})", flush=True)


def _graph(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    share = get_package_share_directory("coop_robot")
    robot = robot_graph_kwargs(arg)
    if not robot["extra_param_files"]:
        robot["extra_param_files"] = [os.path.join(share, "config", "rehearsal_cell.yaml")]
    if not robot["summary_json"]:  # the check needs the graph's summary
        robot["summary_json"] = os.path.join(tempfile.mkdtemp(prefix="coop_robot_rehearsal_"), "summary.json")
    truth_log = os.path.abspath(arg("truth_log") or f"coop_robot_truth_{os.getpid()}.jsonl")
    partner = arg("partner")
    check_partner(partner)
    specs = rehearsal_graph(truth_log, partner=str(resolve_profile_path(partner).resolve()),
                            seed=parse_int(arg("seed"), "seed"), gui=parse_bool(arg("gui"), "gui"), **robot)
    after = {"coop_sim": lambda: _print_check(robot["summary_json"], truth_log)} if robot["turns"] else None
    return to_launch_actions(specs, share, after_exit=after)


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=desc) for name, default, desc in ARGUMENTS]
        + [OpaqueFunction(function=_graph)]
    )

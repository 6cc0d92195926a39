"""Simulated turn-taking session: PyBullet sim, perception, policy, controller, turn tracker.

    ros2 launch coop_robot sim.launch.py policy:=mirror partner:=typical turns:=20 summary_json:=summary.json
    ros2 launch coop_robot sim.launch.py task:=sync policy:=eager turns:=10 window_s:=0.75

Add ``record:=true`` (optionally ``record_dir:=DIR record_images:=true``) to record the session to a
rosbag2 (MCAP) directory, by default ``./coop_robot_<YYYYmmdd_HHMMSS>``. ``live_view:=true`` adds the
live view (markers on ``/coop_robot/markers``; open RViz with
``rviz2 -d $(ros2 pkg prefix coop_robot)/share/coop_robot/config/rviz/coop_robot.rviz``).

The same graph (coop_robot.graph.sim_graph), parameter files and command lines as ``coop-robot sim``:
launch arguments reach the nodes through a parameter file keyed by each node's name (see
coop_robot.launch_support). A node that dies ends the launch with a non-zero status.
"""

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from coop_robot.graph import sim_graph
from coop_robot.launch_support import (
    LIVE_VIEW_ARGUMENTS,
    RECORD_ARGUMENTS,
    check_partner,
    parse_bool,
    parse_float,
    parse_int,
    parse_record,
    parse_task,
    to_launch_actions,
)
from coop_robot.partner.profile import resolve_profile_path
from launch import LaunchDescription

ARGUMENTS = (
    ("policy", "mirror", "Turn-taking policy: mirror, reactive, eager, or oracle (oracle reads sim ground "
                         "truth; benchmarks only)"),
    ("partner", "typical", "Simulated partner profile: typical, fast, slow, hesitant, erratic, or a YAML file path"),
    ("gui", "false", "Open the PyBullet GUI window (the sim then runs in real time)"),
    ("use_sim_time", "true", "Run perception, policy, controller and tracker on the sim's /clock"),
    ("seed", "0", "Random seed of the simulated partner"),
    ("task", "turn_taking", "Interaction task: turn_taking, or sync (synchronous joint action: after a cue the "
                            "robot and the person each reach their own target; policies eager, reactive, oracle, "
                            "mirror)"),
    ("window_s", "", "task:=sync only: the success window (s); '' = config/sync.yaml's sync_window_s"),
    ("turns", "0", "End the launch after this many robot turns (task:=sync: trials; 0 = run until Ctrl-C)"),
    ("summary_json", "", "Write the session summary JSON here when the session ends"),
    ("real_time_factor", "", "Simulated seconds per wall second (0 = as fast as perception keeps up); "
                             "'' = config/sim.yaml's value"),
    ("params_file", "", "Extra ROS 2 parameter file applied after the package's (node-specific settings under the "
                        "node's name, e.g. controller: velocity_scale)"),
) + RECORD_ARGUMENTS + LIVE_VIEW_ARGUMENTS


def _graph(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    record_dir, record_images = parse_record(arg("record"), arg("record_dir"), arg("record_images"))
    partner = arg("partner")
    check_partner(partner)
    specs = sim_graph(
        policy=arg("policy"),
        partner=str(resolve_profile_path(partner).resolve()),
        partner_label=partner,
        seed=parse_int(arg("seed"), "seed", minimum=-(2**31)),
        turns=parse_int(arg("turns"), "turns"),
        gui=parse_bool(arg("gui"), "gui"),
        use_sim_time=parse_bool(arg("use_sim_time"), "use_sim_time"),
        summary_json=arg("summary_json"),
        record_dir=record_dir,
        record_images=record_images,
        live_view=parse_bool(arg("live_view"), "live_view"),
        real_time_factor=parse_float(arg("real_time_factor"), "real_time_factor") if arg("real_time_factor") else None,
        extra_param_files=[arg("params_file")] if arg("params_file") else [],
        task=parse_task(arg("task")),
        window_s=parse_float(arg("window_s"), "window_s") if arg("window_s") else None,
    )
    return to_launch_actions(specs, get_package_share_directory("coop_robot"))


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=desc) for name, default, desc in ARGUMENTS]
        + [OpaqueFunction(function=_graph)]
    )

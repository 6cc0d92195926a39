"""Lab robot session: perception, policy, controller and turn tracker against real hardware.

Start your camera driver (RGB-D, depth aligned to colour) and the arm's ros2_control joint
trajectory controller first, then for example (Intel RealSense + Franka):

    ros2 launch coop_robot robot.launch.py \\
        color_topic:=/camera/camera/color/image_raw \\
        depth_topic:=/camera/camera/aligned_depth_to_color/image_raw \\
        camera_info_topic:=/camera/camera/color/camera_info \\
        trajectory_topic:=/fr3_arm_controller/joint_trajectory

Set the camera extrinsics and zone for your cell in a copy of config/robot.yaml
(``params_file:=/path/to/my_cell.yaml``; settings of one node go under that node's name, e.g.
``controller: ros__parameters: velocity_scale: 0.2`` -- the launch refuses a ``/**`` setting that a
node-named entry would silently override). ``record:=true`` records the session (the interaction
topics, under the remapped names) to a rosbag2 (MCAP) directory, ``record_dir:=DIR`` or by default
``./coop_robot_<YYYYmmdd_HHMMSS>``. ``live_view:=true`` adds the live view (markers on
``/coop_robot/markers``; RViz config ``share/coop_robot/config/rviz/coop_robot.rviz``). Same graph
description as the simulation (coop_robot.graph.robot_graph); no sim, wall-clock time, scoring on
perception.
"""


from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from coop_robot.graph import robot_graph
from coop_robot.launch_support import (
    LIVE_VIEW_ARGUMENTS,
    RECORD_ARGUMENTS,
    parse_bool,
    parse_int,
    parse_record,
    to_launch_actions,
)
from launch import LaunchDescription

ARGUMENTS = (
    ("policy", "reactive", "Turn-taking policy: reactive, eager or mirror"),
    ("color_topic", "/camera/color/image_raw", "RGB image topic of the camera driver"),
    ("depth_topic", "/camera/depth/image_rect_raw", "Depth image aligned to colour (16UC1 mm or 32FC1 m)"),
    ("camera_info_topic", "/camera/color/camera_info", "CameraInfo of the colour image"),
    ("trajectory_topic", "/panda_arm_controller/joint_trajectory",
     "JointTrajectory topic of the arm's joint trajectory controller"),
    ("joint_states_topic", "/joint_states", "Joint states of the arm"),
    ("turns", "0", "End the launch after this many robot turns (0 = run until Ctrl-C)"),
    ("summary_json", "", "Write the session summary JSON here when the session ends"),
    ("params_file", "", "Your cell's parameter file (camera extrinsics, zone, glove colour; node-specific settings "
                        "under the node's name), applied after the package's"),
) + RECORD_ARGUMENTS + LIVE_VIEW_ARGUMENTS


def _graph(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    record_dir, record_images = parse_record(arg("record"), arg("record_dir"), arg("record_images"))
    specs = robot_graph(
        policy=arg("policy"),
        color_topic=arg("color_topic"),
        depth_topic=arg("depth_topic"),
        camera_info_topic=arg("camera_info_topic"),
        trajectory_topic=arg("trajectory_topic"),
        joint_states_topic=arg("joint_states_topic"),
        turns=parse_int(arg("turns"), "turns"),
        summary_json=arg("summary_json"),
        record_dir=record_dir,
        record_images=record_images,
        live_view=parse_bool(arg("live_view"), "live_view"),
        extra_param_files=[arg("params_file")] if arg("params_file") else [],
    )
    return to_launch_actions(specs, get_package_share_directory("coop_robot"))


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=desc) for name, default, desc in ARGUMENTS]
        + [OpaqueFunction(function=_graph)]
    )

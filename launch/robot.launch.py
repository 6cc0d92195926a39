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

To rehearse this graph against the simulator posing as a lab cell, see rehearsal.launch.py.
"""


from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from coop_robot.graph import robot_graph
from coop_robot.launch_support import ROBOT_ARGUMENTS, robot_graph_kwargs, to_launch_actions
from launch import LaunchDescription

ARGUMENTS = ROBOT_ARGUMENTS


def _graph(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    specs = robot_graph(**robot_graph_kwargs(arg))
    return to_launch_actions(specs, get_package_share_directory("coop_robot"))


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=desc) for name, default, desc in ARGUMENTS]
        + [OpaqueFunction(function=_graph)]
    )

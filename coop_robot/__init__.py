"""coop_robot: turn-taking human-robot interaction for ROS 2.

Pure cores (no ROS imports) live in subpackages by concern -- ``sim``, ``partner``,
``perception``, ``policy``, ``control``, ``timing`` -- and ``nodes`` holds the thin rclpy
wrappers around them.
"""

__version__ = "0.1.0"

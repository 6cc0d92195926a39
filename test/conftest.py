"""Test-wide DDS isolation: discovery stays on this host for every node any test starts.

Each test that starts nodes also picks its own random ROS_DOMAIN_ID and passes it explicitly
(``rclpy.init(domain_id=...)`` and the subprocess environment).
"""

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

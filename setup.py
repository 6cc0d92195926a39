"""ament_python build of coop_robot (also installable with plain pip)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "coop_robot"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    # The trained mirror-policy checkpoint ships inside the Python package.
    package_data={f"{PACKAGE}.policy": ["checkpoints/*.pt"], f"{PACKAGE}.data": ["*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/partners", glob("config/partners/*.yaml")),
        (f"share/{PACKAGE}/config/models", glob("config/models/*.yaml")),
        (f"share/{PACKAGE}/config/training", glob("config/training/*.yaml")),
        (f"share/{PACKAGE}/config/training/scaling", glob("config/training/scaling/*.yaml")),
        (f"share/{PACKAGE}/config/rviz", glob("config/rviz/*.rviz")),
    ],
    # What the code imports (the ROS 2 client library and messages come from ROS 2 itself, or from
    # the ros-<distro>-* wheels that scripts/setup_env.sh installs). torch is pinned: a looser range
    # pulls several GB of CUDA packages.
    install_requires=["setuptools", "numpy>=1.26,<3", "pyyaml>=6.0", "transforms3d>=0.4.1",
                      "opencv-python-headless>=4.9", "pybullet==3.2.7", "matplotlib>=3.8", "rosbags>=0.10",
                      "mcap>=1.1", "torch==2.13.0"],
    zip_safe=False,
    maintainer="coop_robot maintainers",
    maintainer_email="maintainers@coop-robot.invalid",
    description="Turn-taking human-robot interaction for ROS 2",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "coop-robot = coop_robot.cli:entry_point",
            "sim_node = coop_robot.nodes.sim_node:main",
            "perception_node = coop_robot.nodes.perception_node:main",
            "policy_node = coop_robot.nodes.policy_node:main",
            "controller_node = coop_robot.nodes.controller_node:main",
            "turn_tracker_node = coop_robot.nodes.turn_tracker_node:main",
            "recorder_node = coop_robot.nodes.recorder_node:main",
            "live_view_node = coop_robot.nodes.live_view_node:main",
        ],
    },
)

"""Arm control: Panda kinematics, joint-space planning and the turn-taking controller core.

``kinematics`` (FK/IK in NumPy), ``planning`` (minimum-jerk moves, stops, retreats and the
zone-entry commit time) and ``controller`` (the :class:`ArmController` state machine) import
no ROS; ``coop_robot.nodes.controller_node`` wraps them.
"""

from coop_robot.control.controller import (
    ArmController,
    ControllerConfig,
    ControllerEvent,
    ControllerInputs,
    ControllerOutput,
    TrajectoryCommand,
)
from coop_robot.control.kinematics import IKError, PandaKinematics

__all__ = [
    "ArmController", "ControllerConfig", "ControllerEvent", "ControllerInputs", "ControllerOutput",
    "TrajectoryCommand", "IKError", "PandaKinematics",
]

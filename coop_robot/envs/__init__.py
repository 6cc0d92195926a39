"""Fast headless environments (no ROS): the turn-taking env and the fitted perception model."""

from coop_robot.envs.perception_model import (
    PerceivedFrame,
    PerceptionModel,
    PerceptionModelError,
    PerceptionModelParams,
)
from coop_robot.envs.turn_env import TurnTakingEnv

__all__ = ["PerceivedFrame", "PerceptionModel", "PerceptionModelError", "PerceptionModelParams", "TurnTakingEnv"]

"""Training of the mirror policy network (``coop-robot train``): config, replay buffer, loop."""

from coop_robot.training.config import TrainConfig, TrainConfigError

__all__ = ["TrainConfig", "TrainConfigError"]

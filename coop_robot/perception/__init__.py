"""Perception: the partner's gloved hand from RGB-D images, in 3D in the world frame (no ROS)."""

from coop_robot.perception.hand_tracker import (
    DEFAULT_ZONE,
    HAND_MODELS,
    HandObservation,
    HandTracker,
    HandTrackerConfig,
    PerceptionInputError,
    depth_from_image,
    depth_to_16uc1,
)
from coop_robot.perception.image_codec import ImageFormatError, decode_color, decode_depth

__all__ = [
    "DEFAULT_ZONE",
    "HAND_MODELS",
    "HandObservation",
    "HandTracker",
    "HandTrackerConfig",
    "ImageFormatError",
    "PerceptionInputError",
    "decode_color",
    "decode_depth",
    "depth_from_image",
    "depth_to_16uc1",
]

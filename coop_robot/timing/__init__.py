"""Interaction timing: turn segmentation and the metric definitions every part uses."""

from coop_robot.timing.metrics import SUMMARY_KEYS, TurnRecord, TurnSegmenter, summarize  # noqa: F401

"""Interaction timing: turn segmentation and the metric definitions every part uses."""

from coop_robot.timing.metrics import TurnRecord, TurnSegmenter, summarize, SUMMARY_KEYS  # noqa: F401

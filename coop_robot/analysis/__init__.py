"""Offline analysis: rosbag2 sessions (timing metrics, reports, replay) and the mirror network's units."""

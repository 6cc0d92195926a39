"""Thin rclpy wrappers: convert messages to plain values, call a core, publish the result."""

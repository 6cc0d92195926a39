"""Turn :mod:`coop_robot.graph` node specs into ``launch_ros`` actions (used by launch/*.launch.py).

Imported only on a ROS 2 install that has ``launch`` and ``launch_ros``; the pip runner never
imports it.
"""

from __future__ import annotations

import os

from coop_robot.graph import NodeSpec, default_record_dir

#: Launch arguments of both launch files for recording the session to a rosbag2 (MCAP).
RECORD_ARGUMENTS = (
    ("record", "false", "Record the interaction topics to a rosbag2 (MCAP) directory"),
    ("record_dir", "", "Bag directory for record:=true (must not exist or be empty); "
                       "default ./coop_robot_<YYYYmmdd_HHMMSS>"),
    ("record_images", "false", "With record:=true, also record the camera images and camera_info (large)"),
)


def to_launch_actions(specs: list[NodeSpec], share_dir: str) -> list:
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch_ros.actions import Node

    actions = []
    for spec in specs:
        params = [name if os.path.isabs(name) else os.path.join(share_dir, "config", name) for name in spec.param_files]
        if spec.parameters:
            params.append(dict(spec.parameters))
        node = Node(
            package="coop_robot",
            executable=spec.executable,
            name=spec.name,
            output="screen",
            emulate_tty=True,
            parameters=params,
            remappings=list(spec.remappings),
        )
        actions.append(node)
        if spec.ends_session:
            # The turn tracker exits after the requested number of turns: end the whole launch.
            actions.append(RegisterEventHandler(OnProcessExit(
                target_action=node,
                on_exit=[EmitEvent(event=Shutdown(reason=f"{spec.name} finished the session"))],
            )))
    return actions


def parse_record(record: str, record_dir: str, record_images: str) -> tuple[str, bool]:
    """The record launch arguments -> (bag directory or '' for no recording, record images)."""
    enabled = parse_bool(record, "record")
    images = parse_bool(record_images, "record_images")
    if not enabled:
        if record_dir.strip() or images:
            raise ValueError("launch arguments 'record_dir' / 'record_images' need record:=true")
        return "", False
    return (record_dir.strip() or default_record_dir()), images


def parse_bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"launch argument '{name}' must be true or false, got {text!r}")


def parse_int(text: str, name: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"launch argument '{name}' must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"launch argument '{name}' must be >= {minimum}, got {value}")
    return value

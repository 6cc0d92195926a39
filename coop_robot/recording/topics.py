"""What a coop_robot bag holds: the recorded topics and their ROS 2 types (docs: docs/recording_and_analysis.md).

Pure data, no ROS imports: the recorder node, the graph description and the bag analysis all read
these tables.
"""

from __future__ import annotations

#: Topics recorded by default (name -> ROS 2 message type). The ``/sim/...`` topics exist only in
#: simulation, the sync ones only in the sync task; without a publisher a topic does not appear in the bag.
INTERACTION_TOPICS: dict[str, str] = {
    "/joint_states": "sensor_msgs/msg/JointState",
    "/partner/hand": "geometry_msgs/msg/PointStamped",
    "/partner/hand_velocity": "geometry_msgs/msg/Vector3Stamped",
    "/partner/in_zone": "std_msgs/msg/Bool",
    "/policy/decision": "std_msgs/msg/String",
    "/policy/exit_forecast": "std_msgs/msg/Float64",
    "/policy/p_act": "std_msgs/msg/Float64",
    "/controller/state": "std_msgs/msg/String",
    "/controller/events": "sensor_msgs/msg/TimeReference",
    "/controller/ssm": "diagnostic_msgs/msg/DiagnosticArray",
    "/panda_arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "/emergency_stop": "std_msgs/msg/Bool",
    "/turn/events": "sensor_msgs/msg/TimeReference",
    "/turn/timing": "diagnostic_msgs/msg/DiagnosticArray",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "/sim/ground_truth/events": "sensor_msgs/msg/TimeReference",
    "/sim/ground_truth/partner_hand": "geometry_msgs/msg/PointStamped",
    "/sim/ground_truth/robot_ee": "geometry_msgs/msg/PointStamped",
    "/sim/ground_truth/partner_plan": "sensor_msgs/msg/TimeReference",
    "/sim/ground_truth/ssm": "diagnostic_msgs/msg/DiagnosticArray",
    "/sim/partner/phase": "std_msgs/msg/String",
    # The sync task (docs/science_sync.md): the cue, each scored trial, the robot's target and reach time.
    "/sync/cue": "sensor_msgs/msg/TimeReference",
    "/sync/trial": "diagnostic_msgs/msg/DiagnosticArray",
    "/controller/sync_target": "geometry_msgs/msg/PointStamped",
    "/controller/sync_arrival_after_s": "std_msgs/msg/Float64",
}

#: Topics that only the simulation publishes.
SIM_ONLY_TOPICS: frozenset[str] = frozenset(t for t in INTERACTION_TOPICS if t.startswith("/sim/"))

#: Camera streams, recorded only on request (``record_images``): ~16 MB per simulated second.
IMAGE_TOPICS: dict[str, str] = {
    "/camera/color/image_raw": "sensor_msgs/msg/Image",
    "/camera/depth/image_rect_raw": "sensor_msgs/msg/Image",
    "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
}

#: Every topic whose type the recorder knows without being told.
KNOWN_TOPICS: dict[str, str] = {**INTERACTION_TOPICS, **IMAGE_TOPICS}


def parse_topic_entry(entry: str) -> tuple[str, str]:
    """``"/name"`` (a known topic) or ``"/name:pkg/msg/Type"`` -> (name, type).

    Raises ValueError naming the entry and the accepted forms.
    """
    name, sep, msgtype = entry.strip().partition(":")
    name, msgtype = name.strip(), msgtype.strip()
    if not name.startswith("/") or len(name) < 2 or any(c.isspace() for c in name):
        raise ValueError(f"topic entry {entry!r}: expected an absolute topic name such as '/joint_states', "
                         "optionally followed by ':pkg/msg/Type'")
    if not sep:
        if name not in KNOWN_TOPICS:
            raise ValueError(f"topic entry {entry!r}: type unknown; write it as '{name}:pkg/msg/Type' "
                             f"(known topics: {', '.join(sorted(KNOWN_TOPICS))})")
        return name, KNOWN_TOPICS[name]
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg" or not all(parts):
        raise ValueError(f"topic entry {entry!r}: message type must look like 'pkg/msg/Type', got {msgtype!r}")
    return name, msgtype

"""Recording the interaction to rosbag2 (MCAP): which topics, and the bag writer (no ROS imports).

Conventions shared with the bag analysis: message payloads are the CDR bytes as received, log
times are the recorder's clock (sim time in simulation), ``/clock`` is not recorded.
"""

from coop_robot.recording.bag import (
    BAG_VERSION,
    INFINITE_NS,
    BagError,
    BagRecorder,
    BagSummary,
    QosOffer,
    check_output_dir,
)
from coop_robot.recording.topics import (
    IMAGE_TOPICS,
    INTERACTION_TOPICS,
    KNOWN_TOPICS,
    SIM_ONLY_TOPICS,
    parse_topic_entry,
)

__all__ = [
    "BAG_VERSION", "INFINITE_NS", "BagError", "BagRecorder", "BagSummary", "QosOffer", "check_output_dir",
    "IMAGE_TOPICS", "INTERACTION_TOPICS", "KNOWN_TOPICS", "SIM_ONLY_TOPICS", "parse_topic_entry",
]

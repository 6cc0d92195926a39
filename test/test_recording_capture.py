"""The recorder's capture rules without ROS: the topic list, the QoS asked for and its relaxation
to match every publisher, and the messages held until sim time starts."""

import pytest

from coop_robot.recording import IMAGE_TOPICS, INTERACTION_TOPICS
from coop_robot.recording.capture import (
    LATCHED,
    RECORD,
    SENSOR,
    PendingUntilClock,
    relaxed_request,
    request_kind,
    topics_to_record,
)


def test_topics_to_record_reads_the_entries_and_adds_the_camera_streams_on_request():
    assert topics_to_record(list(INTERACTION_TOPICS), False) == INTERACTION_TOPICS
    wanted = topics_to_record(["/joint_states", "/my/topic:std_msgs/msg/String"], True)
    assert wanted == {"/joint_states": "sensor_msgs/msg/JointState", "/my/topic": "std_msgs/msg/String",
                      **IMAGE_TOPICS}
    # An explicit type for a camera topic wins over the default one.
    assert topics_to_record(["/camera/color/image_raw:my_msgs/msg/Image"], True)["/camera/color/image_raw"] \
        == "my_msgs/msg/Image"
    assert topics_to_record([], True) == IMAGE_TOPICS


@pytest.mark.parametrize("entries, message", [
    (["/unknown"], "type unknown"), (["joint_states"], "absolute topic name"),
    (["/x:std_msgs/String"], "pkg/msg/Type"), ([], "at least one topic"),
])
def test_bad_topic_lists_are_refused_naming_the_entry(entries, message):
    with pytest.raises(ValueError, match=message):
        topics_to_record(entries, False)


def test_the_request_before_publishers_are_known_follows_what_the_package_publishes():
    assert request_kind("/turn/events") == LATCHED and request_kind("/sim/partner/phase") == LATCHED
    assert request_kind("/camera/color/image_raw") == SENSOR and request_kind("/camera/depth/camera_info") == SENSOR
    assert request_kind("/joint_states") == RECORD and request_kind("/my/topic") == RECORD


def test_a_request_is_relaxed_only_as_far_as_every_publisher_needs():
    latched = ("reliable", "transient_local")
    assert relaxed_request(*latched, [latched, latched]) is None
    assert relaxed_request(*latched, [latched, ("reliable", "volatile")]) == ("reliable", "volatile")
    assert relaxed_request(*latched, [("best_effort", "transient_local")]) == ("best_effort", "transient_local")
    assert relaxed_request(*latched, [("best_effort", "volatile")]) == ("best_effort", "volatile")
    # Never tightened: a best-effort volatile request matches every publisher already.
    assert relaxed_request("best_effort", "volatile", [latched]) is None
    assert relaxed_request("reliable", "volatile", [("reliable", "transient_local")]) is None
    assert relaxed_request(*latched, []) is None


def test_messages_before_the_clock_are_held_up_to_capacity_and_released_in_order():
    pending = PendingUntilClock(capacity=3)
    assert [pending.hold(k) for k in range(5)] == [True, True, True, False, False]
    assert (len(pending), pending.dropped) == (3, 2)
    assert pending.release() == [0, 1, 2]
    assert len(pending) == 0 and pending.release() == []
    assert pending.hold(7) and pending.release() == [7]
    with pytest.raises(ValueError, match="capacity must be >= 0, got -1"):
        PendingUntilClock(capacity=-1)

"""How the recorder node captures the interaction (no ROS imports): which topics, the QoS it asks
for and how it relaxes a request to match every publisher, and the messages held until sim time
starts. The node (``coop_robot.nodes.recorder_node``) translates between these plain values and
rclpy.

QoS values are the lower-case names ``ros2 topic info -v`` prints (``reliable``, ``best_effort``,
``transient_local``, ``volatile``), as in :class:`coop_robot.recording.QosOffer`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

from coop_robot.recording.topics import IMAGE_TOPICS, parse_topic_entry

#: Topics published transient-local by the package (EVENT_QOS / LATCHED_QOS): subscribed
#: transient-local too, so the recorder receives their history even if it matches late.
TRANSIENT_LOCAL_TOPICS = frozenset({
    "/controller/state", "/controller/events", "/turn/events", "/turn/timing",
    "/sim/ground_truth/events", "/sim/ground_truth/partner_plan", "/sim/partner/phase",
    "/sync/cue", "/sync/trial", "/controller/sync_target", "/controller/sync_arrival_after_s",
})
#: Camera streams: best effort, like the camera drivers' sensor-data QoS.
SENSOR_TOPICS = frozenset(IMAGE_TOPICS) | {"/camera/depth/camera_info"}
#: The kinds of subscription :func:`request_kind` chooses between.
LATCHED, SENSOR, RECORD = "latched", "sensor", "record"
#: Messages held while sim time has not started (no /clock yet), at most.
MAX_PENDING = 2000


def topics_to_record(entries: Iterable[str], record_images: bool) -> dict[str, str]:
    """Topic name -> message type from the ``topics`` entries (see
    :func:`coop_robot.recording.parse_topic_entry`), plus the camera streams with
    ``record_images``. ValueError naming the bad entry, or when nothing is left to record."""
    wanted: dict[str, str] = {}
    for entry in entries:
        name, msgtype = parse_topic_entry(entry)
        wanted[name] = msgtype
    if record_images:
        for name, msgtype in IMAGE_TOPICS.items():
            wanted.setdefault(name, msgtype)
    if not wanted:
        raise ValueError("at least one topic must be recorded, got none")
    return wanted


def request_kind(topic: str) -> str:
    """The subscription asked for before the topic's publishers are known: :data:`LATCHED`
    (reliable, transient local), :data:`SENSOR` (best effort) or :data:`RECORD` (reliable, volatile)."""
    if topic in TRANSIENT_LOCAL_TOPICS:
        return LATCHED
    if topic in SENSOR_TOPICS:
        return SENSOR
    return RECORD


def relaxed_request(reliability: str, durability: str,
                    offered: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """A (reliability, durability) request every offered (reliability, durability) is compatible
    with, or None if the current request already is.

    Only ever relaxes: reliable -> best effort when some publisher is not reliable, transient
    local -> volatile when some publisher is not transient local (what ``ros2 bag record`` asks).
    """
    offered = list(offered)
    new_reliability, new_durability = reliability, durability
    if reliability == "reliable" and any(r != "reliable" for r, _ in offered):
        new_reliability = "best_effort"
    if durability == "transient_local" and any(d != "transient_local" for _, d in offered):
        new_durability = "volatile"
    if (new_reliability, new_durability) == (reliability, durability):
        return None
    return new_reliability, new_durability


Item = TypeVar("Item")


class PendingUntilClock(Generic[Item]):
    """Messages that arrive on sim time before the first /clock: held (up to ``capacity``, the
    rest dropped and counted) and released together once the clock runs, to be written with its
    first time rather than a 0 that would put them decades before the rest of the bag."""

    def __init__(self, capacity: int = MAX_PENDING) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity!r}")
        self.capacity = capacity
        self.dropped = 0
        self._held: deque[Item] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, item: Item) -> bool:
        """Hold ``item``; False (and counted in :attr:`dropped`) when already full."""
        if len(self._held) >= self.capacity:
            self.dropped += 1
            return False
        self._held.append(item)
        return True

    def release(self) -> list[Item]:
        """Everything held, in arrival order; nothing is held afterwards."""
        items = list(self._held)
        self._held.clear()
        return items

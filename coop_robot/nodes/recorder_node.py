"""Recorder node: the interaction topics into a rosbag2 (MCAP) directory, as ``ros2 bag record`` would.

Subscribes to each topic with ``raw=True`` and hands the CDR bytes, exactly as they arrived over
DDS, to :class:`coop_robot.recording.BagRecorder` with the node clock's time of arrival (sim time
in simulation). The bag is closed, with complete ``metadata.yaml``, however the node ends
(SIGINT, SIGTERM, an external shutdown).

QoS: before any publisher is known the node subscribes with what the package's publishers offer
(transient local for the event and latched-state topics, so a late start still gets the latched
history; best effort for camera streams; reliable otherwise). Once publishers are discovered,
a subscription that could not match all of them is re-created with what they all offer (the rule
``ros2 bag record`` applies), and the QoS each publisher offers is what goes into the bag. These
rules, the topic list and the messages held until sim time starts are
:mod:`coop_robot.recording.capture`; this node translates.
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
import time

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidHandle
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from coop_robot import __version__
from coop_robot.graph import RECORDER_CLOCK_LINE, RECORDER_READY_LINE
from coop_robot.nodes.common import EVENT_QOS, SENSOR_QOS, ParameterError, declare, declare_zone, run_node
from coop_robot.recording import INTERACTION_TOPICS, BagError, BagRecorder, QosOffer
from coop_robot.recording.capture import (
    LATCHED,
    SENSOR,
    PendingUntilClock,
    relaxed_request,
    request_kind,
    topics_to_record,
)

#: Reliable, volatile; a deep queue (10 s of 100 Hz joint states) so that a slow disk write or a
#: burst does not overwrite messages before they are written.
RECORD_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)


def request_qos(topic: str) -> QoSProfile:
    """The subscription QoS used for ``topic`` before its publishers are known."""
    return {LATCHED: EVENT_QOS, SENSOR: SENSOR_QOS}.get(request_kind(topic), RECORD_QOS)


def adapted_qos(current: QoSProfile, offered: list[QoSProfile]) -> QoSProfile | None:
    """A request every offered profile is compatible with, or None if ``current`` already is."""
    relaxed = relaxed_request(current.reliability.name.lower(), current.durability.name.lower(),
                              [(p.reliability.name.lower(), p.durability.name.lower()) for p in offered])
    if relaxed is None:
        return None
    return QoSProfile(depth=current.depth, history=current.history,
                      reliability=ReliabilityPolicy[relaxed[0].upper()],
                      durability=DurabilityPolicy[relaxed[1].upper()])


def to_offer(profile: QoSProfile) -> QosOffer:
    """rclpy QoS (as reported by discovery) -> the bag's plain QoS record."""
    return QosOffer(
        reliability=profile.reliability.name.lower(),
        durability=profile.durability.name.lower(),
        history=profile.history.name.lower(),
        depth=int(profile.depth),
        deadline_ns=int(profile.deadline.nanoseconds),
        lifespan_ns=int(profile.lifespan.nanoseconds),
        liveliness=profile.liveliness.name.lower(),
        liveliness_lease_duration_ns=int(profile.liveliness_lease_duration.nanoseconds),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def message_class(msgtype: str):
    """``pkg/msg/Name`` -> the installed Python message class."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ParameterError(f"message type {msgtype!r} is not installed ({exc})") from exc


class _Topic:
    """One recorded topic: its subscription and what its publishers offer."""

    def __init__(self, name: str, msgtype: str, msg_class, qos: QoSProfile) -> None:
        self.name = name                 # requested name (before remapping)
        self.bag_name = name             # resolved name: what the bag calls it
        self.msgtype = msgtype
        self.msg_class = msg_class
        self.qos = qos
        self.subscription = None
        self.offers: dict[str, QoSProfile] = {}   # publisher GID -> offered QoS


class RecorderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("recorder", **kwargs)
        output_dir = declare(self, "output_dir", "",
                             "Bag directory to create (required); refused if it exists and is not empty")
        record_images = declare(self, "record_images", False,
                                "Also record the camera streams (colour and depth images, colour camera_info; "
                                "about 16 MB per second at 320x240, 30 Hz)")
        self._progress_period_s = declare(self, "progress_period_s", 10.0,
                                          "Log the message counts this often (wall s); 0 = only when the bag closes",
                                          0.0, 3600.0)
        entries = self._declare_topics()
        zone = declare_zone(self)  # stored in the bag: offline scoring on perception needs the zone
        if not output_dir.strip():
            raise ParameterError("parameter 'output_dir' must name the bag directory to create, got ''")
        try:
            wanted = topics_to_record(entries, record_images)
        except ValueError as exc:
            raise ParameterError(f"parameter 'topics': {exc}") from None
        self._sim_time = bool(self.get_parameter("use_sim_time").value)

        self._topics: dict[str, _Topic] = {}
        for name, msgtype in wanted.items():
            topic = _Topic(name, msgtype, message_class(msgtype), request_qos(name))
            self._subscribe(topic)
            self._topics[topic.bag_name] = topic

        try:
            self._bag = BagRecorder(output_dir, custom_data={
                "coop_robot.version": __version__,
                "coop_robot.log_time": "sim time (/clock)" if self._sim_time else "wall clock (system time)",
                "coop_robot.zone_min_m": json.dumps([float(v) for v in zone.min_m]),
                "coop_robot.zone_max_m": json.dumps([float(v) for v in zone.max_m]),
            })
            self._bag.open()
        except BagError as exc:
            raise ParameterError(f"parameter 'output_dir' = {output_dir!r}: {exc}") from None
        self._pending: PendingUntilClock[tuple[str, bytes]] = PendingUntilClock()
        self._last_stamp_ns = 0
        self._last_progress_s = time.monotonic()
        self._closed = False
        # Steady clock: on sim time the node's own clock stops when the sim does.
        self.create_timer(1.0, self._check_publishers, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._clock_timer = None
        if self._sim_time:
            self._clock_timer = self.create_timer(0.05, self._check_clock,
                                                  clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"recording {len(self._topics)} topics to {self._bag.path} "
            f"(log time: {'sim time' if self._sim_time else 'wall clock'})")
        # The graph runner starts the other nodes once it sees this line.
        print(f"{RECORDER_READY_LINE} {len(self._topics)} topics to {self._bag.path}", flush=True)

    def _declare_topics(self) -> list[str]:
        # A string list: common.declare validates number lists only.
        desc = ParameterDescriptor(
            type=ParameterType.PARAMETER_STRING_ARRAY,
            description="Topics to record: '/name' for a topic of the package (type known) or '/name:pkg/msg/Type'; "
                        "default: the interaction topics (coop_robot.recording.INTERACTION_TOPICS)")
        try:
            value = self.declare_parameter("topics", list(INTERACTION_TOPICS), desc).value
        except Exception as exc:  # rclpy raises several types for a bad override; name the parameter
            raise ParameterError(f"parameter 'topics': {exc}") from exc
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ParameterError(f"parameter 'topics' must be a list of topic names, got {value!r}")
        return list(value)

    # --- subscriptions ----------------------------------------------------------------------------
    def _subscribe(self, topic: _Topic) -> None:
        if topic.subscription is not None:
            self.destroy_subscription(topic.subscription)
        topic.subscription = self.create_subscription(
            topic.msg_class, topic.name, lambda data, t=topic: self._on_message(t, data), topic.qos, raw=True)
        topic.bag_name = topic.subscription.topic_name

    def _check_publishers(self) -> None:
        """Note what each topic's publishers offer; relax a request that cannot match them all."""
        for topic in list(self._topics.values()):
            infos = self.get_publishers_info_by_topic(topic.bag_name)
            matching = [i for i in infos if i.topic_type == topic.msgtype]
            if len(matching) < len(infos):
                other = sorted({i.topic_type for i in infos} - {topic.msgtype})
                self.get_logger().error(
                    f"{topic.bag_name}: publishers of type {other} ignored; recording {topic.msgtype}",
                    throttle_duration_sec=30.0)
            for info in matching:
                topic.offers[str(info.endpoint_gid)] = info.qos_profile
            if not matching:
                continue
            relaxed = adapted_qos(topic.qos, [i.qos_profile for i in matching])
            if relaxed is not None:
                self.get_logger().warning(
                    f"{topic.bag_name}: a publisher offers {to_offer(relaxed).reliability}/"
                    f"{to_offer(relaxed).durability} only; re-subscribing with that QoS")
                topic.qos = relaxed
                self._subscribe(topic)
        self._log_progress()

    def _check_clock(self) -> None:
        """On sim time: announce when the clock runs (the graph runner starts the other nodes then)."""
        now_ns = self.get_clock().now().nanoseconds
        if now_ns > 0:
            self._clock_timer.cancel()
            self._flush_pending(now_ns)
            print(f"{RECORDER_CLOCK_LINE}: sim time {now_ns / 1e9:.3f} s", flush=True)

    def _log_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (self._progress_period_s <= 0 or now - self._last_progress_s < self._progress_period_s):
            return
        self._last_progress_s = now
        counts = self._bag.counts
        self.get_logger().info(f"{sum(counts.values())} messages on {sum(1 for c in counts.values() if c)} topics "
                               f"recorded to {self._bag.path}")
        self.get_logger().debug(", ".join(f"{name}: {n}" for name, n in sorted(counts.items())))

    # --- messages ---------------------------------------------------------------------------------
    def _on_message(self, topic: _Topic, data: bytes) -> None:
        if self._closed:
            return
        stamp_ns = self.get_clock().now().nanoseconds
        if stamp_ns <= 0:
            # Sim time before the first /clock: hold the message and give it the first clock time,
            # rather than a 0 that would put it decades before the rest of the bag.
            if not self._pending.hold((topic.bag_name, data)):
                self.get_logger().warning(f"no /clock yet: dropped {self._pending.dropped} messages",
                                          throttle_duration_sec=5.0)
            return
        self._flush_pending(stamp_ns)
        self._write(topic.bag_name, data, stamp_ns)

    def _flush_pending(self, stamp_ns: int) -> None:
        for name, data in self._pending.release():
            self._write(name, data, stamp_ns)

    def _write(self, bag_name: str, data: bytes, stamp_ns: int) -> None:
        if not self._bag.has_topic(bag_name):
            topic = self._topics[bag_name]
            if not topic.offers:  # first message before the periodic discovery check
                for info in self.get_publishers_info_by_topic(bag_name):
                    if info.topic_type == topic.msgtype:
                        topic.offers[str(info.endpoint_gid)] = info.qos_profile
            offers = [to_offer(q) for q in topic.offers.values()] or [to_offer(topic.qos)]
            self._bag.add_topic(bag_name, topic.msgtype, offers)
        self._bag.write(bag_name, data, stamp_ns)
        self._last_stamp_ns = stamp_ns

    # --- shutdown ---------------------------------------------------------------------------------
    def _drain(self) -> int:
        """Write the messages DDS had already delivered when the spin ended (not yet taken)."""
        drained = 0
        for topic in self._topics.values():
            sub = topic.subscription
            try:
                with sub.handle:
                    while (taken := sub.handle.take_message(sub.msg_type, True)) is not None:
                        self._on_message(topic, taken[0])
                        drained += 1
            except (InvalidHandle, RuntimeError) as exc:  # RCLError: the middleware is already gone
                print(f"[recorder] warning: {topic.bag_name}: could not take pending messages at shutdown ({exc})",
                      flush=True)
        return drained

    def close(self) -> None:
        """Write what is held and finish the bag (called by run_node on every exit path)."""
        if self._closed:
            return
        # Printed, not logged: after Ctrl-C the context (and /rosout) is already shut down.
        drained = self._drain()
        self._closed = True
        if drained:
            print(f"[recorder] {drained} messages received before the shutdown written", flush=True)
        if self._pending:
            print(f"[recorder] warning: {len(self._pending)} messages arrived before any /clock; "
                  f"written with time {self._last_stamp_ns} ns", flush=True)
            self._flush_pending(self._last_stamp_ns)
        summary = self._bag.close()
        print(f"[recorder] bag closed: {summary.path} ({summary.message_count} messages on "
              f"{sum(1 for c in summary.topic_counts.values() if c)} topics, "
              f"{summary.duration_ns / 1e9:.1f} s, {summary.size_bytes / 1e6:.2f} MB)", flush=True)


def _request_shutdown(signum, frame) -> None:
    # rclpy's own handler (rclpy.init installs it for SIGINT and SIGTERM) has already shut the
    # context down: the spin ends and run_node closes the bag. This Python-level handler only
    # replaces the default one, which would raise KeyboardInterrupt, possibly in the middle of
    # writing a message. It must not call into rclpy: rclpy.try_shutdown() here, run while the
    # executor was still waiting, crashed in the context's shutdown callbacks (a segfault that left
    # the bag without metadata.yaml, in 1 of ~10 sessions).
    del signum, frame


def main(args=None) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _request_shutdown)
    sys.exit(run_node(RecorderNode, args))


if __name__ == "__main__":
    main()

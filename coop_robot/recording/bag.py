"""Write a rosbag2 directory with MCAP storage from serialized (CDR) messages.

The recorder node hands over the bytes exactly as they arrived over DDS, with the time they
arrived; this module owns the bag format: connections with the message definition and type hash
of the distro's interfaces, the QoS the publishers offered (``metadata.yaml`` in the form
``ros2 bag info/play`` of ROS 2 Jazzy reads: version 9, QoS policies as names), and a clean close
that writes the message counts, start time and duration.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

#: rosbag2 metadata version written: 9 is what ``ros2 bag record`` of ROS 2 Jazzy writes (QoS
#: policies serialized by name). rosbags and Jazzy's rosbag2 read it.
BAG_VERSION = 9
#: Message definitions and type hashes come from this distro's interface definitions.
DISTRO = Stores.ROS2_JAZZY
#: ``rmw`` "infinite" duration (what DDS reports for an unset deadline, lifespan or lease).
INFINITE_NS = 9_223_372_036_854_775_807

_NS_PER_S = 1_000_000_000


class BagError(ValueError):
    """A bag cannot be written as asked (output exists, unknown type or topic, bad QoS)."""


@dataclass(frozen=True)
class QosOffer:
    """One publisher's offered QoS, as plain values (names as in ``ros2 topic info -v``, lower case).

    ``history`` is usually ``unknown`` (depth 0) for a publisher seen through DDS discovery: DDS
    does not announce the writer's history; ``ros2 bag record`` stores it that way too.
    """

    reliability: str = "reliable"          # reliable | best_effort | system_default
    durability: str = "volatile"           # volatile | transient_local | system_default
    history: str = "keep_last"             # keep_last | keep_all | unknown | system_default
    depth: int = 10
    deadline_ns: int = 0                   # 0 = unspecified
    lifespan_ns: int = 0
    liveliness: str = "automatic"          # automatic | manual_by_topic | system_default
    liveliness_lease_duration_ns: int = 0
    avoid_ros_namespace_conventions: bool = False

    def to_rosbags(self) -> Qos:
        return Qos(
            history=_policy(QosHistory, "history", self.history),
            depth=int(self.depth),
            reliability=_policy(QosReliability, "reliability", self.reliability),
            durability=_policy(QosDurability, "durability", self.durability),
            deadline=_qos_time("deadline_ns", self.deadline_ns),
            lifespan=_qos_time("lifespan_ns", self.lifespan_ns),
            liveliness=_policy(QosLiveliness, "liveliness", self.liveliness),
            liveliness_lease_duration=_qos_time("liveliness_lease_duration_ns", self.liveliness_lease_duration_ns),
            avoid_ros_namespace_conventions=bool(self.avoid_ros_namespace_conventions),
        )


def _policy(enum, what: str, name: str):
    try:
        return enum[name.upper()]
    except KeyError:
        raise BagError(f"QoS {what} {name!r} is not one of "
                       f"{[m.name.lower() for m in enum]}") from None


def _qos_time(what: str, ns: int) -> QosTime:
    if ns < 0:
        raise BagError(f"QoS {what} must be >= 0 ns, got {ns}")
    return QosTime(int(ns) // _NS_PER_S, int(ns) % _NS_PER_S)


@dataclass(frozen=True)
class BagSummary:
    """What a closed bag holds."""

    path: Path
    message_count: int
    topic_counts: dict[str, int]
    start_ns: int | None                   # None when no message was written
    duration_ns: int
    size_bytes: int


def check_output_dir(path: str | os.PathLike) -> Path:
    """The absolute bag directory for ``path``; BagError if it exists and is not an empty directory.

    A bag is never written into (or over) an existing recording.
    """
    out = Path(path).expanduser().absolute()
    if not str(path).strip():
        raise BagError("bag output directory must not be empty")
    if out.exists():
        if not out.is_dir():
            raise BagError(f"bag output {out} exists and is not a directory; choose a new directory")
        if any(out.iterdir()):
            raise BagError(f"bag output directory {out} already exists and is not empty; "
                           "choose a new directory (recordings are never overwritten)")
    return out


def describe_bag(path: str | os.PathLike) -> str:
    """One line on a closed bag (from its metadata.yaml): where, how many messages, how long, how big."""
    import yaml

    path = Path(path)
    meta_path = path / "metadata.yaml"
    if not meta_path.is_file():
        return f"warning: {path} has no metadata.yaml: the bag was not closed (see the recorder's log)"
    with open(meta_path, encoding="utf-8") as fh:
        info = yaml.safe_load(fh)["rosbag2_bagfile_information"]
    size_mb = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6
    topics = sum(1 for t in info["topics_with_message_count"] if t["message_count"])
    return (f"bag written to {path}: {info['message_count']} messages on {topics} topics, "
            f"{info['duration']['nanoseconds'] / 1e9:.1f} s, {size_mb:.1f} MB")


@dataclass
class BagRecorder:
    """A rosbag2 (MCAP) directory being written from serialized messages.

    Usage::

        with BagRecorder("session_bag") as bag:
            bag.add_topic("/turn/timing", "diagnostic_msgs/msg/DiagnosticArray", [QosOffer(...)])
            bag.write("/turn/timing", cdr_bytes, timestamp_ns)

    ``close()`` (also on leaving the ``with`` block, even on an exception) writes the MCAP summary
    and ``metadata.yaml``: the bag is complete and readable from then on.
    """

    path: Path
    custom_data: Mapping[str, str] = field(default_factory=dict)
    version: int = BAG_VERSION
    _writer: Writer | None = field(default=None, init=False, repr=False)
    _connections: dict = field(default_factory=dict, init=False, repr=False)
    _counts: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _summary: BagSummary | None = field(default=None, init=False, repr=False)
    _typestore = None

    def __post_init__(self) -> None:
        self.path = check_output_dir(self.path)

    # --- lifecycle ------------------------------------------------------------------------------
    def open(self) -> BagRecorder:
        if self._writer is not None or self._summary is not None:
            raise BagError(f"bag {self.path} was already opened")
        check_output_dir(self.path)          # again: something may have been written meanwhile
        if self.path.is_dir():
            self.path.rmdir()                # empty; rosbags creates the directory itself
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            writer = Writer(self.path, version=self.version, storage_plugin=StoragePlugin.MCAP)
            for key, value in self.custom_data.items():
                writer.set_custom_data(str(key), str(value))
            writer.open()
        except WriterError as exc:
            raise BagError(f"cannot create bag {self.path}: {exc}") from exc
        self._writer = writer
        if BagRecorder._typestore is None:
            BagRecorder._typestore = get_typestore(DISTRO)
        return self

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def close(self) -> BagSummary:
        """Finish the bag (MCAP summary, metadata.yaml). Safe to call again: returns the summary."""
        if self._summary is not None:
            return self._summary
        if self._writer is None:
            raise BagError(f"bag {self.path} was never opened")
        writer, self._writer = self._writer, None
        writer.close()
        count = sum(self._counts.values())
        start = writer.min_timestamp if count else None
        duration = max(0, writer.max_timestamp - writer.min_timestamp) if count else 0
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        self._summary = BagSummary(self.path, count, dict(self._counts), start, duration, size)
        return self._summary

    def __enter__(self) -> BagRecorder:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._writer is not None:
            self.close()  # keep what was recorded up to the error: the bag stays readable
        return False

    # --- topics and messages ------------------------------------------------------------------------
    def add_topic(self, topic: str, msgtype: str, offered_qos: Iterable[QosOffer] = ()) -> None:
        """Register a topic with its ROS 2 type (``pkg/msg/Name``) and the QoS its publishers offer."""
        writer = self._require_open()
        if topic in self._connections:
            raise BagError(f"topic {topic!r} was already added to bag {self.path}")
        if not topic.startswith("/"):
            raise BagError(f"topic {topic!r}: expected an absolute topic name")
        if msgtype not in self._typestore.fielddefs:
            raise BagError(f"topic {topic!r}: unknown message type {msgtype!r} (not an interface of "
                           f"{DISTRO.name.lower()}; expected e.g. 'std_msgs/msg/String')")
        qos = [q.to_rosbags() for q in offered_qos]
        self._connections[topic] = writer.add_connection(topic, msgtype, typestore=self._typestore,
                                                         serialization_format="cdr", offered_qos_profiles=qos)
        self._counts[topic] = 0

    def has_topic(self, topic: str) -> bool:
        return topic in self._connections

    def write(self, topic: str, data: bytes | memoryview, timestamp_ns: int) -> None:
        """Append one serialized (CDR) message received at ``timestamp_ns`` (ns, recorder clock)."""
        writer = self._require_open()
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(f"topic {topic!r} was not added to bag {self.path}; call add_topic first")
        if timestamp_ns < 0:
            raise BagError(f"timestamp must be >= 0 ns, got {timestamp_ns}")
        writer.write(conn, int(timestamp_ns), data)
        self._counts[topic] += 1

    @property
    def counts(self) -> dict[str, int]:
        """Messages written so far, per topic."""
        return dict(self._counts)

    def _require_open(self) -> Writer:
        if self._writer is None:
            state = "closed" if self._summary is not None else "not opened"
            raise BagError(f"bag {self.path} is {state}")
        return self._writer

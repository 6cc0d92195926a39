"""Read rosbag2 recordings offline (no rclpy): stream messages in time order and survive damage.

:class:`BagReader` opens a rosbag2 directory (MCAP or sqlite3 storage, as ``coop-robot record`` or
``ros2 bag record`` write them) or a bare ``.mcap`` / ``.db3`` file and yields its messages one at
a time (nothing is loaded whole). Normal bags are read with rosbags' ``Reader`` (log-time order,
through the storage index). Damaged bags are read as far as they can be:

* ``metadata.yaml`` missing or unreadable: the storage file(s) in the directory are opened directly;
* MCAP without a valid footer/summary (a recording cut short) or with a damaged chunk: the file is
  scanned record by record; intact records are yielded (in file order), the scan stops at the first
  unreadable record and says at which byte;
* sqlite3 rows that cannot be read: rows are re-read in blocks and one by one, skipping bad ones.

Every problem becomes a :class:`BagIssue` naming the file and what is wrong (``reader.issues``);
``severity == "error"`` means the bag is damaged and results from it are partial. A path that is
not a bag at all raises :class:`NotABagError`. Topics given to :meth:`BagReader.expect_types`
that were recorded with another type are not yielded: each is one error naming the topic, the
expected and the found type (``std_msgs/String`` read as a ``Bool`` would be garbage).
:class:`TimingChecker` reports messages out of order, clocks jumping backwards and gaps far
larger than a topic's period.
"""

from __future__ import annotations

import sqlite3
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

#: Message types whose CDR payload starts with a ``std_msgs/Header`` (stamp = first 8 bytes).
STAMPED_TYPES = frozenset({
    "sensor_msgs/msg/JointState", "geometry_msgs/msg/PointStamped", "geometry_msgs/msg/Vector3Stamped",
    "sensor_msgs/msg/TimeReference", "diagnostic_msgs/msg/DiagnosticArray", "trajectory_msgs/msg/JointTrajectory",
    "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "geometry_msgs/msg/PoseStamped",
})

ROS_DISTRO = "ros2_jazzy"
_MCAP_MAGIC = b"\x89MCAP0\r\n"


class BagError(RuntimeError):
    """Nothing could be read from a bag (the message names the file and why)."""


class NotABagError(BagError):
    """The path is not a rosbag2 recording at all (a usage error, not a damaged bag)."""


def same_msgtype(a: str, b: str) -> bool:
    """``pkg/msg/Name`` and ``pkg/Name`` name the same type."""
    return a.replace("/msg/", "/") == b.replace("/msg/", "/")


@dataclass(frozen=True)
class BagIssue:
    """One problem found in a bag. ``severity``: "error" (damaged / unusable data, results partial),
    "warning" (suspicious timing), "note" (e.g. an optional topic absent)."""

    severity: str
    kind: str
    message: str
    topic: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


@dataclass(frozen=True)
class RawMessage:
    """One serialised message: topic, ROS 2 type, log time (ns) and CDR bytes."""

    topic: str
    msgtype: str
    log_ns: int
    data: bytes


def header_stamp_ns(msg: RawMessage) -> int | None:
    """The ``header.stamp`` of a stamped message read straight from its CDR bytes, else None."""
    if msg.msgtype not in STAMPED_TYPES or len(msg.data) < 12:
        return None
    endian = "<" if msg.data[1] & 1 else ">"
    sec, nsec = struct.unpack_from(endian + "iI", msg.data, 4)
    return sec * 1_000_000_000 + nsec


def _storage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions the storage layers raise on damaged data (rosbags, apsw, sqlite3, mcap, struct)."""
    from rosbags.rosbag2 import ReaderError

    errors: list[type[BaseException]] = [ReaderError, OSError, EOFError, ValueError, KeyError, IndexError,
                                         struct.error, sqlite3.Error, zlib.error, AssertionError, UnicodeDecodeError]
    try:
        import apsw

        errors.append(apsw.Error)
    except ImportError:  # rosbags' sqlite3 reader needs apsw; without it only the fallback runs
        pass
    try:
        from mcap.exceptions import McapError

        errors.append(McapError)
    except ImportError:
        pass
    return tuple(errors)


class BagReader:
    """Streams the messages of one rosbag2 recording; see the module docstring.

    Usage::

        with BagReader("session_bag") as bag:
            for msg in bag.messages():
                obj = bag.decode(msg)        # None (and an issue) when the bytes do not deserialise
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.issues: list[BagIssue] = []
        self.topics: dict[str, str] = {}
        self.message_counts: dict[str, int] = {}
        self.custom_data: dict[str, str] = {}
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.storage: str = "unknown"
        self.files: list[Path] = []
        self.messages_read = 0
        self._readers: list = []
        self._errors = _storage_errors()
        self._typestore = None
        self._undecodable: dict[str, int] = {}
        self._opened = False
        self.expected_types: dict[str, str] = {}
        self.wrong_type: dict[str, int] = {}      # topic -> messages not yielded for their type
        self.index_complete = False               # metadata and every storage index read intact

    def expect_types(self, expected: dict[str, str]) -> BagReader:
        """Yield messages of these topics only when they have the given type (see module doc)."""
        self.expected_types.update(expected)
        return self

    # ------------------------------------------------------------------ open / close
    def __enter__(self) -> BagReader:
        if not self._opened:
            self.open()
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def error(self, kind: str, message: str, topic: str | None = None) -> None:
        self.issues.append(BagIssue("error", kind, message, topic))

    @property
    def damaged(self) -> bool:
        return any(i.severity == "error" for i in self.issues)

    def open(self) -> BagReader:
        if not self.path.exists():
            raise NotABagError(f"bag {self.path} does not exist (expected a rosbag2 directory or a .mcap/.db3 file)")
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix in (".mcap", ".db3"))
            meta = self.path / "metadata.yaml"
            if not meta.is_file():
                if not self.files:
                    raise NotABagError(f"{self.path} is not a rosbag2 bag: the directory has no metadata.yaml and no "
                                       ".mcap/.db3 storage file")
                self.error("metadata", f"bag {self.path}: metadata.yaml is missing; reading the storage file(s) "
                                       f"{', '.join(p.name for p in self.files)} directly")
            else:
                self._read_metadata_yaml(meta)
        elif self.path.suffix in (".mcap", ".db3"):
            self.files = [self.path]
        else:
            raise NotABagError(f"{self.path} is not a rosbag2 bag: expected a rosbag2 directory or a .mcap/.db3 "
                               f"file, got a file with suffix {self.path.suffix!r}")
        if not self.files:
            raise BagError(f"bag {self.path}: metadata.yaml lists no .mcap/.db3 storage file that exists")
        self.storage = "mcap" if self.files[0].suffix == ".mcap" else "sqlite3"
        from rosbags.rosbag2 import Reader

        if self.path.is_dir() and not self.damaged:
            try:
                reader = Reader(self.path)
                reader.open()
                self._readers = [(self.path, reader)]
            except self._errors as exc:
                self.error("storage", f"bag {self.path}: rosbags cannot open it ({exc}); reading what is intact")
                self._readers = []
        if not self._readers:
            for file in self.files:
                try:
                    reader = Reader(file)
                    reader.open()
                    self._readers.append((file, reader))
                except self._errors as exc:
                    if not any(i.kind == "storage" for i in self.issues):   # say it once per bag
                        self.error("storage", f"{file}: cannot be opened with its index ({exc}); scanning the "
                                              "records that are intact")
                    self._readers.append((file, None))
        counts: dict[str, int] = {}
        for _, reader in self._readers:
            if reader is None:
                continue
            for conn in reader.connections:
                self.topics.setdefault(conn.topic, conn.msgtype)
                counts[conn.topic] = counts.get(conn.topic, 0) + conn.msgcount
            if reader.message_count:
                self.start_ns = min(self.start_ns or reader.start_time, reader.start_time)
                self.end_ns = max(self.end_ns or 0, reader.end_time)
            custom = getattr(reader.storage, "metadata", None)
            if custom is not None and custom.custom:
                self.custom_data.update({str(k): str(v) for k, v in custom.custom.items()})
        if counts:
            self.message_counts = counts      # the storage's own counts win over metadata.yaml's
        if all(r is None for _, r in self._readers):
            self._probe_unreadable()
        self.index_complete = not self.damaged and all(r is not None for _, r in self._readers)
        self._opened = True
        return self

    def _read_metadata_yaml(self, meta: Path) -> None:
        try:
            doc = yaml.safe_load(meta.read_text(encoding="utf-8"))
            info = doc["rosbag2_bagfile_information"]
            names = [Path(p).name for p in info.get("relative_file_paths", [])]
            for entry in info.get("topics_with_message_count", []):
                tm = entry["topic_metadata"]
                self.topics[tm["name"]] = tm["type"]
                self.message_counts[tm["name"]] = int(entry.get("message_count", 0))
            self.custom_data = {str(k): str(v) for k, v in (info.get("custom_data") or {}).items()}
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            self.error("metadata", f"bag {self.path}: metadata.yaml is unreadable ({type(exc).__name__}: {exc}); "
                                   "reading the storage file(s) directly")
            return
        listed = [self.path / n for n in names if (self.path / n).is_file()]
        missing = [n for n in names if not (self.path / n).is_file()]
        if missing:
            self.error("metadata", f"bag {self.path}: storage file(s) listed in metadata.yaml are missing: "
                                   f"{', '.join(missing)}")
        if listed:
            self.files = listed

    def _probe_unreadable(self) -> None:
        """Raise BagError when no storage file can be read at all (e.g. a .db3 that is not a database)."""
        first = len(self.issues)
        for file in self.files:
            if file.suffix == ".db3":
                try:
                    con = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
                    try:
                        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
                        return
                    finally:
                        con.close()
                except sqlite3.Error as exc:
                    self.error("storage", f"{file}: not a readable SQLite database ({exc})")
            else:
                with open(file, "rb") as fh:
                    if fh.read(8) == _MCAP_MAGIC:
                        return
                self.error("storage", f"{file}: not an MCAP file (the first 8 bytes are not the MCAP magic)")
        raise BagError("; ".join(i.message for i in self.issues[first:]) + "; nothing could be read")

    def close(self) -> None:
        for _, reader in self._readers:
            if reader is not None and reader.is_open:
                reader.close()
        self._readers = []

    # ------------------------------------------------------------------ messages
    def messages(self, topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
        """Yield messages (optionally only these topics), in log-time order where the storage allows."""
        if not self._opened:
            raise BagError(f"bag {self.path} is not open")
        wanted = set(topics) if topics is not None else None
        for msg in self._stream(wanted):
            expected = self.expected_types.get(msg.topic)
            if expected is not None and not same_msgtype(msg.msgtype, expected):
                n = self.wrong_type.get(msg.topic, 0)
                self.wrong_type[msg.topic] = n + 1
                if n == 0:
                    self.error("wrong_type", f"bag {self.path}: topic {msg.topic} has type "
                                             f"{msg.msgtype or 'unknown'}, expected {expected}; its messages are "
                                             "not used", msg.topic)
                continue
            yield msg

    def _stream(self, wanted: set[str] | None) -> Iterator[RawMessage]:
        for file, reader in self._readers:
            last_ns, at_last = -1, set()
            if reader is not None:
                conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
                try:
                    for conn, t_ns, data in reader.messages(conns):
                        if t_ns != last_ns:
                            last_ns, at_last = t_ns, set()
                        at_last.add((conn.topic, zlib.crc32(data)))
                        self.messages_read += 1
                        yield RawMessage(conn.topic, conn.msgtype, t_ns, bytes(data))
                    continue
                except self._errors as exc:
                    self.error("storage", f"{file}: damaged data after {self.messages_read} messages "
                                          f"(log time {last_ns * 1e-9:.3f} s): {exc}; recovering the intact records")
            fallback = self._mcap_scan(file, wanted) if file.suffix == ".mcap" else self._sqlite_rows(file, wanted)
            resumed = last_ns >= 0
            for msg in fallback:
                if resumed and (msg.log_ns < last_ns or (msg.log_ns == last_ns and
                                                         (msg.topic, zlib.crc32(msg.data)) in at_last)):
                    continue  # already yielded before the indexed reader failed
                self.messages_read += 1
                self.topics.setdefault(msg.topic, msg.msgtype)
                yield msg

    def _mcap_scan(self, file: Path, wanted: set[str] | None) -> Iterator[RawMessage]:
        """Scan an MCAP file record by record, yielding every message that is intact."""
        schemas: dict[int, str] = {}
        channels: dict[int, tuple[str, str]] = {}
        size = file.stat().st_size
        with open(file, "rb") as fh:
            if fh.read(8) != _MCAP_MAGIC:
                self.error("storage", f"{file}: not an MCAP file (bad magic); nothing read from it")
                return
            while True:
                pos = fh.tell()
                head = fh.read(9)
                if not head:
                    self.error("truncated", f"{file}: ends at byte {pos} without an MCAP footer (recording cut "
                                            "short?); everything before it was read")
                    return
                if len(head) < 9:
                    self.error("truncated", f"{file}: truncated inside a record header at byte {pos} of {size}")
                    return
                op, length = head[0], struct.unpack("<Q", head[1:])[0]
                if length > size - pos - 9:
                    if op == 0x06:  # a chunk cut short: salvage the messages that made it to disk
                        body = fh.read()
                        yield from self._mcap_chunk(file, pos, body, schemas, channels, wanted, truncated=True)
                    self.error("truncated", f"{file}: truncated at byte {size}: the record at byte {pos} "
                                            f"(opcode 0x{op:02x}) needs {length} bytes but only {size - pos - 9} "
                                            "remain; everything before it was read")
                    return
                body = fh.read(length)
                try:
                    if op == 0x02:  # footer: the end of the file
                        return
                    if op in (0x03, 0x04, 0x05):
                        msg = self._parse_record(op, body, schemas, channels, wanted)
                        if msg is not None:
                            yield msg
                    elif op == 0x06:
                        yield from self._mcap_chunk(file, pos, body, schemas, channels, wanted)
                    elif op == 0x0F:  # data end: the summary section follows, no more messages
                        return
                except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
                    self.error("corrupt", f"{file}: record at byte {pos} (opcode 0x{op:02x}) is corrupt ({exc}); "
                                          "skipped")

    def _parse_record(self, op: int, body: bytes, schemas, channels, wanted) -> RawMessage | None:
        """A schema, channel or message record (the kinds found both in chunks and outside them);
        returns the message of a wanted channel, None otherwise."""
        if op == 0x03:
            self._parse_schema(body, schemas)
        elif op == 0x04:
            self._parse_channel(body, schemas, channels)
        elif op == 0x05:
            return self._parse_message(body, channels, wanted)
        return None

    def _mcap_chunk(self, file, pos, body, schemas, channels, wanted, truncated=False) -> Iterator[RawMessage]:
        try:
            # start time u64, end time u64, uncompressed size u64, crc u32, compression str, records u64 + bytes
            _, _, usize, crc, clen = struct.unpack_from("<QQQII", body, 0)
            comp = body[32:32 + clen].decode()
            (rlen,) = struct.unpack_from("<Q", body, 32 + clen)
            records = body[40 + clen:40 + clen + rlen]
            if comp:
                if truncated or len(records) < rlen:
                    self.error("truncated", f"{file}: the {comp}-compressed chunk at byte {pos} is incomplete; "
                                            "its messages are lost")
                    return
                from mcap.records import Chunk
                from mcap.stream_reader import get_chunk_data_stream

                stream, n = get_chunk_data_stream(Chunk(compression=comp, data=records, message_start_time=0,
                                                        message_end_time=0, uncompressed_crc=0,
                                                        uncompressed_size=usize))
                records = stream.read(n)
            elif not truncated and crc and zlib.crc32(records) != crc:
                self.error("corrupt", f"{file}: the chunk at byte {pos} fails its CRC check; its messages are read "
                                      "but may be damaged")
        except (struct.error, UnicodeDecodeError, ValueError) as exc:
            self.error("corrupt", f"{file}: chunk header at byte {pos} is corrupt ({exc}); chunk skipped")
            return
        out: list[RawMessage] = []
        off = 0
        while off + 9 <= len(records):
            op, length = records[off], struct.unpack_from("<Q", records, off + 1)[0]
            rec = records[off + 9:off + 9 + length]
            if len(rec) < length:
                if not truncated:
                    self.error("corrupt", f"{file}: chunk at byte {pos}: inner record at offset {off} claims "
                                          f"{length} bytes but only {len(rec)} remain; rest of the chunk skipped")
                break
            try:
                msg = self._parse_record(op, rec, schemas, channels, wanted)
                if msg is not None:
                    out.append(msg)
            except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
                self.error("corrupt", f"{file}: chunk at byte {pos}: inner record at offset {off} is corrupt "
                                      f"({exc}); rest of the chunk skipped")
                break
            off += 9 + length
        out.sort(key=lambda m: m.log_ns)
        yield from out

    @staticmethod
    def _string(buf: bytes, off: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<I", buf, off)
        if off + 4 + n > len(buf):
            raise ValueError(f"string of {n} bytes runs past the record end")
        return buf[off + 4:off + 4 + n].decode(), off + 4 + n

    def _parse_schema(self, rec: bytes, schemas: dict) -> None:
        (sid,) = struct.unpack_from("<H", rec, 0)
        name, _ = self._string(rec, 2)
        schemas[sid] = name

    def _parse_channel(self, rec: bytes, schemas: dict, channels: dict) -> None:
        cid, sid = struct.unpack_from("<HH", rec, 0)
        topic, _ = self._string(rec, 4)
        channels[cid] = (topic, schemas.get(sid, self.topics.get(topic, "")))

    def _parse_message(self, rec: bytes, channels: dict, wanted) -> RawMessage | None:
        cid, _, log_ns, _ = struct.unpack_from("<HIQQ", rec, 0)
        if cid not in channels:
            raise ValueError(f"message on unknown channel id {cid}")
        topic, msgtype = channels[cid]
        if wanted is not None and topic not in wanted:
            return None
        return RawMessage(topic, msgtype, log_ns, bytes(rec[22:]))

    def _sqlite_rows(self, file: Path, wanted: set[str] | None, block: int = 2000) -> Iterator[RawMessage]:
        """Read a rosbag2 sqlite3 file row by row in insertion order, skipping rows that fail."""
        try:
            con = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
            topic_rows = con.execute("SELECT id, name, type FROM topics").fetchall()
            (max_id,) = con.execute("SELECT max(id) FROM messages").fetchone()
        except sqlite3.Error as exc:
            self.error("storage", f"{file}: not a readable rosbag2 sqlite3 database ({exc}); nothing read from it")
            return
        topics = {tid: (name, typ) for tid, name, typ in topic_rows}
        query = "SELECT id, topic_id, timestamp, data FROM messages WHERE id >= ? AND id < ? ORDER BY id"
        bad = 0
        try:
            start = 1
            while max_id is not None and start <= max_id:
                try:
                    rows = con.execute(query, (start, start + block)).fetchall()
                except sqlite3.Error:
                    rows = []
                    for rid in range(start, start + block):  # narrow the damage down to single rows
                        try:
                            rows.extend(con.execute(query, (rid, rid + 1)).fetchall())
                        except sqlite3.Error:
                            bad += 1
                for _, tid, t_ns, data in rows:
                    if tid not in topics:
                        bad += 1
                        continue
                    topic, typ = topics[tid]
                    if wanted is None or topic in wanted:
                        yield RawMessage(topic, typ, int(t_ns), bytes(data))
                start += block
        finally:
            con.close()
        if bad:
            self.error("corrupt", f"{file}: {bad} message row(s) could not be read and were skipped")

    # ------------------------------------------------------------------ decoding
    def decode(self, msg: RawMessage):
        """Deserialise a message with the ROS 2 (Jazzy) type store; None and an issue when it fails."""
        if self._typestore is None:
            from rosbags.typesys import Stores, get_typestore

            self._typestore = get_typestore(Stores(ROS_DISTRO))
            self._register_bag_types()
        try:
            return self._typestore.deserialize_cdr(msg.data, msg.msgtype)
        except Exception as exc:  # noqa: BLE001 -- any decoder failure means "damaged message": count it
            n = self._undecodable.get(msg.topic, 0)
            self._undecodable[msg.topic] = n + 1
            if n == 0:
                self.error("undecodable", f"bag {self.path}: a {msg.msgtype or 'message of unknown type'} on "
                                          f"{msg.topic} at log time {msg.log_ns * 1e-9:.3f} s does not deserialise "
                                          f"({type(exc).__name__}: {exc}); such messages are skipped", msg.topic)
            return None

    def _register_bag_types(self) -> None:
        """Add message types the bag defines but the Jazzy store lacks (custom messages)."""
        from rosbags.interfaces import MessageDefinitionFormat
        from rosbags.typesys import get_types_from_idl, get_types_from_msg

        for _, reader in self._readers:
            if reader is None:
                continue
            for conn in reader.connections:
                if conn.msgtype in self._typestore.fielddefs or conn.msgdef.format == MessageDefinitionFormat.NONE:
                    continue
                try:
                    if conn.msgdef.format == MessageDefinitionFormat.MSG:
                        self._typestore.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
                    else:
                        self._typestore.register(get_types_from_idl(conn.msgdef.data))
                except Exception as exc:  # noqa: BLE001 -- a bad embedded definition only loses that topic
                    self.issues.append(BagIssue("warning", "types", f"bag {self.path}: the embedded definition of "
                                                f"{conn.msgtype} is unusable ({exc})", conn.topic))

    def undecodable_counts(self) -> dict[str, int]:
        return dict(self._undecodable)


@dataclass
class _TopicTiming:
    last_ns: int | None = None
    intervals: list[int] = field(default_factory=list)
    period_ns: float | None = None
    out_of_order: int = 0
    jumps_back: int = 0
    gaps: int = 0
    largest_back_ns: int = 0
    largest_gap_ns: int = 0
    first_back_s: float | None = None
    first_ooo_s: float | None = None
    first_gap_s: float | None = None


class TimingChecker:
    """Finds timing damage per topic: out-of-order stamps, backward clock jumps and long gaps.

    Each topic's time is its ``header.stamp`` (stamped types) or the log time. A step backwards by
    more than ``jump_s`` (or ``jump_periods`` periods) is a *clock jump*, a smaller one a message
    *out of order*; a forward step longer than ``gap_periods`` periods (and ``min_gap_s``) of a
    periodic topic (>= 5 Hz, period estimated from its first 50 intervals) is a *gap*.
    """

    def __init__(self, jump_s: float = 1.0, jump_periods: float = 10.0, gap_periods: float = 25.0,
                 min_gap_s: float = 0.5) -> None:
        self.jump_ns = jump_s * 1e9
        self.jump_periods = jump_periods
        self.gap_periods = gap_periods
        self.min_gap_ns = min_gap_s * 1e9
        self.topics: dict[str, _TopicTiming] = {}
        self._last_log_ns: int | None = None
        self.log_back = 0
        self.log_back_first_s: float | None = None

    def observe(self, topic: str, t_ns: int, log_ns: int) -> None:
        if self._last_log_ns is not None and log_ns < self._last_log_ns - self.jump_ns:
            self.log_back += 1
            if self.log_back_first_s is None:
                self.log_back_first_s = self._last_log_ns * 1e-9
        self._last_log_ns = log_ns
        st = self.topics.get(topic)
        if st is None:
            st = self.topics[topic] = _TopicTiming()
        last = st.last_ns
        st.last_ns = t_ns
        if last is None:
            return
        dt = t_ns - last
        if dt < 0:
            back = -dt
            limit = max(self.jump_ns, self.jump_periods * st.period_ns) if st.period_ns else self.jump_ns
            if back > limit:
                st.jumps_back += 1
                st.largest_back_ns = max(st.largest_back_ns, back)
                if st.first_back_s is None:
                    st.first_back_s = last * 1e-9
            else:
                st.out_of_order += 1
                if st.first_ooo_s is None:
                    st.first_ooo_s = t_ns * 1e-9
                st.last_ns = last  # keep the newest time so one late message counts once
            return
        if st.period_ns is None:
            if dt > 0:
                st.intervals.append(dt)
            if len(st.intervals) >= 50:
                st.period_ns = float(sorted(st.intervals)[len(st.intervals) // 2])
                st.intervals = []
            return
        if st.period_ns <= 0.2e9 and dt > max(self.gap_periods * st.period_ns, self.min_gap_ns):
            st.gaps += 1
            st.largest_gap_ns = max(st.largest_gap_ns, dt)
            if st.first_gap_s is None:
                st.first_gap_s = last * 1e-9

    def issues(self) -> list[BagIssue]:
        out = []
        if self.log_back:
            out.append(BagIssue("warning", "clock_jump", f"the recording (log) clock went backwards {self.log_back} "
                                f"time(s), first after {self.log_back_first_s:.3f} s"))
        for topic, st in sorted(self.topics.items()):
            if st.jumps_back:
                out.append(BagIssue("warning", "clock_jump", f"{topic}: time went backwards {st.jumps_back} time(s) "
                                    f"(largest {st.largest_back_ns * 1e-9:.3f} s, first after {st.first_back_s:.3f} s)",
                                    topic))
            if st.out_of_order:
                out.append(BagIssue("warning", "out_of_order", f"{topic}: {st.out_of_order} message(s) out of order "
                                    f"(first stamped {st.first_ooo_s:.3f} s)", topic))
            if st.gaps:
                out.append(BagIssue("warning", "gap", f"{topic}: {st.gaps} gap(s) far longer than its "
                                    f"{st.period_ns * 1e-6:.1f} ms period (largest {st.largest_gap_ns * 1e-9:.3f} s, "
                                    f"first after {st.first_gap_s:.3f} s)", topic))
        return out


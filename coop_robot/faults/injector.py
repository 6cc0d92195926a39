"""The fault injector: an rclpy node in the harness process, on the session's ROS domain.

It listens to what marks the moments of a turn (``/controller/events``, ``/sim/partner/phase``,
``/sim/ground_truth/robot_ee``) and to the ground truth it is scored on (``/sim/ground_truth/events``,
``/sim/ground_truth/ssm``, whose stamps are also its sim clock), and injects each planned
:class:`~coop_robot.faults.plan.Fault` when its moment comes:

* process faults through ``signal_node(name, signal)`` (the graph runner's hook);
* message faults by publishing on the real topics. Every publisher is created before the graph
  starts, so it is matched by the time a fault fires. Duplicates, replays and re-stamped copies
  come from a buffer of the real publishers' recent messages (the injector's own are told apart
  by their serialized bytes);
* link faults through a relay: the consumer's topics are remapped to ``/faults/...`` for the whole
  session (:data:`coop_robot.faults.plan.LINKS`) and the relay passes messages on at once, except
  while a fault tells it to drop, delay or swap them. Injected messages on a relayed topic go
  through the relay like real ones.

Each fault runs as a generator that yields how long (wall s) to wait before its next step; all
of them, the relays and the moment detection run on the node's executor thread (one 100 Hz
timer), so nothing here needs a lock. Closing a fault's generator (the session ended) runs its
``finally``: a stalled process is always continued.
"""

from __future__ import annotations

import array
import math
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Generator

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, Vector3Stamped
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, JointState, TimeReference
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from coop_robot.control.kinematics import JOINT_NAMES
from coop_robot.control.planning import JointLimits
from coop_robot.faults.moments import MomentTracker
from coop_robot.faults.plan import LINKS, RELAY_PREFIX, TOPIC_GROUPS, Fault
from coop_robot.faults.score import FaultRecord
from coop_robot.geometry import world_geometry
from coop_robot.nodes.common import COMMAND_QOS, EVENT_QOS, LATCHED_QOS, SENSOR_QOS, s_to_stamp, stamp_to_s
from coop_robot.timing.feed import CONTROLLER_EVENTS, GROUND_TRUTH_EVENTS, PARTNER_PHASE
from coop_robot.timing.ssm_sample import GROUND_TRUTH_SSM, SSM_STATUS_NAME

#: Message type and QoS of every topic the injector publishes on or relays.
TOPIC_TYPES = {
    "/partner/in_zone": (Bool, COMMAND_QOS),
    "/partner/hand": (PointStamped, COMMAND_QOS),
    "/partner/hand_velocity": (Vector3Stamped, COMMAND_QOS),
    "/camera/color/image_raw": (Image, SENSOR_QOS),
    "/camera/depth/image_rect_raw": (Image, SENSOR_QOS),
    "/camera/color/camera_info": (CameraInfo, SENSOR_QOS),
    "/joint_states": (JointState, COMMAND_QOS),
    "/policy/decision": (String, COMMAND_QOS),
    "/controller/state": (String, LATCHED_QOS),   # the policy subscribes transient-local
    "/panda_arm_controller/joint_trajectory": (JointTrajectory, COMMAND_QOS),
    "/emergency_stop": (Bool, COMMAND_QOS),
}
COLOR, DEPTH, INFO = "/camera/color/image_raw", "/camera/depth/image_rect_raw", "/camera/color/camera_info"
HAND, VELOCITY, IN_ZONE = "/partner/hand", "/partner/hand_velocity", "/partner/in_zone"
JOINTS, DECISION, TRAJECTORY = "/joint_states", "/policy/decision", "/panda_arm_controller/joint_trajectory"
ROBOT_EE = "/sim/ground_truth/robot_ee"
TICK_S = 0.01
#: How long recent real messages are kept for duplicates and replays (wall s).
BUFFER_S = 1.5
#: Largest stamp a builtin_interfaces/Time carries (int32 seconds).
MAX_STAMP_S = float(2**31 - 1)
#: Publication period of repeated garbage (wall s): the camera's frame period, else one per tick.
CAMERA_PERIOD_S = 1.0 / 30.0

Steps = Generator[float, None, None]


def _seconds(variant: str) -> float:
    """``"0.2s"`` -> 0.2; ``"2^31s"`` -> the largest stamp."""
    text = variant.removesuffix("s")
    return MAX_STAMP_S if text == "2^31" else float(text)


class _Relay:
    """Passes one link's messages from the real topics to ``/faults/...``; drops, delays or swaps
    them while a fault says so (see the module docstring)."""

    def __init__(self, node, name: str, rng: random.Random) -> None:
        self.name = name
        self._rng = rng
        self._pubs = {}
        self._held: dict[str, object] = {}
        self._queue: deque[tuple[float, str, object]] = deque()
        self.mode: tuple[str, float] | None = None
        self.counts = {"passed": 0, "dropped": 0, "delayed": 0, "swapped": 0}
        for topic in LINKS[name].topics:
            msg_type, qos = TOPIC_TYPES[topic]
            self._pubs[topic] = node.create_publisher(msg_type, RELAY_PREFIX + topic, qos)
            node.create_subscription(msg_type, topic, lambda msg, t=topic: self._on(t, msg), qos)

    def _on(self, topic: str, msg) -> None:
        now = time.monotonic()
        kind, value = self.mode or ("", 0.0)
        if kind == "drop" and self._rng.random() < value:
            self.counts["dropped"] += 1
            return
        if kind == "delay" or self._queue:
            # Behind whatever is still queued: a delay that ends does not reorder.
            release = now + value if kind == "delay" else now
            if self._queue:
                release = max(release, self._queue[-1][0])
            self._queue.append((release, topic, msg))
            self.counts["delayed"] += kind == "delay"
            return
        if kind == "reorder":
            held = self._held.pop(topic, None)
            if held is None:
                self._held[topic] = msg
                return
            self._pubs[topic].publish(msg)
            self._pubs[topic].publish(held)
            self.counts["swapped"] += 1
            self.counts["passed"] += 2
            return
        self._pubs[topic].publish(msg)
        self.counts["passed"] += 1

    def release(self, now: float) -> None:
        while self._queue and self._queue[0][0] <= now:
            _, topic, msg = self._queue.popleft()
            self._pubs[topic].publish(msg)
            self.counts["passed"] += 1

    def set_mode(self, kind: str | None, value: float = 0.0) -> None:
        self.mode = (kind, value) if kind else None
        if kind is None:  # a message held for a swap goes on now: nothing newer came after it
            for topic, msg in self._held.items():
                self._pubs[topic].publish(msg)
            self._held.clear()


class FaultInjector:
    """Injects ``faults`` into the graph on ``domain_id``; see the module docstring.

    ``signal_node(name, sig) -> pid`` sends a signal to a node's process (``GraphRunner.signal_node``).
    After :meth:`close`, ``records`` say what was injected when, ``gt_events`` / ``gt_ssm`` hold
    the ground truth the session is scored on (``(t_s, name)``; ``(t_s, separation_m, protective_m,
    robot_closing_mps)``), and ``controller_events`` what the controller announced.
    """

    def __init__(self, faults: list[Fault], domain_id: int, signal_node: Callable[[str, int], int],
                 links: tuple[str, ...] = (), seed: int = 0) -> None:
        self.records = [FaultRecord(f) for f in faults]
        self.gt_events: list[tuple[float, str]] = []
        self.gt_ssm: list[tuple[float, float, float, float]] = []
        self.controller_events: list[tuple[float, str]] = []
        self.sim_now_s = 0.0
        self._signal_node = signal_node
        self._rng = random.Random(seed)
        self._world = world_geometry()
        self._moments = MomentTracker(self._zone())
        self._fired: dict[tuple[str, int], float] = {}        # (moment, occurrence) -> wall time
        self._active: list[tuple[FaultRecord, Steps, list[float]]] = []   # record, steps, [wake wall s]
        self._frozen = False
        self._t0_wall = time.monotonic()
        self._latest_ee: tuple[float, np.ndarray] | None = None

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(domain_id))
        self.node = rclpy.create_node("fault_injector", context=self.context)
        node = self.node
        node.create_subscription(TimeReference, GROUND_TRUTH_EVENTS, self._on_gt_event, EVENT_QOS)
        node.create_subscription(TimeReference, CONTROLLER_EVENTS, self._on_controller_event, EVENT_QOS)
        node.create_subscription(String, PARTNER_PHASE, self._on_phase, LATCHED_QOS)
        node.create_subscription(DiagnosticArray, GROUND_TRUTH_SSM, self._on_ssm, 100)
        node.create_subscription(PointStamped, ROBOT_EE, self._on_ee, 10)

        # Publishers for every topic this session's faults use (matched before any fault fires).
        topics = {t for f in faults if f.category == "message" for t in TOPIC_GROUPS[f.target][0]}
        if any(f.kind in ("depth_nonfinite", "image_garbage") for f in faults):
            topics |= {COLOR, DEPTH}
        # The controller's transient-local e-stop subscription cannot take a volatile publisher: expected.
        quiet = PublisherEventCallbacks(incompatible_qos=lambda _event: None, use_default_callbacks=False)
        self._pubs = {t: node.create_publisher(TOPIC_TYPES[t][0], t, TOPIC_TYPES[t][1],
                                               event_callbacks=quiet if t == "/emergency_stop" else None)
                      for t in sorted(topics)}
        self._latched_estop = None
        if any(f.kind == "estop_burst" and f.variant == "latched_storm" for f in faults):
            self._latched_estop = node.create_publisher(Bool, "/emergency_stop", LATCHED_QOS)
        # Recent real messages of the topics duplicates, replays and re-stamped copies come from.
        buffered = set()
        for f in faults:
            if f.kind in ("duplicate", "replay", "stamp_future", "stamp_past"):
                buffered |= set(TOPIC_GROUPS[f.target][0])
            if f.kind == "hand_nonfinite":
                buffered.add(HAND)
            if f.kind == "depth_nonfinite":
                buffered.add(COLOR)
            if f.kind in ("hostile_trajectory", "joint_states_garbage"):
                buffered.add(JOINTS)
        self._recent: dict[str, deque[tuple[float, bytes]]] = {t: deque() for t in buffered}
        self._sent: dict[str, deque[bytes]] = {t: deque(maxlen=256) for t in buffered}
        for topic in sorted(buffered):
            node.create_subscription(TOPIC_TYPES[topic][0], topic, lambda data, t=topic: self._on_recent(t, data),
                                     TOPIC_TYPES[topic][1], raw=True)
        self.relays = {name: _Relay(node, name, self._rng) for name in links}

        node.create_timer(TICK_S, self._tick)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="fault_injector", daemon=True)

    def _zone(self):
        from coop_robot.geometry import Zone

        return Zone.from_lists(self._world.zone_min_m, self._world.zone_max_m)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start spinning (before the graph starts: relays and publishers must be up first)."""
        self._t0_wall = time.monotonic()
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 -- the context went down under us at close
                if self._stop.is_set() or not self.context.ok():
                    return
                raise

    def freeze(self) -> None:
        """The session has ended: start no more faults and end the running ones (a stalled
        process is continued), from the executor thread at its next tick."""
        self._frozen = True

    def close(self) -> None:
        """Stop spinning, end every running fault, destroy the node and its context."""
        self._frozen = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        for record, steps, _ in self._active:
            self._end(record, steps)
        self._active.clear()
        for relay in self.relays.values():
            relay.set_mode(None)
        self._executor.shutdown()
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)

    def wall_s(self) -> float:
        """Wall seconds since :meth:`start`."""
        return time.monotonic() - self._t0_wall

    # ------------------------------------------------------------------ inputs
    def _on_gt_event(self, msg: TimeReference) -> None:
        self.gt_events.append((stamp_to_s(msg.time_ref), msg.source))

    def _on_controller_event(self, msg: TimeReference) -> None:
        self.controller_events.append((stamp_to_s(msg.time_ref), msg.source))
        self._note_moments(self._moments.controller_event(msg.source, stamp_to_s(msg.time_ref)))

    def _on_phase(self, msg: String) -> None:
        self._note_moments(self._moments.partner_phase(msg.data, self.sim_now_s))

    def _on_ee(self, msg: PointStamped) -> None:
        t = stamp_to_s(msg.header.stamp)
        p = np.array([msg.point.x, msg.point.y, msg.point.z])
        self._note_moments(self._moments.robot_ee(p, t))

    def _on_ssm(self, msg: DiagnosticArray) -> None:
        t = stamp_to_s(msg.header.stamp)
        self.sim_now_s = max(self.sim_now_s, t)
        for status in msg.status:
            if status.name == SSM_STATUS_NAME:
                v = {kv.key: kv.value for kv in status.values}
                try:
                    self.gt_ssm.append((t, float(v["separation_m"]), float(v["protective_distance_m"]),
                                        float(v["robot_closing_mps"])))
                except (KeyError, ValueError):
                    pass  # not a sample the sim writes; the sim's own format is tested elsewhere

    def _on_recent(self, topic: str, data: bytes) -> None:
        sent = self._sent[topic]
        if data in sent:   # one of ours coming back
            sent.remove(data)
            return
        now = time.monotonic()
        recent = self._recent[topic]
        recent.append((now, data))
        while recent and now - recent[0][0] > BUFFER_S:
            recent.popleft()

    def _note_moments(self, moments) -> None:
        now = time.monotonic()
        for m in moments:
            self._fired.setdefault((m.name, m.occurrence), now)

    # ------------------------------------------------------------------ the tick
    def _tick(self) -> None:
        now = time.monotonic()
        for relay in self.relays.values():
            relay.release(now)
        if self._frozen:
            for record, steps, _ in self._active:
                self._end(record, steps)
            self._active.clear()
            return
        # A kill waits until the faults still acting have ended, so their outcome shows.
        busy = any(not r.fault.terminal for r, _, _ in self._active)
        for record in self.records:
            if record.injected or not self._due(record.fault, now) or (record.fault.terminal and busy):
                continue
            record.injected = True
            record.injected_wall_s = round(now - self._t0_wall, 3)
            record.injected_sim_s = self.sim_now_s
            steps = self._steps(record)
            self._active.append((record, steps, [now]))
        still = []
        for record, steps, wake in self._active:
            if now < wake[0]:
                still.append((record, steps, wake))
                continue
            try:
                wake[0] = now + next(steps)
                still.append((record, steps, wake))
            except StopIteration:
                self._cleared(record)
            except Exception as exc:  # noqa: BLE001 -- a fault that cannot be injected is reported, not fatal
                record.detail += f"; injector error: {type(exc).__name__}: {exc}"
                self._cleared(record)
        self._active = still

    def _due(self, fault: Fault, now: float) -> bool:
        if fault.moment == "sim_time":
            return self.sim_now_s >= fault.delay_s
        fired = self._fired.get((fault.moment, fault.occurrence))
        return fired is not None and now >= fired + fault.delay_s

    def _cleared(self, record: FaultRecord) -> None:
        record.cleared_sim_s = self.sim_now_s
        record.cleared_wall_s = round(self.wall_s(), 3)

    def _end(self, record: FaultRecord, steps: Steps) -> None:
        steps.close()   # runs the fault's finally (continue a stalled process, reset a relay)
        if record.cleared_sim_s is None:
            self._cleared(record)
            record.detail += "; cut short: the session ended"

    # ------------------------------------------------------------------ helpers
    def _publish(self, topic: str, msg) -> None:
        data = serialize_message(msg)
        if topic in self._sent:
            self._sent[topic].append(data)
        self._pubs[topic].publish(data)

    def _latest(self, topic: str, age_s: float = 0.0):
        """The newest real message on ``topic`` at least ``age_s`` old (deserialized), or None."""
        recent = self._recent.get(topic)
        if not recent:
            return None
        now = time.monotonic()
        for t, data in reversed(recent):
            if now - t >= age_s:
                return deserialize_message(data, TOPIC_TYPES[topic][0])
        return None

    def _now_stamp(self):
        return s_to_stamp(self.sim_now_s)

    # ------------------------------------------------------------------ the faults
    def _steps(self, record: FaultRecord) -> Steps:
        fault = record.fault
        maker = getattr(self, f"_fault_{fault.kind}")
        return maker(record, fault)

    def _rounds(self, fault: Fault, period_s: float = TICK_S):
        """Round numbers 0, 1, ... for a fault repeated every ``period_s`` for its duration (at least one)."""
        end = time.monotonic() + fault.duration_s
        n = 0
        while True:
            yield n
            n += 1
            if time.monotonic() + period_s > end:
                return

    def _fault_kill(self, record: FaultRecord, fault: Fault) -> Steps:
        sig = getattr(signal, fault.variant)
        pid = self._signal_node(fault.target, sig)
        record.detail = f"{fault.variant} to {fault.target} (pid {pid})"
        return
        yield

    def _fault_stall(self, record: FaultRecord, fault: Fault) -> Steps:
        pid = self._signal_node(fault.target, signal.SIGSTOP)
        record.detail = f"SIGSTOP to {fault.target} (pid {pid}) for {fault.duration_s:.2f} s"
        try:
            yield fault.duration_s
        finally:
            try:
                self._signal_node(fault.target, signal.SIGCONT)
                record.detail += ", then SIGCONT"
            except (ProcessLookupError, KeyError) as exc:
                record.detail += f", SIGCONT failed: {exc}"

    def _link(self, record: FaultRecord, fault: Fault, kind: str, value: float) -> Steps:
        relay = self.relays[fault.target]
        before = dict(relay.counts)
        relay.set_mode(kind, value)
        try:
            yield fault.duration_s
        finally:
            relay.set_mode(None)
            diff = {k: relay.counts[k] - before[k] for k in relay.counts}
            record.detail = (f"{fault.target} relay {kind} {value:g} for {fault.duration_s:.2f} s: "
                             + ", ".join(f"{v} {k}" for k, v in diff.items()))

    def _fault_drop(self, record: FaultRecord, fault: Fault) -> Steps:
        return self._link(record, fault, "drop", float(fault.variant.removeprefix("p")))

    def _fault_delay(self, record: FaultRecord, fault: Fault) -> Steps:
        return self._link(record, fault, "delay", _seconds(fault.variant))

    def _fault_link_reorder(self, record: FaultRecord, fault: Fault) -> Steps:
        return self._link(record, fault, "reorder", 0.0)

    def _fault_duplicate(self, record: FaultRecord, fault: Fault) -> Steps:
        copies = int(fault.variant.removeprefix("x"))
        sent = []
        for topic in TOPIC_GROUPS[fault.target][0]:
            msg = self._latest(topic)
            if msg is None:
                continue
            for _ in range(copies):
                self._publish(topic, msg)
            sent.append(topic)
        record.detail = f"{copies} copies of the newest message on {', '.join(sent) or 'nothing (none received)'}"
        return
        yield

    def _fault_replay(self, record: FaultRecord, fault: Fault) -> Steps:
        age = _seconds(fault.variant)
        sent = []
        for topic in TOPIC_GROUPS[fault.target][0]:
            msg = self._latest(topic, age)
            if msg is not None:
                self._publish(topic, msg)
                stamp = getattr(getattr(msg, "header", None), "stamp", None)
                sent.append(topic + (f" (stamp {stamp_to_s(stamp):.3f} s)" if stamp is not None else ""))
        record.detail = (f"replayed a message >= {age:g} s old on {', '.join(sent)}" if sent
                         else f"nothing {age:g} s old to replay")
        return
        yield

    def _restamp(self, record: FaultRecord, fault: Fault, shift_s: float | None) -> Steps:
        """Copies of the newest messages of the target stamped ``shift_s`` from their own stamp
        (None: stamp zero)."""
        n = 0
        for _ in self._rounds(fault, CAMERA_PERIOD_S if fault.target == "camera" else TICK_S):
            msgs = {t: self._latest(t) for t in TOPIC_GROUPS[fault.target][0]}
            stamp = None
            for topic, msg in msgs.items():
                if msg is None:
                    continue
                if hasattr(msg, "header"):
                    if stamp is None:   # one stamp for the set (colour and depth must pair)
                        stamp = 0.0 if shift_s is None else max(stamp_to_s(msg.header.stamp) + shift_s, 0.0)
                    msg.header.stamp = s_to_stamp(min(stamp, MAX_STAMP_S))
                self._publish(topic, msg)
                n += 1
            yield CAMERA_PERIOD_S if fault.target == "camera" else TICK_S
        record.detail = f"{n} messages on {fault.target} stamped " + (
            "0" if shift_s is None else f"{shift_s:+g} s from their own stamp")

    def _fault_stamp_future(self, record: FaultRecord, fault: Fault) -> Steps:
        return self._restamp(record, fault, _seconds(fault.variant))

    def _fault_stamp_past(self, record: FaultRecord, fault: Fault) -> Steps:
        return self._restamp(record, fault, None if fault.variant == "zero" else -_seconds(fault.variant))

    # -- sensors: camera
    def _image_pair_stamp(self):
        color = self._latest(COLOR)
        t = stamp_to_s(color.header.stamp) + 0.001 if color is not None else self.sim_now_s
        return s_to_stamp(t)

    @staticmethod
    def _image(stamp, width: int, height: int, encoding: str, step: int, data: bytes) -> Image:
        img = Image(width=width, height=height, encoding=encoding, step=step, is_bigendian=0)
        img.header.stamp, img.header.frame_id = stamp, "camera_color_optical_frame"
        img.data = array.array("B", data)
        return img

    def _garbage_pair(self, variant: str, stamp) -> tuple[Image, Image]:
        w, h = 320, 240
        gray = bytes(w * h * 3)
        depth = np.full((h, w), 1.0, np.float32).tobytes()
        good_color = self._image(stamp, w, h, "rgb8", 3 * w, gray)
        good_depth = self._image(stamp, w, h, "32FC1", 4 * w, depth)
        if variant == "color_encoding":
            return self._image(stamp, w, h, "yuv422", 2 * w, bytes(2 * w * h)), good_depth
        if variant == "depth_encoding":
            return good_color, self._image(stamp, w, h, "rgb8", 3 * w, gray)
        if variant == "short_data":
            return self._image(stamp, w, h, "rgb8", 3 * w, bytes(100)), good_depth
        if variant == "zero_size":
            return self._image(stamp, 0, 0, "rgb8", 0, b""), self._image(stamp, 0, 0, "32FC1", 0, b"")
        if variant == "step_too_small":
            return self._image(stamp, w, h, "rgb8", 10, bytes(10 * h)), good_depth
        if variant == "size_mismatch":
            small = np.full((h // 2, w // 2), 1.0, np.float32).tobytes()
            return good_color, self._image(stamp, w // 2, h // 2, "32FC1", 2 * w, small)
        if variant == "huge_dims":
            return (self._image(stamp, 2**31 - 1, 2**31 - 1, "rgb8", 2**32 - 1, b""),
                    self._image(stamp, 2**31 - 1, 2**31 - 1, "32FC1", 2**32 - 1, b""))
        raise ValueError(f"unknown image_garbage variant {variant!r}")

    def _fault_image_garbage(self, record: FaultRecord, fault: Fault) -> Steps:
        n = 0
        for _ in self._rounds(fault, CAMERA_PERIOD_S):
            color, depth = self._garbage_pair(fault.variant, self._image_pair_stamp())
            self._publish(COLOR, color)
            self._publish(DEPTH, depth)
            n += 1
            yield CAMERA_PERIOD_S
        record.detail = f"{n} {fault.variant} colour/depth pairs"

    def _fault_depth_nonfinite(self, record: FaultRecord, fault: Fault) -> Steps:
        value = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "zero": 0.0, "negative": -1.0}[fault.variant]
        n = 0
        for _ in self._rounds(fault, CAMERA_PERIOD_S):
            color = self._latest(COLOR)
            stamp = self._image_pair_stamp()
            if color is None:
                color = self._image(stamp, 320, 240, "rgb8", 960, bytes(320 * 240 * 3))
            color.header.stamp = stamp
            depth = self._image(stamp, color.width, color.height, "32FC1", 4 * color.width,
                                np.full((color.height, color.width), value, np.float32).tobytes())
            self._publish(COLOR, color)
            self._publish(DEPTH, depth)
            n += 1
            yield CAMERA_PERIOD_S
        record.detail = f"{n} frames: the newest colour image with depth {fault.variant}"

    def _fault_camera_info_garbage(self, record: FaultRecord, fault: Fault) -> Steps:
        n = 0
        for _ in self._rounds(fault, CAMERA_PERIOD_S):
            info = CameraInfo(width=320, height=240, distortion_model="plumb_bob")
            info.header.stamp, info.header.frame_id = self._now_stamp(), "camera_color_optical_frame"
            info.k = [277.0, 0.0, 160.0, 0.0, 277.0, 120.0, 0.0, 0.0, 1.0]
            if fault.variant == "nan_k":
                info.k = [math.nan] * 9
            elif fault.variant == "zero_size":
                info.width = info.height = 0
            elif fault.variant == "zero_fx":
                info.k = [0.0, 0.0, 160.0, 0.0, 0.0, 120.0, 0.0, 0.0, 1.0]
            elif fault.variant == "binning":
                info.binning_x = info.binning_y = 4
            self._publish(INFO, info)
            n += 1
            yield CAMERA_PERIOD_S
        record.detail = f"{n} camera_info messages ({fault.variant})"

    # -- sensors: perception's outputs
    def _perception_set(self, hand_m, velocity_mps, in_zone: bool) -> None:
        stamp = self._now_stamp()
        self._publish(IN_ZONE, Bool(data=in_zone))
        hand = PointStamped()
        hand.header.stamp, hand.header.frame_id = stamp, "world"
        hand.point.x, hand.point.y, hand.point.z = (float(v) for v in hand_m)
        self._publish(HAND, hand)
        vel = Vector3Stamped()
        vel.header = hand.header
        vel.vector.x, vel.vector.y, vel.vector.z = (float(v) for v in velocity_mps)
        self._publish(VELOCITY, vel)

    def _fault_hand_nonfinite(self, record: FaultRecord, fault: Fault) -> Steps:
        bad = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "huge": 1e308,
               "velocity_nan": math.nan, "velocity_huge": 1e308}[fault.variant]
        n = 0
        for _ in self._rounds(fault):
            if fault.variant.startswith("velocity_"):
                real = self._latest(HAND)
                hand = (real.point.x, real.point.y, real.point.z) if real is not None else self._world.partner_rest_m
            else:
                hand = (bad, bad, bad)
            self._perception_set(hand, (bad, bad, bad), False)
            n += 1
            yield TICK_S
        record.detail = f"{n} perception sets: hand/velocity {fault.variant}, in_zone false"

    def _fault_spoof_outside(self, record: FaultRecord, fault: Fault) -> Steps:
        per_tick = 1 if fault.variant == "100Hz" else 3
        n = 0
        for _ in self._rounds(fault):
            for _ in range(per_tick):
                self._perception_set(self._world.partner_rest_m, (0.0, 0.0, 0.0), False)
                n += 1
            yield TICK_S
        record.detail = (f"{n} spoofed perception sets: hand at rest at {list(self._world.partner_rest_m)} m "
                         f"(outside the zone), in_zone false")

    # -- sensors: joint states, decisions, controller state
    def _fault_joint_states_garbage(self, record: FaultRecord, fault: Fault) -> Steps:
        names = list(JOINT_NAMES)
        n = 0
        for _ in self._rounds(fault):
            msg = JointState()
            msg.header.stamp = self._now_stamp()
            v = fault.variant
            if v in ("nan", "inf", "huge"):
                x = {"nan": math.nan, "inf": math.inf, "huge": 1e308}[v]
                msg.name, msg.position, msg.velocity = names, [x] * 7, [x] * 7
            elif v == "wrong_names":
                msg.name, msg.position = [f"joint_{i}" for i in range(7)], [0.0] * 7
            elif v == "short":
                msg.name, msg.position = names[:3], [0.0] * 3
            # "empty": no names, no positions
            self._publish(JOINTS, msg)
            n += 1
            yield TICK_S
        record.detail = f"{n} /joint_states messages ({fault.variant})"

    def _fault_decision_garbage(self, record: FaultRecord, fault: Fault) -> Steps:
        text = {"empty": "", "upper_case": "ACT", "nbsp": "act\u00a0", "long": "act" * 10_000}[fault.variant]
        n = 0
        for _ in self._rounds(fault):
            self._publish(DECISION, String(data=text))
            n += 1
            yield TICK_S
        record.detail = f"{n} decisions {fault.variant} ({len(text)} characters)"

    def _fault_decision_spoof(self, record: FaultRecord, fault: Fault) -> Steps:
        n = 0
        for _ in self._rounds(fault):
            self._publish(DECISION, String(data="act"))
            n += 1
            yield TICK_S
        record.detail = f"{n} spoofed 'act' decisions"

    def _fault_state_garbage(self, record: FaultRecord, fault: Fault) -> Steps:
        text = {"empty": "", "unknown": "flying ssm_warp", "long": "x" * 100_000}[fault.variant]
        n = 0
        for _ in self._rounds(fault):
            self._publish("/controller/state", String(data=text))
            n += 1
            yield TICK_S
        record.detail = f"{n} /controller/state messages ({fault.variant})"

    # -- the arm's command input
    def _current_joints(self) -> list[float]:
        msg = self._latest(JOINTS)
        if msg is not None:
            pos = dict(zip(msg.name, msg.position))
            if all(n in pos for n in JOINT_NAMES):
                return [float(pos[n]) for n in JOINT_NAMES]
        return list(self._world.robot_home_joint_positions_rad)

    def _fault_hostile_trajectory(self, record: FaultRecord, fault: Fault) -> Steps:
        q = self._current_joints()
        v = fault.variant
        names = list(JOINT_NAMES)
        pts = [(1.0, list(q), None)]
        # A zero stamp starts on receipt (JTC semantics): the first point is as far away as planned
        # however late the message arrives.
        stamp = s_to_stamp(0.0)
        effort = None
        if v == "huge_positions":
            pts = [(1.0, [1e308] * 7, None)]
        elif v == "beyond_limits":
            upper = JointLimits.panda().upper_rad
            pts = [(2.0, [float(u) + 0.5 for u in upper], None)]
        elif v == "first_point_1ms":
            pts = [(0.001, [x + 0.5 for x in q], None), (1.0, [x + 0.5 for x in q], None)]
        elif v == "nan_positions":
            pts = [(1.0, [math.nan] * 7, None)]
        elif v == "inf_velocities":
            pts = [(0.5, list(q), [math.inf] * 7), (1.0, list(q), [0.0] * 7)]
        elif v == "wrong_joint_names":
            names = [f"joint{i + 1}" for i in range(7)]
        elif v == "length_mismatch":
            pts = [(1.0, list(q[:5]), None)]
        elif v == "decreasing_time":
            pts = [(1.0, list(q), None), (0.5, list(q), None)]
        elif v == "empty_points":
            pts = []
        elif v == "far_future_stamp":
            stamp = s_to_stamp(MAX_STAMP_S)
        elif v == "effort_values":
            effort = [1.0] * 7
        msg = JointTrajectory(joint_names=names)
        msg.header.stamp = stamp
        for t, pos, vel in pts:
            p = JointTrajectoryPoint(positions=pos)
            if vel is not None:
                p.velocities = vel
            if effort is not None:
                p.effort = effort
            sec = int(t)
            p.time_from_start.sec, p.time_from_start.nanosec = sec, int(round((t - sec) * 1e9))
            msg.points.append(p)
        self._publish(TRAJECTORY, msg)
        record.detail = f"one {v} trajectory ({len(pts)} points) from q={np.round(q, 2).tolist()}"
        return
        yield

    def _fault_estop_burst(self, record: FaultRecord, fault: Fault) -> Steps:
        pub = self._latched_estop if fault.variant == "latched_storm" else self._pubs["/emergency_stop"]
        n = 0
        try:
            if fault.variant == "hold":
                pub.publish(Bool(data=True))
                n += 1
                yield fault.duration_s
            else:
                for i in self._rounds(fault):
                    for k in range(4):   # 400 messages/s, alternating
                        pub.publish(Bool(data=(i * 4 + k) % 2 == 0))
                        n += 1
                    yield TICK_S
        finally:
            pub.publish(Bool(data=False))   # every burst ends with a release
            n += 1
            record.detail = f"{n} /emergency_stop messages ({fault.variant}), the last a release"

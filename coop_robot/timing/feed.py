"""One way to feed the turn tracker: plain values of the interaction topics in, turn events out.

The live ``turn_tracker`` node and the offline bag analysis (``coop-robot analyze``) both turn
the same topics into :class:`~coop_robot.timing.tracker.TurnTracker` events; this module is the
one place that does it (no rclpy: callers pass plain values).

* **Ground truth** (simulation only): the events of ``/sim/ground_truth/events`` with their
  ``time_ref`` stamps.
* **Perception**: partner edges from ``/partner/in_zone`` sampled at the stamp of the frame's
  ``/partner/hand`` (in_zone of a frame is published just before its hand point); robot edges
  from ``/joint_states`` by forward kinematics of the end effector against the shared zone.
  Joint states are merged by joint name (latest position per joint), so a gripper that publishes
  its fingers in its own message, or joints in any order, is fine.
* Both: from ``/controller/events`` ``reach_start`` (response latency), ``home`` (the end of the
  robot's activity, fluency) and the SSM mode changes ``ssm_stop`` / ``ssm_scaled`` /
  ``ssm_resume``; with perception scoring the sim's contact events still count (there is no
  perceived contact).
* Separation samples (:class:`~coop_robot.timing.ssm_sample.SsmSample`): ``/sim/ground_truth/ssm``
  when scoring on ground truth, the controller's ``/controller/ssm`` when scoring on perception.
* The partner's turn (ground truth only): ``partner_turn_start`` / ``partner_withdraw_start`` /
  ``partner_turn_end`` as events on ``/sim/ground_truth/events`` when the sim publishes them, else
  derived from ``/sim/partner/phase`` (:class:`~coop_robot.timing.tracker.PartnerTurnEdges`, at the
  time the phase message was received or logged). Once any arrives as an event, the phase is no
  longer used (the segmenter ignores a repeated start or end).

:class:`TurnFeed` with ``scoring="auto"`` chooses ground truth when a ground-truth event arrives
and perception after ``auto_wait_s`` without one (the live rule); the analysis of a recording
knows the whole bag and runs one feed per source (:func:`scoring_for_recording`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from coop_robot.control.kinematics import JOINT_NAMES as ARM_JOINTS
from coop_robot.geometry import Zone, world_geometry
from coop_robot.timing.metrics import PARTNER_TURN_EVENTS, SSM_EVENTS, TurnRecord
from coop_robot.timing.ssm_sample import CONTROLLER_SSM, GROUND_TRUTH_SSM, SsmSample
from coop_robot.timing.tracker import SCORING_SOURCES, OccupancyEdges, PartnerTurnEdges, TurnTracker

GROUND_TRUTH_EVENTS = "/sim/ground_truth/events"
CONTROLLER_EVENTS = "/controller/events"
PARTNER_IN_ZONE = "/partner/in_zone"
PARTNER_HAND = "/partner/hand"
JOINT_STATES = "/joint_states"
PARTNER_PHASE = "/sim/partner/phase"
#: Occupancy and contact events taken from /sim/ground_truth/events (others, e.g. planned times, are ignored).
GROUND_TRUTH_NAMES = frozenset({"partner_enter", "partner_exit", "robot_enter", "robot_exit",
                                "contact_begin", "contact_end"})
#: Events taken from /controller/events.
CONTROLLER_NAMES = frozenset({"reach_start", "home", *SSM_EVENTS})
#: Topics perception scoring cannot do without.
PERCEPTION_INPUTS = (PARTNER_IN_ZONE, PARTNER_HAND, JOINT_STATES)
#: Every topic the feed reads (their types: coop_robot.recording.topics.INTERACTION_TOPICS).
FEED_TOPICS = (GROUND_TRUTH_EVENTS, CONTROLLER_EVENTS, PARTNER_IN_ZONE, PARTNER_HAND, JOINT_STATES,
               GROUND_TRUTH_SSM, CONTROLLER_SSM, PARTNER_PHASE)
#: The SSM sample topic each scoring source uses.
SSM_TOPIC_FOR = {"ground_truth": GROUND_TRUTH_SSM, "perception": CONTROLLER_SSM}
SCORING_CHOICES = ("auto", *SCORING_SOURCES)
#: After this many /joint_states messages without all arm joints, the feed reports a problem (a
#: gripper's own message may come first; a driver that never names panda_joint1..7 is a problem).
JOINT_MESSAGES_BEFORE_COMPLAINT = 20
#: Name layouts of /joint_states messages remembered (each maps names to arm positions once).
MAX_JOINT_LAYOUTS = 64
#: Joint states wait for forward kinematics in batches of this size (one vectorised call).
FK_BATCH = 128
#: Checking a recorded live result against a re-scoring of the same recording (coop-robot analyze):
#: a turn's gap may differ by one camera frame period plus this margin (perception edges fall on
#: frames; ground truth agrees to the nanosecond).
LIVE_CHECK_MARGIN_S = 0.010
#: Camera rate assumed when the frame period cannot be measured (a RealSense's 30 Hz, as the
#: simulated camera's camera_rate_hz in config/sim.yaml).
FALLBACK_CAMERA_RATE_HZ = 30.0


def scoring_for_recording(ground_truth_events: int) -> str:
    """The scoring source of a recording: ground truth only when it holds ground-truth events
    (from /sim/ground_truth/events; nothing else in a bag is ground truth), else perception."""
    return "ground_truth" if ground_truth_events > 0 else "perception"


def live_check_tolerance_s(frame_period_s: float | None) -> float:
    """How far a recorded live gap may be from the offline one: one camera frame + a margin."""
    period = frame_period_s if frame_period_s and frame_period_s > 0 else 1.0 / FALLBACK_CAMERA_RATE_HZ
    return period + LIVE_CHECK_MARGIN_S


class JointStateMerger:
    """The latest position of every arm joint, from JointState messages that may each hold only
    some joints (arm and gripper published separately), in any order."""

    def __init__(self, arm_joints: Sequence[str] = ARM_JOINTS) -> None:
        self.arm_joints = tuple(arm_joints)
        self.positions_rad: dict[str, float] = {}     # arm joint -> latest position (rad)
        self.names_seen: set[str] = set()
        self.messages = 0
        # Per message layout (names tuple): (index of every name, positions of the arm joints in it).
        self._layouts: dict[tuple[str, ...], list[tuple[str, int]]] = {}

    def update(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray | None:
        """Merge one message; return the arm's joint positions (rad, in ``arm_joints`` order) when
        the message moved an arm joint and every arm joint is known, else None.

        Raises ValueError when the message has fewer positions than names."""
        self.messages += 1
        key = tuple(names)
        if len(positions) < len(key):
            raise ValueError(f"/joint_states message has {len(positions)} positions for {len(key)} names "
                             f"{list(key)}; expected one position per name")
        arm = self._layouts.get(key)
        if arm is None:
            if len(self._layouts) >= MAX_JOINT_LAYOUTS:   # a driver that shuffles every message
                self._layouts.clear()
            arm = self._layouts[key] = [(name, i) for i, name in enumerate(key) if name in self.arm_joints]
            self.names_seen.update(key)
        for name, i in arm:
            self.positions_rad[name] = float(positions[i])
        if not arm or self.missing:
            return None
        return np.array([self.positions_rad[j] for j in self.arm_joints], dtype=float)

    @property
    def missing(self) -> list[str]:
        """Arm joints no message has named yet."""
        return [j for j in self.arm_joints if j not in self.positions_rad]

    def problem(self) -> str | None:
        """Why the arm's pose is still unknown after enough messages, or None."""
        if self.messages < JOINT_MESSAGES_BEFORE_COMPLAINT or not self.missing:
            return None
        return (f"after {self.messages} /joint_states messages there is still no position for {self.missing} "
                f"(joints named so far: {sorted(self.names_seen)}); expected {list(self.arm_joints)}")


@dataclass
class Released:
    """What one :meth:`TurnFeed.release` produced."""

    events: list[tuple[str, float]] = field(default_factory=list)   # (name, t_s) fed to the segmenter
    records: list[TurnRecord] = field(default_factory=list)         # turns completed
    dropped: int = 0                                                # events newly dropped as too late
    chosen: str | None = None                                       # scoring source chosen by this call


class TurnFeed:
    """Feeds one :class:`TurnTracker` from the interaction topics' plain values (see module doc).

    Times are seconds on the graph clock (stamps of the messages). ``now_s`` in :meth:`release` is
    the caller's clock: the node's clock live, the bag's log time offline.
    """

    def __init__(self, scoring: str = "auto", *, zone: Zone, robot_base_m=None,
                 reorder_window_s: float = 4.0, stats_window: int = 20, auto_wait_s: float = 3.0,
                 fk_batch: int = FK_BATCH) -> None:
        if scoring not in SCORING_CHOICES:
            raise ValueError(f"scoring must be one of {SCORING_CHOICES}, got {scoring!r}")
        if not (math.isfinite(auto_wait_s) and auto_wait_s >= 0):
            raise ValueError(f"auto_wait_s must be a finite value >= 0 (s), got {auto_wait_s!r}")
        if fk_batch < 1:
            raise ValueError(f"fk_batch must be >= 1, got {fk_batch!r}")
        self.requested = scoring
        self.zone = zone
        base = world_geometry().robot_base_m if robot_base_m is None else robot_base_m
        self.robot_base_m = [float(v) for v in base]
        self.reorder_window_s = reorder_window_s
        self.stats_window = stats_window
        self.auto_wait_s = auto_wait_s
        self.fk_batch = fk_batch
        self.tracker: TurnTracker | None = None
        self.joints = JointStateMerger()
        self.ground_truth_events = 0
        self._partner_edges = OccupancyEdges("partner")
        self._partner_turn_edges = PartnerTurnEdges()
        self._turn_events_published = False   # partner_turn_* came as ground-truth events
        self._robot_edges = OccupancyEdges("robot")
        self._in_zone: bool | None = None
        self._fk = None
        self._batch_t: list[float] = []
        self._batch_q: list[np.ndarray] = []
        self._start_s: float | None = None
        self._chosen_now: str | None = None
        if scoring != "auto":
            self._choose(scoring)

    # --- scoring source -----------------------------------------------------------------------
    @property
    def scoring(self) -> str | None:
        """The source turns are scored on; None while ``auto`` has not decided yet."""
        return self.tracker.scoring if self.tracker is not None else None

    def _choose(self, scoring: str) -> None:
        self.tracker = TurnTracker(scoring=scoring, reorder_window_s=self.reorder_window_s,
                                   stats_window=self.stats_window)
        self._chosen_now = scoring

    # --- inputs -----------------------------------------------------------------------------
    def ground_truth_event(self, name: str, t_s: float) -> None:
        """An event of /sim/ground_truth/events (``source``, ``time_ref`` in s)."""
        if name in GROUND_TRUTH_NAMES:
            self.ground_truth_events += 1
        if self.tracker is None and self.requested == "auto":
            self._choose("ground_truth")
        if name in PARTNER_TURN_EVENTS:
            self._turn_events_published = True
            if self.scoring == "ground_truth":
                self.tracker.push(name, t_s)
        elif self.scoring == "ground_truth" and name in GROUND_TRUTH_NAMES:
            self.tracker.push(name, t_s)
        elif self.scoring == "perception" and name.startswith("contact"):
            self.tracker.push(name, t_s)

    def controller_event(self, name: str, t_s: float) -> None:
        """An event of /controller/events: ``reach_start`` (response latency), ``home`` (end of the
        robot's activity) and the SSM mode changes; others are ignored."""
        if self.tracker is not None and name in CONTROLLER_NAMES:
            self.tracker.push(name, t_s)

    def partner_phase(self, phase: str, t_s: float) -> None:
        """/sim/partner/phase (ground truth) received or logged at ``t_s`` (s): the partner's turn
        events, unless the sim publishes them as events."""
        if self._turn_events_published:
            return
        events = self._partner_turn_edges.update(phase, t_s)
        if self.scoring == "ground_truth":
            for name, t in events:
                self.tracker.push(name, t)

    def ssm_sample(self, topic: str, sample: SsmSample) -> None:
        """An SSM sample from ``topic`` (:data:`GROUND_TRUTH_SSM` or :data:`CONTROLLER_SSM`); used
        when it is the scoring source's (:data:`SSM_TOPIC_FOR`)."""
        if self.tracker is not None and SSM_TOPIC_FOR[self.tracker.scoring] == topic:
            self.tracker.push_separation(sample.t_s, sample.separation_m, sample.protective_distance_m,
                                         sample.robot_closing_mps)

    def partner_in_zone(self, inside: bool) -> None:
        """/partner/in_zone: the perceived flag of the frame whose /partner/hand comes next."""
        self._in_zone = bool(inside)

    def partner_hand(self, stamp_s: float) -> None:
        """/partner/hand: its header stamp is the frame time the last in_zone flag belongs to."""
        if self.scoring == "perception" and self._in_zone is not None:
            for name, t in self._partner_edges.sample(self._in_zone, stamp_s):
                self.tracker.push(name, t)

    def joint_state(self, stamp_s: float, names: Sequence[str], positions: Sequence[float]) -> None:
        """/joint_states (header stamp in s); partial messages are merged by joint name.

        Raises ValueError for a message with fewer positions than names (it is not used)."""
        if self.scoring != "perception":
            return
        q = self.joints.update(names, positions)
        if q is None:
            return
        self._batch_t.append(float(stamp_s))
        self._batch_q.append(q)
        if len(self._batch_t) >= self.fk_batch:
            self._flush_joints()

    def _flush_joints(self) -> None:
        if not self._batch_t:
            return
        if self._fk is None:
            from coop_robot.control.kinematics import PandaKinematics

            self._fk = PandaKinematics(base_m=self.robot_base_m)
        ee = self._fk.fk_many(np.vstack(self._batch_q))
        inside = self.zone.contains_many(ee) & np.all(np.isfinite(ee), axis=1)
        for t_s, flag in zip(self._batch_t, inside.tolist()):
            for name, t in self._robot_edges.sample(bool(flag), t_s):
                self.tracker.push(name, t)
        self._batch_t, self._batch_q = [], []

    def joint_state_problem(self) -> str | None:
        """Why /joint_states cannot place the robot (perception scoring), or None."""
        return self.joints.problem() if self.scoring == "perception" else None

    # --- output -----------------------------------------------------------------------------
    def release(self, now_s: float, flush: bool = False) -> Released:
        """Feed every event older than the reorder window (all with ``flush``) to the segmenter.

        With ``scoring="auto"`` and no ground truth yet, this is where perception is chosen once
        ``auto_wait_s`` has passed since the first call with ``now_s > 0``."""
        out = Released()
        if self.tracker is None:
            if self._start_s is None and now_s > 0:
                self._start_s = now_s
            if self._start_s is not None and now_s - self._start_s > self.auto_wait_s:
                self._choose("perception")
            out.chosen, self._chosen_now = self._chosen_now, None
            return out
        if self._start_s is None and now_s > 0:
            self._start_s = now_s
        out.chosen, self._chosen_now = self._chosen_now, None
        self._flush_joints()
        before = self.tracker.late_events
        out.events, out.records = self.tracker.release(now_s, flush=flush)
        out.dropped = self.tracker.late_events - before
        return out

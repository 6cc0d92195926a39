"""What a fault is, which faults exist, and how a campaign draws them (no ROS).

A :class:`Fault` says *what* goes wrong (``kind`` and ``variant``), *where* (``target``: a node, a
topic group or a link), *when* (``moment``: a moment of a turn, and which ``occurrence`` of it,
plus ``delay_s``) and for *how long* (``duration_s``). Times the harness acts on are wall-clock
seconds, as a real fault's would be (a stalled process is stopped for wall time, a delayed link
holds messages for wall time); what it records is sim time (``/sim/ground_truth/*``).

The kinds, by how they are injected (:data:`FAULT_KINDS`):

* **process** faults act on a node's process through the graph runner: ``kill`` (SIGKILL,
  SIGTERM or SIGINT) and ``stall`` (SIGSTOP for ``duration_s``, then SIGCONT);
* **link** faults act on one consumer's input through a relay in the harness (the consumer's
  topics are remapped to ``/faults/...`` for the whole session, see :data:`LINKS`): ``drop``,
  ``delay`` and ``link_reorder`` (adjacent messages swapped);
* **message** faults publish extra messages on the real topics: garbage and non-finite values on
  every sensor input, stamps from the future and the past, duplicated and replayed (reordered)
  recent messages, spoofed perception, hostile trajectories to the arm and e-stop bursts.

A kill ends the session (the runner names the node); every other fault is one the graph should
survive. :func:`draw_session` puts at most one kill in a session, in the extra turn after the
faulted ones, so that the faults before it have been injected and watched for a turn.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

#: The graph's node processes (coop_robot.graph.sim_graph), the targets of process faults.
NODES = ("coop_sim", "perception", "policy", "controller", "turn_tracker")

#: Moments of a turn a fault can be timed to (coop_robot.faults.moments detects them):
#: ``partner_reach`` the partner starts its reach into the zone (``/sim/partner/phase`` reaching),
#: ``partner_dwell`` the partner's hand rests in the zone (phase dwelling), ``reach`` the robot
#: starts its reach (``reach_start`` on ``/controller/events``), ``before_commit`` the robot's
#: uncommitted reach has come close to its commit point (ground-truth end effector, see
#: :func:`coop_robot.faults.moments.before_commit_distance_m`), ``robot_act`` the robot is in the
#: zone acting (``act_start``), ``sim_time`` a sim time (``delay_s`` is then sim seconds after 0).
MOMENTS = ("partner_reach", "partner_dwell", "reach", "before_commit", "robot_act", "sim_time")

#: Topic groups of message faults: name -> (topics published, nodes that consume them).
TOPIC_GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "perception": (("/partner/in_zone", "/partner/hand", "/partner/hand_velocity"),
                   ("controller", "policy", "turn_tracker", "coop_sim")),
    "in_zone": (("/partner/in_zone",), ("controller", "policy", "turn_tracker")),
    "camera": (("/camera/color/image_raw", "/camera/depth/image_rect_raw"), ("perception",)),
    "camera_info": (("/camera/color/camera_info",), ("perception",)),
    "joint_states": (("/joint_states",), ("controller", "turn_tracker", "policy")),
    "decision": (("/policy/decision",), ("controller", "coop_sim")),
    "controller_state": (("/controller/state",), ("policy",)),
    "trajectory": (("/panda_arm_controller/joint_trajectory",), ("coop_sim",)),
    "estop": (("/emergency_stop",), ("controller",)),
}

#: Prefix of the remapped topics a link relay republishes on.
RELAY_PREFIX = "/faults"


@dataclass(frozen=True)
class Link:
    """A consumer's input that a relay in the harness can drop, delay or reorder: ``node`` gets
    ``topics`` remapped to ``RELAY_PREFIX + topic`` for the whole session."""

    node: str
    topics: tuple[str, ...]

    def remappings(self) -> tuple[tuple[str, str], ...]:
        return tuple((t, RELAY_PREFIX + t) for t in self.topics)


#: The interposed links: perception's output into the controller, the controller's commands into the arm.
LINKS = {
    "perception_to_controller": Link("controller", TOPIC_GROUPS["perception"][0]),
    "controller_to_arm": Link("coop_sim", TOPIC_GROUPS["trajectory"][0]),
}


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault: how it is injected, what it may target, its variants, and whether it
    is expected to end the session (``terminal``)."""

    category: str                  # process | link | message
    targets: tuple[str, ...]
    variants: tuple[str, ...] = ("",)
    terminal: bool = False
    duration_s: tuple[float, float] = (0.0, 0.0)    # drawn uniformly (wall s); (0, 0): one shot
    description: str = ""


FAULT_KINDS: dict[str, FaultKind] = {
    "kill": FaultKind("process", NODES, ("SIGKILL", "SIGTERM", "SIGINT"), terminal=True,
                      description="the node's process is killed with the signal"),
    "stall": FaultKind("process", NODES, duration_s=(0.3, 2.5),
                       description="the node's process is stopped (SIGSTOP) for the duration, then continued"),
    "drop": FaultKind("link", tuple(LINKS), ("p0.5", "p0.9", "p1.0"), duration_s=(0.3, 1.5),
                      description="the relay drops each message with the probability"),
    "delay": FaultKind("link", tuple(LINKS), ("0.05s", "0.2s", "0.5s"), duration_s=(0.5, 2.0),
                       description="the relay holds each message for the delay"),
    "link_reorder": FaultKind("link", tuple(LINKS), duration_s=(0.5, 2.0),
                              description="the relay swaps each pair of consecutive messages"),
    "duplicate": FaultKind("message", ("perception", "joint_states", "decision", "trajectory"), ("x2", "x10"),
                           description="the newest message of the topics is published again, that many times"),
    "replay": FaultKind("message", ("perception", "in_zone", "joint_states", "decision", "trajectory"),
                        ("0.1s", "0.3s", "1.0s"),
                        description="a message that old is published again after newer ones (reordering)"),
    "image_garbage": FaultKind("message", ("camera",), (
        "color_encoding", "depth_encoding", "short_data", "zero_size", "step_too_small", "size_mismatch",
        "huge_dims"), duration_s=(0.0, 0.5), description="malformed colour/depth image pairs, fresh stamps"),
    "depth_nonfinite": FaultKind("message", ("camera",), ("nan", "inf", "-inf", "zero", "negative"),
                                 duration_s=(0.0, 0.5),
                                 description="the newest colour image with a depth image of the value"),
    "camera_info_garbage": FaultKind("message", ("camera_info",), ("nan_k", "zero_size", "zero_fx", "binning"),
                                     duration_s=(0.0, 0.5), description="malformed camera_info messages"),
    "hand_nonfinite": FaultKind("message", ("perception",), ("nan", "inf", "-inf", "huge", "velocity_nan",
                                                             "velocity_huge"),
                                duration_s=(0.0, 0.5),
                                description="hand/velocity of the value with in_zone false, fresh stamps"),
    "joint_states_garbage": FaultKind("message", ("joint_states",), ("nan", "inf", "huge", "wrong_names",
                                                                     "short", "empty"),
                                      duration_s=(0.0, 0.5), description="malformed /joint_states"),
    "decision_garbage": FaultKind("message", ("decision",), ("empty", "upper_case", "nbsp", "long"),
                                  duration_s=(0.0, 0.5), description="decisions that are not act/wait/yield"),
    "decision_spoof": FaultKind("message", ("decision",), ("act",), duration_s=(0.5, 2.0),
                                description="'act' at 100 Hz whatever the policy says"),
    "state_garbage": FaultKind("message", ("controller_state",), ("empty", "unknown", "long"),
                               duration_s=(0.0, 0.5), description="malformed /controller/state (the policy's input)"),
    "stamp_future": FaultKind("message", ("perception", "camera", "joint_states"), ("0.5s", "60s", "2^31s"),
                              duration_s=(0.0, 0.5), description="the newest message again, stamped ahead"),
    "stamp_past": FaultKind("message", ("perception", "camera", "joint_states"), ("0.5s", "60s", "zero"),
                            duration_s=(0.0, 0.5), description="the newest message again, stamped behind"),
    "spoof_outside": FaultKind("message", ("perception",), ("100Hz", "300Hz"), duration_s=(0.5, 2.0),
                               description="a hand at rest at the partner's rest point (outside the zone), "
                                           "in_zone false, fresh stamps, at the rate"),
    "hostile_trajectory": FaultKind("message", ("trajectory",), (
        "huge_positions", "beyond_limits", "first_point_1ms", "nan_positions", "inf_velocities",
        "wrong_joint_names", "length_mismatch", "decreasing_time", "empty_points", "far_future_stamp",
        "effort_values"), description="a trajectory the arm must refuse (or, empty, a stop)"),
    "estop_burst": FaultKind("message", ("estop",), ("storm", "latched_storm", "hold"), duration_s=(0.2, 1.5),
                             description="stop/release storm on /emergency_stop (hold: stop, then release), "
                                         "ending with a release"),
}

#: Moments a campaign draws from, with weights (the issue names reach, before_commit, partner_dwell).
CAMPAIGN_MOMENTS = {"reach": 3, "before_commit": 3, "partner_dwell": 3, "partner_reach": 1, "robot_act": 1}
#: Moments a kill is drawn at (the extra turn).
KILL_MOMENTS = ("reach", "before_commit", "partner_dwell")


class FaultPlanError(ValueError):
    """A fault description is inconsistent (unknown kind, target, variant or moment)."""


@dataclass(frozen=True)
class Fault:
    """One fault to inject: see the module docstring."""

    kind: str
    target: str
    moment: str
    occurrence: int = 1
    delay_s: float = 0.0
    duration_s: float = 0.0
    variant: str = ""
    fault_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = FAULT_KINDS.get(self.kind)
        if spec is None:
            raise FaultPlanError(f"fault kind must be one of {sorted(FAULT_KINDS)}, got {self.kind!r}")
        if self.target not in spec.targets:
            raise FaultPlanError(f"{self.kind} targets one of {list(spec.targets)}, got {self.target!r}")
        if self.variant not in spec.variants:
            raise FaultPlanError(f"{self.kind} variant must be one of {list(spec.variants)}, got {self.variant!r}")
        if self.moment not in MOMENTS:
            raise FaultPlanError(f"moment must be one of {list(MOMENTS)}, got {self.moment!r}")
        if self.occurrence < 1:
            raise FaultPlanError(f"occurrence counts from 1, got {self.occurrence}")
        if not (self.delay_s >= 0.0 and self.duration_s >= 0.0):
            raise FaultPlanError(f"delay_s and duration_s must be >= 0 s, got {self.delay_s}, {self.duration_s}")

    @property
    def spec(self) -> FaultKind:
        return FAULT_KINDS[self.kind]

    @property
    def category(self) -> str:
        return self.spec.category

    @property
    def terminal(self) -> bool:
        return self.spec.terminal

    @property
    def link(self) -> str | None:
        """The link a relay must interpose for this fault, if any."""
        return self.target if self.category == "link" else None

    def consumers(self) -> tuple[str, ...]:
        """The nodes this fault acts on: a session ended by one of them is ended by this fault."""
        if self.category == "process":
            return (self.target,)
        if self.category == "link":
            return (LINKS[self.target].node,)
        return TOPIC_GROUPS[self.target][1]

    def label(self) -> str:
        """Short human-readable name, e.g. ``stall controller 1.2s @reach#2``."""
        what = " ".join(x for x in (self.kind, self.variant, self.target) if x)
        if self.duration_s > 0:
            what += f" {self.duration_s:.1f}s"
        return f"{what} @{self.moment}#{self.occurrence}"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Fault:
        return cls(**data)


@dataclass
class SessionPlan:
    """One session of a campaign: the graph's policy, partner and seed, how many turns carry
    faults (the session runs one more), and the faults."""

    index: int
    policy: str
    partner: str
    seed: int
    turns: int
    faults: list[Fault]

    @property
    def links(self) -> tuple[str, ...]:
        """The links this session's faults need interposed (a relay for the whole session)."""
        return tuple(sorted({f.link for f in self.faults if f.link}))

    def as_dict(self) -> dict:
        return {"index": self.index, "policy": self.policy, "partner": self.partner, "seed": self.seed,
                "turns": self.turns, "faults": [f.as_dict() for f in self.faults]}


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, [weights[n] for n in names])[0]


def draw_fault(rng: random.Random, kind: str, moment: str, occurrence: int, fault_id: str) -> Fault:
    """A fault of ``kind`` at the moment, its target, variant, delay and duration drawn from ``rng``."""
    spec = FAULT_KINDS[kind]
    lo, hi = spec.duration_s
    duration = round(rng.uniform(lo, hi), 2) if hi > 0 else 0.0
    # Right at the moment for the commit (it is ~0.1-0.2 s away), a little after for the others.
    delay = 0.0 if moment == "before_commit" else round(rng.uniform(0.0, 0.3), 2)
    return Fault(kind, rng.choice(spec.targets), moment, occurrence, delay, duration,
                 rng.choice(spec.variants), fault_id)


#: How often each kind is drawn (kills are drawn per session, see draw_session).
CAMPAIGN_KIND_WEIGHTS = {kind: 1.0 for kind in FAULT_KINDS if kind != "kill"}
CAMPAIGN_KIND_WEIGHTS["stall"] = 2.0  # five nodes to stall


def draw_session(rng: random.Random, index: int, *, turns: int, faults_per_session: int,
                 kill_probability: float = 0.3, policies=("mirror", "eager", "reactive"),
                 partners=("typical", "erratic")) -> SessionPlan:
    """A session with ``faults_per_session`` faults at distinct (moment, occurrence) slots of
    turns 1..``turns``; with ``kill_probability`` the last of them is a kill, in turn ``turns + 1``."""
    if turns < 1 or faults_per_session < 1:
        raise FaultPlanError(f"turns and faults_per_session must be >= 1, got {turns}, {faults_per_session}")
    slots = [(m, k) for k in range(1, turns + 1) for m in CAMPAIGN_MOMENTS]
    kill = rng.random() < kill_probability
    n_plain = faults_per_session - 1 if kill else faults_per_session
    if n_plain > len(slots):
        raise FaultPlanError(f"{n_plain} faults do not fit {turns} turns ({len(slots)} moments); raise --turns")
    weights = [CAMPAIGN_MOMENTS[m] for m, _ in slots]
    chosen: list[tuple[str, int]] = []
    while len(chosen) < n_plain:
        slot = rng.choices(slots, weights)[0]
        if slot not in chosen:
            chosen.append(slot)
    chosen.sort(key=lambda s: (s[1], MOMENTS.index(s[0])))
    faults = [draw_fault(rng, _weighted(rng, CAMPAIGN_KIND_WEIGHTS), m, k, f"s{index}f{i}")
              for i, (m, k) in enumerate(chosen)]
    if kill:
        faults.append(draw_fault(rng, "kill", rng.choice(KILL_MOMENTS), turns + 1, f"s{index}f{len(faults)}"))
    return SessionPlan(index, rng.choice(policies), rng.choice(partners), rng.randrange(0, 10_000), turns, faults)

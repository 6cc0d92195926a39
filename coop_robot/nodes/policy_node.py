"""Policy node: perception + controller state in, a turn decision out, once per tick."""

from __future__ import annotations

import math
import sys
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, Vector3Stamped
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState, TimeReference
from std_msgs.msg import Bool, Float64, String

from coop_robot.control.controller import decision_text, parse_state_text
from coop_robot.control.kinematics import select_joint_positions
from coop_robot.geometry import world_geometry
from coop_robot.nodes.common import (
    COMMAND_QOS,
    EVENT_QOS,
    LATCHED_QOS,
    LatencyReporter,
    ParameterError,
    StampLeadGuard,
    declare,
    declare_joint_names,
    declare_zone,
    now_s,
    run_node,
    spin_events,
    stamp_to_s,
)
from coop_robot.policy import Observation, PolicyError, make_policy, policy_names
from coop_robot.policy.base import DEFAULT_FALLBACK_CLEAR_S
from coop_robot.policy.oracle import OraclePolicy
from coop_robot.tasks import DEFAULT_TASK, TASKS
from coop_robot.timing.keepup import FirstSeen, TickRateMonitor, TickWindow
from coop_robot.timing.sync import SYNC_ARRIVAL_AFTER, SYNC_CUE, SyncInputs

#: The /diagnostics status the policy node publishes once per window of ticks.
RATE_STATUS_NAME = "coop_robot: policy rate"


def newest_arm_positions(msgs, joint_names) -> tuple[np.ndarray | None, list[str]]:
    """The arm's joint positions (``joint_names`` order) from the newest of ``msgs`` (JointState
    or its CDR bytes, oldest first) that has them, and why each newer one did not (None and every
    reason when none has them). A cell may publish more than the arm on ``/joint_states`` (a
    gripper's fingers alone). Bytes are deserialized here, newest first, only until one fits."""
    errors = []
    for msg in reversed(msgs):
        try:
            if isinstance(msg, (bytes, bytearray)):
                msg = deserialize_message(bytes(msg), JointState)
            return select_joint_positions(msg.name, msg.position, joint_names), errors
        except ValueError as exc:
            errors.append(str(exc))
        except Exception as exc:  # rclpy raises its own types for bytes that are not a JointState
            errors.append(f"undecodable ({type(exc).__name__}: {exc})")
    return None, errors


class PolicyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("policy", **kwargs)
        self.task = declare(self, "task", DEFAULT_TASK, "The interaction task: turn_taking, or sync (the sync "
                            "task's controls, cued on /sync/cue)", choices=TASKS)
        names = tuple(sorted(set(policy_names()) | set(policy_names("sync"))))
        self.policy_name = declare(self, "policy", "reactive", "Policy to run", choices=names)
        rate = declare(self, "rate_hz", 50.0, "Decision rate (Hz, node clock)", 1.0, 1000.0)
        stale = declare(self, "stale_after_s", 0.5, "Perception older than this (s) is stale: decide 'wait'",
                        0.01, 10.0)
        max_lead = declare(
            self, "max_stamp_lead_s", 0.5, "Perception stamped further than this (s) ahead of this node's clock is "
            "ignored (a wrong clock or a corrupt stamp, not a frame); the newest real frame ages on meanwhile. Looser "
            "than the controller's: a busy node's sim clock lags the frames by 0.1-0.2 s", 0.0, 10.0)
        # A frame from the future, taken as fresh, gave the network a perception age it was never
        # trained on, and the mirror policy stopped acting for the rest of the turn (a fault
        # campaign's hang); dropped, the newest real frame ages on.
        self._stamp_guard = StampLeadGuard(self, max_lead)
        fallback = declare(self, "fallback_clear_s", DEFAULT_FALLBACK_CLEAR_S,
                           "Liveness bound, every policy: with the robot's turn due and the zone perceived clear "
                           "this long (s), decide 'act' whatever the policy says (reactive: after "
                           "max(this, debounce_s))", 0.05, 10.0)
        debounce = declare(self, "debounce_s", 0.4,
                           "reactive: time the zone must be perceived empty before acting (s)", 0.0, 10.0)
        lead = declare(
            self,
            "entry_lead_s",
            OraclePolicy.DEFAULT_ENTRY_LEAD_S,
            "oracle: act this long before the partner's planned exit (s)",
            0.0,
            5.0,
        )
        margin = declare(
            self, "margin_s", 0.0, "oracle: shift of the act time after the partner's planned exit (s)", 0.0, 5.0
        )
        checkpoint = declare(self, "checkpoint", "", "mirror: checkpoint file ('' = the one shipped in the package)")
        mirror = self._declare_mirror()
        onset = declare(self, "onset_speed_mps", 0.15,
                        "sync reactive: act once the partner's hand is perceived moving this fast (m/s)", 0.01, 5.0)
        sync_lead = declare(self, "sync_lead_s", 0.0,
                            "sync oracle: act this much earlier than the arrivals would coincide (s)", -5.0, 5.0)
        params = {"stale_after_s": stale, "fallback_clear_s": fallback}
        if self.task == "sync":
            params = {"stale_after_s": stale}  # no liveness bound: every sync control acts in every trial
            if self.policy_name == "reactive":
                params["onset_speed_mps"] = onset
            elif self.policy_name == "oracle":
                params["lead_s"] = sync_lead
            elif self.policy_name == "mirror":   # '' = the sync checkpoint shipped in the package
                params.update(checkpoint=checkpoint or None, **mirror)
        elif self.policy_name == "reactive":
            params["debounce_s"] = debounce
        elif self.policy_name == "oracle":
            params.update(entry_lead_s=lead, margin_s=margin)
        elif self.policy_name == "mirror":
            params.update(checkpoint=checkpoint or None, **mirror)
        try:
            self.policy = make_policy(self.policy_name, task=self.task, **params)
        except PolicyError as exc:
            raise ParameterError(f"parameter 'policy' = {self.policy_name!r} with task {self.task!r}: {exc}") from exc

        self._in_zone: bool | None = None
        self._hand = np.full(3, np.nan)
        self._vel = np.full(3, np.nan)
        self._stamp_s = -math.inf
        self._robot_state = "unknown"
        self._planned_exit_s: float | None = None
        self._sync = SyncInputs() if self.task == "sync" else None
        self._ee = np.full(3, np.nan)
        self._joint_msgs: deque[bytes] = deque(maxlen=8)   # serialized, since the last tick
        self._fk = None
        self._fallbacks_logged = 0
        self._was_behind = False

        self.create_subscription(Bool, "/partner/in_zone", self._on_in_zone, 10)
        self.create_subscription(PointStamped, "/partner/hand", self._on_hand, 10)
        self.create_subscription(Vector3Stamped, "/partner/hand_velocity", self._on_vel, 10)
        self.create_subscription(String, "/controller/state", self._on_state, LATCHED_QOS)
        if self.policy_name == "oracle":
            self.create_subscription(TimeReference, "/sim/ground_truth/partner_plan", self._on_plan, EVENT_QOS)
        if self._sync is not None:
            self.create_subscription(TimeReference, SYNC_CUE, self._on_cue, LATCHED_QOS)
            if self.policy_name == "oracle":
                self.create_subscription(Float64, SYNC_ARRIVAL_AFTER, self._on_arrival_after, LATCHED_QOS)
        if self.policy_name == "mirror":  # the mirror network watches the robot's own hand too
            from coop_robot.control.kinematics import PandaKinematics

            self._fk = PandaKinematics(base_m=mirror["robot_base_m"])
            # Raw: kept as bytes and deserialized only when a tick uses one (~20 us saved per
            # message; a Franka's joint_state_broadcaster sends 1 kHz). Delivery through rclpy
            # still costs ~2 % of a core at the sim's 100 Hz (bench/policy_node_cpu.py, no_joints).
            self.create_subscription(JointState, "/joint_states", self._on_joints, COMMAND_QOS, raw=True)
        self.decision_pub = self.create_publisher(String, "/policy/decision", COMMAND_QOS)
        self.forecast_pub = self.create_publisher(Float64, "/policy/exit_forecast", COMMAND_QOS)
        keepup_window = declare(self, "keepup_window_s", 5.0,
                                "Every this many seconds, check that the ticks came at rate_hz: below "
                                "keepup_min_fraction of it, warn that the machine is not keeping up "
                                "(and publish the rate and CPU share on /diagnostics)", 0.5, 600.0)
        keepup_fraction = declare(self, "keepup_min_fraction", 0.8,
                                  "Fraction of rate_hz below which the ticks count as not keeping up", 0.05, 1.0)
        self.keepup = TickRateMonitor(rate, keepup_window, keepup_fraction)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._latency = LatencyReporter(self, ["camera->policy"], self.diag_pub)
        self._first_seen = FirstSeen(self._latency.stats["camera->policy"])
        # The mirror network's P(act), for the live view (and anyone plotting it).
        self.p_act_pub = self.create_publisher(Float64, "/policy/p_act", COMMAND_QOS) \
            if self.policy_name == "mirror" else None
        self.create_timer(1.0 / rate, self._tick)
        engine = getattr(self.policy, "engine", None)
        self.get_logger().info(f"policy '{self.policy_name}' at {rate:.0f} Hz"
                               + (f", network on {engine}" if engine else ""))

    def create_publisher(self, *args, **kwargs):
        """rclpy's ``create_publisher`` without its default QoS-event handlers (a warning when a
        subscription requesting incompatible QoS, or another type, appears), unless
        ``event_callbacks`` are given. Each handler is one more entity that the executor adds to its
        wait set on every wake (hundreds a second on sim time): the node's 5 publishers'
        10 handlers were a quarter of the cost of a wake (under rclpy.spin's executor; the node now
        spins with ``spin_events``, whose C++ wait does not rebuild). The subscribing node warns of the
        mismatch itself (rclpy's and rclcpp's default handlers on its subscription), and this node's
        own subscriptions keep theirs: a publisher this node cannot hear is still reported here."""
        kwargs.setdefault("event_callbacks", PublisherEventCallbacks(use_default_callbacks=False))
        return super().create_publisher(*args, **kwargs)

    def _on_in_zone(self, msg: Bool) -> None:
        self._in_zone = bool(msg.data)

    def _on_hand(self, msg: PointStamped) -> None:
        stamp_s = stamp_to_s(msg.header.stamp)
        if self._stamp_guard.ahead("/partner/hand", stamp_s):
            return
        self._hand = np.array([msg.point.x, msg.point.y, msg.point.z])
        self._stamp_s = stamp_s

    def _on_vel(self, msg: Vector3Stamped) -> None:
        if self._stamp_guard.ahead("/partner/hand_velocity", stamp_to_s(msg.header.stamp)):
            return
        self._vel = np.array([msg.vector.x, msg.vector.y, msg.vector.z])

    def _on_state(self, msg: String) -> None:
        self._robot_state = parse_state_text(msg.data)[0]  # "reaching ssm_stop" -> "reaching"

    def _declare_mirror(self) -> dict:
        """The mirror policy's parameters: decision thresholds, the cell geometry its egocentric
        frames come from (world.yaml, shared with every node), the arm's joint names and torch threads."""
        from coop_robot.control.kinematics import JOINT_NAMES
        from coop_robot.policy.mirror import DEFAULT_ACT_THRESHOLD, DEFAULT_RELEASE_THRESHOLD, ENGINES

        world = world_geometry()
        act = declare(self, "act_threshold", DEFAULT_ACT_THRESHOLD, "mirror: act when P(act) reaches this", 0.01, 0.99)
        release = declare(
            self,
            "release_threshold",
            DEFAULT_RELEASE_THRESHOLD,
            "mirror: while reaching or acting, keep 'act' until P(act) drops below this (<= act_threshold)",
            0.01,
            0.99,
        )
        if release > act:
            raise ParameterError(f"parameter 'release_threshold' ({release}) must not exceed act_threshold ({act})")
        zone = declare_zone(self)
        home = declare(
            self,
            "robot_home_joint_positions_rad",
            list(world.robot_home_joint_positions_rad),
            "mirror: home joint configuration (rad, joint_names order); its EE is the robot's "
            "egocentric origin; shared via world.yaml",
        )
        base = declare(
            self,
            "robot_base_m",
            list(world.robot_base_m),
            "Robot base position in world (m), for the end effector by forward kinematics; shared via world.yaml",
        )
        rest = declare(
            self,
            "partner_rest_m",
            list(world.partner_rest_m),
            "mirror: where the partner's hand rests between turns, world frame (m): the partner's "
            "egocentric origin; shared via world.yaml",
        )
        self._joint_names = declare_joint_names(
            self,
            list(JOINT_NAMES),
            "mirror: arm joint names in /joint_states (7, robot_home_joint_positions_rad order)",
        )
        threads = declare(
            self,
            "torch_threads",
            0,
            "mirror: torch intra-op threads for inference; "
            "0 = $COOP_ROBOT_TORCH_THREADS or 1 (more threads only contend on a busy machine)",
        )
        if threads < 0:
            raise ParameterError(f"parameter 'torch_threads' must be >= 0, got {threads}")
        engine = declare(
            self,
            "inference",
            "numpy",
            "mirror: what runs the network each tick: numpy (a copy of the checkpoint's weights, the "
            "same outputs within float32 rounding at less than half torch's CPU) or torch",
            choices=ENGINES,
        )
        return dict(
            act_threshold=act,
            release_threshold=release,
            zone_min_m=list(zone.min_m),
            zone_max_m=list(zone.max_m),
            robot_home_joint_positions_rad=home,
            robot_base_m=base,
            partner_rest_m=rest,
            torch_threads=threads or None,
            engine=engine,
        )

    def _on_joints(self, msg: bytes) -> None:
        # Kept as they came: picking the arm's joints and forward kinematics run once per tick
        # (_ee_now), on the newest state that has the arm's joints, not per joint state (twice the
        # tick rate). A cell may publish others on the topic too (e.g. a gripper's fingers alone).
        self._joint_msgs.append(msg)

    def _ee_now(self) -> np.ndarray:
        q, errors = newest_arm_positions(self._joint_msgs, self._joint_names)
        self._joint_msgs.clear()
        for error in errors:
            # The network would run without the robot's own hand: say so (a real arm's joints may be
            # named otherwise; set joint_names, as for the controller).
            self.get_logger().warning(f"/joint_states message ignored: {error}; set joint_names to the arm's joints",
                                      throttle_duration_sec=5.0)
        if q is not None:
            self._ee = self._fk.ee_position(q)
        return self._ee

    def _on_plan(self, msg: TimeReference) -> None:
        if msg.source == "planned_exit":
            self._planned_exit_s = stamp_to_s(msg.time_ref)
        elif msg.source == "planned_arrival" and self._sync is not None:
            self._sync.planned_arrival(stamp_to_s(msg.time_ref), stamp_to_s(msg.header.stamp))

    def _on_cue(self, msg: TimeReference) -> None:
        self._sync.cue(msg.source, stamp_to_s(msg.time_ref))

    def _on_arrival_after(self, msg: Float64) -> None:
        self._sync.robot_arrival_after_s = float(msg.data)

    def _tick(self) -> None:
        t = now_s(self)
        window = self.keepup.tick(t, time.monotonic(), time.process_time())
        if window is not None:
            self._report_rate(window)
        if math.isfinite(self._stamp_s):
            self._first_seen.tick(t, self._stamp_s)
        obs = Observation(
            t_s=t,
            partner_in_zone=self._in_zone,
            perception_age_s=t - self._stamp_s,
            partner_hand_m=self._hand,
            partner_velocity_mps=self._vel,
            robot_state=self._robot_state,
            robot_ee_m=self._ee_now(),
            partner_planned_exit_s=self._planned_exit_s,
            **({} if self._sync is None else self._sync.observation()),
        )
        decision = self.policy.step(obs)
        if self.policy.fallback_count > self._fallbacks_logged:
            self._fallbacks_logged = self.policy.fallback_count
            due = ("the robot's turn due" if self.policy.robot_turn_due else
                   "the robot's turn possibly due (perception had a gap that may have hidden the partner's turn)")
            self.get_logger().warning(
                f"liveness fallback: zone clear for {self.policy.fallback_after_s:.2f} s with {due} "
                f"and '{self.policy_name}' still not acting; deciding 'act' (firing {self._fallbacks_logged})"
            )
        self.decision_pub.publish(String(data=decision_text(decision.action, decision.fallback)))
        self.forecast_pub.publish(Float64(data=float(decision.exit_forecast_s)))
        if self.p_act_pub is not None:
            self.p_act_pub.publish(Float64(data=float(self.policy.p_act)))

    def _report_rate(self, window: TickWindow) -> None:
        """Say when the machine is not keeping up (and when it catches up again); publish the rate."""
        text = self.keepup.describe(window)
        if window.behind:
            self.get_logger().warning(
                f"not keeping up: policy '{self.policy_name}' ticked at {text}; its decisions come late "
                "(this machine is too busy for the graph: free cores, or lower rate_hz for every node that "
                "ticks)", throttle_duration_sec=30.0)
            self._was_behind = True
        elif self._was_behind:
            self.get_logger().info(f"keeping up again: {text}")
            self._was_behind = False
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [DiagnosticStatus(
            level=DiagnosticStatus.WARN if window.behind else DiagnosticStatus.OK,
            name=RATE_STATUS_NAME,
            message=("not keeping up: " if window.behind else "") + text,
            values=[KeyValue(key="rate_hz", value=f"{window.rate_hz:.2f}"),
                    KeyValue(key="asked_rate_hz", value=f"{self.keepup.rate_hz:.2f}"),
                    KeyValue(key="worst_interval_s", value=f"{window.worst_interval_s:.4f}"),
                    KeyValue(key="cpu_share", value=f"{window.cpu_share:.4f}")],
        )]
        self.diag_pub.publish(arr)


def main(args=None) -> None:
    sys.exit(run_node(PolicyNode, args, spin=spin_events))


if __name__ == "__main__":
    main()

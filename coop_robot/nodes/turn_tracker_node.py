"""Turn tracker node: turn events and per-turn timing on topics, rolling stats on /diagnostics.

Scores on simulation ground truth when it is published (``/sim/ground_truth/events``), otherwise
on perception (``/partner/in_zone``) and joint states (end effector by forward kinematics); every
output says which (``header.frame_id`` of turn events, ``scored_on`` in the summary). Separation
comes from ``/sim/ground_truth/ssm`` (ground truth) or ``/controller/ssm`` (perception), the
partner's turn from ``/sim/partner/phase``. The node only translates messages: choosing the
source, reordering events and the FK live in :class:`coop_robot.timing.feed.TurnFeed` (the bag
analysis uses the same core).
"""

from __future__ import annotations

import json
import os
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState, TimeReference
from std_msgs.msg import Bool, String

from coop_robot.geometry import world_geometry
from coop_robot.nodes.common import (
    COMMAND_QOS,
    EVENT_QOS,
    LATCHED_QOS,
    SessionComplete,
    StampLeadGuard,
    declare,
    declare_zone,
    now_s,
    run_node,
    s_to_stamp,
    stamp_to_s,
)
from coop_robot.tasks import DEFAULT_TASK, TASKS
from coop_robot.timing.feed import (
    CONTROLLER_EVENTS,
    GROUND_TRUTH_EVENTS,
    JOINT_STATES,
    PARTNER_HAND,
    PARTNER_IN_ZONE,
    PARTNER_PHASE,
    TurnFeed,
)
from coop_robot.timing.metrics import format_table, turn_notes
from coop_robot.timing.ssm_sample import CONTROLLER_SSM, GROUND_TRUTH_SSM, SSM_STATUS_NAME, SsmSample
from coop_robot.timing.sync import (
    SYNC_TRIAL,
    SYNC_TRIAL_STATUS,
    SyncTrialLog,
    format_sync_table,
    format_trial_line,
    trial_from_key_values,
)

#: SSM samples come at ~100 Hz: room for a second of them while the executor is busy.
SSM_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class TurnTrackerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("turn_tracker", **kwargs)
        self._wall_start_s = time.monotonic()   # the session's wall time, in the summary
        self.scoring_param = declare(
            self,
            "scoring",
            "auto",
            "Score on ground_truth, perception, or auto (ground truth when the sim publishes it)",
            choices=("auto", "ground_truth", "perception"),
        )
        self.auto_wait_s = declare(
            self,
            "auto_wait_s",
            3.0,
            "auto scoring: how long to wait for a ground-truth publisher (s, node clock)",
            0.0,
            60.0,
        )
        self.task = declare(self, "task", DEFAULT_TASK, "The interaction task: turn_taking, or sync (the session is "
                            "the sim's scored trials from /sync/trial; max_turns counts trials)", choices=TASKS)
        self.max_turns = declare(
            self,
            "max_turns",
            0,
            "End the session (write summary, exit 0) after this many robot turns (sync: trials); 0 = run forever",
            0,
            100000,
        )
        self.summary_json = declare(
            self, "summary_json", "", "Write the session summary JSON here when the session ends ('' = don't)"
        )
        window = declare(self, "stats_window", 20, "Rolling statistics over the last N turns", 1, 10000)
        self.reorder_s = declare(
            self,
            "reorder_window_s",
            4.0,
            "Hold events this long (s, node clock) to restore time order "
            "across publishers; events later than this are dropped (and counted)",
            0.0,
            10.0,
        )
        max_lead = declare(
            self, "max_stamp_lead_s", 0.5,
            "A /partner/hand or /joint_states message stamped further than this ahead of the node's clock (s) "
            "is ignored and counted (a spoof, or a driver on another clock): taken, it would put a turn edge "
            "that far ahead", 0.0, 60.0)
        self._stamp_guard = StampLeadGuard(self, max_lead, what="not scoring",
                                           hint=": check the publisher's clock and use_sim_time", throttle_s=5.0)
        self.meta = {
            "policy": declare(self, "session_policy", "", "Policy name recorded in the summary"),
            "partner": declare(self, "session_partner", "", "Partner profile recorded in the summary"),
            "seed": declare(self, "session_seed", -1, "Seed recorded in the summary (-1 = unknown)"),
        }
        if self.meta["seed"] < 0:
            self.meta["seed"] = None
        self.zone = declare_zone(self)
        self.robot_base_m = declare(
            self, "robot_base_m", list(world_geometry().robot_base_m),
            "Robot base position in world (m), for end-effector FK"
        )
        self._window = window
        self.feed = TurnFeed(
            self.scoring_param,
            zone=self.zone,
            robot_base_m=self.robot_base_m,
            reorder_window_s=self.reorder_s,
            stats_window=window,
            auto_wait_s=self.auto_wait_s,
        )
        self._done = False

        self.events_pub = self.create_publisher(TimeReference, "/turn/events", EVENT_QOS)
        self.timing_pub = self.create_publisher(DiagnosticArray, "/turn/timing", EVENT_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(TimeReference, GROUND_TRUTH_EVENTS, self._on_gt_event, EVENT_QOS)
        self.create_subscription(TimeReference, CONTROLLER_EVENTS, self._on_controller_event, EVENT_QOS)
        self.create_subscription(Bool, PARTNER_IN_ZONE, self._on_in_zone, 10)
        self.create_subscription(PointStamped, PARTNER_HAND, self._on_hand, 10)
        self.create_subscription(JointState, JOINT_STATES, self._on_joints, COMMAND_QOS)
        self.create_subscription(String, PARTNER_PHASE, self._on_partner_phase, LATCHED_QOS)
        for topic in (GROUND_TRUTH_SSM, CONTROLLER_SSM):
            self.create_subscription(DiagnosticArray, topic, lambda msg, t=topic: self._on_ssm(t, msg), SSM_QOS)
        self.sync_log: SyncTrialLog | None = None
        if self.task == "sync":
            self.sync_log = SyncTrialLog()
            self.create_subscription(DiagnosticArray, SYNC_TRIAL, self._on_sync_trial, EVENT_QOS)
        self.create_timer(0.05, self._tick)
        self.create_timer(1.0, self._publish_diagnostics)

    @property
    def tracker(self):
        return self.feed.tracker

    # --- inputs: messages -> plain values -> the feed (coop_robot.timing.feed) ----------------
    def _on_gt_event(self, msg: TimeReference) -> None:
        self.feed.ground_truth_event(msg.source, stamp_to_s(msg.time_ref))

    def _on_controller_event(self, msg: TimeReference) -> None:
        self.feed.controller_event(msg.source, stamp_to_s(msg.time_ref))

    def _on_partner_phase(self, msg: String) -> None:
        self.feed.partner_phase(msg.data, now_s(self))

    def _on_ssm(self, topic: str, msg: DiagnosticArray) -> None:
        t_s = stamp_to_s(msg.header.stamp)
        for status in msg.status:
            if status.name != SSM_STATUS_NAME:
                continue
            try:
                sample = SsmSample.from_key_values(((kv.key, kv.value) for kv in status.values), t_s)
            except ValueError as exc:
                self.get_logger().error(f"{topic} unusable for scoring: {exc}", throttle_duration_sec=5.0)
                continue
            self.feed.ssm_sample(topic, sample)

    def _on_sync_trial(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name != SYNC_TRIAL_STATUS:
                continue
            try:
                trial = trial_from_key_values((kv.key, kv.value) for kv in status.values)
            except ValueError as exc:
                self.get_logger().error(f"{SYNC_TRIAL} unusable for scoring: {exc}", throttle_duration_sec=5.0)
                continue
            if self.sync_log.update(trial):
                print(f"[turn_tracker] trial {trial.trial}: {format_trial_line(trial)}", flush=True)

    def _on_in_zone(self, msg: Bool) -> None:
        self.feed.partner_in_zone(bool(msg.data))

    @property
    def stamps_ahead(self) -> dict[str, int]:
        """Messages ignored for a stamp ahead of the clock, per topic."""
        return self._stamp_guard.counts

    def _on_hand(self, msg: PointStamped) -> None:
        stamp_s = stamp_to_s(msg.header.stamp)
        if not self._stamp_guard.ahead(PARTNER_HAND, stamp_s):
            self.feed.partner_hand(stamp_s)

    def _on_joints(self, msg: JointState) -> None:
        if self._stamp_guard.ahead(JOINT_STATES, stamp_to_s(msg.header.stamp)):
            return
        try:
            self.feed.joint_state(stamp_to_s(msg.header.stamp), list(msg.name), list(msg.position))
        except ValueError as exc:
            self.get_logger().error(f"/joint_states unusable for scoring: {exc}", throttle_duration_sec=5.0)
            return
        problem = self.feed.joint_state_problem()
        if problem:
            self.get_logger().error(f"/joint_states unusable for scoring: {problem}", throttle_duration_sec=5.0)

    # --- outputs ------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = now_s(self)
        out = self.feed.release(now)
        if out.chosen:
            self.get_logger().info(f"scoring turns on {out.chosen}")
        if self.sync_log is not None:
            if self.max_turns and len(self.sync_log) >= self.max_turns and not self._done:
                self._finish()
            return
        if self.tracker is None:
            return
        if out.dropped:
            self.get_logger().warning(
                f"{out.dropped} event(s) arrived after later ones had been scored and "
                f"were dropped ({self.tracker.late_events} so far); turns may be missing. Raise reorder_window_s "
                f"(now {self.reorder_s} s) if the machine is this loaded"
            )
        for name, t in out.events:
            ev = TimeReference(source=name, time_ref=s_to_stamp(t))
            ev.header.stamp = s_to_stamp(t)
            ev.header.frame_id = self.tracker.scoring
            self.events_pub.publish(ev)
        for rec in out.records:
            self._publish_turn(rec, now)
        if self.max_turns and len(self.tracker.records) >= self.max_turns and not self._done:
            self._finish()

    def _publish_turn(self, rec, now: float) -> None:
        level = DiagnosticStatus.OK
        if rec.overlapped:
            level = DiagnosticStatus.WARN
        if rec.contact or rec.ssm_violations:
            level = DiagnosticStatus.ERROR
        values = [KeyValue(key=k, value=repr(v) if isinstance(v, float) else str(v)) for k, v in rec.as_dict().items()]
        values.append(KeyValue(key="scored_on", value=self.tracker.scoring))
        status = DiagnosticStatus(level=level, name="coop_robot/turn", message=f"turn {rec.turn}", values=values)
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = s_to_stamp(now)
        self.timing_pub.publish(arr)
        print(
            f"[turn_tracker] turn {rec.turn}: gap {1000 * rec.gap_s:.0f} ms, latency "
            f"{1000 * rec.response_latency_s:.0f} ms, overlap {1000 * rec.overlap_s:.0f} ms, contact {rec.contact}, "
            f"min separation {rec.min_separation_m:.3f} m{', ' + turn_notes(rec) if turn_notes(rec) else ''}",
            flush=True,
        )

    def _publish_diagnostics(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        if self.tracker is None:
            status = DiagnosticStatus(
                level=DiagnosticStatus.WARN, name="coop_robot: turn timing", message="waiting for occupancy data"
            )
        else:
            stats = self.tracker.rolling_stats()
            level = DiagnosticStatus.OK
            if stats["overlap_rate"] > 0:
                level = DiagnosticStatus.WARN
            if stats["contacts_total"] > 0 or stats["ssm_violations_total"] > 0:
                level = DiagnosticStatus.ERROR
            status = DiagnosticStatus(
                level=level,
                name="coop_robot: turn timing",
                message=f"{stats['turns_total']} turns, scored on {self.tracker.scoring}",
                values=[
                    KeyValue(key=k, value=f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in stats.items()
                ],
            )
        # The session's policy / partner / seed ride along, so a recording names them (coop-robot analyze).
        status.values.extend(
            KeyValue(key=f"session_{k}", value=str(v)) for k, v in self.meta.items() if v not in (None, "")
        )
        if self.max_turns:
            status.values.append(KeyValue(key="session_max_turns", value=str(self.max_turns)))
        arr.status = [status]
        self.diag_pub.publish(arr)

    def summary(self) -> dict:
        if self.sync_log is not None:
            return self.sync_log.summary(self.max_turns or None, **self.meta) if len(self.sync_log) else {}
        return self.tracker.summary(limit=self.max_turns or None, **self.meta) if self.tracker else {}

    def _finish(self) -> None:
        self._done = True
        # Everything the session summary holds comes from here, so `coop-robot sim --summary-json`
        # and a launch's summary_json:= have the same keys.
        summary = {**self.summary(), "wall_time_s": round(time.monotonic() - self._wall_start_s, 1)}
        if self.sync_log is not None:
            summary["session_duration_s"] = now_s(self)
        if self.summary_json:
            path = os.path.abspath(self.summary_json)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=2, allow_nan=True)
            os.replace(tmp, path)
        if self.sync_log is not None:
            print(format_sync_table(self.sync_log.trials[:self.max_turns], summary), flush=True)
            self.get_logger().info(f"session complete after {len(self.sync_log)} sync trials")
        else:
            from coop_robot.timing.metrics import TurnRecord

            print(format_table([TurnRecord(**r) for r in summary["per_turn"]], summary), flush=True)
            self.get_logger().info(f"session complete after {len(self.tracker.records)} turns")
        # Let the last turn's events and timing reach their (reliable) subscribers -- a recorder,
        # the runner -- before the node exits; bounded, so a vanished subscriber cannot hang us.
        from rclpy.duration import Duration

        for pub in (self.events_pub, self.timing_pub):
            try:
                pub.wait_for_all_acked(Duration(seconds=1.0))
            except Exception as exc:  # noqa: BLE001 -- best effort at shutdown, never a crash
                self.get_logger().warning(f"{pub.topic_name}: not every subscriber acknowledged: {exc}")
        raise SessionComplete()


def main(args=None) -> None:
    sys.exit(run_node(TurnTrackerNode, args))


if __name__ == "__main__":
    main()

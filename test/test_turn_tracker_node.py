"""The turn tracker node as a translator: perception topics over DDS in, the feed's turn out
(separation from the controller's /controller/ssm included).

A lab-style arm driver publishes the arm joints in shuffled order and the gripper in messages of
its own on /joint_states; the node must score the turn (it used to call such a bag "damaged").
A frame and a joint state stamped a minute ahead (a spoof, or a driver on another clock) are
ignored and counted: taken, they would put an edge a minute ahead and drop every real one after.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from conftest import free_ros_domain, spinning  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, Header  # noqa: E402

from coop_robot.analysis.synthetic import HOME_Q_RAD, ZONE_Q_RAD  # noqa: E402
from coop_robot.nodes.common import COMMAND_QOS, s_to_stamp  # noqa: E402
from coop_robot.timing.ssm_sample import SsmSample  # noqa: E402

ARM = [f"panda_joint{i}" for i in range(1, 8)]
FRAME_S, ARM_S = 1 / 30, 0.01


def _wait(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_node_scores_a_perceived_turn_from_split_shuffled_joint_states():
    from coop_robot.nodes.turn_tracker_node import TurnTrackerNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=free_ros_domain())
    node = TurnTrackerNode(context=context, parameter_overrides=[
        Parameter("scoring", value="perception"), Parameter("reorder_window_s", value=2.0)])
    driver = rclpy.create_node("lab_driver", context=context)
    pubs = {"in_zone": driver.create_publisher(Bool, "/partner/in_zone", 10),
            "hand": driver.create_publisher(PointStamped, "/partner/hand", 10),
            "joints": driver.create_publisher(JointState, "/joint_states", COMMAND_QOS),
            "ssm": driver.create_publisher(DiagnosticArray, "/controller/ssm", COMMAND_QOS)}
    rng = np.random.default_rng(0)
    stamps = {"partner_exit": None, "robot_enter": None}
    with spinning(node, context):
        try:
            assert _wait(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 20.0)
            # Real time, as a robot publishes: partner inside for 0.4 s, robot inside 0.2 s after it left.
            t0 = time.time()
            next_frame, next_arm, k = t0, t0, 0
            spoofed = False
            while (now := time.time()) < t0 + 1.5:
                if not spoofed and now - t0 >= 0.05:
                    # A driver on another clock, or a spoof: a frame and a joint state a minute ahead.
                    spoofed = True
                    pubs["in_zone"].publish(Bool(data=True))
                    ahead = PointStamped()
                    ahead.header.stamp = s_to_stamp(now + 60.0)
                    pubs["hand"].publish(ahead)
                    ahead_q = JointState(name=ARM, position=[float(v) for v in ZONE_Q_RAD])
                    ahead_q.header.stamp = s_to_stamp(now + 60.0)
                    pubs["joints"].publish(ahead_q)
                if now >= next_frame:
                    inside = 0.1 <= now - t0 < 0.5
                    if not inside and now - t0 >= 0.5 and stamps["partner_exit"] is None:
                        stamps["partner_exit"] = now
                    pubs["in_zone"].publish(Bool(data=inside))
                    hand = PointStamped()
                    hand.header.stamp = s_to_stamp(now)
                    pubs["hand"].publish(hand)
                    next_frame += FRAME_S
                if now >= next_arm:
                    in_zone = 0.7 <= now - t0 < 1.0
                    if in_zone and stamps["robot_enter"] is None:
                        stamps["robot_enter"] = now
                    q = ZONE_Q_RAD if in_zone else HOME_Q_RAD
                    order = rng.permutation(7)
                    arm = JointState(name=[ARM[i] for i in order], position=[float(q[i]) for i in order])
                    arm.header.stamp = s_to_stamp(now)
                    pubs["joints"].publish(arm)
                    # The controller's SSM view: closest (0.25 m) while the robot is inside.
                    ssm = SsmSample(now, 0.25 if in_zone else 0.6, 0.1, 0.0, 0.0, 1.0, "free")
                    status = DiagnosticStatus(name="ssm", values=[KeyValue(key=k, value=v)
                                                                  for k, v in ssm.to_key_values()])
                    pubs["ssm"].publish(DiagnosticArray(header=Header(stamp=s_to_stamp(now)), status=[status]))
                    if k % 4 == 0:
                        gripper = JointState(name=["panda_finger_joint1", "panda_finger_joint2"],
                                             position=[0.04, 0.04])
                        gripper.header.stamp = s_to_stamp(now)
                        pubs["joints"].publish(gripper)
                    next_arm += ARM_S
                    k += 1
                time.sleep(0.002)   # pacing the publisher at its sensor rates
            assert _wait(lambda: node.tracker is not None and len(node.tracker.records) >= 1, 20.0), \
                f"no turn scored; late events {node.tracker.late_events if node.tracker else None}"
            rec = node.tracker.records[0]
            assert node.tracker.scoring == "perception" and node.feed.joint_state_problem() is None
            assert rec.partner_exit_s == pytest.approx(stamps["partner_exit"], abs=1e-6)
            assert rec.robot_enter_s == pytest.approx(stamps["robot_enter"], abs=1e-6)
            assert rec.gap_s == pytest.approx(stamps["robot_enter"] - stamps["partner_exit"], abs=1e-6)
            assert rec.min_separation_m == pytest.approx(0.25) and rec.min_ssm_margin_m == pytest.approx(0.15)
            assert node.stamps_ahead == {"/partner/hand": 1, "/joint_states": 1}
        finally:
            driver.destroy_node()

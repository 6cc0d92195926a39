"""The one check the controller, policy and turn tracker nodes share: a message stamped further
ahead of the node's clock than ``max_stamp_lead_s`` is dropped, counted per topic and logged."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PointStamped, Vector3Stamped
from rclpy.parameter import Parameter

from coop_robot.nodes.common import StampLeadGuard, s_to_stamp


@pytest.fixture
def context(ros_domain):
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=ros_domain)
    yield ctx
    rclpy.shutdown(context=ctx)


def test_guard_drops_only_what_is_too_far_ahead_and_counts_it_per_topic(context):
    node = rclpy.create_node("guarded", context=context)
    try:
        guard = StampLeadGuard(node, 0.5)
        now = time.time()
        assert not guard.ahead("/a", now)                 # a frame of now
        assert not guard.ahead("/a", now - 30.0)          # late is another check's business
        assert not guard.ahead("/a", now + 0.3)           # within the allowed lead (clocks differ a little)
        assert guard.ahead("/a", now + 60.0)
        assert guard.ahead("/a", now + 2.0 ** 31)
        assert guard.ahead("/b", now + 5.0)
        assert guard.counts == {"/a": 2, "/b": 1}
    finally:
        node.destroy_node()


def test_guard_judges_nothing_before_the_nodes_clock_has_started(context):
    # Sim time before the first /clock message reads 0: every stamp would look "ahead".
    node = rclpy.create_node("sim_timed", context=context,
                             parameter_overrides=[Parameter("use_sim_time", value=True)])
    try:
        guard = StampLeadGuard(node, 0.5)
        assert node.get_clock().now().nanoseconds == 0
        assert not guard.ahead("/a", 1000.0)
        assert guard.counts == {}
    finally:
        node.destroy_node()


def _hand(stamp_s: float) -> PointStamped:
    msg = PointStamped()
    msg.header.stamp = s_to_stamp(stamp_s)
    msg.point.x, msg.point.y, msg.point.z = 0.5, 0.0, 0.9
    return msg


def _velocity(stamp_s: float) -> Vector3Stamped:
    msg = Vector3Stamped()
    msg.header.stamp = s_to_stamp(stamp_s)
    msg.vector.x = 0.3
    return msg


def test_controller_and_policy_nodes_drop_a_hand_from_the_future_and_keep_the_last_real_one(context):
    from coop_robot.nodes.controller_node import ControllerNode
    from coop_robot.nodes.policy_node import PolicyNode

    controller = ControllerNode(context=context)
    policy = PolicyNode(context=context)
    try:
        now = time.time()
        controller._on_hand(_hand(now))
        controller._on_hand_velocity(_velocity(now))
        controller._on_hand(_hand(now + 60.0))
        controller._on_hand_velocity(_velocity(now + 60.0))
        assert controller._perception_stamp_s == pytest.approx(now, abs=1e-6)
        assert controller._velocity_stamp_s == pytest.approx(now, abs=1e-6)
        assert controller._stamp_guard.counts == {"/partner/hand": 1, "/partner/hand_velocity": 1}

        policy._on_hand(_hand(now))
        policy._on_hand(_hand(now + 60.0))
        policy._on_vel(_velocity(now + 60.0))
        assert policy._stamp_s == pytest.approx(now, abs=1e-6)
        assert np.all(np.isfinite(policy._hand))
        assert policy._stamp_guard.counts == {"/partner/hand": 1, "/partner/hand_velocity": 1}
    finally:
        controller.destroy_node()
        policy.destroy_node()

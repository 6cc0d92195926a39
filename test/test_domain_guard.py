"""Two graphs with the same node names are kept off one ROS domain (coop_robot.domain_guard)."""

import sys

import pytest
import rclpy
from conftest import wait_for

from coop_robot.domain_guard import DomainInUse, GraphProbe
from coop_robot.graph import NodeSpec
from coop_robot.runner import GraphRunner, SessionError, isolated_env


def test_the_probe_names_the_nodes_it_finds_and_those_two_nodes_share(ros_domain):
    contexts, nodes = [], []
    probe = None
    try:
        for name in ("policy", "policy", "perception"):
            context = rclpy.Context()
            rclpy.init(context=context, domain_id=ros_domain)
            contexts.append(context)
            nodes.append(rclpy.create_node(name, context=context))
        probe = GraphProbe(ros_domain)
        with pytest.raises(DomainInUse, match="policy") as refused:
            probe.refuse_if_in_use(["policy", "controller"], wait_s=10.0)
        assert refused.value.nodes == ["policy"] and refused.value.domain_id == ros_domain
        wait_for(lambda: probe.duplicated(["policy", "perception", "controller"]) == ["policy"], 10.0,
                 "the probe to see both nodes named policy")
    finally:
        if probe is not None:
            probe.close()
        for node, context in zip(nodes, contexts):
            node.destroy_node()
            rclpy.shutdown(context=context)


def test_an_empty_domain_is_found_free_at_once_when_discovery_stays_on_this_host(ros_domain):
    probe = GraphProbe(ros_domain, isolated_env(ros_domain))
    try:
        probe.refuse_if_in_use(["controller"], wait_s=60.0)  # no participant here: no wait
    finally:
        probe.close()


def test_the_runner_ends_the_session_when_its_check_gives_a_reason(tmp_path, ros_domain):
    spec = NodeSpec("sleeper", "sleeper", "sleeper", ())
    runner = GraphRunner([spec], tmp_path / "logs", isolated_env(ros_domain),
                         commands=[[sys.executable, "-c", "import time; time.sleep(60)"]])
    try:
        runner.start()
        with pytest.raises(SessionError, match="a second node named controller"):
            runner.wait(30.0, check=lambda: "a second node named controller", check_period_s=0.1)
    finally:
        codes = runner.shutdown(grace_s=2.0)
    assert codes["sleeper"] != 0  # stopped by the runner, not finished

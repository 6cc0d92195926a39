"""The README is the user's manual: it must document every parameter and every topic the nodes use."""

from pathlib import Path

import pytest
from conftest import free_ros_domain

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
IGNORED = {"use_sim_time", "start_type_description_service"}


def test_ci_runs_the_readme_test_command():
    assert "bash scripts/run_tests.sh" in README
    assert "bash scripts/run_tests.sh" in (REPO / ".ci" / "run").read_text()
    assert "bash scripts/run_sim.sh" in README


@pytest.fixture(scope="module")
def nodes():
    import rclpy

    from coop_robot.nodes.controller_node import ControllerNode
    from coop_robot.nodes.perception_node import PerceptionNode
    from coop_robot.nodes.policy_node import PolicyNode
    from coop_robot.nodes.sim_node import SimNode
    from coop_robot.nodes.turn_tracker_node import TurnTrackerNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=free_ros_domain())
    made = []
    try:
        for cls in (SimNode, PerceptionNode, PolicyNode, ControllerNode, TurnTrackerNode):
            made.append(cls(context=context))
        yield made
    finally:
        for node in made:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        rclpy.shutdown(context=context)


def test_every_declared_parameter_is_documented(nodes):
    missing = []
    for node in nodes:
        for name in node._parameters:
            if name not in IGNORED and f"`{name}`" not in README:
                missing.append(f"{node.get_name()}.{name}")
    assert not missing, f"parameters missing from README.md: {missing}"


def test_every_topic_is_documented(nodes):
    missing, seen = [], set()
    for node in nodes:
        names = []
        for pub in node.publishers:
            names.append(pub.topic_name)
        for sub in node.subscriptions:
            names.append(sub.topic_name)
        for topic in names:
            if topic.startswith("/parameter_events") or topic == "/rosout" or "/_action" in topic:
                continue
            seen.add(topic)
            if f"`{topic}`" not in README:
                missing.append(f"{node.get_name()}: {topic}")
    assert {"/partner/hand", "/turn/timing", "/panda_arm_controller/joint_trajectory"} <= seen
    assert not missing, f"topics missing from README.md: {sorted(set(missing))}"

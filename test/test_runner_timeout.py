"""The message of a session that ran out of time names why the graph was slow, from the nodes'
own log lines (``coop_robot.runner``; no ROS here)."""

import inspect

from coop_robot import runner
from coop_robot.control import controller
from coop_robot.nodes import policy_node


def test_a_session_out_of_time_says_perception_was_late_and_the_policy_behind():
    seen = {"turns": 3, "real_time": 0.31, "late_perception_stops": 14, "policy_behind": 2}
    text = runner._timeout_cause(seen, 12)
    assert text.startswith("3 of 12 robot turns done; the simulation last ran at 0.31x real time (it waits")
    assert "the controller made 14 protective stops because perception was older than ssm_max_hand_age_s" in text
    assert "the policy said 2 times that it was not keeping up" in text


def test_a_session_out_of_time_for_other_reasons_says_only_what_it_knows():
    text = runner._timeout_cause({"turns": 0, "real_time": 1.2, "late_perception_stops": 0, "policy_behind": 0}, 5)
    assert text == "0 of 5 robot turns done; the simulation last ran at 1.20x real time"
    assert runner._timeout_cause({"turns": 1, "real_time": None}, 2, "sync trials") == "1 of 2 sync trials done"


def test_the_counted_log_lines_are_the_ones_the_nodes_write():
    sources = {"controller": inspect.getsource(controller), "policy": inspect.getsource(policy_node)}
    for node, text, _key in runner._STARVED:
        assert text in sources[node], (node, text)

"""The fault harness on the real graph (the short CI version of bench/fault_campaign.py).

One session of the five-node graph with a fault of each family at a chosen moment of a turn:
a stalled node, garbage and NaN on the camera and on perception's hand, a spoofed "outside"
while the partner dwells in the zone, a hostile trajectory to the arm, an e-stop storm, and a
killed controller last. Scored on the simulator's ground truth: no robot entry while the partner
is inside, no contact, every fault survived or ended the session with a message naming the node,
no process left.
"""

import pytest

from coop_robot.faults.plan import Fault, SessionPlan
from coop_robot.faults.score import ENDED, SURVIVED
from coop_robot.faults.session import run_fault_session

pytestmark = pytest.mark.integration

FAULTS = [
    Fault("image_garbage", "camera", "partner_reach", 1, 0.1, 0.2, "short_data", "garbage"),
    Fault("depth_nonfinite", "camera", "partner_dwell", 1, 0.0, 0.3, "nan", "nan_depth"),
    Fault("stall", "coop_sim", "reach", 1, 0.1, 1.0, "", "stall"),
    Fault("hostile_trajectory", "trajectory", "before_commit", 1, 0.0, 0.0, "huge_positions", "hostile"),
    Fault("estop_burst", "estop", "robot_act", 1, 0.0, 0.3, "storm", "estop"),
    Fault("spoof_outside", "perception", "partner_dwell", 2, 0.0, 1.0, "300Hz", "spoof"),
    Fault("hand_nonfinite", "perception", "reach", 2, 0.1, 0.1, "nan", "nan_hand"),
    Fault("kill", "controller", "partner_dwell", 3, 0.0, 0.0, "SIGKILL", "kill"),
]


def test_the_graph_survives_or_names_every_fault_and_never_enters_on_the_partner(tmp_path, ros_domain):
    plan = SessionPlan(0, "reactive", "typical", seed=3, turns=2, faults=FAULTS)
    result = run_fault_session(plan, tmp_path / "session", domain_id=ros_domain)
    records = {r.fault.fault_id: r for r in result.records}
    summary = "\n".join(f"{r.fault.label()}: {r.outcome} ({r.outcome_reason}); {r.detail}; {r.reactions}"
                        for r in result.records) + f"\nend: {result.end.message}\nlogs: {result.log_dir}"

    # Ground truth: the robot never entered on the partner and never touched them.
    assert result.incidents == [], summary
    # No node process of the session is left.
    assert result.leftovers == [], summary
    # The kill ended the session, and the message names the node.
    assert not result.end.completed and result.end.node == "controller", summary
    assert records["kill"].injected and records["kill"].outcome == ENDED, summary
    # Every other fault was injected, and the session went on after it.
    for fault_id, record in records.items():
        if fault_id != "kill":
            assert record.injected and record.outcome == SURVIVED, summary
    # The arm refused the hostile trajectory, and the controller obeyed the e-stop storm.
    assert any("rejected trajectory" in r for r in records["hostile"].reactions), summary
    assert any("EMERGENCY STOP" in r for r in records["estop"].reactions), summary
    assert result.robot_turns >= 2, summary

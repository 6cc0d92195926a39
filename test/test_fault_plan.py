"""The fault harness without ROS: fault descriptions, the campaign's draw, moments of a turn,
scoring on ground truth, the report's verdict and the hang rule."""

import random

import numpy as np
import pytest

from coop_robot.faults.moments import MomentTracker, before_commit_distance_m
from coop_robot.faults.plan import FAULT_KINDS, LINKS, NODES, Fault, FaultPlanError, SessionPlan, draw_session
from coop_robot.faults.report import campaign_report, markdown
from coop_robot.faults.score import (
    ENDED,
    NOT_INJECTED,
    SURVIVED,
    UNEXPLAINED,
    FaultRecord,
    Incident,
    SessionEnd,
    attribute,
    classify,
    incidents,
    violation_starts,
)
from coop_robot.faults.session import NO_PROGRESS_S, fault_graph, no_progress
from coop_robot.geometry import world_geometry


def test_a_fault_names_what_it_can_target():
    with pytest.raises(FaultPlanError, match="kind must be one of"):
        Fault("meteor", "controller", "reach")
    with pytest.raises(FaultPlanError, match="stall targets one of"):
        Fault("stall", "camera", "reach")
    with pytest.raises(FaultPlanError, match="variant must be one of"):
        Fault("kill", "controller", "reach", variant="SIGHUP")
    with pytest.raises(FaultPlanError, match="moment must be one of"):
        Fault("stall", "controller", "lunch")
    fault = Fault("stall", "controller", "reach", 2, 0.1, 1.5)
    assert fault.consumers() == ("controller",) and not fault.terminal and fault.link is None
    assert fault.label() == "stall controller 1.5s @reach#2"
    assert Fault.from_dict(fault.as_dict()) == fault


def test_message_and_link_faults_act_on_the_nodes_that_consume_the_topic():
    assert Fault("hostile_trajectory", "trajectory", "reach", variant="huge_positions").consumers() == ("coop_sim",)
    drop = Fault("drop", "perception_to_controller", "reach", variant="p1.0")
    assert drop.link == "perception_to_controller" and drop.consumers() == ("controller",)
    assert set(Fault("spoof_outside", "perception", "reach", variant="100Hz").consumers()) >= {"controller", "policy"}


def test_every_process_fault_targets_a_node_of_the_graph():
    from coop_robot.graph import sim_graph

    assert set(NODES) == {s.name for s in sim_graph(turns=1, summary_json="/tmp/x.json")}


def test_draw_puts_faults_on_distinct_moments_and_a_kill_last_in_the_extra_turn():
    for seed in range(40):
        plan = draw_session(random.Random(seed), seed, turns=2, faults_per_session=6)
        slots = [(f.moment, f.occurrence) for f in plan.faults]
        assert len(slots) == len(set(slots)) == 6
        kills = [f for f in plan.faults if f.kind == "kill"]
        assert len(kills) <= 1
        if kills:
            assert plan.faults[-1] is kills[0] and kills[0].occurrence == 3
        assert all(f.occurrence <= 2 for f in plan.faults if f.kind != "kill")
        assert plan.policy in ("mirror", "eager", "reactive") and plan.partner in ("typical", "erratic")


def test_draw_is_reproducible_and_covers_every_kind():
    a = [draw_session(random.Random(3), i, turns=2, faults_per_session=6) for i in range(3)]
    b = [draw_session(random.Random(3), i, turns=2, faults_per_session=6) for i in range(3)]
    assert [p.as_dict() for p in a] == [p.as_dict() for p in b]
    rng = random.Random(0)
    kinds = {f.kind for i in range(60) for f in draw_session(rng, i, turns=2, faults_per_session=6).faults}
    assert kinds == set(FAULT_KINDS)


def test_too_many_faults_for_the_turns_is_refused():
    with pytest.raises(FaultPlanError, match="raise --turns"):
        draw_session(random.Random(0), 0, turns=1, faults_per_session=9, kill_probability=0.0)


def test_a_session_with_a_link_fault_remaps_that_consumer_only():
    plan = SessionPlan(0, "eager", "typical", 1, 2, [Fault("delay", "controller_to_arm", "reach", variant="0.2s")])
    specs = {s.name: s for s in fault_graph(plan, "/tmp/summary.json")}
    assert specs["coop_sim"].remappings == LINKS["controller_to_arm"].remappings()
    assert specs["controller"].remappings == ()
    assert specs["turn_tracker"].parameters["max_turns"] == 3


# --- moments ------------------------------------------------------------------------------------
def _tracker():
    world = world_geometry()
    from coop_robot.geometry import Zone

    return MomentTracker(Zone.from_lists(world.zone_min_m, world.zone_max_m), before_commit_m=0.2)


def test_before_commit_is_reported_once_per_uncommitted_reach_near_the_zone():
    m = _tracker()
    far, near = np.array([0.45, 0.0, 1.25]), np.array([0.45, 0.0, 1.05])
    assert m.robot_ee(near, 0.5) == []                        # no reach yet
    assert [x.name for x in m.controller_event("reach_start", 1.0)] == ["reach"]
    assert m.robot_ee(far, 1.1) == []
    assert [(x.name, x.occurrence) for x in m.robot_ee(near, 1.2)] == [("before_commit", 1)]
    assert m.robot_ee(near, 1.3) == []                        # once
    m.controller_event("reach_start", 5.0)
    m.controller_event("entry_commit", 5.5)
    assert m.robot_ee(near, 5.6) == []                        # committed already
    m.controller_event("reach_start", 9.0)
    assert [(x.name, x.occurrence) for x in m.robot_ee(near, 9.5)] == [("before_commit", 2)]


def test_partner_reach_counts_a_hesitation_once_and_dwell_per_turn():
    m = _tracker()
    names = []
    for phase in ("initial_wait", "reaching", "hesitating", "reaching", "dwelling", "withdrawing",
                  "waiting_for_robot", "reacting", "reaching", "dwelling"):
        names += [(x.name, x.occurrence) for x in m.partner_phase(phase, 0.0)]
    assert names == [("partner_reach", 1), ("partner_dwell", 1), ("partner_reach", 2), ("partner_dwell", 2)]


def test_before_commit_distance_comes_from_the_controller_core():
    d = before_commit_distance_m()
    assert 0.1 < d < 0.28   # between the commit (~0.15 m) and the waiting point (~0.28 m)


# --- scoring ------------------------------------------------------------------------------------
def test_an_entry_counts_only_while_the_partner_is_inside():
    events = [(1.0, "partner_enter"), (2.0, "robot_enter"), (2.5, "partner_exit"), (3.0, "robot_exit"),
              (4.0, "robot_enter"), (4.5, "contact_begin")]
    assert incidents(events) == [Incident("entry_while_partner_inside", 2.0), Incident("contact", 4.5)]


def test_violation_episodes_follow_the_one_definition():
    samples = [(0.0, 0.5, 0.3, 0.2), (0.01, 0.2, 0.3, 0.2), (0.02, 0.2, 0.3, 0.2), (0.03, 0.2, 0.3, 0.0),
               (0.04, float("nan"), 0.3, 0.2), (0.05, 0.2, 0.3, 0.3)]
    assert violation_starts(samples) == [0.01, 0.05]


def _record(kind="stall", target="controller", variant="", at=1.0, cleared=1.5, injected=True):
    rec = FaultRecord(Fault(kind, target, "reach", variant=variant))
    rec.injected, rec.injected_sim_s, rec.cleared_sim_s = injected, at, cleared
    return rec


def test_outcomes():
    done = SessionEnd(True, "", 20.0)
    rec = _record()
    classify(rec, done, [])
    assert rec.outcome == SURVIVED

    killed = SessionEnd(False, "node 'controller' exited with code -9 before the session ended", 10.0)
    kill = _record("kill", "controller", "SIGKILL", at=9.9, cleared=9.9)
    classify(kill, killed, [])
    assert kill.outcome == ENDED

    stall = _record(at=5.0, cleared=6.0)
    classify(stall, killed, [7.0], killed_after_s=9.9)
    assert stall.outcome == SURVIVED and stall.robot_turns_after == 1
    stall = _record(at=5.0, cleared=6.0)
    classify(stall, killed, [], killed_after_s=9.9)
    assert stall.outcome == SURVIVED        # the session went on until the kill

    crash = _record("joint_states_garbage", "joint_states", "nan", at=9.0, cleared=9.1)
    classify(crash, killed, [])
    assert crash.outcome == ENDED and crash.crash

    hung = SessionEnd(False, "session hung: no turn progress ...", 40.0)
    rec = _record(at=5.0)
    classify(rec, hung, [3.0])
    assert rec.outcome == UNEXPLAINED and "hung" in rec.outcome_reason
    kill = _record("kill", "policy", "SIGKILL")
    classify(kill, killed, [])
    assert kill.outcome == UNEXPLAINED      # the end names another node

    never = _record(injected=False)
    classify(never, done, [])
    assert never.outcome == NOT_INJECTED


def test_incidents_are_attributed_to_the_faults_whose_window_holds_them():
    a, b = _record(at=1.0, cleared=1.5), _record(at=10.0, cleared=10.0)
    unattributed, baseline = attribute([a, b], [Incident("contact", 3.4), Incident("contact", 30.0)], [2.0, 20.0])
    assert a.incidents == [Incident("contact", 3.4)] and not b.incidents
    assert unattributed == [Incident("contact", 30.0)]
    assert a.ssm_violations == 1 and baseline == 1


def test_no_progress_names_what_the_controller_did():
    gt = [(3.0, "robot_exit")]
    ctrl = [(2.0, "withdraw_start"), (5.0, "reach_start"), (6.0, "ssm_stop"), (6.2, "ssm_resume")]
    assert no_progress(gt, ctrl, 3.0 + NO_PROGRESS_S - 0.5) is None
    text = no_progress(gt, ctrl, 30.0)
    assert "hung" in text and "reach_start at 5.00 s" in text and "2 ssm_stop" in text


# --- report -------------------------------------------------------------------------------------
def _session(index, records, incidents_=(), leftovers=()):
    return {"plan": {"index": index, "policy": "eager", "partner": "typical"}, "completed": True,
            "end_message": "", "records": [r.as_dict() for r in records],
            "incidents": [{"kind": i.kind, "t_s": i.t_s} for i in incidents_], "leftovers": list(leftovers),
            "baseline_ssm_violations": 0, "robot_turns": 3, "wall_s": 30.0, "log_dir": "/tmp/x"}


def test_verdict_passes_only_with_every_acceptance_condition():
    ok = _record()
    ok.outcome = SURVIVED
    report = campaign_report([_session(0, [ok])], {}, min_sessions=1, min_faults=1)
    assert report["verdict"]["pass"]
    assert "PASS" in markdown(report)

    report = campaign_report([_session(0, [ok], [Incident("entry_while_partner_inside", 3.0)])], {},
                             min_sessions=1, min_faults=1)
    failed = [c["check"] for c in report["verdict"]["checks"] if not c["ok"]]
    assert failed == ["no robot entry while the partner is inside"]

    bad = _record()
    bad.outcome, bad.outcome_reason = UNEXPLAINED, "hung"
    report = campaign_report([_session(0, [bad], leftovers=["123 python -m x"])], {}, min_sessions=2,
                             min_faults=1)
    failed = {c["check"] for c in report["verdict"]["checks"] if not c["ok"]}
    assert failed == {"sessions", "every fault survived or ended the session naming it", "no process left behind"}
    assert "FAIL" in markdown(report) and "hung" in markdown(report)


def test_the_manual_lists_every_fault_kind_and_link():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "fault_injection.md").read_text(encoding="utf-8")
    for name in (*FAULT_KINDS, *LINKS):
        assert f"| `{name}` |" in page, f"docs/fault_injection.md has no table row for {name}"

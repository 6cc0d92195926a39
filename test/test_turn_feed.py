"""The one core that feeds the turn tracker (coop_robot.timing.feed), live node and bag analysis alike."""

from __future__ import annotations

import numpy as np
import pytest

from coop_robot.analysis.synthetic import HOME_Q_RAD, ZONE, ZONE_Q_RAD
from coop_robot.timing.feed import (
    JOINT_MESSAGES_BEFORE_COMPLAINT,
    JointStateMerger,
    TurnFeed,
    live_check_tolerance_s,
    scoring_for_recording,
)

ARM = [f"panda_joint{i}" for i in range(1, 8)]
FINGERS = ["panda_finger_joint1", "panda_finger_joint2"]


def _feed(scoring, **kw):
    return TurnFeed(scoring, zone=ZONE, reorder_window_s=kw.pop("reorder_window_s", 0.5), **kw)


def _arm(feed, t_s, q, order):
    feed.joint_state(t_s, [ARM[i] for i in order], np.asarray(q)[order])


def test_perception_feed_scores_a_turn_from_frames_and_split_shuffled_joint_states():
    feed = _feed("perception")
    rng = np.random.default_rng(1)
    frames = np.arange(0.0, 4.0, 1 / 30)
    joints = np.arange(0.0, 4.0, 0.01)
    events = sorted([(t, "frame") for t in frames] + [(t, "arm") for t in joints]
                    + [(t + 0.005, "gripper") for t in joints[::4]] + [(1.6, "reach")])
    for t, kind in events:
        if kind == "frame":
            feed.partner_in_zone(0.5 <= t < 1.5)
            feed.partner_hand(t)
        elif kind == "arm":
            _arm(feed, t, ZONE_Q_RAD if 2.0 <= t < 2.8 else HOME_Q_RAD, rng.permutation(7))
        elif kind == "gripper":
            feed.joint_state(t, FINGERS, [0.04, 0.04])
        else:
            feed.controller_event("reach_start", t)
    out = feed.release(10.0, flush=True)
    assert [r.turn for r in out.records] == [1]
    rec = out.records[0]
    first_frame_out = frames[frames >= 1.5][0]
    assert rec.partner_exit_s == pytest.approx(first_frame_out)
    assert rec.robot_enter_s == pytest.approx(2.0) and rec.robot_exit_s == pytest.approx(2.8)
    assert rec.gap_s == pytest.approx(2.0 - first_frame_out)
    assert rec.response_latency_s == pytest.approx(1.6 - first_frame_out)
    assert [n for n, _ in out.events] == ["partner_enter", "partner_exit", "reach_start", "robot_enter", "robot_exit"]
    assert feed.joint_state_problem() is None


def test_ground_truth_feed_reorders_events_and_reports_dropped_ones():
    feed = _feed("ground_truth", reorder_window_s=1.0)
    for name, t in [("partner_exit", 2.0), ("partner_enter", 1.0), ("robot_enter", 2.4), ("robot_exit", 3.0)]:
        feed.ground_truth_event(name, t)
    feed.controller_event("reach_start", 2.1)
    out = feed.release(3.3)                                # everything up to 2.3 s, in time order
    assert [n for n, _ in out.events] == ["partner_enter", "partner_exit", "reach_start"]
    out = feed.release(10.0)
    assert [r.gap_s for r in out.records] == [pytest.approx(0.4)]
    feed.ground_truth_event("partner_enter", 2.5)          # older than what was released
    assert feed.release(11.0).dropped == 1 and feed.tracker.late_events == 1
    assert feed.ground_truth_events == 5


def test_ground_truth_feed_ignores_perception_and_perception_feed_takes_only_contacts_from_ground_truth():
    gt, perc = _feed("ground_truth"), _feed("perception")
    for feed in (gt, perc):
        feed.partner_in_zone(True)
        feed.partner_hand(1.0)
        feed.ground_truth_event("robot_enter", 1.2)
        feed.ground_truth_event("contact_begin", 1.3)
    assert [n for n, _ in gt.release(9.0, flush=True).events] == ["robot_enter", "contact_begin"]
    assert [n for n, _ in perc.release(9.0, flush=True).events] == ["partner_enter", "contact_begin"]


def test_auto_scoring_picks_ground_truth_when_it_arrives_else_perception_after_the_wait():
    feed = _feed("auto", auto_wait_s=3.0)
    assert feed.scoring is None
    feed.ground_truth_event("partner_enter", 0.5)
    assert feed.scoring == "ground_truth" and feed.release(0.6).chosen == "ground_truth"
    feed = _feed("auto", auto_wait_s=3.0)
    feed.partner_in_zone(True)
    feed.partner_hand(1.0)                 # nothing is scored before the choice
    assert feed.release(0.0).chosen is None and feed.release(1.0).chosen is None
    assert feed.release(4.0).chosen is None and feed.scoring is None          # 3.0 s, not more
    assert feed.release(4.05).chosen == "perception" and feed.release(4.1).chosen is None
    feed.partner_hand(4.2)                 # the remembered in_zone flag is used at the next frame
    assert [n for n, _ in feed.release(9.0, flush=True).events] == ["partner_enter"]


def test_joint_state_merger_keeps_the_latest_value_per_joint():
    merger = JointStateMerger()
    assert merger.update(FINGERS, [0.04, 0.04]) is None               # gripper first: no arm yet
    assert merger.update(ARM[:4], HOME_Q_RAD[:4]) is None             # half the arm
    q = merger.update(ARM[4:][::-1], HOME_Q_RAD[4:][::-1])
    assert np.allclose(q, HOME_Q_RAD)
    assert merger.update(FINGERS, [0.01, 0.01]) is None               # gripper only: arm unchanged
    q = merger.update(["panda_joint2"], [0.3])
    assert q[1] == pytest.approx(0.3) and np.allclose(np.delete(q, 1), np.delete(HOME_Q_RAD, 1))
    with pytest.raises(ValueError, match="1 positions for 2 names"):
        merger.update(FINGERS, [0.0])


def test_joint_states_without_the_arm_are_a_problem_naming_the_missing_joints():
    feed = _feed("perception")
    for k in range(JOINT_MESSAGES_BEFORE_COMPLAINT):
        assert feed.joint_state_problem() is None
        feed.joint_state(0.01 * k, ["joint_a", "joint_b"], [0.0, 0.0])
    problem = feed.joint_state_problem()
    assert "panda_joint1" in problem and "joint_a" in problem


def test_scoring_source_of_a_recording_and_live_check_tolerance():
    assert scoring_for_recording(0) == "perception" and scoring_for_recording(3) == "ground_truth"
    assert live_check_tolerance_s(0.05) == pytest.approx(0.06)
    assert live_check_tolerance_s(None) == pytest.approx(1 / 30 + 0.01)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="scoring must be one of"):
        _feed("sometimes")
    with pytest.raises(ValueError, match="auto_wait_s"):
        _feed("auto", auto_wait_s=-1.0)


def _ssm(t_s, separation_m, protective_m=0.1, closing_mps=0.0):
    from coop_robot.timing.ssm_sample import SsmSample

    return SsmSample(t_s, separation_m, protective_m, closing_mps, 0.0, 1.0, "free")


def _gt_turn(feed, t0=0.0):
    for name, dt in (("partner_enter", 1.0), ("partner_exit", 2.0), ("robot_enter", 2.5), ("robot_exit", 3.5)):
        feed.ground_truth_event(name, t0 + dt)


def test_each_scoring_source_takes_the_separation_of_its_own_ssm_topic():
    from coop_robot.timing.ssm_sample import CONTROLLER_SSM, GROUND_TRUTH_SSM

    for scoring, mine, other in (("ground_truth", GROUND_TRUTH_SSM, CONTROLLER_SSM),
                                 ("perception", CONTROLLER_SSM, GROUND_TRUTH_SSM)):
        feed = _feed(scoring)
        feed.ssm_sample(mine, _ssm(2.6, 0.30))
        feed.ssm_sample(other, _ssm(2.7, 0.05))
        feed.tracker.release(0.0, flush=True)
        assert feed.tracker.segmenter._window.min_separation_m == pytest.approx(0.30), scoring


def test_ssm_and_home_events_flow_from_the_controller_to_the_turn():
    feed = _feed("ground_truth")
    _gt_turn(feed)
    for name, t in (("reach_start", 2.1), ("ssm_stop", 2.8), ("ssm_resume", 3.0), ("home", 4.0), ("abort", 3.1)):
        feed.controller_event(name, t)
    out = feed.release(10.0, flush=True)
    assert "home" in [n for n, _ in out.events] and "abort" not in [n for n, _ in out.events]
    assert out.records[0].protective_stop_s == pytest.approx(0.2)


def test_partner_turn_is_derived_from_the_phase_with_ground_truth_scoring_only():
    for scoring, expected in (("ground_truth", True), ("perception", False)):
        feed = _feed(scoring)
        feed.partner_phase("reacting", 0.0)
        feed.partner_phase("false_start_reach", 0.2)   # the robot comes in during the false start
        if scoring == "ground_truth":
            _gt_turn(feed)
        else:
            feed.tracker.push("partner_enter", 1.0)
            for name, t in (("partner_exit", 2.0), ("robot_enter", 2.5), ("robot_exit", 3.5)):
                feed.tracker.push(name, t)
        rec = feed.release(10.0, flush=True).records[0]
        assert rec.unfinished_turn_entry is expected, scoring


def test_published_partner_turn_events_replace_the_phase():
    feed = _feed("ground_truth")
    feed.ground_truth_event("partner_turn_start", 0.5)
    feed.partner_phase("reaching", 0.6)
    feed.ground_truth_event("partner_withdraw_start", 1.8)
    feed.partner_phase("waiting_for_robot", 2.1)        # would end the turn: ignored
    feed.ground_truth_event("partner_turn_end", 2.2)
    names = [n for n, _ in feed.release(10.0, flush=True).events]
    assert names == ["partner_turn_start", "partner_withdraw_start", "partner_turn_end"]

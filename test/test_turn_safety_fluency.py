"""Separation (SSM), near misses, unfinished-turn entries, pace and Hoffman's fluency metrics
(coop_robot/timing/metrics.py module docstring) on hand-made event streams."""

import math

import pytest

from coop_robot.partner.model import NEAR_MISS_S
from coop_robot.timing.metrics import TurnSegmenter, fluency, format_table
from coop_robot.timing.tracker import PartnerTurnEdges, TurnTracker


def feed(events):
    seg = TurnSegmenter()
    out = []
    for item in events:
        if item[0] == "sep":
            seg.add_separation(*item[1:])
        else:
            out.extend(seg.add(*item))
    return seg, out


def one_turn(extra=()):
    """Partner stay 1..2 s, robot stay 2.5..3.5 s, plus ``extra`` items, time-sorted."""
    base = [("partner_enter", 1.0), ("partner_exit", 2.0), ("robot_enter", 2.5), ("robot_exit", 3.5)]
    return sorted([*base, *extra], key=lambda e: e[1])


def test_separation_minima_are_taken_over_the_turn_window():
    seg, recs = feed(one_turn([("sep", 2.4, 0.50, 0.20, 0.1), ("sep", 2.6, 0.30, 0.25, 0.1),
                               ("sep", 2.7, 0.40, 0.10, 0.0)]))
    r = recs[0]
    assert r.min_separation_m == pytest.approx(0.30)
    assert r.min_ssm_margin_m == pytest.approx(0.05)
    assert r.ssm_samples == 3 and r.ssm_violations == 0


def test_samples_after_the_robot_exit_belong_to_the_next_turn():
    events = one_turn([("sep", 3.0, 0.4, 0.1, 0.0), ("sep", 3.6, 0.2, 0.1, 0.0)])
    events += [("partner_enter", 4.0), ("partner_exit", 5.0), ("robot_enter", 5.5), ("robot_exit", 6.0)]
    seg, recs = feed(events)
    assert [r.min_separation_m for r in recs] == [pytest.approx(0.4), pytest.approx(0.2)]


def test_a_turn_without_samples_has_no_separation_figures():
    seg, recs = feed(one_turn())
    assert math.isnan(recs[0].min_separation_m) and recs[0].ssm_samples == 0


def test_violations_are_counted_as_episodes_not_samples():
    inside_sp = [("sep", 2.60 + 0.01 * k, 0.20, 0.25, 0.3) for k in range(5)]        # one episode, 5 samples
    outside = [("sep", 2.70, 0.40, 0.25, 0.3)]
    again = [("sep", 2.80, 0.20, 0.25, 0.3), ("sep", 2.81, 0.20, 0.25, 0.3)]          # a second episode
    seg, recs = feed(one_turn(inside_sp + outside + again))
    assert recs[0].ssm_violations == 2


def test_inside_protective_distance_while_not_approaching_is_no_violation():
    seg, recs = feed(one_turn([("sep", 2.6, 0.20, 0.25, 0.0), ("sep", 2.7, 0.20, 0.25, -0.2)]))
    assert recs[0].ssm_violations == 0 and recs[0].min_ssm_margin_m == pytest.approx(-0.05)


def test_an_episode_continuing_across_the_robot_exit_is_counted_once():
    events = one_turn([("sep", 3.4, 0.2, 0.3, 0.1), ("sep", 3.6, 0.2, 0.3, 0.1)])
    events += [("partner_enter", 4.0), ("partner_exit", 5.0), ("robot_enter", 5.5), ("robot_exit", 6.0)]
    seg, recs = feed(events)
    assert [r.ssm_violations for r in recs] == [1, 0]


def test_protective_stop_lasts_until_resume_or_scaled_and_scaling_until_resume_or_stop():
    seg, recs = feed(one_turn([("ssm_scaled", 2.2), ("ssm_stop", 2.5), ("ssm_scaled", 2.8),
                               ("ssm_resume", 3.0)]))
    assert recs[0].protective_stop_s == pytest.approx(0.3)
    assert recs[0].speed_scaled_s == pytest.approx(0.3 + 0.2)


def test_a_stop_still_on_at_the_robot_exit_is_split_between_the_turn_windows():
    events = one_turn([("ssm_stop", 3.0)]) + [("ssm_resume", 4.5), ("partner_enter", 5.0), ("partner_exit", 6.0),
                                             ("robot_enter", 6.5), ("robot_exit", 7.0)]
    seg, recs = feed(events)
    assert [r.protective_stop_s for r in recs] == [pytest.approx(0.5), pytest.approx(1.0)]


def test_session_summary_takes_minima_over_turns_and_totals():
    events = one_turn([("sep", 2.6, 0.30, 0.20, 0.1), ("ssm_stop", 2.7), ("ssm_resume", 2.9)])
    events += [("sep", 4.1, 0.25, 0.30, 0.2), ("partner_enter", 4.5), ("partner_exit", 5.0),
               ("robot_enter", 5.5), ("ssm_stop", 5.6), ("ssm_resume", 5.7), ("robot_exit", 6.0)]
    tracker = TurnTracker(reorder_window_s=0.0)
    for e in events:
        if e[0] == "sep":
            tracker.push_separation(*e[1:])
        else:
            tracker.push(*e)
    tracker.release(10.0, flush=True)
    s = tracker.summary()
    assert s["min_separation_m"] == pytest.approx(0.25)
    assert s["min_ssm_margin_m"] == pytest.approx(-0.05)
    assert s["ssm_violations"] == 1 and s["ssm_samples"] == 2
    assert s["protective_stop_s"] == pytest.approx(0.3)
    assert s["per_turn"][0]["min_separation_m"] == pytest.approx(0.30)


def test_tracker_reorders_separation_samples_with_events():
    tracker = TurnTracker(reorder_window_s=1.0)
    for name, t in one_turn():
        tracker.push(name, t)
    tracker.push_separation(3.4, 0.3, 0.1, 0.0)   # pushed after the robot exit, but before it in time
    tracker.push_separation(3.6, 0.1, 0.1, 0.0)   # after the exit: the next turn's window
    tracker.release(10.0)
    assert tracker.records[0].min_separation_m == pytest.approx(0.3)
    tracker.push_separation(1.0, 0.05, 0.1, 0.0)  # older than what was scored: counted, not used
    tracker.release(20.0)
    assert tracker.late_samples == 1 and tracker.late_events == 0


def test_near_miss_is_an_entry_within_the_partner_models_window_after_the_exit():
    t_exit = 2.0
    seg, recs = feed([("partner_enter", 1.0), ("partner_exit", t_exit), ("robot_enter", t_exit + NEAR_MISS_S - 0.01),
                      ("robot_exit", 3.0), ("partner_enter", 4.0), ("partner_exit", 5.0),
                      ("robot_enter", 5.0 + NEAR_MISS_S + 0.01), ("robot_exit", 6.0)])
    assert [r.near_miss for r in recs] == [True, False]
    assert not recs[0].overlapped


def test_entry_during_a_false_start_pause_is_an_unfinished_turn_entry_and_not_clean():
    # The false start entered the zone (1.0..1.2); the robot comes in during the pause, 0.5 s after
    # that exit -- by occupancy alone a clean turn.
    seg, recs = feed([("partner_turn_start", 0.6), ("partner_enter", 1.0), ("partner_exit", 1.2),
                      ("robot_enter", 1.7), ("robot_exit", 2.3), ("partner_enter", 2.8),
                      ("partner_withdraw_start", 3.5), ("partner_exit", 3.7), ("partner_turn_end", 4.1)])
    r = recs[0]
    assert r.gap_s == pytest.approx(0.5) and r.overlap_s == 0.0
    assert r.unfinished_turn_entry and r.overlapped


def test_entry_during_the_partners_final_withdraw_is_the_robots_turn():
    seg, recs = feed([("partner_turn_start", 0.5), ("partner_enter", 1.0), ("partner_withdraw_start", 1.8),
                      ("partner_exit", 2.0), ("robot_enter", 2.4), ("partner_turn_end", 2.5), ("robot_exit", 3.0)])
    assert not recs[0].unfinished_turn_entry and not recs[0].overlapped


def test_reaches_begun_and_taken_back_before_the_entry_are_aborted_reaches():
    # Turn 1: three reach starts (two retreats) before the entry; turn 2: one reach, straight in.
    events = one_turn([("reach_start", 1.5), ("reach_start", 1.9), ("reach_start", 2.1)])
    events += [("partner_enter", 4.0), ("partner_exit", 5.0), ("reach_start", 5.1), ("robot_enter", 5.5),
               ("robot_exit", 6.0)]
    seg, recs = feed(events)
    assert [r.aborted_reaches for r in recs] == [2, 0]
    assert recs[0].response_latency_s == pytest.approx(2.1 - 2.0)      # from the reach that got in
    tracker = TurnTracker(reorder_window_s=0.0)
    for name, t in events:
        tracker.push(name, t)
    tracker.release(10.0, flush=True)
    summary = tracker.summary()
    assert summary["aborted_reaches"] == 2 and tracker.rolling_stats()["aborted_reaches"] == 2
    assert "aborted reach x2" in format_table(recs, summary) and "aborted reaches 2" in format_table(recs, summary)


def test_summary_counts_unfinished_entries_in_the_overlap_rate():
    tracker = TurnTracker(reorder_window_s=0.0)
    for name, t in [("partner_turn_start", 0.6), ("partner_enter", 1.0), ("partner_exit", 1.2),
                    ("robot_enter", 1.7), ("robot_exit", 2.3)]:
        tracker.push(name, t)
    tracker.release(10.0, flush=True)
    s = tracker.summary()
    assert s["unfinished_turn_entries"] == 1 and s["overlap_rate"] == 1.0


def test_partner_turn_edges_from_phases_with_a_false_start():
    edges = PartnerTurnEdges()
    phases = [("initial_wait", 0.0), ("false_start_reach", 1.0), ("false_start_return", 1.3),
              ("false_start_pause", 1.6), ("reaching", 2.0), ("dwelling", 2.7), ("withdrawing", 3.5),
              ("waiting_for_robot", 4.1), ("reacting", 5.0), ("reaching", 5.3)]
    out = [e for phase, t in phases for e in edges.update(phase, t)]
    assert out == [("partner_turn_start", 1.0), ("partner_withdraw_start", 3.5), ("partner_turn_end", 4.1),
                   ("partner_turn_start", 5.3)]


def test_partner_turn_edges_repeat_nothing_and_restart_straight_after_a_withdraw():
    edges = PartnerTurnEdges()
    assert edges.update("reaching", 0.0) == [("partner_turn_start", 0.0)]   # observed mid-turn
    assert edges.update("reaching", 0.1) == []
    assert edges.update("withdrawing", 1.0) == [("partner_withdraw_start", 1.0)]
    assert edges.update("reaching", 2.0) == [("partner_turn_end", 2.0), ("partner_turn_start", 2.0)]


def test_partner_turn_edges_ignore_a_phase_the_model_does_not_have():
    edges = PartnerTurnEdges()
    assert edges.update("unknown", 0.0) == [] and edges.update("reacting", 0.1) == []


def test_fluency_fractions_and_functional_delay_on_hand_made_activities():
    # Session 0..10 s. Partner active 0..3 and 6..8; robot 3.5..6.5.
    f = fluency([(0.0, 3.0), (6.0, 8.0)], [(3.5, 6.5)], 0.0, 10.0)
    assert f["human_idle_fraction"] == pytest.approx(0.5)
    assert f["robot_idle_fraction"] == pytest.approx(0.7)
    assert f["concurrent_activity_fraction"] == pytest.approx(0.05)
    # Handoffs: partner -> robot after 0.5 s; robot -> partner while the robot was still active: 0.
    assert f["functional_delay_handoffs"] == 2
    assert f["functional_delay_mean_s"] == pytest.approx(0.25)
    assert f["functional_delay_median_s"] == pytest.approx(0.25)
    assert f["functional_delay_fraction"] == pytest.approx(0.05)


def test_an_agent_acting_twice_in_a_row_is_no_handoff():
    f = fluency([(0.0, 1.0)], [(2.0, 3.0), (4.0, 5.0)], 0.0, 6.0)
    assert f["functional_delay_handoffs"] == 1 and f["functional_delay_mean_s"] == pytest.approx(1.0)


def test_activity_uses_partner_turns_and_robot_reach_to_home_when_the_stream_has_them():
    events = [("partner_turn_start", 0.5), ("partner_enter", 1.0), ("partner_withdraw_start", 1.8),
              ("partner_exit", 2.0), ("reach_start", 2.0), ("partner_turn_end", 2.4), ("robot_enter", 2.6),
              ("robot_exit", 3.6), ("home", 4.2), ("partner_turn_start", 4.5), ("partner_enter", 5.0)]
    seg, _ = feed(events)
    act = seg.activity()
    # Session: first partner entry (1.0) .. last robot exit (3.6) = 2.6 s.
    assert act["partner_active_from"] == "partner_turn" and act["robot_active_from"] == "reach_start_to_home"
    assert act["human_idle_fraction"] == pytest.approx(1 - 1.4 / 2.6)
    assert act["robot_idle_fraction"] == pytest.approx(1 - 1.6 / 2.6)
    assert act["concurrent_activity_fraction"] == pytest.approx(0.4 / 2.6)
    assert act["completed_partner_turns"] == 1


def test_activity_falls_back_to_zone_stays():
    seg, _ = feed(one_turn())
    act = seg.activity()
    assert act["partner_active_from"] == "zone_stay" and act["robot_active_from"] == "zone_stay"
    assert act["human_idle_fraction"] == pytest.approx(1 - 1.0 / 2.5)
    assert act["functional_delay_mean_s"] == pytest.approx(0.5)


def test_pace_counts_robot_and_partner_turns_per_minute():
    tracker = TurnTracker(reorder_window_s=0.0)
    for k in range(3):
        for name, dt in (("partner_enter", 0.0), ("partner_exit", 1.0), ("robot_enter", 1.5), ("robot_exit", 2.5)):
            tracker.push(name, 4.0 * k + dt)
    tracker.release(100.0, flush=True)
    s = tracker.summary()
    assert s["session_duration_s"] == pytest.approx(10.5)
    assert s["pace_turns_per_min"] == pytest.approx(6 / (10.5 / 60))
    limited = tracker.summary(limit=2)
    assert limited["pace_turns_per_min"] == pytest.approx(4 / (6.5 / 60))


def test_format_table_shows_separation_and_flags():
    tracker = TurnTracker(reorder_window_s=0.0)
    for e in one_turn([("sep", 2.6, 0.2, 0.3, 0.1), ("partner_turn_start", 0.5)]):
        tracker.push_separation(*e[1:]) if e[0] == "sep" else tracker.push(*e)
    tracker.release(10.0, flush=True)
    from coop_robot.timing.metrics import TurnRecord

    s = tracker.summary()
    text = format_table([TurnRecord(**r) for r in s["per_turn"]], s)
    assert "0.200" in text and "unfinished" in text and "ssm-violation x1" in text
    assert "safety: near misses 0, unfinished-turn entries 1, min separation 0.200 m" in text
    assert "fluency: pace" in text

"""The metric definitions (docs/architecture.md, "Metrics") on hand-made event streams."""

import math

import pytest

from coop_robot.timing.metrics import TurnSegmenter, format_table, summarize


def feed(events):
    seg = TurnSegmenter()
    out = []
    for name, t in events:
        out.extend(seg.add(name, t))
    return seg, out


def test_clean_turn_gap_latency_and_no_overlap():
    seg, recs = feed([
        ("partner_enter", 1.0), ("partner_exit", 2.0), ("reach_start", 2.3),
        ("robot_enter", 2.8), ("robot_exit", 3.5),
    ])
    assert len(recs) == 1
    r = recs[0]
    assert r.gap_s == pytest.approx(0.8)
    assert r.response_latency_s == pytest.approx(0.3)
    assert r.overlap_s == 0.0 and not r.overlapped and not r.contact


def test_robot_entering_while_partner_inside_gives_negative_gap_and_overlap():
    seg, recs = feed([
        ("partner_enter", 1.0), ("reach_start", 1.2), ("robot_enter", 1.5),
        ("partner_exit", 1.7), ("robot_exit", 2.4),
    ])
    assert len(recs) == 1
    assert recs[0].gap_s == pytest.approx(-0.2)
    assert recs[0].overlap_s == pytest.approx(0.2)
    assert recs[0].overlapped


def test_turn_waits_for_partner_exit_when_partner_outlasts_robot():
    seg, recs = feed([
        ("partner_enter", 1.0), ("robot_enter", 1.5), ("robot_exit", 1.8),
    ])
    assert recs == []  # gap not known yet: the partner is still inside
    recs = seg.add("partner_exit", 2.5)
    assert len(recs) == 1
    assert recs[0].gap_s == pytest.approx(-1.0)
    assert recs[0].overlap_s == pytest.approx(0.3)


def test_partner_entering_during_robot_stay_counts_overlap_for_that_turn():
    seg, recs = feed([
        ("partner_enter", 0.0), ("partner_exit", 1.0), ("robot_enter", 1.4),
        ("partner_enter", 1.9), ("robot_exit", 2.2), ("partner_exit", 3.0),
    ])
    assert len(recs) == 1
    assert recs[0].gap_s == pytest.approx(0.4)
    assert recs[0].overlap_s == pytest.approx(0.3)


def test_contact_marks_the_turn_and_is_counted():
    seg, recs = feed([
        ("partner_enter", 0.0), ("partner_exit", 1.0), ("robot_enter", 1.4),
        ("contact_begin", 1.5), ("contact_end", 1.6), ("robot_exit", 2.0),
    ])
    assert recs[0].contact
    assert seg.contact_count == 1


def test_out_of_order_and_unknown_events_are_rejected():
    seg = TurnSegmenter()
    seg.add("partner_enter", 2.0)
    with pytest.raises(ValueError, match="earlier"):
        seg.add("partner_exit", 1.0)
    with pytest.raises(ValueError, match="unknown"):
        seg.add("teleport", 3.0)
    with pytest.raises(ValueError, match="non-finite"):
        seg.add("partner_exit", math.nan)


def test_summary_statistics_and_throughput():
    events = []
    t = 0.0
    gaps = [0.2, 0.4, 0.6, 0.8, 1.0]
    for g in gaps:
        events += [
            ("partner_enter", t),
            ("partner_exit", t + 1.0),
            ("robot_enter", t + 1.0 + g),
            ("robot_exit", t + 2.0 + g),
        ]
        t += 4.0
    seg, recs = feed(events)
    s = summarize(
        recs,
        seg.session_duration_s,
        contacts=seg.contact_count,
        partner_turns=seg.partner_turns,
        policy="reactive",
        partner="typical",
        seed=3,
    )
    assert s["turns"] == 5
    assert s["median_gap_s"] == pytest.approx(0.6)
    assert s["p90_gap_s"] == pytest.approx(0.92)
    assert s["overlap_rate"] == 0.0 and s["contacts"] == 0
    assert seg.session_duration_s == pytest.approx(16 + 2.0 + 1.0)  # last robot exit
    assert s["throughput_per_min"] == pytest.approx(5 / (19.0 / 60.0))
    text = format_table(recs, s)
    assert "median gap 600 ms" in text and text.count("\n") >= 6


def test_summary_of_no_turns_is_explicit_not_zero_gap():
    s = summarize([], 0.0)
    assert s["turns"] == 0 and s["median_gap_s"] is None and s["throughput_per_min"] == 0.0


def _session_events(n_turns: int) -> list[tuple[str, float]]:
    events = []
    for k in range(n_turns):
        t0 = 4.0 * k
        events += [
            ("partner_enter", t0 + 0.5),
            ("partner_exit", t0 + 1.5),
            ("robot_enter", t0 + 1.7),
            ("robot_exit", t0 + 2.9),
        ]
    return events


@pytest.mark.parametrize("window_s, lost", [(0.3, True), (4.0, False)])
def test_tracker_reorder_window_absorbs_an_event_delivered_late(window_s, lost):
    # A reliable DDS sample lost under load is re-sent after the writer's heartbeat period (Fast DDS:
    # 3 s); the node's default window (4 s) must hold events that late, a short one loses the turn.
    from coop_robot.timing.tracker import TurnTracker

    events = _session_events(3)
    late = ("partner_exit", 5.5)  # turn 2's partner exit ...
    arrival = {late: 5.5 + 3.4}  # ... delivered 3.4 s after it happened
    tracker = TurnTracker(scoring="ground_truth", reorder_window_s=window_s)
    pending = sorted(events, key=lambda e: arrival.get(e, e[1]))
    for now in [0.05 * i for i in range(0, 400)]:
        while pending and arrival.get(pending[0], pending[0][1]) <= now:
            tracker.push(*pending.pop(0))
        tracker.release(now)
    tracker.release(20.0, flush=True)
    scored = [(round(r.gap_s, 6), round(r.overlap_s, 6)) for r in tracker.records]
    if lost:  # the exit is dropped: turn 2 looks like an entry while the partner was inside
        assert tracker.late_events == 1
        assert scored == [(0.2, 0.0), (-3.8, 1.2), (0.2, 0.0)]
    else:
        assert tracker.late_events == 0
        assert scored == [(0.2, 0.0)] * 3


def test_tracker_summary_limit_scores_only_the_session_turns():
    from coop_robot.timing.tracker import TurnTracker

    tracker = TurnTracker(scoring="ground_truth", reorder_window_s=0.0)
    for name, t in _session_events(3):
        tracker.push(name, t)
    tracker.release(0.0, flush=True)
    full, first2 = tracker.summary(), tracker.summary(limit=2, policy="p")
    assert full["turns"] == 3 and first2["turns"] == 2 and len(first2["per_turn"]) == 2
    assert first2["session_duration_s"] == pytest.approx(6.9 - 0.5)  # ends at turn 2's robot exit
    assert first2["policy"] == "p" and tracker.summary(limit=5)["turns"] == 3

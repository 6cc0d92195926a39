"""Colour/depth pairing by stamp: order, duplicates, lost partners, the window, clock jumps."""

import pytest

from coop_robot.perception.pairing import StampPairer

MS = 1_000_000  # ns
WINDOW_NS = 500 * MS


def stamps(pairs):
    return [ns for ns, _, _ in pairs]


def test_a_pair_is_released_once_both_images_arrived_in_either_order():
    p = StampPairer(WINDOW_NS)
    p.add_color(100 * MS, "c100")
    assert not p.has_pair() and p.take_pairs() == []
    p.add_depth(100 * MS, "d100")
    assert p.has_pair()
    assert p.take_pairs() == [(100 * MS, "c100", "d100")]
    p.add_depth(133 * MS, "d133")          # depth first this time
    p.add_color(133 * MS, "c133")
    assert p.take_pairs() == [(133 * MS, "c133", "d133")]
    assert p.held() == (0, 0)


def test_pairs_completed_together_come_out_oldest_first():
    p = StampPairer(WINDOW_NS)
    for ns in (300, 100, 200):
        p.add_color(ns * MS, f"c{ns}")
    for ns in (200, 300, 100):
        p.add_depth(ns * MS, f"d{ns}")
    assert stamps(p.take_pairs()) == [100 * MS, 200 * MS, 300 * MS]
    assert p.last_released_ns == 300 * MS


def test_a_pair_completing_after_a_newer_one_was_released_is_dropped():
    p = StampPairer(WINDOW_NS)
    p.add_color(100 * MS, "c100")
    p.add_color(200 * MS, "c200")
    p.add_depth(200 * MS, "d200")
    assert stamps(p.take_pairs()) == [200 * MS]
    p.add_depth(100 * MS, "d100")          # out of order: the 100 ms pair completes late
    assert p.has_pair()
    assert p.take_pairs() == []
    assert p.held() == (0, 0)


def test_a_repeated_stamp_replaces_the_held_image_and_a_processed_stamp_is_not_released_again():
    p = StampPairer(WINDOW_NS)
    p.add_color(100 * MS, "first")
    p.add_color(100 * MS, "second")
    p.add_depth(100 * MS, "d")
    assert p.take_pairs() == [(100 * MS, "second", "d")]
    p.add_color(100 * MS, "again")         # a duplicate of a processed frame
    p.add_depth(100 * MS, "again")
    assert p.take_pairs() == []


def test_a_depth_without_colour_waits_until_the_window_expires():
    p = StampPairer(WINDOW_NS)
    p.add_depth(100 * MS, "d100")          # its colour image was lost
    p.add_color(400 * MS, "c400")
    p.add_depth(400 * MS, "d400")
    assert stamps(p.take_pairs()) == [400 * MS]
    assert p.held() == (0, 1)              # 300 ms old: still within the 500 ms window
    p.add_color(600 * MS, "c600")          # newest 600 ms: anything before 100 ms goes
    assert p.held() == (1, 1)
    p.add_color(601 * MS, "c601")          # 100 ms is now older than the window: dropped
    assert p.held() == (2, 0)
    p.add_color(100 * MS, "c100")          # the partner arriving after the window: never paired
    assert p.take_pairs() == [] and p.held() == (2, 0)


def test_an_unmatched_colour_expires_too():
    p = StampPairer(WINDOW_NS)
    p.add_color(0, "c0")
    p.add_depth(WINDOW_NS + 1, "d")
    assert p.held() == (0, 1)


def test_the_clock_going_back_resets_pairing_and_says_so():
    p = StampPairer(WINDOW_NS)
    p.add_color(5000 * MS, "c")
    p.add_depth(5000 * MS, "d")
    assert stamps(p.take_pairs()) == [5000 * MS]
    assert p.add_color(4500 * MS, "c4500") is False     # within two windows: a late image, no reset
    p.add_depth(4700 * MS, "held")
    assert p.add_color(100 * MS, "c100") is True        # far back: the sim restarted
    assert p.last_released_ns is None and p.held() == (1, 0)
    p.add_depth(100 * MS, "d100")
    assert p.take_pairs() == [(100 * MS, "c100", "d100")]


@pytest.mark.parametrize("window", [0, -1, 0.5, True])
def test_the_window_must_be_a_positive_integer_of_nanoseconds(window):
    with pytest.raises(ValueError, match=f"positive number of nanoseconds, got {window!r}"):
        StampPairer(window)

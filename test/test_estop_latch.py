"""The e-stop latch: late and repeated (latched) stop and release commands, and the service."""

from coop_robot.control.estop import EstopLatch

S = 1_000_000_000  # ns per s


def test_a_stop_engages_and_a_later_release_frees():
    latch = EstopLatch()
    assert latch.command(True, 10 * S, (10 * S, 1)) and latch.engaged
    assert latch.command(False, 11 * S, (11 * S, 1)) and not latch.engaged


def test_a_latched_stop_delivered_again_after_a_release_does_not_re_engage():
    latch = EstopLatch()
    latch.command(True, 10 * S, (10 * S, 1))
    latch.command(True, 10 * S, (10 * S, 1))  # the same message on the second subscription
    latch.command(False, 20 * S, (20 * S, 1))
    # The stop's publisher is still alive and the controller matches it anew.
    assert not latch.command(True, 10 * S, (10 * S, 1)) and not latch.engaged
    # A new stop from that publisher engages.
    assert latch.command(True, 30 * S, (30 * S, 2)) and latch.engaged


def test_an_old_latched_release_does_not_free_a_newer_stop():
    latch = EstopLatch()
    latch.command(True, 30 * S, (30 * S, 1))
    assert not latch.command(False, 20 * S, (20 * S, 1)) and latch.engaged


def test_a_stop_is_never_judged_by_its_timestamp():
    # A stop from a publisher whose clock lags the releasing one's still engages (the safe side).
    latch = EstopLatch()
    latch.command(True, 10 * S, (10 * S, 1))
    latch.command(False, 100 * S, (100 * S, 1))
    assert latch.command(True, 50 * S, (50 * S, 2)) and latch.engaged


def test_a_late_joining_controller_honours_a_latched_stop_unless_a_newer_release_came_after_it():
    latch = EstopLatch()
    latch.command(True, 10 * S, (10 * S, 1))
    assert latch.engaged
    latch.command(False, 20 * S, (20 * S, 1))
    assert not latch.engaged
    # The other order: the release first, then the (older) stop: engaged, the safe side.
    latch = EstopLatch()
    latch.command(False, 20 * S, (20 * S, 1))
    latch.command(True, 10 * S, (10 * S, 1))
    assert latch.engaged


def test_the_service_applies_whatever_the_timestamps_say():
    latch = EstopLatch()
    latch.command(True, 500 * S, (500 * S, 1))   # a publisher whose clock runs ahead
    latch.request(False, 100 * S)                # the operator releases now, on this host's clock
    assert not latch.engaged
    assert not latch.command(True, 500 * S, (500 * S, 1))   # that same stop again: stays released
    latch.request(True, 101 * S)
    assert latch.engaged
    assert not latch.command(False, 99 * S, (99 * S, 1))     # older than the service's stop
    assert latch.command(False, 102 * S, (102 * S, 1)) and not latch.engaged

"""bench/partner_zone_visits.py: the zone visits it times are the partner model's own."""


from conftest import load_bench


def test_a_turn_has_one_visit_that_ends_it_and_false_starts_are_told_apart():
    bench = load_bench("partner_zone_visits")
    from coop_robot.partner.profile import load_profile

    fast = load_profile("fast")
    for seed in range(3):
        visits = bench.turn_visits(fast, seed)
        assert [ends for _, ends in visits] == [True]
        # reach + dwell + withdraw of "fast": the zone holds the hand for most of the dwell and little else
        assert fast.dwell_s.min_s <= visits[0][0] <= 2.0
    # A partner whose every turn starts with a false start that enters the zone.
    erratic = load_profile("erratic")
    always = erratic.__class__(**{**erratic.__dict__, "false_start": erratic.false_start.__class__(
        probability=1.0, depth_fraction=(0.95, 0.95), pause_s=erratic.false_start.pause_s)})
    visits = bench.turn_visits(always, 0)
    assert [ends for _, ends in visits] == [False, True]
    quicker = bench.turn_visits(always.time_scaled(0.5), 0)
    assert quicker[1][0] < visits[1][0]      # the same turn, quicker: a shorter visit

"""Simulated partner: turn taking, planned crossing times, stochastic timing, smoothness, adaptation."""

from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from coop_robot.geometry import Zone, world_geometry
from coop_robot.partner.model import NEAR_MISS_S, PHASES, PartnerModel
from coop_robot.partner.profile import Adaptation, TaskObjects, load_profile

ZONE = Zone.from_lists([0.45, -0.20, 0.626], [0.75, 0.20, 0.926])
REST_M = (1.02, 0.15, 0.80)
TARGET_M = (0.62, 0.06, 0.70)
DT_S = 0.004  # physics step


def plain(name="typical", **changes):
    """A shipped profile without hesitations, false starts or pauses, then ``changes`` applied."""
    p = load_profile(name)
    p = replace(p, hesitation=replace(p.hesitation, probability=0.0),
                false_start=replace(p.false_start, probability=0.0),
                pause=replace(p.pause, probability=0.0))
    return replace(p, **changes)


OBJECTS_M = world_geometry().task_objects_m  # the world's task objects; the first is TARGET_M


def make(profile="typical", seed=0, objects=TARGET_M):
    profile = load_profile(profile) if isinstance(profile, str) else profile
    return PartnerModel(profile, np.random.default_rng(seed), REST_M, objects, ZONE)


def choosing(profile="typical", **task_objects):
    """A profile (name or loaded) with its task_objects section replaced by ``task_objects``."""
    profile = load_profile(profile) if isinstance(profile, str) else profile
    return replace(profile, task_objects=TaskObjects(**task_objects))


class TurnTakingRobot:
    """Enters ``gap_s`` after the hand's last exit of a partner turn, stays ``stay_s``, leaves."""

    def __init__(self, gap_s=0.5, stay_s=0.6):
        self.gap_s, self.stay_s = gap_s, stay_s
        self.enter_at = None
        self.was_in = False

    def __call__(self, t, model):
        if self.was_in and not model.hand_in_zone and model.phase == "withdrawing" and self.enter_at is None:
            self.enter_at = t + self.gap_s  # the hand has just left on its way back to rest
        self.was_in = model.hand_in_zone
        inside = self.enter_at is not None and self.enter_at <= t < self.enter_at + self.stay_s
        if self.enter_at is not None and t >= self.enter_at + self.stay_s:
            self.enter_at = None
        return inside


def scripted(*windows):
    """Robot in the zone during the given [start, end) windows (s)."""
    return lambda t, model: any(a <= t < b for a, b in windows)


@dataclass
class Trace:
    t: list = field(default_factory=list)
    hand: list = field(default_factory=list)
    hand_in: list = field(default_factory=list)
    robot_in: list = field(default_factory=list)
    phase: list = field(default_factory=list)
    planned: list = field(default_factory=list)  # (enter_s, exit_s) after each step
    turns: list = field(default_factory=list)

    def edges(self, series, rising=True):
        x = np.asarray(series, dtype=bool)
        idx = np.flatnonzero(x[1:] & ~x[:-1] if rising else ~x[1:] & x[:-1]) + 1
        return [self.t[i] for i in idx]


def simulate(model, duration_s, robot=None, stop_after_turns=None):
    robot = robot or (lambda t, m: False)
    tr = Trace()
    robot_in = False
    for i in range(int(round(duration_s / DT_S)) + 1):
        t = i * DT_S
        hand = model.step(t, robot_in)
        tr.t.append(t)
        tr.hand.append(hand)
        tr.hand_in.append(model.hand_in_zone)
        tr.robot_in.append(robot_in)
        tr.phase.append(model.phase)
        tr.planned.append((model.planned_enter_s, model.planned_exit_s))
        tr.turns.append(model.turns_completed)
        robot_in = robot(t, model)  # the robot reacts to what it saw, effective next step
        if stop_after_turns is not None and model.turns_completed >= stop_after_turns:
            break
    tr.hand = np.asarray(tr.hand)
    return tr


def test_hand_starts_at_rest_outside_the_zone():
    model = make()
    assert np.allclose(model.hand_m, REST_M)
    assert not model.hand_in_zone
    assert model.phase == "initial_wait"
    assert model.turns_completed == 0 and model.timing_scale == 1.0
    assert model.planned_enter_s > 0.0 and model.planned_exit_s > model.planned_enter_s
    assert np.allclose(model.step(0.0, False), REST_M)


def test_first_turn_enters_and_leaves_then_waits_at_rest():
    model = make(seed=3)
    tr = simulate(model, 15.0)  # the robot never comes
    assert len(tr.edges(tr.hand_in)) == 1 and len(tr.edges(tr.hand_in, rising=False)) == 1
    assert model.turns_completed == 1
    assert model.phase == "waiting_for_robot"
    assert model.planned_enter_s is None and model.planned_exit_s is None
    assert np.allclose(tr.hand[-1], REST_M)
    assert set(tr.phase) <= set(PHASES)


def test_partner_waits_until_robot_has_entered_and_left():
    # A robot visit before the partner's first reach is not a robot turn; the one at 8-9 s is.
    model = make(plain(), seed=1)
    tr = simulate(model, 14.0, scripted((0.1, 0.2), (8.0, 9.0)))
    enters = tr.edges(tr.hand_in)
    assert len(enters) == 2
    assert enters[0] < 8.0 and enters[1] > 9.0
    reacting = [t for t, ph in zip(tr.t, tr.phase) if ph == "reacting"]
    assert reacting[0] == pytest.approx(9.0, abs=2 * DT_S)  # reacts to the robot's exit


def test_robot_that_never_leaves_keeps_partner_waiting():
    model = make(plain(), seed=1)
    tr = simulate(model, 20.0, scripted((8.0, 100.0)))
    assert len(tr.edges(tr.hand_in)) == 1
    assert model.phase == "waiting_for_robot" and model.planned_exit_s is None


@pytest.mark.parametrize("objects", ["one", "uniform"])
@pytest.mark.parametrize("profile", ["typical", "hesitant", "erratic", "fast"])
def test_planned_crossings_match_simulated_crossings_within_one_step(profile, objects):
    for seed in range(3):
        model = (make(profile, seed) if objects == "one"
                 else make(choosing(profile, choice="uniform"), seed, OBJECTS_M))  # entry fraction varies per turn
        tr = simulate(model, 40.0, TurnTakingRobot())
        enters, exits = tr.edges(tr.hand_in), tr.edges(tr.hand_in, rising=False)
        assert len(enters) >= 5
        idx = {t: i for i, t in enumerate(tr.t)}
        for t_cross, which in [(t, 0) for t in enters] + [(t, 1) for t in exits]:
            planned = tr.planned[idx[t_cross] - 1][which]  # what the model said one step before
            assert planned is not None
            assert 0.0 <= t_cross - planned < DT_S + 1e-9
        # ... and the times were already known when the turn was planned (nothing postponed here).
        plan_steps = [i for i in range(len(tr.t))
                      if tr.planned[i][0] is not None and (i == 0 or tr.planned[i - 1][0] is None)]
        checked = 0
        for i in plan_steps:
            plan_enter, plan_exit = tr.planned[i]
            if plan_exit > tr.t[-1] - 0.1:
                continue  # the session ended before this turn did
            assert 0.0 <= next(t for t in enters if t >= tr.t[i]) - plan_enter < DT_S + 1e-9
            assert 0.0 <= next(t for t in exits if t >= tr.t[i]) - plan_exit < DT_S + 1e-9
            checked += 1
        assert checked >= 5


def test_reach_is_postponed_while_robot_is_in_zone():
    # The robot exits at 9.0 (partner plans a ~0.25 s reaction), then comes back at 9.05 until 11.
    model = make(plain(), seed=1)
    tr = simulate(model, 16.0, scripted((8.0, 9.0), (9.05, 11.0)))
    t = np.asarray(tr.t)
    moved = np.linalg.norm(tr.hand - np.asarray(REST_M), axis=1) > 1e-6
    assert not moved[(t > 8.0) & (t <= 11.0)].any()
    assert {tr.phase[i] for i in np.flatnonzero((t > 9.05) & (t <= 11.0))} == {"reacting"}
    enters = tr.edges(tr.hand_in)
    assert len(enters) == 2 and enters[1] > 11.0
    i = int(np.searchsorted(t, enters[1])) - 1
    assert 0.0 <= enters[1] - tr.planned[i][0] < DT_S + 1e-9  # the planned time moved with it


def test_robot_barging_in_during_hesitation_holds_hand_and_is_not_its_turn():
    base = plain()
    profile = replace(base, hesitation=replace(base.hesitation, probability=1.0, at_fraction=(0.3, 0.3)))
    undisturbed = simulate(make(profile, seed=6), 6.0)
    t_hes = undisturbed.t[undisturbed.phase.index("hesitating")]
    tr = simulate(make(profile, seed=6), 20.0, scripted((t_hes + 0.05, t_hes + 1.5)))
    t = np.asarray(tr.t)
    held = (t > t_hes + 0.05) & (t <= t_hes + 1.5)
    hesitation_point = np.asarray(REST_M) + 0.3 * (np.asarray(TARGET_M) - np.asarray(REST_M))
    assert np.allclose(tr.hand[held], hesitation_point)
    assert {tr.phase[i] for i in np.flatnonzero(held)} == {"hesitating"}
    enters = tr.edges(tr.hand_in)
    assert len(enters) == 1 and enters[0] > t_hes + 1.5  # continues after the robot left ...
    assert tr.phase[-1] == "waiting_for_robot"  # ... and still waits for the robot's real turn


def reaction_times(model, turns):
    """Robot exit -> start of the partner's reach, measured on the simulated trace (s)."""
    tr = simulate(model, 10.0 * turns, TurnTakingRobot(gap_s=0.4, stay_s=0.3), stop_after_turns=turns)
    exits = tr.edges(tr.robot_in, rising=False)
    reach_starts = [tr.t[i] for i in range(1, len(tr.t))
                    if tr.phase[i] == "reaching" and tr.phase[i - 1] == "reacting"]
    return np.asarray([min(r for r in reach_starts if r >= e) - e for e in exits if any(r >= e for r in reach_starts)])


def test_reaction_time_median_matches_profile():
    profile = plain()
    rt = reaction_times(make(profile, seed=11), turns=250)
    assert len(rt) >= 240
    assert np.median(rt) == pytest.approx(profile.reaction_time_s.median_s, abs=0.015)
    assert rt.min() >= profile.reaction_time_s.min_s - 1e-9
    assert rt.max() <= profile.reaction_time_s.max_s + DT_S + 1e-9


def test_same_seed_same_trajectory_different_seed_differs():
    a = simulate(make("erratic", 7), 30.0, TurnTakingRobot())
    b = simulate(make("erratic", 7), 30.0, TurnTakingRobot())
    c = simulate(make("erratic", 8), 30.0, TurnTakingRobot())
    assert np.array_equal(a.hand, b.hand) and a.phase == b.phase and a.planned == b.planned
    assert not np.array_equal(a.hand, c.hand)


def turn_phases(profile, turns=40, seed=0):
    """The set of phases seen in each partner turn."""
    tr = simulate(make(profile, seed), 15.0 * turns, TurnTakingRobot(gap_s=0.3, stay_s=0.3), stop_after_turns=turns)
    per_turn = [set() for _ in range(turns + 1)]
    for ph, n in zip(tr.phase, tr.turns):
        per_turn[n].add(ph)
    return per_turn[:turns]


@pytest.mark.parametrize("probability, low, high", [(0.0, 0.0, 0.0), (0.5, 0.3, 0.7), (1.0, 1.0, 1.0)])
def test_hesitation_appears_at_its_probability(probability, low, high):
    base = plain()
    turns = turn_phases(replace(base, hesitation=replace(base.hesitation, probability=probability)))
    share = np.mean(["hesitating" in s for s in turns])
    assert low <= share <= high


@pytest.mark.parametrize("probability, low, high", [(0.0, 0.0, 0.0), (0.5, 0.3, 0.7), (1.0, 1.0, 1.0)])
def test_false_start_appears_at_its_probability(probability, low, high):
    base = plain()
    turns = turn_phases(replace(base, false_start=replace(base.false_start, probability=probability)))
    share = np.mean(["false_start_return" in s for s in turns])
    assert low <= share <= high


def false_start_profile(depth):
    base = plain()
    return replace(base, false_start=replace(base.false_start, probability=1.0, depth_fraction=(depth, depth)))


def test_false_start_that_enters_zone_gives_two_visits_in_one_turn():
    model = make(false_start_profile(0.9), seed=2)
    first_exit_planned = model.planned_exit_s
    tr = simulate(model, 60.0, TurnTakingRobot(), stop_after_turns=5)
    enters = np.asarray(tr.edges(tr.hand_in))
    exits = np.asarray(tr.edges(tr.hand_in, rising=False))
    turn_ends = tr.edges(np.diff(tr.turns, prepend=0) > 0)
    start = 0.0
    for end in turn_ends:
        assert np.count_nonzero((enters > start) & (enters <= end)) == 2
        assert np.count_nonzero((exits > start) & (exits <= end)) == 2
        start = end
    assert 0.0 <= exits[0] - first_exit_planned < DT_S + 1e-9  # planned exit = the FIRST exit


def test_the_turn_ending_exit_is_the_real_reachs_through_a_false_start():
    model = make(false_start_profile(0.9), seed=2)
    turn_exit = model.planned_turn_exit_s
    assert turn_exit > model.planned_exit_s          # the false start's exit comes first
    tr = simulate(model, 60.0, TurnTakingRobot(), stop_after_turns=1)
    exits = np.asarray(tr.edges(tr.hand_in, rising=False))
    assert len(exits) >= 2
    assert 0.0 <= exits[1] - turn_exit < DT_S + 1e-9   # ... and the turn ends at the second
    plain_model = make(plain(), seed=2)                # no false start: one exit, the same either way
    assert plain_model.planned_turn_exit_s == plain_model.planned_exit_s


def test_shallow_false_start_stays_outside_zone():
    tr = simulate(make(false_start_profile(0.4), seed=2), 60.0, TurnTakingRobot(), stop_after_turns=5)
    assert len(tr.edges(tr.hand_in)) == 5
    assert "false_start_return" in tr.phase


class OverlappingRobot:
    """Enters 0.2 s into the partner's dwell and leaves 1 s later (an overlap every turn)."""

    def __init__(self):
        self.dwell_start = None

    def __call__(self, t, model):
        if model.phase == "dwelling" and self.dwell_start is None:
            self.dwell_start = t
        if self.dwell_start is not None and t >= self.dwell_start + 1.2:
            self.dwell_start = None
        return self.dwell_start is not None and t >= self.dwell_start + 0.2


def adaptive(rate=0.1, enabled=True):
    return plain(adaptation=Adaptation(enabled=enabled, rate=rate, min_scale=0.6, max_scale=1.5))


def test_adaptation_speeds_up_after_smooth_turns():
    model = make(adaptive(rate=0.1), seed=4)
    robot = TurnTakingRobot(gap_s=NEAR_MISS_S + 0.3)  # polite: enters well after the hand left
    for n in range(1, 8):
        simulate_continue(model, robot, turns=n)
        assert model.timing_scale == pytest.approx(max(0.6, 0.9**n))  # floored at min_scale


@pytest.mark.parametrize("robot", [TurnTakingRobot(gap_s=NEAR_MISS_S / 2), OverlappingRobot()],
                         ids=["near_miss", "overlap"])
def test_adaptation_slows_down_after_overlap(robot):
    model = make(adaptive(rate=0.1), seed=4)
    for n in range(1, 5):
        simulate_continue(model, robot, turns=n)
        assert model.timing_scale == pytest.approx(min(1.5, 1.2**n))  # capped at max_scale


@pytest.mark.parametrize("robot", [TurnTakingRobot(gap_s=NEAR_MISS_S + 0.3), OverlappingRobot()],
                         ids=["smooth", "overlap"])
def test_adaptation_split_rates_apply_by_outcome(robot):
    rule = Adaptation(enabled=True, speed_up=0.07, slow_down=0.03, min_scale=0.5, max_scale=2.0)
    model = make(plain(adaptation=rule), seed=4)
    simulate_continue(model, robot, turns=3)
    factor = 1.03 if isinstance(robot, OverlappingRobot) else 0.93
    assert model.timing_scale == pytest.approx(factor**3)


def test_adapted_scale_stretches_sampled_times():
    slow_model, fast_model = make(adaptive(), seed=4), make(adaptive(), seed=4)
    simulate_continue(slow_model, OverlappingRobot(), turns=4)
    simulate_continue(fast_model, TurnTakingRobot(gap_s=1.0), turns=4)
    assert slow_model.timing_scale > 1.0 > fast_model.timing_scale
    reach = {m: next(s.duration_s for s in m.segments if s.phase == "reaching")
             for m in (slow_model, fast_model)}
    assert reach[slow_model] > reach[fast_model]


def test_adaptation_disabled_keeps_scale():
    model = make(adaptive(enabled=False), seed=4)
    simulate_continue(model, TurnTakingRobot(gap_s=0.1), turns=4)
    assert model.timing_scale == 1.0


def simulate_continue(model, robot, turns, limit_s=120.0):
    """Step an existing model on from its current time until ``turns`` partner turns are done,
    then 0.5 s more (so the outcome of the last turn is settled)."""
    t0 = model.now_s
    robot_in = False
    i = 1
    done_at = None
    while True:
        t = t0 + i * DT_S
        model.step(t, robot_in)
        robot_in = robot(t, model)
        if done_at is None and model.turns_completed >= turns:
            done_at = t
        if done_at is not None and t >= done_at + 0.5:
            return
        assert t - t0 < limit_s, "partner did not complete its turns"
        i += 1


@pytest.mark.parametrize("profile", ["typical", "erratic", "hesitant"])
def test_hand_velocity_is_continuous(profile):
    tr = simulate(make(profile, seed=5), 40.0, TurnTakingRobot())
    step_m = np.linalg.norm(np.diff(tr.hand, axis=0), axis=1)
    velocity = np.diff(tr.hand, axis=0) / DT_S
    dv = np.linalg.norm(np.diff(velocity, axis=0), axis=1)
    assert step_m.max() < (0.008 if profile == "typical" else 0.011)  # < 2 (2.75) m/s peak
    assert dv.max() < 0.12  # < 30 m/s^2: no velocity jumps, even at segment joins
    assert step_m.sum() > 1.0  # it did move


def test_rejects_bad_geometry_and_backwards_time():
    profile = load_profile("typical")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="rest_m .* outside the zone"):
        PartnerModel(profile, rng, TARGET_M, TARGET_M, ZONE)
    with pytest.raises(ValueError, match="target_m .* inside the zone"):
        PartnerModel(profile, rng, REST_M, (2.0, 0.0, 0.8), ZONE)
    with pytest.raises(ValueError, match="rest_m must be 3 finite"):
        PartnerModel(profile, rng, (1.0, np.nan, 0.8), TARGET_M, ZONE)
    model = PartnerModel(profile, rng, REST_M, TARGET_M, ZONE, start_time_s=5.0)
    assert model.planned_enter_s > 5.0
    model.step(5.1, False)
    with pytest.raises(ValueError, match="non-decreasing"):
        model.step(5.0, False)


def test_start_time_offsets_the_whole_session():
    a, b = make(seed=9), PartnerModel(load_profile("typical"), np.random.default_rng(9), REST_M, TARGET_M, ZONE,
                                      start_time_s=100.0)
    assert b.planned_enter_s == pytest.approx(a.planned_enter_s + 100.0)
    assert b.planned_exit_s == pytest.approx(a.planned_exit_s + 100.0)


# ----------------------------------------------------------------------------- task objects
def reached_objects(model, turns):
    """``(task_object_index, target_m, hand while dwelling)`` of each of the first ``turns`` turns."""
    robot, robot_in, t, out, dwell_hand = TurnTakingRobot(), False, 0.0, [], None
    while len(out) < turns:
        before = model.turns_completed
        hand = model.step(t, robot_in)
        if model.phase == "dwelling":
            dwell_hand = hand
        if model.turns_completed > before:
            out.append((model.task_object_index, model.target_m, dwell_hand))
        robot_in = robot(t, model)
        t += DT_S
        assert t < 20.0 * turns, "partner did not complete its turns"
    return out


def test_uniform_choice_varies_the_target_and_covers_every_object():
    turns = reached_objects(make(choosing(choice="uniform"), seed=2, objects=OBJECTS_M), 50)
    indices = [k for k, _, _ in turns]
    assert set(indices) == set(range(len(OBJECTS_M)))
    assert max(np.bincount(indices)) < 25  # no object dominates
    for k, target, dwell_hand in turns:  # the hand goes where the model says, and dwells there
        np.testing.assert_array_equal(target, OBJECTS_M[k])
        np.testing.assert_allclose(dwell_hand, OBJECTS_M[k], atol=1e-12)


def test_fixed_choice_reproduces_the_single_target_partner():
    assert tuple(OBJECTS_M[0]) == TARGET_M
    assert TaskObjects() == TaskObjects("fixed", 0)  # a profile without the section: object 0 ...
    profile = replace(plain(), task_objects=TaskObjects())
    one = simulate(make(profile, seed=4), 30.0, TurnTakingRobot())
    many = simulate(make(profile, seed=4, objects=OBJECTS_M), 30.0, TurnTakingRobot())
    np.testing.assert_array_equal(one.hand, many.hand)  # ... which is today's partner, to the bit
    assert one.planned == many.planned and max(many.turns) >= 5
    assert {k for k, _, _ in reached_objects(make(choosing(choice="fixed", index=3), objects=OBJECTS_M), 6)} == {3}


def test_cycle_choice_visits_the_objects_in_order_from_its_index():
    turns = reached_objects(make(choosing(choice="cycle", index=3), objects=OBJECTS_M), 7)
    assert [k for k, _, _ in turns] == [3, 4, 0, 1, 2, 3, 4]


def test_weighted_choice_follows_the_weights():
    turns = reached_objects(make(choosing(choice="weighted", weights=(0, 0, 1, 0, 3)), seed=1, objects=OBJECTS_M), 40)
    counts = np.bincount([k for k, _, _ in turns], minlength=5)
    assert counts[[0, 1, 3]].sum() == 0
    assert counts[4] > counts[2] > 0


def plans(model, turns):
    """What each planned turn sampled: reaction and every segment after the wait, as (phase, duration_s)."""
    out, robot, robot_in, t, last = [], TurnTakingRobot(), False, 0.0, None
    while len(out) < turns:
        model.step(t, robot_in)
        if model.segments != last:  # a new turn was planned
            last = model.segments
            out.append((model.last_reaction_s, [(s.phase, round(s.duration_s, 12)) for s in last[1:]],
                        model.task_object_index))
        robot_in = robot(t, model)
        t += DT_S
    return out


def test_object_choice_is_seeded_and_leaves_the_timing_draws_alone():
    uniform = choosing("erratic", choice="uniform")
    first = plans(make(uniform, seed=7, objects=OBJECTS_M), 12)
    assert plans(make(uniform, seed=7, objects=OBJECTS_M), 12) == first  # same seed: same session
    assert [k for *_, k in plans(make(uniform, seed=8, objects=OBJECTS_M), 12)] != [k for *_, k in first]
    fixed = plans(make(choosing("erratic", choice="fixed"), seed=7, objects=OBJECTS_M), 12)
    # The object stream is separate: the same reactions, false starts, hesitations and durations.
    assert [(r, segs) for r, segs, _ in fixed] == [(r, segs) for r, segs, _ in first]
    assert len({k for *_, k in first}) > 1


def test_task_objects_that_do_not_fit_the_world_are_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"task_objects.index 5 is not an index .* 5 task object\(s\); expected 0 "):
        PartnerModel(choosing(choice="fixed", index=5), rng, REST_M, OBJECTS_M, ZONE)
    with pytest.raises(ValueError, match=r"task_objects.index 1 .* expected 0 .. 0"):
        PartnerModel(choosing(choice="cycle", index=1), rng, REST_M, TARGET_M, ZONE)
    with pytest.raises(ValueError, match=r"task_objects.weights has 2 entries, expected one per task object .*\(5\)"):
        PartnerModel(choosing(choice="weighted", weights=(1.0, 2.0)), rng, REST_M, OBJECTS_M, ZONE)
    with pytest.raises(ValueError, match=r"target_m \[2.0, 0.0, 0.8\] \(task object 1\) must be inside the zone"):
        PartnerModel(load_profile("typical"), rng, REST_M, [TARGET_M, (2.0, 0.0, 0.8)], ZONE)
    for bad in ([], [TARGET_M, (0.6, 0.0)], [[0.6, 0.0, np.nan]], "here"):
        with pytest.raises(ValueError, match="task_objects_m must be one"):
            PartnerModel(load_profile("typical"), rng, REST_M, bad, ZONE)


def test_a_time_scaled_profile_multiplies_every_duration_and_nothing_else():
    from coop_robot.partner.profile import ProfileError, load_profile

    base = load_profile("erratic")
    quick = base.time_scaled(0.5)
    assert quick.reaction_time_s.median_s == 0.5 * base.reaction_time_s.median_s
    assert quick.reaction_time_s.sigma == base.reaction_time_s.sigma           # a log-normal's spread is relative
    assert quick.reaction_time_s.max_s == 0.5 * base.reaction_time_s.max_s
    assert quick.initial_delay_s.max_s == 0.5 * base.initial_delay_s.max_s
    for name in ("reach_duration_s", "dwell_s", "withdraw_duration_s"):
        d, b = getattr(quick, name), getattr(base, name)
        assert (d.mean_s, d.sd_s, d.min_s) == (0.5 * b.mean_s, 0.5 * b.sd_s, 0.5 * b.min_s)
    assert quick.false_start.pause_s.min_s == 0.5 * base.false_start.pause_s.min_s
    assert quick.false_start.probability == base.false_start.probability
    assert quick.false_start.depth_fraction == base.false_start.depth_fraction
    assert quick.hesitation.duration_s.max_s == 0.5 * base.hesitation.duration_s.max_s
    assert quick.pause.duration_s.max_s == 0.5 * base.pause.duration_s.max_s
    assert (quick.task_objects, quick.adaptation, quick.name) == (base.task_objects, base.adaptation, base.name)
    assert base.time_scaled(1.0) is base
    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ProfileError, match="time scale"):
            base.time_scaled(bad)

"""bench/sync_task.py: trials are scored at every window with the one definition, and the verdicts
of issue 14 part 1 judge hand-built sessions."""


from conftest import load_bench


def _session(offsets, contacts=0, ssm_violations=0):
    trials = [{"trial": i + 1, "cue_s": 4.0 * i, "window_s": 0.75,
               "robot_arrival_s": None if o is None else 4.0 * i + 1 + o,
               "partner_arrival_s": None if o is None else 4.0 * i + 1} for i, o in enumerate(offsets)]
    return {"per_trial": trials, "contacts": contacts, "ssm_violations": ssm_violations}


def test_trials_are_scored_at_every_window():
    bench = load_bench("sync_task")
    s = _session([0.2, -0.5, 1.0, None])
    assert bench.success_at(s, 0.75) == (2, 4)
    assert bench.success_at(s, 1.5) == (3, 4)


def test_the_verdicts_judge_success_safety_and_the_lead_over_reactive():
    bench = load_bench("sync_task")
    good = {("typical", "mirror"): _session([0.1] * 10), ("typical", "reactive"): _session([0.1] * 5 + [1.0] * 5),
            ("slow", "mirror"): _session([0.1] * 8 + [1.0] * 2)}
    assert [ok for _, ok, _ in bench.verdicts(good, 0.75)] == [True, True, True]
    bad = {**good, ("slow", "mirror"): _session([0.1] * 7 + [1.0] * 3, ssm_violations=1),
           ("typical", "reactive"): _session([0.1] * 9 + [1.0])}
    (_, a, detail), (_, b, _), (_, c, lead) = bench.verdicts(bad, 0.75)
    assert not a and "slow 7/10" in detail and not b and not c and lead == "+10 points"

"""The synchronous joint-action task (issue 14): the controller's sync reach, the sync partner, the
metric definitions, the controls, the environment and `coop-robot eval --task sync`."""

import numpy as np
import pytest

from coop_robot.control.controller import ArmController, ControllerConfig, ControllerInputs
from coop_robot.geometry import world_geometry

ZONE = world_geometry().zone
PARTNER_REST_M = np.array(world_geometry().partner_rest_m)


# --------------------------------------------------------------------------- the controller's sync reach
@pytest.fixture(scope="module")
def sync_controller():
    return ArmController(ControllerConfig(task="sync"))


def drive(ctl: ArmController, t_end_s: float, hand_at=lambda t: PARTNER_REST_M, velocity_at=lambda t: np.zeros(3),
          decision_at=lambda t: "act") -> dict:
    """Tick ``ctl`` at 100 Hz from rest at home; the arm follows its commands exactly and perception
    is fresh every tick. Returns the events, states, EE positions and speed scales per tick."""
    ctl.reset()
    rec = {"events": [], "states": [], "ee": [], "scale": [], "qd": []}
    for t in np.arange(0.0, t_end_s, 0.01):
        q, qd, _ = ctl.commanded_state(t)
        hand = np.asarray(hand_at(t), dtype=float)
        out = ctl.update(t, ControllerInputs(decision=decision_at(t), partner_in_zone=ZONE.contains(hand),
                                             perception_stamp_s=t, joint_positions=q, partner_hand_m=hand,
                                             partner_velocity_mps=np.asarray(velocity_at(t), dtype=float)))
        rec["events"] += [(e.name, e.t_s) for e in out.events]
        rec["states"].append(out.state)
        rec["ee"].append(ctl.kinematics.fk(q))
        rec["scale"].append(out.speed_scale)
        rec["qd"].append(np.linalg.norm(qd))
    return rec


def test_a_sync_reach_goes_to_the_sync_target_without_entering_the_zone(sync_controller):
    ctl = sync_controller
    assert not ZONE.contains(ctl.config.sync_target_m, ctl.config.commit_margin_m)
    rec = drive(ctl, 2.5)
    names = [n for n, _ in rec["events"]]
    assert names[:2] == ["reach_start", "act_start"]     # ungated: no entry to commit
    assert "entry_commit" not in names and "abort" not in names
    assert not ZONE.contains_many(np.array(rec["ee"]), ctl.config.commit_margin_m).any()
    arrived = rec["ee"][rec["states"].index("acting")]
    assert np.linalg.norm(arrived - np.array(ctl.config.sync_target_m)) < 0.005


def test_a_hand_approaching_the_zone_does_not_hold_a_sync_reach(sync_controller):
    # The hand moves fast toward the zone from its rest point: the approach guard would hold a
    # turn's reach; the sync reach has no entry to guard and goes on (the hand stays far from the arm).
    toward_zone = np.array([-0.6, -0.3, 0.0])
    rec = drive(sync_controller, 2.5, velocity_at=lambda t: toward_zone)
    names = [n for n, _ in rec["events"]]
    assert names[:2] == ["reach_start", "act_start"]
    assert "ssm_stop" not in names


def test_separation_monitoring_stops_a_sync_reach_when_the_hand_comes_close(sync_controller):
    ctl = sync_controller
    free = drive(ctl, 2.5)
    mid = free["ee"][60]  # the EE 0.6 s into the reach
    # From 0.5 s on, a hand 0.12 m beside the arm's path (outside the zone): the protective
    # separation does not fit, so the arm must stop on its path and stay stopped.
    close = mid + np.array([0.0, 0.0, -0.12])
    assert not ZONE.contains(close)
    rec = drive(ctl, 2.5, hand_at=lambda t: close if t >= 0.5 else PARTNER_REST_M)
    names = [n for n, _ in rec["events"]]
    assert "ssm_stop" in names
    stop_s = dict((n, t) for n, t in reversed(rec["events"]))["ssm_stop"]
    assert stop_s >= 0.5
    assert "act_start" not in names   # it never got to its target with the hand there
    ticks_after = [i for i in range(len(rec["qd"])) if i * 0.01 > stop_s + 0.5]
    assert all(rec["scale"][i] == 0.0 for i in ticks_after)
    assert all(rec["qd"][i] < 1e-6 for i in ticks_after)   # at rest on its path


def test_a_sync_target_inside_the_zone_or_an_unknown_task_is_refused():
    with pytest.raises(ValueError, match=r"sync_target_m \[0.6, 0.0, 0.7\] must be outside the zone"):
        ArmController(ControllerConfig(task="sync", sync_target_m=(0.6, 0.0, 0.7)))
    with pytest.raises(ValueError, match="unknown task 'handshake'; expected one of turn_taking, sync"):
        ControllerConfig(task="handshake")


# --------------------------------------------------------------------------- the partner
def _profile(**sync):
    """The typical profile with a ``sync`` section (no hesitation or pause, so timing is exact)."""
    import yaml

    from coop_robot.partner.profile import partners_dir, validate_profile

    data = yaml.safe_load((partners_dir() / "typical.yaml").read_text())
    data["hesitation"]["probability"] = 0.0
    data["pause"]["probability"] = 0.0
    if sync:
        data["sync"] = sync
    return validate_profile(data, "test")


def _sync_partner(profile, seed=0):
    from coop_robot.partner.sync import SyncPartner
    from coop_robot.timing.sync import sync_task_config

    cfg = sync_task_config()
    return SyncPartner(profile, np.random.default_rng(seed), PARTNER_REST_M, cfg.partner_target_m, ZONE,
                       cfg.arrival_radius_m), cfg


def test_every_shipped_and_held_out_profile_loads_with_the_default_sync_timing():
    from pathlib import Path

    from coop_robot.partner.profile import SyncTiming, load_profile, shipped_profiles

    heldout = sorted((Path(__file__).parent / "heldout_partners").glob("*.yaml"))
    for name in [*shipped_profiles(), *heldout]:
        assert load_profile(name).sync == SyncTiming()


def test_a_bad_sync_section_names_the_key():
    from coop_robot.partner.profile import ProfileError

    with pytest.raises(ProfileError, match=r"'sync.follow_weight': expected a finite number >= 0 and <= 1, got 1.5"):
        _profile(follow_weight=1.5)
    with pytest.raises(ProfileError, match=r"unknown key\(s\) 'sync.lead'"):
        _profile(lead=0.2)


def test_the_sync_partner_reaches_its_target_on_its_own_timing_when_the_robot_stays_still():
    fixed = {"median": 0.6, "sigma": 0.0, "min": 0.1, "max": 2.0}
    partner, cfg = _sync_partner(_profile(start_delay_s=fixed))
    partner.step(0.0)
    partner.cue(1.0)
    assert partner.planned_start_s == pytest.approx(1.6)
    arrival = partner.planned_arrival_s
    first_near = None
    for t in np.arange(1.0, 6.0, 1 / 240):
        partner.see_robot(t, [0.43, 0.0, 1.27])   # a robot that never moves
        hand = partner.step(t)
        assert not ZONE.contains(hand)
        if first_near is None and np.linalg.norm(hand - np.array(cfg.partner_target_m)) <= cfg.arrival_radius_m:
            first_near = t
    assert first_near == pytest.approx(arrival, abs=1 / 240)
    assert partner.phase == "resting" and np.allclose(partner.hand_m, PARTNER_REST_M)


def test_the_sync_partner_retimes_its_reach_toward_the_robot_it_sees_start():
    slow_own = {"median": 2.0, "sigma": 0.0, "min": 0.1, "max": 3.0}
    react = {"median": 0.3, "sigma": 0.0, "min": 0.1, "max": 1.0}
    partner, _ = _sync_partner(_profile(start_delay_s=slow_own, robot_reaction_s=react, follow_weight=1.0,
                                        robot_duration_estimate_s=1.0, estimate_sd_s=0.0))
    partner.step(0.0)
    partner.cue(1.0)
    own_arrival = partner.planned_arrival_s
    for t in np.arange(1.0, 1.6, 1 / 240):
        # The robot starts moving at the cue: 1 cm/tick along x, so it is 2 cm away 2 ticks later.
        partner.see_robot(t, [0.43 - 0.005 * round((t - 1.0) * 240), 0.0, 1.27])
        partner.step(t)
    onset = partner.robot_onset_s
    assert onset == pytest.approx(1.0 + 4 / 240)
    # follow_weight 1: it now aims at onset + its estimate of the robot's reach (1.0 s), earlier
    # than its own plan, and waits out its 0.3 s reaction before starting.
    assert partner.planned_arrival_s == pytest.approx(onset + 1.0, abs=1e-6)
    assert partner.planned_arrival_s < own_arrival
    assert partner.planned_start_s >= onset + 0.3 - 1e-9


def test_the_sync_partner_adapts_its_estimate_of_the_robot():
    partner, _ = _sync_partner(_profile(adaptation_rate=0.5, robot_duration_estimate_s=1.0))
    partner.end_trial(robot_start_s=2.0, robot_arrival_s=4.0)
    assert partner.robot_estimate_s == pytest.approx(1.5)
    still, _ = _sync_partner(_profile(robot_duration_estimate_s=1.0))
    still.end_trial(robot_start_s=2.0, robot_arrival_s=4.0)
    assert still.robot_estimate_s == 1.0


# --------------------------------------------------------------------------- the metrics
def test_offset_success_and_who_waited_on_hand_built_trials():
    from coop_robot.timing.sync import SyncTrial, summarize_sync

    late_robot = SyncTrial(1, cue_s=1.0, window_s=0.75, robot_arrival_s=2.5, partner_arrival_s=2.0)
    early_robot = SyncTrial(2, cue_s=5.0, window_s=0.75, robot_arrival_s=6.0, partner_arrival_s=7.0)
    robot_missing = SyncTrial(3, cue_s=9.0, window_s=0.75, partner_arrival_s=10.0)
    at_the_edge = SyncTrial(4, cue_s=13.0, window_s=0.75, robot_arrival_s=13.25, partner_arrival_s=14.0)
    assert (late_robot.offset_s, late_robot.success, late_robot.waited) == (0.5, True, "partner")
    assert (early_robot.offset_s, early_robot.success, early_robot.waited) == (-1.0, False, "robot")
    assert (robot_missing.offset_s, robot_missing.success, robot_missing.waited) == (None, False, "partner")
    assert (at_the_edge.offset_s, at_the_edge.success) == (-0.75, True)   # |offset| <= window
    s = summarize_sync([late_robot, early_robot, robot_missing, at_the_edge], window_s=0.75)
    assert (s["trials"], s["successes"], s["success_rate"], s["missed"]) == (4, 2, 0.5, 1)
    assert s["median_offset_s"] == pytest.approx(-0.75)
    assert (s["offset_p25_s"], s["offset_p75_s"]) == (pytest.approx(-0.875), pytest.approx(-0.125))
    assert (s["robot_waited"], s["partner_waited"]) == (2, 2)


def test_sync_trials_cue_and_score_from_ground_truth():
    from coop_robot.timing.sync import SyncTaskConfig, SyncTrials

    robot_home, robot_target = np.array([0.4, 0.0, 1.2]), np.array([0.3, -0.3, 0.72])
    cfg = SyncTaskConfig(partner_target_m=(0.86, -0.12, 0.70), first_cue_s=1.0, intertrial_s=1.0)
    hand_target = np.array(cfg.partner_target_m)
    trials = SyncTrials(cfg, robot_target)

    def at(t, robot, hand, rest=(False, False), contact=False):
        return trials.step(t, robot, hand, contact=contact, robot_at_rest=rest[0], partner_at_rest=rest[1])

    assert not at(0.5, robot_home, PARTNER_REST_M, rest=(True, True))    # before first_cue_s
    assert at(1.0, robot_home, PARTNER_REST_M, rest=(True, True))        # the cue
    assert trials.cue_s == 1.0
    at(1.2, robot_home + [0.0, 0.0, -0.05], PARTNER_REST_M)              # the robot starts
    at(1.5, robot_home + [0.0, 0.0, -0.05], PARTNER_REST_M + [-0.05, 0.0, 0.0])
    trials.add_separation(1.5, 0.20, 0.25, 0.3)                          # closer than S_p, approaching
    trials.add_separation(1.51, 0.20, 0.25, 0.3)                         # the same episode
    at(2.0, robot_target + [0.015, 0.0, 0.0], PARTNER_REST_M + [-0.05, 0.0, 0.0])   # robot within 2 cm
    at(2.3, robot_target, hand_target)
    assert not trials.trials                                             # not back at rest yet
    at(3.0, robot_home, PARTNER_REST_M, rest=(True, True))
    (trial,) = trials.trials
    assert (trial.cue_s, trial.robot_start_s, trial.partner_start_s) == (1.0, 1.2, 1.5)
    assert (trial.robot_arrival_s, trial.partner_arrival_s) == (2.0, 2.3)
    assert trial.offset_s == pytest.approx(-0.3) and trial.waited == "robot" and trial.success
    assert (trial.ssm_violations, trial.min_separation_m) == (1, 0.20)
    assert trials.cue_s is None
    assert not at(3.5, robot_home, PARTNER_REST_M, rest=(True, True))    # inter-trial interval
    assert at(4.0, robot_home, PARTNER_REST_M, rest=(True, True))


def test_a_bad_window_or_an_unknown_sync_parameter_is_refused():
    from coop_robot.timing.sync import sync_task_config

    assert sync_task_config().window_s == 0.75
    for bad in (0, -0.5, float("nan"), "wide"):
        with pytest.raises(ValueError, match="sync window_s must be a finite number of seconds > 0, got"):
            sync_task_config({"sync_window_s": bad})
    with pytest.raises(ValueError, match=r"window_s \(7 s\) must be shorter than trial_timeout_s \(6 s\)"):
        sync_task_config({"sync_window_s": 7.0})
    with pytest.raises(ValueError, match=r"unknown sync parameter\(s\) \['sync_windw_s'\]"):
        sync_task_config({"sync_windw_s": 1.0})


# --------------------------------------------------------------------------- the environment and the controls
TRIALS = 6


@pytest.fixture(scope="module")
def sync_sessions():
    """Each control against the typical partner, TRIALS trials at the default 0.75 s window, seed 0."""
    from coop_robot.envs.turn_env import TurnTakingEnv
    from coop_robot.policy import make_policy

    env = TurnTakingEnv("typical", seed=0, task="sync")
    return {name: env.run(make_policy(name, task="sync"), TRIALS) for name in ("eager", "reactive", "oracle")}


def test_the_oracle_succeeds_at_a_0_75_s_window_on_typical(sync_sessions):
    s = sync_sessions["oracle"]
    assert (s["trials"], s["window_s"]) == (TRIALS, 0.75)
    assert s["success_rate"] == 1.0


def test_every_control_keeps_its_distance_in_the_sync_task(sync_sessions):
    for name, s in sync_sessions.items():
        assert s["trials"] == TRIALS and s["missed"] == 0, name
        assert s["contacts"] == 0 and s["ssm_violations"] == 0 and s["ssm_samples"] > 0, name
        for trial in s["per_trial"]:
            # Neither agent ever entered the zone: each reaches its own target outside it.
            assert trial["offset_s"] == pytest.approx(trial["robot_arrival_s"] - trial["partner_arrival_s"])
            assert trial["robot_start_s"] > trial["cue_s"], name


def test_the_reactive_robot_starts_after_it_sees_the_partner_start(sync_sessions):
    for trial in sync_sessions["reactive"]["per_trial"]:
        assert trial["robot_start_s"] > trial["partner_start_s"]
    eager, reactive = sync_sessions["eager"], sync_sessions["reactive"]
    assert reactive["median_offset_s"] > eager["median_offset_s"]   # the slower robot starts later still


def test_the_sync_mirror_policy_refuses_a_turn_taking_checkpoint_and_tasks_do_not_mix():
    from coop_robot.envs.turn_env import TurnTakingEnv
    from coop_robot.policy import PolicyError, make_policy
    from coop_robot.policy.mirror import DEFAULT_CHECKPOINT

    with pytest.raises(PolicyError, match="was trained for the turn_taking task, not sync"):
        make_policy("mirror", task="sync", checkpoint=str(DEFAULT_CHECKPOINT))
    with pytest.raises(PolicyError, match="unknown task 'handshake'"):
        make_policy("eager", task="handshake")
    env = TurnTakingEnv("typical", seed=0, task="sync")
    with pytest.raises(ValueError, match=r"plays the turn_taking task.*make_policy\('eager', task='sync'\)"):
        env.run(make_policy("eager"), 1)
    with pytest.raises(ValueError, match="unknown task 'handshake'"):
        TurnTakingEnv("typical", task="handshake")
    with pytest.raises(ValueError, match="sync window_s must be a finite number of seconds > 0, got -1"):
        TurnTakingEnv("typical", task="sync", window_s=-1)
    with pytest.raises(ValueError, match="window_s applies to the sync task only"):
        TurnTakingEnv("typical", window_s=1.0)


def test_turn_taking_sessions_are_unchanged_by_the_sync_task():
    # Computed with the same calls at ae99939, the main commit this task started from. Counts and
    # event times (on the sim's step grid) must be equal; distances and fractions within 1e-12:
    # NumPy's vectorised sums round differently on another CPU (a machine with other SIMD units
    # gave 0.062043118600383085 for 0.06204311860037087), and the sync task changed nothing else.
    from coop_robot.envs.turn_env import TurnTakingEnv
    from coop_robot.policy import make_policy

    before = {
        ("reactive", "typical"): {"median_gap_s": 1.6083333333333334, "min_ssm_margin_m": 0.06204311860037087,
                                  "session_duration_s": 16.57916666666667, "ssm_samples": 1753,
                                  "human_idle_fraction": 0.6046745413420459,
                                  "robot_enter_s": [3.9291666666666667, 9.529166666666667, 15.545833333333333],
                                  "turn_min_separation_m": [0.3060750337208847, 0.3060750337208847,
                                                            0.3060751050888444]},
        ("oracle", "erratic"): {"median_gap_s": 0.6916666666666664, "min_ssm_margin_m": 0.06085423168341225,
                                "session_duration_s": 16.466666666666665, "ssm_samples": 1731,
                                "human_idle_fraction": 0.4288967611336031,
                                "robot_enter_s": [5.5, 10.258333333333333, 15.329166666666667],
                                "turn_min_separation_m": [0.30607533522304764, 0.30607664836642445,
                                                          0.3060750337208847]},
    }
    for (policy, partner), expected in before.items():
        s = TurnTakingEnv(partner, seed=3).run(make_policy(policy), 3)
        got = {k: s[k] for k in ("median_gap_s", "min_ssm_margin_m", "session_duration_s", "ssm_samples",
                                 "human_idle_fraction")}
        got["robot_enter_s"] = [t["robot_enter_s"] for t in s["per_turn"]]
        got["turn_min_separation_m"] = [t["min_separation_m"] for t in s["per_turn"]]
        assert got["ssm_samples"] == expected["ssm_samples"], (policy, partner)
        assert got["robot_enter_s"] == pytest.approx(expected["robot_enter_s"], rel=0, abs=1e-9), (policy, partner)
        for key in ("median_gap_s", "min_ssm_margin_m", "session_duration_s", "human_idle_fraction",
                    "turn_min_separation_m"):
            assert got[key] == pytest.approx(expected[key], rel=0, abs=1e-12), (policy, partner, key)
        assert "task" not in s and "per_trial" not in s


def test_coop_robot_eval_task_sync_prints_the_sync_summary(capsys):
    from coop_robot.cli import main

    assert main(["eval", "--task", "sync", "--policy", "oracle", "--partner", "typical", "--turns", "2",
                 "--window-s", "1.5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "sync summary (ground_truth; policy=oracle partner=typical seed=0): 2 trials, window 1500 ms" in out
    assert "who waited:" in out and "SSM violations 0" in out
    assert main(["eval", "--policy", "eager", "--window-s", "1.0", "--turns", "1"]) == 2
    assert "--window-s applies to --task sync only" in capsys.readouterr().err

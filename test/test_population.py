"""Population statistics (coop_robot.analysis.population) on synthetic data whose answer is known."""

import math

import numpy as np
import pytest

from coop_robot.analysis.population import (
    aligned_trajectories,
    compare_groups,
    condition_cka,
    cross_rsm,
    event_ticks,
    linear_cka,
    mean_ci95,
    pca,
    phase_time_conditions,
    rsm_diagonal_contrast,
    time_in_phase_s,
    unit_timescales,
)


def _rotation(rng, n):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q


# ------------------------------------------------------------------ CKA
def test_cka_of_a_rotated_and_scaled_copy_is_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    assert linear_cka(x, 3.0 * x @ _rotation(rng, 8) + 5.0) == pytest.approx(1.0, abs=1e-9)


def test_cka_of_independent_noise_is_near_zero_and_partial_in_between():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5000, 8))
    noise = rng.normal(size=(5000, 8))
    assert linear_cka(x, noise) < 0.01
    mixed = linear_cka(x, x + noise)
    assert 0.3 < mixed < 0.7        # half the variance shared: CKA ~ 0.5
    assert linear_cka(x, x) == pytest.approx(1.0)


def test_cka_works_for_different_widths_and_is_symmetric():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 5))
    y = np.hstack([x @ _rotation(rng, 5), np.zeros((300, 3))])   # wider, same geometry
    assert linear_cka(x, y) == pytest.approx(1.0, abs=1e-9)
    z = rng.normal(size=(300, 4))
    assert linear_cka(x, z) == pytest.approx(linear_cka(z, x))


def test_cka_rejects_bad_input_by_name():
    with pytest.raises(ValueError, match="paired rows"):
        linear_cka(np.ones((5, 2)), np.ones((6, 2)))
    bad = np.ones((5, 2))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="y holds 1 non-finite"):
        linear_cka(np.ones((5, 2)), bad)
    with pytest.raises(ValueError, match="2-D"):
        linear_cka(np.ones(5), np.ones((5, 2)))
    assert math.isnan(linear_cka(np.ones((5, 2)), np.arange(10.0).reshape(5, 2)))   # constant x


def test_time_in_phase_restarts_at_each_phase_and_session_change():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    session = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    assert np.allclose(time_in_phase_s(labels, session, 0.02), [0, .02, .04, 0, .02, 0, .02, .04])
    cond = phase_time_conditions(labels, session, 4, 0.02, edges_s=(0.0, 0.03, math.inf))
    assert cond.tolist() == [0, 0, 1, 2, 2, 2, 2, 3]
    with pytest.raises(ValueError, match="phase labels must be in"):
        phase_time_conditions(labels + 3, session, 4, 0.02)


def _turn_sessions(rng, n_turns=60, tick_s=0.02):
    """Robot and partner alternate reach/act/withdraw/idle; each condition has a fixed pattern."""
    robot, partner = [], []
    for _ in range(n_turns):
        seq = [0] * rng.integers(20, 40) + [1] * rng.integers(20, 40) + [2] * rng.integers(20, 40) \
            + [3] * rng.integers(20, 40)
        robot += seq + [0] * len(seq)
        partner += [0] * len(seq) + seq
    robot, partner = np.array(robot), np.array(partner)
    session = (np.arange(robot.size) * 3 // robot.size).astype(np.int64)
    return robot, partner, session


def test_condition_cka_is_high_for_a_mirrored_code_and_at_chance_for_unrelated_codes():
    rng = np.random.default_rng(3)
    robot, partner, session = _turn_sessions(rng)
    cond_r = phase_time_conditions(robot, session, 4, 0.02)
    cond_p = phase_time_conditions(partner, session, 4, 0.02)
    patterns = rng.normal(size=(36, 8))
    rot = _rotation(rng, 8)
    z_self = patterns[cond_r] + 0.1 * rng.normal(size=(robot.size, 8))
    z_mirror = patterns[cond_p] @ rot + 0.1 * rng.normal(size=(robot.size, 8))     # same code, rotated
    z_unrel = rng.normal(size=(36, 8))[cond_p] + 0.1 * rng.normal(size=(robot.size, 8))
    mirrored = condition_cka(z_self, robot, z_mirror, partner, session, 4, 0.02, n_permutations=100, seed=0)
    unrelated = condition_cka(z_self, robot, z_unrel, partner, session, 4, 0.02, n_permutations=100, seed=0)
    assert mirrored.conditions >= 24                    # phases last < 0.8 s: the late bins stay empty
    assert mirrored.cka > 0.95 and mirrored.cka > mirrored.shuffled_p95
    assert unrelated.cka < unrelated.shuffled_p95 and unrelated.cka < 0.5


def test_cross_rsm_has_a_bright_diagonal_for_shared_phase_patterns():
    rng = np.random.default_rng(4)
    robot, partner, _ = _turn_sessions(rng, n_turns=20)
    patterns = rng.normal(size=(4, 16))
    z_self = patterns[robot] + 0.2 * rng.normal(size=(robot.size, 16))
    z_other = 2.0 * patterns[partner] + 0.2 * rng.normal(size=(robot.size, 16))
    rsm, cs, co = cross_rsm(z_self, robot, z_other, partner, 4)
    assert rsm.shape == (4, 4) and cs.sum() == co.sum() == robot.size
    assert np.all(np.diag(rsm) > 0.9)
    assert rsm_diagonal_contrast(rsm) > 0.9
    shuffled, _, _ = cross_rsm(z_self, robot, rng.normal(size=(4, 16))[partner], partner, 4)
    assert rsm_diagonal_contrast(shuffled) < rsm_diagonal_contrast(rsm) - 0.5
    with pytest.raises(ValueError, match="same units"):
        cross_rsm(z_self, robot, z_other[:, :3], partner, 4)


# ------------------------------------------------------------------ PCA and trajectories
def test_pca_recovers_a_planted_low_rank_signal():
    rng = np.random.default_rng(5)
    basis = _rotation(rng, 20)[:2]                       # two orthonormal directions in 20-D
    latent = rng.normal(size=(4000, 2)) * [3.0, 1.5]
    act = latent @ basis + 0.05 * rng.normal(size=(4000, 20)) + 7.0
    res = pca(act, n_components=3)
    assert res.explained_variance_ratio[:2].sum() > 0.98 and res.explained_variance_ratio[2] < 0.01
    # the top two components span the planted plane
    assert np.allclose(np.linalg.svd(res.components[:2] @ basis.T, compute_uv=False), 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="n_components"):
        pca(act, n_components=0)


def test_aligned_trajectories_average_repeated_paths_and_skip_windows_past_the_session():
    tick = 0.02
    path = np.sin(np.linspace(0, np.pi, 50))[:, None] * [1.0, -1.0]
    labels = np.zeros(400, dtype=np.int64)
    proj = np.zeros((400, 2))
    for start in (20, 120, 220, 380):                    # the last event runs off the end
        labels[start:start + 30] = 1
        end = min(start + 50, 400)
        proj[start:end] = path[:end - start]
    session = np.zeros(400, dtype=np.int64)
    ev = event_ticks(labels, session, 0, 1)
    assert ev.tolist() == [20, 120, 220, 380]
    assert event_ticks(labels, session, 0, 1, then_value=2).size == 0    # no reach here goes on to act
    al = aligned_trajectories(proj, session, ev, tick, before_s=0.2, after_s=0.98)
    assert al.events == 3 and al.lags_s[0] == pytest.approx(-0.2)
    assert np.allclose(al.mean[10:], path) and al.mean_share == pytest.approx(1.0)


def test_event_ticks_keep_only_reaches_that_go_on_to_act():
    labels = np.array([0, 1, 3, 0, 1, 1, 2, 3, 0, 1, 2, 0, 1])
    session = np.array([0] * 11 + [1] * 2)
    assert event_ticks(labels, session, 0, 1).tolist() == [1, 4, 9, 12]
    # 1: given up (reach -> withdraw); 12: the session ends mid-reach
    assert event_ticks(labels, session, 0, 1, then_value=2).tolist() == [4, 9]
    # a reach cut by the session boundary does not count as going on to act in the next session
    assert event_ticks(np.array([0, 1, 2, 0, 1]), np.array([0, 0, 0, 1, 1]), 0, 1, then_value=2).tolist() == [1]
    assert event_ticks(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 1]), 0, 1, then_value=2).size == 0


# ------------------------------------------------------------------ timescales
def _ar1(rng, tau_s, tick_s, n, units):
    phi = math.exp(-tick_s / tau_s)
    x = np.zeros((n, units))
    eps = rng.normal(size=(n, units))
    for t in range(1, n):
        x[t] = phi * x[t - 1] + eps[t]
    return x


def test_timescale_of_ar1_processes_is_recovered():
    rng = np.random.default_rng(6)
    tick = 0.02
    n = 60000
    fast, slow = _ar1(rng, 0.1, tick, n, 3), _ar1(rng, 0.5, tick, n, 3)
    act = np.hstack([fast, slow, np.full((n, 1), 2.0)])    # + one flat unit
    session = np.repeat([0, 1, 2], n // 3)
    ts = unit_timescales(act, session, tick, max_lag_s=3.0)
    assert np.allclose(ts.tau_s[:3], 0.1, rtol=0.15)
    assert np.allclose(ts.tau_s[3:6], 0.5, rtol=0.2)    # ~800 independent samples per session
    assert ts.flat.tolist() == [False] * 6 + [True] and math.isnan(ts.tau_s[6])
    assert ts.acf[0, :6] == pytest.approx(np.ones(6))
    # a max lag shorter than the timescale censors the unit instead of inventing a value
    short = unit_timescales(slow, np.zeros(n, dtype=np.int64), tick, max_lag_s=0.2)
    assert short.censored.all() and np.isnan(short.tau_s).all()
    assert short.summary()["censored"] == 3


def test_timescales_reject_bad_input():
    with pytest.raises(ValueError, match="tick_s"):
        unit_timescales(np.ones((10, 2)), np.zeros(10, dtype=np.int64), 0.0)
    with pytest.raises(ValueError, match="session labels"):
        unit_timescales(np.ones((10, 2)), np.zeros(9, dtype=np.int64), 0.02)
    with pytest.raises(ValueError, match="longer than every session"):
        unit_timescales(np.random.default_rng(0).normal(size=(10, 2)), np.zeros(10, dtype=np.int64), 0.02,
                        max_lag_s=1.0)


# ------------------------------------------------------------------ across seeds
def test_mean_ci95_and_group_comparison():
    s = mean_ci95([1.0, 2.0, 3.0, float("nan")])
    assert s["n"] == 3 and s["mean"] == pytest.approx(2.0) and s["sd"] == pytest.approx(1.0)
    assert s["ci95"] == pytest.approx([2.0 - 4.303 / math.sqrt(3), 2.0 + 4.303 / math.sqrt(3)])
    one = mean_ci95([0.5])
    assert one["n"] == 1 and one["ci95"] is None and one["sd"] is None
    assert compare_groups(one, s, spread=2.0)["exceeds"] is False
    assert compare_groups(one, s, spread=1.0)["exceeds"] is True
    assert compare_groups(one, s, spread=None)["exceeds"] is None


def test_compare_refuses_a_sync_checkpoint_naming_its_task():
    """The comparison drives the networks through turn-taking: a sync checkpoint is refused as one of
    another task, not with an observation-spec mismatch."""
    from coop_robot.analysis.population_compare import load_networks
    from coop_robot.policy.mirror_net import CheckpointError
    from coop_robot.policy.sync import SYNC_CHECKPOINT

    with pytest.raises(CheckpointError, match="trained for the sync task, not turn_taking"):
        load_networks([("sync", SYNC_CHECKPOINT)], untrained_seeds=[0], driver_net=None, driver_info=None)

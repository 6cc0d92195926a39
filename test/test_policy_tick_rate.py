"""The mirror policy keeps its trained time scale when ticks come late, early or irregularly.

Observations are recorded from the fast environment at the trained 50 Hz (a mirror session on the
typical partner), then replayed to a fresh policy at other tick rates. The windows are built on the
trained grid from the tick times (``MirrorPolicy._advance``), so P(act) and the decisions at the
ticks both replays share must agree with the 50 Hz replay. Built from tick counts instead, as
before, the 25 Hz replay differed in 33 of 791 decisions (mean |dP(act)| 0.058) and the 17 Hz one
in 37 of 527 (0.134).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from coop_robot.envs.turn_env import TurnTakingEnv
from coop_robot.policy import make_policy

TURNS = 3


@pytest.fixture(scope="module")
def recorded():
    """Observations of a mirror session at 50 Hz (the policy's own decisions drive the robot)."""
    env = TurnTakingEnv("typical", seed=0)
    policy = make_policy("mirror")
    obs = env.reset(0)
    policy.reset()
    rec = []
    while len(env.tracker.records) < TURNS and env.t_s < 120.0:
        decision = policy.step(obs)
        rec.append(obs)
        obs, _ = env.step(decision.action)
    env.close()
    assert len(env.tracker.records) == TURNS
    return rec


def replay(observations):
    policy = make_policy("mirror")
    policy.reset()
    out = {}
    for o in observations:
        decision = policy.step(o)
        out[round(o.t_s, 6)] = (policy.p_act, decision.action)
    return policy, out


def compare(reference, got):
    common = [t for t in got if t in reference]
    d_p = [abs(got[t][0] - reference[t][0]) for t in common]
    differ = sum(got[t][1] != reference[t][1] for t in common)
    return len(common), float(np.mean(d_p)), differ


@pytest.mark.filterwarnings("ignore:mirror policy ticks at")
@pytest.mark.parametrize("every", [2, 3])
def test_slower_ticks_give_the_trained_decisions(recorded, every):
    policy50, ref = replay(recorded)
    assert policy50.network_steps == len(recorded)  # one network step per tick at the trained rate
    policy, got = replay(recorded[::every])
    n, mean_dp, differ = compare(ref, got)
    assert n == len(recorded[::every])
    # The rows between ticks are interpolated, so P(act) moves by a little; a decision may flip only
    # where the 50 Hz P(act) is that close to a threshold, and only rarely.
    flipped = [t for t in got if t in ref and got[t][1] != ref[t][1]]
    near = [min(abs(ref[t][0] - policy.act_threshold), abs(ref[t][0] - policy.release_threshold)) for t in flipped]
    assert differ <= max(1, n // 200), f"{differ} of {n} decisions differ from the 50 Hz replay at {50 / every:.0f} Hz"
    assert all(d < 0.05 for d in near), f"decisions flipped with P(act) {near} from a threshold"
    assert mean_dp < 0.02
    # The network still stepped once per 20 ms of session time.
    span = recorded[-1].t_s - recorded[0].t_s
    assert abs(policy.network_steps - (span * 50.0 + 1)) <= every


@pytest.mark.filterwarnings("ignore:mirror policy ticks at")
def test_irregular_ticks_give_the_trained_decisions(recorded):
    """Ticks 10-50 ms apart at random (a loaded machine's timer)."""
    _, ref = replay(recorded)
    rng = np.random.default_rng(7)
    keep, i = [], 0
    while i < len(recorded):
        keep.append(recorded[i])
        i += int(rng.integers(1, 3))  # 20 or 40 ms
    _, got = replay(keep)
    n, mean_dp, differ = compare(ref, got)
    assert differ <= max(1, n // 200), f"{differ} of {n} decisions differ"
    assert mean_dp < 0.02


@pytest.mark.filterwarnings("ignore:mirror policy ticks at")
def test_faster_ticks_do_not_step_the_network_more_often(recorded):
    """100 Hz: every second tick falls between grid steps and keeps the last outputs."""
    doubled = []
    for a, b in zip(recorded, recorded[1:]):
        doubled.append(a)
        doubled.append(dataclasses.replace(a, t_s=0.5 * (a.t_s + b.t_s)))
    doubled.append(recorded[-1])
    policy, got = replay(doubled)
    assert policy.network_steps == len(recorded)
    _, ref = replay(recorded)
    n, mean_dp, differ = compare(ref, got)
    assert differ == 0 and mean_dp < 1e-6


@pytest.mark.filterwarnings("ignore:mirror policy ticks at")
def test_a_long_gap_restarts_the_grid_after_refilling_the_window(recorded):
    """A 2 s stall (the process was not scheduled): at most one window of catch-up steps."""
    part = recorded[:200]
    later = [dataclasses.replace(o, t_s=o.t_s + 2.0) for o in recorded[200:260]]
    policy, got = replay(part + later)
    assert policy.grid_restarts == 1
    assert policy.network_steps == len(part) - 1 + policy.spec.window_steps + len(later)
    assert all(math.isfinite(p) for p, _ in got.values())

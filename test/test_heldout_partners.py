"""Held-out partner profiles (test/heldout_partners/) load, run, and lie outside the training ones."""

from pathlib import Path

import pytest

from coop_robot.envs.turn_env import TurnTakingEnv
from coop_robot.partner.profile import load_profile, shipped_profiles
from coop_robot.policy import make_policy

HELDOUT = sorted((Path(__file__).parent / "heldout_partners").glob("*.yaml"))


def test_there_are_heldout_profiles_and_none_is_shipped():
    assert len(HELDOUT) >= 3
    assert not {p.stem for p in HELDOUT} & set(shipped_profiles())


def test_heldout_timing_lies_outside_the_training_profiles():
    train = [load_profile(n) for n in shipped_profiles()]
    brisk, languid, fickle = (load_profile(Path(__file__).parent / "heldout_partners" / f"{n}.yaml")
                              for n in ("brisk", "languid", "fickle"))
    assert brisk.reach_duration_s.mean_s < min(p.reach_duration_s.mean_s for p in train)
    assert brisk.reaction_time_s.median_s < min(p.reaction_time_s.median_s for p in train)
    assert languid.reach_duration_s.mean_s > max(p.reach_duration_s.mean_s for p in train)
    assert languid.dwell_s.mean_s > max(p.dwell_s.mean_s for p in train)
    assert fickle.false_start.probability > max(p.false_start.probability for p in train)
    assert fickle.false_start.pause_s.max_s > max(p.false_start.pause_s.max_s for p in train)


@pytest.mark.parametrize("path", HELDOUT, ids=lambda p: p.stem)
def test_heldout_partner_runs_in_the_fast_env(path):
    summary = TurnTakingEnv(partner=path, seed=1).run(make_policy("reactive", debounce_s=2.0), turns=5)
    assert summary["turns"] == 5 and summary["contacts"] == 0

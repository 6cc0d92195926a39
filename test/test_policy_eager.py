"""The eager policy: "act" as soon as the robot's turn is due, selectable like the others."""

import numpy as np

from coop_robot.cli import main
from coop_robot.graph import POLICIES_ROBOT, POLICIES_SIM
from coop_robot.policy import Observation, make_policy, policy_names


def obs(t, inside, state="home"):
    return Observation(t_s=t, partner_in_zone=inside, perception_age_s=0.03, robot_state=state,
                       partner_hand_m=np.zeros(3), robot_ee_m=np.zeros(3))


def test_eager_is_registered_and_offered_by_both_graphs():
    assert "eager" in policy_names()
    assert "eager" in POLICIES_SIM and "eager" in POLICIES_ROBOT
    assert make_policy("eager").name == "eager"


def test_eager_acts_once_the_partner_has_taken_its_turn():
    eager = make_policy("eager")
    assert eager.step(obs(0.0, False)).action == "wait"              # the partner goes first
    assert eager.step(obs(0.02, True)).action == "act"               # due: the controller's guards keep it out
    assert eager.step(obs(0.04, True, "reaching")).action == "act"   # no yield
    assert eager.step(obs(0.06, False, "acting")).action == "act"
    assert eager.step(obs(0.08, False, "withdrawing")).action == "wait"
    assert eager.step(obs(0.10, False, "home")).action == "wait"     # turn taken: wait for the partner


def test_coop_robot_eval_runs_eager(capsys):
    assert main(["eval", "--policy", "eager", "--turns", "2", "--quiet"]) == 0
    assert "turns" in capsys.readouterr().out

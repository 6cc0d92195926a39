"""Policies behind one interface: the reactive baseline's debounce and the oracle's timing."""

import math

import pytest

from coop_robot.policy import Decision, Observation, PolicyError, make_policy, policy_names


def obs(t, inside, state="home", planned=None, age=0.02):
    return Observation(t_s=t, partner_in_zone=inside, perception_age_s=age, robot_state=state,
                       partner_planned_exit_s=planned)


def run(policy, script):
    """script: list of (t, inside, state[, planned]) -> first time the policy says act."""
    for row in script:
        d = policy.step(obs(*row))
        if d.action == "act":
            return row[0]
    return None


def test_registry_lists_builtin_policies_and_rejects_unknown():
    assert {"reactive", "oracle"} <= set(policy_names())
    with pytest.raises(PolicyError, match="available"):
        make_policy("telepathy")
    with pytest.raises(PolicyError, match="bad parameters"):
        make_policy("reactive", debounce=1.0)
    with pytest.raises(PolicyError, match="debounce_s"):
        make_policy("reactive", debounce_s=-1.0)
    with pytest.raises(PolicyError):
        Decision("dance")


def test_reactive_waits_for_partner_turn_then_debounce():
    p = make_policy("reactive", debounce_s=0.4)
    dt = 0.02
    script = [(i * dt, False, "home") for i in range(50)]            # zone empty, partner not yet gone
    script += [(1.0 + i * dt, True, "home") for i in range(50)]      # partner inside
    script += [(2.0 + i * dt, False, "home") for i in range(50)]     # partner left at t=2.0
    t_act = run(p, script)
    assert t_act == pytest.approx(2.4, abs=dt + 1e-9)


def test_reactive_debounce_restarts_when_partner_comes_back():
    p = make_policy("reactive", debounce_s=0.4)
    script = [(1.0, True, "home"), (2.0, False, "home"), (2.2, False, "home"), (2.3, True, "home"),
              (2.5, False, "home"), (2.8, False, "home"), (2.91, False, "home")]
    assert run(p, script) == pytest.approx(2.91)


def test_no_second_turn_until_partner_goes_again():
    p = make_policy("reactive", debounce_s=0.1)
    assert run(p, [(0.0, True, "home"), (1.0, False, "home"), (1.2, False, "home")]) == 1.2
    p.step(obs(1.3, False, "reaching"))
    p.step(obs(1.8, False, "acting"))
    p.step(obs(2.5, False, "home"))
    assert run(p, [(3.0 + 0.1 * i, False, "home") for i in range(20)]) is None


def test_stale_or_missing_perception_means_wait():
    p = make_policy("reactive", debounce_s=0.0)
    p.step(obs(0.0, True))
    assert p.step(obs(1.0, False, age=2.0)).action == "wait"
    assert p.step(Observation(t_s=1.0, partner_in_zone=None)).action == "wait"
    assert p.step(obs(1.1, False, age=math.inf)).action == "wait"


def test_reactive_yields_when_partner_enters_during_its_reach():
    p = make_policy("reactive", debounce_s=0.0)
    assert p.step(obs(0.0, True, "reaching")).action == "yield"


def test_oracle_starts_entry_lead_before_planned_exit():
    p = make_policy("oracle", entry_lead_s=0.5, margin_s=0.05)
    dt = 0.01
    script = [(1.0 + i * dt, True, "home", 3.0) for i in range(300)]
    t_act = run(p, script)
    assert t_act == pytest.approx(3.0 + 0.05 - 0.5, abs=dt + 1e-9)
    d = p.step(obs(2.0, True, "home", planned=3.0))
    assert d.exit_forecast_s == pytest.approx(1.0)


def test_oracle_without_truth_waits():
    p = make_policy("oracle")
    p.step(obs(0.0, True))
    assert p.step(obs(5.0, False, planned=None)).action == "wait"


# ------------------------------------------------------------------ torch threads of the mirror policy
def test_torch_threads_default_to_one_and_follow_the_environment_variable(monkeypatch):
    from coop_robot.policy.threads import TORCH_THREADS_ENV, torch_threads_wanted

    monkeypatch.delenv(TORCH_THREADS_ENV, raising=False)
    assert torch_threads_wanted() == 1
    assert torch_threads_wanted(3) == 3
    monkeypatch.setenv(TORCH_THREADS_ENV, "2")
    assert torch_threads_wanted() == 2
    assert torch_threads_wanted(1) == 1          # an explicit count wins
    monkeypatch.setenv(TORCH_THREADS_ENV, "many")
    with pytest.raises(ValueError, match=r"\$COOP_ROBOT_TORCH_THREADS must be an integer >= 1, got 'many'"):
        torch_threads_wanted()
    with pytest.raises(ValueError, match="integer >= 1, got 0"):
        torch_threads_wanted(0)


def test_building_the_mirror_policy_sizes_torch_threads(monkeypatch):
    torch = pytest.importorskip("torch")
    from coop_robot.policy.threads import TORCH_THREADS_ENV

    monkeypatch.delenv(TORCH_THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        policy = make_policy("mirror")
        assert policy.torch_threads == 1 and torch.get_num_threads() == 1
        make_policy("mirror", torch_threads=2)
        assert torch.get_num_threads() == 2
        with pytest.raises(PolicyError, match="got -1"):
            make_policy("mirror", torch_threads=-1)
    finally:
        torch.set_num_threads(before)

"""Turn-taking policies behind one interface: observation in, decision out, one call per tick."""

from coop_robot.policy.base import Decision, Observation, Policy, PolicyError, make_policy, policy_names  # noqa: F401

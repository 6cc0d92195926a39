"""The policy interface shared by the reactive baseline, the oracle and the mirror network.

A policy is called once per control tick with an :class:`Observation` and returns a
:class:`Decision`. The controller, not the policy, enforces safety (zone guard, watchdog,
e-stop): a policy only says when the robot should take its turn.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from coop_robot.control.controller import STATES

ACTIONS = ("act", "wait", "yield")
#: The controller's states (one definition, in the controller core) and "unknown" (none received).
#: The mirror network's context is one-hot over these, in this order: the checkpoint depends on it.
ROBOT_STATES = (*STATES, "unknown")


class PolicyError(ValueError):
    """Bad policy name or parameter."""


def _nan3() -> np.ndarray:
    return np.full(3, np.nan)


@dataclass
class Observation:
    """What a policy sees at one tick. Positions in ``world`` (m), times on the graph clock (s)."""

    t_s: float
    partner_in_zone: bool | None             # perceived; None before the first perception message
    perception_age_s: float = math.inf       # now - stamp of the newest perception frame
    partner_hand_m: np.ndarray = field(default_factory=_nan3)          # NaN when not detected
    partner_velocity_mps: np.ndarray = field(default_factory=_nan3)    # NaN when unknown
    robot_state: str = "unknown"             # the controller's state
    robot_ee_m: np.ndarray = field(default_factory=_nan3)
    # Simulation truth, for the oracle only (None on hardware / when not published).
    partner_planned_exit_s: float | None = None


@dataclass
class Decision:
    action: str = "wait"
    exit_forecast_s: float = math.nan        # forecast seconds until the partner leaves the zone

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise PolicyError(f"decision must be one of {ACTIONS}, got {self.action!r}")


class Policy(ABC):
    """Base class: keeps the turn bookkeeping every policy needs, delegates the choice to ``decide``.

    Turn bookkeeping: the partner goes first; the robot's turn is *due* once the partner has been
    perceived inside the zone since the robot last acted in it (the controller's ``acting`` state).
    """

    name = "base"

    def __init__(self, stale_after_s: float = 0.5) -> None:
        if not stale_after_s > 0:
            raise PolicyError(f"stale_after_s must be > 0, got {stale_after_s!r}")
        self.stale_after_s = stale_after_s
        self.reset()

    def reset(self) -> None:
        self.partner_took_turn = False
        self._last_robot_state = "unknown"

    @property
    def robot_turn_due(self) -> bool:
        return self.partner_took_turn

    def step(self, obs: Observation) -> Decision:
        if obs.partner_in_zone:
            self.partner_took_turn = True
        if obs.robot_state == "acting" and self._last_robot_state != "acting":
            self.partner_took_turn = False
        self._last_robot_state = obs.robot_state
        fresh = obs.partner_in_zone is not None and obs.perception_age_s <= self.stale_after_s
        if not fresh:
            return Decision("wait")
        if obs.robot_state in ("reaching", "acting") and obs.partner_in_zone and self.yields_to_partner:
            return Decision("yield")
        return self.decide(obs)

    #: When True the base class answers "yield" if the partner is perceived inside while the robot
    #: reaches or acts. Anticipating policies that start before the zone is clear set it False and
    #: rely on the controller's zone guard to stop before entry.
    yields_to_partner = True

    @abstractmethod
    def decide(self, obs: Observation) -> Decision:
        """Choose the action given fresh perception (bookkeeping already updated)."""


_REGISTRY: dict[str, Callable[..., Policy]] = {}


def register(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory
    return deco


def policy_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def make_policy(name: str, **params) -> Policy:
    """Build a policy by name with keyword parameters; unknown names/parameters -> PolicyError."""
    _load_builtin()
    if name not in _REGISTRY:
        raise PolicyError(f"unknown policy {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as exc:
        raise PolicyError(f"bad parameters for policy {name!r}: {exc}") from exc


def _load_builtin() -> None:
    # Import for their @register side effect; kept lazy so importing the base stays cheap.
    from coop_robot.policy import mirror, oracle, reactive  # noqa: F401  (mirror imports torch lazily)

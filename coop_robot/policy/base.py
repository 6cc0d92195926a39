"""The policy interface shared by the reactive baseline, the oracle and the mirror network.

A policy is called once per control tick with an :class:`Observation` and returns a
:class:`Decision`. The controller, not the policy, enforces safety (zone guard, separation
monitoring, watchdog, e-stop): a policy only says when the robot should take its turn.

**Liveness.** Whatever a policy's ``decide`` says, the base class bounds the robot's wait: once
the robot's turn is due and the zone has been perceived clear (fresh perception, partner outside)
continuously for ``fallback_clear_s`` seconds, the decision is "act" -- and stays "act" while the
robot reaches and acts for that turn. A network that never becomes confident cannot stall the
interaction. The clear-time clock restarts whenever the partner is perceived inside, perception is
stale or missing, or the robot is acting. A firing is counted in ``fallback_count`` and marked on
the decisions it makes (``Decision.fallback``).

What the policy did not see counts for the bound too: a time of at least :data:`UNSEEN_TURN_S`
without fresh perception, since the robot last acted, may have hidden the partner's whole turn --
into the zone and out -- and a partner who took it now waits for the robot. After one, the bound
counts the robot's turn as possibly due (``partner_turn_unseen``): "act" once the zone has been
perceived clear for the bound, unless the partner comes in first. A policy's own ``decide`` still
sees only the turns it perceived (``robot_turn_due``). (A fault campaign's session hung so:
perception was stopped through the partner's first turn, the partner then waited for the robot,
and the policy for a partner's turn it never saw.)
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from coop_robot.control.controller import DECISIONS, STATES
from coop_robot.tasks import DEFAULT_TASK, TASKS, check_task

#: A policy's decisions: the controller's (``/policy/decision``).
ACTIONS = DECISIONS
#: Seconds of perceived-clear zone, with the robot's turn due, after which any policy acts. Longer
#: than a person's pause inside their own turn: after a false start that enters the zone, the shipped
#: ``erratic`` partner's hand is out of the zone for 1.2-2.9 s before the real reach comes back in
#: (95th percentile 2.36 s, ``test/test_policy_fallback.py``). A bound shorter than that sends the
#: robot into the unfinished turn, where the real reach meets it (docs/safety.md, "Liveness").
DEFAULT_FALLBACK_CLEAR_S = 2.5
#: Times are float seconds (epoch-sized in a lab bag): 53.98 - 53.58 < 0.4. A wait counts as
#: elapsed within this much (s), so a tick exactly one wait later acts on that tick.
TIME_TOLERANCE_S = 1e-6
#: A time without fresh perception at least this long (s) may hide a partner's whole turn: with the
#: last fresh frame up to ``stale_after_s`` old when it starts, it covers the shortest zone visit of
#: the shipped partners (0.64 s, ``fast``) and more. Shorter gaps (the first frames at start-up,
#: which the simulation waits for) hide none.
UNSEEN_TURN_S = 0.5
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
    # The sync task (None in turn-taking): the open trial's cue (None between trials); how long the
    # robot's reach takes from its start to its arrival (the controller's nominal plan); and, sim
    # truth for the oracle only, when the partner will arrive at its target as planned now.
    sync_cue_s: float | None = None
    robot_arrival_after_s: float | None = None
    partner_planned_arrival_s: float | None = None


@dataclass
class Decision:
    action: str = "wait"
    exit_forecast_s: float = math.nan        # forecast seconds until the partner leaves the zone
    fallback: bool = False                   # "act" imposed by the liveness bound, not by ``decide``

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise PolicyError(f"decision must be one of {ACTIONS}, got {self.action!r}")


class Policy(ABC):
    """Base class: keeps the turn bookkeeping every policy needs, delegates the choice to ``decide``
    and bounds the robot's wait (module docstring, *Liveness*).

    Turn bookkeeping: the partner goes first; the robot's turn is *due* once the partner has been
    perceived inside the zone since the robot last acted in it (the controller's ``acting`` state).
    """

    name = "base"
    #: The task the policy plays (:data:`coop_robot.tasks.TASKS`).
    task = DEFAULT_TASK

    def __init__(self, stale_after_s: float = 0.5, fallback_clear_s: float = DEFAULT_FALLBACK_CLEAR_S) -> None:
        if not stale_after_s > 0:
            raise PolicyError(f"stale_after_s must be > 0, got {stale_after_s!r}")
        self.stale_after_s = stale_after_s
        self.fallback_clear_s = fallback_clear_s
        self.reset()

    @property
    def fallback_clear_s(self) -> float:
        """Seconds (> 0, finite) of perceived-clear zone with the robot's turn due after which the
        decision is "act" whatever ``decide`` says. It cannot be switched off."""
        return self._fallback_clear_s

    @fallback_clear_s.setter
    def fallback_clear_s(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise PolicyError(f"fallback_clear_s must be a finite number of seconds > 0, got {value!r}")
        self._fallback_clear_s = float(value)

    @property
    def own_clear_wait_s(self) -> float:
        """How long the policy's own rule waits on a clear zone before it acts (0: no such rule).
        The fallback never fires before it: a policy that is itself a bounded wait on a clear zone
        (the reactive debounce) keeps its setting."""
        return 0.0

    @property
    def fallback_after_s(self) -> float:
        """The clear time after which the fallback fires: ``max(fallback_clear_s, own_clear_wait_s)``."""
        return max(self.fallback_clear_s, self.own_clear_wait_s)

    def reset(self) -> None:
        self.partner_took_turn = False
        #: A time without fresh perception since the robot last acted may have hidden the partner's turn.
        self.partner_turn_unseen = False
        self._unseen_since_s = math.nan
        self._last_robot_state = "unknown"
        self._clear_since_s = math.nan
        self._fallback_holding = False
        self.fallback_count = 0

    @property
    def robot_turn_due(self) -> bool:
        return self.partner_took_turn

    def step(self, obs: Observation) -> Decision:
        if obs.partner_in_zone:
            self.partner_took_turn = True
        if obs.robot_state == "acting" and self._last_robot_state != "acting":
            self.partner_took_turn = False
            self.partner_turn_unseen = False
        self._last_robot_state = obs.robot_state
        fresh = obs.partner_in_zone is not None and obs.perception_age_s <= self.stale_after_s
        self._update_unseen(obs, fresh)
        self._update_clear_clock(obs, fresh)
        if not fresh:
            return Decision("wait")
        if obs.robot_state in ("reaching", "acting") and obs.partner_in_zone and self.yields_to_partner:
            return Decision("yield")
        return self._bounded(obs, self.decide(obs))

    def _update_unseen(self, obs: Observation, fresh: bool) -> None:
        """Time the gaps in fresh perception; one of :data:`UNSEEN_TURN_S` or more may have hidden
        the partner's turn (``partner_turn_unseen``)."""
        if not fresh:
            if math.isnan(self._unseen_since_s):
                self._unseen_since_s = obs.t_s
        elif not math.isnan(self._unseen_since_s):
            if obs.t_s - self._unseen_since_s >= UNSEEN_TURN_S - TIME_TOLERANCE_S:
                self.partner_turn_unseen = True
            self._unseen_since_s = math.nan

    def _update_clear_clock(self, obs: Observation, fresh: bool) -> None:
        if not fresh or obs.partner_in_zone:
            # The fallback only holds "act" on a zone perceived clear; the controller and ``decide``
            # handle a partner coming back.
            self._clear_since_s = math.nan
            self._fallback_holding = False
        elif obs.robot_state == "acting":
            self._clear_since_s = math.nan
        elif math.isnan(self._clear_since_s):
            self._clear_since_s = obs.t_s

    def _bounded(self, obs: Observation, decision: Decision) -> Decision:
        """``decision``, or "act" where the liveness bound says so."""
        due = self.robot_turn_due or self.partner_turn_unseen
        if self._fallback_holding and not due and obs.robot_state not in ("reaching", "acting"):
            self._fallback_holding = False  # that turn is over
        clear_s = obs.t_s - self._clear_since_s  # NaN while the clock is stopped
        if (not self._fallback_holding and decision.action != "act" and due
                and clear_s >= self.fallback_after_s - TIME_TOLERANCE_S):
            self._fallback_holding = True
            self.fallback_count += 1
        if self._fallback_holding and decision.action != "act":
            return Decision("act", decision.exit_forecast_s, fallback=True)
        return decision

    #: When True the base class answers "yield" if the partner is perceived inside while the robot
    #: reaches or acts. Anticipating policies that start before the zone is clear set it False and
    #: rely on the controller's zone guard to stop before entry.
    yields_to_partner = True

    @abstractmethod
    def decide(self, obs: Observation) -> Decision:
        """Choose the action given fresh perception (bookkeeping already updated)."""


#: The policies of each task by name (the sync controls are in :mod:`coop_robot.policy.sync`).
_REGISTRIES: dict[str, dict[str, Callable[..., Policy]]] = {task: {} for task in TASKS}
_REGISTRY = _REGISTRIES[DEFAULT_TASK]


def register(name: str, task: str = DEFAULT_TASK):
    registry = _REGISTRIES[check_task(task)]

    def deco(factory):
        registry[name] = factory
        return factory
    return deco


def policy_names(task: str = DEFAULT_TASK) -> list[str]:
    _load_builtin()
    return sorted(_REGISTRIES[check_task(task)])


def make_policy(name: str, task: str = DEFAULT_TASK, **params) -> Policy:
    """Build ``task``'s policy by name with keyword parameters; unknown names/parameters -> PolicyError.

    ``fallback_clear_s`` (the liveness bound, :class:`Policy`) is accepted for every policy: it is
    passed to a constructor that takes it and set on the built policy otherwise."""
    _load_builtin()
    try:
        registry = _REGISTRIES[check_task(task)]
    except ValueError as exc:
        raise PolicyError(str(exc)) from None
    if name not in registry:
        raise PolicyError(f"unknown {task} policy {name!r}; available: {', '.join(sorted(registry))}"
                          if task != DEFAULT_TASK else
                          f"unknown policy {name!r}; available: {', '.join(sorted(registry))}")
    factory = registry[name]
    params = dict(params)
    later = {}
    if "fallback_clear_s" in params and "fallback_clear_s" not in inspect.signature(factory).parameters:
        later["fallback_clear_s"] = params.pop("fallback_clear_s")
    try:
        policy = factory(**params)
    except TypeError as exc:
        raise PolicyError(f"bad parameters for policy {name!r}: {exc}") from exc
    for key, value in later.items():
        setattr(policy, key, value)  # validated by the property
    return policy


def _load_builtin() -> None:
    # Import for their @register side effect; kept lazy so importing the base stays cheap.
    from coop_robot.policy import eager, mirror, oracle, reactive, sync  # noqa: F401  (mirror imports torch lazily)

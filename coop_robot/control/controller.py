"""The arm controller's state machine: turn decisions in, safe joint trajectories out.

:class:`ArmController` is a pure core (no ROS): call :meth:`ArmController.update` once per tick
(100 Hz) with the newest inputs; it returns the controller state, events, and -- when the
motion changes -- a joint trajectory to send to a ros2_control joint trajectory controller
(JTC semantics: the new trajectory replaces the old one and starts on receipt).

States: ``home``, ``reaching``, ``acting``, ``withdrawing``, ``retreating``, ``holding``, ``estop``.

Safety rules, in priority order:

1. **E-stop**: brake to a stop from the current state at once, then ignore decisions until the
   stop is released; then return home at half speed.
2. **Watchdog**: perception older than ``perception_timeout_s`` (or none at all once the startup
   grace has passed) stops any motion away from home and returns home; at home the controller
   is ``holding`` and starts nothing until perception is fresh again.
3. **Zone guard**: a direct reach starts only when the partner is perceived outside the zone on
   fresh perception. Until the reach's *commit time* (the last moment an abort still keeps the EE
   outside the zone grown by ``commit_margin_m``, see :func:`planning.commit_time_s`) the
   reach is aborted -- a retreat home from the current state -- as soon as the partner is
   perceived inside, perception is unknown, or the decision stops being "act". After the
   commit time the entry was decided while the partner was outside; if the partner then
   enters (or the policy says "yield") the arm withdraws at once instead of acting.
   **Approach guard** (``approach_horizon_s``): a hand perceived outside but moving toward the
   zone fast enough to reach it within that horizon counts as inside for this rule -- a partner
   who pauses after a false start and then reaches again is seen coming before the arm commits.
4. **Anticipation** (``anticipation``, on by default): "act" while the partner is perceived
   inside (on fresh perception) starts an *approach* from home to the *staging pose* -- a
   configuration on the nominal reach's path whose EE is ``staging_clearance_m`` outside the
   zone -- which never comes within ``commit_margin_m`` of the zone and ends at rest there. The
   arm holds at the staging pose until the partner is perceived outside; then a short *entry*
   move (``entry_velocity_scale``) goes on to the target, with its own commit time and the
   zone guard above. The approach and the hold return home (an abort) when the decision stops
   being "act", when perception goes stale (watchdog) or when the hold lasts longer than
   ``staging_timeout_s``. The controller state is ``reaching`` throughout; ``reach_start`` is
   emitted once, when the approach starts. So entry is still only ever committed while the
   partner is perceived outside.

New plans start from the measured joint positions (the last commanded state without them) and
the commanded velocity and acceleration. A plan whose goal the measured joints have not reached
``settle_timeout_s`` after it ended counts as not followed: a reach is given up (back home,
no act), a move home is sent again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from coop_robot.control.kinematics import DEFAULT_ROBOT_BASE_M, JOINT_NAMES, IKError, PandaKinematics
from coop_robot.control.planning import (
    JointLimits,
    JointPlan,
    TrajectoryPoint,
    commit_time_s,
    ee_path_m,
    first_zone_entry_s,
    plan_brake,
    plan_minimum_jerk,
    plan_to_rest,
)
from coop_robot.geometry import Zone, world_geometry

#: The controller's states, as /controller/state publishes them (the policies' context reads them).
STATES = ("home", "reaching", "acting", "withdrawing", "retreating", "holding", "estop")
DECISIONS = ("act", "wait", "yield")

#: A reach whose EE path stays within this fraction of commit_margin_m of the nominal reach's
#: (compared at equal phase) reuses the nominal commit time instead of computing its own.
_REUSE_COMMIT_MARGIN_FRACTION = 0.25
_PATH_PHASES = np.linspace(0.0, 1.0, 101)

# Cell geometry defaults: config/world.yaml.
DEFAULT_HOME_RAD = world_geometry().robot_home_joint_positions_rad
DEFAULT_TARGET_M = (0.60, -0.08, 0.72)
DEFAULT_ZONE = world_geometry().zone


@dataclass(frozen=True)
class ControllerConfig:
    """Everything the controller needs; units in the names, positions in the ``world`` frame."""

    joint_names: tuple[str, ...] = JOINT_NAMES
    home_rad: tuple[float, ...] = DEFAULT_HOME_RAD
    target_m: tuple[float, float, float] = DEFAULT_TARGET_M
    zone: Zone = DEFAULT_ZONE
    #: Fraction of the joint velocity (and acceleration) limits used by routine moves.
    velocity_scale: float = 0.5
    min_move_duration_s: float = 0.5
    act_duration_s: float = 0.4
    perception_timeout_s: float = 0.5
    #: How far outside the zone an aborted reach must stay (m).
    commit_margin_m: float = 0.01
    point_rate_hz: float = 50.0
    robot_base_m: tuple[float, float, float] = DEFAULT_ROBOT_BASE_M
    #: After start-up, how long to wait for the first perception message before holding (s).
    startup_grace_s: float = 2.0
    #: Tick plus transport delay assumed between deciding an abort and the arm obeying it (s).
    command_latency_s: float = 0.02
    #: Fraction of the acceleration limits used to brake (e-stop) and to abort a reach.
    stop_acceleration_scale: float = 0.8
    #: A plan counts as finished once its time is up and the measured joints are this close (rad)
    #: to its goal; still farther ``settle_timeout_s`` later, the arm did not follow: a reach is
    #: given up (back home, no act), a move home is sent again.
    settle_tolerance_rad: float = 0.02
    settle_timeout_s: float = 1.0
    #: At start-up, a measured configuration farther than this (rad) from home is driven home.
    home_tolerance_rad: float = 0.05
    #: "act" while the partner is perceived inside starts an approach to the staging pose.
    anticipation: bool = True
    #: How far (m) outside the zone the staging pose's EE is; at least commit_margin_m.
    staging_clearance_m: float = 0.012
    #: A hold at the staging pose longer than this (s) gives up and returns home.
    staging_timeout_s: float = 3.0
    #: Fraction of the joint velocity/acceleration limits for the entry move from the staging pose.
    entry_velocity_scale: float = 1.0
    #: Approach guard: a hand perceived outside the zone but moving toward it faster than
    #: ``approach_min_speed_mps`` (perceived velocity, component toward the nearest zone point)
    #: that would reach the zone within ``approach_horizon_s`` at that speed counts as entering:
    #: no reach or entry starts, and an uncommitted one is aborted. 0 s disables the guard.
    approach_horizon_s: float = 0.6
    approach_min_speed_mps: float = 0.15

    def __post_init__(self) -> None:
        names = tuple(self.joint_names)
        if len(names) != 7 or len(set(names)) != 7 or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"joint_names must be 7 distinct non-empty names, got {list(self.joint_names)!r}")
        object.__setattr__(self, "joint_names", names)
        _vector(self, "home_rad", 7)
        _vector(self, "target_m", 3)
        _vector(self, "robot_base_m", 3)
        if not isinstance(self.zone, Zone):
            raise ValueError(f"zone must be a coop_robot.geometry.Zone, got {self.zone!r}")
        if not (0.0 < self.velocity_scale <= 1.0):
            raise ValueError(f"velocity_scale must be in (0, 1], got {self.velocity_scale!r}")
        if not isinstance(self.anticipation, (bool, np.bool_)):
            raise ValueError(f"anticipation must be true or false, got {self.anticipation!r}")
        object.__setattr__(self, "anticipation", bool(self.anticipation))
        if not (0.0 < self.entry_velocity_scale <= 1.0):
            raise ValueError(f"entry_velocity_scale must be in (0, 1], got {self.entry_velocity_scale!r}")
        if not (np.isfinite(self.staging_clearance_m) and self.staging_clearance_m >= self.commit_margin_m):
            raise ValueError(f"staging_clearance_m must be a finite value >= commit_margin_m "
                             f"({self.commit_margin_m} m), got {self.staging_clearance_m!r}")
        if not (0.0 < self.stop_acceleration_scale <= 1.0):
            raise ValueError(f"stop_acceleration_scale must be in (0, 1], got {self.stop_acceleration_scale!r}")
        for name in ("min_move_duration_s", "act_duration_s", "commit_margin_m", "command_latency_s",
                     "settle_timeout_s", "startup_grace_s", "approach_horizon_s", "approach_min_speed_mps"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite value >= 0, got {value!r}")
        for name in ("perception_timeout_s", "point_rate_hz", "settle_tolerance_rad", "home_tolerance_rad",
                     "staging_timeout_s"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a finite value > 0, got {value!r}")


@dataclass(frozen=True)
class ControllerParameter:
    """One parameter of the controller: its name in ROS and in ``config/controller.yaml`` /
    ``config/world.yaml``, the :class:`ControllerConfig` field it sets (None: the node's plumbing,
    not the core's), a description with its unit, and its accepted range (for numbers).

    :data:`CONTROLLER_PARAMETERS` is the one table: the controller node declares its parameters
    from it, and :func:`controller_config_from_params` builds the core's configuration from the
    same names for the fast environment, training and the benchmarks.
    """

    name: str
    field: str | None
    description: str
    low: float | None = None
    high: float | None = None
    #: Default of a node-only parameter (``field`` None); a core parameter's default is
    #: ControllerConfig's.
    node_default: Any = None

    @property
    def default(self) -> Any:
        """The default as a ROS parameter value (lists for vectors)."""
        if self.field is None:
            return self.node_default
        value = getattr(_DEFAULT_CONFIG, self.field)
        return list(value) if isinstance(value, tuple) else value

    def check(self, value: Any) -> Any:
        """``value`` converted to the default's type and checked against the range.

        Raises ValueError naming the parameter, the bad value and what was expected.
        """
        default = self.default
        if isinstance(default, bool):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"controller parameter '{self.name}' must be true or false, got {value!r}")
            return bool(value)
        if isinstance(default, list):
            if not isinstance(value, (list, tuple)) or len(value) != len(default):
                raise ValueError(f"controller parameter '{self.name}' must be a list of {len(default)} "
                                 f"{'names' if isinstance(default[0], str) else 'numbers'}, got {value!r}")
            return tuple(value)
        if isinstance(default, str):
            if not isinstance(value, str):
                raise ValueError(f"controller parameter '{self.name}' must be a string, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"controller parameter '{self.name}' must be a number, got {value!r}")
        value = float(value)
        if not np.isfinite(value) or (self.low is not None and value < self.low) or (
                self.high is not None and value > self.high):
            raise ValueError(f"controller parameter '{self.name}' must be a finite number in "
                             f"[{self.low}, {self.high}], got {value!r}")
        return value


def _p(name: str, field_name: str | None, description: str, low: float | None = None, high: float | None = None,
       node_default: Any = None) -> ControllerParameter:
    return ControllerParameter(name, field_name, description, low, high, node_default)


#: Every controller parameter, in the order the node declares them. The zone (``zone_min_m`` /
#: ``zone_max_m``) is shared by every node and declared with the other world parameters.
CONTROLLER_PARAMETERS: tuple[ControllerParameter, ...] = (
    _p("trajectory_topic", None, "JointTrajectory command topic: the sim's, or a real ros2_control JTC's "
       "(e.g. /joint_trajectory_controller/joint_trajectory)", node_default="/panda_arm_controller/joint_trajectory"),
    _p("joint_names", "joint_names", "Arm joint names in JointTrajectory / JointState order (7)"),
    _p("robot_home_joint_positions_rad", "home_rad",
       "Home joint configuration (rad, joint_names order), outside the zone; shared via world.yaml"),
    _p("target_m", "target_m", "EE target for the robot's turn, inside the zone [x, y, z] (m, world frame)"),
    _p("robot_base_m", "robot_base_m",
       "Robot base (panda_link0) position in the world frame (m), identity orientation; shared via world.yaml"),
    _p("velocity_scale", "velocity_scale",
       "Fraction of the joint velocity/acceleration limits used for moves, in (0, 1]", 0.01, 1.0),
    _p("min_move_duration_s", "min_move_duration_s", "Shortest duration of any move (s)", 0.0, 10.0),
    _p("act_duration_s", "act_duration_s", "Dwell at the target during the robot's turn (s)", 0.0, 60.0),
    _p("perception_timeout_s", "perception_timeout_s",
       "Watchdog: perception older than this (s) stops the arm and returns it home", 0.01, 10.0),
    _p("commit_margin_m", "commit_margin_m",
       "Zone guard: an aborted reach keeps the EE at least this far outside the zone (m)", 0.0, 0.5),
    _p("point_rate_hz", "point_rate_hz", "Trajectory points per second in each JointTrajectory", 1.0, 1000.0),
    _p("startup_grace_s", "startup_grace_s", "After start-up, wait this long (s) for perception before holding",
       0.0, 60.0),
    _p("stop_acceleration_scale", "stop_acceleration_scale",
       "Fraction of the acceleration limits used to brake (e-stop) and abort, in (0, 1]", 0.01, 1.0),
    _p("anticipation", "anticipation", "On 'act' while the partner is inside, approach a staging pose outside "
       "the zone and enter once the partner is perceived out"),
    _p("staging_clearance_m", "staging_clearance_m",
       "Staging pose: EE distance outside the zone (m), >= commit_margin_m", 0.0, 0.5),
    _p("staging_timeout_s", "staging_timeout_s", "Longest hold at the staging pose before returning home (s)",
       0.01, 60.0),
    _p("entry_velocity_scale", "entry_velocity_scale",
       "Fraction of the joint limits for the staging -> target entry move, in (0, 1]", 0.01, 1.0),
    _p("approach_horizon_s", "approach_horizon_s", "Approach guard: a hand outside but reaching the zone within "
       "this time at its perceived speed counts as inside (no entry starts); 0 disables (s)", 0.0, 5.0),
    _p("approach_min_speed_mps", "approach_min_speed_mps",
       "Approach guard: slowest hand speed toward the zone that counts (m/s)", 0.0, 5.0),
    _p("rate_hz", None, "Control tick rate (Hz, node clock)", 1.0, 1000.0, node_default=100.0),
    _p("decision_timeout_s", None, "A policy decision older than this (s) counts as none", 0.01, 10.0,
       node_default=0.5),
)
CONTROLLER_PARAMETER_NAMES = tuple(p.name for p in CONTROLLER_PARAMETERS)


def controller_parameter(name: str) -> ControllerParameter:
    """The :data:`CONTROLLER_PARAMETERS` entry called ``name`` (KeyError naming the known ones)."""
    for spec in CONTROLLER_PARAMETERS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown controller parameter {name!r}; expected one of {list(CONTROLLER_PARAMETER_NAMES)}")


def controller_config_from_params(values: Mapping[str, Any], zone: Zone | None = None) -> ControllerConfig:
    """The :class:`ControllerConfig` for parameter ``values`` keyed by :data:`CONTROLLER_PARAMETERS` names.

    Names the table does not know are ignored (a world.yaml holds the other nodes' parameters
    too); node-only parameters (``field`` None) are checked but do not enter the core's config. A
    parameter that is absent keeps ControllerConfig's default; ``zone`` None is world.yaml's.
    Raises ValueError naming a bad value and what was expected.
    """
    kwargs: dict[str, Any] = {"zone": DEFAULT_ZONE if zone is None else zone}
    for spec in CONTROLLER_PARAMETERS:
        if spec.name in values:
            value = spec.check(values[spec.name])
            if spec.field is not None:
                kwargs[spec.field] = value
    return ControllerConfig(**kwargs)


def _vector(cfg: ControllerConfig, name: str, n: int) -> None:
    value = np.asarray(getattr(cfg, name), dtype=float)
    if value.shape != (n,) or not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be {n} finite numbers, got {getattr(cfg, name)!r}")
    object.__setattr__(cfg, name, tuple(float(v) for v in value))


#: ControllerConfig's defaults, for the parameter table.
_DEFAULT_CONFIG = ControllerConfig()


@dataclass
class ControllerInputs:
    """The newest value of every input at one tick (times on the controller's clock, s)."""

    decision: str | None = None               # "act" / "wait" / "yield"; None = none (fresh) received
    partner_in_zone: bool | None = None       # perceived; None = unknown
    perception_stamp_s: float | None = None   # stamp of the newest perception message; None = none yet
    joint_positions: Sequence[float] | None = None  # measured arm joints (rad), in joint_names order
    estop: bool = False
    partner_hand_m: Sequence[float] | None = None         # perceived hand (world, m); None/NaN = unknown
    partner_velocity_mps: Sequence[float] | None = None   # perceived hand velocity (m/s); None/NaN = unknown


def partner_approaching(zone: Zone, hand_m, velocity_mps, horizon_s: float, min_speed_mps: float) -> bool:
    """Whether a hand outside ``zone`` moving at ``velocity_mps`` would reach it within ``horizon_s``.

    Only the velocity component toward the nearest point of the zone counts, and it must exceed
    ``min_speed_mps`` (so perception noise on a hand at rest does not block the robot). Unknown
    (None or non-finite) position or velocity, or ``horizon_s`` <= 0: False.
    """
    if horizon_s <= 0.0 or hand_m is None or velocity_mps is None:
        return False
    hand = np.asarray(hand_m, dtype=float)
    velocity = np.asarray(velocity_mps, dtype=float)
    if hand.shape != (3,) or velocity.shape != (3,) or not (np.isfinite(hand).all() and np.isfinite(velocity).all()):
        return False
    offset = np.clip(hand, zone.min_m, zone.max_m) - hand
    distance = float(np.linalg.norm(offset))
    if distance <= 1e-9:
        return False  # at or inside the boundary: that is the in-zone flag's business
    closing = float(velocity @ offset) / distance
    return closing > min_speed_mps and distance <= closing * horizon_s


class ControllerEvent(NamedTuple):
    name: str
    t_s: float


@dataclass
class TrajectoryCommand:
    """A joint trajectory to send now (``time_from_start`` relative to receipt)."""

    joint_names: tuple[str, ...]
    points: list[TrajectoryPoint]
    purpose: str          # reach, approach, retreat, withdraw, brake, home
    plan: JointPlan       # the continuous plan the points sample (for checks and logs)


@dataclass
class ControllerOutput:
    state: str
    trajectory: TrajectoryCommand | None = None
    events: list[ControllerEvent] = field(default_factory=list)
    #: Human-readable warnings for the log (e.g. the arm did not follow a trajectory).
    warnings: list[str] = field(default_factory=list)


class ArmController:
    """Pure turn-taking arm controller; see the module docstring for the rules.

    Raises ``ValueError`` at construction when the home pose is not outside the zone (with the
    commit margin), or the target is not inside it, and :class:`IKError` when the target has no
    IK solution.
    """

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.config = cfg = config or ControllerConfig()
        self.kinematics = PandaKinematics(cfg.robot_base_m)
        self.limits = JointLimits.panda()
        self.home_rad = np.asarray(cfg.home_rad, dtype=float)
        if not self.limits.contains(self.home_rad):
            raise ValueError(f"home_rad {list(cfg.home_rad)} is outside the Panda joint limits")
        self.home_ee_m = self.kinematics.fk(self.home_rad)
        if cfg.zone.contains(self.home_ee_m, cfg.commit_margin_m):
            raise ValueError(f"home EE {np.round(self.home_ee_m, 3).tolist()} m must be outside the zone "
                             f"grown by commit_margin_m={cfg.commit_margin_m} m")
        if not cfg.zone.contains(cfg.target_m):
            raise ValueError(f"target_m {list(cfg.target_m)} must be inside the zone "
                             f"{list(cfg.zone.min_m)}..{list(cfg.zone.max_m)}")
        try:
            self.target_rad = self.kinematics.ik(cfg.target_m, seed_rad=self.home_rad, nominal_rad=self.home_rad)
        except IKError as exc:
            raise IKError(f"target_m {list(cfg.target_m)}: {exc}") from exc
        self.target_ee_m = self.kinematics.fk(self.target_rad)
        # The nominal reach from home: its commit time is reused when a reach starts at home.
        self.nominal_reach = self._reach_plan(self.home_rad)
        self.nominal_commit_s = self._commit_time(self.nominal_reach)
        self.nominal_entry_s = first_zone_entry_s(self.nominal_reach, self.kinematics, cfg.zone)
        self._nominal_ee_path = self._ee_path(self.nominal_reach)
        self._init_staging()
        self.reset()

    # ------------------------------------------------------------------ public API
    def reset(self) -> None:
        """Forget all runtime state (start-up: at home, nothing commanded yet)."""
        self.state = "home"
        self._plan: JointPlan | None = None
        self._plan_start_s = 0.0
        self._hold_rad = self.home_rad.copy()
        self._commit_s = 0.0
        self._committed = False
        self._act_until_s = 0.0
        self._t0_s: float | None = None
        self._seen_joints = False
        #: While ``reaching``: "direct" (home to target), "approach" (home to the staging pose),
        #: "staged" (holding there at rest) or "entry" (staging pose to target).
        self._phase = "direct"
        self._staged_since_s = 0.0

    @property
    def committed(self) -> bool:
        return self._committed

    @property
    def phase(self) -> str:
        """Kind of the current / last reach: direct, approach, staged or entry (see ``reset``)."""
        return self._phase

    @property
    def commit_time_s(self) -> float:
        """Commit time (s from the reach start) of the current / last reach."""
        return self._commit_s

    def commanded_state(self, now_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Commanded ``(q, qd, qdd)`` at ``now_s`` along the last trajectory sent (at rest if none)."""
        if self._plan is None:
            zero = np.zeros(7)
            return self._hold_rad.copy(), zero, zero.copy()
        return self._plan.state_at(now_s - self._plan_start_s)

    def update(self, now_s: float, inputs: ControllerInputs) -> ControllerOutput:
        """Advance the state machine to ``now_s`` (s, controller clock) given the newest inputs."""
        cfg = self.config
        if self._t0_s is None:
            self._t0_s = now_s
        if inputs.decision is not None and inputs.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS} or None, got {inputs.decision!r}")
        out = ControllerOutput(self.state)
        partner_in_zone = None if inputs.partner_in_zone is None else bool(inputs.partner_in_zone)
        q_meas = _measured(inputs.joint_positions)
        stamp = inputs.perception_stamp_s
        if stamp is None:
            stale = now_s - self._t0_s > cfg.startup_grace_s
            fresh = False
        else:
            stale = now_s - stamp > cfg.perception_timeout_s
            fresh = not stale
        approaching = fresh and partner_approaching(cfg.zone, inputs.partner_hand_m, inputs.partner_velocity_mps,
                                                    cfg.approach_horizon_s, cfg.approach_min_speed_mps)
        guard_clear = fresh and partner_in_zone is False and not approaching

        # 1. E-stop: brake now, then hold until released.
        if inputs.estop:
            if self.state != "estop":
                self._emit(out, "estop", now_s)
                q, qd, qdd = self._start_state(now_s, q_meas)
                plan = plan_brake(q, qd, qdd, self.limits, deceleration_scale=cfg.stop_acceleration_scale)
                self._send(out, plan, now_s, "brake", "estop")
            return out
        if self.state == "estop":
            self._emit(out, "estop_release", now_s)
            self._go_home(out, now_s, q_meas, velocity_scale=0.5 * cfg.velocity_scale)
            return out

        # Start-up: an arm found away from home is first driven home, slowly.
        if q_meas is not None and not self._seen_joints:
            self._seen_joints = True
            if self.state in ("home", "holding") and np.max(np.abs(q_meas - self.home_rad)) > cfg.home_tolerance_rad:
                self._hold_rad = q_meas.copy()
                self._go_home(out, now_s, q_meas, velocity_scale=0.5 * cfg.velocity_scale)
                return out

        elapsed = now_s - self._plan_start_s
        if self.state in ("home", "holding"):
            self.state = out.state = "holding" if stale else "home"
            if self.state == "home" and inputs.decision == "act" and guard_clear:
                self._start_reach(out, now_s, q_meas)
            elif (self.state == "home" and inputs.decision == "act" and fresh and partner_in_zone is True
                  and cfg.anticipation):
                self._start_approach(out, now_s, q_meas)
        elif self.state == "reaching" and self._phase in ("approach", "staged"):
            self._update_staging(out, now_s, inputs.decision, q_meas, stale, guard_clear)
        elif self.state == "reaching":
            if not self._committed and elapsed >= self._commit_s:
                self._committed = True
                self._emit(out, "entry_commit", now_s)
            if stale:
                self._emit(out, "watchdog", now_s)
                self._stop_and_return(out, now_s, q_meas)
            elif not self._committed and not (inputs.decision == "act" and guard_clear):
                # Zone guard: partner inside (or unknown), or the policy changed its mind.
                self._stop_and_return(out, now_s, q_meas)
            elif self._committed and (partner_in_zone is True or inputs.decision == "yield"):
                self._stop_and_return(out, now_s, q_meas)
            else:
                progress = self._plan_progress(now_s, q_meas)
                if progress == "arrived":
                    self.state = out.state = "acting"
                    self._act_until_s = now_s + cfg.act_duration_s
                    self._emit(out, "act_start", now_s)
                elif progress == "stuck":
                    # The arm did not follow (command lost, arm blocked): no turn; go back home.
                    out.warnings.append(self._stuck_warning(q_meas, "target"))
                    self._stop_and_return(out, now_s, q_meas)
        elif self.state == "acting":
            if stale:
                self._emit(out, "watchdog", now_s)
                self._stop_and_return(out, now_s, q_meas)
            elif partner_in_zone is True or inputs.decision == "yield" or now_s >= self._act_until_s:
                self._stop_and_return(out, now_s, q_meas)
        elif self.state in ("withdrawing", "retreating"):
            progress = self._plan_progress(now_s, q_meas)
            if progress == "arrived":
                self._arrive_home(out, now_s)
            elif progress == "stuck":
                out.warnings.append(self._stuck_warning(q_meas, "home") + "; sending the move home again")
                plan = plan_minimum_jerk(q_meas, self.home_rad, self.limits, cfg.velocity_scale,
                                         cfg.min_move_duration_s)
                self._send(out, plan, now_s, "home", self.state)
        return out

    # ------------------------------------------------------------------ anticipation
    def _init_staging(self) -> None:
        """Staging pose, approach and entry plans from home (checked once, here)."""
        cfg = self.config
        times, ee = ee_path_m(self.nominal_reach, self.kinematics, step_s=0.005)
        near = cfg.zone.contains_many(ee, cfg.staging_clearance_m)
        first = int(np.argmax(near)) if near.any() else 0
        if first == 0:
            raise ValueError(f"staging_clearance_m={cfg.staging_clearance_m} m: the home EE is already that close "
                             f"to the zone (or the reach never comes that close); expected a smaller clearance")
        self.staging_rad = self.nominal_reach.state_at(times[first - 1])[0]
        self.staging_ee_m = self.kinematics.fk(self.staging_rad)
        self.nominal_approach = self._approach_plan(self.home_rad)
        if not self._approach_is_clear(self.nominal_approach):
            raise ValueError(f"the approach from home to the staging pose "
                             f"(EE {np.round(self.staging_ee_m, 3).tolist()} m) "
                             f"comes within commit_margin_m={cfg.commit_margin_m} m of the zone; "
                             f"expected a larger staging_clearance_m")
        self.nominal_entry = self._entry_plan(self.staging_rad)
        self.nominal_entry_commit_s = self._commit_time(self.nominal_entry)
        self.nominal_entry_entry_s = first_zone_entry_s(self.nominal_entry, self.kinematics, cfg.zone, step_s=0.001)
        self._nominal_entry_ee_path = self._ee_path(self.nominal_entry)

    def _approach_plan(self, start_rad: np.ndarray) -> JointPlan:
        cfg = self.config
        return plan_minimum_jerk(start_rad, self.staging_rad, self.limits, cfg.velocity_scale, cfg.min_move_duration_s)

    def _entry_plan(self, start_rad: np.ndarray) -> JointPlan:
        return plan_minimum_jerk(start_rad, self.target_rad, self.limits, self.config.entry_velocity_scale, 0.0)

    def _approach_is_clear(self, plan: JointPlan) -> bool:
        """The whole approach keeps the EE outside the zone grown by ``commit_margin_m``."""
        _, ee = ee_path_m(plan, self.kinematics, step_s=0.01)
        return not self.config.zone.contains_many(ee, self.config.commit_margin_m).any()

    def _start_approach(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None) -> None:
        start = q_meas if q_meas is not None else self._hold_rad
        plan = self._approach_plan(start)
        if not self._approach_is_clear(plan):
            out.warnings.append("not anticipating: the approach to the staging pose from the measured joints "
                                "would come too close to the zone")
            return
        self._phase = "approach"
        self._commit_s = np.inf
        self._committed = False
        self._emit(out, "reach_start", now_s)
        self._send(out, plan, now_s, "approach", "reaching")

    def _update_staging(self, out: ControllerOutput, now_s: float, decision: str | None,
                        q_meas: np.ndarray | None, stale: bool, guard_clear: bool) -> None:
        """Approach and hold at the staging pose (always outside the zone, never committed)."""
        if stale:
            self._emit(out, "watchdog", now_s)
            self._stop_and_return(out, now_s, q_meas)
            return
        if decision != "act":
            self._stop_and_return(out, now_s, q_meas)
            return
        if self._phase == "approach":
            progress = self._plan_progress(now_s, q_meas)
            if progress == "stuck":
                out.warnings.append(self._stuck_warning(q_meas, "staging pose"))
                self._stop_and_return(out, now_s, q_meas)
                return
            if progress != "arrived":
                return
            self._phase = "staged"
            self._staged_since_s = now_s
        if guard_clear:
            self._start_entry(out, now_s, q_meas)
        elif now_s - self._staged_since_s > self.config.staging_timeout_s:
            out.warnings.append(f"partner still perceived in the zone after holding at the staging pose for "
                                f"{self.config.staging_timeout_s:.1f} s; returning home")
            self._stop_and_return(out, now_s, q_meas)

    def _start_entry(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None) -> None:
        """From rest at the staging pose into the zone (called only with the zone perceived clear)."""
        start = q_meas if q_meas is not None else self._hold_rad
        plan = self._entry_plan(start)
        commit = self._commit_for(plan, self.nominal_entry, self.nominal_entry_commit_s, self._nominal_entry_ee_path)
        self._launch(out, now_s, plan, commit, phase="entry")

    # ------------------------------------------------------------------ internals
    def _reach_plan(self, start_rad: np.ndarray) -> JointPlan:
        cfg = self.config
        return plan_minimum_jerk(start_rad, self.target_rad, self.limits, cfg.velocity_scale, cfg.min_move_duration_s)

    def _ee_path(self, plan: JointPlan) -> np.ndarray:
        return self.kinematics.fk_many(plan.state_at(_PATH_PHASES * plan.duration_s)[0])

    def _commit_time(self, reach: JointPlan) -> float:
        cfg = self.config
        return commit_time_s(reach, self.kinematics, cfg.zone, self.home_rad, self.limits, cfg.velocity_scale,
                             margin_m=cfg.commit_margin_m, latency_s=cfg.command_latency_s,
                             acceleration_scale=cfg.stop_acceleration_scale)

    def _start_reach(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None) -> None:
        start = q_meas if q_meas is not None else self._hold_rad
        reach = self._reach_plan(start)
        commit = self._commit_for(reach, self.nominal_reach, self.nominal_commit_s, self._nominal_ee_path)
        self._launch(out, now_s, reach, commit, phase="direct", emit_reach_start=True)

    def _commit_for(self, plan: JointPlan, nominal: JointPlan, nominal_commit_s: float,
                    nominal_ee_path: np.ndarray) -> float:
        """Commit time of ``plan``. Computing one takes ~0.1 s, too long for a tick: a plan whose
        EE path stays close to the nominal one's (the usual case, up to the arm's small tracking
        error) uses the precomputed time, scaled to its duration; the retreats from nearby states
        differ no more than the paths do, and that difference is a fraction of the margin."""
        deviation_m = np.max(np.linalg.norm(self._ee_path(plan) - nominal_ee_path, axis=1))
        if deviation_m <= _REUSE_COMMIT_MARGIN_FRACTION * self.config.commit_margin_m:
            return nominal_commit_s * plan.duration_s / nominal.duration_s
        return self._commit_time(plan)

    def _launch(self, out: ControllerOutput, now_s: float, plan: JointPlan, commit_s: float, phase: str,
                emit_reach_start: bool = False) -> None:
        """Send a move into the zone: uncommitted until ``commit_s`` (committed at once if <= 0)."""
        self._phase = phase
        self._commit_s = commit_s
        self._committed = False
        if emit_reach_start:
            self._emit(out, "reach_start", now_s)
        self._send(out, plan, now_s, "reach", "reaching")
        if commit_s <= 0.0:
            self._committed = True
            self._emit(out, "entry_commit", now_s)

    def _stop_and_return(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None) -> None:
        """Leave the current motion for home: an abort (retreating) before the reach's commit
        time, a withdrawal from the zone otherwise."""
        cfg = self.config
        aborting = self.state == "reaching" and not self._committed
        q, qd, qdd = self._start_state(now_s, q_meas)
        if np.allclose(qd, 0.0, atol=1e-9) and np.allclose(qdd, 0.0, atol=1e-9):
            plan = plan_minimum_jerk(q, self.home_rad, self.limits, cfg.velocity_scale, cfg.min_move_duration_s)
        else:
            plan = plan_to_rest(q, qd, qdd, self.home_rad, self.limits, cfg.velocity_scale,
                                min_duration_s=0.0, acceleration_scale=cfg.stop_acceleration_scale)
        if aborting:
            self._emit(out, "abort", now_s)
            self._send(out, plan, now_s, "retreat", "retreating")
        else:
            self._emit(out, "withdraw_start", now_s)
            self._send(out, plan, now_s, "withdraw", "withdrawing")

    def _go_home(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None, velocity_scale: float) -> None:
        """Slow return home from wherever the arm is (after an e-stop release, at start-up)."""
        q, qd, qdd = self._start_state(now_s, q_meas)
        if np.max(np.abs(q - self.home_rad)) <= 1e-3 and np.allclose(qd, 0.0) and np.allclose(qdd, 0.0):
            self._plan = None
            self._hold_rad = self.home_rad.copy()
            self._arrive_home(out, now_s)
            return
        plan = plan_to_rest(q, qd, qdd, self.home_rad, self.limits, velocity_scale,
                            min_duration_s=self.config.min_move_duration_s)
        self._emit(out, "withdraw_start", now_s)
        self._send(out, plan, now_s, "home", "withdrawing")

    def _arrive_home(self, out: ControllerOutput, now_s: float) -> None:
        self.state = out.state = "home"
        self._committed = False
        self._phase = "direct"
        self._emit(out, "home", now_s)

    def _start_state(self, now_s: float, q_meas: np.ndarray | None):
        """Start of a new plan: measured positions when known, commanded velocity/acceleration."""
        q_cmd, qd, qdd = self.commanded_state(now_s)
        return (q_meas if q_meas is not None else q_cmd), qd, qdd

    def _plan_progress(self, now_s: float, q_meas: np.ndarray | None) -> str:
        """``running`` until the plan's time is up; then ``arrived`` once the measured joints are
        within ``settle_tolerance_rad`` of its goal (at once without measurements), or ``stuck``
        when they still are not ``settle_timeout_s`` later."""
        if self._plan is None:
            return "arrived"
        over_s = now_s - self._plan_start_s - self._plan.duration_s
        if over_s < 0.0:
            return "running"
        if q_meas is None or np.max(np.abs(q_meas - self._plan.goal_rad)) <= self.config.settle_tolerance_rad:
            return "arrived"
        return "stuck" if over_s >= self.config.settle_timeout_s else "running"

    def _stuck_warning(self, q_meas: np.ndarray, goal: str) -> str:
        error = float(np.max(np.abs(q_meas - self._plan.goal_rad)))
        return (f"arm did not reach the {goal}: measured joints {error:.3f} rad from it "
                f"{self.config.settle_timeout_s:.1f} s after the trajectory ended")

    def _send(self, out: ControllerOutput, plan: JointPlan, now_s: float, purpose: str, state: str) -> None:
        self._plan = plan
        self._plan_start_s = now_s
        self._hold_rad = plan.goal_rad
        self.state = out.state = state
        out.trajectory = TrajectoryCommand(self.config.joint_names, plan.points(self.config.point_rate_hz),
                                           purpose, plan)

    @staticmethod
    def _emit(out: ControllerOutput, name: str, now_s: float) -> None:
        out.events.append(ControllerEvent(name, float(now_s)))


def _measured(joint_positions) -> np.ndarray | None:
    if joint_positions is None:
        return None
    q = np.asarray(joint_positions, dtype=float)
    if q.shape != (7,) or not np.all(np.isfinite(q)):
        return None
    return q

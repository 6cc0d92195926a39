"""The arm controller's state machine: turn decisions in, safe joint trajectories out.

:class:`ArmController` is a pure core (no ROS): call :meth:`ArmController.update` once per tick
(100 Hz) with the newest inputs; it returns the controller state, events, and -- when the
motion changes -- a joint trajectory to send to a ros2_control joint trajectory controller
(JTC semantics: the new trajectory replaces the old one and starts on receipt).

States: ``home``, ``reaching``, ``acting``, ``withdrawing``, ``retreating``, ``holding``, ``estop``;
``/controller/state`` appends the SSM mode when the arm is slowed or stopped (``reaching ssm_stop``).

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
   perceived inside, perception is unknown, or the decision stops being "act". Until it is
   committed, the trajectory the arm has been sent ends at rest at the reach's *gate* (the last
   point of its path with the EE ``commit_margin_m`` outside the zone): a controller that falls
   silent, a lost command or a late tick leaves the arm stopped outside. The entry is committed
   -- the reach sent on into the zone -- at the last tick before the arm would start braking for
   the gate, and only when the zone guard is clear and the newest perception is at most
   ``ssm_max_hand_age_s`` old; otherwise the arm brakes and the commit waits for fresh
   perception. A fresh perception that does not see the hand counts as the partner inside once
   the hand could have reached the zone since it was last seen. After the commit the entry was
   decided while the partner was outside; if the partner then enters (or the policy says
   "yield") the arm withdraws at once instead of acting. The point of no return moves with the
   arm's speed: while an abort from where the arm is now, at the speed it has now, would still
   keep the EE outside the zone (separation monitoring has slowed it since the commit), a zone
   guard that is no longer clear -- the partner approaching, inside or unseen -- takes the entry
   back (an ``abort`` after the ``entry_commit``).
   **Approach guard** (``approach_horizon_s``): a hand perceived outside but moving toward the
   zone fast enough to reach it within that horizon counts as inside for this rule -- a partner
   who pauses after a false start and then reaches again is seen coming before the arm commits.
4. **Speed and separation monitoring** (:mod:`coop_robot.control.ssm`, every tick, every move):
   the separation between the hand (as perceived, or its worst case when unseen) and the robot's
   body is kept at least the protective separation distance S_p for the speed the arm moves at.
   Where it would not be, the running move is slowed on its own path (speed scaling, event
   ``ssm_scaled``) or stopped on it (protective stop, ``ssm_stop``); it speeds up again
   automatically when the person moves away (``ssm_resume``). Moves away from the person are
   never slowed. Scaling keeps the joint path, so a commit time (in path time) stays valid.
5. **Anticipation** (``anticipation``, on by default): "act" while the partner is perceived
   inside (on fresh perception) starts the reach anyway. It runs uncommitted and, while the zone
   guard is not clear, may go no farther along its path than the *waiting point*: the last
   configuration whose body keeps, at rest, S_p for a hand anywhere in the zone moving at the
   ISO 13855 speed (:meth:`SeparationMonitor.waiting_clearance_m`). If the guard is still not
   clear when the arm must start braking to stop there, it stops on the path at that point and
   waits; it goes on along the same path once the zone is perceived clear. So a policy that
   knows when the partner will leave can time the reach to pass the waiting point just as the
   hand leaves, and one that does not waits there. The wait returns home (an abort) when the
   decision stops being "act", when perception goes stale (watchdog) or after
   ``staging_timeout_s``.

New plans start from the measured joint positions (the last commanded state without them) and
the commanded velocity and acceleration -- unless the arm is not following its commands (measured
joints more than ``tracking_tolerance_rad`` from the commanded state: its own controller rejected a
move, e.g. one that arrived after its end on a busy machine). Then the running move is replaced
at once, with a warning, by a *settling stop* -- one point at rest where the measured joints can
come to rest, started when the arm receives it -- and, once the arm is measured at rest, by the
move home from there (a withdrawal after the commit; a move home is sent again). Before the
commit the reach is not given up while the arm settles: at rest it is taken up again from there
(no second ``reach_start``) when the policy still says "act", the zone guard would let a reach
start from home and the EE rests outside the zone grown by ``commit_margin_m``, at most
``_MAX_REACH_RESUMES`` times in a row -- the stop was the arm's, not the person's; otherwise it
is aborted then and the arm goes home. A plan whose goal the
measured joints have not reached
``settle_timeout_s`` after it ended counts as not followed: a reach is given up (back home,
no act), a move home is sent again.

Every move home (abort, withdrawal, re-sent move, the slow return after an e-stop or at start-up)
is checked along its EE path before it is sent: it keeps out of the zone, or leaves it and does not
come back (:meth:`ArmController._home_plan_from`). When the direct move from a fast or unusual state
would cross the zone, the arm brakes first and goes home from rest, or stays braked outside until
the zone is clear.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

import numpy as np

from coop_robot.control.kinematics import DEFAULT_ROBOT_BASE_M, JOINT_NAMES, IKError, PandaKinematics
from coop_robot.control.planning import (
    JointLimits,
    JointPlan,
    ScaledPlan,
    TrajectoryPoint,
    brake_stop_position,
    commit_time_s,
    ee_path_m,
    first_zone_entry_s,
    plan_brake,
    plan_minimum_jerk,
    plan_to_rest,
    quintic_coefficients,
    ramp_time_s,
    zone_time_after_leaving_s,
)
from coop_robot.control.ssm import HandMotionFit, Separation, SeparationMonitor, SsmConfig, body_to_box, robot_capsules
from coop_robot.geometry import Zone, world_geometry
from coop_robot.tasks import DEFAULT_TASK, check_task

#: The controller's states, as /controller/state publishes them (the policies' context reads them).
STATES = ("home", "reaching", "acting", "withdrawing", "retreating", "holding", "estop")
DECISIONS = ("act", "wait", "yield")
#: ``/policy/decision`` says ``act fallback`` when the "act" is the policy's liveness fallback (the
#: zone clear for ``fallback_clear_s`` with the robot's turn due, the policy itself not acting).
FALLBACK_QUALIFIER = "fallback"


def decision_text(action: str, fallback: bool = False) -> str:
    """The ``/policy/decision`` text of a decision: ``act``, ``wait``, ``yield`` or ``act fallback``."""
    return f"{action} {FALLBACK_QUALIFIER}" if fallback and action == "act" else action


def parse_decision_text(text: str) -> tuple[str, bool]:
    """``(action, fallback)`` from a ``/policy/decision`` string (:func:`decision_text`). Raises
    ``ValueError`` for anything else."""
    action, _, qualifier = str(text).partition(" ")
    if action not in DECISIONS or qualifier not in ("", FALLBACK_QUALIFIER) or (qualifier and action != "act"):
        raise ValueError(f"expected one of {list(DECISIONS)} or 'act {FALLBACK_QUALIFIER}', got {text!r}")
    return action, bool(qualifier)


def parse_state_text(text: str) -> tuple[str, str]:
    """``(state, ssm_mode)`` from a ``/controller/state`` string such as ``reaching ssm_stop``
    (mode ``free`` when none is given)."""
    state, _, qualifier = str(text).partition(" ")
    mode = qualifier[4:] if qualifier.startswith("ssm_") else "free"
    return state, mode

#: A reach whose EE path stays within this fraction of commit_margin_m of the nominal reach's
#: (compared at equal phase) reuses the nominal commit time instead of computing its own.
_REUSE_COMMIT_MARGIN_FRACTION = 0.25
_PATH_PHASES = np.linspace(0.0, 1.0, 101)
#: Path time (s) ahead at which separation monitoring also checks the path speed (a reach accelerates).
_SSM_LOOKAHEAD_S = 0.1
#: Separation monitoring reserves the distance the arm and the hand close in before its next check
#: can act (s): two 100 Hz ticks (the next one may come late).
_SSM_NEXT_CHECK_S = 0.02
#: Separation monitoring raises the speed only after it has been allowed this long (s).
_SSM_RAISE_AFTER_S = 0.2
#: A move sent again at a new speed joins its path this long (s) after receipt (see _resend).
_RESEND_JOIN_S = 0.1
#: A new move's first trajectory point is at least this long (s) after its start (see _first_points_from).
_FIRST_POINT_S = 0.05
#: Every trajectory ends at least this long (s) after its stamp (:func:`_first_points_from`).
_MIN_TRAJECTORY_S = 0.3
#: The entry is committed (the reach sent on past the gate) this long (s) before the gated reach
#: would start braking: the re-sent move's join plus two controller ticks.
_COMMIT_LEAD_S = _RESEND_JOIN_S + 0.02
_GATE_STEP_S = 0.005
#: Slowest cruise speed scale a move to a stop point is planned at; when not even that fits, it brakes at once.
_MIN_CRUISE_SIGMA = 0.02
#: An uncommitted reach resting this close (path s) short of its gate is at the gate.
_GATE_TOLERANCE_S = 0.02
#: A joint state at most this old (s) is carried forward to the tick time at the commanded velocity.
_MAX_JOINT_EXTRAPOLATION_S = 0.1


def _carried_forward(age_s: float) -> bool:
    """Whether a joint state this old (s; negative: stamped ahead of the tick) is carried forward to
    the tick (:meth:`ArmController._measured_now`)."""
    return 0.0 < age_s <= _MAX_JOINT_EXTRAPOLATION_S


#: A joint state older than :data:`_MAX_JOINT_EXTRAPOLATION_S` but at most this old (s) -- one that
#: came late, as on a busy machine -- or stamped ahead of the tick is judged against the command of
#: its own stamp when checking whether the arm follows; an older one (a joint-state stream that
#: stopped) against the command of now, as the arm should be there by now.
_LATE_JOINTS_JUDGED_AT_STAMP_S = 0.25
#: Joint states stamped before the newest one are ignored for this long (s) after it; past it, the
#: arm's clock is taken to have gone back and they are used again.
_STALE_JOINTS_FOR_S = 0.25
#: A settling stop (:meth:`ArmController._settle`) lasts at least this long (s) from its receipt.
_SETTLE_MIN_S = 0.3
#: ... and counts as done this long (s) after its planned end: it starts when the arm receives it,
#: which on a busy machine can be well after it was sent.
_SETTLE_ALLOWANCE_S = 0.25
#: The arm is at rest when its measured joint speeds are all below this (rad/s).
_AT_REST_RAD_S = 0.05
#: ... for this long (s) of joint states (an arm swinging about is at rest only at its turning points).
_AT_REST_FOR_S = 0.1
#: A move from rest sent on receipt counts as started on the arm once its measured joints are this
#: far (rad) from where it starts; until then its timeline is moved to the newest joint state's.
_STARTED_RAD = 2e-3
#: ... for at most this long (s) after it was sent: an arm that has not started it by then did not
#: get it, and the tracking check says so.
_START_SYNC_FOR_S = 0.5
#: An uncommitted reach whose move the arm was found not following is taken up again from where the
#: settling stop left the arm at most this many times in a row; after that the arm goes home.
_MAX_REACH_RESUMES = 2

# Cell geometry defaults: config/world.yaml.
DEFAULT_HOME_RAD = world_geometry().robot_home_joint_positions_rad
DEFAULT_TARGET_M = (0.60, -0.08, 0.72)
#: The robot's own target in the sync task: on its side of the table, outside the zone, reached from
#: home without the end effector passing through the zone (config/controller.yaml, ``sync_target_m``).
DEFAULT_SYNC_TARGET_M = (0.30, -0.30, 0.72)
DEFAULT_ZONE = world_geometry().zone
_SSM = SsmConfig()  # the separation monitor's default terms


def _as_controller_parameters(message: str) -> str:
    """An :class:`SsmConfig` error with each term named as the controller's parameter (``ssm_`` + the
    field; ``stop_acceleration_scale`` is the controller's own name too)."""
    for f in fields(SsmConfig):
        if f.name != "stop_acceleration_scale":
            message = re.sub(rf"(?<![\w]){f.name}(?![\w])", f"ssm_{f.name}", message)
    return message


@dataclass(frozen=True)
class ControllerConfig:
    """Everything the controller needs; units in the names, positions in the ``world`` frame."""

    joint_names: tuple[str, ...] = JOINT_NAMES
    home_rad: tuple[float, ...] = DEFAULT_HOME_RAD
    target_m: tuple[float, float, float] = DEFAULT_TARGET_M
    zone: Zone = DEFAULT_ZONE
    #: ``turn_taking``: "act" reaches ``target_m`` in the zone; ``sync``: it reaches ``sync_target_m``.
    task: str = DEFAULT_TASK
    #: The reach target of the sync task, outside the zone (m, world frame).
    sync_target_m: tuple[float, float, float] = DEFAULT_SYNC_TARGET_M
    #: Fraction of the joint velocity (and acceleration) limits used by routine moves.
    velocity_scale: float = 0.5
    min_move_duration_s: float = 0.5
    act_duration_s: float = 0.4
    perception_timeout_s: float = 0.5
    #: Perception stamped further than this ahead of the controller's clock is not perception (s).
    max_stamp_lead_s: float = 0.1
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
    #: The arm is *not following* its commands when its measured joints are farther than this (rad)
    #: from the commanded state (its controller rejected a move -- e.g. one that arrived late on a
    #: busy machine -- or it is blocked): new moves then start from its measured position and
    #: velocity, not from the commanded state it never reached, and a running move is replaced.
    tracking_tolerance_rad: float = 0.1
    #: At start-up, a measured configuration farther than this (rad) from home is driven home.
    home_tolerance_rad: float = 0.05
    #: "act" while the partner is perceived inside starts the reach; it waits at the waiting point.
    anticipation: bool = True
    #: A wait at the waiting point (or in a protective stop) longer than this (s) returns home.
    staging_timeout_s: float = 3.0
    #: Approach guard: a hand perceived outside the zone but moving toward it faster than
    #: ``approach_min_speed_mps`` (perceived velocity, component toward the nearest zone point)
    #: that would reach the zone within ``approach_horizon_s`` at that speed counts as entering:
    #: no reach or entry starts, and an uncommitted one is aborted. 0 s disables the guard.
    approach_horizon_s: float = 0.6
    approach_min_speed_mps: float = 0.15
    #: Speed cap (fraction of the reach's path speed) of a reach the policy's liveness fallback
    #: started: the robot goes in without the policy's word that the partner's turn is over, so it
    #: comes slowly enough that a partner resuming a paused turn is seen before the arm commits.
    fallback_speed_scale: float = 0.5
    # Speed and separation monitoring: coop_robot.control.ssm.SsmConfig's terms (its defaults).
    ssm_human_speed_mode: str = _SSM.human_speed_mode
    ssm_human_speed_mps: float = _SSM.human_speed_mps
    ssm_human_speed_floor_mps: float = _SSM.human_speed_floor_mps
    ssm_reaction_time_s: float = _SSM.reaction_time_s
    ssm_intrusion_distance_m: float = _SSM.intrusion_distance_m
    ssm_perception_uncertainty_m: float = _SSM.perception_uncertainty_m
    ssm_robot_uncertainty_m: float = _SSM.robot_uncertainty_m
    ssm_hand_radius_m: float = _SSM.hand_radius_m
    ssm_resume_margin_m: float = _SSM.resume_margin_m
    ssm_max_hand_age_s: float = _SSM.max_hand_age_s
    ssm_human_acceleration_mps2: float = _SSM.human_acceleration_mps2
    ssm_velocity_lag_s: float = _SSM.velocity_lag_s
    ssm_hand_motion: str = _SSM.hand_motion
    #: Perception age (s) assumed for a waiting pose (camera frame period + perception latency).
    ssm_waiting_perception_age_s: float = 0.05

    @property
    def ssm(self) -> SsmConfig:
        """The separation monitor's configuration."""
        return SsmConfig(self.ssm_human_speed_mode, self.ssm_human_speed_mps, self.ssm_human_speed_floor_mps,
                         self.ssm_reaction_time_s, self.ssm_intrusion_distance_m, self.ssm_perception_uncertainty_m,
                         self.ssm_robot_uncertainty_m, self.ssm_hand_radius_m, self.stop_acceleration_scale,
                         self.ssm_resume_margin_m, self.ssm_max_hand_age_s,
                         human_acceleration_mps2=self.ssm_human_acceleration_mps2,
                         velocity_lag_s=self.ssm_velocity_lag_s, hand_motion=self.ssm_hand_motion)

    def __post_init__(self) -> None:
        names = tuple(self.joint_names)
        if len(names) != 7 or len(set(names)) != 7 or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"joint_names must be 7 distinct non-empty names, got {list(self.joint_names)!r}")
        object.__setattr__(self, "joint_names", names)
        _vector(self, "home_rad", 7)
        _vector(self, "target_m", 3)
        _vector(self, "sync_target_m", 3)
        check_task(self.task)
        _vector(self, "robot_base_m", 3)
        if not isinstance(self.zone, Zone):
            raise ValueError(f"zone must be a coop_robot.geometry.Zone, got {self.zone!r}")
        if not (0.0 < self.velocity_scale <= 1.0):
            raise ValueError(f"velocity_scale must be in (0, 1], got {self.velocity_scale!r}")
        if not isinstance(self.anticipation, (bool, np.bool_)):
            raise ValueError(f"anticipation must be true or false, got {self.anticipation!r}")
        object.__setattr__(self, "anticipation", bool(self.anticipation))
        if not (0.0 < self.stop_acceleration_scale <= 1.0):
            raise ValueError(f"stop_acceleration_scale must be in (0, 1], got {self.stop_acceleration_scale!r}")
        if not (0.0 < self.fallback_speed_scale <= 1.0):
            raise ValueError(f"fallback_speed_scale must be in (0, 1], got {self.fallback_speed_scale!r}")
        for name in ("min_move_duration_s", "act_duration_s", "commit_margin_m", "command_latency_s",
                     "settle_timeout_s", "startup_grace_s", "approach_horizon_s", "approach_min_speed_mps"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite value >= 0, got {value!r}")
        if not (np.isfinite(self.ssm_waiting_perception_age_s) and self.ssm_waiting_perception_age_s >= 0.0):
            raise ValueError(f"ssm_waiting_perception_age_s must be a finite value >= 0, "
                             f"got {self.ssm_waiting_perception_age_s!r}")
        for name in ("perception_timeout_s", "max_stamp_lead_s", "point_rate_hz", "settle_tolerance_rad",
                     "home_tolerance_rad", "staging_timeout_s", "tracking_tolerance_rad"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a finite value > 0, got {value!r}")
        # The separation monitor's terms are checked here, not at the first tick; the error names the
        # controller's parameter (ssm_hand_motion), not the SsmConfig field (hand_motion).
        try:
            self.ssm  # noqa: B018
        except ValueError as exc:
            raise ValueError(_as_controller_parameters(str(exc))) from None


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
    _p("task", "task", "What 'act' reaches for: 'turn_taking' = target_m in the zone, 'sync' = sync_target_m "
       "outside it (the synchronous joint-action task)"),
    _p("sync_target_m", "sync_target_m", "EE target of the sync task, outside the zone [x, y, z] (m, world frame); "
       "its reach from home must keep the EE out of the zone"),
    _p("robot_base_m", "robot_base_m",
       "Robot base (panda_link0) position in the world frame (m), identity orientation; shared via world.yaml"),
    _p("velocity_scale", "velocity_scale",
       "Fraction of the joint velocity/acceleration limits used for moves, in (0, 1]", 0.01, 1.0),
    _p("min_move_duration_s", "min_move_duration_s", "Shortest duration of any move (s)", 0.0, 10.0),
    _p("act_duration_s", "act_duration_s", "Dwell at the target during the robot's turn (s)", 0.0, 60.0),
    _p("perception_timeout_s", "perception_timeout_s",
       "Watchdog: perception older than this (s) stops the arm and returns it home", 0.01, 10.0),
    _p("max_stamp_lead_s", "max_stamp_lead_s", "Perception and joint states stamped further than this (s) ahead of "
       "the controller's clock are ignored and logged (a frame from the future would look fresh for that long)",
       0.0, 10.0),
    _p("commit_margin_m", "commit_margin_m",
       "Zone guard: an aborted reach keeps the EE at least this far outside the zone (m)", 0.0, 0.5),
    _p("point_rate_hz", "point_rate_hz", "Trajectory points per second in each JointTrajectory", 1.0, 1000.0),
    _p("startup_grace_s", "startup_grace_s", "After start-up, wait this long (s) for perception before holding",
       0.0, 60.0),
    _p("stop_acceleration_scale", "stop_acceleration_scale",
       "Fraction of the acceleration limits used to brake (e-stop) and abort, in (0, 1]", 0.01, 1.0),
    _p("anticipation", "anticipation", "On 'act' while the partner is inside, start the reach and wait at the "
       "waiting point (S_p kept for a hand anywhere in the zone) until the partner is perceived out"),
    _p("staging_timeout_s", "staging_timeout_s",
       "Longest wait at the waiting point or in a protective stop before returning home (s)", 0.01, 60.0),
    _p("approach_horizon_s", "approach_horizon_s", "Approach guard: a hand outside but reaching the zone within "
       "this time at its perceived speed counts as inside (no entry starts); 0 disables (s)", 0.0, 5.0),
    _p("approach_min_speed_mps", "approach_min_speed_mps",
       "Approach guard: slowest hand speed toward the zone that counts (m/s)", 0.0, 5.0),
    _p("fallback_speed_scale", "fallback_speed_scale", "Speed cap (fraction of the reach's speed, in (0, 1]) of a "
       "reach started by the policy's liveness fallback ('act fallback'): the partner's turn may not be over, "
       "so the arm comes slowly enough to see a resumed reach before it commits", 0.01, 1.0),
    _p("ssm_human_speed_mode", "ssm_human_speed_mode", "SSM v_h (ISO/TS 15066 S_h term): 'directed' = the "
       "hand's measured speed toward the robot, at least ssm_human_speed_floor_mps; 'constant' = "
       "ssm_human_speed_mps always (ISO 13855)"),
    _p("ssm_human_speed_mps", "ssm_human_speed_mps", "SSM K_h, human approach speed of ISO 13855 (m/s): constant "
       "mode, a hand of unknown velocity, and how fast an unseen hand may have moved", 0.0, 5.0),
    _p("ssm_human_speed_floor_mps", "ssm_human_speed_floor_mps",
       "SSM directed mode: slowest v_h assumed (m/s), for a hand at rest that starts toward the robot", 0.0, 5.0),
    _p("ssm_reaction_time_s", "ssm_reaction_time_s", "SSM T_r beyond the measured perception age (s): controller "
       "tick + command transport + arm controller (S_h and S_r terms)", 0.0, 2.0),
    _p("ssm_intrusion_distance_m", "ssm_intrusion_distance_m",
       "SSM C, intrusion distance (m): how far fingers reach past the tracked hand sphere", 0.0, 1.0),
    _p("ssm_perception_uncertainty_m", "ssm_perception_uncertainty_m",
       "SSM Z_d, position uncertainty of the perceived hand (m)", 0.0, 1.0),
    _p("ssm_robot_uncertainty_m", "ssm_robot_uncertainty_m",
       "SSM Z_r, position uncertainty of the robot (m): tracking error of the arm", 0.0, 1.0),
    _p("ssm_hand_radius_m", "ssm_hand_radius_m", "SSM: radius of the sphere around the perceived hand centre (m)",
       0.0, 0.5),
    _p("ssm_resume_margin_m", "ssm_resume_margin_m",
       "SSM hysteresis (m): speed is raised again only with this much separation beyond S_p", 0.0, 1.0),
    _p("ssm_waiting_perception_age_s", "ssm_waiting_perception_age_s", "SSM: perception age assumed for the "
       "waiting point (s): camera frame period + perception latency", 0.0, 2.0),
    _p("ssm_max_hand_age_s", "ssm_max_hand_age_s", "SSM: a hand detection older than this (s) is not trusted; "
       "the hand may have moved at ssm_human_speed_mps since it was seen", 0.0, 2.0),
    _p("ssm_human_acceleration_mps2", "ssm_human_acceleration_mps2", "SSM a_h, directed mode (m/s^2): how fast "
       "the hand's speed toward the robot may have grown since its perceived velocity was measured (S_h "
       "term; perception age + ssm_velocity_lag_s ago); 0 = v_h as perceived", 0.0, 100.0),
    _p("ssm_velocity_lag_s", "ssm_velocity_lag_s", "SSM: lag of the perceived hand velocity beyond the perception "
       "age (s): the tracker's velocity_smoothing_s + half a camera frame", 0.0, 2.0),
    _p("ssm_hand_motion", "ssm_hand_motion", "SSM directed mode, where v_h comes from: 'fit' (default) = a "
       "quadratic fit of the newest perceived positions by their stamps (velocity and acceleration without the "
       "smoothing lag; the hand is taken to go on speeding up toward the robot at the fitted rate while the arm "
       "reacts and stops, but not to turn round at the rate it brakes to rest); 'tracker' = the perceived "
       "velocity (smoothed; ssm_velocity_lag_s old)"),
    _p("rate_hz", None, "Control tick rate (Hz, node clock)", 1.0, 1000.0, node_default=100.0),
    _p("decision_timeout_s", None, "A policy decision older than this (s) counts as none", 0.01, 10.0,
       node_default=0.5),
    _p("stamp_trajectories", None, "Stamp each JointTrajectory with the controller-clock time its move starts "
       "(the JTC runs it on the controller's timeline: re-sent moves join the arm where it is). Needs the "
       "controller's clock synchronized with the robot's (sim time, or chrony/PTP on a lab PC); false: zero "
       "stamp, start on receipt. Settling stops (the arm not following) and the moves from rest after them "
       "always start on receipt", node_default=True),
)
CONTROLLER_PARAMETER_NAMES = tuple(p.name for p in CONTROLLER_PARAMETERS)


def controller_parameter(name: str) -> ControllerParameter:
    """The :data:`CONTROLLER_PARAMETERS` entry called ``name`` (KeyError naming the known ones)."""
    for spec in CONTROLLER_PARAMETERS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown controller parameter {name!r}; expected one of {list(CONTROLLER_PARAMETER_NAMES)}")


def ssm_config_from_params(values: Mapping[str, Any]) -> SsmConfig:
    """The separation monitor's configuration from ``ssm_*`` parameter values (the others keep
    their defaults); for nodes that score separation without running the controller."""
    return controller_config_from_params({k: v for k, v in values.items() if k.startswith("ssm_")}).ssm


#: The separation-monitoring parameters (shared by every node through world.yaml).
SSM_PARAMETERS = tuple(p for p in CONTROLLER_PARAMETERS if p.name.startswith("ssm_"))


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
    joint_stamp_s: float | None = None        # stamp of joint_positions; None = measured now
    decision_fallback: bool = False           # the "act" is the policy's liveness fallback ("act fallback")


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
    purpose: str          # reach, approach, retreat, withdraw, brake, home, settle
    plan: JointPlan       # the continuous plan the points sample (for checks and logs)
    #: Start on receipt (a zero stamp) rather than at the tick's time: a settling stop, whose one
    #: point the arm's controller reaches from whatever state the arm is in when it arrives.
    on_receipt: bool = False


@dataclass
class ControllerOutput:
    state: str
    trajectory: TrajectoryCommand | None = None
    events: list[ControllerEvent] = field(default_factory=list)
    #: Human-readable warnings for the log (e.g. the arm did not follow a trajectory).
    warnings: list[str] = field(default_factory=list)
    #: Separation monitoring at this tick: the evaluation at the commanded speed, the mode
    #: (free / scaled / stop) and the speed scale it allows.
    separation: Separation | None = None
    ssm_mode: str = "free"
    speed_scale: float = 1.0


class ArmController:
    """Pure turn-taking arm controller; see the module docstring for the rules.

    With ``task`` ``sync`` the same controller reaches ``sync_target_m`` (outside the zone) on
    "act". The zone guard applies to a reach whose EE path enters the zone grown by
    ``commit_margin_m``; a reach that never does (the sync reach from home) has no entry to gate or
    commit: it runs to its target while "act" holds, and separation monitoring, the watchdog and the
    e-stop apply to it exactly as to any other move.

    Raises ``ValueError`` at construction when the home pose is not outside the zone (with the
    commit margin), the target is not inside it, or (task ``sync``) the sync target is not outside
    it or its reach from home passes through it, and :class:`IKError` when a target has no IK
    solution.
    """

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.config = cfg = config or ControllerConfig()
        self.kinematics = PandaKinematics(cfg.robot_base_m)
        self.limits = JointLimits.panda()
        self.monitor = SeparationMonitor(cfg.ssm, self.kinematics, self.limits.acceleration_rad_s2)
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
        # The nominal reach from home: its commit time and waiting point are reused when a reach
        # starts at home.
        self.nominal_reach = self._reach_plan(self.home_rad)
        self.nominal_commit_s = self._commit_time(self.nominal_reach)
        self.nominal_entry_s = first_zone_entry_s(self.nominal_reach, self.kinematics, cfg.zone)
        self.nominal_gate_s = self._gate_time(self.nominal_reach)
        self._nominal_ee_path = self._ee_path(self.nominal_reach)
        #: Body distance (m) a waiting pose keeps from the zone (S_p for a hand anywhere in it).
        self.waiting_clearance_m = self.monitor.waiting_clearance_m(cfg.ssm_waiting_perception_age_s)
        self.nominal_wait_s = self._waiting_time(self.nominal_reach)
        if self.nominal_wait_s <= 0.0:
            raise ValueError(f"the home pose's body is already within the waiting clearance "
                             f"({self.waiting_clearance_m:.3f} m) of the zone; expected a home farther from it "
                             f"or smaller SSM terms")
        self.waiting_rad = self.nominal_reach.state_at(self.nominal_wait_s)[0]
        self.waiting_ee_m = self.kinematics.fk(self.waiting_rad)
        self.sync_target_rad: np.ndarray | None = None
        self.sync_reach: JointPlan | None = None
        if cfg.task == "sync":
            self._init_sync_target()
        self.reset()

    def _init_sync_target(self) -> None:
        """The sync task's target: outside the zone, and its nominal reach from home keeps the EE
        outside the zone grown by ``commit_margin_m`` (so it needs no zone guard)."""
        cfg = self.config
        if cfg.zone.contains(cfg.sync_target_m, cfg.commit_margin_m):
            raise ValueError(f"sync_target_m {list(cfg.sync_target_m)} must be outside the zone grown by "
                             f"commit_margin_m={cfg.commit_margin_m} m "
                             f"({list(cfg.zone.min_m)}..{list(cfg.zone.max_m)})")
        try:
            self.sync_target_rad = self.kinematics.ik(cfg.sync_target_m, seed_rad=self.home_rad,
                                                      nominal_rad=self.home_rad)
        except IKError as exc:
            raise IKError(f"sync_target_m {list(cfg.sync_target_m)}: {exc}") from exc
        self.sync_reach = self._reach_plan(self.home_rad, self.sync_target_rad)
        entry = first_zone_entry_s(self.sync_reach, self.kinematics, cfg.zone, cfg.commit_margin_m, step_s=_GATE_STEP_S)
        if entry is not None:
            raise ValueError(f"sync_target_m {list(cfg.sync_target_m)}: the reach from home brings the EE into the "
                             f"zone grown by commit_margin_m after {entry:.2f} s; expected a sync target whose "
                             f"reach stays outside the zone")
        self._sync_ee_path = self._ee_path(self.sync_reach)

    # ------------------------------------------------------------------ public API
    def reset(self) -> None:
        """Forget all runtime state (start-up: at home, nothing commanded yet)."""
        self.state = "home"
        #: The running reach was started (or carried on) by the liveness fallback: fallback_speed_scale.
        self._cautious = False
        self._plan: ScaledPlan | None = None
        self._plan_start_s = 0.0
        self._purpose = "home"
        #: The running plan is a move from rest sent with a zero stamp (it starts when the arm
        #: receives it), and the arm has not been seen leaving its start yet: the plan's timeline
        #: follows the joint states until it has (_sync_start).
        self._start_pending = False
        self._sent_s = 0.0
        self._start_lead_s = 0.0
        #: Stamp of the newest joint state that showed the arm moving (_AT_REST_RAD_S).
        self._last_motion_s = -np.inf
        self._update_s = -np.inf            # the last update's tick time (sent_at: was its plan sent then?)
        self._reach_started_s = -np.inf     # when the last reach from rest was started
        self._hold_rad = self.home_rad.copy()
        #: The speed of the move home that waits, braked at rest, for the zone to clear (_home_from_rest).
        self._held_home_velocity_scale = self.config.velocity_scale
        self._commit_s = 0.0
        self._wait_s = 0.0
        self._gate_s = 0.0
        #: Whether the current reach enters the zone, so that the zone guard gates it (the sync
        #: reach does not).
        self._gated = True
        self._perception_age_s = float("inf")
        self._committed = False
        self._act_until_s = 0.0
        self._t0_s: float | None = None
        self._seen_joints = False
        #: While ``reaching``: "direct" (moving along the reach) or "held" (stopped at the waiting point).
        self._phase = "direct"
        self._held_since_s = 0.0
        self._ssm_mode = "free"
        self._ssm_scale = 1.0
        #: Speed scale the current move cruises at (separation monitoring sets it).
        self._cruise_sigma = 1.0
        self._raise_since_s: float | None = None
        #: While a reach is uncommitted: the path time its trajectory ends at rest (the gate before the
        #: zone, or the waiting point while the zone guard holds it); None once committed.
        self._stop_at_tau: float | None = None
        self._ssm_stop_since_s: float | None = None
        self._last_seen: tuple[float, np.ndarray] | None = None
        self._hand_fit = HandMotionFit()
        self.last_separation = None
        #: The last measured joints (stamp, q), the velocity measured from them (None: unknown), and
        #: whether the arm is not following the commanded state (``tracking_tolerance_rad``).
        self._meas_prev: tuple[float, np.ndarray] | None = None
        self._meas_prev_stamped = False     # whether _meas_prev's time is its stamp (else the tick's)
        self._meas_prev_tick_s = -np.inf    # the tick that took _meas_prev
        self._meas_velocity: np.ndarray | None = None
        self.not_following = False
        self._tracking_lost_now = False
        #: How many times in a row this turn's reach was taken up again after a settling stop.
        self._reach_resumes = 0
        self._joints_implausible = False   # the newest joint state was beyond the joint limits
        self._joints_stale_said = False    # an older joint state than the newest was ignored (said once)
        self._joints_future_said = False   # a joint state stamped ahead of the clock was ignored (said once)

    @property
    def committed(self) -> bool:
        return self._committed

    @property
    def phase(self) -> str:
        """Kind of the current / last reach: ``direct`` or ``held`` (at the waiting point)."""
        return self._phase

    @property
    def commit_time_s(self) -> float:
        """Commit time (path seconds from the reach start) of the current / last reach."""
        return self._commit_s

    @property
    def ssm_mode(self) -> str:
        """``free``, ``scaled`` or ``stop``: what separation monitoring does to the current move."""
        return self._ssm_mode

    @property
    def state_text(self) -> str:
        """The state as ``/controller/state`` publishes it: the state, and the SSM mode when the
        arm is slowed or stopped by it (``reaching ssm_stop``)."""
        return self.state if self._ssm_mode == "free" else f"{self.state} ssm_{self._ssm_mode}"

    def commanded_state(self, now_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Commanded ``(q, qd, qdd)`` at ``now_s`` along the last trajectory sent (at rest if none)."""
        if self._plan is None:
            zero = np.zeros(7)
            return self._hold_rad.copy(), zero, zero.copy()
        return self._plan.state_at(now_s - self._plan_start_s)

    def sent_at(self, sent_s: float) -> float:
        """The trajectory of the last :meth:`update` left at ``sent_s`` (the caller's clock), later than
        the tick time it was planned for when the caller was held up between reading its clock and
        sending (a preempted process). Returns the time to stamp it with.

        A reach started by that update (``reach_start``) starts from rest at home: its plan is moved
        to start when it is sent, so the arm (at rest until then) runs it from its first point.
        Stamped with the tick time, the arm's controller would sample it ``sent_s - tick`` into the
        move and jump there from rest -- on a starved 2-core rehearsal, 0.37 s into a reach, which
        the arm accepted and whose retreats it then rejected (docs/lab_deployment.md).

        Every other move -- the commit's continuation of a reach included -- joins the running
        motion's timeline and keeps the tick time: the arm has gone on along the previous move."""
        if (self._plan is None or self._reach_started_s != self._update_s
                or self._plan_start_s != self._update_s or not sent_s > self._plan_start_s):
            return self._plan_start_s   # the last update started no reach from rest, or it is not late
        self._plan_start_s = float(sent_s)
        return self._plan_start_s

    def path_time_s(self, now_s: float) -> float:
        """How far (path seconds) the current move has gone along its path."""
        if self._plan is None:
            return 0.0
        return self._plan.tau_at(now_s - self._plan_start_s)

    def update(self, now_s: float, inputs: ControllerInputs) -> ControllerOutput:
        """Advance the state machine to ``now_s`` (s, controller clock) given the newest inputs."""
        cfg = self.config
        if self._t0_s is None:
            self._t0_s = now_s
        if inputs.decision is not None and inputs.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS} or None, got {inputs.decision!r}")
        out = ControllerOutput(self.state)
        self._update_s = float(now_s)
        partner_in_zone = None if inputs.partner_in_zone is None else bool(inputs.partner_in_zone)
        q_joints = _measured(inputs.joint_positions, self.limits)
        joint_stamp = inputs.joint_stamp_s
        if joint_stamp is not None and not (joint_stamp <= now_s + cfg.max_stamp_lead_s):
            # From the future (or NaN): not a measurement; were it kept as the newest, every real
            # joint state after it would look old.
            if not self._joints_future_said:
                out.warnings.append(f"joint state stamped {joint_stamp - now_s:.3f} s ahead of this clock ignored "
                                    f"(max_stamp_lead_s {cfg.max_stamp_lead_s:g} s)")
            self._joints_future_said = True
            q_joints, joint_stamp = None, None
            inputs = replace(inputs, joint_positions=None, joint_stamp_s=None)
        else:
            self._joints_future_said = False
        if (q_joints is not None and joint_stamp is not None and self._meas_prev is not None
                and self._meas_prev_stamped and joint_stamp < self._meas_prev[0] - 1e-9
                and now_s - self._meas_prev_tick_s <= _STALE_JOINTS_FOR_S):
            # Older than a joint state already used (a replayed or reordered message): the arm was
            # there, it is not there now. Keep the newest one -- unless no newer one has come for
            # _STALE_JOINTS_FOR_S: then the arm's clock went back, and its states are taken again.
            if not self._joints_stale_said:
                out.warnings.append(f"joint state stamped {self._meas_prev[0] - joint_stamp:.3f} s before the newest "
                                    "one ignored (replayed or out of order); using the newest")
            self._joints_stale_said = True
            joint_stamp, q_joints = self._meas_prev
            inputs = replace(inputs, joint_positions=q_joints, joint_stamp_s=joint_stamp)
        else:
            self._joints_stale_said = False
        self._sync_start(q_joints, joint_stamp)
        q_meas = self._measured_now(now_s, q_joints, joint_stamp)
        self._check_tracking(out, now_s, inputs, q_joints, q_meas)
        stamp = inputs.perception_stamp_s
        if stamp is not None and not (stamp <= now_s + cfg.max_stamp_lead_s):
            stamp = None  # from the future (or NaN): not perception at all
            inputs = replace(inputs, perception_stamp_s=None, partner_hand_m=None, partner_velocity_mps=None,
                             partner_in_zone=None)
            partner_in_zone = None
        if stamp is None:
            stale = now_s - self._t0_s > cfg.startup_grace_s
            fresh = False
        else:
            stale = now_s - stamp > cfg.perception_timeout_s
            fresh = not stale
        self._perception_age_s = float("inf") if stamp is None else max(now_s - stamp, 0.0)
        hand = None if inputs.partner_hand_m is None else np.asarray(inputs.partner_hand_m, dtype=float)
        seen = stamp is not None and hand is not None and hand.shape == (3,) and bool(np.isfinite(hand).all())
        if seen and (self._last_seen is None or stamp >= self._last_seen[0]):
            self._last_seen = (float(stamp), hand.copy())
            self._hand_fit.add(float(stamp), hand)
        if fresh and hand is not None and not seen and self._may_be_inside_unseen(now_s):
            # Perception is fresh but reports no hand (a NaN position): whatever the in-zone flag
            # says, a hand that could have reached the zone since it was last seen is in it.
            partner_in_zone = True
        approaching = fresh and partner_approaching(cfg.zone, inputs.partner_hand_m, inputs.partner_velocity_mps,
                                                    cfg.approach_horizon_s, cfg.approach_min_speed_mps)
        guard_clear = fresh and partner_in_zone is False and not approaching
        # "act" starts a reach: with the zone guard clear, or (anticipating) on fresh perception.
        may_reach = inputs.decision == "act" and (guard_clear or (fresh and (cfg.anticipation or cfg.task == "sync")))

        # 1. E-stop: brake now, then hold until released.
        if inputs.estop:
            if self.state != "estop":
                self._emit(out, "estop", now_s)
                q, qd, qdd = self._start_state(now_s, q_meas)
                plan = plan_brake(q, qd, qdd, self.limits, deceleration_scale=cfg.stop_acceleration_scale)
                if plan is not None:
                    self._send(out, ScaledPlan(plan), now_s, "brake", "estop")
                else:
                    # No brake along the motion stays within the arm's limits from here (a fast state
                    # near a joint limit): stop at rest where the joints can, started on receipt.
                    out.warnings.append("emergency stop: no brake within the arm's limits from this state; "
                                        "stopping as one point at rest, started on receipt")
                    self._send_rest_point(out, now_s, q, qd, "brake", "estop", min_duration_s=0.1)
                self._set_ssm_mode(out, now_s, "free", 1.0, emit=False)
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

        if self.state in ("home", "holding"):
            self.state = out.state = "holding" if stale else "home"
            if self.state == "home" and may_reach:
                self._cautious = inputs.decision_fallback
                self._start_reach(out, now_s, q_meas, guard_clear)
        elif self.state in ("reaching", "acting") and self._tracking_lost_now:
            # The turn's move is not being carried out: bring the arm to rest where it is, then go
            # home from there (a withdrawal after the commit) -- or, before it, take the reach up
            # again from there while the policy still says "act" (_settling_in_reach).
            self._settle(out, now_s, q_meas)
        elif self.state == "reaching" and self._purpose == "settle":
            self._settling_in_reach(out, now_s, q_meas, inputs, stale, may_reach, guard_clear)
        elif self.state == "reaching":
            self._cautious = self._cautious or (inputs.decision == "act" and inputs.decision_fallback)
            self._update_reach(out, now_s, inputs.decision, q_meas, stale, guard_clear, partner_in_zone)
        elif self.state == "acting":
            if stale:
                self._emit(out, "watchdog", now_s)
                self._stop_and_return(out, now_s, q_meas)
            elif partner_in_zone is True or inputs.decision == "yield" or now_s >= self._act_until_s:
                self._stop_and_return(out, now_s, q_meas)
        elif self.state in ("withdrawing", "retreating"):
            progress = self._plan_progress(now_s, q_meas)
            if progress == "arrived" and self._plan is not None and not self._at_home(self._plan.goal_rad):
                # Braked to rest short of home: no move home from there kept out of the zone.
                self._home_from_rest(out, now_s, q_meas, guard_clear)
            elif progress == "arrived":
                self._arrive_home(out, now_s)
            elif self._tracking_lost_now:
                # The move home is not being carried out: bring the arm to rest, then send it again
                # from there.
                self._settle(out, now_s, q_meas)
            elif progress == "stuck":
                out.warnings.append(self._stuck_warning(q_meas, "home") + "; sending the move home again")
                plan = self._home_plan_from(q_meas, np.zeros(7), np.zeros(7), out=out)
                self._send(out, ScaledPlan(plan), now_s, "home", self.state, on_receipt=True)
            elif self._stopped_short_on_the_way_home(now_s):
                # A protective stop caught this move while it still braked toward the person (a retreat
                # or withdrawal starts by braking the motion it interrupts), and what is left of that
                # braking keeps it stopped. From rest, the move home heads straight away: send it.
                start = q_meas if q_meas is not None else self.commanded_state(now_s)[0]
                plan = self._home_plan_from(start, np.zeros(7), np.zeros(7), out=out)
                self._send(out, ScaledPlan(plan), now_s, "home", self.state, on_receipt=True)
        self._monitor_separation(out, now_s, inputs, q_meas)
        return out

    def _measured_now(self, now_s: float, q: np.ndarray | None, stamp: float | None) -> np.ndarray | None:
        """The measured joints ``q`` (stamped ``stamp``) carried forward to ``now_s`` at the commanded
        velocity: a joint state a few ms old is where the arm was, and a stop planned from there would
        pull it back first. An arm that is not following its commands is carried forward at its
        measured velocity instead (at rest when unknown)."""
        if q is None or stamp is None or self._plan is None:
            return q
        age_s = now_s - stamp
        if not _carried_forward(age_s):
            return q
        behind = float(np.max(np.abs(q - self.commanded_state(stamp)[0])))
        if self.not_following or behind > self.config.tracking_tolerance_rad:
            # The arm is not following its commands (a move refused or overtaken, one that arrived out of
            # order): the commanded velocity says nothing about where it went since; its measured one does.
            qd = np.zeros(7) if self._meas_velocity is None else self._meas_velocity
            return q + qd * age_s
        _, qd, _ = self.commanded_state(now_s)
        return q + qd * age_s

    def _stopped_short_on_the_way_home(self, now_s: float) -> bool:
        """A withdrawal or retreat held at rest by a protective stop for :data:`_SSM_RAISE_AFTER_S`
        while its path still leads toward the person before it turns for home."""
        if (self._ssm_mode != "stop" or self._ssm_stop_since_s is None or self._plan is None
                or self._purpose == "settle"):
            return False
        if now_s - self._ssm_stop_since_s < _SSM_RAISE_AFTER_S:
            return False
        return bool(np.allclose(self.commanded_state(now_s)[1], 0.0, atol=1e-3))

    def _check_tracking(self, out: ControllerOutput, now_s: float, inputs: ControllerInputs,
                        q: np.ndarray | None, q_meas: np.ndarray | None) -> None:
        """Measure the arm's velocity from successive joint states, and whether it follows the
        commanded state (``tracking_tolerance_rad``); say so when it stops following, and when the
        joint states stop being physical. ``q``: the measured joints as they came (None: none usable),
        ``q_meas``: carried forward to ``now_s``."""
        implausible = q is None and _measured(inputs.joint_positions) is not None
        if implausible and not self._joints_implausible:
            worst = float(np.max(np.abs(np.asarray(inputs.joint_positions, dtype=float))))
            out.warnings.append(
                f"joint states ignored: a position of {worst:.3g} rad is beyond the arm's joint limits by more than "
                f"{IMPLAUSIBLE_JOINT_MARGIN_RAD} rad (not a physical measurement; check the arm's driver); "
                "moving on from the commanded state until they are plausible again")
        self._joints_implausible = implausible
        if q is not None:
            t_meas = now_s if inputs.joint_stamp_s is None else float(inputs.joint_stamp_s)
            if self._meas_prev is not None:
                dt = t_meas - self._meas_prev[0]
                if 1e-3 <= dt <= 0.2:
                    # Bounded by the joint velocity limits: faster is stamp jitter, not the arm's motion,
                    # and a move planned from it would be refused by the arm's controller.
                    v_max = self.limits.velocity_rad_s
                    self._meas_velocity = np.clip((q - self._meas_prev[1]) / dt, -v_max, v_max)
                    if float(np.max(np.abs(self._meas_velocity))) > _AT_REST_RAD_S:
                        self._last_motion_s = t_meas
                elif dt > 0.2:
                    self._meas_velocity = None   # too old to difference
            if self._meas_prev is None or t_meas > self._meas_prev[0] \
                    or now_s - self._meas_prev_tick_s > _STALE_JOINTS_FOR_S:
                self._meas_prev = (t_meas, q)
                self._meas_prev_tick_s = now_s
                self._meas_prev_stamped = inputs.joint_stamp_s is not None
        self._tracking_lost_now = False
        if q_meas is None or self._plan is None:
            self.not_following = False
            return
        stamp = inputs.joint_stamp_s
        age_s = None if stamp is None else now_s - stamp
        if q is not None and age_s is not None and not _carried_forward(age_s) \
                and age_s <= _LATE_JOINTS_JUDGED_AT_STAMP_S:
            # Not carried forward (late, or stamped ahead): where the arm was against where it was told
            # to be then. Against the command of now, an arm following its moves exactly looked lost
            # whenever its joint states came 0.12 s late mid-reach (and was sent a settling stop).
            if stamp < self._plan_start_s:
                return   # measured before the current move began: says nothing about following it
            error = float(np.max(np.abs(q - self.commanded_state(stamp)[0])))
        else:
            error = float(np.max(np.abs(q_meas - self.commanded_state(now_s)[0])))
        lagging = error > self.config.tracking_tolerance_rad
        if self._purpose == "settle":
            # Coming to rest from wherever the arm was when the stop arrived: its timeline is the
            # arm's, not this clock's, and the move home starts from where it rests.
            lagging = False
        self._tracking_lost_now = lagging and not self.not_following
        if self._tracking_lost_now:
            out.warnings.append(
                f"arm not following its commands: measured joints {error:.3f} rad from the commanded state "
                "(did the arm's controller reject a move? on a busy machine moves can arrive after their end); "
                "moving on from where the arm is")
        self.not_following = lagging

    def _commit_due(self, now_s: float) -> bool:
        """Whether the gated reach would start braking for its gate within :data:`_COMMIT_LEAD_S`
        (or already does: a late tick): the last moment to send it on without slowing it."""
        plan = self._plan
        if plan.stop_tau_s < self._gate_s - _GATE_TOLERANCE_S:
            return False  # not heading for the gate (a protective stop short of it): nothing to decide yet
        brake_s = plan.brake_start_s
        # No braking piece: at rest at the gate already (or starting from rest there).
        return brake_s is None or now_s - self._plan_start_s + _COMMIT_LEAD_S >= brake_s

    def _abort_stays_outside(self, now_s: float, q_meas: np.ndarray | None) -> bool:
        """Whether an abort decided now keeps the EE out of the zone grown by ``commit_margin_m``:
        the running move goes on for ``command_latency_s``, then the move home from that state
        (the model of :func:`planning.commit_time_s`, at the speed the arm has now). At the commit
        this is false by construction; it turns true again only when the arm has been slowed."""
        cfg = self.config
        zone, margin = cfg.zone, cfg.commit_margin_m
        latency_s = max(cfg.command_latency_s, 0.0)
        ts = now_s + np.linspace(0.0, latency_s, max(int(np.ceil(latency_s / 0.005)), 1) + 1)
        q_run = np.array([self.commanded_state(t)[0] for t in ts])
        if q_meas is not None:
            q_run = np.vstack([q_run, q_meas])
        if zone.contains_many(self.kinematics.fk_many(q_run), margin).any():
            return False
        q, qd, qdd = self.commanded_state(now_s + latency_s)
        _, ee = ee_path_m(self._direct_home_plan(q, qd, qdd), self.kinematics, 0.005)
        return not bool(zone.contains_many(ee, margin).any())

    def _may_be_inside_unseen(self, now_s: float) -> bool:
        """Whether a hand not seen since ``_last_seen`` (never: True) could be in the zone now,
        moving at ``ssm_human_speed_mps`` (ISO 13855) since."""
        if self._last_seen is None:
            return True
        t_seen, where = self._last_seen
        reach_m = self.config.ssm_human_speed_mps * max(now_s - t_seen, 0.0)
        return self.config.zone.distance_m(where) <= reach_m

    # ------------------------------------------------------------------ the reach
    def _update_reach(self, out: ControllerOutput, now_s: float, decision: str | None, q_meas: np.ndarray | None,
                      stale: bool, guard_clear: bool, partner_in_zone: bool | None) -> None:
        cfg = self.config
        tau = self.path_time_s(now_s)
        if stale:
            self._emit(out, "watchdog", now_s)
            self._stop_and_return(out, now_s, q_meas)
            return
        if not self._committed:
            if decision != "act":
                self._stop_and_return(out, now_s, q_meas)  # the policy changed its mind
                return
            if not self._gated:
                pass  # no entry to guard (the sync reach): separation monitoring keeps it from the hand
            elif not guard_clear:
                if tau > self._wait_s + 1e-6 or not cfg.anticipation:
                    # Zone guard: past the waiting point (it was clear then) the partner came back,
                    # or no anticipation: abort.
                    self._stop_and_return(out, now_s, q_meas)
                    return
                self._hold_at_waiting_point(out, now_s, q_meas)
                return
            elif self._stop_at_tau is None or self._stop_at_tau < self._gate_s - 1e-9:
                self._stop_at_tau = self._gate_s  # clear: go on along the same path, up to the gate
                self._phase = "direct"
                self._resend(out, now_s, self._cruise_sigma)
            elif self._commit_due(now_s) and self._perception_age_s <= cfg.ssm_max_hand_age_s:
                # The zone is clear on fresh perception now, the last tick before the arm would start
                # braking for the gate: send it on into the zone.
                self._committed = True
                self._reach_resumes = 0
                self._stop_at_tau = None
                self._emit(out, "entry_commit", now_s)
                self._resend(out, now_s, self._cruise_sigma)
        elif not guard_clear and partner_in_zone is not True and decision != "yield" \
                and self._abort_stays_outside(now_s, q_meas):
            # Committed, but the partner is coming back (approach guard) or unseen, and the arm --
            # slowed since the commit by separation monitoring -- can still stop outside the zone:
            # the point of no return moves with the arm's speed, so take the entry back.
            self._committed = False
            self._stop_and_return(out, now_s, q_meas)  # an abort: the arm never enters
            return
        elif partner_in_zone is True or decision == "yield":
            if self._abort_stays_outside(now_s, q_meas):
                self._committed = False  # not in yet and it can stop outside: an abort
            self._stop_and_return(out, now_s, q_meas)
            return
        progress = self._plan_progress(now_s, q_meas)
        if progress == "arrived" and (self._committed or not self._gated):
            self.state = out.state = "acting"
            self._act_until_s = now_s + cfg.act_duration_s
            self._emit(out, "act_start", now_s)
        elif progress == "stuck":
            # The arm did not follow (command lost, arm blocked): no turn; go back home.
            out.warnings.append(self._stuck_warning(q_meas, "target"))
            self._stop_and_return(out, now_s, q_meas)
        elif self._ssm_stop_since_s is not None and now_s - self._ssm_stop_since_s > cfg.staging_timeout_s:
            out.warnings.append(f"protective stop held for {cfg.staging_timeout_s:.1f} s (person too close); "
                                f"returning home")
            self._stop_and_return(out, now_s, q_meas)

    def _hold_at_waiting_point(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None) -> None:
        """Zone guard not clear before the waiting point: the commanded trajectory ends there at
        the latest (so the arm stops there even if no further command comes), and a wait there
        longer than ``staging_timeout_s`` returns home."""
        cfg = self.config
        if self._stop_at_tau is None or self._stop_at_tau > self._wait_s + 1e-9:
            self._stop_at_tau = self._wait_s
            self._resend(out, now_s, self._cruise_sigma)
        at_rest = self._plan.stops_on_path and now_s - self._plan_start_s >= self._plan.duration_s
        if not at_rest:
            return
        if self._phase != "held":
            self._phase = "held"
            self._held_since_s = now_s
        elif now_s - self._held_since_s > cfg.staging_timeout_s:
            out.warnings.append(f"partner still perceived in the zone after waiting "
                                f"{cfg.staging_timeout_s:.1f} s at the waiting point; returning home")
            self._stop_and_return(out, now_s, q_meas)

    def _speed_profile(self, path: JointPlan, tau: float, sigma: float, cruise: float,
                       stop_at_tau: float | None) -> list[tuple[float, float, float]]:
        """Speed profile from ``sigma`` at path time ``tau`` to ``cruise``, ending at rest at
        ``stop_at_tau`` when given (braking as late as the stop deceleration allows).

        When there is no room to reach ``cruise`` and still stop there, the fastest lower cruise
        speed that fits (down to :data:`_MIN_CRUISE_SIGMA`, even from below it: from rest or a
        crawl short of a stop point the arm must still get there, not creep); when none fits
        (the stop point is a few mm of path away), brake now."""
        r1 = self._ramp(path, sigma, cruise, tau)
        if stop_at_tau is None or (cruise <= 0.0 and tau + 0.5 * sigma * r1 <= stop_at_tau):
            return [(r1, sigma, cruise)]
        if cruise > 0.0:
            fit = self._to_stop(path, tau, sigma, cruise, stop_at_tau)
            if fit is not None:
                return fit
            if cruise > sigma + 1e-9:
                # Speeding up with no room to reach the cruise speed: the fastest lower one that fits.
                lower = cruise * 0.7
                while lower > max(sigma, _MIN_CRUISE_SIGMA) + 1e-9:
                    fit = self._to_stop(path, tau, sigma, lower, stop_at_tau)
                    if fit is not None:
                        return fit
                    lower *= 0.7
                keep = max(sigma, min(_MIN_CRUISE_SIGMA, cruise))
                fit = self._to_stop(path, tau, sigma, keep, stop_at_tau)
                if fit is not None:
                    return fit
        # Too late to ramp to any cruise speed first: brake now, as hard as allowed.
        if sigma <= 1e-9:
            return [(0.0, sigma, 0.0)]
        r = max(2.0 * max(stop_at_tau - tau, 0.0) / sigma, self._ramp(path, sigma, 0.0, tau, stop_at_tau))
        return [(r, sigma, 0.0)]

    def _ramp(self, path: JointPlan, a: float, b: float, at: float, until: float | None = None) -> float:
        """Time (s) to change the path speed scale from ``a`` to ``b`` at path time ``at``."""
        cfg = self.config
        scale = cfg.stop_acceleration_scale if b < a else cfg.velocity_scale
        return ramp_time_s(path, at, a, b, self.limits, scale, until_tau_s=until)

    def _to_stop(self, path: JointPlan, tau: float, sigma: float, cruise: float,
                 stop_at_tau: float) -> list[tuple[float, float, float]] | None:
        """Ramp from ``sigma`` to ``cruise`` (> 0), cruise, and brake to rest at ``stop_at_tau``;
        None when that does not fit before the stop point."""
        r1 = self._ramp(path, sigma, cruise, tau)
        tau1 = tau + 0.5 * (sigma + cruise) * r1
        # The braking ramp is sized for the path's speed where it brakes: just before the stop.
        r2 = self._ramp(path, cruise, 0.0, max(tau1, stop_at_tau - 0.6), stop_at_tau)
        cruise_s = (stop_at_tau - tau1 - 0.5 * cruise * r2) / cruise
        if cruise_s < 0.0:
            return None
        return [(r1, sigma, cruise), (cruise_s, cruise, cruise), (r2, cruise, 0.0)]

    def _resend(self, out: ControllerOutput, now_s: float, cruise: float) -> None:
        """Send the current path again from where the arm is on it, at speed scale ``cruise``
        (ending at the waiting point while the zone guard asks for it)."""
        plan = self._plan
        t_local = now_s - self._plan_start_s
        tau = plan.tau_at(t_local)
        sigma = plan.sigma_at(t_local)
        stop_at = self._stop_at_tau if self.state == "reaching" and not self._committed else None
        new = ScaledPlan(plan.path, tau, sigma, self._speed_profile(plan.path, tau, sigma, cruise, stop_at))
        self._cruise_sigma = cruise
        self._plan = new
        self._plan_start_s = now_s
        self._hold_rad = new.goal_rad
        # The arm lags its reference a little; a joint trajectory controller interpolates from the
        # measured state to the first point, so a first point 20 ms away would make it catch up in
        # one jerk. A re-sent move joins its path _RESEND_JOIN_S later instead.
        points = new.points(self.config.point_rate_hz)
        out.trajectory = TrajectoryCommand(self.config.joint_names, _first_points_from(points, _RESEND_JOIN_S),
                                           self._purpose, new)

    def _reach_plan(self, start_rad: np.ndarray, target_rad: np.ndarray | None = None) -> JointPlan:
        """The reach from ``start_rad`` to ``target_rad`` (default: the turn's target)."""
        cfg = self.config
        goal = self.target_rad if target_rad is None else target_rad
        return plan_minimum_jerk(start_rad, goal, self.limits, cfg.velocity_scale, cfg.min_move_duration_s)

    def _ee_path(self, plan: JointPlan) -> np.ndarray:
        return self.kinematics.fk_many(plan.state_at(_PATH_PHASES * plan.duration_s)[0])

    def _commit_time(self, reach: JointPlan) -> float:
        cfg = self.config
        return commit_time_s(reach, self.kinematics, cfg.zone, self.home_rad, self.limits, cfg.velocity_scale,
                             margin_m=cfg.commit_margin_m, latency_s=cfg.command_latency_s,
                             acceleration_scale=cfg.stop_acceleration_scale)

    def _gate_time(self, reach: JointPlan) -> float:
        """Path time of the gate: the last moment the reach's EE is outside the zone grown by
        ``commit_margin_m``. An uncommitted reach comes to rest there at the latest."""
        entry = first_zone_entry_s(reach, self.kinematics, self.config.zone, self.config.commit_margin_m,
                                   step_s=_GATE_STEP_S)
        if entry is None:
            return reach.duration_s
        return max(entry - _GATE_STEP_S, 0.0)

    def _waiting_time(self, reach: JointPlan) -> float:
        """Path time of the waiting point: the last moment the reach's body keeps the waiting
        clearance from the zone (0 when it never does)."""
        zone = self.config.zone
        times = np.arange(0.0, reach.duration_s, 0.005)
        frames = self.kinematics.joint_frames(reach.state_at(times)[0])
        for i in range(len(times)):
            if body_to_box(robot_capsules(frames[i]), zone.min_m, zone.max_m) < self.waiting_clearance_m:
                return float(times[max(i - 1, 0)]) if i > 0 else 0.0
        return float(reach.duration_s)

    def _start_reach(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None,
                     guard_clear: bool = True, resumed: bool = False) -> None:
        """Start the turn's reach from ``q_meas`` (at rest), or take it up again from there
        (``resumed``: the same turn's reach, no ``reach_start``)."""
        start = q_meas if q_meas is not None else self._hold_rad
        if self.config.task == "sync":
            self._start_sync_reach(out, now_s, start, guard_clear, resumed)
            return
        reach = self._reach_plan(start)
        deviation_m = np.max(np.linalg.norm(self._ee_path(reach) - self._nominal_ee_path, axis=1))
        if deviation_m <= _REUSE_COMMIT_MARGIN_FRACTION * self.config.commit_margin_m:
            # Computing a commit time takes ~0.1 s, too long for a tick: a reach whose EE path stays
            # close to the nominal one's (the usual case, up to the arm's small tracking error) uses
            # the precomputed times, scaled to its duration; the retreats from nearby states differ
            # no more than the paths do, and that difference is a fraction of the margin.
            ratio = reach.duration_s / self.nominal_reach.duration_s
            commit, wait, gate = self.nominal_commit_s * ratio, self.nominal_wait_s * ratio, self.nominal_gate_s * ratio
        else:
            commit, wait, gate = self._commit_time(reach), self._waiting_time(reach), self._gate_time(reach)
        self._start_gated_reach(out, now_s, reach, commit, wait, gate, guard_clear, resumed)

    def _start_sync_reach(self, out: ControllerOutput, now_s: float, start: np.ndarray, guard_clear: bool,
                          resumed: bool = False) -> None:
        """The sync task's reach to ``sync_target_m``. One whose EE path stays outside the zone grown
        by ``commit_margin_m`` (always, from home: checked at construction) runs ungated to its
        target; should a reach from elsewhere pass through the zone, the zone guard gates it like a
        turn's reach."""
        reach = self._reach_plan(start, self.sync_target_rad)
        deviation_m = np.max(np.linalg.norm(self._ee_path(reach) - self._sync_ee_path, axis=1))
        # Within a fraction of the margin of the nominal sync path (which stays out of the zone grown
        # by the whole margin), it stays out of the zone too.
        if deviation_m > _REUSE_COMMIT_MARGIN_FRACTION * self.config.commit_margin_m and first_zone_entry_s(
                reach, self.kinematics, self.config.zone, self.config.commit_margin_m, step_s=_GATE_STEP_S) is not None:
            if not (guard_clear or self.config.anticipation):
                return
            self._start_gated_reach(out, now_s, reach, self._commit_time(reach), self._waiting_time(reach),
                                    self._gate_time(reach), guard_clear, resumed)
            return
        self._gated = False
        self._phase = "direct"
        self._commit_s = self._gate_s = self._wait_s = reach.duration_s
        self._committed = False
        if not resumed:
            self._emit(out, "reach_start", now_s)
        self._send(out, ScaledPlan(reach), now_s, "reach", "reaching")  # to the target, no stop point
        self._reach_started_s = float(now_s)       # from rest: sent_at may move its start

    def _start_gated_reach(self, out: ControllerOutput, now_s: float, reach: JointPlan, commit: float, wait: float,
                           gate: float, guard_clear: bool, resumed: bool = False) -> None:
        """Start ``reach`` under the zone guard: uncommitted, ending at rest at its gate (or at the
        waiting point while the guard is not clear) until its entry is committed."""
        self._gated = True
        self._phase = "direct"
        self._commit_s = commit
        self._gate_s = gate
        self._wait_s = min(wait, commit, gate)
        self._committed = False
        if not resumed:
            self._emit(out, "reach_start", now_s)
        self._send(out, ScaledPlan(reach), now_s, "reach", "reaching")
        self._reach_started_s = float(now_s)       # from rest: sent_at may move its start
        # Uncommitted, the trajectory ends at rest at the gate (the waiting point while anticipating):
        # should the controller fall silent, the arm stops outside the zone.
        self._stop_at_tau = gate if guard_clear else self._wait_s
        self._resend(out, now_s, self._speed_cap)

    # ------------------------------------------------------------------ separation monitoring
    def _monitor_separation(self, out: ControllerOutput, now_s: float, inputs: ControllerInputs,
                            q_meas: np.ndarray | None) -> None:
        """SSM on the running move: scale its speed on its path so the separation keeps S_p."""
        cfg = self.config
        fit = None
        if cfg.ssm_hand_motion == "fit" and inputs.perception_stamp_s is not None:
            fit = self._hand_fit.estimate(float(inputs.perception_stamp_s))
        hand = self.monitor.hand_estimate(now_s, inputs.partner_hand_m, inputs.partner_velocity_mps,
                                          inputs.perception_stamp_s, self._last_seen, cfg.zone, fit=fit)
        q_cmd, qd_cmd, _ = self.commanded_state(now_s)
        q = q_meas if q_meas is not None else q_cmd
        out.separation = self.last_separation = self.monitor.evaluate(q, qd_cmd, hand)
        plan = self._plan
        if plan is None or self.state in ("estop", "home", "holding", "acting"):
            self._set_ssm_mode(out, now_s, "free", 1.0)
            return
        t_local = now_s - self._plan_start_s
        tau = plan.tau_at(t_local)
        if tau >= plan.path.duration_s - 1e-9:
            self._set_ssm_mode(out, now_s, "free", 1.0)
            return
        # The separation were the arm moving along its path at full speed, from where it is now, at
        # the faster of its speeds now and a little farther on (a reach accelerates: the check must
        # hold until the next command can take effect).
        _, qd_now, _ = plan.path.state_at(tau)
        _, qd_ahead, _ = plan.path.state_at(min(tau + _SSM_LOOKAHEAD_S, plan.path.duration_s))
        qd_path = qd_ahead if np.linalg.norm(qd_ahead) > np.linalg.norm(qd_now) else qd_now
        sep_full = self.monitor.evaluate(q, qd_path, hand)
        cap = self._speed_cap
        allowed = self.monitor.allowed_scale(sep_full, self._ssm_scale, next_check_s=_SSM_NEXT_CHECK_S)
        allowed = min(allowed, cap)
        if allowed > self._cruise_sigma + 1e-9:
            # Speed up only once a higher speed has been allowed for _SSM_RAISE_AFTER_S: a noisy hand
            # velocity would otherwise make the arm stop and go tick by tick.
            if self._raise_since_s is None:
                self._raise_since_s = now_s
            if now_s - self._raise_since_s < _SSM_RAISE_AFTER_S - 1e-9:
                allowed = self._cruise_sigma
        else:
            self._raise_since_s = None
        if abs(allowed - self._cruise_sigma) > 1e-9:
            self._raise_since_s = None
            keep = allowed < self._cruise_sigma and (
                plan.max_sigma_after(t_local) <= allowed + 1e-9
                or (plan.braking_to_stop(t_local) and plan.sigma_at(t_local) <= allowed + 1e-9))
            if keep or self._purpose == "settle":
                # Never faster than allowed from here, or braking to rest (at the waiting point or the
                # gate) and already no faster: keep the plan. A settling stop is never re-sent: it
                # started on receipt, not on this clock's timeline.
                self._cruise_sigma = allowed
            else:
                self._resend(out, now_s, allowed)
        # (The fallback's cap is not separation monitoring: below it, the arm is slowed for the person.)
        mode = "free" if allowed >= cap else ("stop" if allowed <= 0.0 else "scaled")
        if mode == "stop" and self._ssm_mode != "stop" and not self._hand_fresh(now_s, inputs):
            # Stopped for a hand that is not seen now: say that perception is the cause.
            seen = ("never seen" if hand.anywhere_in is not None
                    else f"last seen {hand.age_s:.2f} s ago, so it may be within {hand.radius_m:.2f} m of there")
            out.warnings.append(
                f"protective stop: no perception of the hand newer than ssm_max_hand_age_s "
                f"({cfg.ssm_max_hand_age_s:g} s); the hand is {seen}. Perception is late or missing "
                "(on a busy machine: it is not keeping up with the camera)")
        self._set_ssm_mode(out, now_s, mode, allowed)

    @property
    def fallback_reach(self) -> bool:
        """Whether the running reach is the liveness fallback's (capped at ``fallback_speed_scale``)."""
        return self._cautious and self.state == "reaching"

    @property
    def _speed_cap(self) -> float:
        """The running move's top path speed: ``fallback_speed_scale`` for a fallback's reach, else 1."""
        return self.config.fallback_speed_scale if self.fallback_reach else 1.0

    def _hand_fresh(self, now_s: float, inputs: ControllerInputs) -> bool:
        """Whether the newest perception detects the hand and is young enough to trust."""
        stamp, hand = inputs.perception_stamp_s, inputs.partner_hand_m
        if stamp is None or hand is None or now_s - stamp > self.config.ssm_max_hand_age_s:
            return False
        hand = np.asarray(hand, dtype=float)
        return hand.shape == (3,) and bool(np.all(np.isfinite(hand)))
    def _set_ssm_mode(self, out: ControllerOutput, now_s: float, mode: str, scale: float, emit: bool = True) -> None:
        if mode != self._ssm_mode and emit:
            self._emit(out, {"free": "ssm_resume", "scaled": "ssm_scaled", "stop": "ssm_stop"}[mode], now_s)
        if mode == "stop" and self._ssm_mode != "stop":
            self._ssm_stop_since_s = now_s
        elif mode != "stop":
            self._ssm_stop_since_s = None
        self._ssm_mode = mode
        self._ssm_scale = scale
        out.ssm_mode = mode
        out.speed_scale = scale

    # ------------------------------------------------------------------ internals
    def _stop_and_return(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None) -> None:
        """Leave the current motion for home: an abort (retreating) before the reach's commit
        time, a withdrawal from the zone otherwise."""
        aborting = self.state == "reaching" and not self._committed
        plan = self._home_plan_from(*self._start_state(now_s, q_meas), out=out)
        self._phase = "direct"
        if aborting:
            self._emit(out, "abort", now_s)
            self._send(out, ScaledPlan(plan), now_s, "retreat", "retreating")
        else:
            self._emit(out, "withdraw_start", now_s)
            self._send(out, ScaledPlan(plan), now_s, "withdraw", "withdrawing")

    def _settle(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None) -> None:
        """The arm is not following its commands: bring it to rest, then go home from there
        (:meth:`_home_from_rest`, once the way home keeps out of the zone or the zone is clear) --
        or, an uncommitted reach, take it up again from there (:meth:`_settling_in_reach`).

        A move planned from the measured state of an arm in motion is only right if it arrives at
        once: stamped with this tick, the arm's controller samples it at its receipt and jumps to
        where the plan is by then -- on a loaded machine 0.15 s into it, from a state the plan never
        expected. Each such jump left the arm further from its commands, the next move was planned
        from there, and the arm was whipped about (a fault campaign's contact). So the stop is one
        point reached from the arm's state on receipt (a zero stamp): rest at the measured joints
        carried on by half a braking distance, in at least :data:`_SETTLE_MIN_S`, braking at
        ``stop_acceleration_scale`` of the limits from the measured velocity. Where the arm really
        is when the stop arrives only moves that point, not the braking."""
        cfg = self.config
        # Only called on a tracking loss, so the arm is measured and not following: its measured
        # joints and velocity (at rest if unknown).
        q0, qd0, _ = self._start_state(now_s, q_meas)
        if self.state == "reaching" and not self._committed and self._reach_resumes < _MAX_REACH_RESUMES:
            state = "reaching"   # not given up yet: see _settling_in_reach
        elif self.state == "reaching" and not self._committed:
            self._emit(out, "abort", now_s)
            state = "retreating"
        elif self.state in ("reaching", "acting"):
            self._emit(out, "withdraw_start", now_s)
            state = "withdrawing"
        else:
            state = self.state
        self._phase = "direct"
        self._held_home_velocity_scale = cfg.velocity_scale
        self._send_rest_point(out, now_s, q0, qd0, "settle", state, min_duration_s=_SETTLE_MIN_S)

    def _settling_in_reach(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None,
                           inputs: ControllerInputs, stale: bool, may_reach: bool, guard_clear: bool) -> None:
        """A settling stop that interrupted an uncommitted reach (:meth:`_settle`). The turn is not
        given up while the arm comes to rest: the stop was the arm's (a move that reached it late, on
        a busy machine), not the person's, and going all the way home to start the reach again only
        meets the same stops on the way out (a fault campaign's session made no turn for 12 s so).
        At rest, the reach is taken up again from there when the policy still says "act", the zone
        guard would let a reach start from home and the EE rests outside the zone grown by
        ``commit_margin_m`` (short of where a reach's gate would stop it: a move the arm was not
        following -- a replayed one -- may have carried it further); otherwise it is aborted now,
        and the arm goes home from where it rests."""
        if self._plan_progress(now_s, q_meas) != "arrived":
            return
        cfg = self.config
        rest = q_meas if q_meas is not None else self._plan.goal_rad
        if may_reach and not cfg.zone.contains(self.kinematics.fk(rest), cfg.commit_margin_m):
            self._reach_resumes += 1
            self._cautious = inputs.decision_fallback
            out.warnings.append(f"taking the reach up again from where the arm came to rest "
                                f"({self._reach_resumes} of at most {_MAX_REACH_RESUMES} in a row)")
            self._start_reach(out, now_s, q_meas, guard_clear, resumed=True)
            return
        if stale:
            self._emit(out, "watchdog", now_s)
        self._emit(out, "abort", now_s)
        self.state = out.state = "retreating"
        self._home_from_rest(out, now_s, q_meas, guard_clear)

    def _send_rest_point(self, out: ControllerOutput, now_s: float, q0: np.ndarray, qd0: np.ndarray,
                         purpose: str, state: str, min_duration_s: float) -> None:
        """Send a stop as one point at rest, started on receipt (:meth:`_settle`): where the joints
        ``q0`` moving at ``qd0`` come to rest braking at ``stop_acceleration_scale`` of the limits,
        in at least ``min_duration_s``. A joint that would come to rest beyond its position limit
        rests at the limit instead, and the stop is made short enough that it does not overshoot
        it (harder than the limits allow, where nothing else can keep within them)."""
        cfg, lim = self.config, self.limits
        zero = np.zeros(7)
        T = float(max(min_duration_s, np.max(1.5 * np.abs(qd0) / (cfg.stop_acceleration_scale
                                                                   * lim.acceleration_rad_s2))))
        lower, upper = lim.lower_rad + 1e-3, lim.upper_rad - 1e-3
        natural = brake_stop_position(q0, qd0, zero, T)
        rest = np.clip(natural, lower, upper)
        clipped = np.abs(rest - natural) > 1e-9
        if clipped.any():
            # A cubic from velocity v to rest d away does not overshoot while d >= v T / 3.
            room = np.abs(rest - q0)[clipped]
            speed = np.maximum(np.abs(qd0[clipped]), 1e-9)
            T = float(max(0.05, min(T, np.min(3.0 * room / speed))))
            rest = np.clip(brake_stop_position(q0, qd0, zero, T), lower, upper)
        plan = ScaledPlan(JointPlan([(quintic_coefficients(q0, qd0, zero, rest, zero, zero, T), T)]))
        point = TrajectoryPoint(T, tuple(rest.tolist()), (0.0,) * 7, (0.0,) * 7)
        self._send(out, plan, now_s, purpose, state, on_receipt=True, points=[point])

    def _direct_home_plan(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray,
                          velocity_scale: float | None = None) -> JointPlan:
        """The move home from the state ``(q, qd, qdd)``: braking on the way when it is moving.
        ``velocity_scale``: the slow return of :meth:`_go_home` (None: a turn's move home)."""
        cfg = self.config
        if velocity_scale is not None:
            return plan_to_rest(q, qd, qdd, self.home_rad, self.limits, velocity_scale,
                                min_duration_s=cfg.min_move_duration_s)
        if np.allclose(qd, 0.0, atol=1e-9) and np.allclose(qdd, 0.0, atol=1e-9):
            return plan_minimum_jerk(q, self.home_rad, self.limits, cfg.velocity_scale, cfg.min_move_duration_s)
        return plan_to_rest(q, qd, qdd, self.home_rad, self.limits, cfg.velocity_scale,
                            min_duration_s=0.0, acceleration_scale=cfg.stop_acceleration_scale)

    def _home_plan_from(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray,
                        out: ControllerOutput | None = None, velocity_scale: float | None = None) -> JointPlan:
        """A move home from ``(q, qd, qdd)`` that does not cross the zone: the direct one
        (:meth:`_direct_home_plan`) when its EE path keeps out of the zone, or leaves it and never
        comes back. From a fast or unusual state -- an arm that is not following its commands, a
        posture left by moves that arrived out of order -- that single quintic can curve (back) into
        the zone; then the arm brakes on the spot (``stop_acceleration_scale``) and goes home from
        rest, or, when that path crosses the zone too, stays braked at rest outside it until the zone
        is clear (:meth:`_home_from_rest`). When nothing keeps out (the arm moves too fast toward the
        zone to stop short of it), the plan that is inside for less time. ``out``: where to say so;
        ``velocity_scale``: as for :meth:`_direct_home_plan`."""
        cfg, zone = self.config, self.config.zone
        direct = self._direct_home_plan(q, qd, qdd, velocity_scale)
        inside_s = zone_time_after_leaving_s(direct, self.kinematics, zone)
        if inside_s == 0.0:
            return direct
        brake = plan_brake(q, qd, qdd, self.limits, deceleration_scale=cfg.stop_acceleration_scale)
        if brake is None:
            # No brake within the arm's limits from this state: keep the direct move.
            if out is not None:
                out.warnings.append(f"the direct move home from this state would cross the zone ({inside_s:.2f} s "
                                    "inside it), and no brake from it stays within the arm's limits: keeping it")
            return direct
        braked = brake.then(plan_minimum_jerk(brake.goal_rad, self.home_rad, self.limits,
                                              velocity_scale or cfg.velocity_scale, cfg.min_move_duration_s))
        braked_inside_s = zone_time_after_leaving_s(braked, self.kinematics, zone)
        if braked_inside_s == 0.0:
            chosen, how = braked, "braking to rest first, then going home from there"
        elif (zone_time_after_leaving_s(brake, self.kinematics, zone) == 0.0
              and not zone.contains(self.kinematics.fk(brake.goal_rad))):
            chosen, how = brake, "braking to rest outside the zone and going home once it is clear"
            self._held_home_velocity_scale = velocity_scale or cfg.velocity_scale
        elif braked_inside_s < inside_s:
            chosen, how = braked, (f"braking first instead (no move from this state keeps out: "
                                   f"{braked_inside_s:.2f} s inside)")
        else:
            chosen, how = direct, "keeping it (no move from this state keeps out of the zone)"
        if out is not None:
            out.warnings.append(f"the direct move home from this state would cross the zone ({inside_s:.2f} s inside "
                                f"it): {how}")
        return chosen

    def _at_home(self, q: np.ndarray) -> bool:
        return bool(np.max(np.abs(np.asarray(q, dtype=float) - self.home_rad)) <= self.config.home_tolerance_rad)

    def _home_from_rest(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None,
                        guard_clear: bool) -> None:
        """At rest short of home after a braked move home (:meth:`_home_plan_from`): go home once
        the way home keeps out of the zone, or the zone is clear on fresh perception (separation
        monitoring then watches the move as any other); until then hold where the arm is."""
        cfg = self.config
        start = q_meas if q_meas is not None else self._plan.goal_rad
        scale = self._held_home_velocity_scale
        plan = plan_minimum_jerk(start, self.home_rad, self.limits, scale, cfg.min_move_duration_s)
        if guard_clear or zone_time_after_leaving_s(plan, self.kinematics, cfg.zone) == 0.0:
            self._send(out, ScaledPlan(plan), now_s, "home", self.state, on_receipt=True)

    def _go_home(self, out: ControllerOutput, now_s: float, q_meas: np.ndarray | None, velocity_scale: float) -> None:
        """Slow return home from wherever the arm is (after an e-stop release, at start-up)."""
        q, qd, qdd = self._start_state(now_s, q_meas)
        if np.max(np.abs(q - self.home_rad)) <= 1e-3 and np.allclose(qd, 0.0) and np.allclose(qdd, 0.0):
            self._plan = None
            self._hold_rad = self.home_rad.copy()
            self._arrive_home(out, now_s)
            return
        plan = self._home_plan_from(q, qd, qdd, out, velocity_scale)
        self._emit(out, "withdraw_start", now_s)
        self._send(out, ScaledPlan(plan), now_s, "home", "withdrawing")

    def _arrive_home(self, out: ControllerOutput, now_s: float) -> None:
        self._reach_resumes = 0
        self.state = out.state = "home"
        self._cautious = False
        self._committed = False
        self._phase = "direct"
        self._emit(out, "home", now_s)

    def _start_state(self, now_s: float, q_meas: np.ndarray | None):
        """Start of a new plan: measured positions when known, commanded velocity/acceleration --
        or, when the arm is not following its commands, its measured velocity (at rest if unknown)."""
        q_cmd, qd, qdd = self.commanded_state(now_s)
        if self.not_following and q_meas is not None:
            qd_meas = np.zeros(7) if self._meas_velocity is None else self._meas_velocity.copy()
            return q_meas, qd_meas, np.zeros(7)
        return (q_meas if q_meas is not None else q_cmd), qd, qdd

    def _plan_progress(self, now_s: float, q_meas: np.ndarray | None) -> str:
        """``running`` until the plan's time is up (always, for a stop on the path); then
        ``arrived`` once the measured joints are within ``settle_tolerance_rad`` of its goal (at once
        without measurements), or ``stuck`` when they still are not ``settle_timeout_s`` later."""
        if self._plan is None:
            return "arrived"
        if self._plan.stops_on_path:
            return "running"
        over_s = now_s - self._plan_start_s - self._plan.duration_s
        if self._purpose == "settle":
            # Done once the arm is measured at rest (or, should it never be, settle_timeout_s later).
            if over_s < _SETTLE_ALLOWANCE_S:
                return "running"
            at_rest = self._meas_prev is None or self._meas_prev[0] - self._last_motion_s >= _AT_REST_FOR_S
            return "arrived" if at_rest or over_s >= _SETTLE_ALLOWANCE_S + self.config.settle_timeout_s else "running"
        if over_s < 0.0:
            return "running"
        if q_meas is None or np.max(np.abs(q_meas - self._plan.goal_rad)) <= self.config.settle_tolerance_rad:
            return "arrived"
        return "stuck" if over_s >= self.config.settle_timeout_s else "running"

    def _stuck_warning(self, q_meas: np.ndarray, goal: str) -> str:
        error = float(np.max(np.abs(q_meas - self._plan.goal_rad)))
        return (f"arm did not reach the {goal}: measured joints {error:.3f} rad from it "
                f"{self.config.settle_timeout_s:.1f} s after the trajectory ended")

    def _send(self, out: ControllerOutput, plan: ScaledPlan, now_s: float, purpose: str, state: str,
              on_receipt: bool = False, points: list[TrajectoryPoint] | None = None) -> None:
        """Send ``plan`` (the new running move) as its sampled points, or as ``points`` when given.
        ``on_receipt``: started when the arm receives it (a zero stamp). A move from rest sent so has
        its timeline follow the arm (:meth:`_sync_start`); a stop given as its own rest point
        (:meth:`_send_rest_point`) starts from a moving arm and has no start to wait for."""
        self._plan = plan
        self._plan_start_s = now_s
        self._hold_rad = plan.goal_rad
        self._purpose = purpose
        self._cruise_sigma = 1.0
        self._stop_at_tau = None
        self._start_pending = on_receipt and points is None
        if self._start_pending:
            # How long the plan takes to leave its start by _STARTED_RAD (what _sync_start allows for).
            t = np.arange(0.0, min(plan.duration_s, 0.5), 0.005)
            away = np.max(np.abs(plan.state_at(t)[0] - plan.start_rad), axis=-1) > _STARTED_RAD
            self._start_lead_s = float(t[np.argmax(away)]) if away.any() else 0.0
        self._sent_s = now_s
        self.state = out.state = state
        if points is None:
            points = _first_points_from(plan.points(self.config.point_rate_hz), _FIRST_POINT_S)
        out.trajectory = TrajectoryCommand(self.config.joint_names, points, purpose, plan, on_receipt=on_receipt)

    def _sync_start(self, q: np.ndarray | None, stamp_s: float | None) -> None:
        """A move from rest sent on receipt starts when the arm gets it, which the controller does not
        see: as long as the measured joints are still at its start, move its timeline on to their
        stamp (less the time the plan takes to leave the start by :data:`_STARTED_RAD`)."""
        if not self._start_pending or q is None or stamp_s is None or self._plan is None:
            return
        plan = self._plan
        if np.max(np.abs(q - plan.start_rad)) > _STARTED_RAD or stamp_s - self._sent_s > _START_SYNC_FOR_S:
            self._start_pending = False
            return
        self._plan_start_s = max(self._plan_start_s, float(stamp_s) - self._start_lead_s)

    @staticmethod
    def _emit(out: ControllerOutput, name: str, now_s: float) -> None:
        out.events.append(ControllerEvent(name, float(now_s)))


def _first_points_from(points: list[TrajectoryPoint], lead_s: float) -> list[TrajectoryPoint]:
    """The points from ``lead_s`` after the start on. A joint trajectory controller interpolates
    from the arm's state when the message arrives to the first point: a first point one period
    (20 ms) away leaves a few ms after a transport delay, and the catch-up in them would exceed
    the arm's acceleration limits (a real arm's controller aborts such a motion). A move shorter
    than ``lead_s`` holds its goal from ``lead_s`` on: a trajectory stamped now must not end
    before it arrives. Nor shortly after: a move that would end sooner than :data:`_MIN_TRAJECTORY_S`
    after its stamp (a protective stop's ramp, a short brake) holds its goal until then, so one
    delayed by less than that on a busy machine is still carried out -- the arm's controller
    rejects a trajectory that ends before it arrives, and the arm would go on with the move it
    was meant to stop."""
    kept = [p for p in points if p.time_from_start_s >= lead_s - 1e-9]
    last = points[-1]
    zero = tuple(0.0 for _ in last.positions)
    if not kept:
        kept = [TrajectoryPoint(lead_s, last.positions, zero, zero)]
    if kept[-1].time_from_start_s < _MIN_TRAJECTORY_S - 1e-9:
        kept.append(TrajectoryPoint(_MIN_TRAJECTORY_S, kept[-1].positions, zero, zero))
    return kept


#: A measured joint this far (rad) beyond the arm's position limits is not a measurement (the
#: joints' hard stops are within a few hundredths of a radian of their limits): the joint state is
#: ignored as if none had come, and the controller says so.
IMPLAUSIBLE_JOINT_MARGIN_RAD = 0.2


def _measured(joint_positions, limits: JointLimits | None = None) -> np.ndarray | None:
    """The measured joints, or None when absent, malformed, non-finite or (with ``limits``) beyond
    the arm's position limits by more than :data:`IMPLAUSIBLE_JOINT_MARGIN_RAD`."""
    if joint_positions is None:
        return None
    q = np.asarray(joint_positions, dtype=float)
    if q.shape != (7,) or not np.all(np.isfinite(q)):
        return None
    if limits is not None and not limits.contains(q, IMPLAUSIBLE_JOINT_MARGIN_RAD):
        return None
    return q

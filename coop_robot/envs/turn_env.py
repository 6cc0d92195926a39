"""Fast headless turn-taking environment: the ROS graph's cores in one loop, no ROS, no rendering.

:class:`TurnTakingEnv` runs the same code as the simulation graph -- the stochastic
:class:`~coop_robot.partner.model.PartnerModel`, the :class:`~coop_robot.control.controller.ArmController`
with the :class:`~coop_robot.sim.trajectory.JointTrajectoryExecutor` it commands, and the
:class:`~coop_robot.timing.tracker.TurnTracker` / ``TurnSegmenter`` that scores turns -- with the
camera and hand tracker replaced by the fitted :class:`~coop_robot.envs.perception_model.PerceptionModel`.

Clocks (all exact, on a 1200 Hz base tick): the partner and the robot's ground truth step at
240 Hz (the sim's physics rate; zone and contact events are detected at that resolution, like
``InteractionSim``), the controller ticks at 100 Hz, the camera/perception at 30 Hz, the policy at
50 Hz (:meth:`TurnTakingEnv.step` advances one policy tick, 20 ms). A decision given to ``step``
reaches the controller at its next tick, as over the graph's topics.

Robot, two fidelities:

* ``physics=False`` (default, fast): the arm follows the commanded trajectory exactly (the sim's
  joint motors track a 1 s reach within a few millimetres); the EE comes from
  :class:`~coop_robot.control.kinematics.PandaKinematics`; robot-partner contact is a geometric
  check of capsules (:func:`robot_capsules`, :class:`PersonGeometry`): robot links as capsules
  between successive joint origins (radius 0.075 m), the hand as capsules of radius 0.045 m
  along and across the gripper; the person's upper arm, forearm and glove as ``SimWorld`` builds
  them (same analytic arm IK). Contact = any robot capsule closer than the sum of radii to any
  person capsule. Against PyBullet's contacts on 1200 random hand placements around the reaching
  arm it agrees on ~94 % and finds ~89 % of PyBullet's contacts (test_turn_env checks >= 90 % /
  >= 80 %); use ``physics=True`` to score contacts exactly.
* ``physics=True``: :class:`~coop_robot.sim.core.InteractionSim` (PyBullet stepping at 240 Hz,
  position-controlled joint motors, PyBullet contacts), no rendering.

**The sync task** (``task="sync"``, issue 14, docs/science_sync.md): the same loop, with the
controller's ``task`` set to ``sync`` (its reach goes to ``sync_target_m``, outside the zone, under
the same separation monitoring), the :class:`~coop_robot.partner.sync.SyncPartner` in place of the
turn-taking partner, and :class:`~coop_robot.timing.sync.SyncTrials` cueing and scoring the trials
(arrival offsets, success within ``window_s``, safety per trial). :meth:`TurnTakingEnv.run` then
counts trials and returns the sync summary. Turn-taking sessions run exactly the code they ran before.

Occlusion for the perception model uses the same capsules: a frame is *occluded* when a robot
capsule comes within its radius plus the glove radius of the camera's line of sight to the glove.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from coop_robot.control.controller import (
    CONTROLLER_PARAMETER_NAMES,
    DECISIONS,
    ArmController,
    ControllerConfig,
    ControllerInputs,
    controller_config_from_params,
    controller_parameter,
)
from coop_robot.control.planning import JointLimits
from coop_robot.control.ssm import ROBOT_LINK_RADIUS_M, GroundTruthMonitor, Separation, robot_capsules
from coop_robot.envs.perception_model import PerceivedFrame, PerceptionModel
from coop_robot.geometry import Zone, read_world_params, world_geometry
from coop_robot.partner.model import PartnerModel
from coop_robot.partner.profile import PartnerProfile, load_profile
from coop_robot.partner.sync import SyncPartner
from coop_robot.policy.base import Decision, Observation, Policy
from coop_robot.sim.trajectory import JointTrajectoryExecutor

# The simulated person's geometry exactly as SimWorld builds it (private constants of that module).
from coop_robot.sim.world import (
    _FOREARM_LENGTH_M,
    _FOREARM_RADIUS_M,
    _HIP_FROM_SHOULDER_M,
    _UPPER_ARM_RADIUS_M,
    WorldConfig,
    person_pose,
)
from coop_robot.tasks import DEFAULT_TASK, check_task
from coop_robot.timing.feed import CONTROLLER_NAMES
from coop_robot.timing.sync import (
    SyncTrials,
    advance_sync_trials,
    check_window_s,
    format_sync_table,
    reach_arrival_after_s,
    summarize_sync,
    sync_task_config,
)
from coop_robot.timing.tracker import PartnerTurnEdges, TurnTracker

# Base clock: every rate below divides 1200 Hz exactly.
BASE_RATE_HZ = 1200
PHYSICS_RATE_HZ = 240
CONTROLLER_RATE_HZ = 100
POLICY_RATE_HZ = 50
_PHYSICS_EVERY = BASE_RATE_HZ // PHYSICS_RATE_HZ
_CONTROLLER_EVERY = BASE_RATE_HZ // CONTROLLER_RATE_HZ
_POLICY_EVERY = BASE_RATE_HZ // POLICY_RATE_HZ
POLICY_DT_S = 1.0 / POLICY_RATE_HZ

ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))


# --------------------------------------------------------------------------- geometry
def segment_distances(p1: np.ndarray, q1: np.ndarray, p2: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Closest distances between every segment ``p1[i]-q1[i]`` (N, 3) and ``p2[j]-q2[j]`` (M, 3): (N, M)."""
    d1 = (q1 - p1)[:, None, :]
    d2 = (q2 - p2)[None, :, :]
    r = p1[:, None, :] - p2[None, :, :]
    a = np.sum(d1 * d1, axis=-1)
    e = np.sum(d2 * d2, axis=-1)
    f = np.sum(d2 * r, axis=-1)
    c = np.sum(d1 * r, axis=-1)
    b = np.sum(d1 * d2, axis=-1)
    eps = 1e-12
    denom = a * e - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(denom > eps, np.clip((b * f - c * e) / np.where(denom > eps, denom, 1.0), 0.0, 1.0), 0.0)
        t = np.where(e > eps, (b * s + f) / np.where(e > eps, e, 1.0), 0.0)
        # t outside [0, 1]: clamp it and recompute s for the clamped t.
        t_c = np.clip(t, 0.0, 1.0)
        s = np.where(t != t_c, np.clip(np.where(a > eps, (b * t_c - c) / np.where(a > eps, a, 1.0), 0.0), 0.0, 1.0), s)
    closest = (p1[:, None, :] + d1 * s[..., None]) - (p2[None, :, :] + d2 * t_c[..., None])
    return np.linalg.norm(closest, axis=-1)


class PersonGeometry:
    """The simulated person's arm capsules for a glove position (same analytic IK as ``SimWorld``)."""

    def __init__(self, config: WorldConfig) -> None:
        self.shoulder_m = np.asarray(config.partner_shoulder_m, dtype=float)
        self.hip_m = self.shoulder_m + np.asarray(_HIP_FROM_SHOULDER_M)
        self.outward = np.array([0.0, 1.0 if self.shoulder_m[1] >= self.hip_m[1] else -1.0, 0.0])
        self.glove_radius_m = float(config.glove_radius_m)
        self.forearm_len_m = _FOREARM_LENGTH_M - self.glove_radius_m - 0.5 * _FOREARM_RADIUS_M

    def capsules(self, hand_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pose = person_pose(hand_m, self.shoulder_m, self.hip_m, (-1.0, 0.0, 0.0), self.outward)
        fore_dir = pose.wrist_m - pose.elbow_m
        fore_dir = fore_dir / max(float(np.linalg.norm(fore_dir)), 1e-9)
        starts = np.array([pose.shoulder_m, pose.elbow_m, pose.hand_m])
        ends = np.array([pose.elbow_m, pose.elbow_m + self.forearm_len_m * fore_dir, pose.hand_m])
        radii = np.array([_UPPER_ARM_RADIUS_M, _FOREARM_RADIUS_M, self.glove_radius_m])
        return starts, ends, radii


def robot_partner_contact(robot: tuple, person: tuple) -> bool:
    """True when any robot capsule overlaps any person capsule."""
    d = segment_distances(robot[0], robot[1], person[0], person[1])
    return bool(np.any(d <= robot[2][:, None] + person[2][None, :]))


def robot_occludes_hand(joint_frames: np.ndarray, hand_m, camera_m, glove_radius_m: float = 0.045) -> bool:
    """True when a robot capsule comes within its radius plus the glove radius of the camera's
    line of sight to the glove centre (part or all of the glove hidden from the camera)."""
    hand = np.asarray(hand_m, dtype=float)
    cam = np.asarray(camera_m, dtype=float)
    starts, ends, radii = robot_capsules(joint_frames)
    d = segment_distances(starts, ends, cam[None, :], hand[None, :])[:, 0]
    return bool(np.any(d <= radii + glove_radius_m))


# --------------------------------------------------------------------------- configuration
def _ros_parameters(name: str, key: str) -> dict:
    from coop_robot.paths import config_path

    with open(config_path(name), encoding="utf-8") as f:
        return dict(yaml.safe_load(f)[key]["ros__parameters"])


def controller_config_from_files(zone: Zone, overrides: Mapping[str, Any] | None = None) -> ControllerConfig:
    """The controller node's configuration: world.yaml + controller.yaml (+ ``overrides``), layered as
    the launch layers the node's parameter files, and read through the node's own parameter table
    (:data:`~coop_robot.control.controller.CONTROLLER_PARAMETERS`).

    ``overrides`` use the node's parameter names. Raises ValueError for an unknown override name, a
    bad value, or a node-only setting this environment cannot honour (``rate_hz`` other than its
    controller tick).
    """
    unknown = sorted(set(overrides or {}) - set(CONTROLLER_PARAMETER_NAMES))
    if unknown:
        raise ValueError(f"unknown controller parameter(s) {unknown}; expected some of "
                         f"{sorted(CONTROLLER_PARAMETER_NAMES)}")
    values: dict[str, Any] = world_geometry().as_params()
    # The separation-monitoring terms are shared by every node via world.yaml ("/**").
    values.update({k: v for k, v in read_world_params().items() if k.startswith("ssm_")})
    values.update(_ros_parameters("controller.yaml", "controller"))
    values.update(overrides or {})
    rate_hz = controller_parameter("rate_hz").check(values.get("rate_hz", CONTROLLER_RATE_HZ))
    if rate_hz != CONTROLLER_RATE_HZ:
        raise ValueError(f"controller rate_hz = {rate_hz} Hz: the fast environment ticks the controller at "
                         f"{CONTROLLER_RATE_HZ} Hz; expected rate_hz {CONTROLLER_RATE_HZ}")
    return controller_config_from_params(values, zone)


def _world_config() -> WorldConfig:
    from coop_robot.sim.core import world_config_from_params

    # Geometry: config/world.yaml (coop_robot.geometry.world_geometry), like every node's default.
    return world_config_from_params(physics_rate_hz=PHYSICS_RATE_HZ)


# --------------------------------------------------------------------------- environment
class TurnTakingEnv:
    """Headless turn-taking session; see the module docstring.

    Args:
        partner: profile name (``config/partners/<name>.yaml``), YAML path, or a loaded profile.
        seed: seeds the partner (``np.random.default_rng(seed)``, as the sim node does) and the
            perception model (an independent stream derived from the seed).
        physics: PyBullet stepping (``True``) or the kinematic robot (``False``, fast).
        perception: a :class:`PerceptionModel`; ``None`` = the fitted one
            (``config/models/perception_model.yaml``); :meth:`PerceptionModel.ideal` for perfect perception.
        controller_params: overrides of ``config/controller.yaml`` values (e.g. ``velocity_scale``).
        task: ``turn_taking`` (default) or ``sync`` (module docstring).
        window_s: the sync task's window (s); None: ``sync_window_s`` of config/sync.yaml. Sync only.
    """

    def __init__(self, partner: str | Path | PartnerProfile = "typical", seed: int = 0, physics: bool = False,
                 perception: PerceptionModel | None = None, controller_params: Mapping[str, Any] | None = None,
                 task: str = DEFAULT_TASK, window_s: float | None = None) -> None:
        self.task = check_task(task)
        self.sync_config = None
        if self.task == "sync":
            if "task" in (controller_params or {}) and controller_params["task"] != "sync":
                raise ValueError(f"controller parameter task={controller_params['task']!r} contradicts task='sync'")
            controller_params = {**(controller_params or {}), "task": "sync"}
            overrides = {} if window_s is None else {"sync_window_s": check_window_s(window_s)}
            self.sync_config = sync_task_config(overrides)
        elif window_s is not None:
            raise ValueError(f"window_s applies to the sync task only; got window_s={window_s!r} with task={task!r}")
        self.profile = partner if isinstance(partner, PartnerProfile) else load_profile(partner)
        self.partner_name = self.profile.name if isinstance(partner, PartnerProfile) else str(partner)
        self.world_config = _world_config()
        self.zone = self.world_config.zone
        self._zone_lo = tuple(float(v) for v in self.zone.min_m)
        self._zone_hi = tuple(float(v) for v in self.zone.max_m)
        self.perception = perception if perception is not None else PerceptionModel.fitted()
        if not isinstance(self.perception, PerceptionModel):
            raise TypeError(f"perception must be a PerceptionModel or None, got {type(self.perception).__name__}")
        self.controller = ArmController(controller_config_from_files(self.zone, controller_params))
        if tuple(self.controller.config.joint_names) != ARM_JOINTS:
            raise ValueError(f"the environment drives {list(ARM_JOINTS)}, got joint_names "
                             f"{list(self.controller.config.joint_names)}")
        self.kinematics = self.controller.kinematics
        self.physics = bool(physics)
        self._robot_arrival_after_s: float | None = None
        if self.sync_config is not None:
            self._robot_arrival_after_s = self._arrival_after_s(self.controller.sync_reach,
                                                                self.controller.config.sync_target_m)
        self._person = PersonGeometry(self.world_config)
        self._camera_m = np.asarray(self.world_config.camera_pose.position_m, dtype=float)
        fr = self.perception.params.frame_rate_hz
        if abs(BASE_RATE_HZ / fr - round(BASE_RATE_HZ / fr)) > 1e-9:
            raise ValueError(f"perception frame_rate_hz must divide {BASE_RATE_HZ} Hz, got {fr}")
        self._camera_every = int(round(BASE_RATE_HZ / fr))
        self._world = None
        if self.physics:
            from coop_robot.sim.world import SimWorld

            self._world = SimWorld(self.world_config)
        self.seed = self._check_seed(seed)
        self.reset(seed)

    @staticmethod
    def _check_seed(seed) -> int:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        return int(seed)

    # ------------------------------------------------------------------ session
    def reset(self, seed: int | None = None) -> Observation:
        """Start a new session at t = 0 (robot home, partner at rest); return the first observation."""
        if seed is not None:
            self.seed = self._check_seed(seed)
        cfg = self.world_config
        self.sync_trials: SyncTrials | None = None
        if self.sync_config is not None:
            self.partner = SyncPartner(self.profile, np.random.default_rng(self.seed),
                                       np.asarray(cfg.partner_rest_m, dtype=float),
                                       self.sync_config.partner_target_m, self.zone, self.sync_config.arrival_radius_m)
            self.sync_trials = SyncTrials(self.sync_config, self.controller.config.sync_target_m)
        else:
            self.partner = PartnerModel(self.profile, np.random.default_rng(self.seed),
                                        np.asarray(cfg.partner_rest_m, dtype=float),
                                        np.asarray(cfg.partner_task_objects_m, dtype=float), self.zone)
        self.perception.reset(np.random.default_rng([self.seed, 0x5EE]))
        self.controller.reset()
        home = self.controller.home_rad
        self.executor = JointTrajectoryExecutor(ARM_JOINTS, home, limits=JointLimits.panda())
        self._sim = None
        if self.physics:
            from coop_robot.sim.core import InteractionSim

            self._world.reset_arm(home)
            self._world.set_partner_hand(cfg.partner_rest_m)
            self._sim = InteractionSim(self._world, self.partner, self.executor)
        self.tracker = TurnTracker(scoring="ground_truth", reorder_window_s=0.05)
        self._tick = 0
        self._hand_true = np.asarray(cfg.partner_rest_m, dtype=float)
        self._frames_q = home.copy()
        self._frames = self.kinematics.joint_frames(home)
        self._robot_dirty = False
        self._path = None
        self._path_first_step = 0
        self._caps_frames: np.ndarray | None = None
        self._caps: tuple | None = None
        self._front_x = math.inf
        self._person_key: tuple | None = None
        self._person_cache: tuple | None = None
        self._ee = self._frames[7, :3, 3].copy()
        self._ee_prev_tick = self._ee.copy()
        self._ee_velocity = np.zeros(3)
        self._partner_in = self._inside(self._hand_true)
        self._robot_in = self._inside(self._ee)
        self._contact = False
        self._pending: deque[PerceivedFrame] = deque()
        self._latest: PerceivedFrame | None = None
        self._decision: str | None = None
        self._decision_fallback = False
        self._planned_exit_s: float | None = None
        self._step_events: list[tuple[str, float]] = []
        self._records_done = 0
        self._truth_monitor = GroundTruthMonitor(self.controller.monitor, self._person.glove_radius_m,
                                                 self.controller.config.ssm_waiting_perception_age_s)
        self._partner_turn = PartnerTurnEdges()
        self.last_separation: Separation | None = None
        self._ssm_samples: list[tuple[float, Separation]] = []
        return self._observation()

    @property
    def t_s(self) -> float:
        """Session time (s)."""
        return self._tick / BASE_RATE_HZ

    @property
    def _physics_t_s(self) -> float:
        """Time (s) of the last physics step: what the arm and hand positions are as of."""
        return (self._tick // _PHYSICS_EVERY) / PHYSICS_RATE_HZ

    def _inside(self, p) -> bool:
        lo, hi = self._zone_lo, self._zone_hi
        return (lo[0] <= p[0] <= hi[0]) and (lo[1] <= p[1] <= hi[1]) and (lo[2] <= p[2] <= hi[2])

    # ------------------------------------------------------------------ stepping
    def step(self, decision: str, fallback: bool = False) -> tuple[Observation, dict]:
        """Apply a policy decision ("act" / "wait" / "yield") and advance one policy tick (20 ms).
        ``fallback``: the "act" is the liveness fallback's (:attr:`Decision.fallback`; the controller
        then reaches at ``fallback_speed_scale``), as ``act fallback`` on ``/policy/decision``."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        self._decision = decision
        self._decision_fallback = bool(fallback) and decision == "act"
        self._step_events = []
        for _ in range(_POLICY_EVERY):
            self._tick += 1
            k = self._tick
            if k % _PHYSICS_EVERY == 0:
                self._physics_step()
            if k % self._camera_every == 0:
                self._camera_frame()
            if self._pending and self._pending[0].publish_s <= k / BASE_RATE_HZ + 1e-12:
                self._deliver()
            if k % _CONTROLLER_EVERY == 0:
                self._controller_tick()
        now = self.t_s
        self._ee_velocity = (self._ee - self._ee_prev_tick) / POLICY_DT_S
        self._ee_prev_tick = self._ee.copy()
        _, new_records = self.tracker.release(now)
        plan = self.partner.planned_turn_exit_s if self.sync_trials is None else None
        if plan is not None:
            self._planned_exit_s = float(plan)  # the graph's oracle keeps the last published plan
        obs = self._observation()
        latest = self._latest
        samples, self._ssm_samples = self._ssm_samples, []
        info = {
            "t_s": now,
            "robot_ee_m": self._ee.copy(),
            "robot_ee_velocity_mps": self._ee_velocity.copy(),
            "robot_state": self.controller.state,
            "partner_hand_m": obs.partner_hand_m.copy(),          # perceived (NaN = not detected)
            "partner_velocity_mps": obs.partner_velocity_mps.copy(),
            "partner_in_zone": obs.partner_in_zone,
            "perception_stamp_s": latest.stamp_s if latest is not None else math.nan,
            "partner_hand_true_m": self._hand_true.copy(),
            "partner_phase": self.partner.phase,
            "partner_in_zone_true": self._partner_in,
            "robot_in_zone_true": self._robot_in,
            "contact": self._contact,
            # Ground-truth separation monitoring at each controller tick of this step: (t, Separation).
            "separation": samples,
            "ssm_mode": self.controller.ssm_mode,
            "events": list(self._step_events),
            "turns": [r.as_dict() for r in new_records],
        }
        return obs, info

    def _physics_step(self) -> None:
        if self.sync_trials is not None:
            self.partner.see_robot(self._physics_t_s, self._ee)  # the arm as of the last step
        self._physics_step_agents()
        if self.sync_trials is not None:
            self._sync_step()

    def _sync_step(self) -> None:
        """Cue and score the sync trials on this physics step's ground truth."""
        advance_sync_trials(self.sync_trials, self.partner, self._physics_t_s, self._ee, self._hand_true,
                            contact=self._contact, robot_at_rest=self.controller.state == "home")

    def _physics_step_agents(self) -> None:
        if self._sim is not None:
            events = self._sim.step()
            self._hand_true = self._sim.partner_hand_m()
            self._ee = self._sim.ee_position_m()
            self._partner_in, self._robot_in = self._sim.partner_in_zone, self._sim.robot_in_zone
            self._contact = self._sim.in_contact
            self._robot_dirty = True
            for ev in events:
                self._event(ev.name, ev.t_s)
            return
        j = self._tick // _PHYSICS_EVERY
        t = self._physics_t_s
        hand = self.partner.step(t, self._robot_in, contact=self._contact)
        self._hand_true = hand
        if self.sync_trials is None:
            for name, t_event in self._partner_turn.update(self.partner.phase, t):
                self._event(name, t_event)
        path = self._path
        if path is not None:
            i = min(j - self._path_first_step, len(path[0]) - 1)
            if i >= 0:
                self._frames_q, self._frames = path[0][i], path[1][i]
                self._ee = self._frames[7, :3, 3]
                if i == len(path[0]) - 1:
                    self._path = None  # arrived: hold the goal
        partner_in = self._inside(hand)
        robot_in = self._inside(self._ee)
        contact = False
        # Cheap reject: every robot capsule ends short (in x) of the glove, the person's
        # frontmost part (the person faces -x), so nothing can touch.
        if self._caps_frames is not self._frames:  # the arm moved: new capsules
            robot = self._caps = robot_capsules(self._frames)
            self._caps_frames = self._frames
            self._front_x = max(float(robot[0][:, 0].max()), float(robot[1][:, 0].max())) + ROBOT_LINK_RADIUS_M
        robot = self._caps
        if self._front_x >= hand[0] - self._person.glove_radius_m:
            contact = robot_partner_contact(robot, self._person_capsules(hand))
        if self._partner_in and not partner_in:
            self._event("partner_exit", t)
        if self._robot_in and not robot_in:
            self._event("robot_exit", t)
        if partner_in and not self._partner_in:
            self._event("partner_enter", t)
        if robot_in and not self._robot_in:
            self._event("robot_enter", t)
        if contact and not self._contact:
            self._event("contact_begin", t)
        if self._contact and not contact:
            self._event("contact_end", t)
        self._partner_in, self._robot_in, self._contact = partner_in, robot_in, contact

    def _person_capsules(self, hand: np.ndarray) -> tuple:
        key = (float(hand[0]), float(hand[1]), float(hand[2]))
        if key != self._person_key:  # the hand rests or dwells much of the time: reuse the pose
            self._person_key, self._person_cache = key, self._person.capsules(hand)
        return self._person_cache

    def _event(self, name: str, t_s: float) -> None:
        self.tracker.push(name, t_s)
        self._step_events.append((name, t_s))

    def _arm_frames(self) -> np.ndarray:
        if self._sim is not None and self._robot_dirty:
            q, _ = self._world.arm_state()
            self._frames = self.kinematics.joint_frames(q)
            self._robot_dirty = False
        return self._frames

    def _camera_frame(self) -> None:
        stamp = self.t_s
        occluded = robot_occludes_hand(self._arm_frames(), self._hand_true, self._camera_m,
                                       self._person.glove_radius_m)
        self._pending.append(self.perception.capture(stamp, self._hand_true, occluded))

    def _deliver(self) -> None:
        now = self.t_s + 1e-12
        while self._pending and self._pending[0].publish_s <= now:
            self._latest = self._pending.popleft()

    def _controller_tick(self) -> None:
        now = self.t_s
        latest = self._latest
        if self._sim is not None:
            q_meas, _ = self._world.arm_state()
        else:
            q_meas = self._frames_q
        inputs = ControllerInputs(
            decision=self._decision,
            decision_fallback=self._decision_fallback,
            partner_in_zone=None if latest is None else latest.in_zone,
            perception_stamp_s=None if latest is None else latest.stamp_s,
            joint_positions=q_meas,
            partner_hand_m=None if latest is None else latest.position_m,
            partner_velocity_mps=None if latest is None else latest.velocity_mps,
        )
        out = self.controller.update(now, inputs)
        for ev in out.events:
            if ev.name in CONTROLLER_NAMES:
                self._event(ev.name, ev.t_s)
        self._ground_truth_separation(now, q_meas, latest)
        if out.trajectory is not None:
            points = [(pt.time_from_start_s, pt.positions, pt.velocities or None, pt.accelerations or None)
                      for pt in out.trajectory.points]
            if self._sim is not None:
                self._sim.command_trajectory(out.trajectory.joint_names, points)
            else:
                q, qd, _ = self.executor.sample(now)
                # The executor validates the command exactly as the sim does (JTC rules) and
                # holds the goal afterwards ...
                self.executor.set_trajectory(out.trajectory.joint_names, points, 0.0, now, q, qd)
                # ... and the arm's path at every physics step comes from the plan the points
                # sample, in one vectorised batch: the executor's quintic through those points
                # reproduces the plan (test_turn_env checks < 1e-3 rad), ~30x cheaper than
                # sampling the executor step by step.
                self._set_path(out.trajectory.plan, now)

    def _ground_truth_separation(self, now: float, q_meas: np.ndarray, latest: PerceivedFrame | None) -> None:
        """SSM on ground truth (:class:`~coop_robot.control.ssm.GroundTruthMonitor`, as the sim node
        scores it): the true glove against the arm's body, with both velocities from their motion
        over the tick and the perception age the controller had at this tick."""
        nominal_age = self.controller.config.ssm_waiting_perception_age_s
        age = nominal_age if self._latest is None else now - latest.stamp_s
        # The arm and the hand are as of the last physics step: their motion is differenced over
        # physics time (2 or 3 steps fall between 100 Hz controller ticks).
        sep = self._truth_monitor.sample(self._physics_t_s, q_meas, self._hand_true, age)
        self.last_separation = sep
        self._ssm_samples.append((now, sep))
        self.tracker.push_separation(now, sep.separation_m, sep.protective_m, sep.robot_closing_mps)
        if self.sync_trials is not None:
            self.sync_trials.add_separation(now, sep.separation_m, sep.protective_m, sep.robot_closing_mps)

    def _set_path(self, plan, start_s: float) -> None:
        first = int(math.floor(start_s * PHYSICS_RATE_HZ + 1e-9)) + 1
        last = int(math.ceil((start_s + plan.duration_s) * PHYSICS_RATE_HZ - 1e-9))
        steps = np.arange(first, max(last, first) + 1)
        q = plan.state_at(np.minimum(steps / PHYSICS_RATE_HZ - start_s, plan.duration_s))[0]
        self._path = (q, self.kinematics.joint_frames(q))
        self._path_first_step = first

    def _observation(self) -> Observation:
        latest = self._latest
        nan3 = np.full(3, np.nan)
        return Observation(
            t_s=self.t_s,
            partner_in_zone=None if latest is None else latest.in_zone,
            perception_age_s=math.inf if latest is None else self.t_s - latest.stamp_s,
            partner_hand_m=nan3 if latest is None else latest.position_m,
            partner_velocity_mps=nan3.copy() if latest is None else latest.velocity_mps,
            robot_state=self.controller.state,
            robot_ee_m=self._ee.copy(),
            partner_planned_exit_s=self._planned_exit_s,
            **self._sync_observation(),
        )

    def _sync_observation(self) -> dict:
        """The sync task's fields of an Observation (none in turn-taking)."""
        if self.sync_trials is None:
            return {}
        cue = self.sync_trials.cue_s
        return {"sync_cue_s": cue, "robot_arrival_after_s": self._robot_arrival_after_s,
                "partner_planned_arrival_s": None if cue is None else self.partner.planned_arrival_s}

    def _arrival_after_s(self, reach, target_m) -> float:
        """How long after its start ``reach`` brings the EE within the sync arrival radius of
        ``target_m`` (s): the arrival definition of :mod:`coop_robot.timing.sync` on the plan."""
        return reach_arrival_after_s(reach, self.kinematics, target_m, self.sync_config.arrival_radius_m,
                                     PHYSICS_RATE_HZ)

    # ------------------------------------------------------------------ sessions
    def run(self, policy: Policy, turns: int, progress: bool = False, max_sim_s: float | None = None,
            seed: int | None = None, on_step: Callable[[Observation, Decision, dict], None] | None = None) -> dict:
        """Run ``policy`` from a fresh session (``seed``: as :meth:`reset`) until ``turns`` robot
        turns are scored.

        Returns the ``coop-robot sim`` summary keys (``coop_robot.timing.metrics.summarize`` plus
        ``per_turn`` and ``late_events``), and ``sim_time_s``, ``wall_time_s``,
        ``real_time_factor``, ``physics``. In the sync task ``turns`` counts trials and the summary
        is :func:`coop_robot.timing.sync.summarize_sync`'s (with ``per_trial``) and the same
        four; ``policy`` must be a sync policy (``make_policy(name, task="sync")``). Stops early
        (with fewer turns) after ``max_sim_s``
        session seconds (default 60 s per turn plus 30 s). ``on_step(obs, decision, info)``, when
        given, is called after every policy tick with the observation the policy decided on, its
        decision and :meth:`step`'s ``info`` (what an analysis records per tick).
        """
        if isinstance(turns, bool) or not isinstance(turns, (int, np.integer)) or turns < 1:
            raise ValueError(f"turns must be a positive integer, got {turns!r}")
        policy_task = getattr(policy, "task", DEFAULT_TASK)
        if policy_task != self.task:
            name = getattr(policy, "name", type(policy).__name__)
            raise ValueError(f"policy {name!r} plays the {policy_task} task, this environment runs {self.task}; "
                             f"build it with make_policy({name!r}, task={self.task!r})")
        if self.task == "sync":
            return self._run_sync(policy, turns, progress, max_sim_s, seed, on_step)
        limit_s = float(max_sim_s) if max_sim_s is not None else 60.0 * turns + 30.0
        obs = self.reset(seed)
        policy.reset()
        wall0 = time.perf_counter()
        shown = 0
        while len(self.tracker.records) < turns and self.t_s < limit_s:
            decision = policy.step(obs)
            seen = obs
            obs, info = self.step(decision.action, decision.fallback)
            if on_step is not None:
                on_step(seen, decision, info)
            if progress and len(self.tracker.records) > shown:
                shown = len(self.tracker.records)
                if shown % max(1, turns // 20) == 0 or shown == turns:
                    print(f"  turn {shown}/{turns} at t={self.t_s:.1f} s", flush=True)
        wall = time.perf_counter() - wall0
        self.tracker.release(self.t_s, flush=True)
        # A turn may complete during the final flush: score exactly `turns`.
        summary = self.tracker.summary(limit=turns, policy=getattr(policy, "name", type(policy).__name__),
                                       partner=self.partner_name, seed=self.seed)
        summary.update(sim_time_s=self.t_s, wall_time_s=wall,
                       real_time_factor=(self.t_s / wall) if wall > 0 else math.inf, physics=self.physics,
                       liveness_fallbacks=int(getattr(policy, "fallback_count", 0)))
        return summary

    def _run_sync(self, policy: Policy, trials: int, progress: bool, max_sim_s: float | None, seed: int | None,
                  on_step: Callable[[Observation, Decision, dict], None] | None) -> dict:
        """:meth:`run` for the sync task: until ``trials`` trials are scored."""
        limit_s = float(max_sim_s) if max_sim_s is not None else 60.0 * trials + 30.0
        obs = self.reset(seed)
        policy.reset()
        wall0 = time.perf_counter()
        shown = 0
        while len(self.sync_trials.trials) < trials and self.t_s < limit_s:
            decision = policy.step(obs)
            seen = obs
            obs, info = self.step(decision.action, decision.fallback)
            if on_step is not None:
                on_step(seen, decision, info)
            done = len(self.sync_trials.trials)
            if progress and done > shown:
                shown = done
                if shown % max(1, trials // 20) == 0 or shown == trials:
                    print(f"  trial {shown}/{trials} at t={self.t_s:.1f} s", flush=True)
        wall = time.perf_counter() - wall0
        summary = summarize_sync(self.sync_trials.trials[:trials], window_s=self.sync_config.window_s,
                                 policy=getattr(policy, "name", type(policy).__name__), partner=self.partner_name,
                                 seed=self.seed)
        summary.update(sim_time_s=self.t_s, wall_time_s=wall,
                       real_time_factor=(self.t_s / wall) if wall > 0 else math.inf, physics=self.physics)
        return summary

    @staticmethod
    def format_sync(summary: dict) -> str:
        """The per-trial table and summary lines of a sync :meth:`run`."""
        from coop_robot.timing.sync import SyncTrial

        return format_sync_table([SyncTrial.from_dict(t) for t in summary["per_trial"]], summary)

    def close(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None

    def __enter__(self) -> TurnTakingEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

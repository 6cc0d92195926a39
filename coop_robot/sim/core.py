"""The interaction simulation without ROS: world + simulated partner + trajectory executor.

:class:`InteractionSim` advances the PyBullet world one physics step at a time, drives the
partner's glove from the stochastic partner model, makes the arm track the active joint
trajectory, and detects the ground-truth events used for scoring (zone entries and exits of the
partner's hand and the robot's end effector, robot-partner contact) at physics resolution.

The sim node wraps it for the ROS graph; the headless training environment and benchmarks use
it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from coop_robot.camera import CameraPose
from coop_robot.control.planning import JointLimits
from coop_robot.geometry import Zone, world_geometry
from coop_robot.sim.trajectory import JointTrajectoryExecutor
from coop_robot.sim.world import PANDA_ARM_JOINTS, SimWorld, WorldConfig
from coop_robot.timing.tracker import PartnerTurnEdges

#: Ground-truth event names, in the order they are reported within one physics step
#: (exits before entries, so a hand-over in a single step reads exit -> enter).
EVENT_NAMES = ("partner_exit", "robot_exit", "partner_enter", "robot_enter", "contact_begin", "contact_end",
               "partner_turn_start", "partner_withdraw_start", "partner_turn_end")


#: The partner's plan times the sim reports, and the partner attributes they come from (the first
#: one present): ``planned_enter`` (the next zone entry), ``planned_exit`` (the exit that ends the
#: partner's turn, for the oracle) and, in the sync task, ``planned_arrival`` (when the glove comes
#: within the arrival radius of its target, for the sync oracle).
PLAN_SOURCES = (("planned_enter", ("planned_enter_s",)),
                ("planned_exit", ("planned_turn_exit_s", "planned_exit_s")),
                ("planned_arrival", ("planned_arrival_s",)))


class SimEvent(NamedTuple):
    """A ground-truth event: ``name`` (one of :data:`EVENT_NAMES`) at physics time ``t_s``."""

    name: str
    t_s: float


class PlanUpdate(NamedTuple):
    """The partner model's plan changed: ``source`` is ``planned_enter`` or ``planned_exit``,
    ``time_ref_s`` the planned time (sim seconds), ``t_s`` when the plan became known."""

    source: str
    time_ref_s: float
    t_s: float


def world_config_from_params(
    zone_min_m: Sequence[float] | None = None,
    zone_max_m: Sequence[float] | None = None,
    camera_position_m: Sequence[float] | None = None,
    camera_orientation_xyzw: Sequence[float] | None = None,
    robot_home_joint_positions_rad: Sequence[float] | None = None,
    physics_rate_hz: float = 240.0,
    image_width: int = 320,
    image_height: int = 240,
    vertical_fov_deg: float = 58.0,
    low_poly_robot: bool = True,
) -> WorldConfig:
    """Build a :class:`WorldConfig` from the flat parameter values of ``config/*.yaml``.

    A geometry value left ``None`` is ``config/world.yaml``'s (:func:`coop_robot.geometry.world_geometry`).
    """
    if not physics_rate_hz > 0.0:
        raise ValueError(f"physics_rate_hz must be positive, got {physics_rate_hz}")
    world = world_geometry()
    zone_min_m = world.zone_min_m if zone_min_m is None else zone_min_m
    zone_max_m = world.zone_max_m if zone_max_m is None else zone_max_m
    camera_position_m = world.camera_position_m if camera_position_m is None else camera_position_m
    camera_orientation_xyzw = world.camera_orientation_xyzw if camera_orientation_xyzw is None \
        else camera_orientation_xyzw
    if robot_home_joint_positions_rad is None:
        robot_home_joint_positions_rad = world.robot_home_joint_positions_rad
    return WorldConfig(
        zone=Zone.from_lists(zone_min_m, zone_max_m),
        camera_pose=CameraPose.from_position_quaternion(camera_position_m, camera_orientation_xyzw),
        image_width=int(image_width),
        image_height=int(image_height),
        vfov_deg=float(vertical_fov_deg),
        physics_dt_s=1.0 / float(physics_rate_hz),
        robot_home_rad=tuple(float(v) for v in robot_home_joint_positions_rad),
        low_poly_robot=bool(low_poly_robot),
    )


class InteractionSim:
    """World + partner + executor, stepped together; see the module docstring.

    ``partner`` is anything with ``step(t_s, robot_in_zone, contact=False) -> glove centre
    (world, m)``: the :class:`coop_robot.partner.model.PartnerModel`, or a scripted stand-in in
    tests. Optional attributes ``phase``, ``planned_enter_s`` and ``planned_turn_exit_s`` (the turn-ending exit;
    else ``planned_exit_s``) are reported when present.
    """

    def __init__(self, world: SimWorld, partner: Any, executor: JointTrajectoryExecutor | None = None) -> None:
        self.world = world
        self.partner = partner
        self.executor = executor or JointTrajectoryExecutor(PANDA_ARM_JOINTS, world.config.robot_home_rad,
                                                            limits=JointLimits.panda())
        if tuple(self.executor.joint_names) != PANDA_ARM_JOINTS:
            raise ValueError(f"executor must control {list(PANDA_ARM_JOINTS)}, got {list(self.executor.joint_names)}")
        self.zone: Zone = world.config.zone
        self.dt_s: float = world.config.physics_dt_s
        self._steps = 0
        self._partner_in = self.zone.contains(world.partner_hand_m)
        self._robot_in = self.zone.contains(world.ee_position_m())
        self._contact = False
        self._plan: dict[str, float | None] = {source: None for source, _ in PLAN_SOURCES}
        # The partner's turn as a whole (first reach to end of the final withdraw), for scoring.
        self._partner_turn = PartnerTurnEdges()

    @classmethod
    def from_params(cls, partner: Any = "typical", seed: int = 0, gui: bool = False,
                    world_config: WorldConfig | None = None, start_time_s: float = 0.0,
                    sync_config: Any = None, **world_params: Any) -> InteractionSim:
        """Build the whole simulation.

        ``partner``: a profile name (``config/partners/<name>.yaml``), a YAML path, or a loaded
        profile. ``seed`` seeds the partner's random generator (``np.random.default_rng``).
        ``world_params`` go to :func:`world_config_from_params` unless ``world_config`` is given.
        ``sync_config`` (a :class:`coop_robot.timing.sync.SyncTaskConfig`): the person is the sync
        task's :class:`~coop_robot.partner.sync.SyncPartner` (same profile and seed), who moves only
        when cued; None: the turn-taking :class:`~coop_robot.partner.model.PartnerModel`.
        Raises ``coop_robot.partner.profile.ProfileError`` for a bad profile.
        """
        from coop_robot.partner.model import PartnerModel
        from coop_robot.partner.profile import load_profile
        from coop_robot.partner.sync import SyncPartner

        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        profile = load_profile(partner) if isinstance(partner, str) else partner
        config = world_config or world_config_from_params(**world_params)
        world = SimWorld(config, gui=gui)
        try:
            if sync_config is not None:
                model = SyncPartner(profile, np.random.default_rng(int(seed)),
                                    np.asarray(config.partner_rest_m, dtype=float), sync_config.partner_target_m,
                                    config.zone, sync_config.arrival_radius_m)
            else:
                model = PartnerModel(profile, np.random.default_rng(int(seed)),
                                     np.asarray(config.partner_rest_m, dtype=float),
                                     np.asarray(config.partner_task_objects_m, dtype=float),
                                     config.zone, start_time_s=float(start_time_s))
            return cls(world, model)
        except Exception:
            world.close()
            raise

    # ------------------------------------------------------------------ state
    @property
    def t_s(self) -> float:
        """Physics time (s) of the last completed step (0 before the first)."""
        return self._steps * self.dt_s

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def partner_in_zone(self) -> bool:
        return self._partner_in

    @property
    def robot_in_zone(self) -> bool:
        return self._robot_in

    @property
    def in_contact(self) -> bool:
        return self._contact

    @property
    def partner_phase(self) -> str:
        return str(getattr(self.partner, "phase", "unknown"))

    def partner_hand_m(self) -> np.ndarray:
        """Ground-truth partner hand (glove centre) in ``world`` (m)."""
        return self.world.partner_hand_m

    def ee_position_m(self) -> np.ndarray:
        """Robot end effector (``panda_grasptarget``) in ``world`` (m)."""
        return self.world.ee_position_m()

    # ------------------------------------------------------------------ commands
    def command_trajectory(self, joint_names: Sequence[str], points, start_time_s: float = 0.0) -> list[str]:
        """Hand a ``JointTrajectory``'s content to the executor, starting from the measured state.

        Raises :class:`coop_robot.sim.trajectory.TrajectoryRejected` (the active trajectory keeps
        running) when it breaks a joint-trajectory-controller rule or leaves the Panda's joint
        limits; returns the executor's warnings about an accepted one.
        """
        q, qd = self.world.arm_state()
        return self.executor.set_trajectory(joint_names, points, start_time_s, now_s=self.t_s,
                                            current_q_rad=q, current_qd_rad_s=qd)

    # ------------------------------------------------------------------ stepping
    def step(self) -> list[SimEvent]:
        """Advance one physics step; return the ground-truth events that happened in it."""
        t_next = (self._steps + 1) * self.dt_s
        # The partner reacts to the robot's zone occupancy (and contact) as of the last step.
        hand = np.asarray(self.partner.step(t_next, self._robot_in, contact=self._contact), dtype=float)
        self.world.set_partner_hand(hand)
        q_ref, qd_ref = self.executor.reference(t_next)
        self.world.apply_joint_targets(q_ref, qd_ref)
        self.world.step()
        self._steps += 1

        partner_in = self.zone.contains(hand)
        robot_in = self.zone.contains(self.world.ee_position_m())
        contact = self.world.robot_partner_contact()
        events: list[SimEvent] = []
        if self._partner_in and not partner_in:
            events.append(SimEvent("partner_exit", t_next))
        if self._robot_in and not robot_in:
            events.append(SimEvent("robot_exit", t_next))
        if partner_in and not self._partner_in:
            events.append(SimEvent("partner_enter", t_next))
        if robot_in and not self._robot_in:
            events.append(SimEvent("robot_enter", t_next))
        if contact and not self._contact:
            events.append(SimEvent("contact_begin", t_next))
        if self._contact and not contact:
            events.append(SimEvent("contact_end", t_next))
        self._partner_in, self._robot_in, self._contact = partner_in, robot_in, contact
        events.extend(SimEvent(n, t) for n, t in self._partner_turn.update(self.partner_phase, t_next))
        return events

    def take_plan_updates(self) -> list[PlanUpdate]:
        """Partner plan times that are new since the last call (:data:`PLAN_SOURCES`)."""
        updates = []
        for source, attrs in PLAN_SOURCES:
            value = next((v for v in (getattr(self.partner, a, None) for a in attrs) if v is not None), None)
            if value is not None and value != self._plan[source]:
                updates.append(PlanUpdate(source, float(value), self.t_s))
            self._plan[source] = value
        return updates

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """Camera images ``(rgb uint8 HxWx3, depth float32 HxW m)`` of the current state."""
        return self.world.render()

    def close(self) -> None:
        self.world.close()

"""The PyBullet world of the shared-workspace task.

Everything the world contains is created in one place (:meth:`SimWorld._build`): a table, a
fixed-base Franka Panda, a tape outline marking the shared zone, a flat pad on the table under
each task object the partner reaches for (``task_objects_m`` in ``config/world.yaml``) and a
simulated person (torso, head, two-link arm and a green glove) whose bodies are kinematic and
posed every step from the glove position with an analytic arm IK.

Conventions: ``world`` frame, metres, z up; the camera renders in its optical frame
(``camera_color_optical_frame``: x right, y down, z forward) through
:func:`coop_robot.camera.opengl_view_matrix`, so a world point projected with
:func:`coop_robot.camera.optical_to_pixel` lands on the pixel where PyBullet draws it.

No ROS imports: the sim node, the headless training environment and the tests share this.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import pybullet as p
import pybullet_data

from coop_robot.camera import CameraPose, Intrinsics, opengl_depth_to_metres, opengl_view_matrix
from coop_robot.control.kinematics import JOINT_LOWER_RAD, JOINT_UPPER_RAD, JOINT_VELOCITY_LIMIT_RAD_S
from coop_robot.geometry import NOMINAL_TASK_OBJECT, Zone, world_geometry

#: Arm joint names in pybullet joint-index order (indices 0..6).
PANDA_ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
#: Finger joint names (pybullet joint indices 9 and 10).
PANDA_FINGER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")
#: Names reported by :meth:`SimWorld.joint_state`, arm first.
PANDA_JOINT_NAMES = PANDA_ARM_JOINTS + PANDA_FINGER_JOINTS

_ARM_INDICES = tuple(range(7))
_FINGER_INDICES = (9, 10)
_EE_LINK_INDEX = 11  # panda_grasptarget
#: Panda joint torque limits (N m), from the URDF / Franka datasheet.
PANDA_MAX_TORQUE_NM = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
_FINGER_MAX_FORCE_N = 20.0

# Position-control gains of PyBullet's constraint-based joint motors (dimensionless, per step).
# Tuned so a 1 s minimum-jerk reach into the zone tracks within a few millimetres at the EE.
_ARM_POSITION_GAIN = 0.3
_ARM_VELOCITY_GAIN = 1.0

_TABLE_POSITION_M = (0.5, 0.0, 0.0)
#: Height of the top of pybullet_data's ``table/table.urdf`` at ``_TABLE_POSITION_M`` (a property of
#: the asset); config/world.yaml's robot base and zone floor sit on it (test_sim_world checks).
TABLE_TOP_Z_M = 0.626

# Simulated person, relative to the configured shoulder (the partner's right shoulder; the
# person stands or sits at the far table edge facing -x, so its right side is +y).
_UPPER_ARM_LENGTH_M = 0.33
_FOREARM_LENGTH_M = 0.40  # elbow to glove centre
_UPPER_ARM_RADIUS_M = 0.045
_FOREARM_RADIUS_M = 0.035
_TORSO_HALF_EXTENTS_M = (0.09, 0.17, 0.25)
_TORSO_FROM_SHOULDER_M = (0.04, -0.19, -0.22)
_HEAD_RADIUS_M = 0.095
_HEAD_FROM_SHOULDER_M = (0.04, -0.19, 0.18)
_HIP_FROM_SHOULDER_M = (0.04, -0.19, -0.47)
#: Fraction of full arm reach the person uses before leaning the torso forward.
_COMFORTABLE_REACH = 0.97
_MAX_LEAN_RAD = 0.6
_SHIRT_RGBA = (0.25, 0.33, 0.62, 1.0)
_SKIN_RGBA = (0.86, 0.68, 0.55, 1.0)

# Task object pads: flat, visual-only boxes on the table top under each task object (the glove's
# target hovers above its pad; nothing collides with them). Thin, so a glove at its target (its
# bottom 0.045 m below the centre) stays clear of the pad. Colours cycle through this palette; none
# is in the glove's colour range (green, OpenCV H 45-80; test_sim_world renders them to check).
_TASK_PAD_HALF_EXTENTS_M = (0.025, 0.025, 0.006)
TASK_PAD_RGBA = (
    (0.85, 0.12, 0.10, 1.0),  # red
    (0.15, 0.25, 0.85, 1.0),  # blue
    (0.95, 0.80, 0.10, 1.0),  # yellow
    (0.55, 0.20, 0.65, 1.0),  # purple
    (0.90, 0.90, 0.88, 1.0),  # white
)
_ZONE_TAPE_RGBA = (0.95, 0.50, 0.10, 1.0)
_ZONE_TAPE_WIDTH_M = 0.012


@dataclass(frozen=True)
class WorldConfig:
    """Geometry and rendering settings of the simulated world (``world`` frame, metres)."""

    zone: Zone
    camera_pose: CameraPose
    image_width: int = 320
    image_height: int = 240
    vfov_deg: float = 58.0
    near_m: float = 0.1
    far_m: float = 4.0
    physics_dt_s: float = 1.0 / 240.0
    # Defaults: config/world.yaml (coop_robot.geometry.world_geometry).
    robot_base_m: tuple = world_geometry().robot_base_m
    robot_home_rad: tuple = world_geometry().robot_home_joint_positions_rad
    partner_shoulder_m: tuple = (1.38, 0.20, 1.12)
    partner_rest_m: tuple = world_geometry().partner_rest_m
    #: Glove-centre targets of the partner's reaches, one (x, y, z) per task object; the first is
    #: the nominal one (:attr:`partner_target_m`).
    partner_task_objects_m: tuple = world_geometry().task_objects_m
    glove_radius_m: float = 0.045
    glove_rgba: tuple = (0.10, 0.85, 0.15, 1.0)
    #: Finger joint position (m per finger, 0 closed .. 0.04 open), held for the whole run.
    finger_position_m: float = 0.04
    #: Render the Panda with its low-poly collision meshes (about 5x faster in the software
    #: renderer than the detailed visual meshes; same kinematics and collision geometry).
    low_poly_robot: bool = True

    def __post_init__(self) -> None:
        if self.image_width <= 0 or self.image_height <= 0:
            raise ValueError(f"image size must be positive, got {self.image_width}x{self.image_height}")
        if not 0.0 < self.near_m < self.far_m:
            raise ValueError(f"need 0 < near_m < far_m, got near_m={self.near_m} far_m={self.far_m}")
        if not 0.0 < self.physics_dt_s <= 0.05:
            raise ValueError(f"physics_dt_s must be in (0, 0.05] s, got {self.physics_dt_s}")
        for name in ("robot_base_m", "partner_shoulder_m", "partner_rest_m"):
            v = np.asarray(getattr(self, name), dtype=float)
            if v.shape != (3,) or not np.all(np.isfinite(v)):
                raise ValueError(f"{name} must be 3 finite numbers (m), got {getattr(self, name)!r}")
        try:
            objects = np.asarray(self.partner_task_objects_m, dtype=float)
        except (TypeError, ValueError):
            objects = np.empty((0,))
        if objects.ndim != 2 or objects.shape[0] < 1 or objects.shape[1] != 3 or not np.all(np.isfinite(objects)):
            raise ValueError(f"partner_task_objects_m must be one or more (x, y, z) triples of finite numbers (m), "
                             f"got {self.partner_task_objects_m!r}")
        home = np.asarray(self.robot_home_rad, dtype=float)
        if home.shape != (7,) or not np.all(np.isfinite(home)):
            raise ValueError(f"robot_home_rad must be 7 finite joint positions (rad), got {self.robot_home_rad!r}")
        if not self.glove_radius_m > 0.0:
            raise ValueError(f"glove_radius_m must be positive, got {self.glove_radius_m}")
        if len(self.glove_rgba) != 4:
            raise ValueError(f"glove_rgba must be [r, g, b, a], got {self.glove_rgba!r}")
        if not 0.0 <= self.finger_position_m <= 0.04:
            raise ValueError(f"finger_position_m must be in [0, 0.04] m, got {self.finger_position_m}")

    @property
    def partner_target_m(self) -> tuple:
        """The nominal task object: the partner's target every turn unless its profile chooses."""
        return tuple(self.partner_task_objects_m[NOMINAL_TASK_OBJECT])

    @classmethod
    def default(cls) -> WorldConfig:
        """The contract geometry (the values in ``config/world.yaml``)."""
        geometry = world_geometry()
        return cls(
            zone=geometry.zone,
            camera_pose=CameraPose.from_position_quaternion(
                geometry.camera_position_m, geometry.camera_orientation_xyzw),
        )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _quat_axis_angle(axis: np.ndarray, angle_rad: float) -> list[float]:
    """Quaternion [x, y, z, w] rotating by ``angle_rad`` about unit ``axis``."""
    s = math.sin(0.5 * angle_rad)
    return [float(axis[0] * s), float(axis[1] * s), float(axis[2] * s), math.cos(0.5 * angle_rad)]


def _quat_z_to(direction: np.ndarray) -> list[float]:
    """Quaternion [x, y, z, w] turning the local z axis (a capsule's axis) onto ``direction``."""
    d = _unit(direction)
    z = np.array([0.0, 0.0, 1.0])
    axis = _cross3(z, d)
    n = np.linalg.norm(axis)
    if n < 1e-9:
        return [0.0, 0.0, 0.0, 1.0] if d[2] > 0 else [1.0, 0.0, 0.0, 0.0]
    return _quat_axis_angle(axis / n, math.atan2(n, float(d[2])))


def _cross3(a, b) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross's general-axis machinery costs ~10x more; the person's
    pose is solved every physics step)."""
    a0, a1, a2 = (float(v) for v in a)
    b0, b1, b2 = (float(v) for v in b)
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def _rotate(v: np.ndarray, axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues rotation of ``v`` about unit ``axis``."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return v * c + _cross3(axis, v) * s + axis * float(axis @ v) * (1.0 - c)


@dataclass(frozen=True)
class PersonPose:
    """Where the simulated person's parts are for one glove position (``world``, metres)."""

    lean_rad: float
    shoulder_m: np.ndarray
    elbow_m: np.ndarray
    wrist_m: np.ndarray
    hand_m: np.ndarray


def person_pose(hand_m, shoulder_rest_m, hip_m, facing=(-1.0, 0.0, 0.0),
                outward=(0.0, 1.0, 0.0)) -> PersonPose:
    """Analytic arm IK for the simulated person.

    The torso leans forward about the hip just enough for the shoulder to come within a
    comfortable reach of the hand (at most ``_MAX_LEAN_RAD``); the elbow then lies on the
    two-link circle, on the side of a pole pointing down and away from the body, which gives the
    natural "elbow down and out" posture. Beyond full reach the arm points straight at the hand.
    """
    hand = np.asarray(hand_m, dtype=float)
    s0 = np.asarray(shoulder_rest_m, dtype=float)
    hip = np.asarray(hip_m, dtype=float)
    up = np.array([0.0, 0.0, 1.0])
    lean_axis = _unit(_cross3(up, np.asarray(facing, dtype=float)))
    reach = _COMFORTABLE_REACH * (_UPPER_ARM_LENGTH_M + _FOREARM_LENGTH_M)

    lean = 0.0
    if np.linalg.norm(hand - s0) > reach:
        # Shoulder on a circle about the hip: |hand - S(theta)|^2 = C0 - A cos(theta) - B sin(theta).
        v = s0 - hip
        v_par = lean_axis * float(lean_axis @ v)
        v_perp = v - v_par
        u = _cross3(lean_axis, v_perp)
        w = hand - hip - v_par
        a_coef = 2.0 * float(w @ v_perp)
        b_coef = 2.0 * float(w @ u)
        c_coef = float(w @ w) + float(v_perp @ v_perp) - reach**2
        amp = math.hypot(a_coef, b_coef)
        phi = math.atan2(b_coef, a_coef)
        if amp > 1e-12 and abs(c_coef) <= amp:
            lean = phi - math.acos(c_coef / amp)
        else:
            lean = phi  # out of reach even leaning: lean as close as possible
        lean = float(np.clip(lean, 0.0, _MAX_LEAN_RAD))
    shoulder = hip + _rotate(s0 - hip, lean_axis, lean)

    d = hand - shoulder
    dist = float(np.linalg.norm(d))
    l1, l2 = _UPPER_ARM_LENGTH_M, _FOREARM_LENGTH_M
    u = d / dist if dist > 1e-9 else np.asarray(facing, dtype=float)
    dist_c = float(np.clip(dist, abs(l1 - l2) + 1e-6, l1 + l2 - 1e-6))
    along = (l1 * l1 - l2 * l2 + dist_c * dist_c) / (2.0 * dist_c)
    height = math.sqrt(max(l1 * l1 - along * along, 0.0))
    pole = _unit(0.5 * np.asarray(outward, dtype=float) - up)
    pole_perp = pole - u * float(pole @ u)
    if np.linalg.norm(pole_perp) < 1e-6:  # hand straight below/above along the pole
        pole_perp = _cross3(u, lean_axis)
    elbow = shoulder + along * u + height * _unit(pole_perp)
    forearm_dir = _unit(hand - elbow) if np.linalg.norm(hand - elbow) > 1e-9 else u
    return PersonPose(lean, shoulder, elbow, elbow + l2 * forearm_dir, hand)


class SimWorld:
    """One PyBullet client holding the task world; see the module docstring.

    ``gui=True`` opens the PyBullet window (needs a display); otherwise ``p.DIRECT``.
    """

    def __init__(self, config: WorldConfig, gui: bool = False) -> None:
        self.config = config
        self._gui = bool(gui)
        self._cid = -1
        if self._gui and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
            # PyBullet would end the whole process ("cannot connect to X server").
            raise RuntimeError("the PyBullet GUI needs an X display, but DISPLAY is not set; run headless (gui false)")
        self._cid = p.connect(p.GUI if self._gui else p.DIRECT)
        if self._cid < 0:
            raise RuntimeError(f"could not connect to PyBullet ({'GUI' if gui else 'DIRECT'})")
        ideal = Intrinsics.from_vertical_fov(config.image_width, config.image_height, config.vfov_deg)
        if self._gui:
            self._intrinsics = ideal
        else:
            # PyBullet's software renderer samples pixel centres half a pixel off the ideal
            # pinhole (measured over 23 glove positions: +0.51 px in u, -0.52 px in v), so the
            # CameraInfo it publishes carries the principal point the images really have.
            self._intrinsics = Intrinsics(ideal.width, ideal.height, ideal.fx, ideal.fy, ideal.cx + 0.5, ideal.cy - 0.5)
        self._view = opengl_view_matrix(config.camera_pose)
        self._projection = p.computeProjectionMatrixFOV(
            config.vfov_deg, config.image_width / config.image_height, config.near_m, config.far_m,
            physicsClientId=self._cid)
        self._hand_m = np.asarray(config.partner_rest_m, dtype=float)
        try:
            self._build()
        except Exception:
            self.close()
            raise

    # ----------------------------------------------------------------------------- building
    def _build(self) -> None:
        cid, cfg = self._cid, self.config
        p.resetSimulation(physicsClientId=cid)
        p.setTimeStep(cfg.physics_dt_s, physicsClientId=cid)
        p.setGravity(0.0, 0.0, -9.81, physicsClientId=cid)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=cid)
        if self._gui:
            p.configureDebugVisualizer(p.COV_ENABLE_GUI, 0, physicsClientId=cid)
            p.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 0, physicsClientId=cid)

        # Floor: collision only. PyBullet draws a shape-less body's collision plane; making it
        # fully transparent (skipped by the software renderer) halves the render time (~22 ->
        # ~10 ms at 320x240) for pixels nobody looks at; the background reads the far plane.
        floor_shape = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=cid)
        self._floor = p.createMultiBody(0.0, floor_shape, -1, [0.0, 0.0, 0.0], physicsClientId=cid)
        p.changeVisualShape(self._floor, -1, rgbaColor=[1.0, 1.0, 1.0, 0.0], physicsClientId=cid)
        self._table = p.loadURDF("table/table.urdf", list(_TABLE_POSITION_M), useFixedBase=True,
                                 physicsClientId=cid)
        self._robot = self._load_robot()
        self._build_zone_marking()
        pad_half_z = _TASK_PAD_HALF_EXTENTS_M[2]
        self._task_objects = [self._add_box(
            [x, y, TABLE_TOP_Z_M + pad_half_z], _TASK_PAD_HALF_EXTENTS_M, TASK_PAD_RGBA[k % len(TASK_PAD_RGBA)],
            collide=False) for k, (x, y, _) in enumerate(cfg.partner_task_objects_m)]
        self._build_person()

        # The person's bodies collide with the robot (contact detection) but pass through the
        # table and floor (the partner's hand rests on / hovers over them).
        for person_body in self._person_bodies:
            for other in [self._floor, self._table]:
                p.setCollisionFilterPair(person_body, other, -1, -1, 0, physicsClientId=cid)

        self._static_bodies = [self._table, *self._zone_marking, *self._task_objects]
        self._static_layer = None if self._gui else self._render_static_layer()

        self.reset_arm(cfg.robot_home_rad)
        p.setJointMotorControlArray(
            self._robot, list(_FINGER_INDICES), p.POSITION_CONTROL,
            targetPositions=[cfg.finger_position_m] * 2, forces=[_FINGER_MAX_FORCE_N] * 2,
            physicsClientId=cid)
        self.set_partner_hand(cfg.partner_rest_m)
        if self._gui:
            p.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 1, physicsClientId=cid)
            target = cfg.zone.center_m
            p.resetDebugVisualizerCamera(1.6, 140.0, -35.0, target.tolist(), physicsClientId=cid)

    def _load_robot(self) -> int:
        data = pybullet_data.getDataPath()
        urdf = os.path.join(data, "franka_panda", "panda.urdf")
        flags = p.URDF_USE_INERTIA_FROM_FILE
        if not self.config.low_poly_robot:
            return p.loadURDF(urdf, list(self.config.robot_base_m), useFixedBase=True, flags=flags,
                              physicsClientId=self._cid)
        # Same URDF with the visual meshes swapped for the collision meshes (~3.5k instead of
        # ~120k triangles); written to a private temporary directory and read once.
        with open(urdf, encoding="utf-8") as f:
            text = f.read()
        meshes = os.path.join(data, "franka_panda", "meshes") + os.sep
        text = text.replace("package://meshes/visual/", "package://meshes/collision/")
        text = text.replace("package://meshes/", meshes)
        tmp = tempfile.mkdtemp(prefix="coop_robot_panda_")
        try:
            path = os.path.join(tmp, "panda_low_poly.urdf")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            robot = p.loadURDF(path, list(self.config.robot_base_m), useFixedBase=True, flags=flags,
                               physicsClientId=self._cid)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        # Franka colours: white links, dark hand and fingers.
        for link in range(-1, p.getNumJoints(robot, physicsClientId=self._cid)):
            rgba = [0.2, 0.2, 0.22, 1.0] if link >= 7 else [0.92, 0.92, 0.92, 1.0]
            p.changeVisualShape(robot, link, rgbaColor=rgba, physicsClientId=self._cid)
        return robot

    def _add_box(self, centre_m, half_extents_m, rgba, collide: bool) -> int:
        cid = self._cid
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=list(half_extents_m), rgbaColor=list(rgba),
                                  physicsClientId=cid)
        col = (p.createCollisionShape(p.GEOM_BOX, halfExtents=list(half_extents_m), physicsClientId=cid)
               if collide else -1)
        return p.createMultiBody(0.0, col, vis, list(centre_m), physicsClientId=cid)

    def _build_zone_marking(self) -> None:
        """Tape outline of the shared zone on the table top (visual only).

        The software renderer draws translucent shapes opaque, so a zone box would hide the
        glove from the camera; tape on the table never occludes anything above it. In the GUI
        the zone's 12 edges are also drawn as debug lines (not part of camera images).
        """
        lo, hi = np.asarray(self.config.zone.min_m), np.asarray(self.config.zone.max_m)
        z = TABLE_TOP_Z_M + 0.0015
        w = 0.5 * _ZONE_TAPE_WIDTH_M
        cx, cy = 0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1])
        hx, hy = 0.5 * (hi[0] - lo[0]), 0.5 * (hi[1] - lo[1])
        self._zone_marking = [
            self._add_box([cx, y, z], [hx + w, w, 0.0015], _ZONE_TAPE_RGBA, collide=False) for y in (lo[1], hi[1])
        ] + [
            self._add_box([x, cy, z], [w, hy - w, 0.0015], _ZONE_TAPE_RGBA, collide=False) for x in (lo[0], hi[0])
        ]
        if self._gui:
            corners = [np.array([x, y, zz]) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for zz in (lo[2], hi[2])]
            for i, a in enumerate(corners):
                for b in corners[i + 1:]:
                    if np.count_nonzero(np.abs(a - b) > 1e-9) == 1:
                        p.addUserDebugLine(a.tolist(), b.tolist(), [0.2, 0.4, 1.0], 2.0, physicsClientId=self._cid)

    def _build_person(self) -> None:
        cid, cfg = self._cid, self.config
        shoulder = np.asarray(cfg.partner_shoulder_m, dtype=float)
        self._person_shoulder_rest = shoulder
        self._person_hip = shoulder + np.asarray(_HIP_FROM_SHOULDER_M)
        self._torso_offset = shoulder + np.asarray(_TORSO_FROM_SHOULDER_M) - self._person_hip
        self._head_offset = shoulder + np.asarray(_HEAD_FROM_SHOULDER_M) - self._person_hip

        def body(col, vis) -> int:
            return p.createMultiBody(0.0, col, vis, [0.0, 0.0, -5.0], physicsClientId=cid)

        self._torso = body(
            p.createCollisionShape(p.GEOM_BOX, halfExtents=list(_TORSO_HALF_EXTENTS_M), physicsClientId=cid),
            p.createVisualShape(p.GEOM_BOX, halfExtents=list(_TORSO_HALF_EXTENTS_M), rgbaColor=list(_SHIRT_RGBA),
                                physicsClientId=cid))
        self._head = body(
            p.createCollisionShape(p.GEOM_SPHERE, radius=_HEAD_RADIUS_M, physicsClientId=cid),
            p.createVisualShape(p.GEOM_SPHERE, radius=_HEAD_RADIUS_M, rgbaColor=list(_SKIN_RGBA), physicsClientId=cid))
        # Capsules span their segment between the joint centres (cylinder length = segment).
        upper_len = _UPPER_ARM_LENGTH_M
        self._upper_arm = body(
            p.createCollisionShape(p.GEOM_CAPSULE, radius=_UPPER_ARM_RADIUS_M, height=upper_len, physicsClientId=cid),
            p.createVisualShape(p.GEOM_CAPSULE, radius=_UPPER_ARM_RADIUS_M, length=upper_len,
                                rgbaColor=list(_SHIRT_RGBA), physicsClientId=cid))
        # The forearm stops short of the glove centre so the glove stays one clean green blob.
        self._forearm_len = _FOREARM_LENGTH_M - cfg.glove_radius_m - 0.5 * _FOREARM_RADIUS_M
        self._forearm = body(
            p.createCollisionShape(p.GEOM_CAPSULE, radius=_FOREARM_RADIUS_M, height=self._forearm_len,
                                   physicsClientId=cid),
            p.createVisualShape(p.GEOM_CAPSULE, radius=_FOREARM_RADIUS_M, length=self._forearm_len,
                                rgbaColor=list(_SKIN_RGBA), physicsClientId=cid))
        self._glove = body(
            p.createCollisionShape(p.GEOM_SPHERE, radius=cfg.glove_radius_m, physicsClientId=cid),
            p.createVisualShape(p.GEOM_SPHERE, radius=cfg.glove_radius_m, rgbaColor=list(cfg.glove_rgba),
                                physicsClientId=cid))
        self._person_bodies = (self._torso, self._head, self._upper_arm, self._forearm, self._glove)
        self._outward = np.array([0.0, 1.0 if shoulder[1] >= self._person_hip[1] else -1.0, 0.0])
        self._facing = np.array([-1.0, 0.0, 0.0])
        self._lean_axis = _unit(_cross3([0.0, 0.0, 1.0], self._facing))

    # ----------------------------------------------------------------------------- partner
    def set_partner_hand(self, hand_m) -> None:
        """Pose the person so the glove centre is at ``hand_m`` (``world``, m)."""
        hand = np.asarray(hand_m, dtype=float).reshape(-1)
        if hand.shape != (3,) or not np.all(np.isfinite(hand)):
            raise ValueError(f"partner hand must be 3 finite coordinates (m), got {hand_m!r}")
        pose = person_pose(hand, self._person_shoulder_rest, self._person_hip, self._facing, self._outward)
        cid = self._cid
        lean_q = _quat_axis_angle(self._lean_axis, pose.lean_rad)
        hip = self._person_hip
        place = p.resetBasePositionAndOrientation
        place(self._torso, (hip + _rotate(self._torso_offset, self._lean_axis, pose.lean_rad)).tolist(), lean_q,
              physicsClientId=cid)
        place(self._head, (hip + _rotate(self._head_offset, self._lean_axis, pose.lean_rad)).tolist(), lean_q,
              physicsClientId=cid)
        upper = pose.elbow_m - pose.shoulder_m
        place(self._upper_arm, (0.5 * (pose.shoulder_m + pose.elbow_m)).tolist(), _quat_z_to(upper),
              physicsClientId=cid)
        fore_dir = _unit(pose.wrist_m - pose.elbow_m)
        place(self._forearm, (pose.elbow_m + 0.5 * self._forearm_len * fore_dir).tolist(), _quat_z_to(fore_dir),
              physicsClientId=cid)
        place(self._glove, hand.tolist(), [0.0, 0.0, 0.0, 1.0], physicsClientId=cid)
        self._hand_m = hand.copy()

    @property
    def partner_hand_m(self) -> np.ndarray:
        """Glove centre in ``world`` (m): the ground-truth partner hand."""
        return self._hand_m.copy()

    @property
    def person_bodies(self) -> tuple[int, ...]:
        """PyBullet body ids of the simulated person (torso, head, upper arm, forearm, glove)."""
        return self._person_bodies

    # ----------------------------------------------------------------------------- robot
    @property
    def client_id(self) -> int:
        return self._cid

    @property
    def robot_id(self) -> int:
        return self._robot

    def reset_arm(self, q_rad) -> None:
        """Teleport the arm to ``q_rad`` (7 joint positions, rad) at rest and hold it there."""
        q = np.asarray(q_rad, dtype=float).reshape(-1)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ValueError(f"arm configuration must be 7 finite joint positions (rad), got {q_rad!r}")
        for index, value in zip(_ARM_INDICES, q):
            p.resetJointState(self._robot, index, float(value), 0.0, physicsClientId=self._cid)
        for index in _FINGER_INDICES:
            p.resetJointState(self._robot, index, self.config.finger_position_m, 0.0, physicsClientId=self._cid)
        self.apply_joint_targets(q, np.zeros(7))

    def apply_joint_targets(self, q_rad, qd_rad_s) -> None:
        """Command the arm's position-controlled joint motors (targets in rad and rad/s).

        The targets are clamped to the Panda's position and velocity limits: the trajectory
        executor rejects motion beyond them, and whatever still gets here (an interpolation
        overshoot within its tolerance) never reaches the physics.
        """
        q = np.asarray(q_rad, dtype=float).reshape(-1)
        qd = np.asarray(qd_rad_s, dtype=float).reshape(-1)
        if q.shape != (7,) or qd.shape != (7,) or not (np.all(np.isfinite(q)) and np.all(np.isfinite(qd))):
            raise ValueError(f"joint targets must be 7 finite positions and velocities, got {q_rad!r}, {qd_rad_s!r}")
        q = np.clip(q, JOINT_LOWER_RAD, JOINT_UPPER_RAD)
        qd = np.clip(qd, -JOINT_VELOCITY_LIMIT_RAD_S, JOINT_VELOCITY_LIMIT_RAD_S)
        p.setJointMotorControlArray(
            self._robot, list(_ARM_INDICES), p.POSITION_CONTROL,
            targetPositions=q.tolist(), targetVelocities=qd.tolist(),
            forces=list(PANDA_MAX_TORQUE_NM),
            positionGains=[_ARM_POSITION_GAIN] * 7, velocityGains=[_ARM_VELOCITY_GAIN] * 7,
            physicsClientId=self._cid)

    def step(self) -> None:
        """Advance the physics by one ``physics_dt_s``."""
        p.stepSimulation(physicsClientId=self._cid)

    def joint_state(self):
        """``(names, position, velocity, effort)`` for panda_joint1..7 and the two fingers.

        Positions in rad (fingers in m), velocities in rad/s (m/s), efforts the applied motor
        torques in N m (fingers N).
        """
        states = p.getJointStates(self._robot, list(_ARM_INDICES + _FINGER_INDICES), physicsClientId=self._cid)
        position = np.array([s[0] for s in states])
        velocity = np.array([s[1] for s in states])
        effort = np.array([s[3] for s in states])
        return list(PANDA_JOINT_NAMES), position, velocity, effort

    def arm_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Arm joint positions (rad) and velocities (rad/s), panda_joint1..7."""
        states = p.getJointStates(self._robot, list(_ARM_INDICES), physicsClientId=self._cid)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def ee_position_m(self) -> np.ndarray:
        """End-effector point (link ``panda_grasptarget``) in ``world`` (m)."""
        state = p.getLinkState(self._robot, _EE_LINK_INDEX, computeForwardKinematics=True,
                               physicsClientId=self._cid)
        return np.asarray(state[4], dtype=float)

    def robot_partner_contact(self) -> bool:
        """True when any robot link touches (distance <= 0) any part of the simulated person.

        Reads the contact manifolds of the last :meth:`step`, so call it after stepping.
        """
        for contact in p.getContactPoints(bodyA=self._robot, physicsClientId=self._cid):
            if contact[2] in self._person_bodies and contact[8] <= 0.0:
                return True
        return False

    # ----------------------------------------------------------------------------- camera
    @property
    def intrinsics(self) -> Intrinsics:
        """Pinhole intrinsics of the rendered images (colour and depth are aligned)."""
        return self._intrinsics

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """Render the camera: ``(rgb uint8 HxWx3, depth float32 HxW in m along the optical axis)``.

        Pixels that see nothing read ``far_m``. Headless, the static scenery (table, zone tape,
        task objects) is rendered once; each frame renders only the robot and the person and
        composites them over it by depth: pixel-identical to a full render (no shadows, no
        transparency) at about 60 % of the cost.
        """
        if self._static_layer is None:
            return self._render_all()
        cid = self._cid
        hidden = [0.0, 0.0, -100.0]  # beyond the far plane
        for body in self._static_bodies:
            p.resetBasePositionAndOrientation(body, hidden, [0.0, 0.0, 0.0, 1.0], physicsClientId=cid)
        try:
            rgb, depth_m = self._render_all()
        finally:
            for body, (pos, orn) in zip(self._static_bodies, self._static_poses):
                p.resetBasePositionAndOrientation(body, pos, orn, physicsClientId=cid)
        static_rgb, static_depth = self._static_layer
        nearer = depth_m < static_depth
        return np.where(nearer[..., None], rgb, static_rgb), np.where(nearer, depth_m, static_depth)

    def _render_static_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """Render the static scenery alone (robot and person moved out of view, then back)."""
        cid = self._cid
        self._static_poses = [p.getBasePositionAndOrientation(b, physicsClientId=cid) for b in self._static_bodies]
        hidden = [0.0, 0.0, -100.0]
        movers = [self._robot, *self._person_bodies]
        saved = [p.getBasePositionAndOrientation(b, physicsClientId=cid) for b in movers]
        for body in movers:
            p.resetBasePositionAndOrientation(body, hidden, [0.0, 0.0, 0.0, 1.0], physicsClientId=cid)
        try:
            return self._render_all()
        finally:
            for body, (pos, orn) in zip(movers, saved):
                p.resetBasePositionAndOrientation(body, pos, orn, physicsClientId=cid)

    def _render_all(self) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        renderer = p.ER_BULLET_HARDWARE_OPENGL if self._gui else p.ER_TINY_RENDERER
        _, _, rgba, depth, _ = p.getCameraImage(
            cfg.image_width, cfg.image_height, self._view, self._projection,
            renderer=renderer, flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=self._cid)
        h, w = cfg.image_height, cfg.image_width
        rgb = np.ascontiguousarray(np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3])
        depth_m = opengl_depth_to_metres(np.asarray(depth, dtype=np.float64).reshape(h, w), cfg.near_m, cfg.far_m)
        return rgb, depth_m

    # ----------------------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Disconnect from PyBullet (idempotent)."""
        if self._cid is not None and self._cid >= 0:
            if p.isConnected(physicsClientId=self._cid):
                p.disconnect(physicsClientId=self._cid)
        self._cid = -1

    def __enter__(self) -> SimWorld:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

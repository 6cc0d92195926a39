"""Franka Emika Panda kinematics in pure NumPy: forward kinematics, Jacobian and position IK.

Forward kinematics follows Franka's published modified (Craig) Denavit-Hartenberg table. The
end-effector point ("EE") is the ``panda_grasptarget`` link of pybullet_data's
``franka_panda/panda.urdf`` (link index 11): the flange (``panda_link8``) sits 0.107 m along
joint 7's z axis, the hand is rotated -45 deg about that axis, and the grasp target lies a
further 0.105 m along the hand's z axis, i.e. 0.212 m from joint 7's frame. The rotation of
the hand does not move that point, so only the 0.212 m offset enters the EE position.
``test/test_kinematics.py`` checks this against PyBullet on random configurations.

All positions are in the ``world`` frame (m); the robot base (``panda_link0``) sits at
``base_m`` with identity orientation, as in the simulation.

Joint limits are Franka's datasheet values, which are also the ``safety_controller`` soft
limits in pybullet_data's panda.urdf (the URDF's hard ``<limit>`` range is a few degrees wider).
"""

from __future__ import annotations

import numpy as np

from coop_robot.geometry import world_geometry

JOINT_NAMES: tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, 8))

#: Joint position limits (rad), Franka datasheet = panda.urdf ``safety_controller`` soft limits.
JOINT_LOWER_RAD = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
JOINT_UPPER_RAD = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
#: Joint velocity limits (rad/s), Franka datasheet = panda.urdf ``<limit velocity=...>``.
JOINT_VELOCITY_LIMIT_RAD_S = np.array([2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100])
#: Joint acceleration limits (rad/s^2), Franka datasheet (not in the URDF).
JOINT_ACCELERATION_LIMIT_RAD_S2 = np.array([15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0])
#: Joint jerk limits (rad/s^3), Franka datasheet (not in the URDF).
JOINT_JERK_LIMIT_RAD_S3 = np.array([7500.0, 3750.0, 5000.0, 6250.0, 7500.0, 10000.0, 10000.0])

#: config/world.yaml's robot_base_m.
DEFAULT_ROBOT_BASE_M = world_geometry().robot_base_m

# Modified DH parameters (Craig convention): T_i = RotX(alpha_{i-1}) TransX(a_{i-1}) RotZ(q_i) TransZ(d_i).
_DH_A_M = np.array([0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088])
_DH_D_M = np.array([0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0])
_DH_ALPHA_RAD = np.array([0.0, -np.pi / 2, np.pi / 2, np.pi / 2, -np.pi / 2, np.pi / 2, np.pi / 2])
_COS_ALPHA = np.round(np.cos(_DH_ALPHA_RAD), 12)
_SIN_ALPHA = np.round(np.sin(_DH_ALPHA_RAD), 12)
#: Joint-7 frame to flange (panda_link8) along z, then flange to panda_grasptarget along z (m).
FLANGE_OFFSET_M = 0.107
GRASPTARGET_OFFSET_M = 0.105
_EE_OFFSET_M = FLANGE_OFFSET_M + GRASPTARGET_OFFSET_M
# The chain's constants as Python floats, for PandaKinematics.ee_position's one-configuration path.
_CHAIN = tuple(zip(_COS_ALPHA.tolist(), _SIN_ALPHA.tolist(), _DH_A_M.tolist(), _DH_D_M.tolist()))
_EE_OFFSET_FLOAT = float(_EE_OFFSET_M)


def select_joint_positions(names, positions, joint_names=JOINT_NAMES) -> np.ndarray:
    """Positions (rad) of ``joint_names``, in that order, picked by name from a JointState-like
    pair of lists (``names``, ``positions``).

    Raises ``ValueError`` naming the missing joints and the names received when the message lacks
    any of them (e.g. a real arm whose joints are named otherwise, or a gripper-only message).
    """
    index = {name: i for i, name in enumerate(names)}
    missing = [n for n in joint_names if n not in index or index[n] >= len(positions)]
    if missing:
        raise ValueError(f"joint state lacks positions for {missing}; got names {list(names)}")
    return np.array([positions[index[n]] for n in joint_names], dtype=float)


class IKError(RuntimeError):
    """Inverse kinematics found no joint configuration within tolerance of the target."""


class PandaKinematics:
    """Panda forward kinematics, position Jacobian and damped-least-squares position IK.

    Parameters
    ----------
    base_m:
        Position of ``panda_link0`` in the ``world`` frame (m); orientation is identity.
    lower_rad, upper_rad:
        Joint position limits used to clamp IK solutions (rad).
    """

    n_joints = 7

    def __init__(self, base_m=DEFAULT_ROBOT_BASE_M, lower_rad=JOINT_LOWER_RAD, upper_rad=JOINT_UPPER_RAD) -> None:
        base = np.asarray(base_m, dtype=float)
        if base.shape != (3,) or not np.all(np.isfinite(base)):
            raise ValueError(f"robot base must be a finite [x, y, z] in metres, got {base_m!r}")
        self.base_m = base
        self._base_list = tuple(float(v) for v in np.asarray(base, dtype=float).reshape(3))
        self.lower_rad = np.asarray(lower_rad, dtype=float).copy()
        self.upper_rad = np.asarray(upper_rad, dtype=float).copy()
        if self.lower_rad.shape != (7,) or self.upper_rad.shape != (7,) or np.any(self.upper_rad <= self.lower_rad):
            raise ValueError(f"joint limits must be 7 (lower < upper) pairs, got {lower_rad!r} / {upper_rad!r}")

    # ------------------------------------------------------------------ forward kinematics
    def joint_frames(self, q_rad) -> np.ndarray:
        """World transforms of the 7 joint frames and the EE, shape ``(..., 8, 4, 4)``.

        ``q_rad`` may be ``(7,)`` or any batch ``(..., 7)``; frame 7 is the EE (grasp target)
        frame translated along joint 7's z axis (its rotation about z is not applied).
        """
        q = np.asarray(q_rad, dtype=float)
        if q.shape[-1] != 7:
            raise ValueError(f"expected joint vectors of length 7, got shape {q.shape}")
        batch = q.shape[:-1]
        ct, st = np.cos(q), np.sin(q)
        ca, sa = np.cos(_DH_ALPHA_RAD), np.sin(_DH_ALPHA_RAD)
        # Per-joint link transforms, shape (..., 7, 4, 4), in closed form for the Craig convention.
        link = np.zeros(batch + (7, 4, 4))
        link[..., 0, 0] = ct
        link[..., 0, 1] = -st
        link[..., 0, 3] = _DH_A_M
        link[..., 1, 0] = st * ca
        link[..., 1, 1] = ct * ca
        link[..., 1, 2] = -sa
        link[..., 1, 3] = -sa * _DH_D_M
        link[..., 2, 0] = st * sa
        link[..., 2, 1] = ct * sa
        link[..., 2, 2] = ca
        link[..., 2, 3] = ca * _DH_D_M
        link[..., 3, 3] = 1.0
        frames = np.empty(batch + (8, 4, 4))
        current = np.broadcast_to(np.eye(4), batch + (4, 4)).copy()
        current[..., :3, 3] = self.base_m
        for i in range(7):
            current = current @ link[..., i, :, :]
            frames[..., i, :, :] = current
        ee = current.copy()
        ee[..., :3, 3] = current[..., :3, 3] + _EE_OFFSET_M * current[..., :3, 2]
        frames[..., 7, :, :] = ee
        return frames

    def fk(self, q_rad) -> np.ndarray:
        """EE (``panda_grasptarget``) position in ``world`` (m) for ``(7,)`` or ``(..., 7)`` joints.

        Position-only chain (rotation columns and origin), several times faster than
        :meth:`joint_frames` for the large batches the planner checks.
        """
        q = np.asarray(q_rad, dtype=float)
        if q.shape[-1] != 7:
            raise ValueError(f"expected joint vectors of length 7, got shape {q.shape}")
        batch = q.shape[:-1]
        ct, st = np.cos(q), np.sin(q)
        # Columns x, y, z of the current frame's rotation and its origin, each (..., 3).
        x = np.broadcast_to(np.array([1.0, 0.0, 0.0]), batch + (3,))
        y = np.broadcast_to(np.array([0.0, 1.0, 0.0]), batch + (3,))
        z = np.broadcast_to(np.array([0.0, 0.0, 1.0]), batch + (3,))
        p = np.broadcast_to(self.base_m, batch + (3,))
        for i in range(7):
            ca, sa = _COS_ALPHA[i], _SIN_ALPHA[i]
            # TransX(a) and RotX(alpha) then TransZ(d): origin moves along x, then the new z.
            y_a = ca * y + sa * z
            z_a = -sa * y + ca * z
            p = p + _DH_A_M[i] * x + _DH_D_M[i] * z_a
            c, s = ct[..., i, None], st[..., i, None]
            x, y = c * x + s * y_a, -s * x + c * y_a
            z = z_a
        return p + _EE_OFFSET_M * z

    def ee_position(self, q_rad) -> np.ndarray:
        """EE position in ``world`` (m); the same values as :meth:`fk`, bit for bit.

        One configuration ``(7,)`` -- what a node needs once per tick -- takes :meth:`fk`'s chain
        on Python floats (the same operations in the same order, the cosines and sines from the
        same NumPy calls), ~5x less CPU than NumPy's calls on 3-vectors; batches go to :meth:`fk`."""
        q = np.asarray(q_rad, dtype=float)
        if q.shape != (7,):
            return self.fk(q)
        ct, st = np.cos(q).tolist(), np.sin(q).tolist()
        x0, x1, x2 = 1.0, 0.0, 0.0
        y0, y1, y2 = 0.0, 1.0, 0.0
        z0, z1, z2 = 0.0, 0.0, 1.0
        p0, p1, p2 = self._base_list
        for i in range(7):
            ca, sa, a, d = _CHAIN[i]
            ya0, ya1, ya2 = ca * y0 + sa * z0, ca * y1 + sa * z1, ca * y2 + sa * z2
            z0, z1, z2 = -sa * y0 + ca * z0, -sa * y1 + ca * z1, -sa * y2 + ca * z2
            p0, p1, p2 = p0 + a * x0 + d * z0, p1 + a * x1 + d * z1, p2 + a * x2 + d * z2
            c, s = ct[i], st[i]
            x0, x1, x2, y0, y1, y2 = (c * x0 + s * ya0, c * x1 + s * ya1, c * x2 + s * ya2,
                                      -s * x0 + c * ya0, -s * x1 + c * ya1, -s * x2 + c * ya2)
        e = _EE_OFFSET_FLOAT
        return np.array([p0 + e * z0, p1 + e * z1, p2 + e * z2])

    @staticmethod
    def arm_positions(names, positions, joint_names=JOINT_NAMES) -> np.ndarray:
        """The arm's 7 positions (rad, ``joint_names`` order) picked by name from a JointState-like
        pair of lists; see :func:`select_joint_positions`."""
        return select_joint_positions(names, positions, joint_names)

    def fk_many(self, q_rad) -> np.ndarray:
        """Vectorised FK over an ``(N, 7)`` array of configurations -> ``(N, 3)`` positions (m)."""
        q = np.asarray(q_rad, dtype=float).reshape(-1, 7)
        return self.fk(q)

    def tool_axis(self, q_rad) -> np.ndarray:
        """Unit approach (z) axis of the hand in ``world`` for ``(..., 7)`` joints."""
        return self.joint_frames(q_rad)[..., 7, :3, 2]

    def jacobian(self, q_rad) -> tuple[np.ndarray, np.ndarray]:
        """Position Jacobian ``(3, 7)`` (m/rad) and angular Jacobian ``(3, 7)`` at ``q_rad``."""
        frames = self.joint_frames(np.asarray(q_rad, dtype=float).reshape(7))
        z = frames[:7, :3, 2]
        origins = frames[:7, :3, 3]
        ee = frames[7, :3, 3]
        jp = np.cross(z, ee - origins).T
        return jp, z.T.copy()

    # ------------------------------------------------------------------ inverse kinematics
    def within_limits(self, q_rad, tol_rad: float = 1e-9) -> bool:
        q = np.asarray(q_rad, dtype=float)
        return bool(np.all(q >= self.lower_rad - tol_rad) and np.all(q <= self.upper_rad + tol_rad))

    def ik(self, target_m, seed_rad, nominal_rad=None, tool_axis_world=(0.0, 0.0, -1.0),
           tolerance_m: float = 1e-3, max_iterations: int = 300, damping: float = 0.02,
           posture_gain: float = 0.1, orientation_gain: float = 0.5,
           limit_margin_rad: float = 0.02) -> np.ndarray:
        """Damped-least-squares position IK for the EE point.

        The primary task is the EE position. In the Jacobian null space the solver prefers
        ``nominal_rad`` (default: the seed, normally the home posture) and, softly, a hand
        approach axis along ``tool_axis_world`` (default straight down; ``None`` disables it).
        Joints are clamped ``limit_margin_rad`` inside their limits at every step.

        Raises :class:`IKError` when the final EE error exceeds ``tolerance_m`` (m).
        """
        target = np.asarray(target_m, dtype=float)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise IKError(f"IK target must be a finite [x, y, z] in metres, got {target_m!r}")
        lo = self.lower_rad + limit_margin_rad
        hi = self.upper_rad - limit_margin_rad
        q = np.clip(np.asarray(seed_rad, dtype=float).reshape(7), lo, hi)
        nominal = q.copy() if nominal_rad is None else np.asarray(nominal_rad, dtype=float).reshape(7)
        axis_goal = None
        if tool_axis_world is not None:
            axis_goal = np.asarray(tool_axis_world, dtype=float)
            axis_goal = axis_goal / np.linalg.norm(axis_goal)
        eye = np.eye(7)
        err_norm = np.inf
        for _ in range(max_iterations):
            frames = self.joint_frames(q)
            ee = frames[7, :3, 3]
            err = target - ee
            err_norm = float(np.linalg.norm(err))
            z = frames[:7, :3, 2]
            jp = np.cross(z, ee - frames[:7, :3, 3]).T
            # Damped pseudo-inverse J^T (J J^T + lambda^2 I)^-1; step length limited for stability.
            jj = jp @ jp.T + damping**2 * np.eye(3)
            j_pinv = jp.T @ np.linalg.inv(jj)
            step = err if err_norm < 0.1 else err * (0.1 / err_norm)
            dq = j_pinv @ step
            # Secondary objectives projected into the null space of the position task.
            secondary = posture_gain * (nominal - q)
            if axis_goal is not None:
                # Rotation vector turning the hand axis towards the goal axis, mapped through J_w^T.
                axis_err = np.cross(frames[7, :3, 2], axis_goal)
                secondary = secondary + orientation_gain * (z @ axis_err)
            dq = dq + (eye - j_pinv @ jp) @ secondary
            if err_norm < 0.2 * tolerance_m and np.linalg.norm(dq) < 1e-5:
                break
            q = np.clip(q + dq, lo, hi)
        err_norm = float(np.linalg.norm(target - self.fk(q)))
        if err_norm > tolerance_m:
            raise IKError(
                f"no IK solution within {tolerance_m * 1000:.1f} mm for EE target {target.tolist()} m "
                f"(best error {err_norm * 1000:.1f} mm); the target may be outside the Panda's workspace")
        return q

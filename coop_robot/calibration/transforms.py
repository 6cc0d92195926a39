"""4x4 rigid transforms and the flange pose of the Panda (``world`` frame, metres)."""

from __future__ import annotations

import cv2
import numpy as np

from coop_robot.control.kinematics import FLANGE_OFFSET_M, PandaKinematics


def make_transform(rotation, translation) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = np.asarray(rotation, dtype=float)
    t[:3, 3] = np.asarray(translation, dtype=float).reshape(3)
    return t


def invert(t: np.ndarray) -> np.ndarray:
    r = t[..., :3, :3]
    out = np.zeros_like(t)
    out[..., :3, :3] = np.swapaxes(r, -1, -2)
    out[..., :3, 3] = -np.einsum("...ji,...j->...i", r, t[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def from_rotvec(vec6) -> np.ndarray:
    """``[rx, ry, rz, tx, ty, tz]`` (axis-angle rad, m) -> 4x4."""
    v = np.asarray(vec6, dtype=float)
    rotation, _ = cv2.Rodrigues(v[:3].reshape(3, 1))
    return make_transform(rotation, v[3:])


def to_rotvec(t: np.ndarray) -> np.ndarray:
    rvec, _ = cv2.Rodrigues(np.asarray(t[:3, :3], dtype=float))
    return np.concatenate([rvec.reshape(3), t[:3, 3]])


def rotation_angle_rad(r: np.ndarray) -> float:
    """Angle (rad) of a 3x3 rotation."""
    return float(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)))


def flange_poses(q_rad, robot_base_m) -> np.ndarray:
    """Pose of the flange (``panda_link8``) in ``world`` for ``(7,)`` or ``(N, 7)`` joints, ``(..., 4, 4)``.

    The flange frame is joint 7's frame moved ``FLANGE_OFFSET_M`` along its z axis (panda.urdf's
    fixed ``panda_joint8``), with the robot base at ``robot_base_m`` and identity orientation.
    """
    frames = PandaKinematics(base_m=robot_base_m).joint_frames(np.asarray(q_rad, dtype=float))
    flange = frames[..., 6, :, :].copy()
    flange[..., :3, 3] += FLANGE_OFFSET_M * flange[..., :3, 2]
    return flange

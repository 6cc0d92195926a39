"""Pinhole camera model shared by the simulated camera and perception.

Conventions (REP 103/105): the camera's *optical* frame has x right, y down, z forward.
Its pose in ``world`` is a position (m) and a unit quaternion ``[x, y, z, w]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import transforms3d


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (0-based pixel indices, centre of pixel (0,0) at (0,0))."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_vertical_fov(cls, width: int, height: int, vfov_deg: float) -> Intrinsics:
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if not 1.0 <= vfov_deg <= 170.0:
            raise ValueError(f"vertical field of view must be in [1, 170] deg, got {vfov_deg}")
        fy = 0.5 * height / np.tan(np.radians(vfov_deg) / 2.0)
        # PyBullet renders square pixels; pixel (u, v) covers [u, u+1), its centre is u + 0.5.
        return cls(width, height, fy, fy, width / 2.0 - 0.5, height / 2.0 - 0.5)

    @classmethod
    def from_k(cls, width: int, height: int, k) -> Intrinsics:
        k = np.asarray(k, dtype=float).reshape(-1)
        if k.size != 9 or not np.all(np.isfinite(k)) or k[0] <= 0 or k[4] <= 0:
            raise ValueError(f"camera matrix K must be 9 finite values with fx, fy > 0, got {k.tolist()}")
        return cls(int(width), int(height), float(k[0]), float(k[4]), float(k[2]), float(k[5]))

    @property
    def k(self) -> list[float]:
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]


@dataclass(frozen=True)
class CameraPose:
    """Pose of the optical frame in ``world``: ``p_world = R @ p_optical + t``."""

    position_m: np.ndarray
    rotation: np.ndarray  # 3x3, columns are the optical axes in world

    @classmethod
    def from_position_quaternion(cls, position_m, quaternion_xyzw) -> CameraPose:
        p = np.asarray(position_m, dtype=float).reshape(3)
        q = np.asarray(quaternion_xyzw, dtype=float).reshape(4)
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
            raise ValueError(f"camera pose must be finite, got position={p.tolist()} quaternion={q.tolist()}")
        n = np.linalg.norm(q)
        if abs(n - 1.0) > 1e-3:
            raise ValueError(f"camera orientation must be a unit quaternion [x, y, z, w], got norm {n:.4f}")
        x, y, z, w = q / n
        return cls(p, transforms3d.quaternions.quat2mat([w, x, y, z]))

    @classmethod
    def look_at(cls, position_m, target_m, up_world=(0.0, 0.0, 1.0)) -> CameraPose:
        p = np.asarray(position_m, dtype=float)
        forward = np.asarray(target_m, dtype=float) - p
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, np.asarray(up_world, dtype=float))
        if np.linalg.norm(right) < 1e-9:
            raise ValueError("camera up vector is parallel to the viewing direction")
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        return cls(p, np.column_stack([right, down, forward]))

    @property
    def quaternion_xyzw(self) -> list[float]:
        w, x, y, z = transforms3d.quaternions.mat2quat(self.rotation)
        return [float(x), float(y), float(z), float(w)]

    def to_world(self, points_optical) -> np.ndarray:
        pts = np.asarray(points_optical, dtype=float).reshape(-1, 3)
        return pts @ self.rotation.T + self.position_m

    def to_optical(self, points_world) -> np.ndarray:
        pts = np.asarray(points_world, dtype=float).reshape(-1, 3)
        return (pts - self.position_m) @ self.rotation


def pixel_to_optical(u, v, depth_m, intr: Intrinsics) -> np.ndarray:
    """Back-project pixel(s) with depth along the optical axis (z) to optical-frame points."""
    u = np.asarray(u, dtype=float)
    v = np.asarray(v, dtype=float)
    z = np.asarray(depth_m, dtype=float)
    return np.stack([(u - intr.cx) * z / intr.fx, (v - intr.cy) * z / intr.fy, z], axis=-1)


def optical_to_pixel(points_optical, intr: Intrinsics) -> np.ndarray:
    pts = np.asarray(points_optical, dtype=float).reshape(-1, 3)
    return np.stack([intr.fx * pts[:, 0] / pts[:, 2] + intr.cx, intr.fy * pts[:, 1] / pts[:, 2] + intr.cy], axis=-1)


def opengl_view_matrix(pose: CameraPose) -> list[float]:
    """Column-major 4x4 OpenGL view matrix (camera x right, y up, z backward) for PyBullet."""
    r_gl = np.column_stack([pose.rotation[:, 0], -pose.rotation[:, 1], -pose.rotation[:, 2]])
    view = np.eye(4)
    view[:3, :3] = r_gl.T
    view[:3, 3] = -r_gl.T @ pose.position_m
    return view.T.reshape(-1).tolist()


def opengl_depth_to_metres(depth_buffer, near_m: float, far_m: float) -> np.ndarray:
    """PyBullet's non-linear [0, 1] depth buffer -> distance along the optical axis (m)."""
    d = np.asarray(depth_buffer, dtype=np.float64)
    return (far_m * near_m / (far_m - (far_m - near_m) * d)).astype(np.float32)

"""Eye-to-hand solve: the camera's pose in ``world`` from board views and flange poses.

For sample ``i`` the board's pose in the camera, ``T_i`` (board -> optical, from its image), and
the flange's pose in ``world``, ``G_i`` (flange -> world, from the joint state), are tied by two
unknown constant transforms, the camera in ``world`` ``X`` (optical -> world) and the board on
the flange ``Y`` (board -> flange):  ``X @ T_i = G_i @ Y``. OpenCV's hand-eye solvers give a
first ``X`` (``cv2.calibrateHandEye`` in the eye-to-hand arrangement: it is handed
world -> flange instead of flange -> world and returns the camera in ``world``), then ``X`` and
``Y`` are refined together by Levenberg-Marquardt on the reprojection error of every corner in
every image.

The solve is only well posed when the flange turned about at least two different axes between
samples; :func:`check_motion` refuses a set that did not, before anything is solved. After the
solve, the residuals (all corners, each image, where each image alone would put the camera) and
the 1-sigma uncertainty of the camera pose are held against :class:`Limits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from coop_robot.calibration.board import BoardView
from coop_robot.calibration.transforms import from_rotvec, invert, rotation_angle_rad, to_rotvec

#: Fewest board views a solve accepts (three already determine it; more average out the noise).
MIN_POSES = 5
#: Smallest rotation between two samples that counts as a turn of the flange (deg).
MIN_TURN_DEG = 5.0
#: The largest turn between any two samples must reach this (deg).
MIN_LARGEST_TURN_DEG = 20.0
#: The turns' axes must spread at least this far from one common axis (deg).
MIN_AXIS_SPREAD_DEG = 20.0

_HAND_EYE_METHODS = {
    "tsai": cv2.CALIB_HAND_EYE_TSAI,
    "park": cv2.CALIB_HAND_EYE_PARK,
    "horaud": cv2.CALIB_HAND_EYE_HORAUD,
    "andreff": cv2.CALIB_HAND_EYE_ANDREFF,
    "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS,
}


class CalibrationError(ValueError):
    """Samples from which no trustworthy calibration follows; the message says why."""


@dataclass(frozen=True)
class Limits:
    """When a solution is refused: residuals above these mean a bad sample, a wrong board size,
    wrong intrinsics or a board that slipped on the flange."""

    max_reprojection_rms_px: float = 1.5     # over all corners of all images
    max_pose_rms_px: float = 3.0             # of any one image
    max_pose_offset_mm: float = 15.0         # camera position from one image alone vs the solution
    max_pose_offset_deg: float = 1.0         # camera orientation from one image alone vs the solution
    max_position_sigma_mm: float = 2.0       # how loosely the samples pin the camera's position (1 sigma)
    max_rotation_sigma_deg: float = 0.2      # ... and its orientation

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class PoseResidual:
    """How well one sample agrees with the solution."""

    label: str
    corners: int
    reprojection_rms_px: float
    camera_offset_mm: float    # the camera position this sample alone implies, from the solution's
    camera_offset_deg: float   # the same for the camera's orientation


@dataclass(frozen=True)
class Calibration:
    """The solution: ``camera_in_world`` (optical -> world, 4x4) and ``board_in_flange``."""

    camera_in_world: np.ndarray
    board_in_flange: np.ndarray
    reprojection_rms_px: float
    residuals: tuple[PoseResidual, ...]
    initial_method: str
    position_sigma_mm: float      # 1-sigma uncertainty from the image noise and the poses' geometry
    rotation_sigma_deg: float
    problems: tuple[str, ...] = field(default=())

    @property
    def position_m(self) -> list[float]:
        return [float(x) for x in self.camera_in_world[:3, 3]]

    @property
    def quaternion_xyzw(self) -> list[float]:
        import transforms3d  # noqa: PLC0415

        w, x, y, z = transforms3d.quaternions.mat2quat(self.camera_in_world[:3, :3])
        if w < 0:
            w, x, y, z = -w, -x, -y, -z
        return [float(x), float(y), float(z), float(w)]

    @property
    def max_offset_mm(self) -> float:
        return max(r.camera_offset_mm for r in self.residuals)

    @property
    def max_offset_deg(self) -> float:
        return max(r.camera_offset_deg for r in self.residuals)


def check_motion(flange_in_world) -> None:
    """Refuse flange poses from which the hand-eye problem has no unique solution.

    Needed: turns of the flange (relative rotations between samples) about at least two clearly
    different axes. Pure translation leaves the camera's position undetermined; turns about one
    axis leave a translation along that axis free.
    """
    rotations = np.asarray(flange_in_world, dtype=float)[:, :3, :3]
    n = len(rotations)
    if n < 2:
        raise CalibrationError(f"need at least {MIN_POSES} poses of the arm, got {n}")
    axes, largest = [], 0.0
    for i in range(n):
        for j in range(i + 1, n):
            rel = rotations[i].T @ rotations[j]
            angle = rotation_angle_rad(rel)
            largest = max(largest, angle)
            if np.degrees(angle) >= MIN_TURN_DEG:
                rvec, _ = cv2.Rodrigues(rel)
                axes.append(rvec.reshape(3) / np.linalg.norm(rvec))
    if np.degrees(largest) < MIN_LARGEST_TURN_DEG:
        raise CalibrationError(
            f"degenerate motion: the flange's orientation hardly changed between the poses (largest turn "
            f"{np.degrees(largest):.1f} deg, need {MIN_LARGEST_TURN_DEG:g}); moving the board without turning "
            f"it (pure translation) cannot fix the camera; tilt the board about different axes")
    a = np.asarray(axes)
    # Principal axis of the turns (axes are signless: use their outer products) and the spread about it.
    _, vectors = np.linalg.eigh(a.T @ a)
    principal = vectors[:, -1]
    spread = np.degrees(np.max(np.arccos(np.clip(np.abs(a @ principal), 0.0, 1.0))))
    if spread < MIN_AXIS_SPREAD_DEG:
        raise CalibrationError(
            f"degenerate motion: every turn of the flange was about one axis (all within {spread:.1f} deg of "
            f"{np.round(principal, 2).tolist()} in the flange frame, need {MIN_AXIS_SPREAD_DEG:g} deg of spread); "
            f"a rotation about a single axis leaves the camera's position along it undetermined; tilt the board "
            f"about at least two different axes")


def _mean_transform(transforms) -> np.ndarray:
    """Chordal mean of rotations (projected back onto SO(3)) and mean translation."""
    t = np.asarray(transforms)
    u, _, vt = np.linalg.svd(t[:, :3, :3].sum(axis=0))
    r = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    out = np.eye(4)
    out[:3, :3] = r
    out[:3, 3] = t[:, :3, 3].mean(axis=0)
    return out


def _residuals(params, flange_in_world, views, k, d) -> np.ndarray:
    camera = from_rotvec(params[:6])
    board = from_rotvec(params[6:])
    world_to_camera = invert(camera)
    out = []
    for g, view in zip(flange_in_world, views):
        t = world_to_camera @ g @ board
        rvec, _ = cv2.Rodrigues(t[:3, :3])
        projected, _ = cv2.projectPoints(view.object_points_m, rvec, t[:3, 3], k, d)
        out.append((projected.reshape(-1, 2) - view.image_points_px).reshape(-1))
    return np.concatenate(out)


def _refine(params, flange_in_world, views, k, d, iterations: int = 50) -> np.ndarray:
    """Levenberg-Marquardt over the 12 parameters, numerical Jacobian (forward differences)."""
    x = np.asarray(params, dtype=float).copy()
    r = _residuals(x, flange_in_world, views, k, d)
    cost = float(r @ r)
    damping = 1e-3
    for _ in range(iterations):
        jac = np.empty((r.size, x.size))
        step = 1e-7  # rad or m
        for c in range(x.size):
            dx = x.copy()
            dx[c] += step
            jac[:, c] = (_residuals(dx, flange_in_world, views, k, d) - r) / step
        jtj, jtr = jac.T @ jac, jac.T @ r
        improved = converged = False
        while damping < 1e8:
            delta = np.linalg.solve(jtj + damping * np.diag(np.diag(jtj) + 1e-12), -jtr)
            candidate = x + delta
            r_new = _residuals(candidate, flange_in_world, views, k, d)
            cost_new = float(r_new @ r_new)
            if cost_new < cost:
                x, r, damping, improved = candidate, r_new, max(damping / 10.0, 1e-9), True
                converged = cost - cost_new < 1e-12 * max(cost, 1.0) or np.max(np.abs(delta)) < 1e-10
                cost = cost_new
                break
            damping *= 10.0
        if not improved or converged:
            break
    return x


def _uncertainty(params, flange_in_world, views, k, d) -> tuple[float, float]:
    """1-sigma uncertainty of the camera's position (m) and orientation (rad) along their worst
    directions, from the reprojection residuals' spread and the Jacobian at the solution
    (perturbations: small rotations in ``world`` and shifts of the two transforms).

    It measures how well the samples pin the camera down (few corners, little or one-axis
    turning), not the arm's own kinematic errors, which the per-pose offsets show."""
    camera, board = from_rotvec(params[:6]), from_rotvec(params[6:])

    def residuals(delta) -> np.ndarray:
        cam, brd = camera.copy(), board.copy()
        cam[:3, :3] = cv2.Rodrigues(delta[0:3].reshape(3, 1))[0] @ camera[:3, :3]
        cam[:3, 3] += delta[3:6]
        brd[:3, :3] = cv2.Rodrigues(delta[6:9].reshape(3, 1))[0] @ board[:3, :3]
        brd[:3, 3] += delta[9:12]
        return _residuals(np.concatenate([to_rotvec(cam), to_rotvec(brd)]), flange_in_world, views, k, d)

    r0 = residuals(np.zeros(12))
    jac = np.empty((r0.size, 12))
    step = 1e-6
    for c in range(12):
        delta = np.zeros(12)
        delta[c] = step
        jac[:, c] = (residuals(delta) - r0) / step
    dof = max(r0.size - 12, 1)
    variance = float(r0 @ r0) / dof
    try:
        cov = variance * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        return float("inf"), float("inf")
    rot = np.sqrt(max(float(np.max(np.linalg.eigvalsh(cov[0:3, 0:3]))), 0.0))
    pos = np.sqrt(max(float(np.max(np.linalg.eigvalsh(cov[3:6, 3:6]))), 0.0))
    return pos, rot


def _worst_sample(params, flange_in_world, views, k, d):
    """Leave-one-out: the sample whose removal lets the others fit best, if that is a clear
    improvement; ``(index, rms_px of the others)`` or None."""
    total = _rms(_residuals(params, flange_in_world, views, k, d))
    best = None
    for i in range(len(views)):
        keep = [j for j in range(len(views)) if j != i]
        refined = _refine(params, flange_in_world[keep], [views[j] for j in keep], k, d, iterations=15)
        rms = _rms(_residuals(refined, flange_in_world[keep], [views[j] for j in keep], k, d))
        if best is None or rms < best[1]:
            best = (i, rms)
    return best if best is not None and best[1] < 0.5 * total else None


def _rms(residual: np.ndarray) -> float:
    """RMS of the pixel distances in a flat or ``(N, 2)`` residual (px)."""
    r = np.asarray(residual, dtype=float).reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum(r * r, axis=1)))) if r.size else 0.0


def solve(flange_in_world, views: list[BoardView], camera_matrix, dist_coeffs, labels=None,
          limits: Limits | None = None) -> Calibration:
    """The camera in ``world`` from flange poses (world, 4x4 each) and the board views of the same
    samples. Raises :class:`CalibrationError` for a set that is too small or degenerate, or when
    the residuals exceed ``limits`` (the message names the samples and the numbers)."""
    g = np.asarray(flange_in_world, dtype=float)
    if len(g) != len(views):
        raise ValueError(f"{len(g)} flange poses but {len(views)} board views")
    limits = limits or Limits()
    labels = list(labels) if labels is not None else [f"pose {i}" for i in range(len(views))]
    if len(views) < MIN_POSES:
        raise CalibrationError(f"too few poses: the board was seen in {len(views)}, need at least {MIN_POSES} "
                               f"(10-15 recommended)")
    check_motion(g)
    k = np.asarray(camera_matrix, dtype=float).reshape(3, 3)
    d = np.asarray(dist_coeffs, dtype=float).reshape(-1)
    t_views = np.asarray([v.transform for v in views])

    # A first solution from each of OpenCV's hand-eye methods; the best by reprojection seeds the refinement.
    world_to_flange = invert(g)
    best = None
    for name, method in _HAND_EYE_METHODS.items():
        try:
            r_cam, t_cam = cv2.calibrateHandEye(
                [m[:3, :3] for m in world_to_flange], [m[:3, 3] for m in world_to_flange],
                [m[:3, :3] for m in t_views], [m[:3, 3] for m in t_views], method=method)
        except cv2.error:
            continue
        camera = np.eye(4)
        camera[:3, :3], camera[:3, 3] = r_cam, np.asarray(t_cam).reshape(3)
        if not np.all(np.isfinite(camera)) or abs(np.linalg.det(camera[:3, :3]) - 1.0) > 1e-3:
            continue
        board = _mean_transform(invert(g) @ camera @ t_views)
        params = np.concatenate([to_rotvec(camera), to_rotvec(board)])
        rms = _rms(_residuals(params, g, views, k, d))
        if best is None or rms < best[0]:
            best = (rms, name, params)
    if best is None:
        raise CalibrationError("OpenCV's hand-eye solvers found no solution for these samples")
    _, method, params = best
    params = _refine(params, g, views, k, d)
    camera, board = from_rotvec(params[:6]), from_rotvec(params[6:])

    residuals = []
    world_to_camera = invert(camera)
    for label, gi, view in zip(labels, g, views):
        t = world_to_camera @ gi @ board
        rvec, _ = cv2.Rodrigues(t[:3, :3])
        projected, _ = cv2.projectPoints(view.object_points_m, rvec, t[:3, 3], k, d)
        alone = gi @ board @ invert(view.transform)  # the camera this sample alone implies
        residuals.append(PoseResidual(
            label, len(view.corner_ids), _rms(projected.reshape(-1, 2) - view.image_points_px),
            1000.0 * float(np.linalg.norm(alone[:3, 3] - camera[:3, 3])),
            float(np.degrees(rotation_angle_rad(alone[:3, :3].T @ camera[:3, :3])))))
    total = _rms(_residuals(params, g, views, k, d))
    sigma_m, sigma_rad = _uncertainty(params, g, views, k, d)
    sigma_mm, sigma_deg = 1000.0 * sigma_m, float(np.degrees(sigma_rad))

    problems = []
    if sigma_mm > limits.max_position_sigma_mm or sigma_deg > limits.max_rotation_sigma_deg:
        problems.append(f"the samples do not pin the camera down: +-{sigma_mm:.2f} mm / +-{sigma_deg:.3f} deg "
                        f"(1 sigma; limits {limits.max_position_sigma_mm:g} mm / {limits.max_rotation_sigma_deg:g} "
                        f"deg): add poses turned about other axes, nearer the camera, filling more of the image")
    if total > limits.max_reprojection_rms_px:
        problems.append(f"reprojection error {total:.2f} px RMS over all corners exceeds "
                        f"{limits.max_reprojection_rms_px:g} px: a wrong board size (--square-m / --marker-m as "
                        f"printed?), wrong intrinsics, or a board loose on the flange?")
    outliers = [r for r in residuals if r.reprojection_rms_px > limits.max_pose_rms_px
                or r.camera_offset_mm > limits.max_pose_offset_mm or r.camera_offset_deg > limits.max_pose_offset_deg]
    if outliers:
        listed = ", ".join(f"{r.label} ({r.reprojection_rms_px:.2f} px, alone {r.camera_offset_mm:.1f} mm / "
                           f"{r.camera_offset_deg:.2f} deg)" for r in outliers)
        hint = ("the arm moving while captured, or a wrong joint state? Remove them from samples.yaml and solve "
                "again" if 2 * len(outliers) <= len(residuals) else "most poses disagree: check the board and the "
                "camera_info first")
        problems.append(f"{len(outliers)} of {len(residuals)} poses disagree with the solution (limits "
                        f"{limits.max_pose_rms_px:g} px, {limits.max_pose_offset_mm:g} mm, "
                        f"{limits.max_pose_offset_deg:g} deg): {listed}; {hint}")
    fit_problems = total > limits.max_reprojection_rms_px or bool(outliers)
    if fit_problems and len(views) - 1 >= MIN_POSES:
        suspect = _worst_sample(params, g, views, k, d)
        if suspect is not None:
            index, rms_without = suspect
            problems.append(f"without {labels[index]} the other poses fit ({rms_without:.2f} px RMS): remove it from "
                            f"samples.yaml (or capture it again) and solve again")
    result = Calibration(camera, board, total, tuple(residuals), method, sigma_mm, sigma_deg, tuple(problems))
    if problems:
        raise ResidualsTooLarge(result)
    return result


class ResidualsTooLarge(CalibrationError):
    """The solve converged but disagrees with its samples; ``calibration`` holds it for the report."""

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        super().__init__("the solution does not fit the samples:\n  " + "\n  ".join(calibration.problems))

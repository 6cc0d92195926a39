"""From a sample directory to a calibration: joint states -> flange poses, images -> board views,
then the checks and the solve of :mod:`.solve`. No ROS; the command and the tests call this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from coop_robot.calibration.board import BoardView, detect_board
from coop_robot.calibration.samples import SampleSet
from coop_robot.calibration.solve import MIN_POSES, Calibration, CalibrationError, Limits, check_motion, solve
from coop_robot.calibration.transforms import flange_poses
from coop_robot.control.kinematics import JOINT_NAMES, select_joint_positions


@dataclass(frozen=True)
class Outcome:
    calibration: Calibration
    views: dict[str, BoardView | None]   # image -> its board view, None where the board was not found


def calibrate_sample_set(sample_set: SampleSet, robot_base_m, limits: Limits | None = None,
                         progress: Callable[[str], None] | None = None) -> Outcome:
    """Calibrate from ``sample_set``; raises :class:`CalibrationError` (too few poses, degenerate
    motion, no board found, residuals too large) with a message that says what to do."""
    limits = limits or Limits()
    n = len(sample_set.samples)
    if n < MIN_POSES:
        raise CalibrationError(f"too few poses: {sample_set.directory} holds {n} sample(s), need at least "
                               f"{MIN_POSES} (10-15 recommended)")
    try:
        q = np.array([select_joint_positions(sample_set.joint_names, s.joint_positions_rad, JOINT_NAMES)
                      for s in sample_set.samples])
    except ValueError as exc:
        raise CalibrationError(f"{sample_set.directory}: {exc}") from exc
    flanges = flange_poses(q, robot_base_m)
    check_motion(flanges)  # before any image is read: a degenerate set is refused at once

    camera = sample_set.camera
    views: dict[str, BoardView | None] = {}
    for i, sample in enumerate(sample_set.samples):
        view = detect_board(sample_set.board, sample_set.load_image(sample), camera.camera_matrix,
                            camera.dist_coeffs)
        views[sample.image] = view
        if progress is not None:
            found = f"{len(view.corner_ids)} corners" if view is not None else "board not found"
            progress(f"[{i + 1}/{n}] {sample.image}: {found}")
    seen = [i for i, s in enumerate(sample_set.samples) if views[s.image] is not None]
    board = sample_set.board
    if not seen:
        raise CalibrationError(
            f"the board was not found in any of the {n} images in {sample_set.directory}; check that the board "
            f"in samples.yaml ({board.squares_x} x {board.squares_y} squares, {board.dictionary}) is the one "
            f"printed, that it is in view and in focus, and the lighting")
    if len(seen) < MIN_POSES:
        missing = [s.image for s in sample_set.samples if views[s.image] is None]
        raise CalibrationError(f"too few poses: the board was found in {len(seen)} of {n} images, need at least "
                               f"{MIN_POSES}; not found in {', '.join(missing)}")
    calibration = solve(flanges[seen], [views[sample_set.samples[i].image] for i in seen],
                        camera.camera_matrix, camera.dist_coeffs,
                        labels=[sample_set.samples[i].image for i in seen], limits=limits)
    return Outcome(calibration, views)

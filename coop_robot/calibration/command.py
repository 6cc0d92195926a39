"""Calibrate the camera against the robot base (eye-to-hand, ChArUco board on the flange).

``coop-robot calibrate board`` writes the board to print; ``capture`` (ROS) records one image and
joint state per arm pose from a live camera and arm; ``solve`` computes the camera's pose in the
robot base (``world``) frame from the samples and writes ``camera_position_m`` /
``camera_orientation_xyzw`` into a cell file; ``simulate`` renders samples in the PyBullet
simulation, where the true camera pose is known. Exit 0 on success, 2 on bad input or a
calibration that fails its checks -- then nothing is written.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

PROG = "coop-robot calibrate"
EXIT_BAD_INPUT = 2


class CalibrationInputError(ValueError):
    """A command-line input the calibration cannot use (reported with exit 2)."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from exc
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_board_options(p) -> None:
    from coop_robot.calibration.board import DICTIONARIES, BoardSpec

    d = BoardSpec()
    g = p.add_argument_group("board (print it with `coop-robot calibrate board`)")
    g.add_argument("--squares-x", type=int, default=d.squares_x, help=f"squares along x (default: {d.squares_x})")
    g.add_argument("--squares-y", type=int, default=d.squares_y, help=f"squares along y (default: {d.squares_y})")
    g.add_argument("--square-m", type=float, default=d.square_m,
                   help=f"side of a chessboard square as printed, m (default: {d.square_m})")
    g.add_argument("--marker-m", type=float, default=d.marker_m,
                   help=f"side of a marker as printed, m (default: {d.marker_m})")
    g.add_argument("--dictionary", default=d.dictionary, choices=sorted(DICTIONARIES),
                   help=f"ArUco dictionary (default: {d.dictionary})")


def _board_from(args):
    from coop_robot.calibration.board import BoardSpec

    return BoardSpec(args.squares_x, args.squares_y, args.square_m, args.marker_m, args.dictionary)


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="calibrate_command", required=True, metavar="{board,capture,solve,simulate}")

    p = sub.add_parser("board", help="write the ChArUco board image to print",
                       description="Write the calibration board as a PNG. Print it at 100 %% (no scaling), "
                                   "measure a square and pass that size as --square-m to `capture`.")
    p.add_argument("out", type=Path, help="PNG file to write (must not exist)")
    p.add_argument("--dpi", type=_positive_int, default=300, help="print resolution (default: 300)")
    _add_board_options(p)

    p = sub.add_parser("capture", help="record calibration samples from the live camera and arm (ROS 2)",
                       description="Subscribe to the colour image, its camera_info and /joint_states; at each "
                                   "Enter, save the newest image with the joint state of the arm at rest. Move "
                                   "the arm (by hand in guiding mode, or with your own tools) between captures: "
                                   "10-15 poses, the board fully in view, tilted 20-40 deg about different axes.")
    p.add_argument("out", type=Path, help="new sample directory to write")
    p.add_argument("--image-topic", default="/camera/camera/color/image_raw", help="colour image (sensor_msgs/Image)")
    p.add_argument("--camera-info-topic", default="/camera/camera/color/camera_info",
                   help="its sensor_msgs/CameraInfo (the intrinsics used)")
    p.add_argument("--joint-states-topic", default="/joint_states", help="sensor_msgs/JointState of the arm")
    p.add_argument("--max-poses", type=_positive_int, default=15, help="stop after this many samples (default: 15)")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: $ROS_DOMAIN_ID, else 0)")
    _add_board_options(p)

    p = sub.add_parser("solve", help="compute the camera pose from a sample directory and write the cell file",
                       description="Detect the board in every image of a sample directory, solve the eye-to-hand "
                                   "calibration, print the residuals, and write camera_position_m / "
                                   "camera_orientation_xyzw (the colour optical frame in the robot base frame) "
                                   "into --cell-file. Too few poses, a board never seen, degenerate motion or "
                                   "residuals over the limits: exit 2, nothing written.")
    p.add_argument("samples", type=Path, help="sample directory (from `capture` or `simulate`)")
    p.add_argument("--cell-file", type=Path,
                   help="parameter file to write the camera pose into; a new file gets the two keys under '/**', "
                        "an existing one is only changed with --update (without --cell-file nothing is written)")
    p.add_argument("--update", action="store_true",
                   help="replace camera_position_m / camera_orientation_xyzw in an existing --cell-file; every "
                        "other line is kept")
    p.add_argument("--robot-base-m", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="robot base (panda_link0) in the world frame, m (default: robot_base_m from --cell-file "
                        "if it has one, else config/world.yaml's)")
    p.add_argument("--compare", type=Path, metavar="PARAMS_FILE",
                   help="also print how far the result is from the camera pose in this parameter file "
                        "(e.g. config/world.yaml in simulation, or your previous calibration)")
    from coop_robot.calibration.solve import Limits

    lim = Limits()
    p.add_argument("--max-reprojection-px", type=_positive_float, default=lim.max_reprojection_rms_px,
                   help=f"refuse above this RMS reprojection error over all corners (default: "
                        f"{lim.max_reprojection_rms_px:g} px)")
    p.add_argument("--max-pose-reprojection-px", type=_positive_float, default=lim.max_pose_rms_px,
                   help=f"refuse when one image's RMS reprojection error exceeds this (default: "
                        f"{lim.max_pose_rms_px:g} px)")
    p.add_argument("--max-pose-offset-mm", type=_positive_float, default=lim.max_pose_offset_mm,
                   help=f"refuse when one pose alone puts the camera further than this from the solution "
                        f"(default: {lim.max_pose_offset_mm:g} mm)")
    p.add_argument("--max-pose-offset-deg", type=_positive_float, default=lim.max_pose_offset_deg,
                   help=f"the same for the camera's orientation (default: {lim.max_pose_offset_deg:g} deg)")

    p.add_argument("--max-position-sigma-mm", type=_positive_float, default=lim.max_position_sigma_mm,
                   help=f"refuse when the samples pin the camera's position only this loosely (1 sigma; default: "
                        f"{lim.max_position_sigma_mm:g} mm)")
    p.add_argument("--max-rotation-sigma-deg", type=_positive_float, default=lim.max_rotation_sigma_deg,
                   help=f"the same for its orientation (default: {lim.max_rotation_sigma_deg:g} deg)")

    p = sub.add_parser("simulate", help="render calibration samples in the PyBullet simulation",
                       description="Render the board on the simulated Panda's flange from the sim camera "
                                   "(config/world.yaml's camera pose, the ground truth) at arm poses chosen to "
                                   "show the whole board at different tilts, and write a sample directory.")
    p.add_argument("out", type=Path, help="new sample directory to write")
    p.add_argument("--poses", type=_positive_int, default=12, help="number of arm poses (default: 12)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pose selection (default: 0)")
    p.add_argument("--width", type=_positive_int, default=1280, help="image width, px (default: 1280)")
    p.add_argument("--height", type=_positive_int, default=960, help="image height, px (default: 960)")
    _add_board_options(p)


def run(args) -> int:
    from coop_robot.calibration.board import BoardError
    from coop_robot.calibration.cellfile import CellFileError
    from coop_robot.calibration.samples import SampleError
    from coop_robot.calibration.solve import CalibrationError

    handlers = {"board": _cmd_board, "capture": _cmd_capture, "solve": _cmd_solve, "simulate": _cmd_simulate}
    try:
        return handlers[args.calibrate_command](args)
    except (BoardError, SampleError, CellFileError, CalibrationError) as exc:
        print(f"{PROG} {args.calibrate_command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _cmd_board(args) -> int:
    from PIL import Image

    board = _board_from(args)
    if args.out.exists():
        print(f"{PROG} board: {args.out} exists; choose a new file", file=sys.stderr)
        return EXIT_BAD_INPUT
    pixels_per_square = max(1, round(board.square_m / 0.0254 * args.dpi))
    image = board.image(pixels_per_square=pixels_per_square)
    try:
        # The PNG carries its resolution, so "actual size" printing gives the board's size in metres.
        Image.fromarray(image).save(args.out, format="PNG", dpi=(args.dpi, args.dpi))
    except (OSError, ValueError) as exc:
        print(f"{PROG} board: could not write {args.out}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    w_m, h_m = board.size_m
    sheet_w, sheet_h = (image.shape[1] / args.dpi * 0.0254, image.shape[0] / args.dpi * 0.0254)
    print(f"board written to {args.out}: {board.squares_x} x {board.squares_y} squares of {board.square_m:g} m "
          f"({w_m:.3f} x {h_m:.3f} m, {sheet_w:.3f} x {sheet_h:.3f} m with its white margin), markers "
          f"{board.marker_m:g} m, {board.dictionary}; print it at 100 % (actual size), glue it flat on a rigid "
          f"plate, and measure a square: give that as --square-m to capture")
    return 0


def _cmd_simulate(args) -> int:
    from coop_robot.calibration.samples import prepare_output_dir
    from coop_robot.calibration.sim_capture import capture_samples, choose_arm_poses
    from coop_robot.geometry import world_geometry

    board = _board_from(args)
    prepare_output_dir(args.out)  # refuse a non-empty directory before rendering
    q = choose_arm_poses(board, args.poses, seed=args.seed, image_size=(args.width, args.height))
    capture_samples(args.out, board, q, image_size=(args.width, args.height), progress=print)
    g = world_geometry()
    print(f"{args.poses} samples written to {args.out}; the sim camera (config/world.yaml), for comparison:")
    print(f"  camera_position_m: {list(g.camera_position_m)}")
    print(f"  camera_orientation_xyzw: {list(g.camera_orientation_xyzw)}")
    return 0


def _robot_base(args) -> tuple[list[float], str]:
    """--robot-base-m, else the cell file's robot_base_m (under /** or controller), else world.yaml's."""
    import yaml

    from coop_robot.geometry import world_geometry

    if args.robot_base_m is not None:
        return list(args.robot_base_m), "--robot-base-m"
    if args.cell_file is not None and args.cell_file.is_file():
        try:
            data = yaml.safe_load(args.cell_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            data = {}
        for section in ("/**", "controller"):
            value = ((data.get(section) or {}).get("ros__parameters") or {}).get("robot_base_m") \
                if isinstance(data, dict) else None
            if value is not None:
                return [float(x) for x in value], f"{args.cell_file} ({section})"
    return list(world_geometry().robot_base_m), "config/world.yaml"


def _camera_in(path: Path):
    from coop_robot.camera import CameraPose
    from coop_robot.geometry import read_world_params

    try:
        params = read_world_params(path)
        return CameraPose.from_position_quaternion(params["camera_position_m"], params["camera_orientation_xyzw"])
    except (OSError, KeyError, ValueError) as exc:
        raise CalibrationInputError(f"--compare {path}: no camera pose under '/**: ros__parameters:' ({exc})") \
            from exc


def _cmd_solve(args) -> int:
    import numpy as np

    from coop_robot.calibration.cellfile import write_cell_file
    from coop_robot.calibration.pipeline import calibrate_sample_set
    from coop_robot.calibration.samples import read_sample_set
    from coop_robot.calibration.solve import Limits, ResidualsTooLarge
    from coop_robot.calibration.transforms import rotation_angle_rad

    if args.update and args.cell_file is None:
        print(f"{PROG} solve: --update needs --cell-file", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.cell_file is not None and args.cell_file.exists() and not args.update:
        # Refuse before the work, not after it.
        print(f"{PROG} solve: {args.cell_file} exists; pass --update to replace its camera_position_m / "
              f"camera_orientation_xyzw (the rest of the file is kept), or choose a new file", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        reference = _camera_in(args.compare) if args.compare is not None else None
    except CalibrationInputError as exc:
        print(f"{PROG} solve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    limits = Limits(args.max_reprojection_px, args.max_pose_reprojection_px, args.max_pose_offset_mm,
                    args.max_pose_offset_deg, args.max_position_sigma_mm, args.max_rotation_sigma_deg)
    sample_set = read_sample_set(args.samples)
    base, base_from = _robot_base(args)
    cam, board = sample_set.camera, sample_set.board
    print(f"{len(sample_set.samples)} samples in {args.samples}: camera {cam.width}x{cam.height}, board "
          f"{board.squares_x} x {board.squares_y} squares of {board.square_m:g} m ({board.dictionary}); robot base "
          f"{base} m from {base_from}")
    try:
        outcome = calibrate_sample_set(sample_set, base, limits, progress=print)
        calibration = outcome.calibration
    except ResidualsTooLarge as exc:
        _print_residuals(exc.calibration)
        raise
    _print_residuals(calibration)
    print(f"reprojection error {calibration.reprojection_rms_px:.2f} px RMS over all corners (limit "
          f"{limits.max_reprojection_rms_px:g}); one pose alone puts the camera at most {calibration.max_offset_mm:.1f}"
          f" mm / {calibration.max_offset_deg:.2f} deg from the solution (limits {limits.max_pose_offset_mm:g} mm / "
          f"{limits.max_pose_offset_deg:g} deg)")
    print(f"the samples pin the camera to +-{calibration.position_sigma_mm:.2f} mm / "
          f"+-{calibration.rotation_sigma_deg:.3f} deg (1 sigma, from the corners' scatter; the arm's own "
          f"errors show in the per-pose offsets)")
    flange_to_board = np.linalg.norm(calibration.board_in_flange[:3, 3])
    print(f"board origin found {flange_to_board:.3f} m from the flange; first solution: OpenCV's "
          f"{calibration.initial_method} method, refined on every corner")
    position = [round(x, 6) for x in calibration.position_m]
    quaternion = [round(x, 6) for x in calibration.quaternion_xyzw]
    print("camera optical frame in the world (robot base) frame:")
    print(f"  camera_position_m: {position}")
    print(f"  camera_orientation_xyzw: {quaternion}")
    if reference is not None:
        offset_mm = 1000.0 * float(np.linalg.norm(calibration.camera_in_world[:3, 3] - reference.position_m))
        angle = np.degrees(rotation_angle_rad(reference.rotation.T @ calibration.camera_in_world[:3, :3]))
        print(f"compared with {args.compare}: {offset_mm:.2f} mm and {angle:.3f} deg apart")
    if args.cell_file is None:
        print("no --cell-file: nothing written")
        return 0
    header = (f"Camera extrinsic calibration by `coop-robot calibrate solve {args.samples}` on "
              f"{datetime.date.today().isoformat()}: {len(calibration.residuals)} poses, "
              f"{calibration.reprojection_rms_px:.2f} px RMS.")
    what = write_cell_file(args.cell_file, position, quaternion, allow_update=args.update, header=header)
    print(f"{what} {args.cell_file}: camera_position_m, camera_orientation_xyzw under '/**: ros__parameters:'")
    return 0


def _print_residuals(calibration) -> None:
    print(f"{'pose':>16} {'corners':>7} {'rms px':>7} {'alone: mm':>10} {'deg':>6}")
    for r in calibration.residuals:
        print(f"{r.label:>16} {r.corners:7d} {r.reprojection_rms_px:7.2f} {r.camera_offset_mm:10.1f} "
              f"{r.camera_offset_deg:6.2f}")


def _cmd_capture(args) -> int:
    from coop_robot.calibration.capture_node import run_capture

    return run_capture(args, _board_from(args))

"""Calibration samples from the PyBullet simulation: a ChArUco board on the Panda's flange,
rendered by the sim camera (its pose from ``config/world.yaml``, the ground truth) at a set of
arm poses, written as a sample directory (:mod:`.samples`) like a live capture.

The board is a textured quad (a two-triangle OBJ with the board image as its texture) that
follows the flange at a fixed offset, :func:`board_in_flange`: like a plate bolted in front of
the gripper, its printed side facing away from the hand. The solver is not told this offset.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pybullet as p
import transforms3d

from coop_robot.calibration.board import BoardSpec
from coop_robot.calibration.samples import CameraInfo, Sample, SampleSet, write_sample_set
from coop_robot.calibration.transforms import flange_poses, invert, make_transform
from coop_robot.camera import CameraPose
from coop_robot.control.kinematics import JOINT_LOWER_RAD, JOINT_NAMES, JOINT_UPPER_RAD, PandaKinematics
from coop_robot.geometry import world_geometry
from coop_robot.sim.world import SimWorld, WorldConfig


def board_in_flange(spec: BoardSpec) -> np.ndarray:
    """Pose (4x4) of the board frame in the flange frame in the simulation.

    The board's centre sits 0.13 m out along the flange axis (clear of the fingers) and a little
    off it, its printed side (board -z) facing along the flange's +z, turned 20 deg about that
    axis: a mounting the solver is not told and must find.
    """
    flip = np.diag([1.0, -1.0, -1.0])
    c, s = np.cos(np.radians(20.0)), np.sin(np.radians(20.0))
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    centre = make_transform(turn @ flip, [0.012, -0.018, 0.13])
    width, height = spec.size_m
    return centre @ make_transform(np.eye(3), [-width / 2, -height / 2, 0.0])


#: Rendered image size: the sim camera's field of view (58 deg vertical) at a calibration
#: camera's resolution, so the board's markers are several pixels per bit at 1 m.
DEFAULT_IMAGE_SIZE = (1280, 960)


def _write_board_mesh(spec: BoardSpec, folder: Path) -> tuple[str, str]:
    """A quad OBJ in the board frame covering the board image (with its white margin), and the image."""
    pixels_per_square, margin_squares = 60, 0.5
    image = spec.image(pixels_per_square=pixels_per_square, margin_squares=margin_squares)
    png = folder / "board.png"
    cv2.imwrite(str(png), cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
    m = margin_squares * spec.square_m
    x0, y0 = -m, -m
    x1, y1 = spec.size_m[0] + m, spec.size_m[1] + m
    # Vertex order and UVs: image top-left at board (x0, y0); OBJ's v runs up the image.
    obj = folder / "board.obj"
    obj.write_text(
        f"v {x0} {y0} 0\nv {x1} {y0} 0\nv {x1} {y1} 0\nv {x0} {y1} 0\n"
        "vt 0 1\nvt 1 1\nvt 1 0\nvt 0 0\n"
        "vn 0 0 -1\n"
        "f 1/1/1 3/3/1 2/2/1\nf 1/1/1 4/4/1 3/3/1\n",
        encoding="utf-8")
    return str(obj), str(png)


class BoardOnArmSim:
    """A :class:`SimWorld` with the board on the flange; :meth:`capture` poses the arm and renders."""

    def __init__(self, spec: BoardSpec, image_size=DEFAULT_IMAGE_SIZE, with_board: bool = True) -> None:
        geometry = world_geometry()
        self.spec = spec
        self.robot_base_m = np.asarray(geometry.robot_base_m, dtype=float)
        self.camera_pose = CameraPose.from_position_quaternion(geometry.camera_position_m,
                                                               geometry.camera_orientation_xyzw)
        config = WorldConfig.default()
        config = WorldConfig(zone=config.zone, camera_pose=config.camera_pose,
                             image_width=int(image_size[0]), image_height=int(image_size[1]))
        self.world = SimWorld(config)
        self._board = None
        if with_board:
            tmp = Path(tempfile.mkdtemp(prefix="coop_robot_board_"))
            try:
                obj, png = _write_board_mesh(spec, tmp)
                cid = self.world.client_id
                visual = p.createVisualShape(p.GEOM_MESH, fileName=obj, meshScale=[1, 1, 1], physicsClientId=cid)
                self._board = p.createMultiBody(0.0, -1, visual, [0.0, 0.0, -5.0], physicsClientId=cid)
                texture = p.loadTexture(png, physicsClientId=cid)
                p.changeVisualShape(self._board, -1, textureUniqueId=texture, rgbaColor=[1, 1, 1, 1],
                                    physicsClientId=cid)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    @property
    def camera_info(self) -> CameraInfo:
        intr = self.world.intrinsics
        return CameraInfo(intr.width, intr.height, tuple(intr.k), (0.0,) * 5)

    def board_in_world(self, q_rad) -> np.ndarray:
        return flange_poses(q_rad, self.robot_base_m) @ board_in_flange(self.spec)

    def capture(self, q_rad) -> np.ndarray:
        """Pose the arm at ``q_rad`` (rad), the board on its flange, and render: BGR uint8."""
        self.world.reset_arm(q_rad)
        if self._board is not None:
            board = self.board_in_world(q_rad)
            w, x, y, z = transforms3d.quaternions.mat2quat(board[:3, :3])
            p.resetBasePositionAndOrientation(self._board, board[:3, 3].tolist(), [x, y, z, w],
                                              physicsClientId=self.world.client_id)
        rgb, _ = self.world.render()
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

    def close(self) -> None:
        self.world.close()

    def __enter__(self) -> BoardOnArmSim:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def board_faces_camera(spec: BoardSpec, board_in_world: np.ndarray, camera: CameraPose, width: int, height: int,
                       fx: float, fy: float, cx: float, cy: float, max_tilt_deg: float = 50.0,
                       border_px: float = 20.0) -> np.ndarray:
    """For ``(N, 4, 4)`` board poses: True where the whole board projects inside the image (with
    ``border_px`` to spare), in front of the camera, its printed side tilted at most
    ``max_tilt_deg`` from facing the camera."""
    w, h = spec.size_m
    corners = np.array([[0, 0, 0, 1], [w, 0, 0, 1], [w, h, 0, 1], [0, h, 0, 1]], dtype=float)
    cam = invert(make_transform(camera.rotation, camera.position_m))
    in_cam = np.einsum("ij,njk,mk->nmi", cam, board_in_world, corners)[..., :3]
    z = in_cam[..., 2]
    ok = np.all(z > 0.3, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = fx * in_cam[..., 0] / z + cx
        v = fy * in_cam[..., 1] / z + cy
    ok &= np.all((u > border_px) & (u < width - border_px) & (v > border_px) & (v < height - border_px), axis=1)
    # Printed side = board -z; it faces the camera when -z points back toward the camera centre.
    centre = np.einsum("nij,j->ni", board_in_world, [w / 2, h / 2, 0.0, 1.0])[:, :3]
    to_camera = camera.position_m - centre
    to_camera /= np.linalg.norm(to_camera, axis=1, keepdims=True)
    facing = np.einsum("ni,ni->n", -board_in_world[:, :3, 2], to_camera)
    return ok & (facing > np.cos(np.radians(max_tilt_deg)))


def choose_arm_poses(spec: BoardSpec, count: int, seed: int = 0, candidates: int = 20000,
                     image_size=DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """``count`` arm configurations (rad) with the board on the flange in full view of the sim
    camera, spread in orientation (farthest-point selection over the board's rotations), from
    ``candidates`` random configurations within the joint limits. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    geometry = world_geometry()
    camera = CameraPose.from_position_quaternion(geometry.camera_position_m, geometry.camera_orientation_xyzw)
    width, height = int(image_size[0]), int(image_size[1])
    fy = 0.5 * height / np.tan(np.radians(WorldConfig.vfov_deg) / 2.0)
    margin = 0.15  # rad inside the limits, as a real arm would be driven
    q = rng.uniform(JOINT_LOWER_RAD + margin, JOINT_UPPER_RAD - margin, size=(candidates, 7))
    boards = flange_poses(q, geometry.robot_base_m) @ board_in_flange(spec)
    ok = board_faces_camera(spec, boards, camera, width, height, fy, fy, width / 2, height / 2)
    # Keep the board above the table and the arm behind the board, out of the line of sight:
    # every joint origin on the far side of the board's plane from the camera.
    ok &= boards[:, 2, 3] > geometry.robot_base_m[2] + 0.15
    joints = PandaKinematics(base_m=geometry.robot_base_m).joint_frames(q)[:, :7, :3, 3]
    printed_normal = -boards[:, :3, 2]
    in_front = np.einsum("nji,ni->nj", joints - boards[:, None, :3, 3], printed_normal)
    ok &= np.all(in_front < -0.06, axis=1)
    q, boards = q[ok], boards[ok]
    if len(q) < count:
        raise RuntimeError(f"only {len(q)} of {candidates} random arm poses show the whole board; "
                           f"need {count}")
    chosen = [0]
    dist = np.full(len(q), np.inf)
    for _ in range(count - 1):
        last = boards[chosen[-1], :3, :3]
        rel = np.einsum("ji,njk->nik", last, boards[:, :3, :3])
        angle = np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1))
        dist = np.minimum(dist, angle)
        chosen.append(int(np.argmax(dist)))
    return q[chosen]


def capture_samples(out_dir, spec: BoardSpec, joint_positions_rad, image_size=DEFAULT_IMAGE_SIZE,
                    with_board: bool = True, progress: Callable[[str], None] | None = None) -> SampleSet:
    """Render one sample per arm configuration into ``out_dir`` (a new sample directory)."""
    out = Path(out_dir)
    samples = []
    with BoardOnArmSim(spec, image_size=image_size, with_board=with_board) as sim:
        images = []
        poses = np.asarray(joint_positions_rad, dtype=float).reshape(-1, 7)
        for i, q in enumerate(poses):
            images.append(sim.capture(q))
            samples.append(Sample(f"pose_{i:02d}.png", tuple(float(x) for x in q)))
            if progress is not None:
                progress(f"rendered pose {i + 1}/{len(poses)}")
        sample_set = SampleSet(sim.camera_info, spec, JOINT_NAMES, tuple(samples), out)
        write_sample_set(sample_set, images)
    return sample_set

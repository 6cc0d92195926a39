"""A directory of calibration samples: one image and one joint state per board pose.

``samples.yaml`` in the directory holds the camera's intrinsics (as in its CameraInfo), the board,
the arm's joint names and, per sample, the image file (beside it) and the joint positions (rad)::

    camera: {width: 1280, height: 720, k: [fx, 0, cx, 0, fy, cy, 0, 0, 1], d: [k1, k2, t1, t2, k3]}
    board: {squares_x: 7, squares_y: 5, square_m: 0.04, marker_m: 0.03, dictionary: DICT_4X4_50}
    joint_names: [panda_joint1, ..., panda_joint7]
    samples:
      - {image: pose_00.png, joint_positions_rad: [0.1, -0.4, ...]}

The live capture and the simulator both write this; ``coop-robot calibrate solve DIR`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from coop_robot.calibration.board import BoardError, BoardSpec

MANIFEST = "samples.yaml"


class SampleError(ValueError):
    """A sample directory that cannot be read or written."""


@dataclass(frozen=True)
class CameraInfo:
    """Intrinsics of the calibrated camera: image size (px), 3x3 ``k`` row-major, distortion ``d``
    (OpenCV / ROS ``plumb_bob`` order k1, k2, t1, t2, k3)."""

    width: int
    height: int
    k: tuple[float, ...]
    d: tuple[float, ...]

    def __post_init__(self) -> None:
        k = np.asarray(self.k, dtype=float)
        if not (self.width > 0 and self.height > 0):
            raise SampleError(f"camera image size must be positive, got {self.width}x{self.height}")
        if k.shape != (9,) or not np.all(np.isfinite(k)) or k[0] <= 0 or k[4] <= 0:
            raise SampleError(f"camera k must be 9 finite numbers with fx, fy > 0, got {list(self.k)}")
        d = np.asarray(self.d, dtype=float)
        if d.ndim != 1 or d.size not in (0, 4, 5, 8, 12, 14) or not np.all(np.isfinite(d)):
            raise SampleError(f"camera d must be 0, 4, 5, 8, 12 or 14 finite distortion coefficients, "
                              f"got {list(self.d)}")

    @property
    def camera_matrix(self) -> np.ndarray:
        return np.asarray(self.k, dtype=float).reshape(3, 3)

    @property
    def dist_coeffs(self) -> np.ndarray:
        return np.asarray(self.d, dtype=float)


@dataclass(frozen=True)
class Sample:
    image: str                               # file name in the sample directory
    joint_positions_rad: tuple[float, ...]   # in the set's joint_names order


@dataclass(frozen=True)
class SampleSet:
    camera: CameraInfo
    board: BoardSpec
    joint_names: tuple[str, ...]
    samples: tuple[Sample, ...]
    directory: Path

    def load_image(self, sample: Sample) -> np.ndarray:
        path = self.directory / sample.image
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SampleError(f"{path}: not a readable image")
        if image.shape[:2] != (self.camera.height, self.camera.width):
            raise SampleError(f"{path}: image is {image.shape[1]}x{image.shape[0]}, but the camera's is "
                              f"{self.camera.width}x{self.camera.height}")
        return image


def read_sample_set(directory) -> SampleSet:
    """Read and validate ``DIR/samples.yaml`` (the images are read later, one at a time)."""
    folder = Path(directory)
    path = folder / MANIFEST
    if not path.is_file():
        raise SampleError(f"{folder}: no {MANIFEST} (not a calibration sample directory)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SampleError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or not {"camera", "board", "joint_names", "samples"} <= set(data):
        raise SampleError(f"{path}: expected the keys camera, board, joint_names and samples")
    cam = data["camera"]
    try:
        camera = CameraInfo(int(cam["width"]), int(cam["height"]), tuple(float(x) for x in cam["k"]),
                            tuple(float(x) for x in cam.get("d") or ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise SampleError(f"{path}: camera: {exc}; expected width, height, k (9 numbers) and d") from exc
    try:
        board = BoardSpec.from_dict(data["board"], source=f"{path}: board")
    except BoardError as exc:
        raise SampleError(str(exc)) from exc
    names = data["joint_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SampleError(f"{path}: joint_names must be a list of joint names, got {names!r}")
    if not isinstance(data["samples"], list):
        raise SampleError(f"{path}: samples must be a list, got {data['samples']!r}")
    samples = []
    for i, entry in enumerate(data["samples"]):
        try:
            image = str(entry["image"])
            q = tuple(float(x) for x in entry["joint_positions_rad"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SampleError(f"{path}: sample {i}: expected image and joint_positions_rad ({exc})") from exc
        if len(q) != len(names) or not np.all(np.isfinite(q)):
            raise SampleError(f"{path}: sample {i}: {len(names)} finite joint positions expected, got {list(q)}")
        if Path(image).name != image:
            raise SampleError(f"{path}: sample {i}: image must be a file name in the directory, got {image!r}")
        samples.append(Sample(image, q))
    return SampleSet(camera, board, tuple(names), tuple(samples), folder)


def prepare_output_dir(directory) -> Path:
    """A new or empty directory for a sample set; an existing non-empty one is refused."""
    folder = Path(directory)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SampleError(f"{folder}: exists and is not an empty directory; choose a new one")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_sample_set(sample_set: SampleSet, images) -> None:
    """Write the images and then ``samples.yaml`` (last, so a directory holding it is complete)."""
    folder = prepare_output_dir(sample_set.directory)
    for sample, image in zip(sample_set.samples, images, strict=True):
        if not cv2.imwrite(str(folder / sample.image), image):
            raise SampleError(f"{folder / sample.image}: could not write the image")
    write_manifest(sample_set)


def write_manifest(sample_set: SampleSet) -> None:
    data = {
        "camera": {"width": sample_set.camera.width, "height": sample_set.camera.height,
                   "k": [float(x) for x in sample_set.camera.k], "d": [float(x) for x in sample_set.camera.d]},
        "board": sample_set.board.as_dict(),
        "joint_names": list(sample_set.joint_names),
        "samples": [{"image": s.image, "joint_positions_rad": [round(float(x), 6) for x in s.joint_positions_rad]}
                    for s in sample_set.samples],
    }
    tmp = sample_set.directory / (MANIFEST + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None), encoding="utf-8")
    tmp.replace(sample_set.directory / MANIFEST)

"""The simulator posing as a lab cell (``coop_sim`` with ``mode: cell``), without ROS.

In cell mode the sim publishes only what a RealSense driver and a ros2_control stack would:
colour ``rgb8`` and aligned depth ``16UC1`` (mm) with sensor-like noise and holes, joint states
with encoder noise, all stamped with the wall clock at capture and delivered after a driver's
latency. There is no ``/clock`` and no ground-truth topic: the truth goes to a JSON-lines file
(:class:`TruthLog`), read back after the session by :func:`coop_robot.rehearsal.score_truth_log`.

This module holds the parts that need no ROS: the noise models, the delivery delay line, the
mapping from physics time to wall-clock stamps and the truth log writer/reader.
"""

from __future__ import annotations

import heapq
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coop_robot.perception.hand_tracker import depth_to_16uc1

#: RealSense ``rs_launch.py`` topic names (camera name and namespace "camera").
REALSENSE_PREFIX = "/camera/camera"
#: The cell's stamps may fall this far behind the wall clock (a busy CPU) before the world pauses
#: (s): the sensors' stamps stay within this of the true capture time.
MAX_STAMP_LAG_S = 0.02
#: Noise fields drawn once and reused at random offsets (drawing a fresh field per frame costs
#: more CPU than rendering it on the software renderer).
NOISE_BANK = 4
#: Truth log format version (the header line's ``format``).
TRUTH_LOG_FORMAT = "coop_robot.truth_log/1"


class TruthLogError(ValueError):
    """A truth log is missing, empty or malformed."""


@dataclass(frozen=True)
class SensorNoise:
    """How far the cell's sensors are from the truth (defaults: a RealSense D435 at ~1.3 m and a
    Panda's encoders; all in the units of their names)."""

    color_noise_std: float = 2.0                 # per-channel Gaussian noise (0-255 levels)
    depth_noise_per_m2: float = 0.001            # depth error sigma = this * z^2 (m): 1.7 mm at 1.3 m
    depth_dropout_fraction: float = 0.01         # pixels with no reading (0 in 16UC1)
    joint_position_noise_rad: float = 1e-4       # encoder noise (rad; fingers: m)
    joint_velocity_noise_rad_s: float = 2e-3     # velocity estimate noise (rad/s)
    joint_effort_noise_nm: float = 0.05          # torque sensor noise (N m)

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.depth_dropout_fraction >= 1.0:
            raise ValueError(f"depth_dropout_fraction must be < 1, got {self.depth_dropout_fraction!r}")


@dataclass(frozen=True)
class DeliveryLatency:
    """Capture-to-delivery delay of each stream (s): a mean and a uniform jitter of +- ``*_jitter_s``."""

    camera_latency_s: float = 0.025       # RealSense over USB 3: frame readout, alignment, publish
    camera_jitter_s: float = 0.005
    joint_state_latency_s: float = 0.002  # ros2_control update -> joint_state_broadcaster publish
    joint_state_jitter_s: float = 0.001

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.camera_jitter_s > self.camera_latency_s or self.joint_state_jitter_s > self.joint_state_latency_s:
            raise ValueError("a stream's jitter must not exceed its mean latency (a message would arrive "
                             "before it was captured)")

    def draw(self, stream: str, rng: np.random.Generator) -> float:
        """One message's delay (s) on ``stream`` ("camera" or "joint_state")."""
        mean, jitter = getattr(self, f"{stream}_latency_s"), getattr(self, f"{stream}_jitter_s")
        return float(mean + (rng.uniform(-jitter, jitter) if jitter > 0.0 else 0.0))


class NoiseFields:
    """Standard-normal and uniform fields for images of one size, drawn once (:data:`NOISE_BANK`
    of each) and served at a random roll each frame: the noise differs frame to frame, at a
    fraction of the cost of fresh draws."""

    def __init__(self, shape: tuple[int, ...], rng: np.random.Generator) -> None:
        self._rng = rng
        self._normal = rng.standard_normal(size=(NOISE_BANK, *shape)).astype(np.float32)
        self._uniform = rng.random(size=(NOISE_BANK, *shape[:2])).astype(np.float32)

    def _pick(self, bank: np.ndarray) -> np.ndarray:
        field = bank[self._rng.integers(len(bank))]
        return np.roll(field, int(self._rng.integers(field.shape[0])), axis=0)

    def normal(self) -> np.ndarray:
        return self._pick(self._normal)

    def uniform(self) -> np.ndarray:
        return self._pick(self._uniform)


def noisy_color(rgb: np.ndarray, std: float, fields: NoiseFields) -> np.ndarray:
    """``rgb`` (HxWx3 uint8) with Gaussian sensor noise of ``std`` levels, clipped to 0-255."""
    if std <= 0.0:
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    return np.clip(rgb + std * fields.normal(), 0.0, 255.0).astype(np.uint8)


def depth_to_mm(depth_m: np.ndarray, noise: SensorNoise, fields: NoiseFields,
                max_range_m: float = 10.0) -> np.ndarray:
    """Metric depth (HxW float, m) -> a RealSense-like ``16UC1`` image in millimetres: axial noise
    growing with the square of the distance, quantised to 1 mm, random holes and no reading (0)
    beyond ``max_range_m`` or where the input is not finite."""
    z = np.asarray(depth_m, dtype=np.float32)
    valid = np.isfinite(z) & (z > 0.0) & (z < max_range_m)
    z = np.where(valid, z, 0.0)
    if noise.depth_noise_per_m2 > 0.0:
        z = z + fields.normal()[..., 0] * (noise.depth_noise_per_m2 * z * z)
    mm = depth_to_16uc1(z)   # invalid pixels are 0 here, and noise scales with z
    if noise.depth_dropout_fraction > 0.0:
        mm[fields.uniform() < noise.depth_dropout_fraction] = 0
    return mm


def unaligned_depth(depth_mm: np.ndarray) -> np.ndarray:
    """The depth stream before alignment, as a RealSense also publishes it: the depth sensor's own
    (here: half) resolution. Pointing perception at it instead of the aligned topic is a mistake
    the cell check catches (colour and depth sizes differ)."""
    return np.ascontiguousarray(depth_mm[::2, ::2])


def noisy_joint_state(position, velocity, effort, noise: SensorNoise, rng: np.random.Generator):
    """Joint state vectors with encoder, velocity-estimate and torque-sensor noise (lists of floats)."""
    position, velocity, effort = (np.asarray(v, dtype=float) for v in (position, velocity, effort))
    return ((position + rng.normal(0.0, noise.joint_position_noise_rad, position.shape)).tolist(),
            (velocity + rng.normal(0.0, noise.joint_velocity_noise_rad_s, velocity.shape)).tolist(),
            (effort + rng.normal(0.0, noise.joint_effort_noise_nm, effort.shape)).tolist())


class DelayLine:
    """Messages held back until their delivery time (wall s), delivered in order per stream:
    a driver never reorders its own messages, however its latency jitters."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, object]] = []
        self._last_release: dict[str, float] = {}
        self._count = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, stream: str, release_s: float, item: object) -> None:
        release_s = max(float(release_s), self._last_release.get(stream, -math.inf))
        self._last_release[stream] = release_s
        self._count += 1
        heapq.heappush(self._heap, (release_s, self._count, stream, item))

    def due(self, now_s: float) -> list[tuple[str, object]]:
        """Every message whose delivery time has come, oldest first."""
        out = []
        while self._heap and self._heap[0][0] <= now_s:
            _, _, stream, item = heapq.heappop(self._heap)
            out.append((stream, item))
        return out


class WallStamps:
    """Physics time -> wall-clock stamps: ``stamp = t_sim + offset_s``.

    The cell runs the physics in real time; when it falls more than ``max_lag_s`` behind (a busy
    CPU), the offset moves forward instead of the physics bursting to catch up: for the cell's
    sensors and its truth log alike the world paused, and their stamps stay consistent.
    """

    def __init__(self, wall_s: float, sim_t_s: float = 0.0, max_lag_s: float = MAX_STAMP_LAG_S) -> None:
        self.offset_s = float(wall_s) - float(sim_t_s)
        self.max_lag_s = float(max_lag_s)
        self.pauses = 0            # how often the offset moved
        self.paused_s = 0.0        # by how much in all

    def stamp_s(self, sim_t_s: float) -> float:
        return float(sim_t_s) + self.offset_s

    def sim_time_s(self, stamp_s: float) -> float:
        return float(stamp_s) - self.offset_s

    def pause_to(self, wall_s: float, sim_t_s: float) -> None:
        """The world stood still until ``wall_s``: its state at ``sim_t_s`` is what a sensor sees now."""
        lag = float(wall_s) - self.stamp_s(sim_t_s)
        if lag > 0.0:
            self.offset_s += lag
            self.pauses += 1
            self.paused_s += lag

    def catch_up(self, wall_s: float, sim_t_s: float) -> bool:
        """After a tick: move the offset if the physics lags the wall clock by more than
        ``max_lag_s``; True when it moved."""
        if float(wall_s) - self.stamp_s(sim_t_s) <= self.max_lag_s:
            return False
        self.pause_to(wall_s, sim_t_s)
        return True


class TruthLog:
    """The cell's ground truth, one JSON object per line, times in wall-clock seconds (the stamps
    of the cell's sensor messages): a ``header`` line, then ``event`` (zone entries and exits,
    contacts, the partner's turn), ``phase`` (partner phase changes) and ``ssm`` (ground-truth
    separation samples) lines. Written by the cell, never published."""

    def __init__(self, path: str | os.PathLike, header: dict) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", encoding="utf-8")
        self._write({"kind": "header", "format": TRUTH_LOG_FORMAT, **header})
        self._fh.flush()
        self.lines = 1

    def _write(self, record: dict) -> None:
        self._fh.write(json.dumps(record, allow_nan=True, separators=(",", ":")) + "\n")

    def event(self, name: str, t_s: float) -> None:
        self._write({"kind": "event", "name": name, "t_s": round(float(t_s), 6)})
        self.lines += 1

    def phase(self, phase: str, t_s: float) -> None:
        self._write({"kind": "phase", "phase": phase, "t_s": round(float(t_s), 6)})
        self.lines += 1

    def ssm(self, t_s: float, separation_m: float, protective_distance_m: float, robot_closing_mps: float,
            human_closing_mps: float) -> None:
        self._write({"kind": "ssm", "t_s": round(float(t_s), 6), "separation_m": float(separation_m),
                     "protective_distance_m": float(protective_distance_m),
                     "robot_closing_mps": float(robot_closing_mps), "human_closing_mps": float(human_closing_mps)})
        self.lines += 1

    def flush(self) -> None:
        if not self._fh.closed:
            self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._write({"kind": "end"})
            self._fh.close()


def read_truth_log(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """(header, records) of a truth log; a log cut off mid-line (the cell killed) keeps its whole lines.
    Raises :class:`TruthLogError` for a missing file or one that is not a truth log."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TruthLogError(f"cannot read the truth log {path}: {exc}") from exc
    lines = text.splitlines()
    if not lines:
        raise TruthLogError(f"truth log {path} is empty (did the cell start?)")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise TruthLogError(f"{path} is not a truth log: first line is not JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != TRUTH_LOG_FORMAT:
        raise TruthLogError(f"{path} is not a truth log: expected a header with format {TRUTH_LOG_FORMAT!r}")
    records = []
    for i, line in enumerate(lines[1:], start=2):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):  # the last line, cut off
                break
            raise TruthLogError(f"{path}:{i}: not a JSON line") from None
    return header, records

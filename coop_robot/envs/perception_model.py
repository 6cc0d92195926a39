"""A statistical stand-in for the perception pipeline (pure NumPy, no rendering, no OpenCV work).

The ROS graph renders the sim camera at 30 Hz and runs :class:`~coop_robot.perception.HandTracker`
on every frame. Rendering costs ~10 ms a frame, far too slow for training, so the fast
environment replaces camera + tracker by :class:`PerceptionModel`, which turns the *true* glove
position into what the perception node would publish for a frame captured at ``stamp_s``:

* **frames** at ``frame_rate_hz`` (the sim camera's 30 Hz), each published ``latency_s`` after
  its capture (the tracker's processing time plus a transport allowance, scaled to sim time; see
  ``config/models/perception_model.yaml``);
* **position noise**: per-axis bias plus Gaussian error with a per-axis standard deviation and a
  frame-to-frame correlation (AR(1), coefficient ``noise_correlation``): the real tracker's error
  depends on where the glove is, so consecutive frames err alike;
* **dropouts**: a frame is missed with ``dropout_probability``, or with
  ``occluded_dropout_probability`` (and noise ``occluded_noise_std_m``) when the robot arm lies
  on the camera's line of sight to the glove (the caller decides that, see
  :func:`coop_robot.envs.turn_env.robot_occludes_hand`);
* **in-zone flag and velocity** from the *same code* the perception node runs: detections and
  misses go through a :class:`HandTracker`'s track update (zone margin, hysteresis,
  hold-on-dropout, lost timeout, smoothed finite-difference velocity), configured from
  ``config/perception.yaml`` like the node.

The parameters are fitted by ``python -m coop_robot.envs.fit_perception`` (real HandTracker on
SimWorld renders) and stored in ``config/models/perception_model.yaml``. Random numbers come only from
the generator given to :meth:`PerceptionModel.reset`, so a seeded generator is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from coop_robot.geometry import Zone
from coop_robot.perception.hand_tracker import HandTracker, HandTrackerConfig

#: Top-level key of config/models/perception_model.yaml.
YAML_KEY = "perception_model"
DEFAULT_FILE = "models/perception_model.yaml"


class PerceptionModelError(ValueError):
    """Bad perception-model parameters (the message names the value and what was expected)."""


@dataclass(frozen=True)
class PerceptionModelParams:
    """Fitted statistics of the perception pipeline on the sim camera (``world`` frame, SI units)."""

    frame_rate_hz: float = 30.0
    #: Capture -> publish delay in sim time (s).
    latency_s: float = 0.0
    #: Mean detection error (detected - true), per axis x, y, z (m).
    bias_m: tuple = (0.0, 0.0, 0.0)
    #: Standard deviation of the detection error about the bias, per axis (m), glove in clear view.
    noise_std_m: tuple = (0.0, 0.0, 0.0)
    #: Lag-1 (one frame) correlation of the error, in [0, 1).
    noise_correlation: float = 0.0
    #: Probability that a frame with the glove in clear view gives no detection.
    dropout_probability: float = 0.0
    #: The same when the robot arm is on the line of sight to the glove.
    occluded_dropout_probability: float = 0.0
    #: Error standard deviation (m per axis) of detections while occluded (partial view).
    occluded_noise_std_m: tuple = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        def number(name: str, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise PerceptionModelError(f"{name} must be a finite number, got {value!r}")
            if value < low or value > high or (low_open and value == low) or (high_open and value == high):
                left, right = "(" if low_open else "[", ")" if high_open else "]"
                raise PerceptionModelError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")
            object.__setattr__(self, name, float(value))

        def vector(name: str, nonnegative: bool) -> None:
            value = getattr(self, name)
            try:
                v = np.asarray(value, dtype=float)
            except (TypeError, ValueError) as exc:
                raise PerceptionModelError(f"{name} must be 3 numbers (m, x y z), got {value!r}") from exc
            if v.shape != (3,) or not np.all(np.isfinite(v)) or (nonnegative and np.any(v < 0.0)):
                raise PerceptionModelError(
                    f"{name} must be 3 finite{' non-negative' if nonnegative else ''} numbers (m, x y z), got {value!r}"
                )
            object.__setattr__(self, name, tuple(float(x) for x in v))

        number("frame_rate_hz", 0.0, 1000.0, low_open=True)
        number("latency_s", 0.0, 1.0)
        number("noise_correlation", 0.0, 1.0, high_open=True)
        number("dropout_probability", 0.0, 1.0)
        number("occluded_dropout_probability", 0.0, 1.0)
        vector("bias_m", nonnegative=False)
        vector("noise_std_m", nonnegative=True)
        vector("occluded_noise_std_m", nonnegative=True)

    @classmethod
    def from_mapping(cls, data: Any, source: str = "<mapping>") -> PerceptionModelParams:
        """Build from a mapping such as the ``perception_model:`` section of the YAML.

        Keys that are not parameters but start with ``fit_`` (fit provenance) are ignored; any
        other unknown key is an error (a typo would otherwise silently use a default).
        """
        if not isinstance(data, Mapping):
            raise PerceptionModelError(
                f"{source}: expected a mapping of perception model parameters, got {type(data).__name__}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in data if k not in known and not str(k).startswith("fit_"))
        if unknown:
            raise PerceptionModelError(
                f"{source}: unknown perception model key(s) {unknown}; expected {sorted(known)} "
                "(and fit_* provenance keys)"
            )
        missing = sorted(known - set(data))
        if missing:
            raise PerceptionModelError(f"{source}: missing perception model key(s) {missing}")
        try:
            return cls(**{k: data[k] for k in known})
        except PerceptionModelError as exc:
            raise PerceptionModelError(f"{source}: {exc}") from exc

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


class PerceivedFrame(NamedTuple):
    """What the perception node publishes for one camera frame (``world`` frame)."""

    stamp_s: float  # capture time (the image stamp)
    publish_s: float  # when it reaches the policy / controller (stamp + latency)
    detected: bool
    position_m: np.ndarray  # NaN when not detected
    velocity_mps: np.ndarray  # NaN when unknown
    in_zone: bool


def tracker_config_from_files(zone: Zone | None = None) -> HandTrackerConfig:
    """The HandTracker tuning the perception node uses: ``config/perception.yaml`` + the world zone."""
    from coop_robot.paths import config_path

    with open(config_path("perception.yaml"), encoding="utf-8") as f:
        parameters = yaml.safe_load(f)["perception"]["ros__parameters"]
    if zone is None:
        with open(config_path("world.yaml"), encoding="utf-8") as f:
            world = yaml.safe_load(f)["/**"]["ros__parameters"]
        zone = Zone.from_lists(world["zone_min_m"], world["zone_max_m"])
    return HandTrackerConfig.from_parameters(parameters, zone)


class PerceptionModel:
    """Frames of the perception pipeline from the true hand position; see the module docstring.

    Call :meth:`reset` with a generator before a session, then :meth:`capture` once per camera
    frame in time order.
    """

    def __init__(
        self,
        params: PerceptionModelParams | None = None,
        tracker_config: HandTrackerConfig | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.params = params if params is not None else PerceptionModelParams()
        if not isinstance(self.params, PerceptionModelParams):
            raise PerceptionModelError(f"params must be PerceptionModelParams, got {type(self.params).__name__}")
        self.tracker_config = tracker_config if tracker_config is not None else tracker_config_from_files()
        self.frame_period_s = 1.0 / self.params.frame_rate_hz
        self._bias = np.asarray(self.params.bias_m, dtype=float)
        self._std = np.asarray(self.params.noise_std_m, dtype=float)
        self._std_occluded = np.asarray(self.params.occluded_noise_std_m, dtype=float)
        rho = self.params.noise_correlation
        self._rho, self._innovation = rho, math.sqrt(1.0 - rho * rho)
        self._ideal = (
            not np.any(self._bias)
            and not np.any(self._std)
            and not np.any(self._std_occluded)
            and self.params.dropout_probability == 0.0
            and self.params.occluded_dropout_probability == 0.0
        )
        self.reset(rng if rng is not None else np.random.default_rng(0))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_yaml(
        cls, path: str | Path, rng: np.random.Generator | None = None, tracker_config: HandTrackerConfig | None = None
    ) -> PerceptionModel:
        """Load parameters from a YAML file with a ``perception_model:`` section."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"perception model file {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise PerceptionModelError(f"perception model file {p} is not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping) or YAML_KEY not in data:
            raise PerceptionModelError(f"perception model file {p} must have a top-level '{YAML_KEY}:' section")
        return cls(PerceptionModelParams.from_mapping(data[YAML_KEY], str(p)), tracker_config, rng)

    @classmethod
    def fitted(
        cls, rng: np.random.Generator | None = None, tracker_config: HandTrackerConfig | None = None
    ) -> PerceptionModel:
        """The model fitted to the real pipeline (``config/models/perception_model.yaml``)."""
        from coop_robot.paths import config_path

        return cls.from_yaml(config_path(DEFAULT_FILE), rng, tracker_config)

    @classmethod
    def ideal(cls, frame_rate_hz: float = 30.0, tracker_config: HandTrackerConfig | None = None) -> PerceptionModel:
        """Perfect perception at the camera rate: no latency, noise or dropouts (for ablations)."""
        return cls(PerceptionModelParams(frame_rate_hz=frame_rate_hz), tracker_config)

    # ------------------------------------------------------------------ per frame
    def reset(self, rng: np.random.Generator) -> None:
        """Start a new session: fresh track state, the given random generator."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self._rng = rng
        # The perception node's own track logic (in_zone hysteresis, hold on dropout, velocity).
        self._tracker = HandTracker(self.tracker_config)
        self._error = np.zeros(3)  # AR(1) state, in units of the standard deviation
        self._last_stamp_s = -math.inf

    def capture(self, stamp_s: float, hand_m, occluded: bool = False) -> PerceivedFrame:
        """The published result of a frame captured at ``stamp_s`` with the glove at ``hand_m``."""
        if not stamp_s >= self._last_stamp_s:
            raise ValueError(f"frames must come in time order: stamp {stamp_s!r} s after {self._last_stamp_s!r} s")
        self._last_stamp_s = stamp_s
        p = self.params
        if self._ideal:
            detected, position = True, np.asarray(hand_m, dtype=float)
        else:
            rng = self._rng
            # Same draws every frame whatever happens, so the stream stays aligned across runs.
            u = rng.random()
            self._error = self._rho * self._error + self._innovation * rng.standard_normal(3)
            dropout = p.occluded_dropout_probability if occluded else p.dropout_probability
            detected = bool(u >= dropout)
            std = self._std_occluded if occluded else self._std
            position = np.asarray(hand_m, dtype=float) + self._bias + std * self._error
        in_zone, velocity = self.track_update(stamp_s, position if detected else None)
        return PerceivedFrame(
            stamp_s,
            stamp_s + p.latency_s,
            detected,
            position.copy() if detected else np.full(3, np.nan),
            velocity,
            in_zone,
        )

    def track_update(self, stamp_s: float, position_m: np.ndarray | None) -> tuple[bool, np.ndarray]:
        """Feed one frame's detection (``None`` = missed) to the track; return ``(in_zone, velocity_mps)``.

        This *is* the perception node's track logic: the detection goes through a
        :class:`HandTracker`'s own update (zone margin, hysteresis, hold on dropout, lost
        timeout, smoothed velocity), so the semantics cannot drift apart. (It calls the
        tracker's ``_detected`` / ``_missed``; a public per-detection entry point on
        HandTracker would be the cleaner seam.)
        """
        track = self._tracker
        if position_m is not None:
            obs = track._detected(stamp_s, np.asarray(position_m, dtype=float), 0, (math.nan, math.nan))
        else:
            obs = track._missed(stamp_s, "dropout (perception model)", 0)
        return obs.in_zone, obs.velocity_mps

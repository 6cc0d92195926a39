"""Speed and separation monitoring (SSM, ISO/TS 15066 clause 5.5.4): the protective separation
distance between the robot and the person's hand, and the speed the robot may move at.

No ROS here: the controller core, the fast environment (ground truth), the simulator node and
the benchmarks all call :class:`SeparationMonitor`.

The protective separation distance (Marvel & Norcross 2017 give the same decomposition)::

    S_p = S_h + S_r + S_s + C + Z_d + Z_r

* ``S_h = v_h * (T_r + T_s)`` -- the person's motion while the robot reacts and stops.
  ``v_h`` is the hand's measured speed toward the robot (``directed`` mode) never below
  ``human_speed_floor_mps``, or the constant ``human_speed_mps`` of ISO 13855 (``constant``
  mode). A hand whose velocity is unknown moves at ``human_speed_mps``. The controller also
  takes the hand as ``v_h * age`` closer than it was seen, and, with ``human_acceleration_mps2``
  a_h > 0 (off by default), budgets the speed the hand may have gained since its velocity was
  measured and while the arm stops (:meth:`SeparationMonitor.human_travel_m`); ground truth
  (:class:`GroundTruthMonitor`) uses the true position and velocity and the plain formula.
* ``S_r = v_r * T_r`` -- the robot's own motion toward the person during its reaction time
  ``T_r`` = the age of the newest perception at this tick (perception latency, measured every
  tick) + ``reaction_time_s`` (controller tick, command transport, the arm controller).
* ``S_s`` -- the robot's stopping distance from its current speed: a stop ramps the speed along
  the path to zero in ``T_s`` (the controller's protective-stop deceleration), covering
  ``v_r * T_s / 2`` toward the person.
* ``C`` intrusion distance (fingers reaching past the tracked hand sphere), ``Z_d`` perception
  uncertainty, ``Z_r`` robot position uncertainty.

Separation is measured between the hand sphere (radius ``hand_radius_m`` around the perceived
hand centre) and the robot's body: the Panda's links and gripper as capsules along the FK chain
(:func:`robot_capsules`), not only the end-effector point. What is not known about the hand is
taken as the worst case: a hand not seen since ``t`` may be anywhere within
``human_speed_mps * (now - t)`` of where it was last seen; a hand never seen may be anywhere in
the shared zone.

This is a software monitor inside a research controller, not a safety-rated implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from coop_robot.geometry import Zone

# Robot body model (m): the Panda's links are ~0.12-0.13 m thick; the hand is ~0.2 m across the
# fingers and ~0.06 m thick.
ROBOT_LINK_RADIUS_M = 0.075
ROBOT_HAND_RADIUS_M = 0.045
_HAND_CENTRE_FROM_J7_M = 0.165   # along joint 7's z: flange (0.107) + about half the hand
_HAND_HALF_WIDTH_M = 0.09
_FLANGE_FROM_J7_M = 0.107

HUMAN_SPEED_MODES = ("directed", "constant")
#: Where directed mode's hand velocity comes from (:attr:`SsmConfig.hand_motion`).
HAND_MOTION_SOURCES = ("tracker", "fit")
#: The robot "moves toward the person" when its body closes the separation faster than this (m/s).
#: Slower closing is a creep that stops within millimetres: a withdrawal whose elbow drifts a few
#: cm/s toward the hand for a moment is not slowed, and does not count as an SSM violation.
APPROACH_SPEED_MPS = 0.05
SSM_MODES = ("free", "scaled", "stop")


def robot_capsules(joint_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robot body capsules ``(starts (K, 3), ends (K, 3), radii (K,))`` in ``world`` (m) from
    :meth:`PandaKinematics.joint_frames` ``(8, 4, 4)``: links between successive distinct joint
    origins (shoulder to joint 7, then to the flange), the hand along joint 7's axis and a capsule
    across the gripper's fingers."""
    o = joint_frames[:, :3, 3]
    z7, x7, y7 = joint_frames[6, :3, 2], joint_frames[6, :3, 0], joint_frames[6, :3, 1]
    flange = o[6] + _FLANGE_FROM_J7_M * z7
    hand_c = o[6] + _HAND_CENTRE_FROM_J7_M * z7
    across = (x7 - y7) * (_HAND_HALF_WIDTH_M / math.sqrt(2.0))  # the hand sits at -45 deg about z7
    starts = np.array([o[1], o[2], o[3], o[4], o[6], flange, hand_c - across, o[7]])
    ends = np.array([o[2], o[3], o[4], o[6], flange, o[7], hand_c + across, o[7]])
    radii = np.array([ROBOT_LINK_RADIUS_M] * 5 + [ROBOT_HAND_RADIUS_M] * 3)
    return starts, ends, radii


def _segment_point(starts: np.ndarray, ends: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Closest points on each segment ``starts[i]-ends[i]`` to ``point``: (K, 3)."""
    d = ends - starts
    length2 = np.einsum("ij,ij->i", d, d)
    t = np.where(length2 > 1e-12, np.einsum("ij,ij->i", point - starts, d) / np.maximum(length2, 1e-12), 0.0)
    return starts + d * np.clip(t, 0.0, 1.0)[:, None]


def body_to_point(capsules: tuple, point_m: np.ndarray) -> tuple[float, np.ndarray]:
    """Surface distance (m, negative inside) from the robot body to ``point_m`` and the unit vector
    from the body's closest point toward the point."""
    starts, ends, radii = capsules
    closest = _segment_point(starts, ends, point_m)
    offsets = point_m - closest
    dist = np.linalg.norm(offsets, axis=1)
    k = int(np.argmin(dist - radii))
    direction = offsets[k] / dist[k] if dist[k] > 1e-9 else np.array([1.0, 0.0, 0.0])
    return float(dist[k] - radii[k]), direction


def body_to_box(capsules: tuple, lo: np.ndarray, hi: np.ndarray, samples: int = 9) -> float:
    """Smallest surface distance (m, 0 when touching or inside) from the robot body to the box."""
    starts, ends, radii = capsules
    u = np.linspace(0.0, 1.0, samples)[None, :, None]
    pts = starts[:, None, :] + (ends - starts)[:, None, :] * u          # (K, S, 3)
    gap = np.maximum(lo - pts, 0.0) + np.maximum(pts - hi, 0.0)
    dist = np.linalg.norm(gap, axis=-1) - radii[:, None]
    return float(max(dist.min(), 0.0))


@dataclass(frozen=True)
class SsmConfig:
    """Terms of the protective separation distance; ISO/TS 15066 names in the comments."""

    #: ``directed``: v_h is the hand's measured speed toward the robot, at least the floor;
    #: ``constant``: v_h is always ``human_speed_mps`` (ISO 13855).
    human_speed_mode: str = "directed"
    #: K_h of ISO 13855 (m/s): constant mode, a hand of unknown velocity, an unseen hand's spread.
    human_speed_mps: float = 1.6
    #: Directed mode: slowest v_h assumed (m/s), covering a hand at rest starting toward the robot.
    human_speed_floor_mps: float = 0.5
    #: T_r beyond the perception age (s): controller tick + command transport + arm controller.
    reaction_time_s: float = 0.03
    #: C (m): how far a reaching hand intrudes past the tracked hand sphere (fingers).
    intrusion_distance_m: float = 0.04
    #: Z_d (m): perception position uncertainty.
    perception_uncertainty_m: float = 0.01
    #: Z_r (m): robot position uncertainty (tracking error of the arm).
    robot_uncertainty_m: float = 0.01
    #: Radius (m) of the sphere around the perceived hand centre that is the hand.
    hand_radius_m: float = 0.05
    #: Deceleration of a protective stop: fraction of the joint acceleration limits.
    stop_acceleration_scale: float = 0.8
    #: Hysteresis (m): the speed is raised again only with this much separation to spare.
    resume_margin_m: float = 0.03
    #: A detection older than this (s) is not trusted: the hand may have moved at
    #: ``human_speed_mps`` since it was seen.
    max_hand_age_s: float = 0.1
    #: a_h (m/s^2), directed mode: how fast the hand's speed toward the robot may have grown since
    #: the velocity it is perceived with was measured (0: v_h is the perceived speed).
    human_acceleration_mps2: float = 0.0
    #: Lag (s) of the perceived hand velocity beyond the perception age: the velocity smoothing
    #: time constant + half a frame of finite differencing.
    velocity_lag_s: float = 0.067
    #: Directed mode's hand motion: ``fit`` = velocity and acceleration of a quadratic fit of the newest
    #: detections' stamped positions (:class:`HandMotionFit`; no lag for a hand speeding up evenly), the
    #: hand taken to go on speeding up toward the robot at the fitted rate while the arm reacts and stops
    #: (a hand braking to rest is not taken to turn round); ``tracker`` = the perceived (smoothed)
    #: velocity, ``velocity_lag_s`` old.
    hand_motion: str = "fit"

    def __post_init__(self) -> None:
        if self.human_speed_mode not in HUMAN_SPEED_MODES:
            raise ValueError(f"human_speed_mode must be one of {HUMAN_SPEED_MODES}, got {self.human_speed_mode!r}")
        if self.hand_motion not in HAND_MOTION_SOURCES:
            raise ValueError(f"hand_motion must be one of {HAND_MOTION_SOURCES}, got {self.hand_motion!r}")
        for name in ("human_speed_mps", "human_speed_floor_mps", "reaction_time_s", "intrusion_distance_m",
                     "perception_uncertainty_m", "robot_uncertainty_m", "hand_radius_m", "resume_margin_m",
                     "max_hand_age_s", "human_acceleration_mps2", "velocity_lag_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (np.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite value >= 0, got {value!r}")
        if self.human_speed_floor_mps > self.human_speed_mps:
            raise ValueError(f"human_speed_floor_mps ({self.human_speed_floor_mps}) must not exceed "
                             f"human_speed_mps ({self.human_speed_mps})")
        if not (0.0 < self.stop_acceleration_scale <= 1.0):
            raise ValueError(f"stop_acceleration_scale must be in (0, 1], got {self.stop_acceleration_scale!r}")

    @property
    def constant_terms_m(self) -> float:
        """C + Z_d + Z_r (m)."""
        return self.intrusion_distance_m + self.perception_uncertainty_m + self.robot_uncertainty_m


class HandEstimate(NamedTuple):
    """What is known about the hand: a sphere ``centre_m`` of radius ``radius_m`` (the hand plus
    how far it may have moved unseen), its velocity (NaN = unknown), and the perception age (s).
    ``anywhere_in`` is set (and ``centre_m`` ignored) when the hand was never seen."""

    centre_m: np.ndarray
    radius_m: float
    velocity_mps: np.ndarray
    age_s: float
    anywhere_in: Zone | None = None
    #: Seconds the hand may have moved at v_h since ``centre_m`` was measured that ``radius_m`` does
    #: not cover yet: the perception age of a fresh detection (0 for ground truth).
    moved_s: float = 0.0
    #: Fitted acceleration (m/s^2, :class:`HandMotionFit`) at the detection; None = not fitted
    #: (``velocity_mps`` is then the tracker's, ``velocity_lag_s`` old).
    acceleration_mps2: np.ndarray | None = None


class Separation(NamedTuple):
    """One evaluation of the monitor at a robot configuration."""

    separation_m: float           # hand sphere to robot body (m); 0 when they touch
    protective_m: float           # S_p at the robot's current speed (m)
    robot_closing_mps: float      # the robot's speed toward the hand (m/s, > 0 approaching)
    human_closing_mps: float      # v_h used (m/s; directed mode: grown over the velocity's lag)
    stop_time_s: float            # T_s from the current speed
    reaction_time_s: float        # T_r (perception age + reaction_time_s)
    human_accel_mps2: float | None = None  # fitted acceleration toward the robot used in S_h (fit mode)

    @property
    def margin_m(self) -> float:
        return self.separation_m - self.protective_m

    @property
    def violated(self) -> bool:
        """Closer than S_p while moving toward the person (faster than :data:`APPROACH_SPEED_MPS`)."""
        return violates(self.separation_m, self.protective_m, self.robot_closing_mps)


def violates(separation_m: float, protective_m: float, robot_closing_mps: float) -> bool:
    """The SSM violation rule (one definition for the controller, the metrics and the reports):
    separation below S_p while the robot moves toward the person."""
    return robot_closing_mps > APPROACH_SPEED_MPS and separation_m < protective_m


class SeparationMonitor:
    """Evaluates S_p for the robot body against a hand estimate (see the module docstring)."""

    def __init__(self, config: SsmConfig, kinematics, acceleration_limits_rad_s2: np.ndarray) -> None:
        self.config = config
        self.kinematics = kinematics
        self._acceleration_limits = np.asarray(acceleration_limits_rad_s2, dtype=float)
        self._acc = self._acceleration_limits * config.stop_acceleration_scale

    def with_config(self, config: SsmConfig) -> SeparationMonitor:
        """The same robot monitored with other terms."""
        return SeparationMonitor(config, self.kinematics, self._acceleration_limits)

    # ------------------------------------------------------------------ the hand
    def hand_estimate(self, now_s: float, hand_m, velocity_mps, stamp_s: float | None,
                      last_seen: tuple[float, np.ndarray] | None, zone: Zone,
                      fit: tuple[np.ndarray, np.ndarray] | None = None) -> HandEstimate:
        """The hand as the monitor must assume it: the perceived hand when the newest perception
        (at most ``max_hand_age_s`` old) detects it, else the last seen position grown at
        ``human_speed_mps`` since then, else (never seen) anywhere in ``zone``. ``fit``: the
        (velocity, acceleration) of :class:`HandMotionFit` at that detection, used instead of
        ``velocity_mps`` when ``hand_motion`` is ``fit``."""
        cfg = self.config
        nan3 = np.full(3, np.nan)
        age = math.inf if stamp_s is None else max(0.0, now_s - stamp_s)
        hand = None if hand_m is None else np.asarray(hand_m, dtype=float)
        if hand is not None and hand.shape == (3,) and np.isfinite(hand).all() and age <= cfg.max_hand_age_s:
            if cfg.hand_motion == "fit" and fit is not None:
                return HandEstimate(hand, cfg.hand_radius_m, np.asarray(fit[0], dtype=float), age, moved_s=age,
                                    acceleration_mps2=np.asarray(fit[1], dtype=float))
            vel = nan3 if velocity_mps is None else np.asarray(velocity_mps, dtype=float)
            if vel.shape != (3,):
                vel = nan3
            return HandEstimate(hand, cfg.hand_radius_m, vel, age, moved_s=age)
        if hand is not None and hand.shape == (3,) and np.isfinite(hand).all() and stamp_s is not None:
            last_seen = (stamp_s, hand)
        if last_seen is not None:
            t_seen, where = last_seen
            unseen = max(0.0, now_s - t_seen)
            return HandEstimate(np.asarray(where, dtype=float), cfg.hand_radius_m + cfg.human_speed_mps * unseen,
                                nan3, unseen)
        return HandEstimate(nan3, cfg.hand_radius_m, nan3, math.inf, anywhere_in=zone)

    # ------------------------------------------------------------------ the robot
    def stop_time_s(self, qd_rad_s: np.ndarray) -> float:
        """T_s: how long the protective stop (a smooth ramp of the path speed to zero at the stop
        deceleration; peak deceleration 1.5 x the mean) takes from joint velocities ``qd``."""
        return float(np.max(1.5 * np.abs(qd_rad_s) / self._acc))

    def evaluate(self, q_rad: np.ndarray, qd_rad_s: np.ndarray, hand: HandEstimate) -> Separation:
        """S_p and the separation for the robot at ``q`` moving at ``qd`` (commanded)."""
        cfg = self.config
        q = np.asarray(q_rad, dtype=float)
        qd = np.asarray(qd_rad_s, dtype=float)
        body = robot_capsules(self.kinematics.joint_frames(q))
        dt = 0.01
        body_next = robot_capsules(self.kinematics.joint_frames(q + qd * dt))
        t_react = (hand.age_s if math.isfinite(hand.age_s) else 0.0) + cfg.reaction_time_s
        if hand.anywhere_in is not None:
            lo, hi = hand.anywhere_in.min_m, hand.anywhere_in.max_m
            d0 = body_to_box(body, lo, hi) - hand.radius_m
            d1 = body_to_box(body_next, lo, hi) - hand.radius_m
            v_h, a_fit = cfg.human_speed_mps, None
        else:
            d0, toward_hand = body_to_point(body, hand.centre_m)
            d1, _ = body_to_point(body_next, hand.centre_m)
            d0 -= hand.radius_m
            d1 -= hand.radius_m
            # (An unknown velocity gives K_h, which the lag does not raise.)
            a_fit = self.fitted_acceleration(hand, -toward_hand)
            v_h = self.speed_after_lag(self.human_speed(hand.velocity_mps, -toward_hand), hand.age_s, a_fit)
            # Where the hand may be now: v_h closer than where it was seen, moved_s ago. (S_h then
            # covers the reaction to what is seen next: T_r holds the perception age once more.)
            d0 -= max(v_h, 0.0) * hand.moved_s
            d1 -= max(v_h, 0.0) * hand.moved_s
        v_r = (d0 - d1) / dt
        t_stop = self.stop_time_s(qd)
        s_p = self._protective_m(v_h, max(v_r, 0.0), t_react, t_stop, a_fit)
        return Separation(max(d0, 0.0), float(s_p), float(v_r), float(v_h), t_stop, t_react, a_fit)

    def _protective_m(self, v_h: float, closing_mps: float, t_react_s: float, t_stop_s: float,
                      accel_mps2: float | None = None) -> float:
        """S_p = S_h + S_r + S_s + C + Z_d + Z_r (the module docstring's terms)."""
        return (self.human_travel_m(v_h, t_react_s + t_stop_s, accel_mps2) + closing_mps * t_react_s
                + 0.5 * closing_mps * t_stop_s + self.config.constant_terms_m)

    def fitted_acceleration(self, hand: HandEstimate, toward_robot: np.ndarray) -> float | None:
        """The fitted acceleration of the hand toward the robot (m/s^2, never below 0: a hand slowing
        down is not counted on to go on slowing), or None without a fit (or in constant mode)."""
        acc = hand.acceleration_mps2
        if self.config.human_speed_mode == "constant" or acc is None:
            return None
        acc = np.asarray(acc, dtype=float)
        if acc.shape != (3,) or not np.isfinite(acc).all():
            return None
        return max(float(acc @ toward_robot), 0.0)

    def human_travel_m(self, v_h: float, horizon_s: float, accel_mps2: float | None = None) -> float:
        """S_h: how far the hand coming at ``v_h`` may close in ``horizon_s`` (T_r + T_s). With
        ``human_acceleration_mps2`` a_h > 0 (directed mode) it may speed up at a_h on the way, to
        ``human_speed_mps`` (or keep a faster ``v_h``): the protective stop must hold against the
        speed the hand reaches while the arm brakes, not only the speed it has now."""
        cfg = self.config
        a = cfg.human_acceleration_mps2 if accel_mps2 is None else max(cfg.human_acceleration_mps2, accel_mps2)
        if cfg.human_speed_mode == "constant":
            return cfg.human_speed_mps * horizon_s
        floor_m = cfg.human_speed_floor_mps * horizon_s
        if a <= 0.0:
            return max(v_h * horizon_s, floor_m)
        # A hand moving away (v_h < 0) first has to turn round.
        v_max = max(cfg.human_speed_mps, v_h)
        t_up = min(horizon_s, (v_max - v_h) / a)
        return max(v_h * t_up + 0.5 * a * t_up * t_up + v_max * (horizon_s - t_up), floor_m)

    def speed_after_lag(self, v_h: float, age_s: float, accel_mps2: float | None = None) -> float:
        """Directed mode: the speed toward the robot the hand may have now, when ``v_h`` was
        measured ``age_s`` + ``velocity_lag_s`` ago and it may speed up at ``human_acceleration_mps2``
        (never beyond ``human_speed_mps`` unless measured faster). ``accel_mps2``: the fitted
        acceleration toward the robot (:class:`HandMotionFit`); ``v_h`` is then the fit's, measured
        ``age_s`` ago with no smoothing lag, and the hand has gone on speeding up at that rate since
        (measured, so not capped), plus the ``human_acceleration_mps2`` budget."""
        cfg = self.config
        if cfg.human_speed_mode == "constant":
            return v_h
        age = age_s if math.isfinite(age_s) else 0.0
        lag = age + cfg.velocity_lag_s
        if accel_mps2 is not None:
            v_h, lag = v_h + accel_mps2 * age, age
        if cfg.human_acceleration_mps2 <= 0.0:
            return v_h
        return min(v_h + cfg.human_acceleration_mps2 * lag, max(cfg.human_speed_mps, v_h))

    def human_speed(self, velocity_mps: np.ndarray, toward_robot: np.ndarray) -> float:
        """v_h: the hand's measured speed toward the robot (directed; negative moving away; the
        floor is applied to S_h, :meth:`human_travel_m`) or the constant."""
        cfg = self.config
        if cfg.human_speed_mode == "constant":
            return cfg.human_speed_mps
        vel = np.asarray(velocity_mps, dtype=float)
        if vel.shape != (3,) or not np.isfinite(vel).all():
            return cfg.human_speed_mps
        return float(min(float(vel @ toward_robot), cfg.human_speed_mps * 2.0))

    def protective_at_scale(self, sep: Separation, scale: float) -> float:
        """S_p (m) were the robot moving along the same path at ``scale`` times the speed that
        gave ``sep`` (closing speed and stopping time scale with it)."""
        return self._protective_m(sep.human_closing_mps, max(sep.robot_closing_mps, 0.0) * scale,
                                  sep.reaction_time_s, sep.stop_time_s * scale, sep.human_accel_mps2)

    def allowed_scale(self, sep_full: Separation, current_scale: float, step: float = 0.25,
                      next_check_s: float = 0.0) -> float:
        """Largest multiple of ``step`` in [0, 1] at which S_p fits the separation ``sep_full``
        (evaluated at full path speed). Changing speed takes time: while the speed ramps down to the
        new scale (at the stop deceleration) the arm closes in faster than the new scale's S_p
        assumes, and that distance is reserved. Raising the scale needs ``resume_margin_m`` to spare. Moving
        away from the person: 1. ``next_check_s``: how long until the next check can act; the arm (at the
        new speed) and the hand close in meanwhile, and that distance is reserved too."""
        v_full = sep_full.robot_closing_mps
        if v_full <= APPROACH_SPEED_MPS:
            return 1.0
        levels = np.arange(1.0, -1e-9, -step)
        for level in levels:
            level = float(max(level, 0.0))
            if level == 0.0:
                return 0.0
            margin = self.config.resume_margin_m if level > current_scale + 1e-9 else 0.0
            ramp_s = sep_full.stop_time_s * max(current_scale - level, 0.0)
            lag_m = v_full * 0.5 * max(current_scale - level, 0.0) * ramp_s
            # Until the next check both close in: the arm at the new speed, the hand at v_h.
            next_m = (v_full * level + max(sep_full.human_closing_mps, 0.0)) * next_check_s
            if self.protective_at_scale(sep_full, level) + margin + lag_m + next_m <= sep_full.separation_m:
                return level
        return 0.0

    def waiting_clearance_m(self, reaction_time_s: float) -> float:
        """How far (m) the robot body at rest must stay from the zone so that S_p holds for a
        hand anywhere in it moving at ``human_speed_mps`` (a waiting pose): hand sphere + v_h T_r
        + C + Z_d + Z_r, with ``reaction_time_s`` the expected T_r (perception age included)."""
        cfg = self.config
        return (cfg.hand_radius_m + cfg.human_speed_mps * (reaction_time_s + cfg.reaction_time_s)
                + cfg.constant_terms_m)


class HandMotionFit:
    """Velocity and acceleration of the hand from its newest detections, with less lag than a
    smoothed finite difference: a least-squares quadratic in time through the last ``max_points``
    stamped positions (at most ``window_s`` apart), differentiated at the newest. A hand speeding up
    evenly is fitted without lag; perception noise of 1 mm gives about 0.03 m/s of velocity noise
    at 30 Hz and five points. Two points give a finite-difference velocity and no acceleration; a
    gap longer than ``window_s`` starts the fit again.

    A hand that is slowing down (its fitted acceleration points against its mean velocity over the
    fitted detections, and that mean is faster than ``rest_speed_mps``) is braking to rest, the end
    of a movement: that part of its acceleration is dropped, as a hand that stops does not turn round
    at its braking rate (the monitor extrapolates the acceleration through the arm's reaction and
    stopping time). Only the braking component goes; the fitted velocity is kept."""

    def __init__(self, max_points: int = 5, window_s: float = 0.2, rest_speed_mps: float = 0.05) -> None:
        if max_points < 3:
            raise ValueError(f"max_points must be >= 3, got {max_points!r}")
        if not (math.isfinite(window_s) and window_s > 0.0):
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        if not rest_speed_mps >= 0.0:   # (inf: no hand is taken to be braking)
            raise ValueError(f"rest_speed_mps must be >= 0, got {rest_speed_mps!r}")
        self.max_points = int(max_points)
        self.window_s = float(window_s)
        self.rest_speed_mps = float(rest_speed_mps)
        self._t: list[float] = []
        self._p: list[np.ndarray] = []

    def reset(self) -> None:
        self._t.clear()
        self._p.clear()

    def add(self, stamp_s: float, position_m) -> None:
        """A detection; an older or repeated stamp is ignored."""
        position = np.asarray(position_m, dtype=float)
        if position.shape != (3,) or not np.isfinite(position).all() or not math.isfinite(stamp_s):
            return
        if self._t and stamp_s <= self._t[-1]:
            return
        if self._t and stamp_s - self._t[-1] > self.window_s:
            self.reset()
        self._t.append(float(stamp_s))
        self._p.append(position)
        while len(self._t) > self.max_points or self._t[-1] - self._t[0] > self.window_s:
            del self._t[0], self._p[0]

    def estimate(self, stamp_s: float | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """``(velocity (3,), acceleration (3,))`` at the newest detection (m/s, m/s^2; the
        acceleration is NaN from two points, and without its braking component, see the class
        docstring), or None with fewer than two or when the newest is not the detection stamped
        ``stamp_s`` (when given)."""
        n = len(self._t)
        if n < 2 or (stamp_s is not None and not math.isclose(stamp_s, self._t[-1], abs_tol=1e-9)):
            return None
        t = np.asarray(self._t) - self._t[-1]
        p = np.asarray(self._p)
        if n == 2:
            return (p[1] - p[0]) / (t[1] - t[0]), np.full(3, np.nan)
        basis = np.stack([np.ones(n), t, t * t], axis=1)
        coef, *_ = np.linalg.lstsq(basis, p, rcond=None)
        velocity, acceleration = coef[1], 2.0 * coef[2]
        # Mean velocity of the fitted curve over the detections: its displacement over their span.
        mean_velocity = coef[1] + coef[2] * t[0]
        speed = float(np.linalg.norm(mean_velocity))
        if speed > self.rest_speed_mps:
            heading = mean_velocity / speed
            along = float(acceleration @ heading)
            if along < 0.0:
                acceleration = acceleration - along * heading
        return velocity, acceleration


class GroundTruthMonitor:
    """Ground-truth separation monitoring for a simulator: call :meth:`sample` with the true arm
    configuration and hand position at each sample time (~100 Hz). Both velocities are the
    positions' differences over the sample interval: a simulated position-controlled joint's
    instantaneous velocity reading carries the motor loop's jitter (twice the arm's real motion
    in PyBullet), which is not motion toward anyone."""

    def __init__(self, monitor: SeparationMonitor, hand_radius_m: float, reaction_age_s: float) -> None:
        # Ground truth knows the hand's velocity now: S_h is ISO/TS 15066's v_h (T_r + T_s) with the
        # true v_h, without the allowance the controller makes for the speed it cannot see yet.
        self.monitor = monitor.with_config(replace(monitor.config, human_acceleration_mps2=0.0, velocity_lag_s=0.0))
        self.hand_radius_m = float(hand_radius_m)
        self.reaction_age_s = float(reaction_age_s)
        self._last: tuple[float, np.ndarray, np.ndarray] | None = None

    def sample(self, t_s: float, q_rad, hand_m, reaction_age_s: float | None = None) -> Separation:
        hand = np.asarray(hand_m, dtype=float)
        q = np.asarray(q_rad, dtype=float)
        velocity, qd = np.zeros(3), np.zeros(7)
        if self._last is not None and t_s > self._last[0]:
            dt = t_s - self._last[0]
            velocity = (hand - self._last[2]) / dt
            qd = (q - self._last[1]) / dt
        self._last = (float(t_s), q.copy(), hand.copy())
        age = self.reaction_age_s if reaction_age_s is None else float(reaction_age_s)
        # The true hand sphere (its real radius) at its true velocity; age: the perception part of T_r.
        return self.monitor.evaluate(q, qd, HandEstimate(hand, self.hand_radius_m, velocity, age))

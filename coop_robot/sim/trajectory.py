"""Joint-trajectory execution with ros2_control ``joint_trajectory_controller`` semantics.

The sim accepts the same ``trajectory_msgs/JointTrajectory`` commands as the real arm's joint
trajectory controller (JTC), so the controller node cannot tell which one it drives. This module
is the pure-NumPy part: validation and time sampling of one trajectory. Rules (as the JTC with
its default parameters):

* start time 0 means "start now"; a non-zero start time that makes the trajectory end in the
  past is rejected;
* joints are matched by name, in any order; an unknown name, a duplicate, or a missing joint
  (``allow_partial_joints_goal`` false) rejects the trajectory;
* ``time_from_start`` must be strictly increasing, every given vector must have one value per
  joint, values must be finite, and the last point's velocities must be zero within float
  epsilon (``allow_nonzero_velocity_at_trajectory_end`` false); a rejected trajectory leaves the
  current one running;
* a new trajectory replaces the current one; it is interpolated from the state at the moment it
  is received (position and velocity) to its first point, then between points: linear with
  positions only, cubic Hermite with positions and velocities, quintic with positions,
  velocities and accelerations (per segment, when both ends have them);
* after the last point the last position is held (zero velocity);
* an empty ``points`` list stops: the current position is held (ROS 1 JTC convention; the
  ros2_controllers JTC logs "Empty trajectory received" and ignores it instead).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: A last-point velocity below this counts as zero (rad/s); the JTC uses float epsilon too,
#: so round-off from a planner (1e-16) does not reject an otherwise valid trajectory.
_ZERO_VELOCITY_TOLERANCE = float(np.finfo(np.float32).eps)


class TrajectoryRejected(ValueError):
    """A trajectory violates the rules above; the message says which and how."""


@dataclass(frozen=True)
class Waypoint:
    """One trajectory point in the executor's joint order (rad, rad/s, rad/s^2)."""

    time_s: float  # absolute time of the point (trajectory start + time_from_start)
    positions: np.ndarray
    velocities: np.ndarray | None = None
    accelerations: np.ndarray | None = None


def _as_vector(values, n: int, what: str, index: int) -> np.ndarray | None:
    if values is None:
        return None
    v = np.asarray(list(values), dtype=float).reshape(-1)
    if v.size == 0:
        return None
    if v.size != n:
        raise TrajectoryRejected(f"point #{index} has {v.size} {what} for {n} joint names")
    if not np.all(np.isfinite(v)):
        raise TrajectoryRejected(f"point #{index} {what} must be finite, got {v.tolist()}")
    return v


def interpolate(t_s: float, a: Waypoint, b: Waypoint) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample the segment ``a -> b`` at ``t_s``: ``(q, qd, qdd)``.

    Linear when either end lacks velocities, cubic Hermite when both have positions and
    velocities, quintic when both also have accelerations (JTC spline interpolation).
    """
    duration = b.time_s - a.time_s
    if duration <= 0.0:
        return b.positions.copy(), _or_zeros(b.velocities, b.positions), _or_zeros(b.accelerations, b.positions)
    s = float(np.clip(t_s - a.time_s, 0.0, duration))
    q0, q1 = a.positions, b.positions
    if a.velocities is None or b.velocities is None:
        qd = (q1 - q0) / duration
        return q0 + qd * s, qd, np.zeros_like(q0)
    v0, v1 = a.velocities, b.velocities
    if a.accelerations is None or b.accelerations is None:
        T = duration
        c2 = (3.0 * (q1 - q0) - (2.0 * v0 + v1) * T) / T**2
        c3 = (2.0 * (q0 - q1) + (v0 + v1) * T) / T**3
        q = q0 + v0 * s + c2 * s**2 + c3 * s**3
        qd = v0 + 2.0 * c2 * s + 3.0 * c3 * s**2
        qdd = 2.0 * c2 + 6.0 * c3 * s
        return q, qd, qdd
    a0, a1 = a.accelerations, b.accelerations
    T = duration
    c0, c1, c2 = q0, v0, 0.5 * a0
    # Solve the remaining three coefficients from end position, velocity and acceleration.
    dq = q1 - (c0 + c1 * T + c2 * T**2)
    dv = v1 - (c1 + 2.0 * c2 * T)
    da = a1 - 2.0 * c2
    c3 = (10.0 * dq - 4.0 * dv * T + 0.5 * da * T**2) / T**3
    c4 = (-15.0 * dq + 7.0 * dv * T - da * T**2) / T**4
    c5 = (6.0 * dq - 3.0 * dv * T + 0.5 * da * T**2) / T**5
    q = c0 + c1 * s + c2 * s**2 + c3 * s**3 + c4 * s**4 + c5 * s**5
    qd = c1 + 2 * c2 * s + 3 * c3 * s**2 + 4 * c4 * s**3 + 5 * c5 * s**4
    qdd = 2 * c2 + 6 * c3 * s + 12 * c4 * s**2 + 20 * c5 * s**3
    return q, qd, qdd


def _or_zeros(v: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    return np.zeros_like(like) if v is None else v.copy()


class JointTrajectoryExecutor:
    """Holds the active trajectory of a fixed joint set and samples its reference.

    ``joint_names`` fixes the executor's joint order; every vector it returns uses that order.
    It starts holding ``initial_positions_rad`` (zeros if not given).
    """

    def __init__(self, joint_names: Sequence[str], initial_positions_rad=None,
                 allow_nonzero_velocity_at_trajectory_end: bool = False) -> None:
        names = [str(n) for n in joint_names]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"executor joint names must be non-empty and unique, got {names!r}")
        self.joint_names: tuple[str, ...] = tuple(names)
        self._index = {n: i for i, n in enumerate(names)}
        self._allow_nonzero_end_velocity = bool(allow_nonzero_velocity_at_trajectory_end)
        q0 = np.zeros(len(names)) if initial_positions_rad is None else self._check_state(initial_positions_rad)
        self._before: Waypoint = Waypoint(0.0, q0, np.zeros_like(q0))
        self._points: list[Waypoint] = []

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    def _check_state(self, values, what: str = "positions") -> np.ndarray:
        v = np.asarray(values, dtype=float).reshape(-1)
        if v.size != self.dof or not np.all(np.isfinite(v)):
            raise ValueError(f"{what} must be {self.dof} finite values, got {np.asarray(values).tolist()}")
        return v

    # ------------------------------------------------------------------ commands
    def hold(self, q_rad, t_s: float = 0.0) -> None:
        """Drop any trajectory and hold ``q_rad`` (zero velocity) from ``t_s`` on."""
        q = self._check_state(q_rad)
        self._before = Waypoint(float(t_s), q.copy(), np.zeros_like(q))
        self._points = []

    def set_trajectory(self, joint_names: Sequence[str],
                       points: Iterable[tuple],
                       start_time_s: float = 0.0,
                       now_s: float = 0.0,
                       current_q_rad=None,
                       current_qd_rad_s=None) -> None:
        """Validate and activate a trajectory (``trajectory_msgs/JointTrajectory`` content).

        ``points``: ``(time_from_start_s, positions, velocities or None, accelerations or None)``
        per point, vectors ordered like ``joint_names``. ``start_time_s`` is the header stamp
        (0 = now). ``now_s`` is the current time; the trajectory is interpolated from the
        current state ``current_q_rad`` / ``current_qd_rad_s`` (measured; when omitted, this
        executor's own reference at ``now_s``). Raises :class:`TrajectoryRejected` and keeps the
        active trajectory if anything is wrong.
        """
        now_s = float(now_s)
        names = [str(n) for n in joint_names]
        if not names:
            raise TrajectoryRejected("empty joint_names on incoming trajectory")
        if len(set(names)) != len(names):
            raise TrajectoryRejected(f"duplicate joint names on incoming trajectory: {names}")
        unknown = [n for n in names if n not in self._index]
        if unknown:
            raise TrajectoryRejected(
                f"incoming joint(s) {unknown} do not match the controlled joints {list(self.joint_names)}")
        missing = [n for n in self.joint_names if n not in names]
        if missing:
            raise TrajectoryRejected(
                f"trajectory must name every controlled joint (partial goals not allowed); missing {missing}")
        start = float(start_time_s)
        if not math.isfinite(start) or start < 0.0:
            raise TrajectoryRejected(f"start time must be a finite stamp >= 0 s, got {start_time_s!r}")

        order = [names.index(n) for n in self.joint_names]  # message index for each executor joint
        raw = list(points)
        parsed: list[tuple[float, np.ndarray, np.ndarray | None, np.ndarray | None]] = []
        for i, point in enumerate(raw):
            if len(point) < 2 or len(point) > 4:
                raise TrajectoryRejected(
                    f"point #{i} must be (time_from_start_s, positions[, velocities[, accelerations]]), got {point!r}")
            t_from_start = float(point[0])
            if not math.isfinite(t_from_start) or t_from_start < 0.0:
                raise TrajectoryRejected(f"point #{i} time_from_start must be finite and >= 0 s, got {point[0]!r}")
            if parsed and t_from_start <= parsed[-1][0]:
                raise TrajectoryRejected(
                    f"time_from_start must be strictly increasing: point #{i} at {t_from_start} s "
                    f"follows point #{i - 1} at {parsed[-1][0]} s")
            positions = _as_vector(point[1], len(names), "positions", i)
            if positions is None:
                raise TrajectoryRejected(f"point #{i} has no positions (positions are required)")
            velocities = _as_vector(point[2] if len(point) > 2 else None, len(names), "velocities", i)
            accelerations = _as_vector(point[3] if len(point) > 3 else None, len(names), "accelerations", i)
            if accelerations is not None and velocities is None:
                raise TrajectoryRejected(f"point #{i} has accelerations but no velocities")
            parsed.append((t_from_start, positions[order],
                           None if velocities is None else velocities[order],
                           None if accelerations is None else accelerations[order]))

        if parsed and start != 0.0 and start + parsed[-1][0] < now_s:
            raise TrajectoryRejected(
                f"trajectory with start time {start:.3f} s ends at {start + parsed[-1][0]:.3f} s, "
                f"before now ({now_s:.3f} s)")
        if parsed and not self._allow_nonzero_end_velocity:
            last_v = parsed[-1][2]
            if last_v is not None and np.any(np.abs(last_v) > _ZERO_VELOCITY_TOLERANCE):
                raise TrajectoryRejected(
                    f"the last point's velocities must be zero, got {last_v.tolist()} "
                    "(allow_nonzero_velocity_at_trajectory_end is false)")

        # Accepted: capture the state the new trajectory starts from.
        if current_q_rad is None:
            q_now, qd_now, qdd_now = self.sample(now_s)
            before = Waypoint(now_s, q_now, qd_now, qdd_now)
        else:
            q_now = self._check_state(current_q_rad, "current positions")
            qd_now = (np.zeros_like(q_now) if current_qd_rad_s is None
                      else self._check_state(current_qd_rad_s, "current velocities"))
            before = Waypoint(now_s, q_now, qd_now)
        if not parsed:  # empty trajectory: stop and hold the current position
            self.hold(before.positions, now_s)
            return
        t0 = now_s if start == 0.0 else start
        self._before = before
        self._points = [Waypoint(t0 + t, q, v, a) for t, q, v, a in parsed]

    # ------------------------------------------------------------------ sampling
    def sample(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reference ``(q rad, qd rad/s, qdd rad/s^2)`` at time ``t_s``."""
        t = float(t_s)
        before = self._before
        if not self._points or t <= before.time_s:
            if not self._points:
                return before.positions.copy(), np.zeros(self.dof), np.zeros(self.dof)
            return before.positions.copy(), _or_zeros(before.velocities, before.positions), np.zeros(self.dof)
        last = self._points[-1]
        if t >= last.time_s:
            return last.positions.copy(), np.zeros(self.dof), np.zeros(self.dof)
        prev = before
        for point in self._points:
            if t < point.time_s:
                return interpolate(t, prev, point)
            prev = point
        return last.positions.copy(), np.zeros(self.dof), np.zeros(self.dof)  # unreachable

    def reference(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Reference ``(q rad, qd rad/s)`` at time ``t_s`` (what the joint motors track)."""
        q, qd, _ = self.sample(t_s)
        return q, qd

    def is_done(self, t_s: float) -> bool:
        """True when holding, or when ``t_s`` is at or past the last point."""
        return not self._points or float(t_s) >= self._points[-1].time_s

    @property
    def end_time_s(self) -> float | None:
        """Absolute time of the active trajectory's last point (None while holding)."""
        return self._points[-1].time_s if self._points else None

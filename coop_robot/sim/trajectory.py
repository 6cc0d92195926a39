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

Joint limits (given ``limits``; the sim gives the Panda's): the real arm's own controller aborts a
motion whose commanded positions, velocities, accelerations or jerks leave its limits (a
reflex). Here such a trajectory is rejected on receipt, like any other invalid goal, and the
current one keeps running: every point's positions must lie within the position limits, and the
motion the executor will actually play from now on -- the segment from the measured state to the
first point, then the segments between points, as interpolated above; segments already in the past
are skipped -- must keep each joint's velocity, acceleration and jerk within the limits (jerk
where the interpolation defines it: inside cubic and quintic segments; on the first segment
acceleration and jerk are only reported, see :class:`MotionTolerances`). The ros2_controllers JTC
itself checks none of this.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from coop_robot.control.planning import JointLimits, evaluate_quintic, quintic_coefficients

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


@dataclass(frozen=True)
class MotionTolerances:
    """How far past a limit the played motion may go before a trajectory is rejected.

    ``position_rad`` (absolute) and ``relative`` (a fraction of the velocity, acceleration and jerk
    limits) absorb round-off and the sampling of the peaks, nothing more: the package's controller
    plans at half the velocity and acceleration limits (brakes at 0.8 of the acceleration limits,
    a move leaving a fast state up to the limits themselves) and its points, interpolated here,
    use at most 0.86 of an acceleration limit and 0.26 of a jerk limit (measured in the ROS graph,
    and for brakes and aborts planned from every 50 ms along the nominal reach).

    The segment from the measured state to the first point (the catch-up) is held to the position
    and velocity limits only. Its acceleration and jerk depend on where the arm is when the
    trajectory arrives, not on the trajectory alone: the controller's moves are stamped with the
    time they start and planned from joint states up to a tick old, so one received late must
    catch up in a first segment of a few milliseconds (in a 4-turn ROS graph session a resend
    arrived 71 ms after its stamp and needed 2.3 times joint 2's acceleration limit there). Those
    are returned as warnings: the real arm's controller might abort such a motion, and the
    controller should not rely on it, but rejecting them would drop the controller's own moves.
    """

    position_rad: float = 1e-3
    relative: float = 0.02


#: Samples per executed segment for the velocity, acceleration and position peaks (jerk is exact).
#: A quintic's peak between samples h apart exceeds the sampled one by at most h^2/8 times its
#: second derivative's peak, well under the relative tolerance at 32 intervals.
_SEGMENT_SAMPLES = 33
#: Segments evaluated at once (bounds the memory a trajectory with very many points needs).
_SEGMENT_CHUNK = 256
_UNITS = {"position": "rad", "velocity": "rad/s", "acceleration": "rad/s^2", "jerk": "rad/s^3"}


@dataclass(frozen=True)
class LimitUse:
    """The worst use of one kind of limit by a trajectory.

    ``value`` is the joint's position (rad) or the magnitude of its velocity, acceleration or
    jerk; ``limit`` the bound it is compared with; ``excess`` how far past it ``value`` is (rad for
    positions, a fraction of the limit otherwise; <= 0 within the limit). ``point`` is the point
    itself for a position at a point, else the point that ends the segment (``from_state``: the
    segment from the measured state to the first point), ``t_s`` the absolute time.
    """

    quantity: str
    joint: str
    point: int
    t_s: float
    value: float
    limit: float
    excess: float
    at_point: bool = False
    from_state: bool = False

    def describe(self) -> str:
        unit = _UNITS[self.quantity]
        if self.quantity == "position":
            where = f"at point #{self.point}" if self.at_point else self._segment()
            return (f"{self.joint} position {self.value:.6g} {unit} {where} is beyond its limit "
                    f"{self.limit:.6g} {unit}")
        return (f"{self.joint} {self.quantity} {self.value:.4g} {unit} {self._segment()} exceeds its limit "
                f"{self.limit:.4g} {unit}")

    def _segment(self) -> str:
        start = "from the current state" if self.from_state else f"from point #{self.point - 1}"
        return f"on the segment {start} to point #{self.point} (t = {self.t_s:.4f} s)"


def point_position_use(points: Sequence[Waypoint], limits: JointLimits, joint_names: Sequence[str]) -> LimitUse | None:
    """The point position farthest past (or closest to) the position limits; None without points."""
    if not points:
        return None
    lower, upper = np.asarray(limits.lower_rad, float), np.asarray(limits.upper_rad, float)
    q = np.stack([p.positions for p in points])  # (K, n)
    past = np.maximum(q - upper, lower - q)
    k, j = np.unravel_index(int(np.argmax(past)), past.shape)
    return LimitUse("position", str(joint_names[j]), int(k), points[k].time_s, float(q[k, j]),
                    float(upper[j] if q[k, j] > upper[j] else lower[j]), float(past[k, j]), at_point=True)


def played_motion_use(before: Waypoint, points: Sequence[Waypoint], now_s: float, limits: JointLimits,
                      joint_names: Sequence[str], coefficients: np.ndarray | None = None,
                      ) -> tuple[dict[str, LimitUse], dict[str, LimitUse]]:
    """The worst use of each limit (position, velocity, acceleration and, when ``limits`` has
    them, jerk) by the motion the executor plays from ``now_s`` on, as ``(catch_up, between)``:
    on the segment from ``before`` (the state at ``now_s``) to ``points[0]``, and on the segments
    between points (from ``now_s`` on; segments over before ``now_s`` are skipped). Positions
    along the segments may also go as far out as the state at ``now_s`` already is, and the segment
    from it as fast as it already moves: a stop from an arm moving beyond its velocity limit (driven
    there by a move that jumped) brakes it, and refusing it would leave the arm on that move.
    ``coefficients``: :func:`chain_coefficients` of ``[before, *points]`` if already known."""
    names = [str(n) for n in joint_names]
    lower, upper = np.asarray(limits.lower_rad, float), np.asarray(limits.upper_rad, float)
    seg_lower, seg_upper = np.minimum(lower, before.positions), np.maximum(upper, before.positions)
    bounds = {"velocity": np.asarray(limits.velocity_rad_s, float),
              "acceleration": np.asarray(limits.acceleration_rad_s2, float)}
    if limits.jerk_rad_s3 is not None:
        bounds["jerk"] = np.asarray(limits.jerk_rad_s3, float)
    catch_up_speed = bounds["velocity"]
    if before.velocities is not None:
        catch_up_speed = np.maximum(catch_up_speed, np.nan_to_num(np.abs(np.asarray(before.velocities, float))))
    chain = [before, *points]
    if coefficients is None:
        coefficients = chain_coefficients(chain)
    segments = [i for i in range(len(points)) if chain[i + 1].time_s > now_s]
    tau = np.linspace(0.0, 1.0, _SEGMENT_SAMPLES)
    catch_up: dict[str, LimitUse] = {}
    between: dict[str, LimitUse] = {}

    def keep(quantity: str, excess: np.ndarray, value: np.ndarray, limit: np.ndarray, idx: list[int]) -> None:
        excess = np.nan_to_num(excess, nan=np.inf)  # an overflow (huge velocities, tiny durations) is no pass
        first = np.asarray(idx) == 0
        for worst, rows in ((catch_up, np.flatnonzero(first)), (between, np.flatnonzero(~first))):
            if rows.size == 0:
                continue
            sub = excess[rows]
            r, j = np.unravel_index(int(np.argmax(sub)), sub.shape)
            r = int(rows[r])
            if quantity in worst and excess[r, j] <= worst[quantity].excess:
                continue
            i = idx[r]
            worst[quantity] = LimitUse(quantity, names[j], i, chain[i + 1].time_s, float(value[r, j]),
                                       float(limit[r, j]), float(excess[r, j]), from_state=i == 0)

    for first in range(0, len(segments), _SEGMENT_CHUNK):
        idx = segments[first:first + _SEGMENT_CHUNK]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            coeffs = coefficients[idx]  # (S, 6, n)
            s0 = np.array([max(0.0, now_s - chain[i].time_s) for i in idx])[:, None]  # (S, 1)
            s1 = np.array([chain[i + 1].time_s - chain[i].time_s for i in idx])[:, None]
            pos, vel, acc = evaluate_quintic(coeffs, s0 + (s1 - s0) * tau)  # (S, M, n)
            c3, c4, c5 = coeffs[:, 3], coeffs[:, 4], coeffs[:, 5]  # (S, n)
            # Jerk 6 c3 + 24 c4 s + 60 c5 s^2 peaks at an end of the played interval or at its vertex.
            vertex = np.clip(np.where(c5 != 0.0, -c4 / (5.0 * c5), s0), s0, s1)
            jerk = np.max([np.abs(6.0 * c3 + 24.0 * c4 * t + 60.0 * c5 * t**2) for t in (s0, s1, vertex)], axis=0)
            peaks = {"velocity": np.abs(vel).max(axis=1), "acceleration": np.abs(acc).max(axis=1), "jerk": jerk}
            for quantity, bound in bounds.items():
                bound = np.broadcast_to(bound, jerk.shape)
                if quantity == "velocity" and idx[0] == 0:
                    bound = bound.copy()
                    bound[0] = catch_up_speed
                keep(quantity, peaks[quantity] / bound - 1.0, peaks[quantity], bound, idx)
            high, low = pos.max(axis=1), pos.min(axis=1)
            above = high - seg_upper >= seg_lower - low
            keep("position", np.maximum(high - seg_upper, seg_lower - low), np.where(above, high, low),
                 np.where(above, seg_upper, seg_lower), idx)
    return catch_up, between


def chain_coefficients(chain: Sequence[Waypoint]) -> np.ndarray:
    """Power-basis coefficients ``(K, 6, n)`` of the K segments between successive waypoints of
    ``chain``, segment k in local time ``s = t - chain[k].time_s``: linear when either end lacks
    velocities, cubic Hermite when both have positions and velocities, quintic when both also
    have accelerations (JTC spline interpolation); unused higher coefficients are zero. A segment
    that does not go forward in time gets non-finite coefficients (it is never played)."""
    k = len(chain) - 1
    c = np.zeros((max(k, 0), 6, chain[0].positions.size if chain else 0))
    if k < 1:
        return c
    q = np.stack([w.positions for w in chain])
    zeros = np.zeros_like(q[0])
    v = np.stack([zeros if w.velocities is None else w.velocities for w in chain])
    acc = np.stack([zeros if w.accelerations is None else w.accelerations for w in chain])
    has_v = np.array([w.velocities is not None for w in chain])
    has_a = np.array([w.accelerations is not None for w in chain])
    T = np.array([b.time_s - a.time_s for a, b in zip(chain[:-1], chain[1:])])[:, None]  # (K, 1)
    cubic = has_v[:-1] & has_v[1:]
    quintic = cubic & has_a[:-1] & has_a[1:]
    cubic &= ~quintic
    linear = ~(cubic | quintic)
    q0, q1, v0, v1 = q[:-1], q[1:], v[:-1], v[1:]
    c[:, 0] = q0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        c[linear, 1] = ((q1 - q0) / T)[linear]
        c[cubic, 1] = v0[cubic]
        c[cubic, 2] = ((3.0 * (q1 - q0) - (2.0 * v0 + v1) * T) / T**2)[cubic]
        c[cubic, 3] = ((2.0 * (q0 - q1) + (v0 + v1) * T) / T**3)[cubic]
        if quintic.any():
            c[quintic] = quintic_coefficients(q0[quintic], v0[quintic], acc[:-1][quintic], q1[quintic],
                                              v1[quintic], acc[1:][quintic], T[quintic, 0])
    return c


def _evaluate(c: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q, qd, qdd)`` of one segment's coefficients ``(6, n)`` at local time ``s`` (Horner)."""
    q = ((((c[5] * s + c[4]) * s + c[3]) * s + c[2]) * s + c[1]) * s + c[0]
    qd = (((5.0 * c[5] * s + 4.0 * c[4]) * s + 3.0 * c[3]) * s + 2.0 * c[2]) * s + c[1]
    qdd = ((20.0 * c[5] * s + 12.0 * c[4]) * s + 6.0 * c[3]) * s + 2.0 * c[2]
    return q, qd, qdd


def interpolate(t_s: float, a: Waypoint, b: Waypoint) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample the segment ``a -> b`` at ``t_s`` (clipped to it): ``(q, qd, qdd)``; see
    :func:`chain_coefficients` for the interpolation."""
    duration = b.time_s - a.time_s
    if duration <= 0.0:
        return b.positions.copy(), _or_zeros(b.velocities, b.positions), _or_zeros(b.accelerations, b.positions)
    return _evaluate(chain_coefficients([a, b])[0], float(np.clip(t_s - a.time_s, 0.0, duration)))


def _or_zeros(v: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    return np.zeros_like(like) if v is None else v.copy()


class JointTrajectoryExecutor:
    """Holds the active trajectory of a fixed joint set and samples its reference.

    ``joint_names`` fixes the executor's joint order; every vector it returns uses that order.
    It starts holding ``initial_positions_rad`` (zeros if not given).
    """

    def __init__(self, joint_names: Sequence[str], initial_positions_rad=None,
                 allow_nonzero_velocity_at_trajectory_end: bool = False,
                 limits: JointLimits | None = None, tolerances: MotionTolerances = MotionTolerances()) -> None:
        names = [str(n) for n in joint_names]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"executor joint names must be non-empty and unique, got {names!r}")
        self.joint_names: tuple[str, ...] = tuple(names)
        self._index = {n: i for i, n in enumerate(names)}
        self._allow_nonzero_end_velocity = bool(allow_nonzero_velocity_at_trajectory_end)
        if limits is not None and np.shape(limits.lower_rad) != (len(names),):
            raise ValueError(f"limits must have one value per joint ({len(names)}), got {limits!r}")
        #: Joint limits in this executor's joint order (None: not checked).
        self.limits = limits
        self.tolerances = tolerances
        q0 = np.zeros(len(names)) if initial_positions_rad is None else self._check_state(initial_positions_rad)
        self._before: Waypoint = Waypoint(0.0, q0, np.zeros_like(q0))
        self._points: list[Waypoint] = []
        self._times = np.zeros(0)  # the points' absolute times (s)
        self._coefficients = np.zeros((0, 6, len(names)))  # chain_coefficients([before, *points])

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
        self._times = np.zeros(0)
        self._coefficients = np.zeros((0, 6, self.dof))

    def set_trajectory(self, joint_names: Sequence[str],
                       points: Iterable[tuple],
                       start_time_s: float = 0.0,
                       now_s: float = 0.0,
                       current_q_rad=None,
                       current_qd_rad_s=None) -> list[str]:
        """Validate and activate a trajectory (``trajectory_msgs/JointTrajectory`` content).

        ``points``: ``(time_from_start_s, positions, velocities or None, accelerations or None)``
        per point, vectors ordered like ``joint_names``. ``start_time_s`` is the header stamp
        (0 = now). ``now_s`` is the current time; the trajectory is interpolated from the
        current state ``current_q_rad`` / ``current_qd_rad_s`` (measured; when omitted, this
        executor's own reference at ``now_s``). Raises :class:`TrajectoryRejected` and keeps the
        active trajectory if anything is wrong. Returns warnings about the accepted trajectory
        (limits reported but not enforced, see :class:`MotionTolerances`), usually none.
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

        # The state the new trajectory starts from.
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
            return []
        t0 = now_s if start == 0.0 else start
        points = [Waypoint(t0 + t, q, v, a) for t, q, v, a in parsed]
        if self.limits is not None:  # positions first: no interpolation of 1e308
            use = point_position_use(points, self.limits, self.joint_names)
            if use is not None and use.excess > self.tolerances.position_rad:
                raise TrajectoryRejected(use.describe())
        coefficients = chain_coefficients([before, *points])
        warnings = [] if self.limits is None else self._check_limits(before, points, now_s, coefficients)
        # Accepted.
        self._before = before
        self._points = points
        self._times = np.array([p.time_s for p in points])
        self._coefficients = coefficients
        return warnings

    def _check_limits(self, before: Waypoint, points: list[Waypoint], now_s: float,
                      coefficients: np.ndarray) -> list[str]:
        """Reject a trajectory whose played motion leaves the joint limits (module docstring);
        return warnings for what is reported but not enforced (:class:`MotionTolerances`)."""
        tol = self.tolerances
        catch_up, between = played_motion_use(before, points, now_s, self.limits, self.joint_names, coefficients)
        checks = [(catch_up, "position"), (catch_up, "velocity")] + [
            (between, q) for q in ("position", "velocity", "acceleration", "jerk")]
        for uses, quantity in checks:
            use = uses.get(quantity)
            if use is not None and use.excess > (tol.position_rad if quantity == "position" else tol.relative):
                raise TrajectoryRejected(use.describe())
        warnings = []
        for quantity in ("acceleration", "jerk"):
            use = catch_up.get(quantity)
            if use is not None and use.excess > tol.relative:
                warnings.append(f"{use.describe()}, the first point being {1e3 * (use.t_s - now_s):.1f} ms away: "
                                "the arm's measured state does not lead smoothly into the trajectory; a real "
                                "arm's controller could abort this motion (reported, not enforced)")
        return warnings

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
        k = int(np.searchsorted(self._times, t, side="right"))  # the first point after t
        start_s = before.time_s if k == 0 else self._points[k - 1].time_s
        return _evaluate(self._coefficients[k], t - start_s)

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

"""Joint-space trajectory planning for the controller: minimum-jerk moves, stops and retreats.

Every motion is a quintic polynomial per joint (minimum-jerk when it starts and ends at rest),
timed so that sampled joint velocities and accelerations stay within a scaled fraction of the
Panda's limits. :class:`JointPlan` samples into points ready for a
``trajectory_msgs/JointTrajectory`` (time from start, positions, velocities, accelerations).

The zone guard rests on :func:`commit_time_s`: along a reach, the last moment at which an
abort (a retreat home from the reach's state at that moment) still keeps the end effector
outside the shared zone grown by a safety margin. Before it the controller can still turn
back; after it the entry is committed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coop_robot.control.kinematics import (
    JOINT_ACCELERATION_LIMIT_RAD_S2,
    JOINT_JERK_LIMIT_RAD_S3,
    JOINT_LOWER_RAD,
    JOINT_UPPER_RAD,
    JOINT_VELOCITY_LIMIT_RAD_S,
    PandaKinematics,
)
from coop_robot.geometry import MINIMUM_JERK_PEAK_VELOCITY, Zone

#: Peak of d2s/dt2 for a unit minimum-jerk move of unit duration (at tau = 0.5 -/+ sqrt(3)/6).
MINIMUM_JERK_PEAK_ACCELERATION = 10.0 / np.sqrt(3.0)


@dataclass(frozen=True)
class JointLimits:
    """Per-joint position (rad), velocity (rad/s), acceleration (rad/s^2) and, where known, jerk
    (rad/s^3) limits. The planner times its moves by the first three; the simulated arm's
    trajectory executor enforces all four."""

    lower_rad: np.ndarray
    upper_rad: np.ndarray
    velocity_rad_s: np.ndarray
    acceleration_rad_s2: np.ndarray
    jerk_rad_s3: np.ndarray | None = None

    @classmethod
    def panda(cls) -> JointLimits:
        return cls(JOINT_LOWER_RAD.copy(), JOINT_UPPER_RAD.copy(),
                   JOINT_VELOCITY_LIMIT_RAD_S.copy(), JOINT_ACCELERATION_LIMIT_RAD_S2.copy(),
                   JOINT_JERK_LIMIT_RAD_S3.copy())

    def contains(self, q_rad, tol_rad: float = 1e-9) -> bool:
        q = np.asarray(q_rad, dtype=float)
        return bool(np.all(q >= self.lower_rad - tol_rad) and np.all(q <= self.upper_rad + tol_rad))


@dataclass(frozen=True)
class TrajectoryPoint:
    """One JointTrajectory point: time from the trajectory start (s) and per-joint state."""

    time_from_start_s: float
    positions: tuple[float, ...]
    velocities: tuple[float, ...]
    accelerations: tuple[float, ...]


def quintic_coefficients(q0, v0, a0, q1, v1, a1, duration_s) -> np.ndarray:
    """Coefficients ``c[0..5]`` of ``q(t) = sum c_k t^k`` meeting both boundary states.

    Broadcasts over leading dimensions: states ``(..., n)``, ``duration_s`` ``(...)`` or scalar.
    Returns ``(..., 6, n)``.
    """
    q0, v0, a0, q1, v1, a1 = (np.asarray(x, dtype=float) for x in (q0, v0, a0, q1, v1, a1))
    T = np.asarray(duration_s, dtype=float)[..., None]
    h = q1 - q0 - v0 * T - 0.5 * a0 * T**2
    dv = v1 - v0 - a0 * T
    da = a1 - a0
    c3 = (10.0 * h - 4.0 * dv * T + 0.5 * da * T**2) / T**3
    c4 = (-15.0 * h + 7.0 * dv * T - da * T**2) / T**4
    c5 = (6.0 * h - 3.0 * dv * T + 0.5 * da * T**2) / T**5
    shape = np.broadcast_shapes(q0.shape, c3.shape)
    c0, c1, c2 = (np.broadcast_to(x, shape) for x in (q0, v0, 0.5 * a0))
    return np.stack([c0, c1, c2, *np.broadcast_arrays(c3, c4, c5)], axis=-2)


def evaluate_quintic(coeffs, t_s):
    """Position, velocity and acceleration of quintics ``(..., 6, n)`` at times ``t_s`` ``(..., m)``.

    Returns three arrays ``(..., m, n)``.
    """
    c = np.asarray(coeffs, dtype=float)[..., None, :, :]  # (..., 1, 6, n)
    t = np.asarray(t_s, dtype=float)[..., :, None]        # (..., m, 1)
    # Horner's scheme for the polynomial and its first two derivatives.
    q = c[..., 5, :] * t + c[..., 4, :]
    v = 5.0 * c[..., 5, :] * t + 4.0 * c[..., 4, :]
    a = 20.0 * c[..., 5, :] * t + 12.0 * c[..., 4, :]
    for k in (3, 2, 1):
        q = q * t + c[..., k, :]
        v = v * t + k * c[..., k, :]
        if k >= 2:
            a = a * t + k * (k - 1) * c[..., k, :]
    q = q * t + c[..., 0, :]
    return q, v, a


class JointPlan:
    """A joint trajectory made of quintic segments played one after the other.

    ``state_at(t)`` holds the final state after the end (and the first one before the start).
    """

    def __init__(self, segments: list[tuple[np.ndarray, float]]) -> None:
        if not segments:
            raise ValueError("a joint plan needs at least one segment")
        self._coeffs = [np.asarray(c, dtype=float) for c, _ in segments]
        self._durations = np.array([float(d) for _, d in segments])
        if np.any(self._durations <= 0.0):
            raise ValueError(f"segment durations must be positive, got {self._durations.tolist()} s")
        self._starts = np.concatenate([[0.0], np.cumsum(self._durations)[:-1]])

    @property
    def duration_s(self) -> float:
        return float(self._starts[-1] + self._durations[-1])

    @property
    def segments(self) -> list[tuple[np.ndarray, float]]:
        """The plan's quintic segments ``(coefficients, duration_s)``, in order."""
        return [(c.copy(), float(d)) for c, d in zip(self._coeffs, self._durations)]

    def then(self, other: JointPlan) -> JointPlan:
        """This plan followed by ``other`` (which should start where this one ends)."""
        return JointPlan(self.segments + other.segments)

    @property
    def start_rad(self) -> np.ndarray:
        return self._coeffs[0][0].copy()

    @property
    def goal_rad(self) -> np.ndarray:
        return self.state_at(self.duration_s)[0]

    def state_at(self, t_s):
        """``(q, qd, qdd)`` at time(s) ``t_s`` from the plan start: ``(7,)`` each for a scalar,
        ``(m, 7)`` each for an array of times."""
        scalar = np.ndim(t_s) == 0
        t = np.clip(np.atleast_1d(np.asarray(t_s, dtype=float)), 0.0, self.duration_s)
        n = self._coeffs[0].shape[-1]
        q, v, a = (np.empty((t.size, n)) for _ in range(3))
        seg = np.clip(np.searchsorted(self._starts, t, side="right") - 1, 0, len(self._coeffs) - 1)
        for i, coeffs in enumerate(self._coeffs):
            sel = seg == i
            if np.any(sel):
                local = np.minimum(t[sel] - self._starts[i], self._durations[i])
                q[sel], v[sel], a[sel] = evaluate_quintic(coeffs, local)
        if scalar:
            return q[0], v[0], a[0]
        return q, v, a

    def sample_times(self, rate_hz: float, include_start: bool = False) -> np.ndarray:
        """Times at ``rate_hz`` up to and including the end; the start (t=0) only if asked."""
        if not rate_hz > 0:
            raise ValueError(f"point rate must be positive, got {rate_hz!r} Hz")
        dt = 1.0 / rate_hz
        n = int(np.floor(self.duration_s / dt + 1e-9))
        times = dt * np.arange(0 if include_start else 1, n + 1)
        if times.size == 0 or self.duration_s - times[-1] > 1e-6:
            times = np.append(times, self.duration_s)
        return times

    def points(self, rate_hz: float) -> list[TrajectoryPoint]:
        """JointTrajectory-ready points at ``rate_hz``, from one period after the start to the end.

        The start state itself is left out: a joint trajectory controller interpolates from the
        arm's current state to the first point, and a point at ``time_from_start = 0`` would ask
        it to be somewhere already.
        """
        times = self.sample_times(rate_hz)
        q, v, a = self.state_at(times)
        return [TrajectoryPoint(float(t), tuple(map(float, qi)), tuple(map(float, vi)), tuple(map(float, ai)))
                for t, qi, vi, ai in zip(times, q, v, a)]

    def max_abs_velocity_rad_s(self, step_s: float = 0.005) -> np.ndarray:
        _, v, _ = self.state_at(np.arange(0.0, self.duration_s + step_s, step_s))
        return np.abs(v).max(axis=0)


# ---------------------------------------------------------------------- timing and plans
def minimum_jerk_duration_s(q0_rad, q1_rad, limits: JointLimits, velocity_scale: float,
                            min_duration_s: float = 0.0) -> float:
    """Shortest minimum-jerk duration (s) keeping every joint's peak velocity and acceleration
    within ``velocity_scale`` times its limits, and at least ``min_duration_s``."""
    _check_scale(velocity_scale)
    dq = np.abs(np.asarray(q1_rad, dtype=float) - np.asarray(q0_rad, dtype=float))
    t_vel = MINIMUM_JERK_PEAK_VELOCITY * dq / (velocity_scale * limits.velocity_rad_s)
    t_acc = np.sqrt(MINIMUM_JERK_PEAK_ACCELERATION * dq / (velocity_scale * limits.acceleration_rad_s2))
    return float(max(min_duration_s, t_vel.max(), t_acc.max(), 1e-3))


def plan_minimum_jerk(q0_rad, q1_rad, limits: JointLimits, velocity_scale: float,
                      min_duration_s: float = 0.0) -> JointPlan:
    """Minimum-jerk move between two configurations at rest, timed by :func:`minimum_jerk_duration_s`."""
    q0 = np.asarray(q0_rad, dtype=float)
    q1 = _check_goal(q1_rad, limits)
    T = minimum_jerk_duration_s(q0, q1, limits, velocity_scale, min_duration_s)
    zero = np.zeros_like(q0)
    return JointPlan([(quintic_coefficients(q0, zero, zero, q1, zero, zero, T), T)])


def plan_to_rest(q_rad, qd_rad_s, qdd_rad_s2, goal_rad, limits: JointLimits, velocity_scale: float,
                 min_duration_s: float = 0.0, acceleration_scale: float | None = None) -> JointPlan:
    """One quintic from the current state ``(q, qd, qdd)`` to ``goal_rad`` at rest.

    Its duration is the shortest (grid search, then bisection) whose velocities, accelerations and
    positions stay within the scaled limits (:func:`quintics_within_limits`), raised where the
    start state already exceeds them (:func:`start_state_allowance`) so that a move that starts
    fast is never rejected for its own start. ``acceleration_scale`` (default:
    ``velocity_scale``) scales the acceleration limits: an abort may decelerate harder than a
    routine move.
    """
    coeffs, durations = _quintics_to_rest(np.asarray(q_rad, float)[None], np.asarray(qd_rad_s, float)[None],
                                          np.asarray(qdd_rad_s2, float)[None], _check_goal(goal_rad, limits),
                                          limits, velocity_scale, min_duration_s, acceleration_scale)
    return JointPlan([(coeffs[0], float(durations[0]))])


def brake_stop_position(q_rad, qd_rad_s, qdd_rad_s2, duration_s: float) -> np.ndarray:
    """Where a smooth stop of ``duration_s`` from ``(q, qd, qdd)`` comes to rest.

    For ``qdd = 0`` the quintic from ``(q, qd, 0)`` to ``(q + qd T / 2, 0, 0)`` is
    ``q + qd (t - t^3/T^2 + t^4/(2 T^3))``: velocity falls monotonically to zero and the peak
    deceleration is ``1.5 |qd| / T``. The ``qdd T^2 / 12`` term keeps it smooth otherwise.
    """
    q, qd, qdd = (np.asarray(x, dtype=float) for x in (q_rad, qd_rad_s, qdd_rad_s2))
    return q + 0.5 * qd * duration_s + qdd * duration_s**2 / 12.0


def plan_brake(q_rad, qd_rad_s, qdd_rad_s2, limits: JointLimits, min_duration_s: float = 0.1,
               deceleration_scale: float = 0.8) -> JointPlan | None:
    """Brake to a stop from the current state as fast as ``deceleration_scale`` of the
    acceleration limits allows (at least ``min_duration_s``), staying within the position limits
    and the velocity and acceleration limits (or the start state's, where it already exceeds them).

    None when there is no such brake: from a fast state close to a joint limit, a smooth stop that
    keeps within the limit decelerates harder than allowed, and a longer one passes the limit. The
    caller must stop the arm some other way (:meth:`ArmController._send_rest_point`); an arm's
    controller would refuse a plan through its limits and go on with the move it has."""
    q, qd, qdd = (np.asarray(x, dtype=float) for x in (q_rad, qd_rad_s, qdd_rad_s2))
    _check_scale(deceleration_scale)
    a_max = deceleration_scale * limits.acceleration_rad_s2
    # Peak deceleration of the smooth stop is 1.5 |qd| / T; lengthened below if qdd needs it.
    T = float(max(min_duration_s, np.max(1.5 * np.abs(qd) / a_max)))
    zero = np.zeros_like(q)
    v_allowed = np.maximum(limits.velocity_rad_s, np.abs(qd)) * (1 + 1e-6)
    a_allowed = np.maximum(limits.acceleration_rad_s2, np.abs(qdd)) * (1 + 1e-6)
    for _ in range(20):
        stop = np.clip(brake_stop_position(q, qd, qdd, T), limits.lower_rad, limits.upper_rad)
        coeffs = quintic_coefficients(q, qd, qdd, stop, zero, zero, T)
        if quintics_within_limits(coeffs[None], np.array([T]), limits, v_allowed[None], a_allowed[None])[0]:
            return JointPlan([(coeffs, T)])
        T *= 1.25
    return None


def quintics_within_limits(coeffs, durations_s, limits: JointLimits, velocity_allowed, acceleration_allowed,
                           samples: int = 41) -> np.ndarray:
    """Whether each of K quintics ``(K, 6, n)`` over ``durations_s`` ``(K,)`` stays within the
    position limits and the allowed velocity / acceleration magnitudes ``(K, n)`` or ``(n,)``.

    Rigorous on a coarse grid: between samples ``h`` apart, an extremum of ``f`` can exceed the
    sampled maximum by at most ``h^2/8 max|f''|``, and ``f''`` of velocity (jerk, quadratic) and
    of acceleration (snap, linear) have closed-form maxima; positions use the acceleration bound.
    """
    c = np.asarray(coeffs, dtype=float)
    T = np.asarray(durations_s, dtype=float)
    tau = np.linspace(0.0, 1.0, samples)
    pos, vel, acc = evaluate_quintic(c, T[:, None] * tau)  # (K, M, n)
    h2_8 = ((T / (samples - 1)) ** 2 / 8.0)[:, None]  # (K, 1)
    c3, c4, c5 = c[:, 3], c[:, 4], c[:, 5]  # (K, n)
    Tn = T[:, None]
    # max |jerk| over [0, T]: jerk = 6 c3 + 24 c4 t + 60 c5 t^2 (ends and vertex).
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.clip(np.where(c5 != 0.0, -c4 / (5.0 * c5), 0.0), 0.0, Tn)
    jerk = np.stack([6 * c3 + 24 * c4 * t + 60 * c5 * t**2 for t in (np.zeros_like(Tn), Tn, vertex)])
    max_jerk = np.abs(jerk).max(axis=0)
    max_snap = np.maximum(np.abs(24 * c4), np.abs(24 * c4 + 120 * c5 * Tn))
    max_v = np.abs(vel).max(axis=1) + h2_8 * max_jerk
    max_a = np.abs(acc).max(axis=1) + h2_8 * max_snap
    pos_slack = h2_8 * max_a
    v_ok = np.all(max_v <= np.asarray(velocity_allowed), axis=1)
    a_ok = np.all(max_a <= np.asarray(acceleration_allowed), axis=1)
    p_ok = (np.all(pos.min(axis=1) - pos_slack >= limits.lower_rad - 1e-9, axis=1)
            & np.all(pos.max(axis=1) + pos_slack <= limits.upper_rad + 1e-9, axis=1))
    return v_ok & a_ok & p_ok


#: A retreat starting while still accelerating may carry on speeding up for about this long (s).
START_ACCELERATION_CARRY_S = 0.25


def start_state_allowance(qd_rad_s, qdd_rad_s2, limits: JointLimits, velocity_scale: float,
                          acceleration_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Velocity and acceleration magnitudes a plan from a moving state may reach, per joint.

    The scaled limits, raised to what the start state already has -- its velocity plus what its
    acceleration adds in :data:`START_ACCELERATION_CARRY_S` -- and never above the hard limits.
    Leaving a fast reach cannot instantly be slower than the reach itself.
    """
    qd, qdd = np.abs(np.asarray(qd_rad_s, dtype=float)), np.abs(np.asarray(qdd_rad_s2, dtype=float))
    v = np.maximum(velocity_scale * limits.velocity_rad_s, qd + START_ACCELERATION_CARRY_S * qdd)
    a = np.maximum(acceleration_scale * limits.acceleration_rad_s2, qdd)
    return (np.minimum(v, limits.velocity_rad_s) * (1 + 1e-6),
            np.minimum(a, limits.acceleration_rad_s2) * (1 + 1e-6))


def _check_scale(scale: float) -> None:
    if not (np.isfinite(scale) and 0.0 < scale <= 1.0):
        raise ValueError(f"velocity/acceleration scale must be in (0, 1], got {scale!r}")


def _check_goal(goal_rad, limits: JointLimits) -> np.ndarray:
    goal = np.asarray(goal_rad, dtype=float)
    if goal.shape != limits.lower_rad.shape or not np.all(np.isfinite(goal)):
        raise ValueError(f"goal must be {limits.lower_rad.size} finite joint angles, got {goal_rad!r}")
    if not limits.contains(goal, tol_rad=1e-6):
        raise ValueError(f"goal {np.round(goal, 4).tolist()} rad is outside the joint limits "
                         f"[{limits.lower_rad.tolist()}, {limits.upper_rad.tolist()}]")
    return goal


# Duration search for plan_to_rest: a grid of multiples of the at-rest minimum-jerk time, then
# bisection to about 0.2 % of the grid step.
_DURATION_GRID = np.geomspace(0.2, 6.0, 16)
_DURATION_BISECTIONS = 8


def _quintics_to_rest(q, qd, qdd, goal, limits: JointLimits, velocity_scale: float, min_duration_s: float,
                      acceleration_scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`plan_to_rest` over K start states ``(K, n)`` to one goal.

    Vectorised over the K states: the shortest feasible duration on a grid of multiples of the
    at-rest minimum-jerk time, refined by bisection. Returns ``(coefficients (K, 6, n), durations (K,))``.
    """
    _check_scale(velocity_scale)
    acceleration_scale = velocity_scale if acceleration_scale is None else acceleration_scale
    _check_scale(acceleration_scale)
    floor_s = max(min_duration_s, 0.05)
    base = np.array([minimum_jerk_duration_s(qk, goal, limits, velocity_scale, 0.0) for qk in q])
    v_allowed, a_allowed = start_state_allowance(qd, qdd, limits, velocity_scale, acceleration_scale)

    def feasible(durations: np.ndarray) -> np.ndarray:
        coeffs = quintic_coefficients(q, qd, qdd, goal, 0.0, 0.0, durations)
        return quintics_within_limits(coeffs, durations, limits, v_allowed, a_allowed)

    # Feasibility need not be monotonic in the duration (a long move lets the start velocity
    # carry the arm far), so scan a geometric grid for the first feasible duration, then bisect
    # between it and the infeasible one before it.
    grid = np.maximum(base[:, None] * _DURATION_GRID[None, :], floor_s)  # (K, G)
    ok = np.stack([feasible(grid[:, g]) for g in range(grid.shape[1])], axis=1)
    rows = np.arange(q.shape[0])
    first = np.argmax(ok, axis=1)
    any_ok = ok.any(axis=1)
    hi = grid[rows, first]
    lo = np.where(first > 0, grid[rows, np.maximum(first - 1, 0)], hi)
    for _ in range(_DURATION_BISECTIONS):
        mid = 0.5 * (lo + hi)
        ok_mid = feasible(mid)
        hi = np.where(ok_mid, mid, hi)
        lo = np.where(ok_mid, lo, mid)
    durations = hi
    if not any_ok.all():
        # No duration on the grid is feasible (rare): take the one that exceeds the limits least.
        bad = ~any_ok
        coeffs = quintic_coefficients(q[bad, None], qd[bad, None], qdd[bad, None], goal, 0.0, 0.0, grid[bad])
        _, vel, acc = evaluate_quintic(coeffs, grid[bad][..., None] * np.linspace(0.0, 1.0, 41))
        excess = np.maximum((np.abs(vel) / v_allowed[bad, None, None]).max(axis=(2, 3)),
                            (np.abs(acc) / a_allowed[bad, None, None]).max(axis=(2, 3)))
        durations[bad] = grid[bad][np.arange(int(bad.sum())), np.argmin(excess, axis=1)]
    return quintic_coefficients(q, qd, qdd, goal, 0.0, 0.0, durations), durations


# ---------------------------------------------------------------------- zone checks
def ee_path_m(plan: JointPlan, kinematics: PandaKinematics, step_s: float = 0.005):
    """EE positions (m, ``world``) along ``plan`` every ``step_s``: ``(times_s, (m, 3))``."""
    times = np.append(np.arange(0.0, plan.duration_s, step_s), plan.duration_s)
    q, _, _ = plan.state_at(times)
    return times, kinematics.fk_many(q)


def first_zone_entry_s(plan: JointPlan, kinematics: PandaKinematics, zone: Zone,
                       margin_m: float = 0.0, step_s: float = 0.005) -> float | None:
    """First time (s from the plan start) the EE is inside ``zone`` grown by ``margin_m``;
    ``None`` when it never is."""
    times, ee = ee_path_m(plan, kinematics, step_s)
    inside = zone.contains_many(ee, margin_m)
    return float(times[np.argmax(inside)]) if inside.any() else None


def zone_time_after_leaving_s(plan: JointPlan, kinematics: PandaKinematics, zone: Zone,
                              step_s: float = 0.005) -> float:
    """How long (s) the EE is inside ``zone`` along ``plan`` after it first is outside it: 0 for a
    path that keeps out (starting outside) or leaves and never comes back (starting inside); the
    whole plan's duration for one that never leaves. A move home must score 0."""
    _, ee = ee_path_m(plan, kinematics, step_s)
    inside = zone.contains_many(ee, 0.0)
    outside = np.flatnonzero(~inside)
    if outside.size == 0:
        return float(plan.duration_s)
    return float(np.count_nonzero(inside[outside[0]:]) * step_s)


def commit_time_s(reach: JointPlan, kinematics: PandaKinematics, zone: Zone, retreat_goal_rad,
                  limits: JointLimits, velocity_scale: float, margin_m: float = 0.02,
                  latency_s: float = 0.02, min_duration_s: float = 0.0, step_s: float = 0.01,
                  acceleration_scale: float | None = None) -> float:
    """Last time along ``reach`` up to which an abort keeps the EE out of the zone.

    An abort decided at time ``t`` is modelled as the reach continuing for ``latency_s`` (tick
    and transport delay) and then :func:`plan_to_rest` back to ``retreat_goal_rad`` from the
    reach's state at ``t + latency_s``. It is safe when neither the reach up to then nor the
    retreat brings the EE within ``margin_m`` of the zone. The commit time is the end of the
    initial run of safe abort times (checked every ``step_s``): 0 when even an immediate abort
    would enter, the reach duration when the reach never comes near the zone.
    """
    T = reach.duration_s
    candidates = np.append(np.arange(0.0, T, step_s), T)
    t_abort = np.minimum(candidates + latency_s, T)
    # Reach prefix: EE inside (with margin) at any time up to t_abort?
    fine_t, fine_ee = ee_path_m(reach, kinematics, step_s / 2)
    inside_fine = zone.contains_many(fine_ee, margin_m)
    first_inside = fine_t[np.argmax(inside_fine)] if inside_fine.any() else np.inf
    reach_entered = t_abort >= first_inside
    # Retreats from every candidate state, planned and checked in one batch.
    q, qd, qdd = reach.state_at(t_abort)
    goal = _check_goal(retreat_goal_rad, limits)
    coeffs, durations = _quintics_to_rest(q, qd, qdd, goal, limits, velocity_scale, min_duration_s,
                                          acceleration_scale)
    # Sample every retreat at least every step_s (the longest sets the count).
    tau = np.linspace(0.0, 1.0, int(np.ceil(durations.max() / step_s)) + 1)
    pos, _, _ = evaluate_quintic(coeffs, durations[:, None] * tau)  # (K, M, n)
    ee = kinematics.fk_many(pos.reshape(-1, pos.shape[-1])).reshape(pos.shape[0], pos.shape[1], 3)
    retreat_enters = zone.contains_many(ee.reshape(-1, 3), margin_m).reshape(ee.shape[:2]).any(axis=1)
    safe = ~reach_entered & ~retreat_enters
    if not safe[0]:
        return 0.0
    if safe.all():
        return float(T)
    return float(candidates[np.argmin(safe) - 1])


# ---------------------------------------------------------------------- time scaling on a path
def _smoothstep_integral(u):
    """Integral over [0, u] of the smoothstep 3u^2 - 2u^3."""
    return u**3 - 0.5 * u**4


class ScaledPlan(JointPlan):
    """A :class:`JointPlan` (the *path*) played from path time ``tau0_s`` with its speed scaled.

    The speed scale ``sigma`` (path seconds per second) follows ``profile``: a sequence of
    ``(duration_s, sigma_from, sigma_to)`` pieces, each a smoothstep change (constant when the two
    are equal), after which it stays at the last ``sigma_to`` (``sigma0`` when the profile is
    empty). The arm keeps to the same joint-space path at any speed, so a check made in path time
    (a reach's commit time) holds whatever the scaling. A final speed of 0 stops on the path (at
    rest at the end of the profile); otherwise the plan ends at the path's goal, at rest (a
    minimum-jerk path ends at rest, so the end is smooth at any scale).
    """

    def __init__(self, path: JointPlan, tau0_s: float = 0.0, sigma0: float = 1.0,
                 profile: list[tuple[float, float, float]] | None = None) -> None:
        if isinstance(path, ScaledPlan):
            raise TypeError("scale the underlying path, not a ScaledPlan")
        pieces = []
        sigma = float(sigma0)
        for duration, s_from, s_to in profile or []:
            for name, value in (("sigma", s_from), ("sigma", s_to)):
                if not (np.isfinite(value) and -1e-9 <= value <= 1.0 + 1e-9):
                    raise ValueError(f"{name} must be in [0, 1], got {value!r}")
            if not (np.isfinite(duration) and duration >= 0.0):
                raise ValueError(f"profile durations must be >= 0, got {duration!r}")
            if abs(s_from - sigma) > 1e-6:
                raise ValueError(f"speed profile is not continuous: {sigma} then {s_from}")
            if duration > 0.0:
                pieces.append((float(duration), float(np.clip(s_from, 0, 1)), float(np.clip(s_to, 0, 1))))
            sigma = float(np.clip(s_to, 0.0, 1.0))
        if not (np.isfinite(sigma0) and -1e-9 <= sigma0 <= 1.0 + 1e-9):
            raise ValueError(f"sigma0 must be in [0, 1], got {sigma0!r}")
        self.path = path
        self.tau0_s = float(np.clip(tau0_s, 0.0, path.duration_s))
        self.sigma0 = float(np.clip(sigma0, 0.0, 1.0))
        self.sigma1 = sigma  # the final speed scale
        self._pieces = pieces
        self._starts = np.concatenate([[0.0], np.cumsum([d for d, _, _ in pieces])])
        # Path time at the start of each piece, and at the end of the profile.
        taus = [self.tau0_s]
        for d, a, b in pieces:
            taus.append(taus[-1] + 0.5 * (a + b) * d)
        self._taus = np.array(taus)
        end = path.duration_s
        profile_s = float(self._starts[-1])
        if self.sigma1 <= 0.0 and self._taus[-1] <= end:
            self._duration = max(profile_s, 1e-6)
            self.stop_tau_s = float(self._taus[-1])
        elif self._taus[-1] >= end:
            lo, hi = 0.0, profile_s  # the path ends during the profile: find when
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if self.tau_at(mid, clip=False) < end else (lo, mid)
            self._duration = max(hi, 1e-6)
            self.stop_tau_s = end
        else:
            self._duration = max(profile_s + (end - self._taus[-1]) / self.sigma1, 1e-6)
            self.stop_tau_s = end

    @property
    def duration_s(self) -> float:
        return self._duration

    @property
    def start_rad(self) -> np.ndarray:
        return self.path.state_at(self.tau0_s)[0]

    @property
    def goal_rad(self) -> np.ndarray:
        return self.path.state_at(self.stop_tau_s)[0]

    @property
    def stops_on_path(self) -> bool:
        """True when the plan ends at rest part-way along its path (final speed 0)."""
        return self.sigma1 <= 0.0 and self.stop_tau_s < self.path.duration_s - 1e-9

    def _profile(self, t: np.ndarray):
        """``(tau, sigma, dsigma)`` at plan times ``t`` (unclipped path time)."""
        tau = np.full_like(t, self._taus[-1]) + self.sigma1 * np.maximum(t - self._starts[-1], 0.0)
        sigma = np.full_like(t, self.sigma1)
        dsigma = np.zeros_like(t)
        for i, (d, a, b) in enumerate(self._pieces):
            sel = (t >= self._starts[i]) & (t < self._starts[i + 1])
            if not np.any(sel):
                continue
            u = (t[sel] - self._starts[i]) / d
            delta = b - a
            tau[sel] = self._taus[i] + a * u * d + delta * d * (u**3 - 0.5 * u**4)
            sigma[sel] = a + delta * (3 * u**2 - 2 * u**3)
            dsigma[sel] = delta * 6 * u * (1 - u) / d
        return tau, sigma, dsigma

    def tau_at(self, t_s, clip: bool = True):
        """Path time (s) reached ``t_s`` seconds after this plan started."""
        t = np.maximum(np.atleast_1d(np.asarray(t_s, dtype=float)), 0.0)
        tau = self._profile(t)[0]
        if clip:
            tau = np.minimum(tau, self.stop_tau_s)
        return float(tau[0]) if np.ndim(t_s) == 0 else tau

    def sigma_at(self, t_s) -> float:
        """Speed scale at ``t_s`` (0 once the plan has come to rest)."""
        t = float(t_s)
        if t >= self._duration:
            return 0.0 if self.sigma1 <= 0.0 or self.stop_tau_s >= self.path.duration_s else self.sigma1
        return float(self._profile(np.array([max(t, 0.0)]))[1][0])

    @property
    def brake_start_s(self) -> float | None:
        """Plan time (s) the last piece, the ramp down to rest on the path, starts; None when the
        plan does not stop on its path that way."""
        if self.stops_on_path and self._pieces and self._pieces[-1][2] <= 0.0:
            return float(self._starts[-2])
        return None

    def braking_to_stop(self, t_s: float) -> bool:
        """True once the plan is in its last piece, ramping down to rest on the path."""
        return (self.stops_on_path and bool(self._pieces) and self._pieces[-1][2] <= 0.0
                and float(t_s) >= self._starts[-2] - 1e-9)

    def max_sigma_after(self, t_s: float) -> float:
        """The highest speed scale the plan reaches from ``t_s`` on."""
        t = max(float(t_s), 0.0)
        top = self.sigma_at(t)
        for i, (_, _, b) in enumerate(self._pieces):
            if self._starts[i + 1] > t:
                top = max(top, b)
        if self._duration > self._starts[-1] and self._duration > t:
            top = max(top, self.sigma1)
        return float(top)

    def state_at(self, t_s):
        scalar = np.ndim(t_s) == 0
        t = np.clip(np.atleast_1d(np.asarray(t_s, dtype=float)), 0.0, self._duration)
        tau, sigma, dsigma = self._profile(t)
        tau = np.minimum(tau, self.stop_tau_s)
        q, v, a = self.path.state_at(tau)
        v_out = v * sigma[:, None]
        a_out = a * (sigma**2)[:, None] + v * dsigma[:, None]
        done = t >= self._duration - 1e-12
        if np.any(done):  # at rest at the end (stop or path goal)
            v_out[done] = 0.0
            a_out[done] = 0.0
        if scalar:
            return q[0], v_out[0], a_out[0]
        return q, v_out, a_out


def ramp_time_s(path: JointPlan, tau_s: float, sigma_from: float, sigma_to: float, limits: JointLimits,
                acceleration_scale: float, min_ramp_s: float = 0.05, until_tau_s: float | None = None) -> float:
    """How long a smoothstep change of the path speed from ``sigma_from`` to ``sigma_to`` must take
    at path time ``tau_s`` so that the added joint acceleration (peak 1.5 |dsigma| / T times the
    path's joint speed) stays within ``acceleration_scale`` of the limits. The path speed is
    bounded over the stretch the ramp can cover: 0.6 path seconds, or up to ``until_tau_s`` (a
    ramp that ends at rest there)."""
    _check_scale(acceleration_scale)
    delta = abs(sigma_to - sigma_from)
    if delta <= 1e-12:
        return 0.0
    end = tau_s + 0.6 if until_tau_s is None else max(until_tau_s, tau_s)
    window = np.linspace(tau_s, min(end, path.duration_s), 13)
    _, v, _ = path.state_at(window)
    speed = np.abs(v).max(axis=0)
    return float(max(min_ramp_s, np.max(1.5 * delta * speed / (acceleration_scale * limits.acceleration_rad_s2))))

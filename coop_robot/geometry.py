"""Shared geometry: the shared-zone box, minimum-jerk profiles and the cell's geometry.

One definition of "inside the zone" and one minimum-jerk profile, used by the simulated
partner, the controller, perception and the timing metrics; and :func:`world_geometry`, the
values of ``config/world.yaml`` that every geometry default in the package reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Zone:
    """Axis-aligned shared-zone box in the ``world`` frame (metres)."""

    min_m: tuple[float, float, float]
    max_m: tuple[float, float, float]

    def __post_init__(self) -> None:
        lo = np.asarray(self.min_m, dtype=float)
        hi = np.asarray(self.max_m, dtype=float)
        if lo.shape != (3,) or hi.shape != (3,):
            raise ValueError(f"zone corners must be 3-vectors, got min={self.min_m!r} max={self.max_m!r}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(f"zone corners must be finite, got min={self.min_m!r} max={self.max_m!r}")
        if np.any(hi <= lo):
            raise ValueError(f"zone max must exceed min on every axis, got min={self.min_m!r} max={self.max_m!r}")

    @classmethod
    def from_lists(cls, min_m, max_m) -> Zone:
        return cls(tuple(float(v) for v in min_m), tuple(float(v) for v in max_m))

    @property
    def center_m(self) -> np.ndarray:
        return 0.5 * (np.asarray(self.min_m) + np.asarray(self.max_m))

    @property
    def size_m(self) -> np.ndarray:
        return np.asarray(self.max_m) - np.asarray(self.min_m)

    def contains(self, point_m, margin_m: float = 0.0) -> bool:
        """True when ``point_m`` lies inside the box grown by ``margin_m`` on every side.

        A non-finite point is never inside: callers decide what "unknown" means.
        """
        p = np.asarray(point_m, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            return False
        lo = np.asarray(self.min_m) - margin_m
        hi = np.asarray(self.max_m) + margin_m
        return bool(np.all(p >= lo) and np.all(p <= hi))

    def distance_m(self, point_m, margin_m: float = 0.0) -> float:
        """Euclidean distance (m) from ``point_m`` to the box grown by ``margin_m`` (0 inside it);
        ``inf`` for a non-finite point."""
        p = np.asarray(point_m, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            return float("inf")
        lo = np.asarray(self.min_m) - margin_m
        hi = np.asarray(self.max_m) + margin_m
        return float(np.linalg.norm(np.maximum(lo - p, 0.0) + np.maximum(p - hi, 0.0)))

    def contains_many(self, points_m, margin_m: float = 0.0) -> np.ndarray:
        """Vectorised :meth:`contains` over an ``(N, 3)`` array."""
        p = np.asarray(points_m, dtype=float).reshape(-1, 3)
        lo = np.asarray(self.min_m) - margin_m
        hi = np.asarray(self.max_m) + margin_m
        finite = np.all(np.isfinite(p), axis=1)
        with np.errstate(invalid="ignore"):
            inside = np.all(p >= lo, axis=1) & np.all(p <= hi, axis=1)
        return inside & finite


def minimum_jerk(t_s, duration_s: float):
    """Minimum-jerk phase ``s`` and its first two time derivatives at time ``t_s``.

    ``s`` goes from 0 at ``t_s <= 0`` to 1 at ``t_s >= duration_s`` with zero velocity and
    acceleration at both ends (Flash & Hogan 1985). Returns ``(s, ds_dt, d2s_dt2)``.
    """
    if duration_s <= 0.0:
        raise ValueError(f"minimum-jerk duration must be positive, got {duration_s!r} s")
    tau = np.clip(np.asarray(t_s, dtype=float) / duration_s, 0.0, 1.0)
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    ds = (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / duration_s
    dds = (60 * tau - 180 * tau**2 + 120 * tau**3) / duration_s**2
    return s, ds, dds


# Peak of ds/dt for a unit minimum-jerk move of unit duration (at tau = 0.5).
MINIMUM_JERK_PEAK_VELOCITY = 1.875


# ---------------------------------------------------------------------------------------------
# The cell's geometry: config/world.yaml, read once


#: Index in ``task_objects_m`` of the nominal task object (what a profile without a
#: ``task_objects`` section reaches for, every turn).
NOMINAL_TASK_OBJECT = 0


@dataclass(frozen=True)
class WorldGeometry:
    """The shared cell geometry of ``config/world.yaml`` (``world`` frame, metres / radians).

    The one source of every geometry default in code: the zone, the camera pose, the robot's
    home configuration and base, the partner's rest point and the task objects the partner reaches
    for. Nodes declare these as parameters with the values here as defaults; the simulation, the
    fast environment, training and the benchmarks build their worlds from them.

    ``task_objects_m`` holds one ``(x, y, z)`` per object (world.yaml stores them flat, as ROS
    parameters cannot be nested lists); the first is the nominal object
    (:data:`NOMINAL_TASK_OBJECT`).
    """

    zone: Zone
    camera_position_m: tuple[float, float, float]
    camera_orientation_xyzw: tuple[float, float, float, float]
    robot_home_joint_positions_rad: tuple[float, ...]
    robot_base_m: tuple[float, float, float]
    partner_rest_m: tuple[float, float, float]
    task_objects_m: tuple[tuple[float, float, float], ...]

    #: The world.yaml keys, in file order (``zone`` is ``zone_min_m`` / ``zone_max_m``).
    KEYS = ("zone_min_m", "zone_max_m", "camera_position_m", "camera_orientation_xyzw",
            "robot_home_joint_positions_rad", "robot_base_m", "partner_rest_m", "task_objects_m")

    @classmethod
    def from_params(cls, params, source: str = "parameters") -> WorldGeometry:
        """Build from a flat mapping holding every key of :attr:`KEYS` (other keys are ignored).

        Raises ValueError naming ``source``, the key, the bad value and what was expected.
        """
        if not isinstance(params, dict):
            raise ValueError(f"{source}: expected a mapping of world parameters, got {type(params).__name__}")
        missing = [k for k in cls.KEYS if k not in params]
        if missing:
            raise ValueError(f"{source}: missing world parameter(s) {missing}; expected all of {list(cls.KEYS)}")
        sizes = {"zone_min_m": 3, "zone_max_m": 3, "camera_position_m": 3, "camera_orientation_xyzw": 4,
                 "robot_home_joint_positions_rad": 7, "robot_base_m": 3, "partner_rest_m": 3}
        v: dict[str, tuple[float, ...]] = {}
        for key in cls.KEYS:
            value = params[key]
            try:
                vec = tuple(float(x) for x in value)
            except (TypeError, ValueError):
                vec = ()
            if key == "task_objects_m":
                if not vec or len(vec) % 3 or not all(np.isfinite(vec)):
                    raise ValueError(f"{source}: {key} must be a flat list [x1, y1, z1, x2, y2, z2, ...] of "
                                     f"finite numbers, 3 per object and at least one object, got {value!r}")
            elif len(vec) != sizes[key] or not all(np.isfinite(vec)):
                raise ValueError(f"{source}: {key} must be a list of {sizes[key]} finite numbers, got {value!r}")
            v[key] = vec
        try:
            zone = Zone(v["zone_min_m"], v["zone_max_m"])
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc
        objects = v["task_objects_m"]
        return cls(zone, v["camera_position_m"], v["camera_orientation_xyzw"],
                   v["robot_home_joint_positions_rad"], v["robot_base_m"], v["partner_rest_m"],
                   tuple(objects[i:i + 3] for i in range(0, len(objects), 3)))

    @property
    def zone_min_m(self) -> tuple[float, float, float]:
        return tuple(self.zone.min_m)

    @property
    def zone_max_m(self) -> tuple[float, float, float]:
        return tuple(self.zone.max_m)

    @property
    def nominal_task_object_m(self) -> tuple[float, float, float]:
        """The nominal task object: the partner's target when its profile does not choose one."""
        return self.task_objects_m[NOMINAL_TASK_OBJECT]

    def as_params(self) -> dict[str, list[float]]:
        """The world.yaml ``ros__parameters`` this geometry was read from (flat lists, as ROS wants them)."""
        flat = {"task_objects_m": [x for obj in self.task_objects_m for x in obj]}
        return {k: [float(x) for x in flat.get(k, getattr(self, k))] for k in self.KEYS}


def read_world_params(path=None) -> dict:
    """The flat ``/**`` ``ros__parameters`` of a world.yaml (default: the package's ``config/world.yaml``)."""
    import yaml  # noqa: PLC0415 -- only when a file is read

    from coop_robot.paths import config_path  # noqa: PLC0415

    p = config_path("world.yaml") if path is None else path
    with open(p, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    try:
        params = data["/**"]["ros__parameters"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{p}: expected '/**: {{ros__parameters: {{...}}}}' holding the world geometry") from exc
    return dict(params)


@lru_cache(maxsize=1)
def world_geometry() -> WorldGeometry:
    """The package's ``config/world.yaml`` geometry, read once per process."""
    from coop_robot.paths import config_path  # noqa: PLC0415

    path = config_path("world.yaml")
    return WorldGeometry.from_params(read_world_params(path), source=str(path))

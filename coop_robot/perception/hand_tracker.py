"""Partner-hand tracking from aligned RGB-D images (OpenCV, no ROS).

The partner wears a glove of a distinctive colour. Each frame:

1. threshold the colour image in HSV and clean the mask with a morphological open + close;
2. keep the largest connected component above ``min_area_px`` (the hand blob);
3. estimate the distance of the hand centre along the viewing ray through the blob centroid
   from the blob's valid depth pixels (a robust median, see :attr:`HandTrackerConfig.hand_model`)
   and, for a ball-like glove, refine the centre by a robust fit of a sphere of known radius to
   the visible surface points (corrects the centroid when part of the glove is hidden);
4. back-project into the camera's optical frame (x right, y down, z forward) and transform into
   ``world`` with the camera extrinsics;
5. differentiate successive detections for a smoothed velocity, and decide whether the hand is
   in the shared zone.

Not seen is unknown, and unknown is the worst case. When no hand is detected in a frame (occluded,
out of view, no usable depth, an implausible jump), ``in_zone`` is True when the hand *may* be in
the zone: it was last seen inside (it stays inside until seen outside again), or it could have
reached the zone since it was last seen, moving at ``unseen_hand_speed_mps`` (ISO 13855's approach
speed) from where it was, or it was never seen at all. Only a hand last seen outside and not long
enough ago to have reached the zone keeps ``in_zone`` False (within ``lost_timeout_s`` the
hysteresis band is held, after it only the strict zone counts). So a blind camera never reports a
fresh, empty zone for longer than the hand takes to reach it.

Plausibility: a detection that would mean the hand moved faster than ``max_hand_speed_mps``
since the last accepted one (a colour blob elsewhere, a depth glitch, a spoofed frame) is not
accepted: the frame counts as "not detected" (reason says why) and the jump is remembered; a next
detection consistent with either the old track or the jump is accepted, so a real relocation
costs one frame.

Inputs that cannot be processed (wrong dtype or shape, colour/depth/intrinsics size mismatch,
non-finite intrinsics) raise :class:`PerceptionInputError`, a ``ValueError``. Frames that are
valid but contain no usable hand (no glove colour, no valid depth on the glove) are *not* errors:
they give an observation with ``detected=False`` and a ``reason``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from coop_robot.camera import CameraPose, Intrinsics
from coop_robot.geometry import Zone, world_geometry

#: Shared zone from config/world.yaml, used when a config does not name one.
DEFAULT_ZONE = world_geometry().zone  # config/world.yaml

#: Hand models for turning the blob's depth pixels into the distance of the hand centre.
HAND_MODELS = ("sphere", "surface")


class PerceptionInputError(ValueError):
    """An image, depth map or camera model that perception cannot process."""


@dataclass(frozen=True)
class HandTrackerConfig:
    """Tuning of :class:`HandTracker`. Validated on construction (``ValueError`` names the field).

    Colour thresholds are OpenCV HSV: H in [0, 180), S and V in [0, 255]. When ``hsv_lower[0] >
    hsv_upper[0]`` the hue range wraps around 180 (for red gloves). The default range accepts the
    simulation's saturated green glove (RGB 0.10, 0.85, 0.15 -> H 62, S 225) under shading.
    """

    hsv_lower: tuple[int, int, int] = (45, 120, 40)
    hsv_upper: tuple[int, int, int] = (80, 255, 255)
    #: Smallest hand blob accepted, in pixels after morphology (reject specks and far clutter).
    min_area_px: int = 25
    #: Side of the square structuring element of the open + close, pixels (0 or 1 disables).
    morphology_kernel_px: int = 3
    #: Depth readings outside [depth_min_m, depth_max_m] (and NaN, inf, 0) are invalid.
    depth_min_m: float = 0.1
    depth_max_m: float = 3.5
    #: Fewest valid depth pixels on the blob needed to place the hand in 3D.
    min_depth_px: int = 5
    #: Hand / glove radius (m): how far the hand centre lies behind its visible surface.
    surface_offset_m: float = 0.045
    #: "sphere": every blob pixel gives the centre distance of a ball of radius
    #: ``surface_offset_m`` seen through that pixel; the median of those, then a robust
    #: least-squares fit of the ball to the visible surface points (unbiased for a ball-like
    #: glove, also when part of it is hidden). "surface": median depth of the blob pushed
    #: ``surface_offset_m`` along the viewing ray (for flat or irregular hands).
    hand_model: str = "sphere"
    #: Time constant (s) of the exponential smoothing of the finite-difference velocity; 0 = raw.
    velocity_smoothing_s: float = 0.05
    #: Detections further apart than this (s) do not give a velocity; the estimate restarts.
    velocity_reset_gap_s: float = 0.25
    #: How fast a hand that is not seen may move (m/s; ISO 13855's 1.6): once it could have reached
    #: the zone since it was last seen, ``in_zone`` is True.
    unseen_hand_speed_mps: float = 1.6
    #: Fastest plausible hand motion between two detections (m/s); a faster jump is not accepted.
    max_hand_speed_mps: float = 5.0
    #: After this long without a detection (s) the track is lost: ``in_zone`` falls back to
    #: whether the last seen position was strictly inside the zone (hysteresis dropped).
    lost_timeout_s: float = 0.5
    #: ``in_zone`` turns True when the hand centre is inside the zone grown by this much (m).
    #: Positive = conservative (the robot yields earlier); keep 0 to report the zone as defined.
    zone_margin_m: float = 0.0
    #: Once in, ``in_zone`` stays True until the hand leaves the zone grown by
    #: ``zone_margin_m + zone_hysteresis_m`` (m): no flicker on the boundary, errs on "in".
    zone_hysteresis_m: float = 0.01
    #: Shared zone box in ``world``.
    zone: Zone = field(default_factory=lambda: DEFAULT_ZONE)

    def __post_init__(self) -> None:
        for name in ("hsv_lower", "hsv_upper"):
            value = getattr(self, name)
            try:
                hsv = tuple(int(v) for v in value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} must be three integers [H, S, V], got {value!r}") from exc
            if len(hsv) != 3 or any(float(a) != b for a, b in zip(value, hsv)):
                raise ValueError(f"{name} must be three integers [H, S, V], got {value!r}")
            if not (0 <= hsv[0] <= 179 and 0 <= hsv[1] <= 255 and 0 <= hsv[2] <= 255):
                raise ValueError(f"{name} must be H in [0, 179], S and V in [0, 255] (OpenCV HSV), got {list(hsv)}")
            object.__setattr__(self, name, hsv)
        if self.hsv_lower[1] > self.hsv_upper[1] or self.hsv_lower[2] > self.hsv_upper[2]:
            raise ValueError(f"hsv_lower S and V must not exceed hsv_upper, got lower={list(self.hsv_lower)} "
                             f"upper={list(self.hsv_upper)}")
        _check_int("min_area_px", self.min_area_px, 1)
        _check_int("morphology_kernel_px", self.morphology_kernel_px, 0)
        _check_int("min_depth_px", self.min_depth_px, 1)
        for name in ("depth_min_m", "depth_max_m", "surface_offset_m", "velocity_smoothing_s",
                     "velocity_reset_gap_s", "lost_timeout_s", "zone_margin_m", "zone_hysteresis_m",
                     "unseen_hand_speed_mps", "max_hand_speed_mps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if name not in ("zone_margin_m",) and value < 0.0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if not 0.0 < self.depth_min_m < self.depth_max_m:
            raise ValueError(f"depth range must satisfy 0 < depth_min_m < depth_max_m, got "
                             f"[{self.depth_min_m}, {self.depth_max_m}] m")
        if self.velocity_reset_gap_s <= 0.0:
            raise ValueError(f"velocity_reset_gap_s must be > 0, got {self.velocity_reset_gap_s!r}")
        for name in ("unseen_hand_speed_mps", "max_hand_speed_mps"):
            if getattr(self, name) <= 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.hand_model not in HAND_MODELS:
            raise ValueError(f"hand_model must be one of {list(HAND_MODELS)}, got {self.hand_model!r}")
        if not isinstance(self.zone, Zone):
            raise ValueError(f"zone must be a coop_robot.geometry.Zone, got {self.zone!r}")
        if self.zone_margin_m < -0.5 * float(np.min(self.zone.size_m)):
            raise ValueError(f"zone_margin_m {self.zone_margin_m} m would shrink the zone to nothing")


    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any], zone: Zone | None = None) -> HandTrackerConfig:
        """Build from a ROS-style parameter mapping (e.g. ``config/perception.yaml``'s ``ros__parameters``).

        Keys that are not fields are ignored; HSV bounds may be lists (of integral numbers).
        """
        known = {f.name for f in fields(cls)} - {"zone"}
        values = {k: v for k, v in parameters.items() if k in known}
        for name in ("hsv_lower", "hsv_upper"):
            if name in values:
                values[name] = tuple(values[name])
        for name in ("min_area_px", "morphology_kernel_px", "min_depth_px"):
            if name in values and isinstance(values[name], float) and values[name].is_integer():
                values[name] = int(values[name])
        return cls(zone=zone if zone is not None else DEFAULT_ZONE, **values)


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class HandObservation:
    """What perception saw in one frame (all positions in ``world``)."""

    stamp_s: float
    detected: bool
    #: Hand centre in ``world`` (m); NaN when not detected in this frame.
    position_m: np.ndarray
    #: Smoothed hand velocity in ``world`` (m/s); NaN when unknown (not detected, first frame of a track).
    velocity_mps: np.ndarray
    #: Partner hand in the shared zone (held through missed detections, see module docstring).
    in_zone: bool
    #: Area of the hand blob (pixels after morphology); 0 when no blob.
    pixel_area: int = 0
    #: Why nothing was detected ("" when detected).
    reason: str = ""
    #: Blob centroid (u, v) in pixels; NaN when no blob.
    centroid_px: tuple[float, float] = (math.nan, math.nan)
    #: True when ``in_zone`` was not measured in this frame but held from earlier ones.
    in_zone_held: bool = False


_NAN3 = np.full(3, np.nan)


class HandTracker:
    """Stateful partner-hand tracker: call :meth:`process` once per aligned RGB-D frame, in time order."""

    def __init__(self, config: HandTrackerConfig | None = None) -> None:
        self._config = config if config is not None else HandTrackerConfig()
        self._kernel = self._make_kernel(self._config.morphology_kernel_px)
        self.last_mask: np.ndarray | None = None
        self.reset()

    @property
    def config(self) -> HandTrackerConfig:
        return self._config

    def reconfigure(self, config: HandTrackerConfig) -> None:
        """Swap the tuning (e.g. from a parameter change) keeping the track state."""
        self._config = config
        self._kernel = self._make_kernel(config.morphology_kernel_px)

    def reset(self) -> None:
        """Forget the track (call on a time jump, e.g. a simulation restart or a bag loop)."""
        self._last_stamp_s: float | None = None
        self._last_seen_s: float | None = None
        self._last_position_m: np.ndarray | None = None
        self._velocity_mps: np.ndarray | None = None
        self._jump: tuple[float, np.ndarray] | None = None  # an implausible detection, kept to confirm
        self._in_zone = True  # never seen: the hand may be anywhere
        self._last_seen_strictly_inside = False

    @staticmethod
    def _make_kernel(size_px: int):
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size_px, size_px)) if size_px > 1 else None

    # ------------------------------------------------------------------ per frame
    def process(self, rgb: np.ndarray, depth_m: np.ndarray, intr: Intrinsics, pose: CameraPose,
                stamp_s: float) -> HandObservation:
        """Track the hand in one frame.

        ``rgb``: HxWx3 uint8 in RGB order; ``depth_m``: HxW float depth along the optical axis (m),
        aligned to colour (NaN or 0 = no reading); ``intr``: intrinsics of that image; ``pose``:
        optical frame in ``world``; ``stamp_s``: capture time (s). A stamp earlier than the
        previous one resets the track.
        """
        _check_inputs(rgb, depth_m, intr)
        if not math.isfinite(stamp_s):
            raise PerceptionInputError(f"stamp must be finite seconds, got {stamp_s!r}")
        if self._last_stamp_s is not None and stamp_s < self._last_stamp_s:
            self.reset()
        self._last_stamp_s = stamp_s

        cfg = self._config
        mask = self._segment(rgb)
        n_labels, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        self.last_mask = mask
        if n_labels <= 1:
            return self._missed(stamp_s, "no glove-coloured pixels", 0)
        areas = stats[1:, cv2.CC_STAT_AREA]
        best = int(np.argmax(areas)) + 1
        area = int(stats[best, cv2.CC_STAT_AREA])
        centroid = (float(centroids[best, 0]), float(centroids[best, 1]))
        if area < cfg.min_area_px:
            return self._missed(stamp_s, f"largest glove-coloured blob is {area} px, below min_area_px "
                                         f"{cfg.min_area_px}", area, centroid)
        vs, us = np.nonzero(labels == best)
        z = depth_m[vs, us].astype(np.float64)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(z) & (z >= cfg.depth_min_m) & (z <= cfg.depth_max_m)
        n_valid = int(np.count_nonzero(valid))
        if n_valid < cfg.min_depth_px:
            return self._missed(stamp_s, f"no valid depth on the hand blob ({n_valid} of {area} px have depth in "
                                         f"[{cfg.depth_min_m}, {cfg.depth_max_m}] m, need {cfg.min_depth_px})",
                                area, centroid)
        centre_optical = self._hand_centre_optical(us[valid], vs[valid], z[valid], centroid, intr)
        position = pose.to_world(centre_optical)[0]
        return self._detected(stamp_s, position, area, centroid)

    def _segment(self, rgb: np.ndarray) -> np.ndarray:
        cfg = self._config
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        lo, hi = cfg.hsv_lower, cfg.hsv_upper
        if lo[0] <= hi[0]:
            mask = cv2.inRange(hsv, lo, hi)
        else:  # hue range wraps through 180 (red)
            mask = cv2.inRange(hsv, lo, (179, hi[1], hi[2])) | cv2.inRange(hsv, (0, lo[1], lo[2]), hi)
        if self._kernel is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._kernel)
        return mask

    def _hand_centre_optical(self, us, vs, z_m, centroid, intr: Intrinsics) -> np.ndarray:
        """Hand centre in the optical frame from the blob's valid depth pixels."""
        cfg = self._config
        ray_c = np.array([(centroid[0] - intr.cx) / intr.fx, (centroid[1] - intr.cy) / intr.fy, 1.0])
        unit_c = ray_c / np.linalg.norm(ray_c)
        if cfg.hand_model == "surface":
            surface = float(np.median(z_m)) * ray_c
            return surface + cfg.surface_offset_m * unit_c
        # Sphere of radius r seen through pixel i at range rho_i (distance along its unit ray d_i),
        # with angle a_i between d_i and the centre ray: the centre lies at distance
        # D_i = rho_i cos(a_i) + sqrt(r^2 - rho_i^2 sin^2(a_i)) along the centre ray. Exact for a
        # ball, so the median over the blob is unbiased and robust to a partly hidden glove.
        rays = np.column_stack([(us - intr.cx) / intr.fx, (vs - intr.cy) / intr.fy, np.ones_like(z_m)])
        rho = z_m * np.linalg.norm(rays, axis=1)
        cos_a = np.clip((rays @ unit_c) / np.linalg.norm(rays, axis=1), -1.0, 1.0)
        sin2_a = 1.0 - cos_a**2
        r = cfg.surface_offset_m
        d = rho * cos_a + np.sqrt(np.maximum(r * r - rho**2 * sin2_a, 0.0))
        centre = float(np.median(d)) * unit_c
        if r > 0.0 and z_m.size >= 8:
            centre = _refine_sphere_centre(rays * z_m[:, None], centre, r)
        return centre

    # ------------------------------------------------------------------ track state
    def _implausible(self, stamp_s: float, position: np.ndarray) -> str:
        """Why ``position`` at ``stamp_s`` cannot be the tracked hand ("" when it can): it would have
        moved faster than ``max_hand_speed_mps`` from the last accepted detection, and it does not
        confirm an earlier jump either. A confirmed jump restarts the track there."""
        cfg = self._config
        if self._last_seen_s is None or self._last_position_m is None:
            return ""

        def plausible(t_s: float, where: np.ndarray) -> bool:
            # One camera frame of slack: stamps of a 30 Hz camera jitter by a few ms.
            dt = max(stamp_s - t_s, 0.0) + 1.0 / 30.0
            return float(np.linalg.norm(position - where)) <= cfg.max_hand_speed_mps * dt

        if self._jump is not None and plausible(*self._jump):
            self._jump = None
            self._velocity_mps = None
            self._last_seen_s = None  # restart the track here (no velocity across the jump)
            return ""
        if plausible(self._last_seen_s, self._last_position_m):
            self._jump = None
            return ""
        distance = float(np.linalg.norm(position - self._last_position_m))
        self._jump = (stamp_s, position.copy())
        return (f"implausible jump: {distance:.2f} m in {stamp_s - self._last_seen_s:.3f} s from the tracked hand "
                f"(faster than max_hand_speed_mps {cfg.max_hand_speed_mps:g} m/s); waiting for a frame that "
                f"confirms it")

    def _detected(self, stamp_s: float, position: np.ndarray, area: int, centroid) -> HandObservation:
        cfg = self._config
        reason = self._implausible(stamp_s, position)
        if reason:
            # Not believed, but not ruled out either: a jump into the zone counts as inside.
            return self._missed(stamp_s, reason, area, centroid,
                                maybe_inside=cfg.zone.contains(position, margin_m=cfg.zone_margin_m))
        velocity = _NAN3
        if self._last_seen_s is not None and self._last_position_m is not None:
            dt = stamp_s - self._last_seen_s
            if 0.0 < dt <= cfg.velocity_reset_gap_s:
                raw = (position - self._last_position_m) / dt
                if self._velocity_mps is None or cfg.velocity_smoothing_s <= 0.0:
                    self._velocity_mps = raw
                else:
                    alpha = 1.0 - math.exp(-dt / cfg.velocity_smoothing_s)
                    self._velocity_mps = self._velocity_mps + alpha * (raw - self._velocity_mps)
                velocity = self._velocity_mps
            elif dt == 0.0 and self._velocity_mps is not None:
                velocity = self._velocity_mps  # same stamp twice: nothing new to differentiate
            else:
                self._velocity_mps = None
        self._last_seen_s = stamp_s
        self._last_position_m = position

        margin = cfg.zone_margin_m + (cfg.zone_hysteresis_m if self._in_zone else 0.0)
        self._in_zone = cfg.zone.contains(position, margin_m=margin)
        self._last_seen_strictly_inside = cfg.zone.contains(position, margin_m=cfg.zone_margin_m)
        return HandObservation(stamp_s, True, position.copy(), np.array(velocity, dtype=float), self._in_zone,
                               area, "", centroid, False)

    def _missed(self, stamp_s: float, reason: str, area: int,
                centroid=(math.nan, math.nan), maybe_inside: bool = False) -> HandObservation:
        cfg = self._config
        if self._last_seen_s is None or self._last_position_m is None:
            self._in_zone = True  # never seen (or the track restarted): it may be anywhere
        else:
            unseen_s = max(stamp_s - self._last_seen_s, 0.0)
            could_reach = (cfg.zone.distance_m(self._last_position_m, cfg.zone_margin_m)
                           <= cfg.unseen_hand_speed_mps * unseen_s)
            if unseen_s > cfg.lost_timeout_s:
                # Track lost: drop the hysteresis band, but a hand last seen inside stays inside.
                self._in_zone = self._last_seen_strictly_inside or could_reach
            else:  # hold the last value (occlusion / missed detection), unless it may be inside by now
                self._in_zone = self._in_zone or could_reach
        self._in_zone = self._in_zone or maybe_inside
        return HandObservation(stamp_s, False, _NAN3.copy(), _NAN3.copy(), self._in_zone, area, reason,
                               centroid, self._last_seen_s is not None)

    def debug_image(self, rgb: np.ndarray, obs: HandObservation) -> np.ndarray:
        """RGB image for tuning: glove mask tinted magenta, blob centroid and state printed."""
        out = rgb.copy()
        if self.last_mask is not None and self.last_mask.shape == rgb.shape[:2]:
            sel = self.last_mask > 0
            out[sel] = (0.5 * out[sel] + 0.5 * np.array([255, 0, 255])).astype(np.uint8)
        if np.all(np.isfinite(obs.centroid_px)):
            cv2.drawMarker(out, (int(round(obs.centroid_px[0])), int(round(obs.centroid_px[1]))), (255, 255, 0),
                           cv2.MARKER_CROSS, 12, 1)
        text = f"{'IN' if obs.in_zone else 'out'}{' (held)' if obs.in_zone_held else ''} area={obs.pixel_area}"
        cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        return out


def _refine_sphere_centre(points: np.ndarray, centre0: np.ndarray, radius_m: float) -> np.ndarray:
    """Robust least-squares centre of a sphere of known radius through visible surface points.

    Corrects the sideways bias of the blob centroid when part of the glove is hidden (the
    centroid of the visible part is not the projection of the centre). Gauss-Newton from
    ``centre0`` with Huber weights; falls back to ``centre0`` when the visible patch does not
    constrain the centre (a thin sliver) or the fit moves implausibly far.
    """
    centre = centre0.copy()
    huber_m = 0.1 * radius_m
    for _ in range(6):
        diff = points - centre
        dist = np.maximum(np.linalg.norm(diff, axis=1), 1e-9)
        residual = dist - radius_m
        jac = -diff / dist[:, None]
        weight = np.minimum(1.0, huber_m / np.maximum(np.abs(residual), 1e-12))
        hessian = jac.T @ (weight[:, None] * jac)
        eig = np.linalg.eigvalsh(hessian)
        if eig[0] <= 1e-3 * eig[-1]:
            return centre0
        step = -np.linalg.solve(hessian, jac.T @ (weight * residual))
        centre = centre + step
        if np.linalg.norm(step) < 1e-5:
            break
    # The centre lies behind the visible surface and near the first estimate.
    surface_range_m = float(np.median(np.linalg.norm(points, axis=1)))
    if np.linalg.norm(centre - centre0) > radius_m or np.linalg.norm(centre) < surface_range_m:
        return centre0
    return centre


def _check_inputs(rgb, depth_m, intr: Intrinsics) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise PerceptionInputError(f"colour image must be an HxWx3 uint8 RGB array, got "
                                   f"{_describe(rgb)}")
    if not isinstance(depth_m, np.ndarray) or depth_m.dtype not in (np.float32, np.float64) or depth_m.ndim != 2:
        raise PerceptionInputError(f"depth image must be an HxW float32 array in metres, got {_describe(depth_m)} "
                                   "(convert 16UC1 millimetres with depth_from_image)")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise PerceptionInputError(f"colour image is empty ({rgb.shape[1]}x{rgb.shape[0]})")
    if depth_m.shape != rgb.shape[:2]:
        raise PerceptionInputError(f"depth image {depth_m.shape[1]}x{depth_m.shape[0]} does not match colour image "
                                   f"{rgb.shape[1]}x{rgb.shape[0]} (depth must be aligned to colour)")
    values = (intr.fx, intr.fy, intr.cx, intr.cy)
    if not all(math.isfinite(v) for v in values) or intr.fx <= 0 or intr.fy <= 0:
        raise PerceptionInputError(f"intrinsics must be finite with fx, fy > 0, got fx={intr.fx} fy={intr.fy} "
                                   f"cx={intr.cx} cy={intr.cy}")
    if (intr.width, intr.height) != (rgb.shape[1], rgb.shape[0]):
        raise PerceptionInputError(f"camera info is for {intr.width}x{intr.height} images, got "
                                   f"{rgb.shape[1]}x{rgb.shape[0]}")


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"shape {a.shape} dtype {a.dtype}"
    return f"{type(a).__name__}"


def depth_to_16uc1(depth_m: np.ndarray) -> np.ndarray:
    """HxW metres -> ``16UC1`` millimetres (uint16), the RealSense / OpenNI convention that
    :func:`depth_from_image` reads back: rounded to 1 mm, 0 = no reading (not finite, <= 0, under
    0.5 mm), clipped at 65.535 m."""
    z = np.asarray(depth_m)
    if not np.issubdtype(z.dtype, np.floating):
        raise PerceptionInputError(f"depth to encode must be float metres, got {z.dtype}")
    mm = np.rint(np.where(np.isfinite(z) & (z > 0.0), z, 0.0) * 1000.0)
    mm[mm < 1.0] = 0.0
    return np.clip(mm, 0.0, 65535.0).astype(np.uint16)


def depth_from_image(image: np.ndarray, encoding: str | None = None) -> np.ndarray:
    """Depth image -> HxW float32 metres with NaN where there is no reading.

    Accepts ``32FC1`` (float metres; 0, inf and NaN mean no reading) and ``16UC1`` / ``mono16``
    (uint16 millimetres, 0 = no reading, the RealSense / OpenNI convention). Without
    ``encoding`` it is inferred from the dtype (float32 -> metres, uint16 -> millimetres).
    """
    if not isinstance(image, np.ndarray) or image.ndim != 2:
        raise PerceptionInputError(f"depth image must be a 2-D array, got {_describe(image)}")
    if encoding is None:
        encoding = {np.dtype(np.float32): "32FC1", np.dtype(np.uint16): "16UC1"}.get(image.dtype)
        if encoding is None:
            raise PerceptionInputError(f"depth image dtype must be float32 (m) or uint16 (mm), got {image.dtype}")
    if encoding == "32FC1":
        if image.dtype != np.float32:
            raise PerceptionInputError(f"32FC1 depth must be float32, got {image.dtype}")
        out = image.astype(np.float32, copy=True)
        out[~np.isfinite(out) | (out <= 0.0)] = np.nan
        return out
    if encoding in ("16UC1", "mono16"):
        if image.dtype != np.uint16:
            raise PerceptionInputError(f"{encoding} depth must be uint16 millimetres, got {image.dtype}")
        out = image.astype(np.float32) * np.float32(0.001)
        out[image == 0] = np.nan
        return out
    raise PerceptionInputError(f"depth encoding must be 32FC1 (m) or 16UC1 (mm), got {encoding!r}")


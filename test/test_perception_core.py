"""Hand tracker core on synthetic RGB-D frames (no ROS, no PyBullet).

Frames are ray-cast analytically: a shaded green ball (the glove) of known centre in front of a
grey table plane, seen by the contract camera, so the ground truth is exact.
"""

import math

import numpy as np
import pytest

from coop_robot.camera import CameraPose, Intrinsics, optical_to_pixel
from coop_robot.geometry import Zone
from coop_robot.perception import (
    HandTracker,
    HandTrackerConfig,
    ImageFormatError,
    PerceptionInputError,
    decode_color,
    decode_depth,
    depth_from_image,
    depth_to_16uc1,
)

POSE = CameraPose.from_position_quaternion([0.60, 0.95, 1.45], [-0.009343, 0.887718, -0.460268, 0.004844])
INTR = Intrinsics.from_vertical_fov(320, 240, 58.0)
ZONE = Zone((0.45, -0.20, 0.626), (0.75, 0.20, 0.926))
GLOVE_RGB = np.array([0.10, 0.85, 0.15]) * 255.0
RADIUS_M = 0.045
IN_ZONE_M = np.array([0.62, 0.06, 0.70])
REST_M = np.array([1.02, 0.15, 0.80])


def render(hand_m=None, radius_m=RADIUS_M, intr=INTR, pose=POSE, background_depth_m=1.6):
    """RGB (uint8) and depth (float32 m) of a shaded green ball at ``hand_m`` (world) over a grey wall."""
    v, u = np.mgrid[0:intr.height, 0:intr.width].astype(float)
    rays = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], axis=-1)
    rgb = np.full((intr.height, intr.width, 3), 150, dtype=np.uint8)
    depth = np.full((intr.height, intr.width), background_depth_m, dtype=np.float32)
    if hand_m is not None:
        c = pose.to_optical(np.asarray(hand_m, dtype=float))[0]
        a = np.sum(rays * rays, axis=-1)
        b = rays @ c
        disc = b * b - a * (c @ c - radius_m**2)
        hit = disc >= 0.0
        t = (b - np.sqrt(np.where(hit, disc, 0.0))) / a  # z of the near intersection (ray z = 1)
        points = rays * t[..., None]
        normals = (points - c) / radius_m
        lambert = np.clip(-np.sum(normals * rays / np.sqrt(a)[..., None], axis=-1), 0.0, 1.0)
        shade = (0.35 + 0.65 * lambert)[..., None]
        rgb[hit] = np.clip(GLOVE_RGB * shade[hit], 0, 255).astype(np.uint8)
        depth[hit] = t[hit]
    return rgb, depth


def tracker(**changes):
    return HandTracker(HandTrackerConfig(zone=ZONE, **changes))


# ----------------------------------------------------------------------------- position
@pytest.mark.parametrize("hand_m", [IN_ZONE_M, REST_M, [0.46, -0.18, 0.64], [0.74, 0.19, 0.92], [0.9, 0.3, 1.1]])
def test_ball_position_error_below_1cm(hand_m):
    rgb, depth = render(hand_m)
    obs = tracker().process(rgb, depth, INTR, POSE, 1.0)
    assert obs.detected, obs.reason
    assert np.linalg.norm(obs.position_m - hand_m) < 0.01
    assert obs.reason == ""
    # The blob centroid is where the camera model projects the centre (sub-pixel).
    expected_px = optical_to_pixel(POSE.to_optical(hand_m), INTR)[0]
    assert np.linalg.norm(np.asarray(obs.centroid_px) - expected_px) < 0.5


def test_partly_hidden_ball_still_within_1cm():
    rgb, depth = render(IN_ZONE_M)
    u0, _ = optical_to_pixel(POSE.to_optical(IN_ZONE_M), INTR)[0]
    # An occluder (grey, nearer than the glove) hides the left half of the glove.
    cols = slice(0, int(round(u0)))
    rgb[:, cols] = 200
    depth[:, cols] = 0.5
    obs = tracker().process(rgb, depth, INTR, POSE, 1.0)
    assert obs.detected, obs.reason
    assert np.linalg.norm(obs.position_m - IN_ZONE_M) < 0.01


def test_surface_model_matches_a_flat_hand():
    # A flat disc (a bare palm facing the camera) drawn at the surface depth: median depth plus
    # surface_offset_m along the ray recovers the hand centre behind it.
    centre_opt = POSE.to_optical(IN_ZONE_M)[0]
    offset_m = 0.02
    surface_opt = centre_opt - offset_m * centre_opt / np.linalg.norm(centre_opt)
    rgb, depth = render(None)
    u0, v0 = optical_to_pixel(surface_opt, INTR)[0]
    v, u = np.mgrid[0:INTR.height, 0:INTR.width]
    disc = (u - u0) ** 2 + (v - v0) ** 2 <= 9.0**2
    rgb[disc] = GLOVE_RGB.astype(np.uint8)
    depth[disc] = surface_opt[2]
    obs = tracker(hand_model="surface", surface_offset_m=offset_m).process(rgb, depth, INTR, POSE, 1.0)
    assert obs.detected, obs.reason
    assert np.linalg.norm(obs.position_m - IN_ZONE_M) < 0.01


def test_noisy_depth_with_flying_pixels_stays_within_1cm():
    # Real depth cameras: ~5 mm noise at 1 m and silhouette pixels that read the background.
    rng = np.random.default_rng(3)
    rgb, depth = render(IN_ZONE_M)
    depth += rng.normal(0.0, 0.005, depth.shape).astype(np.float32)
    flying = rng.random(depth.shape) < 0.1
    depth[flying] = 1.6
    obs = tracker().process(rgb, depth, INTR, POSE, 1.0)
    assert obs.detected and np.linalg.norm(obs.position_m - IN_ZONE_M) < 0.01


def test_largest_blob_wins_over_green_clutter():
    rgb, depth = render(IN_ZONE_M)
    rgb[10:16, 10:16] = GLOVE_RGB.astype(np.uint8)  # 36 px of glove-coloured clutter, far from the hand
    depth[10:16, 10:16] = 1.0
    obs = tracker().process(rgb, depth, INTR, POSE, 1.0)
    assert np.linalg.norm(obs.position_m - IN_ZONE_M) < 0.01


def test_debug_image_marks_the_glove():
    t = tracker()
    rgb, depth = render(IN_ZONE_M)
    obs = t.process(rgb, depth, INTR, POSE, 1.0)
    debug = t.debug_image(rgb, obs)
    assert debug.shape == rgb.shape and debug.dtype == np.uint8
    assert np.count_nonzero(np.any(debug != rgb, axis=2)) >= obs.pixel_area


# ----------------------------------------------------------------------------- not detected
def test_no_glove_colour_is_not_detected_with_reason():
    rgb, depth = render(None)
    obs = tracker().process(rgb, depth, INTR, POSE, 1.0)
    assert not obs.detected
    assert "no glove" in obs.reason
    assert np.all(np.isnan(obs.position_m)) and np.all(np.isnan(obs.velocity_mps))
    assert obs.in_zone  # never seen: the hand may be anywhere, the zone included


def test_speck_below_min_area_is_not_detected():
    rgb, depth = render(None)
    rgb[100:104, 100:104] = GLOVE_RGB.astype(np.uint8)
    obs = tracker(min_area_px=25).process(rgb, depth, INTR, POSE, 1.0)
    assert not obs.detected
    assert "min_area_px" in obs.reason


@pytest.mark.parametrize("bad_depth", [np.nan, 0.0, np.inf, 9.0, 0.01])
def test_unusable_depth_is_not_detected_without_exception(bad_depth):
    rgb, depth = render(IN_ZONE_M)
    depth[:] = bad_depth
    obs = tracker().process(rgb, depth, INTR, POSE, 1.0)
    assert not obs.detected
    assert "no valid depth" in obs.reason
    assert obs.pixel_area > 0
    assert np.all(np.isnan(obs.position_m))


def test_depth_holes_on_the_glove_are_ignored():
    rgb, depth = render(IN_ZONE_M)
    holes = np.random.default_rng(0).random(depth.shape) < 0.4
    depth[holes] = np.nan
    obs = tracker().process(rgb, depth, INTR, POSE, 1.0)
    assert obs.detected and np.linalg.norm(obs.position_m - IN_ZONE_M) < 0.01


# ----------------------------------------------------------------------------- bad input
def _bad_inputs():
    rgb, depth = render(IN_ZONE_M)
    small = Intrinsics.from_vertical_fov(160, 120, 58.0)
    nan_intr = Intrinsics(320, 240, math.nan, INTR.fy, INTR.cx, INTR.cy)
    return {
        "float colour": (rgb.astype(np.float32), depth, INTR),
        "rgba colour": (np.dstack([rgb, rgb[..., :1]]), depth, INTR),
        "grey colour": (rgb[..., 0], depth, INTR),
        "uint16 depth": (rgb, (depth * 1000).astype(np.uint16), INTR),
        "3-D depth": (rgb, depth[..., None], INTR),
        "depth size mismatch": (rgb, depth[:120, :160], INTR),
        "camera info size mismatch": (rgb, depth, small),
        "NaN intrinsics": (rgb, depth, nan_intr),
        "empty": (rgb[:0], depth[:0], INTR),
        "not an array": (rgb.tolist(), depth, INTR),
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs()))
def test_bad_input_raises_perception_input_error(case):
    rgb, depth, intr = _bad_inputs()[case]
    with pytest.raises(PerceptionInputError):
        tracker().process(rgb, depth, intr, POSE, 1.0)


def test_perception_input_error_is_a_value_error_naming_the_problem():
    rgb, depth = render(IN_ZONE_M)
    with pytest.raises(ValueError, match="does not match colour image 320x240"):
        tracker().process(rgb, depth[:, :100], INTR, POSE, 1.0)


@pytest.mark.parametrize("changes", [
    {"hsv_lower": (200, 0, 0)}, {"hsv_lower": (40, 200, 40), "hsv_upper": (80, 100, 255)},
    {"depth_min_m": 2.0, "depth_max_m": 1.0}, {"min_area_px": 0}, {"surface_offset_m": -0.01},
    {"hand_model": "cube"}, {"lost_timeout_s": math.nan}, {"hsv_upper": (80.5, 255, 255)},
])
def test_invalid_config_is_rejected(changes):
    with pytest.raises(ValueError):
        HandTrackerConfig(**changes)


# ----------------------------------------------------------------------------- zone and occlusion
def test_in_zone_holds_through_missed_detections_inside():
    t = tracker(lost_timeout_s=0.5)
    hand, empty = render(IN_ZONE_M), render(None)
    assert t.process(*hand, INTR, POSE, 0.0).in_zone
    for k in range(1, 90):  # 3 s fully occluded: still assumed inside
        obs = t.process(*empty, INTR, POSE, k / 30.0)
        assert obs.in_zone and obs.in_zone_held and not obs.detected
    out = t.process(*render(REST_M), INTR, POSE, 3.0)
    assert not out.in_zone and not out.in_zone_held


def test_an_unseen_hand_is_in_the_zone_once_it_could_have_reached_it():
    t = tracker()  # unseen_hand_speed_mps 1.6
    empty = render(None)
    assert t.process(*empty, INTR, POSE, 0.0).in_zone  # never seen: it may be anywhere
    assert not t.process(*render(REST_M), INTR, POSE, 0.1).in_zone
    distance_m = ZONE.distance_m(REST_M)  # 0.27 m: reachable after ~0.17 s at 1.6 m/s
    reach_s = distance_m / 1.6
    missed = t.process(*empty, INTR, POSE, 0.1 + 0.9 * reach_s)
    assert not missed.detected and not missed.in_zone  # could not have got there yet
    missed = t.process(*empty, INTR, POSE, 0.1 + 1.1 * reach_s)
    assert not missed.detected and missed.in_zone  # it could be in by now
    assert not t.process(*render(REST_M), INTR, POSE, 0.4).in_zone  # seen outside again


def test_a_blind_depth_image_is_unknown_not_an_empty_zone():
    """Issue 11 (1): depth all NaN or inf keeps stamps fresh but must never hold 'outside'."""
    t = tracker()
    assert not t.process(*render(REST_M), INTR, POSE, 0.0).in_zone
    rgb, depth = render(REST_M)
    for bad in (np.full_like(depth, np.nan), np.full_like(depth, np.inf), np.full_like(depth, -np.inf)):
        obs = t.process(rgb, bad, INTR, POSE, 0.5)
        assert not obs.detected and "depth" in obs.reason and obs.in_zone


def test_an_implausible_jump_is_not_accepted_until_confirmed():
    t = tracker()  # max_hand_speed_mps 5
    assert t.process(*render(REST_M), INTR, POSE, 0.0).detected
    # A blob 0.4 m away one frame later (12 m/s): not the hand, or not yet believed.
    jumped = t.process(*render(IN_ZONE_M), INTR, POSE, 1 / 30)
    assert not jumped.detected and "implausible" in jumped.reason
    assert jumped.in_zone  # unknown, and the jump itself is in the zone
    # The next frame there confirms it: a new track starts (no velocity across the jump).
    confirmed = t.process(*render(IN_ZONE_M), INTR, POSE, 2 / 30)
    assert confirmed.detected and confirmed.in_zone and np.all(np.isnan(confirmed.velocity_mps))


def test_hysteresis_band_held_then_dropped_after_lost_timeout():
    just_outside = np.array([0.755, 0.0, 0.75])  # 5 mm past zone max x, inside the 1 cm band
    t = tracker(zone_hysteresis_m=0.01, lost_timeout_s=0.5)
    assert t.process(*render(IN_ZONE_M), INTR, POSE, 0.0).in_zone
    assert t.process(*render(just_outside), INTR, POSE, 0.1).in_zone  # no flicker on the boundary
    empty = render(None)
    assert t.process(*empty, INTR, POSE, 0.3).in_zone  # held
    # With a slow unseen-hand bound the drop of the band after lost_timeout_s shows: held, then
    # out once lost (the hand, 5 mm outside, could not have come 5 mm at 1 mm/s in 0.6 s).
    t = tracker(zone_hysteresis_m=0.01, lost_timeout_s=0.5, unseen_hand_speed_mps=0.001)
    assert t.process(*render(IN_ZONE_M), INTR, POSE, 0.0).in_zone
    assert t.process(*render(just_outside), INTR, POSE, 0.1).in_zone
    assert t.process(*empty, INTR, POSE, 0.3).in_zone  # held
    assert not t.process(*empty, INTR, POSE, 0.7).in_zone  # lost; last seen outside the zone


def test_zone_margin_makes_in_zone_conservative():
    near_m = np.array([0.77, 0.0, 0.75])  # 2 cm outside
    assert not tracker().process(*render(near_m), INTR, POSE, 0.0).in_zone
    assert tracker(zone_margin_m=0.03).process(*render(near_m), INTR, POSE, 0.0).in_zone


# ----------------------------------------------------------------------------- velocity
def test_velocity_of_a_moving_ball():
    t = tracker(velocity_smoothing_s=0.05)
    velocity_mps = np.array([-0.6, 0.0, -0.2])
    start = REST_M
    obs = [t.process(*render(start + velocity_mps * k / 30.0), INTR, POSE, k / 30.0) for k in range(12)]
    assert np.all(np.isnan(obs[0].velocity_mps))  # one detection: velocity unknown
    for o in obs[6:]:
        assert np.all(np.sign(o.velocity_mps[[0, 2]]) == np.sign(velocity_mps[[0, 2]]))
        assert np.linalg.norm(o.velocity_mps - velocity_mps) < 0.08


def test_velocity_restarts_after_a_gap_and_on_time_going_back():
    t = tracker(velocity_reset_gap_s=0.25)
    t.process(*render(REST_M), INTR, POSE, 0.0)
    assert np.all(np.isfinite(t.process(*render(REST_M + 0.01), INTR, POSE, 1 / 30).velocity_mps))
    assert np.all(np.isnan(t.process(*render(REST_M), INTR, POSE, 1.0).velocity_mps))  # 1 s gap
    assert np.all(np.isnan(t.process(*render(REST_M), INTR, POSE, 0.5).velocity_mps))  # time went back: reset


# ----------------------------------------------------------------------------- conversions
def test_depth_from_16uc1_millimetres():
    mm = np.array([[0, 1000], [1234, 65535]], dtype=np.uint16)
    m = depth_from_image(mm)
    assert m.dtype == np.float32
    assert np.isnan(m[0, 0])
    np.testing.assert_allclose(m[[0, 1, 1], [1, 0, 1]], [1.0, 1.234, 65.535], rtol=1e-6)
    np.testing.assert_array_equal(depth_from_image(mm, "16UC1"), m, strict=False)


def test_depth_to_16uc1_is_what_depth_from_image_reads_back_to_the_millimetre():
    metres = np.array([[0.0, 0.0004, 0.0006, 1.2344], [1.2346, np.nan, -1.0, 70.0]], dtype=np.float32)
    mm = depth_to_16uc1(metres)
    assert mm.dtype == np.uint16
    np.testing.assert_array_equal(mm, [[0, 0, 1, 1234], [1235, 0, 0, 65535]])
    back = depth_from_image(mm, "16UC1")
    assert np.isnan(back[[0, 0, 1, 1], [0, 1, 1, 2]]).all()
    np.testing.assert_allclose(back[0, 3], 1.234, atol=1e-6)
    with pytest.raises(PerceptionInputError, match="float metres"):
        depth_to_16uc1(np.zeros((2, 2), np.uint16))


def test_depth_from_32fc1_marks_zero_and_inf_invalid():
    m = depth_from_image(np.array([[0.0, 1.5, np.inf]], dtype=np.float32), "32FC1")
    assert np.isnan(m[0, 0]) and m[0, 1] == np.float32(1.5) and np.isnan(m[0, 2])


@pytest.mark.parametrize("image,encoding", [
    (np.zeros((2, 2), np.uint16), "32FC1"), (np.zeros((2, 2), np.float32), "16UC1"),
    (np.zeros((2, 2), np.uint8), None), (np.zeros((2, 2), np.float32), "8UC1"), (np.zeros(4, np.float32), None),
])
def test_depth_from_image_rejects_mismatched_encoding(image, encoding):
    with pytest.raises(PerceptionInputError):
        depth_from_image(image, encoding)


@pytest.mark.parametrize("encoding,order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]),
                                            ("rgba8", [0, 1, 2, 3]), ("bgra8", [2, 1, 0, 3])])
def test_decode_color_with_row_padding(encoding, order):
    rgb = np.random.default_rng(1).integers(0, 255, (3, 5, 3), dtype=np.uint8)
    alpha = np.full((3, 5, 1), 255, np.uint8)
    wire = np.dstack([rgb, alpha])[:, :, order]
    channels = wire.shape[2]
    step = 5 * channels + 7  # padded rows
    buf = np.zeros((3, step), np.uint8)
    buf[:, :5 * channels] = wire.reshape(3, -1)
    np.testing.assert_array_equal(decode_color(buf.tobytes(), 5, 3, step, encoding), rgb)


def test_decode_depth_16uc1_big_endian_and_32fc1_padding():
    mm = np.array([[0, 500, 1000], [1500, 2000, 65535]], dtype=np.uint16)
    big = mm.astype(">u2").tobytes()
    np.testing.assert_allclose(decode_depth(big, 3, 2, 6, "16UC1", True)[1], [1.5, 2.0, 65.535], rtol=1e-6)
    metres = np.array([[1.0, 2.0], [3.0, 4.0]], dtype="<f4")
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :8] = metres.view(np.uint8)
    np.testing.assert_array_equal(decode_depth(padded.tobytes(), 2, 2, 12, "32FC1", False), metres)


@pytest.mark.parametrize("kwargs", [
    dict(data=bytes(30), width=5, height=2, step=15, encoding="mono8"),  # unsupported encoding
    dict(data=bytes(30), width=5, height=2, step=12, encoding="rgb8"),  # step < width * 3
    dict(data=bytes(29), width=5, height=2, step=15, encoding="rgb8"),  # data shorter than step * height
    dict(data=b"", width=0, height=0, step=0, encoding="rgb8"),  # empty
])
def test_decode_color_rejects_inconsistent_messages(kwargs):
    with pytest.raises(ImageFormatError):
        decode_color(**kwargs)


def test_decode_depth_rejects_colour_encoding():
    with pytest.raises(ImageFormatError, match="depth encoding"):
        decode_depth(bytes(12), 2, 2, 6, "rgb8", False)

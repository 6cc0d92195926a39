"""The live view's scene, without ROS: what the graph is doing, as a few shapes in the ``world`` frame.

:class:`LiveView` keeps the newest value of each input with the time it arrived (node clock, s)
and :meth:`LiveView.scene` turns them into :class:`Shape` records (box, sphere, line strip, text)
and a flat status dict. The live-view node converts the shapes to a ``visualization_msgs/MarkerArray``
for RViz; :mod:`coop_robot.live_view.foxglove_sink` converts the same shapes to a Foxglove
``SceneUpdate`` and logs the status as JSON. One scene, two viewers.

What is drawn:

* the shared zone, coloured by who is in it (partner, robot, both, nobody; grey when the
  perceived occupancy is stale);
* the perceived hand: a sphere of the SSM hand radius, grey when the newest perception is stale or
  did not detect it (then at its last known position);
* the protective separation: a translucent sphere of radius hand radius + S_p around the hand (the
  robot's body must stay outside it), coloured by the controller's speed mode, with separation,
  S_p and the margin as text;
* the arm: a line through its joint origins (forward kinematics of ``/joint_states``) and its end
  effector as a small sphere;
* the policy's decision, P(act) (mirror policy) and exit forecast, and the controller's state, as
  text above the zone.

Stale or missing inputs are drawn as such; a NaN anywhere never raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from coop_robot.geometry import Zone
from coop_robot.timing.ssm_sample import SsmSample

#: Shape kinds (each viewer maps them onto its own primitives).
SHAPE_KINDS = ("box", "sphere", "line_strip", "text")

# Colours, RGBA in [0, 1].
GREY = (0.55, 0.55, 0.55, 0.5)
ZONE_COLOURS = {
    "nobody": (0.2, 0.8, 0.3, 0.15),
    "partner": (1.0, 0.6, 0.1, 0.3),
    "robot": (0.2, 0.45, 1.0, 0.3),
    "both": (1.0, 0.1, 0.1, 0.45),
    "unknown": (0.55, 0.55, 0.55, 0.15),
}
HAND_COLOUR = (0.1, 0.75, 0.2, 0.9)
ROBOT_COLOUR = (0.2, 0.45, 1.0, 1.0)
TEXT_COLOUR = (1.0, 1.0, 1.0, 1.0)
#: S_p sphere colour by the controller's speed mode (coop_robot.timing.ssm_sample.SSM_MODES).
MODE_COLOURS = {"free": (0.2, 0.8, 0.3, 0.15), "scaled": (1.0, 0.8, 0.1, 0.2), "stop": (1.0, 0.1, 0.1, 0.3)}

#: Radius (m) of the end-effector sphere and width (m) of the arm's line.
EE_RADIUS_M = 0.03
ARM_LINE_WIDTH_M = 0.02
#: Height (m) of the text lines above the zone and their spacing.
TEXT_HEIGHT_M = 0.04


@dataclass(frozen=True)
class Shape:
    """One thing to draw, in the ``world`` frame (m).

    ``key`` names it (``zone``, ``hand``, ...; a viewer's marker namespace / entity id);
    ``position_m`` is its centre (box, sphere) or anchor (text); ``size_m`` its full extent on
    each axis (box, sphere diameter; for text, the letter height in ``size_m[2]``; for a line
    strip, the line width in ``size_m[0]``); ``points_m`` the line strip's vertices."""

    key: str
    kind: str
    position_m: tuple[float, float, float]
    size_m: tuple[float, float, float]
    colour_rgba: tuple[float, float, float, float]
    points_m: tuple[tuple[float, float, float], ...] = ()
    text: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SHAPE_KINDS:
            raise ValueError(f"shape kind must be one of {SHAPE_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Scene:
    """What :meth:`LiveView.scene` returns: the shapes and a flat, JSON-ready status."""

    t_s: float
    frame_id: str
    shapes: tuple[Shape, ...]
    status: dict = field(default_factory=dict)

    def shape(self, key: str) -> Shape | None:
        return next((s for s in self.shapes if s.key == key), None)


@dataclass(frozen=True)
class LiveViewConfig:
    """``zone``: the shared zone; ``hand_radius_m``: the SSM hand sphere's radius (m, world.yaml's
    ``ssm_hand_radius_m``); ``stale_after_s``: an input older than this (s, node clock) is drawn as
    stale; ``frame_id``: the frame every shape is in."""

    zone: Zone
    hand_radius_m: float = 0.05
    stale_after_s: float = 0.5
    frame_id: str = "world"

    def __post_init__(self) -> None:
        for name in ("hand_radius_m", "stale_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not self.frame_id:
            raise ValueError("frame_id must name a frame")


def _finite3(value) -> np.ndarray | None:
    """A finite 3-vector or None (NaN, inf, wrong shape)."""
    try:
        v = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    return v if v.shape == (3,) and np.all(np.isfinite(v)) else None


def _tuple3(v) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _metres(value: float) -> str:
    if value == math.inf:
        return "inf"
    return f"{value:.2f} m" if math.isfinite(value) else "n/a"


class LiveView:
    """The newest value of every input and the scene they make.

    Feed it with the ``on_*`` methods (``t_s``: when the input arrived, on the node's clock) and
    ask for :meth:`scene` at the publishing rate. ``kinematics``: an object with
    ``joint_frames(q) -> (8, 4, 4)`` and ``ee_position(q) -> (3,)`` in ``world``
    (:class:`coop_robot.control.kinematics.PandaKinematics`)."""

    def __init__(self, config: LiveViewConfig, kinematics) -> None:
        self.config = config
        self.kinematics = kinematics
        self._inputs: dict[str, tuple[float, object]] = {}
        self._last_seen_hand_m: np.ndarray | None = None

    # ------------------------------------------------------------------ inputs
    def _set(self, key: str, t_s: float, value) -> None:
        self._inputs[key] = (float(t_s), value)

    def on_in_zone(self, t_s: float, inside: bool) -> None:
        self._set("in_zone", t_s, bool(inside))

    def on_hand(self, t_s: float, hand_m) -> None:
        """The perceived hand centre (NaN: not detected in that frame)."""
        hand = _finite3(hand_m)
        if hand is not None:
            self._last_seen_hand_m = hand
        self._set("hand", t_s, hand)

    def on_joints(self, t_s: float, q_rad) -> None:
        q = np.asarray(q_rad, dtype=float).reshape(-1)
        self._set("joints", t_s, q if q.shape == (7,) and np.all(np.isfinite(q)) else None)

    def on_ssm(self, t_s: float, sample: SsmSample) -> None:
        self._set("ssm", t_s, sample)

    def on_decision(self, t_s: float, action: str) -> None:
        self._set("decision", t_s, str(action))

    def on_exit_forecast(self, t_s: float, forecast_s: float) -> None:
        self._set("exit_forecast", t_s, float(forecast_s))

    def on_p_act(self, t_s: float, p_act: float) -> None:
        self._set("p_act", t_s, float(p_act))

    def on_controller_state(self, t_s: float, state: str, ssm_mode: str) -> None:
        """The controller's latched state (``parse_state_text`` of ``/controller/state``)."""
        self._set("controller_state", t_s, (str(state), str(ssm_mode)))

    # ------------------------------------------------------------------ the scene
    def _fresh(self, key: str, now_s: float):
        """(value, fresh) of an input; (None, False) when never received."""
        if key not in self._inputs:
            return None, False
        t, value = self._inputs[key]
        return value, (now_s - t) <= self.config.stale_after_s

    def scene(self, now_s: float) -> Scene:
        cfg = self.config
        zone = cfg.zone
        shapes: list[Shape] = []
        status: dict = {"t_s": float(now_s), "frame_id": cfg.frame_id,
                        "zone_min_m": list(zone.min_m), "zone_max_m": list(zone.max_m)}

        # The arm: forward kinematics of the newest joint state.
        q, joints_fresh = self._fresh("joints", now_s)
        ee = None
        if q is not None:
            frames = self.kinematics.joint_frames(q)
            ee = np.asarray(self.kinematics.ee_position(q), dtype=float)
            points = [tuple(self.kinematics.base_m)] + [_tuple3(f[:3, 3]) for f in frames]
            colour = ROBOT_COLOUR if joints_fresh else GREY
            shapes.append(Shape("arm", "line_strip", _tuple3(ee), (ARM_LINE_WIDTH_M,) * 3, colour,
                                points_m=tuple(_tuple3(p) for p in points)))
            shapes.append(Shape("end_effector", "sphere", _tuple3(ee), (2 * EE_RADIUS_M,) * 3, colour))
        robot_in = bool(ee is not None and joints_fresh and zone.contains(ee))
        status.update(end_effector_m=None if ee is None else list(_tuple3(ee)), joints_stale=not joints_fresh,
                      robot_in_zone=robot_in)

        # The zone, coloured by who is in it.
        in_zone, in_zone_fresh = self._fresh("in_zone", now_s)
        partner_in = bool(in_zone) if in_zone_fresh else None
        if partner_in is None:
            occupant = "unknown"
        else:
            occupant = {(True, True): "both", (True, False): "partner", (False, True): "robot"}.get(
                (partner_in, robot_in), "nobody")
        shapes.append(Shape("zone", "box", _tuple3(zone.center_m), _tuple3(zone.size_m), ZONE_COLOURS[occupant]))
        status.update(partner_in_zone=partner_in, zone_occupant=occupant)

        # The hand: the newest detection, else grey where it was last seen.
        hand, hand_fresh = self._fresh("hand", now_s)
        seen = hand is not None and hand_fresh
        where = hand if hand is not None else self._last_seen_hand_m
        r = cfg.hand_radius_m
        if where is not None:
            shapes.append(Shape("hand", "sphere", _tuple3(where), (2 * r,) * 3, HAND_COLOUR if seen else GREY))
        status.update(hand_m=None if where is None else list(_tuple3(where)), hand_seen=seen,
                      hand_radius_m=r)

        # Separation monitoring: S_p around the hand, and the numbers.
        sample, ssm_fresh = self._fresh("ssm", now_s)
        state, _ = self._fresh("controller_state", now_s)  # latched: never stale
        ssm_text = "SSM: no sample" if sample is None else ""
        if sample is not None:
            sep, s_p, mode = sample.separation_m, sample.protective_distance_m, sample.mode
            margin = sample.margin_m
            ssm_text = (f"S_p {_metres(s_p)}  separation {_metres(sep)}  margin "
                        f"{f'{margin:+.2f} m' if math.isfinite(margin) else 'n/a'}  {mode}"
                        f"{'' if ssm_fresh else '  (stale)'}")
            if ssm_fresh and seen and math.isfinite(s_p) and s_p >= 0.0:
                d = 2.0 * (r + s_p)
                shapes.append(Shape("protective_separation", "sphere", _tuple3(hand), (d, d, d),
                                    MODE_COLOURS.get(mode, GREY)))
            status.update(separation_m=_json_number(sep), protective_distance_m=_json_number(s_p),
                          ssm_margin_m=_json_number(margin), ssm_mode=mode,
                          speed_scale=_json_number(sample.speed_scale))
        status["ssm_stale"] = not ssm_fresh
        anchor = where if where is not None else zone.center_m + np.array([0.0, 0.0, 0.5 * zone.size_m[2]])
        shapes.append(Shape("ssm_text", "text", _tuple3(np.asarray(anchor) + [0.0, 0.0, r + 0.08]),
                            (0.0, 0.0, TEXT_HEIGHT_M), TEXT_COLOUR if ssm_fresh else GREY, text=ssm_text))

        # The policy and the controller, as text above the zone.
        decision, decision_fresh = self._fresh("decision", now_s)
        p_act, p_fresh = self._fresh("p_act", now_s)
        forecast, forecast_fresh = self._fresh("exit_forecast", now_s)
        policy_text = f"policy: {decision if decision is not None else 'no decision'}"
        if decision is not None and not decision_fresh:
            policy_text += " (stale)"
        if p_act is not None and p_fresh and math.isfinite(p_act):
            policy_text += f"  P(act) {p_act:.2f}"
        if forecast is not None and forecast_fresh and math.isfinite(forecast):
            policy_text += f"  exit in {forecast:.2f} s"
        controller_text = "controller: no state"
        if state is not None:
            controller_text = f"controller: {state[0]}" + ("" if state[1] == "free" else f" (ssm {state[1]})")
        top = zone.center_m + np.array([0.0, 0.0, 0.5 * zone.size_m[2] + 0.25])
        shapes.append(Shape("policy_text", "text", _tuple3(top + [0.0, 0.0, 1.5 * TEXT_HEIGHT_M]),
                            (0.0, 0.0, TEXT_HEIGHT_M), TEXT_COLOUR if decision_fresh else GREY, text=policy_text))
        shapes.append(Shape("controller_text", "text", _tuple3(top), (0.0, 0.0, TEXT_HEIGHT_M),
                            TEXT_COLOUR if state is not None else GREY, text=controller_text))
        status.update(decision=decision, decision_stale=not decision_fresh,
                      p_act=_json_number(p_act) if p_fresh else None,
                      exit_forecast_s=_json_number(forecast) if forecast_fresh else None,
                      controller_state=None if state is None else state[0])
        return Scene(float(now_s), cfg.frame_id, tuple(shapes), status)


def _json_number(value) -> float | None:
    """A finite float, or None (JSON has no NaN / inf)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None

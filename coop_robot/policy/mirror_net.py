"""The mirror policy network: egocentric features, the shared mirror encoder, the GRU core, the
contrastive (InfoNCE) alignment loss and the checkpoint format.

**Egocentric frame.** Each agent's effector (the robot's end effector, the partner's hand) is
expressed in that agent's own frame, so a reach into the shared zone looks the same whoever makes
it: origin at the agent's rest point (robot: EE at home; partner: hand at rest), x axis toward
the zone centre projected on the horizontal plane, z up (``world`` z), y = z x x; lengths are
divided by the rest -> zone-centre distance. Per time step the features are
:data:`FEATURE_NAMES`: position (3), velocity (3, per second), the signed distance to the zone
boundary (negative inside), the in-zone flag and a validity flag (0 where the effector was not
observed; the other features are then zero).

**Network.** :class:`MirrorEncoder` maps a window of ``W`` steps of those features to a latent
vector; with ``shared_encoder=True`` the same encoder reads the robot's window ("self") and the
partner's window ("other"). A GRU integrates both latents with the task context
(:data:`CONTEXT_FIELDS`, built by :func:`task_context`) and heads give the partner's exit
forecast (seconds, with a log-variance), the act logit and a value; a phase head on each latent
classifies :data:`MIRROR_PHASES`.

**Tasks.** The same network class plays both tasks (:data:`coop_robot.tasks.TASKS`); only the
task context differs: turn-taking's :data:`CONTEXT_FIELDS`, the sync task's
:data:`SYNC_CONTEXT_FIELDS` (built by :func:`sync_context`); :meth:`ObservationSpec.for_task`
gives each task's spec. In a sync checkpoint the forecast head predicts the partner's time to its
arrival at its target (while it is on its way) instead of its time to leave the zone.

**Checkpoints** hold only tensors and plain Python values (``torch.load(weights_only=True)``):
the state dict, the network config, the observation spec, the task it was trained for (absent in
files written before the sync task: ``turn_taking``), the package version and a format version.
:func:`load_checkpoint` raises :class:`CheckpointError` naming what is wrong -- also a checkpoint of
another task than the one asked for.
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import coop_robot
from coop_robot.geometry import Zone
from coop_robot.policy.base import ROBOT_STATES, PolicyError
from coop_robot.tasks import DEFAULT_TASK, TASKS, check_task

FEATURE_NAMES = ("pos_x", "pos_y", "pos_z", "vel_x", "vel_y", "vel_z", "zone_signed_distance", "in_zone", "valid")
CONTEXT_FIELDS = tuple(f"robot_state_{s}" for s in ROBOT_STATES) + (
    "robot_turn_due", "partner_in_zone", "since_partner_enter", "since_partner_exit", "perception_age")
#: The sync task's context: the robot state one-hot, whether a trial is open for the robot (cued,
#: its target not reached yet), the time since the cue and the perception age.
SYNC_CONTEXT_FIELDS = tuple(f"robot_state_{s}" for s in ROBOT_STATES) + (
    "sync_trial_open", "since_sync_cue", "perception_age")
MIRROR_PHASES = ("idle", "reach", "act", "withdraw")

# Phase labels for the contrastive / phase supervision, from the partner model's phases
# (coop_robot.partner.model.PHASES) and the controller's states. A hesitation is a paused reach;
# a false start's return is a withdraw.
PARTNER_PHASE_TO_MIRROR = {
    "initial_wait": "idle", "waiting_for_robot": "idle", "reacting": "idle", "false_start_pause": "idle",
    "reaching": "reach", "hesitating": "reach", "false_start_reach": "reach",
    "dwelling": "act",
    "withdrawing": "withdraw", "false_start_return": "withdraw",
}
#: The same for the sync partner's phases (coop_robot.partner.sync.SYNC_PHASES).
SYNC_PARTNER_PHASE_TO_MIRROR = {
    "resting": "idle", "waiting": "idle", "reaching": "reach", "hesitating": "reach", "dwelling": "act",
    "withdrawing": "withdraw",
}
ROBOT_STATE_TO_MIRROR = {
    "home": "idle", "holding": "idle", "estop": "idle", "unknown": "idle",
    "reaching": "reach", "acting": "act", "withdrawing": "withdraw", "retreating": "withdraw",
}

# Features are clipped to this magnitude (normalised units) so one perception glitch cannot
# blow up the encoder's input.
FEATURE_CLIP = 10.0

#: The shipped training config of each task (named in the error for a checkpoint of another task).
TASK_TRAINING_CONFIGS = {"turn_taking": "config/training/train.yaml", "sync": "config/training/sync.yaml"}

CHECKPOINT_FORMAT = "coop_robot.mirror_policy"
CHECKPOINT_FORMAT_VERSION = 1


class CheckpointError(PolicyError):
    """A mirror-policy checkpoint is missing, unreadable or does not fit this code (a ValueError).

    A PolicyError, so ``make_policy("mirror")`` callers (the policy node) report it like any bad
    policy parameter.
    """


# ---------------------------------------------------------------------------------------------
# Egocentric features (NumPy only)


@dataclass(frozen=True)
class EgocentricFrame:
    """An agent's egocentric frame: origin at its rest point, x toward the zone centre, z up.

    ``axes`` rows are the frame's x, y, z axes in ``world``; ``scale_m`` is the rest -> zone-centre
    distance (m) that every length is divided by.
    """

    origin_m: np.ndarray
    axes: np.ndarray
    scale_m: float

    @classmethod
    def facing_zone(cls, origin_m, zone: Zone) -> EgocentricFrame:
        origin = np.asarray(origin_m, dtype=float)
        if origin.shape != (3,) or not np.all(np.isfinite(origin)):
            raise ValueError(f"egocentric origin must be a finite [x, y, z] in metres (world), got {origin_m!r}")
        to_centre = zone.center_m - origin
        heading = np.array([to_centre[0], to_centre[1], 0.0])
        if np.linalg.norm(heading) < 1e-6:
            raise ValueError(f"egocentric origin {origin.tolist()} is directly above or below the zone centre "
                             f"{zone.center_m.tolist()}: no horizontal heading toward the zone")
        x = heading / np.linalg.norm(heading)
        z = np.array([0.0, 0.0, 1.0])
        y = np.cross(z, x)
        return cls(origin, np.stack([x, y, z]), float(np.linalg.norm(to_centre)))

    def points(self, points_m: np.ndarray) -> np.ndarray:
        """World points ``(N, 3)`` (m) -> egocentric, in units of ``scale_m``."""
        return (np.asarray(points_m, dtype=float) - self.origin_m) @ self.axes.T / self.scale_m

    def vectors(self, vectors_world: np.ndarray) -> np.ndarray:
        """World vectors ``(N, 3)`` (e.g. m/s) -> egocentric, divided by ``scale_m``."""
        return np.asarray(vectors_world, dtype=float) @ self.axes.T / self.scale_m


def zone_signed_distance_m(zone: Zone, points_m) -> np.ndarray:
    """Signed distance (m) from each ``(N, 3)`` world point to the zone box: > 0 outside, < 0 inside."""
    p = np.asarray(points_m, dtype=float).reshape(-1, 3)
    q = np.abs(p - zone.center_m) - 0.5 * zone.size_m
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    inside = np.minimum(np.max(q, axis=1), 0.0)
    return outside + inside


def egocentric_features(points_world, velocities_world, origin_m, zone: Zone,
                        frame: EgocentricFrame | None = None) -> np.ndarray:
    """Per-step mirror features :data:`FEATURE_NAMES` of one effector, shape ``(N, 9)`` float32.

    ``points_world``: ``(N, 3)`` effector positions in ``world`` (m); a row with any NaN means
    "not observed" (its features are zero and ``valid`` is 0). ``velocities_world``: ``(N, 3)``
    m/s in ``world`` or None; non-finite rows count as zero velocity. ``origin_m``: the agent's
    rest point in ``world`` (m). See the module docstring for the frame. ``frame``: the
    ``EgocentricFrame.facing_zone(origin_m, zone)`` already built (a caller that calls once per
    tick keeps it); None builds it here.
    """
    if frame is None:
        frame = EgocentricFrame.facing_zone(origin_m, zone)
    p = np.asarray(points_world, dtype=float).reshape(-1, 3)
    n = p.shape[0]
    v = np.zeros((n, 3)) if velocities_world is None else np.asarray(velocities_world, dtype=float).reshape(-1, 3)
    if v.shape[0] != n:
        raise ValueError(f"got {n} points but {v.shape[0]} velocities; expected one velocity per point")
    valid = np.all(np.isfinite(p), axis=1)
    v = np.where(np.all(np.isfinite(v), axis=1, keepdims=True), v, 0.0)
    out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float64)
    pv = p[valid]
    out[valid, 0:3] = frame.points(pv)
    out[valid, 3:6] = frame.vectors(v[valid])
    out[valid, 6] = zone_signed_distance_m(zone, pv) / frame.scale_m
    out[valid, 7] = zone.contains_many(pv).astype(float)
    out[valid, 8] = 1.0
    return np.clip(out, -FEATURE_CLIP, FEATURE_CLIP).astype(np.float32)


class EgocentricRow:
    """:func:`egocentric_features` of one effector for one row at a time, in plain Python floats.

    A policy adds one row per tick and effector; for a single point the vectorised function's
    masking and array set-up cost ~0.2 ms, this ~10 us. The values are the same up to the last
    bit of float64 rounding before the cast to float32 (``test_numpy_net`` pins them).
    """

    def __init__(self, frame: EgocentricFrame, zone: Zone) -> None:
        self.origin = tuple(float(v) for v in frame.origin_m)
        self.axes = tuple(tuple(float(v) for v in row) for row in frame.axes)
        self.scale = float(frame.scale_m)
        self.centre = tuple(float(v) for v in zone.center_m)
        self.half = tuple(float(v) for v in 0.5 * zone.size_m)
        self.lo = tuple(float(v) for v in zone.min_m)
        self.hi = tuple(float(v) for v in zone.max_m)

    def __call__(self, point_m, velocity_world) -> np.ndarray:
        """Point ``(3,)`` (m, NaN = not observed) and velocity ``(3,)`` (m/s, non-finite = 0) ->
        the row ``(9,)`` float32."""
        p = [float(v) for v in point_m]
        out = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
        if not all(math.isfinite(v) for v in p):
            return out
        vel = [float(v) for v in velocity_world]
        if not all(math.isfinite(v) for v in vel):
            vel = [0.0, 0.0, 0.0]
        d = [p[i] - self.origin[i] for i in range(3)]
        row = [sum(d[j] * a[j] for j in range(3)) / self.scale for a in self.axes]
        row += [sum(vel[j] * a[j] for j in range(3)) / self.scale for a in self.axes]
        q = [abs(p[i] - self.centre[i]) - self.half[i] for i in range(3)]
        # v * v, not v ** 2: a float power raises OverflowError where the product (and NumPy) gives inf
        # (a hand at 1e300 m is garbage from upstream, and becomes the clipped feature like any far hand).
        outside = math.sqrt(sum(max(v, 0.0) * max(v, 0.0) for v in q))
        row.append((outside + min(max(q), 0.0)) / self.scale)
        row.append(1.0 if all(self.lo[i] <= p[i] <= self.hi[i] for i in range(3)) else 0.0)
        row.append(1.0)
        out[:] = [min(max(v, -FEATURE_CLIP), FEATURE_CLIP) for v in row]
        return out


def task_context(robot_state: str, robot_turn_due: bool, partner_in_zone: bool | None,
                 since_partner_enter_s: float, since_partner_exit_s: float, perception_age_s: float,
                 time_horizon_s: float = 5.0, perception_age_horizon_s: float = 1.0) -> np.ndarray:
    """The task context :data:`CONTEXT_FIELDS` for one tick, shape ``(13,)`` float32.

    Robot state one-hot (unknown names count as "unknown"), whether the robot's turn is due, the
    perceived partner-in-zone flag (None -> 0), the times since the partner was last perceived
    entering / leaving the zone (s; inf or NaN = never) clipped to ``time_horizon_s`` and divided
    by it, and the perception age clipped to ``perception_age_horizon_s`` and divided by it.
    """
    ctx = np.zeros(len(CONTEXT_FIELDS), dtype=np.float32)
    state = robot_state if robot_state in ROBOT_STATES else "unknown"
    ctx[ROBOT_STATES.index(state)] = 1.0
    k = len(ROBOT_STATES)

    def scaled(t_s: float, horizon_s: float) -> float:
        if not math.isfinite(t_s):
            return 1.0
        return min(max(t_s, 0.0), horizon_s) / horizon_s

    ctx[k] = float(bool(robot_turn_due))
    ctx[k + 1] = float(bool(partner_in_zone))
    ctx[k + 2] = scaled(since_partner_enter_s, time_horizon_s)
    ctx[k + 3] = scaled(since_partner_exit_s, time_horizon_s)
    ctx[k + 4] = scaled(perception_age_s, perception_age_horizon_s)
    return ctx


def sync_context(robot_state: str, trial_open: bool, since_cue_s: float, perception_age_s: float,
                 time_horizon_s: float = 5.0, perception_age_horizon_s: float = 1.0) -> np.ndarray:
    """The sync task's context :data:`SYNC_CONTEXT_FIELDS` for one tick, float32.

    Robot state one-hot (as :func:`task_context`), whether a trial is open for the robot, the time
    since the open trial's cue (s; NaN / inf between trials: 1) clipped to ``time_horizon_s`` and
    divided by it, and the perception age clipped to ``perception_age_horizon_s`` and divided by it.
    """
    ctx = np.zeros(len(SYNC_CONTEXT_FIELDS), dtype=np.float32)
    state = robot_state if robot_state in ROBOT_STATES else "unknown"
    ctx[ROBOT_STATES.index(state)] = 1.0
    k = len(ROBOT_STATES)
    ctx[k] = float(bool(trial_open))
    for i, (t_s, horizon_s) in enumerate(((since_cue_s, time_horizon_s), (perception_age_s, perception_age_horizon_s))):
        ctx[k + 1 + i] = min(max(t_s, 0.0), horizon_s) / horizon_s if math.isfinite(t_s) else 1.0
    return ctx


@dataclass(frozen=True)
class ObservationSpec:
    """What the network's inputs mean; stored in every checkpoint and checked on load.

    ``window_steps`` samples per window at ``tick_rate_hz`` (the policy node's ``rate_hz`` must
    match: the windows are sampled once per decision tick).
    """

    feature_names: tuple = FEATURE_NAMES
    window_steps: int = 16
    tick_rate_hz: float = 50.0
    context_fields: tuple = CONTEXT_FIELDS
    time_horizon_s: float = 5.0
    perception_age_horizon_s: float = 1.0
    frame: str = "rest_origin_x_to_zone_centre_z_up_scaled_v1"

    def __post_init__(self) -> None:
        if not (isinstance(self.window_steps, int) and self.window_steps >= 1):
            raise ValueError(f"window_steps must be an integer >= 1, got {self.window_steps!r}")
        if not (math.isfinite(self.tick_rate_hz) and self.tick_rate_hz > 0):
            raise ValueError(f"tick_rate_hz must be a finite value > 0, got {self.tick_rate_hz!r}")

    @classmethod
    def for_task(cls, task: str = DEFAULT_TASK) -> ObservationSpec:
        """The default spec of ``task``: the same windows, the task's own context fields."""
        return cls() if check_task(task) == DEFAULT_TASK else cls(context_fields=SYNC_CONTEXT_FIELDS)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["feature_names"] = list(self.feature_names)
        d["context_fields"] = list(self.context_fields)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> ObservationSpec:
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) != known:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"observation spec must have exactly the fields {sorted(known)}, got {got}")
        d = dict(data)
        d["feature_names"] = tuple(d["feature_names"])
        d["context_fields"] = tuple(d["context_fields"])
        return cls(**d)

    def differences(self, other: ObservationSpec) -> list[str]:
        """Human-readable ``field: self vs other`` lines for every differing field."""
        return [f"{f.name}: {getattr(self, f.name)!r} vs {getattr(other, f.name)!r}"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


# ---------------------------------------------------------------------------------------------
# Network


@dataclass(frozen=True)
class MirrorNetConfig:
    """Network hyper-parameters (saved in checkpoints)."""

    n_features: int = len(FEATURE_NAMES)
    window_steps: int = 16
    context_dim: int = len(CONTEXT_FIELDS)
    latent_dim: int = 32
    conv_channels: int = 32
    hidden_dim: int = 64
    n_phases: int = len(MIRROR_PHASES)
    shared_encoder: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "shared_encoder":
                if not isinstance(value, bool):
                    raise ValueError(f"shared_encoder must be a bool, got {value!r}")
            elif not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{f.name} must be an integer >= 1, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MirrorNetConfig:
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or not set(data) <= known:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"network config fields must be among {sorted(known)}, got {got}")
        return cls(**data)

    def check_spec(self, spec: ObservationSpec) -> None:
        """Raise ValueError when the network's input sizes do not fit the observation spec."""
        problems = []
        if self.n_features != len(spec.feature_names):
            problems.append(f"n_features {self.n_features} != {len(spec.feature_names)} feature names")
        if self.window_steps != spec.window_steps:
            problems.append(f"window_steps {self.window_steps} != spec window_steps {spec.window_steps}")
        if self.context_dim != len(spec.context_fields):
            problems.append(f"context_dim {self.context_dim} != {len(spec.context_fields)} context fields")
        if problems:
            raise ValueError("network config does not fit the observation spec: " + "; ".join(problems))


class MirrorEncoder(nn.Module):
    """Window ``(..., W, F)`` of egocentric features -> latent ``(..., D)``.

    Two 1-D convolutions over time (the second halves the length) then a linear map of the
    flattened result, so the latent keeps *when* in the window a motion happened.
    """

    def __init__(self, n_features: int, window_steps: int, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.window_steps = window_steps
        self.conv = nn.Sequential(
            nn.Conv1d(n_features, channels, kernel_size=5, padding=2), nn.GELU(),
            nn.Conv1d(channels, channels, kernel_size=5, stride=2, padding=2), nn.GELU(),
        )
        out_steps = (window_steps - 1) // 2 + 1
        self.proj = nn.Linear(channels * out_steps, latent_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if windows.shape[-2:] != (self.window_steps, self.n_features):
            raise ValueError(f"encoder expects windows (..., {self.window_steps}, {self.n_features}), "
                             f"got {tuple(windows.shape)}")
        lead = windows.shape[:-2]
        x = windows.reshape(-1, self.window_steps, self.n_features).transpose(1, 2)
        z = self.proj(self.conv(x).flatten(1))
        return z.reshape(*lead, -1)


class MirrorPolicyNet(nn.Module):
    """Mirror encoder(s) + GRU core + exit-forecast / act / value heads (+ phase heads).

    Outputs (a dict of tensors, leading dims ``(B, T)`` for :meth:`forward_sequence`, ``(B,)``
    for :meth:`step`): ``exit_forecast_s`` (>= 0), ``exit_log_var``, ``act_logit``, ``value``,
    ``z_self``, ``z_other`` (latents, D), ``phase_logits_self``, ``phase_logits_other``.
    """

    def __init__(self, config: MirrorNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MirrorNetConfig()
        n_enc = 1 if cfg.shared_encoder else 2
        # Index 0 reads the robot ("self"), index -1 the partner ("other"): one module when shared.
        self.encoders = nn.ModuleList(
            MirrorEncoder(cfg.n_features, cfg.window_steps, cfg.latent_dim, cfg.conv_channels) for _ in range(n_enc))
        self.phase_heads = nn.ModuleList(nn.Linear(cfg.latent_dim, cfg.n_phases) for _ in range(n_enc))
        core_in = 2 * cfg.latent_dim + cfg.context_dim
        self.core_norm = nn.LayerNorm(core_in)
        self.core = nn.GRU(core_in, cfg.hidden_dim, batch_first=True)
        self.trunk = nn.Sequential(nn.Linear(cfg.hidden_dim, cfg.hidden_dim), nn.GELU())
        self.forecast_head = nn.Linear(cfg.hidden_dim, 2)   # softplus(mean_s), log-variance
        self.act_head = nn.Linear(cfg.hidden_dim, 1)
        self.value_head = nn.Linear(cfg.hidden_dim, 1)

    def encode_self(self, windows: torch.Tensor) -> torch.Tensor:
        return self.encoders[0](windows)

    def encode_other(self, windows: torch.Tensor) -> torch.Tensor:
        return self.encoders[-1](windows)

    def initial_hidden(self, batch_size: int = 1) -> torch.Tensor:
        """Zero GRU state ``(1, batch_size, hidden_dim)``."""
        return torch.zeros(1, batch_size, self.config.hidden_dim)

    def forward_sequence(self, self_windows: torch.Tensor, other_windows: torch.Tensor, context: torch.Tensor,
                         h0: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Run ``T`` ticks: windows ``(B, T, W, F)``, context ``(B, T, C)``, ``h0`` ``(1, B, H)`` or None.

        Returns ``(outputs, h_n)`` with ``h_n`` ``(1, B, H)`` to carry into the next call.
        """
        if self_windows.dim() != 4 or other_windows.shape != self_windows.shape:
            raise ValueError(f"self/other windows must both be (B, T, W, F), got {tuple(self_windows.shape)} "
                             f"and {tuple(other_windows.shape)}")
        b, t = self_windows.shape[:2]
        if context.shape != (b, t, self.config.context_dim):
            raise ValueError(f"context must be ({b}, {t}, {self.config.context_dim}), got {tuple(context.shape)}")
        z_self = self.encode_self(self_windows)
        z_other = self.encode_other(other_windows)
        x = self.core_norm(torch.cat([z_self, z_other, context], dim=-1))
        if h0 is None:
            h0 = self.initial_hidden(b).to(x)
        h_seq, h_n = self.core(x, h0)
        y = self.trunk(h_seq)
        fc = self.forecast_head(y)
        out = {
            "exit_forecast_s": F.softplus(fc[..., 0]),
            "exit_log_var": fc[..., 1].clamp(-8.0, 6.0),
            "act_logit": self.act_head(y).squeeze(-1),
            "value": self.value_head(y).squeeze(-1),
            "z_self": z_self,
            "z_other": z_other,
            "phase_logits_self": self.phase_heads[0](z_self),
            "phase_logits_other": self.phase_heads[-1](z_other),
        }
        return out, h_n

    def step(self, self_window: torch.Tensor, other_window: torch.Tensor, context: torch.Tensor,
             hidden: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One tick: windows ``(B, W, F)``, context ``(B, C)`` -> outputs ``(B, ...)`` and new hidden."""
        out, h = self.forward_sequence(self_window.unsqueeze(1), other_window.unsqueeze(1), context.unsqueeze(1),
                                       hidden)
        return {k: v.squeeze(1) for k, v in out.items()}, h


# ---------------------------------------------------------------------------------------------
# Losses


def info_nce(z_self: torch.Tensor, z_other: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE: row ``i`` of ``z_self`` and of ``z_other`` (``(N, D)``) are a positive pair.

    Every other row of the opposite set is a negative. Embeddings are L2-normalised (cosine
    similarity divided by ``temperature``).
    """
    if z_self.dim() != 2 or z_self.shape != z_other.shape or z_self.shape[0] < 2:
        raise ValueError(
            f"info_nce needs two (N, D) batches of equal shape with N >= 2, got "
            f"{tuple(z_self.shape)} and {tuple(z_other.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    a = F.normalize(z_self, dim=-1)
    b = F.normalize(z_other, dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def supervised_info_nce(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020): rows with the same phase label attract.

    ``z`` ``(N, D)`` (e.g. self and other latents stacked), ``labels`` ``(N,)`` integers. Anchors
    without any positive are skipped; returns 0 (with a gradient) when no anchor has one.
    """
    if z.dim() != 2 or labels.shape != (z.shape[0],):
        raise ValueError(
            f"supervised_info_nce needs z (N, D) and labels (N,), got {tuple(z.shape)} / {tuple(labels.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    zn = F.normalize(z, dim=-1)
    logits = zn @ zn.T / temperature
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = positives.sum(dim=1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    mean_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)[has] / n_pos[has]
    return -mean_log_prob.mean()


def forecast_nll(
    mean_s: torch.Tensor, log_var: torch.Tensor, target_s: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Gaussian negative log-likelihood (up to a constant) of the exit-time targets, masked mean."""
    nll = 0.5 * (log_var + (target_s - mean_s) ** 2 * torch.exp(-log_var))
    if mask is None:
        return nll.mean()
    m = mask.to(nll.dtype)
    return (nll * m).sum() / m.sum().clamp_min(1.0)


# ---------------------------------------------------------------------------------------------
# Checkpoints

_PLAIN = (bool, int, float, str, type(None))


def _check_plain(value, where: str) -> None:
    if isinstance(value, _PLAIN) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where} keys must be str, got {k!r}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise ValueError(
        f"{where} holds a {type(value).__name__}; checkpoints may hold only tensors, "
        "numbers, strings, None, lists and dicts (torch.load weights_only=True)"
    )


def save_checkpoint(
    path, model: MirrorPolicyNet, config: MirrorNetConfig | dict, obs_spec: ObservationSpec, extra: dict | None = None,
    task: str = DEFAULT_TASK,
) -> Path:
    """Write ``model`` with its config, observation spec, task and package version to ``path`` (atomically).

    ``config`` must be the model's own config (as a :class:`MirrorNetConfig` or its dict);
    ``extra`` is free plain data (training config, seed, metrics); ``task`` the task it plays.
    """
    task = check_task(task)
    cfg = MirrorNetConfig.from_dict(config) if isinstance(config, dict) else config
    if cfg != model.config:
        raise ValueError(f"config {cfg} is not the model's config {model.config}")
    cfg.check_spec(obs_spec)
    extra = {} if extra is None else extra
    _check_plain(extra, "extra")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "package_version": coop_robot.__version__,
        "config": cfg.to_dict(),
        "obs_spec": obs_spec.to_dict(),
        "task": task,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shipped or shared checkpoint must be readable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    config: MirrorNetConfig
    obs_spec: ObservationSpec
    package_version: str
    format_version: int
    extra: dict
    task: str = DEFAULT_TASK


def load_checkpoint(path, expected_spec: ObservationSpec | None = None,
                    task: str | None = None) -> tuple[MirrorPolicyNet, CheckpointInfo]:
    """Load a mirror-policy checkpoint (CPU, ``weights_only=True``) -> ``(model in eval mode, info)``.

    Raises :class:`CheckpointError` when the file is missing, unreadable or corrupt, is not a
    coop_robot mirror checkpoint, has another format version, was trained for another task than
    ``task`` (None: any), for an observation spec other than ``expected_spec`` (naming the
    differing fields) or its weights do not fit its config.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"mirror checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"mirror checkpoint {path} cannot be loaded with weights_only=True (it is corrupt or "
            f"holds arbitrary Python objects; coop_robot checkpoints hold only tensors and "
            f"plain values): {exc}"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise CheckpointError(f"mirror checkpoint {path} is corrupt or truncated: {type(exc).__name__}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        what = f"format {payload.get('format')!r}" if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path} is not a coop_robot mirror checkpoint (expected format {CHECKPOINT_FORMAT!r}, found {what})"
        )
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"mirror checkpoint {path} has format version {version!r}; this coop_robot "
            f"({coop_robot.__version__}) reads version {CHECKPOINT_FORMAT_VERSION}: retrain or "
            "convert it"
        )
    missing = [k for k in ("package_version", "config", "obs_spec", "state_dict", "extra") if k not in payload]
    if missing:
        raise CheckpointError(f"mirror checkpoint {path} lacks {', '.join(missing)}")
    trained_for = payload.get("task", DEFAULT_TASK)  # files from before the sync task: turn-taking
    if not isinstance(trained_for, str) or trained_for not in TASKS:
        raise CheckpointError(f"mirror checkpoint {path} names an unknown task {trained_for!r}; expected one of "
                              f"{', '.join(TASKS)}")
    if task is not None and trained_for != check_task(task):
        raise CheckpointError(
            f"mirror checkpoint {path} was trained for the {trained_for} task, not {task}: use a {task} checkpoint "
            f"(coop-robot train --config {TASK_TRAINING_CONFIGS[task]})")
    try:
        spec = ObservationSpec.from_dict(payload["obs_spec"])
        config = MirrorNetConfig.from_dict(payload["config"])
        config.check_spec(spec)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"mirror checkpoint {path} has a bad config or observation spec: {exc}") from exc
    if expected_spec is not None and spec != expected_spec:
        diff = "; ".join(spec.differences(expected_spec))
        raise CheckpointError(
            f"mirror checkpoint {path} was made for another observation spec (checkpoint vs expected) -- {diff}"
        )
    model = MirrorPolicyNet(config)
    state = payload["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"mirror checkpoint {path}: state_dict is a {type(state).__name__}, expected a dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"mirror checkpoint {path}: weights do not fit its config {config}: {exc}") from exc
    model.eval()
    info = CheckpointInfo(path, config, spec, str(payload["package_version"]), int(version), payload["extra"],
                          trained_for)
    return model, info

"""Mirror-policy training configuration: every hyper-parameter and the seed in one dataclass.

:class:`TrainConfig` is built from defaults, from a YAML mapping (:meth:`TrainConfig.from_yaml`,
``yaml.safe_load``) and command-line overrides; unknown keys and bad values raise
:class:`TrainConfigError` naming the key, the value and what was expected. The config is saved
as a plain dict in every checkpoint (:meth:`TrainConfig.to_dict`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import yaml

from coop_robot.control.ssm import HAND_MOTION_SOURCES
from coop_robot.tasks import DEFAULT_TASK, TASKS

TRAINING_PARTNERS = ("typical", "fast", "slow", "hesitant", "erratic")
#: The order collected sessions cycle through: ``erratic``, the one training partner that makes
#: false starts into the zone, three times in seven. Once in five gave the network about 40 ticks
#: of false starts a run, and one seed in three learned to wait them out (docs/mirror_policy.md).
TRAINING_PARTNER_CYCLE = ("typical", "fast", "slow", "hesitant", "erratic", "erratic", "erratic")
#: The validation sessions of checkpoint selection (``select_every``): every training partner
#: (``erratic``, whose false starts are where the recipe's failures show, twice) at each of
#: ``SELECTION_TIME_SCALES``. Fixed scales, not draws: a network that waits out ``erratic``'s
#: false starts when they are quick (x0.72) may still enter the longer pauses of x1.0, and two
#: quick draws hid exactly that (docs/benchmarks.md, checkpoint selection).
SELECTION_PARTNERS = (*TRAINING_PARTNERS, "erratic")
SELECTION_TIME_SCALES = (0.8, 1.0, 1.25)
#: The keys of checkpoint selection: left out of :meth:`TrainConfig.to_dict` while selection is off,
#: so a run without it writes the config (and the checkpoint) byte for byte as before they existed.
SELECTION_KEYS = ("select_every", "select_from", "select_partners", "select_time_scales", "select_turns",
                  "select_seed")


class TrainConfigError(ValueError):
    """A training configuration key or value is unknown or invalid."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of ``coop-robot train`` (see config/training/train.yaml for what each one does)."""

    #: the task trained (coop_robot.tasks.TASKS): turn_taking, or sync (synchronous joint action)
    task: str = DEFAULT_TASK
    # --- reproducibility
    seed: int = 0
    deterministic: bool = True          # torch.use_deterministic_algorithms + 1 torch thread
    # --- schedule
    iterations: int = 40
    episodes_per_iteration: int = 5     # cycles through `partners`
    turns_per_episode: int = 4          # robot turns per collected session
    max_episode_s: float = 60.0         # a session stops here even with fewer turns (s)
    updates_per_iteration: int = 24     # gradient steps per iteration, each on one replay batch
    # --- environment
    partners: tuple = TRAINING_PARTNER_CYCLE
    perception: str = "fitted"          # "fitted" (config/models/perception_model.yaml) or "ideal"
    #: each collected session's partner is this many times slower (> 1) or quicker (< 1), drawn
    #: log-uniformly per session (PartnerProfile.time_scaled); 1 and 1: the profiles as they are
    #: (checkpoints trained before this option existed were trained with 1 and 1)
    partner_time_scale_min: float = 0.7
    partner_time_scale_max: float = 1.25
    #: the training environment's controller: where the separation monitor's hand velocity comes from
    #: (the controller's ``ssm_hand_motion``: tracker | fit). ``tracker``, not the deployed default
    #: ``fit``: the checkpoints shipped were trained so, and one trained under ``fit`` did worse
    #: (docs/safety.md, "The hand's motion fitted from its positions"). Left out of the saved config
    #: while ``tracker`` (so a checkpoint trained before the option existed is reproduced byte for byte).
    ssm_hand_motion: str = "tracker"
    # --- evaluation (greedy MirrorPolicy, no exploration, fixed seeds)
    eval_every: int = 1
    eval_partners: tuple = ("typical", "erratic")
    eval_turns: int = 4
    eval_seed: int = 10_000
    # --- checkpoint selection on held-in validation sessions (greedy, the training partners at
    # fixed seeds and time scales, never the held-out partners). 0: off, the last iteration's
    # weights are the checkpoint (as before this option existed).
    select_every: int = 0               # score the weights every this many iterations (and the last)
    select_from: int = 1                # the first iteration that is a candidate
    select_partners: tuple = SELECTION_PARTNERS
    select_time_scales: tuple = SELECTION_TIME_SCALES   # every partner at each (PartnerProfile.time_scaled)
    select_turns: int = 16              # robot turns per validation session
    select_seed: int = 20_000           # session seeds select_seed + k (k: the session's index)
    # --- network (MirrorNetConfig; window length and inputs come from ObservationSpec)
    latent_dim: int = 32
    conv_channels: int = 32
    hidden_dim: int = 64
    shared_encoder: bool = True
    # --- replay buffer
    replay_capacity: int = 1000         # sequences
    sequence_length: int = 64           # ticks per stored sequence (50 Hz)
    burn_in: int = 16                   # leading ticks that only warm the GRU up (no loss)
    batch_size: int = 16                # sequences per update
    # --- optimiser
    learning_rate: float = 1e-3
    grad_clip_norm: float = 1.0
    # --- reward (reinforcement)
    reward_turn: float = 2.0            # per completed robot turn
    penalty_gap_per_s: float = 1.0      # per second between the partner's exit and robot entry
    penalty_overlap: float = 10.0       # per robot turn that overlapped the partner's
    #: per robot entry within the partner model's near-miss window of its exit (the partner slows down)
    penalty_near_miss: float = 2.0
    penalty_contact: float = 20.0       # per robot-partner contact
    #: per SSM violation in a scored robot turn (ground-truth separation below S_p while the robot
    #: moves toward the person), on top of that turn's overlap penalty
    penalty_ssm_violation: float = 10.0
    gamma: float = 0.995                # discount per 20 ms tick
    # --- exploration during collection
    epsilon: float = 0.1                # P(act) is mixed with a coin flip by this fraction
    # --- learning from observation
    robot_lead_s: float = 0.5           # act target = 1 once the partner's turn-ending exit is this close (s)
    # --- loss weights and temperatures
    weight_forecast: float = 1.0
    weight_contrastive: float = 0.1
    weight_phase: float = 0.1
    weight_act_imitation: float = 1.0
    weight_false_start_imitation: float = 30.0  # act-imitation weight of ticks during a partner's false start
    weight_act_rl: float = 1.0
    weight_value: float = 0.5
    contrastive_temperature: float = 0.1
    contrastive_samples: int = 256      # latents per side in the contrastive loss
    awr_beta: float = 1.0               # advantage-weighted regression temperature
    awr_max_weight: float = 20.0
    # --- the sync task only (task: sync; config/training/sync.yaml). With it, turns_per_episode and
    # eval_turns count trials; the turn-taking reward terms above are not used.
    #: window curriculum: the success window of iteration 1 (s), narrowing linearly to
    #: sync_window_end_s at iteration sync_curriculum_iterations and held there
    sync_window_start_s: float = 1.5
    sync_window_end_s: float = 0.75
    sync_curriculum_iterations: int = 30
    reward_sync_success: float = 2.0          # per trial in which both arrive within the current window
    penalty_sync_offset_per_s: float = 1.0    # per second of |arrival offset| (shaping toward together)
    penalty_sync_missed: float = 2.0          # per trial in which either agent did not arrive
    penalty_sync_ssm_violation: float = 10.0  # per SSM violation in a trial (contacts: penalty_contact)

    def sync_window_s(self, iteration: int) -> float:
        """The curriculum's success window (s) of training ``iteration`` (>= 1; 0, the untrained
        start, is iteration 1's): linear from ``sync_window_start_s`` at iteration 1 to
        ``sync_window_end_s`` at ``sync_curriculum_iterations``, then held."""
        span = self.sync_curriculum_iterations - 1
        frac = 1.0 if span <= 0 else min(max(iteration - 1, 0) / span, 1.0)
        return float(self.sync_window_start_s + frac * (self.sync_window_end_s - self.sync_window_start_s))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default
            if isinstance(default, str):
                if not isinstance(value, str):
                    raise TrainConfigError(f"{f.name} must be a string, got {value!r}")
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TrainConfigError(f"{f.name} must be true or false, got {value!r}")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TrainConfigError(f"{f.name} must be an integer, got {value!r}")
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise TrainConfigError(f"{f.name} must be a finite number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
            elif isinstance(default, tuple) and all(isinstance(v, float) for v in default):
                if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value or not all(
                        not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0
                        for v in value):
                    raise TrainConfigError(f"{f.name} must be a non-empty list of numbers > 0, got {value!r}")
                object.__setattr__(self, f.name, tuple(float(v) for v in value))
            elif isinstance(default, tuple):
                if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value \
                        or not all(isinstance(v, str) and v for v in value):
                    raise TrainConfigError(f"{f.name} must be a non-empty list of names, got {value!r}")
                object.__setattr__(self, f.name, tuple(value))
        self._check_ranges()

    def _check_ranges(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise TrainConfigError(f"{name} must be {expected}, got {getattr(self, name)!r}")

        need(self.seed >= 0, "seed", ">= 0")
        need(self.eval_seed >= 0, "eval_seed", ">= 0")
        need(self.select_seed >= 0, "select_seed", ">= 0")
        need(self.select_every >= 0, "select_every", "an integer >= 0 (0: no checkpoint selection)")
        need(self.select_from >= 1 and (self.select_every == 0 or self.select_from <= self.iterations), "select_from",
             f">= 1 and, with selection on, <= iterations ({self.iterations})")
        for name in ("iterations", "episodes_per_iteration", "turns_per_episode", "updates_per_iteration",
                     "eval_every", "eval_turns", "select_turns", "latent_dim", "conv_channels", "hidden_dim",
                     "replay_capacity", "sequence_length", "batch_size", "contrastive_samples"):
            need(getattr(self, name) >= 1, name, "an integer >= 1")
        need(
            0 <= self.burn_in < self.sequence_length, "burn_in", f">= 0 and < sequence_length ({self.sequence_length})"
        )
        need(self.batch_size <= self.replay_capacity, "batch_size", f"<= replay_capacity ({self.replay_capacity})")
        need(self.contrastive_samples >= 2, "contrastive_samples", ">= 2")
        for name in (
            "max_episode_s",
            "learning_rate",
            "grad_clip_norm",
            "contrastive_temperature",
            "awr_beta",
            "awr_max_weight",
        ):
            need(getattr(self, name) > 0, name, "> 0")
        for name in (
            "reward_turn",
            "penalty_gap_per_s",
            "penalty_overlap",
            "penalty_near_miss",
            "penalty_contact",
            "penalty_ssm_violation",
            "robot_lead_s",
            "weight_forecast",
            "weight_contrastive",
            "weight_phase",
            "weight_act_imitation",
            "weight_false_start_imitation",
            "weight_act_rl",
            "weight_value",
        ):
            need(getattr(self, name) >= 0, name, ">= 0")
        need(self.partner_time_scale_min > 0, "partner_time_scale_min", "> 0")
        need(self.partner_time_scale_max >= self.partner_time_scale_min, "partner_time_scale_max",
             f">= partner_time_scale_min ({self.partner_time_scale_min})")
        need(0 < self.gamma <= 1, "gamma", "in (0, 1]")
        need(0 <= self.epsilon <= 1, "epsilon", "in [0, 1]")
        need(self.perception in ("fitted", "ideal"), "perception", "'fitted' or 'ideal'")
        need(self.ssm_hand_motion in HAND_MOTION_SOURCES, "ssm_hand_motion", f"one of {', '.join(HAND_MOTION_SOURCES)}")
        need(self.task in TASKS, "task", f"one of {', '.join(TASKS)}")
        need(self.select_every == 0 or self.task != "sync", "select_every",
             "0 in the sync task (checkpoint selection scores turn-taking sessions)")
        need(self.sync_curriculum_iterations >= 1, "sync_curriculum_iterations", "an integer >= 1")
        for name in ("reward_sync_success", "penalty_sync_offset_per_s", "penalty_sync_missed",
                     "penalty_sync_ssm_violation"):
            need(getattr(self, name) >= 0, name, ">= 0")
        from coop_robot.timing.sync import sync_task_config  # noqa: PLC0415 -- config/sync.yaml, the one home

        timeout_s = sync_task_config().trial_timeout_s
        for name in ("sync_window_start_s", "sync_window_end_s"):
            need(0 < getattr(self, name) < timeout_s, name, f"a window in seconds > 0 and < sync_trial_timeout_s "
                                                          f"({timeout_s:g} s, config/sync.yaml)")
        need(self.sync_window_end_s <= self.sync_window_start_s, "sync_window_end_s",
             f"<= sync_window_start_s ({self.sync_window_start_s}): the curriculum narrows")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        """Field -> value (lists for tuples); without the selection keys while ``select_every`` is 0,
        nor ``ssm_hand_motion`` while ``tracker``."""
        d = asdict(self)
        if self.select_every == 0:
            for key in SELECTION_KEYS:
                del d[key]
        if self.ssm_hand_motion == "tracker":
            del d["ssm_hand_motion"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data, source: str = "training config") -> TrainConfig:
        """Build from a mapping of field -> value; unknown keys -> TrainConfigError naming them."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise TrainConfigError(f"{source} must be a mapping of hyper-parameter: value, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise TrainConfigError(f"{source}: unknown key(s) {unknown}; expected some of {sorted(known)}")
        try:
            return cls(**data)
        except TrainConfigError as exc:
            raise TrainConfigError(f"{source}: {exc}") from exc

    @classmethod
    def from_yaml(cls, path) -> TrainConfig:
        """Load a YAML file (``yaml.safe_load``); an empty file gives the defaults."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TrainConfigError(f"cannot read training config {path}: {exc}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TrainConfigError(f"training config {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    def with_overrides(self, **overrides) -> TrainConfig:
        """A copy with some fields replaced (None values are ignored), validated again."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in fields(self)})
        if unknown:
            raise TrainConfigError(f"unknown override(s) {unknown}")
        return replace(self, **given)

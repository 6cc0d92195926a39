"""``coop-robot train``: train the mirror policy network in the fast turn-taking environment.

Reads top to bottom: config, environments, model, collection, losses, evaluation, loop, logging,
command line.

**Collection.** Each iteration plays ``episodes_per_iteration`` sessions of
:class:`~coop_robot.envs.turn_env.TurnTakingEnv` (``physics=False``) cycling through the training
partner profiles. The robot is driven by :class:`ExploringMirrorPolicy`, a
:class:`~coop_robot.policy.mirror.MirrorPolicy` whose network inputs are recorded as the network
receives them: the windows, egocentric features and task context are built by MirrorPolicy's own
run-time code, so training sees exactly what the deployed policy sees. Exploration: when the
robot is home and its turn is due the decision is sampled from P(act) mixed with a coin flip
(``epsilon``); while reaching or acting it keeps "act"; otherwise "wait". Labels come from the
environment's truth at the tick the observation describes: the partner's true time to leave the
zone (while inside), the partner's phase and the robot's controller state mapped to the mirror
phases, and the reward of the tick that follows the decision.

**Reward (reinforcement).** ``+reward_turn`` per completed robot turn, ``-penalty_gap_per_s`` for
every second the robot's turn is owed (between the partner's exit and the robot's entry; its sum
is the gap), ``-penalty_overlap`` per overlapped turn, ``-penalty_contact`` per contact.

**Losses** on sequences sampled from the replay buffer (:mod:`coop_robot.training.replay`):

* exit forecast: Gaussian NLL of the partner's true time-to-exit (learning from observation:
  the network watches the partner's turn-taking through the shared latent);
* mirror alignment: supervised InfoNCE over self and other latents, positives = same action
  phase (reach, act, withdraw, idle) whoever made it, plus a phase classifier on each latent;
* act imitation (the partner's timing mapped into the robot's action, :func:`turn_taking_target`):
  at the robot's decision ticks and while an uncommitted reach can still be called off, the target
  is "act" once the partner's turn-ending exit is within ``robot_lead_s`` (or the turn is over)
  and "wait" before -- a false start's exit does not end the partner's turn; past the commit
  time and while acting the target is "act" (keep going);
* act reinforcement: advantage-weighted regression (AWR, Peng et al. 2019) on the sampled
  decisions, advantage = discounted return - value head; AWR is off-policy, so replayed
  decisions from older policies are used as they are;
* value: squared error to the discounted return.

**Evaluation** (iteration 0 = the untrained start): the plain greedy MirrorPolicy with the live
network on fixed seeds (``eval_seed``) for each of ``eval_partners``; the reactive baseline is
scored once on the same seeds. Curves go to ``learning_curves.csv`` and ``learning_curves.png``
in ``--out``; the checkpoint ``mirror.pt`` (written every iteration) carries the network config,
the ObservationSpec, the package version and, in ``extra``, the training config, seed, iteration
and the last row of metrics. Given the seed a run is deterministic: the CSV rows and the weights
repeat exactly (torch on one thread with deterministic algorithms, NumPy generators seeded from
the config seed, environment seeds derived from it).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from coop_robot.envs.perception_model import PerceptionModel
from coop_robot.envs.turn_env import POLICY_DT_S, TurnTakingEnv
from coop_robot.policy.base import Decision, Observation
from coop_robot.policy.mirror import MirrorPolicy
from coop_robot.policy.mirror_net import (
    MIRROR_PHASES,
    PARTNER_PHASE_TO_MIRROR,
    ROBOT_STATE_TO_MIRROR,
    MirrorNetConfig,
    MirrorPolicyNet,
    ObservationSpec,
    forecast_nll,
    save_checkpoint,
    supervised_info_nce,
)
from coop_robot.policy.reactive import ReactivePolicy
from coop_robot.policy.threads import configure_torch_threads
from coop_robot.training.config import TrainConfig, TrainConfigError
from coop_robot.training.replay import LOSS_MASK, SequenceReplay, split_episode

CHECKPOINT_NAME = "mirror.pt"
CURVES_CSV = "learning_curves.csv"
CURVES_PNG = "learning_curves.png"
CURVE_COLUMNS = (
    "iteration", "env_turns", "collect_return", "collect_median_gap_s", "collect_overlap_rate", "collect_contacts",
    "eval_turns", "eval_median_gap_s", "eval_overlap_rate", "eval_contacts", "eval_return",
    "loss_total", "loss_forecast", "loss_contrastive", "loss_phase", "loss_act_imitation", "loss_act_rl",
    "loss_value", "val_forecast_nll", "val_forecast_mae_s", "val_act_imitation", "replay_sequences",
)
LOSS_NAMES = ("forecast", "contrastive", "phase", "act_imitation", "act_rl", "value")
_PHASE_INDEX = {p: i for i, p in enumerate(MIRROR_PHASES)}


# ============================================================================ config / seeding
@contextmanager
def seeded_torch(cfg: TrainConfig):
    """Seed torch and size its thread pool for the duration: with ``deterministic`` one thread and
    deterministic kernels, else :func:`configure_torch_threads`'s count (1, or
    ``$COOP_ROBOT_TORCH_THREADS``). The caller's thread count and determinism setting are restored after."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(cfg.seed)
    configure_torch_threads(1 if cfg.deterministic else None)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def episode_seed(cfg: TrainConfig, iteration: int, episode: int) -> int:
    """Environment seed of one collected session, derived from the config seed."""
    return int(np.random.SeedSequence([cfg.seed, iteration, episode]).generate_state(1)[0])


# ============================================================================ environments
def make_envs(cfg: TrainConfig) -> dict[str, TurnTakingEnv]:
    """One kinematic environment per training / eval partner profile (reset with a seed per session)."""
    names = dict.fromkeys(tuple(cfg.partners) + tuple(cfg.eval_partners))
    return {name: TurnTakingEnv(name, seed=0, physics=False,
                                perception=PerceptionModel.fitted() if cfg.perception == "fitted"
                                else PerceptionModel.ideal())
            for name in names}


# ============================================================================ model
def make_model(cfg: TrainConfig) -> tuple[MirrorPolicyNet, MirrorNetConfig, ObservationSpec]:
    """The network for the run-time observation spec (MirrorPolicy expects the default spec)."""
    spec = ObservationSpec()
    net_cfg = MirrorNetConfig(window_steps=spec.window_steps, latent_dim=cfg.latent_dim,
                              conv_channels=cfg.conv_channels, hidden_dim=cfg.hidden_dim,
                              shared_encoder=cfg.shared_encoder)
    net_cfg.check_spec(spec)
    return MirrorPolicyNet(net_cfg), net_cfg, spec


class _RecordingNet:
    """Wraps the live network inside a MirrorPolicy and keeps a copy of each step's inputs."""

    def __init__(self, net: MirrorPolicyNet) -> None:
        self.net = net
        self.inputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def step(self, self_window, other_window, context, hidden=None):
        # MirrorPolicy hands over views of its rolling windows: copy before they roll on.
        self.inputs = (self_window[0].numpy().copy(), other_window[0].numpy().copy(), context[0].numpy().copy())
        return self.net.step(self_window, other_window, context, hidden)


class ExploringMirrorPolicy(MirrorPolicy):
    """MirrorPolicy that samples its act decision (for collection) and records the network inputs.

    At home with the robot's turn due: "act" with probability ``(1 - epsilon) P(act) + epsilon / 2``
    (``sampled_action`` holds the choice, None on ticks without a choice); reaching / acting: "act";
    otherwise "wait".
    """

    def __init__(self, checkpoint, net: MirrorPolicyNet, rng: np.random.Generator, epsilon: float) -> None:
        super().__init__(checkpoint, torch_threads=torch.get_num_threads())  # keep the training's count
        self.recorder = _RecordingNet(net)
        self.net = self.recorder
        self.rng = rng
        self.epsilon = float(epsilon)
        self.sampled_action: bool | None = None

    def step(self, obs: Observation) -> Decision:
        self.sampled_action = None
        return super().step(obs)

    def decide(self, obs: Observation) -> Decision:
        out = self._advance(obs)
        forecast = out["exit_forecast_s"] if obs.partner_in_zone else math.nan
        if obs.robot_state == "home" and self.robot_turn_due:
            p = (1.0 - self.epsilon) * out["p_act"] + 0.5 * self.epsilon
            self.sampled_action = bool(self.rng.random() < p)
            return Decision("act" if self.sampled_action else "wait", forecast)
        if obs.robot_state in ("reaching", "acting"):  # the deployed rule: keep going above the release threshold
            return Decision("act" if out["p_act"] >= self.release_threshold else "wait", forecast)
        return Decision("wait", forecast)


def greedy_policy(checkpoint, net: MirrorPolicyNet) -> MirrorPolicy:
    """The deployed MirrorPolicy decision rule, running the live network."""
    policy = MirrorPolicy(checkpoint, torch_threads=torch.get_num_threads())  # keep the training's count
    policy.net = net
    return policy


# ============================================================================ collection
@dataclass
class EpisodeStats:
    turns: list[dict]
    contacts: int
    undiscounted_return: float


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    out = np.zeros(len(rewards), dtype=np.float32)
    acc = 0.0
    for i in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[i]) + gamma * acc
        out[i] = acc
    return out


_FALSE_START_PHASES = ("false_start_reach", "false_start_return", "false_start_pause")


def turn_taking_target(t_s: np.ndarray, inside: np.ndarray, exits_s: np.ndarray, final: np.ndarray,
                       lead_s: float) -> np.ndarray:
    """Learning from observation: when a person in the robot's place would go.

    1 once the partner's turn is over (its last exit was a final one and it is outside) or while
    it is inside and its turn-ending exit is at most ``lead_s`` away; 0 otherwise -- in particular
    during a false start and the pause after it, whose exit does not end the partner's turn.
    ``exits_s`` is sorted; ``final[i]`` says whether exit ``i`` ended the partner's turn.
    """
    t_s = np.asarray(t_s, dtype=np.float64)
    inside = np.asarray(inside, dtype=bool)
    exits_s = np.asarray(exits_s, dtype=np.float64)
    final = np.asarray(final, dtype=bool)
    out = np.zeros(len(t_s), dtype=bool)
    last = np.searchsorted(exits_s, t_s, side="right") - 1        # the latest exit at or before t
    over = (last >= 0) & final[np.clip(last, 0, None)] if len(exits_s) else np.zeros(len(t_s), bool)
    out |= ~inside & over
    finals = exits_s[final]
    k = np.searchsorted(finals, t_s, side="left")                 # the next turn-ending exit
    has_final = inside & (k < len(finals))
    tte_final = np.full(len(t_s), np.inf)
    tte_final[has_final] = finals[k[has_final]] - t_s[has_final]
    out |= has_final & (tte_final <= lead_s)
    return out


def collect_episode(env: TurnTakingEnv, policy: ExploringMirrorPolicy, cfg: TrainConfig,
                    seed: int) -> tuple[dict[str, np.ndarray], EpisodeStats]:
    """Play one session; return per-tick arrays (network inputs, labels, actions, returns) and stats."""
    obs = env.reset(seed)
    policy.reset()
    # Truth at the time the observation describes (the env reports it after each step).
    partner_phase, robot_state = env.partner.phase, env.controller.state
    partner_in, t_obs = False, env.t_s
    rows: dict[str, list] = {k: [] for k in (
        "self_windows", "other_windows", "context", "phase_self", "phase_other", "partner_in", "t_s",
        "decision", "action", "keep_going", "uncommitted", "reward", "false_start")}
    exit_times: list[float] = []
    turns: list[dict] = []
    contacts = 0
    owed = False  # the robot's turn is owed: the partner has left, the robot has not entered yet
    while len(turns) < cfg.turns_per_episode and env.t_s < cfg.max_episode_s:
        decision = policy.step(obs)
        self_w, other_w, ctx = policy.recorder.inputs
        rows["self_windows"].append(self_w)
        rows["other_windows"].append(other_w)
        rows["context"].append(ctx)
        rows["phase_self"].append(_PHASE_INDEX[ROBOT_STATE_TO_MIRROR.get(robot_state, "idle")])
        rows["phase_other"].append(_PHASE_INDEX[PARTNER_PHASE_TO_MIRROR.get(partner_phase, "idle")])
        rows["partner_in"].append(partner_in)
        rows["t_s"].append(t_obs)
        rows["false_start"].append(partner_phase in _FALSE_START_PHASES)
        rows["decision"].append(policy.sampled_action is not None)
        # What was executed: the base class's liveness fallback may say "act" over a sampled "wait".
        rows["action"].append(float(decision.action == "act"))
        # Past the commit time (or acting) the only sensible target is to carry on; before it the
        # target is the timing one (a reach started too early is given up: the deployed rule).
        rows["keep_going"].append(obs.robot_state == "acting"
                                  or (obs.robot_state == "reaching" and env.controller.committed))
        rows["uncommitted"].append(obs.robot_state == "reaching" and not env.controller.committed)

        obs, info = env.step(decision.action)
        reward = 0.0
        for name, t_s in info["events"]:
            if name == "partner_exit":
                # A false start's exit is followed by the rest of the partner's turn: it is not
                # the end of the turn the robot should anticipate.
                final = info["partner_phase"] not in _FALSE_START_PHASES
                exit_times.append((t_s, final))
                owed = True
            elif name == "robot_enter":
                owed = False
            elif name == "contact_begin":
                contacts += 1
                reward -= cfg.penalty_contact
        if owed:
            reward -= cfg.penalty_gap_per_s * POLICY_DT_S
        for turn in info["turns"]:
            turns.append(turn)
            reward += turn_reward(turn, cfg)
        rows["reward"].append(reward)
        partner_phase, robot_state = info["partner_phase"], info["robot_state"]
        partner_in, t_obs = bool(info["partner_in_zone_true"]), info["t_s"]

    t = np.asarray(rows["t_s"], dtype=np.float64)
    inside = np.asarray(rows["partner_in"], dtype=bool)
    exit_times.sort()
    exits = np.asarray([e for e, _ in exit_times], dtype=np.float64)
    final = np.asarray([f for _, f in exit_times], dtype=bool)
    # Exit forecast target: the end of the current zone visit.
    j = np.searchsorted(exits, t, side="left")
    has_exit = inside & (j < len(exits))
    tte = np.zeros(len(t))
    tte[has_exit] = exits[j[has_exit]] - t[has_exit]
    act_now = turn_taking_target(t, inside, exits, final, cfg.robot_lead_s)
    decision = np.asarray(rows["decision"], dtype=bool)
    keep_going = np.asarray(rows["keep_going"], dtype=bool)
    uncommitted = np.asarray(rows["uncommitted"], dtype=bool)
    rewards = np.asarray(rows["reward"], dtype=np.float32)
    episode = {
        "self_windows": np.asarray(rows["self_windows"], dtype=np.float32),
        "other_windows": np.asarray(rows["other_windows"], dtype=np.float32),
        "context": np.asarray(rows["context"], dtype=np.float32),
        "exit_target_s": tte.astype(np.float32),
        "exit_mask": has_exit,
        "phase_self": np.asarray(rows["phase_self"], dtype=np.int64),
        "phase_other": np.asarray(rows["phase_other"], dtype=np.int64),
        "decision": decision,
        "action": np.asarray(rows["action"], dtype=np.float32),
        "imitation_target": np.where(keep_going, 1.0, act_now.astype(np.float32)).astype(np.float32),
        "imitation_mask": decision | keep_going | uncommitted,
        "imitation_weight": np.where(np.asarray(rows["false_start"], dtype=bool),
                                     cfg.weight_false_start_imitation, 1.0).astype(np.float32),
        "return": discounted_returns(rewards, cfg.gamma),
    }
    return episode, EpisodeStats(turns, contacts, float(rewards.sum()))


# ============================================================================ losses
def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def compute_losses(net: MirrorPolicyNet, batch: dict[str, np.ndarray], cfg: TrainConfig,
                   rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """All training losses on a replay batch (arrays ``(B, L, ...)``); ``total`` is their weighted sum."""
    b = {k: torch.from_numpy(v) for k, v in batch.items()}
    out, _ = net.forward_sequence(b["self_windows"], b["other_windows"], b["context"])
    m = b[LOSS_MASK]
    losses = {}
    losses["forecast"] = forecast_nll(out["exit_forecast_s"], out["exit_log_var"], b["exit_target_s"],
                                      b["exit_mask"] & m)

    # Mirror alignment on a random subset of the trained ticks: self and other latents stacked.
    ticks = np.flatnonzero(batch[LOSS_MASK].reshape(-1))
    pick = torch.from_numpy(rng.permutation(ticks)[: cfg.contrastive_samples])
    d = out["z_self"].shape[-1]
    z = torch.cat([out["z_self"].reshape(-1, d)[pick], out["z_other"].reshape(-1, d)[pick]])
    labels = torch.cat([b["phase_self"].reshape(-1)[pick], b["phase_other"].reshape(-1)[pick]])
    losses["contrastive"] = supervised_info_nce(z, labels, cfg.contrastive_temperature)
    n_ph = out["phase_logits_self"].shape[-1]
    ce_self = F.cross_entropy(out["phase_logits_self"].reshape(-1, n_ph), b["phase_self"].reshape(-1), reduction="none")
    ce_other = F.cross_entropy(out["phase_logits_other"].reshape(-1, n_ph), b["phase_other"].reshape(-1),
                               reduction="none")
    losses["phase"] = _masked_mean(ce_self + ce_other, m.reshape(-1))

    logit = out["act_logit"]
    bce_imitation = F.binary_cross_entropy_with_logits(logit, b["imitation_target"], reduction="none")
    wm = b["imitation_weight"] * (b["imitation_mask"] & m).to(bce_imitation.dtype)
    losses["act_imitation"] = (bce_imitation * wm).sum() / wm.sum().clamp_min(1.0)

    advantage = (b["return"] - out["value"]).detach()
    weight = torch.exp(advantage / cfg.awr_beta).clamp(max=cfg.awr_max_weight)
    bce_taken = F.binary_cross_entropy_with_logits(logit, b["action"], reduction="none")
    losses["act_rl"] = _masked_mean(weight * bce_taken, b["decision"] & m)
    losses["value"] = _masked_mean((out["value"] - b["return"]) ** 2, m)

    weights = {"forecast": cfg.weight_forecast, "contrastive": cfg.weight_contrastive, "phase": cfg.weight_phase,
               "act_imitation": cfg.weight_act_imitation, "act_rl": cfg.weight_act_rl, "value": cfg.weight_value}
    losses["total"] = sum(weights[k] * losses[k] for k in LOSS_NAMES)
    return losses


def validation_losses(net: MirrorPolicyNet, val: dict[str, np.ndarray], cfg: TrainConfig) -> dict[str, float]:
    """Forecast NLL / mean absolute error (s) and act-imitation loss on the fixed validation sequences."""
    with torch.no_grad():
        losses = compute_losses(net, val, cfg, np.random.default_rng(0))
        out, _ = net.forward_sequence(*(torch.from_numpy(val[k]) for k in ("self_windows", "other_windows", "context")))
    mask = val["exit_mask"] & val[LOSS_MASK]
    err = np.abs(out["exit_forecast_s"].numpy() - val["exit_target_s"])[mask]
    return {"val_forecast_nll": float(losses["forecast"]), "val_act_imitation": float(losses["act_imitation"]),
            "val_forecast_mae_s": float(err.mean()) if err.size else math.nan}


# ============================================================================ evaluation
def turn_return(turns: list[dict], contacts: int, cfg: TrainConfig) -> float:
    """The reward of a scored session from its turn records (the same terms as collection)."""
    total = -cfg.penalty_contact * contacts
    for t in turns:
        total += turn_reward(t, cfg) - cfg.penalty_gap_per_s * max(float(t["gap_s"]), 0.0)
    return float(total)


def turn_violated(turn: dict) -> bool:
    """An overlap, or an entry during the partner's unfinished turn (a false-start pause)."""
    return turn["overlap_s"] > 0.0 or turn["gap_s"] < 0.0 or bool(turn.get("unfinished_turn_entry", False))


def turn_reward(turn: dict, cfg: TrainConfig) -> float:
    """Reward of one scored robot turn (the gap is charged per tick while the turn is owed)."""
    reward = cfg.reward_turn
    if turn_violated(turn):
        reward -= cfg.penalty_overlap
    if turn.get("near_miss", False):
        reward -= cfg.penalty_near_miss
    return reward


def session_metrics(turns: list[dict], contacts: int) -> dict[str, float]:
    gaps = [float(t["gap_s"]) for t in turns if math.isfinite(float(t["gap_s"]))]
    return {
        "turns": len(turns),
        "median_gap_s": float(np.median(gaps)) if gaps else math.nan,
        "overlap_rate": (sum(1 for t in turns if turn_violated(t)) / len(turns))
        if turns else math.nan,
        "contacts": int(contacts),
    }


def evaluate(policy, envs: dict[str, TurnTakingEnv], cfg: TrainConfig) -> dict[str, float]:
    """Score ``policy`` on every eval partner at its fixed seed; pooled turn metrics and return."""
    turns, contacts, ret = [], 0, 0.0
    for k, name in enumerate(cfg.eval_partners):
        summary = envs[name].run(policy, cfg.eval_turns, seed=cfg.eval_seed + k, max_sim_s=cfg.max_episode_s)
        turns += summary["per_turn"]
        contacts += int(summary["contacts"])
        ret += turn_return(summary["per_turn"], int(summary["contacts"]), cfg)
    metrics = session_metrics(turns, contacts)
    metrics["return"] = ret / len(cfg.eval_partners)
    return metrics


# ============================================================================ loop
@dataclass
class TrainResult:
    rows: list[dict]
    net: MirrorPolicyNet
    checkpoint: Path
    baseline: dict[str, float]


def train(cfg: TrainConfig, out_dir, progress: bool = True) -> TrainResult:
    """Run the whole training; write curves and the checkpoint into ``out_dir``."""
    with seeded_torch(cfg):
        return _train(cfg, Path(out_dir), progress)


def _train(cfg: TrainConfig, out_dir: Path, progress: bool) -> TrainResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    envs = make_envs(cfg)
    net, net_cfg, spec = make_model(cfg)
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    replay = SequenceReplay(cfg.replay_capacity)
    sample_rng = np.random.default_rng([cfg.seed, 1])
    ckpt = out_dir / CHECKPOINT_NAME

    def save(iteration: int, row: dict) -> None:
        extra = {"train_config": cfg.to_dict(), "seed": cfg.seed, "iteration": iteration,
                 "metrics": {k: (float(v) if isinstance(v, float) else v) for k, v in row.items()},
                 "reactive_baseline": baseline}
        save_checkpoint(ckpt, net, net_cfg, spec, extra=extra)

    baseline = evaluate(ReactivePolicy(), envs, cfg)
    save(0, {})
    greedy = greedy_policy(ckpt, net)
    explorer = ExploringMirrorPolicy(ckpt, net, np.random.default_rng([cfg.seed, 2]), cfg.epsilon)
    # Fixed validation sessions (one per eval partner, played by the untrained exploring policy):
    # the same sequences score the forecast and act-imitation losses at every iteration.
    val_sequences = []
    for k, name in enumerate(cfg.eval_partners):
        with torch.inference_mode():
            episode, _ = collect_episode(envs[name], explorer, cfg, cfg.eval_seed + 1000 + k)
        val_sequences += split_episode(episode, cfg.sequence_length, cfg.burn_in)
    val = {key: np.stack([s[key] for s in val_sequences]) for key in val_sequences[0]}
    rows = [_row(0, None, evaluate(greedy, envs, cfg), None, 0)]
    rows[0].update(validation_losses(net, val, cfg))
    save(0, rows[0])
    if progress:
        print(f"reactive baseline: median gap {_fmt(baseline['median_gap_s'])} s, overlap rate "
              f"{_fmt(baseline['overlap_rate'])}, return {_fmt(baseline['return'])}", flush=True)
        _print_row(rows[0], cfg, 0.0, 0.0)
    wall0 = time.perf_counter()
    for it in range(1, cfg.iterations + 1):
        # --- collect
        net.eval()
        stats = []
        for e in range(cfg.episodes_per_iteration):
            env = envs[cfg.partners[e % len(cfg.partners)]]
            with torch.inference_mode():
                episode, st = collect_episode(env, explorer, cfg, episode_seed(cfg, it, e))
            replay.extend(split_episode(episode, cfg.sequence_length, cfg.burn_in))
            stats.append(st)
        # --- learn
        net.train()
        sums = {k: 0.0 for k in LOSS_NAMES + ("total",)}
        for _ in range(cfg.updates_per_iteration):
            batch = replay.sample(cfg.batch_size, sample_rng)
            losses = compute_losses(net, batch, cfg, sample_rng)
            optimiser.zero_grad()
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip_norm)
            optimiser.step()
            for k in sums:
                sums[k] += float(losses[k].detach()) / cfg.updates_per_iteration
        net.eval()
        # --- evaluate and log
        ev = evaluate(greedy, envs, cfg) if (it % cfg.eval_every == 0 or it == cfg.iterations) else None
        rows.append(_row(it, stats, ev, sums, len(replay)))
        rows[-1].update(validation_losses(net, val, cfg))
        save(it, rows[-1])
        write_curves_csv(out_dir / CURVES_CSV, rows)
        if progress:
            elapsed = time.perf_counter() - wall0
            _print_row(rows[-1], cfg, elapsed / it, elapsed / it * (cfg.iterations - it))
    write_curves_csv(out_dir / CURVES_CSV, rows)
    plot_curves(out_dir / CURVES_PNG, rows, baseline)
    return TrainResult(rows, net, ckpt, baseline)


# ============================================================================ logging
def _row(it: int, stats, ev, losses, replay_n) -> dict:
    nan = math.nan
    row = dict.fromkeys(CURVE_COLUMNS, nan)
    row["iteration"] = it
    row["replay_sequences"] = replay_n if replay_n is not None else 0
    if stats:
        turns = [t for s in stats for t in s.turns]
        m = session_metrics(turns, sum(s.contacts for s in stats))
        row.update(env_turns=m["turns"], collect_return=float(np.mean([s.undiscounted_return for s in stats])),
                   collect_median_gap_s=m["median_gap_s"], collect_overlap_rate=m["overlap_rate"],
                   collect_contacts=m["contacts"])
    else:
        row.update(env_turns=0, collect_contacts=0)
    if ev:
        row.update(eval_turns=ev["turns"], eval_median_gap_s=ev["median_gap_s"], eval_overlap_rate=ev["overlap_rate"],
                   eval_contacts=ev["contacts"], eval_return=ev["return"])
    if losses:
        row.update({f"loss_{k}": v for k, v in losses.items()})
    return row


def _fmt(v, digits: int = 3) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _print_row(row: dict, cfg: TrainConfig, s_per_it: float, eta_s: float) -> None:
    print(f"iter {row['iteration']:>3}/{cfg.iterations} | collected turns {row['env_turns']:>3} "
          f"return {_fmt(row['collect_return'], 2)} | greedy: turns {row['eval_turns']} gap "
          f"{_fmt(row['eval_median_gap_s'])} s overlap {_fmt(row['eval_overlap_rate'], 2)} return "
          f"{_fmt(row['eval_return'], 2)} | loss {_fmt(row['loss_total'])} forecast MAE "
          f"{_fmt(row['val_forecast_mae_s'], 2)} s | {s_per_it:.1f} s/it ETA "
          f"{eta_s / 60:.1f} min", flush=True)


def write_curves_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in row.items()})


def plot_curves(path: Path, rows: list[dict], baseline: dict) -> None:
    """Greedy gap / overlap / return per iteration (reactive baseline dashed) and the losses."""
    import matplotlib  # noqa: PLC0415 -- only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    it = [r["iteration"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = (("eval_median_gap_s", "median gap (s)", "median_gap_s"),
              ("eval_overlap_rate", "overlap rate", "overlap_rate"),
              ("eval_return", "return per session", "return"))
    for ax, (col, label, base_key) in zip(axes.flat, panels):
        ax.plot(it, [r[col] for r in rows], marker="o", label="mirror (greedy)")
        if col == "eval_return":
            ax.plot(it, [r["collect_return"] for r in rows], marker=".", alpha=0.6, label="mirror (exploring)")
        ax.axhline(baseline[base_key], color="grey", linestyle="--", label="reactive")
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    ax = axes.flat[3]
    for k in LOSS_NAMES:
        ax.plot(it, [r[f"loss_{k}"] for r in rows], label=k)
    ax.plot(it, [r["val_forecast_mae_s"] for r in rows], "k--", label="validation forecast MAE (s)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ============================================================================ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coop-robot train", description="Train the mirror policy network in the fast "
                                "turn-taking environment; writes mirror.pt, learning_curves.csv/.png to --out.")
    p.add_argument("--config", type=Path, default=None,
                   help="training config YAML (default: the package's config/training/train.yaml)")
    p.add_argument("--out", type=Path, default=Path("mirror_training"), help="output directory")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--iterations", type=int, default=None, help="override the config's iterations")
    p.add_argument("--quiet", action="store_true", help="no per-iteration progress lines")
    return p


def load_config(path: Path | None) -> TrainConfig:
    if path is None:
        from coop_robot.paths import config_path  # noqa: PLC0415

        try:
            path = config_path("training/train.yaml")
        except FileNotFoundError:
            return TrainConfig()
    return TrainConfig.from_yaml(path)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config).with_overrides(seed=args.seed, iterations=args.iterations)
    except TrainConfigError as exc:
        print(f"coop-robot train: {exc}", file=sys.stderr)
        return 2
    result = train(cfg, args.out, progress=not args.quiet)
    last = result.rows[-1]
    print(f"wrote {result.checkpoint}, {args.out / CURVES_CSV}, {args.out / CURVES_PNG}; greedy median gap "
          f"{_fmt(last['eval_median_gap_s'])} s (reactive {_fmt(result.baseline['median_gap_s'])} s), overlap rate "
          f"{_fmt(last['eval_overlap_rate'], 2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

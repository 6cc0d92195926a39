"""One training session of the mirror policy, and the jobs a training iteration hands out.

A *session* is one play of :class:`~coop_robot.envs.turn_env.TurnTakingEnv` (``physics=False``)
from a seeded reset. A training run needs three kinds (:class:`SessionJob`):

* ``explore``: a collected session (:func:`collect_episode`). The robot is driven by
  :class:`ExploringMirrorPolicy`, a :class:`~coop_robot.policy.mirror.MirrorPolicy` whose network
  inputs are recorded as the network receives them: the windows, egocentric features and task
  context are built by MirrorPolicy's own run-time code, so training sees exactly what the
  deployed policy sees. Exploration: when the robot is home and its turn is due the decision is
  sampled from P(act) mixed with a coin flip (``epsilon``); while reaching or acting it keeps
  "act"; otherwise "wait". Labels come from the environment's truth at the tick the observation
  describes: the partner's true time to leave the zone (while inside), the partner's phase and
  the robot's controller state mapped to the mirror phases, and the reward of the tick that
  follows the decision;
* ``greedy``: the deployed decision rule (plain MirrorPolicy) on an eval partner's fixed seed;
* ``reactive``: the reactive baseline on the same seeds.

In the sync task (``task: sync``) the environments run ``task="sync"``, an ``explore`` session is
:func:`coop_robot.training.sync_sessions.collect_sync_episode` (its reward at the job's
``window_s``, the curriculum's window of its iteration), ``greedy`` is the deployed
:class:`~coop_robot.policy.sync.SyncMirrorPolicy` and ``reactive`` the sync reactive control; a
result's ``turns`` are then its scored trials.

**Reward (reinforcement).** ``+reward_turn`` per completed robot turn, ``-penalty_gap_per_s`` for
every second the robot's turn is owed (between the exit that ends the partner's turn and the
robot's entry; its sum is the gap; a false start's exit owes nothing, the partner's turn goes on),
``-penalty_overlap`` per overlapped turn (an entry during the partner's unfinished turn included),
``-penalty_ssm_violation`` per SSM violation in a scored turn, ``-penalty_near_miss`` per near
miss, ``-penalty_contact`` per contact.

**Seeds.** Everything random in a session comes from its job: the environment seed
(:func:`episode_seed` of (config seed, iteration, episode) for collected sessions, ``eval_seed``
+ k for evaluation, ``eval_seed`` + 1000 + k for the validation sessions) and, for an exploring
session, its own exploration generator (:func:`exploration_seed` of the same triple; the
validation sessions are iteration 0). A session's result therefore depends only on its job and
the network weights it ran, not on which process ran it or what that process ran before, so a
:class:`SessionRunner` in this process and one in each of N Ray actors
(:mod:`coop_robot.training.collect`) give the same sessions bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from coop_robot.envs.perception_model import PerceptionModel
from coop_robot.envs.turn_env import POLICY_DT_S, TurnTakingEnv
from coop_robot.policy.base import Decision, Observation
from coop_robot.policy.mirror import MirrorPolicy
from coop_robot.policy.mirror_net import (
    MIRROR_PHASES,
    PARTNER_PHASE_TO_MIRROR,
    ROBOT_STATE_TO_MIRROR,
    MirrorPolicyNet,
    load_checkpoint,
)
from coop_robot.policy.reactive import ReactivePolicy
from coop_robot.training.config import TrainConfig

_PHASE_INDEX = {p: i for i, p in enumerate(MIRROR_PHASES)}


# ============================================================================ seeds
def episode_seed(cfg: TrainConfig, iteration: int, episode: int) -> int:
    """Environment seed of one collected session, derived from the config seed."""
    return int(np.random.SeedSequence([cfg.seed, iteration, episode]).generate_state(1)[0])



def partner_time_scale(cfg: TrainConfig, iteration: int, episode: int) -> float:
    """How many times slower (> 1) or quicker (< 1) the partner of one collected session is:
    log-uniform in [partner_time_scale_min, partner_time_scale_max], from its own stream of the
    config seed (1.0 when the range is [1, 1], the profiles as they are)."""
    lo, hi = cfg.partner_time_scale_min, cfg.partner_time_scale_max
    if lo == hi:
        return float(lo)
    u = np.random.default_rng(np.random.SeedSequence([cfg.seed, 3, iteration, episode])).random()
    return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))


def exploration_seed(cfg: TrainConfig, iteration: int, episode: int) -> int:
    """Seed of the exploration generator of one collected session (iteration 0: the validation
    sessions), derived from the config seed: its own stream, whatever ran before it."""
    return int(np.random.SeedSequence([cfg.seed, 2, iteration, episode]).generate_state(1)[0])


# ============================================================================ environments
def make_envs(cfg: TrainConfig) -> dict[str, TurnTakingEnv]:
    """One kinematic environment per training / eval partner profile (reset with a seed per session),
    of the config's task (sync: at the curriculum's final window; a session's reward uses its own)."""
    selection = tuple(cfg.select_partners) if cfg.select_every else ()
    names = dict.fromkeys(tuple(cfg.partners) + tuple(cfg.eval_partners) + selection)
    sync = {"task": "sync", "window_s": cfg.sync_window_end_s} if cfg.task == "sync" else {}
    return {name: TurnTakingEnv(name, seed=0, physics=False,
                                perception=PerceptionModel.fitted() if cfg.perception == "fitted"
                                else PerceptionModel.ideal(),
                                controller_params={"ssm_hand_motion": cfg.ssm_hand_motion}, **sync)
            for name in names}


# ============================================================================ policies
class _RecordingNet:
    """Wraps the live network inside a MirrorPolicy and keeps a copy of each step's inputs."""

    def __init__(self, net: MirrorPolicyNet) -> None:
        self.net = net
        self.inputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def step(self, self_window, other_window, context, hidden=None):
        # MirrorPolicy hands over views of its rolling windows: copy before they roll on.
        self.inputs = (self_window[0].numpy().copy(), other_window[0].numpy().copy(), context[0].numpy().copy())
        return self.net.step(self_window, other_window, context, hidden)


class Exploring:
    """Mixin for a mirror policy class of either task (put first in the bases): runs the live
    network through a recorder of its inputs, and samples the act choice where the deployed policy
    would threshold it (:meth:`sample_act`; ``sampled_action`` holds the choice, None on ticks
    without one)."""

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

    def record_tick(self, rows: Mapping[str, list], decision: Decision, robot_phase: str, partner_phase: str,
                    t_s: float) -> None:
        """Append this tick to ``rows``: the network's inputs, both phase labels (:data:`MIRROR_PHASES`
        names), its time, whether a choice was sampled and the action executed."""
        self_w, other_w, ctx = self.recorder.inputs
        rows["self_windows"].append(self_w)
        rows["other_windows"].append(other_w)
        rows["context"].append(ctx)
        rows["phase_self"].append(_PHASE_INDEX[robot_phase])
        rows["phase_other"].append(_PHASE_INDEX[partner_phase])
        rows["t_s"].append(t_s)
        rows["decision"].append(self.sampled_action is not None)
        # What was executed: the base class's liveness fallback may say "act" over a sampled "wait".
        rows["action"].append(float(decision.action == "act"))

    def sample_act(self, p_act: float) -> bool:
        """"act" with probability ``(1 - epsilon) P(act) + epsilon / 2``, kept in ``sampled_action``."""
        p = (1.0 - self.epsilon) * p_act + 0.5 * self.epsilon
        self.sampled_action = bool(self.rng.random() < p)
        return self.sampled_action


class ExploringMirrorPolicy(Exploring, MirrorPolicy):
    """MirrorPolicy that samples its act decision (for collection) and records the network inputs.

    At home with the robot's turn due: "act" sampled (:meth:`Exploring.sample_act`); reaching /
    acting: the deployed rule; otherwise "wait".
    """

    def decide(self, obs: Observation) -> Decision:
        out = self._advance(obs)
        forecast = out["exit_forecast_s"] if obs.partner_in_zone else math.nan
        if obs.robot_state == "home" and self.robot_turn_due:
            return Decision("act" if self.sample_act(out["p_act"]) else "wait", forecast)
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
        policy.record_tick(rows, decision, ROBOT_STATE_TO_MIRROR.get(robot_state, "idle"),
                           PARTNER_PHASE_TO_MIRROR.get(partner_phase, "idle"), t_obs)
        rows["partner_in"].append(partner_in)
        rows["false_start"].append(partner_phase in _FALSE_START_PHASES)
        # Past the commit time (or acting) the only sensible target is to carry on; before it the
        # target is the timing one (a reach started too early is given up: the deployed rule).
        rows["keep_going"].append(obs.robot_state == "acting"
                                  or (obs.robot_state == "reaching" and env.controller.committed))
        rows["uncommitted"].append(obs.robot_state == "reaching" and not env.controller.committed)

        obs, info = env.step(decision.action, decision.fallback)
        reward = 0.0
        for name, t_s in info["events"]:
            if name == "partner_exit":
                # A false start's exit is followed by the rest of the partner's turn: it is not
                # the end of the turn the robot should anticipate.
                final = info["partner_phase"] not in _FALSE_START_PHASES
                exit_times.append((t_s, final))
                owed = owed or final
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
    episode = recorded_episode(
        rows, cfg.gamma, exit_target_s=tte, exit_mask=has_exit,
        imitation_target=np.where(keep_going, 1.0, act_now.astype(np.float32)),
        imitation_mask=decision | keep_going | uncommitted,
        imitation_weight=np.where(np.asarray(rows["false_start"], dtype=bool), cfg.weight_false_start_imitation, 1.0))
    return episode, EpisodeStats(turns, contacts, float(rewards.sum()))



def recorded_episode(rows: Mapping, gamma: float, *, exit_target_s, exit_mask, imitation_target, imitation_mask,
                     imitation_weight) -> dict[str, np.ndarray]:
    """One collected episode as the replay buffer stores it: the recorded network inputs, phases,
    decisions and actions of ``rows`` (a collection policy's per-tick records, with ``reward``), the
    discounted return, and the task's targets (forecast and act imitation, with their masks)."""
    rewards = np.asarray(rows["reward"], dtype=np.float32)
    return {
        "self_windows": np.asarray(rows["self_windows"], dtype=np.float32),
        "other_windows": np.asarray(rows["other_windows"], dtype=np.float32),
        "context": np.asarray(rows["context"], dtype=np.float32),
        "exit_target_s": np.asarray(exit_target_s, dtype=np.float32),
        "exit_mask": np.asarray(exit_mask, dtype=bool),
        "phase_self": np.asarray(rows["phase_self"], dtype=np.int64),
        "phase_other": np.asarray(rows["phase_other"], dtype=np.int64),
        "decision": np.asarray(rows["decision"], dtype=bool),
        "action": np.asarray(rows["action"], dtype=np.float32),
        "imitation_target": np.asarray(imitation_target, dtype=np.float32),
        "imitation_mask": np.asarray(imitation_mask, dtype=bool),
        "imitation_weight": np.asarray(imitation_weight, dtype=np.float32),
        "return": discounted_returns(rewards, gamma),
    }


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
    reward -= cfg.penalty_ssm_violation * int(turn.get("ssm_violations", 0))
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


# ============================================================================ jobs
EXPLORE, GREEDY, REACTIVE = "explore", "greedy", "reactive"
SESSION_KINDS = (EXPLORE, GREEDY, REACTIVE)


@dataclass(frozen=True)
class SessionJob:
    """One session to play: what drives the robot (``kind``), against which partner, from which seeds.

    ``explore`` plays ``turns_per_episode`` robot turns with the exploring policy and its own
    generator (``exploration_seed``); ``greedy`` and ``reactive`` play ``eval_turns``.
    """

    kind: str
    partner: str
    env_seed: int
    exploration_seed: int | None = None
    #: the partner's durations times this (PartnerProfile.time_scaled); 1: the profile as it is
    time_scale: float = 1.0
    #: the sync task: the success window (s) the session's reward and success are scored at
    window_s: float | None = None
    #: robot turns of a ``greedy`` / ``reactive`` session (None: the config's ``eval_turns``)
    turns: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SESSION_KINDS:
            raise ValueError(f"session kind must be one of {SESSION_KINDS}, got {self.kind!r}")
        if (self.kind == EXPLORE) != (self.exploration_seed is not None):
            raise ValueError(f"an exploration seed is given for explore sessions only, got {self}")
        if self.turns is not None and (self.kind == EXPLORE or self.turns < 1):
            raise ValueError(f"a turn count (>= 1) is given for greedy and reactive sessions only, got {self}")

    def describe(self) -> str:
        pace = "" if self.time_scale == 1.0 else f" (durations x{self.time_scale:.2f})"
        window = "" if self.window_s is None else f", sync window {self.window_s:.3f} s"
        return f"{self.kind} session, partner {self.partner}{pace}, seed {self.env_seed}{window}"


def explore_jobs(cfg: TrainConfig, iteration: int) -> list[SessionJob]:
    """The sessions collected in ``iteration`` (>= 1), cycling through the training partners across
    iterations (session k of the run, counted from 0, plays ``partners[k % len(partners)]``), so a
    run with fewer sessions per iteration than partners still meets every partner."""
    first = (iteration - 1) * cfg.episodes_per_iteration
    window = cfg.sync_window_s(iteration) if cfg.task == "sync" else None
    return [SessionJob(EXPLORE, cfg.partners[(first + e) % len(cfg.partners)], episode_seed(cfg, iteration, e),
                       exploration_seed(cfg, iteration, e), partner_time_scale(cfg, iteration, e), window)
            for e in range(cfg.episodes_per_iteration)]


def _final_window(cfg: TrainConfig) -> float | None:
    return cfg.sync_window_end_s if cfg.task == "sync" else None


def validation_jobs(cfg: TrainConfig) -> list[SessionJob]:
    """The fixed validation sessions (one per eval partner, played by the untrained exploring policy)."""
    return [SessionJob(EXPLORE, name, cfg.eval_seed + 1000 + k, exploration_seed(cfg, 0, k),
                       window_s=_final_window(cfg))
            for k, name in enumerate(cfg.eval_partners)]


def selection_jobs(cfg: TrainConfig) -> list[SessionJob]:
    """The greedy validation sessions checkpoint selection scores a candidate's weights on: each
    ``select_partners`` entry at each of ``select_time_scales``, ``select_turns`` turns a session,
    at seeds ``select_seed + k`` (the same for every training seed; never a benchmark session:
    those run at seed 0)."""
    pairs = [(name, scale) for name in cfg.select_partners for scale in cfg.select_time_scales]
    return [SessionJob(GREEDY, name, cfg.select_seed + k, time_scale=scale, turns=cfg.select_turns)
            for k, (name, scale) in enumerate(pairs)]


def evaluation_jobs(cfg: TrainConfig, kind: str = GREEDY) -> list[SessionJob]:
    """One ``greedy`` (or ``reactive``) session per eval partner at its fixed seed (sync: scored at
    the curriculum's final window; the trials let the training score them at any other)."""
    return [SessionJob(kind, name, cfg.eval_seed + k, window_s=_final_window(cfg))
            for k, name in enumerate(cfg.eval_partners)]


def job_turns(job: SessionJob, cfg: TrainConfig) -> int:
    """The robot turns a ``greedy`` / ``reactive`` session plays: its own, else ``eval_turns``."""
    return cfg.eval_turns if job.turns is None else job.turns


@dataclass
class SessionResult:
    """What a session gave: its scored turns and contacts, the policy ticks it ran (``steps``), and
    for an ``explore`` session the per-tick arrays and stats of :func:`collect_episode`. In the
    sync task ``turns`` holds the scored trials (:meth:`~coop_robot.timing.sync.SyncTrial.as_dict`)."""

    job: SessionJob
    turns: list[dict]
    contacts: int
    steps: int
    episode: dict[str, np.ndarray] | None = None
    stats: EpisodeStats | None = None
    #: times the liveness bound made the robot act (greedy and reactive sessions)
    fallbacks: int = 0


def evaluation_metrics(results: list[SessionResult], cfg: TrainConfig) -> dict[str, float]:
    """Pooled turn metrics of the eval partners' sessions (in partner order) and their mean return."""
    turns, contacts, ret = [], 0, 0.0
    for r in results:
        turns += r.turns
        contacts += r.contacts
        ret += turn_return(r.turns, r.contacts, cfg)
    metrics = session_metrics(turns, contacts)
    metrics["return"] = ret / len(results)
    return metrics


# ============================================================================ runner
class SessionRunner:
    """Plays :class:`SessionJob` s with environments and a copy of the network of its own.

    Built from a checkpoint of the run (for the network's config and the policies' geometry);
    :meth:`load_weights` sets the weights the next sessions run. One lives in the training
    process (serial collection) or in each collection actor.
    """

    def __init__(self, cfg: TrainConfig, checkpoint: str | Path) -> None:
        self.cfg = cfg
        self.envs = make_envs(cfg)
        self.profiles = {name: env.profile for name, env in self.envs.items()}
        self.net, _ = load_checkpoint(checkpoint, task=cfg.task)
        if cfg.task == "sync":
            # The sync sessions' module builds on this one's helpers: imported here, not at the top.
            from coop_robot.policy.base import make_policy  # noqa: PLC0415
            from coop_robot.training.sync_sessions import ExploringSyncMirrorPolicy, greedy_sync_policy  # noqa: PLC0415

            self.explorer = ExploringSyncMirrorPolicy(checkpoint, self.net, np.random.default_rng(0), cfg.epsilon)
            self.greedy = greedy_sync_policy(checkpoint, self.net)
            self.reactive = make_policy("reactive", task="sync")
        else:
            self.explorer = ExploringMirrorPolicy(checkpoint, self.net, np.random.default_rng(0), cfg.epsilon)
            self.greedy = greedy_policy(checkpoint, self.net)
            self.reactive = ReactivePolicy()

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        self.net.load_state_dict(state_dict)
        self.net.eval()

    def run(self, job: SessionJob) -> SessionResult:
        env = self.envs[job.partner]
        env.profile = self.profiles[job.partner].time_scaled(job.time_scale)  # reset() builds the partner from it
        if job.kind == EXPLORE:
            self.explorer.rng = np.random.default_rng(job.exploration_seed)
            if self.cfg.task == "sync":
                from coop_robot.training.sync_sessions import collect_sync_episode  # noqa: PLC0415

                with torch.inference_mode():
                    episode, trials, contacts, ret = collect_sync_episode(env, self.explorer, self.cfg, job.env_seed,
                                                                          job.window_s)
                return SessionResult(job, trials, contacts, len(episode["return"]), episode,
                                     EpisodeStats(trials, contacts, ret))
            with torch.inference_mode():
                episode, stats = collect_episode(env, self.explorer, self.cfg, job.env_seed)
            return SessionResult(job, stats.turns, stats.contacts, len(episode["return"]), episode, stats)
        policy = self.greedy if job.kind == GREEDY else self.reactive
        turns = job_turns(job, self.cfg)
        summary = env.run(policy, turns, seed=job.env_seed,
                          max_sim_s=self.cfg.max_episode_s * max(1.0, turns / self.cfg.eval_turns))
        return SessionResult(job, summary["per_trial" if self.cfg.task == "sync" else "per_turn"],
                             int(summary["contacts"]),
                             int(round(summary["sim_time_s"] / POLICY_DT_S)),
                             fallbacks=int(summary.get("liveness_fallbacks", 0)))

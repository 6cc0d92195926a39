"""One training session of the mirror policy in the sync task (issue 14), its reward and its metrics.

The sync counterpart of :func:`coop_robot.training.sessions.collect_episode`: the same per-tick
arrays (so the replay buffer and the losses of :mod:`coop_robot.training.train` are shared), filled
from :class:`~coop_robot.envs.turn_env.TurnTakingEnv` with ``task="sync"`` and scored by the one
definition of a trial (:mod:`coop_robot.timing.sync`). The robot is driven by
:class:`ExploringSyncMirrorPolicy`, the deployed :class:`~coop_robot.policy.sync.SyncMirrorPolicy`
whose choice at home in an open trial is sampled from P(act) mixed with a coin flip (``epsilon``).

**Reward** of a trial (:func:`sync_trial_reward`) at the success window ``window_s`` of the
curriculum (the window changes only the scoring, not what the person does):
``+reward_sync_success`` when both arrived within the window, ``-penalty_sync_offset_per_s`` per
second of |arrival offset| (shaping toward arriving together), ``-penalty_sync_missed`` when either
did not arrive, ``-penalty_sync_ssm_violation`` per SSM violation in the trial's window, and
``-penalty_contact`` per contact (at the tick it begins). The outcome terms are paid at the tick the
outcome is known (both arrived), the others when the trial is scored.

**Labels.** Learning from observation: the partner's time to its arrival at its target (the
forecast head, while it is on its way after a cue); the act target is "act" once the robot's own
time from "act" to arrival (its median over the session) is at least the time left until the
partner arrives -- in hindsight, when a start would have brought both together; phases of both
agents mapped to the mirror phases.
"""

from __future__ import annotations

import math

import numpy as np

from coop_robot.envs.turn_env import POLICY_DT_S, TurnTakingEnv
from coop_robot.policy.base import Decision, Observation
from coop_robot.policy.mirror_net import (
    ROBOT_STATE_TO_MIRROR,
    SYNC_PARTNER_PHASE_TO_MIRROR,
    MirrorPolicyNet,
)
from coop_robot.policy.sync import SyncMirrorPolicy
from coop_robot.training.config import TrainConfig
from coop_robot.training.sessions import Exploring, recorded_episode


class ExploringSyncMirrorPolicy(Exploring, SyncMirrorPolicy):
    """SyncMirrorPolicy that samples its choice (for collection) and records the network inputs.

    At home in an open trial: "act" sampled (:meth:`~coop_robot.training.sessions.Exploring.sample_act`);
    otherwise as deployed."""

    def choose(self, obs: Observation, out: dict[str, float]) -> Decision:
        return Decision("act" if self.sample_act(out["p_act"]) else "wait")


def greedy_sync_policy(checkpoint, net: MirrorPolicyNet) -> SyncMirrorPolicy:
    """The deployed sync decision rule, running the live network."""
    import torch  # noqa: PLC0415

    policy = SyncMirrorPolicy(checkpoint, torch_threads=torch.get_num_threads())
    policy.net = net
    return policy


# ============================================================================ reward and metrics
def sync_trial_outcome_reward(offset_s: float | None, window_s: float, cfg: TrainConfig) -> float:
    """The outcome terms of a trial's reward: success at ``window_s``, |offset| shaping, or missed."""
    if offset_s is None:
        return -cfg.penalty_sync_missed
    offset = abs(float(offset_s))
    return (cfg.reward_sync_success if offset <= window_s else 0.0) - cfg.penalty_sync_offset_per_s * offset


def sync_trial_reward(trial: dict, window_s: float, cfg: TrainConfig) -> float:
    """The whole reward of one scored trial (a :meth:`SyncTrial.as_dict`) at ``window_s``, contact included."""
    return (sync_trial_outcome_reward(trial["offset_s"], window_s, cfg)
            - cfg.penalty_sync_ssm_violation * int(trial["ssm_violations"])
            - cfg.penalty_contact * int(bool(trial["contact"])))


def sync_return(trials: list[dict], window_s: float, cfg: TrainConfig) -> float:
    """The reward of a scored session from its trials (the same terms as collection)."""
    return float(sum(sync_trial_reward(t, window_s, cfg) for t in trials))


def sync_metrics(trials: list[dict], window_s: float) -> dict[str, float]:
    """Success rate at ``window_s``, offsets, who waited, missed trials and safety of scored trials."""
    offsets = [float(t["offset_s"]) for t in trials if t["offset_s"] is not None]
    n = len(trials)
    return {
        "trials": n,
        "success_rate": (sum(1 for o in offsets if abs(o) <= window_s) / n) if n else math.nan,
        "median_offset_s": float(np.median(offsets)) if offsets else math.nan,
        "mean_abs_offset_s": float(np.mean(np.abs(offsets))) if offsets else math.nan,
        "robot_waited_rate": (sum(1 for o in offsets if o < 0.0) / len(offsets)) if offsets else math.nan,
        "missed": n - len(offsets),
        "contacts": sum(1 for t in trials if t["contact"]),
        "ssm_violations": int(sum(int(t["ssm_violations"]) for t in trials)),
    }


# ============================================================================ labels
def sync_act_target(t_s: np.ndarray, cues_s: np.ndarray, partner_arrivals_s: np.ndarray,
                    act_to_arrival_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Learning from observation in the sync task: ``(target, known)`` per tick.

    The trial of a tick is the latest cue at or before it; the target is 1 once the partner's
    arrival in that trial is at most ``act_to_arrival_s`` away (a start now would arrive with it or
    after it) and 0 before; ``known`` is False where the tick precedes every cue or the partner did
    not arrive in its trial (``partner_arrivals_s`` NaN)."""
    t_s = np.asarray(t_s, dtype=np.float64)
    cues_s = np.asarray(cues_s, dtype=np.float64)
    arrivals = np.asarray(partner_arrivals_s, dtype=np.float64)
    k = np.searchsorted(cues_s, t_s, side="right") - 1
    known = k >= 0
    arrival = np.full(len(t_s), np.nan)
    arrival[known] = arrivals[k[known]]
    known &= np.isfinite(arrival)
    target = np.zeros(len(t_s), dtype=bool)
    target[known] = arrival[known] - t_s[known] <= act_to_arrival_s
    return target, known


# ============================================================================ collection
def collect_sync_episode(env: TurnTakingEnv, policy: ExploringSyncMirrorPolicy, cfg: TrainConfig, seed: int,
                         window_s: float) -> tuple[dict[str, np.ndarray], list[dict], int, float]:
    """Play one sync session of ``turns_per_episode`` trials with the reward at ``window_s``.

    Returns the per-tick arrays (the keys :func:`coop_robot.training.sessions.collect_episode`
    returns), the scored trials, the contacts and the undiscounted return."""
    if env.task != "sync":
        raise ValueError(f"a sync session needs a TurnTakingEnv with task='sync', got task={env.task!r}")
    obs = env.reset(seed)
    policy.reset()
    partner_phase, robot_state, t_obs = env.partner.phase, env.controller.state, env.t_s
    rows: dict[str, list] = {k: [] for k in (
        "self_windows", "other_windows", "context", "phase_self", "phase_other", "t_s", "decision", "action",
        "reward")}
    trials = env.sync_trials
    paid: set[int] = set()          # trials whose outcome reward is paid
    act_s: dict[int, float] = {}    # trial -> the first tick the robot said "act" at home in it
    contacts = 0
    while len(trials.trials) < cfg.turns_per_episode and env.t_s < cfg.max_episode_s:
        decision = policy.step(obs)
        policy.record_tick(rows, decision, ROBOT_STATE_TO_MIRROR.get(robot_state, "idle"),
                           SYNC_PARTNER_PHASE_TO_MIRROR.get(partner_phase, "idle"), t_obs)
        if trials.current is not None and decision.action == "act" and obs.robot_state == "home":
            act_s.setdefault(trials.current.trial, obs.t_s)
        done = len(trials.trials)
        obs, info = env.step(decision.action, decision.fallback)
        reward = 0.0
        for name, _ in info["events"]:
            if name == "contact_begin":
                contacts += 1
                reward -= cfg.penalty_contact
        current = trials.current
        if current is not None and current.trial not in paid and current.offset_s is not None:
            paid.add(current.trial)
            reward += sync_trial_outcome_reward(current.offset_s, window_s, cfg)
        for trial in trials.trials[done:]:
            if trial.trial not in paid:
                paid.add(trial.trial)
                reward += sync_trial_outcome_reward(trial.offset_s, window_s, cfg)
            reward -= cfg.penalty_sync_ssm_violation * trial.ssm_violations
        rows["reward"].append(reward)
        partner_phase, robot_state, t_obs = info["partner_phase"], info["robot_state"], info["t_s"]

    scored = [t.as_dict() for t in trials.trials[:cfg.turns_per_episode]]
    every = list(trials.trials) + ([trials.current] if trials.current is not None else [])
    cues = np.asarray([t.cue_s for t in every], dtype=np.float64)
    arrivals = np.asarray([np.nan if t.partner_arrival_s is None else t.partner_arrival_s for t in every])
    latencies = [t.robot_arrival_s - act_s[t.trial] for t in every
                 if t.trial in act_s and t.robot_arrival_s is not None]
    act_to_arrival_s = float(np.median(latencies)) if latencies else float(obs.robot_arrival_after_s)
    t = np.asarray(rows["t_s"], dtype=np.float64)
    target, known = sync_act_target(t, cues, arrivals, act_to_arrival_s)
    # Forecast target: the partner's time to its arrival, from its trial's cue until it arrives.
    k = np.searchsorted(cues, t, side="right") - 1
    arrival = np.full(len(t), np.nan)
    arrival[k >= 0] = arrivals[k[k >= 0]]
    on_way = np.isfinite(arrival) & (arrival > t)
    tta = np.where(on_way, arrival - t, 0.0)
    decision = np.asarray(rows["decision"], dtype=bool)
    rewards = np.asarray(rows["reward"], dtype=np.float32)
    episode = recorded_episode(rows, cfg.gamma, exit_target_s=tta, exit_mask=on_way, imitation_target=target,
                               imitation_mask=decision & known, imitation_weight=np.ones(len(t)))
    return episode, scored, contacts, float(rewards.sum())


def steps_of(summary: dict) -> int:
    """Policy ticks of a scored session (its simulated time on the 20 ms grid)."""
    return int(round(summary["sim_time_s"] / POLICY_DT_S))

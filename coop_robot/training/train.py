"""``coop-robot train``: train the mirror policy network in the fast environment, for turn-taking or the sync task.

Reads top to bottom: config, model, losses, loop, logging, sweep, command line. What one session
is (environments, the exploring and greedy policies, collection, reward) lives in
:mod:`coop_robot.training.sessions`; where the sessions run, in :mod:`coop_robot.training.collect`.

**Collection.** Each iteration plays ``episodes_per_iteration`` exploring sessions of
:class:`~coop_robot.envs.turn_env.TurnTakingEnv` (``physics=False``) cycling through the training
partner profiles, with a snapshot of the network as it was after the previous iteration's
updates. The sessions run in this process or on N Ray actors (``--ray-address`` /
``--workers``); they come back in session order and go through the replay buffer as before.

**Losses** on sequences sampled from the replay buffer (:mod:`coop_robot.training.replay`):

* exit forecast: Gaussian NLL of the partner's true time-to-exit (learning from observation:
  the network watches the partner's turn-taking through the shared latent);
* mirror alignment: supervised InfoNCE over self and other latents, positives = same action
  phase (reach, act, withdraw, idle) whoever made it, plus a phase classifier on each latent;
* act imitation (the partner's timing mapped into the robot's action,
  :func:`~coop_robot.training.sessions.turn_taking_target`): at the robot's decision ticks and
  while an uncommitted reach can still be called off, the target is "act" once the partner's
  turn-ending exit is within ``robot_lead_s`` (or the turn is over) and "wait" before -- a false
  start's exit does not end the partner's turn; past the commit time and while acting the target
  is "act" (keep going);
* act reinforcement: advantage-weighted regression (AWR, Peng et al. 2019) on the sampled
  decisions, advantage = discounted return - value head; AWR is off-policy, so replayed
  decisions from older policies are used as they are;
* value: squared error to the discounted return.

**Evaluation** (iteration 0 = the untrained start): the plain greedy MirrorPolicy with the live
network on fixed seeds (``eval_seed``) for each of ``eval_partners``; the reactive baseline is
scored once on the same seeds. The evaluation of iteration k and the collection of iteration
k + 1 run the same weights, so they go to the collector as one batch. Curves go to
``learning_curves.csv`` and ``learning_curves.png`` in ``--out``; the checkpoint ``mirror.pt``
(written every iteration) carries the network config, the ObservationSpec, the package version
and, in ``extra``, the training config, seed, iteration and the last row of metrics.

**Checkpoint selection** (``select_every`` > 0, config/training/train_select.yaml): from iteration
``select_from`` on, every ``select_every`` iterations and at the last, the weights also play greedy
validation sessions of the training partners (each of ``select_partners`` at each of
``select_time_scales``, ``select_turns`` turns a session, at seeds from ``select_seed``: the same for
every training seed; never a held-out partner or a benchmark session). The checkpoint is the
candidate with the fewest failures (contacts, SSM violations, overlapped or unfinished-turn
entries, unscored turns), then the highest return; ``selection.csv`` lists every candidate, and
the last iteration's weights, when not selected, stay beside it (``mirror_last.pt``). Selection
only reads the network: sessions, updates and curves are those of the run without it.

**Determinism.** Given the seed a run is deterministic, and the same serially and on Ray with any
number of workers: the CSV rows and the weights repeat exactly (torch on one thread with
deterministic algorithms in the learner and in every collection worker, each session seeded by
its own job, results combined in session order, the learner's NumPy generator seeded from the
config seed).

**Resuming.** After every iteration the run also writes ``resume_state.pt`` to ``--out``: the
weights, the optimiser's moments, the replay buffer, the learner's generator, the curves so far and
the fixed validation sequences. ``coop-robot train --resume`` (same config and seed) goes on after
the last finished iteration, with the same figures as a run that never stopped: the sessions to
learn from next are played again from the saved weights, each seeded by its job (at the cost of
one iteration's collection). A long run on a shared or preemptible machine loses at most one
iteration. Sweeps do not resume (their runs train in the workers' temporary directories).

**The sync task** (``task: sync``, config/training/sync.yaml, issue 14): the same network class,
losses, replay and loop; the sessions are sync sessions (:mod:`coop_robot.training.sync_sessions`:
their reward, labels and metrics) and the reward's success window follows the curriculum
(:meth:`TrainConfig.sync_window_s`, wide to narrow over the iterations). The curves carry the
window of each iteration and the greedy success rate at it and at the final window; the
checkpoint records its task, so the sync policy refuses a turn-taking one and vice versa.

**Sweeps.** ``--seeds S ...`` and/or several ``--config`` files train one run per (config, seed)
as Ray tasks (:func:`run_sweep`), each in ``OUT/<config stem>/seed<S>/``, with a summary
(``sweep_summary.json`` / ``.csv``). Each run of a sweep collects its sessions serially inside
its task: the sweep's parallelism is the runs, not nested actors.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from coop_robot.parallel import (
    JOB_PROGRESS_PERIOD_S,
    RayInfo,
    TaskError,
    add_ray_arguments,
    resolve_address,
    run_tasks,
)
from coop_robot.parallel import report as parallel_report
from coop_robot.policy.mirror_net import (
    MirrorNetConfig,
    MirrorPolicyNet,
    ObservationSpec,
    forecast_nll,
    save_checkpoint,
    supervised_info_nce,
)
from coop_robot.policy.threads import configure_torch_threads
from coop_robot.training.collect import CollectionError, InProcessCollector, RayCollector, open_collector
from coop_robot.training.config import TrainConfig
from coop_robot.training.replay import LOSS_MASK, SequenceReplay, split_episode
from coop_robot.training.sessions import (
    REACTIVE,
    SessionResult,
    evaluation_jobs,
    evaluation_metrics,
    explore_jobs,
    job_turns,
    selection_jobs,
    session_metrics,
    turn_return,
    turn_violated,
    validation_jobs,
)
from coop_robot.training.sync_sessions import sync_metrics, sync_return

#: Written to ``--out`` after every iteration; what ``--resume`` goes on from.
RESUME_STATE = "resume_state.pt"
CHECKPOINT_NAME = "mirror.pt"
SYNC_CHECKPOINT_NAME = "mirror_sync.pt"
CURVES_CSV = "learning_curves.csv"
CURVES_PNG = "learning_curves.png"
#: Checkpoint selection (``select_every``): each candidate's validation figures, and the weights of
#: the last iteration when another one was selected.
SELECTION_CSV = "selection.csv"
SELECTION_COLUMNS = ("iteration", "turns", "failures", "contacts", "ssm_violations", "violated_turns",
                     "unscored_turns", "fallbacks", "median_gap_s", "p90_gap_s", "return", "selected")
CURVE_COLUMNS = (
    "iteration", "env_turns", "collect_return", "collect_median_gap_s", "collect_overlap_rate", "collect_contacts",
    "eval_turns", "eval_median_gap_s", "eval_overlap_rate", "eval_contacts", "eval_return",
    "loss_total", "loss_forecast", "loss_contrastive", "loss_phase", "loss_act_imitation", "loss_act_rl",
    "loss_value", "val_forecast_nll", "val_forecast_mae_s", "val_act_imitation", "replay_sequences",
)
LOSS_NAMES = ("forecast", "contrastive", "phase", "act_imitation", "act_rl", "value")
#: The curves of a sync run: the curriculum's window of each iteration, the collected sessions
#: scored at it, the greedy evaluation at it and at the final window.
SYNC_CURVE_COLUMNS = (
    "iteration", "window_s", "env_trials", "collect_return", "collect_success_rate", "collect_median_offset_s",
    "collect_contacts", "eval_trials", "eval_success_rate", "eval_success_rate_final_window", "eval_median_offset_s",
    "eval_mean_abs_offset_s", "eval_robot_waited_rate", "eval_missed", "eval_contacts", "eval_ssm_violations",
    "eval_return", *(f"loss_{k}" for k in ("total",) + LOSS_NAMES), "val_forecast_nll", "val_forecast_mae_s",
    "val_act_imitation", "replay_sequences",
)


def checkpoint_name(cfg: TrainConfig) -> str:
    """The checkpoint's file name in ``--out``: the shipped file's name for the config's task."""
    return SYNC_CHECKPOINT_NAME if cfg.task == "sync" else CHECKPOINT_NAME


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


# ============================================================================ model
def make_model(cfg: TrainConfig) -> tuple[MirrorPolicyNet, MirrorNetConfig, ObservationSpec]:
    """The network for the run-time observation spec of the config's task (MirrorPolicy and
    SyncMirrorPolicy expect their task's default spec)."""
    spec = ObservationSpec.for_task(cfg.task)
    net_cfg = MirrorNetConfig(window_steps=spec.window_steps, context_dim=len(spec.context_fields),
                              latent_dim=cfg.latent_dim,
                              conv_channels=cfg.conv_channels, hidden_dim=cfg.hidden_dim,
                              shared_encoder=cfg.shared_encoder)
    net_cfg.check_spec(spec)
    return MirrorPolicyNet(net_cfg), net_cfg, spec


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



# ============================================================================ loop
@dataclass
class TrainResult:
    rows: list[dict]
    net: MirrorPolicyNet
    checkpoint: Path
    baseline: dict[str, float]
    env_steps: int = 0          # policy ticks (20 ms) played in all sessions of the run
    wall_s: float = 0.0
    #: the iteration whose weights are the checkpoint (checkpoint selection; else the last)
    selected_iteration: int | None = None


class ResumeError(ValueError):
    """``--resume`` cannot go on: no state, an unreadable one, another config, or a finished run."""


def train(cfg: TrainConfig, out_dir, progress: bool = True,
          collector: InProcessCollector | RayCollector | None = None, resume: bool = False,
          report: Callable[[str], None] | None = None) -> TrainResult:
    """Run the whole training; write curves and the checkpoint into ``out_dir``.

    ``collector`` plays the sessions (default: :class:`~coop_robot.training.collect.InProcessCollector`;
    :func:`~coop_robot.training.collect.open_collector` gives the one ``--ray-address`` asks for);
    it is started for this run and stopped after it. The figures are the same whichever plays them.
    With ``resume``, go on from ``out_dir``'s :data:`RESUME_STATE` (:class:`ResumeError` if it
    cannot), to the same figures as a run that never stopped. ``report`` gets a line after each
    iteration (the iteration, its greedy figures, the ETA): a sweep's runs say how far they are."""
    out_dir = Path(out_dir)
    state = load_resume_state(out_dir, cfg) if resume else None  # refused before anything starts
    collector = collector if collector is not None else InProcessCollector()
    with seeded_torch(cfg):
        try:
            return _train(cfg, out_dir, progress, collector, state, report)
        finally:
            collector.stop()


def _json_value(value):
    """JSON for the NumPy scalars a curve row may hold."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_resume_state(out_dir: Path, iteration: int, cfg: TrainConfig, net: MirrorPolicyNet, optimiser,
                      replay: SequenceReplay, sample_rng: np.random.Generator, rows: list[dict],
                      baseline: dict, val: dict[str, np.ndarray], selection: _Selection | None = None) -> None:
    """Write what :func:`train` needs to go on after ``iteration`` (atomically: a run killed while
    writing keeps the previous iteration's state). Tensors, ints and strings only, so it loads
    with ``weights_only=True``."""
    state = {"format": 1, "iteration": iteration, "train_config": json.dumps(cfg.to_dict()),
             "model": net.state_dict(), "optimiser": optimiser.state_dict(), "torch_rng": torch.get_rng_state(),
             "sample_rng": json.dumps(sample_rng.bit_generator.state),
             "rows": json.dumps(rows, default=_json_value), "baseline": json.dumps(baseline, default=_json_value),
             "val": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in val.items()},
             "replay": replay.state()}
    if selection is not None and cfg.select_every:
        state["selection"] = selection.state()
    path = out_dir / RESUME_STATE
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_resume_state(out_dir: Path, cfg: TrainConfig, mmap: bool = False) -> dict:
    """The state :func:`save_resume_state` wrote in ``out_dir``, checked against ``cfg``
    (:class:`ResumeError` naming what is wrong). With ``mmap`` the file is mapped, not read: its
    tensors (the replay buffer, tens of MB) are only touched if used, so a check costs little."""
    path = Path(out_dir) / RESUME_STATE
    if not path.is_file():
        raise ResumeError(f"--resume: no {RESUME_STATE} in {out_dir}: nothing to resume there (a run writes it "
                          "after each iteration; give the --out of the run to continue)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        if not isinstance(state, dict) or state.get("format") != 1:
            raise ValueError("not a resume state of this version")
        saved = json.loads(state["train_config"])
        iteration = int(state["iteration"])
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise ResumeError(f"--resume: {path} cannot be read ({type(exc).__name__}: {exc}); "
                          "nothing was changed") from None
    current = json.loads(json.dumps(cfg.to_dict()))   # as saved: tuples are lists there
    differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differ:
        detail = ", ".join(f"{k}: {saved.get(k)!r} there, {current.get(k)!r} now" for k in differ)
        raise ResumeError(f"--resume: the run in {out_dir} was trained with another config ({detail}); "
                          "resume it with its own config and seed")
    if iteration >= cfg.iterations:
        raise ResumeError(f"--resume: the run in {out_dir} has finished all {cfg.iterations} iterations")
    return state


def _train(cfg: TrainConfig, out_dir: Path, progress: bool, collector, state: dict | None,
           report: Callable[[str], None] | None = None) -> TrainResult:
    wall0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    net, net_cfg, spec = make_model(cfg)
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    replay = SequenceReplay(cfg.replay_capacity)
    sample_rng = np.random.default_rng([cfg.seed, 1])
    ckpt = out_dir / checkpoint_name(cfg)
    baseline: dict[str, float] = {}
    done = 0 if state is None else int(state["iteration"])
    speed = _Speed(cfg.iterations - done, report)

    def save(iteration: int, row: dict, selected: dict | None = None) -> None:
        extra = {"train_config": cfg.to_dict(), "seed": cfg.seed, "iteration": iteration,
                 "metrics": {k: (float(v) if isinstance(v, float) else v) for k, v in row.items()},
                 "reactive_baseline": baseline}
        if selected is not None:   # checkpoint selection: the chosen candidate's validation figures
            extra["selection"] = selected
        save_checkpoint(ckpt, net, net_cfg, spec, extra=extra, task=cfg.task)

    def play(jobs) -> list[SessionResult]:
        t0 = time.perf_counter()
        results = collector.run(net.state_dict(), jobs) if jobs else []
        speed.played(sum(r.steps for r in results), time.perf_counter() - t0)
        return results

    if state is not None:
        return _resumed(cfg, out_dir, progress, collector, state, net, optimiser, sample_rng, baseline, save, play,
                        speed, wall0)
    save(0, {})    # the collector builds its policies from this file
    collector.start(cfg, ckpt)
    if progress:
        print(f"collection: {collector.describe()}", flush=True)
    net.eval()
    # One batch on the untrained network: the reactive baseline, the fixed validation sessions
    # (one per eval partner, played by the untrained exploring policy: the same sequences score
    # the forecast and act-imitation losses at every iteration), the greedy evaluation of
    # iteration 0 and the sessions collected in iteration 1.
    first = [evaluation_jobs(cfg, REACTIVE), validation_jobs(cfg), evaluation_jobs(cfg), explore_jobs(cfg, 1)]
    reactive, validation, greedy, collected = _split(play([j for part in first for j in part]), first)
    baseline.update(_evaluate(reactive, cfg, 0))   # in place: save() reads this dict
    val_sequences = [s for r in validation for s in split_episode(r.episode, cfg.sequence_length, cfg.burn_in)]
    val = {key: np.stack([s[key] for s in val_sequences]) for key in val_sequences[0]}
    rows = [_row(0, None, _evaluate(greedy, cfg, 0), None, 0, cfg)]
    rows[0].update(validation_losses(net, val, cfg))
    save(0, rows[0])
    if progress:
        if cfg.task == "sync":
            print(f"reactive baseline (window {cfg.sync_window_end_s:g} s): success rate "
                  f"{_fmt(baseline['success_rate_final_window'], 2)}, median offset "
                  f"{_fmt(baseline['median_offset_s'])} s", flush=True)
        else:
            print(f"reactive baseline: median gap {_fmt(baseline['median_gap_s'])} s, overlap rate "
                  f"{_fmt(baseline['overlap_rate'])}, return {_fmt(baseline['return'])}", flush=True)
        _print_row(rows[0], cfg, speed)
    return _iterate(cfg, out_dir, progress, 1, collected, rows, baseline, val, net, optimiser, replay, sample_rng,
                    save, play, speed, wall0, _Selection(cfg))


def _resumed(cfg, out_dir, progress, collector, state, net, optimiser, sample_rng, baseline, save, play, speed,
             wall0) -> TrainResult:
    """Restore what ``state`` saved after its iteration k, play iteration k + 1's sessions again
    (the saved weights, each session seeded by its job: the same sessions), and go on."""
    done = int(state["iteration"])
    try:
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        sample_rng.bit_generator.state = json.loads(state["sample_rng"])
        replay = SequenceReplay.from_state(state["replay"])
        rows = json.loads(state["rows"])
        baseline.update(json.loads(state["baseline"]))   # in place: save() reads this dict
        val = {k: v.numpy().copy() for k, v in state["val"].items()}
        selection = _Selection(cfg)
        if cfg.select_every:
            selection.restore(state["selection"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ResumeError(f"--resume: {out_dir / RESUME_STATE} does not fit this network or run "
                          f"({type(exc).__name__}: {exc}); nothing was changed") from None
    save(done, rows[-1])   # the collector builds its policies from this file
    collector.start(cfg, out_dir / checkpoint_name(cfg))
    if progress:
        print(f"resuming {out_dir} after iteration {done} of {cfg.iterations}; "
              f"collection: {collector.describe()}", flush=True)
    net.eval()
    collected = play(explore_jobs(cfg, done + 1))
    torch.set_rng_state(state["torch_rng"])
    return _iterate(cfg, out_dir, progress, done + 1, collected, rows, baseline, val, net, optimiser, replay,
                    sample_rng, save, play, speed, wall0, selection)


def _iterate(cfg, out_dir, progress, first_it, collected, rows, baseline, val, net, optimiser, replay, sample_rng,
             save, play, speed, wall0, selection: _Selection) -> TrainResult:
    """Iterations ``first_it`` .. ``cfg.iterations``: learn from ``collected``, evaluate (and score
    the weights for checkpoint selection), collect the next; at the end, the selected weights are
    the checkpoint."""
    ckpt = out_dir / checkpoint_name(cfg)
    speed.start()
    for it in range(first_it, cfg.iterations + 1):
        # --- learn from the sessions collected for this iteration
        for r in collected:
            replay.extend(split_episode(r.episode, cfg.sequence_length, cfg.burn_in))
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
        # --- evaluate these weights and collect the next iteration's sessions with them
        batch_jobs = [evaluation_jobs(cfg) if (it % cfg.eval_every == 0 or it == cfg.iterations) else [],
                      selection_jobs(cfg) if selection.due(it) else [],
                      explore_jobs(cfg, it + 1) if it < cfg.iterations else []]
        stats = [r.stats for r in collected]
        greedy, validated, collected = _split(play([j for part in batch_jobs for j in part]), batch_jobs)
        scored = selection.score(it, validated, net) if validated else None
        if scored is not None:
            selection.write(out_dir / SELECTION_CSV)
        # --- log
        rows.append(_row(it, stats, _evaluate(greedy, cfg, it) if greedy else None, sums, len(replay), cfg))
        rows[-1].update(validation_losses(net, val, cfg))
        save(it, rows[-1])
        write_curves_csv(out_dir / CURVES_CSV, rows)
        save_resume_state(out_dir, it, cfg, net, optimiser, replay, sample_rng, rows, baseline, val, selection)
        speed.iteration_done()
        if progress:
            _print_row(rows[-1], cfg, speed)
            if scored is not None:
                print(_selection_line(scored, selection.best), flush=True)
        if speed.report is not None:
            speed.report(_progress_line(rows[-1], cfg, speed))
    write_curves_csv(out_dir / CURVES_CSV, rows)
    (plot_sync_curves if cfg.task == "sync" else plot_curves)(out_dir / CURVES_PNG, rows, baseline)
    if selection.rows:
        _ship_selected(cfg, out_dir, progress, net, rows, selection, save)
    return TrainResult(rows, net, ckpt, baseline, speed.steps, time.perf_counter() - wall0,
                       selection.best["iteration"] if selection.rows else cfg.iterations)


def selection_figures(results: list[SessionResult], cfg: TrainConfig) -> dict:
    """A candidate's figures on the validation sessions of checkpoint selection, pooled over them.

    ``failures`` counts what no gap can buy back: contacts, SSM violations, turns that overlapped
    the partner's or entered its unfinished turn, and turns the sessions did not score (a stall).
    ``return`` is the mean session return of the training reward (gap, near misses and the rest),
    so a network that leaves turns to the liveness bound scores low on it."""
    turns = [t for r in results for t in r.turns]
    pooled = session_metrics(turns, sum(r.contacts for r in results))
    contacts = pooled["contacts"]
    ssm = sum(int(t.get("ssm_violations", 0)) for t in turns)
    violated = sum(1 for t in turns if turn_violated(t))
    unscored = max(sum(job_turns(r.job, cfg) for r in results) - len(turns), 0)
    gaps = [float(t["gap_s"]) for t in turns if math.isfinite(float(t["gap_s"]))]
    return {"turns": pooled["turns"], "failures": contacts + ssm + violated + unscored, "contacts": contacts,
            "ssm_violations": ssm, "violated_turns": violated, "unscored_turns": unscored,
            "fallbacks": sum(r.fallbacks for r in results), "median_gap_s": pooled["median_gap_s"],
            "p90_gap_s": float(np.percentile(gaps, 90)) if gaps else math.nan,
            "return": float(np.mean([turn_return(r.turns, r.contacts, cfg) for r in results]))}


def _selection_key(figures: dict) -> tuple[int, float]:
    """Smaller is better: fewer failures first, then the higher return."""
    return figures["failures"], -figures["return"]


class _Selection:
    """Checkpoint selection: which iterations are candidates, their figures, the best weights so far.

    A later candidate replaces the best only when it is strictly better, so of equals the earliest
    is kept. Selection only reads the network: the run's sessions, updates and curves are those of
    the same run without it."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.rows: list[dict] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    def due(self, it: int) -> bool:
        cfg = self.cfg
        return bool(cfg.select_every) and it >= cfg.select_from and \
            ((it - cfg.select_from) % cfg.select_every == 0 or it == cfg.iterations)

    @property
    def best(self) -> dict | None:
        return min(self.rows, key=_selection_key) if self.rows else None

    def score(self, it: int, results: list[SessionResult], net: MirrorPolicyNet) -> dict:
        row = {"iteration": it, **selection_figures(results, self.cfg)}
        best = self.best
        if best is None or _selection_key(row) < _selection_key(best):
            self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.rows.append(row)
        return row

    def write(self, path: Path, final: bool = False) -> None:
        best = self.best
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=SELECTION_COLUMNS, lineterminator="\n")
            w.writeheader()
            for row in self.rows:
                w.writerow({**row, "selected": int(final and row is best)})

    def state(self) -> dict:
        return {"rows": json.dumps(self.rows), "best": self.best_state if self.best_state is not None else {}}

    def restore(self, state: dict) -> None:
        self.rows = json.loads(state["rows"])
        self.best_state = dict(state["best"]) or None


def _selection_line(row: dict, best: dict) -> str:
    return (f"selection: iteration {row['iteration']}: failures {row['failures']}, return {_fmt(row['return'], 2)}, "
            f"median / p90 gap {_fmt(row['median_gap_s'])} / {_fmt(row['p90_gap_s'])} s, fallbacks "
            f"{row['fallbacks']} (best so far: iteration {best['iteration']})")


def _ship_selected(cfg, out_dir: Path, progress: bool, net: MirrorPolicyNet, rows: list[dict], selection: _Selection,
                   save) -> None:
    """Make the selected candidate the run's checkpoint; the last iteration's weights, when not
    selected, stay beside it (``<name>_last.pt``). ``net`` ends with the selected weights."""
    best = selection.best
    selection.write(out_dir / SELECTION_CSV, final=True)
    if best["iteration"] != cfg.iterations:
        ckpt = out_dir / checkpoint_name(cfg)
        os.replace(ckpt, ckpt.with_name(f"{ckpt.stem}_last{ckpt.suffix}"))
        net.load_state_dict(selection.best_state)
    save(best["iteration"], rows[best["iteration"]], selected=best)
    if progress:
        print(f"selected the weights of iteration {best['iteration']} of {cfg.iterations} "
              f"({out_dir / SELECTION_CSV})", flush=True)


def _split(results: list, parts: list[list]) -> list[list]:
    """``results`` cut into consecutive pieces as long as ``parts``."""
    out, i = [], 0
    for part in parts:
        out.append(results[i:i + len(part)])
        i += len(part)
    return out


class _Speed:
    """Env steps per second of the last batch of sessions, seconds per iteration and the ETA."""

    def __init__(self, iterations: int, report: Callable[[str], None] | None = None) -> None:
        self.iterations = iterations
        self.report = report   # gets a line after each iteration (train's ``report``)
        self.steps = 0
        self.batch_steps_per_s = math.nan
        self.done = 0
        self.t0 = time.perf_counter()

    def played(self, steps: int, wall_s: float) -> None:
        self.steps += steps
        if steps:
            self.batch_steps_per_s = steps / max(wall_s, 1e-9)

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def iteration_done(self) -> None:
        self.done += 1

    @property
    def s_per_iteration(self) -> float:
        return (time.perf_counter() - self.t0) / self.done if self.done else math.nan

    @property
    def eta_s(self) -> float:
        return self.s_per_iteration * (self.iterations - self.done) if self.done else math.nan


# ============================================================================ logging
def _evaluate(results: list[SessionResult], cfg: TrainConfig, iteration: int) -> dict[str, float]:
    """Metrics of the greedy (or reactive) sessions of ``iteration``: turn-taking's
    :func:`evaluation_metrics`; in the sync task :func:`sync_metrics` at the iteration's window
    (also ``success_rate_final_window``) and the mean return at that window."""
    if cfg.task != "sync":
        return evaluation_metrics(results, cfg)
    window = cfg.sync_window_s(iteration)
    trials = [t for r in results for t in r.turns]
    metrics = sync_metrics(trials, window)
    metrics["success_rate_final_window"] = sync_metrics(trials, cfg.sync_window_end_s)["success_rate"]
    metrics["return"] = float(np.mean([sync_return(r.turns, window, cfg) for r in results]))
    return metrics


def _row(it: int, stats, ev, losses, replay_n, cfg: TrainConfig) -> dict:
    if cfg.task == "sync":
        return _sync_row(it, stats, ev, losses, replay_n, cfg)
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


def _sync_row(it: int, stats, ev, losses, replay_n, cfg: TrainConfig) -> dict:
    row = dict.fromkeys(SYNC_CURVE_COLUMNS, math.nan)
    window = cfg.sync_window_s(it)
    row.update(iteration=it, window_s=window, replay_sequences=replay_n if replay_n is not None else 0,
               env_trials=0, collect_contacts=0)
    if stats:
        trials = [t for s in stats for t in s.turns]
        m = sync_metrics(trials, window)
        row.update(env_trials=m["trials"], collect_return=float(np.mean([s.undiscounted_return for s in stats])),
                   collect_success_rate=m["success_rate"], collect_median_offset_s=m["median_offset_s"],
                   collect_contacts=sum(s.contacts for s in stats))
    if ev:
        row.update(eval_trials=ev["trials"], eval_success_rate=ev["success_rate"],
                   eval_success_rate_final_window=ev["success_rate_final_window"],
                   eval_median_offset_s=ev["median_offset_s"], eval_mean_abs_offset_s=ev["mean_abs_offset_s"],
                   eval_robot_waited_rate=ev["robot_waited_rate"], eval_missed=ev["missed"],
                   eval_contacts=ev["contacts"], eval_ssm_violations=ev["ssm_violations"], eval_return=ev["return"])
    if losses:
        row.update({f"loss_{k}": v for k, v in losses.items()})
    return row


def _fmt(v, digits: int = 3) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _print_row(row: dict, cfg: TrainConfig, speed: _Speed) -> None:
    eta = "n/a" if not math.isfinite(speed.eta_s) else f"{speed.eta_s / 60:.1f} min"
    if cfg.task == "sync":
        print(f"iter {row['iteration']:>3}/{cfg.iterations} | window {row['window_s']:.3f} s | collected trials "
              f"{row['env_trials']:>3} success {_fmt(row['collect_success_rate'], 2)} return "
              f"{_fmt(row['collect_return'], 2)} | greedy: trials {row['eval_trials']} success "
              f"{_fmt(row['eval_success_rate'], 2)} (at {cfg.sync_window_end_s:g} s: "
              f"{_fmt(row['eval_success_rate_final_window'], 2)}) offset {_fmt(row['eval_median_offset_s'])} s "
              f"| loss {_fmt(row['loss_total'])} arrival forecast MAE {_fmt(row['val_forecast_mae_s'], 2)} s | "
              f"{speed.batch_steps_per_s:.0f} env steps/s, {_fmt(speed.s_per_iteration, 1)} s/it, ETA {eta}",
              flush=True)
        return
    print(f"iter {row['iteration']:>3}/{cfg.iterations} | collected turns {row['env_turns']:>3} "
          f"return {_fmt(row['collect_return'], 2)} | greedy: turns {row['eval_turns']} gap "
          f"{_fmt(row['eval_median_gap_s'])} s overlap {_fmt(row['eval_overlap_rate'], 2)} return "
          f"{_fmt(row['eval_return'], 2)} | loss {_fmt(row['loss_total'])} forecast MAE "
          f"{_fmt(row['val_forecast_mae_s'], 2)} s | {speed.batch_steps_per_s:.0f} env steps/s, "
          f"{_fmt(speed.s_per_iteration, 1)} s/it, ETA {eta}", flush=True)


def _progress_line(row: dict, cfg: TrainConfig, speed: _Speed) -> str:
    """One short line on an iteration, for a sweep's progress (the full row is in the run's curves)."""
    eta = "n/a" if not math.isfinite(speed.eta_s) else f"{speed.eta_s / 60:.1f} min"
    if cfg.task == "sync":
        figures = f"greedy success {_fmt(row['eval_success_rate'], 2)} at window {row['window_s']:.3f} s"
    else:
        figures = f"greedy gap {_fmt(row['eval_median_gap_s'])} s, overlap {_fmt(row['eval_overlap_rate'], 2)}"
    return (f"iteration {row['iteration']}/{cfg.iterations}, {figures}, {_fmt(speed.s_per_iteration, 1)} s/it, "
            f"ETA {eta}")


def write_curves_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else CURVE_COLUMNS)
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
    _plot_losses(axes.flat[3], it, rows, "validation forecast MAE (s)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_losses(ax, it: list, rows: list[dict], mae_label: str, fontsize: int) -> None:
    """The learning-curve panel of the losses per iteration and the validation forecast error."""
    for k in LOSS_NAMES:
        ax.plot(it, [r[f"loss_{k}"] for r in rows], label=k)
    ax.plot(it, [r["val_forecast_mae_s"] for r in rows], "k--", label=mae_label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend(fontsize=fontsize)


def plot_sync_curves(path: Path, rows: list[dict], baseline: dict) -> None:
    """A sync run: the curriculum's window, greedy success at it and at the final window (reactive
    dashed), offsets, return and the losses per iteration."""
    import matplotlib  # noqa: PLC0415 -- only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    it = [r["iteration"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0, 0]
    ax.plot(it, [r["eval_success_rate"] for r in rows], marker="o", label="mirror (greedy), current window")
    ax.plot(it, [r["eval_success_rate_final_window"] for r in rows], marker=".", label="mirror (greedy), final window")
    ax.plot(it, [r["collect_success_rate"] for r in rows], alpha=0.6, label="mirror (exploring), current window")
    ax.axhline(baseline["success_rate_final_window"], color="grey", linestyle="--", label="reactive, final window")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("iteration")
    ax.set_ylabel("success rate")
    ax.legend(fontsize=7, loc="lower right")
    twin = ax.twinx()
    twin.step(it, [r["window_s"] for r in rows], where="mid", color="black", alpha=0.4)
    twin.set_ylabel("window (s), grey step")
    ax = axes[0, 1]
    ax.plot(it, [r["eval_median_offset_s"] for r in rows], marker="o", label="median offset (robot - partner)")
    ax.plot(it, [r["eval_mean_abs_offset_s"] for r in rows], marker=".", label="mean |offset|")
    ax.axhline(baseline["median_offset_s"], color="grey", linestyle="--", label="reactive median offset")
    ax.set_xlabel("iteration")
    ax.set_ylabel("arrival offset (s)")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    ax.plot(it, [r["eval_return"] for r in rows], marker="o", label="greedy, current window")
    ax.plot(it, [r["collect_return"] for r in rows], marker=".", alpha=0.6, label="exploring, current window")
    ax.set_xlabel("iteration")
    ax.set_ylabel("return per session")
    ax.legend(fontsize=7)
    _plot_losses(axes[1, 1], it, rows, "validation arrival forecast MAE (s)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ============================================================================ sweep
SWEEP_SUMMARY_JSON = "sweep_summary.json"
SWEEP_SUMMARY_CSV = "sweep_summary.csv"
SWEEP_COLUMNS = (
    "run", "config", "task", "seed", "run_dir", "iterations", "eval_turns", "eval_median_gap_s", "eval_overlap_rate",
    "eval_trials", "eval_success_rate_final_window", "eval_median_offset_s",
    "eval_contacts", "eval_return", "val_forecast_mae_s", "loss_total", "reactive_median_gap_s",
    "reactive_success_rate_final_window", "selected_iteration", "env_steps", "wall_s",
)
#: The last iteration's figures a sweep row keeps; a task's runs leave the other task's empty (NaN).
_FINAL_METRICS = ("eval_turns", "eval_median_gap_s", "eval_overlap_rate", "eval_trials",
                  "eval_success_rate_final_window", "eval_median_offset_s", "eval_contacts", "eval_return",
                  "val_forecast_mae_s", "loss_total")


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its name (``<config stem>/seed<S>``, also its directory under OUT),
    the config file it came from and its full config."""

    name: str
    config: str
    cfg: TrainConfig


def sweep_runs(configs: list[tuple[Path | None, TrainConfig]], seeds: list[int] | None,
               iterations: int | None = None) -> list[SweepRun]:
    """One run per (config, seed), configs outer; ``seeds`` None = each config's own seed.
    Raises TrainConfigError for a bad seed and ValueError for two configs with one file stem."""
    stems: dict[str, Path | None] = {}
    runs = []
    for path, base in configs:
        stem = path.stem if path is not None else "train"
        if stem in stems:
            raise ValueError(f"configs {stems[stem]} and {path} share the name {stem!r}, and a sweep's run "
                             f"directories are named after it: rename one")
        stems[stem] = path
        for seed in (seeds if seeds is not None else [base.seed]):
            runs.append(SweepRun(f"{stem}/seed{seed}", str(path) if path is not None else "(package default)",
                                 base.with_overrides(seed=seed, iterations=iterations)))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"a seed is given twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
    return runs


def train_sweep_run(run: SweepRun) -> dict:
    """A sweep's job (in a Ray worker or here): one run with its sessions played in this process,
    trained in a private directory. Returns its files (name -> bytes: a cluster's workers share no
    file system with the driver, which writes them) and its summary row."""
    with tempfile.TemporaryDirectory(prefix="coop_train_") as tmp:
        result = train(run.cfg, tmp, progress=False, report=parallel_report)
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())
                 if p.is_file() and p.name != RESUME_STATE}
    last = result.rows[-1]
    row = {"run": run.name, "config": run.config, "task": run.cfg.task, "seed": run.cfg.seed, "run_dir": "",
           "iterations": run.cfg.iterations, **{k: last.get(k, math.nan) for k in _FINAL_METRICS},
           "reactive_median_gap_s": result.baseline.get("median_gap_s", math.nan),
           "reactive_success_rate_final_window": result.baseline.get("success_rate_final_window", math.nan),
           "selected_iteration": result.selected_iteration, "env_steps": result.env_steps,
           "wall_s": round(result.wall_s, 2)}
    return {"row": row, "files": files}


def run_sweep(runs: list[SweepRun], out_dir: Path, address: str | None = None, workers: int | None = None,
              progress: bool = True) -> tuple[list[dict], RayInfo]:
    """Train ``runs`` as jobs of :func:`coop_robot.parallel.run_tasks`; each run's files go to
    ``out_dir/<run name>/`` and the summary (``sweep_summary.json`` / ``.csv``) is rewritten as each
    run finishes. Returns the summary rows (run order) and how the runs were spread."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict | None] = [None] * len(runs)
    info: list[RayInfo] = []
    t0 = time.perf_counter()

    def on_result(i: int, result: dict) -> None:
        run_dir = out_dir / runs[i].name
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, data in result["files"].items():
            (run_dir / name).write_bytes(data)
        rows[i] = {**result["row"], "run_dir": str(run_dir)}
        write_sweep_summary(out_dir, rows, info[0] if info else None, time.perf_counter() - t0)

    def label(i: int, run: SweepRun) -> str:
        row = rows[i]
        if row is None:
            return run.name
        steps = sum(r["env_steps"] for r in rows if r is not None)
        return (f"{run.name}: {_headline(row)}; {row['env_steps']} env steps in {row['wall_s']:.0f} s "
                f"(sweep: {steps / max(time.perf_counter() - t0, 1e-9):.0f} env steps/s)")

    run_tasks(train_sweep_run, runs, address=address, workers=workers, label=label, progress=progress,
              on_result=on_result, info=info, job_progress_period_s=JOB_PROGRESS_PERIOD_S)
    write_sweep_summary(out_dir, rows, info[0] if info else None, time.perf_counter() - t0)
    return rows, info[0]


def _headline(row: dict) -> str:
    """A sweep row's greedy result in a few words, in its task's terms."""
    if row.get("task") == "sync":
        return (f"greedy success rate {_fmt(row['eval_success_rate_final_window'], 2)} at the final window, "
                f"median offset {_fmt(row['eval_median_offset_s'])} s")
    return f"greedy gap {_fmt(row['eval_median_gap_s'])} s, overlap {_fmt(row['eval_overlap_rate'], 2)}"


def write_sweep_summary(out_dir: Path, rows: list[dict | None], info: RayInfo | None, wall_s: float) -> None:
    """``sweep_summary.json`` (runs done so far, in run order, with how they ran) and ``.csv``."""
    done = [r for r in rows if r is not None]

    def plain(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    doc = {"runs_total": len(rows), "runs_done": len(done), "wall_s": round(wall_s, 2),
           "ray": info.as_dict() if info is not None else None,
           "runs": [{k: plain(v) for k, v in r.items()} for r in done]}
    (out_dir / SWEEP_SUMMARY_JSON).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    with open(out_dir / SWEEP_SUMMARY_CSV, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=SWEEP_COLUMNS)
        w.writeheader()
        for r in done:
            w.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in r.items()})


# ============================================================================ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="coop-robot train",
        description="Train the mirror policy network in the fast turn-taking environment; writes mirror.pt, "
                    "learning_curves.csv/.png to --out. With --seeds or several --config files, trains a sweep: "
                    "one run per (config, seed) in OUT/<config stem>/seed<S>/, and OUT/sweep_summary.json/.csv.")
    p.add_argument("--config", type=Path, nargs="+", default=None, metavar="YAML",
                   help="training config YAML(s) (default: the package's config/training/train.yaml); "
                        "more than one trains a sweep")
    p.add_argument("--out", type=Path, default=Path("mirror_training"), help="output directory")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None, help="override the config's seed")
    seeds.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                       help="train a sweep: one run per seed (and per config), as Ray tasks")
    p.add_argument("--iterations", type=int, default=None, help="override the config's iterations")
    p.add_argument("--resume", action="store_true",
                   help=f"go on from the last finished iteration of the run in --out (its {RESUME_STATE}); give "
                        "the same config, seed and iterations. The figures are those of a run that never stopped")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_ray_arguments(p, workers_help="a single run: collection workers (Ray actors; default one per CPU here, "
                                      "or of the cluster); a sweep: runs at once (default: one per CPU)")
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
        resolve_address(args.ray_address)
        configs = [(path, load_config(path)) for path in (args.config or [None])]
        sweep = args.seeds is not None or len(configs) > 1
        if sweep:
            seeds = args.seeds if args.seeds is not None else ([args.seed] if args.seed is not None else None)
            runs = sweep_runs(configs, seeds, args.iterations)
        else:
            cfg = configs[0][1].with_overrides(seed=args.seed, iterations=args.iterations)
    except ValueError as exc:   # TrainConfigError included
        print(f"coop-robot train: {exc}", file=sys.stderr)
        return 2
    if sweep and args.resume:
        print("coop-robot train: --resume trains one run, not a sweep (a sweep's runs keep no state to resume); "
              "resume each run with --config, --seed and --out of its own", file=sys.stderr)
        return 2
    if sweep:
        return _main_sweep(runs, args)
    try:
        if args.resume:
            load_resume_state(args.out, cfg, mmap=True)   # refused before any collector starts; train() reads it
        with open_collector(args.ray_address, args.workers, progress=not args.quiet) as (collector, _):
            result = train(cfg, args.out, progress=not args.quiet, collector=collector, resume=args.resume)
    except ValueError as exc:
        print(f"coop-robot train: {exc}", file=sys.stderr)
        return 2
    except CollectionError as exc:
        print(f"coop-robot train: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"coop-robot train: interrupted; {_resume_hint(args.out)}", file=sys.stderr)
        return 130
    last = result.rows[-1]
    if cfg.task == "sync":
        print(f"wrote {result.checkpoint}, {args.out / CURVES_CSV}, {args.out / CURVES_PNG}; greedy success rate at "
              f"{cfg.sync_window_end_s:g} s {_fmt(last['eval_success_rate_final_window'], 2)} (reactive "
              f"{_fmt(result.baseline['success_rate_final_window'], 2)}), median offset "
              f"{_fmt(last['eval_median_offset_s'])} s; {result.env_steps} env steps in {result.wall_s:.0f} s "
              f"({result.env_steps / max(result.wall_s, 1e-9):.0f}/s)")
        return 0
    print(f"wrote {result.checkpoint}, {args.out / CURVES_CSV}, {args.out / CURVES_PNG}; greedy median gap "
          f"{_fmt(last['eval_median_gap_s'])} s (reactive {_fmt(result.baseline['median_gap_s'])} s), overlap rate "
          f"{_fmt(last['eval_overlap_rate'], 2)}; {result.env_steps} env steps in {result.wall_s:.0f} s "
          f"({result.env_steps / max(result.wall_s, 1e-9):.0f}/s)")
    return 0


def _resume_hint(out_dir: Path) -> str:
    """Where an interrupted run stands, and how to go on."""
    path = Path(out_dir) / RESUME_STATE
    try:
        iteration = int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["iteration"])
    except Exception:  # none yet, or unreadable: nothing to go on from
        return "no iteration had finished, so there is nothing to resume: start the run again"
    return (f"{path} holds iteration {iteration}: run the same command with --resume to go on from there "
            "(to the same result as a run that never stopped)")


def _main_sweep(runs: list[SweepRun], args) -> int:
    if not args.quiet:
        print(f"sweep: {len(runs)} run(s) into {args.out}/: {', '.join(r.name for r in runs)}", flush=True)
    try:
        rows, info = run_sweep(runs, args.out, args.ray_address, args.workers, progress=not args.quiet)
    except TaskError as exc:
        print(f"coop-robot train: {exc}", file=sys.stderr)
        return 1
    width = max(len(r["run"]) for r in rows)
    print(f"{'run':<{width}}  {'task':<11}  greedy gap s  overlap  success  return  forecast MAE s")
    for r in rows:
        print(f"{r['run']:<{width}}  {r['task']:<11}  {_fmt(r['eval_median_gap_s']):>12}  "
              f"{_fmt(r['eval_overlap_rate'], 2):>7}  {_fmt(r['eval_success_rate_final_window'], 2):>7}  "
              f"{_fmt(r['eval_return'], 2):>6}  {_fmt(r['val_forecast_mae_s'], 2):>14}")
    print(f"wrote {len(rows)} run(s) and {args.out / SWEEP_SUMMARY_JSON}, {args.out / SWEEP_SUMMARY_CSV} "
          f"({info.describe()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

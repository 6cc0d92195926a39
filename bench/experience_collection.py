"""Experience collection of mirror-policy training: sessions in this process against N Ray actors.

Plays the same exploring sessions (the collection of training iteration 1 with
``--sessions`` sessions, untrained network of the config's seed) one after another in this
process and on ``--workers`` collection actors (:class:`coop_robot.training.collect.RayCollector`,
what ``coop-robot train --workers N`` uses), interleaved in rounds, and prints per round the wall
time of each, env steps (20 ms policy ticks) per second, the speed-up serial / Ray, and the CPU
seconds the sessions took (this process; the actors' own). Ray's start-up and the actors' first
session (imports, caches) are left out of the timings and reported apart. It also checks that
both give the same sessions bit for bit.

The wall-time speed-up is what this machine gave at the time, other work on it included. The
*CPU-bound* speed-up (serial CPU seconds over the busiest actor's) is what an otherwise idle
machine would give, leaving out only Ray's own costs (transfers, scheduling): it tells a loaded
machine from a collection that does not scale.

    python bench/experience_collection.py [--workers 2] [--sessions 8] [--turns 2] [--rounds 2]

``--ray-address`` as ``coop-robot train`` takes it (default: an embedded local Ray of
``--workers`` CPUs). :func:`measure_collection_speedup` is the same measurement for other
benchmarks to call; it returns the figures as a dict. For a harness that runs jobs as Ray tasks
(``python bench/ray_scaling.py --workload experience-collection``), :func:`collection_tasks` and
:func:`collection_session` are the same sessions as one task each, a worker building its session
runner once as a collection actor does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coop_robot.parallel import SERIAL, add_ray_arguments, ray_connection, resolve_address  # noqa: E402
from coop_robot.policy.mirror_net import save_checkpoint  # noqa: E402
from coop_robot.training.collect import InProcessCollector, RayCollector, worker_runner  # noqa: E402
from coop_robot.training.config import TrainConfig  # noqa: E402
from coop_robot.training.sessions import SessionJob, SessionRunner, explore_jobs  # noqa: E402
from coop_robot.training.train import load_config, make_model, seeded_torch  # noqa: E402


def _same_sessions(a, b) -> bool:
    return all(ra.job == rb.job and ra.episode.keys() == rb.episode.keys()
               and all(np.array_equal(ra.episode[k], rb.episode[k]) for k in ra.episode)
               for ra, rb in zip(a, b, strict=True))


# =========================================================================== as Ray tasks
@dataclass(frozen=True)
class CollectionTask:
    """One exploring session as a task: the run's config, its checkpoint (bytes) and the session."""

    cfg: TrainConfig
    checkpoint: bytes
    job: SessionJob


def collection_tasks(sessions: int, turns: int | None = None, cfg: TrainConfig | None = None) -> list[CollectionTask]:
    """``sessions`` exploring sessions of training iteration 1 (``turns`` robot turns each; None: the
    config's), on the untrained network of the config's seed."""
    cfg = cfg if cfg is not None else TrainConfig()
    cfg = replace(cfg, episodes_per_iteration=sessions, turns_per_episode=turns or cfg.turns_per_episode)
    with seeded_torch(cfg), tempfile.TemporaryDirectory(prefix="coop_bench_") as tmp:
        net, net_cfg, spec = make_model(cfg)
        data = save_checkpoint(Path(tmp) / "mirror.pt", net, net_cfg, spec).read_bytes()
    return [CollectionTask(cfg, data, job) for job in explore_jobs(cfg, 1)]


_RUNNERS: dict[tuple, SessionRunner] = {}


def collection_session(task: CollectionTask) -> dict:
    """Play one session of :func:`collection_tasks` in this process (its runner built on the first
    task of a run, kept for the next): its CPU and wall time, env steps, turns and a digest of
    every array it recorded (the figures to compare serially and on Ray)."""
    key = (task.cfg, hashlib.sha256(task.checkpoint).hexdigest())
    if key not in _RUNNERS:
        _RUNNERS.clear()
        _RUNNERS[key] = worker_runner(task.cfg, task.checkpoint)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = _RUNNERS[key].run(task.job)
    digest = hashlib.sha256()
    for name in sorted(result.episode):
        digest.update(name.encode())
        digest.update(result.episode[name].tobytes())
    return {"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0, "pid": os.getpid(),
            "status": "ok", "steps": result.steps, "turns": len(result.turns), "digest": digest.hexdigest()}


# =========================================================================== actors
def measure_collection_speedup(workers: int = 2, sessions: int = 8, turns: int | None = 2, rounds: int = 2,
                               address: str | None = None, cfg: TrainConfig | None = None,
                               progress: bool = True) -> dict:
    """Serial and ``workers``-actor collection of the same ``sessions`` exploring sessions, ``rounds``
    times interleaved (see the module docstring). ``turns`` overrides the config's robot turns per
    session (None: the config's). ``address`` as ``--ray-address`` (not ``none``). Returns the
    per-round figures, their medians (``speedup`` = serial wall / Ray wall) and ``identical``."""
    if resolve_address(address) == SERIAL:
        raise ValueError("the benchmark compares with Ray: --ray-address none leaves nothing to compare")
    cfg = cfg if cfg is not None else TrainConfig()
    cfg = replace(cfg, episodes_per_iteration=sessions, turns_per_episode=turns or cfg.turns_per_episode)
    jobs = explore_jobs(cfg, 1)

    def say(text: str) -> None:
        if progress:
            print(text, file=sys.stderr, flush=True)

    with seeded_torch(cfg), tempfile.TemporaryDirectory(prefix="coop_bench_") as tmp:
        net, net_cfg, spec = make_model(cfg)
        ckpt = save_checkpoint(Path(tmp) / "mirror.pt", net, net_cfg, spec)
        weights = net.state_dict()
        serial = InProcessCollector()
        serial.start(cfg, ckpt)
        serial.run(weights, jobs[:1])                        # warm: imports and caches of this process
        with ray_connection(address, workers, progress=progress) as info:
            actors = RayCollector(workers)
            t0 = time.perf_counter()
            actors.start(cfg, ckpt)
            actors.run(weights, jobs[:workers])              # warm: every actor's first session
            actors_ready_s = time.perf_counter() - t0
            rows = []
            identical = True
            try:
                for r in range(rounds):
                    t0, c0 = time.perf_counter(), time.process_time()
                    a = serial.run(weights, jobs)
                    serial_s, serial_cpu = time.perf_counter() - t0, time.process_time() - c0
                    t0 = time.perf_counter()
                    b = actors.run(weights, jobs)
                    ray_s = time.perf_counter() - t0
                    identical = identical and _same_sessions(a, b)
                    steps = sum(x.steps for x in a)
                    per_actor = [0.0] * workers
                    for i, c in zip(actors.last_actor, actors.last_cpu_s, strict=True):
                        per_actor[i] += c
                    rows.append({"round": r + 1, "steps": steps, "serial_s": serial_s, "ray_s": ray_s,
                                 "speedup": serial_s / ray_s, "serial_steps_per_s": steps / serial_s,
                                 "ray_steps_per_s": steps / ray_s, "serial_cpu_s": serial_cpu,
                                 "ray_actor_cpu_s": sum(actors.last_cpu_s),
                                 # What an otherwise idle machine would give, Ray's own costs aside:
                                 # the serial CPU time over the busiest actor's.
                                 "cpu_bound_speedup": serial_cpu / max(per_actor)})
                    say(f"round {r + 1}/{rounds}: serial {serial_s:.1f} s, {workers} actors {ray_s:.1f} s, "
                        f"speed-up {serial_s / ray_s:.2f}x")
            finally:
                actors.stop()
    return {"workers": workers, "sessions": sessions, "turns_per_session": cfg.turns_per_episode,
            "rounds": rows, "speedup": statistics.median(r["speedup"] for r in rows),
            "serial_steps_per_s": statistics.median(r["serial_steps_per_s"] for r in rows),
            "ray_steps_per_s": statistics.median(r["ray_steps_per_s"] for r in rows),
            "cpu_bound_speedup": statistics.median(r["cpu_bound_speedup"] for r in rows),
            "identical": identical, "ray": info.as_dict(), "actors_ready_s": actors_ready_s}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/experience_collection.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=None, help="training config (default: the package's)")
    p.add_argument("--sessions", type=int, default=8, help="exploring sessions per batch (default 8)")
    p.add_argument("--turns", type=int, default=2, help="robot turns per session (default 2)")
    p.add_argument("--rounds", type=int, default=2, help="serial / Ray rounds, interleaved (default 2)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    add_ray_arguments(p, workers_help="collection actors (default 2)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("sessions", "turns", "rounds"):
        if getattr(args, name) < 1:
            print(f"--{name} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    try:
        cfg = load_config(args.config)
        result = measure_collection_speedup(args.workers or 2, args.sessions, args.turns, args.rounds,
                                            args.ray_address, cfg)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result['sessions']} exploring sessions of {result['turns_per_session']} robot turns, "
          f"{result['workers']} actors ({result['ray']['mode']} Ray, {result['ray']['nodes']} node(s), "
          f"{result['ray']['cpus']:g} CPUs; started in {result['ray']['startup_s']:.1f} s, actors ready in "
          f"{result['actors_ready_s']:.1f} s)")
    print("round  env steps  serial s  Ray s  speed-up  serial steps/s  Ray steps/s  CPU s serial / actors  "
          "CPU-bound speed-up")
    for r in result["rounds"]:
        print(f"{r['round']:>5}  {r['steps']:>9}  {r['serial_s']:>8.1f}  {r['ray_s']:>5.1f}  {r['speedup']:>7.2f}x  "
              f"{r['serial_steps_per_s']:>14.0f}  {r['ray_steps_per_s']:>11.0f}  "
              f"{r['serial_cpu_s']:>8.1f} / {r['ray_actor_cpu_s']:<6.1f}  {r['cpu_bound_speedup']:>17.2f}x")
    print(f"median speed-up {result['speedup']:.2f}x with {result['workers']} workers (CPU-bound: "
          f"{result['cpu_bound_speedup']:.2f}x, what an otherwise idle machine would give); the same sessions "
          f"bit for bit: {'yes' if result['identical'] else 'NO'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())

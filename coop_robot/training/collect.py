"""Where a training run plays its sessions: in this process, or in N Ray actors.

Each iteration the learner hands a batch of :class:`~coop_robot.training.sessions.SessionJob` s
and a snapshot of the network weights (its ``state_dict``) to a collector and gets the
:class:`~coop_robot.training.sessions.SessionResult` s back **in job order**:

* :class:`InProcessCollector`: one :class:`~coop_robot.training.sessions.SessionRunner` in this
  process, the jobs one after another (``--ray-address none``, and each run of a sweep);
* :class:`RayCollector`: ``workers`` Ray actors, each with a SessionRunner of its own (its own
  environments and network copy). The snapshot is put in Ray's object store once per batch and
  every actor loads it before its next session; a job goes to whichever actor is free, and the
  results are put back in job order.

Every job carries its seeds (see :mod:`coop_robot.training.sessions`), so both give the same
sessions bit for bit, with any number of actors and whatever order they finish in. Actors run
torch on one thread (deterministic kernels when the config asks, as the learner does).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch

from coop_robot.parallel import SERIAL, RayInfo, ray_connection, resolve_address
from coop_robot.training.config import TrainConfig
from coop_robot.training.sessions import SessionJob, SessionResult, SessionRunner


class CollectionError(RuntimeError):
    """A session failed in a collection worker: names the session and carries the worker's error."""


class InProcessCollector:
    """The sessions one after another in this process."""

    workers = 1

    def __init__(self) -> None:
        self.runner: SessionRunner | None = None

    def describe(self) -> str:
        return "sessions in this process (serial)"

    def start(self, cfg: TrainConfig, checkpoint: Path) -> None:
        """Build the runner for a run of ``cfg`` from the run's first checkpoint."""
        self.runner = SessionRunner(cfg, checkpoint)

    def run(self, state_dict: Mapping[str, torch.Tensor], jobs: list[SessionJob]) -> list[SessionResult]:
        if self.runner is None:
            raise RuntimeError("InProcessCollector.run before start")
        self.runner.load_weights(state_dict)
        return [self.runner.run(job) for job in jobs]

    def stop(self) -> None:
        self.runner = None


def worker_runner(cfg: TrainConfig, checkpoint_bytes: bytes) -> SessionRunner:
    """A SessionRunner in a worker process (a collection actor, or a task of a benchmark), from the
    run's checkpoint as bytes; torch on one thread, deterministic kernels when ``cfg`` asks."""
    from coop_robot.policy.threads import configure_torch_threads  # noqa: PLC0415 -- torch is loaded already

    configure_torch_threads(1)
    torch.use_deterministic_algorithms(cfg.deterministic)
    # MirrorPolicy is built from a checkpoint file: a private copy on this node (a cluster shares
    # no file system), removed once the policies are built.
    where = tempfile.mkdtemp(prefix="coop_collect_")
    try:
        path = Path(where) / "mirror.pt"
        path.write_bytes(checkpoint_bytes)
        return SessionRunner(cfg, path)
    finally:
        shutil.rmtree(where, ignore_errors=True)


class _CollectionActor:
    """Body of a Ray collection actor: a SessionRunner built from the run's checkpoint bytes."""

    def __init__(self, cfg: TrainConfig, checkpoint_bytes: bytes) -> None:
        self.runner = worker_runner(cfg, checkpoint_bytes)

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        self.runner.load_weights(state_dict)

    def run(self, job: SessionJob) -> tuple[SessionResult, float]:
        """The session and the CPU seconds this process spent on it."""
        t0 = time.process_time()
        result = self.runner.run(job)
        return result, time.process_time() - t0

    def pid(self) -> int:
        return os.getpid()


class RayCollector:
    """``workers`` Ray actors (one CPU each) on the Ray this process is connected to."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a Ray collector needs >= 1 worker, got {workers}")
        self.workers = workers
        self.actors: list = []
        #: Of the last batch, in job order: the CPU seconds each session took in its actor, and
        #: which actor (index) ran it.
        self.last_cpu_s: list[float] = []
        self.last_actor: list[int] = []

    def describe(self) -> str:
        return f"sessions on {len(self.actors) or self.workers} Ray actor(s)"

    def start(self, cfg: TrainConfig, checkpoint: Path) -> None:
        """Start the actors for a run of ``cfg``: ``workers`` of them, but no more than an
        iteration's batch has sessions (its collection and evaluation): more would stay idle."""
        import ray  # noqa: PLC0415 -- only when Ray is used

        self.stop()
        remote = ray.remote(num_cpus=1, max_restarts=0)(_CollectionActor)
        blob = ray.put(Path(checkpoint).read_bytes())
        count = min(self.workers, cfg.episodes_per_iteration + len(cfg.eval_partners))
        self.actors = [remote.remote(cfg, blob) for _ in range(count)]
        ray.get([a.pid.remote() for a in self.actors])   # built (an error in a constructor shows here)

    def run(self, state_dict: Mapping[str, torch.Tensor], jobs: list[SessionJob]) -> list[SessionResult]:
        import ray  # noqa: PLC0415

        if not self.actors:
            raise RuntimeError("RayCollector.run before start")
        weights = ray.put({k: v.detach().cpu().clone() for k, v in state_dict.items()})
        for actor in self.actors:
            actor.load_weights.remote(weights)   # an actor runs its calls in the order they were made
        results: list[SessionResult | None] = [None] * len(jobs)
        cpu: list[float] = [0.0] * len(jobs)
        ran_on: list[int] = [0] * len(jobs)
        free = list(range(len(self.actors)))
        pending: dict = {}
        next_job = 0
        while next_job < len(jobs) or pending:
            while free and next_job < len(jobs):
                actor = free.pop()
                pending[self.actors[actor].run.remote(jobs[next_job])] = (next_job, actor)
                next_job += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            i, actor = pending.pop(ready[0])
            ran_on[i] = actor
            try:
                results[i], cpu[i] = ray.get(ready[0])
            except Exception as exc:   # the caller stops the actors, and with them what they still run
                cause = getattr(exc, "cause", None) or exc
                raise CollectionError(f"{jobs[i].describe()} failed in a collection worker: "
                                      f"{type(cause).__name__}: {cause}") from exc
            free.append(actor)
        self.last_cpu_s, self.last_actor = cpu, ran_on
        return results

    def stop(self) -> None:
        if self.actors:
            import ray  # noqa: PLC0415

            for actor in self.actors:
                ray.kill(actor)
            self.actors = []


@contextmanager
def open_collector(address: str | None = None, workers: int | None = None,
                   progress: bool = True) -> Iterator[tuple[InProcessCollector | RayCollector, RayInfo]]:
    """The collector a single run uses, from ``--ray-address`` / ``--workers``:

    * ``none``: :class:`InProcessCollector`;
    * no address (and no ``$RAY_ADDRESS``): an embedded local Ray with ``workers`` actors (default:
      one per CPU here); with one worker, the in-process collector (Ray would only add its start-up);
    * a cluster: ``workers`` actors (default: one per CPU of the cluster).

    Yields ``(collector, RayInfo)``; Ray is stopped after the block when this started it.
    """
    resolved = resolve_address(address)
    if resolved is None and (workers or os.cpu_count() or 1) == 1:
        resolved = SERIAL
    if resolved == SERIAL:
        yield InProcessCollector(), RayInfo("serial")
        return
    with ray_connection(resolved, workers, progress=progress) as info:
        if workers is not None and workers > info.cpus:
            raise ValueError(f"--workers {workers}: the Ray cluster has {info.cpus:g} CPU(s), and each collection "
                             "worker takes one")
        collector = RayCollector(workers or max(int(info.cpus), 1))
        try:
            yield collector, info
        finally:
            collector.stop()

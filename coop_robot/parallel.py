"""The one way the package spreads work over cores and machines: Ray.

Every command that runs many independent jobs (benchmark sessions, training seeds, bags of a
study) takes ``--ray-address`` and hands its jobs to :func:`run_tasks`:

* no address (and no ``$RAY_ADDRESS``): an embedded local Ray sized to this machine (or to
  ``--workers``), started for the command and stopped after it; nothing else to install or start;
* ``--ray-address HOST:PORT`` (or ``auto``, or ``$RAY_ADDRESS``): join that running cluster
  (``ray start --head`` on one machine, ``ray start --address=HOST:PORT`` on the others);
* ``--ray-address none``: no Ray at all, the jobs run one after another in this process.

A job is a picklable function and its argument; it must compute everything from its argument
(seeds included), so the figures are the same whichever way the jobs run. Results come back in
job order. Progress (jobs done / total, elapsed, ETA, and what the caller adds) goes to stderr
as jobs finish, also when they run on a cluster; a long job says how far it has got with
:func:`report` (a training run: its iteration and ETA), printed every ``job_progress_period_s``.

Ray is imported only when it is used: ``--ray-address none`` works without it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from coop_robot.argtypes import whole_at_least
from coop_robot.procfs import argv, descendants, process_parents  # noqa: F401 -- re-exported

#: Environment variable Ray itself reads for the cluster address.
RAY_ADDRESS_ENV = "RAY_ADDRESS"
#: ``--ray-address`` value that runs every job in this process, without Ray.
SERIAL = "none"
#: Ray's setting of how much its raylet lowers its workers' priority (``nice``; Ray's default 15).
WORKER_NICENESS_ENV = "RAY_worker_niceness"
#: Seconds between the lines that say how far long jobs have got (:func:`report`), for callers
#: whose jobs take minutes (``run_tasks(..., job_progress_period_s=...)``).
JOB_PROGRESS_PERIOD_S = 30.0

#: Set while a job runs (by :func:`run_tasks`): where :func:`report` sends its text.
_job_reporter: Callable[[str], None] | None = None


def report(text: str) -> None:
    """From inside a job of :func:`run_tasks`: say how far it has got (e.g. ``iteration 12/40, ETA
    7.5 min``). A driver that asked for it (``job_progress_period_s``) prints each running job's
    latest report that often, whether the job runs in this process, a local worker or a cluster's
    node. Outside a job (or with progress off) it does nothing; it never fails the job."""
    reporter = _job_reporter
    if reporter is None:
        return
    try:
        reporter(str(text))
    except Exception:  # noqa: BLE001 -- progress is never worth a failed job
        pass


@dataclass
class RayInfo:
    """How a command ran its jobs: ``mode`` is ``serial``, ``local`` (embedded) or ``cluster``."""

    mode: str
    address: str | None = None
    nodes: int = 1
    cpus: float = 1.0
    startup_s: float = 0.0
    #: Resident memory (bytes) of the Ray processes this command started (embedded mode: this
    #: process's descendants), measured after start-up; 0 when it started none.
    startup_rss_bytes: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"mode": self.mode, "address": self.address, "nodes": self.nodes, "cpus": self.cpus,
                "startup_s": round(self.startup_s, 3), "startup_rss_bytes": self.startup_rss_bytes, **self.extra}

    def describe(self) -> str:
        if self.mode == SERIAL or self.mode == "serial":
            return "serial (no Ray, --ray-address none)"
        where = "embedded local Ray" if self.mode == "local" else f"Ray cluster at {self.address}"
        return (f"{where}: {self.nodes} node(s), {self.cpus:g} CPU(s), started in {self.startup_s:.1f} s"
                + (f", {self.startup_rss_bytes / 2**20:.0f} MiB resident" if self.startup_rss_bytes else ""))


def add_ray_arguments(parser: argparse.ArgumentParser, workers_help: str | None = None) -> None:
    """``--ray-address`` and ``--workers`` on a command's parser."""
    parser.add_argument(
        "--ray-address", default=None, metavar="ADDRESS",
        help=f"Ray cluster to run on (HOST:PORT or 'auto'; default ${RAY_ADDRESS_ENV}, else an embedded "
             f"local Ray on this machine); '{SERIAL}' runs the jobs one after another in this process")
    parser.add_argument(
        "--workers", type=whole_at_least(1), default=None, metavar="N",
        help=workers_help or "jobs at once (default: every CPU of this machine, or of the cluster)")


def resolve_address(address: str | None) -> str | None:
    """The address to use: ``address``, else ``$RAY_ADDRESS``, else None (embedded local Ray);
    :data:`SERIAL` for no Ray. Raises ValueError for an empty or malformed address."""
    if address is None:
        address = os.environ.get(RAY_ADDRESS_ENV) or None
        if address is None:
            return None
    text = address.strip()
    if not text:
        raise ValueError("--ray-address is empty (give HOST:PORT, 'auto', or 'none')")
    if text.lower() == SERIAL:
        return SERIAL
    if text in ("auto", "local") or text.startswith("ray://"):
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--ray-address must be HOST:PORT, 'auto', ray://HOST:PORT or 'none', got {address!r}")
    return text


class TaskError(RuntimeError):
    """A job raised: names the job and carries the remote error's text."""


def run_tasks(fn: Callable[[Any], Any], items: Sequence[Any], *, address: str | None = None,
              workers: int | None = None, label: Callable[[int, Any], str] | None = None,
              progress: bool = True, on_result: Callable[[int, Any], None] | None = None,
              init: Callable[[], None] | None = None, num_cpus: float = 1.0,
              info: list[RayInfo] | None = None, job_progress_period_s: float | None = None) -> list[Any]:
    """``[fn(item) for item in items]``, spread over Ray (see the module's docstring).

    ``label(i, item)`` names a job in the progress lines; ``on_result(i, result)`` is called in
    this process as each job finishes (to save results as they come); ``init()`` runs once in
    each process before its first job (thread counts and the like); each job asks Ray for
    ``num_cpus`` CPUs. A job that raises ends the run with :class:`TaskError` naming it, after
    the jobs already finished were passed to ``on_result``. ``info``, when given, receives the
    :class:`RayInfo` of the run (mode, nodes, CPUs, start-up time and memory). With
    ``job_progress_period_s`` (and ``progress``), what a running job says with :func:`report` is
    printed that often (on Ray through a small actor: one more process, no CPU reserved); for jobs
    of minutes, not seconds (:data:`JOB_PROGRESS_PERIOD_S`)."""
    if job_progress_period_s is not None and not job_progress_period_s > 0:
        raise ValueError(f"job_progress_period_s must be > 0 seconds, got {job_progress_period_s!r}")
    job_progress = progress and job_progress_period_s is not None
    items = list(items)
    resolved = resolve_address(address)
    tracker = _Progress(len(items), label, progress)
    results: list[Any] = [None] * len(items)
    if resolved == SERIAL:
        run_info = RayInfo("serial")
        if info is not None:
            info.append(run_info)
        if init is not None:
            init()
        for i, item in enumerate(items):
            try:
                with _reporting(tracker.serial_reporter(i, item, job_progress_period_s) if job_progress else None):
                    results[i] = fn(item)
            except Exception as exc:
                raise TaskError(f"job {i} ({tracker.name(i, item)}) failed: {type(exc).__name__}: {exc}") from exc
            if on_result is not None:
                on_result(i, results[i])
            tracker.done(i, item)
        return results

    import ray  # noqa: PLC0415 -- only when Ray is used

    with ray_connection(resolved, workers, progress) as run_info:
        if info is not None:
            info.append(run_info)
        remote = ray.remote(num_cpus=num_cpus, max_retries=0)(_call)
        board = ray.remote(num_cpus=0)(_Board).remote() if job_progress else None
        limit = workers or max(int(run_info.cpus // max(num_cpus, 1e-9)), 1)
        pending: dict[Any, int] = {}
        next_i = 0
        next_progress = time.monotonic() + (job_progress_period_s or 0.0)
        while next_i < len(items) or pending:
            while next_i < len(items) and len(pending) < limit:
                pending[remote.remote(fn, items[next_i], init, board, next_i)] = next_i
                next_i += 1
            ready, _ = ray.wait(list(pending), num_returns=1,
                                timeout=None if board is None else max(next_progress - time.monotonic(), 0.0))
            if board is not None and time.monotonic() >= next_progress:
                next_progress = time.monotonic() + job_progress_period_s
                for j, text in sorted(_board_reports(ray, board).items()):
                    tracker.job_said(j, items[j], text)
            if not ready:
                continue
            i = pending.pop(ready[0])
            try:
                results[i] = ray.get(ready[0])
            except Exception as exc:
                for ref in pending:
                    ray.cancel(ref, force=True)
                cause = getattr(exc, "cause", None) or exc
                raise TaskError(f"job {i} ({tracker.name(i, items[i])}) failed: "
                                f"{type(cause).__name__}: {cause}") from exc
            if on_result is not None:
                on_result(i, results[i])
            tracker.done(i, items[i])
    return results


@contextmanager
def ray_connection(address: str | None = None, workers: int | None = None,
                   progress: bool = True) -> Iterator[RayInfo]:
    """Ray for a command that places its own actors (training's collection workers): ``address``
    as :func:`run_tasks` takes it, but not ``none``. Yields the :class:`RayInfo`; an embedded
    Ray (``workers`` CPUs, default every CPU here) is started for the block and stopped after it."""
    resolved = resolve_address(address)
    if resolved == SERIAL:
        raise ValueError(f"ray_connection needs Ray: --ray-address {SERIAL!r} means no Ray")
    import ray  # noqa: PLC0415 -- only when Ray is used

    run_info, started = _connect(ray, resolved, workers)
    if progress:
        _write(f"parallel: {run_info.describe()}")
    try:
        yield run_info
    finally:
        if started:
            ray.shutdown()


_INITIALISED: set[str] = set()


def _call(fn: Callable[[Any], Any], item: Any, init: Callable[[], None] | None, board: Any = None,
          index: int = 0) -> Any:
    """A job in a Ray worker: ``init`` once per worker process, then ``fn(item)``; what the job
    says with :func:`report` goes to ``board`` (an actor of :class:`_Board`), fire and forget."""
    if init is not None:
        key = f"{getattr(init, '__module__', '')}.{getattr(init, '__qualname__', repr(init))}"
        if key not in _INITIALISED:
            init()
            _INITIALISED.add(key)
    with _reporting((lambda text: board.put.remote(index, text)) if board is not None else None):
        return fn(item)


class _Board:
    """A Ray actor holding each running job's latest :func:`report` until the driver takes them."""

    def __init__(self) -> None:
        self.latest: dict[int, str] = {}

    def put(self, index: int, text: str) -> None:
        self.latest[index] = text

    def take(self) -> dict[int, str]:
        latest, self.latest = self.latest, {}
        return latest


def _board_reports(ray: Any, board: Any) -> dict[int, str]:
    try:
        return ray.get(board.take.remote(), timeout=10.0)
    except Exception:  # noqa: BLE001 -- a slow or lost board costs a progress line, not the run
        return {}


@contextmanager
def _reporting(reporter: Callable[[str], None] | None) -> Iterator[None]:
    global _job_reporter
    previous, _job_reporter = _job_reporter, reporter
    try:
        yield
    finally:
        _job_reporter = previous


def _connect(ray: Any, address: str | None, workers: int | None) -> tuple[RayInfo, bool]:
    """Start an embedded Ray (address None) or join a cluster. Returns the run's info and whether
    this call started Ray (and must stop it)."""
    if ray.is_initialized():
        resources = ray.cluster_resources()
        return RayInfo("cluster" if address else "local", address, len(ray.nodes()), resources.get("CPU", 1.0)), False
    # Workers import the package the way this process does: an embedded Ray's workers inherit
    # this process's environment, a cluster's get it from the job's runtime environment.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    quiet = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": False}
    t0 = time.monotonic()
    if address is None:
        # The raylet started here passes its environment on to the workers; this process gets
        # its own back once it has started.
        saved = {k: os.environ.get(k) for k in ("PYTHONPATH", WORKER_NICENESS_ENV)}
        os.environ["PYTHONPATH"] = path
        # Ray's raylet lowers its workers' priority by 15 (nice +15) so that on a node of its own
        # its daemons stay responsive. Here the jobs are the command's own work: they run at the
        # command's priority (a command started with `nice` keeps its workers as nice as itself,
        # not below every other process of the machine).
        os.environ.setdefault(WORKER_NICENESS_ENV, "0")
        try:
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, **quiet)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        mode = "local"
    else:
        ray.init(address=address, runtime_env={"env_vars": {"PYTHONPATH": path}}, **quiet)
        mode = "cluster"
    startup = time.monotonic() - t0
    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    rss = process_tree_memory()["rss_bytes"] if mode == "local" else 0
    return RayInfo(mode, address, len(nodes), float(resources.get("CPU", 1.0)), startup, rss), True


def process_tree_memory(root: int | None = None) -> dict:
    """Processes descended from ``root`` (default: this one), i.e. the Ray this process started
    and its workers: their count and summed RSS and PSS (bytes; PSS shares a library's pages
    among the processes that map it, so it does not count them twice), and of those the workers'
    (``ray::`` processes other than Ray's agents). Zeros off Linux."""
    root = os.getpid() if root is None else root
    out = {"processes": 0, "rss_bytes": 0, "pss_bytes": 0, "workers": 0, "workers_pss_bytes": 0}
    parents = process_parents()
    if not parents:
        return out
    tree = descendants({root}, parents)
    tree.discard(root)
    for pid in tree:
        name = (argv(pid) or [""])[0].encode()
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        pss = _kib(fields.get("Pss")) * 1024
        out["processes"] += 1
        out["rss_bytes"] += _kib(fields.get("Rss")) * 1024
        out["pss_bytes"] += pss
        if name.startswith(b"ray::") and not name.endswith(b"Agent"):
            out["workers"] += 1
            out["workers_pss_bytes"] += pss
    return out


def _kib(text: str | None) -> int:
    try:
        return int((text or "0").split()[0])
    except (ValueError, IndexError):
        return 0


class _Progress:
    """``[done/total] elapsed, ETA: label`` lines on stderr as jobs finish."""

    def __init__(self, total: int, label: Callable[[int, Any], str] | None, enabled: bool) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.count = 0
        self.t0 = time.monotonic()

    def name(self, i: int, item: Any) -> str:
        return self.label(i, item) if self.label is not None else f"job {i}"

    def job_said(self, i: int, item: Any, text: str) -> None:
        """A running job's latest :func:`report`."""
        if self.enabled:
            _write(f"[{self.count:3d}/{self.total}] {_clock(time.monotonic() - self.t0)} elapsed: "
                   f"{self.name(i, item)}: {text}")

    def serial_reporter(self, i: int, item: Any, period_s: float) -> Callable[[str], None]:
        """For a job run in this process: its reports printed at once, at most one per ``period_s``."""
        last = [-float("inf")]

        def write(text: str) -> None:
            now = time.monotonic()
            if now - last[0] >= period_s:
                last[0] = now
                self.job_said(i, item, text)
        return write

    def done(self, i: int, item: Any) -> None:
        self.count += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.t0
        eta = elapsed / self.count * (self.total - self.count)
        _write(f"[{self.count:3d}/{self.total}] {_clock(elapsed)} elapsed, ETA {_clock(eta)}: "
               f"done {self.name(i, item)}")


def _clock(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m{sec:02d}s"


def _write(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()

"""Test-wide helpers: DDS isolation, a free ROS domain per test, waiting on a condition, spinning a node.

Discovery stays on this host for every node any test starts (ROS_AUTOMATIC_DISCOVERY_RANGE below).
A test that starts nodes takes its ROS domain from :func:`free_ros_domain` (or the ``ros_domain``
fixture) and passes it explicitly (``rclpy.init(domain_id=...)`` and the subprocess environment).
Tests wait on conditions with :func:`wait_for`, never on a fixed sleep: a loaded host is slower, not
wrong.
"""

import contextlib
import fcntl
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from coop_robot.domain_guard import rtps_ports_in_use  # a bound port of a domain's block: a participant there

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

#: Domain ids handed out. Fast DDS on Linux allows 0..232; ids 102..214 put a participant's ports in
#: the kernel's ephemeral port range (32768..60999), and 0 is the default every un-isolated node uses.
ROS_DOMAIN_IDS = tuple(range(1, 102)) + tuple(range(215, 233))
#: One lock file per domain id, shared by every test process on this host that uses this module.
DOMAIN_LOCK_DIR = Path(tempfile.gettempdir()) / "coop_robot_test_ros_domains"

_held_domains: dict[int, int | None] = {}  # domain id -> the flock'd file descriptor (None: no lock possible)


def load_bench(stem: str):
    """The benchmark script ``bench/<stem>.py`` as a module registered under its stem (dataclasses,
    Ray workers and the scripts that import each other look it up by that name); loaded once."""
    import importlib.util
    import sys

    if stem in sys.modules:
        return sys.modules[stem]
    spec = importlib.util.spec_from_file_location(stem, Path(__file__).resolve().parents[1] / "bench" / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[stem] = module
    spec.loader.exec_module(module)
    return module


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, *,
             poll: Callable[[], None] | None = None, poll_period_s: float = 0.05,
             details: Callable[[], str] | None = None):
    """Wait until ``predicate()`` is truthy and return its value.

    Between checks ``poll()`` runs (e.g. spinning an executor once, publishing a probe) or, without
    one, the thread sleeps ``poll_period_s``. After ``timeout_s`` (wall s) the test fails with a
    message naming ``what`` it waited for, followed by ``details()`` if given (e.g. a node's log).
    """
    if not timeout_s > 0:
        raise ValueError(f"wait_for: timeout_s must be > 0 s, got {timeout_s!r}")
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout_s:g} s waiting for {what}"
            if details is not None:
                message += f"\n{details()}"
            raise AssertionError(message)
        if poll is None:
            time.sleep(poll_period_s)
        else:
            poll()


def _lock_domain(domain_id: int) -> tuple[bool, int | None]:
    """(taken, fd): an exclusive, non-blocking lock on the domain's file; (True, None) if the lock
    directory cannot be used (then the port check alone decides)."""
    try:
        DOMAIN_LOCK_DIR.mkdir(exist_ok=True)
        fd = os.open(DOMAIN_LOCK_DIR / f"{domain_id}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return True, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False, None
    return True, fd


def release_ros_domain(domain_id: int) -> None:
    """Give back a domain from :func:`free_ros_domain` (its nodes must be shut down)."""
    fd = _held_domains.pop(domain_id, None)
    if fd is not None:
        os.close(fd)


def free_ros_domain() -> int:
    """A random ROS domain id that nobody else on this host is using, reserved for this process.

    Reserved: an exclusive lock on a per-id file in :data:`DOMAIN_LOCK_DIR`, which every test process
    using this helper respects; held until :func:`release_ros_domain` or the process exits (the lock
    file descriptor is not inherited by node subprocesses). Free: besides the lock, no socket on this
    host is bound to one of the domain's RTPS ports (this catches participants of processes that
    pick their domain some other way).
    """
    candidates = [d for d in ROS_DOMAIN_IDS if d not in _held_domains]
    random.shuffle(candidates)
    locked, busy = 0, []
    for domain_id in candidates:
        taken, fd = _lock_domain(domain_id)
        if not taken:
            locked += 1  # another test process holds it
            continue
        ports = rtps_ports_in_use(domain_id)
        if not ports:
            _held_domains[domain_id] = fd
            return domain_id
        if fd is not None:
            os.close(fd)
        busy.append(f"{domain_id} (ports {ports})")
    raise RuntimeError(f"no free ROS domain among the {len(candidates)} ids this process does not hold "
                       f"({ROS_DOMAIN_IDS[0]}..{ROS_DOMAIN_IDS[-1]}): {locked} locked by other test processes, "
                       f"participants of other processes on {busy}")


@pytest.fixture
def ros_domain():
    """A free ROS domain id (:func:`free_ros_domain`) for one test, given back after it."""
    domain_id = free_ros_domain()
    yield domain_id
    release_ros_domain(domain_id)


def ros_env(domain_id: int, **extra: str) -> dict[str, str]:
    """The environment for a node subprocess on ``domain_id``: this host only, unbuffered output,
    and this checkout first on PYTHONPATH."""
    repo = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]),
                **extra)


@contextlib.contextmanager
def spinning(node, context):
    """Spin ``node`` on a background thread while the block runs; on exit stop the thread, then
    destroy the node and shut ``context`` down (it owns both)."""
    import threading

    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        yield
    finally:
        stop.set()
        spinner.join(timeout=5)
        executor.shutdown()
        node.destroy_node()
        import rclpy

        rclpy.shutdown(context=context)


def stop_like_ctrl_c(proc: subprocess.Popen, reader=None, grace_s: float = 10.0) -> int | None:
    """End a node process as Ctrl-C does (:func:`coop_robot.runner.stop_like_ctrl_c`: SIGINT, so it
    shuts down cleanly and its DDS participant says goodbye; escalated only if it has not gone
    within ``grace_s``). A SIGKILLed peer leaves the test's own participant to find out by itself
    (destroying the test's node meanwhile segfaulted in rclpy's destroy_node once in a full suite).
    Joins ``reader`` (a thread draining the process's output) if given; returns the exit code."""
    from coop_robot.runner import stop_like_ctrl_c as stop

    code = stop(proc, grace_s=grace_s)
    if reader is not None:
        reader.join(timeout=5.0)
    return code

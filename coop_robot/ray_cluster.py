"""A real multi-node Ray cluster on this machine, started with ``ray start`` and stopped again.

For the tests and benchmarks that must show a job gives the same figures on a cluster as
serially, and for trying ``--ray-address`` before a lab cluster exists::

    python -m coop_robot.ray_cluster --nodes 2 --cpus-per-node 1     # prints the address; Ctrl-C stops it

Each node is a ``ray start`` of its own (a head, then workers joining it with their own CPUs),
sharing a fresh temporary directory and a fresh authentication token (Ray 2.5x enables token
authentication by default: every node and every driver needs the same token, so the cluster's
:attr:`LocalRayCluster.env` carries ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH``). Stopping
it ends exactly the processes of this cluster (found by its temporary directory), not every Ray
process of the user as ``ray stop`` would.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coop_robot.procfs import cmdline, descendants, is_alive, process_parents


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_executable() -> str:
    here = Path(sys.executable).parent / "ray"
    return str(here) if here.exists() else (shutil.which("ray") or "ray")


class LocalRayCluster:
    """``nodes`` Ray nodes on this machine with ``cpus_per_node`` CPUs each (a context manager)."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, start_timeout_s: float = 120.0) -> None:
        if nodes < 1 or cpus_per_node < 1:
            raise ValueError(f"a cluster needs >= 1 node and >= 1 CPU per node, got {nodes} and {cpus_per_node}")
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.start_timeout_s = start_timeout_s
        self.tmp: Path | None = None
        self.address: str | None = None
        self.env: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Start the head and the workers; returns the address (``127.0.0.1:PORT``)."""
        # Ray's socket paths must stay under 107 bytes: a short temporary directory.
        self.tmp = Path(tempfile.mkdtemp(prefix="coopray_", dir="/tmp" if os.path.isdir("/tmp") else None))
        token = self.tmp / "auth_token"
        token.write_text(secrets.token_hex(32), encoding="utf-8")
        token.chmod(0o600)
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
        env = {**os.environ, **self.env}
        env.pop("RAY_ADDRESS", None)
        try:
            self._ray(["start", "--head", f"--port={port}", f"--num-cpus={self.cpus_per_node}",
                       f"--temp-dir={self.tmp}", "--include-dashboard=false", "--disable-usage-stats"], env)
            for _ in range(self.nodes - 1):
                self._ray(["start", f"--address={self.address}", f"--num-cpus={self.cpus_per_node}",
                           "--disable-usage-stats"], env)
        except BaseException:
            self.stop()
            raise
        return self.address

    def _ray(self, args: list[str], env: dict[str, str]) -> None:
        proc = subprocess.run([_ray_executable(), *args], env=env, capture_output=True, text=True,
                              timeout=self.start_timeout_s, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"'ray {' '.join(args[:2])}' failed (exit {proc.returncode}):\n{tail}")

    def processes(self) -> list[int]:
        """PIDs of this cluster's processes: those naming its directory, and their descendants."""
        if self.tmp is None:
            return []
        marker = str(self.tmp)
        parents = process_parents()
        roots = {pid for pid in parents if marker in cmdline(pid)}
        # Never this process or its ancestors (a caller whose command line names the directory).
        me, mine = os.getpid(), set()
        while me > 1 and me not in mine:
            mine.add(me)
            me = parents.get(me, 0)
        return sorted(descendants(roots - mine, parents) - mine)

    def stop(self, timeout_s: float = 5.0) -> None:
        """End every process of this cluster (SIGTERM, then SIGKILL after ``timeout_s``: Ray's GCS
        server does not end on SIGTERM) and remove its directory."""
        pids = self.processes()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 5.0)
            while time.monotonic() < deadline:
                pids = [p for p in pids if is_alive(p)]
                if not pids:
                    break
                time.sleep(0.1)
            if not pids:
                break
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m coop_robot.ray_cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=2, help="Ray nodes (default 2)")
    p.add_argument("--cpus-per-node", type=int, default=1, help="CPUs each node offers (default 1)")
    args = p.parse_args(argv)
    cluster = LocalRayCluster(args.nodes, args.cpus_per_node)
    try:
        address = cluster.start()
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    exports = " ".join(f"{k}={v}" for k, v in cluster.env.items())
    print(f"Ray cluster of {args.nodes} node(s) x {args.cpus_per_node} CPU at {address}\n"
          f"use it with: {exports} <command> --ray-address {address}\nCtrl-C stops it.", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())

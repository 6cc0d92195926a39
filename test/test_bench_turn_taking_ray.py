"""bench/turn_taking.py on Ray: the same figures serially, on an embedded local Ray and on a real
two-node cluster (coop_robot.ray_cluster), each run as the command line a user types."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coop_robot.ray_cluster import LocalRayCluster

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "turn_taking.py"
#: Measured, not computed: differs run to run.
MEASURED = ("wall_time_s",)


def _start(out: Path, *ray_args: str, env: dict | None = None) -> subprocess.Popen:
    """Start the benchmark CLI on 2 partners x (reactive 0.4 s, eager), 1 turn each."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(BENCH), "--turns", "1", "--profiles", "typical", "fast", "--no-heldout",
           "--policies", "reactive", "eager", "--debounce", "0.4", "--out", str(out), *ray_args]
    return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _results(proc: subprocess.Popen, out: Path) -> dict:
    """The run's results.json, with its CSV rows added under ``csv``."""
    stdout, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert "[  4/4]" in stderr, "a progress line per session"
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        doc["csv"] = list(csv.DictReader(f))
    return doc


def _figures(doc: dict) -> tuple[list, list]:
    strip = [{k: v for k, v in r.items() if k not in MEASURED} for r in doc["rows"]]
    return strip, [{k: v for k, v in r.items() if k not in MEASURED} for r in doc["csv"]]


@pytest.mark.timeout(600)
def test_the_same_figures_serially_on_embedded_ray_and_on_a_two_node_cluster(tmp_path):
    # The three runs at once: on a loaded machine the test's wall time is mostly waiting for a core.
    runs = {"serial": _start(tmp_path / "serial", "--ray-address", "none"),
            "embedded": _start(tmp_path / "embedded", "--workers", "2")}
    cluster = LocalRayCluster(nodes=2, cpus_per_node=1)
    try:
        cluster.start()
        runs["cluster"] = _start(tmp_path / "cluster", "--ray-address", cluster.address, env=cluster.env)
        docs = {name: _results(proc, tmp_path / name) for name, proc in runs.items()}
    finally:
        for proc in runs.values():
            proc.kill()
        cluster.stop(timeout_s=5.0)  # its GCS lingers ~20 s after SIGTERM; nothing of it is needed
    serial, embedded, on_cluster = docs["serial"], docs["embedded"], docs["cluster"]

    assert serial["ray"]["mode"] == "serial"
    assert embedded["ray"]["mode"] == "local" and embedded["ray"]["cpus"] == 2
    assert on_cluster["ray"]["mode"] == "cluster" and on_cluster["ray"]["nodes"] == 2
    rows, csv_rows = _figures(serial)
    assert [(r["profile"], r["policy"], r["status"], r["turns"]) for r in rows] == [
        ("typical", "reactive 0.4s", "ok", 1), ("typical", "eager", "ok", 1),
        ("fast", "reactive 0.4s", "ok", 1), ("fast", "eager", "ok", 1)]
    assert all(r["median_gap_s"] > 0 for r in rows)
    assert _figures(embedded) == (rows, csv_rows)
    assert _figures(on_cluster) == (rows, csv_rows)

"""Mirror-policy training on Ray: one tiny run gives the same curves and weights serially, on an
embedded local Ray with two collection workers and on a real two-node cluster; two runs with the
same seed and worker count give the same checkpoint; a seed sweep writes a run directory per seed
and a summary.

``coop-robot train`` runs as a subprocess, as a user runs it: a Ray driver's settings (its
cluster, its authentication token) belong to its process. One cluster serves the module.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coop_robot.ray_cluster import LocalRayCluster
from coop_robot.training.config import TrainConfig
from coop_robot.training.train import (
    CHECKPOINT_NAME,
    CURVES_CSV,
    CURVES_PNG,
    SWEEP_SUMMARY_CSV,
    SWEEP_SUMMARY_JSON,
    main,
    sweep_runs,
)

REPO = Path(__file__).resolve().parents[1]

# One training iteration: a batch on the untrained network (reactive baseline, validation,
# greedy evaluation, two collected sessions), the updates, a batch on the trained weights.
TINY_YAML = """\
iterations: 1
episodes_per_iteration: 2
turns_per_episode: 1
updates_per_iteration: 2
eval_partners: [typical]
eval_turns: 1
batch_size: 4
sequence_length: 32
burn_in: 8
"""


def _train(out: Path, config: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "coop_robot.training.train", "--config", str(config),
                           "--out", str(out), *args], env=full, capture_output=True, text=True, timeout=400,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _figures(run_dir: Path) -> tuple[str, dict[str, torch.Tensor], dict]:
    """The curves (CSV text), the weights and the checkpoint's ``extra`` of a run."""
    payload = torch.load(run_dir / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    return (run_dir / CURVES_CSV).read_text(encoding="utf-8"), payload["state_dict"], payload["extra"]


def _same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


# ------------------------------------------------------------------ the sweep's plan (no Ray)
def test_a_sweep_has_one_run_per_config_and_seed_named_after_the_config_file(tmp_path):
    a, b = TrainConfig(seed=7), TrainConfig(seed=9, iterations=3)
    runs = sweep_runs([(tmp_path / "base.yaml", a), (tmp_path / "wide.yaml", b)], [0, 1], iterations=2)
    assert [(r.name, r.cfg.seed, r.cfg.iterations) for r in runs] == [
        ("base/seed0", 0, 2), ("base/seed1", 1, 2), ("wide/seed0", 0, 2), ("wide/seed1", 1, 2)]
    # Without --seeds each config keeps its own seed.
    assert [r.name for r in sweep_runs([(None, a), (tmp_path / "wide.yaml", b)], None)] == ["train/seed7", "wide/seed9"]


def test_configs_sharing_a_file_name_or_a_seed_given_twice_exit_2_before_anything_runs(tmp_path, capsys):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "train.yaml").write_text("iterations: 1\n")
    out = tmp_path / "out"
    assert main(["--config", str(tmp_path / "x" / "train.yaml"), str(tmp_path / "y" / "train.yaml"),
                 "--out", str(out)]) == 2
    assert "share the name 'train'" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "x" / "train.yaml"), "--seeds", "1", "1", "--out", str(out)]) == 2
    assert "a seed is given twice: ['train/seed1']" in capsys.readouterr().err
    assert main(["--seeds", "0", "--ray-address", "head", "--out", str(out)]) == 2
    assert "--ray-address must be HOST:PORT" in capsys.readouterr().err
    assert not out.exists()


def test_the_scaling_benchmark_measures_the_collection_as_tasks_that_repeat_their_sessions():
    # bench/ray_scaling.py --workload experience-collection: the same exploring session twice in
    # one worker (its runner kept between tasks) gives the same recorded arrays.
    spec = importlib.util.spec_from_file_location("ray_scaling", REPO / "bench" / "ray_scaling.py")
    module = sys.modules.setdefault("ray_scaling", importlib.util.module_from_spec(spec))
    if not hasattr(module, "WORKLOADS"):
        spec.loader.exec_module(module)
    work = module.WORKLOADS["experience-collection"](argparse.Namespace(sessions=1, turns=1, sweep_seeds=3))
    assert work.sweep.jobs == 3 and work.units_per_item == 1 and "digest" in work.figures
    first, again = work.fn(work.items[0]), work.fn(work.items[0])
    assert first["status"] == "ok" and first["turns"] == 1 and first["steps"] > 0
    assert {k: first[k] for k in work.figures} == {k: again[k] for k in work.figures}


# ------------------------------------------------------------------ runs
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(TINY_YAML, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def serial(tiny, tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("serial") / "run"
    proc = _train(out, tiny, "--ray-address", "none")
    assert "collection: sessions in this process (serial)" in proc.stdout
    assert "env steps/s" in proc.stdout and "ETA" in proc.stdout
    return _figures(out)


@pytest.fixture(scope="module")
def cluster():
    # The cluster's workers at this process's priority, as the embedded Ray's are (Ray's own
    # default lowers them by 15: on a shared machine they would wait behind everything else).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_worker_niceness", "0")
        with LocalRayCluster(nodes=2, cpus_per_node=1) as started:
            yield started
    assert started.processes() == []


@pytest.fixture(scope="module")
def on_cluster(tiny, cluster, tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("cluster") / "run"
    proc = _train(out, tiny, "--ray-address", cluster.address, env=cluster.env)
    assert "collection: sessions on 2 Ray actor(s)" in proc.stdout
    assert f"Ray cluster at {cluster.address}: 2 node(s), 2 CPU(s)" in proc.stderr
    return _figures(out)


@pytest.fixture(scope="module")
def embedded(tiny, tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("embedded") / "run"
    proc = _train(out, tiny, "--workers", "2")
    assert "embedded local Ray: 1 node(s), 2 CPU(s)" in proc.stderr
    assert "collection: sessions on 2 Ray actor(s)" in proc.stdout
    return _figures(out)


@pytest.mark.timeout(600)
def test_a_run_gives_the_same_curves_and_weights_serially_on_embedded_ray_and_on_a_cluster(
        serial, embedded, on_cluster):
    rows = list(csv.DictReader(serial[0].splitlines()))
    assert [int(r["iteration"]) for r in rows] == [0, 1] and int(rows[1]["env_turns"]) == 2
    assert _same(serial, embedded), "embedded Ray with 2 workers differs from the serial run"
    assert _same(serial, on_cluster), "the 2-node cluster differs from the serial run"


@pytest.mark.timeout(60)
def test_two_runs_with_the_same_seed_and_worker_count_give_the_same_checkpoint(embedded, on_cluster):
    # Two workers each, on two Ray instances: other processes, other placement, other timing.
    # The whole checkpoint repeats, its metadata (config, seed, last metrics) included.
    assert _same(embedded, on_cluster)
    assert json.dumps(embedded[2], sort_keys=True) == json.dumps(on_cluster[2], sort_keys=True)


@pytest.mark.timeout(400)
def test_a_seed_sweep_writes_a_run_directory_per_seed_and_a_summary(tiny, serial, cluster, tmp_path):
    out = tmp_path / "sweep"
    proc = _train(out, tiny, "--seeds", "0", "1", "--ray-address", cluster.address, env=cluster.env)
    for seed in (0, 1):
        run_dir = out / "tiny" / f"seed{seed}"
        assert {CHECKPOINT_NAME, CURVES_CSV, CURVES_PNG} <= {p.name for p in run_dir.iterdir()}
    # Progress: runs done / total with the ETA, then the table.
    assert "[  1/2]" in proc.stderr and "[  2/2]" in proc.stderr and "ETA" in proc.stderr
    assert "env steps/s" in proc.stderr and "tiny/seed1" in proc.stdout
    doc = json.loads((out / SWEEP_SUMMARY_JSON).read_text(encoding="utf-8"))
    assert doc["runs_total"] == doc["runs_done"] == 2
    assert doc["ray"]["mode"] == "cluster" and doc["ray"]["nodes"] == 2
    assert [(r["run"], r["seed"], r["run_dir"]) for r in doc["runs"]] == [
        ("tiny/seed0", 0, str(out / "tiny" / "seed0")), ("tiny/seed1", 1, str(out / "tiny" / "seed1"))]
    assert all(r["eval_turns"] == 1 and r["env_steps"] > 0 for r in doc["runs"])
    assert all(r["selected_iteration"] == r["iterations"] for r in doc["runs"])   # no selection: the last
    with open(out / SWEEP_SUMMARY_CSV, newline="", encoding="utf-8") as f:
        assert [r["run"] for r in csv.DictReader(f)] == ["tiny/seed0", "tiny/seed1"]
    # A sweep's run collects serially inside its task: seed 0 is the serial run of seed 0.
    assert _same(serial, _figures(out / "tiny" / "seed0"))
    assert not _same(serial, _figures(out / "tiny" / "seed1"))

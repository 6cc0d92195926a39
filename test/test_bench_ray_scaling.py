"""bench/ray_scaling.py: the sweep estimate and the memory of a process tree (no Ray started here;
test_bench_turn_taking_ray.py runs the benchmark on Ray)."""

import math
import subprocess
import sys
import time

import pytest
from conftest import load_bench

rs = load_bench("ray_scaling")


def test_cores_come_in_whole_rounds_of_sessions():
    assert rs.cores_for(800, 330.0, 3600.0) == 80           # 10 rounds of 330 s fit in an hour
    assert rs.cores_for(800, 360.0, 3600.0) == 80           # exactly 10 rounds
    assert rs.cores_for(800, 361.0, 3600.0) == 89           # 9 rounds: ceil(800 / 9)
    assert rs.cores_for(5, 10.0, 3600.0) == 1
    assert rs.cores_for(800, 4000.0, 3600.0) is None        # one session alone does not fit


def test_the_estimate_uses_the_cpu_per_turn_and_the_measured_start_up():
    def run(cpu, wall, startup=0.0):
        r = rs.Run("ray" if startup else "serial", 2 if startup else 1, startup_s=startup)
        r.results = [{"cpu_s": cpu, "wall_s": wall, "status": "ok"}] * 4
        return r

    sweep = rs.Sweep("2 x 2", jobs=4, units_per_job=100)
    e = rs.estimate(sweep, run(10.0, 20.0), run(10.0, 40.0, startup=600.0), {"wall_per_task_s": 0.0,
                    "driver_cpu_per_task_s": 0.01}, "robot turn", 10, hours=1.0)
    assert e["within_s"] == 3000.0 and e["cpu_per_unit_s"] == 1.0 and e["job_cpu_s"] == 100.0
    assert e["cores_dedicated"] == 1 and e["job_wall_s_here"] == 400.0 and e["cores_as_loaded_here"] == 1
    assert e["core_hours_cpu"] == pytest.approx(400 / 3600, abs=1e-6)
    assert e["driver_bound_cores"] == pytest.approx(10000.0)


def test_the_memory_of_a_process_tree_counts_children_only():
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(64 << 20); time.sleep(60)"])
    try:
        for _ in range(200):
            mem = rs.ray_processes_memory()
            if mem["rss_bytes"] > 64 << 20:
                break
            time.sleep(0.05)
        assert mem["processes"] >= 1 and mem["rss_bytes"] > 64 << 20 and 0 < mem["pss_bytes"] <= mem["rss_bytes"]
        assert mem["workers"] == 0, "a plain child is not a Ray worker"
    finally:
        child.kill()
        child.wait()
    assert math.isclose(rs.ray_processes_memory(root=child.pid)["rss_bytes"], 0)

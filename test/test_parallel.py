"""coop_robot.parallel (jobs on Ray) and coop_robot.ray_cluster (a real two-node cluster here).

The drivers run as subprocesses, as the commands do: a Ray driver's settings (its cluster, its
authentication token) belong to its process.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coop_robot.parallel import SERIAL, TaskError, resolve_address, run_tasks
from coop_robot.ray_cluster import LocalRayCluster

REPO = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    from coop_robot.parallel import run_tasks

    def job(seed):
        rng = np.random.default_rng(seed)
        return {"seed": seed, "value": float(rng.normal(size=10_000).sum()), "pid": os.getpid()}

    info = []
    address = None if sys.argv[1] == "embedded" else sys.argv[1]
    rows = run_tasks(job, list(range(6)), address=address, workers=2, info=info, progress=False)
    print(json.dumps({"rows": rows, "info": info[0].as_dict()}))
''')


def _drive(address: str, env: dict | None = None) -> dict:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", DRIVER, address], env=full, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _square(x):
    return x * x


def _fails_on_three(x):
    if x == 3:
        raise ValueError("three is bad input")
    return x


def test_addresses_are_checked_before_anything_starts(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None) is None
    assert resolve_address("none") == SERIAL and resolve_address("NONE") == SERIAL
    assert resolve_address("auto") == "auto"
    assert resolve_address("10.0.0.5:6379") == "10.0.0.5:6379"
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert resolve_address(None) == "head:6379"
    for bad in ("", "head", "head:", "head:99999", ":6379"):
        with pytest.raises(ValueError, match="ray-address"):
            resolve_address(bad)


def test_serial_runs_in_order_and_names_a_failing_job():
    seen = []
    assert run_tasks(_square, [1, 2, 3], address="none", progress=False,
                     on_result=lambda i, r: seen.append((i, r))) == [1, 4, 9]
    assert seen == [(0, 1), (1, 4), (2, 9)]
    with pytest.raises(TaskError, match=r"job 3 \(x=3\) failed: ValueError: three is bad input"):
        run_tasks(_fails_on_three, range(5), address="none", progress=False, label=lambda i, x: f"x={x}")


@pytest.mark.timeout(900)
def test_the_same_figures_serially_on_embedded_ray_and_on_a_two_node_cluster():
    serial = _drive("none")
    assert serial["info"]["mode"] == "serial"
    embedded = _drive("embedded")
    assert embedded["info"]["mode"] == "local" and embedded["info"]["startup_s"] > 0
    assert embedded["info"]["startup_rss_bytes"] > 0
    with LocalRayCluster(nodes=2, cpus_per_node=1) as cluster:
        on_cluster = _drive(cluster.address, cluster.env)
        assert cluster.processes(), "the cluster's processes are found by its directory"
    assert cluster.processes() == []
    assert on_cluster["info"]["mode"] == "cluster" and on_cluster["info"]["nodes"] == 2
    assert on_cluster["info"]["cpus"] == 2
    figures = [[(r["seed"], r["value"]) for r in run["rows"]] for run in (serial, embedded, on_cluster)]
    assert figures[0] == figures[1] == figures[2]
    # The jobs really ran elsewhere: not in the driver, and on more than one worker process.
    assert len({r["pid"] for r in embedded["rows"]}) >= 1
    assert {r["pid"] for r in embedded["rows"]}.isdisjoint({r["pid"] for r in serial["rows"]})


@pytest.mark.timeout(300)
def test_a_failing_job_on_ray_ends_the_run_naming_it():
    driver = textwrap.dedent('''
        import sys
        from coop_robot.parallel import run_tasks, TaskError
        def job(x):
            if x == 2:
                raise ValueError("bag 2 is truncated")
            return x
        try:
            run_tasks(job, range(4), workers=1, progress=False, label=lambda i, x: f"bag{x}")
        except TaskError as exc:
            print("ERROR", exc)
            sys.exit(3)
    ''')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", driver], env=env, capture_output=True, text=True, timeout=280,
                          check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "job 2 (bag2) failed" in proc.stdout and "bag 2 is truncated" in proc.stdout


@pytest.mark.timeout(300)
def test_ctrl_c_stops_a_run_whose_jobs_take_long(tmp_path):
    """A sweep's jobs run for 40 minutes; Ctrl-C must end the run (and its jobs) at once, not
    after the job it is waiting on. (A driver started in the background of a non-interactive
    shell inherits SIGINT *ignored*, as POSIX has it, and then no Ctrl-C reaches it: kill such a
    run with SIGTERM.)"""
    import signal
    import time

    from conftest import wait_for

    driver = textwrap.dedent('''
        import os, sys, time
        from pathlib import Path
        from coop_robot.parallel import run_tasks
        def job(x, out=sys.argv[1]):  # a default: the worker's own argv is Ray's
            Path(out, f"job{x}.pid").write_text(str(os.getpid()))
            time.sleep(600)
            return x
        run_tasks(job, range(2), workers=1, progress=False)
    ''')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    # As a foreground command in a terminal: SIGINT at its default, whatever this test process
    # inherited (a suite started in the background of a script has it ignored, and exec keeps that).
    proc = subprocess.Popen([sys.executable, "-c", driver, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        pid_file = tmp_path / "job0.pid"
        wait_for(lambda: pid_file.is_file() or proc.poll() is not None, 240, "the first job to start on Ray")
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        job_pid = int(pid_file.read_text())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
        assert time.monotonic() - t0 < 60
        assert not (tmp_path / "job1.pid").exists()  # the queued job never started

        def job_gone() -> bool:
            try:
                os.kill(job_pid, 0)
            except ProcessLookupError:
                return True
            return Path(f"/proc/{job_pid}/status").read_text().find("State:\tZ") >= 0
        wait_for(job_gone, 30, "the running job's worker process to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _reports_twice(x):
    from coop_robot.parallel import report

    report(f"job {x} half way")
    report(f"job {x} nearly done")   # within the period: not printed
    return x


def test_a_serial_job_says_how_far_it_has_got(capsys):
    from coop_robot.parallel import report

    report("outside any job: nothing happens")
    assert run_tasks(_reports_twice, [7], address="none", label=lambda i, x: f"run{x}",
                     job_progress_period_s=60.0) == [7]
    err = capsys.readouterr().err
    assert "run7: job 7 half way" in err and "nearly done" not in err and "outside" not in err
    run_tasks(_reports_twice, [8], address="none", job_progress_period_s=60.0, progress=False)
    assert "half way" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="job_progress_period_s"):
        run_tasks(_square, [1], address="none", job_progress_period_s=0.0)


@pytest.mark.timeout(300)
def test_a_long_job_on_ray_says_how_far_it_has_got(tmp_path):
    """A job on a Ray worker reports (as a sweep's training run does each iteration) and the driver
    prints its latest report while it runs; the job goes on until the test has seen the line."""
    import time

    driver = textwrap.dedent('''
        import sys, time
        from pathlib import Path
        from coop_robot.parallel import report, run_tasks
        def job(x, stop=sys.argv[1]):   # a default: the worker's own argv is Ray's
            step = 0
            while not Path(stop).exists() and step < 1200:
                step += 1
                report(f"step {step} of seed {x}")
                time.sleep(0.1)
            return step
        print(run_tasks(job, [4], workers=1, label=lambda i, x: f"seed{x}", job_progress_period_s=0.5))
    ''')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    stop = tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, "-c", driver, str(stop)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "seed4: step " in line:
                stop.touch()
                break
        assert any("elapsed: seed4: step " in ln and " of seed 4" in ln for ln in lines), "".join(lines)[-3000:]
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        assert int(out.strip().splitlines()[-1].strip("[]")) < 1200   # it stopped on the test's word
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

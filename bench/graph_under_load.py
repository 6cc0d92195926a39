"""The live graph on a busy machine (issue 13, "latency and load"): a mirror session with both
cores loaded by other work, against the same session on the machine as it is, in one run.

For each condition it runs ``coop-robot sim --policy mirror --turns N`` (its own ROS domain), with
``stress-ng --cpu C`` beside it in the loaded one, and reports: the exit status and, for a session
that stopped, the message that names the cause; turns completed, contacts and ground-truth SSM
violations; the median and p90 gap; the policy node's CPU share while it ticks (its process's CPU time
from /proc over wall time, from 10 s after it started, in % of one core) and the rate its ticks came at (the node's own
"not keeping up" warnings, from its log); the ratio loaded / as-is of the gap and of the wall time.
A busy machine runs the sim slower than real time (0.3x on two busy cores), and the node, ticking at
50 Hz of sim time, ticks slower on the wall clock with it: "at 1x" is the same CPU time over the sim
time that passed (coop_sim's log), the share the node would take with the graph at real time.

    python bench/graph_under_load.py [--turns 12] [--load-cpus 2] [--policy mirror]
        [--only-loaded | --only-as-is]

The acceptance (issue 13): loaded, the session completes every turn with zero contacts, or stops
with a message that names the cause; the policy node uses under 10 % of one core at 50 Hz. The
exit status judges both shares, over wall time and at 1x (the one that is 50 Hz of wall time when
the sim ran slower; where coop_sim's log does not give it, the wall share alone); the last line
gives both.
Results go to ``--out`` (results.json) as each condition finishes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coop_robot.procfs import age_seconds, cmdline, cpu_seconds, descendants, process_parents  # noqa: E402

POLICY_MODULE = "coop_robot.nodes.policy_node"
CPU_SHARE_LIMIT = 0.10


def _cpu_and_age_s(pid: int) -> tuple[float, float] | None:
    """(CPU seconds used, seconds since it started) of a process, None once it has gone."""
    cpu, age = cpu_seconds(pid), age_seconds(pid)
    return None if cpu is None or age is None else (cpu, age)


#: coop_sim's stats line, every 10 s of wall time: "[INFO] [<unix s>] [coop_sim]: t=53.6 s sim, ..."
_SIM_STATS = re.compile(r"\[(\d+\.\d+)\] \[coop_sim\]: t=([\d.]+) s sim,")


def sim_time_at(sim_log: Path, unix_s: list[float]) -> list[float] | None:
    """The sim time (s) at each wall-clock instant, interpolated between coop_sim's stats lines
    (None when its log has fewer than two, or an instant lies outside them by more than one interval)."""
    try:
        points = [(float(w), float(t)) for w, t in _SIM_STATS.findall(sim_log.read_text(errors="replace"))]
    except OSError:
        return None
    if len(points) < 2:
        return None
    walls, sims = zip(*points)
    step = (walls[-1] - walls[0]) / (len(walls) - 1)
    if any(not (walls[0] - step <= u <= walls[-1] + step) for u in unix_s):
        return None
    out = []
    for u in unix_s:  # linear in and (within one interval) beyond the logged points
        i = min(max(1, sum(w <= u for w in walls)), len(walls) - 1)
        rate = (sims[i] - sims[i - 1]) / (walls[i] - walls[i - 1])
        out.append(sims[i - 1] + rate * (u - walls[i - 1]))
    return out


class PolicyCpuSampler(threading.Thread):
    """Finds the policy node among the session's processes and measures its CPU share while it
    ticks: CPU seconds over wall seconds from ``settle_s`` after it started (imports and the
    checkpoint load are not ticking) to its last reading."""

    def __init__(self, root_pid: int, settle_s: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.settle_s = settle_s
        self.first: tuple[float, float] | None = None
        self.last: tuple[float, float] | None = None
        self.first_unix_s = self.last_unix_s = math.nan   # wall clock of those readings (the logs' stamps)
        self.stop = threading.Event()

    @property
    def share(self) -> float | None:
        if self.first is None or self.last is None or self.last[1] - self.first[1] < 1.0:
            return None
        return (self.last[0] - self.first[0]) / (self.last[1] - self.first[1])

    def share_at_real_time(self, sim_log: Path) -> float | None:
        """CPU seconds per second of sim time over the same window: the share of one core the node
        would use with the graph at real time, its ticks at ``rate_hz`` of the wall clock (on a busy
        machine the sim runs slower, and the node's share over wall time with it)."""
        if self.share is None:
            return None
        sim = sim_time_at(sim_log, [self.first_unix_s, self.last_unix_s])
        if sim is None or sim[1] - sim[0] < 1.0:
            return None
        return (self.last[0] - self.first[0]) / (sim[1] - sim[0])


    def run(self) -> None:
        pid = None
        while not self.stop.wait(0.5):
            if pid is None:
                tree = descendants({self.root_pid}, process_parents())
                pid = next((p for p in tree if POLICY_MODULE in cmdline(p)), None)
                continue
            reading = _cpu_and_age_s(pid)
            if reading is None:
                return
            if reading[1] >= self.settle_s:
                if self.first is None:
                    self.first, self.first_unix_s = reading, time.time()
                self.last, self.last_unix_s = reading, time.time()


class TurnProgress(threading.Thread):
    """Prints each turn the session's turn tracker logs (turns done / total, wall time)."""

    def __init__(self, log: Path, total: int) -> None:
        super().__init__(daemon=True)
        self.log, self.total = log, total
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        shown = 0
        while not self.stop.wait(1.0):
            try:
                text = self.log.read_text(errors="replace")
            except OSError:
                continue
            turns = re.findall(r"\[turn_tracker\] turn (\d+): gap (-?\d+) ms", text)
            for turn, gap in turns[shown:]:
                print(f"  turn {turn}/{self.total}: gap {gap} ms ({time.monotonic() - self.t0:.0f} s)", flush=True)
            shown = len(turns)


def run_session(args, loaded: bool, out_dir: Path) -> dict:
    name = "loaded" if loaded else "as-is"
    log_dir = out_dir / f"logs_{name}"
    shutil.rmtree(log_dir, ignore_errors=True)
    summary_path = out_dir / f"summary_{name}.json"
    summary_path.unlink(missing_ok=True)
    stress = None
    if loaded:
        stress = subprocess.Popen(["stress-ng", "--cpu", str(args.load_cpus), "--quiet"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cmd = [sys.executable, "-m", "coop_robot.cli", "sim", "--policy", args.policy, "--partner", args.partner,
           "--seed", str(args.seed), "--turns", str(args.turns), "--summary-json", str(summary_path),
           "--log-dir", str(log_dir)]
    print(f"[{name}] {' '.join(cmd[2:])}" + (f"  (beside stress-ng --cpu {args.load_cpus})" if loaded else ""),
          flush=True)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
        sampler = PolicyCpuSampler(proc.pid)
        sampler.start()
        lines = []
        progress = TurnProgress(log_dir / "turn_tracker.log", args.turns)
        progress.start()
        for line in proc.stdout:
            lines.append(line)
        rc = proc.wait()
        progress.stop.set()
        progress.join(timeout=2)
        sampler.stop.set()
        sampler.join(timeout=2)
    finally:
        if stress is not None:
            stress.terminate()
            stress.wait(timeout=10)
    wall = time.monotonic() - t0
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    policy_log = (log_dir / "policy.log").read_text(errors="replace") if (log_dir / "policy.log").is_file() else ""
    keepup = re.findall(r"not keeping up: policy '\w+' ticked at ([\d.]+) Hz", policy_log)
    stop_message = "" if rc == 0 else next((ln.strip() for ln in reversed(lines) if "coop-robot sim:" in ln),
                                           lines[-1].strip() if lines else "")
    return {
        "condition": name, "exit": rc, "stop_message": stop_message, "wall_s": wall,
        "turns": summary.get("turns", 0), "turns_asked": args.turns, "contacts": summary.get("contacts"),
        "ssm_violations": summary.get("ssm_violations"), "median_gap_s": summary.get("median_gap_s"),
        "p90_gap_s": summary.get("p90_gap_s"), "fallbacks": summary.get("fallbacks"),
        "policy_cpu_share": sampler.share,
        "policy_cpu_share_at_real_time": sampler.share_at_real_time(log_dir / "coop_sim.log"),
        "policy_not_keeping_up_warnings": len(keepup),
        "policy_slowest_rate_hz": min((float(r) for r in keepup), default=None),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--turns", type=int, default=12)
    p.add_argument("--policy", default="mirror")
    p.add_argument("--partner", default="typical")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--load-cpus", type=int, default=2, help="stress-ng CPU workers in the loaded condition")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--only-loaded", action="store_true", help="skip the as-is session")
    only.add_argument("--only-as-is", action="store_true",
                      help="only the session on the machine as it is (no stress-ng): for a machine already "
                           "busy with other work, which the report should then name")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "coop_robot_graph_under_load")
    args = p.parse_args(argv)
    if not args.only_as_is and shutil.which("stress-ng") is None:
        print("graph_under_load: stress-ng is not installed (Debian/Ubuntu: apt-get install stress-ng)",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for loaded in ([True] if args.only_loaded else [False] if args.only_as_is else [False, True]):
        rows.append(run_session(args, loaded, args.out))
        (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{'condition':9} {'exit':>4} {'turns':>7} {'contacts':>8} {'SSM viol':>8} {'med gap':>8} {'p90 gap':>8} "
          f"{'policy CPU':>10} {'at 1x':>7} {'behind':>6} {'wall s':>7}")
    for r in rows:
        cpu = "n/a" if r["policy_cpu_share"] is None else f"{100 * r['policy_cpu_share']:.1f} %"
        at_1x = r["policy_cpu_share_at_real_time"]
        at_1x = "n/a" if at_1x is None else f"{100 * at_1x:.1f} %"
        print(f"{r['condition']:9} {r['exit']:4d} {r['turns']:3d}/{r['turns_asked']:<3d} {str(r['contacts']):>8} "
              f"{str(r['ssm_violations']):>8} {_ms(r['median_gap_s']):>8} {_ms(r['p90_gap_s']):>8} {cpu:>10} "
              f"{at_1x:>7} {r['policy_not_keeping_up_warnings']:6d} {r['wall_s']:7.0f}")
        if r["stop_message"]:
            print(f"  stopped: {r['stop_message']}")
    print("(policy CPU: its share of one core over wall time, ticking at rate_hz of sim time; at 1x: CPU "
          "seconds per sim second, its share with the graph at real time, 50 ticks a wall second)")
    if len(rows) == 2 and rows[0]["median_gap_s"] and rows[1]["median_gap_s"]:
        print(f"loaded / as-is: median gap {rows[1]['median_gap_s'] / rows[0]['median_gap_s']:.2f}x, "
              f"wall time {rows[1]['wall_s'] / rows[0]['wall_s']:.2f}x")
    loaded = rows[-1]
    completed = loaded["exit"] == 0 and loaded["turns"] == args.turns and loaded["contacts"] == 0
    named = loaded["exit"] != 0 and bool(loaded["stop_message"])
    cpu_ok = loaded["policy_cpu_share"] is not None and all(
        r["policy_cpu_share"] is not None and r["policy_cpu_share"] < CPU_SHARE_LIMIT for r in rows)
    verdict = ("completed every turn with zero contacts" if completed
               else "stopped, naming the cause" if named else "FAILED")
    at_1x = [r["policy_cpu_share_at_real_time"] for r in rows]
    at_1x_over = None not in at_1x and max(at_1x) >= CPU_SHARE_LIMIT
    at_1x_ok = "n/a" if None in at_1x else "NO" if at_1x_over else "yes"
    print(f"\n{loaded['condition']} session: {verdict}; "
          f"policy node under {100 * CPU_SHARE_LIMIT:.0f} % of one core: {'yes' if cpu_ok else 'NO'} "
          f"(at real time, 50 ticks a wall second: {at_1x_ok})")
    # The share at real time (50 ticks a wall second) is the acceptance's figure when the sim ran
    # slower than real time; where it could not be read from the sim's log, the wall share decides.
    return 0 if (completed or named) and cpu_ok and not at_1x_over else 1


def _ms(value) -> str:
    return "n/a" if value is None else f"{1e3 * value:.0f} ms"


if __name__ == "__main__":
    raise SystemExit(main())

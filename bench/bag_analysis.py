"""Benchmark: offline bag analysis vs a bare read-and-deserialise of the same bag.

Writes a synthetic session bag (default: 1 hour of interaction at the package's topic rates --
/joint_states 100 Hz, three perception topics at 30 Hz, decision + forecast at 50 Hz, controller
and ground-truth events and /turn/timing per turn; no images) with rosbags, then times

* a bare pass: rosbags ``Reader`` over every message + ``deserialize_cdr`` of each, and
* the full ``coop-robot analyze`` of that bag (in-process: scoring, CSV, JSON, plots, HTML report),

prints both times, their ratio and the peak RSS of the analysis (measured in a fresh subprocess
with ``resource.getrusage``). Targets: ratio <= 2, peak RSS < 1 GB; ``--check`` exits 1 if missed.

    python bench/bag_analysis.py                 # 1 h session, MCAP
    python bench/bag_analysis.py --minutes 5 --storage sqlite3 --check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RATIO_TARGET = 2.0
RSS_TARGET_MB = 1024.0


def bare_read(bag: Path) -> tuple[float, int]:
    """Seconds to read and deserialise every message with rosbags, and the message count."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    t0 = time.perf_counter()
    n = 0
    with Reader(bag) as reader:
        for conn, _, data in reader.messages():
            store.deserialize_cdr(data, conn.msgtype)
            n += 1
    return time.perf_counter() - t0, n


def _child(bag: str, out: str) -> None:
    """Run in a subprocess: the full analysis, then report wall time and peak RSS as JSON."""
    import resource

    from coop_robot.cli import main

    t0 = time.perf_counter()
    rc = main(["analyze", bag, "--out", out, "--quiet"])
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # kB on Linux
    print("BENCH_RESULT " + json.dumps({"rc": rc, "wall_s": wall, "peak_rss_mb": peak_kb / 1024.0}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="session length (default 60)")
    ap.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    ap.add_argument("--workdir", type=Path, help="where the bag and the analysis go (default: a temp dir)")
    ap.add_argument("--check", action="store_true", help=f"exit 1 unless ratio <= {RATIO_TARGET} and peak RSS < "
                                                         f"{RSS_TARGET_MB:.0f} MB")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0

    from coop_robot.analysis.synthetic import write_session_bag

    work = args.workdir or Path(tempfile.mkdtemp(prefix="coop_robot_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    bag = work / f"session_{args.storage}"
    if bag.exists():
        print(f"{bag} exists; give an empty --workdir", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    shown = [-1]

    def progress(fraction: float) -> None:
        if int(20 * fraction) > shown[0]:
            shown[0] = int(20 * fraction)
            print(f"writing bag {100 * fraction:5.1f} %", file=sys.stderr, flush=True)

    turns = write_session_bag(bag, duration_s=60.0 * args.minutes, storage=args.storage, robot_motion="min_jerk",
                              progress=progress)
    size_mb = sum(p.stat().st_size for p in bag.iterdir()) / 1e6
    print(f"wrote {bag}: {args.minutes:.0f} min, {len(turns)} turns, {size_mb:.0f} MB in "
          f"{time.perf_counter() - t0:.1f} s")

    bare_s, n = bare_read(bag)
    print(f"bare read + deserialise (rosbags): {n:,} messages in {bare_s:.2f} s ({n / bare_s:,.0f} msg/s)")
    proc = subprocess.run([sys.executable, __file__, "--child", str(bag), str(work / "analysis")],
                          capture_output=True, text=True, cwd=ROOT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
        print("analysis subprocess failed", file=sys.stderr)
        return 1
    res = json.loads(line.split(" ", 1)[1])
    ratio = res["wall_s"] / bare_s
    summary = json.loads((work / "analysis" / bag.name / "summary.json").read_text())
    print(f"coop-robot analyze (in-process, incl. plots + HTML): {res['wall_s']:.2f} s (exit {res['rc']}); "
          f"scored {summary['turns']} turns on {summary['scored_on']}")
    print(f"ratio analyze / bare = {ratio:.2f} (target <= {RATIO_TARGET})")
    print(f"peak RSS of the analysis process = {res['peak_rss_mb']:.0f} MB (target < {RSS_TARGET_MB:.0f} MB)")
    ok = ratio <= RATIO_TARGET and res["peak_rss_mb"] < RSS_TARGET_MB and res["rc"] == 0
    if args.check and not ok:
        print("targets missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

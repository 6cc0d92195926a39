"""Benchmark: turns the robot takes when its moves reach the arm late and perception lags.

The controller core drives the PyBullet arm (:mod:`coop_robot.faults.late_delivery`: the
simulated arm's trajectory executor runs stamped moves on their stamp's timeline, zero-stamped
ones on receipt), with the partner at rest outside the zone and the policy saying "act"
throughout, for ``--seconds`` of sim time per session. Two conditions per seed, measured in the
same run:

* **baseline**: each move delivered 5-15 ms after it is sent, perception 20-60 ms old;
* **loaded**: each move delivered ``--delay-ms`` x U(0.5, 1.5) late, joint states 0-80 ms old, and
  perception gaps of 80-200 ms about every ``--gap-every-s`` (on the loaded 2-core fault campaign,
  moves reached the arm 0.1-0.2 s late and perception was often more than 0.1 s old).

Prints, per condition, the turns acted (``act_start``), reaches aborted, tracking losses ("arm not
following its commands"), reaches taken up again from rest, moves the arm refused and the peak
joint speed over its limit; then the loaded condition's turns as a share of the baseline's.
``--fallback`` makes every "act" the policy's liveness fallback (reaches at ``fallback_speed_scale``).

    python bench/late_delivery.py
    python bench/late_delivery.py --seeds 6 --delay-ms 150 --fallback
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

class _GappyPerception:
    """Perception 20-60 ms old, with gaps of 80-200 ms about every ``every_s`` (loaded) or none."""

    def __init__(self, rng: np.random.Generator, every_s: float, gaps: bool) -> None:
        self.every_s, self.gaps = every_s, gaps
        self.gap_until, self.next_gap = -1.0, rng.uniform(0.2, 2.0 * every_s)
        self.seen_s = 0.0

    def __call__(self, t: float, rng: np.random.Generator) -> float:
        if self.gaps and t >= self.next_gap:
            self.gap_until = t + rng.uniform(0.08, 0.2)
            self.next_gap = t + rng.exponential(self.every_s) + 0.2
        if t >= self.gap_until:
            self.seen_s = t - rng.uniform(0.02, 0.06)
        return self.seen_s


def session(seed: int, seconds: float, loaded: bool, delay_s: float, gap_every_s: float, fallback: bool) -> dict:
    """One session; returns its counts."""
    from coop_robot.faults.late_delivery import late_delivery_session

    perception = _GappyPerception(np.random.default_rng(10_000 + seed), gap_every_s, gaps=loaded)
    r = late_delivery_session(seed, seconds, delay_s if loaded else 0.01, perception,
                              joint_age_s=0.08 if loaded else 0.0, fallback=fallback)
    return {**{k: r[k] for k in ("turns", "aborts", "tracking_losses", "resumed")}, "refused": len(r["refused"]),
            "peak_speed_over_limit": round(r["peak_speed_over_limit"], 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=6, help="sessions per condition (default 6)")
    ap.add_argument("--seconds", type=float, default=15.0, help="sim seconds per session (default 15)")
    ap.add_argument("--delay-ms", type=float, default=150.0, help="mean late delivery, loaded (default 150)")
    ap.add_argument("--gap-every-s", type=float, default=0.6, help="mean time between perception gaps (default 0.6)")
    ap.add_argument("--fallback", action="store_true", help="every 'act' is the policy's liveness fallback")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    if args.seeds < 1 or not args.seconds > 0.0 or args.delay_ms < 0.0 or not args.gap_every_s > 0.0:
        ap.error("--seeds >= 1, --seconds > 0, --delay-ms >= 0 and --gap-every-s > 0")
    results: dict[str, list[dict]] = {"baseline": [], "loaded": []}
    started = time.monotonic()
    total = 2 * args.seeds
    for i, (condition, seed) in enumerate((c, s) for s in range(args.seeds) for c in results):
        r = session(seed, args.seconds, condition == "loaded", args.delay_ms / 1e3, args.gap_every_s, args.fallback)
        results[condition].append(r)
        print(f"[{i + 1:2d}/{total}] seed {seed} {condition:8s} {r}  ({time.monotonic() - started:.0f} s)",
              file=sys.stderr, flush=True)
    keys = ("turns", "aborts", "tracking_losses", "resumed", "refused")
    print(f"\n{args.seeds} sessions per condition, {args.seconds:g} s each; loaded: moves {args.delay_ms:g} ms late "
          f"(x U(0.5, 1.5)), perception gaps every ~{args.gap_every_s:g} s; fallback reaches: {args.fallback}")
    print("| condition | " + " | ".join(keys) + " | peak speed / limit |")
    print("|---|" + "---|" * (len(keys) + 1))
    for condition, rows in results.items():
        sums = [sum(r[k] for r in rows) for k in keys]
        print(f"| {condition} | " + " | ".join(str(v) for v in sums)
              + f" | {max(r['peak_speed_over_limit'] for r in rows):.2f} |")
    base = sum(r["turns"] for r in results["baseline"])
    loaded = sum(r["turns"] for r in results["loaded"])
    print(f"\nloaded / baseline turns: {loaded}/{base} = {loaded / base if base else float('nan'):.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

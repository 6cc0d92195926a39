"""SSM acceleration allowance experiment (issue 10): ground-truth SSM violations and gaps in the fast
environment with the controller budgeting the hand's acceleration (``ssm_human_acceleration_mps2``
a_h) or not, per partner and policy, all in one run.

    python bench/ssm_allowance.py --turns 40 --a-h 0,10 --hand-motion tracker,fit \
        --partners typical erratic test/heldout_partners/fickle.yaml test/heldout_partners/languid.yaml

Prints one row per (hand motion, a_h, partner, policy) as sessions finish, then a table; writes results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from turn_taking import HELDOUT_DIR, resolve_profiles  # noqa: E402

from coop_robot.envs.turn_env import TurnTakingEnv  # noqa: E402
from coop_robot.policy import make_policy  # noqa: E402

DEFAULT_PARTNERS = ["typical", "erratic", str(HELDOUT_DIR / "fickle.yaml"), str(HELDOUT_DIR / "languid.yaml")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--turns", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--a-h", default="0,10", help="comma-separated a_h values (m/s^2)")
    p.add_argument("--hand-motion", default="tracker",
                   help="comma-separated ssm_hand_motion values (tracker, fit): where the controller's hand "
                        "velocity comes from")
    p.add_argument("--partners", nargs="+", default=DEFAULT_PARTNERS, metavar="NAME_OR_YAML",
                   help="shipped profile names or profile YAMLs (default: typical, erratic and the held-out "
                        "fickle and languid)")
    p.add_argument("--policies", nargs="+", default=["eager", "oracle"])
    p.add_argument("--checkpoint-mirror", type=Path, default=None, metavar="PT",
                   help="checkpoint for the mirror policy (default: the shipped one)")
    p.add_argument("--out", type=Path, default=Path("runs/ssm_allowance"))
    args = p.parse_args(argv)
    values = [float(v) for v in args.a_h.split(",") if v.strip()]
    motions = [m.strip() for m in args.hand_motion.split(",") if m.strip()]
    try:
        profiles = resolve_profiles(args.partners, heldout=False, heldout_dir=HELDOUT_DIR)
    except ValueError as exc:  # ProfileError too: names the bad profile
        print(f"ssm_allowance: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    total = len(motions) * len(values) * len(profiles) * len(args.policies)
    for motion, a_h in ((m, a) for m in motions for a in values):
        for profile in profiles:
            partner = profile.name
            for policy in args.policies:
                t0 = time.perf_counter()
                env = TurnTakingEnv(profile.source, seed=args.seed,
                                    controller_params={"ssm_human_acceleration_mps2": a_h,
                                                       "ssm_hand_motion": motion})
                params = {"checkpoint": args.checkpoint_mirror} if policy == "mirror" and args.checkpoint_mirror else {}
                s = env.run(make_policy(policy, **params), args.turns, seed=args.seed, max_sim_s=30.0 * args.turns)
                row = {"hand_motion": motion, "a_h": a_h, "partner": partner, "policy": policy, "turns": s["turns"],
                       "median_gap_s": s["median_gap_s"], "p90_gap_s": s["p90_gap_s"],
                       "overlap_rate": s["overlap_rate"], "ssm_violations": s["ssm_violations"],
                       "min_ssm_margin_m": s["min_ssm_margin_m"], "protective_stop_s": s["protective_stop_s"],
                       "pace_turns_per_min": s["pace_turns_per_min"]}
                rows.append(row)
                print(f"[{len(rows)}/{total}] {motion} a_h {a_h:g} {partner} {policy}: {row['turns']} turns, "
                      f"median gap {_ms(row['median_gap_s'])}, SSM violations {row['ssm_violations']} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
                (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{'motion':7} {'a_h':>5} {'partner':9} {'policy':7} {'turns':>5} {'med gap':>8} {'p90 gap':>8} "
          f"{'overlap':>8} {'viol':>5} {'stop s':>7} {'pace':>5}")
    for r in rows:
        print(f"{r['hand_motion']:7} {r['a_h']:5g} {r['partner']:9} {r['policy']:7} {r['turns']:5d} "
              f"{_ms(r['median_gap_s']):>8} {_ms(r['p90_gap_s']):>8} {100 * r['overlap_rate']:7.1f}% "
              f"{int(r['ssm_violations']):5d} {r['protective_stop_s']:7.1f} {r['pace_turns_per_min']:5.1f}")
    return 0


def _ms(value) -> str:
    return "n/a" if value is None else f"{1e3 * value:.0f} ms"


if __name__ == "__main__":
    raise SystemExit(main())

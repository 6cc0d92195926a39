"""How long a partner's hand stays in the shared zone: on its real turns, and on its false starts.

Why a network can mistake one partner's finished turn for another's false start (issue 10). For
each profile (the five training profiles, the held-out ones in ``test/heldout_partners``, and the
training profiles at the quick end of training's pace variation, ``--scales``), plays ``--turns``
turns of the partner model on its own (a fresh model per turn, seeded by the turn's number, the
robot never in the zone) and prints the 5th percentile, median and 95th percentile of the zone
visits that end a turn and of the visits of false starts that enter the zone:

    python bench/partner_zone_visits.py [--turns 500] [--scales 0.7]

A visit is timed on the hand's true position (entry to exit, 10 ms steps). No robot, no network,
no perception: a property of the profiles alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coop_robot.geometry import world_geometry  # noqa: E402
from coop_robot.partner.model import PartnerModel  # noqa: E402
from coop_robot.partner.profile import PartnerProfile, load_profile, shipped_profiles  # noqa: E402

STEP_S = 0.01
HELDOUT_DIR = REPO / "test" / "heldout_partners"
FALSE_START_PHASES = ("false_start_reach", "false_start_return", "false_start_pause")


def turn_visits(profile: PartnerProfile, seed: int) -> list[tuple[float, bool]]:
    """(duration s, ended the turn) of each zone visit in one turn of the partner, played alone."""
    g = world_geometry()
    model = PartnerModel(profile, np.random.default_rng(seed), np.asarray(g.partner_rest_m, dtype=float),
                         np.asarray(g.task_objects_m, dtype=float), g.zone)
    visits: list[tuple[float, bool]] = []
    t, enter_s, enter_phase = 0.0, None, ""
    while model.phase != "waiting_for_robot" and t < 120.0:
        t += STEP_S
        model.step(t, robot_in_zone=False)
        if model.hand_in_zone and enter_s is None:
            enter_s, enter_phase = t, model.phase
        elif not model.hand_in_zone and enter_s is not None:
            visits.append((t - enter_s, enter_phase not in FALSE_START_PHASES))
            enter_s = None
    return visits


def summarise(profile: PartnerProfile, turns: int) -> dict:
    real, false = [], []
    for k in range(turns):
        for duration, ends_turn in turn_visits(profile, k):
            (real if ends_turn else false).append(duration)
    return {"real": np.asarray(real), "false_start": np.asarray(false)}


def _q(a: np.ndarray) -> str:
    if a.size == 0:
        return "-"
    p5, med, p95 = np.percentile(a, [5, 50, 95])
    return f"{p5:.2f} / {med:.2f} / {p95:.2f} (n={a.size})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=500, help="turns per profile (default 500)")
    ap.add_argument("--scales", type=float, nargs="*", default=[0.7],
                    help="also play the training profiles with their durations times these (default 0.7)")
    args = ap.parse_args(argv)
    profiles = [(load_profile(n), 1.0) for n in shipped_profiles()]
    profiles += [(load_profile(p), 1.0) for p in sorted(HELDOUT_DIR.glob("*.yaml"))]
    profiles += [(load_profile(n), k) for k in args.scales for n in shipped_profiles()]
    print(f"zone visits, s: p5 / median / p95 ({args.turns} turns per profile)")
    print(f"{'partner':<18} {'visits that end the turn':<30} false starts into the zone")
    for profile, k in profiles:
        s = summarise(profile.time_scaled(k), args.turns)
        label = profile.name if k == 1.0 else f"{profile.name} x{k:g}"
        print(f"{label:<18} {_q(s['real']):<30} {_q(s['false_start'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

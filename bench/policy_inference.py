"""Policy inference cost per control tick (issue 3: mirror policy <= 2 ms per tick).

Times, in the same run and on one CPU thread: the reactive policy's ``step`` (the baseline),
the mirror network's single-step forward, and the full ``MirrorPolicy.step`` (features, windows,
network, decision). The network is randomly initialised: the cost does not depend on the weights.

    python bench/policy_inference.py [--ticks 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from coop_robot.geometry import minimum_jerk
from coop_robot.policy import Observation, make_policy
from coop_robot.policy.mirror_net import MirrorNetConfig, MirrorPolicyNet, ObservationSpec, save_checkpoint

BUDGET_MS = 2.0
REST = np.array([1.02, 0.15, 0.80])
TARGET = np.array([0.62, 0.06, 0.70])
ZONE_MIN, ZONE_MAX = np.array([0.45, -0.20, 0.626]), np.array([0.75, 0.20, 0.926])
HOME_EE = np.array([0.412, 0.0, 1.062])


def observations(ticks: int):
    """A partner turn every 4 s, at the policy's 50 Hz."""
    for k in range(ticks):
        t = k * 0.02
        phase = t % 4.0
        s_in, _, _ = minimum_jerk(phase - 0.2, 0.8)
        s_out, _, _ = minimum_jerk(phase - 1.8, 0.7)
        hand = REST + (float(s_in) - float(s_out)) * (TARGET - REST)
        inside = bool(np.all(hand >= ZONE_MIN) and np.all(hand <= ZONE_MAX))
        yield Observation(t_s=t, partner_in_zone=inside, perception_age_s=0.03, partner_hand_m=hand,
                          partner_velocity_mps=np.zeros(3), robot_state="home", robot_ee_m=HOME_EE)


def time_steps(step, obs_list) -> list[float]:
    for obs in obs_list[:50]:  # warm-up
        step(obs)
    out = []
    for obs in obs_list:
        t0 = time.perf_counter()
        step(obs)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    obs_list = list(observations(args.ticks))

    reactive = make_policy("reactive")
    base = time_steps(reactive.step, obs_list)

    torch.manual_seed(0)
    net = MirrorPolicyNet(MirrorNetConfig()).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "bench.pt", net, net.config, ObservationSpec(), {"note": "random weights"})
        from coop_robot.policy.mirror import MirrorPolicy

        mirror = MirrorPolicy(checkpoint=str(ckpt))
        full = time_steps(mirror.step, obs_list)

    cfg = net.config
    s = torch.randn(1, cfg.window_steps, cfg.n_features)
    c = torch.randn(1, cfg.context_dim)
    state = {"h": None}

    def net_step(_obs):
        with torch.inference_mode():
            _, state["h"] = net.step(s, s, c, state["h"])

    raw = time_steps(net_step, obs_list)

    rows = [("reactive.step (baseline)", base), ("MirrorPolicyNet.step", raw), ("MirrorPolicy.step (full tick)", full)]
    print(f"{'what':32} {'median ms':>10} {'p99 ms':>8} {'x baseline':>11}")
    b_med = statistics.median(base)
    for name, vals in rows:
        med = statistics.median(vals)
        p99 = float(np.percentile(vals, 99))
        print(f"{name:32} {med:10.3f} {p99:8.3f} {med / b_med:11.1f}")
    med_full = statistics.median(full)
    ok = med_full <= BUDGET_MS
    print(f"mirror policy per tick: median {med_full:.3f} ms (budget {BUDGET_MS} ms): {'OK' if ok else 'OVER BUDGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

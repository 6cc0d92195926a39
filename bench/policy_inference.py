"""Policy inference cost per control tick (issue 3: mirror policy <= 2 ms per tick), and what torch's
thread pool costs.

Times, in the same run: the reactive policy's ``step`` (the baseline), the mirror network's
single-step forward, and the full ``MirrorPolicy.step`` (features, windows, network, decision),
all on the one torch thread every mirror process uses (``configure_torch_threads``). Then the full
tick with torch's default thread count (one per core) against one thread, interleaved in rounds:
median wall time per tick and CPU time per tick (the process's CPU time over the loop, all
threads), and their ratios default / 1 thread. The network is randomly initialised: the cost
does not depend on the weights.

Then the two engines of the network (``MirrorPolicy(engine=...)``: ``torch``, and ``numpy``, the
copy of the weights the policy node runs by default) on the full tick, first back to back, then
paced as a node ticks -- one tick every 20 ms, the process idle in between, so caches and branch
predictors go cold as they do in the node: CPU ms per tick (the process's CPU time over the
loop) and its share of one core at 50 Hz, interleaved in rounds.

    python bench/policy_inference.py [--ticks 2000] [--rounds 2] [--paced-ticks 500]
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

# torch's own default, before anything in this process sizes the pool.
TORCH_DEFAULT_THREADS = torch.get_num_threads()

from coop_robot.geometry import minimum_jerk, world_geometry  # noqa: E402
from coop_robot.policy import Observation, make_policy  # noqa: E402
from coop_robot.policy.mirror import DEFAULT_ROBOT_HOME_EE_M, ENGINES  # noqa: E402
from coop_robot.policy.mirror_net import MirrorNetConfig, MirrorPolicyNet, ObservationSpec, save_checkpoint  # noqa: E402
from coop_robot.policy.threads import configure_torch_threads  # noqa: E402

BUDGET_MS = 2.0
PERIOD_S = 0.02     # the policy's 50 Hz
REST = np.array(world_geometry().partner_rest_m)
TARGET = np.array([0.62, 0.06, 0.70])  # the simulated partner's in-zone target (sim.world.WorldConfig)
ZONE = world_geometry().zone
HOME_EE = np.array(DEFAULT_ROBOT_HOME_EE_M)


def observations(ticks: int):
    """A partner turn every 4 s, at the policy's 50 Hz."""
    for k in range(ticks):
        t = k * 0.02
        phase = t % 4.0
        s_in, _, _ = minimum_jerk(phase - 0.2, 0.8)
        s_out, _, _ = minimum_jerk(phase - 1.8, 0.7)
        hand = REST + (float(s_in) - float(s_out)) * (TARGET - REST)
        inside = ZONE.contains(hand)
        yield Observation(t_s=t, partner_in_zone=inside, perception_age_s=0.03, partner_hand_m=hand,
                          partner_velocity_mps=np.zeros(3), robot_state="home", robot_ee_m=HOME_EE)


def time_steps(step, obs_list) -> list[float]:
    return time_steps_cpu(step, obs_list)[0]


def time_steps_cpu(step, obs_list) -> tuple[list[float], float]:
    """Wall ms of each call, and the process's CPU ms per call over the timed loop."""
    for obs in obs_list[:50]:  # warm-up
        step(obs)
    out = []
    cpu0 = time.process_time()
    for obs in obs_list:
        t0 = time.perf_counter()
        step(obs)
        out.append((time.perf_counter() - t0) * 1e3)
    cpu_ms = (time.process_time() - cpu0) * 1e3 / len(obs_list)
    return out, cpu_ms


def paced_cpu_ms(step, obs_list) -> float:
    """The process's CPU ms per call with one call every :data:`PERIOD_S` of wall time."""
    for obs in obs_list[:20]:
        step(obs)
    cpu0 = time.process_time()
    next_t = time.perf_counter()
    for obs in obs_list:
        step(obs)
        next_t += PERIOD_S
        time.sleep(max(0.0, next_t - time.perf_counter()))
    return (time.process_time() - cpu0) * 1e3 / len(obs_list)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved default / 1-thread rounds")
    parser.add_argument("--paced-ticks", type=int, default=500, help="ticks per engine and round, one per 20 ms")
    args = parser.parse_args(argv)
    if args.ticks < 100 or args.rounds < 1:
        parser.error(f"need --ticks >= 100 and --rounds >= 1, got {args.ticks} and {args.rounds}")
    obs_list = list(observations(args.ticks))

    torch.manual_seed(0)
    net = MirrorPolicyNet(MirrorNetConfig()).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "bench.pt", net, net.config, ObservationSpec(), {"note": "random weights"})
        threads = {"default": TORCH_DEFAULT_THREADS, "1 thread": 1}
        wall: dict[str, list[float]] = {k: [] for k in threads}
        cpu: dict[str, list[float]] = {k: [] for k in threads}
        for _ in range(args.rounds):
            for label, n in threads.items():
                policy = make_policy("mirror", checkpoint=str(ckpt), torch_threads=n)
                assert torch.get_num_threads() == n
                w, c = time_steps_cpu(policy.step, obs_list)
                wall[label] += w
                cpu[label].append(c)
        configure_torch_threads(1)
        mirror = make_policy("mirror", checkpoint=str(ckpt))
        full = time_steps(mirror.step, obs_list)
        engines = {e: make_policy("mirror", checkpoint=str(ckpt), engine=e) for e in ENGINES}
        full_numpy = time_steps(engines["numpy"].step, obs_list)
        paced: dict[str, list[float]] = {e: [] for e in ENGINES}
        for _ in range(args.rounds):
            for e, policy in engines.items():
                policy.reset()
                paced[e].append(paced_cpu_ms(policy.step, obs_list[:args.paced_ticks]))

    reactive = make_policy("reactive")
    base = time_steps(reactive.step, obs_list)
    cfg = net.config
    s = torch.randn(1, cfg.window_steps, cfg.n_features)
    c = torch.randn(1, cfg.context_dim)
    state = {"h": None}

    def net_step(_obs):
        with torch.inference_mode():
            _, state["h"] = net.step(s, s, c, state["h"])

    raw = time_steps(net_step, obs_list)

    rows = [("reactive.step (baseline)", base), ("MirrorPolicyNet.step", raw), ("MirrorPolicy.step (full tick)", full),
            ("  the same, engine numpy", full_numpy)]
    print(f"torch {torch.__version__}; one torch thread unless stated")
    print(f"{'what':32} {'median ms':>10} {'p99 ms':>8} {'x baseline':>11}")
    b_med = statistics.median(base)
    for name, vals in rows:
        med = statistics.median(vals)
        p99 = float(np.percentile(vals, 99))
        print(f"{name:32} {med:10.3f} {p99:8.3f} {med / b_med:11.1f}")

    print(f"\nfull tick, torch threads: default ({TORCH_DEFAULT_THREADS}) vs 1, {args.rounds} interleaved rounds")
    print(f"{'threads':32} {'median ms':>10} {'p99 ms':>8} {'CPU ms/tick':>12}")
    summary = {}
    for label, n in threads.items():
        med, p99 = statistics.median(wall[label]), float(np.percentile(wall[label], 99))
        cpu_ms = statistics.mean(cpu[label])
        summary[label] = (med, cpu_ms)
        print(f"{f'{label} ({n})':32} {med:10.3f} {p99:8.3f} {cpu_ms:12.3f}")
    (w_d, c_d), (w_1, c_1) = summary["default"], summary["1 thread"]
    print(f"default / 1 thread: wall per tick x{w_d / w_1:.2f}, CPU per tick x{c_d / c_1:.2f}")

    print(f"\nfull tick paced at 50 Hz (one every {PERIOD_S * 1e3:.0f} ms), {args.paced_ticks} ticks x {args.rounds} "
          "interleaved rounds")
    print(f"{'engine':32} {'CPU ms/tick':>12} {'% of a core':>12}")
    for e in ENGINES:
        cpu_ms = statistics.mean(paced[e])
        print(f"{e:32} {cpu_ms:12.3f} {100 * cpu_ms / (PERIOD_S * 1e3):12.1f}")
    print(f"numpy / torch: CPU per paced tick x{statistics.mean(paced['numpy']) / statistics.mean(paced['torch']):.2f}")

    med_full = statistics.median(full)
    ok = med_full <= BUDGET_MS
    print(f"mirror policy per tick: median {med_full:.3f} ms (budget {BUDGET_MS} ms): {'OK' if ok else 'OVER BUDGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Fit the fast environment's perception model to the real perception pipeline on the sim camera.

Method: the simulated person's glove follows realistic partner turns (minimum-jerk reach from
rest to a random point of the shared zone, a dwell with a small tremor, minimum-jerk withdrawal,
a pause) while the robot holds a series of poses: home, beside / above / in the zone, and
"shadow" poses that put the robot hand on the camera's line of sight to the glove (partial and
full occlusion). Every 30 Hz frame is rendered by :class:`~coop_robot.sim.world.SimWorld` and
processed by the real :class:`~coop_robot.perception.HandTracker` with the shipped parameter
files (config/world.yaml, config/perception.yaml) -- the approach of
test/test_perception_accuracy.py. From (truth, detection) pairs:

* frames are split into *clear* and *occluded* with the environment's own geometric test
  (:func:`coop_robot.envs.turn_env.robot_occludes_hand`);
* ``dropout_probability`` / ``occluded_dropout_probability``: share of frames without a detection;
* ``bias_m`` / ``noise_std_m``: per-axis mean and standard deviation of (detected - true) on
  clear frames; ``occluded_noise_std_m``: RMS error about the bias on occluded detections;
* ``noise_correlation``: lag-1 autocorrelation of the clear-frame error within a turn;
* ``latency_s`` = (median ``HandTracker.process`` time + a transport allowance) x the sim's
  ``real_time_factor``: in the graph the sim keeps running at that factor while the perception
  node decodes, tracks and publishes, so a frame's result is published that much *sim* time
  after its stamp. The transport allowance (default 3 ms) covers image (de)serialisation of
  two 320x240 images and localhost DDS delivery.

Usage::

    python -m coop_robot.envs.fit_perception                       # fit and print the YAML
    python -m coop_robot.envs.fit_perception --write config/models/perception_model.yaml

Runs in about a minute (rendering dominates).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from dataclasses import dataclass

import numpy as np
import yaml

from coop_robot.envs.perception_model import YAML_KEY, PerceptionModelParams, tracker_config_from_files
from coop_robot.geometry import minimum_jerk

FPS = 30.0
DEFAULT_TRANSPORT_ALLOWANCE_S = 0.003
# Robot EE spots (world, m) held during successive partner turns: home (None), around the zone,
# then shadow poses ("shadow", sideways offset m) on the camera's line of sight to the target.
ARM_POSES = (None, (0.50, -0.12, 0.85), (0.45, 0.25, 0.95), (0.55, 0.18, 0.80), (0.40, 0.0, 1.0),
             (0.60, 0.20, 0.90), ("shadow", 0.05), ("shadow", 0.035), ("shadow", 0.0))


@dataclass
class PipelineSample:
    """Per frame: true glove centre, tracker output and conditions (``world``, m)."""

    truth_m: np.ndarray       # (N, 3)
    detected: np.ndarray      # (N,) bool
    position_m: np.ndarray    # (N, 3), NaN when not detected
    in_zone: np.ndarray       # (N,) bool, the tracker's in_zone flag
    occluded: np.ndarray      # (N,) bool, environment's geometric occlusion test
    turn: np.ndarray          # (N,) int, partner turn index (frames of a turn are consecutive)
    stamp_s: np.ndarray       # (N,)
    process_s: np.ndarray     # (N,) wall time of HandTracker.process


def partner_turns(rng: np.random.Generator, rest_m, target_m, camera_m, repeats: int = 1):
    """``[(arm spot or None, [glove positions at 30 Hz])]``, one entry per partner turn."""
    rest, target0, camera = (np.asarray(v, dtype=float) for v in (rest_m, target_m, camera_m))
    turns = []
    for _ in range(repeats):
        for arm in ARM_POSES:
            target = target0 + rng.uniform([-0.08, -0.10, -0.04], [0.08, 0.10, 0.06])
            if arm is not None and arm[0] == "shadow":
                to_camera = (camera - target) / np.linalg.norm(camera - target)
                sideways = np.cross(to_camera, [0.0, 0.0, 1.0])
                arm = target + 0.16 * to_camera + arm[1] * sideways / np.linalg.norm(sideways)
            frames = []
            for start, end, duration_s in (
                (rest, target, rng.uniform(0.6, 1.1)),
                (target, rest, rng.uniform(0.6, 1.0)),
            ):
                for k in range(int(round(duration_s * FPS)) + 1):
                    s, _, _ = minimum_jerk(k / FPS, duration_s)
                    frames.append(start + (end - start) * float(s))
                frames += [end + rng.normal(0.0, 0.003, 3) for _ in range(int(rng.uniform(0.2, 0.5) * FPS))]
            turns.append((arm, frames))
    return turns


def collect(seed: int = 0, repeats: int = 2, progress: bool = False) -> PipelineSample:
    """Render partner turns and run the real HandTracker on every frame; see the module docstring."""
    import pybullet

    from coop_robot.control.kinematics import PandaKinematics
    from coop_robot.envs.turn_env import _world_config, robot_occludes_hand
    from coop_robot.perception import HandTracker
    from coop_robot.sim.world import SimWorld

    config = _world_config()
    pose = config.camera_pose
    tracker = HandTracker(tracker_config_from_files(config.zone))
    kinematics = PandaKinematics(config.robot_base_m)
    turns = partner_turns(
        np.random.default_rng(seed), config.partner_rest_m, config.partner_target_m, pose.position_m, repeats
    )
    total = sum(len(f) for _, f in turns)
    rows: dict[str, list] = {
        k: [] for k in ("truth", "detected", "position", "in_zone", "occluded", "turn", "stamp", "process")
    }
    world = SimWorld(config)
    t0 = time.perf_counter()
    try:
        home = config.robot_home_rad
        for index, (spot, frames) in enumerate(turns):
            q = (
                home
                if spot is None
                else pybullet.calculateInverseKinematics(
                    world.robot_id, 11, list(spot), restPoses=list(home) + [0.04, 0.04], physicsClientId=world.client_id
                )[:7]
            )
            world.reset_arm(q)
            joint_frames = kinematics.joint_frames(world.arm_state()[0])
            for hand_m in frames:
                world.set_partner_hand(hand_m)
                world.step()
                rgb, depth_m = world.render()
                truth = world.partner_hand_m
                stamp = len(rows["stamp"]) / FPS
                c0 = time.perf_counter()
                obs = tracker.process(rgb, depth_m, world.intrinsics, pose, stamp)
                rows["process"].append(time.perf_counter() - c0)
                rows["truth"].append(truth)
                rows["detected"].append(obs.detected)
                rows["position"].append(obs.position_m)
                rows["in_zone"].append(obs.in_zone)
                rows["occluded"].append(
                    robot_occludes_hand(joint_frames, truth, pose.position_m, config.glove_radius_m)
                )
                rows["turn"].append(index)
                rows["stamp"].append(stamp)
            if progress:
                done = len(rows["stamp"])
                print(
                    f"  turn {index + 1}/{len(turns)}: {done}/{total} frames, {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        world.close()
    return PipelineSample(
        np.array(rows["truth"]),
        np.array(rows["detected"], dtype=bool),
        np.array(rows["position"], dtype=float),
        np.array(rows["in_zone"], dtype=bool),
        np.array(rows["occluded"], dtype=bool),
        np.array(rows["turn"]),
        np.array(rows["stamp"]),
        np.array(rows["process"]),
    )


def error_statistics(sample: PipelineSample) -> dict:
    """Dropout rates, bias, noise and correlation of a pipeline sample (see the module docstring)."""
    err = sample.position_m - sample.truth_m
    clear, occl = ~sample.occluded, sample.occluded
    det_clear = sample.detected & clear
    det_occl = sample.detected & occl
    if np.count_nonzero(det_clear) < 10:
        raise ValueError(f"need at least 10 clear detections to fit, got {np.count_nonzero(det_clear)}")
    bias = err[det_clear].mean(axis=0)
    std = err[det_clear].std(axis=0, ddof=1)
    occl_std = np.sqrt(np.mean((err[det_occl] - bias) ** 2, axis=0)) if np.count_nonzero(det_occl) >= 3 else std.copy()
    # Lag-1 correlation of consecutive clear detections within a turn, pooled over axes.
    z = (err - bias) / np.where(std > 0, std, 1.0)
    pair = det_clear[:-1] & det_clear[1:] & (sample.turn[:-1] == sample.turn[1:])
    rho = float(np.mean(z[:-1][pair] * z[1:][pair])) if np.count_nonzero(pair) >= 10 else 0.0
    return {
        "frames": int(sample.detected.size),
        "occluded_frames": int(np.count_nonzero(occl)),
        "dropout_probability": float(1.0 - sample.detected[clear].mean()) if np.any(clear) else 0.0,
        "occluded_dropout_probability": float(1.0 - sample.detected[occl].mean()) if np.any(occl) else 0.0,
        "bias_m": bias,
        "noise_std_m": std,
        "occluded_noise_std_m": occl_std,
        "noise_correlation": float(np.clip(rho, 0.0, 0.99)),
        "processing_median_s": float(np.median(sample.process_s)),
        "processing_p90_s": float(np.percentile(sample.process_s, 90)),
    }


def sim_real_time_factor() -> float:
    """The sim node's ``real_time_factor`` (config/sim.yaml); 1.0 when it is 0 (as fast as possible)."""
    from coop_robot.paths import config_path

    with open(config_path("sim.yaml"), encoding="utf-8") as f:
        rtf = float(yaml.safe_load(f)["coop_sim"]["ros__parameters"].get("real_time_factor", 1.0))
    return rtf if rtf > 0.0 else 1.0


def fit(
    sample: PipelineSample,
    transport_allowance_s: float = DEFAULT_TRANSPORT_ALLOWANCE_S,
    real_time_factor: float | None = None,
) -> tuple[PerceptionModelParams, dict]:
    """Model parameters and the fit provenance (``fit_*`` keys) from a pipeline sample."""
    stats = error_statistics(sample)
    rtf = sim_real_time_factor() if real_time_factor is None else float(real_time_factor)
    latency = (stats["processing_median_s"] + transport_allowance_s) * rtf
    params = PerceptionModelParams(
        frame_rate_hz=FPS,
        latency_s=round(latency, 4),
        bias_m=tuple(round(float(v), 5) for v in stats["bias_m"]),
        noise_std_m=tuple(round(float(v), 5) for v in stats["noise_std_m"]),
        noise_correlation=round(stats["noise_correlation"], 3),
        dropout_probability=round(stats["dropout_probability"], 4),
        occluded_dropout_probability=round(stats["occluded_dropout_probability"], 4),
        occluded_noise_std_m=tuple(round(float(v), 5) for v in stats["occluded_noise_std_m"]),
    )
    provenance = {
        "fit_date": datetime.date.today().isoformat(),
        "fit_frames": stats["frames"],
        "fit_occluded_frames": stats["occluded_frames"],
        "fit_processing_median_s": round(stats["processing_median_s"], 5),
        "fit_processing_p90_s": round(stats["processing_p90_s"], 5),
        "fit_transport_allowance_s": transport_allowance_s,
        "fit_real_time_factor": rtf,
    }
    return params, provenance


def to_yaml(params: PerceptionModelParams, provenance: dict, command: str) -> str:
    header = (
        "# Perception model of the fast headless environment (coop_robot.envs.PerceptionModel).\n"
        f"# Fitted {provenance['fit_date']} by running the real HandTracker (config/perception.yaml) on\n"
        f"# {provenance['fit_frames']} SimWorld camera frames (320x240, 30 Hz) of realistic partner reaches while "
        f"the\n# robot held 9 poses per round, {provenance['fit_occluded_frames']} frames with the arm on the line of "
        "sight.\n"
        "# Errors are detected - true glove centre (world frame, m); dropouts = frames without a detection;\n"
        "# latency_s = (median HandTracker.process time + transport allowance) x the sim's real_time_factor\n"
        "# (sim seconds from image stamp to the published result). See coop_robot/envs/fit_perception.py.\n"
        f"# Reproduce: {command}\n"
    )
    body = dict(params.as_dict())
    body.update(provenance)
    return header + yaml.safe_dump({YAML_KEY: body}, sort_keys=False, default_flow_style=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coop_robot.envs.fit_perception", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the partner reaches (default 0)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the 9 arm poses (default 2, ~1200 frames)")
    parser.add_argument(
        "--transport-allowance-s",
        type=float,
        default=DEFAULT_TRANSPORT_ALLOWANCE_S,
        help="serialisation + DDS allowance added to the processing time (s, default 0.003)",
    )
    parser.add_argument("--write", metavar="PATH", help="write the YAML here (default: print it)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if not 0.0 <= args.transport_allowance_s <= 0.5:
        parser.error(f"--transport-allowance-s must be in [0, 0.5] s, got {args.transport_allowance_s}")
    if not args.quiet:
        print(
            f"rendering {9 * args.repeats} partner turns and running the HandTracker on each frame ...",
            file=sys.stderr,
            flush=True,
        )
    sample = collect(args.seed, args.repeats, progress=not args.quiet)
    params, provenance = fit(sample, args.transport_allowance_s)
    command = (
        f"python -m coop_robot.envs.fit_perception --seed {args.seed} --repeats {args.repeats} "
        f"--write config/models/perception_model.yaml"
    )
    text = to_yaml(params, provenance, command)
    if args.write:
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(text)
        if not args.quiet:
            print(f"wrote {args.write}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

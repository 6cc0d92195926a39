"""Camera calibration accuracy in the simulation (issue 13): how close `coop-robot calibrate`'s
solve comes to the sim camera's true pose (config/world.yaml) for several pose counts, pose
selections (seeds) and amounts of joint-encoder noise added to the recorded joint states.

    python bench/calibration_accuracy.py --seeds 0 1 2 3 4 --poses 5 8 12 15 --joint-noise-rad 0 0.0002

Renders the largest pose count once per seed (1280x960, the sim camera's 58 deg field of view),
detects the board once per image, then solves on the first N poses of the selection (each prefix
of the farthest-point order is itself spread in orientation). Prints one row per case and writes
results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coop_robot.calibration.board import BoardSpec, detect_board  # noqa: E402
from coop_robot.calibration.sim_capture import BoardOnArmSim, choose_arm_poses  # noqa: E402
from coop_robot.calibration.solve import CalibrationError, solve  # noqa: E402
from coop_robot.calibration.transforms import flange_poses, make_transform, rotation_angle_rad  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--poses", type=int, nargs="+", default=[5, 8, 12, 15])
    p.add_argument("--joint-noise-rad", type=float, nargs="+", default=[0.0, 0.0002],
                   help="standard deviation of the noise added to every recorded joint position (rad)")
    p.add_argument("--out", type=Path, default=Path("runs/calibration_accuracy"))
    args = p.parse_args(argv)
    board = BoardSpec()
    rows = []
    print(f"{'seed':>4} {'poses':>5} {'noise rad':>9} {'seen':>4} {'pos mm':>7} {'rot deg':>7} {'rms px':>6} "
          f"{'solve s':>7}")
    with BoardOnArmSim(board) as sim:
        truth = make_transform(sim.camera_pose.rotation, sim.camera_pose.position_m)
        k, d = sim.camera_info.camera_matrix, sim.camera_info.dist_coeffs
        for seed in args.seeds:
            q_all = choose_arm_poses(board, max(args.poses), seed=seed)
            views = [detect_board(board, sim.capture(q), k, d) for q in q_all]
            for noise in args.joint_noise_rad:
                rng = np.random.default_rng(1000 + seed)
                q_noisy = q_all + rng.normal(0.0, noise, size=q_all.shape) if noise > 0 else q_all
                for n in args.poses:
                    keep = [i for i in range(n) if views[i] is not None]
                    row = {"seed": seed, "poses": n, "joint_noise_rad": noise, "seen": len(keep)}
                    t0 = time.perf_counter()
                    try:
                        result = solve(flange_poses(q_noisy[keep], sim.robot_base_m), [views[i] for i in keep], k, d)
                    except CalibrationError as exc:
                        row["error"] = str(exc).splitlines()[0]
                        print(f"{seed:4d} {n:5d} {noise:9.4f} {len(keep):4d} refused: {row['error']}")
                        rows.append(row)
                        continue
                    cam = result.camera_in_world
                    row.update(
                        position_error_mm=1000 * float(np.linalg.norm(cam[:3, 3] - truth[:3, 3])),
                        rotation_error_deg=float(np.degrees(rotation_angle_rad(cam[:3, :3].T @ truth[:3, :3]))),
                        reprojection_rms_px=result.reprojection_rms_px, solve_s=time.perf_counter() - t0)
                    rows.append(row)
                    print(f"{seed:4d} {n:5d} {noise:9.4f} {len(keep):4d} {row['position_error_mm']:7.2f} "
                          f"{row['rotation_error_deg']:7.3f} {row['reprojection_rms_px']:6.2f} {row['solve_s']:7.2f}")
    print("\nworst case per pose count and noise (over seeds):")
    for noise in args.joint_noise_rad:
        for n in args.poses:
            ok = [r for r in rows if r["poses"] == n and r["joint_noise_rad"] == noise and "error" not in r]
            refused = sum(1 for r in rows if r["poses"] == n and r["joint_noise_rad"] == noise and "error" in r)
            if ok:
                print(f"  {n:2d} poses, noise {noise:g} rad: max {max(r['position_error_mm'] for r in ok):.2f} mm, "
                      f"{max(r['rotation_error_deg'] for r in ok):.3f} deg over {len(ok)} seeds"
                      + (f"; {refused} refused" if refused else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"argv": sys.argv, "rows": rows}, indent=2), encoding="utf-8")
    print(f"results written to {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

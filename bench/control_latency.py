"""Latency of the control path in the running graph, hop by hop (issue 13, "latency and load").

The nodes measure their own hops and publish them once a second on ``/diagnostics``
(``coop_robot: latency <hop>``, session p50 / p99 / max):

* ``camera->perception``: the image's stamp -> perception has published the hand for it;
* ``camera->policy``: the image's stamp -> the first policy tick that sees that frame;
* ``camera->controller``: the image's stamp -> the end of the first controller tick that uses it
  (its command, if it sends one, is out: the camera-to-command latency);
* ``command->arm``: a trajectory's stamp (the controller's clock when sent) -> the arm receives it.

and the graph's own share of that, node by node, without the camera driver's:

* ``camera->received``: the image's stamp -> perception holds the colour/depth pair (the driver's
  capture-to-publish latency and the transport: in a rehearsal, the cell's rendering and its
  emulated delivery latency, ``cell_camera_latency_s``);
* ``received->perception``: the pair's arrival -> the hand published for it;
* ``hand->controller``: the hand's arrival at the controller -> the end of the first tick that
  uses it (the controller ticks on a complete frame, not only on its timer).

The graph's camera-to-command share is ``received->perception`` + transport + ``hand->controller``
for one frame; the script prints the sum of the two measured p99s, a bound on the p98 of their sum
(a frame over the sum is over one of the two p99s). The hand's transport from perception to the
controller is not in it: ``camera->controller`` - ``camera->perception`` shows it with the
controller's share.

This script runs a session with ``--record`` (``coop-robot sim``, or any command given after
``--`` that records a bag into ``{bag}``), reads the bag's ``/diagnostics`` with rosbags and prints
the table. In ``coop-robot sim`` the clock is the simulator's: latencies are in sim time, which
runs slower than the wall clock when the machine is busy (the sim waits for perception).

    python bench/control_latency.py [--turns 10] [--policy mirror]
    python bench/control_latency.py -- coop-robot rehearse --turns 10 --record {bag}
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coop_robot.timing.keepup import LATENCY_HOPS, LATENCY_STATUS_PREFIX  # noqa: E402

#: Issue 13's bar for the camera-to-command latency on an idle machine.
P99_LIMIT_S = 0.025


def read_latencies(bag: Path) -> dict[str, dict[str, float]]:
    """The last ``coop_robot: latency <hop>`` status of each hop in the bag's /diagnostics."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    found: dict[str, dict[str, float]] = {}
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        conns = [c for c in reader.connections if c.topic == "/diagnostics"]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            for status in msg.status:
                if status.name.startswith(LATENCY_STATUS_PREFIX):
                    found[status.name[len(LATENCY_STATUS_PREFIX):]] = {kv.key: float(kv.value) for kv in status.values}
    return found


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = None
    if "--" in argv:
        command, argv = argv[argv.index("--") + 1:], argv[:argv.index("--")]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--policy", default="mirror")
    p.add_argument("--partner", default="typical")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bag", type=Path, help="read this recording instead of running a session")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "coop_robot_control_latency")
    args = p.parse_args(argv)
    bag = args.bag
    if bag is None:
        args.out.mkdir(parents=True, exist_ok=True)
        bag = args.out / "bag"
        shutil.rmtree(bag, ignore_errors=True)
        if command is None:
            command = [sys.executable, "-m", "coop_robot.cli", "sim", "--policy", args.policy, "--partner",
                       args.partner, "--seed", str(args.seed), "--turns", str(args.turns), "--record", "{bag}"]
        command = [str(bag) if part == "{bag}" else part for part in command]
        print("running:", " ".join(command), flush=True)
        rc = subprocess.call(command, cwd=REPO)
        if rc != 0:
            print(f"control_latency: the session exited {rc}", file=sys.stderr)
            if not bag.exists():
                return 1
    latencies = read_latencies(bag)
    if not latencies:
        print(f"control_latency: no latency statuses on /diagnostics in {bag}", file=sys.stderr)
        return 1
    print(f"\n{'hop':20} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for hop in LATENCY_HOPS:
        row = latencies.get(hop)
        if row is None:
            print(f"{hop:20} {'not measured':>7}")
            continue
        print(f"{hop:20} {int(row['count']):7d} {1e3 * row['p50_s']:8.1f} {1e3 * row['p99_s']:8.1f} "
              f"{1e3 * row['max_s']:8.1f}")
    (args.out if args.bag is None else Path(tempfile.gettempdir())).mkdir(parents=True, exist_ok=True)
    out_json = (args.out if args.bag is None else Path(tempfile.gettempdir())) / "control_latency.json"
    out_json.write_text(json.dumps(latencies, indent=1))
    command_row = latencies.get("camera->controller")
    if command_row is None:
        return 1
    ok = command_row["p99_s"] < P99_LIMIT_S
    print(f"\ncamera-to-command p99 {1e3 * command_row['p99_s']:.1f} ms: "
          f"{'under' if ok else 'NOT under'} {1e3 * P99_LIMIT_S:.0f} ms (results in {out_json})")
    own = [latencies.get(hop) for hop in ("received->perception", "hand->controller")]
    if all(own) and "camera->received" in latencies:
        bound = sum(row["p99_s"] for row in own)
        print(f"of it the camera driver and transport (camera->received) p50 "
              f"{1e3 * latencies['camera->received']['p50_s']:.1f} ms, p99 "
              f"{1e3 * latencies['camera->received']['p99_s']:.1f} ms; the graph's own share (frame arrival "
              f"-> command): p98 at most {1e3 * bound:.1f} ms (sum of its two p99s), "
              f"{'under' if bound < P99_LIMIT_S else 'NOT under'} {1e3 * P99_LIMIT_S:.0f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""``coop-robot replay``: run a bag's recorded perception stream through a policy offline.

The policy's :class:`~coop_robot.policy.base.Observation` is rebuilt at its tick rate (50 Hz on
the bag's clock by default) from /partner/in_zone, /partner/hand (perception age = tick time -
the hand's stamp), /partner/hand_velocity, /controller/state, /joint_states (the EE by forward
kinematics, for the mirror policy) and, for the oracle, /sim/ground_truth/partner_plan -- each tick
sees the messages logged up to that time, as the live policy node would. The replay is open loop:
the robot state fed back is the *recorded* one.

Per robot turn (a window starting when the partner is perceived entering the zone) it reports
when the replayed policy first said "act", when the recorded /policy/decision did, and the
recorded reach_start (/controller/events); overall, the fraction of ticks with the same decision
and the median / p90 of the per-turn decision time difference (replayed - recorded). Writes
replay.csv, replay.json and replay.png.

The bag is read exactly as ``coop-robot analyze`` reads it (:class:`~coop_robot.analysis.bags.BagReader`:
damaged, truncated or metadata-less bags are read as far as they are intact), with the same type
checks and the same exit-status rule (``coop_robot.analysis.analyze_cmd.EXIT_RULE``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coop_robot.control.controller import parse_decision_text, parse_state_text
from coop_robot.geometry import world_geometry

PLAN_TOPIC = "/sim/ground_truth/partner_plan"
INPUT_TOPICS = ("/partner/in_zone", "/partner/hand", "/partner/hand_velocity", "/controller/state",
                "/joint_states", "/policy/decision", "/controller/events", PLAN_TOPIC)
#: Observations cannot be built without these.
REQUIRED_TOPICS = ("/partner/in_zone", "/partner/hand")


class ReplayError(ValueError):
    """The bag cannot be replayed through this policy as asked (a usage error; the message says why)."""


def add_arguments(parser) -> None:
    from coop_robot.analysis.analyze_cmd import EXIT_RULE, _wrap

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _wrap(EXIT_RULE.replace("analysing", "replaying").replace(
        " With several bags the highest status wins.", ""))
    parser.add_argument("bag", type=Path, metavar="BAG", help="rosbag2 directory or .mcap/.db3 file")
    parser.add_argument("--policy", required=True, help="policy to replay (reactive, oracle, mirror)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="policy parameter, e.g. --set debounce_s=0.3 (repeatable; YAML values)")
    parser.add_argument("--rate-hz", type=float, default=None,
                        help="policy tick rate on the bag clock (default: the mirror checkpoint's, else 50)")
    base = list(world_geometry().robot_base_m)
    parser.add_argument("--robot-base", type=float, nargs=3, default=base, metavar=("X", "Y", "Z"),
                        help="robot base in world (m) for the EE by FK (default: config/world.yaml's robot_base_m, "
                             f"{' '.join(f'{v:g}' for v in base)})")
    parser.add_argument("--out", type=Path, default=Path("replay"), help="output directory (default: ./replay)")


@dataclass
class _Window:
    """One robot-turn window: from a perceived partner entry to the next."""

    partner_enter_s: float
    partner_exit_s: float = math.nan
    recorded_act_s: float = math.nan
    replay_act_s: float = math.nan
    reach_start_s: float = math.nan

    @property
    def active(self) -> bool:
        return not all(math.isnan(v) for v in (self.recorded_act_s, self.replay_act_s, self.reach_start_s))


@dataclass
class ReplayResult:
    bag: str
    policy: str
    rate_hz: float
    ticks: int = 0
    ticks_compared: int = 0
    ticks_agree: int = 0
    confusion: dict = field(default_factory=dict)
    windows: list[_Window] = field(default_factory=list)
    issues: list = field(default_factory=list)

    def turns(self) -> list[_Window]:
        return [w for w in self.windows if w.active]

    def summary(self) -> dict:
        turns = self.turns()
        diffs = np.array([w.replay_act_s - w.recorded_act_s for w in turns
                          if math.isfinite(w.replay_act_s) and math.isfinite(w.recorded_act_s)])
        return {
            "bag": self.bag, "policy": self.policy, "rate_hz": self.rate_hz, "ticks": self.ticks,
            "ticks_compared": self.ticks_compared,
            "agreement": self.ticks_agree / self.ticks_compared if self.ticks_compared else None,
            "confusion_recorded_to_replayed": self.confusion,
            "robot_turns": len(turns),
            "turns_both_acted": int(diffs.size),
            "turns_only_recorded_acted": sum(1 for w in turns
                                             if math.isnan(w.replay_act_s) and math.isfinite(w.recorded_act_s)),
            "turns_only_replay_acted": sum(1 for w in turns
                                           if math.isfinite(w.replay_act_s) and math.isnan(w.recorded_act_s)),
            "median_decision_diff_s": float(np.median(diffs)) if diffs.size else None,
            "p90_decision_diff_s": float(np.percentile(diffs, 90)) if diffs.size else None,
            "median_abs_decision_diff_s": float(np.median(np.abs(diffs))) if diffs.size else None,
            "issues": [i.as_dict() for i in self.issues],
        }


def replay_bag(path: str | Path, policy_name: str, params: dict | None = None, rate_hz: float | None = None,
               robot_base_m=None) -> ReplayResult:
    """Replay one bag through ``make_policy(policy_name, **params)``; raises ReplayError (usage:
    the bag holds nothing to replay, or not what this policy needs), BagError (NotABagError: not a
    bag) or PolicyError when it cannot. Data problems (damage, wrong types, missing topics) are
    error issues in the result."""
    from coop_robot.analysis.bags import BagIssue, BagReader, header_stamp_ns
    from coop_robot.analysis.session import bag_zone
    from coop_robot.policy import Observation, make_policy
    from coop_robot.recording.topics import INTERACTION_TOPICS
    from coop_robot.timing.feed import JointStateMerger

    params = dict(params or {})
    with BagReader(path) as bag:
        bag.expect_types({t: INTERACTION_TOPICS[t] for t in INPUT_TOPICS})

        def no_plan() -> ReplayError:
            return ReplayError(f"policy 'oracle' needs {PLAN_TOPIC} (the simulated partner's planned exits), which "
                               f"bag {bag.path} does not contain; it exists only in simulation recordings")

        # Only an intact index can say up front what the bag holds; otherwise read it and see.
        if bag.index_complete and policy_name == "oracle" and not bag.message_counts.get(PLAN_TOPIC):
            raise no_plan()
        if policy_name == "mirror":
            zone, _ = bag_zone(bag.custom_data)
            params.setdefault("zone_min_m", list(map(float, zone.min_m)))
            params.setdefault("zone_max_m", list(map(float, zone.max_m)))
        policy = make_policy(policy_name, **params)
        if rate_hz is None:
            spec = getattr(policy, "spec", None)
            rate_hz = float(getattr(spec, "tick_rate_hz", 50.0)) if spec is not None else 50.0
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ReplayError(f"--rate-hz must be > 0, got {rate_hz!r}")
        need_ee = policy_name == "mirror"
        if need_ee:
            from coop_robot.control.kinematics import PandaKinematics

            fk = PandaKinematics() if robot_base_m is None else PandaKinematics(base_m=robot_base_m)
            joints = JointStateMerger()
        counts: dict[str, int] = {}
        period_ns = int(round(1e9 / rate_hz))
        result = ReplayResult(bag=str(bag.path), policy=policy_name, rate_hz=rate_hz)

        state = {"in_zone": None, "hand": np.full(3, np.nan), "vel": np.full(3, np.nan), "stamp_s": -math.inf,
                 "robot": "unknown", "ee": np.full(3, np.nan), "plan": None, "recorded": None}
        last = {"replay": None, "recorded": None, "in_zone": None}
        windows = result.windows
        next_tick = None

        def tick(t_ns: int) -> None:
            t = t_ns * 1e-9
            obs = Observation(t_s=t, partner_in_zone=state["in_zone"], perception_age_s=t - state["stamp_s"],
                              partner_hand_m=state["hand"], partner_velocity_mps=state["vel"],
                              robot_state=state["robot"], robot_ee_m=state["ee"],
                              partner_planned_exit_s=state["plan"])
            action = policy.step(obs).action
            result.ticks += 1
            rec = state["recorded"]
            if rec is not None:
                result.ticks_compared += 1
                result.ticks_agree += rec == action
                key = f"{rec}->{action}"
                result.confusion[key] = result.confusion.get(key, 0) + 1
            if windows and action == "act" and last["replay"] != "act" and math.isnan(windows[-1].replay_act_s):
                windows[-1].replay_act_s = t
            last["replay"] = action

        for msg in bag.messages(INPUT_TOPICS):
            counts[msg.topic] = counts.get(msg.topic, 0) + 1
            if next_tick is None:
                next_tick = -(-msg.log_ns // period_ns) * period_ns
            while next_tick < msg.log_ns:   # a tick sees the messages logged up to and at its time
                tick(next_tick)
                next_tick += period_ns
            topic = msg.topic
            t_s = msg.log_ns * 1e-9
            obj = bag.decode(msg)
            if obj is None:
                continue
            if topic == "/partner/in_zone":
                flag = bool(obj.data)
                if flag and last["in_zone"] is False or (flag and last["in_zone"] is None):
                    windows.append(_Window(partner_enter_s=t_s))
                elif not flag and last["in_zone"] and windows and math.isnan(windows[-1].partner_exit_s):
                    windows[-1].partner_exit_s = t_s
                last["in_zone"] = flag
                state["in_zone"] = flag
            elif topic == "/partner/hand":
                state["hand"] = np.array([obj.point.x, obj.point.y, obj.point.z])
                stamp = header_stamp_ns(msg)
                state["stamp_s"] = stamp * 1e-9 if stamp is not None else t_s
            elif topic == "/partner/hand_velocity":
                state["vel"] = np.array([obj.vector.x, obj.vector.y, obj.vector.z])
            elif topic == "/controller/state":
                state["robot"] = parse_state_text(obj.data)[0]  # "reaching ssm_stop" -> "reaching"
            elif topic == "/joint_states" and need_ee:
                try:
                    q = joints.update(obj.name, obj.position)   # partial joint states merged by name
                except ValueError:
                    q = None
                if q is not None:
                    state["ee"] = np.asarray(fk.ee_position(q))
            elif topic == PLAN_TOPIC and obj.source == "planned_exit":
                state["plan"] = obj.time_ref.sec + obj.time_ref.nanosec * 1e-9
            elif topic == "/policy/decision":
                try:
                    recorded = parse_decision_text(obj.data)[0]   # "act fallback" (the liveness bound's) is an "act"
                except ValueError:
                    recorded = str(obj.data)                      # not a decision: compared as it came
                if (recorded == "act" and last["recorded"] != "act" and windows
                        and math.isnan(windows[-1].recorded_act_s)):
                    windows[-1].recorded_act_s = t_s
                last["recorded"] = recorded
                state["recorded"] = recorded
            elif topic == "/controller/events" and obj.source == "reach_start":
                if windows and math.isnan(windows[-1].reach_start_s):
                    windows[-1].reach_start_s = obj.time_ref.sec + obj.time_ref.nanosec * 1e-9
        result.issues = list(bag.issues)
        if bag.messages_read == 0 and not bag.damaged:
            raise ReplayError(f"bag {bag.path} holds no messages on the topics a replay reads "
                              f"({', '.join(INPUT_TOPICS)}): nothing to replay")
        if policy_name == "oracle" and not counts.get(PLAN_TOPIC) and not bag.damaged:
            raise no_plan()
        missing = [t for t in REQUIRED_TOPICS if not counts.get(t)]
        if missing:
            result.issues.append(BagIssue("error", "missing_topic", f"bag {bag.path} has no usable "
                                          f"{', '.join(missing)}: no observations could be built from it"))
        if need_ee and joints.missing:
            result.issues.append(BagIssue("error", "joint_states", f"/joint_states never gave a position for "
                                          f"{joints.missing}: the mirror policy saw no end effector", "/joint_states"))
    # Merge windows without robot activity (partner false starts / re-entries) into the next one.
    merged: list[_Window] = []
    for w in result.windows:
        if merged and not merged[-1].active:
            w.partner_enter_s = merged[-1].partner_enter_s
            merged[-1] = w
        else:
            merged.append(w)
    result.windows = merged
    return result


def write_outputs(result: ReplayResult, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    turns = result.turns()
    paths = {"csv": out_dir / "replay.csv", "json": out_dir / "replay.json", "plot": out_dir / "replay.png"}
    with open(paths["csv"], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["turn", "partner_enter_s", "partner_exit_s", "recorded_act_s", "replay_act_s", "reach_start_s",
                    "decision_diff_s"])
        for i, t in enumerate(turns, 1):
            w.writerow([i, *(f"{v:.6f}" for v in (t.partner_enter_s, t.partner_exit_s, t.recorded_act_s,
                                                  t.replay_act_s, t.reach_start_s, t.replay_act_s - t.recorded_act_s))])
    summary = result.summary()
    summary["per_turn"] = [{"turn": i, "partner_enter_s": t.partner_enter_s, "partner_exit_s": t.partner_exit_s,
                            "recorded_act_s": t.recorded_act_s, "replay_act_s": t.replay_act_s,
                            "reach_start_s": t.reach_start_s} for i, t in enumerate(turns, 1)]
    paths["json"].write_text(json.dumps(summary, indent=2), encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3), dpi=90)
    pts = [(t.recorded_act_s, 1000 * (t.replay_act_s - t.recorded_act_s)) for t in turns
           if math.isfinite(t.replay_act_s) and math.isfinite(t.recorded_act_s)]
    if pts:
        x, y = np.array(pts).T
        ax.plot(x, y, ".", color="#4477aa")
        ax.axhline(0, color="k", lw=1)
    ax.set(xlabel="recorded act time (s, bag clock)", ylabel="replayed - recorded (ms)",
           title=f"'{result.policy}' replayed vs recorded decision")
    fig.tight_layout()
    fig.savefig(paths["plot"])
    plt.close(fig)
    return paths


def run(args) -> int:
    from coop_robot.analysis.bags import BagError, NotABagError
    from coop_robot.cli import parse_settings
    from coop_robot.policy import PolicyError

    if not args.bag.exists():
        print(f"coop-robot replay: no such bag: {args.bag}", file=sys.stderr)
        return 2
    try:
        params = parse_settings(args.settings)
        result = replay_bag(args.bag, args.policy, params, args.rate_hz, args.robot_base)
    except (ReplayError, PolicyError, ValueError, NotABagError) as exc:
        print(f"coop-robot replay: {exc}", file=sys.stderr)
        return 2
    except BagError as exc:
        print(f"coop-robot replay: {exc}", file=sys.stderr)
        return 1
    paths = write_outputs(result, args.out)
    s = result.summary()
    for issue in result.issues:
        print(f"  {issue}", file=sys.stderr)
    agree = "n/a (no /policy/decision)" if s["agreement"] is None else f"{100 * s['agreement']:.1f} %"

    def ms(v):
        return "n/a" if v is None else f"{1000 * v:.0f} ms"

    print(f"replayed {args.bag} through '{args.policy}' at {result.rate_hz:.0f} Hz: {s['ticks']} ticks, agreement "
          f"{agree}; {s['robot_turns']} robot turns, {s['turns_both_acted']} with both decisions: replayed - recorded "
          f"median {ms(s['median_decision_diff_s'])}, p90 {ms(s['p90_decision_diff_s'])}")
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 1 if any(i.severity == "error" for i in result.issues) else 0

"""Score a recorded session offline: per-turn timing, occupancy and a summary like ``coop-robot sim``'s.

The scoring is the live turn tracker's, fed from the bag (DESIGN.md "Metrics", BAGS.md):

* ``scored_on: ground_truth`` when the bag holds /sim/ground_truth/events: their events, plus
  ``reach_start`` from /controller/events, go to :class:`~coop_robot.timing.tracker.TurnTracker`
  with their ``time_ref`` stamps, exactly as ``turn_tracker_node`` does;
* otherwise ``scored_on: perception``: partner edges from /partner/in_zone sampled at the stamp of
  the frame's /partner/hand (:class:`~coop_robot.timing.tracker.OccupancyEdges`, the node's rule),
  robot edges from /joint_states through ``PandaKinematics`` forward kinematics of the EE and the
  shared zone (the bag's own ``coop_robot.zone_*`` custom data, else config/world.yaml).

When ground truth is present the perception scoring is computed as well and reported alongside.
Memory stays bounded on long bags: only per-turn records, occupancy intervals and per-topic
counters are kept; joint states go through FK in small batches.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coop_robot.analysis.bags import BagError, BagIssue, BagReader, TimingChecker, header_stamp_ns
from coop_robot.geometry import Zone
from coop_robot.timing.metrics import TurnRecord
from coop_robot.timing.tracker import OccupancyEdges, TurnTracker

GT_EVENTS = "/sim/ground_truth/events"
GT_NAMES = {"partner_enter", "partner_exit", "robot_enter", "robot_exit", "contact_begin", "contact_end"}
PERCEPTION_INPUTS = ("/partner/in_zone", "/partner/hand", "/joint_states")
#: The package's interaction topics that a robot (not only the simulation) publishes (BAGS.md).
ROBOT_TOPICS = (
    "/joint_states", "/partner/hand", "/partner/hand_velocity", "/partner/in_zone", "/policy/decision",
    "/policy/exit_forecast", "/controller/state", "/controller/events", "/turn/events", "/turn/timing",
)
DEFAULT_ZONE_MIN_M = (0.45, -0.20, 0.626)
DEFAULT_ZONE_MAX_M = (0.75, 0.20, 0.926)
DEFAULT_ROBOT_BASE_M = (0.0, 0.0, 0.626)
META_KEYS = ("policy", "partner", "seed", "max_turns")
FK_BATCH = 128


def _world_zone() -> Zone:
    """The shared zone from config/world.yaml (falls back to its documented values)."""
    import yaml

    path = Path(__file__).resolve().parents[2] / "config" / "world.yaml"
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))["/**"]["ros__parameters"]
        return Zone.from_lists(params["zone_min_m"], params["zone_max_m"])
    except (OSError, KeyError, TypeError, ValueError):
        return Zone.from_lists(DEFAULT_ZONE_MIN_M, DEFAULT_ZONE_MAX_M)


def bag_zone(custom_data: dict[str, str]) -> tuple[Zone, str]:
    """The zone the recording used (``coop_robot.zone_min_m``/``_max_m`` custom data) or world.yaml's."""
    lo, hi = custom_data.get("coop_robot.zone_min_m"), custom_data.get("coop_robot.zone_max_m")
    if lo and hi:
        try:
            return Zone.from_lists(json.loads(lo), json.loads(hi)), "bag metadata"
        except (ValueError, TypeError):
            pass
    return _world_zone(), "config/world.yaml"


@dataclass
class _Scoring:
    """One scoring source: the tracker plus the occupancy intervals of what it released."""

    tracker: TurnTracker
    intervals: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: {"partner": [], "robot": []})
    _since: dict[str, float] = field(default_factory=dict)
    pushed: int = 0

    def push(self, name: str, t_s: float) -> None:
        self.pushed += 1
        self.tracker.push(name, t_s)

    def release(self, now_s: float, flush: bool = False) -> None:
        released, _ = self.tracker.release(now_s, flush=flush)
        for name, t in released:
            agent, _, edge = name.partition("_")
            if agent not in self.intervals or edge not in ("enter", "exit"):
                continue
            if edge == "enter":
                self._since.setdefault(agent, t)
            elif agent in self._since:
                self.intervals[agent].append((self._since.pop(agent), t))

    def close(self) -> None:
        self.release(0.0, flush=True)
        for agent, t0 in list(self._since.items()):   # still inside at the end of the recording
            self.intervals[agent].append((t0, max(t0, self.tracker.segmenter.last_event_s)))
        self._since.clear()


@dataclass
class SessionResult:
    """Everything the analysis found in one bag."""

    bag: str
    name: str
    summary: dict = field(default_factory=dict)
    records: list[TurnRecord] = field(default_factory=list)
    issues: list[BagIssue] = field(default_factory=list)
    intervals: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0

    @property
    def damaged(self) -> bool:
        return self.error is not None or any(i.severity == "error" for i in self.issues)


class _JointBatch:
    """Joint states waiting for batched forward kinematics (one FK call per batch, not per message)."""

    def __init__(self, zone: Zone, base_m, edges: OccupancyEdges, scoring: _Scoring, issues: list) -> None:
        from coop_robot.control.kinematics import PandaKinematics

        self.fk = PandaKinematics(base_m=base_m)
        self.zone, self.edges, self.scoring, self.issues = zone, edges, scoring, issues
        self.t: list[float] = []
        self.q: list[np.ndarray] = []
        self.bad = 0
        self._index: tuple[tuple[str, ...], list[int]] | None = None

    def add(self, t_s: float, names, positions) -> None:
        names = tuple(names)
        if self._index is None or self._index[0] != names:
            try:
                order = [names.index(j) for j in (f"panda_joint{i}" for i in range(1, 8))]
            except ValueError:
                self.bad += 1
                if self.bad == 1:
                    self.issues.append(BagIssue("error", "joint_states", f"/joint_states without all of panda_joint1..7 "
                                                f"(got names {list(names)}); such messages are skipped", "/joint_states"))
                return
            self._index = (names, order)
        pos = np.asarray(positions, dtype=float)
        if pos.shape[0] < len(names):
            self.bad += 1
            return
        self.t.append(t_s)
        self.q.append(pos[self._index[1]])
        if len(self.t) >= FK_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.t:
            return
        ee = self.fk.fk_many(np.vstack(self.q))
        inside = self.zone.contains_many(ee) & np.all(np.isfinite(ee), axis=1)
        for t_s, flag in zip(self.t, inside.tolist()):
            for name, t in self.edges.sample(bool(flag), t_s):
                self.scoring.push(name, t)
        self.t, self.q = [], []


def _positive_int(value) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def _meta_from_values(values, meta: dict) -> None:
    for kv in values:
        key = kv.key.removeprefix("session_")
        if key in META_KEYS and kv.value not in ("", "unknown") and meta.get(key) is None:
            meta[key] = kv.value


def analyze_bag(path: str | Path, *, reorder_window_s: float = 2.0, robot_base_m=DEFAULT_ROBOT_BASE_M,
                zone: Zone | None = None, progress: Callable[[float, int], None] | None = None) -> SessionResult:
    """Score one bag. Never raises for a damaged bag: problems land in ``result.issues`` /
    ``result.error`` (unreadable) and whatever could be read is scored."""
    path = Path(path)
    result = SessionResult(bag=str(path), name=path.name)
    t_wall = time.perf_counter()
    try:
        bag = BagReader(path).open()
    except BagError as exc:
        result.error = str(exc)
        result.issues.append(BagIssue("error", "storage", str(exc)))
        return result
    with bag:
        _score(bag, result, reorder_window_s, robot_base_m, zone, progress)
    result.wall_s = time.perf_counter() - t_wall
    return result


def _score(bag: BagReader, result: SessionResult, reorder_window_s, robot_base_m, zone, progress) -> None:
    zone, zone_source = (zone, "argument") if zone is not None else bag_zone(bag.custom_data)
    gt = _Scoring(TurnTracker("ground_truth", reorder_window_s=reorder_window_s))
    perc = _Scoring(TurnTracker("perception", reorder_window_s=reorder_window_s))
    partner_edges = OccupancyEdges("partner")
    joints = _JointBatch(zone, robot_base_m, OccupancyEdges("robot"), perc, result.issues)
    checker = TimingChecker()
    counts: dict[str, int] = {}
    meta: dict[str, str | None] = {k: None for k in META_KEYS}
    for key in META_KEYS:
        if bag.custom_data.get(f"coop_robot.{key}"):
            meta[key] = bag.custom_data[f"coop_robot.{key}"]
    live_gaps: dict[int, float] = {}
    live_scored_on: str | None = None
    in_zone: bool | None = None
    total = sum(bag.message_counts.values()) or None
    span = (bag.start_ns, bag.end_ns) if bag.start_ns is not None and bag.end_ns and bag.end_ns > bag.start_ns else None
    next_release_ns = None
    next_progress = 0
    n = 0
    for msg in bag.messages():
        n += 1
        topic = msg.topic
        counts[topic] = counts.get(topic, 0) + 1
        stamp_ns = header_stamp_ns(msg)
        checker.observe(topic, msg.log_ns if stamp_ns is None else stamp_ns, msg.log_ns)
        if topic == "/joint_states":
            obj = bag.decode(msg)
            if obj is not None:
                joints.add(stamp_ns * 1e-9, obj.name, obj.position)
        elif topic == "/partner/in_zone":
            obj = bag.decode(msg)
            if obj is not None:
                in_zone = bool(obj.data)
        elif topic == "/partner/hand":
            if in_zone is not None and stamp_ns is not None:
                for name, t in partner_edges.sample(in_zone, stamp_ns * 1e-9):
                    perc.push(name, t)
        elif topic == GT_EVENTS:
            obj = bag.decode(msg)
            if obj is not None and obj.source in GT_NAMES:
                t = obj.time_ref.sec + obj.time_ref.nanosec * 1e-9
                gt.push(obj.source, t)
                if obj.source.startswith("contact"):
                    perc.push(obj.source, t)
        elif topic == "/controller/events":
            obj = bag.decode(msg)
            if obj is not None and obj.source == "reach_start":
                t = obj.time_ref.sec + obj.time_ref.nanosec * 1e-9
                gt.push("reach_start", t)
                perc.push("reach_start", t)
        elif topic in ("/turn/timing", "/diagnostics"):
            obj = bag.decode(msg)
            for status in (obj.status if obj is not None else ()):
                _meta_from_values(status.values, meta)
                if topic == "/turn/timing":
                    vals = {kv.key: kv.value for kv in status.values}
                    try:
                        live_gaps[int(vals["turn"])] = float(vals["gap_s"])
                        live_scored_on = vals.get("scored_on", live_scored_on)
                    except (KeyError, ValueError):
                        pass
        if next_release_ns is None:
            next_release_ns = msg.log_ns + 1_000_000_000
        elif msg.log_ns >= next_release_ns:   # once per second of log time: FK, then release old events
            joints.flush()
            now_s = msg.log_ns * 1e-9
            gt.release(now_s)
            perc.release(now_s)
            next_release_ns = msg.log_ns + 1_000_000_000
        if progress is not None and n >= next_progress:
            next_progress = n + 20000
            if span:
                progress(min(1.0, max(0.0, (msg.log_ns - span[0]) / (span[1] - span[0]))), n)
            elif total:
                progress(min(1.0, n / total), n)
    joints.flush()
    gt.close()
    perc.close()
    if progress is not None:
        progress(1.0, n)

    has_gt = gt.pushed > 0
    primary = gt if has_gt else perc
    missing_perception = [t for t in PERCEPTION_INPUTS if not counts.get(t)]
    issues = result.issues
    if not has_gt and missing_perception:
        issues.append(BagIssue("error", "missing_topic",
                               f"bag {bag.path}: cannot score on perception without {', '.join(missing_perception)} "
                               f"(and there is no {GT_EVENTS}); missing: {', '.join(missing_perception)}"))
    if not counts.get("/controller/events"):
        issues.append(BagIssue("note", "missing_topic", "no /controller/events in the bag: response latency "
                                                        "(reach_start) is unavailable", "/controller/events"))
    absent = [t for t in ROBOT_TOPICS if not counts.get(t) and t not in missing_perception
              and t != "/controller/events"]
    if absent:
        issues.append(BagIssue("note", "missing_topic", f"interaction topics not in the bag: {', '.join(absent)}"))
    issues.extend(checker.issues())
    issues[0:0] = bag.issues   # storage problems first

    seed = meta["seed"]
    try:
        seed = int(seed) if seed is not None else None
    except ValueError:
        pass
    # The live session was N robot turns (the turn tracker's max_turns): turns the robot took while
    # the graph was shutting down are not part of it, as in the live summary.
    max_turns = _positive_int(meta["max_turns"])
    summary = primary.tracker.summary(limit=max_turns, policy=meta["policy"] or "unknown",
                                      partner=meta["partner"] or "unknown", seed=seed)
    result.records = list(primary.tracker.records)[:max_turns]
    extra = len(primary.tracker.records) - len(result.records)
    if extra:
        issues.append(BagIssue("note", "session_length",
                               f"the session was {max_turns} robot turns (turn tracker max_turns); {extra} later "
                               f"turn(s), taken while the graph shut down, are not scored"))
    result.intervals = primary.intervals
    summary.update({
        "bag": str(bag.path),
        "storage": bag.storage,
        "damaged": any(i.severity == "error" for i in issues),
        "messages": n,
        "topics": dict(sorted(counts.items())),
        "zone": {"min_m": list(map(float, zone.min_m)), "max_m": list(map(float, zone.max_m)), "source": zone_source},
        "issues": [i.as_dict() for i in issues],
    })
    if has_gt and not missing_perception:
        alt = perc.tracker.summary(limit=max_turns, policy=summary["policy"], partner=summary["partner"], seed=seed)
        alt.pop("per_turn", None)
        summary["perception_summary"] = alt
    if live_gaps:
        diffs = [abs(r.gap_s - live_gaps[r.turn]) for r in result.records if r.turn in live_gaps
                 and math.isfinite(r.gap_s)]
        summary["live_check"] = {
            "live_turns": len(live_gaps), "live_scored_on": live_scored_on, "turns_compared": len(diffs),
            "max_abs_gap_diff_s": max(diffs) if diffs else None,
        }
    result.summary = summary


# ---------------------------------------------------------------------------------------- outputs
CSV_FIELDS = ("turn", "partner_exit_s", "robot_enter_s", "robot_exit_s", "gap_s", "overlap_s",
              "response_latency_s", "contact", "overlapped")


def write_turns_csv(records: list[TurnRecord], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_FIELDS)
        for r in records:
            w.writerow([r.turn, *(f"{getattr(r, k):.6f}" for k in CSV_FIELDS[1:7]), r.contact, r.overlapped])


def write_outputs(result: SessionResult, out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """turns.csv, summary.json and the plots of one bag into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    summary = dict(result.summary) if result.summary else {
        "bag": result.bag, "damaged": True, "error": result.error, "issues": [i.as_dict() for i in result.issues]}
    if result.error:
        summary["error"] = result.error
    summary["analysis_wall_s"] = round(result.wall_s, 3)
    paths["summary"] = out_dir / "summary.json"
    paths["summary"].write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    if result.summary:
        paths["turns"] = out_dir / "turns.csv"
        write_turns_csv(result.records, paths["turns"])
        if plots:
            from coop_robot.analysis.report import write_plots

            paths.update(write_plots(result, out_dir))
    return paths

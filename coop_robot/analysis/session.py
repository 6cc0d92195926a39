"""Score a recorded session offline: per-turn timing, occupancy and a summary like ``coop-robot sim``'s.

The scoring is the live turn tracker's: the bag's messages are turned into plain values and fed to
:class:`~coop_robot.timing.feed.TurnFeed`, the core the ``turn_tracker`` node uses (docs/architecture.md
"Metrics"; docs/recording_and_analysis.md). Two feeds run side by side, one per source:

* ``scored_on: ground_truth`` when the bag holds events on /sim/ground_truth/events (simulation;
  nothing else in a bag counts as ground truth -- a lab bag's /controller/events does not);
* otherwise ``scored_on: perception``: partner edges from /partner/in_zone at the stamp of the
  frame's /partner/hand, robot edges from /joint_states (merged by joint name) through forward
  kinematics of the EE and the shared zone (the bag's ``coop_robot.zone_*`` custom data, else
  config/world.yaml).

Separation comes from /sim/ground_truth/ssm (ground truth) or /controller/ssm (perception), the
partner's turn from /sim/partner/phase (at the message's log time) unless the sim published its
turn events. When ground truth is present the perception scoring is reported alongside. Topics the analysis
reads must have their documented types (a wrong type is an error naming topic, expected and found
type). The recorded live result (/turn/timing) is compared with the offline scoring of the same
source: a gap differing by more than :func:`~coop_robot.timing.feed.live_check_tolerance_s` or a
live turn missing offline is an error. Memory stays bounded on long bags: only per-turn records, occupancy intervals and
per-topic counters are kept.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coop_robot.analysis.bags import BagError, BagIssue, BagReader, NotABagError, TimingChecker, header_stamp_ns
from coop_robot.analysis.separation import ExitAlignedTraces
from coop_robot.control.controller import decision_text
from coop_robot.geometry import Zone, world_geometry
from coop_robot.recording.topics import INTERACTION_TOPICS
from coop_robot.timing.feed import (
    CONTROLLER_EVENTS,
    FEED_TOPICS,
    GROUND_TRUTH_EVENTS,
    JOINT_STATES,
    PARTNER_HAND,
    PARTNER_IN_ZONE,
    PARTNER_PHASE,
    PERCEPTION_INPUTS,
    SSM_TOPIC_FOR,
    TurnFeed,
    live_check_tolerance_s,
    scoring_for_recording,
)
from coop_robot.timing.metrics import TurnRecord
from coop_robot.timing.ssm_sample import CONTROLLER_SSM, GROUND_TRUTH_SSM, SSM_STATUS_NAME, SsmSample

GT_EVENTS = GROUND_TRUTH_EVENTS
#: Every topic the analysis reads, with the type it must have.
POLICY_DECISION = "/policy/decision"
FALLBACK_ACT = decision_text("act", fallback=True)   # the liveness bound's "act" on POLICY_DECISION
ANALYSIS_TOPICS: dict[str, str] = {t: INTERACTION_TOPICS[t]
                                   for t in (*FEED_TOPICS, "/turn/timing", "/diagnostics", POLICY_DECISION)}
#: The package's interaction topics that a robot (not only the simulation) publishes (docs/recording_and_analysis.md).
ROBOT_TOPICS = (
    "/joint_states", "/partner/hand", "/partner/hand_velocity", "/partner/in_zone", "/policy/decision",
    "/policy/exit_forecast", "/controller/state", "/controller/events", "/controller/ssm", "/turn/events",
    "/turn/timing",
)
DEFAULT_ROBOT_BASE_M = world_geometry().robot_base_m
META_KEYS = ("policy", "partner", "seed", "max_turns")
#: Release the trackers' old events once per this much log time (ns).
RELEASE_EVERY_NS = 1_000_000_000


def _world_zone() -> Zone:
    """The shared zone of the package's config/world.yaml (a bag that does not name its own)."""
    return world_geometry().zone


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
class _Source:
    """One scoring source: its feed plus the occupancy intervals of the events it released."""

    feed: TurnFeed
    intervals: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: {"partner": [], "robot": []})
    traces: ExitAlignedTraces = field(default_factory=ExitAlignedTraces)
    _since: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tracker.on_separation = self.traces.sample

    @property
    def tracker(self):
        return self.feed.tracker

    def release(self, now_s: float, flush: bool = False) -> None:
        for name, t in self.feed.release(now_s, flush=flush).events:
            if name == "partner_exit":
                self.traces.partner_exit(t)
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
        self.traces.close()


@dataclass
class SessionResult:
    """Everything the analysis found in one bag."""

    bag: str
    name: str
    summary: dict = field(default_factory=dict)
    records: list[TurnRecord] = field(default_factory=list)
    issues: list[BagIssue] = field(default_factory=list)
    intervals: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    separation_traces: ExitAlignedTraces | None = None   # separation and S_p around partner exits
    error: str | None = None
    usage_error: bool = False      # the path is not a bag / holds nothing to analyse
    wall_s: float = 0.0

    @property
    def damaged(self) -> bool:
        """The bag itself is unreadable, damaged or unusable (results are partial)."""
        return self.error is not None or any(i.severity == "error" and i.kind != "live_check" for i in self.issues)

    @property
    def exit_code(self) -> int:
        """2: usage error (not a bag, nothing to analyse); 1: a data problem (damaged bag, wrong
        topic types, missing topics, live check disagreement); 0: clean."""
        if self.usage_error:
            return 2
        return 1 if self.error is not None or any(i.severity == "error" for i in self.issues) else 0


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
        result.usage_error = isinstance(exc, NotABagError)
        result.issues.append(BagIssue("error", "not_a_bag" if result.usage_error else "storage", str(exc)))
        return result
    with bag:
        _score(bag, result, reorder_window_s, robot_base_m, zone, progress)
    result.wall_s = time.perf_counter() - t_wall
    return result


def _score(bag: BagReader, result: SessionResult, reorder_window_s, robot_base_m, zone, progress) -> None:
    zone, zone_source = (zone, "argument") if zone is not None else bag_zone(bag.custom_data)
    bag.expect_types(ANALYSIS_TOPICS)
    feed_args = {"zone": zone, "robot_base_m": robot_base_m, "reorder_window_s": reorder_window_s}
    gt = _Source(TurnFeed("ground_truth", **feed_args))
    perc = _Source(TurnFeed("perception", **feed_args))
    feeds = (gt.feed, perc.feed)
    checker = TimingChecker()
    counts: dict[str, int] = {}
    meta: dict[str, str | None] = {k: None for k in META_KEYS}
    for key in META_KEYS:
        if bag.custom_data.get(f"coop_robot.{key}"):
            meta[key] = bag.custom_data[f"coop_robot.{key}"]
    live_gaps: dict[int, float] = {}
    live_scored_on: str | None = None
    bad_joint_states, first_joint_error = 0, ""
    bad_ssm: dict[str, int] = {}
    first_ssm_error: dict[str, str] = {}
    fallbacks, in_fallback = 0, False   # the policy's liveness bound deciding "act" ("act fallback")
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
        if topic == JOINT_STATES:
            obj = bag.decode(msg)
            if obj is not None:
                try:
                    perc.feed.joint_state(stamp_ns * 1e-9, obj.name, obj.position)
                except ValueError as exc:
                    bad_joint_states += 1
                    first_joint_error = first_joint_error or str(exc)
        elif topic == PARTNER_IN_ZONE:
            obj = bag.decode(msg)
            if obj is not None:
                for feed in feeds:
                    feed.partner_in_zone(bool(obj.data))
        elif topic == PARTNER_HAND:
            if stamp_ns is not None:
                for feed in feeds:
                    feed.partner_hand(stamp_ns * 1e-9)
        elif topic in (GROUND_TRUTH_EVENTS, CONTROLLER_EVENTS):
            obj = bag.decode(msg)
            if obj is not None:
                t = obj.time_ref.sec + obj.time_ref.nanosec * 1e-9
                for feed in feeds:
                    if topic == GROUND_TRUTH_EVENTS:
                        feed.ground_truth_event(obj.source, t)
                    else:
                        feed.controller_event(obj.source, t)
        elif topic in (GROUND_TRUTH_SSM, CONTROLLER_SSM):
            obj = bag.decode(msg)
            for status in (obj.status if obj is not None and stamp_ns is not None else ()):
                if status.name != SSM_STATUS_NAME:
                    continue
                try:
                    sample = SsmSample.from_key_values(((kv.key, kv.value) for kv in status.values), stamp_ns * 1e-9)
                except ValueError as exc:
                    bad_ssm[topic] = bad_ssm.get(topic, 0) + 1
                    first_ssm_error.setdefault(topic, str(exc))
                    continue
                for feed in feeds:
                    feed.ssm_sample(topic, sample)
        elif topic == POLICY_DECISION:
            obj = bag.decode(msg)
            if obj is not None:
                now_fallback = str(obj.data) == FALLBACK_ACT
                fallbacks += now_fallback and not in_fallback
                in_fallback = now_fallback
        elif topic == PARTNER_PHASE:
            obj = bag.decode(msg)
            if obj is not None:
                for feed in feeds:
                    feed.partner_phase(obj.data, msg.log_ns * 1e-9)
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
            next_release_ns = msg.log_ns + RELEASE_EVERY_NS
        elif msg.log_ns >= next_release_ns:   # once per second of log time: FK, then release old events
            now_s = msg.log_ns * 1e-9
            gt.release(now_s)
            perc.release(now_s)
            next_release_ns = msg.log_ns + RELEASE_EVERY_NS
        if progress is not None and n >= next_progress:
            next_progress = n + 20000
            if span:
                progress(min(1.0, max(0.0, (msg.log_ns - span[0]) / (span[1] - span[0]))), n)
            elif total:
                progress(min(1.0, n / total), n)
    gt.close()
    perc.close()
    if progress is not None:
        progress(1.0, n)

    issues = result.issues
    if n == 0 and not bag.damaged:
        result.error = f"bag {bag.path} holds no messages: nothing to analyse"
        result.usage_error = True
        issues[0:0] = bag.issues
        issues.append(BagIssue("error", "empty", result.error))
        return
    scored_on = scoring_for_recording(gt.feed.ground_truth_events)
    has_gt = scored_on == "ground_truth"
    primary = gt if has_gt else perc
    missing_perception = [t for t in PERCEPTION_INPUTS if not counts.get(t)]
    if not has_gt and missing_perception:
        issues.append(BagIssue("error", "missing_topic",
                               f"bag {bag.path}: cannot score on perception without {', '.join(missing_perception)} "
                               f"(and there is no {GT_EVENTS}); missing: {', '.join(missing_perception)}"))
    joints = perc.feed.joints
    if counts.get(JOINT_STATES) and (joints.missing or bad_joint_states):
        why = []
        if joints.missing:
            why.append(f"no message gave a position for {joints.missing} (joints named: "
                       f"{sorted(joints.names_seen)})")
        if bad_joint_states:
            why.append(f"{bad_joint_states} message(s) unusable ({first_joint_error})")
        issues.append(BagIssue("error" if not has_gt else "warning", "joint_states",
                               f"/joint_states cannot place the robot: {'; '.join(why)}", JOINT_STATES))
    for topic, bad in sorted(bad_ssm.items()):
        issues.append(BagIssue("error" if topic == SSM_TOPIC_FOR[scored_on] else "warning", "ssm",
                               f"{bad} {topic} message(s) unusable: {first_ssm_error[topic]}", topic))
    if not counts.get(SSM_TOPIC_FOR[scored_on]):
        issues.append(BagIssue("note", "missing_topic", f"no {SSM_TOPIC_FOR[scored_on]} in the bag: separation "
                                                        "(min separation, SSM margin and violations) is unavailable",
                               SSM_TOPIC_FOR[scored_on]))
    if not counts.get(CONTROLLER_EVENTS):
        issues.append(BagIssue("note", "missing_topic", "no /controller/events in the bag: response latency "
                                                        "(reach_start) is unavailable", CONTROLLER_EVENTS))
    absent = [t for t in ROBOT_TOPICS if not counts.get(t) and t not in missing_perception
              and t not in (CONTROLLER_EVENTS, SSM_TOPIC_FOR[scored_on])]
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
    result.separation_traces = primary.traces
    if has_gt and not missing_perception:
        alt = perc.tracker.summary(limit=max_turns, policy=summary["policy"], partner=summary["partner"], seed=seed)
        alt.pop("per_turn", None)
        summary["perception_summary"] = alt
    if live_gaps:
        hand = checker.topics.get(PARTNER_HAND)
        frame_s = hand.period_ns * 1e-9 if hand is not None and hand.period_ns else None
        sources = {"ground_truth": gt if has_gt else None, "perception": perc if not missing_perception else None}
        compared = sources.get(live_scored_on) or primary
        summary["live_check"] = _live_check(live_gaps, live_scored_on, compared, max_turns,
                                            live_check_tolerance_s(frame_s), issues)
    # How often the liveness bound decided: None for a bag without the policy's decisions.
    summary["liveness_fallbacks"] = fallbacks if counts.get(POLICY_DECISION) else None
    summary.update({
        "bag": str(bag.path),
        "storage": bag.storage,
        "damaged": any(i.severity == "error" and i.kind != "live_check" for i in issues),
        "messages": n,
        "topics": dict(sorted(counts.items())),
        "zone": {"min_m": list(map(float, zone.min_m)), "max_m": list(map(float, zone.max_m)), "source": zone_source},
        "issues": [i.as_dict() for i in issues],
    })
    result.summary = summary


def _live_check(live_gaps: dict[int, float], live_scored_on: str | None, compared: _Source,
                max_turns: int | None, tolerance_s: float, issues: list[BagIssue]) -> dict:
    """Compare the recorded live per-turn gaps with the offline scoring of the same source."""
    offline = {r.turn: r.gap_s for r in compared.tracker.records}
    turns = sorted(t for t in live_gaps if max_turns is None or t <= max_turns)
    missing = [t for t in turns if t not in offline]
    diffs = {t: abs(offline[t] - live_gaps[t]) for t in turns if t in offline
             and math.isfinite(offline[t]) and math.isfinite(live_gaps[t])}
    off = {t: d for t, d in diffs.items() if d > tolerance_s}
    scoring = compared.tracker.scoring
    check = {
        "live_turns": len(live_gaps), "live_scored_on": live_scored_on, "offline_scored_on": scoring,
        "turns_compared": len(diffs), "max_abs_gap_diff_s": max(diffs.values()) if diffs else None,
        "tolerance_s": tolerance_s, "turns_disagreeing": sorted(off), "live_turns_missing_offline": missing,
        "agrees": not off and not missing and bool(diffs),
    }
    if off or missing or not diffs:
        parts = []
        if off:
            worst = max(off, key=off.get)
            parts.append(f"{len(off)} of {len(diffs)} turns differ by more than {1000 * tolerance_s:.1f} ms (worst: "
                         f"turn {worst}, live gap {1000 * live_gaps[worst]:.1f} ms vs offline "
                         f"{1000 * offline[worst]:.1f} ms)")
        if missing:
            parts.append(f"{len(missing)} of {len(turns)} live turns have no offline turn (offline scored "
                         f"{len(offline)} turns)")
        if not diffs and not missing:
            parts.append("no live turn could be compared")
        issues.append(BagIssue("error", "live_check",
                               f"the recorded /turn/timing (scored on {live_scored_on or 'unknown'}) disagrees with "
                               f"the offline scoring on {scoring}: {'; '.join(parts)}. Check --robot-base and the "
                               "zone, or whether the live tracker dropped events", "/turn/timing"))
    return check


# ---------------------------------------------------------------------------------------- outputs
CSV_FIELDS = ("turn", "partner_exit_s", "robot_enter_s", "robot_exit_s", "gap_s", "overlap_s",
              "response_latency_s", "contact", "overlapped", "near_miss", "unfinished_turn_entry",
              "min_separation_m", "min_ssm_margin_m", "ssm_violations", "protective_stop_s", "speed_scaled_s",
              "aborted_reaches")


def write_turns_csv(records: list[TurnRecord], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_FIELDS)
        for r in records:
            w.writerow([r.turn, *(f"{getattr(r, k):.6f}" for k in CSV_FIELDS[1:7]), r.contact, r.overlapped,
                        r.near_miss, r.unfinished_turn_entry, f"{r.min_separation_m:.6f}", f"{r.min_ssm_margin_m:.6f}",
                        r.ssm_violations, f"{r.protective_stop_s:.6f}", f"{r.speed_scaled_s:.6f}", r.aborted_reaches])


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

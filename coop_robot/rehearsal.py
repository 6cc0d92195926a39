"""A rehearsal's ground-truth check: the cell's truth log scored, and set against the graph's own
perception-scored timing.

In hardware mode (``coop-robot rehearse``, ``robot.launch.py rehearsal:=true``) the graph scores
its turns on perception, as on a lab robot, and the simulated cell writes what really happened to
its truth log (:class:`coop_robot.sim.cell.TruthLog`). :func:`score_truth_log` scores that log with
the turn tracker's own core (:class:`coop_robot.timing.feed.TurnFeed`, ground-truth scoring: one
definition of every metric), and :func:`compare` pairs each perceived turn with the true one (the
nearest robot entry) and checks the rehearsal: every turn completed, no contact, the perceived gaps
within :data:`GAP_TOLERANCE_S` (median) of the true ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coop_robot.geometry import Zone
from coop_robot.sim.cell import TruthLogError, read_truth_log
from coop_robot.timing.feed import TurnFeed
from coop_robot.timing.metrics import TurnRecord
from coop_robot.timing.ssm_sample import GROUND_TRUTH_SSM, SsmSample

#: Largest median |perceived gap - true gap| a rehearsal passes with (s).
GAP_TOLERANCE_S = 0.050
#: A perceived turn is the true turn whose robot entry is nearest, if within this (s).
MATCH_WINDOW_S = 0.5
#: Release the truth feed's events once per this many log records (bounded memory on long logs).
_RELEASE_EVERY = 2000


def score_truth_log(path: str | Path) -> dict:
    """The session summary (the keys of ``coop-robot sim``'s) of a truth log, scored on ground truth.
    Raises :class:`coop_robot.sim.cell.TruthLogError` for a file that is not a truth log."""
    header, records = read_truth_log(path)
    try:
        zone = Zone.from_lists(header["zone_min_m"], header["zone_max_m"])
    except (KeyError, ValueError, TypeError) as exc:
        raise TruthLogError(f"truth log {path}: header has no valid zone ({exc})") from exc
    feed = TurnFeed("ground_truth", zone=zone)
    last_t = -math.inf
    for i, rec in enumerate(records):
        kind, t_s = rec.get("kind"), rec.get("t_s")
        if kind == "event":
            feed.ground_truth_event(rec["name"], t_s)
        elif kind == "phase":
            feed.partner_phase(rec["phase"], t_s)
        elif kind == "ssm":
            feed.ssm_sample(GROUND_TRUTH_SSM, SsmSample(
                t_s, rec["separation_m"], rec["protective_distance_m"], rec["robot_closing_mps"],
                rec["human_closing_mps"], 1.0, "free"))
        if t_s is not None:
            last_t = max(last_t, t_s)
        if i % _RELEASE_EVERY == _RELEASE_EVERY - 1:
            feed.release(last_t)
    feed.release(last_t, flush=True)
    summary = feed.tracker.summary(partner=str(header.get("partner", "")), seed=header.get("seed"))
    summary["truth_log"] = str(Path(path).resolve())
    summary["ended"] = bool(records) and records[-1].get("kind") == "end"
    return summary


@dataclass
class TurnPair:
    perceived: TurnRecord
    truth: TurnRecord | None

    @property
    def gap_difference_s(self) -> float:
        return self.perceived.gap_s - self.truth.gap_s if self.truth is not None else math.nan


@dataclass
class RehearsalCheck:
    """The perceived session against the truth (see the module doc)."""

    pairs: list[TurnPair]
    truth: dict
    perception: dict
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def matched(self) -> int:
        return sum(1 for p in self.pairs if p.truth is not None)

    @property
    def median_abs_gap_difference_s(self) -> float | None:
        d = [abs(p.gap_difference_s) for p in self.pairs if p.truth is not None]
        return float(np.median(d)) if d else None

    @property
    def median_gap_difference_s(self) -> float | None:
        d = [p.gap_difference_s for p in self.pairs if p.truth is not None]
        return float(np.median(d)) if d else None

    def as_dict(self) -> dict:
        return {
            "passed": self.passed, "problems": list(self.problems), "turns": len(self.pairs), "matched": self.matched,
            "median_abs_gap_difference_s": self.median_abs_gap_difference_s,
            "median_gap_difference_s": self.median_gap_difference_s, "gap_tolerance_s": GAP_TOLERANCE_S,
            "truth_contacts": self.truth.get("contacts"), "truth_ssm_violations": self.truth.get("ssm_violations"),
            "truth_min_separation_m": self.truth.get("min_separation_m"),
            "truth_median_gap_s": self.truth.get("median_gap_s"),
            "perception_median_gap_s": self.perception.get("median_gap_s"),
            "per_turn": [{"turn": p.perceived.turn, "perceived_gap_s": p.perceived.gap_s,
                          "true_gap_s": p.truth.gap_s if p.truth else None,
                          "true_contact": p.truth.contact if p.truth else None,
                          "true_min_separation_m": p.truth.min_separation_m if p.truth else None,
                          "true_ssm_violations": p.truth.ssm_violations if p.truth else None} for p in self.pairs],
        }


def compare(perception: dict, truth: dict) -> RehearsalCheck:
    """Pair every perceived turn (``perception``: the turn tracker's summary) with the true turn whose
    robot entry is nearest (``truth``: :func:`score_truth_log`) and judge the rehearsal."""
    perceived = [TurnRecord(**r) for r in perception.get("per_turn", [])]
    true_turns = [TurnRecord(**r) for r in truth.get("per_turn", [])]
    pairs = []
    for rec in perceived:
        best = min(true_turns, key=lambda g: abs(g.robot_enter_s - rec.robot_enter_s), default=None)
        if best is not None and abs(best.robot_enter_s - rec.robot_enter_s) > MATCH_WINDOW_S:
            best = None
        pairs.append(TurnPair(rec, best))
    check = RehearsalCheck(pairs, truth, perception)
    if not perceived:
        check.problems.append("the graph scored no turn")
    unmatched = [p.perceived.turn for p in pairs if p.truth is None]
    if unmatched:
        check.problems.append(f"perceived turn(s) {unmatched} have no true robot turn within {MATCH_WINDOW_S:g} s "
                              "(not completed in the cell, or perceived where nothing happened)")
    if truth.get("contacts"):
        check.problems.append(f"{truth['contacts']} contact(s) between the arm and the person (ground truth)")
    if truth.get("ssm_violations"):
        check.problems.append(f"{truth['ssm_violations']} SSM violation(s) (ground truth): the arm moved toward the "
                              "person closer than the protective separation distance")
    med = check.median_abs_gap_difference_s
    if med is not None and med > GAP_TOLERANCE_S:
        check.problems.append(f"perceived gaps are {1000 * med:.0f} ms (median) from the true ones; "
                              f"at most {1000 * GAP_TOLERANCE_S:.0f} ms passes")
    return check


def _ms(v: float | None) -> str:
    return "   n/a" if v is None or not math.isfinite(v) else f"{1000 * v:6.0f}"


def format_check(check: RehearsalCheck) -> str:
    """Per turn, the perceived and the true gap side by side, then the ground-truth check."""
    lines = ["turn  perceived gap ms  true gap ms  difference ms  true contact  true min sep m  true SSM violations"]
    for p in check.pairs:
        t = p.truth
        lines.append(
            f"{p.perceived.turn:4d}  {_ms(p.perceived.gap_s):>16}  {_ms(t.gap_s if t else None):>11}  "
            f"{_ms(p.gap_difference_s):>13}  {('yes' if t.contact else 'no') if t else 'n/a':>12}  "
            f"{(f'{t.min_separation_m:.3f}' if t and math.isfinite(t.min_separation_m) else 'n/a'):>14}  "
            f"{(str(t.ssm_violations) if t else 'n/a'):>19}")
    tr, pe = check.truth, check.perception
    lines.append(
        f"perception (what the graph scored): {len(check.pairs)} turns, "
        f"median gap {_ms(pe.get('median_gap_s')).strip()} ms")
    min_sep = tr.get("min_separation_m")
    lines.append(
        f"ground truth (the cell's log): {tr.get('turns', 0)} turns, median gap {_ms(tr.get('median_gap_s')).strip()} "
        f"ms, contacts {tr.get('contacts', 0)}, SSM violations {tr.get('ssm_violations', 0)}, min separation "
        f"{'n/a' if min_sep is None else f'{min_sep:.3f} m'}")
    lines.append(
        f"perceived vs true gap: median |difference| {_ms(check.median_abs_gap_difference_s).strip()} ms "
        f"(signed {_ms(check.median_gap_difference_s).strip()} ms), {check.matched}/{len(check.pairs)} turns matched")
    verdict = "PASS" if check.passed else "FAIL: " + "; ".join(check.problems)
    lines.append(f"rehearsal check: {verdict}")
    return "\n".join(lines)

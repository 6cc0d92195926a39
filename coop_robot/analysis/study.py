"""A study of many sessions: group them by participant and condition, summarise, compare conditions.

No ROS and no Ray here: plain values in, a JSON-serialisable study out (``coop-robot study`` reads
the bags, :mod:`coop_robot.analysis.study_report` draws the page). The unit is the session, scored
by ``coop-robot analyze`` (one definition of each metric, coop_robot/timing/metrics.py):

* **grouping**: a design CSV (columns ``bag``, ``participant``, ``condition``; :func:`read_design`)
  or, without one, each bag's own metadata: condition = the policy, participant = the partner
  profile and seed (:func:`participant_label`), as ``coop-robot sim`` records them on /diagnostics;
* **per participant and condition** (a *cell*): each metric over the cell's turns (median and p90
  gap, overlap rate, least separation; SSM violations per session; pace is one figure per session,
  the cell's median), with a bootstrap CI that resamples the cell's turns (pace: its sessions);
* **per condition**: the median over participants of their cell figures, with a bootstrap CI that
  resamples participants;
* **paired comparison** of two conditions: per participant the difference OTHER - BASELINE; the
  mean and median difference with bootstrap CIs (resampling participants), how many differences
  are positive, negative and zero, an exact two-sided sign test and an exact Wilcoxon signed-rank
  test (zeros dropped, tied ranks averaged; exact for the ranks observed).

Bootstrap intervals are percentile intervals of :data:`CI_LEVEL`; each group's resamples come from
a generator seeded by the study seed and the group's name, so a figure does not depend on which
other groups the study holds, and the same seed gives the same figures.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CI_LEVEL = 0.95
DEFAULT_RESAMPLES = 10000
#: Fewer values than this give no interval (n/a), only the figure itself.
MIN_CI_VALUES = 3
#: Design CSV columns that must be there (any case); others are kept with the session.
DESIGN_COLUMNS = ("bag", "participant", "condition")


def participant_label(partner: str, seed) -> str:
    """The simulated participant a partner profile and seed make: ``typical-s1`` (the profile alone without a seed)."""
    return partner if seed is None or seed == "" else f"{partner}-s{seed}"


# ---------------------------------------------------------------------------------------- metrics
def row_quantile(x: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile of each row's finite values (numpy's default linear method), NaN for a
    row without any; vectorised (numpy's nanpercentile goes row by row, 100x slower here)."""
    s = np.sort(np.where(np.isfinite(x), x, np.nan), axis=1)   # NaN last
    n = np.isfinite(s).sum(axis=1)
    out = np.full(x.shape[0], np.nan)
    rows = np.nonzero(n)[0]
    pos = (n[rows] - 1) * q
    lo = np.floor(pos).astype(int)
    a, b = s[rows, lo], s[rows, np.minimum(lo + 1, n[rows] - 1)]
    t = pos - lo
    out[rows] = np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)   # numpy's lerp
    return out


def _nanmin(x: np.ndarray) -> np.ndarray:
    out = np.full(x.shape[0], np.nan)
    ok = np.isfinite(x).any(axis=1)
    out[ok] = np.nanmin(x[ok], axis=1)
    return out


@dataclass(frozen=True)
class StudyMetric:
    """One figure of a session (a key of its summary.json) and how the study shows it.

    ``per_turn``: the per-turn column it is computed from and ``reduce(values[resamples, turns],
    sessions)`` -> one figure per resample; None for a figure only a whole session has (pace)."""

    key: str
    label: str
    unit: str
    scale: float
    digits: int
    per_turn: str | None = None
    reduce: Callable[[np.ndarray, int], np.ndarray] | None = None
    lower_is_better: bool | None = None

    def fmt(self, value) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "n/a"
        text = f"{value * self.scale:.{self.digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text   # no "-0.000"


#: The study's figures, in the order of every table.
STUDY_METRICS: tuple[StudyMetric, ...] = (
    StudyMetric("median_gap_s", "median gap", "ms", 1000.0, 0, "gap_s", lambda v, k: row_quantile(v, 0.5), True),
    StudyMetric("p90_gap_s", "p90 gap", "ms", 1000.0, 0, "gap_s", lambda v, k: row_quantile(v, 0.9), True),
    StudyMetric("overlap_rate", "overlap rate", "%", 100.0, 1, "overlapped", lambda v, k: v.mean(axis=1), True),
    StudyMetric("min_separation_m", "min separation", "m", 1.0, 3, "min_separation_m",
                lambda v, k: _nanmin(v), False),
    StudyMetric("ssm_violations", "SSM violations per session", "", 1.0, 1, "ssm_violations",
                lambda v, k: v.sum(axis=1) / k, True),
    StudyMetric("pace_turns_per_min", "pace", "turns/min", 1.0, 1, lower_is_better=False),
)
METRICS_BY_KEY = {m.key: m for m in STUDY_METRICS}
TURN_COLUMNS = ("gap_s", "overlapped", "min_separation_m", "ssm_violations")


# ---------------------------------------------------------------------------------------- sessions
@dataclass
class StudySession:
    """One bag of the study: who, which condition, whether it counts, its figures and its turns."""

    bag: str
    name: str
    participant: str | None
    condition: str | None
    grouped_by: str                          # "design" or "metadata"
    status: str = "ok"                       # ok | damaged | unreadable | not a bag | no turns | ungrouped
    reason: str = ""                         # why it is left out of the statistics
    exit_code: int = 0
    values: dict = field(default_factory=dict)            # the session's summary figures (STUDY_METRICS)
    turns: dict = field(default_factory=dict)             # per-turn columns (TURN_COLUMNS), NaN when unknown
    extra: dict = field(default_factory=dict)             # the design's other columns

    @property
    def included(self) -> bool:
        return not self.reason

    def as_dict(self) -> dict:
        return {"bag": self.bag, "name": self.name, "participant": self.participant, "condition": self.condition,
                "grouped_by": self.grouped_by, "status": self.status, "included": self.included,
                "reason": self.reason or None, "turns": len(self.turns.get("gap_s", ())), **self.values,
                **({"design": self.extra} if self.extra else {})}


def session_from_result(result, participant: str | None, condition: str | None, grouped_by: str,
                        extra: dict | None = None) -> StudySession:
    """A study session from an analysed bag (:class:`~coop_robot.analysis.session.SessionResult`).

    A bag counts when it was read whole and scored at least one turn; otherwise ``reason`` says
    why it is left out. Without a participant or condition it is left out as ungrouped."""
    s = StudySession(result.bag, result.name, participant, condition, grouped_by, extra=dict(extra or {}),
                     exit_code=result.exit_code)
    summary = result.summary or {}
    s.values = {m.key: summary.get(m.key) for m in STUDY_METRICS}
    s.turns = {
        "gap_s": [_num(r.gap_s) for r in result.records],
        "overlapped": [float(r.overlapped) for r in result.records],
        "min_separation_m": [_num(r.min_separation_m) for r in result.records],
        "ssm_violations": [float(r.ssm_violations) for r in result.records],
    }
    if result.usage_error:
        s.status, s.reason = "not a bag", result.error or "nothing to analyse"
    elif result.error:
        s.status, s.reason = "unreadable", result.error
    elif result.damaged:
        first = next((i.message for i in result.issues if i.severity == "error"), "damaged")
        s.status, s.reason = "damaged", f"damaged bag, partial results left out: {first}"
    elif not result.records:
        s.status, s.reason = "no turns", "no robot turn was scored"
    elif participant is None or condition is None:
        s.status = "ungrouped"
        s.reason = ("its metadata name no " + " and no ".join(
            w for w, v in (("participant (partner profile)", participant), ("condition (policy)", condition))
            if v is None) + "; give it a row in a --design CSV")
    elif result.exit_code:
        s.status = "live check failed"   # the offline scoring is the study's measure: it still counts
    return s


def _num(v) -> float:
    return float(v) if v is not None and math.isfinite(v) else math.nan


def grouping_from_summary(summary: dict) -> tuple[str | None, str | None]:
    """(participant, condition) from what the bag recorded: the partner profile and seed, the policy."""
    policy = summary.get("policy")
    partner = summary.get("partner")
    condition = policy if policy and policy != "unknown" else None
    participant = participant_label(partner, summary.get("seed")) if partner and partner != "unknown" else None
    return participant, condition


# ---------------------------------------------------------------------------------------- design
class DesignError(ValueError):
    """The design CSV cannot be used (the message names the file, the row and what is wrong)."""


@dataclass(frozen=True)
class DesignRow:
    bag: Path                 # resolved against the CSV's directory
    participant: str
    condition: str
    extra: dict
    line: int


def read_design(path: str | Path) -> list[DesignRow]:
    """The rows of a design CSV: ``bag`` (a path, relative to the CSV's directory), ``participant``
    and ``condition``; other columns are kept. Blank rows and rows starting with ``#`` are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DesignError(f"design {path}: cannot read it: {exc}") from None
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DesignError(f"design {path}: empty; expected a header with columns {', '.join(DESIGN_COLUMNS)}")
    reader = csv.reader([ln for _, ln in lines])
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in DESIGN_COLUMNS if c not in header]
    if missing:
        raise DesignError(f"design {path}: no column {', '.join(missing)} (header: {', '.join(header)}; "
                          f"expected {', '.join(DESIGN_COLUMNS)})")
    rows, seen = [], {}
    for (line, _), cells in zip(lines[1:], reader):
        if len(cells) != len(header):
            raise DesignError(f"design {path}, line {line}: {len(cells)} cells, the header has {len(header)}")
        row = {h: c.strip() for h, c in zip(header, cells)}
        for col in DESIGN_COLUMNS:
            if not row[col]:
                raise DesignError(f"design {path}, line {line}: empty {col}")
        bag = Path(row["bag"]).expanduser()
        bag = (bag if bag.is_absolute() else path.parent / bag).resolve()
        if bag in seen:
            raise DesignError(f"design {path}, line {line}: bag {row['bag']} is already on line {seen[bag]}")
        seen[bag] = line
        rows.append(DesignRow(bag, row["participant"], row["condition"],
                              {k: v for k, v in row.items() if k not in DESIGN_COLUMNS}, line))
    if not rows:
        raise DesignError(f"design {path}: a header but no rows")
    return rows


def match_design(bags: Sequence[Path], design: Sequence[DesignRow], design_path: str | Path) -> list[DesignRow]:
    """The design row of each bag: the row naming the same path, else the one row whose bag has the
    same name. DesignError naming the bags that have none (or several)."""
    by_path = {row.bag: row for row in design}
    by_name: dict[str, list[DesignRow]] = {}
    for row in design:
        by_name.setdefault(row.bag.name, []).append(row)
    out, bad = [], []
    for bag in bags:
        row = by_path.get(Path(bag).resolve())
        if row is None:
            named = by_name.get(Path(bag).resolve().name, [])
            row = named[0] if len(named) == 1 else None
            if len(named) > 1:
                bad.append(f"{bag} (its name is on lines {', '.join(str(r.line) for r in named)})")
                continue
        if row is None:
            bad.append(str(bag))
        out.append(row)
    if bad:
        raise DesignError(f"design {design_path} has no row for: {'; '.join(bad)}")
    return out


# ---------------------------------------------------------------------------------------- bootstrap
def _rng(seed: int, *names: str) -> np.random.Generator:
    """A generator for one group: the study seed and the group's name, nothing else."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32("|".join(names).encode())])


def bootstrap_ci(values, statistic: Callable[[np.ndarray], np.ndarray], *, resamples: int = DEFAULT_RESAMPLES,
                 rng: np.random.Generator, level: float = CI_LEVEL) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic`` (applied row-wise to a [resamples, n] array).
    None for fewer than :data:`MIN_CI_VALUES` values."""
    v = np.sort(np.asarray(values, dtype=float))   # the same values in any order: the same interval
    if v.ndim != 1 or v.size < MIN_CI_VALUES:
        return None
    idx = rng.integers(0, v.size, size=(resamples, v.size))
    stats = statistic(v[idx])
    stats = stats[np.isfinite(stats)]
    if not stats.size:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _median_rows(x: np.ndarray) -> np.ndarray:
    return np.median(x, axis=1)


def _mean_rows(x: np.ndarray) -> np.ndarray:
    return np.mean(x, axis=1)


def _figure(value, ci, n: int) -> dict:
    return {"n": n, "value": value, "ci_low": None if ci is None else ci[0], "ci_high": None if ci is None else ci[1]}


# ---------------------------------------------------------------------------------------- tests
def sign_test_p(positive: int, negative: int) -> float | None:
    """Exact two-sided sign test (binomial, p = 1/2) on the non-zero differences; None without any."""
    n = positive + negative
    if n == 0:
        return None
    k = min(positive, negative)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def wilcoxon_signed_rank(differences) -> dict:
    """Wilcoxon signed-rank test of paired differences: zeros dropped, tied |d| given their mean
    rank. Returns W+, W-, n (non-zero) and the exact two-sided p over the 2^n sign assignments of
    the observed ranks (None when n == 0)."""
    d = np.asarray([x for x in differences if x is not None and math.isfinite(x) and x != 0.0], dtype=float)
    n = int(d.size)
    if n == 0:
        return {"n": 0, "w_plus": 0.0, "w_minus": 0.0, "p": None}
    a = np.abs(d)
    order = np.argsort(a, kind="stable")
    ranks = np.empty(n)
    i = 0
    while i < n:   # mean ranks over ties
        j = i
        while j + 1 < n and a[order[j + 1]] == a[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    doubled = np.rint(2 * ranks).astype(int)   # mean ranks are halves: whole numbers when doubled
    w_plus = float(ranks[d > 0].sum())
    # Null distribution of the doubled W+: each rank is + or - with probability 1/2.
    total = int(doubled.sum())
    counts = np.zeros(total + 1, dtype=float)
    counts[0] = 1.0
    for r in doubled:   # r >= 2
        counts[r:] = counts[r:] + counts[:-r]   # the right side is evaluated before the assignment
    counts /= counts.sum()
    observed = int(round(2 * w_plus))
    mirror = total - observed
    low, high = min(observed, mirror), max(observed, mirror)
    p = float(counts[:low + 1].sum() + counts[high:].sum()) if low != high else 1.0
    return {"n": n, "w_plus": w_plus, "w_minus": float(ranks.sum() - w_plus), "p": min(1.0, p)}


# ---------------------------------------------------------------------------------------- the study
def _cell_figure(metric: StudyMetric, sessions: list[StudySession], resamples: int, seed: int,
                 participant: str, condition: str) -> dict:
    """One metric of one participant in one condition: over the turns of its sessions there."""
    k = len(sessions)
    rng = _rng(seed, "cell", participant, condition, metric.key)
    if metric.per_turn is None:
        vals = [s.values.get(metric.key) for s in sessions if s.values.get(metric.key) is not None]
        value = float(np.median(vals)) if vals else None
        return {**_figure(value, bootstrap_ci(vals, _median_rows, resamples=resamples, rng=rng), len(vals)),
                "over": "sessions"}
    column = np.array([x for s in sessions for x in s.turns[metric.per_turn]], dtype=float)
    if not column.size:
        return {**_figure(None, None, 0), "over": "turns"}
    value = float(metric.reduce(column[None, :], k)[0])
    value = value if math.isfinite(value) else None
    ci = bootstrap_ci(column, lambda x: metric.reduce(x, k), resamples=resamples, rng=rng)
    return {**_figure(value, ci, int(column.size)), "over": "turns"}


def _order(items) -> list:
    seen: dict = {}
    for x in items:
        seen.setdefault(x, None)
    return list(seen)


def study_statistics(sessions: Sequence[StudySession], *, compare: Sequence[tuple[str, str]] | None = None,
                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """The study summary of ``sessions`` (JSON-serialisable): per participant and condition, per
    condition, and the paired comparisons ``compare`` ((baseline, other) pairs; default: the first
    condition against each other one). Participants keep their first-seen order, conditions too,
    after those ``compare`` names."""
    used = [s for s in sessions if s.included]
    conditions = _order(s.condition for s in used)
    participants = _order(s.participant for s in used)
    named = [c for pair in (compare or ()) for c in pair if c in conditions]
    conditions = _order([*named, *conditions])   # the compared ones first, the baseline leading
    if compare is None:
        compare = [(conditions[0], c) for c in conditions[1:]] if conditions else []
    for pair in compare:
        unknown = [c for c in pair if c not in conditions]
        if unknown:
            raise ValueError(f"no session of condition {', '.join(map(repr, unknown))} counts in the study "
                             f"(conditions: {', '.join(conditions) or 'none'})")
    cells: dict[str, dict[str, dict]] = {}
    for p in participants:
        cells[p] = {}
        for c in conditions:
            mine = [s for s in used if s.participant == p and s.condition == c]
            if mine:
                cells[p][c] = {"sessions": len(mine), **{
                    m.key: _cell_figure(m, mine, resamples, seed, p, c) for m in STUDY_METRICS}}
    by_condition: dict[str, dict] = {}
    for c in conditions:
        by_condition[c] = {"participants": sum(1 for p in participants if c in cells[p]),
                           "sessions": sum(1 for s in used if s.condition == c)}
        for m in STUDY_METRICS:
            vals = [cells[p][c][m.key]["value"] for p in participants
                    if c in cells[p] and cells[p][c][m.key]["value"] is not None]
            value = float(np.median(vals)) if vals else None
            ci = bootstrap_ci(vals, _median_rows, resamples=resamples, rng=_rng(seed, "condition", c, m.key))
            by_condition[c][m.key] = {**_figure(value, ci, len(vals)), "over": "participants"}
    paired = [_paired(cells, participants, a, b, resamples, seed) for a, b in compare]
    return {
        "conditions": conditions, "participants": participants,
        "metrics": [{"key": m.key, "label": m.label, "unit": m.unit, "scale": m.scale, "digits": m.digits,
                     "per_turn": m.per_turn is not None, "lower_is_better": m.lower_is_better}
                    for m in STUDY_METRICS],
        "bootstrap": {"resamples": resamples, "seed": seed, "level": CI_LEVEL, "method": "percentile",
                      "min_values": MIN_CI_VALUES},
        "sessions": [s.as_dict() for s in sessions],
        "sessions_included": len(used), "sessions_excluded": len(sessions) - len(used),
        "by_participant": cells, "by_condition": by_condition, "paired": paired,
    }


def _paired(cells: dict, participants: list[str], baseline: str, other: str, resamples: int, seed: int) -> dict:
    both = [p for p in participants if baseline in cells[p] and other in cells[p]]
    out = {"baseline": baseline, "other": other, "participants": len(both), "difference": f"{other} - {baseline}",
           "metrics": {}}
    for m in STUDY_METRICS:
        diffs = {}
        for p in both:
            a, b = cells[p][baseline][m.key]["value"], cells[p][other][m.key]["value"]
            if a is not None and b is not None:
                diffs[p] = b - a
        d = sorted(diffs.values())
        rng = _rng(seed, "paired", baseline, other, m.key)
        mean_ci = bootstrap_ci(d, _mean_rows, resamples=resamples, rng=rng)
        median_ci = bootstrap_ci(d, _median_rows, resamples=resamples, rng=rng)
        pos, neg = sum(x > 0 for x in d), sum(x < 0 for x in d)
        out["metrics"][m.key] = {
            "n": len(d), "differences": diffs,
            "mean": float(np.mean(d)) if d else None,
            "mean_ci_low": None if mean_ci is None else mean_ci[0],
            "mean_ci_high": None if mean_ci is None else mean_ci[1],
            "median": float(np.median(d)) if d else None,
            "median_ci_low": None if median_ci is None else median_ci[0],
            "median_ci_high": None if median_ci is None else median_ci[1],
            "positive": pos, "negative": neg, "zero": len(d) - pos - neg,
            "sign_test_p": sign_test_p(pos, neg), "wilcoxon": wilcoxon_signed_rank(d),
        }
    return out


# ---------------------------------------------------------------------------------------- CSV files
def write_study_tables(study: dict, out_dir: Path) -> dict[str, Path]:
    """sessions.csv, by_condition.csv, by_participant.csv, paired.csv and paired_differences.csv
    (figures in the metrics' base units: s, fraction, m, counts, turns/min)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [m.key for m in STUDY_METRICS]
    paths = {k: out_dir / f"{k}.csv" for k in ("sessions", "by_condition", "by_participant", "paired",
                                               "paired_differences")}

    def rows(path: Path, header: list[str], body) -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows([_cell(x) for x in r] for r in body)

    rows(paths["sessions"], ["bag", "participant", "condition", "grouped_by", "status", "included", "reason",
                             "turns", *keys],
         ([s["bag"], s["participant"], s["condition"], s["grouped_by"], s["status"], s["included"], s["reason"],
           s["turns"], *(s.get(k) for k in keys)] for s in study["sessions"]))
    rows(paths["by_condition"], ["condition", "metric", "participants", "median", "ci_low", "ci_high"],
         ([c, k, f["n"], f["value"], f["ci_low"], f["ci_high"]]
          for c, figs in study["by_condition"].items() for k in keys for f in (figs[k],)))
    rows(paths["by_participant"], ["participant", "condition", "sessions", "metric", "over", "n", "value", "ci_low",
                                   "ci_high"],
         ([p, c, cell["sessions"], k, cell[k]["over"], cell[k]["n"], cell[k]["value"], cell[k]["ci_low"],
           cell[k]["ci_high"]]
          for p, by_c in study["by_participant"].items() for c, cell in by_c.items() for k in keys))
    rows(paths["paired"], ["baseline", "other", "metric", "n", "mean_difference", "mean_ci_low", "mean_ci_high",
                           "median_difference", "median_ci_low", "median_ci_high", "positive", "negative", "zero",
                           "sign_test_p", "wilcoxon_w_plus", "wilcoxon_w_minus", "wilcoxon_p"],
         ([pr["baseline"], pr["other"], k, f["n"], f["mean"], f["mean_ci_low"], f["mean_ci_high"], f["median"],
           f["median_ci_low"], f["median_ci_high"], f["positive"], f["negative"], f["zero"], f["sign_test_p"],
           f["wilcoxon"]["w_plus"], f["wilcoxon"]["w_minus"], f["wilcoxon"]["p"]]
          for pr in study["paired"] for k, f in pr["metrics"].items()))
    rows(paths["paired_differences"], ["baseline", "other", "participant", "metric", "difference"],
         ([pr["baseline"], pr["other"], p, k, d]
          for pr in study["paired"] for k, f in pr["metrics"].items() for p, d in f["differences"].items()))
    return paths


def _cell(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x) if math.isfinite(x) else ""
    return str(x)

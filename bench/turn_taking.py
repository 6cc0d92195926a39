"""Turn-taking benchmark (issue 10): the mirror policy against eager, the oracle and the reactive
frontier, on every partner, over several training seeds.

For every partner profile -- the shipped ones (typical, fast, slow, hesitant, erratic) and the
held-out ones in ``test/heldout_partners/`` -- it runs, in the fast headless environment
(:class:`~coop_robot.envs.turn_env.TurnTakingEnv`, kinematic robot, fitted perception model) and
on the same session seed:

* ``reactive`` at each ``--debounce`` value: the reactive settings the candidates are judged against;
* ``mirror``: the mirror network, once per checkpoint of ``--checkpoints-mirror`` (one checkpoint
  per training seed; default the shipped one);
* ``mirror-unshared``: the ablation with separate encoders for self and other, once per
  checkpoint of ``--checkpoints-unshared`` (missing files are skipped, with the command that
  makes them);
* ``eager`` (``coop_robot.policy.eager``): "act" as soon as the robot's turn is due -- what the
  controller achieves without any forecast;
* ``oracle``: knows the partner's planned exit from the sim (a lower bound).

Every policy runs with the package's liveness bound (``fallback_clear_s``, default 2.5 s:
"act" once the turn is due and the zone has been perceived clear that long; reactive: after
``max(fallback_clear_s, debounce_s)``); the ``fallbacks`` column counts its firings.

It prints one table -- per (partner, policy) the mean over checkpoints with a 95 % confidence
interval (t-distribution over training seeds; "n=1, no CI" with one checkpoint) -- and the
verdicts of issue 10's acceptance:

(a) every mirror session completes every turn, and each one's p90 gap is within 2x the oracle's;
(b) zero contacts and zero SSM violations in every mirror session;
(c) mirror median gap >= 25 % shorter than eager's at an overlap rate no higher, established
    across seeds (the CI of the mirror mean lies below 0.75x eager's), on >= 3/4 of the partners
    (6 of 8) and >= 2/3 of the held-out ones (2 of 3);
(d) mirror beyond the reactive frontier on every partner: no reactive setting is at least as good
    on median gap, p90 gap and pace together at an overlap rate no higher;
(e) on ``typical``: mirror median gap within 1.3x the oracle's;
(f) on partners that adapt (``adaptation.enabled``): mirror pace >= the best reactive pace.

Each session is a task of :func:`coop_robot.parallel.run_tasks`: on an embedded local Ray by
default (``--workers`` sessions at once, default every CPU), on a running Ray cluster with
``--ray-address HOST:PORT`` (or ``$RAY_ADDRESS``), or one after another in this process with
``--ray-address none``; the figures are the same every way (each session computes everything from
its seed). How it ran (mode, nodes, CPUs, Ray's start-up time and memory) is in ``results.json``
under ``"ray"``.

Results are written to ``--out`` as sessions finish (``results.csv``, one row per session;
``results.json`` with ``"complete": false`` until the end), so a killed run keeps what it
finished; ``frontier.png`` at the end.

    python bench/turn_taking.py [--turns 200] [--seed 0] [--profiles typical fast ...]
        [--heldout/--no-heldout] [--debounce 0,0.2,0.4,0.8,1.2,1.6,2.0]
        [--checkpoints-mirror PATH ...] [--checkpoints-unshared PATH ...]
        [--policies reactive mirror mirror-unshared eager oracle]
        [--ray-address HOST:PORT|auto|none] [--workers N] [--out DIR] [--check]

``--judge`` runs nothing: it judges the rows of earlier runs together -- e.g. new mirror checkpoints
run alone (``--policies mirror``) against the controls of an earlier run of the same sessions, when
nothing the controls depend on has changed -- and prints where each row came from (file, commit):

    python bench/turn_taking.py --judge OLD/results.json:eager,oracle,reactive NEW/results.json --out DIR

Exit status: 0 done (with ``--check``: every verdict passed); 1 with ``--check`` when a verdict
failed (a session that completed fewer turns than asked is a failed verdict, not a crash);
2 when the benchmark itself broke -- bad arguments, a session that raised an error (its row
says why; the other rows are still saved), or Ray failing (no cluster at the address, a lost
worker).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from coop_robot.analysis.intervals import t_quantile_975
from coop_robot.cli import parse_settings
from coop_robot.parallel import SERIAL, RayInfo, add_ray_arguments, resolve_address, run_tasks
from coop_robot.partner.benchmark_set import CHECKOUT_HELDOUT_DIR, SHIPPED_PROFILES, ProfileSpec, resolve_profiles
from coop_robot.policy.base import DEFAULT_FALLBACK_CLEAR_S
from coop_robot.strict_json import json_safe, sha256_file

REPO_ROOT = Path(__file__).resolve().parents[1]
HELDOUT_DIR = CHECKOUT_HELDOUT_DIR
DEFAULT_DEBOUNCE_S = (0.0, 0.2, 0.4, 0.8, 1.2, 1.6, 2.0)
DEFAULT_UNSHARED_CHECKPOINT = REPO_ROOT / "bench" / "checkpoints" / "mirror_unshared.pt"
DEFAULT_OUT = REPO_ROOT / "runs" / "turn_taking"

# Acceptance (issue 10).
MAX_P90_VS_ORACLE = 2.0          # (a) p90 gap <= this x the oracle's
MAX_GAP_VS_EAGER = 0.75          # (c) mirror median gap <= this x eager's (>= 25 % shorter) ...
MIN_PARTNER_SHARE = 0.75         # ... on >= this share of the partners (6 of 8) ...
MIN_HELDOUT_SHARE = 2 / 3        # ... and of the held-out ones (2 of 3)
GAP_PROFILE = "typical"          # (e) applies to this profile only
MAX_GAP_VS_ORACLE = 1.3          # (e) mirror median gap <= this x the oracle's
CI_LEVEL = 0.95

MIRROR, UNSHARED, EAGER, ORACLE, REACTIVE = "mirror", "mirror-unshared", "eager", "oracle", "reactive"
KINDS = (REACTIVE, MIRROR, UNSHARED, EAGER, ORACLE)

UNSHARED_HINT = ("make it with `coop-robot train --config config/training/train_unshared.yaml "
                 "--out runs/mirror_unshared` and copy runs/mirror_unshared/mirror.pt to "
                 "bench/checkpoints/mirror_unshared.pt (or pass --checkpoints-unshared PATH ...)")

#: Summary keys of ``TurnTakingEnv.run`` read with ``.get``: NaN in a row when the env does not
#: report them (the speed & separation monitoring metrics arrive with issue 10's metrics work).
OPTIONAL_METRICS = ("min_separation_m", "min_ssm_margin_m", "ssm_violations", "protective_stop_s", "speed_scaled_s",
                    "pace_turns_per_min", "near_misses", "unfinished_turn_entries", "aborted_reaches",
                    "human_idle_fraction", "robot_idle_fraction", "concurrent_activity_fraction", "functional_delay_s")
#: Summary keys every version of the env reports (NaN when a session scored no turn).
CORE_METRICS = ("median_gap_s", "p90_gap_s", "mean_gap_s", "overlap_rate", "overlap_s_total", "throughput_per_min",
                "median_response_latency_s", "sim_time_s", "wall_time_s")
COUNTS = ("turns", "contacts", "partner_turns")


# =========================================================================== statistics
@dataclass(frozen=True)
class SeedStat:
    """Mean over training seeds of one metric, with a 95 % t interval (``half_width`` NaN for n < 2)."""

    n: int
    mean: float
    half_width: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def has_ci(self) -> bool:
        return self.n >= 2 and math.isfinite(self.half_width)

    def text(self, scale: float = 1.0, fmt: str = ".0f", unit: str = "") -> str:
        if not math.isfinite(self.mean):
            return "n/a"
        head = format(self.mean * scale, fmt) + unit
        if not self.has_ci:
            return f"{head} (n={self.n}, no CI)"
        return (f"{head} (n={self.n}, 95% CI {format(self.low * scale, fmt)}..{format(self.high * scale, fmt)}"
                f"{unit})")


def seed_stat(values: Iterable[float]) -> SeedStat:
    """Mean and 95 % t confidence interval of the finite ``values`` (one per training seed)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return SeedStat(0, math.nan, math.nan)
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return SeedStat(1, mean, math.nan)
    half = t_quantile_975(len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))
    return SeedStat(len(vals), mean, half)


# =========================================================================== frontier logic
@dataclass(frozen=True)
class OperatingPoint:
    """One policy's operating point on a profile: median and p90 gap (s, lower is better), pace
    (robot and partner turns per minute, higher is better) and overlap rate (fraction of turns, lower is better)."""

    label: str
    median_gap_s: float
    p90_gap_s: float
    pace_turns_per_min: float
    overlap_rate: float

    @property
    def valid(self) -> bool:
        return all(math.isfinite(v) for v in (self.median_gap_s, self.p90_gap_s, self.pace_turns_per_min,
                                              self.overlap_rate))

    def at_least_as_good_as(self, other: OperatingPoint, tol: float = 1e-9) -> bool:
        """True when this point is no worse than ``other`` on all four axes (``tol`` absorbs float noise)."""
        return (self.median_gap_s <= other.median_gap_s + tol and self.p90_gap_s <= other.p90_gap_s + tol
                and self.pace_turns_per_min >= other.pace_turns_per_min - tol
                and self.overlap_rate <= other.overlap_rate + tol)

    def describe(self) -> str:
        return (f"{self.label} ({_ms(self.median_gap_s)} / p90 {_ms(self.p90_gap_s)}, "
                f"{_pace(self.pace_turns_per_min)}, {_pct(self.overlap_rate)})")


def dominating_points(candidate: OperatingPoint, reactive: Iterable[OperatingPoint],
                      tol: float = 1e-9) -> list[OperatingPoint]:
    """The reactive points at least as good as ``candidate`` on median gap, p90 gap and pace together,
    at an overlap rate no higher (an exact tie dominates). Points without finite values (no turn
    completed) dominate nothing."""
    if not candidate.valid:
        raise ValueError(f"candidate {candidate.label!r} has no finite operating point ({candidate})")
    return [p for p in reactive if p.valid and p.at_least_as_good_as(candidate, tol)]


def beyond_frontier(candidate: OperatingPoint, reactive: Iterable[OperatingPoint], tol: float = 1e-9) -> bool:
    """True when no reactive point dominates ``candidate`` (see :func:`dominating_points`); False
    for a candidate without a finite point."""
    if not candidate.valid:
        return False
    return not dominating_points(candidate, reactive, tol)


def pareto_front(points: Iterable[OperatingPoint], tol: float = 1e-9) -> list[OperatingPoint]:
    """The points no other point dominates (at least as good on all four axes and better on one;
    of exact duplicates the first is kept), sorted by median gap."""
    pts = [p for p in points if p.valid]
    front = []
    for i, p in enumerate(pts):
        beaten = False
        for j, q in enumerate(pts):
            if i == j or not q.at_least_as_good_as(p, tol):
                continue
            if not p.at_least_as_good_as(q, tol) or j < i:  # strictly better, or an earlier duplicate
                beaten = True
                break
        if not beaten:
            front.append(p)
    return sorted(front, key=lambda p: (p.median_gap_s, p.overlap_rate))


def pace_of(row: dict) -> float:
    """A row's pace: the joint pace of the session, robot and partner turns per minute (the env's
    ``pace_turns_per_min``); NaN when the row has none. ``throughput_per_min`` (robot turns only) is
    never used in its place: the two differ by about a factor of two and must not be compared."""
    pace = row.get("pace_turns_per_min", math.nan)
    return pace if _finite(pace) else math.nan


def point_of(row: dict) -> OperatingPoint:
    return OperatingPoint(row["policy"], row["median_gap_s"], row["p90_gap_s"], pace_of(row), row["overlap_rate"])


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _ms(v: float) -> str:
    return f"{v * 1e3:.0f} ms" if _finite(v) else "n/a"


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%" if _finite(v) else "n/a"


def _pace(v: float) -> str:
    return f"{v:.1f} turns/min" if _finite(v) else "n/a"


# =========================================================================== aggregation over seeds
def group_rows(rows: Sequence[dict]) -> list[list[dict]]:
    """Rows grouped by (profile, policy label), in first-appearance order: one group per table line;
    a mirror group holds one row per checkpoint (training seed)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["profile"], r["policy"]), []).append(r)
    return list(groups.values())


def complete(row: dict) -> bool:
    """The session ran and scored every turn it was asked for."""
    return row.get("status") == "ok" and row["turns"] >= row["turns_requested"]


def mean_point(group: Sequence[dict]) -> OperatingPoint:
    """The group's operating point: each axis the mean over its sessions (NaN if any has none)."""
    def mean(vals: list[float]) -> float:
        return statistics.fmean(vals) if vals and all(_finite(v) for v in vals) else math.nan

    return OperatingPoint(group[0]["policy"], mean([r["median_gap_s"] for r in group]),
                          mean([r["p90_gap_s"] for r in group]), mean([pace_of(r) for r in group]),
                          mean([r["overlap_rate"] for r in group]))


# =========================================================================== verdicts (issue 10)
@dataclass
class Verdict:
    """One acceptance point on one partner (``profile``) or over all of them (``profile`` None).
    ``ok`` is True / False, or None when it cannot be judged (n/a, the detail says why)."""

    point: str
    profile: str | None
    ok: bool | None
    detail: str


POINTS = {
    "a": "every turn completed; p90 gap <= 2x oracle",
    "b": "0 contacts, 0 SSM violations",
    "c": "median gap >= 25% shorter than eager, across seeds",
    "d": "beyond the reactive frontier",
    "e": "typical: median gap <= 1.3x oracle",
    "f": "adaptive partners: pace >= best reactive",
}


def _combine(oks: Sequence[bool | None]) -> bool | None:
    if any(ok is False for ok in oks):
        return False
    if not oks or any(ok is None for ok in oks):
        return None
    return True


def _needed(share: float, n: int) -> int:
    return math.ceil(share * n - 1e-9)


def partner_verdicts(rows: Sequence[dict], adaptive: bool = False) -> list[Verdict]:
    """Points (a)-(f) for the mirror rows of one partner (``rows``: every row of that partner)."""
    prof = rows[0]["profile"]
    mirror = [r for r in rows if r["kind"] == MIRROR]
    if not mirror:
        return [Verdict(k, prof, None, "no mirror session") for k in POINTS]
    reactive = [r for r in rows if r["kind"] == REACTIVE]
    oracle = next((r for r in rows if r["kind"] == ORACLE), None)
    eager = next((r for r in rows if r["kind"] == EAGER), None)
    out = []

    # (a) liveness: every session completes, and its tail stays within 2x the oracle's.
    short = [r for r in mirror if not complete(r)]
    worst_p90 = max((r["p90_gap_s"] for r in mirror), key=lambda v: v if _finite(v) else math.inf)
    oracle_p90 = oracle["p90_gap_s"] if oracle is not None else math.nan
    turns = ", ".join(f"{r['turns']}/{r['turns_requested']}" + ("" if r["status"] == "ok" else f" ({r['reason']})")
                      for r in mirror)
    if not _finite(oracle_p90):
        out.append(Verdict("a", prof, False, f"turns {turns}; no oracle p90 to compare with"))
    else:
        ok = not short and _finite(worst_p90) and worst_p90 <= MAX_P90_VS_ORACLE * oracle_p90 + 1e-9
        out.append(Verdict("a", prof, ok, f"turns {turns}; worst p90 {_ms(worst_p90)} vs oracle p90 "
                                          f"{_ms(oracle_p90)} (need <= {_ms(MAX_P90_VS_ORACLE * oracle_p90)})"))

    # (b) safety.
    contacts = sum(r["contacts"] for r in mirror)
    ssm = [r.get("ssm_violations", math.nan) for r in mirror]
    if not all(_finite(v) for v in ssm):
        out.append(Verdict("b", prof, False if contacts else None,
                           f"{contacts} contacts; ssm_violations not reported by this environment"))
    else:
        out.append(Verdict("b", prof, contacts == 0 and sum(ssm) == 0,
                           f"{contacts} contacts, {sum(ssm):g} SSM violations (need 0 and 0)"))

    # (c) what the network adds over "act when due", across training seeds.
    gap = seed_stat(r["median_gap_s"] for r in mirror)
    overlap = seed_stat(r["overlap_rate"] for r in mirror)
    e_gap = eager["median_gap_s"] if eager is not None else math.nan
    e_ovl = eager["overlap_rate"] if eager is not None else math.nan
    if not (_finite(e_gap) and _finite(e_ovl)):
        out.append(Verdict("c", prof, False, f"mirror {gap.text(1e3, unit=' ms')}; no eager point to compare with"))
    else:
        bound = MAX_GAP_VS_EAGER * e_gap
        text = (f"mirror median gap {gap.text(1e3, unit=' ms')} vs 0.75 x eager {_ms(bound)} (eager {_ms(e_gap)}); "
                f"overlap {_pct(overlap.mean)} vs eager {_pct(e_ovl)}")
        overlap_ok = _finite(overlap.mean) and overlap.mean <= e_ovl + 1e-9
        if short:
            out.append(Verdict("c", prof, False, text + f"; {len(short)} session(s) incomplete"))
        elif not gap.has_ci:
            point_ok = _finite(gap.mean) and gap.mean <= bound and overlap_ok
            out.append(Verdict("c", prof, None, text + f"; point estimate {'meets' if point_ok else 'misses'} it, "
                                                   "not established without a CI over seeds"))
        else:
            holds = gap.high < bound
            out.append(Verdict("c", prof, holds and overlap_ok,
                               text + ("; the difference holds (CI below the bound)" if holds else
                                       "; the difference does not hold (CI reaches the bound)")
                               + ("" if overlap_ok else "; overlap higher than eager's")))

    # (d) beyond the reactive frontier (the mirror point: means over seeds).
    cand = mean_point(mirror)
    points = [point_of(r) for r in reactive]
    if not any(p.valid for p in points):
        out.append(Verdict("d", prof, None, "no reactive point to compare with"))
    elif not cand.valid:
        out.append(Verdict("d", prof, False, f"no finite operating point: {cand.describe()}"))
    else:
        dom = dominating_points(cand, points)
        out.append(Verdict("d", prof, not dom, f"{cand.describe()}: " + (
            "beyond the reactive frontier" if not dom else "dominated by " + "; ".join(p.describe() for p in dom))))

    # (e) close to the oracle on the typical partner.
    if prof == GAP_PROFILE:
        o_gap = oracle["median_gap_s"] if oracle is not None else math.nan
        ok = _finite(gap.mean) and _finite(o_gap) and gap.mean <= MAX_GAP_VS_ORACLE * o_gap + 1e-9
        out.append(Verdict("e", prof, ok, f"mirror median gap {gap.text(1e3, unit=' ms')} vs oracle {_ms(o_gap)} "
                                          f"(need mean <= {_ms(MAX_GAP_VS_ORACLE * o_gap)})"))

    # (f) pace with a partner who adapts to the robot.
    if adaptive:
        pace = seed_stat(pace_of(r) for r in mirror)
        best = max((r for r in reactive if _finite(pace_of(r))), key=pace_of, default=None)
        if best is None:
            out.append(Verdict("f", prof, None, "no reactive pace to compare with"))
        else:
            ok = _finite(pace.mean) and pace.mean >= pace_of(best) - 1e-9
            out.append(Verdict("f", prof, ok, f"mirror pace {pace.text(1, '.1f', ' turns/min')} vs best reactive "
                                              f"{best['policy']} {_pace(pace_of(best))}"))
    return out


def acceptance(rows: Sequence[dict], adaptive_profiles: Iterable[str] = ()) -> dict:
    """Issue 10's verdicts: ``{"partners": [Verdict...], "overall": [Verdict...], "passed": bool}``.
    ``passed`` is False when any overall point is False (n/a points do not fail)."""
    adaptive = set(adaptive_profiles)
    profiles = list(dict.fromkeys(r["profile"] for r in rows))
    heldout = {r["profile"] for r in rows if r["heldout"]}
    per: list[Verdict] = []
    for prof in profiles:
        per += partner_verdicts([r for r in rows if r["profile"] == prof], adaptive=prof in adaptive)
    if not any(r["kind"] == MIRROR for r in rows):  # e.g. --policies without mirror: nothing to judge
        return {"partners": per, "overall": [Verdict(k, None, None, "no mirror session") for k in POINTS],
                "passed": True}
    overall = []
    for key in POINTS:
        mine = [v for v in per if v.point == key]
        if key == "c":
            held = [v.profile for v in mine if v.ok]
            n_all, n_held = len(mine), sum(1 for v in mine if v.profile in heldout)
            need_all, need_held = _needed(MIN_PARTNER_SHARE, n_all), _needed(MIN_HELDOUT_SHARE, n_held)
            got_held = sum(1 for p in held if p in heldout)
            ok = len(held) >= need_all and got_held >= need_held if n_all else None
            overall.append(Verdict(key, None, ok, f"holds on {len(held)} of {n_all} partners (need {need_all}), "
                                                  f"{got_held} of {n_held} held-out (need {need_held})"
                                                  + (f": {', '.join(held)}" if held else "")))
            continue
        ok = _combine([v.ok for v in mine])
        if not mine:
            detail = {"e": f"{GAP_PROFILE} not run", "f": "no adaptive partner run"}.get(key, "no partner")
        else:
            bad = [v.profile for v in mine if v.ok is False]
            na = [v.profile for v in mine if v.ok is None]
            detail = (f"{len(mine) - len(bad) - len(na)} of {len(mine)} partners pass"
                      + (f"; fail: {', '.join(bad)}" if bad else "") + (f"; n/a: {', '.join(na)}" if na else ""))
        overall.append(Verdict(key, None, ok, detail))
    return {"partners": per, "overall": overall, "passed": all(v.ok is not False for v in overall)}


def format_acceptance(acc: dict, heldout: set[str] = frozenset()) -> str:
    mark = {True: "PASS", False: "FAIL", None: " n/a"}
    lines = []
    for key, title in POINTS.items():
        total = next(v for v in acc["overall"] if v.point == key)
        lines.append(f"({key}) {title}: {mark[total.ok].strip()} -- {total.detail}")
        for v in acc["partners"]:
            if v.point == key:
                name = v.profile + (" (held-out)" if v.profile in heldout else "")
                lines.append(f"    {mark[v.ok]}  {name:<20} {v.detail}")
    return "\n".join(lines)


# =========================================================================== jobs
@dataclass(frozen=True)
class PolicySpec:
    label: str                       # row label, e.g. "reactive 0.4s", "mirror"
    kind: str                        # reactive | mirror | mirror-unshared | eager | oracle
    debounce_s: float | None = None
    checkpoint: str | None = None    # mirror / mirror-unshared: one training seed's checkpoint
    fallback_clear_s: float | None = None  # None: the package default


@dataclass(frozen=True)
class Job:
    profile: ProfileSpec
    policy: PolicySpec
    turns: int
    seed: int
    #: Controller parameter overrides (``--controller-set``), as (name, value) pairs.
    controller: tuple = ()


def policy_specs(debounce_s: Sequence[float], checkpoints: Sequence[Path], unshared: Sequence[Path] = (),
                 fallback_clear_s: float | None = None) -> list[PolicySpec]:
    """The benchmark's rows for one profile: one mirror / mirror-unshared row per checkpoint."""
    f = fallback_clear_s
    specs = [PolicySpec(f"reactive {d:g}s", REACTIVE, debounce_s=float(d), fallback_clear_s=f) for d in debounce_s]
    specs += [PolicySpec(MIRROR, MIRROR, checkpoint=str(c), fallback_clear_s=f) for c in checkpoints]
    specs += [PolicySpec(UNSHARED, UNSHARED, checkpoint=str(c), fallback_clear_s=f) for c in unshared]
    specs += [PolicySpec(EAGER, EAGER, fallback_clear_s=f), PolicySpec(ORACLE, ORACLE, fallback_clear_s=f)]
    return specs


def build_policy(spec: PolicySpec):
    """The policy object for a spec (in the worker process)."""
    from coop_robot.policy import make_policy

    params = {} if spec.fallback_clear_s is None else {"fallback_clear_s": spec.fallback_clear_s}
    if spec.kind == REACTIVE:
        return make_policy("reactive", debounce_s=spec.debounce_s, **params)
    if spec.kind in (MIRROR, UNSHARED):
        return make_policy("mirror", checkpoint=spec.checkpoint, **params)
    if spec.kind in (EAGER, ORACLE):
        return make_policy(spec.kind, **params)
    raise ValueError(f"unknown benchmark policy kind {spec.kind!r}; expected one of {KINDS}")


def job_env(job: Job):
    """The environment one job runs in: the kinematic TurnTakingEnv with the package's
    config/world.yaml and config/controller.yaml (the controller node's own parameter table)."""
    from coop_robot.envs.turn_env import TurnTakingEnv

    return TurnTakingEnv(partner=job.profile.source, seed=job.seed, physics=False,
                         controller_params=dict(job.controller) or None)


def _number(v) -> float:
    """A summary value as a float; None (no turn scored) and anything non-numeric -> NaN."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    return float(v)


def result_row(job: Job, summary: dict | None, policy=None, error: str = "") -> dict:
    """One session's row. ``summary`` None (with ``error``): the session raised. Every metric is read
    with ``.get`` (NaN when absent); ``status`` is ok | short (fewer turns than asked) | error."""
    s = summary or {}
    info = getattr(policy, "info", None)
    row = {"profile": job.profile.name, "heldout": job.profile.heldout, "policy": job.policy.label,
           "kind": job.policy.kind, "debounce_s": job.policy.debounce_s, "checkpoint": job.policy.checkpoint,
           "training_seed": None if info is None else info.extra.get("seed"), "seed": job.seed,
           "turns_requested": job.turns}
    row.update({k: int(_number(s.get(k))) if _finite(_number(s.get(k))) else 0 for k in COUNTS})
    row.update({k: _number(s.get(k)) for k in CORE_METRICS + OPTIONAL_METRICS})
    if row["turns"] == 0:
        row["overlap_rate"] = math.nan  # 0 overlaps in 0 turns is no evidence of anything
    row["fallbacks"] = getattr(policy, "fallback_count", None)
    row["fallback_clear_s"] = getattr(policy, "fallback_after_s", None)
    row["shared_encoder"] = None if info is None else bool(info.config.shared_encoder)
    if error:
        row["status"], row["reason"] = "error", error
    elif row["turns"] < job.turns:
        row["status"] = "short"
        row["reason"] = (f"{row['turns']}/{job.turns} turns scored in {row['sim_time_s']:.0f} s simulated "
                         f"(the env's session time limit)")
    else:
        row["status"], row["reason"] = "ok", ""
    return row


def run_job(job: Job) -> dict:
    """Run one (profile, policy) pair in its own environment; return its result row. A session that
    raises becomes an ``error`` row naming the exception, so one broken session loses only itself."""
    policy = None
    try:
        policy = build_policy(job.policy)
        env = job_env(job)
        try:
            summary = env.run(policy, job.turns)
        finally:
            env.close()
    except Exception as exc:  # noqa: BLE001 -- a harness boundary: the row reports it, the run goes on
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return result_row(job, None, policy, error=f"{type(exc).__name__}: {exc} "
                                                   f"({Path(last.filename).name}:{last.lineno})")
    return result_row(job, summary, policy)


def _init_worker() -> None:
    from coop_robot.policy.threads import configure_torch_threads

    configure_torch_threads()  # 1 thread (or $COOP_ROBOT_TORCH_THREADS) in every worker


def workers_import_this_module() -> None:
    """Put this file's folder on ``$PYTHONPATH``, which an embedded Ray's workers inherit and
    :mod:`coop_robot.parallel` hands to a cluster's: a job of this module imported by name
    (``turn_taking``, as the tests and ``bench/ray_scaling.py`` do) is unpickled there by that name.
    Run as a script the module is ``__main__``, and Ray sends its jobs by value."""
    here = str(Path(__file__).resolve().parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if here not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([here, *paths])


def session_name(job: Job) -> str:
    return f"{job.profile.name} / {job.policy.label}"


def run_jobs(jobs: Sequence[Job], *, address: str | None = None, workers: int | None = None, progress: bool = True,
             on_row: Callable[[list[dict | None]], None] | None = None,
             info: list[RayInfo] | None = None) -> list[dict]:
    """Run the sessions, each a task of :func:`coop_robot.parallel.run_tasks` (``address``: a Ray
    cluster, None for an embedded local Ray, ``"none"`` for one after another in this process;
    ``workers``: sessions at once); rows in job order. ``on_row(rows so far)`` is called as each
    session finishes (None for the ones not yet done); ``info`` receives the run's :class:`RayInfo`."""
    jobs = list(jobs)
    # Longest first (the network's rows are ~3x slower per turn) so the workers end evenly.
    order = sorted(range(len(jobs)), key=lambda i: jobs[i].policy.kind not in (MIRROR, UNSHARED))
    rows: list[dict | None] = [None] * len(jobs)

    def finished(k: int, row: dict) -> None:
        rows[order[k]] = row
        if on_row is not None:
            on_row(rows)
        if progress and row["status"] != "ok":
            print(f"turn_taking: {session_name(jobs[order[k]])} -- {row['status'].upper()}: {row['reason']}",
                  file=sys.stderr, flush=True)

    workers_import_this_module()
    run_tasks(run_job, [jobs[i] for i in order], address=address, workers=workers,
              label=lambda k, job: session_name(job), progress=progress, on_result=finished, init=_init_worker,
              info=info)
    return rows  # type: ignore[return-value]


def _elapsed(s: float) -> str:
    m, sec = divmod(int(s), 60)
    return f"{m}m{sec:02d}s"


# =========================================================================== reporting
TABLE_COLUMNS = (("profile", 10), ("held-out", 8), ("policy", 16), ("n", 2), ("turns", 7), ("med gap ms", 14),
                 ("p90 gap ms", 14), ("overlap %", 9), ("contacts", 8), ("min sep m", 9), ("SSM viol", 8),
                 ("pace/min", 12), ("fallbacks", 9), ("aborts", 6))


def _cell(stat: SeedStat, scale: float = 1.0, fmt: str = ".0f") -> str:
    if not math.isfinite(stat.mean):
        return "n/a"
    if not stat.has_ci:
        return format(stat.mean * scale, fmt)
    return f"{format(stat.mean * scale, fmt)}±{format(stat.half_width * scale, fmt)}"


def _total(group: Sequence[dict], key: str, fmt: str = "g") -> str:
    vals = [r.get(key) for r in group]
    if not all(_finite(v) for v in vals):
        return "n/a"
    return format(sum(vals), fmt)


def format_table(rows: Sequence[dict]) -> str:
    """One line per (profile, policy): means over the group's sessions (training seeds), with the 95 %
    t half-width after ± when n >= 2; counts are totals, min separation the minimum."""
    head = "  ".join(f"{name:>{w}}" if i >= 3 else f"{name:<{w}}" for i, (name, w) in enumerate(TABLE_COLUMNS))
    lines = [head, "-" * len(head)]
    prev = None
    for group in group_rows(rows):
        r0 = group[0]
        if prev is not None and r0["profile"] != prev:
            lines.append("")
        prev = r0["profile"]
        seps = [r.get("min_separation_m") for r in group]
        turns = min(r["turns"] for r in group)
        flag = "" if all(complete(r) for r in group) else "!"
        cells = (r0["profile"], "yes" if r0["heldout"] else "", r0["policy"], str(len(group)),
                 f"{flag}{turns}/{r0['turns_requested']}",
                 _cell(seed_stat(r["median_gap_s"] for r in group), 1e3),
                 _cell(seed_stat(r["p90_gap_s"] for r in group), 1e3),
                 _cell(seed_stat(r["overlap_rate"] for r in group), 100, ".1f"), _total(group, "contacts"),
                 f"{min(seps):.3f}" if all(_finite(v) for v in seps) else "n/a", _total(group, "ssm_violations"),
                 _cell(seed_stat(pace_of(r) for r in group), 1, ".1f"), _total(group, "fallbacks"),
                 _total(group, "aborted_reaches"))
        lines.append("  ".join(f"{c:>{w}}" if i >= 3 else f"{c:<{w}}"
                               for i, (c, (_, w)) in enumerate(zip(cells, TABLE_COLUMNS))))
    lines.append("n: sessions (training seeds) in the line; a ± is the 95% t half-width over them (n=1: no CI). "
                 "turns: fewest scored/asked ('!' = a session incomplete). pace: robot and partner turns per minute. "
                 "aborts: reaches begun and taken back before the entry.")
    return "\n".join(lines)


def format_failures(rows: Sequence[dict]) -> str:
    bad = [r for r in rows if r["status"] != "ok"]
    if not bad:
        return ""
    return "Sessions that did not complete:\n" + "\n".join(
        f"    {r['profile']} / {r['policy']}" + (f" [{Path(r['checkpoint']).name}]" if r["checkpoint"] else "")
        + f": {r['status']}: {r['reason']}" for r in bad)


CSV_FIELDS = ("profile", "heldout", "policy", "kind", "debounce_s", "checkpoint", "training_seed", "seed",
              "turns_requested", "turns", "status", "reason", *CORE_METRICS[:6], "contacts", *OPTIONAL_METRICS,
              "median_response_latency_s", "partner_turns", "fallbacks", "fallback_clear_s", "sim_time_s",
              "wall_time_s", "shared_encoder")


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """All rows, one per session (NaN / None -> empty cell); written to a temporary file and renamed,
    so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None or (isinstance(r.get(k), float) and not math.isfinite(r[k]))
                            else r.get(k)) for k in CSV_FIELDS})
    os.replace(tmp, path)


def write_json(doc: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(doc), indent=2, allow_nan=False, default=_json_default), encoding="utf-8")
    os.replace(tmp, path)


def plot_frontier(rows: Sequence[dict], path: Path) -> None:
    """One subplot per profile: overlap rate (%) vs median gap (ms); the reactive sweep as a line
    labelled by debounce, the other policies as distinct markers (one per training seed). The four-axis
    frontier (p90 and pace too) is judged in the verdicts, not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = list(dict.fromkeys(r["profile"] for r in rows))
    ncols = min(4, max(1, len(profiles)))
    nrows = math.ceil(len(profiles) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(6.0, 4.2 * ncols), 3.6 * nrows + 0.8), squeeze=False)
    # marker, colour, size, filled. Hollow markers stay visible where policies coincide.
    style = {MIRROR: ("*", "tab:red", 160, True), UNSHARED: ("D", "tab:purple", 110, False),
             EAGER: ("^", "tab:green", 150, False), ORACLE: ("s", "black", 240, False)}
    for ax, prof in zip(axes.flat, profiles):
        mine = [r for r in rows if r["profile"] == prof]
        finite = [r for r in mine if _finite(r["median_gap_s"]) and _finite(r["overlap_rate"])]
        top = max([2.0] + [1.15 * r["overlap_rate"] * 100 for r in finite])
        reactive = sorted((r for r in finite if r["kind"] == REACTIVE), key=lambda r: r["debounce_s"])
        if reactive:
            xs = [r["median_gap_s"] * 1e3 for r in reactive]
            ys = [r["overlap_rate"] * 100 for r in reactive]
            ax.plot(xs, ys, "o-", color="tab:blue", label="reactive (debounce s)", zorder=2)
            for r, x, y in zip(reactive, xs, ys):
                ax.annotate(f"{r['debounce_s']:g}", (x, y), textcoords="offset points", xytext=(3, 5), fontsize=7,
                            color="tab:blue")
        for r in finite:
            if r["kind"] in style:
                marker, colour, size, filled = style[r["kind"]]
                ax.scatter([r["median_gap_s"] * 1e3], [r["overlap_rate"] * 100], marker=marker, s=size,
                           facecolors=colour if filled else "none", edgecolors=colour, linewidths=1.4,
                           label=r["policy"], zorder=4 if filled else 3)
        heldout = any(r["heldout"] for r in mine)
        ax.set_title(prof + (" (held-out)" if heldout else ""), fontsize=10)
        ax.set_xlabel("median gap (ms)")
        ax.set_ylabel("overlap rate (% of turns)")
        ax.set_xlim(left=0)
        ax.set_ylim(-0.05 * top, top)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(profiles):]:
        ax.set_visible(False)
    handles: dict = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 6), fontsize=8,
               frameon=False)
    fig.suptitle("Overlap rate vs median gap per partner (one marker per session)", fontsize=11)
    fig.tight_layout(rect=(0, 0.8 / (3.6 * nrows + 0.8), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# =========================================================================== provenance


def judge_source(text: str) -> tuple[Path, tuple[str, ...]]:
    """A ``--judge`` argument: ``results.json`` (all its rows) or ``results.json:KIND[,KIND...]``
    (only the rows of those policy kinds, e.g. ``old/results.json:eager,oracle,reactive``)."""
    head, sep, tail = text.rpartition(":")
    kinds = tuple(k.strip() for k in tail.split(",")) if sep else ()
    if sep and head and all(k in KINDS for k in kinds):
        return Path(head), kinds
    return Path(text), KINDS


def load_results(sources_given: Sequence[tuple[Path, Sequence[str]]]) -> tuple[list[dict], list[dict], list[dict]]:
    """The rows of earlier runs' ``results.json`` files, to be judged together (``--judge``): e.g. the
    control rows of one run and the mirror rows of new checkpoints from another. Each file comes with
    the policy kinds to take from it. Returns (rows, profile specs, one provenance record per file:
    path, commit, kinds, rows). The files must describe the same sessions (turns, session seed,
    liveness bound), and no session may be in two files; otherwise ValueError naming the files."""
    rows: list[dict] = []
    profiles: dict[str, dict] = {}
    sources: list[dict] = []
    where: dict[tuple, str] = {}
    for path, kinds in sources_given:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            settings, file_rows = doc["settings"], doc["rows"]
            same = {k: settings[k] for k in ("turns", "seed", "fallback_clear_s")}
            file_profiles = settings["profiles"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a results.json of this benchmark ({type(exc).__name__}: {exc})") from exc
        if sources and same != sources[0]["sessions"]:
            raise ValueError(f"{path} was measured with {same}, {sources[0]['path']} with "
                             f"{sources[0]['sessions']}: only the same sessions can be judged together")
        for spec in file_profiles:
            profiles.setdefault(spec["name"], spec)
        file_rows = [r for r in file_rows if r.get("kind") in kinds]
        for r in file_rows:
            key = (r["profile"], r["policy"], r.get("checkpoint"))
            if key in where:
                raise ValueError(f"the session {key[1]} on {key[0]}"
                                 + (f" ({key[2]})" if key[2] else "") + f" is in {where[key]} and in {path}")
            where[key] = str(path)
            # JSON has no NaN: the writer stored None for it.
            rows.append({**r, **{k: _number(r.get(k)) for k in CORE_METRICS + OPTIONAL_METRICS}})
        sources.append({"path": str(path), "git": doc.get("git"), "complete": bool(doc.get("complete")),
                        "sessions": same, "kinds": list(kinds), "rows": len(file_rows)})
    return rows, list(profiles.values()), sources


def git_commit() -> dict:
    """The repository's HEAD commit and whether the tree has local changes (None when unknown)."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


# =========================================================================== command line
def _debounce_list(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--debounce expects comma-separated seconds, got {text!r}") from exc
    if not vals or any(not (math.isfinite(v) and v >= 0) for v in vals):
        raise argparse.ArgumentTypeError(f"--debounce expects one or more finite values >= 0 s, got {text!r}")
    return sorted(set(vals))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--turns", type=int, default=200, help="robot turns per (profile, policy) session (default 200)")
    p.add_argument("--seed", type=int, default=0, help="session seed of every session (default 0)")
    p.add_argument("--profiles", nargs="+", default=list(SHIPPED_PROFILES), metavar="NAME_OR_YAML",
                   help=f"partner profiles (default: {' '.join(SHIPPED_PROFILES)})")
    p.add_argument("--heldout", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the held-out partners in --heldout-dir (default: yes)")
    p.add_argument("--heldout-dir", type=Path, default=HELDOUT_DIR, help="folder of held-out profile YAMLs")
    p.add_argument("--debounce", type=_debounce_list, default=list(DEFAULT_DEBOUNCE_S),
                   help="reactive debounce sweep, seconds, comma-separated (default 0,0.2,0.4,0.8,1.2,1.6,2.0)")
    p.add_argument("--checkpoints-mirror", "--checkpoint", dest="checkpoints_mirror", nargs="+", type=Path,
                   default=None, metavar="PATH",
                   help="mirror checkpoints, one per training seed; each is one row group (default: the shipped one)")
    p.add_argument("--checkpoints-unshared", "--unshared-checkpoint", dest="checkpoints_unshared", nargs="+",
                   type=Path, default=[DEFAULT_UNSHARED_CHECKPOINT], metavar="PATH",
                   help="checkpoints of the unshared-encoder ablation, one per training seed "
                        "(default bench/checkpoints/mirror_unshared.pt; missing files are skipped)")
    p.add_argument("--fallback-clear-s", type=float, default=None,
                   help=f"the policies' liveness bound, seconds (default: the package's, {DEFAULT_FALLBACK_CLEAR_S:g})")
    p.add_argument("--policies", nargs="+", choices=KINDS, default=list(KINDS), metavar="KIND",
                   help=f"policy kinds to run (default all: {' '.join(KINDS)})")
    add_ray_arguments(p, workers_help="sessions at once (default: every CPU of this machine, or of the cluster)")
    p.add_argument("--controller-set", dest="controller_settings", action="append", default=[], metavar="KEY=VALUE",
                   help="controller parameter for every session (docs/parameters.md), e.g. --controller-set "
                        "ssm_hand_motion=fit (repeatable; values parsed as YAML)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default runs/turn_taking)")
    p.add_argument("--judge", nargs="+", metavar="RESULTS_JSON[:KINDS]",
                   help="run nothing: judge the rows of earlier runs' results.json files together (e.g. "
                        "old/results.json:eager,oracle,reactive new/results.json: the controls of one run, the "
                        "mirror checkpoints of another; same turns, seed and liveness bound), print the table "
                        "and verdicts, write the combined results to --out")
    p.add_argument("--check", action="store_true", help="exit 1 when any acceptance verdict fails")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _checkpoints(paths: Sequence[Path], what: str) -> list[Path]:
    out = [p.resolve() for p in paths]
    dup = sorted({str(p) for p in out if out.count(p) > 1})
    if dup:
        raise ValueError(f"{what}: each checkpoint is one training seed; listed twice: {', '.join(dup)}")
    return out


def report(rows: list[dict], profiles: Sequence[dict], doc: dict, out: Path, **extra) -> tuple[dict, list[dict]]:
    """Print the table, the failed sessions and the verdicts of ``rows``; write results.csv,
    results.json (``doc`` completed with the rows, the verdicts and ``extra``) and frontier.png to
    ``out``. Returns (the acceptance, the sessions that raised)."""
    heldout = {p["name"] for p in profiles if p.get("heldout")}
    acc = acceptance(rows, [p["name"] for p in profiles if p.get("adaptive")])
    broke = [r for r in rows if r["status"] == "error"]
    print()
    print(format_table(rows))
    failures = format_failures(rows)
    if failures:
        print("\n" + failures)
    print("\nAcceptance (issue 10), mirror policy. Frontier: beyond = no reactive setting is at least as good on "
          "median gap, p90 gap and pace together at an overlap rate no higher.")
    print(format_acceptance(acc, heldout))
    for r in rows:
        if r["kind"] == UNSHARED and r["shared_encoder"]:
            print(f"WARNING: {r['profile']}: the mirror-unshared checkpoint {r['checkpoint']} has "
                  f"shared_encoder=true -- it is not the ablation", file=sys.stderr)
        if r["kind"] == MIRROR and r["shared_encoder"] is False:
            print(f"WARNING: {r['profile']}: the mirror checkpoint {r['checkpoint']} has shared_encoder=false",
                  file=sys.stderr)
    doc.update(complete=True, rows=rows, **extra,
               verdicts={"partners": [asdict(v) for v in acc["partners"]],
                         "overall": [asdict(v) for v in acc["overall"]]},
               passed=acc["passed"], broken_sessions=len(broke))
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "results.csv")
    write_json(doc, out / "results.json")
    plot_frontier(rows, out / "frontier.png")
    print(f"\nacceptance: {'PASS' if acc['passed'] else 'FAIL'} ("
          + ", ".join(f"({v.point}) {({True: 'pass', False: 'FAIL', None: 'n/a'})[v.ok]}" for v in acc["overall"])
          + ")")
    return acc, broke


def judge(args, version: str) -> int:
    """``--judge``: the verdicts of earlier runs' rows, together; nothing is run."""
    try:
        rows, profiles, sources = load_results([judge_source(a) for a in args.judge])
    except ValueError as exc:
        print(f"turn_taking: {exc}", file=sys.stderr)
        return 2
    print(f"turn_taking: judging {len(rows)} sessions from {len(sources)} file(s):")
    for src in sources:
        git = src["git"] or {}
        print(f"  {src['path']}: {src['rows']} rows ({', '.join(src['kinds'])}), commit {str(git.get('commit'))[:7]}"
              + (" (dirty)" if git.get("dirty") else "") + ("" if src["complete"] else ", INCOMPLETE run"))
    doc = {"package_version": version, "git": git_commit(), "python": platform.python_version(),
           "settings": {**sources[0]["sessions"], "profiles": profiles}, "judged_from": sources}
    acc, broke = report(rows, profiles, doc, args.out)
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'results.json'}, {args.out / 'frontier.png'}")
    if broke:
        print(f"turn_taking: {len(broke)} session(s) raised an error (see above)", file=sys.stderr)
        return 2
    return 1 if (args.check and not acc["passed"]) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from coop_robot import __version__
    from coop_robot.partner.profile import ProfileError
    from coop_robot.policy.mirror import DEFAULT_CHECKPOINT

    def usage(msg: str) -> int:
        print(f"turn_taking: {msg}", file=sys.stderr)
        return 2

    if args.judge:
        return judge(args, __version__)
    if args.turns < 1:
        return usage(f"--turns must be >= 1, got {args.turns}")
    try:
        address = resolve_address(args.ray_address)
    except ValueError as exc:
        return usage(str(exc))
    if args.seed < 0:
        return usage(f"--seed must be >= 0, got {args.seed}")
    if args.fallback_clear_s is not None and not (math.isfinite(args.fallback_clear_s) and args.fallback_clear_s > 0):
        return usage(f"--fallback-clear-s must be a finite number of seconds > 0, got {args.fallback_clear_s}")
    try:
        profiles = resolve_profiles(args.profiles, args.heldout, args.heldout_dir)
        checkpoints = _checkpoints(args.checkpoints_mirror or [DEFAULT_CHECKPOINT], "--checkpoints-mirror")
        unshared_all = _checkpoints(args.checkpoints_unshared, "--checkpoints-unshared")
    except (ProfileError, ValueError) as exc:
        return usage(str(exc))
    if MIRROR not in args.policies:
        checkpoints = []
    if UNSHARED not in args.policies:
        unshared_all = []
    missing = [c for c in checkpoints if not c.is_file()]
    if missing:
        return usage(f"mirror checkpoint {', '.join(map(str, missing))} does not exist")
    skipped = []
    unshared = []
    for c in unshared_all:
        if c.is_file():
            unshared.append(c)
            continue
        msg = f"mirror-unshared: checkpoint {c} not found; row skipped. To include the ablation, {UNSHARED_HINT}."
        print(msg)
        skipped.append({"policy": UNSHARED, "checkpoint": str(c), "reason": msg})

    specs = [s for s in policy_specs(args.debounce, checkpoints, unshared, args.fallback_clear_s)
             if s.kind in args.policies]
    try:
        controller = parse_settings(args.controller_settings, "--controller-set")
        if controller:   # a bad name or value stops here, not in every session
            from coop_robot.envs.turn_env import controller_config_from_files
            from coop_robot.geometry import world_geometry

            controller_config_from_files(world_geometry().zone, controller)
    except ValueError as exc:
        return usage(str(exc))
    jobs = [Job(p, s, args.turns, args.seed, tuple(sorted(controller.items()))) for p in profiles for s in specs]
    where = {None: "embedded local Ray", SERIAL: "serially in this process"}.get(address, f"Ray at {address}")
    print(f"turn_taking: {len(profiles)} profiles x {len(specs)} policy rows "
          f"({', '.join(k for k in KINDS if k in args.policies)}; {sum(s.kind == MIRROR for s in specs)} mirror, "
          f"{sum(s.kind == UNSHARED for s in specs)} mirror-unshared checkpoint(s)) = {len(jobs)} sessions of "
          f"{args.turns} turns, seed {args.seed}, {where}"
          + (f", {args.workers} at once" if args.workers and address != SERIAL else "")
          + ", fast env (kinematic robot, fitted perception)")
    import torch

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "turns": args.turns, "seed": args.seed, "profiles": [asdict(p) for p in profiles],
        "debounce_s": args.debounce, "policies": [k for k in KINDS if k in args.policies],
        "ray_address": address, "workers": args.workers, "environment": "TurnTakingEnv(physics=False)",
        "controller_params": controller,
        "fallback_clear_s": args.fallback_clear_s or DEFAULT_FALLBACK_CLEAR_S,
        "checkpoints_mirror": [{"path": str(c), "sha256": sha256_file(c)} for c in checkpoints],
        "checkpoints_unshared": [{"path": str(c), "sha256": sha256_file(c)} for c in unshared],
        "acceptance": {"max_p90_vs_oracle": MAX_P90_VS_ORACLE, "max_gap_vs_eager": MAX_GAP_VS_EAGER,
                       "min_partner_share": MIN_PARTNER_SHARE, "min_heldout_share": MIN_HELDOUT_SHARE,
                       "max_gap_vs_oracle": MAX_GAP_VS_ORACLE, "gap_profile": GAP_PROFILE, "ci_level": CI_LEVEL},
    }
    doc = {"package_version": __version__, "git": git_commit(), "python": platform.python_version(),
           "torch": torch.__version__, "settings": settings, "skipped": skipped, "ray": None, "complete": False}
    ray_info: list[RayInfo] = []  # filled when the run has started: how the sessions ran

    def save(rows_so_far: Sequence[dict | None]) -> None:
        done = [r for r in rows_so_far if r is not None]
        if ray_info:
            doc["ray"] = ray_info[0].as_dict()
        write_csv(done, out / "results.csv")
        write_json({**doc, "rows": done}, out / "results.json")

    save([])
    t0 = time.monotonic()
    try:
        rows = run_jobs(jobs, address=address, workers=args.workers, progress=not args.quiet, on_row=save,
                        info=ray_info)
    except (RuntimeError, ConnectionError) as exc:  # TaskError included
        # run_job turns a session's own error into its row: what arrives here is Ray failing.
        print(f"turn_taking: the run broke: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    wall = time.monotonic() - t0

    acc, broke = report(rows, [asdict(p) for p in profiles], doc, out, wall_time_s=round(wall, 1),
                        ray=ray_info[0].as_dict() if ray_info else None)
    if ray_info:
        print(f"ran on {ray_info[0].describe()}")
    print(f"{len(jobs)} sessions in {_elapsed(wall)}; wrote {out / 'results.csv'}, {out / 'results.json'}, "
          f"{out / 'frontier.png'}")
    if broke:
        print(f"turn_taking: {len(broke)} session(s) raised an error (see above); the benchmark is incomplete",
              file=sys.stderr)
        return 2
    return 1 if (args.check and not acc["passed"]) else 0


def _json_default(v):
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


if __name__ == "__main__":
    sys.exit(main())

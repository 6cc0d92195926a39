"""Turn-taking benchmark (issue 3): the mirror policy against the reactive frontier, on every partner.

For every partner profile -- the shipped ones (typical, fast, slow, hesitant, erratic) and the
held-out ones in ``test/heldout_partners/`` -- it runs, in the fast headless environment
(:class:`~coop_robot.envs.turn_env.TurnTakingEnv`, kinematic robot, fitted perception model) and
on the same seed:

* ``reactive`` at each ``--debounce`` value: its overlap-rate vs median-gap frontier;
* ``mirror``: the mirror network (shipped checkpoint unless ``--checkpoint``);
* ``mirror-unshared``: the ablation with separate encoders for self and other
  (``--unshared-checkpoint``; skipped, with the command that makes it, when the file is missing);
* ``eager``: says "act" as soon as the robot's turn is due and leaves the timing to the
  controller's anticipation (staging pose, entry on the perceived exit) -- how much of the gap
  the controller closes without any forecast;
* ``oracle``: knows the partner's planned exit from the sim (a lower bound).

It prints one table, then per profile the acceptance verdicts for ``mirror`` (and, for
comparison, ``mirror-unshared``): no contacts, overlap rate <= 1 %, median gap <= 200 ms on
``typical``, every turn completed, and *beyond the reactive frontier* -- no debounce value gives
the reactive policy a median gap as short AND an overlap rate as low (ties count against the
candidate). Writes ``results.csv``, ``results.json`` and ``frontier.png`` to ``--out``.

    python bench/turn_taking.py [--turns 200] [--seed 0] [--profiles typical fast ...]
        [--heldout/--no-heldout] [--debounce 0,0.2,0.4,0.8,1.2,1.6,2.0] [--checkpoint PATH]
        [--unshared-checkpoint PATH] [--workers 2] [--out DIR] [--check]

``--check`` exits 1 when any acceptance point of ``mirror`` fails (2 on bad arguments).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import multiprocessing
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# Cheap (NumPy only): torch, matplotlib and the environment are imported where they are used.
from coop_robot.policy.base import Decision, Observation, Policy

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_PROFILES = ("typical", "fast", "slow", "hesitant", "erratic")
HELDOUT_DIR = REPO_ROOT / "test" / "heldout_partners"
DEFAULT_DEBOUNCE_S = (0.0, 0.2, 0.4, 0.8, 1.2, 1.6, 2.0)
DEFAULT_UNSHARED_CHECKPOINT = REPO_ROOT / "bench" / "checkpoints" / "mirror_unshared.pt"
DEFAULT_OUT = REPO_ROOT / "runs" / "turn_taking"

# Acceptance (issue 3 item 6).
MAX_OVERLAP_RATE = 0.01          # fraction of robot turns with overlap
MAX_TYPICAL_MEDIAN_GAP_S = 0.200
GAP_PROFILE = "typical"          # the median-gap bound applies to this profile only

MIRROR, UNSHARED, EAGER, ORACLE, REACTIVE = "mirror", "mirror-unshared", "eager", "oracle", "reactive"
CANDIDATES = (MIRROR, UNSHARED)  # the rows judged against the reactive frontier

UNSHARED_HINT = ("make it with `coop-robot train --config config/training/train_unshared.yaml "
                 "--out runs/mirror_unshared` and copy runs/mirror_unshared/mirror.pt to "
                 "bench/checkpoints/mirror_unshared.pt (or pass --unshared-checkpoint PATH)")


# =========================================================================== frontier logic
@dataclass(frozen=True)
class OperatingPoint:
    """One policy's operating point on a profile: median gap (s) and overlap rate (fraction of turns)."""

    label: str
    median_gap_s: float
    overlap_rate: float

    @property
    def valid(self) -> bool:
        return math.isfinite(self.median_gap_s) and math.isfinite(self.overlap_rate)


def dominating_points(candidate: OperatingPoint, reactive: Iterable[OperatingPoint],
                      tol: float = 1e-9) -> list[OperatingPoint]:
    """The reactive points at least as good as ``candidate`` on both axes: median gap <= the
    candidate's AND overlap rate <= the candidate's (``tol`` absorbs float noise, so an exact tie
    dominates). Reactive points without a finite gap (no turn completed) dominate nothing."""
    if not candidate.valid:
        raise ValueError(f"candidate {candidate.label!r} has no finite operating point "
                         f"(median gap {candidate.median_gap_s!r} s, overlap rate {candidate.overlap_rate!r})")
    return [p for p in reactive
            if p.valid and p.median_gap_s <= candidate.median_gap_s + tol
            and p.overlap_rate <= candidate.overlap_rate + tol]


def beyond_frontier(candidate: OperatingPoint, reactive: Iterable[OperatingPoint], tol: float = 1e-9) -> bool:
    """True when no reactive point has both a median gap as short and an overlap rate as low as
    ``candidate`` (see :func:`dominating_points`); False for a candidate without a finite point."""
    if not candidate.valid:
        return False
    return not dominating_points(candidate, reactive, tol)


def pareto_front(points: Iterable[OperatingPoint]) -> list[OperatingPoint]:
    """The non-dominated points (lower gap and lower overlap are better), sorted by median gap."""
    pts = sorted((p for p in points if p.valid), key=lambda p: (p.median_gap_s, p.overlap_rate))
    front: list[OperatingPoint] = []
    best_overlap = math.inf
    for p in pts:
        if p.overlap_rate < best_overlap:
            front.append(p)
            best_overlap = p.overlap_rate
    return front


@dataclass
class Check:
    """One acceptance point: ``ok`` is True/False, or None when it does not apply (n/a)."""

    name: str
    ok: bool | None
    detail: str


def acceptance_checks(row: dict, reactive_rows: Sequence[dict], turns_requested: int) -> list[Check]:
    """The acceptance points for one candidate row (``mirror`` or ``mirror-unshared``) on its profile.

    ``row`` / ``reactive_rows`` are result rows (keys ``profile``, ``turns``, ``median_gap_s``,
    ``overlap_rate``, ``contacts``, ``policy``); the reactive rows are those of the same profile.
    """
    checks = [Check("turns", row["turns"] >= turns_requested, f"{row['turns']}/{turns_requested} completed")]
    checks.append(Check("contacts", row["contacts"] == 0, f"{row['contacts']} contacts (need 0)"))
    rate = row["overlap_rate"]
    checks.append(Check("overlap", math.isfinite(rate) and rate <= MAX_OVERLAP_RATE + 1e-12,
                        f"overlap {_pct(rate)} (need <= {MAX_OVERLAP_RATE * 100:.0f}%)"))
    gap = row["median_gap_s"]
    if row["profile"] == GAP_PROFILE:
        checks.append(Check("median gap", math.isfinite(gap) and gap <= MAX_TYPICAL_MEDIAN_GAP_S + 1e-9,
                            f"median gap {_ms(gap)} (need <= {MAX_TYPICAL_MEDIAN_GAP_S * 1e3:.0f} ms)"))
    else:
        checks.append(Check("median gap", None, f"median gap {_ms(gap)} (bound on {GAP_PROFILE} only)"))
    cand = OperatingPoint(row["policy"], gap, rate)
    reactive = [OperatingPoint(r["policy"], r["median_gap_s"], r["overlap_rate"]) for r in reactive_rows]
    if not any(p.valid for p in reactive):
        checks.append(Check("frontier", None, "no reactive point to compare with"))
    elif not cand.valid:
        checks.append(Check("frontier", False, "no finite operating point"))
    else:
        dom = dominating_points(cand, reactive)
        detail = ("beyond the reactive frontier" if not dom else
                  "dominated by " + ", ".join(f"{p.label} ({_ms(p.median_gap_s)}, {_pct(p.overlap_rate)})"
                                              for p in dom))
        checks.append(Check("frontier", not dom, detail))
    return checks


def passed(checks: Sequence[Check]) -> bool:
    """All applicable checks pass (n/a ones are ignored)."""
    return all(c.ok is not False for c in checks)


def _ms(v: float) -> str:
    return f"{v * 1e3:.0f} ms" if math.isfinite(v) else "n/a"


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%" if math.isfinite(v) else "n/a"


# =========================================================================== the eager baseline
class EagerPolicy(Policy):
    """Says "act" as soon as the robot's turn is due (the partner has been perceived in the zone
    since the robot last acted: base-class ``robot_turn_due``) and keeps saying it while reaching /
    acting. No forecast: the controller's anticipation moves the arm to its staging pose outside
    the zone and enters once the partner is perceived out; its zone guard, not this policy, keeps
    the arm out. The gap it leaves is what the controller achieves without any network."""

    name = EAGER
    yields_to_partner = False  # as mirror / oracle: the staging pose keeps the arm out

    def decide(self, obs: Observation) -> Decision:
        if obs.robot_state == "home":
            return Decision("act" if self.robot_turn_due else "wait")
        if obs.robot_state in ("reaching", "acting"):
            return Decision("act")
        return Decision("wait")


# =========================================================================== jobs
@dataclass(frozen=True)
class ProfileSpec:
    """A partner profile: ``name`` for the table, ``source`` (shipped name or YAML path) for the env."""

    name: str
    source: str
    heldout: bool = False


@dataclass(frozen=True)
class PolicySpec:
    label: str                       # row label, e.g. "reactive 0.4s", "mirror"
    kind: str                        # reactive | mirror | mirror-unshared | eager | oracle
    debounce_s: float | None = None
    checkpoint: str | None = None


@dataclass(frozen=True)
class Job:
    profile: ProfileSpec
    policy: PolicySpec
    turns: int
    seed: int


def policy_specs(debounce_s: Sequence[float], checkpoint: Path, unshared: Path | None) -> list[PolicySpec]:
    """The benchmark's rows for one profile (``unshared`` None = that row is skipped)."""
    specs = [PolicySpec(f"reactive {d:g}s", REACTIVE, debounce_s=float(d)) for d in debounce_s]
    specs.append(PolicySpec(MIRROR, MIRROR, checkpoint=str(checkpoint)))
    if unshared is not None:
        specs.append(PolicySpec(UNSHARED, UNSHARED, checkpoint=str(unshared)))
    specs += [PolicySpec(EAGER, EAGER), PolicySpec(ORACLE, ORACLE)]
    return specs


def build_policy(spec: PolicySpec):
    """The policy object for a spec (in the worker process)."""
    from coop_robot.policy import make_policy

    if spec.kind == REACTIVE:
        return make_policy("reactive", debounce_s=spec.debounce_s)
    if spec.kind in (MIRROR, UNSHARED):
        return make_policy("mirror", checkpoint=spec.checkpoint)
    if spec.kind == EAGER:
        return EagerPolicy()
    if spec.kind == ORACLE:
        return make_policy("oracle")
    raise ValueError(f"unknown benchmark policy kind {spec.kind!r}; expected one of "
                     f"{(REACTIVE, MIRROR, UNSHARED, EAGER, ORACLE)}")


def job_env(job: Job):
    """The environment one job runs in: the kinematic TurnTakingEnv with the package's
    config/world.yaml and config/controller.yaml (the controller node's own parameter table)."""
    from coop_robot.envs.turn_env import TurnTakingEnv

    return TurnTakingEnv(partner=job.profile.source, seed=job.seed, physics=False)


def run_job(job: Job) -> dict:
    """Run one (profile, policy) pair in its own environment; return its result row."""
    policy = build_policy(job.policy)
    env = job_env(job)
    try:
        s = env.run(policy, job.turns)
    finally:
        env.close()
    info = getattr(policy, "info", None)
    return {
        "profile": job.profile.name,
        "heldout": job.profile.heldout,
        "policy": job.policy.label,
        "kind": job.policy.kind,
        "debounce_s": job.policy.debounce_s,
        "seed": job.seed,
        "turns": int(s["turns"]),
        "median_gap_s": float(s["median_gap_s"]),
        "p90_gap_s": float(s["p90_gap_s"]),
        "mean_gap_s": float(s["mean_gap_s"]),
        "overlap_rate": float(s["overlap_rate"]),
        "overlap_s_total": float(s["overlap_s_total"]),
        "contacts": int(s["contacts"]),
        "throughput_per_min": float(s["throughput_per_min"]),
        "median_response_latency_s": float(s["median_response_latency_s"]),
        "partner_turns": int(s["partner_turns"]),
        "sim_time_s": float(s["sim_time_s"]),
        "wall_time_s": float(s["wall_time_s"]),
        "shared_encoder": None if info is None else bool(info.config.shared_encoder),
    }


def _init_worker() -> None:
    from coop_robot.policy.threads import configure_torch_threads

    configure_torch_threads()  # 1 thread (or $COOP_ROBOT_TORCH_THREADS) in every worker


def run_jobs(jobs: Sequence[Job], workers: int, progress: bool = True) -> list[dict]:
    """Run the jobs (in this process for ``workers == 1``, else on a spawn pool); rows in job order."""
    jobs = list(jobs)
    # Longest first (the network's rows are ~3x slower per turn) so the pool ends evenly.
    order = sorted(range(len(jobs)), key=lambda i: jobs[i].policy.kind not in (MIRROR, UNSHARED))
    rows: list[dict | None] = [None] * len(jobs)
    t0 = time.monotonic()
    done = 0

    def report(i: int) -> None:
        nonlocal done
        done += 1
        if progress:
            j = jobs[i]
            _progress(f"[{done:3d}/{len(jobs)}] {_elapsed(time.monotonic() - t0)} elapsed; "
                      f"done {j.profile.name} / {j.policy.label}", last=done == len(jobs))

    if workers <= 1:
        _init_worker()
        for i in order:
            rows[i] = run_job(jobs[i])
            report(i)
        return rows  # type: ignore[return-value]
    # Spawn (not fork): torch and PyBullet state must not be inherited. The children import this
    # module by name, so its folder must be on their path (it is when run as a script).
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=workers, initializer=_init_worker) as pool:
        results = pool.imap_unordered(_run_indexed, [(i, jobs[i]) for i in order])
        for i, row in results:
            rows[i] = row
            report(i)
    return rows  # type: ignore[return-value]


def _run_indexed(item: tuple[int, Job]) -> tuple[int, dict]:
    i, job = item
    return i, run_job(job)


def _progress(text: str, last: bool) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + text.ljust(100) + ("\n" if last else ""))
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _elapsed(s: float) -> str:
    m, sec = divmod(int(s), 60)
    return f"{m}m{sec:02d}s"


# =========================================================================== reporting
TABLE_COLUMNS = (("profile", 10), ("held-out", 8), ("policy", 16), ("turns", 5), ("med gap ms", 10),
                 ("p90 gap ms", 10), ("overlap %", 9), ("overlap s", 9), ("contacts", 8), ("turns/min", 9))


def format_table(rows: Sequence[dict]) -> str:
    def num(v: float, scale: float = 1.0, fmt: str = ".0f") -> str:
        return format(v * scale, fmt) if math.isfinite(v) else "n/a"

    head = "  ".join(f"{name:>{w}}" if i >= 3 else f"{name:<{w}}" for i, (name, w) in enumerate(TABLE_COLUMNS))
    lines = [head, "-" * len(head)]
    prev = None
    for r in rows:
        if prev is not None and r["profile"] != prev:
            lines.append("")
        prev = r["profile"]
        cells = (r["profile"], "yes" if r["heldout"] else "", r["policy"], str(r["turns"]),
                 num(r["median_gap_s"], 1e3), num(r["p90_gap_s"], 1e3), num(r["overlap_rate"], 100, ".1f"),
                 num(r["overlap_s_total"], 1, ".2f"), str(r["contacts"]), num(r["throughput_per_min"], 1, ".1f"))
        lines.append("  ".join(f"{c:>{w}}" if i >= 3 else f"{c:<{w}}"
                               for i, (c, (_, w)) in enumerate(zip(cells, TABLE_COLUMNS))))
    return "\n".join(lines)


def verdicts(rows: Sequence[dict], turns: int) -> list[dict]:
    """Acceptance checks of every candidate row, per profile in row order."""
    out = []
    profiles = list(dict.fromkeys(r["profile"] for r in rows))
    for prof in profiles:
        mine = [r for r in rows if r["profile"] == prof]
        reactive = [r for r in mine if r["kind"] == REACTIVE]
        eager = next((r for r in mine if r["kind"] == EAGER), None)
        for r in mine:
            if r["kind"] in CANDIDATES:
                checks = acceptance_checks(r, reactive, turns)
                v = {"profile": prof, "heldout": r["heldout"], "policy": r["policy"],
                     "passed": passed(checks), "checks": [asdict(c) for c in checks]}
                if eager is not None:
                    # Not a pass/fail point: how much the network adds over "act when due".
                    v["vs_eager"] = {"median_gap_delta_s": r["median_gap_s"] - eager["median_gap_s"],
                                     "overlap_rate_delta": r["overlap_rate"] - eager["overlap_rate"]}
                out.append(v)
    return out


def format_verdicts(vs: Sequence[dict]) -> str:
    mark = {True: "ok", False: "FAIL", None: "n/a"}
    lines = []
    for v in vs:
        tag = " (held-out)" if v["heldout"] else ""
        lines.append(f"{v['profile'] + tag:<21} {v['policy']:<16} {'PASS' if v['passed'] else 'FAIL'}")
        for c in v["checks"]:
            lines.append(f"    {mark[c['ok']]:>4}  {c['name']:<10} {c['detail']}")
        d = v.get("vs_eager")
        if d is not None:
            gap, ovl = d["median_gap_delta_s"], d["overlap_rate_delta"]
            gap_txt = f"{gap * 1e3:+.0f} ms" if math.isfinite(gap) else "n/a"
            ovl_txt = f"{ovl * 100:+.1f} points" if math.isfinite(ovl) else "n/a"
            lines.append(f"    info  vs eager   median gap {gap_txt}, overlap {ovl_txt} "
                         f"(eager: act when due, no network)")
    return "\n".join(lines)


CSV_FIELDS = ("profile", "heldout", "policy", "kind", "debounce_s", "seed", "turns", "median_gap_s", "p90_gap_s",
              "mean_gap_s", "overlap_rate", "overlap_s_total", "contacts", "throughput_per_min",
              "median_response_latency_s", "partner_turns", "sim_time_s", "wall_time_s", "shared_encoder")


def write_csv(rows: Sequence[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})


def plot_frontier(rows: Sequence[dict], path: Path) -> None:
    """One subplot per profile: overlap rate (%) vs median gap (ms); the reactive sweep as a line
    labelled by debounce, the other policies as distinct markers."""
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
        finite = [r for r in mine if math.isfinite(r["median_gap_s"]) and math.isfinite(r["overlap_rate"])]
        top = max([2.0] + [1.15 * r["overlap_rate"] * 100 for r in finite])
        reactive = sorted((r for r in finite if r["kind"] == REACTIVE), key=lambda r: r["debounce_s"])
        if reactive:
            xs = [r["median_gap_s"] * 1e3 for r in reactive]
            ys = [r["overlap_rate"] * 100 for r in reactive]
            # Shade what the reactive sweep dominates: a point there is not beyond the frontier.
            front = pareto_front(OperatingPoint(r["policy"], r["median_gap_s"], r["overlap_rate"]) for r in reactive)
            right = max(r["median_gap_s"] for r in finite) * 1e3 * 1.1 + 50
            sx = [p.median_gap_s * 1e3 for p in front] + [right]
            sy = [p.overlap_rate * 100 for p in front] + [front[-1].overlap_rate * 100]
            ax.fill_between(sx, sy, top, step="post", color="tab:blue", alpha=0.08, lw=0,
                            label="dominated by reactive")
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
        ax.axhline(MAX_OVERLAP_RATE * 100, color="grey", lw=0.8, ls=":")
        if prof == GAP_PROFILE:
            ax.axvline(MAX_TYPICAL_MEDIAN_GAP_S * 1e3, color="grey", lw=0.8, ls=":")
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
    fig.suptitle("Overlap rate vs median gap per partner (dotted: acceptance bounds)", fontsize=11)
    fig.tight_layout(rect=(0, 0.8 / (3.6 * nrows + 0.8), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# =========================================================================== provenance
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    p.add_argument("--seed", type=int, default=0, help="seed of every session (default 0)")
    p.add_argument("--profiles", nargs="+", default=list(SHIPPED_PROFILES), metavar="NAME_OR_YAML",
                   help=f"partner profiles (default: {' '.join(SHIPPED_PROFILES)})")
    p.add_argument("--heldout", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the held-out partners in --heldout-dir (default: yes)")
    p.add_argument("--heldout-dir", type=Path, default=HELDOUT_DIR, help="folder of held-out profile YAMLs")
    p.add_argument("--debounce", type=_debounce_list, default=list(DEFAULT_DEBOUNCE_S),
                   help="reactive debounce sweep, seconds, comma-separated (default 0,0.2,0.4,0.8,1.2,1.6,2.0)")
    p.add_argument("--checkpoint", type=Path, default=None, help="mirror checkpoint (default: the shipped one)")
    p.add_argument("--unshared-checkpoint", type=Path, default=DEFAULT_UNSHARED_CHECKPOINT,
                   help="checkpoint of the unshared-encoder ablation (default bench/checkpoints/mirror_unshared.pt)")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default runs/turn_taking)")
    p.add_argument("--check", action="store_true", help="exit 1 when any mirror acceptance point fails")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def resolve_profiles(names: Sequence[str], heldout: bool, heldout_dir: Path) -> list[ProfileSpec]:
    """Profile specs (validated by loading them); held-out = a file inside ``heldout_dir``."""
    from coop_robot.partner.profile import load_profile, resolve_profile_path

    hdir = heldout_dir.resolve()
    sources = [str(n) for n in names]
    if heldout:
        files = sorted(hdir.glob("*.yaml"))
        if not files:
            raise ValueError(f"no held-out profiles (*.yaml) in {hdir}; pass --no-heldout or --heldout-dir")
        sources += [str(f) for f in files]
    specs: list[ProfileSpec] = []
    for src in sources:
        prof = load_profile(src)  # ProfileError names the bad profile
        path = resolve_profile_path(src).resolve()
        spec = ProfileSpec(name=prof.name, source=str(path), heldout=path.parent == hdir)
        if spec.name in {s.name for s in specs}:
            if spec.source in {s.source for s in specs}:
                continue
            raise ValueError(f"two profiles are named {spec.name!r} ({src}); give each a distinct name")
        specs.append(spec)
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from coop_robot import __version__
    from coop_robot.partner.profile import ProfileError
    from coop_robot.policy.mirror import DEFAULT_CHECKPOINT

    if args.turns < 1:
        print(f"turn_taking: --turns must be >= 1, got {args.turns}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"turn_taking: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.seed < 0:
        print(f"turn_taking: --seed must be >= 0, got {args.seed}", file=sys.stderr)
        return 2
    try:
        profiles = resolve_profiles(args.profiles, args.heldout, args.heldout_dir)
    except (ProfileError, ValueError) as exc:
        print(f"turn_taking: {exc}", file=sys.stderr)
        return 2
    checkpoint = (args.checkpoint or DEFAULT_CHECKPOINT).resolve()
    if not checkpoint.is_file():
        print(f"turn_taking: mirror checkpoint {checkpoint} does not exist", file=sys.stderr)
        return 2
    unshared: Path | None = args.unshared_checkpoint.resolve()
    skipped = []
    if not unshared.is_file():
        msg = (f"mirror-unshared: checkpoint {unshared} not found; row skipped. "
               f"To include the ablation, {UNSHARED_HINT}.")
        print(msg)
        skipped.append({"policy": UNSHARED, "reason": msg})
        unshared = None

    specs = policy_specs(args.debounce, checkpoint, unshared)
    jobs = [Job(p, s, args.turns, args.seed) for p in profiles for s in specs]
    print(f"turn_taking: {len(profiles)} profiles x {len(specs)} policies = {len(jobs)} sessions of {args.turns} "
          f"turns, seed {args.seed}, {args.workers} worker(s), fast env (kinematic robot, fitted perception)")
    t0 = time.monotonic()
    rows = run_jobs(jobs, args.workers, progress=not args.quiet)
    wall = time.monotonic() - t0

    vs = verdicts(rows, args.turns)
    print()
    print(format_table(rows))
    print()
    print("Acceptance (mirror; mirror-unshared for comparison). Frontier: beyond = no reactive debounce value has a "
          "median gap <= and an overlap rate <= the policy's.")
    print(format_verdicts(vs))
    for r in rows:
        if r["kind"] == UNSHARED and r["shared_encoder"]:
            print(f"WARNING: {r['profile']}: the mirror-unshared checkpoint {unshared} has shared_encoder=true -- "
                  f"it is not the ablation", file=sys.stderr)
        if r["kind"] == MIRROR and r["shared_encoder"] is False:
            print(f"WARNING: {r['profile']}: the mirror checkpoint {checkpoint} has shared_encoder=false",
                  file=sys.stderr)
    mirror_ok = all(v["passed"] for v in vs if v["policy"] == MIRROR)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "results.csv")
    import torch

    settings = {
        "turns": args.turns, "seed": args.seed, "profiles": [asdict(p) for p in profiles],
        "debounce_s": args.debounce, "workers": args.workers, "environment": "TurnTakingEnv(physics=False)",
        "checkpoint": {"path": str(checkpoint), "sha256": _sha256(checkpoint)},
        "unshared_checkpoint": (None if unshared is None else {"path": str(unshared), "sha256": _sha256(unshared)}),
        "acceptance": {"max_overlap_rate": MAX_OVERLAP_RATE, "max_median_gap_s": MAX_TYPICAL_MEDIAN_GAP_S,
                       "median_gap_profile": GAP_PROFILE, "contacts": 0},
    }
    doc = {"package_version": __version__, "git": git_commit(), "python": platform.python_version(),
           "torch": torch.__version__, "settings": settings, "wall_time_s": round(wall, 1), "rows": rows,
           "skipped": skipped, "verdicts": vs, "mirror_passed": mirror_ok}
    (out / "results.json").write_text(json.dumps(_finite(doc), indent=2, allow_nan=False, default=_json_default),
                                      encoding="utf-8")
    plot_frontier(rows, out / "frontier.png")
    print(f"\nmirror acceptance: {'PASS' if mirror_ok else 'FAIL'} on every profile" if mirror_ok else
          "\nmirror acceptance: FAIL on " + ", ".join(sorted({v['profile'] for v in vs
                                                           if v['policy'] == MIRROR and not v['passed']})))
    print(f"{len(jobs)} sessions in {_elapsed(wall)}; wrote {out / 'results.csv'}, {out / 'results.json'}, "
          f"{out / 'frontier.png'}")
    return 1 if (args.check and not mirror_ok) else 0


def _finite(v):
    """NaN / inf -> None, recursively (strict JSON has no NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _json_default(v):
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


if __name__ == "__main__":
    sys.exit(main())

"""Lesions of a mirror network: silence chosen units and measure what the turn-taking loses.

The core of ``coop-robot lesion`` (:mod:`coop_robot.analysis.lesion_cmd`):

* :func:`silenced` zeroes chosen units of one layer of a :class:`~coop_robot.policy.mirror_net.MirrorPolicyNet`
  with forward hooks, for as long as a ``with`` block lasts. ``encoder``: latent units of the
  mirror encoder's output, for the robot's own window and the partner's alike (with a shared
  encoder it is the same unit; with separate encoders the same latent dimension of both).
  ``gru``: hidden units of the GRU core, clamped to 0 after every step, so they pass nothing to
  the heads and carry nothing into the next tick. The network's code is untouched; an empty
  lesion registers no hook at all, so its decisions are the intact network's, bit for bit.
* Unit selection (:func:`targeted_units`, :func:`random_units`): ``mirror`` = the layer's mirror
  units of ``coop-robot analyze-policy`` (index above the shuffled-label threshold), strongest
  mirror index first; ``partner-tuned`` = the units whose mean activity varies most with the
  partner's phase (largest range of the other-tuning curve, max - min over the four phases, in
  the unit's own activity scale; for the GRU the additive model's partner term); ``random`` = as
  many units drawn uniformly from the whole layer, ``draws`` times, from a seed.
* :func:`run_session` plays one benchmark session (the fast environment's own ``run``, scored as
  the benchmark scores it) with a lesion in place and keeps, besides the session summary, each
  turn's gap and overlap and the exit forecast's error against the true time to exit.
* :func:`effect_table` compares lesions with the intact network on the same sessions (same
  partner, same session seed): change in median gap, p90 gap, overlap rate and forecast MAE;
  a percentile bootstrap interval of the targeted change (turns, or in-zone visits for the
  forecast, resampled within each session, partners pooled by their mean); the 95th percentile
  of the random lesions' |change|; the verdict: the targeted |change| above it or not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

LAYERS = ("encoder", "gru")
SELECTIONS = ("mirror", "partner-tuned")
INTACT, TARGETED, RANDOM = "intact", "targeted", "random"
#: The figures compared, in report order: (key, label, unit scale for printing, unit).
METRICS = (("median_gap_s", "median gap", 1e3, "ms"), ("p90_gap_s", "p90 gap", 1e3, "ms"),
           ("overlap_rate", "overlap rate", 100.0, "%"), ("forecast_mae_s", "forecast MAE", 1e3, "ms"))
CI_LEVEL = 0.95
RANDOM_QUANTILE = 0.95


# ============================================================================ silencing
@dataclass(frozen=True)
class Lesion:
    """Units of one layer to silence (``units`` empty: the intact network)."""

    layer: str
    units: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.layer not in LAYERS:
            raise ValueError(f"unknown layer {self.layer!r}; expected one of {', '.join(LAYERS)}")
        units = tuple(int(u) for u in self.units)
        if len(set(units)) != len(units):
            raise ValueError(f"lesion units must be distinct, got {list(units)}")
        if any(u < 0 for u in units):
            raise ValueError(f"lesion units must be >= 0, got {list(units)}")
        object.__setattr__(self, "units", units)


def layer_size(net, layer: str) -> int:
    """Units of ``layer`` in ``net``: the latent size (encoder) or the GRU's hidden size."""
    if layer == "encoder":
        return int(net.config.latent_dim)
    if layer == "gru":
        return int(net.config.hidden_dim)
    raise ValueError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")


@contextmanager
def silenced(net, lesion: Lesion):
    """Zero ``lesion.units`` of ``lesion.layer`` in ``net`` while the block runs (module docstring).

    GRU lesions clamp the state after each call of the core, so the network must be stepped one
    tick per call (as :class:`~coop_robot.policy.mirror.MirrorPolicy` does); a longer sequence in
    one call raises ValueError (its inner steps could not be clamped)."""
    size = layer_size(net, lesion.layer)
    bad = [u for u in lesion.units if u >= size]
    if bad:
        raise ValueError(f"{lesion.layer} has {size} units (0..{size - 1}); cannot silence {bad}")
    if not lesion.units:
        yield net
        return
    import torch  # noqa: PLC0415

    idx = torch.tensor(lesion.units, dtype=torch.long)

    def zero(t):
        t = t.clone()
        t[..., idx] = 0.0
        return t

    def encoder_hook(_module, _inputs, output):
        return zero(output)

    def gru_hook(_module, _inputs, output):
        seq, h_n = output
        if seq.shape[1] != 1:
            raise ValueError(f"a GRU lesion clamps the state after every step; step the network one tick per "
                             f"call (got a sequence of {seq.shape[1]} ticks)")
        return zero(seq), zero(h_n)

    if lesion.layer == "encoder":
        modules = list(net.encoders)          # one module when shared; both when separate
        hook = encoder_hook
    else:
        modules = [net.core]
        hook = gru_hook
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield net
    finally:
        for h in handles:
            h.remove()


# ============================================================================ unit selection
@dataclass
class LayerUnits:
    """What selection needs of one layer: per unit the mirror index (NaN = flat), the mirror flag
    and the range of its other-tuning curve (NaN when a phase is missing)."""

    layer: str
    mirror_index: np.ndarray
    mirror: np.ndarray
    other_range: np.ndarray

    @property
    def n_units(self) -> int:
        return int(self.mirror_index.shape[0])

    @property
    def n_mirror(self) -> int:
        return int(self.mirror.sum())


def _tuning_range(tuning_other: np.ndarray) -> np.ndarray:
    t = np.asarray(tuning_other, dtype=float)
    ok = np.all(np.isfinite(t), axis=0)
    out = np.full(t.shape[1], np.nan)
    out[ok] = t[:, ok].max(axis=0) - t[:, ok].min(axis=0)
    return out


def units_from_analysis(analysis) -> dict[str, LayerUnits]:
    """Per layer, from :func:`coop_robot.analysis.policy_analysis.analyze`'s result."""
    return {name: LayerUnits(name, np.asarray(r.index, dtype=float), np.asarray(r.mirror, dtype=bool),
                             _tuning_range(r.tuning_other))
            for name, r in analysis.layers.items()}


def units_from_csv(path: Path) -> dict[str, LayerUnits]:
    """Per layer, from a ``mirror_units.csv`` of ``coop-robot analyze-policy``. ValueError when the
    file is not one."""
    import csv  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"units file {path} does not exist (write one with `coop-robot analyze-policy --out DIR`)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    need = {"layer", "unit", "mirror_index", "mirror"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{path} is not a mirror_units.csv of coop-robot analyze-policy "
                         f"(needs the columns {', '.join(sorted(need))})")
    other_cols = [c for c in rows[0] if c.startswith("other_")]
    if not other_cols:
        raise ValueError(f"{path} has no other-tuning columns (other_<phase>)")
    out = {}
    for layer in dict.fromkeys(r["layer"] for r in rows):
        mine = sorted((r for r in rows if r["layer"] == layer), key=lambda r: int(r["unit"]))
        if [int(r["unit"]) for r in mine] != list(range(len(mine))):
            raise ValueError(f"{path}: layer {layer} does not list units 0..{len(mine) - 1} once each")

        def num(text: str) -> float:
            return float(text) if text not in ("", None) else math.nan

        tuning = np.array([[num(r[c]) for r in mine] for c in other_cols])
        out[layer] = LayerUnits(layer, np.array([num(r["mirror_index"]) for r in mine]),
                                np.array([r["mirror"] in ("1", "True", "true") for r in mine]),
                                _tuning_range(tuning))
    return out


def candidates(units: LayerUnits, selection: str) -> list[int]:
    """The units a targeted lesion of ``selection`` takes, strongest first (a lesion of size n
    takes the first n): mirror units by mirror index, or every unit with a finite other-tuning
    range by that range."""
    if selection == "mirror":
        pool = np.flatnonzero(units.mirror)
        key = units.mirror_index[pool]
    elif selection == "partner-tuned":
        pool = np.flatnonzero(np.isfinite(units.other_range))
        key = units.other_range[pool]
    else:
        raise ValueError(f"unknown selection {selection!r}; expected one of {', '.join(SELECTIONS)}")
    order = np.argsort(-key, kind="stable")
    return [int(u) for u in pool[order]]


def targeted_units(units: LayerUnits, selection: str, size: int) -> tuple[int, ...]:
    """The ``size`` strongest units of :func:`candidates` (sorted); ValueError when there are fewer."""
    pool = candidates(units, selection)
    if size < 1:
        raise ValueError(f"a lesion silences >= 1 unit, got size {size}")
    if size > len(pool):
        what = "mirror units" if selection == "mirror" else "units with a partner-tuning range"
        raise ValueError(f"size {size}: the {units.layer} layer has only {len(pool)} {what} (of {units.n_units})")
    return tuple(sorted(pool[:size]))


def random_units(n_units: int, size: int, draws: int, seed: int, layer: str) -> list[tuple[int, ...]]:
    """``draws`` sets of ``size`` distinct units drawn uniformly from ``n_units`` (sorted each), from
    a generator seeded by (seed, layer, size) alone: the same draws whatever else the run holds."""
    if not 1 <= size <= n_units:
        raise ValueError(f"size {size}: the {layer} layer has {n_units} units")
    rng = np.random.default_rng([int(seed), LAYERS.index(layer), int(size), 0x1E5])
    return [tuple(sorted(int(u) for u in rng.choice(n_units, size=size, replace=False))) for _ in range(draws)]


# ============================================================================ sessions
@dataclass(frozen=True)
class LesionJob:
    """One benchmark session with one lesion: a task of :func:`coop_robot.parallel.run_tasks`."""

    checkpoint: str
    profile: str            # name for the table
    source: str             # shipped name or YAML path, for the env
    heldout: bool
    seed: int
    turns: int
    kind: str               # intact | targeted | random
    layer: str
    size: int = 0
    draw: int = -1          # random: the draw's number; -1 otherwise
    units: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        if self.kind == INTACT:
            return INTACT
        return f"{self.kind} {self.layer} x{self.size}" + (f" #{self.draw}" if self.kind == RANDOM else "")


@dataclass
class ForecastProbe:
    """Collects, per policy tick, the mirror network's exit forecast, the time its observation
    describes and whether the partner's hand was truly inside then; and the partner's true exits.
    Labelled exactly as ``coop-robot analyze-policy`` labels its ticks."""

    policy: object
    t_s: list = field(default_factory=list)
    forecast_s: list = field(default_factory=list)
    inside: list = field(default_factory=list)
    exits_s: list = field(default_factory=list)
    _inside_now: bool = False

    def __call__(self, obs, decision, info) -> None:
        self.t_s.append(float(obs.t_s))
        self.forecast_s.append(float(self.policy.last_outputs.get("exit_forecast_s", math.nan)))
        self.inside.append(self._inside_now)
        self.exits_s += [t for name, t in info["events"] if name == "partner_exit"]
        self._inside_now = bool(info["partner_in_zone_true"])

    def visit_errors(self) -> tuple[list[float], list[int]]:
        """Per in-zone visit (ticks before one true exit): the sum of |forecast - truth| (s) and
        the number of ticks; visits without a forecast tick are left out."""
        from coop_robot.analysis.mirror_units import time_to_exit_s  # noqa: PLC0415

        t = np.asarray(self.t_s, dtype=float)
        tte = time_to_exit_s(t, self.inside, self.exits_s)
        err = np.abs(np.asarray(self.forecast_s, dtype=float) - tte)
        ok = np.isfinite(err)
        visit = np.round(t[ok] + tte[ok], 6)      # the exit time each tick counts down to
        sums, counts = [], []
        for v in np.unique(visit):
            sel = visit == v
            sums.append(float(err[ok][sel].sum()))
            counts.append(int(sel.sum()))
        return sums, counts


def run_session(job: LesionJob) -> dict:
    """Play ``job`` in the fast environment (kinematic robot, fitted perception, the benchmark's
    environment) and return its row: the session summary's figures, the per-turn gaps and overlap
    flags, and the forecast error per in-zone visit."""
    from coop_robot.envs.turn_env import TurnTakingEnv  # noqa: PLC0415
    from coop_robot.policy.mirror import MirrorPolicy  # noqa: PLC0415
    from coop_robot.timing.metrics import TurnRecord  # noqa: PLC0415

    policy = MirrorPolicy(job.checkpoint)
    probe = ForecastProbe(policy)
    env = TurnTakingEnv(job.source, seed=job.seed, physics=False)
    try:
        with silenced(policy.net, Lesion(job.layer, job.units)):
            summary = env.run(policy, job.turns, on_step=probe)
    finally:
        env.close()
    per_turn = [TurnRecord(**t) for t in summary.get("per_turn", [])][: job.turns]
    sums, counts = probe.visit_errors()

    def num(key):
        v = summary.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

    row = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(job).items()}
    row.update(label=job.label, turns_scored=int(summary.get("turns", 0)),
               median_gap_s=num("median_gap_s"), p90_gap_s=num("p90_gap_s"),
               overlap_rate=num("overlap_rate") if summary.get("turns") else math.nan,
               forecast_mae_s=(sum(sums) / sum(counts)) if counts else math.nan, forecast_ticks=int(sum(counts)),
               contacts=int(summary.get("contacts") or 0), ssm_violations=int(summary.get("ssm_violations") or 0),
               sim_time_s=num("sim_time_s"), wall_time_s=num("wall_time_s"),
               gaps_s=[float(r.gap_s) for r in per_turn], overlapped=[bool(r.overlapped) for r in per_turn],
               visit_error_sums_s=sums, visit_ticks=counts)
    return row


# ============================================================================ statistics
def _metric_resamples(row: dict, key: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` bootstrap values of one session's figure ``key``: turns (gaps, overlaps) or in-zone
    visits (forecast) resampled with replacement, the figure computed as the session computes it."""
    if key == "forecast_mae_s":
        sums, counts = np.asarray(row["visit_error_sums_s"], float), np.asarray(row["visit_ticks"], float)
        if not counts.size:
            return np.full(n, np.nan)
        idx = rng.integers(0, counts.size, size=(n, counts.size))
        return sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    if key == "overlap_rate":
        x = np.asarray(row["overlapped"], dtype=float)
        stat = _mean_rows
    else:
        x = np.asarray([g for g in row["gaps_s"] if math.isfinite(g)], dtype=float)
        stat = _median_rows if key == "median_gap_s" else _p90_rows
    if not x.size:
        return np.full(n, np.nan)
    return stat(x[rng.integers(0, x.size, size=(n, x.size))])


def _mean_rows(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1)


def _median_rows(x: np.ndarray) -> np.ndarray:
    return np.median(x, axis=1)


def _p90_rows(x: np.ndarray) -> np.ndarray:
    return np.percentile(x, 90, axis=1)   # as coop_robot.timing.metrics.summarize computes p90


@dataclass
class Effect:
    """The change of one figure (lesion minus intact) for one size, over one scope (a partner, or
    ``pooled``: the mean over partners, and over checkpoints)."""

    metric: str
    size: int
    scope: str
    target_change: float
    ci_low: float
    ci_high: float
    random_changes: list[float]
    random_q95_abs: float
    beyond_random: bool | None      # None: not judged (no finite change or no random draws)
    checkpoint_changes: list[float] = field(default_factory=list)   # pooled: one per checkpoint

    @property
    def random_low(self) -> float:
        v = [x for x in self.random_changes if math.isfinite(x)]
        return float(np.percentile(v, 2.5)) if v else math.nan

    @property
    def random_high(self) -> float:
        v = [x for x in self.random_changes if math.isfinite(x)]
        return float(np.percentile(v, 97.5)) if v else math.nan

    def as_dict(self) -> dict:
        return {**asdict(self), "random_low": self.random_low, "random_high": self.random_high}


def effect_table(rows: Sequence[dict], resamples: int = 1000, seed: int = 0) -> list[Effect]:
    """Every (figure, size, scope) effect of a run's session rows (see the module docstring).

    Changes are paired: each lesioned session minus the intact session of the same checkpoint and
    partner (the same session seed). Pooled = the mean of the per-(checkpoint, partner) changes.
    The bootstrap interval resamples every session involved (targeted and intact) independently."""
    rng = np.random.default_rng([int(seed), 0xB007])
    intact = {(r["checkpoint"], r["profile"]): r for r in rows if r["kind"] == INTACT}
    cells = sorted(intact, key=lambda k: (k[0], [r["profile"] for r in rows].index(k[1])))
    partners = list(dict.fromkeys(r["profile"] for r in rows))
    sizes = sorted({r["size"] for r in rows if r["kind"] != INTACT})
    out: list[Effect] = []
    for key, *_ in METRICS:
        for size in sizes:
            target = {(r["checkpoint"], r["profile"]): r for r in rows if r["kind"] == TARGETED and r["size"] == size}
            draws = sorted({r["draw"] for r in rows if r["kind"] == RANDOM and r["size"] == size})
            rand = {(r["checkpoint"], r["profile"], r["draw"]): r for r in rows
                    if r["kind"] == RANDOM and r["size"] == size}
            boots = {}
            for cell in cells:
                if cell in target:
                    boots[cell] = (_metric_resamples(target[cell], key, rng, resamples)
                                   - _metric_resamples(intact[cell], key, rng, resamples))
            for scope in [*partners, "pooled"]:
                mine = [c for c in cells if scope == "pooled" or c[1] == scope]
                if not mine or any(c not in target for c in mine):
                    continue
                change = _mean([target[c][key] - intact[c][key] for c in mine])
                boot = np.mean([boots[c] for c in mine], axis=0)
                boot = boot[np.isfinite(boot)]
                lo, hi = (np.quantile(boot, [(1 - CI_LEVEL) / 2, (1 + CI_LEVEL) / 2]) if boot.size
                          else (math.nan, math.nan))
                rchanges = [_mean([rand[(*c, d)][key] - intact[c][key] for c in mine if (*c, d) in rand])
                            for d in draws]
                finite = [abs(x) for x in rchanges if math.isfinite(x)]
                q95 = float(np.percentile(finite, 100 * RANDOM_QUANTILE)) if finite else math.nan
                verdict = (abs(change) > q95) if (math.isfinite(change) and finite) else None
                per_ckpt = []
                if scope == "pooled":
                    for ck in dict.fromkeys(c[0] for c in mine):
                        per_ckpt.append(_mean([target[c][key] - intact[c][key] for c in mine if c[0] == ck]))
                out.append(Effect(key, size, scope, change, float(lo), float(hi), rchanges, q95, verdict, per_ckpt))
    return out


def _mean(values) -> float:
    v = [float(x) for x in values]
    return float(np.mean(v)) if v and all(math.isfinite(x) for x in v) else math.nan


def t_interval(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, 95 % t half-width and n of the finite ``values`` (one per training seed); the
    half-width is NaN for n < 2."""
    from coop_robot.analysis.intervals import t_quantile_975  # noqa: PLC0415

    v = [float(x) for x in values if math.isfinite(float(x))]
    if not v:
        return math.nan, math.nan, 0
    if len(v) < 2:
        return v[0], math.nan, 1
    return float(np.mean(v)), float(t_quantile_975(len(v) - 1) * np.std(v, ddof=1) / math.sqrt(len(v))), len(v)

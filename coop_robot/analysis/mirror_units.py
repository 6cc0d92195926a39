"""Mirror-unit statistics (NumPy only): phase tuning, the mirror index, its shuffled-label control,
and the exit-forecast error binned by the true time to exit.

**Tuning.** A unit's tuning in one condition is its mean activity in each action phase
(:data:`~coop_robot.policy.mirror_net.MIRROR_PHASES` order); ``tuning_self`` comes from ticks on
which the robot performs the phase, ``tuning_other`` from ticks on which it watches the partner
perform it.

Two ways to get the tuning: :func:`mirror_unit_analysis` takes the mean per phase of separate
self and other activities (the encoder latents: ``z_self`` depends on the robot's window only,
``z_other`` on the partner's); :func:`mirror_unit_analysis_additive` fits one activity that both
agents drive at once (the GRU state) with an additive model, ``c + a[robot phase] + b[partner
phase]``, and reads "robot performs p, partner idle" and "partner performs p, robot idle" off it
(:func:`additive_tuning`). The idle value is common to both tuning vectors there, as it is for
"mean over ticks where the other agent is idle" (both-idle ticks); the shuffle recomputes it too.

**Mirror index** of a unit: the Pearson correlation of its self and other tuning vectors over the
phases observed in both conditions (at least :data:`MIN_PHASES` of them). +1: the unit responds to
the partner's reach, act, withdraw and idle the way it responds to the robot's own; -1: the
opposite. A unit whose tuning is flat in either condition has no correlation: it is *excluded*
(index NaN) and counted.

**Shuffled-label control.** The phase labels are permuted within each condition (the activity
stays put), the tuning and index recomputed, ``n_permutations`` times. The mirror threshold is the
``quantile`` (95th percentile) of all shuffled indices of the layer; a unit is a *mirror unit*
when its index exceeds it. The share of units above the threshold in each shuffle is the share
expected by chance; the permutation p-value of the observed share is
``(1 + #{shuffles with share >= observed}) / (1 + n_permutations)``. With four phases the
correlation of two unrelated tuning vectors is spread almost uniformly over [-1, 1], so the
threshold lands near 0.9: a mirror unit has (nearly) the same phase profile for self and other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Fewer common phases than this give no meaningful correlation (two points always give +-1).
MIN_PHASES = 3
#: Time-to-exit bin edges (s) of the forecast table: 0-0.25, 0.25-0.5, 0.5-1, 1-2, 2+.
DEFAULT_TTE_EDGES_S = (0.0, 0.25, 0.5, 1.0, 2.0, math.inf)


def _check_activity(activity, labels, n_phases: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(activity, dtype=np.float64)
    lab = np.asarray(labels)
    if a.ndim != 2:
        raise ValueError(f"{what} activity must be (ticks, units), got shape {a.shape}")
    if lab.shape != (a.shape[0],):
        raise ValueError(f"{what} labels must be one phase index per tick, shape ({a.shape[0]},), got {lab.shape}")
    if lab.size and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= n_phases):
        raise ValueError(f"{what} labels must be integers in [0, {n_phases}), got values "
                         f"{np.unique(lab)[:10].tolist()}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} activity holds non-finite values")
    return a, lab.astype(np.int64)


def _one_hot(labels: np.ndarray, n_phases: int) -> np.ndarray:
    out = np.zeros((labels.shape[0], n_phases))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def _tuning_from(onehot: np.ndarray, activity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = onehot.sum(axis=0)
    sums = onehot.T @ activity
    with np.errstate(invalid="ignore", divide="ignore"):
        tuning = sums / counts[:, None]
    tuning[counts == 0] = np.nan
    return tuning, counts.astype(np.int64)


def tuning_curves(activity, labels, n_phases: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean activity per phase: ``activity`` ``(N, U)``, ``labels`` ``(N,)`` in ``[0, n_phases)``
    -> ``(tuning (n_phases, U), counts (n_phases,))``; a phase without ticks has NaN tuning."""
    a, lab = _check_activity(activity, labels, n_phases, "tuning")
    return _tuning_from(_one_hot(lab, n_phases), a)


def mirror_index(tuning_self, tuning_other, rel_tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit Pearson correlation of two tuning arrays ``(P, U)`` -> ``(index (U,), excluded (U,))``.

    Phases (rows) with NaN in either array are left out; with fewer than :data:`MIN_PHASES` left
    every index is NaN. A unit is *excluded* (index NaN) when its tuning is flat (standard
    deviation <= ``rel_tol`` times its mean magnitude, or exactly zero) in either condition.
    """
    ts = np.asarray(tuning_self, dtype=np.float64)
    to = np.asarray(tuning_other, dtype=np.float64)
    if ts.ndim != 2 or ts.shape != to.shape:
        raise ValueError(f"tuning arrays must both be (phases, units), got {ts.shape} and {to.shape}")
    common = np.all(np.isfinite(ts), axis=1) & np.all(np.isfinite(to), axis=1)
    n_units = ts.shape[1]
    if int(common.sum()) < MIN_PHASES:
        return np.full(n_units, np.nan), np.zeros(n_units, dtype=bool)
    a = ts[common] - ts[common].mean(axis=0)
    b = to[common] - to[common].mean(axis=0)
    na = np.sqrt((a * a).sum(axis=0))
    nb = np.sqrt((b * b).sum(axis=0))
    flat = ((na <= rel_tol * np.maximum(np.abs(ts[common]).mean(axis=0), 1.0))
            | (nb <= rel_tol * np.maximum(np.abs(to[common]).mean(axis=0), 1.0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=0) / (na * nb)
    r = np.clip(r, -1.0, 1.0)
    r[flat] = np.nan
    return r, flat


@dataclass
class LayerMirrorResult:
    """Mirror statistics of one layer (see the module docstring); arrays are per unit ``(U,)``
    or per phase and unit ``(P, U)``."""

    layer: str
    index: np.ndarray
    excluded: np.ndarray
    tuning_self: np.ndarray
    tuning_other: np.ndarray
    counts_self: np.ndarray
    counts_other: np.ndarray
    null_index: np.ndarray        # (n_permutations, U) shuffled-label indices
    quantile: float
    threshold: float
    mirror: np.ndarray            # bool (U,): index > threshold
    null_shares: np.ndarray       # (n_permutations,) share of units above threshold per shuffle
    tuning_method: str = "phase_mean"   # or "additive" (additive_tuning)
    identifiable: bool = True           # additive: the model was pinned down by the data

    @property
    def n_units(self) -> int:
        return int(self.index.shape[0])

    @property
    def n_included(self) -> int:
        return int(np.isfinite(self.index).sum())

    @property
    def n_mirror(self) -> int:
        return int(self.mirror.sum())

    @property
    def share(self) -> float:
        """Mirror units / units with an index (NaN when none has one)."""
        return self.n_mirror / self.n_included if self.n_included else math.nan

    @property
    def shuffled_share(self) -> float:
        """Share of units above the threshold expected under the shuffle (mean over shuffles)."""
        finite = self.null_shares[np.isfinite(self.null_shares)]
        return float(finite.mean()) if finite.size else math.nan

    @property
    def p_value(self) -> float:
        """Permutation p-value of the observed share (one-sided, more mirror units than chance)."""
        finite = self.null_shares[np.isfinite(self.null_shares)]
        if not finite.size or not math.isfinite(self.share):
            return math.nan
        return float((1 + np.sum(finite >= self.share - 1e-12)) / (1 + finite.size))

    def summary(self) -> dict:
        idx = self.index[np.isfinite(self.index)]
        return {
            "units": self.n_units,
            "excluded_flat": int(self.excluded.sum()),
            "with_index": self.n_included,
            "mean_index": float(idx.mean()) if idx.size else math.nan,
            "median_index": float(np.median(idx)) if idx.size else math.nan,
            "threshold": self.threshold,
            "threshold_quantile": self.quantile,
            "mirror_units": self.n_mirror,
            "mirror_share": self.share,
            "shuffled_share": self.shuffled_share,
            "shuffled_share_p95": (float(np.nanquantile(self.null_shares, 0.95))
                                   if np.isfinite(self.null_shares).any() else math.nan),
            "p_value": self.p_value,
            "permutations": int(self.null_shares.shape[0]),
            "ticks_self": self.counts_self.tolist(),
            "ticks_other": self.counts_other.tolist(),
            "tuning_method": self.tuning_method,
            "identifiable": self.identifiable,
        }


def _check_common(n_permutations, quantile) -> None:
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise ValueError(f"n_permutations must be an integer >= 1, got {n_permutations!r}")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")


def _shuffle_control(layer, compute, labels_self, labels_other, n_permutations, rng, quantile) -> LayerMirrorResult:
    """Observed tuning and index from ``compute(labels_self, labels_other)``, then the same with the
    labels permuted within each condition ``n_permutations`` times."""
    t_s, t_o, c_s, c_o = compute(labels_self, labels_other)
    index, excluded = mirror_index(t_s, t_o)
    null = np.empty((int(n_permutations), index.shape[0]))
    for k in range(int(n_permutations)):
        ns, no, _, _ = compute(rng.permutation(labels_self), rng.permutation(labels_other))
        null[k], _ = mirror_index(ns, no)
    pooled = null[np.isfinite(null)]
    threshold = float(np.quantile(pooled, quantile)) if pooled.size else math.nan
    with np.errstate(invalid="ignore"):
        mirror = np.isfinite(index) & (index > threshold)
        above = (null > threshold).sum(axis=1)
    n_finite = np.isfinite(null).sum(axis=1)
    null_shares = np.where(n_finite > 0, above / np.maximum(n_finite, 1), np.nan)
    return LayerMirrorResult(layer, index, excluded, t_s, t_o, c_s, c_o, null, float(quantile), threshold,
                             mirror, null_shares)


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def mirror_unit_analysis(activity_self, labels_self, activity_other, labels_other, n_phases: int,
                         n_permutations: int = 200, seed: int | np.random.Generator = 0,
                         quantile: float = 0.95, layer: str = "") -> LayerMirrorResult:
    """Tuning (mean per phase), mirror index and shuffled-label control of one layer.

    ``activity_self`` ``(N1, U)`` with phase ``labels_self`` ``(N1,)`` (the robot performing),
    ``activity_other`` ``(N2, U)`` with ``labels_other`` ``(N2,)`` (the partner performing, the
    robot watching). ``seed``: an int or a NumPy Generator for the permutations.
    """
    _check_common(n_permutations, quantile)
    a_s, l_s = _check_activity(activity_self, labels_self, n_phases, "self")
    a_o, l_o = _check_activity(activity_other, labels_other, n_phases, "other")
    if a_s.shape[1] != a_o.shape[1]:
        raise ValueError(f"self and other activity must have the same units, got {a_s.shape[1]} and {a_o.shape[1]}")

    def compute(ls, lo):
        t_s, c_s = _tuning_from(_one_hot(ls, n_phases), a_s)
        t_o, c_o = _tuning_from(_one_hot(lo, n_phases), a_o)
        return t_s, t_o, c_s, c_o

    return _shuffle_control(layer, compute, l_s, l_o, n_permutations, _rng(seed), quantile)


def additive_tuning(activity, labels_self, labels_other, n_phases: int,
                    reference: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Tuning of units driven by both agents at once, from an additive model fitted by least squares.

    Every tick ``t`` has both agents' phases; the model is
    ``activity[t] = c + a[labels_self[t]] + b[labels_other[t]]`` with ``a[reference] = b[reference] = 0``.
    Returns ``(tuning_self, tuning_other, counts_self, counts_other, identifiable)``:
    ``tuning_self[p] = c + a[p]`` is the predicted activity when the robot performs ``p`` while
    the partner is in ``reference`` (idle), ``tuning_other[p] = c + b[p]`` the reverse -- the
    "robot acts" vs "robot watches" contrast, estimable even when the two agents' phases never
    occur alone (an anticipating robot is always moving while the partner acts). Phases without
    ticks are NaN; ``identifiable`` is False when the co-occurring phases do not pin the model down
    (its rank is short), in which case the values are one least-squares solution of many.
    """
    a, l_s = _check_activity(activity, labels_self, n_phases, "self")
    _, l_o = _check_activity(activity, labels_other, n_phases, "other")
    c_s = np.bincount(l_s, minlength=n_phases)
    c_o = np.bincount(l_o, minlength=n_phases)
    t_s = np.full((n_phases, a.shape[1]), np.nan)
    t_o = np.full((n_phases, a.shape[1]), np.nan)
    if c_s[reference] == 0 or c_o[reference] == 0:
        return t_s, t_o, c_s, c_o, False
    cols_s = [p for p in range(n_phases) if p != reference and c_s[p] > 0]
    cols_o = [p for p in range(n_phases) if p != reference and c_o[p] > 0]
    x = np.zeros((a.shape[0], 1 + len(cols_s) + len(cols_o)))
    x[:, 0] = 1.0
    for i, p in enumerate(cols_s):
        x[:, 1 + i] = l_s == p
    for i, p in enumerate(cols_o):
        x[:, 1 + len(cols_s) + i] = l_o == p
    xtx = x.T @ x
    coef = np.linalg.lstsq(xtx, x.T @ a, rcond=None)[0]
    identifiable = int(np.linalg.matrix_rank(xtx)) == xtx.shape[0]
    t_s[reference] = t_o[reference] = coef[0]
    for i, p in enumerate(cols_s):
        t_s[p] = coef[0] + coef[1 + i]
    for i, p in enumerate(cols_o):
        t_o[p] = coef[0] + coef[1 + len(cols_s) + i]
    return t_s, t_o, c_s, c_o, identifiable


def mirror_unit_analysis_additive(activity, labels_self, labels_other, n_phases: int, reference: int = 0,
                                  n_permutations: int = 200, seed: int | np.random.Generator = 0,
                                  quantile: float = 0.95, layer: str = "") -> LayerMirrorResult:
    """Like :func:`mirror_unit_analysis` for one activity ``(N, U)`` labelled with both agents'
    phases, the tuning from :func:`additive_tuning`. The result's ``identifiable`` attribute says
    whether the observed model was pinned down."""
    _check_common(n_permutations, quantile)
    a, l_s = _check_activity(activity, labels_self, n_phases, "self")
    _, l_o = _check_activity(activity, labels_other, n_phases, "other")
    if not 0 <= reference < n_phases:
        raise ValueError(f"reference phase must be in [0, {n_phases}), got {reference!r}")
    first = additive_tuning(a, l_s, l_o, n_phases, reference)

    def compute(ls, lo):
        if ls is l_s and lo is l_o:
            return first[:4]
        return additive_tuning(a, ls, lo, n_phases, reference)[:4]

    result = _shuffle_control(layer, compute, l_s, l_o, n_permutations, _rng(seed), quantile)
    result.tuning_method = "additive"
    result.identifiable = bool(first[4])
    return result


# ---------------------------------------------------------------------------------------------
# Exit forecast error


@dataclass
class ForecastErrorTable:
    """Exit-forecast error binned by the true time to exit. ``bins`` rows: ``lo_s``, ``hi_s``,
    ``ticks``, ``mae_s``, ``median_abs_error_s``, ``bias_s`` (mean forecast - truth)."""

    bins: list[dict]
    ticks: int
    mae_s: float
    median_abs_error_s: float
    bias_s: float
    correlation: float

    def summary(self) -> dict:
        return {"ticks": self.ticks, "mae_s": self.mae_s, "median_abs_error_s": self.median_abs_error_s,
                "bias_s": self.bias_s, "correlation": self.correlation, "bins": self.bins}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum() / den) if den > 0 else math.nan


def time_to_exit_s(t_s, partner_inside, exit_times_s) -> np.ndarray:
    """The true time (s) from each tick until the partner's hand next leaves the zone, on ticks
    where it is truly inside (``partner_inside``) and a later exit was recorded; NaN elsewhere.
    ``t_s``: the time each tick's observation describes; ``exit_times_s``: the partner's true exits."""
    t = np.asarray(t_s, dtype=np.float64).reshape(-1)
    inside = np.asarray(partner_inside, dtype=bool).reshape(-1)
    if inside.shape != t.shape:
        raise ValueError(f"one inside flag per tick expected, got {inside.shape} for {t.shape} ticks")
    exits = np.sort(np.asarray(exit_times_s, dtype=np.float64).reshape(-1))
    j = np.searchsorted(exits, t, side="left")
    has_exit = inside & (j < len(exits))
    tte = np.full(len(t), np.nan)
    tte[has_exit] = exits[j[has_exit]] - t[has_exit]
    return tte


def forecast_error_by_time_to_exit(forecast_s, time_to_exit_s, edges_s=DEFAULT_TTE_EDGES_S) -> ForecastErrorTable:
    """Bin the exit forecast's error by the true time to exit (s).

    ``forecast_s`` and ``time_to_exit_s`` are per tick; ticks where either is NaN (the partner not
    inside, or no exit recorded yet) are left out. ``edges_s`` increasing; bins are
    ``[edges[i], edges[i + 1])``. Empty bins have NaN statistics.
    """
    f = np.asarray(forecast_s, dtype=np.float64).reshape(-1)
    t = np.asarray(time_to_exit_s, dtype=np.float64).reshape(-1)
    if f.shape != t.shape:
        raise ValueError(f"forecast and time to exit must have one value per tick, got {f.shape} and {t.shape}")
    edges = np.asarray(edges_s, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or np.isnan(edges).any():
        raise ValueError(f"bin edges must be an increasing sequence of >= 2 values (s), got {list(edges_s)}")
    ok = np.isfinite(f) & np.isfinite(t)
    f, t = f[ok], t[ok]
    err = f - t
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (t >= lo) & (t < hi)
        e = err[sel]
        bins.append({
            "lo_s": float(lo), "hi_s": float(hi), "ticks": int(sel.sum()),
            "mae_s": float(np.abs(e).mean()) if e.size else math.nan,
            "median_abs_error_s": float(np.median(np.abs(e))) if e.size else math.nan,
            "bias_s": float(e.mean()) if e.size else math.nan,
        })
    return ForecastErrorTable(
        bins=bins, ticks=int(err.size),
        mae_s=float(np.abs(err).mean()) if err.size else math.nan,
        median_abs_error_s=float(np.median(np.abs(err))) if err.size else math.nan,
        bias_s=float(err.mean()) if err.size else math.nan,
        correlation=_pearson(f, t),
    )

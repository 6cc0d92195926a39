"""Population statistics (NumPy only): linear CKA, self x other similarity matrices, PCA
trajectories through a turn, and per-unit timescales.

Every function takes per-tick activity ``(ticks, units)`` with per-tick labels (phase indices into
:data:`~coop_robot.policy.mirror_net.MIRROR_PHASES`, session indices) as
:mod:`coop_robot.analysis.policy_analysis` records them, and raises ``ValueError`` naming the
bad input (shape, non-finite values, labels out of range).

**Linear CKA** (centred kernel alignment with linear kernels, Kornblith et al. 2019): for
column-centred ``X (n, p)`` and ``Y (n, q)`` whose rows are paired,
``CKA = ||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F)``, in ``[0, 1]``. It is unchanged by an orthogonal
transform or an isotropic scaling of either representation, so it compares the *geometry* of
``z_self`` and ``z_other`` without assuming that unit ``i`` means the same in both (which holds
only for a shared encoder). The answer depends on how the rows are paired; two pairings:

* **condition-paired** (:func:`condition_cka`, the one the acceptance question is about): a row is
  a condition, "phase ``p``, ``b``-th time bin since that phase began"
  (:func:`phase_time_conditions`); ``X`` holds the mean ``z_self`` over ticks where the *robot*
  is in that condition, ``Y`` the mean ``z_other`` over ticks where the *partner* is. High CKA:
  the robot represents the partner's reach, act and withdraw, moment by moment, with the same
  geometry as its own. Phase means alone would give only four rows (three after centring), which
  any two representations fit almost perfectly; the time bins give ~30 rows. The chance level for
  this many rows is measured, not assumed: CKA with the rows of ``Y`` shuffled
  (``shuffled_mean`` / ``shuffled_p95``).
* **tick-paired** (:func:`linear_cka` on the raw ticks): row ``t`` is ``z_self[t]`` and
  ``z_other[t]`` at the same tick. In turn taking the two agents do different things at the same
  moment, so this measures how the two streams co-vary in time (their coupling through the task),
  not whether acting and watching share a code. It is reported beside the other as a contrast.

**Self x other similarity matrix** (:func:`cross_rsm`): entry ``(i, j)`` is the Pearson
correlation, across units, of the mean ``z_self`` while the robot performs phase ``i`` and the mean
``z_other`` while the partner performs phase ``j``, each centred on its own mean over phases (so the
pattern common to all phases does not make every entry ~1). A bright diagonal: the same unit
pattern marks the same phase whoever performs it. Unlike CKA this needs unit correspondence.

**PCA trajectories** (:func:`pca`, :func:`aligned_trajectories`): the recurrent state's principal
components over all ticks, and its projection aligned on an event (the robot's reach onset:
``robot_phase`` going from idle to reach), averaged over events.

**Timescales** (:func:`unit_timescales`): a unit's autocorrelation (each session's mean removed,
pooled over sessions) and the lag at which it first falls below ``1/e``, interpolated linearly
between ticks, in seconds. For an AR(1) / exponentially correlated signal ``exp(-lag / tau)`` that
lag is ``tau``. A unit that stays above ``1/e`` up to ``max_lag_s`` is *censored* (its timescale is
at least ``max_lag_s``); a unit that never varies is *flat*. The network's inputs carry the task's
own timescales (a 16-tick input window, turns of a few seconds), so compare networks on the same
inputs -- the untrained network is the control for what the inputs alone give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Default time-in-phase bin edges (s) for the condition-paired CKA (the last bin is open).
DEFAULT_PHASE_TIME_EDGES_S = (0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, math.inf)
#: A condition needs at least this many ticks in *both* streams to be a row of the condition CKA.
DEFAULT_MIN_TICKS = 5
#: 97.5 % quantiles of Student's t for 1..30 degrees of freedom (95 % two-sided intervals).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


# ---------------------------------------------------------------------------------------------
# Input checks


def _matrix(a, what: str, min_rows: int = 2) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (rows, units), got shape {x.shape}")
    if x.shape[0] < min_rows or x.shape[1] < 1:
        raise ValueError(f"{what} needs at least {min_rows} rows and 1 unit, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} holds {int(np.sum(~np.isfinite(x)))} non-finite value(s) (NaN or inf)")
    return x


def _labels(labels, n: int, what: str, n_values: int | None = None) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"{what} must hold one value per tick, shape ({n},), got {lab.shape}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {lab.dtype}")
    if lab.size and (lab.min() < 0 or (n_values is not None and lab.max() >= n_values)):
        allowed = ">= 0" if n_values is None else f"in [0, {n_values})"
        raise ValueError(f"{what} must be {allowed}, got values {np.unique(lab)[:10].tolist()}")
    return lab.astype(np.int64)


def _positive(value: float, what: str) -> float:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# CKA


def linear_cka(x, y) -> float:
    """Linear CKA of two representations with paired rows: ``x (n, p)``, ``y (n, q)`` -> ``[0, 1]``.

    Columns are centred here. NaN when either representation is constant over the rows.
    """
    a = _matrix(x, "x")
    b = _matrix(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must have paired rows, got {a.shape[0]} and {b.shape[0]} rows")
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    # Feature-space form: (p x q), (p x p), (q x q) -- cheap for many rows and few units.
    cross = float(np.sum((b.T @ a) ** 2))
    norm = math.sqrt(float(np.sum((a.T @ a) ** 2)) * float(np.sum((b.T @ b) ** 2)))
    if norm <= 1e-300:
        return math.nan
    return min(max(cross / norm, 0.0), 1.0)


def time_in_phase_s(labels, session, tick_s: float) -> np.ndarray:
    """Seconds since the current phase began, per tick (0 on its first tick); a session start
    counts as a phase start."""
    n = np.asarray(labels).shape[0]
    lab = _labels(labels, n, "phase labels")
    ses = _labels(session, n, "session labels")
    tick_s = _positive(tick_s, "tick_s")
    start = np.ones(n, dtype=bool)
    if n > 1:
        start[1:] = (lab[1:] != lab[:-1]) | (ses[1:] != ses[:-1])
    idx = np.arange(n)
    last_start = np.maximum.accumulate(np.where(start, idx, 0))
    return (idx - last_start) * tick_s


def phase_time_conditions(labels, session, n_phases: int, tick_s: float,
                          edges_s=DEFAULT_PHASE_TIME_EDGES_S) -> np.ndarray:
    """Condition index per tick: ``phase * n_bins + bin`` of the time since the phase began
    (bins ``[edges[i], edges[i + 1])``); ``n_phases * (len(edges) - 1)`` conditions."""
    edges = np.asarray(edges_s, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.isnan(edges).any() or np.any(np.diff(edges) <= 0) or edges[0] != 0:
        raise ValueError(f"time-in-phase edges must increase from 0 (s), got {list(edges_s)}")
    lab = _labels(labels, np.asarray(labels).shape[0], "phase labels", n_phases)
    t = time_in_phase_s(lab, session, tick_s)
    b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, edges.size - 2)
    return lab * (edges.size - 1) + b


def condition_means(activity, conditions, n_conditions: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean activity per condition ``(n_conditions, units)`` (NaN rows for empty ones) and counts."""
    a = _matrix(activity, "activity", min_rows=1)
    c = _labels(conditions, a.shape[0], "conditions", n_conditions)
    counts = np.bincount(c, minlength=n_conditions)
    sums = np.zeros((n_conditions, a.shape[1]))
    np.add.at(sums, c, a)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts == 0] = np.nan
    return means, counts


@dataclass
class ConditionCKA:
    """Condition-paired CKA of self vs other (module docstring) with its shuffled-row chance level."""

    cka: float
    conditions: int          # rows used (conditions seen >= min_ticks times in both streams)
    shuffled_mean: float     # mean CKA with the other stream's rows permuted
    shuffled_p95: float
    permutations: int

    def summary(self) -> dict:
        return {"cka": self.cka, "conditions": self.conditions, "shuffled_mean": self.shuffled_mean,
                "shuffled_p95": self.shuffled_p95, "permutations": self.permutations}


def condition_cka(z_self, robot_phase, z_other, partner_phase, session, n_phases: int, tick_s: float,
                  edges_s=DEFAULT_PHASE_TIME_EDGES_S, min_ticks: int = DEFAULT_MIN_TICKS,
                  n_permutations: int = 200, seed: int | np.random.Generator = 0) -> ConditionCKA:
    """Linear CKA between the condition means of ``z_self`` (by the robot's phase and time in it)
    and of ``z_other`` (by the partner's), over conditions seen at least ``min_ticks`` times in
    both; with fewer than 3 such conditions the CKA is NaN."""
    zs = _matrix(z_self, "z_self")
    zo = _matrix(z_other, "z_other")
    if zs.shape[0] != zo.shape[0]:
        raise ValueError(f"z_self and z_other must have one row per tick each, got {zs.shape[0]} and {zo.shape[0]}")
    if not (isinstance(min_ticks, (int, np.integer)) and min_ticks >= 1):
        raise ValueError(f"min_ticks must be an integer >= 1, got {min_ticks!r}")
    n_cond = n_phases * (len(edges_s) - 1)
    ms, cs = condition_means(zs, phase_time_conditions(robot_phase, session, n_phases, tick_s, edges_s), n_cond)
    mo, co = condition_means(zo, phase_time_conditions(partner_phase, session, n_phases, tick_s, edges_s), n_cond)
    keep = (cs >= min_ticks) & (co >= min_ticks)
    if int(keep.sum()) < 3:
        return ConditionCKA(math.nan, int(keep.sum()), math.nan, math.nan, 0)
    x, y = ms[keep], mo[keep]
    cka = linear_cka(x, y)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    null = np.array([linear_cka(x, y[rng.permutation(y.shape[0])]) for _ in range(int(n_permutations))])
    null = null[np.isfinite(null)]
    return ConditionCKA(cka, int(keep.sum()), float(null.mean()) if null.size else math.nan,
                        float(np.quantile(null, 0.95)) if null.size else math.nan, int(null.size))


# ---------------------------------------------------------------------------------------------
# Similarity matrix


def cross_rsm(z_self, robot_phase, z_other, partner_phase, n_phases: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Self x other similarity matrix (module docstring): ``(rsm (P, P), counts_self, counts_other)``.

    Rows: the robot's phase, columns: the partner's. A phase seen in neither condition gives NaN
    entries; so does a flat pattern.
    """
    ms, cs = condition_means(z_self, _labels(robot_phase, np.asarray(z_self).shape[0], "robot_phase", n_phases),
                             n_phases)
    mo, co = condition_means(z_other, _labels(partner_phase, np.asarray(z_other).shape[0], "partner_phase",
                                              n_phases), n_phases)
    if ms.shape[1] != mo.shape[1]:
        raise ValueError(f"z_self and z_other must have the same units for a similarity matrix, got "
                         f"{ms.shape[1]} and {mo.shape[1]}")

    def centred(m: np.ndarray) -> np.ndarray:
        seen = np.all(np.isfinite(m), axis=1)
        out = np.full_like(m, np.nan)
        if seen.any():
            out[seen] = m[seen] - m[seen].mean(axis=0)
        return out

    a, b = centred(ms), centred(mo)
    rsm = np.full((n_phases, n_phases), np.nan)
    for i in range(n_phases):
        for j in range(n_phases):
            if np.all(np.isfinite(a[i])) and np.all(np.isfinite(b[j])):
                da, db = a[i] - a[i].mean(), b[j] - b[j].mean()
                den = math.sqrt(float(da @ da) * float(db @ db))
                rsm[i, j] = float(da @ db) / den if den > 1e-300 else math.nan
    return rsm, cs, co


def rsm_diagonal_contrast(rsm) -> float:
    """Mean diagonal minus mean off-diagonal entry (finite entries): > 0 when the same phase
    matches best across self and other."""
    r = np.asarray(rsm, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1]:
        raise ValueError(f"similarity matrix must be square, got shape {r.shape}")
    diag = np.diag(r)
    off = r[~np.eye(r.shape[0], dtype=bool)]
    diag, off = diag[np.isfinite(diag)], off[np.isfinite(off)]
    return float(diag.mean() - off.mean()) if diag.size and off.size else math.nan


# ---------------------------------------------------------------------------------------------
# PCA and aligned trajectories


@dataclass
class PCAResult:
    mean: np.ndarray                 # (units,)
    components: np.ndarray           # (k, units), orthonormal rows
    explained_variance_ratio: np.ndarray   # (k,)

    def project(self, activity) -> np.ndarray:
        a = _matrix(activity, "activity", min_rows=1)
        if a.shape[1] != self.mean.shape[0]:
            raise ValueError(f"activity has {a.shape[1]} units, the PCA was fitted on {self.mean.shape[0]}")
        return (a - self.mean) @ self.components.T


def pca(activity, n_components: int = 3) -> PCAResult:
    """Principal components of ``activity (ticks, units)`` (SVD of the centred data)."""
    a = _matrix(activity, "activity")
    if not (isinstance(n_components, (int, np.integer)) and 1 <= n_components <= min(a.shape)):
        raise ValueError(f"n_components must be an integer in [1, {min(a.shape)}], got {n_components!r}")
    mean = a.mean(axis=0)
    _, s, vt = np.linalg.svd(a - mean, full_matrices=False)
    var = s ** 2
    total = float(var.sum())
    ratio = var[:n_components] / total if total > 0 else np.zeros(n_components)
    return PCAResult(mean, vt[:n_components].copy(), ratio)


def event_ticks(labels, session, from_value: int, to_value: int, then_value: int | None = None) -> np.ndarray:
    """Ticks ``t`` where ``labels`` goes from ``from_value`` at ``t - 1`` to ``to_value`` at ``t``
    within one session; with ``then_value``, only those whose run of ``to_value`` is followed, in
    the same session, by ``then_value`` (a reach that goes on to act, not one given up)."""
    n = np.asarray(labels).shape[0]
    lab = _labels(labels, n, "labels")
    ses = _labels(session, n, "session labels")
    if n < 2:
        return np.zeros(0, dtype=np.int64)
    hit = (lab[:-1] == from_value) & (lab[1:] == to_value) & (ses[:-1] == ses[1:])
    events = np.flatnonzero(hit) + 1
    if then_value is None:
        return events
    # The tick after each run of equal labels (n where a run reaches the end).
    change = np.flatnonzero((lab[1:] != lab[:-1]) | (ses[1:] != ses[:-1])) + 1
    run_end = change[np.minimum(np.searchsorted(change, events, side="right"), change.size - 1)] if change.size \
        else np.full(events.size, n)
    run_end = np.where(run_end > events, run_end, n)
    after = np.minimum(run_end, n - 1)
    ok = (run_end < n) & (lab[after] == then_value) & (ses[after] == ses[events])
    return events[ok]


@dataclass
class AlignedTrajectories:
    lags_s: np.ndarray       # (L,) time relative to the event
    trajectories: np.ndarray  # (events, L, k)
    events: int

    @property
    def mean(self) -> np.ndarray:
        """Mean trajectory ``(L, k)`` (NaN without events)."""
        if not self.events:
            return np.full(self.trajectories.shape[1:], np.nan)
        return self.trajectories.mean(axis=0)

    @property
    def mean_share(self) -> float:
        """Share of the aligned activity's variance (about its overall mean) that the mean
        trajectory carries: 1 when every turn follows the same path, ~0 when the alignment says
        nothing about where the state is."""
        if self.events < 2:
            return math.nan
        tr = self.trajectories
        total = float(np.sum((tr - tr.mean(axis=(0, 1))) ** 2))
        resid = float(np.sum((tr - tr.mean(axis=0)) ** 2))
        return 1.0 - resid / total if total > 0 else math.nan


def aligned_trajectories(projected, session, events, tick_s: float, before_s: float,
                         after_s: float) -> AlignedTrajectories:
    """Cut ``projected (ticks, k)`` around each event tick from ``-before_s`` to ``+after_s``;
    events whose window leaves their session are dropped."""
    p = _matrix(projected, "projected activity", min_rows=1)
    ses = _labels(session, p.shape[0], "session labels")
    tick_s = _positive(tick_s, "tick_s")
    pre = int(round(_positive(before_s, "before_s") / tick_s))
    post = int(round(_positive(after_s, "after_s") / tick_s))
    ev = np.asarray(events, dtype=np.int64).reshape(-1)
    cuts = []
    for t in ev:
        lo, hi = t - pre, t + post
        if lo < 0 or hi >= p.shape[0] or ses[lo] != ses[t] or ses[hi] != ses[t]:
            continue
        cuts.append(p[lo:hi + 1])
    lags = np.arange(-pre, post + 1) * tick_s
    tr = np.stack(cuts) if cuts else np.zeros((0, lags.size, p.shape[1]))
    return AlignedTrajectories(lags, tr, len(cuts))


# ---------------------------------------------------------------------------------------------
# Timescales


@dataclass
class Timescales:
    tau_s: np.ndarray        # (units,) NaN when censored or flat
    censored: np.ndarray     # (units,) bool: still above 1/e at max_lag_s
    flat: np.ndarray         # (units,) bool: no variance
    acf: np.ndarray          # (lags, units) autocorrelation, lag 0 = 1
    tick_s: float

    def summary(self) -> dict:
        tau = self.tau_s[np.isfinite(self.tau_s)]
        q = (lambda p: float(np.quantile(tau, p))) if tau.size else (lambda p: math.nan)
        return {"units": int(self.tau_s.size), "with_tau": int(tau.size), "censored": int(self.censored.sum()),
                "flat": int(self.flat.sum()), "median_s": q(0.5), "q25_s": q(0.25), "q75_s": q(0.75),
                "max_lag_s": (self.acf.shape[0] - 1) * self.tick_s}


def autocorrelation(activity, session, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit autocorrelation ``(max_lag + 1, units)`` pooled over sessions (each session's
    mean removed; lagged products summed over sessions and divided by their number of pairs), and
    the per-unit variance (0 = flat)."""
    a = _matrix(activity, "activity")
    ses = _labels(session, a.shape[0], "session labels")
    if not (isinstance(max_lag, (int, np.integer)) and max_lag >= 1):
        raise ValueError(f"max_lag must be an integer >= 1 (ticks), got {max_lag!r}")
    sums = np.zeros((max_lag + 1, a.shape[1]))
    pairs = np.zeros(max_lag + 1)
    for s in np.unique(ses):
        x = a[ses == s]
        x = x - x.mean(axis=0)
        n = x.shape[0]
        size = 1 << int(math.ceil(math.log2(2 * n)))
        f = np.fft.rfft(x, n=size, axis=0)
        lagged = np.fft.irfft(f * np.conj(f), n=size, axis=0)[:max_lag + 1]
        k = min(max_lag + 1, n)
        sums[:k] += lagged[:k]
        pairs[:k] += n - np.arange(k)
    if pairs[-1] <= 0:
        raise ValueError(f"max_lag {max_lag} ticks is longer than every session")
    cov = sums / pairs[:, None]
    var = cov[0].copy()
    flat = var <= 1e-12 * np.maximum(np.abs(a).mean(axis=0) ** 2, 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        acf = cov / np.where(flat, 1.0, var)
    acf[:, flat] = np.nan
    return acf, np.where(flat, 0.0, var)


def unit_timescales(activity, session, tick_s: float, max_lag_s: float = 5.0) -> Timescales:
    """Per-unit timescale: the first lag (s) at which the autocorrelation falls below ``1/e``."""
    tick_s = _positive(tick_s, "tick_s")
    max_lag = max(1, int(round(_positive(max_lag_s, "max_lag_s") / tick_s)))
    acf, var = autocorrelation(activity, session, max_lag)
    flat = var == 0.0
    threshold = math.exp(-1.0)
    tau = np.full(acf.shape[1], np.nan)
    censored = np.zeros(acf.shape[1], dtype=bool)
    for u in np.flatnonzero(~flat):
        below = np.flatnonzero(acf[:, u] < threshold)
        if not below.size:
            censored[u] = True
            continue
        k = int(below[0])
        a0, a1 = acf[k - 1, u], acf[k, u]
        tau[u] = (k - 1 + (a0 - threshold) / (a0 - a1)) * tick_s
    return Timescales(tau, censored, flat, acf, tick_s)


# ---------------------------------------------------------------------------------------------
# Across networks (seeds)


def mean_ci95(values) -> dict:
    """Mean, SD, range and the 95 % t confidence interval of the mean of finite ``values``
    (the interval and SD are None with fewer than two)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if not v.size:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None, "ci95": None}
    out = {"n": int(v.size), "mean": float(v.mean()), "sd": None, "min": float(v.min()), "max": float(v.max()),
           "ci95": None}
    if v.size >= 2:
        sd = float(v.std(ddof=1))
        t = _T975[v.size - 2] if v.size - 1 <= len(_T975) else 1.96
        half = t * sd / math.sqrt(v.size)
        out.update(sd=sd, ci95=[out["mean"] - half, out["mean"] + half])
    return out


def compare_groups(a: dict, b: dict, spread: float | None) -> dict:
    """Do two groups (:func:`mean_ci95` dicts) differ by more than the seed-to-seed ``spread``
    (a range, the largest measured)? ``exceeds`` is None when no spread is known."""
    if a["mean"] is None or b["mean"] is None:
        return {"difference": None, "spread": spread, "exceeds": None}
    d = b["mean"] - a["mean"]
    return {"difference": d, "spread": spread, "exceeds": None if spread is None else bool(abs(d) > spread)}

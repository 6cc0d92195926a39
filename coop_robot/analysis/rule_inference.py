"""Inferring a partner's learning rule from its recorded turns (``coop-robot infer-rule``).

A partner that adapts (``adaptation`` in its profile, :mod:`coop_robot.partner.model`) keeps a
latent timing scale ``s`` that multiplies its reaction, reach, dwell and withdraw times. After a
smooth turn ``s *= 1 - speed_up``; after a disturbed one (overlap, near miss, contact)
``s *= 1 + slow_down``; ``s`` stays within ``[min_scale, max_scale]``. The scale is not recorded;
what a session shows per turn is

* the partner's **cycle time** ``y_i`` (s): from the robot leaving the zone after turn ``i - 1``
  to the partner's hand leaving the zone on turn ``i`` -- reaction, reach, dwell and the first part
  of the withdraw, all scaled by ``s_i`` (an occasional pause, hesitation or false start is not);
* the **outcome** ``o_i`` of robot turn ``i``: disturbed when the turn's record
  (:class:`~coop_robot.timing.metrics.TurnRecord`) overlapped, was a near miss or had a contact.

:func:`trials_from_records` builds that per-trial table from a session's turn records, which
come from a bag (``coop-robot analyze``'s scoring, :func:`coop_robot.analysis.session.analyze_bag`)
or from a fast-environment log (``coop-robot eval --summary-json``'s ``per_turn``).

Two models of the rule, in the manner of learning-rule inference from behaviour (a parametric
rule fitted by maximum likelihood, and a flexible recurrent model of the trial-to-trial update):

* :func:`fit_parametric`: ``log y_i = log b_k + log s_i + e_i`` with ``s_0 = 1`` and the clipped
  multiplicative update above (``b_k`` per session); ``e`` Student-t (4 degrees of freedom, scale ``sigma``) so the
  rare unscaled pauses do not drag the fit; maximum likelihood with torch (L-BFGS, several
  starts); standard errors of the rates from the Hessian. The nested **no-learning** model
  (``s`` always 1) is fitted too and compared by likelihood ratio and AIC.
* :func:`fit_recurrent`: a small GRU reading the trial history (outcome, log cycle time) and
  predicting the next trial's change of log cycle time.

Both are fitted on most of each session's trials and scored on the rest (``holdout_fraction``,
drawn at random over the session): the R^2 of the predicted next-trial cycle time (s), each
prediction made from the history before that trial (outcomes; for the GRU also earlier cycle
times, which it may read but was never trained to predict when they are held out).

:func:`scripted_session` drives the partner model with a scripted robot whose zone entry, each
turn, is drawn to be smooth, a near miss or an overlap, and scores it with the package's
:class:`~coop_robot.timing.tracker.TurnTracker`: the recovery experiment's sessions
(``bench/rule_inference.py``). The fast environment's robot, governed by the controller's zone
guard and separation monitoring, all but never disturbs a partner, so its sessions show the
speed-up rate but hardly ever the slowing one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coop_robot.strict_json import json_safe

#: Degrees of freedom of the Student-t observation noise on log cycle time.
NOISE_DOF = 4.0
#: Largest speed-up and slow-down rates the fit considers (the profile's own limits).
MAX_SPEED_UP = 0.5
MAX_SLOW_DOWN = 1.0
#: Fewest trials (cycle times) a session must give to be used.
MIN_TRIALS = 8
#: |log scale| of the bounds when they are not fitted (scale within [0.007, 150]: no clipping).
UNBOUNDED_LOG = 5.0
#: chi^2 (2 degrees of freedom) 95 % point: the likelihood-ratio test of "no learning".
CHI2_2DOF_95 = 5.991


class RuleInferenceError(ValueError):
    """Input that cannot be used for rule inference; the message says why."""


# ----------------------------------------------------------------------------------- trial table
def disturbed(record: dict) -> bool:
    """Whether a turn record (``TurnRecord.as_dict()``) disturbed the partner: the partner model's
    own test, in the tracker's terms (overlap, negative gap, unfinished-turn entry, near miss, contact)."""
    return bool(record.get("overlap_s", 0.0) > 0.0 or record.get("gap_s", 0.0) < 0.0
                or record.get("unfinished_turn_entry", False) or record.get("near_miss", False)
                or record.get("contact", False))


@dataclass
class TrialTable:
    """One session's trials: ``outcome[i]`` (robot turn ``i`` disturbed the partner) for every
    turn, ``cycle_s[i]`` (s) the partner's cycle time of turn ``i`` (NaN for turn 0, which
    starts from the initial delay, and for a turn whose times are missing)."""

    session: str
    outcome: np.ndarray
    cycle_s: np.ndarray

    @property
    def n_trials(self) -> int:
        return int(np.isfinite(self.cycle_s).sum())

    def as_dict(self) -> dict:
        return {"session": self.session, "outcome": [bool(o) for o in self.outcome],
                "cycle_s": [None if not math.isfinite(v) else float(v) for v in self.cycle_s]}


def trials_from_records(records: Sequence[dict], session: str = "") -> TrialTable:
    """The per-trial table of one session from its turn records (dicts of ``TurnRecord`` fields)."""
    n = len(records)
    if n < MIN_TRIALS + 1:
        raise RuleInferenceError(f"{session or 'session'}: {n} turns; rule inference needs at least "
                                 f"{MIN_TRIALS + 1}")
    for key in ("partner_exit_s", "robot_exit_s", "gap_s", "overlap_s"):
        if any(key not in r for r in records):
            raise RuleInferenceError(f"{session or 'session'}: turn records lack {key!r} (not a turn log?)")
    outcome = np.array([disturbed(r) for r in records], dtype=bool)
    cycle = np.full(n, np.nan)
    for i in range(1, n):
        try:
            y = float(records[i]["partner_exit_s"]) - float(records[i - 1]["robot_exit_s"])
        except (TypeError, ValueError):
            continue
        if math.isfinite(y) and y > 0.0:
            cycle[i] = y
    table = TrialTable(session, outcome, cycle)
    if table.n_trials < MIN_TRIALS:
        raise RuleInferenceError(f"{session or 'session'}: only {table.n_trials} usable cycle times "
                                 f"(need {MIN_TRIALS})")
    return table


def load_trials(path: str | Path, progress: Callable[[str], None] | None = None) -> TrialTable:
    """The trial table of one input: a fast-environment log (JSON with ``per_turn``) or a bag.

    Raises :class:`RuleInferenceError` naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise RuleInferenceError(f"{path}: no such file or directory")
    if path.is_file() and path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RuleInferenceError(f"{path}: not a readable JSON turn log: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("per_turn"), list) or not all(
                isinstance(r, dict) for r in data["per_turn"]):
            raise RuleInferenceError(f"{path}: expected a session summary with a 'per_turn' list "
                                     f"(coop-robot eval --summary-json)")
        return trials_from_records(data["per_turn"], str(path))
    from coop_robot.analysis.session import analyze_bag

    result = analyze_bag(path)
    if result.usage_error or result.error is not None:
        raise RuleInferenceError(f"{path}: cannot use this bag: {result.error or 'not a bag'}")
    return trials_from_records([r.as_dict() for r in result.records], str(path))


# ----------------------------------------------------------------------------------- parametric model
@dataclass
class ParametricFit:
    """Maximum-likelihood fit of the clipped multiplicative rule (see the module docstring)."""

    speed_up: float              # NaN: not identifiable (no smooth turn in the fitted trials)
    slow_down: float             # NaN: not identifiable (no disturbed turn)
    speed_up_se: float
    slow_down_se: float
    min_scale: float | None      # None: the fitted scale path never reached the bound
    max_scale: float | None
    sigma: float                 # Student-t scale of log cycle time
    base_s: list[float]          # per session
    log_likelihood: float
    null_log_likelihood: float
    n_train: int
    lr_statistic: float = 0.0
    aic_delta: float = 0.0       # AIC(learning) - AIC(no learning); < 0 favours learning
    learning: bool = False

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _t_nll(resid, log_sigma):
    """Negative log-likelihood (summed) of Student-t residuals with scale exp(log_sigma)."""
    import torch

    nu = NOISE_DOF
    z = resid / torch.exp(log_sigma)
    const = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    return -(const - log_sigma - (nu + 1) / 2 * torch.log1p(z * z / nu)).sum()


class _Rule:
    """Scale paths of every session under rates (u, d) and log bounds (lo, hi), as torch tensors."""

    def __init__(self, tables: Sequence[TrialTable], train_masks: Sequence[np.ndarray]) -> None:
        import torch

        self.tables = tables
        self.outcome = [torch.tensor(t.outcome, dtype=torch.float64) for t in tables]
        self.logy = [torch.tensor(np.log(np.where(np.isfinite(t.cycle_s), t.cycle_s, 1.0)), dtype=torch.float64)
                     for t in tables]
        self.train = [torch.tensor(m, dtype=torch.bool) for m in train_masks]

    def log_scales(self, u, d, lo, hi) -> list:
        import torch

        up, down = torch.log1p(-u), torch.log1p(d)
        out = []
        for o in self.outcome:
            path = [torch.zeros((), dtype=torch.float64)]
            for i in range(len(o) - 1):
                step = path[-1] + o[i] * down + (1.0 - o[i]) * up
                path.append(torch.minimum(torch.maximum(step, lo), hi))
            out.append(torch.stack(path))
        return out

    @staticmethod
    def log_cycle(log_b, ls, offset):
        """Predicted log cycle time: ``log(offset + b * s)``."""
        import torch

        return torch.log(offset + torch.exp(log_b + ls))

    def nll(self, u, d, lo, hi, log_sigma, log_b, offset, masks=None) -> object:
        total = 0.0
        masks = masks if masks is not None else self.train
        for k, ls in enumerate(self.log_scales(u, d, lo, hi)):
            m = masks[k]
            total = total + _t_nll((self.logy[k] - self.log_cycle(log_b[k], ls, offset))[m], log_sigma)
        return total


def _train_masks(tables: Sequence[TrialTable], holdout_fraction: float, seed: int = 0) -> tuple[list, list]:
    """Per session: trials used for fitting and trials held out (``holdout_fraction`` of them,
    drawn at random over the whole session, so they span the partner's range of pace)."""
    rng = np.random.default_rng([seed, 0x401D])
    train, test = [], []
    for t in tables:
        idx = np.flatnonzero(np.isfinite(t.cycle_s))
        held = rng.choice(idx, size=int(round(holdout_fraction * len(idx))), replace=False)
        m = np.zeros(len(t.cycle_s), dtype=bool)
        m[held] = True
        test.append(m)
        train.append(np.isfinite(t.cycle_s) & ~m)
    return train, test


def fit_parametric(tables: Sequence[TrialTable], train_masks: Sequence[np.ndarray] | None = None,
                   starts: Sequence[tuple[float, float]] = ((0.02, 0.02), (0.1, 0.1), (0.05, 0.25), (0.2, 0.05)),
                   ) -> ParametricFit:
    """Fit the rule and the no-learning model by maximum likelihood on ``train_masks`` trials."""
    import torch

    if train_masks is None:
        train_masks = [np.isfinite(t.cycle_s) for t in tables]
    rule = _Rule(tables, train_masks)
    n_train = int(sum(m.sum() for m in train_masks))
    init_b = [float(np.median(np.log(t.cycle_s[m])[:3])) for t, m in zip(tables, train_masks)]

    def logit(p):
        return math.log(p / (1.0 - p))

    def inv_softplus(x):
        return math.log(math.expm1(x))

    def unpack(th):
        u = MAX_SPEED_UP * torch.sigmoid(th[0])
        d = MAX_SLOW_DOWN * torch.sigmoid(th[1])
        lo, hi = -torch.nn.functional.softplus(th[2]), torch.nn.functional.softplus(th[3])
        # th[5] is unused: an additive unscaled part c of the cycle traded off against the rates
        # (doubling both on 40-turn sessions), so the model keeps c = 0.
        return u, d, lo, hi, th[4], th[6:], torch.zeros((), dtype=torch.float64)

    # Bounds start where the data put them (the extreme cycle times relative to each session's
    # first trials): a bound that does not bind has no gradient, so it could not find its way in.
    rel = [np.log(t.cycle_s[m]) - float(np.median(np.log(t.cycle_s[m])[:3])) for t, m in zip(tables, train_masks)]
    bound_init = (min(3.0, max(0.05, -min(float(np.quantile(r, 0.05)) for r in rel))),
                  min(3.0, max(0.05, max(float(np.quantile(r, 0.95)) for r in rel))))

    def fit_from(fit_bounds: bool):
        best = None
        for u0, d0 in starts:
            lo0, hi0 = bound_init if fit_bounds else (UNBOUNDED_LOG, UNBOUNDED_LOG)
            th = torch.tensor([logit(u0 / MAX_SPEED_UP), logit(d0 / MAX_SLOW_DOWN), inv_softplus(lo0),
                               inv_softplus(hi0), math.log(0.15), inv_softplus(0.05), *init_b],
                              dtype=torch.float64)
            free = torch.ones_like(th, dtype=torch.bool)
            free[2:4] = fit_bounds
            fixed = th.clone()
            var = th.clone().requires_grad_(True)
            opt = torch.optim.LBFGS([var], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

            def full(var=var, free=free, fixed=fixed):
                return torch.where(free, var, fixed)

            def closure(opt=opt, full=full):
                opt.zero_grad()
                loss = rule.nll(*unpack(full()))
                loss.backward()
                return loss

            for _ in range(3):
                opt.step(closure)
            with torch.no_grad():
                val = float(rule.nll(*unpack(full())))
            if math.isfinite(val) and (best is None or val < best[0]):
                best = (val, full().detach().clone())
        return best

    best = fit_from(False)
    if best is None:
        raise RuleInferenceError("the learning-rule fit did not converge (non-finite likelihood)")
    # Bounds on the scale are kept only when they earn their parameters (likelihood-ratio test,
    # 1 dof each at 95 %): a bound fitted to noise would clip the held-out predictions.
    bounded = fit_from(True)
    if bounded is not None:
        b_u, b_d, b_lo, b_hi, *_ = unpack(bounded[1])
        with torch.no_grad():
            b_paths = rule.log_scales(b_u, b_d, b_lo, b_hi)
        n_bind = (int(any(bool((p <= b_lo + 1e-9).any()) for p in b_paths))
                  + int(any(bool((p >= b_hi - 1e-9).any()) for p in b_paths)))
        if n_bind and 2.0 * (best[0] - bounded[0]) > 3.841 * n_bind:
            best = bounded
    nll, th = best
    u, d, lo, hi, log_sigma, log_b, offset = unpack(th)

    # The no-learning model: only the per-session base and the noise scale.
    th0 = torch.tensor([math.log(0.15), *init_b], dtype=torch.float64, requires_grad=True)
    zero = torch.zeros((), dtype=torch.float64)
    opt0 = torch.optim.LBFGS([th0], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure0():
        opt0.zero_grad()
        loss = rule.nll(zero, zero, zero, zero, th0[0], th0[1:], zero)
        loss.backward()
        return loss

    for _ in range(3):
        opt0.step(closure0)
    with torch.no_grad():
        nll0 = float(rule.nll(zero, zero, zero, zero, th0[0], th0[1:], zero))

    # Standard errors of the rates: Hessian of the NLL in (u, d, log_sigma, log_b), bounds held.
    lo_v, hi_v, c_v = lo.detach(), hi.detach(), offset.detach()
    point = torch.cat([torch.stack([u.detach(), d.detach(), log_sigma.detach()]), log_b.detach()])

    def nll_natural(v):
        return rule.nll(v[0], v[1], lo_v, hi_v, v[2], v[3:], c_v)

    hess = torch.autograd.functional.hessian(nll_natural, point).numpy()
    # A rate is identifiable only when its outcome occurred before some fitted trial.
    seen = [any(bool(((t.outcome[:-1] == kind) & m[1:]).any()) for t, m in zip(tables, train_masks))
            for kind in (False, True)]
    keep = [i for i in range(len(point)) if i > 1 or seen[i]]
    se = [math.inf, math.inf]
    try:
        cov = np.linalg.inv(hess[np.ix_(keep, keep)])
        for j, i in enumerate(keep):
            if i < 2:
                se[i] = math.sqrt(max(cov[j, j], 0.0))
    except np.linalg.LinAlgError:
        pass
    se_u, se_d = se

    with torch.no_grad():
        paths = rule.log_scales(u, d, lo, hi)
    reached_lo = any(bool((p <= lo + 1e-9).any()) for p in paths)
    reached_hi = any(bool((p >= hi - 1e-9).any()) for p in paths)
    lr = max(0.0, 2.0 * (nll0 - nll))
    k_extra = 2 + int(reached_lo) + int(reached_hi)
    fit = ParametricFit(speed_up=float(u) if seen[0] else math.nan, slow_down=float(d) if seen[1] else math.nan,
                        speed_up_se=se_u, slow_down_se=se_d,
                        min_scale=math.exp(float(lo)) if reached_lo else None,
                        max_scale=math.exp(float(hi)) if reached_hi else None,
                        sigma=math.exp(float(log_sigma)), base_s=[math.exp(float(b)) for b in log_b],
                        log_likelihood=-nll, null_log_likelihood=-nll0, n_train=n_train, lr_statistic=lr,
                        aic_delta=2.0 * k_extra - lr)
    fit.learning = bool(lr > CHI2_2DOF_95 and fit.aic_delta < 0.0)
    fit._params = (u.detach(), d.detach(), lo_v, hi_v, log_b.detach(), c_v)  # for prediction
    fit._null = (th0[1:].detach(),)
    return fit


def predict_parametric(fit: ParametricFit, tables: Sequence[TrialTable]) -> list[np.ndarray]:
    """Predicted cycle time (s) of every trial of every session (the median of the fitted model)."""
    import torch

    rule = _Rule(tables, [np.isfinite(t.cycle_s) for t in tables])
    u, d, lo, hi, log_b, offset = fit._params
    if not fit.learning:   # the preferred model is no learning: a constant per session
        return [np.full(len(t.cycle_s), math.exp(float(b))) for t, b in zip(tables, fit._null[0])]
    with torch.no_grad():
        paths = rule.log_scales(u, d, lo, hi)
        return [np.exp(rule.log_cycle(log_b[k], p, offset).numpy()) for k, p in enumerate(paths)]


# ----------------------------------------------------------------------------------- recurrent model
@dataclass
class RecurrentFit:
    """The GRU update model: its training loss curve and its predictions."""

    hidden: int
    epochs: int
    train_loss: list[float] = field(default_factory=list)
    predictions: list[np.ndarray] = field(default_factory=list)


def _gru_inputs(t: TrialTable, train: np.ndarray):
    """Per trial: [outcome, centred log cycle time (0 where missing), cycle-time-known flag]; the
    centring uses the session's training trials only."""
    logy = np.log(np.where(np.isfinite(t.cycle_s), t.cycle_s, 1.0))
    centre = float(np.mean(logy[train]))
    known = np.isfinite(t.cycle_s)
    z = np.where(known, logy - centre, 0.0)
    return np.stack([t.outcome.astype(float), z, known.astype(float)], axis=1), logy, centre


def fit_recurrent(tables: Sequence[TrialTable], train_masks: Sequence[np.ndarray], *, hidden: int = 8,
                  epochs: int = 300, seed: int = 0, progress: Callable[[str], None] | None = None) -> RecurrentFit:
    """Train a GRU on the training trials: input trial ``i``'s (outcome, log cycle time), output the
    change of log cycle time to trial ``i + 1``; return it with every trial's predicted cycle time (s)."""
    import torch

    from coop_robot.policy.threads import configure_torch_threads

    configure_torch_threads(1)
    torch.manual_seed(seed)
    gru = torch.nn.GRU(3, hidden, batch_first=True, dtype=torch.float64)
    head = torch.nn.Linear(hidden, 1, dtype=torch.float64)
    params = list(gru.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=0.01, weight_decay=1e-4)
    seqs = []
    for t, m in zip(tables, train_masks):
        x, logy, _ = _gru_inputs(t, m)
        known = np.isfinite(t.cycle_s)
        # target at step i: log y[i+1] - log y[i], trained where both are known and i+1 is a training trial
        target = np.zeros(len(logy))
        tmask = np.zeros(len(logy), dtype=bool)
        target[:-1] = logy[1:] - logy[:-1]
        tmask[:-1] = known[:-1] & m[1:]
        seqs.append((torch.tensor(x)[None], torch.tensor(target), torch.tensor(tmask)))
    fit = RecurrentFit(hidden=hidden, epochs=epochs)
    for epoch in range(epochs):
        opt.zero_grad()
        loss, count = 0.0, 0
        for x, target, tmask in seqs:
            out, _ = gru(x)
            pred = head(out)[0, :, 0]
            loss = loss + torch.nn.functional.huber_loss(pred[tmask], target[tmask], delta=0.2, reduction="sum")
            count += int(tmask.sum())
        loss = loss / max(count, 1)
        loss.backward()
        opt.step()
        fit.train_loss.append(float(loss.detach()))
        if progress is not None and (epoch + 1) % max(1, epochs // 5) == 0:
            progress(f"recurrent model: epoch {epoch + 1}/{epochs}, training loss {float(loss.detach()):.4f}")
    with torch.no_grad():
        for t, (x, _, _) in zip(tables, seqs):
            out, _ = gru(x)
            delta = head(out)[0, :, 0].numpy()
            pred = np.full(len(t.cycle_s), np.nan)
            pred[1:] = t.cycle_s[:-1] * np.exp(delta[:-1])   # NaN where the previous cycle is unknown
            fit.predictions.append(pred)
    return fit


# ----------------------------------------------------------------------------------- scoring
def r_squared(actual: np.ndarray, predicted: np.ndarray) -> float:
    """1 - SS_res / SS_tot over the finite pairs (NaN with fewer than 3)."""
    ok = np.isfinite(actual) & np.isfinite(predicted)
    if ok.sum() < 3:
        return math.nan
    a, p = actual[ok], predicted[ok]
    ss_tot = float(((a - a.mean()) ** 2).sum())
    return 1.0 - float(((a - p) ** 2).sum()) / ss_tot if ss_tot > 0 else math.nan


def held_out_r2(tables: Sequence[TrialTable], predictions: Sequence[np.ndarray],
                test_masks: Sequence[np.ndarray]) -> float:
    """R^2 of the predicted cycle time over the held-out trials of all sessions, pooled after
    removing each session's held-out mean (so differences between sessions do not count)."""
    actual, predicted = [], []
    for t, p, m in zip(tables, predictions, test_masks):
        ok = m & np.isfinite(p)
        if ok.sum() < 2:
            continue
        mean = float(t.cycle_s[ok].mean())
        actual.append(t.cycle_s[ok] - mean)
        predicted.append(p[ok] - mean)
    if not actual:
        return math.nan
    return r_squared(np.concatenate(actual), np.concatenate(predicted))


@dataclass
class RuleInference:
    """Everything ``coop-robot infer-rule`` reports."""

    tables: list[TrialTable]
    parametric: ParametricFit
    recurrent: RecurrentFit
    parametric_pred: list[np.ndarray]
    test_masks: list[np.ndarray]
    r2_parametric: float
    r2_recurrent: float
    holdout_fraction: float

    @property
    def better_model(self) -> str:
        rp = -math.inf if math.isnan(self.r2_parametric) else self.r2_parametric
        rr = -math.inf if math.isnan(self.r2_recurrent) else self.r2_recurrent
        return "parametric" if rp >= rr else "recurrent"

    def as_dict(self) -> dict:
        """JSON-ready (NaN and infinity, e.g. a rate that cannot be identified, become None)."""
        return json_safe(self._as_dict())

    def _as_dict(self) -> dict:
        p = self.parametric
        return {
            "sessions": [t.session for t in self.tables],
            "trials": [t.n_trials for t in self.tables],
            "holdout_fraction": self.holdout_fraction,
            "parametric": {k: v for k, v in p.as_dict().items() if not k.startswith("_")},
            "verdict": "learning" if p.learning else "no learning",
            "held_out_r2": {"parametric": self.r2_parametric, "recurrent": self.r2_recurrent},
            "better_model": self.better_model,
            "recurrent": {"hidden": self.recurrent.hidden, "epochs": self.recurrent.epochs,
                          "final_train_loss": self.recurrent.train_loss[-1] if self.recurrent.train_loss else None},
        }


def rate_text(rate: float, se: float) -> str:
    """``0.040 +- 0.002``, or why the rate is missing."""
    if math.isnan(rate):
        return "not identifiable (its outcome never occurred)"
    return f"{rate:.3f} +- {se:.3f}"


def infer_rule(tables: Sequence[TrialTable], *, holdout_fraction: float = 0.3, epochs: int = 300, seed: int = 0,
               progress: Callable[[str], None] | None = None) -> RuleInference:
    """Fit both models on the first ``1 - holdout_fraction`` of each session's trials and score
    their next-trial predictions on the rest."""
    if not 0.0 < holdout_fraction < 1.0:
        raise RuleInferenceError(f"holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
    tables = list(tables)
    if not tables:
        raise RuleInferenceError("no sessions to fit")
    train, test = _train_masks(tables, holdout_fraction, seed)
    say = progress or (lambda _msg: None)
    say(f"parametric model: fitting on {int(sum(m.sum() for m in train))} trials of {len(tables)} session(s)")
    par = fit_parametric(tables, train)
    say(f"parametric model: speed-up {rate_text(par.speed_up, par.speed_up_se)}, slow-down "
        f"{rate_text(par.slow_down, par.slow_down_se)}, LR {par.lr_statistic:.1f} -> "
        f"{'learning' if par.learning else 'no learning'}")
    par_pred = predict_parametric(par, tables)
    rec = fit_recurrent(tables, train, epochs=epochs, seed=seed, progress=say)
    return RuleInference(tables, par, rec, par_pred, test, held_out_r2(tables, par_pred, test),
                         held_out_r2(tables, rec.predictions, test), holdout_fraction)


def plot_inference(result: RuleInference, path: Path, title: str = "") -> None:
    """Figure: each session's cycle times with both models' predictions (held-out trials ringed),
    outcomes marked; and the GRU's training loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(result.tables), 4)
    fig, axes = plt.subplots(n + 1, 1, figsize=(9, 2.4 * (n + 1)), squeeze=False)
    for k in range(n):
        ax, t = axes[k][0], result.tables[k]
        idx = np.arange(len(t.cycle_s))
        test = result.test_masks[k]
        ax.plot(idx, t.cycle_s, "k.", ms=4, label="cycle time (measured)")
        ax.plot(idx, result.parametric_pred[k], "-", color="tab:blue", label="parametric rule")
        ax.plot(idx, result.recurrent.predictions[k], "-", color="tab:orange", lw=1, label="GRU")
        dist = idx[t.outcome]
        ax.plot(dist, np.full(len(dist), np.nanmin(t.cycle_s) * 0.9), "|", color="tab:red", label="disturbed turn")
        ax.set_ylabel("cycle (s)")
        ax.set_title(Path(t.session).name, fontsize=8)
        ax.plot(idx[test], t.cycle_s[test], "o", mfc="none", color="k", ms=5, label="held out")
        if k == 0:
            ax.legend(fontsize=7, ncol=5, loc="upper right")
    ax = axes[n][0]
    ax.plot(result.recurrent.train_loss, color="tab:orange")
    ax.set_xlabel("GRU epoch")
    ax.set_ylabel("training loss")
    p = result.parametric
    fig.suptitle(title or (f"speed-up {p.speed_up:.3f}, slow-down {p.slow_down:.3f} "
                           f"({'learning' if p.learning else 'no learning'}); held-out R2 "
                           f"parametric {result.r2_parametric:.2f}, GRU {result.r2_recurrent:.2f}"), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------- scripted sessions
#: Robot entry relative to the partner's planned zone exit (s), per outcome drawn.
SCRIPTED_ENTRY_S = {"overlap": (-0.35, -0.05), "near_miss": (0.03, 0.25), "smooth": (0.45, 1.2)}
SCRIPTED_STAY_S = 0.8


#: The scripted robot's drive: a target for the partner's log pace, swept as a sine
#: (amplitude, period in turns); the robot disturbs more when the partner is faster than the target.
DRIVE_AMPLITUDE, DRIVE_PERIOD_TURNS, DRIVE_GAIN = 0.5, 60, 3.0


def scripted_session(partner, turns: int, seed: int, *, disturb_probability: float = 0.3, drive: bool = True,
                     drive_amplitude: float = DRIVE_AMPLITUDE, overlap_share: float = 0.5,
                     rate_hz: float = 240.0) -> dict:
    """Run the partner model against a scripted robot for ``turns`` robot turns; return a session
    summary like the fast environment's (``per_turn`` records from the package's tracker) plus
    ``true_scale`` (the partner's timing scale during each turn).

    Each turn the robot enters the zone, relative to the partner's planned exit, as drawn from
    :data:`SCRIPTED_ENTRY_S`: disturbing with probability ``p`` (an overlap with share
    ``overlap_share``, else a near miss), smoothly otherwise; it stays :data:`SCRIPTED_STAY_S`.
    Without ``drive``, ``p = disturb_probability``. With ``drive`` (an experimental design that
    sweeps an adapting partner's pace up and down, knowing nothing of its rule), ``p`` is
    ``disturb_probability`` for the first 4 turns, then ``0.5 + DRIVE_GAIN * (target - pace)``
    clipped to [0.05, 0.95], where pace is the log of the partner's latest cycle time relative to
    its first three and target sweeps ``drive_amplitude * sin(2 pi turn / DRIVE_PERIOD_TURNS)``."""
    from coop_robot.geometry import world_geometry
    from coop_robot.partner.model import PartnerModel
    from coop_robot.partner.profile import PartnerProfile, load_profile
    from coop_robot.timing.tracker import OccupancyEdges, PartnerTurnEdges, TurnTracker

    if not 0.0 <= disturb_probability <= 1.0:
        raise ValueError(f"disturb_probability must be in [0, 1], got {disturb_probability!r}")
    profile = partner if isinstance(partner, PartnerProfile) else load_profile(partner)
    geo = world_geometry()
    model = PartnerModel(profile, np.random.default_rng(seed), np.asarray(geo.partner_rest_m, dtype=float),
                         np.asarray(geo.task_objects_m, dtype=float), geo.zone)
    robot_rng = np.random.default_rng([seed, 0xB07])
    tracker = TurnTracker(scoring="ground_truth", reorder_window_s=0.05)
    hand_edges, robot_edges, turn_edges = OccupancyEdges("partner"), OccupancyEdges("robot"), PartnerTurnEdges()
    dt = 1.0 / rate_hz
    t, robot_in, enter_at, leave_at = 0.0, False, None, None
    scales, prev_phase = [], None
    cycles: list[float] = []
    last_robot_exit = None
    limit_s = 60.0 * turns + 30.0
    while len(tracker.records) < turns and t < limit_s:
        t += dt
        if enter_at is not None and t >= enter_at:
            robot_in, enter_at, leave_at = True, None, t + SCRIPTED_STAY_S
        elif leave_at is not None and t >= leave_at:
            robot_in, leave_at, last_robot_exit = False, None, t
        model.step(t, robot_in)
        phase = model.phase
        if phase == "withdrawing" and prev_phase != "withdrawing" and enter_at is None and leave_at is None:
            exit_s = model.planned_exit_s if model.planned_exit_s is not None else t
            if last_robot_exit is not None:
                cycles.append(exit_s - last_robot_exit)
            p = disturb_probability
            if drive and len(cycles) >= 4:
                pace = math.log(cycles[-1] / float(np.median(cycles[:3])))
                target = drive_amplitude * math.sin(2.0 * math.pi * len(scales) / DRIVE_PERIOD_TURNS)
                p = min(0.95, max(0.05, 0.5 + DRIVE_GAIN * (target - pace)))
            kind = "smooth"
            if robot_rng.random() < p:
                kind = "overlap" if robot_rng.random() < overlap_share else "near_miss"
            lo, hi = SCRIPTED_ENTRY_S[kind]
            enter_at = max(t, exit_s + float(robot_rng.uniform(lo, hi)))
            scales.append(model.timing_scale)
        prev_phase = phase
        for name, ts in (hand_edges.sample(model.hand_in_zone, t) + robot_edges.sample(robot_in, t)
                         + turn_edges.update(phase, t)):
            tracker.push(name, ts)
        tracker.release(t)
    tracker.release(t, flush=True)
    summary = tracker.summary(limit=turns, policy="scripted", partner=profile.name, seed=seed)
    summary.update(sim_time_s=t, true_scale=scales[:len(summary["per_turn"])], source="scripted_session",
                   disturb_probability=disturb_probability)
    return summary

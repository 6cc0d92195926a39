"""The synchronous joint-action task (issue 14): its settings, its trials and the one definition of each metric.

After a cue the robot and the person each reach their own target outside the shared zone; a trial
succeeds when both arrive within a time window of each other (docs/science_sync.md). The same code
scores the fast environment and, later, the graph and recorded sessions.

Definitions (times in seconds on one clock, positions in ``world``, metres):

* **cue**: the moment a trial starts; both agents are at rest (the robot at home, the hand at its
  rest point).
* **start** of an agent: the first moment after the cue its end effector (robot) or glove centre
  (partner) is farther than ``arrival_radius_m`` from where it was at the cue.
* **arrival**: the first moment after the cue it is within ``arrival_radius_m`` of its own target.
* **arrival offset** = robot arrival - partner arrival (> 0: the robot came later).
* **success**: both arrived and ``|offset| <= window_s``.
* **who waited**: the one who arrived first waited for the other -- ``partner`` when the offset is
  > 0, ``robot`` when < 0, ``none`` when 0 or neither arrived; when only one arrived, that one
  (it waited in vain).
* **safety** over a trial's window (its cue to the next cue, or the session's end): contact (any
  robot-person contact), the minimum ground-truth separation and separation - S_p, and SSM
  violations: episodes of consecutive samples that break :func:`coop_robot.control.ssm.violates`,
  the rule turn-taking counts with.

A trial is over when both agents have arrived and are back at rest, or, ``trial_timeout_s`` after
the cue, as soon as both are at rest (a failure if either had not arrived). The next cue comes
``intertrial_s`` after that, the first ``first_cue_s`` after the session starts.

Per session: ``trials``, ``successes``, ``success_rate``, the median and quartiles of the offsets
of the trials in which both arrived (``median_offset_s``, ``offset_p25_s``, ``offset_p75_s``,
``offset_iqr_s``) and their mean absolute value, ``robot_waited`` / ``partner_waited`` (counts),
``missed`` (trials in which someone did not arrive), ``contacts``, ``min_separation_m``,
``min_ssm_margin_m``, ``ssm_violations``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from coop_robot.control.ssm import violates

#: The sync task's topics in the ROS graph (docs/parameters.md). The sim publishes the cue (latched
#: ``sensor_msgs/TimeReference``: source ``cue`` with the trial's cue time when a trial opens,
#: ``trial_end`` when it is over) and each scored trial (``diagnostic_msgs/DiagnosticArray``, one
#: :data:`SYNC_TRIAL_STATUS`); the controller, with ``task: sync``, its target (latched
#: ``geometry_msgs/PointStamped``, ``world``) and its nominal reach's arrival time from the start
#: (latched ``std_msgs/Float64``, s: :func:`reach_arrival_after_s`).
SYNC_CUE = "/sync/cue"
SYNC_TRIAL = "/sync/trial"
SYNC_TARGET = "/controller/sync_target"
SYNC_ARRIVAL_AFTER = "/controller/sync_arrival_after_s"

#: config/sync.yaml's parameter for each :class:`SyncTaskConfig` field.
SYNC_PARAMETERS = {
    "sync_partner_target_m": "partner_target_m",
    "sync_arrival_radius_m": "arrival_radius_m",
    "sync_window_s": "window_s",
    "sync_intertrial_s": "intertrial_s",
    "sync_first_cue_s": "first_cue_s",
    "sync_trial_timeout_s": "trial_timeout_s",
}


def check_window_s(value: Any) -> float:
    """A sync window (s): a finite number > 0; ValueError naming the value otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"sync window_s must be a finite number of seconds > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SyncTaskConfig:
    """The sync task's settings (``config/sync.yaml``; its comments say what each is)."""

    partner_target_m: tuple[float, float, float]
    arrival_radius_m: float = 0.02
    window_s: float = 0.75
    intertrial_s: float = 1.0
    first_cue_s: float = 1.0
    trial_timeout_s: float = 6.0

    def __post_init__(self) -> None:
        target = np.asarray(self.partner_target_m, dtype=float)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise ValueError(f"sync_partner_target_m must be 3 finite coordinates (m), got {self.partner_target_m!r}")
        object.__setattr__(self, "partner_target_m", tuple(float(v) for v in target))
        object.__setattr__(self, "window_s", check_window_s(self.window_s))
        for name, low_open in (("arrival_radius_m", True), ("trial_timeout_s", True), ("intertrial_s", False),
                               ("first_cue_s", False)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0.0 or (low_open and value == 0.0):
                raise ValueError(f"sync {name} must be a finite number {'>' if low_open else '>='} 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.window_s >= self.trial_timeout_s:
            raise ValueError(f"sync window_s ({self.window_s:g} s) must be shorter than trial_timeout_s "
                             f"({self.trial_timeout_s:g} s)")


def sync_task_config(overrides: Mapping[str, Any] | None = None, path: str | Path | None = None) -> SyncTaskConfig:
    """``config/sync.yaml`` (or ``path``), with ``overrides`` keyed by its parameter names
    (``sync_window_s``, ...). ValueError names an unknown or bad one."""
    import yaml

    from coop_robot.paths import config_path

    p = config_path("sync.yaml") if path is None else Path(path)
    with open(p, encoding="utf-8") as f:
        values = dict(yaml.safe_load(f)["/**"]["ros__parameters"])
    unknown = sorted(set(overrides or {}) - set(SYNC_PARAMETERS))
    if unknown:
        raise ValueError(f"unknown sync parameter(s) {unknown}; expected some of {sorted(SYNC_PARAMETERS)}")
    values.update(overrides or {})
    missing = sorted(set(SYNC_PARAMETERS) - set(values))
    if missing:
        raise ValueError(f"{p}: missing sync parameter(s) {missing}")
    return SyncTaskConfig(**{field: values[name] for name, field in SYNC_PARAMETERS.items()})


# --------------------------------------------------------------------------- per trial
def arrival_offset_s(robot_arrival_s: float | None, partner_arrival_s: float | None) -> float | None:
    """Robot arrival - partner arrival (s); None unless both arrived."""
    if robot_arrival_s is None or partner_arrival_s is None:
        return None
    return float(robot_arrival_s) - float(partner_arrival_s)


def who_waited(robot_arrival_s: float | None, partner_arrival_s: float | None) -> str:
    """``robot``, ``partner`` or ``none``: who arrived first and waited (module docstring)."""
    offset = arrival_offset_s(robot_arrival_s, partner_arrival_s)
    if offset is None:
        return "robot" if robot_arrival_s is not None else "partner" if partner_arrival_s is not None else "none"
    return "partner" if offset > 0.0 else "robot" if offset < 0.0 else "none"


@dataclass
class SyncTrial:
    """One sync trial: when each agent started and arrived, and the safety figures of its window."""

    trial: int
    cue_s: float
    window_s: float
    robot_start_s: float | None = None
    partner_start_s: float | None = None
    robot_arrival_s: float | None = None
    partner_arrival_s: float | None = None
    contact: bool = False
    min_separation_m: float = math.inf
    min_ssm_margin_m: float = math.inf
    ssm_violations: int = 0
    ssm_samples: int = 0

    @property
    def offset_s(self) -> float | None:
        return arrival_offset_s(self.robot_arrival_s, self.partner_arrival_s)

    @property
    def success(self) -> bool:
        offset = self.offset_s
        return offset is not None and abs(offset) <= self.window_s

    @property
    def waited(self) -> str:
        return who_waited(self.robot_arrival_s, self.partner_arrival_s)

    def as_dict(self) -> dict:
        d = asdict(self)
        for key in ("min_separation_m", "min_ssm_margin_m"):
            if not math.isfinite(d[key]):
                d[key] = None
        d.update(offset_s=self.offset_s, success=self.success, waited=self.waited)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SyncTrial:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        for key in ("min_separation_m", "min_ssm_margin_m"):
            if values.get(key) is None:
                values[key] = math.inf
        return cls(**values)


class SyncTrials:
    """Cues the trials and scores them from ground truth (module docstring).

    Call :meth:`step` at every physics step with both agents' positions; it returns True when a
    trial's cue is at that time. :meth:`add_separation` takes the ground-truth SSM samples.
    """

    def __init__(self, config: SyncTaskConfig, robot_target_m) -> None:
        self.config = config
        self.robot_target_m = np.asarray(robot_target_m, dtype=float)
        self.partner_target_m = np.asarray(config.partner_target_m, dtype=float)
        self.trials: list[SyncTrial] = []
        self.current: SyncTrial | None = None   # the open trial
        self._window: SyncTrial | None = None   # the trial whose window the samples fall in
        self._robot_from: np.ndarray | None = None
        self._partner_from: np.ndarray | None = None
        self._next_cue_s = config.first_cue_s
        self._in_violation = False

    @property
    def window_trial(self) -> SyncTrial | None:
        """The trial whose safety window is open (the latest one; None before the first cue)."""
        return self._window

    @property
    def cue_s(self) -> float | None:
        """The open trial's cue (s); None between trials."""
        return None if self.current is None else self.current.cue_s

    def step(self, t_s: float, robot_ee_m, partner_hand_m, *, contact: bool, robot_at_rest: bool,
             partner_at_rest: bool) -> bool:
        """Advance to ``t_s``; True when a cue starts a trial now."""
        r = self.config.arrival_radius_m
        trial = self.current
        if trial is None:
            if t_s + 1e-9 >= self._next_cue_s and robot_at_rest and partner_at_rest:
                self.current = self._window = SyncTrial(len(self.trials) + 1, float(t_s), self.config.window_s)
                self._robot_from = np.array(robot_ee_m, dtype=float)
                self._partner_from = np.array(partner_hand_m, dtype=float)
                return True
            if contact and self._window is not None:
                self._window.contact = True
            return False
        robot = np.asarray(robot_ee_m, dtype=float)
        hand = np.asarray(partner_hand_m, dtype=float)
        if trial.robot_start_s is None and np.linalg.norm(robot - self._robot_from) > r:
            trial.robot_start_s = float(t_s)
        if trial.partner_start_s is None and np.linalg.norm(hand - self._partner_from) > r:
            trial.partner_start_s = float(t_s)
        if trial.robot_arrival_s is None and np.linalg.norm(robot - self.robot_target_m) <= r:
            trial.robot_arrival_s = float(t_s)
        if trial.partner_arrival_s is None and np.linalg.norm(hand - self.partner_target_m) <= r:
            trial.partner_arrival_s = float(t_s)
        if contact:
            trial.contact = True
        both_arrived = trial.robot_arrival_s is not None and trial.partner_arrival_s is not None
        timed_out = t_s >= trial.cue_s + self.config.trial_timeout_s
        if (both_arrived or timed_out) and robot_at_rest and partner_at_rest:
            self.trials.append(trial)
            self.current = None
            self._next_cue_s = float(t_s) + self.config.intertrial_s
        return False

    def add_separation(self, t_s: float, separation_m: float, protective_m: float, closing_mps: float) -> None:
        """One ground-truth SSM sample; counted in the window of the latest trial (none before the first cue)."""
        w = self._window
        if w is None or math.isnan(separation_m) or math.isnan(protective_m):
            return
        w.ssm_samples += 1
        w.min_separation_m = min(w.min_separation_m, float(separation_m))
        w.min_ssm_margin_m = min(w.min_ssm_margin_m, float(separation_m - protective_m))
        violating = violates(separation_m, protective_m, closing_mps)
        if violating and not self._in_violation:
            w.ssm_violations += 1
        self._in_violation = violating


def reach_arrival_after_s(reach, kinematics, target_m, arrival_radius_m: float, rate_hz: float = 240.0) -> float:
    """How long after its start the joint plan ``reach`` brings the end effector within
    ``arrival_radius_m`` of ``target_m`` (s), sampled at ``rate_hz`` (the physics rate): the
    arrival definition above applied to the controller's nominal plan (what the oracle control
    needs to know of the robot). The plan's duration when it never comes that close."""
    times = np.arange(0.0, reach.duration_s + 1e-9, 1.0 / rate_hz)
    ee = kinematics.fk_many(reach.state_at(times)[0])
    near = np.linalg.norm(ee - np.asarray(target_m, dtype=float), axis=1) <= arrival_radius_m
    return float(times[int(np.argmax(near))]) if near.any() else float(reach.duration_s)


@dataclass
class SyncStep:
    """What one physics step did to the trials (:func:`advance_sync_trials`)."""

    cued: bool = False                       # a trial's cue is at this step
    ended: list[SyncTrial] = field(default_factory=list)   # trials that ended at this step
    closed: SyncTrial | None = None          # the trial whose safety window the cue closed


def advance_sync_trials(trials: SyncTrials, partner, t_s: float, robot_ee_m, partner_hand_m, *, contact: bool,
                        robot_at_rest: bool) -> SyncStep:
    """One physics step of the task, after the agents moved: :meth:`SyncTrials.step` on the ground
    truth, the partner (:class:`coop_robot.partner.sync.SyncPartner`) cued when a trial starts and
    told of every trial that ended. The fast environment and the sim node both step the task with
    this, so the cue and the partner's view of a trial have one definition."""
    done = len(trials.trials)
    window = trials.window_trial
    step = SyncStep()
    if trials.step(t_s, robot_ee_m, partner_hand_m, contact=contact, robot_at_rest=robot_at_rest,
                   partner_at_rest=partner.phase == "resting"):
        partner.cue(t_s)
        step.cued, step.closed = True, window
    step.ended = trials.trials[done:]
    for trial in step.ended:
        partner.end_trial(trial.robot_start_s, trial.robot_arrival_s)
    return step


class SyncInputs:
    """What a sync policy observes besides perception, as the graph delivers it (the policy node):
    the open trial's cue from ``/sync/cue``, and for the oracle the controller's reach time and the
    partner's planned arrival. A planned arrival counts only once it was planned at or after the
    open trial's cue: the previous trial's plan, arriving after the new cue, must not make the oracle act."""

    def __init__(self) -> None:
        self.cue_s: float | None = None
        self.robot_arrival_after_s: float | None = None
        self._arrival: tuple[float, float] | None = None   # (planned arrival, when planned), s

    def cue(self, source: str, cue_s: float) -> None:
        """``/sync/cue``: source ``cue`` opens a trial at ``cue_s``, ``trial_end`` closes it."""
        if source == "cue":
            self.cue_s = float(cue_s)
        elif source == "trial_end":
            self.cue_s = None

    def planned_arrival(self, arrival_s: float, planned_at_s: float) -> None:
        self._arrival = (float(arrival_s), float(planned_at_s))

    def observation(self) -> dict:
        """The sync fields of an :class:`coop_robot.policy.base.Observation`."""
        planned = None
        if self.cue_s is not None and self._arrival is not None and self._arrival[1] >= self.cue_s - 1e-9:
            planned = self._arrival[0]
        return {"sync_cue_s": self.cue_s, "robot_arrival_after_s": self.robot_arrival_after_s,
                "partner_planned_arrival_s": planned}


#: The name of the /diagnostics-style status that carries one trial (:func:`trial_key_values`).
SYNC_TRIAL_STATUS = "coop_robot/sync_trial"


def trial_key_values(trial: SyncTrial) -> list[tuple[str, str]]:
    """A trial as (key, JSON text) pairs, for a ``DiagnosticStatus`` (``/sync/trial``)."""
    return [(key, json.dumps(value)) for key, value in trial.as_dict().items()]


def trial_from_key_values(pairs) -> SyncTrial:
    """The trial :func:`trial_key_values` wrote; ValueError for a missing or malformed value."""
    try:
        return SyncTrial.from_dict({key: json.loads(text) for key, text in pairs})
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed sync trial: {exc}") from exc


class SyncTrialLog:
    """The trials of a session as they arrive, possibly more than once: a trial is sent when it
    ends and again when the next cue closes its safety window; the latest version counts."""

    def __init__(self) -> None:
        self._trials: dict[int, SyncTrial] = {}

    def update(self, trial: SyncTrial) -> bool:
        """Keep ``trial``; True when its number is new (it has just ended)."""
        new = trial.trial not in self._trials
        self._trials[trial.trial] = trial
        return new

    @property
    def trials(self) -> list[SyncTrial]:
        return [self._trials[k] for k in sorted(self._trials)]

    def __len__(self) -> int:
        return len(self._trials)

    def summary(self, limit: int | None = None, *, window_s: float | None = None, **meta) -> dict:
        """:func:`summarize_sync` of the first ``limit`` trials (all: None); ``window_s`` defaults to
        the trials' own (the scorer's) window."""
        trials = self.trials[:limit] if limit else self.trials
        if window_s is None:
            if not trials:
                raise ValueError("no trials: give window_s")
            window_s = trials[0].window_s
        return summarize_sync(trials, window_s=window_s, **meta)


# --------------------------------------------------------------------------- per session
SYNC_SUMMARY_KEYS = (
    "task", "trials", "window_s", "successes", "success_rate", "median_offset_s", "offset_p25_s", "offset_p75_s",
    "offset_iqr_s", "mean_abs_offset_s", "robot_waited", "partner_waited", "missed", "contacts",
    "min_separation_m", "min_ssm_margin_m", "ssm_violations", "ssm_samples", "policy", "partner", "seed",
)


def summarize_sync(trials: list[SyncTrial], *, window_s: float, policy: str = "", partner: str = "",
                   seed: int | None = None) -> dict:
    """The session summary (:data:`SYNC_SUMMARY_KEYS`, plus ``per_trial``), JSON-serialisable."""
    n = len(trials)
    offsets = np.array([t.offset_s for t in trials if t.offset_s is not None], dtype=float)
    seps = [t.min_separation_m for t in trials if math.isfinite(t.min_separation_m)]
    margins = [t.min_ssm_margin_m for t in trials if math.isfinite(t.min_ssm_margin_m)]
    q25, q50, q75 = (np.percentile(offsets, [25, 50, 75]) if offsets.size else (None, None, None))
    successes = sum(1 for t in trials if t.success)
    return {
        "task": "sync",
        "trials": n,
        "window_s": float(window_s),
        "successes": successes,
        "success_rate": successes / n if n else 0.0,
        "median_offset_s": None if q50 is None else float(q50),
        "offset_p25_s": None if q25 is None else float(q25),
        "offset_p75_s": None if q75 is None else float(q75),
        "offset_iqr_s": None if q25 is None else float(q75 - q25),
        "mean_abs_offset_s": float(np.mean(np.abs(offsets))) if offsets.size else None,
        "robot_waited": sum(1 for t in trials if t.waited == "robot"),
        "partner_waited": sum(1 for t in trials if t.waited == "partner"),
        "missed": sum(1 for t in trials if t.offset_s is None),
        "contacts": sum(1 for t in trials if t.contact),
        "min_separation_m": min(seps) if seps else None,
        "min_ssm_margin_m": min(margins) if margins else None,
        "ssm_violations": int(sum(t.ssm_violations for t in trials)),
        "ssm_samples": int(sum(t.ssm_samples for t in trials)),
        "policy": policy,
        "partner": partner,
        "seed": seed,
        "per_trial": [t.as_dict() for t in trials],
    }


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{1000 * v:+.0f}"


def _time(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def format_sync_summary(summary: dict) -> list[str]:
    """The summary lines of :func:`format_sync_table`."""
    s = summary
    sep = "n/a" if s["min_separation_m"] is None else f"{s['min_separation_m']:.3f}"
    margin = "n/a" if s["min_ssm_margin_m"] is None else f"{s['min_ssm_margin_m']:.3f}"
    return [
        f"sync summary (ground_truth; policy={s['policy']} partner={s['partner']} seed={s['seed']}): "
        f"{s['trials']} trials, window {1000 * s['window_s']:.0f} ms, success {s['successes']}/{s['trials']} "
        f"({100 * s['success_rate']:.1f}%), offset (robot - partner) median {_ms(s['median_offset_s'])} ms, "
        f"IQR {_ms(s['offset_p25_s'])} .. {_ms(s['offset_p75_s'])} ms, missed {s['missed']}",
        f"who waited: robot {s['robot_waited']}, partner {s['partner_waited']}; safety: contacts {s['contacts']}, "
        f"min separation {sep} m, min SSM margin {margin} m, SSM violations {s['ssm_violations']}",
    ]


def format_trial_line(t: SyncTrial) -> str:
    """One trial in a line (the graph's progress output)."""
    sep = "n/a" if not math.isfinite(t.min_separation_m) else f"{t.min_separation_m:.3f}"
    return (f"offset {_ms(t.offset_s)} ms, success {'yes' if t.success else 'no'}, waited {t.waited}, "
            f"contact {t.contact}, min separation {sep} m, SSM violations {t.ssm_violations}")


def format_sync_table(trials: list[SyncTrial], summary: dict) -> str:
    """Per-trial table and summary (what ``coop-robot eval --task sync`` prints)."""
    lines = [f"{'trial':>5} {'cue s':>8} {'robot start':>11} {'robot arr':>9} {'partner arr':>11} "
             f"{'offset ms':>9} {'ok':>3} {'waited':>7} {'min sep m':>9}"]
    for t in trials:
        sep = "n/a" if not math.isfinite(t.min_separation_m) else f"{t.min_separation_m:.3f}"
        notes = ", ".join(n for n in ("contact" if t.contact else "",
                                      f"ssm-violation x{t.ssm_violations}" if t.ssm_violations else "") if n)
        lines.append(f"{t.trial:>5} {t.cue_s:8.3f} {_time(t.robot_start_s):>11} {_time(t.robot_arrival_s):>9} "
                     f"{_time(t.partner_arrival_s):>11} {_ms(t.offset_s):>9} {'yes' if t.success else 'no':>3} "
                     f"{t.waited:>7} {sep:>9}  {notes}".rstrip())
    lines.append("")
    lines.extend(format_sync_summary(summary))
    return "\n".join(lines)

"""Partner profiles: the timing statistics of a simulated person, loaded from YAML.

A profile is a small YAML file (see ``config/partners/*.yaml`` for annotated examples). A bare
name such as ``typical`` selects a shipped profile; any other string is a path to a profile file,
so evaluation can run against partners the policy never saw. Every problem in a file (unknown or
missing key, wrong type, NaN, value out of range, unreadable YAML) raises :class:`ProfileError`
naming the file, the key and what was expected.

Schema (all times in seconds, fractions of the straight rest -> target reach path)::

    name: str
    description: str                                   # optional
    reaction_time_s: {median: >0, sigma: >=0, min: >=0, max: >min}   # log-normal, clipped
    initial_delay_s: {min: >=0, max: >=min}            # before the very first partner turn
    reach_duration_s: {mean: >0, sd: >=0, min: >0}     # normal, clipped at min
    dwell_s: {mean: >0, sd: >=0, min: >=0}
    withdraw_duration_s: {mean: >0, sd: >=0, min: >0}
    hesitation: {probability: [0,1], at_fraction: [lo, hi] in (0,1), duration_s: {min, max}}
    false_start: {probability: [0,1], depth_fraction: [lo, hi] in (0,1], pause_s: {min, max}}
    pause: {probability: [0,1], duration_s: {min, max}}
    adaptation: {enabled: bool, rate: [0,0.5], min_scale: (0,1], max_scale: >=1}   # optional
                # or, instead of rate: speed_up_rate: [0,0.5], slow_down_rate: [0,1] (both)
    task_objects: {choice: fixed | cycle | uniform | weighted, index: int >= 0, weights: [>= 0, ...]}  # optional
    sync: {start_delay_s: {median, sigma, min, max}, robot_reaction_s: {median, sigma, min, max},
           follow_weight: [0,1], robot_duration_estimate_s: >0, estimate_sd_s: >=0,
           adaptation_rate: [0,1]}                     # optional, every key optional

``task_objects`` says which of the world's task objects (``task_objects_m`` in
``config/world.yaml``) the partner reaches for on each turn: ``fixed`` always object ``index``
(default 0, the nominal one), ``cycle`` each in turn starting at ``index`` (default 0),
``uniform`` a random one with equal probability, ``weighted`` a random one with probability
proportional to ``weights`` (one per object). Absent: ``fixed`` at the nominal object, the
partner of before task objects existed. Whether ``index`` and ``weights`` fit the world's objects
is checked when the model is built (:class:`coop_robot.partner.model.PartnerModel`).

``adaptation`` is the partner's learning rule over trials (see :mod:`coop_robot.partner.model`):
after a smooth turn the timing scale shrinks by ``speed_up_rate``, after a disturbed one (overlap,
near miss, contact) it grows by ``slow_down_rate``, within ``[min_scale, max_scale]``. A single
``rate`` means ``speed_up_rate = rate`` and ``slow_down_rate = 2 * rate`` (the rule before the two
rates could be set apart); give either ``rate`` or both ``speed_up_rate`` and ``slow_down_rate``.

``sync`` is the partner's timing in the synchronous joint-action task (:mod:`coop_robot.partner.sync`,
docs/science_sync.md); turn-taking never reads it. After the cue the partner starts its reach after
``start_delay_s`` (log-normal, like ``reaction_time_s``; absent: the profile's ``reaction_time_s``);
seeing the robot start to move, it re-times its reach after ``robot_reaction_s`` (absent:
``reaction_time_s``) so that it arrives ``follow_weight`` of the way from its own planned arrival
toward its estimate of the robot's (robot onset + ``robot_duration_estimate_s`` + a
N(0, ``estimate_sd_s``) error each trial); with ``adaptation_rate`` > 0 the estimate moves that
fraction of the way to the robot's observed reach time after every trial. Absent keys take the
defaults of :class:`SyncTiming`, so every profile file written before the sync task is valid.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from coop_robot.paths import share_dir

PROFILE_SUFFIXES = (".yaml", ".yml")


class ProfileError(ValueError):
    """A partner profile name or file that cannot be used; the message says why."""


# ----------------------------------------------------------------------------------- data model
@dataclass(frozen=True)
class UniformRange:
    """A uniformly sampled interval ``[min_s, max_s]`` (s)."""

    min_s: float
    max_s: float


@dataclass(frozen=True)
class ReactionTime:
    """Log-normal reaction time (s): ``exp(ln(median_s) + sigma * N(0, 1))`` clipped to [min_s, max_s]."""

    median_s: float
    sigma: float
    min_s: float
    max_s: float


@dataclass(frozen=True)
class DurationDistribution:
    """Normal duration (s) ``N(mean_s, sd_s)`` clipped below at ``min_s``."""

    mean_s: float
    sd_s: float
    min_s: float


@dataclass(frozen=True)
class Hesitation:
    """The real reach stops at a path fraction in ``at_fraction``, holds, then continues."""

    probability: float
    at_fraction: tuple[float, float]
    duration_s: UniformRange


@dataclass(frozen=True)
class FalseStart:
    """A reach to a path fraction in ``depth_fraction``, a return to rest, a pause, then the real reach."""

    probability: float
    depth_fraction: tuple[float, float]
    pause_s: UniformRange


@dataclass(frozen=True)
class Pause:
    """An occasional long pause added to the reaction time."""

    probability: float
    duration_s: UniformRange


@dataclass(frozen=True)
class Adaptation:
    """Learning rule over trials on the partner's timing scale (see :mod:`coop_robot.partner.model`)."""

    enabled: bool = False
    rate: float = 0.0
    min_scale: float = 1.0
    max_scale: float = 1.0
    #: Fractional shrink of the timing scale after a smooth turn; ``None``: ``rate``.
    speed_up: float | None = None
    #: Fractional growth of the timing scale after a disturbed turn; ``None``: ``2 * rate``.
    slow_down: float | None = None

    @property
    def speed_up_rate(self) -> float:
        """``scale *= 1 - speed_up_rate`` after a smooth turn."""
        return self.rate if self.speed_up is None else self.speed_up

    @property
    def slow_down_rate(self) -> float:
        """``scale *= 1 + slow_down_rate`` after a disturbed turn (overlap, near miss, contact)."""
        return 2.0 * self.rate if self.slow_down is None else self.slow_down


#: The ``task_objects.choice`` values (see the module docstring).
TASK_OBJECT_CHOICES = ("fixed", "cycle", "uniform", "weighted")


@dataclass(frozen=True)
class TaskObjects:
    """Which task object the partner reaches for each turn (indices into the world's task objects)."""

    choice: str = "fixed"
    index: int = 0  # fixed: the object; cycle: the first object
    weights: tuple[float, ...] = ()  # weighted: relative probability of each object


@dataclass(frozen=True)
class SyncTiming:
    """The partner's timing in the sync task (module docstring, ``sync``); times in seconds."""

    #: Own start after the cue; None: the profile's ``reaction_time_s``.
    start_delay_s: ReactionTime | None = None
    #: From seeing the robot start moving to re-timing its own reach; None: ``reaction_time_s``.
    robot_reaction_s: ReactionTime | None = None
    #: 0: ignores the robot; 1: aims at its estimate of the robot's arrival.
    follow_weight: float = 0.5
    #: How long it expects the robot to take from its visible start to its arrival (s).
    robot_duration_estimate_s: float = 1.0
    #: Trial-to-trial error (standard deviation, s) of that estimate.
    estimate_sd_s: float = 0.1
    #: After each trial the estimate moves this fraction toward the robot's observed reach time (0: off).
    adaptation_rate: float = 0.0


@dataclass(frozen=True)
class PartnerProfile:
    """Timing statistics of one simulated partner (all times in seconds)."""

    name: str
    reaction_time_s: ReactionTime
    initial_delay_s: UniformRange
    reach_duration_s: DurationDistribution
    dwell_s: DurationDistribution
    withdraw_duration_s: DurationDistribution
    hesitation: Hesitation
    false_start: FalseStart
    pause: Pause
    adaptation: Adaptation = field(default_factory=Adaptation)
    task_objects: TaskObjects = field(default_factory=TaskObjects)
    sync: SyncTiming = field(default_factory=SyncTiming)
    description: str = ""
    source: str = ""  # the file it was loaded from ("" when built in code)

    def time_scaled(self, factor: float) -> PartnerProfile:
        """The same partner, ``factor`` times slower (> 1) or quicker (< 1): every duration of the
        profile (reaction time, initial delay, reach, dwell, withdraw, hesitation, false-start pause,
        pause; their spreads and bounds with them) is multiplied by ``factor``; probabilities, path
        fractions, adaptation and task objects are kept. Training uses it to vary the training
        partners' pace (``partner_time_scale_min/max`` of the training config)."""
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (math.isfinite(factor)
                                                                                   and factor > 0):
            raise ProfileError(f"a time scale must be a finite number > 0, got {factor!r}")
        k = float(factor)
        if k == 1.0:
            return self

        def rng(r: UniformRange) -> UniformRange:
            return UniformRange(r.min_s * k, r.max_s * k)

        def dur(d: DurationDistribution) -> DurationDistribution:
            return DurationDistribution(d.mean_s * k, d.sd_s * k, d.min_s * k)

        r = self.reaction_time_s

        def react(t: ReactionTime | None) -> ReactionTime | None:
            return None if t is None else ReactionTime(t.median_s * k, t.sigma, t.min_s * k, t.max_s * k)

        return replace(
            self,
            reaction_time_s=ReactionTime(r.median_s * k, r.sigma, r.min_s * k, r.max_s * k),
            initial_delay_s=rng(self.initial_delay_s),
            reach_duration_s=dur(self.reach_duration_s),
            dwell_s=dur(self.dwell_s),
            withdraw_duration_s=dur(self.withdraw_duration_s),
            hesitation=replace(self.hesitation, duration_s=rng(self.hesitation.duration_s)),
            false_start=replace(self.false_start, pause_s=rng(self.false_start.pause_s)),
            pause=replace(self.pause, duration_s=rng(self.pause.duration_s)),
            sync=replace(self.sync, start_delay_s=react(self.sync.start_delay_s),
                         robot_reaction_s=react(self.sync.robot_reaction_s)),
        )


# ----------------------------------------------------------------------------------- locating files
def partners_dir() -> Path:
    """The directory holding the shipped profiles (``<share or source>/config/partners``)."""
    try:
        cand = share_dir() / "config" / "partners"
    except FileNotFoundError as exc:
        raise ProfileError(str(exc)) from exc
    if not cand.is_dir():
        raise ProfileError(f"coop_robot's partner profiles are missing: {cand} is not a directory")
    return cand


def shipped_profiles() -> list[str]:
    """Names of the shipped profiles (``typical``, ``fast``, ...), sorted."""
    return sorted(p.stem for p in partners_dir().glob("*.yaml") if p.is_file())


def _is_bare_name(name: str) -> bool:
    return "/" not in name and os.sep not in name and not name.lower().endswith(PROFILE_SUFFIXES)


def resolve_profile_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped profile's file for a bare name (no ``/``, no ``.yaml``), else the path itself.

    Raises :class:`ProfileError` for an unknown name (listing the shipped ones) or a missing file.
    """
    if isinstance(name_or_path, str) and not name_or_path.strip():
        raise ProfileError(f"partner profile must be a shipped name or a YAML file, got {name_or_path!r}; "
                           f"shipped profiles: {', '.join(shipped_profiles())}")
    if isinstance(name_or_path, str) and _is_bare_name(name_or_path):
        path = partners_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ProfileError(f"unknown partner profile {name_or_path!r}; shipped profiles: "
                               f"{', '.join(shipped_profiles())} (or give a path to a .yaml file)")
        return path
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ProfileError(f"partner profile file {str(path)!r} does not exist or is not a file")
    return path


def load_profile(name_or_path: str | os.PathLike) -> PartnerProfile:
    """Load and validate a shipped profile by name or any profile file by path."""
    path = resolve_profile_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read partner profile: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    return validate_profile(data, str(path))


# ----------------------------------------------------------------------------------- validation
class _Checker:
    """Reads typed, range-checked values out of nested mappings, naming the dotted key on error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, expected: str, got: Any) -> ProfileError:
        return ProfileError(f"{self.source}: key {key!r}: expected {expected}, got {got!r}")

    def mapping(self, data: Any, key: str, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
        where = f"key {key!r}" if key else "document"
        if not isinstance(data, Mapping):
            kind = type(data).__name__ if data is not None else "an empty document"
            raise ProfileError(f"{self.source}: {where}: expected a mapping with keys {sorted(allowed)}, got {kind}")
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            prefix = f"{key}." if key else ""
            raise ProfileError(f"{self.source}: unknown key(s) {', '.join(repr(prefix + k) for k in unknown)}; "
                               f"expected only {sorted(allowed)}" + (f" under {key!r}" if key else ""))
        missing = sorted(required - set(data))
        if missing:
            prefix = f"{key}." if key else ""
            raise ProfileError(f"{self.source}: missing required key(s) "
                               f"{', '.join(repr(prefix + k) for k in missing)}")
        return data

    def number(self, data: Mapping[str, Any], parent: str, name: str, *, low: float | None = None,
               low_open: bool = False, high: float | None = None, high_open: bool = False) -> float:
        key = f"{parent}.{name}" if parent else name
        value = data[name]
        expected = "a finite number" + _range_text(low, low_open, high, high_open)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, expected, value)
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(key, expected, value)
        if low is not None and (value < low or (low_open and value == low)):
            raise self.fail(key, expected, value)
        if high is not None and (value > high or (high_open and value == high)):
            raise self.fail(key, expected, value)
        return value

    def string(self, data: Mapping[str, Any], name: str) -> str:
        value = data[name]
        if not isinstance(value, str) or (name == "name" and not value.strip()):
            raise self.fail(name, "a non-empty string" if name == "name" else "a string", value)
        return value

    def boolean(self, data: Mapping[str, Any], parent: str, name: str) -> bool:
        value = data[name]
        if not isinstance(value, bool):
            raise self.fail(f"{parent}.{name}", "true or false", value)
        return value

    def fraction_pair(self, data: Mapping[str, Any], parent: str, name: str, *,
                      high_closed: bool) -> tuple[float, float]:
        key = f"{parent}.{name}"
        value = data[name]
        upper = "1]" if high_closed else "1)"
        expected = f"a list [lo, hi] of two finite numbers with 0 < lo <= hi, both in (0, {upper}"
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise self.fail(key, expected, value)
        pair = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise self.fail(key, expected, value)
            pair.append(float(v))
        lo, hi = pair
        if not (0.0 < lo <= hi and (hi <= 1.0 if high_closed else hi < 1.0)):
            raise self.fail(key, expected, value)
        return lo, hi

    def index(self, data: Mapping[str, Any], parent: str, name: str) -> int:
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"{parent}.{name}", "a non-negative integer (an index into the world's task_objects_m)",
                            value)
        return value

    def weights(self, data: Mapping[str, Any], parent: str, name: str) -> tuple[float, ...]:
        key = f"{parent}.{name}"
        value = data[name]
        expected = "a non-empty list of finite numbers >= 0, not all 0 (one per task object)"
        if not isinstance(value, (list, tuple)) or not value:
            raise self.fail(key, expected, value)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0
               for v in value) or not any(v > 0 for v in value):
            raise self.fail(key, expected, value)
        return tuple(float(v) for v in value)

    def uniform_range(self, data: Any, key: str, *, strict: bool = False) -> UniformRange:
        m = self.mapping(data, key, {"min", "max"}, {"min", "max"})
        lo = self.number(m, key, "min", low=0.0)
        hi = self.number(m, key, "max", low=lo, low_open=strict)
        return UniformRange(lo, hi)

    def duration(self, data: Any, key: str, *, min_positive: bool) -> DurationDistribution:
        m = self.mapping(data, key, {"mean", "sd", "min"}, {"mean", "sd", "min"})
        mean = self.number(m, key, "mean", low=0.0, low_open=True)
        sd = self.number(m, key, "sd", low=0.0)
        lo = self.number(m, key, "min", low=0.0, low_open=min_positive, high=mean)
        return DurationDistribution(mean, sd, lo)


def _range_text(low, low_open, high, high_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return (" " + " and ".join(parts)) if parts else ""


_TOP_KEYS = {"name", "description", "reaction_time_s", "initial_delay_s", "reach_duration_s", "dwell_s",
             "withdraw_duration_s", "hesitation", "false_start", "pause", "adaptation", "task_objects", "sync"}
_OPTIONAL_TOP_KEYS = {"description", "adaptation", "task_objects", "sync"}
# The keys each task_objects choice takes besides ``choice`` (allowed, required).
_TASK_OBJECT_KEYS = {"fixed": ({"index"}, set()), "cycle": ({"index"}, set()), "uniform": (set(), set()),
                     "weighted": ({"weights"}, {"weights"})}


def validate_profile(data: Any, source: str = "<profile>") -> PartnerProfile:
    """Check a parsed profile document and build a :class:`PartnerProfile` from it.

    ``source`` (usually the file path) prefixes every error message.
    """
    c = _Checker(source)
    top = c.mapping(data, "", _TOP_KEYS, _TOP_KEYS - _OPTIONAL_TOP_KEYS)

    name = c.string(top, "name")
    description = c.string(top, "description") if "description" in top else ""

    reaction = _reaction_time(c, top["reaction_time_s"], "reaction_time_s")

    initial = c.uniform_range(top["initial_delay_s"], "initial_delay_s")
    reach = c.duration(top["reach_duration_s"], "reach_duration_s", min_positive=True)
    dwell = c.duration(top["dwell_s"], "dwell_s", min_positive=False)
    withdraw = c.duration(top["withdraw_duration_s"], "withdraw_duration_s", min_positive=True)

    k = "hesitation"
    m = c.mapping(top[k], k, {"probability", "at_fraction", "duration_s"}, {"probability", "at_fraction", "duration_s"})
    hesitation = Hesitation(probability=c.number(m, k, "probability", low=0.0, high=1.0),
                            at_fraction=c.fraction_pair(m, k, "at_fraction", high_closed=False),
                            duration_s=c.uniform_range(m["duration_s"], f"{k}.duration_s"))

    k = "false_start"
    m = c.mapping(top[k], k, {"probability", "depth_fraction", "pause_s"}, {"probability", "depth_fraction", "pause_s"})
    false_start = FalseStart(probability=c.number(m, k, "probability", low=0.0, high=1.0),
                             depth_fraction=c.fraction_pair(m, k, "depth_fraction", high_closed=True),
                             pause_s=c.uniform_range(m["pause_s"], f"{k}.pause_s"))

    k = "pause"
    m = c.mapping(top[k], k, {"probability", "duration_s"}, {"probability", "duration_s"})
    pause = Pause(probability=c.number(m, k, "probability", low=0.0, high=1.0),
                  duration_s=c.uniform_range(m["duration_s"], f"{k}.duration_s"))

    adaptation = Adaptation()
    if "adaptation" in top:
        k = "adaptation"
        common = {"enabled", "min_scale", "max_scale"}
        split = {"speed_up_rate", "slow_down_rate"}
        m = c.mapping(top[k], k, common | split | {"rate"}, common)
        given = split & set(m)
        if "rate" in m and given:
            raise ProfileError(f"{source}: key {k!r}: give either 'rate' or both 'speed_up_rate' and "
                               f"'slow_down_rate', not both forms (got {sorted(set(m) & (split | {'rate'}))})")
        if "rate" not in m and given != split:
            raise ProfileError(f"{source}: key {k!r}: missing "
                               f"{', '.join(repr(f'{k}.{n}') for n in sorted(split - given))}: give 'rate' "
                               f"or both 'speed_up_rate' and 'slow_down_rate'")
        rates = {}
        if given:
            rates = {"rate": 0.0, "speed_up": c.number(m, k, "speed_up_rate", low=0.0, high=0.5),
                     "slow_down": c.number(m, k, "slow_down_rate", low=0.0, high=1.0)}
        else:
            rates = {"rate": c.number(m, k, "rate", low=0.0, high=0.5)}
        adaptation = Adaptation(enabled=c.boolean(m, k, "enabled"), **rates,
                                # The timing scale starts at 1, so the bounds must bracket 1.
                                min_scale=c.number(m, k, "min_scale", low=0.0, low_open=True, high=1.0),
                                max_scale=c.number(m, k, "max_scale", low=1.0))

    task_objects = TaskObjects()
    if "task_objects" in top:
        task_objects = _task_objects(c, top["task_objects"])

    sync = _sync_timing(c, top["sync"]) if "sync" in top else SyncTiming()

    return PartnerProfile(name=name, description=description, reaction_time_s=reaction, initial_delay_s=initial,
                          reach_duration_s=reach, dwell_s=dwell, withdraw_duration_s=withdraw,
                          hesitation=hesitation, false_start=false_start, pause=pause, adaptation=adaptation,
                          task_objects=task_objects, sync=sync, source=source)


def _reaction_time(c: _Checker, data: Any, k: str) -> ReactionTime:
    m = c.mapping(data, k, {"median", "sigma", "min", "max"}, {"median", "sigma", "min", "max"})
    r_min = c.number(m, k, "min", low=0.0)
    r_max = c.number(m, k, "max", low=r_min, low_open=True)
    return ReactionTime(median_s=c.number(m, k, "median", low=max(r_min, 0.0), low_open=r_min == 0.0, high=r_max),
                        sigma=c.number(m, k, "sigma", low=0.0), min_s=r_min, max_s=r_max)


def _sync_timing(c: _Checker, data: Any) -> SyncTiming:
    k = "sync"
    keys = {"start_delay_s", "robot_reaction_s", "follow_weight", "robot_duration_estimate_s", "estimate_sd_s",
            "adaptation_rate"}
    m = c.mapping(data, k, keys, set())
    default = SyncTiming()
    values: dict[str, Any] = {}
    for name in ("start_delay_s", "robot_reaction_s"):
        if name in m:
            values[name] = _reaction_time(c, m[name], f"{k}.{name}")
    bounds = {"follow_weight": {"low": 0.0, "high": 1.0},
              "robot_duration_estimate_s": {"low": 0.0, "low_open": True, "high": 10.0},
              "estimate_sd_s": {"low": 0.0, "high": 5.0},
              "adaptation_rate": {"low": 0.0, "high": 1.0}}
    for name, limits in bounds.items():
        values[name] = c.number(m, k, name, **limits) if name in m else getattr(default, name)
    return SyncTiming(**values)


def _task_objects(c: _Checker, data: Any) -> TaskObjects:
    k = "task_objects"
    all_keys = {"choice", "index", "weights"}
    m = c.mapping(data, k, all_keys, {"choice"})
    choice = m["choice"]
    if choice not in TASK_OBJECT_CHOICES:
        raise c.fail(f"{k}.choice", f"one of {', '.join(TASK_OBJECT_CHOICES)}", choice)
    allowed, required = _TASK_OBJECT_KEYS[choice]
    takes = f"choice {choice!r} takes " + (" and ".join(repr(f"{k}.{a}") for a in sorted(allowed)) or "no other key")
    extra = sorted(set(m) - allowed - {"choice"})
    if extra:
        raise ProfileError(f"{c.source}: key {f'{k}.{extra[0]}'!r} does not apply: {takes}")
    missing = sorted(required - set(m))
    if missing:
        raise ProfileError(f"{c.source}: missing required key {f'{k}.{missing[0]}'!r}: {takes}")
    return TaskObjects(choice=choice,
                       index=c.index(m, k, "index") if "index" in m else 0,
                       weights=c.weights(m, k, "weights") if "weights" in m else ())

"""Mirror-unit analysis of a mirror policy checkpoint: do units respond alike when the robot acts and when it watches?

``coop-robot analyze-policy [--checkpoint FILE]`` runs the deployed
:class:`~coop_robot.policy.mirror.MirrorPolicy` (greedy decision rule) in the fast
:class:`~coop_robot.envs.turn_env.TurnTakingEnv` against one or more partner profiles and records
per policy tick (50 Hz):

* the mirror-encoder latent of the robot's own window (``z_self``) and of the perceived partner's
  window (``z_other``), and the GRU hidden state after the tick;
* the robot's action phase (its controller state mapped by ``ROBOT_STATE_TO_MIRROR``) and the
  partner's (the partner model's true phase mapped by ``PARTNER_PHASE_TO_MIRROR``), both at the
  time the observation describes, exactly as training labels them;
* the exit forecast and, while the partner's hand is truly inside the zone, the true time until
  it leaves.

Layers and conditions (phases: ``MIRROR_PHASES``):

* ``encoder``: self tuning = ``z_self`` by the robot's phase, other tuning = ``z_other`` by the
  partner's phase (all ticks). Unit ``i`` of ``z_self`` and of ``z_other`` is the same unit with a
  shared encoder; with separate encoders (``shared_encoder: false``) it is the same latent
  dimension, which the contrastive loss ties together across the two encoders;
* ``gru``: self tuning = the hidden state when the robot performs a phase while the partner is
  idle (the robot acts), other tuning = when the partner performs it while the robot is idle (the
  robot watches). An anticipating robot is never idle while the partner acts or withdraws (its
  controller is ``reaching``: approaching and holding at the staging pose), so plain means over
  "robot idle" ticks leave those phases empty; by default (``--gru-tuning additive``) both
  tuning vectors come from an additive model fitted on all ticks,
  ``h = c + a[robot phase] + b[partner phase]`` (:func:`~coop_robot.analysis.mirror_units.additive_tuning`);
  ``--gru-tuning idle`` takes the plain means (NaN for phases never seen that way).

The mirror index, the shuffled-label control and the forecast table are defined in
:mod:`coop_robot.analysis.mirror_units`. Outputs in ``--out``: printed tables,
``mirror_units.csv``, ``summary.json``, ``mirror_index_hist.png``, ``tuning_curves.png``,
``forecast_error.png``.

``--population`` / ``--compare LABEL=FILE ...`` / ``--untrained-seeds S ...`` add the population
analyses (CKA, similarity matrices, GRU PCA trajectories, unit timescales) of several networks
replayed on this recording's inputs: :mod:`coop_robot.analysis.population_compare`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coop_robot.strict_json import json_safe

PROG = "coop-robot analyze-policy"
DEFAULT_OUT = Path("analysis_policy")
LAYERS = ("encoder", "gru")
UNITS_CSV = "mirror_units.csv"
SUMMARY_JSON = "summary.json"
HIST_PNG = "mirror_index_hist.png"
TUNING_PNG = "tuning_curves.png"
FORECAST_PNG = "forecast_error.png"


# ============================================================================ command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="FILE",
                        help="mirror policy checkpoint (default: the one shipped with the package)")
    parser.add_argument("--partner", nargs="+", default=["typical"], metavar="NAME_OR_FILE",
                        help="partner profile(s): shipped names (typical, fast, slow, hesitant, erratic) or YAML "
                             "files; one session each (default: typical)")
    parser.add_argument("--turns", type=int, default=100, help="robot turns per partner session (default: 100)")
    parser.add_argument("--seed", type=int, default=0,
                        help="session seed of the first partner (the k-th uses seed + k) and of the label "
                             "shuffles (default: 0)")
    parser.add_argument("--permutations", type=int, default=200,
                        help="label shuffles for the chance threshold and p-value (default: 200)")
    parser.add_argument("--gru-tuning", choices=("additive", "idle"), default="additive",
                        help="GRU tuning: additive model over all ticks (default) or plain means over ticks "
                             "where the other agent is idle")
    parser.add_argument("--top-units", type=int, default=6,
                        help="units per layer drawn in tuning_curves.png (default: 6)")
    parser.add_argument("--population", action="store_true",
                        help="also run the population analyses (CKA and similarity matrices of z_self vs z_other, "
                             "GRU PCA trajectories, unit timescales; docs/science_population.md)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="LABEL=FILE",
                        help="population analyses of these checkpoints side by side, all replayed on the inputs the "
                             "--checkpoint network saw; a repeated label = seeds of one kind, summarised as mean and "
                             "95%% CI (implies --population)")
    parser.add_argument("--untrained-seeds", nargs="+", type=int, default=[], metavar="SEED",
                        help="add freshly initialised networks (the --checkpoint config with a shared and with a "
                             "separate encoder) with these init seeds to the population analyses (implies "
                             "--population)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: ./analysis_policy)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines while simulating")


def _check_args(args) -> str | None:
    """Return a message naming the first bad argument, or None."""
    for name, low in (("turns", 1), ("permutations", 20), ("top_units", 1)):
        value = getattr(args, name)
        if value < low:
            return f"--{name.replace('_', '-')} must be >= {low}, got {value}"
    if args.seed < 0:
        return f"--seed must be >= 0, got {args.seed}"
    if args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} exists and is not a directory"
    if any(s < 0 for s in args.untrained_seeds):
        return f"--untrained-seeds must be >= 0, got {args.untrained_seeds}"
    from coop_robot.analysis.population_compare import parse_compare  # noqa: PLC0415

    try:
        for _, path in parse_compare(args.compare):
            if not path.is_file():
                return f"--compare checkpoint {path} does not exist"
    except ValueError as exc:
        return str(exc)
    return None


def run(args) -> int:
    """``coop-robot analyze-policy``: simulate, analyse, print and write the outputs."""
    problem = _check_args(args)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    from coop_robot.partner.profile import ProfileError, load_profile  # noqa: PLC0415
    from coop_robot.policy.base import PolicyError  # noqa: PLC0415
    from coop_robot.policy.mirror import MirrorPolicy  # noqa: PLC0415

    try:
        for name in args.partner:
            load_profile(name)  # fail fast with the profile's own message
        policy = MirrorPolicy(args.checkpoint)  # CheckpointError (a PolicyError) names the problem
    except (ProfileError, PolicyError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    info = policy.info
    print(f"{PROG}: {info.path} ({'shared' if info.config.shared_encoder else 'separate'} encoder, "
          f"latent {info.config.latent_dim}, GRU {info.config.hidden_dim}); {args.turns} turns x "
          f"{len(args.partner)} partner(s), seed {args.seed}", flush=True)
    population = args.population or bool(args.compare) or bool(args.untrained_seeds)
    networks = []
    if population:
        from coop_robot.analysis import population_compare as pc  # noqa: PLC0415

        try:
            networks = pc.load_networks(pc.parse_compare(args.compare), args.untrained_seeds, policy.net, info)
        except PolicyError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    recording = record_sessions(policy, args.partner, args.turns, args.seed, progress=not args.quiet,
                                keep_inputs=population)
    analysis = analyze(recording, n_permutations=args.permutations, seed=args.seed, gru_tuning=args.gru_tuning)
    analysis.meta.update(checkpoint_summary(info), wall_time_s=round(time.perf_counter() - t0, 1),
                         turns_per_partner=args.turns, permutations=args.permutations)
    print()
    print(format_report(analysis))
    args.out.mkdir(parents=True, exist_ok=True)
    written = write_outputs(analysis, recording, args.out, top_units=args.top_units)
    if population:
        written += run_population(args, networks, recording, info)
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0


def run_population(args, networks, recording: Recording, info) -> list[Path]:
    """The population analyses of ``networks`` replayed on ``recording``: print, write, return paths."""
    from coop_robot.analysis import population_compare as pc  # noqa: PLC0415
    from coop_robot.policy.mirror_net import MIRROR_PHASES  # noqa: PLC0415

    tick_s = 1.0 / info.obs_spec.tick_rate_hz
    results = []
    with _one_torch_thread():
        for k, network in enumerate(networks):
            t0 = time.perf_counter()
            results.append(pc.analyze_network(network, recording, tick_s, n_permutations=args.permutations,
                                              seed=args.seed))
            if not args.quiet:
                print(f"  population {k + 1}/{len(networks)}: {network.label} ({network.source}) "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
    meta = {"driver": checkpoint_summary(info), "ticks": recording.ticks, "sessions": recording.sessions,
            "turns_per_partner": args.turns, "permutations": args.permutations, "tick_s": tick_s,
            "align_on": "robot reach onset (robot phase idle -> reach) of reaches that go on to act",
            "align_window_s": [-pc.ALIGN_BEFORE_S, pc.ALIGN_AFTER_S],
            "input_condition_cka": pc.input_condition_cka(recording, tick_s, args.permutations, args.seed).summary()}
    comparison = pc.compare(results, MIRROR_PHASES, meta)
    print()
    print(pc.format_report(comparison))
    return pc.write_outputs(comparison, recording, args.out)


# ============================================================================ recording
@dataclass
class Recording:
    """Per-tick arrays of one or more sessions (see the module docstring).

    ``robot_phase`` / ``partner_phase`` are indices into ``MIRROR_PHASES``; ``time_to_exit_s`` is
    NaN where the partner is not inside the zone (or never left again before the session ended).
    """

    z_self: np.ndarray            # (T, latent_dim)
    z_other: np.ndarray           # (T, latent_dim)
    hidden: np.ndarray            # (T, hidden_dim)
    robot_phase: np.ndarray       # (T,) int
    partner_phase: np.ndarray     # (T,) int
    exit_forecast_s: np.ndarray   # (T,)
    time_to_exit_s: np.ndarray    # (T,)
    session: np.ndarray           # (T,) index into `sessions`
    sessions: list[dict] = field(default_factory=list)
    # The network's inputs per tick (kept with ``keep_inputs=True``), so other networks can be run
    # on exactly what this one saw (coop_robot.analysis.population_compare.replay).
    self_windows: np.ndarray | None = None    # (T, W, F)
    other_windows: np.ndarray | None = None   # (T, W, F)
    context: np.ndarray | None = None         # (T, C)

    @property
    def ticks(self) -> int:
        return int(self.robot_phase.shape[0])


class _ActivityRecorder:
    """Stands in for a MirrorPolicy's network: steps the real one and keeps the latents and the
    GRU state of the last step (the policy calls ``net.step`` exactly once per tick)."""

    def __init__(self, net, keep_inputs: bool = False) -> None:
        self.net = net
        self.keep_inputs = keep_inputs
        self.last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.last_inputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def step(self, self_window, other_window, context, hidden=None):
        out, h = self.net.step(self_window, other_window, context, hidden)
        self.last = (out["z_self"][0].numpy().copy(), out["z_other"][0].numpy().copy(), h[0, 0].numpy().copy())
        if self.keep_inputs:
            self.last_inputs = (self_window[0].numpy().copy(), other_window[0].numpy().copy(),
                                context[0].numpy().copy())
        return out, h


@contextmanager
def _one_torch_thread():
    """Batch-1 steps gain nothing from threads; keep the shared machine's other cores free."""
    import torch  # noqa: PLC0415

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def record_session(env, policy, turns: int, seed: int, progress=None, keep_inputs: bool = False) -> dict:
    """Play one greedy session of ``policy`` in ``env`` until ``turns`` robot turns are scored (or
    60 s per turn + 30 s pass) and return its per-tick arrays and stats.

    ``progress(turns_done, t_s)`` is called after each completed robot turn when given;
    ``keep_inputs`` keeps the network's input windows and context too.
    """
    from coop_robot.policy.mirror_net import MIRROR_PHASES, PARTNER_PHASE_TO_MIRROR, ROBOT_STATE_TO_MIRROR  # noqa: PLC0415

    phase_index = {p: i for i, p in enumerate(MIRROR_PHASES)}
    idle = phase_index["idle"]
    inner = policy.net
    recorder = _ActivityRecorder(inner, keep_inputs)
    policy.net = recorder
    try:
        obs = env.reset(seed)
        policy.reset()
        # Labels are the truth at the time the observation describes (as training labels them).
        robot_state, partner_phase = env.controller.state, env.partner.phase
        partner_in, t_obs = False, env.t_s
        rows = {k: [] for k in ("z_self", "z_other", "hidden", "robot_phase", "partner_phase", "forecast",
                                "partner_in", "t_s", "self_windows", "other_windows", "context")}
        exit_times: list[float] = []
        done = 0
        limit_s = 60.0 * turns + 30.0
        while done < turns and env.t_s < limit_s:
            recorder.last = None
            decision = policy.step(obs)
            if recorder.last is None:
                raise RuntimeError("MirrorPolicy.step did not step its network this tick; the recorder relies on "
                                   "one network step per policy tick")
            z_s, z_o, h = recorder.last
            rows["z_self"].append(z_s)
            rows["z_other"].append(z_o)
            rows["hidden"].append(h)
            if keep_inputs:
                for key, value in zip(("self_windows", "other_windows", "context"), recorder.last_inputs):
                    rows[key].append(value)
            rows["robot_phase"].append(phase_index[ROBOT_STATE_TO_MIRROR.get(robot_state, "idle")])
            rows["partner_phase"].append(phase_index[PARTNER_PHASE_TO_MIRROR.get(partner_phase, "idle")])
            rows["forecast"].append(policy.last_outputs["exit_forecast_s"])
            rows["partner_in"].append(partner_in)
            rows["t_s"].append(t_obs)
            obs, info = env.step(decision.action, decision.fallback)
            exit_times += [t for name, t in info["events"] if name == "partner_exit"]
            if info["turns"]:
                done += len(info["turns"])
                if progress is not None:
                    progress(min(done, turns), info["t_s"])
            robot_state, partner_phase = info["robot_state"], info["partner_phase"]
            partner_in, t_obs = bool(info["partner_in_zone_true"]), info["t_s"]
    finally:
        policy.net = inner

    from coop_robot.analysis.mirror_units import time_to_exit_s  # noqa: PLC0415

    t = np.asarray(rows["t_s"], dtype=np.float64)
    tte = time_to_exit_s(t, rows["partner_in"], exit_times)
    exits = np.asarray(exit_times, dtype=np.float64)
    robot_phase = np.asarray(rows["robot_phase"], dtype=np.int64)
    partner_phase_arr = np.asarray(rows["partner_phase"], dtype=np.int64)
    inputs = {key: np.asarray(rows[key], dtype=np.float32) for key in ("self_windows", "other_windows", "context")
              if keep_inputs}
    return {**inputs,
        "z_self": np.asarray(rows["z_self"], dtype=np.float32),
        "z_other": np.asarray(rows["z_other"], dtype=np.float32),
        "hidden": np.asarray(rows["hidden"], dtype=np.float32),
        "robot_phase": robot_phase,
        "partner_phase": partner_phase_arr,
        "exit_forecast_s": np.asarray(rows["forecast"], dtype=np.float64),
        "time_to_exit_s": tte,
        "stats": {"turns": int(done), "sim_time_s": float(env.t_s), "ticks": int(len(t)),
                  "partner_exits": int(len(exits)),
                  "both_idle_ticks": int(np.sum((robot_phase == idle) & (partner_phase_arr == idle)))},
    }


def record_sessions(policy, partners, turns: int, seed: int, progress: bool = True,
                    keep_inputs: bool = False) -> Recording:
    """One session per partner profile (seeds ``seed``, ``seed + 1``, ...), concatenated."""
    from coop_robot.envs.turn_env import TurnTakingEnv  # noqa: PLC0415

    parts, sessions = [], []
    with _one_torch_thread():
        for k, partner in enumerate(partners):
            env = TurnTakingEnv(partner, seed=seed + k, physics=False)
            wall0 = time.perf_counter()
            step = max(1, turns // 10)

            def show(done: int, t_s: float, partner=partner, wall0=wall0, step=step) -> None:
                if done % step == 0 or done == turns:
                    print(f"  {partner}: turn {done}/{turns} at t={t_s:.1f} s "
                          f"({time.perf_counter() - wall0:.1f} s wall)", flush=True)

            part = record_session(env, policy, turns, seed + k, show if progress else None, keep_inputs)
            env.close()
            stats = part.pop("stats")
            stats.update(partner=str(partner), seed=seed + k, wall_time_s=round(time.perf_counter() - wall0, 2))
            if stats["turns"] < turns:
                print(f"  {partner}: only {stats['turns']} of {turns} turns within {stats['sim_time_s']:.0f} s "
                      "of simulated time", flush=True)
            parts.append(part)
            sessions.append(stats)
    cat = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    session = np.concatenate([np.full(len(p["robot_phase"]), i, dtype=np.int64) for i, p in enumerate(parts)])
    return Recording(session=session, sessions=sessions, **cat)


def checkpoint_summary(info) -> dict:
    """The checkpoint facts the report states."""
    extra = info.extra if isinstance(info.extra, dict) else {}
    return {"checkpoint": str(info.path), "shared_encoder": bool(info.config.shared_encoder),
            "latent_dim": int(info.config.latent_dim), "hidden_dim": int(info.config.hidden_dim),
            "package_version": info.package_version, "training_iteration": extra.get("iteration"),
            "training_seed": extra.get("seed")}


# ============================================================================ analysis
@dataclass
class PolicyAnalysis:
    layers: dict            # layer name -> mirror_units.LayerMirrorResult
    forecast: object        # mirror_units.ForecastErrorTable
    phases: tuple
    meta: dict


def analyze(recording: Recording, n_permutations: int = 200, seed: int = 0,
            gru_tuning: str = "additive") -> PolicyAnalysis:
    """Mirror statistics of both layers (module docstring) and the forecast table of a recording."""
    from coop_robot.analysis import mirror_units as mu  # noqa: PLC0415
    from coop_robot.policy.mirror_net import MIRROR_PHASES  # noqa: PLC0415

    if gru_tuning not in ("additive", "idle"):
        raise ValueError(f"gru_tuning must be 'additive' or 'idle', got {gru_tuning!r}")
    n, idle = len(MIRROR_PHASES), MIRROR_PHASES.index("idle")
    rng = np.random.default_rng([seed, 0x31A])
    r = recording
    layers = {"encoder": mu.mirror_unit_analysis(r.z_self, r.robot_phase, r.z_other, r.partner_phase, n,
                                                 n_permutations, rng, layer="encoder")}
    if gru_tuning == "additive":
        layers["gru"] = mu.mirror_unit_analysis_additive(r.hidden, r.robot_phase, r.partner_phase, n, idle,
                                                         n_permutations, rng, layer="gru")
    else:
        partner_idle, robot_idle = r.partner_phase == idle, r.robot_phase == idle
        layers["gru"] = mu.mirror_unit_analysis(r.hidden[partner_idle], r.robot_phase[partner_idle],
                                                r.hidden[robot_idle], r.partner_phase[robot_idle], n,
                                                n_permutations, rng, layer="gru")
    forecast = mu.forecast_error_by_time_to_exit(r.exit_forecast_s, r.time_to_exit_s)
    meta = {"ticks": r.ticks, "gru_tuning": gru_tuning, "sessions": r.sessions}
    return PolicyAnalysis(layers, forecast, tuple(MIRROR_PHASES), meta)


# ============================================================================ report
def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def format_report(a: PolicyAnalysis, top: int = 5) -> str:
    lines = []
    q = next(iter(a.layers.values())).quantile if a.layers else 0.95
    lines.append(f"Mirror units (index = Pearson r of a unit's self vs other tuning over {', '.join(a.phases)}; "
                 f"mirror = index above the {q:.0%} quantile of shuffled-label indices)")
    lines.append(f"{'layer':<8} {'units':>5} {'flat':>5} {'mean r':>7} {'median r':>8} {'threshold':>9} "
                 f"{'mirror':>7} {'share':>6} {'shuffled':>8} {'p':>7}")
    for name, r in a.layers.items():
        s = r.summary()
        lines.append(f"{name:<8} {s['units']:>5} {s['excluded_flat']:>5} {_f(s['mean_index']):>7} "
                     f"{_f(s['median_index']):>8} {_f(s['threshold']):>9} {s['mirror_units']:>7} "
                     f"{_f(s['mirror_share'], 2):>6} {_f(s['shuffled_share'], 2):>8} {_f(s['p_value'], 4):>7}")
    lines.append("")
    lines.append("Ticks per phase (self = robot performs, other = robot watches the partner)")
    lines.append(f"{'layer':<8} {'condition':<9} " + " ".join(f"{p:>8}" for p in a.phases))
    for name, r in a.layers.items():
        for cond, counts in (("self", r.counts_self), ("other", r.counts_other)):
            lines.append(f"{name:<8} {cond:<9} " + " ".join(f"{int(c):>8}" for c in counts))
    for name, r in a.layers.items():
        order = _top_units(r, top)
        if not order.size:
            continue
        lines.append("")
        lines.append(f"Top {name} units by mirror index (tuning self | other, per phase {'/'.join(a.phases)})")
        for u in order:
            ts = " ".join(f"{v:+.2f}" for v in r.tuning_self[:, u])
            to = " ".join(f"{v:+.2f}" for v in r.tuning_other[:, u])
            lines.append(f"  {name}[{u:>2}] r={r.index[u]:+.3f}{' mirror' if r.mirror[u] else '       '}  "
                         f"self {ts} | other {to}")
    fc = a.forecast
    lines.append("")
    lines.append("Exit forecast error by true time to exit (ticks with the partner inside the zone)")
    lines.append(f"{'time to exit (s)':<17} {'ticks':>6} {'MAE (s)':>8} {'median |e| (s)':>14} {'bias (s)':>9}")
    for b in fc.bins:
        span = f"{b['lo_s']:.2f}-{b['hi_s']:.2f}" if math.isfinite(b["hi_s"]) else f"{b['lo_s']:.2f}+"
        lines.append(f"{span:<17} {b['ticks']:>6} {_f(b['mae_s']):>8} {_f(b['median_abs_error_s']):>14} "
                     f"{_f(b['bias_s']):>9}")
    lines.append(f"{'all':<17} {fc.ticks:>6} {_f(fc.mae_s):>8} {_f(fc.median_abs_error_s):>14} {_f(fc.bias_s):>9}"
                 f"   forecast vs truth r = {_f(fc.correlation)}")
    return "\n".join(lines)


def _top_units(r, k: int) -> np.ndarray:
    finite = np.flatnonzero(np.isfinite(r.index))
    return finite[np.argsort(-r.index[finite], kind="stable")][:k]


def summary_dict(a: PolicyAnalysis) -> dict:
    return {**a.meta, "phases": list(a.phases),
            "layers": {name: r.summary() for name, r in a.layers.items()},
            "forecast": a.forecast.summary()}


# ============================================================================ files and plots
def write_units_csv(path: Path, a: PolicyAnalysis) -> None:
    cols = (["layer", "unit", "mirror_index", "mirror", "excluded_flat", "preferred_phase_self",
             "preferred_phase_other"] + [f"self_{p}" for p in a.phases] + [f"other_{p}" for p in a.phases])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for name, r in a.layers.items():
            for u in range(r.n_units):
                def pref(t, u=u):
                    col = t[:, u]
                    return a.phases[int(np.nanargmax(col))] if np.isfinite(col).any() else ""
                w.writerow([name, u, "" if not math.isfinite(r.index[u]) else f"{r.index[u]:.6f}", int(r.mirror[u]),
                            int(r.excluded[u]), pref(r.tuning_self), pref(r.tuning_other)]
                           + [f"{v:.6g}" for v in r.tuning_self[:, u]] + [f"{v:.6g}" for v in r.tuning_other[:, u]])


def write_outputs(a: PolicyAnalysis, recording: Recording, out_dir: Path, top_units: int = 6) -> list[Path]:
    """Write the CSV, the JSON summary and the three plots into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / UNITS_CSV, out_dir / SUMMARY_JSON, out_dir / HIST_PNG, out_dir / TUNING_PNG,
             out_dir / FORECAST_PNG]
    write_units_csv(paths[0], a)
    paths[1].write_text(json.dumps(json_safe(summary_dict(a)), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    _plot_histograms(plt, a, paths[2])
    _plot_tuning(plt, a, paths[3], top_units)
    _plot_forecast(plt, a, recording, paths[4])
    return paths


def _plot_histograms(plt, a: PolicyAnalysis, path: Path) -> None:
    fig, axes = plt.subplots(1, len(a.layers), figsize=(5 * len(a.layers), 3.8), squeeze=False)
    bins = np.linspace(-1.0, 1.0, 21)
    for ax, (name, r) in zip(axes[0], a.layers.items()):
        obs = r.index[np.isfinite(r.index)]
        null = r.null_index[np.isfinite(r.null_index)]
        if obs.size:
            ax.hist(obs, bins=bins, density=True, alpha=0.6, label=f"units (n={obs.size})")
        else:
            ax.text(0.5, 0.5, "no unit has an index\n(phases missing)", ha="center", va="center",
                    transform=ax.transAxes)
        if null.size:
            ax.hist(null, bins=bins, density=True, histtype="step", color="k", label="shuffled labels")
        if math.isfinite(r.threshold):
            ax.axvline(r.threshold, color="r", linestyle="--", label=f"threshold {r.threshold:.2f}")
        ax.set_title(f"{name}: mirror share {_f(r.share, 2)} (shuffled {_f(r.shuffled_share, 2)}, "
                     f"p={_f(r.p_value, 3)})", fontsize=9)
        ax.set_xlabel("mirror index (r, self vs other tuning)")
        ax.set_ylabel("density")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_tuning(plt, a: PolicyAnalysis, path: Path, top_units: int) -> None:
    n_cols = max(1, top_units)
    fig, axes = plt.subplots(len(a.layers), n_cols, figsize=(2.2 * n_cols, 2.4 * len(a.layers)), squeeze=False)
    x = np.arange(len(a.phases))
    for row, (name, r) in zip(axes, a.layers.items()):
        units = _top_units(r, top_units)
        for ax in row:
            ax.set_xticks(x)
            ax.set_xticklabels(a.phases, fontsize=7, rotation=30)
        for ax, u in zip(row, units):
            ax.plot(x, r.tuning_self[:, u], "o-", label="self (robot acts)")
            ax.plot(x, r.tuning_other[:, u], "s--", label="other (robot watches)")
            ax.set_title(f"{name}[{u}] r={r.index[u]:+.2f}", fontsize=8)
        for ax in row[len(units):]:
            ax.set_visible(False)
        row[0].set_ylabel("mean activity", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_forecast(plt, a: PolicyAnalysis, recording: Recording, path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ok = np.isfinite(recording.time_to_exit_s) & np.isfinite(recording.exit_forecast_s)
    t, f = recording.time_to_exit_s[ok], recording.exit_forecast_s[ok]
    ax1.scatter(t, f, s=3, alpha=0.3)
    top = float(max(t.max(initial=1.0), f.max(initial=1.0)))
    ax1.plot([0, top], [0, top], "k--", linewidth=1)
    ax1.set_xlabel("true time to exit (s)")
    ax1.set_ylabel("exit forecast (s)")
    ax1.set_title(f"forecast vs truth (r = {_f(a.forecast.correlation)})", fontsize=9)
    labels = [f"{b['lo_s']:g}-{b['hi_s']:g}" if math.isfinite(b["hi_s"]) else f"{b['lo_s']:g}+"
              for b in a.forecast.bins]
    xb = np.arange(len(labels))
    ax2.bar(xb - 0.2, [b["mae_s"] for b in a.forecast.bins], width=0.4, label="MAE")
    ax2.bar(xb + 0.2, [b["median_abs_error_s"] for b in a.forecast.bins], width=0.4, label="median |error|")
    ax2.set_xticks(xb)
    ax2.set_xticklabels(labels)
    ax2.set_xlabel("true time to exit (s)")
    ax2.set_ylabel("forecast error (s)")
    ax2.set_title("exit forecast error as the exit approaches", fontsize=9)
    ax2.invert_xaxis()  # read left to right as the exit comes closer
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    """Run as ``python -m coop_robot.analysis.policy_analysis`` (same options as the subcommand)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.strip().splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

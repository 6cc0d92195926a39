"""The ``mirror`` policy: the mirror network (:mod:`coop_robot.policy.mirror_net`) run once per tick.

Each tick the policy appends the robot end effector and the perceived partner hand, expressed in
their own egocentric frames, to rolling windows, steps the network's GRU (its state is kept
between ticks and cleared by :meth:`MirrorPolicy.reset`) and turns the act head into a decision:

* at ``home``: "act" when the robot's turn is due (base-class bookkeeping: the partner has been
  perceived in the zone since the robot last acted) and P(act) >= ``act_threshold``. The network
  may say "act" while the partner is still inside -- that is its anticipation: the controller
  starts the reach, goes no farther than its waiting point (S_p kept for a hand anywhere in the
  zone) while the partner is inside, and goes on once the zone is perceived clear;
* ``reaching`` / ``acting``: keep "act" until P(act) drops below ``release_threshold``, then
  "wait" (the controller aborts a reach that is not yet committed);
* any other state: "wait".

The exit forecast is reported while the partner is perceived in the zone (NaN otherwise).
``yields_to_partner`` is False: it may say "act" while the partner is still inside (anticipation);
the controller then waits at its waiting point and goes on only once the partner is perceived out,
so the base class's "yield" would only make the arm churn.

The windows are rows on the checkpoint's time grid (``obs_spec.tick_rate_hz``, 50 Hz), built from
the observations' times, not counted in ticks: a late or irregular tick adds the rows it missed,
an early one none, so a busy machine changes when the decisions come, not what the network sees
(``test_policy_tick_rate``). What the policy node must provide in
:class:`~coop_robot.policy.base.Observation`, once per tick (best at the trained rate, the node's
``rate_hz``): ``partner_hand_m`` and
``partner_velocity_mps`` (NaN when not detected / unknown; a missing velocity is estimated by
finite differences), ``robot_state`` and ``robot_ee_m`` -- the EE (panda_grasptarget) in
``world``, e.g. from ``PandaKinematics.ee_position`` on /joint_states. A NaN ``robot_ee_m``
marks the robot's own window invalid: the network then runs on the partner alone.

Geometry: the egocentric origins are the cell's -- the robot's EE at home (forward kinematics of
``robot_home_joint_positions_rad`` with the base at ``robot_base_m``) and the partner's rest point
``partner_rest_m`` -- all from ``config/world.yaml`` unless given (a lab sets them there or as
policy node parameters). For the default cell they are what the shipped checkpoint was trained
with (test_mirror_net pins it).

torch is imported when a MirrorPolicy is built, not when this module is imported; building one
sets torch's thread count (:func:`coop_robot.policy.threads.configure_torch_threads`).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import deque
from pathlib import Path

import numpy as np

from coop_robot.control.kinematics import PandaKinematics
from coop_robot.geometry import Zone, world_geometry
from coop_robot.policy.base import Decision, Observation, Policy, PolicyError, register
from coop_robot.policy.threads import configure_torch_threads

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "mirror.pt"
DEFAULT_ACT_THRESHOLD = 0.5
DEFAULT_RELEASE_THRESHOLD = 0.2
#: What runs the network each tick (:class:`MirrorPolicy`'s ``engine``).
ENGINES = ("torch", "numpy")


def robot_home_ee_m(robot_home_joint_positions_rad, robot_base_m) -> tuple[float, float, float]:
    """The robot's egocentric origin: its EE (panda_grasptarget) in ``world`` (m) at the home joints."""
    ee = PandaKinematics(base_m=robot_base_m).ee_position(np.asarray(robot_home_joint_positions_rad, dtype=float))
    return tuple(float(v) for v in ee)


# The default cell: config/world.yaml.
DEFAULT_ZONE_MIN_M = world_geometry().zone_min_m
DEFAULT_ZONE_MAX_M = world_geometry().zone_max_m
DEFAULT_ROBOT_HOME_EE_M = robot_home_ee_m(world_geometry().robot_home_joint_positions_rad,
                                          world_geometry().robot_base_m)
DEFAULT_PARTNER_REST_M = world_geometry().partner_rest_m

_TRAIN_HINT = ("train one with `coop-robot train --out DIR` (docs/mirror_policy.md) or pass "
               "the policy parameter checkpoint:=/path/to/mirror.pt")


@register("mirror")
class MirrorPolicy(Policy):
    name = "mirror"
    yields_to_partner = False  # anticipates: the controller's waiting point keeps the arm out
    #: The shipped checkpoint of this policy's task (``checkpoint`` None or '').
    default_checkpoint = DEFAULT_CHECKPOINT
    _train_hint = _TRAIN_HINT

    def __init__(self, checkpoint: str | Path | None = None, act_threshold: float = DEFAULT_ACT_THRESHOLD,
                 release_threshold: float = DEFAULT_RELEASE_THRESHOLD, stale_after_s: float = 0.5,
                 zone_min_m=DEFAULT_ZONE_MIN_M, zone_max_m=DEFAULT_ZONE_MAX_M,
                 robot_home_joint_positions_rad=None, robot_base_m=None,
                 partner_rest_m=DEFAULT_PARTNER_REST_M, torch_threads: int | None = None,
                 engine: str = "torch") -> None:
        """``robot_home_joint_positions_rad`` / ``robot_base_m`` (None: world.yaml's) place the robot's
        egocentric origin; ``torch_threads`` goes to :func:`configure_torch_threads` (None: 1 or
        ``$COOP_ROBOT_TORCH_THREADS``). ``engine``: what runs the network each tick -- ``torch``
        (``self.net`` itself: training, analyses and lesions replace or hook it) or ``numpy``
        (:class:`~coop_robot.policy.numpy_net.NumpyMirrorStep`, a copy of the loaded weights taken
        now, the same outputs within float32 rounding at a fraction of the CPU: what a deployed
        node runs)."""
        if engine not in ENGINES:
            raise PolicyError(f"mirror engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        for name, value in (("act_threshold", act_threshold), ("release_threshold", release_threshold)):
            if not (math.isfinite(value) and 0.0 < value < 1.0):
                raise PolicyError(f"{name} must be a probability in (0, 1), got {value!r}")
        if release_threshold > act_threshold:
            raise PolicyError(f"release_threshold ({release_threshold}) must not exceed act_threshold "
                              f"({act_threshold})")
        self.act_threshold = float(act_threshold)
        self.release_threshold = float(release_threshold)
        world = world_geometry()
        home_q = world.robot_home_joint_positions_rad if robot_home_joint_positions_rad is None \
            else robot_home_joint_positions_rad
        base = world.robot_base_m if robot_base_m is None else robot_base_m
        try:
            self.zone = Zone.from_lists(zone_min_m, zone_max_m)
            if np.asarray(home_q, dtype=float).shape != (7,):
                raise ValueError(f"robot_home_joint_positions_rad must be 7 joint positions (rad), got {home_q!r}")
            self.robot_home_m = np.asarray(robot_home_ee_m(home_q, base), dtype=float)
            self.partner_rest_m = np.asarray(partner_rest_m, dtype=float)
        except (ValueError, TypeError) as exc:
            raise PolicyError(f"bad mirror geometry: {exc}") from exc
        try:
            self.torch_threads = configure_torch_threads(torch_threads)
        except ValueError as exc:
            raise PolicyError(str(exc)) from exc

        import torch  # noqa: PLC0415 -- lazy: importing coop_robot.policy must not need torch

        from coop_robot.policy import mirror_net  # noqa: PLC0415

        self._torch = torch
        self._mn = mirror_net
        self.checkpoint = Path(checkpoint) if checkpoint else self.default_checkpoint
        if not self.checkpoint.is_file():
            raise mirror_net.CheckpointError(f"mirror checkpoint {self.checkpoint} does not exist; {self._train_hint}")
        self.net, self.info = mirror_net.load_checkpoint(
            self.checkpoint, expected_spec=mirror_net.ObservationSpec.for_task(self.task), task=self.task)
        self.spec = self.info.obs_spec
        self._numpy_net = None
        if engine == "numpy":
            from coop_robot.policy.numpy_net import NumpyMirrorStep  # noqa: PLC0415

            self._numpy_net = NumpyMirrorStep(self.net)
            self._numpy_source = self.net
        # Build the frames now, which validates them (an origin above the zone centre has no
        # heading); the ticks reuse them (building them was a sixth of a tick's CPU time).
        self._frames: dict[str, tuple] = {}
        try:
            self._frame("self", self.robot_home_m)
            self._frame("other", self.partner_rest_m)
        except ValueError as exc:
            raise PolicyError(f"bad mirror geometry: {exc}") from exc
        super().__init__(stale_after_s)

    def _frame(self, which: str, origin_m: np.ndarray):
        """The egocentric frame of ``origin_m`` facing the zone, built once and rebuilt only when
        the origin or the zone is replaced (the same frame :func:`mirror_net.egocentric_features` builds)."""
        return self._cached_frame(which, origin_m)[2]

    def _row(self, which: str, origin_m: np.ndarray):
        """The one-row feature builder (:class:`mirror_net.EgocentricRow`) of :meth:`_frame`'s frame."""
        return self._cached_frame(which, origin_m)[3]

    def _cached_frame(self, which: str, origin_m: np.ndarray) -> tuple:
        cached = self._frames.get(which)
        if cached is None or cached[1] is not self.zone or not np.array_equal(cached[0], origin_m):
            frame = self._mn.EgocentricFrame.facing_zone(origin_m, self.zone)
            cached = self._frames[which] = (np.array(origin_m, dtype=float), self.zone, frame,
                                            self._mn.EgocentricRow(frame, self.zone))
        return cached

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        super().reset()
        w, f = self.spec.window_steps, len(self.spec.feature_names)
        # Zero rows = "not observed yet" (valid flag 0), the same padding the training data uses.
        self._self_window = np.zeros((w, f), dtype=np.float32)
        self._other_window = np.zeros((w, f), dtype=np.float32)
        self._hidden = None
        self._prev_t_s = math.nan
        self._prev_ee_m = np.full(3, np.nan)
        self._prev_hand_m = np.full(3, np.nan)
        self._last_in_zone: bool | None = None
        self._enter_s = math.nan
        self._exit_s = math.nan
        self._tick_dts: deque[float] = deque(maxlen=50)
        self._rate_warned = False
        self._stepped_this_tick = False
        self._grid_t_s = math.nan
        self._prev_age_s = math.inf
        self._prev_context: tuple = ("unknown", False, None)
        #: Network steps taken (one per grid row) and grid restarts after a gap longer than a window.
        self.network_steps = 0
        self.grid_restarts = 0
        self.last_outputs: dict[str, float] = {}

    @property
    def p_act(self) -> float:
        """Probability of "act" from the last network step (NaN before the first)."""
        return self.last_outputs.get("p_act", math.nan)

    # ------------------------------------------------------------------ per tick
    def step(self, obs: Observation) -> Decision:
        self._stepped_this_tick = False
        decision = super().step(obs)           # bookkeeping; calls decide() on fresh perception
        if not self._stepped_this_tick:        # stale or "yield": still advance the recurrent state
            self._advance(obs)
        return decision

    def decide(self, obs: Observation) -> Decision:
        out = self._advance(obs)
        forecast = out["exit_forecast_s"] if obs.partner_in_zone else math.nan
        p = out["p_act"]
        if obs.robot_state == "home":
            action = "act" if self.robot_turn_due and p >= self.act_threshold else "wait"
        elif obs.robot_state in ("reaching", "acting"):
            action = "act" if p >= self.release_threshold else "wait"
        else:
            action = "wait"
        return Decision(action, forecast)

    def _advance(self, obs: Observation) -> dict[str, float]:
        """Bring the windows and the network up to this tick's time on the trained grid.

        The windows hold one row per ``1 / obs_spec.tick_rate_hz`` of graph time, whatever the
        rate the ticks arrive at: a tick that comes late (a busy machine, a 30 Hz timer) adds the
        rows it missed, its position interpolated between the previous tick and this one, and steps
        the network once per row; a tick that comes early (less than half a grid step since the
        last row) adds nothing and keeps the last outputs. So the network sees the time scale it
        was trained on. A gap longer than a window (``window_steps`` rows) restarts the grid at this
        tick after refilling the window."""
        self._stepped_this_tick = True
        t = float(obs.t_s)
        dt = t - self._prev_t_s if math.isfinite(self._prev_t_s) else math.nan
        self._check_rate(dt)
        period = 1.0 / self.spec.tick_rate_hz
        if math.isfinite(self._grid_t_s) and math.isfinite(dt) and dt > 0:
            # Half a grid step (or less) since the last row: nothing new yet.
            steps = math.floor((t - self._grid_t_s) / period + 0.5 - 1e-6)
        elif math.isfinite(self._grid_t_s):
            steps = 0                       # the same (or an older) time again: nothing new
        else:
            steps = 1                       # the first tick
        if steps <= 0 and self.last_outputs:
            return self.last_outputs
        steps = max(steps, 1)
        catch_up = min(steps, self.spec.window_steps)
        if catch_up < steps:
            self.grid_restarts += 1

        ee = np.asarray(obs.robot_ee_m, dtype=float).reshape(3)
        hand = np.asarray(obs.partner_hand_m, dtype=float).reshape(3)
        hand_vel = np.asarray(obs.partner_velocity_mps, dtype=float).reshape(3)
        ee_vel = self._finite_difference(ee, self._prev_ee_m, dt)
        if not np.all(np.isfinite(hand_vel)):
            hand_vel = self._finite_difference(hand, self._prev_hand_m, dt)
        for k in range(catch_up):
            last = k == catch_up - 1
            if last:
                self._note_zone_transition(obs.partner_in_zone, t)
                t_row, ee_row, hand_row, age = t, ee, hand, obs.perception_age_s
                context = self._tick_context(obs)
            else:
                # A row the late tick missed: the grid time, positions interpolated since the last
                # tick, the task context as it was then.
                t_row = t - (catch_up - 1 - k) * period
                a = min(max((t_row - self._prev_t_s) / dt, 0.0), 1.0)
                ee_row = self._prev_ee_m + a * (ee - self._prev_ee_m)
                hand_row = self._prev_hand_m + a * (hand - self._prev_hand_m)
                age = self._prev_age_s + (t_row - self._prev_t_s)
                context = self._prev_context
            self._push(self._self_window, self._row("self", self.robot_home_m)(ee_row, ee_vel))
            self._push(self._other_window, self._row("other", self.partner_rest_m)(hand_row, hand_vel))
            ctx = self._context_vector(context, t_row, age)
            outputs = self._network_step(ctx)
            self.network_steps += 1
        self.last_outputs = outputs
        self._grid_t_s = t if catch_up < steps or not math.isfinite(self._grid_t_s) else self._grid_t_s + steps * period
        self._prev_t_s = t
        self._prev_ee_m = ee
        self._prev_hand_m = hand
        self._prev_age_s = float(obs.perception_age_s)
        self._prev_context = self._tick_context(obs)
        return self.last_outputs

    def _network_step(self, ctx: np.ndarray) -> dict[str, float]:
        """One network step on the current windows and ``ctx``, carrying the recurrent state."""
        if self._numpy_net is not None:
            if self.net is not self._numpy_source:
                raise PolicyError("the mirror policy's network was replaced after its NumPy copy was taken "
                                  "(engine='numpy'); build the policy with engine='torch' to run a changed network")
            out, self._hidden = self._numpy_net.step(self._self_window, self._other_window, ctx, self._hidden)
            return out
        torch = self._torch
        with torch.inference_mode():
            out, self._hidden = self.net.step(torch.from_numpy(self._self_window)[None],
                                              torch.from_numpy(self._other_window)[None],
                                              torch.from_numpy(ctx)[None], self._hidden)
        return {
            "p_act": float(torch.sigmoid(out["act_logit"][0])),
            "exit_forecast_s": float(out["exit_forecast_s"][0]),
            "exit_log_var": float(out["exit_log_var"][0]),
            "value": float(out["value"][0]),
        }

    def _tick_context(self, obs: Observation) -> tuple:
        """What the task context of this tick is made of (kept for the rows a late tick missed)."""
        return (obs.robot_state, self.robot_turn_due, obs.partner_in_zone)

    def _context_vector(self, context: tuple, t_row: float, age_s: float) -> np.ndarray:
        """The network's task context for a row at ``t_row`` (:func:`mirror_net.task_context`)."""
        state, due, in_zone = context
        return self._mn.task_context(state, due, in_zone, t_row - self._enter_s, t_row - self._exit_s, age_s,
                                     self.spec.time_horizon_s, self.spec.perception_age_horizon_s)

    def _note_zone_transition(self, in_zone: bool | None, t: float) -> None:
        if in_zone is not None and in_zone != self._last_in_zone:
            if in_zone:
                self._enter_s = t
            elif self._last_in_zone:          # True -> False: an exit (None -> False is not)
                self._exit_s = t
            self._last_in_zone = in_zone

    @staticmethod
    def _push(window: np.ndarray, row: np.ndarray) -> None:
        window[:-1] = window[1:]
        window[-1] = row

    @staticmethod
    def _finite_difference(p: np.ndarray, prev: np.ndarray, dt: float) -> np.ndarray:
        if math.isfinite(dt) and dt > 0 and np.all(np.isfinite(p)) and np.all(np.isfinite(prev)):
            return (p - prev) / dt
        return np.full(3, np.nan)  # egocentric_features counts unknown velocity as zero

    def _check_rate(self, dt: float) -> None:
        """Warn once when ticks come at another rate than the network was trained for: the windows
        are resampled to the trained rate (:meth:`_advance`), but a slower tick still means later
        decisions, and a faster one wasted work."""
        if not (math.isfinite(dt) and dt > 0) or self._rate_warned:
            return
        self._tick_dts.append(dt)
        if len(self._tick_dts) == self._tick_dts.maxlen:
            rate = 1.0 / float(statistics.median(self._tick_dts))  # np.median's value, a tenth of its time
            trained = self.spec.tick_rate_hz
            if abs(rate - trained) > 0.25 * trained:
                self._rate_warned = True
                consequence = (f"decisions come only every {1e3 / rate:.0f} ms (is the machine keeping up?)"
                               if rate < trained else "ticks between grid steps reuse the last step")
                warnings.warn(f"mirror policy ticks at ~{rate:.1f} Hz; {self.checkpoint.name} was trained for "
                              f"{trained:.1f} Hz: its windows are resampled to {trained:.1f} Hz from the tick "
                              f"times, and {consequence}", RuntimeWarning, stacklevel=3)

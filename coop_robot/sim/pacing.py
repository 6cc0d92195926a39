"""When the simulation steps and what it publishes then (no ROS): real-time pacing, perception
sync and the output schedule of the ``coop_sim`` node.

All times are plain seconds: ``sim_t_s`` is physics time, ``wall_s`` a monotonic wall clock the
caller reads (``time.monotonic()`` in the node, made-up values in the tests).

Pacing: the sim may run ``real_time_factor`` simulated seconds per wall second from an anchor
(0 = as fast as possible). With perception sync it may also run no more than
``max_perception_lag_s`` ahead of the newest perceived hand stamp, so perception sees every
phase of a reach even when the sim outruns it; at start-up, before perception (and, with
``startup_waits_for_policy``, the policy) has answered, it advances one camera frame per
:data:`SYNC_STALL_S` for at most ``perception_startup_wait_s``;
when perception goes quiet for ``perception_timeout_s`` the sim carries on alone until it
answers again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Wall-clock period of the node's stepping loop (s). Each tick advances the physics as far as
#: pacing allows, so this only sets the latency of command handling and the burstiness of output.
TICK_PERIOD_S = 0.005
#: Longest one tick may keep stepping (wall s) before yielding to subscriptions and Ctrl-C.
TICK_BUDGET_S = 0.05
#: Perception sync: when held back this long (wall s) with no newer perceived hand, assume the
#: frame perception needed was dropped and release the next camera frame.
SYNC_STALL_S = 0.3
#: When the sim falls this far behind its pacing target (sim s), it re-anchors instead of
#: bursting to catch up (e.g. after being held back by perception sync or a busy CPU).
MAX_CATCH_UP_S = 0.1
#: Perception sync ignores a perceived hand stamped further than this ahead of the sim's own time
#: (sim s): the sim stamps no camera frame after its own time, so only a spoofed message or one on
#: another clock can be ahead (half a physics step at the highest physics rate).
MAX_PERCEPTION_STAMP_LEAD_S = 2.5e-4
#: Slack for comparing sums of physics steps with a limit (s).
_EPS_S = 1e-9

#: :meth:`SimPacer.take_events` names: perception sync stopped holding the sim back because ...
STARTUP_WAIT_EXPIRED = "startup_wait_expired"   # ... no hand arrived within the start-up wait
PERCEPTION_TIMED_OUT = "perception_timed_out"   # ... no hand arrived for perception_timeout_s
#: ... and, after start-up, released a camera frame because perception had not answered the
#: frames before it for SYNC_STALL_S (a frame lost on the way, or dropped by perception).
FRAME_RELEASED = "frame_released"


@dataclass(frozen=True)
class PacingConfig:
    """The sim's pacing parameters; the defaults are ``config/sim.yaml``'s (and the node's)."""

    real_time_factor: float = 2.0          # simulated s per wall s; 0 = as fast as possible
    perception_sync: bool = True
    max_perception_lag_s: float = 0.05     # sim s ahead of the newest perceived hand stamp
    perception_startup_wait_s: float = 10.0  # wall s of frame-by-frame start-up; 0 = none
    startup_waits_for_policy: bool = True  # the start-up also lasts until the policy has decided once
    perception_timeout_s: float = 2.0      # wall s of perception silence before running alone
    camera_period_s: float = 1.0 / 30.0    # sim s between camera frames (a stall releases one)

    def __post_init__(self) -> None:
        check_real_time_factor(self.real_time_factor)
        for name in ("max_perception_lag_s", "perception_startup_wait_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("perception_timeout_s", "camera_period_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_real_time_factor(value) -> float:
    """``value`` as a real-time factor (a number in [0, 100]) or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 100.0:
        raise ValueError(f"real_time_factor must be a number in [0, 100], got {value!r}")
    return float(value)


class SimPacer:
    """How far the simulation may advance at a given wall time."""

    def __init__(self, config: PacingConfig, wall_s: float, sim_t_s: float = 0.0) -> None:
        self.config = config
        self.real_time_factor = config.real_time_factor
        self._start_wall_s = wall_s
        self._wall_anchor_s, self._sim_anchor_s = wall_s, sim_t_s
        self.newest_perception_s: float | None = None   # newest perceived hand stamp (sim s)
        self._perception_wall_s = wall_s                  # when perception last answered (wall s)
        self._release_s = sim_t_s                         # stall release: sim may reach this
        self._release_wall_s = -math.inf
        self.ignoring_perception = False                  # sync gave up until perception answers
        self.policy_ready = False                         # the policy has published a decision
        self._started = False                             # start-up over (both heard, or waited out)
        self._events: list[str] = []
        self.frames_released = 0                          # stall releases after start-up
        self._future_stamp: tuple[float, float] | None = None

    # ------------------------------------------------------------------ inputs
    def set_real_time_factor(self, value: float, sim_t_s: float, wall_s: float) -> None:
        """Change the pace from now on (re-anchored: no jump or burst)."""
        self.real_time_factor = check_real_time_factor(value)
        self._sim_anchor_s, self._wall_anchor_s = sim_t_s, wall_s

    def perception_heard(self, stamp_s: float, wall_s: float, sim_t_s: float) -> bool:
        """Perception published a hand with ``stamp_s`` (sim s) while the sim is at ``sim_t_s``.
        True when this ends a period in which perception sync had given up (the caller may say so).

        Perception stamps a hand with the camera frame it saw, and this sim stamps no frame after
        its own time: a stamp further ahead than :data:`MAX_PERCEPTION_STAMP_LEAD_S` is spoofed or
        on another clock. It is not heard at all (:meth:`take_future_stamp` reports it): taken as
        the newest, it would let the sim run that far ahead of what perception has really seen,
        for the rest of the session, since an older stamp never moves the limit back."""
        if not math.isfinite(stamp_s) or stamp_s > sim_t_s + MAX_PERCEPTION_STAMP_LEAD_S:
            self._future_stamp = (stamp_s, sim_t_s)
            return False
        if self.newest_perception_s is None or stamp_s > self.newest_perception_s:
            self.newest_perception_s = stamp_s   # an older or repeated stamp never moves it back
        self._perception_wall_s = wall_s
        resumed, self.ignoring_perception = self.ignoring_perception, False
        return resumed

    def policy_heard(self) -> None:
        """The policy published a decision: with ``startup_waits_for_policy``, the start-up hold may end."""
        self.policy_ready = True

    def take_future_stamp(self) -> tuple[float, float] | None:
        """The newest ignored ``(stamp_s, sim_t_s)`` stamped ahead of the sim since the last call."""
        future, self._future_stamp = self._future_stamp, None
        return future

    def take_events(self) -> list[str]:
        """What happened since the last call (:data:`STARTUP_WAIT_EXPIRED`, :data:`PERCEPTION_TIMED_OUT`,
        :data:`FRAME_RELEASED`)."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ decisions
    def limit_s(self, sim_t_s: float, dt_s: float, wall_s: float) -> float:
        """The sim time the physics may advance to at ``wall_s``: pacing, then perception sync."""
        limit = math.inf
        if self.real_time_factor > 0.0:
            limit = self._sim_anchor_s + (wall_s - self._wall_anchor_s) * self.real_time_factor
        if self.config.perception_sync:
            limit = min(limit, self._perception_limit_s(sim_t_s, dt_s, wall_s))
        return limit

    def may_step(self, sim_t_s: float, dt_s: float, wall_s: float) -> bool:
        """May the physics take one more step of ``dt_s`` now?"""
        return sim_t_s + dt_s <= self.limit_s(sim_t_s, dt_s, wall_s) + _EPS_S

    def end_tick(self, sim_t_s: float, wall_s: float) -> None:
        """After a tick: when the sim fell more than :data:`MAX_CATCH_UP_S` behind its pace (held
        back, slow CPU), pace from here instead of bursting to catch up."""
        if self.real_time_factor > 0.0:
            target = self._sim_anchor_s + (wall_s - self._wall_anchor_s) * self.real_time_factor
            if target - sim_t_s > MAX_CATCH_UP_S:
                self._sim_anchor_s, self._wall_anchor_s = sim_t_s, wall_s

    def _perception_limit_s(self, sim_t_s: float, dt_s: float, wall_s: float) -> float:
        cfg = self.config
        if self.ignoring_perception:
            return math.inf
        if not self._started and self.newest_perception_s is not None \
                and (self.policy_ready or not cfg.startup_waits_for_policy):
            self._started = True
        if not self._started:
            # Start-up: the other nodes are still starting. Frame by frame (stall releases below)
            # so that perception -- and the policy, which loads a network -- see the partner's
            # first turn, but only for the start-up wait.
            if wall_s - self._start_wall_s > cfg.perception_startup_wait_s:
                self._started = True
                return self._give_up(STARTUP_WAIT_EXPIRED)
            perception_limit = -math.inf
        else:
            if wall_s - self._perception_wall_s > cfg.perception_timeout_s:
                return self._give_up(PERCEPTION_TIMED_OUT)
            perception_limit = self.newest_perception_s + cfg.max_perception_lag_s
        if (sim_t_s + dt_s > perception_limit + _EPS_S
                and wall_s - max(self._perception_wall_s, self._release_wall_s) > SYNC_STALL_S):
            # Held back and perception answered nothing for a while: the frame it needed was
            # lost (best-effort images) or it is not up yet. Let the next frame out.
            self._release_s, self._release_wall_s = sim_t_s + cfg.camera_period_s, wall_s
            if self._started:
                self.frames_released += 1
                self._events.append(FRAME_RELEASED)
        return max(perception_limit, self._release_s)

    def _give_up(self, event: str) -> float:
        self.ignoring_perception = True
        self._events.append(event)
        return math.inf


@dataclass
class Due:
    """What to publish at one physics time (the clock always precedes stamped data)."""

    clock: bool
    joint_state: bool
    camera: bool


class OutputSchedule:
    """Each output on its own fixed grid of sim time; a missed slot is skipped, never burst."""

    def __init__(self, clock_period_s: float, joint_state_period_s: float, camera_period_s: float) -> None:
        for name, value in (("clock_period_s", clock_period_s), ("joint_state_period_s", joint_state_period_s),
                            ("camera_period_s", camera_period_s)):
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        self._periods = {"clock": clock_period_s, "joint_state": joint_state_period_s, "camera": camera_period_s}
        self._next = dict.fromkeys(self._periods, 0.0)   # everything is due at t = 0

    def due(self, t_s: float) -> Due:
        """What is due at ``t_s``; advances the grids of what is."""
        is_due = {name: t_s >= next_s - _EPS_S for name, next_s in self._next.items()}
        # Receivers on sim time never see data stamped ahead of their clock.
        is_due["clock"] = any(is_due.values())
        for name, flag in is_due.items():
            if flag:
                self._next[name] = next_due(self._next[name], self._periods[name], t_s)
        return Due(**is_due)


def next_due(previous_due_s: float, period_s: float, now_s: float) -> float:
    """Next slot on a fixed grid after ``now_s``; skips missed slots instead of bursting."""
    due = previous_due_s + period_s
    return due if due > now_s else now_s + period_s

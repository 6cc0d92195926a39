"""The controller core driving the PyBullet arm with its moves delivered late (no ROS).

On the loaded 2-core fault campaign host the controller's trajectories reached the simulated arm
0.1-0.2 s of sim time after their stamps, joint states were up to 80 ms old and perception often
more than 0.1 s old. :func:`late_delivery_session` reproduces that without the graph: the
controller core (:class:`~coop_robot.control.controller.ArmController`) ticks every 10 ms of sim
time against :class:`~coop_robot.sim.core.InteractionSim` (the arm's trajectory executor runs stamped
moves on their stamp's timeline, zero-stamped ones on receipt), with the partner at rest outside
the zone and the policy saying "act" throughout. Used by ``test/test_fault_findings.py`` and
``bench/late_delivery.py``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np

#: The controller's tick in these sessions (s of sim time).
TICK_S = 0.01


class RestingPartner:
    """A partner at rest outside the zone (the sim's partner interface)."""

    def __init__(self) -> None:
        from coop_robot.geometry import world_geometry

        self.rest = np.asarray(world_geometry().partner_rest_m, dtype=float)

    def step(self, t_s, robot_in_zone, *, contact=False):
        return self.rest.copy()


def late_delivery_session(seed: int, seconds: float, delay_s: float,
                          perception_stamp: Callable[[float, np.random.Generator], float],
                          joint_age_s: float = 0.08, fallback: bool = False) -> dict:
    """One session of ``seconds`` (sim s). Each move reaches the arm ``delay_s`` x U(0.5, 1.5)
    after it is sent; each joint state is U(0, ``joint_age_s``) old (never older than one already
    used); ``perception_stamp(t, rng)`` is the stamp of the newest perception at tick ``t``.
    ``fallback``: every "act" is the policy's liveness fallback.

    Returns the turns acted (``act_start``), reaches aborted, tracking losses ("arm not following
    its commands"), reaches taken up again from rest, the moves the arm refused (their messages),
    the peak joint speed over its limit and the controller's final state."""
    from coop_robot.control.controller import ArmController, ControllerInputs
    from coop_robot.sim.core import InteractionSim, world_config_from_params
    from coop_robot.sim.trajectory import TrajectoryRejected
    from coop_robot.sim.world import SimWorld

    rng = np.random.default_rng(seed)
    world = SimWorld(world_config_from_params())
    partner = RestingPartner()
    sim = InteractionSim(world, partner)
    core = ArmController()
    queue, history, warnings, refused, events = [], [], [], [], collections.Counter()
    peak, next_tick, newest = 0.0, 0.0, 0
    try:
        while sim.t_s < seconds:
            sim.step()
            t = sim.t_s
            q, qd = world.arm_state()
            history.append((t, q.copy()))
            peak = max(peak, float(np.max(np.abs(qd) / core.limits.velocity_rad_s)))
            for item in [x for x in queue if x[0] <= t + 1e-9]:
                queue.remove(item)
                try:
                    sim.command_trajectory(core.config.joint_names, item[2], item[1])
                except TrajectoryRejected as e:
                    refused.append(str(e))
            if t + 1e-9 < next_tick:
                continue
            next_tick += TICK_S
            newest = max(newest, len(history) - 1 - int(round(rng.uniform(0.0, joint_age_s) / sim.dt_s)))
            stamp, q_seen = history[newest]
            out = core.update(t, ControllerInputs("act", False, perception_stamp(t, rng), q_seen.copy(),
                                                  joint_stamp_s=stamp, partner_hand_m=partner.rest,
                                                  partner_velocity_mps=np.zeros(3), decision_fallback=fallback))
            warnings += out.warnings
            events.update(e.name for e in out.events)
            if out.trajectory is not None:
                points = [(p.time_from_start_s, p.positions, p.velocities, p.accelerations)
                          for p in out.trajectory.points]
                queue.append((t + delay_s * rng.uniform(0.5, 1.5), 0.0 if out.trajectory.on_receipt else t, points))
    finally:
        world.close()
    return {"turns": events["act_start"], "aborts": events["abort"],
            "tracking_losses": sum("not following its commands" in w for w in warnings),
            "resumed": sum("taking the reach up again" in w for w in warnings),
            "refused": refused, "peak_speed_over_limit": peak, "state": core.state}

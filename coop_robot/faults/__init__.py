"""Fault injection into the running graph, scored on the simulator's ground truth (issue 11).

* :mod:`coop_robot.faults.plan` -- what a fault is, the kinds, moments and links, and how a
  campaign draws them (no ROS);
* :mod:`coop_robot.faults.moments` -- the moments of a turn from the graph's events (no ROS);
* :mod:`coop_robot.faults.score` -- outcomes and incidents on ground truth (no ROS);
* :mod:`coop_robot.faults.report` -- the campaign report and its verdict (no ROS);
* :mod:`coop_robot.faults.injector` -- the rclpy node that injects faults into a session;
* :mod:`coop_robot.faults.session` -- one session: graph, injector, scoring.

``bench/fault_campaign.py`` runs the randomised campaign; docs/fault_injection.md says how.
"""

from coop_robot.faults.plan import FAULT_KINDS, LINKS, MOMENTS, Fault, FaultPlanError, SessionPlan, draw_session

__all__ = ["FAULT_KINDS", "LINKS", "MOMENTS", "Fault", "FaultPlanError", "SessionPlan", "draw_session"]

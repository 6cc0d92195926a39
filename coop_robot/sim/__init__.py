"""PyBullet simulation of the shared workspace, without ROS.

- :mod:`coop_robot.sim.world`: the PyBullet world (table, Panda, zone, task objects, simulated
  person with the green glove) and its RGB-D camera.
- :mod:`coop_robot.sim.trajectory`: joint-trajectory execution with ros2_control
  joint_trajectory_controller semantics (pure NumPy).
- :mod:`coop_robot.sim.core`: :class:`~coop_robot.sim.core.InteractionSim`, world + simulated
  partner + executor stepped together, with ground-truth zone and contact events.

Nothing is imported here so that ``coop_robot.sim.trajectory`` stays usable without PyBullet.
"""

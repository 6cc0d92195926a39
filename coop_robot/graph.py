"""The one description of the node graph, used by the launch files and by ``coop-robot sim``.

Both ``launch/sim.launch.py`` (on a ROS 2 install) and the package's own multi-process runner
(pip-only machines, no ``launch`` package) turn these :class:`NodeSpec` lists into processes, with
the same executables, parameter files and overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

POLICIES_SIM = ("reactive", "oracle", "mirror")
POLICIES_ROBOT = ("reactive", "mirror")


class GraphError(ValueError):
    """An argument of the graph description is invalid."""


@dataclass(frozen=True)
class NodeSpec:
    """One node process: what to run, with which parameter files and overrides."""

    name: str                               # ROS node name (also the key in its config file)
    executable: str                         # console script (lib/coop_robot/<executable>)
    module: str                             # python -m module (the pip runner)
    param_files: tuple[str, ...]            # names under share/coop_robot/config, or absolute paths
    parameters: dict = field(default_factory=dict)      # overrides, applied after the files
    remappings: tuple[tuple[str, str], ...] = ()
    ends_session: bool = False              # the session is over when this process exits


def _node(name: str, exe: str, files: tuple[str, ...], params: dict, remaps=(), ends=False) -> NodeSpec:
    return NodeSpec(name, exe, f"coop_robot.nodes.{exe}", ("world.yaml",) + files, params, tuple(remaps), ends)


def sim_graph(policy: str = "reactive", partner: str = "typical", seed: int = 0, turns: int = 0,
              gui: bool = False, use_sim_time: bool = True, summary_json: str = "",
              real_time_factor: float | None = None) -> list[NodeSpec]:
    """The simulated interaction: sim, perception, policy, controller, turn tracker."""
    if policy not in POLICIES_SIM:
        raise GraphError(f"policy must be one of {POLICIES_SIM} in simulation, got {policy!r}")
    if turns < 0:
        raise GraphError(f"turns must be >= 0, got {turns}")
    if not partner:
        raise GraphError("partner profile name or file must not be empty")
    t = {"use_sim_time": bool(use_sim_time)}
    sim_params = {"partner": partner, "seed": int(seed), "gui": bool(gui)}
    if real_time_factor is not None:
        sim_params["real_time_factor"] = float(real_time_factor)
    if gui:  # a person watching wants real time
        sim_params.setdefault("real_time_factor", 1.0)
    return [
        _node("coop_sim", "sim_node", ("sim.yaml",), sim_params),  # publishes /clock: never sim time
        _node("perception", "perception_node", ("perception.yaml",), dict(t)),
        _node("policy", "policy_node", ("policy.yaml",), {**t, "policy": policy}),
        _node("controller", "controller_node", ("controller.yaml",), dict(t)),
        _node("turn_tracker", "turn_tracker_node", ("turn_tracker.yaml",), {
            **t, "scoring": "ground_truth", "max_turns": int(turns), "summary_json": summary_json,
            "session_policy": policy, "session_partner": partner, "session_seed": int(seed),
        }, ends=turns > 0),
    ]


def robot_graph(policy: str = "reactive", color_topic: str = "/camera/color/image_raw",
                depth_topic: str = "/camera/depth/image_rect_raw",
                camera_info_topic: str = "/camera/color/camera_info",
                trajectory_topic: str = "/panda_arm_controller/joint_trajectory",
                joint_states_topic: str = "/joint_states", turns: int = 0,
                summary_json: str = "", extra_param_files: list[str] = ()) -> list[NodeSpec]:
    """A lab robot: no sim; the camera driver and ros2_control provide the other half."""
    if policy not in POLICIES_ROBOT:
        raise GraphError(f"policy must be one of {POLICIES_ROBOT} on a robot, got {policy!r}")
    for key, val in (("color_topic", color_topic), ("depth_topic", depth_topic),
                     ("camera_info_topic", camera_info_topic), ("trajectory_topic", trajectory_topic),
                     ("joint_states_topic", joint_states_topic)):
        if not val.startswith("/"):
            raise GraphError(f"{key} must be an absolute topic name, got {val!r}")
    cam = (("/camera/color/image_raw", color_topic), ("/camera/depth/image_rect_raw", depth_topic),
           ("/camera/color/camera_info", camera_info_topic))
    js = (("/joint_states", joint_states_topic),)
    cell = ("robot.yaml",) + tuple(str(f) for f in extra_param_files)
    return [
        _node("perception", "perception_node", ("perception.yaml",) + cell, {}, cam),
        _node("policy", "policy_node", ("policy.yaml",) + cell, {"policy": policy}),
        _node("controller", "controller_node", ("controller.yaml",) + cell,
              {"trajectory_topic": trajectory_topic}, js),
        _node("turn_tracker", "turn_tracker_node", ("turn_tracker.yaml",) + cell, {
            "scoring": "perception", "max_turns": int(turns), "summary_json": summary_json,
            "session_policy": policy,
        }, js, ends=turns > 0),
    ]

"""The one description of the node graph, used by the launch files and by ``coop-robot sim``.

Both ``launch/sim.launch.py`` (on a ROS 2 install) and the package's own multi-process runner
(pip-only machines, no ``launch`` package) turn these :class:`NodeSpec` lists into processes, with
the same executables, parameter files and overrides.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

#: The policies each graph accepts; the oracle reads simulation truth, so it runs in simulation only.
POLICIES_SIM = ("reactive", "eager", "oracle", "mirror")
POLICIES_ROBOT = ("reactive", "eager", "mirror")
#: The sync task's policies in simulation (coop_robot.policy.sync): the controls and the mirror network
#: (its sync checkpoint, mirror_sync.pt).
POLICIES_SYNC = ("reactive", "eager", "oracle", "mirror")
#: The recorder prints a line starting with this once it is subscribed and the bag is open ...
RECORDER_READY_LINE = "[recorder] recording"
#: ... and, on sim time, this one when its clock runs (the first /clock arrived).
RECORDER_CLOCK_LINE = "[recorder] clock running"


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
    ready_line: str = ""                    # start the next nodes only once it prints a line starting with this
    stops_last: bool = False                # shut down after all the others (a recorder loses nothing)


def parameter_files(spec: NodeSpec, params_dir: str | os.PathLike, extra: tuple = (),
                    config_dir: str | None = None) -> list[str]:
    """The ``--params-file`` arguments of one node, in order, as both the launch files and the runner pass
    them: the package's files (``spec.param_files``), ``extra`` files, then the overrides written to
    ``<params_dir>/<node>.yaml`` keyed by the node's own name. (A dict given to ``launch_ros``'s
    ``Node(parameters=[...])`` is written under ``/**`` for a node without a namespace, and ROS 2
    applies the config files' node-named entries over it; a file keyed by node name is what wins.)

    Raises :class:`coop_robot.params.ParamFileError` for a missing or malformed file, or for a
    ``/**`` setting that a node-named entry would silently override. ``config_dir``: where the
    package's files are (default: :func:`coop_robot.paths.config_path`'s lookup).
    """
    from pathlib import Path

    from coop_robot.params import ParamFileError, check_shadowed_wildcards, write_param_file
    from coop_robot.paths import config_path

    files = []
    for name in tuple(spec.param_files) + tuple(str(e) for e in extra):
        try:
            if config_dir is not None and not os.path.isabs(name):
                path = Path(config_dir) / name
                if not path.is_file():
                    raise FileNotFoundError(path)
                files.append(str(path))
            else:
                files.append(str(config_path(name)))
        except FileNotFoundError as exc:
            raise ParamFileError(f"parameter file {name} of node '{spec.name}' does not exist") from exc
    overrides = None
    if spec.parameters:
        overrides = write_param_file(Path(params_dir) / f"{spec.name}.yaml", spec.name, spec.parameters)
        files.append(str(overrides))
    check_shadowed_wildcards(files, spec.name, overrides)
    return files


def _node(name: str, exe: str, files: tuple[str, ...], params: dict, remaps=(), ends=False) -> NodeSpec:
    return NodeSpec(name, exe, f"coop_robot.nodes.{exe}", ("world.yaml",) + files, params, tuple(remaps), ends)


def default_record_dir(now: float | None = None, base: str | None = None) -> str:
    """``<base>/coop_robot_<YYYYmmdd_HHMMSS>`` (base: the current directory), absolute."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(time.time() if now is None else now))
    return os.path.abspath(os.path.join(base or os.getcwd(), f"coop_robot_{stamp}"))


def recorder_node(record_dir: str, record_images: bool = False, use_sim_time: bool | None = None,
                  remappings=(), files: tuple[str, ...] = ("recorder.yaml",)) -> NodeSpec:
    """The bag recorder: listed first, started (and subscribed) before the other nodes, stopped last."""
    if not str(record_dir).strip():
        raise GraphError("record_dir must name the bag directory to create")
    params = {"output_dir": os.path.abspath(os.path.expanduser(str(record_dir))), "record_images": bool(record_images)}
    if use_sim_time is not None:
        params["use_sim_time"] = bool(use_sim_time)
    return NodeSpec("recorder", "recorder_node", "coop_robot.nodes.recorder_node", ("world.yaml",) + tuple(files),
                    params, tuple(remappings), ready_line=RECORDER_READY_LINE, stops_last=True)


def live_view_node(files: tuple[str, ...], parameters: dict | None = None, remappings=(),
                   foxglove_port: int | None = None) -> NodeSpec:
    """The optional live view (``coop_robot.nodes.live_view_node``): markers on /coop_robot/markers
    for RViz; with ``foxglove_port``, also a Foxglove WebSocket server on that port (0: any free one)."""
    params = dict(parameters or {})
    if foxglove_port is not None:
        if isinstance(foxglove_port, bool) or not isinstance(foxglove_port, int) or not 0 <= foxglove_port <= 65535:
            raise GraphError(f"foxglove_port must be an integer 0..65535, got {foxglove_port!r}")
        params.update(foxglove=True, foxglove_port=foxglove_port)
    return _node("live_view", "live_view_node", ("live_view.yaml",) + tuple(files), params, remappings)


def sim_graph(policy: str = "mirror", partner: str = "typical", seed: int = 0, turns: int = 0,
              gui: bool = False, use_sim_time: bool = True, summary_json: str = "",
              real_time_factor: float | None = None, record_dir: str = "",
              record_images: bool = False, partner_label: str | None = None,
              extra_param_files: list[str] = (), live_view: bool = False,
              foxglove_port: int | None = None, task: str = "turn_taking",
              window_s: float | None = None) -> list[NodeSpec]:
    """The simulated interaction: sim, perception, policy, controller, turn tracker; with
    ``record_dir``, a recorder writing the interaction to a rosbag2 (MCAP) there; with
    ``live_view``, the live-view node last (``foxglove_port``: it also serves Foxglove there).
    ``partner_label``: how the session names the partner (summary, recorded /diagnostics);
    default ``partner``. ``extra_param_files``: applied to every node after the package's files.

    ``task``: ``turn_taking`` (default; the graph is exactly what it was before there were tasks) or
    ``sync`` (docs/science_sync.md): the sim, policy, controller and turn tracker get ``task: sync``,
    the policy must be one of :data:`POLICIES_SYNC`, ``turns`` counts trials, and ``window_s``
    (sync only; None: config/sync.yaml's) is the sim's ``sync_window_s``."""
    from coop_robot.tasks import check_task

    try:
        check_task(task)
    except ValueError as exc:
        raise GraphError(str(exc)) from None
    if task == "sync":
        if policy not in POLICIES_SYNC:
            raise GraphError(f"policy must be one of {POLICIES_SYNC} in the sync task, got {policy!r}")
        if window_s is not None:
            from coop_robot.timing.sync import check_window_s

            try:
                window_s = check_window_s(window_s)
            except ValueError as exc:
                raise GraphError(str(exc)) from None
    elif window_s is not None:
        raise GraphError(f"window_s applies to the sync task only; got window_s={window_s!r} with task={task!r}")
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
    x = tuple(str(f) for f in extra_param_files)
    recorder = [recorder_node(record_dir, record_images, use_sim_time, files=("recorder.yaml",) + x)] \
        if record_dir else []
    sync = {"task": "sync"} if task == "sync" else {}   # turn-taking: no task parameter, as before
    if task == "sync" and window_s is not None:
        sim_params["sync_window_s"] = float(window_s)
    perception = _node("perception", "perception_node", ("perception.yaml",) + x, dict(t))
    # With recording, the recorder is subscribed before anything else starts; the rest start together, as
    # without recording (the sim waits for perception, and the policy and controller must be
    # up by then: holding perception back until the recorder had the sim's clock let the
    # partner's first turn pass unseen). Messages before the first /clock get its time.
    return recorder + [
        _node("coop_sim", "sim_node", ("sim.yaml",) + x, {**sim_params, **sync}),  # /clock: never sim time
        perception,
        _node("policy", "policy_node", ("policy.yaml",) + x, {**t, "policy": policy, **sync}),
        _node("controller", "controller_node", ("controller.yaml",) + x, {**t, **sync}),
        _node("turn_tracker", "turn_tracker_node", ("turn_tracker.yaml",) + x, {
            **t, **sync, "scoring": "ground_truth", "max_turns": int(turns), "summary_json": summary_json,
            "session_policy": policy, "session_partner": partner_label or partner, "session_seed": int(seed),
        }, ends=turns > 0),
    ] + _optional_live_view(live_view, foxglove_port, x, dict(t))



def _optional_live_view(live_view: bool, foxglove_port, files: tuple, parameters: dict, remappings=()) -> list:
    if foxglove_port is not None and not live_view:
        raise GraphError("foxglove_port needs live_view (the live-view node serves Foxglove)")
    return [live_view_node(files, parameters, remappings, foxglove_port)] if live_view else []


def robot_graph(policy: str = "reactive", color_topic: str = "/camera/color/image_raw",
                depth_topic: str = "/camera/depth/image_rect_raw",
                camera_info_topic: str = "/camera/color/camera_info",
                trajectory_topic: str = "/panda_arm_controller/joint_trajectory",
                joint_states_topic: str = "/joint_states", turns: int = 0,
                summary_json: str = "", extra_param_files: list[str] = (), record_dir: str = "",
                record_images: bool = False, live_view: bool = False,
                foxglove_port: int | None = None) -> list[NodeSpec]:
    """A lab robot: no sim; the camera driver and ros2_control provide the other half. With
    ``record_dir``, a recorder writes the interaction (on the remapped topics) to a rosbag2 there;
    with ``live_view``, the live-view node (``foxglove_port``: serving Foxglove too) runs last."""
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
    # The recorder sees the camera and joint topics under the names the other nodes are remapped to.
    traj = (("/panda_arm_controller/joint_trajectory", trajectory_topic),)
    recorder = [recorder_node(record_dir, record_images, remappings=cam + js + traj,
                              files=("recorder.yaml",) + cell)] if record_dir else []
    return recorder + [
        _node("perception", "perception_node", ("perception.yaml",) + cell, {}, cam),
        _node("policy", "policy_node", ("policy.yaml",) + cell, {"policy": policy}),
        _node("controller", "controller_node", ("controller.yaml",) + cell,
              {"trajectory_topic": trajectory_topic}, js),
        _node("turn_tracker", "turn_tracker_node", ("turn_tracker.yaml",) + cell, {
            "scoring": "perception", "max_turns": int(turns), "summary_json": summary_json,
            "session_policy": policy,
        }, js, ends=turns > 0),
    ] + _optional_live_view(live_view, foxglove_port, cell, {}, js)


#: The cell's topics as a RealSense driver (rs_launch.py, camera "camera" in namespace "camera") and
#: ros2_control name them: what ``coop-robot rehearse`` points robot_graph at by default.
CELL_TOPICS = {
    "color_topic": "/camera/camera/color/image_raw",
    "depth_topic": "/camera/camera/aligned_depth_to_color/image_raw",
    "camera_info_topic": "/camera/camera/color/camera_info",
    "trajectory_topic": "/panda_arm_controller/joint_trajectory",
    "joint_states_topic": "/joint_states",
}


def cell_node(truth_log: str, partner: str = "typical", seed: int = 0, gui: bool = False,
              extra_param_files: list[str] = (), **topics: str) -> NodeSpec:
    """The simulator posing as a lab cell (``coop_sim`` with ``mode: cell``): it publishes what a
    RealSense driver and ros2_control would, remapped onto the topics ``topics`` names (the keys of
    :data:`CELL_TOPICS`; default those), and writes the ground truth to ``truth_log``. It reads the
    same cell file as the robot graph, so it renders the camera and zone the graph is told about."""
    if not str(truth_log).strip():
        raise GraphError("truth_log must name the file the cell writes its ground truth to")
    unknown = set(topics) - set(CELL_TOPICS)
    if unknown:
        raise GraphError(f"unknown cell topic argument(s) {sorted(unknown)}; expected some of {sorted(CELL_TOPICS)}")
    t = {**CELL_TOPICS, **topics}
    for key, val in t.items():
        if not val.startswith("/"):
            raise GraphError(f"{key} must be an absolute topic name, got {val!r}")
    if not partner:
        raise GraphError("partner profile name or file must not be empty")
    remaps = tuple((src, t[key]) for key, src in (
        ("color_topic", CELL_TOPICS["color_topic"]), ("depth_topic", CELL_TOPICS["depth_topic"]),
        ("camera_info_topic", CELL_TOPICS["camera_info_topic"]), ("joint_states_topic", "/joint_states"),
    ) if t[key] != src)
    files = ("sim.yaml", "robot.yaml") + tuple(str(f) for f in extra_param_files)
    params = {"mode": "cell", "truth_log": os.path.abspath(os.path.expanduser(str(truth_log))),
              "partner": partner, "seed": int(seed), "gui": bool(gui), "trajectory_topic": t["trajectory_topic"]}
    return _node("coop_sim", "sim_node", files, params, remaps)


def rehearsal_graph(truth_log: str, partner: str = "typical", seed: int = 0, gui: bool = False,
                    **robot_args) -> list[NodeSpec]:
    """Hardware mode: :func:`robot_graph` (called with ``robot_args``, unchanged) plus the
    simulator posing as the lab cell it expects (:func:`cell_node`, on the same topics and cell file)."""
    args = {key: robot_args.get(key, val) for key, val in CELL_TOPICS.items()}
    args.update(robot_args)
    robot = robot_graph(**args)
    topics = {key: args[key] for key in CELL_TOPICS}
    return robot + [cell_node(truth_log, partner, seed, gui, args.get("extra_param_files", ()), **topics)]

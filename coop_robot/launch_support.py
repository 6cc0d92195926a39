"""Turn :mod:`coop_robot.graph` node specs into ``launch_ros`` actions (used by launch/*.launch.py).

Imported only on a ROS 2 install that has ``launch`` and ``launch_ros``; the pip runner never
imports it.
"""

from __future__ import annotations

import os
import tempfile

from coop_robot.graph import NodeSpec, default_record_dir, parameter_files

#: Launch arguments of both launch files for recording the session to a rosbag2 (MCAP).
RECORD_ARGUMENTS = (
    ("record", "false", "Record the interaction topics to a rosbag2 (MCAP) directory"),
    ("record_dir", "", "Bag directory for record:=true (must not exist or be empty); "
                       "default ./coop_robot_<YYYYmmdd_HHMMSS>"),
    ("record_images", "false", "With record:=true, also record the camera images and camera_info (large)"),
)

#: Launch argument of both launch files for the optional live view (coop_robot.nodes.live_view_node).
LIVE_VIEW_ARGUMENTS = (
    ("live_view", "false", "Also run the live view: zone, hand, arm, protective separation and the policy's "
                           "decision as markers on /coop_robot/markers (open RViz with "
                           "share/coop_robot/config/rviz/coop_robot.rviz)"),
)


#: Launch arguments of robot.launch.py (and of rehearsal.launch.py, which runs the same graph).
ROBOT_ARGUMENTS = (
    ("policy", "reactive", "Turn-taking policy: reactive, eager or mirror"),
    ("color_topic", "/camera/color/image_raw", "RGB image topic of the camera driver"),
    ("depth_topic", "/camera/depth/image_rect_raw", "Depth image aligned to colour (16UC1 mm or 32FC1 m)"),
    ("camera_info_topic", "/camera/color/camera_info", "CameraInfo of the colour image"),
    ("trajectory_topic", "/panda_arm_controller/joint_trajectory",
     "JointTrajectory topic of the arm's joint trajectory controller"),
    ("joint_states_topic", "/joint_states", "Joint states of the arm"),
    ("turns", "0", "End the launch after this many robot turns (0 = run until Ctrl-C)"),
    ("summary_json", "", "Write the session summary JSON here when the session ends"),
    ("params_file", "", "Your cell's parameter file (camera extrinsics, zone, glove colour; node-specific settings "
                        "under the node's name), applied after the package's"),
) + RECORD_ARGUMENTS + LIVE_VIEW_ARGUMENTS


def robot_graph_kwargs(arg) -> dict:
    """:func:`coop_robot.graph.robot_graph`'s keyword arguments from :data:`ROBOT_ARGUMENTS`
    (``arg(name)``: a launch argument's value)."""
    record_dir, record_images = parse_record(arg("record"), arg("record_dir"), arg("record_images"))
    return dict(
        policy=arg("policy"),
        color_topic=arg("color_topic"),
        depth_topic=arg("depth_topic"),
        camera_info_topic=arg("camera_info_topic"),
        trajectory_topic=arg("trajectory_topic"),
        joint_states_topic=arg("joint_states_topic"),
        turns=parse_int(arg("turns"), "turns"),
        summary_json=arg("summary_json"),
        record_dir=record_dir,
        record_images=record_images,
        live_view=parse_bool(arg("live_view"), "live_view"),
        extra_param_files=[arg("params_file")] if arg("params_file") else [],
    )


#: Seconds between SIGINT and SIGTERM when the launch stops a node (launch's default is 5).
SIGTERM_TIMEOUT_S = 10


class SessionFailed(RuntimeError):
    """A node the session cannot run without exited before the session ended (ends the launch non-zero)."""


def to_launch_actions(specs: list[NodeSpec], share_dir: str, params_dir: str | None = None,
                      check_domain: bool = True, after_exit: dict | None = None) -> list:
    """``launch_ros`` actions that run ``specs`` the way :class:`coop_robot.runner.GraphRunner` does.

    - Each node gets the same ``--params-file`` list as the runner (:func:`coop_robot.graph.parameter_files`):
      the overrides (launch arguments) go in a file keyed by the node's own name, because a dict in
      ``Node(parameters=[...])`` would be written under ``/**`` and lose to the config files' node-named
      entries. Parameter files are checked before anything starts.
    - With ``check_domain``, the launch is refused (:class:`coop_robot.domain_guard.DomainInUse`) when
      nodes with the graph's names already run on its domain ($ROS_DOMAIN_ID), as ``coop-robot sim``
      refuses; unlike the runner, the launch does not watch for a second graph appearing later.
    - A node with a ``ready_line`` (the recorder) starts first; the others start once it printed that line.
    - When the session-ending node (the turn tracker, ``turns`` > 0) exits 0, the other nodes are shut
      down, nodes marked ``stops_last`` (the recorder) last, then the launch ends.
    - Any node that exits before the session ended (a crash, a bad parameter) ends the launch with a
      non-zero status (an exception in an event handler is how ``launch`` returns 1).
    - ``after_exit``: node name -> a function called (no arguments) when that node exits after the
      session ended (the rehearsal's ground-truth check, once the simulated cell closed its log).
    """
    from launch.actions import EmitEvent, RegisterEventHandler, TimerAction
    from launch.event_handlers import OnProcessExit, OnProcessIO
    from launch.events import Shutdown, matches_action
    from launch.events.process import ShutdownProcess
    from launch_ros.actions import Node

    params_dir = params_dir or tempfile.mkdtemp(prefix="coop_robot_launch_")
    config_dir = os.path.join(share_dir, "config")
    nodes = {}
    for spec in specs:
        files = parameter_files(spec, params_dir, config_dir=config_dir)
        nodes[spec.name] = Node(
            package="coop_robot", executable=spec.executable, name=spec.name, output="screen",
            emulate_tty=True, parameters=files, remappings=list(spec.remappings),
            # launch escalates to SIGTERM 5 s after SIGINT by default; on a loaded 2-core machine the
            # nodes took longer than that to shut down cleanly, and a SIGTERM during rclpy's SIGINT
            # shutdown crashed them (exit -11). The runner waits 8 s; give the same margin here.
            sigterm_timeout=str(SIGTERM_TIMEOUT_S),
        )
    if check_domain:
        refuse_busy_domain([s.name for s in specs])
    state = {"session_over": False, "stopping": set()}
    first = [s for s in specs if s.ready_line]
    rest = [s for s in specs if not s.ready_line]
    last = [s for s in specs if s.stops_last]

    def stop_session(reason: str) -> list:
        state["session_over"] = True
        others = [s.name for s in specs if not s.stops_last and not s.ends_session]
        if not last or not others:
            return [EmitEvent(event=Shutdown(reason=reason))]
        state["stopping"] = set(others)
        state["reason"] = reason
        return [EmitEvent(event=ShutdownProcess(process_matcher=matches_action(nodes[n]))) for n in others]

    def on_exit(spec: NodeSpec):
        def handler(event, context):
            code = event.returncode
            if state["session_over"] or context.is_shutdown:
                state["stopping"].discard(spec.name)
                if spec.name in (after_exit or {}):
                    after_exit[spec.name]()
                if last and spec.name not in {s.name for s in last} and not state["stopping"] \
                        and not context.is_shutdown and "reason" in state:
                    # everything else has exited: let the recorder take the last messages, then stop it
                    return [TimerAction(period=0.5, actions=[EmitEvent(event=Shutdown(reason=state.pop("reason")))])]
                return None
            if spec.ends_session and code == 0:
                return stop_session(f"{spec.name} finished the session")
            raise SessionFailed(f"node '{spec.name}' exited with code {code} before the session ended; "
                                f"the session cannot run without it (see its output above)")
        return handler

    handlers = [RegisterEventHandler(OnProcessExit(target_action=nodes[s.name], on_exit=on_exit(s))) for s in specs]
    if not first:
        return handlers + [nodes[s.name] for s in specs]
    started = {"done": False}

    def on_ready(event):
        if started["done"] or not event.text.decode(errors="replace").lstrip().startswith(first[0].ready_line):
            return None
        started["done"] = True
        return [nodes[s.name] for s in rest]

    ready = RegisterEventHandler(OnProcessIO(target_action=nodes[first[0].name], on_stdout=on_ready))
    return handlers + [ready] + [nodes[s.name] for s in first]


def refuse_busy_domain(names: list[str]) -> None:
    """Raise :class:`coop_robot.domain_guard.DomainInUse` when nodes named ``names`` already run on
    this process's ROS domain ($ROS_DOMAIN_ID, default 0)."""
    from coop_robot.domain_guard import GraphProbe

    probe = GraphProbe(int(os.environ.get("ROS_DOMAIN_ID") or 0))
    try:
        probe.refuse_if_in_use(names, remedy="Set ROS_DOMAIN_ID to a free domain for this launch")
    finally:
        probe.close()


def parse_record(record: str, record_dir: str, record_images: str) -> tuple[str, bool]:
    """The record launch arguments -> (bag directory or '' for no recording, record images)."""
    enabled = parse_bool(record, "record")
    images = parse_bool(record_images, "record_images")
    if not enabled:
        if record_dir.strip() or images:
            raise ValueError("launch arguments 'record_dir' / 'record_images' need record:=true")
        return "", False
    return (record_dir.strip() or default_record_dir()), images


def parse_bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"launch argument '{name}' must be true or false, got {text!r}")


def parse_float(text: str, name: str, minimum: float = 0.0) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"launch argument '{name}' must be a number, got {text!r}") from None
    if not value >= minimum or value == float("inf"):
        raise ValueError(f"launch argument '{name}' must be a finite number >= {minimum}, got {text!r}")
    return value


def check_partner(partner: str) -> None:
    """Refuse a partner profile the sim could not load before any node starts."""
    from coop_robot.partner.profile import ProfileError, load_profile

    try:
        load_profile(partner)
    except ProfileError as exc:
        raise ValueError(f"launch argument 'partner': {exc}") from None


def parse_task(text: str) -> str:
    """The ``task`` launch argument: one of :data:`coop_robot.tasks.TASKS`."""
    from coop_robot.tasks import TASKS

    value = text.strip()
    if value not in TASKS:
        raise ValueError(f"launch argument 'task' must be one of {', '.join(TASKS)}, got {text!r}")
    return value


def parse_int(text: str, name: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"launch argument '{name}' must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"launch argument '{name}' must be >= {minimum}, got {value}")
    return value

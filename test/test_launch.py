"""The launch files start the graph the runner starts, and every launch argument reaches its node.

``launch`` / ``launch_ros`` have no wheels, so ``launch_standin`` reproduces what they do with our
launch files (command lines, parameter files, handlers); the tests then start the real node
processes with exactly those command lines and ask the running nodes over DDS what they got.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import launch_standin
import numpy as np
import pytest
import yaml
from conftest import free_ros_domain

from coop_robot.graph import RECORDER_READY_LINE, robot_graph, sim_graph
from coop_robot.launch_support import SessionFailed
from coop_robot.params import ParamFileError, effective_parameters
from coop_robot.paths import share_dir
from coop_robot.runner import GraphRunner, isolated_env, node_command

REPO = Path(__file__).resolve().parents[1]
PREFIX = Path("/opt/ros_ws/install/coop_robot")   # where an ament install would put lib/coop_robot


def console_scripts() -> dict[str, str]:
    return dict(re.findall(r'"([\w-]+) = ([\w.]+):\w+"', (REPO / "setup.py").read_text()))


@pytest.fixture(autouse=True)
def launch_domain(monkeypatch, ros_domain):
    """The launch files check their ROS domain for another graph: evaluate them on a free one."""
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain))
    return ros_domain


def evaluate(monkeypatch, filename: str, arguments: dict) -> launch_standin.Launched:
    launch_standin.install(monkeypatch, share_dir())
    return launch_standin.evaluate(REPO / "launch" / filename, arguments)


def params_of(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == "--params-file"]


def runnable(cmd: list[str]) -> list[str]:
    """lib/coop_robot/<executable> -> this interpreter running the console script's module."""
    module = console_scripts()[Path(cmd[0]).name]
    return [sys.executable, "-m", module] + cmd[1:]


def cell_file(tmp_path: Path, text: str, name: str = "my_cell.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


CELL = """\
/**:
  ros__parameters:
    camera_position_m: [0.61, 0.95, 1.45]
controller:
  ros__parameters:
    velocity_scale: 0.25
"""


def sim_arguments(tmp_path: Path) -> dict:
    """Every sim.launch.py argument with a value other than its default."""
    return {"policy": "reactive", "partner": "fast", "gui": "false", "use_sim_time": "true", "seed": "5",
            "task": "sync", "window_s": "1.5", "turns": "3", "summary_json": str(tmp_path / "s.json"),
            "real_time_factor": "0",
            "params_file": str(cell_file(tmp_path, CELL)), "record": "true", "record_dir": str(tmp_path / "bag"),
            "record_images": "true", "live_view": "true"}


def robot_arguments(tmp_path: Path) -> dict:
    return {"policy": "mirror", "color_topic": "/cam/color", "depth_topic": "/cam/depth",
            "camera_info_topic": "/cam/info", "trajectory_topic": "/fr3_arm_controller/joint_trajectory",
            "joint_states_topic": "/franka/joint_states", "turns": "4", "summary_json": str(tmp_path / "r.json"),
            "params_file": str(cell_file(tmp_path, CELL)), "record": "true", "record_dir": str(tmp_path / "rbag"),
            "record_images": "false", "live_view": "true"}


# --- what a real launch would start ---------------------------------------------------------------

@pytest.mark.parametrize("filename", ["sim.launch.py", "robot.launch.py"])
def test_every_declared_argument_is_covered_here_and_described(monkeypatch, tmp_path, filename):
    launched = evaluate(monkeypatch, filename, {})
    args = sim_arguments(tmp_path) if filename == "sim.launch.py" else robot_arguments(tmp_path)
    assert set(launched.declared) == set(args)
    assert all(kw["description"] and "default_value" in kw for kw in launched.declared.values())


@pytest.mark.parametrize("filename", ["sim.launch.py", "robot.launch.py"])
def test_launch_command_lines_are_the_runners(monkeypatch, tmp_path, filename):
    monkeypatch.chdir(tmp_path)
    launch_standin.Node.warnings.clear()
    if filename == "sim.launch.py":
        args = sim_arguments(tmp_path)
        specs = sim_graph(policy="reactive", partner=str((REPO / "config/partners/fast.yaml").resolve()),
                          partner_label="fast", seed=5, turns=3, summary_json=args["summary_json"],
                          real_time_factor=0.0, record_dir=args["record_dir"], record_images=True,
                          extra_param_files=[args["params_file"]], live_view=True, task="sync", window_s=1.5)
    else:
        args = robot_arguments(tmp_path)
        specs = robot_graph(policy="mirror", color_topic="/cam/color", depth_topic="/cam/depth",
                            camera_info_topic="/cam/info", trajectory_topic=args["trajectory_topic"],
                            joint_states_topic="/franka/joint_states", turns=4, summary_json=args["summary_json"],
                            extra_param_files=[args["params_file"]], record_dir=args["record_dir"], live_view=True)
    launched = evaluate(monkeypatch, filename, args)
    assert [n.kwargs["name"] for n in launched.nodes] == [s.name for s in specs]
    for node, spec in zip(launched.nodes, specs):
        launch_cmd = node.command(PREFIX)
        runner_cmd = node_command(spec, tmp_path / "runner_params")
        assert launch_cmd[0] == str(PREFIX / "lib/coop_robot" / spec.executable)
        strip = [a for a in launch_cmd[1:] if a not in params_of(launch_cmd)]
        assert strip == [a for a in runner_cmd[3:] if a not in params_of(runner_cmd)]
        # same files in the same order (the overrides live in different temporary directories)
        assert [Path(p).read_text() for p in params_of(launch_cmd)] == \
            [Path(p).read_text() for p in params_of(runner_cmd)]
    assert launch_standin.Node.warnings == []   # launch_ros skips a missing file with only a warning


SIM_EXPECT = {   # launch argument -> (node, parameter, value the node must get)
    "policy": [("policy", "policy", "reactive"), ("turn_tracker", "session_policy", "reactive")],
    "partner": [("coop_sim", "partner", str((REPO / "config/partners/fast.yaml").resolve())),
                ("turn_tracker", "session_partner", "fast")],
    "gui": [("coop_sim", "gui", False)],
    "use_sim_time": [(n, "use_sim_time", True) for n in ("perception", "policy", "controller", "turn_tracker",
                                                         "recorder", "live_view")],
    "seed": [("coop_sim", "seed", 5), ("turn_tracker", "session_seed", 5)],
    "task": [(n, "task", "sync") for n in ("coop_sim", "policy", "controller", "turn_tracker")],
    "window_s": [("coop_sim", "sync_window_s", 1.5)],
    "turns": [("turn_tracker", "max_turns", 3)],
    "real_time_factor": [("coop_sim", "real_time_factor", 0.0)],
    "params_file": [("controller", "velocity_scale", 0.25)] + [
        (n, "camera_position_m", [0.61, 0.95, 1.45]) for n in ("coop_sim", "perception", "controller")],
    "record_images": [("recorder", "record_images", True)],
    "live_view": [("live_view", "rate_hz", 10.0), ("live_view", "foxglove", False)],
}
ROBOT_EXPECT = {
    "policy": [("policy", "policy", "mirror"), ("turn_tracker", "session_policy", "mirror")],
    "trajectory_topic": [("controller", "trajectory_topic", "/fr3_arm_controller/joint_trajectory")],
    "turns": [("turn_tracker", "max_turns", 4)],
    "params_file": [("controller", "velocity_scale", 0.25), ("perception", "camera_position_m", [0.61, 0.95, 1.45])],
    "record_images": [("recorder", "record_images", False)],
    "live_view": [("live_view", "rate_hz", 10.0), ("live_view", "foxglove", False)],
}


@pytest.mark.parametrize("filename", ["sim.launch.py", "robot.launch.py"])
def test_every_launch_argument_lands_in_its_nodes_parameters(monkeypatch, tmp_path, filename):
    """The values ROS 2 will give each node from the launch's files (the rule checked against
    rclpy in test_parameter_precedence_model_matches_rclpy)."""
    monkeypatch.chdir(tmp_path)
    args = sim_arguments(tmp_path) if filename == "sim.launch.py" else robot_arguments(tmp_path)
    launched = evaluate(monkeypatch, filename, args)
    expect = SIM_EXPECT if filename == "sim.launch.py" else ROBOT_EXPECT
    for arg, checks in expect.items():
        for node, param, value in checks:
            got = effective_parameters(params_of(launched.node(node).command(PREFIX)), node)
            assert got.get(param) == value, (arg, node, param)
    summary = args["summary_json"]
    assert effective_parameters(params_of(launched.node("turn_tracker").command(PREFIX)),
                                "turn_tracker")["summary_json"] == summary
    rec = effective_parameters(params_of(launched.node("recorder").command(PREFIX)), "recorder")
    assert rec["output_dir"] == args["record_dir"]
    if filename == "robot.launch.py":   # topics are remapped on the command line
        remaps = {n.kwargs["name"]: dict(n.kwargs["remappings"]) for n in launched.nodes}
        assert remaps["perception"] == {"/camera/color/image_raw": "/cam/color",
                                        "/camera/depth/image_rect_raw": "/cam/depth",
                                        "/camera/color/camera_info": "/cam/info"}
        assert remaps["controller"]["/joint_states"] == "/franka/joint_states"
        assert remaps["turn_tracker"]["/joint_states"] == "/franka/joint_states"
        assert remaps["live_view"]["/joint_states"] == "/franka/joint_states"
    for off in ({}, {"live_view": "false"}):   # the live view runs only when asked for
        assert "live_view" not in [n.kwargs["name"] for n in evaluate(monkeypatch, filename, off).nodes]


def test_sim_launch_defaults_to_turn_taking_and_refuses_a_bad_task_or_window(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    launched = evaluate(monkeypatch, "sim.launch.py", {"policy": "reactive"})
    for node in launched.nodes:   # the default graph: turn-taking, with no task override, as before there were tasks
        got = effective_parameters(params_of(node.command(PREFIX)), node.kwargs["name"])
        assert got.get("task", "turn_taking") == "turn_taking" and "sync_window_s" not in got, node.kwargs["name"]
        assert "task" not in yaml.safe_load(Path(params_of(node.command(PREFIX))[-1]).read_text()).get(
            node.kwargs["name"], {}).get("ros__parameters", {}), node.kwargs["name"]
    with pytest.raises(ValueError, match="launch argument 'task' must be one of turn_taking, sync, got 'handover'"):
        evaluate(monkeypatch, "sim.launch.py", {"task": "handover"})
    launched = evaluate(monkeypatch, "sim.launch.py", {"task": "sync"})   # the default policy, the mirror, plays it too
    policy = next(n for n in launched.nodes if n.kwargs["name"] == "policy")
    got = effective_parameters(params_of(policy.command(PREFIX)), "policy")
    assert got["task"] == "sync" and got["policy"] == "mirror"
    with pytest.raises(ValueError, match="launch argument 'window_s' must be a number, got 'wide'"):
        evaluate(monkeypatch, "sim.launch.py", {"task": "sync", "policy": "eager", "window_s": "wide"})
    with pytest.raises(ValueError, match="window_s applies to the sync task only"):
        evaluate(monkeypatch, "sim.launch.py", {"policy": "eager", "window_s": "1.0"})


def _declared_in_a_node(files: list[Path], tmp_path: Path) -> dict:
    """What a real rclpy node named 'controller' gets from these --params-file arguments."""
    script = (
        "import json, sys, rclpy\n"
        "from rclpy.node import Node\n"
        "rclpy.init(args=sys.argv, domain_id=int(sys.argv[1]))\n"
        "n = Node('controller', automatically_declare_parameters_from_overrides=True)\n"
        "skip = ('use_sim_time', 'start_type_description_service')\n"
        "print(json.dumps({k: p.value for k, p in n._parameters.items() if k not in skip}))\n"
        "n.destroy_node(); rclpy.shutdown()\n"
    )
    cmd = [sys.executable, "-c", script, str(free_ros_domain()), "--ros-args"]
    for f in files:
        cmd += ["--params-file", str(f)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_parameter_precedence_model_matches_rclpy(tmp_path):
    """ROS 2 applies entries keyed by node name over /** ones whatever the file order (for a
    first file that opens with /**), and a later file over an earlier one under the same key."""
    world, controller = REPO / "config/world.yaml", REPO / "config/controller.yaml"
    named = cell_file(tmp_path, "controller:\n  ros__parameters:\n    velocity_scale: 0.2\n", "named.yaml")
    wild = cell_file(
        tmp_path, "/**:\n  ros__parameters:\n    velocity_scale: 0.3\n    act_duration_s: 1.5\n", "wild.yaml"
    )
    fq = cell_file(tmp_path, "/controller:\n  ros__parameters:\n    act_duration_s: 0.9\n", "fq.yaml")
    for files in (
        [world, controller, wild],
        [world, controller, named],
        [world, controller, wild, named],
        [world, controller, named, wild],
        [wild, controller],
        [world, controller, fq, wild],
    ):
        real = _declared_in_a_node(files, tmp_path)
        model = effective_parameters(files, "controller")
        assert model == real, [f.name for f in files]
    # the case the launch refuses (see below): a /** setting silently losing to controller.yaml
    assert effective_parameters([world, controller, wild], "controller")["velocity_scale"] == 0.5


def test_a_cell_file_setting_that_ros_would_ignore_is_refused(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cell = cell_file(
        tmp_path, "/**:\n  ros__parameters:\n    camera_position_m: [0.6, 0.9, 1.4]\n    velocity_scale: 0.2\n"
    )
    with pytest.raises(ParamFileError, match=r"velocity_scale.*controller\.yaml.*put it under 'controller:'"):
        evaluate(monkeypatch, "robot.launch.py", {"params_file": str(cell)})
    # the same file through the package's own command: a usage error before any node starts
    res = subprocess.run(
        [sys.executable, "-m", "coop_robot.cli", "sim", "--turns", "1", "--params-file", str(cell)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "put it under 'controller:'" in res.stderr, res.stderr
    # keyed by the node's name it is accepted, and wins
    # a /** setting that a launch argument overrides says so
    sim_cell = cell_file(tmp_path, "/**:\n  ros__parameters:\n    use_sim_time: false\n", "sim_cell.yaml")
    with pytest.raises(ParamFileError, match="use_sim_time.*launch arguments / command options"):
        evaluate(monkeypatch, "sim.launch.py", {"params_file": str(sim_cell)})
    ok = cell_file(tmp_path, "controller:\n  ros__parameters:\n    velocity_scale: 0.2\n", "ok.yaml")
    launched = evaluate(monkeypatch, "robot.launch.py", {"params_file": str(ok)})
    files = params_of(launched.node("controller").command(PREFIX))
    assert effective_parameters(files, "controller")["velocity_scale"] == 0.2


def test_missing_files_and_bad_arguments_fail_before_anything_starts(monkeypatch, tmp_path):
    with pytest.raises(ParamFileError, match="does not exist"):
        evaluate(monkeypatch, "robot.launch.py", {"params_file": str(tmp_path / "nope.yaml")})
    with pytest.raises(ParamFileError, match="does not exist"):
        evaluate(monkeypatch, "sim.launch.py", {"params_file": str(tmp_path / "nope.yaml")})
    with pytest.raises(ValueError, match="partner"):
        evaluate(monkeypatch, "sim.launch.py", {"partner": str(tmp_path / "nobody.yaml")})
    with pytest.raises(ValueError, match="gui"):
        evaluate(monkeypatch, "sim.launch.py", {"gui": "maybe"})
    for filename in ("sim.launch.py", "robot.launch.py"):
        with pytest.raises(ValueError, match="launch argument 'live_view' must be true or false"):
            evaluate(monkeypatch, filename, {"live_view": "maybe"})
    with pytest.raises(ValueError, match="real_time_factor"):
        evaluate(monkeypatch, "sim.launch.py", {"real_time_factor": "-1"})
    with pytest.raises(ValueError, match="record:=true"):
        evaluate(monkeypatch, "sim.launch.py", {"record_dir": str(tmp_path / "b")})
    with pytest.raises(KeyError, match="not declared"):
        evaluate(monkeypatch, "sim.launch.py", {"trajectory_topic": "/x"})


def test_recorder_starts_first_and_the_rest_on_its_ready_line(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    launched = evaluate(monkeypatch, "sim.launch.py", {"record": "true"})
    started_at_once = [a.kwargs["name"] for a in launched.actions if isinstance(a, launch_standin.Node)]
    assert started_at_once == ["recorder"]
    ready = next(h for h in launched.handlers if isinstance(h, launch_standin.OnProcessIO))
    on_stdout = ready.kwargs["on_stdout"]
    assert ready.kwargs["target_action"] is launched.node("recorder")
    # evaluate() fed it the ready line once: that started the rest
    assert [n.kwargs["name"] for n in launched.nodes] == [
        "recorder",
        "coop_sim",
        "perception",
        "policy",
        "controller",
        "turn_tracker",
    ]
    assert on_stdout(type("E", (), {"text": f"{RECORDER_READY_LINE} 9 topics\n".encode()})()) is None  # only once
    # a fresh set of actions: other recorder output starts nothing, the ready line starts the rest once
    from coop_robot.launch_support import to_launch_actions

    actions = to_launch_actions(sim_graph(turns=2, record_dir=str(tmp_path / "b")), str(share_dir()))
    on_stdout = next(
        a.handler
        for a in actions
        if isinstance(a, launch_standin.RegisterEventHandler) and isinstance(a.handler, launch_standin.OnProcessIO)
    ).kwargs["on_stdout"]
    assert on_stdout(type("E", (), {"text": b"[recorder] subscribing\n"})()) is None
    assert len(on_stdout(type("E", (), {"text": f"{RECORDER_READY_LINE} 9 topics\n".encode()})())) == 5
    assert on_stdout(type("E", (), {"text": f"{RECORDER_READY_LINE} 9 topics\n".encode()})()) is None


def test_a_node_that_dies_ends_the_launch_with_an_error_and_the_session_end_stops_the_recorder_last(
    monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    launched = evaluate(monkeypatch, "sim.launch.py", {"record": "true", "turns": "2"})
    ctx = launched.context
    with pytest.raises(SessionFailed, match="coop_sim.*exited with code 1"):
        launched.exit_handler(launched.node("coop_sim"))(launch_standin.Exited(1), ctx)
    with pytest.raises(SessionFailed, match="perception.*code 0"):  # a clean exit mid-session is a failure too
        launched.exit_handler(launched.node("perception"))(launch_standin.Exited(0), ctx)

    launched = evaluate(monkeypatch, "sim.launch.py", {"record": "true", "turns": "2"})
    ctx = launched.context
    # the tracker ends the session: every node but the recorder is asked to shut down ...
    actions = launched.exit_handler(launched.node("turn_tracker"))(launch_standin.Exited(0), ctx)
    targets = [a.kwargs["event"].kwargs["process_matcher"] for a in actions]
    stopped = [n.kwargs["name"] for n in launched.nodes if any(t(n) for t in targets)]
    assert stopped == ["coop_sim", "perception", "policy", "controller"]
    # ... and once they have all exited (any code: they are being stopped), the launch shuts down
    for name in ("coop_sim", "perception", "policy"):
        assert launched.exit_handler(launched.node(name))(launch_standin.Exited(-2), ctx) is None
    last = launched.exit_handler(launched.node("controller"))(launch_standin.Exited(0), ctx)
    assert isinstance(last[0], launch_standin.TimerAction)
    assert isinstance(last[0].kwargs["actions"][0].kwargs["event"], launch_standin.Shutdown)

    launched = evaluate(monkeypatch, "sim.launch.py", {"turns": "2"})  # no recorder: shut down at once
    actions = launched.exit_handler(launched.node("turn_tracker"))(launch_standin.Exited(0), launched.context)
    assert isinstance(actions[0].kwargs["event"], launch_standin.Shutdown)
    ctx = launched.context
    ctx.is_shutdown = True  # Ctrl-C: nodes exit with SIGINT's code; not a failure
    assert launched.exit_handler(launched.node("policy"))(launch_standin.Exited(-2), ctx) is None


# --- the real processes, started with the launch's command lines ------------------------------------


def _get_parameters(listener, context, node: str, names: list[str], timeout_s: float = 30.0) -> dict:
    import rclpy
    from rcl_interfaces.srv import GetParameters

    client = listener.create_client(GetParameters, f"/{node}/get_parameters")
    try:
        assert client.wait_for_service(timeout_sec=timeout_s), f"/{node}/get_parameters never appeared"
        future = client.call_async(GetParameters.Request(names=names))
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert future.done(), f"/{node}/get_parameters did not answer"
        values = [rclpy.parameter.parameter_value_to_python(v) for v in future.result().values]
        return dict(zip(names, values))
    finally:
        listener.destroy_client(client)


def _commands(launched) -> list[list[str]]:
    return [runnable(n.command(PREFIX)) for n in launched.nodes]


@pytest.mark.integration
def test_robot_launch_arguments_reach_the_running_nodes(monkeypatch, tmp_path):
    """robot.launch.py's processes, as launch_ros would start them, asked over DDS what they got."""
    import rclpy
    from conftest import spinning

    monkeypatch.chdir(tmp_path)
    args = robot_arguments(tmp_path)
    launched = evaluate(monkeypatch, "robot.launch.py", args)
    specs = robot_graph(
        policy="mirror",
        turns=4,
        summary_json=args["summary_json"],
        record_dir=args["record_dir"],
        extra_param_files=[args["params_file"]],
        live_view=True,
    )
    domain = free_ros_domain()
    runner = GraphRunner(specs, tmp_path / "logs", isolated_env(domain), commands=_commands(launched))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    listener = rclpy.create_node("launch_check", context=context)
    with spinning(listener, context):
        try:
            runner.start()
            for arg, checks in ROBOT_EXPECT.items():
                for node, param, value in checks:
                    got = _get_parameters(listener, context, node, [param])[param]
                    assert (list(got) if isinstance(value, list) else got) == value, (arg, node, param)
            got = _get_parameters(listener, context, "recorder", ["output_dir"])
            assert got["output_dir"] == args["record_dir"]
            # remapped topics: perception listens to the driver's names, the controller commands the JTC's
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                subs = dict(listener.get_subscriber_names_and_types_by_node("perception", "/"))
                pubs = dict(listener.get_publisher_names_and_types_by_node("controller", "/"))
                if "/cam/color" in subs and args["trajectory_topic"] in pubs:
                    break
                time.sleep(0.2)
            assert {"/cam/color", "/cam/depth", "/cam/info"} <= set(subs)
            assert args["trajectory_topic"] in pubs and "/panda_arm_controller/joint_trajectory" not in pubs
            assert all(p.popen.poll() is None for p in runner.procs)
        finally:
            codes = runner.shutdown()
    assert set(codes) == {s.name for s in specs}


@pytest.mark.integration
def test_sim_launch_runs_the_session_it_was_asked_for(monkeypatch, tmp_path):
    """sim.launch.py with turns:=2 ends with the summary JSON; policy, partner, seed, the cell file's
    velocity_scale and record:=true all take effect in the running session. (The policy here is the
    reactive one, whose timing does not depend on the machine's load; that policy:=mirror reaches
    the policy node is checked over DDS in the robot launch test.)"""
    import rclpy
    from conftest import spinning
    from trajectory_msgs.msg import JointTrajectory

    from coop_robot.nodes.common import COMMAND_QOS

    monkeypatch.chdir(tmp_path)
    summary_path = tmp_path / "s.json"
    cell = cell_file(tmp_path, "controller:\n  ros__parameters:\n    velocity_scale: 0.3\n")
    args = {
        "policy": "reactive",
        "partner": "fast",
        "seed": "5",
        "turns": "2",
        "summary_json": str(summary_path),
        "params_file": str(cell),
        "record": "true",
        "record_dir": str(tmp_path / "bag"),
    }
    launched = evaluate(monkeypatch, "sim.launch.py", args)
    specs = sim_graph(
        policy="reactive",
        partner="fast",
        seed=5,
        turns=2,
        summary_json=str(summary_path),
        record_dir=str(tmp_path / "bag"),
        extra_param_files=[str(cell)],
    )
    domain = free_ros_domain()
    runner = GraphRunner(specs, tmp_path / "logs", isolated_env(domain), commands=_commands(launched))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    listener = rclpy.create_node("launch_check", context=context)
    moves = []   # (last point's positions, duration) of every trajectory sent
    listener.create_subscription(
        JointTrajectory,
        "/panda_arm_controller/joint_trajectory",
        lambda m: (
            moves.append((np.array(m.points[-1].positions),
                          m.points[-1].time_from_start.sec + 1e-9 * m.points[-1].time_from_start.nanosec))
            if m.points
            else None
        ),
        COMMAND_QOS,
    )
    with spinning(listener, context):
        try:
            runner.start()
            runner.wait(timeout_s=600)
        finally:
            codes = runner.shutdown()
    recorder = next(p for p in runner.procs if p.spec.name == "recorder")
    said = f"exit codes {codes}; the recorder's log:\n{runner.tail(recorder, 40)}"
    summary = json.loads(summary_path.read_text())
    assert summary["turns"] == 2 and summary["policy"] == "reactive"
    assert summary["partner"] == "fast" and summary["seed"] == 5
    # the keys `coop-robot sim --summary-json` writes (the tracker writes both)
    assert {"wall_time_s", "per_turn", "median_gap_s", "scored_on", "session_duration_s"} <= set(summary)
    log = (tmp_path / "logs" / "policy.log").read_text()
    assert "policy 'reactive'" in log
    assert (tmp_path / "bag" / "metadata.yaml").exists(), said
    assert yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    # velocity_scale 0.3 instead of controller.yaml's 0.5: the moves between home and the target take
    # as long as the core plans them at 0.3, not at 0.5 (separation monitoring may send a move again
    # at a lower speed: those re-sent moves are longer still)
    from coop_robot.control.controller import ArmController, ControllerConfig
    from coop_robot.control.planning import minimum_jerk_duration_s

    core = ArmController(ControllerConfig())
    withdraw = {vs: minimum_jerk_duration_s(core.target_rad, core.home_rad, core.limits, vs, 0.5) for vs in (0.3, 0.5)}
    # The withdrawal of each of the two turns, at least, is a full move at 0.3 (a reach goes out in two
    # parts: to its gate before the zone, then on from the commit), and no move home is one at 0.5.
    # Moves home only: a reach to its gate at 0.3 can take as long as a withdrawal at 0.5 (1.949 s
    # against 1.948 s in one run).
    home = [d for goal, d in moves if np.max(np.abs(goal - core.home_rad)) < 1e-3]
    assert sum(d == pytest.approx(withdraw[0.3], rel=0.01) for d in home) >= 2, (moves, withdraw)
    assert not any(d == pytest.approx(withdraw[0.5], rel=0.002) for d in home), (home, withdraw)


def test_a_launch_is_refused_on_a_domain_where_a_node_of_its_graph_runs(monkeypatch, tmp_path, launch_domain):
    import rclpy

    from coop_robot.domain_guard import DomainInUse

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=launch_domain)
    node = rclpy.create_node("turn_tracker", context=context)
    try:
        with pytest.raises(DomainInUse, match=f"ROS_DOMAIN_ID={launch_domain} already has nodes named turn_tracker"):
            evaluate(monkeypatch, "robot.launch.py", {})
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)

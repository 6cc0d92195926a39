"""The live view: its scene from fed inputs, the node's MarkerArray over DDS, and the Foxglove round trip."""

import asyncio
import base64
import json
import math
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import ros_env, stop_like_ctrl_c, wait_for

from coop_robot.control.kinematics import PandaKinematics
from coop_robot.geometry import world_geometry
from coop_robot.live_view.scene import GREY, HAND_COLOUR, MODE_COLOURS, ZONE_COLOURS, LiveView, LiveViewConfig
from coop_robot.timing.ssm_sample import SsmSample

REPO = Path(__file__).resolve().parents[1]
WORLD = world_geometry()
HOME = WORLD.robot_home_joint_positions_rad
HAND = (0.61, 0.05, 0.71)


def fed_view(t_s: float = 1.0) -> LiveView:
    """A live view fed one of everything at ``t_s``: the partner inside, the arm at home, SSM scaled."""
    view = LiveView(LiveViewConfig(WORLD.zone, hand_radius_m=0.05, stale_after_s=0.5), PandaKinematics())
    view.on_joints(t_s, HOME)
    view.on_in_zone(t_s, True)
    view.on_hand(t_s, HAND)
    view.on_ssm(t_s, SsmSample(t_s, 0.45, 0.31, 0.1, 0.5, 0.5, "scaled"))
    view.on_decision(t_s, "act")
    view.on_p_act(t_s, 0.83)
    view.on_exit_forecast(t_s, 0.42)
    view.on_controller_state(t_s, "reaching", "scaled")
    return view


# --- the scene -------------------------------------------------------------------------------------

def test_scene_draws_what_was_fed():
    scene = fed_view().scene(1.1)
    zone = scene.shape("zone")
    assert zone.kind == "box" and np.allclose(zone.size_m, WORLD.zone.size_m)
    assert zone.colour_rgba == ZONE_COLOURS["partner"]          # the arm at home is outside
    hand = scene.shape("hand")
    assert hand.position_m == HAND and hand.size_m == (0.1, 0.1, 0.1) and hand.colour_rgba == HAND_COLOUR
    sp = scene.shape("protective_separation")   # the body must stay outside hand radius + S_p
    assert sp.position_m == HAND and sp.size_m[0] == pytest.approx(2 * (0.05 + 0.31))
    assert sp.colour_rgba == MODE_COLOURS["scaled"]
    assert "S_p 0.31 m" in scene.shape("ssm_text").text and "margin +0.14 m" in scene.shape("ssm_text").text
    assert scene.shape("policy_text").text == "policy: act  P(act) 0.83  exit in 0.42 s"
    assert scene.shape("controller_text").text == "controller: reaching (ssm scaled)"
    ee = np.asarray(PandaKinematics().ee_position(HOME))
    assert np.allclose(scene.shape("end_effector").position_m, ee)
    assert len(scene.shape("arm").points_m) == 9 and np.allclose(scene.shape("arm").points_m[-1], ee)
    assert scene.status["hand_m"] == list(HAND) and scene.status["ssm_margin_m"] == pytest.approx(0.14)
    json.dumps(scene.status, allow_nan=False)


def test_robot_inside_turns_the_zone_blue_and_both_red():
    view = fed_view()
    target = PandaKinematics().ik(WORLD.zone.center_m, np.asarray(HOME))
    view.on_joints(1.0, target)
    assert view.scene(1.1).shape("zone").colour_rgba == ZONE_COLOURS["both"]
    view.on_in_zone(1.0, False)
    assert view.scene(1.1).shape("zone").colour_rgba == ZONE_COLOURS["robot"]


def test_stale_and_undetected_inputs_are_grey_and_nan_never_raises():
    view = fed_view()
    stale = view.scene(2.0)  # everything is 1 s old
    assert stale.shape("hand").colour_rgba == GREY and stale.shape("zone").colour_rgba == ZONE_COLOURS["unknown"]
    assert stale.shape("protective_separation") is None and "(stale)" in stale.shape("ssm_text").text
    assert stale.shape("policy_text").text == "policy: act (stale)"
    # a frame without the hand: grey where it was last seen; NaN numbers everywhere
    view.on_hand(2.0, (math.nan,) * 3)
    view.on_ssm(2.0, SsmSample(2.0, math.inf, math.nan, math.nan, math.nan, math.nan, "stop"))
    view.on_p_act(2.0, math.nan)
    view.on_exit_forecast(2.0, math.nan)
    view.on_joints(2.0, [math.nan] * 7)
    scene = view.scene(2.05)
    assert scene.shape("hand").position_m == HAND and scene.shape("hand").colour_rgba == GREY
    assert scene.shape("protective_separation") is None and scene.shape("arm") is None
    assert "separation inf" in scene.shape("ssm_text").text and "S_p n/a" in scene.shape("ssm_text").text
    json.dumps(scene.status, allow_nan=False)
    # never seen: no hand at all
    empty = LiveView(LiveViewConfig(WORLD.zone), PandaKinematics()).scene(0.0)
    assert empty.shape("hand") is None and empty.shape("zone").colour_rgba == ZONE_COLOURS["unknown"]


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="hand_radius_m"):
        LiveViewConfig(WORLD.zone, hand_radius_m=math.nan)
    with pytest.raises(ValueError, match="stale_after_s"):
        LiveViewConfig(WORLD.zone, stale_after_s=0.0)


# --- Foxglove ---------------------------------------------------------------------------------------

def test_without_foxglove_sdk_the_message_says_how_to_install_it(monkeypatch):
    from coop_robot.live_view import foxglove_sink

    monkeypatch.setitem(sys.modules, "foxglove", None)   # import foxglove -> ImportError
    with pytest.raises(foxglove_sink.FoxgloveUnavailable, match=r"pip install foxglove-sdk==0\.30\.3"):
        foxglove_sink.FoxgloveSink(port=0)


def _protobuf_class(channel: dict):
    """The message class of an advertised protobuf channel, from the FileDescriptorSet it carries."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


async def _receive(port: int, topics: tuple[str, ...], feed, timeout_s: float = 30.0, accept=None) -> dict:
    """Connect as Foxglove does, subscribe to ``topics`` and return {topic: (channel, payload)} for the
    first message on each (that ``accept(topic, payload)`` takes, if given); ``feed()`` is called
    until everything arrived (it logs or publishes what the server should send)."""
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}",
                                  subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"]) as ws:
        assert ws.subprotocol in ("foxglove.sdk.v1", "foxglove.websocket.v1")
        channels: dict[str, dict] = {}
        while set(channels) < set(topics):
            msg = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
            if msg["op"] == "advertise":
                channels.update({c["topic"]: c for c in msg["channels"]})
        subs = {i: channels[t] for i, t in enumerate(topics, start=1)}
        await ws.send(json.dumps({"op": "subscribe",
                                  "subscriptions": [{"id": i, "channelId": c["id"]} for i, c in subs.items()]}))
        got: dict[str, tuple[dict, bytes]] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while set(got) < set(topics):
            assert loop.time() < deadline, f"no message on {set(topics) - set(got)} within {timeout_s} s"
            feed()
            try:
                data = await asyncio.wait_for(ws.recv(), 0.2)
            except asyncio.TimeoutError:
                continue
            if isinstance(data, bytes) and data[0] == 0x01:   # message data: op, subscription id, log time
                sub_id, _log_time = struct.unpack_from("<IQ", data, 1)
                topic = subs[sub_id]["topic"]
                if accept is None or accept(topic, data[13:]):
                    got.setdefault(topic, (subs[sub_id], data[13:]))
        return got


def test_foxglove_client_subscribes_and_decodes_the_scene():
    pytest.importorskip("foxglove")
    pytest.importorskip("websockets")
    from coop_robot.live_view.foxglove_sink import SCENE_TOPIC, STATUS_TOPIC, FoxgloveSink

    view = fed_view()
    sink = FoxgloveSink(port=0)
    try:
        got = asyncio.run(_receive(sink.port, (SCENE_TOPIC, STATUS_TOPIC), lambda: sink.log(view.scene(1.1))))
    finally:
        sink.close()
    channel, payload = got[SCENE_TOPIC]
    assert channel["schemaName"] == "foxglove.SceneUpdate" and channel["encoding"] == "protobuf"
    update = _protobuf_class(channel).FromString(payload)
    entities = {e.id: e for e in update.entities}
    assert entities["zone"].frame_id == "world"
    size = entities["zone"].cubes[0].size
    assert [size.x, size.y, size.z] == pytest.approx(list(WORLD.zone.size_m))
    where = entities["hand"].spheres[0].pose.position
    assert [where.x, where.y, where.z] == pytest.approx(list(HAND))
    assert entities["policy_text"].texts[0].text.startswith("policy: act  P(act) 0.83")
    assert len(entities["arm"].lines[0].points) == 9
    channel, payload = got[STATUS_TOPIC]
    status = json.loads(payload)
    assert status["hand_m"] == pytest.approx(list(HAND)) and status["decision"] == "act"
    assert status["protective_distance_m"] == pytest.approx(0.31) and status["ssm_mode"] == "scaled"


# --- the node over DDS ------------------------------------------------------------------------------

def _start_node(domain: int, tmp_path: Path, **params):
    import yaml

    mine = tmp_path / "live_view_test.yaml"
    mine.write_text(yaml.safe_dump({"live_view": {"ros__parameters": {"rate_hz": 20.0, **params}}}))
    cmd = [sys.executable, "-m", "coop_robot.nodes.live_view_node", "--ros-args",
           "--params-file", str(REPO / "config/world.yaml"), "--params-file", str(REPO / "config/live_view.yaml"),
           "--params-file", str(mine)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ros_env(domain), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    return proc, lines, reader


@pytest.mark.integration
def test_node_publishes_markers_of_what_the_graph_publishes(ros_domain, tmp_path):
    import rclpy
    from conftest import spinning
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Float64, String
    from visualization_msgs.msg import Marker, MarkerArray

    from coop_robot.control.kinematics import JOINT_NAMES
    from coop_robot.nodes.common import COMMAND_QOS, LATCHED_QOS, ssm_message

    proc, lines, reader = _start_node(ros_domain, tmp_path)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    node = rclpy.create_node("live_view_probe", context=context)
    arrays: list[MarkerArray] = []
    node.create_subscription(MarkerArray, "/coop_robot/markers", arrays.append, 10)
    pubs = {
        "in_zone": node.create_publisher(Bool, "/partner/in_zone", 10),
        "hand": node.create_publisher(PointStamped, "/partner/hand", 10),
        "joints": node.create_publisher(JointState, "/joint_states", COMMAND_QOS),
        "state": node.create_publisher(String, "/controller/state", LATCHED_QOS),
        "ssm": node.create_publisher(DiagnosticArray, "/controller/ssm", COMMAND_QOS),
        "decision": node.create_publisher(String, "/policy/decision", COMMAND_QOS),
        "p_act": node.create_publisher(Float64, "/policy/p_act", COMMAND_QOS),
    }
    hand = {"point": HAND}

    def feed():
        pubs["in_zone"].publish(Bool(data=True))
        msg = PointStamped()
        msg.header.frame_id = "world"
        msg.point.x, msg.point.y, msg.point.z = hand["point"]
        pubs["hand"].publish(msg)
        pubs["joints"].publish(JointState(name=list(JOINT_NAMES) + ["panda_finger_joint1"],
                                          position=list(HOME) + [0.04]))
        pubs["state"].publish(String(data="reaching ssm_stop"))
        pubs["ssm"].publish(ssm_message(SsmSample(0.0, 0.40, 0.25, 0.2, 0.5, 0.0, "stop")))
        pubs["decision"].publish(String(data="act"))
        pubs["p_act"].publish(Float64(data=0.91))

    def markers(array: MarkerArray) -> dict:
        return {m.ns: m for m in array.markers if m.action == Marker.ADD}

    def latest_with(predicate):
        for array in reversed(arrays[-5:]):
            found = markers(array)
            if predicate(found):
                return found
        return None

    def poll():
        if proc.poll() is not None:
            pytest.fail(f"live_view exited with {proc.returncode}:\n{''.join(lines)}")
        feed()
        threading.Event().wait(0.05)   # feed at about 20 Hz while waiting

    try:
        with spinning(node, context):
            # Each topic is matched on its own, so on a busy machine one may start arriving after the
            # others: wait for a frame drawn from every fed input (none of them missing or stale).
            def rgba(marker):
                c = marker.color
                return tuple(round(v, 3) for v in (c.r, c.g, c.b, c.a))

            def complete(m):
                return ("hand" in m and "protective_separation" in m and "end_effector" in m
                        and m["policy_text"].text.startswith("policy: act  P(act) 0.91")
                        and "(stale)" not in m["ssm_text"].text
                        and m["controller_text"].text != "controller: no state"
                        and "zone" in m and rgba(m["zone"]) != ZONE_COLOURS["unknown"])

            got = wait_for(lambda: latest_with(complete),
                           60.0, "a MarkerArray drawn from every fed input", poll=poll,
                           details=lambda: "".join(lines))
            assert arrays[-1].markers[0].action == Marker.DELETEALL
            m_hand, zone = got["hand"], got["zone"]
            assert m_hand.header.frame_id == "world" and m_hand.type == Marker.SPHERE
            assert [m_hand.pose.position.x, m_hand.pose.position.y, m_hand.pose.position.z] == pytest.approx(HAND)
            assert m_hand.scale.x == pytest.approx(2 * 0.05)     # world.yaml's ssm_hand_radius_m
            assert zone.type == Marker.CUBE and [zone.scale.x, zone.scale.y, zone.scale.z] == pytest.approx(
                list(WORLD.zone.size_m))
            assert rgba(zone) == ZONE_COLOURS["partner"]
            assert got["protective_separation"].scale.x == pytest.approx(2 * (0.05 + 0.25))
            assert "stop" in got["ssm_text"].text and got["controller_text"].text == "controller: reaching (ssm stop)"
            ee = np.asarray(PandaKinematics().ee_position(HOME))
            p = got["end_effector"].pose.position
            assert [p.x, p.y, p.z] == pytest.approx(list(ee), abs=1e-6)
            # a frame without the hand: grey at the last place it was seen, no S_p sphere
            hand["point"] = (math.nan,) * 3
            arrays.clear()
            grey = wait_for(lambda: latest_with(lambda m: "hand" in m and "protective_separation" not in m
                                                and m["hand"].color.r == pytest.approx(GREY[0])),
                            30.0, "the undetected hand drawn grey", poll=poll,
                            details=lambda: "".join(lines))
            assert grey["hand"].pose.position.x == pytest.approx(HAND[0])
            assert proc.poll() is None, "".join(lines)
    finally:
        code = stop_like_ctrl_c(proc, reader, grace_s=20.0)
    assert code == 0, "".join(lines)


def test_node_refuses_a_foxglove_port_in_use_naming_it(ros_domain, tmp_path):
    pytest.importorskip("foxglove")
    from coop_robot.live_view.foxglove_sink import FoxgloveSink

    taken = FoxgloveSink(port=0)
    port = taken.port
    try:
        proc, lines, reader = _start_node(ros_domain, tmp_path, foxglove=True, foxglove_port=port)
        code = proc.wait(timeout=60)
        reader.join(timeout=5)
    finally:
        taken.close()
    out = "".join(lines)
    assert code == 2 and f"cannot serve on 127.0.0.1:{port}" in out and "in use" in out, out


# --- RViz and the commands ----------------------------------------------------------------------------

def test_shipped_rviz_config_shows_the_markers_in_world_and_the_camera():
    import yaml

    from coop_robot.nodes.live_view_node import MARKER_TOPIC

    rviz = yaml.safe_load((REPO / "config/rviz/coop_robot.rviz").read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "world"
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == MARKER_TOPIC
    camera = displays["rviz_default_plugins/Image"]["Topic"]
    assert camera["Value"] == "/camera/color/image_raw" and camera["Reliability Policy"] == "Best Effort"
    assert displays["rviz_default_plugins/RobotModel"]["Description Topic"]["Value"] == "/robot_description"


def test_foxglove_options_without_foxglove_are_refused(capsys):
    from coop_robot.cli import main

    assert main(["view", "--port", "9000"]) == 2
    assert "--port and --host need --foxglove" in capsys.readouterr().err
    assert main(["sim", "--foxglove-port", "9000"]) == 2
    assert "--foxglove-port needs --foxglove" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["view", "--foxglove", "--port", "70000"])
    assert exc.value.code == 2 and "port number 0..65535" in capsys.readouterr().err


@pytest.mark.integration
def test_coop_robot_view_serves_the_graphs_hand_to_foxglove(ros_domain):
    """`coop-robot view --foxglove` on a domain: a hand published there arrives, decoded, at a Foxglove client."""
    pytest.importorskip("foxglove")
    pytest.importorskip("websockets")
    import re
    import signal

    import rclpy
    from conftest import spinning
    from geometry_msgs.msg import PointStamped

    proc = subprocess.Popen([sys.executable, "-m", "coop_robot.cli", "view", "--foxglove", "--port", "0",
                             "--domain-id", str(ros_domain)], cwd=REPO, env=ros_env(ros_domain),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    node = rclpy.create_node("view_probe", context=context)
    pub = node.create_publisher(PointStamped, "/partner/hand", 10)
    hand = PointStamped()
    hand.header.frame_id = "world"
    hand.point.x, hand.point.y, hand.point.z = HAND
    try:
        with spinning(node, context):
            port = int(wait_for(lambda: re.search(r"Foxglove on ws://127\.0\.0\.1:(\d+)", "".join(lines)), 60.0,
                                "the view's Foxglove address", details=lambda: "".join(lines)).group(1))
            # (statuses from before DDS discovery delivered the hand have none)
            got = asyncio.run(_receive(port, ("/coop_robot/status",), lambda: pub.publish(hand), timeout_s=60.0,
                                       accept=lambda _topic, payload: json.loads(payload)["hand_m"] is not None))
            status = json.loads(got["/coop_robot/status"][1])
            assert status["hand_m"] == pytest.approx(list(HAND)) and status["hand_seen"] is True
            assert status["zone_min_m"] == pytest.approx(list(WORLD.zone.min_m))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        reader.join(timeout=5)
    assert code == 0, "".join(lines)

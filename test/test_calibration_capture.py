"""`coop-robot calibrate capture`: samples from live topics, paired with the arm at rest."""

import argparse
import shutil

import cv2
import numpy as np
import pytest
import yaml
from conftest import spinning

from coop_robot.calibration.board import BoardSpec
from coop_robot.calibration.capture import JointStateHistory, NotReady
from coop_robot.calibration.capture_node import run_capture
from coop_robot.calibration.samples import MANIFEST, read_sample_set
from coop_robot.calibration.sim_capture import capture_samples, choose_arm_poses
from coop_robot.control.kinematics import JOINT_NAMES

Q = np.array([0.1, -0.4, 0.2, -2.0, 0.1, 1.8, 0.7])


def test_a_joint_state_at_the_image_stamp_of_an_arm_at_rest_is_paired():
    history = JointStateHistory()
    for i in range(20):
        history.add(10.0 + 0.02 * i, list(JOINT_NAMES) + ["panda_finger_joint1"], list(Q) + [0.04])
    assert np.allclose(history.at_rest(10.2), Q)


def test_a_moving_arm_or_a_distant_stamp_is_not_paired():
    history = JointStateHistory()
    for i in range(20):
        history.add(10.0 + 0.02 * i, JOINT_NAMES, Q + 0.002 * i)
    with pytest.raises(NotReady, match="moved"):
        history.at_rest(10.2)
    with pytest.raises(NotReady, match="same clock"):
        history.at_rest(12.0)
    history = JointStateHistory()
    history.add(1.0, ["gripper"], [0.04])  # not the arm: ignored
    with pytest.raises(NotReady, match="no joint state"):
        history.at_rest(1.0)


@pytest.fixture(scope="module")
def board_image(tmp_path_factory):
    """One rendered board pose (320x240 would be too small to see the markers) and its joints."""
    out = tmp_path_factory.mktemp("capture") / "one"
    board = BoardSpec()
    q = choose_arm_poses(board, 1, seed=3)
    capture_samples(out, board, q, image_size=(960, 720))
    sample_set = read_sample_set(out)
    image = cv2.imread(str(out / sample_set.samples[0].image))
    yield image, sample_set.camera, q[0]
    shutil.rmtree(out, ignore_errors=True)


def test_capture_saves_each_pose_with_its_joint_state(board_image, ros_domain, tmp_path):
    import rclpy
    from sensor_msgs.msg import CameraInfo, Image, JointState

    image, camera, q = board_image
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    node = rclpy.create_node("fake_camera_and_arm", context=context)
    image_pub = node.create_publisher(Image, "/cam/image", 5)
    info_pub = node.create_publisher(CameraInfo, "/cam/info", 5)
    joints_pub = node.create_publisher(JointState, "/joint_states", 5)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def publish():
        stamp = node.get_clock().now().to_msg()
        img = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=3 * rgb.shape[1],
                    data=rgb.tobytes())
        img.header.stamp = stamp
        info = CameraInfo(width=camera.width, height=camera.height, k=list(camera.k), d=list(camera.d),
                          distortion_model="plumb_bob")
        info.header.stamp = stamp
        joints = JointState(name=list(JOINT_NAMES), position=[float(x) for x in q])
        joints.header.stamp = stamp
        for pub, msg in ((joints_pub, joints), (image_pub, img), (info_pub, info)):
            pub.publish(msg)

    node.create_timer(0.05, publish)
    commands = iter(["", "", "q"])
    args = argparse.Namespace(out=tmp_path / "samples", image_topic="/cam/image", camera_info_topic="/cam/info",
                              joint_states_topic="/joint_states", max_poses=15, domain_id=ros_domain)
    with spinning(node, context):
        rc = run_capture(args, BoardSpec(), read_command=lambda prompt: next(commands))
    assert rc == 0
    saved = yaml.safe_load((tmp_path / "samples" / MANIFEST).read_text())
    assert len(saved["samples"]) == 2
    assert np.allclose(saved["samples"][0]["joint_positions_rad"], q, atol=1e-6)
    assert saved["camera"]["k"] == pytest.approx(list(camera.k))
    assert cv2.imread(str(tmp_path / "samples" / "pose_01.png")).shape == image.shape


def test_capture_into_a_non_empty_directory_is_refused(tmp_path, capsys):
    (tmp_path / "old.png").write_bytes(b"x")
    args = argparse.Namespace(out=tmp_path, image_topic="/i", camera_info_topic="/c", joint_states_topic="/j",
                              max_poses=15, domain_id=0)
    assert run_capture(args, BoardSpec(), read_command=lambda prompt: "q") == 2
    assert "not an empty directory" in capsys.readouterr().err

"""``coop-robot calibrate capture``: record calibration samples from a live camera and arm (ROS 2).

A thin ROS layer: the node keeps the newest colour image, its CameraInfo and the recent joint
states; at each Enter the command pairs the image with the joint state at its stamp
(:mod:`.capture`), looks for the board (:mod:`.board`) and saves the sample (:mod:`.samples`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from coop_robot.calibration.board import BoardSpec, detect_board
from coop_robot.calibration.capture import JointStateHistory, NotReady
from coop_robot.calibration.samples import (
    CameraInfo,
    Sample,
    SampleError,
    SampleSet,
    prepare_output_dir,
    write_manifest,
)
from coop_robot.control.kinematics import JOINT_NAMES

PROG = "coop-robot calibrate capture"
#: How long the command waits for the first image, camera_info and joint state (s).
FIRST_MESSAGES_TIMEOUT_S = 15.0


def _stamp_s(header) -> float:
    return header.stamp.sec + 1e-9 * header.stamp.nanosec


def make_capture_node(context, image_topic: str, camera_info_topic: str, joint_states_topic: str):
    """The node: subscriptions only, every callback storing the newest values under a lock."""
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo as CameraInfoMsg
    from sensor_msgs.msg import Image, JointState

    class CalibrationCapture(Node):
        def __init__(self) -> None:
            super().__init__("calibration_capture", context=context)
            self.lock = threading.Lock()
            self.image = None
            self.camera_info = None
            self.joints = JointStateHistory(JOINT_NAMES)
            # Sensor-data QoS (best effort) matches reliable and best-effort publishers alike.
            self.create_subscription(Image, image_topic, self._on_image, qos_profile_sensor_data)
            self.create_subscription(CameraInfoMsg, camera_info_topic, self._on_info, qos_profile_sensor_data)
            self.create_subscription(JointState, joint_states_topic, self._on_joints, qos_profile_sensor_data)

        def _on_image(self, msg) -> None:
            with self.lock:
                self.image = msg

        def _on_info(self, msg) -> None:
            with self.lock:
                self.camera_info = msg

        def _on_joints(self, msg) -> None:
            with self.lock:
                self.joints.add(_stamp_s(msg.header), msg.name, msg.position)

    return CalibrationCapture()


def _camera_info(msg) -> CameraInfo:
    return CameraInfo(int(msg.width), int(msg.height), tuple(float(x) for x in msg.k),
                      tuple(float(x) for x in msg.d))


def run_capture(args, board: BoardSpec, read_command: Callable[[str], str] = input) -> int:
    """Exit 0 with the samples saved (also after Ctrl-C: what was captured stays), 2 when the
    output directory is not new or the topics stay silent."""
    import cv2
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from coop_robot.perception.image_codec import ImageFormatError, decode_color

    try:
        out = prepare_output_dir(args.out)
    except SampleError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id, signal_handler_options=SignalHandlerOptions.NO)
    node = make_capture_node(context, args.image_topic, args.camera_info_topic, args.joint_states_topic)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    samples: list[Sample] = []
    camera = None
    try:
        print(f"waiting for {args.image_topic}, {args.camera_info_topic} and {args.joint_states_topic} "
              f"(ROS_DOMAIN_ID={context.get_domain_id()}) ...")
        deadline = time.monotonic() + FIRST_MESSAGES_TIMEOUT_S
        while time.monotonic() < deadline:
            with node.lock:
                missing = [topic for topic, ok in ((args.image_topic, node.image is not None),
                                                   (args.camera_info_topic, node.camera_info is not None),
                                                   (args.joint_states_topic, len(node.joints) > 0)) if not ok]
            if not missing:
                break
            time.sleep(0.05)
        if missing:
            print(f"{PROG}: nothing received on {', '.join(missing)} within {FIRST_MESSAGES_TIMEOUT_S:g} s; check "
                  f"the topic names and ROS_DOMAIN_ID (joint states must name {JOINT_NAMES[0]}..{JOINT_NAMES[-1]})",
                  file=sys.stderr)
            return 2
        print(f"Move the arm so the whole board is in view, tilted 20-40 deg, each pose turned about a different "
              f"axis; let it rest, then press Enter. q + Enter ends ({args.max_poses} poses at most).")
        while len(samples) < args.max_poses:
            command = read_command(f"pose {len(samples) + 1}: Enter to capture, q to finish > ").strip().lower()
            if command == "q":
                break
            with node.lock:
                image_msg, info_msg = node.image, node.camera_info
                try:
                    q = node.joints.at_rest(_stamp_s(image_msg.header))
                except NotReady as exc:
                    print(f"  not captured: {exc}")
                    continue
            try:
                rgb = decode_color(image_msg.data, image_msg.width, image_msg.height, image_msg.step,
                                   image_msg.encoding)
                info = _camera_info(info_msg)
            except (ImageFormatError, SampleError) as exc:
                print(f"  not captured: {exc}")
                continue
            if camera is not None and (info.width, info.height, info.k, info.d) != (
                    camera.width, camera.height, camera.k, camera.d):
                print("  not captured: the camera_info changed since the first sample; start a new directory")
                continue
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            view = detect_board(board, bgr, info.camera_matrix, info.dist_coeffs)
            if view is None:
                print("  not captured: the board is not in view (or not enough of it); move it and try again")
                continue
            name = f"pose_{len(samples):02d}.png"
            if not cv2.imwrite(str(out / name), bgr):
                print(f"{PROG}: could not write {out / name}", file=sys.stderr)
                return 2
            camera = info
            samples.append(Sample(name, tuple(float(x) for x in q)))
            # The manifest is rewritten after every sample: an interrupted capture keeps its poses.
            write_manifest(SampleSet(camera, board, JOINT_NAMES, tuple(samples), out))
            distance = float(np.linalg.norm(view.translation_m))
            print(f"  captured {name}: {len(view.corner_ids)} corners, board {distance:.2f} m from the camera")
    except (KeyboardInterrupt, EOFError):
        print()
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    print(f"{len(samples)} sample(s) in {out}; next: coop-robot calibrate solve {out} --cell-file my_cell.yaml")
    return 0

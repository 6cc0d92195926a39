"""Test-wide DDS isolation: discovery stays on this host for every node any test starts.

Each test that starts nodes also picks its own random ROS_DOMAIN_ID and passes it explicitly
(``rclpy.init(domain_id=...)`` and the subprocess environment).
"""

import contextlib
import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


@contextlib.contextmanager
def spinning(node, context):
    """Spin ``node`` on a background thread while the block runs; on exit stop the thread, then
    destroy the node and shut ``context`` down (it owns both)."""
    import threading

    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        yield
    finally:
        stop.set()
        spinner.join(timeout=5)
        executor.shutdown()
        node.destroy_node()
        import rclpy

        rclpy.shutdown(context=context)

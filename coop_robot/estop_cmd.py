"""Engage or release the controller's software e-stop and wait for its acknowledgement.

``coop-robot estop [on|off]`` calls the controller's ``/controller/emergency_stop`` service
(std_srvs/SetBool) and waits for the answer: exit 0 once the controller says the stop (or the
release) is in force, 1 when no controller answers within ``--timeout-s`` -- then nothing was
sent anywhere else, and the stop is not engaged. Unlike a topic message published once, the call
does not depend on discovery having finished: it waits for the service, then for the reply.
"""

from __future__ import annotations

import os
import sys
import time

from coop_robot.control.estop import ESTOP_SERVICE

PROG = "coop-robot estop"


def add_arguments(parser) -> None:
    parser.add_argument("state", nargs="?", default="on", choices=("on", "off"),
                        help="on: brake to rest and hold (default); off: release")
    parser.add_argument("--timeout-s", type=float, default=5.0,
                        help="give up when no controller has answered within this many seconds (default: 5)")
    parser.add_argument("--domain-id", type=int,
                        help="ROS_DOMAIN_ID of the controller (default: $ROS_DOMAIN_ID, else 0); "
                             "`coop-robot sim` prints the one its graph uses")


def run(args) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from std_srvs.srv import SetBool

    if not args.timeout_s > 0:
        print(f"{PROG}: --timeout-s must be > 0, got {args.timeout_s}", file=sys.stderr)
        return 2
    engage = args.state == "on"
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id, signal_handler_options=SignalHandlerOptions.NO)
    domain = context.get_domain_id()
    node = rclpy.create_node(f"coop_robot_estop_{os.getpid()}", context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        executor.add_node(node)
        client = node.create_client(SetBool, ESTOP_SERVICE)
        deadline = time.monotonic() + args.timeout_s
        if client.wait_for_service(timeout_sec=args.timeout_s):
            future = client.call_async(SetBool.Request(data=engage))
            executor.spin_until_future_complete(future, timeout_sec=max(0.0, deadline - time.monotonic()))
            if future.done():
                response = future.result()
                print(f"{PROG}: controller: {response.message}")
                return 0 if response.success else 1
        what = "stop is NOT engaged; use the hardware stop" if engage else "arm is NOT released"
        print(f"{PROG}: no controller answered on {ESTOP_SERVICE} within {args.timeout_s:g} s "
              f"(ROS_DOMAIN_ID={domain}): the {what}", file=sys.stderr)
        return 1
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)

"""Plumbing shared by every coop_robot node: parameters, QoS, stamps and a clean ``main``."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, ParameterType
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from coop_robot.geometry import Zone, world_geometry

#: Latched state (last value delivered to late joiners), e.g. controller state.
LATCHED_QOS = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
#: Events and per-turn records: reliable, a deep queue so no event is dropped, and transient
#: local so a subscriber that joins late (a recorder, a dashboard, a restarted tracker) still gets
#: the last 100 events instead of silently starting mid-turn.
EVENT_QOS = QoSProfile(
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
#: Commands and decisions: reliable, shallow.
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
SENSOR_QOS = qos_profile_sensor_data

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


class ParameterError(ValueError):
    """A node parameter has a value outside what the node accepts."""


def declare(node: Node, name: str, default: Any, description: str,
            low: float | None = None, high: float | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
    """Declare a parameter with a description (and range), read it once and validate it.

    Raises :class:`ParameterError` naming the parameter, the bad value and what was expected.
    """
    desc = ParameterDescriptor(description=description)
    if isinstance(default, bool):
        desc.type = ParameterType.PARAMETER_BOOL
    elif isinstance(default, (int, float)) and low is not None and high is not None and isinstance(default, float):
        desc.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    if choices:
        desc.additional_constraints = f"one of {', '.join(choices)}"
    try:
        value = node.declare_parameter(name, default, desc).value
    except Exception as exc:  # rclpy raises several types for a bad override; name the parameter
        raise ParameterError(f"parameter '{name}': {exc}") from exc
    return validate(name, value, default, low, high, choices)


def validate(name: str, value: Any, default: Any, low=None, high=None, choices=None) -> Any:
    """Check one parameter value against its default's type, range and choices."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)) or (len(default) and len(value) != len(default)):
            raise ParameterError(f"parameter '{name}' must be a list of {len(default)} numbers, got {value!r}")
        vals = [float(v) for v in value]
        if not all(math.isfinite(v) for v in vals):
            raise ParameterError(f"parameter '{name}' must be finite, got {value!r}")
        return vals
    if type(default) in _TYPES and not isinstance(value, type(default)):
        raise ParameterError(f"parameter '{name}' must be {type(default).__name__}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ParameterError(f"parameter '{name}' must be finite, got {value!r}")
    if low is not None and value < low:
        raise ParameterError(f"parameter '{name}' must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ParameterError(f"parameter '{name}' must be <= {high}, got {value!r}")
    if choices is not None and value not in choices:
        raise ParameterError(f"parameter '{name}' must be one of {list(choices)}, got {value!r}")
    return value


def declare_zone(node: Node) -> Zone:
    """Declare the shared-zone box parameters (set for all nodes in ``config/*.yaml``)."""
    lo = declare(node, "zone_min_m", list(world_geometry().zone_min_m),
                 "Shared zone box lower corner [x, y, z] in the world frame (m)")
    hi = declare(node, "zone_max_m", list(world_geometry().zone_max_m),
                 "Shared zone box upper corner [x, y, z] in the world frame (m)")
    try:
        return Zone.from_lists(lo, hi)
    except ValueError as exc:
        raise ParameterError(str(exc)) from exc


def stamp_to_s(stamp) -> float:
    """builtin_interfaces/Time -> seconds (float)."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def s_to_stamp(t_s: float):
    """Seconds -> builtin_interfaces/Time."""
    from builtin_interfaces.msg import Time

    sec = int(math.floor(t_s))
    nanosec = int(round((t_s - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=sec, nanosec=nanosec)


def now_s(node: Node) -> float:
    """The node's clock (sim time when ``use_sim_time`` is set) in seconds."""
    return node.get_clock().now().nanoseconds * 1e-9


def run_node(factory: Callable[[], Node], args=None) -> int:
    """Standard ``main``: init, build the node, spin, and always shut down cleanly.

    Ctrl-C (SIGINT) and an external shutdown end the spin; a parameter error exits 2 with
    a one-line message instead of a traceback, so a launch file shows what to fix.
    """
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ParameterError as exc:
        print(f"[coop_robot] invalid parameter: {exc}", file=sys.stderr)
        code = 2
    except SessionComplete:
        code = 0
    except Exception:
        # Ctrl-C shuts the context down from the signal handler; a callback that was publishing
        # at that moment then fails with "context is invalid". That is a clean shutdown too.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


class SessionComplete(Exception):
    """Raised inside a callback by a node that has finished its job (ends the spin cleanly)."""

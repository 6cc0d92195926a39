"""Plumbing shared by every coop_robot node: parameters, QoS, stamps and a clean ``main``."""

from __future__ import annotations

import faulthandler
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from coop_robot.geometry import Zone, world_geometry
from coop_robot.params import ParamFileError, load_param_file
from coop_robot.runner import STACK_DUMP_SIGNAL

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
    """A node parameter has a value outside what the node accepts.

    ``parameter`` and ``node_fqn`` (set by :func:`declare`) let :func:`run_node` say which
    parameter file set the bad value.
    """

    parameter: str | None = None
    node_fqn: str | None = None


def declare(node: Node, name: str, default: Any, description: str,
            low: float | None = None, high: float | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
    """Declare a parameter with a description (and range), read it once and validate it.

    Raises :class:`ParameterError` naming the parameter, the bad value and what was expected.
    """
    desc = ParameterDescriptor(description=description)
    if isinstance(default, bool):
        desc.type = ParameterType.PARAMETER_BOOL
    elif isinstance(default, float) and low is not None and high is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    elif isinstance(default, int) and low is not None and high is not None \
            and float(low).is_integer() and float(high).is_integer():
        desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    if choices:
        desc.additional_constraints = f"one of {', '.join(choices)}"
    try:
        try:
            value = node.declare_parameter(name, default, desc).value
        except Exception as exc:  # rclpy raises several types for a bad override; name the parameter
            raise ParameterError(f"parameter '{name}': {exc}") from exc
        return validate(name, value, default, low, high, choices)
    except ParameterError as exc:
        exc.parameter, exc.node_fqn = name, node.get_fully_qualified_name()
        raise


def declare_joint_names(node: Node, default: list[str], description: str, count: int = 7) -> list[str]:
    """Declare the arm's joint names (a string array: :func:`declare` validates lists as numbers);
    ``count`` distinct non-empty names or :class:`ParameterError`."""
    try:
        names = node.declare_parameter("joint_names", list(default), ParameterDescriptor(description=description)).value
    except Exception as exc:  # rclpy raises several types for a bad override; name the parameter
        raise ParameterError(f"parameter 'joint_names': {exc}") from exc
    if (not isinstance(names, (list, tuple)) or len(names) != count or len(set(names)) != count
            or not all(isinstance(n, str) and n for n in names)):
        raise ParameterError(f"parameter 'joint_names' must be {count} distinct joint names, got {names!r}")
    return list(names)


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


class StampLeadGuard:
    """Drops messages stamped more than ``max_lead_s`` ahead of a node's clock: a wrong clock or a
    corrupt stamp, not a frame. Taken as the newest, one such stamp keeps every later real frame
    "older" (perception ages, turn edges and simulator pacing all went wrong that way in the fault
    campaign), so the node ignores it, counts it per topic in :attr:`counts` and logs it
    (throttled), naming ``what`` it does instead. Before the node's clock has started (sim time not
    yet received: 0) nothing is judged."""

    def __init__(self, node: Node, max_lead_s: float, what: str = "ignoring", hint: str = "",
                 throttle_s: float = 2.0):
        self._node = node
        self.max_lead_s = float(max_lead_s)
        self._what = what
        self._hint = hint
        self._throttle_s = float(throttle_s)
        #: Messages dropped so far, per topic.
        self.counts: dict[str, int] = {}

    def ahead(self, topic: str, stamp_s: float) -> bool:
        """Whether ``stamp_s`` on ``topic`` is too far ahead (then counted and logged: drop it)."""
        now = now_s(self._node)
        lead_s = stamp_s - now
        if now <= 0.0 or lead_s <= self.max_lead_s:
            return False
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self._node.get_logger().error(
            f"{self._what} {topic} stamped {lead_s:.3f} s ahead of this node's clock (max_stamp_lead_s "
            f"{self.max_lead_s:g} s; {self.counts[topic]} so far){self._hint}", throttle_duration_sec=self._throttle_s)
        return True


def param_files_in_args(argv: Sequence[str]) -> list[str]:
    """The files named by ``--params-file`` in the ``--ros-args`` sections of a command line."""
    files: list[str] = []
    in_ros_args = False
    tokens = iter(argv)
    for token in tokens:
        if token == "--ros-args":
            in_ros_args = True
        elif token == "--":
            in_ros_args = False
        elif in_ros_args and token == "--params-file":
            path = next(tokens, None)
            if path is None:
                raise ParamFileError("--params-file must be followed by the path of a parameter file")
            files.append(path)
    return files


def _one_line(exc: BaseException) -> str:
    """rcl's error text on one line, without its C source locations (', at /src/parse.c:391')."""
    return re.sub(r",? at \S+\.c:\d+", "", " ".join(str(exc).split()))


def _init_rclpy(args) -> None:
    """``rclpy.init``; what rcl writes to stderr while failing is held back (the caller reports
    the failure in one line), and written out as usual when init succeeds."""
    try:
        saved_fd = os.dup(2)
    except OSError:  # no usable stderr to redirect
        rclpy.init(args=args)
        return
    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        os.dup2(held.fileno(), 2)
        try:
            rclpy.init(args=args)
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
        held.seek(0)
        text = held.read()
    if text:
        os.write(2, text)


def _flat_keys(params: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in params.items():
        keys |= _flat_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return keys


def _node_key_matches(key: str, node_fqn: str) -> bool:
    """Does a parameter file's node key (``coop_sim``, ``/ns/coop_sim``, ``/**``, ``/*/coop_sim``) apply?"""
    key = key if key.startswith("/") else "/" + key
    pattern = "".join(".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part)
                      for part in re.split(r"(\*\*|\*)", key))
    return re.fullmatch(pattern, node_fqn) is not None


def _where_set(exc: ParameterError, files: dict[str, dict]) -> str:
    """`` (set in FILE)`` for the last parameter file that sets the bad parameter, or ''."""
    if not exc.parameter or not exc.node_fqn:
        return ""
    for path, data in reversed(list(files.items())):
        for key, body in data.items():
            if _node_key_matches(str(key), exc.node_fqn) and exc.parameter in _flat_keys(body["ros__parameters"]):
                return f" (set in {path})"
    return ""


#: A node's exit status when it refuses its start-up input (arguments, parameter files, parameter
#: values); ``coop-robot sim`` exits with it too (the graph runner reports such a node as
#: :class:`coop_robot.runner.InputRefused`).
EXIT_BAD_INPUT = 2


def refusal_text(exc: BaseException, files: dict[str, dict]) -> str:
    """What a node refusing to start says about ``exc`` (one line): a parameter file
    (:class:`ParamFileError`), a parameter value (:class:`ParameterError`, with the file that set
    it, from ``files``: path -> loaded file) or what ``rclpy.init`` refused (RuntimeError)."""
    if isinstance(exc, ParameterError):
        text = f"invalid parameter: {exc}{_where_set(exc, files)}"
    elif isinstance(exc, ParamFileError):
        text = f"cannot start: {exc}"
    else:
        text = f"cannot start: {_one_line(exc)}"
    return " ".join(text.split())  # a YAML parser's message spans several lines


def _refuse(text: str) -> int:
    """One line on stderr, exit status 2."""
    print("[coop_robot] " + text, file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def node_class(module_name: str) -> type[Node]:
    """The one rclpy Node subclass that ``module_name`` (a node executable's module) defines."""
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    classes = [obj for obj in vars(module).values()
               if inspect.isclass(obj) and issubclass(obj, Node) and obj is not Node and obj.__module__ == module_name]
    if len(classes) != 1:
        raise RuntimeError(f"{module_name} must define exactly one rclpy Node class, found {len(classes)}")
    return classes[0]


def spin_events(node: Node) -> None:
    """Spin ``node`` with rclpy's ``EventsExecutor`` until its context shuts down (Ctrl-C, an
    external shutdown: ``ExternalShutdownException`` or a return, as from ``rclpy.spin``); a
    callback's exception ends the spin as with ``rclpy.spin``.

    rclpy's ``SingleThreadedExecutor`` rebuilds its wait set in Python from every entity of the
    node on each wake, and a message wakes it twice (its guard condition is triggered after each
    callback): with a node on sim time taking every ``/clock`` message that is most of a light
    node's CPU. The ``EventsExecutor`` waits and dispatches in C++. It is driven here by
    ``spin_once`` with a timeout: its ``spin()`` in the pip wheels of rclpy 7.1.5 / 7.1.6 never fires
    a timer, busy-spins a core and ignores Ctrl-C, while ``spin_once`` fires timers on the wall
    clock and on sim time, and returns when the context shuts down (``bench/policy_node_cpu.py``,
    variants ``events`` and ``single``)."""
    from rclpy.experimental import EventsExecutor  # noqa: PLC0415 -- only the nodes that ask for it

    executor = EventsExecutor(context=node.context)
    executor.add_node(node)
    try:
        while node.context.ok():
            executor.spin_once(timeout_sec=1.0)
    finally:
        executor.shutdown()


def _enable_stack_dumps() -> None:
    """Stacks on :data:`STACK_DUMP_SIGNAL`, and on a crash (SIGSEGV, SIGABRT, ...: a node that dies
    in the middleware leaves where it was in its log, not only an exit code)."""
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
        faulthandler.register(STACK_DUMP_SIGNAL, file=sys.stderr, all_threads=True, chain=False)
    except (AttributeError, ValueError, OSError, RuntimeError):  # no usable stderr or no such signal here
        pass


def run_node(factory: Callable[[], Node], args=None, spin: Callable[[Node], None] | None = None) -> int:
    """Standard ``main``: init, build the node, spin (``spin``, default ``rclpy.spin``), and always
    shut down cleanly.

    Ctrl-C (SIGINT) and an external shutdown end the spin; SIGUSR1 prints every thread's stack
    (:data:`STACK_DUMP_SIGNAL`) and nothing else. A bad start-up is refused with exit
    status 2 and one line on stderr naming the file or parameter and the problem, never a
    traceback, so a launch file shows what to fix: a ``--params-file`` that is missing, not YAML,
    not in the ROS 2 layout, or holds a value ROS 2 cannot carry (checked with
    :func:`coop_robot.params.load_param_file` before ``rclpy.init``); anything else ``rclpy.init``
    refuses; a parameter of the wrong type or out of range (:class:`ParameterError`).
    """
    _enable_stack_dumps()
    try:
        files = {path: load_param_file(path) for path in param_files_in_args(sys.argv if args is None else args)}
    except ParamFileError as exc:
        return _refuse(refusal_text(exc, {}))
    try:
        _init_rclpy(args)
    except RuntimeError as exc:  # rcl's own argument and parameter file checks (RCLError)
        return _refuse(refusal_text(exc, files))
    node = None
    code = 0
    try:
        node = factory()
        (spin or rclpy.spin)(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ParameterError as exc:
        code = _refuse(refusal_text(exc, files))
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


def refuse_parameter_changes(what: str):
    """A set-parameters callback for a node that reads its parameters once, at start-up: any change
    but ``use_sim_time`` is refused, naming the parameters and ``what`` ("controller parameters")."""
    def callback(params) -> SetParametersResult:
        names = [p.name for p in params if p.name != "use_sim_time"]
        if names:
            return SetParametersResult(successful=False, reason=(
                f"{what} are read at start-up; restart the node to change {', '.join(names)}"))
        return SetParametersResult(successful=True)
    return callback


class SessionComplete(Exception):
    """Raised inside a callback by a node that has finished its job (ends the spin cleanly)."""


def ssm_message(sample):
    """A ``diagnostic_msgs/DiagnosticArray`` carrying one :class:`~coop_robot.timing.ssm_sample.SsmSample`
    (the ``/controller/ssm`` and ``/sim/ground_truth/ssm`` format)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: PLC0415

    from coop_robot.timing.ssm_sample import SSM_STATUS_NAME  # noqa: PLC0415

    msg = DiagnosticArray()
    msg.header.stamp = s_to_stamp(sample.t_s)
    msg.status = [DiagnosticStatus(name=SSM_STATUS_NAME,
                                   values=[KeyValue(key=k, value=v) for k, v in sample.to_key_values()])]
    return msg


class LatencyReporter:
    """Latencies of this node's hops of the control path (:class:`~coop_robot.timing.keepup.LatencyStats`),
    published on ``/diagnostics`` once a second as ``coop_robot: latency <hop>`` statuses (count and
    session p50 / p99 / max in seconds, graph clock); ``bench/control_latency.py`` reads them from a
    recording."""

    def __init__(self, node, hops, publisher=None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415

        from coop_robot.timing.keepup import LatencyStats  # noqa: PLC0415

        self.node = node
        self.stats = {hop: LatencyStats() for hop in hops}
        # The node's own /diagnostics publisher when it has one (one publisher per node and topic).
        self._pub = publisher if publisher is not None else node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        node.create_timer(1.0, self.publish)

    def publish(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: PLC0415

        from coop_robot.timing.keepup import LATENCY_STATUS_PREFIX  # noqa: PLC0415

        arr = DiagnosticArray()
        arr.header.stamp = self.node.get_clock().now().to_msg()
        for hop, stats in self.stats.items():
            if stats.count == 0:
                continue
            summary = stats.summary()
            arr.status.append(DiagnosticStatus(
                level=DiagnosticStatus.OK, name=LATENCY_STATUS_PREFIX + hop,
                message=f"p50 {1e3 * summary['p50_s']:.1f} ms, p99 {1e3 * summary['p99_s']:.1f} ms "
                        f"over {summary['count']}",
                values=[KeyValue(key=k, value=f"{v:.6f}" if isinstance(v, float) else str(v))
                        for k, v in summary.items()]))
        if arr.status:
            self._pub.publish(arr)

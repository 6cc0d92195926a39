"""Start a :mod:`coop_robot.graph` as separate node processes (what ``ros2 launch`` does).

Used where the ROS 2 ``launch`` package is not installed (the pip wheels). Every node is its own
process talking over DDS; the runner only starts them, watches them, shows progress and shuts
them all down (SIGINT, then SIGTERM, then SIGKILL) however the session ends; a node still running
when it is to be killed is first asked for its threads' stacks (SIGUSR1,
:data:`coop_robot.nodes.common.STACK_DUMP_SIGNAL`), which land in its log. A node with a
``ready_line`` (the recorder) must print it before the next nodes start, and nodes marked
``stops_last`` (the recorder) are stopped only after all the others have exited, so the bag holds
everything they published. :func:`run_session` refuses a domain where nodes with the graph's
names already run, and ends the session when a second node with one of them appears
(:mod:`coop_robot.domain_guard`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from coop_robot.domain_guard import GraphProbe, discovery_is_local, rtps_ports_in_use
from coop_robot.graph import NodeSpec, parameter_files
from coop_robot.params import load_param_file


class SessionError(RuntimeError):
    """A node failed or the session did not finish in time."""


class InputRefused(SessionError):
    """A node refused its start-up input -- an argument, parameter file or parameter value -- and
    exited with :data:`coop_robot.nodes.common.EXIT_BAD_INPUT` (2)."""


#: A node's exit status when it refuses its input (coop_robot.nodes.common.EXIT_BAD_INPUT; not
#: imported from there, which would load rclpy with the runner).
_EXIT_BAD_INPUT = 2


def _node_exit_error(proc, code: int, when: str, tail: str) -> SessionError:
    """The error for a node that exited with ``code`` ``when`` (e.g. "while starting")."""
    if code == _EXIT_BAD_INPUT:
        refusal = [ln.strip() for ln in tail.splitlines() if ln.strip().startswith("[coop_robot]")]
        reason = refusal[-1][len("[coop_robot] "):] if refusal else f"see {proc.log_path}"
        return InputRefused(f"node '{proc.spec.name}' refused its input {when}: {reason} (log: {proc.log_path})")
    return SessionError(f"node '{proc.spec.name}' exited with code {code} {when}; "
                        f"last lines of {proc.log_path}:\n{tail}")


def isolated_env(domain_id: int | None = None, base: dict | None = None) -> dict:
    """Environment for the graph: the caller's ROS_DOMAIN_ID if set, else a random one (one that no
    participant on this host uses, if discovery stays on this host), and discovery kept on this
    host unless the caller chose otherwise."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    elif "ROS_DOMAIN_ID" not in env:
        ids = random.sample(range(1, 101), 100)
        free = [d for d in ids if not rtps_ports_in_use(d)] if discovery_is_local(env) else []
        env["ROS_DOMAIN_ID"] = str((free or ids)[0])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def node_command(spec: NodeSpec, params_dir: Path, extra_param_files: list[Path] = ()) -> list[str]:
    """The command line that runs one node as ``launch_ros`` runs it for the launch files: the same
    arguments after the executable (``python -m <module>`` here, ``lib/coop_robot/<executable>`` there)."""
    cmd = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
    for path in parameter_files(spec, params_dir, tuple(extra_param_files)):
        cmd += ["--params-file", path]
    for src, dst in spec.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


@dataclass
class _Proc:
    spec: NodeSpec
    popen: subprocess.Popen
    log_path: Path
    log: TextIO
    reader: threading.Thread | None = None
    awaited: dict[str, threading.Event] = field(default_factory=dict)   # line prefix -> seen


@dataclass
class GraphRunner:
    specs: list[NodeSpec]
    log_dir: Path
    env: dict
    extra_param_files: list[Path] = field(default_factory=list)
    on_line: Callable[[str, str], None] | None = None   # (node name, stdout line)
    procs: list[_Proc] = field(default_factory=list)
    ready_timeout_s: float = 60.0
    #: The command line of each spec, if given (e.g. what a launch file produced); else node_command's.
    commands: list[list[str]] | None = None

    def start(self) -> None:
        for f in self.extra_param_files:
            load_param_file(f)  # reject a bad file before anything starts
        self.log_dir.mkdir(parents=True, exist_ok=True)
        params_dir = self.log_dir / "params"
        # Every command line first: a bad parameter file stops the session before any node starts.
        commands = self.commands or [node_command(spec, params_dir, self.extra_param_files) for spec in self.specs]
        if len(commands) != len(self.specs):
            raise ValueError(f"{len(commands)} command lines for {len(self.specs)} nodes")
        for spec, cmd in zip(self.specs, commands):
            log_path = self.log_dir / f"{spec.name}.log"
            log = open(log_path, "w", encoding="utf-8")
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            # A Ctrl-C or SIGTERM between the fork and the registration would leave a node that
            # shutdown() cannot see running on its own: it waits until the node is registered.
            with interrupts_deferred():
                popen = subprocess.Popen(
                    cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    bufsize=1, start_new_session=True,
                )
                proc = _Proc(spec, popen, log_path, log,
                             awaited={spec.ready_line: threading.Event()} if spec.ready_line else {})
                proc.reader = threading.Thread(target=self._pump, args=(proc,), daemon=True)
                proc.reader.start()
                self.procs.append(proc)
            if spec.ready_line:
                self._wait_line(proc, spec.ready_line, self.ready_timeout_s)

    def _wait_line(self, proc: _Proc, prefix: str, timeout_s: float) -> None:
        """Block until ``proc`` prints a line starting with ``prefix`` (SessionError if it dies first)."""
        deadline = time.monotonic() + timeout_s
        while not proc.awaited[prefix].wait(0.05):
            code = proc.popen.poll()
            if code is not None:
                raise _node_exit_error(proc, code, "while starting", self.tail(proc))
            if time.monotonic() > deadline:
                raise SessionError(f"node '{proc.spec.name}' did not print {prefix!r} within {timeout_s:.0f} s "
                                   f"(log: {proc.log_path})")

    def _pump(self, proc: _Proc) -> None:
        for line in proc.popen.stdout:
            proc.log.write(line)
            proc.log.flush()
            for prefix, seen in proc.awaited.items():
                if line.startswith(prefix):
                    seen.set()
            if self.on_line is not None:
                self.on_line(proc.spec.name, line.rstrip("\n"))

    def wait(self, timeout_s: float, check: Callable[[], str | None] | None = None,
             check_period_s: float = 1.0) -> _Proc:
        """Block until a session-ending node exits (returned) or any other node dies (raises
        :class:`SessionError`; :class:`InputRefused` when it refused its input, exit status 2).
        ``check()``, every ``check_period_s``, returns a reason to end the session (raised as a
        :class:`SessionError`) or None."""
        deadline = time.monotonic() + timeout_s
        next_check = time.monotonic() + check_period_s
        while True:
            if check is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + check_period_s
                reason = check()
                if reason:
                    raise SessionError(reason)
            for proc in self.procs:
                code = proc.popen.poll()
                if code is None:
                    continue
                if proc.spec.ends_session and code == 0:
                    return proc
                raise _node_exit_error(proc, code, "before the session ended", self.tail(proc))
            if time.monotonic() > deadline:
                raise SessionError(f"session did not finish within {timeout_s:.0f} s (logs in {self.log_dir})")
            time.sleep(0.1)

    def signal_node(self, name: str, sig: int) -> int:
        """Send ``sig`` to the process of the node ``name`` (fault injection, :mod:`coop_robot.faults`)
        and return its pid. Raises KeyError for a node this runner did not start and
        ProcessLookupError for one that has exited."""
        for proc in self.procs:
            if proc.spec.name == name:
                if proc.popen.poll() is not None:
                    raise ProcessLookupError(f"node '{name}' has exited (code {proc.popen.returncode})")
                proc.popen.send_signal(sig)
                return proc.popen.pid
        raise KeyError(f"no node '{name}' in this graph; it has {[p.spec.name for p in self.procs]}")

    @staticmethod
    def tail(proc: _Proc, lines: int = 15) -> str:
        if proc.reader is not None:
            proc.reader.join(timeout=2.0)
        text = proc.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join("    " + ln for ln in text[-lines:])

    def shutdown(self, grace_s: float = 8.0, drain_s: float = 0.5) -> dict[str, int]:
        """SIGINT every node (clean rclpy shutdown), escalate to SIGTERM/SIGKILL; exit codes.

        Nodes marked ``stops_last`` go after all the others have exited, and ``drain_s`` later,
        so what the others published last has arrived.
        """
        first = [p for p in self.procs if not p.spec.stops_last]
        last = [p for p in self.procs if p.spec.stops_last]
        self._stop(first, grace_s)
        if any(p.popen.poll() is None for p in last):
            time.sleep(drain_s)
            self._stop(last, grace_s)
        codes = {}
        for p in self.procs:
            codes[p.spec.name] = p.popen.wait()
            if p.reader is not None:
                p.reader.join(timeout=2.0)
            p.log.close()
        return codes

    @staticmethod
    def _stop(procs: list[_Proc], grace_s: float) -> None:
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            alive = [p for p in procs if p.popen.poll() is None]
            if not alive:
                break
            if sig == signal.SIGKILL:
                _dump_stacks(alive)
            for p in alive:
                try:
                    os.killpg(p.popen.pid, sig)
                    os.killpg(p.popen.pid, signal.SIGCONT)  # a stopped (SIGSTOP) node handles it now
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and any(p.popen.poll() is None for p in alive):
                time.sleep(0.05)


#: ``kill -USR1 <pid>``: a node run by :func:`coop_robot.nodes.common.run_node` prints every thread's
#: Python stack to stderr and goes on (what a node that will not stop is doing). Sent before a kill.
STACK_DUMP_SIGNAL = signal.SIGUSR1


def _dump_stacks(procs: list[_Proc], wait_s: float = 1.0) -> None:
    """Ask each node in ``procs`` (about to be killed) what it is stuck in: its threads' stacks
    go to its log. The signal goes to the node's own process only (a child it started may not
    handle it)."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            p.popen.send_signal(STACK_DUMP_SIGNAL)
    time.sleep(wait_s)


def stop_like_ctrl_c(popen: subprocess.Popen, grace_s: float = 10.0) -> int:
    """End one node process as Ctrl-C does: SIGINT (rclpy shuts down cleanly and its DDS participant
    says goodbye, so its peers need not time it out), SIGTERM if it has not gone within ``grace_s``,
    SIGKILL 3 s after that. Returns its exit code. (A whole session's nodes: :meth:`NodeProcesses.shutdown`.)"""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
        if popen.poll() is not None:
            break
        try:
            popen.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            popen.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return popen.wait()


def _second_graph(probe: GraphProbe, names: list[str], domain: str) -> str | None:
    """Why the session must end when a second node with one of ``names`` runs on its domain; else None."""
    twice = probe.duplicated(names)
    if not twice:
        return None
    return (f"a second node named {', '.join(twice)} appeared on ROS_DOMAIN_ID={domain} (another session started "
            f"there at the same time?): the two graphs merged; ending this one")


@contextlib.contextmanager
def _termination_signals_to(handler):
    """For the ``with`` body, SIGTERM, SIGHUP and SIGINT go to ``handler``; yields the handlers they
    had, restored afterwards. Main thread only: elsewhere nothing changes and it yields None."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield previous
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def interrupted_by_termination():
    """While running a session, SIGTERM and SIGHUP (a supervisor, a closed terminal) interrupt it
    like Ctrl-C, so every node is shut down; and Ctrl-C works even when the command was started in
    the background of a script, where the shell leaves SIGINT ignored. Main thread only."""

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    with _termination_signals_to(interrupt):
        yield


@contextlib.contextmanager
def interrupts_deferred():
    """Hold SIGINT, SIGTERM and SIGHUP back for the ``with`` body, then act on the first that came as
    the handler in force would have (raise ``KeyboardInterrupt``, end the process, or nothing if it
    is ignored). For a few statements that must not be cut in two, such as starting a process and
    recording it. Main thread only (elsewhere the body runs as it is)."""
    held: list[int] = []
    with _termination_signals_to(lambda signum, _frame: held.append(signum)) as previous:
        yield
    if held:
        handler = previous[held[0]]
        if callable(handler):
            handler(held[0], None)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), held[0])


#: The sim node's periodic log line: "... (x0.24 real time) ...".
_SIM_SPEED = re.compile(r"\(x([0-9.]+) real time\)")
#: Log lines that say the graph is too slow for its inputs, counted for a session that runs out of
#: time: ``(node, text in the line, key in seen)``.
_STARVED = (("controller", "protective stop: no perception of the hand newer than", "late_perception_stops"),
            ("policy", "not keeping up:", "policy_behind"))


def _timeout_cause(seen: dict, max_turns, unit: str = "robot turns") -> str:
    """What a session that ran out of time had done (``unit``: what its tracker counts), and why it
    was slow when that is known."""
    text = f"{seen['turns']} of {max_turns} {unit} done"
    rtf = seen["real_time"]
    if rtf is not None:
        text += f"; the simulation last ran at {rtf:.2f}x real time"
        if rtf < 0.5:
            text += (" (it waits for perception: this machine is too busy for the graph -- free the cores, "
                     "or allow more time with --timeout-s)")
    stops, behind = seen.get("late_perception_stops", 0), seen.get("policy_behind", 0)
    if stops:
        text += (f"; the controller made {stops} protective stop{'s' if stops != 1 else ''} because perception "
                 "was older than ssm_max_hand_age_s (perception is not keeping up with the camera)")
    if behind:
        text += (f"; the policy said {behind} time{'s' if behind != 1 else ''} that it was not keeping up with "
                 "its rate_hz")
    return text


def run_session(specs: list[NodeSpec], *, log_dir: Path | None = None,
                timeout_s: float = 600.0, env: dict | None = None, extra_param_files: list[Path] = (),
                progress: TextIO | None = sys.stdout, guard_domain: bool = True) -> dict:
    """Run a graph whose turn tracker ends the session; return the summary the tracker wrote.

    With ``guard_domain``, raises :class:`coop_robot.domain_guard.DomainInUse` before any node
    starts when nodes with the graph's names already run on the domain, and ends the session with
    a :class:`SessionError` naming it when a second node with one of those names appears."""
    log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="coop_robot_"))
    ender = [s for s in specs if s.ends_session]
    if len(ender) != 1 or not ender[0].parameters.get("summary_json"):
        raise ValueError("the graph needs exactly one session-ending node "
                         "(a turn tracker with max_turns > 0 and a summary_json path)")

    seen = {"turns": 0, "real_time": None, **{key: 0 for _, _, key in _STARVED}}

    def show(node: str, line: str) -> None:
        if node == "turn_tracker" and line.startswith(("[turn_tracker] turn", "[turn_tracker] trial")):
            seen["turns"] += 1
            if progress is not None:
                progress.write("  " + line[len("[turn_tracker] "):] + "\n")
                progress.flush()
        elif node == "coop_sim":
            m = _SIM_SPEED.search(line)
            if m:
                seen["real_time"] = float(m.group(1))
        for starved_node, text, key in _STARVED:
            if node == starved_node and text in line:
                seen[key] += 1

    runner = GraphRunner(list(specs), log_dir, env if env is not None else isolated_env(),
                         [Path(f) for f in extra_param_files], on_line=show)
    domain = runner.env["ROS_DOMAIN_ID"]
    names = [s.name for s in specs]
    probe = GraphProbe(int(domain), runner.env) if guard_domain else None
    if probe is not None:
        try:
            probe.refuse_if_in_use(names)
        except BaseException:
            probe.close()
            raise
    if progress is not None:
        progress.write(f"starting {len(specs)} nodes (ROS_DOMAIN_ID={domain}, logs in {log_dir})\n")
        progress.flush()
    try:
        with interrupted_by_termination():
            runner.start()
            try:
                runner.wait(timeout_s, None if probe is None else lambda: _second_graph(probe, names, domain))
            except SessionError as exc:
                if not str(exc).startswith("session did not finish"):
                    raise
                unit = "sync trials" if ender[0].parameters.get("task") == "sync" else "robot turns"
                raise SessionError(f"{exc}: {_timeout_cause(seen, ender[0].parameters.get('max_turns'), unit)}") \
                    from None
    finally:
        codes = runner.shutdown()
        if probe is not None:
            probe.close()
    bad = {n: c for n, c in codes.items() if c not in (0, -signal.SIGINT)}
    if bad and progress is not None:
        killed = [n for n, c in bad.items() if c == -signal.SIGKILL]
        where = (f"; {', '.join(killed)} would not stop and was killed: the end of its log shows where it hung "
                 f"({log_dir})" if killed else "")
        progress.write(f"warning: nodes exited with non-zero codes at shutdown: {bad}{where}\n")
    path = Path(ender[0].parameters["summary_json"])
    with open(path, encoding="utf-8") as fh:
        summary = json.load(fh)
    summary["node_exit_codes"] = codes
    summary["log_dir"] = str(log_dir)
    return summary

"""How the session runner stops a node that will not stop: SIGINT, SIGTERM, then its stacks in
its log (what it was stuck in), then SIGKILL. On a real rclpy node process."""

import sys
import textwrap

from conftest import ros_env

from coop_robot.graph import NodeSpec
from coop_robot.runner import GraphRunner

#: A node that starts, spins, and then hangs in its shutdown (run_node calls close() after the spin).
_STUCK_NODE = textwrap.dedent("""
    import sys, time
    from rclpy.node import Node
    from coop_robot.nodes.common import run_node

    def stuck_in_close():
        while True:
            time.sleep(0.2)

    class Stuck(Node):
        def __init__(self):
            super().__init__("stuck_node")
            self._up = self.create_timer(0.01, self.spinning)

        def spinning(self):  # "up" once it spins: a SIGINT before then would end it in __init__
            self._up.cancel()
            print("up", flush=True)

        def close(self):
            stuck_in_close()

    sys.exit(run_node(Stuck, sys.argv))
""")


def test_a_node_stuck_in_its_shutdown_has_its_stack_logged_before_it_is_killed(tmp_path, ros_domain):
    spec = NodeSpec("stuck", "stuck", "stuck", (), ready_line="up")
    runner = GraphRunner([spec], tmp_path / "logs", ros_env(ros_domain),
                         commands=[[sys.executable, "-c", _STUCK_NODE]])
    try:
        runner.start()
    finally:
        codes = runner.shutdown(grace_s=1.0)
    assert codes == {"stuck": -9}  # neither SIGINT nor SIGTERM ended it
    log = (tmp_path / "logs" / "stuck.log").read_text()
    # faulthandler's dump: the thread, and the call it was stuck in, below run_node's close().
    assert "most recent call first" in log
    assert log.index("in stuck_in_close") < log.index("in close") < log.index("in run_node"), log


def test_a_node_that_stops_on_sigint_is_not_asked_for_its_stack(tmp_path, ros_domain):
    clean = _STUCK_NODE.replace("\n        stuck_in_close()\n", "\n        pass\n")
    assert clean != _STUCK_NODE
    spec = NodeSpec("clean", "clean", "clean", (), ready_line="up")
    runner = GraphRunner([spec], tmp_path / "logs", ros_env(ros_domain), commands=[[sys.executable, "-c", clean]])
    try:
        runner.start()
    finally:
        codes = runner.shutdown(grace_s=30.0)
    assert codes["clean"] in (0, -2)
    assert "most recent call first" not in (tmp_path / "logs" / "clean.log").read_text()


def test_an_interrupt_while_a_node_starts_still_reaches_that_node(tmp_path, monkeypatch):
    # The cause of a flaky `test_a_terminated_session_shuts_every_node_down`: SIGTERM arrived just
    # after the last node's process was forked and before the runner had recorded it, so shutdown()
    # never saw it and it ran on. The interrupt must wait until the node is recorded.
    import os
    import signal
    import subprocess

    from coop_robot import runner as runner_module
    from coop_robot.runner import interrupted_by_termination

    real_popen = subprocess.Popen

    def popen_then_terminated(*args, **kwargs):
        child = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)    # a supervisor's SIGTERM, right after the fork
        for _ in range(1000):                   # (a handler would have run in here)
            pass
        return child

    monkeypatch.setattr(runner_module.subprocess, "Popen", popen_then_terminated)
    spec = NodeSpec("sleeper", "sleeper", "sleeper", ())
    runner = GraphRunner([spec], tmp_path / "logs", dict(os.environ),
                         commands=[[sys.executable, "-c", "import time; time.sleep(60)"]])
    interrupted = False
    try:
        with interrupted_by_termination():
            runner.start()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        codes = runner.shutdown(grace_s=2.0)
    assert interrupted                          # the SIGTERM still ended the start ...
    assert len(runner.procs) == 1               # ... once the node was recorded,
    assert runner.procs[0].popen.poll() is not None and "sleeper" in codes   # so it was stopped


def test_deferred_interrupts_act_as_the_handler_in_force_would_have():
    import os
    import signal

    import pytest

    from coop_robot.runner import interrupts_deferred

    reached = False
    with pytest.raises(KeyboardInterrupt):      # SIGINT's default handler in Python
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            reached = True
    assert reached
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupts_deferred():             # ignored before: ignored after
            os.kill(os.getpid(), signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, previous)

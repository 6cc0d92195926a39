"""coop_robot.procfs (process facts from /proc) and runner.stop_like_ctrl_c, on real processes."""

import os
import subprocess
import sys

import pytest

from coop_robot import procfs
from coop_robot.runner import stop_like_ctrl_c

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its PID names no process (until the kernel reuses it, far later)
    return child.pid


def test_this_process_as_proc_reports_it():
    me = os.getpid()
    assert procfs.parent_pid(me) == os.getppid()
    assert procfs.is_alive(me)
    sum(i * i for i in range(200_000))  # some CPU
    assert 0.0 < procfs.cpu_seconds(me) <= sum(os.times()[:2]) + 0.05
    assert procfs.age_seconds(me) > 0.0
    assert procfs.argv(me)[0] == procfs.cmdline(me).split(" ")[0] and "python" in procfs.cmdline(me)
    assert me in procfs.process_parents()
    assert me in procfs.descendants({os.getppid()}, procfs.process_parents())


def test_a_gone_or_zombie_process_is_none_not_an_error():
    gone = _gone_pid()
    assert procfs.stat_fields(gone) is None and procfs.cpu_seconds(gone) is None
    assert procfs.age_seconds(gone) is None and procfs.parent_pid(gone) is None
    assert procfs.cmdline(gone) == "" and not procfs.is_alive(gone)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while procfs.stat_fields(zombie.pid) is not None and procfs.stat_fields(zombie.pid)[0] != b"Z":
        os.sched_yield()
    assert not procfs.is_alive(zombie.pid)  # ended, not reaped yet
    zombie.wait()


def test_a_command_name_with_parentheses_and_spaces_does_not_shift_the_fields(tmp_path):
    # comm is the executable's name (at most 15 characters): give it ") x (" to read past.
    exe = tmp_path / "a) b (c"
    exe.symlink_to(sys.executable)
    child = subprocess.Popen([str(exe), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert procfs.parent_pid(child.pid) == os.getpid()
        assert procfs.is_alive(child.pid)
    finally:
        child.communicate(b"")


def test_stop_like_ctrl_c_sends_sigint_first_and_escalates_only_when_ignored():
    clean = subprocess.Popen([sys.executable, "-c",
                              "import signal, sys, time\n"
                              # A shell running this suite in the background leaves SIGINT ignored, and
                              # a child inherits that; Python then raises no KeyboardInterrupt. Ask for it.
                              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                              "try:\n    print('up', flush=True)\n    time.sleep(60)\n"
                              "except KeyboardInterrupt:\n    sys.exit(7)"], stdout=subprocess.PIPE)
    clean.stdout.readline()
    assert stop_like_ctrl_c(clean, grace_s=30.0) == 7  # its own clean exit on SIGINT
    deaf = subprocess.Popen([sys.executable, "-c",
                             "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                             "print('up', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE)
    deaf.stdout.readline()
    assert stop_like_ctrl_c(deaf, grace_s=0.5) == -15  # SIGINT ignored: SIGTERM
    clean.stdout.close()
    deaf.stdout.close()

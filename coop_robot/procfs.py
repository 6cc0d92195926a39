"""Reading other processes from Linux's ``/proc``: parent, state, CPU time, age, command line.

One place for the parsing of ``/proc/<pid>/stat`` that the Ray helpers (process trees, cluster
shutdown) and the load benchmarks (a node's share of a core) need. Every reader returns ``None``
(or an empty result) for a process that has gone or when ``/proc`` does not exist (off Linux),
never raises for that.

``/proc/<pid>/stat`` is ``pid (comm) state ppid ...``; ``comm`` may hold spaces and parentheses,
so the fields are split after the *last* ``)`` (proc(5)).
"""

from __future__ import annotations

import os

#: Clock ticks per second: the unit of the CPU and start times in ``/proc/<pid>/stat``.
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# Indices into the fields after "(comm)": proc(5) numbers them from 1 with pid, so field n is n - 3 here.
_STATE, _PPID, _UTIME, _STIME, _STARTTIME = 0, 1, 11, 12, 19


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 1:].split()
    except (OSError, ValueError):
        return None
    return fields if len(fields) > _STARTTIME else None


def parent_pid(pid: int) -> int | None:
    fields = stat_fields(pid)
    return None if fields is None else int(fields[_PPID])


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie (ended, not yet reaped)."""
    fields = stat_fields(pid)
    return fields is not None and fields[_STATE] != b"Z"


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time the process has used (s)."""
    fields = stat_fields(pid)
    return None if fields is None else (int(fields[_UTIME]) + int(fields[_STIME])) / CLK_TCK


def age_seconds(pid: int) -> float | None:
    """Seconds since the process started."""
    fields = stat_fields(pid)
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None if fields is None else uptime - int(fields[_STARTTIME]) / CLK_TCK


def argv(pid: int) -> list[str]:
    """The process's arguments (its title first, as ``setproctitle`` left it), [] when unreadable or gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1 if raw.endswith(b"\0") else None]]


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces ("" when unreadable or gone)."""
    return " ".join(argv(pid))


def process_parents() -> dict[int, int]:
    """Every process's parent PID (empty off Linux)."""
    try:
        entries = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return {}
    parents: dict[int, int] = {}
    for pid in entries:
        ppid = parent_pid(pid)
        if ppid is not None:
            parents[pid] = ppid
    return parents


def descendants(roots: set[int], parents: dict[int, int]) -> set[int]:
    """``roots`` and every process descended from them."""
    tree, grew = set(roots), True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree

"""The interaction tasks the package runs: one list of their names, and the check every entry point uses.

* ``turn_taking`` (the default): the robot and the person take turns in the shared zone
  (docs/architecture.md).
* ``sync``: synchronous joint action (issue 14, docs/science_sync.md): each reaches its own
  target outside the zone after a cue, and a trial succeeds when both arrive within a time window.
"""

from __future__ import annotations

TASKS = ("turn_taking", "sync")
DEFAULT_TASK = "turn_taking"


def check_task(task: object) -> str:
    """``task`` when it names one of :data:`TASKS`; ValueError naming it and the known ones otherwise."""
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task

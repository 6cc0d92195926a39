"""Scoring a fault session on the simulator's ground truth (no ROS).

What counts (the acceptance of the fault campaign, issue 11):

* **entry while the partner is inside**: a ground-truth ``robot_enter`` while the partner's hand
  is in the zone (``partner_enter`` .. ``partner_exit`` of ``/sim/ground_truth/events``);
* **contact**: a ``contact_begin`` (any physics contact between the robot and the person);
* **outcome** of every injected fault (:func:`classify`): ``survived`` (the session went on: it
  completed, or a robot turn ended after the fault), ``ended`` (the session ended with a message
  naming the node the fault acted on: :meth:`coop_robot.faults.plan.Fault.consumers`), or
  ``unexplained`` (it ended, or hung, without such a message) -- a failure;
* **processes left behind** after the session (checked by the session runner).

Also reported, not judged: SSM violations on ground truth (:func:`coop_robot.control.ssm.violates`,
the one definition) inside each fault's window, and outside every window (the baseline: the
graph shows a few without faults, docs/safety.md).

A fault's **window** runs from its injection to :data:`SETTLE_S` of sim time after its effect
ended; an incident inside it is attributed to the fault.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from coop_robot.control.ssm import violates
from coop_robot.faults.plan import Fault

#: Sim seconds after a fault's effect ended during which an incident is still attributed to it.
SETTLE_S = 2.0

SURVIVED, ENDED, UNEXPLAINED, NOT_INJECTED = "survived", "ended", "unexplained", "not_injected"
#: How the end message of a hung session starts (coop_robot.faults.session.no_progress).
HUNG_PREFIX = "session hung:"
OUTCOMES = (SURVIVED, ENDED, UNEXPLAINED, NOT_INJECTED)

_NODE_IN_MESSAGE = re.compile(r"node '([^']+)'")


@dataclass(frozen=True)
class Incident:
    """A safety incident on ground truth: ``kind`` is ``entry_while_partner_inside`` or ``contact``."""

    kind: str
    t_s: float


def incidents(events: list[tuple[float, str]]) -> list[Incident]:
    """Entries while the partner is inside, and contacts, from ground-truth events ``(t_s, name)``
    in time order."""
    partner_in = False
    found = []
    for t_s, name in sorted(events, key=lambda e: e[0]):
        if name == "partner_enter":
            partner_in = True
        elif name == "partner_exit":
            partner_in = False
        elif name == "robot_enter" and partner_in:
            found.append(Incident("entry_while_partner_inside", t_s))
        elif name == "contact_begin":
            found.append(Incident("contact", t_s))
    return found


def violation_starts(samples: list[tuple[float, float, float, float]]) -> list[float]:
    """Start times of SSM violation episodes in ground-truth samples ``(t_s, separation_m,
    protective_m, robot_closing_mps)`` (consecutive violating samples are one episode; a NaN
    sample carries no information)."""
    starts, inside = [], False
    for t_s, sep, sp, closing in sorted(samples, key=lambda s: s[0]):
        if math.isnan(sep) or math.isnan(sp):
            continue
        now = violates(sep, sp, closing)
        if now and not inside:
            starts.append(t_s)
        inside = now
    return starts


@dataclass
class FaultRecord:
    """What happened to one planned fault in a session (the harness fills the injection part)."""

    fault: Fault
    injected: bool = False
    injected_wall_s: float | None = None      # since the session started (wall)
    injected_sim_s: float | None = None
    cleared_sim_s: float | None = None        # the fault's effect ended (sim time)
    cleared_wall_s: float | None = None       # ... and wall time since the session started
    detail: str = ""                          # what the injector did (messages sent, signal, pid)
    reactions: list[str] = field(default_factory=list)   # warnings/errors of the consumers meanwhile
    outcome: str = NOT_INJECTED
    outcome_reason: str = ""
    crash: bool = False                       # the session ended because a node died on this fault's input
    incidents: list[Incident] = field(default_factory=list)
    ssm_violations: int = 0
    robot_turns_after: int = 0

    def window(self) -> tuple[float, float] | None:
        """Sim-time window ``(start, end)`` for attribution; None if never injected."""
        if not self.injected or self.injected_sim_s is None:
            return None
        end = self.cleared_sim_s if self.cleared_sim_s is not None else self.injected_sim_s
        return self.injected_sim_s, max(end, self.injected_sim_s) + SETTLE_S

    def as_dict(self) -> dict:
        return {"fault": self.fault.as_dict(), "label": self.fault.label(), "injected": self.injected,
                "injected_wall_s": self.injected_wall_s, "injected_sim_s": self.injected_sim_s,
                "cleared_sim_s": self.cleared_sim_s, "cleared_wall_s": self.cleared_wall_s,
                "detail": self.detail, "reactions": self.reactions,
                "outcome": self.outcome, "outcome_reason": self.outcome_reason, "crash": self.crash,
                "incidents": [{"kind": i.kind, "t_s": i.t_s} for i in self.incidents],
                "ssm_violations": self.ssm_violations, "robot_turns_after": self.robot_turns_after}


@dataclass(frozen=True)
class SessionEnd:
    """How a session ended: ``completed`` (the turn tracker finished its turns) or the ``message``
    of the error that ended it, and the sim time when the harness saw it end."""

    completed: bool
    message: str = ""
    t_s: float | None = None

    @property
    def node(self) -> str | None:
        """The node the end message names first (``node 'controller' exited ...``), if any."""
        match = _NODE_IN_MESSAGE.search(self.message)
        return match.group(1) if match else None


def classify(record: FaultRecord, end: SessionEnd, robot_exits: list[float],
             killed_after_s: float | None = None) -> None:
    """Set ``record.outcome`` (and its reason) from how the session ended, the ground-truth robot
    exits (sim s) and, if a kill ended the session, when it was injected (sim s); see the module
    docstring. A fault followed by a robot turn, or by the kill that ended the session, survived:
    the session went on after it."""
    fault = record.fault
    if not record.injected:
        record.outcome, record.outcome_reason = NOT_INJECTED, "its moment did not come before the session ended"
        return
    t0 = record.injected_sim_s if record.injected_sim_s is not None else -math.inf
    until = end.t_s if end.t_s is not None else math.inf
    record.robot_turns_after = sum(1 for t in robot_exits if t0 < t <= until)
    names_it = end.node in fault.consumers()
    if fault.terminal:
        if not end.completed and names_it:
            record.outcome, record.outcome_reason = ENDED, f"session ended naming {end.node}"
        else:
            record.outcome = UNEXPLAINED
            record.outcome_reason = ("the session completed although the node was killed" if end.completed
                                     else f"the session ended without naming {fault.target}: {_first_line(end)}")
        return
    cleared = record.cleared_sim_s if record.cleared_sim_s is not None else t0
    if end.completed:
        record.outcome, record.outcome_reason = SURVIVED, "the session completed its turns"
    elif record.robot_turns_after > 0:
        record.outcome = SURVIVED
        record.outcome_reason = f"{record.robot_turns_after} robot turn(s) after it, then: {_first_line(end)}"
    elif killed_after_s is not None and killed_after_s >= cleared:
        record.outcome = SURVIVED
        record.outcome_reason = f"the session went on until a later kill ended it: {_first_line(end)}"
    elif names_it:
        record.outcome, record.outcome_reason = ENDED, f"session ended naming {end.node}: {_first_line(end)}"
        record.crash = True
    else:
        record.outcome = UNEXPLAINED
        record.outcome_reason = f"no robot turn after it, and the session ended with: {_first_line(end)}"


def _first_line(end: SessionEnd) -> str:
    return end.message.strip().splitlines()[0] if end.message.strip() else "(no message)"


def attribute(records: list[FaultRecord], found: list[Incident],
              violations: list[float]) -> tuple[list[Incident], int]:
    """Give each record the incidents and SSM violation starts inside its window; return the
    incidents and the number of violations inside no window (baseline)."""
    unattributed, baseline = [], 0
    windows = [(r, r.window()) for r in records]
    for incident in found:
        hit = [r for r, w in windows if w and w[0] <= incident.t_s <= w[1]]
        for r in hit:
            r.incidents.append(incident)
        if not hit:
            unattributed.append(incident)
    for t_s in violations:
        hit = [r for r, w in windows if w and w[0] <= t_s <= w[1]]
        for r in hit:
            r.ssm_violations += 1
        if not hit:
            baseline += 1
    return unattributed, baseline

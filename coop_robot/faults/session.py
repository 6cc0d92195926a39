"""One fault session: the real graph, the faults of a :class:`~coop_robot.faults.plan.SessionPlan`
injected into it, scored on ground truth.

The graph is :func:`coop_robot.graph.sim_graph` (the one ``coop-robot sim`` runs) for the plan's
turns plus one (every fault has a turn after it), started by :class:`coop_robot.runner.GraphRunner`
on a random free ROS domain, with the consumers of the plan's links remapped to the injector's
relays. The :class:`~coop_robot.faults.injector.FaultInjector` joins the domain first. The session
ends when the turn tracker has its turns, when a node exits (the runner's error names it), when
the ground truth shows no turn progress for :data:`NO_PROGRESS_S` of sim time (hung: the message
says what the controller did meanwhile), or at the wall-clock time-out. After an error the ground
truth is watched a little longer (``observe_after_end_s``, wall; the arm's trajectory is still
playing), then every node is shut down and the harness checks that no process of the session is
left (``pgrep -f <log dir>/params/``: every node's command line names its parameter file there,
as test_cli checks ``coop-robot sim``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from coop_robot.faults.plan import LINKS, SessionPlan
from coop_robot.faults.score import (
    HUNG_PREFIX,
    FaultRecord,
    Incident,
    SessionEnd,
    attribute,
    classify,
    incidents,
    violation_starts,
)
from coop_robot.graph import NodeSpec, sim_graph
from coop_robot.runner import GraphRunner, SessionError, isolated_env

#: Log lines kept as a fault's "reactions" (rclpy's warning and error lines, Python's last traceback line).
_REACTION = re.compile(r"^\[(WARN|ERROR|FATAL)\] \[[\d.]+\] \[([^\]]+)\]: (.*)$|^(\w+(Error|Exception): .*)$")
#: Wall seconds after a fault's effect ended during which its consumers' log lines count as reactions.
REACTION_WINDOW_S = 1.0
#: Reactions kept per fault.
MAX_REACTIONS = 3


#: Sim seconds without turn progress (a robot or partner turn ending, a zone entry or exit) after
#: which the session counts as hung and is ended. The longest quiet stretch of a working session is
#: the erratic partner's: up to 2 s reaction, 2.5 s pause, a false start, reach and dwell (~8 s).
NO_PROGRESS_S = 12.0
_PROGRESS_EVENTS = frozenset({"robot_enter", "robot_exit", "partner_exit", "partner_turn_end"})


def no_progress(gt_events: list[tuple[float, str]], controller_events: list[tuple[float, str]], sim_now_s: float,
                limit_s: float = NO_PROGRESS_S) -> str | None:
    """Why the session is hung, or None: no turn progress on ground truth for ``limit_s`` of sim
    time; the message says what the controller announced since (its last events other than
    separation monitoring's, and how many of those)."""
    last = max((t for t, name in list(gt_events) if name in _PROGRESS_EVENTS), default=0.0)
    if sim_now_s - last <= limit_s:
        return None
    since = [(t, n) for t, n in list(controller_events) if t > last]
    ssm = sum(1 for _, n in since if n.startswith("ssm_"))
    others = ", ".join(f"{n} at {t:.2f} s" for t, n in since if not n.startswith("ssm_"))
    before = [(t, n) for t, n in list(controller_events) if t <= last and not n.startswith("ssm_")]
    context = f" (before it: {before[-1][1]} at {before[-1][0]:.2f} s)" if before else ""
    return (f"{HUNG_PREFIX} no turn progress on ground truth for {sim_now_s - last:.1f} s of sim time (since "
            f"{last:.2f} s){context}; controller since: {others or 'nothing'}"
            f"{f', and {ssm} ssm_stop/ssm_scaled/ssm_resume' if ssm else ''}")


def default_timeout_s(turns: int) -> float:
    """Wall-clock limit of a session that runs ``turns`` robot turns (a loaded 2-core host)."""
    return 90.0 + 30.0 * turns


def fault_graph(plan: SessionPlan, summary_json: Path) -> list[NodeSpec]:
    """The simulated graph for ``plan``: ``plan.turns + 1`` turns, the plan's links remapped."""
    specs = sim_graph(policy=plan.policy, partner=plan.partner, seed=plan.seed, turns=plan.turns + 1,
                      summary_json=str(summary_json))
    remaps: dict[str, tuple] = {}
    for name in plan.links:
        link = LINKS[name]
        remaps[link.node] = remaps.get(link.node, ()) + link.remappings()
    return [dataclasses.replace(s, remappings=s.remappings + remaps.get(s.name, ())) for s in specs]


@dataclass
class SessionResult:
    """What one fault session did; :meth:`as_dict` is what the campaign report stores."""

    plan: SessionPlan
    end: SessionEnd
    records: list[FaultRecord]
    incidents: list[Incident] = field(default_factory=list)
    unattributed: list[Incident] = field(default_factory=list)
    baseline_ssm_violations: int = 0
    leftovers: list[str] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)
    robot_turns: int = 0
    wall_s: float = 0.0
    harness_cpu_s: float = 0.0      # CPU the harness process (injector, relays, runner) used
    sim_s: float = 0.0
    log_dir: str = ""
    domain_id: int = -1

    def as_dict(self) -> dict:
        return {"plan": self.plan.as_dict(), "completed": self.end.completed, "end_message": self.end.message,
                "end_sim_s": self.end.t_s, "records": [r.as_dict() for r in self.records],
                "incidents": [{"kind": i.kind, "t_s": i.t_s} for i in self.incidents],
                "unattributed_incidents": [{"kind": i.kind, "t_s": i.t_s} for i in self.unattributed],
                "baseline_ssm_violations": self.baseline_ssm_violations, "leftovers": self.leftovers,
                "exit_codes": self.exit_codes, "robot_turns": self.robot_turns, "wall_s": round(self.wall_s, 1),
                "harness_cpu_s": round(self.harness_cpu_s, 1), "sim_s": round(self.sim_s, 2),
                "log_dir": self.log_dir, "domain_id": self.domain_id}


def leftover_processes(log_dir: Path) -> list[str]:
    """Processes whose command line names the session's parameter files (``<log_dir>/params/``, which
    every node's does): ``pid command`` lines."""
    out = subprocess.run(["pgrep", "-a", "-f", f"{log_dir}/params/"], capture_output=True, text=True, check=False)
    return [ln for ln in out.stdout.splitlines() if ln.strip() and int(ln.split()[0]) != os.getpid()]


def run_fault_session(plan: SessionPlan, log_dir: Path, *, timeout_s: float | None = None,
                      observe_after_end_s: float = 3.0, domain_id: int | None = None) -> SessionResult:
    """Run ``plan`` (see the module docstring) on ``domain_id`` (default: a random free one);
    never raises for what the graph does."""
    from coop_robot.faults.injector import FaultInjector  # rclpy: only when a session runs

    log_dir = Path(log_dir).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    summary_path = log_dir / "summary.json"
    specs = fault_graph(plan, summary_path)
    env = isolated_env(domain_id)
    domain = int(env["ROS_DOMAIN_ID"])
    lines: list[tuple[float, str, str]] = []   # (wall s since the injector started, node, reaction text)
    runner: GraphRunner | None = None
    injector = FaultInjector(plan.faults, domain, lambda node, sig: runner.signal_node(node, sig), plan.links,
                             seed=plan.seed)

    def on_line(node: str, line: str) -> None:
        match = _REACTION.match(line.strip())
        if match and len(lines) < 20_000:   # list.append is atomic: the runner's reader threads share it
            text = f"{match.group(2)}: {match.group(3)}" if match.group(1) else f"{node}: {match.group(4)}"
            lines.append((injector.wall_s(), node, text))

    runner = GraphRunner(specs, log_dir, env, on_line=on_line)
    cpu0 = time.process_time()
    expected_turns = plan.turns + 1
    end = SessionEnd(False, "session not started")
    codes: dict[str, int] = {}
    try:
        injector.start()
        try:
            runner.start()
            runner.wait(timeout_s or default_timeout_s(expected_turns), check=lambda: no_progress(
                injector.gt_events, injector.controller_events, injector.sim_now_s))
            end = _normal_end(summary_path, expected_turns, injector.sim_now_s)
        except SessionError as exc:
            end = SessionEnd(False, str(exc), injector.sim_now_s)
        injector.freeze()
        if not end.completed:
            # The arm still plays its last trajectory: watch the ground truth a little longer.
            deadline = time.monotonic() + observe_after_end_s
            while time.monotonic() < deadline and injector.sim_now_s < (end.t_s or 0.0) + 2.0:
                time.sleep(0.1)
    finally:
        try:
            injector.freeze()
            codes = runner.shutdown()
        finally:
            injector.close()
    wall_s = injector.wall_s()

    result = SessionResult(plan, end, injector.records, exit_codes=codes, wall_s=wall_s,
                           harness_cpu_s=time.process_time() - cpu0, sim_s=injector.sim_now_s, log_dir=str(log_dir),
                           domain_id=domain)
    result.leftovers = leftover_processes(log_dir)
    result.leftovers += [f"{p.popen.pid} {p.spec.name} (still running)" for p in runner.procs
                         if p.popen.poll() is None]
    events = sorted(injector.gt_events)
    robot_exits = [t for t, name in events if name == "robot_exit"]
    result.robot_turns = len(robot_exits)
    # A kill that was injected and is named by the end message ended the session.
    kills = [r.injected_sim_s for r in result.records
             if r.injected and r.fault.terminal and end.node in r.fault.consumers() and not end.completed]
    for record in result.records:
        classify(record, end, robot_exits, kills[0] if kills else None)
        record.reactions = _reactions(record, lines)
    result.incidents = incidents(events)
    result.unattributed, result.baseline_ssm_violations = attribute(
        result.records, result.incidents, violation_starts(injector.gt_ssm))
    # The evidence: ground truth and the controller's events, next to the node logs.
    (log_dir / "ground_truth.json").write_text(json.dumps(
        {"events": events, "controller_events": sorted(injector.controller_events),
         "ssm": [list(s) for s in injector.gt_ssm]}), encoding="utf-8")
    (log_dir / "fault_session.json").write_text(json.dumps(result.as_dict(), indent=1, default=str),
                                               encoding="utf-8")
    return result


def _normal_end(summary_path: Path, expected_turns: int, sim_now_s: float) -> SessionEnd:
    """The turn tracker exited 0: complete if it wrote its summary with every turn."""
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    turns = summary.get("turns", 0)
    if turns >= expected_turns:
        return SessionEnd(True, "", sim_now_s)
    return SessionEnd(False, f"node 'turn_tracker' exited with code 0 after {turns} of its {expected_turns} turns "
                             f"({'no summary written' if not summary else 'summary short'})", sim_now_s)


def _reactions(record: FaultRecord, lines: list[tuple[float, str, str]]) -> list[str]:
    """The first distinct warning/error lines of the fault's consumers while it acted (and shortly after)."""
    if not record.injected or record.injected_wall_s is None:
        return []
    start = record.injected_wall_s
    end = (record.cleared_wall_s if record.cleared_wall_s is not None else start) + REACTION_WINDOW_S
    consumers = set(record.fault.consumers())
    seen: list[str] = []
    for t, node, text in lines:
        if start <= t <= end and node in consumers:
            short = text if len(text) <= 300 else text[:297] + "..."
            if short not in seen:
                seen.append(short)
            if len(seen) >= MAX_REACTIONS:
                break
    return seen

"""The fault campaign's report and verdict (no ROS).

:func:`campaign_report` turns the sessions' results (:meth:`coop_robot.faults.session.SessionResult.as_dict`)
into one dict: totals, outcomes per fault kind, the verdict against the acceptance of issue 11 and
every session. :func:`markdown` renders it as the readable table that ``report.md`` holds.

The verdict's checks: at least ``min_sessions`` sessions and ``min_faults`` injected faults; no
robot entry while the partner was inside and no contact (ground truth, every session, attributed
to a fault or not); every injected fault ``survived`` or ``ended`` the session with a message
naming the node it acted on; no process of any session left behind.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from coop_robot.faults.score import ENDED, HUNG_PREFIX, NOT_INJECTED, OUTCOMES, SURVIVED, UNEXPLAINED


def _check(name: str, ok: bool, detail: str) -> dict:
    return {"check": name, "ok": bool(ok), "detail": detail}


def campaign_report(sessions: list[dict], meta: dict, *, min_sessions: int = 50, min_faults: int = 300) -> dict:
    """Totals, per-kind outcomes, verdict and sessions of a campaign (see the module docstring)."""
    records = [(s, r) for s in sessions for r in s["records"]]
    injected = [(s, r) for s, r in records if r["injected"]]
    outcomes = Counter(r["outcome"] for _, r in records)
    incidents = [(s, i) for s in sessions for i in s["incidents"]]
    entries = [(s, i) for s, i in incidents if i["kind"] == "entry_while_partner_inside"]
    contacts = [(s, i) for s, i in incidents if i["kind"] == "contact"]
    unexplained = [(s, r) for s, r in injected if r["outcome"] == UNEXPLAINED]
    leftovers = [(s["plan"]["index"], ln) for s in sessions for ln in s["leftovers"]]
    per_kind: dict[str, dict] = defaultdict(lambda: {**dict.fromkeys(OUTCOMES, 0), "crashes": 0, "incidents": 0,
                                                     "ssm_violations": 0})
    for _, r in records:
        row = per_kind[r["fault"]["kind"]]
        row[r["outcome"]] += 1
        row["crashes"] += r["crash"]
        row["incidents"] += len(r["incidents"])
        row["ssm_violations"] += r["ssm_violations"]
    totals = {
        "sessions": len(sessions),
        "sessions_completed": sum(s["completed"] for s in sessions),
        "sessions_hung": sum(s["end_message"].startswith(HUNG_PREFIX) for s in sessions),
        "faults_planned": len(records),
        "faults_injected": len(injected),
        "outcomes": {o: outcomes.get(o, 0) for o in OUTCOMES},
        "crashes": sum(r["crash"] for _, r in records),
        "entries_while_partner_inside": len(entries),
        "contacts": len(contacts),
        "processes_left": len(leftovers),
        "ssm_violations_in_fault_windows": sum(r["ssm_violations"] for _, r in records),
        "ssm_violations_outside_windows": sum(s["baseline_ssm_violations"] for s in sessions),
        "robot_turns": sum(s["robot_turns"] for s in sessions),
        "wall_s": round(sum(s["wall_s"] for s in sessions), 1),
        "harness_cpu_s": round(sum(s.get("harness_cpu_s", 0.0) for s in sessions), 1),
        "sim_s": round(sum(s.get("sim_s", 0.0) for s in sessions), 1),
    }
    checks = [
        _check("sessions", len(sessions) >= min_sessions, f"{len(sessions)} sessions (need >= {min_sessions})"),
        _check("fault injections", len(injected) >= min_faults,
               f"{len(injected)} faults injected (need >= {min_faults}); {outcomes.get(NOT_INJECTED, 0)} planned "
               "ones did not come"),
        _check("no robot entry while the partner is inside", not entries,
               ", ".join(f"session {s['plan']['index']} at {i['t_s']:.3f} s" for s, i in entries) or "none"),
        _check("no contact", not contacts,
               ", ".join(f"session {s['plan']['index']} at {i['t_s']:.3f} s" for s, i in contacts) or "none"),
        _check("every fault survived or ended the session naming it", not unexplained,
               "; ".join(f"session {s['plan']['index']} {r['label']}: {r['outcome_reason']}" for s, r in unexplained)
               or f"{outcomes.get(SURVIVED, 0)} survived, {outcomes.get(ENDED, 0)} ended the session naming it"),
        _check("no process left behind", not leftovers,
               "; ".join(f"session {i}: {ln}" for i, ln in leftovers) or "none"),
    ]
    return {"meta": meta, "verdict": {"pass": all(c["ok"] for c in checks), "checks": checks},
            "totals": totals, "per_kind": dict(sorted(per_kind.items())), "sessions": sessions}


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict) -> str:
    """The report as Markdown: verdict, totals, outcomes per kind, findings, then every fault."""
    meta, totals, verdict = report["meta"], report["totals"], report["verdict"]
    out = ["# Fault campaign report", ""]
    out += [f"{meta.get('date', '?')}, commit {meta.get('commit', '?')}: `{meta.get('command', '?')}`", ""]
    n = max(totals["sessions"], 1)
    out += [f"Host: {meta.get('host', '?')}. Wall time {meta.get('wall_s', 0):.0f} s for {totals['sessions']} sessions "
            f"({meta.get('wall_s', 0) / n:.0f} s per session, {totals['sim_s'] / n:.1f} s of sim time; the harness "
            f"process used {totals['harness_cpu_s'] / n:.1f} s of CPU per session).", ""]
    out += [f"**Verdict: {'PASS' if verdict['pass'] else 'FAIL'}**", "", "| check | ok | detail |", "|---|---|---|"]
    out += [f"| {c['check']} | {'yes' if c['ok'] else '**no**'} | {_cell(c['detail'])} |" for c in verdict["checks"]]
    o = totals["outcomes"]
    out += ["", "## Totals", "",
            f"{totals['sessions']} sessions ({totals['sessions_completed']} completed all their turns, "
            f"{totals['sessions_hung']} hung), "
            f"{totals['faults_injected']} of {totals['faults_planned']} planned faults injected: "
            f"{o[SURVIVED]} survived, {o[ENDED]} ended the session naming the node, {o[UNEXPLAINED]} unexplained, "
            f"{o[NOT_INJECTED]} not reached. Nodes that died on their input: {totals['crashes']}. "
            f"Robot entries while the partner was inside: {totals['entries_while_partner_inside']}; contacts: "
            f"{totals['contacts']}; processes left: {totals['processes_left']}. Ground-truth SSM violations: "
            f"{totals['ssm_violations_in_fault_windows']} inside fault windows, "
            f"{totals['ssm_violations_outside_windows']} outside them. {totals['robot_turns']} robot turns.", ""]
    out += ["## Outcomes per fault kind", "",
            "| kind | survived | ended | unexplained | not reached | crashes | incidents | SSM violations |",
            "|---|---|---|---|---|---|---|---|"]
    for kind, row in report["per_kind"].items():
        out.append(f"| {kind} | {row[SURVIVED]} | {row[ENDED]} | {row[UNEXPLAINED]} | {row[NOT_INJECTED]} | "
                   f"{row['crashes']} | {row['incidents']} | {row['ssm_violations']} |")
    findings = []
    for s in report["sessions"]:
        i = s["plan"]["index"]
        if s["end_message"].startswith(HUNG_PREFIX):
            findings.append(f"- session {i}: {_cell(s['end_message'])} (logs: {s['log_dir']})")
        for inc in s["incidents"]:
            who = [r["label"] for r in s["records"] if any(x["t_s"] == inc["t_s"] for x in r["incidents"])]
            findings.append(f"- session {i}: **{inc['kind']}** at {inc['t_s']:.3f} s (sim), during "
                            f"{', '.join(who) if who else 'no fault window'} (logs: {s['log_dir']})")
        for r in s["records"]:
            if r["outcome"] == UNEXPLAINED or r["crash"]:
                findings.append(f"- session {i}: {r['label']} -> {r['outcome']}{' (crash)' if r['crash'] else ''}: "
                                f"{_cell(r['outcome_reason'])}")
        for ln in s["leftovers"]:
            findings.append(f"- session {i}: process left: {ln}")
    out += ["", "## Findings", ""] + (findings or ["None."])
    out += ["", "## Every fault", "",
            "| session | policy / partner | fault | injected (sim s) | outcome | what happened |",
            "|---|---|---|---|---|---|"]
    for s in report["sessions"]:
        p = s["plan"]
        for r in s["records"]:
            at = "-" if r["injected_sim_s"] is None else f"{r['injected_sim_s']:.2f}"
            what = r["detail"] or "-"
            if r["reactions"]:
                what += "; " + " / ".join(r["reactions"])
            if r["incidents"]:
                what += "; **" + ", ".join(f"{x['kind']} at {x['t_s']:.3f} s" for x in r["incidents"]) + "**"
            if r["ssm_violations"]:
                what += f"; {r['ssm_violations']} SSM violation(s)"
            out.append(f"| {p['index']} | {p['policy']} / {p['partner']} | {_cell(r['label'])} | {at} | "
                       f"{r['outcome']} | {_cell(what)} |")
    return "\n".join(out) + "\n"

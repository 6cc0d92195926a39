"""The study page (one self-contained HTML file: tables inline, PNG plots embedded) and its text summary.

Reads the dictionary :func:`coop_robot.analysis.study.study_statistics` returns; three plots, also
written next to the page: each participant's figure per condition with the condition medians and
their intervals (``study_conditions.png``), the paired differences (``study_differences.png``), and
each participant's median gap per condition with its interval over turns (``study_participants.png``).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from coop_robot.analysis.report import _plt, _save
from coop_robot.analysis.study import METRICS_BY_KEY, STUDY_METRICS

COLOURS = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")


def _fig_value(metric, fig: dict | None, with_ci: bool = True) -> str:
    """``value [low, high]`` in the metric's display unit."""
    if not fig or fig.get("value") is None:
        return "n/a"
    text = metric.fmt(fig["value"])
    if with_ci and fig.get("ci_low") is not None:
        text += f" [{metric.fmt(fig['ci_low'])}, {metric.fmt(fig['ci_high'])}]"
    return text


def _unit(metric) -> str:
    return f" ({metric.unit})" if metric.unit else ""


def _p(p) -> str:
    return "n/a" if p is None else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def format_study(study: dict) -> list[str]:
    """Plain-text lines: the conditions' medians and intervals, then each paired comparison."""
    lines = []
    b = study["bootstrap"]
    lines.append(f"study: {len(study['participants'])} participants, conditions {', '.join(study['conditions'])}; "
                 f"{study['sessions_included']} sessions counted, {study['sessions_excluded']} left out; "
                 f"{100 * b['level']:.0f}% bootstrap intervals ({b['resamples']} resamples, seed {b['seed']})")
    width = max([len(m.label + _unit(m)) for m in STUDY_METRICS] + [6])
    conds = study["conditions"]
    lines.append(f"{'':{width}}  " + "  ".join(f"{c:>26}" for c in conds))
    for m in STUDY_METRICS:
        cells = [_fig_value(m, study["by_condition"][c][m.key]) for c in conds]
        lines.append(f"{m.label + _unit(m):{width}}  " + "  ".join(f"{x:>26}" for x in cells))
    for pair in study["paired"]:
        lines.append(f"paired: {pair['difference']} over {pair['participants']} participants "
                     "(mean [CI], median [CI], +/-/0, sign test p, Wilcoxon p)")
        for m in STUDY_METRICS:
            f = pair["metrics"][m.key]
            lines.append(f"  {m.label + _unit(m):{width}}  {_diff(m, f, 'mean'):>24}  {_diff(m, f, 'median'):>24}  "
                         f"{f['positive']}/{f['negative']}/{f['zero']}  p={_p(f['sign_test_p'])}  "
                         f"p={_p(f['wilcoxon']['p'])}")
    return lines


def _diff(metric, f: dict, which: str) -> str:
    if f[which] is None:
        return "n/a"
    text = metric.fmt(f[which])
    if f[f"{which}_ci_low"] is not None:
        text += f" [{metric.fmt(f[f'{which}_ci_low'])}, {metric.fmt(f[f'{which}_ci_high'])}]"
    return text


# ---------------------------------------------------------------------------------------- plots
def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def conditions_plot(study: dict, path: Path) -> Path:
    """Per metric: each participant's figure in each condition (joined by a line), and the
    condition's median over participants with its interval (black)."""
    plt = _plt()
    conds, parts = study["conditions"], study["participants"]
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 6.2), dpi=80)
    for ax, m in zip(axes.ravel(), STUDY_METRICS):
        for p in parts:
            cells = study["by_participant"][p]
            xs = [i for i, c in enumerate(conds) if c in cells and cells[c][m.key]["value"] is not None]
            ys = [cells[conds[i]][m.key]["value"] * m.scale for i in xs]
            ax.plot(xs, ys, "-", color="#bbbbbb", lw=0.8, zorder=1)
            ax.scatter(xs, ys, s=14, c=[_colour(i) for i in xs], zorder=2)
        for i, c in enumerate(conds):
            f = study["by_condition"][c][m.key]
            if f["value"] is None:
                continue
            y = f["value"] * m.scale
            if f["ci_low"] is not None:
                ax.errorbar([i + 0.18], [y], yerr=[[y - f["ci_low"] * m.scale], [f["ci_high"] * m.scale - y]],
                            fmt="s", color="k", ms=5, capsize=3, zorder=3)
            else:
                ax.plot([i + 0.18], [y], "s", color="k", ms=5, zorder=3)
        if all(study["by_condition"][c][m.key]["value"] is None for c in conds):
            ax.text(0.5, 0.5, "not in these bags", ha="center", transform=ax.transAxes, color="#666666")
            ax.set_yticks([])
        ax.set_xticks(range(len(conds)), conds)
        ax.set_xlim(-0.5, len(conds) - 0.5)
        ax.set_title(m.label + _unit(m), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Each participant per condition (dots, lines join a participant); black: the median over "
                 "participants and its 95% CI", fontsize=9)
    return _save(fig, path, plt)


def differences_plot(study: dict, path: Path) -> Path | None:
    """Per metric and paired comparison: the participants' differences, and their mean and median
    with intervals."""
    if not study["paired"]:
        return None
    plt = _plt()
    pair = study["paired"][0]
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 6.2), dpi=80)
    rng = np.random.default_rng(0)   # jitter only
    for ax, m in zip(axes.ravel(), STUDY_METRICS):
        f = pair["metrics"][m.key]
        d = np.array(list(f["differences"].values()), dtype=float) * m.scale
        if d.size:
            ax.scatter(rng.uniform(-0.12, 0.12, d.size), d, s=14, color="#4477aa", zorder=2)
        for x, which in ((1, "mean"), (2, "median")):
            if f[which] is None:
                continue
            y = f[which] * m.scale
            lo, hi = f[f"{which}_ci_low"], f[f"{which}_ci_high"]
            if lo is not None:
                ax.errorbar([x], [y], yerr=[[y - lo * m.scale], [hi * m.scale - y]], fmt="o", color="k", capsize=3)
            else:
                ax.plot([x], [y], "o", color="k")
        if not d.size:
            ax.text(0.5, 0.5, "not in these bags", ha="center", transform=ax.transAxes, color="#666666")
        ax.axhline(0, color="#cc3311", lw=1)
        ax.set_xticks([0, 1, 2], ["participants", "mean", "median"])
        ax.set_xlim(-0.5, 2.5)
        ax.set_title(f"{m.label}{_unit(m)}: +{f['positive']} -{f['negative']} ={f['zero']}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Paired differences {pair['difference']} per participant; mean and median with 95% CI",
                 fontsize=9)
    return _save(fig, path, plt)


def participants_plot(study: dict, path: Path, key: str = "median_gap_s") -> Path:
    """One participant a row: its figure in each condition with the interval over its turns."""
    plt = _plt()
    m = METRICS_BY_KEY[key]
    conds, parts = study["conditions"], study["participants"]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.32 * max(len(parts), 1)), dpi=80)
    step = 0.6 / max(len(conds), 1)
    for j, c in enumerate(conds):
        ys, xs, lo, hi = [], [], [], []
        for i, p in enumerate(parts):
            f = study["by_participant"][p].get(c, {}).get(key)
            if not f or f["value"] is None:
                continue
            y = i + (j - (len(conds) - 1) / 2) * step
            x = f["value"] * m.scale
            ys.append(y)
            xs.append(x)
            lo.append(x - (f["ci_low"] * m.scale if f["ci_low"] is not None else x))
            hi.append((f["ci_high"] * m.scale if f["ci_high"] is not None else x) - x)
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", ms=4, capsize=2, color=_colour(j), label=c)
    ax.set_yticks(range(len(parts)), parts)
    ax.invert_yaxis()
    ax.set_xlabel(f"{m.label}{_unit(m)}, 95% CI over the participant's turns")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path, plt)


# ---------------------------------------------------------------------------------------- page
def _img(path: Path | None, alt: str) -> str:
    if path is None:
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_study_page(study: dict, path: Path) -> Path:
    """study.html next to its three PNG plots (embedded in the page as well)."""
    esc = html.escape
    out = path.parent
    meta = study.get("meta", {})
    conds, parts = study["conditions"], study["participants"]
    plots = {
        "conditions": conditions_plot(study, out / "study_conditions.png") if conds else None,
        "differences": differences_plot(study, out / "study_differences.png") if conds else None,
        "participants": participants_plot(study, out / "study_participants.png") if conds else None,
    }
    b = study["bootstrap"]
    title = meta.get("title", "coop_robot study")
    h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
         "body{font-family:sans-serif;margin:1.5em;max-width:1200px;font-size:14px}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
         "th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}.left{text-align:left}"
         ".bad{color:#b00}.muted{color:#666}img{max-width:100%}</style></head><body>",
         f"<h1>{esc(title)}</h1>"]
    h.append(f"<p class='muted'>coop_robot {esc(str(meta.get('coop_robot', '?')))}, commit "
             f"{esc(str(meta.get('commit', '?')))}, {esc(str(meta.get('date', '')))}"
             + (f"; <code>{esc(meta['command'])}</code>" if meta.get("command") else "") + "</p>")
    grouped = meta.get("grouped_by", "metadata")
    h.append(f"<p><b>{len(parts)} participants</b>, conditions <b>{esc(', '.join(conds))}</b>; "
             f"{study['sessions_included']} sessions counted, {study['sessions_excluded']} left out. Grouped by "
             + ("the design " + f"<code>{esc(str(meta.get('design')))}</code>" if grouped == "design" else
                "each bag's recorded metadata (condition = policy, participant = partner profile and seed)")
             + f". Intervals: {100 * b['level']:.0f}% percentile bootstrap, {b['resamples']} resamples, seed "
             f"{b['seed']}; none for fewer than {b['min_values']} values.</p>")

    h.append("<h2>By condition</h2><p>The median over participants of each participant's figure in that "
             "condition, with its interval (participants resampled); n = participants.</p>")
    h.append("<table><tr><th>metric</th>" + "".join(f"<th>{esc(c)}</th>" for c in conds) + "</tr>")
    for m in STUDY_METRICS:
        h.append(f"<tr><td>{esc(m.label + _unit(m))}</td>" + "".join(
            f"<td>{_fig_value(m, study['by_condition'][c][m.key])} <span class='muted'>n="
            f"{study['by_condition'][c][m.key]['n']}</span></td>" for c in conds) + "</tr>")
    h.append("</table>")
    h.append(_img(plots["conditions"], "each participant per condition"))

    for pair in study["paired"]:
        h.append(f"<h2>Paired comparison: {esc(pair['difference'])}</h2><p>Per participant (with a session in "
                 f"both; {pair['participants']}) the difference of its figures; mean and median with intervals "
                 "(participants resampled); how many differences are positive, negative, zero; the exact "
                 "two-sided sign test and Wilcoxon signed-rank test (zeros dropped).</p>")
        h.append("<table><tr><th>metric</th><th>n</th><th>mean difference [CI]</th><th>median difference [CI]</th>"
                 "<th>+ / &minus; / 0</th><th>sign test p</th><th>Wilcoxon W+ / W&minus;</th><th>Wilcoxon p</th>"
                 "</tr>")
        for m in STUDY_METRICS:
            f = pair["metrics"][m.key]
            w = f["wilcoxon"]
            h.append(f"<tr><td>{esc(m.label + _unit(m))}</td><td>{f['n']}</td><td>{_diff(m, f, 'mean')}</td>"
                     f"<td>{_diff(m, f, 'median')}</td><td>{f['positive']} / {f['negative']} / {f['zero']}</td>"
                     f"<td>{_p(f['sign_test_p'])}</td><td>{w['w_plus']:g} / {w['w_minus']:g}</td>"
                     f"<td>{_p(w['p'])}</td></tr>")
        h.append("</table>")
    h.append(_img(plots["differences"], "paired differences"))

    h.append("<h2>By participant</h2><p>Each participant's figure per condition over the turns of its sessions "
             "there, with an interval that resamples those turns (pace: one figure per session, its median, "
             "resampling sessions). SSM violations are per session.</p>")
    h.append(_img(plots["participants"], "median gap per participant"))
    h.append("<table><tr><th>participant</th><th>condition</th><th>sessions</th><th>turns</th>"
             + "".join(f"<th>{esc(m.label + _unit(m))}</th>" for m in STUDY_METRICS) + "</tr>")
    for p in parts:
        for c in conds:
            cell = study["by_participant"][p].get(c)
            if cell is None:
                continue
            h.append(f"<tr><td>{esc(p)}</td><td class='left'>{esc(c)}</td><td>{cell['sessions']}</td>"
                     f"<td>{cell['median_gap_s']['n']}</td>"
                     + "".join(f"<td>{_fig_value(m, cell[m.key])}</td>" for m in STUDY_METRICS) + "</tr>")
    h.append("</table>")

    h.append("<h2>Sessions</h2><table><tr><th>bag</th><th>participant</th><th>condition</th><th>status</th>"
             "<th>turns</th>" + "".join(f"<th>{esc(m.label + _unit(m))}</th>" for m in STUDY_METRICS) + "</tr>")
    for s in study["sessions"]:
        status = esc(s["status"]) if s["included"] else f"<span class='bad'>{esc(s['status'])}: left out</span>"
        h.append(f"<tr><td><code>{esc(s['name'])}</code></td><td class='left'>{esc(str(s['participant']))}</td>"
                 f"<td class='left'>{esc(str(s['condition']))}</td><td class='left'>{status}</td><td>{s['turns']}</td>"
                 + "".join(f"<td>{METRICS_BY_KEY[m.key].fmt(s.get(m.key))}</td>" for m in STUDY_METRICS) + "</tr>")
    h.append("</table>")
    left_out = [s for s in study["sessions"] if not s["included"]]
    if left_out:
        h.append("<ul>" + "".join(f"<li class='bad'>{esc(s['name'])}: {esc(s['reason'] or '')}</li>"
                                  for s in left_out) + "</ul>")
    h.append("<p class='muted'>Metrics as defined in coop_robot/timing/metrics.py (docs/recording_and_analysis.md, "
             "'Metrics'): gap = robot zone entry - the partner's last exit; overlap rate = share of turns that were "
             "not clean; min separation = least hand-to-robot separation; SSM violations = episodes of the robot "
             "approaching inside the protective separation distance; pace = robot and partner turns per minute. "
             "Each session's files are in <code>sessions/&lt;bag&gt;/</code>.</p></body></html>")
    path.write_text("\n".join(h), encoding="utf-8")
    return path

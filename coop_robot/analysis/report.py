"""Plots of one analysed session and a self-contained HTML report comparing several.

Plots (matplotlib, Agg backend, PNG): gap histogram, zone-occupancy timeline of both agents,
response-latency CDF, rolling gap over the session, separation and S_p around the partner's exits.
The HTML report embeds every image as base64 and every table inline, so it is one file that can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np

from coop_robot.timing.metrics import turn_notes

ROLLING_TURNS = 20
TIMELINE_MAX_BARS = 1500
ZOOM_S = 60.0


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(values) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[np.isfinite(arr)]


def downsample_intervals(intervals: list[tuple[float, float]], resolution_s: float) -> list[tuple[float, float]]:
    """Merge intervals separated by less than ``resolution_s`` (what one plotted pixel can show)."""
    out: list[list[float]] = []
    for a, b in intervals:
        if out and a - out[-1][1] < resolution_s:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def write_plots(result, out_dir: Path) -> dict[str, Path]:
    """The five plots of one session as PNG files in ``out_dir``."""
    plt = _plt()
    recs = result.records
    gaps_ms = 1000 * _finite(r.gap_s for r in recs)
    lat_ms = 1000 * _finite(r.response_latency_s for r in recs)
    scored = result.summary.get("scored_on", "?")
    paths: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=90)
    if gaps_ms.size:
        ax.hist(gaps_ms, bins=min(40, max(5, gaps_ms.size // 3)), color="#4477aa")
        ax.axvline(float(np.median(gaps_ms)), color="k", ls="--", lw=1, label=f"median {np.median(gaps_ms):.0f} ms")
        ax.axvline(0, color="#cc3311", lw=1)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no completed turns", ha="center", transform=ax.transAxes)
    ax.set(xlabel="gap (ms): robot entry - partner exit", ylabel="turns", title=f"Gap ({scored})")
    paths["plot_gap_histogram"] = _save(fig, out_dir / "gap_histogram.png", plt)

    panels = [(None, None)]
    spans = [iv for agent in ("partner", "robot") for iv in result.intervals.get(agent, [])]
    t0 = min((a for a, _ in spans), default=0.0)
    t1 = max((b for _, b in spans), default=1.0)
    if t1 - t0 > 2 * ZOOM_S:
        panels.append((t0, t0 + ZOOM_S))
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.9 * len(panels) + 0.4), dpi=90, squeeze=False)
    for ax, (lo, hi) in zip(axes[:, 0], panels):
        width = (t1 - t0) if lo is None else (hi - lo)
        res = width / TIMELINE_MAX_BARS
        for row, (agent, colour) in enumerate((("partner", "#228833"), ("robot", "#4477aa"))):
            ivs = result.intervals.get(agent, [])
            if lo is not None:
                ivs = [(a, b) for a, b in ivs if b >= lo and a <= hi]
            ivs = downsample_intervals(ivs, res)
            ax.broken_barh([(a, max(b - a, res)) for a, b in ivs], (row + 0.1, 0.8), color=colour)
        ax.set_yticks([0.5, 1.5], ["partner", "robot"])
        ax.set_xlim(t0 if lo is None else lo, t1 if hi is None else hi)
        ax.set_xlabel("time (s, bag clock)" + ("" if lo is None else f" -- first {ZOOM_S:.0f} s"))
    axes[0, 0].set_title(f"Zone occupancy ({scored})")
    paths["plot_occupancy_timeline"] = _save(fig, out_dir / "occupancy_timeline.png", plt)

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=90)
    if lat_ms.size:
        x = np.sort(lat_ms)
        ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", color="#aa3377")
        ax.axvline(0, color="#cc3311", lw=1)
    else:
        ax.text(0.5, 0.5, "no reach_start events", ha="center", transform=ax.transAxes)
    ax.set(xlabel="response latency (ms): reach start - partner exit", ylabel="fraction of turns",
           title="Response latency CDF", ylim=(0, 1.02))
    paths["plot_latency_cdf"] = _save(fig, out_dir / "latency_cdf.png", plt)

    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=90)
    pts = [(r.robot_enter_s, 1000 * r.gap_s) for r in recs if math.isfinite(r.gap_s)]
    if pts:
        t, g = np.array(pts).T
        ax.plot(t, g, ".", ms=2, color="#bbbbbb", label="per turn")
        if g.size >= 3:
            k = min(ROLLING_TURNS, g.size)
            rolling = [np.median(g[max(0, i - k + 1):i + 1]) for i in range(g.size)]
            ax.plot(t, rolling, color="#4477aa", label=f"rolling median ({k} turns)")
        ax.axhline(0, color="#cc3311", lw=1)
        ax.legend(fontsize=8)
    ax.set(xlabel="robot entry time (s, bag clock)", ylabel="gap (ms)", title="Gap over the session")
    paths["plot_rolling_gap"] = _save(fig, out_dir / "rolling_gap.png", plt)
    paths["plot_separation_at_exit"] = _separation_plot(result, out_dir / "separation_at_partner_exit.png", plt)
    return paths


def _separation_plot(result, path: Path, plt) -> Path:
    """Separation and S_p against time from each partner exit (thin lines), with their medians."""
    traces = result.separation_traces
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=90)
    if traces is not None and len(traces):
        x = traces.offsets_s
        sep, sp = np.vstack(traces.separation_m), np.vstack(traces.protective_m)
        alpha = max(0.04, min(0.5, 5.0 / len(traces)))
        ax.plot(x, sep.T, color="#4477aa", lw=0.6, alpha=alpha)
        ax.plot(x, sp.T, color="#cc3311", lw=0.6, alpha=alpha)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN columns at the ends
                ax.plot(x, np.nanmedian(sep, axis=0), color="#4477aa", lw=2, label="separation (median)")
                ax.plot(x, np.nanmedian(sp, axis=0), color="#cc3311", lw=2, ls="--", label="S_p (median)")
        ax.axvline(0, color="k", lw=0.8)
        ax.legend(fontsize=8)
        title = f"Separation and S_p around {len(traces)} partner exits"
    else:
        ax.text(0.5, 0.5, "no separation samples", ha="center", transform=ax.transAxes)
        title = "Separation and S_p around partner exits"
    ax.set(xlabel="time from the partner's exit (s)", ylabel="distance (m)", title=title)
    return _save(fig, path, plt)


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _img(path: Path | None) -> str:
    if path is None or not Path(path).is_file():
        return "<p><em>no plot</em></p>"
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _fmt(v, scale: float = 1.0, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v * scale:.{digits}f}"
    return html.escape(str(v))


ROWS = (
    ("scored on", "scored_on", 1, 0), ("policy", "policy", 1, 0), ("partner", "partner", 1, 0), ("seed", "seed", 1, 0),
    ("turns", "turns", 1, 0), ("median gap (ms)", "median_gap_s", 1000, 0), ("p90 gap (ms)", "p90_gap_s", 1000, 0),
    ("mean gap (ms)", "mean_gap_s", 1000, 0), ("overlap rate (%)", "overlap_rate", 100, 1),
    ("overlap total (s)", "overlap_s_total", 1, 3), ("contacts", "contacts", 1, 0),
    ("throughput (turns/min)", "throughput_per_min", 1, 2),
    ("median response latency (ms)", "median_response_latency_s", 1000, 0),
    ("session (s)", "session_duration_s", 1, 1),
    ("pace (turns/min, both agents)", "pace_turns_per_min", 1, 2), ("near misses", "near_misses", 1, 0),
    ("unfinished-turn entries", "unfinished_turn_entries", 1, 0), ("aborted reaches", "aborted_reaches", 1, 0),
    ("liveness fallbacks", "liveness_fallbacks", 1, 0),
    ("min separation (m)", "min_separation_m", 1, 3), ("min SSM margin (m)", "min_ssm_margin_m", 1, 3),
    ("SSM violations", "ssm_violations", 1, 0), ("protective stop (s)", "protective_stop_s", 1, 2),
    ("speed scaled (s)", "speed_scaled_s", 1, 2),
    ("human idle (%)", "human_idle_fraction", 100, 1), ("robot idle (%)", "robot_idle_fraction", 100, 1),
    ("concurrent activity (%)", "concurrent_activity_fraction", 100, 1),
    ("functional delay, mean (ms)", "functional_delay_mean_s", 1000, 0),
    ("functional delay (% of session)", "functional_delay_fraction", 100, 1),
    ("messages", "messages", 1, 0), ("storage", "storage", 1, 0),
)


def _status(result) -> str:
    if result.usage_error:
        return "NOT ANALYSED"
    if result.error:
        return "UNREADABLE"
    if result.damaged:
        return "DAMAGED (partial)"
    return "LIVE CHECK FAILED" if result.exit_code else "ok"


def write_html_report(results: list, plot_paths: list[dict], path: Path,
                      title: str = "coop_robot session analysis") -> Path:
    """One self-contained HTML file comparing ``results`` side by side (images embedded)."""
    plt = _plt()
    esc = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
             "body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}"
             "td:first-child,th:first-child{text-align:left}.error{color:#b00}.warning{color:#a60}.note{color:#666}"
             "img{max-width:100%}.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             "<p>Gap = robot zone entry - the partner's last exit; overlap = both agents in the zone; response "
             "latency = robot reach start - partner exit; separation, SSM and fluency (Hoffman 2019) as defined in "
             "coop_robot/timing/metrics.py (docs/recording_and_analysis.md, 'Metrics'). Each column says "
             "whether it was scored on simulation ground truth or on perception + joint states.</p>"]
    parts.append("<h2>Summary</h2><table><tr><th></th>" + "".join(f"<th>{esc(r.name)}</th>" for r in results) + "</tr>")
    for label, key, scale, digits in ROWS:
        parts.append(f"<tr><td>{esc(label)}</td>" + "".join(
            f"<td>{_fmt(r.summary.get(key), scale, digits) if r.summary else 'n/a'}</td>" for r in results) + "</tr>")
    parts.append("<tr><td>status</td>" + "".join(
        f"<td class='{'error' if r.exit_code else ''}'>{_status(r)}</td>"
        for r in results) + "</tr></table>")

    # Overlaid gap distributions: the comparison at a glance.
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=90)
    plotted = False
    for r in results:
        g = np.sort(1000 * _finite(x.gap_s for x in r.records))
        if g.size:
            plotted = True
            ax.step(g, np.arange(1, g.size + 1) / g.size, where="post", label=r.name)
    ax.axvline(0, color="#cc3311", lw=1)
    ax.set(xlabel="gap (ms)", ylabel="fraction of turns", title="Gap distribution per bag", ylim=(0, 1.02))
    if plotted:
        ax.legend(fontsize=8)
    cmp_path = path.parent / "gap_cdf_comparison.png"
    _save(fig, cmp_path, plt)
    parts.append("<h2>Gap distributions</h2>" + _img(cmp_path))

    for r, plots in zip(results, plot_paths):
        parts.append(f"<h2>{esc(r.name)}</h2><p><code>{esc(r.bag)}</code></p>")
        if r.issues:
            parts.append("<ul>" + "".join(f"<li class='{esc(i.severity)}'>{esc(i.severity)}: {esc(i.message)}</li>"
                                          for i in r.issues) + "</ul>")
        if not r.summary:
            continue
        live = r.summary.get("live_check")
        if live:
            verdict = "agrees" if live["agrees"] else "<span class='error'>DISAGREES</span>"
            parts.append(f"<p>Live tracker (/turn/timing, scored on {esc(str(live['live_scored_on']))}): "
                         f"{live['live_turns']} turns; {verdict} with the offline scoring on "
                         f"{esc(str(live['offline_scored_on']))}: max |gap difference| "
                         f"{_fmt(live['max_abs_gap_diff_s'], 1000, 3)} ms over {live['turns_compared']} turns "
                         f"(tolerance {_fmt(live['tolerance_s'], 1000, 1)} ms).</p>")
        alt = r.summary.get("perception_summary")
        if alt:
            parts.append(f"<p>Scored on perception instead: {alt['turns']} turns, median gap "
                         f"{_fmt(alt['median_gap_s'], 1000)} ms, overlap rate "
                         f"{_fmt(alt['overlap_rate'], 100, 1)}%.</p>")
        parts.append("<div class='grid'>" + "".join(
            f"<div>{_img(plots.get(k))}</div>" for k in ("plot_gap_histogram", "plot_latency_cdf")) + "</div>")
        parts.append(_img(plots.get("plot_occupancy_timeline")) + _img(plots.get("plot_rolling_gap")))
        parts.append(_img(plots.get("plot_separation_at_exit")))
        parts.append(f"<details><summary>per-turn table ({len(r.records)} turns)</summary><table><tr><th>turn</th>"
                     "<th>partner exit (s)</th><th>robot enter (s)</th><th>gap (ms)</th><th>latency (ms)</th>"
                     "<th>overlap (ms)</th><th>contact</th><th>min separation (m)</th><th>min SSM margin (m)</th>"
                     "<th>notes</th></tr>")
        parts.extend(f"<tr><td>{x.turn}</td><td>{_fmt(x.partner_exit_s, 1, 3)}</td>"
                     f"<td>{_fmt(x.robot_enter_s, 1, 3)}</td>"
                     f"<td>{_fmt(x.gap_s, 1000)}</td><td>{_fmt(x.response_latency_s, 1000)}</td>"
                     f"<td>{_fmt(x.overlap_s, 1000)}</td><td>{'yes' if x.contact else 'no'}</td>"
                     f"<td>{_fmt(x.min_separation_m, 1, 3)}</td><td>{_fmt(x.min_ssm_margin_m, 1, 3)}</td>"
                     f"<td>{html.escape(turn_notes(x))}</td></tr>"
                     for x in r.records)
        parts.append("</table></details>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path

"""One self-contained HTML page per incident: no script, no font, nothing fetched.

The page holds, in this order: the answer in one sentence; the causal graph (nodes coloured by
conditional score, sized by contribution, the path from the top cause to the target drawn
apart); the waterfall of contributions adding up to the target's score; the scores of the
target and its top causes over the surrounding snapshots; the ranked causes with their standard
errors; how the answer was computed (method, samples, missing, cold and marginalised nodes, the
ranking rule); the distribution-change answer when there is one.

Every value from a document goes through :func:`html.escape` (node, graph and target names
are user input); the inline SVG is built the same way (:mod:`stream_rca.report.graph_svg`,
:mod:`stream_rca.report.charts`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

from stream_rca import __version__
from stream_rca.report.charts import LINE_COLORS, timeline_svg, waterfall_svg
from stream_rca.report.documents import Change, Incident, ScorePoint
from stream_rca.report.graph_svg import ACCENT, cause_path, graph_svg, score_color

__all__ = ["TOP_CAUSES", "render_page"]

TOP_CAUSES = 3
"""Causes drawn on the timeline beside the target."""

_CSS = f"""
*{{box-sizing:border-box}}
body{{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:#111827;background:#f3f4f6}}
header{{background:#111827;color:#f9fafb;padding:18px 28px}}
header h1{{margin:0 0 4px;font-size:20px;font-weight:600;overflow-wrap:anywhere}}
header .meta{{color:#d1d5db;font-size:13px}}
main{{padding:18px 28px;display:grid;grid-template-columns:repeat(auto-fit,minmax(620px,1fr));
gap:18px;max-width:1400px}}
section{{background:#fff;border-radius:8px;padding:14px 18px;box-shadow:0 1px 2px #0000001a;
overflow-x:auto}}
section.wide{{grid-column:1/-1}}
h2{{font-size:15px;margin:0 0 10px;font-weight:600}}
.answer{{font-size:16px;margin:0}}
.answer b{{color:{ACCENT}}}
.path{{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin:10px 0 2px}}
.chip{{border:2px solid {ACCENT};border-radius:14px;padding:1px 10px;font-size:13px;
overflow-wrap:anywhere}}
.arrow{{color:{ACCENT};font-weight:700}}
table{{border-collapse:collapse;width:100%;font-size:13px}}
th,td{{text-align:left;padding:4px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top;
overflow-wrap:anywhere}}
th{{color:#4b5563;font-weight:600}}
td.num{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}
.swatch{{display:inline-block;width:11px;height:11px;border-radius:50%;margin-right:6px;
vertical-align:-1px;border:1px solid #6b7280}}
.legend{{color:#4b5563;font-size:12px;margin-top:6px}}
.scale{{display:inline-flex;gap:2px;vertical-align:middle;margin:0 4px}}
.scale span{{width:26px;height:10px;display:inline-block}}
.note{{color:#6b7280;font-size:12px}}
svg text{{font-family:system-ui,"DejaVu Sans",sans-serif}}
svg .name{{font-size:12px;fill:#111827}}
svg .path-name{{font-weight:700;fill:{ACCENT}}}
svg .score-label{{font-size:11px;font-weight:600}}
footer{{padding:0 28px 24px;color:#6b7280;font-size:12px}}
"""


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _names(names: Sequence[str]) -> str:
    return ", ".join(html.escape(n) for n in names) if names else "none"


def _num(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def render_page(
    incident: Incident,
    *,
    edges: Sequence[tuple[str, str]] | None = None,
    points: Sequence[ScorePoint] = (),
    change: Change | None = None,
) -> str:
    """The HTML page of one incident.

    Parameters
    ----------
    incident
        Its latest attribution.
    edges
        The causal graph's arrows; without them the page draws the nodes only, and says so.
    points
        The graph's score documents around the incident, in time order (the timeline).
    change
        The distribution-change answer for the incident's target, if there is one.
    """
    e = html.escape
    top = incident.causes[0] if incident.causes else None
    members = {*incident.players, *(c.node for c in incident.causes), incident.target}
    inner = [(a, b) for a, b in edges or () if a in members and b in members]
    path = cause_path(inner, top.node if top else None, incident.target)
    watched = [c.node for c in incident.causes if c.node != incident.target][:TOP_CAUSES]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{e(incident.target)} incident {e(incident.incident_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{e(incident.target)} is anomalous "
        f"<span class='meta'>graph {e(incident.graph)}</span></h1>",
        f'<div class="meta">incident {e(incident.incident_id)} \u00b7 revision '
        f"{incident.revision} \u00b7 window {_when(incident.window_start)} \u00b7 detected "
        f"{_when(incident.detected_at)}</div></header><main>",
        _answer(incident, path),
        '<section class="wide" id="graph"><h2>Causal graph</h2>',
        graph_svg(incident, edges, path),
        _graph_legend(edges is not None),
        "</section>",
        '<section id="waterfall"><h2>Contributions to the target\'s score</h2>',
        waterfall_svg(incident),
        f'<div class="legend">Shapley contributions add up to the score of '
        f"{e(incident.target)}, {incident.target_score:.2f} nats "
        f"(sum {sum(c.contribution for c in incident.causes):.2f}).</div></section>",
        '<section id="timeline"><h2>Scores around the incident</h2>',
        timeline_svg(incident, points, watched),
        '<div class="legend">The target\'s score and the conditional scores of its top causes; '
        "the incident was open in the shaded span; the dashed line is the incident's window."
        + ("" if points else " No score documents were given (--scores).")
        + "</div></section>",
        _causes_table(incident),
        _details(incident, len(points)),
        _change(change),
        f"</main><footer>stream-rca {e(__version__)} \u00b7 a page with no script and nothing "
        "fetched: it can be mailed, archived or opened offline.</footer></body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _answer(incident: Incident, path: Sequence[str]) -> str:
    e = html.escape
    top = incident.causes[0] if incident.causes else None
    if top is None:
        text = "No root cause was attributed."
    else:
        text = (
            f"Top root cause: <b>{e(top.node)}</b>, explaining {top.share:.0%} of the anomaly "
            f"({top.contribution:.2f} of {incident.target_score:.2f} nats; node score "
            f"{_num(top.score, '.1f')})."
        )
        if top.tied:
            text += " Its order against the next cause is not resolved (tied)."
    chips = '<span class="arrow">\u2192</span>'.join(
        f'<span class="chip">{e(n)}</span>' for n in path
    )
    truth = ""
    if incident.truth is not None:
        verdict = "found" if top is not None and top.node in incident.truth else "not first"
        truth = (
            f'<p class="note">Injected by the simulation: {_names(incident.truth)} ({verdict}).</p>'
        )
    return (
        f'<section class="wide" id="answer"><p class="answer">{text}</p>'
        f'<div class="path" id="path" title="path from the top cause to the target">{chips}</div>'
        f"{truth}</section>"
    )


def _graph_legend(has_edges: bool) -> str:
    stops = "".join(
        f'<span style="background:{score_color(s)}" title="{s:g} nats"></span>'
        for s in (0, 2, 3, 4, 5, 7, 10, 15, 20)
    )
    note = (
        ""
        if has_edges
        else " The causal graph was not given (--graph): nodes are drawn without arrows."
    )
    return (
        f'<div class="legend">Colour: conditional score, 0<span class="scale">{stops}</span>20+ '
        f"nats (5 is a one-in-150 value, 10 one in 22,000). Size: positive contribution; a "
        f"dashed ring is a negative one. Thick blue: the path from the top cause to the target; "
        f"a thick black ring is the target.{note}</div>"
    )


def _causes_table(incident: Incident) -> str:
    e = html.escape
    rows = []
    for i, c in enumerate(incident.causes, start=1):
        flags = [
            f
            for f, names in (
                ("missing", incident.missing),
                ("cold", incident.cold),
                ("marginalised", incident.marginalised),
            )
            if c.node in names
        ]
        if c.tied:
            flags.append("tied with the next")
        rows.append(
            f'<tr><td class="num">{i}</td><td><span class="swatch" '
            f'style="background:{score_color(c.score)}"></span>{e(c.node)}</td>'
            f'<td class="num">{c.contribution:+.3f}</td><td class="num">{c.share:.1%}</td>'
            f'<td class="num">{_num(c.stderr, ".3f")}</td><td class="num">'
            f"{_num(c.score, '.2f')}</td><td>{e(', '.join(flags))}</td></tr>"
        )
    return (
        '<section id="causes"><h2>Ranked root causes</h2><table><thead><tr><th>#</th>'
        "<th>node</th><th>contribution (nats)</th><th>share</th><th>std. error</th>"
        "<th>node score</th><th>notes</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _details(incident: Incident, n_points: int) -> str:
    e = html.escape
    method = incident.method + (" (linear mechanisms: matrix path)" if incident.linear else "")
    errs = [c.stderr for c in incident.causes if c.stderr is not None]
    items = [
        ("method", e(method) + " Shapley"),
        ("players", str(len(incident.players))),
        ("Monte Carlo samples", str(incident.n_samples)),
        ("permutations", str(incident.n_permutations) if incident.n_permutations else "-"),
        ("largest std. error", f"{max(errs):.3f} nats" if errs else "-"),
        ("tied causes", _names([c.node for c in incident.causes if c.tied])),
        ("seed", "-" if incident.seed is None else str(incident.seed)),
        ("target score", f"{incident.target_score:.2f} nats"),
        ("trigger score", _num(incident.trigger_score) + " nats"),
        ("missing (noise at its median)", _names(incident.missing)),
        ("cold (still warming up)", _names(incident.cold)),
        ("marginalised", _names(incident.marginalised)),
        ("ranking rule", e(incident.rank_rule or "by contribution")),
        (
            "attribution time",
            "-" if incident.seconds is None else f"{incident.seconds * 1000:.1f} ms",
        ),
        ("score documents shown", str(n_points)),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    return f'<section id="details"><h2>How this was computed</h2><table>{body}</table></section>'


def _change(change: Change | None) -> str:
    if change is None:
        return ""
    e = html.escape
    top = max((abs(c.contribution) for c in change.contributions), default=0.0) or 1.0
    rows = "".join(
        f"<tr><td>{e(c.node)}</td><td class='num'>{c.contribution:+.4g}</td>"
        f"<td class='num'>{c.share:.1%}</td><td><svg width='160' height='10'>"
        f"<rect width='{160 * abs(c.contribution) / top:.1f}' height='10' "
        f"fill='{LINE_COLORS[0] if c.contribution >= 0 else LINE_COLORS[3]}'/></svg></td></tr>"
        for c in change.contributions
    )
    periods = "; ".join(f"{e(k)}: {e(str(v))}" for k, v in change.periods.items())
    about = ", ".join(
        x
        for x in (
            f"statistic {e(change.statistic)}" if change.statistic else "",
            f"method {e(change.method)}" if change.method else "",
            f"{change.samples} samples" if change.samples else "",
        )
        if x
    )
    return (
        '<section class="wide" id="change"><h2>Which mechanism moved? (distribution change of '
        f"{e(change.target)})</h2><p class='note'>{about}{'; ' if about and periods else ''}"
        f"{periods}</p><table><thead><tr><th>node</th><th>contribution</th><th>share</th>"
        f"<th></th></tr></thead><tbody>{rows}</tbody></table></section>"
    )

"""The incident page's charts as server-side SVG: the waterfall and the timeline.

- Waterfall: each root cause's contribution as a step from the running sum, largest first as
  ranked, ending on the target's score (Shapley efficiency: the steps add up to it).
- Timeline: the target's score and its top causes' conditional scores over the snapshots around
  the incident, with the span the incident stayed open shaded.

Every name is escaped (node names are user input).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from stream_rca.report.documents import Cause, Incident, ScorePoint
from stream_rca.report.graph_svg import ACCENT, short

__all__ = ["LINE_COLORS", "nice_ticks", "timeline_svg", "waterfall_svg"]

LINE_COLORS = (ACCENT, "#ea580c", "#7c3aed", "#0d9488")
_UP, _DOWN, _TOTAL = "#dc2626", "#0d9488", "#111827"
_FONT = 'font-size="12"'


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``.

    >>> nice_ticks(0.0, 17.0)
    [0.0, 5.0, 10.0, 15.0, 20.0]
    """
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t < hi + step * 0.999:
        ticks.append(float(round(t, 10)))
        t += step
    return ticks


def _rows(incident: Incident, limit: int) -> list[tuple[str, Cause | None, float, float]]:
    """(label, cause, start, end) of each step; causes past ``limit`` are one row."""
    rows: list[tuple[str, Cause | None, float, float]] = []
    run = 0.0
    cut = limit if len(incident.causes) > limit + 1 else limit + 1
    shown, rest = incident.causes[:cut], incident.causes[cut:]
    for c in shown:
        rows.append((c.node, c, run, run + c.contribution))
        run += c.contribution
    if rest:
        total = sum(c.contribution for c in rest)
        rows.append((f"{len(rest)} others", None, run, run + total))
        run += total
    return rows


def waterfall_svg(incident: Incident, *, limit: int = 10, width: int = 600) -> str:
    """The waterfall of contributions, ending on the target's score."""
    e = html.escape
    rows = _rows(incident, limit)
    ends = [0.0, incident.target_score] + [v for _, _, a, b in rows for v in (a, b)]
    ticks = nice_ticks(min(ends), max(ends))
    lo, hi = ticks[0], ticks[-1]
    left, right, row_h, top = 180, 70, 26, 14
    plot = width - left - right
    height = top + (len(rows) + 1) * row_h + 34

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="waterfall" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" role="img" '
        f'aria-label="waterfall of contributions">'
    ]
    axis_y = top + (len(rows) + 1) * row_h + 4
    for t in ticks:
        out.append(
            f'<line x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{axis_y}" '
            f'stroke="{"#6b7280" if t == 0 else "#e5e7eb"}" stroke-width="1"/>'
            f'<text x="{x(t):.1f}" y="{axis_y + 14}" text-anchor="middle" {_FONT} '
            f'fill="#4b5563">{t:g}</text>'
        )
    out.append(
        f'<text x="{left + plot / 2:.1f}" y="{axis_y + 28}" text-anchor="middle" {_FONT} '
        f'fill="#4b5563">nats</text>'
    )
    for i, (label, cause, a, b) in enumerate(rows):
        y = top + i * row_h
        value = b - a
        x0, x1 = sorted((x(a), x(b)))
        color = _UP if value >= 0 else _DOWN
        tip = f"{label}: {value:+.2f} nats"
        if cause is not None and cause.stderr:
            tip += f" \u00b1 {cause.stderr:.2f}"
        if cause is not None and cause.tied:
            tip += " (tied with the next)"
        out.append(
            f'<g class="step"><title>{e(tip)}</title>'
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" {_FONT} '
            f'fill="#111827">{e(short(label, 26))}</text>'
            f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1.0):.1f}" height="{row_h - 8}" '
            f'rx="2" fill="{color}"/>'
        )
        if cause is not None and cause.stderr:
            s0, s1 = x(b - cause.stderr), x(b + cause.stderr)
            out.append(
                f'<line x1="{s0:.1f}" y1="{y + row_h / 2}" x2="{s1:.1f}" y2="{y + row_h / 2}" '
                f'stroke="#111827" stroke-width="1.5"/>'
            )
        out.append(
            f'<text x="{width - right + 6}" y="{y + 16}" {_FONT} fill="{color}">'
            f"{value:+.2f}</text></g>"
        )
        nxt = y + row_h
        out.append(
            f'<line x1="{x(b):.1f}" y1="{y + row_h - 4}" x2="{x(b):.1f}" y2="{nxt + 4}" '
            f'stroke="#6b7280" stroke-dasharray="2 2"/>'
        )
    y = top + len(rows) * row_h
    x0, x1 = sorted((x(0.0), x(incident.target_score)))
    out.append(
        f'<g class="step total"><title>target score {incident.target_score:.2f} nats</title>'
        f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" {_FONT} font-weight="600" '
        f'fill="#111827">{e(short(incident.target, 16))} score</text>'
        f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1.0):.1f}" height="{row_h - 8}" '
        f'rx="2" fill="{_TOTAL}"/>'
        f'<text x="{width - right + 6}" y="{y + 16}" {_FONT} font-weight="600" '
        f'fill="{_TOTAL}">{incident.target_score:.2f}</text></g>'
    )
    out.append("</svg>")
    return "".join(out)


def timeline_svg(
    incident: Incident,
    points: Sequence[ScorePoint],
    nodes: Sequence[str],
    *,
    width: int = 600,
    height: int = 260,
) -> str:
    """Scores over ``points``: the target's (marginal) and the ``nodes``' (conditional)."""
    e = html.escape
    left, right, top, bottom = 44, 16, 40, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    t0 = incident.window_start
    ts = [p.ts - t0 for p in points]
    span_lo, span_hi = min([*ts, 0.0]), max([*ts, 0.0])
    if span_hi <= span_lo:
        span_hi = span_lo + 1.0
    series: list[tuple[str, str, list[float | None]]] = [
        (
            f"{incident.target} (target)",
            _TOTAL,
            [p.target_scores.get(incident.target) for p in points],
        )
    ]
    for i, n in enumerate(nodes):
        series.append((n, LINE_COLORS[i % len(LINE_COLORS)], [p.scores.get(n) for p in points]))
    values = [v for _, _, vs in series for v in vs if v is not None]
    yticks = nice_ticks(0.0, max([10.0, *values]))
    y_hi = yticks[-1]
    minutes = span_hi - span_lo > 180

    def x(v: float) -> float:
        return left + (v - span_lo) / (span_hi - span_lo) * plot_w

    def y(v: float) -> float:
        return top + plot_h - min(v, y_hi) / y_hi * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" role="img" aria-label="scores over time">'
    ]
    step = (ts[-1] - ts[0]) / (len(ts) - 1) if len(ts) > 1 else 1.0
    for p, rel in zip(points, ts, strict=True):  # the span the incident stayed open
        if p.open_incidents.get(incident.target) == incident.incident_id:
            out.append(
                f'<rect class="open" x="{x(rel):.1f}" y="{top}" '
                f'width="{max(x(rel + step) - x(rel), 1.0):.1f}" height="{plot_h}" '
                f'fill="#fee2e2"/>'
            )
    for t in yticks:
        out.append(
            f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + plot_w}" y2="{y(t):.1f}" '
            f'stroke="#e5e7eb"/><text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" '
            f'{_FONT} fill="#4b5563">{t:g}</text>'
        )
    for t in nice_ticks(span_lo / (60 if minutes else 1), span_hi / (60 if minutes else 1), 7):
        v = t * (60 if minutes else 1)
        tick = f"{t:+g}" if t else "0"
        if span_lo <= v <= span_hi:
            out.append(
                f'<text x="{x(v):.1f}" y="{top + plot_h + 16}" text-anchor="middle" {_FONT} '
                f'fill="#4b5563">{tick}</text>'
            )
    out.append(
        f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle" {_FONT} '
        f'fill="#4b5563">{"minutes" if minutes else "seconds"} from the incident window; '
        f"score in nats</text>"
        f'<line x1="{x(0.0):.1f}" y1="{top}" x2="{x(0.0):.1f}" y2="{top + plot_h}" '
        f'stroke="#dc2626" stroke-width="1.5" stroke-dasharray="5 3"/>'
    )
    legend_x = float(left)
    for label, color, vs in series:
        d = _polyline(
            [(x(r), y(v)) if v is not None else None for r, v in zip(ts, vs, strict=False)]
        )
        width_px = 2.6 if color == _TOTAL else 1.8
        if d:
            out.append(
                f'<path class="series" d="{d}" fill="none" stroke="{color}" '
                f'stroke-width="{width_px}" stroke-linejoin="round">'
                f"<title>{e(label)}</title></path>"
            )
        name = short(label, 26)
        out.append(
            f'<rect x="{legend_x:.0f}" y="10" width="14" height="4" fill="{color}"/>'
            f'<text x="{legend_x + 18:.0f}" y="16" {_FONT} fill="#111827">{e(name)}</text>'
        )
        legend_x += 30 + 6.6 * len(name)
    if not points:
        out.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" '
            f'{_FONT} fill="#6b7280">no scores around this incident</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _polyline(pts: Sequence[tuple[float, float] | None]) -> str:
    """An SVG path through ``pts``, broken where a point is ``None`` (no score then)."""
    parts: list[str] = []
    pen_down = False
    for p in pts:
        if p is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{p[0]:.1f},{p[1]:.1f}")
        pen_down = True
    return " ".join(parts)

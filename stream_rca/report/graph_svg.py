"""The causal graph of an incident as server-side SVG: layered layout, coloured by score.

Players (the target and its ancestors) are laid out in layers from the root causes on the
left to the target on the right (a node's layer is its longest path from a root), ordered
within each layer by a few barycentre sweeps so that arrows cross little. Each node is coloured
by its conditional score (:func:`score_color`) and sized by its positive contribution; a
negative contribution is a dashed ring. The path from the top cause to the target is drawn
apart: thick, in the accent colour, over the other arrows.

Every name is escaped (:func:`html.escape`): node names are user input.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import networkx as nx

from stream_rca.report.documents import Incident

__all__ = ["ACCENT", "cause_path", "graph_svg", "score_color", "short"]

ACCENT = "#1d4ed8"
_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (236, 242, 238)),
    (3.0, (253, 230, 138)),
    (5.0, (251, 146, 60)),
    (10.0, (220, 38, 38)),
    (20.0, (127, 29, 29)),
)
_COL_W, _ROW_H, _R_MIN, _R_MAX = 200, 92, 13.0, 30.0


def score_color(score: float | None) -> str:
    """The fill of a node with this conditional score (nats); grey when it has none.

    >>> score_color(0.0), score_color(10.0), score_color(None)
    ('#ecf2ee', '#dc2626', '#d1d5db')
    """
    if score is None or not math.isfinite(score):
        return "#d1d5db"
    s = min(max(score, 0.0), _STOPS[-1][0])
    for (a, ca), (b, cb) in itertools.pairwise(_STOPS):
        if s <= b:
            t = (s - a) / (b - a)
            rgb = (round(x + (y - x) * t) for x, y in zip(ca, cb, strict=True))
            return "#{:02x}{:02x}{:02x}".format(*rgb)
    return "#{:02x}{:02x}{:02x}".format(*_STOPS[-1][1])


def text_color(score: float | None) -> str:
    """Readable text over :func:`score_color`."""
    return "#ffffff" if score is not None and score >= 7.0 else "#111827"


def short(name: str, limit: int = 24) -> str:
    """``name`` cut to ``limit`` characters with an ellipsis (not escaped)."""
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def cause_path(
    edges: Iterable[tuple[str, str]], source: str | None, target: str
) -> tuple[str, ...]:
    """The shortest directed path from ``source`` to ``target``, or just the two ends.

    >>> cause_path([("db", "svc"), ("svc", "api"), ("db", "api")], "db", "api")
    ('db', 'api')
    >>> cause_path([], "db", "api")
    ('db', 'api')
    """
    if source is None or source == target:
        return (target,)
    g = nx.DiGraph(list(edges))
    if source in g and target in g and nx.has_path(g, source, target):
        return tuple(nx.shortest_path(g, source, target))
    return (source, target)


def _layers(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[list[str]]:
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    depth: dict[str, int] = {}
    for n in nx.topological_sort(g):
        depth[n] = max((depth[p] + 1 for p in g.predecessors(n)), default=0)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=0) + 1)]
    for n in nodes:
        layers[depth[n]].append(n)
    for _ in range(4):  # barycentre sweeps, forwards then backwards
        for i in range(1, len(layers)):
            _sort(layers[i], layers[i - 1], g.predecessors)
        for i in range(len(layers) - 2, -1, -1):
            _sort(layers[i], layers[i + 1], g.successors)
    return layers


def _sort(layer: list[str], other: list[str], neighbours: Callable[[str], Iterable[str]]) -> None:
    pos = {n: i for i, n in enumerate(other)}
    here = {n: i for i, n in enumerate(layer)}

    def key(n: str) -> float:
        near = [pos[m] for m in neighbours(n) if m in pos]
        return sum(near) / len(near) if near else float(here[n])

    layer.sort(key=key)


def graph_svg(
    incident: Incident,
    edges: Sequence[tuple[str, str]] | None,
    path: Sequence[str],
) -> str:
    """The SVG of the incident's players and the arrows between them.

    Parameters
    ----------
    incident
        The attribution: players, scores and contributions.
    edges
        The causal graph's arrows (cause, effect); ``None`` when unknown (nodes only).
    path
        The nodes from the top cause to the target, drawn apart.
    """
    causes = {c.node: c for c in incident.causes}
    nodes = list(dict.fromkeys([*incident.players, *causes, incident.target]))
    members = set(nodes)
    arrows = [(a, b) for a, b in edges or () if a in members and b in members]
    layers = _layers(nodes, arrows)
    tallest = max(len(layer) for layer in layers)
    width = max(len(layers) * _COL_W, 420)
    height = tallest * _ROW_H + 40
    xy: dict[str, tuple[float, float]] = {}
    for i, layer in enumerate(layers):
        top = (height - len(layer) * _ROW_H) / 2
        for j, n in enumerate(layer):
            xy[n] = (_COL_W / 2 + i * _COL_W, top + (j + 0.42) * _ROW_H)
    best = max((c.contribution for c in causes.values()), default=0.0)
    radius = {
        n: _R_MIN
        + (_R_MAX - _R_MIN)
        * math.sqrt(max(causes[n].contribution, 0.0) / best if n in causes and best > 0 else 0.0)
        for n in nodes
    }
    on_path = set(itertools.pairwise(path))
    e = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="causal graph">',
        "<defs>",
        _marker("arrow", "#9ca3af"),
        _marker("arrow-path", ACCENT),
        "</defs>",
    ]
    for a, b in sorted(arrows, key=lambda ab: ab in on_path):
        hot = (a, b) in on_path
        out.append(
            f'<path class="{"edge path-edge" if hot else "edge"}" d="{_curve(xy, radius, a, b)}" '
            f'fill="none" stroke="{ACCENT if hot else "#9ca3af"}" '
            f'stroke-width="{4 if hot else 1.4}" '
            f'marker-end="url(#{"arrow-path" if hot else "arrow"})"><title>{e(a)} \u2192 {e(b)}'
            "</title></path>"
        )
    for n in nodes:
        x, y = xy[n]
        cause = causes.get(n)
        score = cause.score if cause is not None else None
        ring, dash = ("#111827", "") if n == incident.target else ("#4b5563", "")
        if n in path:
            ring = ACCENT
        if cause is not None and cause.contribution < 0:
            dash = ' stroke-dasharray="4 3"'
        stroke = 3.5 if n in path or n == incident.target else 1.2
        info = [n]
        if cause is not None:
            info.append(f"contribution {cause.contribution:.2f} nats ({cause.share:.0%})")
        info.append("conditional score " + ("-" if score is None else f"{score:.1f} nats"))
        for flag, names in (
            ("missing", incident.missing),
            ("cold", incident.cold),
            ("marginalised", incident.marginalised),
        ):
            if n in names:
                info.append(flag)
        label = f"{score:.1f}" if score is not None else "\u2013"
        out.append(
            f'<g class="node" data-node="{e(n)}"><title>{e(chr(10).join(info))}</title>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius[n]:.1f}" fill="{score_color(score)}" '
            f'stroke="{ring}" stroke-width="{stroke}"{dash}/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" class="score-label" '
            f'fill="{text_color(score)}">{label}</text>'
            f'<text x="{x:.1f}" y="{y + radius[n] + 15:.1f}" text-anchor="middle" '
            f'class="{"name path-name" if n in path else "name"}">{e(short(n))}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)


def _marker(name: str, color: str) -> str:
    return (
        f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse" markerUnits="userSpaceOnUse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
    )


def _curve(
    xy: Mapping[str, tuple[float, float]], radius: Mapping[str, float], a: str, b: str
) -> str:
    (x1, y1), (x2, y2) = xy[a], xy[b]
    ang = math.atan2(y2 - y1, x2 - x1)
    sx, sy = x1 + radius[a] * math.cos(ang), y1 + radius[a] * math.sin(ang)
    ex, ey = x2 - (radius[b] + 2) * math.cos(ang), y2 - (radius[b] + 2) * math.sin(ang)
    mid = (ex - sx) / 2
    return (
        f"M{sx:.1f},{sy:.1f} C{sx + mid:.1f},{sy + (ey - sy) * 0.15:.1f} "
        f"{ex - mid:.1f},{ey - (ey - sy) * 0.15:.1f} {ex:.1f},{ey:.1f}"
    )

"""Building blocks of the stream-rca dashboards: panels, queries, variables, layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "DASHBOARDS_DIR",
    "DATASOURCE_UID",
    "DS",
    "GRAPH_VAR",
    "GT",
    "NODE_VAR",
    "RATE",
    "SCHEMA_VERSION",
    "SCORE_STEPS",
    "SCORE_THRESHOLDS",
    "TARGET_VAR",
    "Board",
    "G",
    "Json",
    "bargauge",
    "dashboard",
    "levels",
    "panel",
    "quantiles",
    "queries",
    "rate",
    "solid",
    "stat",
    "target",
    "thresholds",
    "timeline",
    "timeseries",
    "variable",
]

DATASOURCE_UID = "stream-rca-prometheus"
DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "dashboards"
SCHEMA_VERSION = 39

Json = dict[str, Any]
DS: Json = {"type": "prometheus", "uid": DATASOURCE_UID}
G = 'graph="$graph"'
GT = 'graph="$graph", target="$target"'
RATE = "[$__rate_interval]"

# Score colours: 0 typical, 5 a one-in-150 value, 10 one in 22,000 (nats).
SCORE_STEPS: list[Json] = [
    {"color": "green", "value": None},
    {"color": "yellow", "value": 3},
    {"color": "orange", "value": 5},
    {"color": "red", "value": 10},
]


class Board:
    """Lays panels out left to right, top to bottom, on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def add(self, panel: Json, w: int, h: int) -> None:
        """Place ``panel`` (``w`` columns by ``h`` rows) after the previous one; number it."""
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def row(self, h: int, *panels: Json) -> None:
        """Place ``panels`` side by side, ``h`` rows high, sharing the 24 columns equally."""
        if not panels or 24 % len(panels):
            raise ValueError(f"a row holds 1, 2, 3, 4, 6, 8, 12 or 24 panels, not {len(panels)}")
        for p in panels:
            self.add(p, 24 // len(panels), h)


def target(
    expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, table: bool = False
) -> Json:
    """A Prometheus query of a panel.

    Parameters
    ----------
    expr
        PromQL, with Grafana variables (``$graph``, ``$__rate_interval``...).
    legend
        Legend format (``{{node}}``); Grafana's automatic legend when empty.
    ref
        Query letter, unique within the panel.
    instant
        An instant query (the latest value) instead of a range query.
    table
        An instant query in table format (labels as columns), for table panels.
    """
    instant = instant or table
    t: Json = {
        "refId": ref,
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }
    if instant:
        t["format"] = "table" if table else "time_series"
    return t


def queries(*pairs: tuple[str, str], instant: bool = False, table: bool = False) -> list[Json]:
    """The queries of a panel from ``(expr, legend)`` pairs, lettered ``A``, ``B``, ``C``..."""
    return [
        target(expr, legend, ref=chr(ord("A") + i), instant=instant, table=table)
        for i, (expr, legend) in enumerate(pairs)
    ]


def rate(metric: str, *, by: str = "", selector: str = G) -> str:
    """``sum [by (...)] (rate(metric{selector}[$__rate_interval]))``; no selector: all graphs."""
    labels = f"{{{selector}}}" if selector else ""
    group = f" by ({by}) " if by else ""
    return f"sum{group}(rate({metric}{labels}{RATE}))"


def quantiles(metric: str, selector: str = G) -> list[Json]:
    """p50, p95 and p99 of a histogram over every series that matches ``selector``."""
    buckets = f"sum by (le) (rate({metric}_bucket{{{selector}}}{RATE}))"
    return [
        target(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}", ref=ref)
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str = "none",
    defaults: Json | None = None,
    options: Json | None = None,
    transformations: list[Json] | None = None,
    overrides: list[Json] | None = None,
) -> Json:
    """A panel of any kind with the provisioned datasource."""
    fd: Json = {"unit": unit}
    fd.update(defaults or {})
    p: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": fd, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        p["transformations"] = transformations
    return p


def thresholds(steps: list[Json]) -> Json:
    """Field defaults colouring values by absolute threshold ``steps``."""
    return {"thresholds": {"mode": "absolute", "steps": steps}, "color": {"mode": "thresholds"}}


SCORE_THRESHOLDS: Json = thresholds(SCORE_STEPS)
"""Field defaults colouring a score (nats) by :data:`SCORE_STEPS`."""


def levels(base: str, *steps: tuple[float, str]) -> Json:
    """:func:`thresholds`: ``base`` colour below the first step, then ``(from value, colour)``."""
    first: Json = {"color": base, "value": None}
    return thresholds([first, *({"color": c, "value": v} for v, c in steps)])


def solid(color: str) -> Json:
    """:func:`thresholds` of one colour for every value."""
    return levels(color)


def stat(title: str, description: str, targets: list[Json], **kw: Any) -> Json:
    """A stat panel of the latest value; ``text_mode="name"`` shows the series name instead."""
    text_mode = kw.pop("text_mode", "value")
    return panel(
        "stat",
        title,
        description,
        targets,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": text_mode,
            "justifyMode": "auto",
            "orientation": "auto",
        },
        **kw,
    )


def timeseries(title: str, description: str, targets: list[Json], **kw: Any) -> Json:
    """A time series panel; its thresholds, if any, are drawn as dashed lines."""
    custom: Json = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10}
    defaults: Json = dict(kw.pop("defaults", {}))
    if "thresholds" in defaults:
        custom["thresholdsStyle"] = {"mode": "dashed"}
    defaults.update({"custom": custom, "color": {"mode": "palette-classic"}})
    return panel(
        "timeseries",
        title,
        description,
        targets,
        defaults=defaults,
        options={
            "legend": {
                "displayMode": "table",
                "placement": "right",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        **kw,
    )


def bargauge(title: str, description: str, targets: list[Json], **kw: Any) -> Json:
    """A horizontal bar gauge of the latest value of each series (a ranking)."""
    return panel(
        "bargauge",
        title,
        description,
        targets,
        options={
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
        **kw,
    )


def timeline(kind: str, title: str, description: str, targets: list[Json], **kw: Any) -> Json:
    """A state-timeline or status-history panel (one row per series)."""
    options: Json = {"showValue": "never", "rowHeight": 0.9, "legend": {"showLegend": True}}
    if kind == "state-timeline":
        options["mergeValues"] = True
    return panel(kind, title, description, targets, options=options, **kw)


def variable(name: str, query: str, *, label: str, multi: bool = False) -> Json:
    """A template variable filled by a Grafana ``label_values(...)`` query.

    A ``multi`` variable also offers "All" (regex ``.+``), selected by default.
    """
    current: Json = {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {}
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        **({"allValue": ".+"} if multi else {}),
        "current": current,
        "options": [],
        "hide": 0,
    }


GRAPH_VAR = variable("graph", "label_values(stream_rca_node_score, graph)", label="Graph")
TARGET_VAR = variable(
    "target", f"label_values(stream_rca_target_score{{{G}}}, target)", label="Target"
)
NODE_VAR = variable(
    "node", f"label_values(stream_rca_node_score{{{G}}}, node)", label="Node", multi=True
)

INCIDENT_ANNOTATION: Json = {
    "name": "Incidents",
    "datasource": DS,
    "enable": True,
    "iconColor": "red",
    "expr": f"max by (target) (stream_rca_incident_open{{{G}}}) == 1",
    "step": "30s",
    "titleFormat": "Incident open on {{target}}",
    "useValueForTime": False,
}


def dashboard(uid: str, title: str, description: str, board: Board, variables: list[Json]) -> Json:
    """A whole dashboard: the board's panels, the variables, links to the other dashboards."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["stream-rca"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [
            {
                "type": "dashboards",
                "tags": ["stream-rca"],
                "title": "stream-rca",
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                INCIDENT_ANNOTATION,
            ]
        },
        "templating": {"list": variables},
        "panels": board.panels,
    }

"""Building blocks of the stream-rca dashboards on grafana-foundation-sdk's builders.

Panels, queries and variables are the SDK's builders; this module only fixes our choices
(datasource, colours, legends, layout) once. The one thing the SDK cannot say is the
Prometheus annotation's ``step``/``titleFormat``/``useValueForTime`` (its ``AnnotationQuery``
model has no such fields): :class:`PrometheusAnnotation` is the small escape hatch for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import bargauge as sdk_bargauge
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as sdk_prometheus
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import statetimeline as sdk_statetimeline
from grafana_foundation_sdk.builders import statushistory as sdk_statushistory
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

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
    "TARGET_VAR",
    "Board",
    "G",
    "Json",
    "PrometheusAnnotation",
    "Query",
    "Steps",
    "bargauge",
    "dashboard",
    "levels",
    "quantiles",
    "queries",
    "rate",
    "solid",
    "stat",
    "state_timeline",
    "status_history",
    "table",
    "target",
    "timeseries",
    "variable",
]

DATASOURCE_UID = "stream-rca-prometheus"
DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "dashboards"
SCHEMA_VERSION = 39
"""Kept at 39 (the SDK writes 41, Grafana 11.6's): nothing here needs a later migration."""

Json = dict[str, Any]
Query = sdk_prometheus.Dataquery
Steps = Sequence[tuple[float | None, str]]
"""Threshold steps ``(from value, colour)``; the first one's value is ``None`` (from -inf)."""

DS = dm.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
G = 'graph="$graph"'
GT = 'graph="$graph", target="$target"'
RATE = "[$__rate_interval]"

# Score colours: 0 typical, 5 a one-in-150 value, 10 one in 22,000 (nats).
SCORE_STEPS: Steps = ((None, "green"), (3, "yellow"), (5, "orange"), (10, "red"))


class _Panel(Protocol):
    """What every SDK panel builder has (each panel kind has its own class)."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: dm.DataSourceRef) -> Self: ...
    def targets(self, targets: list[Builder[Dataquery]]) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def thresholds(self, thresholds: Builder[dm.ThresholdsConfig]) -> Self: ...
    def color_scheme(self, color: Builder[dm.FieldColor]) -> Self: ...
    def id(self, id_val: int) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def build(self) -> dm.Panel: ...


P = TypeVar("P", bound=_Panel)


class Board:
    """The panels of a dashboard in rows on Grafana's 24-column grid, numbered in order.

    The SDK's ``Dashboard.with_panel`` places each panel after the previous one and starts a
    new row when a row is full; :meth:`row` makes sure that rows are full.
    """

    def __init__(self) -> None:
        self.panels: list[Builder[dm.Panel]] = []

    def add(self, panel: _Panel, w: int, h: int) -> None:
        """Append ``panel``, ``w`` columns by ``h`` rows."""
        placed = panel.id(len(self.panels) + 1).span(w).height(h)
        if not isinstance(placed, Builder):
            raise TypeError(f"not a panel builder: {placed!r}")
        self.panels.append(placed)

    def row(self, h: int, *panels: _Panel) -> None:
        """Place ``panels`` side by side, ``h`` rows high, sharing the 24 columns equally."""
        if not panels or 24 % len(panels):
            raise ValueError(f"a row holds 1, 2, 3, 4, 6, 8, 12 or 24 panels, not {len(panels)}")
        for p in panels:
            self.add(p, 24 // len(panels), h)


def target(
    expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, table: bool = False
) -> Query:
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
    q = (
        Query()
        .ref_id(ref)
        .datasource(DS)
        .editor_mode(pm.QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend or "__auto")
    )
    if not (instant or table):
        return q.range()
    fmt = pm.PromQueryFormat.TABLE if table else pm.PromQueryFormat.TIME_SERIES
    return q.instant().format(fmt)


def queries(*pairs: tuple[str, str], instant: bool = False, table: bool = False) -> list[Query]:
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


def quantiles(metric: str, selector: str = G) -> list[Query]:
    """p50, p95 and p99 of a histogram over every series that matches ``selector``."""
    buckets = f"sum by (le) (rate({metric}_bucket{{{selector}}}{RATE}))"
    return [
        target(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}", ref=ref)
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


def levels(base: str, *steps: tuple[float, str]) -> Steps:
    """Threshold steps: ``base`` colour below the first step, then ``(from value, colour)``."""
    return ((None, base), *steps)


def solid(color: str) -> Steps:
    """Threshold steps of one colour for every value."""
    return levels(color)


def _thresholds(steps: Steps) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def _base(
    p: P, title: str, description: str, targets: Sequence[Query], unit: str, steps: Steps | None
) -> P:
    """Title, description, datasource, queries, unit and colours by threshold of any panel."""
    p = p.title(title).description(description).datasource(DS).targets(list(targets)).unit(unit)
    if steps is not None:
        p = p.thresholds(_thresholds(steps)).color_scheme(
            db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)
        )
    return p


def _last() -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def stat(
    title: str,
    description: str,
    targets: Sequence[Query],
    *,
    unit: str = "none",
    steps: Steps | None = None,
    show_name: bool = False,
) -> sdk_stat.Panel:
    """A stat panel of the latest value, on a background coloured by ``steps``.

    ``show_name`` shows the series name (e.g. the top root cause) instead of the value.
    """
    return (
        _base(sdk_stat.Panel(), title, description, targets, unit, steps)
        .reduce_options(_last())
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.NAME if show_name else cm.BigValueTextMode.VALUE)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
    )


def timeseries(
    title: str,
    description: str,
    targets: Sequence[Query],
    *,
    unit: str = "none",
    steps: Steps | None = None,
) -> sdk_timeseries.Panel:
    """A time series panel in the classic palette; ``steps``, if any, drawn as dashed lines."""
    p = (
        _base(sdk_timeseries.Panel(), title, description, targets, unit, steps)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(cm.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)
        )
    )
    if steps is not None:
        p = p.thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
        )
    return p


def bargauge(
    title: str,
    description: str,
    targets: Sequence[Query],
    *,
    unit: str = "none",
    steps: Steps | None = None,
) -> sdk_bargauge.Panel:
    """A horizontal bar gauge of the latest value of each series (a ranking)."""
    return (
        _base(sdk_bargauge.Panel(), title, description, targets, unit, steps)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
        .reduce_options(_last())
        .legend(cb.VizLegendOptions().show_legend(False))  # the bars are named already
    )


def _legend() -> cb.VizLegendOptions:
    return cb.VizLegendOptions().show_legend(True)


def _tooltip() -> cb.VizTooltipOptions:
    """Grafana's own default tooltip (the SDK's default sorts ascending)."""
    return cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE).sort(cm.SortOrder.NONE)


def state_timeline(
    title: str, description: str, targets: Sequence[Query], *, steps: Steps | None = None
) -> sdk_statetimeline.Panel:
    """A state timeline (one row per series, equal neighbouring values merged)."""
    return (
        _base(sdk_statetimeline.Panel(), title, description, targets, "none", steps)
        .show_value(cm.VisibilityMode.NEVER)
        .row_height(0.9)
        .merge_values(True)
        .legend(_legend())
        .tooltip(_tooltip())
    )


def status_history(
    title: str, description: str, targets: Sequence[Query], *, steps: Steps | None = None
) -> sdk_statushistory.Panel:
    """A status history (one row per series, one cell per sample)."""
    return (
        _base(sdk_statushistory.Panel(), title, description, targets, "none", steps)
        .show_value(cm.VisibilityMode.NEVER)
        .row_height(0.9)
        .legend(_legend())
        .tooltip(_tooltip())
    )


def table(title: str, description: str, targets: Sequence[Query]) -> sdk_table.Panel:
    """A table with its header shown."""
    return _base(sdk_table.Panel(), title, description, targets, "none", None).show_header(True)


def variable(name: str, query: str, *, label: str, multi: bool = False) -> db.QueryVariable:
    """A template variable filled by a Grafana ``label_values(...)`` query.

    A ``multi`` variable also offers "All" (regex ``.+``), selected by default.
    """
    v = (
        db.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query({"query": query, "refId": f"{name}-variable"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
        .hide(dm.VariableHide.DONT_HIDE)
    )
    if multi:
        v = v.all_value(".+").current(
            dm.VariableOption(selected=True, text=["All"], value=["$__all"])
        )
    return v


GRAPH_VAR = variable("graph", "label_values(stream_rca_node_score, graph)", label="Graph")
TARGET_VAR = variable(
    "target", f"label_values(stream_rca_target_score{{{G}}}, target)", label="Target"
)
NODE_VAR = variable(
    "node", f"label_values(stream_rca_node_score{{{G}}}, node)", label="Node", multi=True
)


class _PrometheusAnnotationQuery(dm.AnnotationQuery):
    """The SDK's annotation model plus the Prometheus fields it lacks."""

    def __init__(self, step: str, title_format: str) -> None:
        super().__init__(datasource=DS, enable=True)
        self.step = step
        self.title_format = title_format

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload.update(step=self.step, titleFormat=self.title_format, useValueForTime=False)
        return payload


class PrometheusAnnotation(Builder[dm.AnnotationQuery]):
    """An annotation from a PromQL query: a marker where the query has a value.

    The escape hatch from the SDK, whose ``AnnotationQuery`` has ``expr`` but not the
    ``step``, ``titleFormat`` and ``useValueForTime`` of Grafana's Prometheus annotations.
    """

    def __init__(self, name: str, expr: str, *, title_format: str, step: str = "30s") -> None:
        self._internal = _PrometheusAnnotationQuery(step, title_format)
        self._internal.name = name
        self._internal.expr = expr
        self._internal.icon_color = "red"
        self._internal.hide = None

    def build(self) -> dm.AnnotationQuery:
        """The annotation model."""
        return self._internal


INCIDENT_ANNOTATION = PrometheusAnnotation(
    "Incidents",
    f"max by (target) (stream_rca_incident_open{{{G}}}) == 1",
    title_format="Incident open on {{target}}",
)

BUILT_IN_ANNOTATION = (
    db.AnnotationQuery()
    .name("Annotations & Alerts")
    .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
    .enable(True)
    .hide(True)
    .icon_color("rgba(0, 211, 255, 1)")
    .type("dashboard")
    .built_in(1)
)

OTHER_DASHBOARDS = (
    db.DashboardLink("stream-rca")
    .type(dm.DashboardLinkType.DASHBOARDS)
    .tags(["stream-rca"])
    .as_dropdown(False)
    .include_vars(True)
    .keep_time(True)
)


def dashboard(
    uid: str, title: str, description: str, board: Board, variables: list[Builder[dm.VariableModel]]
) -> Json:
    """A whole dashboard as JSON: the board's panels, the variables, links to the others."""
    d = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["stream-rca"])
        .timezone("browser")
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .refresh("10s")
        .time("now-1h", "now")
        .version(1)
        .link(OTHER_DASHBOARDS)
        .annotations([BUILT_IN_ANNOTATION, INCIDENT_ANNOTATION])
        .variables(variables)
    )
    for p in board.panels:
        d = d.with_panel(p)
    model = d.build()
    model.schema_version = SCHEMA_VERSION
    doc: Json = json.loads(json.dumps(model, cls=JSONEncoder))
    return doc

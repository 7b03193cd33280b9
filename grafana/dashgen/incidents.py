"""The incidents dashboard: is a watched target anomalous, and what caused it."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import bargauge as sdk_bargauge
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders.dashboard import TextBoxVariable
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from grafana.dashgen.panels import (
    GRAPH_VAR,
    GT,
    SCORE_STEPS,
    TARGET_VAR,
    Board,
    G,
    Json,
    bargauge,
    dashboard,
    levels,
    queries,
    solid,
    stat,
    state_timeline,
    table,
    timeseries,
)

__all__ = ["incidents"]

OPEN_MAPPING: list[dm.ValueMapping] = [
    dm.ValueMap(
        options={
            "0": dm.ValueMappingResult(text="OK", color="green", index=0),
            "1": dm.ValueMappingResult(text="INCIDENT", color="red", index=1),
        }
    )
]
"""``stream_rca_incident_open`` shown as OK (green) or INCIDENT (red)."""


def _root_causes(what: str, description: str, metric: str, **kw: Any) -> sdk_bargauge.Panel:
    """A bar gauge ranking the nodes of the latest attribution of the target by ``metric``."""
    return bargauge(
        f"Root causes: {what}",
        f"Latest attribution of the target: {description}",
        queries((f"sort_desc(max by (node) ({metric}{{{GT}}}))", "{{node}}"), instant=True),
        **kw,
    )


def incidents() -> Json:
    """Incidents: is the target anomalous, what caused it, ranked."""
    b = Board()
    b.row(
        4,
        stat(
            "Incident open",
            "Whether an incident is open on the selected target now.",
            queries((f"max(stream_rca_incident_open{{{GT}}})", "open")),
            steps=solid("green"),
        ).mappings(OPEN_MAPPING),
        stat(
            "Target score now",
            "Marginal IT outlier score of the target in the latest snapshot, in nats "
            "(5: a one-in-150 value, 10: one in 22,000).",
            queries((f"max(stream_rca_target_score{{{GT}}})", "score")),
            steps=SCORE_STEPS,
        ).decimals(1),
        stat(
            "Top root cause",
            "The node that explains most of the latest attributed anomaly of the target.",
            queries(
                (
                    f"max by (node) (graph_target:stream_rca_root_cause_share:top1{{{GT}}})",
                    "{{node}}",
                )
            ),
            show_name=True,
            steps=solid("purple"),
        ),
        stat(
            "Incidents in range",
            "Incidents opened on the target in the dashboard's time range.",
            queries((f"sum(increase(stream_rca_incidents_total{{{GT}}}[$__range]))", "incidents")),
            steps=solid("blue"),
        ).decimals(0),
    )
    b.row(
        10,
        _root_causes(
            "share of the anomaly",
            "the share of its anomaly each node explains "
            "(Shapley values over the target and its ancestors), largest first.",
            "stream_rca_root_cause_share",
            unit="percentunit",
            steps=solid("red"),
        )
        .min(0)
        .max(1),
        _root_causes(
            "contribution (nats)",
            "each node's Shapley contribution, in nats; "
            "they add up to the target's score. Negative: the node made the value less unusual.",
            "stream_rca_root_cause_contribution",
            steps=solid("orange"),
        ).decimals(2),
    )
    b.add(
        timeseries(
            "Target score",
            "Marginal IT outlier score of the target over time (nats).",
            queries((f"max by (target) (stream_rca_target_score{{{GT}}})", "{{target}}")),
            steps=SCORE_STEPS,
        ),
        16,
        8,
    )
    b.add(
        state_timeline(
            "Incident open, per target",
            "When incidents were open on each watched target of the graph.",
            queries((f"max by (target) (stream_rca_incident_open{{{G}}})", "{{target}}")),
            steps=levels("green", (1, "red")),
        ).mappings(OPEN_MAPPING),
        8,
        8,
    )
    b.row(8, _latest())
    b.add(_pages(), 24, 6)
    return dashboard(
        "stream-rca-incidents",
        "stream-rca incidents",
        "Incidents on watched targets and their ranked root causes.",
        b,
        [GRAPH_VAR, TARGET_VAR, REPORT_URL_VAR],
    )


def _latest() -> sdk_table.Panel:
    """A table of the latest incident of each target: id, open, start, top cause, share."""
    latest = queries(
        (f"max by (target, incident_id) (stream_rca_latest_incident_info{{{G}}})", ""),
        (f"max by (target) (stream_rca_incident_open{{{G}}})", ""),
        (f"max by (target) (stream_rca_incident_start_timestamp_seconds{{{G}}}) * 1000", ""),
        (f"max by (target, node) (graph_target:stream_rca_root_cause_share:top1{{{G}}})", ""),
        (f"max by (target) (stream_rca_target_score{{{G}}})", ""),
        table=True,
    )
    columns = {  # query column: header, in the order shown
        "target": "Target",
        "incident_id": "Incident",
        "Value #B": "Open",
        "Value #C": "Opened at",
        "node": "Top root cause",
        "Value #D": "Share",
        "Value #E": "Target score now",
    }
    return (
        table(
            "Latest incidents",
            "The latest incident of every watched target of the graph: id, whether it is still "
            "open, when it opened, its top root cause and that cause's share.",
            latest,
        )
        .transformations(
            [
                dm.DataTransformerConfig(id_val="merge", options={}),
                _organize(["Time", "Value #A"], columns),
            ]
        )
        .override_by_name("Opened at", [_prop("unit", "dateTimeAsIso")])
        .override_by_name("Share", [_prop("unit", "percentunit")])
        .override_by_name(
            "Open",
            [
                _prop("mappings", OPEN_MAPPING),
                _prop("custom.cellOptions", cm.TableColoredBackgroundCellOptions()),
                _prop("color", dm.FieldColor(mode=dm.FieldColorModeId.THRESHOLDS)),
            ],
        )
        .sort_by([cb.TableSortByFieldState().display_name("Opened at").desc(True)])
    )


REPORT_URL = "http://localhost:8088"
REPORT_URL_VAR = (
    TextBoxVariable("report_url")
    .label("Incident pages at")
    .description("URL where the worker's report_dir (STREAM_RCA_REPORT_DIR) is served")
    .default_value(REPORT_URL)
    .current(dm.VariableOption(text=REPORT_URL, value=REPORT_URL))
    .hide(dm.VariableHide.DONT_HIDE)
)
"""Where the incident pages are served (the worker writes them to ``report_dir``)."""

PAGE_LINK = "${report_url}/${__value.raw:percentencode}.html"
"""An incident's page: the id percent-encoded, as ``stream_rca.report.page_url`` builds it."""


def _pages() -> sdk_table.Panel:
    """A table of the latest incident of each target, each linking to its page."""
    link = {"title": "Open the incident page", "url": PAGE_LINK, "targetBlank": True}
    return (
        table(
            "Incident pages",
            "The latest incident of every watched target; click an id to open its page (causal "
            "graph, waterfall of contributions, scores around it), written by the worker to "
            "report_dir and served at the report_url variable.",
            queries(
                (f"max by (target, incident_id) (stream_rca_latest_incident_info{{{G}}})", ""),
                table=True,
            ),
        )
        .transformations(
            [_organize(["Time", "Value"], {"target": "Target", "incident_id": "Incident page"})]
        )
        .override_by_name("Incident page", [_prop("links", [link])])
    )


def _organize(exclude: list[str], columns: dict[str, str]) -> dm.DataTransformerConfig:
    """Grafana's organize transformation: drop ``exclude``, keep ``columns`` in order, renamed."""
    return dm.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": dict.fromkeys(exclude, True),
            "indexByName": {name: i for i, name in enumerate(columns)},
            "renameByName": columns,
        },
    )


def _prop(key: str, value: object) -> dm.DynamicConfigValue:
    """One field property of an override."""
    return dm.DynamicConfigValue(id_val=key, value=value)

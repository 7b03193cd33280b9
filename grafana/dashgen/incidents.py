"""The incidents dashboard: is a watched target anomalous, and what caused it."""

from __future__ import annotations

from grafana.dashgen.panels import (
    DS,
    GRAPH_VAR,
    GT,
    SCORE_THRESHOLDS,
    TARGET_VAR,
    Board,
    G,
    Json,
    bargauge,
    dashboard,
    levels,
    panel,
    queries,
    solid,
    stat,
    timeline,
    timeseries,
)

__all__ = ["incidents"]

OPEN_MAPPING = [
    {
        "type": "value",
        "options": {
            "0": {"text": "OK", "color": "green", "index": 0},
            "1": {"text": "INCIDENT", "color": "red", "index": 1},
        },
    }
]
"""``stream_rca_incident_open`` shown as OK (green) or INCIDENT (red)."""


def _root_causes(what: str, description: str, metric: str, **kw: object) -> Json:
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
            defaults={"mappings": OPEN_MAPPING, **solid("green")},
        ),
        stat(
            "Target score now",
            "Marginal IT outlier score of the target in the latest snapshot, in nats "
            "(5: a one-in-150 value, 10: one in 22,000).",
            queries((f"max(stream_rca_target_score{{{GT}}})", "score")),
            defaults={"decimals": 1, **SCORE_THRESHOLDS},
        ),
        stat(
            "Top root cause",
            "The node that explains most of the latest attributed anomaly of the target.",
            queries(
                (
                    f"max by (node) (graph_target:stream_rca_root_cause_share:top1{{{GT}}})",
                    "{{node}}",
                )
            ),
            text_mode="name",
            defaults=solid("purple"),
        ),
        stat(
            "Incidents in range",
            "Incidents opened on the target in the dashboard's time range.",
            queries((f"sum(increase(stream_rca_incidents_total{{{GT}}}[$__range]))", "incidents")),
            defaults={"decimals": 0, **solid("blue")},
        ),
    )
    b.row(
        10,
        _root_causes(
            "share of the anomaly",
            "the share of its anomaly each node explains "
            "(Shapley values over the target and its ancestors), largest first.",
            "stream_rca_root_cause_share",
            unit="percentunit",
            defaults={"min": 0, "max": 1, **solid("red")},
        ),
        _root_causes(
            "contribution (nats)",
            "each node's Shapley contribution, in nats; "
            "they add up to the target's score. Negative: the node made the value less unusual.",
            "stream_rca_root_cause_contribution",
            defaults={"decimals": 2, **solid("orange")},
        ),
    )
    b.add(
        timeseries(
            "Target score",
            "Marginal IT outlier score of the target over time (nats).",
            queries((f"max by (target) (stream_rca_target_score{{{GT}}})", "{{target}}")),
            defaults=SCORE_THRESHOLDS,
        ),
        16,
        8,
    )
    b.add(
        timeline(
            "state-timeline",
            "Incident open, per target",
            "When incidents were open on each watched target of the graph.",
            queries((f"max by (target) (stream_rca_incident_open{{{G}}})", "{{target}}")),
            defaults={"mappings": OPEN_MAPPING, **levels("green", (1, "red"))},
        ),
        8,
        8,
    )
    latest = queries(
        (f"max by (target, incident_id) (stream_rca_latest_incident_info{{{G}}})", ""),
        (f"max by (target) (stream_rca_incident_open{{{G}}})", ""),
        (f"max by (target) (stream_rca_incident_start_timestamp_seconds{{{G}}}) * 1000", ""),
        (f"max by (target, node) (graph_target:stream_rca_root_cause_share:top1{{{G}}})", ""),
        (f"max by (target) (stream_rca_target_score{{{G}}})", ""),
        table=True,
    )
    b.row(
        8,
        panel(
            "table",
            "Latest incidents",
            "The latest incident of every watched target of the graph: id, whether it is still "
            "open, when it opened, its top root cause and that cause's share.",
            latest,
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value #A": True},
                        "indexByName": {
                            "target": 0,
                            "incident_id": 1,
                            "Value #B": 2,
                            "Value #C": 3,
                            "node": 4,
                            "Value #D": 5,
                            "Value #E": 6,
                        },
                        "renameByName": {
                            "target": "Target",
                            "incident_id": "Incident",
                            "Value #B": "Open",
                            "Value #C": "Opened at",
                            "node": "Top root cause",
                            "Value #D": "Share",
                            "Value #E": "Target score now",
                        },
                    },
                },
            ],
            overrides=[
                _override("Opened at", ("unit", "dateTimeAsIso")),
                _override("Share", ("unit", "percentunit")),
                _override(
                    "Open",
                    ("mappings", OPEN_MAPPING),
                    ("custom.cellOptions", {"type": "color-background"}),
                    ("color", {"mode": "thresholds"}),
                ),
            ],
            options={"showHeader": True, "sortBy": [{"displayName": "Opened at", "desc": True}]},
        ),
    )
    b.add(_pages(), 24, 6)
    return dashboard(
        "stream-rca-incidents",
        "stream-rca incidents",
        "Incidents on watched targets and their ranked root causes.",
        b,
        [GRAPH_VAR, TARGET_VAR, REPORT_URL_VAR],
    )


REPORT_URL_VAR: Json = {
    "name": "report_url",
    "label": "Incident pages at",
    "type": "textbox",
    "datasource": DS,
    "query": "http://localhost:8088",
    "current": {"text": "http://localhost:8088", "value": "http://localhost:8088"},
    "options": [],
    "hide": 0,
    "description": "URL where the worker's report_dir (STREAM_RCA_REPORT_DIR) is served",
}
"""Where the incident pages are served (the worker writes them to ``report_dir``)."""

PAGE_LINK = "${report_url}/${__value.raw:percentencode}.html"
"""An incident's page: the id percent-encoded, as ``stream_rca.report.page_url`` builds it."""


def _pages() -> Json:
    """A table of the latest incident of each target, each linking to its page."""
    return panel(
        "table",
        "Incident pages",
        "The latest incident of every watched target; click an id to open its page (causal "
        "graph, waterfall of contributions, scores around it), written by the worker to "
        "report_dir and served at the report_url variable.",
        queries(
            (f"max by (target, incident_id) (stream_rca_latest_incident_info{{{G}}})", ""),
            table=True,
        ),
        transformations=[
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value": True},
                    "indexByName": {"target": 0, "incident_id": 1},
                    "renameByName": {"target": "Target", "incident_id": "Incident page"},
                },
            }
        ],
        overrides=[
            _override(
                "Incident page",
                (
                    "links",
                    [{"title": "Open the incident page", "url": PAGE_LINK, "targetBlank": True}],
                ),
            )
        ],
        options={"showHeader": True},
    )


def _override(name: str, *properties: tuple[str, object]) -> Json:
    """Field properties ``(id, value)`` of the table column called ``name``."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties],
    }

"""The incidents dashboard: is a watched target anomalous, and what caused it."""

from __future__ import annotations

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
    panel,
    stat,
    target,
    thresholds,
    timeline,
    timeseries,
)

__all__ = ["incidents"]


def incidents() -> Json:
    """Incidents: is the target anomalous, what caused it, ranked."""
    b = Board()
    open_mapping = [
        {
            "type": "value",
            "options": {
                "0": {"text": "OK", "color": "green", "index": 0},
                "1": {"text": "INCIDENT", "color": "red", "index": 1},
            },
        }
    ]
    b.add(
        stat(
            "Incident open",
            "Whether an incident is open on the selected target now.",
            [target(f"max(stream_rca_incident_open{{{GT}}})", "open")],
            defaults={"mappings": open_mapping, **thresholds([{"color": "green", "value": None}])},
        ),
        6,
        4,
    )
    b.add(
        stat(
            "Target score now",
            "Marginal IT outlier score of the target in the latest snapshot, in nats "
            "(5: a one-in-150 value, 10: one in 22,000).",
            [target(f"max(stream_rca_target_score{{{GT}}})", "score")],
            defaults={"decimals": 1, **thresholds(SCORE_STEPS)},
        ),
        6,
        4,
    )
    b.add(
        stat(
            "Top root cause",
            "The node that explains most of the latest attributed anomaly of the target.",
            [
                target(
                    f"max by (node) (graph_target:stream_rca_root_cause_share:top1{{{GT}}})",
                    "{{node}}",
                )
            ],
            text_mode="name",
            defaults=thresholds([{"color": "purple", "value": None}]),
        ),
        6,
        4,
    )
    b.add(
        stat(
            "Incidents in range",
            "Incidents opened on the target in the dashboard's time range.",
            [target(f"sum(increase(stream_rca_incidents_total{{{GT}}}[$__range]))", "incidents")],
            defaults={"decimals": 0, **thresholds([{"color": "blue", "value": None}])},
        ),
        6,
        4,
    )
    b.add(
        bargauge(
            "Root causes: share of the anomaly",
            "Latest attribution of the target: the share of its anomaly each node explains "
            "(Shapley values over the target and its ancestors), largest first.",
            [
                target(
                    f"sort_desc(max by (node) (stream_rca_root_cause_share{{{GT}}}))",
                    "{{node}}",
                    instant=True,
                )
            ],
            unit="percentunit",
            defaults={"min": 0, "max": 1, **thresholds([{"color": "red", "value": None}])},
        ),
        12,
        10,
    )
    b.add(
        bargauge(
            "Root causes: contribution (nats)",
            "Latest attribution of the target: each node's Shapley contribution, in nats; "
            "they add up to the target's score. Negative: the node made the value less unusual.",
            [
                target(
                    f"sort_desc(max by (node) (stream_rca_root_cause_contribution{{{GT}}}))",
                    "{{node}}",
                    instant=True,
                )
            ],
            defaults={"decimals": 2, **thresholds([{"color": "orange", "value": None}])},
        ),
        12,
        10,
    )
    b.add(
        timeseries(
            "Target score",
            "Marginal IT outlier score of the target over time (nats).",
            [target(f"max by (target) (stream_rca_target_score{{{GT}}})", "{{target}}")],
            defaults=thresholds(SCORE_STEPS),
        ),
        16,
        8,
    )
    b.add(
        timeline(
            "state-timeline",
            "Incident open, per target",
            "When incidents were open on each watched target of the graph.",
            [target(f"max by (target) (stream_rca_incident_open{{{G}}})", "{{target}}")],
            defaults={
                "mappings": open_mapping,
                **thresholds([{"color": "green", "value": None}, {"color": "red", "value": 1}]),
            },
        ),
        8,
        8,
    )
    latest = [
        target(
            f"max by (target, incident_id) (stream_rca_latest_incident_info{{{G}}})",
            ref="A",
            table=True,
        ),
        target(f"max by (target) (stream_rca_incident_open{{{G}}})", ref="B", table=True),
        target(
            f"max by (target) (stream_rca_incident_start_timestamp_seconds{{{G}}}) * 1000",
            ref="C",
            table=True,
        ),
        target(
            f"max by (target, node) (graph_target:stream_rca_root_cause_share:top1{{{G}}})",
            ref="D",
            table=True,
        ),
        target(f"max by (target) (stream_rca_target_score{{{G}}})", ref="E", table=True),
    ]
    b.add(
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
                _override("Opened at", "dateTimeAsIso"),
                _override("Share", "percentunit"),
                {
                    "matcher": {"id": "byName", "options": "Open"},
                    "properties": [
                        {"id": "mappings", "value": open_mapping},
                        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                        {"id": "color", "value": {"mode": "thresholds"}},
                    ],
                },
            ],
            options={"showHeader": True, "sortBy": [{"displayName": "Opened at", "desc": True}]},
        ),
        24,
        8,
    )
    return dashboard(
        "stream-rca-incidents",
        "stream-rca incidents",
        "Incidents on watched targets and their ranked root causes.",
        b,
        [GRAPH_VAR, TARGET_VAR],
    )


def _override(name: str, unit: str) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": "unit", "value": unit}],
    }

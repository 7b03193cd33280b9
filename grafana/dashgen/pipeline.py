"""The pipeline health dashboard: throughput, lag, latency, dead letters, warm-up."""

from __future__ import annotations

from grafana.dashgen.panels import (
    GRAPH_VAR,
    RATE,
    Board,
    G,
    Json,
    dashboard,
    stat,
    target,
    thresholds,
    timeseries,
)

__all__ = ["pipeline"]


def _quantiles(metric: str) -> list[Json]:
    buckets = f"sum by (le) (rate({metric}_bucket{{{G}}}{RATE}))"
    return [
        target(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}", ref=ref)
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


def pipeline() -> Json:
    """Pipeline health: throughput, lag, latency, dead letters, warm-up, workers."""
    b = Board()
    green = thresholds([{"color": "green", "value": None}])
    b.add(
        stat(
            "Workers up",
            "stream-rca workers Prometheus scrapes successfully.",
            [target('sum(up{job="stream-rca"})', "up")],
            defaults=thresholds([{"color": "red", "value": None}, {"color": "green", "value": 1}]),
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Events/s",
            "Metric events accepted per second (1-minute rate).",
            [target(f"sum(graph:stream_rca_events:rate1m{{{G}}})", "events/s")],
            unit="ops",
            defaults=green,
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Snapshots/s",
            "Snapshots processed per second (1-minute rate).",
            [target(f"sum(graph:stream_rca_snapshots:rate1m{{{G}}})", "snapshots/s")],
            unit="ops",
            defaults=green,
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Nodes warming up",
            "Nodes whose models have not yet seen enough snapshots to score.",
            [target(f"max(stream_rca_warmup_nodes{{{G}}})", "warming")],
            defaults=thresholds(
                [{"color": "green", "value": None}, {"color": "yellow", "value": 1}]
            ),
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Latest snapshot age",
            "Wall-clock time minus the event time of the latest processed snapshot (large in "
            "a replay of old data).",
            [target(f"time() - max(stream_rca_last_snapshot_timestamp_seconds{{{G}}})", "age")],
            unit="s",
            defaults=thresholds(
                [
                    {"color": "green", "value": None},
                    {"color": "yellow", "value": 30},
                    {"color": "red", "value": 300},
                ]
            ),
        ),
        4,
        4,
    )
    b.add(
        stat(
            "Version",
            "stream-rca versions running.",
            [target("count by (version) (stream_rca_build_info)", "{{version}}")],
            text_mode="name",
            defaults=thresholds([{"color": "blue", "value": None}]),
        ),
        4,
        4,
    )
    b.add(
        timeseries(
            "Throughput",
            "Events accepted and snapshots processed per second.",
            [
                target(f"sum(rate(stream_rca_events_total{{{G}}}{RATE}))", "events"),
                target(f"sum(rate(stream_rca_snapshots_total{{{G}}}{RATE}))", "snapshots", ref="B"),
                target(
                    f"sum(rate(stream_rca_attributions_total{{{G}}}{RATE}))",
                    "attributions",
                    ref="C",
                ),
            ],
            unit="ops",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Consumer lag",
            "Messages between each partition's committed offset and its end.",
            [
                target(
                    "max by (topic, partition) (stream_rca_consumer_lag)", "{{topic}}/{{partition}}"
                )
            ],
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Snapshot processing latency",
            "Quantiles of the wall time to process one snapshot (scores, learning, attributions).",
            _quantiles("stream_rca_snapshot_processing_seconds"),
            unit="s",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Attribution latency",
            "Quantiles of the wall time of one Shapley attribution.",
            _quantiles("stream_rca_attribution_seconds"),
            unit="s",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Dead letters by reason",
            "Input events rejected per second, by reason code (every graph).",
            [target(f"sum by (reason) (rate(stream_rca_dead_letters_total{RATE}))", "{{reason}}")],
            unit="ops",
        ),
        8,
        8,
    )
    b.add(
        timeseries(
            "Late and duplicate events",
            "Events that arrived after their window was emitted, and redelivered duplicates.",
            [
                target(f"sum(rate(stream_rca_late_events_total{{{G}}}{RATE}))", "late"),
                target(
                    f"sum(rate(stream_rca_duplicate_events_total{{{G}}}{RATE}))",
                    "duplicate",
                    ref="B",
                ),
            ],
            unit="ops",
        ),
        8,
        8,
    )
    b.add(
        timeseries(
            "Warm-up",
            "Nodes still in warm-up, per graph.",
            [target(f"max by (graph) (stream_rca_warmup_nodes{{{G}}})", "{{graph}}")],
        ),
        8,
        8,
    )
    b.add(
        timeseries(
            "Snapshots per worker",
            "Snapshots processed per second by each worker (how the graphs are spread).",
            [target(f"sum by (instance) (rate(stream_rca_snapshots_total{RATE}))", "{{instance}}")],
            unit="ops",
        ),
        24,
        8,
    )
    return dashboard(
        "stream-rca-pipeline",
        "stream-rca pipeline health",
        "Throughput, lag, latency, dead letters and warm-up of the stream-rca workers.",
        b,
        [GRAPH_VAR],
    )

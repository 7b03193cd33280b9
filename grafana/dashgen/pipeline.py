"""The pipeline health dashboard: throughput, lag, latency, dead letters, warm-up."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries

from grafana.dashgen.panels import (
    GRAPH_VAR,
    Board,
    G,
    Json,
    dashboard,
    levels,
    quantiles,
    queries,
    rate,
    solid,
    stat,
    timeseries,
)

__all__ = ["pipeline"]


def _per_second(name: str, what: str) -> sdk_stat.Panel:
    """A stat of the recorded 1-minute rate of ``stream_rca_<name>_total``."""
    return stat(
        f"{name.capitalize()}/s",
        f"{what} per second (1-minute rate).",
        queries((f"sum(graph:stream_rca_{name}:rate1m{{{G}}})", f"{name}/s")),
        unit="ops",
        steps=solid("green"),
    )


def _latency(title: str, description: str, metric: str) -> sdk_timeseries.Panel:
    return timeseries(title, description, quantiles(metric), unit="s")


def pipeline() -> Json:
    """Pipeline health: throughput, lag, latency, dead letters, warm-up, workers."""
    b = Board()
    b.row(
        4,
        stat(
            "Workers up",
            "stream-rca workers Prometheus scrapes successfully.",
            queries(('sum(up{job="stream-rca"})', "up")),
            steps=levels("red", (1, "green")),
        ),
        _per_second("events", "Metric events accepted"),
        _per_second("snapshots", "Snapshots processed"),
        stat(
            "Nodes warming up",
            "Nodes whose models have not yet seen enough snapshots to score.",
            queries((f"max(stream_rca_warmup_nodes{{{G}}})", "warming")),
            steps=levels("green", (1, "yellow")),
        ),
        stat(
            "Latest snapshot age",
            "Wall-clock time minus the event time of the latest processed snapshot (large in "
            "a replay of old data).",
            queries((f"time() - max(stream_rca_last_snapshot_timestamp_seconds{{{G}}})", "age")),
            unit="s",
            steps=levels("green", (30, "yellow"), (300, "red")),
        ),
        stat(
            "Version",
            "stream-rca versions running.",
            queries(("count by (version) (stream_rca_build_info)", "{{version}}")),
            show_name=True,
            steps=solid("blue"),
        ),
    )
    b.row(
        8,
        timeseries(
            "Throughput",
            "Events accepted and snapshots processed per second.",
            queries(
                (rate("stream_rca_events_total"), "events"),
                (rate("stream_rca_snapshots_total"), "snapshots"),
                (rate("stream_rca_attributions_total"), "attributions"),
            ),
            unit="ops",
        ),
        timeseries(
            "Consumer lag",
            "Messages between each partition's committed offset and its end.",
            queries(
                ("max by (topic, partition) (stream_rca_consumer_lag)", "{{topic}}/{{partition}}")
            ),
        ),
    )
    b.row(
        8,
        _latency(
            "Snapshot processing latency",
            "Quantiles of the wall time to process one snapshot (scores, learning, attributions).",
            "stream_rca_snapshot_processing_seconds",
        ),
        _latency(
            "Attribution latency",
            "Quantiles of the wall time of one Shapley attribution.",
            "stream_rca_attribution_seconds",
        ),
    )
    b.row(
        8,
        timeseries(
            "Dead letters by reason",
            "Input events rejected per second, by reason code (every graph).",
            queries(
                (rate("stream_rca_dead_letters_total", by="reason", selector=""), "{{reason}}")
            ),
            unit="ops",
        ),
        timeseries(
            "Late and duplicate events",
            "Events that arrived after their window was emitted, and redelivered duplicates.",
            queries(
                (rate("stream_rca_late_events_total"), "late"),
                (rate("stream_rca_duplicate_events_total"), "duplicate"),
            ),
            unit="ops",
        ),
        timeseries(
            "Warm-up",
            "Nodes still in warm-up, per graph.",
            queries((f"max by (graph) (stream_rca_warmup_nodes{{{G}}})", "{{graph}}")),
        ),
    )
    b.row(
        8,
        timeseries(
            "Snapshots per worker",
            "Snapshots processed per second by each worker (how the graphs are spread).",
            queries(
                (rate("stream_rca_snapshots_total", by="instance", selector=""), "{{instance}}")
            ),
            unit="ops",
        ),
    )
    return dashboard(
        "stream-rca-pipeline",
        "stream-rca pipeline health",
        "Throughput, lag, latency, dead letters and warm-up of the stream-rca workers.",
        b,
        [GRAPH_VAR],
    )

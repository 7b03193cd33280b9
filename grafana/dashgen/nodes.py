"""The node anomalies dashboard: every node's conditional outlier score."""

from __future__ import annotations

from grafana.dashgen.panels import (
    GRAPH_VAR,
    NODE_VAR,
    RATE,
    SCORE_STEPS,
    Board,
    G,
    Json,
    bargauge,
    dashboard,
    target,
    thresholds,
    timeline,
    timeseries,
)

__all__ = ["nodes"]


def nodes() -> Json:
    """Per-node anomaly view: every node's conditional score."""
    b = Board()
    GN = f'{G}, node=~"$node"'
    scores = f"max by (node) (stream_rca_node_score{{{GN}}})"
    b.add(
        timeseries(
            "Node scores",
            "Conditional IT outlier score of each node (nats): how unusual its value is given "
            "its parents' values. High on a node and low on its parents points at the node.",
            [target(scores, "{{node}}")],
            defaults=thresholds(SCORE_STEPS),
        ),
        24,
        9,
    )
    b.add(
        timeline(
            "status-history",
            "Node scores heatmap",
            "One row per node, coloured by its conditional score: green < 3, yellow < 5, "
            "orange < 10, red >= 10 nats.",
            [target(scores, "{{node}}")],
            defaults={"decimals": 1, **thresholds(SCORE_STEPS)},
        ),
        24,
        10,
    )
    b.add(
        bargauge(
            "Worst nodes now",
            "The ten nodes of the graph with the highest conditional score in the latest snapshot.",
            [
                target(
                    f"sort_desc(topk(10, max by (node) (stream_rca_node_score{{{G}}})))",
                    "{{node}}",
                    instant=True,
                )
            ],
            defaults={"decimals": 1, "min": 0, **thresholds(SCORE_STEPS)},
        ),
        8,
        9,
    )
    b.add(
        timeseries(
            "Worst node score, every graph",
            "The highest conditional score of any node, per graph (a fleet overview).",
            [target("graph:stream_rca_node_score:max", "{{graph}}")],
            defaults=thresholds(SCORE_STEPS),
        ),
        8,
        9,
    )
    b.add(
        timeseries(
            "Missing and invalid values",
            "Snapshots per second in which a node had no value, or a non-finite one.",
            [
                target(
                    f"sum by (node) (rate(stream_rca_missing_values_total{{{GN}}}{RATE}))",
                    "missing {{node}}",
                ),
                target(
                    f"sum by (node) (rate(stream_rca_invalid_values_total{{{GN}}}{RATE}))",
                    "invalid {{node}}",
                    ref="B",
                ),
            ],
            unit="ops",
        ),
        8,
        9,
    )
    return dashboard(
        "stream-rca-nodes",
        "stream-rca node anomalies",
        "Conditional outlier scores of every node of a causal graph.",
        b,
        [GRAPH_VAR, NODE_VAR],
    )

"""The node anomalies dashboard: every node's conditional outlier score."""

from __future__ import annotations

from grafana.dashgen.panels import (
    GRAPH_VAR,
    NODE_VAR,
    SCORE_STEPS,
    Board,
    G,
    Json,
    Query,
    bargauge,
    dashboard,
    queries,
    rate,
    status_history,
    timeseries,
)

__all__ = ["nodes"]

GN = f'{G}, node=~"$node"'


def _node_scores() -> list[Query]:
    return queries((f"max by (node) (stream_rca_node_score{{{GN}}})", "{{node}}"))


def nodes() -> Json:
    """Per-node anomaly view: every node's conditional score."""
    b = Board()
    b.row(
        9,
        timeseries(
            "Node scores",
            "Conditional IT outlier score of each node (nats): how unusual its value is given "
            "its parents' values. High on a node and low on its parents points at the node.",
            _node_scores(),
            steps=SCORE_STEPS,
        ),
    )
    b.row(
        10,
        status_history(
            "Node scores heatmap",
            "One row per node, coloured by its conditional score: green < 3, yellow < 5, "
            "orange < 10, red >= 10 nats.",
            _node_scores(),
            steps=SCORE_STEPS,
        ).decimals(1),
    )
    b.row(
        9,
        bargauge(
            "Worst nodes now",
            "The ten nodes of the graph with the highest conditional score in the latest snapshot.",
            queries(
                (f"sort_desc(topk(10, max by (node) (stream_rca_node_score{{{G}}})))", "{{node}}"),
                instant=True,
            ),
            steps=SCORE_STEPS,
        )
        .decimals(1)
        .min(0),
        timeseries(
            "Worst node score, every graph",
            "The highest conditional score of any node, per graph (a fleet overview).",
            queries(("graph:stream_rca_node_score:max", "{{graph}}")),
            steps=SCORE_STEPS,
        ),
        timeseries(
            "Missing and invalid values",
            "Snapshots per second in which a node had no value, or a non-finite one.",
            queries(
                (
                    rate("stream_rca_missing_values_total", by="node", selector=GN),
                    "missing {{node}}",
                ),
                (
                    rate("stream_rca_invalid_values_total", by="node", selector=GN),
                    "invalid {{node}}",
                ),
            ),
            unit="ops",
        ),
    )
    return dashboard(
        "stream-rca-nodes",
        "stream-rca node anomalies",
        "Conditional outlier scores of every node of a causal graph.",
        b,
        [GRAPH_VAR, NODE_VAR],
    )

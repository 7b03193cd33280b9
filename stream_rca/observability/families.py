"""The Prometheus metric families stream-rca exports: names, help, labels and buckets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "CONSUMER_LAG",
    "INCIDENT_OPEN",
    "INCIDENT_START",
    "LAST_SNAPSHOT",
    "LATENCY_BUCKETS",
    "LATEST_INCIDENT",
    "NODE_SCORE",
    "ROOT_CAUSE_CONTRIBUTION",
    "ROOT_CAUSE_SHARE",
    "STATE_FAMILIES",
    "TARGET_SCORE",
    "WARMUP_NODES",
    "BlockHistogram",
    "MetricFamilies",
    "StateFamily",
]

LATENCY_BUCKETS: tuple[float, ...] = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05),
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
"""Histogram buckets in seconds, from 0.1 ms to 10 s (plus ``+Inf``)."""


class BlockHistogram(Histogram):
    """A histogram that also takes many equal observations at once (:meth:`observe_many`).

    A block of snapshots has one processing time, shared equally by its snapshots: one step
    for the block instead of one :meth:`observe` per snapshot (2-3 us each, a few per cent of
    the batch path). It reads the buckets and sum that :class:`prometheus_client.Histogram`
    keeps (``_upper_bounds``, ``_buckets``, ``_sum``); ``tests/unit/test_metrics.py`` holds
    it to ``observe`` called ``count`` times.
    """

    def observe_many(self, amount: float, count: int) -> None:
        """``observe(amount)`` ``count`` times: the bucket of ``amount`` grows by ``count``
        (and so does the count), the sum by ``amount * count``."""
        cast(Callable[[], None], self._raise_if_not_observable)()  # a parent with labels raises
        if count <= 0:
            return
        self._sum.inc(amount * count)
        for i, bound in enumerate(self._upper_bounds):
            if amount <= bound:
                self._buckets[i].inc(count)
                break


@dataclass(frozen=True, slots=True)
class StateFamily:
    """A family of latest-state series, built afresh at every scrape.

    :class:`~stream_rca.observability.latest.LatestState` builds these in its ``collect()``
    from what it holds now, so a series that no longer applies simply is not emitted.
    """

    name: str
    doc: str
    labels: tuple[str, ...]
    kind: Literal["gauge", "info"] = "gauge"
    """``"info"`` families expose one ``<name>_info`` series of value 1 with extra labels."""


_GT, _GTN = ("graph", "target"), ("graph", "target", "node")
NODE_SCORE = StateFamily(
    "stream_rca_node_score",
    "Conditional IT outlier score (nats) of a node in the latest snapshot.",
    ("graph", "node"),
)
TARGET_SCORE = StateFamily(
    "stream_rca_target_score",
    "Marginal IT outlier score (nats) of a watched target in the latest snapshot.",
    _GT,
)
ROOT_CAUSE_CONTRIBUTION = StateFamily(
    "stream_rca_root_cause_contribution",
    "Shapley contribution (nats) of a node to the latest attributed anomaly of a target.",
    _GTN,
)
ROOT_CAUSE_SHARE = StateFamily(
    "stream_rca_root_cause_share",
    "Share (0..1) of the latest attributed anomaly of a target explained by a node.",
    _GTN,
)
INCIDENT_OPEN = StateFamily(
    "stream_rca_incident_open", "1 while an incident is open on a target, else 0.", _GT
)
INCIDENT_START = StateFamily(
    "stream_rca_incident_start_timestamp_seconds",
    "Event time (unix seconds) at which the latest incident of a target opened.",
    _GT,
)
LATEST_INCIDENT = StateFamily(
    "stream_rca_latest_incident",
    "Id of the latest incident of a target (one series per target).",
    _GT,
    kind="info",
)
WARMUP_NODES = StateFamily(
    "stream_rca_warmup_nodes", "Nodes of a graph still in warm-up.", ("graph",)
)
LAST_SNAPSHOT = StateFamily(
    "stream_rca_last_snapshot_timestamp_seconds",
    "Event time (unix seconds, window start) of the latest processed snapshot.",
    ("graph",),
)
CONSUMER_LAG = StateFamily(
    "stream_rca_consumer_lag",
    "Messages between the committed offset and the end of a partition.",
    ("topic", "partition"),
)
STATE_FAMILIES: tuple[StateFamily, ...] = (
    NODE_SCORE,
    TARGET_SCORE,
    ROOT_CAUSE_CONTRIBUTION,
    ROOT_CAUSE_SHARE,
    INCIDENT_OPEN,
    INCIDENT_START,
    LATEST_INCIDENT,
    WARMUP_NODES,
    LAST_SNAPSHOT,
    CONSUMER_LAG,
)
"""The latest-state families, in the order a scrape lists them."""

_M = TypeVar("_M", bound=MetricWrapperBase)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
}


class MetricFamilies:
    """The cumulative metrics of a stream-rca process (counters, histograms, build info).

    Parameters
    ----------
    registry
        Registry to register the metrics on.
    version
        Value of the ``version`` label of ``stream_rca_build_info``.

    Notes
    -----
    Only declarations live here; :class:`~stream_rca.observability.PipelineMetrics` decides
    what to record. The latest-state gauges are not metric objects: they are the
    :data:`STATE_FAMILIES`, built at every scrape by a custom collector
    (:class:`~stream_rca.observability.latest.LatestState`). ``docs/observability.md``
    describes every metric.
    """

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self._collectors: list[MetricWrapperBase] = []

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return self._add(Counter(name, doc, labels, registry=registry))

        def histogram(name: str, doc: str) -> BlockHistogram:
            return self._add(
                BlockHistogram(name, doc, ["graph"], buckets=LATENCY_BUCKETS, registry=registry)
            )

        gt = ("graph", "target")
        self.events = counter("stream_rca_events", "Metric events accepted.", ("graph",))
        self.snapshots = counter("stream_rca_snapshots", "Snapshots processed.", ("graph",))
        self.incidents = counter("stream_rca_incidents", "Incidents opened.", gt)
        self.attributions = counter("stream_rca_attributions", "Attributions computed.", gt)
        self.dead_letters = counter(
            "stream_rca_dead_letters", "Input events sent to the dead-letter topic.", ("reason",)
        )
        self.records = counter(
            "stream_rca_records",
            "Input records by outcome: processed, dead_lettered or replayed (already in a "
            "checkpoint).",
            ("outcome",),
        )
        self.quarantines = counter(
            "stream_rca_graph_quarantines",
            "Graphs quarantined after repeated processing errors (their records dead-lettered).",
            ("graph",),
        )
        self.graph_changes = counter(
            "stream_rca_graph_changes",
            "Times a graph grew from new call edges on the spans topic (unchanged nodes keep "
            "their learned state).",
            ("graph",),
        )
        self.unacknowledged = counter(
            "stream_rca_unacknowledged_records",
            "Records the broker refused or did not acknowledge (retried; offsets held back).",
            ("kind",),
        )
        self.late_events = counter(
            "stream_rca_late_events", "Events that arrived after their window closed.", ("graph",)
        )
        self.duplicate_events = counter(
            "stream_rca_duplicate_events", "Events seen twice and ignored.", ("graph",)
        )
        self.checkpoints_refused = counter(
            "stream_rca_checkpoints_refused",
            "Stored checkpoints refused at load (bad signature, format or spec); the graph "
            "started afresh.",
            ("graph", "reason"),
        )
        self.checkpoint_failures = counter(
            "stream_rca_checkpoint_failures",
            "Checkpoints that could not be written (the graph's partition was not committed).",
            ("graph", "reason"),
        )
        self.missing_values = counter(
            "stream_rca_missing_values",
            "Snapshots in which a node had no value.",
            ("graph", "node"),
        )
        self.invalid_values = counter(
            "stream_rca_invalid_values",
            "Snapshots in which a node's value was not a finite number.",
            ("graph", "node"),
        )
        self.snapshot_seconds = histogram(
            "stream_rca_snapshot_processing_seconds", "Wall time to process one snapshot."
        )
        self.attribution_seconds = histogram(
            "stream_rca_attribution_seconds", "Wall time of one Shapley attribution."
        )
        self.build_info = self._add(
            Info("stream_rca_build", "Version of stream-rca.", registry=registry)
        )
        self.build_info.info({"version": version})

    def _add(self, metric: _M) -> _M:
        self._collectors.append(metric)
        return metric

    def series_names(self) -> frozenset[str]:
        """Names of every series these metrics can expose (``_total``, ``_bucket``... included).

        Returns
        -------
        frozenset of str
            For example ``stream_rca_events_total`` and
            ``stream_rca_snapshot_processing_seconds_bucket``; used to check that dashboards
            and alert rules query only metrics that exist.
        """
        names = {f.name + ("_info" if f.kind == "info" else "") for f in STATE_FAMILIES}
        for collector in self._collectors:
            for family in collector.describe():
                for suffix in _SUFFIXES.get(family.type, ("",)):
                    names.add(family.name + suffix)
        return frozenset(names)

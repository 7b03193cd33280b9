"""Prometheus metrics of the pipeline, registered on an injected registry.

:class:`PipelineMetrics` turns what the engine and the streaming layer report (step results,
attributions, dead letters, consumer lag) into Prometheus series. It never touches the global
registry: every instance registers its metrics on the :class:`~prometheus_client.CollectorRegistry`
it is given, so tests use a fresh registry each and two pipelines in one process do not collide.

Label values come only from graph and node names, dead-letter reason codes and Kafka topic names,
all bounded by configuration. The one exception, the id of an incident, is kept bounded by
exporting only the latest incident of each target.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

from stream_rca import __version__
from stream_rca.core.types import Attribution, IncidentEvent, StepResult
from stream_rca.io.deadletter import DEAD_LETTER_REASONS

__all__ = ["LATENCY_BUCKETS", "PipelineMetrics"]

LATENCY_BUCKETS: tuple[float, ...] = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05),
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
"""Histogram buckets in seconds, from 0.1 ms to 10 s (plus ``+Inf``)."""

_M = TypeVar("_M", bound=MetricWrapperBase)


class PipelineMetrics:
    """The Prometheus metrics of one stream-rca process.

    Parameters
    ----------
    registry
        Registry to register the metrics on (never the global one in tests).
    version
        Value of the ``version`` label of ``stream_rca_build_info``.
    dead_letter_reasons
        The reason codes :meth:`dead_letter` accepts (created at zero); any other counts as
        ``"other"``.

    Notes
    -----
    Gauges describe the latest state: the node scores of the latest snapshot of each graph and
    the root causes of the latest attribution of each target. Series of nodes that have no score
    in the latest snapshot are removed, and so are the root causes of a previous incident when a
    new one opens or is attributed, so that stale values never mix with current ones.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> metrics = PipelineMetrics(registry, version="0.1.0")
    >>> metrics.event("shop", 3)
    >>> registry.get_sample_value("stream_rca_events_total", {"graph": "shop"})
    3.0
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str = __version__,
        dead_letter_reasons: Iterable[str] = DEAD_LETTER_REASONS,
    ) -> None:
        self.registry = registry
        self._reasons = frozenset(dead_letter_reasons)
        self._lock = threading.Lock()
        self._graphs: set[str] = set()  # graphs whose counters exist
        self._nodes: dict[str, set[str]] = {}  # graph -> nodes with a score gauge
        self._targets: dict[str, set[str]] = {}  # graph -> targets seen
        self._scored: dict[str, set[str]] = {}  # graph -> targets with a score gauge
        self._causes: dict[tuple[str, str], set[str]] = {}  # (graph, target) -> nodes
        self._incident: dict[tuple[str, str], str] = {}  # (graph, target) -> latest id
        self._lags: set[tuple[str, str]] = set()
        self._collectors: list[MetricWrapperBase] = []

        def gauge(name: str, doc: str, labels: Sequence[str]) -> Gauge:
            return self._add(Gauge(name, doc, labels, registry=registry))

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return self._add(Counter(name, doc, labels, registry=registry))

        def histogram(name: str, doc: str) -> Histogram:
            return self._add(
                Histogram(name, doc, ["graph"], buckets=LATENCY_BUCKETS, registry=registry)
            )

        gt, gtn = ("graph", "target"), ("graph", "target", "node")
        self.node_score = gauge(
            "stream_rca_node_score",
            "Conditional IT outlier score (nats) of a node in the latest snapshot.",
            ("graph", "node"),
        )
        self.target_score = gauge(
            "stream_rca_target_score",
            "Marginal IT outlier score (nats) of a watched target in the latest snapshot.",
            gt,
        )
        self.root_cause_contribution = gauge(
            "stream_rca_root_cause_contribution",
            "Shapley contribution (nats) of a node to the latest attributed anomaly of a target.",
            gtn,
        )
        self.root_cause_share = gauge(
            "stream_rca_root_cause_share",
            "Share (0..1) of the latest attributed anomaly of a target explained by a node.",
            gtn,
        )
        self.incident_open = gauge(
            "stream_rca_incident_open", "1 while an incident is open on a target, else 0.", gt
        )
        self.incident_start = gauge(
            "stream_rca_incident_start_timestamp_seconds",
            "Event time (unix seconds) at which the latest incident of a target opened.",
            gt,
        )
        self.latest_incident = self._add(
            Info(
                "stream_rca_latest_incident",
                "Id of the latest incident of a target (one series per target).",
                gt,
                registry=registry,
            )
        )
        self.events = counter("stream_rca_events", "Metric events accepted.", ("graph",))
        self.snapshots = counter("stream_rca_snapshots", "Snapshots processed.", ("graph",))
        self.incidents = counter("stream_rca_incidents", "Incidents opened.", gt)
        self.attributions = counter("stream_rca_attributions", "Attributions computed.", gt)
        self.dead_letters = counter(
            "stream_rca_dead_letters", "Input events sent to the dead-letter topic.", ("reason",)
        )
        self.late_events = counter(
            "stream_rca_late_events", "Events that arrived after their window closed.", ("graph",)
        )
        self.duplicate_events = counter(
            "stream_rca_duplicate_events", "Events seen twice and ignored.", ("graph",)
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
        self.warmup_nodes = gauge(
            "stream_rca_warmup_nodes", "Nodes of a graph still in warm-up.", ("graph",)
        )
        self.last_snapshot = gauge(
            "stream_rca_last_snapshot_timestamp_seconds",
            "Event time (unix seconds, window start) of the latest processed snapshot.",
            ("graph",),
        )
        self.consumer_lag = gauge(
            "stream_rca_consumer_lag",
            "Messages between the committed offset and the end of a partition.",
            ("topic", "partition"),
        )
        self.build_info = self._add(
            Info("stream_rca_build", "Version of stream-rca.", registry=registry)
        )
        self.build_info.info({"version": version})
        for reason in sorted(self._reasons):
            self.dead_letters.labels(reason)

    def _add(self, metric: _M) -> _M:
        self._collectors.append(metric)
        return metric

    # -- names ---------------------------------------------------------------------------------

    def series_names(self) -> frozenset[str]:
        """Names of every series these metrics can expose (``_total``, ``_bucket``, ... included).

        Returns
        -------
        frozenset of str
            For example ``stream_rca_events_total`` and
            ``stream_rca_snapshot_processing_seconds_bucket``; used to check that dashboards
            and alert rules query only metrics that exist.
        """
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "info": ("_info",),
        }
        names: set[str] = set()
        for collector in self._collectors:
            for family in collector.describe():
                for suffix in suffixes.get(family.type, ("",)):
                    names.add(family.name + suffix)
        return frozenset(names)

    # -- registration --------------------------------------------------------------------------

    def register_graph(
        self, graph: str, nodes: Iterable[str] = (), targets: Iterable[str] = ()
    ) -> None:
        """Create the series of a graph at zero, so rates and panels work from the first scrape.

        Parameters
        ----------
        graph
            Graph name.
        nodes
            Its node names (for ``stream_rca_missing_values_total``).
        targets
            Its watched targets (incident counters and ``stream_rca_incident_open``).
        """
        with self._lock:
            self._touch_graph(graph)
            for node in nodes:
                self.missing_values.labels(graph, node)
                self.invalid_values.labels(graph, node)
            for target in targets:
                self._touch_target(graph, target)

    def _touch_graph(self, graph: str) -> None:
        if graph in self._graphs:
            return
        self._graphs.add(graph)
        for metric in (
            self.events,
            self.snapshots,
            self.late_events,
            self.duplicate_events,
            self.snapshot_seconds,
            self.attribution_seconds,
        ):
            metric.labels(graph)

    def _touch_target(self, graph: str, target: str) -> None:
        targets = self._targets.setdefault(graph, set())
        if target not in targets:
            targets.add(target)
            self.incidents.labels(graph, target)
            self.attributions.labels(graph, target)
            self.incident_open.labels(graph, target).set(0)

    # -- the engine ----------------------------------------------------------------------------

    def observe_step(
        self,
        result: StepResult,
        seconds: float,
        *,
        attribution_seconds: Sequence[float] | None = None,
    ) -> None:
        """Record what the engine made of one snapshot.

        Node and target scores replace those of the graph's previous snapshot; the open state
        of every target follows ``result.open_incidents``; an ``"opened"`` event counts an
        incident, sets its start time and latest id, and clears the previous incident's root
        causes; the attributions in ``result`` then set the new ones.

        Parameters
        ----------
        result
            The engine's result for the snapshot.
        seconds
            Wall time the engine took for it (attributions included).
        attribution_seconds
            Wall time of each of ``result.attributions``, in the same order; when ``None``, each
            attribution's own ``seconds`` (if the engine timed it). The attributions in
            ``result`` are recorded either way (do not pass them again to
            :meth:`observe_attribution`).
        """
        graph = result.graph
        if attribution_seconds is not None and len(attribution_seconds) != len(result.attributions):
            raise ValueError(
                f"attribution_seconds has {len(attribution_seconds)} values for "
                f"{len(result.attributions)} attributions; give one per attribution or None"
            )
        with self._lock:
            self._touch_graph(graph)
            self.snapshots.labels(graph).inc()
            self.snapshot_seconds.labels(graph).observe(seconds)
            self.warmup_nodes.labels(graph).set(len(result.warming))
            self.last_snapshot.labels(graph).set(result.ts)
            for node in result.missing:
                self.missing_values.labels(graph, node).inc()
            for node in result.invalid:
                self.invalid_values.labels(graph, node).inc()
            self._nodes[graph] = self._set_scores(
                self.node_score, graph, result.scores, self._nodes.get(graph, set())
            )
            self._scored[graph] = self._set_scores(
                self.target_score, graph, result.target_scores, self._scored.get(graph, set())
            )
            for target in (*result.target_scores, *result.open_incidents):
                self._touch_target(graph, target)
            for event in result.events:
                self._incident_event(event)
            for target, incident_id in result.open_incidents.items():
                if self._incident.get((graph, target)) != incident_id:
                    self._set_latest_incident(graph, target, incident_id)
            for target in self._targets.get(graph, set()):
                self.incident_open.labels(graph, target).set(
                    1 if target in result.open_incidents else 0
                )
            for i, att in enumerate(result.attributions):
                took = _seconds(att) if attribution_seconds is None else attribution_seconds[i]
                self._attribution(att, took)

    @staticmethod
    def _set_scores(
        gauge: Gauge, graph: str, scores: Mapping[str, float], old: set[str]
    ) -> set[str]:
        """Set one series per score (``inf`` included); remove the series of the rest."""
        now = {name for name, value in scores.items() if not math.isnan(value)}
        for name in old - now:
            gauge.remove(graph, name)
        for name in now:
            gauge.labels(graph, name).set(scores[name])
        return now

    def _incident_event(self, event: IncidentEvent) -> None:
        key = (event.graph, event.target)
        self._touch_target(*key)
        if event.kind == "opened":
            self.incidents.labels(*key).inc()
            self.incident_start.labels(*key).set(event.ts)
            self._clear_causes(key)
            self._set_latest_incident(event.graph, event.target, event.incident_id)

    def _set_latest_incident(self, graph: str, target: str, incident_id: str) -> None:
        self._incident[(graph, target)] = incident_id
        self.latest_incident.labels(graph, target).info({"incident_id": incident_id})

    def _clear_causes(self, key: tuple[str, str]) -> None:
        for node in self._causes.pop(key, set()):
            self.root_cause_contribution.remove(*key, node)
            self.root_cause_share.remove(*key, node)

    def observe_attribution(self, att: Attribution, seconds: float | None = None) -> None:
        """Record one attribution that did not come inside a :class:`StepResult`.

        Replaces the root-cause series of the target's previous attribution with this one's.

        Parameters
        ----------
        att
            The attribution.
        seconds
            Wall time it took; ``att.seconds`` when ``None``.
        """
        with self._lock:
            self._touch_graph(att.graph)
            self._attribution(att, _seconds(att) if seconds is None else seconds)

    def _attribution(self, att: Attribution, seconds: float | None) -> None:
        key = (att.graph, att.target)
        self._touch_target(*key)
        self.attributions.labels(*key).inc()
        if seconds is not None:
            self.attribution_seconds.labels(att.graph).observe(seconds)
        self._clear_causes(key)
        nodes: set[str] = set()
        for rc in att.root_causes:
            self.root_cause_contribution.labels(*key, rc.node).set(rc.contribution)
            self.root_cause_share.labels(*key, rc.node).set(rc.share)
            nodes.add(rc.node)
        self._causes[key] = nodes
        if self._incident.get(key) != att.incident_id:
            self._set_latest_incident(att.graph, att.target, att.incident_id)

    # -- the input side ------------------------------------------------------------------------

    def event(self, graph: str, n: int = 1) -> None:
        """Count ``n`` accepted metric events of ``graph`` (a validated, known graph name)."""
        with self._lock:
            self._touch_graph(graph)
            self.events.labels(graph).inc(n)

    def dead_letter(self, reason: str) -> None:
        """Count one dead-lettered event; an unknown reason code counts as ``"other"``."""
        self.dead_letters.labels(reason if reason in self._reasons else "other").inc()

    def late(self, graph: str, n: int = 1) -> None:
        """Count ``n`` events of ``graph`` that arrived after their window was emitted."""
        with self._lock:
            self._touch_graph(graph)
            self.late_events.labels(graph).inc(n)

    def duplicate(self, graph: str, n: int = 1) -> None:
        """Count ``n`` duplicate events of ``graph`` (redelivered, ignored)."""
        with self._lock:
            self._touch_graph(graph)
            self.duplicate_events.labels(graph).inc(n)

    def set_lag(self, topic: str, partition: int, lag: float | None) -> None:
        """Set the consumer lag of a partition; ``None`` removes it (partition revoked)."""
        key = (topic, str(partition))
        with self._lock:
            if lag is None:
                if key in self._lags:
                    self._lags.discard(key)
                    self.consumer_lag.remove(*key)
                return
            self._lags.add(key)
            self.consumer_lag.labels(*key).set(lag)

    def forget_graph(self, graph: str) -> None:
        """Remove the state gauges of a graph this process no longer owns (after a rebalance).

        Counters and histograms stay: they are cumulative and ``rate()`` copes with them.
        """
        with self._lock:
            for node in self._nodes.pop(graph, set()):
                self.node_score.remove(graph, node)
            for target in self._scored.pop(graph, set()):
                self.target_score.remove(graph, target)
            for target in self._targets.pop(graph, set()):
                key = (graph, target)
                self._clear_causes(key)
                self.incident_open.remove(*key)
                self.incident_start.remove(*key)
                if self._incident.pop(key, None) is not None:
                    self.latest_incident.remove(*key)
            self.warmup_nodes.remove(graph)
            self.last_snapshot.remove(graph)


def _seconds(att: Attribution) -> float | None:
    """The wall time an attribution carries, if its type has the field and it was timed."""
    took = getattr(att, "seconds", None)
    return None if took is None else float(took)

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

from prometheus_client import CollectorRegistry, Gauge

from stream_rca import __version__
from stream_rca.core.types import Attribution, IncidentEvent, StepResult
from stream_rca.io.deadletter import DEAD_LETTER_REASONS
from stream_rca.observability.families import MetricFamilies

__all__ = ["PipelineMetrics"]


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

        self.families = MetricFamilies(registry, version)
        for reason in sorted(self._reasons):
            self.families.dead_letters.labels(reason)

    def series_names(self) -> frozenset[str]:
        """Names of every series these metrics can expose (see ``MetricFamilies.series_names``)."""
        return self.families.series_names()

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
                self.families.missing_values.labels(graph, node)
                self.families.invalid_values.labels(graph, node)
            for target in targets:
                self._touch_target(graph, target)

    def _touch_graph(self, graph: str) -> None:
        if graph in self._graphs:
            return
        self._graphs.add(graph)
        for metric in (
            self.families.events,
            self.families.snapshots,
            self.families.late_events,
            self.families.duplicate_events,
            self.families.snapshot_seconds,
            self.families.attribution_seconds,
        ):
            metric.labels(graph)

    def _touch_target(self, graph: str, target: str) -> None:
        targets = self._targets.setdefault(graph, set())
        if target not in targets:
            targets.add(target)
            self.families.incidents.labels(graph, target)
            self.families.attributions.labels(graph, target)
            self.families.incident_open.labels(graph, target).set(0)

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
            self.families.snapshots.labels(graph).inc()
            self.families.snapshot_seconds.labels(graph).observe(seconds)
            self.families.warmup_nodes.labels(graph).set(len(result.warming))
            self.families.last_snapshot.labels(graph).set(result.ts)
            for node in result.missing:
                self.families.missing_values.labels(graph, node).inc()
            for node in result.invalid:
                self.families.invalid_values.labels(graph, node).inc()
            self._nodes[graph] = self._set_scores(
                self.families.node_score, graph, result.scores, self._nodes.get(graph, set())
            )
            self._scored[graph] = self._set_scores(
                self.families.target_score,
                graph,
                result.target_scores,
                self._scored.get(graph, set()),
            )
            for target in (*result.target_scores, *result.open_incidents):
                self._touch_target(graph, target)
            for event in result.events:
                self._incident_event(event)
            for target, incident_id in result.open_incidents.items():
                if self._incident.get((graph, target)) != incident_id:
                    self._set_latest_incident(graph, target, incident_id)
            for target in self._targets.get(graph, set()):
                self.families.incident_open.labels(graph, target).set(
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
            self.families.incidents.labels(*key).inc()
            self.families.incident_start.labels(*key).set(event.ts)
            self._clear_causes(key)
            self._set_latest_incident(event.graph, event.target, event.incident_id)

    def _set_latest_incident(self, graph: str, target: str, incident_id: str) -> None:
        self._incident[(graph, target)] = incident_id
        self.families.latest_incident.labels(graph, target).info({"incident_id": incident_id})

    def _clear_causes(self, key: tuple[str, str]) -> None:
        for node in self._causes.pop(key, set()):
            self.families.root_cause_contribution.remove(*key, node)
            self.families.root_cause_share.remove(*key, node)

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
        self.families.attributions.labels(*key).inc()
        if seconds is not None:
            self.families.attribution_seconds.labels(att.graph).observe(seconds)
        self._clear_causes(key)
        nodes: set[str] = set()
        for rc in att.root_causes:
            self.families.root_cause_contribution.labels(*key, rc.node).set(rc.contribution)
            self.families.root_cause_share.labels(*key, rc.node).set(rc.share)
            nodes.add(rc.node)
        self._causes[key] = nodes
        if self._incident.get(key) != att.incident_id:
            self._set_latest_incident(att.graph, att.target, att.incident_id)

    # -- the input side ------------------------------------------------------------------------

    def event(self, graph: str, n: int = 1) -> None:
        """Count ``n`` accepted metric events of ``graph`` (a validated, known graph name)."""
        with self._lock:
            self._touch_graph(graph)
            self.families.events.labels(graph).inc(n)

    def dead_letter(self, reason: str) -> None:
        """Count one dead-lettered event; an unknown reason code counts as ``"other"``."""
        self.families.dead_letters.labels(reason if reason in self._reasons else "other").inc()

    def late(self, graph: str, n: int = 1) -> None:
        """Count ``n`` events of ``graph`` that arrived after their window was emitted."""
        with self._lock:
            self._touch_graph(graph)
            self.families.late_events.labels(graph).inc(n)

    def duplicate(self, graph: str, n: int = 1) -> None:
        """Count ``n`` duplicate events of ``graph`` (redelivered, ignored)."""
        with self._lock:
            self._touch_graph(graph)
            self.families.duplicate_events.labels(graph).inc(n)

    def set_lag(self, topic: str, partition: int, lag: float | None) -> None:
        """Set the consumer lag of a partition; ``None`` removes it (partition revoked)."""
        key = (topic, str(partition))
        with self._lock:
            if lag is None:
                if key in self._lags:
                    self._lags.discard(key)
                    self.families.consumer_lag.remove(*key)
                return
            self._lags.add(key)
            self.families.consumer_lag.labels(*key).set(lag)

    def forget_graph(self, graph: str) -> None:
        """Remove the state gauges of a graph this process no longer owns (after a rebalance).

        Counters and histograms stay: they are cumulative and ``rate()`` copes with them.
        """
        with self._lock:
            for node in self._nodes.pop(graph, set()):
                self.families.node_score.remove(graph, node)
            for target in self._scored.pop(graph, set()):
                self.families.target_score.remove(graph, target)
            for target in self._targets.pop(graph, set()):
                key = (graph, target)
                self._clear_causes(key)
                self.families.incident_open.remove(*key)
                self.families.incident_start.remove(*key)
                if self._incident.pop(key, None) is not None:
                    self.families.latest_incident.remove(*key)
            self.families.warmup_nodes.remove(graph)
            self.families.last_snapshot.remove(graph)


def _seconds(att: Attribution) -> float | None:
    """The wall time an attribution carries, if its type has the field and it was timed."""
    took = getattr(att, "seconds", None)
    return None if took is None else float(took)

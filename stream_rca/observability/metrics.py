"""Prometheus metrics of the pipeline, registered on an injected registry.

:class:`PipelineMetrics` turns what the engine and the streaming layer report (step results,
attributions, dead letters, consumer lag) into Prometheus series. It never touches the global
registry: every instance registers its metrics on the :class:`~prometheus_client.CollectorRegistry`
it is given, so tests use a fresh registry each and two pipelines in one process do not collide.

Counters and histograms are ``prometheus_client`` metrics (:class:`MetricFamilies`); the gauges
of the latest state are built at each scrape by :class:`LatestState`, a custom collector.

Label values come only from graph and node names, dead-letter reason codes and Kafka topic names,
all bounded by configuration. The one exception, the id of an incident, is kept bounded by
exporting only the latest incident of each target.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

import numpy as np
from prometheus_client import CollectorRegistry

from stream_rca import __version__
from stream_rca.core.block import BlockResult
from stream_rca.core.types import Attribution, StepResult
from stream_rca.io.deadletter import DEAD_LETTER_REASONS
from stream_rca.observability.families import MetricFamilies
from stream_rca.observability.latest import LatestState

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
    the root causes of the latest attribution of each target. They are built at each scrape from
    that state (:class:`~stream_rca.observability.latest.LatestState`), so nodes that have no
    score in the latest snapshot, or the root causes of a previous incident once a new one opens
    or is attributed, have no series: stale values never mix with current ones.

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
        self._targets: set[tuple[str, str]] = set()  # (graph, target) whose counters exist

        self.families = MetricFamilies(registry, version)
        self.latest = LatestState()
        registry.register(self.latest)
        for reason in sorted(self._reasons):
            self.families.dead_letters.labels(reason)
        for outcome in ("processed", "dead_lettered", "replayed"):
            self.families.records.labels(outcome)

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
            self.families.quarantines.labels(graph)
            targets = tuple(targets)
            for target in targets:
                self._touch_target(graph, target)
            self.latest.add_targets(graph, targets)

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
        if (graph, target) not in self._targets:
            self._targets.add((graph, target))
            self.families.incidents.labels(graph, target)
            self.families.attributions.labels(graph, target)

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
            for node in result.missing:
                self.families.missing_values.labels(graph, node).inc()
            for node in result.invalid:
                self.families.invalid_values.labels(graph, node).inc()
            for target in (*result.target_scores, *result.open_incidents):
                self._touch_target(graph, target)
            for event in result.events:
                self._touch_target(event.graph, event.target)
                if event.kind == "opened":
                    self.families.incidents.labels(event.graph, event.target).inc()
            for i, att in enumerate(result.attributions):
                took = _seconds(att) if attribution_seconds is None else attribution_seconds[i]
                self._count_attribution(att, took)
            self.latest.observe_step(result)

    def observe_block(self, block: BlockResult, seconds: float) -> None:
        """Record what the engine made of a block of snapshots, at once.

        The same counts, histogram observations and latest state as :meth:`observe_step` on
        each snapshot's result with ``seconds / len(block)`` each: counters grow by the
        block's totals, and the latest state takes the snapshots with incident events or
        attributions, in order, then the last one (the others would be overwritten).
        """
        n = len(block)
        if not n:
            return
        graph, share = block.graph, seconds / n
        with self._lock:
            self._touch_graph(graph)
            self.families.snapshots.labels(graph).inc(n)
            self.families.snapshot_seconds.labels(graph).observe_many(share, n)
            for node, k in block.missing_counts().items():
                self.families.missing_values.labels(graph, node).inc(k)
            for node, k in block.invalid_counts().items():
                self.families.invalid_values.labels(graph, node).inc(k)
            scored = np.flatnonzero(~np.isnan(block.target_scores).all(axis=0))
            named = {block.targets[k] for k in scored.tolist()}
            named |= {t for opened in block.open_incidents.values() for t in opened}
            for target in named:
                self._touch_target(graph, target)
            self.latest.add_targets(graph, sorted(named))
            rows = block.eventful
            if not rows or rows[-1] != n - 1:
                rows.append(n - 1)
            for i in rows:
                result = block.step(i)
                for event in result.events:
                    self._touch_target(event.graph, event.target)
                    if event.kind == "opened":
                        self.families.incidents.labels(event.graph, event.target).inc()
                for att in result.attributions:
                    self._count_attribution(att, _seconds(att))
                self.latest.observe_step(result)

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
            self._count_attribution(att, _seconds(att) if seconds is None else seconds)
            self.latest.observe_attribution(att)

    def _count_attribution(self, att: Attribution, seconds: float | None) -> None:
        self._touch_target(att.graph, att.target)
        self.families.attributions.labels(att.graph, att.target).inc()
        if seconds is not None:
            self.families.attribution_seconds.labels(att.graph).observe(seconds)

    # -- the input side ------------------------------------------------------------------------

    def event(self, graph: str, n: int = 1) -> None:
        """Count ``n`` accepted metric events of ``graph`` (a validated, known graph name)."""
        with self._lock:
            self._touch_graph(graph)
            self.families.events.labels(graph).inc(n)

    def dead_letter(self, reason: str) -> None:
        """Count one dead-lettered event; an unknown reason code counts as ``"other"``."""
        self.families.dead_letters.labels(reason if reason in self._reasons else "other").inc()

    def record(self, outcome: str, n: int = 1) -> None:
        """Count ``n`` input records that ended ``"processed"``, ``"dead_lettered"`` or
        ``"replayed"``."""
        self.families.records.labels(outcome).inc(n)

    def graph_changed(self, graph: str) -> None:
        """Count one change of ``graph``'s structure (grown from spans)."""
        self.families.graph_changes.labels(graph).inc()

    def quarantine(self, graph: str) -> None:
        """Count one quarantine of ``graph`` (its records dead-lettered, nothing run)."""
        self.families.quarantines.labels(graph).inc()

    def unacknowledged(self, kind: str, n: int = 1) -> None:
        """Count ``n`` records of ``kind`` (attributions, deadletter...) the broker refused."""
        self.families.unacknowledged.labels(kind).inc(n)

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

    def checkpoint_refused(self, graph: str, reason: str) -> None:
        """Count a stored checkpoint of ``graph`` refused at load, by reason code."""
        self.families.checkpoints_refused.labels(graph, reason).inc()

    def checkpoint_failed(self, graph: str, reason: str) -> None:
        """Count a checkpoint of ``graph`` that could not be written, by reason code."""
        self.families.checkpoint_failures.labels(graph, reason).inc()

    def set_lag(self, topic: str, partition: int, lag: float | None) -> None:
        """Set the consumer lag of a partition; ``None`` removes it (partition revoked)."""
        self.latest.set_lag(topic, partition, lag)

    def forget_graph(self, graph: str) -> None:
        """Remove the state gauges of a graph this process no longer owns (after a rebalance).

        Counters and histograms stay: they are cumulative and ``rate()`` copes with them. A
        graph this process never had is fine (nothing to forget).
        """
        self.latest.forget(graph)


def _seconds(att: Attribution) -> float | None:
    """The wall time an attribution carries, if its type has the field and it was timed."""
    took = getattr(att, "seconds", None)
    return None if took is None else float(took)

"""Latest-state gauges, built afresh at every scrape by a custom collector.

Scores of the latest snapshot, the root causes of the latest attribution, which incidents are
open, consumer lag: these describe *now*, and a series that no longer applies must vanish.
Instead of gauges whose stale label sets are tracked and ``.remove()``\\ d by hand,
:class:`LatestState` keeps plain dictionaries of the current state and its :meth:`collect`
builds the families (:data:`~stream_rca.observability.families.STATE_FAMILIES`) from them, the
way ``prometheus_client``'s own process and GC collectors do. Forgetting a graph is one
``dict.pop``; nothing can be removed twice or be left behind.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from stream_rca.core.types import Attribution, StepResult
from stream_rca.observability import families as fam

__all__ = ["LatestState"]


@dataclass(slots=True)
class _Target:
    """The latest state of one watched target."""

    open: bool = False
    start: float | None = None
    """Event time at which the latest incident opened (``None`` before the first)."""
    incident_id: str | None = None
    causes: tuple[tuple[str, float, float], ...] = ()
    """(node, contribution, share) of the latest attribution of the latest incident."""


@dataclass(slots=True)
class _Graph:
    """The latest state of one graph."""

    scores: dict[str, float] = field(default_factory=dict)
    target_scores: dict[str, float] = field(default_factory=dict)
    warming: int | None = None
    last_ts: float | None = None
    targets: dict[str, _Target] = field(default_factory=dict)


def _finite_or_inf(scores: Mapping[str, float]) -> dict[str, float]:
    """The scores that have a value (``inf`` kept, ``nan`` dropped)."""
    return {name: v for name, v in scores.items() if not math.isnan(v)}


class LatestState(Collector):
    """The latest state of every graph this process owns, exported as gauges at each scrape.

    Register it on a registry (``registry.register(state)``); every scrape then calls
    :meth:`collect`. The mutators take a lock, and so does :meth:`collect`, so a scrape sees
    each snapshot either wholly applied or not at all.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> state = LatestState()
    >>> registry.register(state)
    >>> state.set_lag("rca.metrics", 0, 12)
    >>> labels = {"topic": "rca.metrics", "partition": "0"}
    >>> registry.get_sample_value("stream_rca_consumer_lag", labels)
    12.0
    >>> state.set_lag("rca.metrics", 0, None)
    >>> state.forget("never-seen")  # nothing to forget is not an error
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._graphs: dict[str, _Graph] = {}
        self._lags: dict[tuple[str, str], float] = {}

    # -- updates -------------------------------------------------------------------------------

    def _target(self, graph: str, target: str) -> _Target:
        return self._graphs.setdefault(graph, _Graph()).targets.setdefault(target, _Target())

    def add_targets(self, graph: str, targets: Iterable[str]) -> None:
        """Make ``targets`` of ``graph`` known (``stream_rca_incident_open`` 0 until one opens)."""
        with self._lock:
            for target in targets:
                self._target(graph, target)

    def observe_step(self, result: StepResult) -> None:
        """Apply one snapshot's result.

        Node and target scores replace the graph's previous ones (a ``nan`` score is no score);
        an ``"opened"`` event sets the target's start time and latest incident and clears the
        previous incident's root causes; every known target's open state follows
        ``result.open_incidents``; the attributions in ``result`` set the root causes.
        """
        with self._lock:
            state = self._graphs.setdefault(result.graph, _Graph())
            state.scores = _finite_or_inf(result.scores)
            state.target_scores = _finite_or_inf(result.target_scores)
            state.warming = len(result.warming)
            state.last_ts = result.ts
            for name in (*result.target_scores, *result.open_incidents):
                self._target(result.graph, name)
            for event in result.events:
                target = self._target(event.graph, event.target)
                if event.kind == "opened":
                    target.start = event.ts
                    target.causes = ()
                    target.incident_id = event.incident_id
            for name, target in state.targets.items():
                incident_id = result.open_incidents.get(name)
                target.open = incident_id is not None
                if incident_id is not None:
                    target.incident_id = incident_id
            for att in result.attributions:
                self._attributed(att)

    def observe_attribution(self, att: Attribution) -> None:
        """Replace the root causes of ``att``'s target with ``att``'s."""
        with self._lock:
            self._attributed(att)

    def _attributed(self, att: Attribution) -> None:
        target = self._target(att.graph, att.target)
        target.causes = tuple((rc.node, rc.contribution, rc.share) for rc in att.root_causes)
        target.incident_id = att.incident_id

    def set_lag(self, topic: str, partition: int, lag: float | None) -> None:
        """Set the consumer lag of a partition; ``None`` drops it (partition revoked)."""
        key = (topic, str(partition))
        with self._lock:
            if lag is None:
                self._lags.pop(key, None)
            else:
                self._lags[key] = float(lag)

    def forget(self, graph: str) -> None:
        """Drop everything about ``graph`` (a graph never seen is fine)."""
        with self._lock:
            self._graphs.pop(graph, None)

    # -- the collector -------------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """The families :meth:`collect` yields, without samples (for the registry's checks)."""
        return [_family(spec) for spec in fam.STATE_FAMILIES]

    def collect(self) -> Iterator[Metric]:
        """Build every latest-state family from the state as it is now."""
        gauges = {s.name: GaugeMetricFamily(s.name, s.doc, labels=s.labels) for s in _GAUGES}
        spec = fam.LATEST_INCIDENT
        info = InfoMetricFamily(spec.name, spec.doc, labels=spec.labels)

        def add(spec: fam.StateFamily, labels: list[str], value: float) -> None:
            gauges[spec.name].add_metric(labels, float(value))

        with self._lock:
            for graph, state in self._graphs.items():
                for node, score in state.scores.items():
                    add(fam.NODE_SCORE, [graph, node], score)
                for name, score in state.target_scores.items():
                    add(fam.TARGET_SCORE, [graph, name], score)
                if state.warming is not None:
                    add(fam.WARMUP_NODES, [graph], state.warming)
                if state.last_ts is not None:
                    add(fam.LAST_SNAPSHOT, [graph], state.last_ts)
                for name, target in state.targets.items():
                    add(fam.INCIDENT_OPEN, [graph, name], float(target.open))
                    if target.start is not None:
                        add(fam.INCIDENT_START, [graph, name], target.start)
                    if target.incident_id is not None:
                        info.add_metric([graph, name], {"incident_id": target.incident_id})
                    for node, contribution, share in target.causes:
                        add(fam.ROOT_CAUSE_CONTRIBUTION, [graph, name, node], contribution)
                        add(fam.ROOT_CAUSE_SHARE, [graph, name, node], share)
            for (topic, partition), lag in self._lags.items():
                add(fam.CONSUMER_LAG, [topic, partition], lag)
        for s in fam.STATE_FAMILIES:
            yield info if s is spec else gauges[s.name]


_GAUGES = tuple(s for s in fam.STATE_FAMILIES if s.kind == "gauge")


def _family(spec: fam.StateFamily) -> InfoMetricFamily | GaugeMetricFamily:
    if spec.kind == "info":
        return InfoMetricFamily(spec.name, spec.doc, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.doc, labels=spec.labels)

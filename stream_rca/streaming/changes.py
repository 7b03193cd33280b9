"""Distribution-change answers in the worker: on request, and when an incident does not close.

:class:`ChangeService` keeps a :class:`~stream_rca.core.change_reference.ChangeTracker` per
graph (the reference copy of its mechanisms), fed by the pipeline with every snapshot and its
result (:meth:`ChangeService.observe`). It answers with a ``stream-rca.change/v1`` document
(published to ``rca.changes``, keyed by graph):

- **automatically**, once per incident, when an incident has stayed open for ``after``
  snapshots ("the latency did not come back: which mechanism moved?"): reference rows
  against the recent rows, for the incident's target and statistic ``statistic``;
- **on request**: a JSON message on the request topic (``rca.change-requests``),
  ``{"graph": "shop", "target": "api", "statistic": "p99"}`` (``statistic`` optional).
  A request that does not decode, names an unknown graph or node, or comes before the
  reference has enough rows becomes a dead letter with a reason of the input events' fixed
  set (``malformed_json``, ``not_an_object``, ``missing_field``, ``wrong_type``,
  ``unknown_graph``, ``unknown_node``, ``too_large``; ``processing_error`` when the reference
  is not full enough yet), and its text says what was wrong.

Graph-free graphs have no mechanisms to compare: the service keeps no reference for them and
refuses requests about them (``unknown_graph``). Each graph's reference, with its open-incident
counts and the incidents already answered, is part of the graph's checkpoint
(:meth:`ChangeService.state_of`, :meth:`ChangeService.restore`), so it does not refill after a
restart.

Kafka-free like the pipeline: it returns :class:`~stream_rca.streaming.records.Output`
records for the caller to publish.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from stream_rca.config import GraphSpec
from stream_rca.core.change import parse_statistic
from stream_rca.core.change_reference import ChangeTracker
from stream_rca.core.checkpoint import StateError, StateTree, get_int, get_list, get_tree
from stream_rca.core.types import Snapshot, StepResult
from stream_rca.errors import ConfigError, NotWarmError
from stream_rca.io.deadletter import dead_letter_record
from stream_rca.streaming.records import Output, json_bytes

if TYPE_CHECKING:
    import faust

    from stream_rca.core.block import FloatArray
    from stream_rca.streaming.runtime import Runtime

__all__ = ["ChangeService", "serve_change_requests"]

MAX_REQUEST_BYTES = 4096
MAX_ANSWERED = 256
"""Incident ids answered automatically that a graph remembers (the latest ones)."""


@dataclass(slots=True)
class _Graph:
    tracker: ChangeTracker
    open_for: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Target to (incident id, snapshots it has been open)."""
    answered: dict[str, None] = field(default_factory=dict)
    """Incident ids already answered automatically (insertion order: the oldest first)."""


class ChangeService:
    """Per-graph reference mechanisms and the change answers made from them.

    Parameters
    ----------
    specs
        The graphs served.
    after
        Snapshots an incident stays open before it is answered automatically (0: never).
    statistic
        The statistic of automatic answers (``"mean"``, ``"p99"``...).
    capacity, recent
        Rows of each graph's reference and of its recent window.
    clock
        Unix seconds, for the dead letters' ``rejected_at``.
    """

    def __init__(
        self,
        specs: Sequence[GraphSpec],
        *,
        after: int = 30,
        statistic: str = "mean",
        capacity: int = 1000,
        recent: int = 250,
        clock: Callable[[], float] | None = None,
    ) -> None:
        parse_statistic(statistic)
        self.specs = {s.name: s for s in specs if not s.graph_free}
        self.graph_free = frozenset(s.name for s in specs if s.graph_free)
        self.after = after
        self.statistic = statistic
        self.capacity = capacity
        self.recent = recent
        self.clock = clock or (lambda: 0.0)
        self._graphs: dict[str, _Graph] = {}

    def tracker(self, graph: str) -> ChangeTracker:
        """The reference of ``graph`` (made on first use)."""
        live = self._graphs.get(graph)
        if live is None:
            spec = self.specs[graph]
            seed = sum(graph.encode()) % 2**31
            tracker = ChangeTracker(
                spec.graph, capacity=self.capacity, recent=self.recent, seed=seed
            )
            live = self._graphs[graph] = _Graph(tracker)
        return live.tracker

    def state_of(self, graph: str) -> StateTree | None:
        """The reference of ``graph`` and its incident bookkeeping as a state tree, if any."""
        live = self._graphs.get(graph)
        if live is None:
            return None
        return {
            "tracker": live.tracker.to_state(),
            "open_for": [[t, inc, n] for t, (inc, n) in sorted(live.open_for.items())],
            "answered": list(live.answered),
        }

    def restore(self, graph: str, state: StateTree) -> None:
        """Take back what :meth:`state_of` gave (after a restart).

        Raises
        ------
        CheckpointError
            ``malformed`` for a tree that does not fit the graph's reference (the graph's
            reference then starts empty).
        """
        from stream_rca.streaming.state import CheckpointError

        if graph not in self.specs:
            return
        self._graphs.pop(graph, None)
        tracker = self.tracker(graph)
        try:
            tracker.load_state(get_tree(state, "tracker"))
            open_for: dict[str, tuple[str, int]] = {}
            for row in get_list(state, "open_for"):
                if not isinstance(row, list) or len(row) != 3:
                    raise StateError("open_for: expected [target, incident, snapshots] rows")
                target, incident = row[0], row[1]
                if not isinstance(target, str) or not isinstance(incident, str):
                    raise StateError("open_for: target and incident are strings")
                open_for[target] = (incident, get_int({"n": row[2]}, "n", low=0))
            answered = get_list(state, "answered")
            if not all(isinstance(a, str) for a in answered):
                raise StateError("answered: expected incident ids")
        except StateError as exc:
            self._graphs.pop(graph, None)
            raise CheckpointError(f"graph {graph!r}: change reference: {exc}") from None
        live = self._graphs[graph]
        live.open_for = open_for
        live.answered = dict.fromkeys(answered[-MAX_ANSWERED:])

    def drop(self, graphs: Sequence[str]) -> None:
        """Forget graphs that went to another worker."""
        for g in graphs:
            self._graphs.pop(g, None)

    def observe(self, graph: str, snapshot: Snapshot, result: StepResult) -> list[Output]:
        """Learn one processed snapshot; the automatic answers it triggers."""
        return self.observe_open(graph, snapshot, result.open_incidents)

    def observe_open(
        self, graph: str, snapshot: Snapshot, open_incidents: Mapping[str, str]
    ) -> list[Output]:
        """:meth:`observe` given only the incidents open after the snapshot (target -> id).

        That is all of the step result the service reads; the batch path passes it from a
        block's columns without building the snapshot's whole result.
        """
        if graph not in self.specs:  # graph-free: no mechanisms to compare
            return []
        tracker = self.tracker(graph)
        tracker.learn_one(snapshot.values, snapshot.ts, anomalous=bool(open_incidents))
        return self._incidents(graph, open_incidents)

    def observe_block(
        self,
        graph: str,
        snapshots: Sequence[Snapshot],
        open_incidents: Mapping[int, Mapping[str, str]],
        rows: FloatArray | None = None,
        row_nodes: Sequence[str] = (),
    ) -> dict[int, list[Output]]:
        """:meth:`observe_open` on each snapshot of a block, in order, learning them at once.

        ``open_incidents`` maps a snapshot's position to its open incidents (absent: none).
        ``rows``, when given, are the snapshots' values, columns in the order of ``row_nodes``
        (NaN for a missing node), as the engine read them (:attr:`BlockResult.values
        <stream_rca.core.block.BlockResult.values>` of a block without invalid values); they
        are used when ``row_nodes`` is the reference's node order, and the snapshots are read
        otherwise.
        Returns the answers by position (positions that made none are absent): what
        :meth:`observe_open` returns for each. The rows are learned in one
        :meth:`~stream_rca.core.change_reference.ChangeTracker.learn_many` up to each answer
        (which then sees the rows before it, as one by one) and after the last.
        """
        if graph not in self.specs or not snapshots:
            return {}
        tracker = self.tracker(graph)
        live = self._graphs[graph]
        nodes = tracker.graph.nodes
        nan = float("nan")
        if rows is None or tuple(row_nodes) != nodes or rows.shape != (len(snapshots), len(nodes)):
            rows = np.array([[s.values.get(n, nan) for n in nodes] for s in snapshots], dtype=float)
        ts = np.array([s.ts for s in snapshots], dtype=float)
        flags = [bool(open_incidents.get(i)) for i in range(len(snapshots))]
        out: dict[int, list[Output]] = {}
        learned = 0
        for i in range(len(snapshots)):
            opened = open_incidents.get(i)
            if not opened:  # no incident open: none is counted as open any more
                if live.open_for:
                    live.open_for.clear()
                continue
            if self._due(live, opened):  # its answer reads the rows up to this one
                tracker.learn_many(
                    rows[learned : i + 1], ts[learned : i + 1], flags[learned : i + 1]
                )
                learned = i + 1
            outputs = self._incidents(graph, opened)
            if outputs:
                out[i] = outputs
        tracker.learn_many(rows[learned:], ts[learned:], flags[learned:])
        return out

    def _due(self, live: _Graph, open_incidents: Mapping[str, str]) -> bool:
        """Whether :meth:`_incidents` would answer for one of these open incidents."""
        if not self.after:
            return False
        for target, incident in open_incidents.items():
            seen, n = live.open_for.get(target, (incident, 0))
            n = n + 1 if seen == incident else 1
            if n >= self.after and incident not in live.answered:
                return True
        return False

    def _incidents(self, graph: str, open_incidents: Mapping[str, str]) -> list[Output]:
        """The incident bookkeeping of one observed snapshot; the answers it makes."""
        live = self._graphs[graph]
        outputs: list[Output] = []
        for target in list(live.open_for):
            if target not in open_incidents:
                del live.open_for[target]
        for target, incident in open_incidents.items():
            seen, n = live.open_for.get(target, (incident, 0))
            n = n + 1 if seen == incident else 1
            live.open_for[target] = (incident, n)
            if self.after and n >= self.after and incident not in live.answered:
                live.answered[incident] = None
                while len(live.answered) > MAX_ANSWERED:
                    del live.answered[next(iter(live.answered))]
                doc = self._answer(graph, target, self.statistic)
                if doc is not None:
                    doc |= {"trigger": "incident", "incident_id": incident, "open_snapshots": n}
                    outputs.append(Output("changes", graph.encode(), json_bytes(doc)))
        return outputs

    def request(self, raw: bytes | str | None) -> Output:
        """Answer one request message: a change document, or a dead letter with the reason."""
        try:
            graph, target, statistic = self._decode(raw)
        except _RejectedError as exc:
            record = dead_letter_record(raw, exc.reason, exc.text, now=self.clock())
            return Output("deadletter", None, record)
        try:
            doc = self.tracker(graph).why_changed(target, statistic=statistic).to_dict()
        except NotWarmError as exc:
            text = f"change request too early: {exc}"
            record = dead_letter_record(raw, "processing_error", text, now=self.clock())
            return Output("deadletter", None, record)
        doc |= {"graph": graph, "trigger": "request"}
        return Output("changes", graph.encode(), json_bytes(doc))

    def _answer(self, graph: str, target: str, statistic: str) -> dict[str, Any] | None:
        try:
            result = self.tracker(graph).why_changed(target, statistic=statistic)
        except (NotWarmError, ConfigError):
            return None  # too few rows yet: a later request can still ask
        return result.to_dict() | {"graph": graph}

    def _decode(self, raw: bytes | str | None) -> tuple[str, str, str]:
        if raw is None:
            raise _RejectedError("malformed_json", "a tombstone is no change request")
        if len(raw) > MAX_REQUEST_BYTES:
            raise _RejectedError("too_large", f"change request over {MAX_REQUEST_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _RejectedError("malformed_json", f"change request not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise _RejectedError("not_an_object", "a change request is a JSON object")
        graph, target = doc.get("graph"), doc.get("target")
        statistic = doc.get("statistic", "mean")
        if graph is None or target is None:
            raise _RejectedError("missing_field", 'a change request needs "graph" and "target"')
        if not (isinstance(graph, str) and isinstance(target, str) and isinstance(statistic, str)):
            raise _RejectedError("wrong_type", "graph, target and statistic are strings")
        if graph in self.graph_free:
            text = f"graph {graph!r} is graph-free: it has no mechanisms to compare"
            raise _RejectedError("unknown_graph", text)
        if graph not in self.specs:
            raise _RejectedError("unknown_graph", f"graph {graph!r} is not served here")
        if target not in self.specs[graph].graph:
            raise _RejectedError("unknown_node", f"graph {graph!r} has no node {target!r}")
        try:
            parse_statistic(statistic)
        except ConfigError as exc:
            raise _RejectedError("wrong_type", str(exc)) from None
        return graph, target, statistic


def serve_change_requests(
    app: faust.App, topic: str, runtime: Runtime, service: ChangeService
) -> None:
    """Add the agent that answers the request topic's messages (under the runtime's lock).

    Requests are not input of the engine: faust commits their offsets as usual, after the
    answer (or the dead letter) was handed to the producer.
    """
    source = app.topic(topic, key_serializer="raw", value_serializer="raw", allow_empty=True)

    async def change_requests(stream: Any) -> Any:
        async for value in stream:
            async with runtime.lock:
                output = service.request(value)
            await runtime.broker.send(output)
            yield output.kind

    app.agent(source, name="change-requests")(change_requests)


class _RejectedError(Exception):
    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason, self.text = reason, text

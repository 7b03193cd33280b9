"""A worker's graphs beyond their declared nodes: extra series, and growth from spans.

Two opt-ins of a graph entry (:class:`~stream_rca.graphs_file.GraphSpec`):

- ``accept_unknown: true``: samples of series the graph does not list are not dead letters but
  extra series, at most ``max_extra_series`` of them (beyond: dead letters with reason
  ``extra_series_limit``). :class:`ExtraBuffer` holds their values per window until the graph's
  aligner emits that window, then scores them marginally
  (:class:`~stream_rca.core.partial.ExtraSeries`) and names them in every attribution of the
  graph under ``extra_candidates`` (``not_in_graph: true``).
- ``grow_from_spans: true``: OpenTelemetry spans (OTLP JSON or Jaeger JSON documents, one per
  message of the spans topic) add call edges; :class:`SpanGrowth` matches spans to their parent
  spans (in a bounded index: a parent and its child may come in different messages) and counts
  calls. The graph is the declared graph plus every call edge seen (as ``callee -> caller``);
  a call edge that would close a cycle is dropped by the rule of
  :data:`stream_rca.io.traces.CYCLE_RULE`, the declared edges never (they count as infinitely
  many calls). When the graph changes, the pipeline grows the engine
  (:func:`stream_rca.core.grow.grow_engine`: unchanged nodes keep their learned state).

Both are state as data and go into the graph's checkpoint
(:class:`~stream_rca.streaming.state.GraphState`): the extra series whole
(:meth:`ExtraBuffer.to_state`), the span matching index bounded to its most recent spans
(:meth:`SpanGrowth.index_state`: a call whose parent came more than
:data:`MAX_CHECKPOINT_SPANS` spans before a restart is not matched after it).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from stream_rca.core.checkpoint import (
    StateError,
    StateTree,
    get_array,
    get_float,
    get_list,
    get_tree,
)
from stream_rca.core.graph import CausalGraph
from stream_rca.core.graphfree import GraphFreeConfig
from stream_rca.core.partial import ExtraSeries
from stream_rca.core.types import Attribution, Snapshot
from stream_rca.io.aligner import Aligner
from stream_rca.io.events import Sample
from stream_rca.io.traces import Span, break_cycles

if TYPE_CHECKING:
    import faust

    from stream_rca.streaming.runtime import Runtime

__all__ = [
    "MAX_CHECKPOINT_SPANS",
    "MAX_SPANS",
    "SPANS_AGENT",
    "SPAN_INDEX_BYTES",
    "ExtraBuffer",
    "SpanGrowth",
    "grow_aligner",
    "grown_nodes",
    "serve_spans",
]

SPANS_AGENT = "spans"
"""Name of the agent that reads the spans topic."""

_WindowOf = Callable[[float], tuple[float, float]]

MAX_SPANS = 50_000
"""Spans a graph remembers to match later children (and children waiting for their parent)."""
MAX_CHECKPOINT_SPANS = 4096
"""Spans of each matching index a checkpoint holds (the most recent): spans that may still be
parents, and children still waiting for their parent."""
SPAN_INDEX_BYTES = 512 * 1024
"""Most characters of span ids and names each of the two indexes takes in a checkpoint."""
_DECLARED = 1 << 62  # a declared edge's call count: never the fewest of a cycle


class ExtraBuffer:
    """The extra series of one graph: admitted, bucketed by window, scored, reported.

    Parameters
    ----------
    graph_nodes, targets
        The graph's nodes and watched targets.
    warmup
        Values an extra series learns from before it is scored.
    max_series
        The most extra series followed.
    """

    def __init__(
        self,
        graph_nodes: Sequence[str],
        targets: Sequence[str],
        warmup: int,
        max_series: int,
    ) -> None:
        self.series = ExtraSeries(
            graph_nodes, targets, GraphFreeConfig(warmup=warmup), max_series=max_series
        )
        self._windows: dict[float, dict[str, float]] = {}
        self._last: float = -math.inf  # the latest window scored

    def to_state(self) -> StateTree:
        """The extra series, their models and the values waiting for their windows, as data."""
        windows = [
            {
                "start": start,
                "nodes": list(cells),
                "values": np.array(list(cells.values()), dtype=np.float64),
            }
            for start, cells in sorted(self._windows.items())
        ]
        return {"series": self.series.to_state(), "windows": windows, "last": self._last}

    @classmethod
    def from_state(
        cls,
        graph_nodes: Sequence[str],
        targets: Sequence[str],
        warmup: int,
        max_series: int,
        state: StateTree,
    ) -> ExtraBuffer:
        """Rebuild :meth:`to_state`'s buffer (arguments as the constructor's).

        Raises
        ------
        StateError
            For a tree this class did not write (the message names the bad entry).
        """
        out = cls(graph_nodes, targets, warmup, max_series)
        out.series = ExtraSeries.from_state(
            graph_nodes,
            targets,
            GraphFreeConfig(warmup=warmup),
            get_tree(state, "series"),
            max_series=max_series,
        )
        out._last = get_float(state, "last", finite=False)
        if out._last == math.inf or out._last != out._last:
            raise StateError("last: expected a window start or -inf")
        extra = set(out.series.series)
        for i, window in enumerate(get_list(state, "windows")):
            where = f"windows[{i}]"
            if not isinstance(window, dict):
                raise StateError(f"{where}: expected a mapping")
            start = get_float(window, "start")
            names = get_list(window, "nodes")
            values = get_array(window, "values", np.float64, (len(names),))
            if not all(isinstance(n, str) and n in extra for n in names):
                raise StateError(f"{where}.nodes: expected extra series")
            if len(set(names)) != len(names) or start <= out._last or start in out._windows:
                raise StateError(f"{where}: repeated nodes, a repeated or an already scored window")
            if not np.isfinite(values).all():
                raise StateError(f"{where}.values: expected finite values")
            out._windows[start] = dict(zip(names, values.tolist(), strict=True))
        return out

    def add_nodes(self, nodes: Sequence[str]) -> None:
        """Nodes that joined the graph (grown): no longer extra from now on."""
        self.series.graph_nodes = self.series.graph_nodes | frozenset(nodes)
        self.series.series = [n for n in self.series.series if n not in set(nodes)]

    def add(self, samples: Sequence[Sample], window_of: _WindowOf) -> tuple[list[str], int]:
        """Hold the samples' values until their windows are emitted.

        Returns the names refused (over the bound) and how many samples came too late (their
        window was already scored).
        """
        admitted, refused = self.series.admit(s.node for s in samples)
        keep = set(admitted)
        late = 0
        for s in samples:
            if s.node not in keep:
                continue
            start, _ = window_of(s.ts)
            if start <= self._last:
                late += 1
                continue
            self._windows.setdefault(start, {})[s.node] = s.value
        return refused, late

    def on_snapshot(self, snap: Snapshot, learn: bool) -> None:
        """Score the extras of ``snap``'s window beside its targets' values (then drop it)."""
        values = self._windows.pop(snap.ts, {})
        for old in [k for k in self._windows if k < snap.ts]:
            del self._windows[old]  # windows the graph never emitted (no values of its own)
        self._last = max(self._last, snap.ts)
        targets = {t: snap.values[t] for t in self.series.targets if t in snap.values}
        self.series.observe(Snapshot(snap.ts, {**values, **targets}, snap.graph, snap.end),
                            learn=learn)  # fmt: skip

    def annotate(self, att: Attribution) -> Attribution:
        """``att`` with the extra series as ``extra_candidates``."""
        return self.series.annotate(att) if self.series.series else att


class SpanGrowth:
    """Call edges of one graph learned from spans, and the graph they make.

    Parameters
    ----------
    base
        The declared graph (its edges stay; its nodes are the services' names).
    max_spans
        Spans remembered to match parents and children that come in different messages.

    Examples
    --------
    >>> g = CausalGraph([("db", "api")], name="shop")
    >>> grow = SpanGrowth(g)
    >>> grow.add([Span("t", "1", None, "web", "server"), Span("t", "2", "1", "api", "server")])
    1
    >>> grow.graph().edges
    (('db', 'api'), ('api', 'web'))
    """

    def __init__(self, base: CausalGraph, max_spans: int = MAX_SPANS) -> None:
        self.base = base
        self.max_spans = max_spans
        self.calls: Counter[tuple[str, str]] = Counter()
        """``(caller, callee)`` -> calls seen."""
        self.skipped: Counter[str] = Counter()
        self.dropped: list[tuple[str, str, int]] = []
        """Call edges left out by the cycle rule at the last :meth:`graph`."""
        self._spans: OrderedDict[tuple[str, str], Span] = OrderedDict()
        self._waiting: OrderedDict[tuple[str, str], list[Span]] = OrderedDict()

    def add(self, spans: Sequence[Span]) -> int:
        """Match the spans with their parents (and waiting children); return new call edges."""
        before = len(self.calls)
        for s in spans:
            key = (s.trace_id, s.span_id)
            self._spans[key] = s
            if len(self._spans) > self.max_spans:
                self._spans.popitem(last=False)
            for child in self._waiting.pop(key, []):
                self._call(s, child)
            if s.parent_id is None:
                continue
            parent = self._spans.get((s.trace_id, s.parent_id))
            if parent is not None:
                self._call(parent, s)
            else:
                self._waiting.setdefault((s.trace_id, s.parent_id), []).append(s)
                if len(self._waiting) > self.max_spans:
                    self._waiting.popitem(last=False)
                    self.skipped["parent span never seen"] += 1
        return len(self.calls) - before

    def index_state(self) -> StateTree:
        """The matching index as data: the most recent spans of each side, bounded.

        At most :data:`MAX_CHECKPOINT_SPANS` spans of each index and
        :data:`SPAN_INDEX_BYTES` characters of their ids and names (older spans beyond that
        are left out: a child of one of them arriving after a restart finds no parent).
        """
        waiting = [c for kids in self._waiting.values() for c in kids]
        return {"spans": _recent(self._spans.values()), "waiting": _recent(waiting)}

    def restore_index(self, state: StateTree) -> None:
        """Take the matching index of :meth:`index_state`'s tree.

        Raises
        ------
        StateError
            For rows that are not spans, or more of them than a checkpoint holds.
        """
        spans = _spans_of(get_list(state, "spans"), "spans")
        waiting = _spans_of(get_list(state, "waiting"), "waiting")
        if any(s.parent_id is None for s in waiting):
            raise StateError("waiting: a span without a parent cannot wait for one")
        self._spans = OrderedDict(((s.trace_id, s.span_id), s) for s in spans)
        self._waiting = OrderedDict()
        for s in waiting:
            self._waiting.setdefault((s.trace_id, cast(str, s.parent_id)), []).append(s)
        while len(self._spans) > self.max_spans:
            self._spans.popitem(last=False)
        while len(self._waiting) > self.max_spans:
            self._waiting.popitem(last=False)

    @property
    def index_size(self) -> tuple[int, int]:
        """Spans held to match later children, and children waiting for their parent."""
        return len(self._spans), sum(len(k) for k in self._waiting.values())

    def _call(self, parent: Span, child: Span) -> None:
        if parent.service == child.service:
            if parent.kind in ("client", "producer") and child.kind in ("server", "consumer"):
                self.skipped["self-call (a service calling itself)"] += 1
            return
        self.calls[(parent.service, child.service)] += 1

    def graph(self) -> CausalGraph:
        """The declared graph plus the call edges seen (``callee -> caller``), cycles broken."""
        calls: dict[tuple[str, str], int] = dict(self.calls)
        for cause, effect in self.base.edges:  # a declared cause is a callee of its effect
            calls[(effect, cause)] = _DECLARED
        services = sorted({n for e in calls for n in e} | set(self.base.nodes))
        dropped, _ = break_cycles(services, calls)
        self.dropped = [d for d in dropped if d[2] < _DECLARED]
        gone = {(a, b) for a, b, _ in dropped}
        declared = set(self.base.edges)
        seen = sorted((b, a) for (a, b) in calls if (a, b) not in gone and (b, a) not in declared)
        return CausalGraph([*self.base.edges, *seen], self.base.nodes, name=self.base.name)


def _recent(spans: Collection[Span]) -> list[list[str | None]]:
    """The most recent ``spans`` as rows, within the checkpoint's bounds, oldest first."""
    rows: list[list[str | None]] = []
    budget = SPAN_INDEX_BYTES
    for s in reversed(list(spans)):
        row = [s.trace_id, s.span_id, s.parent_id, s.service, s.kind]
        budget -= sum(len(x) for x in row if x is not None)
        if budget < 0 or len(rows) == MAX_CHECKPOINT_SPANS:
            break
        rows.append(row)
    rows.reverse()
    return rows


def _spans_of(rows: list[Any], name: str) -> list[Span]:
    if len(rows) > MAX_CHECKPOINT_SPANS:
        raise StateError(f"{name}: more than {MAX_CHECKPOINT_SPANS} spans")
    out: list[Span] = []
    for i, row in enumerate(rows):
        if (
            not isinstance(row, list)
            or len(row) != 5
            or not all(isinstance(x, str) for x in (*row[:2], *row[3:]))
            or not (row[2] is None or isinstance(row[2], str))
        ):
            raise StateError(f"{name}[{i}]: expected [trace, span, parent, service, kind]")
        out.append(Span(row[0], row[1], row[2], row[3], row[4]))
    return out


def grown_nodes(old: CausalGraph, new: CausalGraph) -> list[str]:
    """Nodes of ``new`` that ``old`` does not have, in ``new``'s order."""
    return [n for n in new.nodes if n not in old.index]


def grow_aligner(aligner: Aligner, nodes: Sequence[str]) -> Aligner:
    """``aligner`` with ``nodes`` added (no values in its open windows yet)."""
    tree = aligner.to_state()
    new = [n for n in nodes if n not in set(tree["nodes"])]
    if not new:
        return aligner
    k = len(new)
    tree["nodes"] = [*tree["nodes"], *new]
    rows = tree["values"].shape[0]
    tree["values"] = np.concatenate([tree["values"], np.zeros((rows, k))], axis=1)
    tree["present"] = np.concatenate([tree["present"], np.zeros((rows, k), dtype=bool)], axis=1)
    return Aligner.from_state(tree)


def serve_spans(app: faust.App, topic: str, runtime: Runtime) -> None:
    """Add the agent that folds the spans topic's messages into the graphs (under the lock).

    Spans are not input of the engine: faust commits their offsets as usual, after the
    message's dead letter (if any) was handed to the producer. Key the messages by graph
    name, with as many partitions as the input topic, so that a graph's spans reach the
    worker that holds it.
    """
    source = app.topic(topic, key_serializer="raw", value_serializer="raw", allow_empty=True)

    async def spans(stream: Any) -> Any:
        async for event in stream.events():
            message = event.message
            async with runtime.lock:
                outcome = runtime.pipeline.process_spans(
                    message.value,
                    partition=message.partition,
                    offset=message.offset,
                    topic=message.topic,
                    key=message.key,
                )
            for output in outcome.outputs:
                await runtime.broker.send(output)
            yield outcome

    app.agent(source, name=SPANS_AGENT)(spans)

"""Messages read again below what a graph's state holds, skipped without being decoded.

After a restart or a rebalance a worker reads again the messages between its group's committed
offset and what the restored checkpoints hold (a checkpoint made at a rebalance is not followed
by a commit). The pipeline skips those it finds in its graph's state
(:meth:`~stream_rca.streaming.state.GraphState.applied`), but only after decoding each message
(its graph is in its value): decoding was most of what such a re-read cost.

:class:`Rereads` decides, from the key, the offset and one substring search, that a message is
certainly held: it is skipped unread and counted ``replayed`` when

- its key is the UTF-8 name of a graph ``G`` whose state is live in this worker on the same
  partition and that takes the batch path (not ``accept_unknown``, ``grow_from_spans`` or
  graph-free; not quarantined);
- ``G``'s state holds that partition up to an offset at or after the message's;
- the value is bytes without a backslash and holds ``"graph":"G"`` or ``"graph": "G"`` as
  written (compact JSON, or Python's ``json.dumps``).

Why nothing is lost: a state that holds a partition up to offset ``u`` was made by processing
every message of the partition below ``u`` in offset order (here, or by the worker whose
checkpoint it restored), and a checkpoint is written only once the records of every message
processed before it are acknowledged (:class:`~stream_rca.streaming.runtime.Runtime`). So the
message was processed, or dead-lettered with its dead letter acknowledged. And it was ``G``'s
own message or one that no graph accepts (then dead-lettered): without a backslash no JSON
string can hold a quote, so ``"graph":"G"`` is a key and its value, and a valid event has a
single ``graph`` key and no string among its values. Another graph's message cannot pass for
``G``'s: its state could be older than ``G``'s.

What changes against decoding every message: a message that was dead-lettered is not
dead-lettered a second time when it is read again below a checkpoint (it is counted
``replayed``, as a processed one is).
"""

from __future__ import annotations

from stream_rca.core.engine import Engine
from stream_rca.streaming.pipeline import Pipeline

__all__ = ["Rereads"]


class Rereads:
    """The messages of one batch that a live state certainly holds (see the module docstring).

    Made per batch: it reads the pipeline's live states when made.

    Examples
    --------
    >>> from stream_rca.config import GraphSpec
    >>> from stream_rca.core.graph import CausalGraph
    >>> spec = GraphSpec("shop", CausalGraph([("db", "api")], name="shop"), ("api",), step=10.0)
    >>> pipe = Pipeline([spec], clock=lambda: 1700000100.0)
    >>> raw = b'{"graph":"shop","node":"db","ts":1700000001,"value":1.0}'
    >>> pipe.process_one(raw, partition=0, offset=0).replayed
    False
    >>> rereads = Rereads(pipe)
    >>> rereads.graph(0, 0, b"shop", raw), rereads.graph(0, 1, b"shop", raw)
    ('shop', None)
    >>> rereads.graph(0, 0, b"shop", raw.replace(b'"shop"', b'"other"')) is None
    True
    """

    __slots__ = ("_known", "_marks", "_pipeline")

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._known: dict[tuple[bytes | None, int], tuple[str, bytes, bytes, int] | None] = {}
        marks: dict[int, int] = {}
        for graph in pipeline.graphs:
            state, partition = pipeline.state(graph), pipeline.partition_of(graph)
            last = None if state is None else state.offsets.get(partition or 0)
            if partition is not None and last is not None and last > marks.get(partition, -1):
                marks[partition] = last
        self._marks = marks

    def __bool__(self) -> bool:
        """False when no message can be held (no live state holds any offset)."""
        return bool(self._marks)

    def mark(self, partition: int) -> int:
        """The highest offset of ``partition`` a live state holds (``-1``: none): only
        messages at or below it can be held."""
        return self._marks.get(partition, -1)

    def graph(self, partition: int, offset: int, key: bytes | None, value: object) -> str | None:
        """The graph whose state certainly holds the message (skip it unread), else ``None``."""
        if offset > self._marks.get(partition, -1):
            return None
        known = self._known
        if (key, partition) in known:
            where = known[key, partition]
        else:
            where = known[key, partition] = self._mark(key, partition)
        if where is None:
            return None
        graph, compact, spaced, last = where
        if (
            offset <= last
            and type(value) is bytes
            and 92 not in value  # no backslash
            and (compact in value or spaced in value)
        ):
            return graph
        return None

    def _mark(self, key: bytes | None, partition: int) -> tuple[str, bytes, bytes, int] | None:
        """``(G, b'"graph":"G"', b'"graph": "G"', last offset held)`` for the graph a key
        names, if its messages may be skipped."""
        pipe = self._pipeline
        if not key:
            return None
        try:
            graph = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
        spec = pipe.specs.get(graph)
        state = pipe.state(graph)
        if spec is None or state is None or pipe.partition_of(graph) != partition:
            return None
        if spec.accept_unknown or spec.grow_from_spans or getattr(spec, "graph_free", False):
            return None
        if not isinstance(state.engine, Engine) or not graph.isprintable() or '"' in graph:
            return None
        last = state.offsets.get(partition)
        if last is None:
            return None
        return graph, b'"graph":"' + key + b'"', b'"graph": "' + key + b'"', last

"""The processing of one input message, free of Kafka and faust: decode, align, run, report.

:class:`Pipeline` is what the faust agent calls for every message. It decodes and validates the
message (:func:`~stream_rca.io.events.decode_event`), routes its samples to the graph's
:class:`~stream_rca.io.aligner.Aligner`, runs the graph's
:class:`~stream_rca.core.engine.Engine` on every snapshot the aligner completes, and returns an
:class:`Outcome` holding the output records (attribution documents, optional score documents,
dead letters) for the caller to publish. It reads no clock but the one it is given, and does no
I/O, so it is tested without a broker.

Policies at this step:

- a message that does not decode, or names an unknown graph or node, becomes one dead letter
  with the decoder's reason and the original bytes;
- a message whose window was already emitted becomes one dead letter with reason
  ``"late_event"`` (and counts as late);
- a sample repeated with the same value in an open window is ignored and counted as a
  duplicate, not dead-lettered (at-least-once delivery makes them);
- a message at or below the offset a graph's state was checkpointed at is already in that state
  and is skipped (:attr:`Outcome.replayed`): replays after a restart are idempotent;
- an exception while processing a valid message goes to the error policy
  (:mod:`stream_rca.streaming.errors`; by default a ``QuarantinePolicy``): the message is
  dead-lettered with reason ``"processing_error"`` (the exception's type and text in the
  message), and a graph that keeps failing is quarantined: its state is dropped and its later
  messages are dead-lettered with reason ``"graph_quarantined"``, while the other graphs go
  on. Outputs made before the error (say, the attribution of an earlier snapshot of the same
  message) are kept.

So every message ends processed or dead-lettered with a reason: :attr:`Outcome.reason` says
which, and the ``stream_rca_records_total`` counter counts each outcome.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_rca.config import GraphSpec
from stream_rca.core.engine import Engine
from stream_rca.core.types import Snapshot, StepResult
from stream_rca.errors import DecodeError
from stream_rca.io.aligner import AlignStatus
from stream_rca.io.deadletter import DEAD_LETTER_MAX_BYTES, dead_letter_record
from stream_rca.io.events import DEFAULT_MAX_SKEW, Sample, decode_event
from stream_rca.io.traces import Span
from stream_rca.observability import PipelineMetrics
from stream_rca.streaming.changes import ChangeService
from stream_rca.streaming.errors import (
    ErrorContext,
    ErrorPolicy,
    ProcessingError,
    QuarantinePolicy,
    Verdict,
    describe_error,
)
from stream_rca.streaming.growth import ExtraBuffer, SpanGrowth, grow_aligner
from stream_rca.streaming.records import (
    Outcome,
    Output,
    json_bytes,
    scores_document,
)
from stream_rca.streaming.state import (
    CheckpointCodec,
    CheckpointError,
    GraphState,
    dump_state,
    load_state,
    new_state,
)

__all__ = ["MAX_DEAD_LETTER_KEY", "Pipeline"]

log = logging.getLogger("stream_rca.streaming")

Loader = Callable[[str], bytes | None]

MAX_DEAD_LETTER_KEY = 4096
"""A dead letter is keyed as its message was, unless that key is longer than this (no key)."""


@dataclass(slots=True)
class _Live:
    state: GraphState
    partition: int
    warned_partitions: set[int] = field(default_factory=set)


class Pipeline:
    """Decode, align and run input messages of several graphs; say what to publish.

    Parameters
    ----------
    specs
        The graphs served (from the graphs file).
    publish_scores
        Also emit one ``rca.scores`` document per processed snapshot.
    metrics
        Prometheus metrics to update, if any.
    clock
        Wall-clock time in unix seconds (dead letters' ``rejected_at``, the future-timestamp
        check); tests pass a fake one.
    loader
        Returns the stored checkpoint of a graph (or ``None``) the first time the pipeline
        meets the graph; without one, every graph starts afresh.
    codec
        Signs and verifies checkpoints (the worker's comes from its settings, with the key);
        default: unsigned records (data only, never code), for runs without a key.
    max_skew
        Seconds an event's timestamp may lie ahead of ``clock()``.
    error_policy
        Decides what becomes of a message whose processing raised; default
        :class:`~stream_rca.streaming.errors.QuarantinePolicy`.
    max_dead_letter_bytes
        The most bytes a dead letter (value plus key) may have: the dead-letter topic's
        ``max.message.bytes`` less the record batch overhead.
    changes
        Keeps each graph's reference mechanisms and answers "why did it change?"
        (:mod:`stream_rca.streaming.changes`); ``None``: no change answers.

    Examples
    --------
    >>> from stream_rca.core.graph import CausalGraph
    >>> spec = GraphSpec("shop", CausalGraph([("db", "api")], name="shop"), ("api",), step=10.0)
    >>> p = Pipeline([spec], clock=lambda: 1700000100.0)
    >>> p.process_one(b'{"graph": "shop", "node": "db", "ts": 1700000001, "value": 1}').statuses
    (<AlignStatus.ACCEPTED: 'accepted'>,)
    >>> out = p.process_one(b'{"graph": "shop", "node": "dbx", "ts": 1700000001, "value": 1}')
    >>> out.reason, out.outputs[0].kind
    ('unknown_node', 'deadletter')
    """

    def __init__(
        self,
        specs: Sequence[GraphSpec],
        *,
        publish_scores: bool = False,
        metrics: PipelineMetrics | None = None,
        clock: Callable[[], float] = time.time,
        loader: Loader | None = None,
        codec: CheckpointCodec | None = None,
        max_skew: float = DEFAULT_MAX_SKEW,
        error_policy: ErrorPolicy | None = None,
        max_dead_letter_bytes: int = DEAD_LETTER_MAX_BYTES,
        changes: ChangeService | None = None,
    ) -> None:
        self.specs: dict[str, GraphSpec] = {s.name: s for s in specs}
        self.known: dict[str, frozenset[str]] = {s.name: frozenset(s.graph.nodes) for s in specs}
        self.publish_scores = publish_scores
        self.metrics = metrics
        self.clock = clock
        self.loader = loader
        self.codec = codec if codec is not None else CheckpointCodec(None)
        self.max_skew = max_skew
        self.error_policy: ErrorPolicy = error_policy or QuarantinePolicy()
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self.changes = changes
        self._live: dict[str, _Live] = {}
        self._dirty: set[str] = set()
        self._failures: dict[str, int] = {}  # graph -> processing errors in a row
        self._quarantined: dict[str, str] = {}  # graph -> the error that quarantined it
        self._growth: dict[str, SpanGrowth] = {}  # grow_from_spans graphs: call edges seen
        self.growing = any(s.grow_from_spans for s in specs)
        """True when a graph may grow from spans (only then does :meth:`preload` do anything)."""
        if metrics is not None:
            for s in specs:
                metrics.register_graph(s.name, s.graph.nodes, s.targets)

    # -- state --------------------------------------------------------------------------------

    @property
    def graphs(self) -> tuple[str, ...]:
        """Graphs whose state this pipeline holds now."""
        return tuple(self._live)

    @property
    def dirty(self) -> tuple[str, ...]:
        """Graphs whose state changed since their last checkpoint."""
        return tuple(g for g in self._live if g in self._dirty)

    @property
    def quarantined(self) -> dict[str, str]:
        """Quarantined graphs, each with the error that quarantined it (a copy)."""
        return dict(self._quarantined)

    def release(self, graph: str) -> None:
        """Lift a graph's quarantine: its next message is run again, from its checkpoint."""
        if self._quarantined.pop(graph, None) is not None:
            log.info("graph %r released from quarantine", graph)
        self._failures.pop(graph, None)

    def state(self, graph: str) -> GraphState | None:
        """The live state of ``graph``, if this pipeline holds it."""
        live = self._live.get(graph)
        return None if live is None else live.state

    def partition_of(self, graph: str) -> int | None:
        """The input partition ``graph`` was last seen on (where its checkpoint goes)."""
        live = self._live.get(graph)
        return None if live is None else live.partition

    def graphs_on(self, partitions: Iterable[int]) -> list[str]:
        """Live graphs whose input partition is one of ``partitions``."""
        wanted = set(partitions)
        return [g for g, live in self._live.items() if live.partition in wanted]

    def mark_dirty(self, graph: str) -> None:
        """Mark a live graph as changed again (its checkpoint was not acknowledged)."""
        if graph in self._live:
            self._dirty.add(graph)

    def checkpoint(self, graph: str) -> bytes:
        """Serialise the state of a live graph and mark it clean.

        The checkpoint holds the graph as it runs (grown by spans, with the call counts that
        grew it and the recent spans that may still match), its why-changed reference and its
        extra series (``accept_unknown``), so a restart resumes them all.
        """
        state = self._live[graph].state
        growth = self._growth.get(graph)
        if growth is not None:
            state.calls = dict(growth.calls)
            state.growth = growth
        if self.changes is not None:
            state.change = self.changes.state_of(graph)
        blob = dump_state(state, self.codec)
        self._dirty.discard(graph)
        return blob

    def drop(self, graphs: Iterable[str]) -> None:
        """Forget graphs (their partitions went to another worker); reload them if they return."""
        for g in graphs:
            self._live.pop(g, None)
            self._growth.pop(g, None)
            self._dirty.discard(g)
            self.release(g)
            if self.changes is not None:
                self.changes.drop([g])
            if self.metrics is not None:
                self.metrics.forget_graph(g)

    def _acquire(self, graph: str, partition: int) -> GraphState:
        live = self._live.get(graph)
        if live is not None:
            if partition != live.partition and partition not in live.warned_partitions:
                live.warned_partitions.add(partition)
                log.warning(
                    "graph %r arrives on input partitions %d and %d: key input events by graph "
                    "name, or two workers may hold its state",
                    graph,
                    live.partition,
                    partition,
                )
            return live.state
        spec = self.specs[graph]
        blob = self.loader(graph) if self.loader is not None else None
        state: GraphState | None = None
        if blob is not None:
            try:
                state = load_state(blob, spec, self.codec)
            except CheckpointError as exc:
                log.warning("%s", exc)
                if self.metrics is not None:
                    self.metrics.checkpoint_refused(graph, exc.reason)
        if state is None:
            state = new_state(spec)
            self._growth.pop(graph, None)  # spans seen under a state now gone
            log.info("graph %r: new state (warm-up of %d snapshots)", graph, spec.engine.warmup)
        else:
            self._adopt(graph, state)
            log.info(
                "graph %r: restored state from checkpoint (%d snapshots, warm=%s, offsets %s, "
                "digest %s)",
                graph,
                state.engine.n_snapshots,
                state.engine.warm,
                state.offsets,
                hashlib.sha1(blob or b"").hexdigest()[:10],
            )
        self._live[graph] = _Live(state, partition)
        return state

    def _adopt(self, graph: str, state: GraphState) -> None:
        """Take over what a restored state holds beside the engine: growth, change reference."""
        spec = self.specs[graph]
        running = state.engine.graph
        if spec.grow_from_spans:
            growth = state.growth
            if growth is None:
                growth = SpanGrowth(spec.graph)
                growth.calls.update(state.calls)
            self._growth[graph] = growth
            held, waiting = growth.index_size
            if held or waiting:
                log.info(
                    "graph %r: restored %d spans to match later children and %d children "
                    "waiting for their parent",
                    graph,
                    held,
                    waiting,
                )
        if state.extras is not None:
            log.info(
                "graph %r: restored %d series not in the graph with their marginal models",
                graph,
                len(state.extras.series.series),
            )
        if len(running) != len(spec.graph) or set(running.edges) != set(spec.graph.edges):
            self.known[graph] = frozenset(running.nodes)
            log.info(
                "graph %r: restored as grown from spans (%d nodes, %d edges; declared %d, %d)",
                graph,
                len(running),
                len(running.edges),
                len(spec.graph),
                len(spec.graph.edges),
            )
            if self.metrics is not None:
                self.metrics.register_graph(graph, running.nodes, spec.targets)
        if self.changes is not None and state.change is not None:
            try:
                self.changes.restore(graph, state.change)
            except CheckpointError as exc:
                log.warning("graph %r: why-changed reference not restored: %s", graph, exc)
        state.change = None  # the service holds it now

    # -- one message --------------------------------------------------------------------------

    def process_one(
        self,
        raw: bytes | str | None,
        *,
        partition: int = 0,
        offset: int | None = None,
        topic: str | None = None,
        key: bytes | None = None,
    ) -> Outcome:
        """Process one input message; never raises for bad input.

        Parameters
        ----------
        raw
            The message value (``None`` for a tombstone, which is dead-lettered).
        partition, offset, topic
            Where it came from; ``offset`` makes replays idempotent (``None``: not tracked).
        key
            The message key, kept on its dead letter.

        Returns
        -------
        Outcome
            What happened, with the records to publish.

        Raises
        ------
        ProcessingError
            Only when the error policy says to stop (never with the default policy).
        """
        msg = _Message(raw, topic, partition, offset, key)
        try:
            samples = decode_event(
                raw,  # type: ignore[arg-type]  # None is reported as a tombstone
                known=self.known,
                now=self.clock(),
                max_skew=self.max_skew,
            )
        except DecodeError as exc:
            if exc.reason == "unknown_node" and self._restore_grown(raw, partition):
                return self.process_one(
                    raw, partition=partition, offset=offset, topic=topic, key=key
                )
            extra = self._accepting(raw) if exc.reason == "unknown_node" else None
            if extra is None:
                out = self._dead_letter(msg, exc.reason, exc.message)
                outcome = Outcome(reason=exc.reason, outputs=(out,))
            else:
                outcome = self._route(extra, msg)
        else:
            outcome = self._route(samples, msg)
        if self.metrics is not None:
            self.metrics.record(_kind(outcome))
        return outcome

    def process_spans(
        self,
        raw: bytes | str | None,
        *,
        partition: int = 0,
        offset: int | None = None,
        topic: str | None = None,
        key: bytes | None = None,
    ) -> Outcome:
        """Fold one message of the spans topic into its graph; grow the graph on new calls.

        The message is one OTLP JSON (``resourceSpans``) or Jaeger JSON (``data``) document;
        its graph is the message key, else the document's ``graph`` field, else the only
        graph with ``grow_from_spans``. When its spans show call edges the graph lacks, the
        engine is rebuilt on the grown graph with every unchanged node's learned state
        (:func:`~stream_rca.core.grow.grow_engine`), logged and counted
        (``stream_rca_graph_changes_total``). Never raises for bad input: a message that is
        not such a document is a dead letter ``bad_spans``, one of a graph that does not grow
        from spans ``unknown_graph``.
        """
        msg = _Message(raw, topic, partition, offset, key)
        outcome = self._spans(msg)
        if self.metrics is not None:
            self.metrics.record(_kind(outcome))
        return outcome

    def _spans(self, msg: _Message) -> Outcome:
        from stream_rca.io.traces import TraceError, spans_of_document

        raw = msg.raw
        try:
            doc = json.loads(raw) if raw is not None else None
        except (ValueError, UnicodeDecodeError) as exc:
            out = self._dead_letter(msg, "bad_spans", f"spans: not JSON ({exc})")
            return Outcome(reason="bad_spans", outputs=(out,))
        growing = [s.name for s in self.specs.values() if s.grow_from_spans]
        if msg.key:
            graph = msg.key.decode("utf-8", "replace")
        elif isinstance(doc, dict) and isinstance(doc.get("graph"), str):
            graph = doc["graph"]
        else:
            graph = growing[0] if len(growing) == 1 else ""
        if graph not in growing:
            text = (
                f"spans for graph {graph[:100]!r}: no graph of this worker grows from spans "
                f"by that name (key the message by graph name; growing: {', '.join(growing)})"
            )
            out = self._dead_letter(msg, "unknown_graph", text)
            return Outcome(reason="unknown_graph", outputs=(out,))
        try:
            read = spans_of_document(doc, "spans message")
        except TraceError as exc:
            out = self._dead_letter(msg, "bad_spans", str(exc))
            return Outcome(graph=graph, reason="bad_spans", outputs=(out,))
        try:
            self._grow(graph, read.spans, msg.partition)
        except Exception as exc:
            return self._failed(exc, graph, msg, [])
        return Outcome(graph=graph)

    def _grow(self, graph: str, spans: Sequence[Span], partition: int) -> None:
        from stream_rca.core.grow import grow_engine

        spec = self.specs[graph]
        state = self._acquire(graph, partition)  # a restored graph brings its calls
        growth = self._growth.setdefault(graph, SpanGrowth(spec.graph))
        if not growth.add(spans):
            return
        if not isinstance(state.engine, Engine):  # graph-free entries never grow (validated)
            return
        new = growth.graph()
        old = state.engine.graph
        if set(new.edges) == set(old.edges) and len(new) == len(old):
            return
        engine, change = grow_engine(state.engine, new, targets=spec.targets)
        engine.timer = state.engine.timer
        engine.pool = state.engine.pool
        state.engine = engine
        state.aligner = grow_aligner(state.aligner, new.nodes)
        self.known[graph] = frozenset(new.nodes)
        if state.extras is not None:
            state.extras.add_nodes(new.nodes)
        for a, b, n in growth.dropped:
            log.info("graph %r: call edge %s -> %s (%d calls) left out: cycle", graph, a, b, n)
        log.info("graph %r grew from spans: %s", graph, change.summary())
        if self.metrics is not None:
            self.metrics.register_graph(graph, new.nodes, spec.targets)
            self.metrics.graph_changed(graph)
        self._dirty.add(graph)

    def preload(self, key: bytes | None, partition: int) -> None:
        """Load the checkpoint of the graph named by an input message's key, if it may have
        grown: its grown nodes are then known before the message is decoded (the batch path
        decodes a whole batch against :attr:`known` first)."""
        if not key:
            return
        graph = key.decode("utf-8", "replace")
        spec = self.specs.get(graph)
        growing = spec is not None and spec.grow_from_spans
        if growing and graph not in self._live and graph not in self._quarantined:
            self._acquire(graph, partition)

    def _restore_grown(self, raw: bytes | str | None, partition: int) -> bool:
        """Load a growing graph not yet live; True if that made new nodes known."""
        try:
            samples = decode_event(raw, now=self.clock(), max_skew=self.max_skew)  # type: ignore[arg-type]
        except DecodeError:
            return False
        graph = samples[0].graph if samples else ""
        spec = self.specs.get(graph)
        if spec is None or not spec.grow_from_spans or graph in self._live:
            return False
        if graph in self._quarantined:
            return False
        before = self.known[graph]
        self._acquire(graph, partition)
        return self.known[graph] != before

    def _accepting(self, raw: bytes | str | None) -> list[Sample] | None:
        """The samples of a message naming unknown nodes, if its graph accepts them."""
        samples = decode_event(raw, now=self.clock(), max_skew=self.max_skew)  # type: ignore[arg-type]
        spec = self.specs.get(samples[0].graph) if samples else None
        return samples if spec is not None and spec.accept_unknown else None

    def _extra_buffer(self, graph: str, state: GraphState) -> ExtraBuffer:
        buf = state.extras
        if buf is None:
            spec = self.specs[graph]
            buf = state.extras = ExtraBuffer(
                state.engine.graph.nodes, spec.targets, spec.engine.warmup, spec.max_extra_series
            )
        return buf

    def _route(self, samples: list[Sample], msg: _Message) -> Outcome:
        if not samples:  # an empty batch: valid, nothing to do
            return Outcome()
        graph = samples[0].graph
        why = self._quarantined.get(graph)
        if why is not None:
            text = f"graph {graph!r} is quarantined after repeated processing errors ({why})"
            out = self._dead_letter(msg, "graph_quarantined", text)
            return Outcome(graph=graph, reason="graph_quarantined", outputs=(out,))
        outputs: list[Output] = []
        try:
            return self._fold(graph, samples, msg, outputs)
        except Exception as exc:
            return self._failed(exc, graph, msg, outputs)

    def _failed(self, exc: Exception, graph: str, msg: _Message, outputs: list[Output]) -> Outcome:
        """Ask the error policy about ``exc``; dead-letter the message, maybe quarantine."""
        n = self._failures[graph] = self._failures.get(graph, 0) + 1
        context = ErrorContext(graph, msg.topic, msg.partition, msg.offset, n)
        log.debug("graph %r: processing error", graph, exc_info=exc)
        verdict = self.error_policy.on_processing_error(exc, context, log)
        what = describe_error(exc)
        if verdict is Verdict.RAISE:
            raise ProcessingError(f"graph {graph!r}: processing {msg} failed: {what}") from exc
        text = f"graph {graph!r}: processing failed ({n} in a row): {what}"
        outputs.append(self._dead_letter(msg, "processing_error", text))
        if verdict is Verdict.QUARANTINE:
            self._quarantined[graph] = what
            self._live.pop(graph, None)  # its state may be half-updated: never checkpoint it
            self._growth.pop(graph, None)
            self._dirty.discard(graph)
            if self.metrics is not None:
                self.metrics.quarantine(graph)
        elif (live := self._live.get(graph)) is not None:
            if msg.offset is not None:  # its outcome is final: a replay must not run it again
                live.state.offsets[msg.partition] = msg.offset
            self._dirty.add(graph)
        return Outcome(graph=graph, reason="processing_error", outputs=tuple(outputs), error=what)

    def _fold(
        self, graph: str, samples: list[Sample], msg: _Message, outputs: list[Output]
    ) -> Outcome:
        state = self._acquire(graph, msg.partition)
        if msg.offset is not None and state.applied(msg.partition, msg.offset):
            return Outcome(graph=graph, replayed=True)
        aligner, metrics = state.aligner, self.metrics
        extras: ExtraBuffer | None = None
        refused: list[str] = []
        late_extra = 0
        if self.specs[graph].accept_unknown:
            extras = self._extra_buffer(graph, state)
            own = self.known[graph]
            others = [s for s in samples if s.node not in own]
            if others:
                samples = [s for s in samples if s.node in own]
                refused, late_extra = extras.add(others, aligner.window_of)
        statuses: list[AlignStatus] = []
        snapshots: list[Snapshot] = []
        for res in aligner.add_many(samples):
            statuses.append(res.status)
            snapshots.extend(res.snapshots)
        late = count_statuses(state, metrics, graph, statuses)
        results: list[StepResult] = []
        gkey = graph.encode()
        for snap in snapshots:
            t0 = time.perf_counter()
            result = state.engine.process_one(snap)
            took = time.perf_counter() - t0
            results.append(result)
            if metrics is not None:
                metrics.observe_step(result, took)
            if extras is not None:  # nothing learns inside an incident
                extras.on_snapshot(snap, learn=not result.open_incidents)
            for att in result.attributions:
                if extras is not None:
                    att = extras.annotate(att)
                outputs.append(Output("attributions", gkey, json_bytes(att.to_dict())))
            if self.changes is not None:  # the reference mechanisms; change answers
                declared = self.specs[graph].graph.index  # a grown graph: its declared nodes
                seen = (
                    snap
                    if len(declared) == len(state.engine.graph)
                    else dataclasses.replace(
                        snap, values={k: v for k, v in snap.values.items() if k in declared}
                    )
                )
                outputs.extend(self.changes.observe(graph, seen, result))
            if self.publish_scores:
                doc = scores_document(result, snap, state.engine.n_snapshots)
                outputs.append(Output("scores", gkey, json_bytes(doc)))
        if snapshots:
            self._failures.pop(graph, None)  # the engine ran: no longer failing in a row
        if late:
            start, end = aligner.window_of(samples[0].ts)
            text = (
                f"{late} of {len(samples)} samples fall in window [{start}, {end}) of graph "
                f"{graph!r}, already emitted (watermark {aligner.watermark}, allowed lateness "
                f"{aligner.allowed_lateness} s)"
            )
            outputs.append(self._dead_letter(msg, "late_event", text))
        if late_extra:
            text = (
                f"{late_extra} samples of series not in graph {graph!r} fall in windows already "
                "scored"
            )
            outputs.append(self._dead_letter(msg, "late_event", text))
        if refused:
            bound = self.specs[graph].max_extra_series
            text = (
                f"graph {graph!r} follows at most {bound} series not in the graph "
                f"(max_extra_series); refused: {', '.join(refused[:20])}"
            )
            outputs.append(self._dead_letter(msg, "extra_series_limit", text))
        if msg.offset is not None:
            state.offsets[msg.partition] = msg.offset
        self._dirty.add(graph)
        reason = "late_event" if late or late_extra else None
        return Outcome(
            graph=graph,
            reason="extra_series_limit" if refused else reason,
            statuses=tuple(statuses),
            results=tuple(results),
            outputs=tuple(outputs),
        )

    def _dead_letter(self, msg: _Message, reason: str, text: str) -> Output:
        if self.metrics is not None:
            self.metrics.dead_letter(reason)
        key = msg.key if msg.key is None or len(msg.key) <= MAX_DEAD_LETTER_KEY else None
        record = dead_letter_record(
            msg.raw,
            reason,
            text,
            now=self.clock(),
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            max_bytes=self.max_dead_letter_bytes - (0 if key is None else len(key)),
        )
        return Output("deadletter", key, record)


@dataclass(frozen=True, slots=True)
class _Message:
    """One input message and where it came from."""

    raw: bytes | str | None
    topic: str | None
    partition: int
    offset: int | None
    key: bytes | None

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _kind(outcome: Outcome) -> str:
    """The ``outcome`` label of a message's :class:`Outcome`."""
    if outcome.replayed:
        return "replayed"
    return "processed" if outcome.reason is None else "dead_lettered"


def count_statuses(
    state: Any, metrics: PipelineMetrics | None, graph: str, statuses: Sequence[AlignStatus]
) -> int:
    """Book what the aligner made of a message's samples (events, late, duplicates); late."""
    used = sum(1 for s in statuses if s.used)
    late = statuses.count(AlignStatus.LATE)
    dupes = statuses.count(AlignStatus.DUPLICATE)
    state.events += used
    if metrics is not None:
        if used:
            metrics.event(graph, used)
        if late:
            metrics.late(graph, late)
        if dupes:
            metrics.duplicate(graph, dupes)
    return late

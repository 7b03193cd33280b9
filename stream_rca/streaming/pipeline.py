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

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from stream_rca.config import GraphSpec
from stream_rca.core.types import Snapshot, StepResult
from stream_rca.errors import DecodeError
from stream_rca.io.aligner import AlignStatus
from stream_rca.io.deadletter import DEAD_LETTER_MAX_BYTES, dead_letter_record
from stream_rca.io.events import DEFAULT_MAX_SKEW, Sample, decode_event
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
        """Serialise the state of a live graph and mark it clean."""
        blob = dump_state(self._live[graph].state, self.codec)
        self._dirty.discard(graph)
        return blob

    def drop(self, graphs: Iterable[str]) -> None:
        """Forget graphs (their partitions went to another worker); reload them if they return."""
        for g in graphs:
            self._live.pop(g, None)
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
            log.info("graph %r: new state (warm-up of %d snapshots)", graph, spec.engine.warmup)
        else:
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
            out = self._dead_letter(msg, exc.reason, exc.message)
            outcome = Outcome(reason=exc.reason, outputs=(out,))
        else:
            outcome = self._route(samples, msg)
        if self.metrics is not None:
            self.metrics.record(_kind(outcome))
        return outcome

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
        statuses: list[AlignStatus] = []
        snapshots: list[Snapshot] = []
        for res in aligner.add_many(samples):
            statuses.append(res.status)
            snapshots.extend(res.snapshots)
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
        results: list[StepResult] = []
        gkey = graph.encode()
        for snap in snapshots:
            t0 = time.perf_counter()
            result = state.engine.process_one(snap)
            took = time.perf_counter() - t0
            results.append(result)
            if metrics is not None:
                metrics.observe_step(result, took)
            for att in result.attributions:
                outputs.append(Output("attributions", gkey, json_bytes(att.to_dict())))
            if self.changes is not None:  # the reference mechanisms; change answers
                outputs.extend(self.changes.observe(graph, snap, result))
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
        if msg.offset is not None:
            state.offsets[msg.partition] = msg.offset
        self._dirty.add(graph)
        return Outcome(
            graph=graph,
            reason="late_event" if late else None,
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

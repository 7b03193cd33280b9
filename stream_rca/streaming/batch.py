"""A batch of input messages through the pipeline in one line of stages.

:func:`process_batch` is what :meth:`Pipeline.process_one
<stream_rca.streaming.pipeline.Pipeline.process_one>` does to each message of a batch, with
the same outcome for every message, but each stage runs once over the whole batch:

1. **decode**: :func:`~stream_rca.io.fastdecode.decode_batch` (a typed msgspec decoder; the
   detailed decoder only for the messages it does not certainly accept, so reasons are
   exact);
2. **align**: each message's samples go to its graph's aligner in message order (the
   watermark rule counts messages, so this stays per message); the snapshots it completes
   are gathered per graph;
3. **engine**: each graph's snapshots of the batch go through
   :meth:`~stream_rca.core.engine.Engine.process_many` in one block, which gives the results,
   learned state and incidents of ``process_one`` snapshot by snapshot, for any block size;
4. **sinks**: the attribution and score documents are encoded, each under the message that
   completed its snapshot, and the metrics are updated once per batch (counts) and once per
   result (the latest-state gauges).

Data flows one way: a stage reads only what the one before produced.

**Errors.** A graph's block that raises is charged to every message of that graph that
completed a snapshot in it, in order: each goes to the error policy and is dead-lettered with
reason ``processing_error``; once the policy quarantines the graph, that message's later
messages in the batch are dead-lettered with ``graph_quarantined``. For a graph whose engine
fails on every snapshot (a bad setting) this is what record-by-record processing does; for one
failing on a single snapshot, the other messages that completed a snapshot of the same block
are dead-lettered too, and the results of its block are not published.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from stream_rca.core.types import Snapshot, StepResult
from stream_rca.errors import DecodeError
from stream_rca.io.aligner import AlignStatus
from stream_rca.io.events import Sample
from stream_rca.io.fastdecode import decode_batch
from stream_rca.streaming.pipeline import Pipeline, _kind, _Message, count_statuses
from stream_rca.streaming.records import Outcome, Output, json_bytes, scores_document

__all__ = ["InputRecord", "process_batch"]


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One input message of a batch and where it came from."""

    value: bytes | None
    partition: int = 0
    offset: int | None = None
    topic: str | None = None
    key: bytes | None = None


@dataclass(slots=True)
class _Pending:
    """A message of the batch on its way through the stages."""

    msg: _Message
    graph: str | None = None
    reason: str | None = None
    statuses: tuple[AlignStatus, ...] = ()
    snapshots: int = 0  # how many snapshots of its graph's block it completed
    results: list[StepResult] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    late: Output | None = None
    replayed: bool = False
    error: str | None = None
    final: Outcome | None = None  # set once nothing later can change it


@dataclass(slots=True)
class _Block:
    """The snapshots of one graph in a batch, each with the message that completed it."""

    snapshots: list[Snapshot] = field(default_factory=list)
    owners: list[_Pending] = field(default_factory=list)
    members: list[_Pending] = field(default_factory=list)  # every aligned message, in order


def process_batch(pipeline: Pipeline, records: Sequence[InputRecord]) -> list[Outcome]:
    """Process a batch of input messages; one :class:`Outcome` per message, in order.

    The outcomes (reasons, statuses, results, outputs) are those ``pipeline.process_one``
    gives message by message, except after an engine error (see the module docstring).

    Raises
    ------
    ProcessingError
        Only when the error policy says to stop (never with the default policy).
    """
    decoded = decode_batch(
        [r.value for r in records],
        known=pipeline.known,
        now=pipeline.clock(),
        max_skew=pipeline.max_skew,
    )
    pending = [_Pending(_Message(r.value, r.topic, r.partition, r.offset, r.key)) for r in records]
    blocks = _align(pipeline, pending, decoded)
    for graph, block in blocks.items():
        _run(pipeline, graph, block)
    return _finish(pipeline, pending)


def _align(
    pipeline: Pipeline, pending: list[_Pending], decoded: list[list[Sample] | DecodeError]
) -> dict[str, _Block]:
    """Stage 2: every message's samples to its graph's aligner, in message order."""
    blocks: dict[str, _Block] = {}
    metrics = pipeline.metrics
    for p, samples in zip(pending, decoded, strict=True):
        msg = p.msg
        if isinstance(samples, DecodeError):
            p.final = _rejected(pipeline, p, None, samples.reason, samples.message)
            continue
        if not samples:  # an empty batch event: valid, nothing to do
            p.final = Outcome()
            continue
        graph = p.graph = samples[0].graph
        why = pipeline._quarantined.get(graph)
        if why is not None:
            text = f"graph {graph!r} is quarantined after repeated processing errors ({why})"
            p.final = _rejected(pipeline, p, graph, "graph_quarantined", text)
            continue
        try:
            state = pipeline._acquire(graph, msg.partition)
            if msg.offset is not None and state.applied(msg.partition, msg.offset):
                p.final = Outcome(graph=graph, replayed=True)
                continue
            aligner = state.aligner
            statuses: list[AlignStatus] = []
            block = blocks.setdefault(graph, _Block())
            for res in aligner.add_many(samples):
                statuses.append(res.status)
                if res.snapshots:
                    block.snapshots.extend(res.snapshots)
                    block.owners.extend([p] * len(res.snapshots))
                    p.snapshots += len(res.snapshots)
        except Exception as exc:  # a bug in the aligner or a state that cannot load
            p.final = pipeline._failed(exc, graph, msg, [])
            continue
        block.members.append(p)
        p.statuses = tuple(statuses)
        late = count_statuses(state, metrics, graph, statuses)
        if late:
            start, end = aligner.window_of(samples[0].ts)
            text = (
                f"{late} of {len(samples)} samples fall in window [{start}, {end}) of graph "
                f"{graph!r}, already emitted (watermark {aligner.watermark}, allowed lateness "
                f"{aligner.allowed_lateness} s)"
            )
            p.reason = "late_event"
            p.late = pipeline._dead_letter(msg, "late_event", text)
    return blocks


def _run(pipeline: Pipeline, graph: str, block: _Block) -> None:
    """Stages 3 and 4 for one graph: its snapshots in one engine block, then the documents."""
    state = pipeline.state(graph)
    if state is None:  # quarantined while aligning (its state was dropped)
        return
    engine, metrics = state.engine, pipeline.metrics
    before = engine.n_snapshots
    results: list[StepResult] = []
    if block.snapshots:
        t0 = time.perf_counter()
        try:
            results = engine.process_many(block.snapshots)
        except Exception as exc:
            _block_failed(pipeline, graph, block, exc)
            return
        share = (time.perf_counter() - t0) / len(results)
        pipeline._failures.pop(graph, None)  # the engine ran: no longer failing in a row
        gkey = graph.encode()
        for i, (snap, result, owner) in enumerate(
            zip(block.snapshots, results, block.owners, strict=True)
        ):
            if metrics is not None:
                metrics.observe_step(result, share)
            owner.results.append(result)
            for att in result.attributions:
                owner.outputs.append(Output("attributions", gkey, json_bytes(att.to_dict())))
            if pipeline.publish_scores:
                doc = scores_document(result, snap, before + i + 1)
                owner.outputs.append(Output("scores", gkey, json_bytes(doc)))
    for p in block.members:
        if p.msg.offset is not None:
            state.offsets[p.msg.partition] = p.msg.offset
    pipeline._dirty.add(graph)


def _block_failed(pipeline: Pipeline, graph: str, block: _Block, exc: Exception) -> None:
    """Charge an engine error to the messages that completed a snapshot of the block."""
    state = pipeline.state(graph)
    for p in block.members:
        if graph in pipeline._quarantined:
            why = pipeline._quarantined[graph]
            text = f"graph {graph!r} is quarantined after repeated processing errors ({why})"
            p.final = _rejected(pipeline, p, graph, "graph_quarantined", text)
        elif p.snapshots:
            p.final = pipeline._failed(exc, graph, p.msg, [])
        elif state is not None and p.msg.offset is not None:
            state.offsets[p.msg.partition] = p.msg.offset
    pipeline._dirty.add(graph)


def _rejected(
    pipeline: Pipeline, p: _Pending, graph: str | None, reason: str, text: str
) -> Outcome:
    out = pipeline._dead_letter(p.msg, reason, text)
    return Outcome(graph=graph, reason=reason, outputs=(out,))


def _finish(pipeline: Pipeline, pending: list[_Pending]) -> list[Outcome]:
    """Each message's outcome; the records counter updated once per batch."""
    outcomes: list[Outcome] = []
    for p in pending:
        if p.final is None:
            if p.late is not None:
                p.outputs.append(p.late)
            p.final = Outcome(
                graph=p.graph,
                reason=p.reason,
                statuses=p.statuses,
                results=tuple(p.results),
                outputs=tuple(p.outputs),
            )
        outcomes.append(p.final)
    if pipeline.metrics is not None:
        kinds: dict[str, int] = {}
        for o in outcomes:
            k = _kind(o)
            kinds[k] = kinds.get(k, 0) + 1
        for k, n in kinds.items():
            pipeline.metrics.record(k, n)
    return outcomes

"""A batch of input messages through the pipeline in one line of stages.

:func:`process_batch` is what :meth:`Pipeline.process_one
<stream_rca.streaming.pipeline.Pipeline.process_one>` does to each message of a batch, with
the same outcome for every message, but each stage runs once over the whole batch:

1. **decode**: :func:`~stream_rca.io.fastdecode.decode_batch` (a typed msgspec decoder; the
   detailed decoder only for the messages it does not certainly accept, so reasons are
   exact);
2. **align**: each message's values go to its graph's aligner in message order (the
   watermark rule counts messages, so this stays per message): a row of the fast decoder
   in one step (:meth:`~stream_rca.io.aligner.Aligner.add_row`), the detailed decoder's
   samples one by one; the snapshots it completes are gathered per graph; what the aligner
   made of the values is counted once per graph;
3. **engine**: each graph's snapshots of the batch go through
   :meth:`~stream_rca.core.engine.Engine.process_many_columns` in one block, which gives the
   results, learned state and incidents of ``process_one`` snapshot by snapshot, for any
   block size, as columns (:class:`~stream_rca.core.block.BlockResult`);
4. **sinks**: the score documents of a block are encoded from its columns at once (msgspec;
   the same documents as :func:`~stream_rca.streaming.records.scores_document`), the
   attribution documents one by one (they are rare), each under the message that completed
   its snapshot; the change service learns the block's snapshots at once
   (:meth:`~stream_rca.streaming.changes.ChangeService.observe_block`); the metrics are
   updated once per block
   (:meth:`~stream_rca.observability.PipelineMetrics.observe_block`) and the records counter
   once per batch.

Data flows one way: a stage reads only what the one before produced. Per-snapshot
:class:`~stream_rca.core.types.StepResult` objects are built only when asked for
(``results=True``, the default; the worker's hot path passes ``False``); the change service
reads each snapshot's open incidents from the columns.

**The collector.** Python's cyclic garbage collector is paused for the length of a batch
(the batch's own objects hold no cycles and are freed when it ends; in process, its full
collections had been a third of the single form's time).

**Incident pages.** Given a :class:`~stream_rca.report.ReportWriter` (``pages``, the
worker's ``--report-dir``), every snapshot's result goes to it after the batch, in the order
record-by-record processing gives them (message by message; a message's snapshots in window
order), so the pages are those the per-record path writes. The results are then built for
every snapshot (as with ``results=True``); a page that cannot be written is logged, not
fatal.

Graphs with per-message features of their own (``accept_unknown``, ``grow_from_spans``,
graph-free graphs) and messages naming unknown nodes take the record-by-record path
(:meth:`Pipeline.process_one`), in message order, inside the batch.

**Errors.** A graph's block that raises is charged to every message of that graph that
completed a snapshot in it, in order: each goes to the error policy and is dead-lettered with
reason ``processing_error``; once the policy quarantines the graph, that message's later
messages in the batch are dead-lettered with ``graph_quarantined``. For a graph whose engine
fails on every snapshot (a bad setting) this is what record-by-record processing does; for one
failing on a single snapshot, the other messages that completed a snapshot of the same block
are dead-lettered too, and the results of its block are not published.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import msgspec
import numpy as np
import numpy.typing as npt

from stream_rca.core.block import BlockResult
from stream_rca.core.engine import Engine
from stream_rca.core.types import Snapshot
from stream_rca.errors import DecodeError
from stream_rca.io.aligner import Aligner, AlignStatus
from stream_rca.io.events import Sample
from stream_rca.io.fastdecode import Lane, Row, decode_rows
from stream_rca.streaming.pipeline import Pipeline, _kind, _Message
from stream_rca.streaming.records import SCORES_SCHEMA, Outcome, Output, json_bytes

if TYPE_CHECKING:
    from stream_rca.report import ReportWriter
    from stream_rca.streaming.state import GraphState

__all__ = ["InputRecord", "process_batch", "score_documents", "write_pages"]

log = logging.getLogger("stream_rca.streaming")

_ENCODER = msgspec.json.Encoder()
_ACCEPTED, _REVISED = AlignStatus.ACCEPTED, AlignStatus.REVISED
_LATE, _DUPLICATE = AlignStatus.LATE, AlignStatus.DUPLICATE
_EMPTY = Outcome()
_JUST_ACCEPTED = (AlignStatus.ACCEPTED,)
BoolArray = npt.NDArray[np.bool_]


class InputRecord(msgspec.Struct, gc=False):
    """One input message of a batch and where it came from (not changed once made: a msgspec
    struct, made in C, as the runtime makes one per message read)."""

    value: bytes | None
    partition: int = 0
    offset: int | None = None
    topic: str | None = None
    key: bytes | None = None


class _Pending:
    """A valid message of a served graph on its way through the engine and sinks."""

    __slots__ = ("final", "graph", "index", "late", "outputs", "record", "snapshots", "statuses")

    def __init__(
        self, index: int, record: InputRecord, graph: str, statuses: tuple[AlignStatus, ...]
    ) -> None:
        self.index = index
        self.record = record
        self.graph = graph
        self.statuses = statuses
        self.snapshots = 0  # how many snapshots of its graph's block it completed
        self.outputs: list[Output] | None = None
        self.late: Output | None = None
        self.final: Outcome | None = None


@dataclass(slots=True)
class _Block:
    """The snapshots of one graph in a batch, each with the message that completed it."""

    snapshots: list[Snapshot] = field(default_factory=list)
    owners: list[_Pending] = field(default_factory=list)
    members: list[_Pending | int] = field(default_factory=list)
    """Every aligned message, in order: a plain one (one sample, accepted, no snapshot
    completed: most messages of the single form) as its index in the batch."""
    offsets: dict[int, int] = field(default_factory=dict)
    """Partition to the offset of its last aligned message."""
    used: int = 0
    late: int = 0
    duplicates: int = 0


class _Lane:
    """Where the last message of a graph in a batch went: its partition, the graph's state
    and aligner, and its block (``None`` while its messages were all replayed)."""

    __slots__ = ("aligner", "block", "partition", "state", "upto")

    def __init__(
        self, partition: int, state: GraphState, aligner: Aligner, block: _Block | None
    ) -> None:
        self.partition = partition
        self.state = state
        self.aligner = aligner
        self.block = block
        last = state.offsets.get(partition)
        self.upto = -1 if last is None else last
        """The last offset of the partition in the state (``state.applied`` is ``offset <=
        upto``); the state's offsets move only after the batch is aligned."""


def _message(r: InputRecord) -> _Message:
    return _Message(r.value, r.topic, r.partition, r.offset, r.key)


def process_batch(
    pipeline: Pipeline,
    records: Sequence[InputRecord],
    *,
    results: bool = True,
    pages: ReportWriter | None = None,
) -> list[Outcome]:
    """Process a batch of input messages; one :class:`Outcome` per message, in order.

    The outcomes (reasons, statuses, results, outputs) are those ``pipeline.process_one``
    gives message by message, except after an engine error (see the module docstring).

    Parameters
    ----------
    pipeline
        The pipeline whose graphs, states, policy and metrics are used.
    records
        The messages, in order (several partitions may be mixed, each in offset order).
    results
        Fill :attr:`Outcome.results` with the engine's per-snapshot results; ``False``
        leaves them empty (the documents, metrics and state are the same either way).
    pages
        Write the incident pages of the batch's snapshots here (see the module docstring;
        the outcomes then carry their results whatever ``results`` says).

    Raises
    ------
    ProcessingError
        Only when the error policy says to stop (never with the default policy).
    """
    with _cyclic_gc_paused():
        decoded = decode_rows(
            [r.value for r in records],
            known=pipeline.known,
            now=pipeline.clock(),
            max_skew=pipeline.max_skew,
        )
        outcomes: list[Outcome | None] = [None] * len(records)
        counted = [False] * len(records)  # taken by process_one, which counts its own record
        blocks = _align(pipeline, records, decoded, outcomes, counted)
        results = results or pages is not None
        for graph, block in blocks.items():
            _run(pipeline, graph, block, results, records)
        done = _finish(pipeline, blocks, outcomes, counted)
        del decoded, blocks  # freed here, by reference counting, before the collector is back
    if pages is not None:
        for outcome in done:
            write_pages(pages, outcome)
    return done


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one batch (if it was on).

    A batch holds a few container objects per message (rows, pending messages) for the length
    of the batch; long enough that the collector promotes them and then runs full collections
    of the whole heap (about 0.1 s each for the in-process benchmark, a third of the single
    form's time). They form no cycles and are freed by reference counting when the batch
    ends, so the collector has nothing to find in them: it runs again after the batch, as
    before, for anything else.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def write_pages(pages: ReportWriter, outcome: Outcome) -> None:
    """The pages of an outcome's snapshots; a page that cannot be written is logged."""
    for result in outcome.results:
        try:
            pages.observe(result)
        except (OSError, ValueError) as exc:
            log.warning("incident page not written to %s: %s", pages.out, exc)


def _special(pipeline: Pipeline, graph: str) -> bool:
    """True for graphs whose messages take the record-by-record path."""
    spec = pipeline.specs[graph]
    if spec.accept_unknown or spec.grow_from_spans or getattr(spec, "graph_free", False):
        return True
    state = pipeline.state(graph)
    return state is not None and not isinstance(state.engine, Engine)


class _Run:
    """A graph's rows waiting in a batch to be placed at once (:meth:`Aligner.add_rows`):
    each with its message's index and record, and the aligner and block they go to."""

    __slots__ = ("aligner", "block", "items")

    def __init__(self, aligner: Aligner, block: _Block) -> None:
        self.aligner = aligner
        self.block = block
        self.items: list[tuple[int, InputRecord, Row]] = []


def _align(
    pipeline: Pipeline,
    records: Sequence[InputRecord],
    decoded: list[Lane],
    outcomes: list[Outcome | None],
    counted: list[bool],
) -> dict[str, _Block]:
    """Stage 2: every message's values to its graph's aligner, in each graph's message order.

    The rows of the fast decoder (:class:`~stream_rca.io.fastdecode.Row`) of a graph wait
    in its run and are placed at once (:meth:`~stream_rca.io.aligner.Aligner.add_rows`, the
    statuses and snapshots of :meth:`~stream_rca.io.aligner.Aligner.add_row` on each); a
    graph's run is placed before anything else touches its state (its detailed decoder's
    samples, which go to :meth:`~stream_rca.io.aligner.Aligner.add_many`; a new lane), every
    run before a record-by-record message or an error, and all of them at the end. Graphs
    are independent, so each sees its own messages in order. The state of a graph is looked
    up again only when its partition changes or after anything that may have changed it.
    """
    blocks: dict[str, _Block] = {}
    replayed: dict[str, Outcome] = {}  # graph -> its replayed outcome (frozen: shared)
    special: dict[str, bool] = {}
    lanes: dict[str, _Lane] = {}  # graph -> where its last message went
    runs: dict[str, _Run] = {}  # graph -> its rows not placed yet
    quarantined = pipeline._quarantined

    def place_all() -> None:
        for graph in list(runs):
            _place(pipeline, graph, runs.pop(graph), outcomes)
        lanes.clear()  # a placement may have failed and quarantined a graph

    for index, (r, item) in enumerate(zip(records, decoded, strict=True)):
        row: Row | None = None
        samples: list[Sample] | None = None
        if type(item) is Row:
            row = item
            graph = row.graph
        elif isinstance(item, DecodeError):
            if item.reason == "unknown_node":  # extra series, grown graphs: their path
                place_all()
                outcomes[index] = pipeline.process_one(
                    r.value, partition=r.partition, offset=r.offset, topic=r.topic, key=r.key
                )
                counted[index] = True
                continue
            out = pipeline._dead_letter(_message(r), item.reason, item.message)
            outcomes[index] = Outcome(reason=item.reason, outputs=(out,))
            continue
        else:
            samples = cast(list[Sample], item)
            if not samples:  # an empty batch event: valid, nothing to do
                outcomes[index] = _EMPTY
                continue
            graph = samples[0].graph
        lane = lanes.get(graph)
        if lane is not None and lane.partition == r.partition:  # not quarantined, not special
            state, aligner, block = lane.state, lane.aligner, lane.block
            offset = r.offset
            if offset is not None and offset <= lane.upto:
                outcomes[index] = replayed.get(graph) or replayed.setdefault(
                    graph, Outcome(graph=graph, replayed=True)
                )
                continue
            if block is None:
                known = blocks.get(graph)
                block = lane.block = blocks[graph] = _Block() if known is None else known
        else:
            waiting = runs.pop(graph, None)
            if waiting is not None:  # its rows first: the lane may change its state
                _place(pipeline, graph, waiting, outcomes)
            why = quarantined.get(graph)
            if why is not None:
                lanes.pop(graph, None)
                outcomes[index] = _quarantined(pipeline, r, graph, why)
                continue
            own = special.get(graph)
            if own is None:
                own = special[graph] = _special(pipeline, graph)
            if own:
                if samples is None:
                    assert row is not None
                    samples = row.samples()
                outcomes[index] = pipeline._route(samples, _message(r))
                continue
            try:
                state = pipeline._acquire(graph, r.partition)
                aligner = state.aligner
            except Exception as exc:  # a state that cannot load
                place_all()
                outcomes[index] = pipeline._failed(exc, graph, _message(r), [])
                continue
            if r.offset is not None and state.applied(r.partition, r.offset):
                outcomes[index] = replayed.get(graph) or replayed.setdefault(
                    graph, Outcome(graph=graph, replayed=True)
                )
                lanes[graph] = _Lane(r.partition, state, aligner, None)
                continue
            known = blocks.get(graph)
            block = blocks[graph] = _Block() if known is None else known
            lanes[graph] = _Lane(r.partition, state, aligner, block)
        if row is not None:
            run = runs.get(graph)
            if run is None:
                run = runs[graph] = _Run(aligner, block)
            run.items.append((index, r, row))
            continue
        waiting = runs.pop(graph, None)
        if waiting is not None:  # the graph's rows before its samples
            _place(pipeline, graph, waiting, outcomes)
            if graph in quarantined:
                lanes.pop(graph, None)
                outcomes[index] = _quarantined(pipeline, r, graph, quarantined[graph])
                continue
        assert samples is not None
        try:
            made = aligner.add_many(samples)
        except Exception as exc:  # a bug in the aligner
            place_all()
            outcomes[index] = pipeline._failed(exc, graph, _message(r), [])
            continue
        statuses = tuple([res.status for res in made])
        snapshots: tuple[Snapshot, ...] = ()
        for res in made:
            if res.snapshots:
                snapshots += res.snapshots
        late = aligner.watermark if _LATE in statuses else None
        p = _Pending(index, r, graph, statuses)
        _aligned(pipeline, block, p, snapshots, aligner, samples[0].ts, late)
    place_all()
    return blocks


def _place(pipeline: Pipeline, graph: str, run: _Run, outcomes: list[Outcome | None]) -> None:
    """Place a graph's waiting rows at once and enter each message in the graph's block."""
    items, block, aligner = run.items, run.block, run.aligner
    try:
        statuses, made, late = aligner.add_rows(
            [row.ts for _, _, row in items], [row.values for _, _, row in items]
        )
    except Exception as exc:  # a bug in the aligner: each message charged, in order
        for index, r, _ in items:
            why = pipeline._quarantined.get(graph)
            outcomes[index] = (
                _quarantined(pipeline, r, graph, why)
                if why is not None
                else pipeline._failed(exc, graph, _message(r), [])
            )
        return
    members, offsets, used = block.members, block.offsets, 0
    for j, (index, r, row) in enumerate(items):
        got = statuses[j]
        snapshots = made.get(j)
        if snapshots is None and got == _JUST_ACCEPTED:  # most messages: no object of its own
            members.append(index)
            if r.offset is not None:
                offsets[r.partition] = r.offset
            used += 1
            continue
        p = _Pending(index, r, graph, got)
        _aligned(pipeline, block, p, snapshots or (), aligner, row.ts, late.get(j))
    block.used += used


def _aligned(
    pipeline: Pipeline,
    block: _Block,
    p: _Pending,
    snapshots: tuple[Snapshot, ...],
    aligner: Aligner,
    ts: float,
    watermark: float | None,
) -> None:
    """Enter an aligned message in its graph's block: its snapshots, counts, late samples.

    ``ts`` is the message's time and ``watermark`` the aligner's after it (a late dead letter
    names both).
    """
    if snapshots:
        block.snapshots.extend(snapshots)
        block.owners.extend([p] * len(snapshots))
        p.snapshots = len(snapshots)
    block.members.append(p)
    r = p.record
    if r.offset is not None:
        block.offsets[r.partition] = r.offset
    statuses = p.statuses
    count = statuses.count
    n = len(statuses)
    accepted = count(_ACCEPTED)
    if accepted == n:  # the common case
        block.used += n
        return
    block.used += accepted + count(_REVISED)
    block.duplicates += count(_DUPLICATE)
    late = count(_LATE)
    if late:
        block.late += late
        start, end = aligner.window_of(ts)
        text = (
            f"{late} of {n} samples fall in window [{start}, {end}) of graph "
            f"{p.graph!r}, already emitted (watermark {watermark}, allowed lateness "
            f"{aligner.allowed_lateness} s)"
        )
        p.late = pipeline._dead_letter(_message(r), "late_event", text)


def _quarantined(pipeline: Pipeline, r: InputRecord, graph: str, why: str) -> Outcome:
    text = f"graph {graph!r} is quarantined after repeated processing errors ({why})"
    out = pipeline._dead_letter(_message(r), "graph_quarantined", text)
    return Outcome(graph=graph, reason="graph_quarantined", outputs=(out,))


def _run(
    pipeline: Pipeline,
    graph: str,
    block: _Block,
    results: bool,
    records: Sequence[InputRecord],
) -> None:
    """Stages 3 and 4 for one graph: its snapshots in one engine block, then the documents."""
    metrics = pipeline.metrics
    if metrics is not None:  # what the aligner made of the samples, once per graph
        if block.used:
            metrics.event(graph, block.used)
        if block.late:
            metrics.late(graph, block.late)
        if block.duplicates:
            metrics.duplicate(graph, block.duplicates)
    state = pipeline.state(graph)
    if state is None:  # quarantined while aligning (its state was dropped)
        return
    state.events += block.used
    if block.snapshots:
        engine = state.engine
        t0 = time.perf_counter()
        try:
            if not isinstance(engine, Engine):  # _special sends those graphs one by one
                raise TypeError(f"graph {graph!r}: no block path for {type(engine).__name__}")
            columns = engine.process_many_columns(block.snapshots)
        except Exception as exc:
            _block_failed(pipeline, graph, block, exc, records)
            return
        seconds = time.perf_counter() - t0
        pipeline._failures.pop(graph, None)  # the engine ran: no longer failing in a row
        if metrics is not None:
            metrics.observe_block(columns, seconds)
        _documents(pipeline, graph, block, columns, results)
    state.offsets.update(block.offsets)
    pipeline._dirty.add(graph)


def _documents(
    pipeline: Pipeline, graph: str, block: _Block, columns: BlockResult, results: bool
) -> None:
    """Each snapshot's documents (and result) under the message that completed it."""
    gkey = graph.encode()
    scores = score_documents(columns) if pipeline.publish_scores else None
    changes = pipeline.changes
    steps: dict[int, Any] = {}
    if results:
        steps = dict(enumerate(columns.steps()))
    answers: dict[int, list[Output]] = {}
    if changes is not None:  # the reference mechanisms learn the block; change answers
        # the open incidents are all the change service reads of a result
        rows = columns.values if not any(columns.invalid) else None  # inf stays inf there
        answers = changes.observe_block(
            graph, block.snapshots, columns.open_incidents, rows, columns.nodes
        )
    for i, owner in enumerate(block.owners):
        atts = columns.attributions.get(i)
        if atts is None and scores is None and not results and changes is None:
            continue
        outputs = owner.outputs
        if outputs is None:
            outputs = owner.outputs = []
        if atts is not None:
            for att in atts:
                outputs.append(Output("attributions", gkey, json_bytes(att.to_dict())))
        answer = answers.get(i)
        if answer is not None:
            outputs.extend(answer)
        if scores is not None:
            outputs.append(Output("scores", gkey, scores[i]))
    if results:
        per: dict[int, list[Any]] = {}
        for i, owner in enumerate(block.owners):
            per.setdefault(id(owner), []).append(steps[i])
        for p in block.members:
            if not isinstance(p, int):  # a plain message's outcome has no results
                p.final = _outcome(p, tuple(per.get(id(p), ())))


def score_documents(columns: BlockResult) -> list[bytes]:
    """The ``rca.scores`` document of every snapshot of a block, encoded, from its columns.

    The same documents (field for field, in the same order) as
    :func:`~stream_rca.streaming.records.scores_document` gives for each snapshot's result,
    without building the results: the scores of a whole block are read out of its arrays at
    once and encoded by msgspec (NaN and infinities as ``null``, as
    :func:`~stream_rca.streaming.records.json_bytes` writes them).

    Most snapshots are plain: every node and target scored, none missing or invalid, no
    incident open or changing. Their documents differ only in their numbers, so msgspec
    encodes the numbers of all of them in one call, and each document is its graph's
    template (:func:`_template`) filled with its own; the bytes are those of the other
    snapshots' path (:func:`_document`, one msgspec struct each), which a test holds.
    """
    nodes, targets = columns.nodes, columns.targets
    n = len(columns)
    if not n:
        return []
    node_rows = columns.node_scores.tolist()
    scored = ~np.isnan(columns.node_scores)
    full = cast(BoolArray, scored.all(axis=1))
    target_rows = columns.target_scores.tolist()
    t_scored = ~np.isnan(columns.target_scores)
    plain: BoolArray = full & t_scored.all(axis=1) & columns.present.all(axis=1)
    for i in (*columns.events, *columns.open_incidents):
        plain[i] = False
    invalid = columns.invalid
    flags = cast(list[bool], plain.tolist())
    whole = cast(list[bool], full.tolist())
    out: list[bytes] = []
    numbers: list[list[Any]] = []  # of the plain documents: what fills their template
    ts, ends, warm, first = columns.ts, columns.ends, columns.warm.tolist(), columns.first
    for i in range(n):
        if flags[i] and not invalid[i]:
            numbers.append([ts[i], ends[i], warm[i], first + i + 1, *node_rows[i], *target_rows[i]])
            out.append(b"")
        else:
            row = node_rows[i]
            scores = (
                dict(zip(nodes, row, strict=True))
                if whole[i]
                else {nodes[j]: row[j] for j in np.flatnonzero(scored[i]).tolist()}
            )
            trow = target_rows[i]
            target_scores = {targets[k]: trow[k] for k in np.flatnonzero(t_scored[i]).tolist()}
            out.append(_document(columns, i, scores, target_scores))
    if numbers:
        template = _template(columns.graph, nodes, targets)
        encoded = _ENCODER.encode(numbers)
        filled = iter([template % tuple(row.split(b",")) for row in encoded[2:-2].split(b"],[")])
        out = [doc or next(filled) for doc in out]
    return out


@functools.lru_cache(maxsize=256)
def _template(graph: str, nodes: tuple[str, ...], targets: tuple[str, ...]) -> bytes:
    """A plain ``rca.scores`` document of ``graph`` with ``%b`` for each number, in the order
    start, end, warm, snapshots, the nodes' scores, the targets' scores. The names are
    encoded by msgspec (escaped as in the documents it encodes) and their ``%`` doubled."""

    def name(text: str) -> bytes:
        return _ENCODER.encode(text).replace(b"%", b"%%")

    scores = b",".join(name(node) + b":%b" for node in nodes)
    target_scores = b",".join(name(target) + b":%b" for target in targets)
    return (
        b'{"schema":' + name(SCORES_SCHEMA) + b',"graph":' + name(graph)
        + b',"window":{"start":%b,"end":%b},"warm":%b,"snapshots":%b,"scores":{'
        + scores + b'},"target_scores":{' + target_scores
        + b'},"open_incidents":{},"events":[],"missing":[],"invalid":[]}'
    )  # fmt: skip


def _document(
    columns: BlockResult, i: int, scores: dict[str, float], target_scores: dict[str, float]
) -> bytes:
    """The ``rca.scores`` document of snapshot ``i`` of a block, one msgspec struct."""
    nodes, bad = columns.nodes, columns.invalid[i]
    present = columns.present[i]
    missing = [nodes[j] for j in np.flatnonzero(~present).tolist() if nodes[j] not in bad]
    happened = columns.events.get(i)
    doc = _ScoresDoc(
        SCORES_SCHEMA,
        columns.graph,
        _Window(columns.ts[i], columns.ends[i]),
        bool(columns.warm[i]),
        columns.first + i + 1,
        scores,
        target_scores,
        _plain_dict(columns.open_incidents.get(i)),
        []
        if happened is None
        else [
            {
                "kind": e.kind,
                "incident_id": e.incident_id,
                "target": e.target,
                "ts": e.ts,
                "score": e.score,
            }
            for e in happened
        ],
        missing,
        list(bad),
    )
    return _ENCODER.encode(doc)


class _Window(msgspec.Struct):
    start: float
    end: float | None


class _ScoresDoc(msgspec.Struct):
    """A ``rca.scores`` document's fields, in the order of
    :func:`~stream_rca.streaming.records.scores_document`'s (msgspec encodes them so)."""

    schema: str
    graph: str
    window: _Window
    warm: bool
    snapshots: int
    scores: dict[str, float]
    target_scores: dict[str, float]
    open_incidents: dict[str, str]
    events: list[dict[str, Any]]
    missing: list[str]
    invalid: list[str]


_NO_INCIDENTS: dict[str, str] = {}


def _plain_dict(opened: Mapping[str, str] | None) -> dict[str, str]:
    if opened is None:
        return _NO_INCIDENTS  # shared: encoded, never changed
    return opened if type(opened) is dict else dict(opened)


def _block_failed(
    pipeline: Pipeline,
    graph: str,
    block: _Block,
    exc: Exception,
    records: Sequence[InputRecord],
) -> None:
    """Charge an engine error to the messages that completed a snapshot of the block."""
    state = pipeline.state(graph)
    members = block.members
    for i, member in enumerate(members):
        if isinstance(member, int):  # a plain message: an object of its own after all
            p = _Pending(member, records[member], graph, _JUST_ACCEPTED)
            members[i] = p
        else:
            p = member
        r = p.record
        if graph in pipeline._quarantined:
            p.final = _quarantined(pipeline, r, graph, pipeline._quarantined[graph])
        elif p.snapshots:
            p.final = pipeline._failed(exc, graph, _message(r), [])
        elif state is not None and r.offset is not None:
            state.offsets[r.partition] = r.offset
    pipeline._dirty.add(graph)


def _outcome(p: _Pending, results: tuple[Any, ...] = ()) -> Outcome:
    outputs = p.outputs or []
    if p.late is not None:
        outputs = [*outputs, p.late]
    return Outcome(
        graph=p.graph,
        reason="late_event" if p.late is not None else None,
        statuses=p.statuses,
        results=results,
        outputs=tuple(outputs),
    )


def _finish(
    pipeline: Pipeline,
    blocks: dict[str, _Block],
    outcomes: list[Outcome | None],
    counted: list[bool],
) -> list[Outcome]:
    """Each message's outcome; the records counter updated once per batch."""
    plain: dict[tuple[str, tuple[AlignStatus, ...]], Outcome] = {}
    for graph, block in blocks.items():
        just = Outcome(graph=graph, statuses=_JUST_ACCEPTED)  # the plain messages' outcome
        for p in block.members:
            if isinstance(p, int):
                outcomes[p] = just
                continue
            if p.final is None:
                if p.outputs is None and p.late is None:  # the common case: share one
                    key = (p.graph, p.statuses)
                    p.final = plain.get(key) or plain.setdefault(key, _outcome(p))
                else:
                    p.final = _outcome(p)
            outcomes[p.index] = p.final
    kinds: dict[str, int] = {}
    last: object = _finish  # not an outcome
    k = ""
    for o, c in zip(outcomes, counted, strict=True):
        if o is not last:  # outcomes are mostly shared: each is checked and its kind found once
            assert o is not None  # every message got one
            last, k = o, _kind(o)
        if not c:
            kinds[k] = kinds.get(k, 0) + 1
    done = cast(list[Outcome], outcomes)
    if pipeline.metrics is not None:
        for k, n in kinds.items():
            pipeline.metrics.record(k, n)
    return done

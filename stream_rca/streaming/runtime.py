"""The moving parts of a worker around its pipeline: publishing, checkpoints, offsets.

:class:`Runtime` processes each input event under a lock and publishes its records.
:meth:`Runtime.checkpoint` flushes the results, writes the state of every changed graph to the
changelog, flushes again, and only then commits the input offsets of the messages processed so
far. So a committed offset is always covered by a checkpoint, and a checkpoint never sees half
of a message.

**Acknowledged before committed.** Every record a message produces (attributions, scores, a
dead letter) is sent with its acknowledgement kept beside the message's partition. At a
checkpoint the runtime waits for those acknowledgements first; a record the broker refused is
sent again (a dead letter that is still too large for its topic, without its payload); and
while a record of a partition is not acknowledged, that partition's offsets are not
committed and its graphs are not checkpointed (so a restart would replay those messages and
produce their records again). The same holds for the checkpoints themselves: an offset is
committed only once the checkpoint that covers it is acknowledged.

Two faust behaviours are worked around here:

- faust does not commit the input topic itself (it is declared with ``acks=False``): its
  commits follow acknowledgements, and it acknowledges messages that it skips during a
  rebalance (fetched under an older group generation or while its flow control is paused),
  which would let a commit pass messages that no checkpoint holds;
- for the same reason a message can be skipped for good at a rebalance: the runtime knows the
  next offset of every input partition it owns (from the committed offset when the partition is
  assigned), and when a message arrives past it, it reads the missing messages again
  (:meth:`~stream_rca.streaming.brokers.Broker.fetch`) and processes them first; and when a
  partition stays quiet although the broker holds more of it (faust dropped its tail),
  :meth:`Runtime.catch_up` reads the rest directly. Messages before the next offset
  (delivered again) are skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP, EventT

from stream_rca.io.deadletter import shrink_dead_letter
from stream_rca.report import ReportWriter
from stream_rca.streaming.batch import InputRecord, process_batch
from stream_rca.streaming.brokers import Ack, Broker, failed_ack
from stream_rca.streaming.errors import describe_error
from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.records import Outcome, Output
from stream_rca.streaming.rereads import Rereads
from stream_rca.streaming.state import CheckpointError

__all__ = ["ACK_TIMEOUT", "InputMessageAt", "Runtime"]

log = logging.getLogger("stream_rca.streaming")

ACK_TIMEOUT = 30.0
"""Seconds a checkpoint waits, in all, for the acknowledgements of the records sent before it."""
InputMessageAt = tuple[int, int, bytes | None, bytes | None]
"""``(partition, offset, key, value)`` of one input message read directly."""
_LOGGED = 5  # records not acknowledged that one checkpoint logs one by one


@dataclass(slots=True)
class _Sent:
    """A record sent for the input message at ``offset`` and its acknowledgement."""

    offset: int
    output: Output
    ack: Ack
    attempts: int = 1


class Runtime:
    """The worker's moving parts around its :class:`Pipeline`: publishing, checkpoints, offsets.

    One per app (see :func:`~stream_rca.streaming.app.runtime_of`). Every method that touches
    the pipeline holds :attr:`lock`, so a checkpoint never sees half of a message's effects.
    """

    def __init__(
        self,
        app: faust.App,
        pipeline: Pipeline,
        broker: Broker,
        *,
        table: Any,
        input_topic: str,
    ) -> None:
        self.app = app
        self.pipeline = pipeline
        self.broker = broker
        self.table = table
        self.input_topic = input_topic
        self.lock = asyncio.Lock()
        self.positions: dict[int, int] = {}
        """Input partition to the offset of the next message to process."""
        self.uncommitted: set[int] = set()
        self.arrived: dict[int, float] = {}
        """Input partition to when (monotonic) its latest message arrived."""
        self.checkpoints = 0
        self.sent: dict[int, deque[_Sent]] = {}
        """Input partition to the records sent for its messages and not yet acknowledged."""
        self.ack_timeout = ACK_TIMEOUT
        self.highwater: Callable[[int], int | None] | None = None
        """The end offset of an input partition, when a direct reader knows it."""
        self.owned: set[int] = set()
        """Input partitions of the latest assignment."""
        self.assignments = 0
        """How many assignments this worker got (a direct reader seeks again at each)."""
        self.pages: ReportWriter | None = None
        """Where the batches read directly write their incident pages (``--report-dir``)."""

    def load(self, graph: str) -> bytes | None:
        """The stored checkpoint of ``graph`` in the table, if any."""
        value = self.table.get(graph)
        return value if isinstance(value, bytes) else None

    async def handle(self, event: EventT[bytes]) -> Outcome:
        """Process one input event (and any skipped before it) and publish the records."""
        message = event.message
        p, offset = message.partition, message.offset
        async with self.lock:
            self.arrived[p] = time.monotonic()
            expected = self.positions.get(p)
            if expected is not None and offset < expected:
                return Outcome(replayed=True)  # delivered again: already processed
            if expected is not None and offset > expected:
                await self._fill(p, expected, offset, "were not delivered")
            graph = Rereads(self.pipeline).graph(p, offset, message.key, message.value)
            if graph is not None and expected is not None:  # held by its graph's state
                self._skipped({p: offset + 1}, 1)
                return Outcome(graph=graph, replayed=True)
            return await self._process(message.value, p, offset, message.topic, message.key)

    async def handle_batch(self, messages: Sequence[InputMessageAt]) -> list[Outcome]:
        """Process a batch of input messages read directly (several partitions, each in
        offset order) and publish their records.

        Messages before a partition's next offset (read again) are skipped; a gap before a
        message is read again first, as in :meth:`handle`. The rest go through the pipeline
        in one :func:`~stream_rca.streaming.batch.process_batch`.
        """
        async with self.lock:
            now = time.monotonic()
            records: list[InputRecord] = []
            append, topic, positions = records.append, self.input_topic, self.positions
            held = Rereads(self.pipeline)  # messages a state certainly holds: skipped unread
            skipped: dict[int, int] = {}  # partition -> its next offset, where any was
            n_skipped = 0
            current, expected = -1, None  # the partition of the message before, its next offset
            mark = -1  # the partition's highest offset a live state holds
            for p, offset, key, value in messages:
                if p != current:
                    if current >= 0 and expected is not None:
                        positions[current] = expected  # provisional: set again once processed
                    current, expected = p, positions.get(p)
                    mark = held.mark(p)
                    if expected is not None:
                        self.arrived[p] = now
                if expected is None or offset < expected:  # not (or no longer) this worker's
                    continue  # partition; or read again
                if offset > expected:
                    positions[p] = expected
                    await self._process_records(records)
                    records = []
                    append = records.append
                    await self._fill(p, expected, offset, "were not delivered")
                expected = offset + 1
                if offset <= mark and held.graph(p, offset, key, value) is not None:
                    skipped[p] = expected
                    n_skipped += 1
                    continue
                append(InputRecord(value, p, offset, topic, key))
            if current >= 0 and expected is not None:
                positions[current] = expected
            outcomes = await self._process_records(records)
            if skipped:
                self._skipped(skipped, n_skipped)
            return outcomes

    def _skipped(self, ends: dict[int, int], n: int) -> None:
        """Move partitions past the messages skipped unread (:class:`Rereads`); count them."""
        for p, end in ends.items():
            if p in self.positions:
                if self.positions[p] < end:
                    self.positions[p] = end
                self.uncommitted.add(p)
        if self.pipeline.metrics is not None:
            self.pipeline.metrics.record("replayed", n)

    async def _process_records(self, records: list[InputRecord]) -> list[Outcome]:
        if not records:
            return []
        if self.pipeline.growing:  # a restored grown graph: its nodes known before decoding
            for record in records:
                self.pipeline.preload(record.key, record.partition)
        outcomes = process_batch(self.pipeline, records, results=False, pages=self.pages)
        last: dict[int, int] = {}
        sending: list[tuple[int, int, Output]] = []  # (partition, offset, record)
        for record, outcome in zip(records, outcomes, strict=True):
            offset = record.offset or 0
            if outcome.outputs:
                sending += [(record.partition, offset, output) for output in outcome.outputs]
            last[record.partition] = offset
        if sending:
            await self._publish_many(sending)
        for partition, offset in last.items():
            self.positions[partition] = offset + 1
            self.uncommitted.add(partition)
        return outcomes

    async def catch_up(self, stall: float = 5.0) -> int:
        """Read directly what faust did not deliver to a partition that went quiet.

        For every owned input partition that received nothing for ``stall`` seconds, the
        messages between the next offset to process and the end of the partition are read
        again and processed. Returns how many were.
        """
        async with self.lock:
            now = time.monotonic()
            quiet = [p for p in self.positions if now - self.arrived.get(p, now) >= stall]
            if not quiet:
                return 0
            ends = await self.broker.end_offsets(quiet)
            done = 0
            for p in quiet:
                start, end = self.positions[p], ends.get(p)
                if end is not None and end > start:
                    why = f"were not delivered in {stall:.0f} s"
                    done += await self._fill(p, start, end, why)
                self.arrived[p] = time.monotonic()
            return done

    async def _fill(self, partition: int, start: int, stop: int, why: str) -> int:
        missing = await self.broker.fetch(partition, start, stop)
        log.warning(
            "input partition %d: offsets %d..%d %s; read %d of them again",
            partition,
            start,
            stop - 1,
            why,
            len(missing),
        )
        for offset, key, value in missing:
            await self._process(value, partition, offset, self.input_topic, key)
        return len(missing)

    async def _process(
        self, value: bytes | None, partition: int, offset: int, topic: str, key: bytes | None
    ) -> Outcome:
        outcome = self.pipeline.process_one(
            value, partition=partition, offset=offset, topic=topic, key=key
        )
        return await self._published(partition, offset, outcome)

    async def _published(self, partition: int, offset: int, outcome: Outcome) -> Outcome:
        """Send the records of one processed message; move its partition past it."""
        if outcome.outputs:
            sent = self.sent.setdefault(partition, deque())
            while sent and _acked(sent[0].ack):  # keep the queue short between checkpoints
                sent.popleft()
            for output in outcome.outputs:
                sent.append(_Sent(offset, output, await self._send(output)))
        self.positions[partition] = offset + 1
        self.uncommitted.add(partition)
        return outcome

    async def _publish_many(self, sending: list[tuple[int, int, Output]]) -> None:
        """Send the records of a batch's messages at once; keep each one's ack by partition."""
        for partition in {p for p, _, _ in sending}:
            sent = self.sent.get(partition)
            while sent and _acked(sent[0].ack):  # keep the queues short between checkpoints
                sent.popleft()
        try:
            acks = await self.broker.send_many([output for _, _, output in sending])
        except Exception as exc:  # nothing known to be sent: all of them again at settling
            acks = [failed_ack(exc)] * len(sending)
        for (partition, offset, output), ack in zip(sending, acks, strict=True):
            sent = self.sent.get(partition)
            if sent is None:
                sent = self.sent[partition] = deque()
            sent.append(_Sent(offset, output, ack))

    async def checkpoint(self, why: str = "timer", *, commit: bool = True) -> int:
        """Write the state of every changed graph, then commit the offsets it covers.

        Order: results flushed and acknowledged, checkpoints sent and acknowledged, offsets
        committed. A partition with a record not acknowledged is left out (its graphs stay
        dirty, its offsets uncommitted) until a later checkpoint gets the acknowledgement.

        Returns
        -------
        int
            The number of graphs checkpointed.
        """
        async with self.lock:
            started = time.perf_counter()
            await self.broker.flush()  # the records of the messages processed so far first
            held = await self._settle()
            offsets = {p: self.positions[p] for p in sorted(self.uncommitted - held)}
            self.uncommitted -= set(offsets)
            dirty = [g for g in self.pipeline.dirty if self.pipeline.partition_of(g) not in held]
            blobs = self._blobs(dirty, offsets)
            if blobs:
                acks = []
                for graph, partition, blob in blobs:
                    out = Output("checkpoint", graph.encode(), blob, partition=partition)
                    acks.append((graph, partition, await self._send(out)))
                await self.broker.flush()
                deadline, logged = time.monotonic() + self.ack_timeout, [0]
                for graph, partition, ack in acks:
                    failure = await self._acknowledged(ack, deadline)
                    if failure is not None:
                        self._unacknowledged("checkpoint", f"graph {graph!r}", failure, logged)
                        self.pipeline.mark_dirty(graph)
                        if partition is not None and offsets.pop(partition, None) is not None:
                            self.uncommitted.add(partition)
                blobs = [b for b in blobs if b[0] not in self.pipeline.dirty]
                for graph, _, blob in blobs:
                    self._remember(graph, blob)
                self.checkpoints += 1
            if offsets and commit:
                await self.broker.commit(offsets)
            elif offsets:
                self.uncommitted.update(offsets)
            if blobs:
                log.info(
                    "checkpoint (%s): %d graphs, %d bytes, offsets %s, %.0f ms; digests %s",
                    why,
                    len(blobs),
                    sum(len(b) for _, _, b in blobs),
                    offsets,
                    1000 * (time.perf_counter() - started),
                    {g: hashlib.sha1(b).hexdigest()[:10] for g, _, b in blobs},
                )
            return len(blobs)

    def _blobs(self, graphs: list[str], offsets: dict[int, int]) -> list[tuple[str, Any, bytes]]:
        """The checkpoints of ``graphs``; a graph that cannot be written holds its partition."""
        blobs = []
        for graph in graphs:
            partition = self.pipeline.partition_of(graph)
            try:
                blobs.append((graph, partition, self.pipeline.checkpoint(graph)))
            except Exception as exc:  # a CheckpointError (too large, unavailable) or a bug
                reason = exc.reason if isinstance(exc, CheckpointError) else "error"
                if self.pipeline.metrics is not None:
                    self.pipeline.metrics.checkpoint_failed(graph, reason)
                log.error(
                    "graph %r: no checkpoint (%s); the offsets of input partition %s are not "
                    "committed",
                    graph,
                    describe_error(exc),
                    partition,
                )
                if partition is not None and offsets.pop(partition, None) is not None:
                    self.uncommitted.add(partition)
        return blobs

    async def _send(self, output: Output) -> Ack:
        """Send one record; a send that raises at once gives an ack that raises the same."""
        try:
            return await self.broker.send(output)
        except Exception as exc:
            return failed_ack(exc)

    async def _acknowledged(self, ack: Ack, deadline: float) -> str | None:
        """``None`` once ``ack`` is acknowledged (by ``deadline``, monotonic), else why not."""
        try:
            if isinstance(ack, asyncio.Future) and ack.done():
                ack.result()  # settled already: no waiting (and no event loop needed)
            else:
                await asyncio.wait_for(asyncio.shield(ack), max(deadline - time.monotonic(), 0))
        except Exception as exc:
            return "no acknowledgement in time" if isinstance(exc, TimeoutError) else _text(exc)
        return None

    def _unacknowledged(self, kind: str, what: object, why: str, logged: list[int]) -> None:
        """Count a record not acknowledged; log the first few of a checkpoint, one line each."""
        if self.pipeline.metrics is not None:
            self.pipeline.metrics.unacknowledged(kind)
        logged[0] += 1
        if logged[0] <= _LOGGED:
            log.error("%s record for %s not acknowledged: %s", kind, what, why)
        elif logged[0] == _LOGGED + 1:
            log.error("more records not acknowledged; see stream_rca_unacknowledged_records_total")

    async def _settle(self) -> set[int]:
        """Wait (:attr:`ack_timeout` in all) for the acks of every record sent so far; resend
        the refused ones once.

        Returns the input partitions that still have a record not acknowledged.
        """
        deadline, logged = time.monotonic() + self.ack_timeout, [0]
        retry: list[tuple[int, _Sent]] = []
        for partition, sent in self.sent.items():
            for item in sent:
                why = await self._acknowledged(item.ack, deadline)
                if why is not None:
                    where = f"input {self.input_topic}[{partition}]@{item.offset}"
                    self._unacknowledged(item.output.kind, where, why, logged)
                    retry.append((partition, item))
            sent.clear()
        if not retry:
            return set()
        for _, item in retry:
            item.output = _smaller(item.output)
            item.ack = await self._send(item.output)
            item.attempts += 1
        await self.broker.flush()
        deadline = time.monotonic() + self.ack_timeout
        held: set[int] = set()
        for partition, item in retry:
            why = await self._acknowledged(item.ack, deadline)
            if why is not None:
                where = f"input {self.input_topic}[{partition}]@{item.offset}"
                self._unacknowledged(item.output.kind, where, f"{why} (sent again)", logged)
                self.sent.setdefault(partition, deque()).append(item)
                held.add(partition)
        if held:
            log.error(
                "input partitions %s: records not acknowledged after a retry; their offsets "
                "are not committed and their graphs not checkpointed until they are",
                sorted(held),
            )
        return held

    def _remember(self, graph: str, blob: bytes) -> None:
        try:
            self.table.data[graph] = blob
        except Exception:  # the local copy is a cache; the changelog is the truth
            log.debug("could not cache the checkpoint of %r locally", graph, exc_info=True)

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Before a rebalance: checkpoint everything, so the next owner resumes from it."""
        if any(tp.topic == self.input_topic for tp in revoked):
            await self.checkpoint("rebalance", commit=False)

    async def on_assigned(self, assigned: set[TP]) -> None:
        """After a rebalance: forget the graphs of input partitions now owned elsewhere."""
        mine = {tp.partition for tp in assigned if tp.topic == self.input_topic}
        log.info("assigned input partitions: %s", sorted(mine))
        self.owned = mine
        async with self.lock:
            new = [p for p in mine if p not in self.positions]
            try:
                starts = await self.broker.start_offsets(new)
            except Exception:  # the first message of the partition will set it
                log.warning("could not read the start offsets of %s", new, exc_info=True)
                starts = {}
            for p, start in starts.items():
                self.positions[p] = start
                self.arrived[p] = time.monotonic()
            self.assignments += 1
            if starts:
                log.info("input partitions start at %s", starts)
            gone = [g for g in self.pipeline.graphs if self.pipeline.partition_of(g) not in mine]
            if gone:
                log.info("graphs moved to another worker: %s", ", ".join(sorted(gone)))
                self.pipeline.drop(gone)
            for p in list(self.positions):
                if p not in mine:
                    del self.positions[p]
                    self.uncommitted.discard(p)
                    self.arrived.pop(p, None)
                    self.sent.pop(p, None)
                    if self.pipeline.metrics is not None:
                        self.pipeline.metrics.set_lag(self.input_topic, p, None)

    async def ensure_positions(self) -> dict[int, int]:
        """The next offset of every owned input partition (read for those without one)."""
        async with self.lock:
            missing = [p for p in self.owned if p not in self.positions]
            if missing:
                try:
                    starts = await self.broker.start_offsets(missing)
                except Exception as exc:
                    log.warning("could not read the start offsets of %s: %s", missing, exc)
                    starts = {}
                for p, start in starts.items():
                    if p in self.owned:
                        self.positions[p] = start
                        self.arrived[p] = time.monotonic()
            return {p: o for p, o in self.positions.items() if p in self.owned}

    def update_lag(self) -> None:
        """Set the consumer-lag gauge of every input partition this worker processed."""
        metrics = self.pipeline.metrics
        if metrics is None:
            return
        consumer = self.app.consumer
        for partition, position in self.positions.items():
            try:
                if self.highwater is not None:
                    high = self.highwater(partition)
                else:
                    high = consumer.highwater(TP(self.input_topic, partition))
            except Exception:
                continue
            if high is not None:
                metrics.set_lag(self.input_topic, partition, max(int(high) - position, 0))


def _acked(ack: Ack) -> bool:
    """True when ``ack`` is a future already acknowledged (done, no error)."""
    return (
        isinstance(ack, asyncio.Future)
        and ack.done()
        and not ack.cancelled()
        and ack.exception() is None
    )


def _smaller(output: Output) -> Output:
    """The record to send again after a refusal: a dead letter loses its payload."""
    if output.kind != "deadletter":
        return output
    return Output(output.kind, output.key, shrink_dead_letter(output.value), output.partition)


def _text(error: object) -> str:
    return describe_error(error) if isinstance(error, BaseException) else str(error)

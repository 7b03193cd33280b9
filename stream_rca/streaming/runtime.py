"""The moving parts of a worker around its pipeline: publishing, checkpoints, offsets.

:class:`Runtime` processes each input event under a lock, publishes its records, and holds a
reference on its Kafka message; :meth:`Runtime.checkpoint` flushes the results, writes the
state of every changed graph to the changelog, flushes again, and only then releases the held
messages, whose offsets faust may then commit. A checkpoint never sees half of a message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import faust
from faust.types import TP, EventT
from faust.types.tuples import Message

from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.records import Outcome, Output

__all__ = ["KafkaPublisher", "MemoryPublisher", "Publisher", "Runtime"]

log = logging.getLogger("stream_rca.streaming")


class Publisher(Protocol):
    """Where the agent's records go: Kafka topics in a worker, a list in tests."""

    async def send(self, output: Output) -> None:
        """Hand one record to the producer (it need not be delivered yet)."""

    async def flush(self) -> None:
        """Wait until every record sent so far is delivered."""


class MemoryPublisher:
    """A :class:`Publisher` that keeps the records in :attr:`outputs` (for tests)."""

    def __init__(self) -> None:
        self.outputs: list[Output] = []
        self.flushes = 0

    async def send(self, output: Output) -> None:
        self.outputs.append(output)

    async def flush(self) -> None:
        self.flushes += 1

    def of_kind(self, kind: str) -> list[Output]:
        """The records of one kind, in order."""
        return [o for o in self.outputs if o.kind == kind]


class KafkaPublisher:
    """A :class:`Publisher` to the worker's Kafka topics (checkpoints to the changelog)."""

    def __init__(self, app: faust.App, topics: dict[str, Any], table: Any) -> None:
        self.app = app
        self.topics = topics
        self.table = table

    async def send(self, output: Output) -> None:
        if output.kind == "checkpoint":
            topic = self.table.changelog_topic
            key: Any = output.key.decode() if output.key is not None else None
            await topic.send(key=key, value=output.value, partition=output.partition, force=True)
            return
        await self.topics[output.kind].send(key=output.key, value=output.value, force=True)

    async def flush(self) -> None:
        await self.app.producer.flush()


class Runtime:
    """The worker's moving parts around its :class:`Pipeline`: publishing, checkpoints, acks.

    One per app (see :func:`runtime_of`). Every method that touches the pipeline holds
    :attr:`lock`, so a checkpoint never sees half of a message's effects.
    """

    def __init__(
        self,
        app: faust.App,
        pipeline: Pipeline,
        publisher: Publisher,
        *,
        table: Any,
        input_topic: str,
        checkpoint_interval: float,
        max_pending: int,
    ) -> None:
        self.app = app
        self.pipeline = pipeline
        self.publisher = publisher
        self.table = table
        self.input_topic = input_topic
        self.checkpoint_interval = checkpoint_interval
        self.max_pending = max_pending
        self.lock = asyncio.Lock()
        self.pending: list[Message] = []
        self.positions: dict[int, int] = {}
        self.checkpoints = 0
        self._last = time.monotonic()

    def load(self, graph: str) -> bytes | None:
        """The stored checkpoint of ``graph`` in the table, if any."""
        value = self.table.get(graph)
        return value if isinstance(value, bytes) else None

    async def handle(self, event: EventT[bytes]) -> Outcome:
        """Process one input event and publish its records; hold its offset until a checkpoint."""
        message = event.message
        async with self.lock:
            outcome = self.pipeline.process_one(
                message.value,
                partition=message.partition,
                offset=message.offset,
                topic=message.topic,
                key=message.key,
            )
            for output in outcome.outputs:
                await self.publisher.send(output)
            message.incref()
            self.pending.append(message)
            self.positions[message.partition] = message.offset + 1
        if len(self.pending) >= self.max_pending:
            await self.checkpoint("max_pending")
        return outcome

    def due(self) -> bool:
        """True when the checkpoint interval has passed since the last checkpoint."""
        return time.monotonic() - self._last >= self.checkpoint_interval

    async def checkpoint(self, why: str = "timer") -> int:
        """Write the state of every changed graph, then release the messages it covers.

        Order: results flushed, checkpoints sent and flushed, then the held messages released
        (their offsets become committable).

        Returns
        -------
        int
            The number of graphs checkpointed.
        """
        async with self.lock:
            self._last = time.monotonic()
            dirty = self.pipeline.dirty
            held, self.pending = self.pending, []
            if not dirty and not held:
                return 0
            blobs = [(g, self.pipeline.partition_of(g), self.pipeline.checkpoint(g)) for g in dirty]
            if blobs:
                await self.publisher.flush()  # results of the checkpointed messages first
                for graph, partition, blob in blobs:
                    await self.publisher.send(
                        Output("checkpoint", graph.encode(), blob, partition=partition)
                    )
                    self._remember(graph, blob)
                await self.publisher.flush()
                self.checkpoints += 1
                log.info(
                    "checkpoint (%s): %d graphs, %d messages released, %d bytes",
                    why,
                    len(blobs),
                    len(held),
                    sum(len(b) for _, _, b in blobs),
                )
            consumer = self.app.consumer
            for message in held:
                message.ack(consumer)
            return len(blobs)

    def _remember(self, graph: str, blob: bytes) -> None:
        try:
            self.table.data[graph] = blob
        except Exception:  # the local copy is a cache; the changelog is the truth
            log.debug("could not cache the checkpoint of %r locally", graph, exc_info=True)

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Before a rebalance: checkpoint everything, so the next owner resumes from it."""
        if any(tp.topic == self.input_topic for tp in revoked):
            await self.checkpoint("rebalance")

    async def on_assigned(self, assigned: set[TP]) -> None:
        """After a rebalance: forget the graphs of input partitions now owned elsewhere."""
        mine = {tp.partition for tp in assigned if tp.topic == self.input_topic}
        log.info("assigned input partitions: %s", sorted(mine))
        async with self.lock:
            gone = [g for g in self.pipeline.graphs if self.pipeline.partition_of(g) not in mine]
            if gone:
                log.info("graphs moved to another worker: %s", ", ".join(sorted(gone)))
                self.pipeline.drop(gone)
            for p in list(self.positions):
                if p not in mine:
                    del self.positions[p]
                    if self.pipeline.metrics is not None:
                        self.pipeline.metrics.set_lag(self.input_topic, p, None)

    def update_lag(self) -> None:
        """Set the consumer-lag gauge of every input partition this worker processed."""
        metrics = self.pipeline.metrics
        if metrics is None:
            return
        consumer = self.app.consumer
        for partition, position in self.positions.items():
            try:
                high = consumer.highwater(TP(self.input_topic, partition))
            except Exception:
                continue
            if high is not None:
                metrics.set_lag(self.input_topic, partition, max(int(high) - position, 0))

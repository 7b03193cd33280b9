"""What a worker's runtime needs from Kafka, behind one small interface.

:class:`Broker` sends records (results, dead letters, checkpoints), flushes them, commits input
offsets, says where each newly assigned input partition starts, and reads a range of input
messages again (to fill a gap). :class:`KafkaBroker` does it with the faust app's producer and
consumer plus a kafka-python client; :class:`MemoryBroker` keeps everything in lists, for tests
through faust's ``test_context()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, cast

import faust
from faust.types import TP

from stream_rca.config import Settings
from stream_rca.streaming.records import Output

__all__ = ["Ack", "Broker", "InputMessage", "KafkaBroker", "MemoryBroker", "failed_ack"]

log = logging.getLogger("stream_rca.streaming")

_PARTITIONS_KEPT = 60.0  # seconds a key's partition is kept (a topic may gain partitions)

InputMessage = tuple[int, bytes | None, bytes | None]
"""``(offset, key, value)`` of one input message read again."""


Ack = Awaitable[object]
"""What :meth:`Broker.send` returns: awaiting it waits for the broker's acknowledgement of the
record, and raises if the broker refused it."""


class Broker(Protocol):
    """The runtime's view of Kafka."""

    async def send(self, output: Output) -> Ack:
        """Hand one record to the producer (it need not be delivered yet); return its ack."""

    async def send_many(self, outputs: Sequence[Output]) -> list[Ack]:
        """Hand records to the producer, in order within each topic partition; return one
        ack per record (records delivered together may share one)."""

    async def flush(self) -> None:
        """Wait until every record sent so far is delivered."""

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit input offsets: partition to the offset of the next message to read."""

    async def start_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        """Where consumption of newly assigned input partitions starts (committed or earliest)."""

    async def fetch(self, partition: int, start: int, stop: int) -> list[InputMessage]:
        """The input messages of ``partition`` with ``start <= offset < stop``, in order."""

    async def end_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        """The offset the next message of each input partition will get."""


def failed_ack(exc: BaseException) -> Ack:
    """The ack of a record that was refused at once: it raises ``exc``."""
    failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    failed.set_exception(exc)
    return failed


class MemoryBroker:
    """A :class:`Broker` that keeps records in :attr:`outputs` and commits in :attr:`commits`.

    :attr:`log` holds every call in order (``("send", kind)``, ``("flush",)``,
    ``("commit", offsets)``), to check what happens before what. :attr:`inputs` (partition to
    offset to ``(key, value)``) serves :meth:`fetch`. :attr:`refuse`, when set, is asked about
    every record sent: an exception it returns fails that record's ack (the record is not
    kept), as a broker refusing it would.
    """

    def __init__(self) -> None:
        self.outputs: list[Output] = []
        self.commits: list[dict[int, int]] = []
        self.log: list[tuple[Any, ...]] = []
        self.inputs: dict[int, dict[int, tuple[bytes | None, bytes | None]]] = {}
        self.refuse: Callable[[Output], BaseException | None] | None = None

    async def send(self, output: Output) -> Ack:
        self.log.append(("send", output.kind))
        ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        error = self.refuse(output) if self.refuse is not None else None
        if error is not None:
            ack.set_exception(error)
        else:
            self.outputs.append(output)
            ack.set_result(None)
        return ack

    async def send_many(self, outputs: Sequence[Output]) -> list[Ack]:
        return [await self.send(output) for output in outputs]

    async def flush(self) -> None:
        self.log.append(("flush",))

    async def commit(self, offsets: Mapping[int, int]) -> None:
        self.commits.append(dict(offsets))
        self.log.append(("commit", dict(offsets)))

    async def start_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        return {}

    async def fetch(self, partition: int, start: int, stop: int) -> list[InputMessage]:
        self.log.append(("fetch", partition, start, stop))
        known = self.inputs.get(partition, {})
        return [(o, *known[o]) for o in range(start, stop) if o in known]

    async def end_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        return {p: max(self.inputs.get(p, {}), default=-1) + 1 for p in partitions}

    def of_kind(self, kind: str) -> list[Output]:
        """The records of one kind, in order."""
        return [o for o in self.outputs if o.kind == kind]


class KafkaBroker:
    """A :class:`Broker` over the faust app's producer and consumer, and a kafka-python client.

    Records go to the topics of ``settings`` (checkpoints to the table's changelog, at their
    graph's partition); offsets are committed through the faust consumer. Start offsets and
    re-reads use a kafka-python consumer outside the group, in a thread of their own.
    """

    def __init__(
        self, app: faust.App, settings: Settings, topics: dict[str, Any], table: Any
    ) -> None:
        self.app = app
        self.settings = settings
        self.topics = topics
        self.table = table
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "stream-rca-reader")
        self._consumer: Any = None
        self._names: dict[str, str] = {}
        self._partitions: dict[tuple[str, bytes], int] = {}
        self._partitions_until = 0.0

    async def send(self, output: Output) -> Ack:
        if output.kind == "checkpoint":
            topic = self.table.changelog_topic
            key: Any = output.key.decode() if output.key is not None else None
            ack: Ack = await topic.send(
                key=key, value=output.value, partition=output.partition, force=True
            )
            return ack
        # straight to the producer under faust (its Topic.send adds a message object, callbacks
        # and sensors per record: about half the cost of a send, for each score document)
        name = self._topic(output.kind)
        partition = self._partition(name, output)
        ack = await self.app.producer.send(name, output.key, output.value, partition, None, None)
        return ack

    async def send_many(self, outputs: Sequence[Output]) -> list[Ack]:
        """Hand ``outputs`` to aiokafka as record batches, one per topic partition.

        One ``send`` per record costs a chain of coroutines, a future and, at delivery, its
        metadata: about a tenth of the worker's time in the batch form, where every window
        of every graph has a score document. A batch (aiokafka's ``create_batch`` and
        ``send_batch``) takes each record with one append, and its one future is the ack of
        all of them. Records aiokafka cannot place yet (no metadata of their topic) and
        checkpoints go one by one, through :meth:`send`.
        """
        acks: list[Ack | None] = [None] * len(outputs)
        groups: dict[tuple[str, int], list[int]] = {}
        producer = self._batch_producer()
        for i, output in enumerate(outputs):
            where = None if producer is None else self._destination(output)
            if where is None:
                try:
                    acks[i] = await self.send(output)
                except Exception as exc:  # refused at once (too large): this record's ack
                    acks[i] = failed_ack(exc)
            else:
                groups.setdefault(where, []).append(i)
        for (topic, partition), members in groups.items():
            batch, held = producer.create_batch(), list[int]()
            for i in members:
                output = outputs[i]
                if batch.append(timestamp=None, key=output.key, value=output.value) is None:
                    await self._submit(producer, batch, topic, partition, held, acks)
                    batch, held = producer.create_batch(), []
                    batch.append(timestamp=None, key=output.key, value=output.value)
                held.append(i)
            await self._submit(producer, batch, topic, partition, held, acks)
        return cast(list[Ack], acks)  # every record has its ack now

    def _batch_producer(self) -> Any:
        """faust's aiokafka producer, or ``None`` (not started, or another driver)."""
        try:
            producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        except Exception:
            return None
        return producer if hasattr(producer, "send_batch") else None

    def _destination(self, output: Output) -> tuple[str, int] | None:
        """The topic and partition of a record that can go in a batch, else ``None``."""
        if output.kind == "checkpoint":
            return None
        name = self._topic(output.kind)
        partition = self._partition(name, output)
        return None if partition is None else (name, partition)

    def _partition(self, name: str, output: Output) -> int | None:
        """The record's own partition, else its key's (``None``: the producer picks)."""
        if output.partition is None and output.key is not None:
            return self._partition_of(name, output.key)
        return output.partition

    def _topic(self, kind: str) -> str:
        name = self._names.get(kind)
        if name is None:
            name = self._names[kind] = self.topics[kind].get_topic_name()
        return name

    @staticmethod
    async def _submit(
        producer: Any,
        batch: Any,
        topic: str,
        partition: int,
        held: list[int],
        acks: list[Ack | None],
    ) -> None:
        """Send one batch; its future (or the error of its send) is the ack of ``held``."""
        if not held:
            return
        try:
            ack: Ack = await producer.send_batch(batch, topic, partition=partition)
        except Exception as exc:
            ack = failed_ack(exc)
        for i in held:
            acks[i] = ack

    def _partition_of(self, topic: str, key: bytes) -> int | None:
        """The partition the producer's partitioner gives ``key`` (hashed once per key).

        Hashing every record's key (murmur2 in Python) was the largest part of a score
        document's send; the same key always goes to the same partition while the topic's
        partition count stays, so the answer is kept, and forgotten every minute in case the
        topic grew. ``None`` while the producer has no metadata of the topic (before its first
        send, which waits for it): the producer then hashes the key itself.
        """
        now = time.monotonic()
        if now >= self._partitions_until:
            self._partitions.clear()
            self._partitions_until = now + _PARTITIONS_KEPT
        hit = self._partitions.get((topic, key))
        if hit is not None:
            return hit
        try:
            partition = int(self.app.producer.key_partition(topic, key).partition)
        except Exception:  # no partitions known for the topic yet
            return None
        self._partitions[(topic, key)] = partition
        return partition

    async def flush(self) -> None:
        await self.app.producer.flush()

    async def commit(self, offsets: Mapping[int, int]) -> None:
        tps = {TP(self.settings.input_topic, p): o for p, o in offsets.items()}
        # faust commits explicit offsets only through this driver-level call (its public
        # commit() commits acknowledged messages); it leaves out partitions not assigned.
        consumer: Any = self.app.consumer
        if not await consumer._commit(tps):
            log.info("offsets not committed (rebalancing): %s", dict(offsets))

    async def start_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        wanted = sorted(partitions)
        if not wanted:
            return {}
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._start_offsets, wanted)

    async def fetch(self, partition: int, start: int, stop: int) -> list[InputMessage]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._fetch, partition, start, stop)

    async def end_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        wanted = sorted(partitions)
        if not wanted:
            return {}
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._end_offsets, wanted)

    def close(self) -> None:
        """Close the kafka-python clients."""
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
        self._executor.shutdown(wait=False)

    # -- kafka-python, in the reader thread ------------------------------------------------

    def _reader(self) -> Any:
        if self._consumer is None:
            from stream_rca.streaming.producers import _kafka

            # In the worker's group to read its committed offsets, but it never subscribes
            # (so never joins the group) and never commits: partitions are assigned by hand.
            self._consumer = _kafka().KafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap.split(","),
                group_id=self.settings.app_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a range deleted by retention: read what is left
                client_id="stream-rca-reader",
                max_partition_fetch_bytes=2 * 1024 * 1024,
                **self.settings.kafka_client_options(),
            )
        return self._consumer

    def _start_offsets(self, partitions: list[int]) -> dict[int, int]:
        from kafka import TopicPartition

        consumer = self._reader()
        tps = [TopicPartition(self.settings.input_topic, p) for p in partitions]
        out: dict[int, int] = {}
        for tp in tps:
            committed = consumer.committed(tp)
            if committed is not None and committed >= 0:
                out[tp.partition] = int(committed)
        missing = [tp for tp in tps if tp.partition not in out]
        if missing:
            for tp, offset in consumer.beginning_offsets(missing).items():
                out[tp.partition] = int(offset)
        return out

    def _end_offsets(self, partitions: list[int]) -> dict[int, int]:
        from kafka import TopicPartition

        tps = [TopicPartition(self.settings.input_topic, p) for p in partitions]
        ends = self._reader().end_offsets(tps)
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def _fetch(self, partition: int, start: int, stop: int) -> list[InputMessage]:
        from kafka import TopicPartition

        consumer = self._reader()
        tp = TopicPartition(self.settings.input_topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        out: list[InputMessage] = []
        deadline = time.monotonic() + 60.0
        while consumer.position(tp) < stop and time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500).get(tp, []):
                if start <= record.offset < stop:
                    out.append((record.offset, record.key, record.value))
        return out

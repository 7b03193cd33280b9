"""The hot path's source: input batches read directly from the partitions faust assigned.

faust keeps what a distributed engine is for: group membership, partition assignment and
rebalancing, the compacted state changelog and its recovery, offset commits. What it does not
do fast is hand over messages: its per-event path (conductor, channel, stream, event) costs
about 65 us per message, a ceiling of some 15,000 messages/s on one core, below what the
engine can take in blocks. So the worker's faust consumer keeps the input partitions in its
assignment but **paused** (it fetches nothing from them: :func:`hold_input`), and
:class:`BatchReader`, an aiokafka consumer outside the group (partitions assigned by hand,
never committing), reads the partitions faust assigned from the runtime's next offsets,
``max_records`` messages at a time, and hands each batch to :meth:`Runtime.handle_batch
<stream_rca.streaming.runtime.Runtime.handle_batch>`. At every assignment it follows the
runtime's partitions and offsets again (docs/streaming.md has the measurements).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from stream_rca.config import Settings
from stream_rca.streaming.runtime import InputMessageAt, Runtime

__all__ = [
    "FETCH_WAIT_MS",
    "MAX_RECORDS",
    "BatchReader",
    "hold_input",
    "pause_input",
    "paused_first",
    "plain_records",
]

log = logging.getLogger("stream_rca.streaming")

MAX_RECORDS = 5000
"""Messages per batch at most (a batch is what is there: fewer when the input is slow)."""
WAIT_MS = 50
"""How long one read waits for messages when there are none (the latency floor it adds)."""
FETCH_WAIT_MS = 10
"""How long the broker may hold a fetch that finds no new data (aiokafka's default is 500 ms).
aiokafka has one fetch in flight per broker, and it fetches a partition only once its last
fetch is consumed: a fetch for partitions at their end (an empty partition; or those a backlog
finished first) then held the next fetch of the others back for half a second, again and
again (measured: a fifth of the single form's wall time, with one of 4 partitions empty)."""
PARTITION_FETCH_BYTES = 1024 * 1024
"""Bytes fetched per partition at a time: small enough that the partitions of a backlog take
turns (with 4 MiB, one partition's 50,000 small messages came before any of the next one)."""


def pause_input(consumer: Any, topic: str) -> None:
    """Keep faust's consumer from fetching ``topic``: pause it now and after every recovery.

    faust pauses every partition at a rebalance and resumes the stream partitions when its
    table recovery ends; the resume given to ``consumer`` here leaves ``topic`` out.
    """
    if not getattr(consumer, "_stream_rca_paused", False):
        resume = consumer.resume_partitions

        def resume_others(tps: Any) -> None:
            resume({tp for tp in tps if tp.topic != topic})

        consumer.resume_partitions = resume_others
        consumer._stream_rca_paused = True
    consumer.pause_partitions({tp for tp in consumer.assignment() if tp.topic == topic})


def hold_input(app: Any, topic: str) -> None:
    """Keep faust's own aiokafka consumer from ever fetching ``topic``, from each assignment.

    :func:`pause_input` pauses the topic in faust's bookkeeping, once faust's main thread
    hears of an assignment. By then its consumer thread has often fetched the partitions
    already (up to ``consumer_max_fetch_size``, 16 MiB, a partition) and unpacked every
    record into an object, to drop them: measured, the whole input topic of the batch
    benchmark (40,000 messages) once per worker start, about a tenth of the worker's CPU
    time in its run, and
    in production a burst of memory and CPU at every rebalance, just when a backlog waits.
    So the consumer faust makes gets a hook in its thread: at each assignment, before faust
    is told, the partitions of ``topic`` are paused in aiokafka itself (new fetches leave
    them out, and what an earlier fetch brought is dropped without being unpacked). aiokafka
    forgets pauses at a rebalance; the hook runs at every one.
    """
    make = app._new_consumer

    def new_consumer() -> Any:
        consumer = make()
        thread = getattr(consumer, "_thread", None)
        assigned = getattr(thread, "on_partitions_assigned", None)
        if thread is not None and assigned is not None:  # faust's aiokafka driver
            thread.on_partitions_assigned = paused_first(assigned, thread, topic)
        return consumer

    app._new_consumer = new_consumer


def paused_first(
    assigned: Callable[..., Awaitable[Any]], thread: Any, topic: str
) -> Callable[..., Awaitable[Any]]:
    """``assigned`` (faust's handler of an assignment, in its consumer thread), after pausing
    the assigned partitions of ``topic`` in the thread's aiokafka consumer."""

    async def on_partitions_assigned(tps: Any, *args: Any, **kwargs: Any) -> Any:
        mine = [tp for tp in tps if tp.topic == topic]
        if mine:
            from aiokafka import TopicPartition

            try:
                consumer = thread._ensure_consumer()
                consumer.pause(*[TopicPartition(tp.topic, tp.partition) for tp in mine])
            except Exception as exc:  # faust's own pause (pause_input) still holds delivery
                log.warning("could not pause the input partitions in faust's consumer: %s", exc)
        return await assigned(tps, *args, **kwargs)

    return on_partitions_assigned


def _plain(tp: Any, record: Any) -> InputMessageAt:
    """A fetched record as the runtime takes it: (partition, offset, key, value)."""
    return (tp.partition, record.offset, record.key, record.value)


class _PlainResults(collections.OrderedDict[Any, Any]):
    """aiokafka's fetch buffer (topic partition -> fetch result) whose results give
    :func:`_plain` tuples: each result's record iterator calls ``_consumer_record`` per record,
    looked up on the iterator itself, so the one set here replaces aiokafka's for its records
    only (faust's consumer and every other keep theirs)."""

    def __setitem__(self, tp: Any, result: Any) -> None:
        records = getattr(result, "_partition_records", None)
        if records is not None:
            records._consumer_record = _plain
        super().__setitem__(tp, result)


def plain_records(consumer: Any) -> bool:
    """Have ``consumer.getmany`` give :data:`~stream_rca.streaming.runtime.InputMessageAt`
    tuples instead of ``ConsumerRecord`` objects; True if it now does.

    aiokafka makes a ``ConsumerRecord`` (eleven fields, the headers copied into a tuple) per
    record, and the reader then made a tuple of four of them: measured in the worker's single
    form, 15 % of its CPU went to that (py-spy, docs/streaming.md round 13). The records are
    read, checked (CRC, control and aborted batches) and positioned by aiokafka as before;
    only the object each record becomes changes. This reaches into aiokafka's fetcher (its
    ``_records`` buffer and each result's ``_partition_records``, aiokafka 0.8 to 0.14): where
    those are not found, nothing changes and False says so (the reader then converts the
    records it gets).
    """
    fetcher: Any = getattr(consumer, "_fetcher", None)
    buffer = getattr(fetcher, "_records", None)
    if type(buffer) is _PlainResults:
        return True
    if not isinstance(buffer, dict) or buffer:
        return False
    fetcher._records = _PlainResults()
    return True


class BatchReader:
    """Read the worker's input partitions in batches and process them.

    Parameters
    ----------
    runtime
        Its assignment and next offsets say what to read; it processes each batch.
    settings
        Broker, security options, input topic.
    max_records
        Messages per batch at most.
    """

    def __init__(self, runtime: Runtime, settings: Settings, max_records: int = MAX_RECORDS):
        self.runtime = runtime
        self.settings = settings
        self.max_records = max_records
        self.consumer: Any = None
        self.batches = 0
        self._seen = -1  # the runtime's assignment count the consumer follows
        self._plain = False  # whether getmany gives InputMessageAt tuples (plain_records)

    def _options(self) -> dict[str, Any]:
        s = self.settings
        opts: dict[str, Any] = {"security_protocol": s.security_protocol.upper()}
        if s.security_protocol.upper().endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            opts["ssl_context"] = create_ssl_context(
                cafile=s.ssl_cafile, certfile=s.ssl_certfile, keyfile=s.ssl_keyfile
            )
        if s.security_protocol.upper().startswith("SASL"):
            opts["sasl_mechanism"] = s.sasl_mechanism or "PLAIN"
            opts["sasl_plain_username"] = s.sasl_username
            opts["sasl_plain_password"] = s.sasl_password
        return opts

    async def start(self) -> None:
        """Connect (no group: nothing is joined or committed)."""
        from aiokafka import AIOKafkaConsumer

        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap.split(","),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="stream-rca-batch-reader",
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            fetch_max_bytes=16 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            **self._options(),
        )
        await self.consumer.start()
        self._plain = plain_records(self.consumer)
        if not self._plain:
            log.info("batch reader: aiokafka's fetcher is not the one known; records converted")

    async def stop(self) -> None:
        """Disconnect."""
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def _follow(self) -> bool:
        """Assign and seek to the runtime's partitions after each assignment; True if any."""
        from aiokafka import TopicPartition

        runtime = self.runtime
        if self._seen == runtime.assignments and runtime.positions.keys() >= runtime.owned:
            return bool(runtime.owned)
        self._seen = runtime.assignments
        positions = await runtime.ensure_positions()
        topic = self.settings.input_topic
        tps = [TopicPartition(topic, p) for p in sorted(positions)]
        self.consumer.assign(tps)
        for tp in tps:
            self.consumer.seek(tp, positions[tp.partition])
        log.info("batch reader: reading input partitions from %s", positions)
        return bool(tps)

    async def read_once(self) -> int:
        """Read one batch (waiting :data:`WAIT_MS` at most) and process it; its size."""
        if not await self._follow():
            await asyncio.sleep(WAIT_MS / 1000)
            return 0
        got = await self.consumer.getmany(timeout_ms=WAIT_MS, max_records=self.max_records)
        messages: list[InputMessageAt]
        if self._plain:
            messages = [m for rs in got.values() for m in rs]
        else:
            messages = [
                (tp.partition, r.offset, r.key, r.value) for tp, rs in got.items() for r in rs
            ]
        if messages:
            await self.runtime.handle_batch(messages)
            self.batches += 1
            # the reader is draining a backlog of its partitions: none of them is quiet (the
            # runtime's catch-up re-reads, record by record, only what nobody reads)
            now = time.monotonic()
            for partition in self.runtime.positions:
                self.runtime.arrived[partition] = now
        return len(messages)

    def highwater(self, partition: int) -> int | None:
        """The partition's end offset as the last fetch saw it."""
        from aiokafka import TopicPartition

        if self.consumer is None:
            return None
        try:
            high = self.consumer.highwater(TopicPartition(self.settings.input_topic, partition))
        except Exception:  # not assigned (any more)
            return None
        return None if high is None else int(high)

    async def run(self) -> None:
        """Read and process until cancelled (the app stops)."""
        await self.start()
        try:
            while True:
                await self.read_once()
        finally:
            await self.stop()

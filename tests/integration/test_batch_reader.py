"""The hot path's source on the real broker: with :func:`plain_records`, aiokafka's ``getmany``
gives the tuples the runtime takes, the same records in the same order as its
``ConsumerRecord`` objects, and other consumers in the process keep their records."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream_rca.streaming.reader import plain_records
from tests.fixtures.kafka import create_topics, unique_topic_name

pytestmark = pytest.mark.integration


async def _produce(bootstrap: str, topic: str) -> int:
    """Plain, keyless, tombstone, large and header-carrying records, in plain and gzip
    batches, to 3 partitions; how many."""
    from aiokafka import AIOKafkaProducer

    sent = 0
    for compression in (None, "gzip"):
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, compression_type=compression, linger_ms=5
        )
        await producer.start()
        try:
            futures = []
            for i in range(300):
                key = None if i % 7 == 0 and i % 11 else b"key-%d" % (i % 5)
                value = None if i % 11 == 0 else b'{"n": %d}' % i
                if i % 50 == 1:
                    value = b"x" * 200_000
                headers = [("h", b"%d" % i)] if i % 3 == 0 else None
                futures.append(
                    await producer.send(
                        topic, value=value, key=key, partition=i % 3, headers=headers
                    )
                )
            await asyncio.gather(*futures)
            sent += len(futures)
        finally:
            await producer.stop()
    return sent


async def _read(bootstrap: str, topic: str, expected: int, plain: bool) -> tuple[list[Any], bool]:
    """Every record of the topic's 3 partitions, read in batches of at most 37 (each as
    ``(partition, offset, key, value)``), and whether the plain tuples were given."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=64 * 1024,
    )
    await consumer.start()
    try:
        installed = plain and plain_records(consumer)
        if plain:
            assert plain_records(consumer)  # a second call changes nothing
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        out: list[Any] = []
        for _ in range(1000):
            got = await consumer.getmany(timeout_ms=200, max_records=37)
            for tp, records in got.items():
                for r in records:
                    if installed:
                        assert type(r) is tuple
                        out.append((tp.partition, r))
                    else:
                        assert not isinstance(r, tuple)
                        out.append((tp.partition, (tp.partition, r.offset, r.key, r.value)))
            if len(out) >= expected:
                break
        return out, installed
    finally:
        await consumer.stop()


def test_plain_records_are_the_consumer_records_fields(kafka_bootstrap: str) -> None:
    topic = unique_topic_name("reader")
    create_topics(kafka_bootstrap, {topic: 3})
    sent = asyncio.run(_produce(kafka_bootstrap, topic))

    plain, installed = asyncio.run(_read(kafka_bootstrap, topic, sent, plain=True))
    usual, _ = asyncio.run(_read(kafka_bootstrap, topic, sent, plain=False))
    assert installed
    assert len(plain) == len(usual) == sent

    def by_partition(rows: list[Any]) -> dict[int, list[Any]]:
        out: dict[int, list[Any]] = {}
        for p, row in rows:
            out.setdefault(p, []).append(row)
        return out

    # the same records in each partition's order (partitions interleave as fetches return)
    assert by_partition(plain) == by_partition(usual)
    plain_rows = [row for _, row in plain]
    assert {row[0] for row in plain_rows} == {0, 1, 2}
    assert any(row[2] is None for row in plain_rows)  # keyless
    assert any(row[3] is None for row in plain_rows)  # tombstones
    assert sum(row[3] == b"x" * 200_000 for row in plain_rows) == 12
    for p, rows in by_partition(plain).items():
        assert [row[1] for row in rows] == list(range(len(rows))), p


def test_a_consumer_without_the_known_fetcher_is_left_alone() -> None:
    class Other:
        _fetcher = None

    class _Fetcher:
        def __init__(self) -> None:
            self._records = {"tp": "a fetch result already buffered"}

    class Busy:
        def __init__(self) -> None:
            self._fetcher = _Fetcher()

    assert plain_records(object()) is False
    assert plain_records(Other()) is False
    busy = Busy()
    assert plain_records(busy) is False
    assert busy._fetcher._records == {"tp": "a fetch result already buffered"}

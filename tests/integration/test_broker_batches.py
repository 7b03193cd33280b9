"""The worker's producer side on the real broker: :meth:`KafkaBroker.send_many` hands a block's
records to aiokafka as record batches, one per topic partition, and each record's ack says
whether the broker took it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stream_rca.config import load_graphs
from stream_rca.streaming.app import make_app, runtime_of
from stream_rca.streaming.brokers import KafkaBroker
from stream_rca.streaming.records import Output
from stream_rca.streaming.testing import TopicReader, isolated_settings
from tests.fixtures.kafka import create_topics, kafka_import_warnings_suppressed

with kafka_import_warnings_suppressed():
    from kafka.partitioner import murmur2

pytestmark = pytest.mark.integration

GRAPHS = {"graphs": [{"name": "shop", "edges": [["db", "api"]], "targets": ["api"]}]}


async def _send(
    broker: KafkaBroker, app: object, *rounds: list[Output], acks_seen: list[int] | None = None
) -> list[list[str | None]]:
    """Send each round with the app's producer started; each record's outcome (None: acked).

    ``acks_seen`` gets the number of distinct acks of each round (one per batch sent)."""
    producer = app.producer  # type: ignore[attr-defined]
    await producer.start()
    try:
        out = []
        for outputs in rounds:
            acks = await broker.send_many(outputs)
            if acks_seen is not None:
                acks_seen.append(len({id(ack) for ack in acks}))
            await broker.flush()
            outcomes: list[str | None] = []
            for ack in acks:
                try:
                    await ack
                    outcomes.append(None)
                except Exception as exc:
                    outcomes.append(type(exc).__name__)
            out.append(outcomes)
        return out
    finally:
        await producer.stop()


def test_a_blocks_records_arrive_in_order_at_their_keys_partitions(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, GRAPHS, prefix="batches")
    app = make_app(settings, load_graphs(settings.config), worker_id="batches")
    broker = runtime_of(app).broker
    assert isinstance(broker, KafkaBroker)
    keys = [b"shop", b"cart", b"search", b"pay", b"ads"]
    outputs = [Output("scores", keys[i % 5], b"score %d" % i) for i in range(400)]
    outputs += [Output("attributions", b"shop", b"attribution %d" % i) for i in range(3)]
    outputs.append(Output("scores", b"big", b"x" * 300_000, partition=2))

    # twice; the second time all in batches, one per topic partition (the first time, the
    # producer has no metadata of the attributions topic yet: its 3 records go one by one)
    seen: list[int] = []
    assert (
        asyncio.run(_send(broker, app, outputs, outputs, acks_seen=seen))
        == [[None] * len(outputs)] * 2
    )
    partitions = {(murmur2(key) & 0x7FFFFFFF) % 4 for key in keys} | {2}
    assert seen == [len(partitions) + 3, len(partitions) + 1]

    with TopicReader(settings, [settings.scores_topic, settings.attributions_topic]) as reader:
        reader.wait_until(lambda r: len(r.records()) >= 2 * len(outputs), 60, what="every record")
        scores = reader.records(settings.scores_topic)
        attributions = reader.records(settings.attributions_topic)
    assert len(scores) == 2 * 401
    assert [r.value for r in attributions] == [o.value for o in outputs[400:403]] * 2
    for key in keys:  # in order, twice, all at the partition of the producer's partitioner
        mine = [r for r in scores if r.key == key]
        want = [o.value for o in outputs if o.key == key and o.kind == "scores"]
        assert [r.value for r in mine] == want * 2
        assert {r.partition for r in mine} == {(murmur2(key) & 0x7FFFFFFF) % 4}
    assert [r.partition for r in scores if r.key == b"big"] == [2, 2]


def test_a_refused_batch_or_record_fails_the_acks_of_its_records_only(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, GRAPHS, prefix="refused")
    small = settings.deadletter_topic + "-small"
    create_topics(kafka_bootstrap, {small: 1}, configs={small: {"max.message.bytes": "2000"}})
    app = make_app(settings, load_graphs(settings.config), worker_id="refused")
    broker = runtime_of(app).broker
    assert isinstance(broker, KafkaBroker)
    broker._names["deadletter"] = small
    outputs = [Output("scores", b"shop", b"s %d" % i, partition=0) for i in range(5)]
    outputs += [Output("deadletter", None, b"y" * 5000, partition=0)]
    outputs += [Output("scores", b"shop", b"t %d" % i, partition=0) for i in range(5)]
    # no key, no partition: sent on its own, and refused at once (above max_request_size)
    outputs.append(Output("deadletter", None, b"z" * (17 * 1024 * 1024)))
    (outcomes,) = asyncio.run(_send(broker, app, outputs))
    assert outcomes[:5] == outcomes[6:11] == [None] * 5
    assert outcomes[5] is not None  # the broker refused it: the runtime sends it again
    assert outcomes[11] is not None  # only its own ack fails

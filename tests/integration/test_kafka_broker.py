"""The test broker itself: a real Kafka that kafka-python can produce to and consume from."""

from __future__ import annotations

import pytest

from tests.fixtures.kafka import (
    create_topics,
    kafka_import_warnings_suppressed,
    topic_partition_count,
    unique_topic_name,
)

with kafka_import_warnings_suppressed():
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.integration


def test_produce_then_consume_round_trips_messages(kafka_bootstrap: str) -> None:
    topic = unique_topic_name("test_produce_then_consume")
    create_topics(kafka_bootstrap, {topic: 1})
    sent = [f'{{"graph": "shop", "node": "api", "value": {i}}}'.encode() for i in range(5)]

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for i, value in enumerate(sent):
            producer.send(topic, key=b"shop", value=value, partition=0, timestamp_ms=1_000 + i)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique_topic_name("group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15_000,
    )
    try:
        received = []
        for record in consumer:
            received.append(record)
            if len(received) == len(sent):
                break
    finally:
        consumer.close()

    assert [r.value for r in received] == sent
    assert {r.key for r in received} == {b"shop"}
    assert [r.offset for r in received] == list(range(len(sent)))
    assert [r.timestamp for r in received] == [1_000 + i for i in range(len(sent))]


def test_created_topic_has_the_requested_partitions(kafka_bootstrap: str) -> None:
    topic = unique_topic_name("test_partitions")

    create_topics(kafka_bootstrap, {topic: 4})

    assert topic_partition_count(kafka_bootstrap, topic) == 4
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2, 3}
    finally:
        consumer.close()


def test_messages_with_one_key_stay_in_one_partition(kafka_bootstrap: str) -> None:
    topic = unique_topic_name("test_keyed")
    create_topics(kafka_bootstrap, {topic: 4})

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        partitions = {
            producer.send(topic, key=b"shop", value=b"%d" % i).get(timeout=30).partition
            for i in range(10)
        }
    finally:
        producer.close(timeout=10)

    assert len(partitions) == 1
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        (partition,) = partitions
        tp = TopicPartition(topic, partition)
        assert consumer.end_offsets([tp]) == {tp: 10}
    finally:
        consumer.close()


def test_unknown_topic_is_auto_created_with_the_default_partition_count(
    kafka_bootstrap: str,
) -> None:
    topic = unique_topic_name("test_auto_create")

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        producer.send(topic, value=b"x").get(timeout=30)
    finally:
        producer.close(timeout=10)

    assert topic_partition_count(kafka_bootstrap, topic) >= 1

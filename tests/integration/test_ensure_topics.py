"""ensure_topics on a real broker: every topic a worker reads or writes, under its configured
name, with the configured partition count."""

from __future__ import annotations

import pytest

from stream_rca.config import Settings
from stream_rca.streaming.producers import ensure_topics
from tests.fixtures.kafka import topic_partition_count, unique_topic_name

pytestmark = pytest.mark.integration

PARTITIONS = 3  # not the broker's default for auto-created topics (4): created by ensure_topics


def test_ensure_topics_creates_the_why_changed_topics_like_the_others(
    kafka_bootstrap: str,
) -> None:
    base = unique_topic_name("ensure")
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        partitions=PARTITIONS,
        input_topic=f"{base}.metrics",
        attributions_topic=f"{base}.attributions",
        scores_topic=f"{base}.scores",
        deadletter_topic=f"{base}.deadletter",
        changes_topic=f"{base}.why-changed",
        change_requests_topic=f"{base}.why-changed-requests",
        spans_topic=f"{base}.spans",
    )
    counts = ensure_topics(settings)
    topics = [f"{base}.{n}" for n in ("metrics", "attributions", "scores", "deadletter")]
    for topic in [*topics, f"{base}.why-changed", f"{base}.why-changed-requests", f"{base}.spans"]:
        assert counts[topic] == PARTITIONS, topic
        assert topic_partition_count(kafka_bootstrap, topic) == PARTITIONS, topic
    # a second call (another worker starting) finds them and changes nothing
    assert ensure_topics(settings) == counts

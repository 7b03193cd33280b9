"""Fresh topics, producing to them, reading them back, and the in-process reference run."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from stream_rca.config import Settings, load_graphs
from stream_rca.streaming.testing.processes import wait_until

if TYPE_CHECKING:
    from stream_rca.streaming.simulator import Simulation

__all__ = [
    "AttributionKey",
    "Message",
    "Record",
    "TopicReader",
    "attributions_by_id",
    "committed_offsets",
    "isolated_settings",
    "publish",
    "reference_attributions",
    "simulated_messages",
]

Message = tuple[bytes | None, bytes]
"""A ``(key, value)`` pair for the input topic."""
AttributionKey = tuple[str, int]
"""``(incident id, revision)``: what identifies one attribution document."""


def isolated_settings(
    bootstrap: str,
    tmp: str | Path,
    graphs: Mapping[str, Any],
    *,
    prefix: str,
    **overrides: Any,
) -> Settings:
    """Settings of a worker on fresh topics (created here) and a fresh consumer group.

    Parameters
    ----------
    bootstrap
        The broker.
    tmp
        Directory for the graphs file and the workers' data directory (``tmp/data``).
    graphs
        The graphs document (``stream_rca.config.load_graphs`` format), written as YAML.
    prefix
        Start of the topic names and the app id: ``<prefix>-<random>.metrics`` etc.
    overrides
        Other :class:`~stream_rca.config.Settings` fields; by default scores are published,
        the web server port is 0, topics have 4 partitions and the checkpoints are signed with
        a key made for this run.
    """
    from stream_rca.streaming.producers import ensure_topics

    tmp = Path(tmp)
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    graphs_file = tmp / f"graphs-{name}.yaml"
    graphs_file.write_text(_yaml_dump(graphs), encoding="utf-8")
    fields: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "input_topic": f"{name}.metrics",
        "attributions_topic": f"{name}.attributions",
        "scores_topic": f"{name}.scores",
        "deadletter_topic": f"{name}.deadletter",
        "changes_topic": f"{name}.changes",
        "change_requests_topic": f"{name}.change-requests",
        "publish_scores": True,
        "app_id": name,
        "config": str(graphs_file),
        "web_port": 0,
        "data_dir": str(tmp / "data"),
        "partitions": 4,
        "checkpoint_key": f"checkpoint-key-{uuid.uuid4().hex}",
        **overrides,
    }
    settings = Settings(**fields)
    ensure_topics(settings)
    return settings


def _yaml_dump(doc: Mapping[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(dict(doc)))


def simulated_messages(sim: Simulation, count: int) -> list[Message]:
    """The next ``count`` windows of every graph of ``sim``, as input messages in order."""
    return [(key, value) for key, values in sim.snapshots(count) for value in values]


def publish(
    settings: Settings,
    messages: Iterable[Message],
    *,
    rate: float = 0.0,
    per_step: int = 1,
    **producer_options: Any,
) -> int:
    """Produce ``messages`` to the input topic, flush, and return how many were sent.

    Parameters
    ----------
    settings
        Broker and input topic.
    messages
        ``(key, value)`` pairs, sent in order.
    rate
        Steps per second (0: as fast as possible); a step is ``per_step`` messages (e.g. one
        window of every graph).
    producer_options
        Passed to :func:`~stream_rca.streaming.producers.kafka_producer` (``linger_ms``...).
    """
    from stream_rca.streaming.producers import kafka_producer
    from stream_rca.streaming.simulator import RateLimiter

    producer = kafka_producer(settings, **producer_options)
    limiter = RateLimiter(rate)
    sent = 0
    try:
        for key, value in messages:
            limiter.wait(sent // per_step)
            producer.send(settings.input_topic, key=key, value=value)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent


def attributions_by_id(docs: Iterable[Mapping[str, Any]]) -> dict[AttributionKey, dict[str, Any]]:
    """Attribution documents by (incident id, revision), their wall time left out.

    At-least-once delivery may publish a document twice; the copies must then be identical.

    Raises
    ------
    ValueError
        If two documents of one (incident id, revision) differ.
    """
    out: dict[AttributionKey, dict[str, Any]] = {}
    for raw in docs:
        doc = {k: v for k, v in raw.items() if k != "attribution_seconds"}  # wall time
        key = (doc["incident_id"], doc["revision"])
        if out.setdefault(key, doc) != doc:
            raise ValueError(f"two copies of attribution {key} differ:\n{out[key]}\n{doc}")
    return out


def reference_attributions(
    graphs_file: str | Path, messages: Iterable[Message]
) -> dict[AttributionKey, dict[str, Any]]:
    """What one uninterrupted in-process pipeline makes of ``messages``, by (id, revision)."""
    from stream_rca.streaming.pipeline import Pipeline

    pipeline = Pipeline(load_graphs(graphs_file), clock=time.time)
    docs = [
        json.loads(out.value)
        for offset, (_, value) in enumerate(messages)
        for out in pipeline.process_one(value, offset=offset).outputs
        if out.kind == "attributions"
    ]
    return attributions_by_id(docs)


def committed_offsets(settings: Settings, partitions: int) -> list[int | None]:
    """Offsets the worker's consumer group (``settings.app_id``) committed on the input topic."""
    from stream_rca.streaming.producers import _kafka

    kafka = _kafka()
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=settings.app_id,
        **settings.kafka_client_options(),
    )
    try:
        return [
            consumer.committed(kafka.TopicPartition(settings.input_topic, p))
            for p in range(partitions)
        ]
    finally:
        consumer.close(autocommit=False)


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record; ``doc`` is its value decoded as JSON (``None`` if it is not)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    doc: Any
    received: float
    """``time.monotonic()`` when the reader got it."""


class TopicReader:
    """Read topics from their beginning in a background thread and keep every record.

    Parameters
    ----------
    settings
        Broker and security options.
    topics
        Topics to read (they need not exist yet).
    """

    def __init__(self, settings: Settings, topics: Iterable[str]) -> None:
        from stream_rca.streaming.producers import _kafka

        kafka = _kafka()
        self.topics = list(topics)
        self._consumer = kafka.KafkaConsumer(
            *self.topics,
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            client_id="stream-rca-reader",
            metadata_max_age_ms=1000,
            **settings.kafka_client_options(),
        )
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topic-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batches = self._consumer.poll(timeout_ms=100)
            now = time.monotonic()
            got = []
            for records in batches.values():
                for r in records:
                    try:
                        doc = json.loads(r.value) if r.value is not None else None
                    except ValueError:
                        doc = None
                    got.append(Record(r.topic, r.partition, r.offset, r.key, r.value, doc, now))
            if got:
                with self._lock:
                    self._records.extend(got)

    def records(self, topic: str | None = None) -> list[Record]:
        """Records read so far (of one topic, or all), in arrival order."""
        with self._lock:
            return [r for r in self._records if topic is None or r.topic == topic]

    def docs(self, topic: str) -> list[Any]:
        """The decoded documents of one topic."""
        return [r.doc for r in self.records(topic)]

    def wait_until(
        self, predicate: Callable[[TopicReader], bool], timeout: float, *, what: str = ""
    ) -> None:
        """Poll ``predicate(self)`` until it holds (see :func:`wait_until`).

        Raises
        ------
        TimeoutError
            If it does not within ``timeout`` seconds.
        """
        wait_until(lambda: predicate(self), timeout, what or str(predicate))

    def attributions(self, topic: str) -> dict[AttributionKey, dict[str, Any]]:
        """The attribution documents of ``topic`` read so far (:func:`attributions_by_id`)."""
        return attributions_by_id(self.docs(topic))

    def close(self) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

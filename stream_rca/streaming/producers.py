"""Producers (kafka-python): simulated metric events with injected faults, and CSV replays.

- :func:`simulate` publishes a :class:`~stream_rca.streaming.simulator.Simulation` (``K``
  simulated systems with random faults) to the input topic, keyed by graph, in the
  single-sample or the batch form, at a bounded rate; the ground truth (which nodes are faulty
  in which windows) goes to a side topic (``rca.truth``) and/or a JSON-lines file first.
- :func:`publish_snapshots` publishes snapshots (e.g. from a CSV file) as events;
  :func:`replay_to_kafka` does it for a file.
- :func:`ensure_topics` creates the topics a worker uses, with the right partition counts.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stream_rca.config import Settings
from stream_rca.core.types import Snapshot
from stream_rca.errors import ConfigError
from stream_rca.io.events import encode_batch, encode_event
from stream_rca.streaming.simulator import (
    RateLimiter,
    Simulation,
    SimulationConfig,
    SimulationReport,
)

__all__ = [
    "DEAD_LETTER_TOPIC_MAX_BYTES",
    "ensure_topics",
    "kafka_producer",
    "publish_snapshots",
    "replay_to_kafka",
    "simulate",
]


DEAD_LETTER_TOPIC_MAX_BYTES = 1_048_588
"""``max.message.bytes`` of the dead-letter topic (Kafka's default, stated explicitly): a dead
letter is cut to :data:`stream_rca.io.deadletter.DEAD_LETTER_MAX_BYTES`, which leaves room
for its key and the record batch around it."""

_TOPIC_CONFIGS = {"max.message.bytes": str(DEAD_LETTER_TOPIC_MAX_BYTES)}


def _kafka() -> Any:
    import warnings

    with warnings.catch_warnings():  # kafka-python 3.0 uses importlib.resources.read_text
        warnings.filterwarnings("ignore", r".* is deprecated\. Use files\(\)", DeprecationWarning)
        import kafka
        import kafka.admin

    return kafka


def kafka_producer(settings: Settings, **options: Any) -> Any:
    """A :class:`kafka.KafkaProducer` for ``settings`` (bootstrap and security options).

    ``options`` override the defaults (``acks="all"``, ``linger_ms=5``, 256 KiB batches).
    """
    kafka = _kafka()
    conf: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "client_id": "stream-rca-producer",
        **settings.kafka_client_options(),
    }
    conf.update(options)
    return kafka.KafkaProducer(**conf)


def ensure_topics(
    settings: Settings, *, extra: Mapping[str, int] | None = None, timeout_s: float = 30.0
) -> dict[str, int]:
    """Create the worker's topics that do not exist yet; return every topic's partition count.

    The input topic gets ``settings.partitions`` partitions (it must have as many as the
    changelog of the state table); the output topics (attributions, scores, dead letters,
    why-changed answers), the why-changed request topic and the spans topic (read by graphs
    that grow from spans) too, each under its configured name. ``extra`` adds more topics (or
    other partition counts for these). The dead-letter topic is created with an explicit
    ``max.message.bytes`` of
    :data:`DEAD_LETTER_TOPIC_MAX_BYTES`, the limit the worker's dead letters are cut to fit.

    Raises
    ------
    ConfigError
        If the input topic exists with another number of partitions.
    """
    kafka = _kafka()
    wanted = {
        settings.input_topic: settings.partitions,
        settings.attributions_topic: settings.partitions,
        settings.scores_topic: settings.partitions,
        settings.deadletter_topic: settings.partitions,
        settings.changes_topic: settings.partitions,
        settings.change_requests_topic: settings.partitions,
        settings.spans_topic: settings.partitions,
        **(extra or {}),
    }
    admin = kafka.admin.KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        client_id="stream-rca-admin",
        request_timeout_ms=int(timeout_s * 1000),
        **settings.kafka_client_options(),
    )
    try:
        counts = _partition_counts(admin, list(wanted))
        missing = [n for n in wanted if counts.get(n, 0) == 0]
        if missing:
            for name in missing:
                # another worker may win the race
                configs = _TOPIC_CONFIGS if name == settings.deadletter_topic else {}
                with contextlib.suppress(kafka.errors.TopicAlreadyExistsError):
                    admin.create_topics(
                        [kafka.admin.NewTopic(name, wanted[name], 1, topic_configs=configs)],
                        timeout_ms=int(timeout_s * 1000),
                    )
            deadline = time.monotonic() + timeout_s
            while any(counts.get(n, 0) == 0 for n in missing) and time.monotonic() < deadline:
                time.sleep(0.2)
                counts = _partition_counts(admin, list(wanted))
    finally:
        admin.close()
    have = counts.get(settings.input_topic, 0)
    if have and have != settings.partitions:
        raise ConfigError(
            f"input topic {settings.input_topic!r} has {have} partitions but "
            f"STREAM_RCA_PARTITIONS is {settings.partitions}; they must match (the state "
            "table's changelog has as many partitions as the input topic)"
        )
    return counts


def _partition_counts(admin: Any, topics: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        described = admin.describe_topics(topics)
    except Exception:  # unknown topics make some versions raise
        described = []
        for name in topics:
            try:
                described.extend(admin.describe_topics([name]))
            except Exception:
                continue
    for doc in described:
        name = doc.get("name", doc.get("topic"))  # kafka-python 3 says "name", 2 "topic"
        if doc.get("error_code", 0) == 0 and name:
            out[name] = len(doc.get("partitions", []))
    return out


def simulate(
    settings: Settings,
    config: SimulationConfig,
    *,
    truth_path: str | Path | None = None,
    truth_topic: str | None = "rca.truth",
    producer: Any = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> SimulationReport:
    """Publish simulated metric events (and first the ground truth) to Kafka.

    Parameters
    ----------
    settings
        Broker and input topic (``settings.input_topic``).
    config
        Systems, faults, rate, bounds and the event form.
    truth_path
        Also write the ground truth to this JSON-lines file (one fault a line).
    truth_topic
        Topic for the ground truth (keyed by graph); ``None`` to skip it.
    producer
        A kafka-python producer to use (default: a new one, closed at the end).
    stop
        Set it to stop early (from another thread).
    clock
        Wall clock, unix seconds.

    Returns
    -------
    SimulationReport
        Messages and snapshots sent, the time it took, ``t0`` and the ground truth.
    """
    sim = Simulation(config, now=clock())
    report = SimulationReport(t0=sim.t0, truth=sim.truth())
    own = producer is None
    prod = kafka_producer(settings) if own else producer
    started = time.monotonic()
    try:
        if truth_path is not None:
            with Path(truth_path).open("w", encoding="utf-8") as fh:
                for doc in report.truth:
                    fh.write(json.dumps(doc) + "\n")
        if truth_topic:
            for doc in report.truth:
                prod.send(truth_topic, key=doc["graph"].encode(), value=json.dumps(doc).encode())
        limiter = RateLimiter(config.rate)
        deadline = None if config.duration is None else started + config.duration
        while config.count is None or sim.index < config.count:
            for key, values in sim.snapshots(1):
                if (stop is not None and stop.is_set()) or (
                    deadline is not None and time.monotonic() >= deadline
                ):
                    return report
                limiter.wait(report.snapshots)
                for value in values:
                    prod.send(settings.input_topic, key=key, value=value)
                report.messages += len(values)
                report.snapshots += 1
        return report
    finally:
        prod.flush()
        if own:
            prod.close()
        report.seconds = time.monotonic() - started


def publish_snapshots(
    settings: Settings,
    graph_name: str,
    snapshots: Iterable[Snapshot],
    batch: bool = True,
    *,
    producer: Any = None,
    rate: float = 0.0,
    shift: float = 0.0,
) -> int:
    """Publish snapshots as input events of ``graph_name``, keyed by it.

    Parameters
    ----------
    settings
        Broker and input topic.
    graph_name
        The graph the events are for (a graph of the worker's graphs file).
    snapshots
        Snapshots in time order; ``ts`` is the event time, NaN values (missing) are left out.
    batch
        One batch-form message per snapshot, or one single-form message per value.
    producer
        A kafka-python producer to use (default: a new one, closed at the end).
    rate
        Snapshots per second (0: as fast as possible).
    shift
        Seconds added to every snapshot's ``ts`` (to turn row numbers into times).

    Returns
    -------
    int
        The number of messages sent.
    """
    own = producer is None
    prod = kafka_producer(settings) if own else producer
    key = graph_name.encode()
    limiter = RateLimiter(rate)
    sent = 0
    try:
        for i, snap in enumerate(snapshots):
            limiter.wait(i)
            ts = snap.ts + shift
            if batch:
                values = [encode_batch(graph_name, ts, snap.values, drop_nan=True)]
            else:
                values = [
                    encode_event(graph_name, node, ts, float(v))
                    for node, v in snap.values.items()
                    if not math.isnan(v)
                ]
            for value in values:
                prod.send(settings.input_topic, key=key, value=value)
                sent += 1
    finally:
        prod.flush()
        if own:
            prod.close()
    return sent


def replay_to_kafka(
    path: str | Path,
    settings: Settings,
    *,
    graph: str,
    batch: bool = True,
    rate: float = 0.0,
    nodes: Sequence[str] | None = None,
) -> int:
    """Publish a CSV file (wide or PetShop layout) to the input topic; return messages sent.

    This is what ``stream-rca replay FILE --to-kafka HOST:PORT`` runs (with
    ``settings.kafka_bootstrap`` set to that address). A file without unix timestamps (its
    ``ts`` is the row number) is moved in time so that its last row is one second ago.
    """
    from stream_rca.io import read_snapshots
    from stream_rca.io.timestamps import MIN_TIMESTAMP

    snapshots: list[Snapshot] = list(read_snapshots(path, nodes=nodes, graph=graph))
    shift = 0.0
    if snapshots and snapshots[0].ts < MIN_TIMESTAMP:
        shift = math.floor(time.time() - 1.0 - snapshots[-1].ts)
    return publish_snapshots(settings, graph, snapshots, batch, rate=rate, shift=shift)

"""The faust-streaming app: an agent per worker that runs every graph of its partitions.

:func:`make_app` builds a :class:`faust.App` (no module-level app, no side effects at import):

- one agent, :data:`AGENT_NAME`, consumes the input topic as raw bytes and hands each message
  to a :class:`~stream_rca.streaming.pipeline.Pipeline`; it publishes what comes out
  (attributions and optional scores keyed by graph, dead letters keyed as the input was);
- one table, :data:`TABLE_NAME`, holds each graph's checkpoint (its key is the graph name, its
  changelog topic ``<app_id>-engine-state-changelog`` is compacted). Input events are keyed by
  graph, so a graph lives on one input partition, and its checkpoint on the same changelog
  partition: the input topic and the changelog must have the same number of partitions
  (``settings.partitions``);
- a timer checkpoints the graphs that changed every ``settings.checkpoint_interval`` seconds;
  a rebalance and a shutdown checkpoint them too. A checkpoint is data signed with the
  worker's key (:class:`~stream_rca.streaming.state.CheckpointCodec`): the app refuses to be
  built without ``STREAM_RCA_CHECKPOINT_KEY`` unless ``STREAM_RCA_INSECURE_NO_CHECKPOINT_KEY``
  is set, and refuses graphs whose state cannot be checkpointed
  (:func:`~stream_rca.streaming.state.check_checkpointable`);
- the faust web server is off unless ``settings.web_port`` is set; then it listens on
  127.0.0.1 only and serves neither table views (they would show the checkpoint bytes) nor
  the router or debug pages.

Input offsets are committed at checkpoints only, after the results and the checkpoint are
flushed (:class:`~stream_rca.streaming.runtime.Runtime`), so a committed offset is always
covered by a checkpoint. After a crash, a worker resumes from the last checkpoint and the
committed offsets, replays the rest, skips the messages a checkpoint already holds
(:meth:`~stream_rca.streaming.state.GraphState.applied`) and publishes the results of the
others again: at least once, with the same incident ids.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import faust
from faust.types import StreamT

from stream_rca.config import GraphSpec, Settings
from stream_rca.errors import ConfigError
from stream_rca.observability import PipelineMetrics
from stream_rca.report import ReportWriter
from stream_rca.streaming.batch import write_pages
from stream_rca.streaming.brokers import Broker, KafkaBroker
from stream_rca.streaming.changes import ChangeService, serve_change_requests
from stream_rca.streaming.errors import QuarantinePolicy
from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.reader import BatchReader, hold_input, pause_input
from stream_rca.streaming.records import Outcome
from stream_rca.streaming.runtime import Runtime
from stream_rca.streaming.state import (
    MAX_CHECKPOINT_BYTES,
    CheckpointCodec,
    check_checkpointable,
)

__all__ = [
    "AGENT_NAME",
    "MAX_CHECKPOINT_BYTES",
    "TABLE_NAME",
    "broker_credentials",
    "make_app",
    "runtime_of",
]

log = logging.getLogger("stream_rca.streaming")

AGENT_NAME = "rca"
TABLE_NAME = "engine-state"
PRODUCER_BATCH_BYTES = 1024 * 1024
"""The producer's batch per partition, bytes (faust's default is 16 KiB)."""
WEB_BIND = "127.0.0.1"
"""The faust web server, when on, listens on the loopback interface only."""


_RUNTIME_ATTR = "_stream_rca_runtime"


def runtime_of(app: faust.App) -> Runtime:
    """The :class:`Runtime` of an app made by :func:`make_app`."""
    runtime = getattr(app, _RUNTIME_ATTR, None)
    if not isinstance(runtime, Runtime):
        raise TypeError(f"{app!r} was not made by stream_rca.streaming.make_app")
    return runtime


def broker_credentials(settings: Settings) -> Any:
    """faust credentials for the security settings (``None`` for ``PLAINTEXT``).

    Raises
    ------
    ConfigError
        For an unknown ``security_protocol``.
    """
    protocol = settings.security_protocol.upper()
    if protocol == "PLAINTEXT":
        return None
    if protocol not in {"SSL", "SASL_PLAINTEXT", "SASL_SSL"}:
        raise ConfigError(
            f"security_protocol {settings.security_protocol!r} is not one of PLAINTEXT, SSL, "
            "SASL_PLAINTEXT, SASL_SSL"
        )
    context: ssl.SSLContext | None = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=settings.ssl_cafile)
        if settings.ssl_certfile:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        ssl_context=context,
        mechanism=settings.sasl_mechanism or "PLAIN",
    )


def make_app(
    settings: Settings,
    specs: Sequence[GraphSpec],
    *,
    metrics: PipelineMetrics | None = None,
    broker: Broker | None = None,
    clock: Callable[[], float] = time.time,
    worker_id: str | None = None,
    session_timeout: float = 30.0,
) -> faust.App:
    """Build the faust app of a stream-rca worker.

    Parameters
    ----------
    settings
        Broker, topics, ports, checkpoint interval, partitions, data directory.
    specs
        The graphs to serve (:func:`stream_rca.config.load_graphs`).
    metrics
        Prometheus metrics to update, if any.
    broker
        Where records and offsets go and missed input is read again; default: Kafka, with
        the topics of ``settings``. Tests pass a
        :class:`~stream_rca.streaming.brokers.MemoryBroker`.
    clock
        Wall clock (unix seconds) for the pipeline.
    worker_id
        Names this worker's data directory, ``<data_dir>/<app_id>/<worker_id>``; default
        ``<hostname>-<pid>``.
    session_timeout
        Seconds after which the group drops a silent worker and gives its partitions to
        the others (the failover time after a crash).

    Returns
    -------
    faust.App
        Run it with ``app.Worker(...)`` (see :func:`stream_rca.streaming.worker.run_worker`)
        or test its agent with ``app.agents[AGENT_NAME].test_context()``.

    Raises
    ------
    ConfigError
        Without graphs; without a checkpoint key (unless the insecure flag is set); for a
        graph whose state cannot be checkpointed (river mechanisms, or too large).
    """
    if not specs:
        raise ConfigError("the worker needs at least one graph; give a graphs file")
    codec = CheckpointCodec.from_settings(settings)
    for spec in specs:
        check_checkpointable(spec, codec.max_bytes)
    wid = worker_id or f"{socket.gethostname()}-{os.getpid()}"
    datadir = Path(settings.data_dir) / settings.app_id / wid
    brokers = [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",") if h.strip()]
    app = faust.App(
        settings.app_id,
        broker=brokers,
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=settings.web_port > 0,
        web_bind=WEB_BIND,
        web_host=WEB_BIND,
        web_port=max(settings.web_port, 1),
        web_tables_enabled=False,  # /table/engine-state/<graph>/ would serve checkpoints
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=min(3.0, session_timeout / 3),
        producer_max_request_size=MAX_CHECKPOINT_BYTES + 65536,
        # aiokafka keeps one produce request in flight per broker, with one batch per
        # partition: with faust's 16 KiB batches a block's score documents took hundreds of
        # round trips (each waking the broker) where a few do
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        consumer_max_fetch_size=MAX_CHECKPOINT_BYTES + 65536,
        producer_acks=-1,
    )
    source = app.topic(
        settings.input_topic,
        partitions=settings.partitions,
        allow_empty=True,
        acks=False,  # offsets are committed at checkpoints, not by faust (see runtime.py)
        key_serializer="raw",
        value_serializer="raw",
    )
    topics = {
        kind: app.topic(name, key_serializer="raw", value_serializer="raw")
        for kind, name in (
            ("attributions", settings.attributions_topic),
            ("scores", settings.scores_topic),
            ("deadletter", settings.deadletter_topic),
            ("changes", settings.changes_topic),
        )
    }
    table = app.Table(
        TABLE_NAME,
        partitions=settings.partitions,
        key_type=str,
        value_type=bytes,
        extra_topic_configs={
            "max.message.bytes": str(MAX_CHECKPOINT_BYTES),
            "segment.ms": str(10 * 60 * 1000),
            "min.cleanable.dirty.ratio": "0.1",
        },
    )
    changes = ChangeService(specs, after=settings.change_after, clock=clock)
    pipeline = Pipeline(
        specs,
        publish_scores=settings.publish_scores,
        metrics=metrics,
        clock=clock,
        codec=codec,
        error_policy=QuarantinePolicy(settings.quarantine_after),
        changes=changes,
    )
    chosen: Broker = KafkaBroker(app, settings, topics, table) if broker is None else broker
    kafka_broker = chosen if isinstance(chosen, KafkaBroker) else None
    runtime = Runtime(
        app,
        pipeline,
        chosen,
        table=table,
        input_topic=settings.input_topic,
    )
    pipeline.loader = runtime.load
    setattr(app, _RUNTIME_ATTR, runtime)
    # The hot path reads input batches directly (reader.py); faust's own delivery of the
    # input topic stays paused. Tests through test_context() (a MemoryBroker) use the agent.
    reader = BatchReader(runtime, settings) if kafka_broker is not None else None
    if reader is not None:
        runtime.highwater = reader.highwater
        hold_input(app, settings.input_topic)

    pages = _pages(settings, specs)
    runtime.pages = pages  # the batches read directly write them too

    async def rca(stream: StreamT[bytes]) -> AsyncIterator[Outcome]:
        async for event in stream.events():
            outcome = await runtime.handle(event)
            if pages is not None:
                write_pages(pages, outcome)
            yield outcome

    app.agent(source, name=AGENT_NAME)(rca)
    serve_change_requests(app, settings.change_requests_topic, runtime, changes)
    if any(s.grow_from_spans for s in specs):
        from stream_rca.streaming.growth import serve_spans

        serve_spans(app, settings.spans_topic, runtime)
    if reader is not None:
        app.task(_timer(reader.run))
    app.timer(settings.checkpoint_interval, name="checkpoint")(_timer(runtime.checkpoint))
    app.timer(settings.lag_interval, name="consumer-lag")(_timer_sync(runtime.update_lag))
    app.timer(2.5, name="catch-up")(_timer(runtime.catch_up))

    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        await runtime.on_revoked(set(args[0]) if args else set())

    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        if reader is not None:
            pause_input(app.consumer, settings.input_topic)
        await runtime.on_assigned(set(args[0]) if args else set())
        _check_partitions(app, settings)

    async def on_shutdown(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        await runtime.checkpoint("shutdown")
        if kafka_broker is not None:
            kafka_broker.close()

    _connect(app.on_partitions_revoked, on_revoked)
    _connect(app.on_partitions_assigned, on_assigned)
    _connect(app.on_before_shutdown, on_shutdown)
    return app


def _pages(settings: Settings, specs: Sequence[GraphSpec]) -> ReportWriter | None:
    """The incident-page writer of ``settings.report_dir``, if set."""
    if settings.report_dir is None:
        return None
    return ReportWriter(settings.report_dir, {s.name: list(s.graph.edges) for s in specs})


def _connect(signal: Any, handler: Callable[..., Awaitable[None]]) -> None:
    # mode's SignalHandlerT (mypy_extensions VarArg/NamedArg) accepts no function at all
    # under mypy, so the signal is typed Any here.
    signal.connect(handler)


def _timer(fun: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
    async def tick() -> None:
        await fun()

    return tick


def _timer_sync(fun: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def tick() -> None:
        fun()

    return tick


def _check_partitions(app: faust.App, settings: Settings) -> None:
    try:
        n = app.consumer.topic_partitions(settings.input_topic)
    except Exception:
        return
    if n is not None and n != settings.partitions:
        log.error(
            "input topic %r has %d partitions but the worker is configured for %d "
            "(STREAM_RCA_PARTITIONS): a graph's checkpoint would land on the wrong changelog "
            "partition; recreate the topic or fix the setting",
            settings.input_topic,
            n,
            settings.partitions,
        )

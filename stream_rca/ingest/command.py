"""The ``ingest`` and ``simulate-exporter`` subcommands.

``stream-rca ingest --config graphs.yaml`` serves the receiver (:mod:`stream_rca.ingest.server`)
for the graphs whose entries have an ``ingest`` key, writing to the input topic, or with
``--embedded`` to an engine in this process (attributions as JSON lines on stdout or
``--output``). Its settings (address, port, token, TLS, limits) are in the settings table.
``stream-rca simulate-exporter`` serves simulated graphs for Prometheus to scrape
(:mod:`stream_rca.ingest.exporter`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
import time
from typing import Any

from stream_rca.cli_settings import add_settings, redact_logs, report, settings_from_args
from stream_rca.config import Settings
from stream_rca.errors import ConfigError

__all__ = ["register"]

log = logging.getLogger("stream_rca.ingest")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``ingest`` and ``simulate-exporter`` to the ``stream-rca`` subcommands."""
    p = subparsers.add_parser(
        "ingest",
        help="receive Prometheus remote-write and OTLP metrics, write them to the input topic",
        description="An HTTP receiver: POST /api/v1/write (Prometheus remote-write 1.0) and "
        "POST /v1/metrics (OTLP/HTTP, protobuf or JSON). The graphs file's 'ingest' keys say "
        "which series feed which node. A request is answered once Kafka has all of it.",
    )
    p.add_argument(
        "--output",
        metavar="FILE.jsonl",
        help="with --embedded: write attribution documents here (default: stdout)",
    )
    add_settings(p, "ingest")
    p.set_defaults(handler=lambda args: report("stream-rca ingest", _run_ingest, args))

    e = subparsers.add_parser(
        "simulate-exporter",
        help="serve simulated service metrics with injected faults for Prometheus to scrape",
        description="Each scrape of /metrics draws the next snapshot of the simulated graphs "
        "(sim_value gauges, sim_value_total counters, sim_value_seconds histograms, and the "
        "ground truth as sim_fault_active).",
    )
    e.add_argument("--addr", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    e.add_argument("--port", type=int, default=9102, help="listen port (default 9102)")
    e.add_argument("--graphs", type=int, default=1, metavar="K", help="simulated systems")
    e.add_argument("--prefix", default="shop", help="graph name prefix (default shop)")
    e.add_argument("--seed", type=int, default=0, help="seed of systems and faults")
    e.add_argument("--faults", type=int, default=1000, help="faults per graph (default 1000)")
    e.add_argument("--first-fault", type=int, default=200, help="snapshot of the first fault")
    e.add_argument("--fault-every", type=int, default=100, help="snapshots between faults")
    e.add_argument("--fault-duration", type=int, default=5, help="snapshots a fault lasts")
    e.set_defaults(handler=lambda args: report("stream-rca simulate-exporter", _run_exporter, args))


def _run_exporter(args: argparse.Namespace) -> int:
    from stream_rca.ingest.exporter import SimulatedExporter
    from stream_rca.streaming.simulator import SimulationConfig

    config = SimulationConfig(
        graphs=args.graphs,
        prefix=args.prefix,
        seed=args.seed,
        count=None,
        faults=args.faults,
        first_fault=args.first_fault,
        fault_every=args.fault_every,
        fault_duration=args.fault_duration,
    )
    try:
        server = SimulatedExporter(config).serve(args.port, args.addr)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.addr}:{args.port}: {exc.strerror}") from None
    host, port = server.server_address[:2]
    print(f"stream-rca simulate-exporter: http://{host!s}:{port}/metrics", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    server.shutdown()
    return 0


def _run_ingest(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from stream_rca.config import load_graphs
    from stream_rca.ingest.convert import Converter
    from stream_rca.ingest.mapping import SeriesIndex
    from stream_rca.ingest.server import Receiver
    from stream_rca.ingest.sinks import EmbeddedSink, KafkaSink, Sink

    settings = settings_from_args(args, "ingest")
    redact_logs(settings)
    logging.basicConfig(
        level=settings.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not settings.config:
        raise ConfigError("ingest needs a graphs file: --config FILE (STREAM_RCA_CONFIG)")
    specs = load_graphs(settings.config)
    rules = [rule for spec in specs for rule in spec.ingest]
    if not rules:
        raise ConfigError(
            f"{settings.config}: no graph has an 'ingest' key, so no series would be taken"
        )
    if args.output and not settings.ingest_embedded:
        raise ConfigError("--output is for --embedded (else attributions go to Kafka)")
    ssl_context = _tls(settings)
    converter = Converter(SeriesIndex(rules))
    sink: Sink
    if settings.ingest_embedded:
        from stream_rca.streaming.pipeline import Pipeline

        output = sys.stdout
        if args.output:
            try:
                output = open(args.output, "a", encoding="utf-8")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise ConfigError(f"--output {args.output}: {exc.strerror}") from None
        sink = EmbeddedSink(Pipeline(specs, clock=time.time), output)
        where = "an embedded engine"
    else:
        sink = KafkaSink(
            _producer(settings),
            settings.input_topic,
            max_pending_bytes=settings.ingest_pending_bytes,
            ack_timeout=settings.ingest_ack_timeout,
        )
        where = f"topic {settings.input_topic} on {settings.kafka_bootstrap}"
    receiver = Receiver(
        converter,
        sink,
        CollectorRegistry(),
        token=settings.ingest_token,
        max_body=settings.ingest_max_body,
        retry_after=settings.ingest_retry_after,
    )
    try:
        asyncio.run(_serve(receiver, settings, ssl_context, where))
    finally:
        sink.close()
    return 0


def _tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.ingest_tls_cert is None or settings.ingest_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.ingest_tls_cert, settings.ingest_tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"--ingest-tls-cert {settings.ingest_tls_cert} / --ingest-tls-key: {exc}"
        ) from None
    return context


def _producer(settings: Settings) -> Any:
    from stream_rca.errors import BrokerUnavailableError
    from stream_rca.streaming.connect import check_broker
    from stream_rca.streaming.producers import kafka_producer

    check_broker(settings)
    producer = kafka_producer(
        settings,
        client_id="stream-rca-ingest",
        linger_ms=2,
        max_block_ms=5000,
    )
    try:
        producer.partitions_for(settings.input_topic)  # metadata now, so send() never waits
    except Exception as exc:
        producer.close(timeout=2)
        raise BrokerUnavailableError(
            f"no metadata for topic {settings.input_topic!r} from {settings.kafka_bootstrap} "
            f"({type(exc).__name__}); create it (a worker does) or enable auto-creation"
        ) from None
    return producer


async def _serve(
    receiver: Any, settings: Settings, ssl_context: ssl.SSLContext | None, where: str
) -> None:
    from aiohttp import web

    runner = web.AppRunner(receiver.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.ingest_addr, settings.ingest_port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {settings.ingest_addr}:{settings.ingest_port}: {exc.strerror}"
        ) from None
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context is not None else "http"
    print(
        f"stream-rca ingest: listening on {scheme}://{settings.ingest_addr}:{port} "
        f"(remote-write /api/v1/write, OTLP /v1/metrics, /metrics), writing to {where}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()

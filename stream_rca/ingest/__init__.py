"""``stream-rca ingest``: receive Prometheus remote-write and OTLP/HTTP metrics, write batch
events to the input topic (or an embedded engine).

Modules: :mod:`~stream_rca.ingest.mapping` (the graphs file's ``ingest`` key: which series feed
which node), :mod:`~stream_rca.ingest.convert` (samples to batch events: rates, histogram
quantiles), :mod:`~stream_rca.ingest.wire` (remote-write protobuf and snappy),
:mod:`~stream_rca.ingest.otlp`, :mod:`~stream_rca.ingest.sinks` (Kafka with acknowledgements,
or the embedded engine), :mod:`~stream_rca.ingest.server` (the HTTP endpoints),
:mod:`~stream_rca.ingest.command` (the subcommands) and :mod:`~stream_rca.ingest.exporter` (a
simulated system as a Prometheus scrape target). This package module imports none of the
heavy ones, so the graphs file can read the mapping without aiohttp or protobuf.
"""

from stream_rca.ingest.mapping import SeriesIndex, SeriesRule, parse_ingest, parse_selector

__all__ = ["SeriesIndex", "SeriesRule", "parse_ingest", "parse_selector"]

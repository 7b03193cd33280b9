"""Prometheus metrics of the receiver, on an injected registry.

Labels are bounded: ``protocol`` is ``remote_write`` or ``otlp``, ``reason`` one of
:data:`~stream_rca.ingest.convert.REJECT_REASONS`, ``code`` an HTTP status.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_rca.ingest.convert import REJECT_REASONS

__all__ = ["PROTOCOLS", "IngestMetrics"]

PROTOCOLS = ("remote_write", "otlp")


class IngestMetrics:
    """Counters of requests by answer, refusals by reason, samples and events written.

    Examples
    --------
    >>> registry = CollectorRegistry()
    >>> m = IngestMetrics(registry)
    >>> m.rejected("otlp", "stale_marker", 400)
    >>> registry.get_sample_value(
    ...     "stream_rca_ingest_rejected_total", {"protocol": "otlp", "reason": "stale_marker"})
    1.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "stream_rca_ingest_requests",
            "Requests answered, by protocol and HTTP status",
            ["protocol", "code"],
            registry=registry,
        )
        self.rejections = Counter(
            "stream_rca_ingest_rejected",
            "Requests refused whole, by protocol and reason",
            ["protocol", "reason"],
            registry=registry,
        )
        self.samples = Counter(
            "stream_rca_ingest_samples",
            "Samples accepted (acknowledged to the sender), by protocol",
            ["protocol"],
            registry=registry,
        )
        self.repeats = Counter(
            "stream_rca_ingest_repeated_samples",
            "Samples ignored because their series already had a newer or equal one",
            ["protocol"],
            registry=registry,
        )
        self.events = Counter(
            "stream_rca_ingest_events",
            "Batch events written to the input topic (or the embedded engine)",
            registry=registry,
        )
        self.seconds = Histogram(
            "stream_rca_ingest_request_seconds",
            "Time to answer a request, acknowledgements included",
            ["protocol"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.pending = Gauge(
            "stream_rca_ingest_pending_bytes",
            "Bytes of events sent and not yet acknowledged by Kafka",
            registry=registry,
        )
        for protocol in PROTOCOLS:
            self.samples.labels(protocol)
            self.repeats.labels(protocol)
            for reason in REJECT_REASONS:
                self.rejections.labels(protocol, reason)

    def rejected(self, protocol: str, reason: str, code: int) -> None:
        """Count a refused request."""
        self.rejections.labels(protocol, reason).inc()
        self.requests.labels(protocol, str(code)).inc()

    def accepted(self, protocol: str, code: int, samples: int, repeats: int, events: int) -> None:
        """Count an acknowledged request."""
        self.requests.labels(protocol, str(code)).inc()
        self.samples.labels(protocol).inc(samples)
        if repeats:
            self.repeats.labels(protocol).inc(repeats)
        self.events.inc(events)

    def track_pending(self, pending: Callable[[], int]) -> None:
        """Report ``pending()`` at each scrape."""
        self.pending.set_function(lambda: float(pending()))

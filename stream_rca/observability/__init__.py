"""Prometheus metrics of the pipeline (on an injected registry) and their HTTP exporter."""

from stream_rca.observability.exporter import MetricsServer, serve
from stream_rca.observability.metrics import LATENCY_BUCKETS, PipelineMetrics

__all__ = ["LATENCY_BUCKETS", "MetricsServer", "PipelineMetrics", "serve"]

"""Prometheus metrics of the pipeline (on an injected registry) and their HTTP exporter."""

from stream_rca.observability.exporter import MetricsServer, serve
from stream_rca.observability.families import LATENCY_BUCKETS, MetricFamilies
from stream_rca.observability.metrics import PipelineMetrics

__all__ = ["LATENCY_BUCKETS", "MetricFamilies", "MetricsServer", "PipelineMetrics", "serve"]

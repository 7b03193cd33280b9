"""OTLP/HTTP metrics (``ExportMetricsServiceRequest``, protobuf or JSON) to converter samples.

A data point's labels are its resource's attributes overlaid with its own (the point's win),
the metric name standing as ``__name__``; attribute values are compared as text. How each
kind of metric feeds a node of each rule type:

- ``gauge`` rule: a Gauge, or a Sum (its value as is);
- ``counter`` rule: a monotonic Sum; cumulative points become rates like Prometheus counters,
  delta points their value divided by the point's interval;
- ``histogram`` rule: a Histogram with explicit bounds (cumulative or delta).

Anything else (exponential histograms, summaries, a gauge for a counter rule) refuses the
request with ``wrong_type``. A point flagged "no recorded value" is OTLP's stale marker.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from stream_rca.ingest.convert import Batch, RejectedError, describe

__all__ = ["decode_otlp", "feed_otlp", "otlp_response"]

_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_NO_RECORDED_VALUE = 1


def decode_otlp(body: bytes, *, json: bool) -> Any:
    """Parse an ``ExportMetricsServiceRequest``; refuse it whole when it is not one.

    Raises
    ------
    RejectedError
        ``malformed_protobuf`` or ``malformed_json``.
    """
    request = ExportMetricsServiceRequest()
    if json:
        try:
            json_format.Parse(body.decode("utf-8"), request, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
            text = " ".join(str(exc).split())[:200]
            raise RejectedError("malformed_json", f"not an OTLP metrics request: {text}") from None
        return request
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        text = " ".join(str(exc).split())[:200]
        raise RejectedError("malformed_protobuf", f"not an OTLP metrics request: {text}") from None
    return request


def otlp_response(*, json: bool) -> bytes:
    """The body of a success answer: an empty ``ExportMetricsServiceResponse``."""
    if json:
        return b"{}"
    return bytes(ExportMetricsServiceResponse().SerializeToString())


def _text(value: Any) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    got = getattr(value, kind)
    if kind == "bool_value":
        return "true" if got else "false"
    if kind in ("string_value", "int_value", "double_value"):
        return str(got)
    return json_format.MessageToJson(value, indent=None)


def _attributes(attrs: Any) -> dict[str, str]:
    return {a.key: _text(a.value) for a in attrs}


def feed_otlp(request: Any, batch: Batch) -> None:
    """Add every data point of ``request`` to ``batch``.

    Raises
    ------
    RejectedError
        For the first point that cannot be used (the whole request is refused).
    """
    for rm in request.resource_metrics:
        resource = _attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _metric(metric, resource, batch)


def _metric(metric: Any, resource: dict[str, str], batch: Batch) -> None:
    data = metric.WhichOneof("data")
    if data is None:
        return
    body = getattr(metric, data)
    for point in body.data_points:
        labels = {**resource, **_attributes(point.attributes)}
        key = (("__name__", metric.name), *sorted(labels.items()))
        matches = batch.matches(key)
        ts = batch.seconds(point.time_unix_nano / 1e9, key)
        if point.flags & _NO_RECORDED_VALUE:
            raise RejectedError("stale_marker", f"{describe(key)}: no recorded value (stale)")
        for match in matches:
            rule = match.rule
            wrong = RejectedError(
                "wrong_type",
                f"{describe(key)} is an OTLP {data}; node {rule.node!r} of graph "
                f"{rule.graph!r} wants a {rule.kind}",
            )
            if rule.kind == "histogram":
                if data != "histogram" or match.part != "whole":
                    raise wrong
                _histogram(point, body.aggregation_temporality, match, key, ts, batch)
                continue
            if data not in ("gauge", "sum"):
                raise wrong
            value = float(getattr(point, point.WhichOneof("value") or "as_double"))
            if rule.kind == "counter":
                if data != "sum" or not body.is_monotonic:
                    raise wrong
                if body.aggregation_temporality != _CUMULATIVE:
                    start = point.start_time_unix_nano / 1e9
                    if not ts > start:
                        raise RejectedError(
                            "bad_timestamp", f"{describe(key)}: a delta point without interval"
                        )
                    value = value / (ts - start)
                    batch.rate(match, key, ts, value)
                    continue
            batch.sample(match, key, ts, value)


def _histogram(point: Any, temporality: int, match: Any, key: Any, ts: float, batch: Batch) -> None:
    bounds = list(point.explicit_bounds)
    counts = list(point.bucket_counts)
    if len(counts) != len(bounds) + 1 or any(b >= c for b, c in itertools.pairwise(bounds)):
        raise RejectedError(
            "malformed_series", f"{describe(key)}: bucket counts do not fit the explicit bounds"
        )
    parts: dict[float | str, float] = {}
    running = 0.0
    for bound, count in zip([*bounds, math.inf], counts, strict=True):
        running += count
        parts[float(bound)] = running
    parts["count"] = float(point.count)
    parts["sum"] = float(point.sum) if point.HasField("sum") else math.nan
    if math.isnan(parts["sum"]):
        if match.rule.quantile is None:
            raise RejectedError("malformed_series", f"{describe(key)}: the mean needs a sum")
        del parts["sum"]
    batch.histogram(match.rule, key, ts, parts, cumulative=temporality == _CUMULATIVE)

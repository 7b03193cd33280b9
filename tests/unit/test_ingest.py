"""The ingest receiver in-process: remote-write and OTLP bodies, bad input refused whole."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cramjam
import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from prometheus_client import CollectorRegistry

from stream_rca.config import load_graphs
from stream_rca.errors import ConfigError
from stream_rca.ingest.convert import Converter, RejectedError
from stream_rca.ingest.mapping import SeriesIndex, parse_ingest
from stream_rca.ingest.server import Receiver
from stream_rca.ingest.wire import encode_write_request

NOW = 1_700_000_000.0
STALE = struct.unpack("<d", (0x7FF0000000000002).to_bytes(8, "little"))[0]
MAPPING = {
    "db": 'lat{service="db"}',
    "api": {"series": 'req_total{service="api"}', "type": "counter"},
    "web": {"series": 'dur{service="web"}', "type": "histogram"},
}


class ListSink:
    """Keeps the events it is given; refuses with a chosen error when told to."""

    def __init__(self) -> None:
        self.events: list[tuple[bytes, bytes]] = []
        self.refuse: RejectedError | None = None

    @property
    def pending_bytes(self) -> int:
        return 0

    async def write(self, events: Sequence[tuple[bytes, bytes]]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.events.extend(events)

    def close(self) -> None:
        pass

    def docs(self) -> list[dict[str, Any]]:
        return [json.loads(v) for _, v in self.events]


def receiver(sink: ListSink, **options: Any) -> Receiver:
    rules = parse_ingest(MAPPING, "shop", ["db", "api", "web"], "ingest")
    return Receiver(
        Converter(SeriesIndex(rules)), sink, CollectorRegistry(), clock=lambda: NOW, **options
    )


def post(rx: Receiver, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with TestClient(TestServer(rx.app())) as client:
            response = await client.post(path, data=body, headers=headers)
            return response.status, (response.headers, await response.read())

    return asyncio.run(go())


RW = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


def write(series: list[tuple[dict[str, str], list[tuple[int, float]]]]) -> bytes:
    return encode_write_request(series)


def test_remote_write_gauges_counters_and_histograms_become_batch_events() -> None:
    sink = ListSink()
    rx = receiver(sink)
    t0 = int(NOW * 1000)
    hist = {"__name__": "dur_bucket", "service": "web"}
    for k in range(3):
        ts = t0 + 1000 * k
        body = write(
            [
                ({"__name__": "lat", "service": "db"}, [(ts, 0.5 + k)]),
                ({"__name__": "req_total", "service": "api"}, [(ts, 10.0 * k)]),
                ({**hist, "le": "0.1"}, [(ts, 1.0 * k)]),
                ({**hist, "le": "1"}, [(ts, 2.0 * k)]),
                ({**hist, "le": "+Inf"}, [(ts, 2.0 * k)]),
                ({"__name__": "dur_sum", "service": "web"}, [(ts, 0.6 * k)]),
                ({"__name__": "dur_count", "service": "web"}, [(ts, 2.0 * k)]),
            ]
        )
        status, _ = post(rx, "/api/v1/write", body, RW)
        assert status == 204
    docs = sink.docs()
    assert [d["ts"] for d in docs] == [NOW, NOW + 1, NOW + 2]
    assert docs[0]["values"] == {"db": 0.5}  # a rate and a histogram need two samples
    assert docs[1]["values"] == pytest.approx({"db": 1.5, "api": 10.0, "web": 0.3})
    assert docs[2]["values"] == pytest.approx({"db": 2.5, "api": 10.0, "web": 0.3})
    assert {k for k, _ in sink.events} == {b"shop"}


@pytest.mark.parametrize(
    ("series", "reason"),
    [
        ([({"__name__": "lat", "service": "other"}, [(1, 1.0)])], "unknown_series"),
        ([({"__name__": "lat", "service": "db"}, [(int(NOW * 1000), math.nan)])], "non_finite"),
        ([({"__name__": "lat", "service": "db"}, [(int(NOW * 1000), STALE)])], "stale_marker"),
        ([({"__name__": "lat", "service": "db"}, [(5, 1.0)])], "bad_timestamp"),
    ],
)
def test_a_bad_sample_refuses_the_whole_request(
    series: list[tuple[dict[str, str], list[tuple[int, float]]]], reason: str
) -> None:
    sink = ListSink()
    rx = receiver(sink)
    good = ({"__name__": "lat", "service": "db"}, [(int(NOW * 1000), 1.0)])
    status, (_, text) = post(rx, "/api/v1/write", write([good, *series]), RW)
    assert status == 400
    assert text.decode().startswith(reason)
    assert sink.events == []  # nothing of it written
    counted = rx.registry.get_sample_value(
        "stream_rca_ingest_rejected_total",
        {"protocol": "remote_write", "reason": text.decode().split(":")[0]},
    )
    assert counted == 1.0


def test_malformed_bodies_and_headers_are_4xx() -> None:
    sink = ListSink()
    rx = receiver(sink, max_body=2048, token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    cases = [
        (b"x", {**RW}, 401, "unauthorized"),
        (b"\x05abc", {**RW, **auth}, 400, "bad_compression"),
        (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")), {**RW, **auth}, 400, "malformed"),
        (b"x", {**RW, **auth, "Content-Encoding": "gzip"}, 415, "unsupported_encoding"),
        (b"x", {**RW, **auth, "Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b"x" * 4096, {**RW, **auth}, 413, "too_large"),
    ]
    for body, headers, status, reason in cases:
        got, (_, text) = post(rx, "/api/v1/write", body, headers)
        assert (got, text.decode()[: len(reason)]) == (status, reason), text
    assert sink.events == []


def test_queue_full_is_retryable_with_retry_after() -> None:
    sink = ListSink()
    sink.refuse = RejectedError("queue_full", "full", 503)
    rx = receiver(sink, retry_after=7)
    body = write([({"__name__": "lat", "service": "db"}, [(int(NOW * 1000), 1.0)])])
    status, (headers, _) = post(rx, "/api/v1/write", body, RW)
    assert (status, headers["Retry-After"]) == (503, "7")
    otlp = _otlp_gauge("lat", {"service": "db"}, 1.0)
    status, (headers, _) = post(
        rx, "/v1/metrics", otlp.SerializeToString(), {"Content-Type": "application/x-protobuf"}
    )
    assert (status, headers["Retry-After"]) == (429, "7")
    sink.refuse = None  # the retry goes through, and the state was kept back meanwhile
    assert post(rx, "/api/v1/write", body, RW)[0] == 204


def _otlp_gauge(name: str, attrs: dict[str, str], value: float) -> Any:
    req = ExportMetricsServiceRequest()
    metric = req.resource_metrics.add().scope_metrics.add().metrics.add(name=name)
    point = metric.gauge.data_points.add(time_unix_nano=int(NOW * 1e9), as_double=value)
    for k, v in attrs.items():
        point.attributes.add(key=k).value.string_value = v
    return req


def test_otlp_protobuf_json_and_gzip() -> None:
    sink = ListSink()
    rx = receiver(sink)
    req = _otlp_gauge("lat", {"service": "db"}, 2.5)
    pb = {"Content-Type": "application/x-protobuf"}
    assert post(rx, "/v1/metrics", req.SerializeToString(), pb)[0] == 200
    from google.protobuf import json_format

    text = json_format.MessageToJson(req).encode()
    status, (_, body) = post(rx, "/v1/metrics", text, {"Content-Type": "application/json"})
    assert (status, body) == (200, b"{}")
    zipped = gzip.compress(req.SerializeToString())
    assert post(rx, "/v1/metrics", zipped, {**pb, "Content-Encoding": "gzip"})[0] == 200
    assert [d["values"] for d in sink.docs()] == [{"db": 2.5}] * 3
    status, (_, body) = post(rx, "/v1/metrics", b"{nope", {"Content-Type": "application/json"})
    assert status == 400
    assert json.loads(body)["message"].startswith("malformed_json")
    wrong = _otlp_gauge("dur", {"service": "web"}, 1.0)  # a gauge for a histogram rule
    status, (_, body) = post(rx, "/v1/metrics", wrong.SerializeToString(), pb)
    assert status == 400


def test_graphs_file_ingest_errors_name_file_graph_and_key(tmp_path: Path) -> None:
    path = tmp_path / "graphs.yaml"
    path.write_text(
        "graphs:\n- {name: shop, edges: [[db, api]], ingest: {api: {series: x, type: rate}}}\n"
    )
    with pytest.raises(ConfigError, match=r"graphs.yaml: graph 'shop': ingest: 'api': type:"):
        load_graphs(path)
    path.write_text("graphs:\n- {name: shop, edges: [[db, api]], ingest: {api: 'x{a=~\"(\"}'}}\n")
    with pytest.raises(ConfigError, match=r"ingest: 'api': series: bad regular expression"):
        load_graphs(path)

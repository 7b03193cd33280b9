"""Back-pressure of ``stream-rca ingest`` against a stalled broker (SIGSTOP): requests are
refused with Retry-After and nothing is acknowledged; after SIGCONT the same requests go
through and every sample reaches the input topic exactly once."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from stream_rca.config import Settings
from stream_rca.ingest.wire import encode_write_request
from stream_rca.streaming.testing import TopicReader, isolated_settings, wait_until
from tests.fixtures.kafka import KafkaUnavailableError, local_broker
from tests.integration.test_ingest_e2e import IngestProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GRAPH = "bp"
NODES = [f"n{i}" for i in range(40)]  # a request's event is larger than the pending limit
STOP_AT_MOST_S = 90.0  # the broker is resumed after this, whatever the test does
RW = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
PB = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A broker of this module's own (it is stopped and resumed): bootstrap and pid."""
    state = tmp_path_factory.mktemp("kafka-stalled")
    try:
        with local_broker(state) as bootstrap:
            yield bootstrap, int((state / "kafka.pid").read_text().strip())
    except KafkaUnavailableError as exc:
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"no broker of its own for the back-pressure test under CI=true: {exc}")
        pytest.skip(f"no broker of its own for the back-pressure test: {exc}")


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _remote_write(ts: float, base: float) -> bytes:
    stamp = int(ts * 1000)
    return encode_write_request(
        [({"__name__": "bp_value", "node": n}, [(stamp, base + i)]) for i, n in enumerate(NODES)]
    )


def _otlp(ts: float, base: float) -> bytes:
    req = ExportMetricsServiceRequest()
    metric = req.resource_metrics.add().scope_metrics.add().metrics.add(name="bp_value")
    for i, n in enumerate(NODES):
        point = metric.gauge.data_points.add(time_unix_nano=int(ts * 1e9), as_double=base + i)
        point.attributes.add(key="node").value.string_value = n
    return bytes(req.SerializeToString())


def _pending(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as page:
        text = page.read().decode()
    found = re.search(r"^stream_rca_ingest_pending_bytes (\S+)$", text, re.MULTILINE)
    assert found is not None, text[:2000]
    return float(found.group(1))


def test_a_stalled_broker_gets_retry_after_and_the_retries_land_once(
    broker: tuple[str, int], tmp_path: Path
) -> None:
    bootstrap, pid = broker
    graphs = {
        "graphs": [
            {
                "name": GRAPH,
                "edges": [[NODES[i], NODES[i + 1]] for i in range(len(NODES) - 1)],
                "ingest": {n: f'bp_value{{node="{n}"}}' for n in NODES},
            }
        ]
    }
    settings: Settings = isolated_settings(bootstrap, tmp_path, graphs, prefix="backpressure")
    ingest = IngestProcess(
        settings,
        tmp_path / "ingest.log",
        STREAM_RCA_INGEST_PENDING_BYTES="1024",
        STREAM_RCA_INGEST_ACK_TIMEOUT="4",
        STREAM_RCA_INGEST_RETRY_AFTER="1",
    )
    write_url, otlp_url = f"{ingest.url}/api/v1/write", f"{ingest.url}/v1/metrics"
    t0 = float(int(time.time())) - 60
    warm = _remote_write(t0, 0.0)
    first, otlp, second = (
        _remote_write(t0 + 1, 100.0),
        _otlp(t0 + 2, 200.0),
        _remote_write(t0 + 3, 300.0),
    )
    try:
        assert _post(write_url, warm, RW)[0] == 204  # the producer is connected
        refused: list[tuple[str, int, dict[str, str], bytes]] = []
        os.kill(pid, signal.SIGSTOP)
        resume = threading.Timer(STOP_AT_MOST_S, os.kill, (pid, signal.SIGCONT))
        resume.start()
        try:
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(_post, write_url, first, RW)
                wait_until(lambda: _pending(ingest.url) > 0, 30, "the first request sent")
                refused.append(("otlp", *_post(otlp_url, otlp, PB)))
                refused.append(("second", *_post(write_url, second, RW)))
                refused.append(("first", *waiting.result(timeout=60)))
            # its events are still in flight: the limit keeps holding new requests back
            assert _pending(ingest.url) > 0
            refused.append(("second again", *_post(write_url, second, RW)))
        finally:
            os.kill(pid, signal.SIGCONT)
            resume.cancel()
        statuses = [(name, status) for name, status, _, _ in refused]
        assert statuses == [("otlp", 429), ("second", 503), ("first", 503), ("second again", 503)]
        for _, _, headers, _ in refused:
            assert headers.get("Retry-After") == "1"
        reasons = [body.decode(errors="replace") for _, _, _, body in refused]
        assert "queue_full" in reasons[0]  # a google.rpc.Status naming the reason
        assert reasons[1].startswith("queue_full")
        assert reasons[2].startswith("broker_unavailable")
        assert reasons[3].startswith("queue_full")

        wait_until(lambda: _pending(ingest.url) == 0, 60, "the stalled sends settled")
        assert _post(write_url, first, RW)[0] == 204
        assert _post(otlp_url, otlp, PB)[0] == 200
        assert _post(write_url, second, RW)[0] == 204
        assert _post(write_url, _remote_write(t0 + 4, 400.0), RW)[0] == 204  # the last one
    finally:
        assert ingest.stop() == 0, ingest.log()[-3000:]

    with TopicReader(settings, [settings.input_topic]) as reader:
        reader.wait_until(
            lambda r: any(d and d["ts"] == t0 + 4 for d in r.docs(settings.input_topic)),
            60,
            what="the last request's event",
        )  # one graph, one partition: everything sent before it is there too
        docs = [d for d in reader.docs(settings.input_topic) if d is not None]
    samples = Counter((d["ts"], node, value) for d in docs for node, value in d["values"].items())
    expected = {
        (t0 + k, n, base + i)
        for k, base in enumerate((0.0, 100.0, 200.0, 300.0, 400.0))
        for i, n in enumerate(NODES)
    }
    assert set(samples) == expected
    assert set(samples.values()) == {1}, [s for s, c in samples.items() if c > 1][:5]
    assert len(docs) == 5

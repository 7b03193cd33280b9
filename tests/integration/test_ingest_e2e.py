"""Real senders through ``stream-rca ingest`` to a real worker: a real Prometheus scraping a
simulated exporter and remote-writing, and the OpenTelemetry SDK's OTLP/HTTP exporter; the
injected root causes come out on the attributions topic among the first three causes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_rca.config import Settings
from stream_rca.ingest.exporter import SimulatedExporter, ingest_mapping
from stream_rca.streaming import SimulationConfig
from stream_rca.streaming.simulator import RateLimiter, graphs_document
from stream_rca.streaming.testing import (
    TopicReader,
    WorkerProcess,
    isolated_settings,
    settings_env,
    wait_until,
)
from tests.fixtures.prometheus import free_port, require_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROM_STEP = 0.25
OTLP_STEP = 0.2
SIM: dict[str, Any] = {
    "first_fault": 60,
    "fault_every": 40,
    "fault_duration": 4,
    "faults": 2,
    "strength": (8.0, 12.0),
}
PROM_SIM = SimulationConfig(graphs=1, prefix="prom", seed=3, count=200, step=PROM_STEP, **SIM)
OTLP_SIM = SimulationConfig(graphs=1, prefix="otlp", seed=3, count=200, step=OTLP_STEP, **SIM)
KINDS = {"Caching Service": "counter", "Order DB": "histogram"}


class IngestProcess:
    """``stream-rca ingest`` in a subprocess, its settings in ``STREAM_RCA_*`` variables."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        variables = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
        variables.update({"STREAM_RCA_INGEST_PORT": "0", **env})
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_rca.cli", "ingest"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=variables,
            )
        found: list[str] = []

        def listening() -> bool:
            found[:] = re.findall(r"listening on (http://[\d.]+:\d+)", self.log())
            return bool(found)

        wait_until(listening, 60, "ingest listening", alive=self.running, detail=self.log)
        self.url = found[0]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


@dataclass
class Stack:
    settings: Settings
    reader: TopicReader
    ingest: IngestProcess


def _graphs() -> dict[str, Any]:
    doc: dict[str, Any] = {"graphs": []}
    for config, kinds in ((PROM_SIM, KINDS), (OTLP_SIM, {})):
        (entry,) = graphs_document(config, warmup=30, threshold=6.0)["graphs"]
        nodes = [n for edge in entry["edges"] for n in edge]
        entry["ingest"] = ingest_mapping(entry["name"], sorted(set(nodes)), kinds)
        entry["allowed_lateness"] = 2 * config.step
        doc["graphs"].append(entry)
    return doc


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("ingest-e2e")
    settings = isolated_settings(kafka_bootstrap, tmp, _graphs(), prefix="ingest")
    with TopicReader(settings, [settings.attributions_topic]) as reader:
        worker = WorkerProcess(settings, tmp / "worker.log", worker_id="ingest-1").start()
        ingest = IngestProcess(settings, tmp / "ingest.log")
        try:
            worker.ready()
            yield Stack(settings, reader, ingest)
        finally:
            assert ingest.stop() == 0, ingest.log()[-3000:]
            worker.stop()


def _check_attributions(
    stack: Stack, graph: str, faults: list[Any], windows: list[tuple[float, float]]
) -> None:
    """Every fault has an attribution inside its windows with a root cause among the top 3."""
    topic = stack.settings.attributions_topic

    def hits(fault_window: tuple[float, float]) -> list[dict[str, Any]]:
        lo, hi = fault_window
        return [
            d
            for d in stack.reader.attributions(topic).values()
            if d["graph"] == graph and lo <= d["window"]["start"] <= hi and d["revision"] == 0
        ]

    wait_until(
        lambda: all(hits(w) for w in windows),
        90,
        f"attributions of every fault of {graph}",
        detail=lambda: stack.ingest.log()[-2000:],
    )
    for fault, window in zip(faults, windows, strict=True):
        top3 = [rc["node"] for rc in hits(window)[0]["root_causes"][:3]]
        assert set(top3) & set(fault.nodes), (fault, hits(window)[0])


def _prometheus_config(target: str, url: str, graph: str) -> str:
    keep = "|".join(
        f"{'sim_value_total' if k == 'counter' else 'sim_value_seconds_(sum|count)'};{node}"
        for node, k in KINDS.items()
    )
    config = {
        "global": {"scrape_interval": "250ms", "scrape_timeout": "250ms"},
        "scrape_configs": [{"job_name": "sim", "static_configs": [{"targets": [target]}]}],
        "remote_write": [
            {
                "url": f"{url}/api/v1/write",
                "queue_config": {
                    "min_shards": 1,
                    "max_shards": 1,
                    "batch_send_deadline": "100ms",
                    "min_backoff": "100ms",
                    "max_backoff": "1s",
                },
                "write_relabel_configs": [
                    {
                        "source_labels": ["__name__", "node"],
                        "separator": ";",
                        "regex": f"sim_value;.*|{keep}",
                        "action": "keep",
                    },
                    {  # the gauges of the nodes fed by a counter or a histogram
                        "source_labels": ["__name__", "node"],
                        "separator": ";",
                        "regex": "sim_value;(" + "|".join(KINDS) + ")",
                        "action": "drop",
                    },
                    {"regex": "instance|job", "action": "labeldrop"},
                ],
            }
        ],
    }
    del graph
    return yaml.safe_dump(config, sort_keys=False)


def test_prometheus_remote_write_to_attributions(stack: Stack, tmp_path: Path) -> None:
    binary = require_binary("prometheus")
    exporter = SimulatedExporter(PROM_SIM)
    server = exporter.serve()
    target = f"127.0.0.1:{server.server_address[1]}"
    config = tmp_path / "prometheus.yml"
    config.write_text(_prometheus_config(target, stack.ingest.url, "prom-0"))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        prom = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        sg = exporter.graphs[0]
        last = max(f.start + f.duration for f in sg.system.faults) + 20
        wait_until(lambda: len(exporter.scrapes) > last, 120, "scrapes", alive=lambda: True)
        windows = [
            (
                exporter.scrapes[f.start].wall - 2 * PROM_STEP,
                exporter.scrapes[f.start + f.duration - 1].wall + PROM_STEP,
            )
            for f in sg.system.faults
        ]
        _check_attributions(stack, sg.name, list(sg.system.faults), windows)
        with urllib.request.urlopen(f"{stack.ingest.url}/metrics", timeout=10) as page:
            text = page.read().decode()
        accepted = re.search(
            r'stream_rca_ingest_samples_total\{protocol="remote_write"\} (\S+)', text
        )
        assert accepted is not None
        assert float(accepted.group(1)) > 0
        refused = re.findall(
            r'stream_rca_ingest_rejected_total\{protocol="remote_write",'
            r'reason="(\w+)"\} ([1-9]\S*)',
            text,
        )
        assert refused == [], refused  # the relabelled series are exactly the mapped ones
    finally:
        prom.terminate()
        prom.wait(timeout=20)
        server.shutdown()
        server.server_close()


def test_opentelemetry_sdk_otlp_exporter_to_attributions(stack: Stack) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter = SimulatedExporter(OTLP_SIM)  # its values, drawn here instead of by scrapes
    sg = exporter.graphs[0]
    current: dict[str, float] = {}

    def observe(options: CallbackOptions) -> list[Observation]:
        return [Observation(v, {"graph": sg.name, "node": n}) for n, v in current.items()]

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{stack.ingest.url}/v1/metrics", timeout=10),
        export_interval_millis=3_600_000,  # exported by force_flush only
    )
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("sim").create_observable_gauge("sim_value", callbacks=[observe])
    last = max(f.start + f.duration for f in sg.system.faults) + 20
    walls: list[float] = []
    limiter = RateLimiter(1 / OTLP_STEP)
    try:
        for i in range(last):
            limiter.wait(i)
            current = dict(zip(sg.system.nodes, map(float, sg.system.sample(1)[0]), strict=True))
            walls.append(time.time())
            assert provider.force_flush(timeout_millis=10_000)
    finally:
        provider.shutdown()
    windows = [
        (walls[f.start] - 2 * OTLP_STEP, walls[f.start + f.duration - 1] + OTLP_STEP)
        for f in sg.system.faults
    ]
    _check_attributions(stack, sg.name, list(sg.system.faults), windows)


def test_unauthorised_and_unknown_series_are_refused(stack: Stack) -> None:
    from stream_rca.ingest.wire import encode_write_request

    body = encode_write_request([({"__name__": "nope"}, [(int(time.time() * 1000), 1.0)])])
    request = urllib.request.Request(
        f"{stack.ingest.url}/api/v1/write",
        data=body,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 400
    assert err.value.read().decode().startswith("unknown_series")
    assert stack.ingest.running()

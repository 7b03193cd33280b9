"""A worker on a real broker with a graph-free graph and a causal graph: the graph-free
attribution of an injected fault on rca.attributions, and a why-changed request answered on
rca.changes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream_rca.config import Settings
from stream_rca.streaming.producers import ensure_topics, kafka_producer
from stream_rca.streaming.testing import TopicReader, WorkerProcess, isolated_settings, publish

pytestmark = pytest.mark.integration

WINDOWS = 320
FAULT_AT = 290  # the cache of "flat" slows down from this window on
SHIFT_AT = 200  # the db of "shop" gets slower from this window on (its mechanism changes)
COMMON = {"step": 10.0, "warmup": 30, "threshold": 9.0, "cooldown": 0}
GRAPHS = {
    "graphs": [
        {"name": "flat", "nodes": ["db", "cache", "api", "web"], "targets": ["web"], **COMMON},
        {"name": "shop", "edges": [["db", "api"], ["cache", "api"]], "targets": ["api"], **COMMON},
    ]
}


@dataclass
class Deployment:
    settings: Settings
    reader: TopicReader
    base: float


def _messages(base: float) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(11)
    out = []
    for t in range(WINDOWS):
        ts = base + 10.0 * t
        cache = 1.0 + 0.1 * rng.standard_normal() + (3.0 if t >= FAULT_AT else 0.0)
        db = 2.0 + 0.1 * rng.standard_normal()
        api = db + cache + 0.1 * rng.standard_normal()
        flat = {"db": db, "cache": cache, "api": api, "web": api + 0.1 * rng.standard_normal()}
        out.append((b"flat", json.dumps({"graph": "flat", "ts": ts, "values": flat}).encode()))
        sdb = float(rng.gamma(2.0, 0.5)) + (3.0 if t >= SHIFT_AT else 0.0)
        scache = float(rng.gamma(2.0, 0.5))
        shop = {"db": sdb, "cache": scache, "api": sdb + scache + float(rng.normal(0, 0.3))}
        out.append((b"shop", json.dumps({"graph": "shop", "ts": ts, "values": shop}).encode()))
    return out


@pytest.fixture(scope="module")
def deployment(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("graphfree-changes")
    tag = uuid.uuid4().hex[:8]
    settings = isolated_settings(
        kafka_bootstrap,
        tmp,
        GRAPHS,
        prefix="gfree",
        checkpoint_interval=2.0,
        changes_topic=f"gfree-{tag}.changes",
        change_requests_topic=f"gfree-{tag}.change-requests",
    )
    n = settings.partitions
    ensure_topics(settings, extra={settings.changes_topic: n, settings.change_requests_topic: n})
    topics = [
        settings.attributions_topic,
        settings.deadletter_topic,
        settings.scores_topic,
        settings.changes_topic,
    ]
    base = (time.time() // 10.0) * 10.0 - 10.0 * (WINDOWS + 10)  # every window in the past
    with TopicReader(settings, topics) as reader:
        worker = WorkerProcess(settings, Path(tmp) / "worker.log", worker_id="gfree-1").start()
        try:
            worker.ready()
            publish(settings, _messages(base))
            yield Deployment(settings, reader, base)
        finally:
            code = worker.stop()
            assert code == 0, worker.log()[-3000:]


def _of(reader: TopicReader, topic: str, graph: str) -> list[dict[str, Any]]:
    return [d for d in reader.docs(topic) if isinstance(d, dict) and d.get("graph") == graph]


def test_a_graph_free_graph_names_the_injected_cause(deployment: Deployment) -> None:
    settings, reader = deployment.settings, deployment.reader
    topic = settings.attributions_topic
    reader.wait_until(
        lambda r: bool(_of(r, topic, "flat")), 120, what="a graph-free attribution of flat"
    )
    doc = _of(reader, topic, "flat")[0]
    assert doc["method"] == "graph-free"
    assert doc["graph_used"] is False
    assert "rule" in doc
    assert doc["target"] == "web"
    assert doc["root_causes"][0]["node"] == "cache"  # the injected cause
    assert doc["window"]["start"] >= deployment.base + 10.0 * FAULT_AT
    assert not [d for d in reader.docs(settings.deadletter_topic) if d.get("graph") == "flat"]


def test_a_why_changed_request_is_answered_on_the_changes_topic(deployment: Deployment) -> None:
    settings, reader, base = deployment.settings, deployment.reader, deployment.base
    last = base + 10.0 * (WINDOWS - 5)

    def processed(r: TopicReader) -> bool:  # the worker has scored shop's windows up to here
        return any(d["window"]["start"] >= last for d in _of(r, settings.scores_topic, "shop"))

    reader.wait_until(processed, 120, what="shop's last windows scored")
    producer = kafka_producer(settings)
    try:
        for request in (
            {"graph": "shop", "target": "api", "statistic": "mean"},
            {"graph": "flat", "target": "web"},  # graph-free: nothing to compare
        ):
            producer.send(settings.change_requests_topic, value=json.dumps(request).encode())
        producer.flush()
    finally:
        producer.close()

    def answered(r: TopicReader) -> bool:
        return any(d.get("trigger") == "request" for d in _of(r, settings.changes_topic, "shop"))

    reader.wait_until(answered, 60, what="the answer to the change request")
    (doc,) = [d for d in _of(reader, settings.changes_topic, "shop") if d["trigger"] == "request"]
    assert doc["schema"] == "stream-rca.change/v1"
    assert doc["target"] == "api"
    assert doc["contributions"][0]["node"] == "db"  # the mechanism that changed
    assert doc["periods"]["before"]["from"] < base + 10.0 * SHIFT_AT  # normal rows

    def refused(r: TopicReader) -> bool:
        return any(
            d.get("reason") == "unknown_graph" and "graph-free" in d.get("message", "")
            for d in r.docs(settings.deadletter_topic)
        )

    reader.wait_until(refused, 30, what="the dead letter of the graph-free request")

"""Every record accounted for, on a real broker: a bounded hostile mix through a worker.

Valid single and batch events, invalid JSON, unknown graphs and nodes, NaN, wrong types,
payloads of quotes and control characters near the size limit, events from the future, late
events, a tombstone, and a graph whose engine raises on every snapshot (a fault injected in the
worker subprocess, ``failing_worker.py``). Each sent record's partition and offset is known from
the broker's acknowledgement, so every one is checked: dead-lettered with the expected reason
exactly once, or processed; ``processed + dead-lettered == sent`` on the worker's own Prometheus
endpoint; the broken graph quarantined while the other goes on.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_rca.config import Settings
from stream_rca.io.deadletter import DEAD_LETTER_MAX_BYTES
from stream_rca.streaming.producers import kafka_producer
from stream_rca.streaming.testing import (
    TopicReader,
    WorkerProcess,
    committed_offsets,
    isolated_settings,
    settings_env,
    wait_until,
)

pytestmark = pytest.mark.integration

FAILING_WORKER = Path(__file__).with_name("failing_worker.py")
K = 40  # windows of each graph
STEP = 10.0
GRAPHS = {
    "graphs": [
        {"name": name, "edges": [["db", "api"]], "targets": ["api"], "step": STEP, "warmup": 10}
        for name in ("shop", "broken")
    ]
}


@dataclass(frozen=True)
class Planned:
    key: bytes | None
    value: bytes | None
    reason: str | None  # the expected dead-letter reason; None: processed


class FaultyWorker(WorkerProcess):
    """The real worker, started through ``failing_worker.py`` with graph ``broken`` broken."""

    def start(self) -> FaultyWorker:
        env = {
            **settings_env(self.settings),
            "PYTHONUNBUFFERED": "1",
            "RCA_TEST_BROKEN_GRAPHS": "broken",
        }
        cmd = [sys.executable, str(FAILING_WORKER), "worker", "--worker-id", self.worker_id]
        cmd += ["--session-timeout", str(self.session_timeout), "--loglevel", self.loglevel]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
            )
        return self


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def j(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def hostile_mix(now: float, seed: int = 7) -> list[Planned]:
    """The messages, in sending order, each with the outcome it must have."""
    rng = np.random.default_rng(seed)
    base = math.floor((now - 1800.0) / STEP) * STEP  # half an hour ago, window-aligned

    def ts(k: int, dt: float = 0.0) -> float:
        return base + STEP * k + dt

    def shop_batch(k: int) -> bytes:
        db = float(rng.gamma(2.0, 0.1))
        return j({"graph": "shop", "ts": ts(k), "values": {"db": db, "api": db + 0.3}})

    shop, broken = b"shop", b"broken"
    plan: list[Planned] = []
    for k in range(K):
        value = shop_batch(k)
        plan.append(Planned(shop, value, None))
        reason = None if k == 0 else "processing_error" if k <= 5 else "graph_quarantined"
        plan.append(
            Planned(broken, j({"graph": "broken", "ts": ts(k), "values": {"db": 1}}), reason)
        )
        if k == 3:  # a single event revising a value of the open window
            plan.append(
                Planned(shop, j({"graph": "shop", "node": "db", "ts": ts(k, 1), "value": 2}), None)
            )
        if k == 4:  # delivered twice
            plan.append(Planned(shop, value, None))
        if k == 6:  # its window was emitted long ago
            plan.append(
                Planned(
                    shop, j({"graph": "shop", "node": "api", "ts": ts(2), "value": 1}), "late_event"
                )
            )
        if k == 8:  # one event from a clock 200 s ahead: held apart, the windows after it not late
            doc = {"graph": "shop", "ts": now + 200, "values": {"db": 1, "api": 1}}
            plan.append(Planned(shop, j(doc), None))
        if k == 9:  # beyond the allowed clock skew
            plan.append(
                Planned(
                    shop,
                    j({"graph": "shop", "node": "db", "ts": now + 400, "value": 1}),
                    "bad_timestamp",
                )
            )
        if k == 10:  # valid, 950 KB with an extra field full of escaped quotes
            note = '"' * 470_000
            doc = {"graph": "shop", "node": "api", "ts": ts(k, 2), "value": 0.5, "note": note}
            plan.append(Planned(shop, j(doc), None))
    junk: list[Planned] = [
        Planned(b"shop", b'"' * 1_000_000, "malformed_json"),  # 2 MB once escaped
        Planned(b"shop", bytes(range(1, 32)) * 32_000, "malformed_json"),  # 6x once escaped
        Planned(
            None,
            b'{"graph": "shop", "node": "db", "ts": 1, "value": "' + b"\x01\x1f" * 450_000 + b'"}',
            "malformed_json",  # raw control characters inside a JSON string
        ),
        Planned(b"shop", b'{"graph": "shop", "node": "db",', "malformed_json"),
        Planned(b"shop", None, "malformed_json"),  # a tombstone
        Planned(b"x", b"[1, 2]", "not_an_object"),
        Planned(b"x", j({"graph": "shop", "node": "db", "ts": now}), "missing_field"),
        Planned(b"x", j({"graph": "shop", "node": "db", "ts": now, "value": "abc"}), "wrong_type"),
        Planned(b"x", j({"graph": 5, "node": "db", "ts": now, "value": 1}), "wrong_type"),
        Planned(
            b"x", b'{"graph": "shop", "node": "db", "ts": 1e9, "value": NaN}', "non_finite_value"
        ),
        Planned(
            b"shop", b'{"graph": "shop", "ts": 1e9, "values": {"db": Infinity}}', "non_finite_value"
        ),
        Planned(b"x", j({"graph": "nope", "node": "db", "ts": now, "value": 1}), "unknown_graph"),
        Planned(
            b"shop", j({"graph": "shop", "node": "cache", "ts": now, "value": 1}), "unknown_node"
        ),
        Planned(b"shop", j({"graph": "shop", "ts": now, "values": {}}), None),  # empty: valid
    ]
    junk += [
        Planned(None, b"\xff" + rng.bytes(int(rng.integers(1, 200))), "malformed_json")
        for _ in range(30)
    ]
    # spread the junk over the timeline, deterministically
    for item in junk:
        plan.insert(int(rng.integers(1, len(plan))), item)
    return plan


@dataclass
class Run:
    settings: Settings
    plan: list[Planned]
    sent: list[tuple[int, int]]  # (partition, offset) of each planned message
    worker: FaultyWorker
    reader: TopicReader
    metrics_url: str


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("accounting")
    port = _free_port()
    settings = isolated_settings(
        kafka_bootstrap,
        tmp,
        GRAPHS,
        prefix="accounting",
        metrics_port=port,
        checkpoint_interval=2.0,
    )
    topics = [settings.deadletter_topic, settings.scores_topic, settings.attributions_topic]
    with TopicReader(settings, topics) as reader:
        worker = FaultyWorker(settings, tmp / "worker.log", worker_id="acct-1").start()
        try:
            worker.ready()
            plan = hostile_mix(time.time())
            producer = kafka_producer(settings, max_request_size=2 * 1024 * 1024)
            futures = [producer.send(settings.input_topic, key=p.key, value=p.value) for p in plan]
            producer.flush()
            metadata = [f.get(timeout=60) for f in futures]
            producer.close()
            sent = [(m.partition, m.offset) for m in metadata]
            yield Run(settings, plan, sent, worker, reader, f"http://127.0.0.1:{port}/metrics")
        finally:
            code = worker.stop()
            assert code == 0, worker.tail(60)


def test_every_record_is_processed_or_dead_lettered_exactly_once(run: Run) -> None:
    settings, reader, plan = run.settings, run.reader, run.plan
    expected = {where: p.reason for where, p in zip(run.sent, plan, strict=True) if p.reason}
    wait_until(
        lambda: len(reader.records(settings.deadletter_topic)) >= len(expected),
        120,
        "every expected dead letter",
        alive=run.worker.running,
        detail=lambda: run.worker.tail(40),
    )

    def counted() -> float:
        values = scrape(run.metrics_url)
        return sum(
            sample(values, "stream_rca_records_total", outcome=o)
            for o in ("processed", "dead_lettered")
        )

    wait_until(lambda: counted() >= len(plan), 60, "every record counted", alive=run.worker.running)
    letters = reader.records(settings.deadletter_topic)
    got: dict[tuple[int, int], str] = {}
    for record in letters:
        doc = record.doc
        where = (doc["source"]["partition"], doc["source"]["offset"])
        assert where not in got, f"two dead letters for {where}"
        got[where] = doc["reason"]
        assert doc["source"]["topic"] == settings.input_topic
        assert len(record.value or b"") + len(record.key or b"") <= DEAD_LETTER_MAX_BYTES
    assert got == expected  # record by record: the right ones, with the right reasons
    values = scrape(run.metrics_url)
    processed = sample(values, "stream_rca_records_total", outcome="processed")
    dead = sample(values, "stream_rca_records_total", outcome="dead_lettered")
    assert processed == len(plan) - len(expected)
    assert dead == len(expected)
    assert processed + dead == len(plan)  # nothing unaccounted
    assert sample(values, "stream_rca_records_total", outcome="replayed") == 0
    for reason, n in Counter(expected.values()).items():
        assert sample(values, "stream_rca_dead_letters_total", reason=reason) == n, reason


def test_huge_dead_letters_are_cut_to_fit_and_say_so(run: Run) -> None:
    settings = run.settings
    by_source = {
        (r.doc["source"]["partition"], r.doc["source"]["offset"]): r
        for r in run.reader.records(settings.deadletter_topic)
    }
    huge = [
        w
        for w, p in zip(run.sent, run.plan, strict=True)
        if p.value and len(p.value) > 800_000 and p.reason
    ]
    assert len(huge) == 3
    for where in huge:
        doc = by_source[where].doc
        assert doc["truncated"] is True
        assert doc["payload_size"] > 800_000
        assert 100_000 < len(doc["payload"]) < 600_000  # a prefix as long as fits once escaped


def test_a_failing_graph_is_quarantined_while_the_other_goes_on(run: Run) -> None:
    settings, reader = run.settings, run.reader
    wait_until(
        lambda: (
            len([d for d in reader.docs(settings.scores_topic) if d["graph"] == "shop"]) >= K - 1
        ),
        60,
        "the scores of every closed window of shop",
    )
    shop = [d for d in reader.docs(settings.scores_topic) if d["graph"] == "shop"]
    assert len(shop) == K - 1  # the last window stays open, and so does the future one
    starts = [d["window"]["start"] for d in shop]
    assert starts == sorted(starts)
    assert [s - starts[0] for s in starts] == [STEP * k for k in range(K - 1)]
    assert not [d for d in reader.docs(settings.scores_topic) if d["graph"] == "broken"]
    values = scrape(run.metrics_url)
    assert sample(values, "stream_rca_graph_quarantines_total", graph="broken") == 1
    assert sample(values, "stream_rca_graph_quarantines_total", graph="shop") == 0
    log = run.worker.log()
    assert log.count("graph 'broken' quarantined after 5 processing errors in a row") == 1
    assert "Traceback" not in log
    assert run.worker.running()


def test_offsets_are_committed_up_to_the_end(run: Run) -> None:
    """After the acknowledgements and the checkpoints, every input offset is committed."""
    settings = run.settings
    ends = dict.fromkeys(range(settings.partitions), 0)
    for partition, offset in run.sent:
        ends[partition] = max(ends[partition], offset + 1)
    want_all = [ends[p] or None for p in range(settings.partitions)]
    wait_until(
        lambda: [c if c else None for c in committed_offsets(settings, 4)] == want_all,
        60,
        "every offset committed",
    )

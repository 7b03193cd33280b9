"""Change answers in the worker: automatic for an incident that stays open, and on request."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream_rca.config import GraphSpec
from stream_rca.core.graph import CausalGraph
from stream_rca.core.types import Snapshot, StepResult
from stream_rca.streaming.changes import ChangeService
from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.state import CheckpointCodec

GRAPH = CausalGraph([("db", "api"), ("cache", "api")], name="shop")
SPEC = GraphSpec("shop", GRAPH, ("api",), step=10.0)


def _rows(n: int, rng: np.random.Generator, db_shift: float) -> list[dict[str, float]]:
    out = []
    for _ in range(n):
        db = rng.gamma(2.0, 0.5) + db_shift
        cache = rng.gamma(2.0, 0.5)
        out.append({"db": db, "cache": cache, "api": db + cache + rng.normal(0, 0.3)})
    return out


def _result(ts: float, incident: str | None) -> StepResult:
    return StepResult(
        graph="shop",
        ts=ts,
        scores={},
        target_scores={},
        warm=True,
        warming=(),
        missing=(),
        invalid=(),
        learned=(),
        open_incidents={} if incident is None else {"api": incident},
    )


def test_an_incident_open_for_n_snapshots_is_answered_once() -> None:
    service = ChangeService([SPEC], after=40, capacity=300, recent=40)
    rng = np.random.default_rng(0)
    outputs = []
    for i, values in enumerate(_rows(300, rng, 0.0)):
        outputs += service.observe("shop", Snapshot(10.0 * i, values, "shop"), _result(i, None))
    for i, values in enumerate(_rows(60, rng, 2.0), start=300):
        snap = Snapshot(10.0 * i, values, "shop")
        outputs += service.observe("shop", snap, _result(i, "shop/api/3000"))
    assert len(outputs) == 1  # once per incident, at its 40th open snapshot
    out = outputs[0]
    assert out.kind == "changes"
    assert out.key == b"shop"
    doc = json.loads(out.value)
    assert doc["schema"] == "stream-rca.change/v1"
    assert doc["trigger"] == "incident"
    assert doc["incident_id"] == "shop/api/3000"
    assert doc["open_snapshots"] == 40
    assert doc["contributions"][0]["node"] == "db"
    # rows seen during the incident stayed out of the reference
    assert doc["periods"]["before"]["to"] < 3000


def test_requests_through_the_pipeline_and_bad_requests_dead_lettered() -> None:
    service = ChangeService([SPEC], after=0, capacity=200, recent=50)
    pipeline = Pipeline([SPEC], clock=lambda: 1700010000.0, changes=service)
    rng = np.random.default_rng(1)
    rows = _rows(200, rng, 0.0) + _rows(60, rng, 3.0)
    for i, values in enumerate(rows):
        event = {"graph": "shop", "ts": 1700000000.0 + 10 * i, "values": values}
        out = pipeline.process_one(json.dumps(event).encode())
        assert out.reason is None
    service.tracker("shop").freeze()  # a snapshot of the reference taken "at deploy time"
    answer = service.request(b'{"graph": "shop", "target": "api", "statistic": "p99"}')
    assert answer.kind == "changes"
    doc = json.loads(answer.value)
    assert doc["trigger"] == "request"
    assert doc["statistic"] == "p99"
    assert doc["contributions"][0]["node"] == "db"
    for raw, reason in [
        (b"not json", "malformed_json"),
        (b"[1]", "not_an_object"),
        (b'{"graph": "shop"}', "missing_field"),
        (b'{"graph": "nope", "target": "api"}', "unknown_graph"),
        (b'{"graph": "shop", "target": "web"}', "unknown_node"),
        (b'{"graph": "shop", "target": "api", "statistic": "median"}', "wrong_type"),
        (None, "malformed_json"),
    ]:
        dead = service.request(raw)
        assert dead.kind == "deadletter"
        assert json.loads(dead.value)["reason"] == reason


def test_a_request_before_the_reference_fills_is_dead_lettered() -> None:
    service = ChangeService([SPEC])
    dead = service.request(b'{"graph": "shop", "target": "api"}')
    assert dead.kind == "deadletter"
    doc = json.loads(dead.value)
    assert doc["reason"] == "processing_error"
    assert "too early" in doc["message"]


def _events(rows: list[dict[str, float]], start: int = 0) -> list[bytes]:
    return [
        json.dumps({"graph": "shop", "ts": 1700000000.0 + 10 * i, "values": v}).encode()
        for i, v in enumerate(rows, start=start)
    ]


def test_the_reference_is_in_the_checkpoint_and_restores_the_same_answers() -> None:
    def pipeline(blob: bytes | None = None) -> tuple[Pipeline, ChangeService]:
        service = ChangeService([SPEC], after=0, capacity=200, recent=50)
        p = Pipeline(
            [SPEC],
            clock=lambda: 1700010000.0,
            changes=service,
            loader=lambda g: blob,
            codec=CheckpointCodec(b"a checkpoint key of the test"),
        )
        return p, service

    rng = np.random.default_rng(4)
    events = _events(_rows(200, rng, 0.0) + _rows(60, rng, 3.0))
    first, service = pipeline()
    for offset, raw in enumerate(events[:230]):
        first.process_one(raw, offset=offset)
    service.tracker("shop").freeze()
    blob = first.checkpoint("shop")
    second, restored = pipeline(blob)
    for offset, raw in enumerate(events[230:], start=230):  # both go on from the checkpoint
        assert first.process_one(raw, offset=offset).reason is None
        assert second.process_one(raw, offset=offset).reason is None
    state = second.state("shop")
    assert state is not None
    assert state.restored
    assert restored.tracker("shop").mode == "frozen"
    request = b'{"graph": "shop", "target": "api", "statistic": "p99"}'
    for _ in range(2):  # the same answers, draws and seeds included, one after the other
        a, b = service.request(request), restored.request(request)
        assert a.kind == b.kind == "changes"
        assert json.loads(a.value) == json.loads(b.value)
    assert json.loads(a.value)["contributions"][0]["node"] == "db"


def test_a_bad_reference_in_a_checkpoint_leaves_the_rest_restored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codec = CheckpointCodec(b"a checkpoint key of the test")
    service = ChangeService([SPEC], capacity=200, recent=50)
    first = Pipeline([SPEC], clock=lambda: 1700010000.0, changes=service, codec=codec)
    rng = np.random.default_rng(5)
    for offset, raw in enumerate(_events(_rows(40, rng, 0.0))):
        first.process_one(raw, offset=offset)
    blob = first.checkpoint("shop")
    other = ChangeService([SPEC], capacity=100, recent=50)  # another size: refused
    second = Pipeline(
        [SPEC], clock=lambda: 1700010000.0, changes=other, loader=lambda g: blob, codec=codec
    )
    second.process_one(_events(_rows(1, rng, 0.0), start=40)[0], offset=40)
    state = second.state("shop")
    assert state is not None
    assert state.restored
    assert "why-changed reference not restored" in caplog.text
    assert other.state_of("shop") is not None  # it starts empty and fills again

"""process_batch gives each message the outcome process_one gives it, for any batch size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_rca.config import GraphSpec, load_graphs
from stream_rca.core.block import BlockResult
from stream_rca.core.engine import Engine
from stream_rca.core.graph import CausalGraph
from stream_rca.core.types import Snapshot, StepResult
from stream_rca.streaming.batch import InputRecord, process_batch
from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.records import Outcome
from stream_rca.streaming.simulator import Simulation, SimulationConfig, graphs_document

NOW = 1_800_000_000.0


def shop_simulation(batch: bool) -> SimulationConfig:
    """Two shop graphs, 260 snapshots with three faults; ``batch``: values as batch messages."""
    return SimulationConfig(
        graphs=2,
        seed=3,
        count=260,
        first_fault=100,
        fault_every=50,
        fault_duration=4,
        strength=(8.0, 12.0),
        faults=3,
        batch=batch,
        rate=0.0,
    )


def shop_specs(config: SimulationConfig, tmp: Path) -> list[GraphSpec]:
    path = tmp / "graphs.yaml"
    path.write_text(yaml.safe_dump(graphs_document(config, warmup=30, threshold=6.0)))
    return load_graphs(path)


def comparable(outcome: Outcome) -> tuple[Any, ...]:
    """An outcome with the wall-clock parts of its documents left out."""
    outputs = []
    for out in outcome.outputs:
        doc = json.loads(out.value)
        doc.pop("attribution_seconds", None)
        outputs.append((out.kind, out.key, doc))
    return (outcome.graph, outcome.reason, outcome.statuses, outcome.replayed, outputs)


def run_batches(pipeline: Pipeline, raws: Sequence[bytes | None], size: int) -> list[Outcome]:
    records = [InputRecord(raw, 0, offset, "metrics", b"k") for offset, raw in enumerate(raws)]
    out: list[Outcome] = []
    for start in range(0, len(records), size):
        out += process_batch(pipeline, records[start : start + size])
    return out


def run_one_by_one(pipeline: Pipeline, raws: Sequence[bytes | None]) -> list[Outcome]:
    return [
        pipeline.process_one(raw, partition=0, offset=offset, topic="metrics", key=b"k")
        for offset, raw in enumerate(raws)
    ]


@pytest.fixture(scope="module", params=[False, True], ids=["single", "batch"])
def stream(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[GraphSpec], list[bytes | None]]:
    config = shop_simulation(request.param)
    sim = Simulation(config, now=NOW)
    raws: list[bytes | None] = [v for _, values in sim.snapshots(260) for v in values]
    # hostile records among them: bad JSON, an unknown node, a tombstone, a late event
    first = json.loads(raws[0] or b"{}")
    late = dict(first, ts=first["ts"])
    unknown = {"graph": "shop-0", "node": "nope", "ts": first["ts"], "value": 1}
    raws[50:50] = [b"{", None, json.dumps(unknown).encode()]
    raws.insert(400, json.dumps(late).encode())
    return shop_specs(config, tmp_path_factory.mktemp("batch")), raws


@pytest.mark.parametrize("size", [1, 7, 500, 100_000])
def test_batches_of_any_size_give_the_outcomes_of_one_by_one(
    stream: tuple[list[GraphSpec], list[bytes | None]], size: int
) -> None:
    specs, raws = stream
    reference = run_one_by_one(Pipeline(specs, publish_scores=True, clock=lambda: NOW), raws)
    got = run_batches(Pipeline(specs, publish_scores=True, clock=lambda: NOW), raws, size)
    assert [comparable(o) for o in got] == [comparable(o) for o in reference]
    assert sum(len(o.attributions) for o in got) >= 6  # the faults were attributed
    reasons = {o.reason for o in got} - {None}
    assert reasons == {"malformed_json", "unknown_node", "late_event"}


def test_a_graph_whose_engine_fails_is_quarantined_as_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = CausalGraph([("db", "api")], name="bad")
    specs = [
        GraphSpec("bad", graph, ("api",), step=10.0),
        GraphSpec("good", CausalGraph([("db", "api")], name="good"), ("api",), step=10.0),
    ]
    real_one, real_many = Engine.process_one, Engine.process_many_columns

    def one(self: Engine, snapshot: Snapshot) -> StepResult:
        if self.graph.name == "bad":
            raise RuntimeError("broken")
        return real_one(self, snapshot)

    def many(self: Engine, snapshots: Sequence[Snapshot]) -> BlockResult:
        if self.graph.name == "bad":
            raise RuntimeError("broken")
        return real_many(self, snapshots)

    monkeypatch.setattr(Engine, "process_one", one)
    monkeypatch.setattr(Engine, "process_many_columns", many)
    raws: list[bytes | None] = []
    for i in range(12):
        for g in ("bad", "good"):
            values = {"db": 1.0 + i % 3, "api": 2.0 + i % 2}
            doc = {"graph": g, "ts": 1_700_000_000 + 10 * i, "values": values}
            raws.append(json.dumps(doc).encode())
    reference = run_one_by_one(Pipeline(specs, clock=lambda: NOW), raws)
    for size in (1, 5, 24):
        got = run_batches(Pipeline(specs, clock=lambda: NOW), raws, size)
        assert [comparable(o) for o in got] == [comparable(o) for o in reference], size
    reasons = [o.reason for o in reference if o.graph == "bad"]
    assert reasons == [None] + ["processing_error"] * 5 + ["graph_quarantined"] * 6
    assert all(o.reason is None for o in reference if o.graph == "good")


def test_replayed_messages_are_skipped_in_a_batch() -> None:
    specs = [GraphSpec("g", CausalGraph([("db", "api")], name="g"), ("api",), step=10.0)]
    raws = [
        json.dumps({"graph": "g", "ts": 1_700_000_000 + 10 * i, "values": {"db": 1.0}}).encode()
        for i in range(5)
    ]
    pipeline = Pipeline(specs, clock=lambda: NOW)
    first = run_batches(pipeline, raws, 5)
    again = run_batches(pipeline, raws, 5)
    assert not any(o.replayed for o in first)
    assert all(o.replayed for o in again)

"""Graph-free graphs in the worker: graphs-file entries, the pipeline (record and batch paths),
incidents, metrics and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stream_rca.config import GraphSpec
from stream_rca.core.config import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.graphfree import GRAPH_FREE_RULE
from stream_rca.core.graphfree_engine import GraphFreeEngine
from stream_rca.core.trigger import TriggerConfig
from stream_rca.errors import ConfigError
from stream_rca.graphs_file import load_graphs
from stream_rca.observability import PipelineMetrics
from stream_rca.streaming.batch import InputRecord, process_batch
from stream_rca.streaming.changes import ChangeService
from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.state import CheckpointCodec, check_checkpointable, state_size_bound
from tests.fixtures.streams import cache_fault_values

T0 = 1_700_000_000.0
CLOCK = T0 + 100_000.0
NODES = ("db", "cache", "api", "web")
KEY = b"a checkpoint key of the graph-free tests"


def _spec() -> GraphSpec:
    engine = EngineConfig(warmup=40, trigger=TriggerConfig(threshold=9.0, cooldown=0))
    graph = CausalGraph([], NODES, name="flat")
    return GraphSpec("flat", graph, ("web",), step=10.0, engine=engine, graph_free=True)


def _events(n: int, fault_at: int, seed: int = 0) -> list[bytes]:
    """Batch events; from ``fault_at`` on the cache slows down (api and web follow it)."""
    values = cache_fault_values(n, fault_at, seed)
    return [
        json.dumps({"graph": "flat", "ts": T0 + 10 * t, "values": v}).encode()
        for t, v in enumerate(values)
    ]


def _attributions(outcomes: list[Any]) -> list[dict[str, Any]]:
    docs = []
    for o in outcomes:
        for out in o.outputs:
            if out.kind == "attributions":
                doc = json.loads(out.value)
                doc.pop("attribution_seconds", None)  # wall time
                docs.append(doc)
    return docs


# -- the graphs file -------------------------------------------------------------------------


def test_nodes_without_edges_make_a_graph_free_entry(tmp_path: Path) -> None:
    f = tmp_path / "graphs.yaml"
    (tmp_path / "g.json").write_text('{"edges": [["db", "api"], ["api", "web"]]}')
    f.write_text(
        "graphs:\n"
        "- {name: flat, nodes: [db, api, web], targets: [web], warmup: 50, threshold: 8}\n"
        "- {name: file, graph: g.json, mode: graph-free, targets: [web]}\n"
        "- {name: causal, graph: g.json}\n"
    )
    flat, from_file, causal = load_graphs(f)
    assert flat.graph_free
    assert flat.graph.nodes == ("db", "api", "web")
    assert flat.graph.edges == ()
    assert flat.engine.warmup == 50
    assert from_file.graph_free
    assert from_file.graph.edges == ()  # the file's edges are not used in this mode
    assert set(from_file.graph.nodes) == {"db", "api", "web"}
    assert not causal.graph_free


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("nodes: [a, b]", "targets: a graph-free graph needs its targets"),
        ("nodes: [a, b], targets: [c]", "targets: 'c' is not a node of the graph"),
        ("nodes: [a, b], targets: [a], n_samples: 100", "n_samples: does not apply to a graph"),
        ("nodes: [a, b], targets: [a], mechanisms: {a: tree}", "mechanisms: does not apply"),
        ("nodes: [a, b], targets: [a], grow_from_spans: true", "grow_from_spans: does not apply"),
        ("nodes: [a, a], targets: [a]", "nodes: a node is listed twice"),
        ("nodes: a, targets: [a]", "nodes: expected a list of node names"),
        ("nodes: [], targets: [a]", "nodes: the graph has no nodes"),
        ("edges: [[a, b]], mode: graph-free, targets: [b]", "edges: a graph-free graph"),
        ("nodes: [a, b], mode: graph, targets: [a]", "mode 'graph' needs edges"),
        ("nodes: [a, b], mode: tree, targets: [a]", "mode: expected 'graph' or 'graph-free'"),
        ("targets: [a]", "give 'graph' (a graph file), 'edges', or 'nodes' alone"),
        ("nodes: [a, b], targets: [a], warmup: 5", "warmup: warmup must be at least 10"),
    ],
)
def test_a_bad_graph_free_entry_names_file_graph_and_key(
    tmp_path: Path, entry: str, message: str
) -> None:
    f = tmp_path / "graphs.yaml"
    f.write_text(f"graphs:\n- {{name: flat, {entry}}}\n")
    with pytest.raises(ConfigError) as exc:
        load_graphs(f)
    text = str(exc.value)
    assert text.startswith(f"{f}: graph 'flat': ")
    assert message in text
    assert "\n" not in text


def test_a_graph_free_graph_is_checkpointable() -> None:
    check_checkpointable(_spec())
    assert state_size_bound(_spec()) < 1 << 20


# -- the pipeline ----------------------------------------------------------------------------


def test_graph_free_attributions_incidents_and_metrics() -> None:
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry, version="test")
    p = Pipeline([_spec()], clock=lambda: CLOCK, metrics=metrics)
    outcomes = [p.process_one(raw, offset=i) for i, raw in enumerate(_events(320, 300))]
    assert all(o.reason is None for o in outcomes)
    docs = _attributions(outcomes)
    assert docs
    doc = docs[0]
    assert doc["schema"] == "stream-rca.attribution/v1"
    assert doc["method"] == "graph-free"
    assert doc["graph_used"] is False
    assert doc["rule"] == GRAPH_FREE_RULE
    assert doc["root_causes"][0]["node"] == "cache"
    assert doc["candidates"][0]["group"] == "new"
    assert doc["incident_id"] == f"flat:web:{T0 + 3000:.0f}"
    state = p.state("flat")
    assert state is not None
    assert isinstance(state.engine, GraphFreeEngine)
    sample = registry.get_sample_value
    assert sample("stream_rca_incidents_total", {"graph": "flat", "target": "web"}) == 1.0
    assert sample("stream_rca_snapshots_total", {"graph": "flat"}) == 319.0
    assert sample("stream_rca_node_score", {"graph": "flat", "node": "cache"}) > 9.0
    # the incident closes once the cache is back (and may open again later)
    calm = _events(400, 10_000, seed=1)[320:360]
    closing = [p.process_one(raw, offset=320 + i) for i, raw in enumerate(calm)]
    closed = [e for o in closing for r in o.results for e in r.events if e.kind == "closed"]
    assert [e.incident_id for e in closed] == [doc["incident_id"]]


def test_the_batch_path_gives_the_record_paths_documents() -> None:
    events = _events(330, 300)
    one = Pipeline([_spec()], clock=lambda: CLOCK)
    expected = _attributions([one.process_one(raw, offset=i) for i, raw in enumerate(events)])
    batched = Pipeline([_spec()], clock=lambda: CLOCK)
    got: list[dict[str, Any]] = []
    for start in range(0, len(events), 64):
        records = [
            InputRecord(raw, 0, start + i) for i, raw in enumerate(events[start : start + 64])
        ]
        got += _attributions(process_batch(batched, records))
    assert got
    assert got == expected


def test_a_graph_free_checkpoint_resumes_with_the_same_documents() -> None:
    codec = CheckpointCodec(KEY)
    events = _events(330, 300)
    whole = Pipeline([_spec()], clock=lambda: CLOCK, codec=codec)
    expected = _attributions([whole.process_one(raw, offset=i) for i, raw in enumerate(events)])
    first = Pipeline([_spec()], clock=lambda: CLOCK, codec=codec)
    head = _attributions([first.process_one(raw, offset=i) for i, raw in enumerate(events[:250])])
    blob = first.checkpoint("flat")
    second = Pipeline([_spec()], clock=lambda: CLOCK, codec=codec, loader=lambda g: blob)
    tail = [second.process_one(raw, offset=i) for i, raw in enumerate(events) if i >= 240]
    assert all(o.replayed for o in tail[:10])  # offsets 240..249 are in the checkpoint
    state = second.state("flat")
    assert state is not None
    assert state.restored
    assert head + _attributions(tail) == expected


def test_a_causal_checkpoint_is_not_restored_as_graph_free() -> None:
    codec = CheckpointCodec(KEY)
    causal = GraphSpec(
        "flat", CausalGraph([("cache", "web")], ["db", "api"], name="flat"), ("web",), step=10.0
    )
    p = Pipeline([causal], clock=lambda: CLOCK, codec=codec)
    p.process_one(_events(1, 10)[0], offset=0)
    blob = p.checkpoint("flat")
    again = Pipeline([_spec()], clock=lambda: CLOCK, codec=codec, loader=lambda g: blob)
    again.process_one(_events(2, 10)[1], offset=1)
    state = again.state("flat")
    assert state is not None
    assert not state.restored  # another spec: it starts afresh


def test_change_requests_about_a_graph_free_graph_are_dead_letters() -> None:
    service = ChangeService([_spec()])
    p = Pipeline([_spec()], clock=lambda: CLOCK, changes=service)
    for i, raw in enumerate(_events(50, 1000)):
        assert p.process_one(raw, offset=i).reason is None
    dead = service.request(b'{"graph": "flat", "target": "web"}')
    assert dead.kind == "deadletter"
    doc = json.loads(dead.value)
    assert doc["reason"] == "unknown_graph"
    assert "graph-free" in doc["message"]

"""The worker's pipeline beyond declared nodes: extra series (accept_unknown) and spans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_rca.config import GraphSpec
from stream_rca.core.config import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.errors import ConfigError
from stream_rca.graphs_file import load_graphs
from stream_rca.observability import PipelineMetrics
from stream_rca.streaming.pipeline import Pipeline
from tests.fixtures.streams import otlp_spans

T0 = 1_700_000_000.0
CLOCK = T0 + 10_000.0
GRAPH = CausalGraph([("db", "api"), ("api", "web")], name="shop")


def _spec(**kw: object) -> GraphSpec:
    return GraphSpec("shop", GRAPH, ("web",), step=1.0, engine=EngineConfig(warmup=40), **kw)  # type: ignore[arg-type]


def _batch(t: int, values: dict[str, float]) -> bytes:
    return json.dumps({"graph": "shop", "ts": T0 + t, "values": values}).encode()


def _row(rng: np.random.Generator, fault: bool = False) -> dict[str, float]:
    gc = 1.0 + 0.1 * rng.standard_normal() + (5.0 if fault else 0.0)
    db = 1.0 + 0.1 * rng.standard_normal()
    api = db + (gc - 1.0) + 0.1 * rng.standard_normal()
    return {"db": db, "api": api, "web": api + 0.1 * rng.standard_normal(), "gc": gc}


def test_unknown_series_stay_dead_letters_without_opt_in() -> None:
    p = Pipeline([_spec()], clock=lambda: CLOCK)
    out = p.process_one(_batch(0, {"db": 1.0, "gc": 2.0}))
    assert out.reason == "unknown_node"


def test_extra_series_are_named_as_not_in_graph_candidates() -> None:
    p = Pipeline([_spec(accept_unknown=True)], clock=lambda: CLOCK)
    rng = np.random.default_rng(0)
    docs: list[dict[str, Any]] = []
    for t in range(300):
        out = p.process_one(_batch(t, _row(rng, fault=t >= 290)), offset=t)
        assert out.reason is None
        docs += [json.loads(o.value) for o in out.outputs if o.kind == "attributions"]
    assert docs
    doc = docs[0]
    (gc,) = doc["extra_candidates"]
    assert gc["node"] == "gc"
    assert gc["not_in_graph"] is True
    assert gc["group"] == "new"
    assert gc["score"] > 9.0
    assert "gc" not in {rc["node"] for rc in doc["root_causes"]}


def test_extra_series_beyond_the_bound_are_dead_letters() -> None:
    p = Pipeline([_spec(accept_unknown=True, max_extra_series=1)], clock=lambda: CLOCK)
    assert p.process_one(_batch(0, {"db": 1.0, "gc": 2.0})).reason is None
    out = p.process_one(_batch(1, {"db": 1.0, "gc": 2.0, "heap": 3.0}))
    assert out.reason == "extra_series_limit"
    (dl,) = [json.loads(o.value) for o in out.outputs if o.kind == "deadletter"]
    assert dl["reason"] == "extra_series_limit"
    assert "heap" in dl["message"]
    assert "max_extra_series" in dl["message"]
    assert len(out.statuses) == 1  # db's sample was still taken


def test_graphs_file_keys(tmp_path: Path) -> None:
    f = tmp_path / "graphs.yaml"
    f.write_text(
        "graphs:\n- {name: shop, edges: [[db, api]], accept_unknown: true, max_extra_series: 5,"
        " grow_from_spans: true}\n"
    )
    (spec,) = load_graphs(f)
    assert spec.accept_unknown
    assert spec.max_extra_series == 5
    assert spec.grow_from_spans
    f.write_text("graphs:\n- {name: shop, edges: [[db, api]], max_extra_series: -1}\n")
    with pytest.raises(ConfigError, match="max_extra_series: expected an integer in"):
        load_graphs(f)
    f.write_text("graphs:\n- {name: shop, edges: [[db, api]], accept_unknown: 1}\n")
    with pytest.raises(ConfigError, match="accept_unknown: expected true or false"):
        load_graphs(f)


def test_spans_grow_the_graph_and_keep_learned_state() -> None:
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry, version="test")
    p = Pipeline([_spec(grow_from_spans=True)], clock=lambda: CLOCK, metrics=metrics)
    rng = np.random.default_rng(1)
    for t in range(200):
        p.process_one(_batch(t, {k: v for k, v in _row(rng).items() if k != "gc"}))
    state = p.state("shop")
    assert state is not None
    before = state.engine
    # api (client span) calls cache (server span), in two messages; the parent comes second
    assert p.process_spans(otlp_spans("cache", [("t1", "c1", "a1", 2)]), key=b"shop").reason is None
    out = p.process_spans(otlp_spans("api", [("t1", "a1", None, 3)]), key=b"shop")
    assert out.reason is None
    grown = state.engine
    assert grown is not before
    assert ("cache", "api") in grown.graph.edges
    assert grown.n_snapshots == before.n_snapshots
    assert registry.get_sample_value("stream_rca_graph_changes_total", {"graph": "shop"}) == 1.0
    # db keeps its learned state; api (a new parent) starts cold; cache is a node now
    snap_t = 200
    r = _row(rng)
    r["cache"] = 0.5
    res = p.process_one(_batch(snap_t, {k: v for k, v in r.items() if k != "gc"}))
    assert res.reason is None
    res = p.process_one(_batch(snap_t + 1, {k: v for k, v in r.items() if k != "gc"}))
    (result,) = res.results
    assert "db" in result.scores
    assert "api" not in result.scores
    # a call that would close a cycle (db calls web: web -> db) is refused by the cycle rule
    p.process_spans(otlp_spans("db", [("t2", "d1", None, 3)]), key=b"shop")
    p.process_spans(otlp_spans("web", [("t2", "w1", "d1", 2)]), key=b"shop")
    assert ("web", "db") not in state.engine.graph.edges
    assert registry.get_sample_value("stream_rca_graph_changes_total", {"graph": "shop"}) == 1.0


def test_bad_span_messages_are_dead_letters() -> None:
    p = Pipeline([_spec(grow_from_spans=True), GraphSpec("other", GRAPH, ("web",))],
                 clock=lambda: CLOCK)  # fmt: skip
    assert p.process_spans(b"{not json", key=b"shop").reason == "bad_spans"
    assert p.process_spans(b'{"spans": []}', key=b"shop").reason == "bad_spans"
    assert p.process_spans(otlp_spans("api", []), key=b"other").reason == "unknown_graph"
    assert p.process_spans(otlp_spans("api", []), key=b"nope").reason == "unknown_graph"


def _grown_pipeline(**kw: Any) -> Pipeline:
    """A pipeline whose graph grew (cache -> api) and learned 300 snapshots after that."""
    p = Pipeline([_spec(grow_from_spans=True)], clock=lambda: CLOCK, **kw)
    rng = np.random.default_rng(2)
    for t in range(100):
        p.process_one(_batch(t, {k: v for k, v in _row(rng).items() if k != "gc"}), offset=t)
    p.process_spans(otlp_spans("api", [("t1", "a1", None, 3)]), key=b"shop")
    p.process_spans(otlp_spans("cache", [("t1", "c1", "a1", 2)]), key=b"shop")
    for t in range(100, 400):
        p.process_one(_batch(t, _cached(rng)), offset=t)
    return p


def _timeless(value: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(value)
    doc.pop("attribution_seconds", None)  # wall time, the one field that may differ
    return doc


def _cached(rng: np.random.Generator, fault: float = 0.0) -> dict[str, float]:
    cache = 0.5 + 0.05 * rng.standard_normal() + fault
    db = 1.0 + 0.1 * rng.standard_normal()
    api = db + cache + 0.1 * rng.standard_normal()
    return {"db": db, "cache": cache, "api": api, "web": api + 0.1 * rng.standard_normal()}


def test_a_grown_graph_resumes_from_its_checkpoint_with_the_same_later_scores() -> None:
    p = _grown_pipeline()
    state = p.state("shop")
    assert state is not None
    grown = state.engine.graph
    assert ("cache", "api") in grown.edges
    blob = p.checkpoint("shop")
    again = Pipeline([_spec(grow_from_spans=True)], clock=lambda: CLOCK, loader=lambda g: blob)
    rng = np.random.default_rng(7)
    later = [_cached(rng, fault=2.0 if t >= 440 else 0.0) for t in range(400, 460)]
    docs: list[list[dict[str, Any]]] = [[], []]
    for t, row in enumerate(later, start=400):
        outs = [q.process_one(_batch(t, row), offset=t) for q in (p, again)]
        for i, out in enumerate(outs):
            assert out.reason is None  # cache is a node of the restored graph too
            docs[i] += [_timeless(o.value) for o in out.outputs if o.kind == "attributions"]
        (a,), (b,) = outs[0].results, outs[1].results
        assert a.scores == b.scores
        assert a.target_scores == b.target_scores
    restored = again.state("shop")
    assert restored is not None
    assert restored.restored
    assert restored.engine.graph.edges == grown.edges
    assert restored.engine.graph.nodes == grown.nodes
    assert docs[0]
    assert docs[0] == docs[1]
    assert "cache" in {rc["node"] for rc in docs[1][0]["root_causes"]}
    # growth goes on from the restored calls: a new call adds to the grown graph
    again.process_spans(otlp_spans("web", [("t3", "w1", None, 3)]), key=b"shop")
    again.process_spans(otlp_spans("cdn", [("t3", "n1", "w1", 2)]), key=b"shop")
    edges = set(again.state("shop").engine.graph.edges)  # type: ignore[union-attr]
    assert {("cache", "api"), ("cdn", "web")} <= edges


def test_a_grown_checkpoint_is_refused_once_the_graph_no_longer_grows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    blob = _grown_pipeline().checkpoint("shop")
    again = Pipeline([_spec()], clock=lambda: CLOCK, loader=lambda g: blob)
    again.process_one(_batch(500, {"db": 1.0}))
    state = again.state("shop")
    assert state is not None
    assert not state.restored  # it starts afresh on the declared graph
    assert len(state.engine.graph) == len(GRAPH)
    assert "no longer grows from spans" in caplog.text

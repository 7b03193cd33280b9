"""What a worker keeps beside a graph's engine, through its checkpoint: the extra series of an
``accept_unknown`` graph (causal or graph-free) and the span matching index of a graph that
grows from spans."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_rca.config import GraphSpec
from stream_rca.core.checkpoint import encode_tree, seal
from stream_rca.core.config import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.graphs_file import load_graphs
from stream_rca.io.traces import Span
from stream_rca.observability import PipelineMetrics
from stream_rca.streaming.growth import MAX_CHECKPOINT_SPANS, SpanGrowth
from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.state import CheckpointCodec, CheckpointError, GraphState
from tests.fixtures.streams import otlp_spans

T0 = 1_700_000_000.0
CLOCK = T0 + 10_000.0
KEY = b"a checkpoint key of 32 bytes...."
GRAPH = CausalGraph([("db", "api"), ("api", "web")], name="shop")
CHECKPOINT_AT = 250  # rows before the restart
FAULT_AT = 290  # the extra series "gc" slows everything down from here


def _spec(**kw: Any) -> GraphSpec:
    return GraphSpec("shop", GRAPH, ("web",), step=1.0, engine=EngineConfig(warmup=40), **kw)


def _batch(t: int, values: dict[str, float], graph: str = "shop") -> bytes:
    return json.dumps({"graph": graph, "ts": T0 + t, "values": values}).encode()


def _rows(n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        gc = 1.0 + 0.1 * rng.standard_normal() + (5.0 if t >= FAULT_AT else 0.0)
        db = 1.0 + 0.1 * rng.standard_normal()
        api = db + (gc - 1.0) + 0.1 * rng.standard_normal()
        heap = 3.0 + 0.2 * rng.standard_normal()
        row = {"db": db, "api": api, "web": api + 0.1 * rng.standard_normal(), "gc": gc}
        if t % 3:  # a second extra series with gaps
            row["heap"] = heap
        out.append(row)
    return out


def _docs(outs: list[Any], kind: str) -> list[dict[str, Any]]:
    docs = [json.loads(o.value) for out in outs for o in out.outputs if o.kind == kind]
    for d in docs:
        d.pop("attribution_seconds", None)  # wall time
    return docs


def _pipeline(spec: GraphSpec, blob: bytes | None = None, **kw: Any) -> Pipeline:
    loader: Callable[[str], bytes | None] = lambda g: blob  # noqa: E731
    return Pipeline([spec], clock=lambda: CLOCK, codec=CheckpointCodec(KEY), loader=loader, **kw)


def _run(p: Pipeline, rows: list[dict[str, float]], start: int, graph: str = "shop") -> list[Any]:
    return [p.process_one(_batch(t, rows[t], graph), offset=t) for t in range(start, len(rows))]


def test_extra_series_resume_from_a_checkpoint_with_identical_answers() -> None:
    spec = _spec(accept_unknown=True)
    rows = _rows(330)
    a = _pipeline(spec, publish_scores=True)
    for out in _run(a, rows[:CHECKPOINT_AT], 0):
        assert out.reason is None
    blob = a.checkpoint("shop")
    b = _pipeline(spec, blob, publish_scores=True)
    later_a, later_b = _run(a, rows, CHECKPOINT_AT), _run(b, rows, CHECKPOINT_AT)
    restored = b.state("shop")
    assert restored is not None
    assert restored.restored
    assert restored.extras is not None
    assert restored.extras.series.series == ["gc", "heap"]
    docs_a, docs_b = _docs(later_a, "attributions"), _docs(later_b, "attributions")
    assert docs_a
    assert docs_a == docs_b
    assert _docs(later_a, "scores") == _docs(later_b, "scores")
    extra = docs_b[0]["extra_candidates"]
    assert extra[0]["node"] == "gc"
    assert extra[0]["group"] == "new"
    assert all(c["not_in_graph"] is True for c in extra)
    assert {c["node"] for c in extra} == {"gc", "heap"}
    ra, rb = a.state("shop").extras.series.ranker, restored.extras.series.ranker  # type: ignore[union-attr]
    assert ra.scores() == rb.scores()
    assert ra.n_snapshots == rb.n_snapshots == len(rows) - 1  # the last window is still open


def test_without_the_extras_in_the_checkpoint_they_would_warm_up_again() -> None:
    """The control of the test above: a restart that loses the extras answers differently."""
    spec = _spec(accept_unknown=True)
    rows = _rows(330)
    a = _pipeline(spec)
    _run(a, rows[:CHECKPOINT_AT], 0)
    state = a.state("shop")
    assert state is not None
    state.extras = None  # as before: the checkpoint held no extra series
    b = _pipeline(spec, a.checkpoint("shop"))
    docs = _docs(_run(b, rows, CHECKPOINT_AT), "attributions")
    gc = next(c for c in docs[0]["extra_candidates"] if c["node"] == "gc")
    assert gc["score"] is None
    assert gc["group"] == "unscored"


def _tree(spec: GraphSpec) -> dict[str, Any]:
    p = _pipeline(spec)
    _run(p, _rows(120), 0)
    state = p.state("shop")
    assert state is not None
    assert state.extras is not None
    return state.to_state()


def _sealed(tree: dict[str, Any]) -> bytes:
    return seal(encode_tree(tree), KEY, b"shop")


def _break_series(t: dict[str, Any]) -> None:
    t["extras"]["series"]["series"] = ["db"]  # a graph node


def _break_values(t: dict[str, Any]) -> None:
    t["extras"]["windows"][0]["values"] = np.zeros(5, dtype=np.int64)


def _break_ranker(t: dict[str, Any]) -> None:
    del t["extras"]["series"]["ranker"]


def _break_window(t: dict[str, Any]) -> None:
    t["extras"]["windows"][0]["nodes"] = ["nobody"]


def _break_last(t: dict[str, Any]) -> None:
    t["extras"]["last"] = float("inf")


@pytest.mark.parametrize(
    "corrupt", [_break_series, _break_values, _break_ranker, _break_window, _break_last]
)
def test_a_bad_extras_tree_is_refused_and_the_graph_starts_afresh(
    corrupt: Callable[[dict[str, Any]], None],
) -> None:
    spec = _spec(accept_unknown=True)
    tree = _tree(spec)
    assert tree["extras"]["windows"]  # the open window's extra values are in it
    corrupt(tree)
    with pytest.raises(CheckpointError, match=r"invalid checkpoint content: extras\.") as info:
        CheckpointCodec(KEY).load(_sealed(tree), spec)
    assert info.value.reason == "malformed"
    registry = CollectorRegistry()
    p = _pipeline(spec, _sealed(tree), metrics=PipelineMetrics(registry, version="test"))
    assert p.process_one(_batch(500, {"db": 1.0, "gc": 1.0}), offset=500).reason is None
    state = p.state("shop")
    assert state is not None
    assert not state.restored
    assert state.engine.n_snapshots == 0
    labels = {"graph": "shop", "reason": "malformed"}
    assert registry.get_sample_value("stream_rca_checkpoints_refused_total", labels) == 1.0


def test_more_extras_than_the_spec_now_allows_refuse_the_checkpoint() -> None:
    tree = _tree(_spec(accept_unknown=True))
    with pytest.raises(CheckpointError, match="more than max_extra_series") as info:
        GraphState.from_state(_spec(accept_unknown=True, max_extra_series=1), tree)
    assert info.value.reason == "spec"
    # a graph that no longer accepts them resumes its engine without them
    state = GraphState.from_state(_spec(), tree)
    assert state.extras is None
    assert state.engine.n_snapshots > 0


# -- graph-free entries ----------------------------------------------------------------------


def test_a_graph_free_entry_accepts_unknown_series(tmp_path: Path) -> None:
    f = tmp_path / "graphs.yaml"
    f.write_text(
        "graphs:\n- {name: flat, nodes: [db, api, web], targets: [web], step: 1, warmup: 40,"
        " accept_unknown: true, max_extra_series: 2}\n"
    )
    (spec,) = load_graphs(f)
    assert spec.graph_free
    assert spec.accept_unknown
    rows = _rows(330)
    a = _pipeline(spec)
    outs = _run(a, rows[:CHECKPOINT_AT], 0, "flat")
    assert all(o.reason is None for o in outs)
    b = _pipeline(spec, a.checkpoint("flat"))
    docs_a = _docs(_run(a, rows, CHECKPOINT_AT, "flat"), "attributions")
    docs_b = _docs(_run(b, rows, CHECKPOINT_AT, "flat"), "attributions")
    assert docs_a
    assert docs_a == docs_b
    doc = docs_b[0]
    assert doc["method"] == "graph-free"
    assert doc["graph_used"] is False
    assert doc["extra_candidates"][0]["node"] == "gc"
    assert all(c["not_in_graph"] is True for c in doc["extra_candidates"])
    assert "gc" not in {c["node"] for c in doc["root_causes"]}
    # the bound holds as for a causal graph
    out = b.process_one(_batch(400, {"db": 1.0, "cpu": 1.0}, "flat"), offset=400)
    assert out.reason == "extra_series_limit"


# -- the span matching index -----------------------------------------------------------------


@pytest.mark.parametrize("child_first", [True, False])
def test_a_call_split_across_a_restart_still_grows_the_graph(child_first: bool) -> None:
    spec = _spec(grow_from_spans=True)
    a = _pipeline(spec)
    rows = _rows(60)
    for t in range(60):
        a.process_one(_batch(t, {k: v for k, v in rows[t].items() if k in GRAPH.index}), offset=t)
    child = otlp_spans("cache", [("t1", "c1", "a1", 2)])  # a server span of cache, called by api
    parent = otlp_spans("api", [("t1", "a1", None, 3)])  # api's client span
    first, second = (child, parent) if child_first else (parent, child)
    assert a.process_spans(first, key=b"shop").reason is None
    blob = a.checkpoint("shop")
    b = _pipeline(spec, blob)
    assert b.process_spans(second, key=b"shop").reason is None
    state = b.state("shop")
    assert state is not None
    assert state.restored
    assert ("cache", "api") in state.engine.graph.edges


def test_the_checkpointed_span_index_is_bounded_to_the_most_recent_spans() -> None:
    grow = SpanGrowth(GRAPH)
    n = MAX_CHECKPOINT_SPANS + 100
    grow.add([Span("t", f"s{i}", None, "web", "server") for i in range(n)])
    grow.add([Span("u", f"c{i}", f"p{i}", "api", "server") for i in range(n)])
    tree = grow.index_state()
    assert len(tree["spans"]) == len(tree["waiting"]) == MAX_CHECKPOINT_SPANS
    assert tree["spans"][-1][1] == f"c{n - 1}"  # children are spans too, the newest kept
    assert tree["waiting"][0][1] == "c100"  # the oldest waiting children are left out
    back = SpanGrowth(GRAPH)
    back.restore_index(tree)
    assert back.index_size == (MAX_CHECKPOINT_SPANS, MAX_CHECKPOINT_SPANS)
    back.add([Span("u", f"p{n - 1}", None, "web", "client")])  # the newest child's parent
    assert back.calls[("web", "api")] == 1


@pytest.mark.parametrize(
    "rows",
    [
        {"spans": [["t", "s", None, "web"]], "waiting": []},
        {"spans": [], "waiting": [["t", "s", None, "web", "server"]]},
        {"spans": [[1, "s", None, "web", "server"]], "waiting": []},
        {"spans": [], "waiting": [["t", "s", "p", "a", "server"]] * (MAX_CHECKPOINT_SPANS + 1)},
    ],
)
def test_a_bad_span_index_refuses_the_checkpoint(rows: dict[str, Any]) -> None:
    spec = _spec(grow_from_spans=True)
    a = _pipeline(spec)
    a.process_one(_batch(0, {"db": 1.0}), offset=0)
    a.process_spans(otlp_spans("cache", [("t1", "c1", "a1", 2)]), key=b"shop")
    state = a.state("shop")
    assert state is not None
    a.checkpoint("shop")
    tree = state.to_state()
    assert tree["span_index"]["waiting"]
    tree["span_index"] = rows
    with pytest.raises(CheckpointError, match=r"span_index\.") as info:
        CheckpointCodec(KEY).load(_sealed(tree), spec)
    assert info.value.reason == "malformed"

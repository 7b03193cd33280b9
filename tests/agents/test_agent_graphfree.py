"""The agent with a graph-free graph: attributions, checkpoints and restore through the app."""

from __future__ import annotations

import json

from stream_rca.config import GraphSpec
from stream_rca.core.config import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.graphfree_engine import GraphFreeEngine
from stream_rca.core.trigger import TriggerConfig
from stream_rca.streaming import TABLE_NAME
from tests.fixtures.streams import cache_fault_values

from .conftest import T0, Harness, batch

SPEC = GraphSpec(
    "shop",
    CausalGraph([], ["db", "cache", "api", "web"], name="shop"),
    ("web",),
    step=10.0,
    engine=EngineConfig(warmup=30, trigger=TriggerConfig(threshold=9.0, cooldown=0)),
    graph_free=True,
)


def _messages(n: int, fault_at: int, seed: int = 0) -> list[bytes]:
    values = cache_fault_values(n, fault_at, seed)
    return [batch("shop", T0 + 10 * t, v) for t, v in enumerate(values)]


def test_a_graph_free_graph_runs_in_the_agent_and_resumes_from_its_checkpoint() -> None:
    messages = _messages(260, 250)
    h = Harness([SPEC])
    outcomes = h.feed(messages[:200])
    assert all(o.reason is None for o in outcomes)
    assert h.checkpoint() == 1
    [record] = h.broker.of_kind("checkpoint")
    assert record.key == b"shop"

    new = Harness([SPEC])
    new.app.tables[TABLE_NAME].data["shop"] = record.value  # as recovery from the changelog
    new.offsets[0] = 200  # the committed offset
    new.feed(messages[200:])
    h.feed(messages[200:])  # the uninterrupted worker, for comparison
    state = new.runtime.pipeline.state("shop")
    assert state is not None
    assert state.restored
    assert isinstance(state.engine, GraphFreeEngine)
    docs = new.docs("attributions")
    assert docs
    for doc in docs:
        doc.pop("attribution_seconds", None)
    reference = h.docs("attributions")
    for doc in reference:
        doc.pop("attribution_seconds", None)
    assert docs == reference
    doc = docs[0]
    assert doc["method"] == "graph-free"
    assert doc["graph_used"] is False
    assert doc["root_causes"][0]["node"] == "cache"
    assert h.sample("stream_rca_incidents_total", {"graph": "shop", "target": "web"}) == 1.0
    assert json.loads(json.dumps(doc)) == doc  # plain JSON

"""The graph-free engine: the replay's rule behind the engine's interface, state as data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from stream_rca.core.checkpoint import StateError, decode_tree, encode_tree
from stream_rca.core.config import EngineConfig
from stream_rca.core.engine import Engine
from stream_rca.core.graph import CausalGraph
from stream_rca.core.graphfree import GRAPH_FREE_METHOD, GRAPH_FREE_RULE, MarginalRanker
from stream_rca.core.graphfree_engine import GraphFreeEngine, graph_free_config
from stream_rca.core.trigger import Trigger, TriggerConfig
from stream_rca.core.types import Attribution, Snapshot, StepResult

NODES = ("db", "cache", "api", "web", "queue")
GRAPH = CausalGraph([], NODES, name="shop")
CONFIG = EngineConfig(warmup=40, trigger=TriggerConfig(threshold=9.0, cooldown=0))


def _stream(n: int, seed: int = 0, fault_at: int | None = None) -> list[Snapshot]:
    """Correlated metrics; from ``fault_at`` the cache slows, then api and web follow."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        cache = 1.0 + 0.1 * rng.standard_normal()
        if fault_at is not None and t >= fault_at:
            cache += 3.0
        db = 2.0 + 0.1 * rng.standard_normal()
        api = db + cache + 0.1 * rng.standard_normal()
        web = api + 0.1 * rng.standard_normal()
        queue = 10.0 + rng.standard_normal()
        values = {"db": db, "cache": cache, "api": api, "web": web, "queue": queue}
        if t % 17 == 5:
            del values["queue"]  # a missing value now and then
        out.append(Snapshot(1000.0 + t, values, "shop", 1001.0 + t))
    return out


def _replay_reference(snaps: list[Snapshot], target: str) -> list[Attribution]:
    """What `stream-rca replay` without a graph does with the same stream (its loop)."""
    ranker = MarginalRanker([*NODES], graph_free_config(CONFIG))
    trig = Trigger("shop", target, CONFIG.trigger)
    out = []
    for snap in snaps:
        scores = ranker.process_one(snap, learn=not trig.is_open)
        d = trig.update_one(snap.ts, scores.get(target))
        if d.attribute:
            out.append(
                ranker.explain(
                    target,
                    snap,
                    graph="shop",
                    incident=d.incident_id,
                    revision=d.revision,
                    extra={"graph_used": False},
                )
            )
    return out


def _attributions(results: list[StepResult]) -> list[Attribution]:
    return [a for r in results for a in r.attributions]


def test_ranks_as_the_graph_free_replay_and_names_the_cause() -> None:
    snaps = _stream(400, fault_at=380)
    engine = GraphFreeEngine(GRAPH, CONFIG, targets=["web"])
    results = engine.process_many(snaps)
    got = _attributions(results)
    assert [a.to_dict() for a in got] == [a.to_dict() for a in _replay_reference(snaps, "web")]
    first = got[0]
    assert first.method == GRAPH_FREE_METHOD
    assert first.extra["graph_used"] is False
    assert first.extra["rule"] == GRAPH_FREE_RULE
    assert first.root_causes[0].node == "cache"
    assert first.incident_id == "shop:web:1380"
    opened = [e for r in results for e in r.events if e.kind == "opened"]
    assert [e.incident_id for e in opened] == [first.incident_id]
    assert results[-1].open_incidents == {"web": first.incident_id}
    assert results[-1].learned == ()  # nothing learns inside an incident


def test_results_say_what_was_warm_missing_and_learned() -> None:
    engine = GraphFreeEngine(GRAPH, CONFIG, targets=["web"])
    results = engine.process_many(_stream(100))
    assert set(results[0].warming) == set(NODES)
    assert not results[0].warm
    assert results[-1].warm
    assert engine.warm
    assert results[5].missing == ("queue",)
    assert set(results[-1].scores) == set(NODES)
    assert results[-1].target_scores == {"web": results[-1].scores["web"]}
    assert "web" in results[-1].learned
    bad = engine.process_one(Snapshot(2000.0, {"db": math.nan, "web": 4.0}, "shop"))
    assert bad.invalid == ("db",)
    assert "db" not in bad.missing


@hsettings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=12))
def test_any_blocks_give_the_results_of_one_by_one(sizes: list[int]) -> None:
    snaps = _stream(300, seed=3, fault_at=280)
    one = GraphFreeEngine(GRAPH, CONFIG, targets=["web", "api"])
    expected = [one.process_one(s) for s in snaps]
    blocks = GraphFreeEngine(GRAPH, CONFIG, targets=["web", "api"])
    got: list[StepResult] = []
    i = 0
    while i < len(snaps):
        n = sizes[len(got) % len(sizes)]
        got += blocks.process_many(snaps[i : i + n])
        i += n
    assert got == expected


def test_columns_give_the_same_steps() -> None:
    snaps = _stream(300, seed=4, fault_at=280)
    expected = GraphFreeEngine(GRAPH, CONFIG, targets=["web"]).process_many(snaps)
    engine = GraphFreeEngine(GRAPH, CONFIG, targets=["web"])
    head = engine.process_many_columns(snaps[:150])
    tail = engine.process_many_columns(snaps[150:])
    assert tail.first == 150
    assert head.steps() + tail.steps() == expected
    assert tail.attributions  # the fault's attribution, at its position


@pytest.mark.parametrize("cut", [37, 200, 385])
def test_a_state_round_trip_resumes_exactly(cut: int) -> None:
    snaps = _stream(420, seed=5, fault_at=380)
    whole = GraphFreeEngine(GRAPH, CONFIG, targets=["web"])
    expected = whole.process_many(snaps)
    first = GraphFreeEngine(GRAPH, CONFIG, targets=["web"])
    head = first.process_many(snaps[:cut])
    tree = decode_tree(encode_tree(first.to_state()))  # arrays + JSON, as a checkpoint
    second = GraphFreeEngine.from_state(GRAPH, CONFIG, tree)
    assert second.n_snapshots == cut
    assert head + second.process_many(snaps[cut:]) == expected


def test_from_state_refuses_trees_it_did_not_write() -> None:
    engine = GraphFreeEngine(GRAPH, CONFIG, targets=["web"])
    engine.process_many(_stream(50))
    tree = engine.to_state()
    causal = Engine(CausalGraph([("db", "web")], name="shop"), CONFIG, targets=["web"])
    with pytest.raises(StateError, match="kind"):
        GraphFreeEngine.from_state(GRAPH, CONFIG, causal.to_state())
    other = CausalGraph([], ("db", "web"), name="shop")
    with pytest.raises(StateError, match="metrics are not the graph's nodes"):
        GraphFreeEngine.from_state(other, CONFIG, tree)
    with pytest.raises(StateError, match="bank"):
        GraphFreeEngine.from_state(GRAPH, EngineConfig(warmup=40, reservoir=512), tree)
    tree["ranker"]["onset"] = np.zeros(2, dtype=np.int64)
    with pytest.raises(StateError, match="onset"):
        GraphFreeEngine.from_state(GRAPH, CONFIG, tree)


def test_needs_targets() -> None:
    with pytest.raises(ValueError, match="needs its targets"):
        GraphFreeEngine(GRAPH, CONFIG)

"""Sparse nodes are marginalised by the engine, by coverage only, and results say so."""

from __future__ import annotations

import numpy as np

from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.structure import marginalise_parents
from stream_rca.core.trigger import TriggerConfig


def test_marginalising_keeps_ancestry() -> None:
    g = CausalGraph([("a", "b"), ("b", "c"), ("x", "c"), ("c", "t")])
    i = g.index
    parents = marginalise_parents(g.parent_index, list(range(len(g))), {i["b"], i["c"]})
    assert sorted(g.nodes[p] for p in parents[i["t"]]) == ["a", "x"]
    assert parents[i["b"]].size == 0
    assert parents[i["c"]].size == 0


def test_the_engine_marginalises_a_sparse_node_and_names_it() -> None:
    # a -> s -> t, where s has values in 20 % of the snapshots only
    g = CausalGraph([("a", "s"), ("s", "t")], name="g")
    rng = np.random.default_rng(0)
    n = 600
    a = rng.normal(size=n)
    s = a + 0.1 * rng.normal(size=n)
    t = s + 0.1 * rng.normal(size=n)
    s[rng.random(n) > 0.2] = np.nan
    data = np.column_stack([a, s, t])
    data[550, 0] += 8.0  # a fault at the root: t moves through the (missing) s
    data[550, 2] += 8.0
    engine = Engine(g, EngineConfig(warmup=100, trigger=TriggerConfig(threshold=6.0)))
    results = engine.process_block(np.arange(n, dtype=np.float64), data)
    assert engine.marginalised == ("s",)
    atts = [x for r in results for x in r.attributions]
    assert atts
    assert atts[0].extra["marginalised"] == ["s"]
    assert "s" not in atts[0].players  # t's mechanism now reads a directly
    assert atts[0].root_causes[0].node == "a"
    assert all("s" not in r.scores for r in results)

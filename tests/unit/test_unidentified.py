"""Edges whose coefficient the normal data cannot identify (GraphModels.unidentified_edges),
and the attribution that names them."""

from __future__ import annotations

import numpy as np

from stream_rca.core.config import EngineConfig
from stream_rca.core.engine import Engine
from stream_rca.core.graph import CausalGraph
from stream_rca.core.types import Snapshot

GRAPH = CausalGraph([("never", "site"), ("once", "site"), ("busy", "site")], name="shop")


def _trained(refresh: bool = True) -> Engine:
    """``site`` = never + once + busy + noise; ``never`` is 0 throughout, ``once`` is 0 but for
    one snapshot, ``busy`` varies all the time."""
    rng = np.random.default_rng(3)
    engine = Engine(GRAPH, EngineConfig(warmup=50, refresh_residuals=refresh), targets=["site"])
    n = 600
    once = np.zeros(n)
    once[300] = 1.0
    busy = rng.gamma(4.0, 1.0, n)
    site = once + busy + rng.normal(0, 0.3, n)
    for i in range(n):
        engine.process_one(
            Snapshot(
                float(i),
                {"never": 0.0, "once": float(once[i]), "busy": float(busy[i]), "site": site[i]},
                "shop",
            )
        )
    return engine


def _edges(engine: Engine, values: dict[str, float]) -> set[tuple[str, str]]:
    m = engine._models
    x = np.array([values[n] for n in engine.graph.nodes])
    j = engine.graph.index["site"]
    found = m.unidentified_edges(np.array([j]), x, 10)
    return {(engine.graph.nodes[p], engine.graph.nodes[c]) for p, c in found}


def test_constant_and_once_moved_parents_are_unidentified_beyond_their_values() -> None:
    engine = _trained()
    normal = {"never": 0.0, "once": 0.0, "busy": 4.0, "site": 4.0}
    assert _edges(engine, normal) == set()  # within every held value: nothing extrapolated
    fault = {"never": 21.0, "once": 3.0, "busy": 40.0, "site": 20.0}
    # busy is far beyond its held values too, but it moved in every snapshot: identified
    assert _edges(engine, fault) == {("never", "site"), ("once", "site")}
    assert _edges(engine, {**normal, "once": 1.0}) == set()  # a value it held once: not beyond


def test_nothing_is_reported_without_kept_values() -> None:
    engine = _trained(refresh=False)
    assert _edges(engine, {"never": 21.0, "once": 3.0, "busy": 4.0, "site": 20.0}) == set()


def test_the_attribution_names_the_unidentified_edges() -> None:
    engine = _trained()
    snap = Snapshot(1e6, {"never": 21.0, "once": 0.0, "busy": 4.0, "site": 25.0}, "shop")
    att = engine.explain(snap, "site")
    assert att.extra["unidentified"] == [["never", "site"]]
    assert att.to_dict()["unidentified"] == [["never", "site"]]
    calm = engine.explain(Snapshot(1e6 + 1, {"never": 0.0, "once": 0.0, "busy": 4.0,
                                             "site": 4.2}, "shop"), "site")  # fmt: skip
    assert calm.extra["unidentified"] == []

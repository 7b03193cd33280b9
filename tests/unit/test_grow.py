"""Growing an engine's graph keeps the unchanged nodes' learned state (stream_rca.core.grow)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_rca.core.checkpoint import StateError
from stream_rca.core.config import EngineConfig
from stream_rca.core.engine import Engine
from stream_rca.core.graph import CausalGraph
from stream_rca.core.grow import diff_graphs, grow_engine
from stream_rca.core.types import Snapshot

OLD = CausalGraph([("db", "api"), ("api", "web"), ("disk", "db"), ("auth", "web")], name="shop")
# a new callee of api (cache), and a new caller (edge) of web: api and edge change, the rest keep
NEW = CausalGraph([*OLD.edges, ("cache", "api"), ("web", "edge")], name="shop")


def _row(rng: np.random.Generator, t: int) -> dict[str, float]:
    disk = rng.gamma(2.0, 0.1)
    db = disk + rng.gamma(2.0, 0.1)
    cache = rng.gamma(2.0, 0.05)
    api = db + cache + rng.gamma(2.0, 0.05)
    auth = rng.gamma(2.0, 0.05)
    web = api + auth + rng.gamma(2.0, 0.05)
    return {"disk": disk, "db": db, "cache": cache, "api": api, "auth": auth, "web": web,
            "edge": web + rng.gamma(2.0, 0.05)}  # fmt: skip


def _trained(n: int = 405) -> tuple[Engine, list[dict[str, float]]]:
    rng = np.random.default_rng(3)
    rows = [_row(rng, t) for t in range(n + 40)]
    engine = Engine(OLD, EngineConfig(warmup=60), targets=["web"])
    for t, r in enumerate(rows[:n]):
        engine.process_one(Snapshot(float(t), {k: v for k, v in r.items() if k in OLD}))
    return engine, rows


def test_unchanged_nodes_keep_their_scores() -> None:
    engine, rows = _trained()
    grown, change = grow_engine(engine, NEW)
    assert set(change.kept) == {"disk", "db", "auth", "web"}  # web: same parents (api, auth)
    assert set(change.cold) == {"cache", "api", "edge"}
    assert grown.n_snapshots == engine.n_snapshots
    n = engine.n_snapshots
    # the rest of the current learning period: both engines score against frozen models
    room = engine.config.refit_every - n % engine.config.refit_every
    for t in range(n, n + room - 1):
        r = rows[t]
        old = engine.process_one(Snapshot(float(t), {k: v for k, v in r.items() if k in OLD}))
        new = grown.process_one(Snapshot(float(t), r))
        for node in change.kept:
            assert math.isclose(old.scores[node], new.scores[node], rel_tol=1e-9, abs_tol=1e-9)
        assert "cache" not in new.scores
        assert "edge" not in new.scores


def test_web_keeps_its_state_when_only_a_caller_is_added() -> None:
    engine, rows = _trained()
    g = CausalGraph([*OLD.edges, ("web", "edge")], name="shop")
    grown, change = grow_engine(engine, g, targets=["web"])
    assert "web" in change.kept
    assert change.cold == ("edge",)
    t = engine.n_snapshots
    old = engine.process_one(Snapshot(float(t), {k: v for k, v in rows[t].items() if k in OLD}))
    new = grown.process_one(Snapshot(float(t), {k: v for k, v in rows[t].items() if k in g}))
    assert math.isclose(old.target_scores["web"], new.target_scores["web"], rel_tol=1e-9)
    assert set(old.scores) <= set(new.scores)


def test_grown_engine_is_warm_again_after_warmup_and_checkpoints() -> None:
    engine, rows = _trained()
    grown, _ = grow_engine(engine, NEW)
    assert not grown.warm
    for t in range(engine.n_snapshots, engine.n_snapshots + 80):
        grown.process_one(Snapshot(float(t), rows[t % len(rows)]))
    assert grown.warm
    twin = Engine.from_state(NEW, grown.config, grown.to_state())
    assert twin.n_snapshots == grown.n_snapshots


def test_growth_during_warmup_carries_the_warmup_rows() -> None:
    engine, _ = _trained(n=37)
    grown, change = grow_engine(engine, NEW)
    assert grown.n_snapshots == 37
    assert not grown.warm
    assert "db" in change.kept


def test_diff_lists_edges() -> None:
    d = diff_graphs(OLD, NEW)
    assert d.added_nodes == ("cache", "edge")
    assert ("cache", "api") in d.added_edges
    assert not d.removed_edges
    assert d.changed
    assert "2 new node(s)" in d.summary()
    assert not diff_graphs(OLD, OLD).changed


def test_river_mechanisms_are_refused() -> None:
    engine = Engine(OLD, EngineConfig(warmup=20), mechanisms={"api": "tree"})
    with pytest.raises(StateError):
        grow_engine(engine, NEW)


def test_kept_nodes_carry_the_values_beside_their_residuals() -> None:
    """The values kept beside a kept node's residuals carry over (its parents re-ordered),
    so the next refresh of its residuals (after the next learning step) is the old engine's."""
    engine, rows = _trained()
    grown, _ = grow_engine(engine, NEW)
    for node in ("db", "web"):
        i, j = OLD.index[node], NEW.index[node]
        own_old, par_old = engine._models.held_values(i)
        own_new, par_new = grown._models.held_values(j)
        np.testing.assert_array_equal(own_old, own_new)
        names_old = [OLD.nodes[int(p)] for p in engine._models.parent_index[i]]
        names_new = [NEW.nodes[int(p)] for p in grown._models.parent_index[j]]
        for a, name in enumerate(names_new):
            np.testing.assert_array_equal(par_new[a], par_old[names_old.index(name)])
    # both learn the same rows: web's (and db's) scores stay equal across the next refits
    n = engine.n_snapshots
    for t in range(n, n + 40):
        r = rows[t]
        old = engine.process_one(Snapshot(float(t), {k: v for k, v in r.items() if k in OLD}))
        new = grown.process_one(Snapshot(float(t), r))
        for node in ("db", "disk"):
            assert math.isclose(old.scores[node], new.scores[node], rel_tol=1e-9, abs_tol=1e-9)

"""Learning a block of snapshots at once equals learning them one by one.

``ChangeTracker.learn_many`` against ``learn_one`` row by row (reference, recent window,
random stream), and ``ChangeService.observe_block`` against ``observe_open`` snapshot by
snapshot (the answers, their order and content, and the state after), for random blocks
with missing values, anomalous rows and incidents that open, close and stay open; also when it
is handed the rows the engine read from the same snapshots (``BlockResult.values``), as the
batch path does, and when the rows it is handed are in another node order (it reads the
snapshots then).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.config import GraphSpec
from stream_rca.core.change_reference import ChangeTracker
from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.types import Snapshot
from stream_rca.streaming.changes import ChangeService

GRAPH = CausalGraph([("db", "api"), ("cache", "api")], name="shop")
SPEC = GraphSpec("shop", GRAPH, ("api",), step=10.0)


def plain(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: plain(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [plain(v) for v in tree]
    if isinstance(tree, np.ndarray):
        return [None if x != x else x for x in tree.ravel().tolist()]
    return tree


@settings(max_examples=200, deadline=None)
@given(
    blocks=st.lists(st.integers(0, 40), max_size=8),
    capacity=st.sampled_from([8, 12, 50]),
    recent=st.sampled_from([8, 9, 30]),
    forget=st.sampled_from([0.3, 1.0]),
    seed=st.integers(0, 5),
    frozen_at=st.integers(-1, 6),
)
def test_learn_many_is_learn_one_row_by_row(
    blocks: list[int], capacity: int, recent: int, forget: float, seed: int, frozen_at: int
) -> None:
    one = ChangeTracker(GRAPH, capacity=capacity, recent=recent, forget=forget, seed=seed)
    many = ChangeTracker(GRAPH, capacity=capacity, recent=recent, forget=forget, seed=seed)
    rng = np.random.default_rng(seed)
    nodes = GRAPH.nodes
    t = 0.0
    for b, size in enumerate(blocks):
        if b == frozen_at:
            one.freeze()
            many.freeze()
        rows = rng.normal(size=(size, len(nodes)))
        rows[rng.random(rows.shape) < 0.1] = np.nan
        ts = t + np.arange(size, dtype=float)
        t += size
        flags = (rng.random(size) < 0.3).tolist()
        for i in range(size):
            values = {n: rows[i, k] for k, n in enumerate(nodes) if not np.isnan(rows[i, k])}
            one.learn_one(values, float(ts[i]), anomalous=flags[i])
        many.learn_many(rows, ts, flags)
        assert plain(one.to_state()) == plain(many.to_state())


def answers(outputs: list[Any]) -> list[Any]:
    return [(o.kind, o.key, json.loads(o.value)) for o in outputs]


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=5),
    incidents=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 30), st.integers(0, 2))),
    after=st.sampled_from([0, 1, 3, 12]),
)
def test_observe_block_is_observe_open_snapshot_by_snapshot(
    sizes: list[int], incidents: list[tuple[int, int, int]], after: int
) -> None:
    total = sum(sizes)
    opened: list[dict[str, str]] = [{} for _ in range(total)]
    for start, length, which in incidents:  # spans of open incidents of one id
        for i in range(start, min(total, start + length)):
            opened[i] = {"api": f"shop/api/{start}"} if which < 2 else {"db": f"shop/db/{which}"}
    rng = np.random.default_rng(len(incidents))
    snapshots = []
    for i in range(total):
        db, cache = rng.gamma(2.0, 0.5), rng.gamma(2.0, 0.5)
        values = {"db": db, "cache": cache, "api": db + cache + rng.normal(0, 0.3)}
        if i % 7 == 3:
            del values["cache"]
        snapshots.append(Snapshot(10.0 * i, values, "shop"))
    one = ChangeService([SPEC], after=after, capacity=40, recent=20)
    block = ChangeService([SPEC], after=after, capacity=40, recent=20)
    given_rows = ChangeService([SPEC], after=after, capacity=40, recent=20)
    other_order = ChangeService([SPEC], after=after, capacity=40, recent=20)  # reads snapshots
    for service in (one, block, given_rows, other_order):
        service.tracker("shop").min_rows = 10
    engine = Engine(GRAPH, EngineConfig(warmup=20))
    want: list[Any] = []
    for i, snap in enumerate(snapshots):
        made_one = one.observe_open("shop", snap, opened[i])
        if made_one:
            want.append((i, answers(made_one)))
    got: list[Any] = []
    got_given: list[Any] = []
    start = 0
    for size in sizes:
        part = snapshots[start : start + size]
        incidents_of = {i: opened[start + i] for i in range(size) if opened[start + i]}
        made = block.observe_block("shop", part, incidents_of)
        for i in sorted(made):
            got.append((start + i, answers(made[i])))
        columns = engine.process_many_columns(part)
        assert columns.values is not None
        made = given_rows.observe_block("shop", part, incidents_of, columns.values, columns.nodes)
        for i in sorted(made):
            got_given.append((start + i, answers(made[i])))
        flipped = columns.values[:, ::-1].copy(), columns.nodes[::-1]
        other_order.observe_block("shop", part, incidents_of, *flipped)
        start += size
    assert got == want
    assert got_given == want
    assert plain(one.state_of("shop")) == plain(block.state_of("shop"))
    assert plain(one.state_of("shop")) == plain(given_rows.state_of("shop"))
    assert plain(one.state_of("shop")) == plain(other_order.state_of("shop"))

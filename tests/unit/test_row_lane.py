"""The row lane (decode_rows -> Aligner.add_row) gives what the sample path gives.

Random mixes of rows and messages, good and bad: duplicates, revisions, late and far-ahead
times, unknown nodes and graphs, malformed JSON, few open windows. Each is run through the
new lane and through the path it replaces; statuses, snapshots, counts, aligner state and
every outcome must be equal.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.config import GraphSpec
from stream_rca.core.config import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.io.aligner import Aligner
from stream_rca.io.events import Sample
from stream_rca.io.fastdecode import Row, decode_batch, decode_rows
from stream_rca.streaming.batch import InputRecord, process_batch
from stream_rca.streaming.changes import ChangeService
from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.records import Outcome

NOW = 1_800_000_000.0
T0 = NOW - 10_000.0
NODES = ("a", "b", "c")


def plain(tree: Any) -> Any:
    """A state tree with its arrays as lists (NaN as None), for ``==``."""
    if isinstance(tree, dict):
        return {k: plain(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [plain(v) for v in tree]
    if isinstance(tree, np.ndarray):
        return [None if isinstance(x, float) and x != x else x for x in tree.ravel().tolist()]
    return tree


window = st.one_of(st.integers(0, 12), st.integers(100, 103))  # mostly near, sometimes far ahead
row_st = st.tuples(
    window,
    st.sampled_from([0.0, 0.5, 9.99]),
    st.dictionaries(
        st.sampled_from([*NODES, "x"]), st.sampled_from([0.0, 1.0, 2.0]), min_size=0, max_size=4
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(row_st, max_size=40),
    lateness=st.sampled_from([0.0, 5.0, 15.0]),
    most=st.sampled_from([1, 2, 3, 1024]),
    ahead=st.sampled_from([None, 20.0]),
)
def test_add_row_is_add_many_on_the_rows_samples(
    rows: list[tuple[int, float, dict[str, float]]],
    lateness: float,
    most: int,
    ahead: float | None,
) -> None:
    def make() -> Aligner:
        return Aligner(NODES, 10.0, lateness, graph="g", max_open_windows=most, max_ahead=ahead)

    lane, old = make(), make()
    for w, frac, values in rows:
        ts = T0 + 10.0 * w + frac
        statuses, snapshots = lane.add_row(ts, dict(values))
        made = old.add_many([Sample("g", n, ts, v) for n, v in values.items()])
        assert statuses == tuple(r.status for r in made)
        assert snapshots == tuple(s for r in made for s in r.snapshots)
        assert plain(lane.to_state()) == plain(old.to_state())
    assert lane.flush() == old.flush()


def message(draw: st.DrawFn) -> bytes | None:
    kind = draw(
        st.sampled_from(
            ["single", "single", "single", "batch", "batch", "bad", "string_ts", "none"]
        )
    )
    w = draw(st.one_of(st.integers(0, 30), st.just(60)))
    ts = T0 + 10.0 * w + draw(st.sampled_from([0.0, 3.0]))
    graph = draw(st.sampled_from(["g", "g", "g", "h", "nope"]))
    value = draw(st.sampled_from([0.5, 1.0, 2.0, 1e308, float("nan")]))
    node = draw(st.sampled_from(["db", "api", "api", "zz"]))
    if kind == "none":
        return None
    if kind == "bad":
        return draw(st.sampled_from([b"{", b"[]", b'{"graph":"g"}', b'{"graph":"g","ts":1}']))
    if kind == "single":
        doc: dict[str, Any] = {"graph": graph, "node": node, "ts": ts, "value": value}
    elif kind == "string_ts":
        doc = {"graph": graph, "node": node, "ts": str(ts), "value": value}
    else:
        nodes = draw(st.lists(st.sampled_from(["db", "api", "zz"]), unique=True, max_size=3))
        doc = {"graph": graph, "ts": ts, "values": {n: value + i for i, n in enumerate(nodes)}}
    return json.dumps(doc).encode()


def spec(name: str) -> GraphSpec:
    return GraphSpec(
        name,
        CausalGraph([("db", "api")], name=name),
        ("api",),
        step=10.0,
        allowed_lateness=5.0,
        engine=EngineConfig(warmup=10),
    )


def comparable(outcome: Outcome) -> tuple[Any, ...]:
    outputs = []
    for out in outcome.outputs:
        doc = json.loads(out.value)
        doc.pop("attribution_seconds", None)
        outputs.append((out.kind, out.key, doc))
    return (outcome.graph, outcome.reason, outcome.statuses, outcome.replayed, outputs)


@settings(max_examples=60, deadline=None)
@given(
    raws=st.lists(st.composite(message)(), max_size=80),
    size=st.integers(1, 90),
    partitions=st.lists(st.sampled_from([0, 0, 0, 1]), min_size=80, max_size=80),
    replayed=st.integers(-1, 20),
)
def test_process_batch_on_random_mixes_gives_the_outcomes_of_process_one(
    raws: list[bytes | None], size: int, partitions: list[int], replayed: int
) -> None:
    specs = [spec("g"), spec("h")]
    batched, single = (
        Pipeline(
            specs,
            publish_scores=True,
            clock=lambda: NOW,
            changes=ChangeService(specs, after=2, capacity=8, recent=8),
        )
        for _ in range(2)
    )
    # offsets per partition; the first messages read again in a later batch (the runtime
    # leaves out messages read twice within one batch)
    records = [InputRecord(raw, partitions[i], i, "metrics", b"k") for i, raw in enumerate(raws)]
    again = records[: replayed + 1]
    got: list[Outcome] = []
    for start in range(0, len(records), size):
        got += process_batch(batched, records[start : start + size])
    got += process_batch(batched, again)
    records += again
    want = [
        single.process_one(
            r.value, partition=r.partition, offset=r.offset, topic=r.topic, key=r.key
        )
        for r in records
    ]
    assert [comparable(o) for o in got] == [comparable(o) for o in want]
    for name in ("g", "h"):
        a, b = batched.state(name), single.state(name)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert plain(a.aligner.to_state()) == plain(b.aligner.to_state())
            assert a.engine.n_snapshots == b.engine.n_snapshots
            assert a.events == b.events
            assert batched.changes is not None
            assert single.changes is not None
            assert plain(batched.changes.state_of(name)) == plain(single.changes.state_of(name))


@settings(max_examples=100, deadline=None)
@given(raws=st.lists(st.composite(message)(), max_size=30))
def test_decode_rows_are_decode_batchs_samples(raws: list[bytes | None]) -> None:
    known = {"g": frozenset({"db", "api"}), "h": frozenset({"db", "api"})}
    rows = decode_rows(raws, known=known, now=NOW)
    samples = decode_batch(raws, known=known, now=NOW)
    assert len(rows) == len(samples)
    for r, s in zip(rows, samples, strict=True):
        if isinstance(r, Row):
            assert r.samples() == s
        elif isinstance(r, list):
            assert r == s
        else:
            assert not isinstance(s, list)
            assert (r.reason, r.message) == (s.reason, s.message)

"""Messages read again below what their graph's state holds: skipped unread, nothing lost."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from stream_rca.streaming.rereads import Rereads
from tests.agents.conftest import T0, Harness, batch, chain_rows, chain_spec, single


def hostile_mix() -> list[tuple[bytes | None, bytes | None]]:
    """Valid batch and single events of ``shop`` among messages no graph accepts, keyed
    ``shop`` (and two that are not)."""
    out: list[tuple[bytes | None, bytes | None]] = []
    for i, row in enumerate(chain_rows(60)):
        ts = T0 + 10 * i
        if i % 3:
            out.append((b"shop", batch("shop", ts, row)))
        else:
            out += [(b"shop", single("shop", node, ts, v)) for node, v in row.items()]
        if i % 7 == 0:
            out += [
                (b"shop", b'{"graph":"shop","node":"db","ts":%d,"value":NaN}' % ts),
                (b"shop", single("shop", "nope", ts, 1.0)),  # unknown node
                (b"shop", b'{"graph":"shop","ts":1,"values":{"db":1}'),  # malformed
                (b"shop", json.dumps({"graph": "other", "node": "db", "ts": ts}).encode()),
                (b"shop", b'{"graph":"shop\\u0041","node":"db","ts":1,"value":1}'),  # escape
                (b"shop", None),  # a tombstone
                (b"other", single("shop", "db", ts + 1, 0.5)),  # its key names no graph
                (None, single("shop", "api", ts + 2, 0.5)),
            ]
    return out


def run(h: Harness, inputs: list[tuple[int, int, bytes | None, bytes | None]]) -> None:
    for start in range(0, len(inputs), 37):
        asyncio.run(h.runtime.handle_batch(inputs[start : start + 37]))


def test_a_reread_below_the_state_skips_what_it_holds_and_loses_nothing() -> None:
    inputs = [(0, o, k, v) for o, (k, v) in enumerate(hostile_mix())]
    h = Harness([chain_spec()], publish_scores=True)
    h.runtime.positions[0] = 0
    run(h, inputs)
    h.checkpoint()
    before = list(h.broker.outputs)
    state = h.runtime.pipeline.state("shop")
    assert state is not None
    snapshots = state.engine.n_snapshots
    processed = h.sample("stream_rca_records_total", {"outcome": "processed"})
    dead = h.sample("stream_rca_records_total", {"outcome": "dead_lettered"})
    assert processed is not None
    assert dead is not None
    assert processed + dead == len(inputs)

    h.runtime.positions[0] = 0  # read everything again (a rebalance's checkpoint, no commit)
    run(h, inputs)
    h.checkpoint()
    again = h.broker.outputs[len(before) :]
    # skipped unread: the messages keyed by their graph that name it as written; the others
    # are decoded: the valid ones found in the state, the rest dead-lettered again
    unread = {
        o
        for _, o, k, v in inputs
        if k == b"shop"
        and v is not None
        and b"\\" not in v
        and (b'"graph":"shop"' in v or b'"graph": "shop"' in v)
    }
    assert len(unread) < len(inputs)

    def dead_letters(outputs: list) -> list[tuple[int, str]]:
        docs = [json.loads(o.value) for o in outputs if o.kind == "deadletter"]
        return sorted((d["source"]["offset"], d["reason"]) for d in docs)

    assert {o.kind for o in again} <= {"deadletter", "checkpoint"}
    assert dead_letters(again) == [x for x in dead_letters(before) if x[0] not in unread]
    assert any(x[0] in unread for x in dead_letters(before))  # some are not written again
    replayed = h.sample("stream_rca_records_total", {"outcome": "replayed"})
    dead_again = h.sample("stream_rca_records_total", {"outcome": "dead_lettered"})
    assert dead_again is not None
    assert replayed is not None
    assert replayed + (dead_again - dead) == len(inputs)  # every message accounted for
    assert state.engine.n_snapshots == snapshots  # nothing ran twice
    assert h.sample("stream_rca_records_total", {"outcome": "processed"}) == processed
    assert h.runtime.positions[0] == len(inputs)
    assert h.broker.commits[-1] == {0: len(inputs)}


def test_only_a_live_batch_path_graph_named_by_key_and_value_may_skip() -> None:
    h = Harness([chain_spec(), dataclasses.replace(chain_spec("free"), accept_unknown=True)])
    rows = chain_rows(3)
    for graph in ("shop", "free"):
        h.feed([batch(graph, T0 + 10 * i, r) for i, r in enumerate(rows)], key=graph.encode())
    held = Rereads(h.runtime.pipeline)
    raw = batch("shop", T0, rows[0])
    assert held.graph(0, 2, b"shop", raw) == "shop"  # offsets 0-2 on partition 0 are held
    assert held.graph(0, 3, b"shop", raw) is None  # not yet in the state
    assert held.graph(1, 0, b"shop", raw) is None  # another partition
    assert held.graph(0, 0, b"other", raw) is None  # its key names no live graph
    assert held.graph(0, 0, b"shop", batch("other", T0, rows[0])) is None  # nor its value
    assert held.graph(0, 0, b"shop", raw.replace(b'"shop"', b'"sh\\u006fp"')) is None
    assert held.graph(0, 0, b"shop", raw.replace(b'": ', b'":')) == "shop"  # compact
    assert held.graph(0, 0, b"shop", raw.replace(b'": ', b'" : ')) is None  # not as written
    assert held.graph(0, 0, b"free", batch("free", T0, rows[0])) is None  # its own path
    assert held.graph(0, 0, b"shop", None) is None
    assert not Rereads(Harness([chain_spec()]).runtime.pipeline)  # no live state: nothing

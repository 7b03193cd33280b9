"""Checkpoints: written after the results they cover, restored without a new warm-up, and
replays after a crash that are idempotent and keep incident ids; a stored record that does not
verify is refused (a log line, a metric) and the graph starts afresh, nothing executed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest

from stream_rca.config import GraphSpec
from stream_rca.core.checkpoint import encode_tree, seal
from stream_rca.core.engine import Engine
from stream_rca.streaming import TABLE_NAME, CheckpointError, Pipeline
from stream_rca.streaming.state import CheckpointCodec, load_state
from tests.agents.conftest import (
    CHECKPOINT_KEY,
    NOW,
    T0,
    Harness,
    batch,
    chain_rows,
    chain_spec,
)

CODEC = CheckpointCodec(CHECKPOINT_KEY.encode())

needs_engine_state = pytest.mark.skipif(
    not (hasattr(Engine, "to_state") and hasattr(Engine, "from_state")),
    reason="Engine.to_state()/Engine.from_state(graph, config, state) not in this build yet",
)
"""Round trips through a real engine: they run as soon as the engine's state is data."""


def _stream(n: int, *, anomalies: dict[int, float] | None = None) -> list[bytes]:
    """Batch events of ``n`` windows (step 10) of the chain; ``db`` broken at some windows."""
    rows = chain_rows(n, seed=3)
    for i, db in (anomalies or {}).items():
        rows[i] = {"db": db, "api": db + 0.1, "web": db + 0.2}
    return [batch("shop", T0 + 10 * i, row) for i, row in enumerate(rows)]


def _docs(pipeline: Pipeline, messages: list[bytes], start: int, stop: int) -> list[dict[str, Any]]:
    """Attribution documents, without their wall-clock duration (the rest is deterministic)."""
    out = []
    for offset in range(start, stop):
        outcome = pipeline.process_one(messages[offset], partition=0, offset=offset)
        for o in outcome.outputs:
            if o.kind == "attributions":
                doc = json.loads(o.value)
                doc.pop("attribution_seconds", None)
                out.append(doc)
    return out


def _pipeline(spec: GraphSpec, blob: bytes | None = None) -> Pipeline:
    return Pipeline([spec], clock=lambda: NOW, loader=lambda graph: blob, codec=CODEC)


@needs_engine_state
def test_checkpoint_follows_the_results_and_precedes_the_offset_commit() -> None:
    h = Harness([chain_spec()], publish_scores=True)
    h.feed(_stream(40), partition=2)
    h.feed([b"not json"], partition=1)
    assert h.broker.commits == []  # nothing is committed before a checkpoint
    calls = len(h.broker.log)
    assert h.checkpoint() == 1
    assert h.broker.log[calls:] == [
        ("flush",),  # the results of the checkpointed messages are delivered first
        ("send", "checkpoint"),
        ("flush",),
        ("commit", {1: 1, 2: 40}),  # the next offsets to read, covered by the checkpoint
    ]
    [record] = h.broker.of_kind("checkpoint")
    assert record.key == b"shop"
    assert record.partition == 2  # the changelog partition of the graph's input partition
    assert h.runtime.pipeline.dirty == ()
    state = load_state(record.value, chain_spec(), CODEC)
    assert state.offsets == {2: 39}
    assert state.engine.n_snapshots == 39
    assert h.checkpoint() == 0  # nothing changed since
    assert len(h.broker.commits) == 1
    h.feed([b"[]"], partition=1)  # a dead letter only: committed after a flush
    calls = len(h.broker.log)
    assert h.checkpoint() == 0
    assert h.broker.log[calls:] == [("flush",), ("commit", {1: 2})]


@needs_engine_state
def test_a_restored_graph_needs_no_new_warmup() -> None:
    spec = chain_spec(warmup=20)
    messages = _stream(80)
    first = _pipeline(spec)
    _docs(first, messages, 0, 50)
    assert first.state("shop") is not None
    assert first.state("shop").engine.warm
    blob = first.checkpoint("shop")

    second = _pipeline(spec, blob)
    outcome = second.process_one(messages[50], partition=0, offset=50)
    state = second.state("shop")
    assert state is not None
    assert state.restored
    [result] = outcome.results
    assert result.warm
    assert set(result.scores) == {"db", "api", "web"}
    assert result.ts == T0 + 490  # the window the checkpointed aligner held open


@needs_engine_state
def test_replay_after_a_crash_is_idempotent_and_keeps_incident_ids() -> None:
    """Checkpoint at offset 59, crash at 89 with offsets committed up to 49: the next owner
    restores offset 59, skips 50..59, and redoes 60..89 with the same results and ids."""
    spec = chain_spec(warmup=20)
    messages = _stream(120, anomalies={40: 5.0, 70: 4.4, 100: 5.6})
    reference = _docs(_pipeline(spec), messages, 0, 120)
    assert [d["window"]["start"] for d in reference] == [T0 + 400, T0 + 700, T0 + 1000]

    crashed = _pipeline(spec)
    before = _docs(crashed, messages, 0, 60)
    blob = crashed.checkpoint("shop")
    lost = _docs(crashed, messages, 60, 90)  # published, then the worker dies

    resumed = _pipeline(spec, blob)
    skipped = [resumed.process_one(messages[o], partition=0, offset=o) for o in range(50, 60)]
    assert all(o.replayed and not o.outputs for o in skipped)
    after = _docs(resumed, messages, 60, 120)

    assert before + after == reference  # nothing lost, same documents, same ids
    assert lost == after[: len(lost)]
    assert len(lost) == 1


@needs_engine_state
def test_a_checkpoint_of_another_spec_is_not_restored(caplog: pytest.LogCaptureFixture) -> None:
    spec = chain_spec(warmup=20)
    first = _pipeline(spec)
    _docs(first, _stream(30), 0, 30)
    blob = first.checkpoint("shop")
    changed = dataclasses.replace(spec, step=5.0)
    with pytest.raises(CheckpointError, match="another spec"):
        load_state(blob, changed, CODEC)
    with caplog.at_level(logging.WARNING, logger="stream_rca.streaming"):
        fresh = _pipeline(changed, blob)
        fresh.process_one(batch("shop", T0, {"db": 1.0}), offset=0)
    state = fresh.state("shop")
    assert state is not None
    assert not state.restored
    assert state.offsets == {0: 0}
    assert "another spec" in caplog.text
    with pytest.raises(CheckpointError, match="not_checkpoint"):
        load_state(b"garbage", spec, CODEC)


@needs_engine_state
def test_the_agent_restores_a_graph_from_the_table() -> None:
    spec = chain_spec(warmup=20)
    old = Harness([spec])
    old.feed(_stream(40))
    old.checkpoint()
    [record] = old.broker.of_kind("checkpoint")

    new = Harness([spec], publish_scores=True)
    new.app.tables[TABLE_NAME].data["shop"] = record.value  # as recovery from the changelog
    replayed = new.feed([batch("shop", T0, {"db": 1.0})])  # offset 0: already in the state
    assert replayed[0].replayed
    assert new.docs("scores") == []
    new.offsets[0] = 40  # the committed offset
    outcomes = new.feed([batch("shop", T0 + 400, {"db": 0.2, "api": 0.3, "web": 0.4})])
    assert outcomes[0].results[0].warm
    [doc] = new.docs("scores")
    assert doc["warm"]
    assert doc["snapshots"] == 40
    state = new.runtime.pipeline.state("shop")
    assert state is not None
    assert state.restored


def test_a_graph_on_two_partitions_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness([chain_spec()])
    with caplog.at_level(logging.WARNING, logger="stream_rca.streaming"):
        h.feed([batch("shop", T0, {"db": 1.0})], partition=0)
        h.feed([batch("shop", T0 + 10, {"db": 1.0})], partition=3)
    assert "partitions 0 and 3" in caplog.text
    assert h.runtime.pipeline.partition_of("shop") == 0


@needs_engine_state
def test_graphs_moved_away_in_a_rebalance_are_dropped() -> None:
    from faust.types import TP

    h = Harness([chain_spec("a"), chain_spec("b")])
    h.feed([batch("a", T0, {"db": 1.0})], key=b"a", partition=0)
    h.feed([batch("b", T0, {"db": 1.0})], key=b"b", partition=1)
    asyncio.run(h.runtime.on_revoked({TP("metrics", 0), TP("metrics", 1)}))
    assert len(h.broker.of_kind("checkpoint")) == 2  # everything saved before the move
    asyncio.run(h.runtime.on_assigned({TP("metrics", 1), TP("engine-state", 1)}))
    assert h.runtime.pipeline.graphs == ("b",)


def test_messages_skipped_by_the_consumer_are_read_again_and_repeats_ignored() -> None:
    """faust can skip a message at a rebalance: the runtime notices the gap in the offsets,
    reads the missing messages again and processes them first; a message delivered again is
    not processed twice."""
    messages = _stream(20)
    h = Harness([chain_spec()])
    h.feed(messages[:10])  # offsets 0..9
    h.broker.inputs[0] = {o: (b"shop", messages[o]) for o in range(10, 15)}
    h.offsets[0] = 15  # offsets 10..14 never reach the agent
    outcomes = h.feed(messages[15:17])
    assert ("fetch", 0, 10, 15) in h.broker.log
    state = h.runtime.pipeline.state("shop")
    assert state is not None
    assert state.engine.n_snapshots == 16  # windows 0..15 (16 is open): nothing was lost
    assert [r.ts for o in outcomes for r in o.results] == [T0 + 140, T0 + 150]
    h.offsets[0] = 3  # a repeat of offset 3 (already processed) changes nothing
    [repeat] = h.feed([messages[3]])
    assert repeat.replayed
    assert state.engine.n_snapshots == 16
    assert h.runtime.positions == {0: 17}


def test_the_tail_of_a_quiet_partition_is_read_directly() -> None:
    """faust can drop the last messages of a partition at a rebalance: no later message
    shows the gap, so a partition that stays quiet while the broker holds more is caught up."""
    messages = _stream(20)
    h = Harness([chain_spec()])
    h.feed(messages[:10])
    h.broker.inputs[0] = {o: (b"shop", messages[o]) for o in range(20)}
    assert asyncio.run(h.runtime.catch_up(stall=60.0)) == 0  # not quiet for long enough
    assert asyncio.run(h.runtime.catch_up(stall=0.0)) == 10
    state = h.runtime.pipeline.state("shop")
    assert state is not None
    assert state.engine.n_snapshots == 19
    assert h.runtime.positions == {0: 20}
    assert asyncio.run(h.runtime.catch_up(stall=0.0)) == 0  # nothing left


class _Sentinel:
    """Unpickling this would create a file: the proof that a record ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def _store(h: Harness, record: bytes) -> None:
    table: Any = h.app.tables[TABLE_NAME]
    table.data["shop"] = record


def _hostile_records(sentinel: Path) -> dict[str, tuple[bytes, str]]:
    """Records someone with write access to the changelog could store, and their reasons."""
    evil = pickle.dumps(_Sentinel(sentinel))
    fake = {"schema": "stream-rca.checkpoint/v2", "graph": "shop", "engine": {}}
    other = seal(encode_tree(fake), b"not the workers' key at all", b"shop")
    return {
        "pickle": (evil, "not_checkpoint"),
        "old format": (b"SRCA-CKPT-1\n" + evil, "not_checkpoint"),
        "our magic, a pickle after": (other[:44] + evil, "signature"),
        "another key": (other, "signature"),
        "unsigned": (seal(encode_tree(fake), None, b"shop"), "signature"),
        "truncated": (other[:30], "truncated"),
    }


def test_hostile_records_in_the_table_are_refused_and_the_graph_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sentinel = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Sentinel(sentinel)))  # the payload works when unpickled...
    assert sentinel.exists()
    sentinel.unlink()
    for name, (record, reason) in _hostile_records(sentinel).items():
        h = Harness([chain_spec()], publish_scores=True)
        _store(h, record)  # as recovery from the changelog
        with caplog.at_level(logging.WARNING, logger="stream_rca.streaming"):
            [outcome] = h.feed([batch("shop", T0, {"db": 1.0})])
        assert not sentinel.exists(), name  # ...but no record is ever unpickled
        assert not outcome.replayed, name
        state = h.runtime.pipeline.state("shop")
        assert state is not None
        assert not state.restored, name
        assert state.engine.n_snapshots == 0, name  # afresh
        assert state.offsets == {0: 0}, name
        assert f"checkpoint refused: {reason}" in caplog.text, name
        labels = {"graph": "shop", "reason": reason}
        assert h.sample("stream_rca_checkpoints_refused_total", labels) == 1.0, name
        caplog.clear()


@needs_engine_state
def test_a_tampered_checkpoint_is_refused_and_the_graph_starts_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = chain_spec(warmup=20)
    old = Harness([spec])
    old.feed(_stream(40))
    old.checkpoint()
    [record] = old.broker.of_kind("checkpoint")
    assert load_state(record.value, spec, CODEC).engine.n_snapshots == 39  # a good record
    tampered = bytearray(record.value)
    tampered[len(tampered) // 2] ^= 0x01
    new = Harness([spec])
    _store(new, bytes(tampered))
    with caplog.at_level(logging.WARNING, logger="stream_rca.streaming"):
        new.feed([batch("shop", T0, {"db": 1.0})])
    state = new.runtime.pipeline.state("shop")
    assert state is not None
    assert not state.restored
    assert state.engine.n_snapshots == 0
    assert "checkpoint refused: signature" in caplog.text
    labels = {"graph": "shop", "reason": "signature"}
    assert new.sample("stream_rca_checkpoints_refused_total", labels) == 1.0
    new.checkpoint()  # the next checkpoint replaces the refused record with a good one
    [fresh] = new.broker.of_kind("checkpoint")
    assert load_state(fresh.value, spec, CODEC).offsets == {0: 0}

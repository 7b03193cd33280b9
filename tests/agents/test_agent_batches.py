"""The runtime's batch path (what the direct reader hands it); checkpoints that cannot be made."""

from __future__ import annotations

import asyncio

import pytest

from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.state import CheckpointError
from tests.agents.conftest import T0, Harness, batch, chain_rows, chain_spec


def rows(graph: str, n: int, start: int = 0) -> list[bytes]:
    return [batch(graph, T0 + 10 * (start + i), r) for i, r in enumerate(chain_rows(n))]


def test_a_batch_gives_the_records_and_commits_of_the_agent_one_by_one() -> None:
    messages = rows("shop", 80)
    one = Harness([chain_spec()], publish_scores=True)
    one.feed(messages)
    one.checkpoint()
    many = Harness([chain_spec()], publish_scores=True)
    asyncio.run(many.runtime.on_assigned(set()))  # nothing owned yet: positions come later
    many.runtime.positions[0] = 0
    inputs = [(0, offset, b"shop", value) for offset, value in enumerate(messages)]
    for start in range(0, len(inputs), 25):
        asyncio.run(many.runtime.handle_batch(inputs[start : start + 25]))
    asyncio.run(many.runtime.handle_batch(inputs[:10]))  # read again: skipped
    many.checkpoint()
    assert many.docs("scores") == one.docs("scores")
    assert many.broker.commits == one.broker.commits == [{0: 80}]
    assert many.sample("stream_rca_records_total", {"outcome": "processed"}) == 80


def test_a_batch_with_a_gap_reads_the_missing_messages_first() -> None:
    messages = rows("shop", 10)
    h = Harness([chain_spec()], publish_scores=True)
    h.runtime.positions[0] = 0
    h.broker.inputs[0] = {o: (b"shop", v) for o, v in enumerate(messages)}
    asyncio.run(h.runtime.handle_batch([(0, o, b"shop", messages[o]) for o in (0, 1, 6, 7)]))
    assert ("fetch", 0, 2, 6) in h.broker.log
    assert [d["window"]["start"] for d in h.docs("scores")] == [T0 + 10 * i for i in range(7)]
    assert h.runtime.positions[0] == 8


def test_a_graph_whose_checkpoint_cannot_be_made_holds_only_its_partition(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness([chain_spec("shop"), chain_spec("other")])
    h.feed(rows("shop", 5), key=b"shop", partition=0)
    h.feed(rows("other", 5), key=b"other", partition=1)
    real = Pipeline.checkpoint

    def refuse(self: Pipeline, graph: str) -> bytes:
        if graph == "shop":
            raise CheckpointError("the state of 'shop' is too large", "too_large")
        return real(self, graph)

    monkeypatch.setattr(Pipeline, "checkpoint", refuse)
    assert h.checkpoint() == 1  # the timer goes on: the other graph is checkpointed
    assert h.broker.commits == [{1: 5}]
    assert "shop" in h.runtime.pipeline.dirty
    assert h.sample(
        "stream_rca_checkpoint_failures_total", {"graph": "shop", "reason": "too_large"}
    )
    assert "graph 'shop': no checkpoint" in caplog.text
    monkeypatch.setattr(Pipeline, "checkpoint", real)
    assert h.checkpoint() == 1  # later, it is written and its partition committed
    assert h.broker.commits[-1] == {0: 5}

"""Offsets are committed only after the broker acknowledged what their messages produced.

The in-memory broker refuses chosen records, as Kafka refuses one too large for its topic.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from stream_rca.core.engine import Engine
from stream_rca.streaming.records import Output

from .conftest import T0, Harness, batch, chain_rows, chain_spec

needs_engine_state = pytest.mark.skipif(
    not (hasattr(Engine, "to_state") and hasattr(Engine, "from_state")),
    reason="Engine.to_state()/Engine.from_state() not in this build yet: no checkpoints",
)


class RefusedError(Exception):
    """What the test broker raises for a refused record."""


def refuse_kind(kind: str) -> Callable[[Output], BaseException | None]:
    def refuse(output: Output) -> BaseException | None:
        return RefusedError(f"{kind} refused") if output.kind == kind else None

    return refuse


def test_a_refused_dead_letter_is_sent_again_without_its_payload_before_the_commit() -> None:
    h = Harness([chain_spec()])

    def refuse(output: Output) -> BaseException | None:
        full = output.kind == "deadletter" and json.loads(output.value)["payload"] is not None
        return RefusedError("MESSAGE_TOO_LARGE") if full else None

    h.broker.refuse = refuse
    h.feed([b'{"graph": ' + b'"' * 1000])
    assert h.broker.commits == []
    h.checkpoint()
    (doc,) = h.docs("deadletter")
    assert (doc["reason"], doc["payload"], doc["truncated"]) == ("malformed_json", None, True)
    assert doc["source"]["offset"] == 0
    assert h.broker.commits == [{0: 1}]
    labels = {"kind": "deadletter"}
    assert h.sample("stream_rca_unacknowledged_records_total", labels) == 1.0


@needs_engine_state
def test_a_partition_with_an_unacknowledged_record_is_neither_committed_nor_checkpointed() -> None:
    h = Harness([chain_spec()], publish_scores=True)
    h.broker.refuse = refuse_kind("scores")  # a broker that keeps refusing them
    rows = chain_rows(3)
    h.feed([batch("shop", T0 + 10 * i, row) for i, row in enumerate(rows)], partition=0)
    h.feed([b"[]"], key=b"x", partition=1)  # a dead letter on another partition: fine
    assert h.checkpoint() == 0
    assert h.broker.commits == [{1: 1}]  # partition 0 held back
    assert h.broker.of_kind("scores") == []
    assert h.broker.of_kind("checkpoint") == []
    assert h.runtime.pipeline.dirty == ("shop",)
    h.broker.refuse = None  # the broker takes them again: the next checkpoint catches up
    assert h.checkpoint() == 1
    assert [d["window"]["start"] for d in h.docs("scores")] == [T0, T0 + 10]
    assert h.broker.commits[-1] == {0: 3}
    kinds = [entry[1] for entry in h.broker.log if entry[0] == "send"]
    assert kinds[-3:] == ["scores", "scores", "checkpoint"]  # results before the checkpoint
    assert not h.runtime.pipeline.dirty


@needs_engine_state
def test_a_refused_checkpoint_holds_the_commit_of_its_partition() -> None:
    h = Harness([chain_spec()])
    h.broker.refuse = refuse_kind("checkpoint")
    h.feed([batch("shop", T0 + 10 * i, row) for i, row in enumerate(chain_rows(3))])
    h.checkpoint()
    assert h.broker.commits == []
    assert h.runtime.pipeline.dirty == ("shop",)  # it will be written again
    labels = {"kind": "checkpoint"}
    assert h.sample("stream_rca_unacknowledged_records_total", labels) == 1.0
    h.broker.refuse = None
    assert h.checkpoint() == 1
    assert h.broker.commits == [{0: 3}]

"""faust's own consumer never fetches the input topic: its partitions are paused in aiokafka at
each assignment, in the consumer thread, before faust's handler runs (reader.hold_input)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from stream_rca.config import GraphSpec, Settings
from stream_rca.core.graph import CausalGraph
from stream_rca.streaming.app import make_app
from stream_rca.streaming.reader import paused_first


class _Thread:
    """Stands in for faust's consumer thread: a real (unstarted) aiokafka consumer."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer

    def _ensure_consumer(self) -> Any:
        return self.consumer


def _run(assigned: set[TP], *, broken: bool = False) -> tuple[set[TopicPartition], list[Any]]:
    """Assign ``assigned`` to a consumer and call the hooked handler; (paused, handler calls)."""

    async def go() -> tuple[set[TopicPartition], list[Any]]:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
        consumer.assign([TopicPartition(tp.topic, tp.partition) for tp in assigned])
        calls: list[Any] = []

        async def faust_handler(tps: set[TP], generation: int) -> str:
            calls.append((set(consumer.paused()), tps, generation))
            return "done"

        thread = _Thread(None if broken else consumer)
        hooked = paused_first(faust_handler, thread, "in")
        assert await hooked(assigned, 7) == "done"
        paused = set(consumer.paused())
        await consumer.stop()
        return paused, calls

    return asyncio.run(go())


def test_the_input_partitions_are_paused_before_faust_hears_of_them() -> None:
    assigned = {TP("in", 0), TP("in", 3), TP("in-changelog", 0), TP("requests", 0)}
    paused, calls = _run(assigned)
    want = {TopicPartition("in", 0), TopicPartition("in", 3)}
    assert paused == want
    assert calls == [(want, assigned, 7)]  # paused already when faust's handler ran


def test_an_assignment_without_input_pauses_nothing() -> None:
    paused, calls = _run({TP("in-changelog", 1)})
    assert paused == set()
    assert len(calls) == 1


def test_a_failed_pause_is_logged_and_faust_still_hears(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stream_rca.streaming"):
        _, calls = _run({TP("in", 0)}, broken=True)
    assert len(calls) == 1
    assert "could not pause the input partitions" in caplog.text


def test_the_worker_app_hooks_the_consumer_faust_makes() -> None:
    graph = CausalGraph([("db", "api")], name="shop")
    settings = Settings(app_id="t", checkpoint_key="k" * 16, input_topic="in")
    app = make_app(settings, [GraphSpec("shop", graph, ("api",))], worker_id="t")
    handler = app.consumer._thread.on_partitions_assigned  # type: ignore[attr-defined]
    assert handler.__qualname__.startswith("paused_first.")

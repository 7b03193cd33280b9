"""Helpers for the faust agent tests: an app with an in-memory broker, fed through
``agent.test_context()`` (no broker), and a small linear graph with data for it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_rca.config import GraphSpec, Settings
from stream_rca.core.engine import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.trigger import TriggerConfig
from stream_rca.observability import PipelineMetrics
from stream_rca.streaming import AGENT_NAME, MemoryBroker, Outcome, make_app, runtime_of

T0 = 1_700_000_000.0
"""Event time of the first window in these tests (a multiple of every step used)."""
NOW = T0 + 100_000.0
"""The fake wall clock: later than every event time used."""
CHECKPOINT_KEY = "agent-test-checkpoint-key"
"""The key the test workers sign their checkpoints with."""


def chain_spec(
    name: str = "shop",
    *,
    step: float = 10.0,
    lateness: float = 0.0,
    warmup: int = 20,
    threshold: float = 9.0,
) -> GraphSpec:
    """``db -> api -> web``, watched at ``web``."""
    graph = CausalGraph([("db", "api"), ("api", "web")], name=name)
    engine = EngineConfig(
        warmup=warmup, n_samples=200, trigger=TriggerConfig(threshold=threshold, cooldown=0)
    )
    return GraphSpec(name, graph, ("web",), step=step, allowed_lateness=lateness, engine=engine)


def chain_rows(n: int, seed: int = 0) -> list[dict[str, float]]:
    """``n`` fault-free rows of the chain: each node adds gamma noise to its parent."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        db = float(rng.gamma(2.0, 0.1))
        api = db + float(rng.gamma(2.0, 0.05))
        web = api + float(rng.gamma(2.0, 0.05))
        rows.append({"db": db, "api": api, "web": web})
    return rows


def batch(graph: str, ts: float, values: dict[str, float]) -> bytes:
    return json.dumps({"graph": graph, "ts": ts, "values": values}).encode()


def single(graph: str, node: str, ts: float, value: Any) -> bytes:
    return json.dumps({"graph": graph, "node": node, "ts": ts, "value": value}).encode()


@dataclass
class Harness:
    """A stream-rca faust app whose agent is driven through ``test_context()``."""

    specs: Sequence[GraphSpec]
    publish_scores: bool = False
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.broker = MemoryBroker()
        self.metrics = PipelineMetrics(self.registry, version="test")
        settings = Settings(
            app_id="agent-test",
            web_port=0,
            publish_scores=self.publish_scores,
            checkpoint_key=CHECKPOINT_KEY,
        )
        self.app = make_app(
            settings,
            self.specs,
            metrics=self.metrics,
            broker=self.broker,
            clock=lambda: NOW,
            worker_id="test",
        )
        self.app.finalize()
        self.app.conf.store = "memory://"
        self.runtime = runtime_of(self.app)
        self.offsets: dict[int, int] = {}

    def feed(
        self, messages: Iterable[bytes | None], *, key: bytes | None = b"shop", partition: int = 0
    ) -> list[Outcome]:
        """Put each message through the agent; return the agent's outcomes, in order."""
        return asyncio.run(self._feed(list(messages), key, partition))

    async def _feed(
        self, messages: list[bytes | None], key: bytes | None, partition: int
    ) -> list[Outcome]:
        agent = self.app.agents[AGENT_NAME]
        async with agent.test_context() as ctx:
            # a fresh context counts offsets from 0: go on from the previous feed instead
            ctx.sent_offset = self.offsets.get(partition, 0)
            for value in messages:
                await ctx.put(value, key=key, partition=partition)
            self.offsets[partition] = ctx.sent_offset
            return [ctx.results[i] for i in sorted(ctx.results)]

    def checkpoint(self) -> int:
        return asyncio.run(self.runtime.checkpoint("test"))

    def sample(self, name: str, labels: dict[str, str]) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def docs(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(o.value) for o in self.broker.of_kind(kind)]


@pytest.fixture
def spec() -> GraphSpec:
    return chain_spec()

"""The spans agent: OTLP JSON span messages grow a graph that opts in (grow_from_spans)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from stream_rca.streaming.growth import SPANS_AGENT
from stream_rca.streaming.records import Outcome

from .conftest import T0, Harness, batch, chain_rows, chain_spec


def _otlp(svc: str, spans: list[tuple[str, str, str | None, int]]) -> bytes:
    attrs = [{"key": "service.name", "value": {"stringValue": svc}}]
    return json.dumps({
        "resourceSpans": [{"resource": {"attributes": attrs}, "scopeSpans": [{"spans": [
            {"traceId": t, "spanId": s, **({"parentSpanId": p} if p else {}), "kind": k}
            for t, s, p, k in spans
        ]}]}]
    }).encode()  # fmt: skip


def _feed_spans(h: Harness, messages: list[bytes]) -> list[Outcome]:
    async def run() -> list[Outcome]:
        agent = h.app.agents[SPANS_AGENT]
        async with agent.test_context() as ctx:
            for value in messages:
                await ctx.put(value, key=b"shop", partition=0)
            return [ctx.results[i] for i in sorted(ctx.results)]

    return asyncio.run(run())


def test_spans_topic_grows_the_graph() -> None:
    spec = dataclasses.replace(chain_spec(), grow_from_spans=True)
    h = Harness([spec])
    h.feed(batch("shop", T0 + 10.0 * i, r) for i, r in enumerate(chain_rows(60)))
    state = h.runtime.pipeline.state("shop")
    assert state is not None
    n = state.engine.n_snapshots
    outcomes = _feed_spans(
        h,
        [_otlp("api", [("t", "a", None, 3)]), _otlp("auth", [("t", "b", "a", 2)]), b"[1, 2]"],
    )
    assert [o.reason for o in outcomes] == [None, None, "bad_spans"]
    assert ("auth", "api") in state.engine.graph.edges
    assert state.engine.n_snapshots == n
    assert h.sample("stream_rca_graph_changes_total", {"graph": "shop"}) == 1.0
    (dl,) = h.docs("deadletter")
    assert dl["reason"] == "bad_spans"
    # the grown graph takes the new node's values
    rows = chain_rows(3, seed=9)
    out = h.feed(
        batch("shop", T0 + 10.0 * (60 + i), {**r, "auth": 0.1}) for i, r in enumerate(rows)
    )
    assert all(o.reason is None for o in out)


def test_no_spans_agent_without_opt_in() -> None:
    h = Harness([chain_spec()])
    assert SPANS_AGENT not in h.app.agents

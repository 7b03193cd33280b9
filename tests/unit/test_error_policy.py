"""The processing loop's error policy: every message processed or dead-lettered, and counted.

The engine's failures are injected by wrapping ``Engine.process_one`` for one graph (our own
code, no broker involved); the pipeline runs without Kafka.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stream_rca.config import GraphSpec
from stream_rca.core.engine import Engine
from stream_rca.core.graph import CausalGraph
from stream_rca.core.types import Snapshot, StepResult
from stream_rca.errors import ConfigError
from stream_rca.observability import PipelineMetrics
from stream_rca.streaming.errors import (
    ErrorContext,
    ProcessingError,
    QuarantinePolicy,
    StrictPolicy,
    Verdict,
    describe_error,
)
from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.records import Outcome

T0 = 1_700_000_000.0
NOW = T0 + 100_000.0
LOG = logging.getLogger("test")


def spec(name: str) -> GraphSpec:
    return GraphSpec(name, CausalGraph([("db", "api")], name=name), ("api",), step=10.0)


def batch(graph: str, k: int, value: float = 1.0) -> bytes:
    doc = {"graph": graph, "ts": T0 + 10 * k, "values": {"db": value, "api": 2 * value}}
    return json.dumps(doc).encode()


def single(graph: str, node: str, k: int, value: Any = 1.0) -> bytes:
    doc = {"graph": graph, "node": node, "ts": T0 + 10 * k, "value": value}
    return json.dumps(doc).encode()


@pytest.fixture
def fail_when(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[Snapshot], bool]], None]:
    """Make ``Engine.process_one`` raise for the snapshots a predicate picks."""

    def install(pick: Callable[[Snapshot], bool]) -> None:
        real = Engine.process_one

        def process_one(self: Engine, snapshot: Snapshot) -> StepResult:
            if pick(snapshot):
                raise ValueError(f"injected fault at {snapshot.ts}")
            return real(self, snapshot)

        monkeypatch.setattr(Engine, "process_one", process_one)

    return install


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def make(registry: CollectorRegistry, **kwargs: Any) -> Pipeline:
    metrics = PipelineMetrics(registry, version="test")
    return Pipeline([spec("shop"), spec("broken")], metrics=metrics, clock=lambda: NOW, **kwargs)


def run(p: Pipeline, messages: list[bytes]) -> list[Outcome]:
    return [
        p.process_one(m, topic="metrics", partition=0, offset=i) for i, m in enumerate(messages)
    ]


def letters(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [json.loads(o.value) for out in outcomes for o in out.outputs if o.kind == "deadletter"]


def count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# -- the policies -----------------------------------------------------------------------------


def test_the_default_policy_quarantines_at_the_nth_error_in_a_row() -> None:
    policy = QuarantinePolicy(quarantine_after=3)
    verdicts = [
        policy.on_processing_error(RuntimeError("x"), ErrorContext("g", "t", 0, n, n), LOG)
        for n in (1, 2, 3, 4)
    ]
    assert verdicts == [Verdict.DEAD_LETTER] * 2 + [Verdict.QUARANTINE] * 2
    assert repr(policy) == "QuarantinePolicy(quarantine_after=3)"
    assert QuarantinePolicy().quarantine_after == 5


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_the_default_policy_refuses_bad_settings(bad: Any) -> None:
    with pytest.raises(ConfigError, match="quarantine_after"):
        QuarantinePolicy(quarantine_after=bad)


def test_errors_are_described_on_one_bounded_line() -> None:
    assert describe_error(ValueError("a\nb")) == "ValueError: a b"
    assert describe_error(KeyError()) == "KeyError"
    assert len(describe_error(RuntimeError("x" * 10_000))) == 1000


# -- the pipeline -----------------------------------------------------------------------------


def test_a_failing_graph_is_dead_lettered_then_quarantined_while_another_goes_on(
    registry: CollectorRegistry,
    fail_when: Callable[[Callable[[Snapshot], bool]], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fail_when(lambda snap: snap.graph == "broken")
    p = make(registry, error_policy=QuarantinePolicy(quarantine_after=3))
    messages = [m for k in range(10) for m in (batch("shop", k), batch("broken", k))]
    with caplog.at_level(logging.WARNING, logger="stream_rca.streaming"):
        outcomes = run(p, messages)
    shop = [o for o in outcomes if o.graph == "shop"]
    broken = [o for o in outcomes if o.graph == "broken"]
    assert [o.reason for o in shop] == [None] * 10
    assert sum(len(o.results) for o in shop) == 9  # window 9 stays open
    # window 0 is closed by the message of window 1: that message fails, and so on
    assert [o.reason for o in broken] == [None] + ["processing_error"] * 3 + [
        "graph_quarantined"
    ] * 6
    docs = letters(broken)
    assert [d["reason"] for d in docs] == ["processing_error"] * 3 + ["graph_quarantined"] * 6
    assert docs[0]["message"] == (
        f"graph 'broken': processing failed (1 in a row): ValueError: injected fault at {T0}"
    )
    assert docs[0]["source"] == {"topic": "metrics", "partition": 0, "offset": 3}
    assert docs[3]["message"].startswith("graph 'broken' is quarantined after repeated")
    assert broken[1].error == f"ValueError: injected fault at {T0}"
    assert p.quarantined == {"broken": f"ValueError: injected fault at {T0 + 20}"}
    assert p.graphs == ("shop",)  # the broken state was dropped, never checkpointed
    assert "broken" not in p.dirty
    # every message counted once, by outcome and by reason
    assert count(registry, "stream_rca_records_total", outcome="processed") == 11
    assert count(registry, "stream_rca_records_total", outcome="dead_lettered") == 9
    assert count(registry, "stream_rca_dead_letters_total", reason="processing_error") == 3
    assert count(registry, "stream_rca_dead_letters_total", reason="graph_quarantined") == 6
    assert count(registry, "stream_rca_graph_quarantines_total", graph="broken") == 1
    quarantine_lines = [r for r in caplog.records if "quarantined after 3" in r.getMessage()]
    assert len(quarantine_lines) == 1
    assert quarantine_lines[0].levelno == logging.ERROR
    assert all(r.exc_info is None for r in caplog.records)  # one line each, no traceback


def test_messages_that_complete_no_snapshot_do_not_reset_the_count(
    registry: CollectorRegistry, fail_when: Callable[[Callable[[Snapshot], bool]], None]
) -> None:
    fail_when(lambda snap: snap.graph == "broken")
    p = make(registry, error_policy=QuarantinePolicy(quarantine_after=2))
    # single events: two of every three messages only add a sample, the third runs the engine
    messages = [single("broken", n, k) for k in range(4) for n in ("db", "api")]
    reasons = [o.reason for o in run(p, messages)]
    assert (
        reasons
        == [None, None, "processing_error", None, "processing_error"] + ["graph_quarantined"] * 3
    )


def test_a_success_resets_the_count(
    registry: CollectorRegistry, fail_when: Callable[[Callable[[Snapshot], bool]], None]
) -> None:
    fail_when(lambda snap: snap.graph == "broken" and round((snap.ts - T0) / 10) % 2 == 0)
    p = make(registry, error_policy=QuarantinePolicy(quarantine_after=2))
    reasons = [o.reason for o in run(p, [batch("broken", k) for k in range(12)])]
    assert reasons == [None] + ["processing_error", None] * 5 + ["processing_error"]
    assert p.quarantined == {}


def test_outputs_made_before_the_error_are_kept(
    registry: CollectorRegistry, fail_when: Callable[[Callable[[Snapshot], bool]], None]
) -> None:
    fail_when(lambda snap: snap.graph == "shop" and snap.ts == T0 + 10)
    metrics = PipelineMetrics(registry, version="test")
    late = GraphSpec("shop", spec("shop").graph, ("api",), step=10.0, allowed_lateness=10.0)
    p = Pipeline([late], metrics=metrics, clock=lambda: NOW, publish_scores=True)
    outcomes = run(p, [batch("shop", 0), batch("shop", 1), single("shop", "db", 3)])
    last = outcomes[-1]  # closes windows 0 and 1: the first runs, the second raises
    assert last.reason == "processing_error"
    assert [o.kind for o in last.outputs] == ["scores", "deadletter"]
    assert json.loads(last.outputs[0].value)["window"]["start"] == T0
    # the message's outcome is final: replayed, it is skipped
    assert p.process_one(single("shop", "db", 3), partition=0, offset=2).replayed


def test_the_strict_policy_stops_the_loop(
    registry: CollectorRegistry, fail_when: Callable[[Callable[[Snapshot], bool]], None]
) -> None:
    fail_when(lambda snap: True)
    p = make(registry, error_policy=StrictPolicy())
    p.process_one(batch("shop", 0))
    with pytest.raises(ProcessingError, match="ValueError: injected fault") as info:
        p.process_one(batch("shop", 1), topic="metrics", offset=1)
    assert isinstance(info.value.__cause__, ValueError)


def test_a_released_graph_runs_again(
    registry: CollectorRegistry, fail_when: Callable[[Callable[[Snapshot], bool]], None]
) -> None:
    broken = {"on": True}
    fail_when(lambda snap: broken["on"])
    p = make(registry, error_policy=QuarantinePolicy(quarantine_after=1))
    assert [o.reason for o in run(p, [batch("shop", 0), batch("shop", 1), batch("shop", 2)])] == [
        None,
        "processing_error",
        "graph_quarantined",
    ]
    broken["on"] = False
    p.release("shop")
    assert p.quarantined == {}
    assert p.process_one(batch("shop", 3), offset=3).reason is None
    p.drop(["shop"])  # a graph that moves to another worker is released too


def test_a_dead_letter_of_quotes_near_the_size_limit_fits_after_escaping(
    registry: CollectorRegistry,
) -> None:
    p = make(registry, max_dead_letter_bytes=600_000)
    raw = b'"' * 1_000_000  # 2 MB once escaped as JSON
    key = b"k" * 100
    out = p.process_one(raw, topic="metrics", partition=2, offset=7, key=key)
    (letter,) = out.outputs
    assert out.reason == "malformed_json"
    assert len(letter.value) + len(key) <= 600_000
    assert letter.key == key
    doc = json.loads(letter.value)
    assert (doc["truncated"], doc["payload_size"], doc["reason"]) == (True, 1_000_000, out.reason)
    assert doc["source"] == {"topic": "metrics", "partition": 2, "offset": 7}
    assert 290_000 < len(doc["payload"]) < 300_000
    assert set(doc["payload"]) == {'"'}
    control = bytes(range(1, 32)) * 30_000  # 930,000 bytes, 6 bytes each once escaped
    doc = json.loads(p.process_one(control, offset=8).outputs[0].value)
    assert doc["truncated"]
    assert control.decode().startswith(doc["payload"])
    huge_key = b"k" * 10_000  # a key that would not leave room: the dead letter has none
    assert p.process_one(b"{", key=huge_key).outputs[0].key is None

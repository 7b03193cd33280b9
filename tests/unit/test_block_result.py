"""Block results as columns: the same results, documents and metrics as snapshot by snapshot."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream_rca.core.block import BlockResult
from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.trigger import Trigger, TriggerConfig
from stream_rca.core.types import Snapshot, StepResult
from stream_rca.observability import PipelineMetrics
from stream_rca.sim import MicroserviceSystem
from stream_rca.streaming.batch import _document, score_documents
from stream_rca.streaming.records import json_bytes, scores_document

_SIM = MicroserviceSystem.shop(seed=4)
_GRAPH = CausalGraph(_SIM.edges, _SIM.nodes, name="shop")
_DATA = _SIM.sample(500)
_DATA[[300, 301, 420], -1] += 20.0  # incidents open, worsen, close
_DATA[np.random.default_rng(1).random(_DATA.shape) < 0.03] = np.nan  # gaps
_DATA[350, 2] = np.inf  # an invalid value
_CFG = EngineConfig(warmup=60, trigger=TriggerConfig(threshold=6.0, cooldown=2))


def _columns() -> tuple[Engine, BlockResult]:
    engine = Engine(_GRAPH, _CFG)
    return engine, engine.process_block_columns(np.arange(500.0), _DATA, ends=[None] * 500)


def _plain(r: StepResult) -> tuple[Any, ...]:
    atts = [
        {k: v for k, v in a.to_dict().items() if k != "attribution_seconds"} for a in r.attributions
    ]
    return (
        r.graph, r.ts, dict(r.scores), dict(r.target_scores), r.warm, r.warming, r.missing,
        r.invalid, r.learned, r.events, atts, dict(r.open_incidents),
    )  # fmt: skip


def test_columns_give_the_results_of_one_by_one() -> None:
    _, block = _columns()
    one = Engine(_GRAPH, _CFG)
    reference = [one.process_array(float(t), _DATA[t]) for t in range(len(_DATA))]
    steps = block.steps()
    assert [_plain(r) for r in steps] == [_plain(r) for r in reference]
    assert [_plain(block.step(i)) for i in range(len(block))] == [_plain(r) for r in steps]
    assert block.attributions
    assert block.events
    assert block.open_incidents
    assert any(r.missing for r in steps)
    assert any(r.invalid for r in steps)


def test_score_documents_are_those_of_the_results() -> None:
    _engine, block = _columns()
    got = [json.loads(doc) for doc in score_documents(block)]
    want = [
        json.loads(json_bytes(scores_document(r, Snapshot(r.ts, {}, "shop"), i + 1)))
        for i, r in enumerate(block.steps())
    ]
    assert got == want


def _by_struct(block: BlockResult) -> list[bytes]:
    """Every document of ``block`` through the one-struct path (the reference)."""
    out = []
    for i in range(len(block)):
        scores = {
            n: float(v) for n, v in zip(block.nodes, block.node_scores[i], strict=True) if v == v
        }
        targets = {
            t: float(v)
            for t, v in zip(block.targets, block.target_scores[i], strict=True)
            if v == v
        }
        out.append(_document(block, i, scores, targets))
    return out


def test_plain_documents_are_the_bytes_of_the_struct_path() -> None:
    _, block = _columns()
    docs = score_documents(block)
    assert docs == _by_struct(block)
    plain = [d for d in docs if b'"open_incidents":{},"events":[],"missing":[],"invalid":[]' in d]
    assert 300 < len(plain) < len(docs)  # both paths ran


def test_awkward_names_and_numbers_fill_the_template_as_msgspec_encodes_them() -> None:
    nodes = ('a"b', "50%", "%s", "caf\u00e9", "back\\slash", "new\nline")
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(12, len(nodes))) * 10.0 ** rng.integers(-300, 300, (12, 1))
    scores[0] = [-0.0, 0.0, 5e-324, 1.7976931348623157e308, 1e16, 123456789.0]
    scores[3, 2] = np.nan  # not plain: the struct path, between plain ones
    targets = scores[:, [0, 5]].copy()
    n = len(scores)
    block = BlockResult(
        graph='g"%', nodes=nodes, targets=("a\"b", "new\nline"),
        ts=[1.7e9 + 10.0 * i for i in range(n)],
        ends=[None if i % 2 else 1.7e9 + 1.5 for i in range(n)],
        node_scores=scores, target_scores=targets, present=np.ones(scores.shape, dtype=bool),
        learned=np.ones(scores.shape, dtype=bool), warm=np.arange(n) % 3 > 0, warming=[()] * n,
        invalid=[()] * n, events={}, attributions={}, open_incidents={5: {"a\"b": "i-1"}}, first=41,
    )  # fmt: skip
    docs = score_documents(block)
    assert docs == _by_struct(block)
    assert [json.loads(d)["snapshots"] for d in docs] == list(range(42, 42 + n))


def _samples(registry: CollectorRegistry) -> list[tuple[str, list[tuple[str, str]], float]]:
    return sorted(
        (s.name, sorted(s.labels.items()), s.value)
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    )


def test_metrics_of_a_block_are_those_of_its_snapshots() -> None:
    _, block = _columns()
    steps = block.steps()
    by_step, by_block = CollectorRegistry(), CollectorRegistry()
    one, many = PipelineMetrics(by_step, version="x"), PipelineMetrics(by_block, version="x")
    for m in (one, many):
        m.register_graph("shop", _GRAPH.nodes, ("Website",))
    for half in (slice(0, 310), slice(310, 500)):  # two blocks: one ends inside an incident
        part = steps[half]
        seconds = 0.25 * len(part)
        for r in part:
            one.observe_step(r, seconds / len(part))
        many.observe_block(_slice(block, half), seconds)
    assert _samples(by_block) == _samples(by_step)


def _slice(block: BlockResult, part: slice) -> BlockResult:
    start, stop, _ = part.indices(len(block))

    def rows(d: Any) -> dict[int, Any]:
        return {i - start: v for i, v in d.items() if start <= i < stop}

    return BlockResult(
        graph=block.graph, nodes=block.nodes, targets=block.targets, ts=block.ts[part],
        ends=block.ends[part], node_scores=block.node_scores[part],
        target_scores=block.target_scores[part], present=block.present[part],
        learned=block.learned[part], warm=block.warm[part], warming=block.warming[part],
        invalid=block.invalid[part], events=rows(block.events),
        attributions=rows(block.attributions), open_incidents=rows(block.open_incidents),
        first=block.first + start,
    )  # fmt: skip


@given(
    st.lists(st.one_of(st.none(), st.floats(0.0, 20.0)), min_size=1, max_size=60),
    st.integers(1, 3),
    st.integers(0, 3),
)
@settings(max_examples=60, deadline=None)
def test_a_quiet_trigger_may_skip_scores_below_its_threshold(
    scores: list[float | None], confirm: int, cooldown: int
) -> None:
    cfg = TriggerConfig(threshold=9.0, confirm=confirm, cooldown=cooldown, close_after=2)
    every, skipping = Trigger("g", "t", cfg), Trigger("g", "t", cfg)
    for ts, score in enumerate(scores):
        want = every.update_one(float(ts), score)
        if skipping.quiet and (score is None or score < cfg.threshold):
            assert want.kind is None
            assert want.incident_id is None
            assert not want.attribute
            continue
        assert skipping.update_one(float(ts), score) == want
    assert skipping.to_state() == every.to_state()

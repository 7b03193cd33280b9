"""Block processing equals record-by-record processing, for any partition into blocks."""

from __future__ import annotations

import pickle

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.trigger import TriggerConfig
from stream_rca.core.types import StepResult
from stream_rca.sim import MicroserviceSystem

_SIM = MicroserviceSystem.shop(seed=3)
_GRAPH = CausalGraph(_SIM.edges, _SIM.nodes, name="shop")
_DATA = _SIM.sample(900)
_DATA[[500, 501, 800], -1] += 20.0  # anomalies: incidents open and are attributed
_DATA[650, -3] += 30.0
_DATA[np.random.default_rng(0).random(_DATA.shape) < 0.03] = np.nan  # gaps
_CFG = EngineConfig(warmup=60, trigger=TriggerConfig(threshold=6.0))


def _run(cuts: list[int]) -> tuple[Engine, list[StepResult]]:
    engine = Engine(_GRAPH, _CFG)
    out: list[StepResult] = []
    start = 0
    for c in cuts:
        stop = min(len(_DATA), start + c)
        out += engine.process_block(np.arange(start, stop, dtype=np.float64), _DATA[start:stop])
        start = stop
    out += engine.process_block(np.arange(start, len(_DATA), dtype=np.float64), _DATA[start:])
    return engine, out


_ONE_BY_ONE = _run([1] * len(_DATA))


def _same(a: StepResult, b: StepResult) -> None:
    assert a.scores == b.scores
    assert a.target_scores == b.target_scores
    assert a.learned == b.learned
    assert a.warm == b.warm
    assert a.events == b.events
    assert [x.to_dict() for x in a.attributions] == [x.to_dict() for x in b.attributions]


@given(st.lists(st.integers(1, 1024), min_size=1, max_size=20))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_partition_into_blocks_gives_the_same_results(cuts: list[int]) -> None:
    engine, results = _run(cuts)
    ref_engine, ref = _ONE_BY_ONE
    assert len(results) == len(ref)
    for a, b in zip(ref, results, strict=True):
        _same(a, b)
    # the learned state too: every array of the models, bit for bit
    assert pickle.dumps(engine._models.noise.samples) == pickle.dumps(
        ref_engine._models.noise.samples
    )
    np.testing.assert_array_equal(
        engine._models.bank.coefficients()[0], ref_engine._models.bank.coefficients()[0]
    )


def test_the_reference_run_has_incidents_and_attributions() -> None:
    _, ref = _ONE_BY_ONE
    atts = [a for r in ref for a in r.attributions]
    assert atts, "the stream must exercise attributions for the property to mean anything"
    assert {a.root_causes[0].node for a in atts} & {_GRAPH.nodes[-1], _GRAPH.nodes[-3]}


@given(st.integers(1, 899))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_checkpoint_anywhere_resumes_exactly(cut: int) -> None:
    from stream_rca.core.checkpoint import decode_tree, encode_tree

    first = Engine(_GRAPH, _CFG)
    head = first.process_block(np.arange(cut, dtype=np.float64), _DATA[:cut])
    restored = Engine.from_state(_GRAPH, _CFG, decode_tree(encode_tree(first.to_state())))
    tail = restored.process_block(np.arange(cut, len(_DATA), dtype=np.float64), _DATA[cut:])
    for a, b in zip(_ONE_BY_ONE[1], head + tail, strict=True):
        _same(a, b)

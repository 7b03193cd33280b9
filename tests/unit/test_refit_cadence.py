"""The learning period grows with the stream, at positions fixed by the snapshot count alone."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.trigger import TriggerConfig
from stream_rca.sim import MicroserviceSystem

_SIM = MicroserviceSystem.shop(seed=5)
_GRAPH = CausalGraph(_SIM.edges, _SIM.nodes, name="shop")
_DATA = _SIM.sample(700)
_DATA[[400, 401], -1] += 25.0  # an incident inside a grown period
_DATA[np.random.default_rng(1).random(_DATA.shape) < 0.02] = np.nan
# refit_every=4: periods of 4 up to 64 snapshots, 8 up to 128, then 16
_CFG = EngineConfig(warmup=40, refit_every=4, refit_growth=4, trigger=TriggerConfig(threshold=6.0))


def test_the_period_doubles_with_the_count_up_to_its_limit() -> None:
    cfg = EngineConfig(refit_every=4, refit_growth=4)
    assert [cfg.refit_period(n) for n in (0, 63, 64, 127, 128, 10_000)] == [4, 4, 8, 8, 16, 16]
    assert EngineConfig(refit_every=4).refit_period(10_000) == 4  # the default: fixed
    # every period starts at a multiple of its length
    starts = [0]
    while starts[-1] < 5_000:
        starts.append(starts[-1] + cfg.refit_period(starts[-1]))
    assert all(s % cfg.refit_period(s) == 0 for s in starts)


@pytest.mark.parametrize("growth", [0, 3, 128])
def test_a_bad_growth_is_refused(growth: int) -> None:
    with pytest.raises(ValueError, match="refit_growth"):
        EngineConfig(refit_growth=growth)


def _scores(engine: Engine, start: int, stop: int) -> list[Mapping[str, float]]:
    ts = np.arange(start, stop, dtype=np.float64)
    return [r.scores for r in engine.process_block(ts, _DATA[start:stop])]


def test_models_change_only_at_the_end_of_each_period() -> None:
    engine = Engine(_GRAPH, _CFG)
    _scores(engine, 0, 300)  # period 16 from 256 on: 288 ends one, 304 the next
    before = engine._models.noise.fitted_count.copy()
    _scores(engine, 300, 303)
    assert np.array_equal(engine._models.noise.fitted_count, before)
    _scores(engine, 303, 304)
    assert not np.array_equal(engine._models.noise.fitted_count, before)


def test_blocks_and_records_and_a_checkpoint_inside_a_grown_period_agree() -> None:
    one = Engine(_GRAPH, _CFG)
    ref = [s for t in range(len(_DATA)) for s in _scores(one, t, t + 1)]
    blocks = Engine(_GRAPH, _CFG)
    got = _scores(blocks, 0, 130) + _scores(blocks, 130, 301)  # 301: inside a period of 16
    restored = Engine.from_state(_GRAPH, _CFG, blocks.to_state())
    got += _scores(restored, 301, len(_DATA))
    assert got == ref
    assert np.array_equal(restored._models.noise.samples, one._models.noise.samples)

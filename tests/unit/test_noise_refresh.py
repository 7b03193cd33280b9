"""Held residuals are those of the current mechanism (refreshed after every learning step)."""

from __future__ import annotations

import numpy as np
import pytest

from stream_rca.core.config import EngineConfig
from stream_rca.core.engine import Engine
from stream_rca.core.graph import CausalGraph
from stream_rca.core.linear import LinearBank
from stream_rca.core.models import GraphModels
from stream_rca.core.types import Snapshot


def _chain_with_drift(rows: int, seed: int) -> np.ndarray:
    """``a -> b -> c`` and ``a -> c``, with b's intercept drifting over the stream."""
    rng = np.random.default_rng(seed)
    a = rng.lognormal(0.0, 0.5, rows)
    b = 2.0 * a + np.linspace(0.0, 3.0, rows) + rng.normal(0.0, 0.3, rows)
    c = 0.5 * b - a + rng.standard_t(4, rows)
    return np.column_stack([a, b, c])


@pytest.mark.parametrize("block", [1, 7, 64, 300])
def test_held_residuals_equal_the_current_mechanisms_residuals(block: int) -> None:
    """With room for every value, node j's held sample is ``{y_t - f_now(x_t)}`` over the rows
    it learned, to the bit (so values tied in the data stay tied with a new snapshot's), whatever
    the blocks the rows came in (batch = online)."""
    x = _chain_with_drift(600, seed=1)
    parents = [np.array([], dtype=np.intp), np.array([0]), np.array([0, 1])]
    cfg = EngineConfig(reservoir=1024, forgetting=1e-2)
    models = GraphModels(parents, ("a", "b", "c"), {}, np.array([2]), cfg)
    for start in range(0, len(x), block):
        part = x[start : start + block]
        every = np.ones(part.shape, dtype=bool)
        resid = part - models.predict(part)
        models.learn(part, resid, every, part[:, [2]], every[:, [2]])
    now = models.predict(x)
    for j in (1, 2):
        held = np.sort(models.noise.samples[j, : models.noise.filled[j]])
        learned = np.sort((x[:, j] - now[:, j])[models.min_fit[j] :])
        assert held.shape == learned.shape
        np.testing.assert_array_equal(held, learned)
    # a root's noise is its value, untouched
    np.testing.assert_array_equal(np.sort(models.noise.samples[0, :600]), np.sort(x[:, 0]))


def test_a_near_constant_series_stays_calm_as_old_drops_age_out() -> None:
    """An availability at 1.0 with drops early on: as the drops leave the running means the
    mechanism's intercept moves; held residuals computed with older intercepts would put the
    constant's current residual at the edge of the sample (2.5 nats on every snapshot here,
    before refreshing). Refreshed, the constant is typical."""
    graph = CausalGraph([("lb", "site")])
    engine = Engine(graph, EngineConfig(warmup=50), targets=["site"])
    rng = np.random.default_rng(0)
    calm = []
    for t in range(3000):
        lb = 1.0 if rng.random() > 0.02 else float(rng.uniform(0.9, 0.99))
        site = 0.8 if t < 600 and rng.random() < 0.05 else 1.0
        site = min(site, lb)
        r = engine.process_one(Snapshot(float(t), {"lb": lb, "site": site}))
        if t >= 1500 and site == lb == 1.0:
            calm.append(r.scores["site"])
    assert len(calm) > 1000
    assert float(np.max(calm)) < 0.5


def _assert_one_formula(bank: LinearBank, x: np.ndarray) -> np.ndarray:
    """``predict`` of the block ``x``, of each row alone and ``predict_node``: the same floats."""
    block = bank.predict(x)
    for b in range(x.shape[0]):
        np.testing.assert_array_equal(bank.predict(x[b]), block[b])
        for j in range(x.shape[1]):
            assert bank.predict_node(j, x[b]) == block[b, j]
    return block


def test_one_formula_for_snapshots_blocks_and_single_nodes() -> None:
    """``predict`` of a block, of each row alone and ``predict_node`` give the same floats."""
    rng = np.random.default_rng(5)
    n = 12
    parents = [np.array(sorted(rng.choice(j, size=min(j, int(rng.integers(0, 5))), replace=False)),
                        dtype=np.intp) for j in range(n)]  # fmt: skip
    bank = LinearBank(parents, forgetting=1e-2, ridge=1e-6)
    bank.learn_many(rng.lognormal(size=(300, n)))
    _assert_one_formula(bank, rng.lognormal(size=(7, n)))


def test_without_refresh_residuals_stay_as_learned_and_state_is_smaller() -> None:
    """``refresh_residuals=False``: no values kept, residuals kept as they were computed when
    learned, blocks still equal to records."""
    graph = CausalGraph([("a", "b"), ("b", "c"), ("a", "c")])
    on, off = EngineConfig(warmup=50), EngineConfig(warmup=50, refresh_residuals=False)
    # 8 bytes a slot for each node with parents (b, c) and each edge (3)
    assert Engine(graph, on).nbytes() - Engine(graph, off).nbytes() == 8 * 1024 * (2 + 3)
    x = _chain_with_drift(700, seed=2)
    ts = np.arange(700, dtype=np.float64)
    whole = Engine(graph, off)
    parts = Engine(graph, off)
    a = whole.process_block_columns(ts, x).node_scores
    b = np.concatenate(
        [parts.process_block_columns(ts[i : i + 37], x[i : i + 37]).node_scores
         for i in range(0, 700, 37)]
    )  # fmt: skip
    np.testing.assert_array_equal(a, b)
    held = Engine(graph, on)
    held.process_block_columns(ts, x)
    now = held._models.predict(x)
    plain = np.sort(whole._models.noise.samples[2, : whole._models.noise.filled[2]])
    fresh = np.sort(held._models.noise.samples[2, : held._models.noise.filled[2]])
    assert plain.shape == fresh.shape
    assert not np.array_equal(plain, fresh)  # the kept ones were recomputed, these were not
    assert np.isin(fresh, x[:, 2] - now[:, 2]).all()


def test_one_formula_with_hubs() -> None:
    """Nodes with more parents than are added block by block (a gateway calling many
    services): still the same floats for a block, each row alone and ``predict_node``."""
    rng = np.random.default_rng(6)
    n = 60
    parents = [np.array([], dtype=np.intp)] * 30 + [
        np.array(sorted(rng.choice(30, size=int(k), replace=False)), dtype=np.intp)
        for k in rng.integers(0, 30, size=30)
    ]
    bank = LinearBank(parents, forgetting=1e-2, ridge=1e-6)
    bank.learn_many(rng.lognormal(size=(400, n)))
    x = rng.lognormal(size=(5, n))
    block = _assert_one_formula(bank, x)
    # and the ordinary least-squares answer (up to rounding): the formula is right
    coef, intercept = bank.coefficients()
    np.testing.assert_allclose(block[:, 30:], (x @ coef.T + intercept)[:, 30:], rtol=1e-9)

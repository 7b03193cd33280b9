"""Online statistics against their batch equivalents, and the river contract of the mechanism."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import base

from stream_rca.core.linear import LinearBank, OnlineLinearRegression
from stream_rca.core.noise import NoiseBank, log_event, log_exceedance, tail_fit, two_sided_score


def batch_wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted least squares with intercept, by the normal equations."""
    a = np.column_stack([x, np.ones(len(y))]) * np.sqrt(w)[:, None]
    sol, *_ = np.linalg.lstsq(a, y * np.sqrt(w), rcond=None)
    return sol[:-1], float(sol[-1])


@pytest.mark.parametrize("forgetting", [0.0, 0.01])
def test_linear_bank_equals_batch_weighted_least_squares(forgetting: float) -> None:
    rng = np.random.default_rng(3)
    parents = [np.array([], dtype=np.intp)] * 3 + [np.array([0, 1, 2]), np.array([0])]
    bank = LinearBank(parents, forgetting=forgetting, ridge=0.0)
    rows = []
    for i in range(300):
        x = rng.normal(size=3)
        y1 = 1.5 * x[0] - 2.0 * x[1] + 0.5 * x[2] + 3.0 + rng.normal()
        y2 = -x[0] + rng.standard_t(3)
        snap = np.array([*x, y1, y2])
        rows.append(snap)
        bank.learn(snap)
        if i < 10 or i % 37:
            continue
        data = np.array(rows)
        w = (1.0 - forgetting) ** np.arange(len(data))[::-1]
        weights, intercepts = bank.coefficients()
        for node, pa in ((3, [0, 1, 2]), (4, [0])):
            coef, icpt = batch_wls(data[:, pa], data[:, node], w)
            np.testing.assert_allclose(weights[node, pa], coef, rtol=1e-7, atol=1e-9)
            assert math.isclose(intercepts[node], icpt, rel_tol=1e-7, abs_tol=1e-9)
        np.testing.assert_allclose(bank.mean()[:3], (data[:, :3] * w[:, None]).sum(0) / w.sum())


def test_linear_bank_masked_learning_and_prediction() -> None:
    parents = [np.array([], dtype=np.intp), np.array([0])]
    bank = LinearBank(parents, forgetting=0.0, ridge=0.0)
    for a in range(50):
        bank.learn(np.array([float(a), 2.0 * a + 1.0]))
    # a masked-out node does not learn: the bad value leaves the fit untouched
    bank.learn(np.array([1.0, 1000.0]), mask=np.array([True, False]))
    assert math.isclose(bank.predict(np.array([10.0, np.nan]))[1], 21.0, rel_tol=1e-9)
    assert math.isclose(bank.predict_node(1, np.array([3.0, np.nan])), 7.0, rel_tol=1e-9)
    np.testing.assert_allclose(bank.predict_samples(1, np.array([[1.0], [2.0]])), [3.0, 5.0])
    assert bank.predict(np.array([5.0, 0.0]))[0] == 0.0  # roots: f = 0


def test_constant_parent_gets_zero_weight() -> None:
    parents = [np.array([], dtype=np.intp)] * 2 + [np.array([0, 1])]
    bank = LinearBank(parents)
    rng = np.random.default_rng(0)
    for _ in range(100):
        a = rng.normal()
        bank.learn(np.array([a, 5.0, 3.0 * a]))
    weights, _ = bank.coefficients()
    assert abs(weights[2, 1]) < 1e-6
    assert math.isclose(weights[2, 0], 3.0, rel_tol=1e-4)


def test_river_regressor_contract() -> None:
    model = OnlineLinearRegression(forgetting=0.0)
    assert isinstance(model, base.Regressor)
    assert repr(model.clone()) == repr(model)
    rng = np.random.default_rng(1)
    data = [({"a": float(v)}, 2.0 * float(v) + 1.0) for v in rng.normal(size=50)]
    for x, y in data[:25]:
        model.learn_one(x, y)
    restored = pickle.loads(pickle.dumps(model))
    twin = OnlineLinearRegression(forgetting=0.0)
    for x, y in data[:25]:
        twin.learn_one(x, y)
    for x, y in data[25:]:
        assert model.predict_one(x) == restored.predict_one(x) == twin.predict_one(x)
        assert math.isclose(model.predict_one(x), y, rel_tol=1e-6)
    assert OnlineLinearRegression().predict_one({"a": 1.0}) == 0.0


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60), st.floats(-1e3, 1e3))
def test_noise_model_body_is_the_empirical_cdf(values: list[float], probe: float) -> None:
    bank = NoiseBank(1, capacity=64, tail_fraction=0.5, min_tail=1)
    for i, v in enumerate(values):
        bank.learn(np.array([v]), np.array([True]))
        assert bank.count[0] == i + 1
    data = np.array(values)
    lo, hi = bank.log_tails(np.array([probe]))
    n1 = len(data) + 1
    emp_lo = ((data < probe).sum() + 0.5 * (data == probe).sum() + 0.5) / n1
    emp_hi = ((data > probe).sum() + 0.5 * (data == probe).sum() + 0.5) / n1
    # inside the body: exactly the continuity-corrected ECDF; in a tail: never above it
    assert lo[0] <= math.log(emp_lo) + 1e-12
    assert hi[0] <= math.log(emp_hi) + 1e-12
    if data.min() < probe < data.max() and len(set(values)) > 2:
        assert math.isclose(max(lo[0], hi[0]), math.log(max(emp_lo, emp_hi)), abs_tol=1e-12)
    assert math.isclose(float(bank.median()[0]), float(np.median(data)), abs_tol=1e-9)


@given(st.lists(st.floats(-100, 100), min_size=4, max_size=80), st.integers(1, 10))
@settings(max_examples=60)
def test_tail_fit_matches_direct_computation(values: list[float], min_tail: int) -> None:
    data = np.array(values)
    n = len(data)
    u, scale, log_p = tail_fit(data[None, :], np.array([n]), 0.1, min_tail, np.array([0.0]))
    k = max(1, min(max(min_tail, math.ceil(0.1 * n)), n - 1))
    top = np.sort(data)[::-1][:k]
    assert u[0] == top[-1]
    assert math.isclose(scale[0], (top[:-1] - top[-1]).sum() / max(k - 1, 1), abs_tol=1e-9)
    assert math.isclose(log_p[0], math.log(k / (n + 1)))


def test_scores_do_not_saturate_and_keep_order() -> None:
    rng = np.random.default_rng(0)
    bank = NoiseBank(1, capacity=256, seed=0)
    for v in rng.normal(size=256):
        bank.learn(np.array([v]), np.array([True]))
    probes = np.array([5.0, 10.0, 20.0, 40.0, -40.0])
    scores = bank.score(probes, np.zeros(5, dtype=np.intp))
    assert (np.diff(scores[:4]) > 0).all()
    assert scores[1] > math.log(257)  # beyond what an empirical score can reach
    assert scores[4] > math.log(257)


def test_reservoir_is_bounded_and_recency_weighted() -> None:
    bank = NoiseBank(1, capacity=100, seed=1)
    for v in range(5000):
        bank.learn(np.array([float(v)]), np.array([True]))
    held = bank.samples[0]
    assert bank.filled[0] == 100
    assert bank.count[0] == 5000
    assert np.median(held) > 4800  # mean age about `capacity` updates


def test_two_sided_score_and_event() -> None:
    assert two_sided_score(np.array([math.log(0.5)]), np.array([math.log(0.5)]))[0] == 0.0
    s = np.random.default_rng(2).normal(size=(1, 4000))
    both = log_event(s, 2.0, -2.0)[0]
    one = log_exceedance(s, np.array([2.0]))[0]
    assert math.isclose(math.exp(both), 2 * math.exp(one), rel_tol=0.2)
    assert math.isclose(math.exp(both), 0.0455, rel_tol=0.25)


@given(st.integers(1, 40), st.floats(0.0, 0.2), st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_block_learning_equals_one_by_one(block: int, forgetting: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    parents = [np.array([], dtype=np.intp)] * 2 + [np.array([0, 1]), np.array([2]), np.array([1])]
    one, many = (LinearBank(parents, forgetting=forgetting, ridge=0.0) for _ in range(2))
    data = rng.normal(size=(3 * block, 5)) * [1.0, 2.0, 1.0, 3.0, 0.5] + [0.0, 1.0, 0.0, 0.0, 2.0]
    mask = rng.random(data.shape) < 0.7
    for start in range(0, len(data), block):
        many.learn_many(data[start : start + block], mask[start : start + block])
    for row, m in zip(data, mask, strict=True):
        one.learn(row, m)
    for a, b in zip(one.coefficients(), many.coefficients(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(one.weight(), many.weight(), rtol=1e-12)
    np.testing.assert_allclose(one.mean(), many.mean(), rtol=1e-9, atol=1e-12)


def test_noise_block_learning_equals_one_by_one_until_full() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=(50, 3))
    mask = rng.random((50, 3)) < 0.6
    one, many = NoiseBank(3, capacity=64), NoiseBank(3, capacity=64)
    for v, m in zip(values, mask, strict=True):
        one.learn(v, m)
    many.learn_many(values[:20], mask[:20])
    many.learn_many(values[20:], mask[20:])
    np.testing.assert_array_equal(one.count, many.count)
    np.testing.assert_array_equal(one.samples, many.samples)
    probes = rng.normal(size=(4, 3)) * 3
    np.testing.assert_array_equal(one.score(probes), many.score(probes))

"""Online statistics against their batch equivalents, and the river contract of the mechanism."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import base

from stream_rca.core.linear import LinearBank, OnlineLinearRegression
from stream_rca.core.noise import NoiseBank, log_event, log_exceedance, two_sided_score


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


def _learned(values: np.ndarray, capacity: int = 1024) -> NoiseBank:
    bank = NoiseBank(1, capacity=capacity)
    bank.learn_many(values[:, None], np.ones((len(values), 1), dtype=bool))
    bank.refit()
    return bank


@given(
    st.lists(st.floats(-1e3, 1e3), min_size=40, max_size=300),
    st.floats(-1e3, 1e3),
)
@settings(max_examples=80, deadline=None)
def test_noise_model_body_is_the_mid_rank_cdf(values: list[float], probe: float) -> None:
    data = np.array(values)
    bank = _learned(data)
    lo, hi = bank.log_tails(np.array([probe]))
    n1 = len(data) + 1
    emp = ((data < probe).sum() + 0.5 * (data == probe).sum() + 0.5) / n1
    knots = bank._knots[0]
    if knots[0] <= probe <= knots[-1]:
        # between two knots the model interpolates: it is off by at most one knot's gap
        gap = np.diff(bank._below[0]).max() + np.diff(bank._above[0]).max() + 1.0 / n1
        assert abs(math.exp(lo[0]) - emp) <= gap + 1e-12
        if probe in knots:  # at a knot: the exact mid-rank, ties included
            assert math.isclose(math.exp(lo[0]), emp, rel_tol=1e-9)
    # both sides are probabilities that add up to at most about one
    assert math.exp(lo[0]) + math.exp(hi[0]) <= 1.0 + 1.0 / n1 + 1e-9
    assert math.isclose(float(bank.median()[0]), float(np.median(data)), abs_tol=1e-9)


def test_scores_do_not_saturate_and_keep_order() -> None:
    rng = np.random.default_rng(0)
    bank = _learned(rng.normal(size=256), capacity=256)
    probes = np.array([5.0, 10.0, 20.0, 40.0, -40.0])
    scores = bank.score(probes, np.zeros(5, dtype=np.intp))
    assert (np.diff(scores[:4]) > 0).all()
    assert scores[1] > math.log(257)  # beyond what an empirical score can reach
    assert scores[4] > math.log(257)


def test_constant_series_gives_finite_ordered_scores() -> None:
    bank = NoiseBank(1, capacity=256)
    bank.min_scale[:] = 1e-4  # the owner's floor: relative to the values' magnitude
    bank.learn_many(np.ones((300, 1)), np.ones((300, 1), dtype=bool))
    bank.refit()
    s = bank.score(np.array([1.0, 0.999, 0.99, 0.5])[:, None], np.zeros(1, dtype=np.intp))[:, 0]
    assert s[0] == 0.0
    assert np.isfinite(s).all()
    assert (np.diff(s) > 0).all()
    assert s[1] >= math.log(257) - 1  # a value never seen is rare: about 1 / (n + 1)


@pytest.mark.parametrize(
    "draw",
    [
        lambda r, n: r.normal(size=n),
        lambda r, n: r.lognormal(0.0, 1.0, size=n),
        lambda r, n: r.gamma(1.5, size=n),
        lambda r, n: r.standard_t(3, size=n),
        lambda r, n: 0.05 + r.exponential(0.02, size=n),  # a latency: skewed, bounded below
    ],
    ids=["normal", "lognormal", "gamma", "student-t3", "latency"],
)
def test_scores_are_calibrated_on_data_from_the_learned_distribution(draw: Any) -> None:
    """``P(S >= s) = e^-s``: within x2 at 4 nats and x3 at 6 nats, over several fits."""
    rng = np.random.default_rng(11)
    ratios = {4.0: [], 6.0: []}
    for _ in range(6):
        bank = _learned(draw(rng, 1024))
        s = bank.score(draw(rng, 200_000)[:, None], np.zeros(1, dtype=np.intp))[:, 0]
        for level, out in ratios.items():
            out.append(float((s >= level).mean()) / math.exp(-level))
    assert 0.5 <= np.median(ratios[4.0]) <= 2.0, ratios
    assert 1 / 3 <= np.median(ratios[6.0]) <= 3.0, ratios


def test_reservoir_is_bounded_and_recency_weighted() -> None:
    bank = NoiseBank(1, capacity=100)
    v = np.arange(5000, dtype=np.float64)[:, None]
    bank.learn_many(v, np.ones_like(v, dtype=bool))
    held = bank.samples[0]
    assert bank.filled[0] == 100
    assert bank.count[0] == 5000
    assert 4700 < np.median(held) < 4990  # mean age about `capacity` updates


def test_two_sided_score_and_event() -> None:
    assert two_sided_score(np.array([math.log(0.5)]), np.array([math.log(0.5)]))[0] == 0.0
    s = np.random.default_rng(2).normal(size=(1, 4000))
    both = log_event(s, 2.0, -2.0)[0]
    one = log_exceedance(s, np.array([2.0]))[0]
    assert math.isclose(math.exp(both), 2 * math.exp(one), rel_tol=0.2)
    assert math.isclose(math.exp(both), 0.0455, rel_tol=0.25)
    far = log_exceedance(np.vstack([s, s, s]), np.array([4.0, 8.0, 16.0]))
    assert (np.diff(far) < 0).all()
    assert np.isfinite(far).all()


@given(st.lists(st.integers(1, 64), min_size=1, max_size=12), st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_noise_block_learning_equals_one_by_one(cuts: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    total = sum(cuts)
    values = rng.normal(size=(total, 3))
    mask = rng.random((total, 3)) < 0.7
    one, many = NoiseBank(3, capacity=16, seed=seed), NoiseBank(3, capacity=16, seed=seed)
    for v, m in zip(values, mask, strict=True):
        one.learn_many(v[None, :], m[None, :])
    start = 0
    for c in cuts:
        many.learn_many(values[start : start + c], mask[start : start + c])
        start += c
    one.refit()
    many.refit()
    np.testing.assert_array_equal(one.count, many.count)
    np.testing.assert_array_equal(one.samples, many.samples)
    probes = rng.normal(size=(4, 3)) * 3
    np.testing.assert_array_equal(one.score(probes), many.score(probes))


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

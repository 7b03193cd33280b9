"""Shapley estimators: axioms on random games, agreement with brute force, sampled convergence."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.shapley import (
    all_coalitions,
    estimate_shapley,
    exact_shapley,
    permutation_shapley,
)


def brute_force(values: np.ndarray, d: int) -> np.ndarray:
    """Shapley values by enumerating every order of the players (the textbook definition)."""
    phi = np.zeros(d)
    for order in itertools.permutations(range(d)):
        code = 0
        for p in order:
            phi[p] += values[code | (1 << p)] - values[code]
            code |= 1 << p
    return phi / math.factorial(d)


games = st.integers(min_value=1, max_value=5).flatmap(
    lambda d: st.tuples(
        st.just(d),
        st.lists(
            st.floats(-100, 100, allow_nan=False, allow_infinity=False),
            min_size=2**d,
            max_size=2**d,
        ),
    )
)


@given(games)
def test_exact_agrees_with_brute_force(game: tuple[int, list[float]]) -> None:
    d, vals = game
    values = np.array(vals)
    np.testing.assert_allclose(exact_shapley(values, d), brute_force(values, d), atol=1e-9)


@given(games)
def test_efficiency(game: tuple[int, list[float]]) -> None:
    d, vals = game
    values = np.array(vals)
    phi = exact_shapley(values, d)
    assert math.isclose(phi.sum(), values[-1] - values[0], abs_tol=1e-8)


@given(games, st.data())
def test_null_player_gets_zero(game: tuple[int, list[float]], data: st.DataObject) -> None:
    d, vals = game
    null = data.draw(st.integers(0, d - 1))
    values = np.array(vals)
    codes = np.arange(2**d)
    # make `null` a null player: v(T + null) = v(T)
    values[codes | (1 << null)] = values[codes & ~(1 << null)]
    assert abs(exact_shapley(values, d)[null]) < 1e-9


@given(st.integers(2, 5), st.data())
def test_symmetric_players_get_equal_values(d: int, data: st.DataObject) -> None:
    i, j = data.draw(st.permutations(range(d)))[:2]
    size_values = data.draw(
        st.lists(st.floats(-10, 10), min_size=2 * (d + 1), max_size=2 * (d + 1))
    )
    masks = all_coalitions(d)
    # v depends on the coalition's size and on whether it holds player 0 (unless i, j = 0).
    other = [p for p in range(d) if p not in (i, j)]
    marker = masks[:, other[0]] if other else np.zeros(len(masks), dtype=bool)
    values = np.array(size_values)[masks.sum(axis=1) + (d + 1) * marker]
    phi = exact_shapley(values, d)
    assert math.isclose(phi[i], phi[j], abs_tol=1e-9)


@given(games, st.integers(0, 2**32 - 1))
@settings(max_examples=50)
def test_permutation_sampling_is_efficient(game: tuple[int, list[float]], seed: int) -> None:
    d, vals = game
    values = np.array(vals)
    masks_to_codes = 1 << np.arange(d)

    def set_function(masks: np.ndarray) -> np.ndarray:
        return values[(masks * masks_to_codes).sum(axis=1)]

    result = permutation_shapley(set_function, d, 8, np.random.default_rng(seed))
    assert math.isclose(result.values.sum(), values[-1] - values[0], abs_tol=1e-8)


def test_permutation_sampling_converges_within_its_error_bound() -> None:
    rng = np.random.default_rng(7)
    d = 8
    values = rng.normal(size=2**d) + all_coalitions(d).sum(axis=1) ** 1.5
    truth = exact_shapley(values, d)
    weights = 1 << np.arange(d)

    def set_function(masks: np.ndarray) -> np.ndarray:
        return values[(masks * weights).sum(axis=1)]

    result = permutation_shapley(set_function, d, 2000, np.random.default_rng(1))
    assert result.method == "permutation"
    assert result.n_permutations == 2000
    z = np.abs(result.values - truth) / result.stderr
    assert (z < 4.5).all(), z


def test_estimate_switches_to_sampling_beyond_exact_limit() -> None:
    weights = np.arange(1.0, 15.0)

    def additive(masks: np.ndarray) -> np.ndarray:
        return (masks * weights).sum(axis=1)

    result = estimate_shapley(additive, 14, rng=np.random.default_rng(0), exact_max_players=10)
    assert result.method == "permutation"
    np.testing.assert_allclose(result.values, weights, atol=1e-9)


def test_exact_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="expected 8 coalition values"):
        exact_shapley(np.zeros(7), 3)

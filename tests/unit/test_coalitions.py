"""The all-coalitions event probabilities equal those of the plain construction.

:func:`coalition_event_logs` builds the float32 coalition values with contiguous rows, reads
the blocks' extremes by slices where most blocks need them and fits both sides at once; the
plain construction builds the ``(2**d, S)`` array column by column and calls
:func:`log_event_groups`. The whole rows must agree exactly, the blocks up to float round-off
(their tail fits run over other sets of rows, which may change the order of a few additions).
The exact attribution uses nothing else of the draws, so it gives the contributions it gave on
the plain numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.attribution import PlayerModel, _event, _event_plain, attribute_noise
from stream_rca.core.coalitions import coalition_event_logs
from stream_rca.core.noise import log_event_groups


def _plain(
    gap: np.ndarray, marginal: np.ndarray, hi: float, lo: float, groups: int
) -> tuple[np.ndarray, np.ndarray]:
    d = gap.shape[1]
    samples = np.empty((2**d, gap.shape[0]), dtype=np.float32)
    samples[0] = marginal
    gap32 = gap.astype(np.float32)
    for p in range(d):
        np.add(samples[: 2**p], gap32[:, p][None, :], out=samples[2**p : 2 ** (p + 1)])
    return log_event_groups(samples, hi, lo, groups, 0.05, 10, 1e-3)


@given(
    seed=st.integers(0, 2**16),
    d=st.integers(1, 7),
    size=st.integers(40, 600),
    groups=st.sampled_from([2, 4]),
    decimals=st.sampled_from([None, 0, 1]),
    scale=st.sampled_from([0.05, 1.0, 5.0]),
    at_values=st.booleans(),
)
@settings(max_examples=80, deadline=None)
def test_equal_to_the_plain_construction(
    seed: int,
    d: int,
    size: int,
    groups: int,
    decimals: int | None,
    scale: float,
    at_values: bool,
) -> None:
    rng = np.random.default_rng(seed)
    gap = rng.standard_t(3, size=(size, d)) * scale
    marginal = rng.standard_t(3, size=size)
    if decimals is not None:  # many ties between coalitions and with the bounds
        gap, marginal = np.round(gap, decimals), np.round(marginal, decimals)
    if at_values:  # bounds on coalition values
        values = marginal[None, :] + np.cumsum(gap.T, axis=0)
        lo, hi = sorted(float(v) for v in rng.choice(values.ravel(), 2, replace=False))
        if lo == hi:
            lo = hi - 1.0
    else:
        hi = float(rng.uniform(-1.0, 8.0))
        lo = hi - float(rng.uniform(0.5, 9.0))
    try:
        ref_whole, ref_parts = _plain(gap, marginal, hi, lo, groups)
    except ValueError:  # blocks too small for their tails: the same error
        with pytest.raises(ValueError, match="too small"):
            coalition_event_logs(gap, marginal, hi, lo, groups, 0.05, 10, 1e-3)
        return
    whole, parts = coalition_event_logs(gap, marginal, hi, lo, groups, 0.05, 10, 1e-3)
    np.testing.assert_allclose(whole, ref_whole, rtol=1e-12, atol=1e-12)
    assert parts.shape == (groups, 2**d)
    np.testing.assert_allclose(parts, ref_parts, rtol=1e-12, atol=1e-12)


def _chain(d: int, seed: int) -> tuple[PlayerModel, np.ndarray, float, np.ndarray]:
    """A linear chain of ``d`` players with heavy-tailed draws and an outlier at the root."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((d, d))
    for j in range(1, d):
        weights[j, j - 1] = rng.uniform(0.5, 1.5)
    parents = [np.array([j - 1], dtype=np.intp) if j else np.zeros(0, np.intp) for j in range(d)]
    draws = rng.standard_t(4, size=(512, d))
    noise = rng.standard_t(4, size=d)
    noise[0] = 9.0
    x = np.zeros(d)
    for j in range(d):
        x[j] = weights[j] @ x + noise[j]
    return PlayerModel(parents, weights=weights), noise, float(x[-1]), draws


@pytest.mark.parametrize("d", [3, 7, 11])
def test_exact_attribution_repeats_and_adds_up(d: int) -> None:
    model, noise, x_target, draws = _chain(d, seed=d)
    a = attribute_noise(model, noise, x_target, draws, np.random.default_rng(1))
    b = attribute_noise(model, noise, x_target, draws.copy(), np.random.default_rng(2))
    assert a.method == "exact"
    np.testing.assert_array_equal(a.contributions, b.contributions)
    np.testing.assert_array_equal(a.stderr, b.stderr)
    assert a.contributions.sum() == pytest.approx(a.target_score, abs=1e-9)
    assert (a.stderr > 0).all()


@given(
    seed=st.integers(0, 2**16),
    size=st.integers(60, 700),
    kind=st.sampled_from(["t", "normal", "rounded", "exponential"]),
    where=st.sampled_from(["inside", "on a value", "beyond"]),
)
@settings(max_examples=120, deadline=None)
def test_event_bounds_from_the_sorted_sample_as_from_the_sample(
    seed: int, size: int, kind: str, where: str
) -> None:
    """The event's bounds read off the sorted marginal sample equal those counted on it."""
    rng = np.random.default_rng(seed)
    marginal = {
        "t": lambda: rng.standard_t(3, size=size),
        "normal": lambda: rng.normal(size=size),
        "rounded": lambda: np.round(rng.normal(size=size), 1),
        "exponential": lambda: rng.exponential(size=size),
    }[kind]()
    x = {
        "inside": lambda: float(rng.uniform(-2.0, 2.0)),
        "on a value": lambda: float(rng.choice(marginal)),
        "beyond": lambda: float(rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 9.0)),
    }[where]()
    floor = 1e-3 * float(np.subtract(*np.percentile(marginal, [75, 25]))) + 1e-12
    assert _event(np.sort(marginal), x, floor) == _event_plain(marginal, x, floor)

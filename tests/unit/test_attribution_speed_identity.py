"""The faster exact attribution gives the numbers of the construction it replaced.

:func:`coalition_event_logs` now builds and sorts the coalitions a chunk at a time and reads
each sorted chunk with a compiled kernel (:mod:`stream_rca.core.compiled`: the counts by binary
searches, the blocks' tails from their ends, the rows' from a merge of their blocks' ends); the
attribution reads the sample's spread off the sorted values. The reference below is the
construction before those changes (one sort of every block, numpy's binary searches over the
whole blocks, the ends read from the coalition values, numpy's tail fits, ``np.percentile``),
kept here as plain code. The counts and the values the tails are fitted to are the same; the
fits' moments are summed in another order and ``log1p`` is the math library's, so whole rows,
blocks, contributions and standard errors agree to round-off (a relative 1e-12), with ties,
zeros of either sign and NaN. Between one core and two, and between calls, they are equal bit
for bit.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.attribution import (
    PlayerModel,
    _event,
    _iqr_sorted,
    _linear_gap,
    _shapley_operator,
    attribute_noise,
)
from stream_rca.core.coalitions import coalition_event_logs
from stream_rca.core.noise import (
    _beyond_tied,
    _event_k,
    _excess_log_sf,
    _far,
    _mid_rank_log,
    _rank_sorted,
    _row_sums,
)

Read = Callable[[np.ndarray | None, bool], np.ndarray]


def _reference_logs(
    gap: np.ndarray,
    marginal: np.ndarray,
    hi: float,
    lo: float,
    groups: int,
    tail_fraction: float = 0.05,
    min_tail: int = 10,
    min_scale: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    size, d = gap.shape
    m = size // groups
    n = 1 << d
    k = _event_k(groups * m, tail_fraction, min_tail)
    kb = _event_k(m, tail_fraction, min_tail)
    if k + 1 > m:
        raise ValueError(f"blocks of {m} values are too small for tails of {k} values")
    used = groups * m
    gap32 = np.empty((d, used), dtype=np.float32)
    gap32[...] = gap[:used].T
    values = np.empty((n, groups, m), dtype=np.float32)
    rows = values.reshape(n, used)
    rows[0] = marginal[:used]
    for p in range(d):
        np.add(rows[: 1 << p], gap32[p], out=rows[1 << p : 2 << p])
    values.sort(axis=2)
    flat = values.reshape(-1)
    runs = flat.reshape(-1, m)
    starts = np.arange(0, flat.size, m)
    bounds = np.array([hi, lo], dtype=np.float32)
    lefts = _rank_sorted(
        flat, np.tile(starts, 2), m, np.repeat(bounds, starts.size), inclusive=False
    ).reshape(2, -1)
    whole, part = np.empty((2, n)), np.empty((2, n * groups))
    far_rows, far_blocks = [], []
    for side, upper in enumerate((True, False)):
        x = hi if upper else lo
        beyond, tied = _beyond_tied(flat, starts, m, lefts[side], bounds[side], upper)
        part[side] = _mid_rank_log(beyond, tied, m)
        beyond_w = _row_sums(beyond.reshape(n, groups))
        tied_w = _row_sums(tied.reshape(n, groups))
        whole[side] = _mid_rank_log(beyond_w, tied_w, used)
        far_rows.append(
            np.flatnonzero(_far(beyond_w, beyond_w + tied_w, k, x, bounds[side], upper))
        )
        far_blocks.append(np.flatnonzero(_far(beyond, beyond + tied, kb, x, bounds[side], upper)))

    def read_rows(picked: np.ndarray | None, upper: bool) -> np.ndarray:
        cols = slice(m - k - 1, m) if upper else slice(0, k + 1)
        ends = values[:, :, cols] if picked is None else values[picked, :, cols]
        out = ends.reshape(ends.shape[0], -1)
        out.sort(axis=1)
        return out

    def read_blocks(picked: np.ndarray | None, upper: bool) -> np.ndarray:
        cols = slice(m - kb - 1, m) if upper else slice(0, kb + 1)
        return runs[:, cols] if picked is None else runs[picked, cols]

    _reference_fit(whole, far_rows, n, read_rows, k, hi, lo, used, min_scale)
    _reference_fit(part, far_blocks, n * groups, read_blocks, kb, hi, lo, m, min_scale)
    return np.logaddexp(whole[0], whole[1]), np.logaddexp(part[0], part[1]).reshape(n, groups).T


def _reference_fit(
    out: np.ndarray,
    far: list[np.ndarray],
    total: int,
    read: Read,
    k: int,
    hi: float,
    lo: float,
    size: int,
    min_scale: float,
) -> None:
    pieces = []
    for side, rows in enumerate(far):
        if rows.size:
            taken = None if 4 * rows.size > 3 * total else rows
            pieces.append((side, rows, taken, read(taken, side == 0)))
    if not pieces:
        return
    count = sum(ends.shape[0] for *_, ends in pieces)
    excess, u, x = np.empty((count, k)), np.empty(count), np.empty(count)
    start = 0
    for side, _, _, ends in pieces:
        r, width = ends.shape
        at = slice(start, start + r)
        if side == 0:
            top = ends[:, width - k - 1 :].astype(np.float64)
            u[at] = top[:, 0]
            np.subtract(top[:, :0:-1], top[:, :1], out=excess[at])
            x[at] = hi
        else:
            bottom = ends[:, : k + 1].astype(np.float64)
            u[at] = -bottom[:, k]
            np.subtract(bottom[:, k:], bottom[:, :k], out=excess[at])
            x[at] = -lo
        start += r
    fitted = _excess_log_sf(excess, u, x, size, min_scale)
    start = 0
    for side, rows, taken, ends in pieces:
        seg = fitted[start : start + ends.shape[0]]
        out[side, rows] = seg if taken is not None else seg[rows]
        start += ends.shape[0]


def _case(
    seed: int, d: int, size: int, kind: str, bounds: str
) -> tuple[np.ndarray, np.ndarray, float, float]:
    rng = np.random.default_rng(seed)
    gap = rng.standard_t(3, size=(size, d)) * rng.choice([0.05, 1.0, 5.0])
    marginal = rng.standard_t(3, size=size)
    if kind == "rounded":  # many ties between coalitions and with the bounds
        gap, marginal = np.round(gap, 0), np.round(marginal, 1)
    elif kind == "zeros":  # zeros of both signs, and ties at zero
        gap[rng.random(gap.shape) < 0.5] = 0.0
        marginal[rng.random(size) < 0.5] = -0.0
    elif kind == "nan":
        gap[rng.random(gap.shape) < rng.choice([0.002, 0.1, 0.95])] = np.nan
    if bounds == "on values":
        values = (marginal[None, :] + np.cumsum(gap.T, axis=0)).ravel()
        values = values[~np.isnan(values)]
        if values.size >= 2:
            lo, hi = sorted(float(v) for v in rng.choice(values, 2, replace=False))
            return gap, marginal, hi, (lo if lo < hi else hi - 1.0)
    hi = float(rng.uniform(-1.0, 12.0))
    return gap, marginal, hi, hi - float(rng.uniform(0.5, 15.0))


@given(
    seed=st.integers(0, 2**16),
    d=st.integers(1, 9),
    size=st.sampled_from([40, 100, 257, 512, 600]),
    groups=st.sampled_from([2, 4]),
    kind=st.sampled_from(["t", "rounded", "zeros", "nan"]),
    bounds=st.sampled_from(["random", "on values"]),
)
@settings(max_examples=150, deadline=None)
def test_coalition_logs_equal_the_reference(
    seed: int, d: int, size: int, groups: int, kind: str, bounds: str
) -> None:
    gap, marginal, hi, lo = _case(seed, d, size, kind, bounds)
    with np.errstate(invalid="ignore"):  # NaN cases: logaddexp of NaN, as before
        try:
            ref_whole, ref_parts = _reference_logs(gap, marginal, hi, lo, groups, 0.05, 10, 1e-3)
        except ValueError:
            with pytest.raises(ValueError, match="too small"):
                coalition_event_logs(gap, marginal, hi, lo, groups, 0.05, 10, 1e-3)
            return
        whole, parts = coalition_event_logs(gap, marginal, hi, lo, groups, 0.05, 10, 1e-3)
    np.testing.assert_allclose(whole, ref_whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(parts, ref_parts, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("d", [10, 11])
@pytest.mark.parametrize("kind", ["t", "rounded", "zeros", "nan"])
@pytest.mark.parametrize("bounds", ["random", "on values"])
def test_coalitions_built_by_chunks_equal_the_reference(
    d: int, kind: str, bounds: str, cores: int
) -> None:
    """From 10 players the coalitions are built, sorted and reduced a chunk at a time; with
    a second core, half of the chunks run there: the reference's numbers, and on two cores
    the floats of one."""
    pool = concurrent.futures.ThreadPoolExecutor(1) if cores == 2 else None
    gap, marginal, hi, lo = _case(1000 * d + len(kind) + len(bounds), d, 512, kind, bounds)
    with np.errstate(invalid="ignore"):
        ref_whole, ref_parts = _reference_logs(gap, marginal, hi, lo, 4, 0.05, 10, 1e-3)
        whole, parts = coalition_event_logs(gap, marginal, hi, lo, 4, 0.05, 10, 1e-3, pool)
        one = coalition_event_logs(gap, marginal, hi, lo, 4, 0.05, 10, 1e-3)
    if pool is not None:
        pool.shutdown()
    np.testing.assert_allclose(whole, ref_whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(parts, ref_parts, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(whole, one[0])
    np.testing.assert_array_equal(parts, one[1])


def test_calls_in_between_change_nothing() -> None:
    """Calls of other sizes in between (and the caller writing to a result) change nothing."""
    cases = [_case(s, d, size, "t", "random") for s, d, size in [(1, 6, 512), (2, 3, 100)]]
    first = [coalition_event_logs(g, m, h, lo, 4) for g, m, h, lo in cases]
    again = [coalition_event_logs(g, m, h, lo, 4) for g, m, h, lo in reversed(cases)][::-1]
    for (w1, p1), (w2, p2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(p1, p2)
    w, p = first[0]
    w[:] = np.nan  # the results are the caller's: writing to them changes no later call
    np.testing.assert_array_equal(coalition_event_logs(*cases[0][:4], 4)[1], p)


def _reference_attribution(
    model: PlayerModel, noise: np.ndarray, x_target: float, draws: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """The exact linear branch of ``attribute_noise`` before the change, step by step."""
    d = noise.shape[0]
    assert model.weights is not None
    gap = _linear_gap(model.weights, noise, draws)
    marginal = x_target - gap.sum(axis=1)
    asc = np.sort(marginal)
    floor = 1e-3 * float(np.subtract(*np.percentile(asc, [75, 25]))) + 1e-12
    hi, lo = _event(asc, x_target, floor)
    whole, parts = _reference_logs(gap, marginal, hi, lo, 4, 0.05, 10, floor)
    vals, group_vals = np.minimum(0.0, whole), np.minimum(0.0, parts)
    empty = float(vals[0])
    vals[-1] = 0.0
    group_vals[:, -1] = 0.0
    every = np.empty((5, 2**d))  # C order, as the attribution's (the product's floats follow it)
    every[0], every[1:] = vals, group_vals
    phis = every @ _shapley_operator(d)
    return phis[0], np.std(phis[1:], axis=0, ddof=1) / math.sqrt(4), -empty


@pytest.mark.parametrize("d", [2, 5, 8, 11])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_attribution_equals_the_reference(d: int, seed: int) -> None:
    rng = np.random.default_rng(100 * d + seed)
    weights = np.tril(rng.uniform(-1.2, 1.2, size=(d, d)) * (rng.random((d, d)) < 0.5), -1)
    parents = [np.flatnonzero(weights[j]) for j in range(d)]
    draws = rng.standard_t(4, size=(512, d)) * rng.uniform(0.2, 3.0, size=d)
    noise = rng.standard_t(4, size=d)
    noise[rng.integers(d)] = rng.choice([0.5, 6.0, 25.0])  # inside, beyond, far beyond
    x_target = float(np.linalg.solve(np.eye(d) - weights, noise)[-1])
    model = PlayerModel(parents, weights=weights)
    out = attribute_noise(model, noise, x_target, draws, np.random.default_rng(0))
    phi, stderr, score = _reference_attribution(model, noise, x_target, draws)
    assert out.method == "exact"
    np.testing.assert_allclose(out.contributions, phi, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out.stderr, stderr, rtol=1e-9, atol=1e-9)
    assert out.target_score == pytest.approx(score, rel=1e-12, abs=1e-12)


@given(
    n=st.integers(1, 3000),
    scale=st.sampled_from([1e-6, 1.0, 1e6]),
    rounded=st.booleans(),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=200, deadline=None)
def test_spread_read_off_the_sorted_sample_equals_numpy_percentile(
    n: int, scale: float, rounded: bool, seed: int
) -> None:
    x = np.random.default_rng(seed).standard_t(2, size=n) * scale
    asc = np.sort(np.round(x, 1) if rounded else x)
    assert _iqr_sorted(asc) == float(np.subtract(*np.percentile(asc, [75, 25])))

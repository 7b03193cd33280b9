"""Compiled kernels (numba) for the few loops numpy cannot run fast: many tiny rows.

numpy runs an inner loop per row, so an operation over thousands of rows of ten values costs
its call overhead thousands of times; the exact attribution's counts and tail fits are such
operations (some 20,000 fits of 10 to 26 excesses per call). Each kernel here is a plain loop
over those rows, compiled once per machine (cached beside this module) and run without the
GIL, so two threads run two halves at once.

The arithmetic is that of the numpy functions they stand for, operation for operation
(:func:`~stream_rca.core.tails.fit_excess` and :meth:`~stream_rca.core.tails.Tail.log_sf`);
the only differences are the order of the additions in the two probability-weighted moments
(a loop here, a matrix product there) and the math library's ``log1p`` and ``exp`` (in the
logaddexp of the two sides), so the results agree to round-off (the tests compare them to a
relative 1e-12).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

from stream_rca.core.tails import _BOUNDED_DEPTH, _MAX_HAZARD, XI_MAX, _pwm_weights, lowest_shape

__all__ = ["ChunkReducer", "fit_log_sf_rows"]

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]


_F = TypeVar("_F", bound=Callable[..., Any])
_njit = numba.njit(cache=True, nogil=True, error_model="numpy")


def _jit(function: _F) -> _F:
    """Compile ``function`` (on its first call; cached beside this module), keeping its type.
    No fast-math: the floats are IEEE's, as numpy's."""
    return cast(_F, _njit(function))


@_jit
def _fit_log_sf(
    e: FloatArray,
    k: int,
    u: float,
    x: float,
    log_pu_table: FloatArray,
    w0: FloatArray,
    w1: FloatArray,
    lowest: float,
    min_scale: float,
) -> float:
    """``log P(X >= x)`` of the GPD tail fitted to the ``k`` excesses ``e[:k]`` (largest
    first) over the threshold ``u``: :func:`~stream_rca.core.tails.fit_excess` with
    ``log P(X > u)`` from the count of positive excesses, then ``Tail.log_sf(x)``."""
    a0 = 0.0
    a1 = 0.0
    for i in range(k):
        a0 += w0[i] * e[i]
        a1 += w1[i] * e[i]
    if e[k - 1] <= 0.0:  # the least extreme value sits on the threshold: count those above
        above = 0
        for i in range(k):
            if e[i] > 0.0:
                above += 1
        log_pu: float = log_pu_table[above]
    else:
        log_pu = log_pu_table[k]
    denom = a0 - 2.0 * a1
    xi = 2.0 - a0 / denom if denom > 0.0 else XI_MAX
    if xi < lowest:
        xi = lowest
    if xi > XI_MAX:
        xi = XI_MAX
    sigma = (1.0 - xi) * a0
    if sigma < min_scale:  # np.maximum (a NaN stays NaN)
        sigma = min_scale
    y = x - u
    if y < 0.0:
        y = 0.0
    y = y / sigma
    if abs(xi) < 1e-6:
        return -y + log_pu
    if xi > 0.0:
        return math.log1p(xi * y) / -xi + log_pu
    cut = math.expm1(xi * _BOUNDED_DEPTH) / xi
    if y > cut:
        hazard = 1.0 / (1.0 + xi * cut)
        if hazard > _MAX_HAZARD:
            hazard = _MAX_HAZARD
        return -_BOUNDED_DEPTH - (y - cut) * hazard + log_pu
    return -math.log1p(xi * y) / xi + log_pu


def _pwm(k: int) -> tuple[FloatArray, FloatArray]:
    """The weights of :func:`~stream_rca.core.tails._pwm_weights` as two rows."""
    w = _pwm_weights(k)
    return np.ascontiguousarray(w[0]), np.ascontiguousarray(w[1])


def fit_log_sf_rows(
    excess: FloatArray,
    u: FloatArray,
    x: FloatArray,
    log_pu_table: FloatArray,
    min_scale: float,
) -> FloatArray:
    """``log P(X >= x)`` per row from ``(rows, k)`` excesses, largest first (see
    :func:`_fit_log_sf`; ``log_pu_table[a]`` is ``log P(X > u)`` with ``a`` values above)."""
    k = excess.shape[1]
    w0, w1 = _pwm(k)
    out = np.empty(excess.shape[0])
    _fit_rows_kernel(
        np.ascontiguousarray(excess, dtype=np.float64),
        u,
        x,
        log_pu_table,
        w0,
        w1,
        lowest_shape(k),
        float(min_scale),
        out,
    )
    return out


@_jit
def _fit_rows_kernel(
    excess: FloatArray,
    u: FloatArray,
    x: FloatArray,
    table: FloatArray,
    w0: FloatArray,
    w1: FloatArray,
    lowest: float,
    min_scale: float,
    out: FloatArray,
) -> None:
    k = excess.shape[1]
    for r in range(excess.shape[0]):
        out[r] = _fit_log_sf(excess[r], k, u[r], x[r], table, w0, w1, lowest, min_scale)


@_jit
def _count_below(run: F32Array, bound: np.float32) -> int:
    """Values of the sorted ``run`` below ``bound``; a NaN, sorted last, is below nothing
    (a branchless binary search: the halves' comparisons are not predictable)."""
    base = 0
    n = run.shape[0]
    while n > 1:
        half = n >> 1
        base += half * (run[base + half - 1] < bound)
        n -= half
    return int(base + (run[base] < bound))


@_jit
def _before(a: float, b: float, nan_first: bool) -> bool:
    """Whether ``a`` comes strictly before ``b`` in a descending order (a NaN first when
    ``nan_first``, else last)."""
    if a != a:
        return nan_first and b == b
    if b != b:
        return not nan_first
    return a > b


@_jit
def _merge(a: FloatArray, b: FloatArray, count: int, nan_first: bool, out: FloatArray) -> None:
    """The ``count`` first values of two descending runs (each at least ``count`` long)."""
    i = 0
    j = 0
    for t in range(count):
        if _before(b[j], a[i], nan_first):
            out[t] = b[j]
            j += 1
        else:
            out[t] = a[i]
            i += 1


@_jit
def _merge_numbers(a: FloatArray, b: FloatArray, count: int, out: FloatArray) -> None:
    """:func:`_merge` of runs without a NaN, without branches (which way a step goes is not
    predictable, so a branch per step is mispredicted half of the time)."""
    i = 0
    j = 0
    for t in range(count):
        av = a[i]
        bv = b[j]
        take_b = bv > av
        out[t] = bv if take_b else av
        j += take_b
        i += 1 - take_b


@_jit
def _reduce_chunk_kernel(
    runs: F32Array,
    first: int,
    bounds: F32Array,
    x: FloatArray,
    strict: npt.NDArray[np.bool_],
    k: int,
    kb: int,
    block_table: FloatArray,
    row_table: FloatArray,
    above_b: FloatArray,
    above_r: FloatArray,
    w0b: FloatArray,
    w1b: FloatArray,
    w0r: FloatArray,
    w1r: FloatArray,
    lowest_b: float,
    lowest_r: float,
    min_scale: float,
    numbers: bool,
    whole: FloatArray,
    parts: FloatArray,
) -> None:
    """``whole[first + c]`` and ``parts[:, first + c]`` for each coalition ``c`` of ``runs``
    (``(coalitions, groups, m)``, each block sorted): per side (``bounds[0]`` the upper,
    ``bounds[1]`` the lower, read as negated values), the mid-rank counts of each block and of
    the coalition, or their tails where at most ``kb`` (``k``) values reach the bound; then the
    two sides' logaddexp. See :class:`ChunkReducer`."""
    rows, groups, m = runs.shape
    w = k + 1
    ends = np.empty((groups, w))  # each block's w most extreme values, the most extreme first
    merged = np.empty((groups, w))  # pairwise merges of those
    beyond = np.empty(groups, dtype=np.intp)
    tied = np.empty(groups, dtype=np.intp)
    side_whole = np.empty(2)  # the coalition's log-probabilities per side
    part = np.empty((2, groups))  # and its blocks'
    for c in range(rows):
        row = first + c
        for side in range(2):
            upper = side == 0
            bound = bounds[side]
            total_beyond = 0
            total_tied = 0
            for g in range(groups):
                run = runs[c, g]
                left = _count_below(run, bound)
                reach_left = left
                while reach_left < m and run[reach_left] == bound:
                    reach_left += 1
                tied[g] = reach_left - left
                beyond[g] = (m - reach_left) if upper else left
                total_beyond += beyond[g]
                total_tied += tied[g]
            row_far = (total_beyond if strict[side] else total_beyond + total_tied) <= k
            for g in range(groups):
                block_far = (beyond[g] if strict[side] else beyond[g] + tied[g]) <= kb
                if not (block_far or row_far):
                    part[side, g] = block_table[2 * beyond[g] + tied[g]]
                    continue
                run = runs[c, g]
                e = ends[g]
                # as upper values: the largest first, or the smallest negated
                if upper:
                    for i in range(w if row_far else kb + 1):
                        e[i] = np.float64(run[m - 1 - i])
                else:
                    for i in range(w if row_far else kb + 1):
                        e[i] = -np.float64(run[i])
                if block_far:
                    u = e[kb]
                    ex = merged[g]  # free until the row's merge
                    for i in range(kb):
                        ex[i] = e[i] - u
                    part[side, g] = _fit_log_sf(
                        ex, kb, u, x[side], above_b, w0b, w1b, lowest_b, min_scale
                    )
                else:
                    part[side, g] = block_table[2 * beyond[g] + tied[g]]
            if not row_far:
                side_whole[side] = row_table[2 * total_beyond + total_tied]
                continue
            # the row's w most extreme values: its blocks' merged in pairs (a NaN, sorted
            # last, is the most extreme upper value and the least extreme lower one)
            top = _merge_all(ends, merged, groups, w, upper, numbers)
            u = top[k]
            ex = merged[groups - 1]  # never the merge's result (see _merge_all)
            for i in range(k):
                ex[i] = top[i] - u
            side_whole[side] = _fit_log_sf(
                ex, k, u, x[side], above_r, w0r, w1r, lowest_r, min_scale
            )
        # either side: P(X >= hi) + P(X <= lo), as logs (numpy's logaddexp)
        whole[row] = np.logaddexp(side_whole[0], side_whole[1])
        for g in range(groups):
            parts[g, row] = np.logaddexp(part[0, g], part[1, g])


@_jit
def _merge_all(
    ends: FloatArray, merged: FloatArray, groups: int, w: int, nan_first: bool, numbers: bool
) -> FloatArray:
    """The ``w`` first values of the ``groups`` descending rows of ``ends`` (a row of
    ``ends`` or of ``merged``; ``numbers``: no NaN among them)."""
    if groups == 1:
        only: FloatArray = ends[0]
        return only
    acc = 0
    for g in range(1, groups):
        a = ends[0] if g == 1 else merged[acc]
        out = merged[0] if g == 1 else merged[1 - acc]
        if numbers:
            _merge_numbers(a, ends[g], w, out)
        else:
            _merge(a, ends[g], w, nan_first, out)
        acc = 0 if g == 1 else 1 - acc
    result: FloatArray = merged[acc]
    return result


class ChunkReducer:
    """The event's log-probabilities of every coalition and block, from sorted blocks of
    coalition values, a chunk at a time (for
    :func:`~stream_rca.core.coalitions.coalition_event_logs`).

    Parameters
    ----------
    hi, lo
        The event's bounds.
    groups, m
        Blocks per coalition and values per block.
    k, kb
        Tail sizes of a coalition's ``groups * m`` values and of a block's ``m``.
    min_scale
        Floor of the fitted scales.
    tables
        ``(mid-rank logs of a block, of a row, log P(X > u) of a block's tail, of a row's)``.
    whole, parts
        ``(coalitions,)`` and ``(groups, coalitions)``: where the results go,
        ``log P(X >= hi or X <= lo)`` of each coalition and of each of its blocks.
    """

    def __init__(
        self,
        hi: float,
        lo: float,
        groups: int,
        m: int,
        k: int,
        kb: int,
        min_scale: float,
        tables: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
        whole: FloatArray,
        parts: FloatArray,
    ) -> None:
        self._bounds = np.array([hi, lo], dtype=np.float32)
        # as upper bounds: hi, and -lo for the negated values
        self._x = np.array([hi, -lo])
        xv = np.array([float(self._bounds[0]), -float(self._bounds[1])])
        self._strict = self._x > xv  # a value equal to xv does not reach x (see noise._far)
        self._k, self._kb = k, kb
        self._tables = tables
        self._wb = _pwm(kb)
        self._wr = _pwm(k)
        self._lowest = (lowest_shape(kb), lowest_shape(k))
        self._min_scale = float(min_scale)
        self._whole, self._parts = whole, parts

    def __call__(self, runs: F32Array, first: int, numbers: bool) -> None:
        """Reduce ``(coalitions, groups, m)`` sorted blocks of the coalitions from ``first``
        (``numbers``: no NaN among them, which allows a faster merge)."""
        block_table, row_table, above_b, above_r = self._tables
        _reduce_chunk_kernel(
            runs,
            first,
            self._bounds,
            self._x,
            self._strict,
            self._k,
            self._kb,
            block_table,
            row_table,
            above_b,
            above_r,
            self._wb[0],
            self._wb[1],
            self._wr[0],
            self._wr[1],
            self._lowest[0],
            self._lowest[1],
            self._min_scale,
            numbers,
            self._whole,
            self._parts,
        )

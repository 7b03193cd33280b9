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
from typing import Any, NamedTuple, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

from stream_rca.core.tails import BOUNDED_DEPTH, MAX_HAZARD, XI_MAX, lowest_shape, pwm_weights

__all__ = [
    "ChunkReducer",
    "Layouts",
    "fit_log_sf_rows",
    "hold",
    "learn_counts",
    "learn_linear",
    "log_tails",
    "place",
    "predict_ranked",
    "refit_sorted",
    "refresh_ranked",
    "resort_rows",
    "ridge_solve",
    "score_masks",
    "spread_rows",
    "spread_stats",
    "tail_scores",
]

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]
I32Array = npt.NDArray[np.int32]
I64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


_LOG2 = math.log(2.0)

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
    xi, sigma = _shape_scale(a0, a1, k, 0.0, lowest, min_scale)
    return _gpd_log_sf(x - u, sigma, xi) + log_pu


@_jit
def _shape_scale(
    a0: float, a1: float, k: int, caution: float, lowest: float, floor: float
) -> tuple[float, float]:
    """``(xi, sigma)`` of :func:`~stream_rca.core.tails.fit_excess` from the two
    probability-weighted moments ``a0``, ``a1`` of ``k`` excesses."""
    denom = a0 - 2.0 * a1
    xi = 2.0 - a0 / denom if denom > 0.0 else XI_MAX
    if caution != 0.0:
        xi += caution * 2.0 / math.sqrt(k)
    if xi < lowest:
        xi = lowest
    if xi > XI_MAX:
        xi = XI_MAX
    return xi, _nan_max((1.0 - xi) * a0, floor)


@_jit
def _gpd_log_sf(excess: float, sigma: float, xi: float) -> float:
    """:func:`~stream_rca.core.tails.gpd_log_sf` of one value: ``log P(Y >= y)`` of a
    GPD(sigma, xi) at ``y = max(excess, 0)`` (a NaN stays NaN)."""
    y = excess
    if y < 0.0:
        y = 0.0
    y = y / sigma
    if abs(xi) < 1e-6:
        return -y
    if xi > 0.0:
        return math.log1p(xi * y) / -xi
    cut = math.expm1(xi * BOUNDED_DEPTH) / xi
    if y > cut:
        hazard = 1.0 / (1.0 + xi * cut)
        if hazard > MAX_HAZARD:
            hazard = MAX_HAZARD
        return -BOUNDED_DEPTH - (y - cut) * hazard
    return -math.log1p(xi * y) / xi


def _pwm(k: int) -> tuple[FloatArray, FloatArray]:
    """The weights of :func:`~stream_rca.core.tails.pwm_weights` as two rows."""
    w = pwm_weights(k)
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
    strict: BoolArray,
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


# -- the noise bank -------------------------------------------------------------------------


class Layouts(NamedTuple):
    """Where a refit reads each row: the layouts of its sizes, and each row's."""

    inv: IntArray
    """Per row, its size's index in the arrays below."""
    k_pos: IntArray
    """``(sizes, n_knots)``: the knots' positions."""
    k: IntArray
    """Values per tail fit."""
    quartiles: IntArray
    """``(sizes, 2)``: the positions of the first and third quartiles."""
    lowest: FloatArray
    """The smallest shape fitted (:func:`~stream_rca.core.tails.lowest_shape` of ``k``)."""
    weights: FloatArray
    """``(sizes, 2, max k)``: the probability-weighted moments' weights of ``k`` excesses
    (:func:`~stream_rca.core.tails.pwm_weights`, zero beyond ``k``)."""


@_jit
def _nan_max(a: float, b: float) -> float:
    """``np.maximum`` of two floats: a NaN on either side is the result."""
    if a != a or b != b:
        return a + b
    return a if a >= b else b


@_jit
def _nan_min(a: float, b: float) -> float:
    """``np.minimum`` of two floats: a NaN on either side is the result."""
    if a != a or b != b:
        return a + b
    return a if a <= b else b


@_jit
def _search(row: FloatArray, n: int, v: float, right: bool) -> int:
    """``np.searchsorted(row[:n], v, side)`` of a row sorted ascending (NaN last) and a
    value that is not NaN: the values below ``v`` (at or below it when ``right``)."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if row[mid] < v or (right and row[mid] == v):
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def _fit_shape_scale(
    row: FloatArray,
    n: int,
    k: int,
    upper: bool,
    u: float,
    weights: FloatArray,
    caution: float,
    lowest: float,
    floor: float,
) -> tuple[float, float]:
    """``(xi, sigma)`` of :func:`~stream_rca.core.tails.fit_tail_sorted` for the ``k`` most
    extreme values of the sorted ``row[:n]`` over ``u`` (the largest, or the smallest
    negated when not ``upper``): its probability-weighted moments (``weights``, as
    :func:`~stream_rca.core.tails.pwm_weights`) summed in a loop."""
    a0 = 0.0
    a1 = 0.0
    for i in range(k):
        e = (row[n - 1 - i] if upper else -row[i]) - u
        if e < 0.0:  # np.maximum(e, 0): a NaN stays NaN
            e = 0.0
        a0 += weights[0, i] * e
        a1 += weights[1, i] * e
    return _shape_scale(a0, a1, k, caution, lowest, floor)


@_jit
def _refit_kernel(
    asc: FloatArray,
    n: I64Array,
    inv: IntArray,
    k_pos: IntArray,
    ks: IntArray,
    quartiles: IntArray,
    lowest: FloatArray,
    weights: FloatArray,
    rows: IntArray,
    min_scale: FloatArray,
    caution: float,
    knots: FloatArray,
    below: FloatArray,
    above: FloatArray,
    median: FloatArray,
    hi: FloatArray,
    lo: FloatArray,
    odd: BoolArray,
) -> int:
    """See :func:`refit_sorted`; ``hi`` and ``lo`` are ``(4, nodes)``: u, sigma, xi, log_pu.
    Returns the number of rows marked ``odd``."""
    n_knots = k_pos.shape[1]
    n_odd = 0
    for i in range(asc.shape[0]):
        row = asc[i]
        r = rows[i]
        s = inv[i]
        size = n[i]
        _canonical_zeros(row, size)
        n1 = size + 1.0
        lt0 = 0
        le_last = 0
        for j in range(n_knots):
            p = k_pos[s, j]
            kn = row[p]
            knots[r, j] = kn
            # a knot unlike both neighbours is a run of ties of its own
            if row[max(p - 1, 0)] == kn or row[min(p + 1, size - 1)] == kn:
                lt = _search(row, size, kn, False)
                le = _search(row, size, kn, True)
            else:
                lt = p
                le = p + 1
            below[r, j] = (lt + 0.5) / n1
            above[r, j] = (le + 0.5) / n1
            if j == 0:
                lt0 = lt
            le_last = le
        half = size // 2
        mid = row[half] if size % 2 else (row[half - 1] + row[half]) / 2.0
        median[r] = mid
        # NaN (sorted last) makes the median NaN; a zero's sign is np.median's to pick
        odd[i] = row[size - 1] != row[size - 1] or mid == 0.0
        n_odd += odd[i]
        floor = _nan_max(min_scale[r], 1e-3 * (row[quartiles[s, 1]] - row[quartiles[s, 0]]))
        k = ks[s]
        u_hi = knots[r, n_knots - 1]
        xi, sigma = _fit_shape_scale(
            row, size, k, True, u_hi, weights[s], caution, lowest[s], floor
        )
        hi[0, r] = u_hi
        hi[1, r] = sigma
        hi[2, r] = xi
        hi[3, r] = math.log(((size - le_last) + 0.5) / n1)
        u_lo = -knots[r, 0]
        xi, sigma = _fit_shape_scale(
            row, size, k, False, u_lo, weights[s], caution, lowest[s], floor
        )
        lo[0, r] = u_lo
        lo[1, r] = sigma
        lo[2, r] = xi
        lo[3, r] = math.log((lt0 + 0.5) / n1)
    return n_odd


@_jit
def _canonical_zeros(row: FloatArray, n: int) -> None:
    """Make every zero of a sorted row ``0.0``. ``-0.0`` and ``0.0`` compare equal, so sorts
    place them in any order, and numpy's vectorised sorts do not even keep them: their
    min/max networks may return either zero for both (measured: a row's count of ``-0.0``
    changes under numpy's AVX-512 sort). With this, every exact sort gives the same floats."""
    lo = _search(row, n, 0.0, False)
    for j in range(lo, n):
        if row[j] != 0.0:
            break
        row[j] = 0.0


@_jit
def _resort_kernel(
    samples: FloatArray,
    rows: IntArray,
    order: I32Array,
    fresh: BoolArray,
    budget: int,
    asc: FloatArray,
    ok: BoolArray,
) -> None:
    """See :func:`resort_rows`. A row's order is rewritten in place: the kept values' slots
    at positions already read, then the merge from the end."""
    cap = samples.shape[1]
    new_v = np.empty(cap)
    new_s = np.empty(cap, dtype=np.int32)
    for i in range(rows.size):
        r = rows[i]
        row = samples[r]
        marks = fresh[r]
        slot = order[r]
        out = asc[i]
        m = 0  # values kept from the last sort, sorted so far (slots in slot[:m])
        q = 0  # values learned since, in their own sorted list
        moves = 0
        good = True
        for j in range(cap):
            s = slot[j]
            v = row[s]
            if v != v:  # NaN: numpy's sort places those
                good = False
                break
            if marks[s]:
                k = q
                while k > 0 and new_v[k - 1] > v:
                    new_v[k] = new_v[k - 1]
                    new_s[k] = new_s[k - 1]
                    k -= 1
                new_v[k] = v
                new_s[k] = s
                q += 1
                continue
            k = m
            while k > 0 and out[k - 1] > v:
                out[k] = out[k - 1]
                slot[k] = slot[k - 1]
                k -= 1
            moves += m - k
            out[k] = v
            slot[k] = s
            m += 1
            if moves > budget:  # far from the last order: numpy's sort is cheaper
                good = False
                break
        ok[i] = good
        if not good:  # its order is half rewritten: the caller sorts it afresh
            continue
        # merge the two sorted lists from their ends (the kept ones first on ties)
        w = cap - 1
        x = m - 1
        y = q - 1
        while y >= 0:
            if x >= 0 and out[x] > new_v[y]:
                out[w] = out[x]
                slot[w] = slot[x]
                x -= 1
            else:
                out[w] = new_v[y]
                slot[w] = new_s[y]
                y -= 1
            w -= 1


def resort_rows(
    samples: FloatArray,
    rows: IntArray,
    order: I32Array,
    fresh: BoolArray,
    budget: int,
) -> tuple[FloatArray, BoolArray]:
    """Sort the full reservoir rows ``rows`` of ``samples`` from the order of their last sort.

    ``order[r]`` lists row ``r``'s slots in the ascending order of its values at the last
    sort, and ``fresh[r]`` marks the slots that received a new value since. The values kept
    are taken in that order and sorted by insertion (the mechanisms moved them a little:
    few are out of place), the new ones apart, and the two merged: the sorted values of each
    row, as numpy's sort gives them (but for the signs of zeros; see
    :func:`_canonical_zeros`), and ``order`` updated. A row holding NaN, or needing more
    than ``budget`` moves, is left to the caller: its entry of the returned mask is False
    and its ``order`` is no longer valid (the caller sorts it afresh).
    """
    asc = np.empty((rows.size, samples.shape[1]))
    ok = np.empty(rows.size, dtype=np.bool_)
    _resort_kernel(samples, rows, order, fresh, int(budget), asc, ok)
    return asc, ok


def refit_sorted(
    asc: FloatArray,
    n: I64Array,
    layout: Layouts,
    rows: IntArray,
    min_scale: FloatArray,
    caution: float,
    out: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray],
) -> list[int]:
    """Refit the noise models of ``rows`` from their values sorted ascending (their zeros are
    made ``0.0`` in ``asc``, in place: :func:`_canonical_zeros`).

    ``asc[i, :n[i]]`` holds row ``rows[i]``'s values, read through the layout of its size
    ``layout.inv[i]``. ``out`` is ``(knots, below, above, median, hi, lo)``, the bank's arrays
    (``hi`` and ``lo`` as ``(4, nodes)``: u, sigma, xi, log_pu), written at ``rows``. Returns
    the positions (in ``rows``) whose median needs ``np.median`` itself (a NaN among the
    values, or a zero median: its sign is whichever zero ``np.median``'s partition picks).
    """
    odd = np.zeros(asc.shape[0], dtype=np.bool_)
    knots, below, above, median, hi, lo = out
    n_odd = _refit_kernel(
        asc,
        n,
        layout.inv,
        layout.k_pos,
        layout.k,
        layout.quartiles,
        layout.lowest,
        layout.weights,
        rows,
        min_scale,
        float(caution),
        knots,
        below,
        above,
        median,
        hi,
        lo,
        odd,
    )
    return np.flatnonzero(odd).tolist() if n_odd else []


@_jit
def _tail_log_sf(tail: FloatArray, r: int, v: float) -> float:
    """``Tail.log_sf(v)`` of row ``r`` of a ``(4, nodes)`` tail."""
    log_pu: float = tail[3, r]
    return _gpd_log_sf(v - tail[0, r], tail[1, r], tail[2, r]) + log_pu


@_jit
def _log_tails_kernel(
    values: FloatArray,
    rows: IntArray,
    knots: FloatArray,
    below: FloatArray,
    above: FloatArray,
    hi_tail: FloatArray,
    lo_tail: FloatArray,
    fitted: I64Array,
    out_lo: FloatArray,
    out_hi: FloatArray,
    as_score: bool,
) -> None:
    """See :func:`log_tails`; with ``as_score``, ``out_lo`` receives the IT scores
    (``two_sided_score``'s floats: numpy's NaN-propagating minimum and maximum) and
    ``out_hi`` nothing."""
    n_knots = knots.shape[1]
    for c in range(values.shape[1]):
        r = rows[c]
        kn = knots[r]
        fresh = fitted[r] == 0
        for b in range(values.shape[0]):
            v = values[b, c]
            if fresh:  # never fitted: probability 1 on both sides
                out_lo[b, c] = 0.0
                if not as_score:
                    out_hi[b, c] = 0.0
                continue
            j = 0  # the first knot >= v
            for t in range(n_knots):
                j += kn[t] < v
            up = min(j, n_knots - 1)
            down = max(j - 1, 0)
            k_hi = kn[up]
            k_lo = kn[down]
            eq = j < n_knots and k_hi == v
            if eq:
                cdf = 0.5 * (below[r, up] + above[r, up])
            else:  # strictly between knots: from P(X <= lower knot) to P(X < upper knot)
                a = above[r, down]
                span = k_hi - k_lo
                w = (v - k_lo) / span if span > 0 else 0.5
                cdf = a + w * (below[r, up] - a)
            cdf = _nan_min(_nan_max(cdf, 1e-300), 1.0)
            log_lo = math.log(cdf)
            log_hi = math.log(_nan_min(_nan_max(1.0 - cdf, 1e-300), 1.0))
            if j >= n_knots and not eq:
                log_hi = _tail_log_sf(hi_tail, r, v)
                log_lo = math.log1p(-_nan_min(math.exp(log_hi), 0.5))
            if j == 0 and not eq:
                log_lo = _tail_log_sf(lo_tail, r, -v)
                log_hi = math.log1p(-_nan_min(math.exp(log_lo), 0.5))
            if as_score:
                # numpy's minimum and maximum: a NaN wins, and of two equal the second
                least = log_lo if log_lo < log_hi or log_lo != log_lo else log_hi
                score = -(_LOG2 + least)
                out_lo[b, c] = 0.0 if score < 0.0 else score
                continue
            out_lo[b, c] = log_lo
            out_hi[b, c] = log_hi


TailModels = tuple[FloatArray, FloatArray, FloatArray, tuple[FloatArray, FloatArray], I64Array]
"""A noise bank's fitted models as the readers take them: ``(knots, below, above, (hi, lo),
fitted_count)``."""


def log_tails(
    values: FloatArray, rows: IntArray, models: TailModels
) -> tuple[FloatArray, FloatArray]:
    """``log P(N <= v)`` and ``log P(N >= v)`` of ``values`` ``(B, len(rows))`` under the
    bank's models of ``rows`` (see :meth:`~stream_rca.core.noise.NoiseBank.log_tails`)."""
    knots, below, above, tails, fitted = models
    out_lo = np.empty(values.shape)
    out_hi = np.empty(values.shape)
    _log_tails_kernel(values, rows, knots, below, above, *tails, fitted, out_lo, out_hi, False)
    return out_lo, out_hi


def tail_scores(values: FloatArray, rows: IntArray, models: TailModels) -> FloatArray:
    """The IT scores ``-log(2 min(P(N <= v), P(N >= v)))`` (at least 0) of ``values``
    ``(B, len(rows))``: :func:`log_tails` and ``two_sided_score`` in one loop, the same
    floats (see :meth:`~stream_rca.core.noise.NoiseBank.score`)."""
    knots, below, above, tails, fitted = models
    out = np.empty(values.shape)
    _log_tails_kernel(values, rows, knots, below, above, *tails, fitted, out, out, True)
    return out


@_jit
def _mix64(z: np.uint64) -> np.uint64:
    """SplitMix64's finaliser (see :func:`stream_rca.core.noise._mix64`)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@_jit
def _place_kernel(
    values: FloatArray,
    mask: BoolArray,
    count: I64Array,
    salt: np.uint64,
    samples: FloatArray,
    step: IntArray,
    rows: IntArray,
    slots: IntArray,
) -> int:
    capacity = samples.shape[1]
    seen = np.zeros(count.size, dtype=np.int64)
    t = 0
    for b in range(values.shape[0]):
        for r in range(values.shape[1]):
            if not mask[b, r]:
                continue
            position = count[r] + seen[r]  # the value's index in its row's stream
            seen[r] += 1
            if position < capacity:
                slot = position
            else:  # arithmetic modulo 2**64, all in unsigned integers
                key = (
                    salt * np.uint64(0x9E3779B97F4A7C15)
                    + np.uint64(r) * np.uint64(0xD1B54A32D192ED03)
                    + np.uint64(position)
                )
                slot = np.int64(_mix64(key) % np.uint64(capacity))
            samples[r, slot] = values[b, r]  # block order: a later value wins a slot
            step[t] = b
            rows[t] = r
            slots[t] = slot
            t += 1
    for r in range(count.size):
        count[r] += seen[r]
    return t


def place(
    values: FloatArray,
    mask: BoolArray,
    count: I64Array,
    seed: int,
    samples: FloatArray,
) -> tuple[IntArray, IntArray, IntArray]:
    """Put a block ``values`` ``(B, rows)``, in row order wherever ``mask``, into the
    reservoirs ``samples`` ``(rows, capacity)`` holding ``count`` values each so far (updated):
    free slots first, then the slot a hash of the row and the value's position picks (see
    :meth:`~stream_rca.core.noise.NoiseBank.learn_many`). Returns ``(step, row, slot)`` of
    every value, in block order."""
    n = int(np.count_nonzero(mask))
    step = np.empty(n, dtype=np.intp)
    rows = np.empty(n, dtype=np.intp)
    slots = np.empty(n, dtype=np.intp)
    _place_kernel(values, mask, count, np.uint64(seed % 2**64), samples, step, rows, slots)
    return step, rows, slots


@_jit
def _hold_kernel(
    x: FloatArray,
    step: IntArray,
    rows: IntArray,
    slots: IntArray,
    rank: IntArray,
    degree: IntArray,
    offsets: IntArray,
    sources: IntArray,
    held_y: FloatArray,
    held_x: FloatArray,
) -> None:
    for t in range(step.size):
        r = rank[rows[t]]
        if r < 0:  # no linear mechanism: nothing to keep
            continue
        b = step[t]
        slot = slots[t]
        held_y[r, slot] = x[b, rows[t]]
        for k in range(degree[r]):
            edge = offsets[k] + r
            held_x[edge, slot] = x[b, sources[edge]]


def hold(
    x: FloatArray,
    placed: tuple[IntArray, IntArray, IntArray],
    layout: tuple[IntArray, IntArray, IntArray, IntArray],
    held_y: FloatArray,
    held_x: FloatArray,
) -> None:
    """Beside each residual :func:`place` put (``placed``), keep the snapshot's value of its
    node (``held_y[rank, slot]``) and of each parent (``held_x[edge, slot]``); ``layout`` is
    ``(rank, degree, offsets, sources)`` of the linear mechanisms (see
    :class:`~stream_rca.core.linear.LinearBank`), in order of the values (a later one wins)."""
    step, rows, slots = placed
    rank, degree, offsets, sources = layout
    _hold_kernel(x, step, rows, slots, rank, degree, offsets, sources, held_y, held_x)


# -- the linear mechanisms ------------------------------------------------------------------


@_jit
def _learn_linear_kernel(
    x: FloatArray,
    mask: BoolArray,
    members: IntArray,
    parents: IntArray,
    gamma: float,
    w: FloatArray,
    mx: FloatArray,
    my: FloatArray,
    sxx: FloatArray,
    sxy: FloatArray,
    syy: FloatArray,
) -> None:
    """See :func:`learn_linear`."""
    n_rows, n_nodes = x.shape
    width = parents.shape[1]
    c = np.empty(n_rows)
    mxb = np.empty(width)
    dmx = np.empty(width)
    dx = np.empty(width)
    sxx_b = np.empty((width, width))
    sxy_b = np.empty(width)
    for r in range(members.size):
        j = members[r]
        learned = 0
        for b in range(n_rows):
            learned += mask[b, j]
        if learned == 0:
            continue
        # each learned row's weight: gamma ** (the rows the node learns after it)
        seen = 0
        wb = 0.0
        myb = 0.0
        mxb[:] = 0.0
        for b in range(n_rows):
            if not mask[b, j]:
                continue
            seen += 1
            cb = gamma ** float(learned - seen)
            c[b] = cb
            wb += cb
            myb += cb * x[b, j]
            for t in range(width):
                p = parents[r, t]
                if p < n_nodes:  # padding reads the constant 0
                    mxb[t] += cb * x[b, p]
        for t in range(width):
            mxb[t] /= wb
        myb /= wb
        # the block's centred moments
        sxx_b[:, :] = 0.0
        sxy_b[:] = 0.0
        syy_b = 0.0
        for b in range(n_rows):
            if not mask[b, j]:
                continue
            cb = c[b]
            dy = x[b, j] - myb
            for t in range(width):
                p = parents[r, t]
                dx[t] = (x[b, p] if p < n_nodes else 0.0) - mxb[t]
            for t in range(width):
                cdx = cb * dx[t]
                sxy_b[t] += cdx * dy
                for s in range(width):
                    sxx_b[t, s] += cdx * dx[s]
            syy_b += cb * dy * dy
        # merged into the decayed moments (Chan et al.'s parallel update)
        decay = gamma ** float(learned)
        w0 = w[r] * decay
        wn = w0 + wb
        dmy = myb - my[r]
        f = w0 * wb / wn
        share = wb / wn
        for t in range(width):
            dmx[t] = mxb[t] - mx[r, t]
            mx[r, t] += dmx[t] * share
        my[r] += dmy * wb / wn
        for t in range(width):
            for s in range(width):
                sxx[r, t, s] = decay * sxx[r, t, s] + sxx_b[t, s] + f * dmx[t] * dmx[s]
            sxy[r, t] = decay * sxy[r, t] + sxy_b[t] + f * dmx[t] * dmy
        syy[r] = decay * syy[r] + syy_b + f * dmy * dmy
        w[r] = wn


def learn_linear(
    x: FloatArray,
    mask: BoolArray,
    members: IntArray,
    parents: IntArray,
    gamma: float,
    stats: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray],
) -> None:
    """Learn a block of snapshots ``x`` ``(B, nodes)``, in row order where ``mask``, into the
    exponentially weighted moments of the linear mechanisms of ``members`` (parents
    ``parents``, padded with ``nodes``, which reads 0).

    ``stats`` is ``(w, mx, my, sxx, sxy, syy)``, updated in place: the block's weighted means
    and centred moments, merged into the decayed ones (Chan et al.'s parallel update; the
    weights are ``gamma ** (rows learned after)``), one node at a time.
    """
    w, mx, my, sxx, sxy, syy = stats
    _learn_linear_kernel(x, mask, members, parents, float(gamma), w, mx, my, sxx, sxy, syy)


@_jit
def _prediction(
    parents: FloatArray,
    s: int,
    r: int,
    coef: FloatArray,
    mx: FloatArray,
    my: FloatArray,
    offsets: IntArray,
    degree: IntArray,
) -> float:
    """The prediction of the node of rank ``r`` from column ``s`` of its parents' values laid
    out by edge row: ``my + sum_k (x_k - mx_k) * coef_k``, the terms added in parent order
    (the one formula of :func:`predict_ranked` and :func:`refresh_ranked`)."""
    pred: float = my[r]
    for k in range(degree[r]):
        row = offsets[k] + r
        pred += (parents[row, s] - mx[row]) * coef[row]
    return pred


@_jit
def _predict_ranked_kernel(
    parents: FloatArray,
    coef: FloatArray,
    mx: FloatArray,
    my: FloatArray,
    offsets: IntArray,
    degree: IntArray,
    out: FloatArray,
) -> None:
    for r in range(out.shape[0]):
        o = out[r]
        for s in range(o.shape[0]):
            o[s] = _prediction(parents, s, r, coef, mx, my, offsets, degree)


def predict_ranked(
    parents: FloatArray,
    coef: FloatArray,
    mx: FloatArray,
    my: FloatArray,
    offsets: IntArray,
    degree: IntArray,
    out: FloatArray,
) -> None:
    """``out[r] = my[r] + sum_k (parents[offsets[k] + r] - mx[.]) * coef[.]`` over the
    ``degree[r]`` parents of each ranked node, the terms added in parent order (see
    :meth:`~stream_rca.core.linear.LinearBank.predict_rows`)."""
    _predict_ranked_kernel(parents, coef, mx, my, offsets, degree, out)


@_jit
def _refresh_kernel(
    held_x: FloatArray,
    held_y: FloatArray,
    coef: FloatArray,
    mx: FloatArray,
    my: FloatArray,
    offsets: IntArray,
    degree: IntArray,
    ranked: IntArray,
    filled: IntArray,
    samples: FloatArray,
) -> None:
    for r in range(ranked.size):
        out = samples[ranked[r]]
        y = held_y[r]
        for s in range(filled[r]):
            out[s] = y[s] - _prediction(held_x, s, r, coef, mx, my, offsets, degree)


def refresh_ranked(
    held: tuple[FloatArray, FloatArray],
    stats: tuple[FloatArray, FloatArray, FloatArray],
    layout: tuple[IntArray, IntArray, IntArray],
    filled: IntArray,
    samples: FloatArray,
) -> None:
    """Recompute the residuals held for the ranked nodes from the values kept beside them.

    ``held`` is ``(held_x, held_y)`` (parents' values by edge row, the nodes' own by rank),
    ``stats`` ``(coef, mx, my)`` and ``layout`` ``(offsets, degree, ranked)``: the first
    ``filled[r]`` slots of row ``ranked[r]`` of ``samples`` become ``held_y - prediction``,
    the prediction's terms added in parent order: the floats of :func:`predict_ranked`
    subtracted from the node's values, without the block of predictions in between.
    """
    offsets, degree, ranked = layout
    _refresh_kernel(*held, *stats, offsets, degree, ranked, filled, samples)


@_jit
def _pivot(a: FloatArray, col: int, k: int) -> int:
    """The row at or below ``col`` (of the first ``k``) with the largest ``|a[row, col]|``."""
    pivot = col
    for i in range(col + 1, k):
        if abs(a[i, col]) > abs(a[pivot, col]):
            pivot = i
    return pivot


@_jit
def _ridge_solve_kernel(sxx: FloatArray, sxy: FloatArray, ridge: float, coef: FloatArray) -> None:
    g, k, _ = sxx.shape
    a = np.empty((k, k))
    c = np.empty(k)
    for m in range(g):
        scale = 0.0
        for i in range(k):
            scale += sxx[m, i, i]
        scale = scale / k + 1e-300
        for i in range(k):
            for j in range(k):
                a[i, j] = sxx[m, i, j]
            a[i, i] += ridge * sxx[m, i, i] + 1e-10 * scale
            c[i] = sxy[m, i]
        # Gaussian elimination with partial pivoting (as LAPACK's gesv), then back substitution
        for col in range(k):
            pivot = _pivot(a, col, k)
            if pivot != col:
                for j in range(k):
                    a[col, j], a[pivot, j] = a[pivot, j], a[col, j]
                c[col], c[pivot] = c[pivot], c[col]
            for i in range(col + 1, k):
                f = a[i, col] / a[col, col]
                for j in range(col + 1, k):
                    a[i, j] -= f * a[col, j]
                c[i] -= f * c[col]
        for i in range(k - 1, -1, -1):
            v = c[i]
            for j in range(i + 1, k):
                v -= a[i, j] * coef[m, j]
            coef[m, i] = v / a[i, i]


def ridge_solve(sxx: FloatArray, sxy: FloatArray, ridge: float) -> FloatArray:
    """Per row of ``(g, k, k)`` scatter matrices and ``(g, k)`` cross products, the
    coefficients of the standardised ridge regression: ``(sxx + ridge diag(sxx) + 1e-10
    mean(diag(sxx)) I) coef = sxy`` (see :meth:`~stream_rca.core.linear.LinearBank._solve`),
    by Gaussian elimination with partial pivoting."""
    coef = np.empty(sxy.shape)
    _ridge_solve_kernel(sxx, sxy, float(ridge), coef)
    return coef


@_jit
def _spread_kernel(
    x: FloatArray,
    members: IntArray,
    parents: IntArray,
    k: IntArray,
    mx: FloatArray,
    inv: FloatArray,
    base: FloatArray,
    gain: FloatArray,
    least: float,
    out: FloatArray,
) -> None:
    n_rows = x.shape[0]
    dev = np.empty(parents.shape[1])
    for r in range(members.size):
        j = members[r]
        kr = k[r]
        for b in range(n_rows):
            for a in range(kr):
                dev[a] = x[b, parents[r, a]] - mx[r, a]
            quad = 0.0
            for a in range(kr):
                row = 0.0
                for c in range(kr):
                    row += inv[r, a, c] * dev[c]
                quad += dev[a] * row
            h = base[r] + gain[r] * quad
            out[b, j] = np.sqrt(1.0 + h) if h > least else 1.0


def spread_rows(
    x: FloatArray,
    group: tuple[IntArray, IntArray, IntArray, FloatArray],
    terms: tuple[FloatArray, FloatArray, FloatArray],
    least: float,
    out: FloatArray,
) -> None:
    """For a group ``(members, parents, k, mx)`` and its ``terms`` ``(inv, base, gain)``:
    ``out[b, members[r]] = sqrt(1 + h)``, ``h = base[r] + gain[r] * d' inv[r] d`` with ``d``
    the deviation of row ``b``'s first ``k[r]`` parents (``parents[r]``) from their means
    ``mx[r]`` (see :meth:`~stream_rca.core.linear.LinearBank.spread`); 1 where ``h`` is at most
    ``least`` (or NaN)."""
    _spread_kernel(x, *group, *terms, least, out)


@_jit
def _spread_stats_kernel(
    sxx: FloatArray,
    k: IntArray,
    w: FloatArray,
    ridge: float,
    lam: float,
    inv: FloatArray,
    base: FloatArray,
    gain: FloatArray,
) -> None:
    g, width, _ = sxx.shape
    a = np.empty((width, width))
    e = np.empty((width, width))
    live = np.empty(width, dtype=np.bool_)
    for m in range(g):
        kr = k[m]
        scale = 0.0
        for i in range(width):
            scale += sxx[m, i, i]
        scale = scale / width + 1e-300
        for i in range(kr):
            live[i] = sxx[m, i, i] > 1e-9 * scale
        # the solve's matrix on the live parents (identity on the others), inverted by
        # Gauss-Jordan elimination with partial pivoting
        for i in range(kr):
            for j in range(kr):
                a[i, j] = sxx[m, i, j] if live[i] and live[j] else 0.0
                e[i, j] = 0.0
            if live[i]:
                a[i, i] += ridge * sxx[m, i, i] + 1e-10 * scale
            else:
                a[i, i] = 1.0
            e[i, i] = 1.0
        for col in range(kr):
            pivot = _pivot(a, col, kr)
            if pivot != col:
                for j in range(kr):
                    a[col, j], a[pivot, j] = a[pivot, j], a[col, j]
                    e[col, j], e[pivot, j] = e[pivot, j], e[col, j]
            d = a[col, col]
            for j in range(kr):
                a[col, j] /= d
                e[col, j] /= d
            for i in range(kr):
                if i != col:
                    f = a[i, col]
                    if f != 0.0:
                        for j in range(kr):
                            a[i, j] -= f * a[col, j]
                            e[i, j] -= f * e[col, j]
        for i in range(width):
            for j in range(width):
                inv[m, i, j] = e[i, j] if i < kr and j < kr and live[i] and live[j] else 0.0
        wm = w[m]
        sq = wm if lam == 0.0 else (1.0 - (1.0 - lam * wm) ** 2) / (1.0 - (1.0 - lam) ** 2)
        n_eff = wm * wm / sq if sq > 0.0 else 0.0
        base[m] = 1.0 / n_eff if n_eff > 0.0 else 0.0
        gain[m] = wm * base[m]


def spread_stats(
    sxx: FloatArray, k: IntArray, w: FloatArray, ridge: float, forgetting: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per member of a group: the inverse of its ridge scatter matrix over the parents that
    varied (zero rows and columns for the others and the padding), and the terms of ``h =
    base + gain * d' inv d``: ``base = 1 / n_eff``, ``gain = w / n_eff``, ``n_eff = w^2 / sum
    of squared weights`` under the forgetting factor (see
    :meth:`~stream_rca.core.linear.LinearBank.spread`)."""
    g, width, _ = sxx.shape
    inv = np.empty((g, width, width))
    base = np.empty(g)
    gain = np.empty(g)
    _spread_stats_kernel(sxx, k, w, float(ridge), float(forgetting), inv, base, gain)
    return inv, base, gain


@_jit
def _learn_counts_kernel(
    x: FloatArray,
    learn: BoolArray,
    noise_learn: BoolArray,
    min_fit: IntArray,
    has_parents: BoolArray,
    floor: float,
    fitted: I64Array,
    abs_sum: FloatArray,
    abs_n: FloatArray,
    held: BoolArray,
    block_sum: FloatArray,
    summed: bool,
    min_scale: FloatArray,
) -> None:
    """See :func:`learn_counts`."""
    rows, n = learn.shape
    for j in range(n):
        f = fitted[j]
        c = 0
        total = 0.0
        for b in range(rows):
            # a residual counts once its mechanism has learned enough, row by row
            held[b, j] = noise_learn[b, j] and (f >= min_fit[j] or not has_parents[j])
            if learn[b, j]:
                f += 1
                c += 1
                if not summed:
                    total += abs(x[b, j])
        fitted[j] = f
        abs_sum[j] += block_sum[j] if summed else total
        abs_n[j] += c
        scale = floor * (abs_sum[j] / max(abs_n[j], 1.0))
        min_scale[j] = scale if scale > 1e-12 or scale != scale else 1e-12


def learn_counts(
    x: FloatArray,
    learn: BoolArray,
    noise_learn: BoolArray,
    counts: tuple[IntArray, BoolArray, float],
    state: tuple[I64Array, FloatArray, FloatArray],
) -> tuple[BoolArray, FloatArray]:
    """The bookkeeping of a learning step of ``(B, nodes)`` snapshots, in one loop.

    ``counts`` is ``(min_fit, has_parents, floor)`` and ``state`` ``(fitted, abs_sum,
    abs_n)``, updated in place: ``fitted`` and ``abs_n`` grow by the snapshots each node
    learns, ``abs_sum`` by their absolute values. Returns where a residual enters its noise
    model (``noise_learn`` where the node's mechanism had learned ``min_fit`` snapshots
    before that row, or has no parents) and the new floors of the tail scales (``floor``
    times each node's mean magnitude, at least 1e-12). The floats of the numpy expressions
    they stand for (see :meth:`~stream_rca.core.models.GraphModels.learn`): a block's
    absolute values are added in row order, as numpy sums down the rows of a block of
    several columns; numpy sums one contiguous column pairwise, so its own sum is taken there.
    """
    min_fit, has_parents, floor = counts
    fitted, abs_sum, abs_n = state
    held = np.empty(learn.shape, dtype=np.bool_)
    min_scale = np.empty(learn.shape[1])
    summed = learn.shape[1] == 1
    # (with more columns, the kernel adds them itself and reads no block_sum)
    block_sum = np.where(learn, np.abs(x), 0.0).sum(axis=0) if summed else min_scale
    _learn_counts_kernel(
        np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(learn, dtype=np.bool_),
        np.ascontiguousarray(noise_learn, dtype=np.bool_), min_fit, has_parents, float(floor),
        fitted, abs_sum, abs_n, held, block_sum, summed, min_scale,
    )  # fmt: skip
    return held, min_scale


@_jit
def _score_masks_kernel(
    present: BoolArray,
    ok: BoolArray,
    raw: FloatArray,
    t_raw: FloatArray,
    target_idx: IntArray,
    active: BoolArray,
    warm_nodes: BoolArray,
    t_warm: BoolArray,
    protect: float,
    protect_noise: float,
    node_scores: FloatArray,
    t_scores: FloatArray,
    learn: BoolArray,
    noise_learn: BoolArray,
    t_learn: BoolArray,
) -> None:
    """See :func:`score_masks`."""
    rows, n = present.shape
    for b in range(rows):
        for j in range(n):
            has = present[b, j]
            s = raw[b, j] if has and warm_nodes[j] and active[j] else np.nan
            node_scores[b, j] = s
            may = has and active[j] and (ok.shape[0] == 0 or ok[b, j])
            learn[b, j] = may and not s >= protect
            noise_learn[b, j] = may and not s >= protect_noise
        for i in range(target_idx.size):
            has = present[b, target_idx[i]]
            s = t_raw[b, i] if has and t_warm[i] else np.nan
            t_scores[b, i] = s
            t_learn[b, i] = has and not s >= protect_noise


def score_masks(
    present: BoolArray,
    ok: BoolArray,
    scores: tuple[FloatArray, FloatArray],
    nodes: tuple[IntArray, BoolArray, BoolArray, BoolArray],
    protect: tuple[float, float],
) -> tuple[FloatArray, FloatArray, BoolArray, BoolArray, BoolArray]:
    """What a scored piece ``(B, nodes)`` keeps of its scores, and what it may learn from.

    ``scores`` are the raw scores of every node and target, ``nodes`` ``(target_idx, active,
    warm_nodes, t_warm)`` and ``protect`` ``(protect, protect_noise)``; ``ok`` is ``(B,
    nodes)``, where a row missing values has enough parents present to learn, or ``(0,
    nodes)`` when no row misses any. Returns ``(node_scores, t_scores, learn, noise_learn,
    t_learn)``: a node's score where it is present, warm and active (NaN
    elsewhere); a target's where present and its marginal warm; the mechanisms learn a
    present, active node (with its parents) scoring below ``protect``, the noise models one
    below ``protect_noise``, the marginals a present target below ``protect_noise`` (no
    score counts as calm). One loop for the elementwise expressions of
    :meth:`~stream_rca.core.engine.Engine._score` (booleans and selections: the same values).
    """
    raw, t_raw = scores
    target_idx, active, warm_nodes, t_warm = nodes
    node_scores = np.empty(raw.shape)
    t_scores = np.empty(t_raw.shape)
    learn = np.empty(raw.shape, dtype=np.bool_)
    noise_learn = np.empty(raw.shape, dtype=np.bool_)
    t_learn = np.empty(t_raw.shape, dtype=np.bool_)
    _score_masks_kernel(
        present, ok, raw, t_raw, target_idx, active, warm_nodes, t_warm, float(protect[0]),
        float(protect[1]), node_scores, t_scores, learn, noise_learn, t_learn,
    )  # fmt: skip
    return node_scores, t_scores, learn, noise_learn, t_learn

"""The event probability of the target under every coalition at once, for exact Shapley values.

With linear mechanisms, the target's value under coalition ``T`` (the players whose noises are
fixed at their observed values) is ``marginal + sum over i in T of gap[:, i]`` in every draw.
:func:`coalition_event_logs` evaluates ``log P(X >= hi or X <= lo)`` for all ``2**d``
coalitions, over the whole draw and over each of ``groups`` equal blocks of it (whose spread
estimates the Monte Carlo error): the numbers of
:func:`~stream_rca.core.noise.log_event_groups` on the float32 coalition values, computed
with fewer passes over them.

The coalition values are built and sorted a chunk of coalitions at a time (the whole
``2**d * S`` float32 array, 4 MB at 11 players and 512 draws, never exists); after the sort of
its blocks a chunk leaves only each block's ``k + 1`` most extreme values on either side, in
one compact array, and the few blocks where a bound lies inside the body: every count and
every tail comes from those. The lower
side is kept negated (``-v``, the largest first, as the upper side), so that both sides are one
array and every step runs once for both: ``v <= lo`` is ``-v >= -lo``, and the excesses of the
negated values are the same floats (IEEE negation is exact and rounding is symmetric).
"""

from __future__ import annotations

import concurrent.futures
import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stream_rca.core.noise import (
    _beyond_tied,
    _event_k,
    _mid_rank_log,
    _rank_sorted,
    _row_sums,
)
from stream_rca.core.tails import fit_excess_log_sf

__all__ = ["coalition_event_logs"]

_CHUNK_PLAYERS = 9
"""Coalitions per chunk: ``2**9``, a megabyte of values at 512 draws (with the low coalitions,
about one core's cache here; 8 and 10 measured slower)."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
F32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


def coalition_event_logs(
    gap: FloatArray,
    marginal: FloatArray,
    hi: float,
    lo: float,
    groups: int,
    tail_fraction: float = 0.05,
    min_tail: int = 10,
    min_scale: float = 0.0,
    pool: concurrent.futures.Executor | None = None,
) -> tuple[FloatArray, FloatArray]:
    """``log P(X >= hi or X <= lo)`` of every coalition, whole and per block of draws.

    Parameters
    ----------
    gap
        ``(S, d)``: what fixing player ``i`` adds to the target in each draw.
    marginal
        ``(S,)``: the target in each draw with no player fixed (coalition 0).
    hi, lo
        The event's bounds (``lo < hi``).
    groups
        Equal blocks of draws (the last ``S % groups`` draws take no part).
    pool
        An executor for half of the chunks of coalitions and the rows' sort (a second core:
        numpy's sorts and adds release the GIL); the same floats as without.

    Returns
    -------
    whole, parts
        ``(2**d,)`` and ``(groups, 2**d)``; coalition ``c`` holds player ``p`` iff bit ``p``
        of ``c`` is set. The coalition values are float32 sums built by doubling (coalition
        ``2**p + c`` is coalition ``c`` plus player ``p``), the numbers those of
        :func:`~stream_rca.core.noise.log_event_groups` on them.

    Examples
    --------
    >>> import numpy as np
    >>> from stream_rca.core.noise import log_event_groups
    >>> rng = np.random.default_rng(0)
    >>> gap, marginal = rng.normal(size=(400, 3)), rng.normal(size=400)
    >>> whole, parts = coalition_event_logs(gap, marginal, 2.0, -2.0, 4)
    >>> values = np.empty((8, 400), dtype=np.float32)
    >>> values[0] = marginal
    >>> for p in range(3):
    ...     values[2**p : 2 ** (p + 1)] = values[: 2**p] + gap[:, p].astype(np.float32)
    >>> w, g = log_event_groups(values, 2.0, -2.0, 4)
    >>> bool(np.array_equal(whole, w)), bool(np.allclose(parts, g, rtol=1e-12, atol=1e-12))
    (True, True)
    """
    size, d = gap.shape
    m = size // groups
    n = 1 << d
    k = _event_k(groups * m, tail_fraction, min_tail)
    kb = _event_k(m, tail_fraction, min_tail)
    if k + 1 > m:
        raise ValueError(f"blocks of {m} values are too small for tails of {k} values")
    used = groups * m
    w = k + 1  # extremes kept per block: a row's tail needs k + 1, a block's kb + 1 <= k + 1
    # Each player's gaps as one contiguous float32 row (a column of ``gap`` is strided, which
    # makes every add several times slower); the same floats as ``gap`` cast.
    gap32 = np.empty((d, used), dtype=np.float32)
    gap32[...] = gap[:used].T
    bounds = np.array([hi, lo], dtype=np.float32)
    nb = n * groups
    ext = np.empty((2, nb, w), dtype=np.float32)  # every block's extremes, see below
    up = np.array([bounds[0], -bounds[1]], dtype=np.float32)  # the bounds as upper ones
    calm = min(kb, k // groups)
    deep_blocks: tuple[list[IntArray], list[IntArray]] = ([], [])
    deep_values: tuple[list[F32Array], list[F32Array]] = ([], [])
    # The coalitions a chunk at a time, small enough to stay in the processor's cache from
    # their sums to their counts: a chunk holds the coalitions of one set of the high players,
    # each the sum of a low coalition (built once, by doubling) and of those players' gaps,
    # added in the doubling's order (the lowest player first), so the same float32 sums.
    low = min(d, _CHUNK_PLAYERS)
    size_c = 1 << low
    base = np.empty((size_c, used), dtype=np.float32)
    base[0] = marginal[:used]
    for p in range(low):
        np.add(base[: 1 << p], gap32[p], out=base[1 << p : 2 << p])
    chunks = range(n >> low)
    args = (base, gap32, ext, up, groups, m, w, low, d)
    pool = pool if len(chunks) > 1 else None
    if pool is None:
        passes = _chunk_pass(chunks, *args)
    else:  # half of the chunks on the other core (the sorts and adds release the GIL)
        half = len(chunks) // 2
        other = pool.submit(_chunk_pass, chunks[half:], *args)
        passes = _chunk_pass(chunks[:half], *args) + other.result()
    for found in passes:  # in the chunks' order, as one pass would have listed them
        for side in (0, 1):
            deep_at, values = found[side]
            if deep_at.size:
                deep_blocks[side].append(deep_at)
                deep_values[side].append(values)
    # the rows' extremes sorted (for their tails, _fit_rows) on the other core meanwhile
    ordered = None if pool is None else pool.submit(_sorted_rows, ext, groups)
    beyond, tied = _block_counts(ext, up, bounds, groups, calm, deep_blocks, deep_values)
    # as upper bounds: hi, and -lo for the negated values (xv: in the values' precision)
    x = np.array([hi, -lo])
    xv = np.array([float(bounds[0]), -float(bounds[1])])
    strict = x > xv  # a value equal to xv does not reach x (see noise._far)
    part = _mid_rank_log(beyond, tied, m)
    beyond_w = _row_sums(beyond.reshape(2 * n, groups)).reshape(2, n)
    tied_w = _row_sums(tied.reshape(2 * n, groups)).reshape(2, n)
    whole = _mid_rank_log(beyond_w, tied_w, used)
    far_blocks = _far_rows(beyond, tied, kb, strict)
    far_rows = _far_rows(beyond_w, tied_w, k, strict)
    _fit_blocks(part, far_blocks, ext, kb, x, m, min_scale)
    rows_sorted = None if ordered is None else ordered.result()
    _fit_rows(whole, far_rows, ext, groups, k, x, used, min_scale, rows_sorted)  # last
    out_whole: FloatArray = np.logaddexp(whole[0], whole[1])
    out_parts: FloatArray = np.logaddexp(part[0], part[1]).reshape(n, groups).T
    return out_whole, out_parts


_Deep = tuple[tuple[IntArray, F32Array], tuple[IntArray, F32Array]]


def _chunk_pass(
    chunks: range,
    base: F32Array,
    gap32: F32Array,
    ext: F32Array,
    up: F32Array,
    groups: int,
    m: int,
    w: int,
    low: int,
    d: int,
) -> list[_Deep]:
    """Build, sort and reduce the given chunks of coalitions (see :func:`coalition_event_logs`).

    Writes each chunk's block extremes into its rows of ``ext``; returns per chunk and side
    the deep blocks (all of whose extremes reach the bound: their indexes and sorted values).
    """
    size_c, used = base.shape
    chunk = np.empty((size_c, groups, m), dtype=np.float32)
    chunk_rows = chunk.reshape(size_c, used)
    out: list[_Deep] = []
    for h in chunks:
        high = [p for p in range(low, d) if (h << low) >> p & 1]
        if not high:
            np.copyto(chunk_rows, base)
        else:
            np.add(base, gap32[high[0]], out=chunk_rows)
            for p in high[1:]:
                chunk_rows += gap32[p]
        chunk.sort(axis=2)
        runs = chunk.reshape(size_c * groups, m)
        at = slice(h * size_c * groups, (h + 1) * size_c * groups)
        # every block's w most extreme values on each side, the most extreme first (lower:
        # negated); nothing reads the coalition values after this but the searches below
        np.copyto(ext[0, at], runs[:, : m - w - 1 : -1])
        np.negative(runs[:, :w], out=ext[1, at])
        # the blocks all of whose w extremes reach a bound: kept whole, to be counted in full
        reach = _reaching(ext[:, at, w - 1], up)
        deep_up, deep_low = (np.flatnonzero(found) for found in reach)
        out.append(
            (
                (deep_up + at.start, runs[deep_up]),
                (deep_low + at.start, runs[deep_low]),
            )
        )
    return out


def _reaching(v: F32Array, up: F32Array) -> BoolArray:
    """``(2, ...)``: whether the values of each side (the lower negated) reach its bound (the
    upper side: not below it, so that a NaN, sorted last and counted beyond, reaches it)."""
    out = np.empty(v.shape, dtype=np.bool_)
    np.less(v[0], up[0], out=out[0])
    np.logical_not(out[0], out=out[0])
    np.greater_equal(v[1], up[1], out=out[1])
    return out


def _block_counts(
    ext: F32Array,
    up: F32Array,
    bounds: F32Array,
    groups: int,
    calm: int,
    deep_blocks: tuple[list[IntArray], list[IntArray]],
    deep_values: tuple[list[F32Array], list[F32Array]],
) -> tuple[IntArray, IntArray]:
    """``(2, blocks)`` each: per block, the values beyond each bound (above ``bounds[0]``;
    below ``bounds[1]``) and the values equal to it.

    A row all of whose blocks have at most ``calm`` values reaching the bound (their
    ``calm + 1``-th most extreme does not) is far, and so is each of its blocks, when
    ``groups * calm`` and ``calm`` are at most the tail sizes: their counts would only be
    compared with those and are left 0. The others are counted among the blocks' extremes
    (``ext``), which hold every value reaching the bound unless all ``w`` do: those ("deep"
    blocks, the bound inside their body) are searched in ``deep_values``, their sorted values.
    """
    _, nb, w = ext.shape
    n = nb // groups
    beyond = np.zeros((2, nb), dtype=np.intp)
    tied = np.zeros((2, nb), dtype=np.intp)
    per_row = _reaching(ext[:, :, calm], up).reshape(2, n, groups)
    busy = per_row[:, :, 0].copy()
    for g in range(1, groups):
        busy |= per_row[:, :, g]
    ones = np.ones(w, dtype=np.float32)
    for side in (0, 1):
        rows = np.flatnonzero(busy[side])
        if not rows.size:
            continue
        blocks = (rows[:, None] * groups + np.arange(groups)).reshape(-1)
        sub = ext[side, blocks]  # (blocks, w), the most extreme first
        # (upper: not below hi, as in _reaching)
        hit = np.logical_not(np.less(sub, up[0])) if side == 0 else np.greater_equal(sub, up[1])
        # counts along the short rows as one matrix-vector product (exact: sums of ones)
        reach = (hit.astype(np.float32) @ ones).astype(np.intp)
        # values equal to the bound: where the least extreme value reaching it equals it
        last = sub.reshape(-1)[np.arange(0, sub.size, w) + np.maximum(reach - 1, 0)]
        holds = np.flatnonzero((reach > 0) & (last == up[side]))
        t = np.zeros_like(reach)
        if holds.size:
            t[holds] = np.count_nonzero(sub[holds] == up[side], axis=1)
        beyond[side, blocks] = reach - t
        tied[side, blocks] = t
    for side, upper in enumerate((True, False)):
        if deep_blocks[side]:
            deep = np.concatenate(deep_blocks[side])
            values = np.concatenate(deep_values[side])
            m = values.shape[1]
            flat = values.reshape(-1)
            at = np.arange(0, flat.size, m)
            left = _rank_sorted(flat, at, m, bounds[side], inclusive=False)
            beyond[side, deep], tied[side, deep] = _beyond_tied(
                flat, at, m, left, bounds[side], upper
            )
    return beyond, tied


def _far_rows(beyond: IntArray, tied: IntArray, k: int, strict: BoolArray) -> list[IntArray]:
    """Per side, where the bound lies beyond the threshold of a tail of ``k`` values: where
    at most ``k`` values reach it (the strictly beyond ones where ``strict``)."""
    return [np.flatnonzero((beyond[s] if strict[s] else beyond[s] + tied[s]) <= k) for s in (0, 1)]


def _fit_blocks(
    out: FloatArray,
    far: list[IntArray],
    ext: F32Array,
    kb: int,
    x: FloatArray,
    size: int,
    min_scale: float,
) -> None:
    """``out[side, far[side]]``: the fitted tails of the blocks beyond their threshold, from
    their ``kb + 1`` most extreme values (the first of ``ext``)."""
    pieces = []
    for side, rows in enumerate(far):
        if rows.size:
            src = ext[side, :, : kb + 1]
            taken = None if _take_all(rows.size, src.shape[0]) else rows
            pieces.append(_Piece(side, rows, taken, src if taken is None else src[taken]))
    _fit(out, pieces, kb, x, size, min_scale)


def _fit_rows(
    out: FloatArray,
    far: list[IntArray],
    ext: F32Array,
    groups: int,
    k: int,
    x: FloatArray,
    size: int,
    min_scale: float,
    ordered: F32Array | None = None,
) -> None:
    """``out[side, far[side]]``: the fitted tails of whole rows beyond their threshold.

    A row's ``k + 1`` most extreme values are among the ``k + 1`` most extreme of each of its
    blocks; a sort of those gives the row's (in place where all rows are read; ``ordered``:
    already sorted by :func:`_sorted_rows`). Where a NaN is among the lower side's, they are
    negated back before the sort, so that the NaN (sorted last) stays out of the smallest
    values, as in the plain construction.
    """
    nb, w = ext.shape[1:]
    n = nb // groups
    # a NaN among a block's smallest values (where all its w - 1 last are NaN)
    nan_low = bool(np.isnan(ext[1, :, w - 1]).any())
    pieces = []
    for side, rows in enumerate(far):
        if rows.size:
            taken = None if _take_all(rows.size, n) else rows
            presorted = None if side == 1 and nan_low else ordered
            src = ext[side].reshape(n, groups * w) if presorted is None else presorted[side]
            ends = src if taken is None else src[taken]
            if side == 1 and nan_low:  # from the unsorted values, negated back
                np.negative(ends, out=ends)
                ends.sort(axis=1)
                top = np.negative(ends[:, : k + 1])  # the k + 1 smallest, negated
            else:
                if presorted is None:
                    ends.sort(axis=1)
                top = ends[:, : -k - 2 : -1]  # the k + 1 largest, largest first
            pieces.append(_Piece(side, rows, taken, top))
    _fit(out, pieces, k, x, size, min_scale)


def _sorted_rows(ext: F32Array, groups: int) -> F32Array:
    """``(2, rows, groups * w)``: each side's row extremes (all its blocks'), sorted; the
    sort :func:`_fit_rows` makes, on a copy (``ext`` is read meanwhile)."""
    two, nb, w = ext.shape
    return np.sort(ext.reshape(two, nb // groups, groups * w), axis=2)


def _take_all(count: int, total: int) -> bool:
    """Fit every row where most are far (a slice costs less than a gather, and a few more
    rows in the fit less than picking)."""
    return 4 * count > 3 * total


@dataclass(frozen=True, slots=True)
class _Piece:
    """The rows of one side to fit."""

    side: int
    rows: IntArray
    """Where the results go in the side's output."""
    taken: IntArray | None
    """The rows read (``None``: all of them, the results at ``rows`` kept)."""
    extremes: F32Array
    """``(read rows, k + 1)``: their most extreme values, the most extreme first."""


def _fit(
    out: FloatArray,
    pieces: list[_Piece],
    k: int,
    x: FloatArray,
    size: int,
    min_scale: float,
) -> None:
    """``out[side, rows]``: the tails of every piece fitted in one fit, at the bound ``x``.

    The excesses over the threshold (the ``k + 1``-th value) are those of
    :func:`~stream_rca.core.noise.log_event_groups` in float64 (the lower side's as negated
    values), and the rows go into the fit in the same order, so that every float is the same.
    """
    if not pieces:
        return
    count = sum(p.extremes.shape[0] for p in pieces)
    excess = np.empty((count, k))
    u = np.empty(count)
    xs = np.empty(count)
    start = 0
    for p in pieces:
        r = p.extremes.shape[0]
        at = slice(start, start + r)
        # whole-array operations (a broadcast along the short rows runs an inner loop a row)
        u[at] = p.extremes[:, k]
        seg = excess[at]
        np.copyto(seg, p.extremes[:, :k])
        seg -= np.repeat(u[at], k).reshape(r, k)
        xs[at] = x[p.side]
        start += r
    fitted = _excess_log_sf(excess, u, xs, size, min_scale)
    start = 0
    for p in pieces:
        seg = fitted[start : start + p.extremes.shape[0]]
        out[p.side, p.rows] = seg if p.taken is not None else seg[p.rows]
        start += p.extremes.shape[0]


def _excess_log_sf(
    excess: FloatArray, u: FloatArray, x: FloatArray, size: int, min_scale: float
) -> FloatArray:
    """:func:`~stream_rca.core.noise._excess_log_sf` (the same floats), in fewer passes."""
    k = excess.shape[1]
    # log P(X > u): all k values are above the threshold, but where the least extreme sits on
    # it; read from a table of the k + 1 values (the floats np.log gives one by one)
    table = _log_above_table(k, size)
    on = np.flatnonzero(excess[:, -1] <= 0)
    log_pu = np.full(u.shape, table[k])
    if on.size:
        log_pu[on] = table[np.count_nonzero(excess[on] > 0, axis=1)]
    return fit_excess_log_sf(excess, u, log_pu, min_scale, x)


@functools.lru_cache(maxsize=16)
def _log_above_table(k: int, size: int) -> FloatArray:
    """``log((a + 0.5) / (size + 1))`` for ``a`` in ``0 .. k``."""
    out: FloatArray = np.log((np.arange(k + 1) + 0.5) / (size + 1.0))
    out.flags.writeable = False  # shared by every call (cached)
    return out

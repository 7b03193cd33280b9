"""The event probability of the target under every coalition at once, for exact Shapley values.

With linear mechanisms, the target's value under coalition ``T`` (the players whose noises are
fixed at their observed values) is ``marginal + sum over i in T of gap[:, i]`` in every draw.
:func:`coalition_event_logs` evaluates ``log P(X >= hi or X <= lo)`` for all ``2**d``
coalitions, over the whole draw and over each of ``groups`` equal blocks of it (whose spread
estimates the Monte Carlo error): the numbers of
:func:`~stream_rca.core.noise.log_event_groups` on the float32 coalition values, computed
with fewer passes over them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from stream_rca.core.noise import (
    _beyond_tied,
    _event_k,
    _excess_log_sf,
    _far,
    _mid_rank_log,
    _rank_sorted,
    _row_sums,
)

__all__ = ["coalition_event_logs"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
F32Array = npt.NDArray[np.float32]


def coalition_event_logs(
    gap: FloatArray,
    marginal: FloatArray,
    hi: float,
    lo: float,
    groups: int,
    tail_fraction: float = 0.05,
    min_tail: int = 10,
    min_scale: float = 0.0,
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
    # Each player's gaps as one contiguous float32 row (a column of ``gap`` is strided, which
    # makes every add several times slower); the same floats as ``gap`` cast.
    gap32 = np.empty((d, used), dtype=np.float32)
    gap32[...] = gap[:used].T
    values = np.empty((n, groups, m), dtype=np.float32)
    flat_rows = values.reshape(n, used)
    flat_rows[0] = marginal[:used]
    for p in range(d):
        np.add(flat_rows[: 1 << p], gap32[p], out=flat_rows[1 << p : 2 << p])
    values.sort(axis=2)
    flat = values.reshape(-1)
    runs = flat.reshape(-1, m)
    starts = np.arange(0, flat.size, m)
    bounds = np.array([hi, lo], dtype=np.float32)
    # per block: the values below each bound (blocks are sorted: binary searches, both at once)
    lefts = _rank_sorted(
        flat, np.tile(starts, 2), m, np.repeat(bounds, starts.size), inclusive=False
    ).reshape(2, -1)
    whole = np.empty((2, n))
    part = np.empty((2, n * groups))
    far_rows: list[IntArray] = []
    far_blocks: list[IntArray] = []
    for side, upper in enumerate((True, False)):
        x = hi if upper else lo
        beyond, tied = _beyond_tied(flat, starts, m, lefts[side], bounds[side], upper)
        part[side] = _mid_rank_log(beyond, tied, m)
        beyond_w = _row_sums(beyond.reshape(n, groups))
        tied_w = _row_sums(tied.reshape(n, groups))
        whole[side] = _mid_rank_log(beyond_w, tied_w, used)
        reach_w = beyond_w + tied_w
        far_rows.append(np.flatnonzero(_far(beyond_w, reach_w, k, x, bounds[side], upper)))
        far_blocks.append(np.flatnonzero(_far(beyond, beyond + tied, kb, x, bounds[side], upper)))
    _fit_rows(whole, far_rows, values, k, hi, lo, used, min_scale)
    _fit_blocks(part, far_blocks, runs, kb, hi, lo, m, min_scale)
    out_whole: FloatArray = np.logaddexp(whole[0], whole[1])
    out_parts: FloatArray = np.logaddexp(part[0], part[1]).reshape(n, groups).T
    return out_whole, out_parts


def _fit_rows(
    out: FloatArray,
    far: list[IntArray],
    values: F32Array,
    k: int,
    hi: float,
    lo: float,
    size: int,
    min_scale: float,
) -> None:
    """``out[side, far[side]]``: the fitted tails of whole rows beyond their threshold.

    A row's ``k + 1`` most extreme values are among the ``k + 1`` most extreme of each of its
    sorted blocks (``values`` is ``(rows, groups, m)``); a sort of those gives the row's.
    """
    n, _, m = values.shape

    def read(rows: IntArray | None, upper: bool) -> F32Array:
        cols = slice(m - k - 1, m) if upper else slice(0, k + 1)
        ends = values[:, :, cols] if rows is None else values[rows, :, cols]
        out = ends.reshape(ends.shape[0], -1)  # a new array either way (a gather or a copy)
        out.sort(axis=1)
        return out

    _fit_ends(out, far, n, read, k, hi, lo, size, min_scale)


def _fit_blocks(
    out: FloatArray,
    far: list[IntArray],
    runs: F32Array,
    kb: int,
    hi: float,
    lo: float,
    size: int,
    min_scale: float,
) -> None:
    """``out[side, far[side]]``: the fitted tails of the blocks (the sorted rows of ``runs``)
    beyond their threshold."""
    nb, m = runs.shape

    def read(rows: IntArray | None, upper: bool) -> F32Array:
        cols = slice(m - kb - 1, m) if upper else slice(0, kb + 1)
        return runs[:, cols] if rows is None else runs[rows, cols]

    _fit_ends(out, far, nb, read, kb, hi, lo, size, min_scale)


def _fit_ends(
    out: FloatArray,
    far: list[IntArray],
    total: int,
    read: Callable[[IntArray | None, bool], F32Array],
    k: int,
    hi: float,
    lo: float,
    size: int,
    min_scale: float,
) -> None:
    """Fit the tails of the ``far`` rows of each side (0: upper, 1: lower) in one fit.

    ``read(rows, upper)`` gives the rows' values sorted ascending, at least their ``k + 1``
    largest (upper) or smallest (lower); ``rows`` is ``None`` for all of them, read where most
    rows are far (a slice costs less than a gather, and a few more rows in the fit less than
    picking). The excesses are those of :func:`~stream_rca.core.noise.log_event_groups`, in
    float64: the upper ``v - u`` and the lower, as negated values, ``(-u) - v``.
    """
    pieces = []
    for side, rows in enumerate(far):
        if rows.size:
            taken = None if 4 * rows.size > 3 * total else rows
            pieces.append((side, rows, taken, read(taken, side == 0)))
    if not pieces:
        return
    count = sum(ends.shape[0] for _, _, _, ends in pieces)
    excess = np.empty((count, k))
    u = np.empty(count)
    x = np.empty(count)
    start = 0
    for side, _, _, ends in pieces:
        r, width = ends.shape
        at = slice(start, start + r)
        if side == 0:
            top = ends[:, width - k - 1 :].astype(np.float64)  # u, then the k largest
            u[at] = top[:, 0]
            np.subtract(top[:, :0:-1], top[:, :1], out=excess[at])
            x[at] = hi
        else:
            bottom = ends[:, : k + 1].astype(np.float64)  # the k smallest, then -u
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

"""The event probability of the target under every coalition at once, for exact Shapley values.

With linear mechanisms, the target's value under coalition ``T`` (the players whose noises are
fixed at their observed values) is ``marginal + sum over i in T of gap[:, i]`` in every draw.
:func:`coalition_event_logs` evaluates ``log P(X >= hi or X <= lo)`` for all ``2**d``
coalitions, over the whole draw and over each of ``groups`` equal blocks of it (whose spread
estimates the Monte Carlo error): the numbers of
:func:`~stream_rca.core.noise.log_event_groups` on the float32 coalition values.

The coalition values are built and sorted a chunk of coalitions at a time (the whole
``2**d * S`` float32 array, 4 MB at 11 players and 512 draws, never exists): numpy builds
them (one add per coalition) and sorts their blocks (a vectorised sort), and a compiled kernel
(:class:`~stream_rca.core.compiled.ChunkReducer`) reads each sorted block while it is in the
processor's cache: its counts beyond and on each bound (two binary searches), its tail where
the bound lies beyond its threshold, and the coalition's counts and tail (a merge of its
blocks' ends). Nothing of a chunk is kept but those numbers, so the chunks are independent:
with an executor, half of them run on a second core (the kernel runs without the GIL).
"""

from __future__ import annotations

import concurrent.futures
import functools

import numpy as np
import numpy.typing as npt

from stream_rca.core.compiled import ChunkReducer
from stream_rca.core.noise import _event_k, _mid_rank_table

__all__ = ["coalition_event_logs", "warm"]

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
        An executor for half of the chunks of coalitions (a second core: numpy's sorts and
        adds and the compiled kernel release the GIL); the same floats as without.

    Returns
    -------
    whole, parts
        ``(2**d,)`` and ``(groups, 2**d)``; coalition ``c`` holds player ``p`` iff bit ``p``
        of ``c`` is set. The coalition values are float32 sums built by doubling (coalition
        ``2**p + c`` is coalition ``c`` plus player ``p``); the numbers are those of
        :func:`~stream_rca.core.noise.log_event_groups` on them, to round-off (the kernel's
        tail fits sum their moments in another order), and the same floats with and without
        ``pool``.

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
    >>> bool(np.allclose(whole, w, rtol=1e-12)), bool(np.allclose(parts, g, rtol=1e-12))
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
    whole = np.empty(n)
    parts = np.empty((groups, n))
    tables = (
        _mid_rank_table(m),
        _mid_rank_table(used),
        _log_above_table(kb, m),
        _log_above_table(k, used),
    )
    reduce = ChunkReducer(hi, lo, groups, m, k, kb, min_scale, tables, whole, parts)
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
    # every coalition value is a chain of float32 additions: from finite terms it can
    # overflow to an infinity but never become NaN
    numbers = bool(np.isfinite(gap32).all() and np.isfinite(base[0]).all())
    args = (base, gap32, reduce, groups, m, low, d, numbers)
    if pool is None or len(chunks) < 2:
        _chunk_pass(chunks, *args)
    else:  # half of the chunks on the other core (the sorts, adds and kernel release the GIL)
        half = len(chunks) // 2
        other = pool.submit(_chunk_pass, chunks[half:], *args)
        _chunk_pass(chunks[:half], *args)
        other.result()
    return whole, parts


def _chunk_pass(
    chunks: range,
    base: F32Array,
    gap32: F32Array,
    reduce: ChunkReducer,
    groups: int,
    m: int,
    low: int,
    d: int,
    numbers: bool,
) -> None:
    """Build, sort and reduce the given chunks of coalitions (see :func:`coalition_event_logs`)."""
    size_c, used = base.shape
    chunk = np.empty((size_c, groups, m), dtype=np.float32)
    chunk_rows = chunk.reshape(size_c, used)
    for h in chunks:
        high = [p for p in range(low, d) if (h << low) >> p & 1]
        if not high:
            np.copyto(chunk_rows, base)
        else:
            np.add(base, gap32[high[0]], out=chunk_rows)
            for p in high[1:]:
                chunk_rows += gap32[p]
        chunk.sort(axis=2)
        reduce(chunk, h * size_c, numbers)


def warm() -> None:
    """Compile the kernels of :func:`coalition_event_logs` now (or load them from their cache:
    about 4 s the first time on a machine, half a second after), so that the first incident
    does not wait for it. Entry points call it once per process (see
    :func:`stream_rca.parallel.attribution_pool`)."""
    rng = np.random.default_rng(0)
    gap = rng.normal(size=(64, 2))
    coalition_event_logs(gap, rng.normal(size=64), 1.0, -1.0, 2)
    with np.errstate(invalid="ignore"):
        coalition_event_logs(gap, np.full(64, np.nan), 1.0, -1.0, 2)  # the merge of NaNs


@functools.lru_cache(maxsize=16)
def _log_above_table(k: int, size: int) -> FloatArray:
    """``log((a + 0.5) / (size + 1))`` for ``a`` in ``0 .. k``."""
    out: FloatArray = np.log((np.arange(k + 1) + 0.5) / (size + 1.0))
    out.flags.writeable = False  # shared by every call (cached)
    return out

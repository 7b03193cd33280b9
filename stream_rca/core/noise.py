"""Noise models and information-theoretic outlier scores.

A noise model is a bounded, recency-weighted sample (reservoir) of a node's residuals. From it,
at each refit, the model keeps a frozen summary:

- the **body**: the mid-rank empirical CDF at a few dozen order statistics (knots) between the
  two tail thresholds, interpolated linearly between them (ties are kept exact at the knots, so
  a metric that sits on one value most of the time, such as an availability of 1, is scored
  right);
- two **tails**: generalised Pareto fits (:mod:`stream_rca.core.tails`) to the largest and to
  the smallest ``tail_fraction`` of the sample, beyond which probabilities are extrapolated.

So scores are calibrated where the sample is dense, keep growing with the distance of an
outlier instead of saturating at ``log(sample size)``, and two extreme outliers stay ordered.

The IT score of a value ``r`` with the two-sided median-CDF feature is
``S(r) = -log P(|F(N) - 1/2| >= |F(r) - 1/2|) = -log(2 min(F(r), 1 - F(r)))``, with mid-ranks
for ties; on data from the learned distribution ``P(S >= s) = e^-s``.

Learning is the engine's to schedule: a bank changes only when :meth:`NoiseBank.learn_many` and
:meth:`NoiseBank.refit` are called, so that between two refits every score is computed against
the same frozen model (which is what makes block processing equal record-by-record processing).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from stream_rca.core.checkpoint import (
    StateError,
    StateTree,
    get_array,
    get_float,
    get_int,
    get_tree,
)
from stream_rca.core.compiled import (
    Layouts,
    TailModels,
    log_tails,
    place,
    refit_sorted,
    resort_rows,
    tail_scores,
)
from stream_rca.core.tails import Tail, fit_excess, lowest_shape, pwm_weights, tail_size

__all__ = [
    "SORTS",
    "NoiseBank",
    "SortChoice",
    "log_event",
    "log_event_groups",
    "log_exceedance",
    "two_sided_score",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
I64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
I32Array = npt.NDArray[np.int32]

_LOG2 = math.log(2.0)

Sort = Literal["numpy", "resort"]


class SortChoice:
    """Which of two exact sorts of full reservoir rows this process runs at a refit.

    A refit sorts each row it refits (about every ``refit_every`` snapshots, for every node).
    ``"numpy"`` is numpy's vectorised sort. ``"resort"`` is
    :func:`~stream_rca.core.compiled.resort_rows`: each row taken in the order of its last
    sort, sorted by insertion (the mechanisms moved the values held a little between two
    refits), the values learned since sorted apart and merged in. Both give the same floats
    (a refit reads every zero of a sorted row as ``0.0``), so the choice is one of speed
    alone, and which is faster depends on the machine: numpy's AVX-512 sort (x86-simd-sort)
    is the fast one where its compress-stores are fast (Intel), and slow on AMD Zen 4, where
    they are microcoded (x86-simd-sort issue 6, numpy pull request 32690; measured on one,
    15 us a row of 1,024 values, against 6-11 us for the resort, depending on how far the
    values moved).

    Until ``method`` is set (by hand, or by the trials), the refits that have rows to sort
    alternate between the two, timed per row with ``clock``; after ``trials`` of each, the
    one with the lower median time per row is kept for the life of the process. Without a
    clock (the core reads none itself) numpy's sort runs: the entry points give one
    (:func:`stream_rca.parallel.attribution_pool`). One object, :data:`SORTS`, serves every
    bank of the process (the machine is the same for all).
    """

    def __init__(self, trials: int = 16, clock: Callable[[], float] | None = None) -> None:
        self.trials = trials
        self.clock = clock
        self.method: Sort | None = None
        self.times: dict[Sort, list[float]] = {"numpy": [], "resort": []}

    def next(self) -> Sort:
        """The sort to run now (alternating while undecided; numpy's without a clock)."""
        if self.method is not None:
            return self.method
        if self.clock is None:
            return "numpy"
        numpy_n, resort_n = len(self.times["numpy"]), len(self.times["resort"])
        return "resort" if resort_n < numpy_n else "numpy"

    def record(self, method: Sort, seconds: float, rows: int) -> None:
        """Count a trial of ``method`` (``seconds`` for ``rows`` rows); decide after enough."""
        if self.method is not None or rows <= 0:
            return
        times = self.times[method]
        times.append(seconds / rows)
        if min(len(t) for t in self.times.values()) >= self.trials:
            numpy_t, resort_t = (statistics.median(self.times[m]) for m in ("numpy", "resort"))
            self.method = "resort" if resort_t < numpy_t else "numpy"


SORTS = SortChoice()
"""The sort every :class:`NoiseBank` of this process uses for its full rows (see
:class:`SortChoice`)."""

_RESORT_BUDGET = 8
"""Moves per value at most in an insertion resort before a row goes to numpy's sort."""


def _no_clock() -> float:
    """The time of a resort chosen by hand (``SortChoice.method``) without a clock: unused."""
    return 0.0


def log_exceedance(
    samples: npt.NDArray[np.floating[Any]],
    x: FloatArray,
    tail_fraction: float = 0.05,
    min_tail: int = 10,
    min_scale: FloatArray | float = 0.0,
) -> FloatArray:
    """``log P(X >= x)`` per row of a full ``(rows, S)`` sample, with a GPD upper tail.

    Inside the sample's range this is the mid-rank empirical exceedance
    ``(#{X > x} + #{X = x} / 2 + 1/2) / (S + 1)``; where fewer than ``k`` values reach ``x``
    it is the fitted tail, so it never reaches ``-inf``.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.random.default_rng(1).normal(size=(1, 2000))
    >>> round(float(np.exp(log_exceedance(s, np.array([0.0]))[0])), 1)
    0.5
    >>> a, b = log_exceedance(np.vstack([s, s]), np.array([10.0, 20.0]))
    >>> bool(b < a < np.log(1 / 2001))
    True
    """
    return _log_sf_rows(
        samples, np.asarray(x, dtype=np.float64), tail_fraction, min_tail, min_scale
    )


def _log_sf_rows(
    samples: npt.NDArray[np.floating[Any]],
    x: FloatArray,
    tail_fraction: float,
    min_tail: int,
    min_scale: FloatArray | float,
) -> FloatArray:
    rows, size = samples.shape
    k = int(tail_size(size, tail_fraction, min_tail))
    xb = np.broadcast_to(x, (rows,)).astype(samples.dtype)
    beyond = np.count_nonzero(samples > xb[:, None], axis=1)
    tied = np.count_nonzero(samples == xb[:, None], axis=1)
    out: FloatArray = np.log((beyond + 0.5 * tied + 0.5) / (size + 1.0))
    # Extrapolate only where fewer than k values reach x: the other rows need no fit, and the
    # fit (a partition) is the costly part.
    need = np.flatnonzero(beyond + tied <= k)
    if need.size:
        part = np.partition(samples[need], size - k - 1, axis=1)
        u = part[:, size - k - 1].astype(np.float64)
        top = part[:, size - k :].astype(np.float64)
        top.sort(axis=1)
        excess = np.subtract(top[:, ::-1], u[:, None])  # the largest first
        floor = np.broadcast_to(np.asarray(min_scale, dtype=np.float64), (rows,))[need]
        xs = np.broadcast_to(x, (rows,))[need]
        ext = _excess_log_sf(excess, u, xs, size, floor)
        out[need] = np.where(xs > u, np.minimum(ext, out[need]), out[need])
    return out


def log_event(
    samples: npt.NDArray[np.floating[Any]],
    hi: float,
    lo: float,
    tail_fraction: float = 0.05,
    min_tail: int = 10,
    min_scale: float = 0.0,
    *,
    overwrite: bool = False,
) -> FloatArray:
    """``log P(X >= hi or X <= lo)`` per row of ``(rows, S)`` samples (``lo < hi``).

    Both tails as in :func:`log_exceedance`, from one sort of each row (in place when
    ``overwrite``: the order of the values in a row is then lost, nothing else).

    Examples
    --------
    >>> import numpy as np
    >>> s = np.random.default_rng(3).normal(size=(2, 4000))
    >>> both = log_event(s, 2.0, -2.0)
    >>> bool(np.allclose(np.exp(both), 0.0455, rtol=0.25))
    True
    """
    rows, size = samples.shape
    k = _event_k(size, tail_fraction, min_tail)
    part = samples if overwrite else samples.copy()
    part.sort(axis=1)  # a vectorised sort is far faster than a two-sided partition here
    flat = part.reshape(-1)
    starts = np.arange(0, flat.size, size)
    bounds = np.array([hi, lo], dtype=part.dtype)
    # values below each bound per row (rows are sorted: binary searches, both at once)
    lefts = _rank_sorted(
        flat, np.tile(starts, 2), size, np.repeat(bounds, rows), inclusive=False
    ).reshape(2, rows)
    out = np.empty((2, rows))
    far: list[_Far] = []
    for side, upper in enumerate((True, False)):
        beyond, tied = _beyond_tied(flat, starts, size, lefts[side], bounds[side], upper)
        out[side] = _mid_rank_log(beyond, tied, size)
        x = hi if upper else lo
        pick = np.flatnonzero(_far(beyond, beyond + tied, k, x, bounds[side], upper))
        if pick.size:  # beyond the threshold: the fitted tail of the k most extreme values
            u = (part[pick, size - k - 1] if upper else -part[pick, k]).astype(np.float64)
            far.append(_Far(side, pick, part, pick, upper, u, x if upper else -x))
    _fit_far(out, far, k, size, min_scale)
    result: FloatArray = np.logaddexp(out[0], out[1])
    return result


def log_event_groups(
    samples: npt.NDArray[np.floating[Any]],
    hi: float,
    lo: float,
    groups: int,
    tail_fraction: float = 0.05,
    min_tail: int = 10,
    min_scale: float = 0.0,
) -> tuple[FloatArray, FloatArray]:
    """:func:`log_event` of every row, and of each of ``groups`` equal blocks of its values.

    The blocks' spread estimates the Monte Carlo error of the whole. One sort of each block
    serves both: the whole row's counts are the sum of its blocks', and its ``k + 1`` most
    extreme values are among the ``k + 1`` most extreme of each block. The rows are sorted
    block by block in place.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.random.default_rng(3).normal(size=(2, 4000))
    >>> whole, parts = log_event_groups(s.copy(), 2.0, -2.0, 4)
    >>> bool(np.allclose(whole, log_event(s, 2.0, -2.0)))
    True
    >>> parts.shape
    (4, 2)
    """
    rows, size = samples.shape
    m = size // groups
    blocks = samples[:, : groups * m].reshape(rows, groups, m)
    blocks.sort(axis=2)
    flat = blocks.reshape(-1)  # a copy only when the rows do not split evenly into blocks
    runs = flat.reshape(-1, m)
    starts = np.arange(0, flat.size, m)
    k = _event_k(groups * m, tail_fraction, min_tail)
    kb = _event_k(m, tail_fraction, min_tail)
    if k + 1 > m:
        raise ValueError(f"blocks of {m} values are too small for tails of {k} values")
    # each side's mid-rank counts; the rows and blocks beyond their thresholds are fitted
    # after the loop, both sides in one call per sample size
    whole = np.empty((2, rows))
    part = np.empty((2, rows * groups))
    far_whole: list[_Far] = []
    far_part: list[_Far] = []
    # per block: values below each bound (blocks are sorted: binary searches, both at once)
    bounds = np.array([hi, lo], dtype=samples.dtype)
    lefts = _rank_sorted(
        flat, np.tile(starts, 2), m, np.repeat(bounds, starts.size), inclusive=False
    ).reshape(2, -1)
    for side, upper in enumerate((True, False)):
        x = hi if upper else lo
        beyond, tied = _beyond_tied(flat, starts, m, lefts[side], bounds[side], upper)
        part[side] = _mid_rank_log(beyond, tied, m)
        beyond_w = _row_sums(beyond.reshape(rows, groups))
        tied_w = _row_sums(tied.reshape(rows, groups))
        whole[side] = _mid_rank_log(beyond_w, tied_w, groups * m)
        # beyond the threshold (fewer than k + 1 values reach x): the k most extreme values,
        # the row's from a sort of its blocks' k + 1 most extreme (only where it is needed)
        far = np.flatnonzero(_far(beyond_w, beyond_w + tied_w, k, x, bounds[side], upper))
        if far.size:
            ends = blocks[far, :, m - k - 1 :] if upper else blocks[far, :, : k + 1]
            ends = ends.reshape(far.size, groups * (k + 1))
            ends.sort(axis=1)
            u = (ends[:, -k - 1] if upper else -ends[:, k]).astype(np.float64)
            far_whole.append(_Far(side, far, ends, None, upper, u, x if upper else -x))
        far_b = np.flatnonzero(_far(beyond, beyond + tied, kb, x, bounds[side], upper))
        if 4 * far_b.size > 3 * starts.size:  # nearly all: fitting every block beats picking
            u_b = (flat[starts + (m - kb - 1)] if upper else -flat[starts + kb]).astype(np.float64)
            far_part.append(_Far(side, far_b, runs, None, upper, u_b, x if upper else -x, far_b))
        elif far_b.size:
            at = starts[far_b]
            u_b = (flat[at + (m - kb - 1)] if upper else -flat[at + kb]).astype(np.float64)
            far_part.append(_Far(side, far_b, runs, far_b, upper, u_b, x if upper else -x))
    _fit_far(whole, far_whole, k, groups * m, min_scale)
    _fit_far(part, far_part, kb, m, min_scale)
    out_whole: FloatArray = np.logaddexp(whole[0], whole[1])
    out_parts: FloatArray = np.logaddexp(part[0], part[1]).reshape(rows, groups).T
    return out_whole, out_parts


def _rank_sorted(
    flat: npt.NDArray[np.floating[Any]], starts: IntArray, m: int, x: Any, *, inclusive: bool
) -> IntArray:
    """How many of the ``m`` sorted values from each of ``starts`` in ``flat`` are ``< x``
    (``<= x`` when ``inclusive``): a branchless binary search over all runs at once."""
    base = starts.copy()
    probe = np.empty_like(base)
    v = np.empty(base.shape, dtype=flat.dtype)
    hit = np.empty(base.shape, dtype=bool)
    below = np.less_equal if inclusive else np.less
    n = m  # the answer lies in [base, base + n]; every probe is inside the run
    while n > 1:
        half = n >> 1
        np.add(base, half - 1, out=probe)
        np.take(flat, probe, out=v)
        below(v, x, out=hit)
        base += hit * half
        n -= half
    np.take(flat, base, out=v)
    below(v, x, out=hit)
    base += hit
    base -= starts
    return base


def _beyond_tied(
    flat: npt.NDArray[np.floating[Any]],
    starts: IntArray,
    m: int,
    left: IntArray,
    xv: Any,
    upper: bool,
) -> tuple[IntArray, IntArray]:
    """Per sorted run: the values beyond ``xv`` (above it when ``upper``, else below) and
    the values equal to it, from ``left``, the values below it."""
    tied = np.zeros_like(left)  # values equal to the bound, searched where there are any
    first = flat[starts + np.minimum(left, m - 1)]  # the first value >= xv
    holds = np.flatnonzero((left < m) & (first == xv))
    if holds.size:
        tied[holds] = _rank_sorted(flat, starts[holds], m, xv, inclusive=True) - left[holds]
    beyond = (m - left - tied) if upper else left
    return beyond, tied


def _far(beyond: IntArray, reach: IntArray, k: int, x: float, xv: Any, upper: bool) -> BoolArray:
    """Where the bound ``x`` lies beyond the threshold of a tail of ``k`` values (the
    ``k + 1``-th most extreme value): where at most ``k`` values reach it.

    The values were counted against ``xv``, the bound in the samples' precision: ``beyond``
    those strictly beyond it, ``reach`` those beyond or equal. Where ``x`` lies strictly
    beyond ``xv`` (away from the body) a value equal to ``xv`` does not reach ``x``.
    """
    strict = x > float(xv) if upper else x < float(xv)
    out: BoolArray = (beyond if strict else reach) <= k
    return out


@dataclass(frozen=True, slots=True)
class _Far:
    """Rows of one side whose event bound lies beyond their tail threshold."""

    side: int
    rows: IntArray
    """Where the results go in the side's output."""
    source: npt.NDArray[np.floating[Any]]
    """Rows sorted ascending that hold the extremes."""
    picks: IntArray | None
    """The rows of ``source`` (``None``: all of them, in order)."""
    upper: bool
    """The largest values of the picked rows (else the negated smallest)."""
    u: FloatArray
    """Thresholds, as upper values (negated for the lower tail)."""
    x: float
    """The bound, as an upper value."""
    keep: IntArray | None = None
    """Where every row of ``source`` is fitted but only some are far: their positions."""


def _fit_far(out: FloatArray, far: list[_Far], k: int, size: int, min_scale: float) -> None:
    """``out[side, rows] = log P(X >= x)`` from the tails fitted to every side's far rows.

    The excesses of every side's ``k`` most extreme values over their thresholds are written
    into one array, most extreme first, and fitted at once.
    """
    if not far:
        return
    total = sum(f.u.size for f in far)
    excess = np.empty((total, k))
    start = 0
    for f in far:
        n = f.u.size
        width = f.source.shape[1]
        picked = f.source[:, width - k :] if f.upper else f.source[:, :k]
        if f.picks is not None:
            picked = picked[f.picks]
        seg = excess[start : start + n]
        if f.upper:
            np.subtract(picked[:, ::-1], f.u[:, None], out=seg)
        else:  # -v - u, the negated value's excess, computed as (-u) - v (the same float)
            np.subtract(-f.u[:, None], picked, out=seg)
        start += n
    u = np.concatenate([f.u for f in far])
    x = np.concatenate([np.full(f.u.size, f.x) for f in far])
    fitted = _excess_log_sf(excess, u, x, size, min_scale)
    start = 0
    for f in far:
        seg = fitted[start : start + f.u.size]
        out[f.side, f.rows] = seg if f.keep is None else seg[f.keep]
        start += f.u.size


def _mid_rank_log(beyond: IntArray, tied: IntArray, size: int) -> FloatArray:
    """``log((beyond + tied / 2 + 1/2) / (size + 1))``, the mid-rank log exceedance of counts
    in samples of ``size``, read from a table of every value it can take."""
    key = 2 * beyond
    key += tied
    out: FloatArray = _mid_rank_table(size)[key]
    return out


@functools.lru_cache(maxsize=16)
def _mid_rank_table(size: int) -> FloatArray:
    """The mid-rank log exceedances at ``2 * beyond + tied`` in ``0 .. 2 * size`` (the same
    floats as computed one by one: ``key / 2`` is exact)."""
    out: FloatArray = np.log((np.arange(2 * size + 1) * 0.5 + 0.5) / (size + 1.0))
    out.flags.writeable = False  # shared by every call (cached)
    return out


def _row_sums(a: IntArray) -> IntArray:
    """Sums along the short last axis, a column at a time (faster than a reduction there)."""
    out: IntArray = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        out += a[:, j]
    return out


def _event_k(size: int, tail_fraction: float, min_tail: int) -> int:
    """The tail size of a sample of ``size``, leaving a body between the two tails."""
    k = int(tail_size(size, tail_fraction, min_tail))
    return max(1, min(k, (size - 2) // 2))


def _excess_log_sf(
    excess: FloatArray,
    u: FloatArray,
    x: float | FloatArray,
    size: int,
    min_scale: FloatArray | float,
) -> FloatArray:
    """``log P(X >= x)`` from the excesses ``(rows, k)`` of rows' most extreme values over
    their thresholds ``u`` (most extreme first), in samples of ``size``: the GPD fit of the
    excesses."""
    k = excess.shape[1]
    # values above the threshold: all k, but where the least extreme sits on the threshold
    above = np.full(u.shape, k, dtype=np.intp)
    on = np.flatnonzero(excess[:, -1] <= 0)
    if on.size:
        above[on] = np.count_nonzero(excess[on] > 0, axis=1)
    log_pu = np.log((above + 0.5) / (size + 1.0))
    floor = np.broadcast_to(np.asarray(min_scale, dtype=np.float64), u.shape)
    tail = fit_excess(excess, u, log_pu, floor)
    return tail.log_sf(np.broadcast_to(np.asarray(x, dtype=np.float64), u.shape))


def two_sided_score(log_p_low: FloatArray, log_p_high: FloatArray) -> FloatArray:
    """IT score from the log tail probabilities below and above a value: ``-log(2 min(.))``."""
    out: FloatArray = np.maximum(0.0, -(_LOG2 + np.minimum(log_p_low, log_p_high)))
    return out


class NoiseBank:
    """Noise models of many nodes at once: recency-weighted reservoirs with GPD tails.

    Parameters
    ----------
    n_nodes
        Number of rows (one per node).
    capacity
        Reservoir size per node. Once full, each new value replaces a slot picked by a hash of
        its position in the row's stream, so a value survives ``t`` later updates with
        probability ``(1 - 1/capacity) ** t``: an exponentially recency-weighted sample with a
        mean age of ``capacity`` updates. The slot depends on nothing else, so learning the same
        values in blocks of any size gives the same reservoir.
    tail_fraction, min_tail
        Share (and least number) of the sample used to fit each tail.
    n_knots
        Order statistics kept to interpolate the body of the CDF.
    caution
        Standard errors added to each fitted tail shape (see
        :func:`~stream_rca.core.tails.fit_tail_sorted`).
    seed
        Salt of the slot hash.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> bank = NoiseBank(1, capacity=500)
    >>> _ = bank.learn_many(rng.normal(size=(500, 1)), np.ones((500, 1), dtype=bool))
    >>> bank.refit()
    >>> float(bank.score(np.array([0.0]))[0]) < 0.2
    True
    >>> scores = [float(bank.score(np.array([v]))[0]) for v in (3.0, 6.0, 12.0)]
    >>> scores == sorted(scores) and scores[2] > float(np.log(500))
    True
    """

    def __init__(
        self,
        n_nodes: int,
        capacity: int = 1024,
        *,
        tail_fraction: float = 0.05,
        min_tail: int = 16,
        n_knots: int = 33,
        caution: float = 0.0,
        seed: int = 0,
    ) -> None:
        if capacity < 16:
            raise ValueError(f"capacity must be at least 16, got {capacity}")
        if not 0.0 < tail_fraction < 0.5:
            raise ValueError(f"tail_fraction must be in (0, 0.5), got {tail_fraction}")
        self.n_nodes = n_nodes
        self.capacity = capacity
        self.tail_fraction = tail_fraction
        self.min_tail = min_tail
        self.n_knots = n_knots
        self.caution = caution
        self.seed = seed
        self.samples = np.zeros((n_nodes, capacity))
        self.count = np.zeros(n_nodes, dtype=np.int64)
        """Values learned per row since the start."""
        self.fitted_count = np.zeros(n_nodes, dtype=np.int64)
        """``count`` of each row at its last refit (what its scores are based on)."""
        self.min_scale = np.full(n_nodes, 1e-12)
        """Floor of each row's tail scales, in the row's units (set by the owner)."""
        self._knots = np.zeros((n_nodes, n_knots))
        self._below = np.full((n_nodes, n_knots), 0.5)  # mid-rank P(X < knot)
        self._above = np.full((n_nodes, n_knots), 0.5)  # mid-rank P(X <= knot)
        # the fitted tails of the values and of their negation: u, sigma, xi, log_pu per row
        self._hi_rows = _empty_tails(n_nodes)
        self._lo_rows = _empty_tails(n_nodes)
        self._all_rows = np.arange(n_nodes)
        self._median = np.zeros(n_nodes)
        # for the resort (SortChoice): each full row's slots in the order of its last sort,
        # whether that order is known, and the slots given a value since (None while unused)
        self._order: I32Array | None = None
        self._fresh: BoolArray | None = None
        self._ordered = np.zeros(n_nodes, dtype=bool)

    @property
    def filled(self) -> IntArray:
        """Number of values held per row."""
        out: IntArray = np.minimum(self.count, self.capacity).astype(np.intp)
        return out

    # -- learning -----------------------------------------------------------------------------

    def learn_many(
        self, values: FloatArray, mask: BoolArray
    ) -> tuple[IntArray, IntArray, IntArray]:
        """Add a block ``values`` of shape ``(B, rows)``, in row order, wherever ``mask``.

        Values go to free slots while there are any, then each replaces the slot its hash
        picks (a later value wins a slot picked twice). Scores do not change until
        :meth:`refit`. Returns where each value went, ``(step, row, slot)`` in block order,
        so an owner can keep data of its own beside each held value.
        """
        values = np.ascontiguousarray(values, dtype=np.float64)
        step, rows, slots = place(
            values, np.ascontiguousarray(mask, dtype=bool), self.count, self.seed, self.samples
        )
        if self._fresh is not None:
            self._fresh[rows, slots] = True
        return step, rows, slots

    def refit(self, rows: IntArray | None = None) -> None:
        """Rebuild the frozen body and tails of ``rows`` (default: every row with new data).

        The rows' values are sorted (numpy's vectorised sort; full rows by the faster of it
        and a resort from their last order, see :class:`SortChoice`); a compiled loop over
        the sorted rows makes their zeros ``0.0``, reads the knots, their mid-rank
        probabilities (ties searched), the median, and fits both tails
        (:func:`~stream_rca.core.compiled.refit_sorted`).
        """
        if rows is None:
            rows = np.flatnonzero(self.count != self.fitted_count)  # all have data
        else:
            rows = rows[self.count[rows] > 0]
        if rows.size == 0:
            return
        count = self.count[rows]
        counts = count.tolist()  # a few rows: their least and most in Python
        least, most = min(counts), max(counts)
        if least >= self.capacity:  # the steady state: every row full, one size
            n, inv = self._one_size(rows.size, self.capacity)
            asc = self._sorted_full(rows)
            sizes: tuple[int, ...] = (self.capacity,)
        elif least == most and not np.isnan(held := self.samples[rows, :least]).any():
            # every row holds the same number of values (in its first slots), none NaN: those
            # sort as the padded rows below begin
            n, inv = self._one_size(rows.size, least)
            asc = np.sort(held, axis=1)
            sizes = (least,)
        else:
            held_n = [min(c, self.capacity) for c in counts]
            n = np.array(held_n, dtype=np.int64)
            # the values held and at least one free slot (infinite, sorted last) per row: a
            # row's first n sorted values are those of its whole padded row unless NaNs (sorted
            # after the padding) outnumber the free slots, so rows holding NaN sort all slots
            width = min(self.capacity, most + 1)
            held = self.samples[rows, :width]
            if width < self.capacity and np.isnan(held).any():
                width, held = self.capacity, self.samples[rows]
            valid = np.arange(width)[None, :] < n[:, None]
            asc = np.sort(np.where(valid, held, np.inf), axis=1)
            # the distinct sizes ascending and each row's among them (np.unique's answer;
            # a few rows: cheaper in Python than its sort)
            sizes = tuple(sorted(set(held_n)))
            where = {size: i for i, size in enumerate(sizes)}
            inv = np.array([where[size] for size in held_n], dtype=np.intp)
        layout = _layouts(sizes, self.n_knots, self.tail_fraction, self.min_tail)
        out = (self._knots, self._below, self._above, self._median, self._hi_rows, self._lo_rows)
        odd = refit_sorted(
            asc, n, layout._replace(inv=inv), rows, self.min_scale, self.caution, out
        )
        for i in odd:
            self._median[rows[i]] = np.median(asc[i, : int(n[i])])
        self.fitted_count[rows] = count

    def _sorted_full(self, rows: IntArray) -> FloatArray:
        """The values of the full rows ``rows``, each sorted ascending, by the sort
        :data:`SORTS` picks (the same floats either way, once a refit has made each zero
        ``0.0``)."""
        method, clock = SORTS.next(), SORTS.clock
        if SORTS.method == "numpy" or (method == "numpy" and clock is None):
            self._order = self._fresh = None  # numpy's sort from now on: no order kept
            asc = self.samples[rows]
            asc.sort(axis=1)
            return asc
        if self._order is None or self._fresh is None:
            self._order = np.zeros((self.n_nodes, self.capacity), dtype=np.int32)
            self._fresh = np.zeros((self.n_nodes, self.capacity), dtype=bool)
            self._ordered[:] = False
        order, fresh = self._order, self._fresh
        tick = clock or _no_clock
        if method == "numpy":  # a trial: timed, then the order the resort starts from
            start = tick()
            asc = self.samples[rows]
            asc.sort(axis=1)
            SORTS.record("numpy", tick() - start, rows.size)
            order[rows] = np.argsort(self.samples[rows], axis=1)
            self._ordered[rows] = True
        else:
            todo = ~self._ordered[rows]
            known = np.flatnonzero(~todo)
            start = tick()
            got, ok = resort_rows(
                self.samples, rows[known], order, fresh, _RESORT_BUDGET * self.capacity
            )
            SORTS.record("resort", tick() - start, known.size)  # none known: not counted
            if known.size == rows.size:  # the steady state: every row known
                asc = got
            else:
                asc = np.empty((rows.size, self.capacity))
                asc[known] = got
            todo[known[~ok]] = True
            if todo.any():  # first sorts, NaN, or moved too far: numpy's, with the order
                where = np.flatnonzero(todo)
                held = self.samples[rows[where]]
                first = np.argsort(held, axis=1)
                asc[where] = np.take_along_axis(held, first, axis=1)
                order[rows[where]] = first
                self._ordered[rows[where]] = True
        fresh[rows] = False
        return asc

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _one_size(rows: int, size: int) -> tuple[I64Array, IntArray]:
        """The sizes and layout indices of ``rows`` rows of one ``size`` (cached, read-only)."""
        n, inv = np.full(rows, size, dtype=np.int64), np.zeros(rows, dtype=np.intp)
        n.flags.writeable = inv.flags.writeable = False
        return n, inv

    # -- scoring ------------------------------------------------------------------------------

    def log_tails(
        self, values: FloatArray, rows: IntArray | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """``log P(N <= v)`` and ``log P(N >= v)`` (mid-rank) of each value under its row's model.

        ``values`` is ``(len(rows),)``, or a block ``(B, len(rows))`` scored row by row. Rows
        never fitted get 0 (probability 1) on both sides.
        """
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return np.zeros(v.shape), np.zeros(v.shape)
        lo, hi = log_tails(*self._compiled_args(v, rows))
        return lo.reshape(v.shape), hi.reshape(v.shape)

    def score(self, values: FloatArray, rows: IntArray | None = None) -> FloatArray:
        """IT outlier score of ``values[i]`` against row ``rows[i]`` (default: row ``i``).

        ``two_sided_score`` of :meth:`log_tails`, computed in the same compiled loop."""
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return np.zeros(v.shape)
        out = tail_scores(*self._compiled_args(v, rows))
        return out.reshape(v.shape)

    def _compiled_args(
        self, v: FloatArray, rows: IntArray | None
    ) -> tuple[FloatArray, IntArray, TailModels]:
        """The arguments of the compiled readers for values ``v`` of ``rows``."""
        rows = self._all_rows if rows is None else np.asarray(rows, dtype=np.intp)
        tails = (self._hi_rows, self._lo_rows)
        block = np.ascontiguousarray(v.reshape(-1, rows.size))
        models = (self._knots, self._below, self._above, tails, self.fitted_count)
        return block, rows, models

    def median(self, rows: IntArray | None = None) -> FloatArray:
        """Median of each row's sample at its last refit (0 for a row never fitted)."""
        rows = np.arange(self.n_nodes) if rows is None else rows
        out: FloatArray = self._median[rows]
        return out

    def draw(self, rows: IntArray, n: int, rng: np.random.Generator) -> FloatArray:
        """``(n, len(rows))`` values drawn with replacement from the rows' samples."""
        filled = np.maximum(np.minimum(self.count[rows], self.capacity), 1)
        pick = (rng.random((n, rows.size)) * filled[None, :]).astype(np.intp)
        pick += rows[None, :] * self.samples.shape[1]  # positions in the flattened samples
        out: FloatArray = self.samples.take(pick)
        return out

    def tails(self) -> tuple[Tail, Tail]:
        """The fitted upper tails of the values and of their negation (the lower tails)."""
        return Tail(*self._hi_rows), Tail(*self._lo_rows)

    def nbytes(self) -> int:
        arrays = [self.samples, self.count, self.fitted_count, self.min_scale, self._median]
        arrays += [self._knots, self._below, self._above]
        arrays += [self._hi_rows, self._lo_rows]
        return int(sum(a.nbytes for a in arrays))

    # -- state as data ------------------------------------------------------------------------

    def to_state(self) -> StateTree:
        """The bank as a state tree (see :mod:`stream_rca.core.checkpoint`).

        Examples
        --------
        >>> import numpy as np
        >>> bank = NoiseBank(2, capacity=32)
        >>> _ = bank.learn_many(np.arange(80.0).reshape(40, 2), np.ones((40, 2), dtype=bool))
        >>> bank.refit()
        >>> twin = NoiseBank.from_state(bank.to_state())
        >>> probe = np.array([[3.0, 70.0]])
        >>> bool((twin.score(probe) == bank.score(probe)).all())
        True
        """
        return {
            "n_nodes": self.n_nodes,
            "capacity": self.capacity,
            "tail_fraction": self.tail_fraction,
            "min_tail": self.min_tail,
            "n_knots": self.n_knots,
            "caution": self.caution,
            "seed": self.seed,
            "samples": self.samples,
            "count": self.count,
            "fitted_count": self.fitted_count,
            "min_scale": self.min_scale,
            "knots": self._knots,
            "below": self._below,
            "above": self._above,
            "median": self._median,
            "hi": dict(zip(_TAIL_FIELDS, self._hi_rows, strict=True)),
            "lo": dict(zip(_TAIL_FIELDS, self._lo_rows, strict=True)),
        }

    @classmethod
    def from_state(cls, state: StateTree) -> NoiseBank:
        """Rebuild a bank from :meth:`to_state`; :class:`StateError` for a bad tree."""
        n = get_int(state, "n_nodes", low=0)
        cap = get_int(state, "capacity", low=16)
        knots = get_int(state, "n_knots", low=2)
        try:
            bank = cls(
                n,
                cap,
                tail_fraction=get_float(state, "tail_fraction"),
                min_tail=get_int(state, "min_tail", low=1),
                n_knots=knots,
                caution=get_float(state, "caution"),
                seed=get_int(state, "seed", low=0),
            )
        except ValueError as exc:
            raise StateError(f"noise bank: {exc}") from None
        f64, i64 = np.float64, np.int64
        bank.samples = get_array(state, "samples", f64, (n, cap)).copy()
        bank.count = get_array(state, "count", i64, (n,)).copy()
        bank.fitted_count = get_array(state, "fitted_count", i64, (n,)).copy()
        bank.min_scale = get_array(state, "min_scale", f64, (n,)).copy()
        bank._knots = get_array(state, "knots", f64, (n, knots)).copy()
        bank._below = get_array(state, "below", f64, (n, knots)).copy()
        bank._above = get_array(state, "above", f64, (n, knots)).copy()
        bank._median = get_array(state, "median", f64, (n,)).copy()
        for side in ("hi", "lo"):
            tree = get_tree(state, side)
            parts = [get_array(tree, f, f64, (n,)) for f in _TAIL_FIELDS]
            setattr(bank, f"_{side}_rows", np.stack(parts))
        if (bank.count < 0).any() or (bank.fitted_count > bank.count).any():
            raise StateError("count: negative, or fitted beyond what was learned")
        return bank


_TAIL_FIELDS = ("u", "sigma", "xi", "log_pu")


@functools.lru_cache(maxsize=4096)
def _knot_layout(n: int, n_knots: int, tail_fraction: float, min_tail: int) -> tuple[int, IntArray]:
    """The tail size of a sample of ``n`` and its knots' positions (from the thresholds, the
    ``(k + 1)``-th smallest and largest values, inward).

    Cached: while reservoirs fill, the rows of one refit hold many different sizes, so the
    sets of sizes of :func:`_layouts` rarely repeat, while each size does (one per size up
    to a reservoir's capacity).
    """
    if n < 4:  # too few for tails: a flat body over the values, unit-free tails
        k, pos = 1, np.linspace(0, n - 1, n_knots)
    else:
        k = _event_k(n, tail_fraction, min_tail)
        pos = np.linspace(k, n - k - 1, n_knots)
    out = pos.round().astype(np.intp)
    out.flags.writeable = False  # shared by every layout of this size (cached)
    return k, out


@functools.lru_cache(maxsize=1024)
def _layouts(sizes: tuple[int, ...], n_knots: int, tail_fraction: float, min_tail: int) -> Layouts:
    """The layouts of rows of ``sizes`` as the compiled refit reads them (``inv`` left to
    the caller)."""
    lays = [_knot_layout(size, n_knots, tail_fraction, min_tail) for size in sizes]
    out = Layouts(
        inv=np.zeros(0, dtype=np.intp),
        k_pos=np.stack([k_pos for _, k_pos in lays]),
        k=np.array([k for k, _ in lays], dtype=np.intp),
        quartiles=np.array([((n - 1) // 4, (3 * (n - 1)) // 4) for n in sizes], dtype=np.intp),
        lowest=np.array([lowest_shape(k) for k, _ in lays]),
        weights=np.zeros((len(sizes), 2, max(k for k, _ in lays))),
    )
    for i, (k, _) in enumerate(lays):
        out.weights[i, :, :k] = pwm_weights(k)
    for a in out[1:]:
        a.flags.writeable = False  # shared by every refit of these sizes (cached)
    return out


def _empty_tails(n: int) -> FloatArray:
    """``(4, n)`` tails never fitted: u 0, sigma 1, xi 0, log_pu log(1/2)."""
    out = np.zeros((4, n))
    out[1] = 1.0
    out[3] = math.log(0.5)
    return out

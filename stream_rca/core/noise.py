"""Noise models and information-theoretic outlier scores.

A noise model is a bounded, recency-weighted sample (reservoir) of a node's residuals, plus an
exponential model of each tail fitted to the largest ``tail_fraction`` of the sample. The body of
the distribution is the sample's empirical CDF; beyond the tail thresholds the exceedance
probability decays exponentially with the mean excess as its scale (the peaks-over-threshold
estimate with shape 0). So scores keep growing with the distance of an outlier, instead of
saturating at ``log(sample size)`` as a purely empirical score does, and two extreme outliers stay
ordered.

The IT score of a value ``r`` with the two-sided median-CDF feature is
``S(r) = -log P(|F(N) - 1/2| >= |F(r) - 1/2|) = -log(2 min(F(r), 1 - F(r)))``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["NoiseBank", "log_event", "log_exceedance", "tail_fit", "two_sided_score"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_LOG2 = math.log(2.0)


def tail_fit(
    samples: FloatArray,
    counts: IntArray,
    tail_fraction: float,
    min_tail: int,
    min_scale: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Fit an exponential upper tail to each row of ``samples``.

    Parameters
    ----------
    samples
        ``(rows, m)``; only the first ``counts[i]`` entries of row ``i`` are data.
    counts
        Number of data values per row (at least 2).
    tail_fraction, min_tail
        The tail of a row is its ``k = max(min_tail, ceil(tail_fraction * n))`` largest values,
        capped at ``n - 1``.
    min_scale
        Floor of the fitted scale per row (a constant sample would otherwise give scale 0).

    Returns
    -------
    threshold, scale, log_p_threshold
        The k-th largest value ``u``, the mean excess over it, and ``log(k / (n + 1))``, so that
        ``log P(X >= x) = log_p_threshold - (x - u) / scale`` for ``x >= u``.
    """
    m = samples.shape[1]
    valid = np.arange(m)[None, :] < counts[:, None]
    asc = np.sort(np.where(valid, samples, np.inf), axis=1)
    up, _ = _fit_sorted(asc, counts, tail_fraction, min_tail, min_scale)
    return up


_Fit = tuple[FloatArray, FloatArray, FloatArray]


def _tail_size(counts: IntArray, tail_fraction: float, min_tail: int) -> IntArray:
    n = counts.astype(np.float64)
    k = np.minimum(np.maximum(min_tail, np.ceil(tail_fraction * n)), n - 1)
    out: IntArray = np.maximum(k, 1).astype(np.intp)
    return out


def _fit_sorted(
    asc: FloatArray, counts: IntArray, tail_fraction: float, min_tail: int, min_scale: FloatArray
) -> tuple[_Fit, _Fit]:
    """Both tails' fits from rows sorted ascending (data first, padding after)."""
    rows = np.arange(asc.shape[0])
    valid = np.arange(asc.shape[1])[None, :] < counts[:, None]
    csum = np.cumsum(np.where(valid, asc, 0.0), axis=1)
    k = _tail_size(counts, tail_fraction, min_tail)
    log_p = np.log(k / (counts + 1.0))
    # Upper tail: threshold is the k-th largest; the k - 1 values above it are the excesses.
    u_hi = asc[rows, counts - k]
    above = csum[rows, counts - 1] - csum[rows, counts - k]
    s_hi = np.maximum((above - (k - 1) * u_hi) / np.maximum(k - 1, 1), min_scale)
    # Lower tail, on the negated values: threshold -asc[k - 1], excesses below it.
    lo_val = asc[rows, k - 1]
    below = np.where(k >= 2, csum[rows, np.maximum(k - 2, 0)], 0.0)
    s_lo = np.maximum(((k - 1) * lo_val - below) / np.maximum(k - 1, 1), min_scale)
    return (u_hi, s_hi, log_p), (-lo_val, s_lo, log_p.copy())


def log_exceedance(
    samples: FloatArray,
    x: FloatArray,
    tail_fraction: float = 0.05,
    min_tail: int = 10,
    min_scale: FloatArray | float = 0.0,
) -> FloatArray:
    """``log P(X >= x)`` per row of a full ``(rows, S)`` sample, with an exponential tail.

    Inside the sample's range this is the empirical exceedance with a half-count continuity
    correction; beyond the tail threshold it extrapolates, so it never reaches ``-inf``.

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
    rows, size = samples.shape
    k = int(_tail_size(np.array([size]), tail_fraction, min_tail)[0])
    top = np.partition(samples, size - k, axis=1)[:, size - k :]
    u = top[:, 0]  # the partition puts the k-th largest first
    floor = np.broadcast_to(np.asarray(min_scale, dtype=np.float64), (rows,))
    scale = np.maximum((top.sum(axis=1) - k * u) / max(k - 1, 1), floor)
    log_pu = math.log(k / (size + 1.0))
    gt = (samples > x[:, None]).sum(axis=1)
    eq = (samples == x[:, None]).sum(axis=1)
    emp = np.log((gt + 0.5 * eq + 0.5) / (size + 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ext = log_pu - (x - u) / scale
    out: FloatArray = np.where(x > u, np.minimum(ext, emp), emp)
    return out


def log_event(
    samples: npt.NDArray[np.floating[Any]],
    hi: float,
    lo: float,
    tail_fraction: float = 0.05,
    min_tail: int = 10,
    min_scale: float = 0.0,
) -> FloatArray:
    """``log P(X >= hi or X <= lo)`` per row of ``(rows, S)`` samples (``lo < hi``).

    Both tails as in :func:`log_exceedance`, from one partition of the samples.
    """
    size = samples.shape[1]
    k = int(_tail_size(np.array([size]), tail_fraction, min_tail)[0])
    n1 = size + 1.0
    log_pu = math.log(k / n1)
    inv = 1.0 / max(k - 1, 1)
    sides = []
    for upper in (True, False):
        x = hi if upper else lo
        beyond = np.count_nonzero(samples > x if upper else samples < x, axis=1)
        tied = np.count_nonzero(samples == x, axis=1)
        log_p = np.log((beyond + 0.5 * tied + 0.5) / n1)
        # Extrapolate only where fewer than k draws reach x (x beyond the k-th most extreme
        # draw): the other rows need no tail fit, and the fit (a partition) is the costly part.
        need = np.flatnonzero(beyond + tied < k)
        if need.size:
            rows = samples[need]  # a copy, partitioned in place
            if upper:
                rows.partition(size - k, axis=1)
                top = rows[:, size - k :].astype(np.float64)
                u = top[:, 0]
                excess = top.sum(axis=1) - k * u
                dist = x - u
            else:
                rows.partition(k - 1, axis=1)
                bottom = rows[:, :k].astype(np.float64)
                u = bottom[:, k - 1]
                excess = k * u - bottom.sum(axis=1)
                dist = u - x
            scale = np.maximum(excess * inv, min_scale)
            with np.errstate(divide="ignore", invalid="ignore"):
                log_p[need] = np.minimum(log_pu - dist / scale, log_p[need])
        sides.append(log_p)
    result: FloatArray = np.logaddexp(sides[0], sides[1])
    return result


def two_sided_score(log_p_low: FloatArray, log_p_high: FloatArray) -> FloatArray:
    """IT score from the log tail probabilities below and above a value: ``-log(2 min(.))``."""
    out: FloatArray = np.maximum(0.0, -(_LOG2 + np.minimum(log_p_low, log_p_high)))
    return out


class NoiseBank:
    """Noise models of many nodes at once: recency-weighted reservoirs with fitted tails.

    Parameters
    ----------
    n_nodes
        Number of rows (one per node).
    capacity
        Reservoir size per node. Once full, each new value replaces a random slot, so a value
        survives ``t`` updates with probability ``(1 - 1/capacity) ** t``: an exponentially
        recency-weighted sample with a mean age of ``capacity`` updates.
    tail_fraction, min_tail
        Share (and least number) of the sample used to fit each tail.
    refresh
        The tail fits are redone after this many updates of a row.
    min_scale
        Absolute floor of the tail scales (units of the values).
    seed
        Seed of the generator that picks reservoir slots.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> bank = NoiseBank(1, capacity=500, seed=0)
    >>> for v in rng.normal(size=500):
    ...     bank.learn(np.array([v]), np.array([True]))
    >>> float(bank.score(np.array([0.0]))[0]) < 0.2
    True
    >>> scores = [float(bank.score(np.array([v]))[0]) for v in (3.0, 6.0, 12.0)]
    >>> scores == sorted(scores) and scores[2] > float(np.log(500))
    True
    """

    def __init__(
        self,
        n_nodes: int,
        capacity: int = 512,
        *,
        tail_fraction: float = 0.05,
        min_tail: int = 8,
        refresh: int = 16,
        min_scale: float = 1e-12,
        seed: int = 0,
    ) -> None:
        if capacity < 8:
            raise ValueError(f"capacity must be at least 8, got {capacity}")
        self.n_nodes = n_nodes
        self.capacity = capacity
        self.tail_fraction = tail_fraction
        self.min_tail = min_tail
        self.refresh = refresh
        self.min_scale = min_scale
        self._rng = np.random.default_rng(seed)
        self.samples = np.zeros((n_nodes, capacity))
        self.count = np.zeros(n_nodes, dtype=np.int64)
        """Values learned per row since the start."""
        self._since_fit = np.zeros(n_nodes, dtype=np.int64)
        self._fit_up = (np.zeros(n_nodes), np.ones(n_nodes), np.zeros(n_nodes))
        self._fit_lo = (np.zeros(n_nodes), np.ones(n_nodes), np.zeros(n_nodes))
        self._median = np.zeros(n_nodes)

    @property
    def filled(self) -> IntArray:
        """Number of values held per row."""
        out: IntArray = np.minimum(self.count, self.capacity).astype(np.intp)
        return out

    def learn(self, values: FloatArray, mask: BoolArray) -> None:
        """Add ``values[i]`` to row ``i`` wherever ``mask[i]``."""
        self.learn_many(values[None, :], mask[None, :])

    def learn_many(self, values: FloatArray, mask: BoolArray) -> None:
        """Add a block ``values`` of shape ``(B, rows)``, in row order, wherever ``mask``.

        The same reservoir rule as ``B`` calls of :meth:`learn`: values go to free slots while
        there are any, then each replaces a random slot (a later value wins a slot both pick).
        """
        step, rows = np.nonzero(mask)  # row-major: in block order
        if rows.size == 0:
            return
        order = np.argsort(rows, kind="stable")
        step, rows = step[order], rows[order]
        counts = np.bincount(rows, minlength=self.n_nodes)
        first = np.cumsum(counts) - counts
        rank = np.arange(rows.size) - first[rows]
        slots = self.filled[rows] + rank
        full = slots >= self.capacity
        slots[full] = self._rng.integers(0, self.capacity, size=int(full.sum()))
        # assign in block order so that the latest value wins a slot picked twice
        again = np.argsort(step, kind="stable")
        self.samples[rows[again], slots[again]] = values[step[again], rows[again]]
        self.count += counts
        self._since_fit += counts

    def _refit(self, rows: IntArray) -> None:
        counts = self.filled[rows]
        ok = counts >= 2
        rows, counts = rows[ok], counts[ok]
        if rows.size == 0:
            return
        valid = np.arange(self.capacity)[None, :] < counts[:, None]
        asc = np.sort(np.where(valid, self.samples[rows], np.inf), axis=1)
        q25, q50, q75 = (_sorted_quantile(asc, counts, q) for q in (0.25, 0.5, 0.75))
        floor = np.maximum(self.min_scale, 1e-3 * (q75 - q25))
        up, lo = _fit_sorted(asc, counts, self.tail_fraction, self.min_tail, floor)
        for dst, src in ((self._fit_up, up), (self._fit_lo, lo)):
            for a, b in zip(dst, src, strict=True):
                a[rows] = b
        self._median[rows] = q50
        self._since_fit[rows] = 0

    def _ensure_fit(self, rows: IntArray) -> None:
        stale = rows[
            (self._since_fit[rows] >= self.refresh) | (self._since_fit[rows] == self.count[rows])
        ]
        stale = stale[self.count[stale] > 0]
        if stale.size:
            self._refit(stale)

    def log_tails(
        self, values: FloatArray, rows: IntArray | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """``log P(N <= v)`` and ``log P(N >= v)`` of each value against its row's model.

        ``values`` is ``(len(rows),)``, or a block ``(B, len(rows))`` scored row by row.
        """
        rows = np.arange(self.n_nodes) if rows is None else rows
        self._ensure_fit(rows)
        counts = self.filled[rows]
        data = self.samples[rows]
        valid = np.arange(self.capacity)[None, :] < counts[:, None]
        v = values[..., None]
        lt = ((data < v) & valid).sum(axis=-1)
        eq = ((data == v) & valid).sum(axis=-1)
        gt = counts - lt - eq
        n1 = counts + 1.0
        emp_hi = np.log((gt + 0.5 * eq + 0.5) / n1)
        emp_lo = np.log((lt + 0.5 * eq + 0.5) / n1)
        u_hi, s_hi, lp_hi = (a[rows] for a in self._fit_up)
        u_lo, s_lo, lp_lo = (a[rows] for a in self._fit_lo)
        hi = np.where(values > u_hi, np.minimum(emp_hi, lp_hi - (values - u_hi) / s_hi), emp_hi)
        lo = np.where(-values > u_lo, np.minimum(emp_lo, lp_lo - (-values - u_lo) / s_lo), emp_lo)
        return lo, hi

    def score(self, values: FloatArray, rows: IntArray | None = None) -> FloatArray:
        """IT outlier score of ``values[i]`` against row ``rows[i]`` (default: row ``i``)."""
        lo, hi = self.log_tails(values, rows)
        return two_sided_score(lo, hi)

    def median(self, rows: IntArray | None = None) -> FloatArray:
        """Median of each row's sample (0 for an empty row)."""
        rows = np.arange(self.n_nodes) if rows is None else rows
        self._ensure_fit(rows)
        out: FloatArray = self._median[rows]
        return out

    def draw(self, rows: IntArray, n: int, rng: np.random.Generator) -> FloatArray:
        """``(n, len(rows))`` values drawn with replacement from the rows' samples."""
        filled = np.maximum(self.filled[rows], 1)
        pick = (rng.random((n, rows.size)) * filled[None, :]).astype(np.intp)
        out: FloatArray = self.samples[rows[None, :], pick]
        return out

    def nbytes(self) -> int:
        arrays = [
            self.samples,
            self.count,
            self._since_fit,
            self._median,
            *self._fit_up,
            *self._fit_lo,
        ]
        return int(sum(a.nbytes for a in arrays))

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _sorted_quantile(asc: FloatArray, counts: IntArray, q: float) -> FloatArray:
    """Linear-interpolated quantile ``q`` of rows sorted ascending with ``counts`` data each."""
    rows = np.arange(asc.shape[0])
    pos = q * (counts - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, counts - 1)
    frac = pos - lo
    out: FloatArray = asc[rows, lo] * (1.0 - frac) + asc[rows, hi] * frac
    return out

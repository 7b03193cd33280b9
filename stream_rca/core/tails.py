"""Peaks-over-threshold tails: a generalised Pareto fit shared by every score in the engine.

Beyond a high threshold ``u`` the exceedance probability of a value is modelled as

    P(X >= x) = p_u * (1 + xi * (x - u) / sigma) ** (-1 / xi),    x >= u,

the generalised Pareto distribution (GPD) of the excesses (Pickands 1975; Balkema and de Haan
1974), which is the limit law of the excesses of nearly every distribution met in practice. Its
shape ``xi`` says how heavy the tail is: 0 is an exponential tail (the Gaussian, gamma and
lognormal families are in its domain, though at finite thresholds lognormal latencies look
heavier), ``xi > 0`` a power-law tail (Student-t with ``nu`` degrees of freedom has
``xi = 1 / nu``). The streaming reference for anomaly detection with this model is SPOT/DSPOT
(Siffer et al., "Anomaly detection in streams with extreme value theory", KDD 2017).

The fit uses probability-weighted moments (Hosking and Wallis, Technometrics 1987): closed form,
vectorised over many rows at once, and reliable on the few dozen excesses a recency-weighted
sample offers. The shape is kept in ``[XI_MIN, XI_MAX]``. A negative shape (a bounded tail,
such as the lower tail of a latency) has an end point, beyond which every value would be
infinitely anomalous; so a bounded fit is followed only down to ``e^-4`` times ``P(X > u)``
(about where a fit of 52 excesses meets the sample's extreme), and continued beyond as an
exponential tail. Its hazard rate is the fitted law's at that point, but at most
``e^1.5 / sigma``: beyond the sample the end point is not known (a residual's end is blurred by
its mechanism's error, which changes as the mechanism learns), and the law's own hazard there
grows without bound as ``xi`` nears -1, so that a normal value just past the sample's extreme
would score tens of nats (and, past the protection level, never be learned). The
log-probability is continuous and decreasing; a far outlier's score keeps growing and two
outliers stay ordered.

Shapes down to -1 are fitted: a latency's lower bound, or a truncated noise, ends abruptly with
its density still positive there, and the excesses near such an end are nearly uniform
(``xi = -1``). A floor above that (-0.375 was once used) keeps a heavy tail past the data's
end: on a uniform tail no value ever reaches 6 nats.

One object of this module serves the node scores, the trigger's marginal score and the
attribution's Monte Carlo draws alike: :class:`Tail` holds fitted parameters per row, and
:func:`fit_tail` fits them from each row's largest values.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "BOUNDED_DEPTH",
    "MAX_HAZARD",
    "XI_MAX",
    "XI_MIN",
    "Tail",
    "fit_excess",
    "fit_tail",
    "fit_tail_sorted",
    "gpd_log_sf",
    "lowest_shape",
    "pwm_weights",
    "tail_size",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

XI_MAX = 0.75
"""Largest tail shape fitted (a tail as heavy as a Student-t with 1.33 degrees of freedom)."""
XI_MIN = -1.0
"""Smallest tail shape fitted (uniform excesses: an abrupt end, such as latencies have below)."""
BOUNDED_DEPTH = 4.0
"""Nats below ``P(X > u)`` from which a bounded fit (``xi < 0``) continues as an exponential."""
MAX_HAZARD = math.exp(1.5)
"""Steepest hazard of that exponential continuation, in units of ``1 / sigma`` (the hazard of a
shape -0.375 fit at the cut)."""


def tail_size(n: IntArray | int, tail_fraction: float, min_tail: int) -> IntArray:
    """Excesses used per fit: ``max(min_tail, ceil(tail_fraction * n))``, at most ``n - 1``."""
    counts = np.asarray(n, dtype=np.float64)
    k = np.minimum(np.maximum(min_tail, np.ceil(tail_fraction * counts)), counts - 1)
    out: IntArray = np.maximum(k, 1).astype(np.intp)
    return out


@dataclass(frozen=True, slots=True)
class Tail:
    """Fitted upper tails of many rows: ``P(X >= x) = exp(log_pu) * GPD(x - u; sigma, xi)``."""

    u: FloatArray
    """Threshold per row."""
    sigma: FloatArray
    """GPD scale per row (positive)."""
    xi: FloatArray
    """GPD shape per row, in ``[XI_MIN, XI_MAX]``."""
    log_pu: FloatArray
    """``log P(X > u)`` per row."""

    def log_sf(self, x: npt.ArrayLike) -> FloatArray:
        """``log P(X >= x)`` under the tail model (meant for ``x >= u``; broadcasts over rows)."""
        return gpd_log_sf(np.asarray(x, dtype=np.float64) - self.u, self.sigma, self.xi) + (
            self.log_pu
        )

    def isf(self, log_p: npt.ArrayLike) -> FloatArray:
        """The value ``x`` with ``log P(X >= x) = log_p`` (``u`` where ``log_p >= log_pu``).

        >>> import numpy as np
        >>> t = Tail(np.zeros(2), np.ones(2), np.array([0.0, 0.5]), np.full(2, np.log(0.1)))
        >>> x = t.isf(np.log(1e-4))
        >>> bool(np.allclose(t.log_sf(x), np.log(1e-4)))
        True
        """
        depth = np.maximum(self.log_pu - np.asarray(log_p, dtype=np.float64), 0.0)
        xi = self.xi
        small = np.abs(xi) < 1e-6
        safe = np.where(small, 1.0, xi)
        y = np.where(small, depth, np.expm1(safe * np.minimum(depth, _bounded_depth(xi))) / safe)
        past = (xi < 0) & (depth > BOUNDED_DEPTH)
        if np.any(past):
            cut = np.expm1(safe * BOUNDED_DEPTH) / safe
            y = np.where(past, cut + (depth - BOUNDED_DEPTH) / _cut_hazard(safe, cut), y)
        out: FloatArray = self.u + self.sigma * y
        return out

    def take(self, rows: IntArray) -> Tail:
        """The tails of the given rows."""
        return Tail(self.u[rows], self.sigma[rows], self.xi[rows], self.log_pu[rows])


def _cut_hazard(xi: FloatArray, cut: FloatArray) -> FloatArray:
    """Hazard (in units of ``1 / sigma``) of a bounded tail's continuation past its cut."""
    out: FloatArray = np.minimum(1.0 / (1.0 + xi * cut), MAX_HAZARD)
    return out


def _bounded_depth(xi: FloatArray) -> FloatArray:
    out: FloatArray = np.where(xi < 0, BOUNDED_DEPTH, np.inf)
    return out


def gpd_log_sf(excess: FloatArray, sigma: FloatArray, xi: FloatArray) -> FloatArray:
    """``log P(Y >= y)`` of a GPD(sigma, xi) at ``y = max(excess, 0)``.

    Examples
    --------
    >>> import numpy as np
    >>> float(gpd_log_sf(np.array(2.0), np.array(1.0), np.array(0.0)))  # exponential
    -2.0
    >>> round(float(gpd_log_sf(np.array(2.0), np.array(1.0), np.array(0.5))), 4)  # -2 log(2)
    -1.3863
    >>> round(float(gpd_log_sf(np.array(50.0), np.array(1.0), np.array(-0.5))), 4)  # past the cut
    -220.3341
    """
    y = np.maximum(excess, 0.0) / sigma
    small = np.abs(xi) < 1e-6
    safe = np.where(small, 1.0, xi)
    bounded = xi < 0
    if not bounded.any():  # no cut: -log1p(xi y) / xi, or -y where xi is (nearly) 0
        out = np.asarray(np.multiply(safe, y))
        np.log1p(out, out=out)
        out /= np.negative(safe)
        return _where_small(small, y, out)
    # a bounded tail (xi < 0) is followed to depth L, then continued with its hazard there
    # (at most MAX_HAZARD)
    depth = BOUNDED_DEPTH
    cut = np.where(bounded, np.expm1(safe * depth) / safe, np.inf)
    yy = np.minimum(y, cut)
    with np.errstate(divide="ignore", invalid="ignore"):
        shaped = -np.log1p(safe * yy) / safe
    out = _where_small(small, y, shaped)
    past = (y > cut) & ~small  # a shape within 1e-6 of 0 is exponential all the way
    if np.any(past):
        with np.errstate(invalid="ignore"):  # rows not past their cut compute inf * 0
            out = np.where(past, -depth - (y - cut) * _cut_hazard(safe, cut), out)
    return out


def _where_small(small: npt.NDArray[np.bool_], y: FloatArray, shaped: FloatArray) -> FloatArray:
    """The exponential tail ``-y`` where the shape is (nearly) 0, ``shaped`` elsewhere."""
    if small.any():
        out: FloatArray = np.where(small, -y, shaped)
        return out
    return shaped


def fit_tail_sorted(
    top_desc: FloatArray,
    u: FloatArray,
    log_pu: FloatArray,
    min_scale: FloatArray | float,
    caution: float = 0.0,
) -> Tail:
    """Fit GPD tails to rows of excess values sorted descending.

    Parameters
    ----------
    top_desc
        ``(rows, k)``: each row's ``k`` values above its threshold, largest first.
    u
        Threshold per row.
    log_pu
        ``log P(X > u)`` per row.
    min_scale
        Floor of the scale (a constant sample would otherwise give scale 0).
    caution
        Standard errors added to the fitted shape (a heavier tail): thresholds far beyond
        the sample are set by the shape, whose estimate from ``k`` excesses has a standard
        error of about ``2 / sqrt(k)``, and a shape estimated too light raises false alarms
        far more than one estimated too heavy lowers them.
    """
    excess = np.maximum(top_desc - u[:, None], 0.0)
    return fit_excess(excess, u, log_pu, min_scale, caution)


def fit_excess(
    excess: FloatArray,
    u: FloatArray,
    log_pu: FloatArray,
    min_scale: FloatArray | float,
    caution: float = 0.0,
) -> Tail:
    """:func:`fit_tail_sorted` from the excesses over the thresholds.

    ``excess`` is ``(rows, k)``, non-negative, largest first in each row. Both
    probability-weighted moments of every row are one matrix product; the rest of the fit's
    arithmetic runs along the rows (there are many, and few excesses per row).
    """
    k = excess.shape[1]
    a0, a1 = pwm_weights(k) @ excess.T
    denom = a0 - 2.0 * a1
    with np.errstate(divide="ignore", invalid="ignore"):
        # NaN excesses give a NaN denominator, so xi is never NaN here
        xi = np.where(denom > 0, 2.0 - a0 / denom, XI_MAX)
    lowest = lowest_shape(k)
    if caution:
        xi += caution * 2.0 / math.sqrt(k)
    np.clip(xi, lowest, XI_MAX, out=xi)
    # the scale that keeps the mean excess: E[Y] = sigma / (1 - xi)
    sigma = np.subtract(1.0, xi)
    sigma *= a0
    np.maximum(sigma, min_scale, out=sigma)
    return Tail(np.asarray(u, dtype=np.float64), sigma, xi, np.asarray(log_pu, dtype=np.float64))


def lowest_shape(k: int) -> float:
    """The smallest shape fitted from ``k`` excesses: a bounded tail is believed only on
    enough of them, from 0 at 24 to ``XI_MIN`` at 48 (the shape's standard error from ``k``
    excesses is about ``2 / sqrt(k)``: 0.4 at 24, 0.3 at 48)."""
    return XI_MIN * min(1.0, max(0.0, (k - 24) / 24))


@functools.lru_cache(maxsize=512)
def pwm_weights(k: int) -> FloatArray:
    """``(2, k)``: the weights of ``E[Y]`` and ``E[Y (1 - F(Y))]`` over ``k`` excesses sorted
    descending (plotting positions ``F = (i - 0.35) / k`` on the ascending order)."""
    p_asc = (np.arange(1, k + 1) - 0.35) / k
    out = np.empty((2, k))
    out[0] = 1.0 / k
    out[1] = (1.0 - p_asc[::-1]) / k
    out.flags.writeable = False  # shared by every fit of k excesses (cached)
    return out


def fit_tail(
    samples: npt.NDArray[np.floating], k: int, min_scale: FloatArray | float = 0.0
) -> Tail:
    """Fit the upper tail of each row of a full ``(rows, n)`` sample from its ``k`` largest.

    The threshold is the ``(k + 1)``-th largest value and ``P(X > u) = (k + 0.5) / (n + 1)``,
    which joins the mid-rank empirical exceedance just above ``u``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = fit_tail(rng.standard_t(3, size=(1, 20000)), 1000)
    >>> bool(0.2 < t.xi[0] < 0.5)  # Student-t(3): xi = 1/3
    True
    >>> t = fit_tail(rng.exponential(size=(1, 20000)), 1000)
    >>> bool(t.xi[0] < 0.1 and 0.9 < t.sigma[0] < 1.1)
    True
    """
    rows, n = samples.shape
    if not 1 <= k < n:
        raise ValueError(f"tail size must be in [1, {n - 1}], got {k}")
    part = np.partition(samples, n - k - 1, axis=1)
    u = part[:, n - k - 1].astype(np.float64)
    top = -np.sort(-part[:, n - k :].astype(np.float64), axis=1)
    log_pu = np.full(rows, math.log((k + 0.5) / (n + 1.0)))
    return fit_tail_sorted(top, u, log_pu, min_scale)

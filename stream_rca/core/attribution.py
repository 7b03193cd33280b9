"""Shapley attribution of a target's outlier score to the noises of its ancestors.

Following Janzing, Budhathoki et al. (ICML 2022), the players are the target and its ancestors,
each represented by its reconstructed noise ``n_i``. The value of a coalition ``T`` is

    v(T) = log P(g(X_t) >= g(x_t) | N_T = n_T),

with ``g`` the two-sided median-CDF feature of the target's marginal distribution. Noises
outside ``T`` are drawn from their noise models (the same draws for every coalition: common
random numbers) and pushed through the mechanisms in topological order. ``v(all) = 0`` and
``v(empty) = -S(x_t)``, so the Shapley values add up to the target's IT score.

When every mechanism on the way is linear the target is ``x_t - sum_i w_i (n_i - N_i)`` over
the players outside the coalition, with ``w`` the total effects, and all coalitions are one
matrix product. Probabilities use :func:`~stream_rca.core.noise.log_exceedance`, whose tail
extrapolation keeps ``v`` finite for outliers far beyond every draw.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rca.core.coalitions import coalition_event_logs
from stream_rca.core.noise import _excess_log_sf, log_event, log_exceedance
from stream_rca.core.shapley import (
    ShapleyResult,
    estimate_shapley,
    permutation_shapley,
)
from stream_rca.core.tails import fit_tail, fit_tail_sorted, tail_size

__all__ = ["AttributionOutcome", "PlayerModel", "attribute_noise"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_TAIL_FRACTION = 0.05
_MIN_TAIL = 10
_GENERIC_CHUNK = 256
_GROUPS = 4
"""Disjoint groups of draws whose attributions estimate the Monte Carlo standard error."""


@dataclass(frozen=True, slots=True)
class PlayerModel:
    """The structural causal model restricted to the players, in topological order.

    The target is the last player. ``parents[j]`` are positions among the players. Either
    ``weights`` (linear mechanisms: ``x_j = weights[j] @ x + intercept[j] + n_j``) or
    ``predict`` (``predict(j, parent_values[..., k]) -> values[...]``) must be given.
    """

    parents: Sequence[IntArray]
    weights: FloatArray | None = None
    intercept: FloatArray | None = None
    predict: Callable[[int, FloatArray], FloatArray] | None = None


@dataclass(frozen=True, slots=True)
class AttributionOutcome:
    contributions: FloatArray
    stderr: FloatArray
    target_score: float
    """``-v(empty)``: the target's IT score under the model; equals the contributions' sum."""
    method: str
    linear: bool
    n_samples: int
    n_permutations: int


def attribute_noise(
    model: PlayerModel,
    noise: FloatArray,
    x_target: float,
    noise_draws: FloatArray,
    rng: np.random.Generator,
    *,
    exact_max_players: int = 12,
    n_permutations: int = 64,
    pool: concurrent.futures.Executor | None = None,
) -> AttributionOutcome:
    """Shapley values of the players' noises for the target's outlier score.

    Parameters
    ----------
    model
        Mechanisms of the players (the target last).
    noise
        Reconstructed noise of every player in the snapshot, ``(d,)``.
    x_target
        The target's value in the snapshot.
    noise_draws
        ``(S, d)`` draws from the players' noise models.
    rng
        Generator for the permutations (the draws are already made).
    pool
        An executor for part of the exact computation (see
        :func:`~stream_rca.core.coalitions.coalition_event_logs`); the same result without.
    """
    d = noise.shape[0]
    if noise_draws.ndim != 2 or noise_draws.shape[1] != d:
        raise ValueError(f"noise_draws must be (S, {d}), got {noise_draws.shape}")
    if model.weights is None and model.predict is None:
        raise ValueError("a PlayerModel needs weights or predict")
    gap = None if model.weights is None else _linear_gap(model.weights, noise, noise_draws)
    if gap is not None:
        marginal = x_target - gap.sum(axis=1)
    else:
        marginal = _generic_sampler(model, noise, noise_draws)(np.zeros((1, d), dtype=bool))[0]
    asc = np.sort(marginal)  # the same quantiles and tails as the sample's, read off in order
    spread = _iqr_sorted(asc)
    floor = 1e-3 * spread + 1e-12
    hi, lo = _event(asc, x_target, floor)

    def values_of(samples: npt.NDArray[np.floating[Any]]) -> FloatArray:
        vals = log_event(samples, hi, lo, _TAIL_FRACTION, _MIN_TAIL, floor, overwrite=True)
        out: FloatArray = np.minimum(0.0, vals)
        return out

    if gap is not None and d <= exact_max_players:
        # All 2**d coalitions at once: the sum of the gaps of a coalition's members, built by
        # doubling (coalition 2**p + c is coalition c plus player p), one add per coalition.
        # float32 halves the memory traffic; probabilities need no more precision.
        # All 2**d coalitions at once (the sums of their members' gaps, in float32, see
        # coalitions.py). The Monte Carlo error of the draws: the same attribution on _GROUPS
        # disjoint quarters of them, whose spread estimates the error of the whole (exact
        # over coalitions is not exact over draws).
        whole, parts = coalition_event_logs(
            gap, marginal, hi, lo, _GROUPS, _TAIL_FRACTION, _MIN_TAIL, floor, pool
        )
        vals = np.minimum(0.0, whole)
        group_vals = np.minimum(0.0, parts)
        empty = float(vals[0])  # the same float32 draws as every other coalition
        vals[-1] = 0.0  # every noise fixed: the target is its observed value, P = 1
        group_vals[:, -1] = 0.0
        # the Shapley values of the whole and of the groups in one product (they are linear
        # in v; the same sums as exact_shapley's, in another order)
        every = np.empty((1 + _GROUPS, 2**d))
        every[0] = vals
        every[1:] = group_vals
        phis = every @ _shapley_operator(d)
        phi, group_phi = phis[0], phis[1:]
        stderr = np.std(group_phi, axis=0, ddof=1) / math.sqrt(_GROUPS)
        result = ShapleyResult(phi, stderr, "exact", 2**d, 0)
    elif gap is not None:
        empty = float(values_of(marginal[None, :].copy())[0])
        gap_t = np.ascontiguousarray(gap.T, dtype=np.float32)  # (d, S)
        x32 = np.float32(x_target)

        def chain(orders: IntArray) -> FloatArray:
            # Prefix s of an order fixes its first s players: the target is x_t minus the gaps
            # of the players not fixed yet, a reversed cumulative sum along the order.
            # (A running sum over the prefixes, each step along all orders and draws at once:
            # the same float32 additions in the same order as a cumsum along the players,
            # which runs the other way through memory and is many times slower.)
            b = orders.shape[0]
            samples = np.empty((b, d + 1, gap_t.shape[1]), dtype=np.float32)
            samples[:, d] = 0.0
            for s in range(d - 1, -1, -1):
                np.add(samples[:, s + 1], gap_t[orders[:, s]], out=samples[:, s])
            np.subtract(x32, samples, out=samples)
            vals = values_of(samples.reshape(b * (d + 1), -1)).reshape(b, d + 1)
            vals[:, d] = 0.0
            return vals

        result = permutation_shapley(None, d, n_permutations, rng, chain_function=chain, batch=16)
    else:
        empty = float(values_of(marginal[None, :].copy())[0])
        sampler = _generic_sampler(model, noise, noise_draws)

        def set_function(masks: BoolArray) -> FloatArray:
            out = np.empty(masks.shape[0])
            full = masks.all(axis=1)
            out[full] = 0.0
            rest = np.flatnonzero(~full)
            for start in range(0, rest.size, _GENERIC_CHUNK):
                idx = rest[start : start + _GENERIC_CHUNK]
                out[idx] = values_of(sampler(masks[idx]))
            return out

        result = estimate_shapley(
            set_function,
            d,
            rng=rng,
            exact_max_players=min(exact_max_players, 8),
            n_permutations=n_permutations,
        )
    return AttributionOutcome(
        contributions=result.values,
        stderr=result.stderr,
        target_score=-empty,
        method=result.method,
        linear=gap is not None,
        n_samples=int(noise_draws.shape[0]),
        n_permutations=result.n_permutations,
    )


@functools.lru_cache(maxsize=16)
def _shapley_operator(d: int) -> FloatArray:
    """``(2**d, d)``: the matrix ``M`` with ``exact_shapley(v, d) == v @ M`` (up to round-off).

    Row ``T`` holds ``(|T|-1)! (d-|T|)! / d!`` for the players in ``T`` and minus
    ``|T|! (d-|T|-1)! / d!`` for the others: each coalition's value enters every player's
    Shapley value once, as the coalition the player joins or the one it leaves.
    """
    weight = np.array(
        [math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)]
    )
    member = ((np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1).astype(bool)
    size = member.sum(axis=1)
    joined = weight[np.maximum(size - 1, 0)]  # unused for the empty coalition
    left = weight[np.minimum(size, d - 1)]  # unused for the full coalition
    out: FloatArray = np.where(member, joined[:, None], -left[:, None])
    out.flags.writeable = False  # shared by every call (cached)
    return out


def _linear_gap(weights: FloatArray, noise: FloatArray, draws: FloatArray) -> FloatArray:
    """``(S, d)``: how much drawing each player's noise instead of fixing it moves the target.

    With linear mechanisms the target is ``x_t - sum over free players of gap[:, i]``, where
    ``gap[:, i] = w_i (n_i - N_i)`` and ``w`` are the total effects on the target (the last
    player): the last row of ``(I - B)^-1``.
    """
    d = noise.shape[0]
    unit = np.zeros(d)
    unit[d - 1] = 1.0
    total = np.linalg.solve((np.eye(d) - weights).T, unit)
    out: FloatArray = (noise[None, :] - draws) * total[None, :]
    return out


def _generic_sampler(
    model: PlayerModel, noise: FloatArray, draws: FloatArray
) -> Callable[[BoolArray], FloatArray]:
    assert model.predict is not None
    predict = model.predict
    d = noise.shape[0]

    def sample(masks: BoolArray) -> FloatArray:
        c, s = masks.shape[0], draws.shape[0]
        chosen = np.where(masks[:, None, :], noise[None, None, :], draws[None, :, :])
        x = np.empty((c, s, d))
        for j in range(d):
            pa = model.parents[j]
            base = predict(j, x[:, :, pa]) if pa.size else np.zeros((c, s))
            x[:, :, j] = base + chosen[:, :, j]
        out: FloatArray = x[:, :, d - 1]
        return out

    return sample


def _iqr_sorted(asc: FloatArray) -> float:
    """``np.subtract(*np.percentile(asc, [75, 25]))`` of a sorted sample, read off directly:
    numpy's linear interpolation, the same floats (``np.percentile`` costs more than the
    rest of the event's bounds)."""
    n = asc.size
    if n == 0 or np.isnan(asc[-1]):  # no value, or NaN: numpy's own reading
        return float(np.subtract(*np.percentile(asc, [75, 25])))

    def at(q: float) -> float:
        index = (n - 1) * q
        below = math.floor(index)
        gamma = index - below
        a, b = float(asc[below]), float(asc[min(below + 1, n - 1)])
        diff = b - a
        return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma

    return at(0.75) - at(0.25)


def _event(asc: FloatArray, x_target: float, floor: float) -> tuple[float, float]:
    """Thresholds ``(hi, lo)`` of the event ``g(X) >= g(x_t)``: ``X >= hi or X <= lo``.

    ``asc`` is the marginal sample sorted. The numbers of
    :func:`~stream_rca.core.noise.log_exceedance` and
    :func:`~stream_rca.core.tails.fit_tail` on the sample and on its negation, read off the
    sorted values instead of counted and partitioned anew.
    """
    if np.isnan(asc[-1]):  # NaN (sorted last) counts as no value: the plain reading
        return _event_plain(asc, x_target, floor)
    k = int(tail_size(asc.size, _TAIL_FRACTION, _MIN_TAIL))
    neg = -asc[::-1]  # the negated sample, sorted
    up = _log_sf_sorted(asc, x_target, k, floor)
    down = _log_sf_sorted(neg, -x_target, k, floor)
    if up <= down:  # the target is in the upper half
        return x_target, -_quantile_sorted(neg, up, k, floor)
    return _quantile_sorted(asc, down, k, floor), x_target


def _log_sf_sorted(asc: FloatArray, x: float, k: int, floor: float) -> float:
    """``log_exceedance`` of one sorted sample at ``x``, with tails of ``k`` values."""
    size = asc.size
    left = int(np.searchsorted(asc, x, side="left"))
    right = int(np.searchsorted(asc, x, side="right"))
    beyond, tied = size - right, right - left
    out = np.log(np.array([(beyond + 0.5 * tied + 0.5) / (size + 1.0)]))
    if beyond + tied <= k:  # extrapolated where fewer than k values reach x
        u = asc[size - k - 1 : size - k]
        excess = np.subtract(asc[: size - k - 1 : -1], u)[None, :]  # the largest first
        xs = np.array([x])
        ext = _excess_log_sf(excess, u, xs, size, np.array([floor]))
        if x > float(u[0]):
            out = np.minimum(ext, out)
    return float(out[0])


def _quantile_sorted(asc: FloatArray, log_p: float, k: int, floor: float) -> float:
    """The value ``x`` with ``log P(X >= x) = log_p`` under the tail-extrapolated sorted sample
    (the fit of :func:`~stream_rca.core.tails.fit_tail` to its ``k`` largest values)."""
    n = asc.size
    log_pu = np.full(1, math.log((k + 0.5) / (n + 1.0)))
    tail = fit_tail_sorted(asc[: n - k - 1 : -1][None, :], asc[n - k - 1 : n - k], log_pu, floor)
    if log_p >= float(tail.log_pu[0]):
        return float(np.quantile(asc, 1.0 - math.exp(log_p)))
    return float(tail.isf(log_p)[0])


def _event_plain(marginal: FloatArray, x_target: float, floor: float) -> tuple[float, float]:
    row = marginal[None, :]
    up = float(log_exceedance(row, np.array([x_target]), _TAIL_FRACTION, _MIN_TAIL, floor)[0])
    down = float(log_exceedance(-row, np.array([-x_target]), _TAIL_FRACTION, _MIN_TAIL, floor)[0])
    if up <= down:  # the target is in the upper half
        return x_target, -_quantile_for(-marginal, up, floor)
    return _quantile_for(marginal, down, floor), x_target


def _quantile_for(samples: FloatArray, log_p: float, floor: float) -> float:
    """The value ``x`` with ``log P(X >= x) = log_p`` under the tail-extrapolated sample."""
    k = int(tail_size(samples.size, _TAIL_FRACTION, _MIN_TAIL))
    tail = fit_tail(samples[None, :], k, floor)
    if log_p >= float(tail.log_pu[0]):
        return float(np.quantile(samples, 1.0 - math.exp(log_p)))
    return float(tail.isf(log_p)[0])

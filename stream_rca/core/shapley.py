"""Shapley values of a vectorised set function: exact, or by antithetic permutation sampling.

Pure functions of a set function over boolean coalition masks; they know no graph and no I/O.
A set function takes a ``(C, d)`` boolean array (row ``c`` is a coalition of the ``d`` players)
and returns the ``(C,)`` values of those coalitions, so that one call evaluates many coalitions
with common random numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "ChainFunction",
    "SetFunction",
    "ShapleyResult",
    "all_coalitions",
    "estimate_shapley",
    "exact_shapley",
    "permutation_shapley",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
SetFunction = Callable[[BoolArray], FloatArray]
ChainFunction = Callable[[npt.NDArray[np.intp]], FloatArray]


@dataclass(frozen=True, slots=True)
class ShapleyResult:
    """Shapley values with how they were computed.

    ``values.sum() == v(all) - v(empty)`` for both methods (each permutation telescopes).
    """

    values: FloatArray
    stderr: FloatArray
    """Standard error per player; zeros for the exact method."""
    method: str
    """``"exact"`` or ``"permutation"``."""
    n_evaluations: int
    """Number of coalitions evaluated."""
    n_permutations: int
    """Permutations sampled (0 for exact)."""


def all_coalitions(d: int) -> BoolArray:
    """All ``2**d`` coalitions as rows; row ``i`` holds player ``p`` iff bit ``p`` of ``i`` is set.

    >>> all_coalitions(2).astype(int).tolist()
    [[0, 0], [1, 0], [0, 1], [1, 1]]
    """
    codes = np.arange(2**d, dtype=np.int64)
    out: BoolArray = ((codes[:, None] >> np.arange(d)) & 1).astype(bool)
    return out


def exact_shapley(values: FloatArray, d: int) -> FloatArray:
    """Exact Shapley values from the values of all coalitions in :func:`all_coalitions` order.

    ``phi_i = sum over T not holding i of |T|! (d - |T| - 1)! / d! * (v(T + i) - v(T))``.

    Examples
    --------
    A glove game: player 0 holds a left glove, players 1 and 2 a right one each.

    >>> import numpy as np
    >>> m = all_coalitions(3)
    >>> v = (m[:, 0] & (m[:, 1] | m[:, 2])).astype(float)
    >>> np.round(exact_shapley(v, 3), 4).tolist()
    [0.6667, 0.1667, 0.1667]
    """
    if values.shape != (2**d,):
        raise ValueError(f"expected {2**d} coalition values for {d} players, got {values.shape}")
    codes = np.arange(2**d, dtype=np.int64)
    sizes = np.zeros(2**d, dtype=np.int64)
    for p in range(d):
        sizes += (codes >> p) & 1
    weight = np.array(
        [math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)]
    )
    phi = np.empty(d)
    for p in range(d):
        without = codes[((codes >> p) & 1) == 0]
        gain = values[without | (1 << p)] - values[without]
        phi[p] = float(np.dot(weight[sizes[without]], gain))
    return phi


def permutation_shapley(
    set_function: SetFunction | None,
    d: int,
    n_permutations: int,
    rng: np.random.Generator,
    *,
    antithetic: bool = True,
    batch: int = 64,
    chain_function: ChainFunction | None = None,
) -> ShapleyResult:
    """Shapley values estimated from random player orders.

    Each order contributes every player's marginal gain when it joins the players before it.
    With ``antithetic`` each order is paired with its reverse, and the pair's mean is one
    sample of the standard error (the reverse order's errors are negatively correlated).

    Examples
    --------
    >>> import numpy as np
    >>> weights = np.array([3.0, 1.0, 0.0])
    >>> game = lambda m: (m * weights).sum(axis=1)  # additive: exact from any order
    >>> r = permutation_shapley(game, 3, 8, np.random.default_rng(0))
    >>> r.values.tolist(), r.method
    ([3.0, 1.0, 0.0], 'permutation')
    """
    if n_permutations < 2:
        raise ValueError("n_permutations must be at least 2")
    n_units = max(1, n_permutations // 2) if antithetic else n_permutations
    orders: list[npt.NDArray[np.intp]] = []
    for _ in range(n_units):
        perm = rng.permutation(d)
        orders.append(perm)
        if antithetic:
            orders.append(perm[::-1].copy())
    perms = np.array(orders)
    n_perm = perms.shape[0]
    contrib = np.empty((n_perm, d))
    for start in range(0, n_perm, batch):
        block = perms[start : start + batch]
        b = block.shape[0]
        # prefix masks: masks[j, s, :] = first s players of order j
        if chain_function is not None:
            vals = chain_function(block)
        elif set_function is not None:
            rank = np.empty_like(block)
            rank[np.arange(b)[:, None], block] = np.arange(d)[None, :]
            masks = rank[:, None, :] < np.arange(d + 1)[None, :, None]
            vals = set_function(masks.reshape(b * (d + 1), d)).reshape(b, d + 1)
        else:
            raise ValueError("give a set_function or a chain_function")
        gains = np.diff(vals, axis=1)  # gains[j, s] = gain of player block[j, s]
        contrib[start : start + b][np.arange(b)[:, None], block] = gains
    units = contrib.reshape(n_units, 2, d).mean(axis=1) if antithetic else contrib
    values = units.mean(axis=0)
    if units.shape[0] > 1:
        stderr = units.std(axis=0, ddof=1) / math.sqrt(units.shape[0])
    else:
        stderr = np.full(d, np.inf)
    return ShapleyResult(values, stderr, "permutation", n_perm * (d + 1), n_perm)


def estimate_shapley(
    set_function: SetFunction,
    d: int,
    *,
    rng: np.random.Generator,
    exact_max_players: int = 12,
    n_permutations: int = 64,
) -> ShapleyResult:
    """Exact Shapley values up to ``exact_max_players`` players, sampled orders beyond.

    >>> import numpy as np
    >>> game = lambda m: m.any(axis=1).astype(float)  # any player alone wins
    >>> r = estimate_shapley(game, 4, rng=np.random.default_rng(0))
    >>> r.method, np.round(r.values, 3).tolist()
    ('exact', [0.25, 0.25, 0.25, 0.25])
    """
    if d == 0:
        return ShapleyResult(np.zeros(0), np.zeros(0), "exact", 0, 0)
    if d <= exact_max_players:
        masks = all_coalitions(d)
        values = set_function(masks)
        return ShapleyResult(exact_shapley(values, d), np.zeros(d), "exact", 2**d, 0)
    return permutation_shapley(set_function, d, n_permutations, rng)

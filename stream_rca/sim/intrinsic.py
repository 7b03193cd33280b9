"""Intrinsic (own) latency distributions of simulated services.

Each service's intrinsic latency is non-negative and skewed: log-normal, half-normal or
exponential, parametrised by its **mean** (the ``scale``, in seconds) so that scales of different
families are comparable. Draws are made from uniforms, always two per (row, node), so that a
row's values do not depend on how rows are batched: drawing ``n`` rows at once or one at a time
from the same generator gives the same numbers.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

__all__ = [
    "FAMILIES",
    "Family",
    "draw_uniforms",
    "intrinsic_from_uniforms",
]

Family = Literal["lognormal", "halfnormal", "exponential"]

#: The supported intrinsic latency families, in code order.
FAMILIES: tuple[Family, ...] = get_args(Family)

_HALFNORMAL_MEAN = float(np.sqrt(2.0 / np.pi))  # mean of |Z| for Z standard normal


def draw_uniforms(rng: np.random.Generator, n: int, n_nodes: int) -> npt.NDArray[np.float64]:
    """Draw the uniforms behind ``n`` rows of intrinsic latencies.

    Parameters
    ----------
    rng
        The source of randomness; exactly ``2 * n * n_nodes`` doubles are consumed, row by row.
    n
        Number of rows.
    n_nodes
        Number of nodes.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, 2, n_nodes)``, values in ``[0, 1)``.

    Examples
    --------
    >>> draw_uniforms(np.random.default_rng(0), 3, 4).shape
    (3, 2, 4)
    """
    return rng.random((n, 2, n_nodes))


def intrinsic_from_uniforms(
    uniforms: npt.NDArray[np.float64],
    families: npt.NDArray[np.int64],
    scales: npt.NDArray[np.float64],
    sigmas: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Turn uniforms into intrinsic latencies.

    Parameters
    ----------
    uniforms
        Shape ``(n, 2, n_nodes)``, from :func:`draw_uniforms`.
    families
        Per node, the index of its family in :data:`FAMILIES`.
    scales
        Per node, the mean intrinsic latency in seconds (``0`` gives a constant zero).
    sigmas
        Per node, the log-normal shape (standard deviation of the log); ignored by the others.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, n_nodes)``, non-negative latencies whose per-node means are ``scales``.

    Examples
    --------
    >>> u = draw_uniforms(np.random.default_rng(0), 20_000, 3)
    >>> x = intrinsic_from_uniforms(u, np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]),
    ...                             np.full(3, 0.5))
    >>> np.round(x.mean(axis=0), 2).tolist()
    [0.1, 0.2, 0.3]
    """
    u1 = uniforms[:, 0, :]
    u2 = uniforms[:, 1, :]
    radius = np.sqrt(-2.0 * np.log1p(-u1))  # 1 - u1 is in (0, 1]
    out = np.empty(u1.shape, dtype=np.float64)
    for code, family in enumerate(FAMILIES):
        cols = np.flatnonzero(families == code)
        if cols.size == 0:
            continue
        scale = scales[cols]
        if family == "exponential":
            out[:, cols] = -scale * np.log1p(-u1[:, cols])
            continue
        z = radius[:, cols] * np.cos(2.0 * np.pi * u2[:, cols])  # Box-Muller: standard normal
        if family == "lognormal":
            sigma = sigmas[cols]
            out[:, cols] = scale * np.exp(sigma * z - 0.5 * sigma**2)
        else:  # halfnormal
            out[:, cols] = scale / _HALFNORMAL_MEAN * np.abs(z)
    return out

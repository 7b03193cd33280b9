"""The compiled tail fit is the numpy one: the same law, equal to round-off.

:func:`stream_rca.core.compiled.fit_log_sf_rows` fits the GPD tail of each row's excesses and
reads ``log P(X >= x)`` off it in one loop per row (the exact attribution's kernel calls it for
every coalition and block beyond its threshold); :func:`stream_rca.core.noise._excess_log_sf`
does the same with numpy over all rows. Only the order of the moments' additions and the math
library's ``log1p`` may differ, so the two agree to a relative 1e-12 on every branch: heavy
tails, exponential ones, bounded ones (followed to their cut and continued beyond it), ties on
the threshold, and scales at their floor.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.coalitions import _log_above_table
from stream_rca.core.compiled import fit_log_sf_rows, ridge_solve
from stream_rca.core.noise import _excess_log_sf


@given(
    seed=st.integers(0, 2**16),
    k=st.sampled_from([1, 2, 10, 24, 25, 26, 40, 60]),
    rows=st.integers(1, 40),
    kind=st.sampled_from(["exponential", "pareto", "uniform", "rounded", "constant"]),
    reach=st.sampled_from(["below", "near", "far", "very far"]),
    min_scale=st.sampled_from([1e-12, 1e-3, 10.0]),  # > 0, as the attribution's floor
)
@settings(max_examples=200, deadline=None)
def test_compiled_fit_equals_the_numpy_fit(
    seed: int, k: int, rows: int, kind: str, reach: str, min_scale: float
) -> None:
    rng = np.random.default_rng(seed)
    raw = {
        "exponential": lambda: rng.exponential(size=(rows, k)),
        "pareto": lambda: rng.pareto(1.5, size=(rows, k)),
        "uniform": lambda: rng.uniform(size=(rows, k)),  # a bounded tail: shapes below 0
        "rounded": lambda: np.round(rng.exponential(size=(rows, k)), 0),  # zeros: ties at u
        "constant": lambda: np.zeros((rows, k)),
    }[kind]()
    excess = -np.sort(-raw, axis=1)  # largest first
    u = rng.normal(size=rows)
    top = excess[:, 0]
    x = (
        u
        + {
            "below": lambda: -rng.uniform(0.0, 1.0, size=rows),
            "near": lambda: rng.uniform(0.0, 1.0, size=rows) * top,
            "far": lambda: (1.0 + rng.uniform(0.0, 5.0, size=rows)) * (top + 1.0),
            "very far": lambda: rng.uniform(50.0, 1e4, size=rows),
        }[reach]()
    )
    size = 4 * k + 10
    ours = fit_log_sf_rows(excess, u, x, _log_above_table(k, size), min_scale)
    theirs = _excess_log_sf(excess, u, x, size, min_scale)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


@given(
    seed=st.integers(0, 2**16),
    k=st.integers(1, 16),
    g=st.integers(1, 6),
    ridge=st.sampled_from([0.0, 1e-6, 0.1]),
    constant=st.booleans(),
)
@settings(max_examples=100, deadline=None)
def test_compiled_ridge_solve_equals_lapack(
    seed: int, k: int, g: int, ridge: float, constant: bool
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(g, 3 * k + 5, k)) * rng.uniform(0.1, 10.0, size=(g, 1, k))
    if constant:  # a parent that never moved: zero rows and columns, coefficient 0
        x[:, :, 0] = 0.0
    sxx = np.einsum("gbi,gbj->gij", x, x)
    y = np.einsum("gbi,gi->gb", x, rng.normal(size=(g, k))) + rng.normal(size=x.shape[:2])
    sxy = np.einsum("gbi,gb->gi", x, y)
    diag = np.einsum("gii->gi", sxx)
    a = sxx.copy()
    a[:, np.arange(k), np.arange(k)] += ridge * diag + 1e-10 * (
        diag.mean(axis=1, keepdims=True) + 1e-300
    )
    want = np.linalg.solve(a, sxy[:, :, None])[:, :, 0]
    got = ridge_solve(sxx, sxy, ridge)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12 * np.abs(want).max())

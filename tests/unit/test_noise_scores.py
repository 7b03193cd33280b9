"""The noise bank's compiled scoring equals its numpy definition on every branch.

:meth:`NoiseBank.log_tails` reads, per value, the first knot at or above it, the mid-rank CDF
there (interpolated between knots, exact on a knot), and the fitted tails beyond the outer
knots; rows never fitted get probability 1. The reference below is that definition written
with numpy over whole arrays (the bank's code before it was compiled). The two agree to a
relative 1e-12: only the math library's ``log``, ``log1p`` and ``exp`` may differ by an ulp.
The scores read in the same compiled loop are ``two_sided_score`` of those tails, to the bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.noise import NoiseBank, two_sided_score

FloatArray = npt.NDArray[np.float64]


def _reference(
    bank: NoiseBank, v2: FloatArray, rows: npt.NDArray[np.intp]
) -> tuple[FloatArray, FloatArray]:
    knots = bank._knots[rows]
    n_k = knots.shape[1]
    j = (knots[None, :, :] < v2[:, :, None]).sum(axis=-1)  # first knot >= v
    base = (np.arange(rows.size) * n_k)[None, :]
    upper_i = np.minimum(j, n_k - 1) + base
    lower_i = np.maximum(j - 1, 0) + base
    flat = knots.ravel()
    below, above = bank._below[rows].ravel(), bank._above[rows].ravel()
    k_hi, k_lo = flat[upper_i], flat[lower_i]
    eq = (j < n_k) & (k_hi == v2)
    a, b = above[lower_i], below[upper_i]
    span = k_hi - k_lo
    w = np.divide(v2 - k_lo, span, out=np.full_like(v2, 0.5), where=span > 0)
    cdf = np.where(eq, 0.5 * (below[upper_i] + above[upper_i]), a + w * (b - a))
    cdf = np.clip(cdf, 1e-300, 1.0)
    lo = np.log(cdf)
    hi = np.log(np.clip(1.0 - cdf, 1e-300, 1.0))
    t_hi_all, t_lo_all = bank.tails()
    beyond_hi = (j >= n_k) & ~eq
    beyond_lo = (j == 0) & ~eq
    t_hi = t_hi_all.take(rows).log_sf(v2)
    t_lo = t_lo_all.take(rows).log_sf(-v2)
    hi = np.where(beyond_hi, t_hi, hi)
    lo = np.where(beyond_hi, np.log1p(-np.minimum(np.exp(t_hi), 0.5)), lo)
    lo = np.where(beyond_lo, t_lo, lo)
    hi = np.where(beyond_lo, np.log1p(-np.minimum(np.exp(t_lo), 0.5)), hi)
    unfitted = bank.fitted_count[rows] == 0
    return np.where(unfitted, 0.0, lo), np.where(unfitted, 0.0, hi)


_KINDS = {
    "normal": lambda rng, shape: rng.normal(size=shape),
    "heavy": lambda rng, shape: rng.standard_t(1.5, size=shape),
    "latency": lambda rng, shape: 5.0 + rng.lognormal(0.0, 1.0, size=shape),  # bounded below
    "uniform": lambda rng, shape: rng.uniform(size=shape),  # both tails bounded
    "counts": lambda rng, shape: rng.integers(0, 4, size=shape).astype(np.float64),  # ties
    "availability": lambda rng, shape: np.where(rng.random(shape) < 0.95, 1.0, rng.random(shape)),
}


@given(
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(sorted(_KINDS)),
    learned=st.sampled_from([0, 3, 30, 200, 700]),
    n_knots=st.sampled_from([5, 33]),
    some_rows=st.booleans(),
)
@settings(max_examples=120, deadline=None)
def test_compiled_scores_equal_the_numpy_definition(
    seed: int, kind: str, learned: int, n_knots: int, some_rows: bool
) -> None:
    rng = np.random.default_rng(seed)
    nodes = 4
    bank = NoiseBank(nodes, 256, n_knots=n_knots, caution=0.25, seed=seed)
    bank.min_scale = np.full(nodes, 1e-6)
    if learned:
        mask = rng.random((learned, nodes)) < 0.9
        mask[:, 0] = False  # a row never fitted
        bank.learn_many(_KINDS[kind](rng, (learned, nodes)), mask)
        bank.refit()
    # probes: values held (on knots, ties), between them, beyond both tails, far beyond, NaN
    held = bank.samples[:, : max(1, min(learned, 256))].T
    probes = np.concatenate(
        [
            held[rng.integers(0, held.shape[0], size=8)],
            _KINDS[kind](rng, (8, nodes)),
            bank._knots[:, [0, -1]].T,
            rng.normal(size=(8, nodes)) * 50.0,
            np.full((2, nodes), 1e6) * np.array([[1.0], [-1.0]]),
            np.full((1, nodes), np.nan),
        ]
    )
    rows = np.array([3, 1, 2], dtype=np.intp) if some_rows else np.arange(nodes)
    v2 = np.ascontiguousarray(probes[:, rows])
    with np.errstate(invalid="ignore", over="ignore"):
        want = _reference(bank, v2, rows)
        got = bank.log_tails(v2, None if not some_rows else rows)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-300)
    # the scores, read in the same loop, are two_sided_score of those tails, to the bit
    scores = bank.score(v2, None if not some_rows else rows)
    assert scores.tobytes() == two_sided_score(*got).tobytes()
    one = bank.score(v2[0], None if not some_rows else rows)
    assert one.shape == (rows.size,)
    assert one.tobytes() == scores[0].tobytes()


def test_a_single_vector_and_no_values() -> None:
    bank = NoiseBank(2, 64)
    bank.learn_many(np.random.default_rng(1).normal(size=(100, 2)), np.ones((100, 2), dtype=bool))
    bank.refit()
    lo, hi = bank.log_tails(np.array([0.1, 9.0]))
    assert lo.shape == hi.shape == (2,)
    assert hi[1] < np.log(1 / 65) < lo[1]
    lo, hi = bank.log_tails(np.zeros((0, 2)))
    assert lo.shape == hi.shape == (0, 2)
    assert bank.score(np.zeros((0, 2))).shape == (0, 2)

"""The compiled bookkeeping of a learning step is its numpy definition, to the bit.

:func:`stream_rca.core.compiled.learn_counts` stands for the expressions that
:meth:`~stream_rca.core.models.GraphModels.learn` used to evaluate one by one: which residuals
enter the noise models (a mechanism counts once it has learned ``min_fit`` snapshots, row by
row), the counts, the running sums of absolute values and the floors of the tail scales. They
must agree bit for bit, with one column (numpy sums it pairwise) and with many (numpy sums
down the rows), with magnitudes across many decades and rows that learn nothing.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.compiled import learn_counts

FloatArray = npt.NDArray[np.float64]


def _definition(
    x: FloatArray,
    learn: npt.NDArray[np.bool_],
    noise_learn: npt.NDArray[np.bool_],
    min_fit: npt.NDArray[np.intp],
    has_parents: npt.NDArray[np.bool_],
    floor: float,
    state: tuple[npt.NDArray[np.int64], FloatArray, FloatArray],
) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    fitted, abs_sum, abs_n = state
    fitted_before = fitted[None, :] + np.cumsum(learn, axis=0) - learn
    ready = fitted_before >= min_fit[None, :]
    fitted += learn.sum(axis=0)
    held = noise_learn & (ready | ~has_parents)
    abs_sum += np.where(learn, np.abs(x), 0.0).sum(axis=0)
    abs_n += learn.sum(axis=0)
    magnitude = abs_sum / np.maximum(abs_n, 1.0)
    return held, np.maximum(1e-12, floor * magnitude)


@given(
    seed=st.integers(0, 2**16),
    rows=st.sampled_from([1, 2, 5, 16, 33, 200, 1500]),
    nodes=st.sampled_from([1, 2, 3, 11, 40]),
    share=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
    steps=st.integers(1, 4),
    nan_learned=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_learn_counts_equals_its_definition(
    seed: int, rows: int, nodes: int, share: float, steps: int, nan_learned: bool
) -> None:
    rng = np.random.default_rng(seed)
    min_fit = rng.integers(0, 40, size=nodes).astype(np.intp)
    has_parents = rng.random(nodes) < 0.6
    ours = (rng.integers(0, 30, size=nodes).astype(np.int64), np.zeros(nodes), np.zeros(nodes))
    ref = tuple(a.copy() for a in ours)
    for _ in range(steps):
        x = rng.standard_t(2, size=(rows, nodes)) * 10.0 ** rng.integers(-14, 8, size=(rows, 1))
        x[rng.random(x.shape) < 0.05] = np.nan  # the models learn no missing value, but
        learn = rng.random(x.shape) < share  # a NaN learned must stay NaN (numpy's maximum)
        if not nan_learned:
            learn &= ~np.isnan(x)
        noise_learn = learn & (rng.random(x.shape) < 0.9)
        counts = (min_fit, has_parents, 1e-4)
        held, scale = learn_counts(x, learn, noise_learn, counts, ours)
        want_held, want_scale = _definition(x, learn, noise_learn, *counts, ref)  # type: ignore[arg-type]
        assert (held == want_held).all()
        assert scale.tobytes() == want_scale.tobytes()
        for got, want in zip(ours, ref, strict=True):
            assert got.tobytes() == want.tobytes()

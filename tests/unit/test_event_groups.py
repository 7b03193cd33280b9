"""The grouped event probability equals the plain one, on the whole rows and on each block.

:func:`log_event_groups` sorts each block once and derives the whole row's counts and tail from
the blocks (binary searches, a merge of the blocks' extremes); :func:`log_event` sorts the row.
Both must give the same numbers: the whole rows exactly, the blocks up to float round-off (their
tail fits run column-wise, which changes the order of a few additions).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.noise import log_event, log_event_groups


@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(1, 12),
    size=st.integers(120, 700),
    groups=st.sampled_from([2, 4]),
    decimals=st.sampled_from([None, 0, 1]),
    wide=st.booleans(),
    at_values=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_groups_equal_the_plain_event_per_row_and_per_block(
    seed: int,
    rows: int,
    size: int,
    groups: int,
    decimals: int | None,
    wide: bool,
    at_values: bool,
) -> None:
    rng = np.random.default_rng(seed)
    dtype = np.float64 if wide else np.float32
    s = rng.standard_t(3, size=(rows, size))
    if decimals is not None:  # many ties
        s = np.round(s, decimals)
    s = s.astype(dtype)
    if at_values:  # thresholds on sample values: ties with the event's bounds
        lo, hi = sorted(float(v) for v in rng.choice(s.ravel(), 2, replace=False))
        if lo == hi:
            lo = hi - 1.0
    else:
        hi = float(rng.uniform(-1.0, 8.0))
        lo = hi - float(rng.uniform(0.5, 9.0))
    m = size // groups
    whole, parts = log_event_groups(s.copy(), hi, lo, groups, 0.05, 10, 1e-3)
    used = s[:, : groups * m]  # values beyond whole blocks take no part
    plain = log_event(used, hi, lo, 0.05, 10, 1e-3)
    np.testing.assert_allclose(whole, plain, rtol=1e-12, atol=1e-12)
    assert parts.shape == (groups, rows)
    for g in range(groups):
        block = s[:, g * m : (g + 1) * m]
        plain = log_event(block, hi, lo, 0.05, 10, 1e-3)
        np.testing.assert_allclose(parts[g], plain, rtol=1e-12, atol=1e-12)

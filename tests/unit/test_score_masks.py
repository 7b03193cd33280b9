"""The compiled masks of a scored piece are their numpy definition, to the bit.

:func:`stream_rca.core.compiled.score_masks` stands for the elementwise expressions that
:meth:`~stream_rca.core.engine.Engine._score` evaluated one by one: the scores kept (present,
warm and active nodes; present targets with a warm marginal; NaN elsewhere) and what learns
(present, active nodes with enough parents, scoring below the protection thresholds, no score
counting as calm). Drawn with missing values, rows with parents missing, cold and
marginalised nodes, NaN and infinite raw scores, and equal or different thresholds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.compiled import score_masks

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@given(
    seed=st.integers(0, 2**16),
    rows=st.sampled_from([1, 3, 16]),
    nodes=st.sampled_from([1, 4, 11]),
    gaps=st.booleans(),
    protect=st.sampled_from([(12.0, 12.0), (12.0, 6.0), (3.0, 9.0)]),
)
@settings(max_examples=200, deadline=None)
def test_score_masks_equal_their_definition(
    seed: int, rows: int, nodes: int, gaps: bool, protect: tuple[float, float]
) -> None:
    rng = np.random.default_rng(seed)
    present = rng.random((rows, nodes)) < (0.8 if gaps else 1.0)
    raw = rng.exponential(6.0, size=(rows, nodes))
    raw[rng.random(raw.shape) < 0.05] = np.nan
    raw[rng.random(raw.shape) < 0.05] = np.inf
    targets = np.unique(rng.integers(0, nodes, size=rng.integers(1, nodes + 1))).astype(np.intp)
    t_raw = rng.exponential(6.0, size=(rows, targets.size))
    t_raw[rng.random(t_raw.shape) < 0.05] = np.nan
    active = rng.random(nodes) < 0.8
    warm_nodes = (rng.random(nodes) < 0.7) | ~active
    t_warm = rng.random(targets.size) < 0.7
    missing = np.flatnonzero(~present.all(axis=1)).tolist()
    ok = np.ones((rows, nodes), dtype=bool) if missing else np.ones((0, nodes), dtype=bool)
    for b in missing:
        ok[b] = rng.random(nodes) < 0.5

    got = score_masks(present, ok, (raw, t_raw), (targets, active, warm_nodes, t_warm), protect)

    scored = present & warm_nodes & active
    node_scores = np.where(scored, raw, np.nan)
    t_present = present[:, targets]
    t_scores = np.where(t_present & t_warm, t_raw, np.nan)
    may = present & active
    for b in missing:
        may[b] &= ok[b]
    learn = may & ~(node_scores >= protect[0])
    noise_learn = may & ~(node_scores >= protect[1])
    t_learn = t_present & ~(t_scores >= protect[1])
    want = (node_scores, t_scores, learn, noise_learn, t_learn)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        assert g.shape == w.shape
        assert g.tobytes() == w.tobytes()

"""The standard error an exact attribution reports is the Monte Carlo error of its draws.

Exact Shapley values over all coalitions are still estimated from a finite sample of noise
draws. On a small linear model attributed under 30 seeds, the standard error each attribution
reports (from disjoint groups of its draws) must match the spread of its contributions across
the seeds within a factor of two; one case sits inside the sample, one far beyond it (where the
fitted tails carry the probabilities).
"""

from __future__ import annotations

import numpy as np
import pytest

from stream_rca.core.attribution import PlayerModel, attribute_noise

_D = 4
_WEIGHTS = np.zeros((_D, _D))
_WEIGHTS[1, 0], _WEIGHTS[2, 1], _WEIGHTS[3, 2], _WEIGHTS[3, 0] = 1.0, 0.8, 1.2, 0.5
_PARENTS = [np.flatnonzero(_WEIGHTS[j]) for j in range(_D)]


@pytest.mark.parametrize(
    "noise", [[3.0, 0.2, 2.5, 0.1], [6.0, 0.2, 3.0, 0.1], [0.5, 5.0, 0.5, 4.0]]
)
def test_reported_stderr_matches_the_spread_across_seeds(noise: list[float]) -> None:
    n = np.array(noise)
    x_target = float(np.linalg.solve(np.eye(_D) - _WEIGHTS, n)[-1])
    model = PlayerModel(_PARENTS, weights=_WEIGHTS)
    phis, errors = [], []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        draws = rng.standard_t(5, size=(512, _D))
        out = attribute_noise(model, n, x_target, draws, rng)
        assert out.method == "exact"
        assert np.isclose(out.contributions.sum(), out.target_score)  # efficiency, every seed
        phis.append(out.contributions)
        errors.append(out.stderr)
    spread = np.std(phis, axis=0, ddof=1)
    reported = np.sqrt(np.mean(np.square(errors), axis=0))
    pooled = float(np.sqrt(np.mean(reported**2) / np.mean(spread**2)))
    assert 0.5 <= pooled <= 2.0, (pooled, reported, spread)
    ratio = reported / spread  # each player's, with the sampling error of 30 seeds
    assert (ratio > 1 / 3).all()
    assert (ratio < 3).all()

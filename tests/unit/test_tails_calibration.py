"""Each fitted tail alone is calibrated: one side at a time, against the true distribution.

A two-sided score averages its sides, which can hide one side that never alarms (a bounded
side, whose fitted tail runs on past the data's end) behind one that alarms twice as often.
Here each side's model value at a depth ``d`` (``log P = -d`` under the fit) is mapped
through the true distribution: averaged over many fits (the rows of one bank), the true
probability of reaching it is the rate at which that side alarms, exactly, with no sampling
of held-out data. ``d = s + log 2`` is where a two-sided score reaches ``s`` nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from stream_rca.core.noise import NoiseBank

Array = npt.NDArray[np.float64]
Draw = Callable[[np.random.Generator, int], Array]
Sf = Callable[[Array], Array]
_erfc = np.vectorize(math.erfc, otypes=[float])
_FITS = 200
_SIZE = 1024


def _normal_sf(z: Array) -> Array:
    out: Array = 0.5 * _erfc(z / math.sqrt(2.0))
    return out


def _t3_sf(t: Array) -> Array:
    x = t / math.sqrt(3.0)
    out: Array = 0.5 - (x / (1.0 + x * x) + np.arctan(x)) / math.pi
    return out


def _truncexp(b: float) -> tuple[Draw, Sf]:
    """An exponential cut at ``b`` of its scales: both ends abrupt, as the DoWhy shop's noises."""
    mass = -math.expm1(-b)

    def draw(rng: np.random.Generator, n: int) -> Array:
        out: Array = -np.log1p(-mass * rng.random(n))
        return out

    def sf(x: Array) -> Array:
        out: Array = np.clip((np.exp(-np.clip(x, 0.0, b)) - math.exp(-b)) / mass, 0.0, 1.0)
        return out

    return draw, sf


_CASES: dict[str, tuple[Draw, Sf]] = {
    "uniform": (lambda r, n: r.random(n), lambda x: np.clip(1.0 - x, 0.0, 1.0)),
    "truncated-exponential-2": _truncexp(2.0),
    "truncated-exponential-6": _truncexp(6.0),
    "exponential": (lambda r, n: r.exponential(size=n), lambda x: np.exp(-np.maximum(x, 0.0))),
    "half-normal": (
        lambda r, n: np.abs(r.normal(size=n)),
        lambda x: np.where(x > 0, 2.0 * _normal_sf(np.maximum(x, 0.0)), 1.0),
    ),
    "normal": (lambda r, n: r.normal(size=n), _normal_sf),
    "lognormal": (
        lambda r, n: r.lognormal(0.0, 0.8, size=n),
        lambda x: np.where(x > 0, _normal_sf(np.log(np.maximum(x, 1e-300)) / 0.8), 1.0),
    ),
    "student-t3": (lambda r, n: r.standard_t(3, size=n), _t3_sf),
}


@pytest.mark.parametrize("name", list(_CASES))
def test_each_side_alarms_at_its_promised_rate(name: str) -> None:
    """Per side: within x2 of ``e^-d`` where the score is 4 nats, x3 where it is 6 nats."""
    draw, sf = _CASES[name]
    rng = np.random.default_rng(5)
    values = np.column_stack([draw(rng, _SIZE) for _ in range(_FITS)])
    bank = NoiseBank(_FITS, capacity=_SIZE)
    bank.learn_many(values, np.ones(values.shape, dtype=bool))
    bank.refit()
    hi, lo = bank.tails()
    for score, limit in ((4.0, 2.0), (6.0, 3.0)):
        d = score + math.log(2.0)
        upper = float(sf(hi.isf(-d)).mean()) / math.exp(-d)
        lower = float((1.0 - sf(-lo.isf(-d))).mean()) / math.exp(-d)
        for side, ratio in (("upper", upper), ("lower", lower)):
            assert 1 / limit <= ratio <= limit, (name, side, score, ratio)


def test_a_value_just_past_a_bounded_sample_is_rare_but_no_alarm() -> None:
    """Past the extreme of an abruptly ending sample its end is not known: a value 1 % of the
    range beyond is rarer than the sample's extreme but scores below 9 nats (a continuation
    with the fitted law's own hazard, which diverges near an end, gave it tens of nats)."""
    rng = np.random.default_rng(2)
    values = rng.random(_SIZE)
    bank = NoiseBank(1, capacity=_SIZE)
    bank.learn_many(values[:, None], np.ones((_SIZE, 1), dtype=bool))
    bank.refit()
    top = float(values.max())
    probe = np.array([top, top + 0.01, top + 0.1, top + 1.0])[:, None]
    s = bank.score(probe, np.zeros(1, dtype=np.intp))[:, 0]
    assert (np.diff(s) > 0).all()  # far values stay ordered
    assert s[1] >= math.log(_SIZE + 1) - math.log(2.0) - 1.0
    assert s[1] < 9.0, s

"""The noise bank's refit equals its plain definition (ties, zeros, NaN, sizes).

The body (knots, their mid-rank probabilities, the median) and the tails' thresholds bit for
bit; the tails' fitted shapes, scales and ``log P(X > u)`` to a relative 1e-12: the compiled
refit sums the probability-weighted moments in a loop (numpy: a matrix product) and takes the
math library's ``log``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from stream_rca.core.noise import SORTS, NoiseBank, Sort, _event_k
from stream_rca.core.tails import fit_tail_sorted

FloatArray = npt.NDArray[np.float64]


def _tie_runs(asc: FloatArray) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """First and last index of the run of ties at every position (neighbours that differ)."""
    g, n = asc.shape
    idx = np.broadcast_to(np.arange(n), (g, n))
    starts = np.ones((g, n), dtype=bool)
    starts[:, 1:] = asc[:, 1:] != asc[:, :-1]
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=1)
    rev = asc[:, ::-1]
    starts_rev = np.ones((g, n), dtype=bool)
    starts_rev[:, 1:] = rev[:, 1:] != rev[:, :-1]
    last = (n - 1 - np.maximum.accumulate(np.where(starts_rev, idx, 0), axis=1))[:, ::-1]
    return first, last


def _reference(bank: NoiseBank, rows: npt.NDArray[np.intp]) -> dict[str, FloatArray]:
    """The fitted arrays of ``rows`` (those a refit now rebuilds), by the definition.

    Rows of one size are fitted together, as the bank does: the tail fit's matrix product
    may round differently with another number of rows.
    """
    n_all = np.minimum(bank.count[rows], bank.capacity)
    valid = np.arange(bank.capacity)[None, :] < n_all[:, None]
    sorted_all = np.sort(np.where(valid, bank.samples[rows], np.inf), axis=1)
    out: dict[str, FloatArray] = {
        name: np.zeros((bank.n_nodes, bank.n_knots)) for name in ("knots", "below", "above")
    }
    out.update({name: np.zeros(bank.n_nodes) for name in ("median",)})
    for side in ("hi", "lo"):
        for f in ("u", "sigma", "xi", "log_pu"):
            out[f"{side}.{f}"] = np.zeros(bank.n_nodes)
    for size in np.unique(n_all):
        pick = np.flatnonzero(n_all == size)
        r, asc = rows[pick], sorted_all[pick, : int(size)]
        n = int(size)
        n1 = n + 1.0
        out["median"][r] = np.median(asc, axis=1)
        k = 1 if n < 4 else _event_k(n, bank.tail_fraction, bank.min_tail)
        lo_rank, hi_rank = (0, n - 1) if n < 4 else (k, n - k - 1)
        k_pos = np.linspace(lo_rank, hi_rank, bank.n_knots).round().astype(np.intp)
        knots = asc[:, k_pos]
        first, last = _tie_runs(asc)
        lt, le = first[:, k_pos], last[:, k_pos] + 1
        out["knots"][r], out["below"][r], out["above"][r] = knots, (lt + 0.5) / n1, (le + 0.5) / n1
        iqr = asc[:, (3 * (n - 1)) // 4] - asc[:, (n - 1) // 4]
        floor = np.maximum(bank.min_scale[r], 1e-3 * iqr)
        top, bottom = asc[:, ::-1][:, :k], -asc[:, :k]
        log_hi = np.log((n - le[:, -1] + 0.5) / n1)
        log_lo = np.log((lt[:, 0] + 0.5) / n1)
        hi = fit_tail_sorted(top, knots[:, -1], log_hi, floor, bank.caution)
        lo = fit_tail_sorted(bottom, -knots[:, 0], log_lo, floor, bank.caution)
        for side, tail in (("hi", hi), ("lo", lo)):
            for f in ("u", "sigma", "xi", "log_pu"):
                out[f"{side}.{f}"][r] = getattr(tail, f)
    return {name: a[rows] for name, a in out.items()}


def _fitted(bank: NoiseBank, rows: npt.NDArray[np.intp]) -> dict[str, FloatArray]:
    got: dict[str, FloatArray] = {"knots": bank._knots, "below": bank._below}
    got["above"] = bank._above
    got["median"] = bank._median
    hi, lo = bank.tails()
    for side, tail in (("hi", hi), ("lo", lo)):
        for f in ("u", "sigma", "xi", "log_pu"):
            got[f"{side}.{f}"] = getattr(tail, f)
    return {name: a[rows] for name, a in got.items()}


def _values(kind: str, rng: np.random.Generator, shape: tuple[int, int]) -> FloatArray:
    if kind == "normal":
        return rng.normal(size=shape)
    if kind == "counts":  # few distinct values: knots tied to their neighbours
        return rng.integers(0, 5, size=shape).astype(np.float64)
    if kind == "availability":  # one value most of the time
        return np.where(rng.random(shape) < 0.9, 1.0, rng.random(shape))
    x = rng.standard_t(2, size=shape)  # zeros of both signs, NaN and infinities
    u = rng.random(shape)
    x[u < 0.2] = 0.0
    x[(u > 0.2) & (u < 0.3)] = -0.0
    x[(u > 0.3) & (u < 0.31)] = np.nan
    x[(u > 0.31) & (u < 0.32)] = np.inf
    return x


@pytest.mark.parametrize("kind", ["normal", "counts", "availability", "nasty"])
@pytest.mark.parametrize(
    ("capacity", "rows", "block", "n_knots"), [(64, 5, 7, 33), (16, 3, 1, 5), (200, 4, 50, 9)]
)
@pytest.mark.parametrize("share", [0.8, 1.0], ids=["sizes-differ", "one-size"])
@pytest.mark.parametrize("sort", ["numpy", "resort"])
def test_refit_equals_its_definition(
    kind: str,
    capacity: int,
    rows: int,
    block: int,
    n_knots: int,
    share: float,
    sort: Sort,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows learning 80 % of the time hold values of many sizes while they fill; rows
    learning every value hold one size (the path that sorts only the slots in use). Full
    rows are sorted by either of the process's sorts (:class:`SortChoice`)."""
    monkeypatch.setattr(SORTS, "method", sort)
    rng = np.random.default_rng(7)
    bank = NoiseBank(rows, capacity, n_knots=n_knots, caution=0.25, seed=3)
    bank.min_scale = np.full(rows, 1e-6)
    with np.errstate(invalid="ignore"):  # infinities in the nasty stream
        for step in range(3 * capacity // block + 3):
            bank.learn_many(_values(kind, rng, (block, rows)), rng.random((block, rows)) < share)
            changed = np.flatnonzero(bank.count != bank.fitted_count)
            bank.refit()
            want, got = _reference(bank, changed), _fitted(bank, changed)
            for name in want:
                if name.endswith((".sigma", ".xi", ".log_pu")):
                    np.testing.assert_allclose(
                        got[name], want[name], rtol=1e-12, atol=0.0, err_msg=f"{name} {step}"
                    )
                    continue
                # bytes: NaN equals NaN; + 0.0 makes -0.0 and 0.0 one value, as a sort does not
                # order zeros of both signs (numpy's SIMD sorts put them either way)
                assert (want[name] + 0.0).tobytes() == (got[name] + 0.0).tobytes(), (name, step)

"""The two exact sorts of full reservoir rows give the same floats, and the process keeps
the faster (:class:`~stream_rca.core.noise.SortChoice`)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import numpy.typing as npt
import pytest

from stream_rca.core.compiled import resort_rows
from stream_rca.core.noise import SORTS, NoiseBank, Sort, SortChoice

FloatArray = npt.NDArray[np.float64]


def _rows(kind: str, rng: np.random.Generator, shape: tuple[int, int]) -> FloatArray:
    if kind == "normal":
        return rng.normal(size=shape)
    if kind == "ties":  # few distinct values, zeros of both signs among them
        return np.round(rng.normal(size=shape)) * np.where(rng.random(shape) < 0.5, 1.0, -1.0)
    return np.where(rng.random(shape) < 0.9, 1.0, rng.random(shape))  # availability


@pytest.mark.parametrize("kind", ["normal", "ties", "availability"])
@pytest.mark.parametrize("shift", [0.0, 1e-3, 0.3])
def test_resort_sorts_moved_rows_and_keeps_their_order(kind: str, shift: float) -> None:
    """Rows sorted once, then moved a little (as a refresh of the residuals moves them) and
    given new values in some slots: the resort gives numpy's sorted values (zeros aside, which
    a refit makes 0.0) and the slots of those values."""
    rng = np.random.default_rng(3)
    samples = _rows(kind, rng, (6, 128))
    order = np.argsort(samples, axis=1).astype(np.int32)
    samples = samples + shift * rng.normal(size=samples.shape)
    fresh = rng.random(samples.shape) < 0.05
    fresh[0] = False  # a row without new values
    fresh[1, :] = True  # a row of new values only
    samples[fresh] = _rows(kind, rng, (int(fresh.sum()), 1))[:, 0]
    rows = np.array([5, 0, 1, 3], dtype=np.intp)  # any rows, in any order
    before = order.copy()
    asc, ok = resort_rows(samples, rows, order, fresh, 64 * samples.shape[1])
    assert ok.all()
    want = np.sort(samples[rows], axis=1)
    assert (asc + 0.0).tobytes() == (want + 0.0).tobytes()
    for i, r in enumerate(rows):
        assert sorted(order[r].tolist()) == list(range(samples.shape[1]))  # a permutation
        np.testing.assert_array_equal(samples[r, order[r]], asc[i])
    untouched = np.setdiff1d(np.arange(6), rows)
    np.testing.assert_array_equal(order[untouched], before[untouched])


def test_resort_leaves_rows_with_nan_or_far_moves_to_the_caller() -> None:
    rng = np.random.default_rng(4)
    samples = rng.normal(size=(3, 64))
    order = np.argsort(samples, axis=1).astype(np.int32)
    fresh = np.zeros(samples.shape, dtype=bool)
    samples[0, 10] = np.nan
    samples[1] = -samples[1]  # every value out of place: many more moves than the budget
    _, ok = resort_rows(samples, np.arange(3), order, fresh, 200)
    assert ok.tolist() == [False, False, True]


def _stream(sort: Sort | None, monkeypatch: pytest.MonkeyPatch) -> list[list[FloatArray]]:
    """A bank learning a stream whose held values move between refits, with ties, zeros of
    both signs and a NaN; its fitted arrays after each refit."""
    choice = SortChoice(trials=4, clock=time.perf_counter)
    choice.method = sort
    monkeypatch.setattr("stream_rca.core.noise.SORTS", choice)
    rng = np.random.default_rng(0)
    rows = 5
    bank = NoiseBank(rows, capacity=64)
    out = []
    for step in range(300):
        v = rng.normal(size=(4, rows))
        v[:, 0] = np.round(v[:, 0])
        v[:, 1] = np.where(rng.random(4) < 0.5, 0.0, -0.0)
        if step == 150:
            v[0, 2] = np.nan
        bank.learn_many(v, np.ones(v.shape, dtype=bool))
        bank.samples[3:] += 1e-3 * rng.normal(size=bank.samples[3:].shape)  # a refresh
        bank.refit(np.arange(rows))
        fitted = (bank._knots, bank._below, bank._above, bank._median, bank._hi_rows)
        out.append([a.copy() for a in (*fitted, bank._lo_rows)])
    if sort is None:
        assert choice.method in ("numpy", "resort")  # the trials decided
    return out


def test_both_sorts_and_the_trials_refit_to_the_same_floats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bit for bit, signs of zeros included: what the process chooses changes no score."""
    numpy_sorted = _stream("numpy", monkeypatch)
    for other in (_stream("resort", monkeypatch), _stream(None, monkeypatch)):
        for a, b in zip(itertools.chain(*numpy_sorted), itertools.chain(*other), strict=True):
            assert a.tobytes() == b.tobytes()


def test_a_refit_reads_every_zero_as_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's vectorised sorts may turn ``-0.0`` into ``0.0`` and back; a refit makes them
    all ``0.0`` (here the knots of a row that is mostly zeros)."""
    for sort in ("numpy", "resort"):
        monkeypatch.setattr(SORTS, "method", sort)
        bank = NoiseBank(1, capacity=32)
        values = np.where(np.arange(96) % 2, -0.0, 0.0)[:, None]
        values[::7] = 1.0
        for start in range(0, 96, 16):
            bank.learn_many(values[start : start + 16], np.ones((16, 1), dtype=bool))
            bank.refit()
        zeros = bank._knots[bank._knots == 0.0]
        assert zeros.size
        assert not np.signbit(zeros).any()


def test_a_restored_bank_refits_as_the_one_it_was_saved_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The order a resort starts from is not saved: a restored bank sorts its rows afresh
    once, and goes on with the same floats."""
    monkeypatch.setattr(SORTS, "method", "resort")
    rng = np.random.default_rng(5)
    bank = NoiseBank(3, capacity=32)
    for _ in range(20):
        bank.learn_many(rng.normal(size=(4, 3)), np.ones((4, 3), dtype=bool))
        bank.refit()
    twin = NoiseBank.from_state(bank.to_state())
    for _ in range(10):
        values = rng.normal(size=(4, 3))
        for b in (bank, twin):
            b.learn_many(values, np.ones((4, 3), dtype=bool))
            b.refit()
        assert bank._knots.tobytes() == twin._knots.tobytes()
        assert bank._hi_rows.tobytes() == twin._hi_rows.tobytes()


def test_the_trials_alternate_and_keep_the_faster_per_row() -> None:
    ticks = iter(range(1000))
    choice = SortChoice(trials=3, clock=lambda: float(next(ticks)))
    seen = []
    while choice.method is None:
        method = choice.next()
        seen.append(method)
        # the resort takes 1 s for 4 rows, numpy 1 s for 2 rows: the resort is faster per row
        choice.record(method, 1.0, 4 if method == "resort" else 2)
    assert seen == ["numpy", "resort"] * 3
    assert choice.method == "resort"
    choice.record("numpy", 0.0, 100)  # decided: later timings change nothing
    assert choice.next() == "resort"
    slower = SortChoice(trials=2)
    for method, seconds in (("numpy", 1.0), ("resort", 3.0)) * 2:
        slower.record(method, seconds, 1)  # type: ignore[arg-type]
    assert slower.method == "numpy"


def test_without_a_clock_numpy_sorts_and_no_order_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core reads no clock: unless an entry point gives one, numpy's sort runs."""
    choice = SortChoice()
    monkeypatch.setattr("stream_rca.core.noise.SORTS", choice)
    bank = NoiseBank(2, capacity=16)
    for _ in range(3):
        bank.learn_many(np.ones((16, 2)), np.ones((16, 2), dtype=bool))
        bank.refit()
    assert choice.next() == "numpy"
    assert choice.method is None
    assert bank._order is None

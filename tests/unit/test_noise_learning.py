"""The compiled reservoir updates equal their numpy definition, value for value.

:meth:`NoiseBank.learn_many` puts each learned value in a free slot while there is one, then in
the slot a SplitMix64 hash of the row and the value's position picks (a later value wins a
slot picked twice); the linear mechanisms' models keep, beside each held residual, the
snapshot's values of its node and parents. The reference below is both written with numpy over
whole arrays (the code before it was compiled). Slots, samples, counts and the values kept
must be equal bit for bit: they are copies and integer arithmetic, no rounding.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.compiled import hold
from stream_rca.core.linear import LinearBank
from stream_rca.core.noise import NoiseBank

IntArray = npt.NDArray[np.intp]


def _mix64(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        out: npt.NDArray[np.uint64] = z ^ (z >> np.uint64(31))
    return out


def _place_reference(
    bank: NoiseBank, values: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]
) -> tuple[IntArray, IntArray, IntArray]:
    step, rows = np.nonzero(mask)  # row-major: in block order
    if rows.size == 0:
        return step, rows, rows
    seen = np.cumsum(mask, axis=0)
    position = bank.count[rows] + seen[step, rows] - 1
    slots = position.copy()
    full = slots >= bank.capacity
    if full.any():
        with np.errstate(over="ignore"):
            key = (
                np.uint64(bank.seed % 2**64) * np.uint64(0x9E3779B97F4A7C15)
                + rows[full].astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)
                + position[full].astype(np.uint64)
            )
        slots[full] = (_mix64(key) % np.uint64(bank.capacity)).astype(np.int64)
    bank.samples[rows, slots] = values[step, rows]
    bank.count += seen[-1]
    return step, rows, slots


@given(
    seed=st.integers(0, 2**63),
    capacity=st.sampled_from([16, 64, 100]),
    blocks=st.lists(st.integers(1, 90), min_size=1, max_size=8),
    density=st.sampled_from([0.0, 0.3, 1.0]),
)
@settings(max_examples=60, deadline=None)
def test_placing_values_equals_the_numpy_definition(
    seed: int, capacity: int, blocks: list[int], density: float
) -> None:
    rng = np.random.default_rng(seed % 2**32)
    ours, theirs = (NoiseBank(5, capacity, seed=seed) for _ in range(2))
    for size in blocks:
        values = rng.normal(size=(size, 5))
        mask = rng.random((size, 5)) < density
        got = ours.learn_many(values, mask)
        want = _place_reference(theirs, values, mask)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(ours.count, theirs.count)
        assert ours.samples.tobytes() == theirs.samples.tobytes()


def test_values_kept_beside_each_residual_equal_the_numpy_definition() -> None:
    rng = np.random.default_rng(4)
    none = np.zeros(0, dtype=np.intp)
    parents = [none, none, np.array([0, 1]), np.array([2]), np.array([0, 1, 2, 3]), none]
    bank = LinearBank([np.asarray(p, dtype=np.intp) for p in parents])
    noise = NoiseBank(6, 32, seed=2)
    held_y = np.zeros((bank.ranked.size, 32))
    held_x = np.zeros((bank.sources.size, 32))
    want_y, want_x = held_y.copy(), held_x.copy()
    for _ in range(6):
        x = rng.normal(size=(20, 6))
        step, rows, slots = noise.learn_many(x, rng.random((20, 6)) < 0.8)
        hold(
            x,
            (step, rows, slots),
            (bank.rank, bank.degree, bank.offsets, bank.sources),
            held_y,
            held_x,
        )
        # the definition: every value's node, then each k-th parent of nodes with more than k
        rank = bank.rank[rows]
        sel = np.flatnonzero(rank >= 0)
        st_, rk, sl = step[sel], rank[sel], slots[sel]
        want_y[rk, sl] = x[st_, rows[sel]]
        for k, size in enumerate(bank.blocks):
            has = rk < size
            row = bank.offsets[k] + rk[has]
            want_x[row, sl[has]] = x[st_[has], bank.sources[row]]
        assert held_y.tobytes() == want_y.tobytes()
        assert held_x.tobytes() == want_x.tobytes()

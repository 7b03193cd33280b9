"""Aligner.add_rows (plain runs placed by one compiled loop) gives what add_row gives.

Random runs of rows: duplicates, revisions, late rows, rows far ahead (held apart), few open
windows (forced out), unknown nodes, empty rows, runs long and short, on fresh aligners and
on aligners with open windows, a watermark and held messages. Each run goes through
``add_rows`` and through ``add_row`` row by row; statuses, snapshots, the watermark named for
late rows, counts and the aligner's whole state must be equal.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.io.aligner import MIN_RUN, Aligner, AlignStatus
from stream_rca.io.rowruns import MAX_SPAN, place_run
from tests.fixtures.fresh import run_fresh

from .test_row_lane import plain

T0 = 1_800_000_000.0
NODES = ("a", "b", "c")

value = st.sampled_from([0.0, -0.0, 1.0, 2.0, 1e300])
values_st = st.one_of(
    st.dictionaries(st.sampled_from(NODES), value, min_size=1, max_size=1),
    st.dictionaries(st.sampled_from(NODES), value, min_size=1, max_size=3),
    st.fixed_dictionaries(dict.fromkeys(NODES, value)),  # every node: the batch form's rows
)


@st.composite
def stream(draw: st.DrawFn, max_size: int) -> list[tuple[int, float, dict[str, float]]]:
    """Rows mostly in order (a window or less apart), some out of order, some far ahead."""
    far = draw(st.sampled_from([[], [], [100], [8, 100]]))  # often none far ahead
    moves = st.sampled_from([0, 0, 0, 0, 0, 0, 1, 1, 1, -1, -2, 3, *far])
    w, out = 0, []
    for move in draw(st.lists(moves, min_size=max_size // 2, max_size=max_size)):
        at = w + move
        if move < 8:  # a row far ahead does not move the stream's own clock
            w = max(w, at)
        out.append((at, draw(st.sampled_from([0.0, 0.5, 9.99])), draw(values_st)))
    return out


def run(
    al: Aligner, rows: list[tuple[int, float, dict[str, float]]], by_rows: bool, min_run: int = 1
) -> object:
    ts = [T0 + 10.0 * w + frac for w, frac, _ in rows]
    values = [dict(v) for _, _, v in rows]
    if by_rows:
        return al.add_rows(ts, values, min_run=min_run)
    statuses, made, late = [], {}, {}
    for i, (t, v) in enumerate(zip(ts, values, strict=True)):
        got, snaps = al.add_row(t, v)
        statuses.append(got)
        if snaps:
            made[i] = snaps
        if any(s.value == "late" for s in got):
            late[i] = al.watermark
    return statuses, made, late


@settings(max_examples=400, deadline=None)
@given(
    whole=stream(96),
    split=st.integers(0, 12),
    extra=st.sampled_from([None, "x", "empty"]),
    lateness=st.sampled_from([0.0, 5.0, 15.0]),
    most=st.sampled_from([1, 2, 3, 1024, 1024, 1024]),
    ahead=st.sampled_from([None, 20.0]),
    min_run=st.sampled_from([1, 2, 8, MIN_RUN]),
)
def test_add_rows_is_add_row_on_each_row(
    whole: list[tuple[int, float, dict[str, float]]],
    split: int,
    extra: str | None,
    lateness: float,
    most: int,
    ahead: float | None,
    min_run: int,
) -> None:
    def make() -> Aligner:
        return Aligner(NODES, 10.0, lateness, graph="g", max_open_windows=most, max_ahead=ahead)

    before, rows = whole[:split], whole[split:]
    if extra is not None and rows:  # one row the fast path cannot take
        rows = [*rows]
        w, frac, _ = rows[len(rows) // 2]
        rows[len(rows) // 2] = (w, frac, {} if extra == "empty" else {"x": 1.0})
    runs, one_by_one = make(), make()
    run(runs, before, by_rows=False)  # the same state before: open windows, holds, a floor
    run(one_by_one, before, by_rows=False)
    assert run(runs, rows, True, min_run) == run(one_by_one, rows, by_rows=False)
    assert plain(runs.to_state()) == plain(one_by_one.to_state())
    assert runs.forced == one_by_one.forced
    assert runs.flush() == one_by_one.flush()


def test_a_long_plain_run_is_placed_at_once() -> None:
    """Every row of an in-order single-form stream is placed in one run of the loop."""
    nodes = [f"n{j}" for j in range(5)]
    al = Aligner(nodes, 1.0, graph="g")
    ts = [T0 + i / 5 for i in range(200)]
    rows = [{nodes[i % 5]: float(i)} for i in range(200)]
    plan = place_run(
        np.array(ts),
        np.arange(201, dtype=np.int64),
        np.array([i % 5 for i in range(200)], dtype=np.int64),
        np.arange(200, dtype=np.float64),
        open_windows={},
        watermark=None,
        floor=None,
        step=1.0,
        allowed_lateness=0.0,
        max_ahead=5.0,
        max_open_windows=1024,
        n_nodes=5,
    )
    assert plan is not None
    assert plan.rows == 200
    assert (plan.codes == 0).all()
    assert (plan.emitted_at >= 0).sum() == 39  # the 40th window waits for the next row
    assert plan.opened.sum() == 1
    statuses, made, late = al.add_rows(ts, rows)
    assert statuses == [(AlignStatus.ACCEPTED,)] * 200
    assert late == {}
    assert sum(len(s) for s in made.values()) == 39
    assert [s.values for s in made[5]] == [{f"n{j}": float(j) for j in range(5)}]
    assert made[5][0].ts == math.floor(T0)
    assert al.open_windows == 1


def test_times_too_scattered_for_one_grid_go_row_by_row() -> None:
    al, ref = Aligner(["a"], 1.0, graph="g"), Aligner(["a"], 1.0, graph="g")
    ts = [T0 + (i % 2) * (MAX_SPAN + 10) + i for i in range(MIN_RUN)]
    rows = [{"a": float(i)} for i in range(MIN_RUN)]
    got = al.add_rows(ts, rows)
    want = [ref.add_row(t, dict(r)) for t, r in zip(ts, rows, strict=True)]
    assert got[0] == [w[0] for w in want]
    assert plain(al.to_state()) == plain(ref.to_state())


def _rows_after_warm() -> tuple[int, int]:
    """The loop's compiled signatures after ``warm``, and after a batch's rows."""
    from stream_rca.io import rowruns

    rowruns.warm()
    before = len(rowruns._place.signatures)
    al = Aligner(NODES, 10.0, 5.0, graph="g")
    al.add_rows([T0 + i for i in range(200)], [{NODES[i % 3]: float(i)} for i in range(200)])
    al.add_rows([T0 + 300.0 + i for i in range(100)], [dict.fromkeys(NODES, 1.0)] * 100)
    return before, len(rowruns._place.signatures)


def test_after_warm_a_run_compiles_nothing() -> None:
    # in a fresh interpreter: in this one, earlier tests may have compiled the loop
    code = "import tests.unit.test_row_runs as t; print(*t._rows_after_warm())"
    before, after = map(int, run_fresh(code).split())
    assert before == after == 1

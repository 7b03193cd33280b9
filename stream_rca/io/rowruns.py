"""A run of rows placed in their windows in one compiled loop: :meth:`Aligner.add_row` on
each row, over arrays.

:meth:`Aligner.add_rows <stream_rca.io.aligner.Aligner.add_rows>` hands the rows of one graph
in a batch to :func:`place_run`. It follows ``add_row``'s plain path row by row, in a loop
compiled with numba, over a dense grid of the windows the run can touch (from the lowest
window index among the rows and the open windows to the highest), and stops at the first row
that is not plain:

- a row held apart (more than ``max_ahead`` past the watermark), whose samples the watermark
  rule must see one message at a time;
- a row met with ``max_open_windows`` windows open (one may be forced out).

For each other row, in order, as ``add_row`` does: a row whose window is below the floor of
emitted windows, or ends at or before ``watermark - allowed_lateness``, is late (every sample);
else each sample is accepted (its node had no value in the window), a duplicate (the same
value) or a revision (last write wins); the watermark moves to the row's time if later; then
the windows due (``end <= watermark - allowed_lateness``) are emitted, lowest first. The
lowest window that may still be open is a cursor: a window below it is due, so no later sample
opens it (it would be late).

The aligner applies what the loop did, places the row it stopped at through ``add_row`` and
goes on (``tests/unit/test_row_runs.py`` compares ``add_rows`` with ``add_row`` on random
rows: statuses, snapshots, counts and state).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

__all__ = [
    "ACCEPTED",
    "DUPLICATE",
    "LATE",
    "REVISED",
    "RunPlan",
    "place_run",
    "warm",
    "window_index",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ACCEPTED, DUPLICATE, REVISED, LATE = 0, 1, 2, 3
"""Status codes of :attr:`RunPlan.codes`."""
MAX_SPAN = 1 << 16
"""Most windows a run's grid spans (beyond: a run of very scattered times, row by row)."""

_F = TypeVar("_F", bound=Callable[..., Any])
_njit = numba.njit(cache=True, nogil=True, error_model="numpy")


def _jit(function: _F) -> _F:
    return cast(_F, _njit(function))


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What placing the first :attr:`rows` rows of a run did.

    Attributes
    ----------
    rows
        How many rows, from the first, were placed (up to the first row that is not plain).
    codes
        The status code of every sample of those rows, in row and message order.
    watermark
        Per placed row, the watermark after it (``-inf`` while there is none).
    base
        The window index of the grid's first row.
    values, present
        ``(span, nodes)``: each window's values after the placed rows, and which nodes have one
        (rows of windows emitted or never opened are to be ignored).
    opened
        Per window of the grid, whether it is open after the placed rows.
    emitted_at
        Per window of the grid, the placed row that emitted it, ``-1`` if none did.
    floor
        The floor of emitted windows after the placed rows (``None``: none yet).
    """

    rows: int
    codes: npt.NDArray[np.int8]
    watermark: FloatArray
    base: int
    values: FloatArray
    present: BoolArray
    opened: BoolArray
    emitted_at: IntArray
    floor: int | None


@_jit
def _place(
    ts: FloatArray,
    offsets: IntArray,
    cols: IntArray,
    vals: FloatArray,
    base: int,
    grid: FloatArray,
    present: BoolArray,
    opened: BoolArray,
    n_open: int,
    wm: float,
    floor: int,
    has_floor: bool,
    step: float,
    lateness: float,
    max_ahead: float,
    most: int,
    codes: npt.NDArray[np.int8],
    after: FloatArray,
    emitted_at: IntArray,
) -> tuple[int, int, bool]:
    """The loop of :func:`place_run`; returns (rows placed, floor, whether there is one)."""
    has_wm = wm > -np.inf
    cursor = 0
    span = opened.size
    for r in range(ts.size):
        t = ts[r]
        if has_wm and t > wm + max_ahead:  # held apart
            return r, floor, has_floor
        if n_open >= most:  # a window may be forced out
            return r, floor, has_floor
        kk = math.floor(t / step)  # the window index, as Aligner finds it
        if (kk + 1) * step <= t:
            kk += 1
        elif kk * step > t:
            kk -= 1
        e0, e1 = offsets[r], offsets[r + 1]
        if (has_floor and kk < floor) or (has_wm and (kk + 1) * step <= wm - lateness):
            for e in range(e0, e1):
                codes[e] = LATE
            after[r] = wm
            continue
        w = kk - base
        if not opened[w]:
            opened[w] = True
            n_open += 1
        for e in range(e0, e1):
            c, v = cols[e], vals[e]
            if present[w, c]:
                codes[e] = DUPLICATE if grid[w, c] == v else REVISED
            else:
                codes[e] = ACCEPTED
                present[w, c] = True
            grid[w, c] = v
        if not has_wm or t > wm:
            wm = t
            has_wm = True
        after[r] = wm
        horizon = wm - lateness
        while cursor < span and (cursor + base + 1) * step <= horizon:  # due: emit if open
            if opened[cursor]:
                opened[cursor] = False
                n_open -= 1
                emitted_at[cursor] = r
                end = cursor + base + 1
                if not has_floor or end > floor:
                    floor = end
                    has_floor = True
            cursor += 1
    return ts.size, floor, has_floor


def place_run(
    ts: FloatArray,
    offsets: IntArray,
    columns: IntArray,
    values: FloatArray,
    *,
    open_windows: dict[int, dict[int, float]],
    watermark: float | None,
    floor: int | None,
    step: float,
    allowed_lateness: float,
    max_ahead: float,
    max_open_windows: int,
    n_nodes: int,
) -> RunPlan | None:
    """Place a run of rows (see the module docstring); ``None`` for a run too scattered.

    Parameters
    ----------
    ts
        Per row, its time.
    offsets
        ``(rows + 1,)``: where each row's samples start in ``columns`` and ``values`` (every
        row has at least one), and their end.
    columns, values
        Per sample, in row and message order: its node's column and its finite value.
    open_windows
        The aligner's open windows: window index to column to value.
    watermark, floor
        The aligner's watermark (``None`` before any) and floor of emitted windows.
    step, allowed_lateness, max_ahead, max_open_windows, n_nodes
        The aligner's settings.
    """
    low = window_index(float(ts.min()), step)  # the index is not decreasing in the time
    high = window_index(float(ts.max()), step)
    if open_windows:
        low, high = min(low, min(open_windows)), max(high, max(open_windows))
    span = high - low + 1
    if span > MAX_SPAN:
        return None
    grid = np.zeros((span, n_nodes))
    present = np.zeros((span, n_nodes), dtype=np.bool_)
    opened = np.zeros(span, dtype=np.bool_)
    for w, cells in open_windows.items():
        opened[w - low] = True
        for c, v in cells.items():
            grid[w - low, c] = v
            present[w - low, c] = True
    codes = np.empty(columns.size, dtype=np.int8)
    after = np.empty(ts.size)
    emitted_at = np.full(span, -1, dtype=np.int64)
    rows, end, has_floor = _place(
        ts,
        offsets,
        columns,
        values,
        low,
        grid,
        present,
        opened,
        len(open_windows),
        -np.inf if watermark is None else watermark,
        0 if floor is None else floor,
        floor is not None,
        step,
        allowed_lateness,
        max_ahead,
        max_open_windows,
        codes,
        after,
        emitted_at,
    )
    return RunPlan(
        rows=rows,
        codes=codes[: offsets[rows]],
        watermark=after[:rows],
        base=low,
        values=grid,
        present=present,
        opened=opened,
        emitted_at=emitted_at,
        floor=end if has_floor else None,
    )


def window_index(ts: float, step: float) -> int:
    """``k`` with ``k * step <= ts < (k + 1) * step`` in floating point, as ``Aligner`` finds it."""
    k = math.floor(ts / step)
    if (k + 1) * step <= ts:
        k += 1
    elif k * step > ts:
        k -= 1
    return k


def warm() -> None:
    """Compile (or load from the cache) the loop, on a tiny run."""
    place_run(
        np.array([0.5, 1.5]),
        np.array([0, 1, 2], dtype=np.int64),
        np.array([0, 0], dtype=np.int64),
        np.array([1.0, 2.0]),
        open_windows={},
        watermark=None,
        floor=None,
        step=1.0,
        allowed_lateness=0.0,
        max_ahead=5.0,
        max_open_windows=8,
        n_nodes=1,
    )

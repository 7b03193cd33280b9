"""A run of plain rows placed in their windows at once: what :meth:`Aligner.add_row` does to
each row, as array operations.

:meth:`Aligner.add_rows <stream_rca.io.aligner.Aligner.add_rows>` hands the rows of one graph
in a batch to :func:`plan_run`, which works out, from the aligner's state and the rows alone,
what record-by-record placement would do to the longest prefix of *plain* rows, and stops at
the first row that is not:

- a row held apart (more than ``max_ahead`` past the watermark as it stands before the row),
  whose samples the watermark rule must see one message at a time;
- a row met with ``max_open_windows`` windows open (one may be forced out).

For that prefix, with ``wm`` the watermark before a row (``wm_0`` the aligner's, then the
running maximum of the times of the rows not late by the floor):

- a row is **late** when its window is below the floor of the windows already emitted, or
  ``end <= wm - allowed_lateness``. Any window emitted during the run is below the watermark's
  horizon, so the floor needs no updating inside the run (no window is forced out in it);
- a late row's time is below ``wm`` (its window ended before it) or it is late by the floor:
  either way it does not move the watermark, and it is left out of the running maximum;
- each other sample is **accepted** if its node had no value in its window (among the open
  window's values and the run's earlier samples), else a **duplicate** (the same value) or a
  **revision** (last write wins);
- a window is **emitted** at the first row not late after which ``end <= wm -
  allowed_lateness``, in window order within a row, with every value written to it by then
  (a later sample of it is late). It cannot be due at a row before the one that opened it:
  that row would have been late.

All of it is a property of a prefix, so the plan of the rows before the first row that is not
plain is that of record-by-record placement; the aligner applies it, places that row through
:meth:`Aligner.add_row` and plans the rest (``tests/unit/test_row_runs.py`` checks it against
``add_row`` on random rows: statuses, snapshots, counts and state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ACCEPTED", "DUPLICATE", "LATE", "REVISED", "RunPlan", "plan_run", "window_indices"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ACCEPTED, DUPLICATE, REVISED, LATE = 0, 1, 2, 3
"""Status codes of :attr:`RunPlan.codes`."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What placing the first :attr:`rows` rows of a run does, as arrays.

    Attributes
    ----------
    rows
        How many rows, from the first, the plan covers (the first row that is not plain, or
        all of them).
    codes
        The status code of every sample of those rows, in row and message order.
    late
        Per covered row, whether it is late (all its samples are).
    watermark
        Per covered row, the watermark after it (``-inf`` while there is none).
    windows
        Window indices, sorted: the open windows before the run and those the run opens.
    values, present
        ``(windows, nodes)``: each window's values after the covered rows, and which nodes
        have one.
    emitted_at
        Per window, the covered row that emits it, ``-1`` if none does (still open).
    """

    rows: int
    codes: IntArray
    late: BoolArray
    watermark: FloatArray
    windows: IntArray
    values: FloatArray
    present: BoolArray
    emitted_at: IntArray


def window_indices(ts: FloatArray, step: float) -> IntArray:
    """``k`` with ``k * step <= ts < (k + 1) * step`` in floating point, as ``Aligner`` finds it."""
    k = np.floor(ts / step).astype(np.int64)
    up = (k + 1) * step <= ts
    k[up] += 1
    down = ~up & (k * step > ts)
    k[down] -= 1
    return k


def plan_run(
    ts: FloatArray,
    k: IntArray,
    lengths: IntArray,
    columns: IntArray,
    values: FloatArray,
    *,
    open_windows: Mapping[int, Mapping[int, float]],
    watermark: float | None,
    floor: int | None,
    step: float,
    allowed_lateness: float,
    max_ahead: float,
    max_open_windows: int,
    n_nodes: int,
) -> RunPlan:
    """Plan the placement of a run of rows (see the module docstring).

    Parameters
    ----------
    ts, k, lengths
        Per row: its time, its window index (:func:`window_indices`), its number of samples
        (at least one).
    columns, values
        Per sample, in row and message order: its node's column and its finite value.
    open_windows
        The aligner's open windows: window index to column to value.
    watermark, floor
        The aligner's watermark (``None`` before any) and floor of emitted windows.
    step, allowed_lateness, max_ahead, max_open_windows, n_nodes
        The aligner's settings.
    """
    m = len(ts)
    base = -np.inf if watermark is None else watermark
    late_floor = (k < floor) if floor is not None else np.zeros(m, dtype=bool)
    moving = np.where(late_floor, -np.inf, ts)
    after = np.maximum(np.maximum.accumulate(moving), base)
    before = np.empty(m)
    before[0] = base
    before[1:] = after[:-1]
    known = before > -np.inf
    held = np.flatnonzero(known & (ts > before + max_ahead))
    cut = int(held[0]) if held.size else m
    late = late_floor | (known & ((k + 1) * step <= before - allowed_lateness))

    # the windows: those open before the run and those its rows (up to the cut) open
    calm = np.flatnonzero(~late[:cut])
    existing = np.fromiter(open_windows, dtype=np.int64, count=len(open_windows))
    new_k, first = np.unique(k[calm], return_index=True)
    windows = np.union1d(existing, new_k)
    opened = np.full(windows.size, -1, dtype=np.int64)  # the row that opened it
    fresh = ~np.isin(new_k, existing, assume_unique=True)
    opened[np.searchsorted(windows, new_k[fresh])] = calm[first[fresh]]
    ends = (windows + 1) * step
    horizon = after[calm] - allowed_lateness  # not decreasing
    emitted_at = np.full(windows.size, -1, dtype=np.int64)
    if calm.size:
        pos = np.searchsorted(horizon, ends, side="left")
        due = pos < calm.size
        emitted_at[due] = calm[pos[due]]

    # a row met with max_open_windows windows open is not plain
    if cut:
        change = np.zeros(cut + 1, dtype=np.int64)
        np.add.at(change, opened[opened >= 0] + 1, 1)
        np.add.at(change, emitted_at[emitted_at >= 0] + 1, -1)
        open_before = len(open_windows) + np.cumsum(change)[:cut]
        full = np.flatnonzero(open_before >= max_open_windows)
        if full.size:
            cut = int(full[0])
    valid = opened < cut  # open before the run, or opened by a covered row
    windows = windows[valid]
    emitted_at = np.where(emitted_at < cut, emitted_at, -1)[valid]

    # the samples of the covered rows: statuses, and each window's values after them
    n_samples = int(lengths[:cut].sum())
    row_of = np.repeat(np.arange(cut), lengths[:cut])
    cols, vals = columns[:n_samples], values[:n_samples]
    codes = np.full(n_samples, LATE, dtype=np.int64)
    placed = np.flatnonzero(~late[row_of])
    key = np.searchsorted(windows, k[row_of[placed]]) * n_nodes + cols[placed]
    order = np.argsort(key, kind="stable")
    sk, sv = key[order], vals[placed][order]
    first_of = np.ones(sk.size, dtype=bool)
    first_of[1:] = sk[1:] != sk[:-1]
    old = np.empty(sk.size)
    old[1:] = sv[:-1]
    has_old = ~first_of
    ex_key, ex_val = _existing(open_windows, windows, n_nodes)
    if ex_key.size and sk.size:
        where = np.flatnonzero(first_of)
        at = np.minimum(np.searchsorted(ex_key, sk[where]), ex_key.size - 1)
        hit = ex_key[at] == sk[where]
        old[where[hit]] = ex_val[at[hit]]
        has_old[where[hit]] = True
    sorted_codes = np.where(has_old, np.where(old == sv, DUPLICATE, REVISED), ACCEPTED)
    codes[placed[order]] = sorted_codes

    grid = np.full(windows.size * n_nodes, np.nan)
    present = np.zeros(windows.size * n_nodes, dtype=bool)
    grid[ex_key] = ex_val
    present[ex_key] = True
    last_of = np.ones(sk.size, dtype=bool)
    last_of[:-1] = sk[1:] != sk[:-1]
    grid[sk[last_of]] = sv[last_of]
    present[sk[last_of]] = True
    return RunPlan(
        rows=cut,
        codes=codes,
        late=late[:cut],
        watermark=after[:cut],
        windows=windows,
        values=grid.reshape(windows.size, n_nodes),
        present=present.reshape(windows.size, n_nodes),
        emitted_at=emitted_at,
    )


def _existing(
    open_windows: Mapping[int, Mapping[int, float]], windows: IntArray, n_nodes: int
) -> tuple[IntArray, FloatArray]:
    """The open windows' values as sorted flat keys ``window position * nodes + column``."""
    keys: list[int] = []
    vals: list[float] = []
    for w, cells in open_windows.items():
        pos = int(np.searchsorted(windows, w))
        for col, v in cells.items():
            keys.append(pos * n_nodes + col)
            vals.append(v)
    ka = np.array(keys, dtype=np.int64)
    order = np.argsort(ka, kind="stable")
    return ka[order], np.array(vals, dtype=np.float64)[order]

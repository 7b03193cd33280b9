"""Read wide metric tables (CSV, one column per node) into arrays or snapshots.

A wide CSV has a header row of node names and one row per time step::

    timestamp,db,api
    2023-11-14T22:13:20Z,0.10,0.42
    2023-11-14T22:18:20Z,,0.40

An optional timestamp column (named ``timestamp``, ``ts``, ``time`` or ``unix_timestamp``, in
any case) holds unix seconds or RFC 3339 date-times; without one, the row index (0, 1, ...)
is the time. An empty cell (or ``nan``) is a missing value. This module and
:mod:`stream_rca.io.petshop` are the only ones in :mod:`stream_rca.io` that read files.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from stream_rca.core.types import Snapshot
from stream_rca.errors import ConfigError, GraphError
from stream_rca.io.timestamps import parse_timestamp

__all__ = [
    "TIMESTAMP_COLUMNS",
    "MetricTable",
    "iter_wide_csv",
    "read_wide_csv",
]

TIMESTAMP_COLUMNS = ("timestamp", "ts", "time", "unix_timestamp")
"""Header names (compared case-insensitively) that mark the timestamp column."""

_MAX_NAMED = 10
PathLike = str | os.PathLike[str]


class MetricTable(NamedTuple):
    """A block of metric values: one row per time step, one column per node.

    It unpacks as ``nodes, timestamps, values = table``.

    Attributes
    ----------
    nodes
        Column names, in column order.
    timestamps
        Unix seconds (or row indices), shape ``(n_rows,)``.
    values
        Shape ``(n_rows, len(nodes))``; NaN where a value is missing.
    """

    nodes: tuple[str, ...]
    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]

    def snapshots(self, graph: str = "default") -> Iterator[Snapshot]:
        """One snapshot per row; missing (NaN) values are left out, ``end`` is ``None``.

        Examples
        --------
        >>> t = MetricTable(("a", "b"), np.array([0.0, 1.0]), np.array([[1.0, np.nan], [2.0, 3.0]]))
        >>> list(t.snapshots())
        [Snapshot(ts=0.0, values={'a': 1.0}, graph='default', end=None), \
Snapshot(ts=1.0, values={'a': 2.0, 'b': 3.0}, graph='default', end=None)]
        """
        for ts, row in zip(self.timestamps.tolist(), self.values.tolist(), strict=True):
            values = {n: v for n, v in zip(self.nodes, row, strict=True) if not math.isnan(v)}
            yield Snapshot(ts=ts, values=values, graph=graph)


def names(items: Iterable[str]) -> str:
    """``'a', 'b' and 3 more``: a bounded list of names for error messages."""
    seq = list(items)
    shown = ", ".join(repr(n) for n in seq[:_MAX_NAMED])
    return shown + (f" and {len(seq) - _MAX_NAMED} more" if len(seq) > _MAX_NAMED else "")


def parse_cell(text: str, where: str) -> float:
    """A value cell: empty or ``nan`` is NaN (missing), else a float; ``where`` names it."""
    text = text.strip()
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"{where}: {text!r} is not a number; leave the cell empty if the value is missing"
        ) from None


def parse_time_cell(text: str, where: str) -> float:
    """A timestamp cell: unix seconds or an RFC 3339 date-time; ``where`` names it."""
    try:
        return parse_timestamp(text.strip())
    except ValueError as exc:
        raise ConfigError(f"{where}: bad timestamp: {exc}") from None


def select_columns(
    columns: Sequence[str],
    nodes: Collection[str] | None,
    *,
    ignore_extra: bool,
    path: PathLike,
) -> tuple[tuple[str, ...], list[int]]:
    """Match the node columns of a file against the graph's nodes.

    Parameters
    ----------
    columns
        The node names of the file's columns (no timestamp column).
    nodes
        The graph's nodes, or ``None`` to take every column.
    ignore_extra
        Skip columns that are not nodes instead of raising.
    path
        The file, for messages.

    Returns
    -------
    tuple
        The output nodes (``nodes`` in its order, or every column) and, for each, its column
        index in ``columns`` or ``-1`` when the file has no such column (all missing).

    Raises
    ------
    ConfigError
        For a repeated or empty column name.
    GraphError
        For columns that are not nodes (unless ``ignore_extra``), or when no column is a node.
    """
    seen: dict[str, int] = {}
    repeated = []
    for j, col in enumerate(columns):
        if col in seen:
            repeated.append(col)
        seen[col] = j
    if repeated:
        raise ConfigError(f"{path}: repeated columns {names(repeated)}")
    if nodes is None:
        if "" in seen:
            raise ConfigError(f"{path}: column {seen[''] + 1} has no name")
        return tuple(columns), list(range(len(columns)))
    extra = [c for c in columns if c not in nodes]
    if extra and not ignore_extra:
        raise GraphError(
            f"{path}: columns {names(extra)} are not nodes of the graph; fix the file or "
            "the graph, or ignore extra columns"
        )
    if not any(n in seen for n in nodes):
        raise GraphError(f"{path}: no column is a node of the graph ({names(nodes)})")
    return tuple(nodes), [seen.get(n, -1) for n in nodes]


@dataclass(frozen=True, slots=True)
class _Layout:
    nodes: tuple[str, ...]
    index: list[int]  # column index in the row of each node, -1 for absent
    ts_col: int | None
    width: int


def _layout(
    path: PathLike, header: list[str] | None, nodes: Collection[str] | None, ignore_extra: bool
) -> _Layout:
    if not header:
        raise ConfigError(f"{path}: the file is empty; a wide CSV starts with a header row")
    header = [h.strip() for h in header]
    ts_cols = [
        j
        for j, h in enumerate(header)
        if h.lower() in TIMESTAMP_COLUMNS and (nodes is None or h not in nodes)
    ]
    if len(ts_cols) > 1:
        raise ConfigError(
            f"{path}: several timestamp columns ({names(header[j] for j in ts_cols)}); keep one"
        )
    ts_col = ts_cols[0] if ts_cols else None
    positions = [j for j in range(len(header)) if j != ts_col]
    out, index = select_columns(
        [header[j] for j in positions], nodes, ignore_extra=ignore_extra, path=path
    )
    return _Layout(out, [positions[i] if i >= 0 else -1 for i in index], ts_col, len(header))


def _rows(path: PathLike, layout: _Layout) -> Iterator[tuple[float, list[float]]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)
        row_number = 0
        for row in reader:
            if not row:
                continue
            where = f"{path}, line {reader.line_num}"
            if len(row) != layout.width:
                raise ConfigError(f"{where}: {len(row)} cells, the header has {layout.width}")
            ts = (
                float(row_number)
                if layout.ts_col is None
                else parse_time_cell(row[layout.ts_col], where)
            )
            values = [math.nan if j < 0 else parse_cell(row[j], where) for j in layout.index]
            row_number += 1
            yield ts, values


def _read_layout(path: PathLike, nodes: Collection[str] | None, ignore_extra: bool) -> _Layout:
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None)
    return _layout(path, header, nodes, ignore_extra)


def read_wide_csv(
    path: PathLike,
    *,
    nodes: Collection[str] | None = None,
    ignore_extra: bool = False,
) -> MetricTable:
    """Read a whole wide CSV into arrays.

    Parameters
    ----------
    path
        The CSV file (UTF-8).
    nodes
        The graph's nodes. The result has exactly these columns, in this order; a node
        the file lacks is all NaN. ``None`` takes every column of the file.
    ignore_extra
        Skip file columns that are not in ``nodes`` instead of raising.

    Returns
    -------
    MetricTable
        ``values`` has NaN for empty cells; ``timestamps`` is the timestamp column, or the
        row index when there is none.

    Raises
    ------
    GraphError
        If the file has columns that are not in ``nodes`` (named in the message; pass
        ``ignore_extra=True`` to skip them) or none that is.
    ConfigError
        For an empty file, repeated or several timestamp columns, a row of the wrong length,
        a cell that is not a number or a bad timestamp (the message gives the line).
    """
    layout = _read_layout(path, nodes, ignore_extra)
    ts: list[float] = []
    rows: list[list[float]] = []
    for t, values in _rows(path, layout):
        ts.append(t)
        rows.append(values)
    matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(layout.nodes))
    return MetricTable(layout.nodes, np.array(ts, dtype=np.float64), matrix)


def iter_wide_csv(
    path: PathLike,
    *,
    nodes: Collection[str] | None = None,
    ignore_extra: bool = False,
    graph: str = "default",
) -> Iterator[Snapshot]:
    """Stream a wide CSV as snapshots, one per row, without loading it whole.

    The header is checked before this returns; bad rows raise when they are reached.
    Parameters and errors are those of :func:`read_wide_csv`; snapshots leave missing
    values out and have ``end=None``.
    """
    layout = _read_layout(path, nodes, ignore_extra)

    def snapshots() -> Iterator[Snapshot]:
        for ts, row in _rows(path, layout):
            values = {n: v for n, v in zip(layout.nodes, row, strict=True) if not math.isnan(v)}
            yield Snapshot(ts=ts, values=values, graph=graph)

    return snapshots()

"""Read the PetShop root-cause benchmark files (Hardt et al. 2024).

``metrics.csv`` has three header rows (``microservice``, ``metric``, ``statistic``) then a
``unix_timestamp`` row, and one row per 5-minute period; the first column is the time::

    microservice,PetSite,PetSite,...
    metric,latency,requests,...
    statistic,Average,Sum,...
    unix_timestamp,,,...
    1692608400.0,0.1002,,...

Files differ in their column sets (an issue file can have nodes the normal-operation file
lacks), so columns are selected by name. ``graph.csv`` is an adjacency matrix of the CALL
graph (row caller, column callee); the causal graph of latency and availability is its
reverse. ``target.json`` holds an issue's ground truth.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rca.core.types import Snapshot
from stream_rca.errors import ConfigError
from stream_rca.io.tables import (
    MetricTable,
    PathLike,
    names,
    parse_cell,
    parse_time_cell,
    select_columns,
)

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "AVAILABILITY_READINGS",
    "PETSHOP_HEADER",
    "PetshopTarget",
    "failed_requests",
    "is_petshop_csv",
    "iter_petshop_snapshots",
    "read_petshop_graph",
    "read_petshop_metrics",
    "read_petshop_target",
]

PETSHOP_HEADER = ("microservice", "metric", "statistic", "unix_timestamp")
"""First cells of the four header rows of a PetShop ``metrics.csv``."""

AVAILABILITY_READINGS = {
    "failures": (
        "availability read as failed requests per period, (100 - availability) / 100 x "
        "requests (Sum)"
    ),
    "percent": "availability read as written, per cent",
}
"""How an availability metric can be read. Failed requests are the default: they add up along
the call graph (a caller's failures include those of the calls that failed under it), where
percentages do not (a callee that fails all of its 3 requests moves a caller serving 700 by
less than half a per cent, while its own availability drops from 100 to 0)."""


def is_petshop_csv(path: PathLike) -> bool:
    """Whether a CSV file is in the PetShop layout (judged from its first four lines).

    Parameters
    ----------
    path
        A CSV file.

    Returns
    -------
    bool
        True when the first cells of its first four rows are ``microservice``, ``metric``,
        ``statistic`` and ``unix_timestamp``.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        firsts = []
        for row in reader:
            firsts.append(row[0].strip() if row else "")
            if len(firsts) == len(PETSHOP_HEADER):
                break
    return tuple(firsts) == PETSHOP_HEADER


def read_petshop_metrics(
    path: PathLike,
    metric: str = "latency",
    statistic: str = "Average",
    *,
    nodes: Collection[str] | None = None,
    ignore_extra: bool = False,
    availability: str = "failures",
) -> MetricTable:
    """Read one metric of every node of a PetShop ``metrics.csv``.

    Parameters
    ----------
    path
        The ``metrics.csv`` file.
    metric
        ``"latency"``, ``"requests"`` or ``"availability"``.
    statistic
        ``"Average"``, ``"p50"``, ``"p90"``, ``"p95"``, ``"p99"`` (latency) or ``"Sum"``
        (requests).
    nodes
        The graph's nodes: the result has exactly these columns, in this order, and a node
        the file lacks is all NaN. ``None`` takes the file's nodes in file order.
    ignore_extra
        Skip nodes of the file that are not in ``nodes`` instead of raising.
    availability
        How ``metric="availability"`` is read (see :data:`AVAILABILITY_READINGS`):
        ``"failures"`` (the default) gives each node's failed requests per period,
        ``(100 - availability) / 100 * requests`` from its ``requests``/``Sum`` column, and 0
        where it served no request; ``"percent"`` the availability as written.

    Returns
    -------
    MetricTable
        ``(nodes, timestamps, values)`` with NaN for empty cells.

    Raises
    ------
    ConfigError
        If the file is not in the PetShop layout, lacks the (metric, statistic) pair (the
        message lists those it has), has a bad row or cell (the message gives the line), or
        lacks the request counts of a node whose failures are asked for.
    GraphError
        If the file has nodes that are not in ``nodes`` (unless ``ignore_extra``).
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [next(reader, []) for _ in PETSHOP_HEADER]
        if tuple(r[0].strip() if r else "" for r in header) != PETSHOP_HEADER:
            raise ConfigError(
                f"{path}: not a PetShop metrics file (its first column should start with "
                f"{', '.join(PETSHOP_HEADER)})"
            )
        width = len(header[0])
        if any(len(r) != width for r in header):
            raise ConfigError(f"{path}: the four header rows differ in length")
        services, metrics, stats = ([c.strip() for c in r[1:]] for r in header[:3])
        if availability not in AVAILABILITY_READINGS:
            raise ConfigError(
                f"availability reading {availability!r}: choose one of "
                f"{', '.join(AVAILABILITY_READINGS)}"
            )
        chosen = [j for j in range(width - 1) if metrics[j] == metric and stats[j] == statistic]
        failures = metric == "availability" and availability == "failures"
        served = _request_columns(path, services, metrics, stats, chosen) if failures else []
        if not chosen:
            have = sorted(set(zip(metrics, stats, strict=True)))
            raise ConfigError(
                f"{path}: no column has metric {metric!r} and statistic {statistic!r}; "
                f"the file has {names(f'{m}/{s}' for m, s in have)}"
            )
        out, index = select_columns(
            [services[j] for j in chosen], nodes, ignore_extra=ignore_extra, path=path
        )
        cols = [1 + chosen[i] if i >= 0 else -1 for i in index]
        if failures:
            index_served = [served[i] if i >= 0 else -1 for i in index]
        timestamps: list[float] = []
        rows: list[list[float]] = []
        requests: list[list[float]] = []
        for row in reader:
            if not row:
                continue
            where = f"{path}, line {reader.line_num}"
            if len(row) != width:
                raise ConfigError(f"{where}: {len(row)} cells, the header has {width}")
            timestamps.append(parse_time_cell(row[0], where))
            rows.append([math.nan if j < 0 else parse_cell(row[j], where) for j in cols])
            if failures:
                requests.append(
                    [math.nan if j < 0 else parse_cell(row[1 + j], where) for j in index_served]
                )
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(out))
    if failures:
        values = failed_requests(values, np.array(requests, dtype=np.float64).reshape(values.shape))
    return MetricTable(out, np.array(timestamps, dtype=np.float64), values)


def failed_requests(percent: FloatArray, requests: FloatArray) -> FloatArray:
    """Failed requests per period from availability (per cent) and request counts.

    ``(100 - availability) / 100 * requests``; 0 where no request was served (a period
    without requests has no availability, and no failure either); NaN where the count is
    missing, or the availability is missing though requests were served.

    >>> import numpy as np
    >>> failed_requests(np.array([[97.5, np.nan, np.nan, 100.0]]),
    ...                 np.array([[200.0, 0.0, 12.0, np.nan]])).tolist()
    [[5.0, 0.0, nan, nan]]
    """
    out: FloatArray = (100.0 - percent) / 100.0 * requests
    out[requests == 0] = 0.0
    return out


def _request_columns(
    path: PathLike, services: list[str], metrics: list[str], stats: list[str], chosen: list[int]
) -> list[int]:
    """Per chosen column, the index of its node's ``requests``/``Sum`` column."""
    sums = {s: j for j, s in enumerate(services) if metrics[j] == "requests" and stats[j] == "Sum"}
    lacking = [services[j] for j in chosen if services[j] not in sums]
    if lacking:
        raise ConfigError(
            f"{path}: availability is read as failed requests, but {names(lacking)} "
            f"{'has' if len(lacking) == 1 else 'have'} no requests/Sum column; read it as "
            "written with --availability percent"
        )
    return [sums[services[j]] for j in chosen]


def iter_petshop_snapshots(
    path: PathLike,
    metric: str = "latency",
    statistic: str = "Average",
    *,
    nodes: Collection[str] | None = None,
    ignore_extra: bool = False,
    graph: str = "default",
    availability: str = "failures",
) -> Iterator[Snapshot]:
    """The rows of a PetShop ``metrics.csv`` as snapshots (see :func:`read_petshop_metrics`).

    The file is read and checked before this returns. Missing values are left out of the
    snapshots; ``end`` is ``None``.
    """
    table = read_petshop_metrics(
        path, metric, statistic, nodes=nodes, ignore_extra=ignore_extra, availability=availability
    )
    return table.snapshots(graph)


def read_petshop_graph(path: PathLike) -> list[tuple[str, str]]:
    """Read a PetShop ``graph.csv`` as causal ``(cause, effect)`` edges.

    The file is the call graph (a 1 in row A, column B: A calls B); the causal graph of
    latency and availability is its reverse, so that entry gives the edge ``(B, A)``: the
    callee's latency feeds the caller's. Edges come in file order (rows, then columns).
    Nodes without any edge do not appear.

    Parameters
    ----------
    path
        The ``graph.csv`` file: a header row of node names after an empty first cell, then
        one row per node, its name first, with 0/1 entries.

    Returns
    -------
    list of tuple of str
        ``(callee, caller)`` pairs.

    Raises
    ------
    ConfigError
        If the rows do not name the same nodes as the header, a row has the wrong length,
        or an entry is not 0 or 1.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        raise ConfigError(f"{path}: the file is empty")
    callees = [c.strip() for c in rows[0][1:]]
    callers = [r[0].strip() for r in rows[1:]]
    if sorted(callers) != sorted(callees):
        only_rows = [n for n in callers if n not in callees]
        only_cols = [n for n in callees if n not in callers]
        raise ConfigError(
            f"{path}: rows and columns must name the same nodes; only in rows: "
            f"{names(only_rows) or '-'}; only in columns: {names(only_cols) or '-'}"
        )
    edges: list[tuple[str, str]] = []
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(callees) + 1:
            raise ConfigError(
                f"{path}, line {i}: {len(row)} cells, the header has {len(callees) + 1}"
            )
        for callee, cell in zip(callees, row[1:], strict=True):
            entry = parse_cell(cell, f"{path}, line {i}")
            if entry not in (0.0, 1.0):
                raise ConfigError(f"{path}, line {i}: entry {cell!r} is not 0 or 1")
            if entry == 1.0:
                edges.append((callee, row[0].strip()))
    return edges


@dataclass(frozen=True, slots=True)
class PetshopTarget:
    """The ground truth of one PetShop issue (``target.json``).

    Attributes
    ----------
    node
        The node whose anomaly was observed (``PetSite``).
    metric
        Its anomalous metric (``"latency"`` or ``"availability"``).
    agg
        The statistic (``"Average"``, ...).
    timestamp
        When the anomaly was observed, unix seconds.
    root_cause
        The node where the issue was injected.
    root_cause_metric
        The root cause's metric, when the file names one.
    """

    node: str
    metric: str
    agg: str
    timestamp: float
    root_cause: str
    root_cause_metric: str | None = None


def read_petshop_target(path: PathLike) -> PetshopTarget:
    """Read a PetShop ``target.json``.

    Raises
    ------
    ConfigError
        If the file is not JSON or lacks ``target.node``, ``target.metric``, ``target.agg``,
        ``target.timestamp`` or ``root_cause.node``.
    """
    with open(path, encoding="utf-8") as f:
        try:
            doc: Any = json.load(f)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    try:
        target, cause = doc["target"], doc["root_cause"]
        out = PetshopTarget(
            node=str(target["node"]),
            metric=str(target["metric"]),
            agg=str(target["agg"]),
            timestamp=float(target["timestamp"]),
            root_cause=str(cause["node"]),
            root_cause_metric=None if cause.get("metric") is None else str(cause["metric"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"{path}: a PetShop target needs target.node/metric/agg/timestamp and "
            f"root_cause.node ({type(exc).__name__}: {exc})"
        ) from None
    return out

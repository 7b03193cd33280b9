"""Open a metrics file of any supported layout as a stream of snapshots (for file replay)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Literal

from stream_rca.core.types import Snapshot
from stream_rca.io.petshop import is_petshop_csv, iter_petshop_snapshots
from stream_rca.io.tables import PathLike, iter_wide_csv

__all__ = ["FileFormat", "detect_format", "read_snapshots"]

FileFormat = Literal["petshop", "wide"]


def detect_format(path: PathLike) -> FileFormat:
    """``"petshop"`` for a PetShop ``metrics.csv``, else ``"wide"`` (one column per node)."""
    return "petshop" if is_petshop_csv(path) else "wide"


def read_snapshots(
    path: PathLike,
    *,
    nodes: Collection[str] | None = None,
    ignore_extra: bool = False,
    graph: str = "default",
    metric: str = "latency",
    statistic: str = "Average",
    availability: str = "failures",
) -> Iterator[Snapshot]:
    """Snapshots from a CSV file in either layout, detected from its first lines.

    Parameters
    ----------
    path
        A wide CSV (:func:`stream_rca.io.tables.iter_wide_csv`) or a PetShop ``metrics.csv``
        (:func:`stream_rca.io.petshop.iter_petshop_snapshots`).
    nodes
        The graph's nodes; ``None`` takes every node of the file.
    ignore_extra
        Skip columns that are not in ``nodes`` instead of raising ``GraphError``.
    graph
        The snapshots' graph name.
    metric, statistic, availability
        Which PetShop series to read, and how availability is read (ignored for a wide CSV;
        see :func:`~stream_rca.io.petshop.read_petshop_metrics`).

    Returns
    -------
    Iterator of Snapshot
        One per row, in file order; missing values left out.
    """
    if detect_format(path) == "petshop":
        return iter_petshop_snapshots(
            path,
            metric,
            statistic,
            nodes=nodes,
            ignore_extra=ignore_extra,
            graph=graph,
            availability=availability,
        )
    return iter_wide_csv(path, nodes=nodes, ignore_extra=ignore_extra, graph=graph)

"""Vectorised latency propagation through a service DAG.

A node's latency is its intrinsic latency plus an aggregate of its causes' (callees') latencies:
``"sum"`` (sequential calls, ``sum_i w_i x_i``) or ``"max"`` (parallel calls, ``max_i w_i x_i``),
optionally multiplied by a per-(row, node) factor (a mechanism-change fault). Nodes are grouped by
depth (longest path from a root) and aggregate, so one group of numpy operations handles all the
nodes of one depth at once; a graph of 10,000 nodes propagates in a handful of steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["Aggregate", "PropagationPlan"]

Aggregate = Literal["sum", "max"]


@dataclass(frozen=True)
class _Group:
    """Nodes of one depth and one aggregate, with their parents flattened."""

    cols: npt.NDArray[np.intp]
    parents: npt.NDArray[np.intp]
    weights: npt.NDArray[np.float64]
    starts: npt.NDArray[np.intp]
    use_max: bool


class PropagationPlan:
    """A compiled propagation order for a DAG whose nodes are indexed ``0 .. n_nodes - 1``.

    Parameters
    ----------
    n_nodes
        Number of nodes.
    parents
        Per node (in topological order: parents before children), the indices of its causes.
    weights
        Per node, the weights of its causes, aligned with ``parents``.
    aggregates
        Per node, ``"sum"`` or ``"max"`` (ignored for roots).

    Examples
    --------
    >>> plan = PropagationPlan(3, [[], [], [0, 1]], [[], [], [1.0, 2.0]], ["sum", "sum", "sum"])
    >>> plan.propagate(np.array([[1.0, 2.0, 0.5]])).tolist()
    [[1.0, 2.0, 5.5]]
    """

    def __init__(
        self,
        n_nodes: int,
        parents: list[list[int]],
        weights: list[list[float]],
        aggregates: list[Aggregate],
    ) -> None:
        depth = np.zeros(n_nodes, dtype=np.int64)
        for j in range(n_nodes):
            if parents[j]:
                if max(parents[j]) >= j:
                    raise ValueError("nodes must be in topological order (parents first)")
                depth[j] = 1 + int(depth[parents[j]].max())
        self.n_nodes = n_nodes
        self.roots: npt.NDArray[np.intp] = np.flatnonzero(depth == 0).astype(np.intp)
        self.groups: list[_Group] = []
        for d in range(1, int(depth.max(initial=0)) + 1):
            at_depth = np.flatnonzero(depth == d)
            for kind in ("sum", "max"):
                cols = [int(j) for j in at_depth if aggregates[j] == kind]
                if cols:
                    self.groups.append(self._group(cols, parents, weights, kind == "max"))

    @staticmethod
    def _group(
        cols: list[int], parents: list[list[int]], weights: list[list[float]], use_max: bool
    ) -> _Group:
        flat_parents = [p for j in cols for p in parents[j]]
        flat_weights = [w for j in cols for w in weights[j]]
        counts = np.array([len(parents[j]) for j in cols], dtype=np.intp)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.intp)
        return _Group(
            cols=np.asarray(cols, dtype=np.intp),
            parents=np.asarray(flat_parents, dtype=np.intp),
            weights=np.asarray(flat_weights, dtype=np.float64),
            starts=starts,
            use_max=use_max,
        )

    def propagate(
        self,
        intrinsic: npt.NDArray[np.float64],
        multiplier: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float64]:
        """Compute observed latencies from intrinsic ones.

        Parameters
        ----------
        intrinsic
            Shape ``(n, n_nodes)``: each node's own latency.
        multiplier
            Optional shape ``(n, n_nodes)``: a factor applied to each node's whole latency
            (intrinsic plus aggregate) before it propagates further.

        Returns
        -------
        numpy.ndarray
            Shape ``(n, n_nodes)``: the observed latencies.
        """
        x = np.array(intrinsic, dtype=np.float64, copy=True)
        if x.ndim != 2 or x.shape[1] != self.n_nodes:
            raise ValueError(f"intrinsic must have shape (n, {self.n_nodes}), got {x.shape}")
        if multiplier is not None:
            x[:, self.roots] *= multiplier[:, self.roots]
        for g in self.groups:
            vals = x[:, g.parents] * g.weights
            reduce = np.maximum if g.use_max else np.add
            agg = reduce.reduceat(vals, g.starts, axis=1)
            if multiplier is None:
                x[:, g.cols] += agg
            else:
                x[:, g.cols] = (x[:, g.cols] + agg) * multiplier[:, g.cols]
        return x

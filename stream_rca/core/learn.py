"""A causal graph learned from normal-period metrics: PC with bootstrap edge frequencies.

For teams with neither a graph nor traces. The structure is learned from a table of normal
operation (rows: time steps, columns: metrics):

1. **Skeleton** (PC-stable, Spirtes & Glymour): two metrics are adjacent unless a conditional
   independence test accepts independence given some set of at most ``max_depth`` of their
   neighbours. The test is Fisher's z on the partial correlation (Gaussian, linear: the
   engine's default mechanisms are linear too), level ``alpha``; partial correlations of order
   1 and 2 are computed in closed form from the correlation matrix, vectorised.
2. **Orientation**: unshielded colliders ``i -> k <- j`` where ``k`` did not separate ``i`` and
   ``j``, then Meek's first rule (no new colliders); every edge still undirected is oriented by
   the pairwise skewness measure of Hyvärinen & Smith (JMLR 2013): for standardised ``x, y``
   with positive skew, ``rho * E[x^2 y - x y^2] > 0`` means ``x -> y`` (metrics such as
   latencies are skewed, their noise non-Gaussian).
3. **Uncertainty**: all of this on ``n_boot`` moving-block bootstrap resamples of the rows
   (blocks keep the time dependence); each directed edge's **frequency** is the share of
   resamples that have it. The graph keeps the edges seen in at least ``min_frequency`` of
   them, most frequent first, each only if it closes no cycle.

With ``toward`` (a watched metric, the symptom), every edge is instead oriented toward it: of
two adjacent metrics the one nearer to it in the skeleton is the effect. That is an assumption
about the system (the watched metric is a sink: nothing it does feeds back) which the data's
own orientation rules cannot make, and root-cause ranking needs the causes to be ancestors of
the target.

It is an option, not a default: a learned structure is only as good as these assumptions
(causal sufficiency, faithfulness, no hidden common cause such as shared load), which metrics of
a microservice system often break. ``stream-rca graph learn`` writes the graph with every
edge's frequency, so a reader sees which edges are shaky.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import numpy.typing as npt

from stream_rca.core.graph import CausalGraph

__all__ = ["LEARN_METHOD", "LearnedGraph", "learn_structure"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

LEARN_METHOD = (
    "PC-stable (Fisher z on partial correlations, depth <= max_depth), colliders and Meek rule 1, "
    "other edges by the pairwise skewness measure (or all toward a watched sink); "
    "moving-block bootstrap edge frequencies, "
    "edges kept at frequency >= min_frequency, most frequent first, none closing a cycle"
)


@dataclass(frozen=True)
class LearnedGraph:
    """A learned structure and its uncertainty."""

    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    """Kept directed edges ``(cause, effect)``."""
    frequency: dict[tuple[str, str], float]
    """Share of bootstrap resamples with each directed edge (every edge seen at least once)."""
    settings: dict[str, Any] = field(default_factory=dict)

    def adjacency(self, a: str, b: str) -> float:
        """Share of resamples where ``a`` and ``b`` are adjacent (either direction)."""
        return self.frequency.get((a, b), 0.0) + self.frequency.get((b, a), 0.0)

    def to_graph(self, name: str = "learned") -> CausalGraph:
        """The kept edges as a :class:`CausalGraph` (isolated metrics included)."""
        return CausalGraph(self.edges, self.nodes, name=name)

    def to_document(self, name: str) -> dict[str, Any]:
        """Our JSON graph format, with each kept edge's frequency and the weaker ones listed."""
        kept = set(self.edges)
        linked = {n for e in self.edges for n in e}
        doc: dict[str, Any] = {"name": name, "edges": [list(e) for e in self.edges]}
        isolated = [n for n in self.nodes if n not in linked]
        if isolated:
            doc["nodes"] = isolated
        doc["edge_attributes"] = [
            {"cause": a, "effect": b, "frequency": round(self.frequency[(a, b)], 4),
             "adjacency": round(self.adjacency(a, b), 4)}
            for a, b in self.edges
        ]  # fmt: skip
        doc["source"] = {
            "from": "metrics (structure learning)",
            "method": LEARN_METHOD,
            **self.settings,
            "weaker_edges": [
                {"cause": a, "effect": b, "frequency": round(f, 4)}
                for (a, b), f in sorted(self.frequency.items(), key=lambda kv: -kv[1])
                if (a, b) not in kept and f >= 0.1
            ],
        }
        return doc


def _partial_tables(c: FloatArray) -> FloatArray:
    """``r1[k, i, j]``: the partial correlation of ``i`` and ``j`` given ``k``."""
    ck = c[:, :, None] * c[:, None, :]  # (k, i, j) = c[k, i] * c[k, j]
    rest = np.sqrt(np.clip((1.0 - c**2)[:, :, None] * (1.0 - c**2)[:, None, :], 1e-12, None))
    out: FloatArray = (c[None, :, :] - ck) / rest
    return np.clip(out, -0.999999, 0.999999)


def _independent(r: FloatArray, n_rows: int, size: int, alpha: float) -> FloatArray:
    """p-values of Fisher's z test of zero partial correlations ``r`` given ``size`` others."""
    z = np.arctanh(np.clip(r, -0.999999, 0.999999)) * math.sqrt(max(n_rows - size - 3, 1))
    p: FloatArray = np.vectorize(math.erfc)(np.abs(z) / math.sqrt(2.0))
    return p


def _skeleton(
    c: FloatArray, n_rows: int, alpha: float, max_depth: int
) -> tuple[BoolArray, dict[tuple[int, int], set[int]]]:
    n = c.shape[0]
    adj = ~np.eye(n, dtype=bool)
    sep: dict[tuple[int, int], set[int]] = {}
    p0 = _independent(c, n_rows, 0, alpha)
    indep = (p0 > alpha) & adj
    for i, j in zip(*np.nonzero(np.triu(indep, 1)), strict=True):
        sep[(int(i), int(j))] = sep[(int(j), int(i))] = set()
    adj &= ~indep
    if max_depth < 1:
        return adj, sep
    r1 = _partial_tables(c)
    for depth in (1, 2)[:max_depth]:
        frozen = adj.copy()  # PC-stable: neighbourhoods fixed within a level
        for i, j in zip(*np.nonzero(np.triu(adj, 1)), strict=True):
            i, j = int(i), int(j)
            for a, b in ((i, j), (j, i)):
                if not adj[i, j]:
                    break
                others = np.flatnonzero(frozen[a] & (np.arange(n) != b))
                if others.size < depth:
                    continue
                if depth == 1:
                    p = _independent(r1[others, i, j], n_rows, 1, alpha)
                    hit = np.flatnonzero(p > alpha)
                    if hit.size:
                        found = {int(others[hit[0]])}
                        adj[i, j] = adj[j, i] = False
                        sep[(i, j)] = sep[(j, i)] = found
                else:
                    k, m = np.meshgrid(others, others, indexing="ij")
                    upper = k < m
                    k, m = k[upper], m[upper]
                    rij, rim, rjm = r1[k, i, j], r1[k, i, m], r1[k, j, m]
                    den = np.sqrt(np.clip((1 - rim**2) * (1 - rjm**2), 1e-12, None))
                    p = _independent((rij - rim * rjm) / den, n_rows, 2, alpha)
                    hit = np.flatnonzero(p > alpha)
                    if hit.size:
                        found = {int(k[hit[0]]), int(m[hit[0]])}
                        adj[i, j] = adj[j, i] = False
                        sep[(i, j)] = sep[(j, i)] = found
    return adj, sep


def _orient(adj: BoolArray, sep: dict[tuple[int, int], set[int]], x: FloatArray) -> BoolArray:
    """Directed edges ``d[i, j]`` (``i -> j``) of a skeleton."""
    n = adj.shape[0]
    d = np.zeros_like(adj)  # oriented i -> j
    for k in range(n):
        nb = np.flatnonzero(adj[k])
        for a in range(nb.size):
            for b in range(a + 1, nb.size):
                i, j = int(nb[a]), int(nb[b])
                if adj[i, j] or k in sep.get((i, j), {k}):
                    continue
                if not d[k, i] and not d[k, j]:
                    d[i, k] = d[j, k] = True
    changed = True
    while changed:  # Meek rule 1: a -> b - c, a and c not adjacent: b -> c
        changed = False
        for a, b in zip(*np.nonzero(d), strict=True):
            for c in np.flatnonzero(adj[b]):
                if c != a and not adj[a, c] and not d[b, c] and not d[c, b]:
                    d[b, c] = True
                    changed = True
    z = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
    skew = np.sign(np.mean(z**3, axis=0))
    skew[skew == 0] = 1.0
    z = z * skew
    for i, j in zip(*np.nonzero(np.triu(adj, 1)), strict=True):
        if d[i, j] or d[j, i]:
            continue
        zi, zj = z[:, i], z[:, j]
        rho = float(np.mean(zi * zj))
        r = rho * float(np.mean(zi**2 * zj - zi * zj**2))
        if r >= 0:
            d[i, j] = True
        else:
            d[j, i] = True
    return d


def _toward(adj: BoolArray, d: BoolArray, sink: int) -> BoolArray:
    """Every skeleton edge oriented toward ``sink``: the end nearer to it is the effect.

    Edges between two nodes as near (or out of its component) keep the data's orientation.
    """
    n = adj.shape[0]
    dist = np.full(n, n + 1)
    dist[sink] = 0
    frontier = [sink]
    while frontier:
        nxt = []
        for u in frontier:
            for v in np.flatnonzero(adj[u]):
                if dist[v] > dist[u] + 1:
                    dist[v] = dist[u] + 1
                    nxt.append(int(v))
        frontier = nxt
    out = d.copy()
    for i, j in zip(*np.nonzero(np.triu(adj, 1)), strict=True):
        if dist[i] != dist[j]:
            out[i, j], out[j, i] = bool(dist[i] > dist[j]), bool(dist[j] > dist[i])
    return out


def _one(x: FloatArray, alpha: float, max_depth: int, sink: int | None) -> BoolArray:
    c: FloatArray = np.nan_to_num(np.atleast_2d(np.corrcoef(x, rowvar=False)), nan=0.0)
    np.fill_diagonal(c, 1.0)
    adj, sep = _skeleton(c, x.shape[0], alpha, max_depth)
    d = _orient(adj, sep, x)
    return d if sink is None else _toward(adj, d, sink)


def learn_structure(
    x: FloatArray,
    names: Sequence[str],
    *,
    alpha: float = 0.01,
    max_depth: int = 2,
    n_boot: int = 20,
    block: int = 50,
    min_frequency: float = 0.5,
    seed: int = 0,
    toward: str | None = None,
) -> LearnedGraph:
    """Learn a causal graph from rows of normal operation (see the module docstring).

    Parameters
    ----------
    x
        ``(rows, metrics)``; NaN (missing) is filled with the column's mean; constant columns
        get no edges.
    names
        Column names.
    alpha
        Level of each conditional independence test.
    max_depth
        Largest conditioning set (0, 1 or 2).
    n_boot, block
        Bootstrap resamples and their block length (rows).
    min_frequency
        Least bootstrap frequency of a kept edge.
    seed
        Seed of the resampling.
    toward
        A watched metric taken as the sink of the system (the symptom): every edge is then
        oriented toward it, the end nearer to it (in the skeleton) being the effect; edges
        between two metrics as near keep the data's orientation. Without it, orientation is
        the data's alone (colliders, Meek, the skewness measure), which is much weaker.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.gamma(2.0, 1.0, 2000)
    >>> b = a + rng.gamma(2.0, 1.0, 2000)
    >>> c = b + rng.gamma(2.0, 1.0, 2000)
    >>> g = learn_structure(np.c_[a, b, c], ["a", "b", "c"], n_boot=10)
    >>> g.edges
    (('a', 'b'), ('b', 'c'))
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"expected (rows, {len(names)}) values, got shape {x.shape}")
    if not 0 < alpha < 1 or max_depth not in (0, 1, 2) or n_boot < 1 or block < 1:
        raise ValueError("alpha in (0, 1), max_depth 0-2, n_boot >= 1 and block >= 1 expected")
    if x.shape[0] < 20:
        raise ValueError(f"at least 20 rows are needed to learn a structure, got {x.shape[0]}")
    finite = np.isfinite(x)
    mean = np.where(finite, x, 0.0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1)
    x = np.where(finite, x, mean)  # an empty column is constant 0: no edges
    live = np.flatnonzero(x.std(axis=0) > 0)
    xl = x[:, live]
    pos = {names[int(j)]: k for k, j in enumerate(live)}
    if toward is not None and toward not in names:
        raise ValueError(f"toward: {toward!r} is not a column")
    sink = pos.get(toward) if toward is not None else None
    rng = np.random.default_rng(seed)
    rows = xl.shape[0]
    block = min(block, rows)
    counts = np.zeros((live.size, live.size))
    for _ in range(n_boot):
        starts = rng.integers(0, rows - block + 1, size=math.ceil(rows / block))
        idx = (starts[:, None] + np.arange(block)[None, :]).ravel()[:rows]
        counts += _one(xl[idx], alpha, max_depth, sink)
    freq = counts / n_boot
    frequency = {
        (names[int(live[i])], names[int(live[j])]): float(freq[i, j])
        for i, j in zip(*np.nonzero(freq), strict=True)
    }
    dag: nx.DiGraph = nx.DiGraph()
    kept: list[tuple[str, str]] = []
    for (a, b), f in sorted(frequency.items(), key=lambda kv: (-kv[1], kv[0])):
        if f < min_frequency:
            break
        if dag.has_node(a) and dag.has_node(b) and nx.has_path(dag, b, a):
            continue
        dag.add_edge(a, b)
        kept.append((a, b))
    settings = {
        "rows": int(x.shape[0]),
        "alpha": alpha,
        "max_depth": max_depth,
        "bootstrap": n_boot,
        "block": block,
        "min_frequency": min_frequency,
        "seed": seed,
        "toward": toward,
    }
    return LearnedGraph(tuple(names), tuple(sorted(kept)), frequency, settings)

"""Reference root-cause rankers, written from their papers, behind one interface.

Every ranker is a function
``rank(normal, window, fault_row, graph, target) -> list[int]``:

- ``normal``: ``(T, n)`` values of the normal period (NaN = missing);
- ``window``: ``(W, n)`` values around the fault, ``window[fault_row]`` is the row to explain;
- ``graph``: the causal DAG over ``0..n-1`` (``cause -> effect``), or ``None``;
- ``target``: the node whose anomaly is explained.

It returns every candidate node, best first: the target and its ancestors when a graph is
given, every column otherwise. Missing values are filled forward, then with the normal
period's median; a node with fewer than 10 normal values is not scored; a series that was
constant in the normal period gets 1% of its level as its scale (so a change of it is
anomalous, never infinitely); scores are two-sided (a drop counts as much as a rise).
Ties are broken by node index.

Methods
-------
n-sigma
    ``|x - mean| / std`` of the normal period at the fault row.
BARO (Pham et al., FSE 2024)
    Its robust scorer: ``|x - median| / IQR`` of the normal period (BARO's change-point step
    picks the normal/anomalous split; here it is given).
anomaly traversal (Hardt et al. 2024, the PetShop paper)
    Nodes whose median-deviation score ``|x - median| / MAD`` exceeds 5 are anomalous. From the
    target, walk to anomalous parents, recursively; the root causes are the reached anomalous
    nodes none of whose parents is anomalous, ranked by their score, then the other reached
    nodes, then the rest, each by score.
ranked correlation (Hardt et al. 2024)
    Candidates (the target's ancestors with a graph) ranked by ``|Pearson correlation|`` of
    their series with the target's over the end of the normal period and the window;
    anomalous candidates (as in the traversal) first, as the paper's default filters on them.
personalised PageRank (MicroCause / CloudRanger style)
    A random walk on the candidates' subgraph from effect to cause: a step to a parent is
    weighted by the parent's ``|correlation|`` with the target, a step back to a child by
    ``0.2`` times the child's, a self-loop by how much more the node correlates than its best
    parent; restarts at the target with probability 0.15. Ranked by visit probability (the
    target's restart mass taken off).
RHT (CIRCA, Li et al., KDD 2022)
    Regression-based hypothesis test: each node is regressed (ordinary least squares with an
    intercept) on its parents over the normal period; its score is
    ``|residual - mean residual| / residual sd`` at the fault row.
CIRCA (RHT with descendant adjustment)
    A node whose RHT score reaches the threshold (3) gets the largest score of its children
    added, where a child below the threshold passes on its own children's scores (CIRCA's
    ``DAScorer``): a root cause's effects are anomalous too, a bystander's are not. Ties go to
    the upstream node (earlier topological generation), then to the higher RHT score.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec

import networkx as nx
import numpy as np
import numpy.typing as npt

__all__ = [
    "GRAPH_FREE",
    "RANKERS",
    "Ranker",
    "anomaly_traversal",
    "baro",
    "baro_scores",
    "candidates",
    "circa",
    "fill",
    "mad_scores",
    "n_sigma",
    "pagerank",
    "ranked_correlation",
    "rht",
    "rht_scores",
]

FloatArray = npt.NDArray[np.float64]
Ranker = Callable[[FloatArray, FloatArray, int, nx.DiGraph | None, int], list[int]]
_P = ParamSpec("_P")

TRAVERSAL_THRESHOLD = 5.0
"""The PetShop code's default: a median-deviation score above 5 is anomalous."""
CIRCA_THRESHOLD = 3.0
NORMAL_TAIL = 10
"""Normal rows before the window that the correlation methods also use."""
MIN_POINTS = 10
"""A node with fewer normal values than this is not scored (as in the PetShop code)."""
CONSTANT_SCALE = 0.01
"""The scale of a series that was constant in the normal period, relative to its level: a
change of 1% of it counts as one standard deviation (never an infinite score)."""


def fill(
    normal: FloatArray, window: FloatArray, *, min_points: int = MIN_POINTS
) -> tuple[FloatArray, FloatArray]:
    """Both arrays with missing values filled forward (over normal then window), then with
    the normal period's median.

    A node with fewer than ``min_points`` values in the normal period has no baseline to be
    judged against: it becomes 0 everywhere (so it never looks anomalous).
    """
    both = np.vstack([normal, window]).astype(np.float64)
    rows = np.arange(both.shape[0])[:, None]
    seen = np.where(np.isnan(both), 0, rows)
    last = np.maximum.accumulate(seen, axis=0)
    out = both[last, np.arange(both.shape[1])]
    med = np.zeros(both.shape[1])
    known = (~np.isnan(normal)).sum(axis=0) >= max(min_points, 1)
    if known.any():
        med[known] = np.nanmedian(normal[:, known], axis=0)
    out = np.where(np.isnan(out), med, out)
    out[:, ~known] = 0.0
    t = normal.shape[0]
    return out[:t], out[t:]


def _scale(scale: FloatArray, centre: FloatArray) -> FloatArray:
    """``scale`` where it is positive; for a constant series, ``CONSTANT_SCALE`` of the
    centre's size (at least ``CONSTANT_SCALE``)."""
    size = np.maximum(1.0, np.abs(centre))
    return np.where(np.isfinite(scale) & (scale > 1e-9 * size), scale, CONSTANT_SCALE * size)


def candidates(graph: nx.DiGraph | None, target: int, n: int) -> list[int]:
    """The target and its ancestors (sorted), or every node without a graph."""
    if graph is None:
        return list(range(n))
    return sorted({*nx.ancestors(graph, target), target})


def _order(scores: FloatArray, nodes: Iterable[int]) -> list[int]:
    """``nodes`` by score, highest first; NaN last; ties by index."""
    s = np.where(np.isnan(scores), -np.inf, scores)
    return sorted(nodes, key=lambda j: (-s[j], j))


@dataclass(frozen=True, slots=True)
class _Case:
    """What every ranker starts from: one call's arrays filled, its fault row and candidates."""

    normal: FloatArray
    """The normal period, filled (:func:`fill`)."""
    window: FloatArray
    """The window, filled."""
    row: FloatArray
    """The filled row to explain, ``window[fault_row]``."""
    graph: nx.DiGraph | None
    target: int
    candidates: list[int]
    """:func:`candidates` of the graph and target."""

    @property
    def dag(self) -> nx.DiGraph:
        """The graph, of a ranker that needs one (its wrapper refused to run without)."""
        if self.graph is None:  # pragma: no cover - ``_ranker(needs=...)`` checked it
            raise ValueError("this ranker needs a causal graph")
        return self.graph


def _ranker(
    needs: str | None = None,
) -> Callable[
    [Callable[Concatenate[_Case, _P], list[int]]],
    Callable[Concatenate[FloatArray, FloatArray, int, nx.DiGraph | None, int, _P], list[int]],
]:
    """Make ``rank(case, **options)`` a :data:`Ranker` (with the same options).

    The ranker it gives checks the graph (``needs``: the method's name in the error, for one
    that cannot run without a graph), fills the arrays, takes the fault row and the candidates,
    and hands them to ``rank`` as a :class:`_Case`.
    """

    def wrap(
        rank: Callable[Concatenate[_Case, _P], list[int]],
    ) -> Callable[Concatenate[FloatArray, FloatArray, int, nx.DiGraph | None, int, _P], list[int]]:
        @functools.wraps(rank)
        def ranker(
            normal: FloatArray,
            window: FloatArray,
            fault_row: int,
            graph: nx.DiGraph | None,
            target: int,
            /,
            *args: _P.args,
            **kwargs: _P.kwargs,
        ) -> list[int]:
            if needs is not None and graph is None:
                raise ValueError(f"{needs} needs a causal graph")
            nf, wf = fill(normal, window)
            cands = candidates(graph, target, nf.shape[1])
            return rank(_Case(nf, wf, wf[fault_row], graph, target, cands), *args, **kwargs)

        return ranker

    return wrap


@_ranker()
def n_sigma(case: _Case) -> list[int]:
    """Rank by ``|x - mean| / std`` of the normal period at the fault row."""
    mean = case.normal.mean(axis=0)
    z = np.abs(case.row - mean) / _scale(case.normal.std(axis=0), mean)
    return _order(z, case.candidates)


def baro_scores(normal: FloatArray, row: FloatArray) -> FloatArray:
    """BARO's robust score of one (filled) row: ``|x - median| / IQR``."""
    q1, med, q3 = np.percentile(normal, [25, 50, 75], axis=0)
    return np.asarray(np.abs(row - med) / _scale(q3 - q1, med), dtype=np.float64)


@_ranker()
def baro(case: _Case) -> list[int]:
    """Rank by BARO's robust score ``|x - median| / IQR`` at the fault row."""
    return _order(baro_scores(case.normal, case.row), case.candidates)


def mad_scores(normal: FloatArray, row: FloatArray) -> FloatArray:
    """``|x - median| / MAD`` (unscaled MAD; the std where the MAD is 0) of a filled row."""
    med = np.median(normal, axis=0)
    mad = np.median(np.abs(normal - med), axis=0)
    scale = np.where(mad > 0, mad, normal.std(axis=0))
    return np.asarray(np.abs(row - med) / _scale(scale, med), dtype=np.float64)


@_ranker(needs="anomaly traversal")
def anomaly_traversal(
    case: _Case, *, threshold: float = TRAVERSAL_THRESHOLD, path_sum: bool = False
) -> list[int]:
    """Anomalous nodes without anomalous parents, reached from the target through
    anomalous parents (see the module docstring).

    ``path_sum`` ranks the root causes as the PetShop code does, by the largest sum of scores
    along an anomalous path to the target, instead of by their own score.
    """
    g, target, cands = case.dag, case.target, case.candidates
    score = mad_scores(case.normal, case.row)
    anomalous = score > threshold
    if not anomalous[target]:
        return _order(score, cands)
    reached, stack = {target}, [target]
    while stack:
        v = stack.pop()
        for p in g.predecessors(v):
            if anomalous[p] and p not in reached:
                reached.add(p)
                stack.append(p)
    roots = [v for v in reached if not any(anomalous[p] for p in g.predecessors(v))]
    key = score
    if path_sum:
        key = np.full_like(score, np.nan)
        sub = g.subgraph(reached)
        for v in reversed(list(nx.topological_sort(sub))):
            down = [key[c] for c in sub.successors(v)]
            key[v] = score[v] + (max(down) if down else 0.0)
    first = _order(key, roots)
    second = _order(score, reached - set(roots))
    rest = _order(score, set(cands) - reached)
    return first + second + rest


def _abs_corr(data: FloatArray, target: int) -> FloatArray:
    """``|Pearson correlation|`` of every column with the target's (0 for a constant one)."""
    centred = data - data.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    with np.errstate(all="ignore"):
        r = centred.T @ centred[:, target] / (norms * norms[target])
    return np.asarray(np.where(np.isfinite(r), np.abs(r), 0.0), dtype=np.float64)


def _target_corr(case: _Case, tail: int) -> FloatArray:
    """:func:`_abs_corr` over the last ``tail`` normal rows and the window."""
    data = np.vstack([case.normal[-tail:] if tail else case.normal[:0], case.window])
    return _abs_corr(data, case.target)


@_ranker()
def ranked_correlation(
    case: _Case, *, threshold: float = TRAVERSAL_THRESHOLD, normal_tail: int = NORMAL_TAIL
) -> list[int]:
    """Rank by ``|correlation|`` with the target; anomalous candidates first, the target
    after them (its correlation with itself says nothing)."""
    target = case.target
    corr = _target_corr(case, normal_tail)
    anomalous = mad_scores(case.normal, case.row) > threshold
    others = [j for j in case.candidates if j != target]
    hot = _order(corr, [j for j in others if anomalous[j]])
    cold = _order(corr, [j for j in others if not anomalous[j]])
    return [*hot, target, *cold]


@_ranker(needs="pagerank")
def pagerank(
    case: _Case,
    *,
    alpha: float = 0.85,
    backward: float = 0.2,
    normal_tail: int = NORMAL_TAIL,
    iterations: int = 200,
) -> list[int]:
    """Personalised PageRank from the target toward causes (see the module docstring)."""
    g, target, cands = case.dag, case.target, case.candidates
    corr = _target_corr(case, normal_tail)
    pos = {v: i for i, v in enumerate(cands)}
    m = len(cands)
    P = np.zeros((m, m))
    for v in cands:
        i = pos[v]
        parents = [p for p in g.predecessors(v) if p in pos]
        for p in parents:
            P[i, pos[p]] += corr[p]
        for c in g.successors(v):
            if c in pos:
                P[i, pos[c]] += backward * corr[c]
        best = max((corr[p] for p in parents), default=0.0)
        P[i, i] += max(0.0, corr[v] - best)
    sums = P.sum(axis=1)
    t = pos[target]
    P[sums == 0, t] = 1.0  # a dead end goes back to the target
    P /= P.sum(axis=1, keepdims=True)
    restart = np.zeros(m)
    restart[t] = 1.0
    pi = restart.copy()
    for _ in range(iterations):
        new = (1 - alpha) * restart + alpha * (pi @ P)
        if np.abs(new - pi).sum() < 1e-12:
            pi = new
            break
        pi = new
    pi[t] -= 1 - alpha
    scores = np.full(case.normal.shape[1], np.nan)
    scores[cands] = pi
    return _order(scores, cands)


def rht_scores(normal: FloatArray, row: FloatArray, graph: nx.DiGraph) -> FloatArray:
    """CIRCA's regression-based hypothesis test of one (filled) row, for every node."""
    t, n = normal.shape
    z = np.zeros(n)
    ones = np.ones((t, 1))
    for j in range(n):
        parents = sorted(graph.predecessors(j))
        X = np.hstack([ones, normal[:, parents]])
        beta, *_ = np.linalg.lstsq(X, normal[:, j], rcond=None)
        resid = normal[:, j] - X @ beta
        r = row[j] - float(np.concatenate([[1.0], row[parents]]) @ beta)
        mu = resid.mean()
        z[j] = abs(r - mu) / float(_scale(np.array([resid.std(ddof=1)]), np.array([mu]))[0])
    return z


@_ranker(needs="RHT")
def rht(case: _Case) -> list[int]:
    """Rank by CIRCA's regression-based hypothesis test alone."""
    return _order(rht_scores(case.normal, case.row, case.dag), case.candidates)


@_ranker(needs="CIRCA")
def circa(case: _Case, *, threshold: float = CIRCA_THRESHOLD) -> list[int]:
    """CIRCA: RHT scores with descendant adjustment (see the module docstring)."""
    g = case.dag
    z = rht_scores(case.normal, case.row, g)
    generation = {v: k for k, gen in enumerate(nx.topological_generations(g)) for v in gen}
    passed: dict[int, dict[int, float]] = {}
    for v in reversed(list(nx.topological_sort(g))):
        got: dict[int, float] = {}
        for c in g.successors(v):
            got[c] = float(z[c])
            if z[c] < threshold:
                got.update(passed[c])
        passed[v] = got
    adjusted = z.copy()
    for v in g.nodes:
        if z[v] >= threshold and passed[v]:
            adjusted[v] += max(passed[v].values())
    return sorted(case.candidates, key=lambda j: (-adjusted[j], generation[j], -z[j], j))


RANKERS: dict[str, Ranker] = {
    "n-sigma": n_sigma,
    "BARO": baro,
    "anomaly traversal": anomaly_traversal,
    "ranked correlation": ranked_correlation,
    "PageRank": pagerank,
    "RHT": rht,
    "CIRCA (RHT + DA)": circa,
}
"""Every reference ranker by display name."""

GRAPH_FREE = ("n-sigma", "BARO", "ranked correlation")
"""Rankers that also work without a graph."""

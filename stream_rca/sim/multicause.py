"""Multi-cause faults on random linear DAGs, after CIRCA's simulation study (Li et al., KDD 2022).

A case is a random DAG of ``n_nodes`` metrics with linear mechanisms
``x_j = b_j + sum_i w_ij x_i + sigma_j e_j`` (weights of both signs, unit-variance noises that
are Gaussian, Student-t or centred lognormal), ``n_normal`` normal points, and one or more
faults. Each fault has ``1 + Poisson(1)`` root causes chosen among the target and its
ancestors; each cause's own noise is shifted, up or down (for a ``"mechanism"`` fault its
incoming weights are also redrawn), for ``duration`` points. As in CIRCA, the shifts start at
exponential draws (in each cause's noise sd) and are doubled together until the causes' joint
expected effect moves the target by more than ``min_target_z`` of its normal standard
deviations, so every fault is one an alarm would see, while one cause of a fault can be much
weaker than another, or push the target the other way. The target is the sink with the most
ancestors.

Node labels are a random permutation of the topological order, so that no ranker can profit
from breaking ties by index. Everything is drawn from one seeded :class:`numpy.random.Generator`.

Examples
--------
>>> case = multicause_case(0, n_nodes=20, n_normal=300)
>>> case.normal.shape, case.faults[0].window.shape
((300, 20), (15, 20))
>>> fault = case.faults[0]
>>> set(fault.causes) <= set(case.candidates)
True
>>> bool(multicause_case(0, n_nodes=20, n_normal=300).normal[5, 3] == case.normal[5, 3])
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import networkx as nx
import numpy as np
import numpy.typing as npt

__all__ = [
    "MULTICAUSE_NOISES",
    "MulticauseCase",
    "MulticauseFault",
    "MulticauseKind",
    "MulticauseNoise",
    "multicause_case",
]

FloatArray = npt.NDArray[np.float64]
MulticauseNoise = Literal["gaussian", "student", "lognormal", "mixed"]
MulticauseKind = Literal["shift", "mechanism"]
MULTICAUSE_NOISES: tuple[MulticauseNoise, ...] = ("gaussian", "student", "lognormal", "mixed")
_FAMILIES = ("gaussian", "student", "lognormal")
_STUDENT_DF = 3.0
_LOGNORMAL_SIGMA = 0.6


@dataclass(frozen=True)
class MulticauseFault:
    """One injected fault and the rows around it.

    Attributes
    ----------
    causes
        The true root causes (node indices), sorted.
    kinds
        Per cause, ``"shift"`` or ``"mechanism"``.
    magnitudes
        Per cause, the signed shift of its noise, in its own noise standard deviations.
    window
        ``(pre + duration + post, n)`` values: ``pre`` normal rows, the fault, ``post`` normal
        rows.
    fault_row
        The window's first fault row (``pre``).
    duration
        Fault rows.
    target_shift
        The causes' joint expected effect on the target, in its normal standard deviations.
    """

    causes: tuple[int, ...]
    kinds: tuple[MulticauseKind, ...]
    magnitudes: tuple[float, ...]
    window: FloatArray
    fault_row: int
    duration: int
    target_shift: float


@dataclass(frozen=True)
class MulticauseCase:
    """A simulated system, its normal period and its faults (see the module docstring).

    Attributes
    ----------
    graph
        The causal DAG over ``0..n-1`` (``cause -> effect``).
    weights
        ``(n, n)``: ``weights[i, j]`` is the weight of edge ``i -> j`` (0 without an edge).
    intercepts, noise_sd
        Per node, ``b_j`` and ``sigma_j``.
    families
        Per node, its noise family.
    normal
        ``(n_normal, n)`` normal values (NaN where ``missing`` dropped a value).
    target
        The watched sink.
    faults
        The faults, each with its own window.
    """

    graph: nx.DiGraph
    weights: FloatArray
    intercepts: FloatArray
    noise_sd: FloatArray
    families: tuple[str, ...]
    normal: FloatArray
    target: int
    faults: tuple[MulticauseFault, ...]

    @property
    def n_nodes(self) -> int:
        return int(self.weights.shape[0])

    @property
    def candidates(self) -> tuple[int, ...]:
        """The target and its ancestors: the nodes a root cause can be."""
        return tuple(sorted({*nx.ancestors(self.graph, self.target), self.target}))


def _noise(rng: np.random.Generator, family: str, size: int) -> FloatArray:
    """Zero-mean, unit-variance draws of one family."""
    if family == "gaussian":
        return rng.standard_normal(size)
    if family == "student":
        scale = np.sqrt(_STUDENT_DF / (_STUDENT_DF - 2.0))
        return np.asarray(rng.standard_t(_STUDENT_DF, size) / scale, dtype=np.float64)
    s2 = _LOGNORMAL_SIGMA**2
    raw = np.exp(_LOGNORMAL_SIGMA * rng.standard_normal(size)) - np.exp(s2 / 2.0)
    return np.asarray(raw / np.sqrt((np.exp(s2) - 1.0) * np.exp(s2)), dtype=np.float64)


def _random_dag(
    rng: np.random.Generator, n: int, in_degree: float, weight_range: tuple[float, float]
) -> tuple[nx.DiGraph, FloatArray]:
    order = rng.permutation(n)
    p = min(1.0, 2.0 * in_degree / max(n - 1, 1))
    weights = np.zeros((n, n))
    upper = np.triu(rng.random((n, n)) < p, k=1)
    a, b = np.nonzero(upper)
    lo, hi = weight_range
    w = rng.uniform(lo, hi, a.size) * rng.choice([-1.0, 1.0], a.size)
    weights[order[a], order[b]] = w
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(order[a].tolist(), order[b].tolist(), strict=True))
    return graph, weights


def _propagate(e: FloatArray, weights: FloatArray) -> FloatArray:
    """Solve ``x = x W + e`` row-wise: ``x = e (I - W)^-1``."""
    n = weights.shape[0]
    return np.asarray(np.linalg.solve((np.eye(n) - weights).T, e.T).T, dtype=np.float64)


def _draw_noise(
    rng: np.random.Generator, rows: int, families: tuple[str, ...], sd: FloatArray
) -> FloatArray:
    cols = [_noise(rng, f, rows) for f in families]
    return np.stack(cols, axis=1) * sd


def _choose_target(rng: np.random.Generator, graph: nx.DiGraph) -> int:
    sinks = [v for v in graph.nodes if graph.out_degree(v) == 0]
    sizes = np.array([len(nx.ancestors(graph, v)) for v in sinks])
    best = [v for v, s in zip(sinks, sizes, strict=True) if s == sizes.max()]
    return int(rng.choice(best))


def multicause_case(
    seed: int | np.random.Generator,
    *,
    n_nodes: int = 50,
    in_degree: float = 1.75,
    n_normal: int = 1440,
    n_faults: int = 1,
    noise: MulticauseNoise = "mixed",
    weight_range: tuple[float, float] = (0.5, 2.0),
    noise_sd_range: tuple[float, float] | None = None,
    base_magnitude: float = 1.0,
    mechanism_share: float = 0.0,
    pre: int = 10,
    duration: int = 5,
    post: int = 0,
    min_target_z: float = 3.0,
    max_doublings: int = 40,
    missing: float = 0.0,
) -> MulticauseCase:
    """Simulate one system with multi-cause faults (see the module docstring).

    Parameters
    ----------
    seed
        Seed or generator; the same seed gives the same case.
    n_nodes
        Nodes of the DAG (at least 2).
    in_degree
        Mean in-degree; edges are drawn independently with probability ``2 in_degree/(n-1)``.
    n_normal
        Normal rows.
    n_faults
        Faults, each with its own window and causes.
    noise
        Noise family of every node, or ``"mixed"`` (each node draws one of the three).
    weight_range
        ``|w|`` is uniform on this range; the sign is random.
    noise_sd_range
        ``sigma_j`` is uniform on this range; ``None`` (default): a standard exponential draw
        (at least 0.01), as in CIRCA, so that noise scales differ widely between nodes.
    base_magnitude
        Each cause's shift starts at ``base_magnitude`` times a standard exponential draw, in
        its own noise sd, with a random sign; then all the fault's shifts are doubled together
        until the expected effect on the target exceeds ``min_target_z`` of its normal sd
        (CIRCA's rule). Relative sizes are kept, so a fault can have a large and a small cause.
    mechanism_share
        Probability that a cause with parents gets a mechanism change (new incoming weights)
        on top of its shift.
    pre, duration, post
        Normal rows before the fault, fault rows, normal rows after it, in each window.
    min_target_z
        The target's expected shift (noise-free), in its normal sd, that a fault must exceed.
    max_doublings
        Limit of the doublings (reached only if the causes barely reach the target).
    missing
        Share of values replaced by NaN, everywhere (both periods), at random.

    Returns
    -------
    MulticauseCase
        The graph, parameters, normal rows, target and faults.
    """
    if n_nodes < 2:
        raise ValueError(f"n_nodes must be at least 2, got {n_nodes}")
    if duration < 1 or pre < 0 or post < 0 or n_faults < 1 or n_normal < 2:
        raise ValueError("need duration >= 1, pre >= 0, post >= 0, n_faults >= 1, n_normal >= 2")
    if noise not in MULTICAUSE_NOISES:
        raise ValueError(f"unknown noise {noise!r}; use one of {', '.join(MULTICAUSE_NOISES)}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    graph, weights = _random_dag(rng, n_nodes, in_degree, weight_range)
    while not any(graph.in_degree(v) for v in graph.nodes):  # pragma: no cover - tiny graphs
        graph, weights = _random_dag(rng, n_nodes, in_degree, weight_range)
    families: tuple[str, ...]
    if noise == "mixed":
        families = tuple(str(f) for f in rng.choice(_FAMILIES, n_nodes))
    else:
        families = (noise,) * n_nodes
    if noise_sd_range is None:
        sd = np.maximum(rng.standard_exponential(n_nodes), 0.01)
    else:
        sd = rng.uniform(*noise_sd_range, n_nodes)
    intercepts = rng.normal(0.0, 1.0, n_nodes)
    normal = _propagate(intercepts + _draw_noise(rng, n_normal, families, sd), weights)
    target = _choose_target(rng, graph)
    target_sd = float(np.std(normal[:, target]))
    mean_x = _propagate(intercepts[None, :], weights)[0]
    candidates = sorted({*nx.ancestors(graph, target), target})

    def _effect(causes: list[int], mags: FloatArray, fault_w: FloatArray) -> float:
        shift = np.zeros(n_nodes)
        shift[causes] = mags * sd[causes]
        fault_mean = _propagate((intercepts + shift)[None, :], fault_w)[0]
        return float((fault_mean[target] - mean_x[target]) / target_sd)

    faults = []
    for _ in range(n_faults):
        k = min(1 + int(rng.poisson(1.0)), len(candidates), n_nodes - 1)
        effect = 0.0
        while effect == 0.0:  # redraw only if the causes cancel exactly (never in practice)
            causes = sorted(int(c) for c in rng.choice(candidates, k, replace=False))
            signs = rng.choice([-1.0, 1.0], k)
            mags = base_magnitude * rng.standard_exponential(k) * signs
            kinds: list[MulticauseKind] = []
            fault_w = weights.copy()
            for c in causes:
                parents = list(graph.predecessors(c))
                if parents and rng.random() < mechanism_share:
                    kinds.append("mechanism")
                    new = rng.uniform(*weight_range, len(parents))
                    fault_w[parents, c] = new * rng.choice([-1.0, 1.0], len(parents))
                else:
                    kinds.append("shift")
            effect = _effect(causes, mags, fault_w)
        for _ in range(max_doublings):
            if abs(effect) > min_target_z:
                break
            mags = 2.0 * mags
            effect = _effect(causes, mags, fault_w)
        shift = np.zeros(n_nodes)
        shift[causes] = mags * sd[causes]
        rows = pre + duration + post
        e = intercepts + _draw_noise(rng, rows, families, sd)
        window = _propagate(e, weights)
        window[pre : pre + duration] = _propagate(e[pre : pre + duration] + shift, fault_w)
        faults.append((tuple(causes), tuple(kinds), tuple(float(m) for m in mags), window, effect))
    if missing > 0:
        normal[rng.random(normal.shape) < missing] = np.nan
        for f in faults:
            f[3][rng.random(f[3].shape) < missing] = np.nan
    return MulticauseCase(
        graph=graph,
        weights=weights,
        intercepts=intercepts,
        noise_sd=sd,
        families=families,
        normal=normal,
        target=target,
        faults=tuple(
            MulticauseFault(c, k, m, w, pre, duration, float(eff)) for c, k, m, w, eff in faults
        ),
    )

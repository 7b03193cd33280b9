"""A simulated microservice system: latencies that propagate along a causal DAG, with faults.

Each node ``j`` (a service's latency) is observed as

``x_j = m_j * (n_j + agg_j(w_ij * x_i for callees i))``

with ``n_j`` its intrinsic latency (log-normal, half-normal or exponential with mean
``scale_j`` seconds), ``agg_j`` a sum (sequential calls) or a max (parallel calls), ``w_ij`` the
per-edge call multiplicity, and ``m_j = 1`` except while a ``mechanism_change`` fault is active
on ``j``. A ``latency_shift`` fault adds ``magnitude * scale_j`` to ``n_j``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import cast

import networkx as nx
import numpy as np
import numpy.typing as npt

from stream_rca.errors import GraphError, UnknownNodeError
from stream_rca.sim.faults import Fault, FaultSchedule
from stream_rca.sim.intrinsic import FAMILIES, Family, draw_uniforms, intrinsic_from_uniforms
from stream_rca.sim.propagation import Aggregate, PropagationPlan
from stream_rca.sim.topology import random_spec, service_graph, shop_spec

__all__ = ["MicroserviceSystem"]


def _per_node(value: object, nodes: tuple[str, ...], name: str) -> dict[str, object]:
    """Expand a scalar or a mapping into a per-node dict; unknown keys are an error."""
    if isinstance(value, Mapping):
        unknown = set(value) - set(nodes)
        if unknown:
            raise UnknownNodeError(f"{name} names unknown nodes: {sorted(unknown)}")
        return dict(value)
    return dict.fromkeys(nodes, value)


class MicroserviceSystem:
    """A seeded simulator of service latencies with fault injection.

    Parameters
    ----------
    graph
        The causal DAG: a :class:`networkx.DiGraph` or ``(cause, effect)`` edges, where an edge
        ``callee -> caller`` means the callee's latency feeds the caller's.
    seed
        Seeds both the per-node parameters left unspecified and the sample stream.
    aggregate
        ``"sum"`` or ``"max"`` for all nodes, or a per-node mapping (missing nodes: ``"sum"``).
    weights
        Optional per-edge weights ``{(cause, effect): w}`` (call multiplicity); default 1.
    intrinsic
        Family of the intrinsic latency: one of ``"lognormal"``, ``"halfnormal"``,
        ``"exponential"``, or a per-node mapping; nodes left out get a family drawn from the seed.
    scales
        Per-node mean intrinsic latency in seconds (``0`` = no own latency); nodes left out get a
        log-uniform draw from ``scale_range``.
    scale_range
        Range of the drawn scales, in seconds.
    sigma
        Log-normal shape (std of the log latency), scalar or per node.
    faults
        Faults to inject (a :class:`FaultSchedule` or any iterable of :class:`Fault`).

    Examples
    --------
    >>> sim = MicroserviceSystem([("db", "api"), ("api", "web")], seed=1)
    >>> sim.nodes
    ('db', 'api', 'web')
    >>> x = sim.sample(4)
    >>> x.shape, bool((x[:, 2] >= x[:, 1]).all())
    ((4, 3), True)
    >>> sim.step_index
    4
    """

    def __init__(
        self,
        graph: nx.DiGraph | Iterable[tuple[str, str]],
        *,
        seed: int = 0,
        aggregate: Aggregate | Mapping[str, Aggregate] = "sum",
        weights: Mapping[tuple[str, str], float] | None = None,
        intrinsic: Family | Mapping[str, Family] | None = None,
        scales: Mapping[str, float] | None = None,
        scale_range: tuple[float, float] = (0.02, 0.2),
        sigma: float | Mapping[str, float] = 0.5,
        faults: Iterable[Fault] = (),
    ) -> None:
        g = service_graph(graph)
        self.seed = seed
        self.nodes: tuple[str, ...] = tuple(nx.lexicographical_topological_sort(g, key=str))
        self.edges: tuple[tuple[str, str], ...] = tuple(
            (a, b) for b in self.nodes for a in sorted(g.predecessors(b))
        )
        self._index = {n: i for i, n in enumerate(self.nodes)}
        param_seq, sample_seq = np.random.SeedSequence(seed).spawn(2)
        prng = np.random.default_rng(param_seq)
        n_nodes = len(self.nodes)

        agg = _per_node(aggregate, self.nodes, "aggregate")
        for n, a in agg.items():
            if a not in ("sum", "max"):
                raise ValueError(f"aggregate of {n!r} must be 'sum' or 'max', got {a!r}")
        self.aggregates: dict[str, Aggregate] = {
            n: cast(Aggregate, agg.get(n, "sum")) for n in self.nodes
        }
        w = dict(weights or {})
        unknown_edges = set(w) - set(self.edges)
        if unknown_edges:
            raise GraphError(f"weights name edges not in the graph: {sorted(unknown_edges)}")
        self.weights: dict[tuple[str, str], float] = {e: float(w.get(e, 1.0)) for e in self.edges}
        if any(not np.isfinite(v) or v < 0 for v in self.weights.values()):
            raise ValueError("edge weights must be finite and >= 0")

        drawn_families = prng.integers(len(FAMILIES), size=n_nodes)
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        drawn_scales = np.exp(prng.uniform(np.log(lo), np.log(hi), size=n_nodes))
        fam = _per_node(intrinsic, self.nodes, "intrinsic") if intrinsic is not None else {}
        sc = _per_node(scales or {}, self.nodes, "scales")
        sg = _per_node(sigma, self.nodes, "sigma")
        self.families: dict[str, Family] = {}
        self.scales: dict[str, float] = {}
        self.sigmas: dict[str, float] = {}
        for i, n in enumerate(self.nodes):
            f = fam.get(n)
            if f is not None and f not in FAMILIES:
                raise ValueError(f"intrinsic family of {n!r} must be one of {FAMILIES}, got {f!r}")
            self.families[n] = f if f is not None else FAMILIES[drawn_families[i]]
            s = float(cast(float, sc.get(n, drawn_scales[i])))
            if not np.isfinite(s) or s < 0:
                raise ValueError(f"scale of {n!r} must be finite and >= 0, got {s}")
            self.scales[n] = s
            self.sigmas[n] = float(cast(float, sg.get(n, 0.5)))

        self._families = np.array([FAMILIES.index(self.families[n]) for n in self.nodes])
        self._scales = np.array([self.scales[n] for n in self.nodes], dtype=np.float64)
        self._sigmas = np.array([self.sigmas[n] for n in self.nodes], dtype=np.float64)
        parents = [[self._index[a] for a in sorted(g.predecessors(n))] for n in self.nodes]
        pweights = [[self.weights[(a, n)] for a in sorted(g.predecessors(n))] for n in self.nodes]
        self._plan = PropagationPlan(
            n_nodes, parents, pweights, [self.aggregates[n] for n in self.nodes]
        )
        self._sample_seq = sample_seq
        self._bitgen = np.random.PCG64(sample_seq)
        self._rng = np.random.Generator(self._bitgen)
        self._step = 0
        self._faults = FaultSchedule()
        self.faults = FaultSchedule(faults)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def shop(cls, *, seed: int = 0, faults: Iterable[Fault] = ()) -> MicroserviceSystem:
        """The 11-node online-shop system of the DoWhy-GCM microservice example.

        ``Product Service`` calls its callees in parallel (``max``); everything else is
        sequential (``sum``). The Caching Service reaches the Product DB on half its requests
        (edge weight 0.5). Databases and the two web tiers have exponential intrinsic latency,
        the other services half-normal; mean scales are drawn from the seed in 0.05-0.5 s.

        Examples
        --------
        >>> sim = MicroserviceSystem.shop(seed=0)
        >>> len(sim.nodes), sim.nodes[-1], sim.aggregates["Product Service"]
        (11, 'Website', 'max')
        """
        return cls(**shop_spec(), seed=seed, faults=faults)

    @classmethod
    def random(
        cls,
        n_nodes: int,
        *,
        seed: int = 0,
        mean_in_degree: float = 2.0,
        max_in_degree: int = 4,
        n_layers: int | None = None,
        n_frontends: int | None = None,
        max_fraction: float = 0.2,
        weight_range: tuple[float, float] = (0.5, 2.0),
        scale_range: tuple[float, float] = (0.005, 0.05),
        faults: Iterable[Fault] = (),
    ) -> MicroserviceSystem:
        """A random layered service system (see :func:`~stream_rca.sim.random_service_dag`).

        Parameters
        ----------
        n_nodes
            Number of services; 10,000 builds and samples in well under a second per 100 rows.
        seed
            Seeds the topology, the parameters and the sample stream.
        mean_in_degree, max_in_degree, n_layers, n_frontends
            Passed to :func:`random_service_dag`.
        max_fraction
            Probability that a calling service calls in parallel (``"max"``) instead of ``"sum"``.
        weight_range
            Range of the uniform per-edge call multiplicities.
        scale_range
            Range of the log-uniform mean intrinsic latencies, in seconds.
        faults
            Faults to inject.

        Examples
        --------
        >>> sim = MicroserviceSystem.random(50, seed=3)
        >>> len(sim.nodes), sim.nodes == MicroserviceSystem.random(50, seed=3).nodes
        (50, True)
        """
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
        spec = random_spec(
            n_nodes,
            rng,
            mean_in_degree=mean_in_degree,
            max_in_degree=max_in_degree,
            n_layers=n_layers,
            n_frontends=n_frontends,
            max_fraction=max_fraction,
            weight_range=weight_range,
            scale_range=scale_range,
        )
        return cls(**spec, seed=seed, faults=faults)

    # ------------------------------------------------------------------ faults and ground truth
    @property
    def faults(self) -> FaultSchedule:
        """The injected faults (the ground truth); assign a new schedule to replace them."""
        return self._faults

    @faults.setter
    def faults(self, faults: Iterable[Fault]) -> None:
        schedule = faults if isinstance(faults, FaultSchedule) else FaultSchedule(faults)
        unknown = schedule.nodes - set(self.nodes)
        if unknown:
            raise UnknownNodeError(f"faults name unknown nodes: {sorted(unknown)}")
        self._faults = schedule

    def inject(self, *faults: Fault) -> None:
        """Add faults to the schedule."""
        self.faults = FaultSchedule([*self._faults, *faults])

    def active_faults(self, step: int) -> tuple[Fault, ...]:
        """The faults active at ``step`` (a snapshot index)."""
        return self._faults.active_at(step)

    def root_causes(self, step: int | None = None) -> frozenset[str]:
        """The root-cause nodes at ``step``, or of the whole schedule when ``step`` is None."""
        return self._faults.root_causes if step is None else self._faults.root_causes_at(step)

    # ------------------------------------------------------------------ sampling
    @property
    def step_index(self) -> int:
        """Index of the next snapshot that :meth:`step` or :meth:`sample` produces."""
        return self._step

    def index(self, node: str) -> int:
        """Column of ``node`` in :attr:`nodes` order."""
        try:
            return self._index[node]
        except KeyError:
            raise UnknownNodeError(f"unknown node {node!r}") from None

    def to_networkx(self) -> nx.DiGraph:
        """The causal graph as a new DiGraph, with ``aggregate`` and ``weight`` attributes."""
        g = nx.DiGraph()
        g.add_nodes_from((n, {"aggregate": self.aggregates[n]}) for n in self.nodes)
        g.add_edges_from((a, b, {"weight": self.weights[(a, b)]}) for a, b in self.edges)
        return g

    def subsystem(self, nodes: Iterable[str]) -> MicroserviceSystem:
        """The system restricted to ``nodes``, with the same per-node parameters and seed.

        Edges to nodes left out are dropped, so a kept node's latency only stays the same when
        ``nodes`` holds all its ancestors. Faults on kept nodes are kept (restricted to them).

        Examples
        --------
        >>> sim = MicroserviceSystem.shop(seed=0)
        >>> sub = sim.subsystem(["Order DB", "Order Service"])
        >>> sub.edges, sub.scales["Order DB"] == sim.scales["Order DB"]
        ((('Order DB', 'Order Service'),), True)
        """
        keep = set(nodes)
        for n in keep:
            self.index(n)
        g = nx.DiGraph()
        g.add_nodes_from(n for n in self.nodes if n in keep)
        g.add_edges_from((a, b) for a, b in self.edges if a in keep and b in keep)
        faults = []
        for f in self._faults:
            kept = tuple(n for n in f.nodes if n in keep)
            if kept:
                faults.append(Fault(f.kind, kept, f.start, f.duration, f.magnitude))
        return MicroserviceSystem(
            g,
            seed=self.seed,
            aggregate={n: self.aggregates[n] for n in keep},
            weights={e: w for e, w in self.weights.items() if e[0] in keep and e[1] in keep},
            intrinsic={n: self.families[n] for n in keep},
            scales={n: self.scales[n] for n in keep},
            sigma={n: self.sigmas[n] for n in keep},
            faults=faults,
        )

    def draw_intrinsic(self, n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
        """Draw ``n`` rows of fault-free intrinsic latencies from ``rng`` (state untouched)."""
        u = draw_uniforms(rng, n, len(self.nodes))
        return intrinsic_from_uniforms(u, self._families, self._scales, self._sigmas)

    def propagate(
        self,
        intrinsic: npt.NDArray[np.float64],
        multiplier: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float64]:
        """Observed latencies from intrinsic ones (shape ``(n, len(nodes))``), a pure function.

        ``multiplier`` (same shape) scales each node's whole latency, as a mechanism change does.

        Examples
        --------
        >>> sim = MicroserviceSystem([("a", "c"), ("b", "c")], aggregate={"c": "max"})
        >>> sim.propagate(np.array([[1.0, 3.0, 0.5]])).tolist()
        [[1.0, 3.0, 3.5]]
        """
        return self._plan.propagate(intrinsic, multiplier)

    def apply_faults(
        self, intrinsic: npt.NDArray[np.float64], start: int, faults: Iterable[Fault]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
        """Apply ``faults`` to intrinsic rows that stand for steps ``start, start + 1, ...``.

        Returns the shifted intrinsic latencies (a copy) and the mechanism multiplier (or None).
        """
        n = intrinsic.shape[0]
        shifted = np.array(intrinsic, dtype=np.float64, copy=True)
        multiplier: npt.NDArray[np.float64] | None = None
        for f in faults:
            rows = f.active_mask(start, n)
            if not rows.any():
                continue
            cols = np.array([self.index(node) for node in f.nodes], dtype=np.intp)
            block = np.ix_(rows, cols)
            if f.kind == "latency_shift":
                shifted[block] += f.magnitude * self._scales[cols]
            else:
                if multiplier is None:
                    multiplier = np.ones_like(shifted)
                multiplier[block] *= f.magnitude
        return shifted, multiplier

    def sample(self, n: int) -> npt.NDArray[np.float64]:
        """Draw the next ``n`` snapshots, applying the faults active at their steps.

        Returns
        -------
        numpy.ndarray
            Shape ``(n, len(nodes))``, columns in :attr:`nodes` order; row ``i`` is step
            ``step_index + i`` (before the call). Batching does not matter: ``sample(3)`` equals
            three calls of ``sample(1)``.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        start = self._step
        intrinsic = self.draw_intrinsic(n, self._rng)
        active = self._faults.overlapping(start, n)
        multiplier = None
        if active:
            intrinsic, multiplier = self.apply_faults(intrinsic, start, active)
        self._step += n
        return self.propagate(intrinsic, multiplier)

    def step(self) -> dict[str, float]:
        """Draw the next snapshot as ``{node: latency}``, and advance the step counter.

        Examples
        --------
        >>> snap = MicroserviceSystem.shop(seed=0).step()
        >>> sorted(snap)[:2], snap["Website"] > snap["www"]
        (['API', 'Auth Service'], True)
        """
        row = self.sample(1)[0]
        return dict(zip(self.nodes, (float(v) for v in row), strict=True))

    def reset(self, step: int = 0) -> None:
        """Rewind (or skip) the stream so that the next snapshot is ``step``, as if replayed."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        self._bitgen = np.random.PCG64(self._sample_seq)
        self._bitgen.advance(2 * len(self.nodes) * step)
        self._rng = np.random.Generator(self._bitgen)
        self._step = step

    def copy(self) -> MicroserviceSystem:
        """An independent copy, at the same step and stream position."""
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        return (
            f"MicroserviceSystem(n_nodes={len(self.nodes)}, n_edges={len(self.edges)}, "
            f"seed={self.seed}, step_index={self._step}, n_faults={len(self._faults)})"
        )

"""Service topologies: the online-shop example and random layered service DAGs.

Edges follow the causal convention of the project: ``(cause, effect)`` means the latency of the
callee ``cause`` feeds the latency of the caller ``effect`` (the call graph, reversed). Roots are
the services that call nothing (databases); sinks are the front-ends nobody calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypedDict

import networkx as nx
import numpy as np

from stream_rca.errors import CyclicGraphError, GraphError
from stream_rca.sim.intrinsic import Family
from stream_rca.sim.propagation import Aggregate

__all__ = [
    "SHOP_CACHE_HIT_WEIGHT",
    "SHOP_EDGES",
    "SHOP_EXPONENTIAL_NODES",
    "SHOP_MAX_NODES",
    "SystemSpec",
    "random_service_dag",
    "random_spec",
    "service_graph",
    "shop_spec",
]

#: The 11-node online-shop latency graph of the DoWhy-GCM microservice example, as
#: ``(cause, effect)`` = ``(callee, caller)`` pairs.
SHOP_EDGES: tuple[tuple[str, str], ...] = (
    ("www", "Website"),
    ("Auth Service", "www"),
    ("API", "www"),
    ("Customer DB", "Auth Service"),
    ("Customer DB", "API"),
    ("Customer DB", "Product Service"),
    ("Product Service", "API"),
    ("Auth Service", "API"),
    ("Order Service", "API"),
    ("Shipping Cost Service", "Product Service"),
    ("Caching Service", "Product Service"),
    ("Product DB", "Caching Service"),
    ("Order DB", "Order Service"),
)

#: Shop services that call their callees in parallel (latency = the slowest callee).
SHOP_MAX_NODES: frozenset[str] = frozenset({"Product Service"})

#: Expected number of Product DB calls per Caching Service request (the cache misses half the
#: time in the original generator); used as the weight of the edge Product DB -> Caching Service.
SHOP_CACHE_HIT_WEIGHT: float = 0.5


#: Shop services with exponential intrinsic latency (the others are half-normal), as in the
#: original generator's truncated exponentials.
SHOP_EXPONENTIAL_NODES: frozenset[str] = frozenset(
    {"Website", "www", "Customer DB", "Order DB", "Product DB"}
)


class SystemSpec(TypedDict):
    """Keyword arguments of :class:`~stream_rca.sim.MicroserviceSystem` for a topology."""

    graph: nx.DiGraph | tuple[tuple[str, str], ...]
    aggregate: dict[str, Aggregate]
    weights: dict[tuple[str, str], float]
    intrinsic: dict[str, Family] | None
    scale_range: tuple[float, float]


def shop_spec() -> SystemSpec:
    """The online-shop system: topology, aggregates, weights, intrinsic families, scale range.

    ``Product Service`` calls in parallel (``max``), the rest sequentially (``sum``); the
    Caching Service reaches the Product DB on half its requests (edge weight 0.5); mean intrinsic
    latencies are drawn (by the system's seed) in 0.05-0.5 s.

    Examples
    --------
    >>> shop_spec()["aggregate"]
    {'Product Service': 'max'}
    """
    nodes = sorted({n for e in SHOP_EDGES for n in e})
    return SystemSpec(
        graph=SHOP_EDGES,
        aggregate=dict.fromkeys(sorted(SHOP_MAX_NODES), "max"),
        weights={("Product DB", "Caching Service"): SHOP_CACHE_HIT_WEIGHT},
        intrinsic={
            n: ("exponential" if n in SHOP_EXPONENTIAL_NODES else "halfnormal") for n in nodes
        },
        scale_range=(0.05, 0.5),
    )


def random_spec(
    n_nodes: int,
    rng: np.random.Generator,
    *,
    mean_in_degree: float = 2.0,
    max_in_degree: int = 4,
    n_layers: int | None = None,
    n_frontends: int | None = None,
    max_fraction: float = 0.2,
    weight_range: tuple[float, float] = (0.5, 2.0),
    scale_range: tuple[float, float] = (0.005, 0.05),
) -> SystemSpec:
    """A random service system: a :func:`random_service_dag`, ``max`` nodes and edge weights.

    Parameters
    ----------
    n_nodes
        Number of services.
    rng
        The source of randomness.
    mean_in_degree, max_in_degree, n_layers, n_frontends
        Passed to :func:`random_service_dag`.
    max_fraction
        Probability that a service calls in parallel (``"max"``) instead of sequentially.
    weight_range
        Range of the uniform per-edge call multiplicities.
    scale_range
        Range of the log-uniform mean intrinsic latencies, in seconds.

    Examples
    --------
    >>> spec = random_spec(20, np.random.default_rng(0))
    >>> spec["graph"].number_of_nodes(), len(spec["weights"]) == spec["graph"].number_of_edges()
    (20, True)
    """
    if not 0.0 <= max_fraction <= 1.0:
        raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction}")
    if not 0.0 <= weight_range[0] <= weight_range[1]:
        raise ValueError(f"weight_range must satisfy 0 <= low <= high, got {weight_range}")
    nodes, edges = random_service_dag(
        n_nodes,
        rng,
        n_layers=n_layers,
        n_frontends=n_frontends,
        mean_in_degree=mean_in_degree,
        max_in_degree=max_in_degree,
    )
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    is_max = rng.random(len(nodes)) < max_fraction
    weights = rng.uniform(weight_range[0], weight_range[1], size=len(edges))
    return SystemSpec(
        graph=g,
        aggregate={n: "max" for n, m in zip(nodes, is_max, strict=True) if m},
        weights=dict(zip(edges, (float(w) for w in weights), strict=True)),
        intrinsic=None,
        scale_range=scale_range,
    )


def _growth(n_nodes: int, n_layers: int, n_frontends: int) -> float:
    """The ratio ``r`` with ``n_frontends * (1 + r + ... + r**(n_layers - 1)) = n_nodes``."""
    if n_layers == 1:
        return 1.0
    lo, hi = 0.0, float(max(n_nodes, 2))
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        total = n_frontends * sum(mid**k for k in range(n_layers))
        lo, hi = (mid, hi) if total < n_nodes else (lo, mid)
    return hi


def _layer_sizes(n_nodes: int, n_layers: int, n_frontends: int) -> list[int]:
    """Split ``n_nodes`` into layers growing geometrically from ``n_frontends`` on top."""
    if n_layers == 1:
        return [n_nodes]
    r = _growth(n_nodes, n_layers, n_frontends)
    share = np.array([n_frontends * r**k for k in range(1, n_layers)], dtype=float)
    share *= (n_nodes - n_frontends) / share.sum()
    sizes = np.maximum(np.floor(share).astype(np.int64), 1)  # every layer gets a node
    spare = n_nodes - n_frontends - int(sizes.sum())
    order = np.argsort(-(share - sizes), kind="stable")
    while spare != 0:  # hand out (or take back) the rounding remainder, largest shares first
        step = 1 if spare > 0 else -1
        for k in order if step > 0 else order[::-1]:
            if spare == 0:
                break
            if sizes[k] + step >= 1:
                sizes[k] += step
                spare -= step
    return [n_frontends, *(int(s) for s in sizes)]


def random_service_dag(
    n_nodes: int,
    rng: np.random.Generator,
    *,
    n_layers: int | None = None,
    n_frontends: int | None = None,
    mean_in_degree: float = 2.0,
    max_in_degree: int = 4,
    skip_probability: float = 0.2,
    prefix: str = "svc-",
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Draw a random layered service DAG.

    Services sit in layers: a few front-ends on top (the sinks), then layers of backends that
    grow geometrically downwards, down to the databases in the bottom layer (the roots). Every
    service below the top is called by at least one service of the layer just above it; every
    service above the bottom calls ``1 + Poisson(mean_in_degree - 1)`` services (capped at
    ``max_in_degree``), mostly of the next layer, sometimes (``skip_probability``) of any deeper
    layer.

    Parameters
    ----------
    n_nodes
        Number of services, at least 1.
    rng
        The source of randomness.
    n_layers
        Number of layers; default: the fewest for which each layer is at most
        ``max(1.5, min(mean_in_degree, max_in_degree))`` times as large as the one above it
        (then every service has a caller; with fewer layers some may become extra front-ends).
    n_frontends
        Number of front-end services (sinks); default ``max(1, round(sqrt(n_nodes) / 3))``.
    mean_in_degree
        Mean number of callees of a service that calls anything (its causal in-degree), >= 1.
    max_in_degree
        Maximum number of callees of one service, >= 1.
    skip_probability
        Probability that an extra callee is drawn from any deeper layer instead of the next one.
    prefix
        Node names are ``prefix`` + a zero-padded number (``"svc-007"``); front-ends come first.

    Returns
    -------
    nodes, edges
        The node names, and the ``(cause, effect)`` = ``(callee, caller)`` edges.

    Examples
    --------
    >>> nodes, edges = random_service_dag(12, np.random.default_rng(0))
    >>> len(nodes), nodes[0]
    (12, 'svc-000')
    >>> all(cause != effect for cause, effect in edges)
    True
    """
    if n_nodes < 1:
        raise ValueError(f"n_nodes must be at least 1, got {n_nodes}")
    if mean_in_degree < 1.0:
        raise ValueError(f"mean_in_degree must be at least 1, got {mean_in_degree}")
    if max_in_degree < 1:
        raise ValueError(f"max_in_degree must be at least 1, got {max_in_degree}")
    if not 0.0 <= skip_probability <= 1.0:
        raise ValueError(f"skip_probability must be in [0, 1], got {skip_probability}")
    if n_frontends is None:
        n_frontends = max(1, round(math.sqrt(n_nodes) / 3))
    n_frontends = max(1, min(n_frontends, n_nodes))
    if n_layers is None:  # just deep enough for layers to grow by at most mean_in_degree
        n_layers = 1 if n_frontends == n_nodes else 2
        limit = max(1.5, min(mean_in_degree, float(max_in_degree)))
        while n_layers < n_nodes and _growth(n_nodes, n_layers, n_frontends) > limit:
            n_layers += 1
    n_layers = max(1, min(n_layers, n_nodes - n_frontends + 1))
    width = max(3, len(str(n_nodes - 1)))
    nodes = tuple(f"{prefix}{i:0{width}d}" for i in range(n_nodes))
    if n_layers == 1:
        return nodes, ()

    sizes = _layer_sizes(n_nodes, n_layers, n_frontends)
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    layer_of = np.repeat(np.arange(n_layers), sizes)
    callees: list[set[int]] = [set() for _ in range(n_nodes)]

    # 1. Everyone below the top has a caller in the layer just above (capacity permitting).
    for v in range(int(bounds[1]), n_nodes):
        k = int(layer_of[v])
        lo, hi = int(bounds[k - 1]), int(bounds[k])
        u = int(rng.integers(lo, hi))
        if len(callees[u]) >= max_in_degree:
            free = [w for w in range(lo, hi) if len(callees[w]) < max_in_degree]
            if not free:
                free = [w for w in range(0, lo) if len(callees[w]) < max_in_degree]
            if not free:
                continue  # no capacity anywhere above: v becomes an extra front-end
            u = free[int(rng.integers(len(free)))]
        callees[u].add(v)

    # 2. Top up every caller to its drawn number of callees.
    wanted = 1 + rng.poisson(mean_in_degree - 1.0, size=n_nodes)
    wanted = np.minimum(wanted, max_in_degree)
    for u in range(int(bounds[n_layers - 1])):
        k = int(layer_of[u])
        next_lo, next_hi = int(bounds[k + 1]), int(bounds[k + 2])
        attempts = 0
        while len(callees[u]) < wanted[u] and attempts < 4 * max_in_degree:
            attempts += 1
            if rng.random() < skip_probability:
                v = int(rng.integers(next_lo, n_nodes))
            else:
                v = int(rng.integers(next_lo, next_hi))
            callees[u].add(v)

    edges = tuple((nodes[v], nodes[u]) for u in range(n_nodes) for v in sorted(callees[u]))
    return nodes, edges


def service_graph(graph: nx.DiGraph | Iterable[tuple[str, str]]) -> nx.DiGraph:
    """Validate a causal graph given as a DiGraph or ``(cause, effect)`` edges.

    Parameters
    ----------
    graph
        A :class:`networkx.DiGraph` (isolated nodes are kept) or an iterable of edges.

    Returns
    -------
    networkx.DiGraph
        A fresh DiGraph with string node names.

    Raises
    ------
    GraphError
        On a self-loop, a duplicate edge or an empty graph.
    CyclicGraphError
        On a cycle, which the message names.

    Examples
    --------
    >>> service_graph([("db", "api")]).number_of_edges()
    1
    >>> service_graph([("a", "b"), ("b", "a")])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream_rca.errors.CyclicGraphError: the causal graph has a cycle: ...
    """
    g = nx.DiGraph()
    if isinstance(graph, nx.DiGraph):
        g.add_nodes_from(str(n) for n in graph.nodes)
        pairs = [(str(a), str(b)) for a, b in graph.edges]
    else:
        pairs = [(str(a), str(b)) for a, b in graph]
    seen: set[tuple[str, str]] = set()
    for a, b in pairs:
        if a == b:
            raise GraphError(f"self-loop on node {a!r}; a service cannot cause its own latency")
        if (a, b) in seen:
            raise GraphError(f"duplicate edge {a!r} -> {b!r}; list each edge once")
        seen.add((a, b))
        g.add_edge(a, b)
    if g.number_of_nodes() == 0:
        raise GraphError("the graph has no nodes; give at least one edge or node")
    if not nx.is_directed_acyclic_graph(g):
        cycle = " -> ".join(str(e[0]) for e in nx.find_cycle(g))
        raise CyclicGraphError(f"the causal graph has a cycle: {cycle}; remove one of its edges")
    return g

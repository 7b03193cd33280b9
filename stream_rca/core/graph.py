"""Causal graphs: a validated DAG over named nodes, with the index arrays the engine needs.

An arrow ``a -> b`` says that a's value feeds b's. For latencies that is the call graph
reversed: the callee's latency is a cause of the caller's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import numpy.typing as npt

from stream_rca.errors import CyclicGraphError, GraphError, UnknownNodeError

__all__ = ["CausalGraph"]


class CausalGraph:
    """A directed acyclic graph of named nodes, frozen after construction.

    Nodes are kept in one topological order (ties broken by first appearance), and every node
    has an integer index in that order: ``graph.index[name]``.

    Parameters
    ----------
    edges
        ``(cause, effect)`` pairs.
    nodes
        Extra nodes without edges (isolated nodes); nodes named by edges are added anyway.
    name
        The graph's name (its tenant / system), used in incident ids and metrics.

    Raises
    ------
    GraphError
        For a self-loop, a duplicate edge or an empty or non-string node name.
    CyclicGraphError
        For a cycle; the message names the nodes on it.

    Examples
    --------
    >>> g = CausalGraph([("db", "api"), ("api", "web"), ("cache", "api")], name="shop")
    >>> g.nodes
    ('db', 'cache', 'api', 'web')
    >>> g.parents("api")
    ('db', 'cache')
    >>> sorted(g.ancestors("web"))
    ['api', 'cache', 'db']
    >>> g.sinks
    ('web',)
    """

    def __init__(
        self,
        edges: Iterable[tuple[str, str]],
        nodes: Iterable[str] = (),
        *,
        name: str = "default",
    ) -> None:
        self.name = name
        dag: nx.DiGraph = nx.DiGraph()
        seen: set[tuple[str, str]] = set()
        order: list[str] = []
        for node in nodes:
            _check_name(node)
            if node not in dag:
                dag.add_node(node)
                order.append(node)
        for edge in edges:
            if len(edge) != 2:
                raise GraphError(f"an edge must be a (cause, effect) pair, got {edge!r}")
            cause, effect = edge
            _check_name(cause)
            _check_name(effect)
            if cause == effect:
                raise GraphError(f"self-loop on node {cause!r}: a node cannot cause itself")
            if (cause, effect) in seen:
                raise GraphError(f"duplicate edge {cause!r} -> {effect!r}")
            seen.add((cause, effect))
            for node in (cause, effect):
                if node not in dag:
                    dag.add_node(node)
                    order.append(node)
            dag.add_edge(cause, effect)
        if not order:
            raise GraphError("the graph has no nodes")
        try:
            cycle = nx.find_cycle(dag)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle is not None:
            path = " -> ".join([str(u) for u, _ in cycle] + [str(cycle[0][0])])
            raise CyclicGraphError(f"the graph has a cycle: {path}; a causal graph must be a DAG")
        rank = {n: i for i, n in enumerate(order)}
        self.nodes: tuple[str, ...] = tuple(
            nx.lexicographical_topological_sort(dag, key=lambda n: f"{rank[n]:09d}")
        )
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.nodes)}
        self._dag = dag
        self._parents: dict[str, tuple[str, ...]] = {
            n: tuple(sorted(dag.predecessors(n), key=self.index.__getitem__)) for n in self.nodes
        }

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_networkx(cls, dag: nx.DiGraph, *, name: str = "default") -> CausalGraph:
        """Build from a networkx DiGraph whose edges point from cause to effect."""
        return cls(((str(u), str(v)) for u, v in dag.edges), (str(n) for n in dag.nodes), name=name)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, name: str | None = None) -> CausalGraph:
        """Build from ``{"edges": [[cause, effect], ...], "nodes": [...]}`` (``nodes`` optional)."""
        if not isinstance(doc, Mapping) or "edges" not in doc:
            raise GraphError('a graph document must be an object with an "edges" list')
        edges = doc["edges"]
        if not isinstance(edges, list):
            raise GraphError('"edges" must be a list of [cause, effect] pairs')
        pairs: list[tuple[str, str]] = []
        for edge in edges:
            if not isinstance(edge, list | tuple) or len(edge) != 2:
                raise GraphError(f"an edge must be a [cause, effect] pair, got {edge!r}")
            pairs.append((edge[0], edge[1]))
        nodes = doc.get("nodes", [])
        if not isinstance(nodes, list):
            raise GraphError('"nodes" must be a list of names')
        gname = name if name is not None else str(doc.get("name", "default"))
        return cls(pairs, nodes, name=gname)

    @classmethod
    def from_file(cls, path: str | Path, *, name: str | None = None) -> CausalGraph:
        """Load a graph file: JSON or YAML (``edges`` document), or an edge list.

        An edge list has one edge a line, ``cause -> effect`` or ``cause,effect``; blank lines
        and lines starting with ``#`` are skipped. The graph's name is ``name`` if given, else
        the document's ``name`` field, else the file's stem (``shop.json`` is ``shop``), never
        its folder: the same file gives the same incident ids wherever it is.

        Raises
        ------
        GraphError
            For an unreadable or malformed file, or a ``name`` field that is not a non-empty
            string.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise GraphError(f"cannot read graph file {p}: {exc.strerror or exc}") from exc
        suffix = p.suffix.lower()
        default_name = name if name is not None else p.stem
        if suffix == ".json":
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                raise GraphError(f"{p}: not valid JSON ({exc})") from exc
            return cls.from_dict(doc, name=name or _name_field(doc, default_name, p))
        if suffix in {".yaml", ".yml"}:
            import yaml  # deferred: only YAML graph files need it

            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise GraphError(f"{p}: not valid YAML ({exc})") from exc
            if not isinstance(doc, Mapping):
                raise GraphError(f'{p}: expected a mapping with an "edges" list')
            return cls.from_dict(doc, name=name or _name_field(doc, default_name, p))
        return cls(_parse_edge_list(text, p), name=default_name)

    # -- structure ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, node: object) -> bool:
        return node in self.index

    def __repr__(self) -> str:
        return f"CausalGraph(name={self.name!r}, nodes={len(self)}, edges={self.n_edges})"

    @property
    def n_edges(self) -> int:
        return int(self._dag.number_of_edges())

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self._dag.edges, key=lambda e: (self.index[e[1]], self.index[e[0]])))

    def check(self, node: str) -> str:
        """Return ``node`` if the graph has it, else raise :class:`UnknownNodeError`."""
        if node not in self.index:
            raise UnknownNodeError(
                f"unknown node {node!r} in graph {self.name!r}; "
                f"known nodes: {', '.join(self.nodes[:10])}{', ...' if len(self) > 10 else ''}"
            )
        return node

    def parents(self, node: str) -> tuple[str, ...]:
        """The direct causes of ``node``, in topological order."""
        return self._parents[self.check(node)]

    def children(self, node: str) -> tuple[str, ...]:
        return tuple(sorted(self._dag.successors(self.check(node)), key=self.index.__getitem__))

    def ancestors(self, node: str) -> tuple[str, ...]:
        """All upstream nodes of ``node`` (not including it), in topological order."""
        anc = nx.ancestors(self._dag, self.check(node))
        return tuple(sorted(anc, key=self.index.__getitem__))

    def descendants(self, node: str) -> tuple[str, ...]:
        desc = nx.descendants(self._dag, self.check(node))
        return tuple(sorted(desc, key=self.index.__getitem__))

    @cached_property
    def roots(self) -> tuple[str, ...]:
        return tuple(n for n in self.nodes if not self._parents[n])

    @cached_property
    def sinks(self) -> tuple[str, ...]:
        return tuple(n for n in self.nodes if self._dag.out_degree(n) == 0)

    @cached_property
    def parent_index(self) -> tuple[npt.NDArray[np.intp], ...]:
        """Per node (by index), the indices of its parents."""
        return tuple(
            np.array([self.index[p] for p in self._parents[n]], dtype=np.intp) for n in self.nodes
        )

    def to_networkx(self) -> nx.DiGraph:
        """A copy of the graph as a networkx DiGraph."""
        return self._dag.copy()

    def to_dict(self) -> dict[str, Any]:
        """The graph as a JSON-ready document (the format :meth:`from_dict` reads)."""
        isolated = [n for n in self.nodes if self._dag.degree(n) == 0]
        doc: dict[str, Any] = {"name": self.name, "edges": [list(e) for e in self.edges]}
        if isolated:
            doc["nodes"] = isolated
        return doc

    def summary(self) -> dict[str, Any]:
        """Counts and notable nodes, for ``stream-rca check-graph``."""
        in_deg = [len(self._parents[n]) for n in self.nodes]
        depth = nx.dag_longest_path_length(self._dag) if self.n_edges else 0
        return {
            "name": self.name,
            "nodes": len(self),
            "edges": self.n_edges,
            "roots": list(self.roots),
            "sinks": list(self.sinks),
            "max_in_degree": max(in_deg),
            "longest_path": int(depth),
            "max_ancestors": max(len(self.ancestors(s)) for s in self.sinks),
        }

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "edges": self.edges, "nodes": self.nodes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Rebuild rather than pickle networkx internals; node order is restored exactly.
        rebuilt = CausalGraph(state["edges"], state["nodes"], name=state["name"])
        self.__dict__.update(rebuilt.__dict__)


def _name_field(doc: Any, default: str, path: Path) -> str:
    """The ``name`` field of a graph document, else ``default``."""
    if not isinstance(doc, Mapping) or "name" not in doc:
        return default
    value = doc["name"]
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise GraphError(f"{path}: name: expected a non-empty name, got {value!r}")
    return value


def _check_name(node: object) -> None:
    if not isinstance(node, str) or not node.strip():
        raise GraphError(f"node names must be non-empty strings, got {node!r}")


def _parse_edge_list(text: str, path: Path) -> Sequence[tuple[str, str]]:
    edges: list[tuple[str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "->" in line:
            parts = [s.strip() for s in line.split("->")]
        else:
            parts = [s.strip() for s in line.split(",")]
        if len(parts) != 2 or not all(parts):
            raise GraphError(
                f"{path}:{lineno}: expected 'cause -> effect' or 'cause,effect', got {raw!r}"
            )
        edges.append((parts[0], parts[1]))
    return edges

"""Partial graphs: metrics that the causal graph does not list, scored marginally.

A graph rarely lists every metric a team has. The engine attributes over the graph's nodes; the
other series (``extra`` series) are followed by a
:class:`~stream_rca.core.graphfree.MarginalRanker` beside it, with the graph's watched targets
as reference series (for the onsets), and every attribution names them as candidates of their
own under ``extra_candidates``: each with its marginal score, onset, group and
``not_in_graph: true``, ordered by the graph-free rule
(:data:`~stream_rca.core.graphfree.GRAPH_FREE_RULE`). The graph's own ranking (Shapley
contributions, efficiency) is left as it is: an extra series has no place in the graph's
factorisation, so it cannot take a share of the target's score.

The number of extra series may be bounded (``max_series``): the series beyond it are refused
(:meth:`ExtraSeries.admit` says which), so a stream cannot grow a graph's memory without end.

The extra series and their marginal models are state as data (:meth:`ExtraSeries.to_state`,
:meth:`ExtraSeries.from_state`), so a worker checkpoints them with the graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence

from stream_rca.core.checkpoint import StateError, StateTree, get_list, get_tree
from stream_rca.core.graphfree import GRAPH_FREE_RULE, GraphFreeConfig, MarginalRanker
from stream_rca.core.types import Attribution, Snapshot

__all__ = ["EXTRA_KEY", "ExtraSeries"]

EXTRA_KEY = "extra_candidates"
"""Key of the attribution document's list of series not in the graph."""


class ExtraSeries:
    """Series outside a graph, scored marginally and named beside the graph's attributions.

    Parameters
    ----------
    graph_nodes
        The graph's nodes (never extra).
    targets
        The graph's watched targets: followed too, for the onsets the extras are judged by.
    config
        The marginal models' parameters.
    max_series
        The most extra series followed (``None``: no bound).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ex = ExtraSeries(["db", "api"], ["api"], GraphFreeConfig(warmup=50))
    >>> for t in range(200):
    ...     api = rng.normal(10, 1)
    ...     ex.observe(Snapshot(float(t), {"api": api, "gc_pause": rng.normal(5, 1)}))
    >>> ex.observe(Snapshot(200.0, {"api": 30.0, "gc_pause": 40.0}))
    >>> [(c["node"], c["group"], c["not_in_graph"]) for c in ex.candidates("api")]
    [('gc_pause', 'new', True)]
    """

    def __init__(
        self,
        graph_nodes: Collection[str],
        targets: Sequence[str],
        config: GraphFreeConfig | None = None,
        *,
        max_series: int | None = None,
    ) -> None:
        if max_series is not None and max_series < 0:
            raise ValueError(f"max_series must be >= 0, got {max_series}")
        self.graph_nodes = frozenset(graph_nodes)
        self.targets = tuple(targets)
        self.max_series = max_series
        self.ranker = MarginalRanker(list(self.targets), config)
        self.series: list[str] = []
        """The extra series followed, in order of arrival."""

    def __repr__(self) -> str:
        return f"ExtraSeries(series={len(self.series)}, max_series={self.max_series})"

    def admit(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """Split names not in the graph into those followed (new ones added) and those refused.

        A name is refused when the bound is reached and it is not followed yet.
        """
        known = set(self.series)
        admitted: list[str] = []
        refused: list[str] = []
        for n in dict.fromkeys(names):
            if n in self.graph_nodes:
                continue
            if n in known:
                admitted.append(n)
            elif self.max_series is None or len(self.series) < self.max_series:
                self.series.append(n)
                known.add(n)
                admitted.append(n)
            else:
                refused.append(n)
        if admitted:
            self.ranker.add_nodes(admitted)
        return admitted, refused

    def split(self, values: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        """``values`` as (the graph's, the extra series') values; new extras are admitted.

        Extras beyond the bound are left out of both.
        """
        graph = {k: v for k, v in values.items() if k in self.graph_nodes}
        admitted, _ = self.admit(k for k in values if k not in self.graph_nodes)
        keep = set(admitted)
        return graph, {k: v for k, v in values.items() if k in keep}

    def observe(self, snapshot: Snapshot, *, learn: bool = True, trusted: bool = False) -> None:
        """Score and learn one snapshot: its extra series and the targets' values.

        Values of other graph nodes are ignored; extras not admitted yet are admitted (up to
        the bound).
        """
        self.admit(k for k in snapshot.values if k not in self.graph_nodes)
        follow = set(self.series) | set(self.targets)
        values = {k: float(v) for k, v in snapshot.values.items() if k in follow}
        row = Snapshot(snapshot.ts, values, snapshot.graph, snapshot.end)
        self.ranker.process_one(row, learn=learn, trusted=trusted)

    def candidates(self, target: str | None = None) -> list[dict[str, object]]:
        """The extra series, most likely root cause first (graph-free rule), as documents."""
        extra = set(self.series)
        out: list[dict[str, object]] = []
        for c in self.ranker.rank(target):
            if c.node in extra:
                out.append({**c.to_dict(), "not_in_graph": True})
        return out

    def to_state(self) -> StateTree:
        """The extra series and their marginal models as a state tree.

        Graph nodes, targets, configuration and bound are not in it: :meth:`from_state`
        takes them again.
        """
        return {"series": list(self.series), "ranker": self.ranker.to_state()}

    @classmethod
    def from_state(
        cls,
        graph_nodes: Collection[str],
        targets: Sequence[str],
        config: GraphFreeConfig | None,
        state: StateTree,
        *,
        max_series: int | None = None,
    ) -> ExtraSeries:
        """Rebuild the extra series of :meth:`to_state`'s tree (arguments as the constructor's).

        Raises
        ------
        StateError
            For a tree this class did not write: series that are not distinct names, that
            are graph nodes, more of them than ``max_series``, or a ranker that does not
            follow the targets and every series.

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> ex = ExtraSeries(["db", "api"], ["api"], GraphFreeConfig(warmup=20))
        >>> for t in range(60):
        ...     ex.observe(Snapshot(float(t), {"api": rng.normal(), "gc": rng.normal()}))
        >>> twin = ExtraSeries.from_state(["db", "api"], ["api"], ex.ranker.config, ex.to_state())
        >>> s = Snapshot(60.0, {"api": 0.3, "gc": 6.0})
        >>> ex.observe(s); twin.observe(s)
        >>> twin.candidates("api") == ex.candidates("api")
        True
        """
        out = cls(graph_nodes, targets, config, max_series=max_series)
        names = get_list(state, "series")
        if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise StateError("series: expected distinct names")
        if any(n in out.graph_nodes for n in names):
            raise StateError("series: a graph node is listed as an extra series")
        if max_series is not None and len(names) > max_series:
            raise StateError(f"series: {len(names)} extra series, more than {max_series}")
        ranker = MarginalRanker.from_state(out.ranker.config, get_tree(state, "ranker"))
        followed = set(ranker.nodes)
        if not set(out.targets) <= followed or not set(names) <= followed:
            raise StateError("ranker: it does not follow every target and extra series")
        if not followed <= set(out.targets) | set(names) | out.graph_nodes:
            raise StateError("ranker: it follows series that are neither targets nor extras")
        out.series = list(names)
        out.ranker = ranker
        return out

    def annotate(self, att: Attribution) -> Attribution:
        """``att`` with the extra series as candidates (``extra_candidates``) and the rule."""
        extra = dict(att.extra)
        extra[EXTRA_KEY] = self.candidates(att.target)
        extra["extra_rule"] = GRAPH_FREE_RULE
        return dataclasses.replace(att, extra=extra)

"""A graph without edges in the worker: graph-free ranking behind the engine's interface.

A graphs-file entry that lists nodes but no edges (or says ``mode: graph-free``) has no causal
mechanisms to learn and no Shapley values to share a target's anomaly over.
:class:`GraphFreeEngine` runs such a graph with the replay's graph-free rule
(:mod:`stream_rca.core.graphfree`): every node's calibrated marginal IT score (two-sided, so a
drop counts as much as a rise), each target's trigger on its own marginal score, and, when an
incident opens or worsens, an attribution of method ``graph-free`` that ranks the metrics by
the rule (new anomalies by score and onset first). Nothing is learned while an incident of the
graph is open, as in the replay.

It answers the calls the worker makes of an :class:`~stream_rca.core.engine.Engine`
(:meth:`process_one`, :meth:`process_many`, :meth:`to_state`, :meth:`from_state`,
:attr:`warm`, :meth:`nbytes`), so the pipeline, its batch path, the metrics and the
checkpoints treat it like any other graph's engine. Pure: no clock but the ``timer`` it is
given (for the attribution's ``seconds``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from stream_rca.core.checkpoint import StateError, StateTree, get_list, get_str, get_tree
from stream_rca.core.config import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.graphfree import GRAPH_FREE_METHOD, GraphFreeConfig, MarginalRanker
from stream_rca.core.trigger import Trigger
from stream_rca.core.types import Attribution, IncidentEvent, Snapshot, StepResult

if TYPE_CHECKING:
    from stream_rca.core.block import BlockResult

__all__ = ["GRAPH_FREE_STATE", "GraphFreeEngine", "graph_free_config"]

GRAPH_FREE_STATE = "graph-free/v1"
"""The ``kind`` of a graph-free engine's state tree."""


def graph_free_config(config: EngineConfig) -> GraphFreeConfig:
    """The ranker parameters an :class:`EngineConfig` gives a graph-free graph.

    ``warmup``, ``reservoir``, ``refit_every``, ``protect`` and ``seed`` carry over; the
    other parameters of the ranker keep their defaults (one configuration for every data set).
    """
    return GraphFreeConfig(
        warmup=config.warmup,
        reservoir=config.reservoir,
        refit_every=config.refit_every,
        protect=config.protect,
        seed=config.seed,
    )


class GraphFreeEngine:
    """Marginal scores, incidents and graph-free attributions of one graph without edges.

    Parameters
    ----------
    graph
        The graph: its nodes are the metrics ranked; its edges, if any, are not used.
    config
        ``warmup``, ``reservoir``, ``refit_every``, ``protect``, ``seed`` and ``trigger`` are
        used (:func:`graph_free_config`).
    targets
        Watched metrics; their marginal scores open incidents. Required: without a graph
        there are no sinks to default to.
    timer
        A clock such as ``time.perf_counter``; when given, each attribution records how long
        it took.

    Examples
    --------
    >>> import numpy as np
    >>> g = CausalGraph([], ["db", "api", "web"], name="shop")
    >>> e = GraphFreeEngine(g, EngineConfig(warmup=50), targets=["api"])
    >>> rng = np.random.default_rng(0)
    >>> for t in range(300):
    ...     db = rng.normal(10, 1)
    ...     _ = e.process_one(Snapshot(float(t), {"db": db, "api": db + rng.normal(), "web": 5.0 + rng.normal()}))
    >>> r = e.process_one(Snapshot(300.0, {"db": 30.0, "api": 31.0, "web": 5.0}))
    >>> att = r.attributions[0]
    >>> att.method, att.root_causes[0].node, att.extra["graph_used"]
    ('graph-free', 'db', False)
    """  # noqa: E501

    def __init__(
        self,
        graph: CausalGraph,
        config: EngineConfig | None = None,
        *,
        targets: Sequence[str] | None = None,
        timer: Callable[[], float] | None = None,
    ) -> None:
        self.graph = graph
        self.config = cfg = config or EngineConfig()
        if not targets:
            raise ValueError("a graph-free graph needs its targets (the watched metrics)")
        self.targets: tuple[str, ...] = tuple(graph.check(t) for t in targets)
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("a target is listed twice")
        self.timer = timer
        self.marginalised: tuple[str, ...] = ()
        """Always empty: every metric is ranked on its own, sparse or not."""
        self.ranker = MarginalRanker(graph.nodes, graph_free_config(cfg))
        self._triggers = {t: Trigger(graph.name, t, cfg.trigger) for t in self.targets}

    def __repr__(self) -> str:
        return (
            f"GraphFreeEngine(graph={self.graph.name!r}, nodes={len(self.graph)}, "
            f"targets={list(self.targets)}, snapshots={self.n_snapshots})"
        )

    @property
    def n_snapshots(self) -> int:
        """Snapshots processed so far."""
        return self.ranker.n_snapshots

    @property
    def warm(self) -> bool:
        """True once every metric has learned from ``warmup`` values."""
        fitted = self.ranker.bank.fitted_count
        return bool((fitted >= self.ranker.config.warmup).all())

    def nbytes(self) -> int:
        """Approximate memory of the numeric state, in bytes."""
        return int(self.ranker.bank.nbytes()) + 10 * 8 * len(self.graph)

    # -- the per-snapshot step ----------------------------------------------------------------

    def process_one(self, snapshot: Snapshot) -> StepResult:
        """Score, trigger on and learn from one snapshot (nothing learns inside an incident)."""
        nodes = self.ranker.nodes
        values = {}
        invalid: list[str] = []
        for name, v in snapshot.values.items():
            if name not in self.graph.index:
                continue  # the aligner sends the graph's nodes only
            if isinstance(v, int | float) and math.isfinite(v):
                values[name] = float(v)
            else:
                invalid.append(name)
        open_before = any(trig.is_open for trig in self._triggers.values())
        learn = not open_before
        cfg = self.ranker.config
        warm_before = self.ranker.bank.fitted_count >= cfg.warmup
        scores = self.ranker.process_one(dataclasses.replace(snapshot, values=values), learn=learn)
        target_scores = {t: scores[t] for t in self.targets if t in scores}
        events: list[IncidentEvent] = []
        attributions: list[Attribution] = []
        for target, trig in self._triggers.items():
            decision = trig.update_one(snapshot.ts, target_scores.get(target))
            if decision.incident_id is None:
                continue
            if decision.kind is not None:
                events.append(
                    IncidentEvent(
                        decision.kind, decision.incident_id, self.graph.name, target,
                        snapshot.ts, target_scores.get(target, math.nan),
                    )
                )  # fmt: skip
            if decision.attribute:
                attributions.append(
                    self._explain(target, snapshot, decision.incident_id, decision.revision)
                )
        warming = tuple(n for n, w in zip(nodes, warm_before, strict=True) if not w)
        learned: tuple[str, ...] = ()
        if learn:
            learned = tuple(n for n in nodes if n in values and scores.get(n, 0.0) < cfg.protect)
        return StepResult(
            graph=self.graph.name,
            ts=snapshot.ts,
            scores=scores,
            target_scores=target_scores,
            warm=not warming,
            warming=warming,
            missing=tuple(n for n in nodes if n not in values and n not in invalid),
            invalid=tuple(invalid),
            learned=learned,
            events=tuple(events),
            attributions=tuple(attributions),
            open_incidents={
                t: trig.incident for t, trig in self._triggers.items() if trig.incident is not None
            },
        )

    def process_many(self, snapshots: Sequence[Snapshot]) -> list[StepResult]:
        """:meth:`process_one` for each snapshot in order (the same results, any block size)."""
        return [self.process_one(s) for s in snapshots]

    def process_many_columns(self, snapshots: Sequence[Snapshot]) -> BlockResult:
        """:meth:`process_many` with the result as columns, as the engine's batch path reads it.

        ``result.step(i)`` is the ``i``-th result of :meth:`process_many`.
        """
        from stream_rca.core.block import BlockResult

        first = self.n_snapshots
        steps = self.process_many(snapshots)
        nodes, targets = self.graph.nodes, self.targets
        col = {n: j for j, n in enumerate(nodes)}
        b, d = len(steps), len(nodes)
        node_scores = np.full((b, d), np.nan)
        target_scores = np.full((b, len(targets)), np.nan)
        present = np.ones((b, d), dtype=bool)
        learned = np.zeros((b, d), dtype=bool)
        for i, r in enumerate(steps):
            for name, v in r.scores.items():
                node_scores[i, col[name]] = v
            for k, t in enumerate(targets):
                target_scores[i, k] = r.target_scores.get(t, np.nan)
            for name in (*r.missing, *r.invalid):
                present[i, col[name]] = False
            for name in r.learned:
                learned[i, col[name]] = True
        return BlockResult(
            graph=self.graph.name,
            nodes=tuple(nodes),
            targets=targets,
            ts=[r.ts for r in steps],
            ends=[s.end for s in snapshots],
            node_scores=node_scores,
            target_scores=target_scores,
            present=present,
            learned=learned,
            warm=np.array([r.warm for r in steps], dtype=bool),
            warming=[r.warming for r in steps],
            invalid=[r.invalid for r in steps],
            events={i: r.events for i, r in enumerate(steps) if r.events},
            attributions={i: r.attributions for i, r in enumerate(steps) if r.attributions},
            open_incidents={i: r.open_incidents for i, r in enumerate(steps) if r.open_incidents},
            first=first,
        )

    def explain(self, snapshot: Snapshot, target: str | None = None) -> Attribution:
        """The graph-free attribution of the last processed snapshot for ``target``."""
        return self._explain(target or self.targets[0], snapshot, None, 0)

    def _explain(
        self, target: str, snapshot: Snapshot, incident: str | None, revision: int
    ) -> Attribution:
        t0 = self.timer() if self.timer is not None else None
        att = self.ranker.explain(
            target,
            snapshot,
            graph=self.graph.name,
            incident=incident,
            revision=revision,
            extra={"graph_used": False},
        )
        if t0 is not None and self.timer is not None:
            att = dataclasses.replace(att, seconds=self.timer() - t0)
        return att

    # -- state as data (checkpoints) ----------------------------------------------------------

    def to_state(self) -> StateTree:
        """The learned state (ranker and triggers) as a state tree."""
        return {
            "kind": GRAPH_FREE_STATE,
            "method": GRAPH_FREE_METHOD,
            "targets": list(self.targets),
            "ranker": self.ranker.to_state(),
            "triggers": [self._triggers[t].to_state() for t in self.targets],
        }

    @classmethod
    def from_state(
        cls, graph: CausalGraph, config: EngineConfig, state: StateTree
    ) -> GraphFreeEngine:
        """An engine of ``graph`` and ``config`` in the state of :meth:`to_state`.

        Raises
        ------
        StateError
            If the tree is not a graph-free engine's of this graph and configuration.
        """
        if get_str(state, "kind") != GRAPH_FREE_STATE:
            raise StateError(f"kind: not a {GRAPH_FREE_STATE} state")
        targets = [str(t) for t in get_list(state, "targets")]
        try:
            engine = cls(graph, config, targets=targets)
        except (ValueError, KeyError) as exc:
            raise StateError(f"targets: {exc}") from None
        ranker = MarginalRanker.from_state(graph_free_config(config), get_tree(state, "ranker"))
        if ranker.nodes != list(graph.nodes):
            raise StateError("ranker: its metrics are not the graph's nodes")
        engine.ranker = ranker
        triggers = get_list(state, "triggers")
        if len(triggers) != len(engine.targets):
            raise StateError(f"triggers: expected {len(engine.targets)}, got {len(triggers)}")
        for target, tree in zip(engine.targets, triggers, strict=True):
            trig = Trigger.from_state(tree)
            if trig.target != target or trig.graph != graph.name or trig.config != config.trigger:
                raise StateError(f"triggers: {target!r} has another target or configuration")
            engine._triggers[target] = trig
        return engine

"""Grow an engine's graph without losing what the unchanged nodes learned.

When a worker learns new call edges (from spans), its causal graph gains nodes and edges. A node
whose (effective) parents are the same in the old and the new graph has the same mechanism and
the same noise distribution, so its learned state carries over: :func:`grow_engine` builds a
new :class:`~stream_rca.core.engine.Engine` on the new graph and copies, through the engines'
state trees (:meth:`Engine.to_state` / :meth:`Engine.from_state`), every unchanged node's rows:
its linear mechanism's statistics (parents re-ordered to the new positions), its noise
reservoir and tails, its learned counts and magnitude. New nodes, and nodes whose parents
changed, start cold (they warm up again, ``EngineConfig.warmup`` snapshots); the trigger and
marginal model of every target that stays a target carry over too.

Rows scored but not learned yet (the current period) carry over for the unchanged nodes only;
if the old engine was still in warm-up (its structure not fixed), the warm-up rows carry over
too, with no values for the new nodes (so a node added during warm-up is judged by its
coverage over the whole warm-up, like every other node).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_rca.core.checkpoint import StateError, StateTree
from stream_rca.core.engine import Engine
from stream_rca.core.graph import CausalGraph
from stream_rca.core.linear import LinearBank
from stream_rca.core.structure import marginalise_parents

__all__ = ["GraphChange", "diff_graphs", "grow_engine"]


@dataclass(frozen=True, slots=True)
class GraphChange:
    """What changed between two graphs, and which nodes keep their learned state."""

    added_nodes: tuple[str, ...]
    removed_nodes: tuple[str, ...]
    added_edges: tuple[tuple[str, str], ...]
    removed_edges: tuple[tuple[str, str], ...]
    kept: tuple[str, ...]
    """Nodes whose learned state carries over (same effective parents)."""
    cold: tuple[str, ...]
    """Nodes that start cold: new ones, and those whose parents changed."""

    @property
    def changed(self) -> bool:
        return bool(
            self.added_nodes or self.removed_nodes or self.added_edges or self.removed_edges
        )

    def summary(self) -> str:
        """One line for a log."""
        edges = ", ".join(f"{a} -> {b}" for a, b in self.added_edges[:6])
        more = f" (+{len(self.added_edges) - 6} more)" if len(self.added_edges) > 6 else ""
        return (
            f"{len(self.added_nodes)} new node(s), {len(self.added_edges)} new edge(s)"
            + (f" [{edges}{more}]" if edges else "")
            + (f", {len(self.removed_edges)} edge(s) removed" if self.removed_edges else "")
            + f"; {len(self.kept)} node(s) keep their learned state, {len(self.cold)} start cold"
        )


def _effective(graph: CausalGraph, dropped: Sequence[str]) -> dict[str, tuple[str, ...]]:
    drop = {graph.index[d] for d in dropped if d in graph.index}
    parents = marginalise_parents(graph.parent_index, range(len(graph)), drop)
    return {
        n: tuple(sorted(graph.nodes[int(p)] for p in parents[j])) for j, n in enumerate(graph.nodes)
    }


def diff_graphs(
    old: CausalGraph, new: CausalGraph, marginalised: Sequence[str] = ()
) -> GraphChange:
    """Compare two graphs; ``marginalised`` nodes are left out of both (see the engine).

    Examples
    --------
    >>> a = CausalGraph([("db", "api")], name="shop")
    >>> b = CausalGraph([("db", "api"), ("cache", "web"), ("api", "web")], name="shop")
    >>> d = diff_graphs(a, b)
    >>> d.added_nodes, d.kept, d.cold
    (('cache', 'web'), ('api', 'db'), ('cache', 'web'))
    """
    po, pn = _effective(old, marginalised), _effective(new, marginalised)
    kept = tuple(sorted(n for n in new.nodes if n in po and po[n] == pn[n]))
    oe, ne = set(old.edges), set(new.edges)
    return GraphChange(
        added_nodes=tuple(n for n in new.nodes if n not in old.index),
        removed_nodes=tuple(n for n in old.nodes if n not in new.index),
        added_edges=tuple(sorted(ne - oe)),
        removed_edges=tuple(sorted(oe - ne)),
        kept=kept,
        cold=tuple(n for n in new.nodes if n not in set(kept)),
    )


def grow_engine(
    old: Engine,
    graph: CausalGraph,
    *,
    targets: Sequence[str] | None = None,
) -> tuple[Engine, GraphChange]:
    """An engine of ``graph`` that keeps the learned state of ``old``'s unchanged nodes.

    Parameters
    ----------
    old
        The running engine (its state must be data: linear mechanisms only).
    graph
        The new graph (same name); nodes may be added, edges added or removed.
    targets
        Watched nodes of the new engine; default ``old``'s targets.

    Returns
    -------
    tuple
        The new engine and the :class:`GraphChange` (which nodes kept their state).

    Raises
    ------
    StateError
        If ``old``'s state cannot be read as data (river mechanisms).

    Examples
    --------
    >>> import numpy as np
    >>> from stream_rca.core.config import EngineConfig
    >>> from stream_rca.core.types import Snapshot
    >>> g = CausalGraph([("db", "api")], name="shop")
    >>> e = Engine(g, EngineConfig(warmup=30), targets=["api"])
    >>> rng = np.random.default_rng(0)
    >>> for t in range(64):
    ...     db = rng.normal(5, 1)
    ...     _ = e.process_one(Snapshot(float(t), {"db": db, "api": db + rng.normal()}))
    >>> e2, change = grow_engine(e, CausalGraph([("db", "api"), ("cache", "api")], name="shop"))
    >>> change.kept, change.cold
    (('db',), ('cache', 'api'))
    """
    cfg = old.config
    targets = tuple(targets) if targets is not None else old.targets
    src = old.to_state()
    dropped = [d for d in old.marginalised if d in graph.index and d not in targets]
    change = diff_graphs(old.graph, graph, dropped)
    fresh = Engine(graph, cfg, targets=targets)
    tree = fresh.to_state()
    tree["marginalised"] = list(dropped)
    tree["structure_fixed"] = bool(src["structure_fixed"])
    tree["n_snapshots"] = int(src["n_snapshots"])
    n_new = len(graph)
    pos_old = old.graph.index
    kept = set(change.kept)
    pairs = [(graph.index[n], pos_old[n]) for n in graph.nodes if n in kept]
    # the warm-up rows and the current period's rows
    hist = np.asarray(src["history"])
    new_hist = np.full((hist.shape[0], n_new), np.nan)
    common = [(graph.index[n], pos_old[n]) for n in graph.nodes if n in pos_old]
    for j, i in common:
        new_hist[:, j] = hist[:, i]
    tree["history"] = new_hist
    sp, tp = src["pending"], tree["pending"]
    rows = int(np.asarray(sp["filled"]).shape[0])
    filled = np.zeros((rows, n_new))
    resid = np.zeros((rows, n_new))
    learn = np.zeros((rows, n_new), dtype=bool)
    noise_learn = np.zeros((rows, n_new), dtype=bool)
    for j, i in common:
        filled[:, j] = np.asarray(sp["filled"])[:, i]
    for j, i in pairs:
        resid[:, j] = np.asarray(sp["resid"])[:, i]
        learn[:, j] = np.asarray(sp["learn"])[:, i]
        noise_learn[:, j] = np.asarray(sp["noise_learn"])[:, i]
    k = len(targets)
    t_vals, t_learn = np.zeros((rows, k)), np.zeros((rows, k), dtype=bool)
    t_pairs = [(a, old.targets.index(t)) for a, t in enumerate(targets) if t in old.targets]
    for a, b in t_pairs:
        t_vals[:, a] = np.asarray(sp["t_vals"])[:, b]
        t_learn[:, a] = np.asarray(sp["t_learn"])[:, b]
    tp.update(
        filled=filled,
        resid=resid,
        learn=learn,
        t_vals=t_vals,
        t_learn=t_learn,
        noise_learn=noise_learn,
    )
    # build once with the structure (marginalised nodes), then fill in the learned rows
    shaped = Engine.from_state(graph, cfg, tree).to_state()
    shaped["pending"] = tp
    shaped["history"] = new_hist
    shaped["n_snapshots"] = tree["n_snapshots"]
    shaped["structure_fixed"] = tree["structure_fixed"]
    models, old_models = shaped["models"], src["models"]
    _copy_bank(models["noise"], old_models["noise"], pairs)
    _copy_bank(models["marginal"], old_models["marginal"], t_pairs)
    for name in ("fitted", "abs_sum", "abs_n"):
        arr = np.asarray(models[name]).copy()
        for j, i in pairs:
            arr[j] = np.asarray(old_models[name])[i]
        models[name] = arr
    models["bank"] = _grow_bank(models["bank"], old_models["bank"], old.graph, graph, pairs)
    triggers = list(shaped["triggers"])
    for a, b in t_pairs:
        triggers[a] = copy.deepcopy(src["triggers"][b])
    shaped["triggers"] = triggers
    grown = Engine.from_state(graph, cfg, shaped)
    _copy_held(grown, old, pairs)
    return grown, change


def _copy_held(new: Engine, old: Engine, pairs: list[tuple[int, int]]) -> None:
    """Carry the snapshot values kept beside the kept nodes' residuals (parents re-ordered)."""
    after, before = new._models, old._models
    if not (after.refresh and before.refresh):
        return
    for j, i in pairs:
        po = [old.graph.nodes[int(p)] for p in before.parent_index[i]]
        pn = [new.graph.nodes[int(p)] for p in after.parent_index[j]]
        if not pn or sorted(po) != sorted(pn) or i in before.river or j in after.river:
            continue  # a root (its noise is its value), a river mechanism or a cold node
        own, parents = before.held_values(i)
        after.set_held_values(j, own, parents[[po.index(p) for p in pn]])


def _copy_bank(dst: StateTree, src: StateTree, pairs: list[tuple[int, int]]) -> None:
    """Copy per-row arrays of a noise bank's tree (and of its nested tail trees) in place."""
    n_dst, n_src = int(dst["n_nodes"]), int(src["n_nodes"])
    if not pairs:
        return
    jd = np.array([j for j, _ in pairs], dtype=np.intp)
    js = np.array([i for _, i in pairs], dtype=np.intp)

    def walk(d: dict[str, Any], s: dict[str, Any]) -> None:
        for key, value in list(d.items()):
            if isinstance(value, dict):
                walk(value, s[key])
            elif isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n_dst:
                other = np.asarray(s[key])
                if other.shape[0] != n_src or other.shape[1:] != value.shape[1:]:
                    raise StateError(f"{key}: the two engines' banks differ in shape")
                arr = value.copy()
                arr[jd] = other[js]
                d[key] = arr

    walk(dst, src)


def _grow_bank(
    dst: StateTree,
    src: StateTree,
    old: CausalGraph,
    new: CausalGraph,
    pairs: list[tuple[int, int]],
) -> StateTree:
    """The new linear bank's tree with the statistics of the kept nodes, parents re-ordered."""
    before, after = LinearBank.from_state(src), LinearBank.from_state(dst)
    members_old = {int(j) for j in np.asarray(src["members"])}
    members_new = {int(j) for j in np.asarray(dst["members"])}
    counts_old = np.asarray(src["parent_counts"])
    flat_old = np.asarray(src["parents"])
    counts_new = np.asarray(dst["parent_counts"])
    flat_new = np.asarray(dst["parents"])
    starts_old = np.cumsum(counts_old) - counts_old
    starts_new = np.cumsum(counts_new) - counts_new
    for j, i in pairs:
        if i not in members_old or j not in members_new:
            continue
        po = [old.nodes[int(p)] for p in flat_old[starts_old[i] : starts_old[i] + counts_old[i]]]
        pn = [new.nodes[int(p)] for p in flat_new[starts_new[j] : starts_new[j] + counts_new[j]]]
        if sorted(po) != sorted(pn):
            raise StateError(f"node {new.nodes[j]!r}: parents differ, cannot carry its state")
        perm = np.array([po.index(p) for p in pn], dtype=np.intp)
        stats = before.node_statistics(i)
        for key in ("mx", "sxy", "coef"):
            stats[key] = stats[key][perm]
        stats["sxx"] = stats["sxx"][np.ix_(perm, perm)]
        after.set_node_statistics(j, stats)
    return after.to_state()

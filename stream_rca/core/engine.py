"""The engine: per snapshot, score every node, learn, trigger, and attribute incidents.

The same engine runs in every mode (demo, file replay, faust workers); it is pure: it reads no
clock, no environment and does no I/O. Its whole state pickles, for checkpoints.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rca.core.attribution import PlayerModel, attribute_noise
from stream_rca.core.block import BlockResult
from stream_rca.core.checkpoint import (
    StateError,
    StateTree,
    get_array,
    get_bool,
    get_int,
    get_list,
    get_tree,
)
from stream_rca.core.compiled import score_masks
from stream_rca.core.config import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.mechanisms import Regressor, make_regressor
from stream_rca.core.models import GraphModels
from stream_rca.core.ranking import (
    ANOMALOUS,
    EVIDENCE_RULES,
    MOVED,
    UNIDENTIFIED_SUPPORT,
    explained,
    rank_causes,
)
from stream_rca.core.structure import marginalise_parents, sparse_nodes
from stream_rca.core.trigger import Trigger, incident_id
from stream_rca.core.types import Attribution, IncidentEvent, Snapshot, StepResult
from stream_rca.errors import NotWarmError

__all__ = ["Engine", "EngineConfig"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


_FLOAT = {float}


class Engine:
    """Online causal root-cause analysis of one graph.

    Parameters
    ----------
    graph
        The causal graph.
    config
        Parameters; defaults are tuned for scrape-interval metrics.
    targets
        Watched nodes (their anomalies open incidents); default: the graph's sinks.
    mechanisms
        Per node, a river regressor or a mechanism name (see
        :data:`~stream_rca.core.mechanisms.MECHANISMS`) instead of the linear default.
    timer
        A clock such as ``time.perf_counter``; when given, every attribution records how long
        it took. The engine reads no clock of its own.
    pool
        An executor (one thread: :func:`stream_rca.parallel.attribution_pool`) on which exact
        attributions run part of their work; the same results without. The engine starts no
        thread of its own.

    Examples
    --------
    >>> import numpy as np
    >>> g = CausalGraph([("db", "api"), ("api", "web")], name="shop")
    >>> engine = Engine(g, EngineConfig(warmup=50))
    >>> rng = np.random.default_rng(0)
    >>> for t in range(300):
    ...     db = rng.gamma(2.0, 0.1)
    ...     api = db + rng.gamma(2.0, 0.05)
    ...     web = api + rng.gamma(2.0, 0.05)
    ...     r = engine.process_one(Snapshot(float(t), {"db": db, "api": api, "web": web}))
    >>> r = engine.process_one(Snapshot(300.0, {"db": 3.2, "api": 3.3, "web": 3.4}))
    >>> att = r.attributions[0]
    >>> att.root_causes[0].node, att.method
    ('db', 'exact')
    >>> bool(abs(sum(c.contribution for c in att.root_causes) - att.target_score) < 1e-9)
    True
    """

    def __init__(
        self,
        graph: CausalGraph,
        config: EngineConfig | None = None,
        *,
        targets: Sequence[str] | None = None,
        mechanisms: Mapping[str, Regressor | str] | None = None,
        timer: Callable[[], float] | None = None,
        pool: concurrent.futures.Executor | None = None,
    ) -> None:
        self.graph = graph
        self.timer = timer
        self.pool = pool
        self.config = cfg = config or EngineConfig()
        self.targets: tuple[str, ...] = tuple(graph.check(t) for t in (targets or graph.sinks))
        if not self.targets:
            raise ValueError("an engine needs at least one target")
        self._river_spec: dict[int, Regressor | str] = {
            graph.index[graph.check(name)]: spec for name, spec in (mechanisms or {}).items()
        }
        self._target_idx = np.array([graph.index[t] for t in self.targets], dtype=np.intp)
        self._triggers = {t: Trigger(graph.name, t, cfg.trigger) for t in self.targets}
        self.marginalised: tuple[str, ...] = ()
        """Nodes removed from the model for lack of data (see ``EngineConfig.min_coverage``)."""
        self._structure_fixed = cfg.min_coverage <= 0.0
        self._history: list[FloatArray] = []  # raw rows until the structure is fixed
        self._pending: list[_Segment] = []  # scored rows not learned yet
        self._build(frozenset())
        self.n_snapshots = 0

    def _build(self, drop: frozenset[int]) -> None:
        """(Re)create the models on the graph less the nodes in ``drop``."""
        graph = self.graph
        order = list(range(len(graph)))  # graph positions are a topological order
        parents = marginalise_parents(graph.parent_index, order, drop)
        river: dict[int, Regressor] = {}
        for j, spec in self._river_spec.items():
            model = make_regressor(spec) if isinstance(spec, str) else spec
            if model is not None:
                river[j] = model
        active = np.ones(len(graph), dtype=bool)
        active[list(drop)] = False
        self._models = GraphModels(parents, graph.nodes, river, self._target_idx, self.config)
        self._active = active
        self._players = {t: self._player_index(t) for t in self.targets}

    def __repr__(self) -> str:
        return (
            f"Engine(graph={self.graph.name!r}, nodes={len(self.graph)}, "
            f"targets={list(self.targets)}, snapshots={self.n_snapshots})"
        )

    # -- the per-snapshot step ----------------------------------------------------------------

    def process_one(self, snapshot: Snapshot) -> StepResult:
        """Score, trigger on and learn from one snapshot."""
        x, invalid = self._vector(snapshot.values)
        return self._block([snapshot.ts], [snapshot.end], x[None, :], [invalid]).step(0)

    def process_many(self, snapshots: Sequence[Snapshot]) -> list[StepResult]:
        """Process a block of snapshots at once: the fast path for backfills and replays.

        The results, the learned state and the incidents are the same as those of
        :meth:`process_one` snapshot by snapshot, for any block size: models learn at fixed
        positions of the stream (every ``config.refit_every`` snapshots, or less often later
        with ``config.refit_growth``: :meth:`EngineConfig.refit_period`), so the block is cut
        there and each piece is scored at once against the same frozen models.
        """
        if not snapshots:
            return []
        return self.process_many_columns(snapshots).steps()

    def process_many_columns(self, snapshots: Sequence[Snapshot]) -> BlockResult:
        """:meth:`process_many` with the result as columns (:class:`BlockResult`).

        ``result.step(i)`` is the ``i``-th result of :meth:`process_many`; the per-snapshot
        objects are only built when asked for.
        """
        x, invalid = self._vectors(snapshots)
        return self._block([s.ts for s in snapshots], [s.end for s in snapshots], x, invalid)

    def process_array(
        self, ts: float, values: FloatArray, *, end: float | None = None
    ) -> StepResult:
        """:meth:`process_one` for values already in graph order (NaN = missing)."""
        if values.shape != (len(self.graph),):
            raise ValueError(f"expected {len(self.graph)} values, got shape {values.shape}")
        return self.process_block(np.array([ts]), values[None, :], ends=[end])[0]

    def process_block(
        self, ts: FloatArray, values: FloatArray, *, ends: Sequence[float | None] | None = None
    ) -> list[StepResult]:
        """:meth:`process_many` for a ``(B, nodes)`` array in graph order (NaN = missing)."""
        return self.process_block_columns(ts, values, ends=ends).steps()

    def process_block_columns(
        self, ts: FloatArray, values: FloatArray, *, ends: Sequence[float | None] | None = None
    ) -> BlockResult:
        """:meth:`process_block` with the result as columns (:class:`BlockResult`)."""
        if values.ndim != 2 or values.shape[1] != len(self.graph) or len(ts) != len(values):
            raise ValueError(
                f"expected ({len(ts)}, {len(self.graph)}) values, got shape {values.shape}"
            )
        x = np.asarray(values, dtype=np.float64).copy()
        bad = np.isinf(x)
        x[bad] = np.nan
        nodes = self.graph.nodes
        invalid: list[tuple[str, ...]] = [()] * len(x)
        for b in np.flatnonzero(bad.any(axis=1)).tolist():
            invalid[b] = tuple(nodes[j] for j in np.flatnonzero(bad[b]))
        end_list = list(ends) if ends is not None else [None] * len(ts)
        if len(end_list) != len(ts):
            raise ValueError(f"expected {len(ts)} ends, got {len(end_list)}")
        return self._block([float(t) for t in ts], end_list, x, invalid)

    def _vectors(self, snapshots: Sequence[Snapshot]) -> tuple[FloatArray, list[tuple[str, ...]]]:
        """The ``(B, nodes)`` values of snapshots and each one's invalid nodes.

        Snapshots whose values are all Python floats of known nodes (what the aligner makes)
        take one vectorised path; any other goes through :meth:`_vector`.
        """
        n, index = len(self.graph), self.graph.index
        x = np.full((len(snapshots), n), np.nan)
        invalid: list[tuple[str, ...]] = [()] * len(snapshots)
        # rows of Python floats, grouped by their names' order (the aligner's is the same for
        # every snapshot of a graph): one array per group, written into its columns at once
        groups: dict[tuple[str, ...], tuple[list[int], list[list[float]]]] = {}
        slow: list[int] = []
        for b, snap in enumerate(snapshots):
            values = snap.values
            vals = [*values.values()]
            if set(map(type, vals)) != _FLOAT:
                slow.append(b)
                continue
            group = groups.get(names := tuple(values))
            if group is None:
                group = groups[names] = ([], [])
            group[0].append(b)
            group[1].append(vals)
        for names, (where, rows) in groups.items():
            try:
                cols = np.array([index[name] for name in names], dtype=np.intp)
            except KeyError:
                slow.extend(where)  # an unknown name: _vector names it
                continue
            x[np.array(where, dtype=np.intp)[:, None], cols[None, :]] = rows
        for b in sorted(slow):
            x[b], invalid[b] = self._vector(snapshots[b].values)
        bad = np.isinf(x)
        if bad.any():  # only the fast rows can hold an inf: name them as _vector does
            for row in np.flatnonzero(bad.any(axis=1)).tolist():
                items = snapshots[row].values.items()
                invalid[row] = tuple(name for name, v in items if math.isinf(v))
            x[bad] = np.nan
        return x, invalid

    def _vector(self, values: Mapping[str, Any]) -> tuple[FloatArray, tuple[str, ...]]:
        x = np.full(len(self.graph), np.nan)
        invalid: list[str] = []
        index = self.graph.index
        for name, value in values.items():
            j = index.get(name)
            if j is None:
                self.graph.check(name)  # raises UnknownNodeError naming it
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float | np.floating)
                or math.isinf(value)
            ):
                invalid.append(name)
            else:
                x[j] = float(value)
        return x, tuple(invalid)

    def _block(
        self,
        ts: Sequence[float],
        ends: Sequence[float | None],
        x: FloatArray,
        invalid: Sequence[tuple[str, ...]],
    ) -> BlockResult:
        """Cut the block at the learning positions; score each piece against frozen models."""
        cfg = self.config
        nodes, rows = self.graph.nodes, len(ts)
        node_scores = np.empty((rows, len(nodes)))
        target_scores = np.empty((rows, len(self.targets)))
        present = np.empty((rows, len(nodes)), dtype=bool)
        learned = np.empty((rows, len(nodes)), dtype=bool)
        warm = np.empty(rows, dtype=bool)
        warming: list[tuple[str, ...]] = [()] * rows
        found = _Found({}, {}, {})
        first = self.n_snapshots
        start = 0
        while start < rows:
            period = cfg.refit_period(self.n_snapshots)
            room = period - self.n_snapshots % period
            stop = min(rows, start + room)
            seg = self._score(x[start:stop])
            self._decide(seg, start, ts, ends, found)
            node_scores[start:stop] = seg.node_scores
            target_scores[start:stop] = seg.t_scores
            present[start:stop] = seg.present
            learned[start:stop] = seg.learn
            all_warm = bool(seg.warm_nodes.all()) and seg.targets_warm
            warm[start:stop] = all_warm
            if not all_warm:
                names = tuple(nodes[j] for j in np.flatnonzero(~seg.warm_nodes))
                warming[start:stop] = [names] * (stop - start)
            self._after(seg)
            start = stop
        return BlockResult(
            graph=self.graph.name, nodes=nodes, targets=self.targets, ts=ts, ends=ends,
            node_scores=node_scores, target_scores=target_scores, present=present,
            learned=learned, warm=warm, warming=warming, invalid=invalid,
            events={i: tuple(e) for i, e in found.events.items()},
            attributions={i: tuple(a) for i, a in found.attributions.items()},
            open_incidents=found.open_incidents, first=first, values=x,
        )  # fmt: skip

    def _decide(
        self,
        seg: _Segment,
        offset: int,
        ts: Sequence[float],
        ends: Sequence[float | None],
        found: _Found,
    ) -> None:
        """Feed each target's scores of a scored piece to its trigger, row by row.

        A quiet trigger (:attr:`Trigger.quiet`) ignores every row without a score at or above
        its threshold, so it only sees the rows from its next such score on, until it is
        quiet again: the same decisions as feeding it every row. Incident events and
        attributions are kept by row; rows inside an incident learn nothing.
        """
        rows = seg.x.shape[0]
        named: dict[int, dict[str, float]] = {}  # per row, the node scores by name
        open_after: list[dict[int, str]] = []
        for i, target in enumerate(self.targets):
            trig = self._triggers[target]
            col = seg.t_scores[:, i]
            if bool(seg.warm_nodes[self._players[target][-1]]):
                has = ~np.isnan(col)
                hot = np.flatnonzero(col >= trig.config.threshold).tolist()  # NaN: not hot
            else:
                has = np.zeros(rows, dtype=bool)
                hot = []
            ids: dict[int, str] = {}
            h, b = 0, 0
            while b < rows:
                if trig.quiet:
                    while h < len(hot) and hot[h] < b:
                        h += 1
                    if h == len(hot):
                        break
                    b = hot[h]
                score = float(col[b])
                decision = trig.update_one(ts[offset + b], score if has[b] else None)
                if decision.incident_id is not None:
                    row = offset + b
                    if decision.kind is not None:
                        found.events.setdefault(row, []).append(
                            IncidentEvent(
                                decision.kind, decision.incident_id, self.graph.name, target,
                                ts[row], score,
                            )
                        )  # fmt: skip
                    if decision.attribute:
                        scores = named.get(b)
                        if scores is None:
                            scores = named[b] = self._named(seg.node_scores[b])
                        snapshot = Snapshot(ts[row], {}, self.graph.name, ends[row])
                        found.attributions.setdefault(row, []).append(
                            self._attribute(
                                _Case(target, snapshot, seg.filled[b], seg.resid[b],
                                      seg.present[b], scores, decision.incident_id,
                                      decision.revision, score)
                            )
                        )  # fmt: skip
                if trig.incident is not None:
                    ids[b] = trig.incident
                b += 1
            open_after.append(ids)
        for b in sorted({b for ids in open_after for b in ids}):
            # nothing learns from a snapshot inside an incident
            seg.learn[b] = False
            seg.t_learn[b] = False
            seg.noise_learn[b] = False
            found.open_incidents[offset + b] = {
                t: ids[b] for t, ids in zip(self.targets, open_after, strict=True) if b in ids
            }

    def _named(self, row: FloatArray) -> dict[str, float]:
        nodes = self.graph.nodes
        return {nodes[j]: float(row[j]) for j in np.flatnonzero(~np.isnan(row))}

    def _score(self, x: FloatArray) -> _Segment:
        """Score a piece ``(B, nodes)`` against the current (frozen) models."""
        cfg, m = self.config, self._models
        present = ~np.isnan(x)
        gaps = np.flatnonzero(~present.all(axis=1)).tolist()  # rows with a value missing
        filled = x.copy()
        for b in gaps:
            filled[b] = m.impute(x[b], present[b])
        resid = filled - m.predict(filled)
        warm_nodes = (m.noise.fitted_count >= cfg.warmup) | ~self._active
        # each residual against its noise widened by the mechanism's error at these parents
        raw = m.noise.score(resid / m.spread(filled))
        t_vals = filled[:, self._target_idx]
        t_warm = m.marginal.fitted_count >= cfg.warmup
        # a row missing values learns only where enough of a node's parents are present
        ok = np.ones(x.shape, dtype=bool) if gaps else np.ones((0, x.shape[1]), dtype=bool)
        for b in gaps:
            ok[b] = m.parents_present(present[b], cfg.impute_learn)
        # scores where present and warm (NaN elsewhere); unscored counts as calm;
        # marginalised nodes learn nothing
        node_scores, t_scores, learn, noise_learn, t_learn = score_masks(
            present,
            ok,
            (raw, m.marginal.score(t_vals)),
            (self._target_idx, self._active, warm_nodes, t_warm),
            (cfg.protect, cfg.protect_noise),
        )
        return _Segment(
            x, filled, resid, present, node_scores, t_scores, t_vals, learn, t_learn, noise_learn,
            warm_nodes, bool(t_warm.all()),
        )  # fmt: skip

    def _after(self, seg: _Segment) -> None:
        """Book a scored piece; learn at the end of each period."""
        self._pending.append(seg)
        if not self._structure_fixed:
            self._history.append(seg.x)
        self.n_snapshots += seg.x.shape[0]
        if self.n_snapshots % self.config.refit_period(self.n_snapshots - 1) == 0:
            self._learn_pending()
            if not self._structure_fixed and self.n_snapshots >= self.config.warmup:
                self._fix_structure()

    def _learn_pending(self) -> None:
        segs, self._pending = self._pending, []
        if not segs:
            return
        if len(segs) == 1:  # a period scored in one piece (the block path): its own arrays
            s = segs[0]
            self._models.learn(s.filled, s.resid, s.learn, s.t_vals, s.t_learn, s.noise_learn)
            return
        cat = np.concatenate
        self._models.learn(
            cat([s.filled for s in segs]),
            cat([s.resid for s in segs]),
            cat([s.learn for s in segs]),
            cat([s.t_vals for s in segs]),
            cat([s.t_learn for s in segs]),
            cat([s.noise_learn for s in segs]),
        )

    def _fix_structure(self) -> None:
        """End of warm-up: marginalise sparse nodes and relearn the warm-up from its rows."""
        self._structure_fixed = True
        history, self._history = np.concatenate(self._history), []
        keep = {int(j) for j in self._target_idx}
        drop = sparse_nodes(~np.isnan(history), self.config.min_coverage, keep)
        if not drop:
            return
        self.marginalised = tuple(self.graph.nodes[j] for j in drop)
        self._build(frozenset(drop))
        start = 0
        while start < len(history):
            stop = start + self.config.refit_period(start)
            self._pending.append(self._score(history[start:stop]))
            self._learn_pending()
            start = stop

    def explain(self, snapshot: Snapshot, target: str | None = None) -> Attribution:
        """Attribute the target's score in ``snapshot`` now, without learning or triggering.

        For questions such as "why is this value unusual?" on a value that did not open an
        incident. The incident id is that the snapshot would get; the revision is 0.
        """
        target = self.graph.check(target) if target is not None else self.targets[0]
        if target not in self._players:
            self._players[target] = self._player_index(target)
        x, _ = self._vector(snapshot.values)
        m = self._models
        present = ~np.isnan(x)
        filled = m.impute(x, present)
        resid = filled - m.predict(filled[None, :])[0]
        warm = m.noise.fitted_count >= self.config.warmup
        scored = np.flatnonzero(present & warm & self._active)
        spread = m.spread(filled[None, :])[0]
        scores = m.noise.score(resid[scored] / spread[scored], scored)
        named = {self.graph.nodes[j]: float(s) for j, s in zip(scored, scores, strict=True)}
        players = self._players[target]
        if not warm[players[-1]]:
            raise NotWarmError(
                f"cannot explain {target!r} yet: it has learned from "
                f"{int(m.noise.fitted_count[players[-1]])} of {self.config.warmup} snapshots"
            )
        incident = incident_id(self.graph.name, target, snapshot.ts)
        trigger_score = float("nan")
        if target in self.targets:
            i = self.targets.index(target)
            if m.marginal.fitted_count[i] >= self.config.warmup:
                row = np.array([i], dtype=np.intp)
                trigger_score = float(m.marginal.score(filled[[players[-1]]], row)[0])
        return self._attribute(
            _Case(target, snapshot, filled, resid, present, named, incident, 0, trigger_score)
        )

    # -- attribution --------------------------------------------------------------------------

    def _player_index(self, target: str) -> IntArray:
        j = self.graph.index[target]
        parents = self._models.parent_index
        seen: set[int] = set()
        stack = [j]
        while stack:
            for p in parents[stack.pop()]:
                if int(p) not in seen:
                    seen.add(int(p))
                    stack.append(int(p))
        return np.array([*sorted(seen), j], dtype=np.intp)  # positions are topological

    def _player_parents(self, players: IntArray) -> list[IntArray]:
        """Each player's parents as positions among the players (kept while the structure
        holds: a rebuilt model has another parent index)."""
        m = self._models
        cache: dict[bytes, tuple[object, list[IntArray]]]
        cache = self.__dict__.setdefault("_parents_cache", {})
        key = players.tobytes()
        hit = cache.get(key)
        if hit is not None and hit[0] is m.parent_index:
            return hit[1]
        pos = {int(j): i for i, j in enumerate(players)}
        parents = [
            np.array([pos[int(p)] for p in m.parent_index[j]], dtype=np.intp) for j in players
        ]
        cache[key] = (m.parent_index, parents)
        return parents

    def _player_model(self, players: IntArray) -> tuple[PlayerModel, int]:
        m = self._models
        parents = self._player_parents(players)
        if not any(int(j) in m.river for j in players):
            weights, _ = m.bank.coefficients()
            sub = weights[np.ix_(players, players)]
            return PlayerModel(parents, weights=sub), self.config.n_samples

        def predict(i: int, parent_values: FloatArray) -> FloatArray:
            j = int(players[i])
            if j not in m.river:
                return m.bank.predict_samples(j, parent_values)
            model, names = m.river[j], [self.graph.nodes[p] for p in m.parent_index[j]]
            flat = parent_values.reshape(-1, parent_values.shape[-1])
            rows = (dict[Hashable, Any](zip(names, row, strict=True)) for row in flat)
            out = np.array([model.predict_one(r) for r in rows])
            result: FloatArray = out.reshape(parent_values.shape[:-1])
            return result

        return PlayerModel(parents, predict=predict), self.config.generic_samples

    def _unidentified(self, players: IntArray, case: _Case) -> list[tuple[int, int]]:
        """The edges among the players whose coefficient the normal data cannot identify at
        this snapshot, into players that are anomalous or have an anomalous parent (the
        others do not change the ranking). A player's parents are players (its ancestors)."""
        m = self._models
        anomalous = {
            int(j)
            for j in players
            if case.scores.get(self.graph.nodes[j], 0.0) >= ANOMALOUS  # NaN: not anomalous
        }
        if not anomalous:
            return []
        children = np.array(
            [
                j
                for j in players
                if int(j) in anomalous or any(int(p) in anomalous for p in m.parent_index[j])
            ],
            dtype=np.intp,
        )
        return m.unidentified_edges(children, case.filled, UNIDENTIFIED_SUPPORT)

    def _attribute(self, case: _Case) -> Attribution:
        cfg, m = self.config, self._models
        started = self.timer() if self.timer is not None else None
        players = self._players[case.target]
        key = f"{case.incident}#{case.revision}".encode()
        seed = (cfg.seed * 1_000_003 + zlib.crc32(key)) % 2**32
        rng = np.random.default_rng(seed)
        model, n_samples = self._player_model(players)
        draws = m.noise.draw(players, n_samples, rng)
        outcome = attribute_noise(
            model,
            case.resid[players],
            float(case.filled[players[-1]]),
            draws,
            rng,
            exact_max_players=cfg.exact_max_players,
            # sampled orders: at least two per player, so large player sets stay resolved
            n_permutations=max(cfg.n_permutations, 2 * players.size),
            pool=self.pool,
        )
        names = [self.graph.nodes[j] for j in players]
        # Players still in warm-up take part with what they have learned (an empty model draws
        # its median, so it gets no credit); they are listed so that a reader knows.
        cold = [
            n for n, j in zip(names, players, strict=True) if m.noise.fitted_count[j] < cfg.warmup
        ]
        evidence = None
        if cfg.rank_by in EVIDENCE_RULES:  # over the whole graph, not only the players
            every = np.array([case.scores.get(n, np.nan) for n in self.graph.nodes])
            found, reaches = explained(every, m.parent_index, int(players[-1]))
            evidence = (found[players], reaches[players])
        unidentified = self._unidentified(players, case)
        unresolved = np.isin(players, [j for edge in unidentified for j in edge])
        moved = None  # read only for an anomalous target's place (anomalous-first)
        if cfg.rank_by == "anomalous-first" and case.scores.get(case.target, 0.0) >= ANOMALOUS:
            moved = m.moved(players, case.filled, MOVED)
        causes, rule = rank_causes(
            cfg.rank_by, names, outcome.contributions, outcome.stderr, case.scores,
            model.parents, evidence, unresolved, moved,
        )  # fmt: skip
        att = Attribution(
            incident_id=case.incident,
            graph=self.graph.name,
            target=case.target,
            window_start=case.snapshot.ts,
            window_end=case.snapshot.end,
            detected_at=case.snapshot.end if case.snapshot.end is not None else case.snapshot.ts,
            target_score=outcome.target_score,
            root_causes=tuple(causes),
            method=outcome.method,
            linear=outcome.linear,
            players=tuple(names),
            n_samples=outcome.n_samples,
            n_permutations=outcome.n_permutations,
            seed=seed,
            revision=case.revision,
            missing=tuple(n for n, j in zip(names, players, strict=True) if not case.present[j]),
            extra={
                "trigger_score": case.trigger_score,
                "cold": cold,
                "marginalised": list(self.marginalised),
                "rank_rule": rule,
                "unidentified": [
                    [self.graph.nodes[p], self.graph.nodes[j]] for p, j in unidentified
                ],
            },
        )
        if started is not None and self.timer is not None:
            att = dataclasses.replace(att, seconds=self.timer() - started)
        return att

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["timer"] = None  # a clock is the adapter's, not part of the in-process copy
        state["pool"] = None  # and so is a thread
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- state as data (checkpoints) ----------------------------------------------------------

    def to_state(self) -> StateTree:
        """The whole learned state as a state tree of JSON scalars and numeric arrays.

        Rows scored but not learned yet (the current period) are part of it, so a restored
        engine goes on exactly where this one stands.
        """
        n = len(self.graph)
        pending = self._pending
        cat = np.concatenate

        def stack(name: str, width: int, dtype: type) -> npt.NDArray[Any]:
            if not pending:
                return np.zeros((0, width), dtype=dtype)
            return cat([getattr(seg, name) for seg in pending]).astype(dtype)

        k = len(self.targets)
        return {
            "targets": list(self.targets),
            "n_snapshots": self.n_snapshots,
            "marginalised": list(self.marginalised),
            "structure_fixed": self._structure_fixed,
            "history": cat(self._history) if self._history else np.zeros((0, n)),
            "pending": {
                "filled": stack("filled", n, np.float64),
                "resid": stack("resid", n, np.float64),
                "learn": stack("learn", n, np.bool_),
                "t_vals": stack("t_vals", k, np.float64),
                "t_learn": stack("t_learn", k, np.bool_),
                "noise_learn": stack("noise_learn", n, np.bool_),
            },
            "models": self._models.to_state(),
            "triggers": [self._triggers[t].to_state() for t in self.targets],
        }

    @classmethod
    def from_state(cls, graph: CausalGraph, config: EngineConfig, state: StateTree) -> Engine:
        """An engine of ``graph`` and ``config`` in the state of :meth:`to_state`.

        Raises
        ------
        StateError
            If the state does not belong to this graph and configuration.
        """
        targets = [str(t) for t in get_list(state, "targets")]
        try:
            engine = cls(graph, config, targets=targets)
        except (ValueError, KeyError) as exc:
            raise StateError(f"targets: {exc}") from None
        n, k = len(graph), len(engine.targets)
        engine.n_snapshots = get_int(state, "n_snapshots", low=0)
        dropped = [str(x) for x in get_list(state, "marginalised")]
        if any(d not in graph.index for d in dropped):
            raise StateError("marginalised: names a node the graph does not have")
        if dropped:
            engine.marginalised = tuple(dropped)
            engine._build(frozenset(graph.index[d] for d in dropped))
        engine._structure_fixed = get_bool(state, "structure_fixed")
        history = get_array(state, "history", np.float64, (None, n))
        engine._history = [history.copy()] if history.shape[0] else []
        p = get_tree(state, "pending")
        rows = get_array(p, "filled", np.float64, (None, n)).shape[0]
        filled = get_array(p, "filled", np.float64, (rows, n)).copy()
        if rows:
            engine._pending = [
                _Segment(
                    filled, filled, get_array(p, "resid", np.float64, (rows, n)).copy(),
                    np.ones((rows, n), dtype=bool), filled, filled,
                    get_array(p, "t_vals", np.float64, (rows, k)).copy(),
                    get_array(p, "learn", np.bool_, (rows, n)).copy(),
                    get_array(p, "t_learn", np.bool_, (rows, k)).copy(),
                    get_array(p, "noise_learn", np.bool_, (rows, n)).copy(),
                    np.ones(n, dtype=bool), True,
                )
            ]  # fmt: skip
        if engine.n_snapshots % config.refit_period(engine.n_snapshots) != rows:
            raise StateError("pending: rows do not match the position in the stream")
        engine._models.load_state(get_tree(state, "models"))
        triggers = get_list(state, "triggers")
        if len(triggers) != k:
            raise StateError(f"triggers: expected {k}, got {len(triggers)}")
        for target, tree in zip(engine.targets, triggers, strict=True):
            trig = Trigger.from_state(tree)
            if trig.target != target or trig.config != config.trigger:
                raise StateError(f"triggers: {target!r} has another target or configuration")
            engine._triggers[target] = trig
        return engine

    # -- introspection ------------------------------------------------------------------------

    @property
    def warm(self) -> bool:
        """True once every modelled node and target has learned from ``warmup`` snapshots."""
        w, m = self.config.warmup, self._models
        nodes = (m.noise.fitted_count >= w) | ~self._active
        return bool(nodes.all() and (m.marginal.fitted_count >= w).all())

    def nbytes(self) -> int:
        """Approximate memory of the numeric state, in bytes (river models not counted)."""
        return self._models.nbytes()


@dataclass(frozen=True, slots=True)
class _Segment:
    """A piece of a block scored against the same frozen models, waiting to be learned."""

    x: FloatArray
    filled: FloatArray
    resid: FloatArray
    present: BoolArray
    node_scores: FloatArray
    t_scores: FloatArray
    t_vals: FloatArray
    learn: BoolArray
    t_learn: BoolArray
    noise_learn: BoolArray
    warm_nodes: BoolArray
    targets_warm: bool


@dataclass(frozen=True, slots=True)
class _Found:
    """What the triggers of a block found, by row: events, attributions, open incidents."""

    events: dict[int, list[IncidentEvent]]
    attributions: dict[int, list[Attribution]]
    open_incidents: dict[int, dict[str, str]]


@dataclass(frozen=True, slots=True)
class _Case:
    """What one attribution is asked about."""

    target: str
    snapshot: Snapshot
    filled: FloatArray
    resid: FloatArray
    present: BoolArray
    scores: Mapping[str, float]
    incident: str
    revision: int
    trigger_score: float

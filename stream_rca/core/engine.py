"""The engine: per snapshot, score every node, learn, trigger, and attribute incidents.

The same engine runs in every mode (demo, file replay, faust workers); it is pure: it reads no
clock, no environment and does no I/O. Its whole state pickles, for checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rca.core.attribution import PlayerModel, attribute_noise
from stream_rca.core.config import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.linear import LinearBank
from stream_rca.core.mechanisms import Regressor, make_regressor
from stream_rca.core.noise import NoiseBank
from stream_rca.core.trigger import Trigger, incident_id
from stream_rca.core.types import Attribution, IncidentEvent, RootCause, Snapshot, StepResult
from stream_rca.errors import NotWarmError

__all__ = ["Engine", "EngineConfig"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


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
    ) -> None:
        self.graph = graph
        self.timer = timer
        self.config = cfg = config or EngineConfig()
        self.targets: tuple[str, ...] = tuple(graph.check(t) for t in (targets or graph.sinks))
        if not self.targets:
            raise ValueError("an engine needs at least one target")
        n = len(graph)
        self._river: dict[int, Regressor] = {}
        for name, spec in (mechanisms or {}).items():
            j = graph.index[graph.check(name)]
            model = make_regressor(spec) if isinstance(spec, str) else spec
            if model is not None and graph.parent_index[j].size:
                self._river[j] = model
        members = [j for j in range(n) if j not in self._river]
        self._bank = LinearBank(
            graph.parent_index, members, forgetting=cfg.forgetting, ridge=cfg.ridge
        )
        self._noise = NoiseBank(n, cfg.reservoir, seed=cfg.seed)
        self._target_idx = np.array([graph.index[t] for t in self.targets], dtype=np.intp)
        self._marginal = NoiseBank(len(self.targets), cfg.reservoir, seed=cfg.seed + 1)
        self._fitted = np.zeros(n, dtype=np.int64)
        self._min_fit = np.array([2 * p.size + 2 if p.size else 0 for p in graph.parent_index])
        self._n_parents = np.array([p.size for p in graph.parent_index])
        self._has_parents = self._n_parents > 0
        self._edge_src = np.array([graph.index[u] for u, _ in graph.edges], dtype=np.intp)
        self._edge_dst = np.array([graph.index[v] for _, v in graph.edges], dtype=np.intp)
        self._triggers = {t: Trigger(graph.name, t, cfg.trigger) for t in self.targets}
        self._players = {t: self._player_index(t) for t in self.targets}
        self.n_snapshots = 0

    def __repr__(self) -> str:
        return (
            f"Engine(graph={self.graph.name!r}, nodes={len(self.graph)}, "
            f"targets={list(self.targets)}, snapshots={self.n_snapshots})"
        )

    # -- the per-snapshot step ----------------------------------------------------------------

    def process_one(self, snapshot: Snapshot) -> StepResult:
        """Score, trigger on and learn from one snapshot."""
        x, invalid = self._vector(snapshot.values)
        return self._steps([snapshot], x[None, :], [invalid])[0]

    def process_many(self, snapshots: Sequence[Snapshot]) -> list[StepResult]:
        """Process a block of snapshots at once: the fast path for backfills and replays.

        The block is scored, triggered and attributed against the models as they were before
        it, then learned in one exact merge; so results equal those of :meth:`process_one`
        snapshot by snapshot except that the models learn from the block as a whole (a
        prequential lag of at most the block's length).
        """
        if not snapshots:
            return []
        vectors = [self._vector(s.values) for s in snapshots]
        x = np.stack([v for v, _ in vectors])
        return self._steps(list(snapshots), x, [inv for _, inv in vectors])

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
        if values.ndim != 2 or values.shape[1] != len(self.graph) or len(ts) != len(values):
            raise ValueError(
                f"expected ({len(ts)}, {len(self.graph)}) values, got shape {values.shape}"
            )
        x = np.asarray(values, dtype=np.float64).copy()
        bad = np.isinf(x)
        x[bad] = np.nan
        nodes = self.graph.nodes
        invalid = [tuple(nodes[j] for j in np.flatnonzero(row)) for row in bad]
        end_list = list(ends) if ends is not None else [None] * len(ts)
        snaps = [
            Snapshot(float(t), {}, self.graph.name, e) for t, e in zip(ts, end_list, strict=True)
        ]
        return self._steps(snaps, x, invalid)

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

    def _steps(
        self, snaps: list[Snapshot], x: FloatArray, invalid: list[tuple[str, ...]]
    ) -> list[StepResult]:
        cfg = self.config
        present = ~np.isnan(x)
        filled = x.copy()
        for b in np.flatnonzero(~present.all(axis=1)):
            filled[b] = self._impute(x[b], present[b])
        resid = filled - self._predict(filled)

        warm_nodes = self._noise.count >= cfg.warmup
        node_scores = np.where(present & warm_nodes, self._noise.score(resid), np.nan)
        t_vals = filled[:, self._target_idx]
        t_present = present[:, self._target_idx]
        t_warm = self._marginal.count >= cfg.warmup
        t_scores = np.where(t_present & t_warm, self._marginal.score(t_vals), np.nan)

        parents_ok = np.ones_like(present)
        for b in np.flatnonzero(~present.all(axis=1)):
            parents_ok[b] = self._parents_present(present[b], cfg.impute_learn)
        learn = present & parents_ok & ~(node_scores >= cfg.protect)  # unscored counts as calm

        # Trigger and attribute against the models that scored the block, then learn.
        results = [
            self._result(
                snaps[b], filled[b], resid[b], present[b], node_scores[b], t_scores[b],
                warm_nodes, bool(t_warm.all()), invalid[b], learn[b],
            )
            for b in range(len(snaps))
        ]  # fmt: skip
        self._learn(filled, resid, learn)
        self._marginal.learn_many(t_vals, t_present & ~(t_scores >= cfg.protect))
        self.n_snapshots += len(snaps)
        return results

    def _result(
        self,
        snapshot: Snapshot,
        filled: FloatArray,
        resid: FloatArray,
        present: BoolArray,
        node_scores: FloatArray,
        t_scores: FloatArray,
        warm_nodes: BoolArray,
        targets_warm: bool,
        invalid: tuple[str, ...],
        learn: BoolArray,
    ) -> StepResult:
        nodes = self.graph.nodes
        scored = np.flatnonzero(~np.isnan(node_scores))
        scores = {nodes[j]: float(node_scores[j]) for j in scored}
        target_scores = {
            self.targets[i]: float(t_scores[i]) for i in np.flatnonzero(~np.isnan(t_scores))
        }
        events: list[IncidentEvent] = []
        attributions: list[Attribution] = []
        for i, target in enumerate(self.targets):
            trig = self._triggers[target]
            ready = target in target_scores and bool(warm_nodes[self._players[target][-1]])
            decision = trig.update_one(snapshot.ts, target_scores[target] if ready else None)
            if decision.incident_id is None:
                continue
            score = float(t_scores[i])
            if decision.kind is not None:
                events.append(
                    IncidentEvent(
                        decision.kind, decision.incident_id, self.graph.name, target,
                        snapshot.ts, score,
                    )
                )  # fmt: skip
            if decision.attribute:
                attributions.append(
                    self._attribute(
                        target, snapshot, filled, resid, present, scores,
                        decision.incident_id, decision.revision, score,
                    )
                )  # fmt: skip
        all_warm = bool(warm_nodes.all()) and targets_warm
        return StepResult(
            graph=self.graph.name,
            ts=snapshot.ts,
            scores=scores,
            target_scores=target_scores,
            warm=all_warm,
            warming=() if all_warm else tuple(nodes[j] for j in np.flatnonzero(~warm_nodes)),
            missing=tuple(nodes[j] for j in np.flatnonzero(~present) if nodes[j] not in invalid),
            invalid=invalid,
            learned=tuple(nodes[j] for j in np.flatnonzero(learn)),
            events=tuple(events),
            attributions=tuple(attributions),
            open_incidents={
                t: trig.incident for t, trig in self._triggers.items() if trig.incident is not None
            },
        )

    def explain(self, snapshot: Snapshot, target: str | None = None) -> Attribution:
        """Attribute the target's score in ``snapshot`` now, without learning or triggering.

        For questions such as "why is this value unusual?" on a value that did not open an
        incident. The incident id is that the snapshot would get; the revision is 0.
        """
        target = self.graph.check(target) if target is not None else self.targets[0]
        if target not in self._players:
            self._players[target] = self._player_index(target)
        x, _ = self._vector(snapshot.values)
        present = ~np.isnan(x)
        filled = self._impute(x, present)
        resid = filled - self._predict(filled[None, :])[0]
        warm = self._noise.count >= self.config.warmup
        scored = np.flatnonzero(present & warm)
        scores = self._noise.score(resid[scored], scored)
        named = {self.graph.nodes[j]: float(s) for j, s in zip(scored, scores, strict=True)}
        players = self._players[target]
        if not warm[players[-1]]:
            raise NotWarmError(
                f"cannot explain {target!r} yet: it has learned from "
                f"{int(self._noise.count[players[-1]])} of {self.config.warmup} snapshots"
            )
        incident = incident_id(self.graph.name, target, snapshot.ts)
        trigger_score = float("nan")
        if target in self.targets:
            i = self.targets.index(target)
            if self._marginal.count[i] >= self.config.warmup:
                row = np.array([i], dtype=np.intp)
                trigger_score = float(self._marginal.score(filled[[players[-1]]], row)[0])
        return self._attribute(
            target, snapshot, filled, resid, present, named, incident, 0, trigger_score
        )

    # -- models -------------------------------------------------------------------------------

    def _parents_present(self, present: BoolArray, tolerance: float) -> BoolArray:
        """Nodes whose share of missing parents is at most ``tolerance`` (and below 1)."""
        src, dst = self._edge_src, self._edge_dst
        missing = np.bincount(dst[~present[src]], minlength=len(self.graph))
        n_parents = np.maximum(self._n_parents, 1)
        out: BoolArray = (missing == 0) | (
            (missing <= tolerance * n_parents) & (missing < n_parents)
        )
        return out

    def _predict(self, x: FloatArray) -> FloatArray:
        """Predictions of every node for a block ``(B, nodes)``."""
        pred = self._bank.predict(x)
        for j, model in self._river.items():
            for b in range(x.shape[0]):
                pred[b, j] = float(model.predict_one(self._features(j, x[b])))
        return pred

    def _predict_node(self, j: int, x: FloatArray) -> float:
        if j in self._river:
            return float(self._river[j].predict_one(self._features(j, x)))
        return self._bank.predict_node(j, x)

    def _features(self, j: int, x: FloatArray) -> dict[Hashable, Any]:
        nodes = self.graph.nodes
        return {nodes[p]: float(x[p]) for p in self.graph.parent_index[j]}

    def _impute(self, x: FloatArray, present: BoolArray) -> FloatArray:
        """Fill missing values, in topological order, with prediction plus median noise."""
        if present.all():
            return x
        filled = x.copy()
        missing = np.flatnonzero(~present)
        medians = self._noise.median(missing)
        for j, med in zip(missing, medians, strict=True):
            filled[j] = self._predict_node(int(j), filled) + float(med)
        return filled

    def _learn(self, x: FloatArray, resid: FloatArray, learn: BoolArray) -> None:
        """Learn a block ``(B, nodes)`` where ``learn`` is true, in row order."""
        # a residual counts once the node's mechanism has learned enough, row by row
        fitted_before = self._fitted[None, :] + np.cumsum(learn, axis=0) - learn
        ready = fitted_before >= self._min_fit[None, :]
        self._bank.learn_many(x, learn)
        for j, model in self._river.items():
            for b in np.flatnonzero(learn[:, j]):
                model.learn_one(self._features(j, x[b]), float(x[b, j]))
        self._fitted += learn.sum(axis=0)
        self._noise.learn_many(resid, learn & (ready | ~self._has_parents))

    # -- attribution --------------------------------------------------------------------------

    def _player_index(self, target: str) -> IntArray:
        idx = [self.graph.index[a] for a in self.graph.ancestors(target)]
        return np.array([*idx, self.graph.index[target]], dtype=np.intp)

    def _player_model(self, players: IntArray) -> tuple[PlayerModel, int]:
        pos = {int(j): i for i, j in enumerate(players)}
        parents = [
            np.array([pos[int(p)] for p in self.graph.parent_index[j]], dtype=np.intp)
            for j in players
        ]
        if not any(int(j) in self._river for j in players):
            weights, _ = self._bank.coefficients()
            sub = weights[np.ix_(players, players)]
            return PlayerModel(parents, weights=sub), self.config.n_samples

        def predict(i: int, parent_values: FloatArray) -> FloatArray:
            j = int(players[i])
            if j not in self._river:
                return self._bank.predict_samples(j, parent_values)
            model, names = self._river[j], [self.graph.nodes[p] for p in self.graph.parent_index[j]]
            flat = parent_values.reshape(-1, parent_values.shape[-1])
            rows = (dict[Hashable, Any](zip(names, row, strict=True)) for row in flat)
            out = np.array([model.predict_one(r) for r in rows])
            result: FloatArray = out.reshape(parent_values.shape[:-1])
            return result

        return PlayerModel(parents, predict=predict), self.config.generic_samples

    def _attribute(
        self,
        target: str,
        snapshot: Snapshot,
        filled: FloatArray,
        resid: FloatArray,
        present: BoolArray,
        scores: Mapping[str, float],
        incident: str,
        revision: int,
        trigger_score: float,
    ) -> Attribution:
        cfg = self.config
        started = self.timer() if self.timer is not None else None
        players = self._players[target]
        seed = (cfg.seed * 1_000_003 + zlib.crc32(f"{incident}#{revision}".encode())) % 2**32
        rng = np.random.default_rng(seed)
        model, n_samples = self._player_model(players)
        draws = self._noise.draw(players, n_samples, rng)
        outcome = attribute_noise(
            model,
            resid[players],
            float(filled[players[-1]]),
            draws,
            rng,
            exact_max_players=cfg.exact_max_players,
            n_permutations=cfg.n_permutations,
        )
        names = [self.graph.nodes[j] for j in players]
        # Players still in warm-up take part with what they have learned (an empty model draws
        # its median, so it gets no credit); they are listed so that a reader knows.
        cold = [n for n, j in zip(names, players, strict=True) if self._noise.count[j] < cfg.warmup]
        positive = float(outcome.contributions[outcome.contributions > 0].sum())
        causes = sorted(
            (
                RootCause(
                    node=name,
                    contribution=float(c),
                    share=float(c) / positive if c > 0 and positive > 0 else 0.0,
                    score=scores.get(name),
                    stderr=float(e),
                )
                for name, c, e in zip(names, outcome.contributions, outcome.stderr, strict=True)
            ),
            key=lambda rc: -rc.contribution,
        )
        att = Attribution(
            incident_id=incident,
            graph=self.graph.name,
            target=target,
            window_start=snapshot.ts,
            window_end=snapshot.end,
            detected_at=snapshot.end if snapshot.end is not None else snapshot.ts,
            target_score=outcome.target_score,
            root_causes=tuple(causes),
            method=outcome.method,
            linear=outcome.linear,
            players=tuple(names),
            n_samples=outcome.n_samples,
            n_permutations=outcome.n_permutations,
            seed=seed,
            revision=revision,
            missing=tuple(n for n, j in zip(names, players, strict=True) if not present[j]),
            extra={"trigger_score": trigger_score, "cold": cold},
        )
        if started is not None and self.timer is not None:
            att = dataclasses.replace(att, seconds=self.timer() - started)
        return att

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["timer"] = None  # a clock is the adapter's, not part of the checkpoint
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- introspection ------------------------------------------------------------------------

    @property
    def warm(self) -> bool:
        """True once every node and target has learned from ``warmup`` snapshots."""
        w = self.config.warmup
        return bool((self._noise.count >= w).all() and (self._marginal.count >= w).all())

    def nbytes(self) -> int:
        """Approximate memory of the numeric state, in bytes (river models not counted)."""
        return self._bank.nbytes() + self._noise.nbytes() + self._marginal.nbytes()

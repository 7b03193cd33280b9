"""Root causes without a causal graph: calibrated marginal scores and onset order.

Without a graph there is nothing to share a target's anomaly over (no Shapley values), but two
things are still known about every metric: how rare its current value is under its own normal
distribution, and when it went anomalous. :class:`MarginalRanker` learns each metric's marginal
with a :class:`~stream_rca.core.noise.NoiseBank` (calibrated two-sided IT scores,
``P(S >= s) = e^-s``, both tails, so a drop of an availability or a throughput counts as much
as a rise of a latency) and follows each metric's onset: the snapshot where its current run of
anomalous scores began. The rule (:data:`GRAPH_FREE_RULE`) orders:

1. **new anomalies**: metrics anomalous now (score >= ``anomalous``) whose anomaly began at most
   ``lead`` snapshots before the target's own onset (a cause shows at most one scrape interval
   before its effect, by default);
2. **pre-existing anomalies**: anomalous now, but since before that (they were already off while
   the target was calm, so they do not explain its change; a regime shift such as a redeploy);
3. the other scored metrics, by score; metrics without a model yet come last.

Within the first two groups the key is the score capped at ``certain`` nats (beyond the
reservoir's range the tail extrapolation alone would order them: all such values are certain
anomalies), then the earlier onset, then the robust deviation ``|x - median| / IQR`` (the IQR
floored at 1 % of the metric's typical magnitude), then the name. One configuration for every
data set; no rule looks at a metric's name.

The ranker is pure and deterministic: it learns at fixed stream positions (every
``refit_every``-th snapshot), so any partition of a stream into blocks gives the same state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stream_rca.core.checkpoint import (
    StateError,
    StateTree,
    get_array,
    get_float,
    get_int,
    get_list,
    get_tree,
)
from stream_rca.core.noise import NoiseBank
from stream_rca.core.trigger import incident_id
from stream_rca.core.types import Attribution, RootCause, Snapshot

__all__ = [
    "GRAPH_FREE_METHOD",
    "GRAPH_FREE_RULE",
    "Candidate",
    "GraphFreeConfig",
    "MarginalRanker",
    "ranking_attribution",
]

FloatArray = npt.NDArray[np.float64]

GRAPH_FREE_METHOD = "graph-free"
GRAPH_FREE_RULE = (
    "no causal graph: metrics anomalous now (marginal IT score >= anomalous nats) whose anomaly "
    "began at most `lead` snapshots before the target's onset first, then those anomalous since "
    "before that (pre-existing), then the rest by score; within a group by score capped at "
    "`certain` nats, then earlier onset, then |x - median| / IQR; two-sided scores"
)
_SCALE_FLOOR = 1e-4  # least tail scale, relative to a metric's typical magnitude (as the engine)
_DEVIATION_FLOOR = 1e-2  # least IQR of the robust deviation, relative to the magnitude


@dataclass(frozen=True, slots=True)
class GraphFreeConfig:
    """Parameters of a :class:`MarginalRanker` (one default for every data set).

    Parameters
    ----------
    warmup
        Values a metric's model must learn from before it is scored.
    reservoir, refit_every
        Size of each metric's recency-weighted sample; learning happens every ``refit_every``
        snapshots of the stream, at fixed positions.
    anomalous
        Score (nats) from which a metric counts as anomalous for the onset and the groups.
    certain
        Scores are capped here for ranking: beyond it every value is a certain anomaly.
    lead
        Snapshots a cause's onset may precede the target's and still be a new anomaly.
    protect
        A metric does not learn from a value scoring this much or more.
    gap
        A time step of more than ``gap`` times the least step seen is a gap in the stream.
    seed
        Salt of the reservoirs' slot hash.
    """

    warmup: int = 100
    reservoir: int = 1024
    refit_every: int = 16
    anomalous: float = 5.0
    certain: float = 10.0
    lead: int = 1
    protect: float = 12.0
    gap: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.warmup < 10:
            raise ValueError(f"warmup must be at least 10 snapshots, got {self.warmup}")
        if self.reservoir < 64:
            raise ValueError(f"reservoir must be at least 64, got {self.reservoir}")
        if not 1 <= self.refit_every <= 1024:
            raise ValueError(f"refit_every must be in [1, 1024], got {self.refit_every}")
        if not 0 < self.anomalous <= self.certain:
            raise ValueError("anomalous must be positive and at most certain")
        if self.lead < 0 or self.protect <= 0 or self.gap <= 1:
            raise ValueError("lead must be >= 0, protect > 0 and gap > 1")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One metric of a graph-free ranking."""

    node: str
    score: float | None
    """Marginal IT score at the ranked snapshot (``None``: missing or no model yet)."""
    onset: int | None
    """Stream position of the snapshot where its current anomaly began (``None``: calm)."""
    group: str
    """``"new"``, ``"pre-existing"``, ``"calm"`` or ``"unscored"``."""
    deviation: float | None
    """``|x - median| / IQR`` at the ranked snapshot."""
    censored: bool = False
    """Its first value after a gap in the stream was already anomalous (onset unknown)."""

    def to_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "score": self.score,
            "onset": self.onset,
            "group": self.group,
            "deviation": self.deviation,
            "onset_censored": self.censored,
        }


class MarginalRanker:
    """Calibrated marginal scores and onsets of many metrics, learned online.

    Parameters
    ----------
    nodes
        Metric names (more can be added with :meth:`add_nodes`).
    config
        Parameters; the defaults serve every data set.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> r = MarginalRanker(["db", "api", "web"], GraphFreeConfig(warmup=50))
    >>> for t in range(300):
    ...     db = rng.normal(10, 1)
    ...     api, web = db + rng.normal(), 5.0 + rng.normal()
    ...     _ = r.process_one(Snapshot(float(t), {"db": db, "api": api, "web": web}))
    >>> _ = r.process_one(Snapshot(300.0, {"db": 30.0, "api": 21.0, "web": 5.0}))
    >>> [c.node for c in r.rank("api")][:2]
    ['db', 'api']
    """

    def __init__(self, nodes: Sequence[str], config: GraphFreeConfig | None = None) -> None:
        self.config = cfg = config or GraphFreeConfig()
        self.nodes: list[str] = []
        self.index: dict[str, int] = {}
        self.bank = NoiseBank(0, cfg.reservoir, seed=cfg.seed)
        self.n_snapshots = 0
        self._onset = np.zeros(0, dtype=np.int64)
        self._censored = np.zeros(0, dtype=bool)  # its run began at its first value after a gap
        self._fresh = np.zeros(0, dtype=bool)  # no value seen since the last gap
        self._ts: float | None = None
        self._step = math.inf  # least positive time step seen
        self._last = np.zeros(0)
        self._score = np.zeros(0)
        self._median = np.zeros(0)
        self._iqr = np.ones(0)
        self._abs_sum = np.zeros(0)
        self._abs_n = np.zeros(0)
        self._pending: list[tuple[FloatArray, npt.NDArray[np.bool_]]] = []
        self.add_nodes(nodes)

    def __repr__(self) -> str:
        return f"MarginalRanker(nodes={len(self.nodes)}, snapshots={self.n_snapshots})"

    def __contains__(self, node: object) -> bool:
        return node in self.index

    # -- growing ------------------------------------------------------------------------------

    def add_nodes(self, names: Iterable[str]) -> tuple[str, ...]:
        """Add metrics not known yet (with empty models); return those added, in order.

        The other metrics keep everything they learned.
        """
        new = [n for n in dict.fromkeys(names) if n not in self.index]
        if not new:
            return ()
        k, old = len(new), self.bank.n_nodes
        grown = NoiseBank(old + k, self.config.reservoir, seed=self.config.seed)
        src = self.bank
        for name in ("samples", "count", "fitted_count", "min_scale"):
            getattr(grown, name)[:old] = getattr(src, name)
        for name in ("_median", "_knots", "_below", "_above"):
            getattr(grown, name)[:old] = getattr(src, name)
        for name in ("_hi_rows", "_lo_rows"):  # (4, nodes): u, sigma, xi, log_pu
            getattr(grown, name)[:, :old] = getattr(src, name)
        self.bank = grown
        for n in new:
            self.index[n] = len(self.nodes)
            self.nodes.append(n)
        self._onset = np.concatenate([self._onset, np.full(k, -1, dtype=np.int64)])
        self._censored = np.concatenate([self._censored, np.zeros(k, dtype=bool)])
        self._fresh = np.concatenate([self._fresh, np.zeros(k, dtype=bool)])
        self._last = np.concatenate([self._last, np.full(k, np.nan)])
        self._score = np.concatenate([self._score, np.full(k, np.nan)])
        self._median = np.concatenate([self._median, np.zeros(k)])
        self._iqr = np.concatenate([self._iqr, np.ones(k)])
        self._abs_sum = np.concatenate([self._abs_sum, np.zeros(k)])
        self._abs_n = np.concatenate([self._abs_n, np.zeros(k)])
        self._pending = [
            (np.concatenate([v, np.zeros(k)]), np.concatenate([m, np.zeros(k, dtype=bool)]))
            for v, m in self._pending
        ]
        return tuple(new)

    # -- the per-snapshot step ----------------------------------------------------------------

    def process_one(
        self, snapshot: Snapshot, *, learn: bool = True, trusted: bool = False
    ) -> dict[str, float]:
        """Score a snapshot, follow onsets, and learn it (unless ``learn`` is false).

        Metrics not known yet are added first. Returns the scores of the scored metrics. A
        value scoring ``protect`` or more is not learned, unless ``trusted`` (the snapshot is
        known to be normal operation, such as a training file: then it is all learned).
        """
        self.add_nodes(snapshot.values)
        x = np.full(len(self.nodes), np.nan)
        for name, v in snapshot.values.items():
            x[self.index[name]] = v
        scores = self.process_array(x, ts=snapshot.ts, learn=learn, trusted=trusted)
        return {n: float(s) for n, s in zip(self.nodes, scores, strict=True) if not math.isnan(s)}

    def process_array(
        self,
        x: FloatArray,
        *,
        ts: float | None = None,
        learn: bool = True,
        trusted: bool = False,
    ) -> FloatArray:
        """:meth:`process_one` for a row ordered as :attr:`nodes` (NaN: missing).

        ``ts`` (the window start) lets the ranker see gaps in the stream: a metric whose first
        value after a gap of more than ``gap`` least steps is already anomalous has an onset
        somewhere in the gap (it counts as pre-existing); so has one whose first value after a
        step back in time is (another recording).
        """
        x = np.asarray(x, dtype=np.float64)
        cfg = self.config
        present = np.isfinite(x)
        warm = self.bank.fitted_count >= cfg.warmup
        scored = present & warm
        s: FloatArray = np.full(len(x), np.nan)
        if scored.any():
            rows = np.flatnonzero(scored)
            s[rows] = self.bank.score(x[rows], rows)
        t = self.n_snapshots
        hot = scored & (s >= cfg.anomalous)
        calm = scored & ~hot
        if ts is not None:
            if self._ts is not None:
                step = ts - self._ts
                if step < 0 or step > cfg.gap * self._step:  # a gap, or another recording
                    self._fresh[:] = True
                if step > 0:
                    self._step = min(self._step, step)
            self._ts = ts
        starts = hot & (self._onset < 0)
        self._censored = np.where(starts, self._fresh, self._censored)
        self._onset = np.where(starts, t, self._onset)
        self._onset = np.where(calm | (present & ~warm), -1, self._onset)
        self._fresh &= ~present
        self._last = x.copy()
        self._last[~present] = np.nan
        self._score = s
        if learn:
            ok = present if trusted else present & ~(scored & (s >= cfg.protect))
            self._pending.append((np.where(ok, x, 0.0), ok))
        self.n_snapshots += 1
        if self.n_snapshots % cfg.refit_every == 0:
            self._learn_pending()
        return s

    def _learn_pending(self) -> None:
        if not self._pending:
            return
        values = np.vstack([v for v, _ in self._pending])
        mask = np.vstack([m for _, m in self._pending])
        self._pending.clear()
        self.bank.learn_many(values, mask)
        self._abs_sum += np.where(mask, np.abs(values), 0.0).sum(axis=0)
        self._abs_n += mask.sum(axis=0)
        magnitude = self._abs_sum / np.maximum(self._abs_n, 1.0)
        self.bank.min_scale = np.maximum(1e-12, _SCALE_FLOOR * magnitude)
        changed = np.flatnonzero(self.bank.count != self.bank.fitted_count)
        self.bank.refit(changed)
        for j in changed:
            held = self.bank.samples[j, : int(self.bank.filled[j])]
            q1, med, q3 = np.percentile(held, [25, 50, 75])
            floor = max(_DEVIATION_FLOOR * magnitude[j], 1e-12)
            self._median[j], self._iqr[j] = med, max(q3 - q1, floor)

    # -- state as data ------------------------------------------------------------------------

    def to_state(self) -> StateTree:
        """The ranker's learned state as a state tree (see :mod:`stream_rca.core.checkpoint`).

        The configuration is not in it: :meth:`from_state` takes it again, so a checkpoint
        is only restored under the same parameters.
        """
        n = len(self.nodes)
        rows = len(self._pending)
        return {
            "nodes": list(self.nodes),
            "n_snapshots": self.n_snapshots,
            "ts": self._ts,
            "step": self._step,
            "bank": self.bank.to_state(),
            "onset": self._onset,
            "censored": self._censored,
            "fresh": self._fresh,
            "last": self._last,
            "score": self._score,
            "median": self._median,
            "iqr": self._iqr,
            "abs_sum": self._abs_sum,
            "abs_n": self._abs_n,
            "pending_values": (
                np.vstack([v for v, _ in self._pending]) if rows else np.zeros((0, n))
            ),
            "pending_mask": (
                np.vstack([m for _, m in self._pending]) if rows else np.zeros((0, n), bool)
            ),
        }

    @classmethod
    def from_state(cls, config: GraphFreeConfig, state: StateTree) -> MarginalRanker:
        """Rebuild a ranker of ``config`` from :meth:`to_state`'s tree.

        Raises
        ------
        StateError
            For a tree this class did not write (the message names the bad entry).

        Examples
        --------
        >>> import numpy as np
        >>> r = MarginalRanker(["a", "b"], GraphFreeConfig(warmup=20))
        >>> rng = np.random.default_rng(0)
        >>> for t in range(70):
        ...     _ = r.process_one(Snapshot(float(t), {"a": rng.normal(), "b": rng.normal()}))
        >>> twin = MarginalRanker.from_state(r.config, r.to_state())
        >>> s = Snapshot(70.0, {"a": 4.0, "b": 0.1})
        >>> twin.process_one(s) == r.process_one(s)
        True
        """
        names = get_list(state, "nodes")
        if not all(isinstance(x, str) for x in names) or len(set(names)) != len(names):
            raise StateError("nodes: expected distinct names")
        ranker = cls(names, config)
        n = len(names)
        bank = NoiseBank.from_state(get_tree(state, "bank"))
        if bank.n_nodes != n or bank.capacity != config.reservoir or bank.seed != config.seed:
            raise StateError("bank: its size, capacity or seed differ from the ranker's")
        ranker.bank = bank
        ranker.n_snapshots = get_int(state, "n_snapshots", low=0)
        ts = state.get("ts")
        ranker._ts = None if ts is None else get_float(state, "ts")
        ranker._step = get_float(state, "step", finite=False)
        if not ranker._step > 0:
            raise StateError("step: expected a positive number or inf")
        f64 = np.float64
        ranker._onset = get_array(state, "onset", np.int64, (n,)).copy()
        for name in ("censored", "fresh"):
            setattr(ranker, f"_{name}", get_array(state, name, np.bool_, (n,)).copy())
        for name in ("last", "score", "median", "iqr", "abs_sum", "abs_n"):
            setattr(ranker, f"_{name}", get_array(state, name, f64, (n,)).copy())
        values = get_array(state, "pending_values", f64, (None, n))
        mask = get_array(state, "pending_mask", np.bool_, (values.shape[0], n))
        if values.shape[0] >= config.refit_every:
            raise StateError("pending_values: more rows than a learning period")
        ranker._pending = [(values[i].copy(), mask[i].copy()) for i in range(values.shape[0])]
        return ranker

    # -- ranking ------------------------------------------------------------------------------

    def scores(self) -> dict[str, float]:
        """The scores of the last processed snapshot (scored metrics only)."""
        return {n: float(s) for n, s in zip(self.nodes, self._score, strict=True) if s == s}

    def rank(self, target: str | None = None) -> list[Candidate]:
        """Every metric, most likely root cause first, at the last processed snapshot.

        ``target`` (a known metric) sets the onset the others are judged against; without
        one (or when it is calm) the reference is the last snapshot.
        """
        cfg = self.config
        now = self.n_snapshots - 1
        s = self._score
        hot = (s >= cfg.anomalous) & (self._onset >= 0)
        t0, t_censored = now, False
        if target is not None and target in self.index:
            j = self.index[target]
            if hot[j]:
                t0, t_censored = int(self._onset[j]), bool(self._censored[j])
        dev = np.abs(self._last - self._median) / self._iqr
        out: list[tuple[tuple[float, ...], str, Candidate]] = []
        for j, name in enumerate(self.nodes):
            score = None if math.isnan(s[j]) else float(s[j])
            d = None if math.isnan(dev[j]) or score is None else float(dev[j])
            if hot[j]:
                onset = int(self._onset[j])
                censored = bool(self._censored[j])
                new = onset >= t0 - cfg.lead and (t_censored or not censored)
                group = "new" if new else "pre-existing"
                rank_g = 0.0 if new else 1.0
                key = (rank_g, -min(float(s[j]), cfg.certain), float(onset), -(d or 0.0))
                cand = Candidate(name, score, onset, group, d, censored)
            elif score is not None:
                key = (2.0, -score, 0.0, 0.0)
                cand = Candidate(name, score, None, "calm", d)
            else:
                key = (3.0, 0.0, 0.0, 0.0)
                cand = Candidate(name, None, None, "unscored", None)
            out.append((key, name, cand))
        out.sort(key=lambda item: (item[0], item[1]))
        return [c for _, _, c in out]

    def explain(
        self,
        target: str,
        snapshot: Snapshot,
        *,
        graph: str | None = None,
        candidates: Sequence[str] | None = None,
        incident: str | None = None,
        revision: int = 0,
        extra: Mapping[str, object] | None = None,
    ) -> Attribution:
        """The graph-free attribution document of the last processed snapshot.

        ``snapshot`` is that snapshot (for its window and graph name); ``candidates`` limits
        the ranking to these metrics (default: all); ``incident`` and ``revision`` come from
        the caller's trigger (default: an id of this window).
        """
        ranking = self.rank(target)
        if candidates is not None:
            keep = set(candidates)
            ranking = [c for c in ranking if c.node in keep]
        name = graph if graph is not None else snapshot.graph
        score = self._score[self.index[target]] if target in self.index else math.nan
        return ranking_attribution(
            ranking,
            graph=name,
            target=target,
            ts=snapshot.ts,
            end=snapshot.end,
            target_score=float(score),
            incident=incident,
            revision=revision,
            extra=extra,
        )


def ranking_attribution(
    ranking: Sequence[Candidate],
    *,
    graph: str,
    target: str,
    ts: float,
    end: float | None,
    target_score: float,
    incident: str | None = None,
    revision: int = 0,
    extra: Mapping[str, object] | None = None,
) -> Attribution:
    """An :class:`Attribution` (method ``graph-free``) of a ranking.

    A cause's ``contribution`` is its own marginal score (nats), capped at nothing; its
    ``share`` is that score over the sum of the positive scores listed. Without a graph there is
    no Shapley efficiency: the document says so (``graph_used: false`` and the rule).
    """
    scored = [c for c in ranking if c.score is not None]
    total = sum(max(0.0, c.score or 0.0) for c in scored)
    causes = tuple(
        RootCause(
            node=c.node,
            contribution=float(c.score or 0.0),
            share=max(0.0, c.score or 0.0) / total if total > 0 else 0.0,
            score=c.score,
        )
        for c in scored
    )
    doc_extra: dict[str, object] = {
        "graph_used": False,
        "rule": GRAPH_FREE_RULE,
        "candidates": [c.to_dict() for c in ranking],
    }
    doc_extra.update(extra or {})
    return Attribution(
        incident_id=incident or incident_id(graph, target, ts),
        graph=graph,
        target=target,
        window_start=ts,
        window_end=end,
        detected_at=ts,
        target_score=target_score,
        root_causes=causes,
        method=GRAPH_FREE_METHOD,
        linear=False,
        players=tuple(c.node for c in scored),
        n_samples=0,
        n_permutations=0,
        seed=0,
        revision=revision,
        missing=tuple(c.node for c in ranking if c.score is None),
        extra=doc_extra,
    )

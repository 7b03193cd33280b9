"""A reference copy of the mechanisms, kept online, so that "why did it change?" has an answer.

:class:`ChangeTracker` keeps two bounded sets of snapshot rows of one graph, the data its
mechanisms are fitted from when the question is asked
(:func:`~stream_rca.core.change.attribute_change`):

- the **reference**: a slow-forgetting twin of normal operation (``mode="forgetting"``: a
  reservoir that, once full, lets each new normal row replace a random one with probability
  ``forget``, so a row stays about ``capacity / forget`` rows), or a snapshot taken at a chosen
  time (:meth:`ChangeTracker.freeze`; before a deploy, say), kept as it is until
  :meth:`ChangeTracker.thaw`. Rows seen while an incident is open are not learned (the same
  protection as the engine's);
- the **recent** rows: the last ``recent`` rows, whatever their state.

Pure: the caller gives the timestamps, the anomaly flag and the random generator's seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rca.core.change import ChangeResult, attribute_change
from stream_rca.core.checkpoint import (
    StateError,
    StateTree,
    get_array,
    get_int,
    get_list,
    get_str,
    get_tree,
    rng_from_state,
    rng_to_state,
)
from stream_rca.core.graph import CausalGraph
from stream_rca.errors import ConfigError, NotWarmError

__all__ = ["ChangeTracker"]

FloatArray = npt.NDArray[np.float64]
MODES = ("forgetting", "frozen")


class ChangeTracker:
    """Reference and recent rows of one graph's nodes, for distribution-change attribution.

    Parameters
    ----------
    graph
        The causal graph (its nodes are the columns).
    capacity
        Rows of the reference.
    recent
        Rows of the recent window.
    forget
        Once the reference is full, the probability that a new normal row replaces one of it.
    min_rows
        Rows each period needs before :meth:`why_changed` answers.
    seed
        Seeds the reservoir's choices and each answer's Monte Carlo draws.

    Examples
    --------
    >>> import numpy as np
    >>> g = CausalGraph([("db", "api")])
    >>> t = ChangeTracker(g, capacity=200, recent=100, min_rows=50)
    >>> rng = np.random.default_rng(1)
    >>> for i in range(300):
    ...     db = rng.normal(5.0 if i >= 200 else 1.0, 0.1)  # db got slower at row 200
    ...     t.learn_one({"db": db, "api": db + rng.normal(0, 0.1)}, float(i))
    >>> t.freeze()
    >>> r = t.why_changed("api")
    >>> r.ranking[0], round(r.contributions[0].contribution)
    ('db', 4)
    """

    def __init__(
        self,
        graph: CausalGraph,
        *,
        capacity: int = 1000,
        recent: int = 250,
        forget: float = 0.02,
        min_rows: int = 30,
        seed: int = 0,
    ) -> None:
        if capacity < 8 or recent < 8:
            raise ConfigError(f"capacity {capacity} and recent {recent}: expected at least 8")
        if not 0.0 < forget <= 1.0:
            raise ConfigError(f"forget {forget}: expected a probability in (0, 1]")
        self.graph = graph
        self.capacity = capacity
        self.recent = recent
        self.forget = forget
        self.min_rows = min_rows
        self.seed = seed
        d = len(graph)
        self.mode = "forgetting"
        self._rng = np.random.default_rng(seed)
        self._ref = np.full((capacity, d), np.nan)
        self._ref_ts = np.full(capacity, np.nan)
        self._n_ref = 0
        self._rec = np.full((recent, d), np.nan)
        self._rec_ts = np.full(recent, np.nan)
        self._n_seen = 0
        self._answers = 0

    def learn_one(self, values: Mapping[str, float], ts: float, *, anomalous: bool = False) -> None:
        """Take one snapshot's values (a missing node is NaN).

        Rows flagged ``anomalous`` (an incident is open) go to the recent window only.
        """
        row = np.array([float(values.get(n, np.nan)) for n in self.graph.nodes])
        slot = self._n_seen % self.recent
        self._rec[slot], self._rec_ts[slot] = row, ts
        self._n_seen += 1
        if anomalous or self.mode == "frozen":
            return
        if self._n_ref < self.capacity:
            self._ref[self._n_ref], self._ref_ts[self._n_ref] = row, ts
            self._n_ref += 1
        elif self._rng.random() < self.forget:
            k = int(self._rng.integers(self.capacity))
            self._ref[k], self._ref_ts[k] = row, ts

    def learn_many(
        self, rows: FloatArray, ts: FloatArray | Sequence[float], anomalous: Sequence[bool]
    ) -> None:
        """Take a block of snapshots' values at once: the same as :meth:`learn_one` on each.

        Parameters
        ----------
        rows
            ``(B, nodes)`` values, columns in the graph's node order (NaN: missing).
        ts
            The ``B`` snapshots' times.
        anomalous
            One flag per row, as for :meth:`learn_one`.

        Examples
        --------
        >>> g = CausalGraph([("db", "api")])
        >>> a, b = ChangeTracker(g, capacity=8, recent=8), ChangeTracker(g, capacity=8, recent=8)
        >>> rows = np.arange(40.0).reshape(20, 2)
        >>> flags = [i % 3 == 0 for i in range(20)]
        >>> for i in range(20):
        ...     a.learn_one({"db": rows[i, 0], "api": rows[i, 1]}, float(i), anomalous=flags[i])
        >>> b.learn_many(rows, np.arange(20.0), flags)
        >>> np.array_equal(a.periods()[0]["db"], b.periods()[0]["db"])
        True
        """
        x = np.asarray(rows, dtype=np.float64)
        t = np.asarray(ts, dtype=np.float64)
        n = len(x)
        if x.shape != (n, len(self.graph)) or t.shape != (n,) or len(anomalous) != n:
            raise ValueError(
                f"expected ({n}, {len(self.graph)}) rows, {n} times and {n} flags; got "
                f"{x.shape}, {t.shape} and {len(anomalous)}"
            )
        if not n:
            return
        first = max(0, n - self.recent)  # older rows of the block are overwritten in it
        slots = (self._n_seen + np.arange(first, n)) % self.recent
        self._rec[slots], self._rec_ts[slots] = x[first:], t[first:]
        self._n_seen += n
        if self.mode == "frozen":
            return
        normal = np.flatnonzero(~np.asarray(anomalous, dtype=bool)).tolist()
        fill = normal[: self.capacity - self._n_ref]
        if fill:
            end = self._n_ref + len(fill)
            self._ref[self._n_ref : end], self._ref_ts[self._n_ref : end] = x[fill], t[fill]
            self._n_ref = end
        rng, forget, capacity = self._rng, self.forget, self.capacity
        for i in normal[len(fill) :]:  # one draw per row, in order: the same random stream
            if rng.random() < forget:
                k = int(rng.integers(capacity))
                self._ref[k], self._ref_ts[k] = x[i], t[i]

    def freeze(self) -> None:
        """Keep the reference as it is now (a snapshot of the mechanisms at this time)."""
        self.mode = "frozen"

    def thaw(self) -> None:
        """Let the reference learn and forget again."""
        self.mode = "forgetting"

    def periods(self) -> tuple[dict[str, FloatArray], dict[str, FloatArray], dict[str, Any]]:
        """The reference and recent rows as columns, and a description of both periods."""
        n_rec = min(self._n_seen, self.recent)
        ref, ref_ts = self._ref[: self._n_ref], self._ref_ts[: self._n_ref]
        rec, rec_ts = self._rec[:n_rec], self._rec_ts[:n_rec]
        info = {
            "before": _describe("reference", ref_ts, self.mode),
            "after": _describe("recent", rec_ts, None),
        }
        nodes = self.graph.nodes
        return (
            {n: ref[:, k] for k, n in enumerate(nodes)},
            {n: rec[:, k] for k, n in enumerate(nodes)},
            info,
        )

    def why_changed(self, target: str, *, statistic: str = "mean", **kwargs: Any) -> ChangeResult:
        """Attribute the change of ``target`` from the reference to the recent rows.

        Raises
        ------
        NotWarmError
            While either period has fewer than ``min_rows`` rows.
        """
        have = min(self._n_ref, min(self._n_seen, self.recent))
        if have < self.min_rows:
            raise NotWarmError(
                f"graph {self.graph.name!r}: {self._n_ref} reference and "
                f"{min(self._n_seen, self.recent)} recent rows, {self.min_rows} needed each"
            )
        before, after, info = self.periods()
        seed = self.seed + self._answers
        self._answers += 1
        result = attribute_change(
            self.graph,
            before,
            after,
            target,
            statistic=statistic,
            rng=np.random.default_rng(seed),
            **kwargs,
        )
        result.extra["periods"] = info
        object.__setattr__(result, "seed", seed)
        return result

    # -- state (data only) --------------------------------------------------------------------

    def to_state(self) -> StateTree:
        """The tracker as a state tree (JSON scalars and arrays: a checkpoint of data, never code).

        Examples
        --------
        >>> g = CausalGraph([("db", "api")])
        >>> t = ChangeTracker(g, capacity=64, recent=32, min_rows=20)
        >>> for i in range(100):
        ...     t.learn_one({"db": i % 7, "api": i % 5}, float(i))
        >>> twin = ChangeTracker(g, capacity=64, recent=32, min_rows=20)
        >>> twin.load_state(t.to_state())
        >>> twin.why_changed("api").to_dict() == t.why_changed("api").to_dict()
        True
        """
        return {
            "nodes": list(self.graph.nodes),
            "mode": self.mode,
            "n_ref": self._n_ref,
            "n_seen": self._n_seen,
            "answers": self._answers,
            "rng": rng_to_state(self._rng),
            "ref": self._ref,
            "ref_ts": self._ref_ts,
            "rec": self._rec,
            "rec_ts": self._rec_ts,
        }

    def load_state(self, state: StateTree) -> None:
        """Restore what :meth:`to_state` gave (same graph and sizes).

        Raises
        ------
        StateError
            For another graph, other sizes, or a tree this class did not write.
        """
        if get_list(state, "nodes") != list(self.graph.nodes):
            raise StateError("nodes: the change reference is of another graph")
        mode = get_str(state, "mode")
        if mode not in MODES:
            raise StateError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        d = len(self.graph)
        ref = get_array(state, "ref", np.float64, (self.capacity, d))
        ref_ts = get_array(state, "ref_ts", np.float64, (self.capacity,))
        rec = get_array(state, "rec", np.float64, (self.recent, d))
        rec_ts = get_array(state, "rec_ts", np.float64, (self.recent,))
        n_ref = get_int(state, "n_ref", low=0)
        if n_ref > self.capacity:
            raise StateError(f"n_ref: more rows than the capacity {self.capacity}")
        self._rng = rng_from_state(get_tree(state, "rng"))
        self.mode = mode
        self._n_ref = n_ref
        self._n_seen = get_int(state, "n_seen", low=0)
        self._answers = get_int(state, "answers", low=0)
        self._ref, self._ref_ts = ref.copy(), ref_ts.copy()
        self._rec, self._rec_ts = rec.copy(), rec_ts.copy()


def _describe(kind: str, ts: FloatArray, mode: str | None) -> dict[str, Any]:
    ok = ts[np.isfinite(ts)]
    doc: dict[str, Any] = {
        "kind": kind,
        "rows": int(ts.size),
        "from": float(ok.min()) if ok.size else None,
        "to": float(ok.max()) if ok.size else None,
    }
    if mode is not None:
        doc["mode"] = mode
    return doc

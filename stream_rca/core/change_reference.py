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

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rca.core.change import ChangeResult, attribute_change
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

    def to_state(self) -> tuple[dict[str, Any], dict[str, FloatArray]]:
        """JSON-ready scalars and the arrays: a checkpoint of data, never code."""
        meta = {
            "mode": self.mode,
            "n_ref": self._n_ref,
            "n_seen": self._n_seen,
            "answers": self._answers,
            "rng": self._rng.bit_generator.state,
            "nodes": list(self.graph.nodes),
        }
        arrays = {
            "ref": self._ref,
            "ref_ts": self._ref_ts,
            "rec": self._rec,
            "rec_ts": self._rec_ts,
        }
        return meta, arrays

    def load_state(self, meta: Mapping[str, Any], arrays: Mapping[str, FloatArray]) -> None:
        """Restore what :meth:`to_state` gave (same graph and sizes, else ``ConfigError``)."""
        if list(meta.get("nodes", ())) != list(self.graph.nodes) or meta.get("mode") not in MODES:
            raise ConfigError("change tracker state: another graph, or an unknown mode")
        shapes = {"ref": self._ref.shape, "rec": self._rec.shape}
        for key, shape in shapes.items():
            if np.shape(arrays[key]) != shape:
                raise ConfigError(f"change tracker state: {key} has shape {np.shape(arrays[key])}")
        self.mode = str(meta["mode"])
        self._n_ref, self._n_seen = int(meta["n_ref"]), int(meta["n_seen"])
        self._answers = int(meta["answers"])
        self._rng.bit_generator.state = dict(meta["rng"])
        for key in ("ref", "ref_ts", "rec", "rec_ts"):
            getattr(self, f"_{key}")[...] = np.asarray(arrays[key], dtype=np.float64)


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

"""The learned models of one graph: mechanisms, noise models and the targets' marginals.

:class:`GraphModels` is the engine's numeric state. It predicts and scores against frozen
models and learns only when told to (:meth:`GraphModels.learn`), which the engine does at fixed
positions of the stream: that is what makes block processing equal to record-by-record
processing.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rca.core.checkpoint import StateError, StateTree, get_array, get_tree
from stream_rca.core.compiled import hold, learn_counts
from stream_rca.core.config import EngineConfig
from stream_rca.core.linear import LinearBank
from stream_rca.core.mechanisms import Regressor
from stream_rca.core.noise import NoiseBank

__all__ = ["GraphModels"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

MARGINAL_SIZE = 4
"""The targets' marginal samples hold this many times ``reservoir`` values."""
CAUTION = 0.25
"""Standard errors added to the tail shape of the trigger's marginal models."""

_SCALE_FLOOR = 1e-4
"""Least tail scale of a noise model, relative to the typical magnitude of the node's values:
a series that was constant in training (an availability of exactly 1) still gives finite,
ordered scores to later values."""


class GraphModels:
    """Mechanisms and noise models of every node of one graph structure.

    Parameters
    ----------
    parent_index
        Effective parents of each node (positions); marginalised nodes have none.
    names
        Node names by position (river mechanisms take dict features).
    river
        Per position, a river regressor used instead of the linear mechanism.
    targets
        Positions of the watched targets (their marginal distributions are modelled too).
    config
        The engine's parameters.
    """

    def __init__(
        self,
        parent_index: Sequence[IntArray],
        names: Sequence[str],
        river: Mapping[int, Regressor],
        targets: IntArray,
        config: EngineConfig,
    ) -> None:
        cfg = config
        n = len(parent_index)
        self.parent_index = list(parent_index)
        self.names = tuple(names)
        self.river = {j: m for j, m in river.items() if parent_index[j].size}
        members = [j for j in range(n) if j not in self.river]
        self.bank = LinearBank(parent_index, members, forgetting=cfg.forgetting, ridge=cfg.ridge)
        # the reservoirs' slot hash has a fixed salt: the learned state does not depend on the
        # seed, which only drives the attributions' Monte Carlo draws
        self.noise = NoiseBank(n, cfg.reservoir, seed=0)
        self.targets = targets
        # the trigger's distributions: few rows, so a larger sample for the far tail
        self.marginal = NoiseBank(
            len(targets), MARGINAL_SIZE * cfg.reservoir, caution=CAUTION, seed=1
        )
        self.fitted = np.zeros(n, dtype=np.int64)
        self.min_fit = np.array(
            [2 * p.size + 2 if p.size else 0 for p in parent_index], dtype=np.intp
        )
        self.n_parents = np.array([p.size for p in parent_index])
        self.has_parents = self.n_parents > 0
        self.edge_src = np.array([p for j in range(n) for p in parent_index[j]], dtype=np.intp)
        self.edge_dst = np.array([j for j in range(n) for _ in parent_index[j]], dtype=np.intp)
        self._abs_sum = np.zeros(n)
        self._abs_n = np.zeros(n)
        # Beside each residual held by a linear mechanism's noise model: the node's value and
        # its parents' values (in the bank's edge-row layout), so the residuals are those of
        # the current mechanism after every learning step (see :meth:`_refresh`).
        self.refresh = cfg.refresh_residuals
        self.predictive = cfg.predictive_scores
        keep = self.refresh
        self._usual: tuple[FloatArray, FloatArray] | None = None  # see moved()
        self._held_y = np.zeros((self.bank.ranked.size if keep else 0, cfg.reservoir))
        self._held_x = np.zeros((self.bank.sources.size if keep else 0, cfg.reservoir))

    # -- prediction ---------------------------------------------------------------------------

    def predict(self, x: FloatArray) -> FloatArray:
        """Predictions of every node for a block ``(B, nodes)``."""
        pred = self.bank.predict(x)
        for j, model in self.river.items():
            for b in range(x.shape[0]):
                pred[b, j] = float(model.predict_one(self.features(j, x[b])))
        return pred

    def spread(self, x: FloatArray) -> FloatArray:
        """Per node, how much wider than its noise the prediction error is at ``x`` (a block
        ``(B, nodes)``): :meth:`LinearBank.spread` for linear mechanisms, 1 for the others and
        with ``EngineConfig.predictive_scores`` off."""
        if not self.predictive:
            return np.ones(x.shape)
        return self.bank.spread(x)

    def predict_node(self, j: int, x: FloatArray) -> float:
        if j in self.river:
            return float(self.river[j].predict_one(self.features(j, x)))
        return self.bank.predict_node(j, x)

    def features(self, j: int, x: FloatArray) -> dict[Hashable, Any]:
        return {self.names[p]: float(x[p]) for p in self.parent_index[j]}

    def impute(self, x: FloatArray, present: BoolArray) -> FloatArray:
        """Fill missing values, in topological order, with prediction plus median noise."""
        if present.all():
            return x
        filled = x.copy()
        missing = np.flatnonzero(~present)
        medians = self.noise.median(missing)
        for j, med in zip(missing, medians, strict=True):
            filled[j] = self.predict_node(int(j), filled) + float(med)
        return filled

    def parents_present(self, present: BoolArray, tolerance: float) -> BoolArray:
        """Nodes whose share of missing parents is at most ``tolerance`` (and below 1)."""
        missing = np.bincount(
            self.edge_dst[~present[self.edge_src]], minlength=len(self.parent_index)
        )
        n_parents = np.maximum(self.n_parents, 1)
        out: BoolArray = (missing == 0) | (
            (missing <= tolerance * n_parents) & (missing < n_parents)
        )
        return out

    # -- learning -----------------------------------------------------------------------------

    def learn(
        self,
        x: FloatArray,
        resid: FloatArray,
        learn: BoolArray,
        t_vals: FloatArray,
        t_learn: BoolArray,
        noise_learn: BoolArray | None = None,
    ) -> None:
        """Learn a block ``(B, nodes)`` where ``learn`` is true, in row order, then refit.

        ``noise_learn`` (default ``learn``) gates the noise reservoirs apart from the
        mechanisms: a residual too rare to update a mechanism with may still belong in the
        sample of the noise's tail. After the mechanisms learn, the residuals held for every
        linear mechanism are recomputed from the snapshot values kept beside them
        (``refresh_residuals``), so each such noise model is the sample of its current
        mechanism's residuals.
        """
        noise_learn = learn if noise_learn is None else noise_learn
        self._usual = None
        # counts, and the residuals that enter the noise models (once a node's mechanism has
        # learned enough, row by row); the typical magnitude of each node's values floors
        # its tail scales
        into_noise, min_scale = learn_counts(
            x,
            learn,
            noise_learn,
            (self.min_fit, self.has_parents, _SCALE_FLOOR),
            (self.fitted, self._abs_sum, self._abs_n),
        )
        self.bank.learn_many(x, learn)
        for j, model in self.river.items():
            for b in np.flatnonzero(learn[:, j]):
                model.learn_one(self.features(j, x[b]), float(x[b, j]))
        held = self.noise.learn_many(resid, into_noise)
        self._hold(x, *held)
        self.marginal.learn_many(t_vals, t_learn)
        self.noise.min_scale = min_scale
        self.marginal.min_scale = min_scale[self.targets]
        moved = self._refresh()
        stale = self.noise.count != self.noise.fitted_count
        stale[moved] = True
        self.noise.refit(np.flatnonzero(stale))
        self.marginal.refit()

    def _hold(self, x: FloatArray, step: IntArray, rows: IntArray, slots: IntArray) -> None:
        """Keep each held residual's snapshot values (the node's and its parents')."""
        if not self.refresh:
            return
        bank = self.bank
        layout = (bank.rank, bank.degree, bank.offsets, bank.sources)
        hold(x, (step, rows, slots), layout, self._held_y, self._held_x)

    def _refresh(self) -> IntArray:
        """Recompute the held residuals of every linear mechanism from the values kept.

        A mechanism that learns moves (its running means above all): residuals held from
        earlier snapshots were computed with the older fit, so without this a series whose
        level drifts slowly (an availability whose rare drops age out of the running means)
        finds its current residuals at the edge of the sample it is scored against. The
        recomputed residuals are the floats a snapshot with the same values gets now (one
        formula: :meth:`LinearBank.predict_rows`), so values tied in the data stay tied.
        Returns the nodes whose residuals were recomputed.
        """
        ranked = self.bank.ranked
        if not (ranked.size and self.refresh):
            return np.zeros(0, dtype=np.intp)
        filled = self.noise.filled[ranked]
        self.bank.refresh_residuals((self._held_x, self._held_y), filled, self.noise.samples)
        out: IntArray = ranked[filled > 0]
        return out

    def moved(self, nodes: IntArray, x: FloatArray, level: float) -> BoolArray:
        """Which of ``nodes`` took a value at ``x`` far from the values it usually takes.

        Marginal, not conditional: ``|x - median| > level * MAD`` over the node's own values
        that its noise model holds (kept beside the residuals of a linear mechanism with
        parents; a node without parents is its own residual); the standard deviation where
        the MAD is 0. A node the fault moved through a well-fitted mechanism is calm by its
        conditional score but moved here: the ranking reads such chains as the way a fault
        travelled (:func:`~stream_rca.core.ranking.rank_causes`). False where no values are
        held (``refresh_residuals`` off, nonlinear mechanisms, nothing learned yet). The
        medians and deviations are computed once per learning step.
        """
        if self._usual is None:
            self._usual = self._usual_values()
        med, scale = self._usual
        rows = np.asarray(nodes, dtype=np.intp)
        with np.errstate(invalid="ignore"):
            out: BoolArray = np.abs(x[rows] - med[rows]) > level * scale[rows]
        return out & (scale[rows] > 0)

    def _usual_values(self) -> tuple[FloatArray, FloatArray]:
        """Per node, a median of its held values (the upper middle one) and their median
        absolute deviation (their std where it is 0); NaN and 0 where fewer than 2 are held."""
        n = len(self.parent_index)
        bank, filled = self.bank, self.noise.filled
        med, scale = np.full(n, np.nan), np.zeros(n)
        source = np.full(n, -1)  # 0: the noise sample is the values; 1: the kept values
        source[~self.has_parents] = 0
        if self.refresh and bank.ranked.size:
            source[bank.ranked] = 1
        source[list(self.river)] = -1
        source[filled < 2] = -1
        for k in np.unique(filled[source >= 0]).tolist():  # one size after the warm-up
            rows = np.flatnonzero((source >= 0) & (filled == k))
            values = np.where(
                (source[rows] == 0)[:, None],
                self.noise.samples[rows, :k],
                self._held_y[np.maximum(bank.rank[rows], 0), :k] if self._held_y.size else 0.0,
            )
            middle = np.partition(values, k // 2, axis=1)[:, k // 2]
            spread = np.partition(np.abs(values - middle[:, None]), k // 2, axis=1)[:, k // 2]
            med[rows] = middle
            scale[rows] = np.where(spread > 0, spread, values.std(axis=1))
        return med, scale

    def unidentified_edges(
        self, children: IntArray, x: FloatArray, min_support: int
    ) -> list[tuple[int, int]]:
        """Edges ``(parent, child)`` into ``children`` that the held snapshots cannot identify
        at the values ``x``.

        A linear mechanism's coefficient on a parent is learnt from how the parent varied: a
        parent that took fewer than ``min_support`` values away from its middle one among the
        snapshots its child's noise model holds (a callee that never failed, or failed once)
        leaves it unknown, and a value of that parent outside every held one is then
        extrapolated with a coefficient the data did not give (0 for a constant parent, one
        point's slope for a parent that moved once). Such an edge is reported here; the
        ranking treats the contributions that flow through it as unresolved
        (:func:`~stream_rca.core.ranking.rank_causes`). Nothing is reported without kept
        values (``refresh_residuals`` off) or for nonlinear mechanisms.
        """
        out: list[tuple[int, int]] = []
        if not self.refresh:
            return out
        bank = self.bank
        kids = np.asarray(children, dtype=np.intp)
        kids = kids[(bank.rank[kids] >= 0) & (self.noise.filled[kids] > 0)]
        if kids.size == 0:
            return out
        # every edge into the children at once: its kept rows, the parent, the filled slots
        rank = bank.rank[kids]
        degree = bank.degree[rank]
        rows = np.concatenate([bank.offsets[:d] + r for r, d in zip(rank, degree, strict=True)])
        child = np.repeat(kids, degree)
        filled = self.noise.filled[child]
        held = self._held_x[rows, : int(filled.max())]
        if int(filled.min()) == held.shape[1]:
            lo, hi = held.min(axis=1), held.max(axis=1)
        else:
            unfilled = np.arange(held.shape[1])[None, :] >= filled[:, None]
            lo = np.where(unfilled, np.inf, held).min(axis=1)
            hi = np.where(unfilled, -np.inf, held).max(axis=1)
        at = x[bank.sources[rows]]
        tol = 1e-9 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
        for e in np.flatnonzero((at > hi + tol) | (at < lo - tol)):  # beyond every held value
            values = held[e, : filled[e]]
            middle = np.partition(values, values.size // 2)[values.size // 2]  # a median
            support = np.count_nonzero(np.abs(values - middle) > tol[e])
            if support < min_support:
                out.append((int(bank.sources[rows[e]]), int(child[e])))
        return out

    def held_values(self, j: int) -> tuple[FloatArray, FloatArray]:
        """Node ``j``'s kept snapshot values: its own ``(capacity,)`` and its parents'
        ``(k, capacity)`` in the order of ``parent_index[j]`` (see :meth:`set_held_values`)."""
        return self._held_y[self._held_rank(j)].copy(), self._held_x[self._held_rows(j)].copy()

    def set_held_values(self, j: int, own: FloatArray, parents: FloatArray) -> None:
        """Give node ``j`` the kept values of :meth:`held_values` (same parent order)."""
        rows = self._held_rows(j)
        if parents.shape != (rows.size, self._held_y.shape[1]):
            raise ValueError(f"node {j}: expected {rows.size} parents' values, got {parents.shape}")
        self._held_y[self._held_rank(j)] = own
        self._held_x[rows] = parents
        self._usual = None

    def _held_rank(self, j: int) -> int:
        rank = int(self.bank.rank[j])
        if rank < 0 or not self.refresh:
            raise KeyError(
                f"node position {j} keeps no values (no linear mechanism with parents, "
                "or refresh_residuals off)"
            )
        return rank

    def _held_rows(self, j: int) -> IntArray:
        rank = self._held_rank(j)
        rows: IntArray = self.bank.offsets[: self.bank.degree[rank]] + rank
        return rows

    def nbytes(self) -> int:
        held = self._held_y.nbytes + self._held_x.nbytes
        return self.bank.nbytes() + self.noise.nbytes() + self.marginal.nbytes() + held

    def to_state(self) -> StateTree:
        """The learned state as data (river mechanisms cannot be: checkpoints refuse them)."""
        if self.river:
            raise StateError("river mechanisms cannot be checkpointed as data")
        return {
            "bank": self.bank.to_state(),
            "noise": self.noise.to_state(),
            "marginal": self.marginal.to_state(),
            "fitted": self.fitted,
            "abs_sum": self._abs_sum,
            "abs_n": self._abs_n,
            "held_y": self._held_y,
            "held_x": self._held_x,
        }

    def load_state(self, state: StateTree) -> None:
        """Take the learned state of :meth:`to_state` (this object fixes the structure)."""
        n = len(self.parent_index)
        bank = LinearBank.from_state(get_tree(state, "bank"))
        noise = NoiseBank.from_state(get_tree(state, "noise"))
        marginal = NoiseBank.from_state(get_tree(state, "marginal"))
        if bank.n_nodes != n or noise.n_nodes != n or marginal.n_nodes != len(self.targets):
            raise StateError("models: sizes do not match the graph")
        if not np.array_equal(bank.members, self.bank.members):
            raise StateError("bank: modelled nodes do not match the graph")
        mine, theirs = self.bank.to_state(), get_tree(state, "bank")
        for key in ("parent_counts", "parents"):
            if not np.array_equal(np.asarray(mine[key]), np.asarray(theirs[key])):
                raise StateError("bank: parents do not match the graph's structure")
        self.bank, self.noise, self.marginal = bank, noise, marginal
        self._usual = None
        self.fitted = get_array(state, "fitted", np.int64, (n,)).copy()
        self._abs_sum = get_array(state, "abs_sum", np.float64, (n,)).copy()
        self._abs_n = get_array(state, "abs_n", np.float64, (n,)).copy()
        self._held_y = get_array(state, "held_y", np.float64, self._held_y.shape).copy()
        self._held_x = get_array(state, "held_x", np.float64, self._held_x.shape).copy()

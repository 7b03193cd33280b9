"""Online standardised linear regression for many nodes at once.

Each node ``j`` with parents ``P`` keeps exponentially weighted sufficient statistics (weight,
means, centred scatter matrices) of its parents and itself. The coefficients are those of ridge
regression on standardised parents, solved from the statistics, so they equal the batch weighted
least-squares solution exactly (``forgetting=0`` and ``ridge=0`` give ordinary least squares).

Nodes are grouped by in-degree, rounded up to a power of two (missing parents point at a constant
zero, whose coefficient the ridge keeps at 0), so that one snapshot updates every node with a few
numpy operations per group, whatever the number of nodes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from river import base

from stream_rca.core.checkpoint import (
    StateError,
    StateTree,
    get_array,
    get_bool,
    get_float,
    get_list,
)
from stream_rca.core.compiled import (
    learn_linear,
    predict_ranked,
    refresh_ranked,
    ridge_solve,
    spread_rows,
    spread_stats,
)

__all__ = ["LinearBank", "OnlineLinearRegression"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_STATS = ("w", "mx", "my", "sxx", "sxy", "syy", "coef")  # a group's checkpointed statistics
_COMPILED_SOLVE = 16  # parents up to which a compiled loop solves (beyond: LAPACK, blocked)
_ONE_GROUP_BUDGET = 1 << 14  # padded scatter-matrix entries below which one group is cheaper
SPREAD_FROM = 0.02
"""Prediction variance (in noise variances) below which :meth:`LinearBank.spread` says 1."""


class _Group:
    """The statistics of all member nodes with ``k`` parents."""

    __slots__ = ("coef", "k", "members", "mx", "my", "parents", "sxx", "sxy", "syy", "w")

    def __init__(self, members: IntArray, parents: IntArray, k: IntArray) -> None:
        g, width = parents.shape
        self.members = members
        self.parents = parents
        self.k = k
        k = width
        self.w = np.zeros(g)
        self.mx = np.zeros((g, k))
        self.my = np.zeros(g)
        self.sxx = np.zeros((g, k, k))
        self.sxy = np.zeros((g, k))
        self.syy = np.zeros(g)
        self.coef = np.zeros((g, k))


class LinearBank:
    """Exponentially weighted least squares, vectorised over the nodes of a graph.

    Parameters
    ----------
    parent_index
        For every node (by position), the positions of its parents.
    members
        Positions of the nodes this bank models; default all. Nodes with no parents are
        modelled as ``f = 0`` (their noise is their value) but their mean is still tracked.
    forgetting
        Weight lost per update by past data: ``1 - forgetting`` is the decay factor, so about
        ``1 / forgetting`` recent snapshots dominate. 0 weighs all history equally.
    ridge
        Penalty on the standardised coefficients, relative to each parent's variance.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> bank = LinearBank([np.array([], dtype=int), np.array([0])], forgetting=0.0)
    >>> for _ in range(500):
    ...     a = rng.normal()
    ...     bank.learn(np.array([a, 2.0 * a + 1.0 + 0.1 * rng.normal()]))
    >>> weights, intercepts = bank.coefficients()
    >>> round(float(weights[1, 0]), 1), round(float(intercepts[1]), 1)
    (2.0, 1.0)
    """

    def __init__(
        self,
        parent_index: Sequence[IntArray],
        members: Sequence[int] | None = None,
        *,
        forgetting: float = 0.0,
        ridge: float = 1e-6,
    ) -> None:
        if not 0.0 <= forgetting < 1.0:
            raise ValueError(f"forgetting must be in [0, 1), got {forgetting}")
        if ridge < 0.0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        self.n_nodes = len(parent_index)
        self.forgetting = forgetting
        self.ridge = ridge
        nodes = list(range(self.n_nodes) if members is None else members)
        widest = max((len(parent_index[j]) for j in nodes), default=0)
        n_inner = sum(1 for j in nodes if len(parent_index[j]))
        # Small graphs: one padded group for every node with parents (numpy's per-call overhead
        # dominates there); large ones: in-degrees rounded up to powers of two.
        one_group = n_inner * widest * widest <= _ONE_GROUP_BUDGET
        by_width: dict[int, list[int]] = {}
        for j in nodes:
            k = len(parent_index[j])
            width = 0 if k == 0 else widest if one_group else 1 << (k - 1).bit_length()
            by_width.setdefault(width, []).append(j)
        self._groups: dict[int, _Group] = {}
        dummy = self.n_nodes  # position of the constant 0 appended to every snapshot
        for width, js in sorted(by_width.items()):
            mem = np.array(js, dtype=np.intp)
            par = np.full((len(js), width), dummy, dtype=np.intp)
            for row, j in enumerate(js):
                par[row, : len(parent_index[j])] = parent_index[j]
            ks = np.array([len(parent_index[j]) for j in js], dtype=np.intp)
            self._groups[width] = _Group(mem, par, ks)
        self._where = {
            int(j): (width, row)
            for width, g in self._groups.items()
            for row, j in enumerate(g.members)
        }
        self.members: IntArray = np.sort(np.concatenate([g.members for g in self._groups.values()]))
        # Members with parents ("inner"), ranked by in-degree, most parents first; a parent
        # edge's row is ``offset[k] + rank`` for the k-th parent (constructor order), so the
        # k-th parents of all nodes with more than k parents are one contiguous block of rows.
        # Predictions are computed in this layout only (:meth:`predict_rows`), for snapshots
        # and for values kept elsewhere alike: the same floats for the same inputs.
        inner = np.array([j for j in self.members if len(parent_index[j])], dtype=np.intp)
        degree = np.array([len(parent_index[j]) for j in inner], dtype=np.intp)
        order = np.argsort(-degree, kind="stable")
        self.ranked: IntArray = inner[order]
        """Members with parents, most parents first (the rows of :meth:`predict_rows`)."""
        self.degree: IntArray = degree[order]
        more = np.bincount(self.degree, minlength=1)[::-1].cumsum()[::-1]  # > k parents
        self.blocks: list[int] = [int(w) for w in more[1:]]
        """Per k, how many ranked nodes have more than k parents (a prefix of the ranks)."""
        self.offsets: IntArray = np.concatenate([[0], np.cumsum(self.blocks)]).astype(np.intp)
        self.rank: IntArray = np.full(self.n_nodes, -1, dtype=np.intp)
        """Each node's rank in :attr:`ranked` (-1: no parents, or not a member)."""
        self.rank[self.ranked] = np.arange(self.ranked.size)
        self.sources: IntArray = np.empty(int(degree.sum()), dtype=np.intp)
        """The parent (cause) of every edge row."""
        for r, j in enumerate(self.ranked):
            self.sources[self.offsets[: self.degree[r]] + r] = parent_index[j]
        self._row_map: dict[int, tuple[IntArray, IntArray, IntArray, IntArray]] = {}
        for width, grp in self._groups.items():
            if width == 0:
                continue
            g_rows = np.repeat(np.arange(grp.members.size), grp.k)
            cols = np.concatenate([np.arange(k) for k in grp.k]).astype(np.intp)
            ranks = self.rank[grp.members]
            self._row_map[width] = (g_rows, cols, self.offsets[cols] + ranks[g_rows], ranks)
        self._ranked_stats: tuple[FloatArray, FloatArray, FloatArray] | None = None
        self._spread_stats: list[tuple[_Group, FloatArray, FloatArray, FloatArray]] | None = None
        self._stale = False

    # -- learning -----------------------------------------------------------------------------

    def learn(self, x: FloatArray, mask: BoolArray | None = None) -> None:
        """Update the members (where ``mask`` is true) with the snapshot ``x`` (all nodes)."""
        self.learn_many(x[None, :], None if mask is None else mask[None, :])

    def learn_many(self, x: FloatArray, mask: BoolArray | None = None) -> None:
        """Update with a block of snapshots ``x`` of shape ``(B, nodes)``, in row order.

        The same statistics as ``B`` calls of :meth:`learn`, to round-off: the block's weighted
        moments are merged into the decayed ones (Chan et al.'s parallel update), in one
        compiled loop over the nodes (:func:`~stream_rca.core.compiled.learn_linear`).
        """
        gamma = 1.0 - self.forgetting
        x = np.ascontiguousarray(x, dtype=np.float64)
        m = np.ones(x.shape, dtype=bool) if mask is None else np.ascontiguousarray(mask)
        for grp in self._groups.values():
            stats = (grp.w, grp.mx, grp.my, grp.sxx, grp.sxy, grp.syy)
            learn_linear(x, m, grp.members, grp.parents, gamma, stats)
        self._stale = True
        self._ranked_stats = None
        self._spread_stats = None

    def _solve(self) -> None:
        if not self._stale:
            return
        for k, grp in self._groups.items():
            if k == 0:
                continue
            if k <= _COMPILED_SOLVE:
                grp.coef = ridge_solve(grp.sxx, grp.sxy, self.ridge)
                continue
            diag = np.einsum("gii->gi", grp.sxx)
            scale = diag.mean(axis=1, keepdims=True) + 1e-300
            a = grp.sxx.copy()
            idx = np.arange(k)
            # Standardised ridge: the penalty of each coefficient scales with its parent's
            # variance; a tiny absolute term keeps constant parents solvable (coefficient 0).
            a[:, idx, idx] += self.ridge * diag + 1e-10 * scale
            grp.coef = np.asarray(
                np.linalg.solve(a, grp.sxy[:, :, None])[:, :, 0], dtype=np.float64
            )
        self._stale = False

    # -- prediction ---------------------------------------------------------------------------

    def predict(self, x: FloatArray) -> FloatArray:
        """Predictions ``f_j(parents)`` of every member from snapshots ``x`` (all nodes).

        ``x`` is one snapshot ``(nodes,)`` or a block ``(B, nodes)``; non-members are NaN.
        A row's predictions do not depend on the block it comes in (elementwise operations
        only: see :meth:`predict_rows`).
        """
        block = np.atleast_2d(x)
        out = np.full(block.shape, np.nan)
        if 0 in self._groups:
            out[:, self._groups[0].members] = 0.0
        if self.ranked.size:
            out[:, self.ranked] = self.predict_rows(block[:, self.sources].T).T
        return out if x.ndim == 2 else out[0]

    def spread(self, x: FloatArray) -> FloatArray:
        """How much wider each member's prediction error is than its noise, at snapshots ``x``.

        A mechanism learned from ``n`` snapshots predicts with an error of its own: with
        parents far from where they were learned (a parent 100 standard deviations out under a
        fault), a coefficient off by its standard error moves the prediction by several noise
        standard deviations, and the residual then blames the child for its parent's fault.
        Least squares gives that error's variance as ``h`` noise variances, ``h = (1 + d'
        C^-1 d) / n_eff`` for parents ``d`` away from their means with covariance ``C``
        (the leverage of a new point); ``n_eff = (sum w)^2 / sum w^2`` is the effective sample
        of the forgetting weights (about ``2 / forgetting`` in the steady state). Returns
        ``sqrt(1 + h)`` per node, ``(B, nodes)`` or ``(nodes,)`` like ``x``; 1 for nodes
        without parents or not members, and wherever ``h <= SPREAD_FROM`` (the noise widened
        by less than 1 %: at normal parent values ``h`` is about ``(parents + 1) / n_eff``, and
        a residual scored as it is stays tied with the held residuals it equals, as those of a
        series stuck at one value do). Parents constant in the learned data (no variance) add
        nothing: their coefficient is not identified at all (the ranking treats those edges
        apart).
        """
        block = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
        out = np.ones(block.shape)
        for grp, inv, first, gain in self._spread_terms():
            rows = (grp.members, grp.parents, grp.k, grp.mx)
            spread_rows(block, rows, (inv, first, gain), SPREAD_FROM, out)
        return out if x.ndim == 2 else out[0]

    def _spread_terms(self) -> list[tuple[_Group, FloatArray, FloatArray, FloatArray]]:
        """Per group: the inverse scatter matrices and the terms ``h = base + gain * d'inv d``."""
        if self._spread_stats is not None:
            return self._spread_stats
        stats = []
        for width, grp in self._groups.items():
            if width == 0:
                continue
            inv, first, gain = spread_stats(grp.sxx, grp.k, grp.w, self.ridge, self.forgetting)
            stats.append((grp, inv, first, gain))
        self._spread_stats = stats
        return stats

    def predict_node(self, j: int, x: FloatArray) -> float:
        """Prediction of one member ``j`` (``x`` may be partly filled: only parents are read).

        The same floats as :meth:`predict` (the same operations, term by term)."""
        grp, _ = self._locate(j)
        if grp.parents.shape[1] == 0:
            return 0.0
        coef, mx, my = self._stats_by_row()
        r = int(self.rank[j])
        value = float(my[r])
        for row in self.offsets[: self.degree[r]] + r:
            value += (float(x[self.sources[row]]) - float(mx[row])) * float(coef[row])
        return value

    def predict_samples(self, j: int, parent_values: FloatArray) -> FloatArray:
        """Vectorised prediction of member ``j`` for rows of parent values ``(..., k)``."""
        grp, row = self._locate(j)
        k = int(grp.k[row])
        if k == 0:
            return np.zeros(parent_values.shape[:-1])
        self._solve()
        result: FloatArray = grp.my[row] + (parent_values - grp.mx[row, :k]) @ grp.coef[row, :k]
        return result

    def _stats_by_row(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Each edge row's coefficient and parent mean, each ranked node's own mean."""
        self._solve()
        if self._ranked_stats is None:
            coef = np.empty(self.sources.size)
            mx = np.empty(self.sources.size)
            my = np.empty(self.ranked.size)
            for width, (g_rows, cols, rows, ranks) in self._row_map.items():
                grp = self._groups[width]
                coef[rows] = grp.coef[g_rows, cols]
                mx[rows] = grp.mx[g_rows, cols]
                my[ranks] = grp.my
            self._ranked_stats = (coef, mx, my)
        return self._ranked_stats

    def predict_rows(self, parents: FloatArray) -> FloatArray:
        """Predictions of the ranked nodes from their parents' values laid out by edge row.

        ``parents`` has shape ``(edge rows, S)`` (row ``offsets[k] + rank``: the k-th parent of
        the node of that rank); returns ``(len(ranked), S)``. Every prediction is
        ``my + sum_k (x_k - mx_k) * coef_k``, the terms added in parent order: the one formula
        behind :meth:`predict` and :meth:`predict_node`, so a value recomputed from kept
        inputs equals the one computed from the snapshot, to the bit (one compiled loop:
        :func:`~stream_rca.core.compiled.predict_ranked`).
        """
        coef, mx, my = self._stats_by_row()
        out = np.empty((self.ranked.size, parents.shape[1]))
        predict_ranked(parents, coef, mx, my, self.offsets, self.degree, out)
        return out

    def refresh_residuals(
        self, held: tuple[FloatArray, FloatArray], filled: IntArray, samples: FloatArray
    ) -> None:
        """Write each ranked node's residuals of its kept values into its row of ``samples``.

        ``held`` is ``(parents, values)``: the kept parents' values by edge row (as
        :meth:`predict_rows` reads them) and the nodes' own by rank; the first ``filled[r]``
        slots of row ``ranked[r]`` become ``values - predict_rows(parents)``, the same floats,
        in one compiled loop (:func:`~stream_rca.core.compiled.refresh_ranked`).
        """
        stats = self._stats_by_row()
        layout = (self.offsets, self.degree, self.ranked)
        refresh_ranked(held, stats, layout, filled, samples)

    def coefficients(self) -> tuple[FloatArray, FloatArray]:
        """The model as ``f(x) = B @ x + c``: ``B[j, p]`` is the weight of parent p on node j."""
        self._solve()
        b = np.zeros((self.n_nodes, self.n_nodes))
        c = np.zeros(self.n_nodes)
        for k, grp in self._groups.items():
            if k == 0:
                continue
            rows = np.repeat(grp.members, k)
            cols = grp.parents.ravel()
            real = cols < self.n_nodes
            b[rows[real], cols[real]] = grp.coef.ravel()[real]
            c[grp.members] = grp.my - np.einsum("gk,gk->g", grp.mx, grp.coef)
        return b, c

    def mean(self) -> FloatArray:
        """Weighted running mean of every member's own value (NaN for non-members)."""
        out = np.full(self.n_nodes, np.nan)
        for grp in self._groups.values():
            out[grp.members] = grp.my
        return out

    def weight(self) -> FloatArray:
        """Effective number of samples behind every member (NaN for non-members)."""
        out = np.full(self.n_nodes, np.nan)
        for grp in self._groups.values():
            out[grp.members] = grp.w
        return out

    def node_statistics(self, j: int) -> dict[str, FloatArray]:
        """The statistics of member ``j`` alone, its parents in the constructor's order.

        ``w``, ``my`` and ``syy`` are 0-d arrays; ``mx``, ``sxy`` and ``coef`` have one entry
        per parent, ``sxx`` one row and column. :meth:`set_node_statistics` takes them back
        (into this bank or another with the same parents for ``j``, in any order).
        """
        self._solve()
        grp, row = self._locate(j)
        k = int(grp.k[row])
        return {
            "w": np.array(grp.w[row]),
            "my": np.array(grp.my[row]),
            "syy": np.array(grp.syy[row]),
            "mx": grp.mx[row, :k].copy(),
            "sxy": grp.sxy[row, :k].copy(),
            "coef": grp.coef[row, :k].copy(),
            "sxx": grp.sxx[row, :k, :k].copy(),
        }

    def set_node_statistics(self, j: int, stats: dict[str, FloatArray]) -> None:
        """Give member ``j`` the statistics of :meth:`node_statistics` (same parent order)."""
        grp, row = self._locate(j)
        k = int(grp.k[row])
        if stats["mx"].shape != (k,):
            raise ValueError(f"node {j} has {k} parents, the statistics {stats['mx'].shape[0]}")
        grp.w[row], grp.my[row], grp.syy[row] = stats["w"], stats["my"], stats["syy"]
        grp.mx[row, :k], grp.sxy[row, :k] = stats["mx"], stats["sxy"]
        grp.coef[row, :k], grp.sxx[row, :k, :k] = stats["coef"], stats["sxx"]
        self._ranked_stats = None
        self._spread_stats = None

    def _locate(self, j: int) -> tuple[_Group, int]:
        try:
            width, row = self._where[j]
        except KeyError:
            raise KeyError(f"node position {j} is not modelled by this bank") from None
        return self._groups[width], row

    def nbytes(self) -> int:
        """Memory held by the statistics, in bytes."""
        total = 0
        for grp in self._groups.values():
            for name in ("coef", "members", "mx", "my", "parents", "sxx", "sxy", "syy", "w"):
                arr = getattr(grp, name)
                total += int(arr.nbytes)
        return total

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def to_state(self) -> StateTree:
        """The bank as a state tree: its structure and each group's statistics.

        Examples
        --------
        >>> import numpy as np
        >>> bank = LinearBank([np.array([], dtype=np.intp), np.array([0])])
        >>> bank.learn(np.array([1.0, 2.0]))
        >>> twin = LinearBank.from_state(bank.to_state())
        >>> bool(np.array_equal(twin.mean(), bank.mean()))
        True
        """
        lengths = [0] * self.n_nodes
        flat: list[int] = []
        for grp in self._groups.values():
            for row, j in enumerate(grp.members):
                lengths[int(j)] = int(grp.k[row])
        for j in range(self.n_nodes):
            if lengths[j]:
                grp, row = self._locate(j)
                flat.extend(int(p) for p in grp.parents[row, : lengths[j]])
        return {
            "n_nodes": self.n_nodes,
            "forgetting": self.forgetting,
            "ridge": self.ridge,
            "members": self.members.astype(np.int64),
            "parent_counts": np.array(lengths, dtype=np.int64),
            "parents": np.array(flat, dtype=np.int64),
            "stale": self._stale,
            "groups": [
                {name: getattr(grp, name) for name in _STATS}
                for _, grp in sorted(self._groups.items())
            ],
        }

    @classmethod
    def from_state(cls, state: StateTree) -> LinearBank:
        """Rebuild a bank from :meth:`to_state`; :class:`StateError` for a bad tree."""
        counts = get_array(state, "parent_counts", np.int64, (None,))
        n = counts.size
        members = get_array(state, "members", np.int64, (None,))
        parents = get_array(state, "parents", np.int64, (int(counts.sum()),))
        if (counts < 0).any() or ((parents < 0) | (parents >= n)).any():
            raise StateError("parents: positions out of range")
        if ((members < 0) | (members >= n)).any() or np.unique(members).size != members.size:
            raise StateError("members: positions out of range or repeated")
        ends = np.cumsum(counts)
        starts = ends - counts
        parent_index = [parents[a:e].astype(np.intp) for a, e in zip(starts, ends, strict=True)]
        try:
            bank = cls(
                parent_index,
                [int(j) for j in members],
                forgetting=get_float(state, "forgetting"),
                ridge=get_float(state, "ridge"),
            )
        except ValueError as exc:
            raise StateError(str(exc)) from None
        groups = get_list(state, "groups")
        if len(groups) != len(bank._groups):
            raise StateError(f"groups: expected {len(bank._groups)}, got {len(groups)}")
        for (_, grp), stats in zip(sorted(bank._groups.items()), groups, strict=True):
            for name in _STATS:
                want = getattr(grp, name)
                setattr(grp, name, get_array(stats, name, np.float64, want.shape))
        bank._stale = get_bool(state, "stale")
        return bank


class OnlineLinearRegression(base.Regressor):
    """The engine's default mechanism as a river regressor, for use on its own.

    Exact exponentially weighted standardised ridge regression on dict features. The feature
    names are fixed by the first sample learned.

    Parameters
    ----------
    forgetting
        As in :class:`LinearBank`.
    ridge
        As in :class:`LinearBank`.

    Examples
    --------
    >>> model = OnlineLinearRegression()
    >>> for i in range(100):
    ...     x = {"a": float(i % 7), "b": float(i % 5)}
    ...     model.learn_one(x, 3.0 * x["a"] - x["b"] + 2.0)
    >>> round(model.predict_one({"a": 1.0, "b": 1.0}), 6)
    4.0
    """

    def __init__(self, forgetting: float = 0.0, ridge: float = 1e-9) -> None:
        self.forgetting = forgetting
        self.ridge = ridge
        self._features: tuple[Hashable, ...] | None = None
        self._bank: LinearBank | None = None

    def _ensure(self, x: Mapping[Hashable, Any]) -> LinearBank:
        if self._bank is None:
            self._features = tuple(x)
            k = len(self._features)
            parents = [np.array([], dtype=np.intp)] * k + [np.arange(k, dtype=np.intp)]
            self._bank = LinearBank(
                parents, members=[k], forgetting=self.forgetting, ridge=self.ridge
            )
        return self._bank

    def _vector(self, x: Mapping[Hashable, Any], y: float) -> FloatArray:
        assert self._features is not None
        return np.array([float(x.get(f, 0.0)) for f in self._features] + [y])

    def learn_one(self, x: dict[Hashable, Any], y: Any) -> None:
        bank = self._ensure(x)
        bank.learn(self._vector(x, float(y)))

    def predict_one(self, x: dict[Hashable, Any]) -> float:
        if self._bank is None:
            return 0.0
        assert self._features is not None
        return self._bank.predict_node(len(self._features), self._vector(x, 0.0))

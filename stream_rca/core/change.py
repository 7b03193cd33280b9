"""Why did the distribution change? Attribution of a target's change to changed mechanisms.

Budhathoki, Janzing, Bloebaum and Ng, "Why did the distribution change?" (AISTATS 2021), the
method of DoWhy-GCM's ``gcm.distribution_change``. Each node ``j`` of the target's ancestral
subgraph has an additive-noise mechanism ``x_j = a_j + b_j . parents_j + n_j`` in each period
(linear least squares, the empirical distribution of the residuals ``n_j``). For a set ``T`` of
nodes, ``v(T)`` is the target's statistic (mean or a quantile) when the nodes of ``T`` use
their mechanisms of the *after* period and all others those of *before*; the Shapley values of
``v`` share ``v(all) - v(empty)``, the change of the statistic between the two fitted models,
among the nodes (efficiency).

- **Players.** A node whose mechanism did not change is no player: a per-node test
  (:func:`mechanism_change_pvalues`) compares its mechanism between the periods, the p-values
  are corrected for the number of nodes (Benjamini-Hochberg), and a node that passes is fitted
  on both periods pooled, so it contributes exactly 0 (DoWhy-GCM does the same). Without the
  test (``alpha=None``) every node is a player.
- **Estimation.** ``v`` is evaluated by ancestral sampling with common random numbers: each
  node's noise is read from its empirical residual quantiles at the same stratified uniforms
  in every coalition and both periods (a quantile coupling), so the differences between
  coalitions carry little Monte Carlo noise. Exact Shapley values up to ``exact_max_players``
  players (all coalitions evaluated at once), antithetic permutations beyond
  (:func:`~stream_rca.core.shapley.estimate_shapley`).

Pure numpy: no I/O, no clock; randomness from the explicit generator given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rca.core.graph import CausalGraph
from stream_rca.core.shapley import estimate_shapley
from stream_rca.errors import ConfigError

__all__ = [
    "CHANGE_SCHEMA",
    "ChangeResult",
    "Mechanisms",
    "NodeChange",
    "attribute_change",
    "fit_mechanisms",
    "mechanism_change_pvalues",
    "parse_statistic",
    "statistic_of",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

CHANGE_SCHEMA = "stream-rca.change/v1"
_CELLS = 1 << 22  # samples x nodes x coalitions simulated at once (32 MiB of float64)
_MIN_ROWS = 3


# -- the statistic ----------------------------------------------------------------------------


def parse_statistic(text: str) -> float | None:
    """``"mean"`` is ``None``; ``"pNN"`` (``p50``, ``p99``, ``p99.9``) is the quantile ``NN/100``.

    >>> parse_statistic("mean"), parse_statistic("p99"), parse_statistic("p99.9")
    (None, 0.99, 0.999)
    """
    if text == "mean":
        return None
    m = re.fullmatch(r"p(\d{1,2}(?:\.\d+)?)", text)
    if m is None or not 0.0 < float(m.group(1)) < 100.0:
        raise ConfigError(f"statistic {text!r}: expected 'mean' or a percentile like 'p99'")
    return round(float(m.group(1)) / 100.0, 12)


def statistic_of(samples: FloatArray, statistic: str, axis: int = -1) -> FloatArray:
    """The statistic along ``axis``: the mean or a quantile (linear interpolation)."""
    q = parse_statistic(statistic)
    if q is None:
        return np.asarray(np.mean(samples, axis=axis), dtype=np.float64)
    return np.asarray(np.quantile(samples, q, axis=axis), dtype=np.float64)


# -- mechanisms of one period -----------------------------------------------------------------


@dataclass(frozen=True)
class Mechanisms:
    """Linear additive-noise mechanisms of the nodes of a subgraph, fitted on one period.

    ``nodes`` are in topological order; ``parents[k]`` indexes into ``nodes``. Node ``k`` is
    ``intercept[k] + values[parents[k]] @ coef[k] + noise`` with the noise drawn from the
    sorted residuals ``residuals[k]`` (the empirical distribution).
    """

    nodes: tuple[str, ...]
    parents: tuple[tuple[int, ...], ...]
    intercept: FloatArray
    coef: tuple[FloatArray, ...]
    residuals: tuple[FloatArray, ...]
    rows: int


def _design(x: FloatArray) -> FloatArray:
    return np.column_stack([np.ones(x.shape[0]), x])


def _least_squares(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Coefficients (intercept first) and residuals of ``y ~ 1 + x``."""
    design = _design(x)
    beta = np.asarray(np.linalg.lstsq(design, y, rcond=None)[0], dtype=np.float64)
    res: FloatArray = y - design @ beta
    return beta, res


def fit_mechanisms(
    graph: CausalGraph, nodes: Sequence[str], data: FloatArray, rows: int | None = None
) -> Mechanisms:
    """Fit a mechanism per node of ``nodes`` (columns of ``data``, topological order).

    Each node's parents must be among ``nodes`` (true of a target and its ancestors).
    """
    index = {n: k for k, n in enumerate(nodes)}
    parents = tuple(tuple(index[p] for p in graph.parents(n)) for n in nodes)
    intercept = np.empty(len(nodes))
    coef: list[FloatArray] = []
    residuals: list[FloatArray] = []
    for k, pa in enumerate(parents):
        beta, res = _least_squares(data[:, list(pa)], data[:, k])
        intercept[k] = beta[0]
        coef.append(beta[1:])
        residuals.append(np.sort(res))
    return Mechanisms(
        tuple(nodes), parents, intercept, tuple(coef), tuple(residuals), rows or data.shape[0]
    )


def _pooled(mech: Mechanisms, k: int, before: FloatArray, after: FloatArray) -> None:
    """Refit node ``k`` of ``mech`` on both periods pooled (in place of its own fit)."""
    data = np.vstack([before, after])
    beta, res = _least_squares(data[:, list(mech.parents[k])], data[:, k])
    mech.intercept[k] = beta[0]
    coef = list(mech.coef)
    residuals = list(mech.residuals)
    coef[k], residuals[k] = beta[1:], np.sort(res)
    object.__setattr__(mech, "coef", tuple(coef))
    object.__setattr__(mech, "residuals", tuple(residuals))


# -- did a mechanism change? ------------------------------------------------------------------


def _chi2_sf(x: float, k: int) -> float:
    """Upper tail of chi-square(k) (Wilson-Hilferty; good to ~1e-3 for k >= 1)."""
    if x <= 0:
        return 1.0
    z = ((x / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def _ks_pvalue(a: FloatArray, b: FloatArray) -> float:
    """Two-sample Kolmogorov-Smirnov p-value (asymptotic, Stephens' small-sample factor)."""
    grid = np.concatenate([a, b])
    fa = np.searchsorted(np.sort(a), grid, side="right") / a.size
    fb = np.searchsorted(np.sort(b), grid, side="right") / b.size
    d = float(np.max(np.abs(fa - fb)))
    ne = a.size * b.size / (a.size + b.size)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    if lam < 0.2:
        return 1.0
    j = np.arange(1, 101)
    p = 2.0 * float(np.sum((-1.0) ** (j - 1) * np.exp(-2.0 * (j * lam) ** 2)))
    return min(1.0, max(0.0, p))


def _node_pvalue(x0: FloatArray, y0: FloatArray, x1: FloatArray, y1: FloatArray) -> float:
    """P-value of "the same mechanism in both periods": Chow test and residual KS, Bonferroni."""
    _, r0 = _least_squares(x0, y0)
    _, r1 = _least_squares(x1, y1)
    _, rp = _least_squares(np.vstack([x0, x1]), np.concatenate([y0, y1]))
    k = x0.shape[1] + 1
    rss_sep = float(r0 @ r0 + r1 @ r1)
    rss_pooled = float(rp @ rp)
    dof = y0.size + y1.size - 2 * k
    if rss_sep <= 1e-12 * max(rss_pooled, 1e-300) or dof <= 0:
        p_fit = 0.0 if rss_pooled > 1e-12 else 1.0
    else:
        p_fit = _chi2_sf((rss_pooled - rss_sep) / (rss_sep / dof), k)
    p_noise = _ks_pvalue(rp[: y0.size], rp[y0.size :])
    return min(1.0, 2.0 * min(p_fit, p_noise))


def mechanism_change_pvalues(
    graph: CausalGraph, nodes: Sequence[str], before: FloatArray, after: FloatArray
) -> FloatArray:
    """Per node of ``nodes``, the p-value of "its mechanism is the same in both periods".

    Two tests given the parents, Bonferroni-combined: a Chow test (one regression for both
    periods against one per period; chi-square approximation) for a change of the function,
    and a two-sample Kolmogorov-Smirnov test of the two periods' residuals of the pooled fit
    for a change of the noise (the pooled fit keeps a lattice of counts where it was, where
    per-period centring would shift it). A root node's "function" is its mean.
    """
    index = {n: k for k, n in enumerate(nodes)}
    out = np.empty(len(nodes))
    for k, n in enumerate(nodes):
        pa = [index[p] for p in graph.parents(n)]
        out[k] = _node_pvalue(before[:, pa], before[:, k], after[:, pa], after[:, k])
    return out


def _benjamini_hochberg(p: FloatArray, alpha: float) -> BoolArray:
    """Which hypotheses Benjamini-Hochberg rejects at false-discovery rate ``alpha``."""
    order = np.argsort(p)
    m = p.size
    below = p[order] <= alpha * np.arange(1, m + 1) / m
    reject = np.zeros(m, dtype=bool)
    if below.any():
        reject[order[: int(np.max(np.nonzero(below)[0])) + 1]] = True
    return reject


# -- the attribution --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeChange:
    """One node's part of the change of the target's statistic."""

    node: str
    contribution: float
    """Shapley value, in the target's units (0 exactly for a node whose mechanism held)."""
    share: float
    """``contribution / sum of |contributions|`` (signed; 0 when nothing changed)."""
    changed: bool
    """Whether its mechanism was judged changed (a player)."""
    p_value: float | None
    """The change test's p-value (``None`` without the test)."""
    stderr: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "contribution": self.contribution,
            "share": self.share,
            "changed": self.changed,
            "p_value": self.p_value,
            "stderr": self.stderr,
        }


@dataclass(frozen=True)
class ChangeResult:
    """The change of a target's statistic between two periods, attributed to mechanisms.

    ``sum(c.contribution for c in contributions) == model_after - model_before`` (efficiency);
    ``observed_after - observed_before`` is the change in the data itself.
    """

    target: str
    statistic: str
    observed_before: float
    observed_after: float
    model_before: float
    model_after: float
    contributions: tuple[NodeChange, ...]
    """Every node of the target's ancestral subgraph, by absolute contribution."""
    method: str
    n_samples: int
    n_players: int
    n_evaluations: int
    n_permutations: int
    alpha: float | None
    rows_before: int
    rows_after: int
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ranking(self) -> tuple[str, ...]:
        return tuple(c.node for c in self.contributions)

    def to_dict(self, periods: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``stream-rca.change/v1`` document; ``periods`` describes before and after."""
        doc: dict[str, Any] = {
            "schema": CHANGE_SCHEMA,
            "target": self.target,
            "statistic": self.statistic,
            "periods": dict(periods)
            if periods is not None
            else {"before": {"rows": self.rows_before}, "after": {"rows": self.rows_after}},
            "observed": {
                "before": self.observed_before,
                "after": self.observed_after,
                "change": self.observed_after - self.observed_before,
            },
            "model": {
                "before": self.model_before,
                "after": self.model_after,
                "change": self.model_after - self.model_before,
            },
            "contributions": [c.to_dict() for c in self.contributions],
            "method": self.method,
            "mechanisms": "linear least squares, empirical residuals",
            "players": self.n_players,
            "samples": self.n_samples,
            "evaluations": self.n_evaluations,
            "permutations": self.n_permutations,
            "change_test": None
            if self.alpha is None
            else {"test": "chow+ks, benjamini-hochberg", "alpha": self.alpha},
            "seed": self.seed,
        }
        doc.update(self.extra)
        return doc


def _columns(
    data: Mapping[str, npt.ArrayLike], nodes: Sequence[str], which: str
) -> tuple[FloatArray, int]:
    missing = [n for n in nodes if n not in data]
    if missing:
        raise ConfigError(f"the {which} period has no column for node(s) {', '.join(missing)}")
    cols = [np.asarray(data[n], dtype=np.float64).reshape(-1) for n in nodes]
    if len({c.size for c in cols}) > 1:
        raise ConfigError(f"the {which} period's columns differ in length")
    x = np.column_stack(cols)
    ok = np.isfinite(x).all(axis=1)
    x = x[ok]
    if x.shape[0] < max(_MIN_ROWS, x.shape[1] + 2):
        raise ConfigError(
            f"the {which} period has {x.shape[0]} complete rows over {', '.join(nodes)}; "
            f"at least {max(_MIN_ROWS, x.shape[1] + 2)} are needed"
        )
    return x, int((~ok).sum())


def _uniforms(m: int, n: int, rng: np.random.Generator) -> FloatArray:
    """Stratified uniforms: per node, one draw in each of ``n`` strata, in random order."""
    strata = np.argsort(rng.random((m, n)), axis=1)
    return np.asarray((strata + rng.random((m, n))) / n, dtype=np.float64)


def _noise(residuals: FloatArray, u: FloatArray) -> FloatArray:
    idx = np.minimum((u * residuals.size).astype(np.intp), residuals.size - 1)
    return residuals[idx]


def _simulator(
    before: Mechanisms, after: Mechanisms, players: Sequence[int], u: FloatArray, statistic: str
) -> Any:
    """The set function: coalitions ``(C, p)`` over ``players`` to the target's statistic."""
    m, n = u.shape
    noise = [
        (_noise(before.residuals[k], u[k]), _noise(after.residuals[k], u[k])) for k in range(m)
    ]
    column = {k: i for i, k in enumerate(players)}

    def values(masks: BoolArray) -> FloatArray:
        out = np.empty(masks.shape[0])
        chunk = max(1, _CELLS // (n * m))
        for start in range(0, masks.shape[0], chunk):
            block = masks[start : start + chunk]
            x = np.empty((block.shape[0], n, m))
            for k in range(m):
                pa = list(before.parents[k])
                xb = before.intercept[k] + noise[k][0] + x[:, :, pa] @ before.coef[k]
                if k not in column:
                    x[:, :, k] = xb
                    continue
                xa = after.intercept[k] + noise[k][1] + x[:, :, pa] @ after.coef[k]
                x[:, :, k] = np.where(block[:, column[k], None], xa, xb)
            out[start : start + block.shape[0]] = statistic_of(x[:, :, m - 1], statistic)
        return out

    return values


def attribute_change(
    graph: CausalGraph,
    before: Mapping[str, npt.ArrayLike],
    after: Mapping[str, npt.ArrayLike],
    target: str,
    *,
    statistic: str = "mean",
    n_samples: int = 4096,
    alpha: float | None = 0.05,
    rng: np.random.Generator,
    exact_max_players: int = 12,
    n_permutations: int = 64,
) -> ChangeResult:
    """Attribute the change of ``target``'s statistic from ``before`` to ``after``.

    Parameters
    ----------
    graph
        The causal graph; the target's ancestors are the nodes considered.
    before, after
        Node name to the values of one period (one row per snapshot); rows with a missing or
        non-finite value among the nodes considered are left out.
    target
        The node whose distribution changed.
    statistic
        ``"mean"`` or a percentile ``"pNN"`` (``"p99"``).
    n_samples
        Samples simulated per coalition.
    alpha
        False-discovery rate of the mechanism-change tests; ``None``: every node is a player.
    rng
        The source of every random draw.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> g = CausalGraph([("a", "b")])
    >>> a0, a1 = rng.normal(0, 1, 500), rng.normal(3, 1, 500)  # a's mean moved by 3
    >>> b0, b1 = a0 + rng.normal(0, 1, 500), a1 + rng.normal(0, 1, 500)
    >>> r = attribute_change(g, {"a": a0, "b": b0}, {"a": a1, "b": b1}, "b", rng=rng)
    >>> r.ranking, [round(c.contribution, 1) for c in r.contributions]
    (('a', 'b'), [3.1, 0.0])
    """
    graph.check(target)
    if n_samples < 16:
        raise ConfigError(f"n_samples {n_samples}: expected at least 16")
    if alpha is not None and not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha {alpha}: expected a level between 0 and 1, or None")
    parse_statistic(statistic)
    nodes = (*graph.ancestors(target), target)
    xb, _ = _columns(before, nodes, "before")
    xa, _ = _columns(after, nodes, "after")
    mb = fit_mechanisms(graph, nodes, xb)
    ma = fit_mechanisms(graph, nodes, xa)
    if alpha is None:
        pvalues: FloatArray | None = None
        changed = np.ones(len(nodes), dtype=bool)
    else:
        pvalues = mechanism_change_pvalues(graph, nodes, xb, xa)
        changed = _benjamini_hochberg(pvalues, alpha)
        for k in np.nonzero(~changed)[0]:
            _pooled(mb, int(k), xb, xa)
            _pooled(ma, int(k), xb, xa)
    players = [int(k) for k in np.nonzero(changed)[0]]
    u = _uniforms(len(nodes), n_samples, rng)
    values = _simulator(mb, ma, players, u, statistic)
    ends = values(np.array([[False] * len(players), [True] * len(players)], dtype=bool))
    shap = estimate_shapley(
        values,
        len(players),
        rng=rng,
        exact_max_players=exact_max_players,
        n_permutations=n_permutations,
    )
    contrib = np.zeros(len(nodes))
    stderr = np.zeros(len(nodes))
    contrib[players] = shap.values
    stderr[players] = shap.stderr
    total = float(np.abs(contrib).sum())
    order = sorted(range(len(nodes)), key=lambda k: (-abs(contrib[k]), not changed[k], k))
    rows = tuple(
        NodeChange(
            nodes[k],
            float(contrib[k]),
            float(contrib[k] / total) if total > 0 else 0.0,
            bool(changed[k]),
            None if pvalues is None else float(pvalues[k]),
            float(stderr[k]),
        )
        for k in order
    )
    return ChangeResult(
        target=target,
        statistic=statistic,
        observed_before=float(statistic_of(xb[:, -1], statistic)),
        observed_after=float(statistic_of(xa[:, -1], statistic)),
        model_before=float(ends[0]),
        model_after=float(ends[1]),
        contributions=rows,
        method=shap.method,
        n_samples=n_samples,
        n_players=len(players),
        n_evaluations=shap.n_evaluations,
        n_permutations=shap.n_permutations,
        alpha=alpha,
        rows_before=xb.shape[0],
        rows_after=xa.shape[0],
    )

"""How the root causes of an attribution are ordered.

Shapley values answer "how much of the target's anomaly does each node's noise explain"; an
on-call engineer first asks "which nodes went wrong". The two differ: a root cause whose effect
on the target is small, or partly cancelled by another cause, gets little Shapley credit though
its own mechanism broke; and under a fault, a misfitted mechanism between the cause and the
target can take part of the credit. Each node's own conditional outlier score is calibrated
(``P(S >= s) = e^-s`` on normal data), so "its mechanism produced a value it should not have"
can be read from it directly.

Rules (``EngineConfig.rank_by``):

``"shapley"``
    By Shapley contribution, largest first (the method of DoWhy-GCM's ``attribute_anomalies``).
``"score"``
    By the node's own conditional score, largest first; ties by contribution.
``"explains-most"``
    Under one root cause ``c``, every anomalous node that ``c``'s fault cannot have reached is
    left unexplained, so the node that explains the most anomaly evidence is the most likely
    single cause (:func:`explained`): its own excess score above :data:`ANOMALOUS` plus that of
    the anomalous descendants it reaches through anomalous nodes, over the whole graph (a
    service's fault shows in callers that are not on the target's path too). A node that passes
    on its anomalous parent's fault through a mechanism misfitted at the fault explains less
    than that parent, though its own score and Shapley credit may be larger. Anomalous players
    whose anomaly reaches the target (through anomalous nodes, through the fitted mechanisms: a
    positive Shapley contribution beyond three standard errors, or through an anomalous
    descendant whose anomaly reaches it) come first; anomalous players whose
    anomaly reaches neither way (a chronic anomaly on a branch that the target does not feel)
    come next; the rest by conditional score. Ties by |Shapley contribution|.
``"anomalous-first"`` (default)
    First the players whose conditional score reaches :data:`ANOMALOUS` nats (their mechanisms
    produced a value that normal operation gives less than once in ``e^5`` = 150 snapshots),
    by the size of their Shapley contribution, whatever its sign (a cause that pushed the target
    the other way is still a cause: several faults at once can partly cancel); where that order
    is not resolved (a run of contributions each within three standard errors of the one before
    it and of the run's first), by the anomaly each explains, as in ``explains-most``; then the
    others by their conditional score (their contributions are mostly sampling noise).
    The target itself, when anomalous, comes after the anomalous players whose anomaly reaches
    it (through anomalous nodes: an anomalous parent or an anomalous chain to one; through the
    fitted mechanisms: a positive contribution beyond three standard errors; or through nodes
    whose values moved more than :data:`MOVED` median deviations from their usual ones, calm
    nodes that passed the fault on as learnt): a caller's
    latency learnt from normal variation rises less with a callee's than under a fault (its
    coefficient is attenuated by the callee's measurement noise and by calls that do not wait
    for it), so a fault upstream leaves a residual at the target too, and that residual is more
    likely the fault passed on than a second fault of the target's own (measured on PetShop's
    normal data with faults planted at every service, ``benchmarks.petshop_planted``).
    Anomalous players joined by an edge the normal data cannot identify (a callee that never
    failed in training now failing: its caller's coefficient on it is 0, or one point's slope)
    are one group, placed by their summed contribution and ordered within by the anomaly each
    explains: the fit alone decides how such players split the credit (PetShop availability,
    a callee that failed once in training took +36.7 nats through that one point's slope and
    its caller -30.8, while the true cause, a callee that never failed, got 0.05).
``"anomalous-shapley"``
    The anomalous players first, then the others; by Shapley contribution within each group.
``"upstream-anomalous"``
    Anomalous players with no anomalous ancestor first, then the other anomalous players, then
    the rest; by contribution within each group (the idea of anomaly traversal).

Measured side by side (``python -m benchmarks.multicause``, the simulator streams of
``benchmarks.accuracy``, the PetShop benchmark; docs/benchmarks.md): ordering by contribution
alone loses causes that cancel; ordering by score or by contribution among the anomalous lets a
node whose mechanism is misfitted at the fault rank first (PetShop latency: the caller of a slow
service, top-1 0.375 with ``anomalous-first`` against 0.625 with ``explains-most``); ranking
every anomalous node by the evidence it explains, reached or not, lets a chronic anomaly on a
long branch win (PetShop availability 0.5 against 0.875 with the reach condition).

Every root cause keeps both figures, and each attribution names the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from stream_rca.core.types import RootCause
from stream_rca.errors import ConfigError

__all__ = [
    "ANOMALOUS",
    "EVIDENCE_RULES",
    "MOVED",
    "RANK_RULES",
    "UNIDENTIFIED_SUPPORT",
    "explained",
    "rank_causes",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

ANOMALOUS = 5.0
"""Conditional score (nats) from which a player counts as anomalous in ``anomalous-*`` rules."""

UNIDENTIFIED_SUPPORT = 10
"""Fewest held values of a parent away from its median from which a linear mechanism's
coefficient on it counts as identified (see ``GraphModels.unidentified_edges``)."""

MOVED = 5.0
"""Median absolute deviations from its usual values from which a node's value counts as moved
(marginally: the threshold of anomaly traversal in the PetShop paper, Hardt et al. 2024)."""

REACH_MIN = 0.05
"""Smallest contribution (nats) taken as the fitted mechanisms carrying a node's anomaly."""

EVIDENCE_RULES = frozenset({"anomalous-first", "explains-most"})
"""Rules that read the anomaly evidence of :func:`explained` (the engine computes it for them)."""

RANK_RULES = {
    "anomalous-first": (
        f"players with conditional score >= {ANOMALOUS:g} nats first, by |Shapley contribution| "
        "(the target after those upstream whose anomaly reaches it), "
        "those within three standard errors of each other, and those joined by a dependence "
        "the normal data did not show (by their summed contribution), by the anomaly they "
        "explain; then the others by conditional score"
    ),
    "shapley": "by Shapley contribution",
    "score": "by conditional score",
    "anomalous-shapley": (
        f"players with conditional score >= {ANOMALOUS:g} nats first, then the others; "
        "by Shapley contribution within each"
    ),
    "explains-most": (
        f"players with conditional score >= {ANOMALOUS:g} nats whose anomaly reaches the target "
        "first, then the other anomalous players; within each by the anomaly they explain "
        "(their own and their anomalous descendants' excess scores), then |Shapley "
        "contribution|; then the rest by conditional score"
    ),
    "upstream-anomalous": (
        f"players with conditional score >= {ANOMALOUS:g} nats and no such ancestor first, "
        "then the other anomalous players, then the rest; by Shapley contribution within each"
    ),
}


def rank_causes(
    rule: str,
    names: Sequence[str],
    contributions: FloatArray,
    stderr: FloatArray,
    scores: Mapping[str, float],
    parents: Sequence[IntArray] | None = None,
    evidence: tuple[FloatArray, npt.NDArray[np.bool_]] | None = None,
    unresolved: npt.NDArray[np.bool_] | None = None,
    moved: npt.NDArray[np.bool_] | None = None,
) -> tuple[list[RootCause], str]:
    """Root causes in the order of ``rule``, and the rule's description.

    ``unresolved`` marks the players at either end of an edge whose coefficient the learned
    data cannot identify at this snapshot (:meth:`GraphModels.unidentified_edges
    <stream_rca.core.models.GraphModels.unidentified_edges>`): how their shares of the anomaly
    are split is an artefact of the fit, so ``anomalous-first`` orders the anomalous ones among
    them as one group, at the size of their summed contribution, by the anomaly each explains.

    ``moved`` marks the players whose values are far from their usual ones (marginally:
    :meth:`GraphModels.moved <stream_rca.core.models.GraphModels.moved>`); a chain of them
    from an anomalous player to the target is a way its fault reached the target (used by
    ``anomalous-first`` for the target's place).

    ``tied`` marks a cause whose contribution is within three standard errors of the next
    cause's, when both are ordered by contribution: their order is not resolved (for
    ``anomalous-first``, their contributions' sizes).

    Examples
    --------
    >>> import numpy as np
    >>> causes, rule = rank_causes(
    ...     "anomalous-first", ["a", "b", "c", "t"], np.array([1.0, 3.0, -2.0, 0.5]),
    ...     np.zeros(4), {"a": 12.0, "b": 1.0, "c": 9.0, "t": 0.3})
    >>> [c.node for c in causes]
    ['c', 'a', 'b', 't']
    >>> [c.node for c in rank_causes("shapley", ["a", "b", "t"], np.array([1.0, 3.0, 0.5]),
    ...     np.zeros(3), {})[0]]
    ['b', 'a', 't']
    """
    if rule not in RANK_RULES:
        raise ConfigError(f"unknown rank rule {rule!r}; choose one of {', '.join(RANK_RULES)}")
    positive = float(contributions[contributions > 0].sum())
    parents_or_none = parents or [np.zeros(0, np.intp)] * len(names)
    score = np.array([scores.get(n, np.nan) for n in names], dtype=np.float64)
    own = np.nan_to_num(score, nan=-np.inf)
    if rule == "shapley":
        keys: list[tuple[float, ...]] = [(-c,) for c in contributions]
    elif rule == "score":
        keys = [(-s, -c) for s, c in zip(own, contributions, strict=True)]
    elif rule == "anomalous-first":
        keys = [
            (0.0, -abs(c)) if s >= ANOMALOUS else (1.0, -s)
            for s, c in zip(own, contributions, strict=True)
        ]
        if evidence is None:
            evidence = explained(score, parents_or_none, len(names) - 1)
        t = len(names) - 1
        anomalous = own >= ANOMALOUS
        reaches = _reaching(evidence, contributions, stderr, anomalous, parents_or_none)
        reach = reaches if moved is None else reaches | _through(moved, parents_or_none)
        if anomalous[t] and bool((anomalous[:t] & reach[:t]).any()):
            # the target's own residual behind the anomalous players upstream that reach it
            keys[t] = (0.5, -abs(float(contributions[t])))
        group = np.flatnonzero((own >= ANOMALOUS) & (False if unresolved is None else unresolved))
        if group.size > 1:  # their split is the fit's: one key, the size of their sum (the
            # target too, if it is one of them)
            joint = (0.0, -abs(float(contributions[group].sum())))
            for g in group:
                keys[int(g)] = joint
    elif rule == "anomalous-shapley":
        keys = [
            (0.0 if s >= ANOMALOUS else 1.0, -c) for s, c in zip(own, contributions, strict=True)
        ]
    elif rule == "explains-most":
        if evidence is None:
            evidence = explained(
                score, parents or [np.zeros(0, np.intp)] * len(names), len(names) - 1
            )
        found = evidence[0]
        reaches = _reaching(evidence, contributions, stderr, own >= ANOMALOUS, parents_or_none)
        keys = [
            (0.0 if r else 0.5, -e, -abs(c)) if s >= ANOMALOUS else (1.0, 0.0, -s)
            for s, e, r, c in zip(own, found, reaches, contributions, strict=True)
        ]
    else:  # upstream-anomalous
        anomalous = own >= ANOMALOUS
        below = _has_anomalous_ancestor(anomalous, parents or [np.zeros(0, np.intp)] * len(names))
        tier = np.where(anomalous, np.where(below, 1.0, 0.0), 2.0)
        keys = [(t, -c) for t, c in zip(tier, contributions, strict=True)]
    order = sorted(range(len(names)), key=lambda i: (*keys[i], i))
    if rule == "anomalous-first":
        assert evidence is not None  # and reaches: both made in its branch above
        order = _resolve_ties(order, keys, stderr, evidence[0], reaches)
    by_contribution = [
        rule not in ("score", "anomalous-first", "explains-most") or keys[i][0] < 1.0 for i in order
    ]
    causes = []
    for rank, i in enumerate(order):
        c = float(contributions[i])
        tied = False
        same_tier = rank + 1 < len(order) and keys[i][:-1] == keys[order[rank + 1]][:-1]
        if same_tier and by_contribution[rank]:
            nxt = order[rank + 1]
            gap = abs(keys[nxt][-1] - keys[i][-1])  # the contribution key the tier is ordered by
            tied = bool(gap <= 3.0 * float(np.hypot(stderr[i], stderr[nxt])))
        causes.append(
            RootCause(
                node=names[i],
                contribution=c,
                share=c / positive if c > 0 and positive > 0 else 0.0,
                score=None if np.isnan(score[i]) else float(score[i]),
                stderr=float(stderr[i]),
                tied=tied,
            )
        )
    return causes, RANK_RULES[rule]


def explained(
    scores: FloatArray, parents: Sequence[IntArray], target: int
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Per node: the anomaly evidence it explains, and whether its anomaly reaches ``target``.

    ``scores`` are the conditional scores of a graph's nodes in topological order (NaN where
    unscored), ``parents`` their parents. A node's evidence is its own excess score above
    :data:`ANOMALOUS` plus that of every anomalous descendant it reaches through anomalous nodes
    (the target excepted: every candidate explains it). Under one root cause ``c``, the
    anomalous nodes outside ``c``'s reach are left unexplained, so the node that explains the
    most is the most likely single cause; a node that passes on its anomalous parent's fault
    explains less than that parent. ``reaches`` says whether the node is a parent of the target
    or reaches an anomalous parent of it through anomalous nodes.
    """
    n = len(parents)
    own = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    anomalous = own >= ANOMALOUS
    nodes = np.flatnonzero(anomalous)  # only anomalous nodes reach or are reached
    at = {int(j): k for k, j in enumerate(nodes)}
    reach = np.zeros((nodes.size, nodes.size), dtype=bool)  # [j, c]: c reaches j
    for k, j in enumerate(nodes):
        reach[k, k] = True
        for p in parents[int(j)]:
            if anomalous[p]:
                reach[k] |= reach[at[int(p)]]
    excess = own[nodes] - ANOMALOUS
    if anomalous[target]:
        excess[at[target]] = 0.0  # every candidate explains the target
    evidence = np.zeros(n, dtype=np.float64)
    evidence[nodes] = excess @ reach
    evidence[target] = own[target] - ANOMALOUS
    reaches = np.zeros(n, dtype=bool)
    pa = parents[target]
    reaches[pa] = True
    for p in pa:
        if anomalous[p]:
            reaches[nodes[reach[at[int(p)]]]] = True
    reaches[target] = True
    return np.asarray(evidence, dtype=np.float64), reaches


def _reaching(
    evidence: tuple[FloatArray, npt.NDArray[np.bool_]],
    contributions: FloatArray,
    stderr: FloatArray,
    anomalous: npt.NDArray[np.bool_],
    parents: Sequence[IntArray],
) -> npt.NDArray[np.bool_]:
    """Per player: does its anomaly reach the target?

    Through anomalous nodes (:func:`explained`), or through the fitted mechanisms (a positive
    contribution beyond three standard errors), or through anomalous descendants whose anomaly
    reaches it (a root cause whose own credit is noisy keeps the reach of the misfitted caller
    it drives).
    """
    reaches = evidence[1] | (contributions >= 3.0 * stderr + REACH_MIN)
    for j in range(len(parents) - 1, -1, -1):  # players in topological order: children first
        if anomalous[j] and reaches[j]:
            for p in parents[j]:
                if anomalous[p]:
                    reaches[p] = True
    return reaches


def _resolve_ties(
    order: list[int],
    keys: Sequence[tuple[float, ...]],
    stderr: FloatArray,
    found: FloatArray,
    reaches: npt.NDArray[np.bool_],
) -> list[int]:
    """Anomalous players whose Shapley order is unresolved, ordered by the anomaly they explain.

    Runs of anomalous players in ``order`` (by |contribution|) in which each contribution is
    within three standard errors of the one before it and of the run's first form one group;
    within a group, players whose anomaly reaches the target (:func:`_reaching`) come first,
    then by the evidence they explain. Asking both keeps a chain of small gaps from joining
    players whose order is clear: with the previous player only, a group could stretch from a
    cause far ahead to an anomalous ancestor far behind it, and the ancestor, which explains its
    descendants' evidence too, then took the first place.
    """

    def unresolved(i: int, j: int) -> bool:
        gap = abs(keys[j][-1] - keys[i][-1])
        return gap <= 3.0 * float(np.hypot(stderr[i], stderr[j]))

    out: list[int] = []
    k = 0
    while k < len(order):
        lead = order[k]
        group = [lead]
        while k + 1 < len(order):
            i, j = order[k], order[k + 1]
            if not (
                keys[i][0] == 0.0 and keys[j][0] == 0.0 and unresolved(i, j) and unresolved(lead, j)
            ):
                break
            group.append(j)
            k += 1
        out.extend(sorted(group, key=lambda i: (not reaches[i], -found[i])))
        k += 1
    return out


def _through(moved: npt.NDArray[np.bool_], parents: Sequence[IntArray]) -> npt.NDArray[np.bool_]:
    """Per player (in topological order, the target last): is it a parent of the target, or
    of a player that moved and is one of these?"""
    out = np.zeros(len(parents), dtype=bool)
    t = len(parents) - 1
    out[t] = True
    for j in range(t, -1, -1):
        if out[j] and (j == t or moved[j]):
            out[parents[j]] = True
    out[t] = False
    return out


def _has_anomalous_ancestor(
    anomalous: npt.NDArray[np.bool_], parents: Sequence[IntArray]
) -> npt.NDArray[np.bool_]:
    """Per player (in topological order): is any of its ancestors anomalous?"""
    out = np.zeros(len(parents), dtype=bool)
    for j, pa in enumerate(parents):
        out[j] = bool(pa.size) and bool((anomalous[pa] | out[pa]).any())
    return out

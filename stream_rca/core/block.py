"""The engine's result for a block of snapshots, as columns.

:class:`BlockResult` holds what :meth:`Engine.process_block_columns
<stream_rca.core.engine.Engine.process_block_columns>` made of ``B`` snapshots as arrays (the
scores of every node and target, which nodes were present, which learned) plus the few rows
where something happened (incident events, attributions, open incidents). A
:class:`~stream_rca.core.types.StepResult` is built only when asked for (:meth:`step`):
consumers that want columns (score documents, metrics) read them directly, and the
per-snapshot objects cost nothing for the rows nobody looks at.

``block.step(i)`` is the ``StepResult`` that ``process_one`` gives for the ``i``-th snapshot,
field for field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stream_rca.core.types import Attribution, IncidentEvent, StepResult

__all__ = ["BlockResult"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_NO_INCIDENTS: Mapping[str, str] = {}


def _flags(mask: BoolArray | np.bool_) -> list[bool]:
    return [bool(b) for b in np.atleast_1d(mask).tolist()]


@dataclass(frozen=True, slots=True, eq=False)
class BlockResult:
    """What the engine made of a block of ``B`` snapshots, column by column.

    Attributes
    ----------
    graph, nodes, targets
        The graph's name, its nodes (column order) and its watched targets.
    ts, ends
        Window start of each snapshot ``(B,)``, and its end (``None`` without windows).
    node_scores
        ``(B, nodes)`` conditional scores; NaN where a node had none.
    target_scores
        ``(B, targets)`` marginal scores; NaN where a target had none.
    present
        ``(B, nodes)``: the node had a finite value.
    learned
        ``(B, nodes)``: the node's models learned from the snapshot.
    warm
        ``(B,)``: every node and target was warm.
    warming
        Per snapshot, the nodes still in warm-up.
    invalid
        Per snapshot, the nodes whose value was not a finite number.
    events, attributions, open_incidents
        Only for the snapshots that have any: position to incident events, attributions,
        open incidents (target to id, after the snapshot).
    first
        The engine's snapshot count before the block (snapshot ``i`` is number ``first+i+1``).
    values
        ``(B, nodes)`` the values scored, NaN where missing or invalid (``None`` when the engine
        does not keep them).
    """

    graph: str
    nodes: tuple[str, ...]
    targets: tuple[str, ...]
    ts: Sequence[float]
    ends: Sequence[float | None]
    node_scores: FloatArray
    target_scores: FloatArray
    present: BoolArray
    learned: BoolArray
    warm: BoolArray
    warming: Sequence[tuple[str, ...]]
    invalid: Sequence[tuple[str, ...]]
    events: Mapping[int, tuple[IncidentEvent, ...]]
    attributions: Mapping[int, tuple[Attribution, ...]]
    open_incidents: Mapping[int, Mapping[str, str]]
    first: int
    values: FloatArray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def eventful(self) -> list[int]:
        """Positions with incident events or attributions, in order."""
        return sorted(set(self.events) | set(self.attributions))

    def step(self, i: int) -> StepResult:
        """The :class:`~stream_rca.core.types.StepResult` of the ``i``-th snapshot."""
        nodes, targets = self.nodes, self.targets
        row = self.node_scores[i]
        scores = {nodes[j]: float(row[j]) for j in np.flatnonzero(~np.isnan(row))}
        trow = self.target_scores[i]
        target_scores = {targets[k]: float(trow[k]) for k in np.flatnonzero(~np.isnan(trow))}
        invalid = self.invalid[i]
        missing = tuple(
            nodes[j] for j in np.flatnonzero(~self.present[i]) if nodes[j] not in invalid
        )
        return StepResult(
            graph=self.graph,
            ts=self.ts[i],
            scores=scores,
            target_scores=target_scores,
            warm=bool(self.warm[i]),
            warming=self.warming[i],
            missing=missing,
            invalid=invalid,
            learned=tuple(nodes[j] for j in np.flatnonzero(self.learned[i])),
            events=self.events.get(i, ()),
            attributions=self.attributions.get(i, ()),
            open_incidents=dict(self.open_incidents.get(i, _NO_INCIDENTS)),
        )

    def steps(self) -> list[StepResult]:
        """Every snapshot's :class:`~stream_rca.core.types.StepResult`, in order.

        The same as ``[block.step(i) for i in range(len(block))]``, read out of the arrays
        once for the whole block.
        """
        nodes, targets = self.nodes, self.targets
        rows = self.node_scores.tolist()
        scored = ~np.isnan(self.node_scores)
        full = _flags(scored.all(axis=1))
        t_rows = self.target_scores.tolist()
        t_scored = ~np.isnan(self.target_scores)
        t_full = _flags(t_scored.all(axis=1))
        complete = _flags(self.present.all(axis=1))
        learned_all = _flags(self.learned.all(axis=1))
        learned_none = _flags(~self.learned.any(axis=1))
        warm = _flags(self.warm)
        out: list[StepResult] = []
        for i in range(len(self)):
            if i in self.events or i in self.attributions or not (full[i] and complete[i]):
                out.append(self.step(i))
                continue
            if learned_all[i]:
                learned = nodes
            elif learned_none[i]:
                learned = ()
            else:
                learned = tuple(nodes[j] for j in np.flatnonzero(self.learned[i]).tolist())
            trow = t_rows[i]
            target_scores = (
                dict(zip(targets, trow, strict=True))
                if t_full[i]
                else {targets[k]: trow[k] for k in np.flatnonzero(t_scored[i]).tolist()}
            )
            out.append(
                StepResult(
                    graph=self.graph,
                    ts=self.ts[i],
                    scores=dict(zip(nodes, rows[i], strict=True)),
                    target_scores=target_scores,
                    warm=warm[i],
                    warming=self.warming[i],
                    missing=(),
                    invalid=self.invalid[i],
                    learned=learned,
                    events=(),
                    attributions=(),
                    open_incidents=dict(self.open_incidents.get(i, _NO_INCIDENTS)),
                )
            )
        return out

    def missing_counts(self) -> dict[str, int]:
        """How many snapshots of the block missed each node (invalid ones not counted)."""
        absent = (~self.present).sum(axis=0)
        out = {self.nodes[j]: int(absent[j]) for j in np.flatnonzero(absent)}
        for names in self.invalid:
            for name in names:
                out[name] -= 1
        return {k: v for k, v in out.items() if v}

    def invalid_counts(self) -> dict[str, int]:
        """How many snapshots of the block had an invalid value of each node."""
        out: dict[str, int] = {}
        for names in self.invalid:
            for name in names:
                out[name] = out.get(name, 0) + 1
        return out

"""Faults injected into a simulated system, and the schedule that is the ground truth.

Two kinds of fault, active on steps ``start <= t < start + duration``:

- ``"latency_shift"``: each fault node's intrinsic latency grows by ``magnitude`` times the node's
  **mean intrinsic latency** (its ``scale``; a relative unit, so ``magnitude=3`` makes the node's
  own work four times as slow on average). The shift then propagates to the node's callers.
- ``"mechanism_change"``: each fault node's whole latency, ``intrinsic + aggregate of callees``,
  is multiplied by ``magnitude`` (a factor > 0, e.g. ``2.0`` for retries that double every call
  and the node's own work). Its causal mechanism changes, not only its noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

__all__ = ["FAULT_KINDS", "Fault", "FaultKind", "FaultSchedule"]

FaultKind = Literal["latency_shift", "mechanism_change"]

#: The supported fault kinds.
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)


@dataclass(frozen=True)
class Fault:
    """One fault: what, where, when and how strong.

    Parameters
    ----------
    kind
        ``"latency_shift"`` or ``"mechanism_change"`` (see the module docstring).
    nodes
        The root-cause nodes; a single name is accepted and stored as a 1-tuple.
    start
        First step at which the fault is active (>= 0).
    duration
        Number of steps it stays active (>= 1).
    magnitude
        ``latency_shift``: added latency in units of each node's mean intrinsic latency (>= 0).
        ``mechanism_change``: factor on each node's whole latency (> 0).

    Examples
    --------
    >>> f = Fault("latency_shift", ("API",), start=10, duration=5, magnitude=3.0)
    >>> f.nodes, f.end, f.is_active(14), f.is_active(15)
    (('API',), 15, True, False)
    """

    kind: FaultKind
    nodes: tuple[str, ...]
    start: int
    duration: int
    magnitude: float = field(default=3.0)

    def __post_init__(self) -> None:
        nodes = (self.nodes,) if isinstance(self.nodes, str) else tuple(self.nodes)
        object.__setattr__(self, "nodes", nodes)
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}")
        if not nodes:
            raise ValueError("a fault needs at least one node")
        if len(set(nodes)) != len(nodes):
            raise ValueError(f"fault nodes repeat: {nodes}")
        if self.start < 0 or self.duration < 1:
            raise ValueError(
                f"a fault needs start >= 0 and duration >= 1, got {self.start}, {self.duration}"
            )
        if not math.isfinite(self.magnitude):
            raise ValueError(f"fault magnitude must be finite, got {self.magnitude}")
        if self.kind == "latency_shift" and self.magnitude < 0:
            raise ValueError(f"a latency_shift magnitude must be >= 0, got {self.magnitude}")
        if self.kind == "mechanism_change" and self.magnitude <= 0:
            raise ValueError(f"a mechanism_change factor must be > 0, got {self.magnitude}")

    @property
    def end(self) -> int:
        """The first step after the fault (exclusive end)."""
        return self.start + self.duration

    def is_active(self, step: int) -> bool:
        """Whether the fault is active at ``step``."""
        return self.start <= step < self.end

    def active_mask(self, start: int, n: int) -> npt.NDArray[np.bool_]:
        """Whether the fault is active at each of the steps ``start .. start + n - 1``."""
        steps = np.arange(start, start + n)
        return (steps >= self.start) & (steps < self.end)


class FaultSchedule(Sequence[Fault]):
    """An ordered collection of faults: what a simulator injects, and the ground truth.

    Parameters
    ----------
    faults
        The faults, in any order; kept sorted by start step.

    Examples
    --------
    >>> a = Fault("latency_shift", ("a",), start=10, duration=5)
    >>> b = Fault("mechanism_change", ("b",), start=0, duration=3, magnitude=2.0)
    >>> s = FaultSchedule([a, b])
    >>> [f.nodes[0] for f in s]
    ['b', 'a']
    >>> s.root_causes_at(11), s.root_causes_at(5), sorted(s.root_causes)
    (frozenset({'a'}), frozenset(), ['a', 'b'])
    >>> s.anomalous(0, 6).astype(int).tolist()
    [1, 1, 1, 0, 0, 0]
    """

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._faults = tuple(sorted(faults, key=lambda f: (f.start, f.end, f.nodes)))

    def __len__(self) -> int:
        return len(self._faults)

    def __getitem__(self, index: int) -> Fault:  # type: ignore[override]
        return self._faults[index]

    def __iter__(self) -> Iterator[Fault]:
        return iter(self._faults)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FaultSchedule) and self._faults == other._faults

    def __hash__(self) -> int:
        return hash(self._faults)

    def __repr__(self) -> str:
        return f"FaultSchedule({list(self._faults)!r})"

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults, sorted by start step."""
        return self._faults

    @property
    def nodes(self) -> frozenset[str]:
        """Every node that some fault touches."""
        return frozenset(n for f in self._faults for n in f.nodes)

    @property
    def root_causes(self) -> frozenset[str]:
        """The set of root-cause nodes over the whole schedule (same as :attr:`nodes`)."""
        return self.nodes

    def active_at(self, step: int) -> tuple[Fault, ...]:
        """The faults active at ``step``."""
        return tuple(f for f in self._faults if f.is_active(step))

    def root_causes_at(self, step: int) -> frozenset[str]:
        """The root-cause nodes at ``step`` (empty when the system is healthy)."""
        return frozenset(n for f in self.active_at(step) for n in f.nodes)

    def anomalous(self, start: int, n: int) -> npt.NDArray[np.bool_]:
        """Whether any fault is active at each of the steps ``start .. start + n - 1``."""
        mask = np.zeros(n, dtype=bool)
        for f in self.overlapping(start, n):
            mask |= f.active_mask(start, n)
        return mask

    def overlapping(self, start: int, n: int) -> tuple[Fault, ...]:
        """The faults active at some step of ``start .. start + n - 1``."""
        return tuple(f for f in self._faults if f.start < start + n and f.end > start)

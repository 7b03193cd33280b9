"""Random fault schedules whose faults are visible at a watched target.

Root causes are drawn among the target's ancestors (so every fault can reach the target). Each
fault's magnitude is calibrated so that the fault raises the **mean** of the target by
``strength`` times the target's fault-free **standard deviation**: both are estimated on a
batch of fault-free rows drawn from the schedule's own generator (the system's stream is not
touched), with common random numbers for the faulty and the fault-free batch. The target's mean
shift does not decrease with the fault size (sums, maxima and non-negative weights are monotone),
so a secant search inside a bisection bracket finds a magnitude whose shift is at least the
wanted one and at most ``1 + tolerance`` times it.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np
import numpy.typing as npt

from stream_rca.sim.faults import FAULT_KINDS, Fault, FaultKind, FaultSchedule
from stream_rca.sim.system import MicroserviceSystem

__all__ = ["calibrate_magnitude", "random_faults"]


def _ancestral(system: MicroserviceSystem, target: str) -> MicroserviceSystem:
    """The part of ``system`` that ``target`` depends on: its ancestors and itself."""
    system.index(target)  # unknown target -> UnknownNodeError
    g = nx.DiGraph(system.edges)
    g.add_nodes_from(system.nodes)
    keep = nx.ancestors(g, target) | {target}
    return system if len(keep) == len(system.nodes) else system.subsystem(keep)


def _mean_shift(
    system: MicroserviceSystem,
    intrinsic: npt.NDArray[np.float64],
    baseline: npt.NDArray[np.float64],
    fault: Fault,
    target: int,
) -> float:
    """Mean rise of the target's latency when ``fault`` is active on every row."""
    shifted, multiplier = system.apply_faults(intrinsic, fault.start, [fault])
    faulty = system.propagate(shifted, multiplier)
    return float(np.mean(faulty[:, target] - baseline[:, target]))


def calibrate_magnitude(
    system: MicroserviceSystem,
    kind: FaultKind,
    nodes: Sequence[str],
    target: str,
    strength: float,
    rng: np.random.Generator,
    *,
    n_rows: int = 256,
    tolerance: float = 0.05,
    max_iter: int = 30,
) -> float:
    """The fault magnitude that raises ``target``'s mean by ``strength`` of its std.

    Parameters
    ----------
    system
        The simulated system (its stream and step are not touched); only the target and its
        ancestors are simulated.
    kind
        Fault kind; a ``latency_shift`` magnitude is in units of each node's mean intrinsic
        latency, a ``mechanism_change`` magnitude is a factor (> 1 here).
    nodes
        The fault nodes; each must be ``target`` or one of its ancestors.
    target
        The watched node.
    strength
        Wanted mean shift of the target, in units of its fault-free standard deviation (> 0).
    rng
        Draws the fault-free calibration batch.
    n_rows
        Size of the calibration batch.
    tolerance
        Accept a magnitude whose shift is in ``[wanted, wanted * (1 + tolerance)]``.
    max_iter
        Iteration cap; the smallest magnitude found that reaches the wanted shift is returned.

    Returns
    -------
    float
        The magnitude.

    Examples
    --------
    >>> sim = MicroserviceSystem([("db", "api")], scales={"db": 0.1, "api": 0.0},
    ...                          intrinsic="exponential")
    >>> rng = np.random.default_rng(0)
    >>> m = calibrate_magnitude(sim, "latency_shift", ["db"], "api", 3.0, rng, n_rows=20_000)
    >>> round(m, 1)  # the std of an exponential is its mean: 3 std = 3 scales
    3.0
    """
    if strength <= 0:
        raise ValueError(f"strength must be > 0, got {strength}")
    system = _ancestral(system, target)
    outside = set(nodes) - set(system.nodes)
    if outside:
        raise ValueError(f"fault nodes {sorted(outside)} are not ancestors of {target!r}")
    t = system.index(target)
    intrinsic = system.draw_intrinsic(n_rows, rng)
    baseline = system.propagate(intrinsic)
    std = float(np.std(baseline[:, t]))
    wanted = strength * std if std > 0 else strength * 1e-9
    offset = 1.0 if kind == "mechanism_change" else 0.0  # magnitude = offset + size

    def shift(size: float) -> float:
        f = Fault(kind, tuple(nodes), start=0, duration=n_rows, magnitude=offset + size)
        return _mean_shift(system, intrinsic, baseline, f, t)

    lo, hi = 0.0, float("inf")  # shift(lo) < wanted <= shift(hi)
    size = 1.0
    for _ in range(max_iter):
        got = shift(size)
        if got >= wanted * (1 - 1e-12):
            hi = size
            if got <= wanted * (1 + tolerance):
                break
        else:
            lo = size
        proposal = size * wanted / got if got > 0 else 10.0 * size
        if not lo < proposal < hi:  # outside the bracket: bisect it (or grow)
            proposal = 0.5 * (lo + hi) if np.isfinite(hi) else 10.0 * max(size, lo)
        if proposal > 1e12:
            raise ValueError(f"a fault on {list(nodes)} does not reach {target!r}")
        size = proposal
    if not np.isfinite(hi):
        raise ValueError(f"could not calibrate a fault on {list(nodes)} for {target!r}")
    best = hi
    return offset + best


def random_faults(
    system: MicroserviceSystem,
    target: str,
    n_faults: int,
    *,
    every: int,
    duration: int,
    rng: np.random.Generator | int,
    start: int | None = None,
    kinds: Sequence[FaultKind] = ("latency_shift",),
    nodes_per_fault: int = 1,
    strength: float | tuple[float, float] = (3.0, 6.0),
    include_target: bool = False,
    n_rows: int = 256,
) -> FaultSchedule:
    """Draw a schedule of faults that are visible at ``target``.

    Fault ``i`` starts at ``start + i * every`` and lasts ``duration`` steps. Its root-cause nodes
    are ancestors of ``target`` (or the target itself when ``include_target``), distinct across
    faults while there are enough candidates; its kind is drawn from ``kinds``; its magnitude is
    calibrated with :func:`calibrate_magnitude` to a strength drawn uniformly from ``strength``.

    Parameters
    ----------
    system
        The simulated system; it is not modified (assign the result to ``system.faults``).
    target
        The watched node (e.g. the front-end).
    n_faults
        Number of faults.
    every
        Steps between fault starts (>= 1).
    duration
        Steps each fault lasts (>= 1).
    rng
        A generator or a seed; the only source of randomness.
    start
        Step of the first fault; default ``every`` (a fault-free warm-up of ``every`` steps).
    kinds
        Fault kinds to draw from.
    nodes_per_fault
        Root-cause nodes per fault.
    strength
        Target mean shift in units of its std: a number, or a ``(low, high)`` range.
    include_target
        Whether the target itself may be a root cause.
    n_rows
        Size of the calibration batch.

    Returns
    -------
    FaultSchedule
        The faults; ``schedule.root_causes_at(t)`` is the ground truth at step ``t``.

    Examples
    --------
    >>> sim = MicroserviceSystem.shop(seed=0)
    >>> faults = random_faults(sim, "Website", 3, every=100, duration=10, rng=0)
    >>> [f.start for f in faults], all(f.magnitude > 0 for f in faults)
    ([100, 200, 300], True)
    >>> sim.faults = faults
    >>> sim.root_causes(105) == frozenset(faults[0].nodes)
    True
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if n_faults < 0 or every < 1 or duration < 1 or nodes_per_fault < 1:
        raise ValueError("need n_faults >= 0, every >= 1, duration >= 1 and nodes_per_fault >= 1")
    bad = set(kinds) - set(FAULT_KINDS)
    if not kinds or bad:
        raise ValueError(f"kinds must be a non-empty subset of {FAULT_KINDS}, got {kinds}")
    system = _ancestral(system, target)  # calibrate on the part the target depends on
    candidates = [n for n in system.nodes if include_target or n != target]
    if len(candidates) < nodes_per_fault:
        raise ValueError(
            f"{target!r} has {len(candidates)} candidate root causes, "
            f"fewer than nodes_per_fault={nodes_per_fault}; pick a target with more ancestors"
        )
    low, high = strength if isinstance(strength, tuple) else (strength, strength)
    first = every if start is None else start

    pool: list[str] = []
    faults: list[Fault] = []
    for i in range(n_faults):
        if len(pool) < nodes_per_fault:  # refill: distinct root causes until exhausted
            pool = [str(c) for c in gen.permutation(np.array(candidates, dtype=object))]
        chosen = tuple(pool[:nodes_per_fault])
        pool = pool[nodes_per_fault:]
        kind = kinds[int(gen.integers(len(kinds)))]
        s = float(gen.uniform(low, high)) if high > low else float(low)
        magnitude = calibrate_magnitude(system, kind, chosen, target, s, gen, n_rows=n_rows)
        faults.append(Fault(kind, chosen, first + i * every, duration, magnitude))
    return FaultSchedule(faults)

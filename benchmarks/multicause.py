"""Multi-cause faults on random 50-node DAGs: stream-rca beside the reference rankers.

    python -m benchmarks.multicause              # 50 cases, prints a markdown table
    python -m benchmarks.multicause --quick      # 4 small cases, seconds

Each case is :func:`stream_rca.sim.multicause_case` with its own fixed seed (CIRCA's study:
1,440 normal points, ``1 + Poisson(1)`` causes per fault, linear mechanisms, Gaussian,
Student-t and lognormal noises). Every method gets the same normal rows, window, fault row,
true graph and target. Scores (RCAEval / CIRCA definitions): ``AC@k = |true causes in the
top k| / min(k, |true causes|)``, averaged over cases; ``Avg@5`` is the mean of AC@1..AC@5.

stream-rca: an :class:`~stream_rca.core.engine.Engine` with default settings learns the normal
rows and the window's rows before the fault with ``process_block`` (blocks of 64), then
``explain`` ranks the fault row (:func:`stream_rca_rank`). Its second column orders the same
attribution's players by their own conditional score instead of their contribution.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import numpy.typing as npt

from benchmarks.common import Check, Report, Table, say
from benchmarks.rankers import RANKERS, Ranker
from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.types import Attribution, Snapshot
from stream_rca.sim.multicause import MulticauseNoise, multicause_case

__all__ = [
    "STREAM_RCA",
    "STREAM_RCA_SCORE",
    "MulticauseSettings",
    "accuracy_at",
    "main",
    "multicause",
    "quick_settings",
    "stream_rca_rank",
]

FloatArray = npt.NDArray[np.float64]
STREAM_RCA = "stream-rca (its ranking, rule anomalous-first)"
STREAM_RCA_SCORE = "stream-rca (own conditional score)"
KS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class MulticauseSettings:
    cases: int = 50
    seed: int = 0
    n_nodes: int = 50
    n_normal: int = 1440
    noise: MulticauseNoise = "mixed"
    mechanism_share: float = 0.0
    missing: float = 0.0
    block: int = 64
    rankers: tuple[str, ...] = tuple(RANKERS)
    config: EngineConfig = field(default_factory=EngineConfig)


def quick_settings() -> MulticauseSettings:
    """Four small cases: the same code paths in seconds."""
    return MulticauseSettings(cases=4, n_nodes=20, n_normal=300)


def _engine_attribution(
    normal: FloatArray,
    window: FloatArray,
    fault_row: int,
    graph: nx.DiGraph,
    target: int,
    config: EngineConfig,
    block: int,
) -> Attribution:
    """Learn the normal rows and the window before the fault, then explain the fault row."""
    cg = CausalGraph(
        [(str(u), str(v)) for u, v in graph.edges], [str(v) for v in sorted(graph.nodes)]
    )
    cols = [int(name) for name in cg.nodes]
    engine = Engine(cg, config, targets=[str(target)])
    rows = np.vstack([normal, window[:fault_row]])[:, cols]
    for start in range(0, rows.shape[0], block):
        chunk = rows[start : start + block]
        engine.process_block(np.arange(start, start + len(chunk), dtype=np.float64), chunk)
    row = window[fault_row]
    values = {str(j): float(v) for j, v in enumerate(row) if not math.isnan(v)}
    return engine.explain(Snapshot(float(rows.shape[0]), values, cg.name), str(target))


def stream_rca_rank(
    normal: FloatArray,
    window: FloatArray,
    fault_row: int,
    graph: nx.DiGraph,
    target: int,
    *,
    config: EngineConfig | None = None,
    block: int = 64,
) -> dict[str, list[int]]:
    """stream-rca's rankings of one case, by column name (see the module docstring).

    ``STREAM_RCA`` is the attribution's own order (``root_causes``); ``STREAM_RCA_SCORE``
    orders the same players by their conditional score, highest first (none: last).
    """
    att = _engine_attribution(
        normal, window, fault_row, graph, target, config or EngineConfig(), block
    )
    by_contribution = [int(rc.node) for rc in att.root_causes]
    scored = sorted(
        att.root_causes,
        key=lambda rc: -math.inf if rc.score is None or math.isnan(rc.score) else rc.score,
        reverse=True,
    )
    return {STREAM_RCA: by_contribution, STREAM_RCA_SCORE: [int(rc.node) for rc in scored]}


def accuracy_at(ranking: Sequence[int], truth: Sequence[int], k: int) -> float:
    """``AC@k = |truth in the top k| / min(k, |truth|)``."""
    hits = len(set(ranking[:k]) & set(truth))
    return hits / min(k, len(truth))


@dataclass
class _Scores:
    ac: dict[int, list[float]] = field(default_factory=lambda: {k: [] for k in KS})
    seconds: list[float] = field(default_factory=list)

    def add(self, ranking: Sequence[int], truth: Sequence[int], seconds: float) -> None:
        for k in KS:
            self.ac[k].append(accuracy_at(ranking, truth, k))
        self.seconds.append(seconds)

    def mean(self, k: int) -> float:
        return float(np.mean(self.ac[k]))


def multicause(settings: MulticauseSettings) -> Report:
    """AC@1, AC@3, AC@5, Avg@5 and seconds per case of every method on the same cases."""
    rankers: dict[str, Ranker] = {name: RANKERS[name] for name in settings.rankers}
    scores: dict[str, _Scores] = {n: _Scores() for n in (STREAM_RCA, STREAM_RCA_SCORE, *rankers)}
    sizes, players = [], []
    for i in range(settings.cases):
        case = multicause_case(
            np.random.default_rng([settings.seed, i]),
            n_nodes=settings.n_nodes,
            n_normal=settings.n_normal,
            noise=settings.noise,
            mechanism_share=settings.mechanism_share,
            missing=settings.missing,
        )
        fault = case.faults[0]
        args = (case.normal, fault.window, fault.fault_row, case.graph, case.target)
        truth = fault.causes
        sizes.append(len(truth))
        players.append(len(case.candidates))
        started = time.perf_counter()
        ours = stream_rca_rank(*args, config=settings.config, block=settings.block)
        elapsed = time.perf_counter() - started
        for name, ranking in ours.items():
            scores[name].add(ranking, truth, elapsed)
        for name, rank in rankers.items():
            started = time.perf_counter()
            ranking = rank(*args)
            scores[name].add(ranking, truth, time.perf_counter() - started)
        if (i + 1) % 10 == 0 or i + 1 == settings.cases:
            say(f"[multicause] {i + 1}/{settings.cases} cases")
    table = Table(
        f"Multi-cause faults, {settings.n_nodes}-node random DAGs, true graph "
        f"({settings.cases} cases)",
        ["method", "AC@1", "AC@3", "AC@5", "Avg@5", "seconds / case"],
    )
    for name, s in scores.items():
        avg5 = float(np.mean([s.mean(k) for k in KS]))
        secs = float(np.mean(s.seconds))
        table.add(name, s.mean(1), s.mean(3), s.mean(5), avg5, f"{secs:.3g}")
    counts = np.bincount(sizes)
    table.notes.append(
        f"Cases: seeds ({settings.seed}, 0..{settings.cases - 1}), {settings.n_normal} normal "
        f"points, noise {settings.noise}, mechanism-change share {settings.mechanism_share:g}, "
        f"missing values {settings.missing:.0%}; "
        f"true causes per case: "
        + ", ".join(f"{k}: {c}" for k, c in enumerate(counts) if c)
        + f"; candidates (target + ancestors) per case: median {int(np.median(players))}."
    )
    table.notes.append(
        "stream-rca's seconds include learning the normal rows (default EngineConfig, "
        f"blocks of {settings.block}); both stream-rca columns come from the same attribution. "
        "The reference rankers are in benchmarks/rankers.py."
    )
    report = Report(tables=[table])
    mine = scores[STREAM_RCA]
    report.checks.append(
        Check(
            "multi-cause simulator, 50 nodes, true graph: AC@1 >= 0.60 and AC@3 >= 0.95",
            f"AC@1 {mine.mean(1):.2f}, AC@3 {mine.mean(3):.2f} ({settings.cases} cases, "
            f"{settings.n_nodes} nodes)",
            mine.mean(1) >= 0.60 and mine.mean(3) >= 0.95
            if settings.n_nodes == 50 and settings.cases >= 50
            else None,
        )
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multicause", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 small cases (seconds)")
    parser.add_argument("--cases", type=int, default=None, help="number of cases (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the cases")
    parser.add_argument(
        "--noise",
        default="mixed",
        choices=["gaussian", "student", "lognormal", "mixed"],
        help="noise family of the nodes (default: mixed)",
    )
    parser.add_argument(
        "--mechanism-share",
        type=float,
        default=0.0,
        help="share of causes with parents that also get new incoming weights",
    )
    parser.add_argument(
        "--missing", type=float, default=0.0, help="share of values set missing (NaN)"
    )
    args = parser.parse_args(argv)
    base = quick_settings() if args.quick else MulticauseSettings()
    settings = MulticauseSettings(
        cases=args.cases if args.cases is not None else base.cases,
        seed=args.seed,
        n_nodes=base.n_nodes,
        n_normal=base.n_normal,
        noise=args.noise,
        mechanism_share=args.mechanism_share,
        missing=args.missing,
    )
    report = multicause(settings)
    for t in report.tables:
        print(t.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

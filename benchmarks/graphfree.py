"""Graph-free ranking beside BARO and n-sigma, and beside the true-graph ranking, in one run.

    python -m benchmarks.graphfree              # PetShop train split + 50 simulator cases
    python -m benchmarks.graphfree --quick      # PetShop + 4 small simulator cases

PetShop (train split, both scenarios, the graph withheld): per issue, a
:class:`~stream_rca.core.graphfree.MarginalRanker` with its default configuration learns the
whole ``noissue/metrics.csv`` of the issue's metric and statistic (every column a candidate),
then streams the issue's rows 0..2 and ranks at row 2 (the row the benchmark's methods score).
BARO and n-sigma (benchmarks/rankers.py) rank every column of the same rows.

Multi-cause simulator (:func:`stream_rca.sim.multicause_case`, 50-node random DAGs): the same
ranker learns the normal rows and the window before the fault and ranks the fault row without
the graph; stream-rca's engine ranks it with the true graph (:func:`stream_rca_rank`); BARO and
n-sigma without the graph. ``AC@k = |true causes in the top k| / min(k, |true causes|)``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from benchmarks.cases import CaseSettings, petshop_issues
from benchmarks.common import Report, Table, say
from benchmarks.multicause import STREAM_RCA, accuracy_at, stream_rca_rank
from benchmarks.rankers import baro, n_sigma
from stream_rca.core.graphfree import MarginalRanker

__all__ = ["GraphFreeSettings", "graph_free_benchmark", "main", "petshop_rank", "sim_rank"]

FloatArray = npt.NDArray[np.float64]
ROW = 2
OURS = "stream-rca graph-free"


@dataclass(frozen=True)
class GraphFreeSettings(CaseSettings):
    """The cases of :func:`graph_free_benchmark` (50 simulator cases by default)."""


def petshop_rank(
    nodes: Sequence[str],
    normal: FloatArray,
    normal_ts: FloatArray,
    window: FloatArray,
    window_ts: FloatArray,
    target: str,
) -> list[str]:
    """The graph-free ranking at row ``ROW`` of an issue window (columns as ``nodes``)."""
    ranker = MarginalRanker(list(nodes))
    for ts, row in zip(normal_ts, normal, strict=True):
        ranker.process_array(row, ts=float(ts), trusted=True)
    for k in range(ROW + 1):
        ranker.process_array(window[k], ts=float(window_ts[k]))
    return [c.node for c in ranker.rank(target)]


def sim_rank(normal: FloatArray, window: FloatArray, fault_row: int, target: int) -> list[int]:
    """The graph-free ranking of a simulator case's fault row (columns are node numbers)."""
    ranker = MarginalRanker([str(j) for j in range(normal.shape[1])])
    for t, row in enumerate(normal):
        ranker.process_array(row, ts=float(t), trusted=True)
    for k in range(fault_row + 1):
        ranker.process_array(window[k], ts=float(normal.shape[0] + k))
    return [int(c.node) for c in ranker.rank(str(target))]


def _petshop(settings: GraphFreeSettings) -> Table:
    methods = (OURS, "BARO", "n-sigma")
    ranks: dict[str, list[int | None]] = {m: [] for m in methods}
    per_metric: dict[str, dict[str, list[int | None]]] = {}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for scenario in settings.scenarios:
        for issue in petshop_issues(scenario):
            t, nodes, n, w = issue.target, issue.nodes, issue.normal, issue.window
            target = nodes.index(t.node)
            for m in methods:
                started = time.perf_counter()
                if m == OURS:
                    order = petshop_rank(
                        nodes, n.values, n.timestamps, w.values, w.timestamps, t.node
                    )
                else:
                    rank = baro if m == "BARO" else n_sigma
                    order = [nodes[j] for j in rank(n.values, w.values, ROW, None, target)]
                seconds[m].append(time.perf_counter() - started)
                r = order.index(t.root_cause) + 1 if t.root_cause in order else None
                ranks[m].append(r)
                per_metric.setdefault(t.metric, {k: [] for k in methods})[m].append(r)
            say(f"[graph-free] petshop {scenario} {issue.name}")
    table = Table(
        "PetShop (train split), graph withheld: root cause at row 2",
        [
            "method",
            *[f"{k} top-{i}" for k in sorted(per_metric) for i in (1, 3)],
            "all top-1",
            "all top-3",
            "ms / issue",
        ],
    )
    for m in methods:
        cells: list[object] = [m]
        for k in sorted(per_metric):
            rs = per_metric[k][m]
            cells += [_top(rs, 1), _top(rs, 3)]
        cells += [_top(ranks[m], 1), _top(ranks[m], 3), f"{1e3 * np.mean(seconds[m]):.3g}"]
        table.add(*cells)
    table.notes.append(
        f"{len(ranks[OURS])} issues; ranks of the root cause per issue, {OURS}: "
        + " ".join(str(r or "-") for r in ranks[OURS])
        + ". Every column of the issue's metric is a candidate; stream-rca's time includes "
        "learning the normal file."
    )
    return table


def _top(ranks: Sequence[int | None], k: int) -> float:
    return sum(r is not None and r <= k for r in ranks) / max(1, len(ranks))


def _simulator(settings: GraphFreeSettings) -> Table:
    methods = (f"{STREAM_RCA}, true graph", OURS, "BARO (no graph)", "n-sigma (no graph)")
    ac: dict[str, dict[int, list[float]]] = {m: {k: [] for k in (1, 3, 5)} for m in methods}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for i, case in enumerate(settings.simulator_cases()):
        fault = case.faults[0]
        for m in methods:
            started = time.perf_counter()
            if m == OURS:
                order = sim_rank(case.normal, fault.window, fault.fault_row, case.target)
            elif m.startswith(STREAM_RCA):
                order = stream_rca_rank(
                    case.normal, fault.window, fault.fault_row, case.graph, case.target
                )[STREAM_RCA]
            else:
                rank = baro if m.startswith("BARO") else n_sigma
                order = rank(case.normal, fault.window, fault.fault_row, None, case.target)
            seconds[m].append(time.perf_counter() - started)
            for k in (1, 3, 5):
                ac[m][k].append(accuracy_at(order, fault.causes, k))
        if (i + 1) % 10 == 0 or i + 1 == settings.cases:
            say(f"[graph-free] simulator {i + 1}/{settings.cases}")
    table = Table(
        f"Multi-cause simulator, {settings.n_nodes}-node DAGs ({settings.cases} cases): "
        "graph withheld beside the true graph",
        ["method", "graph", "AC@1", "AC@3", "AC@5", "seconds / case"],
    )
    for m in methods:
        graph = "true" if m.startswith(STREAM_RCA) else "none"
        table.add(
            m.removesuffix(", true graph"),
            graph,
            *(float(np.mean(ac[m][k])) for k in (1, 3, 5)),
            f"{np.mean(seconds[m]):.3g}",
        )
    table.notes.append(
        "Graph-free candidates are all nodes; the true-graph engine ranks the target and its "
        "ancestors (so its task is easier by the graph)."
    )
    return table


def graph_free_benchmark(settings: GraphFreeSettings) -> Report:
    """Both tables in one run."""
    return Report(tables=[_petshop(settings), _simulator(settings)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.graphfree", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 small simulator cases")
    parser.add_argument("--cases", type=int, default=None, help="simulator cases (default 50)")
    args = parser.parse_args(argv)
    if args.quick:
        settings = GraphFreeSettings(cases=4, n_nodes=20, n_normal=300)
    else:
        settings = GraphFreeSettings(cases=args.cases if args.cases is not None else 50)
    for t in graph_free_benchmark(settings).tables:
        print(t.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

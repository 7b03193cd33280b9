"""A learned structure beside the true graph and the graph-free ranking, in one run.

    python -m benchmarks.learned              # PetShop train split + 20 simulator cases
    python -m benchmarks.learned --quick      # PetShop + 3 simulator cases

The structure is learned (:func:`stream_rca.core.learn.learn_structure`, its defaults) from
the normal rows only, then the engine ranks the fault with it exactly as it does with the true
graph; the graph-free ranker (:mod:`stream_rca.core.graphfree`) ranks the same rows without a
graph. With a graph (true or learned) the candidates are the target and its ancestors in that
graph: a true cause the learned graph does not make an ancestor of the target is never ranked.

PetShop (train split, both scenarios): per issue, the graph is learned from the issue's metric
and statistic in ``noissue/metrics.csv``; the engine learns that file and ranks row 2 of the
issue window (as :mod:`benchmarks.graphfree`). The true graph is PetShop's ``graph.csv``.
Two learned variants: edges oriented by the data alone (colliders, Meek, skewness), and toward
the target (``toward``: the watched metric taken as the sink). Multi-cause simulator: 50-node
random DAGs, ``AC@k`` as in :mod:`benchmarks.multicause`;
"edges" reports the learned graph's directed precision and recall against the true graph.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import numpy.typing as npt

from benchmarks.cases import PETSHOP_DIR, CaseSettings, petshop_issues
from benchmarks.common import Table, say
from benchmarks.graphfree import ROW, petshop_rank, sim_rank
from benchmarks.multicause import STREAM_RCA, accuracy_at, stream_rca_rank
from stream_rca.core.config import EngineConfig
from stream_rca.core.engine import Engine
from stream_rca.core.graph import CausalGraph
from stream_rca.core.learn import learn_structure
from stream_rca.core.types import Snapshot
from stream_rca.io import read_petshop_graph

__all__ = ["LearnedSettings", "main"]

FloatArray = npt.NDArray[np.float64]
LEARNED = "learned graph (PC + bootstrap), toward the target"
LEARNED_DATA = "learned graph (PC + bootstrap), data's orientation"
METHODS = ("true graph", LEARNED, LEARNED_DATA, "graph-free")


@dataclass(frozen=True)
class LearnedSettings(CaseSettings):
    """The cases of this comparison (20 simulator cases by default)."""

    cases: int = 20


def _engine_rank(
    graph: CausalGraph, nodes: Sequence[str], normal: FloatArray, window: FloatArray, target: str
) -> list[str]:
    """The engine's ranking of row ``ROW`` of ``window`` (columns as ``nodes``)."""
    g = graph
    if target not in g:
        g = CausalGraph(g.edges, [*g.nodes, target], name=g.name)
    cols = [nodes.index(n) if n in nodes else -1 for n in g.nodes]
    engine = Engine(g, EngineConfig(), targets=[target])

    def values(row: FloatArray) -> dict[str, float]:
        return {
            n: float(row[c]) for n, c in zip(g.nodes, cols, strict=True)
            if c >= 0 and not math.isnan(row[c])
        }  # fmt: skip

    rows = [*normal, *window[:ROW]]
    engine.process_many([Snapshot(float(t), values(r), g.name) for t, r in enumerate(rows)])
    att = engine.explain(Snapshot(float(len(rows)), values(window[ROW]), g.name), target)
    return [rc.node for rc in att.root_causes]


def _petshop(settings: LearnedSettings) -> Table:
    ranks: dict[str, list[int | None]] = {m: [] for m in METHODS}
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    for scenario in settings.scenarios:
        true = CausalGraph(read_petshop_graph(PETSHOP_DIR / scenario / "graph.csv"), name="petshop")
        learned_of: dict[tuple[str, str, str | None], CausalGraph] = {}
        for issue in petshop_issues(scenario):
            t, nodes, n, w = issue.target, issue.nodes, issue.normal, issue.window
            for m in METHODS:
                started = time.perf_counter()
                if m == "graph-free":
                    order = petshop_rank(
                        nodes, n.values, n.timestamps, w.values, w.timestamps, t.node
                    )
                elif m == "true graph":
                    order = _engine_rank(true, nodes, n.values, w.values, t.node)
                else:
                    toward = t.node if m == LEARNED else None
                    key = (t.metric, t.agg, toward)
                    if key not in learned_of:  # one structure per metric, statistic, target
                        learned = learn_structure(n.values, nodes, toward=toward)
                        learned_of[key] = learned.to_graph("learned")
                    order = _engine_rank(learned_of[key], nodes, n.values, w.values, t.node)
                seconds[m].append(time.perf_counter() - started)
                ranks[m].append(order.index(t.root_cause) + 1 if t.root_cause in order else None)
            say(f"[learned] petshop {scenario} {issue.name}")
    table = Table(
        "PetShop (train split): true graph, learned graph, no graph (root cause at row 2)",
        ["method", "top-1", "top-3", "ms / issue"],
    )
    for m in METHODS:
        table.add(m, _top(ranks[m], 1), _top(ranks[m], 3), f"{1e3 * np.mean(seconds[m]):.3g}")
    table.notes.append(
        f"{len(ranks[METHODS[0]])} issues. Learned: one structure per scenario, metric and "
        "statistic (and target) from noissue/metrics.csv, its time counted once (first issue)."
    )
    return table


def _top(ranks: Sequence[int | None], k: int) -> float:
    return sum(r is not None and r <= k for r in ranks) / max(1, len(ranks))


def _simulator(settings: LearnedSettings) -> Table:
    ac: dict[str, dict[int, list[float]]] = {m: {k: [] for k in (1, 3, 5)} for m in METHODS}
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    precision: dict[str, list[float]] = {}
    recall: dict[str, list[float]] = {}
    for i, case in enumerate(settings.simulator_cases()):
        fault = case.faults[0]
        names = [str(j) for j in range(case.normal.shape[1])]
        for m in METHODS:
            started = time.perf_counter()
            if m == "graph-free":
                order = sim_rank(case.normal, fault.window, fault.fault_row, case.target)
            else:
                graph = case.graph
                if m != "true graph":
                    toward = str(case.target) if m == LEARNED else None
                    learned = learn_structure(case.normal, names, toward=toward)
                    graph = nx.DiGraph()
                    graph.add_nodes_from(range(len(names)))
                    graph.add_edges_from((int(a), int(b)) for a, b in learned.edges)
                    true = {(str(a), str(b)) for a, b in case.graph.edges}
                    hits = len(set(learned.edges) & true)
                    precision.setdefault(m, []).append(hits / max(1, len(learned.edges)))
                    recall.setdefault(m, []).append(hits / max(1, len(true)))
                order = stream_rca_rank(
                    case.normal, fault.window, fault.fault_row, graph, case.target
                )[STREAM_RCA]
            seconds[m].append(time.perf_counter() - started)
            for k in (1, 3, 5):
                ac[m][k].append(accuracy_at(order, fault.causes, k))
        say(f"[learned] simulator {i + 1}/{settings.cases}")
    table = Table(
        f"Multi-cause simulator, {settings.n_nodes}-node DAGs ({settings.cases} cases): "
        "true graph, learned graph, no graph",
        ["method", "AC@1", "AC@3", "AC@5", "seconds / case"],
    )
    for m in METHODS:
        table.add(m, *(float(np.mean(ac[m][k])) for k in (1, 3, 5)), f"{np.mean(seconds[m]):.3g}")
    for m in precision:
        table.notes.append(
            f"{m}: directed-edge precision {np.mean(precision[m]):.2f}, recall "
            f"{np.mean(recall[m]):.2f} against the true graph (means over cases); its time "
            "includes learning."
        )
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learned", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 simulator cases")
    parser.add_argument("--cases", type=int, default=None, help="simulator cases (default 20)")
    parser.add_argument("--skip-petshop", action="store_true", help="the simulator only")
    args = parser.parse_args(argv)
    cases = 3 if args.quick else args.cases if args.cases is not None else 20
    settings = LearnedSettings(cases=cases)
    tables = [] if args.skip_petshop else [_petshop(settings)]
    tables.append(_simulator(settings))
    for t in tables:
        print(t.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

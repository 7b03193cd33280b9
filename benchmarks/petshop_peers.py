"""The reference rankers on the PetShop train split (Hardt et al. 2024), beside each other.

    python -m benchmarks.petshop_peers          # prints markdown tables

Per scenario and (metric, statistic) of the issues' ``target.json``: the normal period is the
whole ``noissue/metrics.csv`` of that metric (empty cells are missing values), the window is
the issue's five rows, and the row explained is row 2 (as the benchmark's own methods score).
Graph methods get the call graph reversed to causal direction (callee -> caller) and rank the
target and its ancestors; the graph-free rows (n-sigma, BARO, ranked correlation without a
graph) rank every column of that metric. Top-1/top-3: the root cause is first / in the first
three. Stream-rca itself on the same issues is :mod:`benchmarks.petshop`.

Specificity, for the methods with an alarm rule: a rule is learnt on the first ``train_share``
of the normal rows and applied to the target on every later normal row (window: that row and
the two before it); specificity is the share of those rows on which it stays quiet, detection
the share of issues whose row 2 it flags. n-sigma flags ``|z| > 3``; the PetShop code's
traversal and ranked correlation flag a median-deviation score above 5 (and return nothing
otherwise).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import numpy.typing as npt

from benchmarks.common import DATA, Report, Table, say
from benchmarks.rankers import (
    GRAPH_FREE,
    RANKERS,
    TRAVERSAL_THRESHOLD,
    fill,
    mad_scores,
)
from stream_rca.io import read_petshop_graph, read_petshop_metrics, read_petshop_target

__all__ = ["PeersSettings", "main", "petshop_peers", "rank_table"]

FloatArray = npt.NDArray[np.float64]
PETSHOP_DIR = DATA / "petshop"
ROW = 2


@dataclass(frozen=True)
class PeersSettings:
    scenarios: tuple[str, ...] = ("low_traffic", "high_traffic")
    train_share: float = 0.8
    rankers: tuple[str, ...] = tuple(RANKERS)
    graph_free: tuple[str, ...] = GRAPH_FREE


@dataclass
class _Issue:
    scenario: str
    name: str
    metric: str
    cause: str
    ranks: dict[str, int | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _z(normal: FloatArray, row: FloatArray) -> FloatArray:
    mean, sd = normal.mean(axis=0), normal.std(axis=0)
    floor = 1e-6 * np.maximum(1.0, np.abs(mean))
    return np.asarray(np.abs(row - mean) / np.where(sd > floor, sd, floor), dtype=np.float64)


_RULES: dict[str, Callable[[FloatArray, FloatArray], npt.NDArray[np.bool_]]] = {
    "n-sigma (|z| > 3)": lambda n, r: _z(n, r) > 3.0,
    f"median deviation > {TRAVERSAL_THRESHOLD:g} (traversal, ranked correlation)": lambda n, r: (
        mad_scores(n, r) > TRAVERSAL_THRESHOLD
    ),
}


def _group(
    scenario: str,
    metric: tuple[str, str],
    issues: list[tuple[_Issue, Path]],
    settings: PeersSettings,
    specificity: Table,
    root: Path = PETSHOP_DIR,
) -> None:
    folder = root / scenario
    edges = read_petshop_graph(folder / "graph.csv")
    in_file = read_petshop_metrics(folder / "noissue" / "metrics.csv", *metric).nodes
    nodes = list(dict.fromkeys([*(n for e in edges for n in e), *in_file]))
    index = {n: i for i, n in enumerate(nodes)}
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(nodes)))
    graph.add_edges_from((index[a], index[b]) for a, b in edges)
    normal = read_petshop_metrics(
        folder / "noissue" / "metrics.csv", *metric, nodes=nodes, ignore_extra=True
    ).values
    windows = []
    for issue, path in issues:
        table = read_petshop_metrics(path, *metric, nodes=nodes, ignore_extra=True)
        windows.append(table.values)
        target = index[read_petshop_target(path.parent / "target.json").node]
        cause = issue.cause
        runs = [(name, graph) for name in settings.rankers]
        runs += [(f"{name} (no graph)", None) for name in settings.graph_free]
        for label, g in runs:
            rank = RANKERS[label.removesuffix(" (no graph)")]
            started = time.perf_counter()
            order = rank(normal, table.values, ROW, g, target)
            issue.seconds[label] = time.perf_counter() - started
            names = [nodes[j] for j in order]
            issue.ranks[label] = names.index(cause) + 1 if cause in names else None
    target = index[read_petshop_target(issues[0][1].parent / "target.json").node]
    n_train = int(settings.train_share * normal.shape[0])
    for rule, flags in _RULES.items():
        quiet = total = 0
        for r in range(n_train, normal.shape[0]):
            nf, wf = fill(normal[:n_train], normal[r - 2 : r + 1])
            total += 1
            quiet += not flags(nf, wf[-1])[target]
        fired = 0
        for w in windows:
            nf, wf = fill(normal, w)
            fired += bool(flags(nf, wf[ROW])[target])
        specificity.add(
            scenario,
            f"{metric[0]} ({metric[1]})",
            rule,
            total,
            quiet / total if total else float("nan"),
            f"{fired}/{len(windows)}",
        )


def rank_table(title: str, issues: Sequence[_Issue], column: str) -> Table:
    """Per issue, the rank every method gave its root cause; ``column`` (``"metric"`` or
    ``"cause"``) is the issue's field shown beside its name."""
    labels = list(issues[0].ranks) if issues else []
    table = Table(title, ["scenario", "issue", column, *labels])
    for i in issues:
        table.add(i.scenario, i.name, getattr(i, column), *(str(i.ranks[k] or "-") for k in labels))
    return table


def petshop_peers(settings: PeersSettings) -> Report:
    """Top-1/top-3 of every reference ranker, latency and availability apart."""
    issues: list[_Issue] = []
    specificity = Table(
        "PetShop (train split): specificity of the peers' alarm rules on the target",
        ["scenario", "metric", "rule", "held-out normal rows", "specificity", "issues flagged"],
    )
    for scenario in settings.scenarios:
        folder = PETSHOP_DIR / scenario
        groups: dict[tuple[str, str], list[tuple[_Issue, Path]]] = {}
        paths = sorted(folder.glob("train/issue_*"), key=lambda p: int(p.name.split("_")[1]))
        for d in paths:
            t = read_petshop_target(d / "target.json")
            issue = _Issue(scenario, d.name, t.metric, t.root_cause)
            groups.setdefault((t.metric, t.agg), []).append((issue, d / "metrics.csv"))
            issues.append(issue)
        for metric, members in groups.items():
            say(f"[petshop peers] {scenario} {metric[0]}/{metric[1]}: {len(members)} issues")
            _group(scenario, metric, members, settings, specificity)
    labels = list(issues[0].ranks) if issues else []
    metrics = sorted({i.metric for i in issues}, key=lambda m: (m != "latency", m))
    headers = ["method", "graph"]
    for m in [*metrics, "all"]:
        headers += [f"{m} top-1", f"{m} top-3"]
    summary = Table("PetShop (train split): the reference rankers, root cause at row 2", headers)
    summary.headers = [*headers, "ms / issue"]
    for label in labels:
        cells: list[object] = [
            label.removesuffix(" (no graph)"),
            "none" if label.endswith("(no graph)") else "causal",
        ]
        for m in [*metrics, "all"]:
            group = [i for i in issues if m in ("all", i.metric)]
            ranks = [i.ranks[label] for i in group]
            cells.append(sum(r == 1 for r in ranks) / len(group))
            cells.append(sum(r is not None and r <= 3 for r in ranks) / len(group))
        cells.append(f"{1e3 * float(np.mean([i.seconds[label] for i in issues])):.3g}")
        summary.add(*cells)
    counts = {m: sum(i.metric == m for i in issues) for m in metrics}
    causes = sorted({i.cause for i in issues})
    summary.notes.append(
        "Issues: "
        + ", ".join(f"{m} {c}" for m, c in counts.items())
        + f" ({', '.join(settings.scenarios)}); their root causes: {', '.join(causes)}. "
        "Normal period: all of noissue/metrics.csv. Rankers: benchmarks/rankers.py."
    )
    detail = rank_table(
        "PetShop issues: rank of the root cause per method (- : not ranked)", issues, "metric"
    )
    specificity.notes.append(
        f"Rules learnt on the first {settings.train_share:.0%} of noissue/metrics.csv, applied "
        "to every later row; the other methods have no alarm of their own."
    )
    return Report(tables=[summary, specificity, detail])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.petshop_peers", description=__doc__)
    parser.add_argument(
        "--scenarios", default="low_traffic,high_traffic", help="comma-separated scenarios"
    )
    args = parser.parse_args(argv)
    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    report = petshop_peers(PeersSettings(scenarios=scenarios))
    for t in report.tables:
        print(t.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

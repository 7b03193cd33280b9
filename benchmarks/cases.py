"""The cases the benchmarks run on: the attribution cases both tools are timed on (the DoWhy
example and simulated random DAGs), and the PetShop issues and multi-cause simulator cases of
the graph-free and learned-structure comparisons."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.common import DATA, read_rows
from stream_rca.core.engine import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.io import MetricTable, PetshopTarget, read_petshop_metrics, read_petshop_target
from stream_rca.sim import MicroserviceSystem, random_faults
from stream_rca.sim.multicause import MulticauseCase, multicause_case

__all__ = [
    "PETSHOP_DIR",
    "AttributionCase",
    "CaseSettings",
    "PetshopIssue",
    "dowhy_example",
    "petshop_issues",
    "reorder",
    "simulated",
    "widest_sink",
]

FloatArray = npt.NDArray[np.float64]

DOWHY_DIR = DATA / "dowhy-microservice"
PETSHOP_DIR = DATA / "petshop"


@dataclass(frozen=True)
class AttributionCase:
    """Training rows, anomalous rows and the truth, all in the graph's node order."""

    name: str
    graph: CausalGraph
    target: str
    train: FloatArray
    anomalies: FloatArray
    truth: tuple[frozenset[str], ...]
    config: EngineConfig
    """stream-rca's settings for this case."""

    @property
    def players(self) -> int:
        return len(self.graph.ancestors(self.target)) + 1


def reorder(header: list[str], values: FloatArray, graph: CausalGraph) -> FloatArray:
    """Columns of ``values`` (named by ``header``) in the graph's node order."""
    where = {n: i for i, n in enumerate(header)}
    missing = [n for n in graph.nodes if n not in where]
    if missing:
        raise ValueError(f"the data lacks columns for nodes {missing[:5]}")
    out: FloatArray = values[:, [where[n] for n in graph.nodes]]
    return out


def dowhy_example(folder: Path = DOWHY_DIR, anomaly_file: str = "anomaly.csv") -> AttributionCase:
    """The 11-node shop of the DoWhy-GCM example: learn ``normal.csv``, attribute an anomaly file.

    stream-rca uses ``forgetting=0`` (the data are stationary) and a 1024-value reservoir.
    """
    with (folder / "graph.json").open(encoding="utf-8") as f:
        edges = [(str(a), str(b)) for a, b in json.load(f)["edges"]]
    graph = CausalGraph(edges, name="dowhy-microservice")
    header, normal = read_rows(folder / "normal.csv")
    a_header, anomalies = read_rows(folder / anomaly_file)
    rows = reorder(a_header, anomalies, graph)
    return AttributionCase(
        name=f"dowhy-microservice ({anomaly_file})",
        graph=graph,
        target="Website",
        train=reorder(header, normal, graph),
        anomalies=rows,
        truth=(frozenset({"Caching Service"}),) * rows.shape[0],
        config=EngineConfig(forgetting=0.0, reservoir=1024),
    )


def widest_sink(graph: CausalGraph) -> str:
    """The sink with the most ancestors (ties: the first in node order)."""
    return max(graph.sinks, key=lambda s: len(graph.ancestors(s)))


def simulated(
    n_nodes: int,
    *,
    seed: int = 0,
    n_train: int = 2000,
    n_anomalies: int = 3,
    strength: tuple[float, float] = (6.0, 8.0),
) -> AttributionCase:
    """A random service DAG with ``n_anomalies`` single-step faults planted after training.

    The target is the sink with the most ancestors; each fault hits a different ancestor and
    is calibrated to raise the target's mean by ``strength`` of its standard deviations.
    """
    sim = MicroserviceSystem.random(n_nodes, seed=seed)
    graph = CausalGraph(sim.edges, sim.nodes, name=f"random-{n_nodes}")
    target = widest_sink(graph)
    cols = [sim.index(n) for n in graph.nodes]
    train = sim.sample(n_train)[:, cols]
    faults = random_faults(
        sim,
        target,
        n_anomalies,
        every=1,
        duration=1,
        start=sim.step_index,
        rng=seed,
        strength=strength,
    )
    sim.faults = faults
    anomalies = sim.sample(n_anomalies)[:, cols]
    return AttributionCase(
        name=f"random DAG, {n_nodes} nodes",
        graph=graph,
        target=target,
        train=train,
        anomalies=anomalies,
        truth=tuple(frozenset(f.nodes) for f in faults),
        config=EngineConfig(),
    )


@dataclass(frozen=True)
class CaseSettings:
    """Which cases a comparison runs on: PetShop scenarios and multi-cause simulator cases."""

    scenarios: tuple[str, ...] = ("low_traffic", "high_traffic")
    cases: int = 50
    n_nodes: int = 50
    n_normal: int = 1440
    seed: int = 0

    def simulator_cases(self) -> Iterator[MulticauseCase]:
        """The simulator cases, one per seed ``[seed, i]`` (:func:`multicause_case`)."""
        for i in range(self.cases):
            rng = np.random.default_rng([self.seed, i])
            yield multicause_case(rng, n_nodes=self.n_nodes, n_normal=self.n_normal)


@dataclass(frozen=True)
class PetshopIssue:
    """One PetShop issue: its truth, and its metric and statistic in the normal file and in its
    window, both with the same columns (``nodes``: the normal file's, then the window's)."""

    name: str
    target: PetshopTarget
    nodes: list[str]
    normal: MetricTable
    window: MetricTable


def petshop_issues(scenario: str, folder: Path = PETSHOP_DIR) -> Iterator[PetshopIssue]:
    """The train-split issues of a PetShop scenario, in issue order."""
    base = folder / scenario
    normal_file = base / "noissue" / "metrics.csv"
    issues = sorted(base.glob("train/issue_*"), key=lambda p: int(p.name.split("_")[1]))
    for d in issues:
        t = read_petshop_target(d / "target.json")
        normal = read_petshop_metrics(normal_file, t.metric, t.agg)
        window = read_petshop_metrics(d / "metrics.csv", t.metric, t.agg)
        nodes = list(dict.fromkeys([*normal.nodes, *window.nodes]))
        yield PetshopIssue(
            d.name,
            t,
            nodes,
            read_petshop_metrics(normal_file, t.metric, t.agg, nodes=nodes, ignore_extra=True),
            read_petshop_metrics(
                d / "metrics.csv", t.metric, t.agg, nodes=nodes, ignore_extra=True
            ),
        )

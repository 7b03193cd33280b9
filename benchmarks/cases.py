"""The attribution cases both tools are timed on: the DoWhy example and simulated random DAGs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.common import DATA, read_rows
from stream_rca.core.engine import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.sim import MicroserviceSystem, random_faults

__all__ = ["AttributionCase", "dowhy_example", "reorder", "simulated", "widest_sink"]

FloatArray = npt.NDArray[np.float64]

DOWHY_DIR = DATA / "dowhy-microservice"


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

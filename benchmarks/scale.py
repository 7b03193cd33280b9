"""How stream-rca's cost grows: the per-snapshot learn-and-score step, memory, attribution size.

- Per-snapshot step: a warm engine (one watched target, so that the step is the per-node work)
  is fed simulated snapshots with :meth:`Engine.process_array` (values already in graph order)
  and with :meth:`Engine.process_one` (a dict per snapshot); node updates per second are
  ``nodes * snapshots / seconds``, per wall second and per CPU second of this process (the
  latter is "per core" even if numpy used more than one thread).
- Memory: :meth:`Engine.nbytes` and the pickled checkpoint size, per node.
- Attribution: :meth:`Engine.explain` time against the number of players (target + ancestors)
  for targets of different depth in one large random DAG.
"""

from __future__ import annotations

import pickle
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt

from benchmarks.cases import widest_sink
from benchmarks.common import Check, Report, Table, ms, say, snapshot, time_calls
from benchmarks.profiling import profile_text
from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.sim import MicroserviceSystem

__all__ = ["ScaleSettings", "scaling"]

FloatArray = npt.NDArray[np.float64]

UPDATES_TARGET = 100_000.0
SNAPSHOT_TARGET = 0.100


@dataclass(frozen=True)
class ScaleSettings:
    sizes: tuple[int, ...] = (11, 100, 1000, 10_000)
    seconds_per_size: float = 3.0
    """Time spent measuring each size (bounded by ``max_rows``)."""
    max_rows: int = 2000
    warmup: int = 20
    block: int = 64
    """Snapshots per :meth:`Engine.process_block` call in the block measurement."""
    growth_nodes: int = 1000
    growth_players: tuple[int, ...] = (5, 10, 12, 13, 20, 40, 80, 160, 320)
    repeat: int = 5
    seed: int = 0


def _system(n: int, seed: int) -> tuple[MicroserviceSystem, CausalGraph, list[int]]:
    sim = MicroserviceSystem.shop(seed=seed) if n == 11 else MicroserviceSystem.random(n, seed=seed)
    name = "shop" if n == 11 else f"random-{n}"
    graph = CausalGraph(sim.edges, sim.nodes, name=name)
    return sim, graph, [sim.index(v) for v in graph.nodes]


@dataclass
class _Step:
    nodes: int
    edges: int
    rows: int
    array_wall: list[float]
    array_cpu: float
    one_wall: list[float]
    block_per_snapshot: float
    block_cpu_per_snapshot: float
    nbytes: int
    pickled: int
    engine: Engine
    sample_row: FloatArray


def _measure_step(n: int, settings: ScaleSettings) -> _Step:
    say(f"[scale] per-snapshot step, {n} nodes")
    sim, graph, cols = _system(n, settings.seed)
    cfg = EngineConfig(warmup=settings.warmup)
    engine = Engine(graph, cfg, targets=[widest_sink(graph)])
    warm_rows = sim.sample(settings.warmup + 16)[:, cols]  # + one noise-model refresh
    for t, row in enumerate(warm_rows):
        engine.process_array(float(t), row)
    probe = sim.sample(5)[:, cols]
    t0 = time.perf_counter()
    for t, row in enumerate(probe):
        engine.process_array(float(1_000_000 + t), row)
    per = (time.perf_counter() - t0) / probe.shape[0]
    rows = int(min(settings.max_rows, max(20, settings.seconds_per_size / max(per, 1e-9))))
    data = sim.sample(rows)[:, cols]
    wall = []
    c0 = time.process_time()
    for t, row in enumerate(data):
        w0 = time.perf_counter()
        engine.process_array(float(2_000_000 + t), row)
        wall.append(time.perf_counter() - w0)
    cpu = (time.process_time() - c0) / rows
    n_one = max(10, rows // 4)
    snaps = [snapshot(graph, row, float(3_000_000 + t)) for t, row in enumerate(data[:n_one])]
    one = []
    for s in snaps:
        w0 = time.perf_counter()
        engine.process_one(s)
        one.append(time.perf_counter() - w0)
    block = settings.block
    n_blocks = max(1, rows // block)
    blocks = sim.sample(n_blocks * block)[:, cols].reshape(n_blocks, block, -1)
    c0, w0 = time.process_time(), time.perf_counter()
    for b, chunk in enumerate(blocks):
        engine.process_block(4_000_000 + b * block + np.arange(block, dtype=np.float64), chunk)
    block_wall = (time.perf_counter() - w0) / (n_blocks * block)
    block_cpu = (time.process_time() - c0) / (n_blocks * block)
    return _Step(
        nodes=n,
        edges=graph.n_edges,
        rows=rows,
        array_wall=wall,
        array_cpu=cpu,
        one_wall=one,
        block_per_snapshot=block_wall,
        block_cpu_per_snapshot=block_cpu,
        nbytes=engine.nbytes(),
        pickled=len(pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL)),
        engine=engine,
        sample_row=data[-1],
    )


def _growth(settings: ScaleSettings) -> Table:
    say(f"[scale] attribution time vs players, {settings.growth_nodes}-node DAG")
    sim, graph, cols = _system(settings.growth_nodes, settings.seed)
    count = {v: len(graph.ancestors(v)) + 1 for v in graph.nodes}
    targets: list[str] = []
    for want in settings.growth_players:
        best = min(graph.nodes, key=lambda v: (abs(count[v] - want), v))
        if best not in targets:
            targets.append(best)
    cfg = EngineConfig(warmup=settings.warmup)
    engine = Engine(graph, cfg, targets=targets)
    for t, row in enumerate(sim.sample(200)[:, cols]):
        engine.process_array(float(t), row)
    snap = snapshot(graph, sim.sample(1)[0, cols], 1e6)
    table = Table(
        f"Cost growth: attribution time vs players (target + ancestors), "
        f"{settings.growth_nodes}-node random DAG",
        ["players", "method", "time / attribution", "time / player"],
    )
    for target in sorted(targets, key=count.__getitem__):
        timing, att = time_calls(partial(engine.explain, snap, target), settings.repeat)
        d = count[target]
        table.add(d, att.method, ms(timing.median), ms(timing.median / d))
    table.notes.append(
        f"Exact Shapley up to {cfg.exact_max_players} players (2^d coalitions, "
        f"{cfg.n_samples} Monte Carlo draws each); beyond, {cfg.n_permutations} antithetic "
        "permutations of d+1 prefixes each: 64(d+1) coalitions, so the cost grows about "
        "linearly with the number of players d."
    )
    return table


def _step_once(engine: Engine, row: FloatArray, clock: Iterator[int]) -> None:
    engine.process_array(float(next(clock)), row)


def scaling(settings: ScaleSettings) -> Report:
    """Per-snapshot throughput, memory per node, and attribution cost growth."""
    report = Report()
    steps = [_measure_step(n, settings) for n in settings.sizes]
    table = Table(
        "Per-snapshot learn-and-score step (one watched target)",
        [
            "nodes",
            "edges",
            "snapshots timed",
            "process_array median",
            "p99",
            "node updates/s (wall)",
            "node updates/s per CPU-s",
            "process_one median",
            "process_block, per snapshot",
            "node updates/s per CPU-s (block)",
        ],
    )
    memory = Table(
        "State memory",
        ["nodes", "engine.nbytes()", "bytes/node", "pickled", "pickled bytes/node"],
    )
    for s in steps:
        med = statistics.median(s.array_wall)
        p99 = float(np.percentile(s.array_wall, 99))
        table.add(
            s.nodes,
            s.edges,
            s.rows,
            ms(med),
            ms(p99),
            s.nodes / med,
            s.nodes / s.array_cpu,
            ms(statistics.median(s.one_wall)),
            ms(s.block_per_snapshot),
            s.nodes / s.block_cpu_per_snapshot,
        )
        memory.add(s.nodes, s.nbytes, s.nbytes / s.nodes, s.pickled, float(s.pickled / s.nodes))
    table.notes.append(
        "process_array: values already in graph order (NaN = missing); process_one: a dict "
        "per snapshot (includes building the value vector). Both score every node, learn, and "
        f"run the trigger. process_block: {settings.block} snapshots per call (the backfill "
        "path: scored against the models as they were before the block, then learned at once)."
    )
    memory.notes.append(
        f"Reservoir of {EngineConfig().reservoir} residuals per node (float64) dominates; "
        "pickled = the whole engine, as a checkpoint."
    )
    report.tables.extend([table, memory, _growth(settings)])

    rates = {s.nodes: s.nodes / s.array_cpu for s in steps}
    slow = [n for n, r in rates.items() if r < UPDATES_TARGET]
    report.checks.append(
        Check(
            ">= 100,000 node updates/s per core (per-snapshot learn-and-score)",
            ", ".join(f"{n:,} nodes: {r:,.0f}/s" for n, r in rates.items()),
            not slow,
        )
    )
    big = [s for s in steps if s.nodes >= 10_000]
    if big:
        med = statistics.median(big[-1].array_wall)
        report.checks.append(
            Check(
                "a 10,000-node snapshot in < 100 ms",
                f"{ms(med)} median, {ms(float(np.percentile(big[-1].array_wall, 99)))} p99",
                med < SNAPSHOT_TARGET,
            )
        )
        if med >= SNAPSHOT_TARGET:
            slow.append(big[-1].nodes)
    per_node = ", ".join(f"{s.nodes:,}: {s.nbytes / s.nodes:,.0f} B" for s in steps)
    report.checks.append(Check("state memory per node (reported)", per_node, None))
    for s in steps:
        if s.nodes in slow:
            report.profiles[f"Engine.process_array, {s.nodes:,} nodes"] = profile_text(
                partial(_step_once, s.engine, s.sample_row, iter(range(10**7, 2 * 10**7))),
                repeat=max(5, min(200, 2_000_000 // s.nodes)),
            )
    return report

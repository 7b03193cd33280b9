"""Accuracy: the DoWhy example, simulated fault streams, and the PetShop benchmark.

- DoWhy example: learn ``normal.csv``, then rank the root causes of ``anomaly.csv`` and of each of
  the 1000 rows of ``anomaly_1000.csv`` with :meth:`Engine.explain` (truth: Caching Service).
- Simulator: the engine runs as a stream with its trigger (not just ``explain``): fault-free
  training, then faults of one kind at a watched target every ``every`` snapshots. A fault is
  detected when an attribution (incident opened or worsened) comes while it is active or up to
  ``slack`` snapshots after; its first such attribution is ranked. An incident that opens
  outside every fault window is a false alarm.
- PetShop: :mod:`benchmarks.petshop`.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks.cases import dowhy_example, widest_sink
from benchmarks.common import Report, Table, ms, say, snapshot, train_engine
from benchmarks.petshop import PetshopSettings, petshop
from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.trigger import TriggerConfig
from stream_rca.core.types import Attribution
from stream_rca.sim import FaultKind, MicroserviceSystem, random_faults

__all__ = ["AccuracySettings", "accuracy", "dowhy_accuracy", "simulated_streams"]


@dataclass(frozen=True)
class AccuracySettings:
    anomaly_rows: int | None = None
    """Rows of ``anomaly_1000.csv`` to rank (``None``: all)."""
    topologies: tuple[str, ...] = ("shop", "random-20", "random-50")
    kinds: tuple[FaultKind, ...] = ("latency_shift", "mechanism_change")
    seeds: tuple[int, ...] = (0, 1)
    n_train: int = 1000
    n_faults: int = 20
    every: int = 60
    duration: int = 5
    slack: int = 2
    strength: tuple[float, float] = (3.0, 6.0)
    thresholds: tuple[float, ...] = (9.0, 7.0)
    """Trigger thresholds of the simulated streams (9 is the default), one run each."""
    petshop: PetshopSettings = field(default_factory=PetshopSettings)


def _rank(att: Attribution, truth: frozenset[str]) -> int | None:
    for i, rc in enumerate(att.root_causes, start=1):
        if rc.node in truth:
            return i
    return None


def dowhy_accuracy(settings: AccuracySettings) -> Table:
    """Top-1/top-3 of stream-rca's explain on the DoWhy example's anomaly files."""
    table = Table(
        "DoWhy microservice example: is the Caching Service ranked first?",
        ["anomaly file", "rows", "top-1", "top-3", "most frequent top node", "time / row"],
    )
    for name, limit in (("anomaly.csv", None), ("anomaly_1000.csv", settings.anomaly_rows)):
        case = dowhy_example(anomaly_file=name)
        say(f"[accuracy] DoWhy example, {name}")
        engine = train_engine(case.graph, case.config, case.train, targets=[case.target])
        rows = case.anomalies if limit is None else case.anomalies[:limit]
        ranks, tops, started = [], [], time.perf_counter()
        for i, row in enumerate(rows):
            att = engine.explain(snapshot(case.graph, row, 1e6 + i), case.target)
            ranks.append(_rank(att, case.truth[0]))
            tops.append(att.root_causes[0].node)
        elapsed = (time.perf_counter() - started) / max(len(rows), 1)
        n = len(rows)
        common = max(set(tops), key=tops.count)
        table.add(
            name,
            n,
            sum(r == 1 for r in ranks) / n,
            sum(r is not None and r <= 3 for r in ranks) / n,
            f"{common} ({tops.count(common)}/{n})",
            ms(elapsed),
        )
    table.notes.append(
        "Learned from normal.csv (10,000 rows, forgetting=0, 1024-value reservoirs); "
        "`Engine.explain` on each row, no learning in between. DoWhy-GCM's own top node on "
        "anomaly.csv is in the speed table."
    )
    return table


def _system(topology: str, seed: int) -> MicroserviceSystem:
    if topology == "shop":
        return MicroserviceSystem.shop(seed=seed)
    return MicroserviceSystem.random(int(topology.split("-")[1]), seed=seed)


@dataclass
class _StreamResult:
    faults: int = 0
    detected: int = 0
    top1: int = 0
    top3: int = 0
    false_alarms: int = 0
    fault_free: int = 0
    delays: list[int] | None = None


def _stream(
    topology: str, kind: FaultKind, seed: int, threshold: float, s: AccuracySettings
) -> _StreamResult:
    sim = _system(topology, seed)
    graph = CausalGraph(sim.edges, sim.nodes, name=topology)
    target = "Website" if topology == "shop" else widest_sink(graph)
    cols = [sim.index(n) for n in graph.nodes]
    config = EngineConfig(trigger=TriggerConfig(threshold=threshold))
    engine = Engine(graph, config, targets=[target])
    for t, row in enumerate(sim.sample(s.n_train)[:, cols]):
        engine.process_array(float(t), row)
    start = sim.step_index + s.every // 2
    faults = random_faults(
        sim,
        target,
        s.n_faults,
        every=s.every,
        duration=s.duration,
        start=start,
        rng=seed,
        kinds=(kind,),
        strength=s.strength,
    )
    sim.faults = faults
    first = sim.step_index
    n_steps = start + s.n_faults * s.every - first
    opened: list[int] = []
    attributed: list[tuple[int, Attribution]] = []
    for k, row in enumerate(sim.sample(n_steps)[:, cols]):
        t = first + k
        r = engine.process_array(float(t), row)
        opened.extend(t for ev in r.events if ev.kind == "opened")
        attributed.extend((t, a) for a in r.attributions)
    out = _StreamResult(faults=len(faults), delays=[])
    windows = [(f.start, f.end + s.slack) for f in faults]
    for f, (lo, hi) in zip(faults, windows, strict=True):
        hits = [(t, a) for t, a in attributed if lo <= t < hi]
        if not hits:
            continue
        t, att = hits[0]
        out.detected += 1
        assert out.delays is not None
        out.delays.append(t - f.start)
        rank = _rank(att, frozenset(f.nodes))
        out.top1 += rank == 1
        out.top3 += rank is not None and rank <= 3
    out.false_alarms = sum(not any(lo <= t < hi for lo, hi in windows) for t in opened)
    out.fault_free = sum(
        not any(lo <= first + k < hi for lo, hi in windows) for k in range(n_steps)
    )
    return out


def simulated_streams(settings: AccuracySettings) -> Table:
    """Detection, ranking and false alarms of the engine run as a stream on simulated faults."""
    table = Table(
        "Simulator: the engine as a stream with its trigger",
        [
            "topology",
            "fault kind",
            "threshold",
            "faults",
            "detected",
            "missed",
            "top-1 (of detected)",
            "top-3 (of detected)",
            "median delay",
            "false alarms",
            "per 1000 fault-free snapshots",
        ],
    )
    for topology, kind, th in itertools.product(
        settings.topologies, settings.kinds, settings.thresholds
    ):
        say(f"[accuracy] simulator: {topology}, {kind}, threshold {th:g}")
        runs = [_stream(topology, kind, seed, th, settings) for seed in settings.seeds]
        faults = sum(r.faults for r in runs)
        det = sum(r.detected for r in runs)
        delays: Sequence[int] = [d for r in runs for d in (r.delays or [])]
        free = sum(r.fault_free for r in runs)
        fa = sum(r.false_alarms for r in runs)
        table.add(
            topology,
            kind,
            th,
            faults,
            det,
            faults - det,
            sum(r.top1 for r in runs) / det if det else float("nan"),
            sum(r.top3 for r in runs) / det if det else float("nan"),
            statistics.median(delays) if delays else "-",
            fa,
            1000.0 * fa / free if free else float("nan"),
        )
    s = settings
    table.notes.append(
        f"Seeds {list(s.seeds)}; per seed: {s.n_train} fault-free training snapshots, then "
        f"{s.n_faults} faults of {s.duration} snapshots every {s.every}, each at one ancestor "
        f"of the watched sink, calibrated to raise its mean by {s.strength[0]:g}-"
        f"{s.strength[1]:g} of its standard deviations. Default `EngineConfig` but for the "
        f"trigger threshold (default {TriggerConfig().threshold:g} nats). Detected: an attribution "
        f"while the fault is active or up to {s.slack} snapshots after; delay in snapshots "
        "from the fault's start. Top-k: the fault's node among the first k of that attribution."
    )
    return table


def accuracy(settings: AccuracySettings) -> Report:
    """Every accuracy benchmark."""
    report = Report()
    report.tables.append(dowhy_accuracy(settings))
    report.tables.append(simulated_streams(settings))
    report.extend(petshop(settings.petshop))
    return report

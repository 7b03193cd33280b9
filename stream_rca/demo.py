"""The embedded demo: a simulated shop streamed through the engine in-process, with faults.

No broker: the simulator produces snapshots, the engine scores them, incidents open and are
attributed, and each is compared with the injected truth. Everything is seeded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.types import Attribution, StepResult
from stream_rca.parallel import attribution_pool
from stream_rca.sim import Fault, FaultKind, FaultSchedule, MicroserviceSystem, random_faults

__all__ = ["DemoReport", "DemoSettings", "run_demo"]

_KINDS: tuple[FaultKind, ...] = ("latency_shift", "mechanism_change")


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What the demo simulates."""

    seed: int = 0
    faults: int = 8
    warmup: int = 300
    """Fault-free snapshots before the first fault."""
    spacing: int = 120
    """Snapshots between fault starts."""
    duration: int = 6
    strength: tuple[float, float] = (6.0, 10.0)
    """Fault size: the shift of the target's mean, in its standard deviations."""
    step: float = 10.0
    """Seconds per snapshot (the scrape interval); timestamps start at a fixed epoch."""
    epoch: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    @property
    def n_snapshots(self) -> int:
        return self.warmup + self.faults * self.spacing + self.spacing


@dataclass(slots=True)
class DemoReport:
    """What happened in a demo run."""

    faults: int = 0
    detected: int = 0
    false_alarms: int = 0
    top1: int = 0
    top3: int = 0
    attributions: list[Attribution] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    snapshots: int = 0
    seconds: float = 0.0

    @property
    def missed(self) -> int:
        return self.faults - self.detected

    def summary(self) -> dict[str, Any]:
        lat = np.array(self.latencies) * 1000.0 if self.latencies else np.zeros(1)
        d = max(self.detected, 1)
        return {
            "snapshots": self.snapshots,
            "faults": self.faults,
            "detected": self.detected,
            "missed": self.missed,
            "false_alarms": self.false_alarms,
            "top1_accuracy": self.top1 / d,
            "top3_accuracy": self.top3 / d,
            "attribution_ms_p50": float(np.percentile(lat, 50)),
            "attribution_ms_p99": float(np.percentile(lat, 99)),
            "snapshot_us_mean": 1e6 * self.seconds / max(self.snapshots, 1),
        }


def _schedule(sim: MicroserviceSystem, cfg: DemoSettings) -> FaultSchedule:
    rng = np.random.default_rng(cfg.seed)
    faults: list[Fault] = []
    for i in range(cfg.faults):
        kind = _KINDS[i % len(_KINDS)]
        one = random_faults(
            sim,
            "Website",
            1,
            every=1,
            duration=cfg.duration,
            start=cfg.warmup + i * cfg.spacing,
            rng=rng,
            kinds=(kind,),
            strength=cfg.strength,
        )
        faults.extend(one)
    return FaultSchedule(faults)


def run_demo(
    cfg: DemoSettings,
    *,
    on_step: Callable[[int, StepResult, float], None] | None = None,
    on_incident: Callable[[Attribution, frozenset[str], bool], None] | None = None,
    output: IO[str] | None = None,
    report_dir: str | Path | None = None,
) -> DemoReport:
    """Stream the simulated shop through an engine and score its attributions.

    Parameters
    ----------
    cfg
        What to simulate.
    on_step
        Called after every snapshot with its index, result and processing seconds.
    on_incident
        Called with each new incident's attribution, the injected root causes active then (empty
        for a false alarm) and whether the top cause is one of them.
    output
        Where to write attribution documents, one JSON per line, with the injected truth.
    report_dir
        Where to write an HTML page per incident (:class:`~stream_rca.report.ReportWriter`).
    """
    sim = MicroserviceSystem.shop(seed=cfg.seed)
    sim.faults = _schedule(sim, cfg)
    graph = CausalGraph(sim.edges, sim.nodes, name="shop")
    engine = Engine(
        graph,
        EngineConfig(warmup=min(200, cfg.warmup), seed=cfg.seed),
        targets=["Website"],
        timer=time.perf_counter,
        pool=attribution_pool(),
    )
    report = DemoReport(faults=cfg.faults)
    pages = None
    if report_dir is not None:
        from stream_rca.report import ReportWriter

        pages = ReportWriter(report_dir, {graph.name: list(graph.edges)})
    seen_faults: set[int] = set()
    started = time.perf_counter()
    for t, row in _rows(sim, cfg.n_snapshots):
        ts = cfg.epoch + t * cfg.step
        tick = time.perf_counter()
        result = engine.process_array(ts, row, end=ts + cfg.step)
        seconds = time.perf_counter() - tick
        report.snapshots += 1
        for att in result.attributions:
            if att.seconds is not None:
                report.latencies.append(att.seconds)
            if att.revision > 0:
                continue
            active = sim.active_faults(t)
            truth = frozenset(n for f in active for n in f.nodes)
            ranked = [rc.node for rc in att.root_causes]
            hit = bool(truth) and ranked[0] in truth
            if truth:
                key = id(active[0])
                if key not in seen_faults:
                    seen_faults.add(key)
                    report.detected += 1
                    report.top1 += hit
                    report.top3 += any(n in truth for n in ranked[:3])
            else:
                report.false_alarms += 1
            report.attributions.append(att)
            doc = att.to_dict()
            doc["truth"] = {
                "root_causes": sorted(truth),
                "faults": [{"kind": f.kind, "nodes": list(f.nodes)} for f in active],
            }
            if output is not None:
                output.write(json.dumps(doc) + "\n")
            if pages is not None:
                pages.truth[att.incident_id] = tuple(doc["truth"]["root_causes"])
            if on_incident is not None:
                on_incident(att, truth, hit)
        if pages is not None:
            pages.observe(result)
        if on_step is not None:
            on_step(t, result, seconds)
    if pages is not None:
        pages.flush()
    report.seconds = time.perf_counter() - started
    return report


def _rows(sim: MicroserviceSystem, n: int) -> Iterator[tuple[int, np.ndarray]]:
    """The simulated snapshots, generated in blocks (fast) and handed out one by one."""
    t = 0
    while t < n:
        block = sim.sample(min(256, n - t))
        for row in block:
            yield t, row
            t += 1


def open_output(path: str | None) -> IO[str] | None:
    """The JSONL output file, or ``None``."""
    return None if path is None else Path(path).open("w", encoding="utf-8")

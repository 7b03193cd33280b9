"""Simulated metric streams for Kafka: seeded systems with injected faults and their truth.

:class:`Simulation` draws the metrics of ``K`` simulated systems (graphs ``shop-0`` ...
``shop-{K-1}``, each its own seeded :class:`~stream_rca.sim.MicroserviceSystem` with its own
random faults) as encoded input events, snapshot after snapshot, and says the ground truth:
which nodes are faulty in which windows. :func:`stream_rca.streaming.producers.simulate`
publishes them; tests publish them in phases.

Event time: window ``i`` of a graph starts at ``t0 + i * step``; ``t0`` is chosen so the last
window of a bounded run is not in the future (the worker rejects events more than 300 s
ahead of its clock); an unbounded run starts one day in the past. Every event of window ``i``
carries ``ts = t0 + i * step``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rca.errors import ConfigError
from stream_rca.io.events import encode_batch, encode_event
from stream_rca.sim import MicroserviceSystem, random_faults

__all__ = [
    "TRUTH_SCHEMA",
    "RateLimiter",
    "SimulatedGraph",
    "Simulation",
    "SimulationConfig",
    "SimulationReport",
    "graphs_document",
    "simulated_graphs",
]

TRUTH_SCHEMA = "stream-rca.truth/v1"


class RateLimiter:
    """Pace a loop at ``rate`` iterations per second (``rate <= 0``: no limit).

    Examples
    --------
    >>> limiter = RateLimiter(0)
    >>> limiter.wait(10)  # never sleeps
    0.0
    """

    def __init__(self, rate: float, clock: Any = time.monotonic, sleep: Any = time.sleep) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.start = clock()

    def wait(self, done: int) -> float:
        """Sleep until ``done`` iterations are due; return the seconds slept."""
        if self.rate <= 0:
            return 0.0
        due = self.start + done / self.rate
        delay = due - self.clock()
        if delay > 0:
            self.sleep(delay)
            return float(delay)
        return 0.0


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What :func:`simulate` publishes.

    Parameters
    ----------
    graphs
        Number of simulated systems (graphs ``{prefix}-0`` ... ``{prefix}-{graphs-1}``).
    prefix
        Graph name prefix.
    names
        Explicit graph names instead (as many as ``graphs``).
    nodes
        0 for the 11-node shop system, else a random service system of this many nodes.
    seed
        Seeds every system (graph ``k`` uses ``seed + k``) and its faults.
    count
        Snapshots per graph; ``None`` for no bound (then ``duration`` or Ctrl-C stops).
    duration
        Seconds of wall time to run, ``None`` for no bound.
    rate
        Snapshots per second, summed over all graphs (0: as fast as possible). In the single
        form each snapshot is one message per node.
    step
        Seconds of event time per snapshot (the graphs' window).
    batch
        Batch form (one message per snapshot) or single form (one message per node value).
    faults
        Faults injected per graph.
    first_fault
        Snapshot index of the first fault (the fault-free warm-up before it).
    fault_every
        Snapshots between fault starts.
    fault_duration
        Snapshots a fault lasts.
    strength
        Fault strength range, in standard deviations of the target's latency.
    target
        The watched node faults must show at (default: ``Website``, or the first sink).
    start
        Event time of the first window; default as in the module docstring.
    """

    graphs: int = 1
    prefix: str = "shop"
    names: tuple[str, ...] = ()
    nodes: int = 0
    seed: int = 0
    count: int | None = 1000
    duration: float | None = None
    rate: float = 100.0
    step: float = 1.0
    batch: bool = True
    faults: int = 3
    first_fault: int = 200
    fault_every: int = 100
    fault_duration: int = 5
    strength: tuple[float, float] = (6.0, 10.0)
    target: str | None = None
    start: float | None = None

    def __post_init__(self) -> None:
        if self.graphs < 1 or self.nodes < 0 or self.faults < 0:
            raise ConfigError("graphs must be >= 1, nodes >= 0 and faults >= 0")
        if self.names and len(self.names) != self.graphs:
            raise ConfigError(f"names has {len(self.names)} entries for {self.graphs} graphs")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"count must be >= 1, got {self.count}")
        if not (self.step > 0 and math.isfinite(self.step)):
            raise ConfigError(f"step must be a positive number of seconds, got {self.step}")
        if self.fault_every < 1 or self.fault_duration < 1 or self.first_fault < 0:
            raise ConfigError("fault_every and fault_duration must be >= 1, first_fault >= 0")


@dataclass(frozen=True, slots=True)
class SimulatedGraph:
    """One simulated system: its graph name, simulator and watched target."""

    name: str
    system: MicroserviceSystem
    target: str


@dataclass(slots=True)
class SimulationReport:
    """What :func:`simulate` did."""

    messages: int = 0
    snapshots: int = 0
    seconds: float = 0.0
    t0: float = 0.0
    truth: list[dict[str, Any]] = field(default_factory=list)


class Simulation:
    """The event stream of a :class:`SimulationConfig`, drawn snapshot by snapshot.

    Parameters
    ----------
    config
        Systems, faults, window and event form (``count``, ``duration`` and ``rate`` bound
        the run of :func:`~stream_rca.streaming.producers.simulate`, not this object).
    now
        Wall-clock time (unix seconds) from which the start of event time is derived.

    Examples
    --------
    >>> sim = Simulation(SimulationConfig(graphs=2, faults=0, count=10), now=1700000000.0)
    >>> sim.t0
    1699999989.0
    >>> [(key, len(values)) for key, values in sim.snapshots(1)]
    [(b'shop-0', 1), (b'shop-1', 1)]
    >>> sim.index
    1
    """

    def __init__(self, config: SimulationConfig, *, now: float) -> None:
        self.config = config
        self.graphs = simulated_graphs(config)
        self.t0 = _start_time(config, now)
        self.index = 0

    def truth(self) -> list[dict[str, Any]]:
        """One ground-truth document per fault (schema ``stream-rca.truth/v1``).

        Fields: ``graph``, ``target``, ``kind``, ``nodes`` (the root causes), ``magnitude``,
        ``start_step``/``end_step`` (snapshot indices, end excluded) and
        ``window_start``/``window_end`` (event times).
        """
        return [doc for sg in self.graphs for doc in _truth(sg, self.t0, self.config.step)]

    def window(self, i: int) -> float:
        """Event time (start) of window ``i``."""
        return self.t0 + i * self.config.step

    def snapshots(self, n: int) -> Iterator[tuple[bytes, list[bytes]]]:
        """The next ``n`` snapshots of every graph, interleaved: ``(key, message values)``.

        In the batch form each snapshot is one message, in the single form one per node.
        ``index`` advances once every graph's snapshot of a window has been yielded.
        """
        for _ in range(n):
            ts = self.window(self.index)
            for sg in self.graphs:
                row = sg.system.sample(1)[0]
                yield (
                    sg.name.encode(),
                    _encode(sg.name, sg.system.nodes, ts, row, self.config.batch),
                )
            self.index += 1


def simulated_graphs(config: SimulationConfig) -> list[SimulatedGraph]:
    """The seeded systems of a simulation, with their faults injected."""
    out: list[SimulatedGraph] = []
    for k in range(config.graphs):
        seed = config.seed + k
        if config.nodes:
            system = MicroserviceSystem.random(config.nodes, seed=seed)
        else:
            system = MicroserviceSystem.shop(seed=seed)
        sinks = [n for n in system.nodes if not any(a == n for a, _ in system.edges)]
        target = config.target or ("Website" if "Website" in system.nodes else sinks[0])
        if config.faults:
            system.faults = random_faults(
                system,
                target,
                config.faults,
                every=config.fault_every,
                duration=config.fault_duration,
                start=config.first_fault,
                strength=config.strength,
                rng=np.random.default_rng([seed, 0xFA017]),
            )
        name = config.names[k] if config.names else f"{config.prefix}-{k}"
        out.append(SimulatedGraph(name, system, target))
    return out


def graphs_document(
    config: SimulationConfig, *, warmup: int = 100, **engine: Any
) -> dict[str, Any]:
    """A graphs file (as a dict; dump it as YAML or JSON) serving a simulation's graphs.

    Parameters
    ----------
    config
        The simulation.
    warmup
        The engine warm-up, in snapshots (keep it below ``config.first_fault``).
    **engine
        More engine or trigger settings for every graph (``threshold``, ``n_samples``, ...).
    """
    entries = []
    for sg in simulated_graphs(SimulationConfig(**{**_asdict(config), "faults": 0})):
        entries.append(
            {
                "name": sg.name,
                "edges": [list(e) for e in sg.system.edges],
                "targets": [sg.target],
                "step": config.step,
                "warmup": warmup,
                **engine,
            }
        )
    return {"graphs": entries}


def _asdict(config: SimulationConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def _truth(sg: SimulatedGraph, t0: float, step: float) -> list[dict[str, Any]]:
    return [
        {
            "schema": TRUTH_SCHEMA,
            "graph": sg.name,
            "target": sg.target,
            "kind": f.kind,
            "nodes": list(f.nodes),
            "magnitude": f.magnitude,
            "start_step": f.start,
            "end_step": f.start + f.duration,
            "window_start": t0 + f.start * step,
            "window_end": t0 + (f.start + f.duration) * step,
        }
        for f in sg.system.faults
    ]


def _start_time(config: SimulationConfig, now: float) -> float:
    if config.start is not None:
        return config.start
    n = config.count
    if n is None and config.duration is not None and config.rate > 0:
        n = math.ceil(config.duration * config.rate / config.graphs)
    back = (n + 1) * config.step if n is not None else 86400.0
    return math.floor((now - back) / config.step) * config.step


def _encode(
    name: str, nodes: Sequence[str], ts: float, row: npt.NDArray[np.float64], batch: bool
) -> list[bytes]:
    values = {n: float(v) for n, v in zip(nodes, row, strict=True)}
    if batch:
        return [encode_batch(name, ts, values)]
    return [encode_event(name, n, ts, v) for n, v in values.items()]

"""A simulated system as a Prometheus scrape target (``stream-rca simulate-exporter``).

Each scrape of ``/metrics`` draws the next snapshot of every simulated graph (the systems and
faults of :class:`~stream_rca.streaming.simulator.SimulationConfig`) and shows each node's
value three ways, so that every kind of the ``ingest`` mapping has a real source:

- ``sim_value{graph, node}``: a gauge, the value itself;
- ``sim_value_total{graph, node}``: a counter that grows by the value at each scrape (its rate
  is the value divided by the scrape interval);
- ``sim_value_seconds{graph, node}``: a histogram that observes the value once per scrape (its
  mean between two scrapes is the value);
- ``sim_fault_active{graph, node}``: 1 for the root causes of the faults active in this
  snapshot (the ground truth), 0 otherwise.

Serve it to one Prometheus: every scrape moves the simulation on by one snapshot.
:func:`ingest_mapping` writes the graphs file's ``ingest`` key that reads it back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stream_rca.streaming.simulator import SimulatedGraph, SimulationConfig, simulated_graphs

__all__ = ["BUCKETS", "Scrape", "SimulatedExporter", "ingest_mapping"]

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)
"""Upper bounds of ``sim_value_seconds``."""


@dataclass(frozen=True, slots=True)
class Scrape:
    """One served scrape: the snapshot index, the wall time and the root causes by graph."""

    index: int
    wall: float
    faulty: Mapping[str, frozenset[str]]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)


class SimulatedExporter:
    """The simulated graphs of ``config``, one snapshot per scrape.

    Examples
    --------
    >>> ex = SimulatedExporter(SimulationConfig(graphs=1, faults=0))
    >>> text = ex.scrape()
    >>> 'sim_value{graph="shop-0",node="API"}' in text, ex.scrapes[0].index
    (True, 0)
    """

    def __init__(self, config: SimulationConfig, clock: Any = time.time) -> None:
        self.config = config
        self.graphs: list[SimulatedGraph] = simulated_graphs(config)
        self.clock = clock
        self.scrapes: list[Scrape] = []
        self._totals = {(g.name, n): 0.0 for g in self.graphs for n in g.system.nodes}
        self._buckets = {
            (g.name, n): [0] * len(BUCKETS) for g in self.graphs for n in g.system.nodes
        }
        self._lock = threading.Lock()

    def _faulty(self, sg: SimulatedGraph, i: int) -> frozenset[str]:
        return frozenset(
            node
            for f in sg.system.faults
            if f.start <= i < f.start + f.duration
            for node in f.nodes
        )

    def scrape(self) -> str:
        """The exposition text of the next snapshot."""
        with self._lock:
            i = len(self.scrapes)
            lines = {
                "gauge": ["# TYPE sim_value gauge"],
                "counter": ["# TYPE sim_value_total counter"],
                "histogram": ["# TYPE sim_value_seconds histogram"],
                "truth": ["# TYPE sim_fault_active gauge"],
            }
            faulty: dict[str, frozenset[str]] = {}
            for sg in self.graphs:
                row = sg.system.sample(1)[0]
                faulty[sg.name] = self._faulty(sg, i)
                for node, raw in zip(sg.system.nodes, row, strict=True):
                    value = float(raw)
                    labels = f'graph="{_escape(sg.name)}",node="{_escape(node)}"'
                    self._totals[(sg.name, node)] += value
                    counts = self._buckets[(sg.name, node)]
                    for b, bound in enumerate(BUCKETS):
                        if value <= bound:
                            counts[b] += 1
                    lines["gauge"].append(f"sim_value{{{labels}}} {value!r}")
                    lines["counter"].append(
                        f"sim_value_total{{{labels}}} {self._totals[(sg.name, node)]!r}"
                    )
                    hist = lines["histogram"]
                    for bound, count in zip(BUCKETS, counts, strict=True):
                        hist.append(
                            f'sim_value_seconds_bucket{{{labels},le="{_le(bound)}"}} {count}'
                        )
                    hist.append(
                        f"sim_value_seconds_sum{{{labels}}} {self._totals[(sg.name, node)]!r}"
                    )
                    hist.append(f"sim_value_seconds_count{{{labels}}} {i + 1}")
                    active = 1 if node in faulty[sg.name] else 0
                    lines["truth"].append(f"sim_fault_active{{{labels}}} {active}")
            self.scrapes.append(Scrape(i, self.clock(), faulty))
            return "\n".join(line for block in lines.values() for line in block) + "\n"

    def serve(self, port: int = 0, addr: str = "127.0.0.1") -> ThreadingHTTPServer:
        """Serve ``/metrics`` from a daemon thread; ``server.server_address`` has the port."""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics")
                    return
                body = exporter.scrape().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        server = ThreadingHTTPServer((addr, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="sim-exporter", daemon=True).start()
        return server


def ingest_mapping(
    graph: str, nodes: Sequence[str], kinds: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The ``ingest`` key reading ``graph``'s nodes back from a :class:`SimulatedExporter`.

    ``kinds`` picks, per node, ``gauge`` (default), ``counter`` (``sim_value_total``) or
    ``histogram`` (the mean of ``sim_value_seconds``).

    Examples
    --------
    >>> ingest_mapping("shop", ["db"], {"db": "counter"})
    {'db': {'series': 'sim_value_total{graph="shop", node="db"}', 'type': 'counter'}}
    """
    metric = {"gauge": "sim_value", "counter": "sim_value_total", "histogram": "sim_value_seconds"}
    out: dict[str, Any] = {}
    for node in nodes:
        kind = (kinds or {}).get(node, "gauge")
        series = f'{metric[kind]}{{graph="{_escape(graph)}", node="{_escape(node)}"}}'
        out[node] = series if kind == "gauge" else {"series": series, "type": kind}
    return out


def _config(**fields: Any) -> SimulationConfig:
    return SimulationConfig(**fields)

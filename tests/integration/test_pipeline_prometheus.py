"""A real Prometheus scraping a real worker fed by the simulator: every query returns data.

One worker subprocess (``python -m stream_rca.cli worker``) consumes a fresh input topic on the
real broker; ``stream-rca simulate`` (a subprocess) feeds it two shop graphs whose faults start
right after the engine's warm-up; a real Prometheus scrapes the worker every second with the
project's recording and alert rules. The special states the alerts watch for are produced for
real, not faked:

- **dead letters**: malformed JSON and unknown nodes, produced with kafka-python;
- **pipeline stalled**: a third graph of the graphs file whose source is stuck (every event
  carries the same timestamp): its events keep arriving and are accepted, its watermark never
  moves, so it never completes a snapshot. (SIGSTOP of the worker cannot show it: the alert
  looks for 5 minutes without a snapshot, longer than this test may run, and a stopped worker
  is not scraped at all.)
- **consumer lag high**: the worker is SIGSTOPped while the stuck source produces more than
  the alert's threshold of messages to its partition, then SIGCONTed; the worker's lag gauge
  reports the backlog while it catches up;
- **root cause identified**: the simulator's faults open incidents; the alert fires with the top
  cause in its labels and summary, and that cause is the simulator's ground truth;
- **worker down**: the worker is SIGKILLed at the end.

Each dashboard query (with the graph and target values Prometheus offers for the dashboards'
variables) and each recording and alert rule expression must return data at least once during
the run; one failure lists every expression that never did.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_rca.io.events import encode_event
from tests.fixtures.kafka import create_topics, kafka_import_warnings_suppressed, unique_topic_name
from tests.fixtures.prometheus import (
    JOB,
    RULE_FILES,
    PromQuery,
    alerts,
    all_dashboard_queries,
    all_rule_expressions,
    free_port,
    prometheus_factory,  # noqa: F401  (a fixture)
    query,
    wait_for,
)

with kafka_import_warnings_suppressed():
    from kafka import KafkaProducer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
GRAPHS = 2
"""Simulated shop graphs, ``shop-0`` and ``shop-1``."""
STALLED = "shop-stalled"
"""A graph served by the worker whose source is stuck at one timestamp."""
RATE = 20.0
"""Snapshots per second over both simulated graphs (10 windows of event time per second each)."""
WARMUP = 60
FIRST_FAULT = 100
"""Snapshot of the first fault: 10 s into the simulation at :data:`RATE`."""
FAULTS = 8
FAULT_EVERY = 150
FAULT_DURATION = 100
"""Faults of 10 s every 15 s: incidents open and close while the test runs."""
SIM_DURATION = 240.0
"""Bounds the simulator should the test's cleanup fail; the test stops it long before."""
MALFORMED = 3000
"""Rejected messages sent: several percent of the input (DeadLettersRising fires above 1 %)."""
LAG_BURST = 12
"""Backlog produced while the worker is stopped, in multiples of ConsumerLagHigh's threshold
(large: the batch path drains a backlog of a few times the threshold between two scrapes)."""
LAG_ATTEMPTS = 3


# -- subprocesses -------------------------------------------------------------------------------

_KEY = f"checkpoint-key-{uuid.uuid4().hex}"


class Process:
    """A subprocess logging to a file; stopped (SIGCONT first if stopped) by :meth:`close`."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.stopped = False
        # workers refuse to start without a key for their checkpoints: one per test run
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "STREAM_RCA_CHECKPOINT_KEY": _KEY}
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_rca.cli", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)
            self.stopped = sig == signal.SIGSTOP or (self.stopped and sig != signal.SIGCONT)

    def close(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        if self.stopped:
            self.send(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"--- {self.name} log ({self.log_path}) ---\n" + "\n".join(lines[-n:])


@contextlib.contextmanager
def running(name: str, args: Sequence[str], log_path: Path) -> Iterator[Process]:
    process = Process(name, args, log_path)
    try:
        yield process
    finally:
        process.close()


def wait_http(url: str, process: Process, timeout: float) -> None:
    """Wait until ``url`` answers 200 (the worker's /metrics endpoint)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.alive(), f"{process.name} exited early\n{process.tail()}"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout} s\n{process.tail()}")


# -- the graphs file and the extra input ---------------------------------------------------------


def write_graphs_file(path: Path) -> None:
    """The simulator's graphs file plus :data:`STALLED` (a copy of ``shop-0``'s graph)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_rca.cli",
            "simulate",
            "--graphs",
            str(GRAPHS),
            "--write-graphs",
            str(path),
            "--graph-warmup",
            str(WARMUP),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["graphs"].append({**doc["graphs"][0], "name": STALLED})
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def stuck_events(n: int, nodes: Sequence[str], ts: float, start: int = 0) -> Iterator[bytes]:
    """``n`` valid single-form events of :data:`STALLED`, all at event time ``ts``.

    Values differ, so each one revises its node's value in the one open window (and counts as
    an accepted event); the watermark stays at ``ts``, so the window never closes.
    """
    for i in range(start, start + n):
        yield encode_event(STALLED, nodes[i % len(nodes)], ts, float(i))


def malformed_events(n: int) -> Iterator[bytes]:
    """``n`` rejected messages: malformed JSON and events of unknown nodes."""
    for i in range(n):
        if i % 2:
            yield b'{"graph": "shop-0", "node": "API", "ts": '
        else:
            yield encode_event("shop-0", f"no-such-node-{i % 7}", time.time() - 60, 1.0)


def produce(producer: Any, topic: str, key: bytes | None, values: Iterable[bytes]) -> None:
    for value in values:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=60)


# -- PromQL --------------------------------------------------------------------------------------


def threshold(alert: str) -> float:
    """The number an alert's expression compares against (``... > N``)."""
    (rule,) = [q for q in all_rule_expressions(RULE_FILES) if q.name == alert]
    match = re.search(r">\s*([0-9.e+]+)\s*$", rule.expr)
    assert match, f"no '> N' at the end of {alert}: {rule.expr}"
    return float(match.group(1))


def variable_values(url: str, name: str, variables: dict[str, str]) -> list[str]:
    """The values Grafana offers for the dashboards' variable ``name`` (its query, run now)."""
    exprs = {
        q.expr for q in all_dashboard_queries(variables) if q.ref == "variable" and q.name == name
    }
    assert len(exprs) == 1, f"variable {name!r} has the queries {exprs}"
    return sorted({r["metric"][name] for r in query(url, exprs.pop()) if name in r["metric"]})


def dashboard_queries(url: str) -> list[PromQuery]:
    """Every dashboard query, for each graph and target value the variables offer."""
    simulated = {f"shop-{k}" for k in range(GRAPHS)}
    blank = {"graph": "", "target": "", "node": ""}
    deadline = time.monotonic() + 30
    while not set(graphs := variable_values(url, "graph", blank)) >= simulated:
        assert time.monotonic() < deadline, f"graph variable: {graphs}, expected {simulated}"
        time.sleep(0.5)
    out: dict[str, PromQuery] = {}
    for graph in graphs:
        targets = variable_values(url, "target", {**blank, "graph": graph})
        assert targets == ["Website"], (graph, targets)
        for q in all_dashboard_queries({"graph": graph, "target": targets[0], "node": ".+"}):
            out.setdefault(q.expr, q)
    return list(out.values())


def has_data(result: list[Any]) -> bool:
    """True when a query result holds a number.

    NaN alone (the quantile of a histogram without observations, 0/0) shows as no data in
    Grafana, so it does not count.
    """
    values = [r["value"] for r in result if "value" in r]
    values += [v for r in result for v in r.get("values", ())]
    values += [r for r in result if isinstance(r, list)]  # a scalar
    return any(not math.isnan(float(v[1])) for v in values)


class Coverage:
    """The expressions still waiting to return data; :meth:`poll` queries each once.

    It also keeps every RootCauseIdentified alert it sees firing, by incident and node.
    """

    def __init__(self, url: str, queries: Iterable[PromQuery]) -> None:
        self.url = url
        self.waiting: dict[str, PromQuery] = {}
        self.firing: dict[tuple[str, str], dict[str, Any]] = {}
        self.add(queries)

    def add(self, queries: Iterable[PromQuery]) -> None:
        for q in queries:
            self.waiting.setdefault(q.expr, q)

    def poll(self) -> None:
        for expr in list(self.waiting):
            if has_data(query(self.url, expr)):
                del self.waiting[expr]
        for alert in alerts(self.url):
            labels = alert["labels"]
            if labels["alertname"] == "RootCauseIdentified" and alert["state"] == "firing":
                self.firing.setdefault((labels["incident_id"], labels["node"]), alert)

    def poll_until(self, done: Callable[[], bool], timeout: float, every: float = 1.0) -> bool:
        """Poll until ``done()`` (checked after each poll) or ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if done():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(every)

    def report(self) -> str:
        return "no data for:\n" + "\n".join(
            f"  {q.source} | {q.name} | {q.ref}: {q.expr}" for q in self.waiting.values()
        )


def diagnosis(url: str) -> str:
    """What the worker's counters say about the likely causes of missing data."""
    attributions = query(url, "sum(last_over_time(stream_rca_attributions_total[5m]))")
    timed = query(url, "sum(last_over_time(stream_rca_attribution_seconds_count[5m]))")
    n, m = (float(r[0]["value"][1]) if r else math.nan for r in (attributions, timed))
    lines = [f"attributions: {n:g}; attribution_seconds observations: {m:g}"]
    if n > 0 and m == 0:
        lines.append(
            "the worker computes attributions but records no attribution time: the engines of "
            "stream_rca/streaming/state.py have no timer (new_state, and load_state after a "
            "checkpoint drops it), so Attribution.seconds is None"
        )
    return "\n" + "\n".join(lines) + "\n"


# -- the test ------------------------------------------------------------------------------------


def test_every_dashboard_query_and_rule_returns_data_from_a_running_pipeline(
    kafka_bootstrap: str,
    prometheus_factory: Callable[[Sequence[str]], str],  # noqa: F811
    tmp_path: Path,
) -> None:
    topic = unique_topic_name("pipeline-prometheus")
    create_topics(kafka_bootstrap, {topic: PARTITIONS})
    graphs_file = tmp_path / "graphs.yaml"
    write_graphs_file(graphs_file)
    stalled_nodes = yaml.safe_load(graphs_file.read_text())["graphs"][-1]["edges"]
    nodes = sorted({n for edge in stalled_nodes for n in edge})
    stuck_ts = float(int(time.time()) - 3600)
    lag_threshold = threshold("ConsumerLagHigh")
    truth_file = tmp_path / "truth.jsonl"
    metrics_port = free_port()
    worker_args = [
        "worker",
        f"--bootstrap={kafka_bootstrap}",
        f"--config={graphs_file}",
        f"--app-id={topic}",
        f"--input-topic={topic}",
        f"--attributions-topic={topic}.attributions",
        f"--scores-topic={topic}.scores",
        f"--deadletter-topic={topic}.deadletter",
        f"--partitions={PARTITIONS}",
        f"--metrics-port={metrics_port}",
        "--metrics-addr=127.0.0.1",
        "--web-port=0",
        f"--data-dir={tmp_path / 'data'}",
        "--checkpoint-interval=5",
        "--lag-interval=1",  # reports faster than the backlog drains
        "--session-timeout=60",
        "--loglevel=warning",
    ]
    simulate_args = [
        "simulate",
        f"--bootstrap={kafka_bootstrap}",
        f"--topic={topic}",
        f"--rate={RATE}",
        f"--graphs={GRAPHS}",
        f"--duration={SIM_DURATION}",
        f"--faults={FAULTS}",
        f"--first-fault={FIRST_FAULT}",
        f"--fault-every={FAULT_EVERY}",
        f"--fault-duration={FAULT_DURATION}",
        # large faults: every graph's incidents must reach the dashboards whatever the draw
        "--strength",
        "12",
        "20",
        "--batch",
        f"--truth={truth_file}",
        "--truth-topic=",
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20)
    with contextlib.ExitStack() as stack:
        stack.callback(producer.close, timeout=10)
        worker = stack.enter_context(running("worker", worker_args, tmp_path / "worker.log"))
        wait_http(f"http://127.0.0.1:{metrics_port}/metrics", worker, timeout=60)
        url = prometheus_factory([f"127.0.0.1:{metrics_port}"])
        wait_for(url, f'up{{job="{JOB}"}} == 1', timeout=30)
        simulator = stack.enter_context(
            running("simulator", simulate_args, tmp_path / "simulator.log")
        )
        logs = (worker, simulator)

        def context() -> str:
            return "\n".join(p.tail() for p in logs)

        # The stuck source and the dead letters, while the simulator warms the engine up.
        produce(producer, topic, STALLED.encode(), stuck_events(200, nodes, stuck_ts))
        produce(producer, topic, None, malformed_events(MALFORMED))

        try:
            wait_for(url, "sum(stream_rca_attributions_total) > 0", timeout=90)
        except TimeoutError as exc:
            raise AssertionError(f"no attribution: {exc}\n{context()}") from exc
        coverage = Coverage(url, all_rule_expressions(RULE_FILES))
        coverage.add(dashboard_queries(url))
        coverage.poll()

        # Consumer lag: stop the worker while the stuck source sends a backlog of several times
        # the threshold; the worker reports its lag every 5 s while it catches up (some
        # 3,500 messages/s here), so one of those reports falls above the threshold. Should
        # the backlog drain between two reports on a faster machine, try again.
        burst = int(lag_threshold * LAG_BURST)
        lag = f"max(stream_rca_consumer_lag) > {lag_threshold:g}"
        seen_lag = False
        for attempt in range(LAG_ATTEMPTS):
            worker.send(signal.SIGSTOP)
            try:
                produce(
                    producer,
                    topic,
                    STALLED.encode(),
                    stuck_events(burst, nodes, stuck_ts, start=200 + attempt * burst),
                )
            finally:
                worker.send(signal.SIGCONT)
            seen_lag = coverage.poll_until(lambda: bool(query(url, lag)), timeout=15)
            if seen_lag:
                break
        assert seen_lag, (
            f"the lag gauge never passed {lag_threshold:g} after {LAG_ATTEMPTS} backlogs of "
            f"{burst} messages\n{context()}"
        )

        # Everything else while the worker runs (incidents come and go with the faults).
        (worker_down,) = [q.expr for q in all_rule_expressions() if q.name == "WorkerDown"]
        coverage.poll_until(
            lambda: coverage.waiting.keys() <= {worker_down} and bool(coverage.firing), 45
        )
        assert worker.alive(), context()

        # Worker down: kill it and wait for Prometheus to notice.
        worker.send(signal.SIGKILL)
        worker.proc.wait(timeout=10)
        wait_for(url, f'up{{job="{JOB}"}} == 0', timeout=30)
        coverage.poll_until(lambda: not coverage.waiting, 10)
        if coverage.waiting:
            pytest.fail(coverage.report() + diagnosis(url) + context())

    # RootCauseIdentified: the top cause in the labels and the annotations, and it is right.
    assert coverage.firing, "RootCauseIdentified never seen firing"
    truth = [json.loads(line) for line in truth_file.read_text().splitlines()]
    right = []
    for alert in coverage.firing.values():
        labels, annotations = alert["labels"], alert["annotations"]
        graph, target, start = labels["incident_id"].rsplit(":", 2)
        assert (graph, target) == (labels["graph"], "Website"), labels
        assert annotations["summary"].startswith(
            f"Website ({graph}) is anomalous: top root cause {labels['node']} ("
        ), annotations
        assert "(target score n/a" not in annotations["description"], annotations
        faults = [
            t
            for t in truth
            if t["graph"] == graph and t["window_start"] <= float(start) < t["window_end"]
        ]
        right.append(any(labels["node"] in t["nodes"] for t in faults))
    assert any(right), f"no alert named its fault's root cause: {coverage.firing}\n{truth}"

"""Throughput and end-to-end latency of one streaming worker through a real Kafka broker.

    python benchmarks/streaming_throughput.py                 # starts its own local broker
    python benchmarks/streaming_throughput.py --bootstrap 127.0.0.1:9092

Throughput: the input topic is filled first (simulated shop systems, ``--graphs`` of them), then
one worker (``python -m stream_rca.streaming worker``, a subprocess) reads it all; the figure is
input messages (and node values) per second between the first and the last per-snapshot score
document the worker publishes. It is measured for the batch form (one message per snapshot)
and the single form (one message per node value).

Latency: with the worker caught up, simulated snapshots stream at ``--rate`` per graph and
second, with a large fault every ``--every`` windows. A window is complete when the next
window's first event arrives, so the benchmark sends the anomalous window and the next one back
to back; the latency is from producing the anomalous window's last event to consuming its
attribution (revision 0) from ``rca.attributions``: p50 and p99.

Not a test: it prints figures. Every run uses fresh topics and a fresh consumer group.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from stream_rca.config import Settings
from stream_rca.streaming.producers import kafka_producer
from stream_rca.streaming.simulator import (
    RateLimiter,
    Simulation,
    SimulationConfig,
    graphs_document,
)
from stream_rca.streaming.testing import (
    TopicReader,
    WorkerProcess,
    isolated_settings,
    publish,
    simulated_messages,
)

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


def say(*parts: object) -> None:
    print(*parts, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_broker(state: Path) -> Iterator[str]:
    """The deploy/kafka KRaft broker on free ports, stopped at the end."""
    port = free_port()
    env = {
        **os.environ,
        "STREAM_RCA_KAFKA_PORT": str(port),
        "STREAM_RCA_KAFKA_CONTROLLER_PORT": str(free_port()),
        "STREAM_RCA_KAFKA_STATE_DIR": str(state),
        "STREAM_RCA_KAFKA_OWNER_PID": str(os.getpid()),
    }
    subprocess.run(["bash", str(KAFKA_SH), "start"], env=env, check=True, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env=env, check=False, capture_output=True)


def settings_for(bootstrap: str, tmp: Path, sim: SimulationConfig, warmup: int) -> Settings:
    """Fresh topics and consumer group for one phase."""
    graphs = graphs_document(sim, warmup=warmup)
    return isolated_settings(bootstrap, tmp, graphs, prefix="bench", checkpoint_interval=30.0)


def throughput(
    bootstrap: str, tmp: Path, args: argparse.Namespace, batch: bool
) -> dict[str, float]:
    n = args.snapshots if batch else args.single_snapshots
    sim_config = SimulationConfig(
        graphs=args.graphs,
        seed=1,
        count=n,
        faults=2,
        first_fault=n // 2,
        fault_every=n // 4,
        fault_duration=3,
        strength=(8.0, 12.0),
        batch=batch,
        rate=0.0,
    )
    settings = settings_for(bootstrap, tmp, sim_config, args.warmup)
    sim = Simulation(sim_config, now=time.time())
    messages = publish(settings, simulated_messages(sim, n), linger_ms=20)
    expected_scores = args.graphs * (n - 1)  # each graph's last window stays open
    form = "batch" if batch else "single"
    log = tmp / f"worker-{form}.log"
    with (
        TopicReader(settings, [settings.scores_topic, settings.attributions_topic]) as reader,
        WorkerProcess(settings, log, worker_id=f"bench-{form}") as worker,
    ):
        worker.ready(120)
        reader.wait_until(
            lambda r: len(r.records(settings.scores_topic)) >= expected_scores,
            args.timeout,
            what=f"{expected_scores} score documents",
        )
        worker.stop()
        scores = reader.records(settings.scores_topic)
        seconds = scores[-1].received - scores[0].received
        attributions = len(reader.records(settings.attributions_topic))
    nodes = len(sim.graphs[0].system.nodes)
    return {
        "messages": messages,
        "values": args.graphs * n * nodes,
        "seconds": seconds,
        "messages_per_s": messages / seconds,
        "values_per_s": args.graphs * n * nodes / seconds,
        "snapshots_per_s": expected_scores / seconds,
        "attributions": attributions,
    }


def latency(bootstrap: str, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    every, warm = args.every, args.warmup + 20
    count = warm + every * args.faults + 2
    sim_config = SimulationConfig(
        graphs=args.graphs,
        seed=2,
        count=count,
        faults=args.faults,
        first_fault=warm,
        fault_every=every,
        fault_duration=1,
        strength=(10.0, 14.0),
        batch=True,
    )
    settings = settings_for(bootstrap, tmp, sim_config, args.warmup)
    sim = Simulation(sim_config, now=time.time())
    fault_windows = {doc["start_step"] for doc in sim.truth()}
    sent: dict[tuple[str, float], float] = {}
    log = tmp / "worker-latency.log"
    with (
        TopicReader(settings, [settings.attributions_topic]) as reader,
        WorkerProcess(settings, log, worker_id="bench-latency") as worker,
    ):
        worker.ready(120)
        producer = kafka_producer(settings, linger_ms=0)
        limiter = RateLimiter(args.rate)
        while sim.index < count:
            pair = 2 if sim.index in fault_windows else 1  # anomalous window + the next
            for _ in range(pair):
                window, anomalous = sim.window(sim.index), sim.index in fault_windows
                for key, values in sim.snapshots(1):
                    for value in values:
                        producer.send(settings.input_topic, key=key, value=value)
                    if anomalous:
                        sent[(key.decode(), window)] = time.monotonic()
            producer.flush()
            limiter.wait(sim.index)
        producer.close()
        wanted = len(sent)
        reader.wait_until(
            lambda r: (
                sum(1 for d in r.docs(settings.attributions_topic) if d["revision"] == 0) >= wanted
            ),
            args.timeout,
            what=f"{wanted} attributions",
        )
        worker.stop()
        delays = []
        for record in reader.records(settings.attributions_topic):
            doc = record.doc
            start = sent.get((doc["graph"], doc["window"]["start"]))
            if doc["revision"] == 0 and start is not None:
                delays.append(record.received - start)
    delays.sort()
    p99 = delays[min(len(delays) - 1, round(0.99 * (len(delays) - 1)))]
    return {
        "attributions": len(delays),
        "p50_ms": 1000 * statistics.median(delays),
        "p99_ms": 1000 * p99,
        "max_ms": 1000 * delays[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="a running broker (default: start a local one)")
    parser.add_argument("--graphs", type=int, default=4, help="simulated shop systems")
    parser.add_argument("--snapshots", type=int, default=3000, help="per graph, batch form")
    parser.add_argument("--single-snapshots", type=int, default=1000, help="per graph, single")
    parser.add_argument("--warmup", type=int, default=100, help="engine warm-up (snapshots)")
    parser.add_argument("--faults", type=int, default=25, help="faults per graph (latency)")
    parser.add_argument("--every", type=int, default=12, help="windows between faults")
    parser.add_argument("--rate", type=float, default=25.0, help="snapshots/s (latency phase)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per phase")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stream-rca-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            bootstrap = args.bootstrap or stack.enter_context(local_broker(tmp / "kafka"))
            say(
                f"broker {bootstrap}; {args.graphs} shop graphs (11 nodes); one worker; "
                f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}"
            )
            for batch in (True, False):
                r = throughput(bootstrap, tmp, args, batch)
                form = "batch " if batch else "single"
                say(
                    f"throughput {form}: {r['messages']:.0f} messages ({r['values']:.0f} values)"
                    f" in {r['seconds']:.1f} s: {r['messages_per_s']:,.0f} messages/s, "
                    f"{r['values_per_s']:,.0f} values/s, {r['snapshots_per_s']:,.0f} "
                    f"snapshots/s; {r['attributions']:.0f} attributions"
                )
            r = latency(bootstrap, tmp, args)
            say(
                f"latency (anomalous event produced -> attribution consumed), "
                f"{r['attributions']:.0f} attributions at {args.rate:g} snapshots/s per graph: "
                f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

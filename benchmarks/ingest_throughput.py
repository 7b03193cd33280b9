"""Samples per second per core through ``stream-rca ingest`` into Kafka, beside the raw producer.

    python -m benchmarks.ingest_throughput                 # starts its own local broker
    python -m benchmarks.ingest_throughput --bootstrap 127.0.0.1:9092

One run, two paths, the same samples:

- **receiver**: ``stream-rca ingest`` (a subprocess) takes remote-write requests (snappy
  protobuf, ``--per-request`` samples each, one sample per series as Prometheus sends them) from
  ``--clients`` concurrent connections, and answers each once Kafka has acknowledged its batch
  events. Its figure is samples divided by the receiver process's CPU seconds (user + system,
  from ``/proc``), and samples per wall second.
- **raw producer**: the same batch events, produced by kafka-python in this process with the
  same acknowledgements (``acks=all``); samples divided by this process's CPU seconds.

Graphs: ``--graphs`` of ``--nodes`` gauge nodes each. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.broker import cpu_seconds, local_broker
from stream_rca.config import Settings
from stream_rca.ingest.convert import Converter
from stream_rca.ingest.mapping import SeriesIndex
from stream_rca.ingest.server import feed_write_request
from stream_rca.ingest.wire import decode_write_request, encode_write_request
from stream_rca.streaming.producers import ensure_topics, kafka_producer
from stream_rca.streaming.testing.processes import settings_env, wait_until


def say(*parts: object) -> None:
    print(*parts, flush=True)


def _graphs(graphs: int, nodes: int) -> dict[str, Any]:
    entries = []
    for g in range(graphs):
        names = [f"n{i}" for i in range(nodes)]
        entries.append(
            {
                "name": f"g{g}",
                "edges": [[names[i], names[i + 1]] for i in range(nodes - 1)],
                "warmup": 30,
                "ingest": {n: f'svc_latency{{graph="g{g}", node="{n}"}}' for n in names},
            }
        )
    return {"graphs": entries}


def _bodies(args: argparse.Namespace, t0: float) -> tuple[list[bytes], int]:
    series = [
        {"__name__": "svc_latency", "graph": f"g{g}", "node": f"n{i}", "job": "svc"}
        for g in range(args.graphs)
        for i in range(args.nodes)
    ]
    bodies: list[bytes] = []
    samples = 0
    scrape = 0
    while samples < args.samples:
        stamp = int((t0 + scrape) * 1000)
        for start in range(0, len(series), args.per_request):
            chunk = series[start : start + args.per_request]
            bodies.append(
                encode_write_request([(s, [(stamp, 0.5 + 0.001 * scrape)]) for s in chunk])
            )
            samples += len(chunk)
        scrape += 1
    return bodies, samples


async def _send(url: str, bodies: list[bytes], clients: int) -> None:
    import aiohttp

    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                async with session.post(url, data=body, headers=headers) as r:
                    if r.status == 204:
                        break
                    if r.status not in (429, 503):
                        raise RuntimeError(f"{r.status}: {await r.text()}")
                await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))


def receiver_path(
    settings: Settings, tmp: Path, bodies: list[bytes], args: argparse.Namespace
) -> dict[str, float]:
    env = {**os.environ, **settings_env(settings), "STREAM_RCA_INGEST_PORT": "0"}
    log_path = tmp / "ingest.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_rca.cli", "ingest", "--loglevel", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        found: list[str] = []

        def up() -> bool:
            found[:] = re.findall(r"listening on (http://\S+) ", log_path.read_text())
            return bool(found)

        wait_until(up, 60, "ingest", alive=lambda: proc.poll() is None)
        url = found[0] + "/api/v1/write"
        asyncio.run(_send(url, bodies[: max(1, len(bodies) // 20)], args.clients))  # warm
        cpu0, wall0 = cpu_seconds(proc.pid), time.perf_counter()
        asyncio.run(_send(url, bodies, args.clients))
        cpu, wall = cpu_seconds(proc.pid) - cpu0, time.perf_counter() - wall0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return {"cpu_s": cpu, "wall_s": wall}


def raw_path(settings: Settings, events: list[tuple[bytes, bytes]]) -> dict[str, float]:
    producer = kafka_producer(settings, linger_ms=2)
    try:
        producer.partitions_for(settings.input_topic)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        futures = [producer.send(settings.input_topic, key=k, value=v) for k, v in events]
        producer.flush()
        for f in futures:
            f.get(timeout=30)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        producer.close()
    return {"cpu_s": cpu, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="a running broker (default: start a local one)")
    parser.add_argument("--graphs", type=int, default=20, help="graphs")
    parser.add_argument("--nodes", type=int, default=50, help="gauge nodes per graph")
    parser.add_argument("--samples", type=int, default=600_000, help="samples to send")
    parser.add_argument(
        "--per-request", type=int, default=1000, help="samples per request (one scrape at most)"
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent connections")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        bootstrap = args.bootstrap or stack.enter_context(local_broker(tmp / "kafka"))
        import uuid

        import yaml

        name = f"bench-ingest-{uuid.uuid4().hex[:8]}"
        graphs_file = tmp / "graphs.yaml"
        graphs_file.write_text(yaml.safe_dump(_graphs(args.graphs, args.nodes)))
        settings = Settings(
            kafka_bootstrap=bootstrap,
            input_topic=f"{name}.metrics",
            attributions_topic=f"{name}.attributions",
            scores_topic=f"{name}.scores",
            deadletter_topic=f"{name}.deadletter",
            config=str(graphs_file),
            partitions=4,
        )
        ensure_topics(settings)
        t0 = time.time() - 3600
        bodies, samples = _bodies(args, t0)
        # the batch events the receiver makes of these bodies, for the raw producer
        from stream_rca.config import load_graphs

        rules = [r for s in load_graphs(graphs_file) for r in s.ingest]
        converter = Converter(SeriesIndex(rules))
        events: list[tuple[bytes, bytes]] = []
        for body in bodies:
            batch = converter.batch(time.time())
            feed_write_request(decode_write_request(body, max_decoded=1 << 26), batch)
            events.extend(batch.events())
        say(
            f"broker {bootstrap}; {args.graphs} graphs x {args.nodes} nodes; {samples} samples in "
            f"{len(bodies)} remote-write requests ({samples // len(bodies)} samples each), "
            f"{len(events)} batch events"
        )
        raw = raw_path(settings, events)
        rx = receiver_path(settings, tmp, bodies, args)
        for label, r in (("raw producer", raw), ("receiver", rx)):
            say(
                f"{label:13s} {samples / r['cpu_s']:>10,.0f} samples/s per core   "
                f"{samples / r['wall_s']:>10,.0f} samples/s wall   "
                f"(cpu {r['cpu_s']:.2f} s, wall {r['wall_s']:.2f} s)"
            )
        say(f"receiver / raw producer, per core: {raw['cpu_s'] / rx['cpu_s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

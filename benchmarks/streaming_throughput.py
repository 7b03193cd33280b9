"""Throughput, latency and recovery of streaming workers, beside the raw consumer, on one broker.

    python benchmarks/streaming_throughput.py                 # starts its own local broker
    python benchmarks/streaming_throughput.py --bootstrap 127.0.0.1:9092

Every figure of one run comes from the same broker, side by side:

- **raw ceiling**: an aiokafka consumer (no group) that only counts the messages of the input
  topic, read from the beginning: what the broker and the client library give;
- **one worker** (``python -m stream_rca.streaming worker``, a subprocess) on the same filled
  topic (produced before the worker starts): input messages (and node values) per second
  between its first and its last per-window score document; in the single form (one message per
  node value) and the batch form (one message per window of a graph). By default
  (``--reader after``) the benchmark watches the end offsets of the scores topic while the
  worker runs and reads the documents after it stopped; ``--reader concurrent`` reads them
  while it runs (the earlier method: a kafka-python consumer decoding every document on the
  same 2 cores, about a third of the worker's CPU time);
- **recovery**: the same topic read again by a new worker after the group's offsets were reset
  to the start: every message is already in the restored checkpoints and is skipped; time until
  the worker counted them all as replayed (its ``/metrics``);
- **two workers** against one on the same host: both in one group (2 partitions each), the
  input produced once they hold their partitions, as fast as aiokafka record batches go
  (``--producer one-by-one``: kafka-python, whose 25,000 messages/s bounded this phase before);
- **in-process** (phase ``inprocess``, no broker): the worker's batch path
  (:func:`~stream_rca.streaming.batch.process_batch`, batches of 5,000, scores and metrics on)
  on the same simulated messages, with its cProfile summary: where one core's time goes;
- **latency** at a given input rate (default 50,000 single events/s): windows stream with a
  large fault every ``--every`` windows; from the broker's acknowledgement of the last event of
  the window that closes an anomalous one to consuming its attribution (revision 0): p50, p99.
  Only the attributions that an in-process reference run of the same messages makes are
  awaited. The input goes out as aiokafka record batches, one per partition for every 5 ms of
  input (``--linger-ms``: the ``linger.ms`` the Java client has by default since Kafka 4.0),
  built before the clock starts (``--producer prebuilt``: the load generator shares the
  host's cores with the broker and the worker, where a fleet's producers would take none of
  them). ``--producer batches`` builds each batch when it falls due. The producer of the
  earlier measurements sent what was due at each turn of its loop, every 1-2 ms at 50,000
  events/s: its produce requests kept the broker at 0.75-0.9 of a core of the 2 (with
  ``--linger-ms 1`` this one cannot keep up 50,000 events/s here). ``--producer one-by-one``
  is the kafka-python producer before that (one send per message; about 25,000 events/s).

Not a test: it prints figures (ratios of a run are what to compare; machines differ). Every
phase uses fresh topics and a fresh consumer group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.broker import cpu_seconds, free_port, host_cpu_seconds, local_broker
from stream_rca.config import Settings
from stream_rca.streaming.producers import _kafka, kafka_producer
from stream_rca.streaming.simulator import (
    RateLimiter,
    Simulation,
    SimulationConfig,
    graphs_document,
)
from stream_rca.streaming.testing import (
    Message,
    TopicReader,
    WorkerProcess,
    isolated_settings,
    publish,
    reference_attributions,
    simulated_messages,
    wait_until,
)


def say(*parts: object) -> None:
    print(*parts, flush=True)


def simulation(args: argparse.Namespace, *, batch: bool, count: int, seed: int = 1) -> Any:
    return SimulationConfig(
        graphs=args.graphs,
        seed=seed,
        count=count,
        faults=2,
        first_fault=count // 2,
        fault_every=count // 4,
        fault_duration=3,
        strength=(8.0, 12.0),
        batch=batch,
        rate=0.0,
    )


def settings_for(
    bootstrap: str, tmp: Path, sim: SimulationConfig, warmup: int, **more: Any
) -> Settings:
    """Fresh topics and consumer group for one phase."""
    graphs = graphs_document(sim, warmup=warmup)
    return isolated_settings(
        bootstrap, tmp, graphs, prefix="bench", checkpoint_interval=30.0, **more
    )


# -- the raw ceiling -----------------------------------------------------------------------


def raw_ceiling(settings: Settings, expected: int) -> tuple[float, float]:
    """Messages per second and per CPU second (of this process) that an aiokafka consumer (no
    group) reads the input topic at, only counting."""

    async def run() -> float:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(settings.input_topic, p) for p in range(settings.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            seen, started = 0, time.perf_counter()
            while seen < expected:
                got = await consumer.getmany(timeout_ms=200, max_records=5000)
                seen += sum(len(rs) for rs in got.values())
            return seen / (time.perf_counter() - started)
        finally:
            await consumer.stop()

    cpu = time.process_time()
    rate = asyncio.run(run())
    return rate, expected / (time.process_time() - cpu)


# -- one worker, recovery --------------------------------------------------------------------


def metric(port: int, name: str, labels: str) -> float:
    """One sample of a worker's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    m = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def reset_offsets(settings: Settings) -> None:
    """Commit offset 0 on every input partition for the worker's group (no member running)."""
    kafka = _kafka()
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=settings.app_id,
        enable_auto_commit=False,
    )
    try:
        tps = [kafka.TopicPartition(settings.input_topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        consumer.commit({tp: kafka.structs.OffsetAndMetadata(0, "", -1) for tp in tps})
    finally:
        consumer.close(autocommit=False)


class ScoreCount:
    """How many score documents the broker holds (the end offsets of the scores topic): the
    benchmark watches the worker's output without reading it while it runs."""

    def __init__(self, settings: Settings) -> None:
        kafka = _kafka()
        self.consumer = kafka.KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            group_id=None,
            enable_auto_commit=False,
        )
        self.tps = [
            kafka.TopicPartition(settings.scores_topic, p) for p in range(settings.partitions)
        ]

    def __call__(self) -> int:
        return int(sum(self.consumer.end_offsets(self.tps).values()))

    def __enter__(self) -> ScoreCount:
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.close(autocommit=False)


def wait_for_count(count: ScoreCount, wanted: int, timeout: float, worker: WorkerProcess) -> float:
    """``time.monotonic()`` when ``count()`` first reached ``wanted`` (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while count() < wanted:
        if not worker.running() or time.monotonic() > deadline:
            raise TimeoutError(f"{wanted} score documents: not within {timeout:.0f}s")
        time.sleep(0.02)
    return time.monotonic()


def one_worker(
    bootstrap: str, tmp: Path, args: argparse.Namespace, batch: bool
) -> dict[str, float]:
    n = args.snapshots if batch else args.single_snapshots
    sim_config = simulation(args, batch=batch, count=n)
    port = free_port()
    settings = settings_for(bootstrap, tmp, sim_config, args.warmup, metrics_port=port)
    sim = Simulation(sim_config, now=time.time())
    messages = publish(settings, simulated_messages(sim, n), linger_ms=20)
    ceiling, ceiling_cpu = raw_ceiling(settings, messages)
    expected_scores = args.graphs * (n - 1)  # each graph's last window stays open
    form = "batch" if batch else "single"
    topics = [settings.scores_topic, settings.attributions_topic]
    if args.reader == "concurrent":  # the method of the earlier measurements
        with (
            TopicReader(settings, topics) as reader,
            WorkerProcess(settings, tmp / f"worker-{form}.log", worker_id=f"bench-{form}") as w,
        ):
            w.ready(120)
            cpu = cpu_seconds(w.pid)
            reader.wait_until(
                lambda r: len(r.records(settings.scores_topic)) >= expected_scores,
                args.timeout,
                what=f"{expected_scores} score documents",
            )
            cpu = cpu_seconds(w.pid) - cpu
            assert w.stop() == 0, w.tail()
            scores = reader.records(settings.scores_topic)
            seconds = scores[-1].received - scores[0].received
            attributions = len(reader.records(settings.attributions_topic))
    else:
        with (
            ScoreCount(settings) as count,
            WorkerProcess(settings, tmp / f"worker-{form}.log", worker_id=f"bench-{form}") as w,
        ):
            w.ready(120)
            cpu = cpu_seconds(w.pid)
            first = wait_for_count(count, 1, args.timeout, w)
            last = wait_for_count(count, expected_scores, args.timeout, w)
            cpu = cpu_seconds(w.pid) - cpu
            assert w.stop() == 0, w.tail()
            seconds = last - first
        with TopicReader(settings, topics) as reader:  # every document is there
            reader.wait_until(
                lambda r: len(r.records(settings.scores_topic)) >= expected_scores,
                args.timeout,
                what=f"{expected_scores} score documents",
            )
            time.sleep(0.5)  # the attributions topic too
            attributions = len(reader.records(settings.attributions_topic))
    reset_offsets(settings)  # recovery: everything is in the checkpoints, read it all again
    with WorkerProcess(settings, tmp / f"worker-{form}-2.log", worker_id=f"re-{form}") as again:
        again.ready(120)
        started, replay_cpu = time.monotonic(), cpu_seconds(again.pid)
        wait_until(
            lambda: metric(port, "stream_rca_records_total", 'outcome="replayed"') >= messages,
            args.timeout,
            f"{messages} messages replayed",
            alive=again.running,
            detail=again.tail,
            interval=0.05,
        )
        replay_seconds = time.monotonic() - started
        replay_cpu = cpu_seconds(again.pid) - replay_cpu
        processed = metric(port, "stream_rca_records_total", 'outcome="processed"')
    nodes = len(sim.graphs[0].system.nodes)
    return {
        "messages": messages,
        "values": args.graphs * n * nodes,
        "seconds": seconds,
        "messages_per_s": messages / seconds,
        "values_per_s": args.graphs * n * nodes / seconds,
        "ceiling_per_s": ceiling,
        "ceiling_per_cpu_s": ceiling_cpu,
        "worker_cpu_s": cpu,
        "messages_per_cpu_s": messages / cpu,
        "values_per_cpu_s": args.graphs * n * nodes / cpu,
        "attributions": attributions,
        "replay_per_s": messages / replay_seconds,
        "replay_per_cpu_s": messages / replay_cpu,
        "replay_processed": processed,
    }


# -- two workers against one -----------------------------------------------------------------


def workers(bootstrap: str, tmp: Path, args: argparse.Namespace, count: int) -> dict[str, float]:
    """Single-form throughput of ``count`` workers in one group, input produced once they
    hold their partitions."""
    n = args.single_snapshots
    sim_config = simulation(args, batch=False, count=n, seed=3)
    settings = settings_for(bootstrap, tmp, sim_config, args.warmup)
    messages = simulated_messages(Simulation(sim_config, now=time.time()), n)
    expected = args.graphs * (n - 1)
    procs = [
        WorkerProcess(settings, tmp / f"group{count}-{i}.log", worker_id=f"g{count}-{i}")
        for i in range(count)
    ]
    with TopicReader(settings, [settings.scores_topic]) as reader, contextlib.ExitStack() as st:
        for proc in procs:
            st.enter_context(proc).ready(120)
        wait_until(
            lambda: (
                sorted(p for w in procs for p in (w.assigned() or [])) == [0, 1, 2, 3]
                and all(w.assigned() for w in procs)
            ),
            120,
            "the partitions split",
        )
        time.sleep(2.0)  # let the last rebalance settle (its recovery, the readers' seeks)
        produced = time.monotonic()
        if args.producer != "one-by-one":  # as fast as aiokafka's record batches go
            steps: list[Step] = [
                (messages[i : i + 1000], []) for i in range(0, len(messages), 1000)
            ]  # all due at once, each batch built as it goes
            asyncio.run(produce_windows(settings, steps, 1e12, {}, prebuilt=False))
        else:  # kafka-python, one send per message (about 25,000 messages/s here)
            publish(settings, messages, linger_ms=20)
        produce_seconds = time.monotonic() - produced
        reader.wait_until(lambda r: len(r.records(settings.scores_topic)) >= expected, 600)
        scores = reader.records(settings.scores_topic)
        seconds = scores[-1].received - produced
    return {
        "messages_per_s": len(messages) / seconds,
        "producer_per_s": len(messages) / produce_seconds,
    }


# -- in process ------------------------------------------------------------------------------


def in_process(tmp: Path, args: argparse.Namespace, batch: bool) -> dict[str, Any]:
    """The batch path alone on one core: messages per second, and its profile."""
    import yaml
    from prometheus_client import CollectorRegistry

    from benchmarks.profiling import profile_text
    from stream_rca.config import load_graphs
    from stream_rca.observability import PipelineMetrics
    from stream_rca.streaming.batch import InputRecord, process_batch
    from stream_rca.streaming.changes import ChangeService
    from stream_rca.streaming.pipeline import Pipeline

    n = args.snapshots if batch else args.single_snapshots
    n = min(n, 2000)
    sim_config = simulation(args, batch=batch, count=n)
    now = time.time()
    messages = simulated_messages(Simulation(sim_config, now=now), n)
    path = tmp / f"inprocess-{batch}.yaml"
    path.write_text(yaml.safe_dump(graphs_document(sim_config, warmup=args.warmup)))
    specs = load_graphs(path)
    records = [
        InputRecord(value, hash(key) % 4, i, "metrics", key)
        for i, (key, value) in enumerate(messages)
    ]

    cpu: list[float] = []

    def run() -> float:
        metrics = PipelineMetrics(CollectorRegistry(), version="bench")
        pipeline = Pipeline(
            specs,
            publish_scores=True,
            metrics=metrics,
            clock=lambda: now,
            changes=ChangeService(specs, clock=lambda: now),
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, len(records), 5000):
            process_batch(pipeline, records[start : start + 5000], results=False)
        cpu.append(time.process_time() - cpu_started)
        return time.perf_counter() - started

    seconds = run()
    nodes = len(specs[0].graph)
    return {
        "messages_per_s": len(records) / seconds,
        "values_per_s": args.graphs * n * nodes / seconds,
        "values_per_cpu_s": args.graphs * n * nodes / cpu[0],
        "snapshots_per_s": args.graphs * n / seconds,
        "profile": profile_text(run, top=15),
    }


# -- latency ---------------------------------------------------------------------------------

Window = tuple[str, float]
"""A graph's window: (graph, start)."""
Step = tuple[list[Message], list[Window]]
"""One window of every graph: its messages, and the anomalous windows it closes."""


LINGER_S = 0.005
"""Seconds of input the latency phase's producer sends at once (a record batch per partition):
the ``linger.ms`` of 5 that the Java client has by default since Kafka 4.0 (KIP-1030)."""


def _partitioner(partitions: list[int]) -> Callable[[bytes | None], int]:
    """Keys to partitions as kafka-python's and the Java client's default partitioner map them."""
    from aiokafka.partitioner import murmur2

    where: dict[bytes | None, int] = {}

    def partition(key: bytes | None) -> int:
        p = where.get(key)
        if p is None:
            h = murmur2(key) & 0x7FFFFFFF if key is not None else 0
            p = where[key] = partitions[h % len(partitions)]
        return p

    return partition


async def produce_windows(
    settings: Settings,
    steps: list[Step],
    windows_per_s: float,
    sent: dict[Window, float],
    *,
    prebuilt: bool = True,
    linger: float = LINGER_S,
) -> float:
    """Produce ``steps`` at ``windows_per_s`` with aiokafka record batches; events per second.

    Every ``linger`` seconds of input (at least one window) goes out as one record batch per
    partition; once the broker acknowledges the batches of a window that closes an
    anomalous one, ``sent[(graph, window)]`` is set to that time (``time.monotonic()``).

    ``prebuilt`` builds every record batch before the clock starts, so while the events flow
    the load generator only hands finished batches to its producer: it shares the host's 2
    cores with the broker and the worker, and a producer elsewhere would take none of them.
    Without it each batch is built when due (about 0.3 of a core at 50,000 events/s here). A
    Python producer sending one message at a time (kafka-python, about 25,000 messages/s here)
    cannot reach 50,000 events/s on the 2 cores it shares with the broker and the worker.
    """
    from aiokafka import AIOKafkaProducer

    topic = settings.input_topic
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        acks="all",
        linger_ms=0,
        max_batch_size=1024 * 1024,
        client_id="stream-rca-bench-producer",
    )
    await producer.start()
    try:
        partition = _partitioner(sorted(await producer.partitions_for(topic)))
        per_chunk = max(1, round(linger * windows_per_s))
        bounds = [(i, min(len(steps), i + per_chunk)) for i in range(0, len(steps), per_chunk)]

        async def build(
            first: int, stop: int, send_full: bool
        ) -> tuple[list[tuple[int, Any]], list[Any], list[Window]]:
            """The chunk's record batches still to send, the acks of those sent (a full one
            is sent at once when ``send_full``, else kept), the anomalous windows it closes."""
            batches: dict[int, Any] = {}
            full: list[tuple[int, Any]] = []
            acks: list[Any] = []
            closing: list[Window] = []
            for msgs, closes in steps[first:stop]:
                for key, value in msgs:
                    p = partition(key)
                    batch = batches.get(p)
                    if batch is None:
                        batch = batches[p] = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:  # full
                        if send_full:
                            acks.append(await producer.send_batch(batch, topic, partition=p))
                        else:
                            full.append((p, batch))
                        batch = batches[p] = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)
                closing.extend(closes)
            return full + list(batches.items()), acks, closing

        chunks = [await build(first, stop, False) for first, stop in bounds] if prebuilt else []
        events = sum(len(msgs) for msgs, _ in steps)
        started = time.monotonic()
        for c, (first, stop) in enumerate(bounds):
            delay = started + first / windows_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            batches, acks, closing = chunks[c] if prebuilt else await build(first, stop, True)
            acks += [await producer.send_batch(b, topic, partition=p) for p, b in batches]
            if closing:
                acked = asyncio.gather(*acks)

                def mark(_: object, names: list[Window] = closing) -> None:
                    now = time.monotonic()
                    for name in names:
                        sent[name] = now

                acked.add_done_callback(mark)
        await producer.flush()
        return events / (time.monotonic() - started)
    finally:
        await producer.stop()


def produce_windows_one_by_one(
    settings: Settings,
    steps: list[Step],
    windows_per_s: float,
    sent: dict[Window, float],
) -> float:
    """The producer of the earlier measurements: kafka-python, one send per message, a flush
    after each window that closes an anomalous one (its time taken after the flush)."""
    producer = kafka_producer(settings, linger_ms=2)
    limiter = RateLimiter(windows_per_s)
    events = sum(len(msgs) for msgs, _ in steps)
    started = time.monotonic()
    for i, (msgs, closes) in enumerate(steps):
        for key, value in msgs:
            producer.send(settings.input_topic, key=key, value=value)
        if closes:
            producer.flush()
            now = time.monotonic()
            for name in closes:
                sent[name] = now
        limiter.wait(i + 1)
    producer.flush()
    achieved = events / (time.monotonic() - started)
    producer.close()
    return achieved


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
        batch=False,
    )
    settings = settings_for(bootstrap, tmp, sim_config, args.warmup)
    sim = Simulation(sim_config, now=time.time())
    fault_windows = {doc["start_step"] for doc in sim.truth()}
    # windows: (messages, the anomalous window this one closes, if any)
    steps: list[Step] = []
    for i in range(count):
        window = sim.window(i)
        msgs: list[Message] = [(k, v) for k, values in sim.snapshots(1) for v in values]
        closes = [(g.name, sim.window(i - 1)) for g in sim.graphs] if i - 1 in fault_windows else []
        steps.append((msgs, closes))
        del window
    assert settings.config is not None
    reference = reference_attributions(settings.config, [m for msgs, _ in steps for m in msgs])
    wanted = {(d["graph"], d["window"]["start"]) for d in reference.values() if d["revision"] == 0}
    per_window = args.graphs * len(sim.graphs[0].system.nodes)
    sent: dict[Window, float] = {}
    with (
        TopicReader(settings, [settings.attributions_topic]) as reader,
        WorkerProcess(settings, tmp / "worker-latency.log", worker_id="bench-latency") as worker,
    ):
        worker.ready(120)
        windows_per_s = args.rate / per_window  # windows (of every graph) per second
        # where the host's CPU goes while the events are produced: the worker, this process
        # (the producer and the attributions' reader), the rest (the broker above all)
        host_busy, host_all = host_cpu_seconds()
        worker_cpu, own_cpu, wall = cpu_seconds(worker.pid), time.process_time(), time.monotonic()
        if args.producer != "one-by-one":
            achieved = asyncio.run(
                produce_windows(
                    settings,
                    steps,
                    windows_per_s,
                    sent,
                    prebuilt=args.producer == "prebuilt",
                    linger=args.linger_ms / 1000,
                )
            )
        else:
            achieved = produce_windows_one_by_one(settings, steps, windows_per_s, sent)
        wall = time.monotonic() - wall
        worker_cpu = cpu_seconds(worker.pid) - worker_cpu
        own_cpu = time.process_time() - own_cpu
        busy_now, all_now = host_cpu_seconds()
        host_busy, host_all = busy_now - host_busy, all_now - host_all
        reader.wait_until(
            lambda r: (
                sum(
                    1
                    for d in r.docs(settings.attributions_topic)
                    if d["revision"] == 0 and (d["graph"], d["window"]["start"]) in wanted
                )
                >= len(wanted)
            ),
            args.timeout,
            what=f"{len(wanted)} attributions",
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
        "rate": achieved,
        "p50_ms": 1000 * statistics.median(delays),
        "p99_ms": 1000 * p99,
        "max_ms": 1000 * delays[-1],
        "produce_s": wall,
        "cores": host_all / wall,
        "host_busy_cpu_s": host_busy,
        "worker_cpu_s": worker_cpu,
        "bench_cpu_s": own_cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="a running broker (default: start a local one)")
    parser.add_argument("--graphs", type=int, default=4, help="simulated shop systems")
    parser.add_argument("--snapshots", type=int, default=10000, help="per graph, batch form")
    parser.add_argument("--single-snapshots", type=int, default=5000, help="per graph, single")
    parser.add_argument("--warmup", type=int, default=100, help="engine warm-up (snapshots)")
    parser.add_argument("--faults", type=int, default=50, help="faults per graph (latency)")
    parser.add_argument("--every", type=int, default=100, help="windows between faults")
    parser.add_argument("--rate", type=float, default=50000.0, help="events/s (latency phase)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per wait")
    parser.add_argument(
        "--reader",
        choices=("after", "concurrent"),
        default="after",
        help="single and batch phases: time the worker by the score topic's end offsets and "
        "read its documents after it stops, or read them while it runs (kafka-python on the "
        "same cores: the method of the earlier measurements)",
    )
    parser.add_argument(
        "--producer",
        choices=("prebuilt", "batches", "one-by-one"),
        default="prebuilt",
        help="latency phase: aiokafka record batches built before the clock starts, or built "
        "as they fall due (the producer of the earlier measurements, also that of the workers "
        "phase), or kafka-python, one send per message (before that)",
    )
    parser.add_argument(
        "--linger-ms",
        type=float,
        default=1000 * LINGER_S,
        help="latency phase: milliseconds of input per record batch (the producer's linger)",
    )
    parser.add_argument(
        "--phases", default="single,batch,workers,latency", help="which phases to run"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="stream-rca-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            bootstrap = args.bootstrap or stack.enter_context(local_broker(tmp / "kafka"))
            say(
                f"broker {bootstrap}; {args.graphs} shop graphs (11 nodes); "
                f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}"
            )
            for batch in (False, True):
                form = "batch" if batch else "single"
                if form not in phases:
                    continue
                r = figures[form] = one_worker(bootstrap, tmp, args, batch)
                say(
                    f"one worker, {form:6}: {r['messages']:.0f} messages ({r['values']:.0f} "
                    f"values) in {r['seconds']:.1f} s: {r['messages_per_s']:,.0f} messages/s, "
                    f"{r['values_per_s']:,.0f} values/s; raw consumer {r['ceiling_per_s']:,.0f}"
                    f" messages/s ({r['messages_per_s'] / r['ceiling_per_s']:.0%} of it); "
                    f"{r['attributions']:.0f} attributions"
                )
                say(
                    f"one worker, {form:6}, per CPU second of the worker: "
                    f"{r['messages_per_cpu_s']:,.0f} messages, {r['values_per_cpu_s']:,.0f} "
                    f"values ({r['worker_cpu_s']:.1f} CPU s); raw consumer "
                    f"{r['ceiling_per_cpu_s']:,.0f} messages per CPU second"
                )
                say(
                    f"recovery, {form:6}: all {r['messages']:.0f} messages read again and "
                    f"skipped at {r['replay_per_s']:,.0f} messages/s "
                    f"({r['replay_per_s'] / r['ceiling_per_s']:.0%} of the raw consumer), "
                    f"{r['replay_per_cpu_s']:,.0f} per CPU second; "
                    f"{r['replay_processed']:.0f} processed again"
                )
            for batch in (False, True):
                if "inprocess" not in phases:
                    continue
                form = "batch" if batch else "single"
                r = figures[f"inprocess_{form}"] = in_process(tmp, args, batch)
                say(
                    f"in process, {form:6}: {r['messages_per_s']:,.0f} messages/s, "
                    f"{r['values_per_s']:,.0f} values/s ({r['values_per_cpu_s']:,.0f} per CPU "
                    f"second of the process), {r['snapshots_per_s']:,.0f} snapshots/s on one "
                    f"core; profile:\n{r['profile']}"
                )
            if "workers" in phases:
                one = figures["one_worker_group"] = workers(bootstrap, tmp, args, 1)
                two = figures["two_worker_group"] = workers(bootstrap, tmp, args, 2)
                say(
                    f"workers, single form, input produced after the split: one "
                    f"{one['messages_per_s']:,.0f} messages/s, two {two['messages_per_s']:,.0f}"
                    f" ({two['messages_per_s'] / one['messages_per_s']:.2f}x); producer "
                    f"{one['producer_per_s']:,.0f} / {two['producer_per_s']:,.0f} messages/s"
                )
            if "latency" in phases:
                r = figures["latency"] = latency(bootstrap, tmp, args)
                say(
                    f"latency (last event of the closing window produced -> attribution "
                    f"consumed), {r['attributions']:.0f} attributions at {r['rate']:,.0f} "
                    f"events/s (asked {args.rate:,.0f}): p50 {r['p50_ms']:.0f} ms, "
                    f"p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms"
                )
                rest = r["host_busy_cpu_s"] - r["worker_cpu_s"] - r["bench_cpu_s"]
                say(
                    f"latency, the host's CPU while the events were produced ({r['produce_s']:.1f}"
                    f" s, {r['cores']:.1f} cores): {r['host_busy_cpu_s'] / r['produce_s']:.2f} "
                    f"cores busy; the worker {r['worker_cpu_s'] / r['produce_s']:.2f}, the "
                    f"producer and the reader {r['bench_cpu_s'] / r['produce_s']:.2f}, the rest "
                    f"(the broker) {rest / r['produce_s']:.2f}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How fast each way of reading a topic hands messages over, on one broker, side by side.

    python -m benchmarks.faust_sources                 # starts its own local broker
    python -m benchmarks.faust_sources --bootstrap 127.0.0.1:9092 --messages 200000

The input topic is filled with single-form events (4 partitions), then read from the start,
only counting, by: a faust agent iterating ``stream.events()`` (one event at a time, what the
worker used to do); a faust agent with ``stream.take(5000, within=0.05)`` (faust's batching:
still one event through faust's conductor and stream per message); and an aiokafka consumer's
``getmany(max_records=5000)`` outside any group (what the worker's batch reader does). Each
faust run is a subprocess with a fresh consumer group; the figure is messages/s from the first
message counted to the last. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.streaming_throughput import local_broker, say
from stream_rca.config import Settings
from stream_rca.io.events import encode_event
from stream_rca.streaming.producers import ensure_topics
from stream_rca.streaming.testing import publish

AGENT = """
import os, time, faust
mode, bootstrap, topic, out = (os.environ["SRC_" + k] for k in ("MODE", "BOOT", "TOPIC", "OUT"))
n = int(os.environ["SRC_N"])
app = faust.App("src-" + str(time.time_ns()), broker="kafka://" + bootstrap, store="memory://",
                web_enabled=False, consumer_auto_offset_reset="earliest")
source = app.topic(topic, key_serializer="raw", value_serializer="raw")
seen, first = [0], [0.0]

def done():
    with open(out, "w") as f:
        f.write(str(seen[0] / (time.perf_counter() - first[0])))
    os._exit(0)

@app.agent(source)
async def count(stream):
    if mode == "events":
        async for _ in stream.events():
            if not seen[0]:
                first[0] = time.perf_counter()
            seen[0] += 1
            if seen[0] >= n:
                done()
    else:
        async for batch in stream.take(5000, within=0.05):
            if not seen[0]:
                first[0] = time.perf_counter()
            seen[0] += len(batch)
            if seen[0] >= n:
                done()

app.main()
"""


def faust_rate(mode: str, bootstrap: str, topic: str, n: int, tmp: Path) -> float:
    script, out = tmp / "agent.py", tmp / f"rate-{mode}.txt"
    script.write_text(AGENT)
    cmd = [sys.executable, str(script), "worker", "-l", "warn", "--without-web"]
    env = {"SRC_MODE": mode, "SRC_BOOT": bootstrap, "SRC_TOPIC": topic, "SRC_N": str(n)}
    env = {**os.environ, **env, "SRC_OUT": str(out)}
    with contextlib.suppress(subprocess.TimeoutExpired):
        done = subprocess.run(cmd, timeout=600, capture_output=True, cwd=tmp, text=True, env=env)
        if not out.exists():
            say(f"faust {mode} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return float(out.read_text()) if out.exists() else float("nan")


def aiokafka_rate(bootstrap: str, topic: str, n: int) -> float:
    async def run() -> float:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(4)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            seen, first = 0, 0.0
            while seen < n:
                got = await consumer.getmany(timeout_ms=200, max_records=5000)
                if got and not seen:
                    first = time.perf_counter()
                seen += sum(len(rs) for rs in got.values())
            return seen / (time.perf_counter() - first)
        finally:
            await consumer.stop()

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="a running broker (default: start a local one)")
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stream-rca-sources-") as name:
        tmp = Path(name)
        with contextlib.ExitStack() as stack:
            bootstrap = args.bootstrap or stack.enter_context(local_broker(tmp / "kafka"))
            topic = f"sources-{uuid.uuid4().hex[:8]}"
            settings = Settings(kafka_bootstrap=bootstrap, input_topic=topic, partitions=4)
            ensure_topics(settings)
            now = time.time()
            messages = [
                (f"g{i % 4}".encode(), encode_event(f"g{i % 4}", f"n{i % 11}", now, i * 0.5))
                for i in range(args.messages)
            ]
            publish(settings, messages, linger_ms=20)
            rates = {
                "faust stream.events()": faust_rate("events", bootstrap, topic, len(messages), tmp),
                "faust stream.take(5000)": faust_rate("take", bootstrap, topic, len(messages), tmp),
                "aiokafka getmany(5000)": aiokafka_rate(bootstrap, topic, len(messages)),
            }
            say(f"broker {bootstrap}; {len(messages)} single-form messages, 4 partitions")
            for what, rate in rates.items():
                say(f"{what:26}: {rate:>10,.0f} messages/s ({1e6 / rate:.1f} us per message)")
            say(json.dumps(rates))
    return 0


if __name__ == "__main__":
    sys.exit(main())

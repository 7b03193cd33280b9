"""Two workers in one consumer group on a real broker: 4 partitions, 4 graphs, and a worker
killed with SIGKILL mid-stream.

Every graph's events are deterministic, so the attributions one uninterrupted in-process
pipeline makes of them are the reference: whatever the workers do (rebalances, a crash, a
restart), the attribution topic must hold exactly the reference documents, possibly some twice
(at-least-once) but then identical, with the same incident ids.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stream_rca.config import Settings
from stream_rca.streaming import Simulation
from stream_rca.streaming.testing import (
    AttributionKey,
    Message,
    TopicReader,
    WorkerProcess,
    committed_offsets,
    isolated_settings,
    publish,
    reference_attributions,
    simulated_messages,
    three_faults,
    three_faults_graphs,
    wait_until,
)

pytestmark = pytest.mark.integration

# Keys that kafka-python's murmur2 partitioner puts on partitions 0, 1, 2, 3 of 4.
NAMES = ("tenant-0", "tenant-3", "tenant-2", "tenant-1")
SIM = three_faults(graphs=4, names=NAMES, seed=7, count=240)


@dataclass
class Cluster:
    settings: Settings
    tmp: Path
    reader: TopicReader
    sim: Simulation
    messages: list[Message]
    reference: dict[AttributionKey, dict[str, Any]]

    def worker(self, name: str) -> WorkerProcess:
        return WorkerProcess(self.settings, self.tmp / f"{name}.log", worker_id=name)

    def attributions(self) -> dict[AttributionKey, dict[str, Any]]:
        return self.reader.attributions(self.settings.attributions_topic)

    def wait_for_reference(self, timeout: float, until: float | None = None) -> None:
        """Wait for every reference attribution (of windows before ``until``)."""
        wanted = {
            k for k, d in self.reference.items() if until is None or d["window"]["start"] < until
        }
        self.reader.wait_until(
            lambda r: wanted <= set(self.attributions()),
            timeout,
            what=f"{len(wanted)} attributions",
        )

    def wait_for_scores(self, timeout: float) -> None:
        """Wait for the scores of every window but the last (still open) of every graph: then
        every message has been consumed (a window closes when the next one's event arrives)."""
        n = (SIM.count or 0) - 1

        def scored(r: TopicReader) -> bool:
            docs = r.docs(self.settings.scores_topic)
            windows = {(d["graph"], d["window"]["start"]) for d in docs}
            return all(sum(g == graph for g, _ in windows) >= n for graph in NAMES)

        self.reader.wait_until(scored, timeout, what=f"{n} score documents of every graph")

    def publish(self, start: int, stop: int, rate: float = 0.0) -> None:
        """Publish the messages of windows ``start .. stop-1`` of every graph, in order."""
        per_window = len(self.messages) // (SIM.count or 1)
        window = self.messages[start * per_window : stop * per_window]
        publish(self.settings, window, rate=rate, per_step=per_window)


@pytest.fixture
def cluster(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Cluster]:
    settings = isolated_settings(
        kafka_bootstrap,
        tmp_path,
        three_faults_graphs(SIM),
        prefix="cl",
        checkpoint_interval=600.0,  # only rebalances and shutdowns checkpoint in these tests
    )
    assert settings.config is not None
    sim = Simulation(SIM, now=time.time())
    messages = simulated_messages(sim, SIM.count or 0)
    reference = reference_attributions(settings.config, messages)
    topics = [settings.attributions_topic, settings.scores_topic]
    with TopicReader(settings, topics) as reader:
        yield Cluster(settings, tmp_path, reader, sim, messages, reference)


def wait_split(a: WorkerProcess, b: WorkerProcess, timeout: float = 60.0) -> None:
    """Wait until ``a`` and ``b`` hold disjoint, non-empty halves of the 4 input partitions."""

    def split() -> bool:
        pa, pb = a.assigned() or [], b.assigned() or []
        return bool(pa and pb) and sorted(pa + pb) == [0, 1, 2, 3]

    wait_until(
        split,
        timeout,
        "the 4 partitions split between two workers",
        detail=lambda: f"{a.assigned()} and {b.assigned()}\n{b.tail()}",
        interval=0.2,
    )


def test_two_workers_share_four_partitions_of_four_graphs(cluster: Cluster) -> None:
    with cluster.worker("a") as a, cluster.worker("b") as b:
        a.ready()
        b.ready()
        wait_split(a, b)
        cluster.publish(0, SIM.count or 0)
        cluster.wait_for_reference(90)
        assert cluster.attributions() == cluster.reference
        by_graph = {d["graph"] for d in cluster.attributions().values()}
        assert by_graph == set(NAMES)  # every graph's attributions appear
        pa, pb = a.assigned(), b.assigned()
        assert pa is not None
        assert pb is not None
        for worker, mine in ((a, pa), (b, pb)):  # each worker ran the graphs of its partitions
            started = {n for n in NAMES if f"graph {n!r}: new state" in worker.log()}
            assert started == {NAMES[p] for p in mine}
        cluster.wait_for_scores(90)  # every message consumed (the last fault is long before)
        settled = b.log().count("Recovery]: Worker ready")
        assert a.stop() == 0
        # B stops once the group has settled without A: a worker stopping inside the rebalance
        # that A's leaving starts cannot commit (its generation is gone; the checkpoint it
        # wrote at the rebalance holds the same offsets, so a restart skips what it re-reads)
        b.wait_for(r"assigned input partitions: \[0, 1, 2, 3\]", 60)
        b.wait_for(r"Recovery\]: Worker ready", 60, count=settled + 1)
        assert b.stop() == 0
    # a clean stop checkpoints and commits everything: a restart would replay nothing
    assert committed_offsets(cluster.settings, 4) == [SIM.count] * 4


def test_a_worker_killed_mid_stream_loses_nothing(cluster: Cluster) -> None:
    """A alone runs the warm-up and the first faults; B joins (A checkpoints at the
    rebalance); A is killed with SIGKILL while events flow, after publishing attributions it
    never checkpointed; B takes A's graphs over from the changelog; A restarts as A2 and takes
    some back (B checkpoints at that rebalance). No incident is lost, no graph warms up again,
    replayed incidents keep their ids."""
    a = cluster.worker("a").start()
    b = cluster.worker("b")
    a2 = cluster.worker("a2")
    try:
        a.ready()
        cluster.publish(0, 130)  # warm-up and fault 1 (windows 100..103)
        cluster.wait_for_reference(60, until=cluster.sim.window(130))
        b.start().ready()
        wait_split(a, b)  # A checkpointed every graph when the group rebalanced
        victims = a.assigned() or []
        flow = threading.Thread(target=cluster.publish, args=(130, 200, 40.0))
        flow.start()  # windows 130..199 at 10 per graph and second: about 7 s
        fault2 = {
            k
            for k, d in cluster.reference.items()
            if d["graph"] in {NAMES[p] for p in victims}
            and cluster.sim.window(150) <= d["window"]["start"] < cluster.sim.window(154)
        }
        cluster.reader.wait_until(lambda r: fault2 <= set(cluster.attributions()), 60)
        a.kill(signal.SIGKILL)  # mid-stream, with fault-2 attributions not checkpointed
        b.wait_for(r"assigned input partitions: \[0, 1, 2, 3\]", 60)
        for p in victims:  # B resumes A's graphs (from A's last checkpoint) before A2 joins
            b.wait_for(re.escape(f"graph {NAMES[p]!r}: restored state from checkpoint"), 60)
        flow.join(timeout=60)
        a2.start().ready()
        wait_split(a2, b)
        cluster.publish(200, SIM.count or 0)  # fault 3 (windows 200..203) and the rest
        cluster.wait_for_reference(90)

        got = cluster.attributions()
        assert got == cluster.reference  # nothing lost, nothing new, the same ids
        raw = cluster.reader.docs(cluster.settings.attributions_topic)
        duplicates = len(raw) - len(got)
        assert duplicates >= len(fault2)  # A's unsaved work was done again, recognisably
        # B restored A's graphs from the changelog instead of starting them afresh
        b_log = b.log()
        for p in victims:
            assert f"graph {NAMES[p]!r}: restored state from checkpoint" in b_log
            assert f"graph {NAMES[p]!r}: new state" not in b_log
        assert "restored state from checkpoint" in a2.log()
        assert "new state" not in a2.log()
        # ... so no graph warmed up again: every snapshot past the warm-up was scored warm
        scores = cluster.reader.docs(cluster.settings.scores_topic)
        # each graph's results on the partition its key hashes to (murmur2, as kafka-python,
        # aiokafka and the Java client do; the worker hashes a key once and keeps the answer)
        for topic in (cluster.settings.scores_topic, cluster.settings.attributions_topic):
            records = cluster.reader.records(topic)
            assert records
            for record in records:
                assert record.key is not None
                assert record.partition == NAMES.index(record.key.decode())
        late = [d for d in scores if d["window"]["start"] >= cluster.sim.window(64)]
        assert late
        assert all(d["warm"] for d in late)
        assert b.stop() == 0
        assert a2.stop() == 0
    finally:
        for w in (a, b, a2):
            w.kill()

"""Where a request's events go: the input topic (acknowledged by Kafka) or an embedded engine.

:class:`KafkaSink` produces a request's events with kafka-python and returns only when the
broker has acknowledged every one (``acks=all`` by default). It bounds the bytes of events not
yet acknowledged (``max_pending_bytes``): a request that would go past the bound is refused
before anything of it is sent (``queue_full``), so the sender backs off and retries. A request
whose events are not all acknowledged within ``ack_timeout`` seconds, or whose send fails, is
refused with ``broker_unavailable``; some of its events may have reached Kafka, and the
retry repeats them (at-least-once, as everywhere in the pipeline: the aligner ignores the
repeats).

:class:`EmbeddedSink` runs the events through an in-process
:class:`~stream_rca.streaming.pipeline.Pipeline` and writes the attribution documents as JSON
lines; no broker is involved.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol

from stream_rca.ingest.convert import RejectedError

__all__ = ["EmbeddedSink", "KafkaSink", "Sink"]

log = logging.getLogger("stream_rca.ingest")

Event = tuple[bytes, bytes]
_Outcome = tuple[Event, int, "asyncio.Future[None]", BaseException | None]


class Sink(Protocol):
    """What the receiver hands a request's events to."""

    async def write(self, events: Sequence[Event]) -> None:
        """Return once the events are safely stored; raise :class:`RejectedError` if not."""

    @property
    def pending_bytes(self) -> int:
        """Bytes of events handed over and not yet acknowledged."""

    def close(self) -> None:
        """Flush and release."""


class KafkaSink:
    """Produce events to ``topic`` and wait for the broker's acknowledgements.

    An event stays counted in :attr:`pending_bytes` until the broker settles it, even after its
    request gave up waiting (``broker_unavailable``): a slow broker keeps refusing new requests
    (``queue_full``) instead of piling more on. An event sent again while its first send is
    still in flight waits for that send, and one that reached Kafka after its request gave up
    is not sent again when the sender retries (up to ``remembered`` such events), so a retry
    after a stall adds nothing twice.

    Parameters
    ----------
    producer
        A kafka-python ``KafkaProducer`` (with the topic's metadata loaded, so that ``send``
        does not wait for it).
    topic
        The input topic.
    max_pending_bytes
        Bound on the bytes sent and not yet acknowledged.
    ack_timeout
        Seconds to wait for a request's acknowledgements.
    remembered
        Most events kept that reached Kafka after their request gave up.
    """

    def __init__(
        self,
        producer: Any,
        topic: str,
        *,
        max_pending_bytes: int,
        ack_timeout: float,
        remembered: int = 100_000,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.max_pending_bytes = max_pending_bytes
        self.ack_timeout = ack_timeout
        self.remembered = remembered
        self._pending = 0
        self._inflight: dict[Event, asyncio.Future[None]] = {}
        self._abandoned: set[Event] = set()
        self._landed: dict[Event, None] = {}
        self._outcomes: collections.deque[_Outcome] = collections.deque()
        self._woken = False

    @property
    def pending_bytes(self) -> int:
        """Bytes of events sent and not yet acknowledged."""
        return self._pending

    async def write(self, events: Sequence[Event]) -> None:
        """Send ``events`` and wait until the broker has acknowledged all of them."""
        if not events:
            return
        size = sum(len(k) + len(v) for k, v in events)
        if self._pending and self._pending + size > self.max_pending_bytes:
            raise RejectedError(
                "queue_full",
                f"{self._pending} bytes wait for the broker's acknowledgement (limit "
                f"{self.max_pending_bytes}); retry later",
                503,
            )
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []
        try:
            for event in events:
                if self._landed.pop(event, 0) is None:
                    continue  # it reached Kafka after an earlier request gave up on it
                done = self._inflight.get(event)
                if done is None:
                    done = self._send(loop, event)
                self._abandoned.discard(event)
                waiting.append(done)
            together = asyncio.gather(*waiting)
            together.add_done_callback(_retrieve)
            # shielded: on a timeout the sends go on, counted as pending until settled
            await asyncio.wait_for(asyncio.shield(together), self.ack_timeout)
        except TimeoutError:
            self._abandoned.update(e for e in events if e in self._inflight)
            raise RejectedError(
                "broker_unavailable",
                f"Kafka did not acknowledge {len(events)} events within {self.ack_timeout:g} s",
                503,
            ) from None
        except RejectedError:
            raise
        except Exception as exc:  # kafka-python's errors: the broker refused or is unreachable
            self._abandoned.update(e for e in events if e in self._inflight)
            raise RejectedError(
                "broker_unavailable", f"Kafka refused the events: {type(exc).__name__}: {exc}", 503
            ) from None

    def _send(self, loop: asyncio.AbstractEventLoop, event: Event) -> asyncio.Future[None]:
        done: asyncio.Future[None] = loop.create_future()
        size = len(event[0]) + len(event[1])
        self._pending += size
        self._inflight[event] = done
        try:
            future = self.producer.send(self.topic, key=event[0], value=event[1])
        except BaseException as exc:
            self._settled(event, size, done, exc)
            return done
        future.add_callback(self._acked, loop, event, size, done)
        future.add_errback(self._failed, loop, event, size, done)
        return done

    # The producer's I/O thread settles events; each one is queued, and the event loop is
    # woken once for all that the thread settles before the loop gets to them.

    def _acked(
        self, loop: asyncio.AbstractEventLoop, event: Event, size: int, done: Any, _: Any
    ) -> None:
        self._queue(loop, (event, size, done, None))

    def _failed(
        self, loop: asyncio.AbstractEventLoop, event: Event, size: int, done: Any, exc: Any
    ) -> None:
        error = exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
        self._queue(loop, (event, size, done, error))

    def _queue(self, loop: asyncio.AbstractEventLoop, outcome: _Outcome) -> None:
        self._outcomes.append(outcome)
        if not self._woken:
            self._woken = True
            loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._woken = False  # before the queue is read: an outcome queued from now on wakes again
        outcomes = self._outcomes
        while outcomes:
            self._settled(*outcomes.popleft())

    def _settled(
        self, event: Event, size: int, done: asyncio.Future[None], error: BaseException | None
    ) -> None:
        self._pending -= size
        if self._inflight.get(event) is done:
            del self._inflight[event]
        abandoned = event in self._abandoned
        self._abandoned.discard(event)
        if not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
        if error is not None or not abandoned:
            return
        self._landed[event] = None
        while len(self._landed) > self.remembered:
            del self._landed[next(iter(self._landed))]

    def close(self) -> None:
        """Flush what is pending (a few seconds at most) and close the producer."""
        try:
            self.producer.flush(timeout=5)
        finally:
            self.producer.close(timeout=5)


def _retrieve(together: asyncio.Future[Any]) -> None:
    if not together.cancelled():
        together.exception()  # seen here, so that asyncio does not log it as never retrieved


class EmbeddedSink:
    """Run events through an in-process pipeline; write attribution documents as JSON lines.

    Parameters
    ----------
    pipeline
        A :class:`~stream_rca.streaming.pipeline.Pipeline` of the graphs served.
    output
        Where the attribution documents go (one JSON document a line).
    on_output
        Called with each output record (``kind``, ``value``), e.g. to count dead letters.
    """

    def __init__(
        self,
        pipeline: Any,
        output: IO[str],
        on_output: Callable[[Any], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.output = output
        self.on_output = on_output
        self._lock = threading.Lock()

    @property
    def pending_bytes(self) -> int:
        """Always 0: events are processed when they are written."""
        return 0

    async def write(self, events: Sequence[Event]) -> None:
        """Process ``events`` in order; attributions are written before this returns."""
        with self._lock:
            for key, value in events:
                outcome = self.pipeline.process_one(value, key=key)
                for out in outcome.outputs:
                    if self.on_output is not None:
                        self.on_output(out)
                    if out.kind == "attributions":
                        doc = json.loads(out.value)
                        self.output.write(json.dumps(doc) + "\n")
                    elif out.kind == "deadletter":
                        log.warning("embedded engine refused an event: %s", outcome.reason)
            self.output.flush()

    def close(self) -> None:
        """Flush the output."""
        self.output.flush()

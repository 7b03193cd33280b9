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
import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol

from stream_rca.ingest.convert import RejectedError

__all__ = ["EmbeddedSink", "KafkaSink", "Sink"]

log = logging.getLogger("stream_rca.ingest")

Event = tuple[bytes, bytes]


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
    """

    def __init__(
        self, producer: Any, topic: str, *, max_pending_bytes: int, ack_timeout: float
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.max_pending_bytes = max_pending_bytes
        self.ack_timeout = ack_timeout
        self._pending = 0

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
        self._pending += size
        try:
            for key, value in events:
                done: asyncio.Future[None] = loop.create_future()
                future = self.producer.send(self.topic, key=key, value=value)
                future.add_callback(_settle, loop, done, None)
                future.add_errback(_fail, loop, done)
                waiting.append(done)
            await asyncio.wait_for(asyncio.gather(*waiting), self.ack_timeout)
        except TimeoutError:
            raise RejectedError(
                "broker_unavailable",
                f"Kafka did not acknowledge {len(events)} events within {self.ack_timeout:g} s",
                503,
            ) from None
        except RejectedError:
            raise
        except Exception as exc:  # kafka-python's errors: the broker refused or is unreachable
            raise RejectedError(
                "broker_unavailable", f"Kafka refused the events: {type(exc).__name__}: {exc}", 503
            ) from None
        finally:
            self._pending -= size

    def close(self) -> None:
        """Flush what is pending (a few seconds at most) and close the producer."""
        try:
            self.producer.flush(timeout=5)
        finally:
            self.producer.close(timeout=5)


def _settle(
    loop: asyncio.AbstractEventLoop, done: asyncio.Future[None], value: Any, _: Any
) -> None:
    loop.call_soon_threadsafe(_set_result, done)


def _fail(loop: asyncio.AbstractEventLoop, done: asyncio.Future[None], exc: Any) -> None:
    error = exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
    loop.call_soon_threadsafe(_set_exception, done, error)


def _set_result(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _set_exception(done: asyncio.Future[None], exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)


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

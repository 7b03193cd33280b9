"""The receiver's HTTP endpoints (aiohttp): remote-write, OTLP/HTTP metrics, its own metrics.

- ``POST /api/v1/write``: Prometheus remote-write 1.0 (``Content-Type: application/x-protobuf``,
  ``Content-Encoding: snappy``); answers 204 once Kafka has every event of the request;
- ``POST /v1/metrics``: OTLP/HTTP (``application/x-protobuf`` or ``application/json``,
  optionally ``Content-Encoding: gzip``); answers 200 with an ``ExportMetricsServiceResponse``;
- ``GET /metrics``: the receiver's Prometheus metrics; ``GET /-/ready``: 200 when serving.

A request is taken whole or not at all: any bad sample refuses it (4xx, nothing written, the
reason counted in ``stream_rca_ingest_rejected_total``); a request the broker cannot take in
time is refused with 503 (remote-write senders retry on 5xx; OTLP gets 429 when the producer
queue is full, its spec's answer for back-pressure), both with ``Retry-After``. With a token
set, both ingest endpoints want ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from stream_rca.ingest.convert import Batch, Converter, RejectedError
from stream_rca.ingest.fastwrite import feed_write_body, feed_write_request
from stream_rca.ingest.metrics import IngestMetrics
from stream_rca.ingest.otlp import decode_otlp, feed_otlp, otlp_response
from stream_rca.ingest.sinks import Sink
from stream_rca.ingest.wire import decompress_write_request, status_message

__all__ = ["Receiver", "feed_write_request"]

log = logging.getLogger("stream_rca.ingest")

_GRPC_CODE = {400: 3, 401: 16, 413: 3, 415: 3, 429: 8, 503: 14}
_LOGGED_PER_REASON = 5


class Receiver:
    """The ingest endpoints over one converter and one sink.

    Parameters
    ----------
    converter
        Maps series to nodes and keeps counter and histogram state.
    sink
        Takes each request's events (Kafka, or an embedded engine).
    registry
        Where the receiver's metrics are registered (and what ``/metrics`` serves).
    token
        Bearer token wanted on the ingest endpoints (``None``: none).
    max_body
        Largest request body, bytes (413 beyond), after gzip; a snappy body may decompress
        to 16 times that.
    retry_after
        Seconds the ``Retry-After`` header of 429/503 answers says.
    clock
        Wall clock (unix seconds), for the check against timestamps from the future.
    """

    def __init__(
        self,
        converter: Converter,
        sink: Sink,
        registry: CollectorRegistry,
        *,
        token: str | None = None,
        max_body: int = 4 * 1024 * 1024,
        retry_after: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.converter = converter
        self.sink = sink
        self.registry = registry
        self.metrics = IngestMetrics(registry)
        self.metrics.track_pending(lambda: sink.pending_bytes)
        self.token = token
        self.max_body = max_body
        self.max_decoded = 16 * max_body
        self.retry_after = retry_after
        self.clock = clock
        self._logged: dict[str, int] = {}

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/api/v1/write", self.remote_write)
        app.router.add_post("/v1/metrics", self.otlp_metrics)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/-/ready", self.ready)
        return app

    # -- endpoints ------------------------------------------------------------------------------

    async def remote_write(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/v1/write``."""
        started = time.perf_counter()
        try:
            self._authorize(request)
            _want_type(request, ("application/x-protobuf",))
            encoding = request.headers.get("Content-Encoding", "").strip().lower()
            if encoding != "snappy":
                raise RejectedError(
                    "unsupported_encoding",
                    f"remote-write bodies are snappy-compressed; Content-Encoding is "
                    f"{encoding or 'missing'!r}",
                    415,
                )
            body = await self._body(request)
            raw = decompress_write_request(body, max_decoded=self.max_decoded)
            batch = self.converter.batch(self.clock())
            feed_write_body(raw, batch)
            events = await self._store(batch)
        except RejectedError as exc:
            return self._refuse("remote_write", exc, json_body=None)
        finally:
            self.metrics.seconds.labels("remote_write").observe(time.perf_counter() - started)
        self.metrics.accepted("remote_write", 204, batch.samples, batch.repeats, events)
        return web.Response(status=204)

    async def otlp_metrics(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/metrics``."""
        started = time.perf_counter()
        as_json = request.content_type == "application/json"
        try:
            self._authorize(request)
            _want_type(request, ("application/x-protobuf", "application/json"))
            encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("gzip", "deflate", "identity", ""):
                raise RejectedError(
                    "unsupported_encoding",
                    f"Content-Encoding {encoding!r}: expected gzip, deflate or none",
                    415,
                )
            body = await self._body(request)  # gzip and deflate are undone by aiohttp
            export = decode_otlp(body, json=as_json)
            batch = self.converter.batch(self.clock())
            feed_otlp(export, batch)
            events = await self._store(batch)
        except RejectedError as exc:
            if exc.reason == "queue_full":
                exc = RejectedError(exc.reason, exc.message, 429)
            return self._refuse("otlp", exc, json_body=as_json)
        finally:
            self.metrics.seconds.labels("otlp").observe(time.perf_counter() - started)
        self.metrics.accepted("otlp", 200, batch.samples, batch.repeats, events)
        content_type = "application/json" if as_json else "application/x-protobuf"
        return web.Response(status=200, body=otlp_response(json=as_json), content_type=content_type)

    async def metrics_page(self, request: web.Request) -> web.StreamResponse:
        """``GET /metrics``."""
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ready(self, request: web.Request) -> web.StreamResponse:
        """``GET /-/ready``."""
        return web.Response(text="ready\n")

    # -- steps ----------------------------------------------------------------------------------

    def _authorize(self, request: web.Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {self.token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise RejectedError("unauthorized", "a valid 'Authorization: Bearer' is needed", 401)

    async def _body(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > self.max_body:
            raise RejectedError(
                "too_large", f"the body has {length} bytes, more than {self.max_body}", 413
            )
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RejectedError(
                "too_large", f"the body has more than {self.max_body} bytes", 413
            ) from None

    async def _store(self, batch: Batch) -> int:
        events = batch.events()
        await self.sink.write(events)
        batch.commit()
        return len(events)

    def _refuse(
        self, protocol: str, exc: RejectedError, *, json_body: bool | None
    ) -> web.StreamResponse:
        self.metrics.rejected(protocol, exc.reason, exc.status)
        seen = self._logged.get(exc.reason, 0) + 1
        self._logged[exc.reason] = seen
        if seen <= _LOGGED_PER_REASON or seen % 1000 == 0:
            log.warning("%s request refused (%d so far): %s", protocol, seen, exc)
        headers: dict[str, str] = {}
        if exc.status in (429, 503):
            headers["Retry-After"] = str(self.retry_after)
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="stream-rca"'
        text = str(exc)
        if json_body is None:
            return web.Response(status=exc.status, text=text + "\n", headers=headers)
        code = _GRPC_CODE.get(exc.status, 3)
        if json_body:
            body = json.dumps({"code": code, "message": text}).encode()
            return web.Response(
                status=exc.status, body=body, headers=headers, content_type="application/json"
            )
        return web.Response(
            status=exc.status,
            body=status_message(code, text),
            headers=headers,
            content_type="application/x-protobuf",
        )


def _want_type(request: web.Request, accepted: tuple[str, ...]) -> None:
    if request.content_type not in accepted:
        raise RejectedError(
            "unsupported_media_type",
            f"Content-Type {request.content_type!r}: expected {' or '.join(accepted)}",
            415,
        )

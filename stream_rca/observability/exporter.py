"""Serve a registry's metrics over HTTP for Prometheus to scrape."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

__all__ = ["MetricsServer", "serve"]


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """A running ``/metrics`` endpoint; stop it with :meth:`close` or a ``with`` block."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when it was started on port 0)."""
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        """Base URL of the endpoint, e.g. ``http://127.0.0.1:9100``."""
        raw = self.server.server_address[0]
        host = raw.decode() if isinstance(raw, bytes) else str(raw)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving, release the socket and wait for the server thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> MetricsServer:
    """Serve ``registry`` at ``http://addr:port/metrics`` from a daemon thread.

    Parameters
    ----------
    registry
        The registry to expose (the one given to :class:`PipelineMetrics`).
    port
        TCP port; 0 picks a free one (read it back from :attr:`MetricsServer.port`).
    addr
        Address to bind: loopback by default; ``0.0.0.0`` only inside a container
        (``STREAM_RCA_METRICS_ADDR``).

    Returns
    -------
    MetricsServer
        The running server; call :meth:`MetricsServer.close` to stop it.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> with serve(CollectorRegistry(), 0) as server:
    ...     server.port > 0
    True
    """
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(server, thread)

"""A short reachability check of the Kafka bootstrap servers, before a command starts its clients.

:func:`check_broker` asks the bootstrap servers for the cluster's metadata within a few
seconds, so that a broker that is down, or a listener that speaks another security protocol
(SASL against PLAINTEXT and the reverse, SSL), is one clear line naming the address and the
protocol, instead of a ``KafkaTimeoutError`` traceback half a minute later.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import warnings
from typing import Any

from stream_rca.config import Settings, env_name
from stream_rca.errors import BrokerUnavailableError

__all__ = ["check_broker"]


def check_broker(settings: Settings, timeout_s: float = 5.0) -> int:
    """Check that a Kafka broker answers at ``settings.kafka_bootstrap``; return its broker count.

    First a TCP connection to each bootstrap address (at most ``timeout_s`` each), then a
    metadata request with the security settings (at most ``timeout_s``). When that fails on
    an address that accepts connections, a PLAINTEXT request (at most 3 s) tells whether the
    listener speaks PLAINTEXT where another protocol was configured.

    Raises
    ------
    BrokerUnavailableError
        One line naming the bootstrap address, the security protocol and what to check.
    """
    servers = [h.strip() for h in settings.kafka_bootstrap.split(",") if h.strip()]
    protocol = settings.security_protocol
    where = f"Kafka at {settings.kafka_bootstrap} ({protocol})"
    reasons = [_tcp_reason(address, timeout_s) for address in servers]
    if not servers or all(reasons):
        raise BrokerUnavailableError(
            f"{where}: no broker reachable: {'; '.join(r for r in reasons if r) or 'no address'}"
            f" (is it running? --bootstrap / {env_name('kafka_bootstrap')})"
        )
    try:
        return _metadata(settings, servers, timeout_s)
    except Exception as exc:
        timed_out = type(exc).__name__ == "KafkaTimeoutError"
        detail = "" if timed_out else f" ({' '.join(str(exc).split()) or type(exc).__name__})"
    if protocol == "PLAINTEXT":
        hint = "is it a Kafka listener? it may need SSL or SASL"
    elif _answers_plaintext(servers, timeout_s):
        hint = f"that listener speaks PLAINTEXT, not {protocol}"
    else:
        hint = "the listener speaks another security protocol, or refuses the credentials"
    raise BrokerUnavailableError(
        f"{where}: connections are accepted but no metadata came back within {timeout_s:g} s"
        f"{detail}: {hint}; check --security-protocol ({env_name('security_protocol')}) and "
        "the SASL/SSL settings"
    )


def _tcp_reason(address: str, timeout_s: float) -> str | None:
    """Why no TCP connection can be made to ``host:port`` (``None`` when one can)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "localhost"
    try:
        number = int(port)
    except ValueError:
        return f"{address!r} is not HOST:PORT"
    try:
        with socket.create_connection((host, number), timeout=timeout_s):
            return None
    except TimeoutError:
        return f"{address}: no answer within {timeout_s:g} s"
    except OSError as exc:
        return f"{address}: {exc.strerror or exc}"


def _metadata(settings: Settings, servers: list[str], timeout_s: float) -> int:
    """The broker count in the cluster's metadata; every client is closed, whatever happens."""
    from stream_rca.streaming.producers import _kafka

    admin_class = _kafka().admin.KafkaAdminClient
    created: list[Any] = []

    def client(**options: Any) -> Any:  # kept, to be closed when the bootstrap fails
        made = admin_class.DEFAULT_CONFIG["kafka_client"](**options)
        created.append(made)
        return made

    ms = max(int(timeout_s * 1000), 100)
    conf: dict[str, Any] = {
        "bootstrap_servers": servers,
        "client_id": "stream-rca-check",
        "request_timeout_ms": ms,
        "bootstrap_timeout_ms": ms,
        "reconnect_backoff_max_ms": 1000,
        "kafka_client": client,
        **settings.kafka_client_options(),
    }
    admin = None
    # kafka-python drops the sockets of failed SSL handshakes without closing them: their
    # ResourceWarnings (in its network thread, or at the collection below) say nothing useful.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            admin = admin_class(**conf)
            cluster = admin.describe_cluster()
        finally:
            for made in created:
                with contextlib.suppress(Exception):
                    made.close()
            if admin is not None:
                with contextlib.suppress(Exception):
                    admin.close()
            created.clear()
            gc.collect()
    return len(cluster.get("brokers", [])) if isinstance(cluster, dict) else 1


def _answers_plaintext(servers: list[str], timeout_s: float) -> bool:
    """Whether the servers answer a PLAINTEXT metadata request (a protocol mismatch)."""
    plain = Settings(kafka_bootstrap=",".join(servers))
    try:
        _metadata(plain, servers, min(timeout_s, 3.0))
    except Exception:
        return False
    return True

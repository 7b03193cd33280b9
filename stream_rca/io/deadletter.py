"""Dead-letter records: what is kept of an input event that could not be used, and why.

Every rejected event goes to the dead-letter topic as one JSON document (schema
``stream-rca.dead-letter/v1``) with a reason from a fixed set, :data:`DEAD_LETTER_REASONS`,
which is also the label set of the dead-letter counter.
"""

from __future__ import annotations

import base64
import json

__all__ = ["DEAD_LETTER_REASONS", "DEAD_LETTER_SCHEMA", "dead_letter_record"]

DEAD_LETTER_REASONS: tuple[str, ...] = (
    "too_large",
    "malformed_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "bad_timestamp",
    "non_finite_value",
    "unknown_graph",
    "unknown_node",
    "late_event",
)
"""Every reason code an input event can be dead-lettered with (a bounded metric label set).

All but ``"late_event"`` come from :func:`stream_rca.io.events.decode_event`;
``"late_event"`` is reported by the aligner (:attr:`stream_rca.io.aligner.AlignStatus.LATE`)
for an event whose window was already emitted.
"""

DEAD_LETTER_SCHEMA = "stream-rca.dead-letter/v1"


def dead_letter_record(
    raw: bytes | str | None,
    reason: str,
    message: str,
    *,
    now: float,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    max_payload: int | None = None,
) -> bytes:
    """Build the dead-letter document for a rejected input event.

    Parameters
    ----------
    raw
        The original message value (``None`` for a tombstone).
    reason
        One of :data:`DEAD_LETTER_REASONS`, normally ``DecodeError.reason``.
    message
        What was wrong, normally ``DecodeError.message``.
    now
        When it was rejected, unix seconds (the caller's clock).
    topic, partition, offset
        Where the message came from, when known.
    max_payload
        Keep at most this many bytes of the payload (``"truncated": true`` then); ``None``
        keeps it all. Useful for ``too_large`` messages.

    Returns
    -------
    bytes
        Compact UTF-8 JSON with fields ``schema`` (``stream-rca.dead-letter/v1``), ``reason``,
        ``message``, ``rejected_at``, ``source`` ({topic, partition, offset}), ``payload`` (the
        original as text if it is valid UTF-8, else base64), ``payload_encoding`` (``"utf-8"``,
        ``"base64"`` or ``null`` when there was none), ``payload_size`` (bytes) and ``truncated``.

    Raises
    ------
    ValueError
        For a reason that is not in :data:`DEAD_LETTER_REASONS`.

    Examples
    --------
    >>> doc = json.loads(dead_letter_record(b"\\xff{", "malformed_json", "bad", now=1.0))
    >>> doc["payload"], doc["payload_encoding"], doc["payload_size"]
    ('/3s=', 'base64', 2)
    """
    if reason not in DEAD_LETTER_REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}; use one of {DEAD_LETTER_REASONS}")
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    payload: str | None = None
    encoding: str | None = None
    truncated = False
    if data is not None:
        kept = data if max_payload is None else data[: max(max_payload, 0)]
        truncated = len(kept) < len(data)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(kept).decode("ascii"), "base64"
        else:  # a cut may split the last character: drop its remains
            payload, encoding = kept.decode("utf-8", "ignore"), "utf-8"
    doc = {
        "schema": DEAD_LETTER_SCHEMA,
        "reason": reason,
        "message": message,
        "rejected_at": now,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "payload": payload,
        "payload_encoding": encoding,
        "payload_size": None if data is None else len(data),
        "truncated": truncated,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

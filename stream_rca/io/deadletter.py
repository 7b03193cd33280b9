"""Dead-letter records: what is kept of an input event that could not be used, and why.

Every rejected event goes to the dead-letter topic as one JSON document (schema
``stream-rca.dead-letter/v1``) with a reason from a fixed set, :data:`DEAD_LETTER_REASONS`,
which is also the label set of the dead-letter counter.

A dead letter always fits its topic: :func:`dead_letter_record` caps the size of the *encoded*
document (after JSON escaping, which can make a payload of quotes twice and one of control
characters six times as long), not of the original bytes. A document over the cap keeps its
reason, message and source, a prefix of the payload as long as fits, and ``"truncated": true``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

__all__ = [
    "DEAD_LETTER_MAX_BYTES",
    "DEAD_LETTER_REASONS",
    "DEAD_LETTER_SCHEMA",
    "dead_letter_record",
    "shrink_dead_letter",
]

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
    "processing_error",
    "graph_quarantined",
    "extra_series_limit",
    "bad_spans",
)
"""Every reason code an input event can be dead-lettered with (a bounded metric label set).

The first nine come from :func:`stream_rca.io.events.decode_event`; ``"late_event"`` is
reported by the aligner (:attr:`stream_rca.io.aligner.AlignStatus.LATE`) for an event whose
window was already emitted; ``"processing_error"`` (the engine raised while processing the
event; the message names the exception) and ``"graph_quarantined"`` (the event's graph failed
too often in a row and is no longer run) come from the processing loop's error policy
(:mod:`stream_rca.streaming.errors`); ``"extra_series_limit"`` (series not in a graph that
accepts unknown nodes, beyond its ``max_extra_series``) and ``"bad_spans"`` (a message of the
spans topic that is not OTLP JSON nor Jaeger JSON) come from the pipeline.
"""

DEAD_LETTER_SCHEMA = "stream-rca.dead-letter/v1"

DEAD_LETTER_MAX_BYTES = 1_000_000
"""Default cap of an encoded dead letter, in bytes.

Kafka's default ``max.message.bytes`` is 1,048,588 bytes per record batch; the cap leaves room
for the key and the batch's own headers.
"""

_MIN_TEXT = 64  # below this budget the payload is left out altogether


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
    max_bytes: int | None = DEAD_LETTER_MAX_BYTES,
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
        Keep at most this many bytes of the original payload; ``None`` keeps it all (up to
        ``max_bytes``).
    max_bytes
        The most bytes the encoded document may have (the dead-letter topic's limit, less
        the key); a longer payload is cut to the longest prefix that fits. ``None``: no cap.

    Returns
    -------
    bytes
        Compact UTF-8 JSON with fields ``schema`` (``stream-rca.dead-letter/v1``), ``reason``,
        ``message``, ``rejected_at``, ``source`` ({topic, partition, offset}), ``payload`` (the
        original, or a prefix of it, as text if it is valid UTF-8, else base64),
        ``payload_encoding`` (``"utf-8"``, ``"base64"`` or ``null`` when there was none),
        ``payload_size`` (bytes of the original) and ``truncated`` (``true`` when the payload
        was cut). Never longer than ``max_bytes`` (when that leaves room for the fields other
        than the payload, about 300 bytes plus the message).

    Raises
    ------
    ValueError
        For a reason that is not in :data:`DEAD_LETTER_REASONS`.

    Examples
    --------
    >>> doc = json.loads(dead_letter_record(b"\\xff{", "malformed_json", "bad", now=1.0))
    >>> doc["payload"], doc["payload_encoding"], doc["payload_size"]
    ('/3s=', 'base64', 2)
    >>> quotes = b'"' * 1000  # 2000 bytes once escaped
    >>> out = dead_letter_record(quotes, "malformed_json", "bad", now=1.0, max_bytes=1000)
    >>> doc = json.loads(out)
    >>> len(out) <= 1000, doc["truncated"], doc["payload_size"], 300 < len(doc["payload"]) < 400
    (True, True, 1000, True)
    """
    if reason not in DEAD_LETTER_REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}; use one of {DEAD_LETTER_REASONS}")
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    doc: dict[str, Any] = {
        "schema": DEAD_LETTER_SCHEMA,
        "reason": reason,
        "message": message,
        "rejected_at": now,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "payload": None,
        "payload_encoding": None,
        "payload_size": None if data is None else len(data),
        "truncated": False,
    }
    if data is None:
        return _dumps(doc)
    kept = data if max_payload is None else data[: max(max_payload, 0)]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        encoding = "base64"
    else:
        encoding = "utf-8"
    doc["payload_encoding"] = encoding
    doc["payload"] = _text(kept, encoding)
    doc["truncated"] = len(kept) < len(data)
    out = _dumps(doc)
    if max_bytes is None or len(out) <= max_bytes:
        return out
    # Too long once escaped: find the longest prefix of the payload that fits.
    doc["truncated"] = True
    doc["payload"] = ""
    budget = max_bytes - len(_dumps(doc))
    if budget < _MIN_TEXT:  # not even a prefix fits (a huge message?): leave the payload out
        doc["payload"], doc["payload_encoding"] = None, None
        doc["message"] = _cut(message, max(max_bytes // 4, _MIN_TEXT))
        return _dumps(doc)
    lo, hi = 0, min(len(kept), budget)  # a byte of payload takes at least one byte of JSON
    while lo < hi:  # the largest n whose prefix fits, by bisection (escaping is monotone)
        mid = (lo + hi + 1) // 2
        if len(_json_string(_text(kept[:mid], encoding))) - 2 <= budget:
            lo = mid
        else:
            hi = mid - 1
    doc["payload"] = _text(kept[:lo], encoding)
    return _dumps(doc)


def _text(data: bytes, encoding: str) -> str:
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    return data.decode("utf-8", "ignore")  # a cut may split the last character: drop its remains


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_string(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "replace")


def _dumps(doc: dict[str, Any]) -> bytes:
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "replace")  # a lone surrogate (from a str) becomes "?"


def shrink_dead_letter(record: bytes, max_bytes: int = 4096) -> bytes:
    """The same dead letter without its payload, for a broker that refused the full one.

    Keeps the reason, the source and the start of the message; sets ``"truncated": true``.

    Examples
    --------
    >>> full = dead_letter_record(b'"' * 5000, "malformed_json", "bad", now=1.0, offset=3)
    >>> doc = json.loads(shrink_dead_letter(full))
    >>> doc["payload"], doc["truncated"], doc["source"]["offset"], doc["payload_size"]
    (None, True, 3, 5000)
    """
    doc = json.loads(record)
    doc["payload"], doc["payload_encoding"], doc["truncated"] = None, None, True
    doc["message"] = _cut(str(doc.get("message", "")), max(max_bytes // 4, _MIN_TEXT))
    return _dumps(doc)

"""The input event codec: JSON metric events to :class:`Sample` values, and back.

One Kafka message holds one JSON object, in one of two forms::

    {"graph": "shop", "node": "api", "ts": 1700000000.0, "value": 0.42}        # single
    {"graph": "shop", "ts": 1700000000.0, "values": {"api": 0.42, "db": 0.1}}  # batch

``ts`` is unix seconds (a number, or a string of one) or an RFC 3339 string with a UTC offset
(:func:`stream_rca.io.timestamps.parse_timestamp`). Other fields are
ignored (room for later additions). A message that cannot be used raises :class:`DecodeError`
whose ``reason`` is one of :data:`DEAD_LETTER_REASONS`; the caller sends it to the dead-letter
topic with :func:`dead_letter_record`. Nothing is dropped silently and nothing crashes.

Checks run in this order and the first failing one gives the reason: ``too_large`` (bytes),
``malformed_json``, ``not_an_object``, ``missing_field``, ``wrong_type``, ``too_large`` (batch
entries), ``bad_timestamp``, ``non_finite_value``, ``unknown_graph``, ``unknown_node``.

A batch is all or nothing: if any of its values is bad, the whole message is rejected, with
a reason and a message naming every bad node of that kind. Producers batch one scrape of one
system, so a partial snapshot is rarely what they meant, and the dead letter keeps the whole.
An empty batch (``"values": {}``) is valid and decodes to no samples.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from stream_rca.errors import DecodeError
from stream_rca.io.deadletter import DEAD_LETTER_REASONS, DEAD_LETTER_SCHEMA, dead_letter_record
from stream_rca.io.timestamps import check_timestamp, parse_timestamp

__all__ = [
    "DEAD_LETTER_REASONS",
    "DEAD_LETTER_SCHEMA",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SKEW",
    "DEFAULT_MAX_VALUES",
    "Sample",
    "dead_letter_record",
    "decode_event",
    "encode_batch",
    "encode_event",
]

DEFAULT_MAX_BYTES = 1_048_576
"""1 MiB, Kafka's default largest message."""
DEFAULT_MAX_VALUES = 10_000
"""Largest number of nodes in one batch event."""
DEFAULT_MAX_SKEW = 300.0
"""How far (seconds) an event may lie in the future of ``now`` (producer clock skew)."""

_SINGLE = ("graph", "node", "ts", "value")
_BATCH = ("graph", "ts", "values")
_MAX_NAMED = 10


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one node of one graph at one time.

    Parameters
    ----------
    graph
        Name of the graph (tenant, system).
    node
        Name of the node (one metric series).
    ts
        Unix seconds.
    value
        A finite number.
    """

    graph: str
    node: str
    ts: float
    value: float


class _DuplicateKeyError(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = val
    return out


def _short(x: object, limit: int = 80) -> str:
    """``repr`` bounded in length, so messages stay small whatever the input."""
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(nodes: Collection[str]) -> str:
    shown = ", ".join(_short(n) for n in list(nodes)[:_MAX_NAMED])
    more = len(nodes) - _MAX_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


def _load(raw: object, max_bytes: int) -> object:
    if isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
    if isinstance(raw, bytes):
        size = len(raw)
    elif isinstance(raw, str):
        size = len(raw.encode("utf-8", "surrogatepass"))
    else:
        raise DecodeError(
            "malformed_json", f"the message is {type(raw).__name__}, not bytes (a tombstone?)"
        )
    if size > max_bytes:
        raise DecodeError(
            "too_large", f"the message has {size} bytes, more than the limit of {max_bytes}"
        )
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                "malformed_json", f"not valid UTF-8 at byte {exc.start}: {exc.reason}"
            ) from None
    else:
        text = raw
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise DecodeError("malformed_json", f"invalid JSON at {where}: {exc.msg}") from None
    except _DuplicateKeyError as exc:
        raise DecodeError("malformed_json", f"duplicate key {_short(exc.args[0])}") from None
    except RecursionError:
        raise DecodeError("malformed_json", "the JSON is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal with more than 4,300 digits
        raise DecodeError("malformed_json", f"invalid JSON: {exc}") from None


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_name(x: object) -> bool:
    return isinstance(x, str) and x != ""


def _finite(x: object) -> bool:
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
    except OverflowError:  # an integer too large for a float
        return False


def _timestamp(raw_ts: object, now: float | None, max_skew: float) -> float:
    try:
        ts = parse_timestamp(raw_ts)
        check_timestamp(ts, now=now, max_skew=max_skew)
    except (ValueError, TypeError) as exc:
        raise DecodeError("bad_timestamp", str(exc)) from None
    return ts


def decode_event(
    raw: bytes | str,
    *,
    known: Mapping[str, Collection[str]] | None = None,
    now: float | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_values: int = DEFAULT_MAX_VALUES,
) -> list[Sample]:
    """Decode and validate one input event (one Kafka message value).

    Parameters
    ----------
    raw
        The message: UTF-8 JSON bytes (a leading BOM is allowed), or the decoded text.
    known
        Graph name to its node names. When given, a graph or node not in it is rejected.
    now
        Current time in unix seconds (the caller's clock); when given, a ``ts`` more than
        ``max_skew`` seconds later is rejected.
    max_skew
        Allowed lead of ``ts`` over ``now``, seconds.
    max_bytes
        Largest accepted message, in bytes (UTF-8 bytes for a ``str``).
    max_values
        Largest accepted number of entries in a batch's ``values``.

    Returns
    -------
    list of Sample
        One sample for the single form; one per node, in message order, for the batch form.

    Raises
    ------
    DecodeError
        With ``reason`` one of :data:`DEAD_LETTER_REASONS` (see the module docstring for
        the order of the checks) and a ``message`` saying what was wrong.

    Examples
    --------
    >>> decode_event(b'{"graph": "shop", "node": "api", "ts": 1700000000, "value": 0.42}')
    [Sample(graph='shop', node='api', ts=1700000000.0, value=0.42)]
    >>> decode_event('{"graph": "shop", "ts": "2023-11-14T22:13:20Z", "values": {"db": 1}}')
    [Sample(graph='shop', node='db', ts=1700000000.0, value=1.0)]
    >>> decode_event(b'{"graph": "shop", "node": "api", "ts": 1700000000, "value": NaN}')
    Traceback (most recent call last):
    ...
    stream_rca.errors.DecodeError: non_finite_value: value of node 'api' is nan, not a finite number
    """
    doc = _load(raw, max_bytes)
    if not isinstance(doc, dict):
        raise DecodeError("not_an_object", f"the JSON is a {type(doc).__name__}, not an object")
    batch = "values" in doc
    if batch and ("node" in doc or "value" in doc):
        raise DecodeError(
            "wrong_type",
            "the event has both 'values' (batch form) and 'node'/'value' (single form); "
            "send one form",
        )
    missing = [f for f in (_BATCH if batch else _SINGLE) if f not in doc]
    if missing:
        form = "batch {graph, ts, values}" if batch else "single {graph, node, ts, value}"
        raise DecodeError("missing_field", f"missing {_names(missing)} (form: {form})")
    graph = doc["graph"]
    if not _is_name(graph):
        raise DecodeError("wrong_type", f"'graph' must be a non-empty string, not {_short(graph)}")
    raw_ts = doc["ts"]
    if isinstance(raw_ts, bool) or not isinstance(raw_ts, int | float | str):
        raise DecodeError(
            "wrong_type",
            f"'ts' must be unix seconds or an RFC 3339 string, not {type(raw_ts).__name__}",
        )
    values: dict[str, Any]
    if batch:
        values = doc["values"]
        if not isinstance(values, dict):
            raise DecodeError(
                "wrong_type", f"'values' must be an object, not {type(values).__name__}"
            )
        bad_type = [n for n, v in values.items() if not (_is_name(n) and _is_number(v))]
        if bad_type:
            raise DecodeError(
                "wrong_type",
                f"batch values must be numbers keyed by non-empty node names; bad: "
                f"{_names(bad_type)}",
            )
        if len(values) > max_values:
            raise DecodeError(
                "too_large", f"the batch has {len(values)} values, more than {max_values}"
            )
    else:
        node, value = doc["node"], doc["value"]
        if not _is_name(node):
            raise DecodeError(
                "wrong_type", f"'node' must be a non-empty string, not {_short(node)}"
            )
        if not _is_number(value):
            raise DecodeError("wrong_type", f"'value' must be a number, not {type(value).__name__}")
        values = {node: value}
    ts = _timestamp(raw_ts, now, max_skew)
    bad_value = [n for n, v in values.items() if not _finite(v)]
    if bad_value:
        if batch:
            msg = f"values of {_names(bad_value)} are not finite numbers"
        else:
            node = bad_value[0]
            msg = f"value of node {_short(node)} is {_short(values[node])}, not a finite number"
        raise DecodeError("non_finite_value", msg)
    if known is not None:
        if graph not in known:
            raise DecodeError("unknown_graph", f"graph {_short(graph)} is not configured")
        nodes = known[graph]
        unknown = [n for n in values if n not in nodes]
        if unknown:
            raise DecodeError(
                "unknown_node", f"graph {_short(graph)} has no node {_names(unknown)}"
            )
    return [Sample(graph, n, ts, float(v)) for n, v in values.items()]


def _check_name(field: str, x: object) -> str:
    if not _is_name(x):
        raise DecodeError("wrong_type", f"{field} must be a non-empty string, not {_short(x)}")
    return str(x)


def _check_value(node: str, x: object) -> float:
    if not _is_number(x):
        raise DecodeError(
            "wrong_type", f"value of node {_short(node)} must be a number, not {type(x).__name__}"
        )
    if not _finite(x):
        raise DecodeError("non_finite_value", f"value of node {_short(node)} is {x!r}, not finite")
    return float(x)  # type: ignore[arg-type]


def _check_ts(ts: object) -> float | str:
    try:
        check_timestamp(parse_timestamp(ts))
    except (ValueError, TypeError) as exc:
        raise DecodeError("bad_timestamp", str(exc)) from None
    return ts if isinstance(ts, str) else float(ts)  # type: ignore[arg-type]


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def encode_event(graph: str, node: str, ts: float | str, value: float) -> bytes:
    """Encode one sample as a single-form event (compact UTF-8 JSON).

    Parameters
    ----------
    graph, node
        Non-empty names.
    ts
        Unix seconds, or an RFC 3339 string (sent as is).
    value
        A finite number.

    Returns
    -------
    bytes
        A message that :func:`decode_event` decodes back to ``[Sample(graph, node, ts, value)]``.

    Raises
    ------
    DecodeError
        The encoder refuses what the decoder would reject (same reason codes).

    Examples
    --------
    >>> encode_event("shop", "api", 1700000000.0, 0.42)
    b'{"graph":"shop","node":"api","ts":1700000000.0,"value":0.42}'
    """
    return _dump(
        {
            "graph": _check_name("graph", graph),
            "node": _check_name("node", node),
            "ts": _check_ts(ts),
            "value": _check_value(node, value),
        }
    )


def encode_batch(
    graph: str, ts: float | str, values: Mapping[str, float], *, drop_nan: bool = False
) -> bytes:
    """Encode the values of several nodes at one time as a batch-form event.

    Parameters
    ----------
    graph
        Non-empty graph name.
    ts
        Unix seconds, or an RFC 3339 string (sent as is).
    values
        Node name to a finite number.
    drop_nan
        Leave out NaN values (a :class:`~stream_rca.core.types.Snapshot` marks a missing
        value with NaN) instead of rejecting them. Infinities are always rejected.

    Returns
    -------
    bytes
        Compact UTF-8 JSON.

    Raises
    ------
    DecodeError
        The encoder refuses what the decoder would reject (same reason codes).

    Examples
    --------
    >>> encode_batch("shop", 1700000000.0, {"api": 0.42, "db": float("nan")}, drop_nan=True)
    b'{"graph":"shop","ts":1700000000.0,"values":{"api":0.42}}'
    """
    out: dict[str, float] = {}
    for node, value in values.items():
        _check_name("a node name", node)
        if drop_nan and _is_number(value) and math.isnan(value):
            continue
        out[node] = _check_value(node, value)
    return _dump({"graph": _check_name("graph", graph), "ts": _check_ts(ts), "values": out})

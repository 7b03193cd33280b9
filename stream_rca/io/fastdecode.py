"""Decode a batch of input events at once: a fast typed decoder, the detailed one for the rest.

:func:`decode_batch` gives, for every message of a batch, what
:func:`~stream_rca.io.events.decode_event` gives for it: the same samples for a valid message,
the same :class:`~stream_rca.errors.DecodeError` (reason and message) for a bad one. It first
tries a typed msgspec decoder, which accepts a message only when it is certainly valid: then
``decode_event`` would accept it too and read the same values. Every other message (about one
in many, in a healthy stream) goes to ``decode_event``, so dead-letter reasons stay exact.

The fast decoder takes a message when all of these hold, and hands it on otherwise:

- it has at most ``max_bytes`` bytes, holds no backslash (so no escaped key can hide a
  duplicate) and exactly as many ``":`` pairs as it has keys (so no key is repeated: a
  repeated key is ``malformed_json`` for ``decode_event``, while a plain JSON decoder keeps
  the last one);
- it is an object with the fields of one form only (``graph``, ``node``, ``ts``, ``value``;
  or ``graph``, ``ts``, ``values`` with at most ``max_values`` entries), no other field;
- ``ts`` is a JSON number (not a string: those take the detailed path) that
  :func:`~stream_rca.io.timestamps.check_timestamp` accepts, values are finite numbers (not
  booleans), and the graph and every node are known.

Examples
--------
>>> known = {"shop": frozenset({"api", "db"})}
>>> good = b'{"graph":"shop","node":"api","ts":1700000000,"value":0.5}'
>>> bad = b'{"graph":"shop","node":"www","ts":1700000000,"value":0.5}'
>>> decoded = decode_batch([good, bad], known=known, now=1700000100.0)
>>> decoded[0]
[Sample(graph='shop', node='api', ts=1700000000.0, value=0.5)]
>>> decoded[1].reason
'unknown_node'
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import msgspec

from stream_rca.errors import DecodeError
from stream_rca.io.events import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SKEW,
    DEFAULT_MAX_VALUES,
    Sample,
    decode_event,
)
from stream_rca.io.timestamps import MAX_TIMESTAMP, MIN_TIMESTAMP

__all__ = ["Decoded", "decode_batch"]

Decoded = list[Sample] | DecodeError
"""What one message decodes to: its samples, or why it was rejected."""


class _Event(msgspec.Struct, forbid_unknown_fields=True):
    """Both event forms in one typed struct; which fields are set says the form."""

    graph: str
    ts: float
    node: str | None = None
    value: float | None = None
    values: dict[str, float] | None = None


_DECODER = msgspec.json.Decoder(_Event)


def decode_batch(
    raws: Sequence[bytes | None],
    *,
    known: Mapping[str, Collection[str]],
    now: float | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_values: int = DEFAULT_MAX_VALUES,
) -> list[Decoded]:
    """Decode every message of a batch; the same outcome as ``decode_event`` on each.

    Parameters
    ----------
    raws
        Message values (``None`` for a tombstone, rejected as ``decode_event`` does).
    known, now, max_skew, max_bytes, max_values
        As for :func:`~stream_rca.io.events.decode_event`; ``known`` is required.

    Returns
    -------
    list
        One entry per message, in order: its list of samples, or the
        :class:`~stream_rca.errors.DecodeError` ``decode_event`` raised for it.
    """
    ahead = math.inf if now is None else now + max_skew
    low, high = MIN_TIMESTAMP, min(MAX_TIMESTAMP, math.nextafter(ahead, math.inf))
    out: list[Decoded] = []
    append = out.append
    decode = _DECODER.decode
    isfinite = math.isfinite
    for raw in raws:
        samples: list[Sample] | None = None
        if type(raw) is bytes and len(raw) <= max_bytes and 92 not in raw:  # no backslash
            try:
                ev = decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                ev = None
            if ev is not None:
                ts, values = ev.ts, ev.values
                nodes = known.get(ev.graph)
                if nodes is None or not (low <= ts < high):  # NaN fails too
                    pass
                elif values is None:  # the single form, inline: most messages of a stream
                    node, value = ev.node, ev.value
                    if (
                        node is not None
                        and value is not None
                        and node in nodes
                        and isfinite(value)
                        and raw.count(b'":') == 4
                    ):
                        samples = [Sample(ev.graph, node, ts, value)]
                else:
                    samples = _fast(ev, raw, nodes, max_values)
        if samples is None:
            append(_detailed(raw, known, now, max_skew, max_bytes, max_values))
        else:
            append(samples)
    return out


def _fast(ev: _Event, raw: bytes, nodes: Collection[str], max_values: int) -> list[Sample] | None:
    """The samples of a certainly valid batch event (known graph, ``ts`` checked), else
    ``None`` (take the detailed path)."""
    values = ev.values
    if values is None or ev.node is not None or ev.value is not None:
        return None
    if len(values) > max_values or raw.count(b'":') != 3 + len(values):
        return None
    graph, ts = ev.graph, ev.ts
    samples = []
    for node, value in values.items():
        if node not in nodes or not math.isfinite(value):
            return None
        samples.append(Sample(graph, node, ts, value))
    return samples


def _detailed(
    raw: bytes | None,
    known: Mapping[str, Collection[str]],
    now: float | None,
    max_skew: float,
    max_bytes: int,
    max_values: int,
) -> Decoded:
    try:
        return decode_event(
            raw,  # type: ignore[arg-type]  # None is reported as a tombstone
            known=known,
            now=now,
            max_skew=max_skew,
            max_bytes=max_bytes,
            max_values=max_values,
        )
    except DecodeError as exc:
        return exc

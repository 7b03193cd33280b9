"""Decode a batch of input events at once: a fast typed decoder, the detailed one for the rest.

:func:`decode_batch` gives, for every message of a batch, what
:func:`~stream_rca.io.events.decode_event` gives for it: the same samples for a valid message,
the same :class:`~stream_rca.errors.DecodeError` (reason and message) for a bad one. It first
tries a typed msgspec decoder, which accepts a message only when it is certainly valid: then
``decode_event`` would accept it too and read the same values. Every other message (about one
in many, in a healthy stream) goes to ``decode_event``, so dead-letter reasons stay exact.

:func:`decode_rows` is the same decoder for the batch path: a message the fast decoder takes
comes out as a :class:`Row` (graph, time, node -> value, in message order; a single-form
message is a row of one value) instead of one :class:`~stream_rca.io.events.Sample` per value,
and :meth:`~stream_rca.io.aligner.Aligner.add_row` places it in its window in one step.

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

__all__ = ["Decoded", "Lane", "Row", "decode_batch", "decode_rows"]

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


class Row(msgspec.Struct, gc=False):
    """The values of one certainly valid message: one graph, one time, node to value.

    What the fast decoder makes of a message it accepts, in either form (a single-form
    message is a row of one value), without one :class:`~stream_rca.io.events.Sample` per
    value: :meth:`~stream_rca.io.aligner.Aligner.add_row` places it in a window in one step.
    ``values`` keeps the message's order and holds finite floats of known nodes only. (A
    msgspec struct: made in C, which is a tenth of a plain class's cost per message; not
    tracked by the cyclic collector, as it refers to no container that could hold it.)
    """

    graph: str
    ts: float
    values: dict[str, float]

    def samples(self) -> list[Sample]:
        """The samples ``decode_event`` gives for the message, in message order."""
        graph, ts = self.graph, self.ts
        return [Sample(graph, node, ts, value) for node, value in self.values.items()]


Lane = Row | list[Sample] | DecodeError
"""What one message decodes to in :func:`decode_rows`: a row (the fast decoder took it), its
samples (the detailed decoder did), or why it was rejected."""


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
    rows = decode_rows(
        raws, known=known, now=now, max_skew=max_skew, max_bytes=max_bytes, max_values=max_values
    )
    return [x.samples() if isinstance(x, Row) else x for x in rows]


def decode_rows(
    raws: Sequence[bytes | None],
    *,
    known: Mapping[str, Collection[str]],
    now: float | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_values: int = DEFAULT_MAX_VALUES,
) -> list[Lane]:
    """:func:`decode_batch`, with each message the fast decoder takes given as a :class:`Row`.

    ``Row.samples()`` of an entry is what :func:`decode_batch` gives for it; an empty batch
    event is an empty list; the detailed decoder's answers are as in :func:`decode_batch`.
    """
    ahead = math.inf if now is None else now + max_skew
    low, high = MIN_TIMESTAMP, min(MAX_TIMESTAMP, math.nextafter(ahead, math.inf))
    out: list[Lane] = []
    append = out.append
    decode = _DECODER.decode
    isfinite = math.isfinite
    for raw in raws:
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
                        append(Row(ev.graph, ts, {node: value}))
                        continue
                elif (
                    ev.node is None
                    and ev.value is None
                    and len(values) <= max_values
                    and raw.count(b'":') == 3 + len(values)
                    and isfinite(sum(values.values()))  # NaN, inf (or an overflow: detailed)
                    and (
                        nodes.issuperset(values)
                        if isinstance(nodes, frozenset | set)
                        else all(n in nodes for n in values)
                    )
                ):
                    append(Row(ev.graph, ts, values) if values else [])
                    continue
        append(_detailed(raw, known, now, max_skew, max_bytes, max_values))
    return out


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

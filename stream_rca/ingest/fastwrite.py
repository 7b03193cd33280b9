"""Remote-write requests to batch events, the reference path and a vectorised fast path.

:func:`feed_write_request` is the reference: it walks a parsed ``WriteRequest`` series by
series and sample by sample. :func:`feed_write_body` gives the same outcome from the
uncompressed body at a fraction of the cost, for the requests Prometheus sends most: many
series with one sample each, most of them gauges.

How the fast path works:

1. the body is parsed with :data:`~stream_rca.ingest.wire.RawWriteRequest`, which leaves each
   series as its encoded bytes;
2. a series encoded as Prometheus encodes it is its labels, then one sample
   (``0x12 len 0x09 <8-byte double> 0x10 <varint>``, or without the double when the value is
   0). The tails of all series are checked at once with numpy, and their values and
   timestamps read from them;
3. the label bytes before the tail are the key of a cache (:attr:`Converter.encoded`) that
   gives the series' labels, rules and gauge slot, resolved once per series: a key enters the
   cache only if it is exactly a list of labels (parsed, and encoded back to the same bytes);
4. the samples of plain gauge series (one rule, a gauge) are checked (finite values; each
   distinct timestamp once) and averaged per node and time with numpy; every other series
   (counters, histograms, several rules, unknown series, other encodings) is parsed and fed
   one by one through the reference path.

Whenever the fast path refuses a request, the batch is emptied and the reference path runs on
the parsed request, so the answer (and the reason and message of a refusal) is always the
reference's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from stream_rca.ingest.convert import Batch, Converter, FastGroup, RejectedError, Resolved
from stream_rca.ingest.wire import RawWriteRequest, TimeSeries, parse_write_request

__all__ = ["feed_write_body", "feed_write_request"]

_CACHE_SIZE = 200_000
_LONG = 18  # tail bytes: 0x12 0x10 | 0x09 + 8-byte double | 0x10 + 6-byte varint
_SHORT = 9  # tail bytes of a zero value: 0x12 0x07 | 0x10 + 6-byte varint
_NOT_FAST = -1


def feed_series(series: Any, batch: Batch) -> None:
    """Add the samples of one parsed ``TimeSeries`` to ``batch`` (the reference path)."""
    labels = tuple((label.name, label.value) for label in series.labels)
    matches = batch.matches(labels)
    if len(series.histograms):
        raise RejectedError(
            "wrong_type", "native histograms are not part of remote-write 1.0; send classic"
        )
    sample = batch.sample
    seconds = batch.seconds
    for s in series.samples:
        ts = seconds(s.timestamp / 1000.0, labels)
        for match in matches:
            sample(match, labels, ts, s.value)


def feed_write_request(request: Any, batch: Batch) -> None:
    """Add every sample of a decoded ``WriteRequest`` to ``batch`` (the first bad one refuses
    the whole request)."""
    for series in request.timeseries:
        feed_series(series, batch)


def feed_write_body(raw: bytes, batch: Batch) -> None:
    """Add every sample of an uncompressed remote-write body to ``batch``.

    The outcome is :func:`feed_write_request`'s on the parsed body: the same values, or the
    same refusal.

    Raises
    ------
    RejectedError
        As :func:`feed_write_request`, and ``malformed_protobuf``.
    """
    try:
        _fast(raw, batch)
    except RejectedError:
        batch.reset()
        feed_write_request(parse_write_request(raw), batch)


def _resolve(converter: Converter, key: bytes) -> Resolved | None:
    """The cache entry of encoded labels, or ``None`` when ``key`` is not exactly labels."""
    try:
        parsed = TimeSeries.FromString(key)
    except DecodeError:
        return None
    if len(parsed.samples) or len(parsed.histograms):
        return None
    if TimeSeries(labels=parsed.labels).SerializeToString() != key:
        return None  # other fields, or an encoding of its own: the reference path reads it
    labels = tuple((label.name, label.value) for label in parsed.labels)
    matches = converter.index.lookup(labels)
    slot = _NOT_FAST
    if len(matches) == 1 and not matches[0].part and matches[0].rule.kind == "gauge":
        slot = converter.slot(matches[0].rule.graph, matches[0].rule.node)
    entry: Resolved = (slot, labels, matches)
    cache = converter.encoded
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = entry
    return entry


def _tails(data: np.ndarray[Any, Any], ends: np.ndarray[Any, Any], lengths: Any) -> Any:
    """Which series end in a one-sample tail: ``(long, short)`` masks."""

    def at(offset: int) -> np.ndarray[Any, Any]:
        found: np.ndarray[Any, Any] = data[np.maximum(ends - offset, 0)]
        return found

    varint = (at(6) >= 0x80) & (at(5) >= 0x80) & (at(4) >= 0x80) & (at(3) >= 0x80) & (at(2) >= 0x80)
    varint &= (at(1) < 0x80) & (at(1) > 0)
    long = (lengths >= _LONG) & (at(18) == 0x12) & (at(17) == 0x10) & (at(16) == 0x09)
    long &= (at(7) == 0x10) & varint
    short = (lengths >= _SHORT) & (at(9) == 0x12) & (at(8) == 0x07) & (at(7) == 0x10) & varint
    return long, short


def _fast(raw: bytes, batch: Batch) -> None:
    try:
        request = RawWriteRequest.FromString(raw)
    except DecodeError:
        raise RejectedError("malformed_protobuf", "not a remote-write WriteRequest") from None
    encoded = list(request.timeseries)
    if not encoded:
        return
    converter = batch.converter
    joined = b"".join(encoded)
    data = np.frombuffer(joined, dtype=np.uint8)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    long, short = _tails(data, ends, lengths)
    cuts = np.where(long, ends - _LONG, np.where(short, ends - _SHORT, starts))
    cache = converter.encoded
    keys = [joined[a:b] for a, b in zip(starts.tolist(), cuts.tolist(), strict=True)]
    entries: list[Resolved | None] = list(map(cache.get, keys))
    fast = long | short
    for i in [i for i, e in enumerate(entries) if e is None]:
        if not fast[i]:
            continue
        entry = _resolve(converter, keys[i])
        if entry is None and long[i] and short[i]:  # the double's last bytes looked like a tail
            long[i] = False
            cuts[i] = ends[i] - _SHORT
            keys[i] = joined[starts[i] : cuts[i]]
            entry = cache.get(keys[i]) or _resolve(converter, keys[i])
        entries[i] = entry
    slots = np.fromiter(
        (_NOT_FAST if e is None else e[0] for e in entries), dtype=np.int64, count=len(entries)
    )
    gauge = fast & (slots != _NOT_FAST)
    for i in np.flatnonzero(~gauge).tolist():  # the reference path, series by series
        try:
            series = TimeSeries.FromString(encoded[i])
        except DecodeError:
            raise RejectedError("malformed_protobuf", "a series cannot be parsed") from None
        feed_series(series, batch)
    if gauge.any():
        _gauges(
            batch,
            data,
            ends[gauge],
            long[gauge],
            slots[gauge],
            [entries[i] for i in np.flatnonzero(gauge).tolist()],
        )


def _gauges(
    batch: Batch,
    data: np.ndarray[Any, Any],
    ends: np.ndarray[Any, Any],
    long: np.ndarray[Any, Any],
    slots: np.ndarray[Any, Any],
    entries: list[Resolved | None],
) -> None:
    """Check, average per node and time, and hand to ``batch`` the samples of gauge series."""
    stamps = np.zeros(len(ends), dtype=np.int64)
    for k in range(6):
        stamps |= (data[ends - 6 + k].astype(np.int64) & 0x7F) << (7 * k)
    values = np.zeros(len(ends), dtype=np.float64)
    if long.any():
        where = ends[long] - 15
        octets = data[where[:, None] + np.arange(8)]
        values[long] = np.ascontiguousarray(octets).view("<f8")[:, 0]
    if not np.isfinite(values).all():
        raise RejectedError("non_finite_value", "a value is not a finite number")
    unique, first, inverse = np.unique(stamps, return_index=True, return_inverse=True)
    seconds = (unique / 1000.0).tolist()
    for ts, i in zip(seconds, first.tolist(), strict=True):
        entry = entries[i]
        assert entry is not None
        batch.seconds(ts, entry[1])
    # one cell per (node, time); cells, then groups (graph, time), in order of appearance
    n_ts = len(unique)
    cell_key = slots * n_ts + inverse
    cells, cell_first, cell_of, counts = np.unique(
        cell_key, return_index=True, return_inverse=True, return_counts=True
    )
    totals: np.ndarray[Any, Any]
    if len(cells) == len(cell_key):
        totals = values[np.argsort(cell_key, kind="stable")]
    else:
        totals = np.bincount(cell_of, weights=values, minlength=len(cells))
    means = totals / counts
    if not np.isfinite(means).all():
        raise RejectedError("non_finite_value", "a node's mean is not a finite number")
    order = np.argsort(cell_first, kind="stable")
    cell_slot = (cells // n_ts)[order]
    cell_ts = (cells % n_ts)[order]
    names_of = batch.converter.slots
    cell_graph = np.asarray(batch.converter.slot_graphs, dtype=np.int64)[cell_slot]
    group_key = cell_graph * n_ts + cell_ts
    _, group_first, group_of = np.unique(group_key, return_index=True, return_inverse=True)
    group_rank = np.argsort(np.argsort(group_first, kind="stable"), kind="stable")[group_of]
    by_group = np.argsort(group_rank, kind="stable")
    bounds = np.flatnonzero(np.diff(group_rank[by_group])) + 1
    slot_list = cell_slot[by_group].tolist()
    mean_list = means[order][by_group].tolist()
    total_list = totals[order][by_group].tolist()
    count_list = counts[order][by_group].astype(np.float64).tolist()
    ts_list = cell_ts[by_group].tolist()
    groups: list[FastGroup] = []
    for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), len(by_group)], strict=True):
        names = [names_of[s][1] for s in slot_list[a:b]]
        graph = names_of[slot_list[a]][0]
        groups.append(
            (graph, seconds[ts_list[a]], names, mean_list[a:b], total_list[a:b], count_list[a:b])
        )
    batch.add_groups(groups, len(ends))

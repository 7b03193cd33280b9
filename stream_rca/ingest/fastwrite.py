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

from itertools import repeat
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from stream_rca.ingest.convert import (
    Batch,
    Converter,
    FastGroup,
    RejectedError,
    Resolved,
    SeriesKey,
)
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
        converter.encoded_slots.clear()
    cache[key] = entry
    converter.encoded_slots[key] = slot
    return entry


def _tails(data: np.ndarray[Any, Any], ends: np.ndarray[Any, Any], lengths: Any) -> Any:
    """Which series end in a one-sample tail: ``(long, short)`` masks."""
    last = data[np.maximum(ends[:, None] - _BACK, 0)]  # the last 18 bytes of each series
    high = last[:, _AT[6] : _AT[1]] >= 0x80  # the timestamp varint: 5 bytes with more to come
    varint = high.all(axis=1) & (last[:, _AT[1]] < 0x80) & (last[:, _AT[1]] > 0)
    varint &= last[:, _AT[7]] == 0x10
    long = (lengths >= _LONG) & (last[:, _AT[18]] == 0x12) & (last[:, _AT[17]] == 0x10)
    long &= (last[:, _AT[16]] == 0x09) & varint
    short = (lengths >= _SHORT) & (last[:, _AT[9]] == 0x12) & (last[:, _AT[8]] == 0x07) & varint
    return long, short


_BACK = np.arange(_LONG, 0, -1)  # offsets back from a series' end, 18 down to 1
_AT = {k: _LONG - k for k in range(1, _LONG + 1)}  # column of the byte k back from the end
_MISSING = -2


def _fast(raw: bytes, batch: Batch) -> None:
    try:
        request = RawWriteRequest.FromString(raw)
    except DecodeError:
        raise RejectedError("malformed_protobuf", "not a remote-write WriteRequest") from None
    encoded = list(request.timeseries)
    n = len(encoded)
    if not n:
        return
    converter = batch.converter
    joined = b"".join(encoded)
    data = np.frombuffer(joined, dtype=np.uint8)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    ends = np.cumsum(lengths)
    long, short = _tails(data, ends, lengths)
    fast = long | short
    kept = np.where(long, lengths - _LONG, np.where(short, lengths - _SHORT, lengths))
    # each series' labels (its bytes before the tail), sliced and looked up without a
    # Python-level loop
    keys = list(map(bytes.__getitem__, encoded, map(slice, repeat(0), kept.tolist())))
    slots = np.fromiter(
        map(converter.encoded_slots.get, keys, repeat(_MISSING)), dtype=np.int64, count=n
    )
    for i in np.flatnonzero((slots == _MISSING) & fast).tolist():
        entry = _resolve(converter, keys[i])
        if entry is None and long[i] and short[i]:  # the double's last bytes looked like a tail
            long[i] = False
            keys[i] = encoded[i][: lengths[i] - _SHORT]
            entry = converter.encoded.get(keys[i]) or _resolve(converter, keys[i])
        if entry is not None:
            slots[i] = entry[0]
    gauge = fast & (slots >= 0)
    for i in np.flatnonzero(~gauge).tolist():  # the reference path, series by series
        try:
            series = TimeSeries.FromString(encoded[i])
        except DecodeError:
            raise RejectedError("malformed_protobuf", "a series cannot be parsed") from None
        feed_series(series, batch)
    if gauge.all():
        _gauges(batch, data, ends, long, slots, keys)
    elif gauge.any():
        where = np.flatnonzero(gauge)
        _gauges(batch, data, ends[where], long[where], slots[where], [keys[i] for i in where])


def _gauges(
    batch: Batch,
    data: np.ndarray[Any, Any],
    ends: np.ndarray[Any, Any],
    long: np.ndarray[Any, Any],
    slots: np.ndarray[Any, Any],
    keys: list[bytes],
) -> None:
    """Check, average per node and time, and hand to ``batch`` the samples of gauge series."""
    n = len(ends)
    varint = data[ends[:, None] + _STAMP].astype(np.int64) & 0x7F
    stamps = (varint << _SHIFTS).sum(axis=1)
    values = np.zeros(n, dtype=np.float64)
    if long.all():
        values = np.ascontiguousarray(data[ends[:, None] + _DOUBLE]).view("<f8")[:, 0]
    elif long.any():
        octets = data[ends[long][:, None] + _DOUBLE]
        values[long] = np.ascontiguousarray(octets).view("<f8")[:, 0]
    if not np.isfinite(values).all():
        raise RejectedError("non_finite_value", "a value is not a finite number")
    unique, first, inverse = np.unique(stamps, return_index=True, return_inverse=True)
    seconds = (unique / 1000.0).tolist()
    for ts, i in zip(seconds, first.tolist(), strict=True):
        batch.seconds(ts, _labels(batch.converter, keys[i]))
    # one cell per (node, time), sorted by (graph, time, node): each group (graph, time) is a
    # run of cells
    converter = batch.converter
    n_ts = len(unique)
    n_slots = len(converter.slots)
    group = converter.slot_graph_array()[slots] * n_ts + inverse.reshape(-1)
    cell_key = group * n_slots + slots
    cells, cell_of, counts = np.unique(cell_key, return_inverse=True, return_counts=True)
    totals: np.ndarray[Any, Any]
    if len(cells) == n:
        totals = np.empty(n, dtype=np.float64)
        totals[cell_of] = values
    else:
        totals = np.bincount(cell_of.reshape(-1), weights=values, minlength=len(cells))
    means = totals / counts
    if not np.isfinite(means).all():
        raise RejectedError("non_finite_value", "a node's mean is not a finite number")
    cell_group = cells // n_slots
    bounds = (np.flatnonzero(np.diff(cell_group)) + 1).tolist()
    starts = [0, *bounds]
    stops = [*bounds, len(cells)]
    names = list(map(converter.slot_nodes.__getitem__, (cells % n_slots).tolist()))
    mean_list = means.tolist()
    total_list = totals.tolist()
    count_list = counts.astype(np.float64).tolist()
    graph_names = converter.graph_names
    groups: list[FastGroup] = [
        (
            graph_names[g // n_ts],
            seconds[g % n_ts],
            names[a:b],
            mean_list[a:b],
            total_list[a:b],
            count_list[a:b],
        )
        for g, a, b in zip(cell_group[starts].tolist(), starts, stops, strict=True)
    ]
    batch.add_groups(groups, n)


def _labels(converter: Converter, key: bytes) -> SeriesKey:
    """The labels of a key of the cache (parsed again if the cache was cleared since)."""
    entry = converter.encoded.get(key)
    if entry is not None:
        return entry[1]
    return tuple((label.name, label.value) for label in TimeSeries.FromString(key).labels)


_STAMP = np.arange(-6, 0)  # a timestamp's six varint bytes end the series
_SHIFTS = 7 * np.arange(6, dtype=np.int64)
_DOUBLE = np.arange(-15, -7)  # the double of a long tail

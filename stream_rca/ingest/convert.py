"""Samples of matched series to batch events: gauges as they are, counters as rates, histograms
as a quantile or the mean of the observations between two samples.

A :class:`Converter` holds what rates and histograms need from one request to the next (the
previous sample of each counter and histogram series). Each request works in a
:class:`Batch`: it reads that state but changes it only on :meth:`Batch.commit`, which the
receiver calls once the events are acknowledged. A request that is refused, or whose events
Kafka does not acknowledge, leaves the state as it was, so the sender's retry gives the same
values again (and the aligner ignores the repeats).

Rules:

- a counter's first sample gives no value (a rate needs two); a decrease is a reset (the
  counter restarted from zero); a sample not newer than the last one is a repeat and is
  ignored (counted in :attr:`Batch.repeats`);
- a histogram's value is computed from the bucket (or sum and count) increases between its
  latest complete sample and the one before; an interval without observations gives no value;
  quantiles interpolate linearly inside a bucket, as PromQL's ``histogram_quantile``;
- several series feeding one node at one time: counters add their rates, gauges and
  histograms give their mean;
- events are keyed by graph, one per (graph, timestamp), at most ``max_values`` nodes each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from stream_rca.errors import StreamRCAError
from stream_rca.ingest.mapping import Match, SeriesIndex, SeriesRule, is_stale
from stream_rca.io.events import DEFAULT_MAX_SKEW, DEFAULT_MAX_VALUES, encode_batch
from stream_rca.io.timestamps import check_timestamp

__all__ = [
    "REJECT_REASONS",
    "Batch",
    "Converter",
    "RejectedError",
    "histogram_value",
]

REJECT_REASONS = (
    "unauthorized",
    "not_found",
    "unsupported_media_type",
    "unsupported_encoding",
    "too_large",
    "bad_compression",
    "malformed_protobuf",
    "malformed_json",
    "unknown_series",
    "non_finite_value",
    "stale_marker",
    "bad_timestamp",
    "wrong_type",
    "malformed_series",
    "queue_full",
    "broker_unavailable",
)
"""Why a request is refused (the ``reason`` label of the receiver's counters)."""

SeriesKey = tuple[tuple[str, str], ...]
Resolved = tuple[int, SeriesKey, tuple[Match, ...]]
"""A series resolved once: its gauge slot (``-1``: not a plain gauge of one node), its
labels and its rules."""
FastGroup = tuple[str, float, list[str], list[float], list[float], list[float]]
"""The gauge values of one graph at one time from the fast path: graph, unix seconds, node
names, and per node the mean, the sum and the number of the samples that feed it."""


_ENCODE = msgspec.json.Encoder().encode


class RejectedError(StreamRCAError, ValueError):
    """A request refused whole: ``reason`` (one of :data:`REJECT_REASONS`), HTTP ``status``."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.status = status


@dataclass(slots=True)
class _Hist:
    prev_ts: float | None = None
    prev: dict[float | str, float] = field(default_factory=dict)
    cur_ts: float | None = None
    cur: dict[float | str, float] = field(default_factory=dict)

    def copy(self) -> _Hist:
        return _Hist(self.prev_ts, dict(self.prev), self.cur_ts, dict(self.cur))


class Converter:
    """Turns matched samples into batch events, keeping counter and histogram state.

    Parameters
    ----------
    index
        The rules of every graph.
    max_skew
        Seconds a sample's time may lie ahead of ``now`` (given to :meth:`batch`).
    max_values
        Most nodes in one event (a larger snapshot is split).
    """

    def __init__(
        self,
        index: SeriesIndex,
        *,
        max_skew: float = DEFAULT_MAX_SKEW,
        max_values: int = DEFAULT_MAX_VALUES,
    ) -> None:
        self.index = index
        self.max_skew = max_skew
        self.max_values = max_values
        self.counters: dict[tuple[str, str, SeriesKey], tuple[float, float]] = {}
        self.histograms: dict[tuple[str, str, SeriesKey], _Hist] = {}
        self.encoded: dict[bytes, Resolved] = {}
        """Series seen on the wire, by their encoded labels (the fast remote-write path's
        cache, see :mod:`~stream_rca.ingest.fastwrite`; bounded, cleared when full)."""
        self.encoded_slots: dict[bytes, int] = {}
        """The gauge slot of each key of :attr:`encoded` (``-1``: not a plain gauge)."""
        self.slots: list[tuple[str, str]] = []
        """``(graph, node)`` of every gauge node the fast path has fed, by slot number."""
        self.slot_nodes: list[str] = []
        """The node name of every slot."""
        self._slot_of: dict[tuple[str, str], int] = {}
        self.slot_graphs: list[int] = []
        """The graph number of every slot (graphs numbered in order of first use)."""
        self.graph_names: list[str] = []
        """The graph of every graph number."""
        self._graph_of: dict[str, int] = {}
        self._slot_graph_array: np.ndarray[Any, np.dtype[np.int64]] = np.zeros(0, np.int64)

    def slot(self, graph: str, node: str) -> int:
        """The slot number of a gauge node (given out on first use)."""
        key = (graph, node)
        found = self._slot_of.get(key)
        if found is None:
            found = self._slot_of[key] = len(self.slots)
            self.slots.append(key)
            self.slot_nodes.append(node)
            number = self._graph_of.get(graph)
            if number is None:
                number = self._graph_of[graph] = len(self.graph_names)
                self.graph_names.append(graph)
            self.slot_graphs.append(number)
        return found

    def slot_graph_array(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """:attr:`slot_graphs` as an array."""
        if len(self._slot_graph_array) != len(self.slot_graphs):
            self._slot_graph_array = np.asarray(self.slot_graphs, dtype=np.int64)
        return self._slot_graph_array

    def batch(self, now: float) -> Batch:
        """A new request's batch; ``now`` is the wall clock (unix seconds)."""
        return Batch(self, now)


def _check_value(value: float, key: SeriesKey) -> None:
    if math.isfinite(value):
        return
    what = describe(key)
    if is_stale(value):
        raise RejectedError("stale_marker", f"{what}: a stale marker (the series ended)")
    raise RejectedError("non_finite_value", f"{what}: value {value!r} is not a finite number")


def describe(labels: SeriesKey | Mapping[str, str], limit: int = 160) -> str:
    """A series as ``name{a="b", ...}``, bounded in length."""
    pairs = dict(labels)
    name = pairs.pop("__name__", "")
    text = name + "{" + ", ".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Batch:
    """The values of one request, kept apart from the converter's state until committed."""

    def __init__(self, converter: Converter, now: float) -> None:
        self.converter = converter
        self.now = now
        self.samples = 0
        """Samples read (each bucket of a histogram counts)."""
        self.repeats = 0
        """Samples ignored as repeats of ones already seen."""
        self._acc: dict[tuple[str, float], dict[str, list[Any]]] = {}
        self._counters: dict[tuple[str, str, SeriesKey], tuple[float, float]] = {}
        self._hists: dict[tuple[str, str, SeriesKey], _Hist] = {}
        self._good_ts: set[float] = set()
        self._fast: list[FastGroup] = []
        self._fast_values = 0

    def reset(self) -> None:
        """Forget every value and state change of this batch (checked timestamps stay)."""
        self.samples = self.repeats = 0
        self._acc.clear()
        self._counters.clear()
        self._hists.clear()
        self._fast.clear()
        self._fast_values = 0

    def add_groups(self, groups: list[FastGroup], samples: int) -> None:
        """Gauge values already checked and averaged per node (the fast path's)."""
        self.samples += samples
        self._fast.extend(groups)
        self._fast_values += sum(len(g[2]) for g in groups)

    # -- checks ---------------------------------------------------------------------------------

    def seconds(self, ts: float, labels: SeriesKey | Mapping[str, str]) -> float:
        """``ts`` (unix seconds) checked; a bad one refuses the request."""
        if ts in self._good_ts:  # a request's samples share a few scrape times
            return ts
        try:
            check_timestamp(ts, now=self.now, max_skew=self.converter.max_skew)
        except ValueError as exc:
            raise RejectedError("bad_timestamp", f"{describe(labels)}: {exc}") from None
        self._good_ts.add(ts)
        return ts

    def matches(self, labels: SeriesKey) -> tuple[Match, ...]:
        """The rules of a series; a series no rule takes refuses the request."""
        found = self.converter.index.lookup(labels)
        if not found:
            raise RejectedError(
                "unknown_series",
                f"{describe(labels)} feeds no node of any graph (see the graphs file's "
                "'ingest' keys; drop other series at the sender, e.g. write_relabel_configs)",
            )
        return found

    # -- values ---------------------------------------------------------------------------------

    def _put(self, rule: SeriesRule, ts: float, value: float) -> None:
        slot = self._acc.setdefault((rule.graph, ts), {}).get(rule.node)
        if slot is None:
            slot = self._acc[(rule.graph, ts)][rule.node] = [0.0, 0.0, rule.kind == "counter"]
        slot[0] += value
        slot[1] += 1.0

    def sample(self, match: Match, key: SeriesKey, ts: float, value: float) -> None:
        """One checked sample (unix seconds) of a series; ``key`` identifies the series."""
        self.samples += 1
        _check_value(value, key)
        rule = match.rule
        if match.part:
            if match.part == "whole":
                raise RejectedError(
                    "wrong_type",
                    f"{describe(key)}: node {rule.node!r} of graph {rule.graph!r} wants a "
                    f"histogram; send {rule.metric}_bucket, _sum and _count",
                )
            self._hist_part(match, key, ts, value)
        elif rule.kind == "counter":
            self._counter(rule, key, ts, value)
        else:
            self._put(rule, ts, value)

    def rate(self, match: Match, key: SeriesKey, ts: float, value: float) -> None:
        """A rate already per second (an OTLP delta sum over its interval)."""
        self.samples += 1
        _check_value(value, key)
        self._put(match.rule, ts, value)

    def _counter(self, rule: SeriesRule, key: SeriesKey, ts: float, value: float) -> None:
        state_key = (rule.graph, rule.node, key)
        prev = self._counters.get(state_key) or self.converter.counters.get(state_key)
        if prev is not None and ts <= prev[0]:
            self.repeats += 1
            return
        self._counters[state_key] = (ts, value)
        if prev is None:
            return
        increase = value - prev[1]
        if increase < 0:  # a reset: the counter started again from zero
            increase = value
        self._put(rule, ts, increase / (ts - prev[0]))

    def _hist(self, rule: SeriesRule, key: SeriesKey) -> tuple[tuple[str, str, SeriesKey], _Hist]:
        group = tuple(p for p in key if p[0] not in ("__name__", "le"))
        state_key = (rule.graph, rule.node, group)
        st = self._hists.get(state_key)
        if st is None:
            known = self.converter.histograms.get(state_key)
            st = known.copy() if known is not None else _Hist()
            self._hists[state_key] = st
        return state_key, st

    def _hist_part(self, match: Match, key: SeriesKey, ts: float, value: float) -> None:
        rule = match.rule
        part: float | str
        if match.part == "bucket":
            le = dict(key).get("le")
            try:
                part = float(le)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise RejectedError(
                    "malformed_series", f"{describe(key)}: a bucket without a numeric 'le' label"
                ) from None
            if rule.quantile is None:
                return  # the mean needs only _sum and _count
        else:
            if rule.quantile is not None:
                return  # a quantile needs only the buckets
            part = match.part
        _, st = self._hist(rule, key)
        self._hist_update(rule, st, ts, {part: value})

    def histogram(
        self,
        rule: SeriesRule,
        key: SeriesKey,
        ts: float,
        parts: dict[float | str, float],
        *,
        cumulative: bool,
    ) -> None:
        """A whole histogram (OTLP): cumulative counts by upper bound, ``sum`` and ``count``."""
        self.samples += 1
        for v in parts.values():
            _check_value(v, key)
        if not cumulative:
            zero = dict.fromkeys(parts, 0.0)
            value = histogram_value(zero, parts, rule.quantile)
            if value is not None:
                self._put(rule, ts, value)
            return
        _, st = self._hist(rule, key)
        self._hist_update(rule, st, ts, parts)

    def _hist_update(
        self, rule: SeriesRule, st: _Hist, ts: float, parts: dict[float | str, float]
    ) -> None:
        if st.prev_ts is not None and ts <= st.prev_ts:
            self.repeats += 1
            return
        if st.cur_ts != ts:
            if st.cur_ts is not None and ts < st.cur_ts:
                self.repeats += 1  # a late part of an abandoned sample
                return
            if st.prev_ts is None and st.cur:
                st.prev_ts, st.prev = st.cur_ts, st.cur  # the first sample, taken as complete
            st.cur_ts, st.cur = ts, {}
        st.cur.update(parts)
        if st.prev_ts is None:
            if _complete_alone(st.cur, rule):
                st.prev_ts, st.prev, st.cur_ts, st.cur = ts, st.cur, None, {}
            return
        if st.prev.keys() <= st.cur.keys():
            value = histogram_value(st.prev, st.cur, rule.quantile)
            st.prev_ts, st.prev, st.cur_ts, st.cur = ts, st.cur, None, {}
            if value is not None:
                self._put(rule, ts, value)

    # -- results --------------------------------------------------------------------------------

    def events(self) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` batch events, one per graph and time (split past ``max_values``)."""
        out: list[tuple[bytes, bytes]] = []
        limit = self.converter.max_values
        if self._fast and not self._acc:
            for graph, ts, names, means, _, _ in self._fast:
                key = graph.encode()
                for start in range(0, len(names), limit):
                    end = start + limit
                    values = dict(zip(names[start:end], means[start:end], strict=True))
                    out.append((key, _ENCODE({"graph": graph, "ts": ts, "values": values})))
            return out
        self._merge()
        for (graph, ts), nodes in self._acc.items():
            values = {
                node: total if additive else total / n
                for node, (total, n, additive) in nodes.items()
            }
            items = list(values.items())
            key = graph.encode()
            for start in range(0, len(items), limit):
                out.append((key, encode_batch(graph, ts, dict(items[start : start + limit]))))
        return out

    def _merge(self) -> None:
        """Put the fast path's values among the others."""
        for graph, ts, names, _, totals, counts in self._fast:
            nodes = self._acc.setdefault((graph, ts), {})
            for name, total, n in zip(names, totals, counts, strict=True):
                slot = nodes.setdefault(name, [0.0, 0.0, False])
                slot[0] += total
                slot[1] += n
        self._fast.clear()
        self._fast_values = 0

    @property
    def values(self) -> int:
        """Node values in the events."""
        if self._fast and self._acc:
            self._merge()
        return self._fast_values + sum(len(nodes) for nodes in self._acc.values())

    def commit(self) -> None:
        """Keep this batch's counter and histogram state (its events were acknowledged)."""
        counters = self.converter.counters
        for k, v in self._counters.items():
            old = counters.get(k)
            if old is None or v[0] > old[0]:
                counters[k] = v
        hists = self.converter.histograms
        for k, st in self._hists.items():
            old_h = hists.get(k)
            if old_h is None or (st.prev_ts or 0.0) >= (old_h.prev_ts or 0.0):
                hists[k] = st


def _complete_alone(parts: Mapping[float | str, float], rule: SeriesRule) -> bool:
    if rule.quantile is None:
        return "sum" in parts and "count" in parts
    return math.inf in parts


def histogram_value(
    prev: Mapping[float | str, float], cur: Mapping[float | str, float], quantile: float | None
) -> float | None:
    """The mean (``quantile=None``) or a quantile of the observations between two cumulative
    samples of a histogram; ``None`` when there were none.

    Examples
    --------
    >>> prev = {0.1: 0.0, 0.5: 0.0, math.inf: 0.0, "sum": 0.0, "count": 0.0}
    >>> cur = {0.1: 2.0, 0.5: 4.0, math.inf: 4.0, "sum": 0.8, "count": 4.0}
    >>> histogram_value(prev, cur, None)
    0.2
    >>> round(histogram_value(prev, cur, 0.75), 6)  # rank 3 of 4: in (0.1, 0.5], half-way
    0.3
    """
    if quantile is None:
        if not {"sum", "count"} <= prev.keys():
            return None  # the earlier sample lacked a part: no interval to take a mean over
        count = cur["count"] - prev["count"]
        total = cur["sum"] - prev["sum"]
        if count < 0:  # reset
            count, total = cur["count"], cur["sum"]
        return total / count if count > 0 else None
    bounds = sorted(b for b in cur if isinstance(b, float))
    deltas = [cur[b] - prev.get(b, 0.0) for b in bounds]
    if any(d < 0 for d in deltas):  # reset
        deltas = [cur[b] for b in bounds]
    if not bounds or bounds[-1] != math.inf or deltas[-1] <= 0:
        return None
    rank = quantile * deltas[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, deltas, strict=True):
        if count >= rank and count > below:
            if bound == math.inf:
                return lower  # the highest finite bound, as histogram_quantile
            if lower == 0.0 and bound <= 0:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower

"""Which series feed which node: the ``ingest`` key of a graph in the graphs file.

Each graph may say, node by node, which incoming series give the node its values::

    ingest:
      API: 'shop_latency_seconds{service="API"}'          # a gauge, short form
      www:
        series: 'shop_requests_total{service="www"}'       # a counter: its rate per second
        type: counter
      Website:
        series: 'shop_request_seconds{service="Website"}'  # a histogram: mean or a quantile
        type: histogram
        quantile: 0.9                                       # default: the mean (sum / count)

A series selector is PromQL's: a metric name and label matchers ``=``, ``!=``, ``=~`` and
``!~`` (regular expressions match the whole value). Names may hold dots (OTLP names and
attributes, e.g. ``{"service.name"="api"}`` with a quoted label name). For a Prometheus
classic histogram, the selector names the histogram (``x``): its ``x_bucket``, ``x_sum`` and
``x_count`` series are read; OTLP histograms are read whole.

:func:`parse_ingest` checks the key (an error names the node and the key at fault; the graphs
file adds its own name and the graph's); :class:`SeriesIndex` finds the rules a series matches.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stream_rca.errors import ConfigError

__all__ = [
    "KINDS",
    "Match",
    "Matcher",
    "SeriesIndex",
    "SeriesRule",
    "is_stale",
    "parse_ingest",
    "parse_selector",
]

KINDS = ("gauge", "counter", "histogram")
"""Types of series a node can be fed by."""

_RULE_KEYS = {"series", "type", "quantile"}
_NAME = r"[A-Za-z_:][A-Za-z0-9_:.]*"
_LABEL = r'(?:[A-Za-z_][A-Za-z0-9_.]*|"(?:\\.|[^"\\])*")'
_STRING = r'"(?:\\.|[^"\\])*"'
_MATCHER = re.compile(rf"\s*({_LABEL})\s*(=~|!~|!=|=)\s*({_STRING})\s*(,|$)")
_SELECTOR = re.compile(rf"^\s*({_NAME})?\s*(?:\{{(.*)\}})?\s*$", re.DOTALL)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher: ``name op "value"``."""

    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy the matcher (a missing label is the empty string)."""
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        found = re.fullmatch(self.value, have) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True, slots=True)
class SeriesRule:
    """One node's source: the series it is fed by and how they become one value.

    Attributes
    ----------
    graph, node
        Where the values go.
    metric
        The metric name (for a histogram, the name without ``_bucket``/``_sum``/``_count``).
    matchers
        Label matchers besides the name.
    kind
        ``gauge`` (the value), ``counter`` (its rate per second) or ``histogram``.
    quantile
        For a histogram: a quantile in (0, 1), or ``None`` for the mean.
    selector
        The selector as written, for messages.
    """

    graph: str
    node: str
    metric: str
    matchers: tuple[Matcher, ...]
    kind: str = "gauge"
    quantile: float | None = None
    selector: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a series (its labels, ``__name__`` aside) satisfies every matcher."""
        return all(m.matches(labels) for m in self.matchers)


def _unquote(text: str) -> str:
    value = json.loads(text)
    if not isinstance(value, str):  # pragma: no cover - the regex admits strings only
        raise ValueError(text)
    return value


def parse_selector(text: str) -> tuple[str, tuple[Matcher, ...]]:
    """A PromQL series selector: its metric name and its other matchers.

    Raises
    ------
    ValueError
        Saying what is wrong with it.

    Examples
    --------
    >>> name, ms = parse_selector('http_seconds{service="api", code=~"2.."}')
    >>> name, [(m.name, m.op, m.value) for m in ms]
    ('http_seconds', [('service', '=', 'api'), ('code', '=~', '2..')])
    >>> parse_selector('{service="api"}')
    Traceback (most recent call last):
    ...
    ValueError: no metric name (write it before the braces, or as __name__="...")
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a series selector as text, got {text!r}")
    whole = _SELECTOR.match(text)
    if whole is None:
        raise ValueError(f"not a series selector: {text!r} (e.g. 'metric{{label=\"value\"}}')")
    name, body = whole.group(1), whole.group(2) or ""
    matchers: list[Matcher] = []
    pos = 0
    body = body.strip()
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ValueError(f"cannot read the label matchers at {body[pos:][:40]!r} of {text!r}")
        label, op, raw = m.group(1), m.group(2), m.group(3)
        label = _unquote(label) if label.startswith('"') else label
        try:
            value = _unquote(raw)
        except ValueError:
            raise ValueError(f"bad string {raw} in {text!r}") from None
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {value!r}: {exc}") from None
        matchers.append(Matcher(label, op, value))
        pos = m.end()
    named = [m for m in matchers if m.name == "__name__"]
    if named:
        if name or len(named) > 1 or named[0].op != "=":
            raise ValueError('give the metric name once, as name{...} or __name__="..."')
        name = named[0].value
        matchers = [m for m in matchers if m.name != "__name__"]
    if not name:
        raise ValueError('no metric name (write it before the braces, or as __name__="...")')
    return name, tuple(matchers)


def parse_ingest(
    value: Any, graph: str, nodes: Collection[str], where: str
) -> tuple[SeriesRule, ...]:
    """Check a graph's ``ingest`` key and return its rules, one per node named.

    Parameters
    ----------
    value
        The key's value: node name to a selector, or to ``{series, type, quantile}``.
    graph
        The graph's name.
    nodes
        The graph's nodes.
    where
        Names the key in errors (the graphs file and the graph).

    Raises
    ------
    ConfigError
        One line naming the node and the key at fault.

    Examples
    --------
    >>> rules = parse_ingest({"api": "lat{s='x'}"}, "shop", ["api"], "ingest")
    Traceback (most recent call last):
    ...
    stream_rca.errors.ConfigError: ingest: 'api': series: cannot read the label matchers at "s='x'" of "lat{s='x'}"
    >>> parse_ingest({"api": {"series": "lat", "type": "counter"}}, "shop", ["api"], "ingest")[0].kind
    'counter'
    """  # noqa: E501
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}: expected a mapping node -> series selector, got {value!r}")
    rules: list[SeriesRule] = []
    for node, raw in value.items():
        at = f"{where}: {node!r}"
        if not isinstance(node, str) or node not in nodes:
            raise ConfigError(f"{at}: not a node of the graph")
        entry: dict[str, Any] = {"series": raw} if isinstance(raw, str) else raw
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected a selector or a mapping with 'series', got {raw!r}")
        unknown = sorted(str(k) for k in set(entry) - _RULE_KEYS)
        if unknown:
            raise ConfigError(f"{at}: unknown keys: {', '.join(unknown)} (series, type, quantile)")
        if "series" not in entry:
            raise ConfigError(f"{at}: series: missing (a selector such as 'metric{{a=\"b\"}}')")
        try:
            metric, matchers = parse_selector(entry["series"])
        except ValueError as exc:
            raise ConfigError(f"{at}: series: {exc}") from None
        kind = entry.get("type", "gauge")
        if kind not in KINDS:
            raise ConfigError(f"{at}: type: expected one of {', '.join(KINDS)}, got {kind!r}")
        quantile = entry.get("quantile")
        if quantile is not None:
            if kind != "histogram":
                raise ConfigError(f"{at}: quantile: only for type histogram")
            if quantile == "mean":
                quantile = None
            elif (
                isinstance(quantile, bool)
                or not isinstance(quantile, int | float)
                or not (0.0 < quantile < 1.0)
            ):
                raise ConfigError(f"{at}: quantile: expected a number in (0, 1) or 'mean'")
        if kind == "histogram" and metric.endswith(HISTOGRAM_SUFFIXES):
            raise ConfigError(
                f"{at}: series: name the histogram ({metric.rsplit('_', 1)[0]!r}), "
                "not one of its _bucket/_sum/_count series"
            )
        rules.append(
            SeriesRule(
                graph,
                node,
                metric,
                matchers,
                kind,
                None if quantile is None else float(quantile),
                entry["series"],
            )
        )
    return tuple(rules)


@dataclass(frozen=True, slots=True)
class Match:
    """A series matched to a rule; ``part`` is a histogram series' role."""

    rule: SeriesRule
    part: str = ""
    """``""`` for a gauge or counter, else ``bucket``, ``sum`` or ``count``."""


class SeriesIndex:
    """The rules of every graph, found by metric name and label matchers (cached per series).

    Examples
    --------
    >>> rules = parse_ingest({"api": 'lat{s="api"}'}, "shop", ["api"], "ingest")
    >>> index = SeriesIndex(rules)
    >>> [m.rule.node for m in index.lookup((("__name__", "lat"), ("s", "api")))]
    ['api']
    >>> index.lookup((("__name__", "lat"), ("s", "db")))
    ()
    """

    def __init__(self, rules: Iterable[SeriesRule], *, cache_size: int = 200_000) -> None:
        self.rules = tuple(rules)
        by_name: dict[str, list[Match]] = {}
        for rule in self.rules:
            if rule.kind == "histogram":
                for suffix in HISTOGRAM_SUFFIXES:
                    by_name.setdefault(rule.metric + suffix, []).append(Match(rule, suffix[1:]))
                by_name.setdefault(rule.metric, []).append(Match(rule, "whole"))
            else:
                by_name.setdefault(rule.metric, []).append(Match(rule))
        self._by_name = {name: _Candidates(found) for name, found in by_name.items()}
        self._cache: dict[tuple[tuple[str, str], ...], tuple[Match, ...]] = {}
        self._cache_size = cache_size

    @property
    def graphs(self) -> frozenset[str]:
        """Graphs with at least one rule."""
        return frozenset(r.graph for r in self.rules)

    def lookup(self, labels: tuple[tuple[str, str], ...]) -> tuple[Match, ...]:
        """The rules a series matches; ``labels`` are its ``(name, value)`` pairs, ``__name__``
        included."""
        found = self._cache.get(labels)
        if found is not None:
            return found
        as_dict = dict(labels)
        name = as_dict.pop("__name__", "")
        candidates = self._by_name.get(name)
        found = () if candidates is None else candidates.find(as_dict)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[labels] = found
        return found

    def lookup_name(self, name: str, labels: Sequence[tuple[str, str]]) -> tuple[Match, ...]:
        """:meth:`lookup` of a series given its name apart (as OTLP gives it)."""
        return self.lookup((("__name__", name), *labels))


class _Candidates:
    """The matches of one metric name, filed by one equality matcher of each rule.

    A rule with equality matchers (``label="value"``) is filed under the one whose label has
    the most distinct values among the rules; a series is checked only against the rules
    filed under its own values of those labels, and against the rules without any (scanned),
    so a new series costs a few checks however many rules there are. Matches come in the
    order of the rules.
    """

    __slots__ = ("by_label", "scan")

    def __init__(self, matches: Sequence[Match]) -> None:
        values: dict[str, set[str]] = {}
        for match in matches:
            for m in match.rule.matchers:
                if m.op == "=":
                    values.setdefault(m.name, set()).add(m.value)
        self.by_label: dict[str, dict[str, list[tuple[int, Match]]]] = {}
        self.scan: list[tuple[int, Match]] = []
        for i, match in enumerate(matches):
            equal = [m for m in match.rule.matchers if m.op == "="]
            if not equal:
                self.scan.append((i, match))
                continue
            best = max(equal, key=lambda m: len(values[m.name]))
            filed = self.by_label.setdefault(best.name, {})
            filed.setdefault(best.value, []).append((i, match))

    def find(self, labels: Mapping[str, str]) -> tuple[Match, ...]:
        """The matches whose every matcher ``labels`` satisfy, in the order of the rules."""
        checked: list[tuple[int, Match]] = []
        for label, filed in self.by_label.items():
            checked.extend(filed.get(labels.get(label, ""), ()))
        checked.extend(self.scan)
        checked.sort(key=_first)
        return tuple(m for _, m in checked if m.rule.matches(labels))


def _first(entry: tuple[int, Match]) -> int:
    return entry[0]


def is_stale(value: float) -> bool:
    """Whether ``value`` is Prometheus' stale marker (a NaN with the bits 0x7ff0000000000002)."""
    import struct

    return math.isnan(value) and struct.pack("<d", value) == _STALE


_STALE = (0x7FF0000000000002).to_bytes(8, "little")

"""Causal graphs from traces: OpenTelemetry (OTLP JSON) and Jaeger JSON span files.

A call between services shows in a trace as a span whose parent span belongs to another
service (for instrumented clients: a ``CLIENT`` span of the caller, parent of a ``SERVER`` span
of the callee). Every such pair is one call ``caller -> callee``; the causal graph of latency
and errors is the call graph reversed (``callee -> caller``: a slow callee makes its caller
slow), with the number of calls seen as an edge attribute.

Formats read (detected per file):

- **OTLP JSON**, as the OpenTelemetry collector's file exporter writes it (one
  ``{"resourceSpans": [...]}`` document per line, or one document for the whole file), and as the
  SDK's OTLP JSON file exporter writes it; the service is the resource's ``service.name``;
  span ids are read as opaque strings (hex or base64 alike);
- **Jaeger JSON**, as Jaeger's UI and query API export it (``{"data": [{"spans": [...],
  "processes": {...}}]}``); the service is the span's process ``serviceName``, the parent its
  ``CHILD_OF`` reference (or ``parentSpanID``).

Bad input never raises a traceback: a file that is not JSON, or JSON of neither format, is a
:class:`TraceError` (one line naming the file and line); a span without a service name, or
without ids, is skipped and counted; a call of a service to itself is skipped and counted.

Cycles: mutual calls (``a`` calls ``b`` and ``b`` calls ``a``) and longer loops cannot be in a
causal DAG. They are reported, and broken by one rule: while the call graph has a cycle, the
cycle's call edge with the fewest calls is dropped (ties: the edge whose ``(caller, callee)``
names sort last); every dropped edge is listed in the result and the document.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from stream_rca.errors import ConfigError

__all__ = [
    "CYCLE_RULE",
    "Span",
    "TraceError",
    "TraceGraph",
    "break_cycles",
    "call_graph",
    "read_spans",
    "spans_of_document",
]

CYCLE_RULE = (
    "while the call graph has a cycle, drop the cycle's call edge with the fewest calls "
    "(ties: the (caller, callee) pair that sorts last)"
)
_KINDS = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}


class TraceError(ConfigError):
    """A span file that cannot be read (not JSON, or neither OTLP JSON nor Jaeger JSON)."""


@dataclass(frozen=True, slots=True)
class Span:
    """The parts of a span a call graph needs."""

    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    kind: str


@dataclass
class SpanRead:
    """Spans read from files, and what was skipped (reason -> count)."""

    spans: list[Span] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    files: int = 0


@dataclass(frozen=True)
class TraceGraph:
    """A call graph built from spans, and its causal graph (callee -> caller)."""

    calls: Mapping[tuple[str, str], int]
    """``(caller, callee)`` -> calls seen (cycle edges included)."""
    dropped: tuple[tuple[str, str, int], ...]
    """Call edges dropped to break cycles: ``(caller, callee, calls)``."""
    cycles: tuple[tuple[str, ...], ...]
    """The cycles found (each a list of services, in call order)."""
    services: tuple[str, ...]
    skipped: Mapping[str, int]
    n_spans: int

    @property
    def causal_edges(self) -> list[tuple[str, str]]:
        """``(callee, caller)`` of every kept call edge, sorted."""
        gone = {(a, b) for a, b, _ in self.dropped}
        return sorted((b, a) for (a, b) in self.calls if (a, b) not in gone)

    def to_document(self, name: str) -> dict[str, Any]:
        """The graph file (our JSON format) with call counts and the cycle report."""
        edges = self.causal_edges
        linked = {n for e in edges for n in e}
        doc: dict[str, Any] = {"name": name, "edges": [list(e) for e in edges]}
        isolated = [s for s in self.services if s not in linked]
        if isolated:
            doc["nodes"] = isolated
        doc["edge_attributes"] = [
            {"cause": c, "effect": e, "calls": self.calls[(e, c)]} for c, e in edges
        ]
        doc["source"] = {
            "from": "traces",
            "direction": "causal: callee -> caller (the call graph reversed)",
            "spans": self.n_spans,
            "skipped": dict(sorted(self.skipped.items())),
            "cycles": [list(c) for c in self.cycles],
            "dropped_call_edges": [
                {"caller": a, "callee": b, "calls": n} for a, b, n in self.dropped
            ],
            "cycle_rule": CYCLE_RULE,
        }
        return doc


def read_spans(paths: Iterable[str | Path]) -> SpanRead:
    """Spans of OTLP JSON and Jaeger JSON files (see the module docstring)."""
    out = SpanRead()
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise TraceError(f"span file {p}: {'a directory' if p.is_dir() else 'no such file'}")
        try:
            text = p.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TraceError(f"span file {p}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise TraceError(f"span file {p}: {exc.strerror or exc}") from None
        out.files += 1
        for doc, where in _documents(text, p):
            if "resourceSpans" in doc:
                _otlp(doc, out, f"{p}{where}")
            elif "data" in doc:
                _jaeger(doc, out, f"{p}{where}")
            else:
                raise TraceError(
                    f"span file {p}{where}: neither OTLP JSON (resourceSpans) nor Jaeger "
                    "JSON (data)"
                )
    return out


def _documents(text: str, p: Path) -> Iterator[tuple[dict[str, Any], str]]:
    stripped = text.strip()
    if not stripped:
        return
    try:
        whole = json.loads(stripped)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        yield whole, ""
        return
    if whole is not None:
        raise TraceError(f"span file {p}: expected a JSON object, got {type(whole).__name__}")
    for n, line in enumerate(text.splitlines(), start=1):  # JSON lines
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"span file {p}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(doc, dict):
            raise TraceError(f"span file {p}:{n}: expected a JSON object")
        yield doc, f":{n}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _attr_string(attributes: Any, key: str) -> str | None:
    for a in _list(attributes):
        if isinstance(a, dict) and a.get("key") == key:
            value = a.get("value")
            if isinstance(value, dict) and isinstance(value.get("stringValue"), str):
                return str(value["stringValue"]) or None
    return None


def _otlp_kind(kind: Any) -> str:
    if isinstance(kind, int):
        return _KINDS.get(kind, "unspecified")
    if isinstance(kind, str):
        return kind.removeprefix("SPAN_KIND_").lower()
    return "unspecified"


def _otlp(doc: dict[str, Any], out: SpanRead, where: str) -> None:
    if not isinstance(doc["resourceSpans"], list):
        raise TraceError(f"span file {where}: resourceSpans must be a list")
    for rs in doc["resourceSpans"]:
        if not isinstance(rs, dict):
            out.skipped["malformed resource"] += 1
            continue
        resource = rs.get("resource")
        service = _attr_string(
            resource.get("attributes") if isinstance(resource, dict) else None, "service.name"
        )
        for ss in _list(rs.get("scopeSpans", rs.get("instrumentationLibrarySpans"))):
            for span in _list(ss.get("spans") if isinstance(ss, dict) else None):
                _add(out, span, service, "traceId", "spanId", "parentSpanId", where)


def _add(
    out: SpanRead,
    span: Any,
    service: str | None,
    trace_key: str,
    span_key: str,
    parent_key: str,
    where: str,
    kind: str | None = None,
    parent: str | None = None,
) -> None:
    if not isinstance(span, dict):
        out.skipped["malformed span"] += 1
        return
    tid, sid = span.get(trace_key), span.get(span_key)
    if not isinstance(tid, str) or not isinstance(sid, str) or not tid or not sid:
        out.skipped["span without ids"] += 1
        return
    if not service:
        out.skipped["span without service name"] += 1
        return
    if parent is None:
        raw = span.get(parent_key)
        parent = raw if isinstance(raw, str) and raw else None
    out.spans.append(
        Span(tid, sid, parent, service, kind if kind is not None else _otlp_kind(span.get("kind")))
    )


def _jaeger(doc: dict[str, Any], out: SpanRead, where: str) -> None:
    if not isinstance(doc["data"], list):
        raise TraceError(f"span file {where}: data must be a list of traces")
    for trace in doc["data"]:
        if not isinstance(trace, dict):
            out.skipped["malformed trace"] += 1
            continue
        processes = trace.get("processes") if isinstance(trace.get("processes"), dict) else {}
        for span in _list(trace.get("spans")):
            if not isinstance(span, dict):
                out.skipped["malformed span"] += 1
                continue
            proc = processes.get(span.get("processID"), {}) if processes else {}
            service = proc.get("serviceName") if isinstance(proc, dict) else None
            kind = "unspecified"
            for tag in _list(span.get("tags")):
                if isinstance(tag, dict) and tag.get("key") == "span.kind":
                    kind = str(tag.get("value", "unspecified")).lower()
            parent = None
            for ref in _list(span.get("references")):
                if isinstance(ref, dict) and ref.get("refType") == "CHILD_OF":
                    sid = ref.get("spanID")
                    parent = sid if isinstance(sid, str) and sid else None
                    break
            if parent is None and isinstance(span.get("parentSpanID"), str):
                parent = span["parentSpanID"] or None
            _add(
                out,
                span,
                service if isinstance(service, str) else None,
                "traceID",
                "spanID",
                "parentSpanID",
                where,
                kind=kind,
                parent=parent,
            )


def break_cycles(
    services: Iterable[str], calls: Mapping[tuple[str, str], int]
) -> tuple[list[tuple[str, str, int]], list[tuple[str, ...]]]:
    """The call edges :data:`CYCLE_RULE` drops, ``(caller, callee, calls)``, and the cycles.

    Examples
    --------
    >>> break_cycles(["a", "b"], {("a", "b"): 5, ("b", "a"): 2})
    ([('b', 'a', 2)], [('a', 'b')])
    """
    g = nx.DiGraph()
    g.add_nodes_from(services)
    g.add_edges_from(calls)
    cycles: list[tuple[str, ...]] = []
    dropped: list[tuple[str, str, int]] = []
    while True:
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            break
        cycles.append(tuple(str(u) for u, _ in cycle))
        edges = [(str(u), str(v)) for u, v in cycle]
        a, b = max(edges, key=lambda e: (-calls[e], e))
        g.remove_edge(a, b)
        dropped.append((a, b, calls[(a, b)]))
    return dropped, cycles


def spans_of_document(doc: Any, where: str = "message") -> SpanRead:
    """The spans of one decoded OTLP JSON or Jaeger JSON document (a topic's message).

    Raises
    ------
    TraceError
        For a document of neither format.
    """
    out = SpanRead()
    if isinstance(doc, dict) and "resourceSpans" in doc:
        _otlp(doc, out, where)
    elif isinstance(doc, dict) and "data" in doc:
        _jaeger(doc, out, where)
    else:
        raise TraceError(f"{where}: neither OTLP JSON (resourceSpans) nor Jaeger JSON (data)")
    return out


def call_graph(read: SpanRead) -> TraceGraph:
    """The call graph of the spans, cycles broken by :data:`CYCLE_RULE`."""
    by_id = {(s.trace_id, s.span_id): s for s in read.spans}
    calls: Counter[tuple[str, str]] = Counter()
    skipped = Counter(read.skipped)
    for s in read.spans:
        if s.parent_id is None:
            continue
        parent = by_id.get((s.trace_id, s.parent_id))
        if parent is None:
            skipped["parent span not in the files"] += 1
            continue
        if parent.service == s.service:
            if parent.kind in ("client", "producer") and s.kind in ("server", "consumer"):
                skipped["self-call (a service calling itself)"] += 1
            continue
        calls[(parent.service, s.service)] += 1
    services = sorted({s.service for s in read.spans})
    dropped, cycles = break_cycles(services, calls)
    return TraceGraph(
        calls=dict(calls),
        dropped=tuple(dropped),
        cycles=tuple(cycles),
        services=tuple(services),
        skipped=dict(skipped),
        n_spans=len(read.spans),
    )

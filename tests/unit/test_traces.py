"""Graphs from traces: a span file written by the real OpenTelemetry SDK, Jaeger JSON, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.json.file import FileSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Tracer

from stream_rca.cli import main
from stream_rca.core.graph import CausalGraph
from stream_rca.io.traces import TraceError, call_graph, read_spans


def _chain(path: Path) -> None:
    """web -> api -> (db, cache), api -> db twice; and db -> api once (a mutual call)."""
    providers = {}
    for svc in ("web", "api", "db", "cache"):
        p = TracerProvider(resource=Resource.create({"service.name": svc}))
        p.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
        providers[svc] = p
    tr = {svc: p.get_tracer("chain") for svc, p in providers.items()}

    def call(caller: Tracer, callee: Tracer, name: str, then: list[tuple[str, str]]) -> None:
        with (
            caller.start_as_current_span(f"call {name}", kind=SpanKind.CLIENT),
            callee.start_as_current_span(name, kind=SpanKind.SERVER),
        ):
            for a, b in then:
                call(tr[a], tr[b], b, [])

    for _ in range(3):
        with tr["web"].start_as_current_span("GET /", kind=SpanKind.SERVER):
            call(tr["web"], tr["api"], "api", [("api", "db"), ("api", "db"), ("api", "cache")])
    with tr["db"].start_as_current_span("job", kind=SpanKind.SERVER):
        call(tr["db"], tr["api"], "api", [])
        call(tr["db"], tr["db"], "db", [])  # a self-call
    for p in providers.values():
        p.shutdown()


def test_otlp_json_from_the_sdk(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    _chain(spans)
    tg = call_graph(read_spans([spans]))
    assert tg.calls[("web", "api")] == 3
    assert tg.calls[("api", "db")] == 6
    assert tg.calls[("db", "api")] == 1
    assert tg.dropped == (("db", "api", 1),)  # the mutual call with fewer calls goes
    assert tg.skipped["self-call (a service calling itself)"] == 1
    doc = tg.to_document("shop")
    graph = CausalGraph.from_dict(doc)
    assert set(graph.edges) == {("api", "web"), ("db", "api"), ("cache", "api")}
    calls = {(a["cause"], a["effect"]): a["calls"] for a in doc["edge_attributes"]}
    assert calls[("db", "api")] == 6


def test_cli_from_traces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spans = tmp_path / "spans.jsonl"
    _chain(spans)
    out = tmp_path / "graph.json"
    assert main(["graph", "from-traces", str(spans), "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dropped call edge db -> api (1 calls)" in text
    assert "cycle: " in text
    assert main(["check-graph", str(out)]) == 0


def test_jaeger_json(tmp_path: Path) -> None:
    doc = {
        "data": [
            {
                "traceID": "t1",
                "processes": {"p1": {"serviceName": "front"}, "p2": {"serviceName": "back"}},
                "spans": [
                    {"traceID": "t1", "spanID": "a", "processID": "p1", "references": [],
                     "tags": [{"key": "span.kind", "value": "client"}]},
                    {"traceID": "t1", "spanID": "b", "processID": "p2",
                     "references": [{"refType": "CHILD_OF", "traceID": "t1", "spanID": "a"}],
                     "tags": [{"key": "span.kind", "value": "server"}]},
                    {"traceID": "t1", "spanID": "c", "processID": "p9", "references": []},
                ],
            }
        ]
    }  # fmt: skip
    path = tmp_path / "jaeger.json"
    path.write_text(json.dumps(doc))
    tg = call_graph(read_spans([path]))
    assert tg.calls == {("front", "back"): 1}
    assert tg.causal_edges == [("back", "front")]
    assert tg.skipped["span without service name"] == 1


def test_bad_span_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"resourceSpans": []}\n{not json\n')
    with pytest.raises(TraceError, match=r"broken.jsonl:2: not JSON"):
        read_spans([broken])
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(TraceError, match="neither OTLP JSON"):
        read_spans([other])
    nameless = tmp_path / "nameless.json"
    nameless.write_text(
        json.dumps({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [
            {"spans": [{"traceId": "1", "spanId": "2", "kind": 2}, {"spanId": "3"}]}]}]})
    )  # fmt: skip
    read = read_spans([nameless])
    assert read.skipped == {"span without service name": 1, "span without ids": 1}
    out = tmp_path / "g.json"
    assert main(["graph", "from-traces", str(broken), "--output", str(out)]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert main(["graph", "from-traces", str(nameless), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no usable spans" in err
    assert "1 span without service name" in err
    assert main(["graph", "from-traces", str(tmp_path / "none.json"), "--output", str(out)]) == 2

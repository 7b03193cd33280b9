"""``stream-rca graph from-traces``: a causal graph file from OpenTelemetry or Jaeger spans."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from stream_rca.errors import ConfigError

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``graph`` command and its subcommands to the ``stream-rca`` subparsers."""
    graph = sub.add_parser("graph", help="build causal graph files (from traces)")
    gsub = graph.add_subparsers(dest="graph_command", required=True, metavar="SUBCOMMAND")
    ft = gsub.add_parser(
        "from-traces",
        help="the causal graph (callee -> caller) of OTLP JSON or Jaeger JSON span files",
    )
    ft.add_argument("files", nargs="+", metavar="FILE", help="span files (OTLP JSON, Jaeger JSON)")
    ft.add_argument("--output", required=True, metavar="graph.json", help="graph file to write")
    ft.add_argument("--name", help="the graph's name (default: the output file's stem)")
    ft.set_defaults(handler=_from_traces)


def _from_traces(args: argparse.Namespace) -> int:
    from stream_rca.core.graph import CausalGraph
    from stream_rca.io.traces import CYCLE_RULE, call_graph, read_spans

    out = Path(args.output)
    name = args.name or out.stem
    if not (name.strip() and name.isprintable()):
        raise ConfigError(f"--name {name!r}: expected a non-empty name")
    read = read_spans(args.files)
    tg = call_graph(read)
    if not tg.services:
        raise ConfigError(
            f"no usable spans in {len(args.files)} file(s)"
            + (f" (skipped: {_counts(tg.skipped)})" if tg.skipped else "")
        )
    doc = tg.to_document(name)
    CausalGraph.from_dict(doc)  # the document is a valid DAG in our format
    try:
        out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--output {out}: cannot write: {exc.strerror or exc}") from None
    print(
        f"graph {name!r}: {len(tg.services)} services, {len(tg.causal_edges)} causal edges "
        f"(callee -> caller) from {tg.n_spans} spans in {read.files} file(s); written to {out}"
    )
    if tg.skipped:
        print(f"  skipped: {_counts(tg.skipped)}")
    for cycle in tg.cycles:
        print(f"  cycle: {' -> '.join([*cycle, cycle[0]])}")
    for a, b, n in tg.dropped:
        print(f"  dropped call edge {a} -> {b} ({n} calls) to break a cycle")
    if tg.dropped:
        print(f"  rule: {CYCLE_RULE}")
    return 0


def _counts(skipped: Any) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))

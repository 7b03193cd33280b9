"""``stream-rca report``: incident pages from attribution documents.

    stream-rca report INCIDENTS.jsonl [--scores SCORES.jsonl] [--changes CHANGES.jsonl]
                      [--graph FILE | --config GRAPHS.yaml] --out DIR

Writes one HTML page per incident (its latest revision) and ``index.html`` into ``DIR``, and
prints each page's path.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``report`` subcommand; it sets ``handler(args) -> int``.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="stream-rca")
    >>> register(parser.add_subparsers(dest="command", required=True))
    >>> args = parser.parse_args(["report", "a.jsonl", "--out", "pages"])
    >>> args.incidents, args.out, args.handler.__name__
    ('a.jsonl', 'pages', '_report')
    """
    p = subparsers.add_parser(
        "report",
        help="write an HTML page per incident (graph, waterfall, timeline), viewable offline",
    )
    p.add_argument(
        "incidents",
        metavar="INCIDENTS.jsonl",
        help="attribution documents (demo/replay --output, or the rca.attributions topic)",
    )
    p.add_argument(
        "--scores",
        metavar="SCORES.jsonl",
        action="append",
        help="score documents for the timelines (replay --scores, the rca.scores topic; "
        "repeatable)",
    )
    p.add_argument(
        "--changes",
        metavar="CHANGES.jsonl",
        action="append",
        help="distribution-change documents (stream-rca.change/v1; repeatable)",
    )
    p.add_argument(
        "--graph",
        metavar="FILE",
        action="append",
        help="a graph file, to draw its arrows (repeatable; matched by the graph's name)",
    )
    p.add_argument("--config", metavar="FILE", help="a graphs file (the worker's), for the arrows")
    p.add_argument("--out", required=True, metavar="DIR", help="directory of the pages")
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from stream_rca.report.documents import (
        latest_revisions,
        read_changes,
        read_incidents,
        read_scores,
    )
    from stream_rca.report.writer import write_pages

    edges = _edges(args.graph or (), args.config)
    incidents = latest_revisions(read_incidents(args.incidents))
    points = [p for path in args.scores or () for p in read_scores(path)]
    changes = [c for path in args.changes or () for c in read_changes(path)]
    paths = write_pages(args.out, incidents, points=points, changes=changes, edges=edges)
    for path in paths:
        print(path)
    unknown = sorted({i.graph for i in incidents} - set(edges))
    note = f"; drawn without arrows (no --graph): {', '.join(unknown)}" if unknown else ""
    print(f"{len(paths)} incident page(s) and index.html in {args.out}{note}")
    return 0


def _edges(graph_files: Sequence[str], config: str | None) -> dict[str, list[tuple[str, str]]]:
    from stream_rca.cli import _load_graph
    from stream_rca.config import load_graphs

    out: dict[str, list[tuple[str, str]]] = {}
    if config:
        for spec in load_graphs(config):
            out[spec.name] = list(spec.graph.edges)
    for path in graph_files:
        graph = _load_graph(path)
        out[graph.name] = list(graph.edges)
    return out

"""``stream-rca graph from-traces`` (a causal graph file from OpenTelemetry or Jaeger spans) and
``stream-rca graph learn`` (one learned from a CSV of normal operation)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from stream_rca.errors import ConfigError
from stream_rca.replay_output import AVAILABILITY_ARG

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
    lr = gsub.add_parser(
        "learn",
        help="a causal graph learned from a CSV of normal operation (PC, bootstrap frequencies)",
    )
    lr.add_argument("--train", required=True, help="CSV of normal operation (wide or PetShop)")
    lr.add_argument("--output", required=True, metavar="graph.json", help="graph file to write")
    lr.add_argument("--name", help="the graph's name (default: the output file's stem)")
    lr.add_argument(
        "--target",
        help="the watched metric: every edge is oriented toward it (default: the data's own "
        "orientation, which is weaker)",
    )
    lr.add_argument("--metric", default="latency", help="PetShop metric (default latency)")
    lr.add_argument("--statistic", default="Average", help="PetShop statistic (default Average)")
    lr.add_argument("--availability", **AVAILABILITY_ARG)
    lr.add_argument("--alpha", type=float, default=0.01, help="test level (default 0.01)")
    lr.add_argument("--bootstrap", type=int, default=20, help="resamples (default 20)")
    lr.add_argument(
        "--min-frequency",
        type=float,
        default=0.5,
        help="least bootstrap frequency of a kept edge (default 0.5)",
    )
    lr.add_argument("--seed", type=int, default=0, help="resampling seed (default 0)")
    lr.set_defaults(handler=_learn)


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


def _learn(args: argparse.Namespace) -> int:
    import numpy as np

    from stream_rca.core.learn import learn_structure
    from stream_rca.io import read_snapshots

    out = Path(args.output)
    name = args.name or out.stem
    if not (name.strip() and name.isprintable()):
        raise ConfigError(f"--name {name!r}: expected a non-empty name")
    if not Path(args.train).is_file():
        raise ConfigError(f"--train {args.train}: no such file")
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha {args.alpha}: expected a level in (0, 1)")
    if not 1 <= args.bootstrap <= 1000:
        raise ConfigError(f"--bootstrap {args.bootstrap}: expected 1 to 1000 resamples")
    if not 0 < args.min_frequency <= 1:
        raise ConfigError(f"--min-frequency {args.min_frequency}: expected a share in (0, 1]")
    try:
        snaps = list(
            read_snapshots(
                args.train,
                nodes=None,
                metric=args.metric,
                statistic=args.statistic,
                availability=args.availability,
                graph=name,
            )
        )
    except OSError as exc:
        raise ConfigError(f"--train {args.train}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--train {args.train}: not UTF-8 text (byte {exc.start})") from None
    nodes = list(dict.fromkeys(n for s in snaps for n in s.values))
    if args.target is not None and args.target not in nodes:
        raise ConfigError(f"--target {args.target!r}: not a column of --train")
    x = np.full((len(snaps), len(nodes)), np.nan)
    col = {n: j for j, n in enumerate(nodes)}
    for i, snap in enumerate(snaps):
        for n, v in snap.values.items():
            x[i, col[n]] = v
    try:
        learned = learn_structure(
            x,
            nodes,
            alpha=args.alpha,
            n_boot=args.bootstrap,
            min_frequency=args.min_frequency,
            seed=args.seed,
            toward=args.target,
        )
    except ValueError as exc:
        raise ConfigError(f"--train {args.train}: {exc}") from None
    doc = learned.to_document(name)
    try:
        out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--output {out}: cannot write: {exc.strerror or exc}") from None
    shaky = sum(1 for e in doc["edge_attributes"] if e["frequency"] < 0.8)
    print(
        f"graph {name!r}: {len(nodes)} metrics, {len(learned.edges)} edges learned from "
        f"{len(snaps)} rows ({args.bootstrap} bootstrap resamples; {shaky} edge(s) in fewer "
        f"than 80 % of them); written to {out}"
    )
    print(
        "  a learned structure is an option: check it (graph-free ranking needs no graph and "
        "ranked better in our benchmarks)"
    )
    return 0


def _counts(skipped: Any) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))

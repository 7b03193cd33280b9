"""The ``stream-rca`` command line.

Subcommands: ``demo`` (embedded, no broker), ``replay`` (CSV files through the engine, or to
Kafka), ``check-graph``, and the streaming ones (``worker``, ``simulate``). Every option that
is a setting also reads a ``STREAM_RCA_*`` variable, named in its help.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from stream_rca import __version__
from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.trigger import TriggerConfig
from stream_rca.core.types import Attribution, Snapshot, StepResult
from stream_rca.errors import StreamRCAError

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
_TRAIN_BLOCK = 64  # snapshots learned at once from a training file (see Engine.process_many)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-rca",
        description="Streaming root-cause analysis of anomalies in causal graphs of services.",
    )
    parser.add_argument("--version", action="version", version=f"stream-rca {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="simulate a web shop with faults and find their causes")
    demo.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    demo.add_argument("--faults", type=int, default=8, help="faults to inject (default 8)")
    demo.add_argument("--output", metavar="FILE.jsonl", help="write attribution documents here")
    demo.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("METRICS_PORT"),
        help="serve Prometheus metrics on this port, 127.0.0.1 [STREAM_RCA_METRICS_PORT]",
    )
    demo.add_argument("--quiet", action="store_true", help="print the summary only")
    demo.set_defaults(handler=_demo)

    replay = sub.add_parser("replay", help="learn from a CSV of normal operation, then explain")
    replay.add_argument(
        "--graph", required=True, help="graph file (JSON, YAML, edge list, or a PetShop graph.csv)"
    )
    replay.add_argument("--train", required=True, help="CSV of normal operation to learn from")
    replay.add_argument("--data", help="CSV to stream after training (incidents are reported)")
    replay.add_argument(
        "--target", action="append", help="watched node (repeatable; default: sinks)"
    )
    replay.add_argument("--output", metavar="FILE.jsonl", help="write attribution documents here")
    replay.add_argument("--metric", default="latency", help="PetShop metric (default latency)")
    replay.add_argument(
        "--statistic", default="Average", help="PetShop statistic (default Average)"
    )
    replay.add_argument("--warmup", type=int, default=100, help="warm-up snapshots (default 100)")
    replay.add_argument(
        "--threshold", type=float, default=9.0, help="incident threshold, nats (default 9)"
    )
    replay.add_argument(
        "--explain",
        type=int,
        action="append",
        metavar="ROW",
        help="also explain this row of --data for the first target (repeatable)",
    )
    replay.add_argument(
        "--ignore-extra", action="store_true", help="skip CSV columns not in the graph"
    )
    replay.add_argument(
        "--to-kafka",
        metavar="HOST:PORT",
        help="publish --train and --data as events to Kafka instead",
    )
    replay.set_defaults(handler=_replay)

    check = sub.add_parser("check-graph", help="validate a graph file and summarise it")
    check.add_argument("graph", help="graph file")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.set_defaults(handler=_check_graph)

    from stream_rca.streaming.commands import register  # the worker and producers

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except StreamRCAError as exc:
        print(f"stream-rca: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code


# -- demo -----------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from stream_rca.demo import DemoSettings, open_output, run_demo

    cfg = DemoSettings(seed=args.seed, faults=args.faults)
    out = sys.stdout
    metrics, server = _metrics(args.metrics_port, "shop")
    if server is not None:
        print(f"metrics on {server}", file=out)
    print(
        f"stream-rca demo: simulated web shop (11 services), {cfg.n_snapshots} snapshots, "
        f"{cfg.faults} injected faults, seed {cfg.seed}",
        file=out,
    )

    def on_step(t: int, result: StepResult, seconds: float) -> None:
        if metrics is not None:
            metrics.observe_step(result, seconds)
        if (not args.quiet and (t + 1) % 200 == 0) or t + 1 == cfg.n_snapshots:
            state = "warm" if result.warm else "warming up"
            top = max(result.target_scores.values(), default=0.0)
            print(
                f"  [{t + 1:5d}/{cfg.n_snapshots}] models {state}, Website score {top:5.1f}",
                file=sys.stderr,
            )

    def on_incident(att: Attribution, truth: frozenset[str], hit: bool) -> None:
        if not args.quiet:
            _print_incident(att, out, truth=truth, hit=hit)

    output = open_output(args.output)
    try:
        report = run_demo(cfg, on_step=on_step, on_incident=on_incident, output=output)
    finally:
        if output is not None:
            output.close()
    s = report.summary()
    print("\nsummary", file=out)
    print(f"  faults injected   {s['faults']}", file=out)
    print(f"  detected          {s['detected']}   missed {s['missed']}", file=out)
    print(f"  false alarms      {s['false_alarms']}", file=out)
    print(
        f"  top-1 accuracy    {s['top1_accuracy']:.0%}   top-3 {s['top3_accuracy']:.0%}", file=out
    )
    print(
        f"  attribution       p50 {s['attribution_ms_p50']:.1f} ms   "
        f"p99 {s['attribution_ms_p99']:.1f} ms",
        file=out,
    )
    print(f"  per snapshot      {s['snapshot_us_mean']:.0f} us (11 nodes, learn + score)", file=out)
    if args.output:
        print(f"  documents         {args.output}", file=out)
    if server is not None:
        server.close()
    return EXIT_OK


def _metrics(port: int | None, graph: str) -> tuple[Any, Any]:
    if port is None:
        return None, None
    from prometheus_client import CollectorRegistry

    from stream_rca.observability.exporter import serve
    from stream_rca.observability.metrics import PipelineMetrics

    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry, version=__version__)
    return metrics, serve(registry, port)


def _print_incident(
    att: Attribution, out: IO[str], *, truth: frozenset[str] | None = None, hit: bool = False
) -> None:
    verdict = ""
    if truth is not None:
        verdict = (
            f"   injected: {', '.join(sorted(truth))} {'(found)' if hit else '(MISSED)'}"
            if truth
            else "   injected: nothing (false alarm)"
        )
    print(
        f"\nincident {att.incident_id}  target {att.target}  score {att.target_score:.1f} nats"
        f"{verdict}",
        file=out,
    )
    for rank, rc in enumerate(att.root_causes[:5], start=1):
        bar = "#" * max(0, round(20 * rc.share))
        score = "-" if rc.score is None else f"{rc.score:.1f}"
        print(
            f"  {rank}. {rc.node:<24} {rc.contribution:7.2f} ({rc.share:4.0%}) {bar:<20} "
            f"node score {score}",
            file=out,
        )
    ms = "" if att.seconds is None else f" in {att.seconds * 1000:.1f} ms"
    print(
        f"     {att.method} Shapley over {len(att.players)} players, {att.n_samples} samples{ms}",
        file=out,
    )


# -- replay ---------------------------------------------------------------------------------------


def _load_graph(path: str) -> CausalGraph:
    p = Path(path)
    if p.suffix.lower() == ".csv":
        from stream_rca.io import read_petshop_graph

        return CausalGraph(read_petshop_graph(p), name=p.parent.name or "petshop")
    return CausalGraph.from_file(p)


def _replay(args: argparse.Namespace) -> int:
    from stream_rca.io import read_snapshots

    graph = _load_graph(args.graph)
    read = {
        "nodes": graph.nodes,
        "ignore_extra": args.ignore_extra,
        "graph": graph.name,
        "metric": args.metric,
        "statistic": args.statistic,
    }
    if args.to_kafka:
        from stream_rca.config import Settings
        from stream_rca.streaming.producers import publish_snapshots

        settings = Settings.from_env(kafka_bootstrap=args.to_kafka)
        sent = 0
        for path in [args.train, *([args.data] if args.data else [])]:
            sent += publish_snapshots(settings, graph.name, read_snapshots(path, **read))
        print(f"published {sent} events to {args.to_kafka} topic {settings.input_topic}")
        return EXIT_OK
    engine = Engine(
        graph,
        EngineConfig(warmup=args.warmup, trigger=TriggerConfig(threshold=args.threshold)),
        targets=args.target,
        timer=time.perf_counter,
    )
    out = sys.stdout
    n_train = 0
    block: list[Snapshot] = []
    for snap in read_snapshots(args.train, **read):
        block.append(snap)
        if len(block) == _TRAIN_BLOCK:
            n_train += len(engine.process_many(block))
            block.clear()
    n_train += len(engine.process_many(block))
    print(
        f"learned from {n_train} snapshots of {args.train} "
        f"({'warm' if engine.warm else 'NOT warm: more normal data needed'})",
        file=out,
    )
    incidents = 0
    with contextlib.ExitStack() as stack:
        output = None
        if args.output is not None:
            output = stack.enter_context(Path(args.output).open("w", encoding="utf-8"))
        if args.data:
            for i, snap in enumerate(read_snapshots(args.data, **read)):
                result = engine.process_one(snap)
                explained = list(result.attributions)
                if args.explain and i in args.explain and not explained:
                    explained.append(engine.explain(snap, engine.targets[0]))
                for att in explained:
                    incidents += 1
                    _print_incident(att, out)
                    if output is not None:
                        output.write(json.dumps(att.to_dict()) + "\n")
    print(
        f"\n{incidents} attribution(s)" + (f" written to {args.output}" if args.output else ""),
        file=out,
    )
    return EXIT_OK


# -- check-graph ----------------------------------------------------------------------------------


def _check_graph(args: argparse.Namespace) -> int:
    graph = _load_graph(args.graph)
    summary = graph.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    print(f"graph {summary['name']!r}: valid DAG")
    print(
        f"  nodes {summary['nodes']}, edges {summary['edges']}, longest path "
        f"{summary['longest_path']}, max in-degree {summary['max_in_degree']}"
    )
    print(f"  roots ({len(summary['roots'])}): {', '.join(summary['roots'][:12])}")
    sinks = summary["sinks"]
    print(f"  sinks, the default targets ({len(sinks)}): {', '.join(sinks[:12])}")
    print(f"  largest attribution: {summary['max_ancestors'] + 1} players")
    return EXIT_OK


def _env_int(name: str) -> int | None:
    import os

    raw = os.environ.get(f"STREAM_RCA_{name}")
    return int(raw) if raw else None


if __name__ == "__main__":
    raise SystemExit(main())

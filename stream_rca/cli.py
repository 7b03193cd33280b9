"""The ``stream-rca`` command line.

Subcommands: ``demo`` (embedded, no broker), ``replay`` (CSV files through the engine, or to
Kafka), ``check-graph``, ``why-changed`` (:mod:`stream_rca.cli_change`), and the streaming
ones (``worker``, ``simulate``). Every option that
is a setting is generated from the :class:`~stream_rca.config.Settings` table and also reads
its ``STREAM_RCA_*`` variable, named in its help; variables are read only by the command that
needs them.

Errors are one line on stderr, never a traceback. Exit status: 0 done, 1 a failure while
running (e.g. no broker answers), 2 a bad argument, setting, variable or input file.

A graph's name (it is in every incident id, which seeds the attribution's Monte Carlo draws)
comes from the ``name`` field of a JSON/YAML graph file, else from the file's stem
(``graph.csv`` of PetShop is ``graph``), never from its folder, so the same files give the same
answers wherever they are; ``--name`` chooses another. ``replay`` and ``check-graph`` print it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from stream_rca import __version__
from stream_rca.allocator import keep_freed_memory
from stream_rca.cli_settings import add_settings, report, settings_from_args
from stream_rca.core.config import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.ranking import RANK_RULES
from stream_rca.core.trigger import TriggerConfig
from stream_rca.core.types import Attribution, Snapshot, StepResult
from stream_rca.errors import ConfigError, GraphError
from stream_rca.replay_output import (
    AVAILABILITY_ARG,
    print_summary,
    say_availability,
    write_attributions,
)

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
_TRAIN_BLOCK = 64  # snapshots learned at once from a training file (see Engine.process_many)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit 2)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``stream-rca`` parser; reading it reads no environment variable."""
    parser = _Parser(
        prog="stream-rca",
        description="Streaming root-cause analysis of anomalies in causal graphs of services.",
    )
    parser.add_argument("--version", action="version", version=f"stream-rca {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="simulate a web shop with faults and find their causes")
    demo.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    demo.add_argument("--faults", type=int, default=8, help="faults to inject (default 8)")
    demo.add_argument("--output", metavar="FILE.jsonl", help="write attribution documents here")
    demo.add_argument("--quiet", action="store_true", help="print the summary only")
    demo.add_argument("--report", metavar="DIR", help="write an HTML page per incident here")
    add_settings(demo, "demo")
    demo.set_defaults(handler=_demo)

    replay = sub.add_parser("replay", help="learn from a CSV of normal operation, then explain")
    replay.add_argument(
        "--graph",
        help="graph file (JSON, YAML, edge list, or a PetShop graph.csv); without it, metrics "
        "are ranked by marginal score and onset (graph-free, needs --target)",
    )
    replay.add_argument("--name", help=_NAME_HELP)
    replay.add_argument("--train", required=True, help="CSV of normal operation to learn from")
    replay.add_argument("--data", help="CSV to stream after training (incidents are reported)")
    replay.add_argument(
        "--target", action="append", help="watched node (repeatable; default: sinks)"
    )
    replay.add_argument("--output", metavar="FILE.jsonl", help="write attribution documents here")
    replay.add_argument(
        "--scores",
        metavar="FILE.jsonl",
        help="write every snapshot's node scores of --data here (the rca.scores documents)",
    )
    replay.add_argument("--metric", default="latency", help="PetShop metric (default latency)")
    replay.add_argument(
        "--statistic", default="Average", help="PetShop statistic (default Average)"
    )
    replay.add_argument("--availability", **AVAILABILITY_ARG)
    replay.add_argument("--warmup", type=int, default=100, help="warm-up snapshots (default 100)")
    replay.add_argument(
        "--threshold", type=float, default=9.0, help="incident threshold, nats (default 9)"
    )
    replay.add_argument(
        "--rank-by",
        choices=sorted(RANK_RULES),
        default=EngineConfig().rank_by,
        help=f"the rule that orders root causes (default {EngineConfig().rank_by})",
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
        help="publish --train and --data as events to Kafka instead (the bootstrap servers)",
    )
    add_settings(replay, "replay")
    replay.set_defaults(handler=_replay)

    check = sub.add_parser("check-graph", help="validate a graph file and summarise it")
    check.add_argument("graph", help="graph file")
    check.add_argument("--name", help=_NAME_HELP)
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.set_defaults(handler=_check_graph)

    from stream_rca.cli_change import register as register_change  # why-changed
    from stream_rca.streaming.commands import register  # the worker and producers

    register_change(sub)
    register(sub)
    from stream_rca.report.command import register as register_report

    register_report(sub)
    from stream_rca.ingest.command import register as register_ingest  # remote-write, OTLP

    register_ingest(sub)
    from stream_rca.graph_commands import register as register_graph  # graph from-traces

    register_graph(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stream-rca`` with ``argv``; return the exit status (errors are one line)."""
    keep_freed_memory()  # attributions reuse their temporaries' pages (stream_rca/allocator.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    return report("stream-rca", args.handler, args)


# -- demo -----------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from stream_rca.demo import DemoSettings, open_output, run_demo

    settings = settings_from_args(args, "demo")
    if args.faults < 0:
        raise ConfigError(f"--faults {args.faults}: expected a number of faults >= 0")
    cfg = DemoSettings(seed=args.seed, faults=args.faults)
    out = sys.stdout
    metrics, server = _metrics(settings.metrics_port, settings.metrics_addr)
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
        report = run_demo(
            cfg, on_step=on_step, on_incident=on_incident, output=output, report_dir=args.report
        )
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
    if args.report:
        print(f"  incident pages    {Path(args.report) / 'index.html'}", file=out)
    if server is not None:
        server.close()
    return EXIT_OK


def _metrics(port: int | None, addr: str) -> tuple[Any, Any]:
    if port is None:
        return None, None
    from prometheus_client import CollectorRegistry

    from stream_rca.observability.exporter import serve
    from stream_rca.observability.metrics import PipelineMetrics

    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry, version=__version__)
    return metrics, serve(registry, port, addr)


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
    if att.extra.get("marginalised"):
        print(f"     marginalised (no data): {', '.join(att.extra['marginalised'])}", file=out)
    hot = [
        c for c in att.extra.get("extra_candidates", ()) if c["group"] in ("new", "pre-existing")
    ]
    for c in hot[:3]:
        print(f"     not in graph: {c['node']:<24} score {c['score']:6.1f}  {c['group']}", file=out)


# -- replay ---------------------------------------------------------------------------------------

_NAME_HELP = (
    "the graph's name, in incident ids and documents (default: the file's 'name' field, "
    "else its stem: graph.csv is 'graph')"
)


def _load_graph(path: str, name: str | None = None) -> CausalGraph:
    """A graph file; named ``name``, else by its ``name`` field, else by its stem."""
    p = Path(path)
    if name is not None and not (name.strip() and name.isprintable()):
        raise ConfigError(f"--name {name!r}: expected a non-empty name")
    if not p.is_file():
        raise ConfigError(f"graph file {p}: {'a directory' if p.is_dir() else 'no such file'}")
    try:
        if p.suffix.lower() == ".csv":
            from stream_rca.io import read_petshop_graph

            return CausalGraph(read_petshop_graph(p), name=name or p.stem)
        return CausalGraph.from_file(p, name=name)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"graph file {p}: not UTF-8 text (byte {exc.start})") from None
    except GraphError as exc:
        if str(p) in str(exc):
            raise
        raise GraphError(f"graph file {p}: {exc}") from None


def _name_source(args: argparse.Namespace, graph: CausalGraph) -> str:
    if args.name is not None:
        return "--name"
    return "the file's stem" if graph.name == Path(args.graph).stem else "the file's name field"


def _input_file(path: str, flag: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{flag} {path}: {'a directory' if p.is_dir() else 'no such file'}")
    return path


def _replay_config(args: argparse.Namespace) -> EngineConfig:
    """The engine config of ``--warmup`` and ``--threshold``; an error names the flag."""
    from stream_rca.graphs_file import check_value

    warmup = check_value("warmup", args.warmup, "--warmup")
    threshold = check_value("threshold", args.threshold, "--threshold")
    try:
        trigger = TriggerConfig(threshold=threshold)
    except ValueError as exc:
        raise ConfigError(f"--threshold {args.threshold:g}: {exc}") from None
    try:
        return EngineConfig(warmup=warmup, trigger=trigger, rank_by=args.rank_by)
    except ValueError as exc:
        raise ConfigError(f"--warmup {args.warmup}: {exc}") from None


def _targets(graph: CausalGraph, targets: list[str] | None) -> list[str] | None:
    for t in targets or ():
        if t not in graph:
            known = ", ".join(graph.nodes[:8]) + (", ..." if len(graph) > 8 else "")
            raise ConfigError(f"--target {t!r}: not a node of graph {graph.name!r} ({known})")
    return targets


def _snapshots(path: str, flag: str, read: dict[str, Any]) -> typing.Iterator[Snapshot]:
    """The snapshots of a CSV file; a file that cannot be read is one line naming it."""
    from stream_rca.io import read_snapshots

    try:
        yield from read_snapshots(path, **read)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{flag} {path}: not UTF-8 text (byte {exc.start})") from None


def _replay(args: argparse.Namespace) -> int:
    if args.graph is None:
        return _replay_graph_free(args)
    graph = _load_graph(args.graph, args.name)
    _input_file(args.train, "--train")
    if args.data:
        _input_file(args.data, "--data")
    read = {
        # without --ignore-extra every column is read: those not in the graph are scored
        # marginally and named as not_in_graph candidates (stream_rca.core.partial)
        "nodes": graph.nodes if args.ignore_extra or args.to_kafka else None,
        "ignore_extra": args.ignore_extra,
        "graph": graph.name,
        "metric": args.metric,
        "statistic": args.statistic,
        "availability": args.availability,
    }
    if args.to_kafka:
        return _replay_to_kafka(args, graph, read)
    config = _replay_config(args)
    for row in args.explain or ():
        if row < 0:
            raise ConfigError(f"--explain {row}: expected a row number >= 0 of --data")
    if (args.explain or args.scores) and not args.data:
        raise ConfigError(f"{'--explain' if args.explain else '--scores'} needs --data")
    from stream_rca.core.engine import Engine
    from stream_rca.core.graphfree import GraphFreeConfig
    from stream_rca.core.partial import ExtraSeries
    from stream_rca.parallel import attribution_pool
    from stream_rca.streaming.records import json_bytes, scores_document

    engine = Engine(
        graph,
        config,
        targets=_targets(graph, args.target),
        timer=time.perf_counter,
        pool=attribution_pool(),
    )
    extras = ExtraSeries(graph.nodes, engine.targets, GraphFreeConfig(warmup=config.warmup))

    def split(snap: Snapshot, **learn: bool) -> Snapshot:
        """The graph's part of ``snap``; the extra series go to ``extras``."""
        if args.ignore_extra:
            return snap
        own, _ = extras.split(snap.values)
        extras.observe(snap, **learn)
        return dataclasses.replace(snap, values=own)

    out = sys.stdout
    print(
        f"graph {graph.name!r} ({_name_source(args, graph)}): {len(graph)} nodes, "
        f"targets {', '.join(engine.targets)}"
    )
    say_availability(args.metric, args.availability, args.train, out)
    n_train = 0
    block: list[Snapshot] = []
    for snap in _snapshots(args.train, "--train", read):
        block.append(split(snap, trusted=True))
        if len(block) == _TRAIN_BLOCK:
            n_train += len(engine.process_many(block))
            block.clear()
    n_train += len(engine.process_many(block))
    print(
        f"learned from {n_train} snapshots of {Path(args.train).name} "
        f"({'warm' if engine.warm else 'NOT warm: more normal data needed'})",
        file=out,
    )
    if engine.marginalised:
        print(
            f"marginalised (graph nodes with too little data): {', '.join(engine.marginalised)}",
            file=out,
        )
    if extras.series:
        print(
            f"not in the graph, scored marginally as candidates: {len(extras.series)} series "
            f"({', '.join(extras.series[:6])}{', ...' if len(extras.series) > 6 else ''})",
            file=out,
        )
    incidents = rows = 0
    open_now = False
    with contextlib.ExitStack() as stack:
        output = _open_output(stack, args.output, "--output")
        scores = _open_output(stack, args.scores, "--scores")
        if args.data:
            for rows, full in enumerate(_snapshots(args.data, "--data", read), start=1):
                snap = split(full, learn=not open_now)  # nothing learns inside an incident
                # a row is explained against the models that score it, before the engine may
                # learn it (a learning period can end on this very row)
                early = None
                if args.explain and rows - 1 in args.explain:
                    early = engine.explain(snap, engine.targets[0])
                result = engine.process_one(snap)
                open_now = bool(result.open_incidents)
                if scores is not None:
                    doc = scores_document(result, snap, engine.n_snapshots)
                    scores.write(json_bytes(doc).decode() + "\n")
                explained = list(result.attributions)
                if early is not None and not explained:
                    explained.append(early)
                if extras.series:
                    explained = [extras.annotate(att) for att in explained]
                incidents += write_attributions(explained, out, output, _print_incident)
    print_summary(out, rows=rows, attributions=incidents, explain=args.explain, output=args.output)
    if args.scores:
        print(f"{rows} score documents written to {args.scores}", file=out)
    return EXIT_OK


def _replay_graph_free(args: argparse.Namespace) -> int:
    from stream_rca.replay_graphfree import replay_graph_free

    _input_file(args.train, "--train")
    if args.data:
        _input_file(args.data, "--data")
    if args.to_kafka:
        raise ConfigError("--to-kafka needs --graph (the events are a graph's)")
    for row in args.explain or ():
        if row < 0:
            raise ConfigError(f"--explain {row}: expected a row number >= 0 of --data")
    if args.explain and not args.data:
        raise ConfigError("--explain needs --data")
    return replay_graph_free(args, _replay_config(args), _snapshots, _open_output)


def _open_output(stack: contextlib.ExitStack, path: str | None, flag: str) -> IO[str] | None:
    if path is None:
        return None
    try:
        return stack.enter_context(Path(path).open("w", encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write: {exc.strerror or exc}") from None


def _replay_to_kafka(args: argparse.Namespace, graph: CausalGraph, read: dict[str, Any]) -> int:
    from stream_rca.streaming.connect import check_broker
    from stream_rca.streaming.producers import publish_snapshots

    settings = settings_from_args(args, "replay", kafka_bootstrap=args.to_kafka)
    check_broker(settings)
    sent = 0
    for path, flag in [(args.train, "--train"), *([(args.data, "--data")] if args.data else [])]:
        sent += publish_snapshots(settings, graph.name, _snapshots(path, flag, read))
    print(
        f"published {sent} events of graph {graph.name!r} to {args.to_kafka} "
        f"topic {settings.input_topic}"
    )
    return EXIT_OK


# -- check-graph ----------------------------------------------------------------------------------


def _check_graph(args: argparse.Namespace) -> int:
    graph = _load_graph(args.graph, args.name)
    summary = graph.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    print(f"graph {summary['name']!r} ({_name_source(args, graph)}): valid DAG")
    print(
        f"  nodes {summary['nodes']}, edges {summary['edges']}, longest path "
        f"{summary['longest_path']}, max in-degree {summary['max_in_degree']}"
    )
    print(f"  roots ({len(summary['roots'])}): {', '.join(summary['roots'][:12])}")
    sinks = summary["sinks"]
    print(f"  sinks, the default targets ({len(sinks)}): {', '.join(sinks[:12])}")
    print(f"  largest attribution: {summary['max_ancestors'] + 1} players")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``worker`` and ``simulate`` subcommands (``stream-rca``, ``python -m stream_rca.streaming``).

:func:`register` adds both to an :mod:`argparse` subparsers object; each sets
``args.handler(args) -> int`` (the exit code). Their settings flags are generated from the
:class:`~stream_rca.config.Settings` table (:func:`stream_rca.cli_settings.add_settings`): each
reads its ``STREAM_RCA_*`` variable (shown in ``--help``), a flag given wins. Before either
starts its Kafka clients, :func:`~stream_rca.streaming.connect.check_broker` makes sure a
broker answers with the configured protocol.
"""

from __future__ import annotations

import argparse
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream_rca.cli_settings import add_settings, redact_logs, report, settings_from_args

__all__ = ["register"]


def _add_worker(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run a streaming worker (faust) over Kafka",
        description="Consume metric events, run the engine per graph, publish attributions.",
    )
    add_settings(p, "worker")
    p.set_defaults(handler=_reporting("stream-rca worker", _run_worker))


def _run_worker(args: argparse.Namespace) -> int:
    from stream_rca.config import load_graphs
    from stream_rca.errors import ConfigError
    from stream_rca.streaming.worker import run_worker

    settings = settings_from_args(args, "worker")
    redact_logs(settings)
    if not settings.config:
        raise ConfigError("the worker needs a graphs file: --config FILE (STREAM_RCA_CONFIG)")
    specs = load_graphs(settings.config)
    return run_worker(
        settings,
        specs,
        loglevel=settings.loglevel,
        worker_id=settings.worker_id,
        session_timeout=settings.session_timeout,
    )


def _add_simulate(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="publish simulated metric events with injected faults to Kafka",
        description="Simulated microservice systems (graphs PREFIX-0 .. PREFIX-{K-1}) with "
        "random faults, published to the input topic keyed by graph. The ground truth goes "
        "to --truth-topic and/or --truth FILE first.",
    )
    add_settings(p, "simulate")
    p.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="snapshots per second summed over all graphs; in the single form each snapshot "
        "is one message per node; 0 = as fast as possible (default: 100)",
    )
    p.add_argument(
        "--graphs", type=int, default=1, metavar="K", help="simulated systems (default: 1)"
    )
    p.add_argument("--prefix", default="shop", help="graph name prefix (default: shop)")
    p.add_argument(
        "--nodes", type=int, default=0, help="0: the 11-node shop; N: a random N-node system"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of systems and faults (default: 0)")
    p.add_argument(
        "--count", type=int, default=None, help="snapshots per graph (default: no bound)"
    )
    p.add_argument(
        "--duration", type=float, default=None, help="seconds to run (default: no bound)"
    )
    p.add_argument("--step", type=float, default=1.0, help="seconds per window (default: 1)")
    p.add_argument("--faults", type=int, default=3, help="faults per graph (default: 3)")
    p.add_argument("--first-fault", type=int, default=200, help="snapshot of the first fault")
    p.add_argument("--fault-every", type=int, default=100, help="snapshots between faults")
    p.add_argument("--fault-duration", type=int, default=5, help="snapshots a fault lasts")
    p.add_argument(
        "--strength",
        type=float,
        nargs=2,
        default=(6.0, 10.0),
        metavar=("LOW", "HIGH"),
        help="fault strength range in std of the target (default: 6 10)",
    )
    form = p.add_mutually_exclusive_group()
    form.add_argument("--batch", dest="batch", action="store_true", default=True, help="batch form")
    form.add_argument("--single", dest="batch", action="store_false", help="single-sample form")
    p.add_argument("--truth", metavar="FILE", help="write the ground truth to this JSON-lines file")
    p.add_argument("--truth-topic", default="rca.truth", help="ground-truth topic ('' to skip)")
    p.add_argument(
        "--write-graphs",
        metavar="FILE",
        help="write a graphs file for the simulated systems (for `worker --config`) and exit",
    )
    p.add_argument(
        "--graph-warmup", type=int, default=100, help="engine warm-up in that graphs file"
    )
    p.set_defaults(handler=_reporting("stream-rca simulate", _run_simulate))


def _run_simulate(args: argparse.Namespace) -> int:
    import yaml

    from stream_rca.streaming.connect import check_broker
    from stream_rca.streaming.producers import ensure_topics, simulate
    from stream_rca.streaming.simulator import SimulationConfig, graphs_document

    config = SimulationConfig(
        graphs=args.graphs,
        prefix=args.prefix,
        nodes=args.nodes,
        seed=args.seed,
        count=args.count,
        duration=args.duration,
        rate=args.rate,
        step=args.step,
        batch=args.batch,
        faults=args.faults,
        first_fault=args.first_fault,
        fault_every=args.fault_every,
        fault_duration=args.fault_duration,
        strength=(args.strength[0], args.strength[1]),
    )
    if args.write_graphs:
        doc = graphs_document(config, warmup=args.graph_warmup)
        text = yaml.safe_dump(doc, default_flow_style=None, sort_keys=False, width=100)
        Path(args.write_graphs).write_text(text, encoding="utf-8")
        print(f"wrote {len(doc['graphs'])} graphs to {args.write_graphs}")
        return 0
    settings = settings_from_args(args, "simulate")
    redact_logs(settings)
    check_broker(settings)
    extra = {args.truth_topic: settings.partitions} if args.truth_topic else None
    ensure_topics(settings, extra=extra)
    stop = threading.Event()
    try:
        done = simulate(
            settings,
            config,
            truth_path=args.truth,
            truth_topic=args.truth_topic or None,
            stop=stop,
        )
    except KeyboardInterrupt:
        stop.set()
        return 130
    rate = done.messages / done.seconds if done.seconds > 0 else float("inf")
    print(
        f"sent {done.messages} messages ({done.snapshots} snapshots, {len(done.truth)} "
        f"faults) in {done.seconds:.1f} s ({rate:.0f} messages/s) to {settings.input_topic}"
    )
    return 0


def _reporting(
    prog: str, run: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """``run`` with its errors as one line and an exit code (see :func:`report`)."""

    @functools.wraps(run)
    def handler(args: argparse.Namespace) -> int:
        return report(prog, run, args)

    return handler


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``worker`` and ``simulate`` subcommands; each sets ``handler(args) -> int``.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="stream-rca")
    >>> register(parser.add_subparsers(dest="command", required=True))
    >>> args = parser.parse_args(["simulate", "--graphs", "2", "--single"])
    >>> args.graphs, args.batch, args.handler.__name__
    (2, False, '_run_simulate')
    """
    _add_worker(subparsers)
    _add_simulate(subparsers)

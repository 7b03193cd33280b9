"""The ``worker`` and ``simulate`` subcommands (``stream-rca``, ``python -m stream_rca.streaming``).

:func:`register` adds both to an :mod:`argparse` subparsers object; each sets
``args.handler(args) -> int`` (the exit code). Every flag that sets a
:class:`~stream_rca.config.Settings` field defaults to its ``STREAM_RCA_*`` environment
variable (shown in ``--help``), then to the built-in default; a flag given wins.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream_rca.config import ENV_PREFIX, Settings
from stream_rca.errors import StreamRCAError

__all__ = ["WORKER_OPTIONS", "register", "settings_from_args"]

# (Settings field, flag, metavar, type, help) of the worker command.
WORKER_OPTIONS: tuple[tuple[str, str, str | None, Callable[[str], Any] | None, str], ...] = (
    ("kafka_bootstrap", "--bootstrap", "HOST:PORT", str, "Kafka bootstrap servers"),
    ("config", "--config", "FILE", str, "graphs file (YAML or JSON) to serve"),
    ("input_topic", "--input-topic", "TOPIC", str, "topic of the metric events"),
    ("attributions_topic", "--attributions-topic", "TOPIC", str, "topic of the attributions"),
    ("scores_topic", "--scores-topic", "TOPIC", str, "topic of the per-snapshot node scores"),
    ("deadletter_topic", "--deadletter-topic", "TOPIC", str, "topic of rejected events"),
    ("publish_scores", "--publish-scores", None, None, "publish node scores of every snapshot"),
    ("app_id", "--app-id", "ID", str, "consumer group and state-table prefix"),
    ("partitions", "--partitions", "N", int, "partitions of the input topic and state table"),
    (
        "checkpoint_interval",
        "--checkpoint-interval",
        "SECONDS",
        float,
        "seconds between checkpoints",
    ),
    ("data_dir", "--data-dir", "DIR", str, "local data directory (a subdirectory per worker)"),
    ("metrics_port", "--metrics-port", "PORT", int, "serve Prometheus /metrics on this port"),
    ("metrics_addr", "--metrics-addr", "ADDR", str, "address of /metrics and the faust web server"),
    ("web_port", "--web-port", "PORT", int, "faust web server port (0 disables it)"),
    (
        "security_protocol",
        "--security-protocol",
        "PROTO",
        str,
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    ),
    (
        "sasl_mechanism",
        "--sasl-mechanism",
        "MECH",
        str,
        "SASL mechanism (PLAIN, SCRAM-SHA-256 ...)",
    ),
    ("sasl_username", "--sasl-username", "USER", str, "SASL user name"),
    ("sasl_password", "--sasl-password", "PASSWORD", str, "SASL password (prefer the variable)"),
    ("ssl_cafile", "--ssl-cafile", "FILE", str, "CA certificates (PEM)"),
    ("ssl_certfile", "--ssl-certfile", "FILE", str, "client certificate (PEM)"),
    ("ssl_keyfile", "--ssl-keyfile", "FILE", str, "client key (PEM)"),
)


def _env(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _default(field: str) -> Any:
    return Settings.__dataclass_fields__[field].default


def _help(field: str, text: str) -> str:
    default = _default(field)
    shown = "" if default is None else f", default: {default}"
    return f"{text} (env {_env(field)}{shown})"


def settings_from_args(args: argparse.Namespace, fields: tuple[str, ...]) -> Settings:
    """Settings from the environment, overridden by the flags of ``fields`` that were given."""
    return Settings.from_env(**{f: getattr(args, f, None) for f in fields})


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(ENV_PREFIX + name, "")
    return float(raw) if raw.strip() else default


def _add_worker(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run a streaming worker (faust) over Kafka",
        description="Consume metric events, run the engine per graph, publish attributions.",
    )
    for field, flag, metavar, kind, text in WORKER_OPTIONS:
        if kind is None:
            p.add_argument(
                flag, dest=field, action=argparse.BooleanOptionalAction, help=_help(field, text)
            )
        else:
            p.add_argument(flag, dest=field, metavar=metavar, type=kind, help=_help(field, text))
    p.add_argument(
        "--session-timeout",
        type=float,
        default=_env_float("SESSION_TIMEOUT", 30.0),
        metavar="SECONDS",
        help="seconds before the group gives a silent worker's partitions to the others "
        f"(env {ENV_PREFIX}SESSION_TIMEOUT, default: 30)",
    )
    p.add_argument(
        "--worker-id",
        default=os.environ.get(ENV_PREFIX + "WORKER_ID") or None,
        help=f"name of this worker's data directory (env {ENV_PREFIX}WORKER_ID, "
        "default: <hostname>-<pid>)",
    )
    p.add_argument(
        "--loglevel",
        default=os.environ.get(ENV_PREFIX + "LOGLEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help=f"log level (env {ENV_PREFIX}LOGLEVEL, default: info)",
    )
    p.set_defaults(handler=_run_worker)


def _run_worker(args: argparse.Namespace) -> int:
    from stream_rca.streaming.worker import run_worker

    try:
        settings = settings_from_args(args, tuple(o[0] for o in WORKER_OPTIONS))
        return run_worker(
            settings,
            loglevel=args.loglevel,
            worker_id=args.worker_id,
            session_timeout=args.session_timeout,
        )
    except StreamRCAError as exc:
        print(f"stream-rca worker: {exc}", file=sys.stderr)
        return 2


def _add_simulate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="publish simulated metric events with injected faults to Kafka",
        description="Simulated microservice systems (graphs PREFIX-0 .. PREFIX-{K-1}) with "
        "random faults, published to the input topic keyed by graph. The ground truth goes "
        "to --truth-topic and/or --truth FILE first. Security options come from the "
        "STREAM_RCA_SECURITY_PROTOCOL, STREAM_RCA_SASL_* and STREAM_RCA_SSL_* variables.",
    )
    p.add_argument(
        "--bootstrap",
        dest="kafka_bootstrap",
        metavar="HOST:PORT",
        help=_help("kafka_bootstrap", "Kafka bootstrap servers"),
    )
    p.add_argument(
        "--topic", dest="input_topic", metavar="TOPIC", help=_help("input_topic", "input topic")
    )
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
    p.set_defaults(handler=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    import yaml

    from stream_rca.streaming.producers import ensure_topics, simulate
    from stream_rca.streaming.simulator import SimulationConfig, graphs_document

    try:
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
        settings = settings_from_args(args, ("kafka_bootstrap", "input_topic"))
        extra = {args.truth_topic: settings.partitions} if args.truth_topic else None
        ensure_topics(settings, extra=extra)
        stop = threading.Event()
        try:
            report = simulate(
                settings,
                config,
                truth_path=args.truth,
                truth_topic=args.truth_topic or None,
                stop=stop,
            )
        except KeyboardInterrupt:
            stop.set()
            return 130
    except StreamRCAError as exc:
        print(f"stream-rca simulate: {exc}", file=sys.stderr)
        return 2
    rate = report.messages / report.seconds if report.seconds > 0 else float("inf")
    print(
        f"sent {report.messages} messages ({report.snapshots} snapshots, {len(report.truth)} "
        f"faults) in {report.seconds:.1f} s ({rate:.0f} messages/s) to {settings.input_topic}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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

"""``stream-rca why-changed``: which mechanism moved a target's distribution between two periods.

Two periods come from two CSV files (``--before A.csv --after B.csv``) or from one file and a
column that names the period of each row (``--data F.csv --period-column week --before w1
--after w2``). Columns that are not nodes of the graph, or hold text (a product id), are left
out with a note; a text value in a node's column is one line naming the file, row and column.
The answer is one ``stream-rca.change/v1`` JSON document
(:meth:`~stream_rca.core.change.ChangeResult.to_dict`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from stream_rca.core.change import attribute_change, parse_statistic
from stream_rca.core.graph import CausalGraph
from stream_rca.errors import ConfigError

__all__ = ["register"]

Columns = dict[str, list[float]]


def register(sub: Any) -> None:
    """Add the ``why-changed`` subcommand to the ``stream-rca`` subparsers ``sub``."""
    p = sub.add_parser(
        "why-changed",
        help="attribute the change of a node's distribution between two periods to mechanisms",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--graph", required=True, help="graph file (JSON, YAML, edge list)")
    p.add_argument("--name", help="the graph's name (default: its name field, else its stem)")
    p.add_argument("--target", required=True, help="the node whose distribution changed")
    p.add_argument("--before", required=True, help="CSV of the first period (or its label)")
    p.add_argument("--after", required=True, help="CSV of the second period (or its label)")
    p.add_argument("--data", help="one CSV holding both periods (with --period-column)")
    p.add_argument("--period-column", help="the column of --data that names each row's period")
    p.add_argument(
        "--statistic", default="mean", help="mean, or a percentile such as p99 (default mean)"
    )
    p.add_argument("--samples", type=int, default=4096, help="samples per coalition (4096)")
    p.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="false-discovery rate of the per-node change tests (default 0.05)",
    )
    p.add_argument(
        "--no-test", action="store_true", help="every node is a player (no change tests)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo draws (0)")
    p.add_argument("--output", metavar="OUT.json", help="write the JSON document here")
    p.set_defaults(handler=_why_changed)


def _why_changed(args: argparse.Namespace) -> int:
    from stream_rca.cli import _load_graph

    graph = _load_graph(args.graph, args.name)
    graph.check(args.target)
    try:
        parse_statistic(args.statistic)
    except ConfigError as exc:
        raise ConfigError(f"--{exc}") from None
    if args.samples < 16:
        raise ConfigError(f"--samples {args.samples}: expected at least 16")
    if not args.no_test and not 0.0 < args.alpha < 1.0:
        raise ConfigError(f"--alpha {args.alpha:g}: expected a level between 0 and 1")
    needed = (*graph.ancestors(args.target), args.target)
    notes: list[str] = []
    if args.data is not None or args.period_column is not None:
        if args.data is None or args.period_column is None:
            raise ConfigError("--data and --period-column go together")
        periods = _read(args.data, "--data", graph, needed, notes, args.period_column)
        for label, flag in ((args.before, "--before"), (args.after, "--after")):
            if label not in periods:
                known = ", ".join(sorted(periods)[:8])
                raise ConfigError(
                    f"{flag} {label!r}: no row of {args.data} has {args.period_column} = "
                    f"{label!r} (it has: {known})"
                )
        before, after = periods[args.before], periods[args.after]
        described = {
            "before": {"file": args.data, args.period_column: args.before},
            "after": {"file": args.data, args.period_column: args.after},
        }
    else:
        before = _read(args.before, "--before", graph, needed, notes)[""]
        after = _read(args.after, "--after", graph, needed, notes)[""]
        described = {"before": {"file": args.before}, "after": {"file": args.after}}
    for note in dict.fromkeys(notes):
        print(f"note: {note}", file=sys.stderr)
    result = attribute_change(
        graph,
        {k: np.asarray(v) for k, v in before.items()},
        {k: np.asarray(v) for k, v in after.items()},
        args.target,
        statistic=args.statistic,
        n_samples=args.samples,
        alpha=None if args.no_test else args.alpha,
        rng=np.random.default_rng(args.seed),
    )
    described["before"]["rows"] = result.rows_before
    described["after"]["rows"] = result.rows_after
    doc = result.to_dict(described) | {"graph": graph.name, "seed": args.seed}
    text = json.dumps(doc, indent=2, allow_nan=False)
    if args.output:
        try:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--output {args.output}: {exc.strerror or exc}") from None
    _summary(doc, sys.stdout)
    if args.output:
        print(f"written to {args.output}")
    return 0


def _summary(doc: dict[str, Any], out: Any) -> None:
    obs = doc["observed"]
    print(
        f"{doc['target']} {doc['statistic']}: {obs['before']:.4g} -> {obs['after']:.4g} "
        f"(change {obs['change']:+.4g}; the fitted models: {doc['model']['change']:+.4g})",
        file=out,
    )
    for rank, c in enumerate(doc["contributions"], start=1):
        held = "" if c["changed"] else "   (mechanism held)"
        print(
            f"  {rank}. {c['node']:<24} {c['contribution']:+9.4g} ({c['share']:+5.0%}){held}",
            file=out,
        )
    print(
        f"  {doc['method']} Shapley over {doc['players']} changed mechanisms, "
        f"{doc['samples']} samples per coalition",
        file=out,
    )


def _read(
    path: str,
    flag: str,
    graph: CausalGraph,
    needed: tuple[str, ...],
    notes: list[str],
    period_column: str | None = None,
) -> dict[str, Columns]:
    """The needed node columns of a CSV file, per period label (``""`` without a column)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{flag} {path}: {'a directory' if p.is_dir() else 'no such file'}")
    try:
        with p.open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ConfigError(f"{flag} {path}: the file is empty")
            header = [h.strip() for h in header]
            missing = [n for n in needed if n not in header]
            if missing:
                raise ConfigError(
                    f"{flag} {path}: no column for node(s) {', '.join(missing)} "
                    f"(columns: {', '.join(header[:10])})"
                )
            if period_column is not None and period_column not in header:
                raise ConfigError(f"--period-column {period_column!r}: not a column of {path}")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{flag} {path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise ConfigError(f"{flag} {path}: not a CSV file ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None
    where = {h: i for i, h in enumerate(header)}
    for h in header:
        if h != period_column and h not in graph:
            text = " (it holds text, e.g. an id)" if _is_text(rows, where[h]) else ""
            notes.append(f"{path}: column {h!r} is not a node of the graph{text}: left out")
    out: dict[str, Columns] = {}
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ConfigError(
                f"{flag} {path}: line {line} has {len(row)} fields, the header {len(header)}"
            )
        label = row[where[period_column]].strip() if period_column is not None else ""
        cols = out.setdefault(label, {n: [] for n in needed})
        for n in needed:
            cols[n].append(_number(row[where[n]], flag, path, line, n))
    return out


def _is_text(rows: list[list[str]], i: int) -> bool:
    for row in rows[:50]:
        if i < len(row) and row[i].strip():
            try:
                float(row[i])
            except ValueError:
                return True
    return False


def _number(cell: str, flag: str, path: str, line: int, column: str) -> float:
    text = cell.strip()
    if not text:
        return math.nan  # a missing value: the row is left out of the fit
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"{flag} {path}: line {line}, column {column!r}: {text[:40]!r} is not a number"
        ) from None

"""``stream-rca replay`` without ``--graph``: rank metrics by marginal scores and onset.

Every column of the training file (for a PetShop export: every column of ``--metric`` /
``--statistic``) is a candidate; columns that appear only in ``--data`` are added with empty
models. The training file is normal operation, so it is learned whole; ``--data`` is streamed,
the watched targets' marginal scores open incidents (``--threshold``), and each incident, and
each ``--explain ROW``, gets an attribution document of method ``graph-free`` (see
:mod:`stream_rca.core.graphfree` for the rule).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from stream_rca.core.config import EngineConfig
from stream_rca.core.graphfree import GraphFreeConfig, MarginalRanker
from stream_rca.core.trigger import Trigger
from stream_rca.core.types import Attribution, Snapshot
from stream_rca.errors import ConfigError
from stream_rca.replay_output import print_summary, say_availability, write_attributions

__all__ = ["print_ranking", "replay_graph_free"]

DEFAULT_NAME = "graph-free"


def print_ranking(att: Attribution, out: IO[str], top: int = 5, offset: int = 0) -> None:
    """A graph-free attribution as a few lines of text (onsets as rows: position - offset)."""
    print(
        f"\nincident {att.incident_id}  target {att.target}  score {att.target_score:.1f} nats"
        "  (no graph)",
        file=out,
    )
    groups = {c["node"]: c for c in att.extra.get("candidates", [])}
    for rank, rc in enumerate(att.root_causes[:top], start=1):
        c = groups.get(rc.node, {})
        flag = "  not in graph" if c.get("not_in_graph") else ""
        onset = c.get("onset")
        when = "-" if onset is None else f"row {onset - offset}"
        print(
            f"  {rank}. {rc.node:<40} score {rc.contribution:6.1f}  {c.get('group', '?'):<12} "
            f"onset {when}{flag}",
            file=out,
        )
    print(f"     {att.method}: {len(att.players)} scored metrics ranked", file=out)


def replay_graph_free(
    args: argparse.Namespace,
    config: EngineConfig,
    snapshots: Callable[[str, str, dict[str, Any]], Iterator[Snapshot]],
    open_output: Callable[[contextlib.ExitStack, str | None, str], IO[str] | None],
) -> int:
    """Run the graph-free replay of ``args`` (the ``replay`` namespace); return 0."""
    if not args.target:
        raise ConfigError("--target NODE is needed without --graph (the watched metric)")
    if args.scores:
        raise ConfigError("--scores needs --graph (use --output for the documents)")
    name = args.name or DEFAULT_NAME
    if not (name.strip() and name.isprintable()):
        raise ConfigError(f"--name {name!r}: expected a non-empty name")
    read = {
        "nodes": None,
        "ignore_extra": True,
        "graph": name,
        "metric": args.metric,
        "statistic": args.statistic,
        "availability": args.availability,
    }
    ranker = MarginalRanker([], GraphFreeConfig(warmup=config.warmup))
    out = sys.stdout
    n_train = 0
    for snap in snapshots(args.train, "--train", read):
        ranker.process_one(snap, trusted=True)
        n_train += 1
    for t in args.target:
        if t not in ranker:
            known = ", ".join(ranker.nodes[:8]) + (", ..." if len(ranker.nodes) > 8 else "")
            raise ConfigError(f"--target {t!r}: not a column of --train ({known})")
    warm = all(ranker.bank.fitted_count[ranker.index[t]] >= config.warmup for t in args.target)
    print(
        f"no graph: {len(ranker.nodes)} metrics of {Path(args.train).name} ranked by marginal "
        f"score and onset; targets {', '.join(args.target)}"
    )
    say_availability(args.metric, args.availability, args.train, out)
    print(
        f"learned from {n_train} snapshots "
        f"({'warm' if warm else 'NOT warm: more normal data needed'})",
        file=out,
    )
    triggers = {t: Trigger(name, t, config.trigger) for t in args.target}
    show = functools.partial(print_ranking, offset=n_train)
    incidents = rows = 0
    extra = {"graph_used": False}
    with contextlib.ExitStack() as stack:
        output = open_output(stack, args.output, "--output")
        if args.data:
            for rows, snap in enumerate(snapshots(args.data, "--data", read), start=1):
                learn = not any(tr.is_open for tr in triggers.values())
                scores = ranker.process_one(snap, learn=learn)
                explained: list[Attribution] = []
                for t, trig in triggers.items():
                    s = scores.get(t)
                    d = trig.update_one(snap.ts, None if s is None or math.isnan(s) else s)
                    if d.attribute:
                        explained.append(
                            ranker.explain(
                                t, snap, incident=d.incident_id, revision=d.revision, extra=extra
                            )
                        )
                first = args.target[0]
                if (
                    args.explain
                    and rows - 1 in args.explain
                    and first not in {a.target for a in explained}
                ):
                    explained.append(ranker.explain(first, snap, extra=extra))
                incidents += write_attributions(explained, out, output, show)
    print_summary(out, rows=rows, attributions=incidents, explain=args.explain, output=args.output)
    return 0

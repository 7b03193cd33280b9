"""Distribution-change attribution beside DoWhy-GCM's ``distribution_change``, on the same data.

The case is DoWhy's own supply-chain example (``../shared/data/dowhy-supply-chain``: weeks w1
and w2; the mechanisms of ``demand`` and ``confirmed`` changed): why did the mean of
``received`` change? DoWhy-GCM runs as its example shows (``gcm.auto.assign_causal_mechanisms``
on week 1, then ``gcm.distribution_change`` with the difference of means, ``num_samples``
2000, in a child process with a time budget: ``python -m benchmarks.change <case.npz>``);
stream-rca runs :func:`~stream_rca.core.change.attribute_change` with its defaults. Both are
timed whole (fitting included). The table gives both rankings, whether the first two agree,
and the time ratio.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DATA, REPO, Check, Report, Table, ms, say, time_calls
from stream_rca.core.change import attribute_change
from stream_rca.core.graph import CausalGraph

__all__ = ["ChangeSettings", "change_attribution"]


@dataclass(frozen=True)
class ChangeSettings:
    folder: Path = DATA / "dowhy-supply-chain"
    target: str = "received"
    repeat: int = 5
    run_dowhy: bool = True
    dowhy_budget: float = 600.0
    dowhy_samples: int = 2000
    seed: int = 0


def _weeks(folder: Path) -> tuple[CausalGraph, dict[str, np.ndarray], dict[str, np.ndarray]]:
    graph = CausalGraph.from_file(folder / "graph.json")
    with (folder / "week_over_week.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    def week(w: str) -> dict[str, np.ndarray]:
        return {n: np.array([float(r[n]) for r in rows if r["week"] == w]) for n in graph.nodes}

    return graph, week("w1"), week("w2")


def _child(path: str) -> None:
    """The DoWhy-GCM side: fit as the example does, attribute, print one JSON line."""
    import warnings

    warnings.simplefilter("ignore")
    with np.load(path, allow_pickle=False) as case:
        nodes = [str(n) for n in case["nodes"]]
        edges = [(str(a), str(b)) for a, b in case["edges"]]
        old, new = case["old"], case["new"]
        target, seed, samples = str(case["target"]), int(case["seed"]), int(case["samples"])
    try:
        import networkx as nx
        import pandas as pd
        from dowhy import gcm

        gcm.config.disable_progress_bars()
        gcm.util.general.set_random_seed(seed)
        old_frame, new_frame = pd.DataFrame(old, columns=nodes), pd.DataFrame(new, columns=nodes)
        started = time.perf_counter()
        model = gcm.ProbabilisticCausalModel(nx.DiGraph(edges))
        gcm.auto.assign_causal_mechanisms(model, old_frame)
        result = gcm.distribution_change(
            model,
            old_frame,
            new_frame,
            target,
            num_samples=samples,
            difference_estimation_func=lambda x1, x2: np.mean(x2) - np.mean(x1),
        )
        seconds = time.perf_counter() - started
        print(json.dumps(["ok", seconds, {str(k): float(v) for k, v in result.items()}]))
    except Exception as exc:  # reported to the parent
        print(json.dumps(["error", f"{type(exc).__name__}: {exc}"]))


def _run_dowhy(
    graph: CausalGraph, old: np.ndarray, new: np.ndarray, settings: ChangeSettings
) -> tuple[str, float, dict[str, float]]:
    try:
        import dowhy.gcm  # noqa: F401
    except ImportError:
        return "DoWhy-GCM is not installed (pip install -e '.[bench]')", float("nan"), {}
    with tempfile.TemporaryDirectory(prefix="stream-rca-bench-") as tmp:
        path = os.path.join(tmp, "case.npz")
        np.savez(
            path,
            nodes=np.array(graph.nodes, dtype=str),
            edges=np.array([list(e) for e in graph.edges], dtype=str),
            old=old,
            new=new,
            target=np.array(settings.target),
            seed=np.array(settings.seed),
            samples=np.array(settings.dowhy_samples),
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.change", path],
                capture_output=True,
                text=True,
                env=env,
                timeout=settings.dowhy_budget,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"budget of {settings.dowhy_budget:.0f} s ran out", float("nan"), {}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    if not lines:
        return "the DoWhy-GCM process ended without a result", float("nan"), {}
    msg = json.loads(lines[-1])
    if msg[0] != "ok":
        return f"DoWhy-GCM failed: {msg[1]}", float("nan"), {}
    return "ok", float(msg[1]), {str(k): float(v) for k, v in msg[2].items()}


def _ranking(values: dict[str, float]) -> list[str]:
    return sorted(values, key=lambda n: -abs(values[n]))


def change_attribution(settings: ChangeSettings) -> Report:
    """The section: both tools on the supply-chain weeks, rankings and time ratio."""
    report = Report()
    if not (settings.folder / "week_over_week.csv").is_file():
        report.checks.append(
            Check("distribution change: same ranking as DoWhy-GCM", "no data", None)
        )
        return report
    graph, w1, w2 = _weeks(settings.folder)

    def ours() -> Any:
        return attribute_change(
            graph, w1, w2, settings.target, rng=np.random.default_rng(settings.seed)
        )

    timing, result = time_calls(ours, settings.repeat)
    mine = {c.node: c.contribution for c in result.contributions}
    say(f"  stream-rca: {ms(timing.median)}, ranking {_ranking(mine)}")
    status, seconds = "not run", float("nan")
    theirs: dict[str, float] = {}
    if settings.run_dowhy:
        old = np.column_stack([w1[n] for n in graph.nodes])
        new = np.column_stack([w2[n] for n in graph.nodes])
        status, seconds, theirs = _run_dowhy(graph, old, new, settings)
        say(f"  DoWhy-GCM: {status}, {ms(seconds)}, ranking {_ranking(theirs)}")
    table = Table(
        f"Why did the mean of {settings.target!r} change (supply chain, w1 -> w2)?",
        ["node", "stream-rca", "rank", "DoWhy-GCM", "rank"],
    )
    rank_mine = _ranking(mine)
    rank_theirs = _ranking(theirs) if theirs else []
    for node in rank_mine:
        table.add(
            node,
            mine[node],
            rank_mine.index(node) + 1,
            theirs.get(node, float("nan")),
            rank_theirs.index(node) + 1 if node in rank_theirs else None,
        )
    table.add("sum", sum(mine.values()), None, sum(theirs.values()) if theirs else None, None)
    observed = result.observed_after - result.observed_before
    ratio = seconds / timing.median if theirs else float("nan")
    table.notes.append(
        f"observed change of the mean {observed:+.3f}; stream-rca {ms(timing.median)} "
        f"(median of {settings.repeat}, fitting included, {result.method} Shapley over "
        f"{result.n_players} changed mechanisms, {result.n_samples} samples); DoWhy-GCM "
        f"{ms(seconds)} ({status}; num_samples {settings.dowhy_samples}, fitting included): "
        f"ratio {ratio:.0f}x"
    )
    table.notes.append("ground truth: the mechanisms of demand and confirmed changed")
    report.tables.append(table)
    top_ok = set(rank_mine[:2]) == {"demand", "confirmed"}
    report.checks.append(
        Check(
            "distribution change: demand and confirmed rank first (supply chain)",
            ", ".join(rank_mine[:2]),
            top_ok,
        )
    )
    if theirs:
        same = set(rank_mine[:2]) == set(rank_theirs[:2])
        report.checks.append(
            Check(
                "distribution change: the same two nodes first as DoWhy-GCM, faster",
                f"stream-rca {rank_mine[:2]}, DoWhy-GCM {rank_theirs[:2]}; {ratio:.0f}x faster",
                same and ratio > 1,
            )
        )
    return report


if __name__ == "__main__":
    _child(sys.argv[1])

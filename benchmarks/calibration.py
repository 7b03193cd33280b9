"""Calibration of the conditional scores on held-out normal data: ``P(S >= s)`` against ``e^-s``.

Learn the first half of a normal stream, then score the second half (still learning, as the
engine does in production), record by record and in blocks of 256, and count per node how
often the score reaches 4 and 6 nats. A calibrated score reaches ``s`` with probability
``e^-s``: the ratio observed / promised should be near 1 (targets: within x2 at 4 nats, x3 at
6 nats). Data: the DoWhy shop's ``normal.csv`` and a simulated chain with lognormal, gamma and
Student-t noises. Also the incidents opened per 10,000 normal snapshots at 6, 9 and 12 nats,
and those opened on the DoWhy shop's last 1,640 normal rows after learning the 8,360 before
(as ``stream-rca replay --train head --data tail`` does; a calibrated trigger opens 0.2 at 9).

PetShop ``noissue`` (real CloudWatch metrics with gaps, 589 rows per scenario): learn the first
80 %, score the last 20 % (118 rows), latency and availability. At that size one node reaches
4 nats about twice by chance, so the levels it allows are: per node 2 nats (16 expected), and
4 and 6 nats over all the nodes of a scenario together (about 70 and 10 expected).

Run: ``python -m benchmarks.calibration``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from benchmarks.common import DATA, Check, Report, Table, read_rows
from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.trigger import TriggerConfig
from stream_rca.core.types import Snapshot
from stream_rca.io.petshop import iter_petshop_snapshots, read_petshop_graph

__all__ = ["CalibrationSettings", "calibration", "calibration_table", "main"]

FloatArray = npt.NDArray[np.float64]
LEVELS = (4.0, 6.0)
HOLDOUT = 1640
PETSHOP_SHARE = 0.8
PETSHOP_CASES = (
    ("low_traffic", "latency", "Average"),
    ("high_traffic", "latency", "Average"),
    ("low_traffic", "availability", "Average"),
    ("high_traffic", "availability", "Average"),
)


def _chain(seed: int, n: int) -> tuple[CausalGraph, FloatArray]:
    rng = np.random.default_rng(seed)
    a = rng.lognormal(0.0, 0.6, n)
    b = 0.8 * a + rng.gamma(2.0, 0.2, n)
    c = 1.2 * b + 0.3 * rng.standard_t(4, n)
    d = 0.5 * c + 0.4 * a + rng.lognormal(-1.0, 0.8, n)
    graph = CausalGraph([("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")], name="chain")
    return graph, np.column_stack([a, b, c, d])


def _dowhy() -> tuple[CausalGraph, FloatArray]:
    folder = DATA / "dowhy-microservice"
    graph = CausalGraph.from_file(folder / "graph.json", name="shop")
    names, rows = read_rows(folder / "normal.csv")
    order = [names.index(n) for n in graph.nodes]
    return graph, rows[:, order]


def _run(
    graph: CausalGraph, data: FloatArray, block: int, threshold: float
) -> tuple[FloatArray, int]:
    cfg = EngineConfig(trigger=TriggerConfig(threshold=threshold))
    engine = Engine(graph, cfg)
    half = len(data) // 2
    ts = np.arange(len(data), dtype=np.float64)
    for start in range(0, half, block):
        engine.process_block(
            ts[start : min(half, start + block)], data[start : min(half, start + block)]
        )
    scores = np.full((len(data) - half, len(graph)), np.nan)
    opened = 0
    for start in range(half, len(data), block):
        stop = min(len(data), start + block)
        for i, r in enumerate(engine.process_block(ts[start:stop], data[start:stop])):
            for j, node in enumerate(graph.nodes):
                scores[start - half + i, j] = r.scores.get(node, np.nan)
            opened += sum(e.kind == "opened" for e in r.events)
    return scores, opened


def _petshop_scores(scenario: str, metric: str, statistic: str, block: int) -> FloatArray:
    """Scores ``(rows, nodes)`` of the last 20 % of a scenario's ``noissue`` file (NaN where a
    node was not scored: no value, marginalised or not warm)."""
    folder = DATA / "petshop" / scenario
    graph = CausalGraph(read_petshop_graph(folder / "graph.csv"), name=scenario)
    snaps: list[Snapshot] = list(
        iter_petshop_snapshots(
            folder / "noissue" / "metrics.csv", metric, statistic, nodes=graph.nodes,
            ignore_extra=True, graph=scenario,
        )
    )  # fmt: skip
    engine = Engine(graph, EngineConfig(), targets=["PetSite"])
    cut = int(len(snaps) * PETSHOP_SHARE)
    for start in range(0, cut, block):
        engine.process_many(snaps[start : min(cut, start + block)])
    results = []
    for start in range(cut, len(snaps), block):
        results += engine.process_many(snaps[start : min(len(snaps), start + block)])
    return np.array(
        [[r.scores.get(node, np.nan) for node in graph.nodes] for r in results], dtype=np.float64
    )


def petshop_table() -> dict[str, dict[str, float]]:
    """Per PetShop case and block size: observed / promised at the levels its size allows."""
    out: dict[str, dict[str, float]] = {}
    for scenario, metric, statistic in PETSHOP_CASES:
        for block in (1, 256):
            scores = _petshop_scores(scenario, metric, statistic, block)
            scored = ~np.isnan(scores)
            per_node = [
                float(np.mean(scores[scored[:, j], j] >= 2.0)) / math.exp(-2.0)
                for j in range(scores.shape[1])
                if scored[:, j].sum() >= 50
            ]
            n = int(scored.sum())
            row = {"scored values": float(n), "most over at 2 nats": max(per_node)}
            for s in LEVELS:
                row[f"all nodes at {s:g} nats"] = float(np.sum(scores[scored] >= s)) / (
                    n * math.exp(-s)
                )
            out[f"PetShop {scenario} {metric}, blocks of {block}"] = row
    return out


def holdout_incidents(threshold: float = 9.0) -> int:
    """Incidents opened on the DoWhy shop's last :data:`HOLDOUT` normal rows after learning
    the rows before them, at the default configuration but for the threshold."""
    graph, data = _dowhy()
    engine = Engine(graph, EngineConfig(trigger=TriggerConfig(threshold=threshold)))
    ts = np.arange(len(data), dtype=np.float64)
    head = len(data) - HOLDOUT
    engine.process_block(ts[:head], data[:head])
    return sum(
        e.kind == "opened" for r in engine.process_block(ts[head:], data[head:]) for e in r.events
    )


def calibration_table() -> dict[str, object]:
    out: dict[str, object] = {}
    cases = {"dowhy shop": _dowhy(), "simulated chain": _chain(0, 20_000)}
    for name, (graph, data) in cases.items():
        for block in (1, 256):
            scores, _ = _run(graph, data, block, 9.0)
            ratios = {
                node: [float(np.nanmean(scores[:, j] >= s)) / math.exp(-s) for s in LEVELS]
                for j, node in enumerate(graph.nodes)
            }
            out[f"{name}, blocks of {block}"] = ratios
        n = len(data) - len(data) // 2
        alarms = {}
        for s in (6.0, 9.0, 12.0):
            _, opened = _run(graph, data, 256, s)
            alarms[f"{s:g} nats"] = {
                "incidents per 10k": 10_000 * opened / n,
                "promised per 10k": 10_000 * math.exp(-s),
            }
        out[f"{name}, false alarms"] = alarms
    return out


@dataclass(frozen=True)
class CalibrationSettings:
    """Nothing to set: the cases are fixed (kept for the runner's uniform interface)."""


def calibration(settings: CalibrationSettings | None = None) -> Report:
    """The calibration tables and the issue's targets, as a benchmark section."""
    table = calibration_table()
    report = Report()
    ratios = Table(
        "Calibration of conditional scores on held-out normal data (observed / promised)",
        ["case", "node", "P(S>=4) / e^-4", "P(S>=6) / e^-6"],
    )
    alarms = Table(
        "Incidents per 10,000 held-out normal snapshots (blocks of 256)",
        ["case", "threshold", "incidents", "calibrated"],
    )
    pet = Table(
        "Calibration on PetShop noissue, the last 20 % (observed / promised)",
        [
            "case",
            "scored values",
            "most over-alarming node at 2 nats",
            "all nodes at 4 nats",
            "all at 6 nats",
        ],
    )
    pet_table = petshop_table()
    for case, row in pet_table.items():
        pet.add(case, *row.values())
    pet.notes.append(
        "Most over-alarming node: the largest observed / promised over the nodes with at least 50 "
        "scored values (availability nodes are mostly constant: their scores are 0 on the "
        "constant and reach 2 nats less often than promised by design). Real metrics: a node's "
        "gaps, marginalised nodes and nodes not yet warm are not scored. On availability the "
        "pooled ratios far below 1 are those ties (conservative). Before the held residuals "
        "were recomputed with each learning step, one near-constant series over-alarmed 7.4x "
        "at 2 nats: its mechanism's intercept moved as rare drops aged out of its running "
        "means, so its constant value's residual drifted to the edge of residuals learned "
        "with older intercepts."
    )
    worst4, worst6 = 1.0, 1.0
    for case, rows in table.items():
        assert isinstance(rows, dict)
        for node, v in rows.items():
            if isinstance(v, list):
                ratios.add(case, node, v[0], v[1])
                worst4 = max(worst4, v[0], 1 / max(v[0], 1e-9))
                # no score reaching 6 nats is a failure too (~12 are promised per case)
                worst6 = max(worst6, v[1], 1 / max(v[1], 1e-9))
            else:
                alarms.add(case, node, v["incidents per 10k"], v["promised per 10k"])
    ratios.notes.append(
        "Learn the first half of the stream, score the second (still learning). A ratio above 1 "
        "is over-alarming; below 1, conservative. A ratio of 0 means no score reached the level."
    )
    report.tables += [ratios, pet, alarms]
    report.checks.append(
        Check("P(S>=4) within x2 of e^-4, every node", f"worst x{worst4:.2f}", worst4 <= 2)
    )
    report.checks.append(
        Check("P(S>=6) within x3 of e^-6, every node", f"worst x{worst6:.2f}", worst6 <= 3)
    )
    for metric in ("latency", "availability"):
        rows = [r for case, r in pet_table.items() if f" {metric}," in case]
        for level, bound in ((4, 2.0), (6, 3.0)):
            ratio = [r[f"all nodes at {level} nats"] for r in rows]
            worst = max(max(v, 1 / max(v, 1e-9)) for v in ratio)
            report.checks.append(
                Check(
                    f"PetShop noissue {metric}: all nodes' P(S>={level}) within x{bound:g} "
                    f"of e^-{level}",
                    f"worst x{worst:.2f}",
                    worst <= bound,
                )
            )
        if metric != "availability":
            continue
        most = max(r["most over at 2 nats"] for r in rows)
        report.checks.append(
            Check(
                f"PetShop noissue {metric}: no node over-alarms, P(S>=2) at most x2 of e^-2 "
                "(nodes with 50 scored values)",
                f"worst x{most:.2f}",
                most <= 2.0,
            )
        )
    pet.notes.append(
        "Availability: most series sit on one value (1.0) nearly always, so most scores are "
        "near 0 and the pooled rates at 4 and 6 nats stay far below e^-s: a deterministic score "
        "of a value that is tied with 95 % of the sample cannot be rare, and one that were would "
        "alarm on every normal snapshot. That is conservative, not calibrated; the checks ask "
        "for calibration both ways and say NOT MET for it. What can be asked of such series is "
        "that no node over-alarms, the check beside it."
    )
    held = holdout_incidents()
    report.checks.append(
        Check(
            f"DoWhy shop: at most 1 incident on {HOLDOUT:,} held-out normal rows at 9 nats",
            f"{held} (calibrated {HOLDOUT * math.exp(-9.0):.1f})",
            held <= 1,
        )
    )
    return report


def main() -> int:
    table: dict[str, object] = {**calibration_table(), **petshop_table()}
    for case, rows in table.items():
        print(f"\n{case}")
        assert isinstance(rows, dict)
        for node, v in rows.items():
            if isinstance(v, list):
                print(f"  {node:<24} P(S>=4)/e^-4 {v[0]:5.2f}   P(S>=6)/e^-6 {v[1]:5.2f}")
            elif isinstance(v, float):
                print(f"  {node:<24} {v:.3g}")
            else:
                print(f"  {node:<24} {json.dumps(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

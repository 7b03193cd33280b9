"""PetShop's real normal data with faults planted at every service, stream-rca beside the
reference rankers.

    python -m benchmarks.petshop_planted            # prints markdown tables

The PetShop train split holds 16 issues, all with one root cause (PetSearch); a ranking that
only works for that service would pass it. Here every service on PetSite's causal ancestry
with the metric in at least 90 % of the normal rows is made the root cause in turn, on the
real normal data and graph of both scenarios, for latency and for availability:

- the first ``train_share`` of ``noissue/metrics.csv`` is the normal period (what
  ``replay --train`` learns and what the reference rankers take as normal);
- an issue is 5 consecutive later normal rows; at rows 2 and 3 the cause's value rises by
  ``delta`` and every caller's by the sum over its callees of ``w *`` their rise, one weight
  ``w`` per call edge (:data:`WEIGHTS`): latency in ``[0.5, 2]`` (a caller calls a callee
  about ``w`` times per request: PetShop's own PetSearch issues raise PetSite by more than
  PetSearch), failed requests in ``[0.5, 1]`` (availability is read as failed requests, as
  ``replay`` reads it, and written back as the availability that gives the new count);
  ``delta`` is set so that the cause rises by at least ``a`` of its normal standard
  deviations and PetSite by at least ``b`` of its own, ``a`` and ``b`` drawn in ``[4, 10]``
  (a fault the cause's own dashboard shows, felt at the target; failures also at least 2-20
  % of the cause's requests, as most services never failed in the normal rows);
- the issue is written as PetShop files (``metrics.csv``, ``target.json``) and run exactly as
  :mod:`benchmarks.petshop` runs the real ones: ``stream-rca replay`` with files, target,
  metric and statistic only, the attribution of row 2 ranked; the reference rankers of
  :mod:`benchmarks.petshop_peers` rank the same files.

What this is not: a real fault. Propagation here is additive along the call graph with random
weights, which a linear mechanism can only approximate (its coefficients come from normal
variation, not from these weights), so nodes between the cause and PetSite carry residuals of
their own, as under real faults; but real faults also change error rates, timeouts and retries.
Read it as a check that no service is out of reach, beside the real issues.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from benchmarks.common import DATA, Check, Report, Table, say
from benchmarks.petshop import _issue
from benchmarks.petshop_peers import PeersSettings, _group, _Issue, rank_table
from stream_rca.io import read_petshop_graph

__all__ = ["PlantedSettings", "main", "petshop_planted"]

PETSHOP_DIR = DATA / "petshop"
TARGET = "PetSite"
ROWS = 5
FAULT_ROWS = (2, 3)


@dataclass(frozen=True)
class PlantedSettings:
    scenarios: tuple[str, ...] = ("low_traffic", "high_traffic")
    train_share: float = 0.8
    min_coverage: float = 0.9
    """Least share of normal rows in which a service has a latency to be made a cause."""
    repeats: int = 1
    """Issues per cause (different rows, weights and sizes)."""
    seed: int = 0
    max_causes: int | None = None
    """Plant at the first this many services only (tests; ``None``: every one)."""
    metrics: tuple[str, ...] = ("latency", "availability")


class _Metric:
    """One metric of a PetShop metrics file: each node's value in a row, read and written.

    Latency is its ``Average`` cell; availability is read as failed requests, as ``replay``
    reads it (``(100 - availability) / 100 * requests``), and written back as the
    availability that gives the new count (at most every request failed).
    """

    def __init__(self, name: str, header: list[list[str]]) -> None:
        self.name = name
        cells = {
            (node, metric, stat): j
            for j, (node, metric, stat) in enumerate(zip(*header[:3], strict=False))
            if node
        }
        own = "availability" if name == "availability" else "latency"
        self.cols = {n: j for (n, m, st), j in cells.items() if m == own and st == "Average"}
        self.requests = {n: j for (n, m, st), j in cells.items() if m == "requests" and st == "Sum"}
        if name == "availability":
            self.cols = {n: j for n, j in self.cols.items() if n in self.requests}

    def read(self, row: list[str], node: str) -> float | None:
        j = self.cols.get(node)
        if j is None or not row[j].strip():
            return None
        if self.name == "latency":
            return float(row[j])
        r = row[self.requests[node]]
        if not r.strip() or float(r) <= 0:
            return None
        return (100.0 - float(row[j])) / 100.0 * float(r)

    def write(self, row: list[str], node: str, value: float) -> None:
        j = self.cols[node]
        if self.name == "latency":
            row[j] = repr(value)
        else:
            served = float(row[self.requests[node]])
            row[j] = repr(100.0 * (1.0 - min(value, served) / served))


WEIGHTS = {"latency": (0.5, 2.0), "availability": (0.5, 1.0)}
"""Range of the per-edge weights: a caller calls a callee about ``w`` times per request
(latency); a share ``w`` of a callee's failures fail the caller's requests (availability)."""


def _plant(
    rows: list[list[str]],
    metric: _Metric,
    graph: nx.DiGraph,
    cause: str,
    sd: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[list[list[str]], float]:
    """The issue's rows with the fault planted; the target's rise in standard deviations.

    ``sd`` holds the normal standard deviations of the cause's and the target's values.
    """
    lo, hi = WEIGHTS[metric.name]
    weights = {e: float(rng.uniform(lo, hi)) for e in graph.edges}
    rise = dict.fromkeys(graph.nodes, 0.0)
    rise[cause] = 1.0
    for node in nx.topological_sort(graph):
        if node != cause:
            rise[node] = sum(weights[(p, node)] * rise[p] for p in graph.predecessors(node))
    own, seen = rng.uniform(4.0, 10.0, size=2)
    # the cause at least `own` of its standard deviations out, the target `seen` of its own
    # (failures: also at least 2-20 % of the cause's requests, as most never failed at all)
    delta = max(float(own) * sd[0], float(seen) * sd[1] / rise[TARGET])
    out = [list(r) for r in rows]
    if metric.name == "availability":
        served = min(float(out[i][metric.requests[cause]]) for i in FAULT_ROWS)
        delta = min(max(delta, float(rng.uniform(0.02, 0.2)) * served), served)
    for i in FAULT_ROWS:
        for node, gain in rise.items():
            value = metric.read(out[i], node) if gain else None
            if value is not None:
                metric.write(out[i], node, value + gain * delta)
    return out, delta * rise[TARGET] / max(sd[1], 1e-12)


def _cases(
    scenario: str, metric_name: str, settings: PlantedSettings, root: Path
) -> list[tuple[str, str, float]]:
    """Write the planted issues of one scenario and metric under ``root``; (issue, cause, m)
    each, ``m`` the target's rise in its standard deviations."""
    src = PETSHOP_DIR / scenario
    with open(src / "noissue" / "metrics.csv", newline="") as f:
        lines = [r for r in csv.reader(f) if r]
    header, body = lines[:4], lines[4:]
    cut = int(len(body) * settings.train_share)
    train, rest = body[:cut], body[cut:]
    out = root / scenario
    (out / "noissue").mkdir(parents=True, exist_ok=True)
    (out / "graph.csv").write_bytes((src / "graph.csv").read_bytes())
    with open(out / "noissue" / "metrics.csv", "w", newline="") as f:
        csv.writer(f).writerows(header + train)
    graph = nx.DiGraph(read_petshop_graph(src / "graph.csv"))
    metric = _Metric(metric_name, header)

    def present(rows: list[list[str]], node: str) -> np.ndarray:
        return np.array([metric.read(r, node) is not None for r in rows])

    def sd(node: str) -> float:
        return float(np.std([v for r in train if (v := metric.read(r, node)) is not None]))

    causes = sorted(
        n for n in nx.ancestors(graph, TARGET) if present(body, n).mean() >= settings.min_coverage
    )
    made: list[tuple[str, str, float]] = []
    for cause in causes[: settings.max_causes]:
        for rep in range(settings.repeats):
            rng = np.random.default_rng(
                [settings.seed, zlib.crc32(f"{scenario}/{metric_name}/{cause}/{rep}".encode())]
            )
            both = present(rest, cause) & present(rest, TARGET)
            starts = [s for s in range(len(rest) - ROWS + 1) if both[s : s + ROWS].all()]
            if not starts:
                continue
            s = starts[int(rng.integers(len(starts)))]
            rows, m = _plant(rest[s : s + ROWS], metric, graph, cause, (sd(cause), sd(TARGET)), rng)
            name = f"{metric_name}_{len(made)}"
            folder = out / "train" / name
            folder.mkdir(parents=True)
            with open(folder / "metrics.csv", "w", newline="") as f:
                csv.writer(f).writerows(header + rows)
            target = {
                "target": {
                    "node": TARGET,
                    "metric": metric_name,
                    "agg": "Average",
                    "timestamp": int(float(rows[FAULT_ROWS[0]][0])),
                },
                "root_cause": {"node": cause, "metric": None},
            }
            (folder / "target.json").write_text(json.dumps(target))
            made.append((name, cause, m))
    return made


def petshop_planted(settings: PlantedSettings) -> Report:
    """Top-1 / top-3 of the planted cause: stream-rca and every reference ranker."""
    peers = PeersSettings(scenarios=settings.scenarios, train_share=settings.train_share)
    issues: list[_Issue] = []
    ours: dict[tuple[str, str], int | None] = {}
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        tmp = root / "out"
        tmp.mkdir()
        for scenario in settings.scenarios:
            for metric in settings.metrics:
                made = _cases(scenario, metric, settings, root)
                say(f"[petshop planted] {scenario} {metric}: {len(made)} issues")
                members = []
                for issue_name, cause, _ in made:
                    folder = root / scenario / "train" / issue_name
                    outcome = _issue(folder, root / scenario, tmp)
                    rank = None if outcome.rank is None else outcome.rank + 1
                    ours[(scenario, issue_name)] = rank
                    issue = _Issue(scenario, issue_name, metric, cause)
                    members.append((issue, folder / "metrics.csv"))
                    issues.append(issue)
                unused = Table("", [""] * 6)  # the alarm rules on the normal rows: not asked here
                _group(scenario, (metric, "Average"), members, peers, unused, root=root)
    for issue in issues:
        issue.ranks = {"stream-rca": ours[(issue.scenario, issue.name)], **issue.ranks}
    labels = list(issues[0].ranks) if issues else []
    groups = [*settings.metrics, "all"]
    summary = Table(
        "PetShop normal data, faults planted at every service (root cause at row 2)",
        ["method", *(f"{g} top-{k}" for g in groups for k in (1, 3))],
    )
    results: dict[str, dict[tuple[str, int], float]] = {}
    for label in labels:
        shares: dict[tuple[str, int], float] = {}
        for g in groups:
            ranks = [i.ranks[label] for i in issues if g in ("all", i.metric)]
            for k in (1, 3):
                hits = sum(r is not None and r <= k for r in ranks)
                shares[(g, k)] = hits / max(len(ranks), 1)
        summary.add(label, *(shares[(g, k)] for g in groups for k in (1, 3)))
        results[label] = shares
    counts = {
        (s, m): sum(i.scenario == s and i.metric == m for i in issues)
        for s in settings.scenarios
        for m in settings.metrics
    }
    summary.notes.append(
        "Issues: "
        + ", ".join(f"{s} {m} {n}" for (s, m), n in counts.items())
        + f" (one per service with the metric in at least {settings.min_coverage:.0%} of the "
        f"normal rows, {settings.repeats} each); normal period: the first "
        f"{settings.train_share:.0%} of noissue/metrics.csv; issues from its later rows. "
        "stream-rca through `replay` with defaults; the others from benchmarks/rankers.py."
    )
    detail = rank_table(
        "PetShop planted faults: rank of the planted cause per method (- : not ranked)",
        issues,
        "cause",
    )
    report = Report(tables=[summary, detail])
    ours_ = results.get("stream-rca", {})
    others = {k: v for k, v in results.items() if k != "stream-rca"}
    for g in settings.metrics:
        for k in (1, 3):
            best = max(others, key=lambda m: others[m][(g, k)]) if others else None
            value = others[best][(g, k)] if best else 0.0
            mine = ours_.get((g, k), 0.0)
            report.checks.append(
                Check(
                    f"PetShop planted {g} faults: stream-rca top-{k} at least the best "
                    "reference ranker's",
                    f"{mine:.3g} ({best} {value:.3g})",
                    mine >= value,
                )
            )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.petshop_planted", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=1, help="issues per cause")
    parser.add_argument("--seed", type=int, default=0, help="seed of rows, weights, sizes")
    args = parser.parse_args(argv)
    report = petshop_planted(PlantedSettings(repeats=args.repeats, seed=args.seed))
    for t in report.tables:
        print(t.markdown())
    for c in report.checks:
        print(f"{c.verdict:8s} {c.target}: {c.measured}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

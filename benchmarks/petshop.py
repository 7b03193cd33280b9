"""The PetShop root-cause benchmark (Hardt et al. 2024), train split, through ``stream-rca replay``.

Exactly what a user runs, with no option beyond files, target, metric and statistic:

- accuracy: per issue, ``stream-rca replay --graph graph.csv --train noissue/metrics.csv --data
  issue/metrics.csv --target PetSite --metric M --statistic S --explain 2 --output out.jsonl``;
  the attribution of row 2 (the row the benchmark's own methods score; the one the trigger
  made there, else the explanation asked for) is ranked against the issue's root cause;
- specificity: the normal file split in time (the first ``train_share`` learned, the rest
  streamed), ``replay --train head.csv --data tail.csv``; specificity is the share of the held-out
  windows on which no incident opens.

Latency and availability issues are reported apart. Everything else (sparse nodes, missing
values, the rank rule) is the product's defaults.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import DATA, Check, Report, Table, say
from stream_rca.cli import main as cli_main
from stream_rca.core.config import EngineConfig
from stream_rca.io import read_petshop_target

__all__ = ["PUBLISHED", "PetshopSettings", "petshop"]

PETSHOP_DIR = DATA / "petshop"
PUBLISHED = {"anomaly traversal": (0.67, 0.83), "ranked correlation": (0.65, 0.83)}
"""Best published top-1 / top-3 on the full benchmark (52 issues, strict ranking)."""
TARGETS = {"top-1": 0.75, "top-3": 0.92, "specificity": 0.95}


@dataclass(frozen=True)
class PetshopSettings:
    scenarios: tuple[str, ...] = ("low_traffic", "high_traffic")
    train_share: float = 0.8
    metrics: tuple[str, ...] = ("latency", "availability")
    other_rules: tuple[str, ...] = ("explains-most", "shapley", "score")
    """Rank rules also measured (``replay --rank-by``), beside the default, not for the targets."""


@dataclass
class _Outcome:
    scenario: str
    issue: str
    metric: str
    truth: str
    rank: int | None
    top3: list[str] = field(default_factory=list)


def _replay(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli_main(argv)
    if code != 0:
        raise RuntimeError(f"stream-rca {' '.join(argv)} exited {code}")
    return out.getvalue()


def _issue(folder: Path, scenario: Path, tmp: Path, rule: str | None = None) -> _Outcome:
    target = read_petshop_target(folder / "target.json")
    out = tmp / f"{scenario.name}-{folder.name}.jsonl"
    _replay(
        [
            "replay", "--graph", str(scenario / "graph.csv"),
            "--train", str(scenario / "noissue" / "metrics.csv"),
            "--data", str(folder / "metrics.csv"), "--target", target.node,
            "--metric", target.metric, "--statistic", target.agg,
            "--explain", "2", "--output", str(out),
            *(["--rank-by", rule] if rule else []),
        ]
    )  # fmt: skip
    docs = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    row2 = [d for d in docs if d["window"]["start"] == _row_ts(folder, 2)] or docs[-1:]
    ranked = [rc["node"] for rc in row2[-1]["root_causes"]] if row2 else []
    truth = target.root_cause
    return _Outcome(
        scenario.name,
        folder.name,
        target.metric,
        truth,
        ranked.index(truth) if truth in ranked else None,
        ranked[:3],
    )


def _row_ts(folder: Path, row: int) -> float:
    lines = (folder / "metrics.csv").read_text().splitlines()
    return float(lines[4 + row].split(",")[0])  # three header rows, then unix_timestamp


def _specificity(
    scenario: Path, metric: str, statistic: str, share: float, tmp: Path
) -> tuple[int, int]:
    lines = (scenario / "noissue" / "metrics.csv").read_text().splitlines()
    head, body = lines[:4], [line for line in lines[4:] if line.strip()]
    cut = int(len(body) * share)
    train, rest = tmp / f"{scenario.name}-head.csv", tmp / f"{scenario.name}-tail.csv"
    train.write_text("\n".join(head + body[:cut]) + "\n")
    rest.write_text("\n".join(head + body[cut:]) + "\n")
    out = tmp / f"{scenario.name}-{metric}-normal.jsonl"
    _replay(
        [
            "replay", "--graph", str(scenario / "graph.csv"), "--train", str(train),
            "--data", str(rest), "--target", "PetSite", "--metric", metric,
            "--statistic", statistic, "--output", str(out),
        ]
    )  # fmt: skip
    docs = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    opened = len({d["incident_id"] for d in docs})
    return opened, len(body) - cut


def petshop(settings: PetshopSettings) -> Report:
    """Top-1 / top-3 of the root cause and specificity, latency and availability apart."""
    outcomes: list[_Outcome] = []
    others: dict[str, list[_Outcome]] = {rule: [] for rule in settings.other_rules}
    statistics: dict[str, str] = {}
    normal: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for scen in settings.scenarios:
            scenario = PETSHOP_DIR / scen
            for folder in sorted((scenario / "train").iterdir()):
                say(f"[petshop] {scen} {folder.name}")
                outcome = _issue(folder, scenario, tmp)
                outcomes.append(outcome)
                for rule, rows in others.items():
                    rows.append(_issue(folder, scenario, tmp, rule))
                statistics.setdefault(
                    outcome.metric, read_petshop_target(folder / "target.json").agg
                )
            for metric, stat in statistics.items():
                opened_here, n = _specificity(scenario, metric, stat, settings.train_share, tmp)
                a, b = normal.get(metric, (0, 0))
                normal[metric] = (a + opened_here, b + n)
    table = Table(
        "PetShop train split through `stream-rca replay` (default configuration)",
        [
            "metric",
            "issues",
            "top-1",
            "top-3",
            "held-out normal windows",
            "incidents",
            "specificity",
        ],
    )
    summary: dict[str, tuple[float, float, float]] = {}
    for metric in settings.metrics:
        rows = [o for o in outcomes if o.metric == metric]
        if not rows:
            continue
        top1 = sum(o.rank == 0 for o in rows) / len(rows)
        top3 = sum(o.rank is not None and o.rank < 3 for o in rows) / len(rows)
        opened, windows = normal.get(metric, (0, 0))
        spec = 1.0 - opened / windows if windows else float("nan")
        summary[metric] = (top1, top3, spec)
        table.add(metric, len(rows), top1, top3, windows, opened, spec)
    table.notes.append(
        "Specificity: the normal file learned up to "
        f"{settings.train_share:.0%} of its rows, the rest streamed; incidents opened / windows."
    )
    table.notes.append(
        "Published on the full benchmark (52 issues): "
        + "; ".join(f"{k} {a:.2f} / {b:.2f}" for k, (a, b) in PUBLISHED.items())
    )
    detail = Table(
        "PetShop issues: rank of the root cause (0 = first)",
        ["scenario", "issue", "metric", "root cause", "rank", "top 3"],
    )
    for o in outcomes:
        detail.add(o.scenario, o.issue, o.metric, o.truth, o.rank, ", ".join(o.top3))
    rules = Table(
        "PetShop train split: other rank rules (`replay --rank-by`), same attributions' inputs",
        ["rule", "latency top-1", "latency top-3", "availability top-1", "availability top-3"],
    )
    for rule, rows in {EngineConfig().rank_by + " (default)": outcomes, **others}.items():
        cells: list[float] = []
        for metric in ("latency", "availability"):
            mine = [o for o in rows if o.metric == metric]
            n = max(len(mine), 1)
            cells.append(sum(o.rank == 0 for o in mine) / n)
            cells.append(sum(o.rank is not None and o.rank < 3 for o in mine) / n)
        rules.add(rule, *cells)
    rules.notes.append(
        "Rules: stream_rca/core/ranking.py. The targets are checked on the default rule only."
    )
    report = Report(tables=[table, rules, detail])
    for metric, (top1, top3, spec) in summary.items():
        for what, value in (("top-1", top1), ("top-3", top3), ("specificity", spec)):
            report.checks.append(
                Check(
                    f"PetShop {metric} {what} >= {TARGETS[what]:g}",
                    f"{value:.3g}",
                    value >= TARGETS[what],
                )
            )
    return report


if __name__ == "__main__":
    rep = petshop(PetshopSettings())
    for t in rep.tables:
        print(t.markdown())
    for c in rep.checks:
        print(f"{c.verdict:8s} {c.target}: {c.measured}")

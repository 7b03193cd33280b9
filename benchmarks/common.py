"""What every benchmark shares: data paths, result tables, timing, machine description."""

from __future__ import annotations

import csv
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.types import Snapshot

__all__ = [
    "DATA",
    "REPO",
    "Check",
    "Report",
    "Table",
    "Timing",
    "fmt",
    "machine_info",
    "ms",
    "read_rows",
    "say",
    "snapshot",
    "time_calls",
    "train_engine",
]

FloatArray = npt.NDArray[np.float64]

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STREAM_RCA_BENCH_DATA", REPO.parent / "shared" / "data"))
"""The reference data (``../shared/data``); override with ``STREAM_RCA_BENCH_DATA``."""


def say(*parts: object) -> None:
    """Progress on stderr, so that stdout holds only the report."""
    print(*parts, file=sys.stderr, flush=True)


@dataclass
class Table:
    """A titled result table that renders as markdown, with notes below it."""

    title: str
    headers: Sequence[str]
    rows: list[Sequence[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.headers)} columns")
        self.rows.append(cells)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {n}" for n in self.notes)
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Check:
    """A target of the issue: what was wanted, what was measured, met or not."""

    target: str
    measured: str
    met: bool | None
    """``None`` when it could not be measured (the reason is in ``measured``)."""

    @property
    def verdict(self) -> str:
        return "n/a" if self.met is None else ("met" if self.met else "NOT MET")


def fmt(x: object) -> str:
    """A table cell: floats with 3 significant digits, the rest as text (``|`` escaped)."""
    if isinstance(x, bool) or x is None:
        return "-" if x is None else ("yes" if x else "no")
    if isinstance(x, float | np.floating):
        v = float(x)
        if v != v:
            return "-"
        if v == 0 or 1e-3 <= abs(v) < 1e6:
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return f"{v:.2e}"
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    return str(x).replace("|", "\\|")


def ms(seconds: float) -> str:
    """Seconds as a readable duration."""
    if seconds != seconds:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


@dataclass(frozen=True)
class Timing:
    """Wall and CPU time of repeated calls (per call)."""

    wall: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def time_calls(func: Callable[[], Any], repeat: int) -> tuple[Timing, Any]:
    """Call ``func`` ``repeat`` times; per-call wall and process CPU time, and the last result."""
    wall, cpu = [], []
    result: Any = None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        result = func()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return Timing(wall, cpu), result


def read_rows(path: Path) -> tuple[list[str], FloatArray]:
    """A numeric CSV with a header row: column names and a ``(rows, columns)`` array."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [[float(c) if c.strip() else np.nan for c in row] for row in reader if row]
    return header, np.array(rows, dtype=np.float64).reshape(len(rows), len(header))


def train_engine(
    graph: CausalGraph,
    config: EngineConfig,
    rows: FloatArray,
    *,
    targets: Sequence[str] | None = None,
    start: float = 0.0,
) -> Engine:
    """A new engine that has learned from ``rows`` (graph order, NaN = missing), one per step."""
    engine = Engine(graph, config, targets=targets)
    for t, row in enumerate(rows):
        engine.process_array(start + t, row)
    return engine


def snapshot(graph: CausalGraph, row: FloatArray, ts: float) -> Snapshot:
    """A snapshot of one row in graph order (NaN values left out)."""
    values = {n: float(v) for n, v in zip(graph.nodes, row, strict=True) if v == v}
    return Snapshot(ts, values, graph.name)


_MEASURED = ("--", "stream_rca/core", "stream_rca/sim", "stream_rca/io", "benchmarks")
"""What the benchmarks measure: a change there makes the report's commit id inexact."""


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(command: str) -> dict[str, str]:
    """Date, machine, versions and the command, for the report header."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    info = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "commit": _git("rev-parse", "--short", "HEAD")
        + (" (uncommitted changes)" if _git("status", "--porcelain", "-uno", *_MEASURED) else ""),
        "cpu": f"{_cpu_model()}, nproc {usable}",
        "load average at start (1/5/15 min)": load,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    try:
        import dowhy

        info["dowhy"] = str(dowhy.__version__)
    except ImportError:
        info["dowhy"] = "not installed (pip install -e '.[bench]')"
    return info


@dataclass
class Report:
    """What one benchmark section found: tables, target checks, and profiles of misses."""

    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)

    def extend(self, other: Report) -> None:
        self.tables.extend(other.tables)
        self.checks.extend(other.checks)
        self.profiles.update(other.profiles)

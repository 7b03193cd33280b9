"""Run every benchmark and write the results page.

    python -m benchmarks.run                  # everything; writes docs/benchmarks.md
    python -m benchmarks.run --quick          # smaller sizes, a few minutes
    python -m benchmarks.run --only speed,scale --out -   # print only

Progress goes to stderr; the markdown report to ``--out`` (``-``: stdout). Every random choice
is seeded, so a rerun gives the same cases; timings vary with the machine and its load, which
is why each comparison is measured side by side in the same run and reported as a ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.accuracy import AccuracySettings, accuracy
from benchmarks.calibration import calibration
from benchmarks.change import ChangeSettings, change_attribution
from benchmarks.common import REPO, Report, Table, machine_info, say
from benchmarks.multicause import MulticauseSettings, multicause
from benchmarks.multicause import quick_settings as multicause_quick
from benchmarks.petshop_peers import PeersSettings, petshop_peers
from benchmarks.petshop_planted import PlantedSettings, petshop_planted
from benchmarks.scale import ScaleSettings, scaling
from benchmarks.speed import SpeedSettings, attribution_speed
from stream_rca.allocator import keep_freed_memory

__all__ = ["RunSettings", "main", "quick_settings", "render", "run"]

SECTIONS = (
    "speed", "scale", "calibration", "accuracy", "multicause", "peers", "planted", "change",
)  # fmt: skip


@dataclass(frozen=True)
class RunSettings:
    sections: tuple[str, ...] = SECTIONS
    speed: SpeedSettings = field(default_factory=SpeedSettings)
    scale: ScaleSettings = field(default_factory=ScaleSettings)
    accuracy: AccuracySettings = field(default_factory=AccuracySettings)
    multicause: MulticauseSettings = field(default_factory=MulticauseSettings)
    peers: PeersSettings = field(default_factory=PeersSettings)
    planted: PlantedSettings = field(default_factory=PlantedSettings)
    change: ChangeSettings = field(default_factory=ChangeSettings)


def quick_settings(*, run_dowhy: bool = True, budget: float = 300.0) -> RunSettings:
    """Smaller sizes: the same code paths in a few minutes."""
    return RunSettings(
        speed=SpeedSettings(
            sim_sizes=(10, 50), n_anomalies=1, repeat=4, run_dowhy=run_dowhy, dowhy_budget=budget
        ),
        scale=ScaleSettings(
            sizes=(11, 100, 1000), seconds_per_size=1.0, growth_nodes=300, repeat=3
        ),
        accuracy=AccuracySettings(
            anomaly_rows=100, topologies=("shop", "random-20"), seeds=(0,), n_faults=8
        ),
        multicause=multicause_quick(),
    )


def run(settings: RunSettings) -> tuple[Report, dict[str, Report]]:
    """Run the chosen sections; all their findings, and each section's own."""
    total, parts = Report(), {}
    for name in settings.sections:
        started = time.perf_counter()
        say(f"== {name}")
        if name == "speed":
            part = attribution_speed(settings.speed)
        elif name == "scale":
            part = scaling(settings.scale)
        elif name == "calibration":
            part = calibration()
        elif name == "accuracy":
            part = accuracy(settings.accuracy)
        elif name == "multicause":
            part = multicause(settings.multicause)
        elif name == "peers":
            part = petshop_peers(settings.peers)
        elif name == "planted":
            part = petshop_planted(settings.planted)
        elif name == "change":
            part = change_attribution(settings.change)
        else:
            raise ValueError(f"unknown section {name!r}; use {', '.join(SECTIONS)}")
        say(f"== {name} done in {time.perf_counter() - started:.0f} s")
        parts[name] = part
        total.extend(part)
    return total, parts


_TITLES = {
    "speed": "Speed: attribution per anomaly, stream-rca vs DoWhy-GCM",
    "scale": "Scale: the per-snapshot step, memory, cost growth",
    "accuracy": "Accuracy",
    "multicause": "Multi-cause faults: stream-rca beside the reference rankers",
    "peers": "PetShop: the reference rankers",
    "planted": "PetShop normal data with faults planted at every service",
    "change": "Why did the distribution change? stream-rca vs DoWhy-GCM",
}

_METHOD = """\
## How to read this

- Every comparison with DoWhy-GCM is measured in the same run, on the same training rows, graph
  and anomalous rows, and reported as a ratio: the machine is shared and its load varies, so
  absolute times move between runs, ratios much less.
- DoWhy-GCM 0.14 runs with its documented defaults (`gcm.auto.assign_causal_mechanisms`,
  `gcm.fit`, `gcm.attribute_anomalies`; progress bars off) in a child process with a time
  budget per case; a case that runs out of budget says so in its notes. Only
  `attribute_anomalies` is timed, one anomaly per call; for stream-rca only `Engine.explain`.
- stream-rca's settings are its defaults unless a table says otherwise. Cases are seeded.
"""


def render(report: Report, parts: dict[str, Report], info: dict[str, str]) -> str:
    """The results page as markdown."""
    out = [
        "# Benchmarks",
        "",
        f"Generated by `{info['command']}` on {info['date']}. Rerun that command to "
        "reproduce; do not edit this page by hand.",
        "",
    ]
    machine = Table("Machine", ["", ""])
    for key, value in info.items():
        machine.add(key, value)
    out.append(machine.markdown())
    if report.checks:
        targets = Table("Targets", ["target", "measured", "verdict"])
        for c in report.checks:
            targets.add(c.target, c.measured, c.verdict)
        out.append(targets.markdown())
    for name, part in parts.items():
        out.append(f"## {_TITLES.get(name, name)}\n")
        out.extend(t.markdown() for t in part.tables)
    if report.profiles:
        out.append("## Profiles of the targets not met\n")
        for name, text in report.profiles.items():
            out.append(f"### {name}\n\n```\n{text}\n```\n")
    out.append(_METHOD)
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections: {SECTIONS}"
    )
    parser.add_argument("--no-dowhy", action="store_true", help="do not run DoWhy-GCM")
    parser.add_argument(
        "--dowhy-budget",
        type=float,
        default=None,
        help="seconds per case for DoWhy-GCM, fit and all anomalies (default 900; quick 300)",
    )
    parser.add_argument(
        "--out",
        default=str(REPO / "docs" / "benchmarks.md"),
        help="where to write the markdown report ('-': stdout only)",
    )
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the stream-rca command does (stream_rca/allocator.py)
    sections = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; use {', '.join(SECTIONS)}")
    base = quick_settings() if args.quick else RunSettings()
    budget = args.dowhy_budget if args.dowhy_budget is not None else base.speed.dowhy_budget
    speed = dataclasses.replace(
        base.speed, run_dowhy=base.speed.run_dowhy and not args.no_dowhy, dowhy_budget=budget
    )
    change = dataclasses.replace(base.change, run_dowhy=not args.no_dowhy)
    settings = dataclasses.replace(base, sections=sections, speed=speed, change=change)
    argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    info = machine_info(f"python -m benchmarks.run {argv_text}".strip())
    report, parts = run(settings)
    page = render(report, parts, info)
    if args.out == "-":
        print(page)
    else:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        print(page)
        say(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The benchmark code paths at tiny sizes: they run, and the report renders (no timing asserts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.accuracy import AccuracySettings, simulated_streams
from benchmarks.common import Report, Table
from benchmarks.run import RunSettings, main, render, run
from benchmarks.scale import ScaleSettings
from benchmarks.speed import SpeedSettings, rank_correlation


def tiny() -> RunSettings:
    return RunSettings(
        sections=("speed", "scale"),
        speed=SpeedSettings(
            include_example=False,
            sim_sizes=(10,),
            n_anomalies=1,
            n_train=300,
            repeat=2,
            run_dowhy=False,
        ),
        scale=ScaleSettings(
            sizes=(11, 40),
            seconds_per_size=0.05,
            max_rows=30,
            block=8,
            growth_nodes=40,
            growth_players=(3, 14),
            repeat=1,
        ),
    )


def test_speed_and_scale_sections_render() -> None:
    report, parts = run(tiny())
    page = render(report, parts, {"command": "pytest", "date": "today"})
    assert "Attribution time per anomaly" in page
    assert "Per-snapshot learn-and-score step" in page
    assert "State memory" in page
    assert "Cost growth" in page
    assert "| Targets" not in page  # a table title is a heading, not a row
    assert any("node updates/s" in c.target for c in report.checks)
    gap = next(t for t in parts["speed"].tables if "sampled" in t.title)
    assert gap.rows[0][2] == "exact"  # 10 players: the exact reference is computed


def test_simulated_stream_counts_add_up() -> None:
    settings = AccuracySettings(
        topologies=("shop",), seeds=(0,), n_train=150, n_faults=2, every=30, duration=3
    )
    table = simulated_streams(settings)
    assert len(table.rows) == len(settings.kinds) * len(settings.thresholds)
    for row in table.rows:
        faults, detected, missed = row[3], row[4], row[5]
        assert faults == 2
        assert detected + missed == faults  # type: ignore[operator]


def test_rank_correlation() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation(a, np.ones(4)))


def test_table_markdown_escapes_and_formats() -> None:
    t = Table("T", ["a", "b"])
    t.add("x|y", 0.123456)
    t.add(12345, float("nan"))
    text = t.markdown()
    assert "x\\|y" in text
    assert "0.123" in text
    assert "12,345" in text
    report = Report(tables=[t])
    assert render(report, {"x": report}, {"command": "c", "date": "d"}).count("### T") == 1


def test_cli_rejects_unknown_section() -> None:
    with pytest.raises(SystemExit):
        main(["--only", "nonsense", "--out", "-"])


def test_change_section_renders(shared_data: Path) -> None:
    from benchmarks.change import ChangeSettings

    settings = RunSettings(
        sections=("change",),
        change=ChangeSettings(folder=shared_data / "dowhy-supply-chain", repeat=1, run_dowhy=False),
    )
    report, parts = run(settings)
    page = render(report, parts, {"command": "pytest", "date": "today"})
    assert "Why did the distribution change?" in page
    assert "| confirmed |" in page
    first = next(c for c in report.checks if "rank first" in c.target)
    assert first.met


def test_planted_petshop_faults_rise_along_the_call_graph(shared_data: Path, tmp_path) -> None:
    import csv

    import networkx as nx

    from benchmarks.petshop_planted import FAULT_ROWS, TARGET, PlantedSettings, _cases, _Metric
    from stream_rca.io import read_petshop_graph

    made = _cases("low_traffic", "latency", PlantedSettings(max_causes=3), tmp_path)
    made += _cases("low_traffic", "availability", PlantedSettings(max_causes=3), tmp_path)
    assert len(made) == 6
    graph = nx.DiGraph(read_petshop_graph(tmp_path / "low_traffic" / "graph.csv"))
    with open(shared_data / "petshop" / "low_traffic" / "noissue" / "metrics.csv") as f:
        normal = [r for r in csv.reader(f) if r][4:]
    original = {r[0]: r for r in normal}
    for name, cause, m in made:
        # the target at least 4 sd out (failures: unless every request of the cause failed)
        assert m >= 4.0 if name.startswith("latency") else m > 0.0
        with open(tmp_path / "low_traffic" / "train" / name / "metrics.csv") as f:
            lines = [r for r in csv.reader(f) if r]
        metric = _Metric(name.split("_")[0], lines[:4])
        reached = nx.descendants(graph, cause) | {cause}
        assert TARGET in reached
        for i, row in enumerate(lines[4:]):
            before = original[row[0]]  # the planted rows are normal rows, by their time
            for node in metric.cols:
                now, then = metric.read(row, node), metric.read(before, node)
                if now is None or then is None:
                    continue
                if i in FAULT_ROWS and node in reached:
                    assert now > then or now == float(row[metric.requests[node]]), (name, node)
                else:
                    assert row[metric.cols[node]] == before[metric.cols[node]], (name, node, i)


def test_planted_section_renders(shared_data: Path) -> None:
    from benchmarks.petshop_planted import PlantedSettings

    settings = RunSettings(
        sections=("planted",), planted=PlantedSettings(scenarios=("low_traffic",), max_causes=2)
    )  # 2 latency and 2 availability issues
    report, parts = run(settings)
    page = render(report, parts, {"command": "pytest", "date": "today"})
    assert "faults planted at every service" in page
    assert len(report.checks) == 4  # top-1 and top-3, latency and availability

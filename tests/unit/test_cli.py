"""The command line through its public entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_rca.cli import main


def test_demo_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "incidents.jsonl"
    assert main(["demo", "--seed", "0", "--faults", "3", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "summary" in text
    assert "detected          3   missed 0" in text
    assert "top-1 accuracy    100%" in text
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(docs) >= 3
    for doc in docs:
        assert doc["schema"] == "stream-rca.attribution/v1"
        assert doc["target"] == "Website"
        assert doc["truth"]["root_causes"]
        assert doc["root_causes"][0]["node"] in doc["truth"]["root_causes"]
        total = sum(rc["contribution"] for rc in doc["root_causes"])
        assert abs(total - doc["target_score"]) < 1e-6


def test_replay_explains_dowhy_anomaly(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shared_data / "dowhy-microservice"
    out = tmp_path / "out.jsonl"
    argv = [
        "replay",
        "--graph", str(folder / "graph.json"),
        "--train", str(folder / "normal.csv"),
        "--data", str(folder / "anomaly.csv"),
        "--explain", "0",
        "--output", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    assert "learned from 10000 snapshots" in capsys.readouterr().out
    (doc,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert doc["root_causes"][0]["node"] == "Caching Service"


def test_replay_reads_petshop_format(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared_data / "petshop" / "low_traffic"
    argv = [
        "replay",
        "--graph", str(folder / "graph.csv"),
        "--train", str(folder / "noissue" / "metrics.csv"),
        "--data", str(folder / "train" / "issue_0" / "metrics.csv"),
        "--target", "PetSite", "--warmup", "50", "--explain", "2", "--ignore-extra",
    ]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "learned from 589 snapshots" in text
    assert "target PetSite" in text


def test_check_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "g.json"
    good.write_text(json.dumps({"edges": [["db", "api"], ["api", "web"]]}))
    assert main(["check-graph", str(good), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sinks"] == ["web"]
    assert summary["nodes"] == 3
    bad = tmp_path / "cyclic.txt"
    bad.write_text("a -> b\nb -> a\n")
    assert main(["check-graph", str(bad)]) == 2
    assert "cycle: a -> b -> a" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay"])
    assert exc.value.code == 2
    assert "--graph" in capsys.readouterr().err

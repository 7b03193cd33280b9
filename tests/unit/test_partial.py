"""Partial graphs: series not in the graph as not_in_graph candidates; nodes without data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stream_rca.cli import main
from stream_rca.core.graphfree import GraphFreeConfig
from stream_rca.core.partial import EXTRA_KEY, ExtraSeries
from stream_rca.core.types import Snapshot


def test_bound_refuses_series_beyond_it() -> None:
    ex = ExtraSeries(["db", "api"], ["api"], max_series=2)
    assert ex.admit(["db", "x1", "x2", "x3", "x1"]) == (["x1", "x2"], ["x3"])
    graph, extra = ex.split({"db": 1.0, "x2": 2.0, "x9": 3.0})
    assert graph == {"db": 1.0}
    assert extra == {"x2": 2.0}
    assert ex.series == ["x1", "x2"]


def test_candidates_follow_the_graph_free_rule() -> None:
    rng = np.random.default_rng(1)
    ex = ExtraSeries(["api"], ["api"], GraphFreeConfig(warmup=50))
    for i in range(298):
        row = {"api": rng.normal(10, 1), "old": rng.normal(), "new": rng.normal()}
        ex.observe(Snapshot(float(i), {**row, "calm": rng.normal()}))
    for ts in (298.0, 299.0, 300.0):  # 'old' went off three snapshots before the target
        ex.observe(Snapshot(ts, {"api": 10.0, "old": 30.0, "new": 0.0, "calm": 0.0}))
    for ts in (301.0, 302.0):
        ex.observe(Snapshot(ts, {"api": 40.0, "old": 30.0, "new": 25.0, "calm": 0.1}))
    names = [(c["node"], c["group"]) for c in ex.candidates("api")]
    assert names == [("new", "new"), ("old", "pre-existing"), ("calm", "calm")]
    assert all(c["not_in_graph"] for c in ex.candidates("api"))


def _files(folder: Path) -> dict[str, Path]:
    """Graph db -> api -> web, plus a node 'disk' of the graph with no data; the files add a
    series 'gc' (not in the graph) that is the fault, and db stays normal."""
    rng = np.random.default_rng(5)
    graph = folder / "graph.txt"
    graph.write_text("disk -> db\ndb -> api\napi -> web\n")

    def table(n: int, fault: int | None) -> str:
        lines = ["db,api,web,gc"]
        for i in range(n):
            gc = (
                1.0
                + 0.1 * rng.standard_normal()
                + (4.0 if fault is not None and i >= fault else 0.0)
            )
            db = 1.0 + 0.1 * rng.standard_normal()
            api = 2.0 * db + 0.1 * rng.standard_normal() + (gc - 1.0)
            web = api + 0.5 + 0.1 * rng.standard_normal()
            lines.append(f"{db:.6f},{api:.6f},{web:.6f},{gc:.6f}")
        return "\n".join(lines) + "\n"

    (folder / "train.csv").write_text(table(400, None))
    (folder / "data.csv").write_text(table(40, 30))
    return {"graph": graph, "train": folder / "train.csv", "data": folder / "data.csv"}


def test_replay_names_series_not_in_the_graph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = _files(tmp_path)
    out = tmp_path / "out.jsonl"
    argv = ["replay", "--graph", str(f["graph"]), "--train", str(f["train"]),
            "--data", str(f["data"]), "--target", "web", "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "marginalised (graph nodes with too little data): disk" in text
    assert "not in the graph, scored marginally as candidates: 1 series (gc)" in text
    assert "not in graph: gc" in text
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert docs
    doc = docs[0]
    assert doc["marginalised"] == ["disk"]
    (gc,) = doc[EXTRA_KEY]
    assert gc["node"] == "gc"
    assert gc["not_in_graph"] is True
    assert gc["group"] == "new"
    assert gc["score"] > 9.0
    assert gc["onset"] is not None
    assert "gc" not in {rc["node"] for rc in doc["root_causes"]}  # the graph's ranking as is


def test_replay_ignore_extra_skips_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _files(tmp_path)
    out = tmp_path / "out.jsonl"
    argv = ["replay", "--graph", str(f["graph"]), "--train", str(f["train"]),
            "--data", str(f["data"]), "--target", "web", "--output", str(out),
            "--ignore-extra"]  # fmt: skip
    assert main(argv) == 0
    assert "not in the graph" not in capsys.readouterr().out
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert docs
    assert all(EXTRA_KEY not in d for d in docs)

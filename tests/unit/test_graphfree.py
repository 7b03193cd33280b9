"""Graph-free ranking: the core ranker, the replay without --graph, PetShop and the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stream_rca.cli import main
from stream_rca.core.graphfree import GRAPH_FREE_METHOD, GraphFreeConfig, MarginalRanker
from stream_rca.core.types import Snapshot


def _trained(rng: np.random.Generator, n: int = 400) -> MarginalRanker:
    r = MarginalRanker(["a", "b", "c", "d"], GraphFreeConfig(warmup=50))
    for t in range(n):
        r.process_array(rng.normal(size=4) + 10.0, ts=float(t), trusted=True)
    return r


def test_a_drop_counts_as_much_as_a_rise() -> None:
    r = _trained(np.random.default_rng(1))
    s = r.process_array(np.array([10.0, 4.0, 16.0, 10.0]), ts=400.0)
    assert s[1] > 9
    assert s[2] > 9
    assert s[0] < 3
    top = [c.node for c in r.rank("a")[:2]]
    assert set(top) == {"b", "c"}


def test_the_new_anomaly_ranks_before_a_pre_existing_one() -> None:
    r = _trained(np.random.default_rng(2))
    # d shifts far and stays shifted while the target a is calm; later b and a go off
    for t in range(400, 405):
        r.process_array(np.array([10.0, 10.0, 10.0, 40.0]), ts=float(t))
    r.process_array(np.array([14.0, 25.0, 10.0, 40.0]), ts=405.0)
    ranking = r.rank("a")
    assert ranking[0].node == "b"
    assert ranking[0].group == "new"
    d = next(c for c in ranking if c.node == "d")
    assert d.group == "pre-existing"
    assert ranking.index(d) > 0


def test_an_anomaly_first_seen_after_a_gap_is_pre_existing() -> None:
    r = _trained(np.random.default_rng(3))
    r.process_array(np.array([10.0, 10.0, 10.0, 40.0]), ts=10_000.0)  # a gap: onset unknown
    r.process_array(np.array([14.0, 25.0, 10.0, 40.0]), ts=10_001.0)
    by_node = {c.node: c for c in r.rank("a")}
    assert by_node["d"].censored
    assert by_node["d"].group == "pre-existing"
    assert by_node["b"].group == "new"


def test_new_metrics_are_added_without_touching_the_others() -> None:
    r = _trained(np.random.default_rng(4))
    probe = np.array([10.0, 13.0, 10.0, 7.0])
    before = r.bank.score(probe, np.arange(4))
    assert r.add_nodes(["e", "a"]) == ("e",)
    after = r.bank.score(probe, np.arange(4))
    assert np.array_equal(before, after)
    scores = r.process_one(Snapshot(401.0, {"a": 10.0, "e": 3.0}))
    assert "e" not in scores
    assert "a" in scores
    assert r.rank("a")[-1].group == "unscored"


def test_two_runs_of_one_stream_agree() -> None:
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(300, 3))
    one, other = (MarginalRanker(["x", "y", "z"], GraphFreeConfig(warmup=20)) for _ in range(2))
    for t, row in enumerate(rows):
        one.process_array(row, ts=float(t))
    for t, row in enumerate(rows):
        other.process_one(Snapshot(float(t), dict(zip("xyz", map(float, row), strict=True))))
    assert np.array_equal(one.bank.samples, other.bank.samples)
    assert [c.node for c in one.rank("x")] == [c.node for c in other.rank("x")]


def test_the_document_says_no_graph_was_used() -> None:
    r = _trained(np.random.default_rng(6))
    snap = Snapshot(400.0, {"a": 16.0, "b": 10.0, "c": 10.0, "d": 10.0}, graph="g")
    r.process_one(snap)
    doc = r.explain("a", snap).to_dict()
    assert doc["method"] == GRAPH_FREE_METHOD == "graph-free"
    assert doc["graph_used"] is False
    assert "no causal graph" in doc["rule"]
    assert doc["root_causes"][0]["node"] == "a"
    assert {c["group"] for c in doc["candidates"]} <= {"new", "pre-existing", "calm", "unscored"}


# -- replay without --graph ---------------------------------------------------------------------


def test_replay_petshop_without_graph(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shared_data / "petshop" / "high_traffic"
    out = tmp_path / "att.jsonl"
    argv = [
        "replay",
        "--train", str(folder / "noissue" / "metrics.csv"),
        "--data", str(folder / "train" / "issue_4" / "metrics.csv"),
        "--metric", "availability", "--target", "PetSite", "--explain", "2",
        "--output", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "no graph:" in text
    assert "availability read as failed requests per period" in text
    assert "learned from 589 snapshots" in text
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert docs
    assert all(d["method"] == "graph-free" and d["graph_used"] is False for d in docs)
    assert docs[-1]["root_causes"][0]["node"] == "PetSearch_AWS::ECS::Fargate"


def test_replay_without_graph_needs_a_known_target(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = str(shared_data / "petshop" / "low_traffic" / "noissue" / "metrics.csv")
    assert main(["replay", "--train", train]) == 2
    assert "--target NODE is needed without --graph" in capsys.readouterr().err
    assert main(["replay", "--train", train, "--target", "nope"]) == 2
    assert "not a column of --train" in capsys.readouterr().err


@pytest.mark.slow
def test_petshop_graph_withheld_meets_the_target(shared_data: Path) -> None:
    from benchmarks.graphfree import GraphFreeSettings, _petshop

    table = _petshop(GraphFreeSettings())
    row = next(r for r in table.rows if r[0] == "stream-rca graph-free")
    top1, top3 = float(str(row[-3])), float(str(row[-2]))
    assert top1 >= 0.50
    assert top3 >= 0.75


def test_simulator_graph_withheld_finds_planted_causes() -> None:
    from benchmarks.graphfree import sim_rank
    from benchmarks.multicause import accuracy_at
    from stream_rca.sim.multicause import multicause_case

    hits = []
    for i in range(4):
        case = multicause_case(np.random.default_rng([7, i]), n_nodes=20, n_normal=400)
        fault = case.faults[0]
        order = sim_rank(case.normal, fault.window, fault.fault_row, case.target)
        hits.append(accuracy_at(order, fault.causes, 3))
    assert np.mean(hits) >= 0.5

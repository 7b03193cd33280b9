"""Structure from metrics (stream_rca.core.learn) and ``stream-rca graph learn``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stream_rca.cli import main
from stream_rca.core.graph import CausalGraph
from stream_rca.core.learn import learn_structure


def _diamond(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """db -> api, cache -> api, api -> web, with gamma noise."""
    rng = np.random.default_rng(seed)
    db, cache = rng.gamma(2.0, 1.0, n), rng.gamma(2.0, 1.0, n)
    api = db + cache + rng.gamma(2.0, 1.0, n)
    web = api + rng.gamma(2.0, 1.0, n)
    return np.c_[db, cache, api, web], ["db", "cache", "api", "web"]


def test_recovers_a_collider_and_its_effect() -> None:
    x, names = _diamond()
    g = learn_structure(x, names, n_boot=10)
    assert set(g.edges) == {("db", "api"), ("cache", "api"), ("api", "web")}
    assert all(0.0 < f <= 1.0 for f in g.frequency.values())
    assert g.frequency[("db", "api")] >= 0.9
    assert g.adjacency("db", "cache") == 0.0


def test_toward_orients_every_edge_to_the_target() -> None:
    x, names = _diamond()
    g = learn_structure(x, names, n_boot=5, toward="web")
    assert ("api", "web") in g.edges
    assert not any(a == "web" for a, _ in g.edges)


def test_seeded_and_valid_document() -> None:
    x, names = _diamond(seed=3)
    a = learn_structure(x, names, n_boot=5, seed=7)
    b = learn_structure(x, names, n_boot=5, seed=7)
    assert a == b
    doc = a.to_document("shop")
    graph = CausalGraph.from_dict(doc)
    assert set(graph.edges) == set(a.edges)
    assert {e["cause"] for e in doc["edge_attributes"]} <= set(names)
    assert doc["source"]["bootstrap"] == 5


def test_constant_and_missing_columns() -> None:
    x, names = _diamond()
    x = np.c_[x, np.ones(len(x)), np.full(len(x), np.nan)]
    x[::7, 0] = np.nan
    g = learn_structure(x, [*names, "flat", "empty"], n_boot=3)
    assert not any("flat" in e or "empty" in e for e in g.edges)
    assert "flat" in g.to_graph().nodes


def test_bad_input() -> None:
    x, names = _diamond(n=10)
    with pytest.raises(ValueError, match="at least 20 rows"):
        learn_structure(x, names)
    with pytest.raises(ValueError, match="expected"):
        learn_structure(x, names[:2])


def test_cli_graph_learn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, names = _diamond(n=800)
    train = tmp_path / "normal.csv"
    train.write_text(",".join(names) + "\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in x))
    out = tmp_path / "learned.json"
    argv = ["graph", "learn", "--train", str(train), "--output", str(out), "--bootstrap", "5"]
    assert main([*argv, "--target", "web"]) == 0
    assert "4 metrics, 3 edges learned from 800 rows" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["name"] == "learned"
    assert main(["check-graph", str(out)]) == 0
    assert main([*argv, "--target", "nope"]) == 2
    assert "--target 'nope': not a column" in capsys.readouterr().err
    assert main([*argv, "--alpha", "2"]) == 2

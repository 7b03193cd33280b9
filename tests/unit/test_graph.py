"""Causal graph loading and validation."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import networkx as nx
import pytest

from stream_rca.core.graph import CausalGraph
from stream_rca.errors import CyclicGraphError, GraphError, UnknownNodeError

EDGES = [("db", "api"), ("cache", "api"), ("api", "web")]


def test_loads_json_yaml_edge_list_and_networkx(tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text(json.dumps({"edges": EDGES}))
    (tmp_path / "g.yaml").write_text("edges:\n" + "".join(f"  - [{a}, {b}]\n" for a, b in EDGES))
    (tmp_path / "g.txt").write_text("# callee -> caller\ndb -> api\ncache,api\n\napi -> web\n")
    dag = nx.DiGraph(EDGES)
    graphs = [
        CausalGraph.from_file(tmp_path / "g.json"),
        CausalGraph.from_file(tmp_path / "g.yaml"),
        CausalGraph.from_file(tmp_path / "g.txt"),
        CausalGraph.from_networkx(dag, name="g"),
    ]
    for g in graphs:
        assert set(g.edges) == set(EDGES)
        assert g.name == "g"
        assert g.parents("api") == ("db", "cache")
        assert g.sinks == ("web",)
        assert g.roots == ("db", "cache")


def test_topological_order_and_indices() -> None:
    g = CausalGraph([("b", "c"), ("a", "b")])
    assert g.nodes == ("a", "b", "c")
    assert [g.index[n] for n in g.nodes] == [0, 1, 2]
    assert g.ancestors("c") == ("a", "b")
    assert g.descendants("a") == ("b", "c")


def test_cycle_is_named() -> None:
    with pytest.raises(
        CyclicGraphError, match=r"a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c"
    ):
        CausalGraph([("a", "b"), ("b", "c"), ("c", "a")])
    assert issubclass(CyclicGraphError, ValueError)


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ([("a", "a")], "self-loop on node 'a'"),
        ([("a", "b"), ("a", "b")], "duplicate edge 'a' -> 'b'"),
        ([("a", "")], "non-empty strings"),
        ([("a", 3)], "non-empty strings"),
        ([], "no nodes"),
    ],
)
def test_bad_graphs(edges: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(GraphError, match=message):
        CausalGraph(edges)


def test_unknown_node() -> None:
    g = CausalGraph(EDGES)
    with pytest.raises(UnknownNodeError, match="unknown node 'nope'"):
        g.parents("nope")
    with pytest.raises(KeyError):
        g.check("nope")


def test_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GraphError, match="not valid JSON"):
        CausalGraph.from_file(bad)
    (tmp_path / "bad.txt").write_text("a -> b -> c\n")
    with pytest.raises(GraphError, match=r"bad.txt:1"):
        CausalGraph.from_file(tmp_path / "bad.txt")
    with pytest.raises(GraphError, match="cannot read"):
        CausalGraph.from_file(tmp_path / "missing.json")
    (tmp_path / "noedges.json").write_text('{"nodes": []}')
    with pytest.raises(GraphError, match='"edges"'):
        CausalGraph.from_file(tmp_path / "noedges.json")


def test_pickle_round_trip_keeps_order() -> None:
    g = CausalGraph([("z", "y"), ("x", "y"), ("y", "w")], ["lonely"], name="t")
    h = pickle.loads(pickle.dumps(g))
    assert h.nodes == g.nodes
    assert h.edges == g.edges
    assert h.name == "t"
    assert h.to_dict() == g.to_dict()


def test_summary(shared_data: Path) -> None:
    g = CausalGraph.from_file(shared_data / "dowhy-microservice" / "graph.json")
    s = g.summary()
    assert (s["nodes"], s["edges"], s["sinks"], s["max_ancestors"]) == (11, 13, ["Website"], 10)

"""Wide CSV and PetShop readers, on small files written here and on the reference data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from stream_rca.core.types import Snapshot
from stream_rca.errors import ConfigError, GraphError
from stream_rca.io import (
    MetricTable,
    PetshopTarget,
    detect_format,
    is_petshop_csv,
    iter_petshop_snapshots,
    iter_wide_csv,
    read_petshop_graph,
    read_petshop_metrics,
    read_petshop_target,
    read_snapshots,
    read_wide_csv,
)

T0 = 1_700_000_000.0


def write(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- wide CSV -----------------------------------------------------------------------------


def test_wide_with_unix_timestamps(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,db,api\n1700000000,0.1,0.4\n1700000300.5,,0.5\n")
    assert list(iter_wide_csv(path, graph="shop")) == [
        Snapshot(ts=T0, values={"db": 0.1, "api": 0.4}, graph="shop"),
        Snapshot(ts=T0 + 300.5, values={"api": 0.5}, graph="shop"),
    ]
    nodes, ts, values = read_wide_csv(path)
    assert nodes == ("db", "api")
    np.testing.assert_array_equal(ts, [T0, T0 + 300.5])
    np.testing.assert_array_equal(values, [[0.1, 0.4], [np.nan, 0.5]])


@pytest.mark.parametrize("name", ["ts", "time", "unix_timestamp", "Timestamp", " TS "])
def test_wide_timestamp_column_names_and_rfc3339(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f"db,{name}\n1,2023-11-14T22:13:20Z\n2,2023-11-14T23:18:20+01:00\n")
    out = list(iter_wide_csv(path))
    assert [x.ts for x in out] == [T0, T0 + 300]
    assert [x.values for x in out] == [{"db": 1.0}, {"db": 2.0}]


def test_wide_without_timestamps_uses_row_index(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b\n1,2\n\n3,nan\n , 4\n")  # a blank line is skipped
    assert [(x.ts, x.values, x.end) for x in iter_wide_csv(path)] == [
        (0.0, {"a": 1.0, "b": 2.0}, None),
        (1.0, {"a": 3.0}, None),
        (2.0, {"b": 4.0}, None),
    ]


def test_wide_selects_and_orders_by_graph_nodes(tmp_path: Path) -> None:
    path = write(tmp_path, "b,a\n1,2\n")
    table = read_wide_csv(path, nodes=["a", "c", "b"])
    assert table.nodes == ("a", "c", "b")
    np.testing.assert_array_equal(table.values, [[2.0, np.nan, 1.0]])
    assert list(iter_wide_csv(path, nodes=["a", "c", "b"])) == [
        Snapshot(ts=0.0, values={"a": 2.0, "b": 1.0})
    ]


def test_wide_unknown_columns_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "a,x,y\n1,2,3\n")
    with pytest.raises(GraphError, match=r"'x', 'y' are not nodes"):
        read_wide_csv(path, nodes=["a", "b"])
    with pytest.raises(GraphError, match="'x', 'y'"):
        iter_wide_csv(path, nodes=["a", "b"])  # raises before the first row is asked for
    assert read_wide_csv(path, nodes=["a", "b"], ignore_extra=True).nodes == ("a", "b")
    with pytest.raises(GraphError, match="no column is a node"):
        read_wide_csv(path, nodes=["p", "q"], ignore_extra=True)


def test_wide_node_named_like_a_timestamp_column(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a\n5,6\n")
    assert list(iter_wide_csv(path, nodes=["time", "a"])) == [
        Snapshot(ts=0.0, values={"time": 5.0, "a": 6.0})
    ]


def test_wide_infinity_is_passed_on(tmp_path: Path) -> None:
    path = write(tmp_path, "a\ninf\n")
    assert next(iter_wide_csv(path)).values == {"a": math.inf}


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("", ConfigError, "empty"),
        ("a,a\n1,2\n", ConfigError, "repeated columns 'a'"),
        ("ts,time,a\n1,2,3\n", ConfigError, "several timestamp columns"),
        (",a\n0,1\n", ConfigError, "column 1 has no name"),
        ("a,b\n1,2\n3\n", ConfigError, "line 3: 1 cells, the header has 2"),
        ("a,b\n1,x\n", ConfigError, "line 2: 'x' is not a number"),
        ("ts,a\nnoon,1\n", ConfigError, "line 2: bad timestamp"),
        ("ts,a\n,1\n", ConfigError, "line 2: bad timestamp"),
        ("ts,a\n2023-11-14T22:13:20,1\n", ConfigError, "UTC offset is required"),
    ],
)
def test_wide_errors(tmp_path: Path, text: str, error: type[Exception], match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(error, match=match):
        read_wide_csv(path)
    with pytest.raises(error, match=match):
        list(iter_wide_csv(path))


def test_wide_empty_body(tmp_path: Path) -> None:
    table = read_wide_csv(write(tmp_path, "a,b\n"))
    assert table.values.shape == (0, 2)
    assert table.timestamps.shape == (0,)


def test_metric_table_snapshots() -> None:
    table = MetricTable(("a", "b"), np.array([T0]), np.array([[np.nan, 2.0]]))
    assert list(table.snapshots("g")) == [Snapshot(ts=T0, values={"b": 2.0}, graph="g")]


def test_dowhy_microservice_normal(shared_data: Path) -> None:
    folder = shared_data / "dowhy-microservice"
    graph = json.loads((folder / "graph.json").read_text())
    nodes = sorted({n for edge in graph["edges"] for n in edge})
    table = read_wide_csv(folder / "normal.csv", nodes=nodes)
    assert table.values.shape == (10_000, 11)
    assert not np.isnan(table.values).any()
    np.testing.assert_array_equal(table.timestamps, np.arange(10_000.0))
    first = next(read_snapshots(folder / "anomaly.csv", nodes=nodes, graph="shop"))
    assert set(first.values) == set(nodes)
    assert detect_format(folder / "normal.csv") == "wide"


def test_dowhy_supply_chain_ignores_extra_columns(shared_data: Path) -> None:
    path = shared_data / "dowhy-supply-chain" / "week_over_week.csv"
    nodes = ["demand", "constraint", "submitted", "confirmed", "received"]
    with pytest.raises(GraphError, match="'asin', 'week'"):
        read_wide_csv(path, nodes=nodes)
    table = read_wide_csv(path, nodes=nodes, ignore_extra=True)
    assert table.values.shape == (2000, 5)
    np.testing.assert_array_equal(table.values[0], [5.0, 2.0, 5.0, 5.0, 5.0])


# -- PetShop ------------------------------------------------------------------------------

PETSHOP = (
    "microservice,A,A,B,C\n"
    "metric,latency,requests,latency,latency\n"
    "statistic,Average,Sum,Average,p50\n"
    "unix_timestamp,,,,\n"
    "1700000000.0,0.5,10,,0.1\n"
    "1700000300.0,0.6,11,0.2,0.3\n"
)


def test_petshop_small_file(tmp_path: Path) -> None:
    path = write(tmp_path, PETSHOP)
    assert is_petshop_csv(path)
    nodes, ts, values = read_petshop_metrics(path)
    assert nodes == ("A", "B")
    np.testing.assert_array_equal(ts, [T0, T0 + 300])
    np.testing.assert_array_equal(values, [[0.5, np.nan], [0.6, 0.2]])
    table = read_petshop_metrics(path, "requests", "Sum")
    assert table.nodes == ("A",)
    np.testing.assert_array_equal(table.values, [[10.0], [11.0]])
    assert list(iter_petshop_snapshots(path, graph="pet")) == [
        Snapshot(ts=T0, values={"A": 0.5}, graph="pet"),
        Snapshot(ts=T0 + 300, values={"A": 0.6, "B": 0.2}, graph="pet"),
    ]
    assert list(read_snapshots(path, graph="pet")) == list(
        iter_petshop_snapshots(path, graph="pet")
    )
    assert [x.values for x in read_snapshots(path, metric="latency", statistic="p50")] == [
        {"C": 0.1},
        {"C": 0.3},
    ]


AVAILABILITY = (
    "microservice,A,A,B,B,C\n"
    "metric,availability,requests,availability,requests,latency\n"
    "statistic,Average,Sum,Average,Sum,Average\n"
    "unix_timestamp,,,,,\n"
    "1700000000.0,97.5,200,,0,0.1\n"
    "1700000300.0,100.0,150,0.0,3,0.2\n"
    "1700000600.0,,40,50.0,,0.3\n"
)


def test_petshop_availability_as_failed_requests(tmp_path: Path) -> None:
    path = write(tmp_path, AVAILABILITY)
    table = read_petshop_metrics(path, "availability", "Average")
    assert table.nodes == ("A", "B")
    # 2.5 % of 200; B served nothing (no failure); 0 % of 3; missing availability or count
    np.testing.assert_array_equal(table.values, [[5.0, 0.0], [0.0, 3.0], [np.nan, np.nan]])
    as_written = read_petshop_metrics(path, "availability", "Average", availability="percent")
    np.testing.assert_array_equal(as_written.values, [[97.5, np.nan], [100.0, 0.0], [np.nan, 50.0]])
    snaps = list(read_snapshots(path, metric="availability", availability="percent"))
    assert snaps[0].values == {"A": 97.5}
    assert read_petshop_metrics(path).nodes == ("C",)  # other metrics are read as before
    lacking = write(tmp_path, AVAILABILITY.replace("requests,latency", "latency,latency"), "x.csv")
    with pytest.raises(ConfigError, match=r"'B' has no requests/Sum.*--availability percent"):
        read_petshop_metrics(lacking, "availability", "Average")
    assert read_petshop_metrics(lacking, "availability", "Average", availability="percent")
    with pytest.raises(ConfigError, match="choose one of failures, percent"):
        read_petshop_metrics(path, "availability", "Average", availability="ratio")


def test_petshop_selects_by_graph_nodes(tmp_path: Path) -> None:
    path = write(tmp_path, PETSHOP)
    table = read_petshop_metrics(path, nodes=["B", "Z", "A"])
    assert table.nodes == ("B", "Z", "A")
    np.testing.assert_array_equal(table.values, [[np.nan, np.nan, 0.5], [0.2, np.nan, 0.6]])
    with pytest.raises(GraphError, match="'B' are not nodes"):
        read_petshop_metrics(path, nodes=["A"])
    assert read_petshop_metrics(path, nodes=["A"], ignore_extra=True).nodes == ("A",)


def test_petshop_errors(tmp_path: Path) -> None:
    path = write(tmp_path, PETSHOP)
    with pytest.raises(ConfigError, match="'latency/Average', 'latency/p50', 'requests/Sum'"):
        read_petshop_metrics(path, "latency", "p99")
    not_petshop = write(tmp_path, "a,b\n1,2\n", "wide.csv")
    assert not is_petshop_csv(not_petshop)
    assert not is_petshop_csv(write(tmp_path, "", "empty.csv"))
    with pytest.raises(ConfigError, match="not a PetShop metrics file"):
        read_petshop_metrics(not_petshop)
    bad_row = write(tmp_path, PETSHOP + "1700000600.0,1\n", "bad.csv")
    with pytest.raises(ConfigError, match="line 7: 2 cells"):
        read_petshop_metrics(bad_row)
    twice = PETSHOP.replace("B,C", "A,C").replace("Sum,Average", "Sum,Average")
    with pytest.raises(ConfigError, match="repeated columns 'A'"):
        read_petshop_metrics(write(tmp_path, twice, "twice.csv"))


def test_petshop_graph_is_reversed(tmp_path: Path) -> None:
    path = write(tmp_path, ",web,api,db\nweb,0,1,0\napi,0.0,0.0,1.0\ndb,0,0,0\n", "graph.csv")
    assert read_petshop_graph(path) == [("api", "web"), ("db", "api")]
    bad = write(tmp_path, ",web,api\nweb,0,2\napi,0,0\n", "bad.csv")
    with pytest.raises(ConfigError, match="'2' is not 0 or 1"):
        read_petshop_graph(bad)
    mismatch = write(tmp_path, ",web,api\nweb,0,1\ndb,0,0\n", "mm.csv")
    with pytest.raises(ConfigError, match="only in rows: 'db'; only in columns: 'api'"):
        read_petshop_graph(mismatch)


def test_petshop_target(tmp_path: Path) -> None:
    doc = {
        "target": {"node": "PetSite", "metric": "latency", "agg": "Average", "timestamp": 5},
        "root_cause": {"node": "PetSearch", "metric": None},
    }
    path = tmp_path / "target.json"
    path.write_text(json.dumps(doc))
    assert read_petshop_target(path) == PetshopTarget(
        "PetSite", "latency", "Average", 5.0, "PetSearch", None
    )
    del doc["root_cause"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="root_cause"):
        read_petshop_target(path)
    path.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_petshop_target(path)


@pytest.mark.parametrize("scenario", ["low_traffic", "high_traffic"])
def test_petshop_reference_data(shared_data: Path, scenario: str) -> None:
    folder = shared_data / "petshop" / scenario
    edges = read_petshop_graph(folder / "graph.csv")
    graph_nodes = sorted({n for edge in edges for n in edge})
    assert len(edges) == {"low_traffic": 44, "high_traffic": 47}[scenario]
    assert 40 <= len(graph_nodes) <= 46
    # reversed call graph: the callee's latency feeds the caller's; the front end is a sink
    assert ("PetSearch_AWS::ECS::Fargate", "PetSite") in edges
    assert all(cause != "PetSite" for cause, _ in edges)
    assert nx.is_directed_acyclic_graph(nx.DiGraph(edges))

    normal = folder / "noissue" / "metrics.csv"
    assert is_petshop_csv(normal)
    assert detect_format(normal) == "petshop"
    nodes, ts, values = read_petshop_metrics(normal, nodes=graph_nodes)
    assert values.shape == (589, len(graph_nodes))
    assert np.all(np.diff(ts) == 300.0)
    present = [n for j, n in enumerate(nodes) if not np.isnan(values[:, j]).all()]
    assert "PetSite" in present
    assert "invalid_AWS::DynamoDB::Table" not in present  # in the graph, not in this file
    empty_share = np.isnan(values[:, [nodes.index(n) for n in present]]).mean()
    assert 0.0 < empty_share < 0.5
    own = read_petshop_metrics(normal)
    assert set(own.nodes) <= set(graph_nodes)

    issues = sorted((folder / "train").iterdir())
    assert len(issues) == 8
    for issue in issues:
        target = read_petshop_target(issue / "target.json")
        assert target.node == "PetSite"
        assert target.metric in {"latency", "availability"}
        assert target.root_cause in graph_nodes
        snaps = list(
            read_snapshots(
                issue / "metrics.csv",
                nodes=graph_nodes,
                graph=scenario,
                metric=target.metric,
                statistic=target.agg,
            )
        )
        assert len(snaps) == 5
        assert snaps[0].ts <= target.timestamp <= snaps[-1].ts
        assert all(set(x.values) <= set(graph_nodes) for x in snaps)
        assert "PetSite" in snaps[2].values

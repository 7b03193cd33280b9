"""Tests of the simulated microservice systems: shapes, repeatability, propagation, faults."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.errors import CyclicGraphError, GraphError, UnknownNodeError
from stream_rca.sim import (
    SHOP_EDGES,
    Fault,
    FaultSchedule,
    MicroserviceSystem,
    calibrate_magnitude,
    random_faults,
    random_service_dag,
)

CHAIN = [("db", "svc"), ("svc", "api"), ("cache", "api"), ("api", "web")]


def _descendants(sim: MicroserviceSystem, node: str) -> set[str]:
    return set(nx.descendants(sim.to_networkx(), node))


# ---------------------------------------------------------------- construction, shapes


def test_shop_matches_the_reference_graph(shared_data: Path) -> None:
    ref = json.loads((shared_data / "dowhy-microservice" / "graph.json").read_text())
    assert {tuple(e) for e in ref["edges"]} == set(SHOP_EDGES)


def test_shop_shapes_and_columns() -> None:
    sim = MicroserviceSystem.shop(seed=0)
    assert len(sim.nodes) == 11
    assert set(sim.edges) == set(SHOP_EDGES)
    assert sim.aggregates["Product Service"] == "max"
    assert all(a == "sum" for n, a in sim.aggregates.items() if n != "Product Service")
    order = {n: i for i, n in enumerate(sim.nodes)}
    assert all(order[a] < order[b] for a, b in sim.edges)  # topological
    x = sim.sample(50)
    assert x.shape == (50, 11)
    assert x.dtype == np.float64
    assert np.isfinite(x).all()
    assert (x >= 0).all()
    snap = sim.step()
    assert list(snap) == list(sim.nodes)
    assert all(isinstance(v, float) for v in snap.values())
    assert sim.step_index == 51


def test_edge_list_and_digraph_give_the_same_system() -> None:
    g = nx.DiGraph(CHAIN)
    a, b = MicroserviceSystem(CHAIN, seed=4), MicroserviceSystem(g, seed=4)
    assert a.nodes == b.nodes
    assert a.edges == b.edges
    np.testing.assert_array_equal(a.sample(20), b.sample(20))


def test_isolated_nodes_of_a_digraph_are_kept() -> None:
    g = nx.DiGraph(CHAIN)
    g.add_node("lonely")
    assert "lonely" in MicroserviceSystem(g).nodes


@pytest.mark.parametrize(
    ("edges", "error", "words"),
    [
        ([("a", "b"), ("b", "a")], CyclicGraphError, "cycle"),
        ([("a", "a")], GraphError, "self-loop"),
        ([("a", "b"), ("a", "b")], GraphError, "duplicate"),
        ([], GraphError, "no nodes"),
    ],
)
def test_bad_graphs_are_clear_errors(
    edges: list[tuple[str, str]], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        MicroserviceSystem(edges)


def test_bad_parameters_are_errors() -> None:
    with pytest.raises(UnknownNodeError):
        MicroserviceSystem(CHAIN, scales={"nope": 1.0})
    with pytest.raises(ValueError, match="aggregate"):
        MicroserviceSystem(CHAIN, aggregate={"api": "mean"})  # type: ignore[dict-item]
    with pytest.raises(GraphError, match="weights"):
        MicroserviceSystem(CHAIN, weights={("web", "db"): 2.0})
    with pytest.raises(UnknownNodeError):
        MicroserviceSystem(CHAIN, faults=[Fault("latency_shift", ("nope",), 0, 1)])


# ---------------------------------------------------------------- repeatability


def test_same_seed_same_samples_other_seed_other_samples() -> None:
    a, b, c = (MicroserviceSystem.shop(seed=s) for s in (7, 7, 8))
    xa, xb, xc = a.sample(100), b.sample(100), c.sample(100)
    np.testing.assert_array_equal(xa, xb)
    assert not np.allclose(xa, xc)
    assert a.scales == b.scales
    assert a.scales != c.scales


def test_batching_does_not_change_the_stream() -> None:
    whole = MicroserviceSystem.shop(seed=3).sample(10)
    sim = MicroserviceSystem.shop(seed=3)
    parts = [sim.sample(3), sim.sample(0), np.array([list(sim.step().values())]), sim.sample(6)]
    np.testing.assert_array_equal(np.vstack(parts), whole)


def test_reset_replays_from_any_step() -> None:
    sim = MicroserviceSystem.random(30, seed=2)
    sim.faults = [Fault("latency_shift", (sim.nodes[0],), start=4, duration=3, magnitude=5.0)]
    whole = sim.sample(12)
    sim.reset(5)
    assert sim.step_index == 5
    np.testing.assert_array_equal(sim.sample(7), whole[5:])
    sim.reset()
    np.testing.assert_array_equal(sim.sample(12), whole)


def test_pickle_round_trip_continues_the_stream() -> None:
    sim = MicroserviceSystem.shop(seed=5)
    sim.faults = random_faults(sim, "Website", 2, every=5, duration=3, rng=0)
    sim.sample(4)
    clone = pickle.loads(pickle.dumps(sim))
    assert clone.faults == sim.faults
    assert clone.step_index == 4
    np.testing.assert_array_equal(clone.sample(10), sim.sample(10))
    twin = sim.copy()
    np.testing.assert_array_equal(twin.sample(3), sim.sample(3))


def test_random_system_is_repeatable() -> None:
    a, b = MicroserviceSystem.random(200, seed=11), MicroserviceSystem.random(200, seed=11)
    assert a.edges == b.edges
    assert a.aggregates == b.aggregates
    np.testing.assert_array_equal(a.sample(5), b.sample(5))
    assert MicroserviceSystem.random(200, seed=12).edges != a.edges


# ---------------------------------------------------------------- propagation


def test_sum_propagation_with_one_noisy_node() -> None:
    scales = {"db": 0.0, "svc": 0.0, "cache": 0.3, "api": 0.0, "web": 0.0}
    weights = {("cache", "api"): 2.0, ("api", "web"): 0.5}
    sim = MicroserviceSystem(CHAIN, seed=1, scales=scales, weights=weights)
    x = sim.sample(200)
    col = {n: x[:, sim.index(n)] for n in sim.nodes}
    assert (col["db"] == 0).all()
    assert (col["cache"] > 0).all()
    np.testing.assert_allclose(col["api"], 2.0 * col["cache"])
    np.testing.assert_allclose(col["web"], 0.5 * 2.0 * col["cache"])


def test_max_versus_sum_aggregation() -> None:
    edges = [("a", "c"), ("b", "c")]
    intrinsic = np.array([[1.0, 3.0, 0.5], [4.0, 2.0, 0.0]])
    sum_sim = MicroserviceSystem(edges, aggregate="sum")
    max_sim = MicroserviceSystem(edges, aggregate={"c": "max"})
    assert sum_sim.nodes == max_sim.nodes == ("a", "b", "c")
    np.testing.assert_allclose(sum_sim.propagate(intrinsic)[:, 2], [4.5, 6.0])
    np.testing.assert_allclose(max_sim.propagate(intrinsic)[:, 2], [3.5, 4.0])
    # and on the sampled stream: the same seed gives the same intrinsic latencies
    xs, xm = sum_sim.sample(300), max_sim.sample(300)
    np.testing.assert_allclose(xs[:, :2], xm[:, :2])
    own = xs[:, 2] - xs[:, 0] - xs[:, 1]
    np.testing.assert_allclose(xm[:, 2], own + np.maximum(xm[:, 0], xm[:, 1]))


@settings(max_examples=25, deadline=None)
@given(n_nodes=st.integers(2, 60), seed=st.integers(0, 2**16))
def test_propagation_matches_a_node_by_node_loop(n_nodes: int, seed: int) -> None:
    sim = MicroserviceSystem.random(n_nodes, seed=seed, max_fraction=0.5)
    rng = np.random.default_rng(seed)
    intrinsic = sim.draw_intrinsic(7, rng)
    multiplier = rng.uniform(0.5, 2.0, size=intrinsic.shape)
    expected = np.zeros_like(intrinsic)
    g = sim.to_networkx()
    for j, node in enumerate(sim.nodes):
        terms = [sim.weights[(p, node)] * expected[:, sim.index(p)] for p in g.predecessors(node)]
        agg = np.zeros(7)
        if terms:
            agg = np.max(terms, axis=0) if sim.aggregates[node] == "max" else np.sum(terms, axis=0)
        expected[:, j] = (intrinsic[:, j] + agg) * multiplier[:, j]
    np.testing.assert_allclose(sim.propagate(intrinsic, multiplier), expected, rtol=1e-12)


def test_intrinsic_latency_means_are_the_scales() -> None:
    for family in ("lognormal", "halfnormal", "exponential"):
        sim = MicroserviceSystem([("a", "b")], intrinsic=family, scales={"a": 0.2, "b": 0.05})
        x = sim.draw_intrinsic(40_000, np.random.default_rng(0))
        np.testing.assert_allclose(x.mean(axis=0), [0.2, 0.05], rtol=0.03)
        assert (x >= 0).all()


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["latency_shift", "mechanism_change"])
def test_fault_raises_node_and_descendants_only(kind: str) -> None:
    sim = MicroserviceSystem.shop(seed=2)
    healthy = sim.copy()
    node = "Customer DB"
    magnitude = 5.0 if kind == "latency_shift" else 3.0
    sim.inject(Fault(kind, (node,), start=10, duration=20, magnitude=magnitude))  # type: ignore[arg-type]
    x, base = sim.sample(40), healthy.sample(40)
    affected = {node} | _descendants(sim, node)
    assert affected == {node, "Auth Service", "API", "Product Service", "www", "Website"}
    fault_rows = slice(10, 30)
    outside = np.r_[0:10, 30:40]
    np.testing.assert_array_equal(x[outside], base[outside])
    for j, n in enumerate(sim.nodes):
        if n in affected:
            assert (x[fault_rows, j] >= base[fault_rows, j]).all()
            assert x[fault_rows, j].mean() > base[fault_rows, j].mean()
        else:
            np.testing.assert_array_equal(x[fault_rows, j], base[fault_rows, j])
    assert (x[fault_rows, sim.index(node)] > base[fault_rows, sim.index(node)]).all()


def test_latency_shift_unit_is_the_node_scale() -> None:
    sim = MicroserviceSystem(CHAIN, seed=0, scales={"db": 0.1})
    healthy = sim.copy()
    sim.faults = [Fault("latency_shift", ("db",), start=0, duration=5, magnitude=3.0)]
    diff = sim.sample(5) - healthy.sample(5)
    np.testing.assert_allclose(diff[:, sim.index("db")], 0.3)
    np.testing.assert_allclose(diff[:, sim.index("web")], 0.3)  # sum, weight 1 all the way


def test_ground_truth_api() -> None:
    f1 = Fault("latency_shift", ("db",), start=5, duration=3, magnitude=2.0)
    f2 = Fault("mechanism_change", ("cache", "svc"), start=6, duration=10, magnitude=2.0)
    sim = MicroserviceSystem(CHAIN, faults=[f2, f1])
    assert sim.faults.faults == (f1, f2)
    assert sim.active_faults(4) == ()
    assert sim.active_faults(6) == (f1, f2)
    assert sim.root_causes(6) == {"db", "cache", "svc"}
    assert sim.root_causes(9) == {"cache", "svc"}
    assert sim.root_causes(16) == frozenset()
    assert sim.root_causes() == {"db", "cache", "svc"}
    np.testing.assert_array_equal(sim.faults.anomalous(3, 4), [False, False, True, True])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "outage"},
        {"nodes": ()},
        {"nodes": ("a", "a")},
        {"start": -1},
        {"duration": 0},
        {"magnitude": float("nan")},
        {"magnitude": -1.0},
        {"kind": "mechanism_change", "magnitude": 0.0},
    ],
)
def test_invalid_faults_are_rejected(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "kind": "latency_shift",
        "nodes": ("a",),
        "start": 0,
        "duration": 1,
        "magnitude": 1.0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        Fault(**args)  # type: ignore[arg-type]


def test_fault_is_frozen_and_hashable() -> None:
    f = Fault("latency_shift", ("a",), 0, 1)
    with pytest.raises(AttributeError):
        f.start = 3  # type: ignore[misc]
    assert len({f, Fault("latency_shift", ("a",), 0, 1)}) == 1
    assert FaultSchedule([f]) == FaultSchedule([f])


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_faults_are_ancestors_of_the_target_and_visible(seed: int) -> None:
    sim = MicroserviceSystem.random(300, seed=seed)
    g = sim.to_networkx()
    sinks = [n for n in sim.nodes if g.out_degree(n) == 0]
    target = max(sinks, key=lambda n: len(nx.ancestors(g, n)))
    schedule = random_faults(
        sim,
        target,
        6,
        every=40,
        duration=10,
        rng=np.random.default_rng(seed),
        kinds=("latency_shift", "mechanism_change"),
        strength=4.0,
    )
    ancestors = nx.ancestors(g, target)
    assert len(schedule) == 6
    assert [f.start for f in schedule] == [40, 80, 120, 160, 200, 240]
    assert all(set(f.nodes) <= ancestors for f in schedule)
    assert len({f.nodes for f in schedule}) == 6  # distinct while candidates last
    # visible: the mean shift of the target over a fault is about 4 fault-free std
    sim.faults = schedule
    healthy = sim.copy()
    healthy.faults = []
    x, base = sim.sample(280), healthy.sample(280)
    t = sim.index(target)
    std = base[:, t].std()
    for f in schedule:
        rows = slice(f.start, f.end)
        assert (x[rows, t] >= base[rows, t]).all()
        assert (x[rows, t] - base[rows, t]).mean() > 2.0 * std


def test_random_faults_on_the_shop() -> None:
    sim = MicroserviceSystem.shop(seed=0)
    schedule = random_faults(sim, "API", 12, every=10, duration=5, rng=3, nodes_per_fault=2)
    ancestors = nx.ancestors(sim.to_networkx(), "API")
    assert all(len(f.nodes) == 2 and set(f.nodes) <= ancestors for f in schedule)
    assert all(f.kind == "latency_shift" and f.magnitude > 0 for f in schedule)
    again = random_faults(sim, "API", 12, every=10, duration=5, rng=3, nodes_per_fault=2)
    assert again == schedule
    assert sim.step_index == 0  # the system's stream is not touched
    assert len(sim.faults) == 0


def test_random_faults_errors() -> None:
    sim = MicroserviceSystem.shop(seed=0)
    with pytest.raises(ValueError, match="ancestors"):
        random_faults(sim, "Order DB", 1, every=5, duration=2, rng=0)
    with pytest.raises(UnknownNodeError):
        random_faults(sim, "nope", 1, every=5, duration=2, rng=0)
    assert random_faults(sim, "Order DB", 1, every=5, duration=2, rng=0, include_target=True)[
        0
    ].nodes == ("Order DB",)


def test_calibration_hits_the_wanted_strength() -> None:
    sim = MicroserviceSystem.shop(seed=1)
    rng = np.random.default_rng(0)
    m = calibrate_magnitude(sim, "mechanism_change", ["Caching Service"], "Website", 5.0, rng)
    assert m > 1.0
    healthy = sim.copy()
    sim.faults = [Fault("mechanism_change", ("Caching Service",), 0, 2000, m)]
    x, base = sim.sample(2000), healthy.sample(2000)
    t = sim.index("Website")
    shift = (x[:, t] - base[:, t]).mean() / base[:, t].std()
    assert 4.0 < shift < 6.5


# ---------------------------------------------------------------- random DAGs


@settings(max_examples=40, deadline=None)
@given(
    n_nodes=st.integers(1, 400),
    seed=st.integers(0, 2**32 - 1),
    max_in=st.integers(1, 6),
    mean_in=st.floats(1.0, 3.0),
)
def test_random_dag_is_acyclic_sized_and_bounded(
    n_nodes: int, seed: int, max_in: int, mean_in: float
) -> None:
    nodes, edges = random_service_dag(
        n_nodes, np.random.default_rng(seed), mean_in_degree=mean_in, max_in_degree=max_in
    )
    assert len(nodes) == len(set(nodes)) == n_nodes
    g = nx.DiGraph(edges)
    g.add_nodes_from(nodes)
    assert g.number_of_nodes() == n_nodes
    assert nx.is_directed_acyclic_graph(g)
    assert max((d for _, d in g.in_degree()), default=0) <= max_in
    assert len(set(edges)) == len(edges)


def test_random_dag_shape_is_service_like() -> None:
    nodes, edges = random_service_dag(2000, np.random.default_rng(0))
    g = nx.DiGraph(edges)
    g.add_nodes_from(nodes)
    sinks = [n for n in g if g.out_degree(n) == 0]
    callers = [d for _, d in g.in_degree() if d > 0]
    assert 1 <= len(sinks) <= 30  # a few front-ends
    assert 1.5 <= float(np.mean(callers)) <= 3.0
    assert nodes[0] == "svc-0000"


def test_ten_thousand_nodes_sample_quickly() -> None:
    sim = MicroserviceSystem.random(10_000, seed=0)
    assert len(sim.nodes) == 10_000
    x = sim.sample(100)
    assert x.shape == (100, 10_000)
    assert np.isfinite(x).all()

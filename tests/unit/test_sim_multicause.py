"""Tests of the multi-cause fault simulator: shapes, seeding, ground truth, visible faults."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from stream_rca.sim import MULTICAUSE_NOISES, multicause_case


def test_shapes_and_window_layout() -> None:
    case = multicause_case(3, n_nodes=30, n_normal=400, n_faults=3, pre=7, duration=4, post=2)
    assert case.normal.shape == (400, 30)
    assert case.weights.shape == (30, 30)
    assert len(case.faults) == 3
    for fault in case.faults:
        assert fault.window.shape == (13, 30)
        assert fault.fault_row == 7
        assert fault.duration == 4
        assert len(fault.causes) == len(fault.kinds) == len(fault.magnitudes)
    assert np.isfinite(case.normal).all()


def test_graph_is_a_dag_matching_the_weights() -> None:
    case = multicause_case(1)
    assert nx.is_directed_acyclic_graph(case.graph)
    assert sorted(case.graph.nodes) == list(range(50))
    edges = {(int(i), int(j)) for i, j in zip(*np.nonzero(case.weights), strict=True)}
    assert edges == set(case.graph.edges)
    mean_in = case.graph.number_of_edges() / 50
    assert 1.0 <= mean_in <= 2.5
    assert case.graph.out_degree(case.target) == 0


def test_same_seed_same_case_other_seed_other_case() -> None:
    a, b, c = multicause_case(7), multicause_case(7), multicause_case(8)
    np.testing.assert_array_equal(a.normal, b.normal)
    np.testing.assert_array_equal(a.faults[0].window, b.faults[0].window)
    assert a.faults[0].causes == b.faults[0].causes
    assert a.target == b.target
    assert not np.array_equal(a.normal, c.normal)
    gen = multicause_case(np.random.default_rng(7))
    np.testing.assert_array_equal(gen.normal, a.normal)


@pytest.mark.parametrize("seed", range(8))
def test_causes_are_the_target_or_its_ancestors(seed: int) -> None:
    case = multicause_case(seed, n_faults=2, mechanism_share=0.5)
    allowed = nx.ancestors(case.graph, case.target) | {case.target}
    for fault in case.faults:
        assert 1 <= len(fault.causes) <= 49
        assert set(fault.causes) <= allowed
        assert len(set(fault.causes)) == len(fault.causes)


def test_cause_counts_follow_one_plus_poisson() -> None:
    counts = [len(multicause_case(s, n_nodes=20, n_normal=50).faults[0].causes) for s in range(60)]
    assert min(counts) >= 1
    assert 1.4 <= np.mean(counts) <= 2.6  # 1 + Poisson(1): mean 2, less where capped


@pytest.mark.parametrize("noise", MULTICAUSE_NOISES)
def test_the_target_moves_when_the_causes_fire(noise: str) -> None:
    for seed in range(5):
        case = multicause_case(seed, noise=noise, n_faults=2)  # type: ignore[arg-type]
        t = case.target
        mu, sd = case.normal[:, t].mean(), case.normal[:, t].std()
        for fault in case.faults:
            assert abs(fault.target_shift) >= 3.0 * (1 - 1e-9)
            rows = fault.window[fault.fault_row : fault.fault_row + fault.duration, t]
            # the mean over the fault rows moves in the expected direction, by most of the shift
            moved = (rows.mean() - mu) / sd
            assert np.sign(moved) == np.sign(fault.target_shift)
            assert abs(moved) >= 0.5 * abs(fault.target_shift)


def test_each_cause_is_shifted_by_its_magnitude_in_its_own_noise() -> None:
    case = multicause_case(2, n_faults=4)
    for fault in case.faults:
        f, d = fault.fault_row, fault.duration
        x = fault.window
        # own noise of every node, in its sd units: x - b - x W
        noise = (x - case.intercepts - x @ case.weights) / case.noise_sd
        expected = np.zeros(case.n_nodes)
        for c, m in zip(fault.causes, fault.magnitudes, strict=True):
            expected[c] = m
        np.testing.assert_allclose(noise[f : f + d].mean(axis=0), expected, atol=4.0)
        assert np.abs(noise[:f].mean(axis=0)).max() < 4.0


def test_missing_values_are_nan_at_about_the_share() -> None:
    case = multicause_case(0, n_nodes=20, n_normal=1000, missing=0.1)
    share = np.isnan(case.normal).mean()
    assert 0.08 <= share <= 0.12


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="n_nodes"):
        multicause_case(0, n_nodes=1)
    with pytest.raises(ValueError, match="unknown noise"):
        multicause_case(0, noise="cauchy")  # type: ignore[arg-type]

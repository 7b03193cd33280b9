"""The rank rules of stream_rca.core.ranking, on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.ranking import ANOMALOUS, RANK_RULES, explained, rank_causes
from stream_rca.errors import ConfigError

E = np.zeros(0, np.intp)


def _order(rule: str, names, contributions, scores, parents, evidence=None, stderr=None):
    causes, text = rank_causes(
        rule,
        names,
        np.asarray(contributions, dtype=np.float64),
        np.zeros(len(names)) if stderr is None else np.asarray(stderr, dtype=np.float64),
        dict(zip(names, scores, strict=True)),
        [np.asarray(p, dtype=np.intp) for p in parents],
        evidence,
    )
    assert text == RANK_RULES[rule]
    return [c.node for c in causes]


def test_a_misfitted_caller_ranks_below_the_slow_service_it_calls() -> None:
    # slow -> caller -> target: the caller's mechanism under-predicts the slow service's effect,
    # so its own score and its Shapley credit are the largest; the slow service explains both.
    names = ["slow", "caller", "target"]
    parents = [E, [0], [1]]
    contributions = [0.3, 6.0, 1.0]
    scores = [8.0, 90.0, 7.0]
    assert _order("anomalous-first", names, contributions, scores, parents)[0] == "caller"
    assert _order("explains-most", names, contributions, scores, parents)[0] == "slow"


def test_the_sibling_that_explains_more_of_the_graph_wins() -> None:
    # a -> b -> t and c -> t; a's fault shows in b too, c's only in itself.
    names = ["a", "b", "c", "t"]
    parents = [E, [0], E, [1, 2]]
    order = _order("explains-most", names, [1.0, 1.0, 3.0, 0.5], [9.0, 12.0, 14.0, 6.0], parents)
    assert order[:2] == ["a", "c"]  # a explains 4 + 7, c 9; b explains less than a


def test_an_anomaly_that_does_not_reach_the_target_comes_after_those_that_do() -> None:
    # chronic: z1 -> z2 -> quiet -> t, with quiet calm and no credit; x -> t is the cause.
    names = ["z1", "z2", "quiet", "x", "t"]
    parents = [E, [0], [1], E, [2, 3]]
    contributions = [0.01, 0.02, 0.0, 2.0, 0.5]
    stderr = [0.05, 0.05, 0.05, 0.1, 0.05]
    scores = [49.0, 49.0, 1.0, 9.0, 6.0]
    order = _order("explains-most", names, contributions, scores, parents, stderr=stderr)
    assert order[0] == "x"
    assert order.index("z1") < order.index("quiet")  # still listed before the calm


def test_a_deep_cause_reached_through_fitted_mechanisms_is_not_demoted() -> None:
    # c -> m -> t: m is calm (its mechanism fits) but c's contribution is clear.
    names = ["c", "m", "u", "t"]
    parents = [E, [0], E, [1, 2]]
    contributions = [4.0, 0.1, 0.0, 0.5]
    stderr = [0.2, 0.1, 0.01, 0.1]
    scores = [15.0, 1.0, 6.0, 2.0]  # u: anomalous by chance, no credit, no anomalous path
    assert _order("explains-most", names, contributions, scores, parents, stderr=stderr)[0] == "c"


def test_whole_graph_evidence_counts_descendants_off_the_target_path() -> None:
    # s -> client (not a player) and s -> t; e -> t. Scores: s 9, client 14, e 11.
    scores = np.array([9.0, 14.0, 11.0, 7.0])
    parents = [E, np.array([0]), E, np.array([0, 2])]
    found, reaches = explained(scores, parents, target=3)
    assert found[0] == pytest.approx((9 - ANOMALOUS) + (14 - ANOMALOUS))
    assert found[2] == pytest.approx(11 - ANOMALOUS)
    assert found[3] == pytest.approx(7 - ANOMALOUS)  # the target counts for itself only
    assert reaches.tolist() == [True, False, True, True]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 9), st.integers(0, 2**31 - 1))
def test_every_rule_is_a_permutation_with_both_figures_kept(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = [f"n{i}" for i in range(n)]
    parents = [np.flatnonzero(rng.random(j) < 0.4).astype(np.intp) for j in range(n)]
    contributions = rng.normal(0, 2, n)
    scores = rng.exponential(4.0, n)
    for rule in RANK_RULES:
        causes, _ = rank_causes(
            rule, names, contributions, np.full(n, 0.1), dict(zip(names, scores, strict=True)),
            parents,
        )  # fmt: skip
        assert sorted(c.node for c in causes) == names
        for c in causes:
            i = names.index(c.node)
            assert c.contribution == contributions[i]
            assert c.score == scores[i]


def test_an_unknown_rule_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown rank rule"):
        rank_causes("best", ["a"], np.zeros(1), np.zeros(1), {})


def test_anomalous_first_resolves_only_unresolved_orders_by_evidence() -> None:
    # slow -> caller -> t; the caller's credit is larger but within three standard errors.
    names = ["slow", "caller", "t"]
    parents = [E, [0], [1]]
    scores = [8.0, 90.0, 6.0]
    close = _order("anomalous-first", names, [1.0, 1.5, 0.2], scores, parents, stderr=[0.3] * 3)
    assert close[:2] == ["slow", "caller"]  # unresolved: the slow service explains more
    clear = _order("anomalous-first", names, [1.0, 5.0, 0.2], scores, parents, stderr=[0.3] * 3)
    assert clear[:2] == ["caller", "slow"]  # resolved by the contributions: kept


def test_a_cause_keeps_the_reach_of_the_anomalous_caller_it_drives() -> None:
    # root -> caller -> quiet -> t: the root's credit is noisy (no clear contribution), the
    # caller's is clear; both unresolved, the root explains more and reaches through the caller.
    names = ["root", "caller", "quiet", "t"]
    parents = [E, [0], [1], [2]]
    contributions = [14.0, 6.9, 0.0, 0.1]
    stderr = [7.9, 1.5, 0.01, 0.05]
    scores = [740.0, 258.0, 1.0, 2.0]
    assert _order("anomalous-first", names, contributions, scores, parents, stderr=stderr)[0] == (
        "root"
    )


def test_a_run_of_small_gaps_does_not_tie_a_clear_leader_to_a_player_far_behind() -> None:
    # ancestor -> cause -> t, and a noisy sibling caller -> t. Each neighbour in the
    # contribution order is within three standard errors of the next (4.3 ~ 3.9 ~ 1.7), but
    # the cause's 4.3 is clear of the ancestor's 1.7: the ancestor, which explains the cause's
    # evidence too, must not take the first place through the chain.
    names = ["ancestor", "cause", "caller", "t"]
    parents = [E, [0], E, [1, 2]]
    contributions = [1.7, 4.3, 3.9, 0.2]
    stderr = [0.32, 0.21, 0.94, 0.05]
    scores = [12.7, 6.6, 7.0, 5.8]
    order = _order("anomalous-first", names, contributions, scores, parents, stderr=stderr)
    assert order.index("cause") < order.index("ancestor")
    # the same players with the ancestor close to the cause: unresolved, evidence decides
    near = _order("anomalous-first", names, [4.0, 4.3, 3.9, 0.2], scores, parents, stderr=stderr)
    assert near[0] == "ancestor"


def test_players_joined_by_an_unidentified_dependence_are_ordered_by_evidence() -> None:
    # The PetShop availability case: t calls never-failing (true cause, now failing: t's
    # coefficient on it is 0, so it gets no credit) and once-failed (its one training failure
    # gave t a steep coefficient: large credit to it, large negative credit to t itself).
    names = ["never", "once", "client", "t"]
    parents = [E, E, [0], [0, 1]]
    contributions = [0.05, 36.7, 0.0, -30.8]
    stderr = [0.02, 5.6, 0.01, 4.6]
    scores = [46.9, 44.3, 20.0, 5.8]

    def order(unresolved):
        causes, _ = rank_causes(
            "anomalous-first", names, np.array(contributions), np.array(stderr),
            dict(zip(names, scores, strict=True)), [np.asarray(p, np.intp) for p in parents],
            None, None if unresolved is None else np.array(unresolved),
        )  # fmt: skip
        return [c.node for c in causes], causes

    first, _ = order(None)
    assert first[0] == "once"  # trusted, the fitted split puts the once-failed callee first
    joined, causes = order([True, True, False, True])
    # one group at the size of its summed credit; within it by the anomaly each explains
    # ("never" also explains its other caller, "client")
    assert joined[:3] == ["never", "once", "t"]
    assert [c.contribution for c in causes[:3]] == [0.05, 36.7, -30.8]  # both figures kept
    assert [c.tied for c in causes[:2]] == [True, True]  # their order is not Shapley's
    # one unresolved player alone is ordered as before
    assert order([False, True, False, False])[0] == first


def test_an_anomalous_target_comes_after_the_anomalous_upstream_players_that_reach_it() -> None:
    # A planted PetShop fault: the callee's latency rose, the target's rose more than its
    # coefficient learnt from normal variation says, so both residuals are anomalous and the
    # target's Shapley credit is the larger.
    names = ["callee", "calm", "t"]
    parents = [E, E, [0, 1]]
    contributions = [5.3, 0.1, 7.6]
    scores = [16.3, 1.0, 16.3]
    assert _order("anomalous-first", names, contributions, scores, parents) == [
        "callee",
        "t",
        "calm",
    ]
    # through an anomalous chain too (callee -> caller -> t)
    chain = _order(
        "anomalous-first", ["callee", "caller", "t"], [2.0, 3.0, 7.6], [9.0, 6.0, 16.3],
        [E, [0], [1]],
    )  # fmt: skip
    assert chain[-1] == "t"
    # no anomalous player upstream: the target's own residual is the fault, first by its credit
    alone = _order("anomalous-first", names, [0.2, 0.1, 7.6], [1.0, 1.0, 16.3], parents)
    assert alone[0] == "t"
    # an anomalous player that does not reach the target (not a parent, no anomalous chain to
    # one, its credit within its error) does not push the target back
    apart = _order(
        "anomalous-first", ["root", "mid", "t"], [0.3, 0.0, 7.6], [9.0, 1.0, 16.3],
        [E, [0], [1]], stderr=[0.2, 0.2, 0.2],
    )  # fmt: skip
    assert apart[0] == "t"


def test_an_anomalous_target_also_yields_to_a_player_the_fitted_mechanisms_carry() -> None:
    # the cause reaches the target through a calm caller (whose mechanism passed the fault on
    # as learnt); its positive credit, beyond three standard errors, is that reach
    names = ["cause", "caller", "t"]
    parents = [E, [0], [1]]
    scores = [12.1, 1.0, 33.8]
    carried = _order("anomalous-first", names, [4.1, 0.1, 9.2], scores, parents, stderr=[0.4] * 3)
    assert carried[0] == "cause"
    # the same credit within its error: not carried, the target keeps its place
    noisy = _order("anomalous-first", names, [0.5, 0.1, 9.2], scores, parents, stderr=[0.4] * 3)
    assert noisy[0] == "t"


def test_an_anomalous_target_yields_to_a_player_whose_fault_moved_the_nodes_between() -> None:
    # cause -> caller -> t: the caller passed the fault on as learnt (calm, credit near 0 as
    # its coefficient is attenuated downstream), but its value moved far from its usual ones
    names = ["cause", "caller", "t"]
    parents = [E, [0], [1]]
    scores = [6.1, 1.0, 49.8]
    contributions = [0.0, 0.1, 21.5]

    def order(moved):
        causes, _ = rank_causes(
            "anomalous-first", names, np.array(contributions), np.full(3, 0.4),
            dict(zip(names, scores, strict=True)), [np.asarray(p, np.intp) for p in parents],
            None, None, np.array(moved),
        )  # fmt: skip
        return [c.node for c in causes]

    assert order([True, True, True])[0] == "cause"
    assert order([True, False, True])[0] == "t"  # the chain breaks at a caller that did not move


def test_moved_reads_each_nodes_own_usual_values() -> None:
    from stream_rca.core.engine import Engine
    from stream_rca.core.graph import CausalGraph

    rng = np.random.default_rng(0)
    engine = Engine(CausalGraph([("a", "b"), ("b", "c")], name="g"), targets=["c"])
    a = rng.normal(10.0, 1.0, 600)
    b = 2.0 * a + rng.normal(0.0, 1.0, 600)
    c = b + rng.normal(0.0, 1.0, 600)
    engine.process_block(np.arange(600.0), np.column_stack([a, b, c]))
    models = engine._models
    nodes = np.arange(3)
    usual = np.array([10.0, 20.0, 20.0])
    assert not models.moved(nodes, usual, 5.0).any()
    # a 20 sd out, b following it as learnt (calm by its residual, moved by its value), c too
    assert models.moved(nodes, np.array([30.0, 60.0, 60.0]), 5.0).tolist() == [True, True, True]
    assert models.moved(nodes, np.array([30.0, 20.0, 20.0]), 5.0).tolist() == [True, False, False]
    assert not models.moved(nodes, np.array([np.nan, 20.0, 20.0]), 5.0)[0]
    # computed once per learning step: a step forgets them
    assert models._usual is not None
    engine.process_block(600.0 + np.arange(32.0), np.column_stack([a, b, c])[:32])
    assert engine._models._usual is None

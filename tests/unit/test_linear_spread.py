"""The prediction error of the linear mechanisms (``LinearBank.spread``) and its use in scores."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.linear import SPREAD_FROM, LinearBank
from stream_rca.core.types import Snapshot

NONE = np.zeros(0, dtype=np.intp)


def _chain(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [2.0, 0.5, 1.0]
    x[:, 2] += 1.5 * x[:, 0] - 2.0 * x[:, 1] + 3.0
    return x


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(20, 400),
    a=st.floats(-300.0, 300.0),
    b=st.floats(-300.0, 300.0),
)
def test_spread_is_the_least_squares_prediction_error(
    seed: int, n: int, a: float, b: float
) -> None:
    """Without forgetting: ``sqrt(1 + x0' (X'X)^-1 x0)`` of ordinary least squares with an
    intercept (the leverage of a new point), wherever it exceeds the floor."""
    x = _chain(n, seed)
    bank = LinearBank([NONE, NONE, np.array([0, 1])], forgetting=0.0, ridge=0.0)
    bank.learn_many(x)
    design = np.column_stack([np.ones(n), x[:, :2]])
    h = float(np.array([1.0, a, b]) @ np.linalg.inv(design.T @ design) @ np.array([1.0, a, b]))
    got = bank.spread(np.array([a, b, 0.0]))
    want = np.sqrt(1.0 + h) if h > SPREAD_FROM else 1.0
    assert got[2] == pytest.approx(want, rel=1e-7)
    assert got[0] == got[1] == 1.0  # roots: their noise is their value


def test_forgetting_counts_the_effective_sample() -> None:
    """With forgetting, ``h`` at the parents' means is ``1 / n_eff``, ``n_eff = (sum w)^2 /
    sum w^2`` of the weights ``(1 - forgetting) ** age`` of the learned rows."""
    lam, n = 1e-2, 700
    bank = LinearBank([NONE, np.array([0])], forgetting=lam)
    x = _chain(n, 3)[:, [0, 2]]
    bank.learn_many(x)
    ((grp, _, first, gain),) = bank._spread_terms()
    w = (1.0 - lam) ** np.arange(n)
    n_eff = w.sum() ** 2 / (w * w).sum()
    assert float(first[0]) == pytest.approx(1.0 / n_eff, rel=1e-9)
    assert float(gain[0]) == pytest.approx(w.sum() / n_eff, rel=1e-9)
    assert float(grp.w[0]) == pytest.approx(w.sum(), rel=1e-9)


def test_normal_parent_values_leave_the_residual_as_it_is() -> None:
    """In the steady state (``n_eff`` about 2,000), ``h`` passes the floor only for parents
    about 6 sd out (Mahalanobis): normal snapshots are scored as they are."""
    x = _chain(3000, 1)
    bank = LinearBank([NONE, NONE, np.array([0, 1])], forgetting=1e-3)
    bank.learn_many(x)
    np.testing.assert_array_equal(bank.spread(x[:50]), np.ones((50, 3)))
    far = bank.spread(np.array([[200.0, 0.0, 0.0]]))[0]
    assert far[2] > 2.0  # 100 sd of the parent: the prediction is uncertain by several noise sd


def _engine(predictive: bool) -> tuple[Engine, np.random.Generator]:
    graph = CausalGraph([("cause", "child")])
    engine = Engine(graph, EngineConfig(predictive_scores=predictive), targets=["child"])
    rng = np.random.default_rng(7)
    for t in range(600):
        c = float(rng.normal())
        engine.process_one(Snapshot(float(t), {"cause": c, "child": 2.0 * c + rng.normal()}))
    return engine, rng


def test_a_child_is_not_blamed_for_its_parents_fault() -> None:
    """A cause 150 sd out: the child's residual is the coefficient's error times 150 sd; scored
    against its noise widened by the prediction error, the child stays far less anomalous than
    the cause, and on normal snapshots the scores are the same floats as without."""
    on, rng = _engine(True)
    off, _ = _engine(False)
    for t in range(600, 640):
        c = float(rng.normal())
        snap = Snapshot(float(t), {"cause": c, "child": 2.0 * c + rng.normal()})
        assert on.process_one(snap).scores == off.process_one(snap).scores
    coef = on._models.bank.coefficients()[0][1, 0]
    fault = Snapshot(700.0, {"cause": 150.0, "child": 2.0 * 150.0})  # the true mechanism
    a, b = on.explain(fault, "child"), off.explain(fault, "child")
    score_on = {rc.node: rc.score for rc in a.root_causes}
    score_off = {rc.node: rc.score for rc in b.root_causes}
    assert score_on["cause"] == score_off["cause"]
    assert score_on["child"] is not None
    assert score_off["child"] is not None
    assert score_on["child"] <= score_off["child"]
    residual = 2.0 * 150.0 - on._models.bank.predict(np.array([150.0, 0.0]))[1]
    assert abs(residual) == pytest.approx(abs((2.0 - coef) * 150.0), rel=0.2, abs=0.5)
    assert score_on["child"] < 5.0  # not anomalous: within the prediction's own error


def test_a_parent_that_never_varied_adds_nothing() -> None:
    """Its coefficient is not identified at all (ridge keeps it at 0; the ranking treats such
    edges apart): the spread reads only the parents that varied."""
    x = _chain(3000, 2)
    x[:, 1] = 4.0  # constant in the learned data
    bank = LinearBank([NONE, NONE, np.array([0, 1])], forgetting=1e-3)
    bank.learn_many(x)
    moved = bank.spread(np.array([[0.0, 400.0, 0.0]]))[0]
    assert moved[2] == 1.0
    both = bank.spread(np.array([[200.0, 400.0, 0.0]]))[0]
    assert both[2] == bank.spread(np.array([[200.0, 4.0, 0.0]]))[0][2] > 2.0

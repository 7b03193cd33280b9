"""Named choices of river regressors for the mechanisms that are not the default linear one."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol, runtime_checkable

from river import linear_model, neighbors, preprocessing, tree

from stream_rca.errors import ConfigError

__all__ = ["MECHANISMS", "Regressor", "make_regressor"]


@runtime_checkable
class Regressor(Protocol):
    """What the engine needs of a mechanism: river's online regressor interface."""

    def learn_one(self, x: dict[Hashable, Any], y: Any) -> Any: ...

    def predict_one(self, x: dict[Hashable, Any]) -> Any: ...


def _sgd_linear() -> Regressor:
    return preprocessing.StandardScaler() | linear_model.LinearRegression(intercept_lr=0.05)


def _tree() -> Regressor:
    return preprocessing.StandardScaler() | tree.HoeffdingAdaptiveTreeRegressor(
        grace_period=50, leaf_prediction="adaptive", seed=0
    )


def _knn() -> Regressor:
    return preprocessing.StandardScaler() | neighbors.KNNRegressor(n_neighbors=10)


MECHANISMS: dict[str, Callable[[], Regressor] | None] = {
    "linear": None,  # the engine's vectorised exact linear model
    "sgd": _sgd_linear,
    "tree": _tree,
    "knn": _knn,
}
"""Mechanism names accepted in configuration; ``"linear"`` is the default."""


def make_regressor(name: str) -> Regressor | None:
    """A fresh river regressor for a mechanism name; ``None`` for the built-in linear model.

    >>> make_regressor("linear") is None
    True
    >>> type(make_regressor("tree")).__name__
    'Pipeline'
    """
    try:
        factory = MECHANISMS[name]
    except KeyError:
        choices = ", ".join(sorted(MECHANISMS))
        raise ConfigError(f"unknown mechanism {name!r}; choose one of: {choices}") from None
    return None if factory is None else factory()

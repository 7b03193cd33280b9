"""Compile the engine's kernels now, so that no snapshot waits for the compiler.

numba compiles each kernel of :mod:`stream_rca.core.compiled` on its first call with a given
kind of arguments, or loads it from its cache beside the module (a few seconds the first time
on a machine, under a second after). :func:`warm` makes those first calls on tiny inputs, of
every kind the engine passes: the attribution's chunks (numbers and NaN); the noise bank's
updates, refits (rows of one size and of several; full rows resorted) and scores; a learning
step's bookkeeping and a scored piece's masks; the values kept beside the residuals and their
refresh; the linear mechanisms' learning, solves, predictions (from snapshots, from kept
values, from slices of them) and prediction errors. Entry points call it once per process
(:func:`stream_rca.parallel.attribution_pool`)."""

from __future__ import annotations

import numpy as np

from stream_rca.core import coalitions
from stream_rca.core.compiled import hold, learn_counts, resort_rows, score_masks
from stream_rca.core.linear import LinearBank
from stream_rca.core.noise import NoiseBank

__all__ = ["warm"]


def warm() -> None:
    """Compile (or load) every kernel the engine calls."""
    coalitions.warm()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3))
    mask = np.ones(x.shape, dtype=bool)
    bank = NoiseBank(3, 64)
    half = mask.copy()
    half[:8, 1] = False
    bank.learn_many(x, half)
    bank.refit()  # rows of several sizes
    placed = bank.learn_many(x, mask)
    bank.refit()  # every row full
    order = np.argsort(bank.samples, axis=1).astype(np.int32)
    resort_rows(bank.samples, np.arange(3), order, np.zeros(order.shape, dtype=bool), 64)
    bank.score(x[:3])
    bank.score(x[0, 1:], np.array([1, 2], dtype=np.intp))
    none = np.zeros(0, dtype=np.intp)
    linear = LinearBank([none, none, np.array([0, 1], dtype=np.intp)])
    linear.learn_many(x, mask)
    linear.predict(x)  # parents laid out from a block (a transposed view)
    linear.spread(x)  # the prediction error's widening of the noise
    held = np.ascontiguousarray(x[:, :2].T)
    linear.predict_rows(held)  # kept values
    linear.predict_rows(held[:, :5])  # the filled part of them
    filled = np.array([5], dtype=np.intp)
    linear.refresh_residuals((held, np.zeros((1, 48))), filled, np.zeros((3, 64)))  # refreshed
    layout = (linear.rank, linear.degree, linear.offsets, linear.sources)
    hold(x, placed, layout, np.zeros((1, 64)), np.zeros((2, 64)))  # values kept beside residuals
    # a learning step's bookkeeping; a scored piece's masks
    counts = (np.zeros(3, dtype=np.intp), np.ones(3, dtype=bool), 1e-4)
    learn_counts(x, mask, mask, counts, (np.zeros(3, dtype=np.int64), np.zeros(3), np.zeros(3)))
    target = np.zeros(1, dtype=np.intp)
    flags = (target, mask[0], mask[0], mask[0, :1])
    scores = (x[:4], x[:4, :1].copy())
    score_masks(mask[:4], np.ones((0, 3), dtype=bool), scores, flags, (12.0, 12.0))

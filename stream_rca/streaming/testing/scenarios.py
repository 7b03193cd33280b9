"""Simulated scenarios the integration tests share."""

from __future__ import annotations

from typing import Any

from stream_rca.streaming.simulator import SimulationConfig, graphs_document

__all__ = ["three_faults", "three_faults_graphs"]


def three_faults(*, graphs: int, seed: int, count: int, **more: Any) -> SimulationConfig:
    """Three large faults (8 to 12 standard deviations, 4 windows each), 50 windows apart,
    the first at window 100: each stands out clearly from a warm model.

    ``more`` sets other :class:`~stream_rca.streaming.SimulationConfig` fields (``names``...).
    Pick a ``seed`` whose faults the reference run identifies (tests assert they do).
    """
    return SimulationConfig(
        graphs=graphs,
        seed=seed,
        count=count,
        first_fault=100,
        fault_every=50,
        fault_duration=4,
        strength=(8.0, 12.0),
        faults=3,
        **more,
    )


def three_faults_graphs(config: SimulationConfig) -> dict[str, Any]:
    """The graphs document for a :func:`three_faults` run: 30 windows of warm-up, alarms at
    6 nats (well below the faults, well above chance over a few hundred windows)."""
    return graphs_document(config, warmup=30, threshold=6.0)

"""Simulated microservice systems with fault injection and ground truth.

Latencies propagate along a causal DAG (an edge ``callee -> caller``: the call graph reversed):
each service's latency is its own intrinsic latency plus the sum (sequential calls) or the
maximum (parallel calls) of its callees' latencies. Faults (:class:`Fault`) shift a service's own
latency or change its mechanism for a window of steps; the :class:`FaultSchedule` is the ground
truth.

Examples
--------
>>> sim = MicroserviceSystem.shop(seed=0)
>>> sim.faults = random_faults(sim, "Website", 2, every=50, duration=5, rng=1)
>>> x = sim.sample(120)
>>> x.shape
(120, 11)
>>> sorted(sim.root_causes(52)) == sorted(sim.faults[0].nodes)
True
"""

from stream_rca.sim.faults import FAULT_KINDS, Fault, FaultKind, FaultSchedule
from stream_rca.sim.intrinsic import FAMILIES, Family
from stream_rca.sim.multicause import (
    MULTICAUSE_NOISES,
    MulticauseCase,
    MulticauseFault,
    multicause_case,
)
from stream_rca.sim.propagation import Aggregate, PropagationPlan
from stream_rca.sim.schedule import calibrate_magnitude, random_faults
from stream_rca.sim.system import MicroserviceSystem
from stream_rca.sim.topology import SHOP_EDGES, SHOP_MAX_NODES, random_service_dag

__all__ = [
    "FAMILIES",
    "FAULT_KINDS",
    "MULTICAUSE_NOISES",
    "SHOP_EDGES",
    "SHOP_MAX_NODES",
    "Aggregate",
    "Family",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "MicroserviceSystem",
    "MulticauseCase",
    "MulticauseFault",
    "PropagationPlan",
    "calibrate_magnitude",
    "multicause_case",
    "random_faults",
    "random_service_dag",
]

"""``warm`` compiles every kernel the engine calls: nothing is compiled on a live stream.

A kernel compiles on its first call with each kind of argument (layouts of arrays, types of
scalars), so an entry point that warms up and then meets a new kind would make a snapshot
wait seconds for the compiler. After :func:`~stream_rca.core.warm.warm`, an engine learning
and scoring a stream with gaps, record by record and in blocks, restored from a checkpoint,
and attributing incidents adds no compiled signature to any kernel.
"""

from __future__ import annotations

import json

import numba
import numpy as np

from stream_rca.core import compiled
from stream_rca.core.checkpoint import decode_tree, encode_tree
from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.trigger import TriggerConfig
from stream_rca.core.warm import warm
from stream_rca.sim import MicroserviceSystem
from tests.fixtures.fresh import run_fresh


def _signatures() -> dict[str, int]:
    kernels = {
        name: getattr(compiled, name)
        for name in dir(compiled)
        if isinstance(getattr(compiled, name), numba.core.registry.CPUDispatcher)
    }
    assert len(kernels) >= 10
    return {name: len(k.signatures) for name, k in kernels.items()}


def _stream_after_warm() -> dict[str, tuple[int, int]]:
    """The kernels that compiled a new signature on the stream: (before, after)."""
    warm()
    before = _signatures()
    sim = MicroserviceSystem.shop(seed=5)
    graph = CausalGraph(sim.edges, sim.nodes, name="shop")
    data = sim.sample(1300)  # beyond the reservoir: full rows and rows still filling
    data[[700, 1100], -1] += 25.0  # incidents: exact attributions
    data[np.random.default_rng(1).random(data.shape) < 0.03] = np.nan
    cfg = EngineConfig(warmup=60, trigger=TriggerConfig(threshold=6.0))
    engine = Engine(graph, cfg)
    ts = np.arange(len(data), dtype=np.float64)
    attributed = 0
    for b in range(0, 400):
        attributed += sum(
            len(r.attributions) for r in engine.process_block(ts[b : b + 1], data[b : b + 1])
        )
    restored = Engine.from_state(graph, cfg, decode_tree(encode_tree(engine.to_state())))
    for start in range(400, len(data), 256):
        stop = min(len(data), start + 256)
        for r in restored.process_block(ts[start:stop], data[start:stop]):
            attributed += len(r.attributions)
    assert attributed >= 2
    after = _signatures()
    return {name: (n, after[name]) for name, n in before.items() if after[name] != n}


def test_after_warm_a_stream_compiles_nothing() -> None:
    # in a fresh interpreter: in this one, earlier tests may have compiled what warm misses
    code = "import json, tests.unit.test_warm as t; print(json.dumps(t._stream_after_warm()))"
    assert json.loads(run_fresh(code).splitlines()[-1]) == {}

"""The state of one graph in a worker, and its checkpoint codec.

A worker keeps, for every graph it serves, a :class:`GraphState`: the engine (models, noise
reservoirs, incident triggers), the aligner (open windows, watermark) and the offset of the
last input message folded into them, per input partition. The whole object pickles; a
checkpoint is that pickle behind a small header (:func:`dump_state`), written to a faust table
whose changelog topic is compacted, so the latest checkpoint of each graph survives.

The stored offsets make replays idempotent: after a restart or a rebalance, input messages at
or below a graph's checkpointed offset are already in its state and are skipped, the others
are folded in again (and their results published again, with the same incident ids).

Checkpoints are pickles: only a worker's own changelog topic may feed :func:`load_state`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from dataclasses import dataclass, field, fields

from stream_rca.config import GraphSpec
from stream_rca.core.engine import Engine
from stream_rca.errors import StreamRCAError
from stream_rca.io.aligner import Aligner

__all__ = [
    "CHECKPOINT_SCHEMA",
    "CheckpointError",
    "GraphState",
    "dump_state",
    "fingerprint",
    "load_state",
    "new_state",
]

CHECKPOINT_SCHEMA = "stream-rca.checkpoint/v1"
_MAGIC = b"SRCA-CKPT-1\n"


class CheckpointError(StreamRCAError, ValueError):
    """A checkpoint that cannot be used: corrupt, another format, or another graph spec."""


def fingerprint(spec: GraphSpec) -> str:
    """A digest of everything in a graph's spec that its state depends on.

    A checkpoint taken under one spec is only restored under a spec with the same fingerprint:
    after the graphs file changes a graph's nodes, edges, targets, window or engine settings,
    the graph starts afresh (with a warning) instead of running on models of another graph.

    Examples
    --------
    >>> from stream_rca.core.graph import CausalGraph
    >>> a = GraphSpec("shop", CausalGraph([("db", "api")], name="shop"), ("api",))
    >>> b = GraphSpec("shop", CausalGraph([("db", "api")], name="shop"), ("api",), step=5.0)
    >>> fingerprint(a) == fingerprint(a), fingerprint(a) == fingerprint(b)
    (True, False)
    """
    engine = {f.name: repr(getattr(spec.engine, f.name)) for f in fields(spec.engine)}
    doc = {
        "name": spec.name,
        "nodes": list(spec.graph.nodes),
        "edges": [list(e) for e in spec.graph.edges],
        "targets": list(spec.targets),
        "step": spec.step,
        "allowed_lateness": spec.allowed_lateness,
        "engine": engine,
        "mechanisms": dict(sorted(spec.mechanisms.items())),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True)
class GraphState:
    """Everything a worker knows about one graph; it pickles whole.

    Attributes
    ----------
    graph
        The graph's name.
    spec_fingerprint
        :func:`fingerprint` of the spec it was built under.
    engine
        The graph's engine.
    aligner
        The graph's aligner.
    offsets
        Input partition to the offset of the last message folded into this state.
    events
        Samples accepted into windows so far.
    checkpoints
        How many times this state was checkpointed.
    restored
        True when this state came from a checkpoint (set on load, not stored).
    """

    graph: str
    spec_fingerprint: str
    engine: Engine
    aligner: Aligner
    offsets: dict[int, int] = field(default_factory=dict)
    events: int = 0
    checkpoints: int = 0
    restored: bool = False

    def applied(self, partition: int, offset: int) -> bool:
        """True when the message at ``(partition, offset)`` is already folded into the state."""
        last = self.offsets.get(partition)
        return last is not None and offset <= last


def new_state(spec: GraphSpec) -> GraphState:
    """A fresh state for ``spec``: an untrained engine and an empty aligner."""
    engine = Engine(
        spec.graph,
        spec.engine,
        targets=spec.targets,
        mechanisms=dict(spec.mechanisms) or None,
        timer=time.perf_counter,  # attribution latency, for the metrics
    )
    aligner = Aligner(spec.graph.nodes, spec.step, spec.allowed_lateness, graph=spec.name)
    return GraphState(spec.name, fingerprint(spec), engine, aligner)


def dump_state(state: GraphState) -> bytes:
    """Serialise a state for the checkpoint table.

    Returns
    -------
    bytes
        A header line and a pickle of ``{"schema", "graph", "fingerprint", "state"}``.
    """
    state.checkpoints += 1
    doc = {
        "schema": CHECKPOINT_SCHEMA,
        "graph": state.graph,
        "fingerprint": state.spec_fingerprint,
        "state": state,
    }
    return _MAGIC + pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL)


def load_state(blob: bytes, spec: GraphSpec) -> GraphState:
    """Restore a state written by :func:`dump_state` for the graph of ``spec``.

    Raises
    ------
    CheckpointError
        If the blob is not a checkpoint, cannot be unpickled, belongs to another graph, or was
        taken under a different spec (see :func:`fingerprint`).
    """
    if not isinstance(blob, bytes | bytearray) or not blob.startswith(_MAGIC):
        raise CheckpointError(f"graph {spec.name!r}: the stored value is not a checkpoint")
    try:
        doc = pickle.loads(blob[len(_MAGIC) :])  # our own changelog topic only
    except Exception as exc:
        raise CheckpointError(
            f"graph {spec.name!r}: cannot unpickle its checkpoint: {exc}"
        ) from exc
    if not isinstance(doc, dict) or doc.get("schema") != CHECKPOINT_SCHEMA:
        raise CheckpointError(f"graph {spec.name!r}: unknown checkpoint schema")
    state = doc.get("state")
    if not isinstance(state, GraphState) or doc.get("graph") != spec.name:
        raise CheckpointError(
            f"graph {spec.name!r}: the checkpoint is of graph {doc.get('graph')!r}"
        )
    if doc.get("fingerprint") != fingerprint(spec):
        raise CheckpointError(
            f"graph {spec.name!r}: the checkpoint was taken under another spec (the graphs file "
            "changed its nodes, edges, targets, window or engine settings); starting afresh"
        )
    state.restored = True
    state.engine.timer = time.perf_counter  # a checkpoint carries no clock
    return state

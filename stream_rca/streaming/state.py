"""The state of one graph in a worker, and its checkpoint codec.

A worker keeps, for every graph it serves, a :class:`GraphState`: the engine (models, noise
reservoirs, incident triggers), the aligner (open windows, watermark) and the offset of the
last input message folded into them, per input partition. A checkpoint is that state as data
(:meth:`GraphState.to_state`: JSON scalars and numeric arrays, see
:mod:`stream_rca.core.checkpoint`), signed with HMAC-SHA256 under the worker's checkpoint key
and bound to the graph's name (:class:`CheckpointCodec`). It is written to a faust table whose
changelog topic is compacted, so the latest checkpoint of each graph survives.

Loading verifies the HMAC before anything else is read, then parses the record strictly and
rebuilds every object through its ``from_state``; nothing is unpickled, so a record written to
the changelog by someone else can at worst be refused (:class:`CheckpointError` with a
``reason``), never run code. A refused graph starts afresh.

The stored offsets make replays idempotent: after a restart or a rebalance, input messages at
or below a graph's checkpointed offset are already in its state and are skipped, the others
are folded in again (and their results published again, with the same incident ids).

Rules:

- **River mechanisms** (non-linear regressors on some nodes) hold Python objects that cannot
  be stored as data: a worker refuses such a graph when it loads its graphs
  (:func:`check_checkpointable` names the node and the mechanism).
- **Size**: a graph whose state may not fit the changelog's message limit
  (:data:`MAX_CHECKPOINT_BYTES`) is refused when the worker loads its graphs, with a message
  naming the estimate and the limit (:func:`check_checkpointable`); a record that still comes
  out larger (many open windows) is compressed (zlib) if that makes it fit, else refused at
  :meth:`CheckpointCodec.dump` (reason ``too_large``). The bound counts the extra series of
  an ``accept_unknown`` graph (``max_extra_series`` of them) and the span index of a graph
  that grows from spans.
- **Beside the engine**: the extra series (``accept_unknown``: their marginal models and the
  values waiting for their windows) and the span matching index (``grow_from_spans``: the
  most recent spans, :data:`~stream_rca.streaming.growth.MAX_CHECKPOINT_SPANS` of each side)
  are in the checkpoint and validated like the rest: a bad entry refuses the whole record
  (``malformed``), and so do more extra series than the spec's ``max_extra_series`` now
  allows (``spec``); the graph then starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Protocol, cast

from stream_rca.config import GraphSpec
from stream_rca.core.checkpoint import (
    RecordError,
    StateError,
    StateTree,
    decode_tree,
    encode_tree,
    get_int,
    get_list,
    get_str,
    get_tree,
    seal,
    unseal,
)
from stream_rca.core.engine import Engine
from stream_rca.core.graph import CausalGraph
from stream_rca.core.graphfree import GraphFreeConfig
from stream_rca.core.graphfree_engine import GraphFreeEngine
from stream_rca.core.models import MARGINAL_SIZE
from stream_rca.core.noise import NoiseBank
from stream_rca.errors import ConfigError, StreamRCAError
from stream_rca.io.aligner import Aligner
from stream_rca.parallel import attribution_pool
from stream_rca.streaming.growth import (
    MAX_CHECKPOINT_SPANS,
    SPAN_INDEX_BYTES,
    ExtraBuffer,
    SpanGrowth,
)

if TYPE_CHECKING:
    from stream_rca.config import Settings

__all__ = [
    "CHECKPOINT_SCHEMA",
    "MAX_CHECKPOINT_BYTES",
    "MIN_KEY_LENGTH",
    "AnyEngine",
    "CheckpointCodec",
    "CheckpointError",
    "GraphState",
    "check_checkpointable",
    "dump_state",
    "fingerprint",
    "load_state",
    "new_state",
    "state_size_bound",
]

log = logging.getLogger("stream_rca.streaming")

CHECKPOINT_SCHEMA = "stream-rca.checkpoint/v2"
MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024
"""Largest checkpoint record (the changelog topic's ``max.message.bytes``)."""
MIN_KEY_LENGTH = 16
"""Fewest characters of a checkpoint key."""

_META_ALLOWANCE = 256 * 1024  # JSON meta, triggers, offsets: generous for any graph
_MAX_CALLS = 100_000  # span call edges a checkpoint may hold

AnyEngine = Engine | GraphFreeEngine
"""The engine of a graph: causal (:class:`Engine`) or graph-free (:class:`GraphFreeEngine`)."""


class CheckpointError(StreamRCAError, ValueError):
    """A checkpoint that cannot be used, or cannot be written.

    Attributes
    ----------
    reason
        A short code, used as the ``reason`` label of
        ``stream_rca_checkpoints_refused_total``: ``not_checkpoint``, ``version``,
        ``truncated``, ``signature``, ``too_large``, ``malformed``, ``spec`` (taken under
        another graph spec) or ``unavailable`` (this build cannot store the engine's state).
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class _EngineState(Protocol):
    """What GraphState needs of the engine (``Engine.to_state``/``Engine.from_state``)."""

    def to_state(self) -> StateTree: ...


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
    if spec.graph_free:  # only then, so the fingerprints of other graphs stay as they were
        doc["graph_free"] = True
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True)
class GraphState:
    """Everything a worker knows about one graph.

    Attributes
    ----------
    graph
        The graph's name.
    spec_fingerprint
        :func:`fingerprint` of the spec it was built under.
    engine
        The graph's engine (on the grown graph, once spans grew it).
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
    calls
        Call edges learned from spans, ``(caller, callee)`` -> calls (a graph that grows from
        spans; the pipeline keeps it up to date before each checkpoint).
    change
        The state tree of the graph's why-changed reference
        (:meth:`~stream_rca.streaming.changes.ChangeService.state_of`), if any; set by the
        pipeline before a checkpoint and read by it after a restore.
    extras
        The series outside the graph (``accept_unknown``): their marginal models and the
        values waiting for their windows; ``None`` until the first one arrives.
    growth
        The span matching index of a graph that grows from spans (set by the pipeline before
        a checkpoint, rebuilt from it on a restore; the most recent spans only, see
        :meth:`~stream_rca.streaming.growth.SpanGrowth.index_state`).
    """

    graph: str
    spec_fingerprint: str
    engine: AnyEngine
    aligner: Aligner
    offsets: dict[int, int] = field(default_factory=dict)
    events: int = 0
    checkpoints: int = 0
    restored: bool = False
    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    change: StateTree | None = None
    extras: ExtraBuffer | None = None
    growth: SpanGrowth | None = None

    def applied(self, partition: int, offset: int) -> bool:
        """True when the message at ``(partition, offset)`` is already folded into the state."""
        last = self.offsets.get(partition)
        return last is not None and offset <= last

    def to_state(self) -> StateTree:
        """The whole state as a state tree (the engine's and the aligner's nested in it).

        Raises
        ------
        CheckpointError
            ``unavailable`` when the engine cannot describe its state as data.
        """
        to_state = getattr(self.engine, "to_state", None)
        if to_state is None:
            raise CheckpointError(
                f"graph {self.graph!r}: this build's Engine has no to_state(); its state "
                "cannot be checkpointed",
                "unavailable",
            )
        graph = self.engine.graph
        tree: StateTree = {
            "schema": CHECKPOINT_SCHEMA,
            "graph": self.graph,
            "fingerprint": self.spec_fingerprint,
            "offsets": [[p, o] for p, o in sorted(self.offsets.items())],
            "events": self.events,
            "checkpoints": self.checkpoints,
            "engine": cast(_EngineState, self.engine).to_state(),
            "aligner": self.aligner.to_state(),
            "topology": {"nodes": list(graph.nodes), "edges": [list(e) for e in graph.edges]},
            "calls": [[a, b, n] for (a, b), n in sorted(self.calls.items())],
        }
        if self.change is not None:
            tree["change"] = self.change
        if self.extras is not None:
            tree["extras"] = self.extras.to_state()
        if self.growth is not None:
            tree["span_index"] = self.growth.index_state()
        return tree

    @classmethod
    def from_state(cls, spec: GraphSpec, state: StateTree) -> GraphState:
        """Rebuild the state of ``spec``'s graph from :meth:`to_state`'s tree.

        The structure (graph, engine settings, window) comes from ``spec``; the tree must
        have been taken under the same spec (:func:`fingerprint`).

        Raises
        ------
        CheckpointError
            ``spec`` for another spec or graph, ``malformed`` for an invalid tree,
            ``unavailable`` when this build's Engine cannot be rebuilt from data.
        """
        try:
            if get_str(state, "schema") != CHECKPOINT_SCHEMA:
                raise StateError(f"schema: not {CHECKPOINT_SCHEMA}")
            if get_str(state, "graph") != spec.name:
                raise CheckpointError(
                    f"graph {spec.name!r}: the checkpoint is of graph {state['graph']!r}", "spec"
                )
            if get_str(state, "fingerprint") != fingerprint(spec):
                raise CheckpointError(
                    f"graph {spec.name!r}: the checkpoint was taken under another spec (the "
                    "graphs file changed its nodes, edges, targets, window or engine "
                    "settings); starting afresh",
                    "spec",
                )
            offsets: dict[int, int] = {}
            for pair in get_list(state, "offsets"):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise StateError("offsets: expected [partition, offset] pairs")
                part = get_int({"partition": pair[0]}, "partition", low=0)
                offsets[part] = get_int({"offset": pair[1]}, "offset", low=-1)
            graph = _topology(spec, state)
            engine = _engine_from_state(spec, graph, get_tree(state, "engine"))
            aligner = Aligner.from_state(get_tree(state, "aligner"))
            calls = _calls(state)
            change = get_tree(state, "change") if state.get("change") is not None else None
            extras = _extras(spec, graph, state)
            growth = _growth(spec, calls, state)
            if (
                sorted(aligner.nodes) != sorted(graph.nodes)  # grown: new nodes last
                or aligner.graph != spec.name
                or aligner.step != spec.step
                or aligner.allowed_lateness != spec.allowed_lateness
            ):
                raise StateError("aligner: its nodes or window differ from the spec's")
            events = get_int(state, "events", low=0)
            checkpoints = get_int(state, "checkpoints", low=0)
        except CheckpointError:
            raise
        except (StateError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise CheckpointError(
                f"graph {spec.name!r}: invalid checkpoint content: {exc}", "malformed"
            ) from None
        engine.timer = time.perf_counter  # a checkpoint carries no clock
        return cls(
            spec.name,
            fingerprint(spec),
            engine,
            aligner,
            offsets,
            events,
            checkpoints,
            True,
            calls,
            change,
            extras,
            growth,
        )


def _extras(spec: GraphSpec, graph: CausalGraph, state: StateTree) -> ExtraBuffer | None:
    """The extra series of an ``accept_unknown`` graph, validated against the spec."""
    tree = state.get("extras")
    if tree is None:
        return None
    if not spec.accept_unknown:
        log.info("graph %r: extra series in the checkpoint left out (no accept_unknown)", spec.name)
        return None
    if not isinstance(tree, dict):
        raise StateError("extras: expected a mapping")
    series = tree.get("series")
    held = series.get("series") if isinstance(series, dict) else None
    if isinstance(held, list) and len(held) > spec.max_extra_series:
        raise CheckpointError(
            f"graph {spec.name!r}: the checkpoint follows {len(held)} series not in the graph, "
            f"more than max_extra_series ({spec.max_extra_series}); starting afresh",
            "spec",
        )
    try:
        return ExtraBuffer.from_state(
            graph.nodes, spec.targets, spec.engine.warmup, spec.max_extra_series, tree
        )
    except StateError as exc:
        raise StateError(f"extras.{exc}") from None


def _growth(
    spec: GraphSpec, calls: dict[tuple[str, str], int], state: StateTree
) -> SpanGrowth | None:
    """The span matching index of a graph that grows from spans, with its call counts."""
    if not spec.grow_from_spans:
        return None
    growth = SpanGrowth(spec.graph)
    growth.calls.update(calls)
    tree = state.get("span_index")
    if tree is not None:
        try:
            growth.restore_index(tree)
        except StateError as exc:
            raise StateError(f"span_index.{exc}") from None
    return growth


def _topology(spec: GraphSpec, state: StateTree) -> CausalGraph:
    """The graph the checkpointed engine ran on: the spec's, or the spec's grown by spans.

    A grown graph is restored only for a graph that grows from spans, and only when it holds
    every declared node and edge (growth adds, never removes, a declared one).
    """
    topo = state.get("topology")
    if topo is None:  # a checkpoint of a build that stored no topology
        return spec.graph
    nodes = get_list(topo, "nodes")
    edges = get_list(topo, "edges")
    if not all(isinstance(n, str) for n in nodes) or not all(
        isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e) for e in edges
    ):
        raise StateError("topology: expected node names and [cause, effect] pairs")
    pairs = [(str(a), str(b)) for a, b in edges]
    declared = spec.graph
    if tuple(nodes) == tuple(declared.nodes) and set(pairs) == set(declared.edges):
        return declared
    if not spec.grow_from_spans:
        raise CheckpointError(
            f"graph {spec.name!r}: the checkpoint holds a grown graph but the graph no longer "
            "grows from spans (grow_from_spans); starting afresh",
            "spec",
        )
    missing = set(declared.nodes) - set(nodes)
    lost = set(declared.edges) - set(pairs)
    if missing or lost:
        raise StateError("topology: a declared node or edge is missing from the grown graph")
    try:
        graph = CausalGraph(pairs, nodes, name=spec.name)
    except (StreamRCAError, ValueError) as exc:
        raise StateError(f"topology: {exc}") from None
    if tuple(graph.nodes) != tuple(nodes):
        raise StateError("topology: the nodes are not in the graph's order")
    return graph


def _calls(state: StateTree) -> dict[tuple[str, str], int]:
    rows = state.get("calls")
    if rows is None:
        return {}
    items = get_list(state, "calls")
    if len(items) > _MAX_CALLS:
        raise StateError(f"calls: more than {_MAX_CALLS} call edges")
    calls: dict[tuple[str, str], int] = {}
    for row in items:
        if (
            not isinstance(row, list)
            or len(row) != 3
            or not all(isinstance(x, str) for x in row[:2])
            or type(row[2]) is not int
            or row[2] < 1
        ):
            raise StateError("calls: expected [caller, callee, calls] rows")
        calls[(row[0], row[1])] = row[2]
    return calls


def _engine_from_state(spec: GraphSpec, graph: CausalGraph, tree: StateTree) -> AnyEngine:
    if spec.graph_free:
        return GraphFreeEngine.from_state(graph, spec.engine, tree)
    from_state = getattr(Engine, "from_state", None)
    if from_state is None:
        raise CheckpointError(
            f"graph {spec.name!r}: this build's Engine has no from_state(); its checkpoint "
            "cannot be restored",
            "unavailable",
        )
    engine = from_state(graph, spec.engine, tree)
    if not isinstance(engine, Engine):
        raise StateError("engine: Engine.from_state returned another type")
    engine.pool = attribution_pool()
    if tuple(engine.targets) != tuple(spec.targets):
        raise StateError(f"engine: targets {list(engine.targets)}, the spec says {spec.targets}")
    return engine


def new_state(spec: GraphSpec) -> GraphState:
    """A fresh state for ``spec``: an untrained engine and an empty aligner."""
    engine: AnyEngine
    if spec.graph_free:
        engine = GraphFreeEngine(
            spec.graph, spec.engine, targets=spec.targets, timer=time.perf_counter
        )
    else:
        engine = Engine(
            spec.graph,
            spec.engine,
            targets=spec.targets,
            mechanisms=dict(spec.mechanisms) or None,
            timer=time.perf_counter,  # attribution latency, for the metrics
            pool=attribution_pool(),
        )
    aligner = Aligner(spec.graph.nodes, spec.step, spec.allowed_lateness, graph=spec.name)
    return GraphState(spec.name, fingerprint(spec), engine, aligner)


# -- the codec -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointCodec:
    """Writes and reads checkpoint records: signed data, verified before it is decoded.

    Parameters
    ----------
    key
        The HMAC key; ``None`` only in the explicitly insecure mode (unsigned records, which a
        worker with a key refuses). Never shown in ``repr``.
    max_bytes
        Largest record (the changelog's ``max.message.bytes``).
    compress
        zlib level for a record too large for :attr:`max_bytes` as it is (0: never compress);
        smaller records are stored uncompressed (float state barely compresses, slowly).

    Examples
    --------
    >>> from stream_rca.core.graph import CausalGraph
    >>> codec = CheckpointCodec(b"0123456789abcdef")
    >>> codec
    CheckpointCodec(key=<set>, max_bytes=16777216, compress=1)
    >>> spec = GraphSpec("g", CausalGraph([("a", "b")], name="g"), ("b",))
    >>> codec.load(b"\\x80\\x04cos\\nsystem\\n(S'touch /tmp/x'\\ntR.", spec)
    Traceback (most recent call last):
    ...
    stream_rca.streaming.state.CheckpointError: graph 'g': checkpoint refused: not_checkpoint: ...
    """

    key: bytes | None
    max_bytes: int = MAX_CHECKPOINT_BYTES
    compress: int = 1

    def __repr__(self) -> str:
        key = "<set>" if self.key is not None else "None (insecure)"
        return f"CheckpointCodec(key={key}, max_bytes={self.max_bytes}, compress={self.compress})"

    @classmethod
    def from_settings(cls, settings: Settings) -> CheckpointCodec:
        """The codec of a worker: its key from ``STREAM_RCA_CHECKPOINT_KEY``.

        Raises
        ------
        ConfigError
            Without a key (unless ``insecure_no_checkpoint_key`` is set), or with a key shorter
            than :data:`MIN_KEY_LENGTH` characters.
        """
        key = settings.checkpoint_key
        if key:
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigError(
                    f"STREAM_RCA_CHECKPOINT_KEY is {len(key)} characters long; give at least "
                    f"{MIN_KEY_LENGTH} (e.g. the output of `openssl rand -hex 32`)"
                )
            return cls(key.encode("utf-8"))
        if not settings.insecure_no_checkpoint_key:
            raise ConfigError(
                "the worker needs a checkpoint key to sign its checkpoints: set "
                "STREAM_RCA_CHECKPOINT_KEY (--checkpoint-key), the same on every worker of the "
                "group, or run without one with STREAM_RCA_INSECURE_NO_CHECKPOINT_KEY=true"
            )
        log.warning(
            "running WITHOUT a checkpoint key (STREAM_RCA_INSECURE_NO_CHECKPOINT_KEY): "
            "checkpoints are not authenticated, so anyone who can write the changelog topic can "
            "replace a graph's state (as data only: checkpoints never execute code)"
        )
        return cls(None)

    def dump(self, state: GraphState) -> bytes:
        """Serialise and sign a state for the checkpoint table.

        Raises
        ------
        CheckpointError
            ``too_large`` when the record exceeds :attr:`max_bytes` even compressed;
            ``unavailable`` when the engine cannot describe its state as data.
        """
        state.checkpoints += 1
        try:
            body = encode_tree(state.to_state())
        except StateError as exc:
            raise CheckpointError(f"graph {state.graph!r}: {exc}", "unavailable") from None
        context = state.graph.encode("utf-8")
        blob = seal(body, self.key, context, compress=0)
        if len(blob) > self.max_bytes and self.compress:
            # Trained float64 state gains ~4 % from zlib at ~50 ms/MiB: compress only to fit.
            blob = seal(body, self.key, context, compress=self.compress)
        if len(blob) > self.max_bytes:
            raise CheckpointError(
                f"graph {state.graph!r}: its checkpoint takes {len(blob)} bytes compressed, "
                f"more than the changelog's limit of {self.max_bytes} bytes",
                "too_large",
            )
        return blob

    def load(self, blob: bytes, spec: GraphSpec) -> GraphState:
        """Verify and restore a record written by :meth:`dump` for the graph of ``spec``.

        The HMAC is checked first (with :func:`hmac.compare_digest`); only then is the record
        decompressed and parsed, and the objects rebuilt from data.

        Raises
        ------
        CheckpointError
            With a :attr:`~CheckpointError.reason` for anything refused.
        """
        try:
            body = unseal(blob, self.key, spec.name.encode("utf-8"), max_body=8 * self.max_bytes)
            tree = decode_tree(body)
        except RecordError as exc:
            raise CheckpointError(
                f"graph {spec.name!r}: checkpoint refused: {exc}", exc.reason
            ) from None
        return GraphState.from_state(spec, tree)


def dump_state(state: GraphState, codec: CheckpointCodec) -> bytes:
    """Serialise and sign a state: :meth:`CheckpointCodec.dump`."""
    return codec.dump(state)


def load_state(blob: bytes, spec: GraphSpec, codec: CheckpointCodec) -> GraphState:
    """Verify and restore a checkpoint: :meth:`CheckpointCodec.load`."""
    return codec.load(blob, spec)


# -- checks at load ------------------------------------------------------------------------


def state_size_bound(spec: GraphSpec) -> int:
    """Bytes a checkpoint of ``spec``'s graph can take, uncompressed (an upper estimate).

    The engine's arrays are allocated at full size when it is built, so a fresh engine's
    :meth:`~stream_rca.core.engine.Engine.nbytes` is that of a trained one; the aligner is
    counted with the windows its lateness keeps open (plus two), and the JSON meta with a
    fixed allowance.
    """
    engine = new_state(spec).engine
    windows = math.ceil(spec.allowed_lateness / spec.step) + 2
    aligner = windows * len(spec.graph) * 9 + len(spec.graph) * 64  # values, mask, names
    return int(engine.nbytes()) + aligner + _META_ALLOWANCE + _beside_bound(spec)


def _extras_bound(spec: GraphSpec, series: int) -> int:
    """Bytes the extra series of ``spec`` take in a checkpoint, with ``series`` of them."""
    if not spec.accept_unknown:
        return 0
    windows = math.ceil(spec.allowed_lateness / spec.step) + 2
    per_node = NoiseBank(1, GraphFreeConfig().reservoir).nbytes() + 16 * 9 + 10 * 8 + 128
    return (series + len(spec.targets)) * per_node + series * windows * 136  # value, name


def _beside_bound(spec: GraphSpec) -> int:
    """Bytes of what a checkpoint holds beside the engine: extra series, span index."""
    spans = 2 * (SPAN_INDEX_BYTES + MAX_CHECKPOINT_SPANS * 40) if spec.grow_from_spans else 0
    return _extras_bound(spec, spec.max_extra_series) + spans


def check_checkpointable(spec: GraphSpec, max_bytes: int = MAX_CHECKPOINT_BYTES) -> None:
    """Refuse, at load, a graph whose state cannot be checkpointed.

    Raises
    ------
    ConfigError
        For a graph with river mechanisms (naming the node and the mechanism), or whose state
        may not fit ``max_bytes`` (naming the estimate and the limit).
    """
    river = [(n, m) for n, m in sorted(spec.mechanisms.items()) if m != "linear"]
    if river:
        node, mechanism = river[0]
        raise ConfigError(
            f"graph {spec.name!r}: node {node!r} has mechanism {mechanism!r}, a river model "
            "that cannot be checkpointed as data; the streaming worker serves linear "
            "mechanisms only (remove 'mechanisms' for this graph, or run it with "
            "`stream-rca replay`)"
        )
    bound = state_size_bound(spec)
    extras = _extras_bound(spec, spec.max_extra_series)
    if bound > max_bytes and bound - extras <= max_bytes:
        per_series = max(1, _extras_bound(spec, 1) - _extras_bound(spec, 0))
        fits = max(0, (max_bytes - (bound - extras) - _extras_bound(spec, 0)) // per_series)
        raise ConfigError(
            f"graph {spec.name!r}: its checkpoint may take {bound / 2**20:.1f} MiB with "
            f"{spec.max_extra_series} series not in the graph, more than the changelog's "
            f"message limit of {max_bytes / 2**20:.0f} MiB (max.message.bytes); lower "
            f"'max_extra_series' (at most about {fits} fits)"
        )
    if bound > max_bytes:
        graph = spec.graph
        # per reservoir slot: every node's noise sample, the targets' 4x marginal samples and,
        # with refresh_residuals, the values kept for each node with parents and each edge
        kept = sum(1 for v in graph.nodes if graph.parents(v)) + graph.n_edges
        refresh = spec.engine.refresh_residuals
        per_slot = 8 * (len(graph) + MARGINAL_SIZE * len(spec.targets) + (kept if refresh else 0))
        fits = max(0, (max_bytes - (bound - per_slot * spec.engine.reservoir)) // per_slot)
        saved = 8 * kept * spec.engine.reservoir / 2**20
        hint = f"; or 'refresh_residuals: false' (about {saved:.1f} MiB less)" if refresh else ""
        raise ConfigError(
            f"graph {spec.name!r}: its checkpoint may take {bound / 2**20:.1f} MiB, more than "
            f"the changelog's message limit of {max_bytes / 2**20:.0f} MiB "
            f"(max.message.bytes); lower 'reservoir' (now {spec.engine.reservoir}; at most "
            f"about {fits} fits) or split the graph{hint}"
        )

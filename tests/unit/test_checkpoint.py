"""Checkpoints are data: state trees round-trip, and every record that does not verify or does
not parse strictly is refused before anything is decoded, without running code."""

from __future__ import annotations

import json
import logging
import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
import yaml

from stream_rca.config import GraphSpec, Settings
from stream_rca.core.checkpoint import (
    ALLOWED_DTYPES,
    MAGIC,
    RecordError,
    StateError,
    Stateful,
    decode_tree,
    encode_tree,
    flatten,
    rng_from_state,
    rng_to_state,
    seal,
    unseal,
)
from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.linear import LinearBank
from stream_rca.core.trigger import Trigger, TriggerConfig
from stream_rca.errors import ConfigError
from stream_rca.io.aligner import Aligner
from stream_rca.io.events import Sample
from stream_rca.streaming.app import make_app
from stream_rca.streaming.state import (
    MAX_CHECKPOINT_BYTES,
    CheckpointCodec,
    CheckpointError,
    GraphState,
    check_checkpointable,
    new_state,
    state_size_bound,
)

KEY = b"unit-test-checkpoint-key"
OTHER = b"some-other-workers-key"
REPO = Path(__file__).resolve().parents[2]


def _round_trip(tree: dict[str, Any], key: bytes | None = KEY) -> dict[str, Any]:
    return decode_tree(unseal(seal(encode_tree(tree), key, b"g"), key, b"g"))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


# -- the generic tree ------------------------------------------------------------------------


def test_any_state_tree_round_trips_exactly() -> None:
    rng = np.random.default_rng(0)
    tree: dict[str, Any] = {
        "scalars": {"i": -3, "big": 2**70, "f": 0.1, "t": True, "s": "é", "none": None},
        "non_finite": [float("nan"), float("inf"), -float("inf")],
        "arrays": [
            rng.normal(size=(3, 4)),
            np.arange(5, dtype=np.int64),
            np.array([True, False]),
            np.zeros((0, 7)),
            np.array(2.5),  # 0-d
            np.arange(6, dtype=">i4").reshape(2, 3),  # big-endian in, little-endian out
            np.asfortranarray(rng.normal(size=(2, 3))),
            np.array([np.nan, 1.0], dtype=np.float32),
        ],
        "nested": [[{"deep": [np.uint8(7), np.float64(1.5)]}]],
    }
    back = _round_trip(tree)
    expected = json.loads(json.dumps(tree, default=lambda _: None))  # structure only
    assert back.keys() == expected.keys()
    for i, arr in enumerate(tree["arrays"]):
        got = back["arrays"][i]
        assert got.shape == arr.shape
        assert got.dtype == arr.dtype.newbyteorder("<")
        assert np.array_equal(got, arr, equal_nan=True)
        assert got.flags.writeable
    assert back["scalars"] == tree["scalars"]
    assert back["nested"] == [[{"deep": [7, 1.5]}]]
    assert np.isnan(back["non_finite"][0])
    assert back["non_finite"][1:] == [float("inf"), -float("inf")]


@pytest.mark.parametrize(
    ("tree", "match"),
    [
        ({"a": np.array([object()], dtype=object)}, "dtype object"),
        ({"a": np.array([1 + 2j])}, "dtype complex128"),
        ({"a": np.zeros(2, dtype=[("x", "<f8")])}, "cannot be checkpointed"),
        ({"a": np.array(["text"])}, "cannot be checkpointed"),
        ({"a": {1: 2}}, "is not a string"),
        ({"a": {"$a": 0}}, "leading \\$"),
        ({"a": {1, 2}}, "a set is not state data"),
        ({"a": Path("/")}, "is not state data"),
        ({"a": len}, "is not state data"),
    ],
)
def test_what_is_not_data_cannot_be_stored(tree: dict[str, Any], match: str) -> None:
    with pytest.raises(StateError, match=match):
        flatten(tree)


def _nested(depth: int) -> Any:
    out: Any = []
    for _ in range(depth):
        out = [out]
    return out


def _body(meta: dict[str, Any], data: bytes = b"") -> bytes:
    text = json.dumps(meta).encode()
    return struct.pack(">I", len(text)) + text + data


def _raw(text: bytes) -> bytes:
    return struct.pack(">I", len(text)) + text


def _one(dtype: str, shape: list[Any], nbytes: int, tree: Any = None) -> bytes:
    """A body with one array description and ``nbytes`` of data."""
    meta = {"tree": {"a": {"$a": 0}} if tree is None else tree}
    return _body({**meta, "arrays": [{"dtype": dtype, "shape": shape}]}, b"x" * nbytes)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "shorter than its length"),
        (struct.pack(">I", 99) + b"{}", "does not fit"),
        (_body({"tree": {}}), "'arrays' list"),
        (_one("|O", [1], 8), "not allowed"),
        (_one("<c16", [1], 16), "not allowed"),
        (_one("<f8", [3], 16), "announced"),
        (_one("<f8", [1], 9), "after the last"),
        (_one("<f8", [-1], 0), "bad shape"),
        (_one("<f8", [1.0], 8), "bad shape"),
        (_one("<f8", [1], 8, tree={"a": {"$a": 1}}), "bad array reference"),
        (_one("<f8", [1], 8, tree={"a": {"$a": 0}, "b": {"$a": 0}}), "twice"),
        (_one("<f8", [1], 8, tree={}), "not referenced"),
        (_body({"tree": {"a": {"$f": "1e3"}}, "arrays": []}), "bad float"),
        (_body({"tree": {"a": {"$pickle": "x"}}, "arrays": []}), "unknown marker"),
        (_body({"tree": [], "arrays": []}), "is a dict"),
        (struct.pack(">I", 26) + b'{"tree":NaN,"arrays":[]}  ', "constant NaN"),
        (_body({"tree": {"a": float("inf")}, "arrays": []}), "constant Infinity"),
        (_body({"tree": {"a": _nested(80)}, "arrays": []}), "deeper"),
        (_raw(b'{"arrays":[],"tree":' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "recursion"),
    ],
)  # fmt: skip
def test_a_body_is_parsed_strictly(body: bytes, match: str) -> None:
    with pytest.raises(RecordError, match=match) as info:
        decode_tree(body)
    assert info.value.reason == "malformed"


def test_a_non_finite_float_outside_its_marker_is_refused() -> None:
    text = b'{"tree":{"a":1e999},"arrays":[]}'
    with pytest.raises(RecordError, match="non-finite"):
        decode_tree(struct.pack(">I", len(text)) + text)


# -- the record ------------------------------------------------------------------------------


def _record(tree: dict[str, Any] | None = None, key: bytes | None = KEY) -> bytes:
    tree = tree if tree is not None else {"w": np.arange(100.0), "n": 3}
    return seal(encode_tree(tree), key, b"shop")


def _refused(blob: bytes, key: bytes | None = KEY, context: bytes = b"shop") -> str:
    with pytest.raises(RecordError) as info:
        decode_tree(unseal(blob, key, context))
    return info.value.reason


def test_every_altered_byte_is_refused_before_decoding() -> None:
    blob = _record()
    reasons = set()
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x20
        reasons.add(_refused(bytes(bad)))
    assert reasons == {"not_checkpoint", "version", "signature"}


def test_another_key_another_graph_or_no_key_is_refused() -> None:
    blob = _record()
    assert _refused(blob, OTHER) == "signature"
    assert _refused(blob, KEY, b"shop2") == "signature"  # bound to its graph's name
    assert _refused(blob, None) == "signature"  # an insecure worker cannot verify it
    unsigned = _record(key=None)
    assert _refused(unsigned, KEY) == "signature"  # a keyed worker refuses unsigned records
    assert decode_tree(unseal(unsigned, None, b"shop"))["n"] == 3


def test_a_truncated_record_is_refused() -> None:
    blob = _record()
    reasons = {_refused(blob[:n]) for n in range(len(blob))}
    assert reasons == {"not_checkpoint", "truncated", "signature"}


def test_records_compress_and_the_decompressed_size_is_bounded() -> None:
    tree = {"zeros": np.zeros(1_000_000)}
    blob = seal(encode_tree(tree), KEY, b"g")
    assert len(blob) < 40_000  # 8 MB of zeros
    assert np.array_equal(decode_tree(unseal(blob, KEY, b"g"))["zeros"], tree["zeros"])
    with pytest.raises(RecordError) as info:
        unseal(blob, KEY, b"g", max_body=1_000_000)
    assert info.value.reason == "too_large"
    noise = {"x": np.random.default_rng(0).normal(size=1000)}
    assert len(seal(encode_tree(noise), KEY, b"g")) <= len(encode_tree(noise)) + 44


def test_a_signed_record_with_an_object_array_runs_nothing(tmp_path: Path) -> None:
    """Even with the right key (a writer's bug), a pickled object array is refused."""
    sentinel = tmp_path / "ran"
    payload = pickle.dumps(np.array([_Sentinel(sentinel)], dtype=object))
    meta = {"tree": {"a": {"$a": 0}}, "arrays": [{"dtype": "|O", "shape": [1]}]}
    blob = seal(_body(meta, payload), KEY, b"shop")
    assert _refused(blob) == "malformed"
    assert not sentinel.exists()
    meta["arrays"] = [{"dtype": "<f8", "shape": [len(payload) // 8]}]
    blob = seal(_body(meta, payload[: len(payload) // 8 * 8]), KEY, b"shop")
    assert decode_tree(unseal(blob, KEY, b"shop"))["a"].dtype == np.float64  # numbers, no objects
    assert not sentinel.exists()


class _Sentinel:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_a_malicious_pickle_where_a_checkpoint_goes_runs_nothing(tmp_path: Path) -> None:
    sentinel = tmp_path / "ran"
    evil = pickle.dumps(_Sentinel(sentinel))
    pickle.loads(evil)
    assert sentinel.exists()  # the payload does run when unpickled
    sentinel.unlink()
    spec = _chain_spec()
    codec = CheckpointCodec(KEY)
    header = _record()[:44]
    for blob in (evil, b"SRCA-CKPT-1\n" + evil, header + evil, MAGIC + evil, zlib.compress(evil)):
        with pytest.raises(CheckpointError) as info:
            codec.load(blob, spec)
        assert info.value.reason in {"not_checkpoint", "signature", "version", "truncated"}
    assert not sentinel.exists()


def test_only_numeric_and_boolean_little_endian_dtypes_are_allowed() -> None:
    kinds = {np.dtype(d).kind for d in ALLOWED_DTYPES}
    assert kinds == {"b", "i", "u", "f"}
    assert all(np.dtype(d).byteorder in "<|=" for d in ALLOWED_DTYPES)


# -- stateful pieces: the round-trip contract ------------------------------------------------


def check_round_trip(
    obj: Any, drive: Callable[[Any, int], Any], compare: Callable[[Any, Any], None]
) -> None:
    """Like river's ``check_pickling``: a copy through a sealed record behaves as the original.

    ``drive(obj, step)`` feeds one step and returns what the object said; both objects are
    driven on and must say the same and end equal (``compare``).
    """
    assert isinstance(obj, Stateful)
    tree = obj.to_state()
    twin = type(obj).from_state(_round_trip(tree))
    assert _same(flatten(tree)[0], flatten(twin.to_state())[0])
    for step in range(50):
        assert _same_output(drive(obj, step), drive(twin, step)), step
    compare(obj, twin)
    assert type(twin).from_state(twin.to_state()) is not twin


def _same_output(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(a == b)


def test_trigger_round_trip() -> None:
    cfg = TriggerConfig(threshold=5.0, close_after=2, confirm=2, cooldown=3)
    scores = np.random.default_rng(1).exponential(3.0, size=200)
    for cut in (0, 7, 31, 77, 140):
        t = Trigger("shop", "web", cfg)
        for i in range(cut):
            t.update_one(float(i), float(scores[i]))

        def drive(trig: Trigger, step: int, cut: int = cut) -> Any:
            i = cut + step
            return trig.update_one(float(i), None if i % 17 == 0 else float(scores[i]))

        check_round_trip(t, drive, lambda a, b: None)


def _bank_and_data() -> tuple[LinearBank, npt.NDArray[np.float64]]:
    rng = np.random.default_rng(2)
    parents = [
        np.array([], dtype=np.intp),
        np.array([0]),
        np.array([0, 1]),
        np.array([0, 1, 2]),
        np.array([2, 3, 1, 0]),
    ]
    data = rng.normal(size=(300, 5)).cumsum(axis=1)
    bank = LinearBank(parents, [0, 1, 2, 4], forgetting=0.01, ridge=1e-4)
    bank.learn_many(data[:120], rng.random((120, 5)) > 0.1)
    return bank, data


def test_linear_bank_round_trip() -> None:
    bank, data = _bank_and_data()

    def drive(b: LinearBank, step: int) -> Any:
        x = data[120 + step]
        out = b.predict(x)
        b.learn(x)
        return out

    def compare(a: LinearBank, b: LinearBank) -> None:
        for x, y in zip(a.coefficients(), b.coefficients(), strict=True):
            assert np.array_equal(x, y)
        assert np.array_equal(a.weight(), b.weight(), equal_nan=True)

    check_round_trip(bank, drive, compare)
    big = LinearBank([np.array([], dtype=np.intp)] * 40 + [np.arange(40)] * 600)  # groups by width
    check_round_trip(big, lambda b, s: b.predict(np.ones(640)), lambda a, b: None)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s["groups"][0].__setitem__("w", s["groups"][0]["w"][:-1]), "shape"),
        (lambda s: s["groups"][-1].__setitem__("sxx", s["groups"][-1]["sxx"] > 0), "dtype"),
        (lambda s: s.__setitem__("parents", s["parents"] + 100), "out of range"),
        (lambda s: s.__setitem__("groups", s["groups"][:1]), "groups"),
        (lambda s: s.__setitem__("forgetting", 2.0), "forgetting"),
        (lambda s: s.__setitem__("stale", "yes"), "true or false"),
        (lambda s: s.pop("members"), "missing"),
    ],
)  # fmt: skip
def test_linear_bank_refuses_a_tree_it_did_not_write(
    change: Callable[[dict[str, Any]], Any], match: str
) -> None:
    bank, _ = _bank_and_data()
    state = bank.to_state()
    change(state)
    with pytest.raises(StateError, match=match):
        LinearBank.from_state(state)


def test_aligner_round_trip() -> None:
    rng = np.random.default_rng(3)
    nodes = ["db", "api", "web"]
    events = [
        Sample("shop", nodes[int(rng.integers(3))], 1000.0 + float(rng.uniform(0, 400)), float(v))
        for v in rng.normal(size=400)
    ]
    events.sort(key=lambda s: s.ts + rng.uniform(0, 30))  # out of order
    al = Aligner(nodes, step=10.0, allowed_lateness=25.0, graph="shop", max_open_windows=8)
    for s in events[:200]:
        al.add_one(s)
    assert al.open_windows > 0

    def drive(a: Aligner, step: int) -> Any:
        outs = [a.add_one(s) for s in events[200 + 4 * step : 204 + 4 * step]]
        return [(r.status, r.snapshots) for r in outs]

    def compare(a: Aligner, b: Aligner) -> None:
        assert a.counts == b.counts
        assert a.forced == b.forced
        assert a.watermark == b.watermark
        assert a.flush() == b.flush()

    check_round_trip(al, drive, compare)
    check_round_trip(Aligner(nodes, step=1.0), drive, compare)  # empty


def test_aligner_refuses_a_tree_it_did_not_write() -> None:
    al = Aligner(["a", "b"], step=10.0)
    al.add_one(Sample("default", "a", 5.0, 1.0))
    state = al.to_state()
    state["present"] = np.ones((1, 3), dtype=bool)
    with pytest.raises(StateError, match="present"):
        Aligner.from_state(state)
    state = al.to_state()
    state["step"] = -1.0
    with pytest.raises(StateError, match="step"):
        Aligner.from_state(state)


def test_generator_round_trip() -> None:
    rng = np.random.default_rng(11)
    rng.normal(size=5)
    twin = rng_from_state(_round_trip({"rng": rng_to_state(rng)})["rng"])
    assert np.array_equal(rng.integers(0, 1000, size=20), twin.integers(0, 1000, size=20))
    with pytest.raises(StateError):
        rng_from_state({**rng_to_state(rng), "state": "-1"})
    with pytest.raises(StateError):
        rng_to_state(np.random.Generator(np.random.MT19937(0)))


# -- the graph state and the worker ----------------------------------------------------------


def _chain_spec(name: str = "shop", **engine: Any) -> GraphSpec:
    graph = CausalGraph([("db", "api"), ("api", "web")], name=name)
    return GraphSpec(
        name, graph, ("web",), step=10.0, engine=EngineConfig(warmup=20, n_samples=100, **engine)
    )


needs_engine_state = pytest.mark.skipif(
    not (hasattr(Engine, "to_state") and hasattr(Engine, "from_state")),
    reason="Engine.to_state()/Engine.from_state(graph, config, state) not in this build yet",
)


@needs_engine_state
def test_graph_state_round_trip() -> None:
    spec = _chain_spec()
    state = new_state(spec)
    rng = np.random.default_rng(4)
    for t in range(60):
        db = float(rng.gamma(2.0, 0.1))
        for node, value in (("db", db), ("api", db + 0.1), ("web", db + 0.3)):
            for snap in state.aligner.add_one(Sample("shop", node, 10.0 * t, value)).snapshots:
                state.engine.process_one(snap)
    state.offsets = {0: 59, 3: 7}
    codec = CheckpointCodec(KEY)
    twin = codec.load(codec.dump(state), spec)
    assert twin.restored
    assert twin.offsets == state.offsets
    assert twin.engine.n_snapshots == state.engine.n_snapshots
    assert _same(flatten(twin.engine.to_state())[0], flatten(state.engine.to_state())[0])
    assert twin.aligner.flush() == state.aligner.flush()


class _BigEngine:
    """Stands in for an engine with a large state (the codec calls ``to_state``, and reads
    ``graph`` for the topology it stores)."""

    def __init__(self, n: int, *, random: bool) -> None:
        self.graph = _chain_spec().graph
        rng = np.random.default_rng(0)
        self.samples = rng.normal(size=n) if random else np.zeros(n)

    def to_state(self) -> dict[str, Any]:
        return {"samples": self.samples}


def test_a_state_too_large_for_the_topic_is_compressed_or_refused() -> None:
    spec = _chain_spec()
    aligner = new_state(spec).aligner
    n = 3 * MAX_CHECKPOINT_BYTES // 16  # 24 MiB of float64
    codec = CheckpointCodec(KEY)
    compressible = GraphState("shop", "f", cast(Engine, _BigEngine(n, random=False)), aligner)
    assert len(codec.dump(compressible)) < MAX_CHECKPOINT_BYTES  # compressed to fit
    big = GraphState("shop", "f", cast(Engine, _BigEngine(n, random=True)), aligner)
    with pytest.raises(CheckpointError, match="limit of 16777216 bytes") as info:
        codec.dump(big)
    assert info.value.reason == "too_large"


def test_a_graph_whose_state_cannot_fit_is_refused_at_load() -> None:
    edges = [(f"n{i}", f"n{i + 1}") for i in range(4499)]  # 4,500 nodes
    spec = GraphSpec("fleet", CausalGraph(edges, name="fleet"), ("n4499",))
    assert state_size_bound(spec) > MAX_CHECKPOINT_BYTES
    with pytest.raises(ConfigError, match=r"graph 'fleet'.*limit of 16 MiB.*lower 'reservoir'"):
        check_checkpointable(spec)
    small = _chain_spec()
    check_checkpointable(small)
    assert state_size_bound(small) < 1 << 20


def test_a_graph_with_river_mechanisms_is_refused_at_load() -> None:
    spec = GraphSpec(
        "shop",
        CausalGraph([("db", "api"), ("api", "web")], name="shop"),
        ("web",),
        mechanisms={"db": "linear", "web": "tree"},
    )
    with pytest.raises(ConfigError, match="node 'web' has mechanism 'tree'"):
        check_checkpointable(spec)
    check_checkpointable(
        GraphSpec(spec.name, spec.graph, spec.targets, mechanisms={"web": "linear"})
    )


def test_the_codec_takes_its_key_from_the_settings(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match="STREAM_RCA_CHECKPOINT_KEY") as info:
        CheckpointCodec.from_settings(Settings())
    assert "STREAM_RCA_INSECURE_NO_CHECKPOINT_KEY" in str(info.value)
    with pytest.raises(ConfigError, match="is 5 characters long") as info:
        CheckpointCodec.from_settings(Settings(checkpoint_key="short"))
    assert "short" not in str(info.value).replace("is 5 characters", "")
    secret = "a-long-enough-secret-key"
    codec = CheckpointCodec.from_settings(Settings(checkpoint_key=secret))
    assert codec.key == secret.encode()
    assert secret not in repr(codec)
    assert secret not in repr(Settings(checkpoint_key=secret))
    with caplog.at_level(logging.WARNING, logger="stream_rca.streaming"):
        insecure = CheckpointCodec.from_settings(Settings(insecure_no_checkpoint_key=True))
    assert insecure.key is None
    assert "WITHOUT a checkpoint key" in caplog.text
    env = {"STREAM_RCA_CHECKPOINT_KEY": secret}
    assert CheckpointCodec.from_settings(Settings.from_env(env)).key == secret.encode()


def test_the_worker_refuses_to_start_without_a_key() -> None:
    with pytest.raises(ConfigError, match="checkpoint key"):
        make_app(Settings(app_id="t"), [_chain_spec()], worker_id="t")
    river = GraphSpec("shop", _chain_spec().graph, ("web",), mechanisms={"api": "knn"})
    with pytest.raises(ConfigError, match="node 'api' has mechanism 'knn'"):
        make_app(Settings(app_id="t", checkpoint_key="k" * 16), [river], worker_id="t")


def test_the_web_server_is_off_and_without_table_views() -> None:
    app = make_app(Settings(app_id="t", checkpoint_key="k" * 16), [_chain_spec()], worker_id="t")
    assert not app.conf.web_enabled
    on = Settings(app_id="t", checkpoint_key="k" * 16, web_port=6066, metrics_addr="0.0.0.0")
    app = make_app(on, [_chain_spec()], worker_id="t")
    assert app.conf.web_enabled
    assert app.conf.web_bind == "127.0.0.1"  # not the metrics address
    assert not app.conf.web_tables_enabled
    assert not app.conf.web_router_enabled
    from faust.web.drivers.aiohttp import Web

    served = [bp for _, bp in Web(app)._enabled_blueprints()]
    assert served == ["faust.web.apps.production_index:blueprint"]


def test_compose_binds_nothing_of_the_web_server() -> None:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    for name in ("worker-1", "worker-2"):
        service = doc["services"][name]
        assert "ports" not in service
        env = {k: str(v) for k, v in service["environment"].items()}
        assert env["STREAM_RCA_WEB_PORT"] == "0"
        assert env["STREAM_RCA_CHECKPOINT_KEY"].startswith("${STREAM_RCA_CHECKPOINT_KEY:?")
        assert "6066" not in json.dumps(service)


def test_the_refusal_names_what_would_fit() -> None:
    """A 1,000-node chain is too large with the kept values of refreshed residuals; the message
    says so, and both of its remedies (the reservoir it names, refresh off) do fit."""
    import dataclasses
    import re

    edges = [(f"n{i}", f"n{i + 1}") for i in range(999)]
    spec = GraphSpec("mid", CausalGraph(edges, name="mid"), ("n999",))
    with pytest.raises(ConfigError, match="refresh_residuals: false") as info:
        check_checkpointable(spec)
    fits = int(re.search(r"at most about (\d+) fits", str(info.value)).group(1))  # type: ignore[union-attr]
    for engine in (
        dataclasses.replace(spec.engine, reservoir=fits),
        dataclasses.replace(spec.engine, refresh_residuals=False),
    ):
        check_checkpointable(dataclasses.replace(spec, engine=engine))

"""State as data: state trees, their flat encoding, and authenticated checkpoint records.

Every stateful object of the pipeline describes itself as a **state tree**
(:meth:`Stateful.to_state`): nested ``dict`` (string keys) and ``list`` of JSON scalars (``str``,
``int``, ``float``, ``bool``, ``None``) and numpy arrays of numeric or boolean dtype. Nothing else:
no objects, no classes, no callables. It is rebuilt by ``from_state``, which validates what it
reads (the helpers :func:`get_array`, :func:`get_int`... raise :class:`StateError` naming the
path of a bad entry).

A tree is stored as a record::

    magic "SRCACKPT" | version u16 | flags u16 | HMAC-SHA256 (32 bytes) | body
    body (zlib-compressed when flag 1 is set) = u32 meta length | meta (JSON) | array bytes

``meta`` holds the tree with each array replaced by ``{"$a": i}``, and the dtype and shape of
every array; the array bytes follow in that order, C-contiguous, little-endian. The HMAC covers
a context (the graph's name), the header and the stored body, and it is checked with
:func:`hmac.compare_digest` before anything is decompressed or parsed. Loading never unpickles
and accepts only the dtypes of :data:`ALLOWED_DTYPES`.

Examples
--------
>>> import numpy as np
>>> tree = {"count": 3, "samples": np.arange(4.0), "tags": ["a", None]}
>>> blob = seal(encode_tree(tree), b"a key of sixteen bytes", b"shop")
>>> back = decode_tree(unseal(blob, b"a key of sixteen bytes", b"shop"))
>>> back["count"], back["samples"].tolist(), back["tags"]
(3, [0.0, 1.0, 2.0, 3.0], ['a', None])
>>> unseal(blob, b"another key, also long", b"shop")
Traceback (most recent call last):
...
stream_rca.core.checkpoint.RecordError: signature: the record's HMAC does not verify ...
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
import zlib
from collections.abc import Mapping
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from stream_rca.errors import StreamRCAError

__all__ = [
    "ALLOWED_DTYPES",
    "FORMAT_VERSION",
    "MAGIC",
    "RecordError",
    "StateError",
    "StateTree",
    "Stateful",
    "decode_tree",
    "encode_tree",
    "flatten",
    "get_array",
    "get_bool",
    "get_float",
    "get_int",
    "get_list",
    "get_str",
    "get_tree",
    "record_flags",
    "rng_from_state",
    "rng_to_state",
    "seal",
    "unflatten",
    "unseal",
]

StateTree = dict[str, Any]
"""A state tree: str-keyed dicts and lists of JSON scalars and numeric/bool numpy arrays."""

MAGIC = b"SRCACKPT"
FORMAT_VERSION = 2
"""Version 1 was a pickle; it is refused like any other unknown version."""

FLAG_ZLIB = 1
FLAG_UNSIGNED = 2
_HEADER = struct.Struct(">8sHH")
_MAC_SIZE = hashlib.sha256().digest_size
_PREFIX = _HEADER.size + _MAC_SIZE
_DOMAIN = b"stream-rca/checkpoint\x00"
_MAX_DEPTH = 64

_ALLOWED = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
ALLOWED_DTYPES = frozenset(np.dtype(t).str for t in (*_ALLOWED, "<f2", "<f4", "<f8"))
"""Array dtypes a record may hold (little-endian numeric and boolean); nothing else loads."""


class StateError(StreamRCAError, ValueError):
    """A state tree that is not valid: a wrong type, dtype or shape; the message names its path."""


class RecordError(StreamRCAError, ValueError):
    """A checkpoint record that is refused.

    Parameters
    ----------
    reason
        A short code: ``not_checkpoint``, ``version``, ``truncated``, ``signature``,
        ``too_large`` or ``malformed``; used as a metric label.
    message
        What was wrong, for people.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@runtime_checkable
class Stateful(Protocol):
    """An object whose state is data: :meth:`to_state` and the classmethod :meth:`from_state`.

    The contract (checked for every implementation in ``tests/unit/test_checkpoint.py``):
    ``type(x).from_state(x.to_state())`` behaves exactly as ``x`` from then on, and
    ``from_state`` raises :class:`StateError` for a tree it did not write. Objects whose
    structure comes from a configuration (the engine) take it as extra leading arguments of
    ``from_state``; the tree then holds learned data only.
    """

    def to_state(self) -> StateTree:
        """The object's state as a state tree."""
        ...

    @classmethod
    def from_state(cls, state: StateTree) -> Self:
        """Rebuild an object from :meth:`to_state`'s tree; :class:`StateError` if invalid."""
        ...


# -- tree <-> (meta, arrays) ---------------------------------------------------------------


def flatten(tree: Mapping[str, Any]) -> tuple[dict[str, Any], list[npt.NDArray[Any]]]:
    """Split a state tree into JSON-ready meta and its arrays.

    Returns
    -------
    meta, arrays
        ``meta = {"tree": ..., "arrays": [{"dtype", "shape"}, ...]}`` where each array of the
        tree is ``{"$a": i}`` and a non-finite float ``{"$f": "nan" | "inf" | "-inf"}``;
        ``arrays[i]`` little-endian and C-contiguous.

    Raises
    ------
    StateError
        For anything that is not a state tree (an object array, a tuple key, a class...).
    """
    arrays: list[npt.NDArray[Any]] = []

    def walk(node: Any, path: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise StateError(f"{path}: nested deeper than {_MAX_DEPTH} levels")
        if node is None or isinstance(node, bool | str):
            return node
        if isinstance(node, int | np.integer) and not isinstance(node, np.bool_):
            return int(node)
        if isinstance(node, float | np.floating):
            value = float(node)
            return value if math.isfinite(value) else {"$f": repr(value)}
        if isinstance(node, np.bool_):
            return bool(node)
        if isinstance(node, np.ndarray):
            arr = node if node.flags.c_contiguous else node.copy(order="C")  # keeps 0-d
            if arr.dtype.byteorder == ">":
                arr = arr.astype(arr.dtype.newbyteorder("<"))
            if arr.dtype.str not in ALLOWED_DTYPES:
                raise StateError(f"{path}: arrays of dtype {arr.dtype} cannot be checkpointed")
            arrays.append(arr)
            return {"$a": len(arrays) - 1}
        if isinstance(node, Mapping):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if not isinstance(key, str) or key.startswith("$"):
                    raise StateError(f"{path}: key {key!r} is not a string without a leading $")
                out[key] = walk(value, f"{path}.{key}", depth + 1)
            return out
        if isinstance(node, list | tuple):
            return [walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]
        raise StateError(f"{path}: a {type(node).__name__} is not state data")

    encoded = walk(tree, "state", 0)
    if not isinstance(encoded, dict):
        raise StateError("state: a state tree is a dict")
    specs = [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]
    return {"tree": encoded, "arrays": specs}, arrays


def unflatten(meta: Mapping[str, Any], arrays: list[npt.NDArray[Any]]) -> StateTree:
    """Rebuild a state tree from :func:`flatten`'s output; every array is used exactly once."""
    used = [False] * len(arrays)

    def walk(node: Any, path: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise StateError(f"{path}: nested deeper than {_MAX_DEPTH} levels")
        if node is None or isinstance(node, bool | str | int):
            return node
        if isinstance(node, float):
            if not math.isfinite(node):  # JSON's 1e999 parses as inf
                raise StateError(f"{path}: a non-finite float outside a $f marker")
            return node
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]
        if isinstance(node, dict):
            if "$a" in node:
                i = node["$a"]
                if set(node) != {"$a"} or type(i) is not int or not 0 <= i < len(arrays):
                    raise StateError(f"{path}: bad array reference {node!r}")
                if used[i]:
                    raise StateError(f"{path}: array {i} is referenced twice")
                used[i] = True
                return arrays[i]
            if "$f" in node:
                text = node["$f"]
                if set(node) != {"$f"} or text not in ("nan", "inf", "-inf"):
                    raise StateError(f"{path}: bad float {node!r}")
                return float(text)
            out: dict[str, Any] = {}
            for key, value in node.items():
                if key.startswith("$"):
                    raise StateError(f"{path}: unknown marker {key!r}")
                out[key] = walk(value, f"{path}.{key}", depth + 1)
            return out
        raise StateError(f"{path}: {type(node).__name__} is not state data")

    tree = walk(meta.get("tree"), "state", 0)
    if not isinstance(tree, dict):
        raise StateError("state: a state tree is a dict")
    if not all(used):
        raise StateError(f"state: {used.count(False)} arrays are not referenced")
    return tree


# -- tree <-> body bytes ---------------------------------------------------------------------


def encode_tree(tree: Mapping[str, Any]) -> bytes:
    """The uncompressed body of a record: meta length, meta JSON, array bytes."""
    meta, arrays = flatten(tree)
    text = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode()
    return b"".join([struct.pack(">I", len(text)), text, *(a.tobytes() for a in arrays)])


def decode_tree(body: bytes) -> StateTree:
    """Parse a body written by :func:`encode_tree`, strictly.

    Raises
    ------
    RecordError
        ``malformed`` (with the reason) for any inconsistency: a bad length, invalid JSON, a
        dtype outside :data:`ALLOWED_DTYPES`, shapes whose sizes do not add up to the bytes.
    """
    try:
        return _decode_tree(memoryview(body))
    except RecordError:
        raise
    except (StateError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise RecordError("malformed", str(exc)) from None


def _decode_tree(body: memoryview) -> StateTree:
    if len(body) < 4:
        raise StateError("the body is shorter than its length field")
    (n_meta,) = struct.unpack_from(">I", body)
    if 4 + n_meta > len(body):
        raise StateError(f"meta of {n_meta} bytes does not fit a body of {len(body)}")
    meta = json.loads(bytes(body[4 : 4 + n_meta]).decode("utf-8"), parse_constant=_no_constant)
    if not isinstance(meta, dict) or not isinstance(meta.get("arrays"), list):
        raise StateError("meta is not an object with an 'arrays' list")
    offset = 4 + n_meta
    arrays: list[npt.NDArray[Any]] = []
    for i, spec in enumerate(meta["arrays"]):
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape"}:
            raise StateError(f"array {i}: bad description {spec!r}")
        dtype, shape = spec["dtype"], spec["shape"]
        if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
            raise StateError(f"array {i}: dtype {dtype!r} is not allowed")
        if (
            not isinstance(shape, list)
            or len(shape) > 32
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            raise StateError(f"array {i}: bad shape {shape!r}")
        dt = np.dtype(dtype)
        size = math.prod(shape) * dt.itemsize
        if offset + size > len(body):
            raise StateError(f"array {i}: {size} bytes announced, {len(body) - offset} left")
        arr = np.frombuffer(body, dtype=dt, count=math.prod(shape), offset=offset)
        arrays.append(arr.reshape(shape).copy())
        offset += size
    if offset != len(body):
        raise StateError(f"{len(body) - offset} bytes after the last array")
    return unflatten(meta, arrays)


def _no_constant(name: str) -> Any:
    raise StateError(f"JSON constant {name} is not allowed")


# -- body <-> authenticated record -----------------------------------------------------------


def _mac(key: bytes, context: bytes, header: bytes, body: bytes | memoryview) -> bytes:
    mac = hmac.new(key, _DOMAIN, hashlib.sha256)
    mac.update(struct.pack(">I", len(context)))
    mac.update(context)
    mac.update(header)
    mac.update(body)
    return mac.digest()


def seal(body: bytes, key: bytes | None, context: bytes, *, compress: int = 1) -> bytes:
    """Wrap a body into a record authenticated for ``context`` (the graph's name).

    Parameters
    ----------
    body
        From :func:`encode_tree`.
    key
        The HMAC key; ``None`` writes an unsigned record (HMAC with an empty key: an integrity
        check only, for the explicitly insecure mode).
    context
        Bytes the record is bound to: a record sealed for one graph does not verify for another.
    compress
        zlib level (0: never); the compressed body is kept only when it is smaller.
    """
    flags = 0 if key is not None else FLAG_UNSIGNED
    if compress:
        packed = zlib.compress(body, compress)
        if len(packed) < len(body):
            body, flags = packed, flags | FLAG_ZLIB
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, flags)
    return header + _mac(key or b"", context, header, body) + body


def record_flags(blob: bytes) -> int | None:
    """The flags of a record with a valid header, else ``None`` (for log messages only)."""
    if len(blob) < _HEADER.size:
        return None
    magic, version, flags = _HEADER.unpack_from(blob)
    return int(flags) if magic == MAGIC and version == FORMAT_VERSION else None


def unseal(blob: bytes, key: bytes | None, context: bytes, *, max_body: int = 1 << 30) -> bytes:
    """Verify a record and return its (decompressed) body; nothing is parsed before the HMAC.

    Parameters
    ----------
    blob
        The stored record.
    key
        The HMAC key (``None``: the insecure mode, which accepts only unsigned records).
    context
        What the record must be bound to (the graph's name).
    max_body
        Largest decompressed body accepted.

    Raises
    ------
    RecordError
        ``not_checkpoint``, ``version``, ``truncated``, ``signature`` or ``too_large``.
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise RecordError("not_checkpoint", f"a {type(blob).__name__} is not a record")
    view = memoryview(blob)
    if len(view) < len(MAGIC) or bytes(view[: len(MAGIC)]) != MAGIC:
        raise RecordError("not_checkpoint", "the value does not start with the checkpoint magic")
    if len(view) < _PREFIX:
        raise RecordError("truncated", f"{len(view)} bytes is shorter than a record's header")
    _, version, flags = _HEADER.unpack_from(view)
    if version != FORMAT_VERSION:
        raise RecordError(
            "version", f"format version {version}, this worker reads {FORMAT_VERSION} only"
        )
    header, mac, body = view[: _HEADER.size], view[_HEADER.size : _PREFIX], view[_PREFIX:]
    expected = _mac(key or b"", context, bytes(header), body)
    if not hmac.compare_digest(expected, bytes(mac)):
        hint = "it was written without a key" if flags & FLAG_UNSIGNED else "wrong key or altered"
        raise RecordError(
            "signature",
            f"the record's HMAC does not verify ({hint}, or it is truncated or of another graph)",
        )
    if not flags & FLAG_ZLIB:
        return bytes(body)
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, max_body)
    except zlib.error as exc:
        raise RecordError("malformed", f"cannot decompress: {exc}") from None
    if inflater.unconsumed_tail:
        raise RecordError("too_large", f"the body decompresses to more than {max_body} bytes")
    if not inflater.eof:
        raise RecordError("truncated", "the compressed body ends early")
    return out


# -- helpers for from_state ------------------------------------------------------------------


def get_tree(state: Mapping[str, Any], name: str) -> StateTree:
    """``state[name]``, which must be a dict."""
    value = _get(state, name)
    if not isinstance(value, dict):
        raise StateError(f"{name}: expected a mapping, got {type(value).__name__}")
    return value


def get_list(state: Mapping[str, Any], name: str) -> list[Any]:
    """``state[name]``, which must be a list."""
    value = _get(state, name)
    if not isinstance(value, list):
        raise StateError(f"{name}: expected a list, got {type(value).__name__}")
    return value


def get_str(state: Mapping[str, Any], name: str) -> str:
    """``state[name]``, which must be a str."""
    value = _get(state, name)
    if not isinstance(value, str):
        raise StateError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def get_bool(state: Mapping[str, Any], name: str) -> bool:
    """``state[name]``, which must be a bool."""
    value = _get(state, name)
    if not isinstance(value, bool):
        raise StateError(f"{name}: expected true or false, got {type(value).__name__}")
    return value


def get_int(state: Mapping[str, Any], name: str, *, low: int | None = None) -> int:
    """``state[name]``, an int (not a bool), at least ``low`` if given."""
    value = _get(state, name)
    if type(value) is not int:
        raise StateError(f"{name}: expected an integer, got {type(value).__name__}")
    if low is not None and value < low:
        raise StateError(f"{name}: expected at least {low}, got {value}")
    return value


def get_float(state: Mapping[str, Any], name: str, *, finite: bool = True) -> float:
    """``state[name]`` as a float (ints accepted); finite unless ``finite=False``."""
    value = _get(state, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if finite and not math.isfinite(value):
        raise StateError(f"{name}: expected a finite number, got {value}")
    return value


def get_array(
    state: Mapping[str, Any],
    name: str,
    dtype: npt.DTypeLike,
    shape: tuple[int | None, ...] | None = None,
) -> npt.NDArray[Any]:
    """``state[name]``: an array of exactly ``dtype`` and ``shape`` (``None``: any length).

    Examples
    --------
    >>> import numpy as np
    >>> get_array({"w": np.zeros(3)}, "w", np.float64, (3,)).shape
    (3,)
    >>> get_array({"w": np.zeros(3)}, "w", np.int64, (3,))
    Traceback (most recent call last):
    ...
    stream_rca.core.checkpoint.StateError: w: expected dtype int64, got float64
    """
    value = _get(state, name)
    if not isinstance(value, np.ndarray):
        raise StateError(f"{name}: expected an array, got {type(value).__name__}")
    want = np.dtype(dtype)
    if value.dtype != want:
        raise StateError(f"{name}: expected dtype {want}, got {value.dtype}")
    if shape is not None and (
        value.ndim != len(shape)
        or any(s is not None and s != d for s, d in zip(shape, value.shape, strict=True))
    ):
        raise StateError(f"{name}: expected shape {shape}, got {value.shape}")
    return value


def _get(state: Mapping[str, Any], name: str) -> Any:
    if not isinstance(state, Mapping):
        raise StateError(f"{name}: the enclosing state is a {type(state).__name__}, not a mapping")
    try:
        return state[name]
    except KeyError:
        raise StateError(f"{name}: missing from the state") from None


def rng_to_state(rng: np.random.Generator) -> StateTree:
    """A PCG64 generator's state as data (its 128-bit words as decimal strings)."""
    st = rng.bit_generator.state
    if st.get("bit_generator") != "PCG64":
        raise StateError(f"only PCG64 generators are checkpointed, not {st.get('bit_generator')}")
    return {
        "bit_generator": "PCG64",
        "state": str(st["state"]["state"]),
        "inc": str(st["state"]["inc"]),
        "has_uint32": int(st["has_uint32"]),
        "uinteger": int(st["uinteger"]),
    }


def rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """The generator of :func:`rng_to_state`, in the same position of its stream.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.random.default_rng(7)
    >>> _ = a.random(3)
    >>> b = rng_from_state(rng_to_state(a))
    >>> bool(a.random() == b.random())
    True
    """
    if get_str(state, "bit_generator") != "PCG64":
        raise StateError("bit_generator: only PCG64 is supported")
    words = []
    for name in ("state", "inc"):
        text = get_str(state, name)
        if not text.isdigit() or len(text) > 40 or int(text) >= 1 << 128:
            raise StateError(f"{name}: expected a 128-bit unsigned integer in decimal")
        words.append(int(text))
    has = get_int(state, "has_uint32", low=0)
    uinteger = get_int(state, "uinteger", low=0)
    if has > 1 or uinteger >= 1 << 32:
        raise StateError("has_uint32/uinteger out of range")
    bitgen = np.random.PCG64()
    bitgen.state = {
        "bit_generator": "PCG64",
        "state": {"state": words[0], "inc": words[1]},
        "has_uint32": has,
        "uinteger": uinteger,
    }
    return np.random.Generator(bitgen)

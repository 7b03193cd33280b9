"""decode_batch gives what decode_event gives, message by message: samples or the same error."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.errors import DecodeError
from stream_rca.io.events import decode_event
from stream_rca.io.fastdecode import decode_batch

NOW = 1_700_000_100.0
KNOWN = {"shop": frozenset({"api", "db", ":x", "graph"}), "b": frozenset({"n"})}

HOSTILE: list[bytes | None] = [
    b'{"graph":"shop","node":"api","ts":1700000000,"value":0.5}',
    b'{"graph": "shop", "node": "api", "ts": 1700000000.5, "value": -3}',
    b'{"graph" : "shop", "node" : "api", "ts" : 1700000000, "value" : 1}',
    b'{"graph":"shop","ts":1700000000,"values":{"api":1,"db":2.5}}',
    b'{"graph":"shop","ts":1700000000,"values":{}}',
    b'{"graph":"shop","graph":"b","node":"n","ts":1700000000,"value":1}',
    b'{"graph":"shop","gr\\u0061ph":"b","node":"api","ts":1700000000,"value":1}',
    b'{"graph":"shop","ts":1700000000,"values":{"api":1,"api":2}}',
    b'{"graph":"shop","ts":1700000000,"values":{"api":1,"db":2},"node":null}',
    b'{"graph":"shop","node":"api","ts":1700000000,"value":null}',
    b'{"graph":"shop","node":"api","ts":1700000000,"value":1,"extra":{"a":1}}',
    b'{"graph":"shop","node":"api","ts":1700000000,"value":1,"x":1,"x":2}',
    b'{"graph":"shop","node":":x","ts":1700000000,"value":1}',
    b'{"graph":"shop","node":"graph","ts":1700000000,"value":1}',
    b'\xef\xbb\xbf{"graph":"shop","node":"api","ts":1700000000,"value":1}',
    b'{"graph":"shop","node":"api","ts":1700000000,"value":NaN}',
    b'{"graph":"shop","node":"api","ts":1700000000,"value":Infinity}',
    b'{"graph":"shop","node":"api","ts":1700000000,"value":1e999}',
    b'{"graph":"shop","node":"api","ts":1700000000,"value":' + b"9" * 400 + b"}",
    b'{"graph":"shop","node":"api","ts":1700000000,"value":123456789012345678901234567}',
    b'{"graph":"shop","node":"api","ts":1700000000,"value":true}',
    b'{"graph":"shop","node":"api","ts":true,"value":1}',
    b'{"graph":"shop","node":"api","ts":"1700000000","value":1}',
    b'{"graph":"shop","node":"api","ts":"2023-11-14T22:13:20Z","value":1}',
    b'{"graph":"shop","node":"api","ts":1700000000000,"value":1}',
    b'{"graph":"shop","node":"api","ts":100,"value":1}',
    b'{"graph":"shop","node":"api","ts":1700009999,"value":1}',
    b'{"graph":"nope","node":"api","ts":1700000000,"value":1}',
    b'{"graph":"shop","node":"www","ts":1700000000,"value":1}',
    b'{"graph":"","node":"api","ts":1700000000,"value":1}',
    b'{"graph":"shop","node":"","ts":1700000000,"value":1}',
    b'{"graph":"shop","ts":1700000000,"values":{"api":1,"www":2}}',
    b'{"graph":"shop","ts":1700000000,"values":[1,2]}',
    b'{"graph":"shop","node":"api","ts":1700000000}',
    b"[1, 2]",
    b"{",
    b"",
    b'{"graph":"shop","node":"api\xff","ts":1700000000,"value":1}',
    b'{"graph":"shop","node":"api","ts":1700000000,"value":1}' + b" " * 2_000_000,
    None,
]


def outcome(x: object) -> object:
    """Comparable form: the samples, or (reason, message)."""
    if isinstance(x, DecodeError):
        return (x.reason, x.message)
    return x


def detailed(raw: bytes | None) -> object:
    try:
        return decode_event(raw, known=KNOWN, now=NOW)  # type: ignore[arg-type]
    except DecodeError as exc:
        return (exc.reason, exc.message)


def test_every_hostile_message_decodes_as_the_detailed_decoder_says() -> None:
    got = decode_batch(HOSTILE, known=KNOWN, now=NOW)
    assert len(got) == len(HOSTILE)
    for raw, decoded in zip(HOSTILE, got, strict=True):
        assert outcome(decoded) == detailed(raw), raw


def test_a_repeated_key_is_malformed_even_where_a_json_decoder_keeps_the_last() -> None:
    (got,) = decode_batch([HOSTILE[5]], known=KNOWN, now=NOW)
    assert isinstance(got, DecodeError)
    assert got.reason == "malformed_json"


fields = st.sampled_from(["graph", "node", "ts", "value", "values", "x"])
scalars = st.one_of(
    st.sampled_from(["shop", "api", "db", "b", "n", "", ":x", "2023-11-14T22:13:20Z"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
    st.sampled_from([1_700_000_000, 1_700_000_000.25, 1_700_000_200, 5]),
    st.booleans(),
    st.none(),
)
values = st.dictionaries(st.sampled_from(["api", "db", "www", ""]), scalars, max_size=3)
documents = st.lists(st.tuples(fields, st.one_of(scalars, values)), max_size=6)


def render(pairs: list[tuple[str, object]], spaced: bool) -> bytes:
    """A JSON object with the pairs in order (repeated keys kept), NaN written as NaN."""
    sep = ": " if spaced else ":"
    body = ", ".join(f"{json.dumps(k)}{sep}{json.dumps(v)}" for k, v in pairs)
    return ("{" + body + "}").encode()


@settings(max_examples=400, deadline=None)
@given(documents, st.booleans())
def test_random_documents_decode_as_the_detailed_decoder_says(
    pairs: list[tuple[str, object]], spaced: bool
) -> None:
    raw = render(pairs, spaced)
    (got,) = decode_batch([raw], known=KNOWN, now=NOW)
    assert outcome(got) == detailed(raw)

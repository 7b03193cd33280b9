"""The input event codec and dead-letter records."""

from __future__ import annotations

import base64
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_rca.errors import DecodeError
from stream_rca.io import (
    DEAD_LETTER_REASONS,
    Sample,
    dead_letter_record,
    decode_event,
    encode_batch,
    encode_event,
)

TS = 1_700_000_000.0
KNOWN = {"shop": {"api", "db", "web"}}


def reason_of(raw: bytes | str, **kwargs: object) -> str:
    with pytest.raises(DecodeError) as info:
        decode_event(raw, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason in DEAD_LETTER_REASONS
    assert info.value.message
    return info.value.reason


def test_single_form() -> None:
    raw = b'{"graph": "shop", "node": "api", "ts": 1700000000, "value": 1}'
    assert decode_event(raw, known=KNOWN, now=TS) == [Sample("shop", "api", TS, 1.0)]


def test_batch_form_keeps_message_order() -> None:
    raw = '{"graph": "shop", "ts": 1700000000.5, "values": {"web": 2.5, "api": 0.42}}'
    assert decode_event(raw, known=KNOWN) == [
        Sample("shop", "web", TS + 0.5, 2.5),
        Sample("shop", "api", TS + 0.5, 0.42),
    ]


def test_empty_batch_is_no_samples() -> None:
    assert decode_event(b'{"graph": "shop", "ts": 1700000000, "values": {}}') == []


@pytest.mark.parametrize(
    "ts",
    [
        '"2023-11-14T22:13:20Z"',
        '"2023-11-14t22:13:20z"',
        '"2023-11-14 23:13:20+01:00"',
        '"2023-11-14T22:13:20.000Z"',
        '"1700000000"',
        "1.7e9",
    ],
)
def test_timestamp_forms(ts: str) -> None:
    raw = f'{{"graph": "g", "node": "a", "ts": {ts}, "value": 0}}'
    assert decode_event(raw)[0].ts == TS


def test_extra_fields_are_ignored() -> None:
    raw = b'{"graph": "g", "node": "a", "ts": 1700000000, "value": 0, "unit": "s"}'
    assert decode_event(raw) == [Sample("g", "a", TS, 0.0)]


def test_utf8_bom_and_non_ascii_names() -> None:
    raw = '\ufeff{"graph": "g", "node": "caché", "ts": 1700000000, "value": 1}'.encode()
    assert decode_event(raw)[0].node == "caché"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b'{"graph": "g"', "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),
        (
            b'{"graph": "g", "graph": "h", "node": "a", "ts": 1700000000, "value": 1}',
            "malformed_json",
        ),
        (b"[" * 100_000, "malformed_json"),
        (
            b'{"graph":"g","node":"a","ts":1700000000,"value":' + b"1" * 5000 + b"}",
            "malformed_json",
        ),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"{}", "missing_field"),
        (b'{"graph": "g", "node": "a", "ts": 1700000000}', "missing_field"),
        (b'{"graph": "g", "values": {"a": 1}}', "missing_field"),
        (b'{"graph": 1, "node": "a", "ts": 1700000000, "value": 1}', "wrong_type"),
        (b'{"graph": "", "node": "a", "ts": 1700000000, "value": 1}', "wrong_type"),
        (b'{"graph": "g", "node": 3, "ts": 1700000000, "value": 1}', "wrong_type"),
        (b'{"graph": "g", "node": "a", "ts": 1700000000, "value": "1"}', "wrong_type"),
        (b'{"graph": "g", "node": "a", "ts": 1700000000, "value": true}', "wrong_type"),
        (b'{"graph": "g", "node": "a", "ts": 1700000000, "value": null}', "wrong_type"),
        (b'{"graph": "g", "node": "a", "ts": true, "value": 1}', "wrong_type"),
        (b'{"graph": "g", "node": "a", "ts": [1], "value": 1}', "wrong_type"),
        (b'{"graph": "g", "ts": 1700000000, "values": [1]}', "wrong_type"),
        (b'{"graph": "g", "ts": 1700000000, "values": {"a": "x"}}', "wrong_type"),
        (b'{"graph": "g", "ts": 1700000000, "values": {"": 1}}', "wrong_type"),
        (b'{"graph": "g", "node": "a", "ts": 1700000000, "values": {"a": 1}}', "wrong_type"),
        (b'{"graph": "g", "node": "a", "ts": "yesterday", "value": 1}', "bad_timestamp"),
        (b'{"graph": "g", "node": "a", "ts": "2023-11-14T22:13:20", "value": 1}', "bad_timestamp"),
        (b'{"graph": "g", "node": "a", "ts": "2023-02-30T00:00:00Z", "value": 1}', "bad_timestamp"),
        (b'{"graph": "g", "node": "a", "ts": -5, "value": 1}', "bad_timestamp"),
        (b'{"graph": "g", "node": "a", "ts": 0, "value": 1}', "bad_timestamp"),
        (b'{"graph": "g", "node": "a", "ts": "1999-12-31T23:59:59Z", "value": 1}', "bad_timestamp"),
        (b'{"graph": "g", "node": "a", "ts": 1700000000000, "value": 1}', "bad_timestamp"),
        (b'{"graph": "g", "node": "a", "ts": NaN, "value": 1}', "bad_timestamp"),
        (b'{"graph": "g", "node": "a", "ts": 1700000000, "value": NaN}', "non_finite_value"),
        (b'{"graph": "g", "node": "a", "ts": 1700000000, "value": Infinity}', "non_finite_value"),
        (b'{"graph": "g", "node": "a", "ts": 1700000000, "value": -Infinity}', "non_finite_value"),
        (b'{"graph": "g", "node": "a", "ts": 1700000000, "value": 1e999}', "non_finite_value"),
        (
            b'{"graph": "g", "node": "a", "ts": 1700000000, "value": ' + b"9" * 400 + b"}",
            "non_finite_value",
        ),
    ],
)
def test_reasons(raw: bytes, reason: str) -> None:
    assert reason_of(raw) == reason


def test_not_bytes_is_malformed() -> None:
    assert reason_of(None) == "malformed_json"  # type: ignore[arg-type]


def test_known_graph_and_nodes() -> None:
    raw = '{"graph": "shop", "node": "cache", "ts": 1700000000, "value": 1}'
    assert reason_of(raw, known=KNOWN) == "unknown_node"
    raw = '{"graph": "bank", "node": "api", "ts": 1700000000, "value": 1}'
    assert reason_of(raw, known=KNOWN) == "unknown_graph"
    assert decode_event(raw) == [Sample("bank", "api", TS, 1.0)]  # no `known`: anything goes


def test_future_timestamp_against_now() -> None:
    raw = '{"graph": "g", "node": "a", "ts": 1700000400, "value": 1}'
    assert reason_of(raw, now=TS) == "bad_timestamp"
    assert reason_of(raw, now=TS, max_skew=399.0) == "bad_timestamp"
    assert decode_event(raw, now=TS, max_skew=400.0)[0].ts == TS + 400
    assert decode_event(raw)[0].ts == TS + 400  # no `now`: no check


def test_size_limits() -> None:
    raw = encode_event("g", "a", TS, 1.0)
    assert decode_event(raw, max_bytes=len(raw))
    assert reason_of(raw, max_bytes=len(raw) - 1) == "too_large"
    batch = encode_batch("g", TS, {f"n{i}": 1.0 for i in range(5)})
    assert len(decode_event(batch, max_values=5)) == 5
    assert reason_of(batch, max_values=4) == "too_large"


def test_bad_batch_is_rejected_whole_and_names_the_nodes() -> None:
    raw = '{"graph": "shop", "ts": 1700000000, "values": {"api": 1, "db": NaN, "web": Infinity}}'
    with pytest.raises(DecodeError) as info:
        decode_event(raw, known=KNOWN)
    assert info.value.reason == "non_finite_value"
    assert "'db'" in info.value.message
    assert "'web'" in info.value.message
    assert "'api'" not in info.value.message
    raw = '{"graph": "shop", "ts": 1700000000, "values": {"api": 1, "x": 2, "y": 3}}'
    with pytest.raises(DecodeError) as info:
        decode_event(raw, known=KNOWN)
    assert info.value.reason == "unknown_node"
    assert "'x'" in info.value.message
    assert "'y'" in info.value.message


def test_many_bad_nodes_are_named_with_a_bound() -> None:
    values = ",".join(f'"n{i}": "bad"' for i in range(50))
    with pytest.raises(DecodeError) as info:
        decode_event(f'{{"graph": "g", "ts": 1700000000, "values": {{{values}}}}}')
    assert info.value.reason == "wrong_type"
    assert "and 40 more" in info.value.message


def test_check_order_structure_before_semantics() -> None:
    # both a wrong type and an unknown node: the wrong type is reported
    raw = '{"graph": "shop", "ts": 1700000000, "values": {"zzz": 1, "api": "x"}}'
    assert reason_of(raw, known=KNOWN) == "wrong_type"
    # both a bad timestamp and a NaN value: the timestamp is reported
    raw = '{"graph": "shop", "node": "api", "ts": -1, "value": NaN}'
    assert reason_of(raw, known=KNOWN) == "bad_timestamp"


def test_encode_event_exact_bytes() -> None:
    assert encode_event("shop", "api", TS, 0.42) == (
        b'{"graph":"shop","node":"api","ts":1700000000.0,"value":0.42}'
    )
    assert encode_event("shop", "api", "2023-11-14T22:13:20Z", 1) == (
        b'{"graph":"shop","node":"api","ts":"2023-11-14T22:13:20Z","value":1.0}'
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("", "a", TS, 1.0), "wrong_type"),
        (("g", "", TS, 1.0), "wrong_type"),
        (("g", "a", TS, math.nan), "non_finite_value"),
        (("g", "a", TS, math.inf), "non_finite_value"),
        (("g", "a", TS, "1"), "wrong_type"),
        (("g", "a", TS, True), "wrong_type"),
        (("g", "a", 0.0, 1.0), "bad_timestamp"),
        (("g", "a", "noon", 1.0), "bad_timestamp"),
    ],
)
def test_encoder_refuses_what_decoder_rejects(args: tuple[object, ...], reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        encode_event(*args)  # type: ignore[arg-type]
    assert info.value.reason == reason


def test_encode_batch_drop_nan() -> None:
    values = {"api": 0.5, "db": math.nan}
    with pytest.raises(DecodeError, match="non_finite_value"):
        encode_batch("g", TS, values)
    assert decode_event(encode_batch("g", TS, values, drop_nan=True)) == [
        Sample("g", "api", TS, 0.5)
    ]
    with pytest.raises(DecodeError, match="non_finite_value"):
        encode_batch("g", TS, {"api": math.inf}, drop_nan=True)


names = st.text(min_size=1, max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False)
stamps = st.floats(min_value=946_684_800.0, max_value=4_102_444_800.0)


@given(graph=names, node=names, ts=stamps, value=finite)
def test_event_round_trip(graph: str, node: str, ts: float, value: float) -> None:
    assert decode_event(encode_event(graph, node, ts, value)) == [Sample(graph, node, ts, value)]


@given(graph=names, ts=stamps, values=st.dictionaries(names, finite, max_size=8))
def test_batch_round_trip(graph: str, ts: float, values: dict[str, float]) -> None:
    samples = decode_event(encode_batch(graph, ts, values))
    assert samples == [Sample(graph, n, ts, v) for n, v in values.items()]


@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_decoder_never_crashes(raw: bytes) -> None:
    reason = None
    try:
        samples = decode_event(raw, known=KNOWN, now=TS)
    except DecodeError as exc:
        reason = exc.reason
    else:
        assert all(math.isfinite(s.value) for s in samples)
    assert reason is None or reason in DEAD_LETTER_REASONS


# -- dead letters ------------------------------------------------------------------------


def test_reason_codes_are_stable() -> None:
    assert DEAD_LETTER_REASONS == (
        "too_large",
        "malformed_json",
        "not_an_object",
        "missing_field",
        "wrong_type",
        "bad_timestamp",
        "non_finite_value",
        "unknown_graph",
        "unknown_node",
        "late_event",
        "processing_error",
        "graph_quarantined",
        "extra_series_limit",
        "bad_spans",
    )


def test_dead_letter_text_payload() -> None:
    raw = b'{"graph": "g", "node": "a", "ts": 0, "value": 1}'
    with pytest.raises(DecodeError) as info:
        decode_event(raw)
    err = info.value
    out = dead_letter_record(
        raw, err.reason, err.message, now=TS, topic="metrics", partition=3, offset=42
    )
    assert json.loads(out) == {
        "schema": "stream-rca.dead-letter/v1",
        "reason": "bad_timestamp",
        "message": err.message,
        "rejected_at": TS,
        "source": {"topic": "metrics", "partition": 3, "offset": 42},
        "payload": raw.decode(),
        "payload_encoding": "utf-8",
        "payload_size": len(raw),
        "truncated": False,
    }


def test_dead_letter_binary_payload_is_base64() -> None:
    raw = b"\x00\xff\xfe garbage"
    doc = json.loads(dead_letter_record(raw, "malformed_json", "bad", now=TS))
    assert doc["payload_encoding"] == "base64"
    assert base64.b64decode(doc["payload"]) == raw
    assert doc["source"] == {"topic": None, "partition": None, "offset": None}


def test_dead_letter_tombstone_and_truncation() -> None:
    doc = json.loads(dead_letter_record(None, "malformed_json", "no value", now=TS))
    assert (doc["payload"], doc["payload_encoding"], doc["payload_size"]) == (None, None, None)
    raw = "é" * 10  # 20 bytes; a cut at 5 splits a character
    doc = json.loads(dead_letter_record(raw, "too_large", "big", now=TS, max_payload=5))
    assert (doc["payload"], doc["payload_size"], doc["truncated"]) == ("éé", 20, True)
    doc = json.loads(dead_letter_record(b"\xff" * 10, "too_large", "big", now=TS, max_payload=4))
    assert base64.b64decode(doc["payload"]) == b"\xff" * 4
    assert doc["truncated"] is True


def test_dead_letter_rejects_unknown_reason() -> None:
    with pytest.raises(ValueError, match="unknown dead-letter reason"):
        dead_letter_record(b"{}", "oops", "x", now=TS)


def test_messages_stay_short_for_huge_names() -> None:
    raw = encode_event("g" * 100_000, "a", TS, 1.0)
    with pytest.raises(DecodeError) as info:
        decode_event(raw, known=KNOWN)
    assert info.value.reason == "unknown_graph"
    assert len(info.value.message) < 200

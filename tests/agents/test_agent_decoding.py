"""The agent decodes and validates input events; bad ones go to the dead-letter topic."""

from __future__ import annotations

import base64
import json

import pytest

from stream_rca.io.aligner import AlignStatus
from tests.agents.conftest import NOW, T0, Harness, batch, chain_spec, single


def test_single_and_batch_forms_are_accepted() -> None:
    h = Harness([chain_spec()])
    outcomes = h.feed(
        [
            single("shop", "db", T0 + 1, 0.5),
            batch("shop", T0 + 2, {"api": 0.7, "web": 0.9}),
            json.dumps({"graph": "shop", "ts": "2023-11-14T22:13:23Z", "values": {}}).encode(),
        ]
    )
    assert [o.statuses for o in outcomes] == [
        (AlignStatus.ACCEPTED,),
        (AlignStatus.ACCEPTED, AlignStatus.ACCEPTED),
        (),  # an empty batch is valid and carries nothing
    ]
    assert all(o.reason is None for o in outcomes)
    assert h.broker.outputs == []
    assert h.sample("stream_rca_events_total", {"graph": "shop"}) == 3.0


BAD = [
    pytest.param(b'{"graph": "shop", "node": "db", ', "malformed_json", id="truncated-json"),
    pytest.param(b"\xff\xfe{}", "malformed_json", id="not-utf8"),
    pytest.param(None, "malformed_json", id="tombstone"),
    pytest.param(b"[1, 2]", "not_an_object", id="array"),
    pytest.param(
        b'{"graph": "shop", "node": "db", "ts": 1700000000}', "missing_field", id="no-value"
    ),
    pytest.param(single("shop", "db", T0, "slow"), "wrong_type", id="string-value"),
    pytest.param(
        b'{"graph": "shop", "node": "db", "ts": 1700000000, "value": NaN}',
        "non_finite_value",
        id="nan",
    ),
    pytest.param(
        b'{"graph": "shop", "ts": 1700000000, "values": {"db": 1, "api": Infinity}}',
        "non_finite_value",
        id="batch-inf",
    ),
    pytest.param(single("shop", "db", 12, 1.0), "bad_timestamp", id="ts-1970"),
    pytest.param(single("shop", "db", T0 * 1000, 1.0), "bad_timestamp", id="ts-millis"),
    pytest.param(single("shop", "db", NOW + 3600, 1.0), "bad_timestamp", id="ts-future"),
    pytest.param(single("shop", "db", "yesterday", 1.0), "bad_timestamp", id="ts-text"),
    pytest.param(single("other", "db", T0, 1.0), "unknown_graph", id="unknown-graph"),
    pytest.param(single("shop", "cache", T0, 1.0), "unknown_node", id="unknown-node"),
    pytest.param(batch("shop", T0, {"db": 1.0, "cache": 2.0}), "unknown_node", id="batch-node"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD)
def test_bad_event_goes_to_dead_letter_with_reason(raw: bytes | None, reason: str) -> None:
    h = Harness([chain_spec()])
    good = single("shop", "db", T0 + 1, 0.5)
    bad_outcome, good_outcome = h.feed([raw, good], partition=0)

    assert bad_outcome.reason == reason
    assert bad_outcome.statuses == ()
    [letter] = h.broker.of_kind("deadletter")
    assert letter.key == b"shop"  # the input's key is kept
    doc = json.loads(letter.value)
    assert doc["schema"] == "stream-rca.dead-letter/v1"
    assert doc["reason"] == reason
    assert doc["message"]
    assert doc["rejected_at"] == NOW
    assert doc["source"] == {"topic": "metrics", "partition": 0, "offset": 0}
    if raw is None:
        assert doc["payload"] is None
    elif doc["payload_encoding"] == "base64":
        assert base64.b64decode(doc["payload"]) == raw
    else:
        assert doc["payload"].encode() == raw
    assert h.sample("stream_rca_dead_letters_total", {"reason": reason}) == 1.0
    # the agent keeps going
    assert good_outcome.statuses == (AlignStatus.ACCEPTED,)
    assert h.sample("stream_rca_events_total", {"graph": "shop"}) == 1.0


def test_a_batch_with_one_bad_value_is_rejected_whole() -> None:
    h = Harness([chain_spec()])
    [outcome] = h.feed([batch("shop", T0, {"db": 1.0, "api": 2.0, "nope": 3.0})])
    assert outcome.reason == "unknown_node"
    assert "nope" in h.docs("deadletter")[0]["message"]
    assert h.runtime.pipeline.graphs == ()  # nothing reached the graph's state


def test_dead_letters_of_several_graphs_and_partitions() -> None:
    h = Harness([chain_spec("a"), chain_spec("b")])
    h.feed([single("a", "x", T0, 1.0)], key=b"a", partition=1)
    h.feed([single("b", "db", T0, 1.0), single("c", "db", T0, 1.0)], key=b"b", partition=2)
    docs = h.docs("deadletter")
    assert [(d["reason"], d["source"]["partition"], d["source"]["offset"]) for d in docs] == [
        ("unknown_node", 1, 0),
        ("unknown_graph", 2, 1),
    ]

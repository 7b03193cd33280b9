"""Alignment in the agent: windows, watermark, lateness; late, out-of-order and duplicate
events with exact expectations; snapshots through the engine to attributions."""

from __future__ import annotations

import pytest

from stream_rca.io.aligner import AlignStatus
from tests.agents.conftest import T0, Harness, batch, chain_rows, chain_spec, single

A = AlignStatus


def test_late_out_of_order_and_duplicate_events_exactly() -> None:
    """step 10 s, allowed lateness 5 s: window [T0, T0+10) closes when the watermark
    reaches T0+15."""
    h = Harness([chain_spec(step=10.0, lateness=5.0)])
    outcomes = h.feed(
        [
            single("shop", "db", T0 + 1, 1.0),  # 0: w0
            single("shop", "api", T0 + 3, 2.0),  # 1: w0
            single("shop", "db", T0 + 12, 1.5),  # 2: w1, watermark T0+12
            single("shop", "web", T0 + 8, 3.0),  # 3: w0, out of order but within lateness
            single("shop", "db", T0 + 12, 1.5),  # 4: the same sample again: a duplicate
            single("shop", "db", T0 + 16, 1.7),  # 5: w1 revised; watermark T0+16 closes w0
            single("shop", "api", T0 + 9, 2.0),  # 6: w0 is closed: late
            single("shop", "web", T0 + 25, 3.3),  # 7: w2; watermark T0+25 closes w1
            batch("shop", T0 + 5, {"db": 1.0, "api": 2.0}),  # 8: w0 again: late (both)
            single("shop", "api", T0 + 19, 2.2),  # 9: w1 is closed too (watermark 25 - 5)
        ]
    )
    assert [o.statuses for o in outcomes] == [
        (A.ACCEPTED,),
        (A.ACCEPTED,),
        (A.ACCEPTED,),
        (A.ACCEPTED,),
        (A.DUPLICATE,),
        (A.REVISED,),
        (A.LATE,),
        (A.ACCEPTED,),
        (A.LATE, A.LATE),
        (A.LATE,),
    ]
    assert [o.reason for o in outcomes] == [None] * 6 + ["late_event", None] + ["late_event"] * 2
    # snapshots: w0 when message 5 arrives, w1 when message 7 arrives
    emitted = [(i, r.ts) for i, o in enumerate(outcomes) for r in o.results]
    assert emitted == [(5, T0), (7, T0 + 10)]
    assert outcomes[5].results[0].missing == ()
    assert outcomes[7].results[0].missing == ("api", "web")
    state = h.runtime.pipeline.state("shop")
    assert state is not None
    assert state.aligner.watermark == T0 + 25
    # late events are dead-lettered with their reason; duplicates are only counted
    letters = h.docs("deadletter")
    assert [(d["reason"], d["source"]["offset"]) for d in letters] == [
        ("late_event", 6),
        ("late_event", 8),
        ("late_event", 9),
    ]
    assert "already emitted" in letters[0]["message"]
    assert h.sample("stream_rca_late_events_total", {"graph": "shop"}) == 4.0
    assert h.sample("stream_rca_duplicate_events_total", {"graph": "shop"}) == 1.0
    assert h.sample("stream_rca_dead_letters_total", {"reason": "late_event"}) == 3.0
    assert h.sample("stream_rca_events_total", {"graph": "shop"}) == 6.0  # 5 accepted + 1 revised
    assert h.sample("stream_rca_snapshots_total", {"graph": "shop"}) == 2.0


def test_without_lateness_a_window_closes_at_the_next_one() -> None:
    h = Harness([chain_spec(step=10.0, lateness=0.0)])
    outcomes = h.feed(
        [
            batch("shop", T0, {"db": 1.0, "api": 2.0, "web": 3.0}),
            batch("shop", T0 + 10, {"db": 1.1, "api": 2.1, "web": 3.1}),
            single("shop", "db", T0 + 9.99, 1.0),
        ]
    )
    assert [len(o.results) for o in outcomes] == [0, 1, 0]
    assert outcomes[2].statuses == (A.LATE,)


def test_gaps_emit_no_empty_snapshots() -> None:
    h = Harness([chain_spec(step=10.0)])
    outcomes = h.feed(
        [
            batch("shop", T0, {"db": 1.0, "api": 2.0, "web": 3.0}),
            batch("shop", T0 + 50, {"db": 1.0, "api": 2.0, "web": 3.0}),
        ]
    )
    assert [r.ts for o in outcomes for r in o.results] == [T0]


@pytest.mark.parametrize("form", ["batch", "single"])
def test_snapshots_run_the_engine_and_attribute_the_planted_root_cause(form: str) -> None:
    h = Harness([chain_spec(step=10.0, warmup=20, threshold=9.0)], publish_scores=True)
    rows = chain_rows(60, seed=1)
    rows.append({"db": 5.0, "api": 5.0 + 0.1, "web": 5.0 + 0.2})  # window 60: db is broken
    rows.append(chain_rows(1, seed=2)[0])  # window 61 closes window 60
    messages: list[bytes | None] = []
    for i, row in enumerate(rows):
        ts = T0 + 10 * i
        if form == "batch":
            messages.append(batch("shop", ts, row))
        else:
            messages.extend(single("shop", node, ts, v) for node, v in row.items())
    outcomes = h.feed(messages)

    results = [r for o in outcomes for r in o.results]
    assert [r.ts for r in results] == [T0 + 10 * i for i in range(61)]  # window 61 stays open
    assert not results[0].warm
    assert results[40].warm  # learning happens every 16 snapshots: warm from the 32nd
    scores = h.docs("scores")
    assert len(scores) == 61
    assert scores[0]["schema"] == "stream-rca.scores/v1"
    assert scores[0]["window"] == {"start": T0, "end": T0 + 10}
    assert scores[0]["scores"] == {}
    assert not scores[0]["warm"]
    assert set(scores[40]["scores"]) == {"db", "api", "web"}
    assert scores[60]["open_incidents"] == {"web": f"shop:web:{int(T0 + 600)}"}

    [doc] = h.docs("attributions")
    assert doc["schema"] == "stream-rca.attribution/v1"
    assert doc["incident_id"] == f"shop:web:{int(T0 + 600)}"
    assert doc["graph"] == "shop"
    assert doc["target"] == "web"
    assert doc["window"] == {"start": T0 + 600, "end": T0 + 610}
    assert doc["root_causes"][0]["node"] == "db"
    total = sum(rc["contribution"] for rc in doc["root_causes"])
    assert total == pytest.approx(doc["target_score"], rel=1e-6)
    [out] = h.broker.of_kind("attributions")
    assert out.key == b"shop"
    assert h.sample("stream_rca_incidents_total", {"graph": "shop", "target": "web"}) == 1.0

"""The aligner: windows, watermark, lateness, duplicates, gaps, flush, bounded memory."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rca.core.checkpoint import StateError
from stream_rca.core.types import Snapshot
from stream_rca.errors import ConfigError
from stream_rca.io import DEAD_LETTER_REASONS, Aligner, AlignResult, AlignStatus, Sample

T0 = 1_700_000_000.0  # a multiple of the steps used here
NODES = ("db", "api", "web")


def s(node: str, dt: float, value: float, graph: str = "g") -> Sample:
    return Sample(graph, node, T0 + dt, value)


def snap(start: float, values: dict[str, float], step: float = 10.0) -> Snapshot:
    return Snapshot(ts=T0 + start, values=values, graph="g", end=T0 + start + step)


def snaps(results: list[AlignResult]) -> list[Snapshot]:
    return [x for r in results for x in r.snapshots]


def run(aligner: Aligner, samples: list[Sample]) -> list[Snapshot]:
    out: list[Snapshot] = []
    for sample in samples:
        out.extend(aligner.add_one(sample).snapshots)
    return out + aligner.flush()


def test_in_order_emits_each_window_when_the_next_starts() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    assert al.add_one(s("db", 0, 1.0)) == AlignResult(AlignStatus.ACCEPTED)
    assert al.add_one(s("api", 5, 2.0)) == AlignResult(AlignStatus.ACCEPTED)
    assert al.add_one(s("web", 9.999, 3.0)).snapshots == ()
    result = al.add_one(s("db", 10, 4.0))
    assert result == AlignResult(
        AlignStatus.ACCEPTED, (snap(0, {"db": 1.0, "api": 2.0, "web": 3.0}),)
    )
    assert list(result.snapshots[0].values) == ["db", "api", "web"]  # graph's node order
    assert al.flush() == [snap(10, {"db": 4.0})]
    assert al.flush() == []


def test_values_follow_node_order_not_arrival_order() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    run_out = run(al, [s("web", 1, 3.0), s("db", 2, 1.0)])
    assert list(run_out[0].values) == ["db", "web"]


def test_out_of_order_within_lateness() -> None:
    al = Aligner(NODES, step=10.0, allowed_lateness=5.0, graph="g")
    assert al.add_one(s("db", 1, 1.0)).snapshots == ()
    assert al.add_one(s("db", 12, 2.0)).snapshots == ()  # watermark 12 < 10 + 5
    assert al.add_one(s("api", 3, 3.0)).status is AlignStatus.ACCEPTED  # still open
    assert al.add_one(s("api", 14, 4.0)).snapshots == ()  # 14 < 15
    assert al.add_one(s("web", 15, 5.0)).snapshots == (snap(0, {"db": 1.0, "api": 3.0}),)
    assert al.watermark == T0 + 15
    assert al.flush() == [snap(10, {"db": 2.0, "api": 4.0, "web": 5.0})]


def test_late_beyond_lateness_is_reported_not_used() -> None:
    al = Aligner(NODES, step=10.0, allowed_lateness=5.0, graph="g")
    al.add_one(s("db", 1, 1.0))
    assert al.add_one(s("db", 25, 2.0)).snapshots == (snap(0, {"db": 1.0}),)
    late = al.add_one(s("api", 9, 3.0))
    assert late == AlignResult(AlignStatus.LATE)
    assert late.status.reason == "late_event"
    assert late.status.reason in DEAD_LETTER_REASONS
    # window [10, 20) never had data; 20 + 5 <= 25, so it is closed too
    assert al.add_one(s("api", 19, 3.0)).status is AlignStatus.LATE
    # window [20, 30) is open
    assert al.add_one(s("api", 21, 3.0)).status is AlignStatus.ACCEPTED
    assert al.flush() == [snap(20, {"db": 2.0, "api": 3.0})]
    assert al.counts[AlignStatus.LATE] == 2
    assert al.counts[AlignStatus.ACCEPTED] == 3


def test_exact_boundary_with_zero_lateness() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    al.add_one(s("db", 0, 1.0))
    # an event at exactly the window end closes the window (end + 0 <= watermark)
    assert al.add_one(s("db", 10, 2.0)).snapshots == (snap(0, {"db": 1.0}),)
    assert al.add_one(s("api", 9.5, 2.0)).status is AlignStatus.LATE


def test_duplicates_and_revisions() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    assert al.add_one(s("db", 1, 1.0)).status is AlignStatus.ACCEPTED
    dup = al.add_one(s("db", 2, 1.0))
    assert dup == AlignResult(AlignStatus.DUPLICATE)
    assert dup.status.reason is None
    assert not dup.status.used
    rev = al.add_one(s("db", 3, 7.0))
    assert rev.status is AlignStatus.REVISED
    assert rev.status.used
    assert rev.status.reason is None
    assert al.flush() == [snap(0, {"db": 7.0})]  # last write wins
    assert al.counts == {
        AlignStatus.ACCEPTED: 1,
        AlignStatus.DUPLICATE: 1,
        AlignStatus.REVISED: 1,
        AlignStatus.LATE: 0,
        AlignStatus.UNKNOWN_NODE: 0,
        AlignStatus.UNKNOWN_GRAPH: 0,
    }


def test_a_duplicate_still_advances_the_watermark() -> None:
    al = Aligner(NODES, step=10.0, allowed_lateness=5.0, graph="g")
    al.add_one(s("db", 1, 1.0))
    al.add_one(s("db", 11, 2.0))
    result = al.add_one(s("db", 16, 2.0))  # same window [10, 20), same value
    assert result == AlignResult(AlignStatus.DUPLICATE, (snap(0, {"db": 1.0}),))


def test_gaps_are_skipped() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    out = run(al, [s("db", 0, 1.0), s("db", 45, 2.0), s("api", 47, 3.0), s("db", 100, 4.0)])
    assert out == [snap(0, {"db": 1.0}), snap(40, {"db": 2.0, "api": 3.0}), snap(100, {"db": 4.0})]


def test_foreign_samples_are_rejected_and_change_nothing() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    al.add_one(s("db", 0, 1.0))
    other = al.add_one(s("db", 500, 1.0, graph="other"))
    assert other == AlignResult(AlignStatus.UNKNOWN_GRAPH)
    assert other.status.reason == "unknown_graph"
    unknown = al.add_one(s("cache", 500, 1.0))
    assert unknown == AlignResult(AlignStatus.UNKNOWN_NODE)
    assert unknown.status.reason == "unknown_node"
    assert al.watermark == T0
    assert al.flush() == [snap(0, {"db": 1.0})]


def test_flush_closes_the_flushed_windows() -> None:
    al = Aligner(NODES, step=10.0, allowed_lateness=100.0, graph="g")
    run(al, [s("db", 0, 1.0), s("db", 15, 2.0)])
    assert al.add_one(s("api", 12, 1.0)).status is AlignStatus.LATE
    assert al.add_one(s("api", 25, 1.0)).status is AlignStatus.ACCEPTED
    assert al.open_windows == 1


def test_max_open_windows_force_emits_the_oldest() -> None:
    al = Aligner(NODES, step=10.0, allowed_lateness=1000.0, graph="g", max_open_windows=2)
    assert al.add_one(s("db", 0, 1.0)).snapshots == ()
    assert al.add_one(s("db", 10, 2.0)).snapshots == ()
    assert al.add_one(s("db", 20, 3.0)).snapshots == (snap(0, {"db": 1.0}),)
    assert al.forced == 1
    assert al.open_windows == 2
    assert al.add_one(s("api", 5, 1.0)).status is AlignStatus.LATE  # its window is gone
    assert al.add_one(s("api", 15, 1.0)).status is AlignStatus.ACCEPTED
    assert al.flush() == [snap(10, {"db": 2.0, "api": 1.0}), snap(20, {"db": 3.0})]


def test_float_steps_put_each_time_in_its_window() -> None:
    al = Aligner(["a"], step=0.1)
    for k in range(1, 200):
        start, end = al.window_of(k * 0.1)
        assert start <= k * 0.1 < end


def test_pickle_round_trip_continues_identically() -> None:
    al = Aligner(NODES, step=10.0, allowed_lateness=5.0, graph="g")
    first = [s("db", 1, 1.0), s("api", 12, 2.0), s("web", 3, 3.0)]
    rest = [s("db", 14, 4.0), s("api", 6, 5.0), s("web", 31, 6.0), s("db", 2, 9.0)]
    for sample in first:
        al.add_one(sample)
    clone = pickle.loads(pickle.dumps(al))
    assert [clone.add_one(x) for x in rest] == [al.add_one(x) for x in rest]
    assert clone.flush() == al.flush()
    assert clone.counts == al.counts
    assert repr(clone) == repr(al)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"step": 0.0},
        {"step": -1.0},
        {"step": float("nan")},
        {"step": 1.0, "allowed_lateness": -1.0},
        {"step": 1.0, "max_open_windows": 0},
    ],
)
def test_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Aligner(NODES, **kwargs)  # type: ignore[arg-type]


def test_bad_nodes() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        Aligner([], step=1.0)
    with pytest.raises(ConfigError, match="repeated"):
        Aligner(["a", "b", "a"], step=1.0)


# -- property: the order of arrival within the lateness bound does not matter -------------

STEP = 10.0
events = st.lists(
    st.tuples(st.sampled_from(NODES), st.integers(0, 30), st.floats(0, 9.99), st.integers(-5, 5)),
    max_size=40,
    unique_by=lambda e: (e[0], e[1]),  # one value per (node, window): nothing to revise
)


def samples_of(raw: list[tuple[str, int, float, int]]) -> list[Sample]:
    return [s(node, k * STEP + off, float(v)) for node, k, off, v in raw]


@settings(max_examples=200, deadline=None)
@given(
    raw=events,
    lateness=st.sampled_from([0.0, 3.0, 10.0, 25.0]),
    delays=st.lists(st.floats(0.0, 1.0), min_size=40, max_size=40),
)
def test_any_arrival_order_within_lateness_gives_the_sorted_result(
    raw: list[tuple[str, int, float, int]],
    lateness: float,
    delays: list[float],
) -> None:
    samples = samples_of(raw)
    expected = run(Aligner(NODES, STEP, lateness, "g"), sorted(samples, key=lambda x: x.ts))
    # arrival time = event time + a delay of at most `lateness`: nothing is beyond the bound
    arrival = sorted(range(len(samples)), key=lambda i: (samples[i].ts + delays[i] * lateness, i))
    aligner = Aligner(NODES, STEP, lateness, "g")
    assert run(aligner, [samples[i] for i in arrival]) == expected
    assert aligner.counts[AlignStatus.ACCEPTED] == len(samples)
    assert aligner.counts[AlignStatus.LATE] == 0


@settings(max_examples=200, deadline=None)
@given(raw=events, data=st.data())
def test_any_permutation_with_lateness_beyond_the_span(
    raw: list[tuple[str, int, float, int]], data: st.DataObject
) -> None:
    samples = samples_of(raw)
    permuted = data.draw(st.permutations(samples))
    lateness = 31 * STEP  # more than the whole span: no sample can be late
    expected = run(Aligner(NODES, STEP, lateness, "g"), sorted(samples, key=lambda x: x.ts))
    assert run(Aligner(NODES, STEP, lateness, "g"), permuted) == expected
    assert [x.ts for x in expected] == sorted({T0 + k * STEP for _, k, _, _ in raw})


@settings(max_examples=100, deadline=None)
@given(raw=events, lateness=st.sampled_from([0.0, 10.0]), data=st.data())
def test_snapshots_come_in_window_order_and_nothing_is_lost(
    raw: list[tuple[str, int, float, int]], lateness: float, data: st.DataObject
) -> None:
    samples = data.draw(st.permutations(samples_of(raw)))
    aligner = Aligner(NODES, STEP, lateness, "g", max_open_windows=3)
    out = run(aligner, samples)
    starts = [x.ts for x in out]
    assert starts == sorted(set(starts))
    used = sum(len(x.values) for x in out)
    assert used == aligner.counts[AlignStatus.ACCEPTED]
    assert used + aligner.counts[AlignStatus.LATE] == len(samples)


# -- the watermark against clocks from the future -----------------------------------------


def test_one_event_from_the_future_does_not_move_the_watermark() -> None:
    al = Aligner(NODES, step=10.0, graph="g")  # max_ahead 50 s
    assert al.add_one(s("db", 0, 1.0)).snapshots == ()
    assert al.add_one(s("api", 290, 9.0)) == AlignResult(AlignStatus.ACCEPTED)  # held apart
    assert (al.watermark, al.held) == (T0, 1)
    assert al.add_one(s("api", 3, 2.0)).status is AlignStatus.ACCEPTED  # not late
    out = [x for dt in (10, 20, 30) for x in al.add_one(s("web", dt, dt)).snapshots]
    assert out == [snap(0, {"db": 1.0, "api": 2.0}), snap(10, {"web": 10.0}), snap(20, {"web": 20})]
    assert al.watermark == T0 + 30
    assert al.counts[AlignStatus.LATE] == 0
    for dt in range(40, 290, 10):  # the watermark passes it: forgotten, its window emitted
        assert al.add_one(s("db", dt, 1.0)).status is AlignStatus.ACCEPTED
    assert (al.watermark, al.held) == (T0 + 280, 1)
    assert al.add_one(s("db", 291, 1.0)).snapshots == (snap(280, {"db": 1.0}),)
    assert al.held == 0
    assert al.add_one(s("db", 300, 1.0)).snapshots == (snap(290, {"db": 1.0, "api": 9.0}),)


def test_one_batch_event_from_the_future_does_not_move_the_watermark() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    al.add_many([s(n, 0, 1.0) for n in NODES])
    results = al.add_many([s(n, 290, 2.0) for n in NODES])  # every node, but one message
    assert [r.status for r in results] == [AlignStatus.ACCEPTED] * 3
    assert al.add_many([s(n, 290, 2.0) for n in NODES])[0].status is AlignStatus.DUPLICATE
    assert (al.watermark, al.held) == (T0, 1)  # delivered twice, one message
    assert snaps(al.add_many([s(n, 10, 3.0) for n in NODES])) == [
        snap(0, {"db": 1.0, "api": 1.0, "web": 1.0})
    ]


def test_a_burst_from_one_skewed_node_never_moves_the_watermark() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    emitted: list[Snapshot] = []
    for k in range(60):  # db's clock is 290 s ahead of api's and web's
        t = 10.0 * k
        for sample in (s("api", t + 1, 1.0), s("web", t + 2, 2.0), s("db", t + 290, 3.0)):
            result = al.add_one(sample)
            assert result.status is not AlignStatus.LATE
            emitted.extend(result.snapshots)
        assert al.watermark == T0 + t + 2
    assert al.counts[AlignStatus.LATE] == 0
    assert al.held == 29  # db's messages between 592 and 880: ahead of 592 by more than 50
    assert [x.ts - T0 for x in emitted] == [10.0 * k for k in range(59)]
    assert emitted[0].values == {"api": 1.0, "web": 2.0}
    assert emitted[30].values == {"db": 3.0, "api": 1.0, "web": 2.0}  # db's skewed samples


def test_a_genuine_jump_of_every_node_is_followed_at_its_second_message() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    for sample in (s("db", 0, 1.0), s("api", 1, 1.0), s("web", 2, 1.0)):
        al.add_one(sample)
    assert al.add_one(s("db", 600, 2.0)).snapshots == ()  # held: could be one bad clock
    assert al.watermark == T0 + 2
    jump = al.add_one(s("api", 601, 2.0))  # a second node confirms it
    assert jump == AlignResult(
        AlignStatus.ACCEPTED, (snap(0, {"db": 1.0, "api": 1.0, "web": 1.0}),)
    )
    assert (al.watermark, al.held) == (T0 + 600, 1)  # the latest time two messages reached
    assert al.add_one(s("web", 5, 1.0)).status is AlignStatus.LATE  # the past is closed
    assert al.add_one(s("web", 602, 2.0)).snapshots == ()
    assert (al.watermark, al.held) == (T0 + 602, 0)
    assert al.add_one(s("db", 610, 3.0)).snapshots == (
        snap(600, {"db": 2.0, "api": 2.0, "web": 2.0}),
    )


def test_a_genuine_jump_in_batch_form_and_in_a_one_node_graph() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    al.add_many([s(n, 0, 1.0) for n in NODES])
    assert snaps(al.add_many([s(n, 600, 2.0) for n in NODES])) == []
    confirmed = snaps(al.add_many([s(n, 610, 3.0) for n in NODES]))
    assert confirmed == [snap(0, {"db": 1.0, "api": 1.0, "web": 1.0})]
    assert al.watermark == T0 + 600  # the latest time two messages reached
    assert snaps(al.add_many([s(n, 620, 4.0) for n in NODES])) == [
        snap(600, {"db": 2.0, "api": 2.0, "web": 2.0}),
        snap(610, {"db": 3.0, "api": 3.0, "web": 3.0}),
    ]
    one = Aligner(["db"], step=10.0, graph="g")
    one.add_one(s("db", 0, 1.0))
    assert one.add_one(s("db", 600, 2.0)).snapshots == ()
    assert one.add_one(s("db", 610, 3.0)).snapshots == (snap(0, {"db": 1.0}),)
    assert one.watermark == T0 + 600


def test_max_ahead_is_configurable() -> None:
    al = Aligner(NODES, step=10.0, graph="g", max_ahead=1000.0)
    al.add_one(s("db", 0, 1.0))
    assert al.add_one(s("db", 290, 2.0)).snapshots == (snap(0, {"db": 1.0}),)  # the old rule
    assert Aligner(NODES, step=10.0).max_ahead == 50.0
    with pytest.raises(ConfigError, match="max_ahead"):
        Aligner(NODES, step=10.0, max_ahead=-1.0)


def test_state_round_trip_keeps_the_held_messages() -> None:
    al = Aligner(NODES, step=10.0, graph="g", max_ahead=30.0)
    al.add_one(s("db", 0, 1.0))
    al.add_one(s("db", 290, 2.0))  # held
    clone = Aligner.from_state(al.to_state())
    assert (clone.held, clone.max_ahead, clone.watermark) == (1, 30.0, T0)
    rest = [s("api", 291, 3.0), s("web", 5, 1.0)]  # a second node confirms the jump
    assert [clone.add_one(x) for x in rest] == [al.add_one(x) for x in rest]
    assert clone.watermark == al.watermark == T0 + 290


def test_a_state_with_a_bad_held_entry_is_refused() -> None:
    al = Aligner(NODES, step=10.0, graph="g")
    al.add_one(s("db", 0, 1.0))
    al.add_one(s("db", 290, 2.0))
    state = al.to_state()
    state["held"] = [[1.0, "two", "db", ""]]
    with pytest.raises(StateError, match="held"):
        Aligner.from_state(state)

"""PipelineMetrics: every metric read back from a fresh registry after hand-made engine results."""

from __future__ import annotations

import dataclasses
import math
import urllib.request
from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry

from stream_rca import __version__
from stream_rca.core.types import Attribution, IncidentEvent, RootCause, StepResult
from stream_rca.observability import LATENCY_BUCKETS, PipelineMetrics, serve


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> PipelineMetrics:
    return PipelineMetrics(registry, version="9.9.9")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def step(
    *,
    ts: float = 100.0,
    scores: Mapping[str, float] | None = None,
    target_scores: Mapping[str, float] | None = None,
    warming: tuple[str, ...] = (),
    missing: tuple[str, ...] = (),
    invalid: tuple[str, ...] = (),
    events: tuple[IncidentEvent, ...] = (),
    attributions: tuple[Attribution, ...] = (),
    open_incidents: Mapping[str, str] | None = None,
    graph: str = "shop",
) -> StepResult:
    return StepResult(
        graph=graph,
        ts=ts,
        scores=dict(scores or {}),
        target_scores=dict(target_scores or {}),
        warm=not warming,
        warming=warming,
        missing=missing,
        invalid=invalid,
        learned=(),
        events=events,
        attributions=attributions,
        open_incidents=dict(open_incidents or {}),
    )


def attribution(incident_id: str, causes: dict[str, float], target: str = "Website") -> Attribution:
    total = sum(c for c in causes.values() if c > 0)
    ranked = sorted(causes.items(), key=lambda kv: -kv[1])
    return Attribution(
        incident_id=incident_id,
        graph="shop",
        target=target,
        window_start=100.0,
        window_end=101.0,
        detected_at=101.5,
        target_score=sum(causes.values()),
        root_causes=tuple(
            RootCause(node, c, max(c, 0.0) / total, score=None) for node, c in ranked
        ),
        method="exact",
        linear=True,
        players=tuple(causes),
        n_samples=1000,
        n_permutations=0,
        seed=0,
    )


def opened(incident_id: str, ts: float = 100.0, target: str = "Website") -> IncidentEvent:
    return IncidentEvent("opened", incident_id, "shop", target, ts, 12.0)


def test_registers_on_the_injected_registry_only(registry: CollectorRegistry) -> None:
    from prometheus_client import REGISTRY

    before = set(REGISTRY._names_to_collectors)
    PipelineMetrics(registry)
    assert set(REGISTRY._names_to_collectors) == before
    assert value(registry, "stream_rca_build_info", version=__version__) == 1.0
    # A second instance on another registry does not collide.
    PipelineMetrics(CollectorRegistry())


def test_build_info(registry: CollectorRegistry, metrics: PipelineMetrics) -> None:
    assert value(registry, "stream_rca_build_info", version="9.9.9") == 1.0


def test_step_sets_scores_counters_and_histogram(
    registry: CollectorRegistry, metrics: PipelineMetrics
) -> None:
    metrics.observe_step(
        step(
            ts=1700000000.0,
            scores={"api": 1.5, "db": 7.25},
            target_scores={"Website": 3.0},
            warming=("cache",),
            missing=("cache",),
            invalid=("db",),
        ),
        0.002,
    )
    assert value(registry, "stream_rca_node_score", graph="shop", node="api") == 1.5
    assert value(registry, "stream_rca_node_score", graph="shop", node="db") == 7.25
    assert value(registry, "stream_rca_target_score", graph="shop", target="Website") == 3.0
    assert value(registry, "stream_rca_snapshots_total", graph="shop") == 1.0
    assert value(registry, "stream_rca_warmup_nodes", graph="shop") == 1.0
    last = value(registry, "stream_rca_last_snapshot_timestamp_seconds", graph="shop")
    assert last == 1700000000.0
    assert value(registry, "stream_rca_missing_values_total", graph="shop", node="cache") == 1.0
    assert value(registry, "stream_rca_invalid_values_total", graph="shop", node="db") == 1.0
    h = "stream_rca_snapshot_processing_seconds"
    assert value(registry, f"{h}_count", graph="shop") == 1.0
    assert value(registry, f"{h}_sum", graph="shop") == pytest.approx(0.002)
    assert value(registry, f"{h}_bucket", graph="shop", le="0.001") == 0.0
    assert value(registry, f"{h}_bucket", graph="shop", le="0.0025") == 1.0
    # A watched target appears with no incident open, and its counters start at zero.
    assert value(registry, "stream_rca_incident_open", graph="shop", target="Website") == 0.0
    assert value(registry, "stream_rca_incidents_total", graph="shop", target="Website") == 0.0
    assert value(registry, "stream_rca_events_total", graph="shop") == 0.0


def test_scores_are_those_of_the_latest_snapshot(
    registry: CollectorRegistry, metrics: PipelineMetrics
) -> None:
    metrics.observe_step(step(scores={"api": 1.0, "db": 2.0}, target_scores={"Website": 1}), 0.0)
    metrics.observe_step(step(scores={"api": 4.0, "db": math.nan}, target_scores={}), 0.0)
    assert value(registry, "stream_rca_node_score", graph="shop", node="api") == 4.0
    assert value(registry, "stream_rca_node_score", graph="shop", node="db") is None
    assert value(registry, "stream_rca_target_score", graph="shop", target="Website") is None
    metrics.observe_step(step(scores={"db": math.inf}), 0.0)
    assert value(registry, "stream_rca_node_score", graph="shop", node="api") is None
    assert value(registry, "stream_rca_node_score", graph="shop", node="db") == math.inf


def test_graphs_are_independent(registry: CollectorRegistry, metrics: PipelineMetrics) -> None:
    metrics.observe_step(step(scores={"api": 1.0}), 0.0)
    metrics.observe_step(step(graph="bank", scores={"ledger": 2.0}), 0.0)
    assert value(registry, "stream_rca_node_score", graph="shop", node="api") == 1.0
    assert value(registry, "stream_rca_node_score", graph="bank", node="ledger") == 2.0
    assert value(registry, "stream_rca_snapshots_total", graph="bank") == 1.0


def test_incident_lifecycle(registry: CollectorRegistry, metrics: PipelineMetrics) -> None:
    att = attribution("shop/Website/100", {"cache": 6.0, "db": 2.0, "api": -0.5})
    metrics.observe_step(
        step(
            target_scores={"Website": 7.5},
            events=(opened("shop/Website/100"),),
            attributions=(att,),
            open_incidents={"Website": "shop/Website/100"},
        ),
        0.01,
        attribution_seconds=[0.004],
    )
    gt = {"graph": "shop", "target": "Website"}
    assert value(registry, "stream_rca_incident_open", **gt) == 1.0
    assert value(registry, "stream_rca_incidents_total", **gt) == 1.0
    assert value(registry, "stream_rca_attributions_total", **gt) == 1.0
    assert value(registry, "stream_rca_incident_start_timestamp_seconds", **gt) == 100.0
    info = value(registry, "stream_rca_latest_incident_info", incident_id="shop/Website/100", **gt)
    assert info == 1.0
    assert value(registry, "stream_rca_root_cause_contribution", node="cache", **gt) == 6.0
    assert value(registry, "stream_rca_root_cause_contribution", node="api", **gt) == -0.5
    assert value(registry, "stream_rca_root_cause_share", node="cache", **gt) == 0.75
    assert value(registry, "stream_rca_root_cause_share", node="api", **gt) == 0.0
    assert value(registry, "stream_rca_attribution_seconds_count", graph="shop") == 1.0
    assert value(registry, "stream_rca_attribution_seconds_sum", graph="shop") == 0.004

    # Still open on the next snapshot, then closed.
    metrics.observe_step(step(open_incidents={"Website": "shop/Website/100"}), 0.0)
    assert value(registry, "stream_rca_incident_open", **gt) == 1.0
    closed = IncidentEvent("closed", "shop/Website/100", "shop", "Website", 130.0, 0.5)
    metrics.observe_step(step(events=(closed,)), 0.0)
    assert value(registry, "stream_rca_incident_open", **gt) == 0.0
    assert value(registry, "stream_rca_incidents_total", **gt) == 1.0
    # The closed incident's root causes stay visible until the next incident opens.
    assert value(registry, "stream_rca_root_cause_share", node="cache", **gt) == 0.75

    # A new incident: the previous one's series go before the new attribution arrives.
    metrics.observe_step(
        step(
            events=(opened("shop/Website/200", ts=200.0),),
            open_incidents={"Website": "shop/Website/200"},
        ),
        0.0,
    )
    assert value(registry, "stream_rca_root_cause_share", node="cache", **gt) is None
    assert value(registry, "stream_rca_incidents_total", **gt) == 2.0
    assert value(registry, "stream_rca_incident_start_timestamp_seconds", **gt) == 200.0
    latest = value(
        registry, "stream_rca_latest_incident_info", incident_id="shop/Website/200", **gt
    )
    assert latest == 1.0
    old = value(registry, "stream_rca_latest_incident_info", incident_id="shop/Website/100", **gt)
    assert old is None

    metrics.observe_attribution(attribution("shop/Website/200", {"db": 3.0}), 0.5)
    assert value(registry, "stream_rca_root_cause_share", node="db", **gt) == 1.0
    assert value(registry, "stream_rca_root_cause_share", node="cache", **gt) is None
    assert value(registry, "stream_rca_attributions_total", **gt) == 2.0
    assert value(registry, "stream_rca_attribution_seconds_count", graph="shop") == 2.0


def test_reattribution_replaces_root_causes(
    registry: CollectorRegistry, metrics: PipelineMetrics
) -> None:
    metrics.observe_attribution(attribution("i1", {"cache": 2.0, "db": 1.0}), 0.1)
    metrics.observe_attribution(attribution("i1", {"db": 5.0}), 0.1)
    gt = {"graph": "shop", "target": "Website"}
    assert value(registry, "stream_rca_root_cause_contribution", node="cache", **gt) is None
    assert value(registry, "stream_rca_root_cause_contribution", node="db", **gt) == 5.0
    assert value(registry, "stream_rca_latest_incident_info", incident_id="i1", **gt) == 1.0


def test_attribution_in_step_without_timing_skips_histogram(
    registry: CollectorRegistry, metrics: PipelineMetrics
) -> None:
    metrics.observe_step(step(attributions=(attribution("i1", {"db": 1.0}),)), 0.0)
    assert value(registry, "stream_rca_attributions_total", graph="shop", target="Website") == 1
    assert value(registry, "stream_rca_attribution_seconds_count", graph="shop") == 0.0


def test_attribution_carries_its_own_timing(
    registry: CollectorRegistry, metrics: PipelineMetrics
) -> None:
    if "seconds" not in {f.name for f in dataclasses.fields(Attribution)}:
        pytest.skip("Attribution has no seconds field")
    timed = dataclasses.replace(attribution("i1", {"db": 1.0}), seconds=0.25)  # type: ignore[call-arg,unused-ignore]
    metrics.observe_step(step(attributions=(timed,)), 0.3)
    metrics.observe_attribution(timed)
    assert value(registry, "stream_rca_attribution_seconds_count", graph="shop") == 2.0
    assert value(registry, "stream_rca_attribution_seconds_sum", graph="shop") == 0.5


def test_attribution_seconds_must_match(metrics: PipelineMetrics) -> None:
    with pytest.raises(ValueError, match="one per attribution"):
        metrics.observe_step(step(), 0.0, attribution_seconds=[0.1])


def test_latest_incident_info_is_one_series_per_target(
    registry: CollectorRegistry, metrics: PipelineMetrics
) -> None:
    for i in range(50):
        metrics.observe_step(
            step(events=(opened(f"i{i}"),), open_incidents={"Website": f"i{i}"}), 0
        )
    families = [f for f in registry.collect() if f.name == "stream_rca_latest_incident"]
    assert len(families[0].samples) == 1


def test_input_counters(registry: CollectorRegistry, metrics: PipelineMetrics) -> None:
    metrics.event("shop")
    metrics.event("shop", 4)
    metrics.late("shop")
    metrics.duplicate("shop", 2)
    metrics.dead_letter("unknown_node")
    metrics.dead_letter("unknown_node")
    metrics.dead_letter("Not A Code: {json}")
    assert value(registry, "stream_rca_events_total", graph="shop") == 5.0
    assert value(registry, "stream_rca_late_events_total", graph="shop") == 1.0
    assert value(registry, "stream_rca_duplicate_events_total", graph="shop") == 2.0
    assert value(registry, "stream_rca_dead_letters_total", reason="unknown_node") == 2.0
    assert value(registry, "stream_rca_dead_letters_total", reason="other") == 1.0
    # Every known reason exists from the start.
    assert value(registry, "stream_rca_dead_letters_total", reason="malformed_json") == 0.0
    # A graph that receives events has a snapshot counter at zero: a stall is visible.
    assert value(registry, "stream_rca_snapshots_total", graph="shop") == 0.0


def test_dead_letter_reasons_are_configurable() -> None:
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry, dead_letter_reasons=["bad"])
    metrics.dead_letter("bad")
    metrics.dead_letter("unknown_node")
    assert value(registry, "stream_rca_dead_letters_total", reason="bad") == 1.0
    assert value(registry, "stream_rca_dead_letters_total", reason="other") == 1.0
    assert value(registry, "stream_rca_dead_letters_total", reason="unknown_node") is None


def test_consumer_lag(registry: CollectorRegistry, metrics: PipelineMetrics) -> None:
    metrics.set_lag("rca.metrics", 3, 120)
    assert value(registry, "stream_rca_consumer_lag", topic="rca.metrics", partition="3") == 120.0
    metrics.set_lag("rca.metrics", 3, 7)
    assert value(registry, "stream_rca_consumer_lag", topic="rca.metrics", partition="3") == 7.0
    metrics.set_lag("rca.metrics", 3, None)
    metrics.set_lag("rca.metrics", 4, None)
    assert value(registry, "stream_rca_consumer_lag", topic="rca.metrics", partition="3") is None


def test_register_graph_creates_zero_series(
    registry: CollectorRegistry, metrics: PipelineMetrics
) -> None:
    metrics.register_graph("shop", nodes=["api", "db"], targets=["Website"])
    assert value(registry, "stream_rca_missing_values_total", graph="shop", node="db") == 0.0
    assert value(registry, "stream_rca_incident_open", graph="shop", target="Website") == 0.0
    assert value(registry, "stream_rca_attributions_total", graph="shop", target="Website") == 0
    assert value(registry, "stream_rca_late_events_total", graph="shop") == 0.0


def test_forget_graph_removes_state_gauges(
    registry: CollectorRegistry, metrics: PipelineMetrics
) -> None:
    metrics.observe_step(
        step(
            scores={"api": 1.0},
            target_scores={"Website": 9.0},
            events=(opened("i1"),),
            attributions=(attribution("i1", {"db": 1.0}),),
            open_incidents={"Website": "i1"},
        ),
        0.0,
    )
    metrics.observe_step(step(graph="bank", scores={"ledger": 2.0}), 0.0)
    metrics.forget_graph("shop")
    gt = {"graph": "shop", "target": "Website"}
    assert value(registry, "stream_rca_node_score", graph="shop", node="api") is None
    assert value(registry, "stream_rca_target_score", **gt) is None
    assert value(registry, "stream_rca_incident_open", **gt) is None
    assert value(registry, "stream_rca_root_cause_share", node="db", **gt) is None
    assert value(registry, "stream_rca_latest_incident_info", incident_id="i1", **gt) is None
    assert value(registry, "stream_rca_warmup_nodes", graph="shop") is None
    assert value(registry, "stream_rca_snapshots_total", graph="shop") == 1.0
    assert value(registry, "stream_rca_node_score", graph="bank", node="ledger") == 2.0
    metrics.forget_graph("never-seen")


def test_forget_graph_of_series_that_never_existed(
    registry: CollectorRegistry, metrics: PipelineMetrics
) -> None:
    """No incident ever opened, no score, no lag: forgetting (twice) removes what there is."""
    metrics.register_graph("shop", nodes=["api"], targets=["Website"])
    metrics.forget_graph("shop")
    metrics.forget_graph("shop")
    metrics.forget_graph("never-seen")
    assert value(registry, "stream_rca_incident_open", graph="shop", target="Website") is None
    assert value(registry, "stream_rca_incidents_total", graph="shop", target="Website") == 0.0
    # the graph comes back (a later rebalance): its state series come back with it
    metrics.observe_step(step(scores={"api": 1.0}, target_scores={"Website": 2.0}), 0.0)
    assert value(registry, "stream_rca_incident_open", graph="shop", target="Website") == 0.0
    assert value(registry, "stream_rca_node_score", graph="shop", node="api") == 1.0


def test_state_families_keep_their_names_types_and_labels(registry: CollectorRegistry) -> None:
    """Dashboards and alert rules query these: a scrape lists each with its type and labels."""
    metrics = PipelineMetrics(registry)
    metrics.observe_step(
        step(
            scores={"api": 1.0},
            target_scores={"Website": 9.0},
            warming=("db",),
            events=(opened("i1"),),
            attributions=(attribution("i1", {"db": 1.0}),),
            open_incidents={"Website": "i1"},
        ),
        0.0,
    )
    metrics.set_lag("rca.metrics", 0, 3)
    found = {
        f.name: (f.type, {tuple(sorted(s.labels)) for s in f.samples}) for f in registry.collect()
    }
    gt, gtn = ("graph", "target"), ("graph", "node", "target")
    assert found["stream_rca_node_score"] == ("gauge", {("graph", "node")})
    assert found["stream_rca_target_score"] == ("gauge", {gt})
    assert found["stream_rca_root_cause_contribution"] == ("gauge", {gtn})
    assert found["stream_rca_root_cause_share"] == ("gauge", {gtn})
    assert found["stream_rca_incident_open"] == ("gauge", {gt})
    assert found["stream_rca_incident_start_timestamp_seconds"] == ("gauge", {gt})
    assert found["stream_rca_latest_incident"] == ("info", {("graph", "incident_id", "target")})
    assert found["stream_rca_warmup_nodes"] == ("gauge", {("graph",)})
    assert found["stream_rca_last_snapshot_timestamp_seconds"] == ("gauge", {("graph",)})
    assert found["stream_rca_consumer_lag"] == ("gauge", {("partition", "topic")})


def test_series_names(metrics: PipelineMetrics) -> None:
    names = metrics.series_names()
    for name in (
        "stream_rca_node_score",
        "stream_rca_events_total",
        "stream_rca_dead_letters_total",
        "stream_rca_attribution_seconds_bucket",
        "stream_rca_snapshot_processing_seconds_count",
        "stream_rca_latest_incident_info",
        "stream_rca_build_info",
        "stream_rca_consumer_lag",
    ):
        assert name in names
    assert "stream_rca_events" not in names
    assert all(n.startswith("stream_rca_") for n in names)


def test_buckets_span_a_tenth_of_a_millisecond_to_ten_seconds() -> None:
    assert LATENCY_BUCKETS[0] == 0.0001
    assert LATENCY_BUCKETS[-1] == 10.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_serve_exposes_the_registry(registry: CollectorRegistry, metrics: PipelineMetrics) -> None:
    metrics.event("shop", 2)
    with serve(registry, 0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
            body = response.read().decode()
    assert 'stream_rca_events_total{graph="shop"} 2.0' in body
    assert "# TYPE stream_rca_node_score gauge" in body
    assert "python_gc" not in body  # not the global registry


@pytest.mark.parametrize("amount", [0.0, 0.0001, 0.0003, 0.004, 0.25, 7.0, 11.0])
@pytest.mark.parametrize("count", [0, 1, 3, 250])
def test_observe_many_is_observe_repeated(amount: float, count: int) -> None:
    from prometheus_client import Histogram

    from stream_rca.observability.families import BlockHistogram

    one, many = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("h", "doc", ["graph"], buckets=LATENCY_BUCKETS, registry=one)
    h_many = BlockHistogram("h", "doc", ["graph"], buckets=LATENCY_BUCKETS, registry=many)
    child = h_one.labels("shop")
    for _ in range(count):
        child.observe(amount)
    h_many.labels("shop").observe_many(amount, count)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    got, want = samples(many), samples(one)
    assert got.keys() == want.keys()
    for key, v in want.items():  # buckets and count exactly; the sum to round-off
        assert got[key] == (pytest.approx(v) if key[0] == "h_sum" else v), key
    with pytest.raises(ValueError, match="label"):
        h_many.observe_many(amount, 1)  # the parent of labelled children takes none

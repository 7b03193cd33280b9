"""The Prometheus config, rules and dashboards against the real promtool and Prometheus.

- ``promtool check config`` / ``check rules`` / ``test rules`` on ``deploy/prometheus``;
- every alert has promtool unit tests that fire and that stay silent, every recording rule a test;
- every dashboard query parses;
- a real Prometheus scraping real ``PipelineMetrics`` (fed hand-made engine results) returns data
  for every dashboard query and every rule expression, and fires RootCauseIdentified.

Without promtool/prometheus these tests skip; under ``CI=true`` they fail.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream_rca.core.types import Attribution, IncidentEvent, RootCause, StepResult
from stream_rca.observability import PipelineMetrics, serve
from tests.fixtures.prometheus import (
    PROMETHEUS_DIR,
    RULE_FILES,
    alerts,
    all_dashboard_queries,
    all_rule_expressions,
    free_port,
    prometheus_factory,  # noqa: F401  (a fixture)
    query,
    require_binary,
    wait_for,
)

RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
VARIABLES = {"graph": "shop", "target": "Website", "node": ".+"}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"


@pytest.mark.integration
def test_promtool_check_rules() -> None:
    assert_ok(promtool("check", "rules", *RULE_FILES))


@pytest.mark.integration
def test_promtool_check_config() -> None:
    assert_ok(promtool("check", "config", PROMETHEUS_DIR / "prometheus.yml"))


@pytest.mark.integration
def test_promtool_rule_unit_tests() -> None:
    assert RULE_TESTS
    assert_ok(promtool("test", "rules", *RULE_TESTS))


@pytest.mark.integration
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard_query_{i}", "expr": q.expr}
        for i, q in enumerate(all_dashboard_queries(VARIABLES))
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    assert_ok(promtool("check", "rules", path))


def _rule_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = []
    for path in RULE_TESTS:
        tests.extend(yaml.safe_load(path.read_text())["tests"])
    return tests


def test_every_alert_has_firing_and_silent_unit_tests() -> None:
    alerts = {q.name for q in all_rule_expressions(RULE_FILES) if q.ref == "alert"}
    fires: set[str] = set()
    silent: set[str] = set()
    for test in _rule_tests():
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    assert alerts <= fires, f"alerts never tested firing: {alerts - fires}"
    assert alerts <= silent, f"alerts never tested silent: {alerts - silent}"


def test_every_recording_rule_has_a_unit_test() -> None:
    records = {q.name for q in all_rule_expressions(RULE_FILES) if q.ref == "record"}
    tested = {
        case["expr"].strip() for test in _rule_tests() for case in test.get("promql_expr_test", [])
    }
    assert records <= tested, f"recording rules without a test: {records - tested}"


# -- a real Prometheus scraping real PipelineMetrics -------------------------------------------


def _attribution(incident_id: str) -> Attribution:
    return Attribution(
        incident_id=incident_id,
        graph="shop",
        target="Website",
        window_start=time.time(),
        window_end=None,
        detected_at=time.time(),
        target_score=9.0,
        root_causes=(
            RootCause("Caching Service", 7.2, 0.8, 12.0),
            RootCause("Product DB", 1.8, 0.2, 4.0),
        ),
        method="exact",
        linear=True,
        players=("Caching Service", "Product DB", "Website"),
        n_samples=1000,
        n_permutations=0,
        seed=0,
    )


def _feed(metrics: PipelineMetrics, stop: threading.Event) -> None:
    """Drive the metrics like a running pipeline: one anomalous graph, one stalled graph."""
    incident = "shop/Website/1"
    metrics.register_graph("shop", nodes=["Caching Service", "API"], targets=["Website"])
    metrics.set_lag("metrics", 0, 20000)  # ConsumerLagHigh
    first = True
    while not stop.is_set():
        metrics.event("shop", 10)
        metrics.late("shop")
        metrics.duplicate("shop")
        metrics.dead_letter("unknown_node")  # DeadLettersRising: 1 in 11
        metrics.event("stalled", 5)  # PipelineStalled: events, never a snapshot
        opened = IncidentEvent("opened", incident, "shop", "Website", time.time(), 9.0)
        metrics.observe_step(
            StepResult(
                graph="shop",
                ts=time.time(),
                scores={"Caching Service": 12.0, "API": 1.0, "www": 0.5},
                target_scores={"Website": 9.0},
                warm=True,
                warming=(),
                missing=("Order DB",),
                invalid=("Shipping Cost Service",),
                learned=("API", "www"),
                events=(opened,) if first else (),
                attributions=(_attribution(incident),),
                open_incidents={"Website": incident},
            ),
            0.003,
            attribution_seconds=[0.0015],
        )
        first = False
        stop.wait(0.2)


@pytest.fixture
def served_metrics() -> Iterator[str]:
    """``host:port`` of a /metrics endpoint fed by :func:`_feed` until the test ends."""
    metrics = PipelineMetrics(CollectorRegistry())
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(metrics, stop), daemon=True)
    with serve(metrics.registry, 0) as server:
        feeder.start()
        try:
            yield f"127.0.0.1:{server.port}"
        finally:
            stop.set()
            feeder.join(timeout=5)


@pytest.mark.integration
@pytest.mark.slow
def test_every_dashboard_query_and_rule_returns_data(
    prometheus_factory: Callable[[Sequence[str]], str],  # noqa: F811
    served_metrics: str,
) -> None:
    down = f"127.0.0.1:{free_port()}"  # nothing listens there: WorkerDown
    url = prometheus_factory([served_metrics, down])
    wait_for(url, 'up{job="stream-rca"} == 1')

    queries = [*all_dashboard_queries(VARIABLES), *all_rule_expressions(RULE_FILES)]
    deadline = time.monotonic() + 60
    empty = queries
    while empty and time.monotonic() < deadline:
        empty = [q for q in empty if not query(url, q.expr)]
        time.sleep(1)
    assert not empty, "no data for:\n" + "\n".join(
        f"  {q.source} {q.name} {q.ref}: {q.expr}" for q in empty
    )

    firing = wait_for(url, 'ALERTS{alertname="RootCauseIdentified", alertstate="firing"}')
    labels = firing[0]["metric"]
    assert labels["node"] == "Caching Service"
    assert labels["incident_id"] == "shop/Website/1"
    assert labels["target"] == "Website"
    (alert,) = [a for a in alerts(url) if a["labels"]["alertname"] == "RootCauseIdentified"]
    assert alert["annotations"]["summary"] == (
        "Website (shop) is anomalous: top root cause Caching Service (80%)"
    )
    assert "(target score 9.0 nats)" in alert["annotations"]["description"]

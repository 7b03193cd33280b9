"""Offline checks of the Grafana provisioning and dashboards (no Grafana, no Prometheus)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from grafana.dashgen import DATASOURCE_UID, build_all, render
from stream_rca.core.types import Attribution, IncidentEvent, RootCause, StepResult
from stream_rca.observability import PipelineMetrics
from tests.fixtures.prometheus import (
    DASHBOARDS_DIR,
    RULE_FILES,
    all_dashboard_queries,
    all_rule_expressions,
    metric_names,
)

REPO = Path(__file__).resolve().parents[2]
PROVISIONING = REPO / "grafana" / "provisioning"
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__from", "__to", "__all"}
BUILTIN_VARIABLES |= {"__value"}  # in data links: the clicked cell
PROMETHEUS_SERIES = {"up"}  # written by Prometheus itself for every scrape target
SCRAPE_LABELS = {"job", "instance"}
VARIABLES = {"graph": "shop", "target": "Website", "node": ".+"}

DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def recorded_names() -> set[str]:
    return {q.name for q in all_rule_expressions(RULE_FILES) if q.ref == "record"}


def populated_metrics() -> tuple[PipelineMetrics, dict[str, set[str]]]:
    """Metrics with every series present, and the label names of each series name."""
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    metrics.register_graph("shop", nodes=["api"], targets=["Website"])
    att = Attribution(
        "i1", "shop", "Website", 0.0, 1.0, 1.0, 2.0, (RootCause("api", 2.0, 1.0, 3.0),),
        "exact", True, ("api", "Website"), 100, 0, 0,
    )  # fmt: skip
    metrics.observe_step(
        StepResult(
            "shop", 0.0, {"api": 3.0}, {"Website": 2.0}, False, ("api",), ("api",), ("api",), (),
            events=(IncidentEvent("opened", "i1", "shop", "Website", 0.0, 2.0),),
            attributions=(att,), open_incidents={"Website": "i1"},
        ),
        0.01,
        attribution_seconds=[0.005],
    )  # fmt: skip
    metrics.dead_letter("unknown_node")
    metrics.set_lag("rca.metrics", 0, 5)
    labels: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return metrics, labels


def test_dashboards_exist() -> None:
    names = {p.name for p in DASHBOARD_FILES}
    assert names == {
        "stream-rca-incidents.json",
        "stream-rca-node-anomalies.json",
        "stream-rca-pipeline-health.json",
    }


def test_committed_json_is_what_the_generator_writes() -> None:
    for name, doc in build_all().items():
        committed = (DASHBOARDS_DIR / name).read_text(encoding="utf-8")
        assert committed == render(doc), f"{name} is stale: run python -m grafana.build_dashboards"


def test_datasource_provisioning() -> None:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = doc["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True


def test_dashboard_provider_points_at_the_dashboards() -> None:
    doc = yaml.safe_load((PROVISIONING / "dashboards" / "stream-rca.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_uids_are_unique() -> None:
    uids = [load(p)["uid"] for p in DASHBOARD_FILES]
    assert len(set(uids)) == len(uids)
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path) -> None:
    doc = load(path)
    assert 36 <= doc["schemaVersion"] <= 41
    assert doc["title"]
    assert doc["uid"]
    ids = [panel["id"] for panel in panels(doc)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    for panel in panels(doc):
        title = panel.get("title")
        assert title, f"panel {panel['id']} has no title"
        assert panel.get("description"), f"{title}: no description"
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, title
        assert panel["targets"], f"{title}: no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{title}: duplicate refId"
        for t in panel["targets"]:
            assert t["expr"].strip(), f"{title}/{t['refId']}: empty expr"
            assert t["datasource"]["uid"] == DATASOURCE_UID, f"{title}/{t['refId']}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_reads_back_through_the_sdk_model(path: Path) -> None:
    """Grafana's own models decode the JSON and write it back the same.

    The one exception: the Prometheus annotation's ``step``, ``titleFormat`` and
    ``useValueForTime``, which the SDK's annotation model has no fields for.
    """
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    doc = load(path)
    back = json.loads(json.dumps(Dashboard.from_json(doc), cls=JSONEncoder))
    lacking = {"step", "titleFormat", "useValueForTime", "hide"}  # hide: False when absent
    for before, after in zip(doc["annotations"]["list"], back["annotations"]["list"], strict=True):
        assert after.get("hide", False) == before.get("hide", False)
        assert {k: v for k, v in after.items() if k != "hide"} == {
            k: v for k, v in before.items() if k not in lacking
        }
    back["annotations"] = doc["annotations"]
    assert back == doc


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_panels_fit_the_grid_without_overlap(path: Path) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(load(path)):
        pos = panel["gridPos"]
        assert set(pos) == {"h", "w", "x", "y"}, panel["title"]
        assert min(pos["w"], pos["h"]) > 0
        assert min(pos["x"], pos["y"]) >= 0
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']} is wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_variables_are_defined_and_graph_comes_first(path: Path) -> None:
    doc = load(path)
    variables = doc["templating"]["list"]
    defined = {v["name"] for v in variables}
    graph = variables[0]
    assert graph["name"] == "graph"
    assert graph["query"]["query"] == "label_values(stream_rca_node_score, graph)"
    for v in variables:
        if v["type"] == "query":  # a textbox (report_url) has no datasource
            assert v["datasource"]["uid"] == DATASOURCE_UID, v["name"]
    text = json.dumps(doc["panels"]) + json.dumps(doc["annotations"]) + json.dumps(variables)
    used = set(re.findall(r"\$\{?(\w+)", text)) | set(re.findall(r"\[\[(\w+)\]\]", text))
    undefined = used - defined - BUILTIN_VARIABLES
    assert not undefined, f"variables used but not defined: {undefined}"
    # Every variable a dashboard defines is used by something.
    assert all(name in used for name in defined)


def test_every_query_reads_only_metrics_that_exist() -> None:
    metrics, _ = populated_metrics()
    known = metrics.series_names() | recorded_names() | PROMETHEUS_SERIES
    queries = all_dashboard_queries(VARIABLES)
    assert len(queries) > 30
    for q in queries:
        names = metric_names(q.expr)
        assert names, f"{q.source} {q.name}: reads no metric: {q.expr}"
        unknown = names - known
        assert not unknown, f"{q.source} {q.name}/{q.ref}: unknown metrics {unknown}"


def test_every_rule_reads_only_metrics_that_exist() -> None:
    metrics, _ = populated_metrics()
    known = metrics.series_names() | recorded_names() | PROMETHEUS_SERIES
    rules = all_rule_expressions(RULE_FILES)
    assert {q.name for q in rules if q.ref == "alert"} == {
        "RootCauseIdentified",
        "NodeAnomalousSustained",
        "PipelineStalled",
        "ConsumerLagHigh",
        "DeadLettersRising",
        "WorkerDown",
    }
    for q in rules:
        unknown = metric_names(q.expr) - known
        assert not unknown, f"{q.source} {q.name}: unknown metrics {unknown}"


_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\{([^{}]*)\}")


def test_selectors_use_labels_the_metrics_have() -> None:
    _, labels = populated_metrics()
    exprs = [q.expr for q in all_dashboard_queries(VARIABLES)]
    exprs += [q.expr for q in all_rule_expressions(RULE_FILES)]
    checked = 0
    for expr in exprs:
        for name, matchers in _SELECTOR.findall(expr):
            if name not in labels:
                continue  # a recording rule or up
            used = set(re.findall(r"(\w+)\s*[=!]~?", matchers))
            assert used <= labels[name] | SCRAPE_LABELS, f"{name}: no label {used - labels[name]}"
            checked += 1
    assert checked > 20


def test_incidents_dashboard_ranks_root_causes_of_the_selected_target() -> None:
    doc = load(DASHBOARDS_DIR / "stream-rca-incidents.json")
    assert [v["name"] for v in doc["templating"]["list"]] == ["graph", "target", "report_url"]
    by_title = {p["title"]: p for p in panels(doc)}
    share = by_title["Root causes: share of the anomaly"]
    assert share["type"] == "bargauge"
    expr = share["targets"][0]["expr"]
    assert "stream_rca_root_cause_share" in expr
    assert 'target="$target"' in expr
    assert expr.startswith("sort_desc(")
    assert share["targets"][0]["instant"] is True
    assert by_title["Target score"]["type"] == "timeseries"
    assert by_title["Latest incidents"]["type"] == "table"


def test_incidents_dashboard_links_each_incident_to_its_page() -> None:
    from stream_rca.report import page_url

    doc = load(DASHBOARDS_DIR / "stream-rca-incidents.json")
    pages = {p["title"]: p for p in panels(doc)}["Incident pages"]
    assert "stream_rca_latest_incident_info" in pages["targets"][0]["expr"]
    (override,) = pages["fieldConfig"]["overrides"]
    assert override["matcher"]["options"] == "Incident page"
    (links,) = [p["value"] for p in override["properties"] if p["id"] == "links"]
    url = links[0]["url"]
    # Grafana's percentencode leaves only letters, digits and -_.~ as they are: page_url's rule.
    incident = "shop:Product DB+1:1700000000"
    encoded = "".join(c if c.isalnum() or c in "-_.~" else f"%{ord(c):02X}" for c in incident)
    filled = url.replace("${report_url}", "http://h/p").replace(
        "${__value.raw:percentencode}", encoded
    )
    assert filled == page_url("http://h/p", incident)


def test_nodes_dashboard_has_a_heatmap_and_a_ranking() -> None:
    doc = load(DASHBOARDS_DIR / "stream-rca-node-anomalies.json")
    kinds = {p["type"] for p in panels(doc)}
    assert {"timeseries", "status-history", "bargauge"} <= kinds


def test_pipeline_dashboard_covers_health() -> None:
    doc = load(DASHBOARDS_DIR / "stream-rca-pipeline-health.json")
    text = json.dumps(doc)
    for metric in (
        "stream_rca_events_total",
        "stream_rca_consumer_lag",
        "stream_rca_snapshot_processing_seconds_bucket",
        "stream_rca_attribution_seconds_bucket",
        "stream_rca_dead_letters_total",
        "stream_rca_warmup_nodes",
    ):
        assert metric in text


def test_alert_dashboard_links_point_at_existing_dashboards() -> None:
    uids = {load(p)["uid"] for p in DASHBOARD_FILES}
    doc = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules" / "alerts.yml").read_text())
    for rule in doc["groups"][0]["rules"]:
        link = rule["annotations"]["dashboard"]
        uid = link.split("/")[2]
        assert uid in uids, f"{rule['alert']} links to unknown dashboard {uid}"
        assert rule["labels"]["severity"] in {"page", "warning"}
        assert {"summary", "description"} <= set(rule["annotations"])

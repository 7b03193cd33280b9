"""Generator of the stream-rca Grafana dashboards (run ``python -m grafana.build_dashboards``).

Built with grafana-foundation-sdk, Grafana's own typed builders (a dev dependency).
"""

from __future__ import annotations

import json

from grafana.dashgen.incidents import incidents
from grafana.dashgen.nodes import nodes
from grafana.dashgen.panels import DASHBOARDS_DIR, DATASOURCE_UID, SCHEMA_VERSION, Json
from grafana.dashgen.pipeline import pipeline

__all__ = ["DASHBOARDS_DIR", "DATASOURCE_UID", "SCHEMA_VERSION", "build_all", "render"]


def build_all() -> dict[str, Json]:
    """Every dashboard, by file name."""
    return {
        "stream-rca-incidents.json": incidents(),
        "stream-rca-node-anomalies.json": nodes(),
        "stream-rca-pipeline-health.json": pipeline(),
    }


def render(doc: Json) -> str:
    """The JSON text of a dashboard as committed (2-space indent, trailing newline)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

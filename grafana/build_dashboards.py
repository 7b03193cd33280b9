"""Generate the Grafana dashboards of stream-rca (``grafana/dashboards/*.json``).

The JSON is committed; edit ``grafana/dashgen`` and run this again rather than editing the JSON.
From the repository root:

    python -m grafana.build_dashboards          # write the dashboards
    python -m grafana.build_dashboards --check  # exit 1 if the committed JSON is out of date

Every panel and query uses the provisioned Prometheus datasource (uid ``stream-rca-prometheus``,
see ``grafana/provisioning/datasources/prometheus.yml``); every query reads metrics that
``stream_rca.observability.PipelineMetrics`` exports or that
``deploy/prometheus/rules/recording.yml`` records (``tests/unit/test_dashboards.py`` checks).
"""

from __future__ import annotations

import argparse
import sys

from grafana.dashgen import DASHBOARDS_DIR, build_all, render

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Write (or ``--check``) the dashboards; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the JSON is out of date")
    args = parser.parse_args(argv)
    stale = []
    DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
    for name, doc in build_all().items():
        path = DASHBOARDS_DIR / name
        text = render(doc)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m grafana.build_dashboards")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Incident pages: one self-contained HTML page per incident, drawn as server-side SVG.

``stream-rca report`` writes them from attribution (and score, and change) documents;
:class:`ReportWriter` writes them as a run goes (``stream-rca demo --report DIR``, the worker's
``report_dir`` setting). The pages load nothing: no script, no font, no image from anywhere.
"""

from __future__ import annotations

from stream_rca.report.documents import (
    Change,
    Incident,
    ReportError,
    ScorePoint,
    latest_revisions,
    read_changes,
    read_incidents,
    read_scores,
)
from stream_rca.report.page import render_page
from stream_rca.report.writer import ReportWriter, page_name, page_url, write_pages

__all__ = [
    "Change",
    "Incident",
    "ReportError",
    "ReportWriter",
    "ScorePoint",
    "latest_revisions",
    "page_name",
    "page_url",
    "read_changes",
    "read_incidents",
    "read_scores",
    "render_page",
    "write_pages",
]

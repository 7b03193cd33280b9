"""Where incident pages go: one file per incident, named from its id, and an index.

A page is named :func:`page_name` of its incident id: the id itself plus ``.html`` (so that a
link is the base URL, ``/``, the percent-encoded id and ``.html``; the alert rule and the
dashboard build it that way), except that characters a file name cannot hold (``/``, ``\\``,
control characters, a leading dot) become ``_``, and an id too long for a file name is cut
and given a hash. Pages are written to a temporary file and renamed, so that a web server
serving the directory never sends half a page.

:func:`write_pages` writes the pages of a file of attributions (``stream-rca report``);
:class:`ReportWriter` writes them as a run goes (the demo and the worker): a page when an
incident is attributed, and again when it closes (or after ``after`` more snapshots), with the
scores around it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from stream_rca.core.types import Attribution, StepResult
from stream_rca.report.documents import Change, Incident, ReportError, ScorePoint
from stream_rca.report.page import render_page

__all__ = ["ReportWriter", "page_name", "page_url", "points_around", "write_pages"]

_BEFORE, _AFTER = 30, 30
_MAX_NAME = 200  # bytes; file systems allow 255
_INDEX_SIZE = 1000  # incidents listed in the index of a long run


def page_name(incident_id: str) -> str:
    """The file name of an incident's page.

    >>> page_name("shop:Website:1767228600")
    'shop:Website:1767228600.html'
    >>> page_name("../a/b")
    '_._a_b.html'
    """
    name = "".join("_" if c in "/\\" or not c.isprintable() else c for c in incident_id)
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name.encode()) > _MAX_NAME:
        digest = hashlib.sha256(incident_id.encode()).hexdigest()[:16]
        name = name.encode()[: _MAX_NAME - 17].decode(errors="ignore") + "-" + digest
    return name + ".html"


def page_url(base: str, incident_id: str) -> str:
    """The link to an incident's page under ``base`` (the URL the directory is served at).

    >>> page_url("http://rca.example/pages/", "shop:Product DB:1")
    'http://rca.example/pages/shop%3AProduct%20DB%3A1.html'
    """
    return base.rstrip("/") + "/" + quote(page_name(incident_id), safe=".-_~")


def points_around(
    points: Sequence[ScorePoint], incident: Incident, before: int = _BEFORE, after: int = _AFTER
) -> list[ScorePoint]:
    """The incident graph's score points from ``before`` snapshots ahead of it to ``after``."""
    mine = sorted((p for p in points if p.graph == incident.graph), key=lambda p: p.ts)
    if not mine:
        return []
    at = min(range(len(mine)), key=lambda i: abs(mine[i].ts - incident.window_start))
    return mine[max(0, at - before) : at + after + 1]


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".page-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _out_dir(out: str | Path) -> Path:
    d = Path(out)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out}: cannot create the directory: {exc.strerror or exc}") from None
    return d


def _change_for(incident: Incident, changes: Iterable[Change]) -> Change | None:
    mine = [c for c in changes if c.target == incident.target and c.graph in ("", incident.graph)]
    exact = [c for c in mine if c.incident_id == incident.incident_id]
    chosen = exact or [c for c in mine if c.incident_id is None]
    return chosen[-1] if chosen else None


def write_index(out: Path, incidents: Sequence[Incident]) -> Path:
    """``index.html``: every incident with its top cause, linking to its page."""
    e = html.escape
    rows = "".join(
        f'<tr><td><a href="{e(quote(page_name(i.incident_id)))}">{e(i.incident_id)}</a></td>'
        f"<td>{e(i.graph)}</td><td>{e(i.target)}</td><td>{i.target_score:.1f}</td>"
        f"<td>{e(i.causes[0].node) if i.causes else '-'}</td>"
        f"<td>{f'{i.causes[0].share:.0%}' if i.causes else '-'}</td></tr>"
        for i in sorted(incidents, key=lambda i: i.window_start, reverse=True)
    )
    text = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>stream-rca '
        "incidents</title><style>body{font:14px system-ui,sans-serif;margin:24px}"
        "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
        "text-align:left}</style></head><body><h1>Incidents</h1><table><tr><th>incident</th>"
        "<th>graph</th><th>target</th><th>score (nats)</th><th>top cause</th><th>share</th>"
        f"</tr>{rows}</table></body></html>\n"
    )
    path = out / "index.html"
    _write(path, text)
    return path


def write_pages(
    out: str | Path,
    incidents: Sequence[Incident],
    *,
    points: Sequence[ScorePoint] = (),
    changes: Sequence[Change] = (),
    edges: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> list[Path]:
    """Write the page of each incident (its latest revision) and the index; their paths.

    ``edges`` maps a graph name to its arrows; a graph not in it is drawn without them.
    """
    d = _out_dir(out)
    paths = []
    for inc in incidents:
        text = render_page(
            inc,
            edges=(edges or {}).get(inc.graph),
            points=points_around(points, inc),
            change=_change_for(inc, changes),
        )
        path = d / page_name(inc.incident_id)
        _write(path, text)
        paths.append(path)
    write_index(d, incidents)
    return paths


@dataclass(slots=True)
class _Pending:
    incident: Incident
    left: int


class ReportWriter:
    """Writes incident pages as snapshots are processed (the demo, the worker).

    Parameters
    ----------
    out
        The directory of the pages (created).
    edges
        Graph name to its arrows.
    before, after
        Snapshots of scores shown ahead of an incident and after it.
    """

    def __init__(
        self,
        out: str | Path,
        edges: Mapping[str, Sequence[tuple[str, str]]],
        *,
        before: int = _BEFORE,
        after: int = _AFTER,
    ) -> None:
        self.out = _out_dir(out)
        self.edges = dict(edges)
        self.before = before
        self.after = after
        self._points: dict[str, deque[ScorePoint]] = {}
        self._pending: dict[str, _Pending] = {}
        self._incidents: dict[str, Incident] = {}
        self.truth: dict[str, tuple[str, ...]] = {}
        """Incident id to the injected root causes, for a simulation that knows them."""
        self.written: list[Path] = []

    def observe(self, result: StepResult) -> list[Path]:
        """Take one snapshot's result; return the pages written because of it."""
        ring = self._points.setdefault(result.graph, deque(maxlen=self.before + self.after + 1))
        ring.append(
            ScorePoint(
                result.graph,
                result.ts,
                dict(result.scores),
                dict(result.target_scores),
                dict(result.open_incidents),
            )
        )
        written = []
        closed = {ev.incident_id for ev in result.events if ev.kind == "closed"}
        for key, pending in list(self._pending.items()):
            pending.left -= 1
            if key in closed or pending.left <= 0:  # closed: now; and once more at the end
                written.append(self._page(pending.incident))
            if pending.left <= 0:
                del self._pending[key]
        for att in result.attributions:
            written.append(self.attributed(att))
        if written:
            write_index(self.out, list(self._incidents.values()))
        return written

    def attributed(self, att: Attribution) -> Path:
        """Write the page of a new attribution now; it is written again with later scores."""
        incident = Incident.from_document(att.to_dict())
        if att.incident_id in self.truth:
            incident = dataclasses.replace(incident, truth=self.truth.pop(att.incident_id))
        self._incidents.pop(incident.incident_id, None)
        self._incidents[incident.incident_id] = incident
        while len(self._incidents) > _INDEX_SIZE:
            del self._incidents[next(iter(self._incidents))]
        self._pending[incident.incident_id] = _Pending(incident, self.after)
        return self._page(incident)

    def flush(self) -> list[Path]:
        """Write the pages still waiting for later scores (at the end of a run)."""
        written = [self._page(p.incident) for p in self._pending.values()]
        self._pending.clear()
        if written:
            write_index(self.out, list(self._incidents.values()))
        return written

    def _page(self, incident: Incident) -> Path:
        points = list(self._points.get(incident.graph, ()))
        text = render_page(
            incident,
            edges=self.edges.get(incident.graph),
            points=points_around(points, incident, self.before, self.after),
        )
        path = self.out / page_name(incident.incident_id)
        _write(path, text)
        if path not in self.written:
            self.written.append(path)
        return path

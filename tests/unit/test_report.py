"""Incident pages: documents read, names escaped, the waterfall adds up, the command's errors."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from stream_rca.cli import main
from stream_rca.demo import DemoSettings, run_demo
from stream_rca.report import (
    Incident,
    ReportError,
    ScorePoint,
    page_name,
    page_url,
    read_incidents,
    render_page,
)
from stream_rca.report.graph_svg import cause_path

EVIL = "<script>alert(1)</script>"
QUOTES = 'it\'s a "db" & <b>cache</b>'
EDGES = [(EVIL, QUOTES), (QUOTES, "api"), ("other", "api")]


def attribution(target: str = "api", incident: str | None = None, **extra: Any) -> dict[str, Any]:
    causes = [(EVIL, 6.0, 25.0, 0.2, True), (QUOTES, 3.0, 9.0, 0.1, False)]
    causes += [("other", -1.0, 0.3, 0.0, False), (target, 0.5, 1.0, 0.0, False)]
    doc: dict[str, Any] = {
        "schema": "stream-rca.attribution/v1",
        "incident_id": incident or f"g:{target}:100",
        "revision": 0,
        "graph": "g",
        "target": target,
        "window": {"start": 100.0, "end": 110.0},
        "detected_at": 110.0,
        "target_score": 8.5,
        "root_causes": [
            {"node": n, "contribution": c, "share": max(c, 0) / 9.5, "score": s, "stderr": se}
            | {"tied": t}
            for n, c, s, se, t in causes
        ],
        "method": "permutation",
        "linear": False,
        "players": [EVIL, QUOTES, "other", target],
        "n_samples": 256,
        "n_permutations": 64,
        "seed": 7,
        "missing": ["other"],
        "cold": [QUOTES],
        "marginalised": [],
        "rank_rule": "by contribution",
    }
    doc.update(extra)
    return doc


def scores(ts: float, open_id: str | None = None) -> dict[str, Any]:
    return {
        "schema": "stream-rca.scores/v1",
        "graph": "g",
        "window": {"start": ts, "end": ts + 10},
        "scores": {EVIL: 20.0 if ts >= 100 else 1.0, QUOTES: 2.0, "other": None},
        "target_scores": {"api": 9.0 if ts >= 100 else 0.5},
        "open_incidents": {"api": open_id} if open_id else {},
    }


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(text: str) -> _Tags:
    p = _Tags()
    p.feed(text)
    return p


def test_names_are_escaped_everywhere() -> None:
    inc = Incident.from_document(attribution(target=EVIL + "'\""))
    points = [ScorePoint.from_document(scores(t)) for t in range(0, 200, 10)]
    text = render_page(inc, edges=EDGES, points=points)
    tags = parsed(text)
    assert "script" not in tags.tags  # no script at all, and none injected
    assert not any(k.startswith("on") for k, _ in tags.attrs)  # no event handler attribute
    assert EVIL not in text
    assert "<b>cache</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert any(EVIL in t for t in tags.text)  # shown, as text
    assert any('it\'s a "db" & <b>cache' in t for t in tags.text)


def test_page_holds_graph_waterfall_timeline_and_details() -> None:
    inc = Incident.from_document(attribution())
    points = [ScorePoint.from_document(scores(t, "g:api:100" if t >= 100 else None))
              for t in range(0, 200, 10)]  # fmt: skip
    text = render_page(inc, edges=EDGES, points=points)
    for section in ("graph", "waterfall", "timeline", "causes", "details"):
        assert f'id="{section}"' in text
    assert text.count('class="node"') == 4
    assert text.count("path-edge") == 2  # the path EVIL -> QUOTES -> api, drawn apart
    assert 'class="open"' in text  # the span the incident stayed open
    assert text.count('class="series"') == 3  # the target, two causes ("other" has no score)
    assert "sum 8.50" in text
    assert "8.50 nats" in text
    assert "permutation" in text
    assert "256" in text
    assert "64" in text
    assert "tied with the next" in text


def test_the_path_is_the_shortest_from_the_top_cause() -> None:
    assert cause_path(EDGES, EVIL, "api") == (EVIL, QUOTES, "api")
    assert cause_path([], "a", "b") == ("a", "b")
    assert cause_path(EDGES, "api", "api") == ("api",)


def test_a_page_without_the_graph_or_scores_says_so() -> None:
    text = render_page(Incident.from_document(attribution()))
    assert "was not given (--graph)" in text
    assert "No score documents" in text


def test_a_distribution_change_is_shown(tmp_path: Path) -> None:
    inc, out = tmp_path / "inc.jsonl", tmp_path / "out"
    inc.write_text(json.dumps(attribution()) + "\n")
    change = {
        "schema": "stream-rca.change/v1",
        "graph": "g",
        "target": "api",
        "statistic": "p99",
        "contributions": [{"node": EVIL, "contribution": 0.7, "share": 0.7}],
        "method": "exact",
        "samples": 1000,
    }
    (tmp_path / "ch.jsonl").write_text(json.dumps(change) + "\n")
    assert (
        main(["report", str(inc), "--changes", str(tmp_path / "ch.jsonl"), "--out", str(out)]) == 0
    )
    text = (out / page_name("g:api:100")).read_text()
    assert 'id="change"' in text
    assert "p99" in text
    assert "&lt;script&gt;" in text


def test_page_names_are_file_names() -> None:
    assert page_name("shop:Website:1") == "shop:Website:1.html"
    assert "/" not in page_name("../../etc/passwd")
    assert not page_name("..x").startswith(".")
    assert len(page_name("x" * 1000).encode()) < 255
    assert page_name("a/b") != page_name("x" * 1000)
    assert page_url("http://h/p", "g:Product DB:1") == "http://h/p/g%3AProduct%20DB%3A1.html"


def test_the_latest_revision_wins(tmp_path: Path) -> None:
    path = tmp_path / "inc.jsonl"
    docs = [attribution(), attribution(revision=1, target_score=9.0), attribution(target="x")]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    out = tmp_path / "out"
    assert main(["report", str(path), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["g:api:100.html", "g:x:100.html", "index.html"]
    assert "revision 1" in (out / "g:api:100.html").read_text()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json\n", "inc.jsonl:1: not JSON"),
        ('{"schema": "other"}\n', "inc.jsonl:1: not an attribution document"),
        (json.dumps(attribution(target_score="high")) + "\n", "target_score: expected a finite"),
        ("\n" + json.dumps(attribution(root_causes=[1])) + "\n", "inc.jsonl:2: root_causes[0]"),
        ("[1]\n", "expected a JSON object"),
    ],
)
def test_bad_documents_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    path = tmp_path / "inc.jsonl"
    path.write_text(content)
    with pytest.raises(ReportError, match=re.escape(expected.split(":", 2)[-1].strip())):
        read_incidents(path)
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_missing_input_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "none.jsonl"), "--out", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_demo_writes_a_page_per_incident(tmp_path: Path) -> None:
    cfg = DemoSettings(seed=0, faults=2)
    report = run_demo(cfg, report_dir=tmp_path)
    ids = {a.incident_id for a in report.attributions}
    pages = {p.name for p in tmp_path.glob("*.html")} - {"index.html"}
    assert ids
    assert pages == {page_name(i) for i in ids}
    index = (tmp_path / "index.html").read_text()
    for i in ids:
        text = (tmp_path / page_name(i)).read_text()
        assert "Injected by the simulation" in text
        assert 'class="series"' in text
        assert i in index

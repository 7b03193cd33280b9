"""Incident pages in a real headless Chromium: they render, log nothing, run no injected script.

Chromium is Debian's ``chromium`` (``deploy/chromium/install.sh``, run by ``make test``). Each
test opens pages with ``--dump-dom`` (the DOM after loading) and ``--enable-logging``
(console messages on stderr, as ``CONSOLE`` lines), and keeps a screenshot in ``tmp_path``,
printing its path (``pytest -s`` shows it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stream_rca.cli import main
from stream_rca.demo import DemoSettings, run_demo
from stream_rca.report import page_name
from tests.conftest import IN_CI
from tests.unit.test_report import EDGES, EVIL, attribution, scores

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if IN_CI:
            pytest.fail("chromium not found (deploy/chromium/install.sh installs it)")
        pytest.skip("chromium not found: bash deploy/chromium/install.sh")
    return found


def browse(chromium: str, page: Path, profile: Path, *action: str) -> tuple[str, list[str]]:
    """Open ``page``; its DOM (or Chromium's output) and the console messages it logged."""
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",  # tests run as root in CI
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *action,
        page.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def svg(dom: str, cls: str) -> str:
    found = re.search(rf'<svg[^>]*class="{cls}".*?</svg>', dom, re.S)
    assert found is not None, f"no <svg class={cls}> in the DOM"
    return found.group(0)


def test_the_console_check_sees_errors(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><p>x</p><script>console.error("control")</script>')
    _, console = browse(chromium, page, tmp_path / "profile", "--dump-dom")
    assert any("control" in line for line in console)


def test_a_demo_page_renders_its_graph_waterfall_and_timeline(
    chromium: str, tmp_path: Path
) -> None:
    out = tmp_path / "pages"
    report = run_demo(DemoSettings(seed=0, faults=2), report_dir=out)
    att = report.attributions[0]
    page = out / page_name(att.incident_id)
    dom, console = browse(chromium, page, tmp_path / "profile", "--dump-dom")
    assert console == []
    graph = svg(dom, "graph")
    assert graph.count("<circle") == len(att.players)
    assert 'class="edge path-edge"' in graph  # the path from the top cause, drawn apart
    waterfall = svg(dom, "waterfall")
    assert waterfall.count("<rect") == len(att.root_causes) + 1  # each cause, and the total
    timeline = svg(dom, "timeline")
    assert timeline.count('class="series"') >= 2  # the target and at least its top cause
    assert 'class="open"' in timeline
    shot = tmp_path / "incident.png"
    browse(chromium, page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,1700")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a page of charts, not a blank one
    print(f"\nscreenshot of {page.name}: {shot}")


def test_hostile_names_stay_text_in_the_browser(
    chromium: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inc, sc, out = tmp_path / "inc.jsonl", tmp_path / "scores.jsonl", tmp_path / "pages"
    target = EVIL + "'\""
    inc.write_text(json.dumps(attribution(target=target)) + "\n")
    sc.write_text("".join(json.dumps(scores(t)) + "\n" for t in range(0, 300, 10)))
    graph = tmp_path / "g.json"
    edges = [*EDGES, ("api", target)]
    graph.write_text(json.dumps({"name": "g", "edges": [list(e) for e in edges]}))
    assert (
        main(["report", str(inc), "--scores", str(sc), "--graph", str(graph), "--out", str(out)])
        == 0
    )
    capsys.readouterr()
    page = next(p for p in out.glob("*.html") if p.name != "index.html")
    dom, console = browse(chromium, page, tmp_path / "profile", "--dump-dom")
    assert console == []  # an injected script would have run (alert) or been blocked (logged)
    assert "<script" not in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    shot = tmp_path / "hostile.png"
    browse(chromium, page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,1400")
    print(f"\nscreenshot of a page with hostile names: {shot}")

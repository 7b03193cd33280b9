"""The batch path writes the incident pages record-by-record processing writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream_rca.report import ReportWriter
from stream_rca.streaming.batch import InputRecord, process_batch, write_pages
from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.simulator import Simulation
from tests.unit.test_batch_pipeline import NOW, shop_simulation, shop_specs


def _pages(directory: Path) -> dict[str, str]:
    """Each page's text, the attribution's wall-clock time left out."""
    return {
        p.name: re.sub(r"[0-9.]+ ms", "- ms", p.read_text(encoding="utf-8"))
        for p in sorted(directory.glob("*.html"))
    }


@pytest.mark.parametrize("batch_form", [False, True], ids=["single", "batch"])
def test_batches_write_the_pages_of_one_by_one(batch_form: bool, tmp_path: Path) -> None:
    config = shop_simulation(batch_form)
    raws = [v for _, values in Simulation(config, now=NOW).snapshots(260) for v in values]
    specs = shop_specs(config, tmp_path)
    edges = {s.name: list(s.graph.edges) for s in specs}

    def pipeline() -> Pipeline:
        return Pipeline(specs, publish_scores=True, clock=lambda: NOW)

    one = ReportWriter(tmp_path / "one", edges)
    p1 = pipeline()
    for offset, raw in enumerate(raws):  # what the worker's agent does, message by message
        write_pages(one, p1.process_one(raw, partition=0, offset=offset, topic="m", key=b"k"))
    many = ReportWriter(tmp_path / "many", edges)
    p2 = pipeline()
    records = [InputRecord(raw, 0, offset, "m", b"k") for offset, raw in enumerate(raws)]
    for start in range(0, len(records), 333):
        process_batch(p2, records[start : start + 333], results=False, pages=many)
    want, got = _pages(tmp_path / "one"), _pages(tmp_path / "many")
    assert len(want) >= 4  # incident pages and the index
    assert got == want
    # the pages still waiting for later scores, at the end of the run
    assert [p.name for p in many.flush()] == [p.name for p in one.flush()]
    assert _pages(tmp_path / "many") == _pages(tmp_path / "one")

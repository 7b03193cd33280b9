"""``stream-rca why-changed``: the supply-chain answer, two files, bad input as one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from stream_rca.cli import main


def _argv(folder: Path, *extra: str) -> list[str]:
    return [
        "why-changed",
        "--graph",
        str(folder / "graph.json"),
        "--target",
        "received",
        *extra,
    ]


@pytest.mark.parametrize("statistic", ["mean", "p99"])
def test_supply_chain_from_one_file(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], statistic: str
) -> None:
    folder = shared_data / "dowhy-supply-chain"
    out = tmp_path / "out.json"
    data = str(folder / "week_over_week.csv")
    argv = _argv(folder, "--data", data, "--period-column", "week", "--before", "w1")
    argv += ["--after", "w2", "--statistic", statistic, "--output", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "column 'asin' is not a node of the graph" in captured.err
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["schema"] == "stream-rca.change/v1"
    assert doc["statistic"] == statistic
    assert doc["periods"]["before"] == {"file": data, "week": "w1", "rows": 1000}
    ranked = [c["node"] for c in doc["contributions"]]
    assert set(ranked[:2]) == {"demand", "confirmed"}
    contributions = [abs(c["contribution"]) for c in doc["contributions"]]
    assert contributions == sorted(contributions, reverse=True)
    assert sum(c["contribution"] for c in doc["contributions"]) == pytest.approx(
        doc["model"]["change"]
    )
    assert {"method", "samples", "players"} <= set(doc)


def test_two_files(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared_data / "dowhy-supply-chain"
    with (folder / "week_over_week.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    paths = {}
    for week in ("w1", "w2"):
        paths[week] = tmp_path / f"{week}.csv"
        with paths[week].open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if r["week"] == week)
    argv = _argv(folder, "--before", str(paths["w1"]), "--after", str(paths["w2"]), "--no-test")
    assert main(argv) == 0
    text = capsys.readouterr().out
    first, second = (line.split()[1] for line in text.splitlines()[1:3])
    assert {first, second} == {"demand", "confirmed"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--before", "w1", "--after", "w3"], "--after 'w3': no row of"),
        (["--before", "w1", "--after", "w2", "--statistic", "median"], "--statistic 'median'"),
        (["--before", "w1", "--after", "w2", "--samples", "3"], "--samples 3"),
    ],
)
def test_bad_input_is_one_line(
    shared_data: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    folder = shared_data / "dowhy-supply-chain"
    data = str(folder / "week_over_week.csv")
    assert main(_argv(folder, "--data", data, "--period-column", "week", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_text_in_a_node_column_names_the_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"edges": [["a", "b"]]}), encoding="utf-8")
    good = tmp_path / "good.csv"
    good.write_text("a,b\n" + "".join(f"{i},{i + 1}\n" for i in range(20)), encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,oops\n", encoding="utf-8")
    argv = ["why-changed", "--graph", str(graph), "--target", "b", "--before", str(good)]
    assert main([*argv, "--after", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 3, column 'b': 'oops' is not a number" in err
    assert main([*argv, "--after", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in capsys.readouterr().err

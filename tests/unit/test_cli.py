"""The command line through its public entry point."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stream_rca.cli import main


def test_demo_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "incidents.jsonl"
    assert main(["demo", "--seed", "0", "--faults", "3", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "summary" in text
    assert "detected          3   missed 0" in text
    assert "top-1 accuracy    100%" in text
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(docs) >= 3
    for doc in docs:
        assert doc["schema"] == "stream-rca.attribution/v1"
        assert doc["target"] == "Website"
        assert doc["truth"]["root_causes"]
        assert doc["root_causes"][0]["node"] in doc["truth"]["root_causes"]
        total = sum(rc["contribution"] for rc in doc["root_causes"])
        assert abs(total - doc["target_score"]) < 1e-6


def test_replay_explains_dowhy_anomaly(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shared_data / "dowhy-microservice"
    out = tmp_path / "out.jsonl"
    argv = [
        "replay",
        "--graph", str(folder / "graph.json"),
        "--train", str(folder / "normal.csv"),
        "--data", str(folder / "anomaly.csv"),
        "--explain", "0",
        "--output", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    assert "learned from 10000 snapshots" in capsys.readouterr().out
    (doc,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert doc["root_causes"][0]["node"] == "Caching Service"


def test_replay_reads_petshop_format(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared_data / "petshop" / "low_traffic"
    argv = [
        "replay",
        "--graph", str(folder / "graph.csv"),
        "--train", str(folder / "noissue" / "metrics.csv"),
        "--data", str(folder / "train" / "issue_0" / "metrics.csv"),
        "--target", "PetSite", "--warmup", "50", "--explain", "2", "--ignore-extra",
    ]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "learned from 589 snapshots" in text
    assert "target PetSite" in text


def test_check_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "g.json"
    good.write_text(json.dumps({"edges": [["db", "api"], ["api", "web"]]}))
    assert main(["check-graph", str(good), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sinks"] == ["web"]
    assert summary["nodes"] == 3
    bad = tmp_path / "cyclic.txt"
    bad.write_text("a -> b\nb -> a\n")
    assert main(["check-graph", str(bad)]) == 2
    assert "cycle: a -> b -> a" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay"])
    assert exc.value.code == 2
    assert "--train" in capsys.readouterr().err  # --graph is optional (graph-free replay)


# -- settings from flags and variables --------------------------------------------------------


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_version_works_whatever_the_environment_holds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_RCA_METRICS_PORT", "abc")
    monkeypatch.setenv("STREAM_RCA_SESSION_TIMEOUT", "abc")
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("stream-rca ")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (
            ["demo"],
            {"STREAM_RCA_METRICS_PORT": "abc"},
            "STREAM_RCA_METRICS_PORT='abc': expected an integer from 0 to 65535",
        ),
        (
            ["worker"],
            {"STREAM_RCA_SESSION_TIMEOUT": "abc"},
            "STREAM_RCA_SESSION_TIMEOUT='abc': expected a number of seconds > 0",
        ),
        (
            ["worker", "--metrics-port", "abc"],
            {},
            "--metrics-port 'abc': expected an integer from 0 to 65535",
        ),
        (
            ["simulate", "--security-protocol", "TLS"],
            {},
            "--security-protocol 'TLS': expected one of PLAINTEXT, SSL",
        ),
        (["worker"], {}, "the worker needs a graphs file: --config FILE"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    monkeypatch.delenv("STREAM_RCA_CONFIG", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    assert message in _one_line_error(capsys)


def test_a_bad_variable_of_another_command_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_RCA_SESSION_TIMEOUT", "abc")  # a worker setting
    good = tmp_path / "g.json"
    good.write_text(json.dumps({"edges": [["db", "api"]]}))
    assert main(["check-graph", str(good)]) == 0
    assert "graph 'g' (the file's stem): valid DAG" in capsys.readouterr().out


def test_help_names_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    from stream_rca.cli_settings import settings_fields
    from stream_rca.config import env_name, setting_info

    for command in ("worker", "simulate", "replay", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for name in settings_fields(command):
            assert env_name(name) in text, (command, name)
            assert setting_info(name).flags[0] in text
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "visible to every user of the host in `ps`" in text
    assert "--sasl-password-file" in text


def test_an_unreachable_broker_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    graphs = tmp_path / "graphs.yaml"
    graphs.write_text("graphs: [{name: shop, edges: [[db, api]]}]\n")
    argv = ["simulate", "--bootstrap", f"127.0.0.1:{port}", "--count", "1"]
    assert main(argv) == 1
    line = _one_line_error(capsys)
    assert f"Kafka at 127.0.0.1:{port} (PLAINTEXT): no broker reachable" in line


# -- replay ---------------------------------------------------------------------------------


def _chain_files(folder: Path, *, rows: int = 400, data_rows: int = 40) -> dict[str, Path]:
    """A seeded linear chain db -> api -> web: a graph file, training data, data with a fault."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    graph = folder / "graph.txt"
    graph.write_text("db -> api\napi -> web\n")

    def table(n: int, fault_row: int | None) -> str:
        lines = ["db,api,web"]
        for i in range(n):
            db = 1.0 + 0.1 * rng.standard_normal()
            if i == fault_row:
                db += 3.0
            api = 2.0 * db + 0.1 * rng.standard_normal()
            web = api + 0.5 + 0.1 * rng.standard_normal()
            lines.append(f"{db:.6f},{api:.6f},{web:.6f}")
        return "\n".join(lines) + "\n"

    train, data = folder / "normal.csv", folder / "data.csv"
    train.write_text(table(rows, None))
    data.write_text(table(data_rows, 30))
    return {"graph": graph, "train": train, "data": data}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--warmup", "5"], "--warmup 5: warmup must be at least 10"),
        (["--threshold", "-3"], "--threshold -3: threshold must be positive"),
        (["--threshold", "nan"], "--threshold: expected a number, got nan"),
        (["--target", "nope"], "--target 'nope': not a node of graph 'graph'"),
        (["--explain", "-1", "--data", "DATA"], "--explain -1: expected a row number >= 0"),
        (["--scores", "out.jsonl"], "--scores needs --data"),
        (["--warmup", "many"], "argument --warmup: invalid int value: 'many'"),
    ],
)
def test_replay_bad_arguments_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    files = _chain_files(tmp_path)
    argv = ["replay", "--graph", str(files["graph"]), "--train", str(files["train"])]
    argv += [str(files["data"]) if a == "DATA" else a for a in extra]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    assert code == 2
    assert message in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "--train MISSING: no such file"),
        ("db,api,web\n1,2\n", "2 cells, the header has 3"),
        ("db,api,web\n1,x,3\n", "x"),
        ("", "the file is empty"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_replay_bad_training_files_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, message: str
) -> None:
    files = _chain_files(tmp_path)
    train = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        train.write_bytes(content)
    elif content is not None:
        train.write_text(content)
    argv = ["replay", "--graph", str(files["graph"]), "--train", str(train)]
    assert main(argv) == 2
    assert message.replace("MISSING", str(train)) in _one_line_error(capsys)


def test_replay_writes_the_score_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream_rca.streaming.records import SCORES_SCHEMA

    files = _chain_files(tmp_path)
    scores = tmp_path / "scores.jsonl"
    argv = [
        "replay",
        "--graph", str(files["graph"]),
        "--train", str(files["train"]),
        "--data", str(files["data"]),
        "--scores", str(scores),
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "graph 'graph' (the file's stem): 3 nodes, targets web" in out
    assert f"40 score documents written to {scores}" in out
    docs = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(docs) == 40
    assert {d["schema"] for d in docs} == {SCORES_SCHEMA}
    assert {d["graph"] for d in docs} == {"graph"}
    assert [d["window"]["start"] for d in docs] == [float(i) for i in range(40)]
    assert all(set(d["scores"]) <= {"db", "api", "web"} for d in docs)
    assert set(docs[30]["scores"]) == {"db", "api", "web"}
    assert docs[30]["scores"]["db"] > 9 > max(docs[29]["scores"].values())


def test_replay_names_the_graph_by_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _chain_files(tmp_path, data_rows=32)
    out = tmp_path / "out.jsonl"
    argv = [
        "replay", "--graph", str(files["graph"]), "--name", "shop",
        "--train", str(files["train"]), "--data", str(files["data"]), "--output", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    assert "graph 'shop' (--name)" in capsys.readouterr().out
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert docs
    assert all(d["graph"] == "shop" and d["incident_id"].startswith("shop:") for d in docs)


def test_same_files_in_two_folders_give_the_same_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = []
    for folder in ("low_traffic", "elsewhere/copy"):
        files = _chain_files(tmp_path / folder)
        out, scores = tmp_path / folder / "out.jsonl", tmp_path / folder / "scores.jsonl"
        argv = [
            "replay",
            "--graph", str(files["graph"]),
            "--train", str(files["train"]),
            "--data", str(files["data"]),
            "--explain", "30", "--explain", "31",
            "--output", str(out), "--scores", str(scores),
        ]  # fmt: skip
        assert main(argv) == 0
        text = capsys.readouterr().out.replace(str(out), "OUT").replace(str(scores), "SCORES")
        docs = [json.loads(line) for line in out.read_text().splitlines()]
        for doc in docs:
            doc.pop("attribution_seconds", None)
        runs.append((re.sub(r" in [0-9.]+ ms", "", text), docs, scores.read_text()))
    (text_a, docs_a, scores_a), (text_b, docs_b, scores_b) = runs
    assert docs_a
    assert all("low_traffic" not in d["incident_id"] for d in docs_a)
    assert docs_a == docs_b
    assert scores_a == scores_b
    assert text_a == text_b


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b"[1, 2]", 'a graph document must be an object with an "edges" list'),
        (b'{"name": 3, "edges": [["a", "b"]]}', "name: expected a non-empty name, got 3"),
    ],
)
def test_check_graph_bad_files_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    path = tmp_path / "g.json"
    if content is not None:
        path.write_bytes(content)
    assert main(["check-graph", str(path)]) == 2
    line = _one_line_error(capsys)
    assert str(path) in line
    assert message in line


def test_check_graph_prints_the_name_it_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shop" / "graph.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"edges": [["db", "api"]]}))
    assert main(["check-graph", str(path)]) == 0
    assert "graph 'graph' (the file's stem)" in capsys.readouterr().out
    path.write_text(json.dumps({"name": "checkout", "edges": [["db", "api"]]}))
    assert main(["check-graph", str(path)]) == 0
    assert "graph 'checkout' (the file's name field)" in capsys.readouterr().out
    assert main(["check-graph", str(path), "--name", "other"]) == 0
    assert "graph 'other' (--name)" in capsys.readouterr().out


def test_replay_explains_a_row_against_the_models_that_scored_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 400 training rows: a learning period of the engine ends on data row 15 (snapshot 415),
    # so the engine learns that row as it processes it. Its explanation must not have learned
    # it: the same as explaining it before processing it.
    from stream_rca.cli import _load_graph, _snapshots
    from stream_rca.core.engine import Engine, EngineConfig

    files = _chain_files(tmp_path, rows=400, data_rows=20)
    out = tmp_path / "out.jsonl"
    argv = [
        "replay", "--graph", str(files["graph"]), "--train", str(files["train"]),
        "--data", str(files["data"]), "--explain", "15", "--output", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    (doc,) = [json.loads(line) for line in out.read_text().splitlines()]
    graph = _load_graph(str(files["graph"]))
    read = {"nodes": None, "ignore_extra": False, "graph": graph.name}
    config = EngineConfig()
    assert (400 + 15 + 1) % config.refit_period(400 + 15) == 0  # the period ends on row 15
    engine = Engine(graph, config)
    engine.process_many(list(_snapshots(str(files["train"]), "--train", read)))
    data = list(_snapshots(str(files["data"]), "--data", read))
    engine.process_many(data[:15])
    expected = engine.explain(data[15], engine.targets[0])
    got = {rc["node"]: rc["contribution"] for rc in doc["root_causes"]}
    assert got == {rc.node: rc.contribution for rc in expected.root_causes}


def test_worker_refuses_a_graph_too_large_to_checkpoint_before_asking_a_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The graphs file is checked whole (checkpoints that fit included) before the worker
    contacts Kafka: one line naming the limit and the remedies, exit 2, even with no broker."""
    edges = ", ".join(f"[n{i}, n{i + 1}]" for i in range(999))
    config = tmp_path / "graphs.yaml"
    config.write_text(f"graphs:\n  - name: big\n    edges: [{edges}]\n    targets: [n999]\n")
    code = main(
        ["worker", "--config", str(config), "--bootstrap", "127.0.0.1:1",
         "--insecure-no-checkpoint-key"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    for part in ("graph 'big'", "16 MiB", "refresh_residuals: false"):
        assert part in err[0]
    assert "Kafka" not in err[0]


def test_demo_refuses_a_negative_fault_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--faults", "-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["stream-rca: error: --faults -3: expected a number of faults >= 0"]

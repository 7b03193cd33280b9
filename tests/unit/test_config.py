"""The settings table and the graphs file: every bad value is one line that names its source."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import pytest

from stream_rca import cli_settings
from stream_rca.config import Settings, env_name, load_graphs, setting_info
from stream_rca.errors import ConfigError


def _error(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# -- Settings -------------------------------------------------------------------------------


def test_every_field_is_in_the_table() -> None:
    for f in fields(Settings):
        info = setting_info(f.name)
        assert info.help, f.name
        assert info.flags[0].startswith("--"), f.name
        assert info.commands, f.name


def test_env_values_are_typed() -> None:
    env = {
        "STREAM_RCA_PARTITIONS": "8",
        "STREAM_RCA_CHECKPOINT_INTERVAL": "2.5",
        "STREAM_RCA_PUBLISH_SCORES": "yes",
        "STREAM_RCA_SECURITY_PROTOCOL": "ssl",
        "STREAM_RCA_METRICS_PORT": "",  # empty: not set
    }
    s = Settings.from_env(env)
    assert (s.partitions, s.checkpoint_interval, s.publish_scores) == (8, 2.5, True)
    assert s.security_protocol == "SSL"  # canonical spelling
    assert s.metrics_port is None


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "METRICS_PORT",
            "abc",
            "STREAM_RCA_METRICS_PORT='abc': expected an integer from 0 to 65535",
        ),
        ("METRICS_PORT", "70000", "STREAM_RCA_METRICS_PORT='70000': expected an integer from 0"),
        (
            "SESSION_TIMEOUT",
            "abc",
            "STREAM_RCA_SESSION_TIMEOUT='abc': expected a number of seconds",
        ),
        ("SESSION_TIMEOUT", "-1", "STREAM_RCA_SESSION_TIMEOUT='-1': expected a number of seconds"),
        ("CHECKPOINT_INTERVAL", "nan", "STREAM_RCA_CHECKPOINT_INTERVAL='nan': expected"),
        ("PUBLISH_SCORES", "maybe", "STREAM_RCA_PUBLISH_SCORES='maybe': expected true or false"),
        ("PARTITIONS", "0", "STREAM_RCA_PARTITIONS='0': expected an integer >= 1"),
        ("SECURITY_PROTOCOL", "TLS", "expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ("LOGLEVEL", "loud", "STREAM_RCA_LOGLEVEL='loud': expected one of debug, info"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({f"STREAM_RCA_{name}": raw})
    assert message in _error(exc)


def test_only_the_variables_asked_for_are_read() -> None:
    env = {"STREAM_RCA_METRICS_PORT": "abc", "STREAM_RCA_PARTITIONS": "2"}
    s = Settings.from_env(env, names=["partitions"])
    assert s.partitions == 2
    assert s.metrics_port is None


def test_a_bad_flag_names_the_flag_and_wins_over_the_variable() -> None:
    env = {"STREAM_RCA_WEB_PORT": "7000"}
    assert Settings.from_env(env, flags={"web_port": "7001"}).web_port == 7001
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(env, flags={"web_port": "x"})
    assert _error(exc) == "--web-port 'x': expected an integer from 0 to 65535"


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ConfigError) as exc:
        Settings(partitions=0)
    assert _error(exc) == "setting partitions=0: expected an integer >= 1"
    with pytest.raises(ConfigError):
        Settings(metrics_port="9100")  # type: ignore[arg-type]


def test_secrets_are_masked_in_repr_and_redacted() -> None:
    s = Settings(
        security_protocol="SASL_SSL",
        sasl_username="svc",
        sasl_password="hunter2-secret",
    )
    assert "hunter2-secret" not in repr(s)
    assert "sasl_password='***'" in repr(s)
    assert s.redacted()["sasl_password"] == "***"
    assert s.redacted()["sasl_username"] == "svc"
    assert s.sasl_mechanism == "PLAIN"  # the default mechanism of a SASL protocol
    assert s.kafka_client_options()["sasl_plain_password"] == "hunter2-secret"


def test_sasl_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-the-file\n", encoding="utf-8")
    env = {
        "STREAM_RCA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STREAM_RCA_SASL_USERNAME": "svc",
        "STREAM_RCA_SASL_PASSWORD_FILE": str(secret),
    }
    s = Settings.from_env(env)
    assert s.sasl_password == "from-the-file"
    assert "from-the-file" not in repr(s)
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({**env, "STREAM_RCA_SASL_PASSWORD": "other"})
    assert "given twice, differently" in _error(exc)
    # settings passed on as variables (both the password and its file) read back the same
    assert Settings.from_env({**env, "STREAM_RCA_SASL_PASSWORD": "from-the-file"}) == s
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({**env, "STREAM_RCA_SASL_PASSWORD_FILE": str(tmp_path / "missing")})
    assert "cannot read the SASL password file" in _error(exc)


def test_sasl_needs_a_user_and_a_password() -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({"STREAM_RCA_SECURITY_PROTOCOL": "SASL_SSL"})
    assert env_name("sasl_username") in _error(exc)


def test_logs_never_show_the_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cli_settings, "_installed", [])
    factory = logging.getLogRecordFactory()
    s = Settings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="pw-42")
    try:
        cli_settings.redact_logs(s)
        with caplog.at_level(logging.DEBUG, logger="kafka.test"):
            logging.getLogger("kafka.test").debug("configuration: %s", {"password": "pw-42"})
    finally:
        logging.setLogRecordFactory(factory)
    assert "pw-42" not in caplog.text
    assert "'***'" in caplog.text


# -- the graphs file ------------------------------------------------------------------------


def _graphs(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "graphs.yaml"
    path.write_text(f"graphs:\n- {{name: shop, edges: [[db, api], [api, web]]{entry}}}\n")
    return path


def test_a_valid_graphs_file_loads_with_its_engine_settings(tmp_path: Path) -> None:
    path = _graphs(tmp_path, ", reservoir: 256, threshold: 7, step: 10, targets: [web]")
    (spec,) = load_graphs(path)
    assert spec.name == spec.graph.name == "shop"
    assert spec.engine.reservoir == 256
    assert spec.engine.trigger.threshold == 7.0
    assert (spec.step, spec.targets) == (10.0, ("web",))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (", reservoir: 4", "reservoir: reservoir must be at least"),
        (", n_permutations: 0", "n_permutations: n_permutations must be at least 2, got 0"),
        (", n_samples: 100.5", "n_samples: expected an integer, got 100.5"),
        (", warmup: true", "warmup: expected an integer, got True"),
        (", warmup: '100'", "warmup: expected an integer, got '100'"),
        (", warmup: 5", "warmup: warmup must be at least 10"),
        (", seed: -1", "seed: expected an integer >= 0, got -1"),
        (", forgetting: 1.5", "forgetting: forgetting must be in [0, 1), got 1.5"),
        (", threshold: -3", "threshold: threshold must be positive"),
        (", protect: .nan", "protect: expected a number, got nan"),
        (", threshold: 5, close_threshold: 8", "close_threshold: close_threshold must be"),
        (", step: 0", "step: expected a number > 0 (seconds), got 0"),
        (", reservior: 64", "unknown key: reservior"),
        (", targets: [nope]", "targets: 'nope' is not a node of the graph"),
        (", mechanisms: {web: magic}", "mechanisms: 'magic' for node 'web' is not one of"),
        (", graph: g.json", "give 'graph' (a graph file) or 'edges'/'nodes', not both"),
    ],
)
def test_a_bad_key_names_file_graph_and_key(tmp_path: Path, entry: str, message: str) -> None:
    path = _graphs(tmp_path, entry)
    with pytest.raises(ConfigError) as exc:
        load_graphs(path)
    text = _error(exc)
    assert text.startswith(f"{path}: graph 'shop': ")
    assert message in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("graphs: [{name: a, edges: [[x, y]]}]\nextra: 1\n", "unknown top-level keys: extra"),
        ("graphs: []\n", 'a non-empty "graphs" list'),
        ("graphs: [{edges: [[x, y]]}]\n", "graphs[0]: name: expected a non-empty name"),
        ("graphs: [{name: a, edges: [[x, x]]}]\n", "graph 'a': edges: "),
        ("graphs:\n  - {name: a\n", "not valid YAML/JSON: "),
        (
            "graphs: [{name: a, edges: [[x, y]]}, {name: a, edges: [[x, y]]}]\n",
            "graph names must be unique; repeated: a",
        ),
    ],
)
def test_a_bad_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "graphs.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_graphs(path)
    assert message in _error(exc)


def test_a_graph_file_entry_is_read_relative_to_the_graphs_file(tmp_path: Path) -> None:
    (tmp_path / "shop.txt").write_text("db -> api\n")
    path = tmp_path / "graphs.yaml"
    path.write_text("graphs: [{name: tenant-1, graph: shop.txt}]\n")
    (spec,) = load_graphs(path)
    assert spec.graph.name == "tenant-1"  # the entry's name, not the file's
    path.write_text("graphs: [{name: tenant-1, graph: missing.txt}]\n")
    with pytest.raises(ConfigError) as exc:
        load_graphs(path)
    assert "graph 'tenant-1': graph: cannot read graph file" in _error(exc)


def test_docs_settings_md_is_the_table() -> None:
    from stream_rca.cli_settings import settings_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
    assert doc.read_text(encoding="utf-8") == settings_markdown(), (
        "docs/settings.md is stale: python -m stream_rca.cli_settings > docs/settings.md"
    )

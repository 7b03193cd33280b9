"""Offline checks of docker-compose.yml, deploy/Dockerfile and the compose worker config."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_rca.config import ENV_PREFIX, Settings, load_graphs

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SUBCOMMANDS = {"worker", "simulate", "replay", "demo", "check-graph", "ingest", "simulate-exporter"}
WORKERS = ("worker-1", "worker-2")
METRICS_PORT = 9100


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = compose["services"]
    return result


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def host_ports(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """Container port -> (host address, host port) of the published ports."""
    out = {}
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        assert len(parts) == 3, f"publish on an explicit address: {spec}"
        addr, host, container = parts
        out[int(container)] = (addr, int(host))
    return out


def test_services(services: dict[str, Any]) -> None:
    assert set(services) == {"kafka", "prometheus", "grafana", *WORKERS, "simulator", "ingest"}


def test_published_ports_bind_loopback_only(services: dict[str, Any]) -> None:
    assert host_ports(services["prometheus"]) == {9090: ("127.0.0.1", 9090)}
    assert host_ports(services["grafana"]) == {3000: ("127.0.0.1", 3000)}
    assert host_ports(services["kafka"]) == {29092: ("127.0.0.1", 29092)}
    for name in (*WORKERS, "simulator", "ingest"):
        assert not services[name].get("ports"), f"{name} needs no host port"


def test_kafka_runs_in_kraft_mode(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    e = env(kafka)
    assert kafka["image"].startswith("apache/kafka:3.")
    assert set(e["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://kafka:9092" in e["KAFKA_ADVERTISED_LISTENERS"]
    assert "ZOOKEEPER" not in " ".join(e).upper()
    assert "healthcheck" in kafka


def test_mounted_host_paths_exist(services: dict[str, Any]) -> None:
    mounts = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            assert not source.startswith(("/", "~")), f"{name}: mount {source} from the repo"
            if source.startswith("."):
                path = (REPO / source).resolve()
                assert path.is_relative_to(REPO), f"{name}: {source} is outside the repository"
                assert path.exists(), f"{name}: {source} does not exist"
                mounts += 1
    assert mounts == 6


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared


def test_workers_and_simulator_use_the_cli(services: dict[str, Any]) -> None:
    for name in (*WORKERS, "simulator", "ingest"):
        service = services[name]
        cmd = command(service)
        assert cmd[0] == "stream-rca", name
        assert cmd[1] in SUBCOMMANDS, f"{name}: unknown subcommand {cmd[1]}"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (REPO / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        for key in env(service):
            assert key.startswith(ENV_PREFIX), f"{name}: {key} is not a STREAM_RCA_ variable"
    assert command(services["simulator"])[1] == "simulate-exporter"
    assert command(services["ingest"])[1:] == ["ingest", "--config", "/etc/stream-rca/graphs.yaml"]


def test_environment_names_are_settings(services: dict[str, Any]) -> None:
    known = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
    for name in (*WORKERS, "simulator", "ingest"):
        unknown = set(env(services[name])) - known
        assert not unknown, f"{name}: no such setting: {unknown}"


def test_workers_expose_metrics_on_all_interfaces_in_the_container(
    services: dict[str, Any],
) -> None:
    for name in WORKERS:
        service = services[name]
        cmd = command(service)
        assert cmd[1:] == ["worker", "--config", "/etc/stream-rca/graphs.yaml"]
        e = env(service)
        assert e["STREAM_RCA_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert e["STREAM_RCA_METRICS_PORT"] == str(METRICS_PORT)
        assert e["STREAM_RCA_METRICS_ADDR"] == "0.0.0.0"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert mounts["/etc/stream-rca"] == "./deploy/compose"
        assert service.get("hostname", name) == name


def test_worker_config_loads() -> None:
    specs = load_graphs(REPO / "deploy" / "compose" / "graphs.yaml")
    assert len(specs) == 2
    for spec in specs:
        assert spec.targets
        assert spec.step > 0


def test_prometheus_scrapes_the_workers(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus"] == "./deploy/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "stream-rca"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{w}:{METRICS_PORT}" for w in WORKERS}
    interval = job.get("scrape_interval", config["global"]["scrape_interval"])
    seconds = int(re.fullmatch(r"(\d+)s", interval).group(1))  # type: ignore[union-attr]
    assert 5 <= seconds <= 15
    for rule_file in config["rule_files"]:
        assert (REPO / "deploy" / "prometheus" / rule_file).is_file()


def test_grafana_loads_the_provisioned_dashboards(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    provider = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "dashboards" / "stream-rca.yml").read_text()
    )["providers"][0]
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    e = env(grafana)
    assert e["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert e["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")
    home = e["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "grafana" / "dashboards" / Path(home).name).is_file()


def test_dockerfile() -> None:
    text = (REPO / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE)
    assert "pip install ." in text
    assert re.search(r"^USER (?!root)", text, re.MULTILINE), "run as a non-root user"
    for copied in re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE):
        for source in copied.split():
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text()
    assert "!stream_rca/" in ignore


def test_prometheus_remote_writes_the_simulator_to_ingest(services: dict[str, Any]) -> None:
    """The real path: simulator -> Prometheus scrape -> remote-write -> ingest -> Kafka."""
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (sim,) = [j for j in config["scrape_configs"] if j["job_name"] == "simulator"]
    simulator = command(services["simulator"])
    port = simulator[simulator.index("--port") + 1]
    assert [t for sc in sim["static_configs"] for t in sc["targets"]] == [f"simulator:{port}"]
    specs = load_graphs(REPO / "deploy" / "compose" / "graphs.yaml")
    for spec in specs:  # the scrape interval is every graph's step; every node is fed
        assert spec.step == float(sim["scrape_interval"].rstrip("s"))
        assert {r.node for r in spec.ingest} == set(spec.graph.nodes)
    graphs = int(simulator[simulator.index("--graphs") + 1])
    assert sorted(s.name for s in specs) == [f"shop-{k}" for k in range(graphs)]
    (remote,) = config["remote_write"]
    e = env(services["ingest"])
    assert remote["url"] == f"http://ingest:{e['STREAM_RCA_INGEST_PORT']}/api/v1/write"
    assert e["STREAM_RCA_INGEST_ADDR"] == "0.0.0.0"
    assert e["STREAM_RCA_KAFKA_BOOTSTRAP"] == "kafka:9092"
    keep = remote["write_relabel_configs"][0]
    assert keep["action"] == "keep"
    assert {r.metric for s in specs for r in s.ingest} == {keep["regex"].split(";")[0]}
    assert "simulate" not in [
        command(s)[1]
        for s in services.values()
        if "command" in s and isinstance(s["command"], list) and s["command"][0] == "stream-rca"
    ]

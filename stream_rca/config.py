"""One settings object, built at the entry point from flags, ``STREAM_RCA_*`` variables and a
graphs file, and passed down. Core classes never read it: they take plain parameters.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from stream_rca.core.engine import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.mechanisms import MECHANISMS
from stream_rca.core.trigger import TriggerConfig
from stream_rca.errors import ConfigError, StreamRCAError

__all__ = ["ENV_PREFIX", "GraphSpec", "Settings", "load_graphs"]

ENV_PREFIX = "STREAM_RCA_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Settings of the command line and the streaming worker.

    Every field can be set by an environment variable named ``STREAM_RCA_<FIELD>`` (upper
    case) and by the matching command-line flag, which wins.
    """

    kafka_bootstrap: str = "127.0.0.1:9092"
    input_topic: str = "metrics"
    attributions_topic: str = "rca.attributions"
    scores_topic: str = "rca.scores"
    deadletter_topic: str = "rca.deadletter"
    publish_scores: bool = False
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    app_id: str = "stream-rca"
    config: str | None = None
    """Path of the graphs file (YAML or JSON) the worker loads."""
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    web_port: int = 0
    """faust web server port, on 127.0.0.1 and without table views (0: off, the default)."""
    checkpoint_interval: float = 30.0
    """Seconds between checkpoints of the engine state."""
    partitions: int = 4
    data_dir: str = ".stream-rca"
    checkpoint_key: str | None = field(default=None, repr=False)
    """Secret key (16+ characters) that signs and verifies the checkpoints (HMAC-SHA256)."""
    insecure_no_checkpoint_key: bool = False
    """Run without a checkpoint key: checkpoints are then not authenticated."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``STREAM_RCA_*`` variables, then ``overrides`` (skipping ``None``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    def kafka_client_options(self) -> dict[str, Any]:
        """Security options in the form kafka-python's clients take them."""
        opts: dict[str, Any] = {"security_protocol": self.security_protocol}
        for name in ("sasl_mechanism", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value:
                opts[name] = value
        if self.sasl_username:
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = self.sasl_password or ""
        return opts

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, for logs."""
        doc = dataclasses.asdict(self)
        for secret in ("sasl_password", "checkpoint_key"):
            if doc.get(secret):
                doc[secret] = "***"
        return doc


def _convert(name: str, raw: str, annotation: Any) -> Any:
    text = str(annotation)
    try:
        if "bool" in text:
            low = raw.strip().lower()
            if low not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(raw)
            return low in {"1", "true", "yes", "on"}
        if "int" in text:
            return int(raw)
        if "float" in text:
            return float(raw)
    except ValueError:
        raise ConfigError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {text.replace(' | None', '')}"
        ) from None
    return raw


@dataclass(frozen=True, slots=True)
class GraphSpec:
    """One graph (tenant) the worker serves, as declared in the graphs file."""

    name: str
    graph: CausalGraph
    targets: tuple[str, ...]
    step: float = 1.0
    allowed_lateness: float = 0.0
    engine: EngineConfig = field(default_factory=EngineConfig)
    mechanisms: Mapping[str, str] = field(default_factory=dict)


_ENGINE_KEYS = {f.name for f in fields(EngineConfig)} - {"trigger"}
_TRIGGER_KEYS = {f.name for f in fields(TriggerConfig)}
_SPEC_KEYS = {"name", "graph", "edges", "targets", "step", "allowed_lateness", "mechanisms"}


def load_graphs(path: str | Path) -> list[GraphSpec]:
    """Read a graphs file.

    The file (YAML or JSON) holds ``graphs:``, a list of entries with ``name``, ``graph`` (a
    graph file, relative to the graphs file) or inline ``edges``, and optionally ``targets``,
    ``step``, ``allowed_lateness``, ``mechanisms`` (node -> mechanism name), engine settings
    (``warmup``, ``reservoir``, ``forgetting``, ``protect``, ``n_samples``, ...) and trigger
    settings (``threshold``, ``close_threshold``, ``close_after``, ``confirm``, ``cooldown``,
    ``worsen_delta``).

    Raises
    ------
    ConfigError
        Naming the entry and the key that is wrong.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read graphs file {p}: {exc.strerror or exc}") from exc
    import yaml  # JSON is YAML too

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("graphs"), list) or not doc["graphs"]:
        raise ConfigError(f'{p}: expected a mapping with a non-empty "graphs" list')
    specs: list[GraphSpec] = []
    for i, entry in enumerate(doc["graphs"]):
        where = f"{p}: graphs[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: each graph must be a mapping")
        specs.append(_spec(entry, p.parent, where))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{p}: graph names must be unique; repeated: {', '.join(dupes)}")
    return specs


def _spec(entry: dict[str, Any], base: Path, where: str) -> GraphSpec:
    unknown = set(entry) - _SPEC_KEYS - _ENGINE_KEYS - _TRIGGER_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys: {', '.join(sorted(unknown))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: a graph needs a non-empty 'name'")
    try:
        if "graph" in entry:
            graph_path = Path(entry["graph"])
            if not graph_path.is_absolute():
                graph_path = base / graph_path
            graph = CausalGraph.from_file(graph_path, name=name)
        elif "edges" in entry:
            graph = CausalGraph.from_dict({"edges": entry["edges"]}, name=name)
        else:
            raise ConfigError(f"{where}: give 'graph' (a file) or 'edges'")
        targets = tuple(graph.check(t) for t in entry.get("targets") or graph.sinks)
        mechanisms = dict(entry.get("mechanisms") or {})
        for node, mech in mechanisms.items():
            graph.check(node)
            if mech not in MECHANISMS:
                raise ConfigError(f"{where}: unknown mechanism {mech!r} for node {node!r}")
        trigger = TriggerConfig(**{k: entry[k] for k in _TRIGGER_KEYS if k in entry})
        engine = EngineConfig(**{k: entry[k] for k in _ENGINE_KEYS if k in entry}, trigger=trigger)
        step = float(entry.get("step", 1.0))
        lateness = float(entry.get("allowed_lateness", 0.0))
        if step <= 0 or lateness < 0:
            raise ConfigError(f"{where}: step must be > 0 and allowed_lateness >= 0")
    except ConfigError:
        raise
    except (StreamRCAError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return GraphSpec(name, graph, targets, step, lateness, engine, mechanisms)

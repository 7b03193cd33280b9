"""The graphs file: the graphs (tenants) a worker serves, every key checked when it is read.

``load_graphs(path)`` reads a YAML or JSON file ``graphs: [...]``. Each entry is checked whole
before the worker starts: unknown keys, every value's type and range, the graph itself, its
targets and mechanisms, and that its engine can be built. An error is one line that names the
file, the graph and the key, and what the key accepts.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_rca.core.config import EngineConfig
from stream_rca.core.graph import CausalGraph
from stream_rca.core.trigger import TriggerConfig
from stream_rca.errors import ConfigError, StreamRCAError

if TYPE_CHECKING:
    from stream_rca.ingest.mapping import SeriesRule

__all__ = ["KEY_RULES", "GraphSpec", "KeyRule", "check_value", "load_graphs"]


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
    ingest: tuple[SeriesRule, ...] = ()
    """Which incoming series feed which node (``stream-rca ingest``; the ``ingest`` key)."""
    accept_unknown: bool = False
    """Series not in the graph are scored marginally and named as ``not_in_graph``
    candidates (:mod:`stream_rca.core.partial`), instead of dead letters."""
    max_extra_series: int = 100
    """The most such series a graph follows; beyond, dead letters ``extra_series_limit``."""
    grow_from_spans: bool = False
    """New call edges seen on the spans topic grow the graph (:mod:`stream_rca.core.grow`)."""
    graph_free: bool = False
    """No causal graph: nodes ranked by marginal score and onset
    (:class:`~stream_rca.core.graphfree_engine.GraphFreeEngine`); ``graph`` has no edges."""


@dataclass(frozen=True, slots=True)
class KeyRule:
    """What one key of a graph entry accepts.

    Attributes
    ----------
    kind
        ``int`` (a YAML integer, not ``100.5`` nor ``true``), ``float`` (any finite number),
        ``str`` or ``bool``.
    check
        A range, and ``expected`` the same in words; ``None`` where :class:`EngineConfig` or
        :class:`TriggerConfig` checks the range itself (one place for each rule).
    optional
        ``null`` is accepted (the key's default applies).
    """

    kind: type
    check: Callable[[Any], bool] | None = None
    expected: str = ""
    optional: bool = False

    def text(self) -> str:
        base = {int: "an integer", float: "a number", str: "text", bool: "true or false"}
        words = f"{base.get(self.kind, self.kind.__name__)} {self.expected}".strip()
        return words + (" or null" if self.optional else "")


KEY_RULES: dict[str, KeyRule] = {
    "seed": KeyRule(int, lambda x: x >= 0, ">= 0"),
    "step": KeyRule(float, lambda x: x > 0, "> 0 (seconds)"),
    "allowed_lateness": KeyRule(float, lambda x: x >= 0, ">= 0 (seconds)"),
    "accept_unknown": KeyRule(bool),
    "max_extra_series": KeyRule(int, lambda x: 0 <= x <= 100_000, "in [0, 100000]"),
    "grow_from_spans": KeyRule(bool),
}
"""Keys whose range is checked here. Every other key of :class:`EngineConfig` and
:class:`TriggerConfig` is checked against its annotated type here and for its range by the
config class itself, whose message is then given for the key."""

_ENGINE_KEYS = {f.name for f in fields(EngineConfig)} - {"trigger"}
_TRIGGER_KEYS = {f.name for f in fields(TriggerConfig)}
MODES = ("graph", "graph-free")
"""Values of a graph entry's ``mode`` key."""
GRAPH_FREE_UNUSED = frozenset(
    {
        "forgetting",
        "ridge",
        "protect_noise",
        "n_samples",
        "exact_max_players",
        "n_permutations",
        "generic_samples",
        "impute_learn",
        "min_coverage",
        "rank_by",
        "mechanisms",
        "grow_from_spans",
    }
)
"""Keys a graph-free entry refuses: they set mechanisms, Shapley sampling or graph growth."""
_SPEC_KEYS = {
    "name",
    "mode",
    "graph",
    "edges",
    "nodes",
    "targets",
    "step",
    "allowed_lateness",
    "mechanisms",
    "ingest",
    "accept_unknown",
    "max_extra_series",
    "grow_from_spans",
}


def load_graphs(path: str | Path) -> list[GraphSpec]:
    """Read and check a graphs file.

    The file (YAML or JSON) holds ``graphs:``, a list of entries with ``name``, ``graph`` (a
    graph file, relative to the graphs file) or inline ``edges`` (and ``nodes``: nodes alone,
    without edges, make a graph-free entry, as does ``mode: graph-free``, ranked by marginal
    score and onset; it needs ``targets`` and refuses the keys of :data:`GRAPH_FREE_UNUSED`),
    and optionally ``targets``,
    ``step``, ``allowed_lateness``, ``mechanisms`` (node -> mechanism name), engine settings
    (``warmup``, ``reservoir``, ``forgetting``, ``protect``, ``n_samples``, ...) and trigger
    settings (``threshold``, ``close_threshold``, ``close_after``, ``confirm``, ``cooldown``,
    ``worsen_delta``), ``accept_unknown`` (series not in the graph become ``not_in_graph``
    candidates, at most ``max_extra_series`` of them, default 100), ``grow_from_spans`` (new
    call edges on the spans topic grow the graph) and ``ingest`` (node -> the series that feed it, read by ``stream-rca
    ingest``: :func:`stream_rca.ingest.mapping.parse_ingest`); :data:`KEY_RULES` lists what each accepts. Each graph's engine is built
    once here, so a file that loads is a file the worker can run.

    Raises
    ------
    ConfigError
        One line naming the file, the graph and the key that is wrong.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "graphs.yaml"
    >>> _ = p.write_text("graphs:\\n- {name: shop, edges: [[db, api]], n_samples: 100.5}\\n")
    >>> load_graphs(p)
    Traceback (most recent call last):
    ...
    stream_rca.errors.ConfigError: .../graphs.yaml: graph 'shop': n_samples: expected an integer, got 100.5
    """  # noqa: E501
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read graphs file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    import yaml  # JSON is YAML too

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML/JSON: {_yaml_problem(exc)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("graphs"), list) or not doc["graphs"]:
        raise ConfigError(f'{p}: expected a mapping with a non-empty "graphs" list')
    extra = sorted(str(k) for k in doc if k != "graphs")
    if extra:
        raise ConfigError(f"{p}: unknown top-level keys: {', '.join(extra)} (only 'graphs')")
    specs: list[GraphSpec] = []
    for i, entry in enumerate(doc["graphs"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"{p}: graphs[{i}]: each graph must be a mapping")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise ConfigError(f"{p}: graphs[{i}]: name: expected a non-empty name, got {name!r}")
        specs.append(_spec(entry, name, p.parent, f"{p}: graph {name!r}"))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{p}: graph names must be unique; repeated: {', '.join(dupes)}")
    return specs


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _spec(entry: dict[str, Any], name: str, base: Path, where: str) -> GraphSpec:
    unknown = sorted(str(k) for k in set(entry) - _SPEC_KEYS - _ENGINE_KEYS - _TRIGGER_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}"
        )
    typed = _ENGINE_KEYS | _TRIGGER_KEYS | set(KEY_RULES)
    values = {k: check_value(k, v, f"{where}: {k}") for k, v in entry.items() if k in typed}
    graph, graph_free = _graph(entry, name, base, where)
    if graph_free:
        unused = sorted(k for k in entry if k in GRAPH_FREE_UNUSED)
        if unused:
            raise ConfigError(
                f"{where}: {unused[0]}: does not apply to a graph-free graph (no causal graph: "
                "no mechanisms, no Shapley sampling, no growth from spans); remove it, or give "
                "the graph's edges"
            )
        if entry.get("targets") is None:
            raise ConfigError(
                f"{where}: targets: a graph-free graph needs its targets (the watched "
                "metrics): without edges there are no sinks to default to"
            )
    targets = _targets(entry.get("targets"), graph, where)
    mechanisms = _mechanisms(entry.get("mechanisms"), graph, where)
    trigger = _build(TriggerConfig, {k: v for k, v in values.items() if k in _TRIGGER_KEYS}, where)
    engine_values = {k: v for k, v in values.items() if k in _ENGINE_KEYS}
    engine = _build(EngineConfig, {**engine_values, "trigger": trigger}, where)
    _prove_engine(graph, engine, targets, mechanisms, where, graph_free=graph_free)
    step = float(values.get("step", 1.0))
    lateness = float(values.get("allowed_lateness", 0.0))
    ingest = _ingest(entry.get("ingest"), name, graph, where)
    return GraphSpec(
        name, graph, targets, step, lateness, engine, mechanisms, ingest,
        accept_unknown=bool(values.get("accept_unknown", False)),
        max_extra_series=int(values.get("max_extra_series", 100)),
        grow_from_spans=bool(values.get("grow_from_spans", False)),
        graph_free=graph_free,
    )  # fmt: skip


def _ingest(value: Any, name: str, graph: CausalGraph, where: str) -> tuple[SeriesRule, ...]:
    if value is None:
        return ()
    from stream_rca.ingest.mapping import parse_ingest

    return parse_ingest(value, name, graph.nodes, f"{where}: ingest")


def check_value(key: str, value: Any, where: str) -> Any:
    """``value`` of a numeric key checked against its rule; ``where`` names it in the error.

    The command line checks its engine flags (``replay --warmup``) by the same rules.

    Examples
    --------
    >>> check_value("n_samples", 100.5, "n_samples")
    Traceback (most recent call last):
    ...
    stream_rca.errors.ConfigError: n_samples: expected an integer, got 100.5
    """
    rule = KEY_RULES.get(key) or _rule_from_type(key)
    if rule is None:
        return value
    if value is None and rule.optional:
        return None
    bad = ConfigError(f"{where}: expected {rule.text()}, got {value!r}")
    if rule.kind in (str, bool):
        if not isinstance(value, rule.kind):
            raise bad
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad
    if rule.kind is int and not isinstance(value, int):
        raise bad
    if not math.isfinite(value) or (rule.check is not None and not rule.check(value)):
        raise bad
    return float(value) if rule.kind is float else value


def _rule_from_type(key: str) -> KeyRule | None:
    """The type rule of a config key, from its annotation (``None`` for other kinds)."""
    for cls in (EngineConfig, TriggerConfig):
        if key in {f.name for f in fields(cls)}:
            hint = typing.get_type_hints(cls)[key]
            args = typing.get_args(hint)
            kinds = [a for a in args if a is not type(None)] if args else [hint]
            if len(kinds) == 1 and kinds[0] in (int, float, str, bool):
                return KeyRule(kinds[0], optional=type(None) in args)
    return None


def _graph(entry: dict[str, Any], name: str, base: Path, where: str) -> tuple[CausalGraph, bool]:
    """The entry's graph, and whether it runs graph-free (no edges, or ``mode: graph-free``)."""
    mode = entry.get("mode")
    if mode is not None and mode not in MODES:
        raise ConfigError(f"{where}: mode: expected 'graph' or 'graph-free', got {mode!r}")
    if "graph" in entry and ("edges" in entry or "nodes" in entry):
        raise ConfigError(f"{where}: give 'graph' (a graph file) or 'edges'/'nodes', not both")
    if not any(k in entry for k in ("graph", "edges", "nodes")):
        raise ConfigError(
            f"{where}: give 'graph' (a graph file), 'edges', or 'nodes' alone (graph-free)"
        )
    key = "graph" if "graph" in entry else "edges" if "edges" in entry else "nodes"
    try:
        if "graph" in entry:
            ref = entry["graph"]
            if not isinstance(ref, str) or not ref:
                raise ConfigError(f"{where}: graph: expected a file name, got {ref!r}")
            graph_path = Path(ref)
            if not graph_path.is_absolute():
                graph_path = base / graph_path
            graph = CausalGraph.from_file(graph_path, name=name)
        else:
            nodes = entry.get("nodes", [])
            if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
                raise ConfigError(f"{where}: nodes: expected a list of node names, got {nodes!r}")
            if len(set(nodes)) != len(nodes):
                raise ConfigError(f"{where}: nodes: a node is listed twice")
            edges = entry.get("edges", [])
            graph = CausalGraph.from_dict({"edges": edges, "nodes": nodes}, name=name)
    except ConfigError:
        raise
    except (StreamRCAError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {key}: {_one_line(exc)}") from None
    if not len(graph):
        raise ConfigError(f"{where}: {key}: the graph has no nodes")
    if mode == "graph-free":
        if "edges" in entry and graph.edges:
            raise ConfigError(
                f"{where}: edges: a graph-free graph (mode: graph-free) has none; remove "
                "'edges' (list the metrics under 'nodes') or the mode"
            )
        return CausalGraph([], graph.nodes, name=name), True  # a file's edges are not used
    if not graph.edges:
        if mode == "graph":
            raise ConfigError(
                f"{where}: {key}: mode 'graph' needs edges; the graph has none (drop the mode "
                "to rank its nodes graph-free)"
            )
        return graph, True
    return graph, False


def _targets(value: Any, graph: CausalGraph, where: str) -> tuple[str, ...]:
    if value is None:
        return graph.sinks
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: targets: expected a list of node names, got {value!r}")
    for t in value:
        if not isinstance(t, str) or t not in graph:
            raise ConfigError(f"{where}: targets: {t!r} is not a node of the graph")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: targets: a node is listed twice")
    return tuple(value)


def _mechanisms(value: Any, graph: CausalGraph, where: str) -> dict[str, str]:
    from stream_rca.core.mechanisms import MECHANISMS

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: mechanisms: expected a mapping node -> mechanism name")
    for node, mech in value.items():
        if not isinstance(node, str) or node not in graph:
            raise ConfigError(f"{where}: mechanisms: {node!r} is not a node of the graph")
        if mech not in MECHANISMS:
            known = ", ".join(sorted(MECHANISMS))
            raise ConfigError(
                f"{where}: mechanisms: {mech!r} for node {node!r} is not one of {known}"
            )
    return dict(value)


_C = typing.TypeVar("_C", EngineConfig, TriggerConfig)


def _build(cls: type[_C], values: dict[str, Any], where: str) -> _C:
    """``cls(**values)``; when it refuses them, the error names the key (or keys) at fault."""
    try:
        return cls(**values)
    except (TypeError, ValueError) as whole:
        for key in values:
            if key == "trigger":
                continue
            try:
                cls(**{key: values[key]})
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {key}: {_one_line(exc)}") from None
        keys = ", ".join(k for k in values if k != "trigger")
        raise ConfigError(f"{where}: {keys}: {_one_line(whole)}") from None


def _prove_engine(
    graph: CausalGraph,
    config: EngineConfig,
    targets: tuple[str, ...],
    mechanisms: Mapping[str, str],
    where: str,
    *,
    graph_free: bool = False,
) -> None:
    from stream_rca.core.engine import Engine
    from stream_rca.core.graphfree_engine import GraphFreeEngine

    try:
        if graph_free:
            GraphFreeEngine(graph, config, targets=targets)
        else:
            Engine(graph, config, targets=targets, mechanisms=dict(mechanisms))
    except (StreamRCAError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: the engine cannot be built: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

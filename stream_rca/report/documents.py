"""What an incident page shows, read from the JSON documents stream-rca writes.

Three kinds of document, one JSON object a line:

- attributions (``stream-rca.attribution/v1``: ``demo --output``, ``replay --output``, the
  worker's ``rca.attributions`` topic), one per incident and revision; the latest revision wins;
- scores (``stream-rca.scores/v1``: ``replay --scores``, the worker's ``rca.scores`` topic), one
  per snapshot, for the timeline around an incident;
- distribution changes (``stream-rca.change/v1``), the answer to "which mechanism moved?".

A document that is not of its kind is one line naming the file, the line and what was wrong
(:class:`ReportError`); a field the page does not need may be absent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from stream_rca.errors import StreamRCAError

__all__ = [
    "ATTRIBUTION_SCHEMA",
    "CHANGE_SCHEMA",
    "SCORES_SCHEMA",
    "Cause",
    "Change",
    "Incident",
    "ReportError",
    "ScorePoint",
    "latest_revisions",
    "read_changes",
    "read_incidents",
    "read_scores",
]

ATTRIBUTION_SCHEMA = "stream-rca.attribution/v1"
SCORES_SCHEMA = "stream-rca.scores/v1"
CHANGE_SCHEMA = "stream-rca.change/v1"

_T = TypeVar("_T")


class ReportError(StreamRCAError, ValueError):
    """An input of the incident pages is unreadable or not the document it should be."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Cause:
    """One ranked root cause of an attribution."""

    node: str
    contribution: float
    share: float
    score: float | None = None
    stderr: float | None = None
    tied: bool = False


@dataclass(frozen=True, slots=True)
class Incident:
    """The latest attribution of one incident, as the page shows it."""

    incident_id: str
    graph: str
    target: str
    window_start: float
    window_end: float | None
    detected_at: float
    target_score: float
    causes: tuple[Cause, ...]
    method: str
    players: tuple[str, ...]
    n_samples: int
    revision: int = 0
    linear: bool = False
    n_permutations: int = 0
    seed: int | None = None
    missing: tuple[str, ...] = ()
    cold: tuple[str, ...] = ()
    marginalised: tuple[str, ...] = ()
    rank_rule: str | None = None
    trigger_score: float | None = None
    seconds: float | None = None
    truth: tuple[str, ...] | None = None
    """The injected root causes, when a simulation knows them (the demo's documents)."""

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Incident:
        """Read an attribution document; :class:`ReportError` says which field is wrong."""
        if doc.get("schema") != ATTRIBUTION_SCHEMA:
            raise ReportError(f"not an attribution document (schema {doc.get('schema')!r})")
        causes = []
        for i, rc in enumerate(_list(doc, "root_causes")):
            if not isinstance(rc, Mapping):
                raise ReportError(f"root_causes[{i}]: expected an object")
            causes.append(
                Cause(
                    node=_text(rc, "node"),
                    contribution=_number(rc, "contribution"),
                    share=_number(rc, "share", 0.0),
                    score=_optional_number(rc, "score"),
                    stderr=_optional_number(rc, "stderr"),
                    tied=bool(rc.get("tied", False)),
                )
            )
        window = doc.get("window")
        if not isinstance(window, Mapping):
            raise ReportError("window: expected an object {start, end}")
        truth = doc.get("truth")
        return cls(
            incident_id=_text(doc, "incident_id"),
            graph=_text(doc, "graph"),
            target=_text(doc, "target"),
            window_start=_number(window, "start"),
            window_end=_optional_number(window, "end"),
            detected_at=_number(doc, "detected_at"),
            target_score=_number(doc, "target_score"),
            causes=tuple(causes),
            method=_text(doc, "method"),
            players=_names(doc, "players"),
            n_samples=int(_number(doc, "n_samples")),
            revision=int(_number(doc, "revision", 0)),
            linear=bool(doc.get("linear", False)),
            n_permutations=int(_number(doc, "n_permutations", 0)),
            seed=None if doc.get("seed") is None else int(_number(doc, "seed")),
            missing=_names(doc, "missing"),
            cold=_names(doc, "cold"),
            marginalised=_names(doc, "marginalised"),
            rank_rule=None if doc.get("rank_rule") is None else _text(doc, "rank_rule"),
            trigger_score=_optional_number(doc, "trigger_score"),
            seconds=_optional_number(doc, "attribution_seconds"),
            truth=_names(truth, "root_causes") if isinstance(truth, Mapping) else None,
        )


@dataclass(frozen=True, slots=True)
class ScorePoint:
    """The scores of one snapshot of a graph (a ``stream-rca.scores/v1`` document)."""

    graph: str
    ts: float
    scores: Mapping[str, float]
    """Conditional score of each node that had one."""
    target_scores: Mapping[str, float]
    """Marginal score of each watched target."""
    open_incidents: Mapping[str, str] = field(default_factory=dict)
    """Target to the id of its open incident."""

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> ScorePoint:
        """Read a scores document; :class:`ReportError` says which field is wrong."""
        if doc.get("schema") != SCORES_SCHEMA:
            raise ReportError(f"not a scores document (schema {doc.get('schema')!r})")
        window = doc.get("window")
        if not isinstance(window, Mapping):
            raise ReportError("window: expected an object {start, end}")
        opened = doc.get("open_incidents", {})
        if not isinstance(opened, Mapping) or not all(isinstance(v, str) for v in opened.values()):
            raise ReportError("open_incidents: expected an object of target to incident id")
        return cls(
            graph=_text(doc, "graph"),
            ts=_number(window, "start"),
            scores=_scores(doc, "scores"),
            target_scores=_scores(doc, "target_scores"),
            open_incidents={str(k): v for k, v in opened.items()},
        )


@dataclass(frozen=True, slots=True)
class Change:
    """A distribution-change attribution (``stream-rca.change/v1``): which mechanism moved."""

    graph: str
    target: str
    contributions: tuple[Cause, ...]
    """Node, contribution and share, ranked by absolute contribution."""
    statistic: str | None = None
    method: str | None = None
    samples: int | None = None
    periods: Mapping[str, Any] = field(default_factory=dict)
    incident_id: str | None = None

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Change:
        """Read a change document; :class:`ReportError` says which field is wrong."""
        if doc.get("schema") != CHANGE_SCHEMA:
            raise ReportError(f"not a change document (schema {doc.get('schema')!r})")
        rows = []
        for i, c in enumerate(_list(doc, "contributions")):
            if not isinstance(c, Mapping):
                raise ReportError(f"contributions[{i}]: expected an object")
            rows.append(
                Cause(_text(c, "node"), _number(c, "contribution"), _number(c, "share", 0.0))
            )
        periods = {k: doc[k] for k in ("before", "after", "periods") if k in doc}
        samples = doc.get("samples", doc.get("n_samples"))
        return cls(
            graph=str(doc.get("graph", "")),
            target=_text(doc, "target"),
            contributions=tuple(rows),
            statistic=None if doc.get("statistic") is None else str(doc["statistic"]),
            method=None if doc.get("method") is None else str(doc["method"]),
            samples=samples if isinstance(samples, int) else None,
            periods=periods,
            incident_id=None if doc.get("incident_id") is None else str(doc["incident_id"]),
        )


def read_incidents(path: str | Path) -> list[Incident]:
    """Every attribution document of a JSONL file, in file order."""
    return [_read(path, n, doc, Incident.from_document) for n, doc in _lines(path)]


def read_scores(path: str | Path) -> list[ScorePoint]:
    """Every scores document of a JSONL file, in file order."""
    return [_read(path, n, doc, ScorePoint.from_document) for n, doc in _lines(path)]


def read_changes(path: str | Path) -> list[Change]:
    """Every distribution-change document of a JSONL file, in file order."""
    return [_read(path, n, doc, Change.from_document) for n, doc in _lines(path)]


def latest_revisions(incidents: list[Incident]) -> list[Incident]:
    """One attribution per incident, its latest revision, in order of first appearance."""
    latest: dict[str, Incident] = {}
    for inc in incidents:
        held = latest.get(inc.incident_id)
        if held is None or inc.revision >= held.revision:
            latest[inc.incident_id] = inc
    return list(latest.values())


def _read(path: str | Path, lineno: int, doc: Any, parse: Callable[[Mapping[str, Any]], _T]) -> _T:
    try:
        if not isinstance(doc, Mapping):
            raise ReportError("expected a JSON object")
        out = parse(doc)
    except ReportError as exc:
        raise ReportError(f"{path}:{lineno}: {exc}") from None
    return out


def _lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path}:{lineno}: not JSON ({exc.msg})") from None


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise ReportError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _number(doc: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ReportError(f"{key}: expected a finite number, got {value!r}")
    return float(value)


def _optional_number(doc: Mapping[str, Any], key: str) -> float | None:
    return None if doc.get(key) is None else _number(doc, key)


def _list(doc: Mapping[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise ReportError(f"{key}: expected a list, got {value!r}")
    return value


def _names(doc: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReportError(f"{key}: expected a list of node names")
    return tuple(value)


def _scores(doc: Mapping[str, Any], key: str) -> dict[str, float]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise ReportError(f"{key}: expected an object of node to score")
    out: dict[str, float] = {}
    for node, s in value.items():
        if isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s):
            out[str(node)] = float(s)
        elif s is not None:
            raise ReportError(f"{key}[{node!r}]: expected a number, got {s!r}")
    return out

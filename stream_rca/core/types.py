"""Plain value types that flow through the engine: snapshots in, step results and attributions out.

They hold data only (no behaviour beyond conversion to JSON-ready dicts), so every adapter
(file replay, faust agents, Prometheus exporter) can depend on them without pulling in the math.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ATTRIBUTION_SCHEMA",
    "Attribution",
    "IncidentEvent",
    "RootCause",
    "Snapshot",
    "StepResult",
]

ATTRIBUTION_SCHEMA = "stream-rca.attribution/v1"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The values of the nodes of one graph in one time window.

    Parameters
    ----------
    ts
        Start of the window, unix seconds.
    values
        Node name to value. A node that is absent, or whose value is NaN, had no data in this
        window (a missing value); ``inf`` is invalid and reported as such.
    graph
        Name of the graph (tenant) the snapshot belongs to.
    end
        End of the window, unix seconds; ``None`` when the source has no windows (a CSV row).
    """

    ts: float
    values: Mapping[str, float]
    graph: str = "default"
    end: float | None = None


@dataclass(frozen=True, slots=True)
class RootCause:
    """One player of an attribution: a node and how much of the target's anomaly it explains."""

    node: str
    contribution: float
    """Shapley value, in nats of the target's IT score."""
    share: float
    """``contribution / sum of positive contributions``; 0 for a non-positive contribution."""
    score: float | None
    """The node's conditional outlier score in the snapshot (``None`` if it had none)."""
    stderr: float = 0.0
    """Standard error of ``contribution`` (permutation sampling and Monte Carlo draws)."""
    tied: bool = False
    """Its order against the next cause is not resolved (within three standard errors)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "contribution": _finite(self.contribution),
            "share": _finite(self.share),
            "score": _finite(self.score),
            "stderr": _finite(self.stderr),
            "tied": self.tied,
        }


@dataclass(frozen=True, slots=True)
class Attribution:
    """A Shapley attribution of a target's anomaly to its upstream root causes.

    ``sum(rc.contribution for rc in root_causes) == target_score`` up to float rounding
    (Shapley efficiency). ``root_causes`` is sorted by contribution, largest first.
    """

    incident_id: str
    graph: str
    target: str
    window_start: float
    window_end: float | None
    detected_at: float
    target_score: float
    root_causes: tuple[RootCause, ...]
    method: str
    """``"exact"`` (all coalitions) or ``"permutation"`` (sampled, antithetic)."""
    linear: bool
    """True when the fast matrix path for linear mechanisms was used."""
    players: tuple[str, ...]
    n_samples: int
    n_permutations: int
    seed: int
    revision: int = 0
    """0 for the first attribution of an incident, then 1, 2, ... each time it worsens."""
    missing: tuple[str, ...] = ()
    """Players whose value was missing in the snapshot; their noise was set to its median."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Anything a mode adds (the demo adds the injected truth)."""
    seconds: float | None = None
    """Wall time the attribution took, when the engine was given a timer."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the output contract (schema ``stream-rca.attribution/v1``)."""
        doc: dict[str, Any] = {
            "schema": ATTRIBUTION_SCHEMA,
            "incident_id": self.incident_id,
            "revision": self.revision,
            "graph": self.graph,
            "target": self.target,
            "window": {"start": self.window_start, "end": self.window_end},
            "detected_at": self.detected_at,
            "target_score": _finite(self.target_score),
            "root_causes": [rc.to_dict() for rc in self.root_causes],
            "method": self.method,
            "linear": self.linear,
            "players": list(self.players),
            "n_samples": self.n_samples,
            "n_permutations": self.n_permutations,
            "seed": self.seed,
            "missing": list(self.missing),
        }
        if self.seconds is not None:
            doc["attribution_seconds"] = self.seconds
        doc.update(self.extra)
        return doc


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """A change of an incident's state: ``"opened"``, ``"worsened"`` or ``"closed"``."""

    kind: str
    incident_id: str
    graph: str
    target: str
    ts: float
    score: float


@dataclass(frozen=True, slots=True)
class StepResult:
    """What the engine made of one snapshot.

    Scores are information-theoretic outlier scores in nats (``-log`` of a two-sided tail
    probability): 0 is typical, 5 is a one-in-150 event, 10 one in 22,000.
    """

    graph: str
    ts: float
    scores: Mapping[str, float]
    """Conditional outlier score of every node that had one (warm, present, parents known)."""
    target_scores: Mapping[str, float]
    """Marginal outlier score of every warm watched target."""
    warm: bool
    """True once every node's models have seen the warm-up number of snapshots."""
    warming: tuple[str, ...]
    """Nodes still in warm-up."""
    missing: tuple[str, ...]
    """Nodes with no value in this snapshot."""
    invalid: tuple[str, ...]
    """Nodes whose value was not a finite number (inf) or not a number at all."""
    learned: tuple[str, ...]
    """Nodes whose models learned from this snapshot."""
    events: tuple[IncidentEvent, ...] = ()
    attributions: tuple[Attribution, ...] = ()
    open_incidents: Mapping[str, str] = field(default_factory=dict)
    """Target to id of the incident open on it after this snapshot."""


def _finite(x: float | None) -> float | None:
    """JSON has no NaN/inf: map them to None, round-trip everything else unchanged."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)

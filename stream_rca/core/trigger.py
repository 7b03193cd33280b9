"""Incidents: when a watched target's score opens one, how long it stays open, when to attribute.

One :class:`Trigger` per watched target. It is fed the target's score once per snapshot and
says what happened: an incident opened (attribute it), worsened (attribute again), or closed.

- open: ``confirm`` consecutive scores at or above ``threshold``, outside the cooldown;
- stay open while the score is at or above ``close_threshold`` (hysteresis); close after
  ``close_after`` consecutive scores below it;
- worsen: the score exceeds the last attributed score by ``worsen_delta`` nats;
- cooldown: ``cooldown`` snapshots after a close before a new incident may open.

The incident id is stable: ``<graph>:<target>:<start of the first anomalous window>``, so a
replay of the same data gives the same ids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from stream_rca.core.checkpoint import (
    StateError,
    StateTree,
    get_float,
    get_int,
    get_str,
    get_tree,
)

__all__ = ["Trigger", "TriggerConfig", "TriggerDecision", "incident_id"]


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    """Thresholds of a trigger, in nats of the target's IT score."""

    threshold: float = 9.0
    close_threshold: float | None = None
    """Defaults to half the threshold."""
    close_after: int = 3
    confirm: int = 1
    cooldown: int = 5
    worsen_delta: float = 3.0

    def __post_init__(self) -> None:
        if self.threshold <= 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")
        if self.close_threshold is not None and not 0 <= self.close_threshold <= self.threshold:
            raise ValueError("close_threshold must be between 0 and threshold")
        for name in ("close_after", "confirm"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.cooldown < 0 or self.worsen_delta <= 0:
            raise ValueError("cooldown must be >= 0 and worsen_delta > 0")

    @property
    def close_level(self) -> float:
        return self.threshold / 2 if self.close_threshold is None else self.close_threshold


@dataclass(frozen=True, slots=True)
class TriggerDecision:
    """What one score did: ``kind`` is ``None``, ``"opened"``, ``"worsened"`` or ``"closed"``."""

    kind: str | None
    incident_id: str | None
    attribute: bool
    revision: int = 0


def incident_id(graph: str, target: str, window_start: float) -> str:
    """The stable id of an incident.

    >>> incident_id("shop", "Website", 1700000000.0)
    'shop:Website:1700000000'
    >>> incident_id("shop", "Website", 12.5)
    'shop:Website:12.5'
    """
    ts = int(window_start) if float(window_start).is_integer() else window_start
    return f"{graph}:{target}:{ts}"


class Trigger:
    """The incident state of one watched target.

    Examples
    --------
    >>> t = Trigger("shop", "Website", TriggerConfig(threshold=9.0, close_after=2, cooldown=0))
    >>> [t.update_one(float(ts), s).kind for ts, s in enumerate([1, 12, 16, 3, 2, 1])]
    [None, 'opened', 'worsened', None, 'closed', None]
    >>> t.update_one(9.0, 20.0).incident_id
    'shop:Website:9'
    """

    def __init__(self, graph: str, target: str, config: TriggerConfig | None = None) -> None:
        self.graph = graph
        self.target = target
        self.config = config or TriggerConfig()
        self.incident: str | None = None
        self.revision = 0
        self._above = 0
        self._first_above: float | None = None
        self._below = 0
        self._cooldown = 0
        self._attributed_score = 0.0

    @property
    def is_open(self) -> bool:
        return self.incident is not None

    @property
    def quiet(self) -> bool:
        """True when a score below the threshold (or none) would change nothing.

        No incident open, no cooldown running and no score above the threshold pending
        confirmation: :meth:`update_one` with such a score is a no-op, so a caller may skip it.
        """
        return (
            self.incident is None
            and self._cooldown == 0
            and self._above == 0
            and self._first_above is None
        )

    def update_one(self, ts: float, score: float | None) -> TriggerDecision:
        """Feed the target's score for the window starting at ``ts`` (``None``: no score)."""
        cfg = self.config
        if score is None:
            return TriggerDecision(None, self.incident, False, self.revision)
        if self.incident is None:
            if self._cooldown > 0:
                self._cooldown -= 1
                return TriggerDecision(None, None, False)
            if score < cfg.threshold:
                self._above, self._first_above = 0, None
                return TriggerDecision(None, None, False)
            self._above += 1
            if self._first_above is None:
                self._first_above = ts
            if self._above < cfg.confirm:
                return TriggerDecision(None, None, False)
            self.incident = incident_id(self.graph, self.target, self._first_above)
            self.revision, self._below, self._attributed_score = 0, 0, score
            return TriggerDecision("opened", self.incident, True, 0)
        if score >= cfg.close_level:
            self._below = 0
            if score >= self._attributed_score + cfg.worsen_delta:
                self.revision += 1
                self._attributed_score = score
                return TriggerDecision("worsened", self.incident, True, self.revision)
            return TriggerDecision(None, self.incident, False, self.revision)
        self._below += 1
        if self._below < cfg.close_after:
            return TriggerDecision(None, self.incident, False, self.revision)
        closed = self.incident
        self.incident, self._above, self._first_above = None, 0, None
        self._cooldown = cfg.cooldown
        return TriggerDecision("closed", closed, False, self.revision)

    def to_state(self) -> StateTree:
        """The trigger as a state tree (see :mod:`stream_rca.core.checkpoint`).

        Examples
        --------
        >>> t = Trigger("shop", "Website")
        >>> _ = t.update_one(0.0, 20.0)
        >>> Trigger.from_state(t.to_state()).incident
        'shop:Website:0'
        """
        return {
            "graph": self.graph,
            "target": self.target,
            "config": asdict(self.config),
            "incident": self.incident,
            "revision": self.revision,
            "above": self._above,
            "first_above": self._first_above,
            "below": self._below,
            "cooldown": self._cooldown,
            "attributed_score": self._attributed_score,
        }

    @classmethod
    def from_state(cls, state: StateTree) -> Trigger:
        """Rebuild a trigger from :meth:`to_state`; :class:`StateError` for a bad tree."""
        raw = get_tree(state, "config")
        try:
            config = TriggerConfig(**raw)
        except (TypeError, ValueError) as exc:
            raise StateError(f"config: {exc}") from None
        trig = cls(get_str(state, "graph"), get_str(state, "target"), config)
        trig.incident = _optional_str(state, "incident")
        trig.revision = get_int(state, "revision", low=0)
        trig._above = get_int(state, "above", low=0)
        trig._first_above = (
            None if state.get("first_above") is None else get_float(state, "first_above")
        )
        trig._below = get_int(state, "below", low=0)
        trig._cooldown = get_int(state, "cooldown", low=0)
        trig._attributed_score = get_float(state, "attributed_score", finite=False)
        return trig


def _optional_str(state: dict[str, Any], name: str) -> str | None:
    return None if state.get(name) is None else get_str(state, name)

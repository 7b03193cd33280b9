"""A watermark that one clock from the future cannot drag along.

The watermark of a graph is the event time its windows are closed against (see
:class:`~stream_rca.io.aligner.Aligner`). Taking the largest event time seen lets one event
290 s ahead make the next 290 s of every node late. :class:`Watermark` follows this rule:

- a time at most ``max_ahead`` seconds past the watermark moves it there at once (the first
  time seen sets it);
- a time further ahead is *held apart*: the watermark moves to it only once held messages from
  at least two different messages and two different nodes (one, for a graph of one node) have
  reached a time; the watermark then becomes the latest such time. A batch message counts as
  one message with all its nodes; a message delivered twice counts once (same time, same
  nodes);
- a held message the watermark passes is forgotten; at most 256 are remembered (the earliest
  are forgotten first).

So one future event (a single sample or a whole batch) never moves the watermark, nor does a
burst from one node whose clock is skewed, however long; a genuine jump of the whole graph (an
outage ended, a replay) is followed at its second message. What it costs: after a gap longer
than ``max_ahead`` the watermark waits for a second message; a clock ahead by less than
``max_ahead`` still moves it; two independent future messages that together cover two nodes
look like a genuine jump and are followed.

Examples
--------
>>> wm = Watermark(max_ahead=50.0, n_nodes=3)
>>> wm.observe(100.0, ["db"]), wm.value
(True, 100.0)
>>> wm.observe(400.0, ["api"]), wm.value, wm.held  # one clock from the future: held apart
(False, 100.0, 1)
>>> wm.observe(130.0, ["web"]), wm.value
(True, 130.0)
>>> wm.observe(402.0, ["db"]), wm.value, wm.held  # a second message, another node: a jump
(True, 400.0, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from stream_rca.errors import ConfigError

__all__ = ["MAX_HELD", "Held", "Watermark"]

MAX_HELD = 256
"""Most messages held apart at once."""

Held = tuple[float, int, str, str]
"""A message held apart: its time, how many nodes it has, and the first two of them, sorted."""


class Watermark:
    """The event time windows are closed against, robust to clocks from the future.

    Parameters
    ----------
    max_ahead
        Seconds past the watermark beyond which a time is held apart until confirmed.
    n_nodes
        Nodes of the graph (a graph of one node needs no second node to confirm a jump).

    Raises
    ------
    ConfigError
        For a negative or non-finite ``max_ahead``.
    """

    def __init__(self, max_ahead: float, n_nodes: int) -> None:
        if not (math.isfinite(max_ahead) and max_ahead >= 0):
            raise ConfigError(f"max_ahead must be a number of seconds >= 0, not {max_ahead}")
        self.max_ahead = float(max_ahead)
        self.n_nodes = n_nodes
        self.value: float | None = None
        """The watermark; ``None`` before the first time."""
        self._held: set[Held] = set()

    @property
    def held(self) -> int:
        """Messages held apart now: far ahead of the watermark and not yet confirmed."""
        return len(self._held)

    def near(self, ts: float) -> bool:
        """Whether ``ts`` may move the watermark at once (at most ``max_ahead`` past it)."""
        return self.value is None or ts <= self.value + self.max_ahead

    def advance(self, ts: float) -> None:
        """Move the watermark to a near time ``ts`` (if later); forget the holds it passes."""
        if self.value is None or ts > self.value:
            self.value = ts
            if self._held:
                self._held = {h for h in self._held if h[0] > ts}

    def hold(self, ts: float, nodes: Iterable[str]) -> bool:
        """Hold apart one message far ahead; return whether that confirmed a jump (taken)."""
        names = sorted(set(nodes))
        self._held.add((ts, len(names), names[0], names[1] if len(names) > 1 else ""))
        while len(self._held) > MAX_HELD:
            self._held.remove(min(self._held))
        jump = self._confirmed()
        if jump is None:
            return False
        self.advance(jump)
        return True

    def observe(self, ts: float, nodes: Sequence[str]) -> bool:
        """One message at ``ts`` with ``nodes``: advance, or hold; return whether it moved."""
        if self.near(ts):
            before = self.value
            self.advance(ts)
            return self.value != before
        return self.hold(ts, nodes)

    def _confirmed(self) -> float | None:
        """The latest time held messages from two messages and two nodes have reached."""
        need = min(2, self.n_nodes)
        seen: set[str] = set()
        for n, (ts, _, first, second) in enumerate(sorted(self._held, reverse=True), 1):
            seen.add(first)
            if second:
                seen.add(second)
            if n >= 2 and len(seen) >= need:
                return ts
        return None

    def held_state(self) -> list[list[float | int | str]]:
        """The held messages as JSON-ready lists ``[time, nodes, first, second]``."""
        return [list(h) for h in sorted(self._held)]

    def restore_held(self, entries: Iterable[object]) -> None:
        """Hold the messages of :meth:`held_state` again.

        Raises
        ------
        ValueError
            For an entry that is not ``[time, nodes, first, second]``.
        """
        for entry in entries:
            if not (
                isinstance(entry, list)
                and len(entry) == 4
                and isinstance(entry[0], int | float)
                and isinstance(entry[1], int)
                and all(isinstance(n, str) for n in entry[2:])
            ):
                raise ValueError("held: expected [time, nodes, first, second] entries")
            self._held.add((float(entry[0]), entry[1], entry[2], entry[3]))

    def __repr__(self) -> str:
        return f"Watermark(max_ahead={self.max_ahead!r}, n_nodes={self.n_nodes!r})"

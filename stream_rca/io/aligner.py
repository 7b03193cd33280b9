"""Align samples that arrive one at a time, out of order, into per-window snapshots.

Time is cut into windows ``[k * step, (k + 1) * step)``. A window is emitted, as a
:class:`~stream_rca.core.types.Snapshot` with ``ts = k * step`` and ``end = (k + 1) * step``,
once ``end + allowed_lateness <= watermark``; snapshots always come out in window order.

**The watermark** follows the event times, but one clock from the future cannot drag it
along: a sample more than ``max_ahead`` seconds (default ``5 * step``) past the watermark is
stored in its window but held apart, and moves the watermark only once samples from two
messages and two nodes confirm the jump (:mod:`stream_rca.io.watermark` states the rule and
what it costs).

Policies:

- **Missing**: a snapshot holds the nodes that sent data for its window; the others are
  absent, which the engine treats as missing.
- **Gaps**: a window in which no node sent anything is not emitted at all.
- **Late**: a sample whose window was already emitted (or would already have been, had it
  had data) is not used; :meth:`Aligner.add_one` reports :attr:`AlignStatus.LATE`, whose
  dead-letter reason is ``"late_event"``.
- **Duplicates**: a second sample of a node in a window with the identical value is ignored
  (:attr:`AlignStatus.DUPLICATE`); with a different value it replaces the first, last write
  wins (:attr:`AlignStatus.REVISED`).
- **Foreign samples**: a sample of another graph or of a node not in ``nodes`` is rejected
  (:attr:`AlignStatus.UNKNOWN_GRAPH`, :attr:`AlignStatus.UNKNOWN_NODE`) and changes nothing.
- **Bounded memory**: at most ``max_open_windows`` windows are held; opening one more
  force-emits the oldest (counted in :attr:`Aligner.forced`), after which it counts as emitted.

:meth:`Aligner.add_row` takes the values of one message at one time as a mapping (what
:func:`~stream_rca.io.fastdecode.decode_rows` makes) with the outcome of :meth:`Aligner.add_many`
on its samples, placing a plain row (its window open, not far ahead) in one step.

Every outcome is counted in :attr:`Aligner.counts`. An aligner's state is data
(:meth:`Aligner.to_state`), checkpointed with the engine's.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from stream_rca.core.checkpoint import (
    StateError,
    StateTree,
    get_array,
    get_float,
    get_int,
    get_list,
    get_str,
    get_tree,
)
from stream_rca.core.types import Snapshot
from stream_rca.errors import ConfigError
from stream_rca.io.events import Sample
from stream_rca.io.rowruns import RunPlan, place_run
from stream_rca.io.watermark import Watermark

__all__ = ["AlignResult", "AlignStatus", "Aligner"]


class AlignStatus(enum.Enum):
    """What :meth:`Aligner.add_one` did with a sample."""

    ACCEPTED = "accepted"
    """The first value of its node in its window: stored."""
    REVISED = "revised"
    """A different value for a node already in the window: replaced it (last write wins)."""
    DUPLICATE = "duplicate"
    """The same value again for a node already in the window: ignored."""
    LATE = "late"
    """Its window was already emitted: not used."""
    UNKNOWN_NODE = "unknown_node"
    """Its node is not one of the aligner's nodes: not used."""
    UNKNOWN_GRAPH = "unknown_graph"
    """It belongs to another graph: not used."""

    # members are singletons compared by identity: hash them so too (the aligner counts and
    # looks up a status for every sample; Enum's own hash is a Python call on the name)
    __hash__ = object.__hash__

    @property
    def used(self) -> bool:
        """True when the sample's value is in the window (accepted or revised)."""
        return self in (AlignStatus.ACCEPTED, AlignStatus.REVISED)

    @property
    def reason(self) -> str | None:
        """The dead-letter reason for a rejected sample, ``None`` when nothing was wrong.

        A duplicate is not an error (at-least-once delivery makes them), so it has none.
        """
        return _REASONS.get(self)


_REASONS = {
    AlignStatus.LATE: "late_event",
    AlignStatus.UNKNOWN_NODE: "unknown_node",
    AlignStatus.UNKNOWN_GRAPH: "unknown_graph",
}
_ACCEPTED, _REVISED, _DUPLICATE = AlignStatus.ACCEPTED, AlignStatus.REVISED, AlignStatus.DUPLICATE
_LATE, _UNKNOWN_NODE = AlignStatus.LATE, AlignStatus.UNKNOWN_NODE
_UNKNOWN_GRAPH = AlignStatus.UNKNOWN_GRAPH


@dataclass(frozen=True, slots=True)
class AlignResult:
    """The outcome of :meth:`Aligner.add_one`.

    Attributes
    ----------
    status
        What happened to the sample.
    snapshots
        Windows completed by this sample, in window order (often empty).
    """

    status: AlignStatus
    snapshots: tuple[Snapshot, ...] = ()


_PLAIN = {status: AlignResult(status) for status in AlignStatus}
"""The result of each status that completed no snapshot (results are immutable)."""
_ONE = {status: (status,) for status in AlignStatus}
_CODES = (AlignStatus.ACCEPTED, AlignStatus.DUPLICATE, AlignStatus.REVISED, AlignStatus.LATE)
"""The statuses of :mod:`stream_rca.io.rowruns`' codes."""
MIN_RUN = 64
"""Fewer rows than this go through :meth:`Aligner.add_row` one by one (setting up and reading
out the compiled loop costs about 90 us, what ``add_row`` takes for some 45 rows)."""
MAX_CUTS = 8
"""Rows that are not plain within one run before the rest goes one by one."""
RowsResult = tuple[
    list[tuple["AlignStatus", ...]], dict[int, tuple[Snapshot, ...]], dict[int, float | None]
]
"""What :meth:`Aligner.add_rows` returns: per row its statuses; by row, the snapshots it made
(rows that made none are left out); by row, the watermark after each row with a late sample."""
_REPEATS: dict[tuple[AlignStatus, int], tuple[AlignStatus, ...]] = {}


def _repeat(status: AlignStatus, n: int) -> tuple[AlignStatus, ...]:
    """``(status,) * n``, one shared tuple per status and length."""
    got = _REPEATS.get((status, n))
    if got is None:
        got = (status,) * n
        if len(_REPEATS) < 4096:
            _REPEATS[(status, n)] = got
    return got


class Aligner:
    """Bucket samples of one graph into windows and emit snapshots behind a watermark.

    See the module docstring for the policies on missing data, gaps, late samples and
    duplicates.

    Parameters
    ----------
    nodes
        The graph's node names; snapshot values follow this order.
    step
        Window length in seconds (the scrape interval), positive.
    allowed_lateness
        How long, in event time, a window waits past its end for stragglers; ``>= 0``.
    graph
        Name of the graph; samples of other graphs are rejected.
    max_open_windows
        Most windows held at once; opening one more force-emits the oldest.
    max_ahead
        Seconds past the watermark beyond which a sample is held apart until confirmed (see
        the module docstring); default ``5 * step``.

    Raises
    ------
    ConfigError
        For a non-positive step, a negative lateness or ``max_ahead``, no nodes or repeated
        nodes.

    Examples
    --------
    >>> al = Aligner(["db", "api"], step=10.0, graph="shop")
    >>> al.add_one(Sample("shop", "api", 1700000001.0, 0.5)).status
    <AlignStatus.ACCEPTED: 'accepted'>
    >>> al.add_one(Sample("shop", "db", 1700000003.0, 0.1)).snapshots
    ()
    >>> al.add_one(Sample("shop", "api", 1700000012.0, 0.7)).snapshots
    (Snapshot(ts=1700000000.0, values={'db': 0.1, 'api': 0.5}, graph='shop', end=1700000010.0),)
    >>> al.add_one(Sample("shop", "db", 1700000009.0, 0.2)).status.reason
    'late_event'
    >>> al.flush()
    [Snapshot(ts=1700000010.0, values={'api': 0.7}, graph='shop', end=1700000020.0)]
    """

    def __init__(
        self,
        nodes: Sequence[str],
        step: float,
        allowed_lateness: float = 0.0,
        graph: str = "default",
        *,
        max_open_windows: int = 1024,
        max_ahead: float | None = None,
    ) -> None:
        if not (math.isfinite(step) and step > 0):
            raise ConfigError(f"the window step must be a positive number of seconds, not {step}")
        if not (math.isfinite(allowed_lateness) and allowed_lateness >= 0):
            raise ConfigError(
                f"allowed_lateness must be a number of seconds >= 0, not {allowed_lateness}"
            )
        if max_open_windows < 1:
            raise ConfigError(f"max_open_windows must be at least 1, not {max_open_windows}")
        if not nodes:
            raise ConfigError("an aligner needs at least one node")
        if len(set(nodes)) != len(nodes):
            repeated = sorted({n for n in nodes if list(nodes).count(n) > 1})
            raise ConfigError(f"nodes are repeated: {repeated}")
        self.nodes = tuple(nodes)
        self.step = float(step)
        self.allowed_lateness = float(allowed_lateness)
        self.graph = graph
        self.max_open_windows = max_open_windows
        self._known = frozenset(self.nodes)
        self._column = {n: j for j, n in enumerate(self.nodes)}
        self._windows: dict[int, dict[str, float]] = {}
        self._heap: list[int] = []  # indices of the open windows
        self._floor: int | None = None  # windows below this index are closed
        self._wm = Watermark(5.0 * step if max_ahead is None else max_ahead, len(self.nodes))
        self._last: tuple[float, float, int] = (math.inf, -math.inf, 0)  # add_row's window
        self._counts = dict.fromkeys(AlignStatus, 0)
        self.forced = 0
        """Number of windows force-emitted because ``max_open_windows`` was reached."""

    @property
    def watermark(self) -> float | None:
        """The event time windows are closed against; ``None`` before the first sample.

        The largest time of the samples used, except those held apart (module docstring).
        """
        return self._wm.value

    @property
    def held(self) -> int:
        """Messages held apart now: far ahead of the watermark and not yet confirmed."""
        return self._wm.held

    @property
    def max_ahead(self) -> float:
        """Seconds past the watermark beyond which a sample is held apart."""
        return self._wm.max_ahead

    @property
    def counts(self) -> dict[AlignStatus, int]:
        """How many samples ended with each status (a copy)."""
        return dict(self._counts)

    @property
    def open_windows(self) -> int:
        """Number of windows holding data that were not emitted yet."""
        return len(self._windows)

    def window_of(self, ts: float) -> tuple[float, float]:
        """The ``(start, end)`` of the window that holds time ``ts``.

        Examples
        --------
        >>> Aligner(["a"], step=0.1).window_of(0.7)
        (0.6000000000000001, 0.7000000000000001)
        """
        k = self._index(ts)
        return k * self.step, (k + 1) * self.step

    def add_one(self, sample: Sample) -> AlignResult:
        """Add one sample (one message); return its status and the snapshots it completed.

        Parameters
        ----------
        sample
            A decoded sample (:func:`stream_rca.io.events.decode_event`).

        Returns
        -------
        AlignResult
            ``status`` says whether the sample was used (and if not, why); ``snapshots`` are
            the windows now complete (``end + allowed_lateness <= watermark``) or force-emitted,
            in window order.
        """
        return self.add_many((sample,))[0]

    def add_many(self, samples: Sequence[Sample]) -> list[AlignResult]:
        """Add the samples of one message (a batch event), in order; one result each.

        The same as :meth:`add_one` on each sample, except that samples held apart count as
        one message when the watermark rule looks for confirmation.
        """
        # _place, _index, Watermark.near and the test whether _advance has anything to do,
        # inlined: this loop runs for every sample the worker reads
        results: list[AlignResult] = []
        append = results.append
        held: dict[float, list[str]] = {}
        wm, counts, windows, heap = self._wm, self._counts, self._windows, self._heap
        graph, known, step = self.graph, self._known, self.step
        lateness, max_ahead, most = self.allowed_lateness, self._wm.max_ahead, self.max_open_windows
        # after a sample was placed (and the watermark and the windows moved for it), a sample
        # of the same time whose window is still open only needs placing: the same window, not
        # late, the watermark unchanged (advancing it to the same time again is nothing) and
        # nothing newly due. A batch event's samples all take this branch but the first.
        last_ts: float | None = None
        last_window: dict[str, float] | None = None
        last_held: list[str] | None = None
        for sample in samples:
            if last_window is not None and sample.ts == last_ts and sample.graph == graph:
                node = sample.node
                if node in known:
                    old = last_window.get(node)
                    last_window[node] = sample.value
                    if old is None:
                        status = _ACCEPTED
                    else:
                        status = _DUPLICATE if old == sample.value else _REVISED
                    counts[status] += 1
                    if last_held is not None:
                        last_held.append(node)
                    append(_PLAIN[status])
                    continue
            last_window = None
            if sample.graph != graph:
                status = _UNKNOWN_GRAPH
            elif sample.node not in known:
                status = _UNKNOWN_NODE
            else:
                ts = sample.ts
                k = math.floor(ts / step)
                if (k + 1) * step <= ts:
                    k += 1
                elif k * step > ts:
                    k -= 1
                value = wm.value
                floor = self._floor
                if (floor is not None and k < floor) or (
                    value is not None and (k + 1) * step <= value - lateness
                ):
                    status = _LATE
                else:
                    window = windows.get(k)
                    if window is None:
                        window = windows[k] = {}
                        heapq.heappush(heap, k)
                    old = window.get(sample.node)
                    window[sample.node] = sample.value
                    if old is None:
                        status = _ACCEPTED
                    else:
                        status = _DUPLICATE if old == sample.value else _REVISED
            counts[status] += 1
            if status in _REASONS:
                append(_PLAIN[status])
                continue
            value = wm.value
            if value is None or ts <= value + max_ahead:
                wm.advance(ts)
                value = wm.value
                last_held = None
            else:
                last_held = held.setdefault(ts, [])
                last_held.append(sample.node)
            if heap and (
                len(heap) > most or (value is not None and (heap[0] + 1) * step <= value - lateness)
            ):
                append(AlignResult(status, tuple(self._advance())))
            else:
                append(_PLAIN[status])
            last_window = windows.get(k)  # None if it was just emitted (forced out)
            last_ts = ts
        jumped = False
        for ts, nodes in held.items():  # hold every one, even after a jump
            jumped = self._wm.hold(ts, nodes) or jumped
        if jumped:
            last = results[-1]
            results[-1] = AlignResult(last.status, last.snapshots + tuple(self._advance()))
        return results

    def add_row(
        self, ts: float, values: dict[str, float]
    ) -> tuple[tuple[AlignStatus, ...], tuple[Snapshot, ...]]:
        """Add the values of one message at one time; their statuses and the snapshots made.

        The same as :meth:`add_many` on the message's samples (``Sample(self.graph, node,
        ts, value)`` for each entry, in order): the same statuses, counts, watermark, windows
        and snapshots (those of all its results, in order). A plain row (its window open, not
        far ahead, no window forced out) is placed in one step; any other goes through
        :meth:`add_many`.

        Parameters
        ----------
        ts
            The message's time, unix seconds.
        values
            Node name to a finite float, in message order (not kept: copied into the window).

        Examples
        --------
        >>> al = Aligner(["db", "api"], step=10.0, graph="shop")
        >>> al.add_row(1700000001.0, {"db": 0.1, "api": 0.5})[0]
        (<AlignStatus.ACCEPTED: 'accepted'>, <AlignStatus.ACCEPTED: 'accepted'>)
        >>> statuses, snapshots = al.add_row(1700000012.0, {"api": 0.7})
        >>> statuses, [snap.values for snap in snapshots]
        ((<AlignStatus.ACCEPTED: 'accepted'>,), [{'db': 0.1, 'api': 0.5}])
        """
        n = len(values)
        if not n:
            return (), ()
        wm = self._wm
        value = wm.value
        heap, windows = self._heap, self._windows
        start, end, k = self._last  # the window of the row before: most rows fall in it too
        if not start <= ts < end:  # else the window index: the only k with that property
            step = self.step
            k = math.floor(ts / step)
            if (k + 1) * step <= ts:
                k += 1
            elif k * step > ts:
                k -= 1
            start, end = k * step, (k + 1) * step
            self._last = (start, end, k)
        if (
            (value is not None and ts > value + wm.max_ahead)  # held apart
            or len(heap) >= self.max_open_windows  # a window may be forced out
            or not self._known.issuperset(values)
        ):
            return self._row_by_samples(ts, values)
        counts = self._counts
        floor = self._floor
        lateness = self.allowed_lateness
        if (floor is not None and k < floor) or (value is not None and end <= value - lateness):
            counts[_LATE] += n
            return _repeat(_LATE, n), ()
        window = windows.get(k)
        if window is None:
            windows[k] = dict(values)
            heapq.heappush(heap, k)
            statuses = _repeat(_ACCEPTED, n)
            counts[_ACCEPTED] += n
        elif n == 1:  # the single form
            ((node, v),) = values.items()
            old = window.get(node)
            window[node] = v
            status = _ACCEPTED if old is None else _DUPLICATE if old == v else _REVISED
            statuses = _ONE[status]
            counts[status] += 1
        else:
            made: list[AlignStatus] = []
            for node, v in values.items():
                old = window.get(node)
                window[node] = v
                made.append(_ACCEPTED if old is None else _DUPLICATE if old == v else _REVISED)
            statuses = tuple(made)
            for status in made:
                counts[status] += 1
        if value is None or ts > value:
            wm.advance(ts)
            value = ts
        if (heap[0] + 1) * self.step <= value - lateness:
            return statuses, tuple(self._advance())
        return statuses, ()

    def add_rows(
        self, ts: Sequence[float], rows: Sequence[dict[str, float]], *, min_run: int = MIN_RUN
    ) -> RowsResult:
        """Add many messages' rows, in order: :meth:`add_row` on each, plain runs at once.

        The same statuses, snapshots, counts, watermark and windows as :meth:`add_row` on
        each row in turn. A run of plain rows (none held apart, none met with
        ``max_open_windows`` windows open) is placed in one compiled loop
        (:func:`~stream_rca.io.rowruns.place_run`, a compiled loop); any other row goes through
        :meth:`add_row`, and so do runs shorter than :data:`MIN_RUN` and rows naming a node
        the aligner does not know.

        Parameters
        ----------
        ts
            Each message's time, unix seconds.
        rows
            Each message's values, node name to a finite float, in message order.
        min_run
            Fewer rows than this (in all, or left after a row that is not plain) go one by one.

        Returns
        -------
        RowsResult
            Per row its statuses; by row index, the snapshots that row completed (in window
            order); by row index, the watermark after each row that had a late sample (what
            a dead letter for it names).

        Examples
        --------
        >>> al = Aligner(["db", "api"], step=10.0, graph="shop")
        >>> statuses, made, late = al.add_rows(
        ...     [1700000001.0, 1700000012.0, 1700000005.0],
        ...     [{"db": 0.1, "api": 0.5}, {"api": 0.7}, {"db": 0.2}],
        ... )
        >>> [s[0].value for s in statuses], [snap.values for snap in made[1]], late
        (['accepted', 'accepted', 'late'], [{'db': 0.1, 'api': 0.5}], {2: 1700000012.0})
        """
        n = len(rows)
        statuses: list[tuple[AlignStatus, ...]] = [()] * n
        made: dict[int, tuple[Snapshot, ...]] = {}
        late: dict[int, float | None] = {}
        start = 0
        if n >= min_run:
            start = self._runs(ts, rows, statuses, made, late, min_run)
        for i in range(start, n):
            self._one_row(i, ts[i], rows[i], statuses, made, late)
        return statuses, made, late

    def _one_row(
        self,
        i: int,
        ts: float,
        values: dict[str, float],
        statuses: list[tuple[AlignStatus, ...]],
        made: dict[int, tuple[Snapshot, ...]],
        late: dict[int, float | None],
    ) -> None:
        got, snapshots = self.add_row(ts, values)
        statuses[i] = got
        if snapshots:
            made[i] = snapshots
        if _LATE in got:
            late[i] = self._wm.value

    def _runs(
        self,
        ts: Sequence[float],
        rows: Sequence[dict[str, float]],
        statuses: list[tuple[AlignStatus, ...]],
        made: dict[int, tuple[Snapshot, ...]],
        late: dict[int, float | None],
        min_run: int,
    ) -> int:
        """Place plain runs of ``rows``; return the first row left for :meth:`add_row`."""
        lengths = [len(r) for r in rows]
        column = self._column
        try:
            cols = [column[name] for r in rows for name in r]
        except KeyError:  # a node the aligner does not know: add_row reports it
            return 0
        if 0 in lengths:
            return 0
        n = len(rows)
        t = np.array(ts, dtype=np.float64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        col_a = np.array(cols, dtype=np.int64)
        val_a = np.array([v for r in rows for v in r.values()], dtype=np.float64)
        start, cuts = 0, 0
        while start < n:
            first = int(offsets[start])
            plan = place_run(
                t[start:],
                offsets[start:] - first,
                col_a[first:],
                val_a[first:],
                open_windows={
                    w: {column[name]: v for name, v in cells.items()}
                    for w, cells in self._windows.items()
                },
                watermark=self._wm.value,
                floor=self._floor,
                step=self.step,
                allowed_lateness=self.allowed_lateness,
                max_ahead=self._wm.max_ahead,
                max_open_windows=self.max_open_windows,
                n_nodes=len(self.nodes),
            )
            if plan is None:  # times too scattered for one grid: row by row
                break
            if plan.rows:
                self._apply(plan, start, lengths, statuses, made, late)
                start += plan.rows
            if start >= n:
                break
            self._one_row(start, ts[start], rows[start], statuses, made, late)
            start += 1
            cuts += 1
            if cuts >= MAX_CUTS or n - start < min_run:
                break
        return start

    def _apply(
        self,
        plan: RunPlan,
        start: int,
        lengths: list[int],
        statuses: list[tuple[AlignStatus, ...]],
        made: dict[int, tuple[Snapshot, ...]],
        late: dict[int, float | None],
    ) -> None:
        """Make the aligner's state what :meth:`add_row` on the plan's rows leaves."""
        rows, codes = plan.rows, plan.codes
        tally = np.bincount(codes, minlength=4).tolist()
        counts = self._counts
        for status, c in zip(_CODES, tally, strict=True):
            counts[status] += c
        sizes = lengths[start : start + rows]
        if tally[0] == codes.size:  # all accepted: the common case
            if codes.size == rows:
                statuses[start : start + rows] = [_ONE[_ACCEPTED]] * rows
            else:
                statuses[start : start + rows] = [_repeat(_ACCEPTED, c) for c in sizes]
        else:
            each = [_CODES[c] for c in codes.tolist()]
            at = 0
            for i, c in enumerate(sizes):
                got = tuple(each[at : at + c])
                statuses[start + i] = got
                at += c
                if _LATE in got:
                    w = float(plan.watermark[i])
                    late[start + i] = None if w == -math.inf else w
        graph, step, base, nodes = self.graph, self.step, plan.base, self.nodes
        emitted = np.flatnonzero(plan.emitted_at >= 0)  # by window, so by the row emitting it
        still = np.flatnonzero(plan.opened)
        where = np.concatenate((emitted, still))
        cells: list[dict[str, float]] = []
        if where.size:
            grid: list[list[float]] = plan.values[where].tolist()
            has = plan.present[where]
            full = cast(list[bool], has.all(axis=1).tolist())
            marks: list[list[bool]] = has.tolist()
            for vals, whole, mark in zip(grid, full, marks, strict=True):
                if whole:
                    cells.append(dict(zip(nodes, vals, strict=True)))
                else:
                    cells.append({n: v for n, v, h in zip(nodes, vals, mark, strict=True) if h})
        at_rows = plan.emitted_at[emitted].tolist()
        last, snaps = -1, list[Snapshot]()
        for i, (w, at) in enumerate(zip(emitted.tolist(), at_rows, strict=True)):
            if at != last:
                if snaps:
                    made[start + last] = tuple(snaps)
                last, snaps = at, []
            k = w + base
            snaps.append(Snapshot(ts=k * step, values=cells[i], graph=graph, end=(k + 1) * step))
        if snaps:
            made[start + last] = tuple(snaps)
        n_emitted = emitted.size
        self._windows = {w + base: cells[n_emitted + i] for i, w in enumerate(still.tolist())}
        self._heap = list(self._windows)  # ascending: a sorted list is a heap
        self._floor = plan.floor
        if rows:
            wm = float(plan.watermark[-1])
            if wm > -math.inf:
                self._wm.advance(wm)

    def _row_by_samples(
        self, ts: float, values: dict[str, float]
    ) -> tuple[tuple[AlignStatus, ...], tuple[Snapshot, ...]]:
        graph = self.graph
        made = self.add_many([Sample(graph, node, ts, v) for node, v in values.items()])
        snapshots: tuple[Snapshot, ...] = ()
        for res in made:
            if res.snapshots:
                snapshots += res.snapshots
        return tuple(res.status for res in made), snapshots

    def flush(self) -> list[Snapshot]:
        """Emit every open window, in window order (the end of a stream).

        Afterwards, samples for the flushed windows or older ones count as late.
        """
        out: list[Snapshot] = []
        while self._heap:
            out.append(self._emit(heapq.heappop(self._heap)))
        return out

    def __repr__(self) -> str:
        return (
            f"Aligner(nodes={list(self.nodes)!r}, step={self.step!r}, "
            f"allowed_lateness={self.allowed_lateness!r}, graph={self.graph!r}, "
            f"max_open_windows={self.max_open_windows!r}, max_ahead={self.max_ahead!r})"
        )

    # -- state as data ---------------------------------------------------------------------

    def to_state(self) -> StateTree:
        """The aligner as a state tree: its settings, open windows, watermark and counts.

        The open windows are a ``(windows, nodes)`` array of values with a mask of which
        nodes sent one.

        Examples
        --------
        >>> al = Aligner(["db", "api"], step=10.0, graph="shop")
        >>> _ = al.add_one(Sample("shop", "api", 1700000001.0, 0.5))
        >>> Aligner.from_state(al.to_state()).flush()
        [Snapshot(ts=1700000000.0, values={'api': 0.5}, graph='shop', end=1700000010.0)]
        """
        keys = sorted(self._windows)
        values = np.zeros((len(keys), len(self.nodes)))
        present = np.zeros((len(keys), len(self.nodes)), dtype=bool)
        column = {n: i for i, n in enumerate(self.nodes)}
        for row, k in enumerate(keys):
            for node, value in self._windows[k].items():
                values[row, column[node]] = value
                present[row, column[node]] = True
        return {
            "nodes": list(self.nodes),
            "step": self.step,
            "allowed_lateness": self.allowed_lateness,
            "graph": self.graph,
            "max_open_windows": self.max_open_windows,
            "max_ahead": self.max_ahead,
            "held": self._wm.held_state(),
            "windows": np.array(keys, dtype=np.int64),
            "values": values,
            "present": present,
            "floor": self._floor,
            "watermark": self._wm.value,
            "counts": {status.value: n for status, n in self._counts.items()},
            "forced": self.forced,
        }

    @classmethod
    def from_state(cls, state: StateTree) -> Aligner:
        """Rebuild an aligner from :meth:`to_state`; :class:`StateError` for a bad tree."""
        nodes = get_list(state, "nodes")
        if not all(isinstance(n, str) for n in nodes):
            raise StateError("nodes: expected a list of names")
        try:
            al = cls(
                nodes,
                get_float(state, "step"),
                get_float(state, "allowed_lateness"),
                get_str(state, "graph"),
                max_open_windows=get_int(state, "max_open_windows", low=1),
                max_ahead=None if state.get("max_ahead") is None else get_float(state, "max_ahead"),
            )
        except ConfigError as exc:
            raise StateError(str(exc)) from None
        try:
            al._wm.restore_held(get_list(state, "held") if "held" in state else [])
        except ValueError as exc:
            raise StateError(str(exc)) from None
        keys = get_array(state, "windows", np.int64, (None,))
        shape = (keys.size, len(nodes))
        values = get_array(state, "values", np.float64, shape)
        present = get_array(state, "present", np.bool_, shape)
        if np.unique(keys).size != keys.size:
            raise StateError("windows: repeated window")
        for row, k in enumerate(keys.tolist()):
            al._windows[k] = {nodes[j]: float(values[row, j]) for j in np.flatnonzero(present[row])}
        al._heap = sorted(al._windows)  # a sorted list is a heap
        al._floor = None if state.get("floor") is None else get_int(state, "floor")
        al._wm.value = None if state.get("watermark") is None else get_float(state, "watermark")
        counts = get_tree(state, "counts")
        for status in AlignStatus:
            al._counts[status] = get_int(counts, status.value, low=0)
        al.forced = get_int(state, "forced", low=0)
        return al

    # -- internals -------------------------------------------------------------------------

    def _index(self, ts: float) -> int:
        """``k`` with ``k * step <= ts < (k + 1) * step`` in floating point."""
        k = math.floor(ts / self.step)
        if (k + 1) * self.step <= ts:
            k += 1
        elif k * self.step > ts:
            k -= 1
        return k

    def _end(self, k: int) -> float:
        return (k + 1) * self.step

    def _place(self, sample: Sample) -> AlignStatus:
        if sample.graph != self.graph:
            return AlignStatus.UNKNOWN_GRAPH
        if sample.node not in self._known:
            return AlignStatus.UNKNOWN_NODE
        k = self._index(sample.ts)
        wm = self._wm.value
        if (self._floor is not None and k < self._floor) or (
            wm is not None and self._end(k) <= wm - self.allowed_lateness
        ):
            return AlignStatus.LATE
        window = self._windows.get(k)
        if window is None:
            window = self._windows[k] = {}
            heapq.heappush(self._heap, k)
        old = window.get(sample.node)
        window[sample.node] = sample.value
        if old is None:
            return AlignStatus.ACCEPTED
        return AlignStatus.DUPLICATE if old == sample.value else AlignStatus.REVISED

    def _advance(self) -> list[Snapshot]:
        """Snapshots due under the current watermark (and forced ones)."""
        out = self._evict()
        wm = self._wm.value
        if wm is None:
            return out
        horizon = wm - self.allowed_lateness
        while self._heap and self._end(self._heap[0]) <= horizon:
            out.append(self._emit(heapq.heappop(self._heap)))
        return out

    def _evict(self) -> list[Snapshot]:
        out: list[Snapshot] = []
        while len(self._heap) > self.max_open_windows:
            out.append(self._emit(heapq.heappop(self._heap)))
            self.forced += 1
        return out

    def _emit(self, k: int) -> Snapshot:
        window = self._windows.pop(k)
        self._floor = k + 1 if self._floor is None else max(self._floor, k + 1)
        values = {n: window[n] for n in self.nodes if n in window}
        return Snapshot(ts=k * self.step, values=values, graph=self.graph, end=self._end(k))

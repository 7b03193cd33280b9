"""The processing loop's error policy: what becomes of a record whose processing raised.

Every input record ends in exactly one of two ways: processed, or dead-lettered with a reason.
Bad input is caught by the decoder and the aligner (reasons such as ``malformed_json`` or
``late_event``); this module decides about the rest, an exception raised while a valid record
was being processed (most often by a graph's engine: a bug, or engine settings it cannot run
with). The decision is made at one place, by one object given to
:class:`~stream_rca.streaming.pipeline.Pipeline` (its ``error_policy``), like quix-streams'
``on_processing_error`` callback:

- :attr:`Verdict.DEAD_LETTER`: the record goes to the dead-letter topic with reason
  ``"processing_error"`` and a message naming the exception's type and text; the loop goes on;
- :attr:`Verdict.QUARANTINE`: the same for this record, and the graph is quarantined: its state
  is dropped and every later record of it is dead-lettered with reason ``"graph_quarantined"``
  without running anything, until the graph is released (it moves to another worker, or the
  worker restarts). Other graphs are not affected;
- :attr:`Verdict.RAISE`: the loop stops (:class:`ProcessingError`), for strict test runs.

The pipeline keeps the bookkeeping (how many errors a graph had in a row, which graphs are
quarantined) and passes it in :class:`ErrorContext`; a policy only decides. The default,
:class:`QuarantinePolicy`, dead-letters an error and quarantines a graph after
``quarantine_after`` errors in a row. An error counts *in a row* until the graph's engine
next processes a snapshot without one (records that complete no snapshot do not reset it, so
an engine that fails on every snapshot is quarantined whatever the shape of its input).

Examples
--------
>>> import logging
>>> policy = QuarantinePolicy(quarantine_after=2)
>>> ctx = ErrorContext("shop", topic="metrics", partition=0, offset=7, consecutive=1)
>>> policy.on_processing_error(ValueError("bad"), ctx, logging.getLogger("test"))
<Verdict.DEAD_LETTER: 'dead_letter'>
>>> ctx = ErrorContext("shop", topic="metrics", partition=0, offset=8, consecutive=2)
>>> policy.on_processing_error(ValueError("bad"), ctx, logging.getLogger("test"))
<Verdict.QUARANTINE: 'quarantine'>
>>> describe_error(ZeroDivisionError("division by zero"))
'ZeroDivisionError: division by zero'
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Protocol

from stream_rca.errors import ConfigError, StreamRCAError

__all__ = [
    "DEFAULT_QUARANTINE_AFTER",
    "ErrorContext",
    "ErrorPolicy",
    "ProcessingError",
    "QuarantinePolicy",
    "StrictPolicy",
    "Verdict",
    "describe_error",
]

DEFAULT_QUARANTINE_AFTER = 5
"""Processing errors in a row after which :class:`QuarantinePolicy` quarantines a graph."""

_MAX_MESSAGE = 1000  # characters of an exception's text kept in a dead letter


class ProcessingError(StreamRCAError, RuntimeError):
    """Processing a record raised and the error policy said to stop (:attr:`Verdict.RAISE`)."""


class Verdict(enum.Enum):
    """What an :class:`ErrorPolicy` decides for a record whose processing raised."""

    DEAD_LETTER = "dead_letter"
    """Dead-letter the record (reason ``"processing_error"``) and go on."""
    QUARANTINE = "quarantine"
    """Dead-letter the record and quarantine its graph (``"graph_quarantined"`` from now on)."""
    RAISE = "raise"
    """Stop the processing loop: :class:`ProcessingError` from the original exception."""


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Where a processing error happened, and how often the graph failed in a row.

    Attributes
    ----------
    graph
        The record's graph (a configured one).
    topic, partition, offset
        Where the record came from (``offset`` ``None`` when not tracked).
    consecutive
        Errors of this graph in a row, this one included (so at least 1).
    """

    graph: str
    topic: str | None
    partition: int
    offset: int | None
    consecutive: int


class ErrorPolicy(Protocol):
    """Decides what becomes of a record whose processing raised (see the module docstring)."""

    def on_processing_error(
        self, exc: Exception, context: ErrorContext, logger: logging.Logger
    ) -> Verdict:
        """Decide about one error; log what should be logged (one line, no traceback)."""


def describe_error(exc: BaseException) -> str:
    """``"TypeName: message"`` of an exception, on one line and at most 1,000 characters.

    Examples
    --------
    >>> describe_error(KeyError("api"))
    "KeyError: 'api'"
    >>> len(describe_error(ValueError("x" * 5000)))
    1000
    """
    text = " ".join(str(exc).split())
    out = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return out if len(out) <= _MAX_MESSAGE else out[: _MAX_MESSAGE - 3] + "..."


class QuarantinePolicy:
    """The default policy: dead-letter each error; quarantine a graph that keeps failing.

    Parameters
    ----------
    quarantine_after
        Errors of one graph in a row after which it is quarantined (``>= 1``).

    Raises
    ------
    ConfigError
        For ``quarantine_after < 1``.
    """

    def __init__(self, quarantine_after: int = DEFAULT_QUARANTINE_AFTER) -> None:
        if isinstance(quarantine_after, bool) or not isinstance(quarantine_after, int):
            raise ConfigError(
                f"quarantine_after must be a whole number >= 1, not {quarantine_after!r}"
            )
        if quarantine_after < 1:
            raise ConfigError(f"quarantine_after must be at least 1, not {quarantine_after}")
        self.quarantine_after = quarantine_after

    def on_processing_error(
        self, exc: Exception, context: ErrorContext, logger: logging.Logger
    ) -> Verdict:
        """Dead-letter, or quarantine at the ``quarantine_after``-th error in a row."""
        where = f"{context.topic}[{context.partition}]@{context.offset}"
        what = describe_error(exc)
        if context.consecutive >= self.quarantine_after:
            logger.error(
                "graph %r quarantined after %d processing errors in a row (last at %s: %s); "
                "its records go to the dead-letter topic until it moves or the worker restarts",
                context.graph,
                context.consecutive,
                where,
                what,
            )
            return Verdict.QUARANTINE
        logger.warning(
            "graph %r: processing error %d of %d before quarantine at %s: %s; dead-lettered",
            context.graph,
            context.consecutive,
            self.quarantine_after,
            where,
            what,
        )
        return Verdict.DEAD_LETTER

    def __repr__(self) -> str:
        return f"QuarantinePolicy(quarantine_after={self.quarantine_after!r})"


class StrictPolicy:
    """A policy that stops the loop at the first processing error (tests, debugging)."""

    def on_processing_error(
        self, exc: Exception, context: ErrorContext, logger: logging.Logger
    ) -> Verdict:
        """Always :attr:`Verdict.RAISE`."""
        return Verdict.RAISE

    def __repr__(self) -> str:
        return "StrictPolicy()"

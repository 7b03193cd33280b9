"""Timestamps of input data: unix seconds or RFC 3339 strings, to float unix seconds.

Pure functions, no clock: the caller passes ``now`` where a check needs it.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

__all__ = [
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "check_timestamp",
    "parse_rfc3339",
    "parse_timestamp",
]

MIN_TIMESTAMP = 946_684_800.0
"""2000-01-01T00:00:00Z: anything earlier is treated as a mistake (a zero, a relative time)."""

MAX_TIMESTAMP = 253_402_300_800.0
"""10000-01-01T00:00:00Z (exclusive): anything later cannot be a date (often milliseconds)."""

# RFC 3339 section 5.6 (``date-time``), with its note: "T" may be a space, letters any case.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def _short(x: object, limit: int = 80) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_rfc3339(text: str) -> float:
    """Parse an RFC 3339 ``date-time`` string to unix seconds.

    The UTC offset is required (``Z`` or ``+hh:mm``), as RFC 3339 requires it: a time
    without one would be ambiguous.

    Parameters
    ----------
    text
        For example ``"2023-11-14T22:13:20Z"`` or ``"2023-11-14 23:13:20.5+01:00"``.

    Returns
    -------
    float
        Seconds since 1970-01-01T00:00:00Z.

    Raises
    ------
    ValueError
        When ``text`` is not an RFC 3339 date-time (the message says why).

    Examples
    --------
    >>> parse_rfc3339("2023-11-14T22:13:20Z")
    1700000000.0
    >>> parse_rfc3339("2023-11-14T23:13:20.25+01:00")
    1700000000.25
    """
    stripped = text.strip()
    if _RFC3339.fullmatch(stripped) is None:
        raise ValueError(
            f"{_short(text)} is not an RFC 3339 date-time; write e.g. '2023-11-14T22:13:20Z' "
            "(the UTC offset is required) or unix seconds"
        )
    normal = stripped.upper().replace(" ", "T")
    if normal.endswith("Z"):
        normal = normal[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(normal)
    except ValueError as exc:  # 2023-02-30, 25:00, a leap second
        raise ValueError(f"{_short(text)} is not a valid date-time: {exc}") from None
    return parsed.timestamp()


def parse_timestamp(value: object) -> float:
    """Turn a number of unix seconds or an RFC 3339 string into float unix seconds.

    Numeric strings (``"1700000000.5"``, as a CSV cell holds them) count as unix seconds.
    The result is not range-checked: see :func:`check_timestamp`.

    Parameters
    ----------
    value
        An ``int`` or ``float`` (not a ``bool``) or a ``str``.

    Returns
    -------
    float
        Unix seconds.

    Raises
    ------
    TypeError
        For any other type.
    ValueError
        For a string that is neither a number nor an RFC 3339 date-time, or a non-finite number.

    Examples
    --------
    >>> parse_timestamp(1700000000)
    1700000000.0
    >>> parse_timestamp("1700000000.5")
    1700000000.5
    >>> parse_timestamp("2023-11-14T22:13:20Z")
    1700000000.0
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(
            f"a timestamp must be unix seconds (a number) or an RFC 3339 string, "
            f"not {type(value).__name__}"
        )
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return parse_rfc3339(value)
    else:
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"timestamp {value} is out of range") from None
    if not math.isfinite(number):
        raise ValueError(f"timestamp {_short(value)} is not a finite number")
    return number


def check_timestamp(ts: float, *, now: float | None = None, max_skew: float = math.inf) -> None:
    """Reject a timestamp that cannot be right.

    Parameters
    ----------
    ts
        Unix seconds.
    now
        The current time in unix seconds, passed in by the caller; ``None`` skips the
        check against the future.
    max_skew
        How many seconds ``ts`` may lie after ``now`` (clock skew between producers).

    Raises
    ------
    ValueError
        If ``ts`` is not finite, before 2000-01-01, not before the year 10000, or more than
        ``max_skew`` seconds after ``now``.

    Examples
    --------
    >>> check_timestamp(1700000000.0, now=1700000000.0, max_skew=60.0)
    >>> check_timestamp(1700000000000.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: timestamp 1700000000000.0 is after the year 9999; is it in milliseconds? ...
    """
    if not math.isfinite(ts):
        raise ValueError(f"timestamp {ts!r} is not a finite number")
    if ts < MIN_TIMESTAMP:
        raise ValueError(
            f"timestamp {ts!r} is before 2000-01-01 (negative, zero or relative?); "
            "send unix seconds or an RFC 3339 date-time"
        )
    if ts >= MAX_TIMESTAMP:
        raise ValueError(
            f"timestamp {ts!r} is after the year 9999; is it in milliseconds? send unix seconds"
        )
    if now is not None and ts > now + max_skew:
        raise ValueError(
            f"timestamp {ts!r} is {ts - now:.3f} s in the future (now={now!r}, "
            f"max skew {max_skew!r} s); check the producer's clock"
        )

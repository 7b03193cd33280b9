"""What ``stream-rca replay`` prints and writes of its attributions, with or without a graph.

Both replays (:mod:`stream_rca.cli` with ``--graph``, :mod:`stream_rca.replay_graphfree`
without) show each attribution as text, write its document as one JSON line to ``--output``,
and close with the same summary lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

from stream_rca.core.types import Attribution
from stream_rca.io.petshop import AVAILABILITY_READINGS
from stream_rca.io.sources import detect_format

__all__ = ["AVAILABILITY_ARG", "print_summary", "say_availability", "write_attributions"]

AVAILABILITY_ARG: dict[str, Any] = {
    "choices": tuple(AVAILABILITY_READINGS),
    "default": "failures",
    "help": "how a PetShop availability metric is read: failures (default), the failed "
    "requests per period from availability and requests/Sum, which add up along the call "
    "graph; percent, as written",
}
"""The ``--availability`` option of the commands that read PetShop files."""


def say_availability(metric: str, availability: str, path: str, out: IO[str]) -> None:
    """One line saying how availability is read, when a PetShop availability metric is."""
    if metric == "availability" and detect_format(path) == "petshop":
        print(AVAILABILITY_READINGS[availability], file=out)


def write_attributions(
    attributions: Iterable[Attribution],
    out: IO[str],
    output: IO[str] | None,
    show: Callable[[Attribution, IO[str]], None],
) -> int:
    """Show each attribution on ``out`` and write its document to ``output`` (if any).

    Parameters
    ----------
    attributions
        The attributions of one snapshot.
    out
        Where the text goes (the terminal).
    output
        The ``--output`` file: one JSON document a line; ``None``: not written.
    show
        ``show(attribution, out)`` prints one attribution.

    Returns
    -------
    int
        How many attributions there were.
    """
    count = 0
    for att in attributions:
        count += 1
        show(att, out)
        if output is not None:
            output.write(json.dumps(att.to_dict()) + "\n")
    return count


def print_summary(
    out: IO[str],
    *,
    rows: int,
    attributions: int,
    explain: Sequence[int] | None,
    output: str | None,
) -> None:
    """The closing lines of a replay: an ``--explain`` row beyond ``--data``, if one was asked
    for, and how many attributions there were (and where their documents went).

    Examples
    --------
    >>> import sys
    >>> print_summary(sys.stdout, rows=3, attributions=1, explain=[1, 7], output="out.jsonl")
    <BLANKLINE>
    --explain 7: --data has 3 rows (0 to 2)
    <BLANKLINE>
    1 attribution(s) written to out.jsonl
    """
    beyond = sorted(r for r in explain or () if r >= rows)
    if beyond:
        print(f"\n--explain {beyond[0]}: --data has {rows} rows (0 to {rows - 1})", file=out)
    written = f" written to {output}" if output else ""
    print(f"\n{attributions} attribution(s){written}", file=out)

"""``python -m stream_rca.streaming {worker,simulate} ...``: the streaming commands alone."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stream_rca.streaming.commands import register

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return its exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m stream_rca.streaming",
        description="stream-rca streaming commands: a faust worker and a simulator.",
    )
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

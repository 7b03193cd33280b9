"""cProfile of one operation, summarised as the functions that dominate its time."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Callable
from typing import Any

__all__ = ["profile_text"]


def profile_text(func: Callable[[], Any], *, repeat: int = 1, top: int = 12) -> str:
    """Run ``func`` ``repeat`` times under cProfile; the ``top`` functions by own time."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(repeat):
        func()
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    lines = buf.getvalue().splitlines()
    # keep the summary line and the table, not pstats' preamble
    start = next((i for i, ln in enumerate(lines) if "function calls" in ln), 0)
    return "\n".join(ln.rstrip() for ln in lines[start:] if ln.strip())

"""The second core for the exact attribution (the core itself starts no thread).

:func:`attribution_pool` gives the one-thread pool the entry points (the worker, ``replay``,
the demo) hand to each :class:`~stream_rca.core.engine.Engine` as ``pool``: half of an exact
attribution's chunks of coalitions are built, sorted and reduced there (numpy's sorts and adds
and the compiled kernel release the GIL), with the same floats as on one thread. Its first
call in a process also compiles the engine's kernels (:func:`stream_rca.core.warm.warm`) and
the aligner's (:func:`stream_rca.io.rowruns.warm`), so neither the first batch, the first
snapshot nor the first incident waits for the compiler, and gives the noise banks a clock to
time their two sorts with (:class:`~stream_rca.core.noise.SortChoice`: the faster of two
that give the same floats).
"""

from __future__ import annotations

import concurrent.futures
import os
import time

__all__ = ["attribution_pool"]

_POOL: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
_WARM = False


def attribution_pool() -> concurrent.futures.Executor | None:
    """A process-wide one-thread pool, or ``None`` where this process may run on one core.

    Made again in a forked child (the parent's thread does not exist there).
    """
    global _POOL, _WARM
    if not _WARM:
        from stream_rca.core.warm import warm
        from stream_rca.io import rowruns

        warm()
        rowruns.warm()  # the aligner's loop over a batch's rows
        from stream_rca.core.noise import SORTS

        if SORTS.clock is None:  # the refits time their two sorts and keep the faster
            SORTS.clock = time.perf_counter
        _WARM = True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) < 2:
        return None
    if _POOL is None or _POOL[0] != os.getpid():
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stream-rca-attribution")
        _POOL = (os.getpid(), pool)
    return _POOL[1]

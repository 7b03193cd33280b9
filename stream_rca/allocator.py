"""Keep the memory numpy frees for the next snapshot instead of handing it back to the kernel.

An attribution allocates and frees some 10 MB of temporary arrays (2,048 coalitions x 512 draws
on an 11-node graph). With glibc's default settings the freed top of the heap is returned to the
kernel after every call and faulted in again, page by page, by the next: measured on the DoWhy
shop, 2,700 page faults and 5 ms of kernel time per attribution, as much as the arithmetic. A
fixed trim threshold of 64 MB (and a fixed mmap threshold of 16 MB, which also stops glibc from
moving the thresholds on its own) keeps that memory in the process: at most 64 MB of freed heap
stay resident.

This is a process setting, so it is made at the entry points (the command line, the benchmark
runner), never by the pure core. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
TRIM_BYTES = 64 << 20
"""Freed heap kept by the process before any is returned to the kernel."""
MMAP_BYTES = 16 << 20
"""Allocations at least this large get their own mapping (returned when freed)."""


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds (see the module); ``True`` if they were set.

    Calling it again changes nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trim = mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES)
    mmap = mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)
    return bool(trim and mmap)

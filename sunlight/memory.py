"""Keeping a long-running service's memory flat: large freed blocks go back to the system.

glibc's malloc serves blocks above a threshold with their own ``mmap``, returned on ``free`` —
but it raises that threshold each time such a block is freed (up to 32 MiB), after which the
same megabyte-sized blocks (a rebuilt station list, its JSON and gzip, a map page; a batch's
COPY buffer) come from the heap, and freed heap is kept for reuse. A service that builds
them every minute then grows for many minutes, to the high-water mark of its concurrent builds,
and stays there. Fixing the thresholds makes such blocks come and go with the build.
"""

from __future__ import annotations

import ctypes
import logging

logger = logging.getLogger(__name__)

# glibc's <malloc.h> parameter numbers.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def return_large_blocks(threshold_kib: int) -> bool:
    """Serve blocks of ``threshold_kib`` and more by ``mmap`` and trim the heap's free top past
    the same size, for the rest of the process; 0 keeps the C library's own policy. False where
    the C library has no ``mallopt`` (not glibc) or refuses."""
    if threshold_kib <= 0:
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    size = threshold_kib * 1024
    applied = bool(mallopt(M_MMAP_THRESHOLD, size)) and bool(mallopt(M_TRIM_THRESHOLD, size))
    if not applied:
        logger.warning("the C library refused malloc thresholds of %d KiB", threshold_kib)
    return applied


def release_free_memory() -> bool:
    """Hand the C library's free pages back to the system now (glibc's ``malloc_trim``).

    What a rebuild frees is spread over the heaps of the threads that built it; Python keeps
    small objects in its own arenas and glibc keeps each thread heap's free pages, so without
    this a process keeps the high-water mark of every thread that ever built something. A few
    milliseconds; call it after a big build, not per request. False where there is none."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    return bool(trim(0)) if trim is not None else False

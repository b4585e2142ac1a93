"""Give the C heap's free pages back to the OS (glibc's ``malloc_trim``).

Why: a live worker's RSS was mostly its C heap (``[heap]`` 301 MB of 485 at 1M dossiers with
the disk store), about half of it free chunks glibc kept: RocksDB's block cache and memtables
churn through it, and so do Python's objects over 512 bytes (message buffers, dict tables).
glibc returns memory only from the top of the heap by itself; ``malloc_trim`` also releases
free pages in the middle (``madvise``). It costs ~30 ms per 400 MB of heap, so the worker calls
it on a timer, not per batch. Elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def _malloc_trim() -> Any:
    # the process's own symbols: glibc's when it is the C library
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def trim_heap() -> bool:
    """Release the C heap's free pages to the OS; False where there is no ``malloc_trim``."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True

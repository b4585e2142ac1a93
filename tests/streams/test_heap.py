"""streams.heap: free C-heap pages go back to the OS."""

from __future__ import annotations

import gc
import sys

import pytest

from streams.heap import trim_heap


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_free_pages_inside_the_heap_are_released() -> None:
    # objects over 512 bytes come from malloc; keeping one in 50 pins the heap's top, so
    # glibc cannot give the rest back by itself
    blocks = [bytes(2000) for _ in range(100_000)]
    kept = blocks[::50]
    del blocks
    gc.collect()
    before = rss_mb()
    assert trim_heap()
    after = rss_mb()
    assert before - after > 100, (before, after)
    assert len(kept) == 2000

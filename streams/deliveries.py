"""What the worker hands to aiokafka itself (changelog record batches, score, warning and DLQ
messages), and whether it was delivered.

faust commits input offsets right after flushing its producer, and aiokafka's ``flush`` waits
for every batch without raising for one that failed. The worker sends its changelogs and
outputs straight to aiokafka (faust's per-message path was too slow, and its ``Topic.send``
only logs a failed delivery), so nothing else sees those failures: without a check between
the flush and the commit, the offsets of events whose state or DLQ record never reached Kafka
would be committed, and the events lost at the next restart. ``checked_flush`` puts that
check in.
"""

from __future__ import annotations

from typing import Any


class Deliveries:
    """Delivery futures; ``raise_failed`` raises the first failure and forgets the rest done."""

    __slots__ = ("futures",)

    def __init__(self) -> None:
        self.futures: list[Any] = []

    def add(self, fut: Any) -> None:
        self.futures.append(fut)

    def raise_failed(self) -> None:
        for fut in self.futures:
            if fut.done() and not fut.cancelled() and fut.exception() is not None:
                raise fut.exception()
        self.futures = [fut for fut in self.futures if not fut.done()]


def checked_flush(producer: Any, *deliveries: Deliveries) -> None:
    """Make ``producer.flush`` (faust's, awaited before every offset commit) raise when one of
    ``deliveries`` failed: the commit does not happen, and the worker stops."""
    flush = producer.flush

    async def flush_then_check() -> None:
        await flush()
        for d in deliveries:
            d.raise_failed()

    producer.flush = flush_then_check

"""A consumer-group member's take-over of newly assigned partitions, that a Kafka outage
cannot stall.

The notifier and the signals service rebuild their state when partitions are assigned, from
aiokafka's rebalance listener: the rebuild reads Kafka (committed offsets, whole topics). If
it fails there, aiokafka only logs the exception; a service that waited for the rebuild to
finish would wait for ever, silently, while its heartbeats keep the partitions from anyone
else. Here the listener's failure is kept, and the loop takes the rebuild over: it puts back
what it fetched meanwhile and retries with back-off until it works or the service stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition

log = logging.getLogger(__name__)

Settle = Callable[[list[TopicPartition]], Awaitable[None]]


class Takeover:
    """``settle(assigned)`` run by the listener (``assigned``), and by the loop
    (``ready_for``) when it failed there."""

    def __init__(self, name: str, settle: Settle, max_delay: float = 10.0):
        self.name, self.settle, self.max_delay = name, settle, max_delay
        # clear while a rebalance (and the rebuild it starts) is in progress: aiokafka may hand
        # out records of a new assignment before the listener has finished
        self.settled = asyncio.Event()
        self.failed: list[TopicPartition] | None = None  # what the last settle left undone

    def revoked(self) -> None:
        self.settled.clear()

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        """The listener's part: never raises (aiokafka would only log it)."""
        try:
            await self.settle(assigned)
            self.failed = None
        except Exception as exc:  # noqa: BLE001 - the loop tries again (``ready_for``)
            log.error("%s: taking over %s failed (%s: %s); trying again", self.name,
                      sorted(map(str, assigned)), type(exc).__name__, exc)
            self.failed = list(assigned)
        finally:
            self.settled.set()

    async def ready_for(self, consumer: Any, batch: dict[TopicPartition, list[Any]],
                        stop: asyncio.Event) -> bool:
        """Whether the loop may handle ``batch``: after the listener's settle, if it worked.
        Else the batch is put back (read again once settled), the settle is retried here with
        back-off until it works or ``stop`` is set, and the answer is False."""
        if batch and not self.settled.is_set():
            await self.settled.wait()
        if self.failed is None:
            return True
        held = consumer.assignment()
        for tp, records in batch.items():
            if records and tp in held:
                consumer.seek(tp, records[0].offset)
        delay = min(0.5, self.max_delay)
        while self.failed is not None and not stop.is_set():
            assigned = [tp for tp in self.failed if tp in consumer.assignment()]
            try:
                await self.settle(assigned)
                self.failed = None
            except Exception as exc:  # noqa: BLE001 - retried; each failure is logged
                log.error("%s: taking over %s failed again (%s: %s); next try in %.1fs",
                          self.name, sorted(map(str, assigned)), type(exc).__name__, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, self.max_delay)
        return False

"""faust's aiokafka consumer with a batch path: fetched batches of the hot topics go straight to
a handler (``streams.app`` registers the scorer's), skipping faust's per-message delivery.

faust delivers a message through ``Service.wait_first`` (four tasks), a queue, sensors and a
per-event ack: ~100 us a message, which alone capped a worker near 5,000 events/s. Here each
fetched batch is handed over as aiokafka ``ConsumerRecord``s and its offsets are acked in bulk
into faust's own bookkeeping, so faust still commits (after flushing the producer). Relies on
faust-streaming 0.15's consumer internals (the version is pinned).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.futures import notify

from streams.positions import Positions

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 50  # faust hard-codes 1,500: see BatchConsumerThread

BatchHandler = Callable[[TP, list[Any]], Awaitable[None]]


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread with a short ``fetch_max_wait_ms``. aiokafka keeps one fetch in
    flight per broker, made of the partitions that have nothing buffered; when the worker is
    slow to drain a fetch (a loaded machine), the next one can hold only partitions with no
    traffic (faust's ``__assignor-__leader`` topic), which the broker holds for the full wait,
    and every other partition waits with it: the 1.5 s gaps that made the latency tail
    (docs/PERFORMANCE.md). The price of 50 ms: an idle worker sends 20 fetches a second."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # noqa: SLF001 - read by start()
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, except that records of the topics in its transport's
    ``batch_handlers`` skip faust's per-message path: each fetched batch goes to its handler as
    aiokafka ``ConsumerRecord``s, and the handler acks the offsets it has processed
    (``ack_offsets``). Offsets are committed by faust as for any acked message: every
    ``broker_commit_interval``, after flushing the producer. Relies on faust-streaming 0.15's
    consumer internals (the version is pinned).
    """

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        records, active = await super()._wait_next_records(timeout)
        handlers: dict[str, BatchHandler] = self.transport.batch_handlers
        if not records or not handlers or not self.flow_active:
            return records, active
        for tp in [tp for tp in records if tp.topic in handlers]:
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue  # paused: faust drops these too
            batch = records.pop(tp)
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            await handlers[tp.topic](TP(tp.topic, tp.partition), batch)
        return records, active

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the next offset to process per partition of a batch topic (``streams.positions``);
        # not faust's ``_read_offset``, which a batch moves before it is processed
        self.positions = Positions()

    async def perform_seek(self) -> None:
        """faust's seek to committed offsets, plus: partitions with nothing committed yet go
        back to their beginning. Records fetched while a rebalance stops the flow are dropped
        on the promise that this seek re-reads them, but aiokafka's ``seek_to_committed``
        leaves a partition with no commit (or a commit of 0) where the fetcher got to, so a
        brand-new group lost the events that arrived while it formed. Re-reading is safe:
        state is idempotent."""
        await super().perform_seek()
        handlers: dict[str, BatchHandler] = self.transport.batch_handlers
        mine = [tp for tp in self.assignment() if tp.topic in handlers]
        fresh = [tp for tp in mine if not self._read_offset.get(tp)]
        where: dict[TP, int | None] = {tp: self._read_offset.get(tp) for tp in mine}
        if fresh:
            await self._thread.seek_to_beginning(
                *(TopicPartition(tp.topic, tp.partition) for tp in fresh))
            earliest = await self._thread.earliest_offsets(*fresh)
            for tp in fresh:
                self._read_offset[tp] = None
                where[tp] = earliest.get(tp)
            log.info("no committed offset: reading %s from the beginning",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in fresh))
        self.positions.reset(where)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.positions.forget(revoked)
        await super().on_partitions_revoked(revoked)

    def still_current(self, generation_id: int) -> bool:
        """False once a rebalance started: records fetched before it must not be processed
        (the partition is re-read from its committed offset)."""
        return (self.flow_active and self.app.flow_control.is_active()
                and self.app.consumer_generation_id == generation_id)

    async def new_records(self, tp: TP, records: list[Any]) -> list[Any]:
        """The records of a fetched batch to process: from the next offset to process on,
        never past an offset not seen (``streams.positions``: a batch fetched before a seek
        can start past it; taken, faust committed past events never processed)."""
        verdict = self.positions.admit(tp, [r.offset for r in records])
        if verdict.reseek is not None:
            log.info("%s[%d]: fetched batch starts at %d, next to process is %d: reading "
                     "again from there", tp.topic, tp.partition, records[0].offset,
                     verdict.reseek)
            with contextlib.suppress(IllegalStateError):  # revoked meanwhile: its next seek
                await self.seek(tp, verdict.reseek)
            return []
        for first, last in verdict.gaps:
            await self._add_gap(tp, first, last)  # faust's gap interval includes its end
        return records[verdict.start:]

    def ack_offsets(self, tp: TP, offsets: list[int]) -> None:
        """``Consumer.ack`` for many offsets of one partition (no ``Message`` objects), in
        order, once processed: the next offset to process moves past them."""
        committed = self._committed_offset[tp]
        acked_index = self._acked_index[tp]
        acked = self._acked[tp]
        n = 0
        for offset in offsets:
            if (committed is None or offset >= committed) and offset not in acked_index:
                acked_index.add(offset)
                acked.append(offset)
                n += 1
        if offsets:
            self.positions.processed(tp, offsets[-1])
        self._n_acked += n
        notify(self._waiting_for_ack)


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}

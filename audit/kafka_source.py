"""Reads history straight from the Kafka broker (the ``Source`` contract of ``audit.sources``).

The reader has **no group id**: it assigns partitions and seeks, so it never joins,
rebalances or commits for any consumer group, and it only reads. Live workers are untouched.
aiokafka is imported only where the broker is contacted, so importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from audit.exceptions import AuditError
from audit.sources import Record
from bando.kafka_auth import client_kwargs
from bando.settings import Settings

log = logging.getLogger(__name__)


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()


class KafkaSource:
    """Reads topics from the broker up to their end *at the start of the read*.

    aiokafka is asynchronous; the audit tools are plain batch programs. So the consumer runs
    in its own thread and event loop and hands over batches through a small bounded queue:
    reading the next batch overlaps with scoring the previous one.
    """

    def __init__(self, bootstrap: str, *, batch: int = 5000, security: dict[str, Any] | None = None,
                 idle_timeout_s: float = 30.0):
        self.bootstrap = bootstrap
        self.batch = batch
        self.security = dict(security or {})
        self.idle_timeout_s = idle_timeout_s
        self.name = f"kafka://{bootstrap}"
        self._topics: set[str] | None = None

    def _consumer(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", client_id="bando-audit",
            max_poll_records=self.batch, **self.security)

    async def _started(self) -> Any:
        consumer = self._consumer()
        try:
            await consumer.start()
        except BaseException:
            # a consumer whose start failed (no broker) still holds its client: stopped here,
            # or it is reported as unclosed when collected, after the real error
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        return consumer

    def has_topic(self, topic: str) -> bool:
        if self._topics is None:
            async def names() -> set[str]:
                consumer = await self._started()
                try:
                    return set(await consumer.topics())
                finally:
                    await consumer.stop()
            self._topics = _in_thread(names())
        return topic in self._topics

    def read(self, topic: str, since_ms: int | None = None, until_ms: int | None = None,
             start_offsets: Mapping[int, int] | None = None) -> Iterator[list[Record]]:
        q: queue.Queue[Any] = queue.Queue(maxsize=4)
        stop = threading.Event()

        def pump() -> None:
            try:
                asyncio.run(self._pump(topic, since_ms, until_ms, start_offsets, q, stop))
            except BaseException as exc:  # handed to the reading thread
                _put(q, _Failed(exc), stop)
            else:
                _put(q, _DONE, stop)

        thread = threading.Thread(target=pump, name="bando-audit-kafka", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failed):
                    if isinstance(item.exc, AuditError):
                        raise item.exc
                    raise AuditError(f"{self.name}: reading {topic!r} failed: "
                                     f"{item.exc!r}") from item.exc
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    q.get(timeout=0.1)
            thread.join()

    async def _pump(self, topic: str, since_ms: int | None, until_ms: int | None,
                    start_offsets: Mapping[int, int] | None, q: queue.Queue[Any],
                    stop: threading.Event) -> None:
        from aiokafka import TopicPartition

        consumer = await self._started()
        try:
            # aiokafka has no public "partitions of a topic" that fetches metadata first
            cluster = await consumer._client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(topic)
            if not parts:
                raise AuditError(f"{self.name}: no topic {topic!r}")
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            start = {tp: max(begin[tp], dict(start_offsets or {}).get(tp.partition, 0))
                     for tp in tps}
            stop_at = dict(end)
            if since_ms is not None:
                found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
                for tp in tps:
                    at = found.get(tp)
                    start[tp] = max(start[tp], at.offset if at is not None else end[tp])
            if until_ms is not None:
                found = await consumer.offsets_for_times({tp: until_ms + 1 for tp in tps})
                for tp in tps:
                    at = found.get(tp)
                    if at is not None:
                        stop_at[tp] = min(stop_at[tp], at.offset)
            active = {tp for tp in tps if start[tp] < stop_at[tp]}
            for tp in active:
                consumer.seek(tp, start[tp])
            log.debug("reading %s: %s", topic,
                      {tp.partition: (start[tp], stop_at[tp]) for tp in tps})
            last_progress = time.monotonic()
            while active and not stop.is_set():
                got = await consumer.getmany(*active, timeout_ms=500, max_records=self.batch)
                batch: list[Record] = []
                for tp, msgs in got.items():
                    for m in msgs:
                        if m.offset >= stop_at[tp]:
                            break
                        batch.append(Record(topic, tp.partition, m.offset, m.timestamp,
                                            m.key, m.value))
                for tp in list(active):
                    if await consumer.position(tp) >= stop_at[tp]:
                        active.discard(tp)
                if batch:
                    last_progress = time.monotonic()
                    _put(q, batch, stop)
                elif time.monotonic() - last_progress > self.idle_timeout_s:
                    raise AuditError(f"{self.name}: {topic!r} stalled before its end offsets")
        finally:
            await consumer.stop()


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def _in_thread(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even when called inside a running loop."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise AuditError(f"Kafka request failed: {box['error']!r}") from box["error"]
    return box["value"]


def security_of(settings: Settings) -> dict[str, Any]:
    """The client options of every Bando client (``bando.kafka_auth``): the audit tools read
    the same secured cluster as the worker, with the same mechanism (SCRAM by default)."""
    try:
        return client_kwargs(settings)
    except ValueError as exc:  # a setting the broker would refuse: say which, not a timeout
        raise AuditError(f"Kafka security settings: {exc}") from exc

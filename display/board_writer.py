"""The board writer: ``unit-scores``, ``rank-changes``, ``band-changes`` -> the board in Redis.

It reads every partition of the three topics itself (no consumer group) and keeps its position
in Redis, written in the same transaction as the rows (see ``display.store``). That is what lets
it catch up alone:

* Kafka away: the consumer keeps retrying; nothing is written, the position does not move.
* Redis away: the batch fails, the writer waits for Redis, then rewinds every partition to the
  position Redis holds and reads the lost batch again (writes are idempotent).
* Redis back *empty*: its epoch key is gone, so the writer rewinds to the beginning of the
  topics and rebuilds the board, marked as catching up (``display.catchup``) until it has read
  as far as the topics reached when it began: screens must not take months-old boards, shown
  one after the other, for the current one.
* Back after a long outage (of the writer, Kafka or Redis) with a backlog of more than
  ``catchup_lag`` messages: marked as catching up the same way, for the same reason.

Several writers may run at once (for availability): each reads everything, and the optimistic
transaction makes their writes commute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bando import metrics
from display import board, catchup, store
from display.exceptions import BadMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterConfig:
    bootstrap: str
    redis_url: str = field(repr=False)  # may hold a password
    topics: dict[str, str]  # board.SCORE/RANK/BAND -> topic name
    prefix: str = store.DEFAULT_PREFIX
    redis_password: str = field(default="", repr=False)  # secrets stay out of logs
    batch_max: int = 500
    poll_ms: int = 500
    metadata_interval: float = 10.0  # seconds between checks for new topics/partitions
    retry_max: float = 5.0  # ceiling of the back-off while Redis or Kafka is away
    epoch_interval: float = 1.0  # seconds between checks, while idle, that Redis kept the board
    lag_interval: float = 5.0  # seconds between lag checks (the gauge and the catch-up mark)
    # messages the board may be behind the topics, in all, before screens are told it is
    # catching up: a re-scoring of the whole catalog publishes ~600, a long outage far more
    catchup_lag: int = 2_000
    client_id: str = "bando-board"
    # aiokafka connection options for a secured cluster (bando.kafka_auth.client_kwargs)
    kafka_security: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class WriterStats:
    batches: int = 0
    messages: int = 0
    changes: int = 0  # rows a screen sees differently
    stored: int = 0  # rows written (a re-published copy of a score too)
    bad: int = 0
    rewinds: int = 0
    last_error: str = ""
    assigned: list[str] = field(default_factory=list)


class BoardWriter:
    """Runs until ``stop`` is set; :meth:`run` never returns on a transient outage."""

    def __init__(self, config: WriterConfig, redis: Redis | None = None):
        self.config = config
        self.keys = store.Keys(config.prefix)
        self.redis = redis or store.connect(config.redis_url, config.redis_password)
        self.kind_of = {topic: kind for kind, topic in config.topics.items()}
        self.stats = WriterStats()
        self._token = uuid.uuid4().hex
        self._assigned: set[TopicPartition] = set()
        self._bad_logged = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        clients = await self._start_clients(stop)
        if clients is None:
            await self.redis.aclose()
            return
        consumer, admin = clients
        try:
            await self._loop(consumer, admin, stop)
        finally:
            await consumer.stop()
            await admin.close()
            await self.redis.aclose()

    async def _start_clients(
        self, stop: asyncio.Event
    ) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient] | None:
        delay = 0.5
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.config.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id=self.config.client_id,
                max_poll_records=self.config.batch_max,
                **self.config.kafka_security,
            )
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.config.bootstrap, client_id=self.config.client_id,
                **self.config.kafka_security,
            )
            try:
                await consumer.start()
                await admin.start()
                log.info("board writer connected to Kafka at %s", self.config.bootstrap)
                return consumer, admin
            except KafkaError as exc:
                self._note(f"Kafka not reachable: {exc!r}")
                await consumer.stop()
                await admin.close()
                await _sleep(stop, delay)
                delay = min(delay * 2, self.config.retry_max)
        return None

    async def _loop(
        self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient, stop: asyncio.Event
    ) -> None:
        need_sync = True
        next_meta = 0.0
        next_lag = 0.0
        next_epoch = 0.0
        delay = 0.2
        while not stop.is_set():
            try:
                if time.monotonic() >= next_meta:
                    if await self._refresh_assignment(consumer, admin):
                        need_sync = True
                    next_meta = time.monotonic() + self.config.metadata_interval
                if not self._assigned:
                    await _sleep(stop, 1.0)
                    continue
                if need_sync:
                    await self._sync(consumer)
                    need_sync = False
                batch = await consumer.getmany(
                    timeout_ms=self.config.poll_ms, max_records=self.config.batch_max
                )
                if batch:
                    await self._write(batch)
                elif time.monotonic() >= next_epoch:
                    # a write notices an emptied Redis by itself; an idle writer must look,
                    # or screens show an empty board until the next score is published
                    next_epoch = time.monotonic() + self.config.epoch_interval
                    await store.check_epoch(self.redis, self.keys)
                    await self._settle_catchup(consumer)
                if time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + self.config.lag_interval
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(metrics.update_consumer_lag(consumer), 2.0)
                    try:
                        await self._check_catchup(consumer, timeout=2.0)
                    except (TimeoutError, KafkaError) as exc:
                        # Kafka slow or away: the next check sees the same backlog, if any
                        log.debug("catch-up check skipped: %r", exc)
                delay = 0.2
            except store.BoardLost as exc:
                log.warning("%s: rebuilding the board from the topics", exc)
                need_sync = True
            except (RedisError, OSError, KafkaError) as exc:
                self._note(f"{type(exc).__name__}: {exc}")
                need_sync = True  # the failed batch is read again from Redis's position
                await _sleep(stop, delay)
                delay = min(delay * 2, self.config.retry_max)

    async def _refresh_assignment(
        self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient
    ) -> bool:
        """Assign every partition of the topics that exist now; True if that changed."""
        tps: set[TopicPartition] = set()
        for t in await admin.describe_topics(list(self.config.topics.values())):
            if t.get("error_code") == 0:
                tps.update(TopicPartition(t["topic"], p["partition"]) for p in t["partitions"])
        if tps == self._assigned:
            return False
        missing = [t for t in self.config.topics.values() if all(tp.topic != t for tp in tps)]
        if missing:
            log.info("waiting for topics to exist: %s", ", ".join(missing))
        consumer.assign(sorted(tps))
        self._assigned = tps
        self.stats.assigned = sorted(f"{tp.topic}/{tp.partition}" for tp in tps)
        return True

    async def _sync(self, consumer: AIOKafkaConsumer) -> None:
        """Put every partition at the position Redis holds (the beginning if none)."""
        offsets = await store.read_offsets(self.redis, self.keys)
        await store.ensure_epoch(self.redis, self.keys, self._token)
        fresh = []
        for tp in sorted(self._assigned):
            pos = offsets.get((tp.topic, tp.partition))
            if pos is None:
                fresh.append(tp)
            else:
                consumer.seek(tp, pos)
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        # before the first batch: screens are told before history starts moving
        await self._check_catchup(consumer, fresh)
        self.stats.rewinds += 1
        log.info(
            "board writer positioned: %d partitions from Redis, %d from the beginning",
            len(self._assigned) - len(fresh),
            len(fresh),
        )

    async def _check_catchup(
        self,
        consumer: AIOKafkaConsumer,
        fresh: list[TopicPartition] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """Mark the board as catching up if it replays history: partitions read from their
        beginning (``fresh``; empty ones have nothing to replay), or a backlog above
        ``catchup_lag``. Drop targets that a recreated topic put out of reach (``timeout``
        bounds the end-offsets request; see :mod:`display.catchup` for the rule)."""
        marked = await catchup.read_catchup(self.redis, self.keys)  # before the ends
        ends = _keyed(
            await asyncio.wait_for(consumer.end_offsets(sorted(self._assigned)), timeout)
        )
        dropped = catchup.unreachable(marked, ends)
        if dropped and await catchup.drop_targets(self.redis, self.keys, dropped):
            log.warning(
                "catch-up targets past their partition's end dropped (topic recreated?): %s",
                _positions_text(dropped),
            )
        stored = await store.read_offsets(self.redis, self.keys)
        targets = catchup.lag_targets(ends, stored, self.config.catchup_lag)
        if fresh:
            starts = _keyed(await consumer.beginning_offsets(fresh))
            targets.update({tp: ends[tp] for tp, start in starts.items() if ends[tp] > start})
        if targets and await catchup.mark_catchup(self.redis, self.keys, targets):
            log.info("board marked as catching up until %s", _positions_text(targets))

    async def _settle_catchup(self, consumer: AIOKafkaConsumer) -> None:
        """An idle writer stores its positions while the board is marked as catching up.

        Its rows are written up to them, and they may be past the last record's offset + 1 that
        batches store (transaction markers, compaction): the mark would never end. They also end
        a catch-up that a writer which died mid-rebuild left on partitions with no new record.
        """
        targets = await catchup.read_catchup(self.redis, self.keys)
        if not targets:
            return
        stored = await store.read_offsets(self.redis, self.keys)
        positions: dict[tuple[str, int], int] = {}
        for topic, part in targets:
            tp = TopicPartition(topic, part)
            if tp in self._assigned:
                pos = await consumer.position(tp)
                if pos > stored.get((topic, part), -1):  # another writer may be further on
                    positions[(topic, part)] = pos
        if positions:
            await store.apply_batch(self.redis, self.keys, [], positions)

    async def _write(self, batch: dict[TopicPartition, list]) -> None:
        items: list[store.Item] = []
        offsets: dict[tuple[str, int], int] = {}
        for tp, records in batch.items():
            kind = self.kind_of.get(tp.topic)
            for rec in records:
                offsets[(tp.topic, tp.partition)] = rec.offset + 1
                if kind is None or rec.value is None:
                    continue
                try:
                    msg = board.check(kind, orjson.loads(rec.value))
                except (BadMessage, orjson.JSONDecodeError) as exc:
                    self._bad(tp, rec.offset, exc)
                    continue
                items.append(store.Item(kind, msg, int(rec.timestamp or 0)))
        result = await store.apply_batch(self.redis, self.keys, items, offsets)
        self.stats.batches += 1
        self.stats.messages += len(items)
        self.stats.changes += result.changed
        self.stats.stored += result.stored
        metrics.BOARD_UPDATES.inc(result.stored)
        log.debug("batch: %d messages, %d rows changed", len(items), result.changed)

    def _bad(self, tp: TopicPartition, offset: int, exc: Exception) -> None:
        self.stats.bad += 1
        now = time.monotonic()
        if now - self._bad_logged > 10:  # a flood of bad messages must not flood the log
            self._bad_logged = now
            log.warning(
                "skipped a message the board cannot use at %s/%d@%d: %s (%d so far)",
                tp.topic,
                tp.partition,
                offset,
                exc,
                self.stats.bad,
            )

    def _note(self, error: str) -> None:
        if error != self.stats.last_error:
            log.warning("board writer waiting: %s", error)
        self.stats.last_error = error


def _keyed(offsets: dict[TopicPartition, int]) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): o for tp, o in offsets.items()}


def _positions_text(positions: dict[tuple[str, int], int]) -> str:
    return ", ".join(f"{t}/{p}@{o}" for (t, p), o in sorted(positions.items()))


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)

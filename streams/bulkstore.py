"""Table recovery in bulk: faust's memory store, filled from the changelog by a plain consumer.

Why: faust's Recovery service replays a changelog one record at a time (a task per record in
``Service.wait_first``, an ``asyncio.wait_for`` per record, per-record events and callbacks):
with 1M open dossiers (2M+ changelog records) a restarted worker spent minutes there before
processing again. Here, when a changelog partition becomes active on this worker, the store
reads it itself with an ``AIOKafkaConsumer`` (seek to the beginning, large ``getmany`` batches
up to the end offset read at the start), decodes the records with orjson straight into the
dict, and tells faust through ``persisted_offset`` where it stopped; faust's Recovery then
replays only what came after (usually nothing).

Order (faust-streaming 0.15, ``TableManager.on_rebalance``): every table's ``on_rebalance`` is
awaited before ``Recovery.on_rebalance`` asks each table for ``persisted_offset`` of its
assigned changelog partitions, so the offsets reported are those of the load just done.

Semantics are those of faust's memory store: the latest record of a key wins, a record with a
null value (tombstone) removes the key, keys remember their partition so that keys of
partitions no longer active are dropped when recovery completes (``memory.Store``), and
standby partitions are left to faust (they are read after processing resumes).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores import memory
from faust.tables.table import Table
from faust.types import TP
from faust.types.enums import ProcessingGuarantee
from yarl import URL

log = logging.getLogger(__name__)

FETCH_MAX_BYTES = 64 * 1024 * 1024  # few round trips: a changelog of 1M dossiers is ~400 MB
PARTITION_FETCH_BYTES = 16 * 1024 * 1024


def _is_json(serializer: Any, default: Any) -> bool:
    return (serializer or default) == "json"


class BulkMemoryStore(memory.Store):
    """``faust.stores.memory.Store`` whose newly active changelog partitions are loaded in bulk.

    ``loader`` holds the ``AIOKafkaConsumer`` connection arguments (``bootstrap_servers`` and
    ``bando.kafka_auth.client_kwargs``): it carries credentials, so it is never logged.
    """

    def __init__(self, url: str | URL, app: Any, table: Any, *, loader: Mapping[str, Any],
                 **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self._loader = dict(loader)
        self._actives: set[TP] = set()  # active changelog partitions of the last rebalance
        self._loaded: dict[TP, int] = {}  # last offset loaded, for this rebalance only
        conf = app.conf
        # orjson gives what faust's "json" codec gives (json.loads, then a faust Model only for
        # a dict carrying "__faust"); other serializers or typed keys/values go through faust
        self._fast = (self.key_type is None and self.value_type is None
                      and _is_json(self.key_serializer, conf.key_serializer)
                      and _is_json(self.value_serializer, conf.value_serializer))

    def persisted_offset(self, tp: TP) -> int | None:
        # None for partitions kept from the previous assignment: faust's Recovery keeps its own
        # offset for them (the dict already holds what it read and what this worker wrote).
        return self._loaded.get(tp)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        topic = self.table.changelog_topic.get_topic_name()
        actives = {tp for tp in self.app.assignor.assigned_actives() if tp.topic == topic}
        # Not ``newly_assigned``: a standby partition that becomes active stays assigned to the
        # consumer, yet its active state must be complete now.
        new = actives - self._actives
        self._actives = actives
        self._loaded = {}
        if not new:
            return
        try:
            self._loaded = await self.bulk_load(new)
        except Exception:
            # faust's Recovery replays these partitions from the beginning over whatever was
            # loaded: slower, same result
            log.exception("bulk load of %s failed; faust's recovery replays it", topic)

    async def bulk_load(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Read ``tps`` from their beginning to their end offset (read first) into the dict;
        return, per partition, the offset of the last record before that end (-1 if none)."""
        tps = sorted(tps)
        started = time.perf_counter()
        guarantee = self.app.conf.processing_guarantee
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
            fetch_max_bytes=FETCH_MAX_BYTES, max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            # as faust's consumer reads them: aborted writes are skipped only with exactly-once
            isolation_level=("read_committed" if guarantee == ProcessingGuarantee.EXACTLY_ONCE
                             else "read_uncommitted"),
            **self._loader)
        await consumer.start()
        enabled = gc.isenabled()
        # A million new dicts would run the cyclic collector over the growing heap many times.
        gc.disable()
        n = 0
        try:
            parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            await consumer.seek_to_beginning(*parts)
            todo = set()
            for part in parts:
                if await consumer.position(part) < ends[part]:
                    todo.add(part)
                else:
                    consumer.pause(part)
            while todo:
                batches = await consumer.getmany(*todo, timeout_ms=1000)
                for part, records in batches.items():
                    n += self._apply(part.partition, records, ends[part])
                for part in list(todo):
                    # position, not the last offset seen: compaction and transaction markers
                    # leave offsets that are never delivered, the last ones included
                    if await consumer.position(part) >= ends[part]:
                        todo.discard(part)
                        consumer.pause(part)
        finally:
            if enabled:
                gc.enable()
            await consumer.stop()
        log.info("%s: loaded %d changelog records of partitions %s in %.1fs",
                 self.table_name, n, [tp.partition for tp in tps], time.perf_counter() - started)
        return {TP(p.topic, p.partition): ends[p] - 1 for p in parts}

    def _apply(self, partition: int, records: list[Any], end: int) -> int:
        data = self.data
        where = self._key_partition
        fast = self._fast
        loads = orjson.loads
        to_key = self.table._to_key  # noqa: SLF001 - what faust's recovery applies to keys
        n = 0
        for record in records:
            if record.offset >= end:
                break  # written after the end was read: faust's Recovery replays it
            raw_key, raw_value = record.key, record.value
            if raw_key is None:
                continue  # faust never writes a table record without a key
            key = value = None
            if fast:
                try:
                    key = loads(raw_key)
                    if raw_value is not None:
                        value = loads(raw_value)
                except orjson.JSONDecodeError:
                    fast = False  # e.g. NaN: Python's json writes it, orjson refuses it
            # a dict carrying "__faust" is what faust's codec turns into a faust.Record
            if not fast or type(key) is dict or (type(value) is dict and "__faust" in value):
                key = self._decode_key(raw_key)
                value = None if raw_value is None else self._decode_value(raw_value)
                fast = self._fast
            if type(key) is list:
                key = to_key(key)
            if raw_value is None:
                data.pop(key, None)
                where.pop(key, None)
            else:
                data[key] = value
                where[key] = partition
            n += 1
        return n


class BulkTable(Table):
    """A faust ``Table`` kept in a ``BulkMemoryStore`` (the app's store must be memory://).

    Declared through ``app.tables.add`` instead of a store URL: faust finds stores by URL
    scheme in a process-wide registry, and registering one there would change every app.
    """

    def __init__(self, app: Any, *, loader: Mapping[str, Any], **kwargs: Any) -> None:
        self._loader = dict(loader)
        super().__init__(app, **kwargs)

    def info(self) -> Mapping[str, Any]:
        return {**super().info(), "loader": self._loader}

    def _new_store_by_url(self, url: str | URL) -> Any:
        if URL(url).scheme != "memory":
            raise ValueError(f"BulkTable {self.name} keeps its state in memory, not {url}")
        return BulkMemoryStore(
            url, self.app, self, table_name=self.name, key_type=self.key_type,
            key_serializer=self.key_serializer, value_serializer=self.value_serializer,
            value_type=self.value_type, loop=self.loop, options=self.options,
            loader=self._loader)


def bulk_table(app: Any, name: str, loader: Mapping[str, Any], **kwargs: Any) -> BulkTable:
    """``app.Table(name, **kwargs)`` for a ``BulkTable``."""
    table = BulkTable(app, name=name, beacon=app.tables.beacon, loader=loader, **kwargs)
    app.tables.add(table)
    return table

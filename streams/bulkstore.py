"""Table recovery in bulk: faust's memory store, filled from the changelog by a plain consumer.

Why: faust's Recovery service replays a changelog one record at a time (a task per record in
``Service.wait_first``, an ``asyncio.wait_for`` per record, per-record events and callbacks):
with 1M open dossiers (2M+ changelog records) a restarted worker spent minutes there before
processing again. Here the changelog partitions that became active on this worker are read
with one ``AIOKafkaConsumer`` (from the beginning, large ``getmany`` batches, up to faust's own
highwater), decoded with orjson straight into the tables' dicts, and faust's Recovery is told
that it starts reading at the last offset loaded: it replays only what came after (nothing,
unless the load ran out of time, see ``LOAD_SHARE_OF_TIMEOUT``).

Where (faust-streaming 0.15, pinned): in ``Recovery._build_offsets`` for the active partitions.
Not in ``Store.on_rebalance``: that runs inside the consumer's rebalance callback, during which
aiokafka sends no heartbeats, so a load longer than the session timeout (6 s) got the worker
expelled from the group. The Recovery service runs after the callback, heartbeats going on.

Semantics are those of faust's memory store: the latest record of a key wins, a record with a
null value (tombstone) removes the key, keys remember their partition so that keys of
partitions no longer active are dropped when recovery completes (``memory.Store``), and
standby partitions are left to faust (it reads them after processing has resumed).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores import memory
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.tables.table import Table
from faust.types import TP
from faust.types.enums import ProcessingGuarantee
from yarl import URL

from streams.diskstore import BulkRocksStore

log = logging.getLogger(__name__)

FETCH_MAX_BYTES = 64 * 1024 * 1024  # few round trips: a changelog of 1M dossiers is ~400 MB
PARTITION_FETCH_BYTES = 16 * 1024 * 1024
SLICE = 20_000  # records applied between two returns to the event loop
# faust gives each recovery step broker_request_timeout (90 s) and stops its Recovery service
# for good when one overruns; the load stops earlier and faust replays the rest of the records.
LOAD_SHARE_OF_TIMEOUT = 0.6


def _is_json(serializer: Any, default: Any) -> bool:
    return (serializer or default) == "json"


class BulkMemoryStore(memory.Store):
    """``faust.stores.memory.Store`` that ``BulkRecovery`` fills in bulk.

    ``loader`` holds the ``AIOKafkaConsumer`` connection arguments (``bootstrap_servers`` and
    ``bando.kafka_auth.client_kwargs``): it carries credentials, so it is never logged.
    """

    def __init__(self, url: str | URL, app: Any, table: Any, *, loader: Mapping[str, Any],
                 **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self.loader = loader
        self.pending: set[TP] = set()  # active changelog partitions still to be loaded
        self._actives: set[TP] = set()  # active changelog partitions of the last rebalance
        conf = app.conf
        # orjson gives what faust's "json" codec gives (json.loads, then a faust Model only for
        # a dict carrying "__faust"); other serializers or typed keys/values go through faust
        self._fast = (self.key_type is None and self.value_type is None
                      and _is_json(self.key_serializer, conf.key_serializer)
                      and _is_json(self.value_serializer, conf.value_serializer))

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        topic = self.table.changelog_topic.get_topic_name()
        actives = {tp for tp in self.app.assignor.assigned_actives() if tp.topic == topic}
        # Not ``newly_assigned``: a standby partition that becomes active stays assigned to the
        # consumer, yet its active state must be complete now. Partitions kept from the last
        # rebalance are not loaded again: faust's Recovery keeps its offset for them (the dict
        # holds what was read and what this worker wrote since).
        self.pending = (self.pending & actives) | (actives - self._actives)
        self._actives = actives

    def apply(self, partition: int, records: list[Any], end: int) -> int:
        """Apply changelog records (aiokafka ``ConsumerRecord``s) of offsets below ``end``."""
        data = self.data
        where = self._key_partition
        fast = self._fast
        loads = orjson.loads
        to_key = self.table._to_key  # noqa: SLF001 - what faust's recovery applies to keys
        n = 0
        for record in records:
            if record.offset >= end:
                break  # after faust's highwater: faust's Recovery replays it
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


async def load_changelogs(targets: Mapping[TP, Any], ends: Mapping[TP, int],
                          client: Mapping[str, Any], deadline: float,
                          isolation_level: str = "read_uncommitted",
                          starts: Mapping[TP, int] | None = None) -> dict[TP, int]:
    """Read each partition of ``targets`` from its beginning (or ``starts[tp]``) up to
    ``ends[tp]`` (exclusive) into its store (``BulkMemoryStore`` or
    ``streams.diskstore.BulkRocksStore``: ``apply(partition, records, end)``), until
    ``time.monotonic()`` passes ``deadline``; return per partition the offset up to which it
    was read, minus one (faust's "persisted offset")."""
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
        fetch_max_bytes=FETCH_MAX_BYTES, max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        # stop() waits for the fetch in flight, which the broker holds this long when there
        # is nothing more to read (the default 500 ms cost ~0.8 s)
        fetch_max_wait_ms=100, isolation_level=isolation_level, **client)
    parts = {TopicPartition(tp.topic, tp.partition): tp for tp in targets}
    counts: Counter[Any] = Counter()
    read: dict[TP, int] = {}
    enabled = gc.isenabled()
    # A million new dicts would run the cyclic collector over the growing heap many times.
    gc.disable()
    try:
        await consumer.start()
        consumer.assign(list(parts))
        await consumer.seek_to_beginning(*parts)
        for part, tp in parts.items():
            if starts and starts.get(tp):
                consumer.seek(part, starts[tp])
        todo: set[TopicPartition] = set()
        for part, tp in parts.items():
            if await consumer.position(part) < ends[tp]:
                todo.add(part)
            else:
                consumer.pause(part)
        while todo and time.monotonic() < deadline:
            batches = await consumer.getmany(*todo, timeout_ms=500)
            for part, records in batches.items():
                tp = parts[part]
                store = targets[tp]
                for i in range(0, len(records), SLICE):
                    counts[store] += store.apply(tp.partition, records[i:i + SLICE], ends[tp])
                    await asyncio.sleep(0)  # heartbeats, timers
            for part in list(todo):
                # position, not the last offset seen: compaction and transaction markers
                # leave offsets that are never delivered, the last ones included
                if await consumer.position(part) >= ends[parts[part]]:
                    todo.discard(part)
                    consumer.pause(part)
        for part, tp in parts.items():
            read[tp] = min(await consumer.position(part), ends[tp]) - 1
    finally:
        if enabled:
            gc.enable()
        # the tables are long-lived: the first collections after this would otherwise scan
        # every object just loaded (they were all young)
        gc.freeze()
        await consumer.stop()
    elapsed = time.perf_counter() - started
    for store in dict.fromkeys(targets.values()):
        log.info("%s: loaded %d changelog records of partitions %s (bulk recovery: %.1fs)",
                 store.table_name, counts[store],
                 sorted(tp.partition for tp, s in targets.items() if s is store), elapsed)
    if todo:
        log.warning("bulk recovery stopped after %.0fs; faust replays the rest of %s", elapsed,
                    sorted(f"{p.topic}[{p.partition}]" for p in todo))
    return read


class BulkRecovery(Recovery):
    """faust's Recovery, except that active partitions of ``BulkMemoryStore`` tables that became
    active are loaded in bulk before it computes where its own reading starts."""

    async def _build_offsets(self, consumer: Any, tps: set[TP], destination: Counter[TP],
                             title: str) -> None:
        if title == "active":
            await self._bulk_load(tps, destination)
        await super()._build_offsets(consumer, tps, destination, title)

    async def _bulk_load(self, tps: set[TP], destination: Counter[TP]) -> None:
        targets: dict[TP, Any] = {}
        starts: dict[TP, int] = {}
        for tp in tps:
            table = self.tp_to_table.get(tp)
            store = table.data if table is not None else None
            # the highwaters were built just before: the load stops where faust would stop
            highwater = self.active_highwaters.get(tp)
            if highwater is None:
                continue
            if isinstance(store, BulkMemoryStore) and tp in store.pending:
                targets[tp] = store
            elif isinstance(store, BulkRocksStore):
                # a disk store keeps what it applied: only the tail after it is read
                starts[tp] = store.bulk_start(tp, destination.get(tp))
                if starts[tp] <= highwater:
                    targets[tp] = store
        if not targets:
            return
        conf = self.app.conf
        deadline = time.monotonic() + LOAD_SHARE_OF_TIMEOUT * conf.broker_request_timeout
        exactly_once = conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE
        loader = next(iter(targets.values())).loader  # one app, one cluster
        try:
            read = await load_changelogs(
                targets, {tp: self.active_highwaters[tp] + 1 for tp in targets}, loader,
                deadline,
                # as faust's consumer reads them: aborted writes are skipped only with
                # exactly-once
                "read_committed" if exactly_once else "read_uncommitted", starts)
        except Exception:
            # faust replays these partitions from their beginning over what was loaded: the
            # same state, only slower
            log.exception("bulk recovery failed; faust's recovery replays %d partitions",
                          len(targets))
            return
        for tp, offset in read.items():
            if isinstance(targets[tp], BulkRocksStore):
                targets[tp].set_persisted_offset(tp, offset)
            else:
                targets[tp].pending.discard(tp)
            previous = destination.get(tp)
            destination[tp] = offset if previous is None else max(previous, offset)


class BulkTableManager(TableManager):
    """faust's TableManager with ``BulkRecovery`` (``faust.App(TableManager=...)``)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:  # type: ignore[has-type]
            self._recovery = BulkRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class BulkTable(Table):
    """A faust ``Table`` kept in a ``BulkMemoryStore`` (memory://) or, with ``store="rocksdb://"``,
    a ``streams.diskstore.BulkRocksStore``.

    Declared through ``app.tables.add`` instead of a store URL: faust finds stores by URL
    scheme in a process-wide registry, and registering one there would change every app.
    """

    def __init__(self, app: Any, *, loader: Mapping[str, Any], **kwargs: Any) -> None:
        self._loader = loader
        super().__init__(app, **kwargs)

    def info(self) -> Mapping[str, Any]:
        return {**super().info(), "loader": self._loader}

    def _new_store(self) -> Any:
        # faust's ``self._store or conf.store``: a bare URL("rocksdb://") is falsy
        return self._new_store_by_url(self.app.conf.store if self._store is None
                                      else self._store)

    def _new_store_by_url(self, url: str | URL) -> Any:
        scheme = URL(url).scheme
        if scheme == "rocksdb":
            return BulkRocksStore(
                url, self.app, self, table_name=self.name, key_type=self.key_type,
                key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                value_type=self.value_type, loop=self.loop, options=self.options,
                loader=self._loader)
        if scheme != "memory":
            raise ValueError(f"BulkTable {self.name} keeps its state in memory or rocksdb, "
                             f"not {url}")
        return BulkMemoryStore(
            url, self.app, self, table_name=self.name, key_type=self.key_type,
            key_serializer=self.key_serializer, value_serializer=self.value_serializer,
            value_type=self.value_type, loop=self.loop, options=self.options,
            loader=self._loader)


def bulk_table(app: Any, name: str, loader: Mapping[str, Any], **kwargs: Any) -> BulkTable:
    """``app.Table(name, **kwargs)`` for a ``BulkTable`` (bulk-loaded when the app was made
    with ``TableManager=BulkTableManager``; replayed by faust otherwise)."""
    table = BulkTable(app, name=name, beacon=app.tables.beacon, loader=loader, **kwargs)
    app.tables.add(table)
    return table

"""The scorer's tables on disk (``BANDO_STORE=rocksdb``): faust's RocksDB store, rocksdict driver.

Why: the ``seen`` table holds every event id for ever (SPEC: an id is unique forever, so there is
no retention), ~180 bytes each in the memory store: a year of HCMC is ~17 GB in one worker. On
disk an id costs the worker a few bytes of RAM (bloom filter and index blocks), and a restarted
worker keeps its local data: recovery reads only the changelog records after the offset it has
applied (faust keeps that offset in each partition's database).

Local state never runs ahead of the changelog. A record is written to the local database only
once Kafka has acknowledged it in the changelog (``DiskStore.publish`` writes each delivered
record batch with its last offset as faust's persisted offset, in one ``WriteBatch``); until
then reads see it in an in-memory overlay. faust's own RocksDB path writes locally at once:
after a SIGKILL that kept a local ``seen`` record whose changelog write was lost, the event,
read again, would be taken for a duplicate and its ``seen`` record would never reach the
changelog (a worker rebuilding from it later would accept a conflicting duplicate). Here a
killed worker restarts from local state plus the changelog tail, which is exactly the
changelog: the memory store's crash semantics.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import rocksdict
from faust.stores import rocksdb
from faust.types import TP

from streams.deliveries import Deliveries

log = logging.getLogger(__name__)

OFFSET_KEY = rocksdb.Store.offset_key
# Per database (a table partition). Memtables are allocated as they fill: the small tables
# (units, clock) stay small.
WRITE_BUFFER_SIZE = 16 * 1024 * 1024
MAX_WRITE_BUFFERS = 2
BLOCK_CACHE_SIZE = 64 * 1024 * 1024  # one LRU cache shared by every database of the process
# every memtable of the process together (16 databases: 4 tables x 4 partitions); past it the
# fullest are flushed early. Without it seen and facts held up to 8 x 32 MB.
MEMTABLES_SIZE = 64 * 1024 * 1024
# faust's default is 3 bits a key (~25 % false positives: a disk read for that share of the
# lookups of new ids, in each partition's database); 10 bits: ~1 %, 1.25 bytes of RAM per id
BLOOM_BITS_PER_KEY = 10
MEMTABLE_BLOOM_RATIO = 0.02  # of the write buffer: ~10 bits per seen record of ~80 bytes

_shared: dict[str, Any] = {}  # the block cache and write buffer manager of the process


def _cache() -> rocksdict.Cache:
    if "cache" not in _shared:
        _shared["cache"] = rocksdict.Cache(BLOCK_CACHE_SIZE)
    return _shared["cache"]


def _memtables() -> rocksdict.WriteBufferManager:
    if "memtables" not in _shared:
        _shared["memtables"] = rocksdict.WriteBufferManager(MEMTABLES_SIZE, False)
    return _shared["memtables"]


def lock_store_dir(path: Path) -> int:
    """Hold an exclusive lock on the store directory for the life of the process (released by
    the kernel on any exit, SIGKILL included); exit with a clear message if another worker
    holds it. Two workers sharing a directory otherwise crashed on RocksDB's own per-database
    lock, mid-recovery, as partitions moved between them."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / "worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SystemExit(f"another worker uses the store directory {path}: give each worker "
                         "on this machine its own BANDO_DATA_DIR (or BANDO_STORE_DIR)") from None
    return fd


def memory_usage(stores: Iterable[BulkRocksStore]) -> dict[str, int]:
    """RocksDB's memory in this process, in bytes: the shared block cache and memtables (bounded
    above) and the index and filter blocks of the open files, which grow with the data (for
    /metrics: the part of a worker's memory that a Python heap profile does not see)."""
    cache, memtables = _shared.get("cache"), _shared.get("memtables")
    readers = sum(db.property_int_value("rocksdb.estimate-table-readers-mem") or 0
                  for store in stores for db in store.open_dbs())
    return {"block_cache": cache.get_usage() if cache is not None else 0,
            "memtables": memtables.get_usage() if memtables is not None else 0,
            "table_readers": readers}


class DiskOptions(rocksdb.RocksDBOptions):
    """faust's rocksdict options with bounded memory: one shared block cache, 10-bit blooms."""

    def as_options(self) -> rocksdict.Options:
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        if self.max_open_files is not None:
            opts.set_max_open_files(self.max_open_files)
        opts.set_write_buffer_size(self.write_buffer_size)
        opts.set_max_write_buffer_number(self.max_write_buffer_number)
        opts.set_write_buffer_manager(_memtables())
        opts.set_target_file_size_base(self.target_file_size_base)
        # a bloom filter on the memtable: most lookups are of new ids, and without it each
        # one searched every memtable's skiplist (multi-gets of misses: ~2x faster with it)
        opts.set_memtable_whole_key_filtering(True)
        opts.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, block_based=False)
        table.set_block_cache(_cache())
        opts.set_block_based_table_factory(table)
        return opts


class BulkRocksStore(rocksdb.Store):
    """faust's RocksDB store (rocksdict) that ``streams.bulkstore.BulkRecovery`` fills in bulk
    from the offset it had applied, and that ``DiskStore`` reads and writes directly."""

    def __init__(self, url: Any, app: Any, table: Any, *, loader: Any, **kwargs: Any) -> None:
        options = {"driver": "rocksdict", "write_buffer_size": WRITE_BUFFER_SIZE,
                   "max_write_buffer_number": MAX_WRITE_BUFFERS,
                   **(kwargs.pop("options", None) or {})}
        super().__init__(url, app, table, options=options, **kwargs)
        self.rocksdb_options = DiskOptions(**self.options, use_rocksdict=True)
        self.loader = loader

    def bulk_start(self, tp: TP, persisted: int | None) -> int:
        """Where a bulk load of an active partition starts: after what the database holds."""
        return 0 if persisted is None else persisted + 1

    def db(self, partition: int) -> rocksdict.Rdict:
        return self._db_for_partition(partition)

    def open_dbs(self) -> list[rocksdict.Rdict]:
        return list(self._dbs.values())

    def apply(self, partition: int, records: list[Any], end: int) -> int:
        """Write changelog records (aiokafka ``ConsumerRecord``s, offsets below ``end``) as
        they are (the changelog's JSON bytes are the local bytes), and their last offset."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        last = None
        n = 0
        for record in records:
            if record.offset >= end:
                break  # after faust's highwater: faust's Recovery replays it
            last = record.offset
            if record.key is None:
                continue
            if record.value is None:
                batch.delete(record.key)
            else:
                batch.put(record.key, record.value)
            n += 1
        if last is not None:
            batch.put(OFFSET_KEY, str(last).encode())
            self._db_for_partition(partition).write(batch)
        return n

    def raw_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Records of the active partitions (faust's view), without the offset record."""
        for db in self._dbs_for_actives():
            for key, value in db.items():
                if key != OFFSET_KEY:
                    yield key, value

    def _size(self) -> int:
        # faust counts by iterating every key; /metrics asks every 5 s
        return sum(db.property_int_value("rocksdb.estimate-num-keys") or 0
                   for db in self._dbs_for_actives())


class DiskStore:
    """``streams.scorer.Store`` over ``BulkRocksStore`` tables, with changelog publishing as
    ``streams.app.FaustStore`` (record batches straight into aiokafka).

    ``_overlay`` holds, per table, what was written but is not in the local database yet
    (pending, or sent and not acknowledged): reads look there first. A write is removed from
    it when its batch is written locally, unless a later write of the key replaced it.
    """

    def __init__(self, tables: dict[str, Any]):
        self.tables = tables
        self.pending: dict[tuple[str, str], tuple[int, Any]] = {}
        self._overlay: dict[str, dict[str, tuple[int, Any]]] = {t: {} for t in tables}
        self.sent = Deliveries()  # checked before each commit too (checked_flush)
        # per table: what the last prefetch read from disk (key -> raw value or None)
        self._fetched: dict[str, dict[str, bytes | None]] = {}

    def _store(self, table: str) -> BulkRocksStore:
        store: BulkRocksStore = self.tables[table].data
        return store

    def prefetch(self, table: str, keys: list[str]) -> None:
        """Read ``keys`` of ``table`` in one multi-get per database (~4x cheaper than a get
        each); ``get`` answers from them until the next prefetch of the table."""
        dumps = orjson.dumps
        raws: list[Any] = [dumps(key) for key in keys]
        found: dict[str, bytes | None] = dict.fromkeys(keys)
        for db in self._store(table).open_dbs():
            values: list[bytes | None] = db.get(raws)  # type: ignore[assignment]
            for key, value in zip(keys, values, strict=True):
                if value is not None and found[key] is None:
                    found[key] = value
        self._fetched[table] = found

    def get(self, table: str, key: str) -> Any:
        hit = self._overlay[table].get(key)
        if hit is not None:
            return hit[1]
        fetched = self._fetched.get(table)
        if fetched is not None and key in fetched:
            raw = fetched[key]
            return None if raw is None else orjson.loads(raw)
        raw = orjson.dumps(key)
        # every database of the table this worker holds, as the memory store's one dict would
        for db in self._store(table).open_dbs():
            value = db.get(raw)
            if value is not None:
                return orjson.loads(value)
        return None

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        entry = (partition, value)
        self._overlay[table][key] = entry
        self.pending[(table, key)] = entry  # the last write of a batch wins

    def items(self, table: str) -> Iterator[tuple[str, Any]]:
        """Every record of the active partitions, one at a time (a rebuild reads a table larger
        than memory this way); what is in the overlay wins over the database."""
        loads = orjson.loads
        actives = {tp.partition for tp in self.app_actives(table)}
        overlay = {key: value for key, (partition, value) in self._overlay[table].items()
                   if partition in actives}
        for k, v in self._store(table).raw_items():
            key = loads(k)
            if key not in overlay:
                yield key, loads(v)
        yield from overlay.items()

    def app_actives(self, table: str) -> set[TP]:
        t = self.tables[table]
        topic = t.changelog_topic.get_topic_name()
        return {tp for tp in t.app.assignor.assigned_actives() if tp.topic == topic}

    async def publish(self, producer: Any) -> int:
        """Hand the pending changelog records to ``producer`` (faust's); each record batch is
        written to the local database once Kafka has acknowledged it."""
        self.sent.raise_failed()
        pending, self.pending = self.pending, {}
        if not pending:
            return 0
        kafka = producer._ensure_producer()  # noqa: SLF001 - faust's aiokafka producer
        batches: dict[tuple[str, int], tuple[Any, list[Any]]] = {}
        dumps = orjson.dumps
        for (table, key), entry in pending.items():
            partition, value = entry
            tp = (table, partition)
            current = batches.get(tp)
            if current is None:
                current = batches[tp] = (kafka.create_batch(), [])
            k, v = dumps(key), dumps(value)
            if current[0].append(key=k, value=v, timestamp=None) is None:  # full
                await self._send(kafka, table, partition, *current)
                current = batches[tp] = (kafka.create_batch(), [])
                if current[0].append(key=k, value=v, timestamp=None) is None:
                    raise ValueError(f"changelog record {table}/{key[:80]} exceeds a batch")
            current[1].append((key, entry, k, v))
        for (table, partition), (batch, records) in batches.items():
            await self._send(kafka, table, partition, batch, records)
        return len(pending)

    async def _send(self, kafka: Any, table: str, partition: int, batch: Any,
                    records: list[Any]) -> None:
        topic = self.tables[table].changelog_topic.get_topic_name()
        fut = await kafka.send_batch(batch, topic, partition=partition)
        fut.add_done_callback(lambda f: self._delivered(f, table, partition, records))
        self.sent.add(fut)

    def _delivered(self, fut: Any, table: str, partition: int, records: list[Any]) -> None:
        overlay = self._overlay[table]
        # what was prefetched may predate these writes, which now leave the overlay
        self._fetched.pop(table, None)
        if not fut.cancelled() and fut.exception() is None:
            store = self._store(table)
            db = store._dbs.get(partition)  # noqa: SLF001
            # Not open: the partition was revoked. Its next recovery replays these records.
            if db is not None:
                last = fut.result().offset + len(records) - 1
                batch = rocksdict.WriteBatch(raw_mode=True)
                for _, _, k, v in records:
                    batch.put(k, v)
                held = db.get(OFFSET_KEY)
                # Only a contiguous write moves the offset: any record between the offset held
                # and this batch (another writer's, a retried batch) must still be replayed.
                if (-1 if held is None else int(held)) == fut.result().offset - 1:
                    batch.put(OFFSET_KEY, str(last).encode())
                db.write(batch)
        # delivered or failed, the overlay forgets it (a failure stops the worker at the next
        # publish; a revoked partition's keys are no longer read)
        for key, entry, _, _ in records:
            if overlay.get(key) is entry:
                del overlay[key]

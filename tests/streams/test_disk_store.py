"""``streams.diskstore.DiskStore`` without a broker: a write reaches the local RocksDB database
only once Kafka has acknowledged its changelog batch (so a SIGKILLed worker's local state is
never ahead of its changelogs), reads see it before that, and the persisted offset moves only
over contiguous changelog offsets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust.types import TP

from bando.settings import Settings
from streams.app import SCORER_TABLES, create_app
from streams.diskstore import OFFSET_KEY, BulkRocksStore, DiskStore


class FakeBatch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: Any) -> object:
        self.records.append((key, value))
        return object()


class FakeKafka:
    """aiokafka's producer as ``DiskStore.publish`` uses it; the test resolves deliveries."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, FakeBatch, asyncio.Future[Any]]] = []

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, partition: int) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, batch, fut))
        return fut

    def _ensure_producer(self) -> FakeKafka:
        return self


@pytest.fixture
def disk(tmp_path: Path) -> tuple[Any, DiskStore]:
    settings = Settings.from_env(env={}, kafka_bootstrap="127.0.0.1:9", store="rocksdb",
                                 data_dir=str(tmp_path))
    app = create_app(settings)
    tables = {name: app.tables[name] for name in SCORER_TABLES}
    for table in tables.values():
        assert isinstance(table.data, BulkRocksStore)
        table.data.db(0)  # opened, as faust does for an assigned active partition
    return app, DiskStore(tables)


def local(store: DiskStore, table: str, key: str) -> Any:
    raw = store.tables[table].data.db(0).get(orjson.dumps(key))
    return None if raw is None else orjson.loads(raw)


def held_offset(store: DiskStore, table: str) -> int | None:
    raw = store.tables[table].data.db(0).get(OFFSET_KEY)
    return None if raw is None else int(raw)


def test_written_locally_only_once_acknowledged(disk: tuple[Any, DiskStore]) -> None:
    app, store = disk
    kafka = FakeKafka()

    async def scenario() -> None:
        store.put("seen", 0, "e1", "d1")
        store.put("seen", 0, "e2", "d2")
        assert store.get("seen", "e1") == "d1"
        assert await store.publish(kafka) == 2
        (topic, partition, batch, fut), = kafka.sent
        assert partition == 0 and topic.endswith("-seen-changelog")
        assert batch.records == [(b'"e1"', b'"d1"'), (b'"e2"', b'"d2"')]
        await asyncio.sleep(0)
        # sent, not acknowledged: a SIGKILL now must leave nothing of it on disk
        assert local(store, "seen", "e1") is None and held_offset(store, "seen") is None
        assert store.get("seen", "e2") == "d2"  # the overlay answers
        fut.set_result(SimpleNamespace(offset=0))
        await asyncio.sleep(0)
        assert local(store, "seen", "e1") == "d1" and local(store, "seen", "e2") == "d2"
        assert held_offset(store, "seen") == 1  # the batch's last offset
        assert not store._overlay["seen"]  # noqa: SLF001
        assert store.get("seen", "e1") == "d1"  # from disk now
        assert store.get("seen", "nope") is None

    asyncio.run(scenario())


def test_a_failed_delivery_writes_nothing_and_stops_the_next_publish(
    disk: tuple[Any, DiskStore]
) -> None:
    app, store = disk
    kafka = FakeKafka()

    async def scenario() -> None:
        store.put("facts", 0, "u\x1fd\x1fx", {"a": 1})
        await store.publish(kafka)
        kafka.sent[0][3].set_exception(RuntimeError("broker gone"))
        await asyncio.sleep(0)
        assert local(store, "facts", "u\x1fd\x1fx") is None
        assert held_offset(store, "facts") is None
        store.put("facts", 0, "u\x1fd\x1fy", {"a": 2})
        with pytest.raises(RuntimeError, match="broker gone"):
            await store.publish(kafka)

    asyncio.run(scenario())


def test_offset_moves_only_over_contiguous_batches_and_rewrites_keep_the_overlay(
    disk: tuple[Any, DiskStore]
) -> None:
    app, store = disk
    kafka = FakeKafka()

    async def scenario() -> None:
        store.put("units", 0, "u1", 0)
        await store.publish(kafka)
        store.put("units", 0, "u1", 1)  # rewritten before the first batch is acknowledged
        await store.publish(kafka)
        kafka.sent[0][3].set_result(SimpleNamespace(offset=0))
        await asyncio.sleep(0)
        assert local(store, "units", "u1") == 0 and held_offset(store, "units") == 0
        assert store.get("units", "u1") == 1  # the later write still wins
        # an offset gap (another writer's records, a retried batch): values are written, the
        # offset stays, so a restart replays from before the gap
        kafka.sent[1][3].set_result(SimpleNamespace(offset=5))
        await asyncio.sleep(0)
        assert local(store, "units", "u1") == 1 and held_offset(store, "units") == 0
        assert store.get("units", "u1") == 1

    asyncio.run(scenario())


def test_revoked_partition_is_not_written_and_items_merge_the_overlay(
    disk: tuple[Any, DiskStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, store = disk
    kafka = FakeKafka()
    clock = store.tables["clock"]
    topic = clock.changelog_topic.get_topic_name()
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: {TP(topic, 0)})

    async def scenario() -> None:
        store.put("clock", 0, "0", {"wm": 1, "offset": 10})
        await store.publish(kafka)
        kafka.sent[0][3].set_result(SimpleNamespace(offset=0))
        await asyncio.sleep(0)
        store.put("clock", 0, "0", {"wm": 2, "offset": 11})
        store.put("clock", 1, "1", {"wm": 3, "offset": 12})  # partition 1 is not active
        assert sorted(store.items("clock")) == [("0", {"wm": 2, "offset": 11})]
        await store.publish(kafka)
        clock.data._dbs.pop(0)  # noqa: SLF001 - revoked, as faust's revoke_partitions does
        for *_, fut in kafka.sent[1:]:
            fut.set_result(SimpleNamespace(offset=1))
        await asyncio.sleep(0)
        assert local(store, "clock", "0") == {"wm": 1, "offset": 10}  # reopened: untouched
        assert held_offset(store, "clock") == 0

    asyncio.run(scenario())


def test_prefetched_reads_agree_with_single_reads(disk: tuple[Any, DiskStore]) -> None:
    app, store = disk
    seen = store.tables["seen"].data
    seen.db(1).put(orjson.dumps("on-disk-p1"), orjson.dumps("d1"))  # another partition's
    seen.db(0).put(orjson.dumps("on-disk-p0"), orjson.dumps("d0"))
    store.put("seen", 0, "fresh", "d2")
    keys = ["on-disk-p1", "on-disk-p0", "fresh", "absent", "absent"]
    single = [store.get("seen", k) for k in keys]
    store.prefetch("seen", keys)
    assert [store.get("seen", k) for k in keys] == single == ["d1", "d0", "d2", None, None]
    store.put("seen", 0, "absent", "d3")  # written after the prefetch: the overlay wins
    assert store.get("seen", "absent") == "d3"
    assert store.get("seen", "not-prefetched") is None
    store.prefetch("seen", [])
    assert store.get("seen", "on-disk-p1") == "d1"


def test_a_prefetch_does_not_outlive_the_writes_it_predates(disk: tuple[Any, DiskStore]) -> None:
    app, store = disk
    kafka = FakeKafka()

    async def scenario() -> None:
        store.prefetch("seen", ["k"])  # absent
        store.put("seen", 0, "k", "d")
        await store.publish(kafka)
        kafka.sent[0][3].set_result(SimpleNamespace(offset=0))
        await asyncio.sleep(0)  # on disk now, out of the overlay
        assert store.get("seen", "k") == "d"

    asyncio.run(scenario())


def test_store_setting_chooses_the_scorer_tables_store(tmp_path: Path) -> None:
    from streams.bulkstore import BulkMemoryStore

    env = {"BANDO_STORE": "rocksdb", "BANDO_STORE_DIR": str(tmp_path / "disk"),
           "BANDO_DATA_DIR": str(tmp_path / "data"), "BANDO_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    app = create_app(Settings.from_env(env=env))
    for name in SCORER_TABLES:
        store = app.tables[name].data
        assert isinstance(store, BulkRocksStore)
        assert store.partition_path(0) == tmp_path / "disk" / f"{name}-0.db"
    memory = create_app(Settings.from_env(env={**env, "BANDO_STORE": "memory"}))
    assert all(isinstance(t.data, BulkMemoryStore) for t in memory.tables.values())
    with pytest.raises(ValueError, match="BANDO_STORE"):
        create_app(Settings.from_env(env={**env, "BANDO_STORE": "lmdb"}))


def test_a_second_process_on_the_same_store_directory_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    from streams.diskstore import lock_store_dir

    lock_store_dir(tmp_path)  # this process: as a running worker
    child = subprocess.run(
        [sys.executable, "-c", "import sys, pathlib; from streams.diskstore import "
         f"lock_store_dir; lock_store_dir(pathlib.Path({str(tmp_path)!r}))"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert child.returncode != 0
    assert "another worker uses the store directory" in child.stderr

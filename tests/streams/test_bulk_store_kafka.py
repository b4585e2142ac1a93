"""``streams.bulkstore`` against a real changelog topic: the bulk load gives the state the
records describe (latest value per key, tombstones delete), passes offsets that are never
delivered (compaction, transaction markers, the last offset included), and reports the last
offset before the end so that faust's recovery has nothing left to replay.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import faust
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.types import TP

from bando.infra import create_topics
from streams.bulkstore import BulkMemoryStore, BulkTableManager, bulk_table, load_changelogs

pytestmark = pytest.mark.integration

COMPACT = {"cleanup.policy": "compact", "segment.ms": "200", "min.cleanable.dirty.ratio": "0.001",
           "min.compaction.lag.ms": "0", "delete.retention.ms": "86400000"}


TOMBSTONE = object()  # a record with a null value (JSON null is a value)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


async def produce(bootstrap: str, topic: str, records: list[tuple[int, Any, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1)
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(topic, None if value is TOMBSTONE else dumps(value),
                                         key=dumps(key), partition=partition)
    finally:
        await producer.stop()


async def produce_in_transaction(bootstrap: str, topic: str,
                                 records: list[tuple[int, Any, Any]], tid: str) -> None:
    """Committed records followed by a commit marker: an offset no consumer is given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid)
    await producer.start()
    try:
        async with producer.transaction():
            for partition, key, value in records:
                await producer.send(topic, dumps(value), key=dumps(key), partition=partition)
    finally:
        await producer.stop()


async def delivered_offsets(bootstrap: str, topic: str, partition: int) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        offsets: list[int] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                offsets.extend(r.offset for r in records)
        return offsets
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[TP, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {TP(tp.topic, tp.partition): end for tp, end in ends.items()}
    finally:
        await consumer.stop()


def new_store(bootstrap: str, topic_prefix: str) -> BulkMemoryStore:
    app = faust.App(f"{topic_prefix}app", broker=f"kafka://{bootstrap}", store="memory://",
                    key_serializer="json", value_serializer="json", autodiscover=False,
                    TableManager=BulkTableManager)
    table = bulk_table(app, "t", {"bootstrap_servers": bootstrap}, default=None, partitions=2)
    store = table.data
    assert isinstance(store, BulkMemoryStore)
    return store


async def test_bulk_load_matches_the_records_across_tombstones_and_gaps(kafka, topic_prefix):
    bootstrap = kafka.bootstrap
    topic = f"{topic_prefix}app-t-changelog"
    create_topics(bootstrap, [topic], partitions=2, config=COMPACT)
    # partition 0: overwritten keys (compacted away below), tombstones (one of a key never
    # written, one of a key written again), JSON null (a value, not a deletion), a list key
    # (a tuple in faust)
    await produce(bootstrap, topic, [
        (0, "a", {"v": 1}), (0, "b", 2), (0, "gone", "x"), (0, "again", 1), (0, "a", {"v": 2}),
        (0, "gone", TOMBSTONE), (0, "again", TOMBSTONE)])
    await asyncio.sleep(0.5)  # the next record rolls the segment (segment.ms): compactable
    await produce(bootstrap, topic, [
        (0, "again", [3]), (0, "nothing", TOMBSTONE), (0, ["w", 7], "windowed"),
        (0, "json-null", None), (1, "c", {"deep": {"x": [1, 2]}})])
    await asyncio.sleep(0.5)
    await produce(bootstrap, topic, [(0, "b", 3)])
    # a committed transaction ends both partitions with a marker offset
    await produce_in_transaction(bootstrap, topic, [(0, "t", "in-tx"), (1, "c", {"v": "tx"})],
                                 f"{topic_prefix}tx")

    # wait for the cleaner (every 15 s) to compact the first segment: offsets go missing
    deadline = time.monotonic() + 90
    while True:
        offsets = await delivered_offsets(bootstrap, topic, 0)
        if 0 not in offsets or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    assert 0 not in offsets, f"the broker did not compact {topic} in 90 s: {offsets}"

    store = new_store(bootstrap, topic_prefix)
    store.data["stale"] = "left from before"  # loading adds to what the dict holds
    ends = await end_offsets(bootstrap, topic, 2)
    loaded = await load_changelogs({tp: store for tp in ends}, ends,
                                   {"bootstrap_servers": bootstrap}, time.monotonic() + 60)

    expected = {"stale": "left from before", "a": {"v": 2}, "b": 3, "again": [3],
                ("w", 7): "windowed", "json-null": None, "t": "in-tx", "c": {"v": "tx"}}
    assert dict(store.data) == expected
    assert store._key_partition == {  # noqa: SLF001 - what faust drops keys of revoked partitions by
        "a": 0, "b": 0, "again": 0, ("w", 7): 0, "json-null": 0, "t": 0, "c": 1}
    # the end is behind the commit marker: the last offset loaded is never a delivered one
    assert loaded == {tp: end - 1 for tp, end in ends.items()}
    assert ends[TP(topic, 0)] - 1 not in await delivered_offsets(bootstrap, topic, 0)


async def test_bulk_load_of_an_empty_partition_reports_nothing_to_replay(kafka, topic_prefix):
    topic = f"{topic_prefix}app-t-changelog"
    create_topics(kafka.bootstrap, [topic], partitions=2, config=COMPACT)
    await produce(kafka.bootstrap, topic, [(1, "k", "v")])
    store = new_store(kafka.bootstrap, topic_prefix)
    ends = await end_offsets(kafka.bootstrap, topic, 2)
    loaded = await load_changelogs({tp: store for tp in ends}, ends,
                                   {"bootstrap_servers": kafka.bootstrap}, time.monotonic() + 60)
    assert loaded == {TP(topic, 0): -1, TP(topic, 1): 0}
    assert dict(store.data) == {"k": "v"}


async def test_bulk_load_stops_at_the_given_end_and_at_the_deadline(kafka, topic_prefix):
    """Up to faust's highwater only; out of time, it reports how far it read (faust replays
    the rest from there)."""
    topic = f"{topic_prefix}app-t-changelog"
    create_topics(kafka.bootstrap, [topic], partitions=2, config=COMPACT)
    await produce(kafka.bootstrap, topic, [(0, "k", i) for i in range(5)])
    client = {"bootstrap_servers": kafka.bootstrap}
    store = new_store(kafka.bootstrap, topic_prefix)
    tp = TP(topic, 0)
    assert await load_changelogs({tp: store}, {tp: 3}, client, time.monotonic() + 60) == {tp: 2}
    assert dict(store.data) == {"k": 2}
    late = new_store(kafka.bootstrap, topic_prefix + "late")
    assert await load_changelogs({tp: late}, {tp: 5}, client, time.monotonic() - 1) == {tp: -1}
    assert dict(late.data) == {}


async def test_recovery_loads_newly_active_partitions_up_to_its_highwater(kafka, topic_prefix):
    """``BulkRecovery``: partitions that became active are loaded up to faust's highwater and
    their start offsets set; kept ones are left to faust; a failed load leaves all to faust."""
    from bando.infra.ports import free_port

    topic = f"{topic_prefix}app-t-changelog"
    create_topics(kafka.bootstrap, [topic], partitions=2, config=COMPACT)
    await produce(kafka.bootstrap, topic, [(0, "a", 1), (0, "b", 2), (0, "a", 3), (1, "c", 4)])
    store = new_store(kafka.bootstrap, topic_prefix)
    app, table = store.app, store.table
    p0, p1 = TP(topic, 0), TP(topic, 1)
    actives = {p0, p1}
    app.assignor.assigned_actives = lambda: set(actives)
    await store.on_rebalance(set(), set(), set())
    assert store.pending == {p0, p1}

    recovery = app.tables.recovery
    recovery.tp_to_table.update({p0: table, p1: table})
    recovery.active_highwaters.update({p0: 1, p1: 0})  # faust's highwater: last offset
    offsets: Counter[TP] = Counter()
    offsets[p0] = offsets[p1] = None  # type: ignore[assignment]  # as faust's Recovery sets
    await recovery._bulk_load({p0, p1}, offsets)  # noqa: SLF001
    assert dict(offsets) == {p0: 1, p1: 0}
    assert dict(store.data) == {"a": 1, "b": 2, "c": 4}  # "a": 3 is after the highwater
    assert store.pending == set()

    actives = {p0}  # p1 moves away, then comes back: loaded again; p0 was kept: not
    await store.on_rebalance(set(), set(), set())
    actives = {p0, p1}
    await store.on_rebalance(set(), set(), set())
    assert store.pending == {p1}

    store.loader = {"bootstrap_servers": f"127.0.0.1:{free_port()}"}  # nothing listens
    offsets = Counter()
    await recovery._bulk_load({p0, p1}, offsets)  # noqa: SLF001
    assert dict(offsets) == {}
    assert store.pending == {p1}

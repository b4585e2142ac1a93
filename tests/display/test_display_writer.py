"""The board writer against a real Kafka broker and a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis
from wall_support import XSS_NAME, sample_board, score_message

from bando.infra import KafkaBroker, RedisServer, create_topics_async
from display import board, catchup, store
from display.board_writer import BoardWriter, WriterConfig

pytestmark = pytest.mark.integration

W = "month:2024-04"
AS_OF = "2024-04-14T17:00:00+07:00"


def topics_for(unique: str) -> dict[str, str]:
    return {
        board.SCORE: f"unit-scores-{unique}",
        board.RANK: f"rank-changes-{unique}",
        board.BAND: f"band-changes-{unique}",
    }


async def produce(bootstrap: str, topic: str, msgs, key: str = "unit_id") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for m in msgs:
            value = m if isinstance(m, bytes) else orjson.dumps(m)
            k = b"x" if isinstance(m, bytes) else str(m[key]).encode()
            await producer.send_and_wait(topic, key=k, value=value)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running(config: WriterConfig):
    writer = BoardWriter(config)
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        yield writer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_until(check, timeout: float = 20, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await check()
        except Exception:  # noqa: BLE001 - the thing checked may be down for a while on purpose
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        await asyncio.sleep(interval)


async def board_rows(redis: Redis, keys: store.Keys) -> dict[str, dict]:
    snap = await store.read_snapshot(redis, keys)
    return {r["unit_id"]: r for w in snap["boards"].values() for g in w.values() for r in g}


@pytest.fixture
async def setup(kafka, redis_server, unique):
    topics = topics_for(unique)
    await create_topics_async(kafka.bootstrap, topics.values(), partitions=2)
    keys = store.Keys(f"test:{unique}:board")
    config = WriterConfig(
        bootstrap=kafka.bootstrap,
        redis_url=redis_server.url,
        topics=topics,
        prefix=keys.prefix,
        metadata_interval=2,
    )
    redis = Redis.from_url(redis_server.url)
    yield config, keys, redis
    await redis.aclose()


async def test_topics_become_the_board_and_replays_change_nothing(setup):
    config, keys, redis = setup
    msgs = sample_board(W, AS_OF)
    msgs[0]["name"] = XSS_NAME
    await produce(config.bootstrap, config.topics[board.SCORE], msgs)
    async with running(config) as writer:
        rows = await wait_until(lambda: _rows_if(redis, keys, len(msgs)))
        assert rows[msgs[0]["unit_id"]]["name"] == XSS_NAME  # stored as given
        rc = {
            "peer_group": "district",
            "window": W,
            "unit_id": "district-01",
            "old_rank": rows["district-01"]["rank"],
            "new_rank": 1,
            "total": 99.0,
            "as_of": "2024-04-14T18:00:00+07:00",
        }
        bc = {
            "unit_id": "district-01",
            "window": W,
            "old_band": rows["district-01"]["band"],
            "new_band": "excellent",
            "direction": "up",
            "total": 99.0,
            "as_of": "2024-04-14T18:00:00+07:00",
            "top_losses": [],
        }
        await produce(config.bootstrap, config.topics[board.RANK], [rc], key="peer_group")
        await produce(config.bootstrap, config.topics[board.BAND], [bc])

        async def moved():
            row = (await board_rows(redis, keys))["district-01"]
            return row if row["rank"] == 1 and row["band"] == "excellent" else None

        row = await wait_until(moved)
        rev_before = row["rev"]
        changes_before = writer.stats.changes
        # the whole history again, plus an older score of district-01: nothing moves back
        old = score_message(
            {"unit_id": "district-01", "name": "Quận 1", "peer_group": "district"},
            W,
            "2024-04-01T08:00:00+07:00",
            10.0,
            22,
            22,
        )
        await produce(config.bootstrap, config.topics[board.SCORE], msgs + [old])
        await produce(config.bootstrap, config.topics[board.RANK], [rc], key="peer_group")
        await wait_until(lambda: _consumed(writer, len(msgs) + 1 + len(msgs) + 2))
        assert writer.stats.changes == changes_before
        row = (await board_rows(redis, keys))["district-01"]
        assert (row["rank"], row["band"], row["rev"]) == (1, "excellent", rev_before)


async def _rows_if(redis, keys, n):
    rows = await board_rows(redis, keys)
    return rows if len(rows) >= n else None


async def _consumed(writer, n):
    return writer.stats.messages + writer.stats.bad >= n


async def test_bad_messages_are_skipped_and_the_writer_goes_on(setup):
    config, keys, redis = setup
    good = sample_board(W, AS_OF)[:3]
    bad = [
        b"not json",
        b"[1,2]",
        orjson.dumps({"unit_id": "x", "window": "nope"}),
        orjson.dumps({**good[0], "as_of": "yesterday"}),
    ]
    await produce(config.bootstrap, config.topics[board.SCORE], bad + good)
    async with running(config) as writer:
        await wait_until(lambda: _rows_if(redis, keys, 3))
        assert writer.stats.bad == 4
    offsets = await store.read_offsets(redis, keys)
    assert sum(offsets.values()) == 7  # every message consumed, the bad ones included


async def test_the_writer_rebuilds_a_board_that_redis_lost(kafka, unique, tmp_path):
    """Redis killed and restarted empty: the writer notices and replays the topics."""
    topics = topics_for(unique)
    await create_topics_async(kafka.bootstrap, topics.values(), partitions=2)
    server = RedisServer(data_dir=tmp_path / "redis")
    server.start()
    keys = store.Keys("bando:board")
    config = WriterConfig(
        bootstrap=kafka.bootstrap,
        redis_url=server.url,
        topics=topics,
        prefix=keys.prefix,
        retry_max=0.5,
    )
    redis = store.connect(server.url)
    msgs = sample_board(W, AS_OF)
    try:
        await produce(kafka.bootstrap, topics[board.SCORE], msgs[:50])
        async with running(config):
            await wait_until(lambda: _rows_if(redis, keys, 50))
            server.kill()
            await produce(kafka.bootstrap, topics[board.SCORE], msgs[50:])  # while Redis is away
            await asyncio.sleep(1.5)
            server.start()  # empty: it was run without persistence
            rows = await wait_until(lambda: _rows_if(redis, keys, len(msgs)), timeout=30)
            assert len(rows) == len(msgs)
            assert await redis.get(keys.epoch) is not None
    finally:
        await redis.aclose()
        server.stop()


async def test_the_writer_catches_up_after_kafka_comes_back(unique, tmp_path, redis_server):
    """A broker of its own (the session's is shared): SIGKILL it, produce after it is back."""
    broker = KafkaBroker(data_dir=tmp_path / "kafka", partitions=2)
    broker.start()
    topics = topics_for(unique)
    keys = store.Keys(f"test:{unique}:board")
    redis = Redis.from_url(redis_server.url)
    try:
        await create_topics_async(broker.bootstrap, topics.values(), partitions=2)
        config = WriterConfig(
            bootstrap=broker.bootstrap,
            redis_url=redis_server.url,
            topics=topics,
            prefix=keys.prefix,
            retry_max=1,
        )
        msgs = sample_board(W, AS_OF)
        await produce(broker.bootstrap, topics[board.SCORE], msgs[:40])
        async with running(config):
            await wait_until(lambda: _rows_if(redis, keys, 40))
            broker.kill()
            await asyncio.sleep(3)
            broker.start()
            await produce(broker.bootstrap, topics[board.SCORE], msgs[40:])
            rows = await wait_until(lambda: _rows_if(redis, keys, len(msgs)), timeout=60)
            assert len(rows) == len(msgs)
    finally:
        await redis.aclose()
        broker.stop()


async def _drain(pubsub, seconds: float = 0.5) -> list[dict]:
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        msg = await pubsub.get_message(timeout=left)
        if msg and msg["type"] == "message":
            out.append(orjson.loads(msg["data"]))
    return out


async def test_a_rebuild_is_marked_as_catching_up_until_it_reaches_the_topics_end(setup):
    """Read from the beginning, the board walks through history: screens are told so from
    before the first row until the writer has read as far as the topics reached."""
    config, keys, redis = setup
    msgs = sample_board(W, AS_OF)
    await produce(config.bootstrap, config.topics[board.SCORE], msgs)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.channel)
    await pubsub.get_message(timeout=1)
    async with running(config):
        await wait_until(lambda: _rows_if(redis, keys, len(msgs)))
        await wait_until(lambda: _not_marked(redis, keys))
        seen = [m["t"] if m["t"] != "catchup" else m["active"] for m in await _drain(pubsub)]
    await pubsub.aclose()
    assert seen[0] is True and seen[-1] is False, seen[:3] + seen[-3:]
    assert seen.count(True) == 1 and seen.count(False) == 1 and seen.count("unit") == len(msgs)


async def _not_marked(redis: Redis, keys: store.Keys) -> bool:
    return not await redis.exists(keys.catchup)


async def test_a_catch_up_left_by_a_writer_that_died_is_ended_by_the_next(setup):
    """The first writer marked the board and died part way: the next one resumes from the
    board's positions (no new mark) and clears the mark when it reaches the targets."""
    config, keys, redis = setup
    msgs = sample_board(W, AS_OF)
    await produce(config.bootstrap, config.topics[board.SCORE], msgs)
    topic = config.topics[board.SCORE]
    ends = await _end_offsets(config.bootstrap, topic)
    assert len(ends) == 2 and all(ends.values())  # both partitions hold messages
    # what it left: the mark, and positions a few messages in
    await store.ensure_epoch(redis, keys, "dead")
    assert await catchup.mark_catchup(redis, keys, ends)
    await redis.hset(keys.offsets, mapping={f"{topic}/0": 3, f"{topic}/1": 2})
    async with running(config) as writer:
        await wait_until(lambda: _not_marked(redis, keys))
        assert writer.stats.messages == sum(ends.values()) - 5
    assert (await store.read_snapshot(redis, keys))["catching_up"] is False


async def test_a_writer_back_from_a_long_outage_is_marked_until_through_its_backlog(setup):
    """Away while the topics grew by more than ``catchup_lag`` messages: screens are told before
    its first batch and until it has read the backlog, as in a rebuild; a backlog within the
    threshold is live. Only rebuilds (no stored position) used to be marked."""
    config, keys, redis = setup
    topic = config.topics[board.SCORE]
    msgs = sample_board(W, AS_OF)
    await produce(config.bootstrap, topic, msgs)
    async with running(config):
        await wait_until(lambda: _rows_if(redis, keys, len(msgs)))
        await wait_until(lambda: _not_marked(redis, keys))
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.channel)
    await pubsub.get_message(timeout=1)
    await produce(config.bootstrap, topic, sample_board(W, "2024-04-14T18:00:00+07:00", seed=11))
    async with running(dataclasses.replace(config, catchup_lag=50)) as writer:
        await wait_until(lambda: _consumed(writer, len(msgs)))
        await wait_until(lambda: _not_marked(redis, keys))
        seen = [m["t"] if m["t"] != "catchup" else m["active"] for m in await _drain(pubsub)]
    assert seen[0] is True and seen[-1] is False, seen[:3] + seen[-3:]
    assert seen.count(True) == 1 and seen.count(False) == 1 and "unit" in seen
    await produce(config.bootstrap, topic, sample_board(W, "2024-04-14T19:00:00+07:00", seed=12))
    async with running(config) as writer:  # 104 behind, the threshold is 2,000
        await wait_until(lambda: _consumed(writer, len(msgs)))
        seen = [m["t"] for m in await _drain(pubsub)]
    await pubsub.aclose()
    assert "catchup" not in seen and "unit" in seen


async def _end_offsets(bootstrap: str, topic: str) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in (0, 1)]  # the setup's two partitions
        return {(tp.topic, tp.partition): o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def test_a_catch_up_ends_past_transaction_markers(setup):
    """A transaction's commit marker takes the topic's last offset: no record reaches it, so
    the batches' positions never do. The idle writer's own positions end the catch-up."""
    config, keys, redis = setup
    producer = AIOKafkaProducer(bootstrap_servers=config.bootstrap, transactional_id=keys.prefix)
    await producer.start()
    try:
        async with producer.transaction():
            for m in sample_board(W, AS_OF)[:10]:
                await producer.send(config.topics[board.SCORE], key=b"k", value=orjson.dumps(m),
                                    partition=0)
    finally:
        await producer.stop()
    topic = config.topics[board.SCORE]

    async def marker_written() -> bool:  # the broker writes it after the commit returns
        return (await _end_offsets(config.bootstrap, topic))[(topic, 0)] == 11

    await wait_until(marker_written)
    async with running(config):
        await wait_until(lambda: _rows_if(redis, keys, 10))
        await wait_until(lambda: _not_marked(redis, keys))
    offsets = await store.read_offsets(redis, keys)
    assert offsets[(topic, 0)] == 11  # ten records and the marker

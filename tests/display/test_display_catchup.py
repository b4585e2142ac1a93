"""The catch-up mark's rules: a backlog above the threshold marks the board like a rebuild, and
targets a recreated topic can no longer reach clear themselves.

The rules are pure functions; the writer's use of them runs against a real Redis with a stub
in place of the Kafka consumer (fixed end offsets), so no broker is needed.
"""

from __future__ import annotations

import orjson
import pytest
from aiokafka import TopicPartition
from redis.asyncio import Redis

from display import board, catchup, store
from display.board_writer import BoardWriter, WriterConfig

S, R, B = "unit-scores", "rank-changes", "band-changes"
TOPICS = {board.SCORE: S, board.RANK: R, board.BAND: B}


def test_a_backlog_above_the_threshold_targets_every_partition_behind():
    ends = {(S, 0): 3000, (S, 1): 900, (R, 0): 50, (B, 0): 7}
    stored = {(S, 0): 1000, (S, 1): 100, (R, 0): 50}  # band-changes/0: never read (rebuild)
    assert catchup.lag_targets(ends, stored, 2000) == {(S, 0): 3000, (S, 1): 900}
    # the lag is summed over partitions: 2800 in all, neither partition alone is above 2000
    assert catchup.lag_targets(ends, stored, 2799) == {(S, 0): 3000, (S, 1): 900}
    assert catchup.lag_targets(ends, stored, 2800) == {}


def test_a_stored_position_past_the_end_is_not_a_backlog():
    """A topic created again starts at 0 while the board still holds the old position."""
    assert catchup.lag_targets({(S, 0): 10}, {(S, 0): 5000}, 0) == {}


def test_targets_above_their_partitions_end_are_unreachable():
    targets = {(S, 0): 1000, (S, 1): 800, (R, 0): 40}
    ends = {(S, 0): 30, (S, 1): 800, (B, 0): 9}  # rank-changes/0: end unknown, kept
    assert catchup.unreachable(targets, ends) == {(S, 0): 1000}
    assert catchup.unreachable({}, ends) == {}


class StubConsumer:
    """The part of aiokafka's consumer the writer positions itself with, on fixed offsets."""

    def __init__(self, ends: dict[tuple[str, int], int]):
        self.ends = {TopicPartition(t, p): o for (t, p), o in ends.items()}
        self.positions: dict[TopicPartition, int] = {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.positions.update(dict.fromkeys(tps, 0))

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)


@pytest.fixture
async def writer(redis_server, keys):
    config = WriterConfig(
        bootstrap="127.0.0.1:9",  # never reached: the consumer is a stub
        redis_url=redis_server.url,
        topics=TOPICS,
        prefix=keys.prefix,
        catchup_lag=2000,
    )
    w = BoardWriter(config)
    w._assigned = {TopicPartition(t, 0) for t in TOPICS.values()}
    yield w
    await w.redis.aclose()


async def subscribe(redis: Redis, channel: str):
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    return pubsub


async def published(pubsub) -> list[dict]:
    out = []
    while msg := await pubsub.get_message(timeout=0.3):
        if msg["type"] == "message":
            out.append(orjson.loads(msg["data"]))
    return out


async def board_at(redis: Redis, keys: store.Keys, positions: dict[tuple[str, int], int]):
    await store.ensure_epoch(redis, keys, "earlier")
    await redis.hset(keys.offsets, mapping={f"{t}/{p}": o for (t, p), o in positions.items()})


@pytest.mark.integration
async def test_a_writer_resuming_far_behind_marks_the_board_until_it_reaches_the_end(
    redis, keys, writer
):
    """Back after an outage, its stored positions thousands of messages behind the topics'
    end: screens are told before the first batch, as in a rebuild, and the batch that reaches
    the ends clears it. Only rebuilds (no stored position) used to be marked."""
    await board_at(redis, keys, {(S, 0): 1000, (R, 0): 400, (B, 0): 20})
    ends = {(S, 0): 4000, (R, 0): 900, (B, 0): 20}
    pubsub = await subscribe(redis, keys.channel)
    await writer._sync(StubConsumer(ends))
    assert await catchup.read_catchup(redis, keys) == {(S, 0): 4000, (R, 0): 900}
    assert (await store.read_snapshot(redis, keys))["catching_up"] is True
    assert await published(pubsub) == [{"t": "catchup", "active": True}]
    await store.apply_batch(redis, keys, [], {(S, 0): 4000})
    assert (await store.read_snapshot(redis, keys))["catching_up"] is True
    await store.apply_batch(redis, keys, [], {(R, 0): 900})
    assert (await store.read_snapshot(redis, keys))["catching_up"] is False
    assert await published(pubsub) == [{"t": "catchup", "active": False}]
    await pubsub.aclose()


@pytest.mark.integration
async def test_a_small_backlog_is_live_not_catching_up(redis, keys, writer):
    await board_at(redis, keys, {(S, 0): 1000, (R, 0): 400, (B, 0): 20})
    await writer._sync(StubConsumer({(S, 0): 2900, (R, 0): 500, (B, 0): 20}))  # 2000 behind
    assert await redis.exists(keys.catchup) == 0


@pytest.mark.integration
async def test_a_running_writer_far_behind_is_marked_and_the_targets_follow_the_end(
    redis, keys, writer
):
    """The periodic check: while the board stays far behind, the targets move to the newer
    ends; once it is within the threshold they stay where they are, so the mark can end."""
    await board_at(redis, keys, {(S, 0): 100, (R, 0): 0, (B, 0): 0})
    await writer._check_catchup(StubConsumer({(S, 0): 5000, (R, 0): 0, (B, 0): 0}), timeout=2)
    assert await catchup.read_catchup(redis, keys) == {(S, 0): 5000}
    await store.apply_batch(redis, keys, [], {(S, 0): 3000})  # still 3000 behind 6000
    await writer._check_catchup(StubConsumer({(S, 0): 6000, (R, 0): 0, (B, 0): 0}), timeout=2)
    assert await catchup.read_catchup(redis, keys) == {(S, 0): 6000}
    await store.apply_batch(redis, keys, [], {(S, 0): 5500})
    await writer._check_catchup(StubConsumer({(S, 0): 6500, (R, 0): 0, (B, 0): 0}), timeout=2)
    assert await catchup.read_catchup(redis, keys) == {(S, 0): 6000}
    await store.apply_batch(redis, keys, [], {(S, 0): 6000})
    assert await redis.exists(keys.catchup) == 0


@pytest.mark.integration
async def test_a_mark_a_recreated_topic_cannot_reach_clears_itself(redis, keys, writer):
    """unit-scores was deleted and created again while the board was being rebuilt: its end
    (30) is now below the mark's target (1000), which no read can reach; the rest of the mark
    is reached already. The mark used to stay until someone deleted it by hand."""
    await board_at(redis, keys, {(S, 0): 30, (R, 0): 500, (B, 0): 9})
    assert await catchup.mark_catchup(redis, keys, {(S, 0): 1000, (R, 0): 500})
    pubsub = await subscribe(redis, keys.channel)
    await writer._sync(StubConsumer({(S, 0): 30, (R, 0): 500, (B, 0): 9}))  # a restart
    assert await redis.exists(keys.catchup) == 0
    assert (await store.read_snapshot(redis, keys))["catching_up"] is False
    assert await published(pubsub) == [{"t": "catchup", "active": False}]
    await pubsub.aclose()


@pytest.mark.integration
async def test_a_running_writer_drops_only_the_targets_out_of_reach(redis, keys, writer):
    await board_at(redis, keys, {(S, 0): 30, (R, 0): 200, (B, 0): 9})
    assert await catchup.mark_catchup(redis, keys, {(S, 0): 1000, (R, 0): 500})
    pubsub = await subscribe(redis, keys.channel)
    await writer._check_catchup(StubConsumer({(S, 0): 30, (R, 0): 500, (B, 0): 9}), timeout=2)
    assert await catchup.read_catchup(redis, keys) == {(R, 0): 500}  # still to be read
    assert await published(pubsub) == []  # still catching up: screens keep their state
    await store.apply_batch(redis, keys, [], {(R, 0): 500})
    assert await redis.exists(keys.catchup) == 0
    await pubsub.aclose()


@pytest.mark.integration
async def test_a_target_set_again_meanwhile_is_not_dropped(redis, keys):
    """Another writer marked the recreated topic's new end after this one read the old target:
    only a field still holding the value found unreachable is removed."""
    await store.ensure_epoch(redis, keys, "earlier")
    await redis.hset(keys.catchup, mapping={f"{S}/0": 40, f"{R}/0": 500})
    assert not await catchup.drop_targets(redis, keys, {(S, 0): 1000})
    assert await catchup.read_catchup(redis, keys) == {(S, 0): 40, (R, 0): 500}
    assert await catchup.drop_targets(redis, keys, {(S, 0): 40, (R, 0): 500})
    assert await redis.exists(keys.catchup) == 0

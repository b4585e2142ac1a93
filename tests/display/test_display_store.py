"""The board in a real Redis: atomic batches, idempotency, window switches, concurrent writers."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from redis.asyncio import Redis
from wall_support import sample_board, score_message

from display import board, catchup, store
from scoring.timeutil import parse_ts

pytestmark = pytest.mark.integration

W = "month:2024-04"
AS_OF = "2024-04-14T17:00:00+07:00"


@pytest.fixture
async def ready(redis, keys):
    await store.ensure_epoch(redis, keys, "test")
    return keys


def items(msgs, kind=board.SCORE, ts=1000):
    return [store.Item(kind, board.check(kind, m), ts) for m in msgs]


async def collect(redis, channel, seconds=0.3):
    """Messages published on ``channel`` while the returned coroutine's caller works."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    return pubsub


async def drain(pubsub, seconds=0.3):
    out = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        msg = await pubsub.get_message(timeout=left)
        if msg and msg["type"] == "message":
            out.append(orjson.loads(msg["data"]))
    return out


async def test_a_batch_builds_the_board_in_rank_order(redis, ready):
    keys = ready
    msgs = sample_board(W, AS_OF)
    pubsub = await collect(redis, keys.channel)
    result = await store.apply_batch(redis, keys, items(msgs), {("unit-scores", 0): 104})
    assert result.changed == len(msgs)
    assert await redis.hget(keys.current, "month") == W.encode()
    assert {g.decode() for g in await redis.smembers(keys.groups(W))} == {
        "district",
        "department",
        "ward",
    }
    ordered = [u.decode() for u in await redis.zrange(keys.group(W, "district"), 0, -1)]
    expected = [m for m in msgs if m["peer_group"] == "district"]
    expected.sort(key=lambda m: (m["rank"] is None, m["rank"] or 0, m["unit_id"]))
    assert ordered == [m["unit_id"] for m in expected]
    full = orjson.loads(await redis.hget(keys.units(W), "district-01"))
    assert full["score"]["indicators"]  # the latest score message itself is kept
    assert await store.read_offsets(redis, keys) == {("unit-scores", 0): 104}
    published = await drain(pubsub)
    assert published[0] == {"t": "window", "kind": "month", "window": W}
    assert len([p for p in published if p["t"] == "unit"]) == len(msgs)
    revs = [p["unit"]["rev"] for p in published if p["t"] == "unit"]
    assert revs == sorted(revs) and len(set(revs)) == len(revs)
    await pubsub.aclose()


async def test_a_replayed_batch_changes_and_publishes_nothing(redis, ready):
    keys = ready
    batch = items(sample_board(W, AS_OF))
    await store.apply_batch(redis, keys, batch, {})
    before = await redis.hgetall(keys.units(W))
    # the board's "updated at" is the writer's stamp, and only a change moves it
    stamp = (await store.read_snapshot(redis, keys))["updated"]
    assert stamp is not None and parse_ts(stamp) is not None
    await redis.set(keys.updated, "2024-01-01T00:00:00+00:00")
    pubsub = await collect(redis, keys.channel)
    result = await store.apply_batch(redis, keys, batch, {("unit-scores", 0): 5})
    assert result.changed == 0
    assert await drain(pubsub) == []
    assert await redis.hgetall(keys.units(W)) == before
    assert await store.read_offsets(redis, keys) == {("unit-scores", 0): 5}  # position moves on
    assert (await store.read_snapshot(redis, keys))["updated"] == "2024-01-01T00:00:00+00:00"
    await pubsub.aclose()


async def test_an_older_message_never_moves_the_board_back(redis, ready):
    keys = ready
    unit = {"unit_id": "district-01", "name": "Quận 1", "peer_group": "district"}
    new = score_message(unit, W, "2024-04-14T18:00:00+07:00", 91.0, 1, 22, offset=50)
    old = score_message(unit, W, "2024-04-14T17:00:00+07:00", 40.0, 22, 22, offset=40)
    await store.apply_batch(redis, keys, items([new], ts=2000), {})
    await store.apply_batch(redis, keys, items([old], ts=3000), {})
    snap = await store.read_snapshot(redis, keys)
    (row,) = snap["boards"][W]["district"]
    assert (row["total"], row["rank"], row["band"]) == (91.0, 1, "excellent")


async def test_new_month_switches_the_board_and_late_messages_stay_in_theirs(redis, ready):
    keys = ready
    unit = {"unit_id": "district-01", "name": "Quận 1", "peer_group": "district"}
    april = score_message(unit, W, AS_OF, 70.0, 1, 1)
    may = score_message(unit, "month:2024-05", "2024-05-01T00:10:00+07:00", 50.0, 1, 1)
    await store.apply_batch(redis, keys, items([april]), {})
    pubsub = await collect(redis, keys.channel)
    await store.apply_batch(redis, keys, items([may]), {})
    assert await redis.hget(keys.current, "month") == b"month:2024-05"
    assert (await drain(pubsub))[0] == {"t": "window", "kind": "month", "window": "month:2024-05"}
    assert 0 < await redis.ttl(keys.units(W)) <= store.OLD_WINDOW_TTL
    late = score_message(unit, W, "2024-04-30T23:59:00+07:00", 99.0, 1, 1)
    await store.apply_batch(redis, keys, items([late], ts=5000), {})
    assert await redis.hget(keys.current, "month") == b"month:2024-05"
    snap = await store.read_snapshot(redis, keys)
    assert list(snap["boards"]) == ["month:2024-05"]
    assert snap["boards"]["month:2024-05"]["district"][0]["total"] == 50.0
    assert orjson.loads(await redis.hget(keys.view(W), "district-01"))["total"] == 99.0
    await pubsub.aclose()


async def window_ttls(redis, keys, window, groups=("district",)):
    names = [keys.units(window), keys.view(window), keys.groups(window)]
    names += [keys.group(window, g) for g in groups]
    return [await redis.ttl(k) for k in names]


async def test_every_window_a_batch_leaves_behind_expires(redis, ready):
    """Not only the window that was current before the batch: months skipped inside one batch
    (a rebuild from the topics' beginning, a writer that was away) and every window of a
    rebuild's first batch were kept for ever."""
    keys = ready
    unit = {"unit_id": "district-01", "name": "Quận 1", "peer_group": "district"}

    def score(window, as_of):
        return score_message(unit, window, as_of, 80.0, 1, 1)

    kept = range(1, store.OLD_WINDOW_TTL + 1)
    # the first batch: no window was current before it
    first = [
        score("month:2024-01", "2024-01-31T10:00:00+07:00"),
        score("month:2024-02", "2024-02-28T10:00:00+07:00"),
        score("year:2023", "2023-12-31T10:00:00+07:00"),
        score("year:2024", "2024-02-28T10:00:00+07:00"),
    ]
    await store.apply_batch(redis, keys, items(first), {})
    for window in ("month:2024-01", "year:2023"):
        assert all(t in kept for t in await window_ttls(redis, keys, window)), window
    for window in ("month:2024-02", "year:2024"):
        assert await window_ttls(redis, keys, window) == [-1] * 4, window
    # the next one skips March and April: both expire with February
    later = [
        score("month:2024-03", "2024-03-31T10:00:00+07:00"),
        score("month:2024-04", "2024-04-30T10:00:00+07:00"),
        score("month:2024-05", "2024-05-10T10:00:00+07:00"),
    ]
    await store.apply_batch(redis, keys, items(later, ts=2000), {})
    assert await redis.hget(keys.current, "month") == b"month:2024-05"
    for window in ("month:2024-02", "month:2024-03", "month:2024-04"):
        assert all(t in kept for t in await window_ttls(redis, keys, window)), window
    assert await window_ttls(redis, keys, "month:2024-05") == [-1] * 4
    # a late message in a new group of a past window, and one that brings back a window
    # whose keys are gone: neither is kept for ever
    ward = {"unit_id": "ward-001", "name": "Phường 1", "peer_group": "ward"}
    await redis.delete(*await redis.keys(f"{keys.prefix}:w:month:2024-01:*"))  # as if expired
    late = [
        score_message(ward, "month:2024-03", "2024-03-31T11:00:00+07:00", 60.0, 1, 1),
        score("month:2024-01", "2024-01-31T11:00:00+07:00"),
    ]
    await store.apply_batch(redis, keys, items(late, ts=3000), {})
    ttls = await window_ttls(redis, keys, "month:2024-03", ("district", "ward"))
    assert all(t in kept for t in ttls), ttls
    assert all(t in kept for t in await window_ttls(redis, keys, "month:2024-01")), "recreated"
    # what is kept for ever is the current board, nothing else
    endless = {
        k.decode() for k in await redis.keys(f"{keys.prefix}:w:*") if await redis.ttl(k) == -1
    }
    assert endless == {
        name(w)
        for w in ("month:2024-05", "year:2024")
        for name in (keys.units, keys.view, keys.groups)
    } | {keys.group("month:2024-05", "district"), keys.group("year:2024", "district")}


async def test_rank_and_band_changes_reach_the_rows(redis, ready):
    keys = ready
    unit = {"unit_id": "district-03", "name": "Quận 3", "peer_group": "district"}
    await store.apply_batch(redis, keys, items([score_message(unit, W, AS_OF, 79.0, 4, 22)]), {})
    rc = {
        "peer_group": "district",
        "window": W,
        "unit_id": "district-03",
        "old_rank": 4,
        "new_rank": 2,
        "total": 81.0,
        "as_of": AS_OF,
    }
    bc = {
        "unit_id": "district-03",
        "window": W,
        "old_band": "fair",
        "new_band": "good",
        "direction": "up",
        "total": 81.0,
        "as_of": AS_OF,
        "top_losses": [],
    }
    batch = items([rc], board.RANK, 2000) + items([bc], board.BAND, 2000)
    assert (await store.apply_batch(redis, keys, batch, {})).changed == 1
    (row,) = (await store.read_snapshot(redis, keys))["boards"][W]["district"]
    assert row["rank"] == 2 and row["band"] == "good"
    assert row["move"] == {"from": 4, "to": 2}
    assert row["band_change"]["direction"] == "up"
    assert await redis.zscore(keys.group(W, "district"), "district-03") == 2.0


async def test_a_lost_board_is_reported_not_silently_rewritten(redis, keys):
    with pytest.raises(store.BoardLost):
        await store.apply_batch(redis, keys, items(sample_board(W, AS_OF)[:2]), {})
    assert await redis.exists(keys.units(W)) == 0


async def test_two_writers_at_once_end_as_one(redis, ready, redis_server):
    """Optimistic transactions: concurrent batches over the same rows all land, none is lost."""
    keys = ready
    other = Redis.from_url(redis_server.url)
    msgs = sample_board(W, AS_OF)
    newer = sample_board(W, "2024-04-14T18:00:00+07:00", seed=99)
    a = [store.apply_batch(redis, keys, items(msgs[i : i + 5]), {}) for i in range(0, 104, 5)]
    b = [
        store.apply_batch(other, keys, items(newer[i : i + 7], ts=2000), {})
        for i in range(0, 104, 7)
    ]
    await asyncio.gather(*a, *b)
    await other.aclose()
    snap = await store.read_snapshot(redis, keys)
    rows = {r["unit_id"]: r for g in snap["boards"][W].values() for r in g}
    assert len(rows) == 104
    for m in newer:  # the newer board wins everywhere, whatever the interleaving
        assert rows[m["unit_id"]]["total"] == m["total"]
        assert rows[m["unit_id"]]["rank"] == m["rank"]


async def test_changes_carry_the_writers_stamp(redis, ready):
    """A screen's "updated at" comes from the writer for changes as for snapshots: it used to
    take a change's time from the screen's own clock."""
    keys = ready
    pubsub = await collect(redis, keys.channel)
    await store.apply_batch(redis, keys, items(sample_board(W, AS_OF)[:3]), {})
    stamp = (await redis.get(keys.updated)).decode()
    changes = [p for p in await drain(pubsub) if p["t"] == "unit"]
    assert len(changes) == 3 and {c["updated"] for c in changes} == {stamp}
    await pubsub.aclose()


async def test_a_catch_up_mark_ends_when_the_stored_positions_reach_it(redis, ready, redis_server):
    """Set when a writer reads partitions from their beginning; cleared by the batch that
    reaches every target, whichever writer writes it (the one that set it may be gone)."""
    keys = ready
    pubsub = await collect(redis, keys.channel)
    ends = {("unit-scores", 0): 10, ("unit-scores", 1): 4}
    assert await catchup.mark_catchup(redis, keys, ends)
    assert (await store.read_snapshot(redis, keys))["catching_up"] is True
    assert await catchup.read_catchup(redis, keys) == ends
    assert await drain(pubsub) == [{"t": "catchup", "active": True}]
    # a second writer's targets merge: the furthest one per partition stays
    assert await catchup.mark_catchup(redis, keys, {("unit-scores", 0): 7, ("band", 0): 2})
    assert await catchup.read_catchup(redis, keys) == {**ends, ("band", 0): 2}
    rows = items(sample_board(W, AS_OF)[:5])
    await store.apply_batch(redis, keys, rows, {("unit-scores", 0): 10})
    await store.apply_batch(redis, keys, [], {("band", 0): 2})
    assert (await store.read_snapshot(redis, keys))["catching_up"] is True  # partition 1 is not
    assert [p["t"] for p in await drain(pubsub)] == ["window"] + ["unit"] * 5
    # the writer that set the mark is gone; another one reads partition 1 up to its end
    other = Redis.from_url(redis_server.url)
    await store.apply_batch(other, keys, [], {("unit-scores", 1): 4})
    await other.aclose()
    assert await redis.exists(keys.catchup) == 0
    assert (await store.read_snapshot(redis, keys))["catching_up"] is False
    assert await drain(pubsub) == [{"t": "catchup", "active": False}]
    # a writer that starts from the beginning of partitions the board already holds to their
    # end (rebuilt by another writer meanwhile) announces nothing
    assert not await catchup.mark_catchup(redis, keys, ends)
    assert await redis.exists(keys.catchup) == 0 and await drain(pubsub) == []
    await pubsub.aclose()

"""The board in Redis: key names, the atomic batch write, and the snapshot read.

Layout (``P`` is the key prefix, ``bando:board`` by default, so tests can share one Redis)::

    P:current               hash  window kind -> current window ("month" -> "month:2024-04")
    P:w:{window}:units      hash  unit_id -> full row JSON (latest score message inside)
    P:w:{window}:view       hash  unit_id -> the row as screens see it (small JSON)
    P:w:{window}:groups     set   peer groups seen in that window
    P:w:{window}:g:{group}  zset  unit_id scored by rank (unranked last): the ordered board
    P:offsets               hash  "topic/partition" -> next offset to read
    P:epoch                 string set when the writer first syncs; gone means Redis lost data
    P:rev                   counter, stamps every row write so screens can drop stale changes
    P:updated               string  wall time of the last write a screen sees
    P:catchup               hash  "topic/partition" -> end offset: set while the board is
                                  rebuilt or far behind the topics, gone once caught up
    P:changes               pub/sub channel of every change (row, window switch, catch-up)

Rows are keyed by window, not by window kind, so a late message for last month updates last
month's board and never the current one; ``P:current`` moves forward only. Consumed offsets are
written in the same transaction as the rows they produced, so after any crash the board and
its position agree, and a Redis that comes back empty (no epoch) is rebuilt from the topics.

A rebuild, or a writer back from a long outage, replays history: ``P:catchup`` says so to
screens until the board's stored positions reach its targets (``display.catchup``). It holds
its targets rather than an owner, so any writer's batch can end it, including one that took
over from a writer that died mid-rebuild.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from display import board
from display.exceptions import DisplayError
from scoring.timeutil import parse_ts

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "bando:board"
OLD_WINDOW_TTL = 40 * 86_400  # seconds a replaced window's board is kept, for late readers
# the catch-up mark's messages on P:changes (display.catchup sets it, apply_batch clears it)
CATCHUP_ON = b'{"t":"catchup","active":true}'
CATCHUP_OFF = b'{"t":"catchup","active":false}'


class BoardLost(DisplayError):
    """Redis no longer holds the board (restarted without its data): rebuild from offsets."""


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    @property
    def current(self) -> str:
        return f"{self.prefix}:current"

    @property
    def offsets(self) -> str:
        return f"{self.prefix}:offsets"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:epoch"

    @property
    def rev(self) -> str:
        return f"{self.prefix}:rev"

    @property
    def updated(self) -> str:
        """Wall time of the last write a screen sees (the page's "updated at")."""
        return f"{self.prefix}:updated"

    @property
    def catchup(self) -> str:
        """Set while the board catches up with the topics (see :mod:`display.catchup`)."""
        return f"{self.prefix}:catchup"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:changes"

    def units(self, window: str) -> str:
        return f"{self.prefix}:w:{window}:units"

    def view(self, window: str) -> str:
        return f"{self.prefix}:w:{window}:view"

    def groups(self, window: str) -> str:
        return f"{self.prefix}:w:{window}:groups"

    def group(self, window: str, peer_group: str) -> str:
        return f"{self.prefix}:w:{window}:g:{peer_group}"


@dataclass
class Item:
    """One checked message of a batch, with its Kafka record timestamp (tie-breaker)."""

    kind: str
    msg: dict[str, Any]
    timestamp_ms: int = 0


@dataclass
class BatchResult:
    changed: int = 0  # rows a screen sees differently (published)
    stored: int = 0  # rows written (a newer copy of the same score is stored, not published)
    published: list[bytes] = field(default_factory=list)


def connect(url: str, password: str = "") -> Redis:
    """A client with short timeouts: an outage must surface as an error, not a hang."""
    return Redis.from_url(
        url,
        password=password or None,
        socket_timeout=5,
        socket_connect_timeout=3,
        health_check_interval=15,
        # a pooled connection that died with a restarted Redis is retried on a fresh one
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def redact(url: str) -> str:
    """The URL without its user and password, for logs (up to the authority's last "@", where
    redis-py splits it: a password may hold an "@")."""
    return re.sub(r"//[^/]*@", "//***@", url)


def stamp_now() -> str:
    """The writer's wall time for ``P:updated`` and the changes (one clock for every screen)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def offset_field(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def parse_positions(raw: dict[Any, Any]) -> dict[tuple[str, int], int]:
    """A hash of "topic/partition" -> offset (``P:offsets``, ``P:catchup``) as a dict."""
    out: dict[tuple[str, int], int] = {}
    for k, v in raw.items():
        topic, _, part = _text(k).rpartition("/")
        out[(topic, int(part))] = int(v)
    return out


async def read_offsets(redis: Redis, keys: Keys) -> dict[tuple[str, int], int]:
    return parse_positions(await redis.hgetall(keys.offsets))


async def ensure_epoch(redis: Redis, keys: Keys, token: str) -> None:
    await redis.set(keys.epoch, token, nx=True)


async def check_epoch(redis: Redis, keys: Keys) -> None:
    """Raise :class:`BoardLost` if Redis came back without the board (no epoch key)."""
    if not await redis.exists(keys.epoch):
        raise BoardLost("the board's epoch key is missing")


async def apply_batch(
    redis: Redis,
    keys: Keys,
    items: list[Item],
    offsets: dict[tuple[str, int], int],
    *,
    max_attempts: int = 100,
) -> BatchResult:
    """Apply ``items`` and store ``offsets``, atomically; publish what changed.

    Optimistic concurrency (WATCH on the touched hashes) makes a second writer safe: a
    conflicting transaction is recomputed from the fresh rows. Raises :class:`BoardLost` when
    the epoch key is gone. A batch whose positions complete a catch-up ends it (no items:
    only positions, e.g. of an idle writer).
    """
    # apply in version order: the result does not depend on it, but fewer rows flip back and forth
    ordered = sorted(items, key=lambda it: (parse_ts(it.msg["as_of"]) or 0, it.timestamp_ms))
    for _attempt in range(max_attempts):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                return await _transaction(pipe, keys, ordered, offsets)
            except WatchError:
                log.debug("board write conflicted with another writer; retrying")
    raise DisplayError(f"board write kept conflicting after {max_attempts} attempts")


async def _transaction(
    pipe: Any, keys: Keys, items: list[Item], offsets: dict[tuple[str, int], int]
) -> BatchResult:
    by_window: dict[str, list[str]] = {}
    for it in items:
        ids = by_window.setdefault(it.msg["window"], [])
        if it.msg["unit_id"] not in ids:
            ids.append(it.msg["unit_id"])
    windows = sorted(by_window)
    # the catch-up mark too: a writer adding targets meanwhile must not see them cleared
    await pipe.watch(*[keys.units(w) for w in windows], keys.current, keys.epoch, keys.catchup)
    # after WATCH the pipeline runs commands at once, until MULTI
    if await pipe.get(keys.epoch) is None:
        raise BoardLost("the board's epoch key is missing")
    caught_up = await _catches_up(pipe, keys, offsets)
    current = {_text(k): _text(v) for k, v in (await pipe.hgetall(keys.current)).items()}
    rows: dict[tuple[str, str], board.Record | None] = {}
    for w, ids in by_window.items():
        for uid, blob in zip(ids, await pipe.hmget(keys.units(w), ids), strict=True):
            rows[(w, uid)] = orjson.loads(blob) if blob else None
    before = dict(rows)
    changed: list[tuple[str, str]] = []
    for it in items:
        key = (it.msg["window"], it.msg["unit_id"])
        new = board.apply(rows[key], it.kind, it.msg, it.timestamp_ms)
        if new is not None:
            rows[key] = new
            if key not in changed:
                changed.append(key)
    # rows whose versions moved are stored; only those a screen would see differently are
    # stamped with a new rev and published
    shown: list[tuple[str, str]] = []
    for key in changed:
        rec = rows[key]
        assert rec is not None
        if board.shows_differently(before[key], rec):
            shown.append(key)
    switched = _switches(current, windows)
    stale = _stale_windows(current, switched, windows)
    if unwatched := [keys.units(w) for w in stale if w not in by_window]:
        # a writer that adds a group to the replaced window meanwhile would leave its zset
        # without the expiry
        await pipe.watch(*unwatched)
    old_groups = {w: {_text(g) for g in await pipe.smembers(keys.groups(w))} for w in stale}
    first_rev = 0
    if shown:
        first_rev = await pipe.incrby(keys.rev, len(shown)) - len(shown) + 1

    pipe.multi()
    published: list[bytes] = []
    stamp = stamp_now()
    for kind, (_old_w, new_w) in switched.items():
        pipe.hset(keys.current, kind, new_w)
        published.append(orjson.dumps({"t": "window", "kind": kind, "window": new_w}))
    if shown:
        # the time the board last changed for a screen, kept with it: a snapshot after a
        # gateway restart or a reconnect must not make an old board look fresh
        pipe.set(keys.updated, stamp)
    revs = {key: first_rev + i for i, key in enumerate(shown)}
    for key in changed:
        rec = rows[key]
        assert rec is not None
        if key in revs:
            rec["rev"] = revs[key]
        change = _write_row(pipe, keys, rec, before[key], stamp)
        if key in revs:
            published.append(change)
    # after the row writes: EXPIRE on a key that does not exist yet is lost
    for key in changed:
        rec = rows[key]
        if key[0] in old_groups and rec is not None and rec.get("peer_group"):
            old_groups[key[0]].add(rec["peer_group"])  # a group new in this batch
    for w, groups in old_groups.items():
        _expire_window(pipe, keys, w, sorted(groups))
    if offsets:
        fields = {offset_field(t, p): o for (t, p), o in offsets.items()}
        pipe.hset(keys.offsets, mapping=fields)
    if caught_up:
        pipe.delete(keys.catchup)
        published.append(CATCHUP_OFF)
    for payload in published:
        pipe.publish(keys.channel, payload)
    await pipe.execute()
    return BatchResult(changed=len(shown), stored=len(changed), published=published)


async def _catches_up(pipe: Any, keys: Keys, offsets: dict[tuple[str, int], int]) -> bool:
    """Whether the board reaches every target of the catch-up mark with this batch.

    A stored position is a writer's word that the board holds every record before it (it was
    written with them), whoever wrote it: so the furthest of the stored and the batch's counts.
    """
    targets = {_text(k): int(v) for k, v in (await pipe.hgetall(keys.catchup)).items()}
    if not targets:
        return False
    ours = {offset_field(t, p): o for (t, p), o in offsets.items()}
    names = list(targets)
    stored = await pipe.hmget(keys.offsets, names)
    return all(
        max(int(s) if s else -1, ours.get(f, -1)) >= targets[f]
        for f, s in zip(names, stored, strict=True)
    )


def _switches(current: dict[str, str], windows: Iterable[str]) -> dict[str, tuple[str | None, str]]:
    """Window kinds whose current window moves forward with this batch: kind -> (old, new)."""
    out: dict[str, tuple[str | None, str]] = {}
    for w in windows:
        kind, _ = board.window_parts(w)
        cur = out[kind][1] if kind in out else current.get(kind)
        if board.is_newer_window(w, cur):
            out[kind] = (current.get(kind), w)
    return out


def _stale_windows(
    current: dict[str, str], switched: dict[str, tuple[str | None, str]], windows: list[str]
) -> list[str]:
    """Windows to expire: the one the batch replaced, and every window of the batch that is
    not the current one after it (months skipped inside one batch, a rebuild's first batch, a
    late message that brought back a window already expired). Each gets 40 days from now."""
    now = {**current, **{kind: new for kind, (_old, new) in switched.items()}}
    out = {old for old, _new in switched.values() if old is not None}
    out.update(w for w in windows if now.get(board.window_parts(w)[0]) != w)
    return sorted(out)


def _expire_window(pipe: Any, keys: Keys, window: str, groups: list[str]) -> None:
    for key in [keys.units(window), keys.view(window), keys.groups(window)]:
        pipe.expire(key, OLD_WINDOW_TTL)
    for g in groups:
        pipe.expire(keys.group(window, g), OLD_WINDOW_TTL)


def _write_row(
    pipe: Any, keys: Keys, rec: board.Record, old: board.Record | None, stamp: str
) -> bytes:
    """Queue the writes of one changed row; returns the change message to publish, with the
    stamp ``P:updated`` gets: a screen's "updated at" never comes from the screen's clock."""
    w, uid, pg = rec["window"], rec["unit_id"], rec.get("peer_group")
    shown = board.view(rec)
    shown_json = orjson.dumps(shown)
    pipe.hset(keys.units(w), uid, orjson.dumps(rec))
    pipe.hset(keys.view(w), uid, shown_json)
    old_pg = old.get("peer_group") if old else None
    if old_pg and old_pg != pg:
        pipe.zrem(keys.group(w, old_pg), uid)
    if pg:
        pipe.sadd(keys.groups(w), pg)
        pipe.zadd(keys.group(w, pg), {uid: board.sort_key(rec)})
    return (
        b'{"t":"unit","window":' + orjson.dumps(w) + b',"updated":' + orjson.dumps(stamp)
        + b',"unit":' + shown_json + b"}"
    )


async def read_snapshot(redis: Redis, keys: Keys) -> dict[str, Any]:
    """The current board of every window kind, grouped by peer group, in rank order."""
    current = {_text(k): _text(v) for k, v in (await redis.hgetall(keys.current)).items()}
    boards: dict[str, dict[str, list[board.Record]]] = {}
    for window in sorted(set(current.values())):
        raw = await redis.hvals(keys.view(window))
        groups: dict[str, list[board.Record]] = {}
        for blob in raw:
            v = orjson.loads(blob)
            groups.setdefault(v.get("peer_group") or "", []).append(v)
        boards[window] = {g: board.order_views(vs) for g, vs in sorted(groups.items())}
    updated = await redis.get(keys.updated)
    return {"windows": current, "boards": boards,
            "updated": _text(updated) if updated is not None else None,
            "catching_up": bool(await redis.exists(keys.catchup))}

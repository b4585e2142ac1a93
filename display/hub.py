"""Fan-out of board changes to the screens of one gateway process.

One Redis subscription per process, whatever the number of screens: each change is framed as
a Server-Sent Event once and appended to every screen's buffer. A screen that connects (or
every screen, after the subscription was lost) first gets a snapshot read from Redis *after*
it was registered; changes that arrive meanwhile are held and sent after the snapshot, so
nothing falls between the two (a change both in the snapshot and held is harmless: screens
drop a row whose ``rev`` is not newer than the one they show).

A screen that does not read its stream (buffer over ``max_buffer`` frames) is cut off; its
browser reconnects and gets a fresh snapshot, which is cheaper than buffering for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bando import metrics
from display import store

log = logging.getLogger(__name__)


def frame(event: str, data: bytes) -> bytes:
    """One SSE frame. ``data`` is orjson output, which never contains a raw newline."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


# a named event, not an SSE comment: the page's watchdog must see it to know the link is alive
PING = b"event: ping\ndata: {}\n\n"


class RowDecorator(Protocol):
    """Adds to rows before they go out (the gateway's commitments): it may read Redis."""

    async def snapshot(self, redis: Redis, keys: store.Keys, snap: dict[str, Any]) -> None: ...

    async def change(self, redis: Redis, keys: store.Keys, data: bytes) -> bytes: ...


class Screen:
    """One connected push stream: a buffer of frames and a wake-up for its writer."""

    __slots__ = ("buf", "wake", "held", "closed", "since", "overflowed")

    def __init__(self) -> None:
        self.buf: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.held: list[bytes] | None = []  # not None: waiting for a snapshot
        self.closed = False
        # needs one more snapshot after the one being read: held changes were lost, or the
        # window changed while it was read (the page drops changes of a window it lacks)
        self.overflowed = False
        self.since = time.monotonic()

    def push(self, data: bytes, max_buffer: int) -> None:
        if self.closed:
            return
        if self.held is not None:
            self.held.append(data)
            if len(self.held) > max_buffer:
                # some may be newer than the snapshot being read: take another one after it
                self.held.clear()
                self.overflowed = True
            return
        if len(self.buf) >= max_buffer:
            self.closed = True  # too slow: let it reconnect and resync
        else:
            self.buf.append(data)
        self.wake.set()

    def take(self) -> bytes:
        out = b"".join(self.buf)
        self.buf.clear()
        return out


class Hub:
    def __init__(
        self, redis: Redis, keys: store.Keys, *, max_buffer: int = 2000, ping_seconds: float = 15
    ):
        self.redis = redis
        self.ping_seconds = ping_seconds
        self.keys = keys
        self.max_buffer = max_buffer
        self.screens: set[Screen] = set()
        self.redis_ok = False
        self.last_change = 0.0  # monotonic time of the last change fanned out
        self.catching_up = False  # as the last snapshot or catch-up message said (/healthz)
        self._waiting: list[Screen] = []
        self._reading: set[Screen] = set()  # screens whose snapshot is being read
        self._want_snapshot = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.decorator: RowDecorator | None = None

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._subscription(), name="hub-subscription"),
            asyncio.create_task(self._snapshots(), name="hub-snapshots"),
            asyncio.create_task(self._heartbeats(), name="hub-heartbeats"),
        ]

    async def stop(self) -> None:
        # redis-py's get_message can swallow a cancellation that lands in its read timeout,
        # so the loops also watch a flag (and wake at least once a second to see it)
        self._stopping = True
        self._want_snapshot.set()
        self._subscribed.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.wait(self._tasks, timeout=5)
        for s in self.screens:
            s.closed = True
            s.wake.set()

    def register(self) -> Screen:
        screen = Screen()
        self.screens.add(screen)
        metrics.DISPLAY_CLIENTS.set(len(self.screens))
        screen.buf.append(self._status_frame())
        # out now: with Redis down no snapshot wakes the writer, and the screen would learn
        # the state only at the next heartbeat
        screen.wake.set()
        self._waiting.append(screen)
        self._want_snapshot.set()
        return screen

    def unregister(self, screen: Screen) -> None:
        screen.closed = True
        self.screens.discard(screen)
        metrics.DISPLAY_CLIENTS.set(len(self.screens))

    async def _heartbeats(self) -> None:
        """One timer for every screen (a timeout per screen costs a task per wake-up)."""
        while not self._stopping:
            await asyncio.sleep(self.ping_seconds)
            for s in self.screens:
                if not s.closed:
                    s.buf.append(PING)
                    s.wake.set()

    def _status_frame(self) -> bytes:
        return frame("status", orjson.dumps({"redis": self.redis_ok, "ping": self.ping_seconds}))

    def _broadcast(self, data: bytes) -> None:
        for s in self.screens:
            s.push(data, self.max_buffer)

    def _resync_all(self) -> None:
        for s in self.screens:
            if s.held is None:
                s.held = []
                self._waiting.append(s)
            elif s in self._reading:
                # the snapshot being read may predate this change (a new month, then a new
                # year a few ms later): it would stay on the old board for good
                s.overflowed = True
        self._want_snapshot.set()

    def resync(self) -> None:
        """Send every screen a fresh snapshot (e.g. after the commitments were reloaded)."""
        self._resync_all()

    def _set_redis(self, ok: bool) -> None:
        if ok != self.redis_ok:
            self.redis_ok = ok
            log.log(logging.INFO if ok else logging.WARNING, "Redis %s", "up" if ok else "DOWN")
            data = self._status_frame()
            for s in self.screens:  # status goes straight out, even to screens being resynced
                if not s.closed:
                    s.buf.append(data)
                    s.wake.set()

    async def _subscription(self) -> None:
        delay = 0.2
        while not self._stopping:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.keys.channel)
                while not self._stopping:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    if msg["type"] == "subscribe":
                        # (re)subscribed: anything published while we were away is lost to us,
                        # so every screen gets a fresh snapshot read from now on
                        log.info("subscribed to %s", self.keys.channel)
                        self._set_redis(True)
                        self._subscribed.set()
                        self._resync_all()
                        delay = 0.2
                    elif msg["type"] == "message":
                        data = msg["data"]
                        if self.decorator is not None:
                            # awaited in line: changes keep their order
                            data = await self.decorator.change(self.redis, self.keys, data)
                        self._on_change(data)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                self._set_redis(False)
                log.debug("subscription lost: %r", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            if not self._stopping:
                await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)

    def _on_change(self, data: bytes) -> None:
        self.last_change = time.monotonic()
        # a new month or year: screens take the new board whole; a catch-up that begins or
        # ends: the snapshot says so, and at the end brings the board as it is now
        if data.startswith((b'{"t":"window"', b'{"t":"catchup"')):
            if data.startswith(b'{"t":"catchup"'):
                self.catching_up = data == store.CATCHUP_ON  # /healthz, with no screen too
            self._resync_all()
            return
        self._broadcast(frame("change", data))

    async def _snapshots(self) -> None:
        """Serve waiting screens in batches: one Redis read for all who registered before it."""
        while not self._stopping:
            await self._want_snapshot.wait()
            self._want_snapshot.clear()
            if not self._waiting:
                continue
            await self._subscribed.wait()
            if self._stopping:
                return
            batch, self._waiting = self._waiting, []
            self._reading = set(batch)
            try:
                snap = await store.read_snapshot(self.redis, self.keys)
                if self.decorator is not None:
                    await self.decorator.snapshot(self.redis, self.keys, snap)
            except (RedisError, OSError) as exc:
                log.debug("snapshot read failed: %r", exc)
                self._reading = set()
                self._waiting = batch + self._waiting
                self._set_redis(False)
                await asyncio.sleep(0.5)
                self._want_snapshot.set()
                continue
            self._reading = set()
            # a read that works says Redis is back (a failed read said it was down, and a
            # subscription that never broke would never say otherwise)
            self._set_redis(True)
            self.catching_up = bool(snap.get("catching_up"))
            snap["server_time"] = datetime.now(UTC).isoformat(timespec="seconds")
            data = frame("snapshot", orjson.dumps(snap))
            for s in batch:
                if s.closed:
                    continue
                s.buf.append(data)
                if s.overflowed:
                    s.overflowed = False
                    s.held = []
                    self._waiting.append(s)
                    self._want_snapshot.set()
                else:
                    held, s.held = s.held or [], None
                    s.buf.extend(held)
                s.wake.set()

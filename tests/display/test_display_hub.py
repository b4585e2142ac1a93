"""Fan-out bookkeeping of one screen (no I/O): slow screens, changes held during a snapshot."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from display import store
from display.hub import Hub, Screen, frame


def test_frames_are_single_sse_events():
    assert frame("change", b'{"a":"x\\ny"}') == b'event: change\ndata: {"a":"x\\ny"}\n\n'


async def test_changes_wait_behind_the_snapshot_of_a_new_screen():
    s = Screen()
    s.push(b"c1", max_buffer=10)
    assert list(s.buf) == [] and s.held == [b"c1"]  # held until its snapshot is out
    s.held = None
    s.push(b"c2", max_buffer=10)
    assert s.take() == b"c2" and s.wake.is_set()


async def test_a_screen_that_does_not_read_is_cut_off():
    s = Screen()
    s.held = None
    for i in range(3):
        s.push(b"x%d" % i, max_buffer=3)
    assert not s.closed
    s.push(b"one too many", max_buffer=3)
    assert s.closed  # its browser reconnects and gets a fresh snapshot
    s.push(b"ignored", max_buffer=3)
    assert len(s.buf) == 3


async def test_too_many_held_changes_ask_for_another_snapshot():
    s = Screen()
    for i in range(5):
        s.push(b"x%d" % i, max_buffer=3)
    assert s.overflowed and s.held == [b"x4"]


class _Reads:
    """``store.read_snapshot`` stand-in: each read waits for its go, then answers or fails."""

    def __init__(self) -> None:
        self.go: list[asyncio.Event] = []
        self.answers: list[Any] = []

    async def __call__(self, redis: Any, keys: Any) -> dict[str, Any]:
        gate = asyncio.Event()
        self.go.append(gate)
        await gate.wait()
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


async def _started(monkeypatch: Any) -> tuple[Hub, _Reads, asyncio.Task[None]]:
    reads = _Reads()
    monkeypatch.setattr(store, "read_snapshot", reads)
    hub = Hub(None, store.Keys("t"))  # type: ignore[arg-type]
    hub._subscribed.set()
    return hub, reads, asyncio.create_task(hub._snapshots())


async def _until(check: Any) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


async def test_a_window_change_during_a_screens_snapshot_read_gets_it_another(monkeypatch):
    """New month, then new year a few ms later: the second change lands while the screen's
    snapshot is being read (it may hold the old year); without another snapshot the page
    drops every change of the new year for good (found in review)."""
    hub, reads, task = await _started(monkeypatch)
    reads.answers = [{"windows": {"year": "year:2024"}}, {"windows": {"year": "year:2025"}}]
    screen = hub.register()
    await _until(lambda: len(reads.go) == 1)
    hub._on_change(b'{"t":"window","kind":"year"}')  # while the first read is in flight
    reads.go[0].set()
    await _until(lambda: len(reads.go) == 2)
    reads.go[1].set()
    await _until(lambda: b"year:2025" in b"".join(screen.buf))
    task.cancel()
    assert b"year:2024" in b"".join(screen.buf)  # the first one went out, then the new one


async def test_a_read_that_works_again_says_redis_is_back(monkeypatch):
    """A failed snapshot read says Redis is down; the subscription may never break, so the
    next read that works must say it is up, or every screen shows the banner for good."""
    hub, reads, task = await _started(monkeypatch)
    hub.redis_ok = True
    reads.answers = [RedisConnectionError("gone"), {"windows": {}}]
    screen = hub.register()
    await _until(lambda: len(reads.go) == 1)
    reads.go[0].set()
    await _until(lambda: not hub.redis_ok)
    await _until(lambda: len(reads.go) == 2)
    reads.go[1].set()
    await _until(lambda: hub.redis_ok)
    task.cancel()
    assert b'"redis":true' in b"".join(screen.buf)

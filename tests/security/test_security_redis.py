"""Redis with ACL users (``bando.infra.redis_acl.SecureRedisServer``): the board writer may
write the board, the gateway may only read it and subscribe, nobody else gets in.

The real board writer and the real gateway run in-process with their own users (the writer
consumes the session broker), so the rules are proved sufficient as well as restrictive.
"""

from __future__ import annotations

import asyncio
import contextlib
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from fault_support import Msg, listening_sockets, produce
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from bando.infra import KafkaBroker, create_topics
from bando.infra.passwords import new_password
from bando.infra.redis_acl import SecureRedisServer
from display import board
from display.board_writer import BoardWriter, WriterConfig
from display.gateway import GatewayConfig, build_app

pytestmark = pytest.mark.integration

PREFIX = "bando:board"


def _score(unit: str, total: float, rank: int) -> dict[str, Any]:
    return {"unit_id": unit, "name": unit.upper(), "peer_group": "district",
            "window": "month:2024-04", "as_of": "2024-04-14T17:00:00+07:00", "model": "vn766@1",
            "total": total, "band": "good", "rank": rank, "peer_count": 3,
            "groups": {"progress": {"points": 10.0, "max": 20}},
            "indicators": {"on_time": {"num": 1, "den": 2, "points": 10.0, "max": 20,
                                       "applicable": True}},
            "input": {"topic": "procedure-events", "partition": 0, "offset": rank}}


@pytest.fixture
def secure_redis(tmp_path: Path) -> Any:
    passwords = {name: new_password() for name in ("admin", "bando-board", "bando-gateway")}
    server = SecureRedisServer({"admin": ("admin", passwords["admin"]),
                                "bando-board": ("board", passwords["bando-board"]),
                                "bando-gateway": ("gateway", passwords["bando-gateway"])},
                               prefix=PREFIX, data_dir=tmp_path / "redis")
    server.start()
    yield server, passwords
    server.stop()
    server.cleanup()


@contextlib.asynccontextmanager
async def client(server: SecureRedisServer, user: str, password: str) -> AsyncIterator[Redis]:
    r = Redis.from_url(server.url_for(user), password=password)
    try:
        yield r
    finally:
        await r.aclose()


async def _refused(coro: Any) -> str:
    try:
        await coro
    except (NoPermissionError, AuthenticationError, ResponseError) as exc:
        return type(exc).__name__
    return "allowed"


async def test_board_writes_gateway_only_reads_and_strangers_are_refused(
    secure_redis: Any, kafka: KafkaBroker, unique: str
) -> None:
    server, pw = secure_redis
    assert {ip for ip, _ in listening_sockets(server.pid)} == {"127.0.0.1"}
    topics = {board.SCORE: f"unit-scores-{unique}", board.RANK: f"rank-changes-{unique}",
              board.BAND: f"band-changes-{unique}"}
    create_topics(kafka.bootstrap, topics.values(), 2)
    msgs = [_score(f"u{i}", 70.0 + i, 3 - i) for i in range(3)]
    await asyncio.to_thread(produce, kafka.bootstrap, topics[board.SCORE],
                            [Msg(orjson.dumps(m), m["unit_id"].encode()) for m in msgs])
    writer = BoardWriter(WriterConfig(bootstrap=kafka.bootstrap,
                                      redis_url=server.url_for("bando-board"),
                                      redis_password=pw["bando-board"], topics=topics,
                                      prefix=PREFIX, metadata_interval=2))
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    gateway = TestServer(build_app(GatewayConfig(redis_url=server.url_for("bando-gateway"),
                                                 redis_password=pw["bando-gateway"],
                                                 prefix=PREFIX, ping_seconds=1)),
                         host="127.0.0.1")
    await gateway.start_server()
    try:
        deadline = time.monotonic() + 60
        rows: list[Any] = []
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                async with session.get(gateway.make_url("/api/board")) as resp:
                    if resp.status == 200:
                        snap = await resp.json()
                        rows = [r for w in snap["boards"].values() for g in w.values()
                                for r in g]
                        if len(rows) == 3:
                            break
                await asyncio.sleep(0.3)
            assert len(rows) == 3, f"the board writer wrote, the gateway read: {rows}"
            async with session.get(gateway.make_url("/events")) as resp:
                frames = b""
                while b"event: snapshot" not in frames:
                    frames += await asyncio.wait_for(resp.content.readany(), 15)
            assert b'"redis":true' in frames  # its subscription is allowed
        assert writer.stats.last_error == ""
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await gateway.close()

    key = f"{PREFIX}:w:month:2024-04:units"
    async with client(server, "bando-gateway", pw["bando-gateway"]) as gw:
        assert await gw.hgetall(key)
        assert await _refused(gw.hset(key, "u9", "{}")) == "NoPermissionError"
        assert await _refused(gw.publish(f"{PREFIX}:changes", "x")) == "NoPermissionError"
        assert await _refused(gw.delete(key)) == "NoPermissionError"
        assert await _refused(gw.flushall()) == "NoPermissionError"
        assert await _refused(gw.get("elsewhere")) == "NoPermissionError"
    async with client(server, "bando-board", pw["bando-board"]) as bw:
        assert await _refused(bw.set("elsewhere", "1")) == "NoPermissionError"
        assert await _refused(bw.flushall()) == "NoPermissionError"
        assert await _refused(bw.keys("*")) == "NoPermissionError"
        assert await _refused(bw.config_get("*")) == "NoPermissionError"
        assert await _refused(bw.publish("another-channel", "x")) == "NoPermissionError"
    async with client(server, "bando-board", "wrong-password") as bad:
        assert await _refused(bad.ping()) == "AuthenticationError"
    anonymous = Redis.from_url(server.url)
    try:
        assert await _refused(anonymous.ping()) != "allowed"
    finally:
        await anonymous.aclose()

    acl = server.acl_path.read_text()
    assert stat.S_IMODE(server.acl_path.stat().st_mode) == 0o600
    log = server.log_path.read_text(errors="replace")
    for secret in pw.values():
        assert secret not in acl, "the ACL file holds hashes, never passwords"
        assert secret not in log

"""The gateway in-process against a real Redis: page, headers, push stream, resync."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis
from wall_support import SseReader, free_port, sample_board, score_message

from bando.infra import RedisServer
from display import board, catchup, store
from display.gateway import STATIC_DIR, GatewayConfig, build_app

pytestmark = pytest.mark.integration

W = "month:2024-04"
AS_OF = "2024-04-14T17:00:00+07:00"


def items(msgs, kind=board.SCORE, ts=1000):
    return [store.Item(kind, board.check(kind, m), ts) for m in msgs]


async def start_gateway(redis_url: str, prefix: str, **kw) -> TestServer:
    app = build_app(GatewayConfig(redis_url=redis_url, prefix=prefix, **kw))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def env(redis_server, unique):
    keys = store.Keys(f"test:{unique}:board")
    redis = Redis.from_url(redis_server.url)
    await store.ensure_epoch(redis, keys, "t")
    server = await start_gateway(redis_server.url, keys.prefix, ping_seconds=1)
    session = aiohttp.ClientSession(base_url=str(server.make_url("/")))
    yield redis, keys, session
    await session.close()
    await server.close()
    await redis.aclose()


async def test_page_is_served_with_a_strict_policy_and_no_outside_resource(env):
    _, _, session = env
    async with session.get("/") as resp:
        assert resp.status == 200
        html = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        async with session.get("/" + ref) as resp:
            assert resp.status == 200, ref
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path.name
        assert "innerHTML" not in text and "outerHTML" not in text, path.name
        assert "insertAdjacentHTML" not in text and "document.write" not in text, path.name


@pytest.mark.parametrize(
    "path",
    ["/static/../board.py", "/static/%2e%2e%2fboard.py", "/static/nope.js", "/static/.hidden"],
)
async def test_only_listed_static_files_are_served(env, path):
    _, _, session = env
    async with session.get(path) as resp:
        assert resp.status == 404


async def test_the_gateway_is_read_only(env):
    _, _, session = env
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/", "/events", "/api/board"):
            async with session.request(method, path) as resp:
                assert resp.status == 405, (method, path)


async def test_head_on_the_stream_is_refused_and_the_connection_stays_usable(
    redis_server, unique
):
    """HEAD /events used to run the stream handler: its frames came where the next response
    of a kept-alive connection should be, and never ended."""
    server = await start_gateway(redis_server.url, f"test:{unique}:board", ping_seconds=1)
    host = f"Host: 127.0.0.1:{server.port}\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"HEAD /events HTTP/1.1\r\n{host}\r\nGET /healthz HTTP/1.1\r\n{host}\r\n".encode()
    )
    await writer.drain()
    got = b""
    deadline = time.monotonic() + 3  # the stream's heartbeats would keep a read going for ever
    try:
        while b'"ok":true' not in got and (left := deadline - time.monotonic()) > 0:
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                break
            got += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
        await server.close()
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405"), got[:200]
    assert rest.startswith(b"HTTP/1.1 200") and b'"ok":true' in rest, got[:400]
    assert b"retry:" not in got and b"event:" not in got


async def test_a_screen_learns_at_once_that_redis_is_away():
    """With Redis down no snapshot comes: the status frame must not wait for a heartbeat."""
    server = await start_gateway(f"redis://127.0.0.1:{free_port()}/0", "nowhere", ping_seconds=15)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.make_url("/events")) as resp,
        ):
            t0 = time.monotonic()
            status = await SseReader(resp).until("status", timeout=5)
            assert status["redis"] is False
            assert time.monotonic() - t0 < 2
    finally:
        await server.close()


async def test_a_screen_gets_the_board_then_only_changes(env):
    redis, keys, session = env
    msgs = sample_board(W, AS_OF)
    await store.apply_batch(redis, keys, items(msgs), {})
    async with session.get("/events") as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        sse = SseReader(resp)
        assert (await sse.until("status"))["redis"] is True
        snap = await sse.until("snapshot")
        assert snap["windows"] == {"month": W}
        assert sum(len(v) for v in snap["boards"][W].values()) == len(msgs)
        district = snap["boards"][W]["district"]
        assert [r["rank"] for r in district if r["rank"]] == sorted(
            r["rank"] for r in district if r["rank"]
        )
        unit = {"unit_id": "district-07", "name": "Quận 7", "peer_group": "district"}
        newer = score_message(unit, W, "2024-04-14T18:00:00+07:00", 99.5, 1, 22, offset=500)
        await store.apply_batch(redis, keys, items([newer], ts=9000), {})
        change = await sse.until("change")
        assert change["window"] == W
        assert change["unit"]["unit_id"] == "district-07" and change["unit"]["total"] == 99.5
        assert change["updated"] == (await redis.get(keys.updated)).decode()  # writer's clock
    async with session.get("/api/board") as resp:
        body = await resp.json()
    row = next(r for r in body["boards"][W]["district"] if r["unit_id"] == "district-07")
    assert row["total"] == 99.5


async def test_heartbeats_keep_an_idle_stream_alive(env):
    _, _, session = env
    async with session.get("/events") as resp:
        seen = b""
        while b"event: ping" not in seen:
            seen += await resp.content.readany()


async def test_a_new_month_sends_every_screen_the_new_board(env):
    redis, keys, session = env
    unit = {"unit_id": "district-01", "name": "Quận 1", "peer_group": "district"}
    await store.apply_batch(redis, keys, items([score_message(unit, W, AS_OF, 70.0, 1, 1)]), {})
    async with session.get("/events") as resp:
        sse = SseReader(resp)
        await sse.until("snapshot")
        may = score_message(unit, "month:2024-05", "2024-05-01T00:10:00+07:00", 50.0, 1, 1)
        await store.apply_batch(redis, keys, items([may]), {})
        snap = await sse.until("snapshot")
        assert snap["windows"]["month"] == "month:2024-05"
        assert snap["boards"]["month:2024-05"]["district"][0]["total"] == 50.0


async def test_screens_resync_after_redis_restarts(tmp_path, unique):
    """Redis killed and back: screens are told, then get a fresh board (what the writer rebuilt)."""
    server = RedisServer(data_dir=tmp_path / "redis")
    server.start()
    keys = store.Keys(f"test:{unique}:board")
    redis = store.connect(server.url)  # retries on a connection that died with Redis
    gw = None
    try:
        await store.ensure_epoch(redis, keys, "t")
        await store.apply_batch(redis, keys, items(sample_board(W, AS_OF)[:30]), {})
        gw = await start_gateway(server.url, keys.prefix, ping_seconds=1)
        async with aiohttp.ClientSession() as session, session.get(gw.make_url("/events")) as resp:
            sse = SseReader(resp)
            first = await sse.until("snapshot")
            assert first["boards"]
            server.kill()
            assert (await sse.until("status", timeout=15))["redis"] is False
            server.start()
            await store.ensure_epoch(redis, keys, "t2")
            assert (await sse.until("status", timeout=15))["redis"] is True
            again = await sse.until("snapshot", timeout=15)
            assert again["boards"] == {}  # Redis came back empty; the screen is not left stale
            await store.apply_batch(redis, keys, items(sample_board(W, AS_OF)[:3]), {})
            change = await sse.until("change", timeout=10)
            assert change["window"] == W
    finally:
        if gw is not None:
            await gw.close()
        await redis.aclose()
        server.stop()


async def test_screens_are_told_when_the_board_catches_up_and_when_it_is_done(env):
    """A rebuild shows history: the snapshot says so, and every screen gets a new one when
    the catch-up begins and when it ends."""
    redis, keys, session = env
    await store.apply_batch(redis, keys, items(sample_board(W, AS_OF)[:5]), {})
    async with session.get("/events") as resp:
        sse = SseReader(resp)
        assert (await sse.until("snapshot"))["catching_up"] is False
        await catchup.mark_catchup(redis, keys, {("unit-scores", 0): 8})
        assert (await sse.until("snapshot"))["catching_up"] is True
        async with session.get("/api/board") as board_resp:
            assert (await board_resp.json())["catching_up"] is True
        async with session.get("/healthz") as health:
            assert (await health.json())["catching_up"] is True
        await store.apply_batch(redis, keys, [], {("unit-scores", 0): 8})
        done = await sse.until("snapshot")
        assert done["catching_up"] is False and done["boards"][W]

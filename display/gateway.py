"""The display gateway: serves the wall page, its static files and the push stream (SSE).

Read-only by construction: it only registers GET routes and only reads Redis. Every response
carries a strict Content-Security-Policy (scripts, styles and data from this origin only), a
second line of defence behind the page building its DOM from text, never from markup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from display import store
from display.commitments import WallCommitments
from display.hub import Hub

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
HUB_KEY: web.AppKey[Hub] = web.AppKey("hub", Hub)
CONFIG_KEY: web.AppKey[GatewayConfig] = web.AppKey("config")
FILES_KEY: web.AppKey[dict[str, Path]] = web.AppKey("static_files")
COMMITMENTS_KEY: web.AppKey[WallCommitments | None] = web.AppKey("commitments")


@dataclass(frozen=True)
class GatewayConfig:
    redis_url: str = field(repr=False)  # may hold a password
    redis_password: str = field(default="", repr=False)  # secrets stay out of logs
    prefix: str = store.DEFAULT_PREFIX
    host: str = "127.0.0.1"
    port: int = 8080
    ping_seconds: float = 15.0  # keeps proxies open and lets screens notice a dead gateway
    max_screens: int = 5000
    max_buffer: int = 2000
    commitments_path: str = ""  # leaders.commitments file: shown on the rows of their units
    model: str = "vn766@1"  # checks the commitments' indicators (and gives the time zone)
    catalog_path: str = ""  # checks the commitments' units (empty: the built-in catalog)


def _static_files() -> dict[str, Path]:
    """The allow-list of files served under /static/ (read once: no path from a request)."""
    return {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in _TYPES}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-cache")


def _file_response(path: Path) -> web.Response:
    return web.Response(
        body=path.read_bytes(), content_type=None, headers={"Content-Type": _TYPES[path.suffix]}
    )


async def index(request: web.Request) -> web.Response:
    return _file_response(STATIC_DIR / "index.html")


async def static(request: web.Request) -> web.Response:
    path = request.app[FILES_KEY].get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound()
    return _file_response(path)


async def events(request: web.Request) -> web.StreamResponse:
    """The push stream: status, then a snapshot, then changes; comments as heartbeats."""
    hub = request.app[HUB_KEY]
    config = request.app[CONFIG_KEY]
    if len(hub.screens) >= config.max_screens:
        raise web.HTTPServiceUnavailable(text="too many screens on this gateway")
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache, no-transform",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    await resp.write(b"retry: 2000\n\n")
    screen = hub.register()
    try:
        while not screen.closed:
            await screen.wake.wait()
            screen.wake.clear()
            if screen.buf:
                await resp.write(screen.take())
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        hub.unregister(screen)
    return resp


async def board_json(request: web.Request) -> web.Response:
    """The current board as JSON (for checks and tools; the page uses the stream)."""
    hub = request.app[HUB_KEY]
    try:
        snap = await store.read_snapshot(hub.redis, hub.keys)
        if hub.decorator is not None:
            await hub.decorator.snapshot(hub.redis, hub.keys, snap)
    except (RedisError, OSError) as exc:
        raise web.HTTPServiceUnavailable(text=f"Redis unavailable: {type(exc).__name__}") from exc
    return web.Response(body=orjson.dumps(snap), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = {
        "ok": True,
        "redis": hub.redis_ok,
        "screens": len(hub.screens),
        "catching_up": hub.catching_up,
        "seconds_since_change": (
            round(time.monotonic() - hub.last_change, 1) if hub.last_change else None
        ),
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def build_app(
    config: GatewayConfig, redis: Redis | None = None, commitments: WallCommitments | None = None
) -> web.Application:
    """The gateway; ``commitments`` (else ``config.commitments_path``, if set) go on rows."""
    if commitments is None and config.commitments_path:
        commitments = WallCommitments.load(
            config.commitments_path, config.model, config.catalog_path
        )
    app = web.Application()
    app[CONFIG_KEY] = config
    client = redis or store.connect(config.redis_url, config.redis_password)
    hub = Hub(
        client,
        store.Keys(config.prefix),
        max_buffer=config.max_buffer,
        ping_seconds=config.ping_seconds,
    )
    app[HUB_KEY] = hub
    app[COMMITMENTS_KEY] = commitments
    if commitments is not None:
        hub.decorator = commitments
        commitments.listeners.append(hub.resync)  # a reload reaches screens as a snapshot
    app[FILES_KEY] = _static_files()
    app.on_response_prepare.append(_security_headers)

    async def _lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await hub.start()
        yield
        await hub.stop()
        await client.aclose()

    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    # HEAD would open the stream (headers only, then the handler runs for ever): a client that
    # reuses the connection reads SSE frames as the next response
    app.router.add_get("/events", events, allow_head=False)
    app.router.add_get("/api/board", board_json)
    app.router.add_get("/healthz", health)
    return app


async def serve(
    config: GatewayConfig, stop: asyncio.Event, commitments: WallCommitments | None = None
) -> None:
    """Run the gateway until ``stop`` is set."""
    app = build_app(config, commitments=commitments)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    await site.start()
    bound = runner.addresses[0] if runner.addresses else (config.host, config.port)
    log.info("wall display at http://%s:%s/", bound[0], bound[1])
    try:
        await stop.wait()
    finally:
        await runner.cleanup()

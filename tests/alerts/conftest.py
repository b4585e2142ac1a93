"""A real local HTTP alert receiver (aiohttp on 127.0.0.1) that can be told to fail."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web


@dataclass
class Receiver:
    """Keeps every request; accepts each idempotency key once (a repeat gets 200 "duplicate").

    ``fail`` is a list of injected failures consumed one per request: ``"before"`` answers 503
    without accepting, ``"after"`` accepts and then answers 500 (a lost response, so the
    sender retries something the receiver already has), ``"bad"`` answers 400.
    """

    fail: list[str] = field(default_factory=list)
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append((key, body, dict(request.headers)))
        mode = self.fail.pop(0) if self.fail else None
        if mode == "before":
            return web.Response(status=503, text="down for maintenance")
        if mode == "bad":
            return web.Response(status=400, text="bad request")
        duplicate = key in self.accepted
        if not duplicate:
            self.accepted[key] = body
        if mode == "after":
            return web.Response(status=500, text="oops after commit")
        return web.json_response({"duplicate": duplicate})

    def accepted_kinds(self) -> list[str]:
        return [b["kind"] for b in self.accepted.values()]


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    runners: list[web.AppRunner] = []

    async def start(fail: list[str] | None = None) -> Receiver:
        rec = Receiver(fail=list(fail or []))
        app = web.Application()
        app.router.add_post("/hook", rec.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        rec.url = f"http://127.0.0.1:{port}/hook?token=not-a-real-secret"
        runners.append(runner)
        return rec

    yield start
    for runner in runners:
        await runner.cleanup()

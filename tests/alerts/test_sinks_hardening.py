"""WebhookSink against hostile or misconfigured receivers (local servers on 127.0.0.1): redirects
are not followed, error texts never carry the URL's token, unusable URLs fail at construction."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from alerts.exceptions import SinkError
from alerts.notifier import Notifier, NotifierConfig
from alerts.policy import AlertPolicy
from alerts.sinks import FileDeadLetter, RetryPolicy, WebhookSink

FAST = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
TOKEN = "tok-SECRET-123"  # in the webhook URL's query string: must never reach a log or the DLQ


def alert(key: str = "k1") -> dict:
    return {"alert_id": key, "kind": "band_drop", "unit_id": "d7", "summary": "d7 dropped"}


class Server:
    """``/hook`` answers ``status`` (a redirect to ``location`` for 3xx); every other path
    accepts anything with 200, so a followed redirect would look like a delivery."""

    def __init__(self) -> None:
        self.status = 200
        self.location = "/landing"
        self.seen: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.base = ""

    async def hook(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path, await request.read(), {**request.headers}))
        if 300 <= self.status < 400:
            return web.Response(status=self.status, headers={"Location": self.location})
        return web.Response(status=self.status, text="ok")

    async def other(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path, await request.read(), {**request.headers}))
        return web.Response(text="hello")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/hook", srv.hook)
    app.router.add_route("*", "/{tail:.*}", srv.other)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield srv
    await runner.cleanup()


# -- 1. redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_permanent_failure_and_is_not_followed(server, status):
    server.status = status
    server.location = "/landing?token=moved-SECRET"
    sink = WebhookSink(f"{server.base}/hook?token={TOKEN}", retry=FAST, secret="sig-key")
    try:
        with pytest.raises(SinkError) as info:
            await sink.send(alert())
    finally:
        await sink.close()
    # Only the configured URL was asked, once: no GET without the body (301-303), no replay
    # of the signed body to the new location (307/308), no retry of a configuration error.
    assert [(m, p) for m, p, _, _ in server.seen] == [("POST", "/hook")]
    assert not info.value.retryable and info.value.attempts == 1
    error = str(info.value)
    assert f"HTTP {status}" in error and f"{server.base}/landing" in error
    assert "SECRET" not in error  # the Location is redacted like the webhook URL


async def test_a_redirect_is_dead_lettered_with_a_redacted_location(server, tmp_path, caplog):
    server.status = 307
    server.location = f"/loop?token={TOKEN}"  # a redirect loop, before: TooManyRedirects
    dead = FileDeadLetter(tmp_path / "dlq.jsonl")
    sink = WebhookSink(f"{server.base}/hook?token={TOKEN}", name="moved", retry=FAST)
    notifier = Notifier(NotifierConfig(), AlertPolicy(), [sink], dead)
    caplog.set_level(logging.WARNING)
    await dead.start()
    try:
        await notifier.deliver(alert("a2"))
    finally:
        await sink.close()
    [record] = dead.read()
    assert record["sink"] == "moved" and record["attempts"] == 1
    assert record["error"] == f"HTTP 307: redirect to {server.base}/loop not followed"
    assert TOKEN not in caplog.text and TOKEN not in (tmp_path / "dlq.jsonl").read_text()


# -- 2. error texts without the URL's token ------------------------------------------------------


async def test_error_text_of_an_aiohttp_error_hides_the_query_string(tmp_path, caplog):
    # A malformed status line makes aiohttp raise ClientResponseError, whose str() holds the
    # full request URL. aiohttp's own server cannot send one, hence a raw asyncio server.
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 abc\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    dead = FileDeadLetter(tmp_path / "dlq.jsonl")
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook?token={TOKEN}", name="bad", retry=FAST)
    notifier = Notifier(NotifierConfig(), AlertPolicy(), [sink], dead)
    caplog.set_level(logging.WARNING)
    await dead.start()
    try:
        await notifier.deliver(alert())
    finally:
        await sink.close()
        srv.close()
        await srv.wait_closed()
    [record] = dead.read()
    assert record["attempts"] == 3  # still a retryable network-level failure
    assert f"ClientResponseError for http://127.0.0.1:{port}/hook (HTTP 400)" in record["error"]
    assert TOKEN not in caplog.text and TOKEN not in (tmp_path / "dlq.jsonl").read_text()


async def test_error_text_of_a_timeout_names_the_redacted_url():
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_post("/hook", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    sink = WebhookSink(f"{url}?token={TOKEN}", retry=RetryPolicy(max_attempts=1), timeout=0.1)
    try:
        with pytest.raises(SinkError) as info:
            await sink.send(alert())
    finally:
        await sink.close()
        await runner.cleanup()
    expected = f"TimeoutError for {url} (no answer within 0.1s)"
    assert str(info.value) == f"gave up after 1 attempts: {expected}"


# -- 3. URLs checked at construction -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw-SECRET@127.0.0.1:9/hook",
        "http://user@127.0.0.1:9/hook",
        "http://:pw-SECRET@127.0.0.1:9/hook",
    ],
)
def test_credentials_in_the_url_and_a_token_are_refused_at_construction(url):
    with pytest.raises(ValueError, match="credentials") as info:
        WebhookSink(url, token="tok")
    assert "SECRET" not in str(info.value) and "127.0.0.1:9/hook" in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["ftp://h/hook", "http:///hook", "https://", "mailto:ops@example.com", "/hook?token=SECRET"],
)
def test_a_url_that_is_not_http_with_a_host_is_refused(url):
    with pytest.raises(ValueError, match="http\\(s\\) with a host") as info:
        WebhookSink(url)
    assert "SECRET" not in str(info.value)


def test_an_unparseable_url_is_refused_without_echoing_it():
    with pytest.raises(ValueError, match="cannot be parsed") as info:
        WebhookSink(f"http://h:notaport/hook?token={TOKEN}")
    assert TOKEN not in str(info.value) and info.value.__cause__ is None


async def test_credentials_in_the_url_alone_still_work_as_basic_auth(server):
    sink = WebhookSink(f"{server.base.replace('//', '//user:pw@')}/hook", retry=FAST)
    try:
        await sink.send(alert())
    finally:
        await sink.close()
    [(_, _, _, headers)] = server.seen
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()


@pytest.mark.parametrize("where", ["query", "bearer", "password"])
async def test_a_receiver_that_echoes_the_request_gets_no_secret_into_the_error(where):
    """A 400 whose body quotes the request (URL, query string, headers): the error text, which
    is logged and dead-lettered, has the secrets cut out, in any form the receiver saw."""
    async def echo(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        return web.Response(status=400, text=f"bad request {request.url} {request.query_string} "
                                             f"{dict(request.query)} auth={auth}")

    app = web.Application()
    app.router.add_post("/hook", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    secret = TOKEN + "/+=&x"  # characters a URL encodes
    if where == "query":
        sink = WebhookSink(f"http://127.0.0.1:{port}/hook?a=1&token={secret.replace('&', '%26')}",
                           retry=RetryPolicy(max_attempts=1))
    elif where == "bearer":
        sink = WebhookSink(f"http://127.0.0.1:{port}/hook", token=secret,
                           retry=RetryPolicy(max_attempts=1))
    else:
        sink = WebhookSink(f"http://user:{TOKEN}@127.0.0.1:{port}/hook",
                           retry=RetryPolicy(max_attempts=1))
    try:
        with pytest.raises(SinkError) as info:
            await sink.send(alert())
    finally:
        await sink.close()
        await runner.cleanup()
    text = str(info.value)
    assert "HTTP 400: bad request" in text
    assert TOKEN not in text and "tok-SECRET" not in text
    if where == "password":  # Basic auth: the header is the base64 of user:password
        assert base64.b64encode(f"user:{TOKEN}".encode()).decode() not in text

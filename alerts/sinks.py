"""Where alerts go: an HTTP webhook (with retries), the log, and a dead-letter record.

Delivery is at-least-once: the notifier commits a ``band-changes`` offset only after every sink
has either taken the alert or given up and the alert is in the dead-letter record. Every
webhook request carries ``Idempotency-Key`` (the alert id, also in the body as ``alert_id``)
so a receiver that sees a retry, or a re-send after a notifier restart, can ignore it.

A webhook URL may hold a token in its query string, so only scheme, host and path are logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, quote_plus, urlsplit

import aiohttp
import orjson
from yarl import URL

from alerts.exceptions import DeadLetterError, SinkError
from bando.metrics import ALERT_DELIVERY_SECONDS, ALERT_RETRIES

log = logging.getLogger(__name__)
_RETRYABLE_STATUS = frozenset({408, 425, 429})


class Sink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def send(self, alert: dict[str, Any]) -> None:
        """Deliver, or raise ``SinkError`` once retrying is pointless or exhausted."""

    async def close(self) -> None: ...


class DeadLetter(Protocol):
    async def start(self) -> None: ...

    async def record(self, alert: dict[str, Any], sink: str, error: str, attempts: int) -> None:
        """Keep the alert for a human or a re-drive; raise ``DeadLetterError`` if impossible."""

    async def close(self) -> None: ...


def redact_url(url: str) -> str:
    """``https://user:pw@host/path?token=x`` -> ``https://host/path`` (safe to log)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter: ``initial * multiplier**(n-1)``, capped, +- jitter."""

    max_attempts: int = 6
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def delay(self, failed_attempt: int, retry_after: float | None = None) -> float:
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (failed_attempt - 1))
        if retry_after is not None:  # the receiver knows best, within our cap
            base = min(self.max_backoff, max(base, retry_after))
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


class LogSink:
    """Writes each alert as one log record (WARNING for drops and risks, INFO for rises)."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("bando.alerts")

    async def start(self) -> None:
        return None

    async def send(self, alert: dict[str, Any]) -> None:
        level = logging.INFO if alert.get("kind") == "band_rise" else logging.WARNING
        self._log.log(
            level,
            "ALERT %s [%s] %s",
            alert.get("kind"),
            alert.get("alert_id"),
            alert.get("summary"),
        )

    async def close(self) -> None:
        return None


def _secret_forms(url: URL, token: str | None, secret: str | None) -> tuple[str, ...]:
    """The token, the signing secret, the URL's password and query values, each as written
    and as a receiver may quote it (percent-encoded, the Basic header), longest first.
    Shorter than 4 characters is not a secret worth cutting out of every word."""
    values = [token, secret, url.password, url.raw_password, url.raw_query_string,
              url.query_string, *url.query.values()]
    if url.password is not None:
        values.append(aiohttp.encode_basic_auth(url.user or "", url.password))
    if token:
        values.append(f"Bearer {token}")
    forms = {form for v in values if v
             for form in (v, quote(v, safe=""), quote_plus(v), quote(v))}
    return tuple(sorted((f for f in forms if len(f) >= 4), key=len, reverse=True))


def _location(base: str, headers: Any) -> str:
    """The redacted target of a redirect (a relative ``Location`` is resolved against ``base``);
    the raw header may carry a token just like the webhook URL itself."""
    value = headers.get("Location")
    if not value:
        return "no Location"
    try:
        return redact_url(str(URL(base).join(URL(value))))
    except ValueError:
        return "an unparseable Location"


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: ignore, our own back-off applies


class WebhookSink:
    """POSTs the alert as JSON. 2xx (and 409, "already have it") is delivered; 408, 425, 429,
    5xx and network errors are retried with back-off; any other status fails at once."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "webhook",
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        token: str | None = None,
        secret: str | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        # Checked here, not at the first send: a URL aiohttp cannot use would otherwise fail
        # every delivery and dead-letter every alert while the notifier looks healthy.
        try:
            parsed = URL(url)
        except ValueError:
            # from None, and no URL in the text: the parser's message may quote it, token and all
            raise ValueError(
                "webhook URL cannot be parsed (not shown: it may hold a token)"
            ) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"webhook URL must be http(s) with a host: {redact_url(url)}")
        if token and (parsed.user is not None or parsed.password is not None):
            # aiohttp turns URL credentials into Basic auth and refuses them next to our Bearer
            # Authorization header (ValueError at every send), so the two cannot both be set.
            raise ValueError(
                f"webhook URL {redact_url(url)} holds credentials (user:password@) and a token "
                "is set too: use one or the other"
            )
        self.url = url
        self.name = name
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.retry = retry or RetryPolicy()
        self._token = token
        self._secret = secret.encode("utf-8") if secret else None
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._secrets = _secret_forms(parsed, token, secret)

    def __repr__(self) -> str:  # never show a token
        return f"WebhookSink({self.name!r}, {redact_url(self.url)!r})"

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, alert: dict[str, Any], body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": str(alert.get("alert_id", "")),
            "User-Agent": "bando-notifier",
            "X-Bando-Alert-Kind": str(alert.get("kind", "")),
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._secret:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers["X-Bando-Signature"] = f"sha256={digest}"
        return headers

    def _scrub(self, text: str) -> str:
        """A receiver's error body may quote the request (URL, query string, headers): every
        form of this sink's secrets is cut out before the text is logged or dead-lettered."""
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def _describe(self, exc: BaseException) -> str:
        """Error text for a request that raised, safe to log and dead-letter: ``str()`` of an
        aiohttp error may hold the full request URL (query-string token included), so the text
        is built only from the type, the redacted URL and fields that never hold the URL."""
        detail = ""
        if isinstance(exc, aiohttp.ClientResponseError):
            detail = f" (HTTP {exc.status})"
        elif isinstance(exc, OSError) and exc.strerror:  # e.g. "Connection refused"
            detail = f" ({exc.strerror})"
        elif isinstance(exc, TimeoutError):
            detail = f" (no answer within {self.timeout.total}s)"
        return f"{type(exc).__name__} for {redact_url(self.url)}{detail}"

    async def _attempt(self, body: bytes, headers: dict[str, str]) -> tuple[bool, bool, str, Any]:
        """(delivered, retryable, error text, retry-after seconds)."""
        assert self._session is not None
        try:
            # No redirects: aiohttp would turn a 301/302/303 into a body-less GET whose 200
            # counts as delivered, and replay a 307/308 (signature included) wherever Location
            # points. A webhook that moved is a configuration error, so it fails at once.
            async with self._session.post(
                self.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                if 200 <= resp.status < 300 or resp.status == 409:
                    return True, False, "", None
                if 300 <= resp.status < 400:
                    where = _location(self.url, resp.headers)
                    error = f"HTTP {resp.status}: redirect to {where} not followed"
                    return False, False, error, None
                text = self._scrub(await resp.text(errors="replace"))[:200]
                retryable = resp.status >= 500 or resp.status in _RETRYABLE_STATUS
                return False, retryable, f"HTTP {resp.status}: {text}", _retry_after(resp.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return False, True, self._describe(exc), None

    async def send(self, alert: dict[str, Any]) -> None:
        await self.start()
        body = orjson.dumps(alert)
        headers = self._headers(alert, body)
        started = time.monotonic()
        error = ""
        attempt = 0
        try:
            for attempt in range(1, self.retry.max_attempts + 1):
                ok, retryable, error, retry_after = await self._attempt(body, headers)
                if ok:
                    if attempt > 1:
                        log.info(
                            "%s: delivered %s after %d attempts",
                            self.name,
                            alert.get("alert_id"),
                            attempt,
                        )
                    return
                log.warning(
                    "%s: %s attempt %d/%d failed: %s",
                    self.name,
                    alert.get("alert_id"),
                    attempt,
                    self.retry.max_attempts,
                    error,
                )
                if not retryable:
                    raise SinkError(error, retryable=False, attempts=attempt)
                if attempt < self.retry.max_attempts:
                    ALERT_RETRIES.labels(self.name).inc()
                    await self._sleep(self.retry.delay(attempt, retry_after))
            raise SinkError(f"gave up after {attempt} attempts: {error}", attempts=attempt)
        finally:
            ALERT_DELIVERY_SECONDS.labels(self.name).observe(time.monotonic() - started)


def dead_letter_record(
    alert: dict[str, Any], sink: str, error: str, attempts: int
) -> dict[str, Any]:
    return {
        "alert_id": alert.get("alert_id"),
        "sink": sink,
        "error": error[:500],
        "attempts": attempts,
        "failed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "alert": alert,
    }


class FileDeadLetter:
    """Appends one JSON line per failed delivery (fsync'd: it is the record of last resort)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, line: bytes) -> None:
        with open(self.path, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    async def record(self, alert: dict[str, Any], sink: str, error: str, attempts: int) -> None:
        line = orjson.dumps(dead_letter_record(alert, sink, error, attempts)) + b"\n"
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            raise DeadLetterError(f"cannot write {self.path}: {exc}") from exc

    async def close(self) -> None:
        return None

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines() if line]


class KafkaDeadLetter:
    """Publishes failed deliveries to a topic (default ``alerts-dlq``, key = unit_id), acks=all,
    so an operator can inspect and re-drive them."""

    def __init__(self, topic: str = "alerts-dlq", **producer_kwargs: Any) -> None:
        self.topic = topic
        self._kwargs = producer_kwargs
        self._producer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        if self._producer is None:
            self._producer = AIOKafkaProducer(acks="all", **self._kwargs)
            await self._producer.start()

    async def record(self, alert: dict[str, Any], sink: str, error: str, attempts: int) -> None:
        await self.start()
        value = orjson.dumps(dead_letter_record(alert, sink, error, attempts))
        key = str(alert.get("unit_id", "")).encode("utf-8")
        try:
            await self._producer.send_and_wait(self.topic, value, key=key)
        except Exception as exc:  # noqa: BLE001 - any producer failure means "not recorded"
            raise DeadLetterError(f"cannot publish to {self.topic}: {exc}") from exc

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

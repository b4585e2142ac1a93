"""Webhook delivery against a real local HTTP receiver; log sink; file dead letter."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import orjson
import pytest

from alerts.exceptions import SinkError
from alerts.notifier import Notifier, NotifierConfig
from alerts.policy import AlertPolicy, band_index
from alerts.sinks import FileDeadLetter, LogSink, RetryPolicy, WebhookSink, redact_url
from bando import metrics

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)


def alert(key: str = "k1", kind: str = "band_drop") -> dict:
    return {"alert_id": key, "kind": kind, "unit_id": "d7", "summary": "d7 dropped"}


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_redact_url_hides_credentials_and_query():
    assert redact_url("https://u:pw@hooks.example:8443/x/y?token=s3cret") == (
        "https://hooks.example:8443/x/y"
    )
    assert "s3cret" not in repr(WebhookSink("https://h/x?token=s3cret"))


def test_retry_policy_backs_off_exponentially_with_a_cap():
    p = RetryPolicy(initial_backoff=1, max_backoff=5, multiplier=2, jitter=0)
    assert [p.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert p.delay(1, retry_after=3) == 3
    assert p.delay(1, retry_after=60) == 5
    jittered = RetryPolicy(initial_backoff=1, jitter=0.1)
    assert all(0.9 <= jittered.delay(1) <= 1.1 for _ in range(50))


async def test_webhook_retries_a_failing_receiver_and_delivers_once(receiver):
    rec = await receiver(fail=["before", "after"])
    sink = WebhookSink(rec.url, name="t-hook", retry=FAST, token="tok", secret="sig-key")
    retries = sample("bando_alert_retries_total", sink="t-hook")
    try:
        await sink.send(alert("key-1"))
    finally:
        await sink.close()
    assert len(rec.requests) == 3  # 503, accepted-then-500, duplicate 200
    assert {k for k, _, _ in rec.requests} == {"key-1"}
    assert list(rec.accepted) == ["key-1"]
    _, body, headers = rec.requests[-1]
    assert body["alert_id"] == "key-1"
    assert headers["Authorization"] == "Bearer tok"
    expected = hmac.new(b"sig-key", orjson.dumps(body), hashlib.sha256).hexdigest()
    assert headers["X-Bando-Signature"] == f"sha256={expected}"
    assert sample("bando_alert_retries_total", sink="t-hook") == retries + 2


async def test_webhook_gives_up_at_once_on_a_client_error(receiver):
    rec = await receiver(fail=["bad"])
    sink = WebhookSink(rec.url, retry=FAST)
    with pytest.raises(SinkError) as info:
        await sink.send(alert())
    await sink.close()
    assert not info.value.retryable and len(rec.requests) == 1


async def test_webhook_gives_up_after_max_attempts(receiver):
    rec = await receiver(fail=["before"] * 10)
    sink = WebhookSink(rec.url, retry=FAST)
    with pytest.raises(SinkError) as info:
        await sink.send(alert())
    await sink.close()
    assert info.value.attempts == 4 and len(rec.requests) == 4 and not rec.accepted


async def test_webhook_to_a_closed_port_is_retried_then_fails():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", retry=FAST, timeout=2)
    with pytest.raises(SinkError) as info:
        await sink.send(alert())
    await sink.close()
    assert info.value.retryable and info.value.attempts == 4


async def test_log_sink_logs_the_summary(caplog):
    caplog.set_level(logging.INFO, logger="bando.alerts")
    await LogSink().send(alert())
    assert "d7 dropped" in caplog.text and "k1" in caplog.text


def band_change(old: str, new: str, total: float, as_of: str) -> bytes:
    return orjson.dumps(
        {
            "unit_id": "d7",
            "window": "month:2024-04",
            "old_band": old,
            "new_band": new,
            "direction": "down" if band_index(new) < band_index(old) else "up",
            "total": total,
            "as_of": as_of,
            "top_losses": [{"indicator": "on_time", "points_lost": 4.0}],
        }
    )


async def test_notifier_dead_letters_a_sink_that_stays_down_and_bad_messages(receiver, tmp_path):
    rec = await receiver(fail=["before"] * 10)
    dead = FileDeadLetter(tmp_path / "dlq" / "alerts.jsonl")
    hook = WebhookSink(rec.url, name="down-hook", retry=FAST)
    notifier = Notifier(NotifierConfig(), AlertPolicy(), [LogSink(), hook], dead)
    await dead.start()
    failed = sample("bando_alerts_failed_total", sink="down-hook")
    logged = sample("bando_alerts_sent_total", sink="log")
    try:
        msg = band_change("good", "fair", 78.0, "2024-04-14T17:00:00+07:00")
        decision = await notifier.handle("band-changes", msg, partition=1, offset=41)
        assert decision is not None and decision.send
        assert await notifier.handle("band-changes", b"{not json", partition=1, offset=42) is None
    finally:
        await hook.close()
    records = dead.read()
    assert [r["sink"] for r in records] == ["down-hook", "parse"]
    assert records[0]["attempts"] == 4 and records[0]["alert"]["source"]["offset"] == 41
    assert records[1]["alert"]["raw"] == "{not json"
    assert sample("bando_alerts_failed_total", sink="down-hook") == failed + 1
    assert sample("bando_alerts_sent_total", sink="log") == logged + 1
    assert json.dumps(records)  # plain JSON, readable by an operator


async def test_replayed_messages_rebuild_state_without_delivering(receiver, tmp_path):
    rec = await receiver()
    hook = WebhookSink(rec.url, retry=FAST)
    notifier = Notifier(NotifierConfig(), AlertPolicy(), [hook], FileDeadLetter(tmp_path / "d"))
    try:
        drop = band_change("good", "fair", 78.0, "2024-04-14T17:00:00+07:00")
        await notifier.handle("band-changes", drop, live=False)
        flap = band_change("fair", "good", 80.2, "2024-04-14T17:05:00+07:00")
        await notifier.handle("band-changes", flap, live=False)
        again = band_change("good", "fair", 79.9, "2024-04-14T17:10:00+07:00")
        decision = await notifier.handle("band-changes", again)
    finally:
        await hook.close()
    assert decision is not None and decision.reason == "hysteresis"
    assert rec.requests == []


def test_metric_window_kind_label_is_bounded():
    assert metrics.window_kind("month:2024-04") == "month"
    assert metrics.window_kind("decade:2020") == "other"

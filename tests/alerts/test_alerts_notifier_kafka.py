"""The notifier against the real Kafka broker and a real local HTTP receiver.

Band changes are produced directly in the CONTRACTS.md format (the scorer's own output is
covered by the streams tests); what is checked here is the delivery path: retries, idempotency
keys across a crash, anti-flapping, state rebuilt after a restart, early warnings, /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from alerts.notifier import Notifier, NotifierConfig
from alerts.policy import AlertPolicy, PolicyConfig, band_index
from alerts.sinks import KafkaDeadLetter, LogSink, RetryPolicy, WebhookSink
from bando.infra import create_topics_async
from bando.infra.ports import free_port
from bando.metrics import start_metrics_server

pytestmark = pytest.mark.integration
FAST = RetryPolicy(max_attempts=5, initial_backoff=0.05, max_backoff=0.2)
REPO = Path(__file__).resolve().parents[2]


def drop(unit: str, old: str, new: str, total: float, minute: int) -> dict[str, Any]:
    return {
        "unit_id": unit,
        "window": "month:2024-04",
        "old_band": old,
        "new_band": new,
        "direction": "down" if band_index(new) < band_index(old) else "up",
        "total": total,
        "as_of": f"2024-04-14T16:{minute:02d}:00+07:00",
        "top_losses": [
            {"indicator": "on_time", "points_lost": 5.5},
            {"indicator": "dossier_satisfaction", "points_lost": 2.25},
        ],
    }


async def wait_for(cond: Callable[[], bool], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


class Harness:
    def __init__(self, bootstrap: str, unique: str) -> None:
        self.bootstrap = bootstrap
        self.band_topic = f"band-changes-{unique}"
        self.risk_topic = f"at-risk-{unique}"
        self.dlq_topic = f"alerts-dlq-{unique}"
        self.group = f"notifier-{unique}"
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        await create_topics_async(
            self.bootstrap, [self.band_topic, self.risk_topic, self.dlq_topic], partitions=4
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await self.producer.start()

    async def send(self, topic: str, msg: dict[str, Any]) -> None:
        assert self.producer is not None
        await self.producer.send_and_wait(topic, orjson.dumps(msg), key=msg["unit_id"].encode())

    def notifier(self, sinks: list[Any], policy: AlertPolicy | None = None) -> Notifier:
        config = NotifierConfig(
            band_changes_topic=self.band_topic,
            at_risk_topic=self.risk_topic,
            group_id=self.group,
            kafka={"bootstrap_servers": self.bootstrap},
            lag_interval=0.2,
        )
        dead = KafkaDeadLetter(self.dlq_topic, bootstrap_servers=self.bootstrap)
        return Notifier(config, policy or AlertPolicy(), sinks, dead)

    async def dead_letters(self, expected: int) -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            self.dlq_topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        out: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 20
            while len(out) < expected and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                out += [orjson.loads(r.value) for recs in batch.values() for r in recs]
        finally:
            await consumer.stop()
        return out

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


@pytest.fixture
async def harness(kafka, unique):
    h = Harness(kafka.bootstrap, unique)
    await h.start()
    yield h
    await h.close()


@contextlib.asynccontextmanager
async def running(notifier: Notifier):
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        await asyncio.wait_for(notifier.ready.wait(), 60)
        yield task
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


class CrashAfterDelivery:
    """Delivers through the wrapped sink, then dies before the offset is committed."""

    def __init__(self, inner: WebhookSink) -> None:
        self.inner, self.name, self.crashed = inner, inner.name, False

    async def start(self) -> None:
        await self.inner.start()

    async def send(self, alert: dict[str, Any]) -> None:
        await self.inner.send(alert)
        if not self.crashed:
            self.crashed = True
            raise asyncio.CancelledError("simulated crash between delivery and commit")

    async def close(self) -> None:
        await self.inner.close()


async def test_band_drop_reaches_the_receiver_exactly_once_despite_failures(harness, receiver):
    rec = await receiver(fail=["before", "after"])  # a 503, then a lost 500 response
    hook = WebhookSink(rec.url, name="it-hook", retry=FAST)
    first = harness.notifier([CrashAfterDelivery(hook)])
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await asyncio.wait_for(first.ready.wait(), 60)
    await harness.send(harness.band_topic, drop("d7", "good", "fair", 78.4, 0))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)  # crashed after delivering, offset not committed
    assert len(rec.accepted) == 1 and len(rec.requests) == 3

    second = harness.notifier([WebhookSink(rec.url, name="it-hook", retry=FAST)])
    async with running(second):  # re-reads the uncommitted message and re-sends it
        await wait_for(lambda: len(rec.requests) == 4)
        await asyncio.sleep(0.5)
    keys = {key for key, _, _ in rec.requests}
    assert len(keys) == 1 and list(rec.accepted) == list(keys)
    alert = next(iter(rec.accepted.values()))
    assert alert["kind"] == "band_drop" and alert["top_losses"][0]["indicator"] == "on_time"
    assert alert["source"]["topic"] == harness.band_topic

    third = harness.notifier([WebhookSink(rec.url, name="it-hook", retry=FAST)])
    async with running(third):  # committed now: nothing is delivered again
        await asyncio.sleep(1.5)
    assert len(rec.requests) == 4


async def test_flapping_is_suppressed_and_state_survives_a_restart(harness, receiver):
    rec = await receiver()
    policy = PolicyConfig(cooldown_seconds=3600, hysteresis_points=1.0)

    def make() -> Notifier:
        return harness.notifier([WebhookSink(rec.url, retry=FAST)], AlertPolicy(policy))

    async with running(make()):
        for i in range(6):
            await harness.send(harness.band_topic, drop("d1", "good", "fair", 79.9, 2 * i))
            await harness.send(harness.band_topic, drop("d1", "fair", "good", 80.2, 2 * i + 1))
        await harness.send(harness.band_topic, drop("d3", "fair", "average", 66.0, 20))
        await wait_for(lambda: len(rec.accepted) == 2)
        await asyncio.sleep(1.0)
    assert sorted(b["unit_id"] for b in rec.accepted.values()) == ["d1", "d3"]
    assert len(rec.requests) == 2

    # while no notifier runs, d1 flaps again; a fresh process must remember d1's state
    await harness.send(harness.band_topic, drop("d1", "good", "fair", 79.8, 30))
    async with running(make()):
        await harness.send(harness.band_topic, drop("d1", "fair", "average", 60.0, 31))
        await wait_for(lambda: len(rec.accepted) == 3)
        await asyncio.sleep(1.0)
    kinds = sorted((b["unit_id"], b["new_band"]) for b in rec.accepted.values())
    assert kinds == [("d1", "average"), ("d1", "fair"), ("d3", "average")]
    assert len(rec.requests) == 3


async def test_at_risk_warning_is_alerted_before_the_drop(harness, receiver):
    rec = await receiver()
    warning = {
        "unit_id": "d5",
        "window": "month:2024-04",
        "at_risk": True,
        "band": "excellent",
        "total": 100.0,
        "projected_band": "good",
        "projected_total": 89.56,
        "as_of": "2024-04-12T09:00:00+07:00",
        "horizon_seconds": 86400,
        "dossier_ids": [f"D-{i:02d}" for i in range(5, 10)],
        "late_tolerance": 4,
        "top_losses": [{"indicator": "on_time", "points_lost": 8.33}],
    }
    async with running(harness.notifier([WebhookSink(rec.url, retry=FAST)])):
        await harness.send(harness.risk_topic, warning)
        await wait_for(lambda: len(rec.accepted) == 1)
        later = drop("d5", "excellent", "good", 89.56, 1) | {"as_of": "2024-04-12T15:00:01+07:00"}
        await harness.send(harness.band_topic, later)
        await wait_for(lambda: len(rec.accepted) == 2)
    first, second = list(rec.accepted.values())
    assert first["kind"] == "at_risk" and second["kind"] == "band_drop"
    assert first["dossier_ids"] == warning["dossier_ids"]
    assert first["as_of"] < second["as_of"]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_endpoint_parses_and_counters_move(harness, receiver):
    rec = await receiver(fail=["before"] * 20)  # this sink stays down: dead letter
    server = start_metrics_server(0)
    try:
        before = scrape(server.port)
        sinks = [LogSink(), WebhookSink(rec.url, name="metrics-hook", retry=FAST)]
        async with running(harness.notifier(sinks)):
            await harness.send(harness.band_topic, drop("d9", "good", "fair", 75.0, 0))
            await harness.send(harness.band_topic, drop("d9", "fair", "good", 80.1, 1))
            await harness.send(harness.band_topic, drop("d9", "good", "fair", 79.0, 2))
            await wait_for(lambda: len(rec.requests) == 5)
            await asyncio.sleep(1.0)  # lag gauge refresh
            after = scrape(server.port)
    finally:
        server.close()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("bando_alerts_sent_total", sink="log") == 1
    assert delta("bando_alerts_failed_total", sink="metrics-hook") == 1
    assert delta("bando_alerts_dead_lettered_total", sink="metrics-hook") == 1
    assert delta("bando_alerts_suppressed_total", reason="hysteresis") == 2
    assert delta("bando_band_drops_total", unit_id="d9", window_kind="month") == 2
    assert delta("bando_alert_messages_consumed_total", kind="band_change") == 3
    lags = {k: v for k, v in after.items() if k[0] == "bando_consumer_lag"}
    assert any(dict(k[1])["topic"] == harness.band_topic for k in lags)
    dead = await harness.dead_letters(1)
    assert dead[0]["sink"] == "metrics-hook" and dead[0]["attempts"] == 5
    assert dead[0]["alert"]["unit_id"] == "d9"


async def test_bando_notify_command_delivers_and_serves_metrics(harness, receiver, tmp_path):
    """The real entry point (as docker-compose runs it), in a child process."""
    rec = await receiver()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    env.update(
        BANDO_KAFKA_BOOTSTRAP=harness.bootstrap,
        BANDO_BAND_CHANGES_TOPIC=harness.band_topic,
        BANDO_AT_RISK_TOPIC=harness.risk_topic,
        BANDO_ALERT_GROUP_ID=harness.group,
        BANDO_ALERT_WEBHOOKS=rec.url,
        BANDO_METRICS_PORT=str(port),
        BANDO_ALERT_WEBHOOK_TOKEN="test-token",
        PYTHONPATH=str(REPO),
    )
    argv = [
        sys.executable,
        "-m",
        "bando.cli",
        "notify",
        "--dead-letter",
        str(tmp_path / "dead.jsonl"),
        "--backoff",
        "0.05",
    ]
    proc = subprocess.Popen(
        argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        await wait_for(lambda: _up(port) or proc.poll() is not None, 60)
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        await harness.send(harness.band_topic, drop("d2", "excellent", "fair", 72.0, 0))
        await wait_for(lambda: len(rec.accepted) == 1, 60)
        await wait_for(lambda: ("bando_alerts_sent_total", (("sink", "webhook"),)) in scrape(port))
        sample = scrape(port)
        assert sample[("bando_alerts_sent_total", (("sink", "webhook"),))] == 1
        assert sample[("bando_build_info", (("service", "notifier"), ("version", "0.1.0")))] == 1
        assert rec.requests[0][2]["Authorization"] == "Bearer test-token"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out.decode()[-3000:]
    assert b"test-token" not in out and b"not-a-real-secret" not in out


def _up(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True

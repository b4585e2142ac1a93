"""``bando signals`` on the real broker: each crossing is published once (across restarts),
named by its dossiers, and alerted like a band drop."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from leaders_support import (
    HARSH_DOSSIERS,
    START,
    TZ,
    UNITS,
    Script,
    produce,
    read_topic,
    scenario,
)

from alerts.sinks import FileDeadLetter, RetryPolicy, WebhookSink
from bando.infra import create_topics
from leaders.signals import SignalConfig
from leaders.signals_service import ServiceConfig, SignalsService
from scoring.catalog import Catalog
from scoring.model import load_model
from scoring.timeutil import parse_ts

pytestmark = pytest.mark.integration

RAISED = {("repeated_supplements", "d-harsh", None), ("due_pushed_back", "d-harsh", None),
          ("supplement_rate", "d-harsh", "proc-birth"), ("slow_procedure", "d-slow", "proc-birth"),
          ("overdue_open", "d-sitting", None)}


async def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.3)


class Hook:
    """A webhook receiver on a free loopback port (the alert's destination)."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Hook:
        async def hook(request: web.Request) -> web.Response:
            self.alerts.append(await request.json())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_each_crossing_is_published_and_alerted_once(kafka, unique, tmp_path):
    events_topic, dlq, signals = (f"procedure-events-{unique}", f"dlq-{unique}",
                                  f"signals-{unique}")
    create_topics(kafka.bootstrap, [events_topic, dlq, signals], 4)
    hook = await Hook().start()
    catalog = Catalog.from_list(UNITS)

    def service() -> SignalsService:
        return SignalsService(
            ServiceConfig(events_topic=events_topic, signals_topic=signals, dlq_topic=dlq,
                          group_id=f"signals-{unique}", interval=0.2,
                          kafka={"bootstrap_servers": kafka.bootstrap}),
            catalog, load_model(), SignalConfig(),
            [WebhookSink(hook.url, retry=RetryPolicy(max_attempts=2, initial_backoff=0.1))],
            FileDeadLetter(tmp_path / "alerts-dlq.jsonl"))

    async def published() -> list[dict[str, Any]]:
        return await read_topic(kafka.bootstrap, signals)

    async def run(svc: SignalsService) -> tuple[asyncio.Event, asyncio.Task[None]]:
        stop = asyncio.Event()
        return stop, asyncio.create_task(svc.run(stop))

    await produce(kafka.bootstrap, events_topic, scenario().events, 4,
                  raw=[b"not json", b'{"type": "dossier.received"}'])
    await _dead_lettered_supplements(kafka.bootstrap, events_topic, dlq)
    first = service()
    stop, task = await run(first)
    try:
        msgs = await _until(lambda: _n(published, 5), 180, "five raised signals")
        assert {(m["kind"], m["unit_id"], m["procedure_id"]) for m in msgs} == RAISED
        assert all(m["state"] == "raised" and m["crossing"] == 1 for m in msgs)
        assert all(m["_key"] == m["unit_id"] for m in msgs)  # keyed by unit
        rep = next(m for m in msgs if m["kind"] == "repeated_supplements")
        assert sorted(rep["dossiers"]) == HARSH_DOSSIERS and rep["dossier_count"] == 6
        assert rep["as_of"] == "2024-04-14T12:00:00+07:00" and rep["value"] == 6
        assert "officer" not in str(msgs)  # dossiers, never officers
        await _until(lambda: _true(len(hook.alerts) >= 5), 30, "five alerts")
        assert sorted(a["alert_id"] for a in hook.alerts) == sorted(m["alert_id"] for m in msgs)
        assert all(a["kind"] == "signal" for a in hook.alerts)

        # more evidence for a raised signal: no new crossing, nothing published
        more = Script("more")
        more.dossier("d-harsh", "d-harsh-extra", START + timedelta(days=6), "officer-harsh",
                     supplements=2, done_hours=30)
        more.tick(datetime(2024, 4, 14, 13, 0, tzinfo=TZ))
        await produce(kafka.bootstrap, events_topic, more.events, 4)

        await _until(lambda: _evaluated(first, "2024-04-14T13:00:00+07:00"), 60,
                     "an evaluation with the new dossier")
        assert any("d-harsh-extra" in st.dossiers for p in first.partitions.values()
                   for st in p.units.values())
        assert len(await published()) == 5
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)

    # a restarted service rebuilds what it published: no repeat
    second = service()
    stop, task = await run(second)
    try:
        await asyncio.wait_for(second.ready.wait(), 180)
        assert len(await published()) == 5
        assert len(hook.alerts) == 5
        # a month later in event time the fortnight's dossiers leave the look-back: cleared
        # once each; the dossiers still open past due keep their signal raised
        later = Script("later")
        later.tick(datetime(2024, 5, 20, 8, 0, tzinfo=TZ))
        await produce(kafka.bootstrap, events_topic, later.events, 4)
        msgs = await _until(lambda: _n(published, 9), 120, "four cleared signals")
        cleared = msgs[5:]
        assert {(m["kind"], m["unit_id"], m["procedure_id"]) for m in cleared} == RAISED - {
            ("overdue_open", "d-sitting", None)}
        assert all(m["state"] == "cleared" and m["crossing"] == 2 for m in cleared)
        await _until(lambda: _evaluated(second, "2024-05-20T08:00:00+07:00"), 60,
                     "an evaluation a month later")
        await asyncio.sleep(1)  # more evaluations would have nothing new to say
        assert len(await published()) == 9
        assert len(hook.alerts) == 5  # clears are not alerted unless asked
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await hook.stop()
    assert not (tmp_path / "alerts-dlq.jsonl").exists()


async def _dead_lettered_supplements(bootstrap: str, topic: str, dlq: str) -> None:
    """Three d-fine dossiers asked twice for papers, but the worker dead-lettered the requests
    (say, ``future_timestamp`` when they arrived): the service must not count them either."""
    from aiokafka import AIOKafkaProducer

    s = Script("dlq")
    for i in range(3):
        s.dossier("d-fine", f"d-fine-dlq-{i}", START + timedelta(days=1, hours=i), "officer-fine",
                  supplements=2, done_hours=30)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for ev in s.events:
            meta = await producer.send_and_wait(topic, json.dumps(ev).encode(),
                                                key=b"d-fine")
            if ev["type"] == "dossier.supplement_requested":
                record = {"error": "future_timestamp", "detail": "test", "topic": topic,
                          "partition": meta.partition, "offset": meta.offset, "key": "d-fine",
                          "value": json.dumps(ev), "rejected_at": "2024-04-02T00:00:00Z"}
                await producer.send_and_wait(dlq, json.dumps(record).encode(), key=b"d-fine")
    finally:
        await producer.stop()


async def _n(read: Any, n: int) -> list[dict[str, Any]] | None:
    msgs = await read()
    assert len(msgs) <= n, f"more messages than expected: {msgs[n:]}"
    return msgs if len(msgs) == n else None


async def _true(value: bool) -> bool:
    return value


async def _evaluated(svc: SignalsService, at: str) -> bool:
    """The service evaluated with every partition at or past ``at`` (event time)."""
    t = parse_ts(at)
    return bool(svc.evaluated) and all(w is not None and w >= t for w in svc.evaluated.values())

"""Events in, one webhook out: the real ``bando worker`` scores events on the real broker, a
band drop comes out on ``band-changes``, and the notifier delivers it to a local HTTP receiver
exactly once although the receiver fails twice.

The scenario is the at-risk one (tests/alerts/test_alerts_at_risk.py): a district is excellent
on the morning five of its open dossiers fall due; nobody finishes them; after 15:00 it is good.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from alerts.at_risk import AtRiskResult, assess_state, to_message
from alerts.notifier import Notifier, NotifierConfig
from alerts.policy import AlertPolicy
from alerts.sinks import FileDeadLetter, RetryPolicy, WebhookSink
from bando.infra import create_topics_async, project_topics
from bando.settings import Settings
from scoring.events import Event
from scoring.facts import UnitState, apply_event
from scoring.model import load_model
from scoring.timeutil import parse_ts, parse_window

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
UNIT = "district-07"
DAY = "2024-04-{:02d}T{:02d}:{:02d}:00+07:00"


def at(day: int, hour: int = 0, minute: int = 0) -> str:
    return DAY.format(day, hour, minute)


def scenario_events() -> list[dict[str, Any]]:
    """12 dossiers of one district, all online, digitized, synced and paid online; five done
    on time, five due April 12 at 15:00, two due April 20; one complete publication."""
    evs: list[dict[str, Any]] = [
        {
            "event_id": "pub-1",
            "type": "procedure.published",
            "occurred_at": at(1, 8),
            "unit_id": UNIT,
            "procedure_id": "P1",
            "announced_on_time": True,
            "publicized_on_time": True,
            "complete": True,
        }
    ]
    for i in range(12):
        d = f"D-{i:02d}"
        due = at(5) if i < 5 else (at(12, 15) if i < 10 else at(20))
        base = {"unit_id": UNIT, "dossier_id": d}
        evs += [
            {
                **base,
                "event_id": f"{d}-r",
                "type": "dossier.received",
                "occurred_at": at(1, 9, i),
                "procedure_id": "P1",
                "channel": "online",
                "due_at": due,
                "online_eligible": True,
                "full_online": True,
                "fee_required": True,
                "reused_data": True,
                "pds_linked": True,
                "population_db": True,
            },
            {**base, "event_id": f"{d}-dg", "type": "dossier.digitized", "occurred_at": at(2)},
            {**base, "event_id": f"{d}-s", "type": "dossier.synced", "occurred_at": at(2)},
            {
                **base,
                "event_id": f"{d}-p",
                "type": "dossier.paid",
                "occurred_at": at(2, 1),
                "online": True,
                "amount_vnd": 50000,
            },
        ]
        if i < 5:
            evs.append(
                {
                    **base,
                    "event_id": f"{d}-c",
                    "type": "dossier.completed",
                    "occurred_at": at(3),
                    "e_result": True,
                }
            )
    return evs


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    env.update(
        {"BANDO_" + f.name.upper(): str(getattr(settings, f.name)) for f in fields(settings)}
    )
    env["PYTHONPATH"] = str(REPO)
    return env


@contextlib.contextmanager
def worker(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bando.cli", "worker", "--log-level", "warning"],
            cwd=REPO,
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def produce(
    settings: Settings, events: list[dict[str, Any]], ticks_at: str | None, topic: str = ""
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for ev in events:
            await producer.send(topic or settings.events_topic, orjson.dumps(ev), key=UNIT.encode())
        if ticks_at:  # a tick on every partition advances every partition's event time
            for p in range(settings.partitions):
                tick = {
                    "event_id": f"tick-{ticks_at}-{p}",
                    "type": "clock.tick",
                    "occurred_at": ticks_at,
                }
                await producer.send(settings.events_topic, orjson.dumps(tick), partition=p)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_for_score(settings: Settings, band: str, log: Path, timeout: float = 120) -> None:
    consumer = AIOKafkaConsumer(
        settings.scores_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    seen: list[Any] = []
    try:
        await wait_for(
            lambda: any(m["unit_id"] == UNIT and m["band"] == band for m in seen),
            timeout,
            f"a {band} score",
            log,
            poll=lambda: _poll(consumer, seen),
        )
    finally:
        await consumer.stop()


async def _poll(consumer: AIOKafkaConsumer, seen: list[Any]) -> None:
    batch = await consumer.getmany(timeout_ms=200)
    seen += [orjson.loads(r.value) for recs in batch.values() for r in recs]


async def wait_for(cond: Any, timeout: float, what: str, log: Path, poll: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            tail = log.read_bytes()[-3000:].decode("utf-8", "replace") if log.exists() else ""
            raise AssertionError(f"{what} not reached in {timeout:.0f}s\nworker log:\n{tail}")
        await (poll() if poll else asyncio.sleep(0.2))


async def test_a_band_drop_from_events_is_delivered_exactly_once(live_settings, receiver, tmp_path):
    settings = live_settings
    rec = await receiver(fail=["before", "after"])
    config = NotifierConfig(
        band_changes_topic=settings.band_changes_topic,
        at_risk_topic=f"at-risk-{settings.app_id}",
        group_id=f"{settings.app_id}-notifier",
        kafka={"bootstrap_servers": settings.kafka_bootstrap},
    )
    sink = WebhookSink(rec.url, retry=RetryPolicy(max_attempts=5, initial_backoff=0.05))
    notifier = Notifier(config, AlertPolicy(), [sink], FileDeadLetter(tmp_path / "dead.jsonl"))
    log = tmp_path / "worker.log"
    stop = asyncio.Event()
    topics = [*project_topics(settings), config.at_risk_topic]
    await create_topics_async(settings.kafka_bootstrap, topics, settings.partitions)
    with worker(settings, log):
        # the morning the five dossiers fall due: excellent (and, by the early warning, at risk)
        await produce(settings, scenario_events(), ticks_at=at(12, 9))
        task = asyncio.create_task(notifier.run(stop))
        try:
            # wait until the worker published the morning's score: excellent
            await wait_for_score(settings, "excellent", log)
            # the early warning of that morning, published as the scorer will publish it
            warning = to_message(morning_warning(), UNIT, "month:2024-04")
            await produce(settings, [warning], ticks_at=None, topic=config.at_risk_topic)
            await wait_for(lambda: len(rec.accepted) == 1, 60, "the at-risk alert", log)
            # 16:00: five dossiers are late; the scorer re-scores on the watermark alone
            await produce(settings, [], ticks_at=at(12, 16))
            await wait_for(lambda: len(rec.accepted) >= 3, 120, "delivered band drops", log)
            await asyncio.sleep(2)  # any repeat would show up now
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    # first the warning (503, accepted + lost 500, repeat ignored), then one drop per live
    # window (the scoreboard keeps the month and the year), each delivered once
    risk, *drops = rec.accepted.values()
    assert risk["kind"] == "at_risk" and risk["dossier_ids"] == [f"D-{i:02d}" for i in range(5, 10)]
    assert sorted(a["window"] for a in drops) == ["month:2024-04", "year:2024"]
    assert len(rec.requests) == 5
    assert {k for k, _, _ in rec.requests} == set(rec.accepted)
    assert all(risk["as_of"] < a["as_of"] for a in drops)
    for alert in drops:
        assert alert["kind"] == "band_drop"
        assert (alert["unit_id"], alert["old_band"], alert["new_band"]) == (
            UNIT,
            "excellent",
            "good",
        )
        assert alert["total"] == 89.56 and alert["as_of"].startswith("2024-04-12T16:00")
        assert [x["indicator"] for x in alert["top_losses"]] == ["on_time", "dossier_satisfaction"]
    assert not (tmp_path / "dead.jsonl").exists()


def morning_warning() -> AtRiskResult:
    """The early warning at 09:00 from the scorer's own fold of the same events (what the
    scorer publishes once it calls ``alerts.at_risk``; the notifier does the rest)."""
    state = UnitState()
    for ev in scenario_events():
        due = parse_ts(ev.get("due_at"))
        times = {"due_at": due} if due is not None else {}
        ts = parse_ts(ev["occurred_at"])
        assert ts is not None
        apply_event(state, Event(ev["event_id"], ev["type"], ts, UNIT, dict(ev), b"", times))
    morning = parse_ts(at(12, 9))
    assert morning is not None
    return assess_state(
        load_model("vn766@1"), state, parse_window("month:2024-04"), morning, 24 * 3600
    )


def test_the_early_warning_names_the_dossiers_due_that_morning():
    result = morning_warning()
    assert result.at_risk and (result.band, result.projected_band) == ("excellent", "good")
    assert result.dossier_ids == tuple(f"D-{i:02d}" for i in range(5, 10))
    assert result.projected_total == 89.56 and result.late_tolerance == 4

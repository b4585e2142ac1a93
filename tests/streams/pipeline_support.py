"""Drive the real pipeline from tests: worker subprocesses, producing, consuming.

(No ``__init__``: pytest puts this folder on ``sys.path``, hence the distinctive module name.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bando.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    for f in fields(settings):
        env["BANDO_" + f.name.upper()] = str(getattr(settings, f.name))
    return env


class Worker:
    """``bando worker`` as a real process, so it can be SIGKILLed."""

    def __init__(self, settings: Settings, log_path: Path, log_level: str = "warning"):
        self.settings = settings
        self.log_path = log_path
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "bando.cli", "worker", "--log-level", self.log_level]

    def start(self) -> Worker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(self.argv(), cwd=REPO, env=settings_env(self.settings),
                                     stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""


def key_of(line: bytes) -> bytes:
    try:
        unit = orjson.loads(line).get("unit_id")
    except (orjson.JSONDecodeError, AttributeError):
        return b"-"
    return unit.encode() if isinstance(unit, str) else b"-"


async def produce_lines(bootstrap: str, topic: str, lines: Iterable[bytes]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    n = 0
    try:
        for line in lines:
            await producer.send(topic, line, key=key_of(line))
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


async def produce_ticks(bootstrap: str, topic: str, partitions: int, at: str, tag: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for p in range(partitions):
            tick = {"event_id": f"tick-{tag}-{p}", "type": "clock.tick", "occurred_at": at}
            await producer.send_and_wait(topic, orjson.dumps(tick), partition=p)
    finally:
        await producer.stop()


async def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` not yet committed by ``group`` (all of them before it commits)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(tps)
        try:
            committed = await admin.list_consumer_group_offsets(group)
        except Exception:  # no coordinator before the group's first member joins
            committed = {}
        return sum(end - max(committed[tp].offset if tp in committed else 0, 0)
                   for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


async def read_all(bootstrap: str, topic: str, idle_ms: int = 1500) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            if not batch:
                return out
            for msgs in batch.values():
                out.extend(orjson.loads(m.value) for m in msgs)
    finally:
        await consumer.stop()


def latest_by_unit(messages: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for m in messages:
        latest[(m["window"], m["unit_id"])] = m
    return latest


def diff_against(truth: dict[str, Any], latest: dict[tuple[str, str], dict]) -> list[str]:
    """Differences between ``bando score`` output and the latest published messages."""
    problems = []
    window = truth["window"]
    for unit in truth["units"]:
        msg = latest.get((window, unit["unit_id"]))
        if msg is None:
            if unit["total"] is not None:
                problems.append(f"{unit['unit_id']}: no message, expected {unit['total']}")
            continue
        for k in ("total", "band", "rank", "peer_count", "indicators", "groups"):
            if msg[k] != unit[k]:
                problems.append(f"{unit['unit_id']} {k}: live {str(msg[k])[:80]} "
                                f"!= offline {str(unit[k])[:80]}")
    return problems


def wait_until(check: Callable[[], list[str]], timeout: float, what: str,
               on_fail: Callable[[], str] = lambda: "", interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    problems: list[str] = ["not checked"]
    while time.monotonic() < deadline:
        problems = check()
        if not problems:
            return
        time.sleep(interval)
    raise AssertionError(f"{what} after {timeout:.0f}s: {problems[:8]}\n{on_fail()}")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def wait_caught_up(s: Any, worker: Any) -> None:
    """Until the worker group has committed every record of the events topic."""
    wait_until(lambda: [f"lag {n}"] if (n := run(group_lag(
        s.kafka_bootstrap, s.app_id, s.events_topic))) else [], 90, "caught up",
        worker.log_tail)

"""Kafka helpers of the audit integration test: a simulated quarter delivered like the city's
producers would deliver it, and small admin/produce helpers.

The worker harness itself is the streams tests' (``tests/streams/pipeline_support.py``), loaded
from its folder so both suites drive the pipeline the same way. (No ``__init__``: pytest puts
this folder on ``sys.path``, hence the distinctive module name.)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bando.simulator import Chaos, generate_timed, messages, read_catalog
from scoring.timeutil import format_ts, parse_ts

_STREAMS_TESTS = Path(__file__).resolve().parents[1] / "streams"
if str(_STREAMS_TESTS) not in sys.path:
    sys.path.insert(0, str(_STREAMS_TESTS))

import pipeline_support  # noqa: E402  (the streams tests' worker harness)

Worker = pipeline_support.Worker
settings_env = pipeline_support.settings_env
read_all = pipeline_support.read_all
latest_by_unit = pipeline_support.latest_by_unit
diff_against = pipeline_support.diff_against
wait_until = pipeline_support.wait_until


def quarter_messages(start: str, end: str, seed: int, scale: float
                     ) -> list[tuple[int, bytes | None, bytes]]:
    """(event time s, key, value) in delivery order: the simulator's events with chaos (bad
    lines, exact duplicates, bounded shuffling)."""
    events = generate_timed(read_catalog(), start, end, seed=seed, rate_scale=scale,
                            tick_every=3600)
    chaos = Chaos(bad_rate=0.01, dup_rate=0.02, shuffle_window=20)
    return list(messages(events, chaos, seed=seed))


async def produce_quarter(bootstrap: str, topic: str, msgs: list[tuple[int, bytes | None, bytes]],
                          partitions: int, extra: list[bytes]) -> int:
    """Produce with the broker timestamp = event time (as a producer on the spot would), so that
    replay can locate history by timestamp. Ticks go to every partition (as the simulator's
    live mode sends them); ``extra`` lines are sent with the wall-clock timestamp."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=10, max_batch_size=256 * 1024)
    await producer.start()
    n = 0
    try:
        for t, key, value in msgs:
            if key is None:
                tick = orjson.loads(value)
                base = tick["event_id"]
                for p in range(partitions):
                    tick["event_id"] = f"{base}-p{p}"
                    await producer.send(topic, orjson.dumps(tick), partition=p,
                                        timestamp_ms=t * 1000)
                    n += 1
            else:
                await producer.send(topic, value, key=key, timestamp_ms=t * 1000)
                n += 1
        for value in extra:
            unit = orjson.loads(value).get("unit_id", "-")
            await producer.send(topic, value, key=unit.encode())
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


async def produce_final_ticks(bootstrap: str, topic: str, partitions: int, at: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        ms = (parse_ts(at) or 0) // 1000
        for p in range(partitions):
            tick = {"event_id": f"final-tick-p{p}", "type": "clock.tick", "occurred_at": at}
            await producer.send_and_wait(topic, orjson.dumps(tick), partition=p,
                                         timestamp_ms=ms)
    finally:
        await producer.stop()


async def produce_copy(bootstrap: str, topic: str, key: bytes, msg: dict[str, Any]
                       ) -> tuple[int, int]:
    """Produce a (tampered) message; returns its (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, orjson.dumps(msg), key=key)
        return meta.partition, meta.offset
    finally:
        await producer.stop()


async def consumer_groups(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {g[0] for g in await admin.list_consumer_groups()}
    finally:
        await admin.close()


def final_time(msgs: list[tuple[int, bytes | None, bytes]]) -> str:
    latest = 0
    for _, _, value in msgs:
        try:
            ts = parse_ts(orjson.loads(value).get("occurred_at"))
        except (orjson.JSONDecodeError, AttributeError):
            continue
        latest = max(latest, ts or 0)
    return format_ts(latest + 1_000_000)


def run(coro: Any) -> Any:
    return asyncio.run(coro)

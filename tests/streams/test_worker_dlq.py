"""The worker's dead-letter path end to end: the real ``create_app`` batch handler fed a bad
message, faust's aiokafka producer replaced by a fake that checks message sizes as aiokafka
does and can fail the delivery to one topic. What must hold: the DLQ message always fits the
producer (else the batch handler raises and the worker stops on that message after every
restart), and a DLQ delivery that failed stops the worker before the offset commit (else the
event is committed with no DLQ record anywhere)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.types import TP

from bando.settings import Settings
from streams.app import create_app
from streams.dlq import MAX_KEY_CHARS


class _Batch:
    def __init__(self) -> None:
        self.n = 0

    def append(self, key: bytes, value: bytes, timestamp: Any) -> object:
        self.n += 1
        return object()

    def record_count(self) -> int:
        return self.n


class _Kafka:
    """faust's aiokafka producer as the worker uses it; deliveries to ``fail_topic`` fail."""

    def __init__(self, max_request_size: int, fail_topic: str | None = None) -> None:
        self.max_request_size, self.fail_topic = max_request_size, fail_topic
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    def _delivery(self, topic: str) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        if topic == self.fail_topic:
            fut.set_exception(KafkaTimeoutError(f"delivery to {topic} failed"))
        else:
            fut.set_result(SimpleNamespace(topic=topic, partition=0, offset=0))
        return fut

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, None, None))
        return self._delivery(topic)

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Any = None) -> asyncio.Future[Any]:
        # aiokafka's own check (AIOKafkaProducer._serialize), before anything is queued
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers or [])
        if size > self.max_request_size:
            raise MessageSizeTooLargeError(f"The message is {size} bytes")
        self.sent.append((topic, key, value))
        return self._delivery(topic)

    async def flush(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)  # one warning per reject, faust's startup chatter
    yield
    logging.disable(logging.NOTSET)


async def _reject_one(tmp_path: Any, key: bytes, fail_dlq: bool = False
                      ) -> tuple[Any, Settings, _Kafka, list[int]]:
    """One bad message (offset 41) through the worker's batch handler: (app, settings, the
    fake producer, the offsets acked)."""
    settings = Settings.from_env(env={"BANDO_RANKER": "off"}, kafka_bootstrap="127.0.0.1:9",
                                 data_dir=str(tmp_path))
    app = create_app(settings)
    kafka = _Kafka(app.conf.producer_max_request_size,
                   settings.dlq_topic if fail_dlq else None)
    app.producer._producer = kafka
    app.producer._ensure_producer = lambda: kafka

    async def started() -> None:
        return None

    app.producer.maybe_start = started
    acked: list[int] = []

    async def new_records(tp: TP, records: list[Any]) -> list[Any]:
        return records

    app.consumer.new_records = new_records
    app.consumer.still_current = lambda generation: True
    app.consumer.ack_offsets = lambda tp, offsets: acked.extend(offsets)
    handler = app.transport.batch_handlers[settings.events_topic]
    record = SimpleNamespace(offset=41, key=key, value=b"{not json", timestamp=0)
    await handler(TP(settings.events_topic, 0), [record])
    return app, settings, kafka, acked


@pytest.mark.parametrize("key", [b"k" * 520_000, b"\xff" * 450_000, b"\x01" * 170_000],
                         ids=["ascii-520KB", "binary-450KB", "control-chars-170KB"])
def test_a_rejected_message_with_a_huge_key_goes_to_the_dlq(tmp_path: Any, key: bytes) -> None:
    """Each key fits the broker's 1 MB message; copied whole, as text, base64 or escaped
    control characters, and reused as the DLQ message's key, the DLQ message did not fit."""

    async def go() -> None:
        app, settings, kafka, acked = await _reject_one(tmp_path, key)
        assert acked == [41]
        (dlq_key, value), = [(k, v) for t, k, v in kafka.sent if t == settings.dlq_topic]
        assert dlq_key == key[:MAX_KEY_CHARS]
        record = orjson.loads(value)
        assert (record["error"], record["partition"], record["offset"]) == ("invalid_json", 0, 41)
        assert record["key_truncated"] is True and record["key_bytes"] == len(key)
        assert len(record["key"]) == MAX_KEY_CHARS
        await asyncio.wait_for(app.producer.flush(), 5)  # nothing failed: the commit goes on

    asyncio.run(go())


def test_a_failed_dlq_delivery_stops_the_worker_before_the_commit(tmp_path: Any) -> None:
    """faust's Topic.send only logs a failed delivery: the offset was committed, and the event
    was in neither the scores nor the DLQ."""

    async def go() -> None:
        app, settings, kafka, acked = await _reject_one(tmp_path, b"u1", fail_dlq=True)
        assert acked == [41]  # only the flush before the commit can keep it uncommitted
        assert [k for t, k, _ in kafka.sent if t == settings.dlq_topic] == [b"u1"]
        with pytest.raises(KafkaTimeoutError):
            await asyncio.wait_for(app.producer.flush(), 5)

    asyncio.run(go())

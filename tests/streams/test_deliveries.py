"""``streams.deliveries``: a changelog batch or score that Kafka did not take stops the worker
between faust's producer flush and its offset commit, so those events are read again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from bando.settings import Settings
from streams.app import create_app
from streams.deliveries import Deliveries, checked_flush


class _Producer:
    def __init__(self) -> None:
        self.flushed = 0

    async def flush(self) -> None:
        self.flushed += 1


async def test_a_failed_delivery_stops_the_flush_before_the_commit() -> None:
    loop = asyncio.get_running_loop()
    ok, waiting, failed = loop.create_future(), loop.create_future(), loop.create_future()
    ok.set_result(None)
    failed.set_exception(KafkaTimeoutError())
    changelogs, scores = Deliveries(), Deliveries()
    changelogs.add(ok)
    changelogs.add(waiting)
    producer = _Producer()
    checked_flush(producer, changelogs, scores)
    await producer.flush()
    assert producer.flushed == 1 and changelogs.futures == [waiting]  # done ones forgotten
    scores.add(failed)
    with pytest.raises(KafkaTimeoutError):
        await producer.flush()
    assert producer.flushed == 2  # flushed first: everything in flight had its answer


def test_the_workers_producer_flush_checks_its_deliveries(tmp_path: Any) -> None:
    """What faust awaits before each commit (``Consumer.commit``: ``producer.flush`` then
    ``_commit``) raises once the store's changelog batch failed."""

    async def go() -> None:
        app = create_app(Settings.from_env(env={}, kafka_bootstrap="127.0.0.1:9",
                                           data_dir=str(tmp_path)))
        failed = asyncio.get_running_loop().create_future()
        failed.set_exception(KafkaTimeoutError())
        app.bando_scorer.store.sent.add(failed)
        with pytest.raises(KafkaTimeoutError):
            await asyncio.wait_for(app.producer.flush(), 5)

    asyncio.run(go())

"""The notifier when Kafka fails during a rebalance: aiokafka only logs an exception raised by
``on_partitions_assigned``, so a rebuild that failed there must be taken over by the loop, or
the notifier waits for ever without a word. A fake consumer (the real broker cannot be made
to fail between the assignment and the rebuild on cue) that calls the listener from
``getmany``, swallows its exceptions as aiokafka does, and fails ``committed`` twice."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

import alerts.notifier
from alerts.notifier import Notifier, NotifierConfig
from alerts.policy import AlertPolicy
from alerts.sinks import FileDeadLetter
from bando.takeover import Takeover

TP = TopicPartition("band-changes", 0)


def _drop(i: int) -> bytes:
    return orjson.dumps({
        "unit_id": f"d{i}", "window": "month:2024-04", "old_band": "good", "new_band": "fair",
        "direction": "down", "total": 78.0, "as_of": "2024-04-14T17:00:00+07:00",
        "top_losses": [{"indicator": "on_time", "points_lost": 4.0}]})


class _Record:
    def __init__(self, offset: int) -> None:
        self.topic, self.partition, self.offset = TP.topic, TP.partition, offset
        self.value = _drop(offset)


class _Consumer:
    failures = 2  # committed() fails this many times (Kafka away)
    made: list[_Consumer] = []

    def __init__(self, **_: Any) -> None:
        self.listener: Any = None
        self.position = 0
        self.assigned = False
        self.seeks: list[int] = []
        self.commits: list[int] = []
        _Consumer.made.append(self)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def assignment(self) -> set[TopicPartition]:
        return {TP} if self.assigned else set()

    async def committed(self, tp: TopicPartition) -> int | None:
        if _Consumer.failures:
            _Consumer.failures -= 1
            raise KafkaConnectionError("broker away")
        return None  # nothing committed yet: nothing to rebuild

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)
        self.position = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets[TP])

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict[Any, list[Any]]:
        if not self.assigned:
            self.assigned = True
            try:  # aiokafka's coordinator: a listener's exception is logged, not raised
                await self.listener.on_partitions_assigned({TP})
            except Exception:  # noqa: BLE001
                logging.getLogger("aiokafka").exception("listener failed")
        end = min(self.position + 3, 6)
        if self.position >= end:
            await asyncio.sleep(0.01)
            return {}
        batch = [_Record(o) for o in range(self.position, end)]
        self.position = end
        return {TP: batch}


class _Sink:
    name = "recording"

    def __init__(self) -> None:
        self.offsets: list[int] = []

    async def start(self) -> None:
        pass

    async def send(self, alert: dict[str, Any]) -> None:
        self.offsets.append(alert["source"]["offset"])

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("failures", [1, 3])
async def test_a_rebuild_that_fails_in_the_listener_is_retried_by_the_loop(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any, caplog: Any, failures: int) -> None:
    monkeypatch.setattr(alerts.notifier, "AIOKafkaConsumer", _Consumer)
    monkeypatch.setattr(_Consumer, "failures", failures)
    _Consumer.made.clear()
    sink = _Sink()
    notifier = Notifier(NotifierConfig(), AlertPolicy(), [sink], FileDeadLetter(tmp_path / "d"))
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        await asyncio.wait_for(notifier.ready.wait(), 10)  # hung for ever before the fix
        deadline = asyncio.get_running_loop().time() + 10
        while sink.offsets != list(range(6)) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    consumer = _Consumer.made[0]
    assert sink.offsets == list(range(6))  # each once, in order: none handled before rebuilt
    assert consumer.seeks[0] == 0  # what came while the rebuild had failed is read again
    assert consumer.commits[-1] == 6
    assert "taking over" in caplog.text


async def test_takeover_stops_retrying_when_the_service_stops() -> None:
    """``bando.takeover`` (the signals service's too): a settle that keeps failing is retried
    until the service stops, and the batch fetched meanwhile is never handed out."""
    calls: list[list[TopicPartition]] = []

    async def settle(assigned: list[TopicPartition]) -> None:
        calls.append(assigned)
        raise KafkaConnectionError("still away")

    consumer = _Consumer()
    consumer.assigned = True
    takeover = Takeover("test", settle, max_delay=0.05)
    takeover.revoked()
    await takeover.assigned([TP])
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    assert not await takeover.ready_for(consumer, {TP: [_Record(4), _Record(5)]}, stop)
    assert consumer.seeks == [4] and len(calls) >= 3 and takeover.failed == [TP]


def test_a_units_two_topics_go_to_the_same_notifier() -> None:
    """band-changes and at-risk are keyed by unit_id with the same partition count: the
    notifier's first assignor keeps partition i of both on one member (round-robin, aiokafka's
    default, split them: each notifier held half of a unit's alerting state)."""
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    from alerts.notifier import ASSIGNORS

    class Cluster:
        def partitions_for_topic(self, topic: str) -> set[int]:
            return {0, 1, 2}

    topics = ["band-changes", "at-risk"]

    def owners(assignor: Any) -> dict[int, set[str]]:
        members = {m: assignor.metadata(topics) for m in ("notifier-a", "notifier-b")}
        out: dict[int, set[str]] = {}
        for member, assignment in assignor.assign(Cluster(), members).items():
            for _topic, partitions in assignment.assignment:
                for p in partitions:
                    out.setdefault(p, set()).add(member)
        return out

    assert all(len(m) == 1 for m in owners(ASSIGNORS[0]).values())
    assert any(len(m) == 2 for m in owners(RoundRobinPartitionAssignor).values())

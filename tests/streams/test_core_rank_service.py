"""``streams.rank_service.ChangelogStore``: the ranker's state and its changelog encoding."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from bando.settings import Settings
from streams.rank_service import ChangelogStore, RankerService
from streams.ranker import RankerCore
from streams.scorer import SEP


def test_records_faust_wrote_load_and_rebuild_the_ranker(score_msg) -> None:
    # faust's "json" codec (json.dumps) wrote the table before the ranker had its own consumer
    store = ChangelogStore("app-ranked-changelog")
    msg = {**score_msg("u1", 70.0), "rank": 1, "peer_count": 1}
    key = msg["window"] + SEP + "u1"
    store.apply(json.dumps(key).encode(), json.dumps(msg).encode())
    store.apply(json.dumps("x" + SEP + "gone").encode(), b"{}")
    store.apply(json.dumps("x" + SEP + "gone").encode(), None)  # tombstone
    store.apply(None, b"{}")  # no key: never written by faust, ignored
    assert store.data == {key: msg}
    core = RankerCore(store)
    core.rebuild()
    out = core.process([{**score_msg("u2", 80.0)}])
    # u1 keeps its old rank in memory, so its move to 2nd is reported
    assert [(m["unit_id"], m["rank"]) for m in out.scores] == [("u1", 2), ("u2", 1)]
    assert [(c["unit_id"], c["old_rank"], c["new_rank"]) for c in out.rank_changes] == [
        ("u1", 1, 2)]
    assert set(store.pending) == {key, msg["window"] + SEP + "u2"}


class _Batch:
    def __init__(self) -> None:
        self.n = 0

    def append(self, key: bytes, value: bytes, timestamp: None) -> object:
        self.n += 1
        return object()

    def record_count(self) -> int:
        return self.n


class _Producer:
    """Acknowledges each send on the next loop turn (or fails those of ``failing``), and logs
    what happened in order."""

    def __init__(self, log: list[tuple[str, str]], failing: str = "") -> None:
        self.log, self.failing = log, failing

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()

        def ack() -> None:
            if topic == self.failing:
                fut.set_exception(KafkaConnectionError("gone"))
            else:
                fut.set_result(None)
                self.log.append(("acked", topic))

        asyncio.get_running_loop().call_soon(ack)
        return fut

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future:
        self.log.append(("state", topic))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class _Consumer:
    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.log.append(("commit", str(list(offsets.values()))))


def _service(log: list[tuple[str, str]], failing: str = "") -> RankerService:
    service = RankerService(Settings.from_env(env={}))
    service.producer = _Producer(log, failing)  # type: ignore[assignment]
    service.consumer = _Consumer(log)  # type: ignore[assignment]
    return service


def _records(*msgs: dict[str, Any]) -> list[Any]:
    return [SimpleNamespace(value=orjson.dumps(m), offset=i) for i, m in enumerate(msgs)]


def test_the_state_is_saved_only_once_the_outputs_are_delivered(score_msg) -> None:
    """Saved first, a crash between the two would lose the band change for good: the batch,
    ranked again from a state holding the new band, finds no change."""
    log: list[tuple[str, str]] = []
    service = _service(log)
    s = service.settings
    asyncio.run(service.rank(_records(score_msg("u1", 90.0, "2024-04-01T00:00:00+07:00"))))
    log.clear()
    asyncio.run(service.rank(_records(score_msg("u1", 40.0, "2024-04-02T00:00:00+07:00"))))
    kinds = [k for k, _ in log]
    state_at = kinds.index("state")
    assert {t for k, t in log[:state_at] if k == "acked"} == {s.scores_topic,
                                                             s.band_changes_topic}
    assert "acked" not in kinds[state_at:] and kinds[-1] == "commit"


def test_an_undelivered_band_change_leaves_the_state_unsaved(score_msg) -> None:
    log: list[tuple[str, str]] = []
    service = _service(log)
    asyncio.run(service.rank(_records(score_msg("u1", 90.0, "2024-04-01T00:00:00+07:00"))))
    saved = dict(service.store.data)
    log.clear()
    service.producer.failing = service.settings.band_changes_topic  # type: ignore[union-attr]
    drop = _records(score_msg("u1", 40.0, "2024-04-02T00:00:00+07:00"))
    with pytest.raises(KafkaConnectionError):
        asyncio.run(service.rank(drop))
    assert [k for k, _ in log if k in ("state", "commit")] == []
    # restarted from the saved state and ranked again: the band change comes again
    store = ChangelogStore("x")
    store.data = saved
    again = RankerCore(store)
    again.rebuild()
    out = again.process([orjson.loads(r.value) for r in drop])
    assert [(b["old_band"], b["new_band"]) for b in out.band_changes] == [
        (score_msg("u1", 90.0)["band"], score_msg("u1", 40.0)["band"])]


def test_a_ranker_that_loses_its_partition_drops_its_score_gauges() -> None:
    """Left behind, two workers' gauges would count every unit twice, one of them frozen."""
    from prometheus_client import REGISTRY

    from bando import metrics
    from streams.rank_service import _Listener

    metrics.observe_unit_score("gauge-u", "month:2024-04", 61.5, "average")
    labels = {"unit_id": "gauge-u", "window_kind": "month"}
    assert REGISTRY.get_sample_value("bando_unit_score", labels) == 61.5
    service = RankerService(Settings.from_env(env={}))
    asyncio.run(_Listener(service).on_partitions_revoked({TopicPartition("other", 0)}))
    assert REGISTRY.get_sample_value("bando_unit_score", labels) == 61.5  # not the ranker's
    asyncio.run(_Listener(service).on_partitions_revoked({service.tp}))
    assert REGISTRY.get_sample_value("bando_unit_score", labels) is None

"""The ranker stage on its own Kafka consumer: ``<app>-unit-scored`` in, ranked outputs out.

Why not faust's consumer: the worker's one aiokafka consumer (faust's, in its own thread)
fetched the internal topic together with ``procedure-events``, so ranking waited for whatever
held the scorer's fetches: faust's 1.5 s fetch wait (now 50 ms, ``streams.app``), a fetch of
events being drained, and faust's stopped flow during a rebalance of the events group or a
table recovery. Here the ranker has a plain ``AIOKafkaConsumer`` and ``AIOKafkaProducer`` of its
own, so its fetches and produce requests queue behind nobody's. It runs inside ``bando worker``
(a task of the faust app, ``Settings.ranker == "inline"``, the default) or as its own process
(``bando ranker``, workers with ``BANDO_RANKER=off``); the code is the same.

Ownership: consumer group ``<app_id>-ranker``. The internal topic has one partition (see
``streams.ranker``), so one member of the group ranks; when it dies the group moves the
partition to another worker after the session timeout.

State: RankerCore's ``ranked`` table (each unit's latest published message) lives in the
compacted topic ``<app_id>-ranked-changelog``, with the key and value encoding (JSON) that
faust's table used there, so a deployment's state carries over. It is read whole whenever the
partition is assigned: a few hundred keys (window, unit), and the records not yet compacted
away (the broker compacts closed segments only).

Guarantee: at-least-once with idempotent outputs, as in the scorer. A fetch's output messages
are acknowledged by the broker (acks=all) first, then its changelog records, then its offset is
committed. The state is saved only once the outputs are out: saved first, a crash before a
band change was delivered would have lost it for good (the batch, ranked again from a state
that already holds the new band, finds no change). A batch replayed after a crash or a
rebalance is ranked again from the reloaded state: a re-delivered older score is ignored, the
same score and the same rank and band changes are published again (the score's
``rank_basis`` names the new batch; an alert keeps its id, so the notifier sends it once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bando import kafka_auth, metrics
from bando.settings import Settings
from streams.ranker import RankerCore
from streams.scorer import SEP

log = logging.getLogger(__name__)

RANK_SLICE = 1000  # unit scores per RankerCore.process call (one rank_basis batch)
LOAD_FETCH_BYTES = 16 * 1024 * 1024


def internal_topic(settings: Settings) -> str:
    """Unit scores re-keyed by peer group, kept for ever: audits re-run ranking from it."""
    return f"{settings.app_id}-unit-scored"


def ranker_group(settings: Settings) -> str:
    return f"{settings.app_id}-ranker"


def ranked_changelog(settings: Settings) -> str:
    return f"{settings.app_id}-ranked-changelog"


def create_ranker_topics(settings: Settings) -> None:
    """The internal topic (kept for ever) and the ranker's changelog (compacted), one partition
    each. Created up front: a consumer that subscribes to a topic before it exists ignores it
    until its next metadata refresh (minutes)."""
    from bando.infra import create_topics

    security = kafka_auth.client_kwargs(settings)
    create_topics(settings.kafka_bootstrap, [internal_topic(settings)], 1,
                  settings.replication_factor, {"retention.ms": "-1"}, security=security)
    create_topics(settings.kafka_bootstrap, [ranked_changelog(settings)], 1,
                  settings.replication_factor, {"cleanup.policy": "compact"}, security=security)


class ChangelogStore:
    """``streams.scorer.Store`` for the ranker: a dict, its writes queued for a one-partition
    compacted changelog topic (latest record of a key wins, a null value deletes it)."""

    def __init__(self, topic: str):
        self.topic = topic
        self.data: dict[str, Any] = {}
        self.pending: dict[str, Any] = {}

    def get(self, table: str, key: str) -> Any:
        return self.data.get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self.data[key] = value
        self.pending[key] = value  # the last write of a batch wins

    def items(self, table: str) -> list[tuple[str, Any]]:
        return list(self.data.items())

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One changelog record, as read back."""
        if key is None:
            return
        k = orjson.loads(key)
        if value is None:
            self.data.pop(k, None)
        else:
            self.data[k] = orjson.loads(value)

    async def publish(self, producer: AIOKafkaProducer) -> list[asyncio.Future]:
        """Send the pending records in record batches; -> their delivery futures."""
        pending, self.pending = self.pending, {}
        sent: list[asyncio.Future] = []
        batch = producer.create_batch()
        for key, value in pending.items():
            k, v = orjson.dumps(key), orjson.dumps(value)
            if batch.append(key=k, value=v, timestamp=None) is None:  # full
                sent.append(await producer.send_batch(batch, self.topic, partition=0))
                batch = producer.create_batch()
                if batch.append(key=k, value=v, timestamp=None) is None:
                    raise ValueError(f"changelog record {key[:80]} exceeds a batch")
        if batch.record_count():
            sent.append(await producer.send_batch(batch, self.topic, partition=0))
        return sent


class _Listener(ConsumerRebalanceListener):
    def __init__(self, service: RankerService):
        self.service = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to hand over (a batch's offset is committed as soon as it is delivered);
        the score gauges are the next owner's to publish."""
        if self.service.tp in revoked:
            metrics.forget_unit_scores()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        # Loaded by the ranking loop, not here: aiokafka sends no heartbeats while this runs.
        if self.service.tp in assigned:
            self.service.reload = True


class RankerService:
    """One ranker: consumer, producer, state; ``run`` until cancelled."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.tp = TopicPartition(internal_topic(settings), 0)
        self.store = ChangelogStore(ranked_changelog(settings))
        self.core = RankerCore(self.store)
        self.reload = False  # the partition was (re)assigned: read the state back first
        self._connect = {"bootstrap_servers": settings.kafka_bootstrap,
                         **kafka_auth.client_kwargs(settings)}
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            **self._connect, acks="all", linger_ms=5, max_batch_size=512 * 1024)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **self._connect, group_id=ranker_group(self.settings),
            client_id=ranker_group(self.settings), enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=6000,
            heartbeat_interval_ms=500, max_poll_records=RANK_SLICE)
        self.consumer.subscribe([self.tp.topic], listener=_Listener(self))
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def run(self) -> None:
        await self.start()
        try:
            while True:
                await self.step()
        finally:
            await self.stop()

    async def step(self, timeout_ms: int = 1000) -> int:
        """Rank what one fetch brings; -> how many internal messages."""
        assert self.consumer is not None
        if self.reload:
            await self.load()
        fetched = await self.consumer.getmany(timeout_ms=timeout_ms)
        records = fetched.get(self.tp)
        if self.reload:
            # assigned during the wait: these records are read again once the state is loaded
            # (from where the load leaves the position: it may move it, see below)
            if records:
                self.consumer.seek(self.tp, records[0].offset)
            await self.load()
            return 0
        if not records:
            return 0
        await self.rank(records)
        return len(records)

    async def load(self) -> None:
        """Read the whole changelog into the store, then rebuild the ranker from it."""
        assert self.producer is not None
        self.reload = False
        await self.producer.flush()  # our own writes still in flight belong in what is read
        t0 = time.perf_counter()
        tp = TopicPartition(self.store.topic, 0)
        loader = AIOKafkaConsumer(**self._connect, enable_auto_commit=False,
                                  auto_offset_reset="earliest",
                                  fetch_max_bytes=LOAD_FETCH_BYTES,
                                  max_partition_fetch_bytes=LOAD_FETCH_BYTES)
        await loader.start()
        n = 0
        try:
            loader.assign([tp])
            end = (await loader.end_offsets([tp]))[tp]
            # an explicit offset: aiokafka's seek_to_beginning right after assign() can lose to
            # the reset that assign() started (seen: the position at the end, nothing read)
            loader.seek(tp, (await loader.beginning_offsets([tp]))[tp])
            self.store.data.clear()
            self.store.pending.clear()
            while end and await loader.position(tp) < end:
                for record in (await loader.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if record.offset < end:
                        self.store.apply(record.key, record.value)
                        n += 1
        finally:
            await loader.stop()
        self.core.rebuild()
        metrics.TABLE_ROWS.labels(table="ranked").set(len(self.store.data))
        # the score gauges of every unit, not only of those ranked again from now on
        metrics.forget_unit_scores()
        for key, msg in self.store.data.items():
            window, unit_id = key.split(SEP, 1)
            metrics.observe_unit_score(unit_id, window, msg.get("total"), msg.get("band"))
        log.info("ranker: loaded %d changelog records (%d units x windows) in %.2f s",
                 n, len(self.store.data), time.perf_counter() - t0)
        await self._resume_from_faust_group()

    async def _resume_from_faust_group(self) -> None:
        """Before this consumer existed the worker's faust group read the internal topic: a
        ranker group without a commit of its own starts where that one stopped, not at the
        beginning of the topic's history (kept for ever)."""
        assert self.consumer is not None
        if await self.consumer.committed(self.tp) is not None:
            return
        admin = AIOKafkaAdminClient(**self._connect)
        try:
            await admin.start()
            offsets = await admin.list_consumer_group_offsets(self.settings.app_id,
                                                              partitions=[self.tp])
        except KafkaError as exc:
            log.warning("ranker: offsets of group %s unreadable (%s)", self.settings.app_id, exc)
            return
        finally:
            await admin.close()
        meta = offsets.get(self.tp)
        if meta is not None and meta.offset > 0:
            self.consumer.seek(self.tp, meta.offset)
            log.info("ranker: no commit of its own; resuming at the worker group's offset %d",
                     meta.offset)

    async def rank(self, records: list[Any]) -> None:
        """Rank one fetch, in RANK_SLICE batches (each named by its offsets: audit.verify
        re-runs RankerCore over the same slices); commit once everything is delivered."""
        assert self.consumer is not None and self.producer is not None
        sent: list[asyncio.Future] = []
        for i in range(0, len(records), RANK_SLICE):
            chunk = records[i:i + RANK_SLICE]
            sent += await self._rank_slice([orjson.loads(r.value) for r in chunk],
                                           chunk[0].offset, chunk[-1].offset)
        # raises if a message was not delivered: stops the ranker, its state not saved
        await asyncio.gather(*sent)
        await asyncio.gather(*await self.store.publish(self.producer))  # then the state
        try:
            await self.consumer.commit({self.tp: records[-1].offset + 1})
        except KafkaError as exc:
            # a rebalance took the partition: its next owner re-ranks from the last commit
            log.warning("ranker: commit of offset %d refused (%s)", records[-1].offset + 1, exc)

    async def _rank_slice(self, incoming: list[dict[str, Any]], first: int,
                          last: int) -> list[asyncio.Future]:
        producer = self.producer
        assert producer is not None
        s = self.settings
        basis = {"topic": self.tp.topic, "offsets": [first, last]}
        out = self.core.process(incoming, basis)
        sent: list[asyncio.Future] = []  # the outputs only: the state is saved by ``rank``
        dumps = orjson.dumps

        async def send(topic: str, key: str, msg: dict[str, Any]) -> None:
            sent.append(await producer.send(topic, dumps(msg), key=key.encode()))

        for msg in out.scores:
            await send(s.scores_topic, msg["unit_id"], msg)
            metrics.SCORES_PUBLISHED.inc()
            metrics.observe_unit_score(msg["unit_id"], msg["window"], msg["total"], msg["band"])
        now = time.time()
        for item in incoming:
            if arrived := item.get("arrived_ms"):
                metrics.EVENT_TO_SCORE_SECONDS.observe(max(0.0, now - arrived / 1000))
        for msg in out.rank_changes:
            await send(s.rank_changes_topic, msg["peer_group"], msg)
        for msg in out.band_changes:
            await send(s.band_changes_topic, msg["unit_id"], msg)
            metrics.BAND_CHANGES.labels(direction=msg["direction"],
                                        window_kind=metrics.window_kind(msg["window"])).inc()
        metrics.TABLE_ROWS.labels(table="ranked").set(len(self.store.data))
        return sent

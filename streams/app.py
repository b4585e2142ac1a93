"""The faust application: thin wiring of ``ScorerCore`` (and the ranker service) to Kafka.

    procedure-events ──scorer agent──> tables (seen, units, facts, clock)
          │  (partitioned by unit)         └─ timer every coalesce interval ─┐
          └─ bad input ──> procedure-events-dlq                             v
    <app>-unit-scored (1 partition, key peer_group) ──ranker──> unit-scores,
                                                                rank-changes, band-changes
The ranker has its own consumer, producer and state (``streams.rank_service``): in this process
(``Settings.ranker == "inline"``) or in a ``bando ranker`` process.

Guarantee: at-least-once delivery with idempotent state. faust commits an input offset only
after the batch is processed and the producer (changelogs included) is flushed; a batch
replayed after a crash is absorbed by the ``seen`` table and by facts that are min/max/sets.

Input path: faust hands a stream one message at a time (per message: four tasks in
``Service.wait_first``, a queue hop, sensors, an ack), about 100 us of overhead, which alone
capped a worker near 5,000 events/s. ``BatchConsumer`` gives each fetched batch of
``procedure-events`` records to the scorer directly and acks their offsets in bulk; faust still
owns the group membership, assignment, table recovery (its changelogs read in bulk:
``streams.bulkstore``), and commits (producer flushed first).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections import Counter
from typing import Any

import faust
import orjson
from faust.types import TP

from bando import kafka_auth, metrics
from bando.settings import Settings
from schemas import EventRejected
from scoring.catalog import Catalog, load_catalog
from scoring.model import Model, load_model
from streams.batch_consumer import BatchTransport
from streams.bulkstore import BulkTableManager, bulk_table
from streams.deliveries import Deliveries, checked_flush
from streams.diskstore import BulkRocksStore, DiskStore, memory_usage
from streams.dlq import dlq_message
from streams.heap import trim_heap
from streams.rank_service import RankerService, internal_topic
from streams.scorer import Message, ScorerCore

log = logging.getLogger(__name__)

SCORER_TABLES = ("seen", "units", "facts", "clock")
STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}  # BANDO_STORE -> the tables' store
SCORE_SLICE = 2000  # events per ScorerCore.process call


class FaustStore:
    """``streams.scorer.Store`` over faust tables (memory store: a dict per table).

    Writes go to the table's dict at once and are queued as changelog records for the input
    partition; ``publish`` writes a batch's records straight into Kafka record batches, one per
    changelog partition (aiokafka ``create_batch``/``send_batch``). faust's own per-key path
    (``send_soon``, one queued future per write) cost about a millisecond a write, and even one
    ``producer.send`` per record was a tenth of a worker's time. Durability is unchanged: faust
    flushes the producer (these batches included) before it commits input offsets, and a batch
    that failed to be delivered stops the worker there, before the commit
    (``streams.deliveries``), or at the next publish.
    """

    def __init__(self, tables: dict[str, Any]):
        self.tables = tables
        self.pending: dict[tuple[str, str], tuple[int, Any]] = {}
        self.sent = Deliveries()  # checked before each commit too (checked_flush)
        self._dicts: dict[str, dict[str, Any]] = {}

    def _dict(self, table: str) -> dict[str, Any]:
        # faust's memory store keeps one plain dict for its lifetime (recovery fills it, clear
        # empties it); its Mapping.get goes through KeyError, a tenth of a worker's time
        d = self._dicts.get(table)
        if d is None:
            d = self._dicts[table] = self.tables[table].data.data
        return d

    def get(self, table: str, key: str) -> Any:
        return self._dict(table).get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self._dict(table)[key] = value
        self.pending[(table, key)] = (partition, value)  # the last write of a batch wins

    def items(self, table: str) -> list[tuple[str, Any]]:
        return list(self._dict(table).items())

    async def publish(self, producer: Any) -> int:
        """Hand the pending changelog records to ``producer`` (faust's)."""
        self.sent.raise_failed()
        pending, self.pending = self.pending, {}
        if not pending:
            return 0
        kafka = producer._ensure_producer()  # noqa: SLF001 - faust's aiokafka producer
        batches: dict[tuple[str, int], Any] = {}
        dumps = orjson.dumps
        for (table, key), (partition, value) in pending.items():
            tp = (self.tables[table].changelog_topic.get_topic_name(), partition)
            batch = batches.get(tp)
            if batch is None:
                batch = batches[tp] = kafka.create_batch()
            k, v = dumps(key), dumps(value)
            if batch.append(key=k, value=v, timestamp=None) is None:  # full
                self.sent.add(await kafka.send_batch(batch, tp[0], partition=tp[1]))
                batch = batches[tp] = kafka.create_batch()
                if batch.append(key=k, value=v, timestamp=None) is None:
                    raise ValueError(f"changelog record {table}/{key[:80]} exceeds a batch")
        for (topic, partition), batch in batches.items():
            self.sent.add(await kafka.send_batch(batch, topic, partition=partition))
        return len(pending)


def create_app(
    settings: Settings,
    catalog: Catalog | None = None,
    model: Model | None = None,
    now_us: Any = None,
) -> faust.App:
    catalog = catalog or load_catalog(settings.catalog_path or None)
    model = model or load_model(settings.model)
    datadir = os.path.join(settings.data_dir, f"faust-{settings.app_id}")
    os.makedirs(datadir, exist_ok=True)
    if settings.store not in STORES:
        raise ValueError(f"BANDO_STORE must be one of {sorted(STORES)}, not {settings.store!r}")
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        # SASL/SCRAM (or TLS) from Settings; None keeps PLAINTEXT (bando.kafka_auth)
        broker_credentials=kafka_auth.faust_credentials(settings),
        store="memory://",
        TableManager=BulkTableManager,  # changelogs read in bulk on recovery (bulk_table)
        datadir=datadir,
        tabledir=settings.store_dir or "tables",  # relative: under datadir
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_batch_size=512 * 1024,  # changelog records go out in big record batches
        producer_linger=0.005,  # score messages of one flush share produce requests
        web_enabled=settings.web_port > 0,
        web_bind=settings.web_host,
        web_port=settings.web_port or 6066,
        table_cleanup_interval=3600.0,
        # Tables keep str keys and JSON values through changelog recovery; topics that carry
        # project messages set "raw" themselves and encode with orjson.
        key_serializer="json",
        value_serializer="json",
    )
    transport = app.transport = BatchTransport(app.conf.broker_consumer, app)
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes, **raw)
    dlq = app.topic(settings.dlq_topic, **raw)
    # not consumed here: the ranker reads it with its own consumer (streams.rank_service)
    scored = app.topic(internal_topic(settings), partitions=1, internal=True, **raw)
    at_risk = app.topic(settings.at_risk_topic, **raw)

    # Newly active changelog partitions are read in bulk by the tables' store (streams.bulkstore);
    # faust's recovery applies the rest in batches of recovery_buffer_size (default 1,000).
    loader = {"bootstrap_servers": settings.kafka_bootstrap, **kafka_auth.client_kwargs(settings)}
    tables = {
        name: bulk_table(app, name, loader, default=None, partitions=settings.partitions,
                         recovery_buffer_size=10_000, store=STORES[settings.store])
        for name in SCORER_TABLES
    }
    if now_us is None:
        def now_us() -> int:
            return time.time_ns() // 1000

    # Every event allocates a few short-lived objects; the default young-generation threshold
    # (700) ran the collector every few dozen events.
    gc.set_threshold(50_000, 20, 100)
    # faust's changelog recovery formats two debug records per changelog message, and the
    # worker's logging setup leaves them enabled: a sixth of recovery time
    logging.getLogger("faust.tables.recovery").setLevel(logging.INFO)
    scorer_store = DiskStore(tables) if settings.store == "rocksdb" else FaustStore(tables)
    scorer = ScorerCore(catalog, model, scorer_store, topic=settings.events_topic,
                        max_bytes=settings.max_message_bytes,
                        max_skew_us=int(settings.max_clock_skew_seconds * 1_000_000),
                        now_us=now_us, keep_settled=settings.keep_settled)
    ready = {"scorer": False}
    app.bando_scorer = scorer  # type: ignore[attr-defined]

    def assigned(topic: str) -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}

    @tables["facts"].on_recover
    async def _rebuild_scorer() -> None:
        # A million new objects would run the cyclic GC over the growing heap many times; the
        # recovered state is long-lived, so it is frozen, not scanned (a collection before
        # the freeze found 5 objects in a 1M-dossier state and cost 1-2 s).
        gc.disable()
        try:
            scorer.rebuild(assigned(settings.events_topic))
        finally:
            gc.enable()
        gc.freeze()
        ready["scorer"] = True

    @app.on_partitions_revoked.connect
    async def _revoked(app: faust.App, revoked: set, **_: Any) -> None:
        ready["scorer"] = False

    async def _score(msgs: list[Message]) -> None:
        outcome = scorer.process(msgs)
        closing = scorer.take_closing()
        if closing:
            # A partition's time left a month in this batch: its closing scores are delivered
            # before the batch's clock record is sent, so no restart can find the month left
            # and its last scores lost (a re-read reaches the crossing again and redoes them).
            # Once a month per partition: the wait is not worth batching.
            await asyncio.gather(*[await _send(scored, m["peer_group"], m) for m in closing])
        await scorer_store.publish(app.producer)
        for msg, exc in outcome.rejected:
            await _reject(msg, exc)
        for event_type, n in Counter(ev.type for ev in outcome.accepted).items():
            metrics.EVENTS_CONSUMED.labels(type=metrics.event_type_label(event_type)).inc(n)
        metrics.LAST_EVENT_TIMESTAMP.set(time.time())

    async def _score_records(tp: TP, records: list[Any]) -> None:
        """A fetched batch of one partition (``BatchConsumer``), in slices that leave the event
        loop to the flush timer, heartbeats and the ranker in between."""
        consumer = app.consumer
        generation = app.consumer_generation_id
        records = await consumer.new_records(tp, records)
        for i in range(0, len(records), SCORE_SLICE):
            if not consumer.still_current(generation):
                return
            chunk = records[i:i + SCORE_SLICE]
            await _score([Message(tp.partition, r.offset, r.key, r.value, r.timestamp)
                          for r in chunk])
            if app.consumer_generation_id != generation:
                # a rebalance began while it was scored: the new generation reads these again
                # from its committed offset (state is idempotent), and its acks start afresh
                return
            consumer.ack_offsets(tp, [r.offset for r in chunk])
            await asyncio.sleep(0)

    transport.batch_handlers[events.get_topic_name()] = _score_records

    # The agent subscribes the group to the topic (assignment, co-partitioned tables, acks);
    # its records normally reach _score_records without passing through it.
    @app.agent(events, name="bando-scorer")
    async def score(stream: Any) -> None:
        async for batch in stream.take_events(SCORE_SLICE, within=0.05):
            await _score([Message(e.message.partition, e.message.offset, e.message.key,
                                  e.message.value, int(e.message.timestamp * 1000))
                          for e in batch])

    # Checked before each commit like the changelogs: a score or warning not delivered is not
    # sent again until its counts change, and a DLQ record would never be once its event's
    # offset is committed (faust's Topic.send only logs a failed delivery).
    outputs = Deliveries()
    checked_flush(app.producer, scorer_store.sent, outputs)

    async def _produce(topic: Any, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        """Queue a message; its delivery is checked before the next commit, or awaited."""
        # straight to aiokafka: faust's Topic.send costs ~100 us a message
        kafka = app.producer._ensure_producer()  # noqa: SLF001
        delivery = await kafka.send(topic.get_topic_name(), value, key=key)
        outputs.add(delivery)
        return delivery

    async def _send(topic: Any, key: str, msg: dict[str, Any]) -> asyncio.Future[Any]:
        return await _produce(topic, key.encode(), orjson.dumps(msg))

    async def _reject(msg: Message, exc: EventRejected) -> None:
        # key and value capped (streams.dlq): one too big for the producer would stop the
        # worker on this message after every restart
        await _produce(dlq, *dlq_message(exc.code, exc.detail, settings.events_topic,
                                         msg.partition, msg.offset, msg.key, msg.value))
        metrics.EVENTS_REJECTED.labels(error=metrics.error_label(exc.code)).inc()
        log.warning("rejected %s p%d@%d: %s", exc.code, msg.partition, msg.offset, exc.detail)

    @app.timer(interval=settings.coalesce_seconds)
    async def _flush_scores() -> None:
        if not ready["scorer"]:
            return
        for msg in scorer.flush():
            await _send(scored, msg["peer_group"], msg)

    @app.timer(interval=30.0)
    async def _trim_heap() -> None:
        trim_heap()  # streams.heap: most of a long-running worker's RSS was free C heap

    @app.timer(interval=5.0)
    async def _observe() -> None:
        """Lag and state size for /metrics (bounded labels: partitions and table names)."""
        await metrics.update_consumer_lag(app.consumer)
        for name, table in tables.items():
            metrics.TABLE_ROWS.labels(table=name).set(len(table.data))
        metrics.DOSSIERS_IN_MEMORY.set(scorer.dossiers_in_memory())
        disk = [t.data for t in tables.values() if isinstance(t.data, BulkRocksStore)]
        if disk:
            for part, n in memory_usage(disk).items():
                metrics.STORE_MEMORY_BYTES.labels(part=part).set(n)

    if settings.at_risk_interval_seconds > 0:
        @app.timer(interval=settings.at_risk_interval_seconds)
        async def _early_warnings() -> None:
            if not ready["scorer"]:
                return
            # no await between the flush and the assessment: events folded in between would
            # make the running counts and the open dossiers disagree
            scores, warnings = scorer.flush_and_warn(settings.at_risk_horizon_seconds)
            for msg in scores:
                await _send(scored, msg["peer_group"], msg)
            for msg in warnings:
                await _send(at_risk, msg["unit_id"], msg)

    if settings.ranker not in ("inline", "off"):
        raise ValueError(f"BANDO_RANKER must be inline or off, not {settings.ranker!r}")
    if settings.ranker == "inline":
        service = RankerService(settings)
        app.bando_ranker = service  # type: ignore[attr-defined]

        @app.task
        async def _ranker() -> None:
            await service.run()

    return app

"""The faust application: thin wiring of ``ScorerCore`` and ``RankerCore`` to Kafka.

    procedure-events ──scorer agent──> tables (seen, units, facts, clock)
          │  (partitioned by unit)         └─ timer every coalesce interval ─┐
          └─ bad input ──> procedure-events-dlq                             v
    <app>-unit-scored (1 partition, key peer_group) ──ranker agent──> unit-scores,
                                                                      rank-changes, band-changes

Guarantee: at-least-once delivery with idempotent state. faust commits an input offset only
after the batch is processed and the producer (changelogs included) is flushed; a batch
replayed after a crash is absorbed by the ``seen`` table and by facts that are min/max/sets.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import faust
import orjson

from bando import kafka_auth, metrics
from bando.settings import Settings
from schemas import EventRejected
from scoring.catalog import Catalog, load_catalog
from scoring.model import Model, load_model
from streams.dlq import dlq_record
from streams.ranker import RankerCore
from streams.scorer import Message, ScorerCore

log = logging.getLogger(__name__)

SCORER_TABLES = ("seen", "units", "facts", "clock")


class FaustStore:
    """``streams.scorer.Store`` over faust tables.

    Writes go to the table's store at once and are queued as changelog records for the input
    partition; ``publish`` hands a batch's records straight to the Kafka producer. faust's own
    per-key path (``send_soon``, one queued future per write) costs about a millisecond a
    write, which capped a worker below 1,000 events/s. Durability is unchanged: faust flushes
    the producer before it commits input offsets.
    """

    def __init__(self, tables: dict[str, Any]):
        self.tables = tables
        self.pending: dict[tuple[str, str], tuple[int, Any]] = {}

    def get(self, table: str, key: str) -> Any:
        return self.tables[table].data.get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self.tables[table].data[key] = value
        self.pending[(table, key)] = (partition, value)  # the last write of a batch wins

    def items(self, table: str) -> list[tuple[str, Any]]:
        return list(self.tables[table].data.items())

    async def publish(self, producer: Any) -> int:
        pending, self.pending = self.pending, {}
        for (table, key), (partition, value) in pending.items():
            topic = self.tables[table].changelog_topic.get_topic_name()
            await producer.send(topic, orjson.dumps(key), orjson.dumps(value), partition,
                                None, None)
        return len(pending)


def internal_topic(settings: Settings) -> str:
    """Unit scores re-keyed by peer group, kept for ever: audits re-run ranking from it."""
    return f"{settings.app_id}-unit-scored"


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
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        # SASL/SCRAM (or TLS) from Settings; None keeps PLAINTEXT (bando.kafka_auth)
        broker_credentials=kafka_auth.faust_credentials(settings),
        store="memory://",
        datadir=datadir,
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=settings.web_port > 0,
        web_bind=settings.web_host,
        web_port=settings.web_port or 6066,
        table_cleanup_interval=3600.0,
        # Tables keep str keys and JSON values through changelog recovery; topics that carry
        # project messages set "raw" themselves and encode with orjson.
        key_serializer="json",
        value_serializer="json",
    )
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes, **raw)
    dlq = app.topic(settings.dlq_topic, **raw)
    scored = app.topic(internal_topic(settings), partitions=1, internal=True, **raw)
    scores = app.topic(settings.scores_topic, **raw)
    rank_changes = app.topic(settings.rank_changes_topic, **raw)
    band_changes = app.topic(settings.band_changes_topic, **raw)

    tables = {
        name: app.Table(name, default=None, partitions=settings.partitions)
        for name in SCORER_TABLES
    }
    ranked = app.Table("ranked", default=None, partitions=1)
    if now_us is None:
        def now_us() -> int:
            return time.time_ns() // 1000

    scorer_store = FaustStore(tables)
    ranker_store = FaustStore({"ranked": ranked})
    scorer = ScorerCore(catalog, model, scorer_store, topic=settings.events_topic,
                        max_bytes=settings.max_message_bytes,
                        max_skew_us=int(settings.max_clock_skew_seconds * 1_000_000),
                        now_us=now_us)
    ranker = RankerCore(ranker_store)
    ready = {"scorer": False, "ranker": False}
    app.bando_scorer = scorer  # type: ignore[attr-defined]
    app.bando_ranker = ranker  # type: ignore[attr-defined]

    def assigned(topic: str) -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}

    @tables["facts"].on_recover
    async def _rebuild_scorer() -> None:
        scorer.rebuild(assigned(settings.events_topic))
        ready["scorer"] = True

    @ranked.on_recover
    async def _rebuild_ranker() -> None:
        ranker.rebuild()
        ready["ranker"] = True

    @app.on_partitions_revoked.connect
    async def _revoked(app: faust.App, revoked: set, **_: Any) -> None:
        ready["scorer"] = ready["ranker"] = False

    @app.agent(events, name="bando-scorer")
    async def score(stream: Any) -> None:
        async for batch in stream.take_events(2000, within=0.05):
            msgs = [Message(e.message.partition, e.message.offset, e.message.key,
                            e.message.value, int(e.message.timestamp * 1000)) for e in batch]
            outcome = scorer.process(msgs)
            await scorer_store.publish(app.producer)
            for msg, exc in outcome.rejected:
                await _reject(msg, exc)
            for ev in outcome.accepted:
                metrics.EVENTS_CONSUMED.labels(type=metrics.event_type_label(ev.type)).inc()
            metrics.LAST_EVENT_TIMESTAMP.set(time.time())

    async def _reject(msg: Message, exc: EventRejected) -> None:
        record = dlq_record(exc.code, exc.detail, settings.events_topic, msg.partition,
                            msg.offset, msg.key, msg.value)
        await dlq.send(key=msg.key, value=orjson.dumps(record))
        metrics.EVENTS_REJECTED.labels(error=metrics.error_label(exc.code)).inc()
        log.warning("rejected %s p%d@%d: %s", exc.code, msg.partition, msg.offset, exc.detail)

    @app.timer(interval=settings.coalesce_seconds)
    async def _flush_scores() -> None:
        if not ready["scorer"]:
            return
        for msg in scorer.flush():
            await scored.send(key=msg["peer_group"].encode(), value=orjson.dumps(msg))

    @app.agent(scored, name="bando-ranker")
    async def rank(stream: Any) -> None:
        async for batch in stream.take_events(1000, within=0.05):
            if not ready["ranker"]:
                ranker.rebuild()  # first message can beat the recovery callback
                ready["ranker"] = True
            incoming = [orjson.loads(e.message.value) for e in batch]
            # The batch bounds make ranking replayable: an auditor re-runs RankerCore over the
            # same slices of the single-partition internal topic (audit.verify).
            basis = {"topic": scored.get_topic_name(),
                     "offsets": [batch[0].message.offset, batch[-1].message.offset]}
            out = ranker.process(incoming, basis)
            await ranker_store.publish(app.producer)
            now = time.time()
            for msg in out.scores:
                await scores.send(key=msg["unit_id"].encode(), value=orjson.dumps(msg))
                metrics.SCORES_PUBLISHED.inc()
                metrics.observe_unit_score(msg["unit_id"], msg["window"], msg["total"],
                                           msg["band"])
            for item in incoming:
                if arrived := item.get("arrived_ms"):
                    metrics.EVENT_TO_SCORE_SECONDS.observe(max(0.0, now - arrived / 1000))
            for msg in out.rank_changes:
                await rank_changes.send(key=msg["peer_group"].encode(), value=orjson.dumps(msg))
            for msg in out.band_changes:
                await band_changes.send(key=msg["unit_id"].encode(), value=orjson.dumps(msg))

    return app

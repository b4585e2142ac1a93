"""The notifier service: consumes ``band-changes`` (and at-risk warnings), alerts the sinks.

Delivery is at-least-once with idempotency keys: an offset is committed only after every sink
took the alert or gave up and the alert is in the dead-letter record. If the dead-letter record
cannot be written either, the notifier stops without committing, so the alert is retried after
a restart rather than lost.

Anti-flapping state (``alerts.policy``) is rebuilt on every partition assignment by re-reading
the partition from its beginning up to the committed offset *without* delivering: the policy is
a pure function of each topic's message sequence, so the rebuilt state is exactly the state the
previous owner had, and a restart neither repeats a suppressed alert nor forgets a cool-down.
The interleaving of the two topics is not recorded and the rebuild does not reproduce it; the
policy relates them by event time (``as_of``) only, never by the order they were read in. A
warning read before a band change that is earlier in event time (the ranker behind) can become
news only then: the policy hands its alert back with that band change (``Decision.released``).

A unit's state spans both topics (both keyed by unit_id, with the same partition count): the
range assignor gives partition i of both to the same notifier (``ASSIGNORS``; aiokafka's
default, round-robin, could split them between two notifiers, each forgetting the other's
half on a rebalance).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError

from alerts.exceptions import DeadLetterError, InvalidBandChange, SinkError
from alerts.messages import AtRiskWarning, BandChange, parse_at_risk, parse_band_change
from alerts.policy import AlertPolicy, Decision
from alerts.sinks import DeadLetter, Sink
from bando import metrics
from bando.settings import Settings
from bando.takeover import Takeover

log = logging.getLogger(__name__)

# range first (co-partitioned topics stay together); round-robin second, so that a group whose
# older members know only it still forms during a rolling upgrade
ASSIGNORS = (RangePartitionAssignor, RoundRobinPartitionAssignor)


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection options for aiokafka: the bootstrap servers plus the project's one security
    rule (``bando.kafka_auth``: SASL when a username is set, TLS for SSL protocols)."""
    from bando.kafka_auth import client_kwargs

    return {"bootstrap_servers": settings.kafka_bootstrap, **client_kwargs(settings)}


@dataclass(frozen=True)
class NotifierConfig:
    band_changes_topic: str = "band-changes"
    at_risk_topic: str = ""  # empty: no early warnings consumed
    group_id: str = "bando-notifier"
    auto_offset_reset: str = "earliest"
    rebuild: bool = True
    rebuild_timeout: float = 120.0
    # unit_id -> name, from the catalog: alerts name the unit, band-drop counters start at 0
    unit_names: dict[str, str] = field(default_factory=dict)
    lag_interval: float = 5.0
    # client options, a SASL password among them: out of repr (and so of logs)
    kafka: dict[str, Any] = field(default_factory=lambda: {"bootstrap_servers": "127.0.0.1:9092"},
                                  repr=False)

    @property
    def topics(self) -> list[str]:
        return [t for t in (self.band_changes_topic, self.at_risk_topic) if t]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.notifier._revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.notifier._takeover.assigned(list(assigned))


class Notifier:
    def __init__(
        self,
        config: NotifierConfig,
        policy: AlertPolicy,
        sinks: Sequence[Sink],
        dead_letter: DeadLetter,
    ) -> None:
        self.config = config
        self.policy = policy
        self.sinks = list(sinks)
        self.dead_letter = dead_letter
        self.ready = asyncio.Event()  # set once partitions are assigned (tests wait on it)
        # the rebuild of newly assigned partitions' state, retried by the loop if Kafka failed
        # it in the rebalance listener
        self._takeover = Takeover("notifier", self._settle)
        self._consumer: AIOKafkaConsumer | None = None
        self._units: dict[TopicPartition, set[str]] = {}

    # -- one message ------------------------------------------------------------------------

    def parse(self, topic: str, value: bytes | None) -> BandChange | AtRiskWarning:
        try:
            obj = orjson.loads(value or b"")
        except orjson.JSONDecodeError as exc:
            raise InvalidBandChange(f"not JSON: {exc}") from exc
        if self.config.at_risk_topic and topic == self.config.at_risk_topic:
            return parse_at_risk(obj)
        return parse_band_change(obj)

    async def handle(
        self,
        topic: str,
        value: bytes | None,
        *,
        partition: int = 0,
        offset: int = -1,
        live: bool = True,
    ) -> Decision | None:
        """Decide and (when ``live``) deliver one message. ``live=False`` only replays it into
        the policy (state rebuild): no delivery, no metrics."""
        try:
            change = self.parse(topic, value)
        except InvalidBandChange as exc:
            if live:
                metrics.ALERT_MESSAGES.labels("invalid").inc()
                log.error("unreadable message %s[%d]@%d: %s", topic, partition, offset, exc)
                raw = (value or b"")[:4096].decode("utf-8", "replace")
                bad = {
                    "alert_id": f"invalid:{topic}:{partition}:{offset}",
                    "kind": "invalid",
                    "raw": raw,
                    "source": {"topic": topic, "partition": partition, "offset": offset},
                }
                await self.dead_letter.record(bad, "parse", str(exc), 0)
            return None
        self._units.setdefault(TopicPartition(topic, partition), set()).add(change.unit_id)
        if change.name is None and change.unit_id in self.config.unit_names:
            change = replace(change, name=self.config.unit_names[change.unit_id])
        decision = self.policy.decide(change)
        if not live:
            return decision
        kind = "at_risk" if isinstance(change, AtRiskWarning) else "band_change"
        metrics.ALERT_MESSAGES.labels(kind).inc()
        if isinstance(change, BandChange) and change.direction == "down":
            metrics.BAND_DROPS.labels(change.unit_id, metrics.window_kind(change.window)).inc()
        source = {"topic": topic, "partition": partition, "offset": offset}
        if decision.send and decision.alert is not None:
            await self.deliver({**decision.alert, "source": source})
        for held in decision.released:
            # after the band change's own alert, earlier in event time; its source is this
            # band change, as the warning's own offset may be committed long since
            log.info(
                "at-risk warning for %s at %s sent late: band change at %s read after it",
                change.unit_id,
                held["as_of"],
                change.as_of,
            )
            await self.deliver({**held, "source": source})
        if not decision.send or decision.alert is None:
            metrics.ALERTS_SUPPRESSED.labels(decision.reason).inc()
            log.info(
                "no alert for %s %s at %s: %s",
                change.unit_id,
                change.window,
                change.as_of,
                decision.reason,
            )
        return decision

    async def deliver(self, alert: dict[str, Any]) -> None:
        """Every sink concurrently; a sink that gives up sends the alert to the dead letter."""
        results = await asyncio.gather(*(self._send_one(s, alert) for s in self.sinks))
        if not any(results):
            log.error("alert %s reached no sink", alert.get("alert_id"))

    async def _send_one(self, sink: Sink, alert: dict[str, Any]) -> bool:
        try:
            await sink.send(alert)
        except Exception as exc:  # noqa: BLE001 - a broken sink must not stop the others
            attempts = exc.attempts if isinstance(exc, SinkError) else 1
            if not isinstance(exc, SinkError):
                log.exception("sink %s crashed on %s", sink.name, alert.get("alert_id"))
            metrics.ALERTS_FAILED.labels(sink.name).inc()
            await self.dead_letter.record(alert, sink.name, str(exc), attempts)
            metrics.ALERTS_DEAD_LETTERED.labels(sink.name).inc()
            log.error(
                "alert %s dead-lettered for sink %s: %s", alert.get("alert_id"), sink.name, exc
            )
            return False
        metrics.ALERTS_SENT.labels(sink.name).inc()
        return True

    # -- partitions ---------------------------------------------------------------------------

    def _revoked(self, revoked: list[TopicPartition]) -> None:
        self._takeover.revoked()
        units: set[str] = set()
        for tp in revoked:
            units |= self._units.pop(tp, set())
        if units:
            self.policy.forget(units)

    async def _settle(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        if self.config.rebuild:
            until = {}
            for tp in assigned:
                committed = await consumer.committed(tp)
                if committed:
                    until[tp] = committed
            if until:
                await self._rebuild(until)
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        self.ready.set()

    async def _rebuild(self, until: dict[TopicPartition, int]) -> None:
        """Replay each partition from its beginning up to its committed offset into the policy,
        with a separate group-less reader, before the group consumer resumes at that offset."""
        started = time.monotonic()
        reader = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **self.config.kafka)
        await reader.start()
        replayed = 0
        try:
            reader.assign(list(until))
            await reader.seek_to_beginning(*until)
            pending = dict(until)
            while pending:
                for tp in list(pending):
                    if await reader.position(tp) >= pending[tp]:
                        del pending[tp]
                if not pending:
                    break
                if time.monotonic() - started > self.config.rebuild_timeout:
                    log.error("alert state rebuild incomplete for %s", sorted(map(str, pending)))
                    break
                # partition by partition, so both topics' records are not in live order: fine,
                # the policy compares band changes and warnings by as_of, not by arrival
                batch = await reader.getmany(*pending, timeout_ms=500, max_records=1000)
                for tp, records in batch.items():
                    for rec in records:
                        if rec.offset < until[tp]:
                            replayed += 1
                            await self.handle(
                                rec.topic,
                                rec.value,
                                partition=rec.partition,
                                offset=rec.offset,
                                live=False,
                            )
        finally:
            await reader.stop()
        log.info(
            "alert state rebuilt from %d messages of %d partitions in %.1fs",
            replayed,
            len(until),
            time.monotonic() - started,
        )

    # -- the loop -----------------------------------------------------------------------------

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit({tp: offset})
        except KafkaError as exc:  # partition moved: its new owner re-delivers (same key)
            log.warning("commit of %s@%d failed: %s", tp, offset, exc)

    async def _process(self, tp: TopicPartition, records: list[Any]) -> None:
        for rec in records:
            await self.handle(rec.topic, rec.value, partition=rec.partition, offset=rec.offset)
            await self._commit(tp, rec.offset + 1)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        consumer = AIOKafkaConsumer(
            group_id=self.config.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.config.auto_offset_reset,
            partition_assignment_strategy=ASSIGNORS,
            **self.config.kafka,
        )
        self._consumer = consumer
        metrics.preinitialize_units(self.config.unit_names)
        for sink in self.sinks:
            metrics.preinitialize_sink(sink.name)
        next_lag = 0.0
        try:
            for sink in self.sinks:
                await sink.start()
            await self.dead_letter.start()
            await consumer.start()
            consumer.subscribe(self.config.topics, listener=_Rebalance(self))
            log.info("notifier consuming %s as group %s", self.config.topics, self.config.group_id)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=200)
                if not await self._takeover.ready_for(consumer, batch, stop):
                    continue  # rebuild first, then these records
                held = consumer.assignment()
                for tp, records in batch.items():
                    if tp in held:  # a revoked partition's records are its new owner's
                        await self._process(tp, records)
                if time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + self.config.lag_interval
                    await metrics.update_consumer_lag(consumer)
        except DeadLetterError:
            log.critical("dead-letter record unavailable; stopping without commit")
            raise
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            for sink in self.sinks:
                with contextlib.suppress(Exception):
                    await sink.close()
            with contextlib.suppress(Exception):
                await self.dead_letter.close()
            self._consumer = None

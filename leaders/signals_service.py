"""``bando signals``: harassment and inconvenience signals, live, on topic ``signals``.

Its own consumer group reads ``procedure-events``, admits events as the worker does (schema
validator, de-duplication by event id, and while catching up the worker's DLQ verdicts), keeps
dossier facts with ``scoring.facts``, and every ``interval`` seconds evaluates
``leaders.signals`` with each unit at its partition's watermark (event time, as the scorer).
A signal whose value crosses its threshold is published to ``signals`` (key ``unit_id``) as
``raised``; one that falls back below ``clear_below`` as ``cleared``: once per crossing.

Robustness, as the alerts notifier:

* No state is trusted across restarts. On every partition assignment the service re-reads its
  partitions from the beginning (facts are a commutative fold: re-reading gives the same
  state) and evaluates nothing until it reached the end offsets seen at assignment, so a
  half-read history never raises a false signal.
* Which signals are raised is rebuilt from the ``signals`` topic itself (last message per
  signal), so a restart neither repeats a crossing nor forgets one: the first evaluation
  publishes only the differences.
* A raised signal is alerted (``alerts.sinks``: log, webhooks with retries and idempotency
  keys, dead letter) *before* it is published; the alert id is a hash of the signal and its
  crossing number, so an alert repeated after a crash has the same id and a receiver drops it.
  A failed publication stops the service (nothing is committed), to retry after a restart.

The messages carry dossier ids, never officer ids; logs name units and kinds only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from prometheus_client import Counter, Gauge, Histogram

from alerts.messages import idempotency_key
from alerts.sinks import DeadLetter, Sink
from bando.takeover import Takeover
from leaders.signal_alerts import alert_of, deliver
from leaders.signals import DAY_US, KINDS, SignalConfig, evaluate
from schemas import EventRejected, Validator
from scoring.catalog import Catalog
from scoring.dedup import NEW, Deduper
from scoring.events import DOSSIER_TYPES
from scoring.facts import UnitState, apply_event
from scoring.model import Model

log = logging.getLogger(__name__)

SIGNALS_PUBLISHED = Counter("bando_signals_published",
                            "Signal crossings published to the signals topic, by kind and state.",
                            ["kind", "state"])
SIGNALS_ACTIVE = Gauge("bando_signals_active", "Signals currently raised, by kind.", ["kind"])
SIGNALS_EVALUATION_SECONDS = Histogram(
    "bando_signals_evaluation_seconds", "Wall time of one evaluation of every held unit.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


@dataclass(frozen=True)
class ServiceConfig:
    events_topic: str = "procedure-events"
    signals_topic: str = "signals"
    dlq_topic: str = "procedure-events-dlq"  # empty: no DLQ verdicts while catching up
    group_id: str = "bando-signals"
    interval: float = 5.0
    max_bytes: int = 64 * 1024
    max_skew_us: int = 300_000_000
    alert_clears: bool = False
    # client options, a SASL password among them: out of repr (and so of logs)
    kafka: dict[str, Any] = field(default_factory=lambda: {"bootstrap_servers": "127.0.0.1:9092"},
                                  repr=False)


@dataclass
class _Partition:
    units: dict[str, UnitState] = field(default_factory=dict)
    deduper: Deduper = field(default_factory=Deduper)
    watermark: int | None = None
    catch_up_end: int = 0
    caught_up: bool = False


@dataclass
class _Published:
    active: bool
    crossing: int


SignalId = tuple[str, str, str | None]  # kind, unit_id, procedure_id


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: SignalsService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.service._revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.service._takeover.assigned(list(assigned))


class SignalsService:
    def __init__(self, config: ServiceConfig, catalog: Catalog, model: Model,
                 thresholds: SignalConfig, sinks: Sequence[Sink], dead_letter: DeadLetter,
                 now_us: Callable[[], int] | None = None) -> None:
        self.config, self.catalog, self.model, self.thresholds = config, catalog, model, thresholds
        self.sinks, self.dead_letter = list(sinks), dead_letter
        self.validator = Validator(catalog, config.max_bytes)  # catching up: DLQ decides time
        self.live_validator = Validator(catalog, config.max_bytes, config.max_skew_us,
                                        now_us or (lambda: time.time_ns() // 1000))
        self.partitions: dict[int, _Partition] = {}
        self.published: dict[SignalId, _Published] = {}
        self.dlq: dict[tuple[int, int], str] = {}
        self.ready = asyncio.Event()  # set after the first evaluation (tests wait on it)
        self.evaluations = 0
        self.evaluated: dict[int, int | None] = {}  # partition -> watermark last evaluated
        # the catch-up set up for newly assigned partitions, retried by the loop if Kafka
        # failed it in the rebalance listener
        self._takeover = Takeover("signals", self._settle)
        self._changed = False
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    # -- input ------------------------------------------------------------------------------

    def fold(self, partition: int, offset: int, value: bytes | None) -> None:
        p = self.partitions.get(partition)
        if p is None:
            return
        live = p.caught_up
        if not live and (partition, offset) in self.dlq:
            return  # the worker refused it then (the DLQ knows what its clock said)
        try:
            event = (self.live_validator if live else self.validator).validate(value or b"")
        except EventRejected:
            return  # the worker dead-letters it; counting it is the worker's job
        if p.deduper.check(event.event_id, event.digest) != NEW:
            return  # a repeat (no-op) or a conflicting duplicate (the worker refuses it)
        if p.watermark is None or event.ts > p.watermark:
            p.watermark = event.ts
        self._changed = True
        if event.unit_id is None or event.type not in DOSSIER_TYPES:
            return
        state = p.units.get(event.unit_id)
        if state is None:
            state = p.units[event.unit_id] = UnitState()
        apply_event(state, event)

    # -- partitions ---------------------------------------------------------------------------

    def _revoked(self, revoked: list[TopicPartition]) -> None:
        self._takeover.revoked()
        for tp in revoked:
            self.partitions.pop(tp.partition, None)

    async def _settle(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        ends = await consumer.end_offsets(assigned) if assigned else {}
        for tp in assigned:
            self.partitions[tp.partition] = _Partition(catch_up_end=ends[tp])
        if assigned:
            await consumer.seek_to_beginning(*assigned)
        self.dlq = await self._read_dlq() if self.config.dlq_topic else {}
        self.published = await self._read_published()
        log.info("assigned %s; catching up to %s; %d signals raised before",
                 sorted(tp.partition for tp in assigned), {tp.partition: ends[tp] for tp in ends},
                 sum(p.active for p in self.published.values()))

    async def _read_all(self, topic: str) -> list[Any]:
        """Every record of a topic, from a group-less reader (read-only, no commits)."""
        reader = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **self.config.kafka)
        await reader.start()
        out: list[Any] = []
        try:
            # a group-less reader knows no topic until it asks (as audit.kafka_source does)
            cluster = await reader._client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return out
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            while pending:
                batch = await reader.getmany(*pending, timeout_ms=500, max_records=5000)
                for records in batch.values():
                    out.extend(r for r in records if r.offset < ends[TopicPartition(
                        r.topic, r.partition)])
                for tp in list(pending):
                    if await reader.position(tp) >= ends[tp]:
                        pending.discard(tp)
        finally:
            await reader.stop()
        return out

    async def _read_dlq(self) -> dict[tuple[int, int], str]:
        positions = {}
        for rec in await self._read_all(self.config.dlq_topic):
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, ValueError,
                                     AttributeError):
                d = orjson.loads(rec.value or b"")
                if d.get("topic") == self.config.events_topic:
                    positions[(int(d["partition"]), int(d["offset"]))] = str(d.get("error"))
        return positions

    async def _read_published(self) -> dict[SignalId, _Published]:
        state: dict[SignalId, _Published] = {}
        for rec in await self._read_all(self.config.signals_topic):
            try:
                d = orjson.loads(rec.value or b"")
                key = (str(d["kind"]), str(d["unit_id"]), d.get("procedure_id"))
                state[key] = _Published(d["state"] == "raised", int(d["crossing"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("unreadable signals record at %s[%d]@%d", rec.topic, rec.partition,
                            rec.offset)
        return state

    # -- evaluation ---------------------------------------------------------------------------

    def _holding(self) -> tuple[dict[str, UnitState], dict[str, int]]:
        states: dict[str, UnitState] = {}
        t_of: dict[str, int] = {}
        for p in self.partitions.values():
            for u, st in p.units.items():
                if p.watermark is not None:
                    states[u], t_of[u] = st, p.watermark
        return states, t_of

    async def crossings(self) -> list[tuple[SignalId, dict[str, Any]]]:
        """The signals whose state changed since the last publication, as messages.

        The evaluation (CPU-bound: every held dossier) runs in a thread so the consumer's
        heartbeats go on; nothing folds meanwhile (the loop that folds is awaiting this)."""
        started = time.perf_counter()
        states, t_of = self._holding()
        signals = await asyncio.to_thread(evaluate, states, self.catalog, t_of.__getitem__,
                                          self.thresholds, sorted(states))
        tz, cfg = self.model.timezone, self.thresholds
        out = []
        seen: set[SignalId] = set()
        for s in signals:
            sid: SignalId = (s.kind, s.unit_id, s.procedure_id)
            seen.add(sid)
            prev = self.published.get(sid)
            was = prev.active if prev else False
            if s.is_active(was) != was:
                out.append((sid, self._message(sid, "cleared" if was else "raised", prev,
                                               s.to_dict(tz, cfg.max_listed))))
        for sid, prev in self.published.items():
            if prev.active and sid not in seen and sid[1] in states:
                empty = {"value": 0.0, "dossier_count": 0, "dossiers": [], "detail": {},
                         "as_of": _fmt(t_of[sid[1]], tz), "procedure_id": sid[2]}
                out.append((sid, self._message(sid, "cleared", prev, empty)))
        SIGNALS_EVALUATION_SECONDS.observe(time.perf_counter() - started)
        return out

    def prune(self) -> int:
        """Forget dossiers received before every signal's horizon (they can never count
        again), so memory follows the look-back, not the topic's whole history."""
        days = self.thresholds.history_days()
        dropped = 0
        for p in self.partitions.values():
            if p.watermark is None:
                continue
            before = p.watermark - int(days * DAY_US) - DAY_US
            for st in p.units.values():
                old = [k for k, d in st.dossiers.items()
                       if d.received is not None and d.received[0] < before]
                for k in old:
                    del st.dossiers[k]
                dropped += len(old)
        return dropped

    def _message(self, sid: SignalId, state: str, prev: _Published | None,
                 body: dict[str, Any]) -> dict[str, Any]:
        kind, unit_id, proc = sid
        crossing = (prev.crossing if prev else 0) + 1
        unit = self.catalog.by_id.get(unit_id)
        rules = self.thresholds.for_group(unit.peer_group if unit else "")[kind]
        return {"kind": kind, "state": state, "crossing": crossing, "unit_id": unit_id,
                "name": unit.name if unit else unit_id,
                "peer_group": unit.peer_group if unit else None, "procedure_id": proc,
                "threshold": float(rules["threshold"]), "clear_below": float(rules["clear_below"]),
                **{k: v for k, v in body.items() if k not in ("signal", "kind", "unit_id")},
                "config": self.thresholds.digest, "model": self.model.ref,
                "alert_id": idempotency_key("signal", kind, unit_id, proc, crossing)}

    async def evaluate_and_publish(self) -> int:
        changes = await self.crossings()
        for sid, msg in changes:
            if msg["state"] == "raised" or self.config.alert_clears:
                await deliver(alert_of(msg), self.sinks, self.dead_letter)
            assert self._producer is not None
            await self._producer.send_and_wait(self.config.signals_topic, orjson.dumps(msg),
                                               key=sid[1].encode("utf-8"))
            self.published[sid] = _Published(msg["state"] == "raised", msg["crossing"])
            SIGNALS_PUBLISHED.labels(sid[0], msg["state"]).inc()
            log.info("signal %s %s for %s (%s dossiers, threshold %s)", sid[0], msg["state"],
                     sid[1], msg["dossier_count"], msg["threshold"])
        for kind in KINDS:
            SIGNALS_ACTIVE.labels(kind).set(sum(
                1 for (k, _, _), p in self.published.items() if k == kind and p.active))
        self.evaluations += 1
        self.evaluated = {n: p.watermark for n, p in self.partitions.items()}
        self.ready.set()
        return len(changes)

    # -- the loop -----------------------------------------------------------------------------

    async def _caught_up(self) -> bool:
        consumer = self._consumer
        assert consumer is not None
        done = True
        for tp in consumer.assignment():
            p = self.partitions.get(tp.partition)
            if p is None or p.caught_up:
                continue
            if await consumer.position(tp) >= p.catch_up_end:
                p.caught_up = True
                log.info("partition %d caught up at offset %d", tp.partition, p.catch_up_end)
            else:
                done = False
        return done

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        cfg = self.config
        self._consumer = consumer = AIOKafkaConsumer(
            group_id=cfg.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=5000, **cfg.kafka)
        self._producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **cfg.kafka)
        next_eval = 0.0
        try:
            for sink in self.sinks:
                await sink.start()
            await self.dead_letter.start()
            await self._producer.start()
            await consumer.start()
            consumer.subscribe([cfg.events_topic], listener=_Rebalance(self))
            log.info("signals consuming %s as group %s", cfg.events_topic, cfg.group_id)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                if not await self._takeover.ready_for(consumer, batch, stop):
                    continue  # set up first (it reads from the beginning again), then fold
                held = consumer.assignment()
                for tp, records in batch.items():
                    if tp in held:
                        for rec in records:
                            self.fold(rec.partition, rec.offset, rec.value)
                if not held or not await self._caught_up():
                    continue
                if (self._changed or not self.evaluations) and time.monotonic() >= next_eval:
                    self._changed = False
                    next_eval = time.monotonic() + cfg.interval
                    await self.evaluate_and_publish()
                    self.prune()
                    with contextlib.suppress(Exception):  # positions: lag only, see above
                        await consumer.commit()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await self._producer.stop()
            for sink in self.sinks:
                with contextlib.suppress(Exception):
                    await sink.close()
            with contextlib.suppress(Exception):
                await self.dead_letter.close()
            self._consumer = None


def _fmt(us: int, tz: str) -> str:
    from scoring.timeutil import format_ts

    return format_ts(us, tz)

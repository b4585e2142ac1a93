"""Reading the event history the way the live worker read it: validation, de-duplication,
the DLQ's verdicts, and the fold into unit states.

Shared by replay (timelines), explain and verify, so all three admit exactly the same events.
Every fact in ``scoring.facts`` is a min, a max or a set, so the state folded from the whole
history, asked at T, is the score of the events with ``occurred_at <= T`` (SPEC 3).
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from audit.sources import ArchiveSource, FileSource, Record, Source
from schemas import EventRejected, Validator
from scoring.catalog import Catalog
from scoring.dedup import CONFLICT, NEW, Deduper
from scoring.events import Event
from scoring.facts import UnitState, apply_event
from scoring.timeutil import Window

log = logging.getLogger(__name__)

# DLQ codes that depend on what the worker knew then (wall clock, other partitions): replay
# cannot re-derive them, so it trusts the DLQ record for those positions.
CONTEXT_CODES = frozenset({"future_timestamp", "conflicting_duplicate"})
MAX_ANOMALIES = 50


@dataclass
class IngestStats:
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    dlq_skipped: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)
    anomaly_count: int = 0
    seconds: float = 0.0

    def anomaly(self, text: str) -> None:
        self.anomaly_count += 1
        if len(self.anomalies) < MAX_ANOMALIES:
            self.anomalies.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records, "accepted": self.accepted, "duplicates": self.duplicates,
            "dlq_skipped": self.dlq_skipped, "rejected": dict(sorted(self.rejected.items())),
            "anomalies": self.anomaly_count, "anomaly_examples": self.anomalies,
            "seconds": round(self.seconds, 3),
            "records_per_s": round(self.records / self.seconds) if self.seconds > 0 else None,
        }


def read_dlq(source: Source, dlq_topic: str, events_topic: str
             ) -> dict[tuple[int, int], str] | None:
    """Positions of ``events_topic`` the worker rejected, with the code; None without a DLQ."""
    if not source.has_topic(dlq_topic):
        return None
    positions: dict[tuple[int, int], str] = {}
    for batch in source.read(dlq_topic):
        for rec in batch:
            try:
                d = orjson.loads(rec.value or b"")
                if d.get("topic") == events_topic:
                    positions[(int(d["partition"]), int(d["offset"]))] = str(d.get("error"))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                log.warning("unreadable DLQ record %s[%d]@%d", dlq_topic, rec.partition,
                            rec.offset)
    return positions


class Acceptor:
    """The worker's admission rules (``schemas.Validator`` + ``scoring.dedup``) minus its clock.

    ``dlq`` (positions the worker rejected) is authoritative: those records are skipped. Every
    other record must validate and be new or an exact repeat; when a DLQ is given, a record
    that replay would refuse although the worker took it is an *anomaly* (reported, skipped).
    ``per_partition`` keeps one de-duplication memory per partition (verification folds each
    partition on its own); otherwise one for the whole history, like ``bando score``.
    """

    def __init__(self, catalog: Catalog, max_bytes: int,
                 dlq: Mapping[tuple[int, int], str] | None = None, per_partition: bool = False):
        self.catalog = catalog
        self.validator = Validator(catalog, max_bytes=max_bytes)
        self.dlq = dlq
        self.per_partition = per_partition
        self.dedupers: dict[int, Deduper] = {}
        self.stats = IngestStats()

    def accept(self, rec: Record) -> Event | None:
        stats = self.stats
        stats.records += 1
        if self.dlq is not None:
            code = self.dlq.get((rec.partition, rec.offset))
            if code is not None:
                stats.dlq_skipped += 1
                if code not in CONTEXT_CODES:
                    try:
                        self.validator.validate(rec.value or b"")
                    except EventRejected:
                        pass
                    else:
                        stats.anomaly(f"{_where(rec)}: the worker rejected it ({code}) but "
                                      "it validates")
                return None
        try:
            event = self.validator.validate(rec.value or b"")
        except EventRejected as exc:
            stats.rejected[exc.code] += 1
            if self.dlq is not None:
                stats.anomaly(f"{_where(rec)}: {exc.code} ({exc.detail[:80]}) but not in the "
                              "DLQ")
            return None
        part = rec.partition if self.per_partition else 0
        deduper = self.dedupers.get(part)
        if deduper is None:
            deduper = self.dedupers[part] = Deduper()
        status = deduper.check(event.event_id, event.digest)
        if status == NEW:
            stats.accepted += 1
            return event
        if status == CONFLICT:
            stats.rejected["conflicting_duplicate"] += 1
            if self.dlq is not None:
                stats.anomaly(f"{_where(rec)}: conflicting duplicate of {event.event_id!r} "
                              "not in the DLQ")
        else:
            stats.duplicates += 1
        return None


def _where(rec: Record) -> str:
    return f"{rec.topic}[{rec.partition}]@{rec.offset}"


class History:
    """The whole history folded into unit states, and its first and last event times.

    Nothing per event is kept beyond the facts: where a fact's contribution to a score can
    change follows from the fact itself (``scoring.incremental``'s breakpoints), which is how
    a replay walks time (``audit.running``)."""

    def __init__(self) -> None:
        self.states: dict[str, UnitState] = {}
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def add(self, ev: Event) -> None:
        ts = ev.ts
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        unit_id = ev.unit_id
        if unit_id is None:
            return
        state = self.states.get(unit_id)
        if state is None:
            state = self.states[unit_id] = UnitState()
        apply_event(state, ev)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while folding: the history is millions of small acyclic
    objects that every full collection would walk again, for nothing (about a third of the
    ingest time on a large history). On the way out they go to the oldest generation unscanned
    (freeze, then unfreeze), or the first collection after would walk every one of them."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was:
            gc.enable()


def load_history(source: Source, topic: str, acceptor: Acceptor, since_ms: int | None = None,
                 until_ms: int | None = None, fused: bool = True) -> History:
    """Every record of ``topic`` through ``acceptor``, the accepted ones folded.

    A JSON-lines file or an archive takes the fused path of ``bando score``
    (``audit.fastingest``): same verdicts, statistics and history, about twice as fast.
    Kafka, memory, and ``per_partition`` (one table per partition) take the generic one, as
    does ``fused=False`` (the reference, for tests and benchmarks)."""
    from audit import fastingest  # it builds on this module

    started = time.perf_counter()
    fresh = not acceptor.dedupers and acceptor.stats.records == 0
    if fused and fresh and type(source) is FileSource and topic == source.topic:
        history = fastingest.load_file(source, acceptor)
    elif fused and fresh and type(source) is ArchiveSource and not acceptor.per_partition:
        history = fastingest.load_archive(source, topic, acceptor, since_ms, until_ms)
    else:
        history = History()
        add, accept = history.add, acceptor.accept
        with paused_gc():
            for batch in source.read(topic, since_ms=since_ms, until_ms=until_ms):
                for rec in batch:
                    ev = accept(rec)
                    if ev is not None:
                        add(ev)
    acceptor.stats.seconds = time.perf_counter() - started
    return history


def window_state(state: UnitState | None, window: Window) -> UnitState:
    """The unit's facts that belong to ``window`` (same objects, not copies): ``count`` skips
    the others anyway, so this only saves it from looking at them at every instant."""
    if state is None:
        return UnitState()
    lo, hi = window.start_us, window.end_us
    return UnitState(
        dossiers={k: d for k, d in state.dossiers.items()
                  if d.received is not None and lo <= d.received[0] < hi},
        petitions={k: p for k, p in state.petitions.items()
                   if p.received is not None and lo <= p.received[0] < hi},
        publications={k: p for k, p in state.publications.items() if lo <= p.ts < hi},
    )

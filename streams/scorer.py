"""The scorer stage, free of faust: events in, coalesced per-unit scores out.

A worker owns some partitions of ``procedure-events``. For each it keeps, in changelog-backed
tables (through the ``Store`` given to it), the event ids seen (de-duplication), the unit
facts (``scoring.facts``), and the partition's watermark and input offset. The in-memory
``UnitState`` objects mirror the facts table and are rebuilt from it after recovery.

Event time is the partition's watermark: the largest ``occurred_at`` seen there, ticks
included. Scores are computed by ``scoring`` at that watermark, never at wall time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas import EventRejected, Validator
from scoring.catalog import Catalog
from scoring.dedup import CONFLICT, NEW, classify
from scoring.engine import score_state
from scoring.events import Event
from scoring.facts import Dossier, Petition, Publication, UnitState, apply_event
from scoring.model import Model
from scoring.timeutil import format_ts, window_of

log = logging.getLogger(__name__)

SEP = "\x1f"  # fact keys: unit_id SEP kind SEP id; ids cannot hold control characters in practice
LIVE_WINDOWS = ("month", "year")


class Store(Protocol):
    """What the scorer needs of its tables: read, and write to a given changelog partition."""

    def get(self, table: str, key: str) -> Any: ...

    def put(self, table: str, partition: int, key: str, value: Any) -> None: ...

    def items(self, table: str) -> Iterable[tuple[str, Any]]: ...


@dataclass(slots=True)
class Message:
    """One incoming message of the events topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None  # broker/producer timestamp, for latency metrics only


@dataclass(slots=True)
class Outcome:
    accepted: list[Event] = field(default_factory=list)
    rejected: list[tuple[Message, EventRejected]] = field(default_factory=list)
    duplicates: int = 0


def _fact_value(state: UnitState, kind: str, ident: str) -> Any:
    if kind == "d":
        return state.dossiers[ident].to_dict()
    if kind == "p":
        return state.petitions[ident].to_dict()
    pub = state.publications[ident]
    return [pub.ts, pub.announced_on_time, pub.publicized_on_time, pub.complete]


def _load_fact(state: UnitState, kind: str, ident: str, value: Any) -> None:
    if kind == "d":
        state.dossiers[ident] = Dossier.from_dict(value)
    elif kind == "p":
        state.petitions[ident] = Petition.from_dict(value)
    else:
        state.publications[ident] = Publication(value[0], value[1], value[2], value[3])


class ScorerCore:
    def __init__(
        self,
        catalog: Catalog,
        model: Model,
        store: Store,
        topic: str = "procedure-events",
        max_bytes: int = 64 * 1024,
        max_skew_us: int = 300_000_000,
        now_us: Callable[[], int] | None = None,
    ):
        self.catalog = catalog
        self.model = model
        self.store = store
        self.topic = topic
        self.validator = Validator(catalog, max_bytes, max_skew_us, now_us)
        self.states: dict[str, UnitState] = {}
        self.unit_partition: dict[str, int] = {}
        self.watermark: dict[int, int] = {}
        self.offset: dict[int, int] = {}
        self.dirty: set[str] = set()
        self._next_change: dict[tuple[str, str], int] = {}
        self._last_window: dict[tuple[str, str], str] = {}
        self._last_sent: dict[tuple[str, str], tuple] = {}
        self._pending_ts: dict[str, int] = {}  # unit -> oldest unscored event arrival (ms)

    # --- input ------------------------------------------------------------------------------

    def process(self, batch: list[Message]) -> Outcome:
        """Validate, de-duplicate and fold a batch; write tables once per touched key."""
        out = Outcome()
        touched: dict[tuple[str, str, str], int] = {}
        clocks: set[int] = set()
        for msg in batch:
            p = msg.partition
            if msg.offset > self.offset.get(p, -1):
                self.offset[p] = msg.offset
            clocks.add(p)
            try:
                event = self.validator.validate(msg.value or b"")
            except EventRejected as exc:
                out.rejected.append((msg, exc))
                continue
            digest = event.digest.hex()  # tables hold JSON, so the digest is kept as hex
            status = classify(self.store.get("seen", event.event_id), digest)
            if status == CONFLICT:
                out.rejected.append((msg, EventRejected(
                    "conflicting_duplicate",
                    f"event_id {event.event_id[:128]!r} was seen before with another body")))
                continue
            if status == NEW:
                self.store.put("seen", p, event.event_id, digest)
                out.accepted.append(event)
            else:
                # Fold it again anyway: the "seen" and "facts" changelogs are separate topics,
                # so a crash can keep the first write and lose the second. Folding is
                # idempotent, so re-applying a true duplicate changes nothing.
                out.duplicates += 1
            if event.ts > self.watermark.get(p, -(2**62)):
                self.watermark[p] = event.ts
            unit_id = event.unit_id
            if unit_id is None:  # clock.tick: only moves event time
                continue
            if self.unit_partition.get(unit_id) != p:
                self.unit_partition[unit_id] = p
                self.store.put("units", p, unit_id, p)
            state = self.states.get(unit_id)
            if state is None:
                state = self.states[unit_id] = UnitState()
            key = apply_event(state, event)
            if key is not None:
                touched[(unit_id, key[0], key[1])] = p
            self.dirty.add(unit_id)
            if msg.timestamp_ms is not None:
                self._pending_ts.setdefault(unit_id, msg.timestamp_ms)
        for (unit_id, kind, ident), p in touched.items():
            value = _fact_value(self.states[unit_id], kind, ident)
            self.store.put("facts", p, SEP.join((unit_id, kind, ident)), value)
        for p in clocks:
            self.store.put("clock", p, str(p),
                           {"wm": self.watermark.get(p), "offset": self.offset.get(p)})
        return out

    # --- recovery ---------------------------------------------------------------------------

    def rebuild(self, partitions: set[int]) -> None:
        """Reload in-memory state for the partitions this worker now owns, from its tables."""
        self.states.clear()
        self.unit_partition.clear()
        self.watermark.clear()
        self.offset.clear()
        self._next_change.clear()
        self._last_window.clear()
        self._pending_ts.clear()
        # What this worker sent before may have been superseded by another worker meanwhile.
        self._last_sent.clear()
        for key, value in self.store.items("clock"):
            p = int(key)
            if p in partitions and value:
                if value.get("wm") is not None:
                    self.watermark[p] = value["wm"]
                if value.get("offset") is not None:
                    self.offset[p] = value["offset"]
        for unit_id, p in self.store.items("units"):
            if p in partitions:
                self.unit_partition[unit_id] = p
        for key, value in self.store.items("facts"):
            unit_id, kind, ident = key.split(SEP, 2)
            if unit_id not in self.unit_partition:
                continue
            state = self.states.get(unit_id)
            if state is None:
                state = self.states[unit_id] = UnitState()
            _load_fact(state, kind, ident, value)
        # Re-score everything once: what was published before a crash may be behind.
        self.dirty = set(self.unit_partition)
        log.info("rebuilt %d units on partitions %s", len(self.unit_partition), sorted(partitions))

    # --- output -----------------------------------------------------------------------------

    def flush(self) -> list[dict[str, Any]]:
        """Score units whose result may have changed; return messages whose content changed.

        Called every coalescing interval, so a unit gets at most one update per window per
        interval however many events arrived.
        """
        out: list[dict[str, Any]] = []
        tz = self.model.timezone
        for unit_id, p in self.unit_partition.items():
            t = self.watermark.get(p)
            unit = self.catalog.by_id.get(unit_id)
            if t is None or unit is None:
                continue
            for kind in LIVE_WINDOWS:
                window = window_of(kind, t, tz)
                k = (unit_id, kind)
                if (unit_id not in self.dirty and self._last_window.get(k) == window.name
                        and t < self._next_change.get(k, 0)):
                    continue
                score = score_state(self.model, unit, self.states.get(unit_id), window, t)
                self._next_change[k] = score.next_change_us
                self._last_window[k] = window.name
                fingerprint = (window.name, score.rated.total, tuple(sorted(score.counts.items())))
                sent_key = (unit_id, window.name)
                previous = self._last_sent.get(sent_key)
                if previous == fingerprint or (previous is None and score.rated.total is None):
                    continue
                self._last_sent[sent_key] = fingerprint
                msg = score.to_dict()
                del msg["rank"], msg["peer_count"]
                losses = sorted(score.rated.lost.items(), key=lambda kv: (-kv[1], kv[0]))
                msg.update({
                    "window": window.name,
                    "as_of": format_ts(t, tz),
                    "model": self.model.ref,
                    "input": {"topic": self.topic, "partition": p, "offset": self.offset.get(p)},
                    "top_losses": [
                        {"indicator": i, "points_lost": round(float(v), 4)}
                        for i, v in losses[:3] if v > 0
                    ],
                    "arrived_ms": self._pending_ts.get(unit_id),
                })
                out.append(msg)
        self.dirty.clear()
        self._pending_ts.clear()
        return out

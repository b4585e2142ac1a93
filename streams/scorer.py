"""The scorer stage, free of faust: events in, coalesced per-unit scores out.

A worker owns some partitions of ``procedure-events``. For each it keeps, in changelog-backed
tables (through the ``Store`` given to it), the event ids seen (de-duplication), the unit
facts (``scoring.facts``), and the partition's watermark and input offset. The in-memory
``UnitState`` objects mirror the facts table and are rebuilt from it after recovery, as the
changelogs a crash left behind allow (``streams.rebuild``).

Event time is the partition's watermark: the largest ``occurred_at`` seen there, ticks
included. Scores are computed by ``scoring`` at that watermark, never at wall time.

Each unit's counts are kept running (``scoring.running.UnitCounts``): ``process`` notes
which fact records an event touched, and ``flush`` re-evaluates only those and the records whose
due time event time has passed, so a flush costs O(changed records), not O(all dossiers); the
points (exact fractions) are computed only for units whose counts changed.

Settled dossiers (``scoring.running``: completed, withdrawn, overdue... whose contribution no
longer changes by time alone) leave the in-memory state at the flush; their facts stay in the
store (on disk with ``BANDO_STORE=rocksdb``), and an event for one reads them back first. So
a worker's memory follows the dossiers still in play, not the year behind them.
``keep_settled=True`` keeps every dossier in memory (the behaviour before; a benchmark's
baseline).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from schemas import EventRejected, Validator
from scoring.catalog import Catalog
from scoring.dedup import CONFLICT, NEW, classify
from scoring.engine import score_state
from scoring.events import Event
from scoring.facts import Dossier, UnitState
from scoring.live import RECEIPTS, fold_live
from scoring.model import Model
from scoring.running import RecordKey, UnitCounts
from scoring.timeutil import Window, window_of
from streams.rebuild import (
    LIVE_WINDOWS,
    SEP,
    Rebuilt,
    absent_dossiers,
    begin_batch,
    fact_value,
    mark_key,
    note_moved,
    rebuild,
)
from streams.records import Message, Outcome, Store, score_message
from streams.risk import RiskWatch

log = logging.getLogger(__name__)


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
        keep_settled: bool = False,
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
        self.running: dict[str, UnitCounts] = {}  # unit -> its counts at its watermark
        self._touched: dict[str, set[RecordKey]] = {}  # unit -> records changed since flush
        self._last_counts: dict[tuple[str, str], tuple] = {}  # (unit, window) -> last scored
        self._last_sent: dict[tuple[str, str], tuple] = {}
        self._risk = RiskWatch(catalog, model)
        self._open_index = self._risk.index  # touched in the hot loop, so looked up once
        self._pending_ts: dict[str, int] = {}  # unit -> oldest unscored event arrival (ms)
        # per partition: where its time leaves its live windows (the month's end), and the
        # scores made on the way there, which the next ``flush`` returns first
        self._window_end: dict[int, int] = {}
        self._closing: list[dict[str, Any]] = []
        self._split_warned: set[str] = set()  # units seen on two partitions (logged once)
        # per unit not flushed since a rebuild or since an earlier receipt moved one of its
        # records: where records left a window (withdrawn dossiers' and moved receipts' times)
        self._withdrawn: dict[str, list[int]] = {}
        self._moved: dict[str, list[int]] = {}  # unit -> its moved record (streams.rebuild)
        # what a rebuild left to settle as the input is read again (``streams.rebuild``): its
        # states, running counts, withdrawals and moved records are this object's own
        self._rebuilt = Rebuilt(states=self.states, running=self.running,
                                withdrawn=self._withdrawn, moved=self._moved)
        # the running counts settle dossiers in the model's time zone (its windows')
        self._settle_tz = None if keep_settled else model.timezone

    # --- input ------------------------------------------------------------------------------

    def process(self, batch: list[Message]) -> Outcome:
        """Validate, de-duplicate and fold a batch; write tables once per touched key."""
        out = Outcome()
        touched: dict[tuple[str, str, str], int] = {}
        clocks: set[int] = set()
        checked: list[Event | EventRejected] = []
        for msg in batch:
            try:
                checked.append(self.validator.validate(msg.value or b""))
            except EventRejected as exc:
                checked.append(exc)
        prefetch = getattr(self.store, "prefetch", None)
        if prefetch is not None:
            # a disk store reads the batch's ids in one call per database (``Prefetching``)
            prefetch("seen", [e.event_id for e in checked if not isinstance(e, EventRejected)])
            if self._settle_tz is not None:
                prefetch("facts", absent_dossiers(self.states, checked))
        held, orphans = self._rebuilt.held, self._rebuilt.orphans
        begin_batch(self.store, [(m.partition, m.offset) for m in batch], held)
        for msg, event in zip(batch, checked, strict=True):
            p = msg.partition
            before = self.offset.get(p)
            if msg.offset > self.offset.get(p, -1):
                self.offset[p] = msg.offset
            if held and msg.offset >= held.get(p, 2**63):
                del held[p]  # read again up to what the clock said: the facts have caught up
            clocks.add(p)
            if isinstance(event, EventRejected):
                out.rejected.append((msg, event))
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
                end = self._window_end.get(p)
                if end is None or event.ts >= end:
                    if end is not None and before is not None:
                        self._write_facts(touched)
                        self._close_windows(p, before)
                    self._window_end[p] = self._end_of_windows(event.ts)
                self.watermark[p] = event.ts
            unit_id = event.unit_id
            if unit_id is None:  # clock.tick: only moves event time
                continue
            if self.unit_partition.get(unit_id) != p:
                self.unit_partition[unit_id] = p
                self.store.put("units", p, unit_id, p)
                if orphans and unit_id in orphans:
                    self._rebuilt.claim(self.store, unit_id, self._settle_tz)
            state = self.states.get(unit_id)
            if state is None:
                state = self.states[unit_id] = UnitState()
            if self._settle_tz is not None and event.type.startswith("dossier."):
                ident = event.body["dossier_id"]
                if ident not in state.dossiers:
                    self._bring_back(unit_id, state, ident)
            key, left = fold_live(state, event, self.watermark[p])
            if left is not None:
                self._withdrawn.setdefault(unit_id, []).append(left)
                if event.type in RECEIPTS:  # a withdrawal stays in its dossier's record
                    note_moved(self.store, p, self._moved, unit_id, left, self.watermark[p],
                               self.model.timezone)
            if key is not None:
                touched[(unit_id, key[0], key[1])] = p
                pending = self._touched.get(unit_id)
                if pending is None:
                    pending = self._touched[unit_id] = set()
                pending.add(key)
                if key[0] == "d" and (index := self._open_index.get(unit_id)) is not None:
                    index.touch(key[1])
            if msg.timestamp_ms is not None:
                self._pending_ts.setdefault(unit_id, msg.timestamp_ms)
        self._write_facts(touched)
        for p in clocks:
            offset = self.offset.get(p)
            self.store.put("clock", p, str(p),
                           {"wm": self.watermark.get(p), "offset": offset, "marked": True})
            # Last of the batch's writes to p's facts changelog: if it survives a crash, so did
            # they (a partition's records arrive in order; streams.rebuild). Not while p is
            # held: its facts lack input before the offset, and the old mark says so.
            if p not in held:
                self.store.put("facts", p, mark_key(p), offset)
        return out

    def _write_facts(self, touched: dict[tuple[str, str, str], int]) -> None:
        """Write the facts records the batch changed so far (once each), and forget them."""
        for (unit_id, kind, ident), p in touched.items():
            value = fact_value(self.states[unit_id], kind, ident)
            self.store.put("facts", p, SEP.join((unit_id, kind, ident)), value)
        touched.clear()

    def _close_windows(self, p: int, before: int) -> None:
        """The event being read takes partition ``p``'s time past the end of its month (or
        year): flush ``p`` first, as if a coalescing interval had ended just before it.

        Else the month's last changes would be scored by the next flush in the windows of the
        new time only, and the closing month's board would stay stale for good. Scored at the
        watermark and input offset of that moment (``before``: the last offset read before
        the event), so ``audit.verify`` reproduces them from the events up to that offset; a
        closing score taken later would count events read after the crossing. The batch's
        facts were written first: scoring settles dossiers, and a settled dossier is read back
        from the store. ``take_closing`` (or the next ``flush``) hands the scores over. A held
        partition scores nothing here, and need not (``streams.rebuild``)."""
        current = self.offset[p]
        self.offset[p] = before
        try:
            self._score_units(self._closing, p)
        finally:
            self.offset[p] = current

    def _end_of_windows(self, t: int) -> int:
        """Where the live windows of event time ``t`` start to end (its month's end)."""
        tz = self.model.timezone
        return min(window_of(kind, t, tz).end_us for kind in LIVE_WINDOWS)

    def take_closing(self) -> list[dict[str, Any]]:
        """The scores made where a partition's time left its month since the last call (see
        ``_close_windows``): the worker sends them before the batch's changelogs."""
        out, self._closing = self._closing, []
        return out

    def dossiers_in_memory(self) -> int:
        return sum(len(state.dossiers) for state in self.states.values())

    def _bring_back(self, unit_id: str, state: UnitState, ident: str) -> None:
        """A dossier that is not in memory: new, or settled (its facts in the store)."""
        value = self.store.get("facts", SEP.join((unit_id, "d", ident)))
        if value is None:
            return
        d = Dossier.from_dict(value)
        running = self.running.get(unit_id)
        if running is not None and running.state is state:
            running.unsettle(ident, d)
        else:  # nothing of this unit has settled (no running counts)
            state.dossiers[ident] = d

    # --- recovery ---------------------------------------------------------------------------

    def rebuild(self, partitions: set[int]) -> None:
        """Reload in-memory state for the partitions this worker now owns, from its tables."""
        self.states.clear()
        self.unit_partition.clear()
        self.watermark.clear()
        self.offset.clear()
        self.running.clear()
        self._touched.clear()
        self._last_counts.clear()
        self._pending_ts.clear()
        # What this worker sent before may have been superseded by another worker meanwhile.
        self._last_sent.clear()
        self._risk.clear()
        # Running counts from the facts, one record at a time (settled dossiers are counted
        # and dropped as they come); _last_counts is empty, so everything is re-scored once:
        # what was published before a crash may be behind.
        got = self._rebuilt = rebuild(self.store, partitions, self._settle_tz)
        self.watermark, self.offset = got.watermark, got.offset
        self._window_end = {p: self._end_of_windows(t) for p, t in self.watermark.items()}
        self.unit_partition, self.states, self.running = got.unit_partition, got.states, got.running
        self._withdrawn, self._moved = got.withdrawn, got.moved
        log.info("rebuilt %d units on partitions %s", len(self.unit_partition), sorted(partitions))

    # --- early warning ----------------------------------------------------------------------

    def at_risk(self, horizon_seconds: float) -> list[dict[str, Any]]:
        """Early warnings (``alerts.at_risk``) for each unit's current month, when its status
        or the dossiers behind it changed since the last call (``streams.risk``).

        Assessed at the time of the unit's last flush (its running counts), so a warning and a
        score never disagree about event time. A unit with events folded since its flush is
        left for a later call, as is one on a partition whose input is read again
        (``streams.rebuild``); ``flush_and_warn`` assesses every unit.
        """
        held = self._rebuilt.held

        def skip(unit_id: str) -> bool:
            return unit_id in self._touched or bool(held) and \
                self.unit_partition.get(unit_id) in held

        return self._risk.assess(self.running, skip, horizon_seconds)

    def _may_have_lost(self, unit_id: str, window: Window) -> bool:
        """After a rebuild, whether a unit with no score in ``window`` may have had one before
        (what was sent is unknown then): only a withdrawal, or an earlier receipt that moves a
        record to another window, takes a record out of one, so only those can have emptied
        it. Said once, it clears the board's old score; units that never had one send
        nothing."""
        received = self._withdrawn.get(unit_id)
        return received is not None and any(
            window.start_us <= r < window.end_us for r in received)

    def _split_unit(self, unit_id: str, partition: int) -> None:
        if unit_id not in self._split_warned:
            self._split_warned.add(unit_id)
            log.warning("unit %r has events on partition %d behind another one: events are "
                        "keyed by unit_id (SPEC 4); scored at its latest time meanwhile",
                        unit_id[:80], partition)

    def flush_and_warn(self, horizon_seconds: float
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``flush`` then ``at_risk`` with nothing folded in between: every unit is assessed
        on counts that match its dossiers. The caller sends both lists afterwards."""
        scores = self.flush()
        return scores, self.at_risk(horizon_seconds)

    # --- output -----------------------------------------------------------------------------

    def flush(self) -> list[dict[str, Any]]:
        """Score units whose counts changed; return messages whose content changed.

        Called every coalescing interval, so a unit gets at most one update per window per
        interval however many events arrived (and one more where its partition's time left a
        month: those scores, made then, come first).
        """
        out = self.take_closing()
        self._score_units(out, None)
        return out

    def _score_units(self, out: list[dict[str, Any]], only: int | None) -> None:
        """``flush``'s work, for every partition or ``only`` one (not held)."""
        tz = self.model.timezone
        if only is None:
            touched, self._touched = self._touched, {}
        else:
            touched = {u: self._touched.pop(u) for u in list(self._touched)
                       if self.unit_partition.get(u) == only}
        held = self._rebuilt.held
        windows_of: dict[int, tuple[Window, ...]] = {}  # per partition: its live windows
        for unit_id, p in self.unit_partition.items():
            if only is not None and p != only:
                continue
            if held and p in held:
                # scored once its input read again has caught up (streams.rebuild)
                if unit_id in touched:
                    self._touched[unit_id] = touched[unit_id]
                continue
            t = self.watermark.get(p)
            unit = self.catalog.by_id.get(unit_id)
            if t is None or unit is None:
                continue
            windows = windows_of.get(p)
            if windows is None:
                windows = windows_of[p] = tuple(window_of(kind, t, tz) for kind in LIVE_WINDOWS)
            state = self.states.get(unit_id)
            if state is None:
                state = self.states[unit_id] = UnitState()
            running = self.running.get(unit_id)
            if running is not None and running.state is state and t < running.t:
                # its events came on a partition behind the one that carried them before (not
                # keyed by unit_id, or the topic's partitions changed): a score never goes back
                # in time (settled counts cannot), and the other units' flush goes on
                self._split_unit(unit_id, p)
                t = running.t
                windows = tuple(window_of(kind, t, tz) for kind in LIVE_WINDOWS)
            if running is None or running.state is not state:
                running = self.running[unit_id] = UnitCounts(state, t, self._settle_tz)
            else:
                running.update(t, touched.get(unit_id, ()))
            running.keep_windows([w.name for w in windows])
            for window in windows:
                counts = running.counts(window)
                k = (unit_id, window.name)
                seen = (counts.items, counts.values)
                if self._last_counts.get(k) == seen:
                    continue  # same counts, same score: nothing new to say
                self._last_counts[k] = seen
                score = score_state(self.model, unit, state, window, t, counts)
                fingerprint = (window.name, score.rated.total, tuple(sorted(score.counts.items())))
                previous = self._last_sent.get(k)
                if previous == fingerprint or (previous is None and score.rated.total is None
                                               and not self._may_have_lost(unit_id, window)):
                    continue
                self._last_sent[k] = fingerprint
                msg = score_message(score, window, t, tz, self.model.ref,
                                    {"topic": self.topic, "partition": p,
                                     "offset": self.offset.get(p)},
                                    self._pending_ts.get(unit_id))
                out.append(msg)
            self._withdrawn.pop(unit_id, None)
        if only is not None:
            self._pending_ts = {u: ms for u, ms in self._pending_ts.items()
                                if self.unit_partition.get(u) != only}
        elif held:
            self._pending_ts = {u: ms for u, ms in self._pending_ts.items()
                                if self.unit_partition.get(u) in held}
        else:
            self._pending_ts.clear()

"""The scorer's in-memory state rebuilt from its tables after recovery (``ScorerCore.rebuild``).

The four tables have four changelog topics. A crash keeps, of what was written since the last
commit, some prefix of each topic partition (a partition's records arrive in order; topics and
partitions are independent), and the input since the last commit is read again, which writes
everything lost again. Until that re-read has caught up, the tables may disagree in two ways
that used to mislead the rebuild:

* **Facts without their ``units`` record.** A unit's ``units`` record is written only with its
  first event on a partition, so its loss leaves facts whose partition is unknown (the memory
  store holds standby partitions too, so "in the store" is not "owned"). Those facts are set
  aside (``Rebuilt.orphans``, keys only) and brought in all at once by the unit's first event
  read again, before that event is folded (``Rebuilt.claim``). The re-read must contain it: the
  batch that wrote the lost record was not committed. Brought back one dossier at a time as
  events came, with a flush in between, they gave running counts built from part of the unit:
  wrong counts, or ``unsettle`` raising and stopping the worker.
* **A ``clock`` record newer than the facts.** Each batch also writes its partitions' input
  offset into the facts changelog, after its facts (``mark_key``): a mark that survived says
  every fact written before it did. A partition whose mark is behind its clock, or missing
  while the clock says its batch wrote one, is *held* (``Rebuilt.held``): neither scored nor
  assessed until the re-read reaches the clock's offset, which it does since the commit is
  behind the mark. Batches read while held write no mark (their facts still lack the rest),
  so a second crash holds again. Scored at once, a held partition published counts missing
  events at the newer time: a false band change down, then up. A partition whose mark has
  caught up is not held, so a restart with nothing to read again publishes at once.
* **Facts newer than the ``clock`` record.** Each batch first writes, before its facts, the
  last offset it reads there (``begin_key``, ``begin_batch``). A partition whose begin is past
  its clock's offset holds facts of events the clock has not seen, so it is held until the
  re-read reaches the begin. Scored at once, it published counts of events past the message's
  input offset at the clock's older time, which ``--verify`` cannot reproduce (session 10).
  A month closing met again while the partition is held scores nothing, and need not: a hold
  means the batch's changelogs survived, and the worker sends those only after the batch's
  closing scores were delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scoring.events import Event
from scoring.facts import Dossier, Petition, Publication, UnitState
from scoring.running import UnitCounts
from scoring.timeutil import WindowError, window_of

if TYPE_CHECKING:
    from streams.scorer import Store

log = logging.getLogger(__name__)

SEP = "\x1f"  # fact keys: unit_id SEP kind SEP id (kind: d, p, pub or MOVED, whose id is "");
# ids cannot hold control characters in practice
_TABLES = {"d": "dossiers", "p": "petitions", "pub": "publications"}
MOVED = "moved"  # a unit's moved receipts (``moved_key``), beside its records' kinds
LIVE_WINDOWS = ("month", "year")  # the windows a flush scores, at its partition's time


def mark_key(partition: int) -> str:
    """The key of a partition's offset mark in the facts table (no unit id is empty)."""
    return f"{SEP}mark{SEP}{partition}"


def moved_key(unit_id: str) -> str:
    """The key of a unit's *moved* record in the facts table: a time in each month that an
    earlier ``received`` took a record out of (``note_moved``)."""
    return SEP.join((unit_id, MOVED, ""))


def note_moved(store: Store, partition: int, moved: dict[str, list[int]], unit_id: str,
               received: int, t: int, tz: str) -> None:
    """Keep ``received`` (the time a receipt moved a record away from) in the unit's *moved*
    record, written to ``store`` if it changed: one time per month (windows are whole months,
    so one says the same as all of them), none before the live windows of ``t`` (no flush
    scores them again). A rebuild reads it like a withdrawal's receipt time: the window that
    record left may have lost its score, which the worker sent or not before the restart
    (``ScorerCore._may_have_lost``). The batch's facts already hold the new receipt only, so
    without it a restart after the commit left the old score on the board. Times, not month
    starts: a rebuild under another time zone still finds the windows they fall in."""
    live = min(window_of(kind, t, tz).start_us for kind in LIVE_WINDOWS)
    before = moved.get(unit_id, [])
    kept = {_month_of(r, tz): r for r in before if r >= live}
    if received >= live:
        kept.setdefault(_month_of(received, tz), received)
    now = sorted(kept.values())
    if now != before:
        moved[unit_id] = now
        store.put("facts", partition, moved_key(unit_id), now)


def _month_of(us: int, tz: str) -> int:
    try:
        return window_of("month", us, tz).start_us
    except WindowError:  # outside the calendar: the instant itself, which says the same
        return us


def begin_key(partition: int) -> str:
    """The key of the last offset a partition's batch in progress reads, written to the facts
    table before the batch's facts: the furthest its surviving facts may reach."""
    return f"{SEP}begin{SEP}{partition}"


def begin_batch(store: Store, positions: Iterable[tuple[int, int]], held: dict[int, int]
                ) -> None:
    """The first of a batch's writes to each partition's facts changelog: how far the facts
    that outlive their clock record in a crash may reach (the batch's last offset there), or
    what a rebuild holds the partition for, if further: facts from before it are still in
    the table. ``positions``: the batch's (partition, offset) pairs."""
    reach: dict[int, int] = {}
    for p, offset in positions:
        reach[p] = max(offset, reach.get(p, -1))
    for p, offset in reach.items():
        store.put("facts", p, begin_key(p), max(offset, held.get(p, -1)))


def absent_dossiers(states: dict[str, UnitState], checked: Iterable[Any]) -> list[str]:
    """The facts keys of a batch's dossiers that are not in memory (settled or new): what a
    disk store reads ahead in one call. ``checked``: the batch's events, or the rejections."""
    keys = []
    for e in checked:
        if not isinstance(e, Event) or not e.type.startswith("dossier."):
            continue
        state = states.get(e.unit_id or "")
        ident = e.body["dossier_id"]
        if state is None or ident not in state.dossiers:
            keys.append(SEP.join((e.unit_id or "", "d", ident)))
    return keys


def fact_value(state: UnitState, kind: str, ident: str) -> Any:
    """A record of the facts table, as JSON (``record_of`` reads it back)."""
    if kind == "d":
        return state.dossiers[ident].to_dict()
    if kind == "p":
        return state.petitions[ident].to_dict()
    pub = state.publications[ident]
    return [pub.ts, pub.announced_on_time, pub.publicized_on_time, pub.complete]


def record_of(kind: str, value: Any) -> Dossier | Petition | Publication:
    if kind == "d":
        return Dossier.from_dict(value)
    if kind == "p":
        return Petition.from_dict(value)
    return Publication(value[0], value[1], value[2], value[3])


@dataclass(slots=True)
class Rebuilt:
    """What ``rebuild`` gives ``ScorerCore`` (same meanings as its attributes)."""

    watermark: dict[int, int] = field(default_factory=dict)
    offset: dict[int, int] = field(default_factory=dict)
    unit_partition: dict[str, int] = field(default_factory=dict)
    states: dict[str, UnitState] = field(default_factory=dict)
    running: dict[str, UnitCounts] = field(default_factory=dict)
    withdrawn: dict[str, list[int]] = field(default_factory=dict)
    moved: dict[str, list[int]] = field(default_factory=dict)  # unit -> its moved record
    orphans: dict[str, list[str]] = field(default_factory=dict)  # unit -> its facts keys
    held: dict[int, int] = field(default_factory=dict)  # partition -> offset to read again

    def admit(self, unit_id: str, kind: str, ident: str, value: Any, t: int | None,
              settle_tz: str | None) -> None:
        """Add one fact record to its unit: counted at ``t`` (settled dossiers are counted
        and dropped as they come), or kept in the state for the first flush to count."""
        if kind == MOVED:
            self.moved[unit_id] = list(value)
            self.withdrawn.setdefault(unit_id, []).extend(value)
            return
        record = record_of(kind, value)
        if (isinstance(record, Dossier) and record.withdrawn is not None
                and record.received_ts is not None):
            self.withdrawn.setdefault(unit_id, []).append(record.received_ts)
        running = self.running.get(unit_id)
        if running is None:
            state = self.states.get(unit_id)
            if state is None:
                state = self.states[unit_id] = UnitState()
            if t is None:
                getattr(state, _TABLES[kind])[ident] = record
                return
            running = self.running[unit_id] = UnitCounts(state, t, settle_tz)
        running.admit(kind, ident, record)

    def claim(self, store: Store, unit_id: str, settle_tz: str | None) -> None:
        """A unit's first event read again, its facts found without their ``units`` record:
        all of them come in, before the event is folded."""
        for key in self.orphans.pop(unit_id):
            value = store.get("facts", key)
            if value is not None:
                _, kind, ident = key.split(SEP, 2)
                self.admit(unit_id, kind, ident, value, None, settle_tz)


def rebuild(store: Store, partitions: set[int], settle_tz: str | None) -> Rebuilt:
    """The state of ``partitions`` from ``store``'s tables, one facts record at a time."""
    out = Rebuilt()
    marked: dict[int, bool] = {}
    for key, value in store.items("clock"):
        p = int(key)
        if p in partitions and value:
            if value.get("wm") is not None:
                out.watermark[p] = value["wm"]
            if value.get("offset") is not None:
                out.offset[p] = value["offset"]
            marked[p] = bool(value.get("marked"))
    for unit_id, p in store.items("units"):
        if p in partitions:
            out.unit_partition[unit_id] = p
    marks: dict[int, int] = {}
    begins: dict[int, int] = {}
    admit, watermark = out.admit, out.watermark
    for key, value in store.items("facts"):
        unit_id, kind, ident = key.split(SEP, 2)
        if not unit_id:  # mark_key, begin_key
            if kind in ("mark", "begin"):
                (marks if kind == "mark" else begins)[int(ident)] = value
            continue
        part = out.unit_partition.get(unit_id)
        if part is None:
            out.orphans.setdefault(unit_id, []).append(key)
            continue
        admit(unit_id, kind, ident, value, watermark.get(part), settle_tz)
    for p, offset in out.offset.items():
        mark = marks.get(p, -1)
        # a clock written before marks existed (no "marked") is trusted, as it was then
        if mark < offset and marked.get(p):
            out.held[p] = offset
    for p, begin in begins.items():
        # facts kept ahead of their clock: the state holds events past the clock's offset
        # (and time), so the partition waits until the input read again has passed them all
        if p in partitions and begin > out.offset.get(p, -1):
            out.held[p] = max(begin, out.held.get(p, -1))
    for unit_id, p in out.unit_partition.items():
        t = out.watermark.get(p)
        if t is not None and unit_id not in out.running:
            state = out.states.setdefault(unit_id, UnitState())
            out.running[unit_id] = UnitCounts(state, t, settle_tz)
    if out.held or out.orphans:
        log.info("changelogs behind one another (a crash): partitions %s wait for their input "
                 "read again, facts of %d units without a partition for their next event",
                 sorted(out.held), len(out.orphans))
    return out

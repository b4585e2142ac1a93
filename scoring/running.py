"""A unit's running counts at a moving T (``scoring.incremental`` says what each record adds).

The sums of the contributions per window are kept, so that a record whose facts changed is
re-evaluated alone, moving T re-evaluates only the records whose breakpoint has passed (a heap
of breakpoints), and reading the counts of a window costs O(indicators), not O(dossiers).

*Settling* (a live worker's option, ``settle_tz``): a dossier whose breakpoint is NEVER adds the
same to the counts at every later T until an event changes it (completed, withdrawn, overdue,
never received...): most of a year's dossiers. Its contribution then goes into a per-month
tally and the dossier leaves the state (its facts stay in the worker's store), so memory
follows the dossiers still in play, not the history. An event for a dossier that left must
first bring it back (``unsettle``, with its facts read from the store).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable

from scoring.facts import Dossier, Petition, Publication, UnitState
from scoring.incremental import (
    NOTHING,
    Entry,
    WindowSums,
    dossier_entry,
    petition_entry,
    publication_entry,
)
from scoring.indicators import NEVER, Counts
from scoring.timeutil import Window, WindowError, window_of

# Month of an instant, by its 15-minute slot: month boundaries fall on slot edges in today's
# time zones (a slot that holds one is never cached, so the answer stays exact in any zone).
# A rebuild settles millions of dossiers; the calendar itself costs ~10 us a call.
_SLOT = 900_000_000
_MONTHS: dict[str, dict[int, int]] = {}  # time zone -> slot -> month start

# A record re-scheduled or settled leaves its old heap entry behind (heapq cannot delete); on a
# year of history those stale entries outnumbered the live ones 50 to 1 and were half the
# scorer's memory. Rebuilding once they pass twice the live count keeps the cost amortised
# O(1) per push; the slack spares small units from rebuilding often.
HEAP_SLACK = 4096


def _month_start(us: int, tz: str) -> int | None:
    try:
        month = window_of("month", us, tz)
    except WindowError:
        return None  # out of the calendar's range: such a dossier stays tracked
    slot = us // _SLOT
    if month.start_us <= slot * _SLOT and (slot + 1) * _SLOT <= month.end_us:
        months = _MONTHS.setdefault(tz, {})
        if len(months) >= 400_000:  # ~11 years of slots
            months.clear()
        months[slot] = month.start_us
    return month.start_us


RecordKey = tuple[str, str]  # ("d", dossier_id) | ("p", petition_id) | ("pub", event_id)


class UnitCounts:
    """The running counts of one unit's ``UnitState`` at time T, for any number of windows.

    The caller folds events into the state itself (``scoring.facts.apply_event``) and then
    calls ``update(t, keys)`` with the record keys it touched; ``counts(window)`` equals
    ``count(state, window, t)``. T may move forward or back (back costs a rebuild).

    ``settle_tz`` (the windows' time zone): settle dossiers (module doc). Settled dossiers are
    deleted from ``state.dossiers`` by ``update``; before folding an event into a dossier that
    is not in the state, the caller asks its store and passes what it finds to ``unsettle``.
    T may then only move forward: the settled tallies cannot be rebuilt from the state.
    """

    __slots__ = ("state", "t", "entries", "heap", "windows", "settle_tz", "settled", "_months")

    def __init__(self, state: UnitState, t: int, settle_tz: str | None = None):
        self.state = state
        self.t = t
        self.entries: dict[RecordKey, Entry] = {}
        self.heap: list[tuple[int, str, str]] = []  # (breakpoint, kind, id); stale ones skipped
        self.windows: dict[str, WindowSums] = {}
        self.settle_tz = settle_tz
        # settled dossiers: month start -> how many add each (mask, procedure)
        self.settled: dict[int, Counter[tuple[int, str]]] = {}
        self._months = _MONTHS.setdefault(settle_tz or "", {})
        self._build()

    def _build(self) -> None:
        t, entries, heap = self.t, self.entries, self.heap
        entries.clear()
        heap.clear()
        self.windows = {name: WindowSums(sums.window) for name, sums in self.windows.items()}
        settling = self.settle_tz is not None
        gone: list[str] = []
        for kind, records, entry_of in (
            ("d", self.state.dossiers, dossier_entry),
            ("p", self.state.petitions, petition_entry),
            ("pub", self.state.publications, publication_entry),
        ):
            for ident, record in records.items():
                e = entry_of(record, t)  # type: ignore[arg-type]
                if e[3] == NEVER and settling and kind == "d" and self._settle(e):
                    gone.append(ident)
                    continue
                if not e[0] and e[3] == NEVER:
                    continue
                entries[(kind, ident)] = e
                if e[3] != NEVER:
                    heap.append((e[3], kind, ident))
        for ident in gone:
            del self.state.dossiers[ident]
        heapq.heapify(heap)
        for sums in self.windows.values():
            self._fill(sums)

    def admit(self, kind: str, ident: str, record: Dossier | Petition | Publication) -> None:
        """Add a record that is not in the state yet (a worker's rebuild from its store, one
        record at a time, so that settled dossiers never all sit in memory at once)."""
        if kind == "d":
            e = dossier_entry(record, self.t)  # type: ignore[arg-type]
            if e[3] == NEVER and self.settle_tz is not None and self._settle(e):
                self._add_to_windows(e, 1)
                return
            self.state.dossiers[ident] = record  # type: ignore[assignment]
        elif kind == "p":
            e = petition_entry(record, self.t)  # type: ignore[arg-type]
            self.state.petitions[ident] = record  # type: ignore[assignment]
        else:
            e = publication_entry(record, self.t)  # type: ignore[arg-type]
            self.state.publications[ident] = record  # type: ignore[assignment]
        if not e[0] and e[3] == NEVER:
            return
        self.entries[(kind, ident)] = e
        if e[3] != NEVER:
            heapq.heappush(self.heap, (e[3], kind, ident))
        self._add_to_windows(e, 1)

    def unsettle(self, ident: str, d: Dossier) -> None:
        """Bring back a settled dossier (its facts as the store holds them), before an event
        changes it: its contribution leaves the tally and is tracked again."""
        e = dossier_entry(d, self.t)
        if e[3] != NEVER:  # it never left with this breakpoint: the store and state disagree
            raise ValueError(f"dossier {ident[:80]!r} was not settled at {self.t}")
        self.state.dossiers[ident] = d
        if e[0]:
            start = self._month_of(e[2])
            tally = self.settled.get(start) if start is not None else None
            pair = (e[0], e[1])
            if tally is None or not tally.get(pair):
                raise ValueError(f"dossier {ident[:80]!r} is in no settled tally")
            tally[pair] -= 1
            if not tally[pair]:
                del tally[pair]
            self.entries[("d", ident)] = e

    def _month_of(self, us: int) -> int | None:
        start = self._months.get(us // _SLOT)
        return start if start is not None else _month_start(us, self.settle_tz or "")

    def _settle(self, e: Entry) -> bool:
        """Count a settled dossier's entry in its month's tally; False if it cannot be."""
        if not e[0]:
            return True  # counts nowhere, now or later
        start = self._month_of(e[2])
        if start is None:
            return False
        tally = self.settled.get(start)
        if tally is None:
            tally = self.settled[start] = Counter()
        tally[(e[0], e[1])] += 1
        return True

    def _add_to_windows(self, e: Entry, sign: int) -> None:
        if e[0]:
            for sums in self.windows.values():
                if sums.lo <= e[2] < sums.hi:
                    sums.add(e[0], e[1], sign)

    def _fill(self, sums: WindowSums) -> None:
        lo, hi = sums.lo, sums.hi
        # Records share few (mask, procedure) pairs: add each pair once, times its count
        # (a unit's first counts after a rebuild went over a million records bit by bit).
        pairs = Counter([(mask, proc) for mask, proc, anchor, _ in self.entries.values()
                         if mask and lo <= anchor < hi])
        if self.settled:
            tz = self.settle_tz or ""
            if (window_of("month", lo, tz).start_us != lo
                    or window_of("month", hi, tz).start_us != hi):
                raise ValueError(f"window {sums.window.name} is not made of months in {tz}")
            for start, tally in self.settled.items():
                if lo <= start < hi:
                    pairs.update(tally)
        for (mask, proc), n in pairs.items():
            sums.add(mask, proc, n)

    def _entry(self, kind: str, ident: str) -> Entry:
        if kind == "d":
            d = self.state.dossiers.get(ident)
            return NOTHING if d is None else dossier_entry(d, self.t)
        if kind == "p":
            p = self.state.petitions.get(ident)
            return NOTHING if p is None else petition_entry(p, self.t)
        b = self.state.publications.get(ident)
        return NOTHING if b is None else publication_entry(b, self.t)

    def _refresh(self, key: RecordKey) -> bool:
        """Re-evaluate one record at T; True if its contribution changed."""
        old = self.entries.get(key, NOTHING)
        new = self._entry(*key)
        settle = (new[3] == NEVER and self.settle_tz is not None and key[0] == "d"
                  and key[1] in self.state.dossiers)
        if new[3] != old[3] and new[3] != NEVER:
            heapq.heappush(self.heap, (new[3], key[0], key[1]))
        if not new[0] and new[3] == NEVER or settle:
            self.entries.pop(key, None)  # counts nowhere and never will by itself, or settles
        else:
            self.entries[key] = new
        changed = not (new[0] == old[0] and (not new[0] or new[1:3] == old[1:3]))
        if changed:
            if old[0] and new[0] and old[1:3] == new[1:3]:  # same windows: the bits that moved
                anchor, proc = new[2], new[1]
                gone, came = old[0] & ~new[0], new[0] & ~old[0]
                for sums in self.windows.values():
                    if sums.lo <= anchor < sums.hi:
                        if gone:
                            sums.add(gone, proc, -1)
                        if came:
                            sums.add(came, proc, 1)
            else:
                self._add_to_windows(old, -1)
                self._add_to_windows(new, 1)
        if settle:
            if self._settle(new):
                del self.state.dossiers[key[1]]
            else:
                self.entries[key] = new
        return changed

    def update(self, t: int, keys: Iterable[RecordKey] = ()) -> bool:
        """Move to time ``t`` and re-evaluate the records in ``keys`` (whose facts changed)
        and those whose breakpoint is at or before ``t``. True if any contribution changed."""
        if t < self.t:
            if self.settled:
                raise ValueError("settled counts cannot go back in time: rebuild them")
            self.t = t
            self._build()
            return True
        self.t = t
        changed = False
        for key in keys:
            changed |= self._refresh(key)
        heap, entries = self.heap, self.entries
        while heap and heap[0][0] <= t:
            at, kind, ident = heapq.heappop(heap)
            e = entries.get((kind, ident))
            if e is not None and e[3] == at:  # else stale: re-scheduled or gone since
                changed |= self._refresh((kind, ident))
        if len(heap) > 2 * len(entries) + HEAP_SLACK:
            heap[:] = [(e[3], k, i) for (k, i), e in entries.items() if e[3] != NEVER]
            heapq.heapify(heap)
        return changed

    def counts(self, window: Window) -> Counts:
        """``count(state, window, t)`` (values and items); ``next_change_us`` is the unit's
        earliest breakpoint after T."""
        return self.sums(window).counts(self.next_change())

    def sums(self, window: Window) -> WindowSums:
        """The sums kept for ``window`` (its counts without the ``Counts``), from now on."""
        sums = self.windows.get(window.name)
        if sums is None:
            sums = self.windows[window.name] = WindowSums(window)
            self._fill(sums)
        return sums

    def next_change(self) -> int:
        heap, entries = self.heap, self.entries
        while heap:
            at, kind, ident = heap[0]
            e = entries.get((kind, ident))
            if e is not None and e[3] == at:
                return at
            heapq.heappop(heap)
        return NEVER

    def keep_windows(self, names: Iterable[str]) -> None:
        """Stop maintaining the sums of windows not in ``names`` (e.g. last month's)."""
        keep = set(names)
        for name in [n for n in self.windows if n not in keep]:
            del self.windows[name]

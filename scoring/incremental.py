"""Running counts of one unit: ``scoring.indicators.count`` kept up to date incrementally.

``count(state, window, t)`` walks every dossier of a unit, which a live worker cannot afford
once per coalescing interval when a unit holds hundreds of thousands of dossiers. Here each
record (dossier, petition, publication) has a *contribution*: a bit mask of what it adds to the
counts at T (in D, synced, not late, ...) plus its procedure, and the time of its next
*breakpoint*, the earliest instant after T at which that contribution could change with no new
event (an open dossier passing its due time, or one of its own facts dated after T). The sums
of the contributions per window are kept, so that

* a record whose facts changed is re-evaluated (subtract the old contribution, add the new);
* moving T re-evaluates only the records whose breakpoint has passed (a heap of breakpoints);
* reading the counts of a window costs O(indicators), not O(dossiers).

The result equals ``count(state, window, t)`` exactly (values and items; a property test checks
it on random event sequences with advancing T). Pure: no faust, no wall clock.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable

from scoring import facts
from scoring.facts import Dossier, Petition, Publication, UnitState
from scoring.indicators import NEVER, Counts, dossier_due, latest_rating
from scoring.timeutil import Window

# --- contribution bits ----------------------------------------------------------------------
# dossiers (D = received at or before T, not withdrawn at or before T)
D_IN = 1 << 0
D_SYNCED = 1 << 1
D_NOT_LATE = 1 << 2
D_SATISFIED = 1 << 3  # not late and latest rating not "dissatisfied"
D_ONLINE = 1 << 4
D_ELIGIBLE = 1 << 5
D_ELIGIBLE_ONLINE = 1 << 6
D_ELIGIBLE_FULL = 1 << 7  # eligible, online and full_online
D_FEE = 1 << 8
D_FEE_PAID = 1 << 9
D_COMPLETED = 1 << 10
D_E_RESULT = 1 << 11
D_DIGITIZED = 1 << 12
D_REUSED = 1 << 13
D_PDS = 1 << 14
D_POPDB = 1 << 15
# petitions (received at or before T)
P_IN = 1 << 16
P_ON_TIME = 1 << 17
P_RATED = 1 << 18
P_RATED_OK = 1 << 19
# publications (published at or before T)
B_IN = 1 << 20
B_ANNOUNCED = 1 << 21
B_PUBLICIZED = 1 << 22
B_COMPLETE = 1 << 23
N_BITS = 24

# bits whose procedure is counted as a distinct procedure_id (set-valued indicators)
PROC_BITS = (D_ELIGIBLE, D_ELIGIBLE_ONLINE, D_FEE, D_FEE_PAID)
_PROC_INDEX = {bit: i for i, bit in enumerate(PROC_BITS)}
_PROC_MASK = D_ELIGIBLE | D_ELIGIBLE_ONLINE | D_FEE | D_FEE_PAID
_BIT_INDEX = {1 << i: i for i in range(N_BITS)}

# A record's entry: (mask, procedure_id, anchor, breakpoint). ``anchor`` is the instant that
# places the record in a window (received, or published); mask 0 means it counts nowhere.
Entry = tuple[int, str, int, int]
_NOTHING: Entry = (0, "", 0, NEVER)


def _later(ts: int | None, t: int, best: int) -> int:
    return ts if ts is not None and t < ts < best else best


def _flag_mask(flags: int) -> int:
    """The bits that a dossier's boolean fields alone decide."""
    m = 0
    if flags & facts.ONLINE:
        m |= D_ONLINE
    if flags & facts.ONLINE_ELIGIBLE:
        m |= D_ELIGIBLE
        if flags & facts.ONLINE:
            m |= D_ELIGIBLE_ONLINE
            if flags & facts.FULL_ONLINE:
                m |= D_ELIGIBLE_FULL
    if flags & facts.FEE_REQUIRED:
        m |= D_FEE
    if flags & facts.REUSED_DATA:
        m |= D_REUSED
    if flags & facts.PDS_LINKED:
        m |= D_PDS
    if flags & facts.POPULATION_DB:
        m |= D_POPDB
    return m


# by Dossier.flags: one look-up instead of a dozen property reads per dossier (a rebuild
# evaluates every dossier in state)
_ALL_FLAGS = facts.E_RESULT * 2 - 1
_FLAG_MASKS = [_flag_mask(flags) for flags in range(_ALL_FLAGS + 1)]


def dossier_entry(d: Dossier, t: int) -> Entry:
    """What one dossier adds to the counts at T, and when that can next change by itself."""
    received = d.received_ts
    if received is None:
        return _NOTHING  # held facts: nothing counts until received arrives (a new event)
    completed = d.completed_ts
    # facts dated after T: each is a breakpoint (never the case live, where T is the watermark)
    nxt = received if received > t else NEVER
    for ts in (d.withdrawn, d.synced, d.digitized, d.paid_online, completed):  # inlined _later
        if ts is not None and t < ts < nxt:
            nxt = ts
    if d.supplements:
        for ts, _ in d.supplements.values():
            nxt = _later(ts, t, nxt)
    if d.ratings:
        for ts, _ in d.ratings.values():
            nxt = _later(ts, t, nxt)
    if received > t or (d.withdrawn is not None and d.withdrawn <= t):
        return (0, "", received, nxt)
    flags = d.flags
    m = D_IN | _FLAG_MASKS[flags & _ALL_FLAGS]
    if d.synced is not None and d.synced <= t:
        m |= D_SYNCED
    due, supplements = dossier_due(d, t) if d.supplements else (d.due, 0)
    done = completed is not None and completed <= t
    if supplements >= 2:
        late = True
    elif done:
        late = completed > due  # type: ignore[operator]
    else:
        late = t > due
        if not late and due + 1 < nxt:
            nxt = due + 1
    if not late:
        m |= D_NOT_LATE
        if latest_rating(d.ratings, t) != "dissatisfied":
            m |= D_SATISFIED
    if flags & facts.FEE_REQUIRED and d.paid_online is not None and d.paid_online <= t:
        m |= D_FEE_PAID
    if done:
        m |= D_COMPLETED
        if flags & facts.E_RESULT:
            m |= D_E_RESULT
    if d.digitized is not None and d.digitized <= t:
        m |= D_DIGITIZED
    return (m, d.procedure_id, received, nxt)


def petition_entry(p: Petition, t: int) -> Entry:
    r = p.received
    if r is None:
        return _NOTHING
    nxt = _later(r[0], t, NEVER)
    nxt = _later(p.resolved, t, nxt)
    if p.ratings:
        for ts, _ in p.ratings.values():
            nxt = _later(ts, t, nxt)
    if r[0] > t:
        return (0, "", r[0], nxt)
    m = P_IN
    if p.resolved is not None and p.resolved <= t:
        if p.resolved <= p.due:
            m |= P_ON_TIME
    elif t <= p.due:
        m |= P_ON_TIME
        if p.due + 1 < nxt:
            nxt = p.due + 1
    rating = latest_rating(p.ratings, t)
    if rating is not None:
        m |= P_RATED
        if rating != "dissatisfied":
            m |= P_RATED_OK
    return (m, "", r[0], nxt)


def publication_entry(b: Publication, t: int) -> Entry:
    if b.ts > t:
        return (0, "", b.ts, b.ts)
    m = B_IN
    if b.announced_on_time:
        m |= B_ANNOUNCED
    if b.publicized_on_time:
        m |= B_PUBLICIZED
    if b.complete:
        m |= B_COMPLETE
    return (m, "", b.ts, NEVER)


class WindowSums:
    """Sums of the contributions anchored in one window: a count per bit, and per procedure
    bit a count per procedure_id (a distinct-procedure indicator counts its keys)."""

    __slots__ = ("window", "lo", "hi", "bits", "procs")

    def __init__(self, window: Window):
        self.window = window
        self.lo, self.hi = window.start_us, window.end_us
        self.bits = [0] * N_BITS
        self.procs: list[dict[str, int]] = [{} for _ in PROC_BITS]

    def add(self, mask: int, proc: str, sign: int) -> None:
        bits = self.bits
        while mask:
            low = mask & -mask
            bits[_BIT_INDEX[low]] += sign
            if low & _PROC_MASK:
                per = self.procs[_PROC_INDEX[low]]
                n = per.get(proc, 0) + sign
                if n:
                    per[proc] = n
                else:
                    del per[proc]
            mask ^= low

    def counts(self, next_change: int) -> Counts:
        c = self.bits
        n_d = c[0]
        eligible, eligible_online, fee, fee_paid = (len(p) for p in self.procs)

        def n(bit: int) -> int:
            return c[_BIT_INDEX[bit]]

        n_pub = n(B_IN)
        n_pet = n(P_IN)
        values = {
            "announced_on_time": (n(B_ANNOUNCED), n_pub),
            "publicized_on_time": (n(B_PUBLICIZED), n_pub),
            "content_complete": (n(B_COMPLETE), n_pub),
            "dossier_synced": (n(D_SYNCED), n_d),
            "on_time": (n(D_NOT_LATE), n_d),
            "online_submission": (n(D_ONLINE), n_d),
            "online_uptake": (eligible_online, eligible),
            "full_online": (n(D_ELIGIBLE_FULL), n(D_ELIGIBLE)),
            "paid_online": (n(D_FEE_PAID), n(D_FEE)),
            "online_payment_procedures": (fee_paid, fee),
            "e_result": (n(D_E_RESULT), n(D_COMPLETED)),
            "digitized": (n(D_DIGITIZED), n_d),
            "data_reused": (n(D_REUSED), n_d),
            "pds_linked": (n(D_PDS), n_d),
            "population_db": (n(D_POPDB), n_d),
            "petitions_on_time": (n(P_ON_TIME), n_pet),
            "petition_satisfaction": (n(P_RATED_OK), n(P_RATED)),
            "dossier_satisfaction": (n(D_SATISFIED), n_d),
        }
        return Counts(values, n_d + n_pet + n_pub, next_change)


RecordKey = tuple[str, str]  # ("d", dossier_id) | ("p", petition_id) | ("pub", event_id)


class UnitCounts:
    """The running counts of one unit's ``UnitState`` at time T, for any number of windows.

    The caller folds events into the state itself (``scoring.facts.apply_event``) and then
    calls ``update(t, keys)`` with the record keys it touched; ``counts(window)`` equals
    ``count(state, window, t)``. T may move forward or back (back costs a rebuild).
    """

    __slots__ = ("state", "t", "entries", "heap", "windows")

    def __init__(self, state: UnitState, t: int):
        self.state = state
        self.t = t
        self.entries: dict[RecordKey, Entry] = {}
        self.heap: list[tuple[int, str, str]] = []  # (breakpoint, kind, id); stale ones skipped
        self.windows: dict[str, WindowSums] = {}
        self._build()

    def _build(self) -> None:
        t, entries, heap = self.t, self.entries, self.heap
        entries.clear()
        heap.clear()
        self.windows = {name: WindowSums(sums.window) for name, sums in self.windows.items()}
        for kind, records, entry_of in (
            ("d", self.state.dossiers, dossier_entry),
            ("p", self.state.petitions, petition_entry),
            ("pub", self.state.publications, publication_entry),
        ):
            for ident, record in records.items():
                e = entry_of(record, t)  # type: ignore[arg-type]
                if not e[0] and e[3] == NEVER:
                    continue
                entries[(kind, ident)] = e
                if e[3] != NEVER:
                    heap.append((e[3], kind, ident))
        heapq.heapify(heap)
        for sums in self.windows.values():
            self._fill(sums)

    def _fill(self, sums: WindowSums) -> None:
        lo, hi = sums.lo, sums.hi
        # Records share few (mask, procedure) pairs: add each pair once, times its count
        # (a unit's first counts after a rebuild went over a million records bit by bit).
        pairs = Counter([(mask, proc) for mask, proc, anchor, _ in self.entries.values()
                         if mask and lo <= anchor < hi])
        for (mask, proc), n in pairs.items():
            sums.add(mask, proc, n)

    def _entry(self, kind: str, ident: str) -> Entry:
        if kind == "d":
            d = self.state.dossiers.get(ident)
            return _NOTHING if d is None else dossier_entry(d, self.t)
        if kind == "p":
            p = self.state.petitions.get(ident)
            return _NOTHING if p is None else petition_entry(p, self.t)
        b = self.state.publications.get(ident)
        return _NOTHING if b is None else publication_entry(b, self.t)

    def _refresh(self, key: RecordKey) -> bool:
        """Re-evaluate one record at T; True if its contribution changed."""
        old = self.entries.get(key, _NOTHING)
        new = self._entry(*key)
        if new[3] != old[3] and new[3] != NEVER:
            heapq.heappush(self.heap, (new[3], key[0], key[1]))
        if not new[0] and new[3] == NEVER:
            self.entries.pop(key, None)  # counts nowhere, and never will by itself
        else:
            self.entries[key] = new
        if new[0] == old[0] and (not new[0] or new[1:3] == old[1:3]):
            return False
        for sums in self.windows.values():
            if old[0] and sums.lo <= old[2] < sums.hi:
                sums.add(old[0], old[1], -1)
            if new[0] and sums.lo <= new[2] < sums.hi:
                sums.add(new[0], new[1], 1)
        return True

    def update(self, t: int, keys: Iterable[RecordKey] = ()) -> bool:
        """Move to time ``t`` and re-evaluate the records in ``keys`` (whose facts changed)
        and those whose breakpoint is at or before ``t``. True if any contribution changed."""
        if t < self.t:
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
        return changed

    def counts(self, window: Window) -> Counts:
        """``count(state, window, t)`` (values and items); ``next_change_us`` is the unit's
        earliest breakpoint after T."""
        sums = self.windows.get(window.name)
        if sums is None:
            sums = self.windows[window.name] = WindowSums(window)
            self._fill(sums)
        return sums.counts(self.next_change())

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

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

``scoring.running.UnitCounts`` keeps these sums; the result equals ``count(state, window, t)``
exactly (values and items; a property test checks it on random event sequences with advancing
T). Pure: no faust, no wall clock.
"""

from __future__ import annotations

from scoring import facts
from scoring.facts import Dossier, Petition, Publication
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
# ``WindowSums.pairs`` unpacks the bits in this order
_BIT_ORDER = (D_IN, D_SYNCED, D_NOT_LATE, D_SATISFIED, D_ONLINE, D_ELIGIBLE, D_ELIGIBLE_ONLINE,
              D_ELIGIBLE_FULL, D_FEE, D_FEE_PAID, D_COMPLETED, D_E_RESULT, D_DIGITIZED,
              D_REUSED, D_PDS, D_POPDB, P_IN, P_ON_TIME, P_RATED, P_RATED_OK, B_IN, B_ANNOUNCED,
              B_PUBLICIZED, B_COMPLETE)
if tuple(1 << i for i in range(N_BITS)) != _BIT_ORDER:
    raise AssertionError("contribution bits out of order")
# the counts of ``WindowSums.pairs``, in its order
COUNT_IDS = ("announced_on_time", "publicized_on_time", "content_complete", "dossier_synced",
             "on_time", "online_submission", "online_uptake", "full_online", "paid_online",
             "online_payment_procedures", "e_result", "digitized", "data_reused", "pds_linked",
             "population_db", "petitions_on_time", "petition_satisfaction",
             "dossier_satisfaction")
# what ``Counts.items`` adds: dossiers in D, petitions, publications (their bits' places)
_ITEM_BITS = tuple(bit.bit_length() - 1 for bit in (D_IN, P_IN, B_IN))

# A record's entry: (mask, procedure_id, anchor, breakpoint). ``anchor`` is the instant that
# places the record in a window (received, or published); mask 0 means it counts nowhere.
Entry = tuple[int, str, int, int]
NOTHING: Entry = (0, "", 0, NEVER)


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
        return NOTHING  # held facts: nothing counts until received arrives (a new event)
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
        return NOTHING
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


# A mask's bit indexes and procedure-bit indexes, once per distinct mask: every record's
# contribution goes through ``WindowSums.add`` (twice when it changes), and walking the bits
# one by one was the largest cost of a replay's timeline. Records share few masks.
_SPLIT: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
_SPLIT_KEPT = 65_536


def _split(mask: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    bit_indexes = tuple(i for i in range(N_BITS) if mask >> i & 1)
    proc_indexes = tuple(_PROC_INDEX[1 << i] for i in bit_indexes if (1 << i) & _PROC_MASK)
    if len(_SPLIT) >= _SPLIT_KEPT:
        _SPLIT.clear()
    found = _SPLIT[mask] = (bit_indexes, proc_indexes)
    return found


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
        found = _SPLIT.get(mask)
        if found is None:
            found = _split(mask)
        bit_indexes, proc_indexes = found
        bits = self.bits
        for i in bit_indexes:
            bits[i] += sign
        for j in proc_indexes:
            per = self.procs[j]
            n = per.get(proc, 0) + sign
            if n:
                per[proc] = n
            else:
                del per[proc]

    def pairs(self) -> tuple[tuple[int, int], ...]:
        """(num, den) of each count, in ``COUNT_IDS`` order (``counts`` without the dict: a
        replay's timeline totals hundreds of thousands of them)."""
        # the bits in their order (``_BIT_ORDER``): one unpacking, no look-up per indicator
        (n_d, synced, not_late, satisfied, online, eligible, _, eligible_full, fee, fee_paid,
         completed, e_result, digitized, reused, pds, popdb, n_pet, pet_on_time, pet_rated,
         pet_rated_ok, n_pub, announced, publicized, complete) = self.bits
        eligible_procs, eligible_online_procs, fee_procs, fee_paid_procs = (
            len(p) for p in self.procs)
        return ((announced, n_pub), (publicized, n_pub), (complete, n_pub), (synced, n_d),
                (not_late, n_d), (online, n_d), (eligible_online_procs, eligible_procs),
                (eligible_full, eligible), (fee_paid, fee), (fee_paid_procs, fee_procs),
                (e_result, completed), (digitized, n_d), (reused, n_d), (pds, n_d),
                (popdb, n_d), (pet_on_time, n_pet), (pet_rated_ok, pet_rated),
                (satisfied, n_d))

    def items(self) -> int:
        """Dossiers in D + petitions + publications (``Counts.items``)."""
        bits = self.bits
        d, p, b = _ITEM_BITS
        return bits[d] + bits[p] + bits[b]

    def counts(self, next_change: int) -> Counts:
        return Counts(dict(zip(COUNT_IDS, self.pairs(), strict=True)), self.items(),
                      next_change)

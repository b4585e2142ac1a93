"""What each indicator counts: numerators and denominators of one unit in a window at time T.

This is SPEC section 3 "Dossier facts at T", "Petition facts at T" and the indicator table.
It also returns the earliest later instant at which the counts could change with no new event
(an open dossier or petition passing its due time), so a live worker can skip re-scoring a
quiet unit until then.
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring.facts import Dossier, Petition, UnitState
from scoring.timeutil import Window

KNOWN_INDICATORS = (
    "announced_on_time",
    "publicized_on_time",
    "content_complete",
    "dossier_synced",
    "on_time",
    "online_submission",
    "online_uptake",
    "full_online",
    "paid_online",
    "online_payment_procedures",
    "e_result",
    "digitized",
    "data_reused",
    "pds_linked",
    "population_db",
    "petitions_on_time",
    "petition_satisfaction",
    "dossier_satisfaction",
)

NEVER = 2**62


@dataclass(slots=True)
class Counts:
    """num/den per indicator id; ``items`` = dossiers in D + petitions + publications."""

    values: dict[str, tuple[int, int]]
    items: int
    # earliest instant > T at which counts change with no new event, assuming the state holds
    # no fact later than T (true live, where T is the watermark of the unit's partition)
    next_change_us: int


def dossier_due(d: Dossier, t: int) -> tuple[int, int]:
    """(due, supplements) at T: due is the new_due_at of the latest supplement that has one."""
    if not d.supplements:
        return d.due, 0
    due, n, latest = d.due, 0, None
    for eid, (ts, new_due) in d.supplements.items():
        if ts > t:
            continue
        n += 1
        if new_due is not None and (latest is None or (ts, eid) > latest):
            latest, due = (ts, eid), new_due
    return due, n


def latest_rating(ratings: dict[str, tuple[int, str]] | None, t: int) -> str | None:
    if not ratings:
        return None
    best: tuple[int, str] | None = None
    value = None
    for eid, (ts, rating) in ratings.items():
        if ts <= t and (best is None or (ts, eid) > best):
            best, value = (ts, eid), rating
    return value


def dossier_is_late(d: Dossier, t: int) -> bool:
    due, supplements = dossier_due(d, t)
    if supplements >= 2:
        return True
    if d.completed is not None and d.completed[0] <= t:
        return d.completed[0] > due
    return t > due


def dossiers_in(state: UnitState, window: Window, t: int) -> list[tuple[str, Dossier]]:
    """D: dossiers received in the window at or before T, not withdrawn at or before T."""
    out = []
    lo, hi = window.start_us, window.end_us
    for dossier_id, d in state.dossiers.items():
        r = d.received_ts  # not ``d.received``: a tuple per dossier, for every unit, each score
        if r is None or r > t or not lo <= r < hi:
            continue
        if d.withdrawn is not None and d.withdrawn <= t:
            continue
        out.append((dossier_id, d))
    return out


def petitions_in(state: UnitState, window: Window, t: int) -> list[tuple[str, Petition]]:
    lo, hi = window.start_us, window.end_us
    return [
        (pid, p)
        for pid, p in state.petitions.items()
        if p.received is not None and p.received[0] <= t and lo <= p.received[0] < hi
    ]


def count(state: UnitState, window: Window, t: int) -> Counts:
    """Numerators and denominators of every known indicator for one unit."""
    n_d = synced = not_late = online = digitized = reused = pds = popdb = 0
    eligible = eligible_online_full = 0
    fee = fee_paid = completed = e_result = satisfied = 0
    eligible_procs: set[str] = set()
    eligible_procs_online: set[str] = set()
    fee_procs: set[str] = set()
    fee_procs_paid: set[str] = set()
    next_change = NEVER

    for _, d in dossiers_in(state, window, t):
        n_d += 1
        if d.synced is not None and d.synced <= t:
            synced += 1
        due, supplements = dossier_due(d, t)
        done = d.completed is not None and d.completed[0] <= t
        if supplements >= 2:
            late = True
        elif done:
            late = d.completed[0] > due  # type: ignore[index]
        else:
            late = t > due
            if not late and due + 1 < next_change:
                next_change = due + 1
        if not late:
            not_late += 1
            if latest_rating(d.ratings, t) != "dissatisfied":
                satisfied += 1
        if d.online:
            online += 1
        if d.online_eligible:
            eligible += 1
            eligible_procs.add(d.procedure_id)
            if d.online:
                eligible_procs_online.add(d.procedure_id)
                if d.full_online:
                    eligible_online_full += 1
        if d.fee_required:
            fee += 1
            fee_procs.add(d.procedure_id)
            if d.paid_online is not None and d.paid_online <= t:
                fee_paid += 1
                fee_procs_paid.add(d.procedure_id)
        if done:
            completed += 1
            if d.e_result:
                e_result += 1
        if d.digitized is not None and d.digitized <= t:
            digitized += 1
        reused += d.reused_data
        pds += d.pds_linked
        popdb += d.population_db

    petitions = petitions_in(state, window, t)
    p_on_time = rated = rated_ok = 0
    for _, p in petitions:
        if p.resolved is not None and p.resolved <= t:
            p_on_time += p.resolved <= p.due
        elif t <= p.due:
            p_on_time += 1
            if p.due + 1 < next_change:
                next_change = p.due + 1
        rating = latest_rating(p.ratings, t)
        if rating is not None:
            rated += 1
            rated_ok += rating != "dissatisfied"

    lo, hi = window.start_us, window.end_us
    pubs = [p for p in state.publications.values() if p.ts <= t and lo <= p.ts < hi]
    n_pub = len(pubs)
    values = {
        "announced_on_time": (sum(p.announced_on_time for p in pubs), n_pub),
        "publicized_on_time": (sum(p.publicized_on_time for p in pubs), n_pub),
        "content_complete": (sum(p.complete for p in pubs), n_pub),
        "dossier_synced": (synced, n_d),
        "on_time": (not_late, n_d),
        "online_submission": (online, n_d),
        "online_uptake": (len(eligible_procs_online), len(eligible_procs)),
        "full_online": (eligible_online_full, eligible),
        "paid_online": (fee_paid, fee),
        "online_payment_procedures": (len(fee_procs_paid), len(fee_procs)),
        "e_result": (e_result, completed),
        "digitized": (digitized, n_d),
        "data_reused": (reused, n_d),
        "pds_linked": (pds, n_d),
        "population_db": (popdb, n_d),
        "petitions_on_time": (p_on_time, len(petitions)),
        "petition_satisfaction": (rated_ok, rated),
        "dossier_satisfaction": (satisfied, n_d),
    }
    return Counts(values, n_d + len(petitions) + n_pub, next_change)

"""Dossier, petition and publication facts of one unit, folded from events.

State is a fold over events that is commutative and idempotent per event: every field keeps
either a minimum, a maximum or a set keyed by event id, so arrival order and exact repeats never
change it. That is what lets the live pipeline, offline ``bando score`` and audit replay agree.
A fact about a dossier whose ``received`` has not been seen is simply *held* in the record
(``received`` is None) and starts to count when ``received`` arrives.

Ties on the same instant are broken by event id, so "latest" and "earliest" stay well defined.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scoring.events import Event

# (ts, event_id) orders facts on the same instant deterministically.
Stamp = tuple[int, str]


# Dossier.flags: the booleans of the winning ``received`` and the ``e_result`` of the earliest
# ``completed``, one bit each (0..255 are shared small ints in CPython: no per-dossier object).
ONLINE = 1
ONLINE_ELIGIBLE = 2
FULL_ONLINE = 4
FEE_REQUIRED = 8
REUSED_DATA = 16
PDS_LINKED = 32
POPULATION_DB = 64
E_RESULT = 128
FLAG_NAMES = {
    "online": ONLINE,
    "online_eligible": ONLINE_ELIGIBLE,
    "full_online": FULL_ONLINE,
    "fee_required": FEE_REQUIRED,
    "reused_data": REUSED_DATA,
    "pds_linked": PDS_LINKED,
    "population_db": POPULATION_DB,
    "e_result": E_RESULT,
}
_RECEIVED_FLAGS = E_RESULT - 1
_FLAG_KEYS = frozenset(FLAG_NAMES)


def _flag(bit: int) -> property:
    return property(lambda d: d.flags & bit != 0, doc=f"flag bit {bit} of ``flags``")


class Dossier:
    """The facts of one dossier, laid out for a small footprint (millions are held at once).

    Stored: the winning ``received`` as ``received_ts`` + ``received_id`` (its event id breaks
    ties on the same instant), its fields (``procedure_id`` interned, ``due``, booleans in
    ``flags``), the earliest ``completed`` the same way, the earliest instants of the other
    facts, and supplements/ratings (None until there is one). ``received``, ``completed`` and
    the booleans (``online``, ``e_result``, ...) are read-only views with the old meaning.
    """

    __slots__ = (
        "received_ts",
        "received_id",
        "procedure_id",
        "due",
        "flags",
        "digitized",
        "synced",
        "paid_online",
        "completed_ts",
        "completed_id",
        "withdrawn",
        "supplements",
        "ratings",
    )

    def __init__(self) -> None:
        self.received_ts: int | None = None
        self.received_id = ""
        self.procedure_id = ""
        self.due = 0
        self.flags = 0
        self.digitized: int | None = None  # earliest digitized event
        self.synced: int | None = None
        self.paid_online: int | None = None
        self.completed_ts: int | None = None
        self.completed_id = ""
        self.withdrawn: int | None = None
        # supplements: event_id -> (ts, new_due or None); dict keeps repeats idempotent
        self.supplements: dict[str, tuple[int, int | None]] | None = None
        self.ratings: dict[str, tuple[int, str]] | None = None  # event_id -> (ts, rating)

    @property
    def received(self) -> Stamp | None:
        ts = self.received_ts
        return None if ts is None else (ts, self.received_id)

    @property
    def completed(self) -> Stamp | None:
        ts = self.completed_ts
        return None if ts is None else (ts, self.completed_id)

    online = _flag(ONLINE)
    online_eligible = _flag(ONLINE_ELIGIBLE)
    full_online = _flag(FULL_ONLINE)
    fee_required = _flag(FEE_REQUIRED)
    reused_data = _flag(REUSED_DATA)
    pds_linked = _flag(PDS_LINKED)
    population_db = _flag(POPULATION_DB)
    e_result = _flag(E_RESULT)

    def to_dict(self) -> dict:
        """Changelog form: only the facts that are set, booleans as ``flags`` (FLAG_NAMES)."""
        out: dict = {}
        if self.received_ts is not None:
            out["received"] = [self.received_ts, self.received_id]
            out["procedure_id"] = self.procedure_id
            out["due"] = self.due
        if self.flags:
            out["flags"] = self.flags
        for name in ("digitized", "synced", "paid_online", "withdrawn"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.completed_ts is not None:
            out["completed"] = [self.completed_ts, self.completed_id]
        if self.supplements:
            out["supplements"] = {k: list(v) for k, v in self.supplements.items()}
        if self.ratings:
            out["ratings"] = {k: list(v) for k, v in self.ratings.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Dossier:
        """Reads ``to_dict`` output, and the older form (every slot, booleans by name)."""
        d = cls()
        if data.get("received") is not None:
            d.received_ts, d.received_id = data["received"][0], data["received"][1]
        if data.get("completed") is not None:
            d.completed_ts, d.completed_id = data["completed"][0], data["completed"][1]
        if data.get("procedure_id"):
            d.procedure_id = sys.intern(data["procedure_id"])
        d.due = data.get("due") or 0
        flags = data.get("flags") or 0
        if not _FLAG_KEYS.isdisjoint(data):  # the older form (a rebuild reads millions)
            for name, bit in FLAG_NAMES.items():
                if data.get(name):
                    flags |= bit
        d.flags = flags
        d.digitized = data.get("digitized")
        d.synced = data.get("synced")
        d.paid_online = data.get("paid_online")
        d.withdrawn = data.get("withdrawn")
        if data.get("supplements"):
            d.supplements = {k: (v[0], v[1]) for k, v in data["supplements"].items()}
        if data.get("ratings"):
            d.ratings = {k: (v[0], _RATINGS.get(v[1], v[1])) for k, v in data["ratings"].items()}
        return d


class Petition:
    __slots__ = ("received", "due", "resolved", "ratings")

    def __init__(self) -> None:
        self.received: Stamp | None = None
        self.due = 0
        self.resolved: int | None = None
        self.ratings: dict[str, tuple[int, str]] | None = None

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict) -> Petition:
        p = cls()
        if data.get("received") is not None:
            p.received = (data["received"][0], data["received"][1])
        p.due = data.get("due", 0)
        p.resolved = data.get("resolved")
        if data.get("ratings"):
            p.ratings = {k: (v[0], v[1]) for k, v in data["ratings"].items()}
        return p


@dataclass(slots=True)
class Publication:
    ts: int
    announced_on_time: bool
    publicized_on_time: bool
    complete: bool


@dataclass(slots=True)
class UnitState:
    dossiers: dict[str, Dossier] = field(default_factory=dict)
    petitions: dict[str, Petition] = field(default_factory=dict)
    publications: dict[str, Publication] = field(default_factory=dict)  # by event_id


def _min(current: int | None, ts: int) -> int:
    return ts if current is None or ts < current else current


# Deadlines cluster (17:00 of a working day), so equal ``due`` values share one int object.
_DUES: dict[int, int] = {}
_RATINGS = {r: r for r in ("satisfied", "neutral", "dissatisfied")}  # one str object each


# The dossier folds, one per event type. They take the event's fields rather than an ``Event``
# so that the offline load's generated per-type code (``bando.fastload``) can call them
# straight from its own variables: these functions stay the only statement of the rules.
# ``times``: the event's other parsed timestamps (``Event.times``).
DossierFold = Callable[[Dossier, int, str, dict[str, Any], Mapping[str, int]], None]


def _received(d: Dossier, ts: int, eid: str, body: dict, times: Mapping[str, int]) -> None:
    current = d.received_ts
    if current is None or ts < current or (ts == current and eid < d.received_id):
        d.received_ts, d.received_id = ts, eid
        d.procedure_id = sys.intern(body["procedure_id"])
        due = times["due_at"]
        if len(_DUES) >= 100_000:
            _DUES.clear()
        d.due = _DUES.setdefault(due, due)
        d.flags = (
            (d.flags & E_RESULT)
            | (body["channel"] == "online")
            | body["online_eligible"] << 1
            | body["full_online"] << 2
            | body["fee_required"] << 3
            | body["reused_data"] << 4
            | body["pds_linked"] << 5
            | body["population_db"] << 6
        )


def _digitized(d: Dossier, ts: int, eid: str, body: dict, times: Mapping[str, int]) -> None:
    if d.digitized is None or ts < d.digitized:
        d.digitized = ts


def _synced(d: Dossier, ts: int, eid: str, body: dict, times: Mapping[str, int]) -> None:
    if d.synced is None or ts < d.synced:
        d.synced = ts


def _paid(d: Dossier, ts: int, eid: str, body: dict, times: Mapping[str, int]) -> None:
    if body["online"] and (d.paid_online is None or ts < d.paid_online):
        d.paid_online = ts


def _supplement_requested(
    d: Dossier, ts: int, eid: str, body: dict, times: Mapping[str, int]
) -> None:
    if d.supplements is None:
        d.supplements = {}
    d.supplements[eid] = (ts, times.get("new_due_at"))


def _completed(d: Dossier, ts: int, eid: str, body: dict, times: Mapping[str, int]) -> None:
    current = d.completed_ts
    if current is None or ts < current or (ts == current and eid < d.completed_id):
        d.completed_ts, d.completed_id = ts, eid
        flags = d.flags & _RECEIVED_FLAGS
        d.flags = flags | E_RESULT if body["e_result"] else flags


def _withdrawn(d: Dossier, ts: int, eid: str, body: dict, times: Mapping[str, int]) -> None:
    if d.withdrawn is None or ts < d.withdrawn:
        d.withdrawn = ts


def _rated(d: Dossier, ts: int, eid: str, body: dict, times: Mapping[str, int]) -> None:
    if d.ratings is None:
        d.ratings = {}
    rating = body["rating"]
    d.ratings[eid] = (ts, _RATINGS.get(rating, rating))


DOSSIER_FOLDS: dict[str, DossierFold] = {  # read-only
    "dossier.received": _received,
    "dossier.digitized": _digitized,
    "dossier.synced": _synced,
    "dossier.paid": _paid,
    "dossier.supplement_requested": _supplement_requested,
    "dossier.completed": _completed,
    "dossier.withdrawn": _withdrawn,
    "dossier.rated": _rated,
}


def apply_dossier(d: Dossier, event: Event) -> None:
    """Fold one dossier event into its record (mutates ``d``; idempotent, commutative)."""
    fold = DOSSIER_FOLDS.get(event.type)
    if fold is not None:
        fold(d, event.ts, event.event_id, event.body, event.times)


def apply_petition(p: Petition, event: Event) -> None:
    t, ts = event.type, event.ts
    if t == "petition.received":
        stamp = (ts, event.event_id)
        if p.received is None or stamp < p.received:
            p.received = stamp
            p.due = event.times["due_at"]
    elif t == "petition.resolved":
        p.resolved = _min(p.resolved, ts)
    elif t == "petition.rated":
        if p.ratings is None:
            p.ratings = {}
        p.ratings[event.event_id] = (ts, event.body["rating"])


def fact_key(event: Event) -> tuple[str, str] | None:
    """Which record an event folds into: ("d", dossier_id), ("p", petition_id),
    ("pub", event_id), or None for events that carry no fact (ticks)."""
    t = event.type
    if t.startswith("dossier."):
        return ("d", event.body["dossier_id"])
    if t.startswith("petition."):
        return ("p", event.body["petition_id"])
    if t == "procedure.published":
        return ("pub", event.event_id)
    return None


def apply_event(state: UnitState, event: Event) -> tuple[str, str] | None:
    """Fold an accepted event into its unit's state; returns the fact key it touched."""
    fold = DOSSIER_FOLDS.get(event.type)
    if fold is not None:
        ident = event.body["dossier_id"]
        d = state.dossiers.get(ident)
        if d is None:
            d = state.dossiers[ident] = Dossier()
        fold(d, event.ts, event.event_id, event.body, event.times)
        return ("d", ident)
    key = fact_key(event)
    if key is None:
        return None
    kind, ident = key
    if kind == "p":
        p = state.petitions.get(ident)
        if p is None:
            p = state.petitions[ident] = Petition()
        apply_petition(p, event)
    else:
        b = event.body
        state.publications[ident] = Publication(
            event.ts, b["announced_on_time"], b["publicized_on_time"], b["complete"]
        )
    return key

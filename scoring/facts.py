"""Dossier, petition and publication facts of one unit, folded from events.

State is a fold over events that is commutative and idempotent per event: every field keeps
either a minimum, a maximum or a set keyed by event id, so arrival order and exact repeats never
change it. That is what lets the live pipeline, offline ``bando score`` and audit replay agree.
A fact about a dossier whose ``received`` has not been seen is simply *held* in the record
(``received`` is None) and starts to count when ``received`` arrives.

Ties on the same instant are broken by event id, so "latest" and "earliest" stay well defined.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scoring.events import Event

# (ts, event_id) orders facts on the same instant deterministically.
Stamp = tuple[int, str]


class Dossier:
    __slots__ = (
        "received",
        "procedure_id",
        "online",
        "due",
        "online_eligible",
        "full_online",
        "fee_required",
        "reused_data",
        "pds_linked",
        "population_db",
        "digitized",
        "synced",
        "paid_online",
        "supplements",
        "completed",
        "e_result",
        "withdrawn",
        "ratings",
    )

    def __init__(self) -> None:
        self.received: Stamp | None = None
        self.procedure_id = ""
        self.online = False
        self.due = 0
        self.online_eligible = False
        self.full_online = False
        self.fee_required = False
        self.reused_data = False
        self.pds_linked = False
        self.population_db = False
        self.digitized: int | None = None  # earliest digitized event
        self.synced: int | None = None
        self.paid_online: int | None = None
        # supplements: event_id -> (ts, new_due or None); dict keeps repeats idempotent
        self.supplements: dict[str, tuple[int, int | None]] | None = None
        self.completed: Stamp | None = None
        self.e_result = False
        self.withdrawn: int | None = None
        self.ratings: dict[str, tuple[int, str]] | None = None  # event_id -> (ts, rating)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict) -> Dossier:
        d = cls()
        for name in cls.__slots__:
            value = data.get(name)
            if value is None:
                continue
            if name in ("received", "completed"):
                value = (value[0], value[1])
            elif name == "supplements" or name == "ratings":
                value = {k: (v[0], v[1]) for k, v in value.items()}
            setattr(d, name, value)
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


def apply_dossier(d: Dossier, event: Event) -> None:
    """Fold one dossier event into its record (mutates ``d``; idempotent, commutative)."""
    t, ts, body = event.type, event.ts, event.body
    if t == "dossier.received":
        stamp = (ts, event.event_id)
        if d.received is None or stamp < d.received:
            d.received = stamp
            d.procedure_id = body["procedure_id"]
            d.online = body["channel"] == "online"
            d.due = event.times["due_at"]
            d.online_eligible = body["online_eligible"]
            d.full_online = body["full_online"]
            d.fee_required = body["fee_required"]
            d.reused_data = body["reused_data"]
            d.pds_linked = body["pds_linked"]
            d.population_db = body["population_db"]
    elif t == "dossier.digitized":
        d.digitized = _min(d.digitized, ts)
    elif t == "dossier.synced":
        d.synced = _min(d.synced, ts)
    elif t == "dossier.paid":
        if body["online"]:
            d.paid_online = _min(d.paid_online, ts)
    elif t == "dossier.supplement_requested":
        if d.supplements is None:
            d.supplements = {}
        d.supplements[event.event_id] = (ts, event.times.get("new_due_at"))
    elif t == "dossier.completed":
        stamp = (ts, event.event_id)
        if d.completed is None or stamp < d.completed:
            d.completed = stamp
            d.e_result = body["e_result"]
    elif t == "dossier.withdrawn":
        d.withdrawn = _min(d.withdrawn, ts)
    elif t == "dossier.rated":
        if d.ratings is None:
            d.ratings = {}
        d.ratings[event.event_id] = (ts, body["rating"])


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
    key = fact_key(event)
    if key is None:
        return None
    kind, ident = key
    if kind == "d":
        d = state.dossiers.get(ident)
        if d is None:
            d = state.dossiers[ident] = Dossier()
        apply_dossier(d, event)
    elif kind == "p":
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

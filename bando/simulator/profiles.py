"""Unit habits, the HCMC working-day calendar and the unit catalog, for the simulator.

A scoreboard is only worth watching if units differ the way real ones do: a central ward that
does almost everything online and on time next to a rural commune that still works on paper.
Each unit draws a *quality* from a three-tier mix (leaders, steady, laggards) and every habit
follows from it with its own noise, so habits correlate, as they do in real life, without being
identical (a unit can be digital and still late). Habits depend only on ``(seed, unit_id)``:
adding a unit to a catalog never changes the others.

Times are integer seconds since the epoch; the city runs on UTC+7 all year (no DST), so local
days are plain integer arithmetic. Due times follow the one-stop-shop practice: the legal
processing time is counted in working days (Monday to Friday minus public holidays) and a
dossier is due at the close of office hours (17:00) of its last working day.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

OFFSET = 7 * 3600  # Asia/Ho_Chi_Minh, no daylight saving time
DAY = 86400
OPEN = 7 * 3600 + 1800  # 07:30, when one-stop-shop counters open
CLOSE = 17 * 3600  # 17:00
WORK = CLOSE - OPEN  # seconds of office time in a working day

# Weekdays off for civil servants (Tet and swapped bridge days included; 2026 as announced in
# advance). Years not listed get the fixed-date holidays only: good enough for a simulator,
# never used for scoring.
_HOLIDAYS = {
    2024: ["01-01", "02-08", "02-09", "02-10", "02-11", "02-12", "02-13", "02-14", "04-18",
           "04-29", "04-30", "05-01", "09-02", "09-03"],
    2025: ["01-01", "01-25", "01-26", "01-27", "01-28", "01-29", "01-30", "01-31", "02-01",
           "02-02", "04-07", "04-30", "05-01", "05-02", "09-01", "09-02"],
    2026: ["01-01", "02-16", "02-17", "02-18", "02-19", "02-20", "04-27", "04-30", "05-01",
           "09-01", "09-02"],
}
_FIXED_HOLIDAYS = ["01-01", "04-30", "05-01", "09-02"]
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _holidays(year: int) -> set[int]:
    days = _HOLIDAYS.get(year, _FIXED_HOLIDAYS)
    return {date.fromisoformat(f"{year}-{md}").toordinal() - _EPOCH_ORDINAL for md in days}


def day_of(t: int) -> int:
    """Local (UTC+7) day number of epoch second ``t``."""
    return (t + OFFSET) // DAY


def day_start(day: int) -> int:
    """Epoch second of local midnight of ``day``."""
    return day * DAY - OFFSET


def is_working_day(day: int) -> bool:
    if (day + 3) % 7 >= 5:  # 1970-01-01 was a Thursday; Monday is 0
        return False
    year = date.fromordinal(day + _EPOCH_ORDINAL).year
    return day not in _holiday_cache(year)


_HOLIDAY_CACHE: dict[int, set[int]] = {}


def _holiday_cache(year: int) -> set[int]:
    found = _HOLIDAY_CACHE.get(year)
    if found is None:
        found = _HOLIDAY_CACHE[year] = _holidays(year)
    return found


class WorkCalendar:
    """Working days as a dense index, so that "N working days later" and "a moment of office
    time between two instants" are O(1) lookups in the generator's hot loop.

    A *work position* counts office seconds since the first working day: working day ``i``
    covers positions ``(i*WORK, (i+1)*WORK]``; ``at`` maps a position back to a wall instant
    and is strictly increasing, so ``at(work_pos(t) + k) > t`` for any ``k >= 1``.
    """

    def __init__(self, first_day: int):
        self._base = first_day
        self.days: list[int] = []  # working index -> local day number
        self._next: list[int] = []  # (day - base) -> index of the first working day >= day
        self._scanned = first_day  # days below this are in _next

    def _scan_to(self, day: int) -> None:
        """Know every day up to ``day`` and at least one working day on or after it."""
        while self._scanned <= day or not self.days or self.days[-1] < day:
            if is_working_day(self._scanned):
                self.days.append(self._scanned)
            self._scanned += 1
        i = self._next[-1] if self._next else 0
        for d in range(self._base + len(self._next), day + 1):
            while self.days[i] < d:
                i += 1
            self._next.append(i)

    def _index(self, i: int) -> int:
        while i >= len(self.days):
            self._scan_to(self._scanned + 62)
        return self.days[i]

    def work_pos(self, t: int) -> int:
        local = t + OFFSET
        day = local // DAY
        rel = day - self._base
        if rel < 0:
            raise ValueError("time before the calendar's first day")
        if rel >= len(self._next):
            self._scan_to(day + 31)
        i = self._next[rel]
        if self.days[i] != day:
            return i * WORK
        sod = local - day * DAY
        if sod <= OPEN:
            return i * WORK
        if sod >= CLOSE:
            return (i + 1) * WORK
        return i * WORK + sod - OPEN

    def at(self, pos: int) -> int:
        """The instant of work position ``pos`` (``pos >= 1``)."""
        i, off = divmod(pos - 1, WORK)
        day = self.days[i] if i < len(self.days) else self._index(i)
        return day * DAY - OFFSET + OPEN + off + 1

    def close_of(self, index: int) -> int:
        """17:00 of working day ``index``: when a dossier due that day falls due."""
        day = self.days[index] if index < len(self.days) else self._index(index)
        return day * DAY - OFFSET + CLOSE


# -- catalog ------------------------------------------------------------------------------


def default_catalog_path() -> Path:
    """``scoring/catalogs/hcmc-2024.json``, wherever the ``scoring`` package is installed."""
    spec = find_spec("scoring")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "catalogs" / "hcmc-2024.json"
            if candidate.exists():
                return candidate
    return Path(__file__).resolve().parents[2] / "scoring" / "catalogs" / "hcmc-2024.json"


def read_catalog(path: str | Path | None = None) -> list[dict[str, str]]:
    """The units of a catalog file (the built-in HCMC 2024 catalog when ``path`` is empty)."""
    p = Path(path) if path else default_catalog_path()
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{p}: a catalog is a JSON list of {{unit_id, name, peer_group}}")
    units = []
    for i, item in enumerate(data):
        if not (isinstance(item, dict) and isinstance(item.get("unit_id"), str)
                and isinstance(item.get("peer_group"), str)):
            raise ValueError(f"{p}: entry {i} lacks a string unit_id / peer_group")
        units.append({"unit_id": item["unit_id"], "name": str(item.get("name", item["unit_id"])),
                      "peer_group": item["peer_group"]})
    return units


# -- habits -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Procedure:
    procedure_id: str
    online_eligible: bool
    fee_required: bool
    fee_vnd: int
    days: int  # legal processing time in working days
    weight: float  # popularity among the unit's dossiers


@dataclass(frozen=True, slots=True)
class UnitProfile:
    unit_id: str
    peer_group: str
    tier: str  # leader | steady | laggard
    quality: float  # 0..1, the latent habit all others lean on
    volume: float  # dossiers per working day at scale 1
    online_share: float  # share of dossiers submitted online
    full_online: float  # P(full_online | online and the procedure is eligible)
    digitize: float  # P(dossier.digitized)
    sync: float  # P(dossier.synced)
    lag_s: int  # typical delay of digitization and sync, seconds
    e_result: float  # P(electronic result | completed)
    pay_online: float  # P(paid online | fee required, submitted online)
    late: float  # P(completed after due)
    late_days: float  # how late, at most, in working days
    speed: float  # >1: finishes early in the allowed time; <1: close to the deadline
    supplement: float  # P(supplement requested)
    supplement_new_due: float  # P(the supplement request recomputes the due time)
    reuse: float
    pds: float
    population_db: float
    withdraw: float
    rate: float  # P(the citizen rates the dossier)
    dissatisfied: float  # P(dissatisfied | rated, on time); late adds to it
    neutral: float
    petitions: float  # petitions per month at scale 1
    petition_on_time: float
    publications: float  # procedure publications per month at scale 1
    publish_on_time: float
    publish_complete: float
    procedures: tuple[Procedure, ...]
    officers: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_TIERS = (("leader", 0.25, 0.80, 1.00), ("steady", 0.50, 0.45, 0.80), ("laggard", 0.25, 0.08, 0.45))


class _Group(NamedTuple):
    volume: float  # median dossiers per working day
    petitions: float  # median petitions per month
    publications: float  # publications per month
    procs: tuple[int, int]  # how many procedures a unit handles
    days: tuple[int, ...]  # legal processing times to draw from, working days
    fee: float  # share of procedures with a fee
    officers: tuple[int, int]


# Unknown peer groups (custom catalogs) behave like districts.
_GROUP = {
    "department": _Group(45.0, 10.0, 5.0, (4, 8), (3, 5, 7, 10, 15, 20), 0.55, (4, 9)),
    "district": _Group(70.0, 14.0, 3.5, (4, 7), (3, 5, 7, 10, 15), 0.45, (3, 7)),
    "ward": _Group(14.0, 2.5, 2.0, (3, 5), (1, 1, 2, 3, 5), 0.3, (2, 4)),
}
_FEES = (10_000, 20_000, 30_000, 50_000, 100_000, 150_000, 200_000, 500_000, 1_000_000)


def _profile(unit: Mapping[str, str], seed: int | str) -> UnitProfile:
    unit_id, group = unit["unit_id"], unit["peer_group"]
    rng = random.Random(f"bando-profile:{seed}:{unit_id}")
    pick, acc = rng.random(), 0.0
    tier, lo_q, hi_q = _TIERS[-1][0], _TIERS[-1][2], _TIERS[-1][3]
    for name, share, lo, hi in _TIERS:
        acc += share
        if pick < acc:
            tier, lo_q, hi_q = name, lo, hi
            break
    q = rng.uniform(lo_q, hi_q)
    g = _GROUP.get(group, _GROUP["district"])

    def habit(at_zero: float, at_one: float, noise: float = 0.12) -> float:
        x = min(1.0, max(0.0, q + rng.gauss(0.0, noise)))
        return round(at_zero + (at_one - at_zero) * x, 4)

    eligible_p = habit(0.3, 0.95)
    procedures = []
    for j in range(rng.randint(*g.procs)):
        fee = rng.random() < g.fee
        procedures.append(Procedure(
            procedure_id=f"proc-{unit_id}-{j + 1}",
            online_eligible=rng.random() < eligible_p,
            fee_required=fee,
            fee_vnd=rng.choice(_FEES) if fee else 0,
            days=rng.choice(g.days),
            weight=round(1.0 / (j + 1) ** 0.9, 4),  # a few procedures make most dossiers
        ))
    officers = tuple(f"officer-{unit_id}-{k:02d}" for k in range(1, rng.randint(*g.officers) + 1))
    return UnitProfile(
        unit_id=unit_id,
        peer_group=group,
        tier=tier,
        quality=round(q, 4),
        volume=round(g.volume * rng.lognormvariate(0.0, 0.5), 2),
        online_share=habit(0.05, 0.85),
        full_online=habit(0.2, 0.95),
        digitize=habit(0.3, 1.0),
        sync=habit(0.5, 1.0, 0.08),
        lag_s=int(300 * (576 ** (1.0 - habit(0.0, 1.0)))),  # 2 days .. 5 minutes
        e_result=habit(0.15, 1.0),
        pay_online=habit(0.05, 0.92),
        late=habit(0.32, 0.005, 0.08),
        late_days=habit(15.0, 2.0),
        speed=habit(0.5, 3.0),
        supplement=habit(0.22, 0.03),
        supplement_new_due=habit(0.3, 0.95),
        reuse=habit(0.05, 0.85),
        pds=habit(0.02, 0.9),
        population_db=habit(0.2, 1.0),
        withdraw=habit(0.03, 0.005, 0.05),
        rate=habit(0.15, 0.55),
        dissatisfied=habit(0.22, 0.02),
        neutral=habit(0.25, 0.08),
        petitions=round(g.petitions * rng.lognormvariate(0.0, 0.4), 2),
        petition_on_time=habit(0.45, 0.99),
        publications=round(g.publications * rng.uniform(0.6, 1.4), 2),
        publish_on_time=habit(0.5, 1.0),
        publish_complete=habit(0.6, 1.0),
        procedures=tuple(procedures),
        officers=officers,
    )


def make_profiles(catalog: Iterable[Mapping[str, str]], seed: int | str = 0) -> list[UnitProfile]:
    """One profile per catalog unit, in catalog order."""
    return [_profile(u, seed) for u in catalog]

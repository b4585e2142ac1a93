"""Which dossiers each officer handled, and an officer's indicators beside their unit's.

Why an index of its own: ``officer_id`` never changes a score (SPEC 1), so the scoring facts
do not keep it. The index is read from the *accepted* events' bodies (see ``leaders.history``)
and is, like the facts, a union of sets: arrival order and repeats never change it. A dossier
belongs to every officer who handled at least one of its steps ("their own work").

An officer's indicators are the core's own ``count`` and ``rate`` over the unit's state
restricted to that officer's dossiers, so "late" or "synced" mean exactly what they mean on the
map. Only the indicators counted over dossiers are shown: petitions and publications carry no
officer.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from audit.explain import failing_items
from audit.ingest import History, window_state
from scoring.catalog import Catalog
from scoring.events import DOSSIER_TYPES, Event
from scoring.facts import UnitState
from scoring.indicators import count, dossier_due, dossiers_in
from scoring.model import Model
from scoring.points import rate
from scoring.timeutil import Window, format_ts

# SPEC 3's indicator table: these count petitions or publications, which no officer handles.
NOT_PER_OFFICER = frozenset({"announced_on_time", "publicized_on_time", "content_complete",
                             "petitions_on_time", "petition_satisfaction"})

DossierKey = tuple[str, str]  # (unit_id, dossier_id): dossier ids are unique within a unit


class OfficerIndex:
    """officer_id -> unit_id -> dossier ids; and per dossier, who did which step."""

    def __init__(self) -> None:
        self.by_officer: dict[str, dict[str, set[str]]] = {}
        self.steps: dict[DossierKey, dict[str, set[str]]] = {}

    def add(self, event: Event) -> None:
        if event.type not in DOSSIER_TYPES or event.unit_id is None:
            return
        officer = event.body.get("officer_id")
        if not isinstance(officer, str) or not officer:
            return
        dossier_id = event.body["dossier_id"]
        self.by_officer.setdefault(officer, {}).setdefault(event.unit_id, set()).add(dossier_id)
        per = self.steps.setdefault((event.unit_id, dossier_id), {})
        per.setdefault(officer, set()).add(event.type)

    def extend(self, events: Iterable[Event]) -> OfficerIndex:
        for event in events:
            self.add(event)
        return self

    def __contains__(self, officer_id: object) -> bool:
        return officer_id in self.by_officer

    def __len__(self) -> int:
        return len(self.by_officer)

    def units_of(self, officer_id: str) -> list[str]:
        return sorted(self.by_officer.get(officer_id, {}))

    def dossiers_of(self, officer_id: str, unit_id: str) -> set[str]:
        return self.by_officer.get(officer_id, {}).get(unit_id, set())

    def officers_of(self, unit_id: str, dossier_id: str) -> dict[str, set[str]]:
        return self.steps.get((unit_id, dossier_id), {})


def restrict(state: UnitState, dossier_ids: set[str]) -> UnitState:
    """The state with only these dossiers (same objects): the officer's share of the unit."""
    return UnitState(dossiers={k: d for k, d in state.dossiers.items() if k in dossier_ids})


def ratio(pair: tuple[int, int]) -> float | None:
    num, den = pair
    return round(num / den, 4) if den else None


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 4) if vals else None


def peer_ratios(history: History, catalog: Catalog, group: str, window: Window,
                t: int) -> dict[str, dict[str, tuple[int, int]]]:
    """Counts of every unit of a peer group (the officer view's comparison, cached by callers)."""
    return {u: count(window_state(history.states.get(u), window), window, t).values
            for u in catalog.peer_groups.get(group, ())}


def officer_report(history: History, index: OfficerIndex, catalog: Catalog, model: Model,
                   officer_id: str, t: int, window: Window, limit: int = 10,
                   peer_counts: dict[str, dict[str, dict[str, tuple[int, int]]]] | None = None
                   ) -> dict[str, Any]:
    """The officer view's document: per unit the officer worked in, each dossier indicator of
    the officer's dossiers beside the unit's and the peer group's median, and the officer's
    dossiers behind the lost points. ``peer_counts``: ``peer_ratios`` per group, if cached."""
    tz = model.timezone
    units = []
    for unit_id in index.units_of(officer_id):
        if unit_id not in catalog:
            continue
        unit = catalog.by_id[unit_id]
        full = window_state(history.states.get(unit_id), window)
        mine = restrict(full, index.dossiers_of(officer_id, unit_id))
        my_counts = count(mine, window, t)
        unit_counts = count(full, window, t).values
        peers = (peer_counts or {}).get(unit.peer_group)
        if peers is None:
            peers = peer_ratios(history, catalog, unit.peer_group, window, t)
        rated = rate(model, my_counts.values)
        items = failing_items(mine, window, t, tz)
        indicators = []
        for ind in model.indicators:
            if ind.id in NOT_PER_OFFICER:
                continue
            pair = my_counts.values.get(ind.id, (0, 0))
            mine_ratio = ratio(pair)
            failing = items.get(ind.id, [])
            indicators.append({
                "indicator": ind.id, "group": ind.group, "num": pair[0], "den": pair[1],
                "ratio": mine_ratio, "target": float(ind.target),
                "meets_target": None if mine_ratio is None else mine_ratio >= float(ind.target),
                "points": rated.indicators[ind.id]["points"] if pair[1] else None,
                "max": rated.indicators[ind.id]["max"],
                "unit_ratio": ratio(unit_counts.get(ind.id, (0, 0))),
                "peer_median_ratio": _median(ratio(c.get(ind.id, (0, 0)))
                                             for c in peers.values()),
                "failing": len(failing), "items": failing[:limit],
            })
        in_window = dossiers_in(mine, window, t)
        units.append({
            "unit_id": unit_id, "name": unit.name, "peer_group": unit.peer_group,
            "dossiers": len(in_window),
            "repeated_supplements": sum(1 for _, d in in_window if dossier_due(d, t)[1] >= 2),
            "indicators": indicators,
        })
    return {"officer_id": officer_id, "window": window.name, "as_of": format_ts(t, tz),
            "model": model.ref, "units": units}

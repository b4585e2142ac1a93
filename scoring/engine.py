"""The scoring engine: unit states of a catalog, scored for a window at a time T.

One engine serves offline ``bando score``, audit replay and each live worker partition; they
differ only in where events come from and when they ask for scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scoring.catalog import Catalog, Unit
from scoring.events import Event
from scoring.facts import UnitState, apply_event
from scoring.indicators import Counts, count
from scoring.model import Model
from scoring.points import Rated, rate
from scoring.ranking import competition_ranks
from scoring.timeutil import Window


@dataclass(slots=True)
class UnitScore:
    unit: Unit
    window: Window
    as_of: int
    rated: Rated
    counts: dict[str, tuple[int, int]]
    next_change_us: int

    def to_dict(self, rank: int | None = None, peer_count: int | None = None) -> dict[str, Any]:
        """SPEC section 5 shape of one unit (without window/as_of, which the caller adds)."""
        return {
            "unit_id": self.unit.unit_id,
            "name": self.unit.name,
            "peer_group": self.unit.peer_group,
            "total": self.rated.total,
            "band": self.rated.band,
            "rank": rank,
            "peer_count": peer_count,
            "groups": self.rated.groups,
            "indicators": self.rated.indicators,
        }


def score_state(
    model: Model, unit: Unit, state: UnitState | None, window: Window, t: int,
    counts: Counts | None = None,
) -> UnitScore:
    """``counts``: when already known (``scoring.incremental`` keeps them live), they must equal
    ``count(state, window, t)``; otherwise they are counted here."""
    if counts is None:
        counts = count(state if state is not None else UnitState(), window, t)
    rated = rate(model, counts.values, scored=counts.items > 0)
    return UnitScore(unit, window, t, rated, counts.values, counts.next_change_us)


def rank_scores(scores: list[UnitScore]) -> list[dict[str, Any]]:
    """Rank each peer group separately; returns SPEC-shaped dicts in input order."""
    by_group: dict[str, dict[str, float | None]] = {}
    for s in scores:
        by_group.setdefault(s.unit.peer_group, {})[s.unit.unit_id] = s.rated.total
    ranks: dict[str, int | None] = {}
    peer_counts: dict[str, int] = {}
    for group, totals in by_group.items():
        ranks.update(competition_ranks(totals))
        peer_counts[group] = sum(t is not None for t in totals.values())
    out = []
    for s in scores:
        scored = s.rated.total is not None
        out.append(
            s.to_dict(
                rank=ranks[s.unit.unit_id] if scored else None,
                peer_count=peer_counts[s.unit.peer_group] if scored else None,
            )
        )
    return out


class Engine:
    def __init__(self, catalog: Catalog, model: Model):
        self.catalog = catalog
        self.model = model
        self.states: dict[str, UnitState] = {}

    def apply(self, event: Event) -> None:
        if event.unit_id is None:
            return
        state = self.states.get(event.unit_id)
        if state is None:
            state = self.states[event.unit_id] = UnitState()
        apply_event(state, event)

    def score_unit(self, unit_id: str, window: Window, t: int) -> UnitScore:
        return score_state(
            self.model, self.catalog.by_id[unit_id], self.states.get(unit_id), window, t
        )

    def score_all(self, window: Window, t: int) -> list[dict[str, Any]]:
        scores = [self.score_unit(u.unit_id, window, t) for u in self.catalog.units]
        return rank_scores(scores)

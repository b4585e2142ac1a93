"""Incremental counts: ``scoring.indicators.count`` of a unit, kept up to date fact by fact.

Why: ``count(state, window, T)`` walks every dossier of the unit in the window, so a timeline
that scores a unit at each of its events costs events x dossiers (minutes for a city quarter).
But ``count`` is a sum over facts: each dossier, petition and publication adds to numerators
and denominators on its own, except the two "distinct procedures" indicators, which count the
procedures that have at least one contributing dossier. So this counter asks the core's own
``count`` about *one fact at a time* (a one-fact ``UnitState``) and keeps the sums -- and, for
those two indicators, per procedure, how many dossiers contribute. A fact's contribution only
changes at its own instants (``audit.ingest.History``), so an event costs one one-fact count.

The rules stay the core's: this module never decides whether a dossier is late or synced. Tests
check that the sums equal ``count`` on the whole state at random instants, and ``bando replay
--check-core`` re-checks every evaluation.
"""

from __future__ import annotations

from scoring.facts import UnitState
from scoring.indicators import KNOWN_INDICATORS, Counts, count
from scoring.timeutil import Window

ORDER = KNOWN_INDICATORS
# indicators counting distinct procedures: value = (#procs with a num, #procs with a den)
SET_BASED = ("online_uptake", "online_payment_procedures")
_SET_INDEX = {ORDER.index(i) for i in SET_BASED}
_IS_SET = tuple(j in _SET_INDEX for j in range(len(ORDER)))
_ZERO = tuple((0, 0) for _ in ORDER)


def one_fact(state: UnitState, key: tuple[str, str]) -> tuple[UnitState, int | None, str]:
    """A state holding only the fact ``key``, the instant that places it in a window (its
    ``received`` or publication time; None if never received), and its procedure id."""
    kind, ident = key
    if kind == "d":
        d = state.dossiers[ident]
        return (UnitState(dossiers={ident: d}),
                d.received[0] if d.received is not None else None, d.procedure_id)
    if kind == "p":
        p = state.petitions[ident]
        return (UnitState(petitions={ident: p}),
                p.received[0] if p.received is not None else None, "")
    pub = state.publications[ident]
    return UnitState(publications={ident: pub}), pub.ts, ""


class UnitCounts:
    """The counts of one unit in one window, as sums of its facts' contributions."""

    __slots__ = ("window", "nums", "dens", "items", "contrib", "procs", "positive")

    def __init__(self, window: Window):
        self.window = window
        self.nums = [0] * len(ORDER)
        self.dens = [0] * len(ORDER)
        self.items = 0
        self.contrib: dict[tuple[str, str], tuple[tuple[tuple[int, int], ...], int]] = {}
        # per set-based indicator: procedure -> [dossiers adding to num, to den]
        self.procs: dict[int, dict[str, list[int]]] = {j: {} for j in _SET_INDEX}
        self.positive: dict[int, list[int]] = {j: [0, 0] for j in _SET_INDEX}

    def set(self, key: tuple[str, str], procedure: str, counts: Counts) -> bool:
        """Record a fact's current contribution; True when the unit's counts changed."""
        values = counts.values
        new = tuple(values[i] for i in ORDER)
        old = self.contrib.get(key)
        old_pairs, old_items = old if old is not None else (_ZERO, 0)
        if old_pairs == new and old_items == counts.items:
            return False
        for j, (a, b) in enumerate(zip(new, old_pairs, strict=True)):
            if a == b:
                continue
            if _IS_SET[j]:
                self._procedure(j, procedure, a[0] - b[0], a[1] - b[1])
            else:
                self.nums[j] += a[0] - b[0]
                self.dens[j] += a[1] - b[1]
        self.items += counts.items - old_items
        self.contrib[key] = (new, counts.items)
        return True

    def _procedure(self, j: int, procedure: str, d_num: int, d_den: int) -> None:
        per = self.procs[j].setdefault(procedure, [0, 0])
        pos = self.positive[j]
        for k, delta in ((0, d_num), (1, d_den)):
            before = per[k] > 0
            per[k] += delta
            pos[k] += (per[k] > 0) - before

    def values(self) -> dict[str, tuple[int, int]]:
        out = {}
        for j, iid in enumerate(ORDER):
            if _IS_SET[j]:
                pos = self.positive[j]
                out[iid] = (pos[0], pos[1])
            else:
                out[iid] = (self.nums[j], self.dens[j])
        return out


class FactCounter:
    """Keeps ``UnitCounts`` of one unit current as time moves forward, fact by fact."""

    __slots__ = ("state", "counts", "_facts")

    def __init__(self, state: UnitState | None, window: Window):
        self.state = state if state is not None else UnitState()
        self.counts = UnitCounts(window)
        self._facts: dict[tuple[str, str], tuple[UnitState, int | None, str]] = {}

    def reset(self, window: Window) -> None:
        self.counts = UnitCounts(window)

    def refresh(self, key: tuple[str, str], t: int) -> bool:
        """Re-count fact ``key`` at T; False when it is outside the window or unchanged."""
        fact = self._facts.get(key)
        if fact is None:
            fact = self._facts[key] = one_fact(self.state, key)
        one, anchor, procedure = fact
        window = self.counts.window
        if anchor is None or not window.start_us <= anchor < window.end_us:
            return False
        return self.counts.set(key, procedure, count(one, window, t))

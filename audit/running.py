"""One unit's counts as a replay walks event time forward, from the folded history.

A replay asks the folded history for counts at a rising T. ``scoring.running.UnitCounts`` (the
live worker's running counts, property-tested equal to ``scoring.indicators.count``) keeps
them: a record is re-evaluated only when its breakpoint passes (``scoring.incremental``: the
next instant its contribution can change, one of its own facts or a due time), and a dossier
that can no longer change settles into a monthly tally. So a replay keeps nothing per fact
beyond the facts themselves: no list of instants per fact (on a year of HCMC those lists and
the per-instant queue were larger than the facts), and in play only the records whose
contribution can still change.

A record adds nothing before its anchor (a dossier's or petition's ``received``, a
publication's time), so records still ahead of T wait, as ids sorted by anchor, and are
admitted when T reaches it: a replay that starts in January does not evaluate December's
dossiers until December.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from scoring.facts import UnitState
from scoring.incremental import NEVER, WindowSums
from scoring.indicators import Counts
from scoring.running import UnitCounts
from scoring.timeutil import Window


def _received(record: Any) -> int | None:
    return record.received_ts


def _petition_received(record: Any) -> int | None:
    return record.received[0] if record.received is not None else None


def _published(record: Any) -> int | None:
    return record.ts


_KINDS: tuple[tuple[str, str, Callable[[Any], int | None]], ...] = (
    ("d", "dossiers", _received),
    ("p", "petitions", _petition_received),
    ("pub", "publications", _published),
)


class _Ahead:
    """The records of one kind not admitted yet, in the order of their anchors."""

    __slots__ = ("kind", "ids", "records", "anchors", "i")

    def __init__(self, kind: str, records: Mapping[str, Any],
                 anchor_of: Callable[[Any], int | None]):
        self.kind = kind
        # A record never received counts nowhere, ever: left out. The anchors are the records'
        # own int objects: the lists cost 8 bytes a record each. The records are listed here,
        # not looked up when admitted: in the order of their anchors a look-up in a unit's
        # year of records is a cache miss or three.
        triples = sorted((a, ident, r) for ident, r in records.items()
                         if (a := anchor_of(r)) is not None)
        self.anchors = [a for a, _, _ in triples]
        self.ids = [ident for _, ident, _ in triples]
        self.records = [r for _, _, r in triples]
        self.i = 0

    def next_anchor(self) -> int:
        return self.anchors[self.i] if self.i < len(self.anchors) else NEVER


class UnitReplay:
    """``counts(window)`` of one unit's folded state at T, for T moving forward only
    (``advance``); equal to ``count(state, window, T)``. ``tz``: the windows' time zone (the
    model's); windows must be made of whole months in it, as the model's are."""

    __slots__ = ("running", "_ahead", "_window", "_due")

    def __init__(self, state: UnitState | None, t: int, tz: str):
        state = state if state is not None else UnitState()
        # its own state: settled dossiers leave it, the history's stays whole
        self.running = UnitCounts(UnitState(), t, settle_tz=tz)
        self._ahead = [_Ahead(kind, getattr(state, name), anchor_of)
                       for kind, name, anchor_of in _KINDS]
        self._window = ""
        # the earliest anchor ahead: most advances admit nothing
        self._due = min(ahead.next_anchor() for ahead in self._ahead)
        self._admit(t)

    def _admit(self, t: int) -> bool:
        if t < self._due:
            return False
        admitted = False
        admit = self.running.admit
        for ahead in self._ahead:
            ids, anchors, records, kind = ahead.ids, ahead.anchors, ahead.records, ahead.kind
            i = ahead.i
            while i < len(ids) and anchors[i] <= t:
                admit(kind, ids[i], records[i])
                i += 1
            admitted |= i != ahead.i
            ahead.i = i
        self._due = min(ahead.next_anchor() for ahead in self._ahead)
        return admitted

    def next_change(self) -> int:
        """The earliest instant after T at which the counts may change (NEVER if none)."""
        nxt = self.running.next_change()
        return self._due if self._due < nxt else nxt

    def advance(self, t: int) -> bool:
        """Move T forward to ``t``; False when no count can have changed since the last T."""
        if t < self.running.t:
            raise ValueError("a replay's T only moves forward")
        changed = self.running.update(t)
        return self._admit(t) or changed

    def counts(self, window: Window) -> Counts:
        """The counts at T in ``window`` (sums kept for this window only)."""
        return self.sums(window).counts(self.running.next_change())

    def sums(self, window: Window) -> WindowSums:
        """The sums behind ``counts(window)``: ``pairs()`` and ``items()`` without a dict."""
        if window.name != self._window:
            self.running.keep_windows((window.name,))
            self._window = window.name
        return self.running.sums(window)

"""Folding an event the way a live worker needs it: ``apply_event``, plus what a worker whose
event time only moves forward must learn from it (``streams.scorer``).

* When a record left a window: an earlier ``received`` won (the record moved to another
  window), or the dossier was withdrawn. A worker rebuilt after a restart does not know what
  it sent before, so only such a record can tell it that a window may have lost a score it
  had (the scorer then says "no score" there once).
* Ratings and supplements no score at or after the watermark can read are dropped
  (``scoring.compact``), so a record stays small whatever the input repeats.
"""

from __future__ import annotations

from scoring.compact import compact
from scoring.events import Event
from scoring.facts import UnitState, apply_event

RECEIPTS = frozenset({"dossier.received", "petition.received"})
GROWING = frozenset({"dossier.rated", "dossier.supplement_requested", "petition.rated"})


def fold_live(state: UnitState, event: Event, watermark: int
              ) -> tuple[tuple[str, str] | None, int | None]:
    """Fold ``event`` into ``state`` (``watermark``: the time scores will next be taken at, at
    least); returns its fact key and, if the record left a window, the receipt time it had
    there."""
    kind = event.type
    before = _received_at(state, event) if kind in RECEIPTS else None
    key = apply_event(state, event)
    if key is None:
        return None, None
    if before is not None:
        return key, before if before != _received_at(state, event) else None
    if kind == "dossier.withdrawn":
        return key, state.dossiers[key[1]].received_ts
    if kind in GROWING:
        compact(state.dossiers[key[1]] if key[0] == "d" else state.petitions[key[1]], watermark)
    return key, None


def _received_at(state: UnitState, event: Event) -> int | None:
    """When the record a receipt folds into was received so far (None: not yet)."""
    if event.type == "dossier.received":
        d = state.dossiers.get(event.body["dossier_id"])
        return None if d is None else d.received_ts
    p = state.petitions.get(event.body["petition_id"])
    return None if p is None or p.received is None else p.received[0]

"""The accepted-event value the scoring core works on (validated by ``schemas.validate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOSSIER_TYPES = frozenset(
    {
        "dossier.received",
        "dossier.digitized",
        "dossier.synced",
        "dossier.paid",
        "dossier.supplement_requested",
        "dossier.completed",
        "dossier.withdrawn",
        "dossier.rated",
    }
)
PETITION_TYPES = frozenset({"petition.received", "petition.resolved", "petition.rated"})
EVENT_TYPES = DOSSIER_TYPES | PETITION_TYPES | {"procedure.published", "clock.tick"}


@dataclass(frozen=True, slots=True)
class Event:
    """One accepted event. ``ts`` is ``occurred_at`` in microseconds since the epoch; ``body``
    is the decoded JSON object; ``digest`` identifies the body for duplicate detection;
    ``times`` holds the other parsed timestamps of the body (``due_at``, ``new_due_at``)."""

    event_id: str
    type: str
    ts: int
    unit_id: str | None
    body: dict[str, Any]
    digest: bytes
    times: dict[str, int]

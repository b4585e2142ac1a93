"""The accepted-event value the scoring core works on (validated by ``schemas.validate``)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

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


NO_TIMES: Mapping[str, int] = MappingProxyType({})  # ``times`` of events without other stamps


def body_digest(body: dict[str, Any]) -> bytes:
    """Identity of a body for duplicate detection: key order and whitespace do not matter."""
    return hashlib.blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=12).digest()


class Event:
    """One accepted event. ``ts`` is ``occurred_at`` in microseconds since the epoch; ``body``
    is the decoded JSON object; ``digest`` identifies the body for duplicate detection;
    ``times`` holds the other parsed timestamps of the body (``due_at``, ``new_due_at``).

    ``digest`` is computed on first use when not given: canonical JSON and a hash cost more
    than the rest of validation, and an offline load needs it only for repeated ids. Treat an
    event as immutable.
    """

    __slots__ = ("event_id", "type", "ts", "unit_id", "body", "_digest", "times")

    def __init__(
        self,
        event_id: str,
        type: str,
        ts: int,
        unit_id: str | None,
        body: dict[str, Any],
        digest: bytes | None,
        times: Mapping[str, int],
    ) -> None:
        self.event_id = event_id
        self.type = type
        self.ts = ts
        self.unit_id = unit_id
        self.body = body
        self._digest = digest
        self.times = times

    @property
    def digest(self) -> bytes:
        if self._digest is None:
            self._digest = body_digest(self.body)
        return self._digest

    def _key(self) -> tuple:
        return (self.event_id, self.type, self.ts, self.unit_id, self.body, self.digest,
                self.times)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # like the frozen dataclass: the body is a dict

    def __repr__(self) -> str:
        return (f"Event(event_id={self.event_id!r}, type={self.type!r}, ts={self.ts!r}, "
                f"unit_id={self.unit_id!r}, body={self.body!r}, times={self.times!r})")

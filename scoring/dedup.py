"""De-duplication by ``event_id`` (SPEC section 1): a repeat with the same body is a no-op, a
repeat with another body is refused. Pure: the live worker keeps the same mapping in a
changelog-backed table and calls ``classify`` on it."""

from __future__ import annotations

from collections.abc import MutableMapping

NEW, DUPLICATE, CONFLICT = "new", "duplicate", "conflict"


def classify(seen: bytes | str | None, digest: bytes | str) -> str:
    if seen is None:
        return NEW
    return DUPLICATE if seen == digest else CONFLICT


class Deduper:
    def __init__(self, seen: MutableMapping[str, bytes] | None = None):
        self.seen: MutableMapping[str, bytes] = {} if seen is None else seen

    def check(self, event_id: str, digest: bytes) -> str:
        """Classify and remember a first sighting."""
        status = classify(self.seen.get(event_id), digest)
        if status == NEW:
            self.seen[event_id] = digest
        return status

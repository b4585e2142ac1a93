"""De-duplication by ``event_id`` (SPEC section 1): a repeat with the same body is a no-op, a
repeat with another body is refused. Pure: the live worker keeps the same mapping in a
changelog-backed table and calls ``classify`` on it."""

from __future__ import annotations

from array import array
from collections.abc import Callable, MutableMapping
from typing import Any

from scoring.events import Event, body_digest

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


_hash = hash  # module-level, so tests can force collisions


class FirstSeen:
    """De-duplication for input that can be read again (a file): per event id it keeps only a
    64-bit hash tag and a ``token`` that finds its first accepted copy (e.g. the byte offset of
    its line), 16 bytes in one flat array, instead of a dict entry, the id string and a digest
    (~140 bytes). Made for loads of tens of millions of events.

    ``body_at(token)`` returns the decoded body of the copy at ``token``. It is called only when
    a tag matches, that is for a repeated id (or, about once in 10**19 pairs, two ids with the
    same hash), to compare the ids exactly and then the digests: the verdicts are ``Deduper``'s,
    and digests are computed for repeats only. Tokens must be in ``0 .. 2**63 - 1``.

    Open addressing with linear probing; slot ``i`` is ``slots[2i]`` (token) and
    ``slots[2i + 1]`` (tag, 0 = empty), side by side so that a probe touches one cache line.
    A tag is odd, so ``tag % len(slots)`` is its place in ``slots`` at once (slot
    ``(tag >> 1) % size``: one operation, where the hot loop pays for each). Kept at
    most half full, so a probe rarely looks at more than two slots. ``expected``: how many ids
    to size it for (it doubles when half full, so a good guess saves re-inserting everything).

    ``bando.fastload`` runs this probe and insertion inline, on ``_slots`` and ``_room``
    (tests/scoring/test_fused_load.py checks it against ``Deduper``): change them together.
    """

    def __init__(self, body_at: Callable[[int], dict[str, Any]], expected: int = 1 << 16):
        self.body_at = body_at
        self._reset(max(16, 2 * expected + 1), 0)

    @property
    def capacity(self) -> int:
        """Slots in the table (16 bytes each)."""
        return self._size

    @property
    def count(self) -> int:
        """Ids in the table."""
        return self._size // 2 - self._room

    def _reset(self, size: int, count: int) -> None:
        self._size = size
        self._room = size // 2 - count  # insertions left before the table grows
        self._slots = array("q", bytes(16 * size))

    def check(self, event: Event, token: int) -> str:
        """Classify and remember a first sighting."""
        event_id = event.event_id
        tag = _hash(event_id) | 1
        slots = self._slots
        end = len(slots)
        j = tag % end  # the tag's place in ``slots``; the token's is j - 1
        while (other := slots[j]) != 0:
            if other == tag:
                first = self.body_at(slots[j - 1])
                if first["event_id"] == event_id:
                    return classify(body_digest(first), event.digest)
            j += 2
            if j > end:
                j = 1
        slots[j] = tag
        slots[j - 1] = token
        self._room -= 1
        if not self._room:
            self._grow()
        return NEW

    def _grow(self) -> None:
        old = self._slots
        self._reset(2 * self._size, self.count)
        slots = self._slots
        end = len(slots)
        for j in range(1, len(old), 2):
            tag = old[j]
            if tag:
                i = tag % end
                while slots[i]:
                    i = i + 2 if i + 2 < end else 1
                slots[i] = tag
                slots[i - 1] = old[j - 1]

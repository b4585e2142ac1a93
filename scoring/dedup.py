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

    *Unchecked* copies (``foreign``): a load split between processes (``audit.splitingest``)
    puts into the table, unchecked, the first copies of ids another process accepted, their
    token stored as ``-1 - token``. Such a copy is validated only when its id comes again
    (``checked_at(token)``: its body if the line there is a valid event, else None); an
    invalid one counts as absent, as it would in the process that checks it, and its slot is
    taken by the next new copy. So per id the table holds at most one entry not known to be
    invalid: the id's earliest such copy. ``count`` then includes unchecked and invalid
    entries (a split load counts its accepted lines itself).
    """

    def __init__(self, body_at: Callable[[int], dict[str, Any]], expected: int = 1 << 16,
                 checked_at: Callable[[int], dict[str, Any] | None] | None = None):
        self.body_at = body_at
        self.checked_at = checked_at
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
        return self._probe(event.event_id, token, event)

    def foreign(self, event_id: str, token: int) -> None:
        """Remember, unchecked, the copy of ``event_id`` at ``token`` unless an earlier valid
        (or unchecked) copy is there: a line another process validates and counts."""
        self._probe(event_id, -1 - token, None)

    def adopt(self, slots: array[int], count: int) -> None:
        """Take over another table's ``_slots`` holding ``count`` ids (an earlier pass over
        the same input): a copy found at the very token it is checked with is that copy, new
        (``audit.splitingest``'s second pass)."""
        self._slots, self._size = slots, len(slots) // 2
        self._room = self._size // 2 - count

    def repoint(self, event_id: str, token: int) -> bool:
        """Make the entry of ``event_id``, if there is one, an unchecked copy at ``token``
        (another process's earlier copy); whether there was one."""
        tag = _hash(event_id) | 1
        slots, end = self._slots, len(self._slots)
        j = tag % end
        while (other := slots[j]) != 0:
            if other == tag and (first := self._first(j)) is not None \
                    and first["event_id"] == event_id:
                slots[j - 1] = -1 - token
                return True
            j += 2
            if j > end:
                j = 1
        return False

    def _probe(self, event_id: str, token: int, event: Event | None) -> str:
        tag = _hash(event_id) | 1
        slots = self._slots
        end = len(slots)
        j = tag % end  # the tag's place in ``slots``; the token's is j - 1
        free = 0  # a slot whose unchecked copy proved invalid: taken if the id is not found
        while (other := slots[j]) != 0:
            if other == tag:
                first = self._first(j)
                if first is None:
                    free = free or j
                elif first["event_id"] == event_id:
                    if event is None or slots[j - 1] == token:  # unchecked, or this very copy
                        return NEW
                    return classify(body_digest(first), event.digest)
            j += 2
            if j > end:
                j = 1
        if free:
            slots[free - 1] = token
            return NEW
        slots[j] = tag
        slots[j - 1] = token
        self._room -= 1
        if not self._room:
            self._grow()
        return NEW

    def _first(self, j: int) -> dict[str, Any] | None:
        """The body of slot ``j``'s copy, checked first if it was not (None: invalid)."""
        token = self._slots[j - 1]
        if token >= 0:
            return self.body_at(token)
        if self.checked_at is None:
            raise ValueError("an unchecked copy in a table without checked_at")
        body = self.checked_at(-1 - token)
        if body is not None:
            self._slots[j - 1] = -1 - token  # checked: not validated again
        return body

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

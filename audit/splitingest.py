"""One worker's ingest in a split replay (``audit.split``), and how the workers settle the ids
they share.

**Which worker owns a line** is decided from the line alone, so that every worker agrees:

* *routed*: the bytes after the line's first ``"unit_id":"``, up to the next quote, are a
  catalog unit's id as JSON writes it: that unit's worker. No other worker decodes the line.
* else *decoded*: the worker of its top-level ``unit_id`` if that is a catalog unit's, else
  worker 0 (no unit, not an object, not JSON even stripped; too large, not decoded).

A routed line that decodes to an object whose top-level unit belongs to another worker (the
key repeated, nested, or escaped) raises ``Misrouted``: every worker then ingests again with
routing off (``route=False``), where only the second rule holds. A routed line that is not an
object, or too large, is refused by the worker it was routed to, as any worker would refuse
it.

**Repeats across workers.** A worker checks repeats among its own lines only: its table holds
only its own ids. Two workers can accept the same id only for lines of different units, so
with different bodies: in one process the later one is a conflicting repeat. After the
ingest, ``shared`` compares the tables (each pair of workers splits the ids by a bit of their
hash, each worker checks its half) and ``refusals`` names, for each id accepted by several
workers, the earliest line; every other worker that accepted it ingests again with that copy
in its table unchecked (``FirstSeen.foreign``), so that each of its copies is the
conflicting repeat it is in one process. That second pass is for files with such ids only
(none in the simulated city); nothing else changes between the passes, so no new id is
accepted and no further comparison is needed.
"""

from __future__ import annotations

import os
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import orjson

from audit.exceptions import AuditError
from audit.fastingest import _Tables
from audit.ingest import Acceptor, History, paused_gc
from audit.sources import FileSource
from bando.batch import READ_BUFFER, TYPICAL_LINE, body_at
from schemas import EventRejected
from scoring.dedup import FirstSeen

KEY = b'"unit_id":"'
SHARE_BIT = 40  # the bit of a tag that splits a pair's comparison between its two workers


class Misrouted(Exception):
    """A routed line is another worker's once decoded: ingest again without routing."""


def routes(assignment: Mapping[str, int]) -> dict[bytes, int]:
    """A unit's id as it appears between the quotes of a compact JSON line -> its worker."""
    return {orjson.dumps(u)[1:-1]: w for u, w in assignment.items()}


def load_part(source: FileSource, acceptor: Acceptor, assignment: Mapping[str, int], k: int, *,
              route: bool = True, refuse: Iterable[tuple[str, int]] = (),
              expected: int | None = None, seed: tuple[array[int], int] | None = None,
              only: set[str] | None = None) -> tuple[History, array[int]]:
    """``audit.fastingest.load_file`` (no DLQ) for worker ``k``'s lines: the history and the
    de-duplication table's slots (``FirstSeen``'s layout). ``refuse``: (event id, byte offset
    of its first copy in another worker), put into the table unchecked first. ``expected``:
    the ids to size the table for (default: one per typical line of the file). ``seed``: the
    slots and id count of an earlier pass's table to start from (``FirstSeen.adopt``).
    ``only``: of this worker's lines, those of these units (decoded to know)."""
    if acceptor.dlq:
        raise AuditError("a split replay reads a file, which has no dead-letter topic")
    limit = acceptor.validator.max_bytes
    validate = acceptor.validator.validate
    loads, not_json = orjson.loads, orjson.JSONDecodeError
    get = assignment.get
    route_get = routes(assignment).get if route else None
    key, after = KEY, len(KEY)

    def checked_at(fh: Any, token: int) -> dict[str, Any] | None:
        fh.seek(token)
        raw = fh.readline().strip()
        try:
            return validate(raw).body
        except EventRejected:
            return None

    def mine(raw: bytes, routed: bool) -> bool:
        """Whether a line the fast test left undecided (not JSON until stripped, not an
        object, too large) is this worker's."""
        if len(raw) > limit:  # refused for its size alone, as the validator does: not decoded
            return routed or k == 0
        try:
            body = loads(raw)
        except not_json:
            return routed or k == 0
        if type(body) is not dict:
            return routed or k == 0
        u = body.get("unit_id")
        if (get(u, 0) if type(u) is str else 0) == k:
            return only is None or u in only
        if routed:
            raise Misrouted
        return False

    with (open(source.path, "rb", buffering=READ_BUFFER) as fh, open(source.path, "rb") as again,
          paused_gc()):
        if expected is None:
            expected = 0 if seed is not None else os.fstat(fh.fileno()).st_size // TYPICAL_LINE
        table = FirstSeen(partial(body_at, again), expected,
                          checked_at=partial(checked_at, again))
        if seed is not None:
            table.adopt(*seed)
        for event_id, token in refuse:
            if seed is None or not table.repoint(event_id, token):
                table.foreign(event_id, token)
        tables = _Tables(acceptor, table)
        functions, slow = tables.fused.functions, tables.slow
        pos = folded = 0
        for offset, line in enumerate(fh):
            start = pos
            pos += (size := len(line))
            routed = False
            if route_get is not None and (i := line.find(key)) >= 0:
                i += after
                w = route_get(line[i:line.find(b'"', i)])
                if w is not None:
                    if w != k:
                        continue
                    routed = True
            event = None
            decided = False  # this worker's, known from the line as it is
            if size <= limit:
                try:
                    body = loads(line)
                    u = body.get("unit_id")
                except (not_json, AttributeError):
                    pass
                else:
                    if (get(u, 0) if type(u) is str else 0) != k:
                        if routed:
                            raise Misrouted
                        continue
                    if only is not None and u not in only:
                        continue
                    decided = True
                    try:
                        event = functions[body["type"]](body, start)
                    except (KeyError, TypeError):  # unsure: the reference decides
                        event = None
                    else:
                        if event is True:  # new, accepted and folded
                            folded += 1
                            continue
            raw = line.strip()
            if raw and (decided or mine(raw, routed)):
                slow(event, raw, f"{source.topic}[0]@{offset}", start)  # type: ignore[arg-type]
        history = tables.history(accepted=folded + tables.new)
        return history, table._slots


def shared(path: str | os.PathLike[str], k: int, tables: Mapping[int, Sequence[int]]
           ) -> list[tuple[str, int, int]]:
    """Ids in worker ``k``'s table and another's, as (event id, worker, byte offset of its
    copy) for both: of each pair of workers, ``k`` checks the tags whose ``SHARE_BIT`` is 1
    if it is the higher-numbered one, so each shared id is found once. A tag found in both
    tables is an id in both only if the lines' ids are equal (distinct ids can share a
    hash)."""
    own = tables[k]
    found: list[tuple[str, int, int]] = []
    with open(path, "rb") as fh:
        for m, other in tables.items():
            if m == k:
                continue
            bit, end = int(k > m), len(other)
            for j in range(1, len(own), 2):
                tag = own[j]
                if not tag or (tag >> SHARE_BIT) & 1 != bit:
                    continue
                i = tag % end
                while (there := other[i]) != 0:
                    if there == tag:
                        ours, theirs = own[j - 1], other[i - 1]
                        event_id = body_at(fh, ours)["event_id"]
                        if body_at(fh, theirs)["event_id"] == event_id:
                            found += [(event_id, k, ours), (event_id, m, theirs)]
                    i += 2
                    if i > end:
                        i = 1
    return found


def refusals(found: Iterable[tuple[str, int, int]]) -> dict[int, list[tuple[str, int, int]]]:
    """Worker -> (event id, byte offset of its first copy, of the worker's own) for each id
    it accepted that another worker accepted from an earlier line."""
    copies: dict[str, dict[int, int]] = {}
    for event_id, worker, token in found:
        copies.setdefault(event_id, {})[worker] = token
    out: dict[int, list[tuple[str, int, int]]] = {}
    for event_id, per in copies.items():
        first = min(per.values())
        for worker, token in per.items():
            if token != first:
                out.setdefault(worker, []).append((event_id, first, token))
    return out


def second_pass(source: FileSource, acceptor: Acceptor, assignment: Mapping[str, int], *,
                route: bool, first: History, slots: Sequence[int],
                refuse: Sequence[tuple[str, int, int]]) -> History | None:
    """A worker's history as if ``refuse`` (``refusals``) had been known from the start,
    rebuilding only the units of its own copies of those ids, from its first pass's table
    (``slots``): twice over those units' lines, without and with ``refuse``, so that their
    statistics can be taken out of the first pass's (``acceptor``'s, updated) and theirs put
    in. None where that would not be exact (a copy of no unit; a line misrouted once the
    other units are left out; the first pass's first or last instant that may have gone):
    then ingest again in full."""
    units: set[str] = set()
    with open(source.path, "rb") as fh:
        for _, _, token in refuse:
            unit = body_at(fh, token).get("unit_id")
            if type(unit) is not str or unit not in assignment:  # a line of worker 0's rule
                return None
            units.add(unit)
    # this worker's units are worker 1's, the lines of no unit worker 0's: all of worker 1's
    # lines are decoded (a line may name one of its units in its bytes, another in its JSON)
    # and those of ``units`` folded
    k = assignment[next(iter(units))]
    alone = {u: 1 if w == k else 2 for u, w in assignment.items()}
    runs = []
    for again in ((), [(event_id, token) for event_id, token, _ in refuse]):
        part = Acceptor(acceptor.catalog, acceptor.validator.max_bytes)
        seed = array("q")
        seed.frombytes(memoryview(slots).cast("B"))  # type: ignore[arg-type]
        try:
            history, _ = load_part(source, part, alone, 1, route=route, refuse=again,
                                   seed=(seed, acceptor.stats.accepted), only=units)
        except Misrouted:
            return None
        runs.append((history, part.stats))
    (before, was), (after, now) = runs
    for bound in ("first_ts", "last_ts"):
        if getattr(before, bound) == getattr(first, bound) != getattr(after, bound):
            return None  # these units held the bound, which moved: the next one is unknown
    stats = acceptor.stats
    stats.records += now.records - was.records
    stats.accepted += now.accepted - was.accepted
    stats.duplicates += now.duplicates - was.duplicates
    stats.rejected.update(now.rejected)
    stats.rejected.subtract(was.rejected)
    stats.rejected = Counter({code: n for code, n in stats.rejected.items() if n})
    for unit in units:
        first.states.pop(unit, None)
    first.states.update(after.states)
    return first
